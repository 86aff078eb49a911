/* The training step allocates nothing (ARCHITECTURE.md, invariant 7): with malloc, calloc,
 * realloc and free wrapped at link time (tests/CMakeLists.txt), count the host allocations
 * polytrain makes during forward+backward, the optimizer update, an evaluation batch, a
 * short last batch and the loader's next batch, after one warm-up step; and the trainer's
 * steps that fetch and stage the next batch while they run. */
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "core/fileio.h"
#include "core/group.h"
#include "polytrain/polytrain.h"
#include "core/rng.h"
#include "polytrain/loader.h"
#include "polytrain/models.h"
#include "polytrain/source.h"
#include "polytrain/trainer.h"
#include "pt_test.h"

static volatile int g_counting;
static volatile long g_allocs;

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n)
{
    if (g_counting) g_allocs++;
    return __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t m)
{
    if (g_counting) g_allocs++;
    return __real_calloc(n, m);
}
void *__wrap_realloc(void *p, size_t n)
{
    if (g_counting) g_allocs++;
    return __real_realloc(p, n);
}

enum { B = 16, C = 1, H = 28, W = 28, K = 10 };

static void training_step_allocates_nothing_with(const char *model, pt_precision precision)
{
    pt_error err;
    pt_device *dev = NULL;
    pt_net *net = NULL;
    pt_replica *rep = NULL;
    CHECK(pt_device_open("cpu", 0, NULL, &dev, &err) == PT_OK);
    CHECKF(pt_model_build(model, C, H, W, K, &net, &err) == PT_OK, "%s: %s", model, err.msg);
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_ADAMW);
    g_allocs = 0;
    g_counting = 1;
    pt_replica_options ro = {.precision = precision};
    CHECK(dev && net && pt_replica_create_ex(net, dev, B, &oc, 1, &ro, &rep, &err) == PT_OK);
    g_counting = 0;
    /* Proof that the counting sees the library's allocations at all. */
    CHECKF(g_allocs > 0, "creating a replica made %ld counted allocations", g_allocs);
    if (!rep) return;
    pt_act_plan plan;
    pt_replica_act_plan(rep, &plan);
    /* bf16: activations in 16 bits, their float copies in the workspace planned at creation */
    CHECKF((plan.n16 > 0) == (precision == PT_PREC_BF16), "%s %s: %d 16-bit activations", model,
           pt_precision_name(precision), plan.n16);
    CHECK(pt_replica_init_params(rep, 1, &err) == PT_OK);
    static float x[B * C * H * W], logits[B * K], loss[B];
    static int32_t y[B];
    for (int i = 0; i < B * C * H * W; i++) x[i] = pt_rng_normal(3, PT_RNG_SPLIT, 0, (uint64_t)i, 0);
    for (int i = 0; i < B; i++) y[i] = i % K;
    /* Warm-up: the first step may initialise thread pools in the runtime. */
    CHECK(pt_replica_forward_backward(rep, x, y, B, 0, 0, 1.0f / B, logits, loss, &err) == PT_OK);
    CHECK(pt_replica_update(rep, 0.01f, 1, &err) == PT_OK);
    CHECK(pt_replica_forward_backward(rep, x, y, 5, 0, 1, 1.0f / 5, logits, loss, &err) == PT_OK);
    CHECK(pt_replica_eval(rep, x, y, 7, logits, loss, &err) == PT_OK);

    g_allocs = 0;
    g_counting = 1;
    int ok = 1;
    for (int step = 2; step < 5; step++) {
        ok &= pt_replica_forward_backward(rep, x, y, B, 0, step, 1.0f / B, logits, loss, &err) == PT_OK;
        pt_replica_set_momentum(rep, 0.9f);
        ok &= pt_replica_update(rep, 0.01f, step, &err) == PT_OK;
    }
    ok &= pt_replica_forward_backward(rep, x, y, 5, 0, 6, 1.0f / 5, logits, loss, &err) == PT_OK;
    ok &= pt_replica_eval(rep, x, y, B, logits, loss, &err) == PT_OK;
    ok &= pt_replica_eval(rep, x, y, 7, logits, loss, &err) == PT_OK;
    g_counting = 0;
    CHECKF(ok, "steps failed: %s", err.msg);
    CHECKF(g_allocs == 0, "%s: %ld host allocations during 5 training steps and 2 evaluations", model, g_allocs);
    pt_replica_free(rep);
    pt_net_free(net);
    pt_device_close(dev);
}

