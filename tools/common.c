/* cli_model: a checkpoint ready for inference on one or several devices (see common.h), what
 * --checkpoint names resolved to a checkpoint directory, and --data's form checked. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fileio.h"
#include "polytrain/checkpoint.h"
#include "core/safetensors.h"
#include "polytrain/dataset.h"
#include "polytrain/models.h"
#include "polytrain/trainer.h"
#include "tools/args.h"
#include "tools/common.h"

int cli_check_data(const char *command, const char *spec)
{
    pt_error err;
    pt_error_clear(&err);
    if (pt_dataset_spec_check(spec, &err) == PT_OK) return 0;
    cli_error("%s: --data: %s", command, err.msg);
    return 2;
}

/* dir/name into out; 0 when it does not fit. */
static int join(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    return n >= 0 && (size_t)n < size;
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* dir holds model.safetensors, or a save of dir was cut short between its renames and the
 * previous complete checkpoint waits beside it (read as it is: a reader never repairs). */
static int holds_checkpoint(const char *dir)
{
    char r[4400], p[4500];
    pt_checkpoint_resolve(dir, r, sizeof r);
    /* Anything but a directory counts, so that a FIFO or device there reaches the reader and
     * is reported as what it is. */
    struct stat st;
    return join(p, sizeof p, r, "model.safetensors") && stat(p, &st) == 0 && !S_ISDIR(st.st_mode);
}

/* Says so when dir is read from the previous complete checkpoint beside it. */
static void note_interrupted(const char *dir)
{
    char r[4400];
    if (pt_checkpoint_resolve(dir, r, sizeof r))
        cli_note("checkpoint %s: a save of it is under way or was cut short; reading the previous complete "
                 "checkpoint %s (the training run completes or undoes the save when it resumes)",
                 dir, r);
}

/* The completed epochs and best validation top-1 recorded in dir/optimizer.safetensors;
 * 0 when they cannot be read (a checkpoint saved without its training progress). */
static int read_progress(const char *dir, long long *epoch, double *best_top1)
{
    char p[4500], r[4400];
    pt_st_file *f = NULL;
    pt_error ignored;
    pt_checkpoint_resolve(dir, r, sizeof r);
    if (!join(p, sizeof p, r, "optimizer.safetensors") || !is_file(p) || pt_st_open(p, &f, &ignored) != PT_OK) return 0;
    const char *e = pt_st_meta(f, "epoch"), *b = pt_st_meta(f, "best_top1");
    int ok = e && b;
    if (ok) {
        char *end;
        *epoch = strtoll(e, &end, 10);
        ok = *end == '\0' && end != e;
        *best_top1 = strtod(b, &end);
        ok = ok && *end == '\0' && end != b && *best_top1 >= -1 && *best_top1 <= 1; /* NaN fails too */
    }
    pt_st_close(f);
    return ok;
}

pt_status cli_resolve_checkpoint(const char *path, char *out, size_t size, pt_error *err)
{
    struct stat st;
    const char *expected = "expected a checkpoint directory (holding model.safetensors, such as RUN/best) or a "
                           "run directory RUN (holding best/ or last/)";
    if (stat(path, &st) != 0) {
        /* A checkpoint whose save was cut short may exist beside PATH only. */
        if (errno == ENOENT && holds_checkpoint(path)) {
            snprintf(out, size, "%s", path);
            note_interrupted(path);
            return PT_OK;
        }
        return pt_fail(err, PT_ERR_IO, "checkpoint %s: %s; %s", path,
                       errno == ENOENT ? "no such file or directory" : strerror(errno), expected);
    }
    if (S_ISREG(st.st_mode)) {
        const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
        if (strcmp(base, "model.safetensors") != 0)
            return pt_fail(err, PT_ERR_INVALID, "checkpoint %s is a file; %s", path, expected);
        if (!slash) snprintf(out, size, ".");
        else if (slash == path) snprintf(out, size, "/");
        else snprintf(out, size, "%.*s", (int)(slash - path), path);
        cli_note("--checkpoint %s is a file: using its directory %s", path, out);
        return PT_OK;
    }
    if (!S_ISDIR(st.st_mode)) return pt_fail(err, PT_ERR_INVALID, "checkpoint %s is not a directory; %s", path, expected);
    if (holds_checkpoint(path)) {
        snprintf(out, size, "%s", path);
        return PT_OK;
    }
    char best[4200], last[4200];
    if (!join(best, sizeof best, path, "best") || !join(last, sizeof last, path, "last"))
        return pt_fail(err, PT_ERR_INVALID, "checkpoint %s: path too long", path);
    long long epoch = 0, last_epoch = 0;
    double top1 = 0;
    const int has_last = holds_checkpoint(last), last_known = has_last && read_progress(last, &last_epoch, &top1);
    if (holds_checkpoint(best)) {
        snprintf(out, size, "%s", best);
        note_interrupted(best);
        if (read_progress(best, &epoch, &top1) && top1 >= 0) {
            char tail[96] = "";
            if (last_known && last_epoch != epoch)
                snprintf(tail, sizeof tail, "; last/ holds the latest, epoch %lld", last_epoch);
            cli_note("--checkpoint %s is a run: using %s (the best validation top-1, %.2f%% at epoch %lld%s)", path,
                     out, 100.0 * top1, epoch, tail);
        } else {
            cli_note("--checkpoint %s is a run: using %s (the best validation top-1)", path, out);
        }
        return PT_OK;
    }
    if (has_last) {
        snprintf(out, size, "%s", last);
        note_interrupted(last);
        if (last_known)
            cli_note("--checkpoint %s is a run: using %s (the latest checkpoint, epoch %lld; the run has no best/)",
                     path, out, last_epoch);
        else
            cli_note("--checkpoint %s is a run: using %s (the latest checkpoint; the run has no best/)", path, out);
        return PT_OK;
    }
    char cfg[4200];
    if (join(cfg, sizeof cfg, path, "config.json") && is_file(cfg))
        return pt_fail(err, PT_ERR_FORMAT,
                       "checkpoint %s: a run directory without a checkpoint yet (no best/ or last/ holding "
                       "model.safetensors: a run saves one at the end of each epoch)",
                       path);
    return pt_fail(err, PT_ERR_FORMAT, "checkpoint %s: a directory with no model.safetensors, best/ or last/; %s",
                   path, expected);
}

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
    pt_replica_options ro = {
        .precision = precision, .graphs = m->graphs, .pinned_input = m->pinned_input, .no_fuse_relu = m->no_fuse_relu,
        .act_storage = m->act_storage, .layout = m->layout};
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

void cli_graphs_line(const pt_replica *r, int split, char *graphs, size_t gcap, char *pinned, size_t pcap)
{
    pt_graph_stats gs;
    pt_replica_graph_stats(r, &gs);
    const long long after = gs.captured_after_step > 0 ? (long long)gs.captured_after_step : PT_GRAPH_WARMUP_STEPS;
    if (!gs.on)
        snprintf(graphs, gcap, "off: %s", gs.why);
    else if (split == 1 || !gs.training_part)
        snprintf(graphs, gcap, "on for the update and evaluation (captured after step %d); the forward and backward "
                 "ops run one by one: a device group reduces gradients between them", PT_GRAPH_WARMUP_STEPS);
    else if (split == 2)
        snprintf(graphs, gcap, "on, forward + backward, the update and evaluation one launch each (captured after "
                 "step %lld): gradient accumulation keeps the update apart", after);
    else
        snprintf(graphs, gcap, "on, one launch per training step (captured after step %lld)", after);
    char why[160];
    if (pt_replica_pinned_input(r, why, sizeof why))
        snprintf(pinned, pcap, "on (page-locked host buffers, copies on a stream of their own)");
    else
        snprintf(pinned, pcap, "off: %s", why);
}

void cli_pinned_training_line(pt_replica *const *reps, int ndev, char *pinned, size_t cap)
{
    char why[160];
    if (!pt_replica_pinned_input(reps[0], why, sizeof why))
        snprintf(pinned, cap, "off: %s", why);
    else if (pt_trainer_stages_input(reps, ndev) && ndev > 1)
        snprintf(pinned, cap, "on, next batch staged during the step on each of the %d devices (page-locked host "
                              "buffers, copies on a stream of their own)", ndev);
    else if (pt_trainer_stages_input(reps, ndev))
        snprintf(pinned, cap, "on, next batch staged during the step (page-locked host buffers, copies on a stream of "
                              "their own)");
    else
        snprintf(pinned, cap, "on (page-locked host buffers, copies on a stream of their own); each batch is copied "
                              "after the step before it: not every device of the process has pinned input");
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
    PT_TRY(cli_resolve_checkpoint(checkpoint, m->checkpoint, sizeof m->checkpoint, err));
    checkpoint = m->checkpoint;
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
