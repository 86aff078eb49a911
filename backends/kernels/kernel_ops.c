/* Every op kind as shared-kernel calls and SGEMMs (kernel_ops.h): the argument lists and
 * launch sizes of backends/kernels/<name>.cl, once for both device backends. Elementwise
 * kernels run one item per element; per-channel reductions one work-group per channel. The
 * host-side constants (Adam's bias corrections, RMSprop's 1 - alpha) are formed as the cpu
 * backend forms them, in double, so that the kernels repeat its float arithmetic. GEMMs and
 * convolutions in a math mode (pt_op.math): tf32 is the device SGEMM's, bf16/fp16 round the
 * multiplied operands into the workspace (TO_LOWP) and multiply with the device's gemm16. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "backends/kernels/kernel_ops.h"
#include "backends/kernels/kernel_winograd.h"
#include "core/rng.h"

/* ---- calls ---- */

void pt_kcall_begin(pt_kcall *c, pt_kernel_id kernel, size_t count)
{
    c->kernel = kernel;
    c->nargs = 0;
    c->count = count;
}

static pt_karg *next(pt_kcall *c, char type)
{
    pt_karg *a = &c->arg[c->nargs < PT_KCALL_MAX_ARGS ? c->nargs : PT_KCALL_MAX_ARGS];
    c->nargs++;
    a->type = type;
    return a;
}

void pt_karg_mem(pt_kcall *c, pt_mem m) { next(c, 'm')->v.m = m; }
void pt_karg_tensor(pt_kcall *c, const pt_tensor *t) { pt_karg_mem(c, t->mem); }
void pt_karg_int(pt_kcall *c, int v) { next(c, 'i')->v.i = v; }
void pt_karg_uint(pt_kcall *c, uint32_t v) { next(c, 'u')->v.u = v; }
void pt_karg_long(pt_kcall *c, int64_t v) { next(c, 'l')->v.l = v; }
void pt_karg_ulong(pt_kcall *c, uint64_t v) { next(c, 'U')->v.ul = v; }
void pt_karg_float(pt_kcall *c, float v) { next(c, 'f')->v.f = v; }

pt_status pt_kcall_check(const pt_kcall *c, const char *backend, pt_error *err)
{
    const pt_kernel_info *k = pt_kernel_info_of(c->kernel);
    if (!k) return pt_fail(err, PT_ERR_INVALID, "%s: kernel id %d is not in the kernel table", backend, (int)c->kernel);
    const int want = (int)strlen(k->params);
    int same = c->nargs == want;
    for (int i = 0; same && i < want; i++) same = c->arg[i].type == k->params[i];
    if (same) return PT_OK;
    char got[PT_KCALL_MAX_ARGS + 1];
    int n = c->nargs < PT_KCALL_MAX_ARGS ? c->nargs : PT_KCALL_MAX_ARGS;
    for (int i = 0; i < n; i++) got[i] = c->arg[i].type;
    got[n] = '\0';
    return pt_fail(err, PT_ERR_BACKEND,
                   "%s: kernel %s takes (%s), the call passes %d arguments (%s%s) "
                   "(backends/kernels/kernel_ops.c out of step with kernel_table.h)",
                   backend, k->name, k->params, c->nargs, got, c->nargs > n ? "..." : "");
}

static pt_status launch(const pt_kdev *dev, const pt_kcall *c, pt_error *err)
{
    PT_TRY(pt_kcall_check(c, dev->backend, err));
    return dev->launch(dev->ctx, c, err);
}

/* The kernel that takes k's parameters followed by the storage codes of the op's lowp operands
 * (kernel_table.h), or PT_K_COUNT. */
static pt_kernel_id a16_twin(pt_kernel_id k)
{
    switch (k) {
    case PT_K_ADD: return PT_K_ADD_A16;
    case PT_K_BIAS_ADD: return PT_K_BIAS_ADD_A16;
    case PT_K_RELU_FWD: return PT_K_RELU_FWD_A16;
    case PT_K_RELU_BWD: return PT_K_RELU_BWD_A16;
    case PT_K_BN_FWD_TRAIN: return PT_K_BN_FWD_TRAIN_A16;
    case PT_K_BN_FWD_EVAL: return PT_K_BN_FWD_EVAL_A16;
    case PT_K_BN_BWD: return PT_K_BN_BWD_A16;
    case PT_K_MAXPOOL_FWD: return PT_K_MAXPOOL_FWD_A16;
    case PT_K_GAP_FWD: return PT_K_GAP_FWD_A16;
    default: return PT_K_COUNT;
    }
}

static pt_kernel_id kernel_of_kind(pt_op_kind kind)
{
    switch (kind) {
    case PT_OP_BIAS_ADD: return PT_K_BIAS_ADD;
    case PT_OP_BN_FWD_TRAIN: return PT_K_BN_FWD_TRAIN;
    case PT_OP_BN_FWD_EVAL: return PT_K_BN_FWD_EVAL;
    case PT_OP_BN_BWD: return PT_K_BN_BWD;
    case PT_OP_MAXPOOL_FWD: return PT_K_MAXPOOL_FWD;
    case PT_OP_GAP_FWD: return PT_K_GAP_FWD;
    default: return pt_kernel_for_pointwise(kind);
    }
}

/* The operands whose 16-bit storage op's kernel reads and writes itself (its twin). */
static unsigned native16(const pt_kdev *dev, const pt_op *op, const pt_op_desc *d)
{
    const pt_kernel_id k = kernel_of_kind(op->kind);
    if (dev->act16_copy || k == PT_K_COUNT || a16_twin(k) == PT_K_COUNT) return 0;
    if (dev->act16_copy_channels && pt_kernel_info_of(k)->launch == PT_K_CHANNELS) return 0;
    unsigned m = 0;
    for (int i = 0; i < d->nt && i < PT_OP_MAX_OPERANDS; i++)
        if (d->arg[i].lowp) m |= 1u << i;
    return m;
}

/* The kinds with a channels-last kernel of their own (ops_nhwc.cl). */
static int has_nhwc_form(pt_op_kind kind)
{
    return kind == PT_OP_BIAS_ADD || kind == PT_OP_BN_FWD_TRAIN || kind == PT_OP_BN_FWD_EVAL || kind == PT_OP_BN_BWD ||
           kind == PT_OP_MAXPOOL_FWD ||
           kind == PT_OP_MAXPOOL_BWD || kind == PT_OP_GAP_FWD || kind == PT_OP_GAP_BWD;
}

/* Whether op's kernel reads its NHWC operands as stored: a pointwise kind or AXPY (the same rule
 * over memory order) whose every used operand is a 4-D NHWC image, or a kind with an NHWC form
 * whose every 4-D image operand is NHWC. */
static int native_nhwc(const pt_op *op, const pt_op_desc *d)
{
    const int pointwise = (d->flags & PT_OPF_POINTWISE) || op->kind == PT_OP_AXPY;
    if (!pointwise && !has_nhwc_form(op->kind)) return 0;
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++) {
        if (pt_op_operand_absent(op, i) || pt_act16_nhwc(op, i)) continue;
        if (pointwise || (d->arg[i].img && op->t[i].ndim == 4)) return 0;
    }
    return 1;
}

