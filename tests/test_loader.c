/* The batch loader: epoch permutations, augmentation keyed by (seed, epoch, dataset index)
 * whatever the batch size or prefetching, the crop/flip/normalisation semantics, eval order,
 * seeking for resume, lazily fetched datasets and error propagation through the prefetcher. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "polytrain/dataset.h"
#include "polytrain/loader.h"
#include "pt_test.h"

/* A dataset of n samples CxHxW with pseudo-random pixels; labels = index % 10. */
static pt_dataset make_ds(int64_t n, int C, int H, int W, uint32_t seed)
{
    pt_dataset ds;
    memset(&ds, 0, sizeof ds);
    snprintf(ds.name, sizeof ds.name, "synthetic");
    ds.count = n;
    ds.channels = C;
    ds.height = H;
    ds.width = W;
    ds.pixels = malloc((size_t)(n * C * H * W));
    ds.labels = malloc((size_t)n * sizeof *ds.labels);
    uint32_t x = seed * 747796405u + 2891336453u;
    for (int64_t i = 0; i < n * C * H * W; i++) {
        x = x * 1664525u + 1013904223u;
        ds.pixels[i] = (uint8_t)(x >> 24);
    }
    for (int64_t i = 0; i < n; i++) ds.labels[i] = (int32_t)(i % 10);
    ds.num_classes = 10;
    for (int c = 0; c < 3; c++) {
        ds.mean[c] = 0.25f + 0.1f * c;
        ds.std[c] = 0.3f + 0.05f * c;
    }
    return ds;
}

static pt_loader_options opts(int B, int shuffle, int augment, int prefetch)
{
    pt_loader_options o;
    memset(&o, 0, sizeof o);
    o.batch_size = B;
    o.shuffle = shuffle;
    o.seed = 1234;
    o.flip = augment;
    o.crop_pad = augment ? 2 : 0;
    o.prefetch = prefetch;
    return o;
}

/* Runs one epoch; stores each sample's output at out[index] and the visiting order. */
static int64_t run_epoch(const pt_dataset *ds, const pt_loader_options *o, int64_t epoch,
                         float *out, int64_t *order)
{
    pt_loader ld;
    pt_error err = {0};
    if (pt_loader_init(&ld, ds, o, &err) != PT_OK) {
        CHECKF(0, "init: %s", err.msg);
        return -1;
    }
    int64_t sample = pt_dataset_sample_bytes(ds), seen = 0;
    int labels_ok = 1, epoch_ok = 1;
    CHECK(pt_loader_start_epoch(&ld, epoch, &err) == PT_OK);
    for (;;) {
        pt_host_batch b;
        if (pt_loader_next(&ld, &b, &err) != PT_OK) {
            CHECKF(0, "next: %s", err.msg);
            break;
        }
        if (b.n == 0) break;
        epoch_ok &= b.epoch == epoch;
        for (int k = 0; k < b.n; k++) {
            if (out) memcpy(out + b.index[k] * sample, b.x + k * sample, sizeof(float) * sample);
            if (order) order[seen] = b.index[k];
            labels_ok &= b.y[k] == ds->labels[b.index[k]];
            seen++;
        }
    }
    CHECK(labels_ok && epoch_ok);
    pt_loader_free(&ld);
    return seen;
}

static int is_permutation(const int64_t *p, int64_t n)
{
    char *hit = calloc((size_t)n, 1);
    int ok = 1;
    for (int64_t i = 0; i < n && ok; i++) {
        if (p[i] < 0 || p[i] >= n || hit[p[i]]) ok = 0;
        else hit[p[i]] = 1;
    }
    free(hit);
    return ok;
}

static void test_permutation_is_a_permutation(void)
{
    int64_t sizes[] = {1, 2, 3, 1000, 60000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int64_t n = sizes[k];
        int64_t *p = malloc((size_t)n * sizeof *p);
        pt_loader_permutation(42, 3, n, p);
        CHECKF(is_permutation(p, n), "n=%lld", (long long)n);
        if (n == 60000) {
            int64_t fixed = 0;
            for (int64_t i = 0; i < n; i++) fixed += p[i] == i;
            CHECKF(fixed < 20, "%lld fixed points: not shuffled", (long long)fixed);
        }
        free(p);
    }
}

