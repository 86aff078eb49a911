/* Activations stored in fp16 on the opencl backend (the shared kernel layer's 16-bit operands):
 * under --precision fp16 its plan stores the same nodes in 16 bits as the cpu backend's, in a
 * smaller arena than with fp32 storage; --act-storage auto stores only the nodes every op of
 * which runs on the kernels' 16-bit twins; a few training steps with loss scaling give the cpu
 * backend's losses to within the bound below, and bit for bit the losses and weights of the
 * same steps run over float32 copies (PT_OPENCL_ACT16=copy). bf16 storage stays refused with
 * the precision. fp16 math on a device without cl_khr_fp16 (PoCL) through PT_OPENCL_FP16=force.
 * Exits 77 (skipped) without an opencl device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "polytrain/backend.h"
#include "polytrain/models.h"
#include "polytrain/replica.h"
#include "pt_test.h"
#include "pt_test_net.h"
#include "pt_test_opencl.h"

static pt_device *g_cpu, *g_ocl, *g_ocl_copy;

enum { B = 8, K = 10, HW = 16, STEPS = 4 };

static pt_replica *make(pt_device *dev, pt_net *net, int cap, pt_precision p, pt_act_storage a)
{
    pt_error err;
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
    pt_replica_options ro = {.precision = p, .act_storage = a};
    pt_replica *r = NULL;
    CHECKF(pt_replica_create_ex(net, dev, cap, &oc, 3, &ro, &r, &err) == PT_OK, "%s: %s", dev->be->name, err.msg);
    return r;
}

static void test_fp16_plan_matches_cpu_in_a_smaller_arena(void)
{
    pt_error err;
    pt_net *net = NULL;
    CHECKF(pt_model_build("baseline", 3, 32, 32, K, &net, &err) == PT_OK, "%s", err.msg);
    if (!net) return;
    pt_replica *c = make(g_cpu, net, B, PT_PREC_FP16, PT_ACT_STORAGE_16BIT);
    pt_replica *a = make(g_ocl, net, B, PT_PREC_FP16, PT_ACT_STORAGE_16BIT);
    pt_replica *f = make(g_ocl, net, B, PT_PREC_FP16, PT_ACT_STORAGE_FP32);
    /* auto stores a node in 16 bits only where every op on it runs on the kernels' 16-bit twins:
     * batch norm's output, its ReLU and the max-pool before a convolution are; a convolution's
     * input or output (float32 copies around its GEMM) is not. A device sent through the copies
     * everywhere stores none. */
    pt_replica *u = make(g_ocl, net, B, PT_PREC_FP16, PT_ACT_STORAGE_AUTO);
    pt_replica *uc = make(g_ocl_copy, net, B, PT_PREC_FP16, PT_ACT_STORAGE_AUTO);
    if (u && uc && a) {
        pt_act_plan pu, puc, pa;
        pt_replica_act_plan(u, &pu);
        pt_replica_act_plan(uc, &puc);
        pt_replica_act_plan(a, &pa);
        CHECKF(pu.n16 > 0 && pu.n16 < pa.n16, "opencl --act-storage auto stored %d activations in 16 bits (16bit: %d)",
               pu.n16, pa.n16);
        CHECKF(puc.n16 == 0, "PT_OPENCL_ACT16=copy: auto stored %d activations in 16 bits", puc.n16);
        int sub = 0;
        for (int i = 0; i < net->nnodes; i++)
            sub += pt_replica_act_dtype(u, i) == PT_F32 || pt_replica_act_dtype(a, i) == PT_F16;
        CHECKF(sub == net->nnodes, "auto stores %d nodes that 16bit stores in float32", net->nnodes - sub);
        printf("  opencl baseline fp16: auto stores %d of %d activations in 16 bits, 16bit %d\n", pu.n16, pu.nacts,
               pa.n16);
    }
    pt_replica_free(u);
    pt_replica_free(uc);
    if (c && a && f) {
        int same = 0;
        for (int i = 0; i < net->nnodes; i++) {
            same += pt_replica_act_dtype(a, i) == pt_replica_act_dtype(c, i);
            CHECK(pt_replica_act_dtype(a, i) == PT_F32 || pt_replica_act_dtype(a, i) == PT_F16);
            CHECK(pt_replica_act_dtype(f, i) == PT_F32);
        }
        CHECKF(same == net->nnodes, "%d of %d nodes stored as on cpu", same, net->nnodes);
        pt_act_plan pa, pf;
        pt_replica_act_plan(a, &pa);
        pt_replica_act_plan(f, &pf);
        CHECKF(pa.n16 > 0 && pa.dtype16 == PT_F16 && pf.n16 == 0, "16-bit activations: %d (16bit), %d (fp32)", pa.n16,
               pf.n16);
        CHECKF(pa.act_bytes < pf.act_bytes, "activations %zu bytes (16bit) vs %zu (fp32)", pa.act_bytes, pf.act_bytes);
        CHECKF(pt_replica_device_bytes(a) < pt_replica_device_bytes(f), "device bytes %zu (16bit) vs %zu (fp32)",
               pt_replica_device_bytes(a), pt_replica_device_bytes(f));
        printf("  opencl baseline fp16, batch %d: %d of %d activations fp16, %zu vs %zu activation bytes, %zu vs "
               "%zu device bytes\n",
               B, pa.n16, pa.nacts, pa.act_bytes, pf.act_bytes, pt_replica_device_bytes(a),
               pt_replica_device_bytes(f));
    }
    pt_replica_free(c);
    pt_replica_free(a);
    pt_replica_free(f);
    /* bf16 math (and with it bf16 storage) stays refused on opencl */
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
    pt_replica_options ro = {.precision = PT_PREC_BF16, .act_storage = PT_ACT_STORAGE_AUTO};
    pt_replica *r = NULL;
    CHECK(pt_replica_create_ex(net, g_ocl, B, &oc, 3, &ro, &r, &err) == PT_ERR_UNSUPPORTED && r == NULL);
    CHECKF(strstr(err.msg, "no bf16") != NULL, "%s", err.msg);
    pt_net_free(net);
}

