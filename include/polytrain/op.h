/* The op descriptor: the one way the core asks a backend to compute something, and the
 * description of each op kind. What a kind computes, its operands (t[0..]) and parameters,
 * its shape rule, FLOPs and conformance cases are written once, in core/op_table.c; every
 * backend implements every kind, and core/conformance.c runs each on each backend against
 * the cpu backend. pt_op_check_operands applies the shape rules for every backend, which
 * may then assume them. */
#ifndef PT_OP_H
#define PT_OP_H

#include <stdint.h>

#include "polytrain/precision.h"
#include "polytrain/status.h"
#include "polytrain/tensor.h"

typedef enum pt_op_kind {
    PT_OP_FILL = 0,
    PT_OP_AXPY,
    PT_OP_ADD,
    PT_OP_GEMM,
    PT_OP_BIAS_ADD,
    PT_OP_BIAS_GRAD,
    PT_OP_CONV2D_FWD,
    PT_OP_CONV2D_BWD_DATA,
    PT_OP_CONV2D_BWD_FILTER,
    PT_OP_BN_FWD_TRAIN,
    PT_OP_BN_FWD_EVAL,
    PT_OP_BN_BWD,
    PT_OP_RELU_FWD,
    PT_OP_RELU_BWD,
    PT_OP_MAXPOOL_FWD,
    PT_OP_MAXPOOL_BWD,
    PT_OP_GAP_FWD,
    PT_OP_GAP_BWD,
    PT_OP_DROPOUT_FWD,
    PT_OP_DROPOUT_BWD,
    PT_OP_XENT,
    PT_OP_SGD,
    PT_OP_ADAM,
    PT_OP_RMSPROP,
    PT_OP_BCAST_MUL,
    PT_OP_BCAST_MUL_GRAD,
    PT_OP_SIGMOID_FWD,
    PT_OP_SIGMOID_BWD,
    PT_OP_GMP_FWD,
    PT_OP_GMP_BWD,
    PT_OP_CHANNEL_POOL_FWD,
    PT_OP_CHANNEL_POOL_BWD,
    PT_OP_BN_SYNC_STATS,
    PT_OP_BN_SYNC_FWD,
    PT_OP_BN_SYNC_BWD_STATS,
    PT_OP_BN_SYNC_BWD,
    PT_OP_SILU_FWD,
    PT_OP_SILU_BWD,
    PT_OP_AMP_UNSCALE,
    PT_OP_KIND_COUNT
} pt_op_kind;

#define PT_OP_MAX_OPERANDS 9

typedef struct pt_op {
    pt_op_kind kind;
    int nt;                            /* operands used */
    pt_tensor t[PT_OP_MAX_OPERANDS];
    int accumulate;                    /* see each kind */
    /* BN_FWD_TRAIN, BN_FWD_EVAL and ADD only: y = max(y, 0) in the same pass (the ReLU that
     * follows in place, folded in by the emitter where the backend has the fused form;
     * NaN stays NaN, as in RELU_FWD). Other kinds must leave it 0. */
    int fuse_relu;
    /* Kinds with PT_OPF_MATH only (GEMMs, convolutions): the precision the products are
     * formed in: the operands rounded to it, sums in float32 (polytrain/precision.h). A backend
     * takes a mode only where it declares it (PT_CAP_MATH); fp32 (0) everywhere else. */
    pt_precision math;
    pt_mem workspace;                  /* scratch the core reserved, workspace_size bytes */
    size_t workspace_bytes;
    /* The kinds with per-step parameters (pt_op_has_step_params): when step.buf is set, a
     * pt_step_scalars record in device memory whose values the op uses instead of the
     * by-value ones in p (which the core keeps equal), read when the op executes. A captured
     * graph (polytrain/backend.h) replays the same op with the values of each step. */
    pt_mem step;
    union {
        struct { float value; } fill;
        struct { float alpha; } axpy;
        struct { int trans_a, trans_b; float alpha, beta; } gemm;
        struct { int stride, pad; } conv;
        struct { float eps, momentum; int64_t count; } bn; /* count: sync-BN only */
        struct { int k, stride, pad; } pool;
        struct { float p; uint64_t seed, stream; int64_t sample_base; } dropout;
        struct { float smoothing, grad_scale; } xent;
        struct { float lr, momentum, dampening, weight_decay; int nesterov, first_step; } sgd;
        struct { float lr, beta1, beta2, eps, weight_decay; int decoupled; int64_t step; } adam;
        struct { float lr, alpha, eps, weight_decay, momentum; int centered; } rmsprop;
        /* mode: PT_AMP_* (0, the plain factor, for every use outside a captured step) */
        struct { float inv_scale; int mode; } amp;
    } p;
} pt_op;

