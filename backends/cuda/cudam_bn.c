/* Batch norm in training on the cuda module through cuDNN (spatial mode): the forward with
 * batch statistics and running averages (cuDNN's running variance is the unbiased one, as
 * core/op_table.c asks), and the backward from the saved mean and inverse std. cuDNN's kernels
 * spread a channel over many blocks, where the shared kernel has one block per channel.
 * The cases cuDNN does not cover as the op's spec says (aliasing, a single value per
 * channel, epsilon below CUDNN_BN_MIN_EPSILON, empty tensors) run the shared kernels.
 * A forward whose x and y are both stored in one 16-bit type (bf16 or fp16 activations) runs
 * cuDNN on them directly, with float32 scale, bias and statistics (cuDNN's mixed-precision
 * batch norm); where cuDNN refuses that type, the shared kernels' 16-bit twins from then on.
 * The backward takes x, dy and dx in one type in cuDNN: with gradients in float32, a 16-bit x
 * is widened into a float32 copy in the op's workspace first (cu_bn_workspace), in its own
 * layout. Channels-last tensors (x, y, or x, dy, dx all NHWC) run cuDNN with NHWC descriptors;
 * mixed layouts run the shared kernels (over NCHW copies).
 * A fused ReLU (pt_op.fuse_relu) runs as cuDNN's BN followed by the shared ReLU kernel in place
 * on y: one more pass over y. cudnnBatchNormalizationForwardTrainingEx with
 * CUDNN_BATCHNORM_OPS_BN_ACTIVATION fuses it only for NHWC half-precision tensors in
 * CUDNN_BATCHNORM_SPATIAL_PERSISTENT mode, and these tensors are NCHW float32. */
#include <stdlib.h>
#include <string.h>

#include "backends/cuda/cudam_internal.h"

typedef struct bn_plan {
    cudnnTensorDescriptor_t xd, pd;
    int refused; /* cuDNN refused the 16-bit type or the NHWC layout: the shared kernels run it */
} bn_plan;

static void bn_free(void *value, void *user)
{
    (void)user;
    bn_plan *p = value;
    if (p->xd) cudnnDestroyTensorDescriptor(p->xd);
    if (p->pd) cudnnDestroyTensorDescriptor(p->pd);
    free(p);
}

void cu_bn_cache_free(cu_device *d)
{
    pt_algo_cache_destroy(&d->bns, bn_free, NULL);
}

static void layout(const pt_tensor *t, int *n, int *c, int *inner)
{
    *n = (int)t->dim[0];
    *c = t->ndim > 1 ? (int)t->dim[1] : 1;
    int64_t in = 1;
    for (int i = 2; i < t->ndim; i++) in *= t->dim[i];
    *inner = (int)in;
}

static int overlaps(const pt_tensor *a, const pt_tensor *b)
{
    if (a->mem.buf != b->mem.buf) return 0;
    const size_t a0 = a->mem.off, a1 = a0 + pt_tensor_bytes(a), b0 = b->mem.off, b1 = b0 + pt_tensor_bytes(b);
    return a0 < b1 && b0 < a1;
}

static int is16(pt_dtype t) { return t == PT_BF16 || t == PT_F16; }

