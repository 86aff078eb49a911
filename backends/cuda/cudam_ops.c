/* The non-GEMM, non-convolution ops of the cuda module: argument lists and launch sizes for
 * the shared kernels of backends/kernels/ops.cl (the same lists as the opencl backend's, so
 * both run the same arithmetic). Elementwise kernels run 256-thread blocks over the
 * elements; per-channel reductions run one block of PT_CUDA_RED_WG threads per channel
 * (the kernels' PT_RED_WG, 256 in dialect_cuda.h). GEMM is cuBLAS (plain fp32 unless TF32 is
 * asked for with PT_CUDA_TF32=1). */
#include <math.h>

#include "backends/cuda/cudam_internal.h"
#include "core/rng.h"

#define PT_CUDA_RED_WG 256

/* [N,C] or [N,C,H,W] as N x C planes of `inner` elements. */
static void channel_layout(const pt_tensor *t, int *n, int *c, int *inner)
{
    *n = (int)t->dim[0];
    *c = t->ndim > 1 ? (int)t->dim[1] : 1;
    int64_t in = 1;
    for (int i = 2; i < t->ndim; i++) in *= t->dim[i];
    *inner = (int)in;
}

static int numel(const pt_tensor *t)
{
    return (int)pt_tensor_numel(t); /* run() checked it fits */
}

