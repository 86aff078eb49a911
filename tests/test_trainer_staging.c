/* The trainer staging the next batch during the step (pinned input on one, two or three
 * devices of the process; the cpu device emulating graphs and asynchronous copies): against
 * the same run with pinned input off, the same batches reach the same steps and the weights,
 * optimizer state, EMA, epoch metrics and checkpoints are bitwise equal, over two epochs with a short last batch, with
 * clipping and the EMA, with gradient accumulation, and across a Ctrl-C mid epoch (the staged
 * batch is not consumed: the resume starts at it) and its resume; every batch but an epoch's
 * first is found staged, the source is never asked past an epoch's last batch, its wait is
 * counted once, and a source that ends early or fails fails the run with the same message at
 * the same step; two ranks of one or two devices each stage too; a traced step shows each
 * device's staging copy. Several devices: each device's part is staged (a part that is empty
 * stages nothing), the source asked once per batch. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/rng.h"
#include "polytrain/checkpoint.h"
#include "polytrain/trainer.h"
#include "pt_test.h"
#include "scratch_files.h"
#include "pt_test_net.h"

#define S 8 /* images are 1 x S x S */
#define K 4
#define XS (S * S)
#define CAP 6 /* samples per batch */

/* ---------------------------------------------------------------- an in-memory source
 * One buffer, refilled by every next(): a trainer that read a batch after fetching the next
 * one would read the wrong data. It counts its next() calls per epoch, reports a wait of
 * 0.25 s per call, and can end early (ends_after batches) or fail (fail_at). */
typedef struct src {
    int64_t n;
    const float *x;
    const int32_t *y;
    int64_t order[256];
    float bx[CAP * XS];
    int32_t by[CAP];
    int64_t pos, next_batch, calls, calls_total;
    int64_t ends_after, fail_at; /* -1: never */
    int64_t log[64];             /* the first sample of each batch handed out, in order */
    int nlog;
    int rank, ranks;             /* ranks > 1: this rank's share of global batches of CAP x ranks */
} src;

/* Rank `rank`'s part of global batch g (the trainer's split): first sample and count. */
static int share(const src *m, int64_t g, int64_t *first)
{
    const int64_t G = (int64_t)CAP * m->ranks, start = g * G;
    int64_t n = m->n - start < G ? m->n - start : G;
    if (n < 0) n = 0;
    const int64_t base = n / m->ranks, extra = n % m->ranks;
    *first = start + m->rank * base + (m->rank < extra ? m->rank : extra);
    return (int)(base + (m->rank < extra));
}

static int64_t s_samples(void *ctx)
{
    const src *m = ctx;
    if (m->ranks < 2) return m->n;
    int64_t n = 0, f;
    for (int64_t g = 0; g * CAP * m->ranks < m->n; g++) n += share(m, g, &f);
    return n;
}
static int64_t s_batches(void *ctx)
{
    const src *m = ctx;
    const int64_t G = (int64_t)CAP * (m->ranks > 1 ? m->ranks : 1);
    return (m->n + G - 1) / G;
}

static pt_status s_start(void *ctx, int64_t epoch, pt_error *err)
{
    (void)err;
    src *m = ctx;
    for (int64_t i = 0; i < m->n; i++) m->order[i] = i;
    for (int64_t i = m->n - 1; i > 0; i--) {
        int64_t j = pt_rng_below(3, PT_RNG_SHUFFLE, (uint64_t)epoch, (uint64_t)i, 0, (uint32_t)(i + 1));
        int64_t t = m->order[i];
        m->order[i] = m->order[j];
        m->order[j] = t;
    }
    m->pos = m->next_batch = m->calls = 0;
    return PT_OK;
}

static pt_status s_seek(void *ctx, int64_t epoch, int64_t batch, pt_error *err)
{
    src *m = ctx;
    PT_TRY(s_start(ctx, epoch, err));
    m->pos = batch * CAP < m->n ? batch * CAP : m->n;
    m->next_batch = batch; /* ranks > 1: next() finds its position from the batch */
    return PT_OK;
}

static pt_status s_next(void *ctx, pt_batch *out, pt_error *err)
{
    src *m = ctx;
    m->calls++;
    m->calls_total++;
    if (m->fail_at >= 0 && m->next_batch == m->fail_at)
        return pt_fail(err, PT_ERR_IO, "test source: batch %lld unreadable", (long long)m->next_batch);
    int n = (int)(m->n - m->pos < CAP ? m->n - m->pos : CAP);
    if (m->ranks > 1) {
        n = m->next_batch < s_batches(m) ? share(m, m->next_batch, &m->pos) : 0;
        if (n == 0) m->pos = m->n;
    }
    if (m->ends_after >= 0 && m->next_batch >= m->ends_after) n = 0;
    for (int i = 0; i < n; i++) {
        const int64_t s = m->order[m->pos + i];
        memcpy(m->bx + (size_t)i * XS, m->x + s * XS, XS * sizeof(float));
        m->by[i] = m->y[s];
    }
    if (n && m->nlog < 64) m->log[m->nlog++] = m->order[m->pos];
    out->x = m->bx;
    out->y = m->by;
    out->n = n;
    out->batch = m->next_batch;
    m->pos += n;
    if (n) m->next_batch++;
    return PT_OK;
}

