/* The opencl backend's Winograd F(2x2,3x3) convolutions (backends/kernels/kernel_winograd.c)
 * against a float64 direct convolution on fresh random inputs: forward, data gradient and filter
 * gradient, odd sizes, padding 0/1/2, maps smaller than a tile, odd channel counts, with and
 * without accumulate, outputs poisoned with NaN and guarded by sentinels on both sides. The same
 * cases through im2col (Winograd off) for comparison; the PT_OPENCL_WINOGRAD switch and the rule
 * that picks the path. Exits 77 (skipped) when no OpenCL device exists.
 *
 * The bound: normalised error (L2 of the difference over L2 of the reference) at most 1e-5.
 * Float32's unit roundoff is 6e-8; the sums here have at most 9*C <= 216 terms (or N*P*Q <= 480
 * in the filter gradient), and the transforms add a few terms of coefficients 1 and 1/2 at each
 * stage, which grows the rounding error by a small constant, not with the sizes: measured
 * 1e-7 to 6e-7, as im2col's. A wrong tap, tile or padding gives errors of order 1. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "polytrain/backend.h"
#include "pt_test.h"
#include "pt_test_opencl.h"

#ifndef PT_HAVE_OPENCL
int main(void)
{
    printf("SKIP: the opencl backend is not compiled into this build\n");
    return 77;
}
#else
#include "backends/kernels/kernel_winograd.h"
#include "backends/opencl/ocl_internal.h"
#include "backends/opencl/ocl_tune.h"

#define BOUND 1e-5
#define GUARD 64 /* floats of sentinel after each operand */
#define SENTINEL 12345.0f

static pt_device *g_ocl;
static uint64_t g_seed;

