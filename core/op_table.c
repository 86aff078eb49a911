/* The description of every op kind, one entry each: what it computes, its operands and their
 * roles, its shape rule, its FLOP count, what it may do in place, its capabilities and how the
 * conformance suite makes its cases. Nothing about an op kind is written anywhere else in the
 * core; backends implement the kinds and read these entries, never copy them. */
#include <stdio.h>

#include "polytrain/op.h"

/* ---- operands ---- */
#define IN(n) {n, PT_F32, PT_ARG_IN, 0}
#define OUT(n) {n, PT_F32, PT_ARG_OUT, 0}
#define INOUT(n) {n, PT_F32, PT_ARG_INOUT, 0}
#define IN_I32(n) {n, PT_I32, PT_ARG_IN, 0}
#define OUT_I32(n) {n, PT_I32, PT_ARG_OUT, 0}
#define OPT_OUT(n) {n, PT_F32, PT_ARG_OUT, 1}
#define OPT_INOUT(n) {n, PT_F32, PT_ARG_INOUT, 1}
/* activations that may be stored in 16 bits (pt_op_operand.lowp), and NHWC when 4-D */
#define LIN(n) {n, PT_F32, PT_ARG_IN, 0, 1, 1}
#define LOUT(n) {n, PT_F32, PT_ARG_OUT, 0, 1, 1}
#define LINOUT(n) {n, PT_F32, PT_ARG_INOUT, 0, 1, 1}
/* images that may be NHWC when 4-D (pt_op_operand.img): gradients, argmax, the rest */
#define XIN(n) {n, PT_F32, PT_ARG_IN, 0, 0, 1}
#define XOUT(n) {n, PT_F32, PT_ARG_OUT, 0, 0, 1}
#define XIN_I32(n) {n, PT_I32, PT_ARG_IN, 0, 0, 1}
#define XOUT_I32(n) {n, PT_I32, PT_ARG_OUT, 0, 0, 1}
#define OF(j) (1u << (j)) /* may_alias: may be operand j's memory */

/* ---- shape rules: each returns 1, or 0 with the rule that does not hold ---- */

static int64_t numel(const pt_tensor *t) { return pt_tensor_numel(t); }

/* t is [N, C, ...] (2-D or more); its channel count. */
static int64_t channels(const pt_tensor *t) { return t->ndim >= 2 ? t->dim[1] : -1; }

static int same_dims(const pt_tensor *a, const pt_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->dim[i] != b->dim[i]) return 0;
    return 1;
}

/* Whether t has exactly these extents (ndim of them). */
static int dims_are(const pt_tensor *t, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    const int64_t want[4] = {d0, d1, d2, d3};
    if (t->ndim != ndim) return 0;
    for (int i = 0; i < ndim; i++)
        if (t->dim[i] != want[i]) return 0;
    return 1;
}

static int fail(char *why, size_t cap, const char *rule)
{
    snprintf(why, cap, "%s", rule);
    return 0;
}

/* Every used operand has the element count of operand 0 (pointwise kinds, optimizers). */
static int same_numel(const pt_op *op, char *why, size_t cap)
{
    for (int i = 1; i < op->nt; i++) {
        if (pt_op_operand_absent(op, i)) continue;
        if (numel(&op->t[i]) != numel(&op->t[0])) {
            snprintf(why, cap, "operand %d has %lld elements, operand 0 %lld (they must match)", i,
                     (long long)numel(&op->t[i]), (long long)numel(&op->t[0]));
            return 0;
        }
    }
    return 1;
}

static int amp_unscale_shapes(const pt_op *op, char *why, size_t cap)
{
    if (numel(&op->t[1]) != 1) return fail(why, cap, "found must have one element");
    if (op->p.amp.mode < PT_AMP_FIXED || op->p.amp.mode > PT_AMP_CLIP)
        return fail(why, cap, "mode must be fixed, loss or clip");
    if (op->p.amp.mode == PT_AMP_CLIP && !op->step.buf)
        return fail(why, cap, "the clipping mode needs a step record");
    return 1;
}

static int gemm_shapes(const pt_op *op, char *why, size_t cap)
{
    const pt_tensor *A = &op->t[0], *B = &op->t[1], *C = &op->t[2];
    if (A->ndim != 2 || B->ndim != 2 || C->ndim != 2) return fail(why, cap, "A, B and C must be 2-D");
    const int ta = op->p.gemm.trans_a, tb = op->p.gemm.trans_b;
    const int64_t m = C->dim[0], n = C->dim[1];
    const int64_t am = ta ? A->dim[1] : A->dim[0], k = ta ? A->dim[0] : A->dim[1];
    const int64_t bk = tb ? B->dim[1] : B->dim[0], bn = tb ? B->dim[0] : B->dim[1];
    if (am == m && bk == k && bn == n) return 1;
    snprintf(why, cap, "op(A) is %lldx%lld, op(B) %lldx%lld, C %lldx%lld", (long long)am, (long long)k,
             (long long)bk, (long long)bn, (long long)m, (long long)n);
    return 0;
}

static int bias_shapes(const pt_op *op, char *why, size_t cap)
{
    if (op->t[0].ndim < 2 || numel(&op->t[1]) != channels(&op->t[0]))
        return fail(why, cap, "the tensor must be [N,C] or [N,C,H,W] and the bias [C]");
    return 1;
}

/* An output extent of a window of k cells stepping by stride over n cells padded by pad. */
static int64_t window_out(int64_t n, int k, int stride, int pad)
{
    const int64_t span = n + 2 * (int64_t)pad - k;
    return span < 0 ? 0 : span / stride + 1;
}