static void training_step_allocates_nothing(void) { training_step_allocates_nothing_with("resnet18", PT_PREC_FP32); }
static void bf16_storage_training_step_allocates_nothing(void)
{
    training_step_allocates_nothing_with("baseline", PT_PREC_BF16);
}
/* CBAM has every op SE has and more: shared linears, global max and channel pools. */
static void attention_training_step_allocates_nothing(void)
{
    training_step_allocates_nothing_with("cbam_resnet18", PT_PREC_FP32);
}

/* A replica that captures its parts (a cpu device emulating graphs and asynchronous input
 * copies): once captured, steps and evaluations are graph launches and allocate nothing. */
static void captured_steps_allocate_nothing(void)
{
    pt_error err;
    pt_device *dev = NULL;
    pt_net *net = NULL;
    pt_replica *rep = NULL;
    pt_device_options dopt = {.threads = 1, .emulate_graphs = 1};
    CHECK(pt_device_open("cpu", 0, &dopt, &dev, &err) == PT_OK);
    CHECKF(pt_model_build("baseline", C, H, W, K, &net, &err) == PT_OK, "%s", err.msg);
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
    CHECK(dev && net && pt_replica_create(net, dev, B, &oc, 1, &rep, &err) == PT_OK);
    if (!rep) return;
    CHECK(pt_replica_init_params(rep, 1, &err) == PT_OK);
    static float x[B * C * H * W], logits[B * K], loss[B];
    static int32_t y[B];
    for (int i = 0; i < B * C * H * W; i++) x[i] = pt_rng_normal(5, PT_RNG_SPLIT, 0, (uint64_t)i, 0);
    for (int i = 0; i < B; i++) y[i] = i % K;
    int ok = 1;
    /* warm-up: PT_GRAPH_WARMUP_STEPS runs op by op, then the captures */
    for (int step = 0; step <= PT_GRAPH_WARMUP_STEPS; step++) {
        ok &= pt_replica_forward_backward(rep, x, y, B, 0, step, 1.0f / B, logits, loss, &err) == PT_OK;
        ok &= pt_replica_update(rep, 0.01f, step + 1, &err) == PT_OK;
        ok &= pt_replica_eval(rep, x, y, B, logits, loss, &err) == PT_OK;
    }
    pt_graph_stats gs;
    pt_replica_graph_stats(rep, &gs);
    CHECKF(ok && gs.captures == 3, "warm-up: %s; %lld captures", err.msg, (long long)gs.captures);
    const int64_t launches0 = gs.launches;
    g_allocs = 0;
    g_counting = 1;
    for (int step = 10; step < 13; step++) {
        ok &= pt_replica_forward_backward(rep, x, y, B, 0, step, 1.0f / B, logits, loss, &err) == PT_OK;
        ok &= pt_replica_update(rep, 0.02f, step + 1, &err) == PT_OK;
        ok &= pt_replica_eval(rep, x, y, B, logits, loss, &err) == PT_OK;
    }
    g_counting = 0;
    pt_replica_graph_stats(rep, &gs);
    CHECKF(ok, "steps failed: %s", err.msg);
    CHECKF(gs.launches - launches0 == 9, "%lld graph launches in 3 steps and 3 evaluations",
           (long long)(gs.launches - launches0));
    CHECKF(g_allocs == 0, "%ld host allocations during 3 captured steps and evaluations", g_allocs);
    pt_replica_free(rep);
    pt_net_free(net);
    pt_device_close(dev);
}

/* The whole step as one part (a single-device group whose replica captures) with loss
 * scaling, clipping, the weight EMA and the next batch staged during each step: once
 * captured, a step is one launch and allocates nothing. */
