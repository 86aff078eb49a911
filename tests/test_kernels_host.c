/* The device backends' shared path run on the host: the kernels of backends/kernels compiled
 * as C (tests/kernel_host_dialect.h) and called through the shared kernel layer
 * (backends/kernels/kernel_ops.c: every op's argument list and launch size, the im2col
 * convolution, the GEMM with an empty inner dimension) by a device whose launches are loops
 * over the items and whose SGEMM is a plain triple loop. The whole conformance suite runs on
 * it against the cpu backend, so the code both GPU backends run is checked on machines with
 * neither GPU nor OpenCL driver. The calls into the kernels are generated from
 * kernel_table.h, so a parameter list there that does not match a kernel's source does not
 * compile. Also: a call that does not match the table is refused, and the table covers every
 * pointwise kind. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernel_host_dialect.h"
/* the kernel files, in the order the backends compile them (name order) */
#include "backends/kernels/philox.h"
#include "backends/kernels/act16.cl"
#include "backends/kernels/ops.cl"
#include "backends/kernels/ops_cast.cl"
#include "backends/kernels/ops_mixup.cl"
#include "backends/kernels/ops_winograd.cl"
#include "backends/kernels/ops_zoo.cl"
#include "backends/kernels/ops_conv_small.cl"
#include "backends/kernels/ops_layout.cl"
#include "backends/kernels/ops_nhwc.cl"

#include "backends/cpu/cpu_internal.h"
#include "backends/kernels/kernel_ops.h"
#include "backends/kernels/kernel_winograd.h"
#include "polytrain/backend.h"
#include "core/conformance.h"
#include "core/half.h"
#include "pt_test.h"

/* ---- a device of host memory whose ops run through the shared kernel layer ---- */

static long g_sgemm_calls[PT_PREC_COUNT]; /* GEMMs run, per math mode */

/* Kernel arguments from a call, by parameter letter: a tensor is its buffer's host memory and
 * the element offset, as a device kernel receives it. */
#define HK_M(j) ((pt_buffer *)c->arg[j].v.m.buf)->data, (pt_i64)(c->arg[j].v.m.off / 4)
#define HK_I(j) c->arg[j].v.i
#define HK_U(j) c->arg[j].v.u
#define HK_L(j) c->arg[j].v.l
#define HK_UL(j) c->arg[j].v.ul
#define HK_F(j) c->arg[j].v.f
#define HK_ARG(j, T) HK_##T(j)
/* One item per element, or one per channel (PT_RED_WG is 1 here: a work-group is one item). */
#define HK_CASE(id, fn, launch, op, ...)                                                                    \
    case PT_K_##id:                                                                                        \
        PT_HOST_LAUNCH(c->count, fn(PT_FOR_EACH(HK_ARG, PT_FE_COMMA, __VA_ARGS__)));                       \
        return PT_OK;

static pt_status host_launch(void *ctx, const pt_kcall *c, pt_error *err)
{
    (void)ctx;
    switch (c->kernel) {
        PT_KERNEL_TABLE(HK_CASE)
    case PT_K_COUNT: break;
    }
    return pt_fail(err, PT_ERR_INVALID, "host: kernel id %d", (int)c->kernel);
}

/* math: fp32, or tf32 (each operand rounded to TF32 as tensor cores read it). */
static pt_status host_sgemm(void *ctx, pt_precision math, int ta, int tb, size_t m, size_t n, size_t k, float alpha,
                            pt_mem a, size_t lda, pt_mem b, size_t ldb, float beta, pt_mem c, size_t ldc,
                            pt_error *err)
{
    (void)ctx;
    if (math != PT_PREC_FP32 && math != PT_PREC_TF32)
        return pt_fail(err, PT_ERR_INVALID, "host sgemm: math=%s (16-bit operands go to gemm16)",
                       pt_precision_name(math));
    const int tf32 = math == PT_PREC_TF32;
    g_sgemm_calls[math]++;
    const float *A = cpu_ptr(a), *B = cpu_ptr(b);
    float *C = cpu_ptr(c);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t p = 0; p < k; p++) {
                float av = ta ? A[p * lda + i] : A[i * lda + p], bv = tb ? B[j * ldb + p] : B[p * ldb + j];
                if (tf32) av = pt_round_tf32(av), bv = pt_round_tf32(bv);
                s += (double)av * bv;
            }
            const float v = alpha * (float)s;
            C[i * ldc + j] = beta == 0.0f ? v : v + beta * C[i * ldc + j];
        }
    return PT_OK;
}

/* A and B 16-bit (bfloat16 or half by math) read with core/half.h, products summed in float32
 * as tensor cores accumulate; C float32. */
