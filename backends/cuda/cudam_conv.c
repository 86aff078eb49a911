/* 2-D convolution on the cuda module: cuDNN (forward, backward-data, backward-filter) with a
 * plan per shape key in the device's plan cache (cuda_algo_cache.h). workspace_size builds
 * the plan: descriptors, cuDNN's heuristic ranking filtered by the numeric mode (plain fp32
 * FMA kernels unless PT_CUDA_TF32=1; only CUDNN_DETERMINISTIC algorithms when the device was
 * opened deterministic) and a workspace big enough for the best few candidates. The first
 * run of a shape that overwrites its output then measures those candidates with
 * cudnnFind*Ex inside that workspace and keeps the fastest (PT_CUDA_CONV_BENCHMARK=0: keep
 * the heuristic's first). Shapes cuDNN refuses fall back to im2col + cuBLAS with the shared
 * kernels, as the opencl backend computes them. Scratch is always the op's workspace. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cuda/cudam_internal.h"

#define CU_CONV_CANDIDATES 4
#define CU_IM2COL_WS_CAP ((size_t)256 << 20)

typedef struct conv_geom {
    int n, c, h, w, k, r, s, p, q, stride, pad;
    size_t crs, pq, hw;
    int direct;
    int group;
    size_t col_floats, tmp_floats, bytes;
} conv_geom;

typedef struct conv_plan {
    int use_cudnn;
    cudnnTensorDescriptor_t xd, yd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    int algo;
    cudnnMathType_t math;
    size_t algo_ws; /* the chosen algorithm's workspace */
    /* the heuristic's acceptable candidates, best first: the next is tried when cuDNN
     * refuses one at run time (CUDNN_STATUS_NOT_SUPPORTED) */
    int cand_algo[CU_CONV_CANDIDATES];
    cudnnMathType_t cand_math[CU_CONV_CANDIDATES];
    size_t cand_ws[CU_CONV_CANDIDATES];
    int ncand, next_cand;
    size_t ws;      /* what workspace_size reports (room for the candidates) */
    int tuned;
    conv_geom g;    /* the fallback's geometry */
    char why[160];  /* why the fallback */
} conv_plan;

static conv_geom geom_of(const pt_op *op)
{
    const pt_tensor *x = &op->t[0], *w = &op->t[1], *y = &op->t[2];
    conv_geom s;
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
    size_t g = per ? CU_IM2COL_WS_CAP / per : 1;
    if (g > (size_t)s.n) g = (size_t)s.n;
    if (g < 1) g = 1;
    s.group = (int)g;
    const int no_col = s.direct && g == 1;
    s.col_floats = no_col ? 0 : (s.crs * g * s.pq + 63) / 64 * 64;
    s.tmp_floats = g > 1 ? ((size_t)s.k * g * s.pq + 63) / 64 * 64 : 0;
    s.bytes = (s.col_floats + s.tmp_floats) * sizeof(float);
    return s;
}

static int degenerate(const conv_geom *s)
{
    return s->n == 0 || s->pq == 0 || s->k == 0 || s->crs == 0;
}

static void plan_free(void *value, void *user)
{
    (void)user;
    conv_plan *p = value;
    if (p->xd) cudnnDestroyTensorDescriptor(p->xd);
    if (p->yd) cudnnDestroyTensorDescriptor(p->yd);
    if (p->wd) cudnnDestroyFilterDescriptor(p->wd);
    if (p->cd) cudnnDestroyConvolutionDescriptor(p->cd);
    free(p);
}

void cu_conv_cache_free(cu_device *d)
{
    pt_algo_cache_destroy(&d->convs, plan_free, NULL);
}

/* An algorithm the numeric mode allows. */
static int acceptable(const cu_device *d, cudnnStatus_t st, cudnnDeterminism_t det, cudnnMathType_t math, size_t mem)
{
    if (st != CUDNN_STATUS_SUCCESS || mem > d->ws_cap) return 0;
    if (d->deterministic && det != CUDNN_DETERMINISTIC) return 0;
    /* without TF32 the descriptor is pinned to CUDNN_FMA_MATH (see math_for): an
     * algorithm listed for tensor-op math only would not honour it */
    if (!d->tf32 && math != CUDNN_FMA_MATH && math != CUDNN_DEFAULT_MATH) return 0;
    return 1;
}

/* The math type a chosen algorithm runs with: plain fp32 FMA unless TF32 is allowed. */
static cudnnMathType_t math_for(const cu_device *d, cudnnMathType_t listed)
{
    return d->tf32 ? listed : CUDNN_FMA_MATH;
}

