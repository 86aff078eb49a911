/* The workspace sized after the device has chosen its algorithms (pt_replica_fit_workspace,
 * pt_group_fit_workspace): a device like cuDNN's, which asks for room for several candidate
 * algorithms until a convolution shape has run once and then only for the chosen one, is
 * modelled by the cpu backend with a workspace_size that adds EXTRA bytes for a convolution
 * shape not yet run. After a fit the workspace shrinks by that much, the old one given back
 * before the new one is taken (the peak never holds both); training and evaluation after
 * it are bitwise those of a replica that was never fitted; a batch size first seen after the
 * fit grows the workspace again (also in the middle of a group step with synchronised
 * BatchNorm, whose statistics then move); and a device whose need does not change keeps its
 * arena. The trainer fits after the first epoch unless told to keep the workspace
 * (pt_train_options.keep_workspace, --fit-workspace off): then it stays as created, and the run
 * ends with the same weights. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/group.h"
#include "polytrain/polytrain.h"
#include "core/rng.h"
#include "polytrain/models.h"
#include "pt_test.h"

enum { B = 8, C = 1, H = 16, W = 16, K = 10 };
#define EXTRA ((size_t)3 << 20)

/* ---- the cpu backend, with an unmeasured convolution shape asking for EXTRA more ---- */

typedef struct shape_key {
    int kind, stride, pad;
    int64_t dim[3][4];
} shape_key;

static shape_key g_run[512];
static int g_nrun;
static const pt_backend_iface *g_cpu;
static pt_backend_iface g_fake;

static int is_conv(pt_op_kind k)
{
    return k == PT_OP_CONV2D_FWD || k == PT_OP_CONV2D_BWD_DATA || k == PT_OP_CONV2D_BWD_FILTER;
}

static shape_key key_of(const pt_op *op)
{
    shape_key k;
    memset(&k, 0, sizeof k);
    k.kind = (int)op->kind;
    k.stride = op->p.conv.stride;
    k.pad = op->p.conv.pad;
    for (int i = 0; i < 3 && i < op->nt; i++)
        for (int d = 0; d < op->t[i].ndim; d++) k.dim[i][d] = op->t[i].dim[d];
    return k;
}

static int has_run(const pt_op *op)
{
    const shape_key k = key_of(op);
    for (int i = 0; i < g_nrun; i++)
        if (memcmp(&g_run[i], &k, sizeof k) == 0) return 1;
    return 0;
}

static size_t fake_workspace(void *ctx, const pt_op *op)
{
    const size_t w = g_cpu->workspace_size(ctx, op);
    return is_conv(op->kind) && !has_run(op) ? w + EXTRA : w;
}

static pt_status fake_run(void *ctx, const pt_op *op, pt_error *err)
{
    PT_TRY(g_cpu->run(ctx, op, err));
    if (is_conv(op->kind) && !has_run(op) && g_nrun < (int)(sizeof g_run / sizeof g_run[0]))
        g_run[g_nrun++] = key_of(op);
    return PT_OK;
}

/* Device d of the cpu backend, as the fake (measuring) device or as itself. */
static pt_device *open_dev(int index, int fake, pt_device **cpu_out)
{
    pt_error err;
    pt_device_options o = {.threads = 1};
    pt_device *cpu = NULL;
    if (pt_device_open("cpu", index, &o, &cpu, &err) != PT_OK &&
        pt_device_open("cpu", 0, &o, &cpu, &err) != PT_OK) /* a one-core machine: device 0 again */
        return NULL;
    *cpu_out = cpu;
    if (!fake) return cpu;
    g_cpu = cpu->be;
    g_fake = *g_cpu;
    g_fake.name = "cpu-measuring";
    g_fake.workspace_size = fake_workspace;
    g_fake.run = fake_run;
    pt_device *d = malloc(sizeof *d);
    if (!d) return NULL;
    *d = *cpu;
    d->be = &g_fake;
    return d;
}

static void close_dev(pt_device *d, pt_device *cpu)
{
    if (d != cpu) free(d);
    pt_device_close(cpu);
}

static float g_x[2 * B * C * H * W];
static int32_t g_y[2 * B];

