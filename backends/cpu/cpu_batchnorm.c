/* Batch normalisation on the cpu backend: training forward (batch statistics, PyTorch's
 * running-statistics update with the unbiased variance), eval forward and backward.
 * Statistics are sums in double of values shifted by a value near the mean (one pass over
 * x instead of two; the shift keeps the variance free of cancellation): this backend is the
 * oracle others are judged by. */
#include <math.h>

#include "backends/cpu/cpu_internal.h"

#define CPU_PAR_MIN 32768

typedef struct bn_shape {
    int64_t n, c, inner; /* inner = H*W (1 for [N,C]) */
} bn_shape;

static bn_shape bn_shape_of(const pt_tensor *x)
{
    bn_shape s;
    s.n = x->dim[0];
    s.c = x->ndim > 1 ? x->dim[1] : 1;
    s.inner = 1;
    for (int i = 2; i < x->ndim; i++) s.inner *= x->dim[i];
    return s;
}

/* The loops over one (n, c) plane, shared by float32 and 16-bit operands (a 16-bit x is
 * widened into a per-thread buffer first, a channel at a time; a 16-bit y rounded from one
 * after, a plane at a time), so that both run the same arithmetic in the same order. */
static inline void bn_stats_plane(const float *xp, int64_t inner, double shift, double *sum_io, double *sq_io)
{
    double sum = *sum_io, sq0 = *sq_io;
#pragma omp simd reduction(+ : sum, sq0)
    for (int64_t i = 0; i < inner; i++) {
        const double dv = (double)xp[i] - shift;
        sum += dv;
        sq0 += dv * dv;
    }
    *sum_io = sum;
    *sq_io = sq0;
}

/* y = (x - mean)*scale + beta, then + z (the residual, zp non-NULL: the normalised value rounded
 * to float first, as the separate add reads it), then the fused ReLU. yp may be xp or zp. */
static inline void bn_norm_plane(const float *xp, const float *zp, float *yp, int64_t inner, float meanf,
                                 float scale, float beta, int relu)
{
    if (zp) {
        if (relu) {
#pragma omp simd
            for (int64_t i = 0; i < inner; i++) {
                const float n = (xp[i] - meanf) * scale + beta;
                const float v = n + zp[i];
                yp[i] = v < 0.0f ? 0.0f : v; /* as relu_fwd: NaN stays NaN */
            }
        } else {
#pragma omp simd
            for (int64_t i = 0; i < inner; i++) {
                const float n = (xp[i] - meanf) * scale + beta;
                yp[i] = n + zp[i];
            }
        }
    } else if (relu) {
#pragma omp simd
        for (int64_t i = 0; i < inner; i++) {
            const float v = (xp[i] - meanf) * scale + beta;
            yp[i] = v < 0.0f ? 0.0f : v; /* as relu_fwd: NaN stays NaN */
        }
    } else {
#pragma omp simd
        for (int64_t i = 0; i < inner; i++) yp[i] = (xp[i] - meanf) * scale + beta;
    }
}

/* The forwards' residual z (the op's last operand where it has one), or NULL. */
static const pt_tensor *residual(const pt_op *op)
{
    const int zi = op->kind == PT_OP_BN_FWD_TRAIN ? 8 : op->kind == PT_OP_BN_FWD_EVAL ? 6 : -1;
    return zi >= 0 && op->nt > zi ? &op->t[zi] : NULL;
}

int64_t cpu_bn_in_floats(const pt_op *op)
{
    const bn_shape s = bn_shape_of(&op->t[0]);
    const pt_tensor *z = residual(op);
    return s.n * s.inner + (z && z->dtype != PT_F32 ? s.inner : 0);
}

/* The thread's float32 buffers for a 16-bit x, z or y: the N planes of one channel of x, then a
 * plane of z, and one plane of y (the workspace, cpu_backend.c, holds them per thread). */