#define CU_MAX_ALGOS 16

/* cuDNN's heuristic ranking for the plan's direction: fills the chosen algorithm and the
 * workspace for the best CU_CONV_CANDIDATES acceptable ones. 0 when none is acceptable. */
static int choose_heuristic(cu_device *d, pt_op_kind kind, conv_plan *p)
{
    int n = 0, found = 0;
    size_t ws = 0;
    p->ws = 0;
    if (kind == PT_OP_CONV2D_FWD) {
        cudnnConvolutionFwdAlgoPerf_t perf[CU_MAX_ALGOS];
        if (cudnnGetConvolutionForwardAlgorithm_v7(d->cudnn, p->xd, p->wd, p->cd, p->yd, CU_MAX_ALGOS, &n, perf) !=
            CUDNN_STATUS_SUCCESS)
            return 0;
        for (int i = 0; i < n && found < CU_CONV_CANDIDATES; i++) {
            if (!acceptable(d, perf[i].status, perf[i].determinism, perf[i].mathType, perf[i].memory)) continue;
            p->cand_algo[found] = (int)perf[i].algo;
            p->cand_math[found] = math_for(d, perf[i].mathType);
            p->cand_ws[found] = perf[i].memory;
            if (perf[i].memory > ws) ws = perf[i].memory;
            found++;
        }
    } else if (kind == PT_OP_CONV2D_BWD_DATA) {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CU_MAX_ALGOS];
        if (cudnnGetConvolutionBackwardDataAlgorithm_v7(d->cudnn, p->wd, p->yd, p->cd, p->xd, CU_MAX_ALGOS, &n,
                                                        perf) != CUDNN_STATUS_SUCCESS)
            return 0;
        for (int i = 0; i < n && found < CU_CONV_CANDIDATES; i++) {
            if (!acceptable(d, perf[i].status, perf[i].determinism, perf[i].mathType, perf[i].memory)) continue;
            p->cand_algo[found] = (int)perf[i].algo;
            p->cand_math[found] = math_for(d, perf[i].mathType);
            p->cand_ws[found] = perf[i].memory;
            if (perf[i].memory > ws) ws = perf[i].memory;
            found++;
        }
    } else {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[CU_MAX_ALGOS];
        if (cudnnGetConvolutionBackwardFilterAlgorithm_v7(d->cudnn, p->xd, p->yd, p->cd, p->wd, CU_MAX_ALGOS, &n,
                                                          perf) != CUDNN_STATUS_SUCCESS)
            return 0;
        for (int i = 0; i < n && found < CU_CONV_CANDIDATES; i++) {
            if (!acceptable(d, perf[i].status, perf[i].determinism, perf[i].mathType, perf[i].memory)) continue;
            p->cand_algo[found] = (int)perf[i].algo;
            p->cand_math[found] = math_for(d, perf[i].mathType);
            p->cand_ws[found] = perf[i].memory;
            if (perf[i].memory > ws) ws = perf[i].memory;
            found++;
        }
    }
    p->ws = (ws + 255) / 256 * 256;
    p->ncand = found;
    if (found) {
        p->algo = p->cand_algo[0];
        p->math = p->cand_math[0];
        p->algo_ws = p->cand_ws[0];
        p->next_cand = 1;
    }
    return found > 0;
}

static int make_descriptors(cu_device *d, const conv_geom *s, conv_plan *p)
{
    if (cudnnCreateTensorDescriptor(&p->xd) != CUDNN_STATUS_SUCCESS ||
        cudnnCreateTensorDescriptor(&p->yd) != CUDNN_STATUS_SUCCESS ||
        cudnnCreateFilterDescriptor(&p->wd) != CUDNN_STATUS_SUCCESS ||
        cudnnCreateConvolutionDescriptor(&p->cd) != CUDNN_STATUS_SUCCESS)
        return 0;
    if (cudnnSetTensor4dDescriptor(p->xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s->n, s->c, s->h, s->w) !=
            CUDNN_STATUS_SUCCESS ||
        cudnnSetTensor4dDescriptor(p->yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s->n, s->k, s->p, s->q) !=
            CUDNN_STATUS_SUCCESS ||
        cudnnSetFilter4dDescriptor(p->wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, s->k, s->c, s->r, s->s) !=
            CUDNN_STATUS_SUCCESS ||
        cudnnSetConvolution2dDescriptor(p->cd, s->pad, s->pad, s->stride, s->stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                        CUDNN_DATA_FLOAT) != CUDNN_STATUS_SUCCESS ||
        cudnnSetConvolutionMathType(p->cd, d->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH) != CUDNN_STATUS_SUCCESS)
        return 0;
    int on = 0, ok = 0, op = 0, oq = 0;
    if (cudnnGetConvolution2dForwardOutputDim(p->cd, p->xd, p->wd, &on, &ok, &op, &oq) != CUDNN_STATUS_SUCCESS)
        return 0;
    return on == s->n && ok == s->k && op == s->p && oq == s->q;
}