int cu_bn_cudnn_applies(const pt_op *op)
{
    if (op->kind != PT_OP_BN_FWD_TRAIN && op->kind != PT_OP_BN_BWD) return 0;
    /* one data type and layout for x and y (forward); one layout for x, dy and dx (backward,
     * the gradients float32, x widened first where it is 16-bit) */
    const int nhwc = pt_tensor_nhwc(&op->t[0]);
    if (op->kind == PT_OP_BN_FWD_TRAIN
            ? op->t[0].dtype != op->t[3].dtype || pt_tensor_nhwc(&op->t[3]) != nhwc
            : op->t[1].dtype != PT_F32 || op->t[5].dtype != PT_F32 || pt_tensor_nhwc(&op->t[1]) != nhwc ||
                  pt_tensor_nhwc(&op->t[5]) != nhwc)
        return 0;
    int n, c, inner;
    layout(&op->t[0], &n, &c, &inner);
    if (n < 1 || c < 1 || inner < 1 || (int64_t)n * inner < 2) return 0;
    if (op->kind == PT_OP_BN_FWD_TRAIN) {
        if ((double)op->p.bn.eps < CUDNN_BN_MIN_EPSILON) return 0;
        for (int i = 4; i < 8; i++)
            if (overlaps(&op->t[3], &op->t[i]) || overlaps(&op->t[0], &op->t[3])) return 0;
        return 1;
    }
    /* backward: dx must not overlap anything cuDNN reads; dgamma/dbeta not the inputs */
    for (int i = 0; i < 5; i++)
        if (overlaps(&op->t[5], &op->t[i]) || overlaps(&op->t[6], &op->t[i]) || overlaps(&op->t[7], &op->t[i]))
            return 0;
    return 1;
}

size_t cu_bn_workspace(const pt_op *op)
{
    if (op->kind != PT_OP_BN_BWD || !is16(op->t[0].dtype)) return 0;
    return ((size_t)pt_tensor_numel(&op->t[0]) * sizeof(float) + 255) / 256 * 256;
}

static bn_plan *plan_of(cu_device *d, const pt_op *op, pt_error *err)
{
    int n, c, inner;
    layout(&op->t[0], &n, &c, &inner);
    const int nhwc = pt_tensor_nhwc(&op->t[0]);
    pt_conv_key key;
    memset(&key, 0, sizeof key);
    key.kind = (int32_t)op->kind;
    key.n = n;
    key.c = c;
    key.h = inner;
    key.nhwc = nhwc;
    key.p = nhwc ? (int32_t)op->t[0].dim[2] : 0;
    key.q = nhwc ? (int32_t)op->t[0].dim[3] : 0;
    /* the data type cuDNN sees of x and y: the backward's x is widened first */
    key.math = (int32_t)(op->kind == PT_OP_BN_BWD ? PT_F32 : op->t[0].dtype);
    bn_plan *p = pt_algo_cache_find(&d->bns, &key);
    if (p) return p;
    p = calloc(1, sizeof *p);
    if (!p) {
        pt_fail(err, PT_ERR_NOMEM, "out of host memory");
        return NULL;
    }
    cudnnStatus_t st = cudnnCreateTensorDescriptor(&p->xd);
    if (st == CUDNN_STATUS_SUCCESS) st = cudnnCreateTensorDescriptor(&p->pd);
    const cudnnDataType_t t = key.math == PT_BF16 ? CUDNN_DATA_BFLOAT16
                              : key.math == PT_F16 ? CUDNN_DATA_HALF
                                                   : CUDNN_DATA_FLOAT;
    if (st == CUDNN_STATUS_SUCCESS)
        st = nhwc ? cudnnSetTensor4dDescriptor(p->xd, CUDNN_TENSOR_NHWC, t, n, c, key.p, key.q)
                  : cudnnSetTensor4dDescriptor(p->xd, CUDNN_TENSOR_NCHW, t, n, c, inner, 1);
    if (st == CUDNN_STATUS_SUCCESS) st = cudnnDeriveBNTensorDescriptor(p->pd, p->xd, CUDNN_BATCHNORM_SPATIAL);
    if (st != CUDNN_STATUS_SUCCESS) {
        bn_free(p, NULL);
        cu_fail_cudnn(err, st, "batch-norm descriptors", __FILE__, __LINE__);
        return NULL;
    }
    if (pt_algo_cache_insert(&d->bns, &key, p) != 0) {
        bn_free(p, NULL);
        pt_fail(err, PT_ERR_NOMEM, "out of host memory");
        return NULL;
    }
    return p;
}

