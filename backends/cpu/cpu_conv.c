/* 2-D convolution on the cpu backend: im2col / col2im + SGEMM, forward, data gradient and
 * filter gradient. Samples are processed in groups of G (one GEMM per group, so that small
 * feature maps still give GEMMs wide enough for the BLAS kernel); groups run either in
 * parallel with one-thread GEMMs or in turn with threaded GEMMs, never both at once.
 * 3x3 stride-1 convolutions go to Winograd (cpu_winograd.c) instead, in fp32 math and in bf16
 * on the AVX512-BF16 kernel.
 * A math mode (pt_op.math) rounds the multiplied operands: bf16 on an AVX512-BF16 CPU while its
 * GEMM packs them (cpu_gemm_lowp.c); otherwise (emulation) the im2col and gathered-dy scratch
 * is rounded in place and w is rounded once into the workspace, then SGEMM runs as in fp32.
 * A 16-bit x (PT_BF16, PT_F16, cpu_act16.c) is widened as im2col gathers it (a 1x1 convolution
 * then takes the im2col copy instead of reading x in place); a 16-bit y is rounded once as the
 * GEMM's output is scattered into it.
 * All scratch comes from the op's workspace: nothing is allocated here. */
#include <omp.h>
#include <string.h>

#include "backends/cpu/cpu_internal.h"
#include "core/half.h"

typedef struct conv_shape {
    int64_t n, c, h, w, k, r, s, p, q, stride, pad;
    int64_t crs, pq, hw;
    int direct; /* 1x1, stride 1, pad 0, x in float32: a sample of x already is its own column matrix */
    pt_dtype xdt; /* x's storage (bwd_data: dx, always float32) */
} conv_shape;

/* x, in its storage: element i at p + i * pt_dtype_size(dt). */
typedef struct conv_src {
    const char *p;
    pt_dtype dt;
} conv_src;

static conv_src src_at(const pt_tensor *t, int64_t i)
{
    conv_src r = {(const char *)cpu_ptr(t->mem) + (size_t)i * pt_dtype_size(t->dtype), t->dtype};
    return r;
}