/* ---- per-step parameters by reference ---- */

/* What changes from one training step to the next in the ops of a replica's lists, as a
 * record of 32-bit words in device memory (word indices PT_SS_*: kernels read it by index).
 * Adam's bias-correction terms are formed on the host (pt_adam_bias_terms) so that every
 * device uses the very float values the by-value path passes. */
typedef struct pt_step_scalars {
    float lr;                 /* SGD, Adam, RMSprop */
    float momentum;           /* SGD and RMSprop momentum, Adam beta1 */
    int32_t first_step;       /* SGD: the momentum buffer starts as the gradient */
    float adam_step_size;     /* lr / (1 - beta1^step) */
    float adam_sqrt_bc2;      /* sqrt(1 - beta2^step) */
    float grad_scale;         /* the loss's gradient scale */
    uint32_t step_lo, step_hi; /* dropout: stream = step * 65536 + the layer id */
    uint32_t sample_base_lo, sample_base_hi; /* dropout: global index of sample 0 */
    uint32_t adam_step_lo, adam_step_hi;     /* Adam: 1-based update count */
    /* Written on the device within the step (a step captured as one graph, with its update):
     * skip, the overflow flag of loss scaling (a float, not 0 when a gradient was Inf or NaN),
     * which turns the gated ops (pt_op_step_gated) into no-ops; sumsq, the gradients' sum of
     * squares the clipping coefficient is formed from. Written by the host: inv_scale, the
     * factor of the loss-scaling unscale (PT_AMP_LOSS). */
    uint32_t skip;
    float sumsq;
    float inv_scale;
    uint32_t reserved[1];
} pt_step_scalars;
enum {
    PT_SS_LR = 0, PT_SS_MOMENTUM, PT_SS_FIRST_STEP, PT_SS_ADAM_STEP_SIZE, PT_SS_ADAM_SQRT_BC2, PT_SS_GRAD_SCALE,
    PT_SS_STEP_LO, PT_SS_STEP_HI, PT_SS_SAMPLE_BASE_LO, PT_SS_SAMPLE_BASE_HI, PT_SS_ADAM_STEP_LO, PT_SS_ADAM_STEP_HI,
    PT_SS_SKIP, PT_SS_SUMSQ, PT_SS_INV_SCALE,
    PT_SS_WORDS = 16
};

/* AMP_UNSCALE's modes (pt_op.p.amp.mode). Outside a captured step only PT_AMP_FIXED is used.
 *  - PT_AMP_FIXED: g *= inv_scale (with step set: a gated op).
 *  - PT_AMP_LOSS: with step set, the factor is the record's inv_scale, and the op is never
 *    gated (it writes the flag the others read); without, as PT_AMP_FIXED.
 *  - PT_AMP_CLIP (step set): inv_scale holds the clipping norm; the factor is
 *    pt_clip_coef(inv_scale, the record's sumsq), and the op does nothing where that factor
 *    leaves the gradients as they are (pt_clip_applies); gated. */
enum { PT_AMP_FIXED = 0, PT_AMP_LOSS = 1, PT_AMP_CLIP = 2 };

/* Whether kind has parameters that change every step (SGD, Adam, RMSprop, dropout forward,
 * the loss): the kinds whose values pt_op.step replaces. */
int pt_op_has_step_params(pt_op_kind kind);
/* Whether kind, with pt_op.step set, does nothing while the record's skip word is not 0 (SGD,
 * Adam, RMSprop, AXPY, AMP_UNSCALE except PT_AMP_LOSS): the update, clipping and weight EMA
 * of a step whose loss-scaling check found Inf/NaN leave every buffer as it was. Only the
 * backends with graph hooks see such ops (the core sets step only where it captures). */
int pt_op_step_gated(const pt_op *op);
/* torch's clip_grad_norm_ coefficient as the host forms it: max_norm / (sqrt(sumsq) +
 * 1e-6), in float (the square root correctly rounded: sqrt in double rounded to float is
 * the same value), and whether gradients are scaled by it (below 1, or NaN). */
