/* Names of op kinds, for errors, traces and per-op timing tables. */
#include <limits.h>
#include <string.h>

#include "core/op.h"
#include "core/status.h"

const char *pt_op_name(pt_op_kind kind)
{
    static const char *const names[PT_OP_KIND_COUNT] = {
        [PT_OP_FILL] = "fill",
        [PT_OP_AXPY] = "axpy",
        [PT_OP_ADD] = "add",
        [PT_OP_GEMM] = "gemm",
        [PT_OP_BIAS_ADD] = "bias_add",
        [PT_OP_BIAS_GRAD] = "bias_grad",
        [PT_OP_CONV2D_FWD] = "conv2d_fwd",
        [PT_OP_CONV2D_BWD_DATA] = "conv2d_bwd_data",
        [PT_OP_CONV2D_BWD_FILTER] = "conv2d_bwd_filter",
        [PT_OP_BN_FWD_TRAIN] = "bn_fwd_train",
        [PT_OP_BN_FWD_EVAL] = "bn_fwd_eval",
        [PT_OP_BN_BWD] = "bn_bwd",
        [PT_OP_RELU_FWD] = "relu_fwd",
        [PT_OP_RELU_BWD] = "relu_bwd",
        [PT_OP_MAXPOOL_FWD] = "maxpool_fwd",
        [PT_OP_MAXPOOL_BWD] = "maxpool_bwd",
        [PT_OP_GAP_FWD] = "gap_fwd",
        [PT_OP_GAP_BWD] = "gap_bwd",
        [PT_OP_DROPOUT_FWD] = "dropout_fwd",
        [PT_OP_DROPOUT_BWD] = "dropout_bwd",
        [PT_OP_XENT] = "xent",
        [PT_OP_SGD] = "sgd",
        [PT_OP_ADAM] = "adam",
        [PT_OP_RMSPROP] = "rmsprop",
        [PT_OP_BCAST_MUL] = "bcast_mul",
        [PT_OP_BCAST_MUL_GRAD] = "bcast_mul_grad",
        [PT_OP_SIGMOID_FWD] = "sigmoid_fwd",
        [PT_OP_SIGMOID_BWD] = "sigmoid_bwd",
        [PT_OP_GMP_FWD] = "gmp_fwd",
        [PT_OP_GMP_BWD] = "gmp_bwd",
        [PT_OP_CHANNEL_POOL_FWD] = "channel_pool_fwd",
        [PT_OP_CHANNEL_POOL_BWD] = "channel_pool_bwd",
        [PT_OP_BN_SYNC_STATS] = "bn_sync_stats",
        [PT_OP_BN_SYNC_FWD] = "bn_sync_fwd",
        [PT_OP_BN_SYNC_BWD_STATS] = "bn_sync_bwd_stats",
        [PT_OP_BN_SYNC_BWD] = "bn_sync_bwd",
    };
    if ((int)kind < 0 || kind >= PT_OP_KIND_COUNT || !names[kind]) return "unknown";
    return names[kind];
}

/* Operand dtypes per kind: 'f' F32, 'i' I32, 'g' F32 or absent (ndim 0). */
static const char *const operand_types[PT_OP_KIND_COUNT] = {
    [PT_OP_FILL] = "f",
    [PT_OP_AXPY] = "ff",
    [PT_OP_ADD] = "fff",
    [PT_OP_GEMM] = "fff",
    [PT_OP_BIAS_ADD] = "ff",
    [PT_OP_BIAS_GRAD] = "ff",
    [PT_OP_CONV2D_FWD] = "fff",
    [PT_OP_CONV2D_BWD_DATA] = "fff",
    [PT_OP_CONV2D_BWD_FILTER] = "fff",
    [PT_OP_BN_FWD_TRAIN] = "ffffffff",
    [PT_OP_BN_FWD_EVAL] = "ffffff",
    [PT_OP_BN_BWD] = "ffffffff",
    [PT_OP_RELU_FWD] = "ff",
    [PT_OP_RELU_BWD] = "fff",
    [PT_OP_MAXPOOL_FWD] = "ffi",
    [PT_OP_MAXPOOL_BWD] = "fif",
    [PT_OP_GAP_FWD] = "ff",
    [PT_OP_GAP_BWD] = "ff",
    [PT_OP_DROPOUT_FWD] = "fff",
    [PT_OP_DROPOUT_BWD] = "fff",
    [PT_OP_XENT] = "fifgif", /* the last two (mixup targets) are optional: 4 or 6 operands */
    [PT_OP_SGD] = "fff",
    [PT_OP_ADAM] = "ffff",
    [PT_OP_RMSPROP] = "fffff",
    [PT_OP_BCAST_MUL] = "fff",
    [PT_OP_BCAST_MUL_GRAD] = "fff",
    [PT_OP_SIGMOID_FWD] = "ff",
    [PT_OP_SIGMOID_BWD] = "fff",
    [PT_OP_GMP_FWD] = "ffi",
    [PT_OP_GMP_BWD] = "fif",
    [PT_OP_CHANNEL_POOL_FWD] = "ffi",
    [PT_OP_CHANNEL_POOL_BWD] = "fif",
    [PT_OP_BN_SYNC_STATS] = "fff",
    [PT_OP_BN_SYNC_FWD] = "fffffff",
    [PT_OP_BN_SYNC_BWD_STATS] = "ffffff",
    [PT_OP_BN_SYNC_BWD] = "ffffff",
};