pt_status cu_op_elementwise(cu_device *d, const pt_op *op, pt_error *err)
{
    const pt_tensor *t = op->t;
    cu_launch l;
    size_t global = 0;
    switch (op->kind) {
    case PT_OP_FILL:
        cu_kernel(&l, d, CU_K_FILL);
        kl_tensor(&l, &t[0]);
        kl_int(&l, numel(&t[0]));
        kl_float(&l, op->p.fill.value);
        global = (size_t)numel(&t[0]);
        break;
    case PT_OP_AXPY:
        cu_kernel(&l, d, CU_K_AXPY);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_int(&l, numel(&t[1]));
        kl_float(&l, op->p.axpy.alpha);
        kl_int(&l, op->accumulate);
        global = (size_t)numel(&t[1]);
        break;
    case PT_OP_ADD:
        cu_kernel(&l, d, CU_K_ADD);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_tensor(&l, &t[2]);
        kl_int(&l, numel(&t[2]));
        global = (size_t)numel(&t[2]);
        break;
    case PT_OP_BIAS_ADD: {
        int n, c, inner;
        channel_layout(&t[0], &n, &c, &inner);
        cu_kernel(&l, d, CU_K_BIAS_ADD);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_int(&l, numel(&t[0]));
        kl_int(&l, c);
        kl_int(&l, inner);
        global = (size_t)numel(&t[0]);
        break;
    }
    case PT_OP_BN_FWD_EVAL: {
        int n, c, inner;
        channel_layout(&t[0], &n, &c, &inner);
        cu_kernel(&l, d, CU_K_BN_FWD_EVAL);
        for (int i = 0; i < 6; i++) kl_tensor(&l, &t[i]);
        kl_int(&l, numel(&t[0]));
        kl_int(&l, c);
        kl_int(&l, inner);
        kl_float(&l, op->p.bn.eps);
        global = (size_t)numel(&t[0]);
        break;
    }
    case PT_OP_BN_SYNC_BWD: {
        int n, c, inner;
        channel_layout(&t[0], &n, &c, &inner);
        if (op->p.bn.count <= 0) return PT_OK; /* no elements: nothing to write */
        cu_kernel(&l, d, CU_K_BN_SYNC_BWD);
        for (int i = 0; i < 6; i++) kl_tensor(&l, &t[i]);
        kl_int(&l, numel(&t[0]));
        kl_int(&l, c);
        kl_int(&l, inner > 0 ? inner : 1);
        kl_float(&l, (float)op->p.bn.count);
        kl_int(&l, op->accumulate);
        global = (size_t)numel(&t[0]);
        break;
    }
    case PT_OP_RELU_FWD:
        cu_kernel(&l, d, CU_K_RELU_FWD);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_int(&l, numel(&t[0]));
        global = (size_t)numel(&t[0]);
        break;
    case PT_OP_RELU_BWD:
        cu_kernel(&l, d, CU_K_RELU_BWD);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_tensor(&l, &t[2]);
        kl_int(&l, numel(&t[2]));
        kl_int(&l, op->accumulate);
        global = (size_t)numel(&t[2]);
        break;
    case PT_OP_MAXPOOL_FWD:
    case PT_OP_MAXPOOL_BWD: {
        const int fwd = op->kind == PT_OP_MAXPOOL_FWD;
        const pt_tensor *x = fwd ? &t[0] : &t[2], *y = fwd ? &t[1] : &t[0];
        cu_kernel(&l, d, fwd ? CU_K_MAXPOOL_FWD : CU_K_MAXPOOL_BWD);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_tensor(&l, &t[2]);
        const int n = fwd ? numel(y) : numel(x);
        kl_int(&l, n);
        kl_int(&l, (int)x->dim[2]);
        kl_int(&l, (int)x->dim[3]);
        kl_int(&l, (int)y->dim[2]);
        kl_int(&l, (int)y->dim[3]);
        kl_int(&l, op->p.pool.k);
        kl_int(&l, op->p.pool.stride);
        kl_int(&l, op->p.pool.pad);
        if (!fwd) kl_int(&l, op->accumulate);
        if (op->p.pool.k < 1 || op->p.pool.stride < 1 || op->p.pool.pad < 0)
            return pt_fail(err, PT_ERR_INVALID, "cuda %s: window %d, stride %d, padding %d", pt_op_name(op->kind),
                           op->p.pool.k, op->p.pool.stride, op->p.pool.pad);
        global = (size_t)n;
        break;
    }
    case PT_OP_GAP_FWD: {
        const int planes = (int)(t[0].dim[0] * t[0].dim[1]), hw = (int)(t[0].dim[2] * t[0].dim[3]);
        cu_kernel(&l, d, CU_K_GAP_FWD);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_int(&l, planes);
        kl_int(&l, hw);
        kl_float(&l, hw > 0 ? (float)(1.0 / (double)hw) : 0.0f);
        global = (size_t)planes;
        break;
    }
    case PT_OP_GAP_BWD: {
        const int hw = (int)(t[1].dim[2] * t[1].dim[3]);
        cu_kernel(&l, d, CU_K_GAP_BWD);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_int(&l, numel(&t[1]));
        kl_int(&l, hw);
        kl_float(&l, hw > 0 ? (float)(1.0 / (double)hw) : 0.0f);
        kl_int(&l, op->accumulate);
        global = hw > 0 ? (size_t)numel(&t[1]) : 0;
        break;
    }
    case PT_OP_DROPOUT_FWD: {
        const int n = (int)t[0].dim[0];
        const int per = n > 0 ? numel(&t[0]) / n : 0;
        const float p = op->p.dropout.p;
        cu_kernel(&l, d, CU_K_DROPOUT_FWD);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_tensor(&l, &t[2]);
        kl_int(&l, numel(&t[0]));
        kl_int(&l, per);
        kl_float(&l, p);
        kl_float(&l, p < 1.0f ? 1.0f / (1.0f - p) : 0.0f);
        kl_ulong(&l, op->p.dropout.seed);
        kl_uint(&l, PT_RNG_DROPOUT);
        kl_ulong(&l, op->p.dropout.stream);
        kl_long(&l, op->p.dropout.sample_base);
        global = per > 0 ? (size_t)numel(&t[0]) : 0;
        break;
    }
    case PT_OP_DROPOUT_BWD:
        cu_kernel(&l, d, CU_K_MUL_ACC);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_tensor(&l, &t[2]);
        kl_int(&l, numel(&t[2]));
        kl_int(&l, op->accumulate);
        global = (size_t)numel(&t[2]);
        break;
    case PT_OP_XENT: {
        const int has_grad = t[3].ndim > 0, mixed = op->nt == 6;
        cu_kernel(&l, d, mixed ? CU_K_XENT_MIX : CU_K_XENT);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        if (mixed) {
            kl_tensor(&l, &t[4]);
            kl_tensor(&l, &t[5]);
        }
        kl_tensor(&l, &t[2]);
        /* without a gradient, any valid buffer stands in for the unused argument */
        kl_mem(&l, has_grad ? t[3].mem : t[2].mem);
        kl_int(&l, (int)t[0].dim[0]);
        kl_int(&l, (int)t[0].dim[1]);
        kl_int(&l, has_grad);
        kl_float(&l, op->p.xent.smoothing);
        kl_float(&l, op->p.xent.grad_scale);
        global = (size_t)t[0].dim[0];
        break;
    }
    case PT_OP_SGD:
        cu_kernel(&l, d, CU_K_SGD);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        /* with momentum 0 the buffer is never touched: the parameter stands in for it */
        kl_mem(&l, op->p.sgd.momentum != 0.0f ? t[2].mem : t[0].mem);
        kl_int(&l, numel(&t[0]));
        kl_float(&l, op->p.sgd.lr);
        kl_float(&l, op->p.sgd.momentum);
        kl_float(&l, op->p.sgd.dampening);
        kl_float(&l, op->p.sgd.weight_decay);
        kl_int(&l, op->p.sgd.nesterov);
        kl_int(&l, op->p.sgd.first_step);
        global = (size_t)numel(&t[0]);
        break;
    case PT_OP_ADAM: {
        if (op->p.adam.step < 1)
            return pt_fail(err, PT_ERR_INVALID, "cuda adam: step is %lld, expected 1 or more",
                           (long long)op->p.adam.step);
        /* the cpu backend's host-side constants, in double, term for term */
        const float lr = op->p.adam.lr, wd = op->p.adam.weight_decay;
        const double bc1 = 1.0 - pow((double)op->p.adam.beta1, (double)op->p.adam.step);
        const double bc2 = 1.0 - pow((double)op->p.adam.beta2, (double)op->p.adam.step);
        cu_kernel(&l, d, CU_K_ADAM);
        for (int i = 0; i < 4; i++) kl_tensor(&l, &t[i]);
        kl_int(&l, numel(&t[0]));
        kl_float(&l, op->p.adam.beta1);
        kl_float(&l, op->p.adam.beta2);
        kl_float(&l, op->p.adam.eps);
        kl_float(&l, (float)(lr / bc1));
        kl_float(&l, (float)sqrt(bc2));
        kl_float(&l, op->p.adam.decoupled ? 1.0f - lr * wd : 1.0f);
        kl_float(&l, op->p.adam.decoupled ? 0.0f : wd);
        global = (size_t)numel(&t[0]);
        break;
    }
    case PT_OP_RMSPROP: {
        const float mom = op->p.rmsprop.momentum;
        const int centered = op->p.rmsprop.centered;
        cu_kernel(&l, d, CU_K_RMSPROP);
        for (int i = 0; i < 3; i++) kl_tensor(&l, &t[i]);
        /* unused state (momentum 0, not centered): the parameter stands in, never touched */
        kl_tensor(&l, mom != 0.0f ? &t[3] : &t[0]);
        kl_tensor(&l, centered ? &t[4] : &t[0]);
        kl_int(&l, numel(&t[0]));
        kl_float(&l, op->p.rmsprop.lr);
        kl_float(&l, op->p.rmsprop.alpha);
        kl_float(&l, (float)(1.0 - (double)op->p.rmsprop.alpha));
        kl_float(&l, op->p.rmsprop.eps);
        kl_float(&l, op->p.rmsprop.weight_decay);
        kl_float(&l, mom);
        kl_int(&l, centered);
        global = (size_t)numel(&t[0]);
        break;
    }
    default:
        return pt_fail(err, PT_ERR_UNSUPPORTED, "cuda backend: no elementwise kernel for %s", pt_op_name(op->kind));
    }
    return kl_run(&l, global, 0, err);
}

