/* Activations stored in 16 bits (pt_replica_options.act_storage) on the cpu backend: which
 * nodes the planner makes bf16 in baseline and resnet18 (the data input, the logits and what
 * a GEMM reads stay fp32), the activation region smaller than with fp32 storage by exactly
 * the bytes the 16-bit tensors save (the sequential layout) and smaller with live-range
 * sharing too, training steps in bf16 and in fp16 with loss scaling that stay finite and
 * near the fp32-storage steps, the op check's message for a backend without 16-bit
 * activations, and auto against 16bit where the kernels would go through copies. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "polytrain/backend.h"
#include "polytrain/models.h"
#include "polytrain/op.h"
#include "polytrain/replica.h"
#include "pt_test.h"
#include "pt_test_net.h"

static pt_device *g_dev;

static size_t align64(size_t n) { return (n + 63) / 64 * 64; }

static pt_replica *make(pt_net *net, int cap, pt_precision p, pt_act_storage a)
{
    pt_error err;
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
    pt_replica_options ro = {.precision = p, .act_storage = a};
    pt_replica *r = NULL;
    CHECKF(pt_replica_create_ex(net, g_dev, cap, &oc, 3, &ro, &r, &err) == PT_OK, "%s", err.msg);
    return r;
}

/* Which node kinds must be 16-bit and which fp32, for a model of the zoo under bf16. */
static void check_plan(const char *model)
{
    pt_error err;
    pt_net *net = NULL;
    CHECKF(pt_model_build(model, 3, 32, 32, 10, &net, &err) == PT_OK, "%s", err.msg);
    if (!net) return;
    pt_replica *r = make(net, 4, PT_PREC_BF16, PT_ACT_STORAGE_AUTO);
    if (!r) {
        pt_net_free(net);
        return;
    }
    int convs = 0;
    for (int i = 0; i < net->nnodes; i++) {
        const pt_node *n = &net->nodes[i];
        const pt_dtype dt = pt_replica_act_dtype(r, i);
        switch (n->kind) {
        case PT_NODE_CONV2D:
        case PT_NODE_BATCHNORM2D:
        case PT_NODE_RELU:
        case PT_NODE_MAXPOOL2D:
        case PT_NODE_ADD:
            convs += n->kind == PT_NODE_CONV2D;
            CHECKF(dt == PT_BF16 || i == net->output, "%s: node %d '%s' (kind %d) is %s, expected BF16", model, i,
                   n->name, (int)n->kind, pt_dtype_name(dt));
            break;
        default: /* the input, the pooled features the linear's GEMM reads, the logits */
            CHECKF(dt == PT_F32, "%s: node %d '%s' (kind %d) is %s, expected F32", model, i, n->name, (int)n->kind,
                   pt_dtype_name(dt));
        }
    }
    CHECKF(convs > 0, "%s has no convolution", model);
    CHECK(pt_replica_act_dtype(r, 0) == PT_F32 && pt_replica_act_dtype(r, net->output) == PT_F32);
    /* every forward op reads 16-bit activations only where its kind marks the operand lowp */
    int n = 0, bad = 0;
    const pt_op *ops = pt_replica_ops(r, PT_LIST_FORWARD, &n);
    for (int i = 0; i < n; i++) {
        const pt_op_desc *d = pt_op_describe(ops[i].kind);
        for (int t = 0; t < ops[i].nt; t++)
            bad += ops[i].t[t].ndim && ops[i].t[t].dtype == PT_BF16 && !d->arg[t].lowp;
    }
    CHECKF(bad == 0, "%s: %d non-lowp operands are BF16", model, bad);
    pt_replica_free(r);
    pt_net_free(net);
}

static void test_bf16_plan_of_baseline_and_resnet18(void)
{
    check_plan("baseline");
    check_plan("resnet18");
}

/* The distinct 16-bit activation tensors of r's training forward: their offsets and sizes. */
static size_t saved_by_16bit(const pt_replica *r, int *count)
{
    int n = 0;
    const pt_op *ops = pt_replica_ops(r, PT_LIST_FORWARD, &n);
    size_t seen[4096], saved = 0;
    int ns = 0;
    for (int i = 0; i < n; i++)
        for (int t = 0; t < ops[i].nt; t++) {
            const pt_tensor *x = &ops[i].t[t];
            if (!x->ndim || x->dtype != PT_BF16) continue;
            int dup = 0;
            for (int k = 0; k < ns && !dup; k++) dup = seen[k] == x->mem.off;
            if (dup || ns == 4096) continue;
            seen[ns++] = x->mem.off;
            const size_t numel = (size_t)pt_tensor_numel(x);
            saved += align64(numel * 4) - align64(numel * 2);
        }
    *count = ns;
    return saved;
}

