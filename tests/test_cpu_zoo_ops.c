/* The cpu backend's model-zoo ops (backends/cpu/cpu_zoo.c) against their specification in
 * core/op_table.c where the conformance suite cannot reach, since it compares backends with
 * each other: exact values against a float64 reference, NaN propagation and ties (the first
 * maximum or NaN wins), argmax out of range refused, operand shapes that do not relate as
 * the spec says refused by the shared check (the kinds' shape rules) with a message. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "polytrain/polytrain.h"
#include "pt_test.h"

static pt_device *g_dev;

static pt_buffer *upload(const void *src, size_t bytes)
{
    pt_buffer *b = NULL;
    pt_error e;
    if (pt_device_alloc(g_dev, bytes, &b, &e) != PT_OK) abort();
    if (pt_device_write(g_dev, (pt_mem){b, 0}, src, bytes, &e) != PT_OK) abort();
    return b;
}

static void download(void *dst, pt_buffer *b, size_t bytes)
{
    pt_error e;
    if (pt_device_read(g_dev, dst, (pt_mem){b, 0}, bytes, &e) != PT_OK) abort();
}

static pt_op make_op(pt_op_kind kind, int nt)
{
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = kind;
    op.nt = nt;
    return op;
}

static pt_status run(pt_op *op, pt_error *e)
{
    pt_error_clear(e);
    return pt_device_run(g_dev, op, e);
}

static pt_tensor i32(pt_buffer *b, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    const int64_t d[4] = {d0, d1, d2, d3};
    return pt_tensor_make(b, 0, PT_I32, ndim, d);
}

/* One 1x3x2x2 input: channel 0 holds ties, channel 1 a NaN after a larger value, channel 2
 * -inf everywhere. */
static const float X[12] = {1, 2, 2, -1, /**/ 5, NAN, 7, NAN, /**/ -INFINITY, -INFINITY, -INFINITY, -INFINITY};

static void global_max_pool_follows_the_tie_and_nan_rules(void)
{
    pt_buffer *x = upload(X, sizeof X);
    float yv[3] = {0};
    int32_t av[3] = {0};
    pt_buffer *y = upload(yv, sizeof yv), *a = upload(av, sizeof av);
    pt_op op = make_op(PT_OP_GMP_FWD, 3);
    op.t[0] = pt_tensor_4d(x, 0, 1, 3, 2, 2);
    op.t[1] = pt_tensor_2d(y, 0, 1, 3);
    op.t[2] = i32(a, 2, 1, 3, 1, 1);
    pt_error e;
    CHECKF(run(&op, &e) == PT_OK, "%s", e.msg);
    download(yv, y, sizeof yv);
    download(av, a, sizeof av);
    CHECKF(yv[0] == 2 && av[0] == 1, "ties: %g at %d, expected 2 at 1 (the first)", (double)yv[0], av[0]);
    CHECKF(isnan(yv[1]) && av[1] == 1, "NaN: %g at %d, expected NaN at 1", (double)yv[1], av[1]);
    CHECKF(isinf(yv[2]) && yv[2] < 0 && av[2] == 0, "-inf plane: %g at %d", (double)yv[2], av[2]);

    /* backward: dy lands on the argmax, accumulate adds */
    float dyv[3] = {10, 20, 30}, dxv[12];
    for (int i = 0; i < 12; i++) dxv[i] = 1;
    pt_buffer *dy = upload(dyv, sizeof dyv), *dx = upload(dxv, sizeof dxv);
    pt_op b = make_op(PT_OP_GMP_BWD, 3);
    b.t[0] = pt_tensor_2d(dy, 0, 1, 3);
    b.t[1] = op.t[2];
    b.t[2] = pt_tensor_4d(dx, 0, 1, 3, 2, 2);
    b.accumulate = 1;
    CHECKF(run(&b, &e) == PT_OK, "%s", e.msg);
    download(dxv, dx, sizeof dxv);
    const float want[12] = {1, 11, 1, 1, 1, 21, 1, 1, 31, 1, 1, 1};
    CHECK(memcmp(dxv, want, sizeof want) == 0);

    /* an argmax outside the plane is an error, not a stray write */
    av[1] = 4;
    pt_buffer *bad = upload(av, sizeof av);
    b.t[1] = i32(bad, 2, 1, 3, 1, 1);
    CHECK(run(&b, &e) == PT_ERR_INVALID);
    CHECKF(strstr(e.msg, "gmp_bwd") != NULL, "%s", e.msg);
    pt_buffer *all[] = {x, y, a, dy, dx, bad};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) pt_device_free(g_dev, all[i]);
}

