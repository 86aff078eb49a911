/* 2-D convolution on the cuda module: cuDNN (forward, backward-data, backward-filter) with a
 * plan per shape key in the device's plan cache (cuda_algo_cache.h). workspace_size builds
 * the plan: descriptors, cuDNN's heuristic ranking filtered by the numeric mode (plain fp32
 * FMA kernels unless PT_CUDA_TF32=1; only CUDNN_DETERMINISTIC algorithms when the device was
 * opened deterministic) and a workspace big enough for the best few candidates. The first
 * run of a shape that overwrites its output then measures those candidates with
 * cudnnFind*Ex inside that workspace and keeps the fastest (PT_CUDA_CONV_BENCHMARK=0: keep
 * the heuristic's first). Shapes cuDNN refuses, and empty ones, run the shared layer's im2col
 * path with cuBLAS (backends/kernels/kernel_ops.c), as the opencl backend computes them.
 * Scratch is always the op's workspace. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cuda/cudam_internal.h"

#define CU_CONV_CANDIDATES 4

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
    char why[160];  /* why the shared im2col path runs instead */
} conv_plan;

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

/* The shape of op as cuDNN's 4-D descriptors: x [n,c,h,w], w [k,c,r,s], y [n,k,p,q]. */
static int make_descriptors(cu_device *d, const pt_op *op, conv_plan *p)
{
    const pt_tensor *x = &op->t[0], *w = &op->t[1], *y = &op->t[2];
    const int n = (int)x->dim[0], c = (int)x->dim[1], h = (int)x->dim[2], wx = (int)x->dim[3];
    const int k = (int)w->dim[0], r = (int)w->dim[2], s = (int)w->dim[3], pp = (int)y->dim[2], q = (int)y->dim[3];
    const int stride = op->p.conv.stride, pad = op->p.conv.pad;
    if (cudnnCreateTensorDescriptor(&p->xd) != CUDNN_STATUS_SUCCESS ||
        cudnnCreateTensorDescriptor(&p->yd) != CUDNN_STATUS_SUCCESS ||
        cudnnCreateFilterDescriptor(&p->wd) != CUDNN_STATUS_SUCCESS ||
        cudnnCreateConvolutionDescriptor(&p->cd) != CUDNN_STATUS_SUCCESS)
        return 0;
    if (cudnnSetTensor4dDescriptor(p->xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, h, wx) != CUDNN_STATUS_SUCCESS ||
        cudnnSetTensor4dDescriptor(p->yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, k, pp, q) != CUDNN_STATUS_SUCCESS ||
        cudnnSetFilter4dDescriptor(p->wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, k, c, r, s) != CUDNN_STATUS_SUCCESS ||
        cudnnSetConvolution2dDescriptor(p->cd, pad, pad, stride, stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                        CUDNN_DATA_FLOAT) != CUDNN_STATUS_SUCCESS ||
        cudnnSetConvolutionMathType(p->cd, d->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH) != CUDNN_STATUS_SUCCESS)
        return 0;
    int on = 0, ok = 0, op_ = 0, oq = 0;
    if (cudnnGetConvolution2dForwardOutputDim(p->cd, p->xd, p->wd, &on, &ok, &op_, &oq) != CUDNN_STATUS_SUCCESS)
        return 0;
    return on == n && ok == k && op_ == pp && oq == q;
}

/* The plan of op's shape, built on first sight; NULL only when out of host memory. */
static conv_plan *plan_of(cu_device *d, const pt_op *op)
{
    const pt_conv_key key = pt_conv_key_of(op, d->deterministic, d->tf32);
    conv_plan *p = pt_algo_cache_find(&d->convs, &key);
    if (p) return p;
    p = calloc(1, sizeof *p);
    if (!p) return NULL;
    if (pt_kconv_empty(op)) {
        snprintf(p->why, sizeof p->why, "an empty extent: nothing to multiply");
    } else if (!make_descriptors(d, op, p)) {
        snprintf(p->why, sizeof p->why, "cuDNN refuses the descriptors");
    } else if (!choose_heuristic(d, op->kind, p)) {
        snprintf(p->why, sizeof p->why, "no cuDNN algorithm fits the numeric mode and workspace cap");
    } else {
        p->use_cudnn = 1;
        p->tuned = !d->conv_benchmark;
        cudnnSetConvolutionMathType(p->cd, p->math);
    }
    if (!p->use_cudnn) {
        const pt_kdev k = cu_kdev(d);
        p->ws = pt_kops_workspace(&k, op);
    }
    if (pt_algo_cache_insert(&d->convs, &key, p) != 0) {
        plan_free(p, NULL);
        return NULL;
    }
    return p;
}

size_t cu_conv_workspace(cu_device *d, const pt_op *op)
{
    conv_plan *p = plan_of(d, op);
    const pt_kdev k = cu_kdev(d);
    return p ? p->ws : pt_kops_workspace(&k, op);
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

pt_status cu_op_conv2d(cu_device *d, const pt_op *op, pt_error *err)
{
    conv_plan *p = plan_of(d, op);
    if (!p) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    if (op->workspace_bytes < p->ws)
        return pt_fail(err, PT_ERR_INVALID, "cuda %s: needs a workspace of %zu bytes (ask workspace_size), got %zu",
                       pt_op_name(op->kind), p->ws, op->workspace_bytes);
    if (p->use_cudnn) return run_cudnn(d, op, p, err);
    /* empty extents (the zero fills) and the shapes cuDNN refuses: the shared im2col path */
    const pt_kdev k = cu_kdev(d);
    return pt_kops_run(&k, op, err);
}
