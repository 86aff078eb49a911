/* Ops as calls of the shared kernels (kernel_table.h) and the device's SGEMM, written once for
 * both device backends: an op's argument lists, launch sizes, the GEMM with an empty inner
 * dimension, the im2col convolution and the math modes (polytrain/precision.h) live here, and a
 * backend supplies only what really differs (pt_kdev: how a kernel call is queued, how an
 * SGEMM runs, with TF32 or not, and optionally a GEMM of 16-bit operands). Plain C over polytrain/op.h:
 * no vendor header, so the same code is exercised on the host by the tests. */
#ifndef PT_KERNEL_OPS_H
#define PT_KERNEL_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "backends/kernels/kernel_table.h"
#include "core/op_act16.h"
#include "polytrain/op.h"

/* ---- a kernel call: the kernel, its arguments in order, and how many items or channels ---- */

#define PT_KCALL_MAX_ARGS 24

typedef struct pt_karg {
    char type; /* the parameter letter it is passed as: m i u l U f */
    union {
        pt_mem m; /* byte offset; the kernel receives it in elements of 4 bytes */
        int32_t i;
        uint32_t u;
        int64_t l;
        uint64_t ul;
        float f;
    } v;
} pt_karg;

typedef struct pt_kcall {
    pt_kernel_id kernel;
    int nargs; /* may exceed PT_KCALL_MAX_ARGS: pt_kcall_check reports it */
    pt_karg arg[PT_KCALL_MAX_ARGS + 1]; /* the last takes every argument past the maximum */
    size_t count; /* work items (PT_K_ITEMS) or channels (PT_K_CHANNELS); 0: nothing runs */
} pt_kcall;

void pt_kcall_begin(pt_kcall *c, pt_kernel_id kernel, size_t count);
void pt_karg_mem(pt_kcall *c, pt_mem m);
void pt_karg_tensor(pt_kcall *c, const pt_tensor *t);
void pt_karg_int(pt_kcall *c, int v);
void pt_karg_uint(pt_kcall *c, uint32_t v);
void pt_karg_long(pt_kcall *c, int64_t v);
void pt_karg_ulong(pt_kcall *c, uint64_t v);
void pt_karg_float(pt_kcall *c, float v);
/* The call's arguments against the kernel's parameter list in the table (count and type of
 * each); the message names the backend, the kernel and both lists. */
pt_status pt_kcall_check(const pt_kcall *c, const char *backend, pt_error *err);

/* ---- a device backend's part ---- */