/* t0 x-shaped, t1 w-shaped, t2 y-shaped in all three directions. */
static int conv_shapes(const pt_op *op, char *why, size_t cap)
{
    const pt_tensor *x = &op->t[0], *w = &op->t[1], *y = &op->t[2];
    const int st = op->p.conv.stride, pad = op->p.conv.pad;
    if (x->ndim != 4 || w->ndim != 4 || y->ndim != 4) return fail(why, cap, "x, w and y must be 4-D");
    if (st < 1 || pad < 0) {
        snprintf(why, cap, "stride %d, padding %d (stride 1 or more, padding 0 or more)", st, pad);
        return 0;
    }
    if (w->dim[1] != x->dim[1] || y->dim[0] != x->dim[0] || y->dim[1] != w->dim[0] ||
        y->dim[2] != window_out(x->dim[2], (int)w->dim[2], st, pad) ||
        y->dim[3] != window_out(x->dim[3], (int)w->dim[3], st, pad)) {
        snprintf(why, cap,
                 "x [%lld,%lld,%lld,%lld], w [%lld,%lld,%lld,%lld], y [%lld,%lld,%lld,%lld] with stride %d, "
                 "padding %d: y must be [N,K,(H+2p-R)/s+1,(W+2p-S)/s+1] for x [N,C,H,W] and w [K,C,R,S]",
                 (long long)x->dim[0], (long long)x->dim[1], (long long)x->dim[2], (long long)x->dim[3],
                 (long long)w->dim[0], (long long)w->dim[1], (long long)w->dim[2], (long long)w->dim[3],
                 (long long)y->dim[0], (long long)y->dim[1], (long long)y->dim[2], (long long)y->dim[3], st, pad);
        return 0;
    }
    return 1;
}

/* Operands listed in `same` have operand 0's shape, those in `per_channel` C elements and
 * those in `two_c` 2C (sync-BN statistics); operand 0 is [N,C] or [N,C,...]. */
static int bn_like(const pt_op *op, unsigned same, unsigned per_channel, unsigned two_c, char *why, size_t cap)
{
    const pt_tensor *x = &op->t[0];
    if (x->ndim < 2) return fail(why, cap, "x must be [N,C] or [N,C,H,W]");
    const int64_t c = x->dim[1];
    for (int i = 1; i < op->nt; i++) {
        const pt_tensor *t = &op->t[i];
        const char *want = NULL;
        if ((same & OF(i)) && !same_dims(t, x)) want = "x's shape";
        else if ((per_channel & OF(i)) && numel(t) != c) want = "C elements";
        else if ((two_c & OF(i)) && numel(t) != 2 * c) want = "2C elements";
        if (want) {
            snprintf(why, cap, "operand %d must have %s (C = %lld)", i, want, (long long)c);
            return 0;
        }
    }
    return 1;
}

/* the residual z (BN_FWD_TRAIN's operand 8, BN_FWD_EVAL's 6) has x's shape */
static int bn_train_shapes(const pt_op *op, char *w, size_t c) { return bn_like(op, OF(3) | OF(8), 0xf6, 0, w, c); }
static int bn_eval_shapes(const pt_op *op, char *w, size_t c) { return bn_like(op, OF(3) | OF(6), 0x36, 0, w, c); }
static int bn_bwd_shapes(const pt_op *op, char *w, size_t c) { return bn_like(op, OF(1) | OF(5), 0xdc, 0, w, c); }
static int bn_sync_stats_shapes(const pt_op *op, char *w, size_t c) { return bn_like(op, 0, OF(1), OF(2), w, c); }
static int bn_sync_fwd_shapes(const pt_op *op, char *w, size_t c)
{
    return bn_like(op, OF(3), OF(1) | OF(2) | OF(4) | OF(5), OF(6), w, c);
}
static int bn_sync_bwd_stats_shapes(const pt_op *op, char *w, size_t c)
{
    return bn_like(op, OF(1), OF(4) | OF(5), OF(2) | OF(3), w, c);
}
static int bn_sync_bwd_shapes(const pt_op *op, char *w, size_t c)
{
    return bn_like(op, OF(1) | OF(5), OF(2), OF(3) | OF(4), w, c);
}

/* x [N,C,H,W] (operand xi), y and argmax [N,C,P,Q] (operands yi, ai) for the window. */
static int pool_shapes_at(const pt_op *op, int xi, int yi, int ai, char *why, size_t cap)
{
    const pt_tensor *x = &op->t[xi], *y = &op->t[yi], *a = &op->t[ai];
    const int k = op->p.pool.k, st = op->p.pool.stride, pad = op->p.pool.pad;
    if (k < 1 || st < 1 || pad < 0) {
        snprintf(why, cap, "window %d, stride %d, padding %d (window and stride 1 or more, padding 0 or more)", k,
                 st, pad);
        return 0;
    }
    if (x->ndim != 4 ||
        !dims_are(y, 4, x->dim[0], x->dim[1], window_out(x->dim[2], k, st, pad), window_out(x->dim[3], k, st, pad)) ||
        !same_dims(a, y))
        return fail(why, cap, "x must be [N,C,H,W], y and argmax [N,C,(H+2p-k)/s+1,(W+2p-k)/s+1]");
    return 1;
}
static int maxpool_fwd_shapes(const pt_op *op, char *w, size_t c) { return pool_shapes_at(op, 0, 1, 2, w, c); }
static int maxpool_bwd_shapes(const pt_op *op, char *w, size_t c) { return pool_shapes_at(op, 2, 0, 1, w, c); }

/* A per-plane value [N,C] (operand pi) of an image [N,C,H,W] (operand xi). */
static int plane_shapes_at(const pt_op *op, int xi, int pi, char *why, size_t cap)
{
    const pt_tensor *x = &op->t[xi];
    if (x->ndim != 4 || numel(&op->t[pi]) != x->dim[0] * x->dim[1])
        return fail(why, cap, "the image must be [N,C,H,W] and the pooled values N*C");
    return 1;
}
static int gap_fwd_shapes(const pt_op *op, char *w, size_t c) { return plane_shapes_at(op, 0, 1, w, c); }
static int gap_bwd_shapes(const pt_op *op, char *w, size_t c) { return plane_shapes_at(op, 1, 0, w, c); }