static void make_batch(uint64_t seed)
{
    for (int i = 0; i < 2 * B * C * H * W; i++) g_x[i] = pt_rng_normal(seed, PT_RNG_SPLIT, 0, (uint64_t)i, 0);
    for (int i = 0; i < 2 * B; i++) g_y[i] = (int32_t)((i * 7 + (int)seed) % K);
}

/* One training step of n samples and an evaluation of m; the logits of both. */
static int step(pt_replica *r, int n, int m, int64_t s, float *logits_train, float *logits_eval)
{
    pt_error err;
    float loss[B];
    int ok = pt_replica_forward_backward(r, g_x, g_y, n, 0, s, 1.0f / (float)n, logits_train, loss, &err) == PT_OK;
    ok = ok && pt_replica_update(r, 0.05f, s + 1, &err) == PT_OK;
    ok = ok && pt_replica_eval(r, g_x + B * C * H * W, g_y + B, m, logits_eval, loss, &err) == PT_OK;
    if (!ok) printf("  step %lld (n %d, eval %d): %s\n", (long long)s, n, m, err.msg);
    return ok;
}

static int same_state(pt_replica *a, pt_replica *b)
{
    pt_error err;
    const int64_t np = pt_replica_param_region(a), nb = pt_replica_buffer_region(a);
    const int slots = pt_replica_opt_slots(a);
    float *pa = malloc((size_t)(np * (1 + slots) + nb) * sizeof(float) * 2);
    if (!pa) return 0;
    float *ba = pa + np, *oa = ba + nb, *pb = oa + np * slots, *bb = pb + np, *ob = bb + nb;
    int ok = pt_replica_read_state(a, pa, ba, slots ? oa : NULL, &err) == PT_OK &&
             pt_replica_read_state(b, pb, bb, slots ? ob : NULL, &err) == PT_OK;
    ok = ok && memcmp(pa, pb, (size_t)(np * (1 + slots) + nb) * sizeof(float)) == 0;
    free(pa);
    return ok;
}