static pt_status host_gemm16(void *ctx, pt_precision math, int ta, int tb, size_t m, size_t n, size_t k, float alpha,
                             pt_mem a, size_t lda, pt_mem b, size_t ldb, float beta, pt_mem c, size_t ldc,
                             pt_error *err)
{
    (void)ctx;
    if (math != PT_PREC_BF16 && math != PT_PREC_FP16)
        return pt_fail(err, PT_ERR_INVALID, "host gemm16: math=%s", pt_precision_name(math));
    if (a.off % 4 || b.off % 4)
        return pt_fail(err, PT_ERR_INVALID, "host gemm16: operands at byte offsets %zu, %zu (not 4-byte aligned)",
                       a.off, b.off);
    g_sgemm_calls[math]++;
    const uint16_t *A = (const uint16_t *)(const void *)((const char *)a.buf->data + a.off);
    const uint16_t *B = (const uint16_t *)(const void *)((const char *)b.buf->data + b.off);
    float *C = cpu_ptr(c);
    const int f16 = math == PT_PREC_FP16;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            float s = 0;
            for (size_t p = 0; p < k; p++) {
                const uint16_t ah = ta ? A[p * lda + i] : A[i * lda + p], bh = tb ? B[j * ldb + p] : B[p * ldb + j];
                s += (f16 ? pt_f32_from_f16(ah) : pt_f32_from_bf16(ah)) *
                     (f16 ? pt_f32_from_f16(bh) : pt_f32_from_bf16(bh));
            }
            const float v = alpha * s;
            C[i * ldc + j] = beta == 0.0f ? v : v + beta * C[i * ldc + j];
        }
    return PT_OK;
}

/* The batched GEMM of Winograd convolutions: host_sgemm on each slice, counted apart. */
static long g_batched_calls;

static pt_status host_sgemm_batched(void *ctx, int ta, int tb, size_t m, size_t n, size_t k, float alpha, pt_mem a,
                                    size_t lda, size_t stride_a, pt_mem b, size_t ldb, size_t stride_b, float beta,
                                    pt_mem c, size_t ldc, size_t stride_c, size_t batch, pt_error *err)
{
    g_batched_calls++;
    for (size_t i = 0; i < batch; i++) {
        pt_mem ai = a, bi = b, ci = c;
        ai.off += i * stride_a * sizeof(float);
        bi.off += i * stride_b * sizeof(float);
        ci.off += i * stride_c * sizeof(float);
        PT_TRY(host_sgemm(ctx, PT_PREC_FP32, ta, tb, m, n, k, alpha, ai, lda, bi, ldb, beta, ci, ldc, err));
    }
    return PT_OK;
}

/* Small enough that the conformance suite's larger convolutions run in several groups; the
 * fp32 convolutions with C*R*S up to 32 take the direct kernels (ops_conv_small.cl), the
 * others and every bf16/fp16 one im2col. */
#define HOST_KDEV                                                                                        \
    .ctx = NULL, .backend = "host", .launch = host_launch, .sgemm = host_sgemm, .conv_ws_cap = (size_t)16 << 10, \
    .gemm16 = host_gemm16, .conv_small_fwd_crs = PT_KCONV_SMALL_MAX, .conv_small_crs = PT_KCONV_SMALL_MAX
static const pt_kdev g_host = {HOST_KDEV};
/* Without gemm16 but with lowp_f32: bf16/fp16 operands rounded in float32 into host_sgemm (the
 * opencl backend's fp16). */
static const pt_kdev g_host_round = {.ctx = NULL,
                                     .backend = "host",
                                     .launch = host_launch,
                                     .sgemm = host_sgemm,
                                     .conv_ws_cap = (size_t)16 << 10,
                                     .lowp_f32 = 1};
/* Winograd for every 3x3 stride-1 convolution; 64 KiB of scratch puts the 16-channel cases'
 * tiles in several blocks (the filter gradient's sum across blocks). */
static const pt_kdev g_host_wino = {.ctx = NULL,
                                    .backend = "host",
                                    .launch = host_launch,
                                    .sgemm = host_sgemm,
                                    .conv_ws_cap = (size_t)64 << 10,
                                    .gemm16 = host_gemm16,
                                    .sgemm_batched = host_sgemm_batched,
                                    .winograd = PT_KWINO_FORCE};
/* g_host with every 16-bit operand through float32 copies: the oracle of the kernels' 16-bit
 * twins. */
