/* The direct convolution for a small C*R*S (backends/kernels/ops_conv_small.cl), which the
 * opencl device runs for a first layer's forward and filter gradient instead of im2col +
 * GEMM: against the cpu backend on fresh random inputs (a new seed each run, printed), in
 * several shapes (1 and 3 input channels, stride 1 and 2, padding 0 and 1, C*R*S up to the
 * limit), overwriting poisoned (NaN) outputs and accumulating into random ones; and a bad
 * PT_OPENCL_CONV_SMALL_CRS refused at device open. Skips (77) without an OpenCL device. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backends/kernels/kernel_ops.h"
#include "core/rng.h"
#include "polytrain/backend.h"
#include "pt_test.h"
#include "pt_test_opencl.h"

/* Normalised error ||dev - cpu|| / ||cpu||: the same float products summed in another order
 * (up to 12544 terms per weight of the filter gradient) stay far below it. */
#define BOUND 1e-5

static pt_device *g_ocl, *g_cpu;
static uint64_t g_seed;
static uint32_t g_stream;

static void fill(float *v, size_t n)
{
    g_stream++;
    for (size_t i = 0; i < n; i++)
        v[i] = 2.0f * ((float)(pt_rng_u32(g_seed, 0x53u, g_stream, 0, (uint32_t)i) >> 8) / 16777216.0f) - 1.0f;
}

typedef struct shape {
    int n, c, h, w, k, r, st, pad;
} shape;

/* Runs conv op `kind` with the same x, w (or dw) and y (or dy) on both devices; `out` (1 w, 2
 * y) starts as NaN (acc 0) or random values (acc 1). Returns the normalised error of out. */
static double run_both(const shape *s, pt_op_kind kind, int acc, size_t *ws_ocl)
{
    const int p = (s->h + 2 * s->pad - s->r) / s->st + 1, q = (s->w + 2 * s->pad - s->r) / s->st + 1;
    const int64_t dx[4] = {s->n, s->c, s->h, s->w}, dw[4] = {s->k, s->c, s->r, s->r}, dy[4] = {s->n, s->k, p, q};
    const size_t nel[3] = {(size_t)(s->n * s->c * s->h * s->w), (size_t)(s->k * s->c * s->r * s->r),
                           (size_t)(s->n * s->k * p * q)};
    const int out = kind == PT_OP_CONV2D_FWD ? 2 : 1;
    float *host[3], *res[2];
    for (int i = 0; i < 3; i++) {
        host[i] = malloc(nel[i] * sizeof(float));
        fill(host[i], nel[i]);
    }
    if (!acc)
        for (size_t e = 0; e < nel[out]; e++) host[out][e] = NAN;
    pt_device *dev[2] = {g_cpu, g_ocl};
    for (int d = 0; d < 2; d++) {
        pt_buffer *b[3], *ws = NULL;
        pt_error err;
        pt_op op;
        memset(&op, 0, sizeof op);
        op.kind = kind;
        op.nt = 3;
        op.accumulate = acc;
        op.p.conv.stride = s->st;
        op.p.conv.pad = s->pad;
        const int64_t *dims[3] = {dx, dw, dy};
        for (int i = 0; i < 3; i++) {
            CHECKF(pt_device_alloc(dev[d], nel[i] * sizeof(float) + 64, &b[i], &err) == PT_OK, "%s", err.msg);
            /* at an offset: the kernels must honour it */
            CHECK(pt_device_write(dev[d], (pt_mem){b[i], 64}, host[i], nel[i] * sizeof(float), &err) == PT_OK);
            op.t[i] = pt_tensor_make(b[i], 64, PT_F32, 4, dims[i]);
        }
        const size_t need = dev[d]->be->workspace_size(dev[d]->ctx, &op);
        if (d == 1) *ws_ocl = need;
        if (need) CHECK(pt_device_alloc(dev[d], need, &ws, &err) == PT_OK);
        op.workspace = (pt_mem){ws, 0};
        op.workspace_bytes = need;
        CHECKF(pt_device_run(dev[d], &op, &err) == PT_OK && pt_device_sync(dev[d], &err) == PT_OK, "%s", err.msg);
        res[d] = malloc(nel[out] * sizeof(float));
        CHECK(pt_device_read(dev[d], res[d], (pt_mem){b[out], 64}, nel[out] * sizeof(float), &err) == PT_OK);
        for (int i = 0; i < 3; i++) pt_device_free(dev[d], b[i]);
        if (ws) pt_device_free(dev[d], ws);
    }
    double num = 0, den = 0;
    int64_t bad = 0;
    for (size_t e = 0; e < nel[out]; e++) {
        if (!isfinite(res[1][e]) || !isfinite(res[0][e])) {
            bad++;
            continue;
        }
        const double d = (double)res[1][e] - res[0][e];
        num += d * d;
        den += (double)res[0][e] * res[0][e];
    }
    CHECKF(bad == 0, "%lld of %zu outputs NaN/Inf (a poisoned output not overwritten?)", (long long)bad, nel[out]);
    for (int i = 0; i < 3; i++) free(host[i]);
    free(res[0]);
    free(res[1]);
    return bad ? INFINITY : sqrt(num) / (sqrt(den) > 0 ? sqrt(den) : 1.0);
}

