/* The shared kernels of backends/kernels/<name>.cl, each written once here with its name, how it
 * is launched and its parameter list, for both device backends: backends/opencl and
 * backends/cuda create their kernels from this table and check them against it (the
 * parameter count on OpenCL, every parameter's size on CUDA), and kernel_ops.c builds every
 * call from an op against it. Plain C: no vendor header, usable by tests on any machine.
 *
 * A row: K(ID, kernel, launch, op, parameters...).
 *  - launch: ITEMS, one work item per element (or plane, pixel, sample: what the kernel
 *    says), in work-groups the backend picks; CHANNELS, one work-group of the backend's
 *    reduction width (the kernels' PT_RED_WG) per channel.
 *  - op: the kind a kernel runs by the pointwise rule (PT_OPF_POINTWISE: the operands in
 *    order, the element count, then accumulate when the kind has it and the fused-ReLU flag
 *    when it may carry one, PT_OPF_FUSED_RELU), or PT_K_NO_OP for
 *    kernels whose arguments kernel_ops.c sets up itself.
 *  - parameters: M a tensor (two parameters: the buffer and the element offset, pt_i64),
 *    I int, U pt_u32, L pt_i64, UL pt_u64, F float.
 * A kernel whose op has lowp operands (activations that may be stored in 16 bits) has a twin,
 * <ID>_A16: the same parameters followed by one int per lowp operand of the op, in operand
 * order, its storage code (act16.cl's PT_KDT_*; an optional one the op leaves out, the batch-norm
 * forwards' residual, as float32). */
#ifndef PT_KERNEL_TABLE_H
#define PT_KERNEL_TABLE_H

#include "polytrain/op.h"

#define PT_K_NO_OP (-1)

