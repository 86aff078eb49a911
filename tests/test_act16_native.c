/* The cpu backend's kernels read and write 16-bit activations natively (backends/cpu/cpu_act16.c):
 * training steps of baseline and resnet18 in bf16 and in fp16 (loss scaling) give bitwise the
 * losses, logits and parameters of the same steps run over float32 copies (PT_CPU_ACT16=copy),
 * on one thread (the packed bf16 convolutions) and two, with the convolution plans chosen
 * automatically and forced (im2col in parallel groups or with threaded GEMMs, Winograd in
 * chunks or shared blocks); the native runs reserve no more workspace (less where no op needs
 * more than the copies did); the row conversions agree with core/half.h on every 16-bit
 * pattern and on rounding edge cases. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/cpu_internal.h"
#include "core/half.h"
#include "polytrain/backend.h"
#include "polytrain/models.h"
#include "polytrain/replica.h"
#include "pt_test.h"

enum { B = 4, K = 5, HW = 16, STEPS = 3 };

typedef struct run_out {
    float logits[STEPS][B * K];
    float loss[STEPS][B];
    float *params;
    int64_t nparams;
    size_t workspace;
    int n16;
} run_out;

/* mode: cpu_device.conv_force_mode (0 automatic, 1-2 im2col, 3-4 Winograd) */
static pt_device *open_cpu(int threads, const char *act16, int mode)
{
    pt_error err;
    pt_device *dev = NULL;
    pt_device_options dopt = {.threads = threads};
    if (act16) setenv("PT_CPU_ACT16", act16, 1);
    const pt_status st = pt_device_open("cpu", 0, &dopt, &dev, &err);
    unsetenv("PT_CPU_ACT16");
    CHECKF(st == PT_OK, "cpu device: %s", err.msg);
    if (st != PT_OK) return NULL;
    ((cpu_device *)dev->ctx)->conv_force_mode = mode;
    return dev;
}

static int run(const char *model, pt_precision p, pt_device *dev, run_out *o)
{
    pt_error err;
    pt_net *net = NULL;
    memset(o, 0, sizeof *o);
    if (!dev || pt_model_build(model, 3, HW, HW, K, &net, &err) != PT_OK) return 0;
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
    /* 16bit: the copy path stores the same activations in 16 bits (auto would keep fp32 where
     * the kernels go through copies) */
    pt_replica_options ro = {.precision = p, .act_storage = PT_ACT_STORAGE_16BIT};
    pt_replica *r = NULL;
    int ok = pt_replica_create_ex(net, dev, B, &oc, 3, &ro, &r, &err) == PT_OK;
    ok = ok && pt_replica_init_params(r, 7, &err) == PT_OK;
    if (ok) {
        pt_act_plan pl = {0};
        pt_replica_act_plan(r, &pl);
        o->n16 = pl.n16;
        o->workspace = pt_replica_workspace_bytes(r);
    }
    static float x[B * 3 * HW * HW];
    int32_t y[B];
    const float scale = pt_precision_scales_loss(p) ? 1024.0f : 1.0f;
    for (int s = 0; s < STEPS && ok; s++) {
        for (int i = 0; i < B * 3 * HW * HW; i++) x[i] = (float)((i * 7919 + s * 131) % 2003) / 1001.0f - 1.0f;
        for (int i = 0; i < B; i++) y[i] = (int32_t)((i * 3 + s) % K);
        ok = pt_replica_forward_backward(r, x, y, B, (int64_t)s * B, s, scale / B, o->logits[s], o->loss[s], &err) ==
             PT_OK;
        int found = 0;
        if (ok && scale != 1.0f) ok = pt_replica_unscale_grads(r, 1.0f / scale, &found, &err) == PT_OK;
        if (ok && !found) ok = pt_replica_update(r, 0.05f, s + 1, &err) == PT_OK;
    }
    if (ok) {
        o->nparams = pt_replica_param_region(r);
        const int64_t nbuf = pt_replica_buffer_region(r);
        o->params = malloc((size_t)o->nparams * sizeof(float));
        float *bufs = malloc((size_t)(nbuf > 0 ? nbuf : 1) * sizeof(float));
        float *opt = malloc((size_t)(o->nparams * pt_replica_opt_slots(r) + 1) * sizeof(float));
        ok = o->params && bufs && opt && pt_replica_read_state(r, o->params, bufs, opt, &err) == PT_OK;
        free(bufs);
        free(opt);
    }
    CHECKF(ok, "%s %s: %s", model, pt_precision_name(p), err.msg);
    pt_replica_free(r);
    pt_net_free(net);
    return ok;
}