float pt_clip_coef(float max_norm, float sumsq);
int pt_clip_applies(float coef);
/* Clears op's per-step values (not their structure: whether a momentum is 0 decides which
 * buffers the kernels touch, so it stays), and the layer id of dropout's stream stays: two
 * ops of consecutive steps compare equal (memcmp) after this exactly when they differ in
 * declared per-step values only. The cleared op is still valid (Adam's step becomes 1). */
void pt_op_clear_step_params(pt_op *op);
/* The fields of s that op's kind reads, from op's by-value parameters (the others untouched). */
void pt_step_scalars_from_op(pt_step_scalars *s, const pt_op *op);
/* op's by-value per-step parameters set from s (what a backend that executes on the host
 * does when op->step is set). Returns 0 when the op must do nothing this time (gated by the
 * skip word, or a clipping that does not apply), else 1. */
int pt_op_resolve_step_params(pt_op *op, const pt_step_scalars *s);
/* Adam's bias-corrected step size lr / (1 - beta1^step) and sqrt(1 - beta2^step), in double
 * and rounded to float once, as every backend forms them. */
void pt_adam_bias_terms(float lr, float beta1, float beta2, int64_t step, float *step_size, float *sqrt_bc2);

/* ---- the description of an op kind: core/op_table.c holds one per kind, and everything
 * the core says about an op (operands, shape rule, FLOPs, capabilities, conformance cases,
 * error messages) reads it ---- */

/* How an operand is used: read, written, or read and written (state updated in place). */
enum { PT_ARG_IN = 1, PT_ARG_OUT = 2, PT_ARG_INOUT = 3 };

typedef struct pt_op_operand {
    const char *name;      /* "x", "dy", "running_mean" */
    pt_dtype dtype;
    unsigned char access;  /* PT_ARG_* */
    unsigned char optional; /* may be absent (ndim 0, or unused: see the kind's `absent`) */
    /* An activation the kernels may also take in a 16-bit storage type (PT_BF16 or PT_F16,
     * where the backend declares PT_CAP_ACT16 of it): loaded and widened to float32, and,
     * written, rounded to nearest even once. dtype is then PT_F32 "or the 16-bit activation
     * dtype"; each such operand of one op decides alone (an add of a bf16 and an f32 tensor). */
    unsigned char lowp;
    /* An image (an activation, its gradient, or a tensor indexed as one: a max-pool's argmax)
     * that, when 4-D, may be stored NHWC (pt_tensor.layout) where the backend declares
     * PT_CAP_NHWC. Its dims stay [N,C,H,W]; each such operand of one op decides alone. Every
     * lowp operand is one. */
    unsigned char img;
} pt_op_operand;

/* Capabilities and properties of a kind (pt_op_desc.flags). */
#define PT_OPF_ACCUMULATE 1u /* honours accumulate: its outputs may be added to */
#define PT_OPF_FUSED_RELU 2u /* may carry fuse_relu (on its first written operand) */
#define PT_OPF_POINTWISE 4u  /* every operand has the same element count; element i of each
                              * output depends on element i of the inputs only. Shared device
                              * kernels of such kinds take the operands in order, then the
                              * element count, then accumulate when the kind has it. */
#define PT_OPF_MATH 8u       /* honours a reduced-precision math mode (pt_op.math) */

/* Which recipe of the conformance suite (core/conformance.c) makes a kind's cases. The
 * pointwise recipes take the range of the generated inputs from pt_op_cases. */
typedef enum pt_case_recipe {
    PT_CASES_NONE = 0,
    PT_CASES_FILL,
    PT_CASES_AXPY,
    PT_CASES_ADD,
    PT_CASES_GEMM,
    PT_CASES_BIAS,
    PT_CASES_CONV,
    PT_CASES_BN,
    PT_CASES_POINTWISE_FWD,  /* x -> y: sizes 1, 1001, 4099; 4%, 8% and all of [lo, hi) */
    PT_CASES_POINTWISE_BWD,  /* (saved, dy) -> dx: saved in [lo, hi), dy in [-1, 1) */
    PT_CASES_POOL,
    PT_CASES_GAP,
    PT_CASES_DROPOUT,
    PT_CASES_XENT,
    PT_CASES_OPTIM,
    PT_CASES_BCAST_MUL,
    PT_CASES_GLOBAL_MAXPOOL,
    PT_CASES_CHANNEL_POOL,
    PT_CASES_BN_SYNC,
    PT_CASES_AMP_UNSCALE
} pt_case_recipe;

typedef struct pt_op_cases {
    pt_case_recipe recipe;
    float lo, hi;   /* pointwise recipes: range of the first input */
    int nonneg;     /* pointwise backward: the saved input is a ReLU's output (max(v, 0)) */
} pt_op_cases;

