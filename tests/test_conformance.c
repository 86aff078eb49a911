/* The cross-backend conformance suite (core/conformance.h) on every compiled-in backend and
 * device against cpu device 0, one summary line each; and the suite's own test: a device
 * that wraps cpu but gets one thing wrong must be caught, and nothing else flagged. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "polytrain/backend.h"
#include "core/conformance.h"
#include "core/half.h"
#include "pt_test.h"

static uint64_t g_seed;
static pt_device *g_ref; /* cpu device 0 */

/* ---- what a run reported, case by case ---- */

typedef struct tally {
    int cases, failed;
    int cases_of[PT_OP_KIND_COUNT], failed_of[PT_OP_KIND_COUNT];
    int print_failures;
    const char *expect_detail; /* every failure's detail must contain this (NULL: any) */
    int detail_mismatch;
    char last_detail[600]; /* a failure with an unexpected reason */
    int all_match_filter;
    const char *filter;
    double worst_fp32;          /* worst error/bound of the float32 cases */
    char worst_fp32_case[128];
    int lowp_cases;             /* cases in a reduced-precision math mode or 16-bit storage */
} tally;

static void on_case(const pt_conformance_result *r, void *user)
{
    tally *t = user;
    t->cases++;
    t->cases_of[r->kind]++;
    if (t->filter && !strstr(r->name, t->filter)) t->all_match_filter = 0;
    if (strstr(r->name, " math=") || strstr(r->name, " act=")) {
        t->lowp_cases++;
    } else if (!(r->ratio <= t->worst_fp32)) {
        t->worst_fp32 = r->ratio;
        snprintf(t->worst_fp32_case, sizeof t->worst_fp32_case, "%s", r->name);
    }
    if (r->pass) return;
    t->failed++;
    t->failed_of[r->kind]++;
    if (t->expect_detail && !strstr(r->detail, t->expect_detail)) {
        t->detail_mismatch++;
        snprintf(t->last_detail, sizeof t->last_detail, "%s: %s", r->name, r->detail);
    }
    if (t->print_failures)
        printf("  FAIL %s: %s (error %.3g, bound %.1g, %s)\n", r->name, r->detail, r->error, r->bound, r->output);
}

/* ---- a broken device: the cpu backend with one fault injected ---- */

typedef enum fault_mode {
    FAULT_VALUE,       /* one element of an output off by a visible amount */
    FAULT_NAN,         /* one element of an output left unwritten (NaN) */
    FAULT_PAST_END,    /* four bytes written just after an output */
    FAULT_MASK_BIT,    /* one dropout mask element dropped */
    FAULT_NO_ACCUMULATE,
    FAULT_ERROR,       /* run() fails */
    FAULT_UNSUPPORTED  /* supports() says no */
} fault_mode;

static const pt_backend_iface *g_cpu;
static pt_backend_iface g_broken;
static struct { pt_op_kind kind; int operand; fault_mode mode; } g_fault;

static int broken_supports(void *ctx, const pt_op *op)
{
    if (g_fault.mode == FAULT_UNSUPPORTED && op->kind == g_fault.kind) return 0;
    return g_cpu->supports(ctx, op);
}

static pt_status broken_run(void *ctx, const pt_op *op, pt_error *err)
{
    if (op->kind != g_fault.kind) return g_cpu->run(ctx, op, err);
    if (g_fault.mode == FAULT_ERROR)
        return pt_fail(err, PT_ERR_BACKEND, "injected failure of %s", pt_op_name(op->kind));
    if (g_fault.mode == FAULT_NO_ACCUMULATE) {
        pt_op copy = *op;
        copy.accumulate = 0;
        return g_cpu->run(ctx, &copy, err);
    }
    PT_TRY(g_cpu->run(ctx, op, err));
    const pt_tensor *t = &op->t[g_fault.operand];
    int64_t n = pt_tensor_numel(t);
    if (g_fault.mode == FAULT_PAST_END) {
        float junk = 1.0f;
        return g_cpu->write(ctx, (pt_mem){t->mem.buf, t->mem.off + pt_tensor_bytes(t)}, &junk, 4, err);
    }
    /* a 16-bit operand (16-bit activation cases) is faulted through float and back */
    const int half = t->dtype == PT_BF16 || t->dtype == PT_F16;
    float *v = malloc((size_t)n * sizeof *v);
    uint16_t *h = half ? malloc((size_t)n * sizeof *h) : NULL;
    if (!v || (half && !h)) {
        free(v), free(h);
        return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    }
    pt_status st = half ? g_cpu->read(ctx, h, t->mem, (size_t)n * sizeof *h, err)
                        : g_cpu->read(ctx, v, t->mem, (size_t)n * sizeof *v, err);
    for (int64_t i = 0; half && st == PT_OK && i < n; i++)
        v[i] = t->dtype == PT_BF16 ? pt_f32_from_bf16(h[i]) : pt_f32_from_f16(h[i]);
    if (st == PT_OK) {
        if (g_fault.mode == FAULT_VALUE) {
            float mx = 0;
            for (int64_t i = 0; i < n; i++) mx = fmaxf(mx, fabsf(v[i]));
            v[n / 2] += 0.2f * mx + 1e-3f;
        } else if (g_fault.mode == FAULT_NAN) {
            v[n / 2] = NAN;
        } else if (g_fault.mode == FAULT_MASK_BIT) {
            for (int64_t i = 0; i < n; i++)
                if (v[i] != 0) {
                    v[i] = 0;
                    break;
                }
        }
        for (int64_t i = 0; half && i < n; i++)
            h[i] = t->dtype == PT_BF16 ? pt_bf16_from_f32(v[i]) : pt_f16_from_f32(v[i]);
        st = half ? g_cpu->write(ctx, t->mem, h, (size_t)n * sizeof *h, err)
                  : g_cpu->write(ctx, t->mem, v, (size_t)n * sizeof *v, err);
    }
    free(v);
    free(h);
    return st;
}