/* The plan of op's shape, built on first sight; NULL only when out of host memory. */
static conv_plan *plan_of(cu_device *d, const pt_op *op)
{
    const pt_conv_key key = pt_conv_key_of(op, d->deterministic, d->tf32);
    conv_plan *p = pt_algo_cache_find(&d->convs, &key);
    if (p) return p;
    p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->g = geom_of(op);
    if (degenerate(&p->g) || p->g.stride < 1 || p->g.pad < 0) {
        snprintf(p->why, sizeof p->why, "empty or invalid geometry");
    } else if (!make_descriptors(d, &p->g, p)) {
        snprintf(p->why, sizeof p->why, "cuDNN refuses the descriptors");
    } else if (!choose_heuristic(d, op->kind, p)) {
        snprintf(p->why, sizeof p->why, "no cuDNN algorithm fits the numeric mode and workspace cap");
    } else {
        p->use_cudnn = 1;
        p->tuned = !d->conv_benchmark;
        cudnnSetConvolutionMathType(p->cd, p->math);
    }
    if (!p->use_cudnn) p->ws = degenerate(&p->g) ? 0 : p->g.bytes;
    if (pt_algo_cache_insert(&d->convs, &key, p) != 0) {
        plan_free(p, NULL);
        return NULL;
    }
    return p;
}

size_t cu_conv_workspace(cu_device *d, const pt_op *op)
{
    conv_plan *p = plan_of(d, op);
    return p ? p->ws : geom_of(op).bytes;
}

/* The fastest acceptable algorithm within the op's workspace, measured on its own buffers
 * (the output is overwritten, which is why only non-accumulating runs tune). */
static pt_status tune(cu_device *d, const pt_op *op, conv_plan *p, pt_error *err)
{
    void *ws = op->workspace_bytes ? cu_f32(op->workspace) : NULL;
    const size_t wsb = op->workspace_bytes;
    void *x = cu_f32(op->t[0].mem), *w = cu_f32(op->t[1].mem), *y = cu_f32(op->t[2].mem);
    int n = 0;
    p->tuned = 1;
    if (op->kind == PT_OP_CONV2D_FWD) {
        cudnnConvolutionFwdAlgoPerf_t perf[CU_MAX_ALGOS];
        CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(d->cudnn, p->xd, x, p->wd, w, p->cd, p->yd, y, CU_MAX_ALGOS,
                                                           &n, perf, ws, wsb),
                    err);
        for (int i = 0; i < n; i++)
            if (acceptable(d, perf[i].status, perf[i].determinism, perf[i].mathType, perf[i].memory) &&
                perf[i].memory <= wsb) {
                p->algo = (int)perf[i].algo;
                p->math = math_for(d, perf[i].mathType);
                p->algo_ws = perf[i].memory;
                break;
            }
    } else if (op->kind == PT_OP_CONV2D_BWD_DATA) {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CU_MAX_ALGOS];
        CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(d->cudnn, p->wd, w, p->yd, y, p->cd, p->xd, x,
                                                                CU_MAX_ALGOS, &n, perf, ws, wsb),
                    err);
        for (int i = 0; i < n; i++)
            if (acceptable(d, perf[i].status, perf[i].determinism, perf[i].mathType, perf[i].memory) &&
                perf[i].memory <= wsb) {
                p->algo = (int)perf[i].algo;
                p->math = math_for(d, perf[i].mathType);
                p->algo_ws = perf[i].memory;
                break;
            }
    } else {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[CU_MAX_ALGOS];
        CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(d->cudnn, p->xd, x, p->yd, y, p->cd, p->wd, w,
                                                                  CU_MAX_ALGOS, &n, perf, ws, wsb),
                    err);
        for (int i = 0; i < n; i++)
            if (acceptable(d, perf[i].status, perf[i].determinism, perf[i].mathType, perf[i].memory) &&
                perf[i].memory <= wsb) {
                p->algo = (int)perf[i].algo;
                p->math = math_for(d, perf[i].mathType);
                p->algo_ws = perf[i].memory;
                break;
            }
    }
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, p->math), err);
    return PT_OK;
}

