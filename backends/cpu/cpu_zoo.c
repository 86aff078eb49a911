/* The model zoo's ops on the cpu backend (the oracle of the other backends): broadcast
 * multiply and its factor gradient (SE/CBAM attention), global max pooling and the
 * mean/max over channels of CBAM's spatial branch. Loops are arranged so that every output
 * element is written by one thread (no reductions race) and sums run in double. */
#include <math.h>
#include <string.h>

#include "backends/cpu/cpu_internal.h"

#define CPU_PAR_MIN 32768

/* s of BCAST_MUL: [N,C] (per channel) or [N,1,H,W] (per pixel). */
static int per_pixel(const pt_tensor *s) { return s->ndim == 4; }

pt_status cpu_op_bcast_mul(const cpu_device *d, const pt_op *op, pt_error *err)
{
    (void)err;
    const float *x = cpu_f32(&op->t[0]), *s = cpu_f32(&op->t[1]);
    float *y = cpu_f32(&op->t[2]);
    const int64_t n = op->t[0].dim[0], c = op->t[0].dim[1], hw = op->t[0].dim[2] * op->t[0].dim[3];
    const int pix = per_pixel(&op->t[1]), acc = op->accumulate;
#pragma omp parallel for num_threads(d->threads) if (n * c * hw > CPU_PAR_MIN) schedule(static)
    for (int64_t pl = 0; pl < n * c; pl++) {
        const float *xp = x + pl * hw;
        float *yp = y + pl * hw;
        if (pix) {
            const float *sp = s + (pl / c) * hw;
            if (acc) {
#pragma omp simd
                for (int64_t i = 0; i < hw; i++) yp[i] += xp[i] * sp[i];
            } else {
#pragma omp simd
                for (int64_t i = 0; i < hw; i++) yp[i] = xp[i] * sp[i];
            }
        } else {
            const float f = s[pl];
            if (acc) {
#pragma omp simd
                for (int64_t i = 0; i < hw; i++) yp[i] += xp[i] * f;
            } else {
#pragma omp simd
                for (int64_t i = 0; i < hw; i++) yp[i] = xp[i] * f;
            }
        }
    }
    return PT_OK;
}

pt_status cpu_op_bcast_mul_grad(const cpu_device *d, const pt_op *op, pt_error *err)
{
    (void)err;
    const float *x = cpu_f32(&op->t[0]), *dy = cpu_f32(&op->t[1]);
    float *ds = cpu_f32(&op->t[2]);
    const int64_t n = op->t[0].dim[0], c = op->t[0].dim[1], hw = op->t[0].dim[2] * op->t[0].dim[3];
    const int acc = op->accumulate;
    if (!per_pixel(&op->t[2])) {
#pragma omp parallel for num_threads(d->threads) if (n * c * hw > CPU_PAR_MIN) schedule(static)
        for (int64_t pl = 0; pl < n * c; pl++) {
            const float *xp = x + pl * hw, *gp = dy + pl * hw;
            double sum = 0.0;
#pragma omp simd reduction(+ : sum)
            for (int64_t i = 0; i < hw; i++) sum += (double)xp[i] * (double)gp[i];
            ds[pl] = acc ? ds[pl] + (float)sum : (float)sum;
        }
        return PT_OK;
    }
    /* per pixel: sum over channels, one sample's pixels at a time (channels hw apart) */
#pragma omp parallel for num_threads(d->threads) if (n * c * hw > CPU_PAR_MIN) schedule(static)
    for (int64_t b = 0; b < n; b++) {
        float *dp = ds + b * hw;
        const float *xb = x + b * c * hw, *gb = dy + b * c * hw;
        for (int64_t i = 0; i < hw; i++) {
            double sum = 0.0;
            for (int64_t k = 0; k < c; k++) sum += (double)xb[k * hw + i] * (double)gb[k * hw + i];
            dp[i] = acc ? dp[i] + (float)sum : (float)sum;
        }
    }
    return PT_OK;
}