unsigned pt_kops_act16_native(const pt_kdev *dev, const pt_op *op)
{
    const pt_op_desc *d = pt_op_describe(op->kind);
    if (!d) return 0;
    const unsigned m16 = native16(dev, op, d);
    const int nhwc = native_nhwc(op, d);
    unsigned m = 0, nhwc_ops = 0;
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++) {
        if (pt_act16_nhwc(op, i)) nhwc_ops |= 1u << i;
        if (pt_act16_stored(op, i) && (!pt_act16_operand(op, i) || ((m16 >> i) & 1u)) &&
            (!pt_act16_nhwc(op, i) || nhwc))
            m |= 1u << i;
    }
    /* the NHWC form reads every operand in one order: once one goes to an NCHW copy (a 16-bit
     * operand without a twin), all do */
    if ((nhwc_ops & m) != nhwc_ops) m &= ~nhwc_ops;
    return m;
}

static int kdt(pt_dtype t) { return t == PT_BF16 ? 1 : t == PT_F16 ? 2 : 0; /* act16.cl's PT_KDT_* */ }

static int any16(const pt_op *op)
{
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++)
        if (pt_act16_operand(op, i)) return 1;
    return 0;
}

/* Launches the call built for op's float32 kernel; where op still has 16-bit operands (those its
 * kernels take natively), the kernel's 16-bit twin with their storage codes. */
static pt_status launch_op(const pt_kdev *dev, const pt_op *op, pt_kcall *c, pt_error *err)
{
    if (any16(op)) {
        const pt_op_desc *d = pt_op_describe(op->kind);
        const pt_kernel_id twin = a16_twin(c->kernel);
        if (twin == PT_K_COUNT)
            return pt_fail(err, PT_ERR_UNSUPPORTED, "%s %s: the kernel %s takes no 16-bit operands", dev->backend,
                           d->name, pt_kernel_info_of(c->kernel)->name);
        c->kernel = twin;
        /* every lowp operand of the kind: one the op leaves out (nt_min) as float32 */
        for (int i = 0; i < d->nt && i < PT_OP_MAX_OPERANDS; i++) {
            if (!d->arg[i].lowp) continue;
            if (i >= op->nt) {
                pt_karg_int(c, kdt(PT_F32));
                continue;
            }
            if (pt_act16_operand(op, i) && op->t[i].mem.off % 4)
                return pt_fail(err, PT_ERR_INVALID, "%s %s: 16-bit operand %d (%s) at byte offset %zu, expected a "
                               "multiple of 4", dev->backend, d->name, i, d->arg[i].name, op->t[i].mem.off);
            pt_karg_int(c, kdt(op->t[i].dtype));
        }
    }
    return launch(dev, c, err);
}

/* ---- shapes ---- */

static int numel(const pt_tensor *t)
{
    return (int)pt_tensor_numel(t); /* run() checked it fits */
}

/* [N,C] or [N,C,H,W] as N x C planes of `inner` elements. */
static void channel_layout(const pt_tensor *t, int *n, int *c, int *inner)
{
    *n = (int)t->dim[0];
    *c = t->ndim > 1 ? (int)t->dim[1] : 1;
    int64_t in = 1;
    for (int i = 2; i < t->ndim; i++) in *= t->dim[i];
    *inner = (int)in;
}

static int plane(const pt_tensor *t) { return (int)(t->dim[2] * t->dim[3]); }

/* The operand a batch-norm forward's kernel gets as its residual z: z where the op has it (its
 * last), else y, which the kernel then does not read. */
static int bn_residual(const pt_op *op)
{
    const pt_op_desc *d = pt_op_describe(op->kind);
    return op->nt == d->nt ? d->nt - 1 : 3;
}

/* ---- one item per element (or plane, pixel, sample) ---- */

/* The pointwise rule (PT_OPF_POINTWISE): operands in order, the element count, accumulate,
 * the fused ReLU. */
static pt_status run_pointwise(const pt_kdev *dev, const pt_op *op, pt_kernel_id k, pt_error *err)
{
    pt_kcall c;
    const int n = numel(&op->t[op->nt - 1]);
    pt_kcall_begin(&c, k, (size_t)n);
    for (int i = 0; i < op->nt; i++) pt_karg_tensor(&c, &op->t[i]);
    pt_karg_int(&c, n);
    const unsigned flags = pt_op_describe(op->kind)->flags;
    if (flags & PT_OPF_ACCUMULATE) pt_karg_int(&c, op->accumulate);
    if (flags & PT_OPF_FUSED_RELU) pt_karg_int(&c, op->fuse_relu);
    return launch_op(dev, op, &c, err);
}

/* The step's record (pt_op.step) when the op has one, else any valid memory with the flag 0. */
static void karg_step(pt_kcall *c, const pt_op *op)
{
    pt_karg_mem(c, op->step.buf ? op->step : op->t[0].mem);
    pt_karg_int(c, op->step.buf != NULL);
}

/* A max-pool call's operands and window: the three tensors, the item count, H, W, P, Q, the
 * channel count (NHWC forms only), k, stride, padding. */
static void karg_pool(pt_kcall *c, const pt_op *op, const pt_tensor *x, const pt_tensor *y, int n, int channels)
{
    for (int i = 0; i < 3; i++) pt_karg_tensor(c, &op->t[i]);
    pt_karg_int(c, n);
    pt_karg_int(c, (int)x->dim[2]);
    pt_karg_int(c, (int)x->dim[3]);
    pt_karg_int(c, (int)y->dim[2]);
    pt_karg_int(c, (int)y->dim[3]);
    if (channels) pt_karg_int(c, (int)x->dim[1]);
    pt_karg_int(c, op->p.pool.k);
    pt_karg_int(c, op->p.pool.stride);
    pt_karg_int(c, op->p.pool.pad);
}

/* The channels-last kernels (ops_nhwc.cl) of an op whose image operands are all NHWC (the
 * native mask's rule): the NCHW call's operands with C added, then the storage codes of the
 * lowp operands. */
