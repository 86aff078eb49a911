/* Training steps of a model on a device group timed on random data: what `bench --devices`
 * and `polytrain check` measure (weak scaling: a fixed batch per device; strong scaling: a
 * fixed global batch split over the devices). */
#ifndef PT_TOOLS_GROUP_TIMING_H
#define PT_TOOLS_GROUP_TIMING_H

#include "polytrain/backend.h"
#include "polytrain/net.h"
#include "polytrain/optim.h"
#include "polytrain/world.h"

typedef struct cli_group_timing_options {
    const pt_net *net;
    int C, H, W, classes;
    pt_optim_config optim;
    pt_precision precision;
    pt_switch graphs, pinned_input; /* --cuda-graphs, --pinned-input */
    int batch;  /* weak: samples per device; strong: the global batch of this process */
    int strong;
    int steps, warmup;
    const pt_world *world; /* NULL: this process alone */
    size_t bucket_bytes;   /* 0: the group's default */
    int check_identical;   /* compare every replica bitwise after every step */
    int no_fuse_relu;      /* pt_replica_options.no_fuse_relu */
    pt_act_storage act_storage; /* pt_replica_options.act_storage */
    pt_image_layout layout;     /* pt_replica_options.layout */
    int fit_workspace;          /* fit the workspaces after the warm-up (pt_group_fit_workspace) */
} cli_group_timing_options;

typedef struct cli_group_timing {
    int ndev;
    int per_device[16];     /* samples of each device in a step */
    int global_batch;       /* over every device of every process */
    double step_s, best_s;  /* median and fastest timed step */
    double img_per_s;       /* global_batch / step_s */
    int buckets;
    char reduction[16];     /* "host" or "backend" */
    int identical;          /* check_identical: every step left the replicas bitwise equal */
    int fuse_relu;          /* pt_replica_fuse_relu of the replicas */
    char act_line[160];     /* cli_act_storage_line of the first replica */
    /* device 0: its workspace before and after the fit (equal without fit_workspace) and its
     * device memory at the end */
    size_t ws_before, ws_after, device_bytes;
} cli_group_timing;

/* Builds one replica per device (the same seed, so the same weights), a group over them, and
 * times `steps` group steps after `warmup`. A replica mismatch (check_identical) is
 * PT_ERR_MISMATCH naming the first difference. */
pt_status cli_time_group(pt_device **devs, int ndev, const cli_group_timing_options *o, cli_group_timing *out,
                         pt_error *err);

#endif
