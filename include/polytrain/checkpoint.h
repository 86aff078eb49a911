/* Checkpoints: a directory with model.safetensors (parameters and BN buffers under their
 * PyTorch names + model metadata) and optimizer.safetensors (per-parameter optimizer
 * state + training progress), replaced together atomically. Loading trusts nothing:
 * every tensor name, dtype and shape is checked against the net being loaded into. */
#ifndef PT_CHECKPOINT_H
#define PT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "polytrain/replica.h"

#define PT_MAX_CLASSES 100000

typedef struct pt_model_meta {
    char model[64];
    int in_channels, height, width, num_classes;
    float mean[3], std[3];
    char **class_names; /* num_classes strings, owned (pt_model_meta_free) */
    /* The checkpoint's stamp, written into both of its files so that a model and an
     * optimizer file of different checkpoints are never used together: the training run's
     * id ("" when saved outside a training run), its completed epochs and optimizer step. */
    char run_id[40];
    int64_t epoch, global_step;
} pt_model_meta;

/* Training progress saved in optimizer.safetensors' metadata. */
typedef struct pt_train_progress {
    int64_t epoch;        /* completed epochs */
    int64_t global_step;  /* optimizer updates done */
    int64_t bn_steps;     /* BatchNorm num_batches_tracked */
    uint64_t seed;
    double best_top1;     /* best validation top-1 so far (-1: none) */
    int64_t best_epoch;
    char schedule[512];   /* JSON text describing the LR schedule position */
    /* Mixed precision: the run's precision ("fp32" for checkpoints from before it was
     * saved) and the fp16 loss scaler's state (scale 0 when the run does not scale). */
    char precision[8];
    double loss_scale;
    int64_t loss_scale_growth_tracker;
    int64_t skipped_steps;
    /* A mid-epoch checkpoint (--save-every-steps, Ctrl-C): epoch_step updates of epoch
     * `epoch` + 1 are done (0 at an epoch's end), and the epoch's running sums so far, over
     * all processes, so that the resumed epoch reports what a straight one would. */
    int64_t epoch_step;
    int64_t epoch_steps;                  /* the epoch's length then (steps per epoch) */
    double epoch_loss_sum, epoch_train_s;
    int64_t epoch_hits, epoch_seen;
    /* the epoch's loss-scale record so far (fp16): skipped steps, smallest scale, changes */
    int64_t epoch_skipped;
    double epoch_scale_min;
    int epoch_scale_changes;              /* all of them; the first PT_PROGRESS_SCALE_EVENTS kept */
    int64_t epoch_scale_step[16];
    double epoch_scale_value[16];
    /* gradient clipping's record of the epoch so far */
    int64_t epoch_clipped;
    double epoch_norm_sum;
    /* early stopping: the best val top-1 it compares with, the epochs without improvement
     * since, and the reason the run stopped ("" when it did not) */
    double es_best;
    int64_t es_wait;
    char stop_reason[256];
    /* training time of the whole run when this was saved, over every resume */
    double elapsed_s;
    /* The weight EMA (--ema): saving, host floats laid out as the replica's EMA memory
     * (params then buffers) or NULL, written as "ema.<name>" tensors; loading sets has_ema
     * when the file holds them (read with pt_checkpoint_load_ema) and leaves ema NULL. */
    const float *ema;
    int has_ema;
    /* An epoch-end checkpoint carries its epoch's records, the metrics.jsonl line and the
     * metrics.csv row (each with its newline; "" when none), so that a resume can complete
     * an epoch whose records a crash or a full disk cut short. */
    char record_jsonl[4096];
    char record_csv[4096];
    char run_id[40]; /* loading: the stamp's run id ("" for checkpoints without one) */
} pt_train_progress;
#define PT_PROGRESS_SCALE_EVENTS 16

void pt_model_meta_free(pt_model_meta *m);
pt_status pt_model_meta_copy(pt_model_meta *dst, const pt_model_meta *src, pt_error *err);

/* Writes dir/model.safetensors and dir/optimizer.safetensors (when progress is non-NULL)
 * into a temporary sibling directory, then swaps it in: the previous checkpoint in dir
 * survives any failure or crash. Parameters are read from the replica's device. */
pt_status pt_checkpoint_save(const char *dir, pt_replica *r, const pt_model_meta *meta,
                             const pt_train_progress *progress, pt_error *err);

/* As pt_checkpoint_save, but the complete checkpoint is left staged beside dir (a reserved
 * dot-name, see core/dircommit.h) instead of replacing it: a later step of the same commit
 * installs it (pt_checkpoint_install_staged), and a crash before that discards it. */
pt_status pt_checkpoint_stage(const char *dir, pt_replica *r, const pt_model_meta *meta,
                              const pt_train_progress *progress, pt_error *err);

/* Installs the checkpoint staged for dir when its stamp is (run_id, epoch, global_step),
 * else discards it. *installed: 1 when it replaced dir. Nothing staged is PT_OK. */
pt_status pt_checkpoint_install_staged(const char *dir, const char *run_id, int64_t epoch, int64_t global_step,
                                       int *installed, pt_error *err);

/* The writer's repair of dir after a crash inside a commit (see pt_dir_recover); readers
 * never call it: they read the last complete state as it is. */
pt_status pt_checkpoint_recover(const char *dir, pt_error *err);

/* The directory a reader should open for checkpoint dir: dir, or while (or after) a commit
 * was cut short between its renames, the previous complete checkpoint beside it. Changes
 * nothing. Returns 1 when that previous checkpoint was chosen. */
int pt_checkpoint_resolve(const char *dir, char *buf, size_t n);

/* The "ema.<name>" tensors of dir/optimizer.safetensors into ema (params then buffers, the
 * replica's EMA layout): every parameter and buffer, exact shapes, or an error. */
pt_status pt_checkpoint_load_ema(const char *dir, pt_replica *r, float *ema, pt_error *err);

/* Reads only the metadata of dir/model.safetensors (to build the right net). */
pt_status pt_checkpoint_read_meta(const char *dir, pt_model_meta *meta, pt_error *err);

/* Loads parameters and buffers (strict: every name present, no extra, exact shapes),
 * and, when progress is non-NULL, optimizer state and progress from optimizer.safetensors
 * (the optimizer kind must match the replica's). Every loaded value is validated before
 * it is used, and a bad one is PT_ERR_FORMAT naming the file, the tensor or key and what
 * was expected: parameters, BatchNorm statistics and the weight EMA finite and within
 * +-1e10 (running variances >= 0), optimizer state finite (mean squares >= 0), metadata
 * mean in [-1000, 1000] and std in [1e-6, 1000] as float32, best_top1 -1 or in [0, 1], the
 * seed an integer in the uint64 range. */
pt_status pt_checkpoint_load(const char *dir, pt_replica *r, pt_train_progress *progress,
                             pt_error *err);

/* Reads the parameters and buffers of dir/model.safetensors into host memory, without a
 * device, with pt_checkpoint_load's checks (every tensor of net present with its exact
 * dtype and shape, nothing else, finite parameters): *params gets pt_net_param_region(net)
 * floats and *buffers pt_net_buffer_region(net), each tensor at its offset (free() both).
 * net must be finished. On failure both are NULL. */
pt_status pt_checkpoint_read_model(const char *dir, const pt_net *net, float **params, float **buffers,
                                   pt_error *err);

#endif