/* STEPS steps of baseline on one batch with fp16 loss scaling (2^12); losses[s] the mean loss;
 * state (when not NULL) the parameters and BN buffers after them, *nstate floats (malloc'd). */
static int train_ex(pt_device *dev, double *losses, int *n16, float **state, size_t *nstate)
{
    pt_error err;
    pt_net *net = NULL;
    if (pt_model_build("baseline", 3, HW, HW, K, &net, &err) != PT_OK) return 0;
    pt_replica *r = make(dev, net, B, PT_PREC_FP16, PT_ACT_STORAGE_16BIT);
    int ok = r && pt_replica_init_params(r, 5, &err) == PT_OK;
    pt_act_plan pl = {0};
    if (r) pt_replica_act_plan(r, &pl);
    *n16 = pl.n16;
    static float x[B * 3 * HW * HW], logits[B * K], loss[B];
    static int32_t y[B];
    const float scale = 4096.0f;
    for (int s = 0; s < STEPS && ok; s++) {
        ok = pt_t_fixed_batch_step(r, B, HW, K, s, scale, x, y, logits, loss, &losses[s], &err) == PT_OK;
        int found = 0;
        if (ok) ok = pt_replica_unscale_grads(r, 1.0f / scale, &found, &err) == PT_OK;
        CHECKF(!found, "%s step %d overflowed", dev->be->name, s);
        if (ok && !found) ok = pt_replica_update(r, 0.01f, s + 1, &err) == PT_OK;
    }
    if (ok && state) {
        const size_t np = (size_t)pt_replica_param_region(r), nb = (size_t)pt_replica_buffer_region(r);
        const size_t no = (size_t)pt_replica_opt_slots(r) * np;
        *nstate = np + nb + no;
        *state = malloc(*nstate * sizeof **state);
        ok = *state && pt_replica_read_state(r, *state, *state + np, no ? *state + np + nb : NULL, &err) == PT_OK;
    }
    CHECKF(ok, "%s: %s", dev->be->name, err.msg);
    pt_replica_free(r);
    pt_net_free(net);
    return ok;
}

