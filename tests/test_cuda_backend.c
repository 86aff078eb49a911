/* The cuda backend. On any machine: its CUDA-free logic (the caching allocator's
 * bookkeeping and out-of-memory retry, the convolution plan cache's keying, the module
 * search and the explanation of a failed load), the module's supports() for every op kind
 * (no device needed) and the stub's errors when the module or
 * the GPU is missing, through the polytrain binary. With a GPU: device index and
 * out-of-memory errors, host<->device round trips through the pinned staging, the NCCL
 * group collectives over every device, reproducible convolution gradients in
 * deterministic mode, and training with CUDA graphs and pinned input bitwise like without. (Numerics of every op: test_conformance, which runs cuda like every
 * backend.) Exits 77 when the cuda backend is not compiled in. */
#define _GNU_SOURCE 1 /* dladdr */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "polytrain/backend.h"
#include "polytrain/models.h"
#include "polytrain/replica.h"
#include "pt_test.h"

#ifndef PT_HAVE_CUDA
int main(void)
{
    printf("cuda backend not compiled in: skipped\n");
    return 77;
}
#else

#include "backends/cuda/cuda_algo_cache.h"
#include "backends/cuda/cuda_alloc.h"
#include "backends/cuda/cuda_loader.h"
#include "backends/cuda/cuda_module.h"
#include "backends/cuda/cuda_precision.h"

/* ---- the allocator against a fake device of `budget` bytes ---- */

typedef struct fake_dev {
    size_t budget, used;
    long allocs, releases, outstanding;
    int fail_other; /* next alloc fails with a non-memory error */
} fake_dev;

static void *fake_alloc(void *user, size_t bytes, int *oom, pt_error *err)
{
    fake_dev *f = user;
    if (f->fail_other) {
        f->fail_other = 0;
        *oom = 0;
        pt_fail(err, PT_ERR_BACKEND, "injected driver failure");
        return NULL;
    }
    if (bytes > f->budget - f->used) {
        *oom = 1;
        return NULL;
    }
    void *p = malloc(bytes);
    if (!p) {
        *oom = 1;
        return NULL;
    }
    f->used += bytes;
    f->allocs++;
    f->outstanding++;
    /* the block's size in its first bytes, so release can give it back to the budget */
    *(size_t *)p = bytes;
    return p;
}

static void fake_release(void *user, void *ptr)
{
    fake_dev *f = user;
    f->used -= *(size_t *)ptr;
    f->releases++;
    f->outstanding--;
    free(ptr);
}

static int fake_meminfo(void *user, size_t *fr, size_t *total)
{
    fake_dev *f = user;
    *fr = f->budget - f->used;
    *total = f->budget;
    return 1;
}

static void allocator_rounds_to_granules_and_bounded_waste(void)
{
    CHECK(pt_cuda_alloc_round(0) == 512);
    CHECK(pt_cuda_alloc_round(1) == 512);
    CHECK(pt_cuda_alloc_round(512) == 512);
    CHECK(pt_cuda_alloc_round(513) == 1024);
    CHECK(pt_cuda_alloc_round((size_t)1 << 20) == (size_t)1 << 20);
    size_t prev = 0;
    for (size_t b = 1; b < ((size_t)64 << 20); b = b * 3 / 2 + 7) {
        size_t r = pt_cuda_alloc_round(b);
        CHECKF(r >= b && r - b <= b / 8 + 511, "round(%zu) = %zu", b, r);
        CHECKF(r >= prev, "round is not monotonic at %zu", b);
        CHECKF(r % 512 == 0, "round(%zu) = %zu is not a multiple of 512", b, r);
        prev = r;
    }
}

static void allocator_reuses_freed_blocks_and_counts_bytes(void)
{
    fake_dev f = {.budget = (size_t)64 << 20};
    pt_cuda_alloc_ops ops = {fake_alloc, fake_release, fake_meminfo, &f};
    pt_cuda_alloc a;
    pt_cuda_alloc_init(&a, &ops, "fake device", (size_t)32 << 20);
    pt_error err;
    void *p1 = NULL, *p2 = NULL, *p3 = NULL;
    size_t b1 = 0, b2 = 0, b3 = 0;
    CHECK(pt_cuda_alloc_get(&a, 3000000, &p1, &b1, &err) == PT_OK);
    CHECK(b1 >= 3000000 && f.allocs == 1);
    pt_cuda_alloc_stats s = pt_cuda_alloc_get_stats(&a);
    CHECKF(s.in_use_bytes == b1 && s.peak_bytes == b1 && s.cached_bytes == 0, "in use %zu", s.in_use_bytes);
    pt_cuda_alloc_put(&a, p1, b1);
    s = pt_cuda_alloc_get_stats(&a);
    CHECK(s.in_use_bytes == 0 && s.cached_bytes == b1 && f.releases == 0);
    /* a slightly smaller request takes the cached block, no device call */
    CHECK(pt_cuda_alloc_get(&a, 2900000, &p2, &b2, &err) == PT_OK);
    CHECKF(p2 == p1 && b2 == b1 && f.allocs == 1, "allocs %ld", f.allocs);
    s = pt_cuda_alloc_get_stats(&a);
    CHECK(s.cache_hits == 1 && s.cached_bytes == 0);
    pt_cuda_alloc_put(&a, p2, b2);
    /* a much smaller request does not waste the big block */
    CHECK(pt_cuda_alloc_get(&a, 1000, &p3, &b3, &err) == PT_OK);
    CHECKF(p3 != p1 && f.allocs == 2 && b3 == 1024, "allocs %ld, block %zu", f.allocs, b3);
    pt_cuda_alloc_put(&a, p3, b3);
    /* beyond max_cached a freed block goes back to the device */
    void *big = NULL;
    size_t bb = 0;
    CHECK(pt_cuda_alloc_get(&a, (size_t)40 << 20, &big, &bb, &err) == PT_OK);
    long rel = f.releases;
    pt_cuda_alloc_put(&a, big, bb);
    CHECKF(f.releases == rel + 1, "a 40 MiB block was cached over the 32 MiB limit");
    pt_cuda_alloc_destroy(&a);
    CHECKF(f.outstanding == 0 && f.used == 0, "%ld blocks, %zu bytes left on the device", f.outstanding, f.used);
}

static void allocator_releases_cache_and_retries_then_names_sizes(void)
{
    fake_dev f = {.budget = (size_t)10 << 20};
    pt_cuda_alloc_ops ops = {fake_alloc, fake_release, fake_meminfo, &f};
    pt_cuda_alloc a;
    pt_cuda_alloc_init(&a, &ops, "fake device 3", (size_t)1 << 30);
    pt_error err;
    void *p[4];
    size_t b[4];
    for (int i = 0; i < 4; i++) CHECK(pt_cuda_alloc_get(&a, (size_t)2 << 20, &p[i], &b[i], &err) == PT_OK);
    for (int i = 0; i < 4; i++) pt_cuda_alloc_put(&a, p[i], b[i]);
    /* 8 MiB cached in 2 MiB blocks, 2 MiB free: 6 MiB fits only after the cache is released */
    void *q = NULL;
    size_t qb = 0;
    CHECK(pt_cuda_alloc_get(&a, (size_t)6 << 20, &q, &qb, &err) == PT_OK);
    pt_cuda_alloc_stats s = pt_cuda_alloc_get_stats(&a);
    CHECKF(s.oom_retries == 1 && s.cached_bytes == 0, "retries %ld, cached %zu", s.oom_retries, s.cached_bytes);
    /* 6 MiB in use, 4 MiB free: 5 MiB cannot fit */
    void *r = NULL;
    size_t rb = 0;
    pt_error_clear(&err);
    pt_status st = pt_cuda_alloc_get(&a, 5000000, &r, &rb, &err);
    CHECKF(st == PT_ERR_NOMEM && r == NULL, "status %d", st);
    CHECKF(strstr(err.msg, "asked for 5000000 bytes") && strstr(err.msg, "fake device 3") &&
               strstr(err.msg, "6291456 bytes") && strstr(err.msg, "free of 10485760"),
           "message: %s", err.msg);
    /* a failure that is not out-of-memory is reported as such, with the driver's words */
    f.fail_other = 1;
    st = pt_cuda_alloc_get(&a, 100, &r, &rb, &err);
    CHECKF(st == PT_ERR_BACKEND && strstr(err.msg, "injected driver failure"), "%d: %s", st, err.msg);
    pt_cuda_alloc_put(&a, q, qb);
    pt_cuda_alloc_destroy(&a);
    CHECK(f.outstanding == 0);
}

/* ---- the convolution plan cache ---- */

