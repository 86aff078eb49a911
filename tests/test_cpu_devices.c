/* cpu device groups: the cpu backend splits into one device per core, each with its own
 * thread count, and two host threads driving two devices at once (as the trainer's device
 * group does) get exactly the results of one thread running both in turn, OpenBLAS GEMMs
 * and OpenMP convolutions included. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "polytrain/backend.h"
#include "core/rng.h"
#include "pt_test.h"

#define M 96
#define K 200
#define N 128
#define ROUNDS 40

typedef struct job {
    pt_device *dev;
    pt_buffer *buf;
    pt_op gemm, conv;
    pt_status st;
    pt_error err;
} job;

static void fill(float *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++) p[i] = 2.0f * pt_rng_uniform(seed, 0, 0, i, 0) - 1.0f;
}

/* a: [M,K], b: [K,N], c: [M,N]; conv x [4,8,12,12], w [16,8,3,3], y [4,16,12,12], workspace. */
enum { OA = 0, OB = OA + M * K, OC = OB + K * N, OX = OC + M * N, OW = OX + 4 * 8 * 144, OY = OW + 16 * 8 * 9,
       OWS = OY + 4 * 16 * 144 };

static pt_status setup(job *j, const char *which, int index, pt_error *err)
{
    pt_device_options opt = {.threads = 1};
    (void)which;
    PT_TRY(pt_device_open("cpu", index, &opt, &j->dev, err));
    memset(&j->gemm, 0, sizeof j->gemm);
    j->gemm.kind = PT_OP_GEMM;
    j->gemm.nt = 3;
    memset(&j->conv, 0, sizeof j->conv);
    j->conv.kind = PT_OP_CONV2D_FWD;
    j->conv.nt = 3;
    j->conv.p.conv.stride = 1;
    j->conv.p.conv.pad = 1;
    size_t ws = 0;
    int64_t xd[4] = {4, 8, 12, 12}, wd[4] = {16, 8, 3, 3}, yd[4] = {4, 16, 12, 12};
    j->conv.t[0] = pt_tensor_make(NULL, 0, PT_F32, 4, xd);
    j->conv.t[1] = pt_tensor_make(NULL, 0, PT_F32, 4, wd);
    j->conv.t[2] = pt_tensor_make(NULL, 0, PT_F32, 4, yd);
    ws = j->dev->be->workspace_size(j->dev->ctx, &j->conv);
    PT_TRY(pt_device_alloc(j->dev, (size_t)OWS * sizeof(float) + ws, &j->buf, err));
    float *host = malloc((size_t)OWS * sizeof(float));
    if (!host) return pt_fail(err, PT_ERR_NOMEM, "out of memory");
    fill(host, (size_t)OWS, 11);
    pt_mem m = {j->buf, 0};
    pt_status st = pt_device_write(j->dev, m, host, (size_t)OWS * sizeof(float), err);
    free(host);
    PT_TRY(st);
    j->gemm.t[0] = pt_tensor_2d(j->buf, OA * sizeof(float), M, K);
    j->gemm.t[1] = pt_tensor_2d(j->buf, OB * sizeof(float), K, N);
    j->gemm.t[2] = pt_tensor_2d(j->buf, OC * sizeof(float), M, N);
    j->gemm.p.gemm.alpha = 1.0f;
    j->conv.t[0] = pt_tensor_make(j->buf, OX * sizeof(float), PT_F32, 4, xd);
    j->conv.t[1] = pt_tensor_make(j->buf, OW * sizeof(float), PT_F32, 4, wd);
    j->conv.t[2] = pt_tensor_make(j->buf, OY * sizeof(float), PT_F32, 4, yd);
    j->conv.workspace.buf = j->buf;
    j->conv.workspace.off = (size_t)OWS * sizeof(float);
    j->conv.workspace_bytes = ws;
    return PT_OK;
}

