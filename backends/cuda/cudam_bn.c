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
 * is widened into a float32 copy in the op's workspace first, in its own layout.
 * Channels-last tensors (x, y, or x, dy, dx all NHWC) run cuDNN with NHWC descriptors in
 * CUDNN_BATCHNORM_SPATIAL_PERSISTENT mode through the *Ex calls, as PyTorch does for
 * channels_last training: cuDNN's kernels for that layout. (For NCHW that mode reduces in scaled
 * integers that can overflow on large inputs: NCHW stays in CUDNN_BATCHNORM_SPATIAL.) There a
 * fused ReLU (pt_op.fuse_relu) is cuDNN's own (CUDNN_BATCHNORM_OPS_BN_ACTIVATION, one pass over
 * y), and so is a residual z with it (CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION, z in x's type and
 * layout), where cuDNN takes them; elsewhere they are the shared kernels in place on y (the add
 * with its fused ReLU, or the ReLU), one more pass.
 * The persistent mode is used only where cuDNN asks for no reserve space in plain batch norm:
 * the op list carries nothing from a forward to its backward (the backward works from the
 * saved statistics alone). The ReLU's reserve (its mask, which only a fused backward reads) is
 * scratch in the forward's workspace. Whatever cuDNN refuses in a mode, type or layout (it
 * checks before it launches) falls back, once and for good: fused to unfused, persistent to
 * spatial, cuDNN to the shared kernels; mixed layouts run the shared kernels (over NCHW
 * copies). */
#include <stdlib.h>
#include <string.h>

#include "backends/cuda/cudam_internal.h"

typedef struct bn_plan {
    cudnnTensorDescriptor_t xd, pd;
    cudnnActivationDescriptor_t relu; /* the fused ReLU (NHWC forward) */
    int refused;    /* cuDNN refused the 16-bit type or the NHWC layout: the shared kernels run it */
    int persistent; /* NHWC: CUDNN_BATCHNORM_SPATIAL_PERSISTENT through the *Ex calls */
    /* forward, persistent: what cuDNN's pass also does, by bnOps (enum ex_ops): bit EX_RELU the
     * ReLU, bit EX_ADD_RELU the residual then the ReLU */
    unsigned fuses;
    /* the *Ex calls' scratch then reserve by bnOps, each rounded to 256 bytes */
    size_t ex_ws[3], ex_reserve[3];
} bn_plan;

/* The *Ex calls' bnOps, as indices */
enum ex_ops { EX_BN = 0, EX_RELU = 1, EX_ADD_RELU = 2 };
static const cudnnBatchNormOps_t ex_bnops[3] = {CUDNN_BATCHNORM_OPS_BN, CUDNN_BATCHNORM_OPS_BN_ACTIVATION,
                                                CUDNN_BATCHNORM_OPS_BN_ADD_ACTIVATION};

static size_t round256(size_t n) { return (n + 255) / 256 * 256; }

/* The forward's residual z, or NULL. */
static const pt_tensor *residual(const pt_op *op) { return op->kind == PT_OP_BN_FWD_TRAIN && op->nt > 8 ? &op->t[8] : NULL; }

static void bn_free(void *value, void *user)
{
    (void)user;
    bn_plan *p = value;
    if (p->xd) cudnnDestroyTensorDescriptor(p->xd);
    if (p->pd) cudnnDestroyTensorDescriptor(p->pd);
    if (p->relu) cudnnDestroyActivationDescriptor(p->relu);
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
        /* the residual is added after cuDNN wrote y (or by cuDNN, reading it whole): in y's
         * layout, apart from y and x */
        const pt_tensor *z = residual(op);
        if (z && (pt_tensor_nhwc(z) != nhwc || overlaps(z, &op->t[3]) || overlaps(z, &op->t[0]))) return 0;
        return 1;
    }
    /* backward: dx must not overlap anything cuDNN reads; dgamma/dbeta not the inputs */
    for (int i = 0; i < 5; i++)
        if (overlaps(&op->t[5], &op->t[i]) || overlaps(&op->t[6], &op->t[i]) || overlaps(&op->t[7], &op->t[i]))
            return 0;
    return 1;
}

/* The backward's widened x at the start of the workspace (0 bytes for a float32 x). */
static size_t widened_bytes(const pt_op *op)
{
    if (op->kind != PT_OP_BN_BWD || !is16(op->t[0].dtype)) return 0;
    return round256((size_t)pt_tensor_numel(&op->t[0]) * sizeof(float));
}