static pt_op conv_op(pt_op_kind kind, int n, int c, int h, int w, int k, int r, int s, int stride, int pad)
{
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = kind;
    op.nt = 3;
    int p = (h + 2 * pad - r) / stride + 1, q = (w + 2 * pad - s) / stride + 1;
    op.t[0] = pt_tensor_4d(NULL, 0, n, c, h, w);
    op.t[1] = pt_tensor_4d(NULL, 0, k, c, r, s);
    op.t[2] = pt_tensor_4d(NULL, 0, n, k, p, q);
    op.p.conv.stride = stride;
    op.p.conv.pad = pad;
    return op;
}

static int g_freed;
static void count_free(void *value, void *user)
{
    (void)value;
    (void)user;
    g_freed++;
}

static void plan_cache_keys_every_field_and_mode(void)
{
    const pt_op base = conv_op(PT_OP_CONV2D_FWD, 8, 3, 32, 30, 16, 3, 3, 1, 1);
    const pt_conv_key k0 = pt_conv_key_of(&base, 0);
    pt_conv_key same = pt_conv_key_of(&base, 0);
    CHECK(pt_conv_key_equal(&k0, &same) && pt_conv_key_hash(&k0) == pt_conv_key_hash(&same));
    pt_op variants[] = {
        conv_op(PT_OP_CONV2D_BWD_DATA, 8, 3, 32, 30, 16, 3, 3, 1, 1),
        conv_op(PT_OP_CONV2D_BWD_FILTER, 8, 3, 32, 30, 16, 3, 3, 1, 1),
        conv_op(PT_OP_CONV2D_FWD, 7, 3, 32, 30, 16, 3, 3, 1, 1),
        conv_op(PT_OP_CONV2D_FWD, 8, 4, 32, 30, 16, 3, 3, 1, 1),
        conv_op(PT_OP_CONV2D_FWD, 8, 3, 30, 32, 16, 3, 3, 1, 1),
        conv_op(PT_OP_CONV2D_FWD, 8, 3, 32, 30, 17, 3, 3, 1, 1),
        conv_op(PT_OP_CONV2D_FWD, 8, 3, 32, 30, 16, 5, 3, 1, 1),
        conv_op(PT_OP_CONV2D_FWD, 8, 3, 32, 30, 16, 3, 3, 2, 1),
        conv_op(PT_OP_CONV2D_FWD, 8, 3, 32, 30, 16, 3, 3, 1, 0),
    };
    const int nv = (int)(sizeof variants / sizeof variants[0]);
    pt_algo_cache c;
    pt_algo_cache_init(&c);
    static int values[64];
    CHECK(pt_algo_cache_find(&c, &k0) == NULL);
    CHECK(pt_algo_cache_insert(&c, &k0, &values[0]) == 0);
    CHECK(pt_algo_cache_insert(&c, &k0, &values[1]) == 1); /* never replaced */
    for (int i = 0; i < nv; i++) {
        pt_conv_key k = pt_conv_key_of(&variants[i], 0);
        CHECKF(!pt_conv_key_equal(&k, &k0), "variant %d has the base's key", i);
        CHECKF(pt_algo_cache_find(&c, &k) == NULL, "variant %d finds the base's plan", i);
        CHECK(pt_algo_cache_insert(&c, &k, &values[2 + i]) == 0);
    }
    /* the numeric mode is part of the key: a deterministic device, or an op in another math
     * mode, never gets a plan chosen for another mode (each mode has its own descriptors'
     * data type, math type and workspace layout) */
    pt_conv_key kd = pt_conv_key_of(&base, 1);
    CHECK(!pt_conv_key_equal(&kd, &k0));
    CHECK(pt_algo_cache_find(&c, &kd) == NULL);
    pt_conv_key km[PT_PREC_COUNT];
    for (int m = 0; m < PT_PREC_COUNT; m++) {
        pt_op o = base;
        o.math = (pt_precision)m;
        km[m] = pt_conv_key_of(&o, 0);
        CHECKF(km[m].math == m, "math=%s: key holds %d", pt_precision_name((pt_precision)m), (int)km[m].math);
        CHECKF(pt_conv_key_equal(&km[m], &k0) == (m == PT_PREC_FP32), "math=%s %s the fp32 key",
               pt_precision_name((pt_precision)m), m == PT_PREC_FP32 ? "differs from" : "equals");
        for (int j = 0; j < m; j++) CHECK(!pt_conv_key_equal(&km[m], &km[j]));
        CHECK(pt_conv_key_equal(&km[m], &kd) == 0);
        if (m != PT_PREC_FP32) {
            CHECKF(pt_algo_cache_find(&c, &km[m]) == NULL, "math=%s finds the fp32 plan",
                   pt_precision_name((pt_precision)m));
            CHECK(pt_algo_cache_insert(&c, &km[m], &values[40 + m]) == 0);
        }
    }
    for (int m = PT_PREC_TF32; m < PT_PREC_COUNT; m++) CHECK(pt_algo_cache_find(&c, &km[m]) == &values[40 + m]);
    CHECK(pt_algo_cache_find(&c, &k0) == &values[0]);
    for (int i = 0; i < nv; i++) {
        pt_conv_key k = pt_conv_key_of(&variants[i], 0);
        CHECKF(pt_algo_cache_find(&c, &k) == &values[2 + i], "variant %d", i);
    }
    char text[160];
    pt_conv_key_format(&kd, text, sizeof text);
    CHECKF(strstr(text, "fwd x=8x3x32x30 w=16x3x3x3 y=32x30 s=1 p=1 deterministic") && !strstr(text, "math"), "%s",
           text);
    pt_conv_key_format(&km[PT_PREC_BF16], text, sizeof text);
    CHECKF(strstr(text, "s=1 p=1 math=bf16"), "%s", text);
    pt_conv_key_format(&k0, text, sizeof text);
    CHECKF(!strstr(text, "math"), "an fp32 key names no mode: %s", text);
    g_freed = 0;
    pt_algo_cache_destroy(&c, count_free, NULL);
    CHECKF(g_freed == 1 + nv + PT_PREC_COUNT - 1, "%d values freed", g_freed);
}

/* Activations stored in the 16-bit type of a convolution's math mode go to cuDNN where they are:
 * x when read (forward, filter gradient), the forward's y when overwritten; anything else (a
 * float32 operand, another 16-bit type, fp32 math, an accumulated y, the data gradient) through
 * the workspace copies. Each choice is its own plan (another workspace layout), named. */
static void conv_plans_take_16bit_activations_where_stored(void)
{
    pt_op f = conv_op(PT_OP_CONV2D_FWD, 8, 16, 12, 12, 24, 3, 3, 1, 1);
    f.math = PT_PREC_BF16;
    CHECK(pt_conv_direct(&f) == 0);
    const pt_conv_key k0 = pt_conv_key_of(&f, 0);
    f.t[0].dtype = PT_BF16;
    CHECK(pt_conv_direct(&f) == 1u);
    const pt_conv_key kx = pt_conv_key_of(&f, 0);
    f.t[2].dtype = PT_BF16;
    CHECK(pt_conv_direct(&f) == 5u);
    const pt_conv_key kxy = pt_conv_key_of(&f, 0);
    CHECK(!pt_conv_key_equal(&k0, &kx) && !pt_conv_key_equal(&kx, &kxy) && !pt_conv_key_equal(&k0, &kxy));
    char text[200];
    pt_conv_key_format(&kxy, text, sizeof text);
    CHECKF(strstr(text, "math=bf16 x=16-bit y=16-bit"), "%s", text);
    f.accumulate = 1; /* y += conv: summed in float32, rounded once through a copy */
    CHECK(pt_conv_direct(&f) == 1u);
    f.accumulate = 0;
    f.math = PT_PREC_FP16; /* bf16 storage under fp16 math: another type, copies */
    CHECK(pt_conv_direct(&f) == 0);
    f.t[0].dtype = f.t[2].dtype = PT_F16;
    CHECK(pt_conv_direct(&f) == 5u);
    f.math = PT_PREC_FP32;
    CHECK(pt_conv_direct(&f) == 0);
    pt_op g = conv_op(PT_OP_CONV2D_BWD_FILTER, 8, 16, 12, 12, 24, 3, 3, 1, 1);
    g.math = PT_PREC_FP16;
    g.t[0].dtype = PT_F16;
    g.accumulate = 1;
    CHECK(pt_conv_direct(&g) == 1u);
    pt_op b = conv_op(PT_OP_CONV2D_BWD_DATA, 8, 16, 12, 12, 24, 3, 3, 1, 1);
    b.math = PT_PREC_BF16;
    CHECK(pt_conv_direct(&b) == 0);
}

/* Channels last: a bf16/fp16 plan runs cuDNN NHWC when x or y (dx, dy) is stored NHWC; a 16-bit
 * activation goes to cuDNN as stored only in the plan's layout; a float32 NHWC image is taken by
 * the convolution itself (its copy is made transposed), a 16-bit one in the other layout comes
 * as a float32 copy; fp32 and tf32 plans stay NCHW (their NHWC operands come as copies). Each is
 * its own plan, named. */
