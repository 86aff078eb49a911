/* Activations stored in 16 bits (PT_BF16, PT_F16) on the operands the op table marks lowp, for
 * both device backends: an op with such operands runs as the same op over float32 copies in its
 * workspace. Each 16-bit input is widened exactly (the WIDEN_LOWP kernel), the float32 op runs
 * unchanged, each 16-bit output is rounded to nearest even once (TO_LOWP): bitwise the cpu
 * backend's rule (backends/cpu/cpu_act16.c, core/half.h), so the float32 kernels keep one
 * source and their speed, and an op mixing float32 and 16-bit operands needs no variant. The
 * copies live in the op's workspace, after the float op's own, which workspace_size reports,
 * so a step still allocates nothing. */
#include "backends/kernels/kernel_ops.h"

static int is16(pt_dtype t) { return t == PT_BF16 || t == PT_F16; }

static int used16(const pt_op *op, int i)
{
    return !pt_op_operand_absent(op, i) && op->t[i].ndim > 0 && is16(op->t[i].dtype);
}

int pt_kact16_any(const pt_op *op)
{
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++)
        if (used16(op, i)) return 1;
    return 0;
}

void pt_kact16_widen(const pt_op *op, pt_op *w)
{
    *w = *op;
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++)
        if (used16(op, i)) w->t[i].dtype = PT_F32;
}

/* The 16-bit operand before i with i's storage (an in-place op), or -1. */
static int alias_of(const pt_op *op, int i)
{
    for (int j = 0; j < i; j++)
        if (used16(op, j) && op->t[j].mem.buf == op->t[i].mem.buf && op->t[j].mem.off == op->t[i].mem.off) return j;
    return -1;
}

/* each copy on the 256-byte boundary every workspace part keeps */
static size_t align256(size_t n) { return (n + 255) / 256 * 256; }

size_t pt_kact16_place(const pt_op *op, pt_op *w, size_t base)
{
    size_t off = align256(base);
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++) {
        if (!used16(op, i)) continue;
        const int j = alias_of(op, i);
        if (j >= 0) {
            w->t[i].mem = w->t[j].mem;
            continue;
        }
        w->t[i].mem = op->workspace;
        w->t[i].mem.off += off;
        off = align256(off + (size_t)pt_tensor_numel(&op->t[i]) * sizeof(float));
    }
    w->workspace_bytes = base;
    return off;
}

static pt_status convert(const pt_kdev *dev, pt_kernel_id id, pt_mem src, pt_mem dst, size_t n, int f16,
                         pt_error *err)
{
    pt_kcall c;
    pt_kcall_begin(&c, id, n);
    pt_karg_mem(&c, src);
    pt_karg_mem(&c, dst);
    pt_karg_int(&c, (int)n);
    pt_karg_int(&c, f16);
    PT_TRY(pt_kcall_check(&c, dev->backend, err));
    return n ? dev->launch(dev->ctx, &c, err) : PT_OK;
}

pt_status pt_kact16_load(const pt_kdev *dev, const pt_op *op, const pt_op *w, pt_error *err)
{
    const pt_op_desc *desc = pt_op_describe(op->kind);
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++) {
        if (!used16(op, i) || alias_of(op, i) >= 0) continue;
        /* an output is read too where it is added to; an in-place output is its input's copy */
        int read = (desc->arg[i].access & PT_ARG_IN) || op->accumulate;
        for (int j = i + 1; j < op->nt && j < PT_OP_MAX_OPERANDS && !read; j++)
            if (used16(op, j) && alias_of(op, j) == i && (desc->arg[j].access & PT_ARG_IN)) read = 1;
        if (read)
            PT_TRY(convert(dev, PT_K_WIDEN_LOWP, op->t[i].mem, w->t[i].mem, (size_t)pt_tensor_numel(&op->t[i]),
                           op->t[i].dtype == PT_F16, err));
    }
    return PT_OK;
}

pt_status pt_kact16_store(const pt_kdev *dev, const pt_op *op, const pt_op *w, pt_error *err)
{
    const pt_op_desc *desc = pt_op_describe(op->kind);
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++) {
        if (!used16(op, i) || !(desc->arg[i].access & PT_ARG_OUT)) continue;
        const int j = alias_of(op, i);
        if (j >= 0 && (desc->arg[j].access & PT_ARG_OUT)) continue; /* stored through j */
        PT_TRY(convert(dev, PT_K_TO_LOWP, w->t[i].mem, op->t[i].mem, (size_t)pt_tensor_numel(&op->t[i]),
                       op->t[i].dtype == PT_F16, err));
    }
    return PT_OK;
}

size_t pt_kact16_workspace(const pt_kdev *dev, const pt_op *op, pt_kop_workspace_fn f32_workspace, void *ctx)
{
    (void)dev;
    pt_op w;
    pt_kact16_widen(op, &w);
    return pt_kact16_place(op, &w, f32_workspace(ctx, &w));
}

pt_status pt_kact16_run(const pt_kdev *dev, const pt_op *op, pt_kop_workspace_fn f32_workspace,
                        pt_kop_run_fn f32_run, void *ctx, pt_error *err)
{
    const pt_op_desc *d = pt_op_describe(op->kind);
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++)
        if (used16(op, i) && op->t[i].mem.off % 4)
            return pt_fail(err, PT_ERR_INVALID, "%s %s: 16-bit operand %d (%s) at byte offset %zu, expected a multiple of 4",
                           dev->backend, d ? d->name : "?", i, d ? d->arg[i].name : "?", op->t[i].mem.off);
    pt_op w;
    pt_kact16_widen(op, &w);
    const size_t need = pt_kact16_place(op, &w, f32_workspace(ctx, &w));
    if (!op->workspace.buf || op->workspace_bytes < need)
        return pt_fail(err, PT_ERR_INVALID, "%s %s: 16-bit operands need %zu bytes of workspace, the op has %zu",
                       dev->backend, d ? d->name : "?", need, op->workspace.buf ? op->workspace_bytes : (size_t)0);
    PT_TRY(pt_kact16_load(dev, op, &w, err));
    PT_TRY(f32_run(ctx, &w, err));
    return pt_kact16_store(dev, op, &w, err);
}