typedef struct conv_plan {
    int64_t group;     /* samples per GEMM */
    int bf16;          /* the GEMMs are the bf16 kernel's (op->math bf16 on an AVX512-BF16 CPU) */
    int emulated;      /* another math mode: operands rounded into scratch, then SGEMM */
    size_t wr_floats;  /* emulated fwd and bwd_data: w rounded, shared by the slots, first */
    int parallel;      /* 1: groups in parallel, single-threaded GEMMs; 0: threaded GEMMs */
    int slots;         /* per-thread scratch sets */
    size_t col_floats; /* im2col matrix [CRS, G*PQ] per slot */
    size_t tmp_floats; /* [K, G*PQ] output / gathered dy per slot */
    size_t dw_floats;  /* per-slot partial filter gradient (bwd_filter in parallel) */
    size_t pack_floats; /* bf16: per-slot packing scratch of the bf16 GEMM */
    /* bf16 with one-thread GEMMs (groups in parallel, or one thread): the operands go to the
     * kernel's layouts directly (see "bf16, packed" below). apk_floats: w packed once per op
     * (fwd, bwd_data), shared by the slots, first; stage_floats: per slot, float32 rows on
     * their way to bf16. col_floats then holds im2col rows in bf16 (bwd_filter) and
     * tmp_floats dy in bf16 (bwd_filter); pack_floats the group's packed B. */
    int packed;
    size_t apk_floats, stage_floats;
    int64_t ldh; /* bwd_filter: bf16 elements per row of those (whole pairs) */
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
    s.xdt = op->kind == PT_OP_CONV2D_BWD_DATA ? PT_F32 : x->dtype;
    s.direct = s.r == 1 && s.s == 1 && s.stride == 1 && s.pad == 0 && s.xdt == PT_F32;
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
    pl.bf16 = op->math == PT_PREC_BF16 && d->bf16_kernel;
    pl.emulated = op->math != PT_PREC_FP32 && !pl.bf16;
    /* Emulated, x and dy are never read in place: a direct convolution still copies x into
     * the column matrix, and dy is gathered even for one sample, so that they can be rounded. */
    const int x_operand = op->kind != PT_OP_CONV2D_BWD_DATA, dy_operand = op->kind != PT_OP_CONV2D_FWD;
    int no_col = s->direct && g == 1 && !(pl.emulated && x_operand);
    pl.col_floats = no_col ? 0 : round16((size_t)(s->crs * g * s->pq));
    /* a 16-bit y: the GEMM's output goes through tmp, rounded while scattered */
    const int y16 = op->kind == PT_OP_CONV2D_FWD && op->t[2].dtype != PT_F32;
    pl.tmp_floats = g > 1 || (pl.emulated && dy_operand) || y16 ? round16((size_t)(s->k * g * s->pq)) : 0;
    pl.dw_floats = op->kind == PT_OP_CONV2D_BWD_FILTER && pl.parallel ? round16((size_t)(s->k * s->crs)) : 0;
    pl.wr_floats = pl.emulated && op->kind != PT_OP_CONV2D_BWD_FILTER ? round16((size_t)(s->k * s->crs)) : 0;
    pl.packed = pl.bf16 && (pl.parallel || t == 1);
    const int64_t cols = g * s->pq;
    if (pl.packed) {
        if (op->kind == PT_OP_CONV2D_FWD) {
            pl.apk_floats = round16(cpu_bf16_packed_a_dwords((int)s->k, (int)s->crs));
            pl.col_floats = 0;
            pl.stage_floats = s->direct ? 0 : round16((size_t)(2 * cols));
            pl.pack_floats = round16(cpu_bf16_packed_b_dwords((int)s->crs, (int)cols));
        } else if (op->kind == PT_OP_CONV2D_BWD_DATA) {
            pl.apk_floats = round16(cpu_bf16_packed_a_dwords((int)s->crs, (int)s->k));
            pl.tmp_floats = 0;
            pl.pack_floats = round16(cpu_bf16_packed_b_dwords((int)s->k, (int)cols));
        } else {
            pl.ldh = (cols + 1) / 2 * 2;
            pl.col_floats = round16((size_t)(s->crs * pl.ldh / 2));
            pl.tmp_floats = round16((size_t)(s->k * pl.ldh / 2));
            pl.stage_floats = s->direct ? 0 : round16((size_t)cols);
            pl.pack_floats = round16(cpu_bf16_packed_b_dwords((int)cols, (int)s->crs));
        }
    } else if (pl.bf16) {
        /* the GEMM of a whole group: run_range's m x n x k, threaded unless groups are */
        int64_t m = s->k, n = cols, k = s->crs;
        if (op->kind == PT_OP_CONV2D_BWD_DATA) m = s->crs, k = s->k;
        if (op->kind == PT_OP_CONV2D_BWD_FILTER) n = s->crs, k = cols;
        size_t b = cpu_gemm_bf16_scratch((int)m, (int)n, (int)k, pl.parallel ? 1 : t);
        pl.pack_floats = round16((b + sizeof(float) - 1) / sizeof(float));
    }
    pl.slot_floats = pl.col_floats + pl.tmp_floats + pl.dw_floats + pl.pack_floats + pl.stage_floats;
    pl.bytes = (pl.wr_floats + pl.apk_floats + pl.slot_floats * (size_t)pl.slots) * sizeof(float);
    return pl;
}

/* Winograd where it applies and pays (cpu_winograd_mode), or when a test forces it; im2col
 * otherwise, or when a test forces an im2col plan. */
int cpu_conv_uses_winograd(const cpu_device *d, const pt_op *op)
{
    /* Winograd's transforms mix the operands before they are multiplied: in bf16 on the
     * AVX512-BF16 kernel the transformed operands are what is rounded (bf16 products, fp32
     * sums of the same convolution, cpu_winograd.c); the emulated modes round x, w and dy
     * and take im2col. */
    if (!cpu_winograd_math(d, op) || !cpu_winograd_applies(op)) return 0;
    if (d->conv_force_mode == 3 || d->conv_force_mode == 4) return 1;
    if (!d->winograd || d->conv_force_mode || d->conv_force_group) return 0;
    return cpu_winograd_mode(d, op) != CPU_WINO_OFF;
}