static void test_same_seed_and_epoch_give_same_order_other_epoch_or_seed_differ(void)
{
    pt_dataset ds = make_ds(500, 1, 4, 4, 1);
    int64_t a[500], b[500], c[500], d[500];
    pt_loader_options o = opts(32, 1, 0, 0);
    CHECK(run_epoch(&ds, &o, 5, NULL, a) == 500);
    CHECK(run_epoch(&ds, &o, 5, NULL, b) == 500);
    CHECK(run_epoch(&ds, &o, 6, NULL, c) == 500);
    o.seed = 99;
    CHECK(run_epoch(&ds, &o, 5, NULL, d) == 500);
    CHECK(is_permutation(a, 500));
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);
    CHECK(memcmp(a, d, sizeof a) != 0);
    pt_dataset_free(&ds);
}

static void test_order_does_not_depend_on_batch_size_or_prefetch(void)
{
    pt_dataset ds = make_ds(300, 1, 4, 4, 2);
    int64_t a[300], b[300];
    pt_loader_options o7 = opts(7, 1, 1, 0), o64 = opts(64, 1, 1, 1);
    CHECK(run_epoch(&ds, &o7, 2, NULL, a) == 300);
    CHECK(run_epoch(&ds, &o64, 2, NULL, b) == 300);
    CHECK(memcmp(a, b, sizeof a) == 0);
    pt_dataset_free(&ds);
}

static void test_augmentation_of_a_sample_does_not_depend_on_batch_size_or_prefetch(void)
{
    pt_dataset ds = make_ds(200, 3, 8, 8, 3);
    size_t nf = 200 * 3 * 8 * 8;
    float *a = malloc(nf * sizeof *a), *b = malloc(nf * sizeof *b), *c = malloc(nf * sizeof *c);
    for (size_t i = 0; i < nf; i++) a[i] = b[i] = c[i] = NAN;
    pt_loader_options o7 = opts(7, 1, 1, 0), o64 = opts(64, 1, 1, 1), oseq = opts(64, 0, 1, 1);
    CHECK(run_epoch(&ds, &o7, 4, a, NULL) == 200);
    CHECK(run_epoch(&ds, &o64, 4, b, NULL) == 200);
    CHECK(run_epoch(&ds, &oseq, 4, c, NULL) == 200); /* even in another order */
    int finite = 1;
    for (size_t i = 0; i < nf; i++) finite &= isfinite(a[i]) != 0;
    CHECK(finite);
    CHECK(memcmp(a, b, nf * sizeof *a) == 0);
    CHECK(memcmp(a, c, nf * sizeof *a) == 0);
    /* And augmentation really happened: some sample differs from its plain normalisation. */
    float *plain = malloc(nf * sizeof *plain);
    pt_loader_options onone = opts(64, 0, 0, 0);
    CHECK(run_epoch(&ds, &onone, 4, plain, NULL) == 200);
    CHECK(memcmp(a, plain, nf * sizeof *a) != 0);
    free(plain);
    free(a);
    free(b);
    free(c);
    pt_dataset_free(&ds);
}

/* out equals the image src (H x W, values lut'ed) shifted by (dy, dx), mirrored if flip. */
static int matches_shift(const float *out, const uint8_t *src, int H, int W, int dy, int dx,
                         int flip, const float *lut)
{
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int sy = y + dy, sx = (flip ? W - 1 - x : x) + dx;
            float want = sy >= 0 && sy < H && sx >= 0 && sx < W ? lut[src[sy * W + sx]] : lut[0];
            if (out[y * W + x] != want) return 0;
        }
    return 1;
}

