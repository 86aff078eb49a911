/* A labelled image dataset held on the host: what every data source (IDX files, image
 * folders, packed caches) turns into and what the batch loader reads. It only owns
 * memory; it never touches a device and never prints. */
#ifndef PT_DATASET_H
#define PT_DATASET_H

#include <stdint.h>

#include "polytrain/status.h"

/* Where `pt_dataset_open("fashion-mnist", ...)` looks (Debian's dataset-fashion-mnist). */
#define PT_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

typedef struct pt_dataset pt_dataset;

/* Decodes sample `index` (CHW, channels*height*width bytes) into dst. Set by datasets that
 * do not hold every sample in memory (pixels == NULL); must be safe to call from several
 * threads at once. */
typedef pt_status (*pt_dataset_fetch_fn)(const pt_dataset *ds, int64_t index, uint8_t *dst,
                                         pt_error *err);

struct pt_dataset {
    char name[64];              /* "fashion-mnist", "mnist", ... */
    int64_t count;              /* samples */
    int channels, height, width;
    uint8_t *pixels;            /* count * C*H*W, CHW per sample; NULL when fetch is set */
    int32_t *labels;            /* count, each in [0, num_classes) */
    int num_classes;
    char **class_names;         /* num_classes strings, owned */
    float mean[3], std[3];      /* per channel: x = (pixel/255 - mean) / std */
    pt_dataset_fetch_fn fetch;  /* lazily decoded datasets only, else NULL */
    void *impl;                 /* fetch's private state */
    void (*release)(pt_dataset *ds); /* frees impl; called by pt_dataset_free */
    char source[1024];          /* the file (or directory and split) the samples come from, for
                                   messages; set by pt_dataset_open_ex */
};

/* Bytes of one sample: channels * height * width. */
int64_t pt_dataset_sample_bytes(const pt_dataset *ds);

/* Pointer to sample `index`'s CHW pixels: into ds->pixels when the dataset is in memory,
 * else decoded by ds->fetch into scratch (sample_bytes long) and scratch is returned. */
pt_status pt_dataset_sample(const pt_dataset *ds, int64_t index, uint8_t *scratch,
                            const uint8_t **pixels, pt_error *err);

/* Frees everything the dataset owns and zeroes it; safe on a zeroed or freed dataset. */
void pt_dataset_free(pt_dataset *ds);

/* Sets ds->class_names to copies of names[0..n); returns PT_ERR_NOMEM on failure. */
pt_status pt_dataset_set_class_names(pt_dataset *ds, const char *const *names, int n,
                                     pt_error *err);

/* Opens the dataset named by spec, choosing the reader from what the path holds:
 *   - a directory with MNIST-style IDX files (train-images-idx3-ubyte[.gz], ...): Fashion-MNIST,
 *     or MNIST digits when the directory's name contains "mnist" but not "fashion";
 *   - the word "fashion-mnist" when no such path exists: PT_FASHION_MNIST_DIR.
 * train: 1 the training split, 0 the test split. limit: keep the first `limit` samples
 * (0 keeps all). On failure *out is left zeroed. */
pt_status pt_dataset_open(const char *spec, int train, int64_t limit, pt_dataset *out,
                          pt_error *err);

/* How image datasets (TinyImageNet, image folders) are turned into samples. A zeroed
 * struct gives the defaults. */
enum { PT_CACHE_AUTO = 0, PT_CACHE_OFF = 1 };
typedef struct pt_data_options {
    int64_t limit;            /* keep the first `limit` samples (0: all) */
    int channels, height, width; /* sample shape; 0: the source's own (TinyImageNet 3x64x64,
                                    folder: 3 x the first image's size). A packed cache
                                    (pack:) is never resized: it keeps its own shape, which
                                    the caller compares (pt_dataset_check_compatible) */
    double val_split;         /* folder: held-out fraction of each class (0: 0.1) */
    uint64_t split_seed;      /* folder: keys the held-out choice */
    int skip_bad;             /* 1: images that fail to decode are left out and counted */
    int cache;                /* PT_CACHE_AUTO: build or reuse a packed cache (rebuilt when the
                                 source changed); PT_CACHE_OFF: decode the files on the fly */
    const char *cache_dir;    /* NULL: $XDG_CACHE_HOME/polytrain or ~/.cache/polytrain */
    int threads;              /* packing threads (0: the machine's cores) */
    void (*progress)(void *user, int64_t done, int64_t total); /* while packing */
    /* Polled while packing (NULL: never): nonzero stops it, leaving no cache and no temporary
     * file, and the open fails with PT_ERR_INTERRUPTED (a Ctrl-C) */
    int (*cancelled)(void *user);
    void *user;
} pt_data_options;