static void forward_and_filter_gradient_match_cpu(void)
{
    static const shape shapes[] = {
        {64, 1, 28, 28, 16, 3, 1, 1}, /* the baseline's first layer on Fashion-MNIST (fewer filters) */
        {5, 3, 17, 13, 8, 3, 1, 1},   /* RGB, odd sizes */
        {4, 3, 16, 16, 6, 3, 2, 1},   /* stride 2 */
        {3, 1, 9, 11, 4, 3, 2, 0},    /* stride 2, no padding */
        {2, 2, 12, 10, 5, 4, 1, 0},   /* C*R*S = 32, the limit */
        {3, 1, 7, 7, 3, 5, 1, 1},     /* 5x5 */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape *s = &shapes[i];
        CHECKF(s->c * s->r * s->r <= PT_KCONV_SMALL_MAX, "shape %zu is not a small C*R*S", i);
        for (int kind = 0; kind < 2; kind++)
            for (int acc = 0; acc < 2; acc++) {
                const pt_op_kind k = kind ? PT_OP_CONV2D_BWD_FILTER : PT_OP_CONV2D_FWD;
                size_t ws = 1;
                const double e = run_both(s, k, acc, &ws);
                /* the direct kernels need no workspace; im2col + GEMM would */
                CHECKF(ws == 0, "%s x=%dx%dx%dx%d: workspace %zu: not the direct kernel", pt_op_name(k), s->n, s->c,
                       s->h, s->w, ws);
                CHECKF(e <= BOUND, "%s x=%dx%dx%dx%d w=%dx%dx%dx%d st=%d pad=%d acc=%d: normalised error %.3g > %g",
                       pt_op_name(k), s->n, s->c, s->h, s->w, s->k, s->c, s->r, s->r, s->st, s->pad, acc, e, BOUND);
                printf("  %-17s x=%dx%dx%dx%d w=%dx%dx%dx%d st=%d pad=%d acc=%d: error %.2g\n", pt_op_name(k), s->n,
                       s->c, s->h, s->w, s->k, s->c, s->r, s->r, s->st, s->pad, acc, e);
            }
    }
}

static void the_rule_takes_small_fp32_forward_and_filter_gradient_only(void)
{
    pt_kdev dev;
    memset(&dev, 0, sizeof dev);
    dev.conv_small_fwd_crs = dev.conv_small_crs = 27;
    pt_op op;
    memset(&op, 0, sizeof op);
    op.nt = 3;
    const int64_t dx[4] = {2, 3, 8, 8}, dw[4] = {4, 3, 3, 3}, dy[4] = {2, 4, 8, 8};
    op.t[0] = pt_tensor_make(NULL, 0, PT_F32, 4, dx);
    op.t[1] = pt_tensor_make(NULL, 0, PT_F32, 4, dw);
    op.t[2] = pt_tensor_make(NULL, 0, PT_F32, 4, dy);
    op.kind = PT_OP_CONV2D_FWD;
    CHECK(pt_kconv_small_applies(&dev, &op));
    op.kind = PT_OP_CONV2D_BWD_FILTER;
    CHECK(pt_kconv_small_applies(&dev, &op));
    op.kind = PT_OP_CONV2D_BWD_DATA; /* the input gradient stays on col2im */
    CHECK(!pt_kconv_small_applies(&dev, &op));
    op.kind = PT_OP_CONV2D_FWD;
    op.math = PT_PREC_FP16; /* the reduced-precision modes round the GEMM's operands */
    CHECK(!pt_kconv_small_applies(&dev, &op));
    op.math = PT_PREC_FP32;
    dev.conv_small_fwd_crs = 26; /* above the device's limit for the forward */
    CHECK(!pt_kconv_small_applies(&dev, &op));
    op.kind = PT_OP_CONV2D_BWD_FILTER; /* which is the forward's only */
    CHECK(pt_kconv_small_applies(&dev, &op));
    dev.conv_small_crs = 0;
    CHECK(!pt_kconv_small_applies(&dev, &op));
}

static void a_bad_limit_in_the_environment_is_refused_naming_it(void)
{
    static const char *const bad[] = {"33", "-1", "x", "", "9k"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("PT_OPENCL_CONV_SMALL_CRS", bad[i], 1);
        pt_device *d = NULL;
        pt_error err;
        pt_error_clear(&err);
        CHECKF(pt_device_open("opencl", 0, NULL, &d, &err) == PT_ERR_INVALID && d == NULL &&
                   strstr(err.msg, "PT_OPENCL_CONV_SMALL_CRS") && strstr(err.msg, "0 (no direct convolution) to 32"),
               "'%s': %s", bad[i], err.msg);
        if (d) pt_device_close(d);
    }
    unsetenv("PT_OPENCL_CONV_SMALL_CRS");
}

int main(void)
{
    RUN(the_rule_takes_small_fp32_forward_and_filter_gradient_only);
    /* every shape below through the direct kernels, whatever the device's own rule */
    setenv("PT_OPENCL_CONV_SMALL_CRS", "32", 1);
    const int rc = pt_t_open_opencl(&g_ocl);
    if (rc) return rc;
    pt_error err;
    if (pt_device_open("cpu", 0, NULL, &g_cpu, &err) != PT_OK) {
        fprintf(stderr, "FAIL: cannot open the cpu device: %s\n", err.msg);
        return 1;
    }
    g_seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20); /* fresh inputs every run */
    printf("  seed %llu\n", (unsigned long long)g_seed);
    RUN(forward_and_filter_gradient_match_cpu);
    RUN(a_bad_limit_in_the_environment_is_refused_naming_it);
    pt_device_close(g_ocl);
    pt_device_close(g_cpu);
    TEST_EXIT();
}
