/* Loads an MNIST-style directory (images + labels IDX pair per split) into a pt_dataset,
 * checking that the two files agree: same count, every label a valid class. */
#include "data/fashion_mnist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/idx.h"

static const char *const fashion_classes[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
static const char *const digit_classes[10] = {"0", "1", "2", "3", "4",
                                              "5", "6", "7", "8", "9"};

/* Something that is not a directory: a FIFO or device under a data file's name counts, so
 * that reading it reports what it is instead of the directory looking like no data set. */
static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && !S_ISDIR(st.st_mode);
}

/* Fills path with DIR/BASE.gz when it exists, else DIR/BASE when that exists (else the .gz
 * name, so that the error names what was looked for first). */
static pt_status find_file(const char *dir, const char *base, char *path, size_t size,
                           pt_error *err)
{
    int n = snprintf(path, size, "%s/%s", dir, base);
    if (n < 0 || (size_t)n + 4 > size)
        return pt_fail(err, PT_ERR_INVALID, "dataset directory name too long: %s", dir);
    char raw[4096];
    memcpy(raw, path, (size_t)n + 1);
    strcat(path, ".gz");
    if (!is_file(path) && is_file(raw)) memcpy(path, raw, (size_t)n + 1);
    return PT_OK;
}

int pt_mnist_dir_has_split(const char *dir, int train)
{
    char path[4096];
    if (find_file(dir, train ? "train-images-idx3-ubyte" : "t10k-images-idx3-ubyte", path,
                  sizeof path, NULL) != PT_OK)
        return 0;
    return is_file(path);
}

static pt_status mnist_style_load(const char *dir, int train, int64_t limit, int digits,
                                  pt_dataset *out, pt_error *err)
{
    memset(out, 0, sizeof *out);
    if (limit < 0)
        return pt_fail(err, PT_ERR_INVALID, "sample limit must be >= 0, got %lld",
                       (long long)limit);
    const char *split = train ? "train" : "t10k";
    char img_path[4096], lab_path[4096], base[64];
    snprintf(base, sizeof base, "%s-images-idx3-ubyte", split);
    PT_TRY(find_file(dir, base, img_path, sizeof img_path, err));
    snprintf(base, sizeof base, "%s-labels-idx1-ubyte", split);
    PT_TRY(find_file(dir, base, lab_path, sizeof lab_path, err));

    /* Whole files are checked even under a limit, so that a damaged file is reported at once
     * rather than the day someone trains on all of it; only the kept samples stay in memory. */
    pt_idx img, lab;
    pt_status s = pt_idx_read_checked(img_path, PT_IDX_MAGIC_U8_3D, limit, -1, &img, err);
    if (s != PT_OK) return s;
    s = pt_idx_read_checked(lab_path, PT_IDX_MAGIC_U8_1D, limit, 9, &lab, err);
    if (s != PT_OK) {
        pt_idx_free(&img);
        return s;
    }
    if (lab.dim[0] != img.dim[0]) {
        s = pt_fail(err, PT_ERR_FORMAT, "label count %lld does not match image count %lld in %s",
                    (long long)lab.dim[0], (long long)img.dim[0], lab_path);
        goto fail;
    }
    int64_t n = img.count;
    out->labels = malloc((size_t)n * sizeof *out->labels);
    if (!out->labels) {
        s = pt_fail(err, PT_ERR_NOMEM, "out of memory for %lld labels", (long long)n);
        goto fail;
    }
    for (int64_t i = 0; i < n; i++) out->labels[i] = lab.data[i];
    pt_idx_free(&lab);
    out->pixels = img.data; /* the dataset's now */
    img.data = NULL;
    snprintf(out->name, sizeof out->name, "%s", digits ? "mnist" : "fashion-mnist");
    out->count = n;
    out->channels = 1;
    out->height = (int)img.dim[1];
    out->width = (int)img.dim[2];
    out->num_classes = 10;
    out->mean[0] = digits ? 0.1307f : 0.2860f;
    out->std[0] = digits ? 0.3081f : 0.3530f;
    out->std[1] = out->std[2] = 1.0f;
    s = pt_dataset_set_class_names(out, digits ? digit_classes : fashion_classes, 10, err);
    if (s != PT_OK) pt_dataset_free(out);
    return s;
fail:
    pt_idx_free(&img);
    pt_idx_free(&lab);
    pt_dataset_free(out);
    return s;
}

pt_status pt_fashion_mnist_load(const char *dir, int train, int64_t limit, pt_dataset *out,
                                pt_error *err)
{
    return mnist_style_load(dir, train, limit, 0, out, err);
}

pt_status pt_mnist_load(const char *dir, int train, int64_t limit, pt_dataset *out,
                        pt_error *err)
{
    return mnist_style_load(dir, train, limit, 1, out, err);
}