static void conv_plans_run_channels_last_in_16_bit_modes(void)
{
    pt_op f = conv_op(PT_OP_CONV2D_FWD, 8, 16, 12, 12, 24, 3, 3, 1, 1);
    f.math = PT_PREC_BF16;
    const pt_conv_key k0 = pt_conv_key_of(&f, 0);
    CHECK(!pt_conv_nhwc(&f) && pt_conv_takes(&f) == 0);
    f.t[2].layout = PT_LAYOUT_NHWC; /* y NHWC float32, x the NCHW data input */
    CHECK(pt_conv_nhwc(&f) && pt_conv_direct(&f) == 0 && pt_conv_takes(&f) == 4u);
    const pt_conv_key ky = pt_conv_key_of(&f, 0);
    CHECK(!pt_conv_key_equal(&k0, &ky) && ky.nhwc == 1);
    f.t[2].dtype = PT_BF16; /* y bf16 NHWC: written by cuDNN where it is */
    CHECK(pt_conv_direct(&f) == 4u && pt_conv_takes(&f) == 4u);
    f.t[0].dtype = PT_BF16; /* x bf16 but NCHW: not the plan's order, a float32 copy first */
    CHECK(pt_conv_direct(&f) == 4u && pt_conv_takes(&f) == 4u);
    f.t[0].layout = PT_LAYOUT_NHWC;
    CHECK(pt_conv_direct(&f) == 5u && pt_conv_takes(&f) == 5u);
    char text[200];
    const pt_conv_key kxy = pt_conv_key_of(&f, 0);
    pt_conv_key_format(&kxy, text, sizeof text);
    CHECKF(strstr(text, "math=bf16 x=16-bit y=16-bit nhwc"), "%s", text);
    f.math = PT_PREC_TF32; /* no 16-bit copies to transpose into: NCHW, every NHWC operand copied */
    CHECK(!pt_conv_nhwc(&f) && pt_conv_takes(&f) == 0);
    f.math = PT_PREC_FP32;
    CHECK(!pt_conv_nhwc(&f) && pt_conv_takes(&f) == 0);
    pt_op b = conv_op(PT_OP_CONV2D_BWD_DATA, 8, 16, 12, 12, 24, 3, 3, 1, 1);
    b.math = PT_PREC_FP16;
    b.t[0].layout = b.t[2].layout = PT_LAYOUT_NHWC; /* dx, dy float32 NHWC */
    CHECK(pt_conv_nhwc(&b) && pt_conv_direct(&b) == 0 && pt_conv_takes(&b) == 5u);
    pt_op g = conv_op(PT_OP_CONV2D_BWD_FILTER, 8, 16, 12, 12, 24, 3, 3, 1, 1);
    g.math = PT_PREC_FP16;
    g.t[0].dtype = PT_F16; /* x fp16 NHWC, dy float32 NCHW (a mixed pair: transposed copy of dy) */
    g.t[0].layout = PT_LAYOUT_NHWC;
    CHECK(pt_conv_nhwc(&g) && pt_conv_direct(&g) == 1u && pt_conv_takes(&g) == 1u);
}

static void plan_cache_holds_every_batch_size_of_a_resnet(void)
{
    /* the core asks for every batch size 1..capacity: 128 x 3 directions x 20 shapes */
    pt_algo_cache c;
    pt_algo_cache_init(&c);
    static char token;
    int inserted = 0;
    for (int n = 1; n <= 128; n++)
        for (int kind = PT_OP_CONV2D_FWD; kind <= PT_OP_CONV2D_BWD_FILTER; kind++)
            for (int s = 0; s < 20; s++) {
                pt_op op = conv_op((pt_op_kind)kind, n, 64 << (s % 4), 56 >> (s % 4), 56 >> (s % 4), 64 << (s % 4),
                                   s % 2 ? 3 : 1, s % 2 ? 3 : 1, 1 + s / 10, s % 2);
                pt_conv_key k = pt_conv_key_of(&op, 0);
                int rc = pt_algo_cache_insert(&c, &k, &token);
                CHECK(rc == 0 || rc == 1);
                inserted += rc == 0;
            }
    CHECKF((int)c.count == inserted && inserted > 128 * 3 * 4, "%zu entries, %d inserted", c.count, inserted);
    long misses = 0;
    for (int n = 1; n <= 128; n++) {
        pt_op op = conv_op(PT_OP_CONV2D_BWD_DATA, n, 128, 28, 28, 128, 3, 3, 1, 1);
        pt_conv_key k = pt_conv_key_of(&op, 0);
        misses += pt_algo_cache_find(&c, &k) != &token;
    }
    CHECKF(misses == 0, "%ld lookups missed", misses);
    pt_algo_cache_destroy(&c, NULL, NULL);
}

/* ---- math modes by compute capability ---- */

static void precision_follows_compute_capability_and_names_the_device(void)
{
    static const struct {
        int major, minor;
        int ok[PT_PREC_COUNT]; /* fp32 tf32 bf16 fp16 */
    } gpus[] = {
        {6, 1, {1, 0, 0, 0}}, /* Pascal: no tensor cores */
        {7, 0, {1, 0, 0, 1}}, /* Volta: fp16 tensor cores */
        {7, 5, {1, 0, 0, 1}}, /* Turing */
        {8, 0, {1, 1, 1, 1}}, /* Ampere: TF32, bf16 */
        {8, 9, {1, 1, 1, 1}}, {9, 0, {1, 1, 1, 1}}, {12, 0, {1, 1, 1, 1}},
    };
    for (size_t g = 0; g < sizeof gpus / sizeof gpus[0]; g++) {
        const unsigned caps = pt_cuda_math_caps(gpus[g].major, gpus[g].minor);
        for (int p = 0; p < PT_PREC_COUNT; p++) {
            char how[200];
            pt_error err;
            pt_error_clear(&err);
            const pt_status st = pt_cuda_precision_check("Test GPU", gpus[g].major, gpus[g].minor, (pt_precision)p,
                                                         how, sizeof how, &err);
            const char *name = pt_precision_name((pt_precision)p);
            CHECKF((st == PT_OK) == gpus[g].ok[p], "sm_%d%d %s: %d (%s)", gpus[g].major, gpus[g].minor, name, st,
                   err.msg);
            if (st == PT_OK) {
                CHECKF(how[0] != '\0', "sm_%d%d %s: no description", gpus[g].major, gpus[g].minor, name);
            } else {
                char cc[16];
                snprintf(cc, sizeof cc, "%d.%d", gpus[g].major, gpus[g].minor);
                CHECKF(st == PT_ERR_UNSUPPORTED && strstr(err.msg, "Test GPU") && strstr(err.msg, cc) &&
                           strstr(err.msg, name) && strstr(err.msg, p == PT_PREC_FP16 ? "7.0" : "8.0"),
                       "sm_%d%d %s: %s", gpus[g].major, gpus[g].minor, name, err.msg);
                CHECK(how[0] == '\0');
            }
            /* the caps the module passes to the op check are the modes precision() accepts */
            if (p != PT_PREC_FP32)
                CHECKF(!!(caps & PT_CAP_MATH(p)) == gpus[g].ok[p], "sm_%d%d caps %#x, %s", gpus[g].major,
                       gpus[g].minor, caps, name);
        }
        CHECK(!(caps & ~(PT_CAP_MATH(PT_PREC_TF32) | PT_CAP_MATH(PT_PREC_BF16) | PT_CAP_MATH(PT_PREC_FP16))));
        /* 16-bit activations in a format exactly where its math mode runs */
        const unsigned act = pt_cuda_act16_caps(gpus[g].major, gpus[g].minor);
        CHECKF(!!(act & PT_CAP_ACT16(PT_BF16)) == gpus[g].ok[PT_PREC_BF16] &&
                   !!(act & PT_CAP_ACT16(PT_F16)) == gpus[g].ok[PT_PREC_FP16] &&
                   !(act & ~(PT_CAP_ACT16(PT_BF16) | PT_CAP_ACT16(PT_F16))),
               "sm_%d%d act16 caps %#x", gpus[g].major, gpus[g].minor, act);
    }
    /* NULL how and err (what the conformance suite passes) are fine; a bad mode is refused */
    CHECK(pt_cuda_precision_check("x", 9, 0, PT_PREC_BF16, NULL, 0, NULL) == PT_OK);
    CHECK(pt_cuda_precision_check("x", 7, 5, PT_PREC_BF16, NULL, 0, NULL) == PT_ERR_UNSUPPORTED);
    CHECK(pt_cuda_precision_check("x", 9, 0, PT_PREC_COUNT, NULL, 0, NULL) == PT_ERR_INVALID);
}

/* ---- finding and loading the module ---- */

