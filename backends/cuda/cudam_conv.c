/* 2-D convolution on the cuda module: cuDNN (forward, backward-data, backward-filter) with a
 * plan per shape key and math mode in the device's plan cache (cuda_algo_cache.h).
 * workspace_size builds the plan: descriptors, cuDNN's heuristic ranking filtered by the
 * numeric mode and a workspace big enough for the best few candidates. The modes (op->math):
 * fp32 pins the descriptor to CUDNN_FMA_MATH (plain float32 FMA kernels); tf32 lets cuDNN use
 * TF32 tensor cores on the float32 tensors; bf16 and fp16 run cuDNN on 16-bit copies in the
 * workspace (x, w, dy converted with the TO_LOWP kernel; cuDNN's legacy API wants y in the
 * same type, so the output lands there too and FROM_LOWP brings it back to float32, adding
 * to it when the op accumulates) with float32 compute and CUDNN_TENSOR_OP_MATH. No mode takes
 * an algorithm that would convert to a narrower type than the mode's; a deterministic device
 * takes only CUDNN_DETERMINISTIC algorithms. The first run of a shape whose output may be
 * overwritten (not accumulating in fp32/tf32; always in bf16/fp16, whose output is scratch)
 * then measures those candidates with cudnnFind*Ex inside the algorithms' part of the
 * workspace and keeps the fastest (PT_CUDA_CONV_BENCHMARK=0: keep the heuristic's first).
 * Once the chosen algorithm has run, the plan asks only for its scratch (settled), so the
 * replica's workspace, re-fitted between steps, is what the chosen algorithms need.
 * Shapes cuDNN refuses in a mode, and empty ones, run the shared layer's im2col path with
 * cuBLAS (backends/kernels/kernel_ops.c, its 16-bit GEMM in bf16/fp16), as the opencl backend
 * computes them. Scratch is always the op's workspace.
 * Channels last (pt_conv_nhwc): in bf16/fp16, when x or y is stored NHWC, the plan's
 * descriptors are NHWC (the filter [K,R,S,C]) and every copy is made in that order: the RELAYOUT
 * kernel converts and transposes in one pass (a float32 NCHW input, the filter, and back into a
 * float32 NCHW output or filter gradient, added to where the op accumulates); a 16-bit NHWC
 * activation goes to cuDNN as it is. fp32 and tf32 keep NCHW plans: their NHWC operands come as
 * NCHW copies (kernel_act16.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cuda/cudam_internal.h"

#define CU_CONV_CANDIDATES 4

typedef struct conv_plan {
    int use_cudnn;
    pt_precision mode; /* the op's math mode (part of the key) */
    int nhwc;          /* pt_conv_nhwc: NHWC descriptors and copies (part of the key) */
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
    size_t algo_region; /* bytes at the workspace's start for cuDNN's algorithms */
    /* bf16/fp16: byte offsets of the 16-bit x, w and y (dx, dw, dy) after algo_region */
    size_t x16_off, w16_off, y16_off;
    size_t ws;      /* what workspace_size reports (room for the candidates, the 16-bit copies;
                     * once settled, the chosen algorithm's and the copies) */
    int tuned;
    int settled;    /* the chosen algorithm has run: the layout is cut down to it */
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
static int acceptable(const cu_device *d, pt_precision mode, cudnnStatus_t st, cudnnDeterminism_t det,
                      cudnnMathType_t math, size_t mem)
{
    if (st != CUDNN_STATUS_SUCCESS || mem > d->ws_cap) return 0;
    if (d->deterministic && det != CUDNN_DETERMINISTIC) return 0;
    /* fp32: the descriptor is pinned to CUDNN_FMA_MATH (see math_for): an algorithm listed
     * for tensor-op math only would not honour it */
    if (mode == PT_PREC_FP32) return math == CUDNN_FMA_MATH || math == CUDNN_DEFAULT_MATH;
    /* tf32, bf16, fp16: tensor cores, but never a conversion of the tensors to a narrower
     * type than the mode's (float32 data to half) */
    return math != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
}

/* The math type a chosen algorithm runs with: plain fp32 FMA in fp32, as listed otherwise. */
static cudnnMathType_t math_for(pt_precision mode, cudnnMathType_t listed)
{
    return mode == PT_PREC_FP32 ? CUDNN_FMA_MATH : listed;
}