static void check_bytes(const char *model, int cap)
{
    pt_error err;
    pt_net *net = NULL;
    CHECKF(pt_model_build(model, 3, 32, 32, 10, &net, &err) == PT_OK, "%s", err.msg);
    if (!net) return;
    /* the sequential layout: one range each, so the region shrinks by each tensor's saving */
    setenv("PT_ACT_SHARE", "0", 1);
    pt_replica *a = make(net, cap, PT_PREC_BF16, PT_ACT_STORAGE_AUTO);
    pt_replica *f = make(net, cap, PT_PREC_BF16, PT_ACT_STORAGE_FP32);
    unsetenv("PT_ACT_SHARE");
    if (a && f) {
        pt_act_plan pa, pf;
        pt_replica_act_plan(a, &pa);
        pt_replica_act_plan(f, &pf);
        int distinct = 0;
        const size_t saved = saved_by_16bit(a, &distinct);
        CHECKF(pa.n16 > 0 && distinct == pa.n16, "%s: %d 16-bit tensors in the forward, the plan says %d", model,
               distinct, pa.n16);
        CHECKF(pf.n16 == 0 && pf.nacts == pa.nacts, "%s: fp32 storage has %d of %d 16-bit", model, pf.n16, pf.nacts);
        CHECKF(saved > 0 && pa.act_bytes + saved == pf.act_bytes, "%s: activations %zu + %zu saved != fp32's %zu",
               model, pa.act_bytes, saved, pf.act_bytes);
        CHECK(pa.act_bytes_fp32 == pf.act_bytes);
    }
    pt_replica_free(a);
    pt_replica_free(f);
    /* with live ranges shared: smaller activations and a smaller arena, the fp32 figure the
     * fp32-storage replica's own */
    a = make(net, cap, PT_PREC_BF16, PT_ACT_STORAGE_AUTO);
    f = make(net, cap, PT_PREC_BF16, PT_ACT_STORAGE_FP32);
    if (a && f) {
        pt_act_plan pa, pf;
        pt_replica_act_plan(a, &pa);
        pt_replica_act_plan(f, &pf);
        CHECKF(pa.act_bytes < pf.act_bytes && pa.act_bytes_fp32 == pf.act_bytes, "%s: %zu vs %zu (%zu)", model,
               pa.act_bytes, pf.act_bytes, pa.act_bytes_fp32);
        CHECKF(pt_replica_device_bytes(a) < pt_replica_device_bytes(f), "%s: device bytes %zu vs %zu", model,
               pt_replica_device_bytes(a), pt_replica_device_bytes(f));
    }
    pt_replica_free(a);
    pt_replica_free(f);
    pt_net_free(net);
}

static void test_activation_bytes_shrink_by_the_16bit_tensors(void)
{
    check_bytes("baseline", 8);
    check_bytes("resnet18", 4);
}

/* fp32 precision and tf32 store float32 whatever act_storage says. */
static void test_fp32_and_tf32_store_fp32(void)
{
    pt_error err;
    pt_net *net = NULL;
    CHECKF(pt_model_build("baseline", 3, 16, 16, 10, &net, &err) == PT_OK, "%s", err.msg);
    if (!net) return;
    for (int p = PT_PREC_FP32; p <= PT_PREC_TF32; p++) {
        pt_replica *r = make(net, 2, (pt_precision)p, PT_ACT_STORAGE_AUTO);
        if (!r) continue;
        pt_act_plan pl;
        pt_replica_act_plan(r, &pl);
        CHECKF(pl.n16 == 0 && pl.act_bytes == pl.act_bytes_fp32, "%s: %d 16-bit", pt_precision_name((pt_precision)p),
               pl.n16);
        pt_replica_free(r);
    }
    pt_net_free(net);
}

enum { B = 8, K = 10, HW = 16, STEPS = 6 };

/* STEPS steps of baseline on one batch; losses[s] the mean loss of step s. fp16 scales the loss by 2^16
 * and unscales the gradients, skipping a step that overflowed (counted in *skipped). */