static void a_measuring_device_gets_a_smaller_workspace_and_the_same_results(void)
{
    pt_error err;
    g_nrun = 0;
    pt_device *cpu_a = NULL, *cpu_b = NULL;
    pt_device *fa = open_dev(0, 1, &cpu_a), *fb = open_dev(0, 1, &cpu_b);
    pt_net *net = NULL;
    CHECK(fa && fb && pt_model_build("resnet18", C, H, W, K, &net, &err) == PT_OK);
    if (!fa || !fb || !net) return;
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_ADAMW);
    pt_replica *fit = NULL, *ref = NULL;
    CHECK(pt_replica_create(net, fa, B, &oc, 5, &fit, &err) == PT_OK);
    CHECK(pt_replica_create(net, fb, B, &oc, 5, &ref, &err) == PT_OK);
    if (!fit || !ref) return;
    CHECK(pt_replica_init_params(fit, 5, &err) == PT_OK && pt_replica_init_params(ref, 5, &err) == PT_OK);
    make_batch(1);
    const size_t created = pt_replica_workspace_bytes(fit), dev_created = pt_replica_device_bytes(fit);
    CHECKF(created >= EXTRA, "workspace %zu at creation holds the candidates' room", created);
    static float la[B * K], lb[B * K], ea[B * K], eb[B * K];
    /* a run's batch sizes: full and a short last one, for training and evaluation */
    int64_t s = 0;
    CHECK(step(fit, B, B, s, la, ea) && step(ref, B, B, s, lb, eb));
    s++;
    CHECK(step(fit, 3, 5, s, la, ea) && step(ref, 3, 5, s, lb, eb));
    s++;
    size_t before = 0, after = 0;
    CHECKF(pt_replica_fit_workspace(fit, &before, &after, &err) == PT_OK, "%s", err.msg);
    CHECKF(before == created && after + EXTRA <= before && after == pt_replica_workspace_bytes(fit),
           "workspace %zu -> %zu (the candidates' %zu bytes gone)", before, after, (size_t)EXTRA);
    CHECKF(pt_replica_device_bytes(fit) + EXTRA <= dev_created, "device bytes %zu -> %zu", dev_created,
           pt_replica_device_bytes(fit));
    /* the old workspace was given back before the new one was taken: never both at once */
    CHECKF(pt_replica_peak_bytes(fit) == dev_created, "peak %zu after the fit, %zu held at creation",
           pt_replica_peak_bytes(fit), dev_created);
    printf("  resnet18 b%d: workspace %.2f -> %.2f MiB after the fit\n", B, before / 1048576.0, after / 1048576.0);
    /* a second fit finds nothing to change */
    size_t b2 = 0, a2 = 0;
    CHECK(pt_replica_fit_workspace(fit, &b2, &a2, &err) == PT_OK && b2 == after && a2 == after);
    /* the same steps on both from here, the short batch sizes included: bitwise equal */
    int same = 1;
    const int ns[][2] = {{B, B}, {3, 5}, {B, 5}, {3, B}};
    for (int i = 0; i < 4; i++, s++) {
        CHECK(step(fit, ns[i][0], ns[i][1], s, la, ea) && step(ref, ns[i][0], ns[i][1], s, lb, eb));
        same &= memcmp(la, lb, sizeof(float) * (size_t)ns[i][0] * K) == 0 &&
                memcmp(ea, eb, sizeof(float) * (size_t)ns[i][1] * K) == 0;
    }
    CHECKF(same, "logits after the fit differ from the unfitted replica's");
    CHECKF(same_state(fit, ref), "parameters, optimizer state or BN buffers differ after the fit");
    CHECKF(pt_replica_workspace_bytes(fit) == after, "no growth for sizes already run (%zu)",
           pt_replica_workspace_bytes(fit));
    /* a batch size not run before the fit: its shapes ask for the candidates' room again */
    CHECK(step(fit, 2, 2, s, la, ea) && step(ref, 2, 2, s, lb, eb));
    s++;
    CHECKF(pt_replica_workspace_bytes(fit) > after && pt_replica_workspace_bytes(fit) >= EXTRA,
           "workspace grew for a new size: %zu -> %zu", after, pt_replica_workspace_bytes(fit));
    CHECK(memcmp(la, lb, sizeof(float) * 2 * K) == 0 && memcmp(ea, eb, sizeof(float) * 2 * K) == 0);
    const size_t grown = pt_replica_device_bytes(fit), most = grown > dev_created ? grown : dev_created;
    CHECKF(pt_replica_peak_bytes(fit) == most, "peak %zu after growing to %zu (created %zu)",
           pt_replica_peak_bytes(fit), grown, dev_created);
    CHECK(step(fit, B, B, s, la, ea) && step(ref, B, B, s, lb, eb));
    CHECKF(same_state(fit, ref), "state differs after the workspace grew");
    pt_replica_free(fit);
    pt_replica_free(ref);
    pt_net_free(net);
    close_dev(fa, cpu_a);
    close_dev(fb, cpu_b);
}

/* The cpu backend's own need does not depend on having run: a fit after the run's sizes keeps
 * at most what creation planned, and results are unchanged. */
static void a_plain_cpu_replica_is_fitted_to_its_batch_sizes(void)
{
    pt_error err;
    pt_device *cpu = NULL, *cpu2 = NULL;
    pt_device *d = open_dev(0, 0, &cpu), *d2 = open_dev(0, 0, &cpu2);
    pt_net *net = NULL;
    CHECKF(d && d2 && pt_model_build("baseline", C, H, W, K, &net, &err) == PT_OK, "%s", err.msg);
    if (!d || !d2 || !net) return;
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
    pt_replica *r = NULL, *ref = NULL;
    CHECK(pt_replica_create(net, d, B, &oc, 2, &r, &err) == PT_OK && pt_replica_create(net, d2, B, &oc, 2, &ref, &err) == PT_OK);
    if (!r || !ref) return;
    CHECK(pt_replica_init_params(r, 2, &err) == PT_OK && pt_replica_init_params(ref, 2, &err) == PT_OK);
    make_batch(2);
    static float la[B * K], lb[B * K], ea[B * K], eb[B * K];
    /* nothing run yet: nothing to fit to */
    size_t before = 0, after = 0;
    CHECK(pt_replica_fit_workspace(r, &before, &after, &err) == PT_OK && before == after);
    CHECK(step(r, B, 4, 0, la, ea) && step(ref, B, 4, 0, lb, eb));
    CHECK(pt_replica_fit_workspace(r, &before, &after, &err) == PT_OK);
    CHECKF(after <= before, "workspace %zu -> %zu", before, after);
    for (int64_t s = 1; s < 3; s++) CHECK(step(r, B, 4, s, la, ea) && step(ref, B, 4, s, lb, eb));
    CHECK(memcmp(la, lb, sizeof la) == 0 && memcmp(ea, eb, sizeof(float) * 4 * K) == 0);
    CHECK(same_state(r, ref));
    pt_replica_free(r);
    pt_replica_free(ref);
    pt_net_free(net);
    close_dev(d, cpu);
    close_dev(d2, cpu2);
}

