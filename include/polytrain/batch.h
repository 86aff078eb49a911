/* A source of host batches, the one thing the trainer needs from data/: core never
 * includes data/ headers; data/ adapts its loaders to this interface. */
#ifndef PT_BATCH_H
#define PT_BATCH_H

#include <stdint.h>

#include "polytrain/status.h"

typedef struct pt_batch {
    const float *x;       /* n * C*H*W normalised, NCHW */
    const int32_t *y;     /* n labels */
    const int64_t *index; /* n dataset indices (may be NULL) */
    const int32_t *y2;    /* mixup/cutmix: second labels, or NULL */
    const float *lam;     /* mixup/cutmix: weight of y per sample (1 - lam for y2), or NULL */
    int n;                /* 0: the epoch is over */
    int64_t batch;        /* position of this batch within the epoch */
} pt_batch;

typedef struct pt_batch_source {
    void *ctx;
    int64_t (*samples_per_epoch)(void *ctx);
    int64_t (*batches_per_epoch)(void *ctx);
    pt_status (*start_epoch)(void *ctx, int64_t epoch, pt_error *err);
    /* out is zeroed by the caller: a source sets the fields it has. */
    pt_status (*next)(void *ctx, pt_batch *out, pt_error *err);
    /* Optional (NULL when the source cannot): start epoch `epoch` at batch `batch`, the
     * batches before it skipped; a run resumed from a mid-epoch checkpoint needs it. Each
     * batch must then be the one a start at batch 0 would have given at that position. */
    pt_status (*seek)(void *ctx, int64_t epoch, int64_t batch, pt_error *err);
    /* Optional: seconds next() has spent so far waiting for data (the loader's stalls). */
    double (*wait_seconds)(void *ctx);
} pt_batch_source;

#endif