static const pt_kdev g_host_copy = {HOST_KDEV, .act16_copy = 1};
/* The device the conformance suite runs through. */
static const pt_kdev *g_kdev = &g_host;
/* Set: host_run runs each op whose 16-bit operands go to the kernels' twins twice, on the
 * copies first, and counts in g_twin the ops whose operands come out other than bit for bit
 * the same (NaN payloads included). */
static int g_twin_check;
static struct {
    int ops, differ, per_kind[PT_OP_KIND_COUNT];
    char first[200];
} g_twin;
/* The same device without gemm16: bf16/fp16 ops are refused. */
static const pt_kdev g_host_fp32 = {.ctx = NULL,
                                    .backend = "host",
                                    .launch = host_launch,
                                    .sgemm = host_sgemm,
                                    .conv_ws_cap = (size_t)16 << 10};

static const pt_backend_iface *g_cpu;
static pt_backend_iface g_host_iface;

#define HOST_CAPS                                                                                          \
    (PT_CAP_MIXUP_TARGETS | PT_CAP_FUSED_RELU | PT_CAP_BN_ADD | PT_CAP_MATH(PT_PREC_TF32) |                 \
     PT_CAP_MATH(PT_PREC_BF16) | PT_CAP_MATH(PT_PREC_FP16) | PT_CAP_ACT16(PT_BF16) | PT_CAP_ACT16(PT_F16) | \
     PT_CAP_NHWC)

static int host_supports(void *ctx, const pt_op *op)
{
    (void)ctx;
    return pt_op_check_operands(op, "host", HOST_CAPS, 0, NULL) == PT_OK;
}

/* Every mode: tf32 through host_sgemm, bf16/fp16 through host_gemm16. */
static pt_status host_precision(void *ctx, pt_precision p, char *how, size_t cap, pt_error *err)
{
    (void)ctx;
    (void)err;
    static const char *const what[PT_PREC_COUNT] = {
        "float32 triple loop", "operands rounded to TF32, sums in double",
        "bf16 operands (TO_LOWP kernel) into a float32-sum triple loop",
        "fp16 operands (TO_LOWP kernel) into a float32-sum triple loop"};
    if (how && cap) snprintf(how, cap, "%s", what[p]);
    return PT_OK;
}

static size_t host_workspace(void *ctx, const pt_op *op)
{
    (void)ctx;
    const size_t ws = pt_kops_workspace(g_kdev, op);
    if (!g_twin_check) return ws;
    const size_t copies = pt_kops_workspace(&g_host_copy, op);
    return copies > ws ? copies : ws;
}

static size_t buffer_bytes(const pt_buffer *b) { return b->bytes; }

/* The distinct buffers of op's operands (at most PT_OP_MAX_OPERANDS). */
static int operand_buffers(const pt_op *op, pt_buffer **bufs)
{
    int n = 0;
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++) {
        pt_buffer *b = op->t[i].mem.buf;
        if (pt_op_operand_absent(op, i) || !b) continue;
        int seen = 0;
        for (int j = 0; j < n; j++) seen |= bufs[j] == b;
        if (!seen) bufs[n++] = b;
    }
    return n;
}

/* op on the copies, then again, from the same inputs, on the twins: every operand compared. */
static pt_status run_twins(const pt_op *op, pt_error *err)
{
    pt_buffer *bufs[PT_OP_MAX_OPERANDS];
    void *before[PT_OP_MAX_OPERANDS] = {0}, *copied[PT_OP_MAX_OPERANDS] = {0};
    const int nb = operand_buffers(op, bufs);
    int ok = 1;
    for (int j = 0; j < nb; j++) {
        before[j] = malloc(bufs[j]->bytes);
        copied[j] = malloc(bufs[j]->bytes);
        ok = ok && before[j] && copied[j];
        if (before[j]) memcpy(before[j], bufs[j]->data, bufs[j]->bytes);
    }
    pt_status st = ok ? pt_kops_run(&g_host_copy, op, err) : pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    for (int j = 0; st == PT_OK && j < nb; j++) {
        memcpy(copied[j], bufs[j]->data, bufs[j]->bytes);
        memcpy(bufs[j]->data, before[j], bufs[j]->bytes);
    }
    if (st == PT_OK) st = pt_kops_run(&g_host, op, err);
    if (st == PT_OK) {
        int same = 1;
        for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++) {
            if (pt_op_operand_absent(op, i) || !op->t[i].mem.buf) continue;
            int j = 0;
            while (bufs[j] != op->t[i].mem.buf) j++;
            const size_t off = op->t[i].mem.off, n = pt_tensor_bytes(&op->t[i]);
            if (memcmp((char *)bufs[j]->data + off, (char *)copied[j] + off, n) != 0) {
                if (same && !g_twin.differ)
                    snprintf(g_twin.first, sizeof g_twin.first, "%s operand %d (%s)", pt_op_name(op->kind), i,
                             pt_dtype_name(op->t[i].dtype));
                same = 0;
            }
        }
        g_twin.ops++;
        g_twin.per_kind[op->kind]++;
        g_twin.differ += !same;
    }
    for (int j = 0; j < nb; j++) free(before[j]), free(copied[j]);
    return st;
}