static double s_wait(void *ctx) { return 0.25 * (double)((src *)ctx)->calls_total; }

static pt_batch_source s_source(src *m)
{
    pt_batch_source s = {m, s_samples, s_batches, s_start, s_next, s_seek, s_wait};
    return s;
}

static float data_x[256 * XS];
static int32_t data_y[256];

static void s_init(src *m, int64_t n, int64_t offset)
{
    memset(m, 0, sizeof *m);
    m->n = n;
    m->x = data_x + offset * XS;
    m->y = data_y + offset;
    m->ends_after = m->fail_at = -1;
}

/* ---------------------------------------------------------------- runs */

static pt_net *make_net(void)
{
    pt_net *net = pt_net_new(1, S, S, K);
    int x = pt_net_input(net);
    x = pt_net_conv2d(net, x, "conv1", 6, 3, 1, 1, 0);
    x = pt_net_batchnorm2d(net, x, "bn1");
    x = pt_net_relu(net, x);
    x = pt_net_global_avgpool(net, x);
    x = pt_net_linear(net, x, "fc", K, 1);
    return pt_t_finish_net(net, x, "make_net");
}

#define MAXDEV 3
typedef struct run {
    pt_device *dev, *devs[MAXDEV];
    pt_replica *rep, *reps[MAXDEV]; /* dev, rep: device 0's */
    int ndev;
    int64_t staged_dev[MAXDEV];
    pt_status st;
    pt_error err;
    pt_epoch_metrics m[4];
    int nm;
    int64_t steps, stop_after; /* stop_after > 0: Ctrl-C once that many steps are done */
    float *params, *buffers, *opt, *ema;
    int64_t staged;
    int stages;
} run;

static void on_epoch(void *user, const pt_epoch_metrics *m)
{
    run *r = user;
    if (r->nm < 4) r->m[r->nm++] = *m;
}
static void on_step(void *user, int64_t step, int64_t epoch, double loss, double lr)
{
    (void)step, (void)epoch, (void)loss, (void)lr;
    ((run *)user)->steps++;
}
static int should_stop(void *user)
{
    run *r = user;
    return r->stop_after > 0 && r->steps == r->stop_after;
}

/* Under the two-rank world below: this thread's rank's world, and the samples over all ranks. */
static _Thread_local const pt_world *tl_world;
static _Thread_local int64_t tl_global_samples;
static const char *g_trace; /* non-NULL: the run writes a trace of its third step there */

/* One trainer run into out_dir on ndev devices of this process (each CAP / ndev samples of the
 * source's batches of CAP), pinned input on (staging) or off; the state is read back. */