typedef struct pt_data_report {
    char kind[16];            /* "fashion-mnist", "mnist", "tinyimagenet", "folder", "pack" */
    char cache_path[4096];    /* the cache used, or "" */
    int cache_action;         /* 0 none, 1 reused, 2 built, 3 rebuilt */
    char rebuild_reason[1024];/* why an existing cache was rebuilt */
    int64_t gray;             /* samples decoded from single-channel images */
    int64_t skipped;          /* images left out as undecodable (skip_bad) */
    double pack_s;            /* seconds spent packing */
} pt_data_report;

/* pt_dataset_open with options, understanding every spec form:
 *   fashion-mnist[:DIR], mnist:DIR, tinyimagenet:DIR, folder:DIR, pack:TRAIN[,VAL],
 *   or a plain path: an IDX directory, a TinyImageNet directory (has wnids.txt) or a cache.
 * train: 1 the training split, 0 the validation/test split. rep may be NULL. */
pt_status pt_dataset_open_ex(const char *spec, int train, const pt_data_options *opt,
                             pt_dataset *out, pt_data_report *rep, pt_error *err);

/* The forms a dataset spec takes, for messages that list them. */
#define PT_DATASET_FORMS                                                                            \
    "fashion-mnist[:DIR], mnist:DIR, tinyimagenet:DIR, folder:DIR, pack:TRAIN[,VAL], or the path of " \
    "an IDX directory (Fashion-MNIST/MNIST), a TinyImageNet directory or a packed cache"

/* Checks the form of a spec without reading the dataset. PT_ERR_INVALID, with a message that
 * lists PT_DATASET_FORMS and suggests the nearest kind when it looks like a misspelling, for a
 * KIND: prefix that is none of the kinds (`tinyimagent:/x`), a kind without its path
 * (`folder:`), or a bare word close to a kind that names no file (`mnist`); PT_OK otherwise,
 * where the path may still not exist. A spec that names an existing file or directory is a
 * path, colons and all, unless its prefix is one of the kinds. */
pt_status pt_dataset_spec_check(const char *spec, pt_error *err);

/* What a consumer of samples depends on: the sample shape, and the classes in order (a
 * label means the same class on both sides only when the names agree position by position). */
typedef struct pt_dataset_shape {
    int channels, height, width, num_classes;
    const char *const *class_names; /* num_classes names, or NULL: not known, not compared */
} pt_dataset_shape;

/* The shape of a dataset (its class names borrowed). */
pt_dataset_shape pt_dataset_shape_of(const pt_dataset *ds);

/* The one compatibility check between two sides of a run: training and validation data, a
 * checkpoint and the data it is evaluated on or resumed with. `have` must equal `want` in
 * channels, height, width, class count and, where both know them, the class names in order.
 * PT_ERR_MISMATCH otherwise, naming both sides (want_what, have_what: e.g. "training data
 * 'x.ptpack'") and every difference: "1 channel, expected 3; 12x12 images, expected 16x16;
 * class 0 is 'ant', expected 'cat'". */
pt_status pt_dataset_check_compatible(const pt_dataset_shape *want, const char *want_what,
                                      const pt_dataset_shape *have, const char *have_what,
                                      pt_error *err);

/* The cache file pt_dataset_open_ex uses for a source, split and shape (dir created). */
pt_status pt_dataset_cache_path(const char *kind, const char *root, int split,
                                const pt_data_options *opt, int channels, int height, int width,
                                char *path, size_t size, pt_error *err);

#endif
