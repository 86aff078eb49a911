/* Whole-net gradient checks: the replica's backward pass (in-place ReLU, residual adds
 * with accumulated gradients, BN, pooling, dropout, linear, the loss) against central
 * finite differences of its own forward pass, per parameter tensor, along random
 * directions. float32 differences through BN+ReLU are noisy at the percent level (the
 * gradients themselves match PyTorch's float64 autograd to 1e-7, see
 * tests/python/test_torch_equivalence.py), so this test takes the median over several
 * directions with a 10% bound: what it is for is wiring errors (a lost or doubled
 * gradient contribution), which are off by 30% to 100%. Layer-level checks with tight
 * bounds live in test_gradcheck.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "polytrain/polytrain.h"
#include "core/rng.h"
#include "pt_test.h"

enum { N = 6, C = 2, H = 9, W = 9, K = 5 };

typedef struct fixture {
    pt_device *dev;
    pt_net *net;
    pt_replica *rep;
    float x[N * C * H * W];
    int32_t y[N];
    float logits[N * K], loss[N];
} fixture;

static pt_net *build_net(int with_dropout)
{
    pt_net *net = pt_net_new(C, H, W, K);
    int x = pt_net_input(net);
    int a = pt_net_conv2d(net, x, "stem", 4, 3, 1, 1, 1);
    a = pt_net_batchnorm2d(net, a, "stem_bn");
    /* variant 3: SiLU instead of these ReLUs; its gradient reads its input, so it must not
     * run in place over the BN output (its only consumer) */
    a = with_dropout == 3 ? pt_net_activation(net, a, PT_OP_SILU_FWD) : pt_net_relu(net, a);
    int b = pt_net_conv2d(net, a, "block.conv1", 4, 3, 1, 1, 0);
    b = pt_net_batchnorm2d(net, b, "block.bn1");
    b = with_dropout == 3 ? pt_net_activation(net, b, PT_OP_SILU_FWD) : pt_net_relu(net, b);
    b = pt_net_conv2d(net, b, "block.conv2", 4, 3, 1, 1, 0);
    if (with_dropout == 2) {
        /* SE then CBAM on the block's branch, as se_resnet18/cbam_resnet18 wire them (hidden
         * width 2 instead of C/16): broadcast multiplies, sigmoid gates, global max and
         * channel pools, and an MLP whose parameters two shared linear nodes reuse. */
        int g = pt_net_linear(net, pt_net_global_avgpool(net, b), "se.fc1", 2, 1);
        g = pt_net_sigmoid(net, pt_net_linear(net, pt_net_relu(net, g), "se.fc2", 4, 1));
        b = pt_net_bcast_mul(net, b, g);
        int f1 = pt_net_linear(net, pt_net_global_avgpool(net, b), "ca.fc1", 2, 1);
        int f2 = pt_net_linear(net, pt_net_relu(net, f1), "ca.fc2", 4, 1);
        int m = pt_net_linear_shared(net, pt_net_global_maxpool(net, b), f1);
        m = pt_net_linear_shared(net, pt_net_relu(net, m), f2);
        b = pt_net_bcast_mul(net, b, pt_net_sigmoid(net, pt_net_add(net, f2, m)));
        int sp = pt_net_conv2d(net, pt_net_channel_pool(net, b), "sa.conv", 1, 7, 1, 3, 0);
        sp = pt_net_sigmoid(net, pt_net_batchnorm2d(net, sp, "sa.bn"));
        b = pt_net_bcast_mul(net, b, sp);
    }
    int s = pt_net_add(net, b, a); /* a also feeds block.conv1: accumulated gradient */
    s = pt_net_relu(net, s);
    s = pt_net_maxpool2d(net, s, 3, 2, 1);
    int d = pt_net_conv2d(net, s, "down", 6, 1, 2, 0, 0);
    d = pt_net_batchnorm2d(net, d, "down_bn");
    if (with_dropout == 1) d = pt_net_dropout(net, d, 0.25f);
    d = pt_net_global_avgpool(net, d);
    d = pt_net_linear(net, d, "fc", K, 1);
    pt_error err;
    if (pt_net_finish(net, d, &err) != PT_OK) {
        fprintf(stderr, "net: %s\n", err.msg);
        pt_net_free(net);
        return NULL;
    }
    return net;
}