/* Runs the suite (cases matching filter) on cpu with the fault injected; every failure's
 * detail must contain expect. */
static void run_broken(pt_op_kind kind, int operand, fault_mode mode, const char *filter, const char *expect,
                       tally *t)
{
    g_fault.kind = kind, g_fault.operand = operand, g_fault.mode = mode;
    pt_device broken = *g_ref;
    broken.be = &g_broken;
    memset(t, 0, sizeof *t);
    t->expect_detail = expect;
    t->print_failures = getenv("PT_CONFORMANCE_VERBOSE") != NULL; /* to see what is caught */
    pt_conformance_summary sum;
    pt_error err;
    pt_error_clear(&err);
    pt_status st = pt_conformance_run(g_ref, &broken, g_seed, filter, on_case, t, &sum, &err);
    CHECKF(st == PT_OK, "%s", err.msg);
    CHECKF(sum.cases == t->cases && sum.failed == t->failed, "summary %d/%d, callbacks %d/%d", sum.cases,
           sum.failed, t->cases, t->failed);
}

/* The faulty kind fails in every case, with the expected reason; every other kind passes. */
static void expect_only_kind_fails(const tally *t, pt_op_kind kind, int cases_that_must_fail)
{
    CHECKF(t->cases_of[kind] > 0, "no %s cases ran", pt_op_name(kind));
    int want = cases_that_must_fail < 0 ? t->cases_of[kind] : cases_that_must_fail;
    CHECKF(t->failed_of[kind] == want, "%s: %d of %d cases failed, expected %d", pt_op_name(kind),
           t->failed_of[kind], t->cases_of[kind], want);
    CHECKF(t->failed == t->failed_of[kind], "%d failures in other kinds", t->failed - t->failed_of[kind]);
    CHECKF(t->detail_mismatch == 0, "unexpected reason, e.g. %s", t->last_detail);
}

static void suite_catches_one_wrong_element_in_conv2d_bwd_filter(void)
{
    tally t;
    /* fp32 cases catch it in the norm, reduced-precision ones element by element */
    run_broken(PT_OP_CONV2D_BWD_FILTER, 1, FAULT_VALUE, "conv2d", "t1 dw: ", &t);
    expect_only_kind_fails(&t, PT_OP_CONV2D_BWD_FILTER, -1);
}

static void suite_catches_an_output_element_left_nan(void)
{
    tally t;
    run_broken(PT_OP_RELU_FWD, 1, FAULT_NAN, "relu", "t1 y: 1 of", &t);
    expect_only_kind_fails(&t, PT_OP_RELU_FWD, -1);
}

static void suite_catches_a_write_past_the_end_of_an_output(void)
{
    tally t;
    run_broken(PT_OP_BIAS_GRAD, 1, FAULT_PAST_END, "bias", "wrote outside t1 dbias", &t);
    expect_only_kind_fails(&t, PT_OP_BIAS_GRAD, -1);
}

static void suite_catches_one_dropped_mask_element(void)
{
    tally t;
    run_broken(PT_OP_DROPOUT_FWD, 2, FAULT_MASK_BIT, "dropout", "t2 mask must be bitwise equal", &t);
    expect_only_kind_fails(&t, PT_OP_DROPOUT_FWD, -1);
}

static void suite_catches_an_ignored_accumulate_flag(void)
{
    tally t;
    run_broken(PT_OP_AXPY, 1, FAULT_NO_ACCUMULATE, "axpy", "t1 y: normalised error", &t);
    expect_only_kind_fails(&t, PT_OP_AXPY, t.cases_of[PT_OP_AXPY] / 2); /* the acc=1 half */
}