static pt_status run_nhwc(const pt_kdev *dev, const pt_op *op, pt_error *err)
{
    const pt_tensor *t = op->t;
    pt_kcall c;
    switch (op->kind) {
    case PT_OP_BIAS_ADD:
        pt_kcall_begin(&c, PT_K_BIAS_ADD_NHWC, (size_t)numel(&t[0]));
        pt_karg_tensor(&c, &t[0]);
        pt_karg_tensor(&c, &t[1]);
        pt_karg_int(&c, numel(&t[0]));
        pt_karg_int(&c, (int)t[0].dim[1]);
        pt_karg_int(&c, kdt(t[0].dtype));
        break;
    case PT_OP_BN_FWD_TRAIN:
    case PT_OP_BN_BWD: {
        /* one work-group per channel, as the NCHW reductions (run_channels) */
        const int fwd = op->kind == PT_OP_BN_FWD_TRAIN;
        int n, ch, inner;
        channel_layout(&t[0], &n, &ch, &inner);
        pt_kcall_begin(&c, fwd ? PT_K_BN_FWD_TRAIN_NHWC : PT_K_BN_BWD_NHWC, (size_t)ch);
        for (int i = 0; i < 8; i++) pt_karg_tensor(&c, &t[i]);
        if (fwd) pt_karg_tensor(&c, &t[bn_residual(op)]);
        pt_karg_int(&c, inner > 0 ? n : 0); /* no elements: N = 0 tells the kernel */
        pt_karg_int(&c, ch);
        pt_karg_int(&c, inner > 0 ? inner : 1);
        if (fwd) {
            pt_karg_float(&c, op->p.bn.eps);
            pt_karg_float(&c, op->p.bn.momentum);
            pt_karg_int(&c, op->fuse_relu);
            pt_karg_int(&c, op->nt > 8);
            pt_karg_int(&c, kdt(t[0].dtype));
            pt_karg_int(&c, kdt(t[3].dtype));
            pt_karg_int(&c, kdt(t[bn_residual(op)].dtype));
        } else {
            pt_karg_int(&c, op->accumulate);
            pt_karg_int(&c, kdt(t[0].dtype));
        }
        break;
    }
    case PT_OP_BN_FWD_EVAL:
        pt_kcall_begin(&c, PT_K_BN_FWD_EVAL_NHWC, (size_t)numel(&t[0]));
        for (int i = 0; i < 6; i++) pt_karg_tensor(&c, &t[i]);
        pt_karg_tensor(&c, &t[bn_residual(op)]);
        pt_karg_int(&c, numel(&t[0]));
        pt_karg_int(&c, (int)t[0].dim[1]);
        pt_karg_float(&c, op->p.bn.eps);
        pt_karg_int(&c, op->fuse_relu);
        pt_karg_int(&c, op->nt > 6);
        pt_karg_int(&c, kdt(t[0].dtype));
        pt_karg_int(&c, kdt(t[3].dtype));
        pt_karg_int(&c, kdt(t[bn_residual(op)].dtype));
        break;
    case PT_OP_MAXPOOL_FWD:
    case PT_OP_MAXPOOL_BWD: {
        const int fwd = op->kind == PT_OP_MAXPOOL_FWD;
        const pt_tensor *x = fwd ? &t[0] : &t[2], *y = fwd ? &t[1] : &t[0];
        /* an item per output element (forward) or input element (backward) */
        const int n = fwd ? numel(y) : numel(x);
        pt_kcall_begin(&c, fwd ? PT_K_MAXPOOL_FWD_NHWC : PT_K_MAXPOOL_BWD_NHWC, (size_t)n);
        karg_pool(&c, op, x, y, n, 1);
        if (fwd) {
            pt_karg_int(&c, kdt(t[0].dtype));
            pt_karg_int(&c, kdt(t[1].dtype));
        } else {
            pt_karg_int(&c, op->accumulate);
        }
        break;
    }
    case PT_OP_GAP_FWD: {
        const int planes = (int)(t[0].dim[0] * t[0].dim[1]), hw = plane(&t[0]);
        pt_kcall_begin(&c, PT_K_GAP_FWD_NHWC, (size_t)planes);
        pt_karg_tensor(&c, &t[0]);
        pt_karg_tensor(&c, &t[1]);
        pt_karg_int(&c, planes);
        pt_karg_int(&c, hw);
        pt_karg_int(&c, (int)t[0].dim[1]);
        pt_karg_float(&c, hw > 0 ? (float)(1.0 / (double)hw) : 0.0f);
        pt_karg_int(&c, kdt(t[0].dtype));
        break;
    }
    case PT_OP_GAP_BWD: {
        const int hw = plane(&t[1]);
        pt_kcall_begin(&c, PT_K_GAP_BWD_NHWC, hw > 0 ? (size_t)numel(&t[1]) : 0);
        pt_karg_tensor(&c, &t[0]);
        pt_karg_tensor(&c, &t[1]);
        pt_karg_int(&c, numel(&t[1]));
        pt_karg_int(&c, hw);
        pt_karg_int(&c, (int)t[1].dim[1]);
        pt_karg_float(&c, hw > 0 ? (float)(1.0 / (double)hw) : 0.0f);
        pt_karg_int(&c, op->accumulate);
        break;
    }
    default:
        return pt_fail(err, PT_ERR_UNSUPPORTED, "%s %s: no channels-last kernel", dev->backend, pt_op_name(op->kind));
    }
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++)
        if (pt_act16_operand(op, i) && op->t[i].mem.off % 4)
            return pt_fail(err, PT_ERR_INVALID, "%s %s: 16-bit operand %d at byte offset %zu, expected a multiple of 4",
                           dev->backend, pt_op_name(op->kind), i, op->t[i].mem.off);
    return launch(dev, &c, err);
}

