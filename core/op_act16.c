/* The 16-bit and channels-last operands of an op and the float32 NCHW copies around a float32
 * NCHW kernel (see op_act16.h): the bookkeeping the cpu backend and the shared kernel layer
 * share. */
#include "core/op_act16.h"

static int is16(pt_dtype t) { return t == PT_BF16 || t == PT_F16; }

int pt_act16_operand(const pt_op *op, int i)
{
    return !pt_op_operand_absent(op, i) && op->t[i].ndim > 0 && is16(op->t[i].dtype);
}

int pt_act16_nhwc(const pt_op *op, int i)
{
    return !pt_op_operand_absent(op, i) && pt_tensor_nhwc(&op->t[i]);
}

int pt_act16_stored(const pt_op *op, int i) { return pt_act16_operand(op, i) || pt_act16_nhwc(op, i); }

int pt_act16_any(const pt_op *op)
{
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++)
        if (pt_act16_stored(op, i)) return 1;
    return 0;
}

int pt_act16_copied(const pt_op *op, unsigned native, int i)
{
    return pt_act16_stored(op, i) && !((native >> i) & 1u);
}

int pt_act16_all_native(const pt_op *op, unsigned native)
{
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++)
        if (pt_act16_copied(op, native, i)) return 0;
    return 1;
}

void pt_act16_widen_op(const pt_op *op, unsigned native, pt_op *w)
{
    *w = *op;
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++)
        if (pt_act16_copied(op, native, i)) {
            /* an int32 image (a max-pool's argmax) keeps its type: only its layout is copied */
            if (w->t[i].dtype != PT_I32) w->t[i].dtype = PT_F32;
            w->t[i].layout = PT_LAYOUT_NCHW;
        }
}

int pt_act16_alias(const pt_op *op, unsigned native, int i)
{
    for (int j = 0; j < i; j++)
        if (pt_act16_copied(op, native, j) && op->t[j].mem.buf == op->t[i].mem.buf &&
            op->t[j].mem.off == op->t[i].mem.off)
            return j;
    return -1;
}

static size_t round_up(size_t n, size_t align) { return (n + align - 1) & ~(align - 1); }

size_t pt_act16_place(const pt_op *op, unsigned native, pt_op *w, size_t base, size_t align)
{
    size_t off = round_up(base, align);
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++) {
        if (!pt_act16_copied(op, native, i)) continue;
        const int j = pt_act16_alias(op, native, i);
        if (j >= 0) {
            w->t[i].mem = w->t[j].mem;
            continue;
        }
        w->t[i].mem = op->workspace;
        w->t[i].mem.off += off;
        off = round_up(off + (size_t)pt_tensor_numel(&op->t[i]) * 4 /* float32 or int32 */, align);
    }
    w->workspace_bytes = base;
    return off;
}

int pt_act16_copy_in(const pt_op *op, unsigned native, int i)
{
    if (!pt_act16_copied(op, native, i) || pt_act16_alias(op, native, i) >= 0) return 0;
    const pt_op_desc *desc = pt_op_describe(op->kind);
    /* an output is read too where it is added to; an in-place output is its input's copy */
    if ((desc->arg[i].access & PT_ARG_IN) || op->accumulate) return 1;
    for (int j = i + 1; j < op->nt && j < PT_OP_MAX_OPERANDS; j++)
        if (pt_act16_copied(op, native, j) && pt_act16_alias(op, native, j) == i && (desc->arg[j].access & PT_ARG_IN))
            return 1;
    return 0;
}

int pt_act16_copy_out(const pt_op *op, unsigned native, int i)
{
    const pt_op_desc *desc = pt_op_describe(op->kind);
    if (!pt_act16_copied(op, native, i) || !(desc->arg[i].access & PT_ARG_OUT)) return 0;
    const int j = pt_act16_alias(op, native, i);
    return !(j >= 0 && (desc->arg[j].access & PT_ARG_OUT)); /* else stored through j */
}