static void train_n(run *r, const pt_net *net, int ndev, int pinned, src *tr, src *va, const char *out,
                    int accumulate, int resume, int64_t stop_after)
{
    memset(r, 0, sizeof *r);
    r->stop_after = stop_after;
    r->ndev = ndev;
    pt_device_options dopt = {.threads = 1, .deterministic = 1, .emulate_graphs = 1};
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
    pt_replica_options ro = {.pinned_input = pinned ? PT_SWITCH_ON : PT_SWITCH_OFF};
    for (int d = 0; d < ndev && r->st == PT_OK; d++) {
        r->st = pt_device_open("cpu", 0, &dopt, &r->devs[d], &r->err);
        if (r->st == PT_OK)
            r->st = pt_replica_create_ex(net, r->devs[d], CAP / ndev, &oc, 7, &ro, &r->reps[d], &r->err);
    }
    r->dev = r->devs[0];
    r->rep = r->reps[0];
    if (r->st != PT_OK) return;
    r->stages = pt_trainer_stages_input(r->reps, ndev);
    pt_model_meta meta;
    memset(&meta, 0, sizeof meta);
    snprintf(meta.model, sizeof meta.model, "staging");
    static char *names[K] = {"a", "b", "c", "d"};
    meta.in_channels = 1;
    meta.height = meta.width = S;
    meta.num_classes = K;
    meta.std[0] = 1.0f;
    meta.class_names = names;
    pt_train_options o;
    memset(&o, 0, sizeof o);
    o.epochs = 2;
    o.batch_per_device = CAP / ndev;
    o.lr = 0.05;
    o.schedule = PT_SCHED_COSINE;
    o.seed = 7;
    o.out_dir = out;
    o.config_json = "{}";
    o.resume = resume;
    o.accumulate = accumulate;
    o.trace_path = g_trace;
    o.trace_step = -1;
    if (tl_world) {
        o.world = tl_world;
        o.global_samples = tl_global_samples;
        o.rank_batch = CAP;
    }
    o.clip_grad_norm = accumulate > 1 ? 0 : 0.5;
    o.ema_decay = accumulate > 1 ? 0 : 0.9;
    pt_trainer *t = NULL;
    r->st = pt_trainer_create(r->reps, ndev, &meta, s_source(tr), s_source(va), &o, &t, &r->err);
    if (r->st != PT_OK) return;
    pt_train_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.user = r;
    cb.on_epoch = on_epoch;
    cb.on_step = on_step;
    cb.should_stop = should_stop;
    r->st = pt_trainer_run(t, &cb, &r->err);
    pt_trainer_free(t);
    for (int d = 0; d < ndev; d++) {
        pt_graph_stats gs;
        pt_replica_graph_stats(r->reps[d], &gs);
        r->staged_dev[d] = gs.inputs_staged;
    }
    r->staged = r->staged_dev[0];
    const int64_t P = pt_replica_param_region(r->rep), B = pt_replica_buffer_region(r->rep);
    const int slots = pt_replica_opt_slots(r->rep);
    r->params = calloc((size_t)P, sizeof(float));
    r->buffers = calloc((size_t)B + 1, sizeof(float));
    r->opt = calloc((size_t)(slots * P) + 1, sizeof(float));
    r->ema = calloc((size_t)(P + B) + 1, sizeof(float));
    pt_error e;
    CHECKF(pt_replica_read_state(r->rep, r->params, r->buffers, r->opt, &e) == PT_OK, "%s", e.msg);
    if (o.ema_decay > 0)
        CHECKF(pt_device_read(r->dev, r->ema, pt_replica_ema_mem(r->rep), (size_t)(P + B) * sizeof(float), &e) ==
                   PT_OK,
               "%s", e.msg);
    if (r->stages) {
        /* the freed trainer's hook is gone: a step on a replica now fetches nothing */
        static float x[CAP * XS], logits[CAP * K], loss[CAP];
        static int32_t y[CAP];
        const int64_t calls = tr->calls_total;
        for (int d = 0; d < ndev; d++)
            CHECKF(pt_replica_forward_backward(r->reps[d], x, y, CAP / ndev, 0, 0, 0.0f, logits, loss, &e) == PT_OK &&
                       tr->calls_total == calls,
                   "a step on device %d after the trainer was freed: %s", d, e.msg);
    }
}

static void run_free(run *r)
{
    free(r->params);
    free(r->buffers);
    free(r->opt);
    free(r->ema);
    for (int d = 0; d < r->ndev; d++) {
        pt_replica_free(r->reps[d]);
        pt_device_close(r->devs[d]);
    }
}

/* Weights, BN buffers, optimizer state and EMA bitwise equal (each tensor: the regions' padding
 * between them holds nothing). */
static int same_state(const run *a, const run *b)
{
    const pt_net *net = pt_replica_net(a->rep);
    const int64_t P = pt_replica_param_region(a->rep);
    const int slots = pt_replica_opt_slots(a->rep);
    for (int i = 0; i < net->nparams; i++) {
        const pt_param_info *p = &net->params[i];
        const size_t bytes = (size_t)p->numel * sizeof(float);
        if (memcmp(a->params + p->offset, b->params + p->offset, bytes) ||
            memcmp(a->ema + p->offset, b->ema + p->offset, bytes))
            return 0;
        for (int k = 0; k < slots; k++)
            if (memcmp(a->opt + k * P + p->offset, b->opt + k * P + p->offset, bytes)) return 0;
    }
    for (int i = 0; i < net->nbuffers; i++) {
        const pt_buffer_info *q = &net->buffers[i];
        const size_t bytes = (size_t)q->numel * sizeof(float);
        if (memcmp(a->buffers + q->offset, b->buffers + q->offset, bytes) ||
            memcmp(a->ema + P + q->offset, b->ema + P + q->offset, bytes))
            return 0;
    }
    return 1;
}

/* The epoch metrics that do not depend on the clock, bitwise. */
static int same_metrics(const pt_epoch_metrics *a, const pt_epoch_metrics *b)
{
    return a->epoch == b->epoch && a->train_loss == b->train_loss && a->train_acc == b->train_acc &&
           a->val_loss == b->val_loss && a->val_top1 == b->val_top1 && a->lr == b->lr &&
           a->clipped_steps == b->clipped_steps && a->grad_norm_mean == b->grad_norm_mean &&
           a->ema_val_loss == b->ema_val_loss && a->data_wait_s == b->data_wait_s;
}

/* 2 epochs of 100 samples: 17 batches of up to 6, the last one 4 samples. Staged: 16 of each
 * epoch's 17 batches found in their slot; not staged: none; both ask the source 17 times an
 * epoch (never past its last batch), wait 17 x 0.25 s an epoch and end bitwise alike. */