static int setup(fixture *f, int with_dropout, float smoothing)
{
    memset(f, 0, sizeof *f);
    pt_error err;
    if (pt_device_open("cpu", 0, NULL, &f->dev, &err) != PT_OK) {
        fprintf(stderr, "device: %s\n", err.msg);
        return 0;
    }
    f->net = build_net(with_dropout);
    if (!f->net) return 0;
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
    if (pt_replica_create(f->net, f->dev, N, &oc, 42, &f->rep, &err) != PT_OK ||
        pt_replica_init_params(f->rep, 42, &err) != PT_OK) {
        fprintf(stderr, "replica: %s\n", err.msg);
        return 0;
    }
    pt_replica_set_label_smoothing(f->rep, smoothing);
    for (int i = 0; i < N * C * H * W; i++) f->x[i] = pt_rng_normal(7, PT_RNG_SPLIT, 1, (uint64_t)i, 0);
    for (int i = 0; i < N; i++) f->y[i] = (int32_t)pt_rng_below(7, PT_RNG_SPLIT, 2, (uint64_t)i, 0, K);
    return 1;
}

static void teardown(fixture *f)
{
    pt_replica_free(f->rep);
    pt_net_free(f->net);
    pt_device_close(f->dev);
}

/* Mean loss of the training-mode forward pass (same step and samples every call, so the
 * dropout mask is fixed). */
static double loss_at(fixture *f)
{
    pt_error err;
    if (pt_replica_forward_backward(f->rep, f->x, f->y, N, 0, 3, 1.0f / N, f->logits, f->loss, &err) != PT_OK) {
        fprintf(stderr, "forward: %s\n", err.msg);
        return NAN;
    }
    double s = 0;
    for (int i = 0; i < N; i++) s += f->loss[i];
    return s / N;
}

static void check_all_tensors(int with_dropout, float smoothing)
{
    fixture f;
    CHECK(setup(&f, with_dropout, smoothing));
    if (!f.rep) return;
    int64_t P = pt_replica_param_region(f.rep), B = pt_replica_buffer_region(f.rep);
    float *p0 = malloc((size_t)P * 4), *p = malloc((size_t)P * 4), *g = malloc((size_t)P * 4);
    float *bufs = malloc((size_t)(B + 1) * 4), *opt = malloc((size_t)(P + 1) * 4);
    pt_error err;
    loss_at(&f);
    CHECK(pt_replica_read_grads(f.rep, g, &err) == PT_OK);
    CHECK(pt_replica_read_state(f.rep, p0, bufs, opt, &err) == PT_OK);
    const double h = 5e-3;
    for (int t = 0; t < f.net->nparams; t++) {
        const pt_param_info *pi = &f.net->params[t];
        enum { DIRS = 5 };
        double errs[DIRS];
        for (int dir = 0; dir < DIRS; dir++) {
            memcpy(p, p0, (size_t)P * 4);
            double gv = 0;
            float v[4096];
            for (int64_t e = 0; e < pi->numel; e++) {
                v[e] = pt_rng_normal(11, PT_RNG_SPLIT, (uint64_t)(t * 8 + dir), (uint64_t)e, 0);
                gv += (double)g[pi->offset + e] * v[e];
            }
            for (int64_t e = 0; e < pi->numel; e++) p[pi->offset + e] = p0[pi->offset + e] + (float)h * v[e];
            pt_replica_write_state(f.rep, p, bufs, opt, &err);
            double lp = loss_at(&f);
            for (int64_t e = 0; e < pi->numel; e++) p[pi->offset + e] = p0[pi->offset + e] - (float)h * v[e];
            pt_replica_write_state(f.rep, p, bufs, opt, &err);
            double lm = loss_at(&f);
            double fd = (lp - lm) / (2 * h);
            /* A tensor whose true gradient is ~0 (a conv bias before BN) is compared in
             * absolute terms. */
            errs[dir] = fabs(fd - gv) / fmax(fabs(gv) + fabs(fd), 2e-3);
            if (isnan(errs[dir])) errs[dir] = INFINITY;
        }
        for (int i = 0; i < DIRS; i++) /* sort for the median */
            for (int j = i + 1; j < DIRS; j++)
                if (errs[j] < errs[i]) {
                    double tmp = errs[i];
                    errs[i] = errs[j];
                    errs[j] = tmp;
                }
        CHECKF(errs[DIRS / 2] < 0.1, "%s: finite-difference mismatch, median normalised error %.3g (max %.3g)",
               pi->name, errs[DIRS / 2], errs[DIRS - 1]);
    }
    pt_replica_write_state(f.rep, p0, bufs, opt, &err);
    free(p0);
    free(p);
    free(g);
    free(bufs);
    free(opt);
    teardown(&f);
}

