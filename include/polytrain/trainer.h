/* The training loop: epochs of steps over a device group's replicas, evaluation, the
 * run directory (config.json, metrics.jsonl, last/ and best/ checkpoints) and resume.
 * The loop is shaped for several devices: a global batch is split by sample across
 * replicas, each computes its share of the mean-loss gradient, and every replica applies
 * the same update. Printing is the caller's: progress arrives through callbacks. */
#ifndef PT_TRAINER_H
#define PT_TRAINER_H

#include <stdint.h>

#include "polytrain/batch.h"
#include "polytrain/checkpoint.h"
#include "polytrain/loss_scale.h"
#include "polytrain/replica.h"
#include "polytrain/schedule.h"

typedef struct pt_train_options {
    int epochs;
    int batch_per_device;
    double lr;
    pt_schedule_kind schedule;
    double warmup_epochs;
    double step_epochs, gamma;   /* step schedule */
    float label_smoothing;
    int cycle_momentum;           /* onecycle: cycle momentum/beta1 0.95 -> 0.85 -> 0.95 */
    uint64_t seed;
    const char *out_dir;          /* run directory */
    int resume;                   /* continue from out_dir/last */
    int stop_after_epoch;         /* > 0: stop (as if interrupted) once this epoch is saved */
    int log_steps;                /* write out_dir/steps.jsonl: loss and LR of every step */
    const char *config_json;      /* resolved configuration, written to out_dir/config.json */
    /* Data parallelism. world: NULL for a single process; under MPI every rank runs the
     * same trainer on its share of each global batch (the source yields this rank's part),
     * rank 0 writes the run directory. */
    const pt_world *world;
    int64_t global_samples;       /* training samples per epoch over all ranks (0: the source's) */
    int rank_batch;               /* samples per step on this rank (0: batch_per_device x devices) */
    size_t bucket_bytes;          /* gradient all-reduce bucket (0: 1 MiB) */
    int host_reduction;           /* 1: never the backend's collectives (tests, comparisons) */
    int check_replicas;           /* compare replicas bitwise after every step (debug builds always) */
    /* A timeline of one step (polytrain/trace.h) written to trace_path by rank 0 right after that
     * step: trace_step is its 0-based global step, -1 the third step of this run (the last
     * when it has fewer). The event slots are allocated here, before any step. */
    const char *trace_path;
    int64_t trace_step;
    /* > 0: also save out_dir/last every this many updates within an epoch (a resume from it
     * continues bit for bit on one device per process). Ctrl-C (should_stop) saves there
     * whatever this is. */
    int64_t save_every_steps;
    /* > 0: clip the gradients' global L2 norm to this before each update (clip_grad_norm_) */
    double clip_grad_norm;
    /* > 0: early stopping: stop when val top-1 has not risen by more than min_delta over the
     * best so far for this many epochs in a row */
    int patience;
    double min_delta;
    /* > 1: each optimizer step sums the gradients of this many of the source's batches
     * (micro-batches), so a step's batch is that many times the source's */
    int accumulate;
    /* in (0, 1): keep an EMA of the weights and BatchNorm buffers with this decay, evaluate
     * it after every epoch and save it as out_dir/ema (0: off) */
    double ema_decay;
    /* 1: leave each replica's workspace as it was first sized (room for every algorithm a
     * device may still choose) instead of fitting it to the chosen ones after the first epoch
     * (pt_group_fit_workspace): the same results, more device memory; for telling apart a
     * fault of the fitting from one elsewhere */
    int keep_workspace;
} pt_train_options;

typedef struct pt_epoch_metrics {
    int64_t epoch;                /* 1-based */
    double train_loss, train_acc;
    double val_loss, val_top1, val_top5;
    int64_t val_count;
    double lr;                    /* at the end of the epoch */
    double img_per_s, train_s, epoch_s, elapsed_s;
    int best;                     /* this epoch set a new best val_top1 */
    /* fp16 loss scaling (loss_scale 0 when the run does not scale): the scale at the end of
     * the epoch, its smallest value during it, the steps skipped for Inf/NaN gradients, and
     * the changes (step, new scale) in order, the first PT_SCALE_EVENTS of them */
    double loss_scale, loss_scale_min;
    int64_t skipped_steps;
    int nscale_events;            /* changes in the epoch, all of them */
    struct { int64_t step; double scale; } scale_event[16];
    /* device memory of one replica (parameters, state, activations, workspace) at the end of
     * the epoch; and in the run's first epoch, the workspace before and after it was fitted
     * to the algorithms the device chose (pt_group_fit_workspace; 0 in other epochs) */
    size_t device_bytes, ws_before, ws_after;
    /* the most device memory one replica held at once so far (what polytrain allocated) */
    size_t peak_device_bytes;
    /* seconds the training steps waited for data (the source's wait_seconds; 0 without) */
    double data_wait_s;
    /* wall clock (time_t) when the epoch's training started (when it resumed, for an epoch
     * continued from a mid-epoch checkpoint) and when the epoch was saved */
    int64_t started_at, ended_at;
    int resumed_mid_epoch;        /* the epoch continued from a mid-epoch checkpoint */
    /* gradient clipping: steps whose norm was above the limit, and the mean norm before it */
    int64_t clipped_steps;
    double grad_norm_mean;
    /* early stopping: epochs in a row without an improvement, and why the run stops here
     * ("" when it goes on) */
    int epochs_without_improvement;
    char stop_reason[256];
    /* the weight EMA's evaluation (ema_count 0 without --ema) */
    double ema_val_loss, ema_val_top1, ema_val_top5;
    int64_t ema_count;
} pt_epoch_metrics;
#define PT_SCALE_EVENTS 16