typedef struct pt_kdev {
    void *ctx;
    const char *backend; /* for messages: "opencl", "cuda" */
    /* Queues one call, already checked against the table. */
    pt_status (*launch)(void *ctx, const pt_kcall *c, pt_error *err);
    /* Row-major C = alpha*op(A)*op(B) + beta*C with m, n, k >= 1 and leading dimensions in
     * elements; beta 0 never reads C (it may hold NaN). math is PT_PREC_FP32 (plain float32
     * products) or PT_PREC_TF32 (A and B rounded to TF32, sums in float32); a device without
     * TF32 refuses it (PT_ERR_UNSUPPORTED). The kinds' fp32 paths always pass PT_PREC_FP32. */
    pt_status (*sgemm)(void *ctx, pt_precision math, int trans_a, int trans_b, size_t m, size_t n, size_t k,
                       float alpha, pt_mem a, size_t lda, pt_mem b, size_t ldb, float beta, pt_mem c, size_t ldc,
                       pt_error *err);
    /* The im2col convolution's scratch bound: samples per GEMM are as many as fit. */
    size_t conv_ws_cap;
    /* Optional (NULL: no bf16/fp16 math, such ops are refused): the same GEMM with A and B
     * 16-bit, bfloat16 (math PT_PREC_BF16) or IEEE half (PT_PREC_FP16), at 4-byte-aligned
     * byte offsets (pt_mem.off), lda and ldb in elements; products summed in float32 into the
     * float32 C. kernel_ops converts the operands with the TO_LOWP kernel before calling it. */
    pt_status (*gemm16)(void *ctx, pt_precision math, int trans_a, int trans_b, size_t m, size_t n, size_t k,
                        float alpha, pt_mem a, size_t lda, pt_mem b, size_t ldb, float beta, pt_mem c, size_t ldc,
                        pt_error *err);
    /* A device without gemm16 whose bf16/fp16 ops still run (1): the operands are rounded to the
     * format but kept float32 (the ROUND_LOWP kernel) and multiplied by sgemm in fp32 mode. Every
     * product of two 16-bit values is exact in float32, so the numbers are the 16-bit formats'
     * products with float32 sums, as gemm16 gives; the speed is float32's. */
    int lowp_f32;
    /* Optional (NULL: convolutions stay im2col): batch GEMMs of the sgemm kind in fp32, the
     * i-th on a + i*stride_a, b + i*stride_b, c + i*stride_c (strides in elements). Winograd
     * F(2x2,3x3) convolutions (kernel_winograd.h) run their 16 GEMMs per block of tiles through it. */
    pt_status (*sgemm_batched)(void *ctx, int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
                               pt_mem a, size_t lda, size_t stride_a, pt_mem b, size_t ldb, size_t stride_b,
                               float beta, pt_mem c, size_t ldc, size_t stride_c, size_t batch, pt_error *err);
    /* Optional (0: any size, any offset): the sizes at which sgemm_batched's C = A^T B (A
     * stored k x m, B k x n, C m x n, row-major with the leading dimension the row length, each
     * matrix on a gemm_align-float boundary) reads and writes its operands in place: m, n, k
     * multiples of gemm_mult[0], [1], [2]. Elsewhere the device may copy operands into padded
     * temporaries (CLBlast's tiled kernel); kernel_winograd.c lays out its planes so. */
    int gemm_mult[3];
    int gemm_align;
    /* Winograd for 3x3 stride-1 convolutions (with sgemm_batched): PT_KWINO_OFF, PT_KWINO_AUTO
     * (where the measured rule of kernel_winograd.c says it is faster than im2col) or
     * PT_KWINO_FORCE (everywhere it applies: the tests). */
    int winograd;
    /* Convolutions (fp32) whose C*R*S is at most conv_small_fwd_crs run forward, at most
     * conv_small_crs their filter gradient, as the direct kernels of ops_conv_small.cl instead
     * of im2col + GEMM (0: never; at most PT_KCONV_SMALL_MAX). The device sets them where it
     * measured the direct kernels faster. */
    int conv_small_fwd_crs, conv_small_crs;
    /* Every 16-bit operand through float32 copies, none to the kernels' 16-bit twins (the
     * backend's PT_<BACKEND>_ACT16=copy, pt_kact16_setting): the oracle the tests hold the
     * twins to. */
    int act16_copy;
    /* The per-channel reductions (BatchNorm forward in training, backward) through float32
     * copies: they read x two or three times, and on a CPU device a conversion at every read
     * costs more than one pass of copies (PoCL, fp16: BatchNorm forward 1.8x, backward 1.2-1.5x
     * the copies' time); on a GPU the halved memory traffic is the point. */
    int act16_copy_channels;
} pt_kdev;

enum { PT_KWINO_OFF = 0, PT_KWINO_AUTO = 1, PT_KWINO_FORCE = 2 };

/* Runs op (validated by the backend's run()) with the shared kernels and dev's SGEMM: every
 * op kind. Launches go through pt_kcall_check first. GEMMs and convolutions honour op->math:
 * tf32 through sgemm's math argument; bf16 and fp16 convert the multiplied operands (A and B;
 * x or the im2col columns, w, dy) into the op's workspace and multiply with gemm16 (refused
 * with PT_ERR_UNSUPPORTED on a device without one, unless lowp_f32). */
pt_status pt_kops_run(const pt_kdev *dev, const pt_op *op, pt_error *err);
/* Scratch bytes pt_kops_run needs for op: the convolutions' im2col and regrouping, and in
 * bf16/fp16 the rounded copies of the multiplied operands (GEMMs too; 16-bit, or float32 on a
 * lowp_f32 device). */
size_t pt_kops_workspace(const pt_kdev *dev, const pt_op *op);
/* Samples per GEMM of the im2col convolution op under dev's conv_ws_cap (what the GEMMs' widths
 * follow; tuning times those GEMMs). */
int pt_kconv_group(const pt_kdev *dev, const pt_op *op);
/* The direct small-C*R*S convolution (kernel_conv_small.c): the largest C*R*S its kernels take
 * (their PT_SMALL_CRS), whether dev runs op with it, and the run. */
#define PT_KCONV_SMALL_MAX 32
int pt_kconv_small_applies(const pt_kdev *dev, const pt_op *op);
pt_status pt_kconv_small_run(const pt_kdev *dev, const pt_op *op, pt_error *err);
/* A convolution of op's shape has no multiply-adds (an extent is zero): only its zero fill runs. */
int pt_kconv_empty(const pt_op *op);

/* ---- reduced-precision helpers (math PT_PREC_BF16 or PT_PREC_FP16) ---- */