static void check_staged_equals_unstaged(int ndev, int accumulate, const char *name)
{
    pt_net *net = make_net();
    src tr_a, va_a, tr_b, va_b;
    s_init(&tr_a, 100, 0);
    s_init(&va_a, 20, 100);
    s_init(&tr_b, 100, 0);
    s_init(&va_b, 20, 100);
    char da[256], db[256];
    snprintf(da, sizeof da, "%s_staged", name);
    snprintf(db, sizeof db, "%s_plain", name);
    run a, b;
    train_n(&a, net, ndev, 1, &tr_a, &va_a, at(da), accumulate, 0, 0);
    train_n(&b, net, ndev, 0, &tr_b, &va_b, at(db), accumulate, 0, 0);
    CHECKF(a.st == PT_OK && b.st == PT_OK, "%s: %s / %s", name, a.err.msg, b.err.msg);
    CHECKF(a.stages == 1 && b.stages == 0, "%s: stages %d / %d", name, a.stages, b.stages);
    for (int d = 0; d < ndev; d++) {
        /* the last batch's 4 samples over 3 devices are 2, 2 and none: the third device's part
         * of batch 16 is empty, and batch 0 of each epoch is never staged */
        const int64_t want = ndev == 3 && d == 2 ? 30 : 32;
        CHECKF(a.staged_dev[d] == want && b.staged_dev[d] == 0, "%s: device %d: %lld / %lld of its parts of 34 "
               "batches found staged (%lld expected)", name, d, (long long)a.staged_dev[d],
               (long long)b.staged_dev[d], (long long)want);
    }
    CHECKF(tr_a.calls == 17 && tr_b.calls == 17 && tr_a.calls_total == 34 && tr_b.calls_total == 34,
           "%s: the source was asked %lld / %lld times in the last epoch", name, (long long)tr_a.calls,
           (long long)tr_b.calls);
    CHECKF(tr_a.nlog == tr_b.nlog && memcmp(tr_a.log, tr_b.log, sizeof tr_a.log) == 0, "%s: other batches", name);
    const int64_t spe = accumulate > 1 ? 9 : 17;
    CHECKF(a.steps == 2 * spe && b.steps == 2 * spe, "%s: %lld / %lld steps", name, (long long)a.steps,
           (long long)b.steps);
    CHECKF(a.nm == 2 && b.nm == 2 && same_metrics(&a.m[0], &b.m[0]) && same_metrics(&a.m[1], &b.m[1]),
           "%s: epoch metrics differ (train loss %.17g vs %.17g)", name, a.m[1].train_loss, b.m[1].train_loss);
    CHECKF(a.m[0].data_wait_s == 17 * 0.25 && a.m[1].data_wait_s == 17 * 0.25, "%s: data wait %g, %g s", name,
           a.m[0].data_wait_s, a.m[1].data_wait_s);
    CHECKF(same_state(&a, &b), "%s: weights, optimizer state or EMA differ", name);
    CHECKF(accumulate > 1 || a.m[1].clipped_steps > 0, "%s: no step was clipped (the case is not exercised)", name);
    /* the checkpoints: their weights and progress */
    pt_train_progress pa, pb;
    pt_error e;
    char la[300], lb[300];
    snprintf(la, sizeof la, "%s/last", da);
    snprintf(lb, sizeof lb, "%s/last", db);
    CHECKF(pt_checkpoint_load(at(la), a.rep, &pa, &e) == PT_OK && pt_checkpoint_load(at(lb), b.rep, &pb, &e) == PT_OK,
           "%s", e.msg);
    CHECKF(pa.global_step == pb.global_step && pa.epoch == 2 && pa.epoch_seen == pb.epoch_seen &&
               pa.epoch_loss_sum == pb.epoch_loss_sum,
           "%s: checkpoints differ", name);
    run_free(&a);
    run_free(&b);
    pt_net_free(net);
}

static void test_two_epochs_staged_equal_unstaged_with_clipping_and_ema(void)
{
    check_staged_equals_unstaged(1, 1, "whole");
}

static void test_gradient_accumulation_staged_equals_unstaged(void) { check_staged_equals_unstaged(1, 2, "accum"); }

/* Several devices in one process: the next global batch fetched once every device's step is
 * queued, each device's part staged into its own free slot; against the same devices without
 * pinned input, bitwise. */
static void test_two_devices_in_one_process_stage_and_match(void) { check_staged_equals_unstaged(2, 1, "dev2"); }
static void test_three_devices_one_part_empty_stage_and_match(void) { check_staged_equals_unstaged(3, 1, "dev3"); }
static void test_two_devices_with_accumulation_stage_and_match(void)
{
    check_staged_equals_unstaged(2, 2, "dev2_accum");
}