static void loader_explains_missing_vendor_libraries(void)
{
    char out[1024];
    pt_cuda_explain_dlerror("libcudnn.so.9: cannot open shared object file: No such file or directory", out,
                            sizeof out);
    CHECKF(strstr(out, "cuDNN 9") && strstr(out, "libcudnn.so.9") && strstr(out, "LD_LIBRARY_PATH"), "%s", out);
    pt_cuda_explain_dlerror("libcublasLt.so.13: cannot open shared object file: No such file or directory", out,
                            sizeof out);
    CHECKF(strstr(out, "cuBLAS") && strstr(out, "libcublasLt.so.13"), "%s", out);
    pt_cuda_explain_dlerror("libcublas.so.13: cannot open shared object file: No such file or directory", out,
                            sizeof out);
    CHECKF(strstr(out, "cuBLAS of the CUDA 13 toolkit (libcublas.so.13)"), "%s", out);
    pt_cuda_explain_dlerror("/x/libpolytrain_cuda.so: undefined symbol: cudnnFoo", out, sizeof out);
    CHECKF(strstr(out, "undefined symbol: cudnnFoo") && strstr(out, "another version"), "%s", out);
}

static void loader_searches_env_then_next_to_the_binary(void)
{
    char paths[6][4096];
    const char *old = getenv("PT_CUDA_MODULE");
    char *saved = old ? strdup(old) : NULL;
    setenv("PT_CUDA_MODULE", "/opt/x/libpolytrain_cuda.so", 1);
    int n = pt_cuda_module_candidates(paths, 6);
    CHECKF(n == 1 && strcmp(paths[0], "/opt/x/libpolytrain_cuda.so") == 0, "%d: %s", n, paths[0]);
    unsetenv("PT_CUDA_MODULE");
    n = pt_cuda_module_candidates(paths, 6);
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CHECK(len > 0);
    exe[len > 0 ? len : 0] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) strcpy(slash + 1, "libpolytrain_cuda.so");
    CHECKF(n >= 2 && strcmp(paths[0], exe) == 0, "%d candidates, first %s", n, paths[0]);
    /* this test links the static library: the code's own object is the executable, so the
     * installed-library candidate is polytrain/ next to it */
    if (slash) strcpy(slash + 1, "polytrain/libpolytrain_cuda.so");
    int found_lib_dir = 0;
    for (int i = 0; i < n; i++) found_lib_dir |= strcmp(paths[i], exe) == 0;
    CHECKF(found_lib_dir, "no candidate %s among %d", exe, n);
    int found_build = 0;
    for (int i = 0; i < n; i++) found_build |= access(paths[i], R_OK) == 0;
    CHECKF(found_build, "no candidate exists (the build's module should)");
    if (saved) {
        setenv("PT_CUDA_MODULE", saved, 1);
        free(saved);
    }
}

/* Runs the polytrain binary with an environment prefix; stdout+stderr into out. */
static int run_cli(const char *env, const char *args, char *out, size_t cap)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "env %s '%s' %s 2>&1", env, getenv("PT_CLI"), args);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    while (fread(cmd, 1, sizeof cmd, f) > 0) {
    }
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int have_cli(void)
{
    if (getenv("PT_CLI") && access(getenv("PT_CLI"), X_OK) == 0) return 1;
    printf("  (skipped: PT_CLI does not name the polytrain binary)\n");
    return 0;
}

static void stub_names_a_missing_or_broken_module(void)
{
    if (!have_cli()) return;
    static char out[1 << 16];
    int rc = run_cli("PT_CUDA_MODULE=/nonexistent/libpolytrain_cuda.so", "devices", out, sizeof out);
    CHECKF(rc == 0 && strstr(out, "cpu: ") && strstr(out, " device") &&
               strstr(out, "cuda: unavailable: backend 'cuda': the cuda module /nonexistent/libpolytrain_cuda.so "
                           "(PT_CUDA_MODULE) does not exist"),
           "exit %d: %s", rc, out);
    rc = run_cli("PT_CUDA_MODULE=/nonexistent/libpolytrain_cuda.so", "bench --backend cuda --steps 1", out,
                 sizeof out);
    CHECKF(rc != 0 && strstr(out, "/nonexistent/libpolytrain_cuda.so"), "exit %d: %s", rc, out);
    /* a file that is not a shared library: the loader's own words come through */
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s/not_a_module.so", getenv("PT_TEST_TMP") ? getenv("PT_TEST_TMP") : "/tmp");
    char mk[1200];
    if (snprintf(mk, sizeof mk, "mkdir -p \"$(dirname '%s')\" && echo 'not ELF' > '%s'", tmp, tmp) < 0) return;
    CHECK(system(mk) == 0);
    char env[600];
    if (snprintf(env, sizeof env, "PT_CUDA_MODULE='%s'", tmp) < 0) return;
    rc = run_cli(env, "devices", out, sizeof out);
    CHECKF(rc == 0 && strstr(out, "cannot load the cuda module") && strstr(out, "not_a_module.so"), "exit %d: %s",
           rc, out);
    /* a real shared library without the entry point (the C library's libm): refused */
    Dl_info info;
    double (*volatile fn)(double) = cos;
    if (dladdr((void *)fn, &info) && info.dli_fname && info.dli_fname[0] == '/') {
        if (snprintf(env, sizeof env, "PT_CUDA_MODULE='%s'", info.dli_fname) < 0) return;
        rc = run_cli(env, "devices", out, sizeof out);
        CHECKF(rc == 0 && strstr(out, "has no entry point pt_cuda_module_entry"), "exit %d: %s", rc, out);
    }
    unlink(tmp);
}

static void devices_says_whether_there_is_a_gpu(void)
{
    if (!have_cli()) return;
    static char out[1 << 16];
    int rc = run_cli("", "devices", out, sizeof out);
    const char *line = strstr(out, "cuda:");
    CHECKF(rc == 0 && line, "exit %d: %s", rc, out);
    if (!line) return;
    if (strncmp(line, "cuda: unavailable:", 18) == 0) {
        CHECKF(strstr(line, "driver") || strstr(line, "GPU"), "the reason names neither driver nor GPU: %s", line);
        printf("  no GPU here: %.*s\n", (int)strcspn(line, "\n"), line);
    } else {
        CHECKF(strstr(line, "(gpu)") && strstr(line, "sm_"), "%s", line);
    }
    rc = run_cli("", "devices --json", out, sizeof out);
    CHECKF(rc == 0 && strstr(out, "\"backend\":\"cuda\""), "exit %d: %s", rc, out);
}

/* ---- with a GPU ---- */

static pt_device *g_dev;

static void gpu_errors_name_device_index_and_sizes(void)
{
    pt_device *d = NULL;
    pt_error err;
    pt_status st = pt_device_open("cuda", 99, NULL, &d, &err);
    CHECKF(st == PT_ERR_INVALID && strstr(err.msg, "no device 99"), "%d: %s", st, err.msg);
    pt_buffer *b = NULL;
    const size_t huge = (size_t)1 << 50;
    st = pt_device_alloc(g_dev, huge, &b, &err);
    CHECKF(st == PT_ERR_NOMEM && b == NULL && strstr(err.msg, "asked for 1125899906842624 bytes") &&
               strstr(err.msg, "free of"),
           "%d: %s", st, err.msg);
    /* the device still works after the failed allocation */
    st = pt_device_alloc(g_dev, 4096, &b, &err);
    CHECKF(st == PT_OK, "%s", err.msg);
    if (b) pt_device_free(g_dev, b);
}

static void gpu_round_trips_through_the_staging_buffers(void)
{
    const size_t n = (size_t)5 << 20; /* 20 MiB: more than both staging halves */
    float *h = malloc(n * sizeof *h), *back = malloc(n * sizeof *back);
    pt_buffer *b = NULL;
    pt_error err;
    CHECK(h && back);
    if (!h || !back) return;
    for (size_t i = 0; i < n; i++) h[i] = (float)(i % 9973) - 17.5f;
    CHECK(pt_device_alloc(g_dev, (n + 64) * sizeof(float), &b, &err) == PT_OK);
    if (!b) return;
    pt_mem at = {b, 64 * sizeof(float)};
    CHECKF(pt_device_write(g_dev, at, h, n * sizeof(float), &err) == PT_OK, "%s", err.msg);
    memset(h, 0, n * sizeof *h); /* the caller's memory is free once write returned */
    memset(back, 0xff, n * sizeof *back);
    CHECKF(pt_device_read(g_dev, back, at, n * sizeof(float), &err) == PT_OK, "%s", err.msg);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += back[i] != (float)(i % 9973) - 17.5f;
    CHECKF(bad == 0, "%zu elements differ", bad);
    pt_mem outside = {b, (n + 1) * sizeof(float)};
    CHECK(pt_device_write(g_dev, outside, h, 64 * sizeof(float), &err) == PT_ERR_INVALID);
    pt_device_free(g_dev, b);
    free(h);
    free(back);
}