static void test_flip_and_crop_semantics_on_a_tiny_image(void)
{
    /* One 3x5 image with distinct nonzero pixels, repeated as 400 samples. */
    enum { N = 400, H = 3, W = 5, PAD = 2 };
    pt_dataset ds = make_ds(N, 1, H, W, 4);
    uint8_t img[H * W];
    for (int i = 0; i < H * W; i++) img[i] = (uint8_t)(10 + 10 * i);
    for (int s = 0; s < N; s++) memcpy(ds.pixels + s * H * W, img, sizeof img);
    ds.mean[0] = 0.0f;
    ds.std[0] = 1.0f;
    float lut[256];
    for (int p = 0; p < 256; p++) lut[p] = (float)p / 255.0f;
    pt_loader ld;
    pt_error err = {0};
    pt_loader_options o = opts(16, 1, 0, 0);
    /* flip only */
    o.flip = 1;
    CHECK(pt_loader_init(&ld, &ds, &o, &err) == PT_OK);
    float out[H * W];
    int flips = 0, plain = 0, other = 0, documented = 0;
    for (int s = 0; s < N; s++) {
        for (int i = 0; i < H * W; i++) out[i] = NAN;
        pt_loader_augment_sample(&ld, img, s, 1, 1, out);
        if (matches_shift(out, img, H, W, 0, 0, 0, lut)) plain++;
        else if (matches_shift(out, img, H, W, 0, 0, 1, lut)) flips++;
        else other++;
        /* the documented draw */
        int want_flip = pt_rng_uniform(o.seed, PT_RNG_AUGMENT, 1, (uint64_t)s, 0) < 0.5f;
        documented += matches_shift(out, img, H, W, 0, 0, want_flip, lut);
    }
    CHECK(documented == N);
    CHECKF(other == 0 && flips > 150 && plain > 150, "flips %d plain %d other %d", flips, plain,
           other);
    pt_loader_free(&ld);
    /* crop only: every offset in [-PAD, PAD]^2 occurs, nothing else */
    o.flip = 0;
    o.crop_pad = PAD;
    CHECK(pt_loader_init(&ld, &ds, &o, &err) == PT_OK);
    int seen[2 * PAD + 1][2 * PAD + 1];
    memset(seen, 0, sizeof seen);
    other = 0;
    documented = 0;
    for (int s = 0; s < N; s++) {
        pt_loader_augment_sample(&ld, img, s, 7, 1, out);
        int dy0 = (int)pt_rng_below(o.seed, PT_RNG_AUGMENT, 7, (uint64_t)s, 1, 2 * PAD + 1) - PAD;
        int dx0 = (int)pt_rng_below(o.seed, PT_RNG_AUGMENT, 7, (uint64_t)s, 2, 2 * PAD + 1) - PAD;
        documented += matches_shift(out, img, H, W, dy0, dx0, 0, lut);
        int found = 0;
        for (int dy = -PAD; dy <= PAD; dy++)
            for (int dx = -PAD; dx <= PAD; dx++)
                if (matches_shift(out, img, H, W, dy, dx, 0, lut)) {
                    seen[dy + PAD][dx + PAD]++;
                    found++;
                }
        other += found != 1;
    }
    int all = 1;
    for (int i = 0; i < 2 * PAD + 1; i++)
        for (int j = 0; j < 2 * PAD + 1; j++) all &= seen[i][j] > 0;
    CHECK(other == 0 && all && documented == N);
    pt_loader_free(&ld);
    /* flip and crop together: crop then mirror the cropped window */
    o.flip = 1;
    CHECK(pt_loader_init(&ld, &ds, &o, &err) == PT_OK);
    int both = 0;
    for (int s = 0; s < N; s++) {
        pt_loader_augment_sample(&ld, img, s, 9, 1, out);
        int dy0 = (int)pt_rng_below(o.seed, PT_RNG_AUGMENT, 9, (uint64_t)s, 1, 2 * PAD + 1) - PAD;
        int dx0 = (int)pt_rng_below(o.seed, PT_RNG_AUGMENT, 9, (uint64_t)s, 2, 2 * PAD + 1) - PAD;
        int f = pt_rng_uniform(o.seed, PT_RNG_AUGMENT, 9, (uint64_t)s, 0) < 0.5f;
        both += matches_shift(out, img, H, W, dy0, dx0, f, lut);
    }
    CHECK(both == N);
    /* augment = 0 (evaluation) is the plain image whatever the options */
    pt_loader_augment_sample(&ld, img, 3, 9, 0, out);
    CHECK(matches_shift(out, img, H, W, 0, 0, 0, lut));
    pt_loader_free(&ld);
    pt_dataset_free(&ds);
}

static void test_eval_order_is_sequential_and_nothing_is_dropped(void)
{
    pt_dataset ds = make_ds(103, 1, 2, 2, 5);
    for (int prefetch = 0; prefetch < 2; prefetch++) {
        pt_loader ld;
        pt_error err = {0};
        pt_loader_options o = opts(10, 0, 0, prefetch);
        CHECK(pt_loader_init(&ld, &ds, &o, &err) == PT_OK);
        CHECK(pt_loader_batches_per_epoch(&ld) == 11);
        CHECK(pt_loader_start_epoch(&ld, 0, &err) == PT_OK);
        int64_t seen = 0, batches = 0, in_order = 1, last_n = -1;
        pt_host_batch b;
        while (pt_loader_next(&ld, &b, &err) == PT_OK && b.n > 0) {
            for (int k = 0; k < b.n; k++) in_order &= b.index[k] == seen + k;
            seen += b.n;
            last_n = b.n;
            batches++;
        }
        CHECK(seen == 103 && batches == 11 && last_n == 3 && in_order);
        /* past the end it keeps answering "no more" */
        CHECK(pt_loader_next(&ld, &b, &err) == PT_OK && b.n == 0);
        pt_loader_free(&ld);
    }
    /* drop_last (training) drops only the short batch */
    pt_loader ld;
    pt_error err = {0};
    pt_loader_options o = opts(10, 1, 0, 0);
    o.drop_last = 1;
    CHECK(pt_loader_init(&ld, &ds, &o, &err) == PT_OK);
    CHECK(pt_loader_batches_per_epoch(&ld) == 10);
    pt_loader_free(&ld);
    pt_dataset_free(&ds);
}