/* What the persistent mode needs in NHWC, asked of cuDNN once per plan; any status but success
 * leaves that path off (p->persistent 0, or its bit of p->fuses). */
static void plan_persistent(cu_device *d, const pt_op *op, bn_plan *p)
{
    const cudnnBatchNormMode_t m = CUDNN_BATCHNORM_SPATIAL_PERSISTENT;
    size_t ws = 0, reserve = 1;
    if (cudnnGetBatchNormalizationTrainingExReserveSpaceSize(d->cudnn, m, CUDNN_BATCHNORM_OPS_BN, NULL, p->xd,
                                                             &reserve) != CUDNN_STATUS_SUCCESS ||
        reserve != 0)
        return;
    if (op->kind == PT_OP_BN_BWD) {
        if (cudnnGetBatchNormalizationBackwardExWorkspaceSize(d->cudnn, m, CUDNN_BATCHNORM_OPS_BN, p->xd, p->xd, p->xd,
                                                              NULL, p->xd, p->pd, NULL, &ws) != CUDNN_STATUS_SUCCESS)
            return;
        p->ex_ws[0] = round256(ws);
        p->persistent = 1;
        return;
    }
    if (cudnnGetBatchNormalizationForwardTrainingExWorkspaceSize(d->cudnn, m, CUDNN_BATCHNORM_OPS_BN, p->xd, NULL, p->xd,
                                                                 p->pd, NULL, &ws) != CUDNN_STATUS_SUCCESS)
        return;
    p->ex_ws[0] = round256(ws);
    p->persistent = 1;
    /* the fused ReLU keeps NaN, as relu_fwd does */
    if (cudnnCreateActivationDescriptor(&p->relu) != CUDNN_STATUS_SUCCESS) {
        p->relu = NULL;
        return;
    }
    if (cudnnSetActivationDescriptor(p->relu, CUDNN_ACTIVATION_RELU, CUDNN_PROPAGATE_NAN, 0.0) != CUDNN_STATUS_SUCCESS)
        return;
    for (int o = EX_RELU; o <= EX_ADD_RELU; o++) {
        /* the residual z, where there is one, in x's descriptor */
        const cudnnTensorDescriptor_t zd = o == EX_ADD_RELU ? p->xd : NULL;
        if (cudnnGetBatchNormalizationForwardTrainingExWorkspaceSize(d->cudnn, m, ex_bnops[o], p->xd, zd, p->xd, p->pd,
                                                                     p->relu, &ws) != CUDNN_STATUS_SUCCESS ||
            cudnnGetBatchNormalizationTrainingExReserveSpaceSize(d->cudnn, m, ex_bnops[o], p->relu, p->xd,
                                                                 &reserve) != CUDNN_STATUS_SUCCESS)
            continue;
        p->ex_ws[o] = round256(ws);
        p->ex_reserve[o] = round256(reserve);
        p->fuses |= 1u << o;
    }
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
    if (nhwc) plan_persistent(d, op, p);
    if (pt_algo_cache_insert(&d->bns, &key, p) != 0) {
        bn_free(p, NULL);
        pt_fail(err, PT_ERR_NOMEM, "out of host memory");
        return NULL;
    }
    return p;
}

/* The bnOps a persistent forward runs op with on plan p: the ReLU, or the residual and the ReLU,
 * in cuDNN's pass where the plan has that form (z in x's type and layout: its descriptor). */
static enum ex_ops ex_ops_of(const pt_op *op, const bn_plan *p)
{
    const pt_tensor *z = residual(op);
    if (!op->fuse_relu) return EX_BN;
    if (!z) return (p->fuses >> EX_RELU) & 1u ? EX_RELU : EX_BN;
    const int z_like_x = z->dtype == op->t[0].dtype && pt_tensor_nhwc(z) == pt_tensor_nhwc(&op->t[0]);
    return z_like_x && ((p->fuses >> EX_ADD_RELU) & 1u) ? EX_ADD_RELU : EX_BN;
}

size_t cu_bn_workspace(cu_device *d, const pt_op *op)
{
    const bn_plan *p = plan_of(d, op, NULL);
    if (!p || !p->persistent) return widened_bytes(op);
    if (op->kind == PT_OP_BN_BWD) return widened_bytes(op) + p->ex_ws[EX_BN];
    const enum ex_ops o = ex_ops_of(op, p);
    const size_t plain = p->ex_ws[EX_BN], fused = p->ex_ws[o] + p->ex_reserve[o];
    /* a fused forward that cuDNN refuses when it runs falls back to the plain one */
    return fused > plain ? fused : plain;
}