static void whole_captured_steps_allocate_nothing(void)
{
    pt_error err;
    pt_device *dev = NULL;
    pt_net *net = NULL;
    pt_replica *rep = NULL;
    pt_group *g = NULL;
    pt_device_options dopt = {.threads = 1, .emulate_graphs = 1};
    CHECK(pt_device_open("cpu", 0, &dopt, &dev, &err) == PT_OK);
    CHECKF(pt_model_build("baseline", C, H, W, K, &net, &err) == PT_OK, "%s", err.msg);
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_ADAMW);
    CHECK(dev && net && pt_replica_create(net, dev, B, &oc, 1, &rep, &err) == PT_OK);
    if (!rep) return;
    CHECK(pt_replica_init_params(rep, 1, &err) == PT_OK && pt_replica_enable_ema(rep, &err) == PT_OK);
    CHECKF(pt_group_create(&rep, 1, NULL, 0, 1, &g, &err) == PT_OK, "%s", err.msg);
    if (!g) return;
    pt_group_set_clip(g, 1.0f);
    pt_group_set_ema(g, 0.99f);
    static float x[2][B * C * H * W], logits[B * K], loss[B];
    static int32_t y[2][B];
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < B * C * H * W; i++)
            x[k][i] = pt_rng_normal(5 + (uint64_t)k, PT_RNG_SPLIT, 0, (uint64_t)i, 0);
        for (int i = 0; i < B; i++) y[k][i] = (i + k) % K;
    }
    pt_group_slice s[2][1];
    for (int k = 0; k < 2; k++)
        s[k][0] = (pt_group_slice){.x = x[k], .y = y[k], .n = B, .logits = logits, .losses = loss};
    int ok = 1;
    /* step 0 (the EMA's first update is a copy: other ops), 1-2 warm-up, 3-4 one capture per
     * input slot */
    for (int step = 0; step < 5; step++) {
        pt_group_set_next(g, s[(step + 1) % 2]);
        pt_group_set_loss_scaling(g, 1.0f / 1024, step);
        ok &= pt_group_step(g, s[step % 2], B, step, 1024.0f / B, 0.01f, 0.9f, &err) == PT_OK;
    }
    pt_graph_stats gs;
    pt_replica_graph_stats(rep, &gs);
    CHECKF(ok && gs.captures == 2, "warm-up: %s; %lld captures (one per input slot)", err.msg, (long long)gs.captures);
    const int64_t launches0 = gs.launches;
    g_allocs = 0;
    g_counting = 1;
    for (int step = 5; step < 8; step++) {
        pt_group_set_next(g, s[(step + 1) % 2]);
        pt_group_set_loss_scaling(g, 1.0f / 1024, step);
        ok &= pt_group_step(g, s[step % 2], B, step, 1024.0f / B, 0.01f, 0.9f, &err) == PT_OK;
    }
    g_counting = 0;
    pt_replica_graph_stats(rep, &gs);
    CHECKF(ok, "steps failed: %s", err.msg);
    CHECKF(gs.launches - launches0 == 3, "%lld graph launches in 3 whole steps", (long long)(gs.launches - launches0));
    CHECKF(g_allocs == 0, "%ld host allocations during 3 captured whole steps", g_allocs);
    pt_group_free(g);
    pt_replica_free(rep);
    pt_net_free(net);
    pt_device_close(dev);
}

/* Two cpu devices (device 0 twice on a one-core machine), baseline replicas with synchronised
 * BatchNorm in a group of 64 KiB buckets, and one batch of B per device. */
typedef struct two_devices {
    pt_device *dev[2];
    pt_net *net;
    pt_replica *rep[2];
    pt_group *g;
    pt_group_slice s[2];
} two_devices;

static int two_devices_open(two_devices *t, int use_collectives)
{
    pt_error err;
    memset(t, 0, sizeof *t);
    pt_device_options dopt = {.threads = 1};
    CHECK(pt_device_open("cpu", 0, &dopt, &t->dev[0], &err) == PT_OK);
    if (pt_device_open("cpu", 1, &dopt, &t->dev[1], &err) != PT_OK)
        CHECK(pt_device_open("cpu", 0, &dopt, &t->dev[1], &err) == PT_OK);
    CHECK(pt_model_build("baseline", C, H, W, K, &t->net, &err) == PT_OK);
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
    pt_replica_options ro = {.sync_bn = 1};
    for (int d = 0; d < 2; d++)
        CHECK(t->dev[d] && t->net && pt_replica_create_ex(t->net, t->dev[d], B, &oc, 1, &ro, &t->rep[d], &err) == PT_OK);
    if (!t->rep[0] || !t->rep[1]) return 0;
    CHECK(pt_group_create(t->rep, 2, NULL, 64 * 1024, use_collectives, &t->g, &err) == PT_OK);
    if (!t->g) return 0;
    for (int d = 0; d < 2; d++) CHECK(pt_replica_init_params(t->rep[d], 1, &err) == PT_OK);
    static float x[2 * B * C * H * W], logits[2][B * K], loss[2][B];
    static int32_t y[2 * B];
    for (int i = 0; i < 2 * B * C * H * W; i++) x[i] = pt_rng_normal(3, PT_RNG_SPLIT, 0, (uint64_t)i, 0);
    for (int i = 0; i < 2 * B; i++) y[i] = i % K;
    for (int d = 0; d < 2; d++) {
        memset(&t->s[d], 0, sizeof t->s[d]);
        t->s[d].x = x + (size_t)d * B * C * H * W;
        t->s[d].y = y + d * B;
        t->s[d].n = B;
        t->s[d].sample_base = d * B;
        t->s[d].logits = logits[d];
        t->s[d].losses = loss[d];
    }
    return 1;
}