/* Whether t has exactly these extents (ndim of them). */
static int dims_are(const pt_tensor *t, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    const int64_t want[4] = {d0, d1, d2, d3};
    if (t->ndim != ndim) return 0;
    for (int i = 0; i < ndim; i++)
        if (t->dim[i] != want[i]) return 0;
    return 1;
}

/* The zoo's ops (attention, global and channel pooling) read several operands of related
 * shapes; a backend kernel indexes them assuming these relations, so every backend checks
 * them here, in one place. */
static pt_status check_zoo_shapes(const pt_op *op, const char *backend, const char *name, pt_error *err)
{
    const pt_tensor *t = op->t;
    int ok = 1;
    switch (op->kind) {
    case PT_OP_BCAST_MUL:
    case PT_OP_BCAST_MUL_GRAD: {
        /* the image operands and the broadcast factor */
        const pt_tensor *x = &t[0], *img2 = op->kind == PT_OP_BCAST_MUL ? &t[2] : &t[1];
        const pt_tensor *s = op->kind == PT_OP_BCAST_MUL ? &t[1] : &t[2];
        ok = x->ndim == 4 && dims_are(img2, 4, x->dim[0], x->dim[1], x->dim[2], x->dim[3]) &&
             (dims_are(s, 2, x->dim[0], x->dim[1], 0, 0) || dims_are(s, 4, x->dim[0], 1, x->dim[2], x->dim[3]));
        break;
    }
    case PT_OP_SIGMOID_FWD:
        ok = pt_tensor_numel(&t[0]) == pt_tensor_numel(&t[1]);
        break;
    case PT_OP_SIGMOID_BWD:
        ok = pt_tensor_numel(&t[0]) == pt_tensor_numel(&t[2]) && pt_tensor_numel(&t[1]) == pt_tensor_numel(&t[2]);
        break;
    case PT_OP_GMP_FWD:
    case PT_OP_GMP_BWD: {
        const pt_tensor *x = op->kind == PT_OP_GMP_FWD ? &t[0] : &t[2];
        const pt_tensor *y = op->kind == PT_OP_GMP_FWD ? &t[1] : &t[0];
        const pt_tensor *a = op->kind == PT_OP_GMP_FWD ? &t[2] : &t[1];
        ok = x->ndim == 4 && x->dim[2] * x->dim[3] >= 1 && dims_are(y, 2, x->dim[0], x->dim[1], 0, 0) &&
             dims_are(a, 2, x->dim[0], x->dim[1], 0, 0);
        break;
    }
    case PT_OP_CHANNEL_POOL_FWD:
    case PT_OP_CHANNEL_POOL_BWD: {
        const pt_tensor *x = op->kind == PT_OP_CHANNEL_POOL_FWD ? &t[0] : &t[2];
        const pt_tensor *y = op->kind == PT_OP_CHANNEL_POOL_FWD ? &t[1] : &t[0];
        const pt_tensor *a = op->kind == PT_OP_CHANNEL_POOL_FWD ? &t[2] : &t[1];
        ok = x->ndim == 4 && x->dim[1] >= 1 && dims_are(y, 4, x->dim[0], 2, x->dim[2], x->dim[3]) &&
             dims_are(a, 4, x->dim[0], 1, x->dim[2], x->dim[3]);
        break;
    }
    default:
        break;
    }
    if (!ok) return pt_fail(err, PT_ERR_INVALID, "%s %s: operand shapes do not match (see core/op.h)", backend, name);
    return PT_OK;
}

