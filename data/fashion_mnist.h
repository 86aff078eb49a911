/* Fashion-MNIST and MNIST from a directory of IDX files, as Debian's dataset-fashion-mnist
 * installs them (train-images-idx3-ubyte.gz, ..., or the same names uncompressed). */
#ifndef PT_FASHION_MNIST_H
#define PT_FASHION_MNIST_H

#include <stdint.h>

#include "polytrain/status.h"
#include "polytrain/dataset.h"

/* train: 1 the 60000 training samples, 0 the 10000 test samples; limit: keep the first
 * `limit` samples (0 keeps all). Labels must number as many as the images and be < 10.
 * On failure *out is left zeroed. */
pt_status pt_fashion_mnist_load(const char *dir, int train, int64_t limit, pt_dataset *out,
                                pt_error *err);

/* The same files read as handwritten digits: classes "0".."9", mean 0.1307, std 0.3081. */
pt_status pt_mnist_load(const char *dir, int train, int64_t limit, pt_dataset *out,
                        pt_error *err);

/* 1 when dir holds the images file of the split (compressed or not). */
int pt_mnist_dir_has_split(const char *dir, int train);

#endif