static float *x_buffer(const pt_op *op, const bn_shape *s)
{
    return cpu_act16_plane_buffer(op, cpu_bn_in_floats(op), s->inner, 0);
}
static float *y_buffer(const pt_op *op, const bn_shape *s)
{
    return op->t[3].dtype == PT_F32 ? NULL : cpu_act16_plane_buffer(op, cpu_bn_in_floats(op), s->inner, 1);
}

/* z's elements [at, at + inner) as float32 (widened after x's planes in the thread's buffer), or
 * NULL without a residual. */
static const float *z_plane(const pt_op *op, const bn_shape *s, int64_t at)
{
    const pt_tensor *z = residual(op);
    if (!z) return NULL;
    return cpu_act16_in(z, at, s->inner, z->dtype == PT_F32 ? NULL : x_buffer(op, s) + s->n * s->inner);
}

/* 16-bit x: channel c's planes widened once into the thread's buffer (the training forward and
 * the backward read them twice), plane n at n * inner; float32 x: NULL (read in place). */
static const float *x_channel(const pt_op *op, const bn_shape *s, int64_t c)
{
    const pt_tensor *x = &op->t[0];
    if (x->dtype == PT_F32) return NULL;
    float *buf = x_buffer(op, s);
    for (int64_t n = 0; n < s->n; n++)
        cpu_act16_widen_row(buf + n * s->inner, (const uint16_t *)cpu_ptr(x->mem) + (n * s->c + c) * s->inner,
                            s->inner, x->dtype);
    return buf;
}

/* x's plane (n, c) as float32: from x_channel's buffer, or x itself. */
static inline const float *x_plane(const pt_op *op, const float *xc, const bn_shape *s, int64_t n, int64_t c)
{
    return xc ? xc + n * s->inner : cpu_f32(&op->t[0]) + (n * s->c + c) * s->inner;
}

/* The end of a training forward for channel c, once its statistics are known: PyTorch's
 * running-statistics update (unbiased variance) and y = (x - mean)*scale + beta. Folding the
 * mean into one shift (x*scale + shift) would cancel catastrophically when |mean| >> std,
 * which happens after ReLU. */
static void bn_update_and_normalise(const pt_op *op, const float *xc, const bn_shape *s, int64_t c, float gamma,
                                    float beta,
                                    double mean, double invstd, double unbiased, double mom, float *rmean,
                                    float *rvar, int relu)
{
    rmean[c] = (float)((1.0 - mom) * rmean[c] + mom * mean);
    rvar[c] = (float)((1.0 - mom) * rvar[c] + mom * unbiased);
    const float scale = (float)(gamma * invstd);
    const float meanf = (float)mean;
    const pt_tensor *y = &op->t[3];
    float *ybuf = y_buffer(op, s);
    for (int64_t n = 0; n < s->n; n++) {
        const int64_t at = (n * s->c + c) * s->inner;
        float *yp = cpu_act16_out(y, at, ybuf);
        bn_norm_plane(x_plane(op, xc, s, n, c), z_plane(op, s, at), yp, s->inner, meanf, scale, beta, relu);
        cpu_act16_out_done(y, at, s->inner, yp);
    }
}

