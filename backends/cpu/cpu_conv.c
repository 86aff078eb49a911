/* 2-D convolution on the cpu backend: im2col / col2im + SGEMM, forward, data gradient and
 * filter gradient. Samples are processed in groups of G (one GEMM per group, so that small
 * feature maps still give GEMMs wide enough for the BLAS kernel); groups run either in
 * parallel with one-thread GEMMs or in turn with threaded GEMMs, never both at once.
 * 3x3 stride-1 convolutions go to Winograd (cpu_winograd.c) instead.
 * All scratch comes from the op's workspace: nothing is allocated here. */
#include <omp.h>
#include <string.h>

#include "backends/cpu/cpu_internal.h"

typedef struct conv_shape {
    int64_t n, c, h, w, k, r, s, p, q, stride, pad;
    int64_t crs, pq, hw;
    int direct; /* 1x1, stride 1, pad 0: a sample of x already is its own column matrix */
} conv_shape;

typedef struct conv_plan {
    int64_t group;     /* samples per GEMM */
    int parallel;      /* 1: groups in parallel, single-threaded GEMMs; 0: threaded GEMMs */
    int slots;         /* per-thread scratch sets */
    size_t col_floats; /* im2col matrix [CRS, G*PQ] per slot */
    size_t tmp_floats; /* [K, G*PQ] output / gathered dy per slot */
    size_t dw_floats;  /* per-slot partial filter gradient (bwd_filter in parallel) */
    size_t slot_floats;
    size_t bytes;
} conv_plan;

/* GEMM width (columns = G*P*Q) below which samples are grouped. */
#define CONV_MIN_COLUMNS 256
/* Copies smaller than this (floats) and convolutions smaller than this (flops) stay on one
 * thread: waking the team costs more than they take, and far more on a loaded machine. */
#define CONV_PAR_MIN_FLOATS 65536
#define CONV_PAR_MIN_FLOPS 4e6

static size_t round16(size_t n)
{
    return (n + 15) / 16 * 16;
}

static conv_shape shape_of(const pt_op *op)
{
    /* t0 is x-shaped, t1 w-shaped, t2 y-shaped for all three conv kinds. */
    const pt_tensor *x = &op->t[0], *w = &op->t[1], *y = &op->t[2];
    conv_shape s;
    s.n = x->dim[0];
    s.c = x->dim[1];
    s.h = x->dim[2];
    s.w = x->dim[3];
    s.k = w->dim[0];
    s.r = w->dim[2];
    s.s = w->dim[3];
    s.p = y->dim[2];
    s.q = y->dim[3];
    s.stride = op->p.conv.stride;
    s.pad = op->p.conv.pad;
    s.crs = s.c * s.r * s.s;
    s.pq = s.p * s.q;
    s.hw = s.h * s.w;
    s.direct = s.r == 1 && s.s == 1 && s.stride == 1 && s.pad == 0;
    return s;
}

static conv_plan plan_of(const cpu_device *d, const pt_op *op, const conv_shape *s)
{
    conv_plan pl;
    memset(&pl, 0, sizeof pl);
    const int64_t n = s->n > 0 ? s->n : 1;
    const int t = d->threads;
    const double flops = 2.0 * (double)s->n * (double)s->k * (double)s->crs * (double)s->pq;
    if (d->conv_force_mode) pl.parallel = d->conv_force_mode == 1;
    else pl.parallel = n >= t && flops >= CONV_PAR_MIN_FLOPS;
    if (t == 1) pl.parallel = 0;
    /* In parallel each thread takes a contiguous range of about n/t samples and cuts it into
     * equal groups, each at least CONV_MIN_COLUMNS wide when the range allows. */
    const int64_t per = pl.parallel ? (n + t - 1) / t : n;
    int64_t g;
    if (d->conv_force_group > 0) {
        g = d->conv_force_group;
    } else {
        int64_t gmin = (CONV_MIN_COLUMNS + s->pq - 1) / (s->pq > 0 ? s->pq : 1);
        if (gmin < 1) gmin = 1;
        int64_t groups = per / gmin;
        if (groups < 1) groups = 1;
        g = (per + groups - 1) / groups;
    }
    if (g > per) g = per;
    if (g < 1) g = 1;
    pl.group = g;
    pl.slots = pl.parallel ? t : 1;
    int no_col = s->direct && g == 1;
    pl.col_floats = no_col ? 0 : round16((size_t)(s->crs * g * s->pq));
    pl.tmp_floats = g > 1 ? round16((size_t)(s->k * g * s->pq)) : 0;
    pl.dw_floats = op->kind == PT_OP_CONV2D_BWD_FILTER && pl.parallel ? round16((size_t)(s->k * s->crs)) : 0;
    pl.slot_floats = pl.col_floats + pl.tmp_floats + pl.dw_floats;
    pl.bytes = pl.slot_floats * (size_t)pl.slots * sizeof(float);
    return pl;
}

