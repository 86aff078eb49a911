/* Channels-last activations (--layout nhwc) on the opencl backend: which nodes the plan keeps
 * NHWC (every 4-D one whose layer and readers take it; never the data input, nor what a linear
 * layer or dropout reads, nor an in-place pair that would disagree), that the cpu backend refuses
 * the option with a message naming it and that auto stays NCHW; and that training is the same
 * computation in either layout: the kernels without an NHWC form run over NCHW copies with the
 * very arithmetic of the NCHW plan, and the pointwise ones over memory order, so a few steps of
 * baseline and resnet18 in fp32, and of baseline in fp16 with 16-bit activations, give the same
 * losses, logits, weights, BN statistics and optimizer state bit for bit. Exits 77 (skipped)
 * without an opencl device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "polytrain/backend.h"
#include "polytrain/models.h"
#include "polytrain/net.h"
#include "polytrain/replica.h"
#include "pt_test.h"
#include "pt_test_net.h"
#include "pt_test_opencl.h"

static pt_device *g_cpu, *g_ocl;

enum { B = 4, K = 10, HW = 16, STEPS = 3 };

static pt_replica *make(pt_device *dev, const pt_net *net, pt_precision p, pt_act_storage a, pt_image_layout l,
                        pt_error *err)
{
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
    pt_replica_options ro = {.precision = p, .act_storage = a, .layout = l};
    pt_replica *r = NULL;
    if (pt_replica_create_ex(net, dev, B, &oc, 3, &ro, &r, err) != PT_OK) return NULL;
    return r;
}

static void test_plan(void)
{
    pt_error err;
    pt_net *net = NULL;
    CHECKF(pt_model_build("resnet18", 3, HW, HW, K, &net, &err) == PT_OK, "%s", err.msg);
    if (!net) return;
    pt_replica *n = make(g_ocl, net, PT_PREC_FP32, PT_ACT_STORAGE_AUTO, PT_IMAGES_NHWC, &err);
    CHECKF(n != NULL, "opencl --layout nhwc: %s", err.msg);
    pt_replica *a = make(g_ocl, net, PT_PREC_FP32, PT_ACT_STORAGE_AUTO, PT_IMAGES_AUTO, &err);
    CHECKF(a != NULL, "opencl --layout auto: %s", err.msg);
    if (n && a) {
        int n4d = 0, nhwc = 0, a4d = 0, ahwc = 0;
        pt_replica_count_layouts(n, &n4d, &nhwc);
        pt_replica_count_layouts(a, &a4d, &ahwc);
        /* every image but the data input */
        CHECKF(n4d > 20 && nhwc == n4d - 1 && a4d == n4d && ahwc == 0, "nhwc: %d of %d images NHWC; auto: %d of %d",
               nhwc, n4d, ahwc, a4d);
        CHECK(pt_replica_node_layout(n, 0) == PT_LAYOUT_NCHW);
        CHECK(pt_replica_node_layout(n, net->output) == PT_LAYOUT_NCHW);
        int flat_nhwc = 0;
        for (int i = 0; i < net->nnodes; i++) flat_nhwc += net->nodes[i].flat && pt_replica_node_layout(n, i);
        CHECKF(flat_nhwc == 0, "%d flat nodes marked NHWC", flat_nhwc);
        /* every op the plan emits is one the device takes as it is */
        int nops = 0, refused = 0, with_nhwc = 0;
        const pt_replica_list lists[] = {PT_LIST_FORWARD, PT_LIST_BACKWARD, PT_LIST_OTHER};
        for (int l = 0; l < 3; l++) {
            int cnt = 0;
            const pt_op *ops = pt_replica_ops(n, lists[l], &cnt);
            for (int i = 0; i < cnt; i++) {
                nops++;
                refused += !g_ocl->be->supports(g_ocl->ctx, &ops[i]);
                for (int t = 0; t < ops[i].nt; t++)
                    if (pt_tensor_nhwc(&ops[i].t[t])) {
                        with_nhwc++;
                        break;
                    }
            }
        }
        CHECKF(nops > 100 && refused == 0 && with_nhwc > nops / 2, "%d ops, %d refused, %d with NHWC operands", nops,
               refused, with_nhwc);
        printf("  resnet18 on opencl, --layout nhwc: %d of %d images channels last, %d of %d ops with NHWC operands\n",
               nhwc, n4d, with_nhwc, nops);
    }
    pt_replica_free(n);
    pt_replica_free(a);
    /* the cpu backend keeps NCHW: refused, naming the option and the backend */
    pt_replica *c = make(g_cpu, net, PT_PREC_FP32, PT_ACT_STORAGE_AUTO, PT_IMAGES_NHWC, &err);
    CHECK(c == NULL && err.status == PT_ERR_UNSUPPORTED);
    CHECKF(c || (strstr(err.msg, "layout nhwc") && strstr(err.msg, "cpu")), "%s", err.msg);
    pt_replica_options ro = {.layout = PT_IMAGES_NHWC};
    CHECK(pt_replica_check_options(g_cpu, &ro, &err) == PT_ERR_UNSUPPORTED);
    CHECK(pt_replica_check_options(g_ocl, &ro, &err) == PT_OK);
    pt_replica_free(c);
    pt_net_free(net);
}