/* The descriptor's math type before an algorithm is chosen (what the heuristics rank for). */
static cudnnMathType_t math_of_mode(pt_precision mode)
{
    switch (mode) {
    case PT_PREC_FP32: return CUDNN_FMA_MATH;
    case PT_PREC_TF32: return CUDNN_DEFAULT_MATH; /* float32 tensors: TF32 tensor cores allowed */
    default: return CUDNN_TENSOR_OP_MATH;
    }
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
            if (!acceptable(d, p->mode, perf[i].status, perf[i].determinism, perf[i].mathType, perf[i].memory))
                continue;
            p->cand_algo[found] = (int)perf[i].algo;
            p->cand_math[found] = math_for(p->mode, perf[i].mathType);
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
            if (!acceptable(d, p->mode, perf[i].status, perf[i].determinism, perf[i].mathType, perf[i].memory))
                continue;
            p->cand_algo[found] = (int)perf[i].algo;
            p->cand_math[found] = math_for(p->mode, perf[i].mathType);
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
            if (!acceptable(d, p->mode, perf[i].status, perf[i].determinism, perf[i].mathType, perf[i].memory))
                continue;
            p->cand_algo[found] = (int)perf[i].algo;
            p->cand_math[found] = math_for(p->mode, perf[i].mathType);
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

/* The workspace layout for an algorithms' part of `region` bytes: the 16-bit copies after it
 * (bf16/fp16), each on a 256-byte boundary, but none of an operand cuDNN takes where it is
 * stored (pt_conv_direct), and the total. */
static void lay_out(conv_plan *p, const pt_op *op, size_t region)
{
    p->algo_region = region;
    p->ws = region;
    if (pt_kops_lowp(p->mode)) {
        const unsigned direct = pt_conv_direct(op);
        p->x16_off = p->algo_region;
        p->w16_off = p->x16_off + (direct & 1u ? 0 : pt_kops_lowp_bytes((size_t)pt_tensor_numel(&op->t[0])));
        p->y16_off = p->w16_off + pt_kops_lowp_bytes((size_t)pt_tensor_numel(&op->t[1]));
        p->ws = p->y16_off + (direct & 4u ? 0 : pt_kops_lowp_bytes((size_t)pt_tensor_numel(&op->t[2])));
    }
}

/* The shape of op as cuDNN's 4-D descriptors: x [n,c,h,w], w [k,c,r,s], y [n,k,p,q], in the
 * data type of the plan's mode (float32, or bfloat16/half with float32 compute), in the plan's
 * memory order (NCHW, or NHWC with the filter KRSC). */
static int make_descriptors(const pt_op *op, conv_plan *p)
{
    const pt_tensor *x = &op->t[0], *w = &op->t[1], *y = &op->t[2];
    const int n = (int)x->dim[0], c = (int)x->dim[1], h = (int)x->dim[2], wx = (int)x->dim[3];
    const int k = (int)w->dim[0], r = (int)w->dim[2], s = (int)w->dim[3], pp = (int)y->dim[2], q = (int)y->dim[3];
    const int stride = op->p.conv.stride, pad = op->p.conv.pad;
    const cudnnDataType_t t = p->mode == PT_PREC_BF16   ? CUDNN_DATA_BFLOAT16
                              : p->mode == PT_PREC_FP16 ? CUDNN_DATA_HALF
                                                        : CUDNN_DATA_FLOAT;
    if (cudnnCreateTensorDescriptor(&p->xd) != CUDNN_STATUS_SUCCESS ||
        cudnnCreateTensorDescriptor(&p->yd) != CUDNN_STATUS_SUCCESS ||
        cudnnCreateFilterDescriptor(&p->wd) != CUDNN_STATUS_SUCCESS ||
        cudnnCreateConvolutionDescriptor(&p->cd) != CUDNN_STATUS_SUCCESS)
        return 0;
    const cudnnTensorFormat_t f = p->nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
    if (cudnnSetTensor4dDescriptor(p->xd, f, t, n, c, h, wx) != CUDNN_STATUS_SUCCESS ||
        cudnnSetTensor4dDescriptor(p->yd, f, t, n, k, pp, q) != CUDNN_STATUS_SUCCESS ||
        cudnnSetFilter4dDescriptor(p->wd, t, f, k, c, r, s) != CUDNN_STATUS_SUCCESS ||
        cudnnSetConvolution2dDescriptor(p->cd, pad, pad, stride, stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                        CUDNN_DATA_FLOAT) != CUDNN_STATUS_SUCCESS ||
        cudnnSetConvolutionMathType(p->cd, math_of_mode(p->mode)) != CUDNN_STATUS_SUCCESS)
        return 0;
    int on = 0, ok = 0, op_ = 0, oq = 0;
    if (cudnnGetConvolution2dForwardOutputDim(p->cd, p->xd, p->wd, &on, &ok, &op_, &oq) != CUDNN_STATUS_SUCCESS)
        return 0;
    return on == n && ok == k && op_ == pp && oq == q;
}

/* The plan of op's shape and math mode, built on first sight; NULL only when out of host
 * memory. */
static conv_plan *plan_of(cu_device *d, const pt_op *op)
{
    const pt_conv_key key = pt_conv_key_of(op, d->deterministic);
    conv_plan *p = pt_algo_cache_find(&d->convs, &key);
    if (p) return p;
    p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->mode = op->math;
    p->nhwc = pt_conv_nhwc(op);
    if (pt_kconv_empty(op)) {
        snprintf(p->why, sizeof p->why, "an empty extent: nothing to multiply");
    } else if (!make_descriptors(op, p)) {
        snprintf(p->why, sizeof p->why, "cuDNN refuses the descriptors (math=%s)", pt_precision_name(p->mode));
    } else if (!choose_heuristic(d, op->kind, p)) {
        snprintf(p->why, sizeof p->why, "no cuDNN algorithm fits the numeric mode (math=%s) and workspace cap",
                 pt_precision_name(p->mode));
    } else {
        p->use_cudnn = 1;
        p->tuned = !d->conv_benchmark;
        cudnnSetConvolutionMathType(p->cd, p->math);
        /* room for every candidate until one is chosen and has run */
        lay_out(p, op, p->ws);
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

/* The tensors cuDNN reads and writes for one run: the op's own (fp32, tf32) or the 16-bit
 * copies in the workspace (bf16, fp16), and the algorithms' scratch. */
typedef struct conv_io {
    void *x, *w, *y;
    void *ws;
    size_t ws_bytes; /* what an algorithm may use (Find*Ex) */
    float beta;
} conv_io;

/* The fastest acceptable algorithm within the algorithms' scratch, measured on the run's own
 * buffers (the output is overwritten: only runs whose output may be are measured). */
static pt_status tune(cu_device *d, const pt_op *op, conv_plan *p, const conv_io *io, pt_error *err)
{
    void *ws = io->ws_bytes ? io->ws : NULL;
    const size_t wsb = io->ws_bytes;
    int n = 0;
    p->tuned = 1;
    if (op->kind == PT_OP_CONV2D_FWD) {
        cudnnConvolutionFwdAlgoPerf_t perf[CU_MAX_ALGOS];
        CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(d->cudnn, p->xd, io->x, p->wd, io->w, p->cd, p->yd, io->y,
                                                           CU_MAX_ALGOS, &n, perf, ws, wsb),
                    err);
        for (int i = 0; i < n; i++)
            if (acceptable(d, p->mode, perf[i].status, perf[i].determinism, perf[i].mathType, perf[i].memory) &&
                perf[i].memory <= wsb) {
                p->algo = (int)perf[i].algo;
                p->math = math_for(p->mode, perf[i].mathType);
                p->algo_ws = perf[i].memory;
                break;
            }
    } else if (op->kind == PT_OP_CONV2D_BWD_DATA) {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CU_MAX_ALGOS];
        CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(d->cudnn, p->wd, io->w, p->yd, io->y, p->cd, p->xd,
                                                                io->x, CU_MAX_ALGOS, &n, perf, ws, wsb),
                    err);
        for (int i = 0; i < n; i++)
            if (acceptable(d, p->mode, perf[i].status, perf[i].determinism, perf[i].mathType, perf[i].memory) &&
                perf[i].memory <= wsb) {
                p->algo = (int)perf[i].algo;
                p->math = math_for(p->mode, perf[i].mathType);
                p->algo_ws = perf[i].memory;
                break;
            }
    } else {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[CU_MAX_ALGOS];
        CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(d->cudnn, p->xd, io->x, p->yd, io->y, p->cd, p->wd,
                                                                  io->w, CU_MAX_ALGOS, &n, perf, ws, wsb),
                    err);
        for (int i = 0; i < n; i++)
            if (acceptable(d, p->mode, perf[i].status, perf[i].determinism, perf[i].mathType, perf[i].memory) &&
                perf[i].memory <= wsb) {
                p->algo = (int)perf[i].algo;
                p->math = math_for(p->mode, perf[i].mathType);
                p->algo_ws = perf[i].memory;
                break;
            }
    }
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, p->math), err);
    return PT_OK;
}

