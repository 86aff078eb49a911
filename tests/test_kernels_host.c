/* The shared kernels of backends/kernels compiled as C (tests/kernel_host_dialect.h) against
 * the cpu backend: the mixup/cutmix loss kernel (ops_mixup.cl, which the cuda backend runs
 * and no conformance case covers yet) and, as a check of the harness itself, ops.cl's pt_xent.
 * Fresh random logits, labels and weights; normalised error against the cpu op; a label
 * outside 0..K-1 gives NaN where the cpu backend gives an error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernel_host_dialect.h"
/* the kernel files, in the order the backends compile them */
#include "backends/kernels/philox.h"
#include "backends/kernels/ops.cl"
#include "backends/kernels/ops_mixup.cl"

#include "core/backend.h"
#include "core/rng.h"
#include "pt_test.h"

static uint64_t g_seed;

static double rel_err(const float *a, const float *b, int n)
{
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num) / (den > 1e-30 ? sqrt(den) : 1e-15);
}

/* The cpu backend's loss and gradient for (n, k) with optional mixup targets. */
static pt_status cpu_xent(pt_device *dev, const float *z, const int32_t *l1, const int32_t *l2, const float *lam,
                          int n, int k, float sm, float gs, float *loss, float *dl, pt_error *err)
{
    const size_t zb = (size_t)n * k * 4, nb = (size_t)n * 4;
    const size_t off_l1 = zb, off_l2 = zb + nb, off_lam = zb + 2 * nb, off_loss = zb + 3 * nb, off_dl = zb + 4 * nb;
    pt_buffer *b = NULL;
    PT_TRY(pt_device_alloc(dev, 2 * zb + 4 * nb, &b, err));
    pt_status st = pt_device_write(dev, (pt_mem){b, 0}, z, zb, err);
    if (st == PT_OK) st = pt_device_write(dev, (pt_mem){b, off_l1}, l1, nb, err);
    if (st == PT_OK && l2) st = pt_device_write(dev, (pt_mem){b, off_l2}, l2, nb, err);
    if (st == PT_OK && lam) st = pt_device_write(dev, (pt_mem){b, off_lam}, lam, nb, err);
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = PT_OP_XENT;
    op.nt = l2 ? 6 : 4;
    op.t[0] = pt_tensor_2d(b, 0, n, k);
    op.t[1] = pt_tensor_1d(b, off_l1, PT_I32, n);
    op.t[2] = pt_tensor_1d(b, off_loss, PT_F32, n);
    op.t[3] = pt_tensor_2d(b, off_dl, n, k);
    if (l2) {
        op.t[4] = pt_tensor_1d(b, off_l2, PT_I32, n);
        op.t[5] = pt_tensor_1d(b, off_lam, PT_F32, n);
    }
    op.p.xent.smoothing = sm;
    op.p.xent.grad_scale = gs;
    if (st == PT_OK) st = pt_device_run(dev, &op, err);
    if (st == PT_OK) st = pt_device_read(dev, loss, (pt_mem){b, off_loss}, nb, err);
    if (st == PT_OK) st = pt_device_read(dev, dl, (pt_mem){b, off_dl}, zb, err);
    pt_device_free(dev, b);
    return st;
}

static void fill(float *z, int32_t *l1, int32_t *l2, float *lam, int n, int k, uint64_t stream)
{
    for (int i = 0; i < n * k; i++) z[i] = 10.0f * pt_rng_uniform(g_seed, 0, stream, 0, (uint32_t)i) - 5.0f;
    for (int i = 0; i < n; i++) {
        l1[i] = (int32_t)(pt_rng_uniform(g_seed, 0, stream, 1, (uint32_t)i) * (float)k) % k;
        l2[i] = (int32_t)(pt_rng_uniform(g_seed, 0, stream, 2, (uint32_t)i) * (float)k) % k;
        lam[i] = pt_rng_uniform(g_seed, 0, stream, 3, (uint32_t)i);
    }
}