static void gpu_group_allreduces_and_broadcasts_over_every_device(void)
{
    const pt_backend_iface *be = pt_backend_find("cuda");
    void *ctx = NULL;
    pt_error err;
    if (pt_backend_context(be, &ctx, &err) != PT_OK) return;
    int ndev = be->device_count(ctx);
    if (ndev > 8) ndev = 8;
    pt_device *devs[8] = {0};
    void *dctx[8];
    pt_buffer *bufs[8] = {0};
    pt_mem mems[8];
    const size_t count = 100003;
    float *h = malloc(count * sizeof *h);
    if (!h) return;
    int ok = 1;
    for (int i = 0; i < ndev && ok; i++) {
        ok = pt_device_open("cuda", i, NULL, &devs[i], &err) == PT_OK &&
             pt_device_alloc(devs[i], count * sizeof(float), &bufs[i], &err) == PT_OK;
        if (!ok) break;
        for (size_t k = 0; k < count; k++) h[k] = (float)(i + 1) * (float)(k % 7);
        ok = pt_device_write(devs[i], (pt_mem){bufs[i], 0}, h, count * sizeof(float), &err) == PT_OK;
        dctx[i] = devs[i]->ctx;
        mems[i] = (pt_mem){bufs[i], 0};
    }
    CHECKF(ok, "%s", err.msg);
    const pt_world world = pt_world_single();
    void *group = NULL;
    pt_status st = ok ? be->group_open(ctx, dctx, ndev, &world, &group, &err) : PT_ERR_BACKEND;
    if (st != PT_OK && strstr(err.msg, "NCCL")) {
        printf("  group: %s\n", err.msg); /* NCCL absent: the error must say so, as it does */
    } else {
        CHECKF(st == PT_OK, "group_open: %s", err.msg);
    }
    if (st == PT_OK) {
        CHECKF(be->group_allreduce_f32(group, mems, count, &err) == PT_OK, "%s", err.msg);
        const float total = (float)(ndev * (ndev + 1) / 2);
        for (int i = 0; i < ndev; i++) {
            CHECK(pt_device_read(devs[i], h, mems[i], count * sizeof(float), &err) == PT_OK);
            size_t bad = 0;
            for (size_t k = 0; k < count; k++) bad += h[k] != total * (float)(k % 7);
            CHECKF(bad == 0, "device %d: %zu sums wrong", i, bad);
        }
        for (size_t k = 0; k < count; k++) h[k] = -(float)k;
        CHECK(pt_device_write(devs[0], mems[0], h, count * sizeof(float), &err) == PT_OK);
        CHECKF(be->group_broadcast(group, mems, count * sizeof(float), &err) == PT_OK, "%s", err.msg);
        for (int i = 0; i < ndev; i++) {
            CHECK(pt_device_read(devs[i], h, mems[i], count * sizeof(float), &err) == PT_OK);
            size_t bad = 0;
            for (size_t k = 0; k < count; k++) bad += h[k] != -(float)k;
            CHECKF(bad == 0, "device %d: %zu broadcast values wrong", i, bad);
        }
        be->group_close(group);
    }
    for (int i = 0; i < ndev; i++) {
        if (bufs[i]) pt_device_free(devs[i], bufs[i]);
        if (devs[i]) pt_device_close(devs[i]);
    }
    free(h);
}

/* Runs conv2d backward-filter (where cuDNN's fast algorithms use atomics) twice. */
static void gpu_deterministic_mode_repeats_conv_gradients_bitwise(void)
{
    pt_device_options opt = {.deterministic = 1};
    pt_device *d = NULL;
    pt_error err;
    if (pt_device_open("cuda", 0, &opt, &d, &err) != PT_OK) {
        CHECKF(0, "%s", err.msg);
        return;
    }
    const int n = 32, c = 64, hw = 28, k = 64;
    const size_t xs = (size_t)n * c * hw * hw, ws_ = (size_t)k * c * 9;
    pt_op op = conv_op(PT_OP_CONV2D_BWD_FILTER, n, c, hw, hw, k, 3, 3, 1, 1);
    const size_t wsb = d->be->workspace_size(d->ctx, &op);
    pt_buffer *bx = NULL, *bw = NULL, *by = NULL, *bws = NULL;
    CHECK(pt_device_alloc(d, xs * 4, &bx, &err) == PT_OK && pt_device_alloc(d, ws_ * 4, &bw, &err) == PT_OK &&
          pt_device_alloc(d, xs * 4, &by, &err) == PT_OK && pt_device_alloc(d, wsb + 4, &bws, &err) == PT_OK);
    float *h = malloc(xs * 4), *w1 = malloc(ws_ * 4), *w2 = malloc(ws_ * 4);
    uint32_t s = 12345;
    for (size_t i = 0; i < xs; i++) {
        s = s * 1664525u + 1013904223u;
        h[i] = (float)(s >> 8) / 16777216.0f - 0.5f;
    }
    pt_device_write(d, (pt_mem){bx, 0}, h, xs * 4, &err);
    for (size_t i = 0; i < xs; i++) h[i] = -h[i] * 0.25f + 0.01f;
    pt_device_write(d, (pt_mem){by, 0}, h, xs * 4, &err);
    op.t[0].mem = (pt_mem){bx, 0};
    op.t[1].mem = (pt_mem){bw, 0};
    op.t[2].mem = (pt_mem){by, 0};
    op.workspace = (pt_mem){bws, 0};
    op.workspace_bytes = wsb;
    CHECKF(pt_device_run(d, &op, &err) == PT_OK, "%s", err.msg);
    pt_device_read(d, w1, (pt_mem){bw, 0}, ws_ * 4, &err);
    CHECKF(pt_device_run(d, &op, &err) == PT_OK, "%s", err.msg);
    pt_device_read(d, w2, (pt_mem){bw, 0}, ws_ * 4, &err);
    CHECK(memcmp(w1, w2, ws_ * 4) == 0);
    free(h);
    free(w1);
    free(w2);
    pt_device_free(d, bx);
    pt_device_free(d, bw);
    pt_device_free(d, by);
    pt_device_free(d, bws);
    pt_device_close(d);
}

/* Two deterministic replicas of baseline on the GPU, one launching op by op from pageable
 * input, one capturing its parts as CUDA graphs with the input on the copy stream: the same
 * losses and, after every step, bitwise the same weights and optimizer state; a short batch
 * gets a graph of its own, and the graphs were launched. */
static void gpu_graphs_and_pinned_input_train_bitwise_like_plain(void)
{
    enum { B = 8, C = 3, HW = 16, K = 10 };
    pt_device_options opt = {.deterministic = 1};
    pt_device *d[2] = {NULL, NULL};
    pt_net *net = NULL;
    pt_replica *r[2] = {NULL, NULL};
    pt_error err;
    CHECKF(pt_device_open("cuda", 0, &opt, &d[0], &err) == PT_OK && pt_device_open("cuda", 0, &opt, &d[1], &err) == PT_OK,
           "%s", err.msg);
    CHECKF(pt_model_build("baseline", C, HW, HW, K, &net, &err) == PT_OK, "%s", err.msg);
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_ADAMW);
    const pt_replica_options ro[2] = {{.graphs = PT_SWITCH_OFF, .pinned_input = PT_SWITCH_OFF},
                                      {.graphs = PT_SWITCH_ON, .pinned_input = PT_SWITCH_ON}};
    for (int k = 0; k < 2 && d[k] && net; k++) {
        CHECKF(pt_replica_create_ex(net, d[k], B, &oc, 5, &ro[k], &r[k], &err) == PT_OK, "%s", err.msg);
        if (r[k]) CHECK(pt_replica_init_params(r[k], 5, &err) == PT_OK);
    }
    const int64_t preg = r[0] && r[1] ? pt_replica_param_region(r[0]) : 0;
    const size_t nstate = (size_t)(preg * 3 + (r[0] ? pt_replica_buffer_region(r[0]) : 0) + 1);
    float *x = malloc((size_t)B * C * HW * HW * sizeof(float)), *s0 = malloc(nstate * 4), *s1 = malloc(nstate * 4);
    int32_t y[B];
    for (int step = 0; r[0] && r[1] && x && s0 && s1 && step < 10; step++) {
        const int n = step >= 5 && step <= 7 ? 5 : B;
        for (int i = 0; i < B * C * HW * HW; i++) x[i] = (float)((i * 13 + step * 7) % 31) / 31.0f - 0.5f;
        for (int i = 0; i < B; i++) y[i] = (i + step) % K;
        float loss[2][B];
        for (int k = 0; k < 2; k++) {
            CHECKF(pt_replica_forward_backward(r[k], x, y, n, 0, step, 1.0f / (float)n, NULL, loss[k], &err) == PT_OK &&
                       pt_replica_update(r[k], 0.01f / (float)(1 + step), step + 1, &err) == PT_OK,
                   "replica %d step %d: %s", k, step, err.msg);
        }
        CHECKF(memcmp(loss[0], loss[1], (size_t)n * sizeof(float)) == 0, "step %d: losses differ", step);
        const int64_t breg = pt_replica_buffer_region(r[0]);
        CHECK(pt_replica_read_state(r[0], s0, s0 + preg, s0 + preg + breg, &err) == PT_OK &&
              pt_replica_read_state(r[1], s1, s1 + preg, s1 + preg + breg, &err) == PT_OK);
        CHECKF(memcmp(s0, s1, (nstate - 1) * 4) == 0, "step %d: weights or optimizer state differ", step);
    }
    if (r[1]) {
        pt_graph_stats gs;
        pt_replica_graph_stats(r[1], &gs);
        CHECKF(gs.on && gs.captures >= 3 && gs.launches >= 8, "on %d (%s), %lld captures, %lld launches", gs.on, gs.why,
               (long long)gs.captures, (long long)gs.launches);
        CHECK(pt_replica_pinned_input(r[1], NULL, 0));
    }
    free(x);
    free(s0);
    free(s1);
    for (int k = 0; k < 2; k++) {
        pt_replica_free(r[k]);
        if (d[k]) pt_device_close(d[k]);
    }
    pt_net_free(net);
}