static cudnnStatus_t conv_call(cu_device *d, const pt_op *op, const conv_plan *p, const conv_io *io)
{
    const float one = 1.0f, beta = io->beta;
    void *ws = p->algo_ws ? io->ws : NULL;
    if (op->kind == PT_OP_CONV2D_FWD)
        return cudnnConvolutionForward(d->cudnn, &one, p->xd, io->x, p->wd, io->w, p->cd,
                                       (cudnnConvolutionFwdAlgo_t)p->algo, ws, p->algo_ws, &beta, p->yd, io->y);
    if (op->kind == PT_OP_CONV2D_BWD_DATA)
        return cudnnConvolutionBackwardData(d->cudnn, &one, p->wd, io->w, p->yd, io->y, p->cd,
                                            (cudnnConvolutionBwdDataAlgo_t)p->algo, ws, p->algo_ws, &beta, p->xd,
                                            io->x);
    return cudnnConvolutionBackwardFilter(d->cudnn, &one, p->xd, io->x, p->yd, io->y, p->cd,
                                          (cudnnConvolutionBwdFilterAlgo_t)p->algo, ws, p->algo_ws, &beta, p->wd,
                                          io->w);
}

static pt_mem ws_at(const pt_op *op, size_t off)
{
    pt_mem m = op->workspace;
    m.off += off;
    return m;
}