static void mixup_loss_kernel_matches_cpu(void)
{
    pt_device *cpu = NULL;
    pt_error err;
    if (pt_device_open("cpu", 0, NULL, &cpu, &err) != PT_OK) {
        CHECKF(0, "%s", err.msg);
        return;
    }
    static const int shapes[][2] = {{1, 3}, {4, 10}, {64, 10}, {5, 200}, {33, 7}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int smooth = 0; smooth < 2; smooth++)
            for (int mixed = 0; mixed < 2; mixed++) {
                const int n = shapes[s][0], k = shapes[s][1];
                const float sm = smooth ? 0.1f : 0.0f, gs = 1.0f / (float)n;
                float *z = malloc((size_t)n * k * 4), *dl = malloc((size_t)n * k * 4),
                      *rdl = malloc((size_t)n * k * 4), *lam = malloc((size_t)n * 4), *loss = malloc((size_t)n * 4),
                      *rloss = malloc((size_t)n * 4);
                int32_t *l1 = malloc((size_t)n * 4), *l2 = malloc((size_t)n * 4);
                fill(z, l1, l2, lam, n, k, s * 4 + (size_t)smooth * 2 + (size_t)mixed);
                for (int i = 0; i < n; i++) loss[i] = NAN;
                for (int i = 0; i < n * k; i++) dl[i] = NAN;
                pt_status st = cpu_xent(cpu, z, l1, mixed ? l2 : NULL, mixed ? lam : NULL, n, k, sm, gs, rloss, rdl,
                                        &err);
                CHECKF(st == PT_OK, "%s", err.msg);
                if (mixed)
                    PT_HOST_LAUNCH(n, pt_xent_mix(z, 0, l1, 0, l2, 0, lam, 0, loss, 0, dl, 0, n, k, 1, sm, gs));
                else
                    PT_HOST_LAUNCH(n, pt_xent(z, 0, l1, 0, loss, 0, dl, 0, n, k, 1, sm, gs));
                const double el = rel_err(loss, rloss, n), eg = rel_err(dl, rdl, n * k);
                CHECKF(el < 1e-5 && eg < 1e-5, "%s n=%d k=%d smoothing=%g: loss error %.3g, gradient error %.3g",
                       mixed ? "pt_xent_mix" : "pt_xent", n, k, sm, el, eg);
                if (mixed) {
                    /* lam = 1 is the plain loss with the first labels */
                    for (int i = 0; i < n; i++) lam[i] = 1.0f;
                    float *l1loss = malloc((size_t)n * 4);
                    PT_HOST_LAUNCH(n, pt_xent_mix(z, 0, l1, 0, l2, 0, lam, 0, loss, 0, dl, 0, n, k, 0, sm, gs));
                    PT_HOST_LAUNCH(n, pt_xent(z, 0, l1, 0, l1loss, 0, dl, 0, n, k, 0, sm, gs));
                    CHECKF(memcmp(loss, l1loss, (size_t)n * 4) == 0, "lam=1 differs from the plain loss (n=%d k=%d)",
                           n, k);
                    free(l1loss);
                    /* a second label out of range: NaN for that sample only */
                    l2[0] = k;
                    for (int i = 0; i < n * k; i++) dl[i] = 0.0f;
                    PT_HOST_LAUNCH(n, pt_xent_mix(z, 0, l1, 0, l2, 0, lam, 0, loss, 0, dl, 0, n, k, 1, sm, gs));
                    int nan_row = 1;
                    for (int j = 0; j < k; j++) nan_row &= isnan(dl[j]);
                    CHECKF(isnan(loss[0]) && nan_row && (n == 1 || !isnan(loss[1])), "bad label not flagged");
                }
                free(z), free(dl), free(rdl), free(lam), free(loss), free(rloss), free(l1), free(l2);
            }
    pt_device_close(cpu);
}

int main(void)
{
    const char *env = getenv("PT_TEST_SEED");
    g_seed = env && *env ? strtoull(env, NULL, 0) : ((uint64_t)time(NULL) * 2654435761u) ^ (uint64_t)getpid();
    printf("seed %llu (PT_TEST_SEED repeats it)\n", (unsigned long long)g_seed);
    RUN(mixup_loss_kernel_matches_cpu);
    TEST_EXIT();
}