/* Activations stored in bf16 on the GPU (--act-storage 16bit): cuDNN's convolutions on the stored
 * x and y, the shared kernels' 16-bit twins, against the same steps over float32 copies
 * (PT_CUDA_ACT16=copy). Deterministic devices (the heuristic's algorithms, the shared batch
 * norm): the same losses and state, bit for bit. Then cuDNN's batch norm on 16-bit x and y
 * (not deterministic) against the copies: each loss within 2% (bf16 has 8 bits; the
 * statistics are summed in another order), and fewer activation bytes than fp32 storage. */
static void gpu_16bit_activations_match_the_copies(void)
{
    enum { B = 8, C = 3, HW = 16, K = 10, STEPS = 4 };
    pt_error err;
    char why[200];
    if (pt_device_precision(g_dev, PT_PREC_BF16, why, sizeof why, &err) != PT_OK) {
        printf("  no bf16 on this GPU (%s): not run\n", err.msg);
        return;
    }
    pt_net *net = NULL;
    CHECKF(pt_model_build("baseline", C, HW, HW, K, &net, &err) == PT_OK, "%s", err.msg);
    float *x = malloc((size_t)B * C * HW * HW * sizeof(float));
    for (int det = 1; det >= 0 && net && x; det--) {
        pt_device_options opt = {.deterministic = det};
        pt_device *d[2] = {NULL, NULL};
        pt_replica *r[2] = {NULL, NULL};
        for (int k = 0; k < 2; k++) {
            if (k) setenv("PT_CUDA_ACT16", "copy", 1);
            CHECKF(pt_device_open("cuda", 0, &opt, &d[k], &err) == PT_OK, "%s", err.msg);
            unsetenv("PT_CUDA_ACT16");
            pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
            const pt_replica_options ro = {.precision = PT_PREC_BF16, .act_storage = PT_ACT_STORAGE_16BIT};
            if (d[k]) CHECKF(pt_replica_create_ex(net, d[k], B, &oc, 3, &ro, &r[k], &err) == PT_OK, "%s", err.msg);
            if (r[k]) CHECK(pt_replica_init_params(r[k], 5, &err) == PT_OK);
        }
        if (r[0] && r[1]) {
            pt_act_plan pl;
            pt_replica_act_plan(r[0], &pl);
            CHECKF(pl.n16 > 0 && pl.dtype16 == PT_BF16, "%d activations bf16", pl.n16);
        }
        const int64_t preg = r[0] && r[1] ? pt_replica_param_region(r[0]) : 0;
        const size_t nstate = (size_t)(preg + (r[0] ? pt_replica_buffer_region(r[0]) : 0));
        float *s0 = malloc(nstate * 4 + 4), *s1 = malloc(nstate * 4 + 4);
        for (int step = 0; r[0] && r[1] && s0 && s1 && step < STEPS; step++) {
            for (int i = 0; i < B * C * HW * HW; i++) x[i] = (float)((i * 13 + step * 7) % 31) / 31.0f - 0.5f;
            int32_t y[B];
            for (int i = 0; i < B; i++) y[i] = (i + step) % K;
            float loss[2][B];
            for (int k = 0; k < 2; k++)
                CHECKF(pt_replica_forward_backward(r[k], x, y, B, 0, step, 1.0f / B, NULL, loss[k], &err) == PT_OK &&
                           pt_replica_update(r[k], 0.05f, step + 1, &err) == PT_OK,
                       "%s replica %d step %d: %s", det ? "deterministic" : "cuDNN", k, step, err.msg);
            if (det) {
                CHECKF(memcmp(loss[0], loss[1], sizeof loss[0]) == 0, "step %d: losses differ", step);
                CHECK(pt_replica_read_state(r[0], s0, s0 + preg, NULL, &err) == PT_OK &&
                      pt_replica_read_state(r[1], s1, s1 + preg, NULL, &err) == PT_OK);
                CHECKF(memcmp(s0, s1, nstate * 4) == 0, "step %d: weights or BN statistics differ", step);
            } else {
                double a = 0, b = 0;
                for (int i = 0; i < B; i++) a += loss[0][i], b += loss[1][i];
                printf("  step %d: loss %.6f (cuDNN on bf16), %.6f (copies)\n", step, a / B, b / B);
                CHECKF(isfinite(a) && fabs(a - b) <= 0.02 * fabs(b), "step %d: loss %.6f vs %.6f", step, a / B, b / B);
            }
        }
        free(s0);
        free(s1);
        for (int k = 0; k < 2; k++) {
            pt_replica_free(r[k]);
            if (d[k]) pt_device_close(d[k]);
        }
    }
    free(x);
    pt_net_free(net);
}

/* Channels-last activations on the GPU (--layout nhwc) in bf16 and fp16 with 16-bit storage:
 * cuDNN's NHWC convolutions and batch norm against the NCHW plan on the same weights and batches.
 * The algorithms differ by layout, so the sums differ in order: each step's loss within 2% of
 * the NCHW one (bf16 has 8 bits), the loss going down, and most images channels last. */
static void gpu_nhwc_matches_nchw(void)
{
    enum { B = 8, C = 3, HW = 16, K = 10, STEPS = 4 };
    static const pt_precision modes[] = {PT_PREC_BF16, PT_PREC_FP16};
    pt_error err;
    pt_net *net = NULL;
    CHECKF(pt_model_build("resnet18", C, HW, HW, K, &net, &err) == PT_OK, "%s", err.msg);
    float *x = malloc((size_t)B * C * HW * HW * sizeof(float));
    for (int m = 0; m < 2 && net && x; m++) {
        char why[200];
        if (pt_device_precision(g_dev, modes[m], why, sizeof why, &err) != PT_OK) {
            printf("  no %s on this GPU (%s): not run\n", pt_precision_name(modes[m]), err.msg);
            continue;
        }
        pt_replica *r[2] = {NULL, NULL};
        for (int k = 0; k < 2; k++) {
            pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
            const pt_replica_options ro = {.precision = modes[m], .act_storage = PT_ACT_STORAGE_16BIT,
                                           .layout = k ? PT_IMAGES_NHWC : PT_IMAGES_NCHW};
            CHECKF(pt_replica_create_ex(net, g_dev, B, &oc, 3, &ro, &r[k], &err) == PT_OK, "%s", err.msg);
            if (r[k]) CHECK(pt_replica_init_params(r[k], 5, &err) == PT_OK);
        }
        if (r[1]) {
            int n4d, nhwc;
            pt_replica_count_layouts(r[1], &n4d, &nhwc);
            CHECKF(nhwc == n4d - 1, "%d of %d images NHWC", nhwc, n4d);
        }
        double first = 0, last = 0;
        for (int step = 0; r[0] && r[1] && step < STEPS; step++) {
            for (int i = 0; i < B * C * HW * HW; i++) x[i] = (float)((i * 13) % 31) / 31.0f - 0.5f;
            int32_t y[B];
            for (int i = 0; i < B; i++) y[i] = i % K;
            float loss[2][B];
            const float scale = modes[m] == PT_PREC_FP16 ? 1024.0f : 1.0f;
            for (int k = 0; k < 2; k++) {
                int found = 0;
                CHECKF(pt_replica_forward_backward(r[k], x, y, B, 0, step, scale / B, NULL, loss[k], &err) == PT_OK &&
                           (scale == 1.0f || pt_replica_unscale_grads(r[k], 1.0f / scale, &found, &err) == PT_OK) &&
                           !found && pt_replica_update(r[k], 0.02f, step + 1, &err) == PT_OK,
                       "%s %s step %d: %s", pt_precision_name(modes[m]), k ? "nhwc" : "nchw", step, err.msg);
            }
            double a = 0, b = 0;
            for (int i = 0; i < B; i++) a += loss[0][i], b += loss[1][i];
            printf("  %s step %d: loss %.6f (nchw), %.6f (nhwc)\n", pt_precision_name(modes[m]), step, a / B, b / B);
            CHECKF(isfinite(b) && fabs(a - b) <= 0.02 * fabs(a), "step %d: loss %.6f vs %.6f", step, a / B, b / B);
            if (step == 0) first = b;
            last = b;
        }
        CHECKF(last < first, "%s nhwc: the loss did not go down (%g -> %g)", pt_precision_name(modes[m]), first, last);
        for (int k = 0; k < 2; k++) pt_replica_free(r[k]);
    }
    free(x);
    pt_net_free(net);
}