static pt_status host_run(void *ctx, const pt_op *op, pt_error *err)
{
    (void)ctx;
    PT_TRY(pt_op_check_operands(op, "host", HOST_CAPS, 1, err));
    PT_TRY(pt_op_check_memory(op, "host", buffer_bytes, 4, err));
    if (g_twin_check && g_kdev == &g_host && pt_act16_any(op) && pt_kops_act16_native(&g_host, op))
        return run_twins(op, err);
    return pt_kops_run(g_kdev, op, err);
}

typedef struct suite_tally {
    int cases, failed, per_kind[PT_OP_KIND_COUNT];
} suite_tally;

static void on_case(const pt_conformance_result *r, void *user)
{
    suite_tally *t = user;
    t->cases++;
    t->per_kind[r->kind]++;
    if (!r->pass) {
        t->failed++;
        printf("  FAIL %s: %s (error %.3g, bound %.1g, %s)\n", r->name, r->detail, r->error, r->bound, r->output);
    }
}

static uint64_t g_seed;

/* The conformance cases matching filter on the host, every op with operands its kernels take as
 * stored (run_twins) run both that way and over float32 NCHW copies: the cases pass, the two
 * agree bit for bit, and each of `kinds` ran as stored at least once. */
static void as_stored_equals_copies(pt_device *cpu, pt_device *host, const char *filter, const char *what,
                                    const pt_op_kind *kinds, size_t nkinds)
{
    pt_conformance_summary sum;
    pt_error err;
    suite_tally t;
    memset(&t, 0, sizeof t);
    memset(&g_twin, 0, sizeof g_twin);
    g_twin_check = 1;
    CHECKF(pt_conformance_run(cpu, host, g_seed, filter, on_case, &t, &sum, &err) == PT_OK, "%s", err.msg);
    g_twin_check = 0;
    CHECKF(t.failed == 0 && t.cases > 100, "%s: %d of %d cases failed", filter, t.failed, t.cases);
    CHECKF(g_twin.differ == 0, "%s: %d of %d ops differ from the float kernels over copies (first: %s)", what,
           g_twin.differ, g_twin.ops, g_twin.first);
    for (size_t i = 0; i < nkinds; i++)
        CHECKF(g_twin.per_kind[kinds[i]] > 0, "no %s case ran on %s", pt_op_name(kinds[i]), what);
    printf("  %d '%s' cases again: %d ops on %s, bitwise the float NCHW kernels over copies\n", t.cases, filter,
           g_twin.ops, what);
}

