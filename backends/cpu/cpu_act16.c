/* Activations stored in 16 bits (PT_BF16, PT_F16) on the operands the op table marks lowp:
 * the cpu kernels compute in float32, so an op with such operands runs as the same op over
 * float32 copies in its workspace: each 16-bit input widened (exactly) before, each 16-bit
 * output rounded to nearest even once after (core/half.h). Every kernel thus has one float
 * path, and the fp32 ops are untouched. The copies live in the op's workspace, which the
 * core reserves when the lists are built, so a step still allocates nothing. A convolution
 * in bf16 (fp16) math reading a bf16 (fp16) x forms exactly the products it forms from a
 * float x rounded to that format: the widened values are already representable, and the
 * math mode's rounding leaves them as they are. Winograd transforms the stored x, which is
 * the rounded one. */
#include <string.h>

#include "backends/cpu/cpu_internal.h"
#include "core/half.h"

/* Elements above which a conversion is spread over the device's threads. */
#define ACT16_PAR_MIN 32768

static int is16(pt_dtype t) { return t == PT_BF16 || t == PT_F16; }

static int used16(const pt_op *op, int i) { return !pt_op_operand_absent(op, i) && op->t[i].ndim > 0 && is16(op->t[i].dtype); }

int cpu_act16_any(const pt_op *op)
{
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++)
        if (used16(op, i)) return 1;
    return 0;
}

void cpu_act16_widen(const pt_op *op, pt_op *w)
{
    *w = *op;
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++)
        if (used16(op, i)) w->t[i].dtype = PT_F32;
}

/* The 16-bit operand before i with i's storage (an in-place op), or -1. */
static int alias_of(const pt_op *op, int i)
{
    for (int j = 0; j < i; j++)
        if (used16(op, j) && op->t[j].mem.buf == op->t[i].mem.buf && op->t[j].mem.off == op->t[i].mem.off)
            return j;
    return -1;
}

static size_t align64(size_t n) { return (n + 63) / 64 * 64; }

size_t cpu_act16_place(const pt_op *op, pt_op *w, size_t base)
{
    size_t off = align64(base);
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++) {
        if (!used16(op, i)) continue;
        const int j = alias_of(op, i);
        if (j >= 0) {
            w->t[i].mem = w->t[j].mem;
            continue;
        }
        w->t[i].mem.buf = op->workspace.buf;
        w->t[i].mem.off = op->workspace.off + off;
        off = align64(off + (size_t)pt_tensor_numel(&op->t[i]) * sizeof(float));
    }
    w->workspace_bytes = base;
    return off;
}

static void widen(const cpu_device *d, float *dst, const uint16_t *src, int64_t n, pt_dtype dt)
{
    if (dt == PT_BF16) {
#pragma omp parallel for simd num_threads(d->threads) if (n > ACT16_PAR_MIN) schedule(static)
        for (int64_t i = 0; i < n; i++) dst[i] = pt_f32_from_bf16(src[i]);
    } else {
#pragma omp parallel for num_threads(d->threads) if (n > ACT16_PAR_MIN) schedule(static)
        for (int64_t i = 0; i < n; i++) dst[i] = pt_f32_from_f16(src[i]);
    }
}

static void narrow(const cpu_device *d, uint16_t *dst, const float *src, int64_t n, pt_dtype dt)
{
    if (dt == PT_BF16) {
#pragma omp parallel for simd num_threads(d->threads) if (n > ACT16_PAR_MIN) schedule(static)
        for (int64_t i = 0; i < n; i++) dst[i] = pt_bf16_from_f32(src[i]);
    } else {
#pragma omp parallel for num_threads(d->threads) if (n > ACT16_PAR_MIN) schedule(static)
        for (int64_t i = 0; i < n; i++) dst[i] = pt_f16_from_f32(src[i]);
    }
}

void cpu_act16_load(const cpu_device *d, const pt_op *op, const pt_op *w)
{
    const pt_op_desc *desc = pt_op_describe(op->kind);
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++) {
        if (!used16(op, i) || alias_of(op, i) >= 0) continue;
        /* an output is read too where it is added to; an in-place output is its input's copy */
        int read = (desc->arg[i].access & PT_ARG_IN) || op->accumulate;
        for (int j = i + 1; j < op->nt && j < PT_OP_MAX_OPERANDS && !read; j++)
            if (used16(op, j) && alias_of(op, j) == i && (desc->arg[j].access & PT_ARG_IN)) read = 1;
        if (read) widen(d, cpu_f32(&w->t[i]), cpu_ptr(op->t[i].mem), pt_tensor_numel(&op->t[i]), op->t[i].dtype);
    }
}

void cpu_act16_store(const cpu_device *d, const pt_op *op, const pt_op *w)
{
    const pt_op_desc *desc = pt_op_describe(op->kind);
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++) {
        if (!used16(op, i) || !(desc->arg[i].access & PT_ARG_OUT)) continue;
        const int j = alias_of(op, i);
        if (j >= 0 && (desc->arg[j].access & PT_ARG_OUT)) continue; /* stored through j */
        narrow(d, cpu_ptr(op->t[i].mem), cpu_f32(&w->t[i]), pt_tensor_numel(&op->t[i]), op->t[i].dtype);
    }
}
