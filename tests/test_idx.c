/* IDX reading and the MNIST-style dataset loader: valid files in both encodings, and every
 * kind of damage a header or stream can carry, each refused with a message naming the file.
 * The real Fashion-MNIST test set is checked when Debian's package is installed. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "polytrain/dataset.h"
#include "data/fashion_mnist.h"
#include "data/idx.h"
#include "pt_test.h"

static char tmp_root[1024];

static const char *tmp_path(const char *name)
{
    static char buf[4][2048];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp_root, name);
    return buf[k];
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Writes header (magic, dims) then len bytes of data, raw or gzip. */
static void write_idx(const char *path, int gz, uint32_t magic, const uint32_t *dims, int ndim,
                      const uint8_t *data, size_t len)
{
    uint8_t hdr[16];
    put_be32(hdr, magic);
    for (int d = 0; d < ndim; d++) put_be32(hdr + 4 + 4 * d, dims[d]);
    size_t hl = 4 + 4 * (size_t)ndim;
    if (gz) {
        gzFile f = gzopen(path, "wb6");
        if (!f) abort();
        gzwrite(f, hdr, (unsigned)hl);
        if (len) gzwrite(f, data, (unsigned)len);
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        if (!f) abort();
        fwrite(hdr, 1, hl, f);
        if (len) fwrite(data, 1, len, f);
        fclose(f);
    }
}

static uint8_t *pattern(size_t n, uint32_t seed)
{
    uint8_t *p = malloc(n);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        p[i] = (uint8_t)(x >> 24);
    }
    return p;
}

static void test_reads_raw_and_gzip_images_exactly(void)
{
    uint32_t dims[3] = {3, 4, 5};
    uint8_t *data = pattern(60, 1);
    for (int gz = 0; gz < 2; gz++) {
        const char *path = tmp_path(gz ? "ok3.idx.gz" : "ok3.idx");
        write_idx(path, gz, 0x803, dims, 3, data, 60);
        pt_idx idx;
        pt_error err = {0};
        pt_status s = pt_idx_read(path, PT_IDX_MAGIC_U8_3D, &idx, &err);
        CHECKF(s == PT_OK, "gz=%d: %s", gz, err.msg);
        if (s != PT_OK) continue;
        CHECK(idx.ndim == 3 && idx.dim[0] == 3 && idx.dim[1] == 4 && idx.dim[2] == 5);
        CHECK(idx.item_bytes == 20 && idx.count == 3 && idx.first == 0);
        CHECK(memcmp(idx.data, data, 60) == 0);
        pt_idx_free(&idx);
    }
    free(data);
}

