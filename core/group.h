/* A device group: the replicas of one process (one per device) with a persistent host
 * thread per device, and the reductions that make them one data-parallel trainer across
 * devices and, through pt_world, across processes. Gradients are summed in buckets while
 * backward still runs (a communication thread takes each bucket as soon as every device has
 * produced it), synchronised BatchNorm sums its statistics between ops, and every replica
 * then applies the same update. Reductions use the backend's collectives (group_* in
 * polytrain/backend.h, e.g. NCCL) when it has them, else host memory plus pt_world. Nothing here
 * allocates after pt_group_create (pt_group_fit_workspace re-sizes the replicas' arenas). */
#ifndef PT_GROUP_H
#define PT_GROUP_H

#include <stddef.h>
#include <stdint.h>

#include "polytrain/replica.h"
#include "polytrain/world.h"

typedef struct pt_group pt_group;

/* replicas: one per device, built from the same net with the same batch capacity and
 * options (not owned). world: NULL or the process world (kept by pointer). bucket_bytes: 0
 * for the default (1 MiB). use_collectives: 0 forces the host-memory path. */
pt_status pt_group_create(pt_replica **replicas, int n, const pt_world *world, size_t bucket_bytes,
                          int use_collectives, pt_group **out, pt_error *err);
void pt_group_free(pt_group *g);
int pt_group_size(const pt_group *g);
/* "host" or "backend": how this group reduces, for banners and reports. */
const char *pt_group_reduction(const pt_group *g);
int pt_group_buckets(const pt_group *g);

/* Device d's part of one step. n may be 0 (an uneven last batch with more devices than
 * samples): that device contributes zeros and still applies the update. */
typedef struct pt_group_slice {
    const float *x;
    const int32_t *y, *y2;
    const float *lam;
    int n;
    int64_t sample_base; /* global index of the slice's first sample (dropout keys) */
    float *logits, *losses; /* host outputs [n, K] and [n] */
} pt_group_slice;

/* One step on every device: forward and backward of its slice with gradients of
 * grad_scale * (sum of losses), the sum over every device of every process, then the
 * optimizer update with lr and momentum (SGD momentum or Adam beta1). global_n: the
 * step's samples over all processes (sync-BN statistics). */
pt_status pt_group_step(pt_group *g, const pt_group_slice *slices, int global_n, int64_t step,
                        float grad_scale, float lr, float momentum, pt_error *err);

/* fp16 loss scaling for the following steps (inv_scale 0: off, the default): after the
 * reduction every replica unscales its gradients by inv_scale and checks them for Inf/NaN
 * (pt_replica_unscale_grads); when they hold any, the update is skipped on every replica
 * (the gradients are the same everywhere after the reduction, so every device and process
 * decides alike). updates_before: optimizer updates applied before the next step, the step
 * count Adam's bias correction uses (steps minus the skipped ones). */
void pt_group_set_loss_scaling(pt_group *g, float inv_scale, int64_t updates_before);
/* Whether the last pt_group_step found Inf/NaN gradients and skipped its update. */
int pt_group_last_step_skipped(const pt_group *g);
/* Clip the reduced gradients to a global L2 norm of max_norm before each update (0: off;
 * after the fp16 unscale). pt_group_last_grad_norm: the last step's norm before clipping. */
void pt_group_set_clip(pt_group *g, float max_norm);
/* Gradient accumulation: the next pt_group_step is micro-batch `micro` (0-based) of `count`
 * making one optimizer step (count 1: a whole step, the default). Every micro-batch runs
 * forward, backward and the gradient reduction; only the last updates the weights, with the
 * sum of every micro-batch's reduced gradients (pt_replica_enable_accumulation first).
 * grad_scale of each is 1 over the samples of the whole step. */
void pt_group_set_micro_batch(pt_group *g, int micro, int count);
/* After each update every replica moves its weight EMA (pt_replica_ema_update; 0: off). */
void pt_group_set_ema(pt_group *g, float decay);
double pt_group_last_grad_norm(const pt_group *g);
/* The next step's slices (NULL: not known), for the following steps until changed: a device
 * that runs its step as one part (pt_replica_train_step) copies them into its free input
 * slot while the step runs. Their data must stay unchanged until that step. */
void pt_group_set_next(pt_group *g, const pt_group_slice *next);

/* Staging ahead across the group's devices: once every device's part of a training step is
 * queued (its forward and backward on the device, a device without samples at the same point)
 * and before any device reads its outputs, fetch runs once, on one device's thread, then
 * stage(user, d, replica d) on every device's own thread, so that the next batch's parts go
 * to their free input slots while the step runs (pt_replica_stage_input). Each runs between
 * the step's reductions' arrivals and its waits: the devices' threads wait for each other
 * there, and a failure anywhere stops the others. NULL fetch: off (the default). */
typedef pt_status (*pt_group_fetch_fn)(void *user, pt_error *err);
typedef pt_status (*pt_group_stage_fn)(void *user, int d, pt_replica *r, pt_error *err);
void pt_group_set_queued(pt_group *g, pt_group_fetch_fn fetch, pt_group_stage_fn stage, void *user);

/* Records the following steps into trace (NULL: stops), between steps: device d's ops
 * (synchronised after each), waits, host copies, loss-scale unscaling and update on track d,
 * each reduction on the communication track. Arm it for one step: tracing slows the step. */
void pt_group_set_trace(pt_group *g, pt_trace *trace);

/* Evaluation-mode forward of each device's slice in parallel (y may not be NULL). */
pt_status pt_group_eval(pt_group *g, const pt_group_slice *slices, pt_error *err);

/* Parameters, optimizer state, BN buffers and progress of replica 0 of rank 0 copied to
 * every replica of every process (start of a run, after loading a checkpoint). */
pt_status pt_group_broadcast_state(pt_group *g, pt_error *err);
/* pt_replica_fit_workspace on every replica, between steps (the largest workspace of a
 * device before and after; may be NULL). Each process fits its own devices: nothing is
 * exchanged. */
pt_status pt_group_fit_workspace(pt_group *g, size_t *before, size_t *after, pt_error *err);
/* Between steps, on the calling thread: bufs[d] (count floats on device d) becomes the sum
 * over every device of every process, through the backend's collectives when the group has
 * them, else host memory in device order and the world (what a gradient bucket goes
 * through). For checks of the reduction paths (polytrain check). */
pt_status pt_group_allreduce(pt_group *g, const pt_mem *bufs, size_t count, pt_error *err);
/* bufs[0] of rank 0 copied to bufs[d] on every device of every process, the same way. */
pt_status pt_group_broadcast(pt_group *g, const pt_mem *bufs, size_t bytes, pt_error *err);
/* BN running statistics averaged over every replica of every process (per-device BN). */
pt_status pt_group_average_buffers(pt_group *g, pt_error *err);
/* Every replica of every process holds bitwise the same parameters and optimizer state
 * (and BN buffers when with_buffers); else PT_ERR_MISMATCH naming the first difference.
 * Collective: every process gets the same answer. */
pt_status pt_group_check_identical(pt_group *g, int with_buffers, pt_error *err);

#endif
