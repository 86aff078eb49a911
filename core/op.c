/* The checks every backend runs on an op before it computes, driven by the kind's
 * description (core/op_table.c): operand count, dtypes, ranks, 32-bit extents, the shape
 * rule, the capabilities a backend declares, and that each operand lies inside its buffer. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "polytrain/op.h"
#include "polytrain/status.h"

int pt_op_operand_absent(const pt_op *op, int i)
{
    const pt_op_desc *d = pt_op_describe(op->kind);
    if (!d || i < 0 || i >= d->nt || !d->arg[i].optional) return 0;
    return d->absent ? d->absent(op, i) : op->t[i].ndim == 0;
}

pt_status pt_op_check_operands(const pt_op *op, const char *backend, unsigned caps,
                               int check_shapes, pt_error *err)
{
    const pt_op_desc *d = pt_op_describe(op->kind);
    if (!d) return pt_fail(err, PT_ERR_UNSUPPORTED, "%s backend: unknown op kind %d", backend, (int)op->kind);
    const char *name = d->name;
    if (op->fuse_relu) {
        if (!(d->flags & PT_OPF_FUSED_RELU))
            return pt_fail(err, PT_ERR_INVALID, "%s %s: fuse_relu is set, but %s has no fused ReLU form", backend,
                           name, name);
        if (!(caps & PT_CAP_FUSED_RELU))
            return pt_fail(err, PT_ERR_UNSUPPORTED, "%s %s: no fused ReLU on this backend", backend, name);
    }
    if (op->math != PT_PREC_FP32) {
        if ((unsigned)op->math >= PT_PREC_COUNT)
            return pt_fail(err, PT_ERR_INVALID, "%s %s: math mode %d is not a precision", backend, name,
                           (int)op->math);
        if (!(d->flags & PT_OPF_MATH))
            return pt_fail(err, PT_ERR_INVALID, "%s %s: math mode %s is set, but %s always computes in fp32",
                           backend, name, pt_precision_name(op->math), name);
        if (!(caps & PT_CAP_MATH(op->math)))
            return pt_fail(err, PT_ERR_UNSUPPORTED, "%s %s: no %s math on this device", backend, name,
                           pt_precision_name(op->math));
    }
    if (op->accumulate && !(d->flags & PT_OPF_ACCUMULATE))
        return pt_fail(err, PT_ERR_INVALID, "%s %s: accumulate is set, but %s has no accumulating form", backend,
                       name, name);
    if (d->nt_min && op->nt > d->nt_min && op->nt <= d->nt && (d->tail_caps & ~caps))
        return pt_fail(err, PT_ERR_UNSUPPORTED, "%s %s: no %s on this backend", backend, name,
                       d->tail_caps & PT_CAP_MIXUP_TARGETS ? "mixup/cutmix targets"
                       : d->tail_caps & PT_CAP_BN_ADD      ? "residual operand (z) on a batch-norm forward"
                                                           : "such operands");
    if (op->nt != d->nt && !(d->nt_min && op->nt == d->nt_min)) {
        if (d->nt_min)
            return pt_fail(err, PT_ERR_INVALID, "%s %s: %d operands, expected %d or %d", backend, name, op->nt,
                           d->nt_min, d->nt);
        return pt_fail(err, PT_ERR_INVALID, "%s %s: %d operands, expected %d", backend, name, op->nt, d->nt);
    }
    for (int i = 0; i < op->nt; i++) {
        const pt_tensor *t = &op->t[i];
        const pt_op_operand *a = &d->arg[i];
        if (pt_op_operand_absent(op, i)) continue;
        if (t->dtype != a->dtype && a->lowp && a->dtype == PT_F32 && (t->dtype == PT_BF16 || t->dtype == PT_F16)) {
            if (!(caps & PT_CAP_ACT16(t->dtype)))
                return pt_fail(err, PT_ERR_UNSUPPORTED, "%s %s: operand %d (%s) is %s, and this backend stores no %s "
                               "activations (expected F32)", backend, name, i, a->name, pt_dtype_name(t->dtype),
                               pt_dtype_name(t->dtype));
        } else if (t->dtype != a->dtype)
            return pt_fail(err, PT_ERR_INVALID, "%s %s: operand %d (%s) is %s, expected %s", backend, name, i, a->name,
                           pt_dtype_name(t->dtype), pt_dtype_name(a->dtype));
        if (t->layout != PT_LAYOUT_NCHW) {
            if (t->layout != PT_LAYOUT_NHWC)
                return pt_fail(err, PT_ERR_INVALID, "%s %s: operand %d (%s) has layout %d, expected nchw or nhwc",
                               backend, name, i, a->name, (int)t->layout);
            if (!a->img)
                return pt_fail(err, PT_ERR_INVALID, "%s %s: operand %d (%s) is nhwc, but %s reads it as nchw", backend,
                               name, i, a->name, name);
            if (t->ndim != 4)
                return pt_fail(err, PT_ERR_INVALID, "%s %s: operand %d (%s) is nhwc with %d dims, expected 4", backend,
                               name, i, a->name, t->ndim);
            if (!(caps & PT_CAP_NHWC))
                return pt_fail(err, PT_ERR_UNSUPPORTED, "%s %s: operand %d (%s) is nhwc, and this backend takes nchw "
                               "only", backend, name, i, a->name);
        }
        if (!check_shapes) continue;
        if (t->ndim < 1 || t->ndim > PT_MAX_DIMS)
            return pt_fail(err, PT_ERR_INVALID, "%s %s: operand %d (%s) has %d dims", backend, name, i, a->name,
                           t->ndim);
        for (int k = 0; k < t->ndim; k++)
            if (t->dim[k] < 0 || t->dim[k] > INT_MAX)
                return pt_fail(err, PT_ERR_INVALID, "%s %s: operand %d (%s) dim %d is %lld", backend, name, i,
                               a->name, k, (long long)t->dim[k]);
        if (pt_tensor_numel(t) > INT_MAX)
            return pt_fail(err, PT_ERR_INVALID, "%s %s: operand %d (%s) has more than 2^31 elements", backend, name,
                           i, a->name);
    }
    char why[256];
    if (check_shapes && d->shapes && !d->shapes(op, why, sizeof why))
        return pt_fail(err, PT_ERR_INVALID, "%s %s: operand shapes do not match: %s", backend, name, why);
    return PT_OK;
}

static pt_status check_range(pt_mem m, size_t bytes, size_t (*buffer_bytes)(const pt_buffer *), size_t align,
                             const char *backend, const char *name, const char *what, pt_error *err)
{
    if (!m.buf) return pt_fail(err, PT_ERR_INVALID, "%s %s: %s has no buffer", backend, name, what);
    const size_t have = buffer_bytes(m.buf);
    if (m.off > have || bytes > have - m.off)
        return pt_fail(err, PT_ERR_INVALID, "%s %s %s: %zu bytes at offset %zu exceed the buffer's %zu", backend, name,
                       what, bytes, m.off, have);
    if (align > 1 && m.off % align != 0)
        return pt_fail(err, PT_ERR_INVALID, "%s %s: %s is at byte offset %zu, not a multiple of %zu", backend, name,
                       what, m.off, align);
    return PT_OK;
}

pt_status pt_op_check_memory(const pt_op *op, const char *backend, size_t (*buffer_bytes)(const pt_buffer *b),
                             size_t align, pt_error *err)
{
    const pt_op_desc *d = pt_op_describe(op->kind);
    if (!d) return pt_fail(err, PT_ERR_UNSUPPORTED, "%s backend: unknown op kind %d", backend, (int)op->kind);
    char what[64];
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++) {
        if (pt_op_operand_absent(op, i)) continue;
        snprintf(what, sizeof what, "operand %d (%s)", i, d->arg[i].name);
        PT_TRY(check_range(op->t[i].mem, pt_tensor_bytes(&op->t[i]), buffer_bytes, align, backend, d->name, what,
                           err));
    }
    if (op->workspace_bytes)
        PT_TRY(check_range(op->workspace, op->workspace_bytes, buffer_bytes, align, backend, d->name, "the workspace",
                           err));
    return PT_OK;
}