pt_status cpu_op_bn_fwd_train(const cpu_device *d, const pt_op *op, pt_error *err)
{
    (void)err;
    const float *gamma = cpu_f32(&op->t[1]), *beta = cpu_f32(&op->t[2]);
    float *rmean = cpu_f32(&op->t[4]), *rvar = cpu_f32(&op->t[5]);
    float *smean = cpu_f32(&op->t[6]), *sinvstd = cpu_f32(&op->t[7]);
    const bn_shape s = bn_shape_of(&op->t[0]);
    const double m = (double)(s.n * s.inner);
    const double eps = op->p.bn.eps, mom = op->p.bn.momentum;
#pragma omp parallel for num_threads(d->threads) if (s.n * s.c * s.inner > CPU_PAR_MIN) schedule(static)
    for (int64_t c = 0; c < s.c; c++) {
        double sum = 0.0, sq0 = 0.0, shift = 0.0;
        const float *xc = x_channel(op, &s, c);
        for (int64_t n = 0; n < s.n; n++) {
            const float *xp = x_plane(op, xc, &s, n, c);
            /* shift: the channel's first value, near the mean next to the spread of a batch */
            if (n == 0) shift = s.inner > 0 ? xp[0] : 0.0;
            bn_stats_plane(xp, s.inner, shift, &sum, &sq0);
        }
        const double mean = m > 0 ? shift + sum / m : 0.0;
        /* sum of squares about the mean: sq0 - sum^2/m (exact algebra, in double) */
        double sq = m > 0 ? sq0 - sum * (sum / m) : 0.0;
        if (sq < 0.0) sq = 0.0;
        const double var = m > 0 ? sq / m : 0.0;
        const double invstd = 1.0 / sqrt(var + eps);
        const double unbiased = m > 1 ? sq / (m - 1) : var;
        smean[c] = (float)mean;
        sinvstd[c] = (float)invstd;
        bn_update_and_normalise(op, xc, &s, c, gamma[c], beta[c], mean, invstd, unbiased, mom, rmean, rvar,
                                op->fuse_relu);
    }
    return PT_OK;
}

pt_status cpu_op_bn_fwd_eval(const cpu_device *d, const pt_op *op, pt_error *err)
{
    (void)err;
    const float *gamma = cpu_f32(&op->t[1]), *beta = cpu_f32(&op->t[2]);
    const pt_tensor *y = &op->t[3];
    const float *rmean = cpu_f32(&op->t[4]), *rvar = cpu_f32(&op->t[5]);
    const bn_shape s = bn_shape_of(&op->t[0]);
    const double eps = op->p.bn.eps;
    const int64_t planes = s.n * s.c;
#pragma omp parallel for num_threads(d->threads) if (planes * s.inner > CPU_PAR_MIN) schedule(static)
    for (int64_t pl = 0; pl < planes; pl++) {
        const int64_t c = pl % s.c;
        const double invstd = 1.0 / sqrt((double)rvar[c] + eps);
        const float scale = (float)(gamma[c] * invstd);
        /* y may be x (in place): the plane is read whole (or widened) before it is written */
        const float *xp = cpu_act16_in(&op->t[0], pl * s.inner, s.inner,
                                       op->t[0].dtype == PT_F32 ? NULL : x_buffer(op, &s));
        const float *zp = z_plane(op, &s, pl * s.inner);
        float *yp = cpu_act16_out(y, pl * s.inner, y_buffer(op, &s));
        bn_norm_plane(xp, zp, yp, s.inner, rmean[c], scale, beta[c], op->fuse_relu); /* see above */
        cpu_act16_out_done(y, pl * s.inner, s.inner, yp);
    }
    return PT_OK;
}

static inline void bn_bwd_stats_plane(const float *xp, const float *dp, int64_t inner, float meanf, double *sx_io,
                                      double *sdy_io, double *sdyxs_io)
{
    double sx = *sx_io, sdy = *sdy_io, sdyxs = *sdyxs_io;
#pragma omp simd reduction(+ : sx, sdy, sdyxs)
    for (int64_t i = 0; i < inner; i++) {
        const double dv = (double)xp[i] - meanf;
        sx += dv;
        sdy += dp[i];
        sdyxs += (double)dp[i] * dv;
    }
    *sx_io = sx;
    *sdy_io = sdy;
    *sdyxs_io = sdyxs;
}