static void test_normalisation_is_exact(void)
{
    pt_dataset ds = make_ds(3, 3, 5, 6, 6);
    pt_loader ld;
    pt_error err = {0};
    pt_loader_options o = opts(3, 0, 0, 0);
    CHECK(pt_loader_init(&ld, &ds, &o, &err) == PT_OK);
    CHECK(pt_loader_start_epoch(&ld, 0, &err) == PT_OK);
    pt_host_batch b;
    CHECK(pt_loader_next(&ld, &b, &err) == PT_OK && b.n == 3);
    int exact = 1;
    double ref[3 * 3 * 5 * 6];
    for (int i = 0; i < 3 * 3 * 5 * 6; i++) {
        int c = (i / 30) % 3;
        uint8_t p = ds.pixels[i];
        exact &= b.x[i] == ((float)p / 255.0f - ds.mean[c]) / ds.std[c];
        ref[i] = ((double)p / 255.0 - ds.mean[c]) / ds.std[c];
    }
    CHECK(exact);
    double e = pt_t_rel_err_f32_f64(b.x, ref, 3 * 3 * 5 * 6);
    CHECKF(e < 1e-6, "normalised error %g", e);
    pt_loader_free(&ld);
    pt_dataset_free(&ds);
}

static void test_seek_to_batch_k_gives_the_batch_of_iterating_to_it(void)
{
    pt_dataset ds = make_ds(250, 1, 6, 6, 7);
    int64_t sample = 36;
    for (int prefetch = 0; prefetch < 2; prefetch++) {
        pt_loader a, b;
        pt_error err = {0};
        pt_loader_options o = opts(16, 1, 1, prefetch);
        CHECK(pt_loader_init(&a, &ds, &o, &err) == PT_OK);
        CHECK(pt_loader_init(&b, &ds, &o, &err) == PT_OK);
        CHECK(pt_loader_start_epoch(&a, 3, &err) == PT_OK);
        pt_host_batch ba, bb;
        for (int k = 0; k <= 5; k++) CHECK(pt_loader_next(&a, &ba, &err) == PT_OK);
        /* b first wanders elsewhere, then seeks */
        CHECK(pt_loader_start_epoch(&b, 1, &err) == PT_OK);
        CHECK(pt_loader_next(&b, &bb, &err) == PT_OK);
        CHECK(pt_loader_seek(&b, 3, 5, &err) == PT_OK);
        CHECK(pt_loader_next(&b, &bb, &err) == PT_OK);
        CHECK(ba.n == 16 && bb.n == 16 && ba.batch == 5 && bb.batch == 5 && bb.epoch == 3);
        CHECK(memcmp(ba.index, bb.index, 16 * sizeof *ba.index) == 0);
        CHECK(memcmp(ba.y, bb.y, 16 * sizeof *ba.y) == 0);
        CHECK(memcmp(ba.x, bb.x, 16 * sample * sizeof *ba.x) == 0);
        /* and the rest of the epoch continues identically */
        CHECK(pt_loader_next(&a, &ba, &err) == PT_OK && pt_loader_next(&b, &bb, &err) == PT_OK);
        CHECK(memcmp(ba.x, bb.x, (size_t)ba.n * sample * sizeof *ba.x) == 0);
        CHECK(pt_loader_seek(&b, 3, 17, &err) == PT_ERR_INVALID); /* 16 batches */
        pt_loader_free(&a);
        pt_loader_free(&b);
    }
    pt_dataset_free(&ds);
}