typedef struct pt_op_desc {
    const char *name;            /* "conv2d_fwd": errors, traces, per-op tables */
    const char *summary;         /* one line: what it computes */
    int nt;                      /* operands t[0..nt-1] */
    int nt_min;                  /* 0, or fewer operands allowed: the loss without mixup targets */
    unsigned tail_caps;          /* PT_CAP_* a backend needs for the operands past nt_min */
    pt_op_operand arg[PT_OP_MAX_OPERANDS];
    unsigned flags;              /* PT_OPF_* */
    /* bit j of may_alias[i]: operand i may be the very memory of operand j (in place) */
    unsigned short may_alias[PT_OP_MAX_OPERANDS];
    /* The extents the kernels index by: 1 when they hold, else 0 with the broken rule in why. */
    int (*shapes)(const pt_op *op, char *why, size_t cap);
    /* Operand i (optional) is absent or unused for this op's parameters (NULL: only ndim 0). */
    int (*absent)(const pt_op *op, int i);
    /* Floating-point operations of one run: multiply-adds x 2 for GEMMs and convolutions,
     * an estimate of the arithmetic per element for the rest. */
    double (*flops)(const pt_op *op);
    /* Activations (a pointwise forward with a layer of its own): the kind that computes the
     * input gradient, as (saved, dy) -> dx (PT_OP_FILL, 0, for the kinds that are not
     * activations: fill is nobody's gradient), and whether `saved` is the forward's output
     * (y) rather than its input (x). */
    pt_op_kind grad_kind;
    int grad_reads_output;
    pt_op_cases cases;
} pt_op_desc;

/* The description of kind, or NULL for a value outside the enum. */
const pt_op_desc *pt_op_describe(pt_op_kind kind);
const char *pt_op_name(pt_op_kind kind); /* "unknown" outside the enum */
/* The description's FLOP count for this op (0 for an unknown kind). */
double pt_op_flops(const pt_op *op);
/* Whether kind is an activation forward (pointwise, with a gradient kind): what
 * pt_net_activation accepts. */
int pt_op_is_activation(pt_op_kind kind);

/* Optional op features a backend declares to pt_op_check_operands. */
#define PT_CAP_MIXUP_TARGETS 1 /* the loss with mixup/cutmix targets (6 operands) */
#define PT_CAP_FUSED_RELU 2    /* fuse_relu on the kinds with PT_OPF_FUSED_RELU */
/* math mode p (pt_precision) on the kinds with PT_OPF_MATH; fp32 needs no capability */
#define PT_CAP_MATH(p) (4u << (unsigned)(p))
/* operands with pt_op_operand.lowp stored as dtype (PT_BF16 or PT_F16); 0 for another dtype */
#define PT_CAP_ACT16(dt) ((dt) == PT_BF16 ? 0x100u : (dt) == PT_F16 ? 0x200u : 0u)
/* 4-D operands with pt_op_operand.img stored NHWC */
#define PT_CAP_NHWC 0x400u
/* the residual z of a batch-norm forward (BN_FWD_TRAIN's 9th operand, BN_FWD_EVAL's 7th): a
 * residual add folded into the BN before it */
#define PT_CAP_BN_ADD 0x800u

/* The check every backend runs before an op, from the kind's description: kind known,
 * operand count, fuse_relu and a math mode only where the kind allows it and the backend has
 * it (caps:
 * PT_CAP_*), dtypes (optional operands may be absent; a 16-bit activation only on a lowp
 * operand of a backend with PT_CAP_ACT16 of it), layouts (NHWC only on a 4-D img operand of a
 * backend with PT_CAP_NHWC) and, with check_shapes, ranks 1..4,
 * sizes that fit 32-bit indexing and the kind's shape rule. Messages name the backend, the
 * kind and the operand. */
pt_status pt_op_check_operands(const pt_op *op, const char *backend, unsigned caps,
                               int check_shapes, pt_error *err);
/* Operand i is optional and not used by this op. */
int pt_op_operand_absent(const pt_op *op, int i);

/* The memory checks of run(): every used operand and the workspace inside its buffer
 * (buffer_bytes: the backend's usable size of a buffer) and, when align > 1, at a byte
 * offset that is a multiple of align. */
pt_status pt_op_check_memory(const pt_op *op, const char *backend, size_t (*buffer_bytes)(const pt_buffer *b),
                             size_t align, pt_error *err);

#endif
