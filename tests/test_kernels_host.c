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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernel_host_dialect.h"
/* the kernel files, in the order the backends compile them (name order) */
#include "backends/kernels/philox.h"
#include "backends/kernels/ops.cl"
#include "backends/kernels/ops_mixup.cl"
#include "backends/kernels/ops_zoo.cl"

#include "backends/cpu/cpu_internal.h"
#include "backends/kernels/kernel_ops.h"
#include "core/backend.h"
#include "core/conformance.h"
#include "pt_test.h"

/* ---- a device of host memory whose ops run through the shared kernel layer ---- */

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

static pt_status host_sgemm(void *ctx, int ta, int tb, size_t m, size_t n, size_t k, float alpha, pt_mem a,
                            size_t lda, pt_mem b, size_t ldb, float beta, pt_mem c, size_t ldc, pt_error *err)
{
    (void)ctx;
    (void)err;
    const float *A = cpu_ptr(a), *B = cpu_ptr(b);
    float *C = cpu_ptr(c);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t p = 0; p < k; p++)
                s += (double)(ta ? A[p * lda + i] : A[i * lda + p]) * (tb ? B[j * ldb + p] : B[p * ldb + j]);
            const float v = alpha * (float)s;
            C[i * ldc + j] = beta == 0.0f ? v : v + beta * C[i * ldc + j];
        }
    return PT_OK;
}

/* Small enough that the conformance suite's larger convolutions run in several groups. */
static const pt_kdev g_host = {NULL, "host", host_launch, host_sgemm, (size_t)16 << 10};

static const pt_backend_iface *g_cpu;
static pt_backend_iface g_host_iface;

static int host_supports(void *ctx, const pt_op *op)
{
    (void)ctx;
    return pt_op_check_operands(op, "host", PT_CAP_MIXUP_TARGETS, 0, NULL) == PT_OK;
}

static size_t host_workspace(void *ctx, const pt_op *op)
{
    (void)ctx;
    return pt_kops_workspace(&g_host, op);
}

static size_t buffer_bytes(const pt_buffer *b) { return b->bytes; }

static pt_status host_run(void *ctx, const pt_op *op, pt_error *err)
{
    (void)ctx;
    PT_TRY(pt_op_check_operands(op, "host", PT_CAP_MIXUP_TARGETS, 1, err));
    PT_TRY(pt_op_check_memory(op, "host", buffer_bytes, 4, err));
    return pt_kops_run(&g_host, op, err);
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
    host = *cpu;
    host.be = &g_host_iface;
    suite_tally t;
    memset(&t, 0, sizeof t);
    pt_conformance_summary sum;
    CHECKF(pt_conformance_run(cpu, &host, g_seed, NULL, on_case, &t, &sum, &err) == PT_OK, "%s", err.msg);
    CHECKF(t.failed == 0 && sum.failed == 0, "%d of %d cases failed", t.failed, t.cases);
    CHECKF(t.cases == pt_conformance_case_count(), "%d of %d cases ran", t.cases, pt_conformance_case_count());
    for (int k = 0; k < PT_OP_KIND_COUNT; k++)
        CHECKF(t.per_kind[k] > 0, "no case of %s ran", pt_op_name((pt_op_kind)k));
    printf("  %d cases through the shared kernel layer on the host, worst error/bound %.3g (%s)\n", t.cases,
           sum.worst_ratio, sum.worst_case);
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
        /* the pointwise rule: every operand a tensor, the count, accumulate when the kind has it */
        char want[16] = "";
        for (int i = 0; i < d->nt; i++) strcat(want, "m");
        strcat(want, (d->flags & PT_OPF_ACCUMULATE) ? "ii" : "i");
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
    CHECK(pt_kernel_param_size(PT_K_DROPOUT_FWD, 0) == 8 && pt_kernel_param_size(PT_K_DROPOUT_FWD, 6) == 4 &&
          pt_kernel_param_size(PT_K_DROPOUT_FWD, 10) == 8 && pt_kernel_param_size(PT_K_DROPOUT_FWD, 11) == 4);
}

int main(void)
{
    const char *env = getenv("PT_TEST_SEED");
    g_seed = env && *env ? strtoull(env, NULL, 0) : ((uint64_t)time(NULL) * 2654435761u) ^ (uint64_t)getpid();
    printf("seed %llu (PT_TEST_SEED repeats it)\n", (unsigned long long)g_seed);
    RUN(the_table_covers_every_pointwise_kind_and_names_its_parameters);
    RUN(a_call_that_does_not_match_the_table_is_refused);
    RUN(every_op_through_the_shared_kernels_matches_cpu);
    TEST_EXIT();
}