/* Ctrl-C polled before epoch 2's 6th step (5 done): the batch fetched and staged during step 5
 * is not consumed; last/ holds 5 steps of the epoch, the resume starts at its batch 5 (the
 * straight run's), stages 11 of its 12 batches and ends bitwise as the uninterrupted run,
 * clipping and EMA included, with the same epoch metrics. Several devices: a mid-epoch save
 * averages the devices' BatchNorm statistics, so a resume is not the straight run; it ends
 * bitwise as the same Ctrl-C and resume without pinned input. */
static void ctrl_c_and_resume(int ndev, const char *name)
{
    pt_net *net = make_net();
    src tr, va;
    s_init(&tr, 100, 0);
    s_init(&va, 20, 100);
    run straight, cut, resumed;
    char ds[128], dc[128], dcl[160];
    snprintf(ds, sizeof ds, "%s_straight", name);
    snprintf(dc, sizeof dc, "%s_cut", name);
    snprintf(dcl, sizeof dcl, "%s_cut/last", name);
    train_n(&straight, net, ndev, 1, &tr, &va, at(ds), 1, 0, 0);
    CHECKF(straight.st == PT_OK && tr.nlog == 34, "%s (%d batches)", straight.err.msg, tr.nlog);
    const int64_t batch5 = tr.log[17 + 5]; /* epoch 2's batch 5 in the straight run */
    tr.nlog = 0;
    train_n(&cut, net, ndev, 1, &tr, &va, at(dc), 1, 0, 17 + 5);
    CHECKF(cut.st == PT_ERR_INTERRUPTED && strstr(cut.err.msg, "at step 5 of 17 in epoch 2"), "%s", cut.err.msg);
    for (int d = 0; d < ndev; d++)
        CHECKF(cut.staged_dev[d] == 16 + 4 && tr.calls == 6, "%s: device %d: %lld staged, %lld fetched in epoch 2",
               name, d, (long long)cut.staged_dev[d], (long long)tr.calls);
    pt_train_progress p;
    pt_error e;
    CHECKF(pt_checkpoint_load(at(dcl), cut.rep, &p, &e) == PT_OK && p.epoch == 1 && p.epoch_step == 5 &&
               p.global_step == 22 && p.epoch_seen == 30,
           "epoch %lld step %lld seen %lld: %s", (long long)p.epoch, (long long)p.epoch_step,
           (long long)p.epoch_seen, e.msg);
    tr.nlog = 0;
    train_n(&resumed, net, ndev, 1, &tr, &va, at(dc), 1, 1, 0);
    CHECKF(resumed.st == PT_OK, "%s", resumed.err.msg);
    CHECKF(tr.nlog == 12 && tr.log[0] == batch5, "the resume fetched %d batches, the first from sample %lld (%lld)",
           tr.nlog, (long long)tr.log[0], (long long)batch5);
    for (int d = 0; d < ndev; d++)
        CHECKF(resumed.staged_dev[d] == 11, "%s: device %d: %lld batches found staged in the resumed epoch's 12",
               name, d, (long long)resumed.staged_dev[d]);
    run plain_cut, plain;
    const run *ref = &straight;
    const pt_epoch_metrics *r = &straight.m[1];
    if (ndev > 1) {
        char dp[128];
        snprintf(dp, sizeof dp, "%s_plain_cut", name);
        train_n(&plain_cut, net, ndev, 0, &tr, &va, at(dp), 1, 0, 17 + 5);
        CHECKF(plain_cut.st == PT_ERR_INTERRUPTED, "%s", plain_cut.err.msg);
        train_n(&plain, net, ndev, 0, &tr, &va, at(dp), 1, 1, 0);
        CHECKF(plain.st == PT_OK && plain.nm == 1, "%s", plain.err.msg);
        ref = &plain;
        r = &plain.m[0];
    }
    CHECKF(same_state(ref, &resumed), "%s: the resumed run differs from the %s one", name,
           ndev > 1 ? "unpinned resumed" : "straight");
    const pt_epoch_metrics *m = &resumed.m[0];
    CHECKF(resumed.nm == 1 && m->resumed_mid_epoch && m->train_loss == r->train_loss && m->train_acc == r->train_acc &&
               m->val_loss == r->val_loss && m->ema_val_loss == r->ema_val_loss &&
               m->clipped_steps == r->clipped_steps && m->grad_norm_mean == r->grad_norm_mean,
           "resumed epoch: train loss %.17g vs %.17g", resumed.nm ? m->train_loss : 0, r->train_loss);
    /* this run's part of the epoch: 12 fetches */
    CHECKF(m->data_wait_s == 12 * 0.25, "resumed epoch: data wait %g s", m->data_wait_s);
    if (ndev > 1) {
        CHECK(m->data_wait_s == r->data_wait_s);
        run_free(&plain_cut);
        run_free(&plain);
    }
    run_free(&straight);
    run_free(&cut);
    run_free(&resumed);
    pt_net_free(net);
}

