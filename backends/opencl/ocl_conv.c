/* GEMM and 2-D convolution on the opencl backend. GEMM is CLBlast's SGEMM; a convolution runs
 * over groups of G samples: im2col into a [CRS, G*PQ] matrix, one SGEMM for the whole group,
 * and a scatter/col2im/gather kernel around it (as the cpu backend, so small feature maps still
 * give wide GEMMs). G is bounded so that the workspace stays under OCL_CONV_WS_CAP; all scratch
 * is the op's workspace, reserved once by the core. */
#include "backends/opencl/ocl_internal.h"

#define OCL_CONV_WS_CAP ((size_t)64 << 20)

pt_status ocl_op_gemm(ocl_device *d, const pt_op *op, pt_error *err)
{
    const pt_tensor *A = &op->t[0], *B = &op->t[1], *C = &op->t[2];
    const int ta = op->p.gemm.trans_a, tb = op->p.gemm.trans_b;
    const size_t m = (size_t)C->dim[0], n = (size_t)C->dim[1];
    const size_t k = (size_t)(ta ? A->dim[0] : A->dim[1]);
    const size_t am = (size_t)(ta ? A->dim[1] : A->dim[0]);
    const size_t bk = (size_t)(tb ? B->dim[1] : B->dim[0]), bn = (size_t)(tb ? B->dim[0] : B->dim[1]);
    if (am != m || bk != k || bn != n)
        return pt_fail(err, PT_ERR_INVALID, "opencl gemm: op(A) is %zux%zu, op(B) %zux%zu, C %zux%zu", am, k, bk, bn,
                       m, n);
    if (m == 0 || n == 0) return PT_OK;
    if (k == 0) {
        /* C = beta*C, which CLBlast refuses to compute (an empty dimension is an error there) */
        ocl_launch l = ocl_kernel(d, OCL_K_SCALE);
        kl_tensor(&l, C);
        kl_int(&l, (int)(m * n));
        kl_float(&l, op->p.gemm.beta);
        return kl_run(&l, m * n, 0, err);
    }
    return ocl_sgemm(d, ta, tb, m, n, k, op->p.gemm.alpha, A->mem.buf->mem, A->mem.off / 4, (size_t)A->dim[1],
                     B->mem.buf->mem, B->mem.off / 4, (size_t)B->dim[1], op->p.gemm.beta, C->mem.buf->mem,
                     C->mem.off / 4, (size_t)C->dim[1], err);
}

typedef struct conv_shape {
    int n, c, h, w, k, r, s, p, q, stride, pad;
    size_t crs, pq, hw;
    int direct; /* 1x1, stride 1, no padding: a sample of x is its own column matrix */
    int group;  /* samples per GEMM */
    size_t col_floats, tmp_floats, bytes;
} conv_shape;

static conv_shape shape_of(const pt_op *op)
{
    /* t0 is x-shaped, t1 w-shaped, t2 y-shaped for all three conv kinds */
    const pt_tensor *x = &op->t[0], *w = &op->t[1], *y = &op->t[2];
    conv_shape s;
    s.n = (int)x->dim[0];
    s.c = (int)x->dim[1];
    s.h = (int)x->dim[2];
    s.w = (int)x->dim[3];
    s.k = (int)w->dim[0];
    s.r = (int)w->dim[2];
    s.s = (int)w->dim[3];
    s.p = (int)y->dim[2];
    s.q = (int)y->dim[3];
    s.stride = op->p.conv.stride;
    s.pad = op->p.conv.pad;
    s.crs = (size_t)s.c * (size_t)s.r * (size_t)s.s;
    s.pq = (size_t)s.p * (size_t)s.q;
    s.hw = (size_t)s.h * (size_t)s.w;
    s.direct = s.r == 1 && s.s == 1 && s.stride == 1 && s.pad == 0;
    const size_t per = (s.crs + (size_t)s.k) * s.pq * sizeof(float);
    size_t g = per ? OCL_CONV_WS_CAP / per : 1;
    if (g > (size_t)s.n) g = (size_t)s.n;
    if (g < 1) g = 1;
    s.group = (int)g;
    const int no_col = s.direct && g == 1;
    s.col_floats = no_col ? 0 : (s.crs * g * s.pq + 15) / 16 * 16;
    s.tmp_floats = g > 1 ? ((size_t)s.k * g * s.pq + 15) / 16 * 16 : 0;
    s.bytes = (s.col_floats + s.tmp_floats) * sizeof(float);
    return s;
}