static cudnnStatus_t conv_call(cu_device *d, const pt_op *op, const conv_plan *p)
{
    const float one = 1.0f, beta = op->accumulate ? 1.0f : 0.0f;
    void *ws = p->algo_ws ? cu_f32(op->workspace) : NULL;
    void *x = cu_f32(op->t[0].mem), *w = cu_f32(op->t[1].mem), *y = cu_f32(op->t[2].mem);
    if (op->kind == PT_OP_CONV2D_FWD)
        return cudnnConvolutionForward(d->cudnn, &one, p->xd, x, p->wd, w, p->cd, (cudnnConvolutionFwdAlgo_t)p->algo,
                                       ws, p->algo_ws, &beta, p->yd, y);
    if (op->kind == PT_OP_CONV2D_BWD_DATA)
        return cudnnConvolutionBackwardData(d->cudnn, &one, p->wd, w, p->yd, y, p->cd,
                                            (cudnnConvolutionBwdDataAlgo_t)p->algo, ws, p->algo_ws, &beta, p->xd, x);
    return cudnnConvolutionBackwardFilter(d->cudnn, &one, p->xd, x, p->yd, y, p->cd,
                                          (cudnnConvolutionBwdFilterAlgo_t)p->algo, ws, p->algo_ws, &beta, p->wd, w);
}

static pt_status run_cudnn(cu_device *d, const pt_op *op, conv_plan *p, pt_error *err)
{
    if (!p->tuned && !op->accumulate) {
        /* measuring is an optimisation: if cuDNN cannot, the heuristic's choice stands */
        pt_error ignore;
        if (tune(d, op, p, &ignore) != PT_OK) cudnnSetConvolutionMathType(p->cd, p->math);
    }
    cudnnStatus_t st = conv_call(d, op, p);
    /* an algorithm cuDNN listed but refuses for this math type: the next candidate */
    while (st == CUDNN_STATUS_NOT_SUPPORTED && p->next_cand < p->ncand) {
        const int c = p->next_cand++;
        p->algo = p->cand_algo[c];
        p->math = p->cand_math[c];
        p->algo_ws = p->cand_ws[c];
        CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, p->math), err);
        st = conv_call(d, op, p);
    }
    if (st != CUDNN_STATUS_SUCCESS) {
        char key[200];
        pt_conv_key k = pt_conv_key_of(op, d->deterministic, d->tf32);
        pt_conv_key_format(&k, key, sizeof key);
        cu_fail_cudnn(err, st, "cudnnConvolution (forward/backward)", __FILE__, __LINE__);
        return pt_error_wrap(err, "%s, algorithm %d, workspace %zu", key, p->algo, p->algo_ws);
    }
    return PT_OK;
}

/* ---- the fallback: im2col + cuBLAS over groups of samples (the opencl backend's scheme) ---- */

static pt_mem at(pt_mem m, size_t floats)
{
    m.off += floats * sizeof(float);
    return m;
}

static void kl_geom(cu_launch *l, const conv_geom *s)
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

static pt_status im2col(cu_device *d, const conv_geom *s, pt_mem x, pt_mem col, int g, pt_error *err)
{
    const size_t n = s->crs * (size_t)g * s->pq;
    cu_launch l;
    cu_kernel(&l, d, CU_K_IM2COL);
    kl_mem(&l, x);
    kl_mem(&l, col);
    kl_int(&l, (int)n);
    kl_int(&l, g);
    kl_geom(&l, s);
    return kl_run(&l, n, 0, err);
}

static pt_status col2im(cu_device *d, const conv_geom *s, pt_mem col, pt_mem dx, int g, int acc, pt_error *err)
{
    const size_t n = (size_t)g * (size_t)s->c * s->hw;
    cu_launch l;
    cu_kernel(&l, d, CU_K_COL2IM);
    kl_mem(&l, col);
    kl_mem(&l, dx);
    kl_int(&l, (int)n);
    kl_int(&l, g);
    kl_geom(&l, s);
    kl_int(&l, acc);
    return kl_run(&l, n, 0, err);
}

static pt_status regroup(cu_device *d, const conv_geom *s, cu_kernel_id id, pt_mem src, pt_mem dst, int g, int acc,
                         pt_error *err)
{
    const size_t n = (size_t)s->k * (size_t)g * s->pq;
    cu_launch l;
    cu_kernel(&l, d, id);
    kl_mem(&l, src);
    kl_mem(&l, dst);
    kl_int(&l, (int)n);
    kl_int(&l, g);
    kl_int(&l, s->k);
    kl_int(&l, (int)s->pq);
    if (id == CU_K_SCATTER_GROUPS) kl_int(&l, acc);
    return kl_run(&l, n, 0, err);
}