/* The whole step as one graph launch on the GPU: a replica running pt_replica_train_step (fp16
 * loss scaling with the overflow flag read by the update on the device, clipping by a norm
 * formed on the device, the update and the weight EMA) against one making each decision on
 * the host between separate calls, deterministic: the same losses, skips and norms, bitwise
 * the same weights, optimizer state and EMA after every step; step 6 overflows on purpose
 * (an infinite loss-gradient scale) and changes nothing; captured steps are one launch. */
static void gpu_whole_step_matches_separate_calls(void)
{
    enum { B = 8, C = 3, HW = 16, K = 10, STEPS = 10 };
    pt_device_options opt = {.deterministic = 1};
    pt_device *d[2] = {NULL, NULL};
    pt_net *net = NULL;
    pt_replica *r[2] = {NULL, NULL};
    pt_error err;
    CHECKF(pt_device_open("cuda", 0, &opt, &d[0], &err) == PT_OK && pt_device_open("cuda", 0, &opt, &d[1], &err) == PT_OK,
           "%s", err.msg);
    CHECKF(pt_model_build("baseline", C, HW, HW, K, &net, &err) == PT_OK, "%s", err.msg);
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_ADAMW);
    const pt_replica_options ro[2] = {{.graphs = PT_SWITCH_OFF, .pinned_input = PT_SWITCH_OFF},
                                      {.graphs = PT_SWITCH_ON, .pinned_input = PT_SWITCH_ON}};
    for (int k = 0; k < 2 && d[k] && net; k++) {
        CHECKF(pt_replica_create_ex(net, d[k], B, &oc, 5, &ro[k], &r[k], &err) == PT_OK, "%s", err.msg);
        if (r[k]) CHECK(pt_replica_init_params(r[k], 5, &err) == PT_OK && pt_replica_enable_ema(r[k], &err) == PT_OK);
    }
    if (!r[0] || !r[1]) goto out;
    CHECK(!pt_replica_fuses_update(r[0]) && pt_replica_fuses_update(r[1]));
    const int64_t preg = pt_replica_param_region(r[0]), breg = pt_replica_buffer_region(r[0]);
    const size_t nstate = (size_t)(preg * 3 + breg), nema = (size_t)(preg + breg);
    float *x = malloc((size_t)B * C * HW * HW * sizeof(float));
    float *s[2] = {malloc((nstate + nema) * 4), malloc((nstate + nema) * 4)};
    int32_t y[B];
    double scale = 1024.0;
    int64_t skipped = 0, launches0 = 0;
    const float clip = 0.5f, ema = 0.9f;
    for (int step = 0; x && s[0] && s[1] && step < STEPS; step++) {
        for (int i = 0; i < B * C * HW * HW; i++) x[i] = (float)((i * 13 + step * 7) % 31) / 31.0f - 0.5f;
        for (int i = 0; i < B; i++) y[i] = (i + step) % K;
        const float gs = step == 6 ? INFINITY : (float)(scale / B), inv = (float)(1.0 / scale), lr = 0.01f;
        const int64_t updates = step - skipped + 1;
        float loss[2][B];
        int found[2] = {0, 0};
        double norm[2] = {0, 0};
        /* separate calls, each decision on the host */
        int ok = pt_replica_forward_backward(r[0], x, y, B, 0, step, gs, NULL, loss[0], &err) == PT_OK &&
                 pt_replica_unscale_grads(r[0], inv, &found[0], &err) == PT_OK;
        if (ok && !found[0])
            ok = pt_replica_clip_grads(r[0], clip, &norm[0], &err) == PT_OK &&
                 pt_replica_update(r[0], lr, updates, &err) == PT_OK && pt_replica_ema_update(r[0], ema, &err) == PT_OK;
        CHECKF(ok, "step %d, separate calls: %s", step, err.msg);
        /* one part */
        pt_graph_stats st;
        pt_replica_graph_stats(r[1], &st);
        launches0 = st.launches;
        const pt_step_update u = {.lr = lr, .updates = updates, .inv_scale = inv, .clip = clip, .ema = ema};
        pt_step_outcome o;
        CHECKF(pt_replica_train_step(r[1], x, y, NULL, NULL, B, 0, step, gs, &u, NULL, loss[1], &o, &err) == PT_OK,
               "step %d, whole: %s", step, err.msg);
        found[1] = o.found_inf;
        norm[1] = o.have_norm ? o.norm : 0;
        pt_replica_graph_stats(r[1], &st);
        if (step >= 5)
            CHECKF(st.launches == launches0 + 1, "step %d: %lld launches", step, (long long)(st.launches - launches0));
        CHECKF(memcmp(loss[0], loss[1], sizeof loss[0]) == 0, "step %d: losses differ", step);
        CHECKF(found[0] == found[1] && found[0] == (step == 6), "step %d: found %d vs %d", step, found[0], found[1]);
        CHECKF(norm[0] == norm[1], "step %d: norms %.17g vs %.17g", step, norm[0], norm[1]);
        for (int k = 0; k < 2; k++)
            CHECK(pt_replica_read_state(r[k], s[k], s[k] + 3 * preg, s[k] + preg, &err) == PT_OK &&
                  pt_device_read(d[k], s[k] + nstate, pt_replica_ema_mem(r[k]), nema * 4, &err) == PT_OK);
        CHECKF(memcmp(s[0], s[1], (nstate + nema) * 4) == 0, "step %d: weights, optimizer state or EMA differ", step);
        if (found[0]) {
            skipped++;
            scale /= 2;
        }
    }
    free(x);
    free(s[0]);
    free(s[1]);
out:
    for (int k = 0; k < 2; k++) {
        pt_replica_free(r[k]);
        if (d[k]) pt_device_close(d[k]);
    }
    pt_net_free(net);
}

/* precision() through the stub answers as the capability says (sm_XY in the device's
 * details), the workspace grows by the 16-bit copies, and a bf16 convolution that accumulates
 * lands next to the fp32 one (numerics in full: the conformance suite's math= cases). */
