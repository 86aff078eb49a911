/* pt_dataset's lifetime and the dispatch from a user's dataset spec to the reader that
 * understands it. New data sources register here, never in the loader. */
#include "data/dataset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/fashion_mnist.h"

int64_t pt_dataset_sample_bytes(const pt_dataset *ds)
{
    return (int64_t)ds->channels * ds->height * ds->width;
}

pt_status pt_dataset_sample(const pt_dataset *ds, int64_t index, uint8_t *scratch,
                            const uint8_t **pixels, pt_error *err)
{
    if (index < 0 || index >= ds->count)
        return pt_fail(err, PT_ERR_INVALID, "%s: sample %lld out of range [0, %lld)", ds->name,
                       (long long)index, (long long)ds->count);
    if (ds->pixels) {
        *pixels = ds->pixels + index * pt_dataset_sample_bytes(ds);
        return PT_OK;
    }
    if (!ds->fetch)
        return pt_fail(err, PT_ERR_INVALID, "%s: dataset has neither pixels nor a fetch function",
                       ds->name);
    PT_TRY(ds->fetch(ds, index, scratch, err));
    *pixels = scratch;
    return PT_OK;
}

void pt_dataset_free(pt_dataset *ds)
{
    if (!ds) return;
    if (ds->release) ds->release(ds);
    free(ds->pixels);
    free(ds->labels);
    if (ds->class_names) {
        for (int i = 0; i < ds->num_classes; i++) free(ds->class_names[i]);
        free(ds->class_names);
    }
    memset(ds, 0, sizeof *ds);
}

pt_status pt_dataset_set_class_names(pt_dataset *ds, const char *const *names, int n,
                                     pt_error *err)
{
    char **v = calloc((size_t)(n > 0 ? n : 1), sizeof *v);
    if (!v) return pt_fail(err, PT_ERR_NOMEM, "out of memory for %d class names", n);
    for (int i = 0; i < n; i++) {
        v[i] = strdup(names[i]);
        if (!v[i]) {
            for (int j = 0; j < i; j++) free(v[j]);
            free(v);
            return pt_fail(err, PT_ERR_NOMEM, "out of memory for %d class names", n);
        }
    }
    if (ds->class_names) {
        for (int i = 0; i < ds->num_classes; i++) free(ds->class_names[i]);
        free(ds->class_names);
    }
    ds->class_names = v;
    ds->num_classes = n;
    return PT_OK;
}

/* The last path component contains "mnist" but not "fashion" (case-insensitive). */
static int names_digit_mnist(const char *dir)
{
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && dir[start - 1] != '/') start--;
    char last[256];
    size_t n = len - start < sizeof last - 1 ? len - start : sizeof last - 1;
    for (size_t i = 0; i < n; i++) {
        char c = dir[start + i];
        last[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    last[n] = '\0';
    return strstr(last, "mnist") && !strstr(last, "fashion");
}

pt_status pt_dataset_open(const char *spec, int train, int64_t limit, pt_dataset *out,
                          pt_error *err)
{
    memset(out, 0, sizeof *out);
    if (!spec || !*spec) return pt_fail(err, PT_ERR_INVALID, "empty dataset name");
    struct stat st;
    if (stat(spec, &st) != 0) {
        if (errno == ENOENT && strcmp(spec, "fashion-mnist") == 0)
            return pt_fashion_mnist_load(PT_FASHION_MNIST_DIR, train, limit, out, err);
        return pt_fail(err, PT_ERR_IO, "dataset %s: %s (expected a directory of Fashion-MNIST "
                       "IDX files, or the name fashion-mnist)", spec, strerror(errno));
    }
    if (S_ISDIR(st.st_mode) && pt_mnist_dir_has_split(spec, train)) {
        if (names_digit_mnist(spec)) return pt_mnist_load(spec, train, limit, out, err);
        return pt_fashion_mnist_load(spec, train, limit, out, err);
    }
    return pt_fail(err, PT_ERR_FORMAT,
                   "dataset %s: not a dataset this build reads: expected a directory holding "
                   "%s-images-idx3-ubyte[.gz] and %s-labels-idx1-ubyte[.gz] (Fashion-MNIST/MNIST)",
                   spec, train ? "train" : "t10k", train ? "train" : "t10k");
}