static pt_status run_items(const pt_kdev *dev, const pt_op *op, pt_error *err)
{
    const pt_tensor *t = op->t;
    pt_kcall c;
    switch (op->kind) {
    case PT_OP_FILL:
        pt_kcall_begin(&c, PT_K_FILL, (size_t)numel(&t[0]));
        pt_karg_tensor(&c, &t[0]);
        pt_karg_int(&c, numel(&t[0]));
        pt_karg_float(&c, op->p.fill.value);
        break;
    case PT_OP_AMP_UNSCALE:
        pt_kcall_begin(&c, PT_K_AMP_UNSCALE, (size_t)numel(&t[0]));
        pt_karg_tensor(&c, &t[0]);
        pt_karg_tensor(&c, &t[1]);
        pt_karg_int(&c, numel(&t[0]));
        pt_karg_float(&c, op->p.amp.inv_scale);
        karg_step(&c, op);
        pt_karg_int(&c, op->p.amp.mode);
        break;
    case PT_OP_AXPY:
        pt_kcall_begin(&c, PT_K_AXPY, (size_t)numel(&t[1]));
        pt_karg_tensor(&c, &t[0]);
        pt_karg_tensor(&c, &t[1]);
        pt_karg_int(&c, numel(&t[1]));
        pt_karg_float(&c, op->p.axpy.alpha);
        pt_karg_int(&c, op->accumulate);
        karg_step(&c, op);
        break;
    case PT_OP_BIAS_ADD: {
        int n, ch, inner;
        channel_layout(&t[0], &n, &ch, &inner);
        pt_kcall_begin(&c, PT_K_BIAS_ADD, (size_t)numel(&t[0]));
        pt_karg_tensor(&c, &t[0]);
        pt_karg_tensor(&c, &t[1]);
        pt_karg_int(&c, numel(&t[0]));
        pt_karg_int(&c, ch);
        pt_karg_int(&c, inner);
        break;
    }
    case PT_OP_BN_FWD_EVAL: {
        int n, ch, inner;
        channel_layout(&t[0], &n, &ch, &inner);
        pt_kcall_begin(&c, PT_K_BN_FWD_EVAL, (size_t)numel(&t[0]));
        for (int i = 0; i < 6; i++) pt_karg_tensor(&c, &t[i]);
        pt_karg_tensor(&c, &t[bn_residual(op)]);
        pt_karg_int(&c, numel(&t[0]));
        pt_karg_int(&c, ch);
        pt_karg_int(&c, inner);
        pt_karg_float(&c, op->p.bn.eps);
        pt_karg_int(&c, op->fuse_relu);
        pt_karg_int(&c, op->nt > 6);
        break;
    }
    case PT_OP_BN_SYNC_BWD: {
        int n, ch, inner;
        channel_layout(&t[0], &n, &ch, &inner);
        if (op->p.bn.count <= 0) return PT_OK; /* no elements: nothing to write */
        pt_kcall_begin(&c, PT_K_BN_SYNC_BWD, (size_t)numel(&t[0]));
        for (int i = 0; i < 6; i++) pt_karg_tensor(&c, &t[i]);
        pt_karg_int(&c, numel(&t[0]));
        pt_karg_int(&c, ch);
        pt_karg_int(&c, inner > 0 ? inner : 1);
        pt_karg_float(&c, (float)op->p.bn.count);
        pt_karg_int(&c, op->accumulate);
        break;
    }
    case PT_OP_MAXPOOL_FWD:
    case PT_OP_MAXPOOL_BWD: {
        const int fwd = op->kind == PT_OP_MAXPOOL_FWD;
        const pt_tensor *x = fwd ? &t[0] : &t[2], *y = fwd ? &t[1] : &t[0];
        /* an item per output row (forward) or input row (backward) */
        const int n = (int)(fwd ? y->dim[0] * y->dim[1] * y->dim[2] : x->dim[0] * x->dim[1] * x->dim[2]);
        pt_kcall_begin(&c, fwd ? PT_K_MAXPOOL_FWD : PT_K_MAXPOOL_BWD, (size_t)n);
        karg_pool(&c, op, x, y, n, 0);
        if (!fwd) pt_karg_int(&c, op->accumulate);
        break;
    }
    case PT_OP_GAP_FWD: {
        const int planes = (int)(t[0].dim[0] * t[0].dim[1]), hw = plane(&t[0]);
        pt_kcall_begin(&c, PT_K_GAP_FWD, (size_t)planes);
        pt_karg_tensor(&c, &t[0]);
        pt_karg_tensor(&c, &t[1]);
        pt_karg_int(&c, planes);
        pt_karg_int(&c, hw);
        pt_karg_float(&c, hw > 0 ? (float)(1.0 / (double)hw) : 0.0f);
        break;
    }
    case PT_OP_GAP_BWD: {
        const int hw = plane(&t[1]);
        pt_kcall_begin(&c, PT_K_GAP_BWD, hw > 0 ? (size_t)numel(&t[1]) : 0);
        pt_karg_tensor(&c, &t[0]);
        pt_karg_tensor(&c, &t[1]);
        pt_karg_int(&c, numel(&t[1]));
        pt_karg_int(&c, hw);
        pt_karg_float(&c, hw > 0 ? (float)(1.0 / (double)hw) : 0.0f);
        pt_karg_int(&c, op->accumulate);
        break;
    }
    case PT_OP_DROPOUT_FWD: {
        const int n = (int)t[0].dim[0];
        const int per = n > 0 ? numel(&t[0]) / n : 0;
        const float p = op->p.dropout.p;
        pt_kcall_begin(&c, PT_K_DROPOUT_FWD, per > 0 ? (size_t)numel(&t[0]) : 0);
        for (int i = 0; i < 3; i++) pt_karg_tensor(&c, &t[i]);
        pt_karg_int(&c, numel(&t[0]));
        pt_karg_int(&c, per);
        pt_karg_float(&c, p);
        pt_karg_float(&c, p < 1.0f ? 1.0f / (1.0f - p) : 0.0f);
        pt_karg_ulong(&c, op->p.dropout.seed);
        pt_karg_uint(&c, PT_RNG_DROPOUT);
        pt_karg_ulong(&c, op->p.dropout.stream);
        pt_karg_long(&c, op->p.dropout.sample_base);
        karg_step(&c, op);
        break;
    }
    case PT_OP_XENT: {
        const int has_grad = t[3].ndim > 0, mixed = op->nt == 6;
        pt_kcall_begin(&c, mixed ? PT_K_XENT_MIX : PT_K_XENT, (size_t)t[0].dim[0]);
        pt_karg_tensor(&c, &t[0]);
        pt_karg_tensor(&c, &t[1]);
        if (mixed) {
            pt_karg_tensor(&c, &t[4]);
            pt_karg_tensor(&c, &t[5]);
        }
        pt_karg_tensor(&c, &t[2]);
        /* without a gradient, any valid buffer stands in for the unused argument */
        pt_karg_mem(&c, has_grad ? t[3].mem : t[2].mem);
        pt_karg_int(&c, (int)t[0].dim[0]);
        pt_karg_int(&c, (int)t[0].dim[1]);
        pt_karg_int(&c, has_grad);
        pt_karg_float(&c, op->p.xent.smoothing);
        pt_karg_float(&c, op->p.xent.grad_scale);
        karg_step(&c, op);
        break;
    }
    case PT_OP_SGD:
        pt_kcall_begin(&c, PT_K_SGD, (size_t)numel(&t[0]));
        pt_karg_tensor(&c, &t[0]);
        pt_karg_tensor(&c, &t[1]);
        /* with momentum 0 the buffer is never touched: the parameter stands in for it */
        pt_karg_mem(&c, op->p.sgd.momentum != 0.0f ? t[2].mem : t[0].mem);
        pt_karg_int(&c, numel(&t[0]));
        pt_karg_float(&c, op->p.sgd.lr);
        pt_karg_float(&c, op->p.sgd.momentum);
        pt_karg_float(&c, op->p.sgd.dampening);
        pt_karg_float(&c, op->p.sgd.weight_decay);
        pt_karg_int(&c, op->p.sgd.nesterov);
        pt_karg_int(&c, op->p.sgd.first_step);
        karg_step(&c, op);
        break;
    case PT_OP_ADAM: {
        const float lr = op->p.adam.lr, wd = op->p.adam.weight_decay;
        float step_size, sqrt_bc2;
        pt_adam_bias_terms(lr, op->p.adam.beta1, op->p.adam.beta2, op->p.adam.step, &step_size, &sqrt_bc2);
        pt_kcall_begin(&c, PT_K_ADAM, (size_t)numel(&t[0]));
        for (int i = 0; i < 4; i++) pt_karg_tensor(&c, &t[i]);
        pt_karg_int(&c, numel(&t[0]));
        pt_karg_float(&c, op->p.adam.beta1);
        pt_karg_float(&c, op->p.adam.beta2);
        pt_karg_float(&c, op->p.adam.eps);
        pt_karg_float(&c, step_size);
        pt_karg_float(&c, sqrt_bc2);
        pt_karg_float(&c, op->p.adam.decoupled ? 1.0f - lr * wd : 1.0f);
        pt_karg_float(&c, op->p.adam.decoupled ? 0.0f : wd);
        karg_step(&c, op);
        pt_karg_float(&c, op->p.adam.decoupled ? wd : 0.0f);
        break;
    }
    case PT_OP_RMSPROP: {
        const float mom = op->p.rmsprop.momentum;
        const int centered = op->p.rmsprop.centered;
        pt_kcall_begin(&c, PT_K_RMSPROP, (size_t)numel(&t[0]));
        for (int i = 0; i < 3; i++) pt_karg_tensor(&c, &t[i]);
        /* unused state (momentum 0, not centered): the parameter stands in, never touched */
        pt_karg_tensor(&c, mom != 0.0f ? &t[3] : &t[0]);
        pt_karg_tensor(&c, centered ? &t[4] : &t[0]);
        pt_karg_int(&c, numel(&t[0]));
        pt_karg_float(&c, op->p.rmsprop.lr);
        pt_karg_float(&c, op->p.rmsprop.alpha);
        pt_karg_float(&c, (float)(1.0 - (double)op->p.rmsprop.alpha));
        pt_karg_float(&c, op->p.rmsprop.eps);
        pt_karg_float(&c, op->p.rmsprop.weight_decay);
        pt_karg_float(&c, mom);
        pt_karg_int(&c, centered);
        karg_step(&c, op);
        break;
    }
    case PT_OP_BCAST_MUL:
        pt_kcall_begin(&c, PT_K_BCAST_MUL, (size_t)numel(&t[2]));
        for (int i = 0; i < 3; i++) pt_karg_tensor(&c, &t[i]);
        pt_karg_int(&c, numel(&t[2]));
        pt_karg_int(&c, (int)t[0].dim[1]);
        pt_karg_int(&c, plane(&t[0]));
        pt_karg_int(&c, t[1].ndim == 4);
        pt_karg_int(&c, op->accumulate);
        break;
    case PT_OP_BCAST_MUL_GRAD: {
        const int per_pixel = t[2].ndim == 4;
        pt_kcall_begin(&c, per_pixel ? PT_K_BCAST_MUL_GRAD_PIXEL : PT_K_BCAST_MUL_GRAD_CHANNEL, (size_t)numel(&t[2]));
        for (int i = 0; i < 3; i++) pt_karg_tensor(&c, &t[i]);
        pt_karg_int(&c, numel(&t[2]));
        if (per_pixel) pt_karg_int(&c, (int)t[0].dim[1]);
        pt_karg_int(&c, plane(&t[0]));
        pt_karg_int(&c, op->accumulate);
        break;
    }
    case PT_OP_GMP_FWD:
        pt_kcall_begin(&c, PT_K_GMP_FWD, (size_t)numel(&t[1]));
        for (int i = 0; i < 3; i++) pt_karg_tensor(&c, &t[i]);
        pt_karg_int(&c, numel(&t[1]));
        pt_karg_int(&c, plane(&t[0]));
        break;
    case PT_OP_GMP_BWD:
        pt_kcall_begin(&c, PT_K_GMP_BWD, (size_t)numel(&t[2]));
        for (int i = 0; i < 3; i++) pt_karg_tensor(&c, &t[i]);
        pt_karg_int(&c, numel(&t[2]));
        pt_karg_int(&c, plane(&t[2]));
        pt_karg_int(&c, op->accumulate);
        break;
    case PT_OP_CHANNEL_POOL_FWD:
        pt_kcall_begin(&c, PT_K_CHANNEL_POOL_FWD, (size_t)numel(&t[2]));
        for (int i = 0; i < 3; i++) pt_karg_tensor(&c, &t[i]);
        pt_karg_int(&c, numel(&t[2]));
        pt_karg_int(&c, (int)t[0].dim[1]);
        pt_karg_int(&c, plane(&t[0]));
        break;
    case PT_OP_CHANNEL_POOL_BWD:
        pt_kcall_begin(&c, PT_K_CHANNEL_POOL_BWD, (size_t)numel(&t[2]));
        for (int i = 0; i < 3; i++) pt_karg_tensor(&c, &t[i]);
        pt_karg_int(&c, numel(&t[2]));
        pt_karg_int(&c, (int)t[2].dim[1]);
        pt_karg_int(&c, plane(&t[2]));
        pt_karg_float(&c, 1.0f / (float)t[2].dim[1]);
        pt_karg_int(&c, op->accumulate);
        break;
    default:
        return pt_fail(err, PT_ERR_UNSUPPORTED, "%s backend: no shared kernel for %s", dev->backend,
                       pt_op_name(op->kind));
    }
    return launch_op(dev, op, &c, err);
}