static void two_devices_close(two_devices *t)
{
    if (t->g) pt_group_free(t->g);
    for (int d = 0; d < 2; d++) pt_replica_free(t->rep[d]);
    pt_net_free(t->net);
    for (int d = 0; d < 2; d++)
        if (t->dev[d]) pt_device_close(t->dev[d]);
}

/* The same for a device group of two cpu devices with synchronised BatchNorm: worker
 * threads, bucketed gradient reduction and statistics reductions, an uneven batch that
 * leaves device 1 idle, and evaluation. */
static void group_step_allocates_nothing(void)
{
    pt_error err;
    two_devices t;
    if (!two_devices_open(&t, 1)) {
        two_devices_close(&t);
        return;
    }
    pt_group *g = t.g;
    pt_group_slice *s = t.s;
    CHECKF(pt_group_buckets(g) > 1, "%d buckets", pt_group_buckets(g));
    CHECKF(pt_group_step(g, s, 2 * B, 0, 0.5f / B, 0.01f, 0.9f, &err) == PT_OK, "%s", err.msg);
    CHECKF(pt_group_eval(g, s, &err) == PT_OK, "%s", err.msg);
    g_allocs = 0;
    g_counting = 1;
    int ok = 1;
    for (int step = 1; step < 4; step++) ok &= pt_group_step(g, s, 2 * B, step, 0.5f / B, 0.01f, 0.9f, &err) == PT_OK;
    s[0].n = 3; /* an uneven last batch: device 1 has nothing */
    s[1].n = 0;
    ok &= pt_group_step(g, s, 3, 4, 1.0f / 3, 0.01f, 0.9f, &err) == PT_OK;
    ok &= pt_group_eval(g, s, &err) == PT_OK;
    g_counting = 0;
    CHECKF(ok, "group steps failed: %s", err.msg);
    CHECKF(g_allocs == 0, "%ld host allocations during 4 group steps and an evaluation", g_allocs);
    CHECKF(pt_group_check_identical(g, 1, &err) == PT_OK, "%s", err.msg);
    two_devices_close(&t);
}

/* --trace: the traced step records into slots allocated before it, so it allocates nothing
 * either (two devices, sync-BN and host reductions: every kind of traced event); the file,
 * built after the step, holds the ops and the reductions. */
static void traced_group_step_allocates_nothing(void)
{
    pt_error err;
    pt_trace *tr = NULL;
    two_devices t;
    if (!two_devices_open(&t, 0)) {
        two_devices_close(&t);
        return;
    }
    pt_group *g = t.g;
    pt_group_slice *s = t.s;
    CHECK(pt_trace_create(2, 1024, 256, &tr, &err) == PT_OK);
    if (!tr) {
        two_devices_close(&t);
        return;
    }
    CHECKF(pt_group_step(g, s, 2 * B, 0, 0.5f / B, 0.01f, 0.9f, &err) == PT_OK, "%s", err.msg);
    pt_trace_start(tr);
    pt_group_set_trace(g, tr);
    g_allocs = 0;
    g_counting = 1;
    int ok = pt_group_step(g, s, 2 * B, 1, 0.5f / B, 0.01f, 0.9f, &err) == PT_OK;
    g_counting = 0;
    pt_group_set_trace(g, NULL);
    CHECKF(ok, "traced step failed: %s", err.msg);
    CHECKF(g_allocs == 0, "%ld host allocations during a traced group step", g_allocs);
    char path[512];
    snprintf(path, sizeof path, "%s/no_alloc_trace.%ld.json", getenv("PT_TEST_TMP") ? getenv("PT_TEST_TMP") : "/tmp",
             (long)getpid());
    pt_mkdir_p(getenv("PT_TEST_TMP") ? getenv("PT_TEST_TMP") : "/tmp", &err);
    CHECKF(pt_trace_write(tr, path, "\"step\":1", &err) == PT_OK, "%s", err.msg);
    void *text = NULL;
    size_t size = 0;
    CHECKF(pt_read_file(path, (size_t)1 << 26, &text, &size, &err) == PT_OK, "%s", err.msg);
    CHECK(text && strstr(text, "\"conv2d_bwd_filter\"") && strstr(text, "\"allreduce_bucket\"") &&
          strstr(text, "\"allreduce_bn_stats\"") && strstr(text, "\"dropped_events\":0"));
    free(text);
    unlink(path);
    pt_trace_free(tr);
    two_devices_close(&t);
}