typedef struct pt_eval_result {
    double loss, top1, top5;
    int64_t count;
} pt_eval_result;

typedef struct pt_train_callbacks {
    void *user;
    void (*on_batch)(void *user, int64_t epoch, int64_t batch, int64_t batches, double loss,
                     double acc, double img_per_s);
    void (*on_epoch)(void *user, const pt_epoch_metrics *m);
    int (*should_stop)(void *user); /* polled between steps (Ctrl-C) */
    /* After every optimizer update: 0-based global step, the mean loss of its batch and
     * the learning rate it used. */
    void (*on_step)(void *user, int64_t step, int64_t epoch, double loss, double lr);
    /* Evaluation after an epoch: called before the first batch (done 0) and after each. */
    void (*on_eval_batch)(void *user, int64_t epoch, int64_t done, int64_t batches);
    /* Once, before the first step: where the run starts (global step, the epoch's batch). */
    void (*on_start)(void *user, int64_t epoch, int64_t batch, int64_t global_step);
} pt_train_callbacks;

typedef struct pt_trainer pt_trainer;

/* replicas: one per device, all built from the same net with the same options and batch
 * capacity batch_per_device (not owned). The trainer runs them as a device group
 * (core/group.h): one host thread per device, gradients all-reduced in buckets during
 * backward, the same update on every replica. */
pt_status pt_trainer_create(pt_replica **replicas, int nreplicas, const pt_model_meta *meta,
                            pt_batch_source train, pt_batch_source val,
                            const pt_train_options *opt, pt_trainer **out, pt_error *err);
void pt_trainer_free(pt_trainer *t);
/* Whether a trainer over these replicas stages ahead: with pinned input on every device of the
 * process, batch k+1 is fetched from the source once step k is queued on every device (once
 * for all of them) and each device's part is copied into its free input slot while step k
 * runs (before next() is called again, so the source's contract holds). Every result is the
 * same as without: the same batches to the same steps, a fetched batch whose step has not run
 * is not consumed (a checkpoint after step k resumes at batch k+1), no fetch past the epoch's
 * last batch. */
int pt_trainer_stages_input(pt_replica *const *replicas, int nreplicas);
/* Initialises or resumes (reads out_dir/last), then trains the remaining epochs. */
pt_status pt_trainer_run(pt_trainer *t, const pt_train_callbacks *cb, pt_error *err);
int64_t pt_trainer_start_epoch(const pt_trainer *t); /* epochs already done (after resume) */
int64_t pt_trainer_steps_per_epoch(const pt_trainer *t);
/* Training time of the whole run so far, over every resume (what was saved plus this run). */
double pt_trainer_elapsed_s(const pt_trainer *t);
/* After pt_trainer_run began a resumed run: what it found in the run directory (the epoch
 * and step of last/, what best/ holds) and any commit a crash had cut short that it
 * completed; NULL when the run was not resumed. */
const char *pt_trainer_resume_note(const pt_trainer *t);
/* The run ended at --stop-after-epoch rather than at --epochs. */
int pt_trainer_stopped_early(const pt_trainer *t);
/* Early stopping ended the run: why (NULL when it did not). */
const char *pt_trainer_stop_reason(const pt_trainer *t);
double pt_trainer_lr_at(const pt_trainer *t, int64_t step);
/* The device group the trainer runs (for banners and tests). */
struct pt_group *pt_trainer_group(const pt_trainer *t);

/* Evaluation over a whole source in eval mode; never drops samples. logits_out, when
 * non-NULL, receives samples_per_epoch x classes floats in source order. */
pt_status pt_evaluate(pt_replica *r, pt_batch_source src, pt_eval_result *res, float *logits_out,
                      pt_error *err);
/* The same with any eval-mode forward (several devices, say): forward fills logits [n, classes]
 * and per-sample losses [n] for a batch. The losses are summed in source order, so the
 * metrics do not depend on how forward splits a batch. */
typedef pt_status (*pt_eval_forward)(void *ctx, const float *x, const int32_t *y, int n, float *logits,
                                     float *losses, pt_error *err);
pt_status pt_evaluate_with(pt_eval_forward forward, void *ctx, int classes, pt_batch_source src,
                           pt_eval_result *res, float *logits_out, pt_error *err);

#endif