static void *run(void *arg)
{
    job *j = arg;
    j->st = PT_OK;
    for (int r = 0; r < ROUNDS && j->st == PT_OK; r++) {
        j->st = pt_device_run(j->dev, &j->gemm, &j->err);
        if (j->st == PT_OK) j->st = pt_device_run(j->dev, &j->conv, &j->err);
    }
    return NULL;
}

static void read_out(job *j, float *c, float *y)
{
    pt_error err;
    pt_mem mc = {j->buf, OC * sizeof(float)}, my = {j->buf, OY * sizeof(float)};
    CHECK(pt_device_read(j->dev, c, mc, M * N * sizeof(float), &err) == PT_OK);
    CHECK(pt_device_read(j->dev, y, my, 4 * 16 * 144 * sizeof(float), &err) == PT_OK);
}

static void concurrent_devices_match_sequential(void)
{
    void *ctx = NULL;
    pt_error err;
    pt_error_clear(&err);
    const pt_backend_iface *be = pt_backend_find("cpu");
    CHECK(be && pt_backend_context(be, &ctx, &err) == PT_OK);
    int n = be->device_count(ctx);
    CHECKF(n >= 1, "cpu backend has %d devices", n);
    pt_device_info info;
    CHECK(be->device_info(ctx, 0, &info, &err) == PT_OK);
    CHECKF(n == info.compute_units, "one cpu device per core: %d devices, %d cores", n, info.compute_units);
    CHECK(be->device_info(ctx, n, &info, &err) != PT_OK && strstr(err.msg, "no device"));
    int second = n > 1 ? 1 : 0; /* on one core, the same device index opened twice */
    job a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    CHECKF(setup(&a, "a", 0, &err) == PT_OK, "%s", err.msg);
    CHECKF(setup(&b, "b", second, &err) == PT_OK, "%s", err.msg);
    /* sequential reference */
    run(&a);
    CHECKF(a.st == PT_OK, "%s", a.err.msg);
    float *c0 = malloc(M * N * sizeof(float)), *y0 = malloc(4 * 16 * 144 * sizeof(float));
    float *c1 = malloc(M * N * sizeof(float)), *y1 = malloc(4 * 16 * 144 * sizeof(float));
    CHECK(c0 && y0 && c1 && y1);
    read_out(&a, c0, y0);
    /* poison, then both devices at once */
    for (int k = 0; k < 2; k++) {
        job *j = k ? &b : &a;
        pt_op f;
        memset(&f, 0, sizeof f);
        f.kind = PT_OP_FILL;
        f.nt = 1;
        f.p.fill.value = NAN;
        f.t[0] = j->gemm.t[2];
        CHECK(pt_device_run(j->dev, &f, &err) == PT_OK);
        f.t[0] = j->conv.t[2];
        CHECK(pt_device_run(j->dev, &f, &err) == PT_OK);
    }
    pthread_t ta, tb;
    CHECK(pthread_create(&ta, NULL, run, &a) == 0);
    CHECK(pthread_create(&tb, NULL, run, &b) == 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECKF(a.st == PT_OK && b.st == PT_OK, "%s %s", a.err.msg, b.err.msg);
    for (int k = 0; k < 2; k++) {
        read_out(k ? &b : &a, c1, y1);
        CHECKF(memcmp(c0, c1, M * N * sizeof(float)) == 0, "device %d: concurrent GEMM differs from sequential", k);
        CHECKF(memcmp(y0, y1, 4 * 16 * 144 * sizeof(float)) == 0, "device %d: concurrent conv differs", k);
    }
    free(c0);
    free(y0);
    free(c1);
    free(y1);
    pt_device_free(a.dev, a.buf);
    pt_device_free(b.dev, b.buf);
    pt_device_close(a.dev);
    pt_device_close(b.dev);
}

int main(void)
{
    RUN(concurrent_devices_match_sequential);
    TEST_EXIT();
}