static void test_prefetch_survives_restarts_and_early_free(void)
{
    pt_dataset ds = make_ds(100, 1, 5, 5, 8);
    int64_t sample = 25;
    pt_loader ref, pf;
    pt_error err = {0};
    pt_loader_options o = opts(9, 1, 1, 0);
    CHECK(pt_loader_init(&ref, &ds, &o, &err) == PT_OK);
    o.prefetch = 1;
    CHECK(pt_loader_init(&pf, &ds, &o, &err) == PT_OK);
    int same = 1;
    for (int round = 0; round < 60; round++) {
        int64_t epoch = round % 4, start = round % 5, steps = 1 + round % 7;
        same &= pt_loader_seek(&ref, epoch, start, &err) == PT_OK;
        same &= pt_loader_seek(&pf, epoch, start, &err) == PT_OK;
        for (int s = 0; s < steps; s++) {
            pt_host_batch a, b;
            same &= pt_loader_next(&ref, &a, &err) == PT_OK;
            same &= pt_loader_next(&pf, &b, &err) == PT_OK;
            same &= a.n == b.n && a.batch == b.batch;
            if (a.n == b.n && a.n > 0)
                same &= memcmp(a.x, b.x, (size_t)a.n * sample * sizeof(float)) == 0 &&
                        memcmp(a.index, b.index, (size_t)a.n * sizeof(int64_t)) == 0;
        }
    }
    CHECK(same);
    pt_loader_free(&ref);
    pt_loader_free(&pf); /* mid-epoch, producer possibly filling */
    /* init then free without ever starting an epoch */
    CHECK(pt_loader_init(&pf, &ds, &o, &err) == PT_OK);
    pt_loader_free(&pf);
    pt_loader_free(&pf); /* twice is harmless */
    pt_dataset_free(&ds);
}

/* A lazily decoded dataset: fetch copies from a backing in-memory dataset, and fails on
 * one chosen index. */
typedef struct lazy_impl {
    const pt_dataset *backing;
    int64_t bad_index;
} lazy_impl;

static pt_status lazy_fetch(const pt_dataset *ds, int64_t index, uint8_t *dst, pt_error *err)
{
    const lazy_impl *li = ds->impl;
    if (index == li->bad_index)
        return pt_fail(err, PT_ERR_FORMAT, "sample %lld: cannot decode", (long long)index);
    int64_t n = pt_dataset_sample_bytes(ds);
    memcpy(dst, li->backing->pixels + index * n, (size_t)n);
    return PT_OK;
}

static void test_lazy_dataset_matches_in_memory_and_reports_fetch_errors(void)
{
    pt_dataset mem = make_ds(80, 3, 4, 4, 9);
    lazy_impl li = {&mem, -1};
    pt_dataset lazy = mem;
    lazy.pixels = NULL;
    lazy.fetch = lazy_fetch;
    lazy.impl = &li;
    size_t nf = 80 * 48;
    float *a = malloc(nf * sizeof *a), *b = malloc(nf * sizeof *b);
    pt_loader_options o = opts(11, 1, 1, 1);
    CHECK(run_epoch(&mem, &o, 2, a, NULL) == 80);
    CHECK(run_epoch(&lazy, &o, 2, b, NULL) == 80);
    CHECK(memcmp(a, b, nf * sizeof *a) == 0);
    /* a failing sample: the error comes back (prefetch or not), and the loader stays usable */
    li.bad_index = 40;
    for (int prefetch = 0; prefetch < 2; prefetch++) {
        o = opts(8, 0, 0, prefetch);
        pt_loader ld;
        pt_error err = {0};
        CHECK(pt_loader_init(&ld, &lazy, &o, &err) == PT_OK);
        CHECK(pt_loader_start_epoch(&ld, 0, &err) == PT_OK);
        pt_host_batch hb;
        pt_status s = PT_OK;
        int batches = 0;
        while ((s = pt_loader_next(&ld, &hb, &err)) == PT_OK && hb.n > 0) batches++;
        CHECK(s == PT_ERR_FORMAT && batches == 5); /* sample 40 is in batch 5 */
        CHECKF(strstr(err.msg, "sample 40"), "%s", err.msg);
        CHECK(pt_loader_next(&ld, &hb, &err) == PT_ERR_FORMAT); /* retried, not hung */
        CHECK(pt_loader_seek(&ld, 0, 6, &err) == PT_OK);
        CHECK(pt_loader_next(&ld, &hb, &err) == PT_OK && hb.n == 8 && hb.index[0] == 48);
        pt_loader_free(&ld);
    }
    free(a);
    free(b);
    mem.fetch = NULL;
    pt_dataset_free(&mem);
}