static void every_op_through_the_shared_kernels_matches_cpu(void)
{
    pt_device *cpu = NULL, host;
    pt_error err;
    if (pt_device_open("cpu", 0, NULL, &cpu, &err) != PT_OK) {
        CHECKF(0, "%s", err.msg);
        return;
    }
    g_cpu = cpu->be;
    g_host_iface = *g_cpu;
    g_host_iface.name = "host";
    g_host_iface.supports = host_supports;
    g_host_iface.workspace_size = host_workspace;
    g_host_iface.run = host_run;
    g_host_iface.precision = host_precision;
    host = *cpu;
    host.be = &g_host_iface;
    suite_tally t;
    memset(&t, 0, sizeof t);
    memset(g_sgemm_calls, 0, sizeof g_sgemm_calls);
    pt_conformance_summary sum;
    CHECKF(pt_conformance_run(cpu, &host, g_seed, NULL, on_case, &t, &sum, &err) == PT_OK, "%s", err.msg);
    CHECKF(t.failed == 0 && sum.failed == 0, "%d of %d cases failed", t.failed, t.cases);
    /* the host claims every math mode, 16-bit storage and NHWC: every case runs, the tf32/bf16/fp16
     * and layout=nhwc ones included */
    CHECKF(t.cases == pt_conformance_case_count() && sum.unclaimed == 0, "%d of %d cases ran (%d unclaimed)",
           t.cases, pt_conformance_case_count(), sum.unclaimed);
    for (int k = 0; k < PT_OP_KIND_COUNT; k++)
        CHECKF(t.per_kind[k] > 0, "no case of %s ran", pt_op_name((pt_op_kind)k));
    for (int p = 0; p < PT_PREC_COUNT; p++)
        CHECKF(g_sgemm_calls[p] > 0, "no GEMM ran in math=%s", pt_precision_name((pt_precision)p));
    printf("  %d cases through the shared kernel layer on the host, worst error/bound %.3g (%s); GEMM calls "
           "fp32 %ld, tf32 %ld, bf16 %ld, fp16 %ld\n",
           t.cases, sum.worst_ratio, sum.worst_case, g_sgemm_calls[0], g_sgemm_calls[1], g_sgemm_calls[2],
           g_sgemm_calls[3]);
    /* again the bf16/fp16 cases, on a device that rounds them in float32 for its float32 GEMM:
     * the same bounds hold, and no GEMM runs on 16-bit operands */
    g_kdev = &g_host_round;
    suite_tally r;
    memset(&r, 0, sizeof r);
    memset(g_sgemm_calls, 0, sizeof g_sgemm_calls);
    int lowp_cases = 0;
    static const char *const modes[] = {"math=bf16", "math=fp16"};
    for (int i = 0; i < 2; i++) {
        CHECKF(pt_conformance_run(cpu, &host, g_seed, modes[i], on_case, &r, &sum, &err) == PT_OK, "%s", err.msg);
        lowp_cases += sum.cases;
    }
    g_kdev = &g_host;
    CHECKF(r.failed == 0 && r.cases == lowp_cases && lowp_cases > 100,
           "lowp_f32: %d of %d bf16/fp16 cases failed (%d expected)", r.failed, r.cases, lowp_cases);
    CHECKF(g_sgemm_calls[PT_PREC_FP32] > 0 && g_sgemm_calls[PT_PREC_BF16] == 0 && g_sgemm_calls[PT_PREC_FP16] == 0,
           "lowp_f32: GEMM calls fp32 %ld, bf16 %ld, fp16 %ld", g_sgemm_calls[0], g_sgemm_calls[2], g_sgemm_calls[3]);
    printf("  %d bf16/fp16 cases again with operands rounded in float32 (lowp_f32), all within bounds\n", r.cases);
    /* again the convolutions, on a device with a batched GEMM and Winograd forced: the 3x3
     * stride-1 cases (pads 0 and 1, odd sizes, accumulate) go through ops_winograd.cl */
    g_kdev = &g_host_wino;
    suite_tally wt;
    memset(&wt, 0, sizeof wt);
    g_batched_calls = 0;
    CHECKF(pt_conformance_run(cpu, &host, g_seed, "conv2d", on_case, &wt, &sum, &err) == PT_OK, "%s", err.msg);
    g_kdev = &g_host;
    CHECKF(wt.failed == 0 && wt.cases > 50, "winograd: %d of %d convolution cases failed", wt.failed, wt.cases);
    CHECKF(g_batched_calls > 0, "winograd: no batched GEMM ran");
    printf("  %d convolution cases again with Winograd forced (%ld batched GEMMs), worst error/bound %.3g (%s)\n",
           wt.cases, g_batched_calls, sum.worst_ratio, sum.worst_case);
    /* again the cases with activations stored in 16 bits (bf16 and fp16, every lowp operand or
     * only the first): each op the kernels' 16-bit twins run gives, bit for bit, what the float
     * kernel gives over float32 copies */
    static const pt_op_kind twin_kinds[] = {PT_OP_ADD, PT_OP_BIAS_ADD, PT_OP_RELU_FWD, PT_OP_RELU_BWD,
                                            PT_OP_BN_FWD_TRAIN, PT_OP_BN_FWD_EVAL, PT_OP_BN_BWD, PT_OP_MAXPOOL_FWD,
                                            PT_OP_GAP_FWD};
    as_stored_equals_copies(cpu, &host, "act=", "the kernels' 16-bit twins", twin_kinds,
                            sizeof twin_kinds / sizeof twin_kinds[0]);
    /* again the cases with images stored channels last: each op the NHWC forms (and the pointwise
     * kernels over memory order) run gives, bit for bit, what the NCHW kernels give over
     * transposed copies */
    static const pt_op_kind nhwc_kinds[] = {PT_OP_ADD, PT_OP_RELU_FWD, PT_OP_RELU_BWD, PT_OP_BIAS_ADD,
                                            PT_OP_BN_FWD_EVAL, PT_OP_MAXPOOL_FWD, PT_OP_MAXPOOL_BWD, PT_OP_GAP_FWD,
                                            PT_OP_GAP_BWD, PT_OP_SIGMOID_FWD, PT_OP_SILU_BWD};
    as_stored_equals_copies(cpu, &host, "layout=nhwc", "the NHWC forms", nhwc_kinds,
                            sizeof nhwc_kinds / sizeof nhwc_kinds[0]);
    pt_device_close(cpu);
}