static int xent_shapes(const pt_op *op, char *why, size_t cap)
{
    const pt_tensor *z = &op->t[0];
    if (z->ndim != 2) return fail(why, cap, "logits must be [N,K]");
    const int64_t n = z->dim[0];
    int ok = numel(&op->t[1]) == n && numel(&op->t[2]) == n;
    if (!pt_op_operand_absent(op, 3)) ok = ok && same_dims(&op->t[3], z);
    if (op->nt == 6) ok = ok && numel(&op->t[4]) == n && numel(&op->t[5]) == n;
    return ok ? 1 : fail(why, cap, "labels, loss (and labels2, lam) must have N elements and dlogits [N,K]");
}

static int adam_shapes(const pt_op *op, char *why, size_t cap)
{
    if (!same_numel(op, why, cap)) return 0;
    if (op->p.adam.step < 1) {
        snprintf(why, cap, "step is %lld, expected 1 or more", (long long)op->p.adam.step);
        return 0;
    }
    return 1;
}

static int rmsprop_shapes(const pt_op *op, char *why, size_t cap)
{
    if (!same_numel(op, why, cap)) return 0;
    if (!(op->p.rmsprop.alpha >= 0.0f && op->p.rmsprop.alpha < 1.0f && op->p.rmsprop.eps > 0.0f)) {
        snprintf(why, cap, "alpha %g must be in [0, 1) and eps %g positive", (double)op->p.rmsprop.alpha,
                 (double)op->p.rmsprop.eps);
        return 0;
    }
    return 1;
}

/* The zoo's ops (attention, global and channel pooling) read several operands of related
 * shapes; their kernels index them assuming these relations. */
static int bcast_shapes_at(const pt_op *op, int xi, int img2, int si, char *why, size_t cap)
{
    const pt_tensor *x = &op->t[xi], *b = &op->t[img2], *s = &op->t[si];
    if (x->ndim == 4 && dims_are(b, 4, x->dim[0], x->dim[1], x->dim[2], x->dim[3]) &&
        (dims_are(s, 2, x->dim[0], x->dim[1], 0, 0) || dims_are(s, 4, x->dim[0], 1, x->dim[2], x->dim[3])))
        return 1;
    return fail(why, cap, "the images must be [N,C,H,W] and the factor [N,C] or [N,1,H,W]");
}
static int bcast_mul_shapes(const pt_op *op, char *w, size_t c) { return bcast_shapes_at(op, 0, 2, 1, w, c); }
static int bcast_grad_shapes(const pt_op *op, char *w, size_t c) { return bcast_shapes_at(op, 0, 1, 2, w, c); }

static int gmp_shapes_at(const pt_op *op, int xi, int yi, int ai, char *why, size_t cap)
{
    const pt_tensor *x = &op->t[xi];
    if (x->ndim == 4 && x->dim[2] * x->dim[3] >= 1 && dims_are(&op->t[yi], 2, x->dim[0], x->dim[1], 0, 0) &&
        dims_are(&op->t[ai], 2, x->dim[0], x->dim[1], 0, 0))
        return 1;
    return fail(why, cap, "x must be [N,C,H,W] with H*W >= 1, y and argmax [N,C]");
}
static int gmp_fwd_shapes(const pt_op *op, char *w, size_t c) { return gmp_shapes_at(op, 0, 1, 2, w, c); }
static int gmp_bwd_shapes(const pt_op *op, char *w, size_t c) { return gmp_shapes_at(op, 2, 0, 1, w, c); }

static int cpool_shapes_at(const pt_op *op, int xi, int yi, int ai, char *why, size_t cap)
{
    const pt_tensor *x = &op->t[xi];
    if (x->ndim == 4 && x->dim[1] >= 1 && dims_are(&op->t[yi], 4, x->dim[0], 2, x->dim[2], x->dim[3]) &&
        dims_are(&op->t[ai], 4, x->dim[0], 1, x->dim[2], x->dim[3]))
        return 1;
    return fail(why, cap, "x must be [N,C,H,W] with C >= 1, y [N,2,H,W] and argmax [N,1,H,W]");
}
static int cpool_fwd_shapes(const pt_op *op, char *w, size_t c) { return cpool_shapes_at(op, 0, 1, 2, w, c); }
static int cpool_bwd_shapes(const pt_op *op, char *w, size_t c) { return cpool_shapes_at(op, 2, 0, 1, w, c); }

/* ---- optional operands ---- */

static int xent_absent(const pt_op *op, int i) { return i == 3 && op->t[3].ndim == 0; }
static int sgd_absent(const pt_op *op, int i) { return i == 2 && op->p.sgd.momentum == 0.0f; }
static int rmsprop_absent(const pt_op *op, int i)
{
    return (i == 3 && op->p.rmsprop.momentum == 0.0f) || (i == 4 && !op->p.rmsprop.centered);
}

/* ---- FLOPs ---- */

static double n_of(const pt_op *op, int i) { return (double)numel(&op->t[i]); }