size_t cpu_conv_workspace(const cpu_device *d, const pt_op *op)
{
    if (cpu_conv_uses_winograd(d, op)) return cpu_winograd_workspace(d, op);
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

/* o[q] = xr[q*stride + off], 0 outside the row, whose inside columns [qa, qb) the caller
 * found once per im2col row (inside_columns divides by the stride: once per output row, it
 * took as long as the copy of a 16-column row). Stride 1 is one memcpy; stride 2 gets its
 * own loop: a constant stride vectorises (two loads and a permute) where a variable one
 * became a scalar loop with a branch per element. */
static void row_copy(const conv_shape *s, float *restrict o, const float *restrict xr, int64_t off, int64_t qa,
                     int64_t qb)
{
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

/* row_copy from a 16-bit row, widened. */
static void row_copy16(const conv_shape *s, float *restrict o, const uint16_t *restrict xr, int64_t off, int64_t qa,
                       int64_t qb)
{
    for (int64_t q = 0; q < qa; q++) o[q] = 0.0f;
    if (s->stride == 1) {
        if (qb > qa) cpu_act16_widen_row(o + qa, xr + qa + off, qb - qa, s->xdt);
    } else if (s->xdt == PT_BF16) {
#pragma omp simd
        for (int64_t q = qa; q < qb; q++) o[q] = pt_f32_from_bf16(xr[q * s->stride + off]);
    } else {
        for (int64_t q = qa; q < qb; q++) o[q] = pt_f32_from_f16(xr[q * s->stride + off]);
    }
    for (int64_t q = qb; q < s->q; q++) o[q] = 0.0f;
}

/* dr[q*stride + off] += sr[q] inside the row ([qa, qb)): the adjoint of row_copy. */
static void row_add(const conv_shape *s, float *restrict dr, const float *restrict sr, int64_t off, int64_t qa,
                    int64_t qb)
{
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

/* Row `row` of the im2col matrix of g samples from x: o[gi*PQ + p*Q + q] =
 * x[gi, c, p*stride - pad + r, q*stride - pad + s] (0 outside), (c, r, s) = row. */
static void im2col_row(const conv_shape *s, conv_src x, int64_t g, int64_t row, float *o)
{
    const int64_t c = row / (s->r * s->s), kr = (row / s->s) % s->r, ks = row % s->s;
    int64_t qa, qb;
    inside_columns(s, ks - s->pad, &qa, &qb);
    for (int64_t gi = 0; gi < g; gi++) {
        const float *xp = (const float *)x.p + (gi * s->c + c) * s->hw;
        const uint16_t *xh = (const uint16_t *)x.p + (gi * s->c + c) * s->hw;
        float *dst = o + gi * s->pq;
        for (int64_t p = 0; p < s->p; p++) {
            const int64_t h = p * s->stride - s->pad + kr;
            float *orow = dst + p * s->q;
            if (h < 0 || h >= s->h) {
                memset(orow, 0, (size_t)s->q * sizeof(float));
                continue;
            }
            if (x.dt == PT_F32) row_copy(s, orow, xp + h * s->w, ks - s->pad, qa, qb);
            else row_copy16(s, orow, xh + h * s->w, ks - s->pad, qa, qb);
        }
    }
}

/* col[row][gi*PQ + p*Q + q]: the whole im2col matrix. */
static void im2col(const conv_shape *s, conv_src x, int64_t g, float *col, int par, int threads)
{
    const int64_t ld = g * s->pq;
    par = par && s->crs * ld >= CONV_PAR_MIN_FLOATS;
#pragma omp parallel for num_threads(threads) if (par) schedule(static)
    for (int64_t row = 0; row < s->crs; row++) im2col_row(s, x, g, row, col + row * ld);
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
                int64_t qa, qb;
                inside_columns(s, ks - s->pad, &qa, &qb);
                for (int64_t gi = 0; gi < g; gi++) {
                    float *dp = dx + (gi * s->c + c) * s->hw;
                    const float *src = col + row * ld + gi * s->pq;
                    for (int64_t p = 0; p < s->p; p++) {
                        const int64_t h = p * s->stride - s->pad + kr;
                        if (h < 0 || h >= s->h) continue;
                        float *dr = dp + h * s->w;
                        const float *sr = src + p * s->q;
                        row_add(s, dr, sr, ks - s->pad, qa, qb);
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

/* y[gi, k, j] = (acc ? y : 0) + tmp[k][gi*PQ + j]; y: samples n0.. of the op's y, a 16-bit
 * one rounded (never accumulated: cpu_act16_native). */
static void scatter_groups(const conv_shape *s, const float *tmp, int64_t g, const pt_tensor *yt, int64_t n0,
                           int acc, int par, int threads)
{
    par = par && s->k * g * s->pq >= CONV_PAR_MIN_FLOATS;
    float *y = cpu_f32(yt) + n0 * s->k * s->pq;
#pragma omp parallel for num_threads(threads) if (par) schedule(static)
    for (int64_t k = 0; k < s->k; k++)
        for (int64_t gi = 0; gi < g; gi++) {
            const float *src = tmp + (k * g + gi) * s->pq;
            if (yt->dtype != PT_F32) {
                cpu_act16_narrow_row((uint16_t *)cpu_ptr(yt->mem) + ((n0 + gi) * s->k + k) * s->pq, src, s->pq,
                                     yt->dtype);
                continue;
            }
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
    float *ws;       /* the slots: slot i at ws + i * pl.slot_floats */
    const float *w;  /* the weights the GEMMs read: op's w, or w rounded (emulated) */
    const uint32_t *apk; /* bf16, packed: w packed (fwd: K x CRS; bwd_data: w^T, CRS x K) */
} conv_job;

/* The group's GEMM in the op's math mode. par: threaded (groups in turn); the operands of an
 * emulated mode were rounded already. */
static void conv_gemm(const conv_job *j, float *slot, int par, int ta, int tb, int m, int n, int k,
                      const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    if (j->pl.bf16) {
        float *pack = slot + j->pl.col_floats + j->pl.tmp_floats + j->pl.dw_floats;
        cpu_gemm_bf16(par ? j->d->threads : 1, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc, pack);
    } else {
        cpu_sgemm(j->d, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
    }
}

/* Emulated math: an operand copied into scratch, rounded there. */
static void round_scratch(const conv_job *j, float *p, size_t n, int par)
{
    if (j->pl.emulated) cpu_round_to(j->op->math, p, p, n, par ? j->d->threads : 1);
}

/* Sets up the job: shape, plan, workspace check and, emulated, w rounded once for all
 * groups (fwd and bwd_data, before any parallel region). */
static pt_status job_begin(conv_job *j, const cpu_device *d, const pt_op *op, pt_error *err)
{
    j->d = d;
    j->op = op;
    j->s = shape_of(op);
    j->pl = plan_of(d, op, &j->s);
    PT_TRY(check_workspace(op, &j->pl, err));
    float *base = j->pl.bytes ? (float *)cpu_ptr(op->workspace) : NULL;
    j->ws = base ? base + j->pl.wr_floats + j->pl.apk_floats : NULL;
    j->w = cpu_f32(&op->t[1]);
    j->apk = NULL;
    if (j->pl.wr_floats && j->s.n > 0) {
        cpu_round_to(op->math, base, j->w, (size_t)(j->s.k * j->s.crs), d->threads);
        j->w = base;
    }
    if (j->pl.apk_floats && j->s.n > 0) {
        /* once per op: every group multiplies the same w */
        uint32_t *apk = (uint32_t *)(base + j->pl.wr_floats);
        if (op->kind == PT_OP_CONV2D_FWD)
            cpu_bf16_pack_a(0, j->w, (int)j->s.crs, (int)j->s.k, (int)j->s.crs, apk, d->threads);
        else
            cpu_bf16_pack_a(1, j->w, (int)j->s.crs, (int)j->s.crs, (int)j->s.k, apk, d->threads);
        j->apk = apk;
    }
    return PT_OK;
}

/* ---- forward ---- */

static void fwd_group(const conv_job *j, int64_t n0, int64_t g, float *slot, int par)
{
    const conv_shape *s = &j->s;
    const conv_src x = src_at(&j->op->t[0], n0 * s->c * s->hw);
    const float *w = j->w;
    float *y = cpu_f32(&j->op->t[2]) + n0 * s->k * s->pq;
    const int acc = j->op->accumulate, t = j->d->threads;
    const float *b = (const float *)x.p;
    const int cols = (int)(g * s->pq);
    if (!(s->direct && g == 1) || j->pl.emulated) {
        im2col(s, x, g, slot, par, t);
        round_scratch(j, slot, (size_t)s->crs * (size_t)cols, par);
        b = slot;
    }
    if (g == 1 && j->op->t[2].dtype == PT_F32) {
        conv_gemm(j, slot, par, 0, 0, (int)s->k, cols, (int)s->crs, w, (int)s->crs, b, cols,
                  acc ? 1.0f : 0.0f, y, cols);
    } else {
        float *tmp = slot + j->pl.col_floats;
        conv_gemm(j, slot, par, 0, 0, (int)s->k, cols, (int)s->crs, w, (int)s->crs, b, cols, 0.0f,
                  tmp, cols);
        scatter_groups(s, tmp, g, &j->op->t[2], n0, acc, par, t);
    }
}

/* ---- data gradient ---- */

static void bwd_data_group(const conv_job *j, int64_t n0, int64_t g, float *slot, int par)
{
    const conv_shape *s = &j->s;
    float *dx = cpu_f32(&j->op->t[0]) + n0 * s->c * s->hw;
    const float *w = j->w;
    const float *dy = cpu_f32(&j->op->t[2]) + n0 * s->k * s->pq;
    const int acc = j->op->accumulate, t = j->d->threads;
    const int cols = (int)(g * s->pq);
    const float *dyg = dy;
    if (g > 1 || j->pl.emulated) {
        float *tmp = slot + j->pl.col_floats;
        gather_groups(s, dy, g, tmp, par, t);
        round_scratch(j, tmp, (size_t)s->k * (size_t)cols, par);
        dyg = tmp;
    }
    if (s->direct && g == 1) {
        conv_gemm(j, slot, par, 1, 0, (int)s->crs, cols, (int)s->k, w, (int)s->crs, dyg, cols,
                  acc ? 1.0f : 0.0f, dx, cols);
        return;
    }
    conv_gemm(j, slot, par, 1, 0, (int)s->crs, cols, (int)s->k, w, (int)s->crs, dyg, cols, 0.0f,
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
    const conv_src x = src_at(&j->op->t[0], n0 * s->c * s->hw);
    const float *dy = cpu_f32(&j->op->t[2]) + n0 * s->k * s->pq;
    const int t = j->d->threads;
    const int cols = (int)(g * s->pq);
    const float *dyg = dy, *b = (const float *)x.p;
    if (g > 1 || j->pl.emulated) {
        float *tmp = slot + j->pl.col_floats;
        gather_groups(s, dy, g, tmp, par, t);
        round_scratch(j, tmp, (size_t)s->k * (size_t)cols, par);
        dyg = tmp;
    }
    if (!(s->direct && g == 1) || j->pl.emulated) {
        im2col(s, x, g, slot, par, t);
        round_scratch(j, slot, (size_t)s->crs * (size_t)cols, par);
        b = slot;
    }
    conv_gemm(j, slot, par, 0, 1, (int)s->k, (int)s->crs, cols, dyg, cols, b, cols, beta, dwacc,
              (int)s->crs);
}

/* ---- bf16, packed ----
 * With one-thread GEMMs the operands are written in the kernel's layouts as they are made,
 * instead of in float32 for the GEMM to pack (and, for w, to pack again for every group):
 * w packed once per op; the forward pass's im2col rows (or x's, direct) packed in pairs
 * straight from two rows of float32 staging, with no im2col matrix; dy's rows packed in pairs
 * from dy itself; the filter gradient's dy and im2col rows rounded into bf16 rows along the
 * columns (its k), dy read by the kernel in place, the im2col rows packed by a transpose of
 * dwords. The same bf16 products, summed in float32 in blocks of 512 k instead of 384. On the
 * strided 3x3 layers of resnet18 (batch 16, one thread) the im2col matrix's float32 round trip
 * and the per-group packing of w had taken a quarter of the time. */

static uint32_t *slot_pack(const conv_job *j, float *slot)
{
    return (uint32_t *)(slot + j->pl.col_floats + j->pl.tmp_floats + j->pl.dw_floats);
}

static float *slot_stage(const conv_job *j, float *slot)
{
    return slot + j->pl.col_floats + j->pl.tmp_floats + j->pl.dw_floats + j->pl.pack_floats;
}

static void fwd_group_packed(const conv_job *j, int64_t n0, int64_t g, float *slot)
{
    const conv_shape *s = &j->s;
    const conv_src x = src_at(&j->op->t[0], n0 * s->c * s->hw);
    float *y = cpu_f32(&j->op->t[2]) + n0 * s->k * s->pq;
    const int acc = j->op->accumulate, crs = (int)s->crs, cols = (int)(g * s->pq);
    uint32_t *bpk = slot_pack(j, slot);
    float *stage = slot_stage(j, slot);
    for (int row = 0; row < crs; row += 2) {
        const int two = row + 1 < crs;
        if (s->direct) {
            for (int64_t gi = 0; gi < g; gi++) {
                const float *lo = (const float *)x.p + (gi * s->c + row) * s->pq;
                cpu_bf16_pack_b_pair(lo, two ? lo + s->pq : NULL, (int)s->pq, (int)(gi * s->pq), crs, row, bpk);
            }
            continue;
        }
        im2col_row(s, x, g, row, stage);
        if (two) im2col_row(s, x, g, row + 1, stage + cols);
        cpu_bf16_pack_b_pair(stage, two ? stage + cols : NULL, cols, 0, crs, row, bpk);
    }
    if (g == 1 && j->op->t[2].dtype == PT_F32) {
        cpu_gemm_bf16_packed((int)s->k, cols, crs, j->apk, bpk, acc ? 1.0f : 0.0f, y, cols);
    } else {
        float *tmp = slot + j->pl.col_floats;
        cpu_gemm_bf16_packed((int)s->k, cols, crs, j->apk, bpk, 0.0f, tmp, cols);
        scatter_groups(s, tmp, g, &j->op->t[2], n0, acc, 0, j->d->threads);
    }
}

static void bwd_data_group_packed(const conv_job *j, int64_t n0, int64_t g, float *slot)
{
    const conv_shape *s = &j->s;
    float *dx = cpu_f32(&j->op->t[0]) + n0 * s->c * s->hw;
    const float *dy = cpu_f32(&j->op->t[2]) + n0 * s->k * s->pq;
    const int acc = j->op->accumulate, k = (int)s->k, cols = (int)(g * s->pq);
    uint32_t *bpk = slot_pack(j, slot);
    for (int kk = 0; kk < k; kk += 2)
        for (int64_t gi = 0; gi < g; gi++) {
            const float *lo = dy + (gi * s->k + kk) * s->pq;
            cpu_bf16_pack_b_pair(lo, kk + 1 < k ? lo + s->pq : NULL, (int)s->pq, (int)(gi * s->pq), k, kk, bpk);
        }
    if (s->direct && g == 1) {
        cpu_gemm_bf16_packed((int)s->crs, cols, k, j->apk, bpk, acc ? 1.0f : 0.0f, dx, cols);
        return;
    }
    cpu_gemm_bf16_packed((int)s->crs, cols, k, j->apk, bpk, 0.0f, slot, cols);
    if (!acc) memset(dx, 0, (size_t)(g * s->c * s->hw) * sizeof(float));
    col2im(s, slot, g, dx, 0, j->d->threads);
}

/* dwacc[K, CRS] = beta * dwacc + dy_g col^T, k = the group's columns. */
static void bwd_filter_group_packed(const conv_job *j, int64_t n0, int64_t g, float *slot, float *dwacc, float beta)
{
    const conv_shape *s = &j->s;
    const conv_src x = src_at(&j->op->t[0], n0 * s->c * s->hw);
    const float *dy = cpu_f32(&j->op->t[2]) + n0 * s->k * s->pq;
    const int64_t cols = g * s->pq, ldh = j->pl.ldh;
    uint16_t *colb = (uint16_t *)slot, *dyb = (uint16_t *)(slot + j->pl.col_floats);
    float *stage = slot_stage(j, slot);
    for (int64_t kk = 0; kk < s->k; kk++)
        for (int64_t gi = 0; gi < g; gi++)
            cpu_bf16_round_row(dy + (gi * s->k + kk) * s->pq, (int)s->pq, dyb + kk * ldh + gi * s->pq);
    for (int64_t row = 0; row < s->crs; row++) {
        if (s->direct) {
            for (int64_t gi = 0; gi < g; gi++)
                cpu_bf16_round_row((const float *)x.p + (gi * s->c + row) * s->pq, (int)s->pq,
                                   colb + row * ldh + gi * s->pq);
            continue;
        }
        im2col_row(s, x, g, row, stage);
        cpu_bf16_round_row(stage, (int)cols, colb + row * ldh);
    }
    if (cols & 1) { /* the other half of the last pair */
        for (int64_t kk = 0; kk < s->k; kk++) dyb[kk * ldh + cols] = 0;
        for (int64_t row = 0; row < s->crs; row++) colb[row * ldh + cols] = 0;
    }
    uint32_t *bpk = slot_pack(j, slot);
    cpu_bf16_pack_b_pairs((const uint32_t *)colb, (size_t)ldh / 2, (int)cols, (int)s->crs, bpk);
    cpu_gemm_bf16_rows((int)s->k, (int)s->crs, (int)cols, (const uint32_t *)dyb, (size_t)ldh / 2, bpk, beta, dwacc,
                       (int)s->crs);
}

typedef enum { CONV_FWD, CONV_BWD_DATA } conv_pass;

static void run_range(const conv_job *j, conv_pass pass, int64_t lo, int64_t hi, float *slot, int par)
{
    for (int64_t n0 = lo; n0 < hi; n0 += j->pl.group) {
        const int64_t g = hi - n0 < j->pl.group ? hi - n0 : j->pl.group;
        if (j->pl.packed && pass == CONV_FWD) fwd_group_packed(j, n0, g, slot);
        else if (j->pl.packed) bwd_data_group_packed(j, n0, g, slot);
        else if (pass == CONV_FWD) fwd_group(j, n0, g, slot, par);
        else bwd_data_group(j, n0, g, slot, par);
    }
}

static pt_status run_groups(const cpu_device *d, const pt_op *op, conv_pass pass, pt_error *err)
{
    conv_job j;
    PT_TRY(job_begin(&j, d, op, err));
    if (j.s.n == 0) return PT_OK;
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
    if (cpu_conv_uses_winograd(d, op)) return cpu_winograd_run(d, op, err);
    return run_groups(d, op, CONV_FWD, err);
}

pt_status cpu_op_conv2d_bwd_data(const cpu_device *d, const pt_op *op, pt_error *err)
{
    if (cpu_conv_uses_winograd(d, op)) return cpu_winograd_run(d, op, err);
    return run_groups(d, op, CONV_BWD_DATA, err);
}

pt_status cpu_op_conv2d_bwd_filter(const cpu_device *d, const pt_op *op, pt_error *err)
{
    if (cpu_conv_uses_winograd(d, op)) return cpu_winograd_run(d, op, err);
    conv_job j;
    PT_TRY(job_begin(&j, d, op, err));
    float *dw = cpu_f32(&op->t[1]);
    const int64_t dwn = j.s.k * j.s.crs;
    const int acc = op->accumulate;
    if (j.s.n == 0) {
        if (!acc) memset(dw, 0, (size_t)dwn * sizeof(float));
        return PT_OK;
    }
    if (!j.pl.parallel) {
        for (int64_t n0 = 0; n0 < j.s.n; n0 += j.pl.group) {
            const int64_t g = j.s.n - n0 < j.pl.group ? j.s.n - n0 : j.pl.group;
            const float beta = n0 == 0 && !acc ? 0.0f : 1.0f;
            if (j.pl.packed) bwd_filter_group_packed(&j, n0, g, j.ws, dw, beta);
            else bwd_filter_group(&j, n0, g, j.ws, dw, beta, 1);
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
            if (j.pl.packed) bwd_filter_group_packed(&j, n0, g, slot, part, n0 == lo ? 0.0f : 1.0f);
            else bwd_filter_group(&j, n0, g, slot, part, n0 == lo ? 0.0f : 1.0f, 0);
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
