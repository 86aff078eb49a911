/* cli_model: a checkpoint ready for inference (see common.h). */
#include <string.h>

#include "models/models.h"
#include "tools/common.h"

pt_status cli_model_load(const char *checkpoint, const char *backend, int threads, int batch,
                         pt_precision precision, cli_model *m, pt_error *err)
{
    memset(m, 0, sizeof *m);
    PT_TRY(pt_checkpoint_read_meta(checkpoint, &m->meta, err));
    pt_status st = pt_model_build(m->meta.model, m->meta.in_channels, m->meta.height, m->meta.width,
                                  m->meta.num_classes, &m->net, err);
    if (st != PT_OK) {
        pt_error_wrap(err, "checkpoint '%s'", checkpoint);
        return st;
    }
    if ((st = cli_open_devices(backend, "1", threads, 0, &m->dev, &m->ndev, err)) != PT_OK) return st;
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
    oc.momentum = 0.0f; /* inference: no optimizer state */
    oc.nesterov = 0;
    pt_replica_options ro = {.precision = precision};
    if ((st = pt_replica_create_ex(m->net, m->dev, batch, &oc, 0, &ro, &m->rep, err)) != PT_OK) {
        if (precision != PT_PREC_FP32) pt_error_wrap(err, "--precision %s", pt_precision_name(precision));
        return st;
    }
    return pt_checkpoint_load(checkpoint, m->rep, NULL, err);
}

void cli_model_free(cli_model *m)
{
    pt_replica_free(m->rep);
    cli_close_devices(&m->dev, m->ndev);
    pt_net_free(m->net);
    pt_model_meta_free(&m->meta);
    memset(m, 0, sizeof *m);
}