/* Winograd where it applies and pays (cpu_winograd_mode), or when a test forces it; im2col
 * otherwise, or when a test forces an im2col plan. */
static int use_winograd(const cpu_device *d, const pt_op *op)
{
    if (!cpu_winograd_applies(op)) return 0;
    if (d->conv_force_mode == 3 || d->conv_force_mode == 4) return 1;
    if (!d->winograd || d->conv_force_mode || d->conv_force_group) return 0;
    return cpu_winograd_mode(d, op) != CPU_WINO_OFF;
}

size_t cpu_conv_workspace(const cpu_device *d, const pt_op *op)
{
    if (use_winograd(d, op)) return cpu_winograd_workspace(d, op);
    conv_shape s = shape_of(op);
    conv_plan pl = plan_of(d, op, &s);
    return pl.bytes;
}

/* Output columns q whose input column q*stride + off lies inside the row: [*qa, *qb). */
static void inside_columns(const conv_shape *s, int64_t off, int64_t *qa, int64_t *qb)
{
    int64_t a = off >= 0 ? 0 : (-off + s->stride - 1) / s->stride;
    int64_t b = s->w - 1 - off >= 0 ? (s->w - 1 - off) / s->stride + 1 : 0;
    if (b > s->q) b = s->q;
    if (a > b) a = b;
    *qa = a;
    *qb = b;
}

/* o[q] = xr[q*stride + off], 0 outside the row. Stride 1 is one memcpy; stride 2 gets its
 * own loop: a constant stride vectorises (two loads and a permute) where a variable one
 * became a scalar loop with a branch per element. */
static void row_copy(const conv_shape *s, float *restrict o, const float *restrict xr, int64_t off)
{
    int64_t qa, qb;
    inside_columns(s, off, &qa, &qb);
    for (int64_t q = 0; q < qa; q++) o[q] = 0.0f;
    if (s->stride == 1) {
        if (qb > qa) memcpy(o + qa, xr + qa + off, (size_t)(qb - qa) * sizeof(float));
    } else if (s->stride == 2) {
#pragma omp simd
        for (int64_t q = qa; q < qb; q++) o[q] = xr[2 * q + off];
    } else {
#pragma omp simd
        for (int64_t q = qa; q < qb; q++) o[q] = xr[q * s->stride + off];
    }
    for (int64_t q = qb; q < s->q; q++) o[q] = 0.0f;
}

/* dr[q*stride + off] += sr[q] inside the row: the adjoint of row_copy. */
static void row_add(const conv_shape *s, float *restrict dr, const float *restrict sr, int64_t off)
{
    int64_t qa, qb;
    inside_columns(s, off, &qa, &qb);
    if (s->stride == 1) {
#pragma omp simd
        for (int64_t q = qa; q < qb; q++) dr[q + off] += sr[q];
    } else if (s->stride == 2) {
#pragma omp simd
        for (int64_t q = qa; q < qb; q++) dr[2 * q + off] += sr[q];
    } else {
#pragma omp simd
        for (int64_t q = qa; q < qb; q++) dr[q * s->stride + off] += sr[q];
    }
}