static void channel_pool_writes_mean_and_max_with_the_first_maximum(void)
{
    /* per pixel over the 3 channels of X: (1,5,-inf) (2,NaN,-inf) (2,7,-inf) (-1,NaN,-inf) */
    pt_buffer *x = upload(X, sizeof X);
    float yv[8];
    int32_t av[4];
    pt_buffer *y = upload(yv, sizeof yv), *a = upload(av, sizeof av);
    pt_op op = make_op(PT_OP_CHANNEL_POOL_FWD, 3);
    op.t[0] = pt_tensor_4d(x, 0, 1, 3, 2, 2);
    op.t[1] = pt_tensor_4d(y, 0, 1, 2, 2, 2);
    op.t[2] = i32(a, 4, 1, 1, 2, 2);
    pt_error e;
    CHECKF(run(&op, &e) == PT_OK, "%s", e.msg);
    download(yv, y, sizeof yv);
    download(av, a, sizeof av);
    CHECK(isinf(yv[0]) && isnan(yv[1])); /* mean with -inf, mean with NaN */
    CHECKF(yv[4] == 5 && av[0] == 1, "pixel 0: max %g in channel %d", (double)yv[4], av[0]);
    CHECKF(isnan(yv[5]) && av[1] == 1, "pixel 1: max %g in channel %d", (double)yv[5], av[1]);
    CHECKF(yv[6] == 7 && av[2] == 1, "pixel 2: max %g in channel %d", (double)yv[6], av[2]);

    /* finite values: the mean against float64, ties go to the first channel */
    const float z[8] = {0.1f, 3, 0.7f, 3, /**/ 0.2f, 3, -5, 1};
    pt_buffer *zx = upload(z, sizeof z);
    op.t[0] = pt_tensor_4d(zx, 0, 1, 2, 2, 2);
    CHECKF(run(&op, &e) == PT_OK, "%s", e.msg);
    download(yv, y, sizeof yv);
    download(av, a, sizeof av);
    for (int i = 0; i < 4; i++) {
        double mean = ((double)z[i] + (double)z[4 + i]) / 2.0;
        CHECKF(yv[i] == (float)mean, "mean %d: %.9g vs %.9g", i, (double)yv[i], mean);
    }
    CHECKF(av[1] == 0 && yv[5] == 3, "tie at pixel 1: channel %d", av[1]);

    /* backward: dx = dy_mean/C + dy_max at the argmax channel */
    const float dyv[8] = {2, 4, 6, 8, /**/ 1, 1, 1, 1};
    float dxv[8];
    pt_buffer *dy = upload(dyv, sizeof dyv), *dx = upload(dxv, sizeof dxv);
    pt_op b = make_op(PT_OP_CHANNEL_POOL_BWD, 3);
    b.t[0] = pt_tensor_4d(dy, 0, 1, 2, 2, 2);
    b.t[1] = op.t[2];
    b.t[2] = pt_tensor_4d(dx, 0, 1, 2, 2, 2);
    CHECKF(run(&b, &e) == PT_OK, "%s", e.msg);
    download(dxv, dx, sizeof dxv);
    /* argmax per pixel: 0.2 > 0.1 -> 1; tie -> 0; 0.7 > -5 -> 0; 3 > 1 -> 0 */
    const float want[8] = {1, 3, 4, 5, /**/ 2, 2, 3, 4};
    CHECKF(memcmp(dxv, want, sizeof want) == 0, "dx = %g %g %g %g / %g %g %g %g", (double)dxv[0], (double)dxv[1],
           (double)dxv[2], (double)dxv[3], (double)dxv[4], (double)dxv[5], (double)dxv[6], (double)dxv[7]);
    pt_buffer *all[] = {x, y, a, zx, dy, dx};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) pt_device_free(g_dev, all[i]);
}