static double gemm_flops(const pt_op *op)
{
    const pt_tensor *A = &op->t[0];
    const double k = (double)(op->p.gemm.trans_a ? A->dim[0] : A->dim[1]);
    return 2.0 * n_of(op, 2) * k;
}
/* Every direction of a convolution does N*K*P*Q*C*R*S multiply-adds. */
static double conv_flops(const pt_op *op)
{
    const pt_tensor *w = &op->t[1];
    return 2.0 * n_of(op, 2) * (double)(w->dim[1] * w->dim[2] * w->dim[3]);
}
static double maxpool_fwd_flops(const pt_op *op) { return n_of(op, 1) * op->p.pool.k * op->p.pool.k; }
/* Per element of an operand: one operation (a copy with a compare, an add), or a few. */
static double per_x1(const pt_op *op) { return n_of(op, op->nt - 1); }
static double per_x2(const pt_op *op) { return 2.0 * n_of(op, op->nt - 1); }
static double per_x4(const pt_op *op) { return 4.0 * n_of(op, op->nt - 1); }
static double per_x8(const pt_op *op) { return 8.0 * n_of(op, op->nt - 1); }
static double per_in1(const pt_op *op) { return n_of(op, 0); }
static double bn_train_flops(const pt_op *op) { return (op->nt > 8 ? 9.0 : 8.0) * n_of(op, 0); }
static double bn_eval_flops(const pt_op *op) { return (op->nt > 6 ? 5.0 : 4.0) * n_of(op, 0); }
static double bn_bwd_flops(const pt_op *op) { return 10.0 * n_of(op, 0); }
static double bn_sync_flops(const pt_op *op) { return 5.0 * n_of(op, 0); }
static double xent_flops(const pt_op *op) { return 8.0 * n_of(op, 0); }
static double sgd_flops(const pt_op *op) { return 6.0 * n_of(op, 0); }
static double adam_flops(const pt_op *op) { return 14.0 * n_of(op, 0); }
static double rmsprop_flops(const pt_op *op) { return 10.0 * n_of(op, 0); }
static double no_flops(const pt_op *op)
{
    (void)op;
    return 0.0;
}

/* ---- the table ---- */