static void test_subset_iterates_only_its_indices(void)
{
    pt_dataset ds = make_ds(50, 1, 2, 2, 10);
    int64_t subset[20];
    for (int i = 0; i < 20; i++) subset[i] = 2 * i + 5;
    pt_loader_options o = opts(6, 1, 0, 0);
    o.subset = subset;
    o.subset_count = 20;
    int64_t order[20];
    CHECK(run_epoch(&ds, &o, 1, NULL, order) == 20);
    int hit[50] = {0}, ok = 1;
    for (int i = 0; i < 20; i++) {
        ok &= order[i] >= 5 && order[i] <= 43 && order[i] % 2 == 1 && !hit[order[i]];
        hit[order[i]] = 1;
    }
    CHECK(ok);
    subset[3] = 50;
    pt_loader ld;
    pt_error err = {0};
    CHECK(pt_loader_init(&ld, &ds, &o, &err) == PT_ERR_INVALID);
    pt_dataset_free(&ds);
}

static void test_invalid_options_are_refused(void)
{
    pt_dataset ds = make_ds(10, 1, 2, 2, 11);
    pt_loader ld;
    pt_error err = {0};
    pt_loader_options o = opts(0, 1, 0, 0);
    CHECK(pt_loader_init(&ld, &ds, &o, &err) == PT_ERR_INVALID);
    CHECKF(strstr(err.msg, "batch size"), "%s", err.msg);
    o = opts(4, 1, 0, 0);
    o.crop_pad = -1;
    CHECK(pt_loader_init(&ld, &ds, &o, &err) == PT_ERR_INVALID);
    o.crop_pad = 0;
    ds.std[0] = 0.0f;
    CHECK(pt_loader_init(&ld, &ds, &o, &err) == PT_ERR_INVALID);
    pt_dataset_free(&ds);
}

/* Collects one epoch of a loader: x by dataset index, plus y2/lam when mixing. */
static int collect(const pt_dataset *ds, const pt_loader_options *o, int64_t epoch, float *x, int32_t *y2,
                   float *lam, int64_t *count)
{
    pt_loader ld;
    pt_error err = {0};
    if (pt_loader_init(&ld, ds, o, &err) != PT_OK) {
        fprintf(stderr, "collect: %s\n", err.msg);
        return 0;
    }
    int64_t sample = pt_dataset_sample_bytes(ds), n = 0;
    pt_loader_start_epoch(&ld, epoch, &err);
    for (;;) {
        pt_host_batch b;
        if (pt_loader_next(&ld, &b, &err) != PT_OK || b.n == 0) break;
        for (int k = 0; k < b.n; k++) {
            memcpy(x + b.index[k] * sample, b.x + k * sample, (size_t)sample * sizeof *x);
            if (y2) y2[b.index[k]] = b.y2 ? b.y2[k] : -1;
            if (lam) lam[b.index[k]] = b.lam ? b.lam[k] : -1;
        }
        n += b.n;
    }
    if (count) *count = n;
    pt_loader_free(&ld);
    return 1;
}

static void test_workers_ring_and_batch_size_do_not_change_any_sample(void)
{
    pt_dataset ds = make_ds(53, 3, 12, 10, 7);
    pt_error err = {0};
    int64_t sample = pt_dataset_sample_bytes(&ds);
    float *a = malloc((size_t)(53 * sample) * sizeof(float)), *b = malloc((size_t)(53 * sample) * sizeof(float));
    int32_t ya[53], yb[53];
    float la[53], lb[53];
    pt_loader_options o = opts(8, 1, 0, 0);
    CHECK(pt_augment_parse("flip,rrc=0.3,jitter=0.3,cutout=4,mixup=0.4,cutmix", 12, &o, &err) == PT_OK);
    int64_t na = 0, nb = 0;
    CHECK(collect(&ds, &o, 2, a, ya, la, &na));
    pt_loader_options p = o;
    p.batch_size = 5;
    p.workers = 3;
    p.ring = 4;
    CHECK(collect(&ds, &p, 2, b, yb, lb, &nb));
    CHECK(na == 53 && nb == 53);
    CHECK(memcmp(a, b, (size_t)(53 * sample) * sizeof(float)) == 0);
    CHECK(memcmp(ya, yb, sizeof ya) == 0 && memcmp(la, lb, sizeof la) == 0);
    int mixed = 0, bad = 0;
    for (int i = 0; i < 53; i++) {
        bad |= !(la[i] >= 0.0f && la[i] <= 1.0f) || ya[i] < 0 || ya[i] >= 10;
        mixed += la[i] < 0.999f;
    }
    CHECK(!bad && mixed > 10);
    /* without mixing, batches carry no y2/lam */
    pt_loader_options q = opts(8, 1, 1, 1);
    CHECK(collect(&ds, &q, 0, a, ya, la, &na));
    CHECK(ya[0] == -1 && la[0] == -1.0f);
    free(a);
    free(b);
    pt_dataset_free(&ds);
}