/* ---- one work-group per channel: the per-channel reductions ---- */

static pt_status run_channels(const pt_kdev *dev, const pt_op *op, pt_error *err)
{
    const pt_tensor *t = op->t;
    int n, ch, inner;
    channel_layout(&t[0], &n, &ch, &inner);
    /* an empty spatial extent means no elements: N = 0 tells the kernel the same */
    const int rows = inner > 0 ? n : 0;
    if (inner == 0) inner = 1;
    pt_kcall c;
    switch (op->kind) {
    case PT_OP_BIAS_GRAD:
        pt_kcall_begin(&c, PT_K_BIAS_GRAD, (size_t)ch);
        pt_karg_tensor(&c, &t[0]);
        pt_karg_tensor(&c, &t[1]);
        break;
    case PT_OP_BN_FWD_TRAIN:
        pt_kcall_begin(&c, PT_K_BN_FWD_TRAIN, (size_t)ch);
        for (int i = 0; i < 8; i++) pt_karg_tensor(&c, &t[i]);
        pt_karg_tensor(&c, &t[bn_residual(op)]);
        break;
    case PT_OP_BN_BWD:
        pt_kcall_begin(&c, PT_K_BN_BWD, (size_t)ch);
        for (int i = 0; i < 8; i++) pt_karg_tensor(&c, &t[i]);
        break;
    case PT_OP_BN_SYNC_STATS:
        pt_kcall_begin(&c, PT_K_BN_SYNC_STATS, (size_t)ch);
        for (int i = 0; i < 3; i++) pt_karg_tensor(&c, &t[i]);
        break;
    case PT_OP_BN_SYNC_FWD:
        pt_kcall_begin(&c, PT_K_BN_SYNC_FWD, (size_t)ch);
        for (int i = 0; i < 7; i++) pt_karg_tensor(&c, &t[i]);
        break;
    case PT_OP_BN_SYNC_BWD_STATS:
        pt_kcall_begin(&c, PT_K_BN_SYNC_BWD_STATS, (size_t)ch);
        for (int i = 0; i < 6; i++) pt_karg_tensor(&c, &t[i]);
        break;
    default:
        return pt_fail(err, PT_ERR_UNSUPPORTED, "%s backend: no reduction kernel for %s", dev->backend,
                       pt_op_name(op->kind));
    }
    /* every reduction takes the layout next, then its own scalars */
    pt_karg_int(&c, rows);
    pt_karg_int(&c, ch);
    pt_karg_int(&c, inner);
    switch (op->kind) {
    case PT_OP_BIAS_GRAD:
    case PT_OP_BN_BWD: pt_karg_int(&c, op->accumulate); break;
    case PT_OP_BN_FWD_TRAIN:
        pt_karg_float(&c, op->p.bn.eps);
        pt_karg_float(&c, op->p.bn.momentum);
        pt_karg_int(&c, op->fuse_relu);
        pt_karg_int(&c, op->nt > 8);
        break;
    case PT_OP_BN_SYNC_FWD:
        pt_karg_float(&c, (float)op->p.bn.count);
        pt_karg_float(&c, op->p.bn.eps);
        pt_karg_float(&c, op->p.bn.momentum);
        break;
    default: break;
    }
    return launch_op(dev, op, &c, err);
}

/* ---- zero fill ---- */

static pt_status fill_zero(const pt_kdev *dev, pt_mem m, size_t n, pt_error *err)
{
    pt_kcall c;
    pt_kcall_begin(&c, PT_K_FILL, n);
    pt_karg_mem(&c, m);
    pt_karg_int(&c, (int)n);
    pt_karg_float(&c, 0.0f);
    return launch(dev, &c, err);
}

/* ---- reduced precision: 16-bit copies of the multiplied operands ---- */

int pt_kops_lowp(pt_precision math) { return math == PT_PREC_BF16 || math == PT_PREC_FP16; }

size_t pt_kops_lowp_bytes(size_t n) { return (n * 2 + 255) / 256 * 256; }

pt_status pt_kops_to_lowp(const pt_kdev *dev, pt_precision math, pt_mem src, pt_mem dst16, size_t n, pt_error *err)
{
    pt_kcall c;
    pt_kcall_begin(&c, PT_K_TO_LOWP, n);
    pt_karg_mem(&c, src);
    pt_karg_mem(&c, dst16);
    pt_karg_int(&c, (int)n);
    pt_karg_int(&c, math == PT_PREC_FP16);
    return launch(dev, &c, err);
}