#define PT_KERNEL_TABLE(K)                                                                                   \
    /* ops.cl: elementwise */                                                                               \
    K(FILL, pt_fill, ITEMS, PT_K_NO_OP, M, I, F)                                                             \
    K(SCALE, pt_scale, ITEMS, PT_K_NO_OP, M, I, F)                                                           \
    K(AXPY, pt_axpy, ITEMS, PT_K_NO_OP, M, M, I, F, I, M, I)                                                 \
    K(ADD, pt_add, ITEMS, PT_OP_ADD, M, M, M, I, I)                                                          \
    K(ADD_A16, pt_add_a16, ITEMS, PT_K_NO_OP, M, M, M, I, I, I, I, I)                                        \
    K(BIAS_ADD, pt_bias_add, ITEMS, PT_K_NO_OP, M, M, I, I, I)                                               \
    K(BIAS_ADD_A16, pt_bias_add_a16, ITEMS, PT_K_NO_OP, M, M, I, I, I, I)                                    \
    K(RELU_FWD, pt_relu_fwd, ITEMS, PT_OP_RELU_FWD, M, M, I)                                                 \
    K(RELU_FWD_A16, pt_relu_fwd_a16, ITEMS, PT_K_NO_OP, M, M, I, I, I)                                       \
    K(RELU_BWD, pt_relu_bwd, ITEMS, PT_OP_RELU_BWD, M, M, M, I, I)                                           \
    K(RELU_BWD_A16, pt_relu_bwd_a16, ITEMS, PT_K_NO_OP, M, M, M, I, I, I)                                    \
    K(DROPOUT_FWD, pt_dropout_fwd, ITEMS, PT_K_NO_OP, M, M, M, I, I, F, F, UL, U, UL, L, M, I)               \
    K(RNG_WORDS, pt_rng_words, ITEMS, PT_K_NO_OP, M, I, UL, U, UL, UL)                                       \
    K(MUL_ACC, pt_mul_acc, ITEMS, PT_OP_DROPOUT_BWD, M, M, M, I, I)                                          \
    /* ops.cl: per-channel reductions, batch norm, pooling, loss, optimizers */                              \
    K(BIAS_GRAD, pt_bias_grad, CHANNELS, PT_K_NO_OP, M, M, I, I, I, I)                                       \
    K(BN_FWD_TRAIN, pt_bn_fwd_train, CHANNELS, PT_K_NO_OP, M, M, M, M, M, M, M, M, M, I, I, I, F, F, I, I)   \
    K(BN_FWD_TRAIN_A16, pt_bn_fwd_train_a16, CHANNELS, PT_K_NO_OP, M, M, M, M, M, M, M, M, M, I, I, I, F, F, I, I, \
      I, I, I)                                                                                              \
    K(BN_FWD_EVAL, pt_bn_fwd_eval, ITEMS, PT_K_NO_OP, M, M, M, M, M, M, M, I, I, I, F, I, I)                 \
    K(BN_FWD_EVAL_A16, pt_bn_fwd_eval_a16, ITEMS, PT_K_NO_OP, M, M, M, M, M, M, M, I, I, I, F, I, I, I, I, I) \
    K(BN_BWD, pt_bn_bwd, CHANNELS, PT_K_NO_OP, M, M, M, M, M, M, M, M, I, I, I, I)                           \
    K(BN_BWD_A16, pt_bn_bwd_a16, CHANNELS, PT_K_NO_OP, M, M, M, M, M, M, M, M, I, I, I, I, I)                \
    K(MAXPOOL_FWD, pt_maxpool_fwd, ITEMS, PT_K_NO_OP, M, M, M, I, I, I, I, I, I, I, I)                       \
    K(MAXPOOL_FWD_A16, pt_maxpool_fwd_a16, ITEMS, PT_K_NO_OP, M, M, M, I, I, I, I, I, I, I, I, I, I)         \
    K(MAXPOOL_BWD, pt_maxpool_bwd, ITEMS, PT_K_NO_OP, M, M, M, I, I, I, I, I, I, I, I, I)                    \
    K(GAP_FWD, pt_gap_fwd, ITEMS, PT_K_NO_OP, M, M, I, I, F)                                                 \
    K(GAP_FWD_A16, pt_gap_fwd_a16, ITEMS, PT_K_NO_OP, M, M, I, I, F, I)                                      \
    K(GAP_BWD, pt_gap_bwd, ITEMS, PT_K_NO_OP, M, M, I, I, F, I)                                              \
    K(XENT, pt_xent, ITEMS, PT_K_NO_OP, M, M, M, M, I, I, I, F, F, M, I)                                     \
    K(SGD, pt_sgd, ITEMS, PT_K_NO_OP, M, M, M, I, F, F, F, F, I, I, M, I)                                    \
    K(ADAM, pt_adam, ITEMS, PT_K_NO_OP, M, M, M, M, I, F, F, F, F, F, F, F, M, I, F)                         \
    K(RMSPROP, pt_rmsprop, ITEMS, PT_K_NO_OP, M, M, M, M, M, I, F, F, F, F, F, F, I, M, I)                   \
    /* ops.cl: convolution data movement around the device's GEMM */                                        \
    K(IM2COL, pt_im2col, ITEMS, PT_K_NO_OP, M, M, I, I, I, I, I, I, I, I, I, I, I)                           \
    K(COL2IM, pt_col2im, ITEMS, PT_K_NO_OP, M, M, I, I, I, I, I, I, I, I, I, I, I, I)                        \
    K(GATHER_GROUPS, pt_gather_groups, ITEMS, PT_K_NO_OP, M, M, I, I, I, I)                                  \
    K(SCATTER_GROUPS, pt_scatter_groups, ITEMS, PT_K_NO_OP, M, M, I, I, I, I, I)                             \
    /* ops_conv_small.cl: direct convolution for a small C*R*S */                                        \
    K(CONV_SMALL_FWD, pt_conv_small_fwd, ITEMS, PT_K_NO_OP, M, M, M, I, I, I, I, I, I, I, I, I, I, I, I)       \
    K(CONV_SMALL_BWD_FILTER, pt_conv_small_bwd_filter, CHANNELS, PT_K_NO_OP, M, M, M, I, I, I, I, I, I, I, I,  \
      I, I, I, I)                                                                                           \
    /* ops.cl: synchronised batch norm */                                                                   \
    K(BN_SYNC_STATS, pt_bn_sync_stats, CHANNELS, PT_K_NO_OP, M, M, M, I, I, I)                               \
    K(BN_SYNC_FWD, pt_bn_sync_fwd, CHANNELS, PT_K_NO_OP, M, M, M, M, M, M, M, I, I, I, F, F, F)              \
    K(BN_SYNC_BWD_STATS, pt_bn_sync_bwd_stats, CHANNELS, PT_K_NO_OP, M, M, M, M, M, M, I, I, I)              \
    K(BN_SYNC_BWD, pt_bn_sync_bwd, ITEMS, PT_K_NO_OP, M, M, M, M, M, M, I, I, I, F, I)                       \
    /* ops_cast.cl */                                                                                       \
    K(TO_LOWP, pt_to_lowp, ITEMS, PT_K_NO_OP, M, M, I, I)                                                    \
    K(FROM_LOWP, pt_from_lowp, ITEMS, PT_K_NO_OP, M, M, I, I, F, I)                                          \
    K(ROUND_LOWP, pt_round_lowp, ITEMS, PT_K_NO_OP, M, M, I, I)                                              \
    K(WIDEN_LOWP, pt_widen_lowp, ITEMS, PT_K_NO_OP, M, M, I, I)                                              \
    K(AMP_UNSCALE, pt_amp_unscale, ITEMS, PT_K_NO_OP, M, M, I, F, M, I, I)                                    \
    /* ops_nhwc.cl: channels-last forms (storage codes of the lowp operands last) */                        \
    K(BIAS_ADD_NHWC, pt_bias_add_nhwc, ITEMS, PT_K_NO_OP, M, M, I, I, I)                                     \
    K(BN_FWD_TRAIN_NHWC, pt_bn_fwd_train_nhwc, CHANNELS, PT_K_NO_OP, M, M, M, M, M, M, M, M, M, I, I, I, F, F, I, \
      I, I, I, I)                                                                                           \
    K(BN_BWD_NHWC, pt_bn_bwd_nhwc, CHANNELS, PT_K_NO_OP, M, M, M, M, M, M, M, M, I, I, I, I, I)              \
    K(BN_FWD_EVAL_NHWC, pt_bn_fwd_eval_nhwc, ITEMS, PT_K_NO_OP, M, M, M, M, M, M, M, I, I, F, I, I, I, I, I)  \
    K(MAXPOOL_FWD_NHWC, pt_maxpool_fwd_nhwc, ITEMS, PT_K_NO_OP, M, M, M, I, I, I, I, I, I, I, I, I, I, I)    \
    K(MAXPOOL_BWD_NHWC, pt_maxpool_bwd_nhwc, ITEMS, PT_K_NO_OP, M, M, M, I, I, I, I, I, I, I, I, I, I)       \
    K(GAP_FWD_NHWC, pt_gap_fwd_nhwc, ITEMS, PT_K_NO_OP, M, M, I, I, I, F, I)                                 \
    K(GAP_BWD_NHWC, pt_gap_bwd_nhwc, ITEMS, PT_K_NO_OP, M, M, I, I, I, F, I)                                 \
    /* ops_layout.cl */                                                                                     \
    K(RELAYOUT, pt_relayout, ITEMS, PT_K_NO_OP, M, I, M, I, I, I, I, I, I)                                   \
    /* ops_mixup.cl */                                                                                      \
    K(XENT_MIX, pt_xent_mix, ITEMS, PT_K_NO_OP, M, M, M, M, M, M, I, I, I, F, F, M, I)                       \
    /* ops_zoo.cl */                                                                                        \
    K(BCAST_MUL, pt_bcast_mul, ITEMS, PT_K_NO_OP, M, M, M, I, I, I, I, I)                                    \
    K(BCAST_MUL_GRAD_CHANNEL, pt_bcast_mul_grad_channel, ITEMS, PT_K_NO_OP, M, M, M, I, I, I)                \
    K(BCAST_MUL_GRAD_PIXEL, pt_bcast_mul_grad_pixel, ITEMS, PT_K_NO_OP, M, M, M, I, I, I, I)                 \
    K(SIGMOID_FWD, pt_sigmoid_fwd, ITEMS, PT_OP_SIGMOID_FWD, M, M, I)                                        \
    K(SIGMOID_BWD, pt_sigmoid_bwd, ITEMS, PT_OP_SIGMOID_BWD, M, M, M, I, I)                                  \
    K(SILU_FWD, pt_silu_fwd, ITEMS, PT_OP_SILU_FWD, M, M, I)                                                 \
    K(SILU_BWD, pt_silu_bwd, ITEMS, PT_OP_SILU_BWD, M, M, M, I, I)                                           \
    K(GMP_FWD, pt_gmp_fwd, ITEMS, PT_K_NO_OP, M, M, M, I, I)                                                 \
    K(GMP_BWD, pt_gmp_bwd, ITEMS, PT_K_NO_OP, M, M, M, I, I, I)                                              \
    K(CHANNEL_POOL_FWD, pt_channel_pool_fwd, ITEMS, PT_K_NO_OP, M, M, M, I, I, I)                            \
    K(CHANNEL_POOL_BWD, pt_channel_pool_bwd, ITEMS, PT_K_NO_OP, M, M, M, I, I, I, F, I)                     \
    /* ops_winograd.cl: F(2x2,3x3) transforms around the device's batched GEMM */                          \
    K(WINO_FILTER, pt_wino_filter, ITEMS, PT_K_NO_OP, M, M, I, I, I, I, I, I)                                      \
    K(WINO_INPUT, pt_wino_input, ITEMS, PT_K_NO_OP, M, M, I, I, I, I, I, I, I, I, I, I, I, I, I)                         \
    K(WINO_OUTPUT, pt_wino_output, ITEMS, PT_K_NO_OP, M, M, I, I, I, I, I, I, I, I, I, I, I)                       \
    K(WINO_DY, pt_wino_dy, ITEMS, PT_K_NO_OP, M, M, I, I, I, I, I, I, I, I, I, I, I, I)                                  \
    K(WINO_FILTER_GRAD, pt_wino_filter_grad, ITEMS, PT_K_NO_OP, M, M, I, I, I, I, I, I)