pt_status cu_op_bn_cudnn(cu_device *d, const pt_op *op, pt_error *err)
{
    bn_plan *p = plan_of(d, op, err);
    if (!p) return err ? err->status : PT_ERR_BACKEND;
    const pt_tensor *t = op->t;
    const float one = 1.0f, zero = 0.0f;
    if (op->kind == PT_OP_BN_FWD_TRAIN) {
        const pt_kdev k = cu_kdev(d);
        if (p->refused) return pt_kops_run(&k, op, err);
        const cudnnStatus_t st = cudnnBatchNormalizationForwardTraining(
            d->cudnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, p->xd, cu_ptr(t[0].mem), p->xd, cu_ptr(t[3].mem), p->pd,
            cu_f32(t[1].mem), cu_f32(t[2].mem), (double)op->p.bn.momentum, cu_f32(t[4].mem), cu_f32(t[5].mem),
            (double)op->p.bn.eps, cu_f32(t[6].mem), cu_f32(t[7].mem));
        if ((st == CUDNN_STATUS_NOT_SUPPORTED || st == CUDNN_STATUS_BAD_PARAM) &&
            (is16(t[0].dtype) || pt_tensor_nhwc(&t[0]))) {
            /* this cuDNN has no batch norm in that type or layout (it checks before it
             * launches): nothing was written */
            p->refused = 1;
            return pt_kops_run(&k, op, err);
        }
        if (st != CUDNN_STATUS_SUCCESS)
            return cu_fail_cudnn(err, st, "cudnnBatchNormalizationForwardTraining", __FILE__, __LINE__);
        if (!op->fuse_relu) return PT_OK;
        pt_op relu;
        memset(&relu, 0, sizeof relu);
        relu.kind = PT_OP_RELU_FWD;
        relu.nt = 2;
        relu.t[0] = relu.t[1] = t[3];
        return pt_kops_run(&k, &relu, err);
    }
    const float beta_dx = op->accumulate ? 1.0f : 0.0f;
    /* cuDNN wants the forward's epsilon (it works from the saved statistics given here) */
    const double eps = (double)op->p.bn.eps < CUDNN_BN_MIN_EPSILON ? CUDNN_BN_MIN_EPSILON : (double)op->p.bn.eps;
    const pt_kdev k = cu_kdev(d);
    if (p->refused) return pt_kops_run(&k, op, err);
    pt_mem x = t[0].mem;
    if (is16(t[0].dtype)) {
        /* x widened exactly into the workspace, in its own layout (the gradients are float32) */
        const size_t need = cu_bn_workspace(op);
        if (!op->workspace.buf || op->workspace_bytes < need)
            return pt_fail(err, PT_ERR_INVALID, "cuda bn_bwd: a 16-bit x needs %zu bytes of workspace, the op has %zu",
                           need, op->workspace.buf ? op->workspace_bytes : (size_t)0);
        x = op->workspace;
        PT_TRY(pt_kops_from_lowp(&k, t[0].dtype == PT_BF16 ? PT_PREC_BF16 : PT_PREC_FP16, t[0].mem, x,
                                 (size_t)pt_tensor_numel(&t[0]), 1.0f, 0, err));
    }
    const cudnnStatus_t st = cudnnBatchNormalizationBackward(
        d->cudnn, CUDNN_BATCHNORM_SPATIAL, &one, &beta_dx, &one, &zero, p->xd, cu_f32(x), p->xd, cu_f32(t[1].mem),
        p->xd, cu_f32(t[5].mem), p->pd, cu_f32(t[2].mem), cu_f32(t[6].mem), cu_f32(t[7].mem), eps, cu_f32(t[3].mem),
        cu_f32(t[4].mem));
    if ((st == CUDNN_STATUS_NOT_SUPPORTED || st == CUDNN_STATUS_BAD_PARAM) && pt_tensor_nhwc(&t[0])) {
        /* no NHWC backward in this cuDNN: the shared kernels from now on (the workspace has
         * room for their copies, cu_bn_workspace) */
        p->refused = 1;
        return pt_kops_run(&k, op, err);
    }
    if (st != CUDNN_STATUS_SUCCESS)
        return cu_fail_cudnn(err, st, "cudnnBatchNormalizationBackward", __FILE__, __LINE__);
    return PT_OK;
}