pt_status pt_kops_from_lowp(const pt_kdev *dev, pt_precision math, pt_mem src16, pt_mem dst, size_t n, float alpha,
                            int acc, pt_error *err)
{
    pt_kcall c;
    pt_kcall_begin(&c, PT_K_FROM_LOWP, n);
    pt_karg_mem(&c, src16);
    pt_karg_mem(&c, dst);
    pt_karg_int(&c, (int)n);
    pt_karg_int(&c, math == PT_PREC_FP16);
    pt_karg_float(&c, alpha);
    pt_karg_int(&c, acc);
    return launch(dev, &c, err);
}

static pt_mem at_bytes(pt_mem m, size_t bytes)
{
    m.off += bytes;
    return m;
}

/* bf16/fp16 operand copies: 16-bit for a device with gemm16, else float32 holding the rounded
 * values (pt_kdev.lowp_f32). */
static size_t copy_elem(const pt_kdev *dev) { return dev && !dev->gemm16 && dev->lowp_f32 ? 4 : 2; }

static size_t copy_bytes(const pt_kdev *dev, size_t n) { return (n * copy_elem(dev) + 255) / 256 * 256; }

static pt_status copy_rounded(const pt_kdev *dev, pt_precision math, pt_mem src, pt_mem dst, size_t n, pt_error *err)
{
    if (dev->gemm16) return pt_kops_to_lowp(dev, math, src, dst, n, err);
    pt_kcall c;
    pt_kcall_begin(&c, PT_K_ROUND_LOWP, n);
    pt_karg_mem(&c, src);
    pt_karg_mem(&c, dst);
    pt_karg_int(&c, (int)n);
    pt_karg_int(&c, math == PT_PREC_FP16);
    return launch(dev, &c, err);
}

/* One GEMM in op's math mode, operands already copied (copy_rounded) where it is bf16/fp16. */
static pt_status mm(const pt_kdev *dev, pt_precision math, int ta, int tb, size_t m, size_t n, size_t k, float alpha,
                    pt_mem a, size_t lda, pt_mem b, size_t ldb, float beta, pt_mem c, size_t ldc, pt_error *err)
{
    if (pt_kops_lowp(math) && dev->gemm16)
        return dev->gemm16(dev->ctx, math, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, err);
    if (pt_kops_lowp(math)) math = PT_PREC_FP32; /* lowp_f32: the copies hold the rounded values */
    return dev->sgemm(dev->ctx, math, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, err);
}

/* ---- GEMM ---- */

/* Workspace of a GEMM: the 16-bit copies of A and B in bf16/fp16 (nothing to multiply: none). */
static size_t gemm_workspace(const pt_kdev *dev, const pt_op *op)
{
    if (op->nt != 3 || !pt_kops_lowp(op->math)) return 0;
    const pt_tensor *A = &op->t[0], *B = &op->t[1], *C = &op->t[2];
    const int64_t k = op->p.gemm.trans_a ? A->dim[0] : A->dim[1];
    if (C->dim[0] == 0 || C->dim[1] == 0 || k == 0) return 0;
    return copy_bytes(dev, (size_t)pt_tensor_numel(A)) + copy_bytes(dev, (size_t)pt_tensor_numel(B));
}

static pt_status run_gemm(const pt_kdev *dev, const pt_op *op, pt_error *err)
{
    const pt_tensor *A = &op->t[0], *B = &op->t[1], *C = &op->t[2];
    const int ta = op->p.gemm.trans_a, tb = op->p.gemm.trans_b;
    const size_t m = (size_t)C->dim[0], n = (size_t)C->dim[1];
    const size_t k = (size_t)(ta ? A->dim[0] : A->dim[1]);
    if (m == 0 || n == 0) return PT_OK;
    if (k == 0) {
        /* C = beta*C, without reading C when beta is 0 (it may hold NaN); vendor GEMMs refuse
         * an empty inner dimension or leave C alone */
        pt_kcall c;
        pt_kcall_begin(&c, PT_K_SCALE, m * n);
        pt_karg_tensor(&c, C);
        pt_karg_int(&c, (int)(m * n));
        pt_karg_float(&c, op->p.gemm.beta);
        return launch(dev, &c, err);
    }
    /* leading dimensions: a row-major matrix's row length */
    const size_t lda = (size_t)A->dim[1], ldb = (size_t)B->dim[1];
    if (!pt_kops_lowp(op->math))
        return dev->sgemm(dev->ctx, op->math, ta, tb, m, n, k, op->p.gemm.alpha, A->mem, lda, B->mem, ldb,
                          op->p.gemm.beta, C->mem, n, err);
    /* bf16/fp16: A and B rounded into the workspace (same layout), then the 16-bit GEMM */
    const size_t need = gemm_workspace(dev, op), na = (size_t)pt_tensor_numel(A), nb = (size_t)pt_tensor_numel(B);
    if (op->workspace_bytes < need)
        return pt_fail(err, PT_ERR_INVALID,
                       "%s gemm math=%s: needs a workspace of %zu bytes (ask workspace_size), got %zu", dev->backend,
                       pt_precision_name(op->math), need, op->workspace_bytes);
    const pt_mem a16 = op->workspace, b16 = at_bytes(op->workspace, copy_bytes(dev, na));
    PT_TRY(copy_rounded(dev, op->math, A->mem, a16, na, err));
    PT_TRY(copy_rounded(dev, op->math, B->mem, b16, nb, err));
    return mm(dev, op->math, ta, tb, m, n, k, op->p.gemm.alpha, a16, lda, b16, ldb, op->p.gemm.beta, C->mem, n, err);
}

/* ---- 2-D convolution: im2col + SGEMM over groups of G samples ----
 * im2col writes a [CRS, G*PQ] matrix, so one GEMM covers the group and small feature maps
 * still give wide GEMMs (as the cpu backend); a gather/scatter kernel around it moves dy and y
 * between the [G,K,PQ] layout and the GEMM's [K, G*PQ]. G is bounded so that the scratch stays
 * under the device's conv_ws_cap; all scratch is the op's workspace. In bf16/fp16 the GEMM's
 * operands are 16-bit copies in the workspace too: w once per op, the columns (or x itself
 * where it is its own column matrix) and dy once per group; the GEMM's output stays float32,
 * so the scatter and col2im that follow are the fp32 path's. */

typedef struct conv_shape {
    int n, c, h, w, k, r, s, p, q, stride, pad;
    size_t crs, pq, hw;
    int direct; /* 1x1, stride 1, no padding: a sample of x is its own column matrix */
    int group;  /* samples per GEMM */
    size_t col_floats, tmp_floats;
    /* bf16/fp16 only (0 otherwise): bytes of the rounded w, columns and dy (16-bit, or float32
     * on a lowp_f32 device), after the floats */
    size_t w16_bytes, col16_bytes, dy16_bytes;
    size_t bytes;
} conv_shape;