static void a_call_that_does_not_match_the_table_is_refused(void)
{
    pt_kcall c;
    pt_error err;
    pt_kcall_begin(&c, PT_K_FILL, 4);
    pt_karg_mem(&c, (pt_mem){NULL, 0});
    pt_karg_int(&c, 4);
    pt_karg_float(&c, 1.0f);
    CHECK(pt_kcall_check(&c, "host", &err) == PT_OK);
    pt_kcall_begin(&c, PT_K_FILL, 4);
    pt_karg_mem(&c, (pt_mem){NULL, 0});
    pt_karg_float(&c, 1.0f); /* value before n */
    pt_karg_int(&c, 4);
    CHECK(pt_kcall_check(&c, "host", &err) != PT_OK);
    CHECKF(strstr(err.msg, "pt_fill") && strstr(err.msg, "(mif)") && strstr(err.msg, "(mfi)"), "%s", err.msg);
    pt_kcall_begin(&c, PT_K_SCALE, 4);
    for (int i = 0; i < PT_KCALL_MAX_ARGS + 3; i++) pt_karg_int(&c, i); /* past the maximum */
    CHECK(pt_kcall_check(&c, "host", &err) != PT_OK);
    CHECKF(strstr(err.msg, "pt_scale"), "%s", err.msg);
}

static void the_table_covers_every_pointwise_kind_and_names_its_parameters(void)
{
    for (int k = 0; k < PT_OP_KIND_COUNT; k++) {
        const pt_op_desc *d = pt_op_describe((pt_op_kind)k);
        CHECKF(d != NULL, "op kind %d has no description", k);
        if (!d || !(d->flags & PT_OPF_POINTWISE)) continue;
        const pt_kernel_id id = pt_kernel_for_pointwise((pt_op_kind)k);
        CHECKF(id != PT_K_COUNT, "%s is pointwise but no kernel runs it", d->name);
        if (id == PT_K_COUNT) continue;
        /* the pointwise rule: every operand a tensor, the count, accumulate when the kind has
         * it, the fused-ReLU flag when it may carry one */
        char want[16] = "";
        for (int i = 0; i < d->nt; i++) strcat(want, "m");
        strcat(want, "i");
        if (d->flags & PT_OPF_ACCUMULATE) strcat(want, "i");
        if (d->flags & PT_OPF_FUSED_RELU) strcat(want, "i");
        CHECKF(strcmp(pt_kernel_info_of(id)->params, want) == 0, "%s runs %s (%s), the pointwise rule passes (%s)",
               d->name, pt_kernel_info_of(id)->name, pt_kernel_info_of(id)->params, want);
    }
    for (int i = 0; i < PT_K_COUNT; i++) {
        const pt_kernel_info *ki = pt_kernel_info_of((pt_kernel_id)i);
        CHECKF(strncmp(ki->name, "pt_", 3) == 0 && strspn(ki->params, "miulUf") == strlen(ki->params),
               "kernel %d: %s (%s)", i, ki->name, ki->params);
        CHECKF(pt_kernel_param_count((pt_kernel_id)i) <= 32, "%s has %d parameters", ki->name,
               pt_kernel_param_count((pt_kernel_id)i));
    }
    /* a 16-bit twin takes its float32 kernel's parameters, then one storage code per lowp operand */
    int twins = 0;
    for (int i = 0; i < PT_K_COUNT; i++) {
        const pt_kernel_info *ki = pt_kernel_info_of((pt_kernel_id)i);
        const size_t n = strlen(ki->name);
        if (n < 5 || strcmp(ki->name + n - 4, "_a16") != 0) continue;
        const pt_kernel_info *base = NULL;
        for (int j = 0; j < PT_K_COUNT; j++) {
            const pt_kernel_info *kj = pt_kernel_info_of((pt_kernel_id)j);
            if (strlen(kj->name) == n - 4 && strncmp(kj->name, ki->name, n - 4) == 0) base = kj;
        }
        CHECKF(base != NULL, "%s has no float32 kernel", ki->name);
        if (!base) continue;
        const size_t nb = strlen(base->params);
        CHECKF(strncmp(ki->params, base->params, nb) == 0 && strlen(ki->params) > nb &&
                   strspn(ki->params + nb, "i") == strlen(ki->params + nb) && ki->launch == base->launch,
               "%s (%s) is not %s (%s) and storage codes", ki->name, ki->params, base->name, base->params);
        twins++;
    }
    CHECKF(twins == 9, "%d 16-bit twins in the table", twins);
    CHECK(pt_kernel_param_size(PT_K_DROPOUT_FWD, 0) == 8 && pt_kernel_param_size(PT_K_DROPOUT_FWD, 6) == 4 &&
          pt_kernel_param_size(PT_K_DROPOUT_FWD, 10) == 8 && pt_kernel_param_size(PT_K_DROPOUT_FWD, 11) == 4);
}

