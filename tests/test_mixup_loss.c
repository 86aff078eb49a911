/* Mixup/cutmix targets in the loss op (PT_OP_XENT with six operands) on the cpu backend
 * against a float64 reference, and the replica's mixed step: lam = 1 is the plain step. */
#include <math.h>
#include <string.h>

#include "polytrain/polytrain.h"
#include "core/rng.h"
#include "pt_test.h"

enum { N = 9, K = 7 };

static void mixed_targets_match_float64_reference(void)
{
    pt_error err;
    pt_device *dev = NULL;
    CHECK(pt_device_open("cpu", 0, NULL, &dev, &err) == PT_OK);
    if (!dev) return;
    pt_buffer *buf = NULL;
    size_t zb = N * K * 4, off_y = zb, off_y2 = off_y + N * 4, off_lam = off_y2 + N * 4, off_loss = off_lam + N * 4,
           off_g = off_loss + N * 4, total = off_g + zb;
    CHECK(pt_device_alloc(dev, total, &buf, &err) == PT_OK);
    float z[N * K], lam[N], loss[N], g[N * K];
    int32_t y[N], y2[N];
    for (uint64_t seed = 1; seed <= 3; seed++) {
        for (int i = 0; i < N * K; i++) z[i] = 3.0f * pt_rng_normal(seed, PT_RNG_SPLIT, 1, (uint64_t)i, 0);
        for (int i = 0; i < N; i++) {
            y[i] = (int32_t)pt_rng_below(seed, PT_RNG_SPLIT, 2, (uint64_t)i, 0, K);
            y2[i] = (int32_t)pt_rng_below(seed, PT_RNG_SPLIT, 3, (uint64_t)i, 0, K);
            lam[i] = pt_rng_uniform(seed, PT_RNG_SPLIT, 4, (uint64_t)i, 0);
        }
        const float sm = seed == 2 ? 0.1f : 0.0f, gs = 1.0f / N;
        pt_op op;
        memset(&op, 0, sizeof op);
        op.kind = PT_OP_XENT;
        op.nt = 6;
        op.t[0] = pt_tensor_2d(buf, 0, N, K);
        op.t[1] = pt_tensor_1d(buf, off_y, PT_I32, N);
        op.t[2] = pt_tensor_1d(buf, off_loss, PT_F32, N);
        op.t[3] = pt_tensor_2d(buf, off_g, N, K);
        op.t[4] = pt_tensor_1d(buf, off_y2, PT_I32, N);
        op.t[5] = pt_tensor_1d(buf, off_lam, PT_F32, N);
        op.p.xent.smoothing = sm;
        op.p.xent.grad_scale = gs;
        float nan_loss[N], nan_g[N * K];
        for (int i = 0; i < N; i++) nan_loss[i] = NAN;
        for (int i = 0; i < N * K; i++) nan_g[i] = NAN;
        pt_device_write(dev, op.t[0].mem, z, sizeof z, &err);
        pt_device_write(dev, op.t[1].mem, y, sizeof y, &err);
        pt_device_write(dev, op.t[4].mem, y2, sizeof y2, &err);
        pt_device_write(dev, op.t[5].mem, lam, sizeof lam, &err);
        pt_device_write(dev, op.t[2].mem, nan_loss, sizeof nan_loss, &err);
        pt_device_write(dev, op.t[3].mem, nan_g, sizeof nan_g, &err);
        CHECK(dev->be->supports(dev->ctx, &op));
        CHECKF(pt_device_run(dev, &op, &err) == PT_OK, "%s", err.msg);
        pt_device_read(dev, loss, op.t[2].mem, sizeof loss, &err);
        pt_device_read(dev, g, op.t[3].mem, sizeof g, &err);
        double ref_loss[N], ref_g[N * K];
        for (int i = 0; i < N; i++) {
            const float *zi = z + i * K;
            double mx = zi[0], se = 0;
            for (int j = 1; j < K; j++) mx = fmax(mx, zi[j]);
            for (int j = 0; j < K; j++) se += exp(zi[j] - mx);
            double lse = mx + log(se), l = 0;
            for (int j = 0; j < K; j++) {
                double q = lam[i] * ((j == y[i]) * (1.0 - sm) + sm / K) +
                           (1.0 - lam[i]) * ((j == y2[i]) * (1.0 - sm) + sm / K);
                l -= q * (zi[j] - lse);
                ref_g[i * K + j] = gs * (exp(zi[j] - lse) - q);
            }
            ref_loss[i] = l;
        }
        double el = pt_t_rel_err_f32_f64(loss, ref_loss, N), eg = pt_t_rel_err_f32_f64(g, ref_g, N * K);
        CHECKF(el < 1e-6 && eg < 1e-6, "seed %llu: loss error %.3g, gradient error %.3g",
               (unsigned long long)seed, el, eg);
    }
    pt_device_free(dev, buf);
    pt_device_close(dev);
}

