/* cli_model: a checkpoint ready for inference on one or several devices (see common.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/models.h"
#include "tools/common.h"

pt_status cli_model_open_devices(cli_model *m, const char *backend, const char *devices, int threads,
                                 pt_error *err)
{
    memset(m, 0, sizeof *m);
    return cli_open_devices(backend, devices, threads, 0, m->devs, &m->ndev, err);
}

/* A replica of m->net on every device, then (load) its weights on the first and a group. */
static pt_status create_replicas(cli_model *m, int batch, pt_precision precision, pt_error *err)
{
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
    oc.momentum = 0.0f; /* inference: no optimizer state */
    oc.nesterov = 0;
    pt_replica_options ro = {.precision = precision};
    for (int d = 0; d < m->ndev; d++) {
        const pt_status st = pt_replica_create_ex(m->net, m->devs[d], batch, &oc, 0, &ro, &m->reps[d], err);
        if (st != PT_OK) {
            if (precision != PT_PREC_FP32) pt_error_wrap(err, "--precision %s", pt_precision_name(precision));
            return st;
        }
    }
    m->batch = batch;
    return PT_OK;
}

/* Replica 0 holds the weights: the group, and the others get them. */
static pt_status make_group(cli_model *m, pt_error *err)
{
    /* Host-memory reductions only: inference never reduces, and a backend's collectives
     * (an NCCL communicator) would cost their set-up for nothing. */
    PT_TRY(pt_group_create(m->reps, m->ndev, NULL, 0, 0, &m->group, err));
    if (m->ndev > 1) PT_TRY(pt_group_broadcast_state(m->group, err));
    return PT_OK;
}

pt_status cli_model_load(cli_model *m, const char *checkpoint, int batch, pt_precision precision, pt_error *err)
{
    PT_TRY(pt_checkpoint_read_meta(checkpoint, &m->meta, err));
    pt_status st = pt_model_build(m->meta.model, m->meta.in_channels, m->meta.height, m->meta.width,
                                  m->meta.num_classes, &m->net, err);
    if (st != PT_OK) {
        pt_error_wrap(err, "checkpoint '%s'", checkpoint);
        return st;
    }
    PT_TRY(create_replicas(m, batch, precision, err));
    PT_TRY(pt_checkpoint_load(checkpoint, m->reps[0], NULL, err));
    return make_group(m, err);
}

pt_status cli_model_init_from(cli_model *m, const char *path, const char *model, const pt_dataset *ds, int batch,
                              pt_precision precision, pt_init_result *res, pt_strbuf *detail, pt_error *err)
{
    snprintf(m->meta.model, sizeof m->meta.model, "%s", model);
    m->meta.in_channels = ds->channels;
    m->meta.height = ds->height;
    m->meta.width = ds->width;
    m->meta.num_classes = ds->num_classes;
    memcpy(m->meta.mean, ds->mean, sizeof m->meta.mean);
    memcpy(m->meta.std, ds->std, sizeof m->meta.std);
    PT_TRY(pt_model_build(model, ds->channels, ds->height, ds->width, ds->num_classes, &m->net, err));
    float *params = calloc((size_t)pt_net_param_region(m->net) + 1, sizeof(float));
    float *buffers = calloc((size_t)pt_net_buffer_region(m->net) + 1, sizeof(float));
    pt_status st = params && buffers ? PT_OK : pt_fail(err, PT_ERR_NOMEM, "out of host memory for --init-from");
    if (st == PT_OK) st = pt_init_from_read(path, m->net, 0, 0, params, buffers, res, detail, err);
    if (st == PT_OK) st = create_replicas(m, batch, precision, err);
    if (st == PT_OK) st = pt_replica_write_state(m->reps[0], params, buffers, NULL, err);
    if (st == PT_OK) pt_replica_set_progress(m->reps[0], res->bn_steps, 0);
    free(params);
    free(buffers);
    PT_TRY(st);
    return make_group(m, err);
}

pt_status cli_model_forward(cli_model *m, const float *x, const int32_t *y, int n, float *logits, float *losses,
                            pt_error *err)
{
    if (n < 0 || n > m->batch * m->ndev)
        return pt_fail(err, PT_ERR_INVALID, "a forward of %d samples is more than %d device(s) x %d", n, m->ndev,
                       m->batch);
    const size_t xs = (size_t)m->meta.in_channels * m->meta.height * m->meta.width;
    const int K = m->meta.num_classes;
    /* Device d takes samples [d x batch, (d + 1) x batch): every forward is one that a single
     * device would make on the same sequence of samples batch by batch. The cpu backend's
     * per-sample results depend on a sample's place in its batch (its GEMM tiles), so this
     * split, and not an even one, is what keeps them bitwise equal to one device's (with as
     * many threads per device). Only a last, partial batch leaves devices idle. */
    for (int d = 0; d < m->ndev; d++) {
        const int first = d * m->batch < n ? d * m->batch : n;
        const int c = n - first < m->batch ? n - first : m->batch;
        pt_group_slice *s = &m->slices[d];
        memset(s, 0, sizeof *s);
        s->n = c;
        s->x = x + (size_t)first * xs;
        s->y = y + first;
        s->logits = logits + (size_t)first * K;
        s->losses = losses + first;
    }
    return pt_group_eval(m->group, m->slices, err);
}

void cli_model_free(cli_model *m)
{
    pt_group_free(m->group);
    for (int d = 0; d < m->ndev; d++) pt_replica_free(m->reps[d]);
    cli_close_devices(m->devs, m->ndev);
    pt_net_free(m->net);
    pt_model_meta_free(&m->meta);
    memset(m, 0, sizeof *m);
}