/* Two measuring devices in a group with synchronised BatchNorm: fitted between steps, and grown
 * at the start of a step by a new batch size (the statistics the group sums move with the
 * arena); every step equal to a group of plain cpu devices, replicas identical. */
static int group_step(pt_group *g, int n0, int n1, int64_t s, float (*logits)[B * K])
{
    pt_error err;
    static float loss[2][B];
    pt_group_slice sl[2];
    const int n[2] = {n0, n1};
    for (int d = 0; d < 2; d++) {
        memset(&sl[d], 0, sizeof sl[d]);
        sl[d].x = g_x + (size_t)d * B * C * H * W;
        sl[d].y = g_y + d * B;
        sl[d].n = n[d];
        sl[d].sample_base = d * B;
        sl[d].logits = logits[d];
        sl[d].losses = loss[d];
    }
    int ok = pt_group_step(g, sl, n0 + n1, s, 1.0f / (float)(n0 + n1), 0.05f, 0.9f, &err) == PT_OK &&
             pt_group_eval(g, sl, &err) == PT_OK;
    if (!ok) printf("  group step %lld: %s\n", (long long)s, err.msg);
    return ok;
}

static void a_group_with_sync_bn_is_fitted_and_grows_mid_step(void)
{
    pt_error err;
    g_nrun = 0;
    pt_device *cpus[4] = {NULL, NULL, NULL, NULL}, *dev[4];
    for (int d = 0; d < 4; d++) dev[d] = open_dev(d % 2, d < 2, &cpus[d]);
    pt_net *net = NULL;
    CHECK(pt_model_build("resnet18", C, H, W, K, &net, &err) == PT_OK);
    if (!net || !dev[0] || !dev[1] || !dev[2] || !dev[3]) return;
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
    pt_replica_options ro = {.sync_bn = 1};
    pt_replica *rep[4] = {NULL, NULL, NULL, NULL};
    for (int d = 0; d < 4; d++) CHECK(pt_replica_create_ex(net, dev[d], B, &oc, 3, &ro, &rep[d], &err) == PT_OK);
    if (!rep[0] || !rep[1] || !rep[2] || !rep[3]) return;
    pt_group *g = NULL, *ref = NULL; /* fitted (measuring devices), reference (plain cpu) */
    CHECKF(pt_group_create(rep, 2, NULL, 64 * 1024, 0, &g, &err) == PT_OK, "%s", err.msg);
    CHECKF(pt_group_create(rep + 2, 2, NULL, 64 * 1024, 0, &ref, &err) == PT_OK, "%s", err.msg);
    if (!g || !ref) return;
    for (int d = 0; d < 4; d++) CHECK(pt_replica_init_params(rep[d], 3, &err) == PT_OK);
    make_batch(3);
    static float la[2][B * K], lb[2][B * K];
    int64_t s = 0;
    CHECK(group_step(g, B, B, s, la) && group_step(ref, B, B, s, lb));
    s++;
    size_t before = 0, after = 0;
    CHECKF(pt_group_fit_workspace(g, &before, &after, &err) == PT_OK, "%s", err.msg);
    CHECKF(after + EXTRA <= before, "group workspace %zu -> %zu", before, after);
    int same = 1;
    /* (5, 3) is new to both devices: each grows its arena when the step begins */
    const int ns[][2] = {{B, B}, {5, 3}, {B, B}, {5, 3}};
    for (int i = 0; i < 4; i++, s++) {
        CHECK(group_step(g, ns[i][0], ns[i][1], s, la) && group_step(ref, ns[i][0], ns[i][1], s, lb));
        same &= memcmp(la[0], lb[0], sizeof(float) * (size_t)ns[i][0] * K) == 0 &&
                memcmp(la[1], lb[1], sizeof(float) * (size_t)ns[i][1] * K) == 0;
    }
    CHECKF(same, "group logits after the fit (and the growth) differ from the reference group's");
    CHECKF(pt_replica_workspace_bytes(rep[0]) > after, "device 0 grew for the new size: %zu",
           pt_replica_workspace_bytes(rep[0]));
    CHECK(same_state(rep[0], rep[2]) && same_state(rep[1], rep[3]));
    CHECKF(pt_group_check_identical(g, 1, &err) == PT_OK, "%s", err.msg);
    pt_group_free(g);
    pt_group_free(ref);
    for (int d = 0; d < 4; d++) pt_replica_free(rep[d]);
    pt_net_free(net);
    for (int d = 0; d < 4; d++) close_dev(dev[d], cpus[d]);
}