int pt_op_operand_absent(const pt_op *op, int i)
{
    return (op->kind == PT_OP_XENT && i == 3 && op->t[3].ndim == 0) ||
           (op->kind == PT_OP_SGD && i == 2 && op->p.sgd.momentum == 0.0f) ||
           (op->kind == PT_OP_RMSPROP && i == 3 && op->p.rmsprop.momentum == 0.0f) ||
           (op->kind == PT_OP_RMSPROP && i == 4 && !op->p.rmsprop.centered);
}

pt_status pt_op_check_operands(const pt_op *op, const char *backend, unsigned caps,
                               int check_shapes, pt_error *err)
{
    if ((int)op->kind < 0 || op->kind >= PT_OP_KIND_COUNT || !operand_types[op->kind])
        return pt_fail(err, PT_ERR_UNSUPPORTED, "%s backend: unknown op kind %d", backend, (int)op->kind);
    const char *types = operand_types[op->kind];
    const char *name = pt_op_name(op->kind);
    int want = (int)strlen(types);
    if (op->kind == PT_OP_XENT && op->nt == 4) want = 4;
    if (op->fuse_relu) {
        if (op->kind != PT_OP_BN_FWD_TRAIN && op->kind != PT_OP_BN_FWD_EVAL && op->kind != PT_OP_ADD)
            return pt_fail(err, PT_ERR_INVALID, "%s %s: fuse_relu is only for bn_fwd_train, bn_fwd_eval and add",
                           backend, name);
        if (!(caps & PT_CAP_FUSED_RELU))
            return pt_fail(err, PT_ERR_UNSUPPORTED, "%s %s: no fused ReLU on this backend", backend, name);
    }
    if (op->kind == PT_OP_XENT && op->nt == 6 && !(caps & PT_CAP_MIXUP_TARGETS))
        return pt_fail(err, PT_ERR_UNSUPPORTED, "%s %s: no mixup/cutmix targets on this backend", backend, name);
    if (op->nt != want)
        return pt_fail(err, PT_ERR_INVALID, "%s %s: %d operands, expected %d", backend, name, op->nt, want);
    for (int i = 0; i < want; i++) {
        const pt_tensor *t = &op->t[i];
        if (pt_op_operand_absent(op, i)) continue;
        pt_dtype dt = types[i] == 'i' ? PT_I32 : PT_F32;
        if (t->dtype != dt)
            return pt_fail(err, PT_ERR_INVALID, "%s %s: operand %d is %s, expected %s", backend, name, i,
                           pt_dtype_name(t->dtype), pt_dtype_name(dt));
        if (!check_shapes) continue;
        if (t->ndim < 1 || t->ndim > PT_MAX_DIMS)
            return pt_fail(err, PT_ERR_INVALID, "%s %s: operand %d has %d dims", backend, name, i, t->ndim);
        for (int k = 0; k < t->ndim; k++)
            if (t->dim[k] < 0 || t->dim[k] > INT_MAX)
                return pt_fail(err, PT_ERR_INVALID, "%s %s: operand %d dim %d is %lld", backend, name, i, k,
                               (long long)t->dim[k]);
        if (pt_tensor_numel(t) > INT_MAX)
            return pt_fail(err, PT_ERR_INVALID, "%s %s: operand %d has more than 2^31 elements", backend, name, i);
        if (op->kind == PT_OP_RMSPROP && pt_tensor_numel(t) != pt_tensor_numel(&op->t[0]))
            return pt_fail(err, PT_ERR_INVALID, "%s %s: operand %d has %lld elements, the parameter %lld", backend,
                           name, i, (long long)pt_tensor_numel(t), (long long)pt_tensor_numel(&op->t[0]));
    }
    if (check_shapes && op->kind == PT_OP_RMSPROP &&
        !(op->p.rmsprop.alpha >= 0.0f && op->p.rmsprop.alpha < 1.0f && op->p.rmsprop.eps > 0.0f))
        return pt_fail(err, PT_ERR_INVALID, "%s %s: alpha %g must be in [0, 1) and eps %g positive", backend, name,
                       (double)op->p.rmsprop.alpha, (double)op->p.rmsprop.eps);
    if (check_shapes) return check_zoo_shapes(op, backend, name, err);
    return PT_OK;
}