static void suite_reports_an_op_error_with_its_message(void)
{
    tally t;
    run_broken(PT_OP_XENT, 0, FAULT_ERROR, "xent", "injected failure of xent", &t);
    expect_only_kind_fails(&t, PT_OP_XENT, -1);
}

static void suite_fails_an_unsupported_op(void)
{
    tally t;
    run_broken(PT_OP_GAP_BWD, 0, FAULT_UNSUPPORTED, "gap", "not supported by backend 'broken-cpu'", &t);
    expect_only_kind_fails(&t, PT_OP_GAP_BWD, -1);
}

/* ---- the table itself ---- */

static void every_op_kind_has_a_case(void)
{
    int n = pt_conformance_case_count(), per_kind[PT_OP_KIND_COUNT] = {0};
    CHECKF(n >= 150, "%d cases", n);
    for (int i = 0; i < n; i++) {
        pt_op_kind k = pt_conformance_case_kind(i);
        CHECK(k < PT_OP_KIND_COUNT);
        if (k < PT_OP_KIND_COUNT) per_kind[k]++;
    }
    for (int k = 0; k < PT_OP_KIND_COUNT; k++)
        CHECKF(per_kind[k] > 0, "op kind %s has no conformance case", pt_op_name((pt_op_kind)k));
}

static void case_names_are_unique_and_start_with_the_op(void)
{
    int n = pt_conformance_case_count(), dup = 0, bad = 0;
    char(*names)[128] = malloc((size_t)n * sizeof *names);
    for (int i = 0; i < n; i++) {
        pt_conformance_case_name(i, names[i], sizeof names[i]);
        const char *op = pt_op_name(pt_conformance_case_kind(i));
        if (strncmp(names[i], op, strlen(op)) != 0 || names[i][strlen(op)] != ' ') bad++;
        for (int j = 0; j < i; j++) dup += strcmp(names[i], names[j]) == 0;
    }
    CHECKF(dup == 0, "%d duplicate names", dup);
    CHECKF(bad == 0, "%d names do not start with their op", bad);
    free(names);
}

static void filter_runs_only_matching_cases(void)
{
    tally t;
    memset(&t, 0, sizeof t);
    t.filter = "gemm m=7";
    t.all_match_filter = 1;
    pt_conformance_summary sum;
    pt_error err;
    CHECK(pt_conformance_run(g_ref, g_ref, g_seed, t.filter, on_case, &t, &sum, &err) == PT_OK);
    /* 8 shapes in fp32 and again in tf32, bf16 and fp16 (the cpu claims all four) */
    CHECKF(t.cases == 32 && sum.cases == 32 && t.all_match_filter, "%d cases", t.cases);
    CHECK(sum.failed == 0);
}

/* ---- the command line: polytrain selftest ---- */

/* Runs "$PT_CLI args" and returns its exit status; its stdout goes to out (cap bytes). */
static int run_cli(const char *args, char *out, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>/dev/null", getenv("PT_CLI"), args);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    while (fread(cmd, 1, sizeof cmd, f) > 0) {
    }
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void selftest_command_passes_on_cpu_and_rejects_bad_options(void)
{
    if (!getenv("PT_CLI") || access(getenv("PT_CLI"), X_OK) != 0) {
        printf("  (skipped: PT_CLI does not name the polytrain binary)\n");
        return;
    }
    static char out[1 << 16];
    int rc = run_cli("selftest --backend cpu --filter 'gemm m=7' --seed 3", out, sizeof out);
    CHECKF(rc == 0 && strstr(out, "32 cases, 32 passed, 0 failed") && strstr(out, "cpu: "), "exit %d: %s", rc,
           out);
    rc = run_cli("selftest --backend cpu --filter relu --json --verbose", out, sizeof out);
    CHECKF(rc == 0 && strstr(out, "\"ok\":true") && strstr(out, "\"name\":\"relu_bwd n=37x111 dx=dy\""),
           "exit %d: %s", rc, out);
    CHECKF((rc = run_cli("selftest --backend nosuch", out, sizeof out)) == 2, "unknown backend: exit %d", rc);
    CHECKF((rc = run_cli("selftest --backend cpu --devices 7", out, sizeof out)) == 2, "device 7: exit %d", rc);
    CHECKF((rc = run_cli("selftest --filter no-such-case", out, sizeof out)) == 2, "empty filter: exit %d", rc);
    CHECKF((rc = run_cli("selftest --help", out, sizeof out)) == 0 && strstr(out, "--seed"), "--help: exit %d", rc);
}

/* ---- every backend, every device, against cpu device 0 ---- */