pt_status cpu_op_bn_bwd(const cpu_device *d, const pt_op *op, pt_error *err)
{
    (void)err;
    const float *dy = cpu_f32(&op->t[1]), *gamma = cpu_f32(&op->t[2]);
    const float *smean = cpu_f32(&op->t[3]), *sinvstd = cpu_f32(&op->t[4]);
    float *dx = cpu_f32(&op->t[5]), *dgamma = cpu_f32(&op->t[6]), *dbeta = cpu_f32(&op->t[7]);
    const bn_shape s = bn_shape_of(&op->t[0]);
    const double m = (double)(s.n * s.inner);
    const int acc = op->accumulate;
#pragma omp parallel for num_threads(d->threads) if (s.n * s.c * s.inner > CPU_PAR_MIN) schedule(static)
    for (int64_t c = 0; c < s.c; c++) {
        /* The batch mean again in double: the saved float mean is rounded, and with a
         * small variance that rounding would bias every xhat (and so dgamma and dx). */
        const double invstd = sinvstd[c];
        const float meanf = smean[c];
        double sx = 0.0, sdy = 0.0, sdyxs = 0.0;
        const float *xc = x_channel(op, &s, c);
        for (int64_t n = 0; n < s.n; n++)
            bn_bwd_stats_plane(x_plane(op, xc, &s, n, c), dy + (n * s.c + c) * s.inner, s.inner, meanf, &sx, &sdy,
                               &sdyxs);
        /* sum dy*(x - mean) = sum dy*(x - meanf) - (mean - meanf)*sum dy, mean in double */
        const double dmean = m > 0 ? sx / m : 0.0;
        const double sdyx = sdyxs - dmean * sdy;
        dbeta[c] = (float)sdy;
        dgamma[c] = (float)(sdyx * invstd);
        if (m <= 0) continue;
        /* dx = gamma*invstd*(dy - mean(dy) - xhat*mean(dy*xhat)) = a*dy + b*(x - mean) + c0;
         * x - mean stays a float difference so that a large mean does not cancel badly. */
        const double k = gamma[c] * invstd;
        const float a = (float)k;
        const float b = (float)(-k * sdyx * invstd * invstd / m);
        const float c0 = (float)(-k * sdy / m);
        for (int64_t n = 0; n < s.n; n++) {
            const float *xp = x_plane(op, xc, &s, n, c);
            const float *dp = dy + (n * s.c + c) * s.inner;
            float *dxp = dx + (n * s.c + c) * s.inner;
            if (acc) {
#pragma omp simd
                for (int64_t i = 0; i < s.inner; i++) dxp[i] += a * dp[i] + b * (xp[i] - meanf) + c0;
            } else {
#pragma omp simd
                for (int64_t i = 0; i < s.inner; i++) dxp[i] = a * dp[i] + b * (xp[i] - meanf) + c0;
            }
        }
    }
    return PT_OK;
}

/* ---- synchronised BatchNorm: partial sums, normalisation with global sums, backward ---- */

pt_status cpu_op_bn_sync_stats(const cpu_device *d, const pt_op *op, pt_error *err)
{
    (void)err;
    const float *x = cpu_f32(&op->t[0]), *shift = cpu_f32(&op->t[1]);
    float *stats = cpu_f32(&op->t[2]);
    const bn_shape s = bn_shape_of(&op->t[0]);
#pragma omp parallel for num_threads(d->threads) if (s.n * s.c * s.inner > CPU_PAR_MIN) schedule(static)
    for (int64_t c = 0; c < s.c; c++) {
        const double sh = shift[c];
        double s1 = 0.0, s2 = 0.0;
        for (int64_t n = 0; n < s.n; n++) {
            const float *xp = x + (n * s.c + c) * s.inner;
#pragma omp simd reduction(+ : s1, s2)
            for (int64_t i = 0; i < s.inner; i++) {
                const double dv = (double)xp[i] - sh;
                s1 += dv;
                s2 += dv * dv;
            }
        }
        stats[c] = (float)s1;
        stats[s.c + c] = (float)s2;
    }
    return PT_OK;
}

