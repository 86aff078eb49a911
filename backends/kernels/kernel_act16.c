/* Activations stored in 16 bits (PT_BF16, PT_F16) on the operands the op table marks lowp, and
 * images stored channels last (PT_LAYOUT_NHWC) on its img operands, for both device backends:
 * the operands a kernel takes as stored itself (the native mask) stay as they are; every other
 * such operand runs as the same op over a float32 NCHW copy in its workspace. Each 16-bit input
 * is widened exactly (the WIDEN_LOWP kernel), the float32 op runs unchanged, each 16-bit output
 * is rounded to nearest even once (TO_LOWP): bitwise the cpu backend's rule
 * (backends/cpu/cpu_act16.c, core/half.h), so the float32 kernels keep one source and their
 * speed, and an op mixing float32 and 16-bit operands needs no variant. An NHWC operand is
 * transposed (and converted) by RELAYOUT in the same pass, so every kind runs on NHWC images,
 * natively or not. The copies live in the op's workspace, after the float op's own, which
 * workspace_size reports, so a step still allocates nothing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends/kernels/kernel_ops.h"

pt_status pt_kact16_setting(const char *var, int *copy, pt_error *err)
{
    const char *v = getenv(var);
    *copy = 0;
    if (!v || !*v || strcmp(v, "native") == 0) return PT_OK;
    if (strcmp(v, "copy") == 0) {
        *copy = 1;
        return PT_OK;
    }
    return pt_fail(err, PT_ERR_INVALID, "%s is '%s', expected copy or native", var, v);
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

static int kdt(pt_dtype t) { return t == PT_BF16 ? 1 : t == PT_F16 ? 2 : 0; /* act16.cl's PT_KDT_* */ }

pt_status pt_kops_relayout(const pt_kdev *dev, pt_mem src, pt_dtype sdt, pt_mem dst, pt_dtype ddt, int to_nhwc,
                           int64_t n, int64_t c, int64_t hw, int acc, pt_error *err)
{
    const int64_t count = n * c * hw;
    if (count > INT32_MAX)
        return pt_fail(err, PT_ERR_INVALID, "%s: a layout copy of %lld elements (2^31 at most)", dev->backend,
                       (long long)count);
    if (acc && ddt != PT_F32)
        return pt_fail(err, PT_ERR_INVALID, "%s: a layout copy adds only into float32", dev->backend);
    pt_kcall k;
    pt_kcall_begin(&k, PT_K_RELAYOUT, (size_t)count);
    pt_karg_mem(&k, src);
    pt_karg_int(&k, kdt(sdt));
    pt_karg_mem(&k, dst);
    pt_karg_int(&k, kdt(ddt));
    pt_karg_int(&k, (int)count);
    pt_karg_int(&k, (int)c);
    pt_karg_int(&k, (int)hw);
    pt_karg_int(&k, to_nhwc);
    pt_karg_int(&k, acc);
    PT_TRY(pt_kcall_check(&k, dev->backend, err));
    return count ? dev->launch(dev->ctx, &k, err) : PT_OK;
}

/* An NHWC image t (stored as it is) and its float32 NCHW copy at m, either way. */
static pt_status relayout(const pt_kdev *dev, const pt_tensor *t, pt_mem m, int to_nhwc, pt_error *err)
{
    /* an int32 image (an argmax) moves as 32-bit words, as float32 does */
    const pt_dtype dt = t->dtype == PT_I32 ? PT_F32 : t->dtype;
    return to_nhwc ? pt_kops_relayout(dev, m, PT_F32, t->mem, dt, 1, t->dim[0], t->dim[1], t->dim[2] * t->dim[3], 0, err)
                   : pt_kops_relayout(dev, t->mem, dt, m, PT_F32, 0, t->dim[0], t->dim[1], t->dim[2] * t->dim[3], 0, err);
}

pt_status pt_kact16_load(const pt_kdev *dev, const pt_op *op, unsigned native, const pt_op *w, pt_error *err)
{
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++) {
        if (!pt_act16_copy_in(op, native, i)) continue;
        if (pt_act16_nhwc(op, i))
            PT_TRY(relayout(dev, &op->t[i], w->t[i].mem, 0, err));
        else
            PT_TRY(convert(dev, PT_K_WIDEN_LOWP, op->t[i].mem, w->t[i].mem, (size_t)pt_tensor_numel(&op->t[i]),
                           op->t[i].dtype == PT_F16, err));
    }
    return PT_OK;
}

pt_status pt_kact16_store(const pt_kdev *dev, const pt_op *op, unsigned native, const pt_op *w, pt_error *err)
{
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++) {
        if (!pt_act16_copy_out(op, native, i)) continue;
        if (pt_act16_nhwc(op, i))
            PT_TRY(relayout(dev, &op->t[i], w->t[i].mem, 1, err));
        else
            PT_TRY(convert(dev, PT_K_TO_LOWP, w->t[i].mem, op->t[i].mem, (size_t)pt_tensor_numel(&op->t[i]),
                           op->t[i].dtype == PT_F16, err));
    }
    return PT_OK;
}

size_t pt_kact16_workspace(const pt_kdev *dev, const pt_op *op, unsigned native, pt_kop_workspace_fn f32_workspace,
                           void *ctx)
{
    (void)dev;
    pt_op w;
    pt_act16_widen_op(op, native, &w);
    return pt_act16_place(op, native, &w, f32_workspace(ctx, &w), 256 /* the boundary every workspace part keeps */);
}

pt_status pt_kact16_run(const pt_kdev *dev, const pt_op *op, unsigned native, pt_kop_workspace_fn f32_workspace,
                        pt_kop_run_fn f32_run, void *ctx, pt_error *err)
{
    const pt_op_desc *d = pt_op_describe(op->kind);
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++)
        if (pt_act16_operand(op, i) && op->t[i].mem.off % 4)
            return pt_fail(err, PT_ERR_INVALID, "%s %s: 16-bit operand %d (%s) at byte offset %zu, expected a multiple of 4",
                           dev->backend, d ? d->name : "?", i, d ? d->arg[i].name : "?", op->t[i].mem.off);
    if (pt_act16_all_native(op, native)) return f32_run(ctx, op, err);
    pt_op w;
    pt_act16_widen_op(op, native, &w);
    const size_t need =
        pt_act16_place(op, native, &w, f32_workspace(ctx, &w), 256 /* the boundary every workspace part keeps */);
    if (!op->workspace.buf || op->workspace_bytes < need)
        return pt_fail(err, PT_ERR_INVALID, "%s %s: 16-bit operands need %zu bytes of workspace, the op has %zu",
                       dev->backend, d ? d->name : "?", need, op->workspace.buf ? op->workspace_bytes : (size_t)0);
    PT_TRY(pt_kact16_load(dev, op, native, &w, err));
    PT_TRY(f32_run(ctx, &w, err));
    return pt_kact16_store(dev, op, native, &w, err);
}