/* n samples of C x H x W bytes (pixels as `fill` says: 0 for zeros, else a fixed pattern),
 * labels cycling through the K classes. */
static void synthetic_dataset(pt_dataset *ds, int n, int fill)
{
    memset(ds, 0, sizeof *ds);
    snprintf(ds->name, sizeof ds->name, "synthetic");
    ds->count = n;
    ds->channels = C;
    ds->height = H;
    ds->width = W;
    ds->num_classes = K;
    ds->pixels = calloc((size_t)n * C * H * W, 1);
    ds->labels = calloc((size_t)n, sizeof(int32_t));
    ds->mean[0] = 0.5f;
    ds->std[0] = 0.25f;
    for (int i = 0; i < n; i++) ds->labels[i] = i % K;
    if (fill && ds->pixels)
        for (size_t i = 0; i < (size_t)n * C * H * W; i++) ds->pixels[i] = (uint8_t)(i * 7 % 251);
}

static void loader_next_allocates_nothing(void)
{
    enum { N = 300 };
    pt_dataset ds;
    synthetic_dataset(&ds, N, 0);
    for (int prefetch = 0; prefetch < 2; prefetch++) {
        pt_loader ld;
        memset(&ld, 0, sizeof ld);
        pt_loader_options lo;
        memset(&lo, 0, sizeof lo);
        lo.batch_size = 64;
        lo.shuffle = 1;
        lo.flip = 1;
        lo.crop_pad = 2;
        lo.prefetch = prefetch;
        pt_error err;
        CHECK(pt_loader_init(&ld, &ds, &lo, &err) == PT_OK);
        CHECK(pt_loader_start_epoch(&ld, 0, &err) == PT_OK);
        pt_host_batch hb;
        CHECK(pt_loader_next(&ld, &hb, &err) == PT_OK);
        g_allocs = 0;
        g_counting = 1;
        int batches = 1;
        while (pt_loader_next(&ld, &hb, &err) == PT_OK && hb.n > 0) batches++;
        g_counting = 0;
        CHECKF(batches == 5, "prefetch %d: %d batches of 300 samples at 64", prefetch, batches);
        CHECKF(g_allocs == 0, "prefetch %d: %ld host allocations while iterating an epoch", prefetch, g_allocs);
        pt_loader_free(&ld);
    }
    free(ds.pixels);
    free(ds.labels);
}

/* The trainer with pinned input on ndev cpu devices emulating graphs: steps 6..10 of an epoch
 * (each fetching the loader's next batch while it runs and staging each device's part)
 * allocate nothing. */
static int64_t g_count_from, g_count_to;
static int g_window; /* 1: counting began, 2: and ended */
static void count_steps(void *user, int64_t step, int64_t epoch, double loss, double lr)
{
    (void)user, (void)epoch, (void)loss, (void)lr;
    if (step == g_count_from) g_counting = 1, g_window = 1;
    if (step == g_count_to && g_window == 1) g_counting = 0, g_window = 2;
}