/* col[row][gi*PQ + p*Q + q] = x[gi, c, p*stride - pad + r, q*stride - pad + s] (0 outside). */
static void im2col(const conv_shape *s, const float *x, int64_t g, float *col, int par, int threads)
{
    const int64_t ld = g * s->pq;
    par = par && s->crs * ld >= CONV_PAR_MIN_FLOATS;
#pragma omp parallel for num_threads(threads) if (par) schedule(static)
    for (int64_t row = 0; row < s->crs; row++) {
        const int64_t c = row / (s->r * s->s), kr = (row / s->s) % s->r, ks = row % s->s;
        for (int64_t gi = 0; gi < g; gi++) {
            const float *xp = x + (gi * s->c + c) * s->hw;
            float *dst = col + row * ld + gi * s->pq;
            for (int64_t p = 0; p < s->p; p++) {
                const int64_t h = p * s->stride - s->pad + kr;
                float *o = dst + p * s->q;
                if (h < 0 || h >= s->h) {
                    memset(o, 0, (size_t)s->q * sizeof(float));
                    continue;
                }
                const float *xr = xp + h * s->w;
                row_copy(s, o, xr, ks - s->pad);
            }
        }
    }
}

/* dx[gi, c, h, w] += col[row][gi*PQ + p*Q + q]: the adjoint of im2col. Parallel over channels,
 * since the rows of one channel are the only ones that touch its planes. */
static void col2im(const conv_shape *s, const float *col, int64_t g, float *dx, int par, int threads)
{
    const int64_t ld = g * s->pq;
    par = par && s->crs * ld >= CONV_PAR_MIN_FLOATS;
#pragma omp parallel for num_threads(threads) if (par) schedule(static)
    for (int64_t c = 0; c < s->c; c++) {
        for (int64_t kr = 0; kr < s->r; kr++) {
            for (int64_t ks = 0; ks < s->s; ks++) {
                const int64_t row = (c * s->r + kr) * s->s + ks;
                for (int64_t gi = 0; gi < g; gi++) {
                    float *dp = dx + (gi * s->c + c) * s->hw;
                    const float *src = col + row * ld + gi * s->pq;
                    for (int64_t p = 0; p < s->p; p++) {
                        const int64_t h = p * s->stride - s->pad + kr;
                        if (h < 0 || h >= s->h) continue;
                        float *dr = dp + h * s->w;
                        const float *sr = src + p * s->q;
                        row_add(s, dr, sr, ks - s->pad);
                    }
                }
            }
        }
    }
}

/* tmp[k][gi*PQ + j] = dy[gi, k, j] */
static void gather_groups(const conv_shape *s, const float *dy, int64_t g, float *tmp, int par,
                          int threads)
{
    par = par && s->k * g * s->pq >= CONV_PAR_MIN_FLOATS;
#pragma omp parallel for num_threads(threads) if (par) schedule(static)
    for (int64_t k = 0; k < s->k; k++)
        for (int64_t gi = 0; gi < g; gi++)
            memcpy(tmp + (k * g + gi) * s->pq, dy + (gi * s->k + k) * s->pq, (size_t)s->pq * sizeof(float));
}

/* y[gi, k, j] = (acc ? y : 0) + tmp[k][gi*PQ + j] */
static void scatter_groups(const conv_shape *s, const float *tmp, int64_t g, float *y, int acc,
                           int par, int threads)
{
    par = par && s->k * g * s->pq >= CONV_PAR_MIN_FLOATS;
#pragma omp parallel for num_threads(threads) if (par) schedule(static)
    for (int64_t k = 0; k < s->k; k++)
        for (int64_t gi = 0; gi < g; gi++) {
            const float *src = tmp + (k * g + gi) * s->pq;
            float *dst = y + (gi * s->k + k) * s->pq;
            if (acc) {
#pragma omp simd
                for (int64_t j = 0; j < s->pq; j++) dst[j] += src[j];
            } else {
                memcpy(dst, src, (size_t)s->pq * sizeof(float));
            }
        }
}

static pt_status check_workspace(const pt_op *op, const conv_plan *pl, pt_error *err)
{
    if (op->workspace_bytes < pl->bytes)
        return pt_fail(err, PT_ERR_INVALID,
                       "cpu %s: needs a workspace of %zu bytes (ask workspace_size), got %zu",
                       pt_op_name(op->kind), pl->bytes, op->workspace_bytes);
    return PT_OK;
}

typedef struct conv_job {
    const cpu_device *d;
    const pt_op *op;
    conv_shape s;
    conv_plan pl;
    float *ws;
} conv_job;

/* ---- forward ---- */

