/* A labelled image dataset held on the host: what every data source (IDX files, image
 * folders, packed caches) turns into and what the batch loader reads. It only owns
 * memory; it never touches a device and never prints. */
#ifndef PT_DATASET_H
#define PT_DATASET_H

#include <stdint.h>

#include "core/status.h"

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

#endif