static void gpu_math_modes_follow_the_device_and_accumulate(void)
{
    const char *sm = strstr(g_dev->info.details, "sm_");
    const int cc = sm ? atoi(sm + 3) : 0; /* major*10 + minor: sm_90 -> 90, sm_120 -> 120 */
    for (int p = 0; p < PT_PREC_COUNT; p++) {
        char how[200];
        pt_error err;
        const pt_status st = pt_device_precision(g_dev, (pt_precision)p, how, sizeof how, &err);
        const int want = cc >= pt_cuda_precision_min_cc((pt_precision)p);
        CHECKF((st == PT_OK) == want, "%s (sm_%d): %s: %s", g_dev->info.name, cc, pt_precision_name((pt_precision)p),
               st == PT_OK ? how : err.msg);
        printf("  %s: %s\n", pt_precision_name((pt_precision)p), st == PT_OK ? how : err.msg);
    }
    if (cc < 80) return;
    const int n = 8, c = 16, hw = 12, k = 24;
    pt_op op = conv_op(PT_OP_CONV2D_FWD, n, c, hw, hw, k, 3, 3, 1, 1);
    const size_t xs = (size_t)n * c * hw * hw, wn = (size_t)k * c * 9, ys = (size_t)n * k * hw * hw;
    const size_t ws32 = g_dev->be->workspace_size(g_dev->ctx, &op);
    op.math = PT_PREC_BF16;
    const size_t ws16 = g_dev->be->workspace_size(g_dev->ctx, &op);
    CHECKF(ws16 >= ws32 + 2 * (xs + wn + ys), "workspace fp32 %zu, bf16 %zu", ws32, ws16);
    pt_buffer *bx = NULL, *bw = NULL, *by = NULL, *bws = NULL;
    pt_error err;
    const size_t wsb = ws16 > ws32 ? ws16 : ws32;
    if (pt_device_alloc(g_dev, xs * 4, &bx, &err) != PT_OK || pt_device_alloc(g_dev, wn * 4, &bw, &err) != PT_OK ||
        pt_device_alloc(g_dev, ys * 4, &by, &err) != PT_OK || pt_device_alloc(g_dev, wsb + 4, &bws, &err) != PT_OK) {
        CHECKF(0, "%s", err.msg);
        return;
    }
    float *h = malloc(xs * 4), *y32 = malloc(ys * 4), *y16 = malloc(ys * 4);
    uint32_t r = 777;
    for (size_t i = 0; i < xs; i++) r = r * 1664525u + 1013904223u, h[i] = (float)(r >> 8) / 16777216.0f - 0.5f;
    pt_device_write(g_dev, (pt_mem){bx, 0}, h, xs * 4, &err);
    for (size_t i = 0; i < wn; i++) r = r * 1664525u + 1013904223u, h[i] = (float)(r >> 8) / 16777216.0f - 0.5f;
    pt_device_write(g_dev, (pt_mem){bw, 0}, h, wn * 4, &err);
    op.t[0].mem = (pt_mem){bx, 0};
    op.t[1].mem = (pt_mem){bw, 0};
    op.t[2].mem = (pt_mem){by, 0};
    op.workspace = (pt_mem){bws, 0};
    op.workspace_bytes = wsb;
    for (int pass = 0; pass < 2; pass++) {
        /* y = 1 everywhere, then y += conv(x, w) in fp32 (pass 0) or bf16 (pass 1) */
        for (size_t i = 0; i < ys; i++) h[i] = 1.0f;
        pt_device_write(g_dev, (pt_mem){by, 0}, h, ys * 4, &err);
        op.math = pass ? PT_PREC_BF16 : PT_PREC_FP32;
        op.accumulate = 1;
        CHECKF(pt_device_run(g_dev, &op, &err) == PT_OK, "math=%s: %s", pt_precision_name(op.math), err.msg);
        pt_device_read(g_dev, pass ? y16 : y32, (pt_mem){by, 0}, ys * 4, &err);
    }
    double num = 0, den = 0;
    for (size_t i = 0; i < ys; i++) {
        num += (y16[i] - y32[i]) * (double)(y16[i] - y32[i]);
        den += (y32[i] - 1.0) * (y32[i] - 1.0);
    }
    const double rel = den > 0 ? sqrt(num / den) : 1.0;
    CHECKF(rel < 4.0 / 256 && rel > 0, "bf16 accumulate vs fp32: relative error %.3g", rel);
    printf("  bf16 conv (accumulate) vs fp32: relative error %.3g\n", rel);
    free(h);
    free(y32);
    free(y16);
    pt_device_free(g_dev, bx);
    pt_device_free(g_dev, bw);
    pt_device_free(g_dev, by);
    pt_device_free(g_dev, bws);
}

/* The module's supports() (its validate path, which needs no device) for every op kind:
 * each kind's operand signature is found by trying counts and dtypes against core's own
 * check, so a kind added to the op table is covered here without editing this test. */
static void module_supports_every_op_kind(void)
{
    void *h = NULL;
    char path[4096];
    pt_error err;
    if (pt_cuda_module_open(&h, path, sizeof path, &err) != PT_OK) {
        CHECKF(0, "the module of this build does not load: %s", err.msg);
        return;
    }
    pt_cuda_module_entry_fn entry = (pt_cuda_module_entry_fn)dlsym(h, PT_CUDA_MODULE_ENTRY);
    const pt_backend_iface *be = entry ? entry(PT_BACKEND_API_VERSION, sizeof(pt_backend_iface)) : NULL;
    CHECKF(be && be->supports, "%s: no backend table", path);
    if (!be || !be->supports) return;
    int checked = 0;
    for (int k = 0; k < PT_OP_KIND_COUNT; k++) {
        pt_op op;
        int found = 0;
        for (int nt = 1; nt <= PT_OP_MAX_OPERANDS && !found; nt++)
            for (unsigned mask = 0; mask < (1u << nt) && !found; mask++) {
                memset(&op, 0, sizeof op);
                op.kind = (pt_op_kind)k;
                op.nt = nt;
                /* every optional state operand present */
                if (k == PT_OP_SGD) op.p.sgd.momentum = 0.9f;
                if (k == PT_OP_RMSPROP) {
                    op.p.rmsprop.momentum = 0.9f;
                    op.p.rmsprop.centered = 1;
                }
                for (int i = 0; i < nt; i++) {
                    op.t[i].dtype = (mask >> i) & 1 ? PT_I32 : PT_F32;
                    op.t[i].ndim = 1;
                    op.t[i].dim[0] = 1;
                }
                found = pt_op_check_operands(&op, "probe", PT_CAP_MIXUP_TARGETS, 0, NULL) == PT_OK;
            }
        CHECKF(found, "%s: no operand signature passes core's check", pt_op_name((pt_op_kind)k));
        if (!found) continue;
        CHECKF(be->supports(NULL, &op), "the cuda module does not support %s (%d operands)",
               pt_op_name((pt_op_kind)k), op.nt);
        checked++;
    }
    CHECKF(checked == PT_OP_KIND_COUNT, "%d of %d op kinds checked", checked, (int)PT_OP_KIND_COUNT);
    /* and it is not a yes to everything: an unknown kind and a wrong operand count */
    pt_op bad;
    memset(&bad, 0, sizeof bad);
    bad.kind = PT_OP_KIND_COUNT;
    bad.nt = 1;
    CHECK(!be->supports(NULL, &bad));
    bad.kind = PT_OP_SIGMOID_FWD;
    bad.nt = 1;
    CHECK(!be->supports(NULL, &bad));
    /* the fused add+ReLU and BN+ReLU are declared (PT_CAP_FUSED_RELU); not on other kinds */
    memset(&bad, 0, sizeof bad);
    bad.kind = PT_OP_ADD;
    bad.nt = 3;
    for (int i = 0; i < 3; i++) bad.t[i].dtype = PT_F32, bad.t[i].ndim = 1, bad.t[i].dim[0] = 1;
    CHECK(be->supports(NULL, &bad));
    bad.fuse_relu = 1;
    CHECK(be->supports(NULL, &bad));
    bad.kind = PT_OP_RELU_BWD;
    CHECK(!be->supports(NULL, &bad));
    /* math modes: only on a GEMM or convolution, and without a device (whose compute
     * capability decides) none at all; fp32 always */
    bad.fuse_relu = 0;
    bad.math = PT_PREC_BF16;
    CHECK(!be->supports(NULL, &bad));
    pt_op g;
    memset(&g, 0, sizeof g);
    g.kind = PT_OP_GEMM;
    g.nt = 3;
    for (int i = 0; i < 3; i++) g.t[i].dtype = PT_F32, g.t[i].ndim = 2, g.t[i].dim[0] = g.t[i].dim[1] = 2;
    CHECK(be->supports(NULL, &g));
    for (int m = PT_PREC_TF32; m < PT_PREC_COUNT; m++) {
        g.math = (pt_precision)m;
        CHECKF(!be->supports(NULL, &g), "math=%s supported without a device", pt_precision_name((pt_precision)m));
    }
    CHECKF(be->precision != NULL, "the module has no precision()");
    /* the module stays loaded, as the stub keeps it: unloading it would orphan the buffers
     * cuBLAS's libraries allocate once at load (LeakSanitizer reports them) */
    (void)h;
}

int main(void)
{
    RUN(allocator_rounds_to_granules_and_bounded_waste);
    RUN(allocator_reuses_freed_blocks_and_counts_bytes);
    RUN(allocator_releases_cache_and_retries_then_names_sizes);
    RUN(plan_cache_keys_every_field_and_mode);
    RUN(plan_cache_holds_every_batch_size_of_a_resnet);
    RUN(conv_plans_take_16bit_activations_where_stored);
    RUN(conv_plans_run_channels_last_in_16_bit_modes);
    RUN(precision_follows_compute_capability_and_names_the_device);
    RUN(loader_explains_missing_vendor_libraries);
    RUN(loader_searches_env_then_next_to_the_binary);
    RUN(stub_names_a_missing_or_broken_module);
    RUN(devices_says_whether_there_is_a_gpu);
    RUN(module_supports_every_op_kind);
    pt_error err;
    if (pt_device_open("cuda", 0, NULL, &g_dev, &err) != PT_OK) {
        printf("no cuda device (%s): the GPU checks did not run\n", err.msg);
    } else {
        printf("cuda device 0: %s\n", g_dev->info.name);
        RUN(gpu_errors_name_device_index_and_sizes);
        RUN(gpu_round_trips_through_the_staging_buffers);
        RUN(gpu_group_allreduces_and_broadcasts_over_every_device);
        RUN(gpu_deterministic_mode_repeats_conv_gradients_bitwise);
        RUN(gpu_math_modes_follow_the_device_and_accumulate);
        RUN(gpu_graphs_and_pinned_input_train_bitwise_like_plain);
        RUN(gpu_whole_step_matches_separate_calls);
        RUN(gpu_16bit_activations_match_the_copies);
        RUN(gpu_nhwc_matches_nchw);
        pt_device_close(g_dev);
    }
    TEST_EXIT();
}
#endif