static int refusal(cudnnStatus_t st) { return st == CUDNN_STATUS_NOT_SUPPORTED || st == CUDNN_STATUS_BAD_PARAM; }

/* The forward in the persistent mode: PT_OK with *done set where cuDNN ran it, *fused saying
 * what it did in the same pass (enum ex_ops), PT_OK with *done clear where this plan leaves the
 * mode (the caller runs the spatial call). */
static pt_status forward_persistent(cu_device *d, const pt_op *op, bn_plan *p, int *done, enum ex_ops *fused,
                                    pt_error *err)
{
    const pt_tensor *t = op->t, *z = residual(op);
    const float one = 1.0f, zero = 0.0f;
    *done = 0;
    *fused = EX_BN;
    while (p->persistent) {
        const enum ex_ops o = ex_ops_of(op, p);
        const size_t ws = p->ex_ws[o], reserve = p->ex_reserve[o];
        const size_t have = op->workspace.buf ? op->workspace_bytes : 0;
        if (ws + reserve > have) return PT_OK; /* an op planned before this plan: the spatial call */
        char *base = ws + reserve ? cu_ptr(op->workspace) : NULL;
        const cudnnStatus_t st = cudnnBatchNormalizationForwardTrainingEx(
            d->cudnn, CUDNN_BATCHNORM_SPATIAL_PERSISTENT, ex_bnops[o], &one, &zero, p->xd, cu_ptr(t[0].mem),
            o == EX_ADD_RELU ? p->xd : NULL, o == EX_ADD_RELU ? cu_ptr(z->mem) : NULL, p->xd, cu_ptr(t[3].mem), p->pd,
            cu_f32(t[1].mem), cu_f32(t[2].mem), (double)op->p.bn.momentum, cu_f32(t[4].mem), cu_f32(t[5].mem),
            (double)op->p.bn.eps, cu_f32(t[6].mem), cu_f32(t[7].mem), o == EX_BN ? NULL : p->relu, ws ? base : NULL,
            ws, reserve ? base + ws : NULL, reserve);
        if (st == CUDNN_STATUS_SUCCESS) {
            *done = 1;
            *fused = o;
            return PT_OK;
        }
        if (!refusal(st))
            return cu_fail_cudnn(err, st, "cudnnBatchNormalizationForwardTrainingEx", __FILE__, __LINE__);
        /* refused before anything was written: one step down */
        if (o != EX_BN)
            p->fuses &= ~(1u << o);
        else
            p->persistent = 0;
    }
    return PT_OK;
}

/* The backward in the persistent mode over x (the op's, or its widening at the workspace's
 * start): *done as above. Only a backward that writes dx (beta 0), as PyTorch's does. */
static pt_status backward_persistent(cu_device *d, const pt_op *op, bn_plan *p, pt_mem x, int *done, pt_error *err)
{
    const pt_tensor *t = op->t;
    const float one = 1.0f, zero = 0.0f;
    *done = 0;
    const size_t skip = widened_bytes(op), ws = p->ex_ws[0];
    const size_t have = op->workspace.buf ? op->workspace_bytes : 0;
    if (!p->persistent || op->accumulate || skip + ws > have) return PT_OK;
    const double eps = (double)op->p.bn.eps < CUDNN_BN_MIN_EPSILON ? CUDNN_BN_MIN_EPSILON : (double)op->p.bn.eps;
    const cudnnStatus_t st = cudnnBatchNormalizationBackwardEx(
        d->cudnn, CUDNN_BATCHNORM_SPATIAL_PERSISTENT, CUDNN_BATCHNORM_OPS_BN, &one, &zero, &one, &zero, p->xd,
        cu_f32(x), NULL, NULL, p->xd, cu_f32(t[1].mem), NULL, NULL, p->xd, cu_f32(t[5].mem), p->pd, cu_f32(t[2].mem),
        NULL, cu_f32(t[6].mem), cu_f32(t[7].mem), eps, cu_f32(t[3].mem), cu_f32(t[4].mem), NULL,
        ws ? (char *)cu_ptr(op->workspace) + skip : NULL, ws, NULL, 0);
    if (st == CUDNN_STATUS_SUCCESS) {
        *done = 1;
        return PT_OK;
    }
    if (!refusal(st)) return cu_fail_cudnn(err, st, "cudnnBatchNormalizationBackwardEx", __FILE__, __LINE__);
    p->persistent = 0;
    return PT_OK;
}