static void test_ranks_split_each_global_batch_without_overlap(void)
{
    pt_dataset ds = make_ds(37, 1, 4, 4, 3);
    int64_t sample = pt_dataset_sample_bytes(&ds);
    float *all = malloc((size_t)(37 * sample) * sizeof(float)), *part = malloc((size_t)(37 * sample) * sizeof(float));
    pt_loader_options o = opts(12, 1, 1, 0);
    int64_t n = 0, total = 0;
    CHECK(collect(&ds, &o, 1, all, NULL, NULL, &n));
    int seen[37] = {0};
    for (int r = 0; r < 3; r++) {
        pt_loader_options p = opts(4, 1, 1, r == 1);
        p.world = 3;
        p.rank = r;
        for (int64_t i = 0; i < 37 * sample; i++) part[i] = NAN;
        int64_t m = 0;
        CHECK(collect(&ds, &p, 1, part, NULL, NULL, &m));
        pt_loader ld;
        pt_error err = {0};
        CHECK(pt_loader_init(&ld, &ds, &p, &err) == PT_OK);
        CHECK(pt_loader_samples_per_epoch(&ld) == m && pt_loader_batches_per_epoch(&ld) == 4);
        /* rank r's share of global batch g is positions [12g + 4r, +4) */
        pt_loader_start_epoch(&ld, 1, &err);
        pt_host_batch b;
        for (int g = 0; pt_loader_next(&ld, &b, &err) == PT_OK && b.n; g++) {
            for (int k = 0; k < b.n; k++) {
                seen[b.index[k]]++;
                CHECK(b.index[k] == ld.order[12 * g + (g == 3 ? 0 : 4 * r) + (g == 3 ? r : 0) + k]);
            }
        }
        pt_loader_free(&ld);
        total += m;
        for (int64_t i = 0; i < 37; i++)
            if (!isnan(part[i * sample])) CHECK(memcmp(part + i * sample, all + i * sample, (size_t)sample * 4) == 0);
    }
    CHECK(total == 37);
    int once = 1;
    for (int i = 0; i < 37; i++) once &= seen[i] == 1;
    CHECK(once);
    free(all);
    free(part);
    pt_dataset_free(&ds);
}

static void test_augment_list_parsing(void)
{
    pt_loader_options o;
    memset(&o, 0, sizeof o);
    pt_error err = {0};
    CHECK(pt_augment_parse("flip,crop", 64, &o, &err) == PT_OK && o.flip && o.crop_pad == 4);
    CHECK(pt_augment_parse("rrc,jitter=0.2,cutout", 64, &o, &err) == PT_OK && !o.flip && o.rrc_scale > 0.07f &&
          o.jitter == 0.2f && o.cutout == 16);
    CHECK(pt_augment_parse("none", 64, &o, &err) == PT_OK && !o.flip && !o.rrc_scale && !o.cutout);
    CHECK(pt_augment_parse("mixup=0.3,cutmix", 64, &o, &err) == PT_OK && o.mixup_alpha == 0.3f && o.cutmix_alpha == 1.0f);
    CHECK(pt_augment_parse("flip,blur", 64, &o, &err) == PT_ERR_INVALID && strstr(err.msg, "blur"));
    CHECK(pt_augment_parse("jitter=2", 64, &o, &err) == PT_ERR_INVALID);
    CHECK(pt_augment_parse("crop=x", 64, &o, &err) == PT_ERR_INVALID);
}

/* A loader told the consumer's shape refuses a dataset of another; a dataset whose shape
 * changes after init is refused at the next batch, never read or written past the buffers;
 * labels outside the consumer's classes are refused at init. */