/* How many spans named name the trace holds on device track tid. */
static int count_spans(const char *doc, const char *name, int tid)
{
    char key[160];
    snprintf(key, sizeof key, "{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"X\",\"pid\":0,\"tid\":%d,", name,
             strncmp(name, "wait", 4) ? "input" : "wait", tid);
    int n = 0;
    for (const char *p = doc; (p = strstr(p, key)) != NULL; p++) n++;
    return n;
}

/* --trace on two staging devices: the traced step shows on each device's track the copy of the
 * next batch's part into its free slot (stage_input), and one fetch of the next batch for both
 * (fetch_next_batch on one track, the other waiting for it); without pinned input each device
 * shows the copy of its part at the step (copy_input) and nothing staged. */
static void test_trace_shows_each_devices_staging(void)
{
    pt_net *net = make_net();
    for (int pinned = 1; pinned >= 0; pinned--) {
        src tr, va;
        s_init(&tr, 100, 0);
        s_init(&va, 20, 100);
        char dir[64], path[64];
        snprintf(dir, sizeof dir, "trace%d", pinned);
        snprintf(path, sizeof path, "trace%d.json", pinned);
        char tpath[4200];
        snprintf(tpath, sizeof tpath, "%s", at(path));
        g_trace = tpath;
        run r;
        train_n(&r, net, 2, pinned, &tr, &va, at(dir), 1, 0, 0);
        g_trace = NULL;
        CHECKF(r.st == PT_OK, "%s", r.err.msg);
        char *doc = NULL;
        size_t len = 0;
        pt_error e;
        CHECKF(pt_read_file(tpath, 1 << 24, (void **)&doc, &len, &e) == PT_OK, "%s", e.msg);
        if (doc) {
            const int fetches = count_spans(doc, "fetch_next_batch", 0) + count_spans(doc, "fetch_next_batch", 1);
            const int waits = count_spans(doc, "wait_next_batch", 0) + count_spans(doc, "wait_next_batch", 1);
            for (int d = 0; d < 2; d++) {
                CHECKF(count_spans(doc, "stage_input", d) == pinned, "pinned %d: device %d: %d stage_input spans",
                       pinned, d, count_spans(doc, "stage_input", d));
                CHECKF(count_spans(doc, "copy_input", d) == !pinned, "pinned %d: device %d: %d copy_input spans",
                       pinned, d, count_spans(doc, "copy_input", d));
            }
            CHECKF(fetches == pinned && waits == pinned, "pinned %d: %d fetches, %d waits", pinned, fetches, waits);
        }
        free(doc);
        run_free(&r);
    }
    pt_net_free(net);
}

static void test_ctrl_c_mid_epoch_and_resume_equal_the_straight_run(void) { ctrl_c_and_resume(1, "one"); }
static void test_two_devices_ctrl_c_and_resume_equal_unstaged(void) { ctrl_c_and_resume(2, "two"); }

/* A source that ends after 10 of its 17 batches, or fails reading batch 10: staged or not,
 * the run fails with the same message once 10 steps are done (the failure of a fetch during
 * step 9 is reported where the batch is needed, after that step completed). */
static void source_ends_early_or_fails(int ndev)
{
    pt_net *net = make_net();
    for (int c = 0; c < 2; c++) {
        run r[2];
        char msg[2][256];
        for (int pinned = 0; pinned < 2; pinned++) {
            src tr, va;
            s_init(&tr, 100, 0);
            s_init(&va, 20, 100);
            if (c == 0) tr.ends_after = 10;
            else tr.fail_at = 10;
            char d[64];
            snprintf(d, sizeof d, "early%d_%d_%d", ndev, c, pinned);
            train_n(&r[pinned], net, ndev, pinned, &tr, &va, at(d), 1, 0, 0);
            snprintf(msg[pinned], sizeof msg[pinned], "%s", r[pinned].err.msg);
            CHECKF(tr.calls == 11, "case %d pinned %d: %lld fetches", c, pinned, (long long)tr.calls);
        }
        CHECKF(r[0].st != PT_OK && r[0].st == r[1].st && strcmp(msg[0], msg[1]) == 0 && r[0].steps == 10 &&
                   r[1].steps == 10,
               "case %d: '%s' after %lld steps vs '%s' after %lld", c, msg[0], (long long)r[0].steps, msg[1],
               (long long)r[1].steps);
        CHECKF(strstr(msg[1], c == 0 ? "ended after 10 of its 17 batches" : "batch 10 unreadable"), "%s", msg[1]);
        CHECKF(same_state(&r[0], &r[1]), "case %d: the state at the failure differs", c);
        run_free(&r[0]);
        run_free(&r[1]);
    }
    pt_net_free(net);
}

