/* Loading a checkpoint for inference (eval, predict): its metadata, the model it names, the
 * devices chosen with --backend/--devices and a replica on each holding its weights, run as
 * one device group so that a batch is split over the devices and evaluated in parallel. */
#ifndef PT_TOOLS_COMMON_H
#define PT_TOOLS_COMMON_H

#include "polytrain/checkpoint.h"
#include "core/group.h"
#include "core/init_from.h"
#include "polytrain/dataset.h"
#include "tools/session.h"

typedef struct cli_model {
    char checkpoint[4200]; /* the checkpoint directory --checkpoint resolved to */
    pt_model_meta meta;
    pt_net *net;
    pt_device *devs[CLI_MAX_DEVICES];
    int ndev;
    pt_replica *reps[CLI_MAX_DEVICES];
    int batch; /* samples one device takes in one forward */
    int no_fuse_relu; /* set before loading: pt_replica_options.no_fuse_relu (--fuse off) */
    pt_act_storage act_storage; /* set before loading: --act-storage */
    pt_image_layout layout;     /* set before loading: --layout */
    pt_group *group;
    pt_group_slice slices[CLI_MAX_DEVICES];
    pt_switch graphs, pinned_input; /* --cuda-graphs, --pinned-input (set after opening) */
} cli_model;

/* What --checkpoint PATH names, as a checkpoint directory in out: PATH itself when it holds
 * model.safetensors (or is that file: its directory); for a run directory RUN, RUN/best, else
 * RUN/last, saying which and why on stderr (cli_note). Anything else fails with a message
 * saying what was expected. */
pt_status cli_resolve_checkpoint(const char *path, char *out, size_t size, pt_error *err);

/* --data's form (pt_dataset_spec_check): 0, or 2 (a usage error) after printing
 * "COMMAND: --data: why" with the forms it takes and the nearest kind. */
int cli_check_data(const char *command, const char *spec);

/* Zeroes m, then opens the devices as train does (cli_open_devices: --backend, --devices,
 * --threads per device). Opened before the checkpoint is read, so that a caller can tell a
 * bad --backend/--devices (PT_ERR_INVALID, a usage error) from a bad checkpoint. */
pt_status cli_model_open_devices(cli_model *m, const char *backend, const char *devices, int threads,
                                 pt_error *err);
/* The checkpoint's model (cli_resolve_checkpoint: a checkpoint or a run directory) on every
 * open device with room for `batch` samples each; its weights
 * are read once and copied to the other replicas. precision: the math of convolutions and
 * GEMMs (the checkpoint is fp32 whatever it). */
pt_status cli_model_load(cli_model *m, const char *checkpoint, int batch, pt_precision precision, pt_error *err);
/* Weights without a checkpoint's metadata (--init-from: a safetensors state dict or a
 * checkpoint directory, pt_init_from_read, strictly, no head reset) in model `model` built for
 * ds's images and classes, normalised with ds's statistics. */
pt_status cli_model_init_from(cli_model *m, const char *path, const char *model, const pt_dataset *ds, int batch,
                              pt_precision precision, pt_init_result *res, pt_strbuf *detail, pt_error *err);
/* Evaluation-mode forward of n <= ndev x batch samples in parallel, device d taking samples
 * [d x batch, (d + 1) x batch): logits [n, classes] and losses [n] against labels y, in the
 * order of x. A sequence fed in pieces of ndev x batch thus gets, sample for sample, the
 * results one device gives it in pieces of batch. */
pt_status cli_model_forward(cli_model *m, const float *x, const int32_t *y, int n, float *logits, float *losses,
                            pt_error *err);
/* What the banners and config.json say of the step's graphs and of the input (replica r;
 * split: 0 the whole step is one part, 1 in a device group of more than one replica, set up
 * later, 2 gradient accumulation): "on, one launch per training step (captured after step
 * 2)", "off: <why>"; "on (...)" or "off: <why>". */
void cli_graphs_line(const pt_replica *r, int split, char *graphs, size_t gcap, char *pinned, size_t pcap);
/* The training banner's and config.json's pinned-input line for these replicas (one process's
 * devices): whether the trainer stages each next batch during the step
 * (pt_trainer_stages_input), and why not where pinned input is on without it. */
void cli_pinned_training_line(pt_replica *const *reps, int ndev, char *pinned, size_t cap);
/* Safe on a model that cli_model_open_devices zeroed, whatever failed after that. */
void cli_model_free(cli_model *m);

#endif