static void mixed_step_with_lam_one_is_the_plain_step(void)
{
    pt_error err;
    pt_device *dev = NULL;
    CHECK(pt_device_open("cpu", 0, NULL, &dev, &err) == PT_OK);
    pt_net *net = pt_net_new(1, 6, 6, K);
    int x = pt_net_input(net);
    x = pt_net_conv2d(net, x, "conv", 3, 3, 1, 1, 0);
    x = pt_net_batchnorm2d(net, x, "bn");
    x = pt_net_relu(net, x);
    x = pt_net_global_avgpool(net, x);
    x = pt_net_linear(net, x, "fc", K, 1);
    CHECK(pt_net_finish(net, x, &err) == PT_OK);
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
    pt_replica *r = NULL;
    CHECK(dev && pt_replica_create(net, dev, N, &oc, 5, &r, &err) == PT_OK);
    if (!r) return;
    pt_replica_init_params(r, 5, &err);
    float in[N * 36], logits[N * K], l1[N], l2[N], l3[N], ones[N], half[N];
    int32_t y[N], y2[N];
    int64_t P = pt_replica_param_region(r);
    static float g1[1 << 12], g2[1 << 12];
    CHECK(P <= (1 << 12));
    for (int i = 0; i < N * 36; i++) in[i] = pt_rng_normal(9, PT_RNG_SPLIT, 5, (uint64_t)i, 0);
    for (int i = 0; i < N; i++) {
        y[i] = i % K;
        y2[i] = (i + 3) % K;
        ones[i] = 1.0f;
        half[i] = 0.5f;
    }
    CHECK(pt_replica_forward_backward(r, in, y, N, 0, 0, 1.0f / N, logits, l1, &err) == PT_OK);
    pt_replica_read_grads(r, g1, &err);
    CHECK(pt_replica_forward_backward_mixed(r, in, y, y2, ones, N, 0, 0, 1.0f / N, logits, l2, &err) == PT_OK);
    pt_replica_read_grads(r, g2, &err);
    CHECK(memcmp(l1, l2, sizeof l1) == 0);
    CHECK(memcmp(g1, g2, (size_t)P * 4) == 0);
    /* lam 0.5 between y and y2: the loss is the mean of the two plain losses. */
    CHECK(pt_replica_forward_backward_mixed(r, in, y, y2, half, N, 0, 0, 1.0f / N, logits, l3, &err) == PT_OK);
    CHECK(pt_replica_forward_backward(r, in, y2, N, 0, 0, 1.0f / N, logits, l2, &err) == PT_OK);
    double worst = 0;
    for (int i = 0; i < N; i++) worst = fmax(worst, fabs(l3[i] - 0.5 * (l1[i] + l2[i])));
    CHECKF(worst < 1e-5, "mixed loss differs from the mean of the two losses by %g", worst);
    int32_t bad[N];
    memcpy(bad, y2, sizeof bad);
    bad[4] = K;
    CHECK(pt_replica_forward_backward_mixed(r, in, y, bad, half, N, 0, 0, 1.0f / N, logits, l3, &err) ==
          PT_ERR_INVALID);
    CHECK(pt_replica_forward_backward_mixed(r, in, y, y2, NULL, N, 0, 0, 1.0f / N, logits, l3, &err) ==
          PT_ERR_INVALID);
    pt_replica_free(r);
    pt_net_free(net);
    pt_device_close(dev);
}

int main(void)
{
    RUN(mixed_targets_match_float64_reference);
    RUN(mixed_step_with_lam_one_is_the_plain_step);
    TEST_EXIT();
}