/* The two ways, bitwise; native with less workspace. */
static void compare(const char *model, pt_precision p, int threads, int mode)
{
    pt_device *dn = open_cpu(threads, NULL, mode), *dc = open_cpu(threads, "copy", mode);
    run_out *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    if (a && b && run(model, p, dn, a) && run(model, p, dc, b)) {
        const char *what = pt_precision_name(p);
        CHECKF(a->n16 > 0 && a->n16 == b->n16, "%s %s: %d and %d 16-bit activations", model, what, a->n16, b->n16);
        CHECKF(memcmp(a->logits, b->logits, sizeof a->logits) == 0, "%s %s t%d: logits differ", model, what, threads);
        CHECKF(memcmp(a->loss, b->loss, sizeof a->loss) == 0, "%s %s t%d: losses differ (%.9g vs %.9g first)", model,
               what, threads, a->loss[0][0], b->loss[0][0]);
        int64_t diff = 0;
        for (int64_t i = 0; i < a->nparams && a->nparams == b->nparams; i++)
            diff += memcmp(&a->params[i], &b->params[i], sizeof(float)) != 0;
        CHECKF(a->nparams == b->nparams && diff == 0, "%s %s t%d plan %d: %lld of %lld parameters differ", model,
               what, threads, mode, (long long)diff, (long long)a->nparams);
        CHECKF(isfinite(a->loss[STEPS - 1][0]), "%s %s: loss %g", model, what, a->loss[STEPS - 1][0]);
        /* the workspace is the largest op's; a Winograd convolution's staging may outweigh the
         * copies of a small one */
        const int im2col = mode == 1 || mode == 2;
        CHECKF(im2col ? a->workspace < b->workspace : a->workspace <= b->workspace,
               "%s %s t%d: workspace %zu native, %zu with copies", model, what, threads, a->workspace, b->workspace);
        if (getenv("PT_TEST_VERBOSE"))
            printf("%s %s t%d plan %d: workspace %zu native, %zu with copies\n", model, what, threads, mode,
                   a->workspace, b->workspace);
    }
    if (a) free(a->params);
    if (b) free(b->params);
    free(a);
    free(b);
    if (dn) pt_device_close(dn);
    if (dc) pt_device_close(dc);
}

static void test_baseline_bf16_one_thread(void) { compare("baseline", PT_PREC_BF16, 1, 0); }
static void test_baseline_fp16_two_threads(void) { compare("baseline", PT_PREC_FP16, 2, 0); }
static void test_baseline_bf16_im2col_threaded_gemms(void) { compare("baseline", PT_PREC_BF16, 2, 2); }
static void test_baseline_bf16_winograd_chunks(void) { compare("baseline", PT_PREC_BF16, 2, 3); }
static void test_baseline_bf16_winograd_shared(void) { compare("baseline", PT_PREC_BF16, 2, 4); }
static void test_resnet18_bf16_two_threads(void) { compare("resnet18", PT_PREC_BF16, 2, 0); }
static void test_resnet18_fp16_im2col_one_thread(void) { compare("resnet18", PT_PREC_FP16, 1, 1); }

/* Every bf16 and fp16 pattern widens as core/half.h does; floats around the rounding edges
 * (ties, subnormals, overflow, NaN, infinities) narrow as it does, at every row offset (the
 * vector body and the scalar tail). */
static void test_row_conversions_match_half_h(void)
{
    enum { N = 65536 };
    static uint16_t h[N], back[N];
    static float f[N];
    for (int dt = 0; dt < 2; dt++) {
        const pt_dtype t = dt ? PT_F16 : PT_BF16;
        for (int i = 0; i < N; i++) h[i] = (uint16_t)i;
        cpu_act16_widen_row(f, h, N, t);
        int bad = 0;
        for (int i = 0; i < N; i++) {
            const float ref = t == PT_BF16 ? pt_f32_from_bf16(h[i]) : pt_f32_from_f16(h[i]);
            bad += memcmp(&ref, &f[i], sizeof ref) != 0;
        }
        CHECKF(bad == 0, "%s: %d patterns widen differently", pt_dtype_name(t), bad);
        uint32_t u = 0x12345678u;
        for (int i = 0; i < N; i++) {
            u = u * 1664525u + 1013904223u;
            uint32_t bits = u;
            switch (i % 8) {
            case 0: bits = (u & 0xffff0000u) | 0x8000u; break;   /* a bf16 tie */
            case 1: bits = (u & 0xffffe000u) | 0x1000u; break;   /* an fp16-mantissa tie */
            case 2: bits = u & 0x807fffffu; break;               /* float subnormal */
            case 3: bits = (u & 0x80000000u) | (0x33000000u + (u & 0x01ffffffu)); break; /* half subnormals */
            case 4: bits = (u & 0x80000000u) | (0x477fe000u + (u & 0x3fffu)); break;     /* half overflow edge */
            case 5: bits = (u & 0x80000000u) | 0x7f800000u | (u & 0x7fffffu); break;     /* Inf and NaN */
            default: break;
            }
            memcpy(&f[i], &bits, sizeof bits);
        }
        for (int off = 0; off < 17; off++) {
            cpu_act16_narrow_row(back, f + off, N - off, t);
            bad = 0;
            for (int i = 0; i < N - off; i++)
                bad += back[i] != (t == PT_BF16 ? pt_bf16_from_f32(f[off + i]) : pt_f16_from_f32(f[off + i]));
            CHECKF(bad == 0, "%s offset %d: %d floats narrow differently", pt_dtype_name(t), off, bad);
        }
    }
}

int main(void)
{
    RUN(test_row_conversions_match_half_h);
    RUN(test_baseline_bf16_one_thread);
    RUN(test_baseline_fp16_two_threads);
    RUN(test_baseline_bf16_im2col_threaded_gemms);
    RUN(test_baseline_bf16_winograd_chunks);
    RUN(test_baseline_bf16_winograd_shared);
    RUN(test_resnet18_bf16_two_threads);
    RUN(test_resnet18_fp16_im2col_one_thread);
    TEST_EXIT();
}