static int train(pt_device *dev, double *losses, int *n16) { return train_ex(dev, losses, n16, NULL, NULL); }

/* Both backends round the same operands to half, sum exact products in float32 and round each
 * stored activation once. The float32 sums differ in order between the backends (CLBlast's
 * GEMM, Winograd, the reductions' trees), so a value near a half rounding boundary can round
 * the other way on one of them: that activation moves by one half ulp (2^-11 relative), and
 * the loss, an average over many, by far less. Step 0 (the same weights) within 2^-11 relative
 * (measured 1.9e-5); a wrong op or conversion is off by O(1) there. The updated weights then
 * differ and the runs drift apart as any two roundings of training do (one batch learnt fast:
 * the loss falls 30-fold): each later step within 1% of the first loss (measured 6.5e-4), as
 * tests/test_act_storage.c bounds fp16 storage against fp32 storage. */
static void test_fp16_steps_match_cpu(void)
{
    double lc[STEPS], lo[STEPS];
    int nc = 0, no = 0;
    if (!train(g_cpu, lc, &nc) || !train(g_ocl, lo, &no)) return;
    CHECKF(no > 0 && no == nc, "16-bit activations: %d on opencl, %d on cpu", no, nc);
    for (int s = 0; s < STEPS; s++) {
        const double diff = fabs(lo[s] - lc[s]);
        printf("  step %d: loss %.7f opencl, %.7f cpu (%.2e of the first loss)\n", s, lo[s], lc[s], diff / lc[0]);
        CHECKF(isfinite(lo[s]) && diff <= (s == 0 ? 0x1p-11 * fabs(lc[0]) : 0.01 * lc[0]),
               "step %d: loss %.7f on opencl, %.7f on cpu", s, lo[s], lc[s]);
    }
    CHECKF(lo[STEPS - 1] < lo[0], "the loss did not go down on opencl (%g -> %g)", lo[0], lo[STEPS - 1]);
}

/* The kernels' 16-bit twins widen each load and round each store as the copies do, and run the
 * float kernels' arithmetic: the same steps give the same losses, weights, BN statistics and
 * optimizer state, bit for bit. */
static void test_fp16_twins_equal_copies(void)
{
    double ln[STEPS], lc[STEPS];
    int nn = 0, nc = 0;
    float *sn = NULL, *sc = NULL;
    size_t mn = 0, mc = 0;
    if (train_ex(g_ocl, ln, &nn, &sn, &mn) && train_ex(g_ocl_copy, lc, &nc, &sc, &mc)) {
        CHECKF(nn > 0 && nn == nc, "16-bit activations: %d (twins), %d (copies)", nn, nc);
        for (int s = 0; s < STEPS; s++)
            CHECKF(memcmp(&ln[s], &lc[s], sizeof ln[s]) == 0, "step %d: loss %.9g (twins), %.9g (copies)", s, ln[s],
                   lc[s]);
        size_t differ = 0;
        for (size_t i = 0; i < mn && mn == mc; i++) differ += memcmp(&sn[i], &sc[i], sizeof sn[i]) != 0;
        CHECKF(mn == mc && mn > 1000000 && differ == 0,
               "%zu of %zu state values differ between the twins and the copies after %d steps", differ, mn, STEPS);
    }
    free(sn), free(sc);
}

int main(void)
{
    const int rc = pt_t_open_opencl_fp16_and_cpu(&g_ocl, &g_cpu);
    if (rc) return rc;
    setenv("PT_OPENCL_ACT16", "copy", 1);
    const int rc2 = pt_t_open_opencl(&g_ocl_copy);
    unsetenv("PT_OPENCL_ACT16");
    if (rc2) return rc2;
    RUN(test_fp16_plan_matches_cpu_in_a_smaller_arena);
    RUN(test_fp16_steps_match_cpu);
    RUN(test_fp16_twins_equal_copies);
    pt_device_close(g_ocl_copy);
    pt_device_close(g_ocl);
    pt_device_close(g_cpu);
    TEST_EXIT();
}