static void fwd_group(const conv_job *j, int64_t n0, int64_t g, float *slot, int par)
{
    const conv_shape *s = &j->s;
    const float *x = cpu_f32(&j->op->t[0]) + n0 * s->c * s->hw;
    const float *w = cpu_f32(&j->op->t[1]);
    float *y = cpu_f32(&j->op->t[2]) + n0 * s->k * s->pq;
    const int acc = j->op->accumulate, t = j->d->threads;
    const float *b = x;
    if (!(s->direct && g == 1)) {
        im2col(s, x, g, slot, par, t);
        b = slot;
    }
    const int cols = (int)(g * s->pq);
    if (g == 1) {
        cpu_sgemm(j->d, 0, 0, (int)s->k, cols, (int)s->crs, 1.0f, w, (int)s->crs, b, cols,
                  acc ? 1.0f : 0.0f, y, cols);
    } else {
        float *tmp = slot + j->pl.col_floats;
        cpu_sgemm(j->d, 0, 0, (int)s->k, cols, (int)s->crs, 1.0f, w, (int)s->crs, b, cols, 0.0f,
                  tmp, cols);
        scatter_groups(s, tmp, g, y, acc, par, t);
    }
}

/* ---- data gradient ---- */

static void bwd_data_group(const conv_job *j, int64_t n0, int64_t g, float *slot, int par)
{
    const conv_shape *s = &j->s;
    float *dx = cpu_f32(&j->op->t[0]) + n0 * s->c * s->hw;
    const float *w = cpu_f32(&j->op->t[1]);
    const float *dy = cpu_f32(&j->op->t[2]) + n0 * s->k * s->pq;
    const int acc = j->op->accumulate, t = j->d->threads;
    const int cols = (int)(g * s->pq);
    const float *dyg = dy;
    if (g > 1) {
        float *tmp = slot + j->pl.col_floats;
        gather_groups(s, dy, g, tmp, par, t);
        dyg = tmp;
    }
    if (s->direct && g == 1) {
        cpu_sgemm(j->d, 1, 0, (int)s->crs, cols, (int)s->k, 1.0f, w, (int)s->crs, dyg, cols,
                  acc ? 1.0f : 0.0f, dx, cols);
        return;
    }
    cpu_sgemm(j->d, 1, 0, (int)s->crs, cols, (int)s->k, 1.0f, w, (int)s->crs, dyg, cols, 0.0f,
              slot, cols);
    if (!acc) memset(dx, 0, (size_t)(g * s->c * s->hw) * sizeof(float));
    col2im(s, slot, g, dx, par, t);
}

/* ---- filter gradient ---- */

/* dwacc[K, CRS] = (first ? 0 : dwacc) + dy_g[K, G*PQ] * col[CRS, G*PQ]^T */
static void bwd_filter_group(const conv_job *j, int64_t n0, int64_t g, float *slot, float *dwacc,
                             float beta, int par)
{
    const conv_shape *s = &j->s;
    const float *x = cpu_f32(&j->op->t[0]) + n0 * s->c * s->hw;
    const float *dy = cpu_f32(&j->op->t[2]) + n0 * s->k * s->pq;
    const int t = j->d->threads;
    const int cols = (int)(g * s->pq);
    const float *dyg = dy, *b = x;
    if (g > 1) {
        float *tmp = slot + j->pl.col_floats;
        gather_groups(s, dy, g, tmp, par, t);
        dyg = tmp;
    }
    if (!(s->direct && g == 1)) {
        im2col(s, x, g, slot, par, t);
        b = slot;
    }
    cpu_sgemm(j->d, 0, 1, (int)s->k, (int)s->crs, cols, 1.0f, dyg, cols, b, cols, beta, dwacc,
              (int)s->crs);
}

typedef enum { CONV_FWD, CONV_BWD_DATA } conv_pass;

static void run_range(const conv_job *j, conv_pass pass, int64_t lo, int64_t hi, float *slot, int par)
{
    for (int64_t n0 = lo; n0 < hi; n0 += j->pl.group) {
        const int64_t g = hi - n0 < j->pl.group ? hi - n0 : j->pl.group;
        if (pass == CONV_FWD) fwd_group(j, n0, g, slot, par);
        else bwd_data_group(j, n0, g, slot, par);
    }
}