/* A linear layer reading an image reads it as a matrix in NCHW order, dropout by element
 * index: what they read stays NCHW, and so does an in-place ReLU over it; the rest is NHWC. */
static void test_plan_keeps_nchw_where_read_flat(void)
{
    pt_error err;
    pt_net *net = pt_net_new(3, 8, 8, K);
    if (!net) return;
    const int x = pt_net_input(net);
    const int c1 = pt_net_conv2d(net, x, "c1", 6, 3, 1, 1, 1);
    const int b1 = pt_net_batchnorm2d(net, c1, "b1");
    const int r1 = pt_net_relu(net, b1);
    const int c2 = pt_net_conv2d(net, r1, "c2", 5, 3, 2, 1, 0);
    const int r2 = pt_net_relu(net, c2);
    const int d = pt_net_dropout(net, r2, 0.25f);
    const int c3 = pt_net_conv2d(net, d, "c3", 4, 1, 1, 0, 0);
    const int fc = pt_net_linear(net, c3, "fc", K, 1);
    CHECKF(pt_net_finish(net, fc, &err) == PT_OK, "%s", err.msg);
    pt_replica *n = make(g_ocl, net, PT_PREC_FP32, PT_ACT_STORAGE_AUTO, PT_IMAGES_NHWC, &err);
    CHECKF(n != NULL, "%s", err.msg);
    if (n) {
        const int want_nhwc[] = {c1, b1, r1};
        const int want_nchw[] = {x, c2, r2, d, c3, fc};
        for (size_t i = 0; i < sizeof want_nhwc / sizeof *want_nhwc; i++)
            CHECKF(pt_replica_node_layout(n, want_nhwc[i]) == PT_LAYOUT_NHWC, "node %d is not NHWC", want_nhwc[i]);
        for (size_t i = 0; i < sizeof want_nchw / sizeof *want_nchw; i++)
            CHECKF(pt_replica_node_layout(n, want_nchw[i]) == PT_LAYOUT_NCHW, "node %d is not NCHW", want_nchw[i]);
    }
    pt_replica_free(n);
    pt_net_free(net);
}

typedef struct run_out {
    double loss[STEPS];
    float logits[B * K];
    float *state;
    size_t nstate;
    int nhwc;
} run_out;