static conv_shape conv_shape_of(const pt_kdev *dev, const pt_op *op, size_t cap)
{
    /* t0 is x-shaped, t1 w-shaped, t2 y-shaped in all three directions */
    const pt_tensor *x = &op->t[0], *w = &op->t[1], *y = &op->t[2];
    conv_shape s;
    s.n = (int)x->dim[0];
    s.c = (int)x->dim[1];
    s.h = (int)x->dim[2];
    s.w = (int)x->dim[3];
    s.k = (int)w->dim[0];
    s.r = (int)w->dim[2];
    s.s = (int)w->dim[3];
    s.p = (int)y->dim[2];
    s.q = (int)y->dim[3];
    s.stride = op->p.conv.stride;
    s.pad = op->p.conv.pad;
    s.crs = (size_t)s.c * (size_t)s.r * (size_t)s.s;
    s.pq = (size_t)s.p * (size_t)s.q;
    s.hw = (size_t)s.h * (size_t)s.w;
    s.direct = s.r == 1 && s.s == 1 && s.stride == 1 && s.pad == 0;
    const int lowp = pt_kops_lowp(op->math);
    /* per sample: float32 columns and regrouped y/dy, and in bf16/fp16 their rounded copies */
    const size_t per = (s.crs + (size_t)s.k) * s.pq * (sizeof(float) + (lowp ? copy_elem(dev) : 0));
    size_t g = per ? cap / per : 1;
    if (g > (size_t)s.n) g = (size_t)s.n;
    if (g < 1) g = 1;
    s.group = (int)g;
    const int no_col = s.direct && g == 1;
    /* each part on a 256-byte boundary */
    s.col_floats = no_col ? 0 : (s.crs * g * s.pq + 63) / 64 * 64;
    s.tmp_floats = g > 1 ? ((size_t)s.k * g * s.pq + 63) / 64 * 64 : 0;
    s.w16_bytes = s.col16_bytes = s.dy16_bytes = 0;
    if (lowp) {
        /* the multiplied operands of each direction: fwd w and x, bwd_data w and dy,
         * bwd_filter dy and x */
        if (op->kind != PT_OP_CONV2D_BWD_FILTER) s.w16_bytes = copy_bytes(dev, (size_t)s.k * s.crs);
        if (op->kind != PT_OP_CONV2D_BWD_DATA) s.col16_bytes = copy_bytes(dev, s.crs * g * s.pq);
        if (op->kind != PT_OP_CONV2D_FWD) s.dy16_bytes = copy_bytes(dev, (size_t)s.k * g * s.pq);
    }
    s.bytes = (s.col_floats + s.tmp_floats) * sizeof(float) + s.w16_bytes + s.col16_bytes + s.dy16_bytes;
    return s;
}

int pt_kconv_group(const pt_kdev *dev, const pt_op *op)
{
    return conv_shape_of(dev, op, dev->conv_ws_cap).group;
}

int pt_kconv_empty(const pt_op *op)
{
    const conv_shape s = conv_shape_of(NULL, op, 0);
    return s.n == 0 || s.pq == 0 || s.k == 0 || s.crs == 0;
}

static pt_mem at(pt_mem m, size_t floats)
{
    m.off += floats * sizeof(float);
    return m;
}

/* The convolution geometry, in the order the im2col and col2im kernels take it. */
static void karg_geometry(pt_kcall *c, const conv_shape *s)
{
    pt_karg_int(c, s->c);
    pt_karg_int(c, s->h);
    pt_karg_int(c, s->w);
    pt_karg_int(c, s->r);
    pt_karg_int(c, s->s);
    pt_karg_int(c, s->p);
    pt_karg_int(c, s->q);
    pt_karg_int(c, s->stride);
    pt_karg_int(c, s->pad);
}

static pt_status im2col(const pt_kdev *dev, const conv_shape *s, pt_mem x, pt_mem col, int g, pt_error *err)
{
    const size_t n = s->crs * (size_t)g * (size_t)s->p; /* an item per row of Q columns */
    pt_kcall c;
    pt_kcall_begin(&c, PT_K_IM2COL, n);
    pt_karg_mem(&c, x);
    pt_karg_mem(&c, col);
    pt_karg_int(&c, (int)n);
    pt_karg_int(&c, g);
    karg_geometry(&c, s);
    return launch(dev, &c, err);
}

static pt_status col2im(const pt_kdev *dev, const conv_shape *s, pt_mem col, pt_mem dx, int g, int acc,
                        pt_error *err)
{
    const size_t n = (size_t)g * (size_t)s->c * s->hw;
    pt_kcall c;
    pt_kcall_begin(&c, PT_K_COL2IM, n);
    pt_karg_mem(&c, col);
    pt_karg_mem(&c, dx);
    pt_karg_int(&c, (int)n);
    pt_karg_int(&c, g);
    karg_geometry(&c, s);
    pt_karg_int(&c, acc);
    return launch(dev, &c, err);
}

/* tmp[k][g*PQ + j] = dy[g, k, j] (gather) or y[g, k, j] = (acc ? y : 0) + tmp[k][g*PQ + j] */
static pt_status regroup(const pt_kdev *dev, const conv_shape *s, pt_kernel_id id, pt_mem src, pt_mem dst, int g,
                         int acc, pt_error *err)
{
    const size_t n = (size_t)s->k * (size_t)g * s->pq;
    pt_kcall c;
    pt_kcall_begin(&c, id, n);
    pt_karg_mem(&c, src);
    pt_karg_mem(&c, dst);
    pt_karg_int(&c, (int)n);
    pt_karg_int(&c, g);
    pt_karg_int(&c, s->k);
    pt_karg_int(&c, (int)s->pq);
    if (id == PT_K_SCATTER_GROUPS) pt_karg_int(&c, acc);
    return launch(dev, &c, err);
}

static pt_status gemm_mem(const pt_kdev *dev, pt_precision math, int ta, int tb, size_t m, size_t n, size_t k,
                          pt_mem a, size_t lda, pt_mem b, size_t ldb, float beta, pt_mem c, size_t ldc, pt_error *err)
{
    return mm(dev, math, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc, err);
}