size_t ocl_conv_workspace(const ocl_device *d, const pt_op *op)
{
    (void)d;
    return shape_of(op).bytes;
}

static pt_mem at(pt_mem m, size_t floats)
{
    m.off += floats * sizeof(float);
    return m;
}

/* The convolution geometry, in the order the im2col and col2im kernels take it. */
static void kl_conv_geometry(ocl_launch *l, const conv_shape *s)
{
    kl_int(l, s->c);
    kl_int(l, s->h);
    kl_int(l, s->w);
    kl_int(l, s->r);
    kl_int(l, s->s);
    kl_int(l, s->p);
    kl_int(l, s->q);
    kl_int(l, s->stride);
    kl_int(l, s->pad);
}

static pt_status im2col(ocl_device *d, const conv_shape *s, pt_mem x, pt_mem col, int g, pt_error *err)
{
    const size_t n = s->crs * (size_t)g * s->pq;
    ocl_launch l = ocl_kernel(d, OCL_K_IM2COL);
    kl_mem(&l, x);
    kl_mem(&l, col);
    kl_int(&l, (int)n);
    kl_int(&l, g);
    kl_conv_geometry(&l, s);
    return kl_run(&l, n, 0, err);
}

static pt_status col2im(ocl_device *d, const conv_shape *s, pt_mem col, pt_mem dx, int g, int acc, pt_error *err)
{
    const size_t n = (size_t)g * (size_t)s->c * s->hw;
    ocl_launch l = ocl_kernel(d, OCL_K_COL2IM);
    kl_mem(&l, col);
    kl_mem(&l, dx);
    kl_int(&l, (int)n);
    kl_int(&l, g);
    kl_conv_geometry(&l, s);
    kl_int(&l, acc);
    return kl_run(&l, n, 0, err);
}

/* tmp[k][g*PQ + j] = dy[g, k, j] (gather) or y[g, k, j] = (acc ? y : 0) + tmp[k][g*PQ + j] */
static pt_status regroup(ocl_device *d, const conv_shape *s, ocl_kernel_id id, pt_mem src, pt_mem dst, int g,
                         int acc, pt_error *err)
{
    const size_t n = (size_t)s->k * (size_t)g * s->pq;
    ocl_launch l = ocl_kernel(d, id);
    kl_mem(&l, src);
    kl_mem(&l, dst);
    kl_int(&l, (int)n);
    kl_int(&l, g);
    kl_int(&l, s->k);
    kl_int(&l, (int)s->pq);
    if (id == OCL_K_SCATTER_GROUPS) kl_int(&l, acc);
    return kl_run(&l, n, 0, err);
}

static pt_status gemm_mem(ocl_device *d, int ta, int tb, size_t m, size_t n, size_t k, pt_mem a, size_t lda,
                          pt_mem b, size_t ldb, float beta, pt_mem c, size_t ldc, pt_error *err)
{
    return ocl_sgemm(d, ta, tb, m, n, k, 1.0f, a.buf->mem, a.off / 4, lda, b.buf->mem, b.off / 4, ldb, beta,
                     c.buf->mem, c.off / 4, ldc, err);
}

static pt_status zero(ocl_device *d, pt_mem m, size_t n, pt_error *err)
{
    ocl_launch l = ocl_kernel(d, OCL_K_FILL);
    kl_mem(&l, m);
    kl_int(&l, (int)n);
    kl_float(&l, 0.0f);
    return kl_run(&l, n, 0, err);
}