static pt_status gemm_mem(cu_device *d, int ta, int tb, size_t m, size_t n, size_t k, pt_mem a, size_t lda, pt_mem b,
                          size_t ldb, float beta, pt_mem c, size_t ldc, pt_error *err)
{
    return cu_sgemm_rowmajor(d, ta, tb, m, n, k, 1.0f, cu_f32(a), lda, cu_f32(b), ldb, beta, cu_f32(c), ldc, err);
}

static pt_status zero(cu_device *d, pt_mem m, size_t n, pt_error *err)
{
    cu_launch l;
    cu_kernel(&l, d, CU_K_FILL);
    kl_mem(&l, m);
    kl_int(&l, (int)n);
    kl_float(&l, 0.0f);
    return kl_run(&l, n, 0, err);
}

static pt_status run_im2col(cu_device *d, const pt_op *op, const conv_geom *sp, pt_error *err)
{
    const conv_geom s = *sp;
    const int acc = op->accumulate;
    const pt_mem x = op->t[0].mem, w = op->t[1].mem, y = op->t[2].mem;
    const pt_mem col = op->workspace, tmp = at(op->workspace, s.col_floats);
    const size_t xs = (size_t)s.c * s.hw, ys = (size_t)s.k * s.pq;
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
                PT_TRY(gemm_mem(d, 0, 0, (size_t)s.k, cols, s.crs, w, s.crs, b, cols, acc ? 1.0f : 0.0f, yg, cols, err));
            } else {
                PT_TRY(gemm_mem(d, 0, 0, (size_t)s.k, cols, s.crs, w, s.crs, b, cols, 0.0f, tmp, cols, err));
                PT_TRY(regroup(d, &s, CU_K_SCATTER_GROUPS, tmp, yg, g, acc, err));
            }
            break;
        }
        case PT_OP_CONV2D_BWD_DATA: {
            pt_mem dyg = yg;
            if (g > 1) {
                PT_TRY(regroup(d, &s, CU_K_GATHER_GROUPS, yg, tmp, g, 0, err));
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
        default: {
            pt_mem dyg = yg;
            if (g > 1) {
                PT_TRY(regroup(d, &s, CU_K_GATHER_GROUPS, yg, tmp, g, 0, err));
                dyg = tmp;
            }
            if (!no_col) PT_TRY(im2col(d, &s, xg, col, g, err));
            const pt_mem b = no_col ? xg : col;
            const float beta = n0 == 0 && !acc ? 0.0f : 1.0f;
            PT_TRY(gemm_mem(d, 0, 1, (size_t)s.k, s.crs, cols, dyg, cols, b, cols, beta, w, s.crs, err));
            break;
        }
        }
    }
    return PT_OK;
}

pt_status cu_op_conv2d(cu_device *d, const pt_op *op, pt_error *err)
{
    if (op->p.conv.stride < 1 || op->p.conv.pad < 0)
        return pt_fail(err, PT_ERR_INVALID, "cuda %s: stride %d, padding %d", pt_op_name(op->kind), op->p.conv.stride,
                       op->p.conv.pad);
    conv_plan *p = plan_of(d, op);
    if (!p) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    if (op->workspace_bytes < p->ws)
        return pt_fail(err, PT_ERR_INVALID, "cuda %s: needs a workspace of %zu bytes (ask workspace_size), got %zu",
                       pt_op_name(op->kind), p->ws, op->workspace_bytes);
    const conv_geom *s = &p->g;
    const int acc = op->accumulate;
    const size_t xs = (size_t)s->c * s->hw, ys = (size_t)s->k * s->pq, wn = (size_t)s->k * s->crs;
    if (op->kind == PT_OP_CONV2D_BWD_FILTER && (s->n == 0 || s->pq == 0) && !acc) return zero(d, op->t[1].mem, wn, err);
    if (s->n == 0 || s->pq == 0 || s->k == 0) {
        if (op->kind == PT_OP_CONV2D_BWD_DATA && !acc) return zero(d, op->t[0].mem, (size_t)s->n * xs, err);
        return PT_OK;
    }
    if (s->crs == 0) {
        if (op->kind == PT_OP_CONV2D_FWD && !acc) return zero(d, op->t[2].mem, (size_t)s->n * ys, err);
        return PT_OK;
    }
    return p->use_cudnn ? run_cudnn(d, op, p, err) : run_im2col(d, op, s, err);
}