/* Whether operand i of op lies in memory in another order than the plan's copies: an image in
 * the other layout, or the filter of an NHWC plan (KCRS against KRSC). */
static int moves(const pt_op *op, const conv_plan *p, int i)
{
    return i == 1 ? p->nhwc : pt_tensor_nhwc(&op->t[i]) != p->nhwc;
}

/* Operand i (float32) into its 16-bit copy m16 (to16), or the copy back into it, added to
 * where the op accumulates; transposed where it moves. */
static pt_status convert(cu_device *d, const pt_op *op, const conv_plan *p, int i, pt_mem m16, int to16,
                         pt_error *err)
{
    const pt_kdev k = cu_kdev(d);
    const pt_tensor *t = &op->t[i];
    const size_t n = (size_t)pt_tensor_numel(t);
    if (!moves(op, p, i))
        return to16 ? pt_kops_to_lowp(&k, p->mode, t->mem, m16, n, err)
                    : pt_kops_from_lowp(&k, p->mode, m16, t->mem, n, 1.0f, op->accumulate, err);
    const pt_dtype dt16 = p->mode == PT_PREC_BF16 ? PT_BF16 : PT_F16;
    /* the plan's order is NHWC (an NCHW plan has no NHWC operand): NCHW into it, or out of it */
    const int64_t hw = t->dim[2] * t->dim[3];
    return to16 ? pt_kops_relayout(&k, t->mem, PT_F32, m16, dt16, 1, t->dim[0], t->dim[1], hw, 0, err)
                : pt_kops_relayout(&k, m16, dt16, t->mem, PT_F32, 0, t->dim[0], t->dim[1], hw, op->accumulate, err);
}

/* bf16/fp16: the direction's two inputs into their 16-bit copies (fwd x, w; bwd_data w, dy;
 * bwd_filter x, dy), but for an activation stored in 16 bits in the plan's order; cuDNN then
 * writes the third (the copy, or the stored 16-bit y itself), its output. */
static pt_status convert_inputs(cu_device *d, const pt_op *op, const conv_plan *p, pt_error *err)
{
    const pt_mem m16[3] = {ws_at(op, p->x16_off), ws_at(op, p->w16_off), ws_at(op, p->y16_off)};
    const int out = op->kind == PT_OP_CONV2D_FWD ? 2 : op->kind == PT_OP_CONV2D_BWD_DATA ? 0 : 1;
    const unsigned direct = pt_conv_direct(op);
    for (int i = 0; i < 3; i++)
        if (i != out && !((direct >> i) & 1u)) PT_TRY(convert(d, op, p, i, m16[i], 1, err));
    return PT_OK;
}