pt_status ocl_op_conv2d(ocl_device *d, const pt_op *op, pt_error *err)
{
    const conv_shape s = shape_of(op);
    if (s.stride < 1 || s.pad < 0)
        return pt_fail(err, PT_ERR_INVALID, "opencl %s: stride %d, padding %d", pt_op_name(op->kind), s.stride, s.pad);
    if (op->workspace_bytes < s.bytes)
        return pt_fail(err, PT_ERR_INVALID, "opencl %s: needs a workspace of %zu bytes (ask workspace_size), got %zu",
                       pt_op_name(op->kind), s.bytes, op->workspace_bytes);
    const int acc = op->accumulate;
    const pt_mem x = op->t[0].mem, w = op->t[1].mem, y = op->t[2].mem; /* (dx, dw, dy) in backward */
    const pt_mem col = op->workspace, tmp = at(op->workspace, s.col_floats);
    const size_t xs = (size_t)s.c * s.hw, ys = (size_t)s.k * s.pq; /* floats per sample */
    const size_t wn = (size_t)s.k * s.crs;
    if (op->kind == PT_OP_CONV2D_BWD_FILTER && (s.n == 0 || s.pq == 0) && !acc) return zero(d, w, wn, err);
    if (s.n == 0 || s.pq == 0 || s.k == 0) {
        /* no output cells: the input gradient is zero (or unchanged when accumulating) */
        if (op->kind == PT_OP_CONV2D_BWD_DATA && !acc) return zero(d, x, (size_t)s.n * xs, err);
        return PT_OK;
    }
    if (s.crs == 0) {
        if (op->kind == PT_OP_CONV2D_FWD && !acc) return zero(d, y, (size_t)s.n * ys, err);
        return PT_OK;
    }
    for (int n0 = 0; n0 < s.n; n0 += s.group) {
        const int g = s.n - n0 < s.group ? s.n - n0 : s.group;
        const size_t cols = (size_t)g * s.pq;
        const pt_mem xg = at(x, (size_t)n0 * xs), yg = at(y, (size_t)n0 * ys);
        const int no_col = s.direct && g == 1;
        switch (op->kind) {
        case PT_OP_CONV2D_FWD: {
            if (!no_col) PT_TRY(im2col(d, &s, xg, col, g, err));
            const pt_mem b = no_col ? xg : col;
            if (g == 1) {
                /* straight into y; beta 0 must not read y (it may hold NaN): see ocl_sgemm */
                PT_TRY(gemm_mem(d, 0, 0, (size_t)s.k, cols, s.crs, w, s.crs, b, cols, acc ? 1.0f : 0.0f, yg, cols, err));
            } else {
                PT_TRY(gemm_mem(d, 0, 0, (size_t)s.k, cols, s.crs, w, s.crs, b, cols, 0.0f, tmp, cols, err));
                PT_TRY(regroup(d, &s, OCL_K_SCATTER_GROUPS, tmp, yg, g, acc, err));
            }
            break;
        }
        case PT_OP_CONV2D_BWD_DATA: {
            pt_mem dyg = yg;
            if (g > 1) {
                PT_TRY(regroup(d, &s, OCL_K_GATHER_GROUPS, yg, tmp, g, 0, err));
                dyg = tmp;
            }
            if (no_col) {
                PT_TRY(gemm_mem(d, 1, 0, s.crs, cols, (size_t)s.k, w, s.crs, dyg, cols, acc ? 1.0f : 0.0f, xg, cols,
                                err));
            } else {
                PT_TRY(gemm_mem(d, 1, 0, s.crs, cols, (size_t)s.k, w, s.crs, dyg, cols, 0.0f, col, cols, err));
                PT_TRY(col2im(d, &s, col, xg, g, acc, err));
            }
            break;
        }
        case PT_OP_CONV2D_BWD_FILTER: {
            pt_mem dyg = yg;
            if (g > 1) {
                PT_TRY(regroup(d, &s, OCL_K_GATHER_GROUPS, yg, tmp, g, 0, err));
                dyg = tmp;
            }
            if (!no_col) PT_TRY(im2col(d, &s, xg, col, g, err));
            const pt_mem b = no_col ? xg : col;
            const float beta = n0 == 0 && !acc ? 0.0f : 1.0f;
            PT_TRY(gemm_mem(d, 0, 1, (size_t)s.k, s.crs, cols, dyg, cols, b, cols, beta, w, s.crs, err));
            break;
        }
        default:
            return pt_fail(err, PT_ERR_UNSUPPORTED, "opencl backend: %s is not a convolution", pt_op_name(op->kind));
        }
    }
    return PT_OK;
}