typedef enum pt_kernel_id {
#define PT_K_ENUM(id, fn, launch, op, ...) PT_K_##id,
    PT_KERNEL_TABLE(PT_K_ENUM)
#undef PT_K_ENUM
    PT_K_COUNT
} pt_kernel_id;

typedef enum pt_kernel_launch { PT_K_ITEMS = 0, PT_K_CHANNELS = 1 } pt_kernel_launch;

/* ---- each parameter list as letters: m tensor, i int, u uint, l long, U ulong, f float ---- */
#define PT_KP_M "m"
#define PT_KP_I "i"
#define PT_KP_U "u"
#define PT_KP_L "l"
#define PT_KP_UL "U"
#define PT_KP_F "f"

/* PT_FOR_EACH(X, J, a, b, c) is X(0, a) J() X(1, b) J() X(2, c): up to 24 items. */
#define PT_FE_NARGS(...) PT_FE_NARGS_(__VA_ARGS__, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define PT_FE_NARGS_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17, _18, _19, _20, _21, _22, _23, _24, N, ...) N
#define PT_FE_CAT(a, b) PT_FE_CAT_(a, b)
#define PT_FE_CAT_(a, b) a##b
#define PT_FOR_EACH(X, J, ...) PT_FE_CAT(PT_FE_, PT_FE_NARGS(__VA_ARGS__))(X, J, __VA_ARGS__)
#define PT_FE_1(X, J, a0) X(0, a0)
#define PT_FE_2(X, J, a0, a1) PT_FE_1(X, J, a0) J() X(1, a1)
#define PT_FE_3(X, J, a0, a1, a2) PT_FE_2(X, J, a0, a1) J() X(2, a2)
#define PT_FE_4(X, J, a0, a1, a2, a3) PT_FE_3(X, J, a0, a1, a2) J() X(3, a3)
#define PT_FE_5(X, J, a0, a1, a2, a3, a4) PT_FE_4(X, J, a0, a1, a2, a3) J() X(4, a4)
#define PT_FE_6(X, J, a0, a1, a2, a3, a4, a5) PT_FE_5(X, J, a0, a1, a2, a3, a4) J() X(5, a5)
#define PT_FE_7(X, J, a0, a1, a2, a3, a4, a5, a6) PT_FE_6(X, J, a0, a1, a2, a3, a4, a5) J() X(6, a6)
#define PT_FE_8(X, J, a0, a1, a2, a3, a4, a5, a6, a7) PT_FE_7(X, J, a0, a1, a2, a3, a4, a5, a6) J() X(7, a7)
#define PT_FE_9(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8) PT_FE_8(X, J, a0, a1, a2, a3, a4, a5, a6, a7) J() X(8, a8)
#define PT_FE_10(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9) PT_FE_9(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8) J() X(9, a9)
#define PT_FE_11(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10) PT_FE_10(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9) J() X(10, a10)
#define PT_FE_12(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11) PT_FE_11(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10) J() X(11, a11)
#define PT_FE_13(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12) PT_FE_12(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11) J() X(12, a12)
#define PT_FE_14(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13) PT_FE_13(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12) J() X(13, a13)
#define PT_FE_15(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14) PT_FE_14(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13) J() X(14, a14)
#define PT_FE_16(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15) PT_FE_15(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14) J() X(15, a15)
#define PT_FE_17(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16) PT_FE_16(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15) J() X(16, a16)
#define PT_FE_18(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17) PT_FE_17(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16) J() X(17, a17)
#define PT_FE_19(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18) PT_FE_18(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17) J() X(18, a18)
#define PT_FE_20(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19) PT_FE_19(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18) J() X(19, a19)
#define PT_FE_21(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19, a20) PT_FE_20(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19) J() X(20, a20)
#define PT_FE_22(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19, a20, a21) PT_FE_21(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19, a20) J() X(21, a21)
#define PT_FE_23(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19, a20, a21, a22) PT_FE_22(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19, a20, a21) J() X(22, a22)
#define PT_FE_24(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19, a20, a21, a22, a23) PT_FE_23(X, J, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19, a20, a21, a22) J() X(23, a23)
#define PT_FE_NOTHING()
#define PT_FE_COMMA() ,

/* A kernel's parameter letters, e.g. "mif" for pt_fill. */
#define PT_KP_LETTER(i, T) PT_KP_##T
#define PT_KERNEL_PARAMS(...) PT_FOR_EACH(PT_KP_LETTER, PT_FE_NOTHING, __VA_ARGS__)

typedef struct pt_kernel_info {
    const char *name;    /* "pt_fill": the kernel's name in the program / fatbin */
    const char *params;  /* "mif" */
    pt_kernel_launch launch;
    int op;              /* the pt_op_kind it runs by the pointwise rule, or PT_K_NO_OP */
} pt_kernel_info;

/* The row of kernel id (NULL outside the table). */
const pt_kernel_info *pt_kernel_info_of(pt_kernel_id id);
/* The kernel that runs kind by the pointwise rule, or PT_K_COUNT when none does. */
pt_kernel_id pt_kernel_for_pointwise(pt_op_kind kind);
/* Parameters of the kernel as the device sees them (a tensor is two), and the size in bytes
 * of the i-th of those: what cudaFuncGetParamInfo reports for the compiled kernel. */
int pt_kernel_param_count(pt_kernel_id id);
int pt_kernel_param_size(pt_kernel_id id, int i);

#endif