static void bcast_mul_and_its_gradient_match_float64(void)
{
    enum { N = 2, C = 3, HW = 4 };
    float xv[N * C * HW], sc[N * C], sp[N * HW], dyv[N * C * HW];
    for (int i = 0; i < N * C * HW; i++) xv[i] = (float)(i % 7) - 3.0f, dyv[i] = 0.25f * (float)(i % 5);
    for (int i = 0; i < N * C; i++) sc[i] = 0.5f + (float)i;
    for (int i = 0; i < N * HW; i++) sp[i] = -1.0f + 0.3f * (float)i;
    pt_buffer *x = upload(xv, sizeof xv), *dy = upload(dyv, sizeof dyv);
    pt_buffer *s[2] = {upload(sc, sizeof sc), upload(sp, sizeof sp)};
    float yv[N * C * HW], ds[N * C > N * HW ? N * C : N * HW];
    pt_buffer *y = upload(yv, sizeof yv), *g = upload(ds, sizeof ds);
    pt_error e;
    for (int pix = 0; pix < 2; pix++) {
        pt_tensor st = pix ? pt_tensor_4d(s[1], 0, N, 1, 2, 2) : pt_tensor_2d(s[0], 0, N, C);
        pt_op op = make_op(PT_OP_BCAST_MUL, 3);
        op.t[0] = pt_tensor_4d(x, 0, N, C, 2, 2);
        op.t[1] = st;
        op.t[2] = pt_tensor_4d(y, 0, N, C, 2, 2);
        CHECKF(run(&op, &e) == PT_OK, "%s", e.msg);
        download(yv, y, sizeof yv);
        int ok = 1;
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++)
                for (int i = 0; i < HW; i++) {
                    int k = (n * C + c) * HW + i;
                    float f = pix ? sp[n * HW + i] : sc[n * C + c];
                    ok &= yv[k] == xv[k] * f;
                }
        CHECKF(ok, "bcast_mul %s", pix ? "per pixel" : "per channel");
        pt_op gop = make_op(PT_OP_BCAST_MUL_GRAD, 3);
        gop.t[0] = op.t[0];
        gop.t[1] = pt_tensor_4d(dy, 0, N, C, 2, 2);
        gop.t[2] = pix ? pt_tensor_4d(g, 0, N, 1, 2, 2) : pt_tensor_2d(g, 0, N, C);
        CHECKF(run(&gop, &e) == PT_OK, "%s", e.msg);
        download(ds, g, sizeof ds);
        double worst = 0;
        for (int n = 0; n < N; n++)
            for (int j = 0; j < (pix ? HW : C); j++) {
                double want = 0;
                for (int k = 0; k < (pix ? C : HW); k++) {
                    int idx = pix ? (n * C + k) * HW + j : (n * C + j) * HW + k;
                    want += (double)xv[idx] * (double)dyv[idx];
                }
                worst = fmax(worst, fabs(ds[n * (pix ? HW : C) + j] - want));
            }
        CHECKF(worst < 1e-5, "bcast_mul_grad %s: max error %g", pix ? "per pixel" : "per channel", worst);
    }
    /* factors that fit neither per-channel nor per-pixel are refused with a message */
    pt_op bad = make_op(PT_OP_BCAST_MUL, 3);
    bad.t[0] = pt_tensor_4d(x, 0, N, C, 2, 2);
    bad.t[1] = pt_tensor_2d(s[0], 0, N, C - 1);
    bad.t[2] = pt_tensor_4d(y, 0, N, C, 2, 2);
    CHECK(run(&bad, &e) == PT_ERR_INVALID);
    CHECKF(strstr(e.msg, "bcast_mul") && strstr(e.msg, "shapes"), "%s", e.msg);
    pt_buffer *all[] = {x, dy, s[0], s[1], y, g};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) pt_device_free(g_dev, all[i]);
}

static void sigmoid_saturates_without_nan(void)
{
    const float xv[5] = {-1000, -20, 0, 20, 1000};
    float yv[5];
    pt_buffer *x = upload(xv, sizeof xv), *y = upload(yv, sizeof yv);
    pt_op op = make_op(PT_OP_SIGMOID_FWD, 2);
    op.t[0] = pt_tensor_1d(x, 0, PT_F32, 5);
    op.t[1] = pt_tensor_1d(y, 0, PT_F32, 5);
    pt_error e;
    CHECKF(run(&op, &e) == PT_OK, "%s", e.msg);
    download(yv, y, sizeof yv);
    CHECK(yv[0] == 0.0f && yv[2] == 0.5f && yv[4] == 1.0f);
    CHECK(fabs(yv[1] - 1.0 / (1.0 + exp(20.0))) < 1e-12 && fabs(yv[3] - 1.0 / (1.0 + exp(-20.0))) < 1e-7);
    pt_device_free(g_dev, x);
    pt_device_free(g_dev, y);
}

int main(void)
{
    pt_error e;
    pt_device_options opt = {.threads = 2};
    if (pt_device_open("cpu", 0, &opt, &g_dev, &e) != PT_OK) {
        fprintf(stderr, "cannot open the cpu device: %s\n", e.msg);
        printf("0 passed, 1 failed\n");
        return 1;
    }
    RUN(global_max_pool_follows_the_tie_and_nan_rules);
    RUN(channel_pool_writes_mean_and_max_with_the_first_maximum);
    RUN(bcast_mul_and_its_gradient_match_float64);
    RUN(sigmoid_saturates_without_nan);
    pt_device_close(g_dev);
    TEST_EXIT();
}