static int train(pt_precision p, pt_act_storage a, double *losses, int *skipped, int *n16)
{
    pt_error err;
    pt_net *net = NULL;
    if (pt_model_build("baseline", 3, HW, HW, K, &net, &err) != PT_OK) return 0;
    pt_replica *r = make(net, B, p, a);
    int ok = r && pt_replica_init_params(r, 5, &err) == PT_OK;
    pt_act_plan pl = {0};
    if (r) pt_replica_act_plan(r, &pl);
    *n16 = pl.n16;
    static float x[B * 3 * HW * HW], logits[B * K], loss[B];
    static int32_t y[B];
    *skipped = 0;
    const float scale = pt_precision_scales_loss(p) ? 65536.0f : 1.0f;
    for (int s = 0; s < STEPS && ok; s++) {
        ok = pt_t_fixed_batch_step(r, B, HW, K, s, scale, x, y, logits, loss, &losses[s], &err) == PT_OK;
        int found = 0;
        if (ok && scale != 1.0f) ok = pt_replica_unscale_grads(r, 1.0f / scale, &found, &err) == PT_OK;
        *skipped += found;
        if (ok && !found) ok = pt_replica_update(r, 0.01f, s + 1, &err) == PT_OK;
    }
    CHECKF(ok, "%s", err.msg);
    pt_replica_free(r);
    pt_net_free(net);
    return ok;
}

/* Each stored activation is rounded once more than with fp32 storage (2^-8 relative for bf16,
 * 2^-11 for fp16; the products already saw operands rounded to that format), so the first
 * losses agree to about that, and the runs then drift apart as any two roundings of training
 * do: every step's loss within `bound` times the first loss of the fp32-storage run's
 * (measured: 2e-3 for bf16, 8e-4 for fp16 over these steps); a NaN fails. The runs must differ
 * somewhere, or 16 bits were never used, and the loss must go down. */
static void check_training(pt_precision p, double bound)
{
    double la[STEPS], lf[STEPS];
    int sa = 0, sf = 0, na = 0, nf = 0;
    if (!train(p, PT_ACT_STORAGE_AUTO, la, &sa, &na) || !train(p, PT_ACT_STORAGE_FP32, lf, &sf, &nf)) return;
    CHECKF(na > 0 && nf == 0, "%s: %d and %d 16-bit activations", pt_precision_name(p), na, nf);
    CHECKF(sa == 0 && sf == 0, "%s: %d and %d steps skipped", pt_precision_name(p), sa, sf);
    int differ = 0;
    for (int s = 0; s < STEPS; s++) {
        CHECKF(isfinite(la[s]) && isfinite(lf[s]), "%s step %d: loss %g and %g", pt_precision_name(p), s, la[s], lf[s]);
        if (getenv("PT_TEST_VERBOSE"))
            printf("%s step %d: %.6f %.6f (%.2e of the first loss)\n", pt_precision_name(p), s, la[s], lf[s],
                   fabs(la[s] - lf[s]) / lf[0]);
        CHECKF(fabs(la[s] - lf[s]) <= bound * lf[0], "%s step %d: loss %.6f with 16-bit storage, %.6f with fp32",
               pt_precision_name(p), s, la[s], lf[s]);
        differ += la[s] != lf[s];
    }
    CHECKF(differ > 0, "%s: the 16-bit storage changed no loss", pt_precision_name(p));
    CHECKF(la[STEPS - 1] < la[0], "%s: the loss did not go down (%g -> %g)", pt_precision_name(p), la[0],
           la[STEPS - 1]);
}

static void test_bf16_training_near_fp32_storage(void) { check_training(PT_PREC_BF16, 0.03); }
static void test_fp16_training_with_loss_scaling_near_fp32_storage(void) { check_training(PT_PREC_FP16, 0.01); }

/* A backend without PT_CAP_ACT16 refuses a 16-bit operand naming backend, kind and operand,
 * and no backend takes one on an operand the table does not mark. */