static void test_reads_labels_and_item_ranges(void)
{
    uint32_t dims[1] = {10};
    uint8_t lab[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    const char *path = tmp_path("lab.idx.gz");
    write_idx(path, 1, 0x801, dims, 1, lab, 10);
    pt_idx idx;
    pt_error err = {0};
    CHECKF(pt_idx_read(path, PT_IDX_MAGIC_U8_1D, &idx, &err) == PT_OK, "%s", err.msg);
    CHECK(idx.count == 10 && idx.data && idx.data[9] == 9);
    pt_idx_free(&idx);
    CHECKF(pt_idx_read_items(path, PT_IDX_MAGIC_U8_1D, 3, 4, &idx, &err) == PT_OK, "%s", err.msg);
    CHECK(idx.first == 3 && idx.count == 4 && idx.data && idx.data[0] == 3 && idx.data[3] == 6);
    pt_idx_free(&idx);
    CHECK(pt_idx_read_items(path, PT_IDX_MAGIC_U8_1D, 8, 3, &idx, &err) != PT_OK);
    CHECK(idx.data == NULL);
}

static void test_rejects_wrong_magic(void)
{
    uint32_t dims[3] = {2, 2, 2};
    uint8_t data[8] = {0};
    const char *path = tmp_path("magic.idx");
    write_idx(path, 0, 0x0d03, dims, 3, data, 8); /* float data, not unsigned bytes */
    pt_idx idx;
    pt_error err = {0};
    CHECK(pt_idx_read(path, PT_IDX_MAGIC_U8_3D, &idx, &err) == PT_ERR_FORMAT);
    CHECKF(strstr(err.msg, path) && strstr(err.msg, "magic"), "%s", err.msg);
    /* A labels file where images are expected. */
    const char *lab = tmp_path("magic_lab.idx");
    write_idx(lab, 0, 0x801, dims, 1, data, 2);
    CHECK(pt_idx_read(lab, PT_IDX_MAGIC_U8_3D, &idx, &err) == PT_ERR_FORMAT);
    CHECKF(strstr(err.msg, "0x00000801"), "%s", err.msg);
}

static void test_rejects_truncated_data_naming_expected_and_found(void)
{
    uint32_t dims[3] = {4, 10, 10};
    uint8_t *data = pattern(400, 2);
    for (int gz = 0; gz < 2; gz++) {
        const char *path = tmp_path(gz ? "trunc.idx.gz" : "trunc.idx");
        write_idx(path, gz, 0x803, dims, 3, data, 399);
        pt_idx idx;
        pt_error err = {0};
        CHECK(pt_idx_read(path, PT_IDX_MAGIC_U8_3D, &idx, &err) == PT_ERR_FORMAT);
        CHECKF(strstr(err.msg, path) && strstr(err.msg, "expected 400") &&
                   strstr(err.msg, "found 399"),
               "gz=%d: %s", gz, err.msg);
        CHECK(idx.data == NULL);
    }
    /* A header cut short. */
    const char *path = tmp_path("trunc_hdr.idx");
    FILE *f = fopen(path, "wb");
    fwrite("\0\0\x08\x03\0\0\0\x04\0\0", 1, 10, f);
    fclose(f);
    pt_idx idx;
    pt_error err = {0};
    CHECK(pt_idx_read(path, PT_IDX_MAGIC_U8_3D, &idx, &err) == PT_ERR_FORMAT);
    CHECKF(strstr(err.msg, "header"), "%s", err.msg);
    free(data);
}

static void test_rejects_trailing_bytes(void)
{
    uint32_t dims[3] = {4, 10, 10};
    uint8_t *data = pattern(401, 3);
    for (int gz = 0; gz < 2; gz++) {
        const char *path = tmp_path(gz ? "trail.idx.gz" : "trail.idx");
        write_idx(path, gz, 0x803, dims, 3, data, 401);
        pt_idx idx;
        pt_error err = {0};
        CHECK(pt_idx_read(path, PT_IDX_MAGIC_U8_3D, &idx, &err) == PT_ERR_FORMAT);
        CHECKF(strstr(err.msg, path) && strstr(err.msg, "after"), "gz=%d: %s", gz, err.msg);
    }
    free(data);
}

static void test_rejects_corrupt_gzip_stream(void)
{
    /* Data with structure (so deflate uses matches and Huffman codes), 64 KiB. */
    uint32_t dims[3] = {64, 32, 32};
    size_t n = 64 * 32 * 32;
    uint8_t *data = malloc(n);
    for (size_t i = 0; i < n; i++) data[i] = (uint8_t)((i * 7 / 5) ^ (i >> 9));
    const char *good = tmp_path("gz_good.idx.gz");
    write_idx(good, 1, 0x803, dims, 3, data, n);
    FILE *f = fopen(good, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    uint8_t *bytes = malloc((size_t)size);
    fseek(f, 0, SEEK_SET);
    CHECK(fread(bytes, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    CHECK(size > 200);
    int refused = 0, named = 0, trials = 0;
    for (int t = 0; t < 8; t++) {
        uint8_t *bad = malloc((size_t)size);
        memcpy(bad, bytes, (size_t)size);
        long at = size / 4 + (long)t * (size / 16); /* inside the deflate data */
        for (int k = 0; k < 4; k++) bad[at + k] ^= (uint8_t)(0x5a + 13 * k + t);
        const char *path = tmp_path("gz_bad.idx.gz");
        FILE *g = fopen(path, "wb");
        fwrite(bad, 1, (size_t)size, g);
        fclose(g);
        free(bad);
        pt_idx idx;
        pt_error err = {0};
        pt_status s = pt_idx_read(path, PT_IDX_MAGIC_U8_3D, &idx, &err);
        trials++;
        refused += s == PT_ERR_FORMAT;
        named += strstr(err.msg, path) != NULL;
        if (s == PT_OK) pt_idx_free(&idx);
        if (t == 0) printf("  corrupt gzip message: %s\n", err.msg);
    }
    CHECKF(refused == trials, "%d of %d corrupted streams refused", refused, trials);
    CHECKF(named == trials, "%d of %d messages name the file", named, trials);
    free(bytes);
    free(data);
}

/* Huge dimensions announced by a tiny file. In a child process limited to 512 MiB of
 * address space (skipped under AddressSanitizer, which reserves far more), an allocation
 * sized from the header would fail with PT_ERR_NOMEM instead of the truncation error. */
static void test_rejects_huge_dims_without_allocating_them(void)
{
    struct {
        uint32_t dims[3];
        const char *want;
    } cases[] = {
        {{100000000u, 4096, 4096}, "too large"}, /* 1.6e15 bytes */
        {{1000, 2048, 2048}, "truncated"},       /* 4 GiB announced, 16 bytes present */
        {{4000000000u, 1, 1}, "dimension 0"},    /* count over the bound */
        {{10, 5000, 10}, "dimension 1"},         /* rows over the bound */
        {{10, 0, 10}, "dimension 1"},            /* zero */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *path = tmp_path("huge.idx.gz");
        uint8_t data[16] = {1, 2, 3};
        write_idx(path, 1, 0x803, cases[c].dims, 3, data, sizeof data);
        pid_t pid = fork();
        if (pid == 0) {
#if !defined(__SANITIZE_ADDRESS__)
            struct rlimit rl = {512u << 20, 512u << 20};
            setrlimit(RLIMIT_AS, &rl);
#endif
            pt_idx idx;
            pt_error err = {0};
            pt_status s = pt_idx_read(path, PT_IDX_MAGIC_U8_3D, &idx, &err);
            _exit(s == PT_ERR_FORMAT && strstr(err.msg, cases[c].want) ? 0 : 10 + (int)s);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "case %zu: child exit %d", c,
               WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        /* And in this process, for the message. */
        pt_idx idx;
        pt_error err = {0};
        CHECK(pt_idx_read(path, PT_IDX_MAGIC_U8_3D, &idx, &err) == PT_ERR_FORMAT);
        CHECKF(strstr(err.msg, cases[c].want) && strstr(err.msg, path), "case %zu: %s", c,
               err.msg);
    }
}

static void test_missing_file_is_an_io_error_naming_it(void)
{
    pt_idx idx;
    pt_error err = {0};
    const char *path = tmp_path("does-not-exist.idx.gz");
    CHECK(pt_idx_read(path, PT_IDX_MAGIC_U8_3D, &idx, &err) == PT_ERR_IO);
    CHECKF(strstr(err.msg, path), "%s", err.msg);
}

/* A small MNIST-style directory: n images of 4x3, labels given. */
static void make_mnist_dir(const char *dir, int gz, int train, int n_img, const uint8_t *labels,
                           int n_lab)
{
    mkdir(dir, 0755);
    char path[2048];
    const char *split = train ? "train" : "t10k";
    uint32_t idims[3] = {(uint32_t)n_img, 4, 3};
    uint8_t *px = pattern((size_t)n_img * 12, 7);
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte%s", dir, split, gz ? ".gz" : "");
    write_idx(path, gz, 0x803, idims, 3, px, (size_t)n_img * 12);
    uint32_t ldims[1] = {(uint32_t)n_lab};
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte%s", dir, split, gz ? ".gz" : "");
    write_idx(path, gz, 0x801, ldims, 1, labels, (size_t)n_lab);
    free(px);
}

static void test_fashion_mnist_loads_small_dir_with_limit(void)
{
    uint8_t labels[6] = {9, 0, 3, 3, 1, 2};
    const char *dir = tmp_path("fm_ok");
    make_mnist_dir(dir, 1, 0, 6, labels, 6);
    pt_dataset ds;
    pt_error err = {0};
    pt_status s = pt_fashion_mnist_load(dir, 0, 4, &ds, &err);
    CHECKF(s == PT_OK, "%s", err.msg);
    if (s != PT_OK) return;
    uint8_t *px = pattern(6 * 12, 7);
    CHECK(ds.count == 4 && ds.channels == 1 && ds.height == 4 && ds.width == 3);
    CHECK(memcmp(ds.pixels, px, 4 * 12) == 0);
    CHECK(ds.labels[0] == 9 && ds.labels[3] == 3);
    CHECK(ds.num_classes == 10 && strcmp(ds.class_names[0], "T-shirt/top") == 0 &&
          strcmp(ds.class_names[9], "Ankle boot") == 0);
    CHECK(ds.mean[0] == 0.2860f && ds.std[0] == 0.3530f);
    CHECK(strcmp(ds.name, "fashion-mnist") == 0);
    pt_dataset_free(&ds);
    CHECK(ds.pixels == NULL && ds.class_names == NULL);
    free(px);
}

static void test_fashion_mnist_accepts_uncompressed_files(void)
{
    uint8_t labels[3] = {1, 2, 3};
    const char *dir = tmp_path("fm_raw");
    make_mnist_dir(dir, 0, 1, 3, labels, 3);
    pt_dataset ds;
    pt_error err = {0};
    CHECKF(pt_fashion_mnist_load(dir, 1, 0, &ds, &err) == PT_OK, "%s", err.msg);
    CHECK(ds.count == 3 && ds.labels && ds.labels[2] == 3);
    pt_dataset_free(&ds);
}

static void test_label_count_mismatch_is_refused(void)
{
    uint8_t labels[5] = {1, 2, 3, 4, 5};
    const char *dir = tmp_path("fm_mismatch");
    make_mnist_dir(dir, 1, 0, 6, labels, 5);
    pt_dataset ds;
    pt_error err = {0};
    CHECK(pt_fashion_mnist_load(dir, 0, 0, &ds, &err) == PT_ERR_FORMAT);
    CHECKF(strstr(err.msg, "label count 5 does not match image count 6 in") &&
               strstr(err.msg, dir),
           "%s", err.msg);
    CHECK(ds.pixels == NULL && ds.labels == NULL);
}

static void test_label_out_of_range_is_refused(void)
{
    uint8_t labels[4] = {1, 2, 10, 4};
    const char *dir = tmp_path("fm_badlabel");
    make_mnist_dir(dir, 1, 0, 4, labels, 4);
    pt_dataset ds;
    pt_error err = {0};
    CHECK(pt_fashion_mnist_load(dir, 0, 0, &ds, &err) == PT_ERR_FORMAT);
    CHECKF(strstr(err.msg, "label 10") && strstr(err.msg, "sample 2"), "%s", err.msg);
}

static void test_dataset_open_dispatches_and_explains_failures(void)
{
    uint8_t labels[2] = {7, 8};
    const char *digits = tmp_path("my-mnist");
    make_mnist_dir(digits, 1, 0, 2, labels, 2);
    pt_dataset ds;
    pt_error err = {0};
    CHECKF(pt_dataset_open(digits, 0, 0, &ds, &err) == PT_OK, "%s", err.msg);
    CHECK(strcmp(ds.name, "mnist") == 0 && ds.class_names && strcmp(ds.class_names[7], "7") == 0);
    pt_dataset_free(&ds);
    /* The training split is absent there. */
    CHECK(pt_dataset_open(digits, 1, 0, &ds, &err) == PT_ERR_FORMAT);
    CHECKF(strstr(err.msg, "train-images-idx3-ubyte"), "%s", err.msg);
    const char *empty = tmp_path("empty_dir");
    mkdir(empty, 0755);
    CHECK(pt_dataset_open(empty, 0, 0, &ds, &err) == PT_ERR_FORMAT);
    CHECKF(strstr(err.msg, empty) && strstr(err.msg, "expected"), "%s", err.msg);
    CHECK(pt_dataset_open(tmp_path("nowhere"), 0, 0, &ds, &err) == PT_ERR_IO);
    CHECKF(strstr(err.msg, "nowhere"), "%s", err.msg);
    CHECK(pt_dataset_open(digits, 0, -1, &ds, &err) == PT_ERR_INVALID);
}

static void test_real_fashion_mnist_test_and_train_sets(void)
{
    const char *dir = PT_FASHION_MNIST_DIR;
    struct stat st;
    if (stat(dir, &st) != 0) {
        printf("SKIP test_real_fashion_mnist_test_and_train_sets: %s not installed "
               "(Debian package dataset-fashion-mnist)\n", dir);
        return;
    }
    pt_dataset ds;
    pt_error err = {0};
    pt_status s = pt_dataset_open("fashion-mnist", 0, 0, &ds, &err);
    CHECKF(s == PT_OK, "%s", err.msg);
    if (s != PT_OK) return;
    CHECK(ds.count == 10000 && ds.channels == 1 && ds.height == 28 && ds.width == 28);
    int hist[10] = {0};
    for (int64_t i = 0; i < ds.count; i++) hist[ds.labels[i]]++;
    int all1000 = 1;
    for (int c = 0; c < 10; c++) all1000 &= hist[c] == 1000;
    CHECK(all1000);
    double sum = 0;
    for (int64_t i = 0; i < ds.count * 784; i++) sum += ds.pixels[i];
    double mean = sum / (ds.count * 784.0) / 255.0;
    CHECKF(fabs(mean - 0.286) < 0.005, "pixel mean %.4f", mean);
    pt_dataset_free(&ds);
    s = pt_fashion_mnist_load(dir, 1, 0, &ds, &err);
    CHECKF(s == PT_OK, "%s", err.msg);
    if (s != PT_OK) return;
    int hist6[10] = {0}, all6000 = 1;
    for (int64_t i = 0; i < ds.count; i++) hist6[ds.labels[i]]++;
    for (int c = 0; c < 10; c++) all6000 &= hist6[c] == 6000;
    CHECK(ds.count == 60000 && all6000);
    pt_dataset_free(&ds);
}

/* A gzip bomb: 256k zero images (200 MB) in a 200 KB file. Loading 64 of them must cost the
 * memory of 64 images, not of what the file decompresses to, and the whole file is still
 * checked (a bad label at its end is found). Measured in a child, by its peak RSS. */
static void test_limit_reads_only_what_it_keeps(void)
{
    const uint32_t n = 256u * 1024u;
    const char *dir = tmp_path("bomb");
    mkdir(dir, 0777);
    char path[2048];
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte.gz", dir);
    gzFile f = gzopen(path, "wb1");
    CHECK(f != NULL);
    if (!f) return;
    uint8_t hdr[16];
    put_be32(hdr, 0x803);
    put_be32(hdr + 4, n);
    put_be32(hdr + 8, 28);
    put_be32(hdr + 12, 28);
    gzwrite(f, hdr, sizeof hdr);
    static uint8_t zeros[784 * 1024];
    for (uint32_t i = 0; i < n / 1024; i++) gzwrite(f, zeros, sizeof zeros);
    gzclose(f);
    uint8_t *labels = calloc(n, 1);
    CHECK(labels != NULL);
    if (!labels) return;
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte.gz", dir);
    write_idx(path, 1, 0x801, &n, 1, labels, n);
    pid_t pid = fork();
    if (pid == 0) {
        pt_dataset ds;
        pt_error err = {0};
        pt_status s = pt_fashion_mnist_load(dir, 1, 64, &ds, &err);
        if (s != PT_OK) fprintf(stderr, "%s\n", err.msg);
        _exit(s == PT_OK && ds.count == 64 ? 0 : 1);
    }
    int st = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    wait4(pid, &st, 0, &ru);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child exit %d", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    /* 200 MB if the whole file were held; the loader itself needs a few MB. */
    CHECKF(ru.ru_maxrss < 100 * 1024, "peak RSS %ld KiB loading 64 of %u images", ru.ru_maxrss, n);
    /* The rest is still read: a bad last label is reported. */
    labels[n - 1] = 10;
    write_idx(path, 1, 0x801, &n, 1, labels, n);
    pt_dataset ds;
    pt_error err = {0};
    CHECK(pt_fashion_mnist_load(dir, 1, 64, &ds, &err) == PT_ERR_FORMAT);
    CHECKF(strstr(err.msg, "label 10 of sample 262143"), "%s", err.msg);
    free(labels);
}

int main(void)
{
    const char *t = getenv("PT_TEST_TMP");
    /* A fixed name, so that reruns overwrite rather than pile up. */
    snprintf(tmp_root, sizeof tmp_root, "%s/test_idx%s", t && *t ? t : "/tmp",
             t && *t ? "" : ".tmp");
    if (t && *t) mkdir(t, 0755);
    if (mkdir(tmp_root, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "cannot create %s\n", tmp_root);
        return 1;
    }
    RUN(test_reads_raw_and_gzip_images_exactly);
    RUN(test_reads_labels_and_item_ranges);
    RUN(test_rejects_wrong_magic);
    RUN(test_rejects_truncated_data_naming_expected_and_found);
    RUN(test_rejects_trailing_bytes);
    RUN(test_rejects_corrupt_gzip_stream);
    RUN(test_rejects_huge_dims_without_allocating_them);
    RUN(test_missing_file_is_an_io_error_naming_it);
    RUN(test_fashion_mnist_loads_small_dir_with_limit);
    RUN(test_fashion_mnist_accepts_uncompressed_files);
    RUN(test_label_count_mismatch_is_refused);
    RUN(test_label_out_of_range_is_refused);
    RUN(test_limit_reads_only_what_it_keeps);
    RUN(test_dataset_open_dispatches_and_explains_failures);
    RUN(test_real_fashion_mnist_test_and_train_sets);
    TEST_EXIT();
}