static pt_status run_groups(const cpu_device *d, const pt_op *op, conv_pass pass, pt_error *err)
{
    conv_job j;
    j.d = d;
    j.op = op;
    j.s = shape_of(op);
    j.pl = plan_of(d, op, &j.s);
    PT_TRY(check_workspace(op, &j.pl, err));
    if (j.s.n == 0) return PT_OK;
    j.ws = j.pl.bytes ? (float *)cpu_ptr(op->workspace) : NULL;
    if (!j.pl.parallel) {
        run_range(&j, pass, 0, j.s.n, j.ws, 1);
        return PT_OK;
    }
    cpu_blas_region_begin(d);
#pragma omp parallel num_threads(d->threads)
    {
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        float *slot = j.ws ? j.ws + (size_t)tid * j.pl.slot_floats : NULL;
        run_range(&j, pass, j.s.n * tid / nth, j.s.n * (tid + 1) / nth, slot, 0);
    }
    cpu_blas_region_end(d);
    return PT_OK;
}

pt_status cpu_op_conv2d_fwd(const cpu_device *d, const pt_op *op, pt_error *err)
{
    if (use_winograd(d, op)) return cpu_winograd_run(d, op, err);
    return run_groups(d, op, CONV_FWD, err);
}

pt_status cpu_op_conv2d_bwd_data(const cpu_device *d, const pt_op *op, pt_error *err)
{
    if (use_winograd(d, op)) return cpu_winograd_run(d, op, err);
    return run_groups(d, op, CONV_BWD_DATA, err);
}

pt_status cpu_op_conv2d_bwd_filter(const cpu_device *d, const pt_op *op, pt_error *err)
{
    if (use_winograd(d, op)) return cpu_winograd_run(d, op, err);
    conv_job j;
    j.d = d;
    j.op = op;
    j.s = shape_of(op);
    j.pl = plan_of(d, op, &j.s);
    PT_TRY(check_workspace(op, &j.pl, err));
    float *dw = cpu_f32(&op->t[1]);
    const int64_t dwn = j.s.k * j.s.crs;
    const int acc = op->accumulate;
    if (j.s.n == 0) {
        if (!acc) memset(dw, 0, (size_t)dwn * sizeof(float));
        return PT_OK;
    }
    j.ws = j.pl.bytes ? (float *)cpu_ptr(op->workspace) : NULL;
    if (!j.pl.parallel) {
        for (int64_t n0 = 0; n0 < j.s.n; n0 += j.pl.group) {
            const int64_t g = j.s.n - n0 < j.pl.group ? j.s.n - n0 : j.pl.group;
            bwd_filter_group(&j, n0, g, j.ws, dw, n0 == 0 && !acc ? 0.0f : 1.0f, 1);
        }
        return PT_OK;
    }
    /* Each thread sums its samples into its own partial; the partials are added in a fixed
     * order, so the result does not depend on timing. */
    const size_t part_off = j.pl.col_floats + j.pl.tmp_floats;
    cpu_blas_region_begin(d);
#pragma omp parallel num_threads(d->threads)
    {
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        float *slot = j.ws + (size_t)tid * j.pl.slot_floats;
        float *part = slot + part_off;
        const int64_t lo = j.s.n * tid / nth, hi = j.s.n * (tid + 1) / nth;
        for (int64_t n0 = lo; n0 < hi; n0 += j.pl.group) {
            const int64_t g = hi - n0 < j.pl.group ? hi - n0 : j.pl.group;
            bwd_filter_group(&j, n0, g, slot, part, n0 == lo ? 0.0f : 1.0f, 0);
        }
        if (lo == hi) memset(part, 0, (size_t)dwn * sizeof(float));
#pragma omp barrier
        /* nowait: the end of the parallel region is the barrier */
#pragma omp for schedule(static) nowait
        for (int64_t i = 0; i < dwn; i++) {
            float sum = acc ? dw[i] : 0.0f;
            for (int t = 0; t < nth; t++) sum += j.ws[(size_t)t * j.pl.slot_floats + part_off + (size_t)i];
            dw[i] = sum;
        }
    }
    cpu_blas_region_end(d);
    return PT_OK;
}