static void test_check_names_backend_kind_and_operand(void)
{
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = PT_OP_RELU_FWD;
    op.nt = 2;
    op.t[0] = pt_tensor_1d(NULL, 0, PT_BF16, 16);
    op.t[1] = pt_tensor_1d(NULL, 64, PT_F32, 16);
    pt_error err;
    CHECK(pt_op_check_operands(&op, "opencl", 0, 1, &err) == PT_ERR_UNSUPPORTED);
    CHECKF(strstr(err.msg, "opencl relu_fwd: operand 0 (x) is BF16") != NULL, "%s", err.msg);
    CHECK(pt_op_check_operands(&op, "cpu", PT_CAP_ACT16(PT_BF16), 1, &err) == PT_OK);
    CHECK(pt_op_check_operands(&op, "cpu", PT_CAP_ACT16(PT_F16), 1, &err) == PT_ERR_UNSUPPORTED);
    op.kind = PT_OP_RELU_BWD; /* operand 1 is dy: a gradient, never 16-bit */
    op.nt = 3;
    op.t[0] = pt_tensor_1d(NULL, 0, PT_F32, 16);
    op.t[1] = pt_tensor_1d(NULL, 0, PT_BF16, 16);
    op.t[2] = pt_tensor_1d(NULL, 64, PT_F32, 16);
    CHECK(pt_op_check_operands(&op, "cpu", PT_CAP_ACT16(PT_BF16), 1, &err) == PT_ERR_INVALID);
    CHECKF(strstr(err.msg, "operand 1 (dy) is BF16, expected F32") != NULL, "%s", err.msg);
}

/* auto stores 16 bits only where the kernels read and write them (act16_native), 16bit also
 * through float32 copies: on the cpu every lowp op of baseline is native, so both store the
 * same; a device sent through the copies (PT_CPU_ACT16=copy) keeps auto's activations fp32
 * and 16bit's as before. */
static int n16_on(pt_device *dev, pt_net *net, pt_act_storage a)
{
    pt_error err;
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
    pt_replica_options ro = {.precision = PT_PREC_BF16, .act_storage = a};
    pt_replica *r = NULL;
    CHECKF(pt_replica_create_ex(net, dev, 4, &oc, 3, &ro, &r, &err) == PT_OK, "%s", err.msg);
    if (!r) return -1;
    pt_act_plan p;
    pt_replica_act_plan(r, &p);
    pt_replica_free(r);
    return p.n16;
}

static void test_auto_stores_16bit_only_where_native(void)
{
    pt_error err;
    pt_net *net = NULL;
    CHECKF(pt_model_build("baseline", 3, 32, 32, 10, &net, &err) == PT_OK, "%s", err.msg);
    if (!net) return;
    const int native16 = n16_on(g_dev, net, PT_ACT_STORAGE_16BIT), native_auto = n16_on(g_dev, net, PT_ACT_STORAGE_AUTO);
    CHECKF(native16 > 0 && native_auto == native16, "native kernels: 16bit stores %d, auto %d", native16, native_auto);
    setenv("PT_CPU_ACT16", "copy", 1);
    pt_device_options dopt = {.threads = 2};
    pt_device *copies = NULL;
    const pt_status st = pt_device_open("cpu", 0, &dopt, &copies, &err);
    unsetenv("PT_CPU_ACT16");
    CHECKF(st == PT_OK, "%s", err.msg);
    if (copies) {
        const int copy16 = n16_on(copies, net, PT_ACT_STORAGE_16BIT), copy_auto = n16_on(copies, net, PT_ACT_STORAGE_AUTO);
        CHECKF(copy16 == native16 && copy_auto == 0, "through copies: 16bit stores %d (native %d), auto %d", copy16,
               native16, copy_auto);
        pt_device_close(copies);
    }
    pt_net_free(net);
}

int main(void)
{
    pt_error err;
    pt_device_options dopt = {.threads = 2};
    if (pt_device_open("cpu", 0, &dopt, &g_dev, &err) != PT_OK) {
        fprintf(stderr, "cpu device: %s\n", err.msg);
        return 1;
    }
    RUN(test_bf16_plan_of_baseline_and_resnet18);
    RUN(test_activation_bytes_shrink_by_the_16bit_tensors);
    RUN(test_fp32_and_tf32_store_fp32);
    RUN(test_bf16_training_near_fp32_storage);
    RUN(test_fp16_training_with_loss_scaling_near_fp32_storage);
    RUN(test_check_names_backend_kind_and_operand);
    RUN(test_auto_stores_16bit_only_where_native);
    pt_device_close(g_dev);
    TEST_EXIT();
}