pt_status cpu_op_gmp_fwd(const cpu_device *d, const pt_op *op, pt_error *err)
{
    (void)err;
    const float *x = cpu_f32(&op->t[0]);
    float *y = cpu_f32(&op->t[1]);
    int32_t *arg = (int32_t *)cpu_ptr(op->t[2].mem);
    const int64_t planes = op->t[0].dim[0] * op->t[0].dim[1], hw = op->t[0].dim[2] * op->t[0].dim[3];
#pragma omp parallel for num_threads(d->threads) if (planes * hw > CPU_PAR_MIN) schedule(static)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * hw;
        /* Two vectorisable passes instead of one branchy scan: the maximum (and whether a
         * NaN is present), then the first index holding it (or the first NaN). */
        float best = xp[0];
        int nan = 0;
#pragma omp simd reduction(| : nan)
        for (int64_t i = 0; i < hw; i++) nan |= xp[i] != xp[i];
        if (!nan) {
#pragma omp simd reduction(max : best)
            for (int64_t i = 1; i < hw; i++) best = xp[i] > best ? xp[i] : best;
        }
        int64_t bi = 0;
        while (bi < hw - 1 && (nan ? xp[bi] == xp[bi] : xp[bi] != best)) bi++;
        y[pl] = xp[bi];
        arg[pl] = (int32_t)bi;
    }
    return PT_OK;
}

pt_status cpu_op_gmp_bwd(const cpu_device *d, const pt_op *op, pt_error *err)
{
    const float *dy = cpu_f32(&op->t[0]);
    const int32_t *arg = (const int32_t *)cpu_ptr(op->t[1].mem);
    float *dx = cpu_f32(&op->t[2]);
    const int64_t planes = op->t[2].dim[0] * op->t[2].dim[1], hw = op->t[2].dim[2] * op->t[2].dim[3];
    const int acc = op->accumulate;
    int bad = 0;
#pragma omp parallel for num_threads(d->threads) if (planes * hw > CPU_PAR_MIN) schedule(static) reduction(| : bad)
    for (int64_t pl = 0; pl < planes; pl++) {
        float *dp = dx + pl * hw;
        if (!acc) memset(dp, 0, (size_t)hw * sizeof(float));
        if (arg[pl] >= 0 && arg[pl] < hw) dp[arg[pl]] += dy[pl];
        else bad = 1;
    }
    if (bad) return pt_fail(err, PT_ERR_INVALID, "cpu gmp_bwd: argmax index outside the input plane");
    return PT_OK;
}

pt_status cpu_op_channel_pool_fwd(const cpu_device *d, const pt_op *op, pt_error *err)
{
    (void)err;
    const float *x = cpu_f32(&op->t[0]);
    float *y = cpu_f32(&op->t[1]);
    int32_t *arg = (int32_t *)cpu_ptr(op->t[2].mem);
    const int64_t n = op->t[0].dim[0], c = op->t[0].dim[1], hw = op->t[0].dim[2] * op->t[0].dim[3];
#pragma omp parallel for num_threads(d->threads) if (n * c * hw > CPU_PAR_MIN) schedule(static)
    for (int64_t b = 0; b < n; b++) {
        const float *xb = x + b * c * hw;
        float *mean = y + b * 2 * hw, *mx = mean + hw;
        int32_t *ab = arg + b * hw;
        for (int64_t i = 0; i < hw; i++) {
            double sum = xb[i];
            float best = xb[i];
            int32_t bi = 0;
            for (int64_t k = 1; k < c; k++) {
                const float v = xb[k * hw + i];
                sum += v;
                if (!isnan(best) && (v > best || isnan(v))) best = v, bi = (int32_t)k;
            }
            mean[i] = (float)(sum / (double)c);
            mx[i] = best;
            ab[i] = bi;
        }
    }
    return PT_OK;
}

pt_status cpu_op_channel_pool_bwd(const cpu_device *d, const pt_op *op, pt_error *err)
{
    const float *dy = cpu_f32(&op->t[0]);
    const int32_t *arg = (const int32_t *)cpu_ptr(op->t[1].mem);
    float *dx = cpu_f32(&op->t[2]);
    const int64_t n = op->t[2].dim[0], c = op->t[2].dim[1], hw = op->t[2].dim[2] * op->t[2].dim[3];
    const float inv = 1.0f / (float)c;
    const int acc = op->accumulate;
    int bad = 0;
#pragma omp parallel for num_threads(d->threads) if (n * c * hw > CPU_PAR_MIN) schedule(static) reduction(| : bad)
    for (int64_t pl = 0; pl < n * c; pl++) {
        const int64_t b = pl / c, k = pl % c;
        const float *g0 = dy + b * 2 * hw, *g1 = g0 + hw;
        const int32_t *ab = arg + b * hw;
        float *dp = dx + pl * hw;
        for (int64_t i = 0; i < hw; i++) {
            if (ab[i] < 0 || ab[i] >= c) bad = 1;
            const float g = g0[i] * inv + (ab[i] == k ? g1[i] : 0.0f);
            dp[i] = acc ? dp[i] + g : g;
        }
    }
    if (bad) return pt_fail(err, PT_ERR_INVALID, "cpu channel_pool_bwd: argmax channel outside the input");
    return PT_OK;
}
