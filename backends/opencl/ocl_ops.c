/* The non-GEMM ops of the opencl backend: argument lists and launch sizes for the kernels of
 * backends/kernels/ops.cl. Elementwise kernels let the runtime pick the work-group size;
 * per-channel reductions run one work-group of d->red_wg items per channel. */
#include <math.h>

#include "backends/opencl/ocl_internal.h"
#include "core/rng.h"

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

pt_status ocl_op_elementwise(ocl_device *d, const pt_op *op, pt_error *err)
{
    const pt_tensor *t = op->t;
    ocl_launch l;
    size_t global = 0;
    switch (op->kind) {
    case PT_OP_FILL:
        l = ocl_kernel(d, OCL_K_FILL);
        kl_tensor(&l, &t[0]);
        kl_int(&l, numel(&t[0]));
        kl_float(&l, op->p.fill.value);
        global = (size_t)numel(&t[0]);
        break;
    case PT_OP_AXPY:
        l = ocl_kernel(d, OCL_K_AXPY);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_int(&l, numel(&t[1]));
        kl_float(&l, op->p.axpy.alpha);
        kl_int(&l, op->accumulate);
        global = (size_t)numel(&t[1]);
        break;
    case PT_OP_ADD:
        l = ocl_kernel(d, OCL_K_ADD);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_tensor(&l, &t[2]);
        kl_int(&l, numel(&t[2]));
        global = (size_t)numel(&t[2]);
        break;
    case PT_OP_BIAS_ADD: {
        int n, c, inner;
        channel_layout(&t[0], &n, &c, &inner);
        l = ocl_kernel(d, OCL_K_BIAS_ADD);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_int(&l, numel(&t[0]));
        kl_int(&l, c);
        kl_int(&l, inner);
        global = (size_t)numel(&t[0]);
        break;
    }
    case PT_OP_BN_SYNC_BWD: {
        int n, c, inner;
        channel_layout(&t[0], &n, &c, &inner);
        if (op->p.bn.count <= 0) return PT_OK; /* no elements: nothing to write */
        l = ocl_kernel(d, OCL_K_BN_SYNC_BWD);
        for (int i = 0; i < 6; i++) kl_tensor(&l, &t[i]);
        kl_int(&l, numel(&t[0]));
        kl_int(&l, c);
        kl_int(&l, inner > 0 ? inner : 1);
        kl_float(&l, (float)op->p.bn.count);
        kl_int(&l, op->accumulate);
        global = (size_t)numel(&t[0]);
        break;
    }
    case PT_OP_BN_FWD_EVAL: {
        int n, c, inner;
        channel_layout(&t[0], &n, &c, &inner);
        l = ocl_kernel(d, OCL_K_BN_FWD_EVAL);
        for (int i = 0; i < 6; i++) kl_tensor(&l, &t[i]);
        kl_int(&l, numel(&t[0]));
        kl_int(&l, c);
        kl_int(&l, inner);
        kl_float(&l, op->p.bn.eps);
        global = (size_t)numel(&t[0]);
        break;
    }
    case PT_OP_RELU_FWD:
        l = ocl_kernel(d, OCL_K_RELU_FWD);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_int(&l, numel(&t[0]));
        global = (size_t)numel(&t[0]);
        break;
    case PT_OP_RELU_BWD:
        l = ocl_kernel(d, OCL_K_RELU_BWD);
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
        l = ocl_kernel(d, fwd ? OCL_K_MAXPOOL_FWD : OCL_K_MAXPOOL_BWD);
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
            return pt_fail(err, PT_ERR_INVALID, "opencl %s: window %d, stride %d, padding %d", pt_op_name(op->kind),
                           op->p.pool.k, op->p.pool.stride, op->p.pool.pad);
        global = (size_t)n;
        break;
    }
    case PT_OP_GAP_FWD: {
        const int planes = (int)(t[0].dim[0] * t[0].dim[1]), hw = (int)(t[0].dim[2] * t[0].dim[3]);
        l = ocl_kernel(d, OCL_K_GAP_FWD);
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
        l = ocl_kernel(d, OCL_K_GAP_BWD);
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
        l = ocl_kernel(d, OCL_K_DROPOUT_FWD);
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
        l = ocl_kernel(d, OCL_K_MUL_ACC);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_tensor(&l, &t[2]);
        kl_int(&l, numel(&t[2]));
        kl_int(&l, op->accumulate);
        global = (size_t)numel(&t[2]);
        break;
    case PT_OP_XENT: {
        const int has_grad = t[3].ndim > 0;
        l = ocl_kernel(d, OCL_K_XENT);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
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
        l = ocl_kernel(d, OCL_K_SGD);
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
            return pt_fail(err, PT_ERR_INVALID, "opencl adam: step is %lld, expected 1 or more",
                           (long long)op->p.adam.step);
        /* the cpu backend's host-side constants, in double, term for term */
        const float lr = op->p.adam.lr, wd = op->p.adam.weight_decay;
        const double bc1 = 1.0 - pow((double)op->p.adam.beta1, (double)op->p.adam.step);
        const double bc2 = 1.0 - pow((double)op->p.adam.beta2, (double)op->p.adam.step);
        l = ocl_kernel(d, OCL_K_ADAM);
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
        l = ocl_kernel(d, OCL_K_RMSPROP);
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
        return pt_fail(err, PT_ERR_UNSUPPORTED, "opencl backend: no elementwise kernel for %s", pt_op_name(op->kind));
    }
    return kl_run(&l, global, 0, err);
}

pt_status ocl_op_channel(ocl_device *d, const pt_op *op, pt_error *err)
{
    const pt_tensor *t = op->t;
    int n, c, inner;
    channel_layout(&t[0], &n, &c, &inner);
    /* an empty spatial extent means no elements: N = 0 tells the kernel the same */
    const int rows = inner > 0 ? n : 0;
    if (inner == 0) inner = 1;
    ocl_launch l;
    switch (op->kind) {
    case PT_OP_BIAS_GRAD:
        l = ocl_kernel(d, OCL_K_BIAS_GRAD);
        kl_tensor(&l, &t[0]);
        kl_tensor(&l, &t[1]);
        kl_int(&l, rows);
        kl_int(&l, c);
        kl_int(&l, inner);
        kl_int(&l, op->accumulate);
        break;
    case PT_OP_BN_FWD_TRAIN:
        l = ocl_kernel(d, OCL_K_BN_FWD_TRAIN);
        for (int i = 0; i < 8; i++) kl_tensor(&l, &t[i]);
        kl_int(&l, rows);
        kl_int(&l, c);
        kl_int(&l, inner);
        kl_float(&l, op->p.bn.eps);
        kl_float(&l, op->p.bn.momentum);
        break;
    case PT_OP_BN_BWD:
        l = ocl_kernel(d, OCL_K_BN_BWD);
        for (int i = 0; i < 8; i++) kl_tensor(&l, &t[i]);
        kl_int(&l, rows);
        kl_int(&l, c);
        kl_int(&l, inner);
        kl_int(&l, op->accumulate);
        break;
    case PT_OP_BN_SYNC_STATS:
        l = ocl_kernel(d, OCL_K_BN_SYNC_STATS);
        for (int i = 0; i < 3; i++) kl_tensor(&l, &t[i]);
        kl_int(&l, rows);
        kl_int(&l, c);
        kl_int(&l, inner);
        break;
    case PT_OP_BN_SYNC_FWD:
        l = ocl_kernel(d, OCL_K_BN_SYNC_FWD);
        for (int i = 0; i < 7; i++) kl_tensor(&l, &t[i]);
        kl_int(&l, rows);
        kl_int(&l, c);
        kl_int(&l, inner);
        kl_float(&l, (float)op->p.bn.count);
        kl_float(&l, op->p.bn.eps);
        kl_float(&l, op->p.bn.momentum);
        break;
    case PT_OP_BN_SYNC_BWD_STATS:
        l = ocl_kernel(d, OCL_K_BN_SYNC_BWD_STATS);
        for (int i = 0; i < 6; i++) kl_tensor(&l, &t[i]);
        kl_int(&l, rows);
        kl_int(&l, c);
        kl_int(&l, inner);
        break;
    default:
        return pt_fail(err, PT_ERR_UNSUPPORTED, "opencl backend: no reduction kernel for %s", pt_op_name(op->kind));
    }
    return kl_run(&l, (size_t)c * (size_t)d->red_wg, (size_t)d->red_wg, err);
}