static pt_status run_conv(const pt_kdev *dev, const pt_op *op, pt_error *err)
{
    /* a first layer (C*R*S of 9 or 27): the direct kernels, no workspace */
    if (pt_kconv_small_applies(dev, op)) return pt_kconv_small_run(dev, op, err);
    const conv_shape s = conv_shape_of(dev, op, dev->conv_ws_cap);
    if (op->workspace_bytes < s.bytes)
        return pt_fail(err, PT_ERR_INVALID, "%s %s: needs a workspace of %zu bytes (ask workspace_size), got %zu",
                       dev->backend, pt_op_name(op->kind), s.bytes, op->workspace_bytes);
    const int acc = op->accumulate;
    const pt_precision math = op->math;
    const int lp = pt_kops_lowp(math);
    const pt_mem x = op->t[0].mem, w = op->t[1].mem, y = op->t[2].mem; /* (dx, dw, dy) in backward */
    const pt_mem col = op->workspace, tmp = at(op->workspace, s.col_floats);
    /* bf16/fp16: the 16-bit operands after the float parts (each on a 256-byte boundary) */
    const pt_mem w16 = at(op->workspace, s.col_floats + s.tmp_floats);
    const pt_mem col16 = at_bytes(w16, s.w16_bytes), dy16 = at_bytes(col16, s.col16_bytes);
    const size_t xs = (size_t)s.c * s.hw, ys = (size_t)s.k * s.pq; /* floats per sample */
    const size_t wn = (size_t)s.k * s.crs;
    if (op->kind == PT_OP_CONV2D_BWD_FILTER && (s.n == 0 || s.pq == 0) && !acc) return fill_zero(dev, w, wn, err);
    if (s.n == 0 || s.pq == 0 || s.k == 0) {
        /* no output cells: the input gradient is zero (or unchanged when accumulating) */
        if (op->kind == PT_OP_CONV2D_BWD_DATA && !acc) return fill_zero(dev, x, (size_t)s.n * xs, err);
        return PT_OK;
    }
    if (s.crs == 0) {
        if (op->kind == PT_OP_CONV2D_FWD && !acc) return fill_zero(dev, y, (size_t)s.n * ys, err);
        return PT_OK;
    }
    pt_mem wop = w; /* w as the GEMMs read it (fwd, bwd_data) */
    if (lp && op->kind != PT_OP_CONV2D_BWD_FILTER) {
        PT_TRY(copy_rounded(dev, math, w, w16, wn, err));
        wop = w16;
    }
    for (int n0 = 0; n0 < s.n; n0 += s.group) {
        const int g = s.n - n0 < s.group ? s.n - n0 : s.group;
        const size_t cols = (size_t)g * s.pq;
        const pt_mem xg = at(x, (size_t)n0 * xs), yg = at(y, (size_t)n0 * ys);
        const int no_col = s.direct && g == 1;
        if (op->kind == PT_OP_CONV2D_FWD) {
            if (!no_col) PT_TRY(im2col(dev, &s, xg, col, g, err));
            pt_mem b = no_col ? xg : col;
            if (lp) {
                PT_TRY(copy_rounded(dev, math, b, col16, s.crs * cols, err));
                b = col16;
            }
            if (g == 1) {
                /* straight into y; beta 0 must not read y (it may hold NaN) */
                PT_TRY(gemm_mem(dev, math, 0, 0, (size_t)s.k, cols, s.crs, wop, s.crs, b, cols, acc ? 1.0f : 0.0f, yg,
                                cols, err));
            } else {
                PT_TRY(gemm_mem(dev, math, 0, 0, (size_t)s.k, cols, s.crs, wop, s.crs, b, cols, 0.0f, tmp, cols, err));
                PT_TRY(regroup(dev, &s, PT_K_SCATTER_GROUPS, tmp, yg, g, acc, err));
            }
            continue;
        }
        pt_mem dyg = yg;
        if (g > 1) {
            PT_TRY(regroup(dev, &s, PT_K_GATHER_GROUPS, yg, tmp, g, 0, err));
            dyg = tmp;
        }
        if (lp) {
            PT_TRY(copy_rounded(dev, math, dyg, dy16, (size_t)s.k * cols, err));
            dyg = dy16;
        }
        if (op->kind == PT_OP_CONV2D_BWD_DATA) {
            if (no_col) {
                PT_TRY(gemm_mem(dev, math, 1, 0, s.crs, cols, (size_t)s.k, wop, s.crs, dyg, cols, acc ? 1.0f : 0.0f,
                                xg, cols, err));
            } else {
                PT_TRY(
                    gemm_mem(dev, math, 1, 0, s.crs, cols, (size_t)s.k, wop, s.crs, dyg, cols, 0.0f, col, cols, err));
                PT_TRY(col2im(dev, &s, col, xg, g, acc, err));
            }
        } else {
            if (!no_col) PT_TRY(im2col(dev, &s, xg, col, g, err));
            pt_mem b = no_col ? xg : col;
            if (lp) {
                PT_TRY(copy_rounded(dev, math, b, col16, s.crs * cols, err));
                b = col16;
            }
            const float beta = n0 == 0 && !acc ? 0.0f : 1.0f;
            PT_TRY(gemm_mem(dev, math, 0, 1, (size_t)s.k, s.crs, cols, dyg, cols, b, cols, beta, w, s.crs, err));
        }
    }
    return PT_OK;
}

/* ---- dispatch ---- */

static int is_conv(pt_op_kind k)
{
    return k == PT_OP_CONV2D_FWD || k == PT_OP_CONV2D_BWD_DATA || k == PT_OP_CONV2D_BWD_FILTER;
}

/* The workspace and run of an op whose operands are all float32 (or integers). */
static size_t f32_workspace(void *ctx, const pt_op *op)
{
    const pt_kdev *dev = ctx;
    if (op->kind == PT_OP_GEMM) return gemm_workspace(dev, op);
    if (!is_conv(op->kind) || op->nt != 3 || pt_kconv_empty(op)) return 0;
    /* in run()'s order: Winograd first, then the direct kernels (no workspace), then im2col */
    if (pt_kwino_use(dev, op)) return pt_kwino_workspace(dev, op);
    if (pt_kconv_small_applies(dev, op)) return 0;
    return conv_shape_of(dev, op, dev->conv_ws_cap).bytes;
}

static pt_status f32_run(void *ctx, const pt_op *op, pt_error *err)
{
    const pt_kdev *dev = ctx;
    const pt_op_desc *d = pt_op_describe(op->kind);
    if (!d) return pt_fail(err, PT_ERR_UNSUPPORTED, "%s backend: unknown op kind %d", dev->backend, (int)op->kind);
    if (pt_kops_lowp(op->math) && !dev->gemm16 && !dev->lowp_f32)
        return pt_fail(err, PT_ERR_UNSUPPORTED,
                       "%s %s: math=%s needs a GEMM of 16-bit operands, which this %s device does not have "
                       "(its GEMMs take float32 operands)",
                       dev->backend, d->name, pt_precision_name(op->math), dev->backend);
    if (op->kind == PT_OP_GEMM) return run_gemm(dev, op, err);
    if (has_nhwc_form(op->kind) && native_nhwc(op, d)) {
        for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++)
            if (pt_act16_nhwc(op, i)) return run_nhwc(dev, op, err);
    }
    if (is_conv(op->kind)) {
        /* 3x3 stride 1 where it pays: Winograd (kernel_winograd.c); otherwise im2col */
        if (!pt_kconv_empty(op) && pt_kwino_use(dev, op)) return pt_kwino_run(dev, op, err);
        return run_conv(dev, op, err);
    }
    if (d->flags & PT_OPF_POINTWISE) {
        const pt_kernel_id k = pt_kernel_for_pointwise(op->kind);
        if (k == PT_K_COUNT)
            return pt_fail(err, PT_ERR_UNSUPPORTED, "%s backend: no shared kernel for %s (kernel_table.h)",
                           dev->backend, d->name);
        return run_pointwise(dev, op, k, err);
    }
    switch (op->kind) {
    case PT_OP_BIAS_GRAD:
    case PT_OP_BN_FWD_TRAIN:
    case PT_OP_BN_BWD:
    case PT_OP_BN_SYNC_STATS:
    case PT_OP_BN_SYNC_FWD:
    case PT_OP_BN_SYNC_BWD_STATS: return run_channels(dev, op, err);
    default: return run_items(dev, op, err);
    }
}

size_t pt_kops_workspace(const pt_kdev *dev, const pt_op *op)
{
    void *ctx = (void *)(uintptr_t)dev; /* the callbacks take it back as const */
    return pt_act16_any(op) ? pt_kact16_workspace(dev, op, pt_kops_act16_native(dev, op), f32_workspace, ctx)
                            : f32_workspace(ctx, op);
}

/* 16-bit and NHWC operands: the kernels' 16-bit twins and NHWC forms, or the float op over
 * float32 NCHW copies (kernel_act16.c) */
pt_status pt_kops_run(const pt_kdev *dev, const pt_op *op, pt_error *err)
{
    void *ctx = (void *)(uintptr_t)dev;
    if (pt_act16_any(op))
        return pt_kact16_run(dev, op, pt_kops_act16_native(dev, op), f32_workspace, f32_run, ctx, err);
    return f32_run(ctx, op, err);
}