static void test_a_source_that_ends_early_or_fails_fails_alike(void) { source_ends_early_or_fails(1); }
static void test_two_devices_a_source_that_ends_early_or_fails_fails_alike(void) { source_ends_early_or_fails(2); }

/* ---------------------------------------------------------------- two ranks in threads
 * A world of two ranks, each a thread with a device of its own: every collective is ordered
 * (rank 0's part, then rank 1's), so that two runs sum alike bit for bit. */
#define TW_BYTES (1 << 20)
static pthread_barrier_t tw_bar;
static unsigned char tw_buf[TW_BYTES];

static pt_status tw_barrier(void *ctx, pt_error *err)
{
    (void)ctx, (void)err;
    pthread_barrier_wait(&tw_bar);
    return PT_OK;
}

#define TW_ALLREDUCE(name, type)                                                                        \
    static pt_status name(void *ctx, type *buf, size_t n, pt_error *err)                               \
    {                                                                                                 \
        const int rank = *(const int *)ctx;                                                           \
        type *acc = (type *)(void *)tw_buf;                                                           \
        if (n * sizeof(type) > TW_BYTES) return pt_fail(err, PT_ERR_INVALID, "test world: too large"); \
        pthread_barrier_wait(&tw_bar);                                                                \
        if (rank == 0) memcpy(acc, buf, n * sizeof(type));                                            \
        pthread_barrier_wait(&tw_bar);                                                                \
        if (rank == 1)                                                                                \
            for (size_t i = 0; i < n; i++) acc[i] += buf[i];                                          \
        pthread_barrier_wait(&tw_bar);                                                                \
        memcpy(buf, acc, n * sizeof(type));                                                           \
        pthread_barrier_wait(&tw_bar);                                                                \
        return PT_OK;                                                                                 \
    }
TW_ALLREDUCE(tw_sum_f32, float)
TW_ALLREDUCE(tw_sum_f64, double)

static pt_status tw_broadcast(void *ctx, void *buf, size_t bytes, int root, pt_error *err)
{
    const int rank = *(const int *)ctx;
    if (bytes > TW_BYTES) return pt_fail(err, PT_ERR_INVALID, "test world: too large");
    pthread_barrier_wait(&tw_bar);
    if (rank == root) memcpy(tw_buf, buf, bytes);
    pthread_barrier_wait(&tw_bar);
    if (rank != root) memcpy(buf, tw_buf, bytes);
    pthread_barrier_wait(&tw_bar);
    return PT_OK;
}

static void tw_abort(void *ctx, int code, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "test world abort: %s\n", msg);
    exit(code);
}

typedef struct rank_job {
    int rank, pinned, ndev;
    const pt_net *net;
    char out[256];
    src tr, va;
    run r;
} rank_job;

static void *rank_main(void *arg)
{
    rank_job *j = arg;
    pt_world w = {j->rank, 2, &j->rank, tw_sum_f32, tw_sum_f64, tw_broadcast, tw_barrier, tw_abort};
    tl_world = &w;
    tl_global_samples = 100;
    train_n(&j->r, j->net, j->ndev, j->pinned, &j->tr, &j->va, j->out, 1, 0, 0);
    tl_world = NULL;
    return NULL;
}

/* Two ranks of one device each: per rank, batch k+1 of the global batches is staged during
 * step k while the gradients are reduced across ranks between the ops (the separate-call
 * path); the runs end bitwise as the same two ranks without pinned input. */
static void two_ranks(int ndev)
{
    pt_net *net = make_net();
    static rank_job job[2][2]; /* [pinned][rank] */
    for (int pinned = 0; pinned < 2; pinned++) {
        pthread_t th[2];
        for (int k = 0; k < 2; k++) {
            rank_job *j = &job[pinned][k];
            memset(j, 0, sizeof *j);
            j->rank = k;
            j->pinned = pinned;
            j->ndev = ndev;
            j->net = net;
            char name[64];
            snprintf(name, sizeof name, "ranks%d_%s", ndev, pinned ? "staged" : "plain");
            snprintf(j->out, sizeof j->out, "%s", at(name));
            s_init(&j->tr, 100, 0);
            s_init(&j->va, 20, 100);
            j->tr.rank = j->va.rank = k;
            j->tr.ranks = j->va.ranks = 2;
        }
        pthread_barrier_init(&tw_bar, NULL, 2);
        for (int k = 0; k < 2; k++) pthread_create(&th[k], NULL, rank_main, &job[pinned][k]);
        for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
        pthread_barrier_destroy(&tw_bar);
    }
    for (int k = 0; k < 2; k++) {
        run *a = &job[1][k].r, *b = &job[0][k].r;
        CHECKF(a->st == PT_OK && b->st == PT_OK, "rank %d: %s / %s", k, a->err.msg, b->err.msg);
        for (int d = 0; d < ndev; d++)
            CHECKF(a->stages == 1 && a->staged_dev[d] == 16 && b->staged_dev[d] == 0,
                   "rank %d device %d: %lld / %lld of 18 batches staged", k, d, (long long)a->staged_dev[d],
                   (long long)b->staged_dev[d]);
        CHECKF(job[1][k].tr.calls == 9 && job[1][k].tr.calls_total == 18, "rank %d: %lld fetches", k,
               (long long)job[1][k].tr.calls_total);
        CHECKF(a->nm == 2 && b->nm == 2 && same_metrics(&a->m[0], &b->m[0]) && same_metrics(&a->m[1], &b->m[1]),
               "rank %d: epoch metrics differ", k);
        CHECKF(same_state(a, b), "rank %d: the state differs from the run without staging", k);
        run_free(a);
        run_free(b);
    }
    pt_net_free(net);
}