static void test_loader_refuses_samples_of_another_shape_than_its_consumer(void)
{
    pt_dataset ds = make_ds(12, 1, 6, 6, 3);
    pt_loader ld;
    pt_error err = {0};
    pt_loader_options o = opts(4, 0, 0, 0);
    o.channels = 1;
    o.height = 8;
    o.width = 6;
    CHECK(pt_loader_init(&ld, &ds, &o, &err) == PT_ERR_MISMATCH);
    CHECKF(strstr(err.msg, "1x6x6") && strstr(err.msg, "1x8x6"), "%s", err.msg);
    o.channels = 3;
    o.height = 6;
    CHECK(pt_loader_init(&ld, &ds, &o, &err) == PT_ERR_MISMATCH);
    o.channels = 1;
    o.num_classes = 5;
    CHECK(pt_loader_init(&ld, &ds, &o, &err) == PT_ERR_MISMATCH);
    CHECKF(strstr(err.msg, "10 classes") != NULL, "%s", err.msg);
    ds.num_classes = 5; /* labels are index % 10: 5..9 are past the consumer's classes */
    CHECK(pt_loader_init(&ld, &ds, &o, &err) == PT_ERR_FORMAT);
    CHECKF(strstr(err.msg, "label 5") != NULL, "%s", err.msg);
    ds.num_classes = 10;
    o.num_classes = 10;
    {   /* without prefetching: no thread reads the dataset while the test changes it */
        CHECKF(pt_loader_init(&ld, &ds, &o, &err) == PT_OK, "%s", err.msg);
        pt_host_batch b;
        CHECK(pt_loader_start_epoch(&ld, 0, &err) == PT_OK);
        CHECK(pt_loader_next(&ld, &b, &err) == PT_OK && b.n == 4);
        CHECK(b.channels == 1 && b.height == 6 && b.width == 6);
        /* a larger sample than the buffers were sized for: refused, not written past them */
        ds.height = 12;
        CHECK(pt_loader_start_epoch(&ld, 0, &err) == PT_OK);
        pt_status st = pt_loader_next(&ld, &b, &err);
        CHECK(st == PT_ERR_MISMATCH);
        CHECKF(strstr(err.msg, "1x12x6") != NULL, "%s", err.msg);
        ds.height = 6;
        pt_loader_free(&ld);
    }
    pt_dataset_free(&ds);
}

/* The one dataset compatibility check names both sides and every difference. */
static void test_dataset_compatibility_names_every_difference(void)
{
    const char *a[] = {"cat", "dog", "emu"}, *b[] = {"cat", "emu", "dog"};
    pt_dataset_shape want = {3, 16, 16, 3, a}, have = want;
    pt_error err = {0};
    CHECK(pt_dataset_check_compatible(&want, "training data 'A'", &have, "validation data 'B'", &err) == PT_OK);
    have.class_names = b;
    CHECK(pt_dataset_check_compatible(&want, "training data 'A'", &have, "validation data 'B'", &err) ==
          PT_ERR_MISMATCH);
    CHECKF(strstr(err.msg, "validation data 'B' does not match training data 'A'") &&
               strstr(err.msg, "class 1 is 'emu', expected 'dog'") && strstr(err.msg, "2 of 3"),
           "%s", err.msg);
    have.class_names = NULL; /* unknown names are not compared */
    CHECK(pt_dataset_check_compatible(&want, "A", &have, "B", &err) == PT_OK);
    have.channels = 1;
    have.height = 12;
    have.num_classes = 10;
    CHECK(pt_dataset_check_compatible(&want, "A", &have, "B", &err) == PT_ERR_MISMATCH);
    CHECKF(strstr(err.msg, "1 channel, expected 3") && strstr(err.msg, "12x16 images, expected 16x16") &&
               strstr(err.msg, "10 classes, expected 3"),
           "%s", err.msg);
}

int main(void)
{
    RUN(test_permutation_is_a_permutation);
    RUN(test_same_seed_and_epoch_give_same_order_other_epoch_or_seed_differ);
    RUN(test_order_does_not_depend_on_batch_size_or_prefetch);
    RUN(test_augmentation_of_a_sample_does_not_depend_on_batch_size_or_prefetch);
    RUN(test_flip_and_crop_semantics_on_a_tiny_image);
    RUN(test_eval_order_is_sequential_and_nothing_is_dropped);
    RUN(test_normalisation_is_exact);
    RUN(test_seek_to_batch_k_gives_the_batch_of_iterating_to_it);
    RUN(test_prefetch_survives_restarts_and_early_free);
    RUN(test_lazy_dataset_matches_in_memory_and_reports_fetch_errors);
    RUN(test_subset_iterates_only_its_indices);
    RUN(test_invalid_options_are_refused);
    RUN(test_workers_ring_and_batch_size_do_not_change_any_sample);
    RUN(test_ranks_split_each_global_batch_without_overlap);
    RUN(test_augment_list_parsing);
    RUN(test_loader_refuses_samples_of_another_shape_than_its_consumer);
    RUN(test_dataset_compatibility_names_every_difference);
    TEST_EXIT();
}