static void every_device_of_every_backend_matches_cpu(void)
{
    for (int b = 0; b < pt_backend_count(); b++) {
        const pt_backend_iface *be = pt_backend_at(b);
        void *ctx = NULL;
        pt_error err;
        pt_error_clear(&err);
        if (pt_backend_context(be, &ctx, &err) != PT_OK) {
            printf("%s: not available: %s\n", be->name, err.msg);
            continue;
        }
        int ndev = be->device_count(ctx);
        if (ndev == 0) printf("%s: not available: no devices\n", be->name);
        for (int d = 0; d < ndev; d++) {
            pt_device *dut = NULL;
            pt_status st = pt_device_open(be->name, d, NULL, &dut, &err);
            CHECKF(st == PT_OK, "%s[%d] does not open: %s", be->name, d, err.msg);
            if (st != PT_OK) continue;
            tally t;
            memset(&t, 0, sizeof t);
            t.print_failures = 1;
            pt_conformance_summary sum;
            st = pt_conformance_run(g_ref, dut, g_seed, NULL, on_case, &t, &sum, &err);
            CHECKF(st == PT_OK, "%s", err.msg);
            printf("%s[%d] %s: %d cases, %d passed, %d failed, worst error/bound %.3g (%s), %.0f ms; %d cases in "
                   "math modes it does not claim\n",
                   be->name, d, dut->info.name, sum.cases, sum.passed, sum.failed, sum.worst_ratio, sum.worst_case,
                   sum.dut_ms, sum.unclaimed);
            fflush(stdout);
            CHECKF(sum.failed == 0, "%s[%d]: %d of %d cases failed (seed %llu)", be->name, d, sum.failed, sum.cases,
                   (unsigned long long)g_seed);
            CHECKF(sum.cases + sum.unclaimed == pt_conformance_case_count(), "%d cases ran, %d unclaimed", sum.cases,
                   sum.unclaimed);
            /* The sanity row: the same code on the same inputs gives the same bits, or
             * all but (threads splitting a sum differently). Its reduced-precision cases are
             * its bf16/fp16/tf32 paths against its own float32: they must run, all of them.
             * It keeps images NCHW: exactly the layout=nhwc cases stay unclaimed. */
            if (strcmp(be->name, "cpu") == 0) {
                CHECKF(t.worst_fp32 < 1e-2, "cpu against itself: worst error/bound %g in %s", t.worst_fp32,
                       t.worst_fp32_case);
                int in_table = 0, nhwc = 0;
                char name[160];
                for (int i = 0; i < pt_conformance_case_count(); i++) {
                    pt_conformance_case_name(i, name, sizeof name);
                    if (strstr(name, " layout=nhwc")) {
                        nhwc++;
                        continue;
                    }
                    in_table += strstr(name, " math=") != NULL || strstr(name, " act=") != NULL;
                }
                CHECKF(in_table > 0 && nhwc > 0 && sum.unclaimed == nhwc && t.lowp_cases == in_table,
                       "cpu ran %d of the table's %d reduced-precision cases, %d unclaimed (%d NHWC cases)",
                       t.lowp_cases, in_table, sum.unclaimed, nhwc);
            }
            pt_device_close(dut);
        }
    }
}

int main(void)
{
    const char *env = getenv("PT_CONFORMANCE_SEED");
    g_seed = env && *env ? strtoull(env, NULL, 0)
                         : ((uint64_t)time(NULL) * 2654435761u) ^ ((uint64_t)getpid() << 32);
    printf("seed %llu (PT_CONFORMANCE_SEED=%llu repeats this run)\n", (unsigned long long)g_seed,
           (unsigned long long)g_seed);
    pt_error err;
    if (pt_device_open("cpu", 0, NULL, &g_ref, &err) != PT_OK) {
        fprintf(stderr, "cannot open cpu device 0: %s\n", err.msg);
        return 1;
    }
    g_cpu = g_ref->be;
    g_broken = *g_cpu;
    g_broken.name = "broken-cpu";
    g_broken.run = broken_run;
    g_broken.supports = broken_supports;

    RUN(every_op_kind_has_a_case);
    RUN(case_names_are_unique_and_start_with_the_op);
    RUN(filter_runs_only_matching_cases);
    RUN(suite_catches_one_wrong_element_in_conv2d_bwd_filter);
    RUN(suite_catches_an_output_element_left_nan);
    RUN(suite_catches_a_write_past_the_end_of_an_output);
    RUN(suite_catches_one_dropped_mask_element);
    RUN(suite_catches_an_ignored_accumulate_flag);
    RUN(suite_reports_an_op_error_with_its_message);
    RUN(suite_fails_an_unsupported_op);
    RUN(selftest_command_passes_on_cpu_and_rejects_bad_options);
    RUN(every_device_of_every_backend_matches_cpu);
    pt_device_close(g_ref);
    TEST_EXIT();
}