static void gradients_match_finite_differences(void) { check_all_tensors(0, 0.0f); }
static void gradients_match_with_dropout_and_label_smoothing(void) { check_all_tensors(1, 0.1f); }
static void gradients_match_through_se_and_cbam_attention(void) { check_all_tensors(2, 0.0f); }
static void gradients_match_with_silu_activations(void) { check_all_tensors(3, 0.0f); }

static void only_activation_kinds_make_an_activation_layer(void)
{
    pt_net *net = pt_net_new(1, 4, 4, 2);
    int x = pt_net_input(net);
    CHECK(pt_net_activation(net, x, PT_OP_SILU_FWD) > 0);
    CHECK(pt_net_activation(net, x, PT_OP_SILU_BWD) == -1);
    CHECKF(strstr(net->err.msg, "silu_bwd") != NULL, "%s", net->err.msg);
    pt_net_free(net);
    net = pt_net_new(1, 4, 4, 2);
    CHECK(pt_net_activation(net, pt_net_input(net), PT_OP_GEMM) == -1);
    pt_net_free(net);
}

/* The in-place ReLU and the accumulated residual gradient must not depend on the order
 * ops ran in: two backward passes give the same gradients bitwise. */
static void backward_is_repeatable(void)
{
    fixture f;
    CHECK(setup(&f, 1, 0.0f));
    if (!f.rep) return;
    int64_t P = pt_replica_param_region(f.rep);
    float *g1 = malloc((size_t)P * 4), *g2 = malloc((size_t)P * 4);
    pt_error err;
    loss_at(&f);
    pt_replica_read_grads(f.rep, g1, &err);
    loss_at(&f);
    pt_replica_read_grads(f.rep, g2, &err);
    CHECK(memcmp(g1, g2, (size_t)P * 4) == 0);
    free(g1);
    free(g2);
    teardown(&f);
}

/* A smaller last batch re-plans the ops for n samples and still trains correctly. */
static void short_batch_matches_its_own_full_batch(void)
{
    fixture f;
    CHECK(setup(&f, 0, 0.0f));
    if (!f.rep) return;
    pt_error err;
    float logits_full[N * K], loss_full[N], logits3[N * K], loss3[N];
    CHECK(pt_replica_eval(f.rep, f.x, f.y, N, logits_full, loss_full, &err) == PT_OK);
    CHECK(pt_replica_eval(f.rep, f.x, f.y, 3, logits3, loss3, &err) == PT_OK);
    double d = 0;
    for (int i = 0; i < 3 * K; i++) d = fmax(d, fabs(logits3[i] - logits_full[i]));
    CHECKF(d < 1e-5, "eval logits of the first 3 samples differ by %g", d);
    CHECK(pt_replica_forward_backward(f.rep, f.x, f.y, 3, 0, 0, 1.0f / 3, logits3, loss3, &err) == PT_OK);
    CHECK(pt_replica_forward_backward(f.rep, f.x, f.y, N + 1, 0, 0, 1.0f, logits3, loss3, &err) == PT_ERR_INVALID);
    int32_t bad[N] = {0, 1, 2, 3, 4, K};
    CHECK(pt_replica_forward_backward(f.rep, f.x, bad, N, 0, 0, 1.0f, logits3, loss3, &err) == PT_ERR_INVALID);
    CHECK(strstr(err.msg, "label") != NULL);
    teardown(&f);
}

int main(void)
{
    RUN(gradients_match_finite_differences);
    RUN(gradients_match_with_dropout_and_label_smoothing);
    RUN(gradients_match_through_se_and_cbam_attention);
    RUN(gradients_match_with_silu_activations);
    RUN(only_activation_kinds_make_an_activation_layer);
    RUN(backward_is_repeatable);
    RUN(short_batch_matches_its_own_full_batch);
    TEST_EXIT();
}
