/* Writes a synthetic image-classification dataset in the TinyImageNet-200 layout: wnids.txt,
 * words.txt, train/<wnid>/images/<wnid>_<i>.JPEG with train/<wnid>/<wnid>_boxes.txt,
 * val/images/val_<i>.JPEG with val/val_annotations.txt, optionally test/images/, and
 * synth.json (the parameters). The tree is built under <out>.partial-XXXXXX and renamed
 * to <out> only once complete, so an interrupted run never looks like a finished tree.
 * Images are drawn by data/synth_image.h; the bytes depend on the options, not on threads.
 * Never prints. */
#ifndef PT_SYNTH_H
#define PT_SYNTH_H

#include <stdint.h>

#include "polytrain/status.h"

#define PT_SYNTH_MAX_IMAGES 10000000LL
#define PT_SYNTH_MARKER "synth.json"

typedef struct pt_synth_options {
    int classes;          /* 1..PT_SYNTH_MAX_CLASSES */
    int train_per_class;  /* >= 1 */
    int val_per_class;    /* >= 1 */
    int test_images;      /* >= 0: unlabeled images in test/images/ */
    int size;             /* side in pixels, PT_SYNTH_MIN_SIZE..PT_SYNTH_MAX_SIZE */
    int quality;          /* JPEG quality 1..100 */
    double gray_fraction; /* [0, 1]: share of images stored as single-channel JPEGs */
    uint64_t seed;
    int threads;          /* encoding threads (<= 0: 1) */
    int overwrite;        /* replace an existing tree that synth wrote (never anything else) */
    /* Called from the calling thread now and then, and once at the end. */
    void (*progress)(void *user, int64_t done, int64_t total);
    /* Polled from the calling thread; nonzero stops the run (PT_ERR_INTERRUPTED). */
    int (*should_stop)(void *user);
    void *user;
} pt_synth_options;

typedef struct pt_synth_report {
    int64_t train, val, test; /* images written per split */
    int64_t gray;             /* of them, single-channel */
    int64_t files;            /* every file, text files included */
    int64_t bytes;            /* their total size */
    double seconds;
} pt_synth_report;

/* The TinyImageNet-sized defaults: 200 classes, 500 train and 50 val images each, 64x64,
 * quality 90, 1% gray, seed 0, one thread. */
void pt_synth_defaults(pt_synth_options *o);

/* PT_ERR_INVALID naming the first option out of range. */
pt_status pt_synth_check(const pt_synth_options *o, pt_error *err);

typedef enum pt_synth_out_state {
    PT_SYNTH_OUT_MISSING,    /* nothing there: created */
    PT_SYNTH_OUT_EMPTY,      /* an empty directory: used */
    PT_SYNTH_OUT_SYNTH_TREE, /* a tree synth wrote (has synth.json): replaced only with overwrite */
    PT_SYNTH_OUT_OTHER,      /* a non-empty directory synth did not write: never touched */
    PT_SYNTH_OUT_NOT_DIR     /* a file or something else: never touched */
} pt_synth_out_state;

pt_synth_out_state pt_synth_out_state_of(const char *out);

/* Generates the tree into out (see the file comment). Fails without touching out unless
 * it is missing, empty, or (with overwrite) a tree synth wrote. On failure or a stop, the
 * partial tree is removed. rep may be NULL. */
pt_status pt_synth_write(const char *out, const pt_synth_options *o, pt_synth_report *rep, pt_error *err);

#endif