/* bf16/fp16: the 16-bit output back into the op's float32 output, added when accumulating. */
static pt_status convert_output(cu_device *d, const pt_op *op, const conv_plan *p, pt_error *err)
{
    const int out = op->kind == PT_OP_CONV2D_FWD ? 2 : op->kind == PT_OP_CONV2D_BWD_DATA ? 0 : 1;
    if ((pt_conv_direct(op) >> out) & 1u) return PT_OK; /* cuDNN wrote the stored 16-bit y */
    const size_t off = out == 0 ? p->x16_off : out == 1 ? p->w16_off : p->y16_off;
    return convert(d, op, p, out, ws_at(op, off), 0, err);
}

static pt_status run_cudnn(cu_device *d, const pt_op *op, conv_plan *p, pt_error *err)
{
    const int lowp = pt_kops_lowp(p->mode);
    conv_io io;
    if (lowp) {
        const unsigned direct = pt_conv_direct(op);
        PT_TRY(convert_inputs(d, op, p, err));
        io.x = cu_ptr(direct & 1u ? op->t[0].mem : ws_at(op, p->x16_off));
        io.w = cu_ptr(ws_at(op, p->w16_off));
        io.y = cu_ptr(direct & 4u ? op->t[2].mem : ws_at(op, p->y16_off));
        io.ws_bytes = p->algo_region; /* the 16-bit copies follow: never the algorithms' */
        io.beta = 0.0f;               /* into scratch; accumulate is convert_output's */
    } else {
        io.x = cu_f32(op->t[0].mem);
        io.w = cu_f32(op->t[1].mem);
        io.y = cu_f32(op->t[2].mem);
        io.ws_bytes = op->workspace_bytes;
        io.beta = op->accumulate ? 1.0f : 0.0f;
    }
    io.ws = op->workspace_bytes ? cu_ptr(op->workspace) : NULL;
    if (!p->tuned && (lowp || !op->accumulate)) {
        /* measuring is an optimisation: if cuDNN cannot, the heuristic's choice stands */
        pt_error ignore;
        if (tune(d, op, p, &io, &ignore) != PT_OK) cudnnSetConvolutionMathType(p->cd, p->math);
    }
    cudnnStatus_t st = conv_call(d, op, p, &io);
    /* an algorithm cuDNN listed but refuses for this math type: the next candidate that fits
     * the algorithms' part as it is now */
    while (st == CUDNN_STATUS_NOT_SUPPORTED && p->next_cand < p->ncand) {
        const int c = p->next_cand++;
        if (p->cand_ws[c] > io.ws_bytes) continue;
        p->algo = p->cand_algo[c];
        p->math = p->cand_math[c];
        p->algo_ws = p->cand_ws[c];
        CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, p->math), err);
        st = conv_call(d, op, p, &io);
    }
    if (st == CUDNN_STATUS_NOT_SUPPORTED) {
        /* every candidate refused at run time: the shared im2col path, when the workspace
         * (sized for cuDNN) also holds its scratch; from then on for this shape and mode */
        const pt_kdev k = cu_kdev(d);
        if (op->workspace_bytes >= pt_kops_workspace(&k, op)) {
            p->use_cudnn = 0;
            p->ws = pt_kops_workspace(&k, op); /* what the next fit sizes it for */
            snprintf(p->why, sizeof p->why, "cuDNN refused every candidate at run time (math=%s)",
                     pt_precision_name(p->mode));
            return pt_kops_run(&k, op, err);
        }
    }
    if (st != CUDNN_STATUS_SUCCESS) {
        char key[200];
        pt_conv_key k = pt_conv_key_of(op, d->deterministic);
        pt_conv_key_format(&k, key, sizeof key);
        cu_fail_cudnn(err, st, "cudnnConvolution (forward/backward)", __FILE__, __LINE__);
        return pt_error_wrap(err, "%s, algorithm %d, workspace %zu", key, p->algo, p->algo_ws);
    }
    if (lowp) PT_TRY(convert_output(d, op, p, err));
    if (p->tuned && !p->settled) {
        /* the algorithm is chosen and runs: from now on workspace_size asks only for its
         * scratch (and the copies), which pt_replica_fit_workspace turns into a smaller arena;
         * ops keep the larger workspace they were given until then */
        p->settled = 1;
        lay_out(p, op, (p->algo_ws + 255) / 256 * 256);
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