pt_status cu_op_channel(cu_device *d, const pt_op *op, pt_error *err)
{
    const pt_tensor *t = op->t;
    int n, c, inner;
    channel_layout(&t[0], &n, &c, &inner);
    /* an empty spatial extent means no elements: N = 0 tells the kernel the same */
    const int rows = inner > 0 ? n : 0;
    if (inner == 0) inner = 1;
    cu_launch l;
    switch (op->kind) {
    case PT_OP_BIAS_GRAD:
        cu_kernel(&l, d, CU_K_BIAS_GRAD);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_int(&l, rows);
        kl_int(&l, c);
        kl_int(&l, inner);
        kl_int(&l, op->accumulate);
        break;
    case PT_OP_BN_FWD_TRAIN:
        cu_kernel(&l, d, CU_K_BN_FWD_TRAIN);
        for (int i = 0; i < 8; i++) kl_tensor(&l, &t[i]);
        kl_int(&l, rows);
        kl_int(&l, c);
        kl_int(&l, inner);
        kl_float(&l, op->p.bn.eps);
        kl_float(&l, op->p.bn.momentum);
        break;
    case PT_OP_BN_BWD:
        cu_kernel(&l, d, CU_K_BN_BWD);
        for (int i = 0; i < 8; i++) kl_tensor(&l, &t[i]);
        kl_int(&l, rows);
        kl_int(&l, c);
        kl_int(&l, inner);
        kl_int(&l, op->accumulate);
        break;
    case PT_OP_BN_SYNC_STATS:
        cu_kernel(&l, d, CU_K_BN_SYNC_STATS);
        for (int i = 0; i < 3; i++) kl_tensor(&l, &t[i]);
        kl_int(&l, rows);
        kl_int(&l, c);
        kl_int(&l, inner);
        break;
    case PT_OP_BN_SYNC_FWD:
        cu_kernel(&l, d, CU_K_BN_SYNC_FWD);
        for (int i = 0; i < 7; i++) kl_tensor(&l, &t[i]);
        kl_int(&l, rows);
        kl_int(&l, c);
        kl_int(&l, inner);
        kl_float(&l, (float)op->p.bn.count);
        kl_float(&l, op->p.bn.eps);
        kl_float(&l, op->p.bn.momentum);
        break;
    case PT_OP_BN_SYNC_BWD_STATS:
        cu_kernel(&l, d, CU_K_BN_SYNC_BWD_STATS);
        for (int i = 0; i < 6; i++) kl_tensor(&l, &t[i]);
        kl_int(&l, rows);
        kl_int(&l, c);
        kl_int(&l, inner);
        break;
    default:
        return pt_fail(err, PT_ERR_UNSUPPORTED, "cuda backend: no reduction kernel for %s", pt_op_name(op->kind));
    }
    return kl_run_groups(&l, (size_t)c, PT_CUDA_RED_WG, err);
}

