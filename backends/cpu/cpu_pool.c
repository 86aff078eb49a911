/* Pooling on the cpu backend: max pooling with argmax (PyTorch's tie and NaN rules) and
 * global average pooling, forward and backward. One (n, c) plane per loop iteration, so
 * the backward scatter never races. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "backends/cpu/cpu_internal.h"

#define CPU_PAR_MIN 32768

/* m all ones: a; m zero: b. */
static inline float blend(uint32_t m, float a, float b)
{
    uint32_t ua, ub;
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    const uint32_t r = (ua & m) | (ub & ~m);
    float f;
    memcpy(&f, &r, sizeof f);
    return f;
}

pt_status cpu_op_maxpool_fwd(const cpu_device *d, const pt_op *op, pt_error *err)
{
    (void)err;
    const pt_tensor *xt = &op->t[0], *yt = &op->t[1];
    int32_t *arg = (int32_t *)cpu_ptr(op->t[2].mem);
    const int64_t planes = op->t[0].dim[0] * op->t[0].dim[1];
    const int64_t h = op->t[0].dim[2], w = op->t[0].dim[3];
    const int64_t p = op->t[1].dim[2], q = op->t[1].dim[3];
    const int64_t k = op->p.pool.k, st = op->p.pool.stride, pad = op->p.pool.pad;
    const int fast2 = k == 2 && st == 2 && pad == 0 && 2 * p <= h && 2 * q <= w;
#pragma omp parallel for num_threads(d->threads) if (planes * h * w > CPU_PAR_MIN) schedule(static)
    for (int64_t pl = 0; pl < planes; pl++) {
        /* 16-bit x and y: the plane widened into (rounded from) the thread's buffers */
        const float *xp = cpu_act16_in(xt, pl * h * w, h * w,
                                       xt->dtype == PT_F32 ? NULL : cpu_act16_plane_buffer(op, h * w, p * q, 0));
        float *yp = cpu_act16_out(yt, pl * p * q,
                                  yt->dtype == PT_F32 ? NULL : cpu_act16_plane_buffer(op, h * w, p * q, 1));
        int32_t *ap = arg + pl * p * q;
        if (fast2) {
            /* 2x2 stride 2: the window is always inside the plane. Branch-free (selects on
             * masks), so that it vectorises; v != v is isnan without a call. A candidate
             * replaces the best so far when the best is not NaN and it is larger or NaN. */
            for (int64_t i = 0; i < p; i++) {
                const float *r0 = xp + 2 * i * w, *r1 = r0 + w;
                float *yr = yp + i * q;
                int32_t *ar = ap + i * q;
                const int32_t base = (int32_t)(2 * i * w), wd = (int32_t)w;
#pragma omp simd
                for (int64_t j = 0; j < q; j++) {
                    float b = r0[2 * j];
                    int32_t bi = 0;
                    const float c1 = r0[2 * j + 1], c2 = r1[2 * j], c3 = r1[2 * j + 1];
                    /* bitwise & | and masks, not && || and ?:, so that the scalar remainder
                     * (all of a row narrower than a vector: Fashion-MNIST's 14-, 7- and
                     * 3-wide maps) has no data-dependent branch either */
                    uint32_t m = 0u - (uint32_t)((b == b) & ((c1 > b) | (c1 != c1)));
                    b = blend(m, c1, b);
                    bi = (int32_t)(((uint32_t)1 & m) | ((uint32_t)bi & ~m));
                    m = 0u - (uint32_t)((b == b) & ((c2 > b) | (c2 != c2)));
                    b = blend(m, c2, b);
                    bi = (int32_t)(((uint32_t)wd & m) | ((uint32_t)bi & ~m));
                    m = 0u - (uint32_t)((b == b) & ((c3 > b) | (c3 != c3)));
                    b = blend(m, c3, b);
                    bi = (int32_t)(((uint32_t)(wd + 1) & m) | ((uint32_t)bi & ~m));
                    yr[j] = b;
                    ar[j] = base + 2 * (int32_t)j + bi;
                }
            }
            cpu_act16_out_done(yt, pl * p * q, p * q, yp);
            continue;
        }
        for (int64_t i = 0; i < p; i++) {
            for (int64_t j = 0; j < q; j++) {
                float best = -INFINITY;
                int64_t bi = -1;
                for (int64_t a = 0; a < k; a++) {
                    const int64_t hi = i * st - pad + a;
                    if (hi < 0 || hi >= h) continue;
                    for (int64_t b = 0; b < k; b++) {
                        const int64_t wi = j * st - pad + b;
                        if (wi < 0 || wi >= w) continue;
                        const float v = xp[hi * w + wi];
                        /* first maximum wins; the first NaN wins and sticks */
                        if (bi < 0 || (!isnan(best) && (v > best || isnan(v)))) {
                            best = v;
                            bi = hi * w + wi;
                        }
                    }
                }
                yp[i * q + j] = best;
                ap[i * q + j] = (int32_t)bi;
            }
        }
        cpu_act16_out_done(yt, pl * p * q, p * q, yp);
    }
    return PT_OK;
}