/* Whether math multiplies 16-bit operands (bf16, fp16): those need gemm16 and conversions. */
int pt_kops_lowp(pt_precision math);
/* Bytes of n 16-bit elements, rounded up to the 256-byte boundary every workspace part keeps. */
size_t pt_kops_lowp_bytes(size_t n);
/* dst16[0..n) = src rounded to math's 16-bit format (the TO_LOWP kernel); dst16 4-byte aligned. */
pt_status pt_kops_to_lowp(const pt_kdev *dev, pt_precision math, pt_mem src, pt_mem dst16, size_t n,
                          pt_error *err);
/* dst[0..n) = (acc ? dst : 0) + alpha * src16 (the FROM_LOWP kernel). */
pt_status pt_kops_from_lowp(const pt_kdev *dev, pt_precision math, pt_mem src16, pt_mem dst, size_t n, float alpha,
                            int acc, pt_error *err);

/* dst = src moved between NCHW and NHWC (to_nhwc 1: src is NCHW, dst NHWC; 0 the other way) as
 * n x c x hw images, converted from sdt to ddt (PT_F32, PT_BF16 or PT_F16; widened exactly,
 * rounded to nearest even once; any 32-bit words move as float32 does); acc: dst (float32) +=
 * the values instead (the RELAYOUT kernel, ops_layout.cl). A filter [K,C,R,S] is n = K, c = C,
 * hw = R*S: to_nhwc gives [K,R,S,C]. */
pt_status pt_kops_relayout(const pt_kdev *dev, pt_mem src, pt_dtype sdt, pt_mem dst, pt_dtype ddt, int to_nhwc,
                           int64_t n, int64_t c, int64_t hw, int acc, pt_error *err);

/* ---- activations stored in 16 bits, images stored NHWC (kernel_act16.c) ----
 * An op whose lowp operands (polytrain/op.h) include PT_BF16 or PT_F16 tensors runs its kernels
 * on them directly where they take 16-bit operands (the *_A16 twins of kernel_table.h, which
 * widen each load exactly and round each store to nearest even once: bitwise the float kernel
 * over widened copies), and otherwise as the float32 op over float32 copies in its workspace,
 * after the float op's own part: 16-bit inputs widened exactly before, 16-bit outputs rounded
 * once after (the cpu backend's rule). pt_kops_run and pt_kops_workspace do this themselves; a
 * backend that runs some kinds outside the shared layer (cuda: cuDNN) wraps its own paths with
 * pt_kact16_workspace and pt_kact16_run, with its own mask of native operands. NHWC images
 * (pt_tensor.layout) go the same way: read as stored by the kernels with an NHWC form (the
 * pointwise kinds, whose every operand is NHWC), else transposed (and widened) into float32
 * NCHW copies before and back after (the RELAYOUT kernel). */
typedef size_t (*pt_kop_workspace_fn)(void *ctx, const pt_op *op);
typedef pt_status (*pt_kop_run_fn)(void *ctx, const pt_op *op, pt_error *err);
/* The operands of op stored 16-bit or NHWC (bit i: operand i) that the shared kernels read and
 * write as stored themselves: a 16-bit one where the kind has *_A16 twins, an NHWC one where it
 * has an NHWC form (and both for one that is both). */
unsigned pt_kops_act16_native(const pt_kdev *dev, const pt_op *op);
/* The environment variable var ("PT_OPENCL_ACT16"): unset, empty or "native" 0, "copy" 1 into
 * *copy; anything else an error naming it. */
pt_status pt_kact16_setting(const char *var, int *copy, pt_error *err);
/* The float32 NCHW copies (core/op_act16.h; w from pt_act16_widen_op and pt_act16_place with
 * the same native mask, 256-byte aligned): widens (and transposes) the copied operands op reads
 * into w's copies; rounds (and transposes) w's copied outputs into op's. */
pt_status pt_kact16_load(const pt_kdev *dev, const pt_op *op, unsigned native, const pt_op *w, pt_error *err);
pt_status pt_kact16_store(const pt_kdev *dev, const pt_op *op, unsigned native, const pt_op *w, pt_error *err);
/* The workspace of op with 16-bit operands, and its run: f32_workspace / f32_run (with ctx) are
 * the backend's own, given op with its copied operands widened (the native ones keep their
 * 16-bit type); the conversions are dev's kernel launches. */
size_t pt_kact16_workspace(const pt_kdev *dev, const pt_op *op, unsigned native, pt_kop_workspace_fn f32_workspace,
                           void *ctx);
pt_status pt_kact16_run(const pt_kdev *dev, const pt_op *op, unsigned native, pt_kop_workspace_fn f32_workspace,
                        pt_kop_run_fn f32_run, void *ctx, pt_error *err);

#endif