/* ---- the trainer: fitted after epoch 1, or kept as created ---- */

/* Batches of up to B samples in order from g_x: n samples in all (the last batch short). */
typedef struct fixed_source {
    int n, pos, next;
} fixed_source;

static int64_t fs_samples(void *ctx) { return ((fixed_source *)ctx)->n; }
static int64_t fs_batches(void *ctx) { return (((fixed_source *)ctx)->n + B - 1) / B; }
static pt_status fs_start(void *ctx, int64_t epoch, pt_error *err)
{
    (void)epoch, (void)err;
    fixed_source *f = ctx;
    f->pos = f->next = 0;
    return PT_OK;
}
static pt_status fs_next(void *ctx, pt_batch *out, pt_error *err)
{
    (void)err;
    fixed_source *f = ctx;
    const int n = f->n - f->pos < B ? f->n - f->pos : B;
    out->x = g_x + (size_t)f->pos * C * H * W;
    out->y = g_y + f->pos;
    out->n = n;
    out->batch = f->next;
    f->pos += n;
    if (n) f->next++;
    return PT_OK;
}

static pt_epoch_metrics g_epochs[4];
static int g_nepochs;
static void on_epoch(void *user, const pt_epoch_metrics *m)
{
    (void)user;
    if (g_nepochs < 4) g_epochs[g_nepochs] = *m;
    g_nepochs++;
}

/* Two epochs on a measuring device; *created is the workspace the replica was created with. */
static pt_replica *train_two_epochs(pt_net *net, pt_device *dev, const char *out, int keep, size_t *created)
{
    pt_error err;
    g_nrun = 0; /* a fresh device: no convolution shape measured yet */
    g_nepochs = 0;
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
    oc.momentum = 0.9f;
    pt_replica *r = NULL;
    CHECKF(pt_replica_create(net, dev, B, &oc, 4, &r, &err) == PT_OK, "%s", err.msg);
    if (!r) return NULL;
    CHECK(pt_replica_init_params(r, 4, &err) == PT_OK);
    *created = pt_replica_workspace_bytes(r);
    static char *names[K] = {"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"};
    pt_model_meta meta;
    memset(&meta, 0, sizeof meta);
    snprintf(meta.model, sizeof meta.model, "resnet18");
    meta.in_channels = C;
    meta.height = H;
    meta.width = W;
    meta.num_classes = K;
    meta.std[0] = 1.0f;
    meta.class_names = names;
    fixed_source tr = {2 * B - 3, 0, 0}, va = {B + 2, 0, 0};
    const pt_batch_source ts = {&tr, fs_samples, fs_batches, fs_start, fs_next, NULL, NULL};
    const pt_batch_source vs = {&va, fs_samples, fs_batches, fs_start, fs_next, NULL, NULL};
    pt_train_options o;
    memset(&o, 0, sizeof o);
    o.epochs = 2;
    o.batch_per_device = B;
    o.lr = 0.05;
    o.schedule = PT_SCHED_CONSTANT;
    o.seed = 4;
    o.out_dir = out;
    o.config_json = "{\"test\":true}";
    o.keep_workspace = keep;
    pt_trainer *t = NULL;
    CHECKF(pt_trainer_create(&r, 1, &meta, ts, vs, &o, &t, &err) == PT_OK, "%s", err.msg);
    if (t) {
        pt_train_callbacks cb;
        memset(&cb, 0, sizeof cb);
        cb.on_epoch = on_epoch;
        CHECKF(pt_trainer_run(t, &cb, &err) == PT_OK, "%s", err.msg);
        pt_trainer_free(t);
    }
    CHECKF(g_nepochs == 2, "%d epochs reported", g_nepochs);
    return r;
}