static void staging_trainer_steps_allocate_nothing_on(int ndev)
{
    const int N = 14 * B * ndev;
    pt_dataset ds, vds; /* the evaluation: one batch */
    synthetic_dataset(&ds, N, 1);
    synthetic_dataset(&vds, B * ndev, 2);
    pt_error err;
    pt_device *dev[2] = {NULL, NULL};
    pt_net *net = NULL;
    pt_replica *rep[2] = {NULL, NULL};
    pt_trainer *t = NULL;
    pt_loader tl, vl;
    memset(&tl, 0, sizeof tl);
    memset(&vl, 0, sizeof vl);
    pt_loader_options lo;
    memset(&lo, 0, sizeof lo);
    lo.batch_size = B * ndev;
    lo.shuffle = 1;
    lo.prefetch = 1;
    pt_device_options dopt = {.threads = 1, .emulate_graphs = 1};
    pt_replica_options ro = {.pinned_input = PT_SWITCH_ON};
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
    CHECK(pt_loader_init(&tl, &ds, &lo, &err) == PT_OK);
    lo.shuffle = 0;
    CHECK(pt_loader_init(&vl, &vds, &lo, &err) == PT_OK);
    CHECKF(pt_model_build("baseline", C, H, W, K, &net, &err) == PT_OK, "%s", err.msg);
    for (int d = 0; d < ndev; d++) {
        CHECK(pt_device_open("cpu", 0, &dopt, &dev[d], &err) == PT_OK);
        CHECKF(dev[d] && net && pt_replica_create_ex(net, dev[d], B, &oc, 1, &ro, &rep[d], &err) == PT_OK, "%s",
               err.msg);
        if (!rep[d]) return;
    }
    CHECK(pt_trainer_stages_input(rep, ndev));
    char out[1024];
    const char *base = getenv("PT_TEST_TMP") ? getenv("PT_TEST_TMP") : "/tmp";
    snprintf(out, sizeof out, "%s/no_alloc_trainer%d.%ld", base, ndev, (long)getpid());
    pt_remove_tree(out, NULL);
    pt_train_options o;
    memset(&o, 0, sizeof o);
    o.epochs = 1;
    o.batch_per_device = B;
    o.lr = 0.01;
    o.schedule = PT_SCHED_CONSTANT;
    o.seed = 1;
    o.out_dir = out;
    o.config_json = "{}";
    o.clip_grad_norm = 1.0;
    pt_model_meta meta;
    memset(&meta, 0, sizeof meta);
    snprintf(meta.model, sizeof meta.model, "baseline");
    meta.in_channels = C;
    meta.height = H;
    meta.width = W;
    meta.num_classes = K;
    meta.std[0] = 1.0f;
    static char *names[K] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
    meta.class_names = names;
    CHECKF(pt_trainer_create(rep, ndev, &meta, pt_loader_source(&tl), pt_loader_source(&vl), &o, &t, &err) == PT_OK,
           "%s", err.msg);
    if (t) {
        pt_train_callbacks cb;
        memset(&cb, 0, sizeof cb);
        cb.on_step = count_steps;
        /* from the end of step 5 (both input slots captured by then) to the end of step 10 */
        g_count_from = 5;
        g_count_to = 10;
        g_allocs = 0;
        CHECKF(pt_trainer_run(t, &cb, &err) == PT_OK, "%s", err.msg);
        g_counting = 0;
        for (int d = 0; d < ndev; d++) {
            pt_graph_stats gs;
            pt_replica_graph_stats(rep[d], &gs);
            CHECKF(gs.inputs_staged == 13, "%d devices: device %d: %lld of 14 batches found staged", ndev, d,
                   (long long)gs.inputs_staged);
        }
        CHECKF(g_window == 2, "the counting window of steps 6..10 was not passed (%d)", g_window);
        CHECKF(g_allocs == 0, "%d devices: %ld host allocations in 5 trainer steps that staged the next batch", ndev,
               g_allocs);
        pt_trainer_free(t);
    }
    pt_remove_tree(out, NULL);
    for (int d = 0; d < ndev; d++) {
        pt_replica_free(rep[d]);
        pt_device_close(dev[d]);
    }
    pt_net_free(net);
    pt_loader_free(&tl);
    pt_loader_free(&vl);
    free(ds.pixels);
    free(ds.labels);
    free(vds.pixels);
    free(vds.labels);
}

static void staging_trainer_steps_allocate_nothing(void) { staging_trainer_steps_allocate_nothing_on(1); }
static void two_devices_staging_trainer_steps_allocate_nothing(void)
{
    staging_trainer_steps_allocate_nothing_on(2);
}

int main(void)
{
    RUN(training_step_allocates_nothing);
    RUN(bf16_storage_training_step_allocates_nothing);
    RUN(attention_training_step_allocates_nothing);
    RUN(group_step_allocates_nothing);
    RUN(traced_group_step_allocates_nothing);
    RUN(loader_next_allocates_nothing);
    RUN(captured_steps_allocate_nothing);
    RUN(whole_captured_steps_allocate_nothing);
    RUN(staging_trainer_steps_allocate_nothing);
    RUN(two_devices_staging_trainer_steps_allocate_nothing);
    TEST_EXIT();
}