/* STEPS steps of model on one batch (fp16: loss scaling by 2^12), then an evaluation forward. */
static int train(const char *model, pt_precision p, pt_image_layout l, run_out *o)
{
    pt_error err;
    pt_net *net = NULL;
    memset(o, 0, sizeof *o);
    if (pt_model_build(model, 3, HW, HW, K, &net, &err) != PT_OK) return 0;
    pt_replica *r = make(g_ocl, net, p, p == PT_PREC_FP16 ? PT_ACT_STORAGE_16BIT : PT_ACT_STORAGE_AUTO, l, &err);
    int ok = r && pt_replica_init_params(r, 5, &err) == PT_OK;
    if (r) {
        int n4d;
        pt_replica_count_layouts(r, &n4d, &o->nhwc);
    }
    static float x[B * 3 * HW * HW], logits[B * K], loss[B];
    static int32_t y[B];
    const float scale = p == PT_PREC_FP16 ? 4096.0f : 1.0f;
    for (int s = 0; s < STEPS && ok; s++) {
        ok = pt_t_fixed_batch_step(r, B, HW, K, s, scale, x, y, logits, loss, &o->loss[s], &err) == PT_OK;
        int found = 0;
        if (ok && scale != 1.0f) ok = pt_replica_unscale_grads(r, 1.0f / scale, &found, &err) == PT_OK;
        if (ok && !found) ok = pt_replica_update(r, 0.01f, s + 1, &err) == PT_OK;
    }
    if (ok) ok = pt_replica_eval(r, x, y, B, o->logits, loss, &err) == PT_OK;
    if (ok) {
        const size_t np = (size_t)pt_replica_param_region(r), nb = (size_t)pt_replica_buffer_region(r);
        const size_t no = (size_t)pt_replica_opt_slots(r) * np;
        o->nstate = np + nb + no;
        o->state = malloc(o->nstate * sizeof *o->state);
        ok = o->state && pt_replica_read_state(r, o->state, o->state + np, no ? o->state + np + nb : NULL, &err) == PT_OK;
    }
    CHECKF(ok, "%s %s: %s", model, pt_image_layout_name(l), err.msg);
    pt_replica_free(r);
    pt_net_free(net);
    return ok;
}

static void same_training(const char *model, pt_precision p)
{
    run_out a, b;
    if (train(model, p, PT_IMAGES_NCHW, &a) && train(model, p, PT_IMAGES_NHWC, &b)) {
        CHECKF(a.nhwc == 0 && b.nhwc > 5, "%s: %d NHWC images (nchw), %d (nhwc)", model, a.nhwc, b.nhwc);
        for (int s = 0; s < STEPS; s++)
            CHECKF(memcmp(&a.loss[s], &b.loss[s], sizeof a.loss[s]) == 0 && isfinite(a.loss[s]),
                   "%s %s step %d: loss %.9g (nchw), %.9g (nhwc)", model, pt_precision_name(p), s, a.loss[s],
                   b.loss[s]);
        CHECKF(memcmp(a.logits, b.logits, sizeof a.logits) == 0, "%s %s: evaluation logits differ", model,
               pt_precision_name(p));
        size_t differ = 0;
        for (size_t i = 0; i < a.nstate && a.nstate == b.nstate; i++)
            differ += memcmp(&a.state[i], &b.state[i], sizeof a.state[i]) != 0;
        CHECKF(a.nstate == b.nstate && a.nstate > 10000 && differ == 0, "%s %s: %zu of %zu state values differ", model,
               pt_precision_name(p), differ, a.nstate);
        CHECKF(a.loss[STEPS - 1] < a.loss[0], "%s: the loss did not go down (%g -> %g)", model, a.loss[0],
               a.loss[STEPS - 1]);
        printf("  %s %s: %d NHWC images, losses %.6f -> %.6f in both layouts, %zu state values equal\n", model,
               pt_precision_name(p), b.nhwc, a.loss[0], a.loss[STEPS - 1], a.nstate);
    }
    free(a.state), free(b.state);
}

static void test_baseline_fp32_same_in_both_layouts(void) { same_training("baseline", PT_PREC_FP32); }
static void test_resnet18_fp32_same_in_both_layouts(void) { same_training("resnet18", PT_PREC_FP32); }
static void test_baseline_fp16_same_in_both_layouts(void) { same_training("baseline", PT_PREC_FP16); }
static void test_cbam_fp32_same_in_both_layouts(void) { same_training("cbam_resnet18", PT_PREC_FP32); }

int main(void)
{
    const int rc = pt_t_open_opencl_fp16_and_cpu(&g_ocl, &g_cpu);
    if (rc) return rc;
    RUN(test_plan);
    RUN(test_plan_keeps_nchw_where_read_flat);
    RUN(test_baseline_fp32_same_in_both_layouts);
    RUN(test_resnet18_fp32_same_in_both_layouts);
    RUN(test_baseline_fp16_same_in_both_layouts);
    RUN(test_cbam_fp32_same_in_both_layouts);
    pt_device_close(g_ocl);
    pt_device_close(g_cpu);
    TEST_EXIT();
}