static float frand(void)
{
    g_seed = g_seed * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((g_seed >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

typedef struct shape {
    int n, c, h, w, k, pad;
} shape;

static int out_dim(int in, int pad) { return in + 2 * pad - 2; }

/* float64 direct convolution: y = conv(x, w), or the data or filter gradient, plus init when
 * accumulating (x, w, y as the op's t0, t1, t2 in every direction). */
static void reference(pt_op_kind kind, const shape *s, const float *x, const float *w, const float *y, double *out,
                      int acc)
{
    const int P = out_dim(s->h, s->pad), Q = out_dim(s->w, s->pad);
    const float *init = kind == PT_OP_CONV2D_FWD ? y : kind == PT_OP_CONV2D_BWD_DATA ? x : w;
    const size_t n_out = kind == PT_OP_CONV2D_FWD        ? (size_t)s->n * s->k * P * Q
                         : kind == PT_OP_CONV2D_BWD_DATA ? (size_t)s->n * s->c * s->h * s->w
                                                         : (size_t)s->k * s->c * 9;
    for (size_t i = 0; i < n_out; i++) out[i] = acc ? init[i] : 0.0;
    for (int n = 0; n < s->n; n++)
        for (int k = 0; k < s->k; k++)
            for (int p = 0; p < P; p++)
                for (int q = 0; q < Q; q++)
                    for (int c = 0; c < s->c; c++)
                        for (int r = 0; r < 3; r++)
                            for (int t = 0; t < 3; t++) {
                                const int h = p - s->pad + r, ww = q - s->pad + t;
                                if (h < 0 || h >= s->h || ww < 0 || ww >= s->w) continue;
                                const size_t xi = (((size_t)n * s->c + c) * s->h + h) * s->w + ww;
                                const size_t wi = (((size_t)k * s->c + c) * 3 + r) * 3 + t;
                                const size_t yi = (((size_t)n * s->k + k) * P + p) * Q + q;
                                if (kind == PT_OP_CONV2D_FWD) out[yi] += (double)x[xi] * w[wi];
                                else if (kind == PT_OP_CONV2D_BWD_DATA) out[xi] += (double)y[yi] * w[wi];
                                else out[wi] += (double)y[yi] * x[xi];
                            }
}

/* One op on the device with winograd set as given; returns the normalised error of its output
 * against the float64 reference (INFINITY on NaN, a failed run or a touched sentinel). */
/* cap (bytes): 0 runs the op on the device as the trainer does; else pt_kwino_run directly with
 * that scratch bound, which splits the tiles into blocks of pt_kwino_block (*blocks: how many). */
static double run_capped(pt_op_kind kind, const shape *s, int acc, int winograd, int *took_winograd, size_t cap,
                         int *blocks);

static double run_once(pt_op_kind kind, const shape *s, int acc, int winograd, int *took_winograd)
{
    return run_capped(kind, s, acc, winograd, took_winograd, 0, NULL);
}

static double run_capped(pt_op_kind kind, const shape *s, int acc, int winograd, int *took_winograd, size_t cap,
                         int *blocks)
{
    ocl_device *d = g_ocl->ctx;
    d->winograd = winograd;
    const int P = out_dim(s->h, s->pad), Q = out_dim(s->w, s->pad);
    const int64_t xd[4] = {s->n, s->c, s->h, s->w}, wd[4] = {s->k, s->c, 3, 3}, yd[4] = {s->n, s->k, P, Q};
    const size_t cnt[3] = {(size_t)s->n * s->c * s->h * s->w, (size_t)s->k * s->c * 9, (size_t)s->n * s->k * P * Q};
    const int out_t = kind == PT_OP_CONV2D_FWD ? 2 : kind == PT_OP_CONV2D_BWD_DATA ? 0 : 1;
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = kind;
    op.nt = 3;
    op.accumulate = acc;
    op.p.conv.stride = 1;
    op.p.conv.pad = s->pad;
    /* operands at 4-byte offsets that are not 64-byte aligned, a guard after each */
    size_t off[3], at = 4 * GUARD + 12;
    for (int i = 0; i < 3; i++) {
        off[i] = at;
        at += (cnt[i] + GUARD) * 4;
    }
    op.t[0] = pt_tensor_make(NULL, off[0], PT_F32, 4, xd);
    op.t[1] = pt_tensor_make(NULL, off[1], PT_F32, 4, wd);
    op.t[2] = pt_tensor_make(NULL, off[2], PT_F32, 4, yd);
    pt_kdev kd = ocl_kdev(d);
    if (cap) kd.conv_ws_cap = cap;
    *took_winograd = pt_kwino_use(&kd, &op);
    if (blocks) {
        const int tb = pt_kwino_block(&kd, &op), tiles = s->n * ((P + 1) / 2) * ((Q + 1) / 2);
        *blocks = tb > 0 ? (tiles + tb - 1) / tb : 0;
    }
    const size_t ws = cap ? pt_kwino_workspace(&kd, &op) : g_ocl->be->workspace_size(g_ocl->ctx, &op);
    const size_t total = at + ws;
    float *host = malloc(total);
    for (size_t i = 0; i < total / 4; i++) host[i] = SENTINEL;
    float *t[3];
    for (int i = 0; i < 3; i++) {
        t[i] = host + off[i] / 4;
        for (size_t j = 0; j < cnt[i]; j++) t[i][j] = i == out_t && !acc ? NAN : frand();
    }
    double *ref = malloc(cnt[out_t] * sizeof(double));
    reference(kind, s, t[0], t[1], t[2], ref, acc);
    pt_buffer *b = NULL;
    pt_error err;
    double e = INFINITY;
    if (pt_device_alloc(g_ocl, total, &b, &err) != PT_OK) {
        CHECKF(0, "alloc: %s", err.msg);
        goto done;
    }
    for (int i = 0; i < 3; i++) op.t[i].mem.buf = b;
    op.workspace = (pt_mem){b, at};
    op.workspace_bytes = ws;
    CHECK(pt_device_write(g_ocl, (pt_mem){b, 0}, host, at, &err) == PT_OK);
    /* the workspace holds whatever ran before: NaN here, which nothing may read */
    if (ws) {
        float *junk = malloc(ws);
        for (size_t i = 0; i < ws / 4; i++) junk[i] = NAN;
        CHECK(pt_device_write(g_ocl, op.workspace, junk, ws, &err) == PT_OK);
        free(junk);
    }
    if ((cap ? pt_kwino_run(&kd, &op, &err) : pt_device_run(g_ocl, &op, &err)) != PT_OK) {
        CHECKF(0, "%s: %s", pt_op_name(kind), err.msg);
        goto done;
    }
    float *back = malloc(at);
    CHECK(pt_device_read(g_ocl, back, (pt_mem){b, 0}, at, &err) == PT_OK);
    int touched = 0;
    for (size_t i = 0; i < at / 4; i++) {
        const int inside = (i >= off[out_t] / 4 && i < off[out_t] / 4 + cnt[out_t]);
        if (!inside && memcmp(&back[i], &host[i], 4) != 0 && !(isnan(back[i]) && isnan(host[i]))) touched++;
    }
    CHECKF(touched == 0, "%s: %d floats outside the output changed", pt_op_name(kind), touched);
    e = touched ? INFINITY : pt_t_rel_err_f32_f64(back + off[out_t] / 4, ref, (long)cnt[out_t]);
    free(back);
done:
    if (b) pt_device_free(g_ocl, b);
    free(ref);
    free(host);
    return e;
}

static const shape g_shapes[] = {
    {2, 3, 9, 7, 5, 1},    /* odd sizes: tiles cut at the bottom and right */
    {1, 4, 5, 6, 3, 0},    /* padding 0 */
    {3, 2, 7, 5, 4, 2},    /* padding 2: the data gradient's own padding is 0 */
    {2, 17, 6, 9, 19, 1},  /* odd channel counts */
    {1, 2, 1, 1, 3, 1},    /* a 1x1 map: one tile, three quarters outside */
    {2, 5, 2, 3, 4, 2},    /* padding 2 on a map smaller than the filter */
    {1, 3, 3, 3, 2, 0},    /* a 1x1 output */
    {4, 24, 12, 10, 16, 1}, /* wide enough for the measured rule */
    {2, 64, 14, 14, 128, 1}, /* a baseline layer: GEMMs past CLBlast's small-matrix kernel */
    {3, 40, 11, 13, 72, 1},  /* tiled GEMMs on planes padded (zeros) to the GEMM's multiples: channels
                                and 126 tiles off them */
};

static void winograd_matches_float64_in_all_three_directions(void)
{
    static const pt_op_kind kinds[3] = {PT_OP_CONV2D_FWD, PT_OP_CONV2D_BWD_DATA, PT_OP_CONV2D_BWD_FILTER};
    double worst_w = 0.0, worst_i = 0.0;
    int cases = 0;
    for (size_t si = 0; si < sizeof g_shapes / sizeof g_shapes[0]; si++)
        for (int k = 0; k < 3; k++)
            for (int acc = 0; acc < 2; acc++) {
                const shape *s = &g_shapes[si];
                int took_w = 0, took_i = 1;
                const double ew = run_once(kinds[k], s, acc, PT_KWINO_FORCE, &took_w);
                const double ei = run_once(kinds[k], s, acc, PT_KWINO_OFF, &took_i);
                CHECKF(took_w && !took_i, "%s n=%d c=%d %dx%d k=%d pad=%d: Winograd forced %d, off %d",
                       pt_op_name(kinds[k]), s->n, s->c, s->h, s->w, s->k, s->pad, took_w, took_i);
                CHECKF(ew <= BOUND && ei <= BOUND,
                       "%s n=%d c=%d %dx%d k=%d pad=%d acc=%d: normalised error Winograd %.3g, im2col %.3g (bound %g)",
                       pt_op_name(kinds[k]), s->n, s->c, s->h, s->w, s->k, s->pad, acc, ew, ei, BOUND);
                if (ew > worst_w) worst_w = ew;
                if (ei > worst_i) worst_i = ei;
                cases++;
            }
    printf("  %d cases: worst normalised error Winograd %.3g, im2col %.3g (bound %g)\n", cases, worst_w, worst_i,
           BOUND);
}

/* Blocks of tiles that cut tile rows (and samples), past the first block the filter gradient's
 * GEMMs accumulating: a scratch bound small enough for 2-4 blocks; blocks under the GEMM's
 * tile multiple (the second shape) fall back to unpadded tiles. */
static void winograd_in_several_blocks_matches_float64(void)
{
    static const pt_op_kind kinds[3] = {PT_OP_CONV2D_FWD, PT_OP_CONV2D_BWD_DATA, PT_OP_CONV2D_BWD_FILTER};
    static const shape shapes[2] = {{3, 40, 11, 13, 72, 1}, {2, 17, 6, 9, 19, 1}};
    static const int most[2] = {100, 12}; /* tiles per block at most: 126 and 30 tiles in all */
    ocl_device *d = g_ocl->ctx;
    double worst = 0.0;
    for (int si = 0; si < 2; si++)
        for (int k = 0; k < 3; k++)
            for (int acc = 0; acc < 2; acc++) {
                const shape *s = &shapes[si];
                /* the largest bound (down in 1/8 steps) whose blocks hold at most most[si] tiles */
                pt_kdev kd = ocl_kdev(d);
                size_t cap = kd.conv_ws_cap;
                pt_op probe;
                memset(&probe, 0, sizeof probe);
                probe.kind = kinds[k];
                probe.nt = 3;
                probe.p.conv.stride = 1;
                probe.p.conv.pad = s->pad;
                const int P = out_dim(s->h, s->pad), Q = out_dim(s->w, s->pad);
                const int64_t xd[4] = {s->n, s->c, s->h, s->w}, wd[4] = {s->k, s->c, 3, 3}, yd[4] = {s->n, s->k, P, Q};
                probe.t[0] = pt_tensor_make(NULL, 0, PT_F32, 4, xd);
                probe.t[1] = pt_tensor_make(NULL, 0, PT_F32, 4, wd);
                probe.t[2] = pt_tensor_make(NULL, 0, PT_F32, 4, yd);
                for (;;) {
                    kd.conv_ws_cap = cap;
                    const int tb = pt_kwino_block(&kd, &probe);
                    if (tb <= most[si] || tb < 1) break;
                    cap -= cap / 8;
                }
                int took = 0, blocks = 0;
                const double e = run_capped(kinds[k], s, acc, PT_KWINO_FORCE, &took, cap, &blocks);
                CHECKF(took && blocks >= 2 && blocks <= 4, "%s c=%d k=%d: Winograd %d in %d blocks (cap %zu)",
                       pt_op_name(kinds[k]), s->c, s->k, took, blocks, cap);
                CHECKF(e <= BOUND, "%s n=%d c=%d %dx%d k=%d acc=%d in %d blocks: normalised error %.3g (bound %g)",
                       pt_op_name(kinds[k]), s->n, s->c, s->h, s->w, s->k, acc, blocks, e, BOUND);
                if (e > worst) worst = e;
            }
    printf("  12 cases in blocks: worst normalised error %.3g (bound %g)\n", worst, BOUND);
}

/* The rule: 3x3 stride 1, padding up to 2, fp32; by default only where it measured faster. */
static void the_rule_picks_winograd_for_wide_layers_only(void)
{
    ocl_device *d = g_ocl->ctx;
    const int64_t x1[4] = {64, 1, 28, 28}, w1[4] = {64, 1, 3, 3}, y1[4] = {64, 64, 28, 28};
    const int64_t x2[4] = {64, 64, 14, 14}, w2[4] = {128, 64, 3, 3}, y2[4] = {64, 128, 14, 14};
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = PT_OP_CONV2D_FWD;
    op.nt = 3;
    op.p.conv.stride = 1;
    op.p.conv.pad = 1;
    d->winograd = PT_KWINO_AUTO;
    pt_kdev kd = ocl_kdev(d);
    op.t[0] = pt_tensor_make(NULL, 0, PT_F32, 4, x1);
    op.t[1] = pt_tensor_make(NULL, 0, PT_F32, 4, w1);
    op.t[2] = pt_tensor_make(NULL, 0, PT_F32, 4, y1);
    CHECKF(!pt_kwino_use(&kd, &op), "one input channel: im2col");
    op.t[0] = pt_tensor_make(NULL, 0, PT_F32, 4, x2);
    op.t[1] = pt_tensor_make(NULL, 0, PT_F32, 4, w2);
    op.t[2] = pt_tensor_make(NULL, 0, PT_F32, 4, y2);
    CHECKF(pt_kwino_use(&kd, &op), "64 -> 128 channels on 14x14: Winograd");
    CHECKF(g_ocl->be->workspace_size(g_ocl->ctx, &op) == pt_kwino_workspace(&kd, &op), "workspace");
    op.math = PT_PREC_FP16;
    CHECKF(!pt_kwino_use(&kd, &op), "fp16 keeps im2col");
    op.math = PT_PREC_FP32;
    op.p.conv.pad = 3;
    CHECKF(!pt_kwino_use(&kd, &op), "padding 3: im2col");
    op.p.conv.pad = 1;
    d->winograd = PT_KWINO_OFF;
    kd = ocl_kdev(d);
    CHECKF(!pt_kwino_use(&kd, &op) && kd.sgemm_batched == NULL, "PT_OPENCL_WINOGRAD=0: im2col");
    d->winograd = PT_KWINO_AUTO;
}

/* polytrain tune times the GEMMs the convolutions run: Winograd's per plane where it is taken
 * (C = A^T B, 16 per block, the sizes before padding), im2col's elsewhere. */
static void tuning_times_the_gemms_each_path_runs(void)
{
    pt_ocl_gemm_shape g[3];
    unsetenv("PT_OPENCL_WINOGRAD");
    CHECK(pt_opencl_conv_gemms(64, 64, 14, 14, 128, 3, 1, 1, 0, g) == 3);
    const size_t tiles = 64 * 7 * 7;
    CHECKF(g[0].tiled && g[0].m == 128 && g[0].n == tiles && g[0].k == 64 && g[0].trans_a && !g[0].trans_b &&
               g[0].calls == 16,
           "forward %zu x %zu x %zu tiled %d calls %d", g[0].m, g[0].n, g[0].k, g[0].tiled, g[0].calls);
    CHECKF(g[1].tiled && g[1].m == 64 && g[1].n == tiles && g[1].k == 128 && g[1].calls == 16, "data %zu x %zu x %zu",
           g[1].m, g[1].n, g[1].k);
    CHECKF(g[2].tiled && g[2].m == 128 && g[2].n == 64 && g[2].k == tiles && g[2].calls == 16, "filter %zu x %zu x %zu",
           g[2].m, g[2].n, g[2].k);
    /* one input channel, no data gradient: the direct kernels, no GEMM; eight: the forward
     * (C*R*S 72) by im2col, the filter gradient by Winograd's rule (C < 16) im2col as well */
    CHECK(pt_opencl_conv_gemms(64, 1, 28, 28, 64, 3, 1, 1, 1, g) == 0);
    CHECK(pt_opencl_conv_gemms(64, 8, 28, 28, 16, 3, 1, 1, 1, g) == 2);
    CHECKF(!g[0].tiled && g[0].m == 16 && g[0].k == 72 && !g[1].tiled && g[1].n == 72, "8 -> 16: %zu %zu / %zu",
           g[0].m, g[0].k, g[1].n);
    setenv("PT_OPENCL_WINOGRAD", "0", 1);
    CHECK(pt_opencl_conv_gemms(64, 64, 14, 14, 128, 3, 1, 1, 0, g) == 3);
    CHECKF(!g[0].tiled && g[0].k == 64 * 9 && !g[1].tiled && !g[2].tiled, "Winograd off: im2col");
    unsetenv("PT_OPENCL_WINOGRAD");
}

static void the_switch_is_read_at_open_and_a_bad_value_is_refused(void)
{
    pt_device *dev = NULL;
    pt_error err;
    setenv("PT_OPENCL_WINOGRAD", "0", 1);
    CHECK(pt_device_open("opencl", 0, NULL, &dev, &err) == PT_OK);
    if (dev) {
        CHECK(((ocl_device *)dev->ctx)->winograd == PT_KWINO_OFF);
        CHECKF(strstr(dev->info.details, "Winograd off") != NULL, "details: %s", dev->info.details);
        pt_device_close(dev);
        dev = NULL;
    }
    setenv("PT_OPENCL_WINOGRAD", "yes", 1);
    CHECK(pt_device_open("opencl", 0, NULL, &dev, &err) == PT_ERR_INVALID && dev == NULL);
    CHECKF(strstr(err.msg, "PT_OPENCL_WINOGRAD is 'yes', expected 0") != NULL, "%s", err.msg);
    printf("  PT_OPENCL_WINOGRAD=yes: %s\n", err.msg);
    unsetenv("PT_OPENCL_WINOGRAD");
}

int main(void)
{
    unsetenv("PT_OPENCL_WINOGRAD");
    const int rc = pt_t_open_opencl(&g_ocl);
    if (rc) return rc;
    g_seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20); /* fresh inputs every run */
    printf("  seed %llu\n", (unsigned long long)g_seed);
    RUN(winograd_matches_float64_in_all_three_directions);
    RUN(winograd_in_several_blocks_matches_float64);
    RUN(the_rule_picks_winograd_for_wide_layers_only);
    RUN(tuning_times_the_gemms_each_path_runs);
    RUN(the_switch_is_read_at_open_and_a_bad_value_is_refused);
    pt_device_close(g_ocl);
    TEST_EXIT();
}
#endif