/* A GEMM and a convolution in each mode straight through pt_kops_run: the 16-bit copies are
 * counted in the workspace (fp32 and tf32 need none for a GEMM; a convolution's fp32 need is
 * what it was), the operands reach the GEMM rounded (1 + 2^-8 is a tie that bf16 rounds to 1,
 * half keeps), and a device without gemm16 refuses bf16/fp16 with a message naming the mode. */
static void math_modes_convert_operands_into_the_workspace_or_are_refused(void)
{
    pt_device *cpu = NULL;
    pt_error err;
    if (pt_device_open("cpu", 0, NULL, &cpu, &err) != PT_OK) {
        CHECKF(0, "%s", err.msg);
        return;
    }
    enum { M = 3, K = 5, N = 4 };
    pt_buffer *buf = NULL;
    const size_t ws_off = 256;
    CHECK(pt_device_alloc(cpu, 8192, &buf, &err) == PT_OK);
    if (!buf) return;
    float *f = buf->data;
    memset(f, 0, 8192);
    for (int i = 0; i < M * K; i++) f[i] = (float)(i % 3) + 1.00390625f; /* A [M,K] at 0 */
    for (int i = 0; i < K * N; i++) f[16 + i] = (float)(i % 4) - 1.0f;  /* B [K,N] at 64 bytes */
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = PT_OP_GEMM;
    op.nt = 3;
    op.t[0] = pt_tensor_2d(buf, 0, M, K);
    op.t[1] = pt_tensor_2d(buf, 16 * sizeof(float), K, N);
    op.t[2] = pt_tensor_2d(buf, 48 * sizeof(float), M, N);
    op.p.gemm.alpha = 1.0f;
    op.workspace = (pt_mem){buf, ws_off * sizeof(float)};
    for (int p = 0; p < PT_PREC_COUNT; p++) {
        op.math = (pt_precision)p;
        const size_t ws = pt_kops_workspace(&g_host, &op);
        const size_t want = pt_kops_lowp((pt_precision)p) ? pt_kops_lowp_bytes(M * K) + pt_kops_lowp_bytes(K * N) : 0;
        CHECKF(ws == want && ws % 256 == 0, "gemm math=%s: workspace %zu, want %zu", pt_precision_name(op.math), ws,
               want);
        op.workspace_bytes = ws;
        CHECKF(pt_kops_run(&g_host, &op, &err) == PT_OK, "math=%s: %s", pt_precision_name(op.math), err.msg);
        int bad = 0;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                float s = 0;
                for (int q = 0; q < K; q++)
                    s += pt_precision_round(op.math, f[i * K + q]) * pt_precision_round(op.math, f[16 + q * N + j]);
                bad += fabsf(f[48 + i * N + j] - s) > 1e-5f * (1.0f + fabsf(s));
            }
        CHECKF(bad == 0, "gemm math=%s: %d of %d elements differ from the rounded operands' product",
               pt_precision_name(op.math), bad, M * N);
        if (pt_kops_lowp(op.math)) {
            /* too small a workspace is named, not overrun */
            op.workspace_bytes = ws - 256;
            CHECK(pt_kops_run(&g_host, &op, &err) == PT_ERR_INVALID && strstr(err.msg, "workspace"));
            op.workspace_bytes = ws;
            CHECK(pt_kops_run(&g_host_fp32, &op, &err) == PT_ERR_UNSUPPORTED);
            CHECKF(strstr(err.msg, pt_precision_name(op.math)) && strstr(err.msg, "16-bit"), "%s", err.msg);
            /* rounded in float32 for a float32 GEMM: 4-byte copies, the same products */
            const size_t ws32 = pt_kops_workspace(&g_host_round, &op);
            CHECKF(ws32 == 2 * 256 && ws32 >= (M * K + K * N) * sizeof(float), "lowp_f32 workspace %zu", ws32);
            for (int i = 0; i < M * N; i++) f[48 + i] = NAN;
            op.workspace_bytes = ws32;
            CHECKF(pt_kops_run(&g_host_round, &op, &err) == PT_OK, "%s", err.msg);
            bad = 0;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    float v = 0;
                    for (int q = 0; q < K; q++)
                        v += pt_precision_round(op.math, f[i * K + q]) * pt_precision_round(op.math, f[16 + q * N + j]);
                    bad += !(fabsf(f[48 + i * N + j] - v) <= 1e-5f * (1.0f + fabsf(v)));
                }
            CHECKF(bad == 0, "gemm math=%s lowp_f32: %d of %d elements wrong", pt_precision_name(op.math), bad, M * N);
            op.workspace_bytes = ws;
        }
    }
    /* the conversions the cuda backend wraps around cuDNN: to 16 bits and back, adding when
     * accumulating, each value rounded as core/half.h rounds it (NaN and Inf kept) */
    for (int p = PT_PREC_BF16; p <= PT_PREC_FP16; p++) {
        enum { NV = 37 };
        float *src = f + 512, *dst = f + 640;
        for (int i = 0; i < NV; i++) src[i] = (float)(i - 18) * 0.37f + 1.0f / 1024.0f, dst[i] = 2.0f;
        src[3] = NAN, src[4] = INFINITY, src[5] = 1e9f;
        const pt_mem m16 = {buf, 768 * sizeof(float)};
        CHECK(pt_kops_to_lowp(&g_host, (pt_precision)p, (pt_mem){buf, 512 * sizeof(float)}, m16, NV, &err) == PT_OK);
        const uint16_t *h = (const uint16_t *)(const void *)(f + 768);
        int bad = 0;
        for (int i = 0; i < NV; i++)
            bad += h[i] != (p == PT_PREC_BF16 ? pt_bf16_from_f32(src[i]) : pt_f16_from_f32(src[i]));
        CHECKF(bad == 0, "to_lowp %s: %d of %d differ from core/half.h", pt_precision_name((pt_precision)p), bad, NV);
        CHECK(pt_kops_from_lowp(&g_host, (pt_precision)p, m16, (pt_mem){buf, 640 * sizeof(float)}, NV, 0.5f, 1, &err) ==
              PT_OK);
        bad = 0;
        for (int i = 0; i < NV; i++) {
            const float want = 2.0f + 0.5f * pt_precision_round((pt_precision)p, src[i]);
            bad += !(dst[i] == want || (isnan(dst[i]) && isnan(want)));
        }
        CHECKF(bad == 0, "from_lowp %s (alpha 0.5, accumulate): %d of %d wrong", pt_precision_name((pt_precision)p),
               bad, NV);
    }
    /* a convolution (C*R*S 72: im2col, not the direct kernels): fp32 and tf32 need the same
     * scratch, bf16/fp16 more, each direction */
    for (int kind = PT_OP_CONV2D_FWD; kind <= PT_OP_CONV2D_BWD_FILTER; kind++) {
        pt_op c;
        memset(&c, 0, sizeof c);
        c.kind = (pt_op_kind)kind;
        c.nt = 3;
        c.t[0] = pt_tensor_4d(buf, 0, 6, 8, 9, 9);
        c.t[1] = pt_tensor_4d(buf, 0, 8, 8, 3, 3);
        c.t[2] = pt_tensor_4d(buf, 0, 6, 8, 9, 9);
        c.p.conv.stride = 1;
        c.p.conv.pad = 1;
        const size_t w32 = pt_kops_workspace(&g_host, &c);
        c.math = PT_PREC_TF32;
        const size_t wtf = pt_kops_workspace(&g_host, &c);
        c.math = PT_PREC_BF16;
        const size_t w16 = pt_kops_workspace(&g_host, &c);
        CHECKF(w32 > 0 && wtf == w32 && w16 > w32 && w16 % 4 == 0, "%s: workspace fp32 %zu, tf32 %zu, bf16 %zu",
               pt_op_name(c.kind), w32, wtf, w16);
        c.workspace_bytes = w16;
        CHECK(pt_kops_run(&g_host_fp32, &c, &err) == PT_ERR_UNSUPPORTED && strstr(err.msg, "math=bf16"));
    }
    pt_device_free(cpu, buf);
    pt_device_close(cpu);
}

int main(void)
{
    const char *env = getenv("PT_TEST_SEED");
    g_seed = env && *env ? strtoull(env, NULL, 0) : ((uint64_t)time(NULL) * 2654435761u) ^ (uint64_t)getpid();
    printf("seed %llu (PT_TEST_SEED repeats it)\n", (unsigned long long)g_seed);
    RUN(the_table_covers_every_pointwise_kind_and_names_its_parameters);
    RUN(a_call_that_does_not_match_the_table_is_refused);
    RUN(math_modes_convert_operands_into_the_workspace_or_are_refused);
    RUN(every_op_through_the_shared_kernels_matches_cpu);
    TEST_EXIT();
}