/* Row-major C = alpha*op(A)*op(B) + beta*C through column-major cuBLAS: C^T = op(B)^T op(A)^T. */
pt_status cu_sgemm_rowmajor(cu_device *d, int ta, int tb, size_t m, size_t n, size_t k, float alpha, const float *a,
                            size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc, pt_error *err)
{
    if (m == 0 || n == 0) return PT_OK;
    CUBLAS_CHECK(cublasSgemm(d->cublas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)n, (int)m,
                             (int)k, &alpha, b, (int)ldb, a, (int)lda, &beta, c, (int)ldc),
                 err);
    return PT_OK;
}

pt_status cu_op_gemm(cu_device *d, const pt_op *op, pt_error *err)
{
    const pt_tensor *A = &op->t[0], *B = &op->t[1], *C = &op->t[2];
    const int ta = op->p.gemm.trans_a, tb = op->p.gemm.trans_b;
    const size_t m = (size_t)C->dim[0], n = (size_t)C->dim[1];
    const size_t k = (size_t)(ta ? A->dim[0] : A->dim[1]);
    const size_t am = (size_t)(ta ? A->dim[1] : A->dim[0]);
    const size_t bk = (size_t)(tb ? B->dim[1] : B->dim[0]), bn = (size_t)(tb ? B->dim[0] : B->dim[1]);
    if (am != m || bk != k || bn != n)
        return pt_fail(err, PT_ERR_INVALID, "cuda gemm: op(A) is %zux%zu, op(B) %zux%zu, C %zux%zu", am, k, bk, bn,
                       m, n);
    if (m == 0 || n == 0) return PT_OK;
    if (k == 0) {
        /* C = beta*C without reading C when beta is 0 (it may hold NaN) */
        cu_launch l;
        cu_kernel(&l, d, CU_K_SCALE);
        kl_tensor(&l, C);
        kl_int(&l, (int)(m * n));
        kl_float(&l, op->p.gemm.beta);
        return kl_run(&l, m * n, 0, err);
    }
    /* leading dimensions: a row-major matrix's row length; cuBLAS needs at least 1 */
    const size_t lda = A->dim[1] > 0 ? (size_t)A->dim[1] : 1, ldb = B->dim[1] > 0 ? (size_t)B->dim[1] : 1;
    return cu_sgemm_rowmajor(d, ta, tb, m, n, k, op->p.gemm.alpha, cu_f32(A->mem), lda, cu_f32(B->mem), ldb,
                             op->p.gemm.beta, cu_f32(C->mem), n, err);
}