pt_status cpu_op_bn_sync_fwd(const cpu_device *d, const pt_op *op, pt_error *err)
{
    (void)err;
    const float *gamma = cpu_f32(&op->t[1]), *beta = cpu_f32(&op->t[2]);
    float *rmean = cpu_f32(&op->t[4]), *rvar = cpu_f32(&op->t[5]);
    float *stats = cpu_f32(&op->t[6]);
    const bn_shape s = bn_shape_of(&op->t[0]);
    const double m = (double)op->p.bn.count;
    const double eps = op->p.bn.eps, mom = op->p.bn.momentum;
#pragma omp parallel for num_threads(d->threads) if (s.n * s.c * s.inner > CPU_PAR_MIN) schedule(static)
    for (int64_t c = 0; c < s.c; c++) {
        const double d1 = m > 0 ? stats[c] / m : 0.0;
        double var = m > 0 ? stats[s.c + c] / m - d1 * d1 : 0.0;
        if (var < 0) var = 0;
        const double mean = rmean[c] + d1;
        const double invstd = 1.0 / sqrt(var + eps);
        const double unbiased = m > 1 ? var * m / (m - 1) : var;
        stats[c] = (float)mean;
        stats[s.c + c] = (float)invstd;
        /* x and y are operands 0 and 3, as in the training forward */
        bn_update_and_normalise(op, NULL, &s, c, gamma[c], beta[c], mean, invstd, unbiased, mom, rmean, rvar, 0);
    }
    return PT_OK;
}

pt_status cpu_op_bn_sync_bwd_stats(const cpu_device *d, const pt_op *op, pt_error *err)
{
    (void)err;
    const float *x = cpu_f32(&op->t[0]), *dy = cpu_f32(&op->t[1]), *stats = cpu_f32(&op->t[2]);
    float *bstats = cpu_f32(&op->t[3]), *dgamma = cpu_f32(&op->t[4]), *dbeta = cpu_f32(&op->t[5]);
    const bn_shape s = bn_shape_of(&op->t[0]);
#pragma omp parallel for num_threads(d->threads) if (s.n * s.c * s.inner > CPU_PAR_MIN) schedule(static)
    for (int64_t c = 0; c < s.c; c++) {
        const float meanf = stats[c];
        double sdy = 0.0, sdyx = 0.0;
        for (int64_t n = 0; n < s.n; n++) {
            const float *xp = x + (n * s.c + c) * s.inner;
            const float *dp = dy + (n * s.c + c) * s.inner;
#pragma omp simd reduction(+ : sdy, sdyx)
            for (int64_t i = 0; i < s.inner; i++) {
                sdy += dp[i];
                sdyx += (double)dp[i] * (double)(xp[i] - meanf);
            }
        }
        bstats[c] = (float)sdy;
        bstats[s.c + c] = (float)sdyx;
        dbeta[c] = (float)sdy;
        dgamma[c] = (float)(sdyx * stats[s.c + c]);
    }
    return PT_OK;
}

pt_status cpu_op_bn_sync_bwd(const cpu_device *d, const pt_op *op, pt_error *err)
{
    (void)err;
    const float *x = cpu_f32(&op->t[0]), *dy = cpu_f32(&op->t[1]), *gamma = cpu_f32(&op->t[2]);
    const float *stats = cpu_f32(&op->t[3]), *bstats = cpu_f32(&op->t[4]);
    float *dx = cpu_f32(&op->t[5]);
    const bn_shape s = bn_shape_of(&op->t[0]);
    const double m = (double)op->p.bn.count;
    const int acc = op->accumulate;
    const int64_t planes = s.n * s.c;
    if (m <= 0) return PT_OK;
#pragma omp parallel for num_threads(d->threads) if (planes * s.inner > CPU_PAR_MIN) schedule(static)
    for (int64_t pl = 0; pl < planes; pl++) {
        const int64_t c = pl % s.c;
        const double invstd = stats[s.c + c], k = gamma[c] * invstd;
        const float a = (float)k;
        const float b = (float)(-k * bstats[s.c + c] * invstd * invstd / m);
        const float c0 = (float)(-k * bstats[c] / m);
        const float meanf = stats[c];
        const float *xp = x + pl * s.inner, *dp = dy + pl * s.inner;
        float *dxp = dx + pl * s.inner;
        if (acc) {
#pragma omp simd
            for (int64_t i = 0; i < s.inner; i++) dxp[i] += a * dp[i] + b * (xp[i] - meanf) + c0;
        } else {
#pragma omp simd
            for (int64_t i = 0; i < s.inner; i++) dxp[i] = a * dp[i] + b * (xp[i] - meanf) + c0;
        }
    }
    return PT_OK;
}
