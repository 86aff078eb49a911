/* Names of op kinds, for errors, traces and per-op timing tables. */
#include "core/op.h"

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
    };
    if ((int)kind < 0 || kind >= PT_OP_KIND_COUNT || !names[kind]) return "unknown";
    return names[kind];
}