pt_status cu_op_bn_cudnn(cu_device *d, const pt_op *op, pt_error *err)
{
    bn_plan *p = plan_of(d, op, err);
    if (!p) return err ? err->status : PT_ERR_BACKEND;
    const pt_tensor *t = op->t;
    const float one = 1.0f, zero = 0.0f;
    const pt_kdev k = cu_kdev(d);
    if (p->refused) return pt_kops_run(&k, op, err);
    if (op->kind == PT_OP_BN_FWD_TRAIN) {
        int done = 0;
        enum ex_ops fused = EX_BN;
        PT_TRY(forward_persistent(d, op, p, &done, &fused, err));
        if (!done) {
            const cudnnStatus_t st = cudnnBatchNormalizationForwardTraining(
                d->cudnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, p->xd, cu_ptr(t[0].mem), p->xd, cu_ptr(t[3].mem),
                p->pd, cu_f32(t[1].mem), cu_f32(t[2].mem), (double)op->p.bn.momentum, cu_f32(t[4].mem),
                cu_f32(t[5].mem), (double)op->p.bn.eps, cu_f32(t[6].mem), cu_f32(t[7].mem));
            if (refusal(st) && (is16(t[0].dtype) || pt_tensor_nhwc(&t[0]))) {
                /* this cuDNN has no batch norm in that type or layout: nothing was written */
                p->refused = 1;
                return pt_kops_run(&k, op, err);
            }
            if (st != CUDNN_STATUS_SUCCESS)
                return cu_fail_cudnn(err, st, "cudnnBatchNormalizationForwardTraining", __FILE__, __LINE__);
        }
        if (fused != EX_BN) return PT_OK;
        /* what cuDNN's pass did not do, in place on y: the residual add (its ReLU fused), or
         * the ReLU */
        pt_op rest;
        memset(&rest, 0, sizeof rest);
        if (residual(op)) {
            rest.kind = PT_OP_ADD;
            rest.nt = 3;
            rest.t[0] = rest.t[2] = t[3];
            rest.t[1] = *residual(op);
            rest.fuse_relu = op->fuse_relu;
        } else if (op->fuse_relu) {
            rest.kind = PT_OP_RELU_FWD;
            rest.nt = 2;
            rest.t[0] = rest.t[1] = t[3];
        } else {
            return PT_OK;
        }
        return pt_kops_run(&k, &rest, err);
    }
    const float beta_dx = op->accumulate ? 1.0f : 0.0f;
    /* cuDNN wants the forward's epsilon (it works from the saved statistics given here) */
    const double eps = (double)op->p.bn.eps < CUDNN_BN_MIN_EPSILON ? CUDNN_BN_MIN_EPSILON : (double)op->p.bn.eps;
    pt_mem x = t[0].mem;
    if (is16(t[0].dtype)) {
        /* x widened exactly into the workspace, in its own layout (the gradients are float32) */
        const size_t need = widened_bytes(op);
        if (!op->workspace.buf || op->workspace_bytes < need)
            return pt_fail(err, PT_ERR_INVALID, "cuda bn_bwd: a 16-bit x needs %zu bytes of workspace, the op has %zu",
                           need, op->workspace.buf ? op->workspace_bytes : (size_t)0);
        x = op->workspace;
        PT_TRY(pt_kops_from_lowp(&k, t[0].dtype == PT_BF16 ? PT_PREC_BF16 : PT_PREC_FP16, t[0].mem, x,
                                 (size_t)pt_tensor_numel(&t[0]), 1.0f, 0, err));
    }
    int done = 0;
    PT_TRY(backward_persistent(d, op, p, x, &done, err));
    if (done) return PT_OK;
    const cudnnStatus_t st = cudnnBatchNormalizationBackward(
        d->cudnn, CUDNN_BATCHNORM_SPATIAL, &one, &beta_dx, &one, &zero, p->xd, cu_f32(x), p->xd, cu_f32(t[1].mem),
        p->xd, cu_f32(t[5].mem), p->pd, cu_f32(t[2].mem), cu_f32(t[6].mem), cu_f32(t[7].mem), eps, cu_f32(t[3].mem),
        cu_f32(t[4].mem));
    if (refusal(st) && pt_tensor_nhwc(&t[0])) {
        /* no NHWC backward in this cuDNN: the shared kernels from now on (the workspace has
         * room for their copies, see f32_workspace_size) */
        p->refused = 1;
        return pt_kops_run(&k, op, err);
    }
    if (st != CUDNN_STATUS_SUCCESS)
        return cu_fail_cudnn(err, st, "cudnnBatchNormalizationBackward", __FILE__, __LINE__);
    return PT_OK;
}