static void test_two_ranks_of_one_device_stage_and_match(void) { two_ranks(1); }
/* each rank's global batches of 6 over its two devices of 3 (the last one's 2 samples a part
 * of one each) */
static void test_two_ranks_of_two_devices_stage_and_match(void) { two_ranks(2); }

/* Staging needs pinned input on every device of the process: one or two pinned replicas
 * stage, a set with one replica without it does not. */
static void test_staging_is_on_when_every_device_is_pinned(void)
{
    pt_net *net = make_net();
    pt_device_options dopt = {.threads = 1, .emulate_graphs = 1};
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
    pt_device *dev[2] = {NULL, NULL};
    pt_replica *rep[3] = {NULL, NULL, NULL};
    pt_error err;
    pt_replica_options on = {.pinned_input = PT_SWITCH_ON}, off = {.pinned_input = PT_SWITCH_OFF};
    for (int d = 0; d < 2; d++) CHECK(pt_device_open("cpu", 0, &dopt, &dev[d], &err) == PT_OK);
    for (int d = 0; d < 2; d++)
        CHECKF(dev[d] && pt_replica_create_ex(net, dev[d], CAP, &oc, 7, &on, &rep[d], &err) == PT_OK, "%s", err.msg);
    CHECKF(dev[0] && pt_replica_create_ex(net, dev[0], CAP, &oc, 7, &off, &rep[2], &err) == PT_OK, "%s", err.msg);
    if (rep[0] && rep[1] && rep[2]) {
        CHECK(pt_trainer_stages_input(rep, 1) == 1);
        CHECK(pt_trainer_stages_input(rep, 2) == 1);
        CHECK(pt_trainer_stages_input(&rep[1], 2) == 0);
        CHECK(pt_trainer_stages_input(&rep[2], 1) == 0);
    }
    for (int d = 0; d < 3; d++) pt_replica_free(rep[d]);
    for (int d = 0; d < 2; d++) pt_device_close(dev[d]);
    pt_net_free(net);
}

int main(void)
{
    const char *base = getenv("PT_TEST_TMP");
    if (!base || !base[0]) base = "/tmp";
    snprintf(root, sizeof root, "%s/test_trainer_staging.%ld", base, (long)getpid());
    pt_error err;
    if (pt_remove_tree(root, &err) != PT_OK || pt_mkdir_p(root, &err) != PT_OK) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < 256 * XS; i++) data_x[i] = (float)pt_rng_normal(11, PT_RNG_SPLIT, 0, (uint64_t)i, 0);
    for (int i = 0; i < 256; i++) data_y[i] = (int32_t)pt_rng_below(11, PT_RNG_SPLIT, 1, (uint64_t)i, 0, K);
    /* class-dependent inputs, so that accuracy moves and a wrong label would show */
    for (int i = 0; i < 256; i++) data_x[i * XS + data_y[i]] += 2.0f;
    RUN(test_two_epochs_staged_equal_unstaged_with_clipping_and_ema);
    RUN(test_gradient_accumulation_staged_equals_unstaged);
    RUN(test_ctrl_c_mid_epoch_and_resume_equal_the_straight_run);
    RUN(test_a_source_that_ends_early_or_fails_fails_alike);
    RUN(test_staging_is_on_when_every_device_is_pinned);
    RUN(test_two_ranks_of_one_device_stage_and_match);
    RUN(test_two_devices_in_one_process_stage_and_match);
    RUN(test_three_devices_one_part_empty_stage_and_match);
    RUN(test_two_devices_with_accumulation_stage_and_match);
    RUN(test_two_devices_ctrl_c_and_resume_equal_unstaged);
    RUN(test_two_ranks_of_two_devices_stage_and_match);
    RUN(test_trace_shows_each_devices_staging);
    RUN(test_two_devices_a_source_that_ends_early_or_fails_fails_alike);
    if (pt_t_fail == 0) pt_remove_tree(root, NULL);
    TEST_EXIT();
}