pt_status cpu_op_maxpool_bwd(const cpu_device *d, const pt_op *op, pt_error *err)
{
    const float *dy = cpu_f32(&op->t[0]);
    const int32_t *arg = (const int32_t *)cpu_ptr(op->t[1].mem);
    float *dx = cpu_f32(&op->t[2]);
    const int64_t planes = op->t[2].dim[0] * op->t[2].dim[1];
    const int64_t hw = op->t[2].dim[2] * op->t[2].dim[3];
    const int64_t pq = op->t[0].dim[2] * op->t[0].dim[3];
    const int acc = op->accumulate;
    int bad = 0;
#pragma omp parallel for num_threads(d->threads) if (planes * hw > CPU_PAR_MIN) schedule(static) reduction(| : bad)
    for (int64_t pl = 0; pl < planes; pl++) {
        float *dp = dx + pl * hw;
        if (!acc) memset(dp, 0, (size_t)hw * sizeof(float));
        const float *gp = dy + pl * pq;
        const int32_t *ap = arg + pl * pq;
        for (int64_t i = 0; i < pq; i++) {
            const int32_t a = ap[i];
            if (a >= 0 && a < hw) dp[a] += gp[i];
            else if (a != -1) bad = 1; /* -1: a window with no cell inside the plane */
        }
    }
    if (bad) return pt_fail(err, PT_ERR_INVALID, "cpu maxpool_bwd: argmax index outside the input plane");
    return PT_OK;
}

pt_status cpu_op_gap_fwd(const cpu_device *d, const pt_op *op, pt_error *err)
{
    (void)err;
    const pt_tensor *xt = &op->t[0];
    float *y = cpu_f32(&op->t[1]);
    const int64_t planes = op->t[0].dim[0] * op->t[0].dim[1];
    const int64_t hw = op->t[0].dim[2] * op->t[0].dim[3];
    const double inv = hw > 0 ? 1.0 / (double)hw : 0.0;
#pragma omp parallel for num_threads(d->threads) if (planes * hw > CPU_PAR_MIN) schedule(static)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp =
            cpu_act16_in(xt, pl * hw, hw, xt->dtype == PT_F32 ? NULL : cpu_act16_plane_buffer(op, hw, 0, 0));
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < hw; i++) s += xp[i];
        y[pl] = (float)(s * inv);
    }
    return PT_OK;
}

pt_status cpu_op_gap_bwd(const cpu_device *d, const pt_op *op, pt_error *err)
{
    (void)err;
    const float *dy = cpu_f32(&op->t[0]);
    float *dx = cpu_f32(&op->t[1]);
    const int64_t planes = op->t[1].dim[0] * op->t[1].dim[1];
    const int64_t hw = op->t[1].dim[2] * op->t[1].dim[3];
    const float inv = hw > 0 ? (float)(1.0 / (double)hw) : 0.0f;
    const int acc = op->accumulate;
#pragma omp parallel for num_threads(d->threads) if (planes * hw > CPU_PAR_MIN) schedule(static)
    for (int64_t pl = 0; pl < planes; pl++) {
        float *dp = dx + pl * hw;
        const float g = dy[pl] * inv;
        if (acc) {
#pragma omp simd
            for (int64_t i = 0; i < hw; i++) dp[i] += g;
        } else {
#pragma omp simd
            for (int64_t i = 0; i < hw; i++) dp[i] = g;
        }
    }
    return PT_OK;
}