static const pt_op_desc table[PT_OP_KIND_COUNT] = {
    [PT_OP_FILL] = {
        .name = "fill", .summary = "y = value",
        .nt = 1, .arg = {OUT("y")},
        .flops = no_flops, .cases = {PT_CASES_FILL},
    },
    /* y = alpha*x + (accumulate ? y : 0) */
    [PT_OP_AXPY] = {
        .name = "axpy", .summary = "y = alpha*x (+ y)",
        .nt = 2, .arg = {XIN("x"), XOUT("y")}, .flags = PT_OPF_ACCUMULATE,
        .shapes = same_numel, .flops = per_x2, .cases = {PT_CASES_AXPY},
    },
    /* y = a + b; y may be a's or b's memory; a ReLU may be fused (the residual add) */
    [PT_OP_ADD] = {
        .name = "add", .summary = "y = a + b",
        .nt = 3, .arg = {LIN("a"), LIN("b"), LOUT("y")}, .flags = PT_OPF_POINTWISE | PT_OPF_FUSED_RELU,
        .may_alias = {[2] = OF(0) | OF(1)},
        .shapes = same_numel, .flops = per_x1, .cases = {PT_CASES_ADD},
    },
    /* All 2-D row-major. op(A) is [M,K] (A is [K,M] when trans_a), op(B) is [K,N] (B is [N,K]
     * when trans_b), C is [M,N]. C = alpha*op(A)*op(B) + beta*C (beta 0: C is not read). */
    [PT_OP_GEMM] = {
        .name = "gemm", .summary = "C = alpha*op(A)*op(B) + beta*C",
        .nt = 3, .arg = {IN("A"), IN("B"), OUT("C")}, .flags = PT_OPF_MATH,
        .shapes = gemm_shapes, .flops = gemm_flops, .cases = {PT_CASES_GEMM},
    },
    /* y [N,C] or [N,C,H,W]; y[n,c,...] += bias[c], in place */
    [PT_OP_BIAS_ADD] = {
        .name = "bias_add", .summary = "y[n,c,...] += bias[c]",
        .nt = 2, .arg = {LINOUT("y"), IN("bias")},
        .shapes = bias_shapes, .flops = per_in1, .cases = {PT_CASES_BIAS},
    },
    /* dbias = (accumulate ? dbias : 0) + the sum of dy over n, h, w */
    [PT_OP_BIAS_GRAD] = {
        .name = "bias_grad", .summary = "dbias[c] = sum of dy over n,h,w (+ dbias)",
        .nt = 2, .arg = {XIN("dy"), OUT("dbias")}, .flags = PT_OPF_ACCUMULATE,
        .shapes = bias_shapes, .flops = per_in1, .cases = {PT_CASES_BIAS},
    },
    /* x [N,C,H,W], w [K,C,R,S], y [N,K,P,Q], P = (H + 2*pad - R)/stride + 1 (Q likewise).
     * Cross-correlation as PyTorch's conv2d, no bias: y = conv(x, w) + (accumulate ? y : 0).
     * Uses the op's workspace when the backend's workspace_size asked for one. The three
     * convolution kinds and GEMM take a math mode (pt_op.math): x, w, dy, A and B are rounded to
     * it before they are multiplied; outputs and sums stay float32. */
    [PT_OP_CONV2D_FWD] = {
        .name = "conv2d_fwd", .summary = "y = conv2d(x, w) (+ y)",
        .nt = 3, .arg = {LIN("x"), IN("w"), LOUT("y")}, .flags = PT_OPF_ACCUMULATE | PT_OPF_MATH,
        .shapes = conv_shapes, .flops = conv_flops, .cases = {PT_CASES_CONV},
    },
    /* dx = (accumulate ? dx : 0) + conv2d's input gradient */
    [PT_OP_CONV2D_BWD_DATA] = {
        .name = "conv2d_bwd_data", .summary = "dx = conv2d input gradient of dy (+ dx)",
        .nt = 3, .arg = {XOUT("dx"), IN("w"), XIN("dy")}, .flags = PT_OPF_ACCUMULATE | PT_OPF_MATH,
        .shapes = conv_shapes, .flops = conv_flops, .cases = {PT_CASES_CONV},
    },
    /* dw = (accumulate ? dw : 0) + conv2d's weight gradient */
    [PT_OP_CONV2D_BWD_FILTER] = {
        .name = "conv2d_bwd_filter", .summary = "dw = conv2d weight gradient of x and dy (+ dw)",
        .nt = 3, .arg = {LIN("x"), OUT("dw"), XIN("dy")}, .flags = PT_OPF_ACCUMULATE | PT_OPF_MATH,
        .shapes = conv_shapes, .flops = conv_flops, .cases = {PT_CASES_CONV},
    },
    /* x [N,C,H,W], the rest [C]. Batch statistics over (N,H,W), the biased variance for the
     * normalisation; running_mean = (1-momentum)*running_mean + momentum*mean, running_var =
     * (1-momentum)*running_var + momentum*var*M/(M-1), M = N*H*W (PyTorch); save_invstd =
     * 1/sqrt(var_biased + eps). y is not x's memory. With the residual z (PT_CAP_BN_ADD),
     * y = BN(x) + z, the normalised value rounded to float before the sum as the separate add
     * reads it, then the fused ReLU; y may be z's memory. */
    [PT_OP_BN_FWD_TRAIN] = {
        .name = "bn_fwd_train", .summary = "batch-norm forward with batch statistics (+ z)",
        .nt = 9, .nt_min = 8, .tail_caps = PT_CAP_BN_ADD,
        .arg = {LIN("x"), IN("gamma"), IN("beta"), LOUT("y"), INOUT("running_mean"), INOUT("running_var"),
                OUT("save_mean"), OUT("save_invstd"), LIN("z")},
        .flags = PT_OPF_FUSED_RELU, .may_alias = {[3] = OF(8)},
        .shapes = bn_train_shapes, .flops = bn_train_flops, .cases = {PT_CASES_BN},
    },
    /* y = gamma*(x - running_mean)/sqrt(running_var + eps) + beta (+ z, as in the training
     * forward); y may be x's or z's memory */
    [PT_OP_BN_FWD_EVAL] = {
        .name = "bn_fwd_eval", .summary = "batch-norm forward with running statistics (+ z)",
        .nt = 7, .nt_min = 6, .tail_caps = PT_CAP_BN_ADD,
        .arg = {LIN("x"), IN("gamma"), IN("beta"), LOUT("y"), IN("running_mean"), IN("running_var"), LIN("z")},
        .flags = PT_OPF_FUSED_RELU, .may_alias = {[3] = OF(0) | OF(6)},
        .shapes = bn_eval_shapes, .flops = bn_eval_flops, .cases = {PT_CASES_BN},
    },
    /* dx = (accumulate ? dx : 0) + BN_FWD_TRAIN's input gradient; dgamma and dbeta are
     * overwritten. dx may be dy's memory when accumulate is 0. */
    [PT_OP_BN_BWD] = {
        .name = "bn_bwd", .summary = "batch-norm backward (training statistics)",
        .nt = 8,
        .arg = {LIN("x"), XIN("dy"), IN("gamma"), IN("save_mean"), IN("save_invstd"), XOUT("dx"), OUT("dgamma"),
                OUT("dbeta")},
        .flags = PT_OPF_ACCUMULATE, .may_alias = {[5] = OF(1)},
        .shapes = bn_bwd_shapes, .flops = bn_bwd_flops, .cases = {PT_CASES_BN},
    },
    /* y = max(x, 0) (NaN stays NaN); y may be x's memory */
    [PT_OP_RELU_FWD] = {
        .name = "relu_fwd", .summary = "y = max(x, 0)",
        .nt = 2, .arg = {LIN("x"), LOUT("y")}, .flags = PT_OPF_POINTWISE, .may_alias = {[1] = OF(0)},
        .shapes = same_numel, .flops = per_x1, .grad_kind = PT_OP_RELU_BWD, .grad_reads_output = 1,
        .cases = {PT_CASES_POINTWISE_FWD, -25.0f, 25.0f},
    },
    /* y is the forward's output. dx = (accumulate ? dx : 0) + (y > 0 ? dy : 0); dx may be dy's
     * memory when accumulate is 0. */
    [PT_OP_RELU_BWD] = {
        .name = "relu_bwd", .summary = "dx = (y > 0 ? dy : 0) (+ dx)",
        .nt = 3, .arg = {LIN("y"), XIN("dy"), XOUT("dx")}, .flags = PT_OPF_POINTWISE | PT_OPF_ACCUMULATE,
        .may_alias = {[2] = OF(1)},
        .shapes = same_numel, .flops = per_x1, .cases = {PT_CASES_POINTWISE_BWD, -1.0f, 1.0f, 1},
    },
    /* x [N,C,H,W], y [N,C,P,Q], argmax (shape of y): index h*W + w of the maximum inside x's
     * plane (the first maximum in row-major window order wins; NaN propagates). Window
     * pool.k x pool.k, step pool.stride, padding pool.pad (padded cells never win);
     * P = (H + 2*pad - k)/stride + 1 (floor). */
    [PT_OP_MAXPOOL_FWD] = {
        .name = "maxpool_fwd", .summary = "y = max over each window, argmax = where",
        .nt = 3, .arg = {LIN("x"), LOUT("y"), XOUT_I32("argmax")},
        .shapes = maxpool_fwd_shapes, .flops = maxpool_fwd_flops, .cases = {PT_CASES_POOL},
    },
    /* dx = (accumulate ? dx : 0) + the scatter-add of dy at argmax */
    [PT_OP_MAXPOOL_BWD] = {
        .name = "maxpool_bwd", .summary = "dx = dy added at argmax (+ dx)",
        .nt = 3, .arg = {XIN("dy"), XIN_I32("argmax"), XOUT("dx")}, .flags = PT_OPF_ACCUMULATE,
        .shapes = maxpool_bwd_shapes, .flops = per_in1, .cases = {PT_CASES_POOL},
    },
    /* x [N,C,H,W], y [N,C]: the mean over H,W */
    [PT_OP_GAP_FWD] = {
        .name = "gap_fwd", .summary = "y[n,c] = mean of x over h,w",
        .nt = 2, .arg = {LIN("x"), OUT("y")},
        .shapes = gap_fwd_shapes, .flops = per_in1, .cases = {PT_CASES_GAP},
    },
    /* dy [N,C], dx [N,C,H,W]: dx = (accumulate ? dx : 0) + dy/(H*W) */
    [PT_OP_GAP_BWD] = {
        .name = "gap_bwd", .summary = "dx = dy/(H*W) (+ dx)",
        .nt = 2, .arg = {IN("dy"), XOUT("dx")}, .flags = PT_OPF_ACCUMULATE,
        .shapes = gap_bwd_shapes, .flops = per_x1, .cases = {PT_CASES_GAP},
    },
    /* x [N,...]; y may be x's memory; mask (x's shape). For sample n and element e inside the
     * sample: u = pt_rng_uniform(dropout.seed, PT_RNG_DROPOUT, dropout.stream,
     * dropout.sample_base + n, e); keep = u >= p; mask = keep ? 1/(1-p) : 0; y = x*mask. The
     * same (seed, stream, global sample) gives the same mask whatever the device split. */
    [PT_OP_DROPOUT_FWD] = {
        .name = "dropout_fwd", .summary = "y = x*mask, mask from (seed, stream, sample, element)",
        .nt = 3, .arg = {IN("x"), OUT("y"), OUT("mask")}, .may_alias = {[1] = OF(0)},
        .shapes = same_numel, .flops = per_x2, .cases = {PT_CASES_DROPOUT},
    },
    /* dx = (accumulate ? dx : 0) + dy*mask; dx may be dy's memory when accumulate is 0 */
    [PT_OP_DROPOUT_BWD] = {
        .name = "dropout_bwd", .summary = "dx = dy*mask (+ dx)",
        .nt = 3, .arg = {IN("dy"), IN("mask"), OUT("dx")}, .flags = PT_OPF_POINTWISE | PT_OPF_ACCUMULATE,
        .may_alias = {[2] = OF(0)},
        .shapes = same_numel, .flops = per_x1, .cases = {PT_CASES_DROPOUT},
    },
    /* Softmax cross-entropy with label smoothing, forward and backward in one. logits [N,K],
     * labels [N] (each in 0..K-1), loss [N], dlogits [N,K] or a tensor with ndim 0 to skip the
     * gradient. q = (1 - smoothing)*onehot(label) + smoothing/K; loss[n] = -sum_k
     * q_k*log_softmax_k; dlogits = grad_scale*(softmax - q) (grad_scale is 1/global batch for a
     * mean loss). Mixup/cutmix targets (6 operands): labels2 [N], lam [N];
     * q = lam*t(label) + (1-lam)*t(label2), t(y) = (1-smoothing)*onehot(y) + smoothing/K. */
    [PT_OP_XENT] = {
        .name = "xent", .summary = "softmax cross-entropy and its gradient (smoothing, mixup)",
        .nt = 6, .nt_min = 4, .tail_caps = PT_CAP_MIXUP_TARGETS,
        .arg = {IN("logits"), IN_I32("labels"), OUT("loss"), OPT_OUT("dlogits"), IN_I32("labels2"), IN("lam")},
        .shapes = xent_shapes, .absent = xent_absent, .flops = xent_flops, .cases = {PT_CASES_XENT},
    },
    /* Fused SGD over a flat range, PyTorch semantics; the momentum buffer is not used when
     * momentum is 0. g = grad + weight_decay*param; if momentum != 0: buf = first_step ? g :
     * momentum*buf + (1 - dampening)*g, g = nesterov ? g + momentum*buf : buf; param -= lr*g. */
    [PT_OP_SGD] = {
        .name = "sgd", .summary = "SGD update (momentum, dampening, Nesterov, weight decay)",
        .nt = 3, .arg = {INOUT("param"), IN("grad"), OPT_INOUT("momentum_buffer")},
        .shapes = same_numel, .absent = sgd_absent, .flops = sgd_flops, .cases = {PT_CASES_OPTIM},
    },
    /* Fused Adam/AdamW over a flat range, PyTorch semantics; step is the 1-based step count
     * after this update. decoupled (AdamW): param *= 1 - lr*weight_decay; else g = grad +
     * weight_decay*param. m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g; mhat = m/(1-b1^step);
     * vhat = v/(1-b2^step); param -= lr*mhat/(sqrt(vhat) + eps). */
    [PT_OP_ADAM] = {
        .name = "adam", .summary = "Adam/AdamW update",
        .nt = 4, .arg = {INOUT("param"), IN("grad"), INOUT("exp_avg"), INOUT("exp_avg_sq")},
        .shapes = adam_shapes, .flops = adam_flops, .cases = {PT_CASES_OPTIM},
    },
    /* Fused RMSprop over a flat range, PyTorch semantics (torch.optim.RMSprop); the momentum
     * buffer is not used when momentum is 0, grad_avg unless centered. g = grad +
     * weight_decay*param; square_avg = alpha*square_avg + (1-alpha)*g*g; centered: grad_avg =
     * alpha*grad_avg + (1-alpha)*g, avg = sqrt(square_avg - grad_avg^2) + eps; else avg =
     * sqrt(square_avg) + eps; momentum != 0: buf = momentum*buf + g/avg, param -= lr*buf; else
     * param -= lr*g/avg. State starts at zero (no first-step special case). */
    [PT_OP_RMSPROP] = {
        .name = "rmsprop", .summary = "RMSprop update (momentum, centered, weight decay)",
        .nt = 5,
        .arg = {INOUT("param"), IN("grad"), INOUT("square_avg"), OPT_INOUT("momentum_buffer"),
                OPT_INOUT("grad_avg")},
        .shapes = rmsprop_shapes, .absent = rmsprop_absent, .flops = rmsprop_flops, .cases = {PT_CASES_OPTIM},
    },
    /* ---- attention and pooling ops of the model zoo (SE, CBAM) ---- */
    /* x [N,C,H,W], s either [N,C] (one factor per channel: SE/CBAM channel attention) or
     * [N,1,H,W] (one per pixel, broadcast over channels: CBAM spatial attention), y [N,C,H,W]
     * (neither x's nor s's memory). y = x*s + (accumulate ? y : 0). The input gradient is this
     * op with x = dy. */
    [PT_OP_BCAST_MUL] = {
        .name = "bcast_mul", .summary = "y = x*s, s per channel or per pixel (+ y)",
        .nt = 3, .arg = {XIN("x"), XIN("s"), XOUT("y")}, .flags = PT_OPF_ACCUMULATE,
        .shapes = bcast_mul_shapes, .flops = per_x1, .cases = {PT_CASES_BCAST_MUL},
    },
    /* ds = (accumulate ? ds : 0) + the sum of x*dy over what s was broadcast over (H,W for
     * [N,C]; C for [N,1,H,W]) */
    [PT_OP_BCAST_MUL_GRAD] = {
        .name = "bcast_mul_grad", .summary = "ds = sum of x*dy over the broadcast (+ ds)",
        .nt = 3, .arg = {XIN("x"), XIN("dy"), XOUT("ds")}, .flags = PT_OPF_ACCUMULATE,
        .shapes = bcast_grad_shapes, .flops = per_in1, .cases = {PT_CASES_BCAST_MUL},
    },
    /* y = 1/(1 + exp(-x)); y may be x's memory */
    [PT_OP_SIGMOID_FWD] = {
        .name = "sigmoid_fwd", .summary = "y = 1/(1 + exp(-x))",
        .nt = 2, .arg = {XIN("x"), XOUT("y")}, .flags = PT_OPF_POINTWISE, .may_alias = {[1] = OF(0)},
        .shapes = same_numel, .flops = per_x4, .grad_kind = PT_OP_SIGMOID_BWD, .grad_reads_output = 1,
        .cases = {PT_CASES_POINTWISE_FWD, -100.0f, 100.0f},
    },
    /* y is the forward's output. dx = (accumulate ? dx : 0) + dy*(y*(1 - y)); dx may be dy's
     * memory when accumulate is 0. */
    [PT_OP_SIGMOID_BWD] = {
        .name = "sigmoid_bwd", .summary = "dx = dy*y*(1 - y) (+ dx)",
        .nt = 3, .arg = {XIN("y"), XIN("dy"), XOUT("dx")}, .flags = PT_OPF_POINTWISE | PT_OPF_ACCUMULATE,
        .may_alias = {[2] = OF(1)},
        .shapes = same_numel, .flops = per_x4, .cases = {PT_CASES_POINTWISE_BWD, 0.0f, 1.0f},
    },
    /* x [N,C,H,W] (H*W >= 1), y [N,C], argmax [N,C]: y = the max over H,W, argmax its index
     * h*W + w (the first maximum in row-major order wins; NaN propagates, the first NaN wins) */
    [PT_OP_GMP_FWD] = {
        .name = "gmp_fwd", .summary = "y[n,c] = max of x over h,w, argmax = where",
        .nt = 3, .arg = {XIN("x"), OUT("y"), OUT_I32("argmax")},
        .shapes = gmp_fwd_shapes, .flops = per_in1, .cases = {PT_CASES_GLOBAL_MAXPOOL},
    },
    /* dy [N,C], argmax [N,C], dx [N,C,H,W]: dx = (accumulate ? dx : 0) + (h*W + w == argmax ?
     * dy : 0) */
    [PT_OP_GMP_BWD] = {
        .name = "gmp_bwd", .summary = "dx = dy at argmax, 0 elsewhere (+ dx)",
        .nt = 3, .arg = {IN("dy"), IN_I32("argmax"), XOUT("dx")}, .flags = PT_OPF_ACCUMULATE,
        .shapes = gmp_bwd_shapes, .flops = per_x1, .cases = {PT_CASES_GLOBAL_MAXPOOL},
    },
    /* Mean and max over channels, concatenated (CBAM's spatial-attention input): x [N,C,H,W]
     * (C >= 1), y [N,2,H,W], argmax [N,1,H,W]. y[n,0] = mean over c of x, y[n,1] = max over c,
     * argmax = that channel (the first maximum wins; NaN propagates, the first NaN wins). */
    [PT_OP_CHANNEL_POOL_FWD] = {
        .name = "channel_pool_fwd", .summary = "y = mean and max of x over channels, argmax = where",
        .nt = 3, .arg = {XIN("x"), XOUT("y"), XOUT_I32("argmax")},
        .shapes = cpool_fwd_shapes, .flops = per_in1, .cases = {PT_CASES_CHANNEL_POOL},
    },
    /* dy [N,2,H,W], argmax [N,1,H,W], dx [N,C,H,W]: dx = (accumulate ? dx : 0) +
     * dy[n,0,h,w]/C + (c == argmax ? dy[n,1,h,w] : 0) */
    [PT_OP_CHANNEL_POOL_BWD] = {
        .name = "channel_pool_bwd", .summary = "dx = dy[mean]/C + dy[max] at argmax (+ dx)",
        .nt = 3, .arg = {XIN("dy"), XIN_I32("argmax"), XOUT("dx")}, .flags = PT_OPF_ACCUMULATE,
        .shapes = cpool_bwd_shapes, .flops = per_x2, .cases = {PT_CASES_CHANNEL_POOL},
    },
    /* ---- synchronised BatchNorm (--sync-bn): batch statistics over every device of every
     * process. The core sums the partial sums between the ops (device collectives or host
     * memory), so each op sees the same global sums; p.bn.count is the global element count
     * per channel M = (global batch)*H*W. Sums are about a shift (the running mean) so that
     * the variance does not cancel catastrophically. ---- */
    /* x [N,C,H,W], shift [C], stats [2C]: stats[c] = sum over (N,H,W) of (x - shift[c]),
     * stats[C+c] = the sum of (x - shift[c])^2 */
    [PT_OP_BN_SYNC_STATS] = {
        .name = "bn_sync_stats", .summary = "per-channel sums of x - shift and its squares",
        .nt = 3, .arg = {XIN("x"), IN("shift"), OUT("stats")},
        .shapes = bn_sync_stats_shapes, .flops = bn_sync_flops, .cases = {PT_CASES_BN_SYNC},
    },
    /* running_mean is the shift of BN_SYNC_STATS (read before it is updated); stats: the global
     * sums in, mean | invstd out (in place). mean = shift + s1/M, var = s2/M - (s1/M)^2
     * (biased, clamped at 0), invstd = 1/sqrt(var + eps); running statistics as BN_FWD_TRAIN
     * (unbiased var*M/(M-1)); y = (x - mean)*gamma*invstd + beta; y is not x's memory. */
    [PT_OP_BN_SYNC_FWD] = {
        .name = "bn_sync_fwd", .summary = "batch-norm forward from the global sums",
        .nt = 7,
        .arg = {XIN("x"), IN("gamma"), IN("beta"), XOUT("y"), INOUT("running_mean"), INOUT("running_var"),
                INOUT("stats")},
        .shapes = bn_sync_fwd_shapes, .flops = bn_sync_flops, .cases = {PT_CASES_BN_SYNC},
    },
    /* stats (mean | invstd) [2C], bstats [2C] out: bstats[c] = sum of dy, bstats[C+c] = sum of
     * dy*(x - mean); dgamma, dbeta overwritten with this device's share (dbeta = sum dy,
     * dgamma = sum dy*(x - mean)*invstd) */
    [PT_OP_BN_SYNC_BWD_STATS] = {
        .name = "bn_sync_bwd_stats", .summary = "per-channel sums of dy and dy*(x - mean)",
        .nt = 6, .arg = {XIN("x"), XIN("dy"), IN("stats"), OUT("bstats"), OUT("dgamma"), OUT("dbeta")},
        .shapes = bn_sync_bwd_stats_shapes, .flops = bn_sync_flops, .cases = {PT_CASES_BN_SYNC},
    },
    /* dx = (accumulate ? dx : 0) + gamma*invstd*(dy - sdy/M - (x-mean)*invstd^2*sdyx/M) with
     * the global sums bstats; dx may be dy's memory when accumulate is 0 */
    [PT_OP_BN_SYNC_BWD] = {
        .name = "bn_sync_bwd", .summary = "batch-norm input gradient from global sums (+ dx)",
        .nt = 6, .arg = {XIN("x"), XIN("dy"), IN("gamma"), IN("stats"), IN("bstats"), XOUT("dx")},
        .flags = PT_OPF_ACCUMULATE, .may_alias = {[5] = OF(1)},
        .shapes = bn_sync_bwd_shapes, .flops = bn_sync_flops, .cases = {PT_CASES_BN_SYNC},
    },
    /* ---- activations ---- */
    /* y = x*s with s = 1/(1 + exp(-x)): SiLU (swish), PyTorch's nn.SiLU; y may be x's memory,
     * but the layer keeps x, which the gradient reads */
    [PT_OP_SILU_FWD] = {
        .name = "silu_fwd", .summary = "y = x*sigmoid(x)",
        .nt = 2, .arg = {XIN("x"), XOUT("y")}, .flags = PT_OPF_POINTWISE, .may_alias = {[1] = OF(0)},
        .shapes = same_numel, .flops = per_x4, .grad_kind = PT_OP_SILU_BWD, .grad_reads_output = 0,
        .cases = {PT_CASES_POINTWISE_FWD, -100.0f, 100.0f},
    },
    /* x is the forward's input, s = 1/(1 + exp(-x)): dx = (accumulate ? dx : 0) +
     * dy*(s*(1 + x*(1 - s))); dx may be dy's memory when accumulate is 0 */
    [PT_OP_SILU_BWD] = {
        .name = "silu_bwd", .summary = "dx = dy*s*(1 + x*(1 - s)), s = sigmoid(x) (+ dx)",
        .nt = 3, .arg = {XIN("x"), XIN("dy"), XOUT("dx")}, .flags = PT_OPF_POINTWISE | PT_OPF_ACCUMULATE,
        .may_alias = {[2] = OF(1)},
        .shapes = same_numel, .flops = per_x8, .cases = {PT_CASES_POINTWISE_BWD, -20.0f, 20.0f},
    },
    /* ---- loss scaling ---- */
    /* g = g*inv_scale in place; found (one element) = 1 when any element of g was Inf or NaN,
     * else left as it was: the core fills it with 0 once, then one flag gathers any number of
     * tensors. fp16 training's gradient unscale and overflow check (PyTorch's GradScaler).
     * With a step record, the factor may come from it (polytrain/op.h, PT_AMP_*). */
    [PT_OP_AMP_UNSCALE] = {
        .name = "amp_unscale", .summary = "g *= inv_scale; found = 1 if g held Inf or NaN",
        .nt = 2, .arg = {INOUT("g"), INOUT("found")},
        .shapes = amp_unscale_shapes, .flops = per_x1, .cases = {PT_CASES_AMP_UNSCALE},
    },
};

const pt_op_desc *pt_op_describe(pt_op_kind kind)
{
    if ((int)kind < 0 || kind >= PT_OP_KIND_COUNT || !table[kind].name) return NULL;
    return &table[kind];
}

const char *pt_op_name(pt_op_kind kind)
{
    const pt_op_desc *d = pt_op_describe(kind);
    return d ? d->name : "unknown";
}

double pt_op_flops(const pt_op *op)
{
    const pt_op_desc *d = pt_op_describe(op->kind);
    return d && d->flops ? d->flops(op) : 0.0;
}

int pt_op_is_activation(pt_op_kind kind)
{
    const pt_op_desc *d = pt_op_describe(kind);
    return d && (d->flags & PT_OPF_POINTWISE) && d->grad_kind != 0 && d->nt == 2;
}
