/* Turns a host dataset into normalised float batches: the epoch order, augmentation and
 * normalisation, optionally one batch ahead on a background thread. Every random choice
 * is a pure function of (seed, epoch, dataset index), so a batch's content never depends
 * on batch size, thread count, device count or where a run was resumed. No allocation
 * after pt_loader_init. */
#ifndef PT_LOADER_H
#define PT_LOADER_H

#include <pthread.h>
#include <stdint.h>

#include "polytrain/status.h"
#include "polytrain/dataset.h"

typedef struct pt_loader_options {
    int batch_size;        /* samples per batch, > 0 */
    int shuffle;           /* 1: a fresh permutation each epoch; 0: dataset order */
    int drop_last;         /* 1: skip a short last batch (training only) */
    uint64_t seed;         /* keys the permutation and the augmentation */
    int flip;              /* random horizontal flip with probability 0.5 */
    int crop_pad;          /* > 0: random crop of the original size from the image zero-padded
                              by crop_pad pixels on each side */
    int prefetch;          /* 1: a producer thread assembles the next batch meanwhile */
    const int64_t *subset; /* optional: iterate over these dataset indices only (e.g. a
                              train/validation split); the caller keeps it alive */
    int64_t subset_count;
    /* Fields below are zero in older callers, which keeps their behaviour. */
    int workers;           /* threads filling batches ahead (0: 1 with prefetch, else none) */
    int ring;              /* batches held ready ahead (0: workers + 1, at least 2) */
    float rrc_scale;       /* > 0: random-resized-crop (area scale in [rrc_scale, 1], aspect
                              ratio in [3/4, 4/3], bilinear) instead of the padded crop */
    float jitter;          /* > 0: brightness, contrast, saturation factors in [1-j, 1+j] */
    int cutout;            /* > 0: a cutout x cutout square set to 0 after normalisation */
    float mixup_alpha;     /* > 0: mixup with lam ~ Beta(a, a); batches carry y2 and lam */
    float cutmix_alpha;    /* > 0: cutmix (with mixup too: either, with probability 1/2) */
    int rank, world;       /* world > 1: this rank's share of each global batch of
                              batch_size * world samples (split as evenly as possible) */
    /* Optional allocator for the batch buffers (pinned host memory of a backend). */
    void *(*host_alloc)(void *ctx, size_t bytes);
    void (*host_free)(void *ctx, void *ptr);
    void *alloc_ctx;
    /* > 0: what the batches' consumer was built for (a model's input and classes). A dataset
     * of another sample shape, or with a label outside [0, num_classes), is refused at init,
     * and a batch is never made of samples of another shape than init saw, so that a
     * consumer never reads past a sample or a class. */
    int channels, height, width, num_classes;
} pt_loader_options;

/* Parses an --augment list into opt's augmentation fields: none, flip, crop (pad 4),
 * crop=N, rrc (scale 0.08), rrc=F, jitter (0.4), jitter=F, cutout (size/4), cutout=N,
 * mixup (alpha 0.2), mixup=F, cutmix (alpha 1.0), cutmix=F. height: the sample side, for
 * cutout's default. On a bad entry returns PT_ERR_INVALID naming it; opt is then unchanged. */
pt_status pt_augment_parse(const char *list, int height, pt_loader_options *opt, pt_error *err);

/* One batch, pointing into the loader's buffers: valid until the next pt_loader_next,
 * pt_loader_seek/start_epoch or pt_loader_free. */
typedef struct pt_host_batch {
    float *x;           /* n * C*H*W, NCHW, normalised */
    int32_t *y;         /* n labels */
    int64_t *index;     /* n dataset indices */
    int n;              /* samples; 0 once the epoch is exhausted */
    int64_t batch;      /* position of this batch in the epoch */
    int64_t epoch;
    int32_t *y2;        /* mixup/cutmix only (else NULL): the partner sample's label */
    float *lam;         /* mixup/cutmix only: the weight of y; 1 - lam is y2's */
    int channels, height, width; /* the shape of each of the n samples in x */
} pt_host_batch;

typedef struct pt_loader_slot {
    float *x;
    int32_t *y;
    int64_t *index;
    uint8_t *scratch;   /* one sample, for datasets decoded on demand */
    uint8_t *scratch2;  /* mixing partner's sample (mixup/cutmix, decoded on demand) */
    float *mix;         /* mixing partner's augmented sample */
    int32_t *y2;
    float *lam;
    int n;
    int64_t batch, gen;
    int state;          /* empty, filling, ready, in use */
    pt_status status;
    pt_error error;
} pt_loader_slot;

typedef struct pt_loader {
    const pt_dataset *ds;
    pt_loader_options opt;
    int64_t n;              /* samples per epoch (dataset count or subset count) */
    int64_t *order;         /* this epoch's dataset indices, n long */
    float lut[3][256];      /* pixel -> normalised value per channel */
    int64_t epoch;
    int64_t next_batch;     /* the consumer's next batch */
    pt_loader_slot *slot;
    int nslots;             /* 1 without workers, else the ring's size */
    /* workers only: they fill batch `produce` of generation `gen` */
    pthread_t *threads;
    int nthreads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t produce, gen;
    int stop, started;
    int mixing;             /* mixup or cutmix on */
    int64_t rank_samples;   /* this rank's samples per epoch */
    double wait_s;          /* total time pt_loader_next spent waiting for a batch */
    int channels, height, width; /* the sample shape the buffers were sized for at init */
} pt_loader;

/* Seconds pt_loader_next has spent waiting for batches (filling them itself without
 * workers) since init: the trainer's "time waiting for data". */
double pt_loader_wait_seconds(const pt_loader *ld);

/* Copies *opt; ds (and opt->subset) must outlive the loader. Allocates every buffer. */
pt_status pt_loader_init(pt_loader *ld, const pt_dataset *ds, const pt_loader_options *opt,
                         pt_error *err);
/* Stops the producer thread (if any) and frees every buffer; safe on a zeroed loader. */
void pt_loader_free(pt_loader *ld);

/* Samples per epoch, and batches per epoch (the short last one counted unless drop_last). */
int64_t pt_loader_samples_per_epoch(const pt_loader *ld);
int64_t pt_loader_batches_per_epoch(const pt_loader *ld);

/* Positions the loader at batch `batch` (0-based) of `epoch` (>= 0), e.g. to resume. */
pt_status pt_loader_seek(pt_loader *ld, int64_t epoch, int64_t batch, pt_error *err);
pt_status pt_loader_start_epoch(pt_loader *ld, int64_t epoch, pt_error *err);

/* The next batch of the current epoch; out->n == 0 when the epoch is over. */
pt_status pt_loader_next(pt_loader *ld, pt_host_batch *out, pt_error *err);

/* The epoch's permutation of [0, n): Fisher-Yates whose draw for position i is
 * pt_rng_below(seed, PT_RNG_SHUFFLE, epoch, i, 0, i + 1). */
void pt_loader_permutation(uint64_t seed, int64_t epoch, int64_t n, int64_t *perm);

/* Writes dataset sample `index`, augmented for `epoch` as opt asks, normalised, as CHW
 * floats: the very function batches are made of (exposed for tests and predict-style use).
 * Crop first (offsets dy, dx = pt_rng_below(seed, AUGMENT, epoch, index, 1 / 2, 2*pad+1)),
 * then flip when pt_rng_uniform(seed, AUGMENT, epoch, index, 0) < 0.5. */
void pt_loader_augment_sample(const pt_loader *ld, const uint8_t *pixels, int64_t index,
                              int64_t epoch, int augment, float *dst);

#endif