static void the_trainer_fits_after_the_first_epoch_unless_told_to_keep(void)
{
    pt_error err;
    char root[256], out_fit[300], out_keep[300];
    const char *base = getenv("PT_TEST_TMP");
    snprintf(root, sizeof root, "%s/test_workspace_fit.%ld", base && base[0] ? base : "/tmp", (long)getpid());
    snprintf(out_fit, sizeof out_fit, "%s/fit", root);
    snprintf(out_keep, sizeof out_keep, "%s/keep", root);
    CHECKF(pt_remove_tree(root, &err) == PT_OK && pt_mkdir_p(root, &err) == PT_OK, "%s", err.msg);
    pt_device *cpu_a = NULL, *cpu_b = NULL;
    pt_device *fa = open_dev(0, 1, &cpu_a), *fb = open_dev(0, 1, &cpu_b);
    pt_net *net = NULL;
    CHECK(fa && fb && pt_model_build("resnet18", C, H, W, K, &net, &err) == PT_OK);
    if (!fa || !fb || !net) return;
    make_batch(5);
    size_t created_fit = 0, created_keep = 0;
    pt_replica *fit = train_two_epochs(net, fa, out_fit, 0, &created_fit);
    const pt_epoch_metrics fit1 = g_epochs[0], fit2 = g_epochs[1];
    pt_replica *keep = train_two_epochs(net, fb, out_keep, 1, &created_keep);
    const pt_epoch_metrics keep1 = g_epochs[0];
    if (!fit || !keep) return;
    CHECKF(created_fit == created_keep && created_fit >= EXTRA, "created with %zu and %zu bytes", created_fit,
           created_keep);
    CHECKF(fit1.ws_before == created_fit && fit1.ws_after + EXTRA <= fit1.ws_before &&
               pt_replica_workspace_bytes(fit) == fit1.ws_after,
           "fitted run: epoch 1 workspace %zu -> %zu, now %zu", fit1.ws_before, fit1.ws_after,
           pt_replica_workspace_bytes(fit));
    CHECKF(fit2.ws_before == 0 && fit2.ws_after == 0, "fitted once, in epoch 1 only (epoch 2: %zu -> %zu)",
           fit2.ws_before, fit2.ws_after);
    CHECKF(keep1.ws_before == 0 && keep1.ws_after == 0 && pt_replica_workspace_bytes(keep) == created_keep,
           "kept run: epoch 1 reports %zu -> %zu, workspace now %zu (created %zu)", keep1.ws_before, keep1.ws_after,
           pt_replica_workspace_bytes(keep), created_keep);
    CHECKF(keep1.device_bytes >= fit1.device_bytes + EXTRA, "device bytes kept %zu, fitted %zu",
           keep1.device_bytes, fit1.device_bytes);
    printf("  resnet18 b%d, 2 epochs: workspace %.2f MiB fitted to %.2f, or kept at %.2f\n", B,
           fit1.ws_before / 1048576.0, fit1.ws_after / 1048576.0, pt_replica_workspace_bytes(keep) / 1048576.0);
    CHECKF(same_state(fit, keep), "parameters, optimizer state or BN buffers differ between fitted and kept");
    pt_replica_free(fit);
    pt_replica_free(keep);
    pt_net_free(net);
    close_dev(fa, cpu_a);
    close_dev(fb, cpu_b);
    pt_remove_tree(root, &err);
}

int main(void)
{
    RUN(a_measuring_device_gets_a_smaller_workspace_and_the_same_results);
    RUN(a_plain_cpu_replica_is_fitted_to_its_batch_sizes);
    RUN(a_group_with_sync_bn_is_fitted_and_grows_mid_step);
    RUN(the_trainer_fits_after_the_first_epoch_unless_told_to_keep);
    TEST_EXIT();
}
