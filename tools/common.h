/* Loading a checkpoint for inference (eval, predict): its metadata, the model it names,
 * one device and a replica holding its weights. */
#ifndef PT_TOOLS_COMMON_H
#define PT_TOOLS_COMMON_H

#include "core/checkpoint.h"
#include "tools/session.h"

typedef struct cli_model {
    pt_model_meta meta;
    pt_net *net;
    pt_device *dev;
    int ndev;
    pt_replica *rep;
} cli_model;

/* precision: the math of its convolutions and GEMMs (the checkpoint is fp32 whatever it). */
pt_status cli_model_load(const char *checkpoint, const char *backend, int threads, int batch,
                         pt_precision precision, cli_model *m, pt_error *err);
void cli_model_free(cli_model *m);

#endif
