/* core/trainer: on a small synthetic dataset held in memory, training overfits; two
 * replicas of batch 8 follow one replica of batch 16; stopping after an epoch and
 * resuming gives the uninterrupted run's weights bit for bit; a diverging run never
 * replaces a good checkpoint; evaluation covers every sample exactly once. cpu backend. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "polytrain/checkpoint.h"
#include "core/fileio.h"
#include "polytrain/metrics.h"
#include "core/rng.h"
#include "core/early_stop.h"
#include "polytrain/trainer.h"
#include "pt_test.h"
#include "scratch_files.h"

#define S 8       /* images are 1 x S x S */
#define K 4       /* classes */
#define XS (S * S)

static pt_device *dev0, *dev1;

/* ---------------------------------------------------------------- synthetic data
 * Class = stripe orientation (horizontal, vertical, diagonal, anti-diagonal), period 4,
 * random phase and contrast, Gaussian noise: position-invariant, so a conv net with
 * global pooling learns it. */

typedef struct dataset {
    int64_t n;
    float *x;
    int32_t *y;
} dataset;

static dataset make_data(int64_t n, uint64_t seed)
{
    dataset d = {n, malloc((size_t)n * XS * sizeof(float)), malloc((size_t)n * sizeof(int32_t))};
    for (int64_t i = 0; i < n; i++) {
        int cls = (int)pt_rng_below(seed, PT_RNG_SPLIT, 1, (uint64_t)i, 0, K);
        double phase = 4.0 * pt_rng_uniform(seed, PT_RNG_SPLIT, 2, (uint64_t)i, 0);
        double amp = 0.6 + pt_rng_uniform(seed, PT_RNG_SPLIT, 3, (uint64_t)i, 0);
        for (int r = 0; r < S; r++)
            for (int c = 0; c < S; c++) {
                int t = cls == 0 ? r : cls == 1 ? c : cls == 2 ? r + c : r - c;
                double v = amp * sin(2.0 * M_PI * (t + phase) / 4.0);
                v += 0.3 * pt_rng_normal(seed, PT_RNG_SPLIT, 4, (uint64_t)i, (uint32_t)(r * S + c));
                d.x[i * XS + r * S + c] = (float)v;
            }
        d.y[i] = cls;
    }
    return d;
}

static void free_data(dataset *d)
{
    free(d->x);
    free(d->y);
}

/* ---------------------------------------------------------------- in-memory batch source */

typedef struct mem_source {
    const dataset *d;
    int batch;        /* samples per batch */
    int first_batch;  /* > 0: the first batch has this size instead (odd sources) */
    int shuffle;
    uint64_t seed;
    int64_t *order;
    float *x;
    int32_t *y;
    int64_t *index;
    int64_t pos, next_batch;
    int64_t *delivered; /* per sample: times handed out since the last start_epoch */
    int seekable;       /* offer seek (runs resumed part way through an epoch) */
} mem_source;

static int64_t ms_samples(void *ctx) { return ((mem_source *)ctx)->d->n; }

static int64_t ms_batches(void *ctx)
{
    mem_source *m = ctx;
    int64_t n = m->d->n, b = 0;
    if (m->first_batch > 0) {
        n -= m->first_batch < n ? m->first_batch : n;
        b = 1;
    }
    return b + (n + m->batch - 1) / m->batch;
}

static pt_status ms_start(void *ctx, int64_t epoch, pt_error *err)
{
    (void)err;
    mem_source *m = ctx;
    int64_t n = m->d->n;
    for (int64_t i = 0; i < n; i++) {
        m->order[i] = i;
        m->delivered[i] = 0;
    }
    if (m->shuffle)
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = pt_rng_below(m->seed, PT_RNG_SHUFFLE, (uint64_t)epoch, (uint64_t)i, 0, (uint32_t)(i + 1));
            int64_t t = m->order[i];
            m->order[i] = m->order[j];
            m->order[j] = t;
        }
    m->pos = 0;
    m->next_batch = 0;
    return PT_OK;
}

static pt_status ms_next(void *ctx, pt_batch *out, pt_error *err)
{
    (void)err;
    mem_source *m = ctx;
    int want = m->next_batch == 0 && m->first_batch > 0 ? m->first_batch : m->batch;
    int n = (int)(m->d->n - m->pos < want ? m->d->n - m->pos : want);
    for (int i = 0; i < n; i++) {
        int64_t s = m->order[m->pos + i];
        memcpy(m->x + (size_t)i * XS, m->d->x + s * XS, XS * sizeof(float));
        m->y[i] = m->d->y[s];
        m->index[i] = s;
        m->delivered[s]++;
    }
    out->x = m->x;
    out->y = m->y;
    out->index = m->index;
    out->n = n;
    out->batch = m->next_batch;
    m->pos += n;
    if (n) m->next_batch++;
    return PT_OK;
}

static void ms_init(mem_source *m, const dataset *d, int batch, int shuffle, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    m->d = d;
    m->batch = batch;
    m->shuffle = shuffle;
    m->seed = seed;
    int cap = batch > 64 ? batch : 64;
    m->order = malloc((size_t)d->n * sizeof(int64_t));
    m->delivered = calloc((size_t)d->n, sizeof(int64_t));
    m->x = malloc((size_t)cap * XS * sizeof(float));
    m->y = malloc((size_t)cap * sizeof(int32_t));
    m->index = malloc((size_t)cap * sizeof(int64_t));
}

static void ms_free(mem_source *m)
{
    free(m->order);
    free(m->delivered);
    free(m->x);
    free(m->y);
    free(m->index);
}
static pt_status ms_seek(void *ctx, int64_t epoch, int64_t batch, pt_error *err)
{
    mem_source *m = ctx;
    PT_TRY(ms_start(ctx, epoch, err));
    for (int64_t b = 0; b < batch; b++) {
        int want = b == 0 && m->first_batch > 0 ? m->first_batch : m->batch;
        m->pos += m->d->n - m->pos < want ? m->d->n - m->pos : want;
        m->next_batch++;
    }
    return PT_OK;
}

static pt_batch_source ms_source(mem_source *m)
{
    pt_batch_source s = {m, ms_samples, ms_batches, ms_start, ms_next, m->seekable ? ms_seek : NULL, NULL};
    return s;
}

/* ---------------------------------------------------------------- nets */

typedef enum net_kind { NET_PLAIN, NET_RESIDUAL, NET_NO_BN } net_kind;

static pt_net *make_net(net_kind kind)
{
    pt_net *net = pt_net_new(1, S, S, K);
    int x = pt_net_input(net);
    if (kind == NET_NO_BN) {
        x = pt_net_conv2d(net, x, "conv1", 8, 3, 1, 1, 1);
        x = pt_net_relu(net, x);
        x = pt_net_maxpool2d(net, x, 2, 2, 0);
        x = pt_net_conv2d(net, x, "conv2", 12, 3, 1, 1, 1);
        x = pt_net_relu(net, x);
    } else {
        x = pt_net_conv2d(net, x, "conv1", 8, 3, 1, 1, 0);
        x = pt_net_batchnorm2d(net, x, "bn1");
        x = pt_net_relu(net, x);
        if (kind == NET_RESIDUAL) {
            int y = pt_net_conv2d(net, x, "block.conv1", 8, 3, 1, 1, 0);
            y = pt_net_batchnorm2d(net, y, "block.bn1");
            y = pt_net_relu(net, y);
            y = pt_net_conv2d(net, y, "block.conv2", 8, 3, 1, 1, 0);
            y = pt_net_batchnorm2d(net, y, "block.bn2");
            x = pt_net_relu(net, pt_net_add(net, y, x));
        }
        x = pt_net_maxpool2d(net, x, 2, 2, 0);
        x = pt_net_conv2d(net, x, "conv2", 12, 3, 1, 1, 0);
        x = pt_net_batchnorm2d(net, x, "bn2");
        x = pt_net_relu(net, x);
    }
    x = pt_net_global_avgpool(net, x);
    x = pt_net_linear(net, x, "fc", K, 1);
    pt_error err;
    pt_error_clear(&err);
    if (pt_net_finish(net, x, &err) != PT_OK) {
        fprintf(stderr, "make_net: %s\n", err.msg);
        pt_net_free(net);
        return NULL;
    }
    return net;
}

static pt_replica *make_replica(const pt_net *net, pt_device *dev, int batch, uint64_t seed)
{
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
    pt_replica *r = NULL;
    pt_error err;
    pt_error_clear(&err);
    if (pt_replica_create(net, dev, batch, &oc, seed, &r, &err) != PT_OK) {
        fprintf(stderr, "make_replica: %s\n", err.msg);
        return NULL;
    }
    return r;
}

static pt_model_meta test_meta(void)
{
    static char *names[K] = {"horizontal", "vertical", "diagonal", "anti-diagonal"};
    pt_model_meta m;
    memset(&m, 0, sizeof m);
    snprintf(m.model, sizeof m.model, "stripes");
    m.in_channels = 1;
    m.height = m.width = S;
    m.num_classes = K;
    m.mean[0] = 0.0f;
    m.std[0] = 1.0f;
    m.class_names = names;
    return m;
}

static pt_train_options test_options(const char *out, int epochs, int batch, double lr)
{
    pt_train_options o;
    memset(&o, 0, sizeof o);
    o.epochs = epochs;
    o.batch_per_device = batch;
    o.lr = lr;
    o.schedule = PT_SCHED_CONSTANT;
    o.seed = 7;
    o.out_dir = out;
    o.config_json = "{\"test\":true}";
    return o;
}

typedef struct recorder {
    pt_epoch_metrics m[64];
    int n;
    int64_t batches;
    int64_t stop_at_call;  /* > 0: should_stop says yes on this call (1-based) */
    int64_t calls, eval_batches;
} recorder;

static int rec_stop(void *user)
{
    recorder *r = user;
    return ++r->calls == r->stop_at_call;
}

static void rec_eval_batch(void *user, int64_t epoch, int64_t done, int64_t batches)
{
    (void)epoch, (void)batches;
    if (done > 0) ((recorder *)user)->eval_batches++;
}

static void rec_epoch(void *user, const pt_epoch_metrics *m)
{
    recorder *r = user;
    if (r->n < 64) r->m[r->n++] = *m;
}

static void rec_batch(void *user, int64_t epoch, int64_t batch, int64_t batches, double loss, double acc,
                      double ips)
{
    (void)epoch, (void)batch, (void)batches, (void)loss, (void)acc, (void)ips;
    ((recorder *)user)->batches++;
}

/* Runs a trainer over replicas; returns its status, err filled. */
static pt_status run_trainer(pt_replica **reps, int nrep, mem_source *train, mem_source *val,
                             const pt_train_options *o, recorder *rec, pt_trainer **keep, pt_error *err)
{
    pt_model_meta meta = test_meta();
    pt_trainer *t = NULL;
    pt_error_clear(err);
    pt_status st = pt_trainer_create(reps, nrep, &meta, ms_source(train), ms_source(val), o, &t, err);
    if (st != PT_OK) return st;
    pt_train_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.user = rec;
    cb.on_epoch = rec ? rec_epoch : NULL;
    cb.on_batch = rec ? rec_batch : NULL;
    if (rec && rec->stop_at_call > 0) {
        cb.should_stop = rec_stop;
        cb.on_eval_batch = rec_eval_batch;
    }
    st = pt_trainer_run(t, &cb, err);
    if (keep) *keep = t;
    else pt_trainer_free(t);
    return st;
}

typedef struct state {
    float *params, *buffers, *opt;
    int64_t P, B;
    int slots;
} state;

static state read_state(pt_replica *r)
{
    state s;
    s.P = pt_replica_param_region(r);
    s.B = pt_replica_buffer_region(r);
    s.slots = pt_replica_opt_slots(r);
    s.params = malloc((size_t)s.P * sizeof(float));
    s.buffers = malloc((size_t)(s.B + 1) * sizeof(float));
    s.opt = malloc((size_t)(s.slots * s.P + 1) * sizeof(float));
    pt_error err;
    pt_error_clear(&err);
    CHECKF(pt_replica_read_state(r, s.params, s.buffers, s.opt, &err) == PT_OK, "%s", err.msg);
    return s;
}

static void free_state(state *s)
{
    free(s->params);
    free(s->buffers);
    free(s->opt);
}

static int bitwise_same(const pt_net *net, const state *a, const state *b)
{
    for (int i = 0; i < net->nparams; i++) {
        const pt_param_info *p = &net->params[i];
        size_t bytes = (size_t)p->numel * sizeof(float);
        if (memcmp(a->params + p->offset, b->params + p->offset, bytes)) return 0;
        for (int s = 0; s < a->slots; s++)
            if (memcmp(a->opt + s * a->P + p->offset, b->opt + s * b->P + p->offset, bytes)) return 0;
    }
    for (int i = 0; i < net->nbuffers; i++) {
        const pt_buffer_info *q = &net->buffers[i];
        if (memcmp(a->buffers + q->offset, b->buffers + q->offset, (size_t)q->numel * sizeof(float)))
            return 0;
    }
    return 1;
}

/* ||a - b|| / ||b|| over the parameters; INFINITY on any non-finite value. */
static double param_rel_err(const pt_net *net, const state *a, const state *b)
{
    double num = 0, den = 0;
    for (int i = 0; i < net->nparams; i++) {
        const pt_param_info *p = &net->params[i];
        for (int64_t e = 0; e < p->numel; e++) {
            double x = a->params[p->offset + e], y = b->params[p->offset + e];
            if (!isfinite(x) || !isfinite(y)) return INFINITY;
            num += (x - y) * (x - y);
            den += y * y;
        }
    }
    return sqrt(num) / (den > 0 ? sqrt(den) : 1e-30);
}

static int all_finite(const pt_net *net, const state *s)
{
    for (int i = 0; i < net->nparams; i++)
        for (int64_t e = 0; e < net->params[i].numel; e++)
            if (!isfinite(s->params[net->params[i].offset + e])) return 0;
    return 1;
}

/* Epoch numbers in dir/metrics.jsonl, in file order; returns the line count. */
static int metrics_epochs(const char *dir, int64_t *epochs, int max)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[2048];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        long long e = -1;
        if (sscanf(line, "{\"epoch\":%lld", &e) != 1) e = -1;
        if (n < max) epochs[n] = e;
        n++;
    }
    fclose(f);
    return n;
}

/* ---------------------------------------------------------------- (a) training learns */

static void check_overfits(net_kind kind, const char *out)
{
    dataset tr = make_data(256, 1), va = make_data(100, 2);
    mem_source ts, vs;
    ms_init(&ts, &tr, 16, 1, 7);
    ms_init(&vs, &va, 16, 0, 7);
    pt_net *net = make_net(kind);
    pt_replica *r = net ? make_replica(net, dev0, 16, 7) : NULL;
    if (r) {
        pt_train_options o = test_options(out, 12, 16, 0.05);
        o.schedule = PT_SCHED_COSINE;
        recorder rec;
        memset(&rec, 0, sizeof rec);
        pt_error err;
        pt_status st = run_trainer(&r, 1, &ts, &vs, &o, &rec, NULL, &err);
        CHECKF(st == PT_OK, "%s", err.msg);
        CHECK(rec.n == 12);
        CHECK(rec.batches == 12 * 16);
        if (rec.n == 12) {
            const pt_epoch_metrics *first = &rec.m[0], *last = &rec.m[11];
            printf("  %s: train loss %.4f -> %.4f, train acc %.3f -> %.3f, val top1 %.3f\n", out,
                   first->train_loss, last->train_loss, first->train_acc, last->train_acc, last->val_top1);
            CHECKF(last->train_loss < 0.3 * first->train_loss, "%g -> %g", first->train_loss, last->train_loss);
            CHECKF(last->train_acc > 0.9, "train acc %g", last->train_acc);
            CHECKF(last->val_top1 > 0.8, "val top1 %g", last->val_top1);
            CHECK(last->val_top5 == 1.0); /* 4 classes: top-5 is every class */
            CHECK(last->val_count == 100);
            CHECK(last->epoch == 12);
        }
        int64_t ep[16];
        CHECK(metrics_epochs(out, ep, 16) == 12 && ep[0] == 1 && ep[11] == 12);
        char p[1100];
        snprintf(p, sizeof p, "%s/config.json", out);
        CHECK(pt_path_exists(p));
        snprintf(p, sizeof p, "%s/last/model.safetensors", out);
        CHECK(pt_path_exists(p));
        snprintf(p, sizeof p, "%s/best/optimizer.safetensors", out);
        CHECK(pt_path_exists(p));
    }
    pt_replica_free(r);
    pt_net_free(net);
    ms_free(&ts);
    ms_free(&vs);
    free_data(&tr);
    free_data(&va);
}

static void test_training_overfits_a_small_dataset(void) { check_overfits(NET_PLAIN, at("learn_plain")); }
static void test_training_overfits_with_a_residual_block(void) { check_overfits(NET_RESIDUAL, at("learn_res")); }

/* ---------------------------------------------------------------- (b) data parallel */

/* samples: 99 gives a last batch of 3, split 2 + 1 across the two replicas; 97 a last
 * batch of 1 that the second replica sits out. Without BatchNorm the two runs compute the
 * same mean gradient (up to summation order); with it they would not: each replica
 * normalises with its own batch statistics, as in DataParallel. */
static void check_data_parallel_equivalence(int64_t samples)
{
    dataset tr = make_data(samples, 3), va = make_data(20, 4);
    mem_source ts, vs;
    ms_init(&ts, &tr, 16, 1, 7);
    ms_init(&vs, &va, 8, 0, 7);
    pt_net *net = make_net(NET_NO_BN);
    pt_replica *one = make_replica(net, dev0, 16, 7);
    pt_replica *two[2] = {make_replica(net, dev0, 8, 7), make_replica(net, dev1, 8, 7)};
    if (one && two[0] && two[1]) {
        char d1[64], d2[64];
        snprintf(d1, sizeof d1, "dp1_%lld", (long long)samples);
        snprintf(d2, sizeof d2, "dp2_%lld", (long long)samples);
        pt_train_options o = test_options(at(d1), 3, 16, 0.05);
        pt_error err;
        pt_status st = run_trainer(&one, 1, &ts, &vs, &o, NULL, NULL, &err);
        CHECKF(st == PT_OK, "%s", err.msg);
        o = test_options(at(d2), 3, 8, 0.05);
        st = run_trainer(two, 2, &ts, &vs, &o, NULL, NULL, &err);
        CHECKF(st == PT_OK, "%s", err.msg);
        state a = read_state(one), b0 = read_state(two[0]), b1 = read_state(two[1]);
        double e = param_rel_err(net, &b0, &a);
        printf("  %lld samples, 1 x 16 vs 2 x 8 after 21 steps: normalised parameter error %.3g\n",
               (long long)samples, e);
        CHECKF(e < 1e-6, "normalised error %g", e);
        CHECK(bitwise_same(net, &b0, &b1)); /* replicas apply the same update */
        /* and both moved far from the initial weights */
        pt_replica *init = make_replica(net, dev0, 8, 7);
        pt_error_clear(&err);
        CHECK(init && pt_replica_init_params(init, 7, &err) == PT_OK);
        state s0 = read_state(init);
        CHECKF(param_rel_err(net, &s0, &a) > 1e-2, "%g", param_rel_err(net, &s0, &a));
        free_state(&s0);
        pt_replica_free(init);
        free_state(&a);
        free_state(&b0);
        free_state(&b1);
    }
    pt_replica_free(one);
    pt_replica_free(two[0]);
    pt_replica_free(two[1]);
    pt_net_free(net);
    ms_free(&ts);
    ms_free(&vs);
    free_data(&tr);
    free_data(&va);
}

static void test_two_replicas_of_8_follow_one_replica_of_16(void) { check_data_parallel_equivalence(99); }

static void test_a_last_batch_of_one_leaves_the_second_replica_idle(void)
{
    check_data_parallel_equivalence(97);
}

static void test_two_replicas_with_batchnorm_train_and_stay_identical(void)
{
    dataset tr = make_data(99, 3), va = make_data(20, 4);
    mem_source ts, vs;
    ms_init(&ts, &tr, 16, 1, 7);
    ms_init(&vs, &va, 8, 0, 7);
    pt_net *net = make_net(NET_PLAIN);
    pt_replica *two[2] = {make_replica(net, dev0, 8, 7), make_replica(net, dev1, 8, 7)};
    if (two[0] && two[1]) {
        pt_train_options o = test_options(at("dp_bn"), 2, 8, 0.05);
        recorder rec;
        memset(&rec, 0, sizeof rec);
        pt_error err;
        pt_status st = run_trainer(two, 2, &ts, &vs, &o, &rec, NULL, &err);
        CHECKF(st == PT_OK, "%s", err.msg);
        state b0 = read_state(two[0]), b1 = read_state(two[1]);
        /* parameters identical; BN running statistics averaged, so identical too */
        CHECK(bitwise_same(net, &b0, &b1));
        CHECK(all_finite(net, &b0));
        CHECK(rec.n == 2 && rec.m[1].train_loss < rec.m[0].train_loss);
        free_state(&b0);
        free_state(&b1);
    }
    pt_replica_free(two[0]);
    pt_replica_free(two[1]);
    pt_net_free(net);
    ms_free(&ts);
    ms_free(&vs);
    free_data(&tr);
    free_data(&va);
}

static void test_batch_larger_than_the_devices_hold_is_an_error(void)
{
    dataset tr = make_data(64, 3), va = make_data(20, 4);
    mem_source ts, vs;
    ms_init(&ts, &tr, 32, 1, 7); /* the source yields 32, the replica takes 16 */
    ms_init(&vs, &va, 8, 0, 7);
    pt_net *net = make_net(NET_NO_BN);
    pt_replica *r = make_replica(net, dev0, 16, 7);
    if (r) {
        pt_train_options o = test_options(at("toobig"), 1, 16, 0.05);
        pt_error err;
        pt_status st = run_trainer(&r, 1, &ts, &vs, &o, NULL, NULL, &err);
        CHECKF(st == PT_ERR_INVALID, "%s: %s", pt_status_name(st), err.msg);
        CHECKF(strstr(err.msg, "32") != NULL, "%s", err.msg);
    }
    pt_replica_free(r);
    pt_net_free(net);
    ms_free(&ts);
    ms_free(&vs);
    free_data(&tr);
    free_data(&va);
}

/* A short last batch may have any size: every n in 1..capacity must train and evaluate
 * with the memory planned at create (the step allocates nothing), on both devices. */
static void test_every_batch_size_up_to_capacity_runs(void)
{
    dataset d = make_data(64, 3);
    pt_device *devs[2] = {dev0, dev1};
    for (int k = 0; k < 2; k++) {
        pt_net *net = make_net(k ? NET_RESIDUAL : NET_PLAIN);
        for (int v = 0; v < 2; v++) {
            pt_replica *r = make_replica(net, devs[v], 32, 7);
            pt_error err;
            pt_error_clear(&err);
            if (!r || pt_replica_init_params(r, 7, &err) != PT_OK) {
                CHECKF(0, "%s", err.msg);
                pt_replica_free(r);
                continue;
            }
            int bad = 0;
            for (int n = 1; n <= 32 && !bad; n++) {
                float logits[32 * K], loss[32];
                pt_status st = pt_replica_forward_backward(r, d.x, d.y, n, 0, n, 1.0f / n, logits, loss, &err);
                if (st == PT_OK) st = pt_replica_eval(r, d.x, d.y, n, logits, loss, &err);
                CHECKF(st == PT_OK, "net %d device %d batch %d: %s", k, v, n, err.msg);
                bad = st != PT_OK;
            }
            pt_replica_free(r);
        }
        pt_net_free(net);
    }
    free_data(&d);
}

/* ---------------------------------------------------------------- accumulation */

/* Without BatchNorm a step over two micro-batches of 8 is the step over their 16 samples:
 * the same weights after two epochs, up to the order the gradient sums are formed in (one
 * GEMM over 16 samples, or two over 8 added). With BatchNorm the micro-batches normalise
 * by their own statistics, which tests/python/test_train_controls.py checks against
 * PyTorch. A step count that does not divide takes the last batches alone. */
static void test_accumulation_without_batchnorm_equals_the_large_batch(void)
{
    dataset tr = make_data(100, 5), va = make_data(20, 6);
    pt_net *net = make_net(NET_NO_BN);
    pt_replica *big = make_replica(net, dev0, 16, 7), *acc = make_replica(net, dev0, 8, 7);
    mem_source t16, t8, vs;
    ms_init(&t16, &tr, 16, 0, 7);
    ms_init(&t8, &tr, 8, 0, 7);
    ms_init(&vs, &va, 8, 0, 7);
    pt_error err;
    pt_train_options o = test_options(at("acc_big"), 2, 16, 0.05);
    recorder rb, ra;
    memset(&rb, 0, sizeof rb);
    memset(&ra, 0, sizeof ra);
    pt_status st = big && acc ? run_trainer(&big, 1, &t16, &vs, &o, &rb, NULL, &err) : PT_ERR_NOMEM;
    CHECKF(st == PT_OK, "%s", err.msg);
    o = test_options(at("acc_two"), 2, 8, 0.05);
    o.accumulate = 2;
    pt_trainer *t = NULL;
    st = acc ? run_trainer(&acc, 1, &t8, &vs, &o, &ra, &t, &err) : PT_ERR_NOMEM;
    CHECKF(st == PT_OK, "%s", err.msg);
    CHECKF(t && pt_trainer_steps_per_epoch(t) == 7, "%lld steps per epoch", t ? (long long)pt_trainer_steps_per_epoch(t) : -1LL);
    pt_trainer_free(t);
    if (st == PT_OK && big) {
        state a = read_state(big), b = read_state(acc);
        const double e = param_rel_err(net, &a, &b);
        CHECKF(e < 1e-5, "normalised parameter error %.3g", e);
        printf("  2 x 8 accumulated vs 16: normalised parameter error %.3g (%s)\n", e,
                                      bitwise_same(net, &a, &b) ? "bitwise equal" : "not bitwise");
        free_state(&a);
        free_state(&b);
        CHECKF(ra.n == 2 && rb.n == 2 && fabs(ra.m[1].train_loss - rb.m[1].train_loss) < 1e-5 * rb.m[1].train_loss,
               "epoch 2 train loss %.9g vs %.9g", ra.m[1].train_loss, rb.m[1].train_loss);
    }
    pt_replica_free(big);
    pt_replica_free(acc);
    pt_net_free(net);
    ms_free(&t16);
    ms_free(&t8);
    ms_free(&vs);
    free_data(&tr);
    free_data(&va);
}

/* ---------------------------------------------------------------- early stopping */

/* Scripted top-1 sequences against the rule worked by hand: an improvement must beat the
 * best so far by more than min_delta, and a small rise does not reset the count. */
static void test_early_stopping_on_scripted_sequences(void)
{
    const struct {
        double v[8];
        int n, patience;
        double delta;
        int stop_at; /* 1-based epoch that stops, 0: none */
    } cases[] = {
        {{0.50, 0.60, 0.60, 0.60}, 4, 2, 0.0, 4},          /* equal is no improvement */
        {{0.50, 0.60, 0.605, 0.609, 0.62}, 5, 2, 0.01, 4}, /* +0.005, +0.009 do not count */
        {{0.50, 0.60, 0.605, 0.611, 0.62}, 5, 2, 0.01, 0}, /* 0.611 beats 0.60 by > 0.01 */
        {{0.50, 0.40, 0.45, 0.49, 0.51}, 5, 3, 0.0, 4},    /* never back above 0.50 within 3 */
        {{0.50, 0.40, 0.45, 0.51, 0.30}, 5, 3, 0.0, 0},
        {{0.10, 0.10, 0.10}, 3, 1, 0.0, 2},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        pt_early_stop es;
        pt_early_stop_init(&es);
        int stopped = 0;
        for (int e = 0; e < cases[c].n && !stopped; e++)
            if (pt_early_stop_update(&es, cases[c].v[e], cases[c].delta, cases[c].patience)) stopped = e + 1;
        CHECKF(stopped == cases[c].stop_at, "case %zu: stopped at epoch %d, expected %d", c, stopped,
               cases[c].stop_at);
    }
    pt_early_stop es;
    pt_early_stop_init(&es);
    CHECK(!pt_early_stop_update(&es, 0.0, 0.0, 1) && es.best == 0.0); /* any first value is the best */
}

/* ---------------------------------------------------------------- (c) resume */

/* Ctrl-C (should_stop) part way through epoch 2 and during epoch 1's evaluation: each time
 * last/ is saved at that point, and the run resumed from it ends bitwise as the straight
 * run with the same epoch metrics; a source that cannot seek is refused by name. */
static void test_interrupt_mid_epoch_and_in_evaluation_resume_bitwise(void)
{
    dataset tr = make_data(100, 5), va = make_data(40, 6);
    mem_source ts, vs;
    ms_init(&ts, &tr, 16, 1, 7);
    ms_init(&vs, &va, 16, 0, 7);
    ts.seekable = 1;
    pt_net *net = make_net(NET_RESIDUAL);
    pt_replica *full = make_replica(net, dev0, 16, 7);
    pt_error err;
    pt_train_options o = test_options(at("straight"), 3, 16, 0.05);
    o.schedule = PT_SCHED_COSINE;
    recorder ref;
    memset(&ref, 0, sizeof ref);
    pt_status st = full ? run_trainer(&full, 1, &ts, &vs, &o, &ref, NULL, &err) : PT_ERR_NOMEM;
    CHECKF(st == PT_OK && ref.n == 3, "%s", err.msg);
    state a = read_state(full);
    /* should_stop is polled before each of an epoch's 7 steps and its end (8 per epoch),
     * then before each of 3 evaluation batches and the evaluation's end (4): call 14 is
     * before epoch 2's 2nd step (1 done), call 10 before the evaluation's 2nd batch. */
    const struct { int64_t call; const char *dir; int64_t epoch, epoch_step; } cases[] = {
        {14, "mid", 1, 1}, {10, "eval", 0, 7}};
    for (int c = 0; c < 2; c++) {
        pt_replica *r1 = make_replica(net, dev0, 16, 7), *r2 = make_replica(net, dev0, 16, 7);
        recorder rec, rec2;
        memset(&rec, 0, sizeof rec);
        memset(&rec2, 0, sizeof rec2);
        rec.stop_at_call = cases[c].call;
        o.out_dir = at(cases[c].dir);
        o.resume = 0;
        st = r1 && r2 ? run_trainer(&r1, 1, &ts, &vs, &o, &rec, NULL, &err) : PT_ERR_NOMEM;
        CHECKF(st == PT_ERR_INTERRUPTED && strstr(err.msg, "saved there") && strstr(err.msg, "--resume"), "%s: %s",
               cases[c].dir, err.msg);
        CHECKF(c == 0 || (strstr(err.msg, "before its evaluation") && rec.eval_batches == 1), "%s (%lld batches)",
               err.msg, (long long)rec.eval_batches);
        char last[512];
        snprintf(last, sizeof last, "%s/last", cases[c].dir);
        pt_replica *probe = make_replica(net, dev0, 16, 1);
        pt_train_progress pr;
        st = probe ? pt_checkpoint_load(at(last), probe, &pr, &err) : PT_ERR_NOMEM;
        CHECKF(st == PT_OK && pr.epoch == cases[c].epoch && pr.epoch_step == cases[c].epoch_step &&
                   pr.global_step == pr.epoch * 7 + pr.epoch_step && pr.epoch_seen == (pr.epoch_step == 7 ? 100 : 16),
               "%s: epoch %lld step %lld seen %lld: %s", cases[c].dir, (long long)pr.epoch, (long long)pr.epoch_step,
               (long long)pr.epoch_seen, err.msg);
        pt_replica_free(probe);
        o.resume = 1;
        st = run_trainer(&r2, 1, &ts, &vs, &o, &rec2, NULL, &err);
        CHECKF(st == PT_OK, "%s resume: %s", cases[c].dir, err.msg);
        state b = read_state(r2);
        CHECKF(bitwise_same(net, &a, &b), "%s: resumed run differs from the straight one", cases[c].dir);
        free_state(&b);
        /* the epoch continued from the checkpoint reports what the straight run's did */
        const pt_epoch_metrics *m = rec2.n ? &rec2.m[0] : NULL, *r = m ? &ref.m[m->epoch - 1] : NULL;
        CHECKF(m && m->epoch == cases[c].epoch + 1 && m->resumed_mid_epoch && m->train_loss == r->train_loss &&
                   m->train_acc == r->train_acc && m->val_loss == r->val_loss && rec.n + rec2.n == 3,
               "%s: epoch %lld train loss %.17g vs %.17g", cases[c].dir, m ? (long long)m->epoch : -1LL,
               m ? m->train_loss : 0, r ? r->train_loss : 0);
        pt_replica_free(r1);
        pt_replica_free(r2);
    }
    /* a mid-epoch checkpoint with a source that cannot start part way: refused, said why */
    pt_replica *r3 = make_replica(net, dev0, 16, 7), *r4 = make_replica(net, dev0, 16, 7);
    recorder rec;
    memset(&rec, 0, sizeof rec);
    rec.stop_at_call = 3;
    o.out_dir = at("noseek");
    o.resume = 0;
    st = r3 && r4 ? run_trainer(&r3, 1, &ts, &vs, &o, &rec, NULL, &err) : PT_ERR_NOMEM;
    CHECKF(st == PT_ERR_INTERRUPTED, "%s", err.msg);
    ts.seekable = 0;
    o.resume = 1;
    st = r4 ? run_trainer(&r4, 1, &ts, &vs, &o, NULL, NULL, &err) : PT_ERR_NOMEM;
    CHECKF(st == PT_ERR_INVALID && strstr(err.msg, "cannot start an epoch part way"), "%s", err.msg);
    pt_replica_free(r3);
    pt_replica_free(r4);
    free_state(&a);
    pt_replica_free(full);
    pt_net_free(net);
    ms_free(&ts);
    ms_free(&vs);
    free_data(&tr);
    free_data(&va);
}

static void test_stop_and_resume_matches_an_uninterrupted_run(void)
{
    dataset tr = make_data(100, 5), va = make_data(30, 6);
    mem_source ts, vs;
    ms_init(&ts, &tr, 16, 1, 7);
    ms_init(&vs, &va, 16, 0, 7);
    pt_net *net = make_net(NET_RESIDUAL);
    pt_replica *full = make_replica(net, dev0, 16, 7);
    pt_replica *part = make_replica(net, dev0, 16, 7);
    pt_replica *resumed = make_replica(net, dev0, 16, 7);
    if (full && part && resumed) {
        pt_error err;
        pt_train_options o = test_options(at("full"), 3, 16, 0.05);
        o.schedule = PT_SCHED_COSINE; /* the resumed run must pick up the schedule position */
        pt_status st = run_trainer(&full, 1, &ts, &vs, &o, NULL, NULL, &err);
        CHECKF(st == PT_OK, "%s", err.msg);

        o.out_dir = at("part");
        o.stop_after_epoch = 1;
        pt_trainer *t = NULL;
        st = run_trainer(&part, 1, &ts, &vs, &o, NULL, &t, &err);
        CHECKF(st == PT_OK, "%s", err.msg);
        CHECK(t && pt_trainer_stopped_early(t));
        pt_trainer_free(t);
        int64_t ep[8];
        CHECK(metrics_epochs(at("part"), ep, 8) == 1);

        /* A metrics line of an epoch whose checkpoint was lost (crash) must not survive. */
        FILE *f = fopen(at("part/metrics.jsonl"), "a");
        if (f) {
            fputs("{\"epoch\":2,\"train_loss\":9}\n", f);
            fclose(f);
        }
        o.stop_after_epoch = 0;
        o.resume = 1;
        recorder rec;
        memset(&rec, 0, sizeof rec);
        st = run_trainer(&resumed, 1, &ts, &vs, &o, &rec, &t, &err);
        CHECKF(st == PT_OK, "%s", err.msg);
        CHECK(t && pt_trainer_start_epoch(t) == 1 && !pt_trainer_stopped_early(t));
        pt_trainer_free(t);
        CHECK(rec.n == 2 && rec.m[0].epoch == 2 && rec.m[1].epoch == 3);

        state a = read_state(full), b = read_state(resumed);
        CHECK(bitwise_same(net, &a, &b));
        CHECK(pt_replica_bn_steps(full) == pt_replica_bn_steps(resumed));
        free_state(&a);
        free_state(&b);
        int n = metrics_epochs(at("part"), ep, 8);
        CHECKF(n == 3 && ep[0] == 1 && ep[1] == 2 && ep[2] == 3, "%d lines", n);

        /* The two runs' last/ checkpoints are the same too. */
        pt_replica *ra = make_replica(net, dev0, 16, 1), *rb = make_replica(net, dev0, 16, 2);
        pt_train_progress pa, pb;
        CHECK(pt_checkpoint_load(at("full/last"), ra, &pa, &err) == PT_OK);
        CHECK(pt_checkpoint_load(at("part/last"), rb, &pb, &err) == PT_OK);
        state sa = read_state(ra), sb = read_state(rb);
        CHECK(bitwise_same(net, &sa, &sb));
        CHECK(pa.epoch == 3 && pb.epoch == 3 && pa.global_step == 21 && pb.global_step == 21);
        free_state(&sa);
        free_state(&sb);
        pt_replica_free(ra);
        pt_replica_free(rb);
    }
    pt_replica_free(full);
    pt_replica_free(part);
    pt_replica_free(resumed);
    pt_net_free(net);
    ms_free(&ts);
    ms_free(&vs);
    free_data(&tr);
    free_data(&va);
}

static void test_resume_refuses_another_seed_or_step_count(void)
{
    dataset tr = make_data(48, 5), va = make_data(16, 6);
    mem_source ts, vs;
    ms_init(&ts, &tr, 16, 1, 7);
    ms_init(&vs, &va, 16, 0, 7);
    pt_net *net = make_net(NET_PLAIN);
    pt_replica *r = make_replica(net, dev0, 16, 7);
    if (r) {
        pt_error err;
        pt_train_options o = test_options(at("refuse"), 2, 16, 0.05);
        o.stop_after_epoch = 1;
        CHECK(run_trainer(&r, 1, &ts, &vs, &o, NULL, NULL, &err) == PT_OK);
        o.stop_after_epoch = 0;
        o.resume = 1;
        o.seed = 8;
        pt_status st = run_trainer(&r, 1, &ts, &vs, &o, NULL, NULL, &err);
        CHECKF(st == PT_ERR_MISMATCH && strstr(err.msg, "seed"), "%s", err.msg);
        o.seed = 7;
        ts.batch = 8; /* twice the steps per epoch */
        st = run_trainer(&r, 1, &ts, &vs, &o, NULL, NULL, &err);
        CHECKF(st == PT_ERR_MISMATCH && strstr(err.msg, "steps per epoch"), "%s", err.msg);
        ts.batch = 16;
        o.out_dir = at("refuse_nothing_there");
        st = run_trainer(&r, 1, &ts, &vs, &o, NULL, NULL, &err);
        CHECKF(st != PT_OK && strstr(err.msg, "resume"), "%s", err.msg);
    }
    pt_replica_free(r);
    pt_net_free(net);
    ms_free(&ts);
    ms_free(&vs);
    free_data(&tr);
    free_data(&va);
}

/* ---------------------------------------------------------------- (d) divergence */

/* Trains one good epoch into out, then resumes with lr 1e30: the run must stop with a
 * "diverged" error and out/last must still hold the good epoch's finite weights. */
static void check_divergence_keeps_last(int64_t samples, const char *out)
{
    dataset tr = make_data(samples, 5), va = make_data(16, 6);
    mem_source ts, vs;
    ms_init(&ts, &tr, 16, 1, 7);
    ms_init(&vs, &va, 16, 0, 7);
    pt_net *net = make_net(NET_PLAIN);
    pt_replica *r = make_replica(net, dev0, 16, 7);
    if (r) {
        pt_error err;
        pt_train_options o = test_options(out, 3, 16, 0.05);
        o.stop_after_epoch = 1;
        CHECK(run_trainer(&r, 1, &ts, &vs, &o, NULL, NULL, &err) == PT_OK);
        state good = read_state(r);
        o.stop_after_epoch = 0;
        o.resume = 1;
        o.lr = 1e30;
        pt_status st = run_trainer(&r, 1, &ts, &vs, &o, NULL, NULL, &err);
        CHECKF(st != PT_OK && strstr(err.msg, "diverged"), "%s: %s", pt_status_name(st), err.msg);
        char last[1100];
        snprintf(last, sizeof last, "%s/last", out);
        pt_replica *check = make_replica(net, dev0, 16, 1);
        pt_train_progress p;
        pt_error_clear(&err);
        st = pt_checkpoint_load(last, check, &p, &err);
        CHECKF(st == PT_OK, "%s", err.msg);
        if (st == PT_OK) {
            state s = read_state(check);
            CHECK(all_finite(net, &s));
            CHECK(bitwise_same(net, &good, &s));
            CHECK(p.epoch == 1);
            free_state(&s);
        }
        int64_t ep[8];
        CHECK(metrics_epochs(out, ep, 8) == 1);
        pt_replica_free(check);
        free_state(&good);
    }
    pt_replica_free(r);
    pt_net_free(net);
    ms_free(&ts);
    ms_free(&vs);
    free_data(&tr);
    free_data(&va);
}

static void test_divergence_stops_without_overwriting_last(void)
{
    check_divergence_keeps_last(64, at("diverge"));
}

/* One step per epoch: the update that blows up is the epoch's last, so the loss of the
 * step itself is still finite; the checkpoint must be refused all the same. */
static void test_divergence_in_the_last_step_of_an_epoch_keeps_last(void)
{
    check_divergence_keeps_last(16, at("diverge1"));
}

static void test_divergence_from_the_start_fails_cleanly(void)
{
    dataset tr = make_data(64, 5), va = make_data(16, 6);
    mem_source ts, vs;
    ms_init(&ts, &tr, 16, 1, 7);
    ms_init(&vs, &va, 16, 0, 7);
    pt_net *net = make_net(NET_PLAIN);
    pt_replica *r = make_replica(net, dev0, 16, 7);
    if (r) {
        pt_error err;
        pt_train_options o = test_options(at("diverge0"), 2, 16, 1e30);
        pt_status st = run_trainer(&r, 1, &ts, &vs, &o, NULL, NULL, &err);
        CHECKF(st != PT_OK && strstr(err.msg, "diverged"), "%s", err.msg);
        CHECK(!pt_path_exists(at("diverge0/last")));
    }
    pt_replica_free(r);
    pt_net_free(net);
    ms_free(&ts);
    ms_free(&vs);
    free_data(&tr);
    free_data(&va);
}

/* ---------------------------------------------------------------- (e) evaluation */

/* Float64 softmax cross-entropy of one row. */
static double xent(const float *row, int label)
{
    double m = row[0], s = 0;
    for (int c = 1; c < K; c++) m = row[c] > m ? row[c] : m;
    for (int c = 0; c < K; c++) s += exp(row[c] - m);
    return log(s) + m - row[label];
}

static void check_evaluation_covers(int first_batch, const char *what)
{
    dataset va = make_data(100, 9);
    mem_source vs;
    ms_init(&vs, &va, 16, 1, 3); /* shuffled: logits must still come back in source order */
    vs.first_batch = first_batch;
    pt_net *net = make_net(NET_PLAIN);
    pt_replica *r = make_replica(net, dev0, 16, 7);
    pt_error err;
    pt_error_clear(&err);
    if (r && pt_replica_init_params(r, 7, &err) == PT_OK) {
        float *logits = malloc(100 * K * sizeof(float));
        for (int i = 0; i < 100 * K; i++) logits[i] = NAN;
        pt_eval_result res;
        pt_status st = pt_evaluate(r, ms_source(&vs), &res, logits, &err);
        CHECKF(st == PT_OK, "%s: %s", what, err.msg);
        CHECKF(res.count == 100, "%s: count %lld", what, (long long)res.count);
        int once = 1;
        for (int i = 0; i < 100; i++) once &= vs.delivered[i] == 1;
        CHECK(once);
        /* logits_out row j is the j-th sample the source delivered (order[j]): compare
         * with a batch-of-1 evaluation of that sample, and recompute loss and top-1. */
        double worst = 0, loss = 0;
        int64_t hits = 0;
        int finite = 1;
        for (int j = 0; j < 100; j++) {
            int64_t s = vs.order[j];
            float one[K], l1;
            CHECK(pt_replica_eval(r, va.x + s * XS, va.y + s, 1, one, &l1, &err) == PT_OK);
            double d = 0, n = 0;
            for (int c = 0; c < K; c++) {
                if (!isfinite(logits[j * K + c])) finite = 0;
                d += ((double)logits[j * K + c] - one[c]) * ((double)logits[j * K + c] - one[c]);
                n += (double)one[c] * one[c];
            }
            double e = sqrt(d) / (sqrt(n) + 1e-30);
            if (!(e <= worst)) worst = e;
            loss += xent(logits + j * K, va.y[s]);
            hits += pt_topk_hits(logits + j * K, va.y + s, 1, K, 1);
        }
        CHECK(finite);
        CHECKF(worst < 1e-5, "%s: logits differ from single-sample eval by %g", what, worst);
        CHECKF(fabs(res.loss - loss / 100) <= 1e-5 * fabs(loss / 100), "%s: loss %g vs %g", what, res.loss,
               loss / 100);
        CHECKF(fabs(res.top1 - (double)hits / 100) < 1e-12, "%s: top1 %g vs %g", what, res.top1,
               (double)hits / 100);
        CHECK(res.top5 == 1.0);
        free(logits);
    }
    pt_replica_free(r);
    pt_net_free(net);
    ms_free(&vs);
    free_data(&va);
}

static void test_evaluation_covers_every_sample_once_with_a_short_last_batch(void)
{
    check_evaluation_covers(0, "batches 16 x 6 + 4");
}

static void test_evaluation_handles_a_short_first_batch(void)
{
    check_evaluation_covers(3, "batches 3 + 16 x 6 + 1");
}

static void test_trainer_lr_follows_the_schedule_per_step(void)
{
    dataset tr = make_data(100, 5), va = make_data(16, 6);
    mem_source ts, vs;
    ms_init(&ts, &tr, 16, 1, 7); /* 7 steps per epoch */
    ms_init(&vs, &va, 16, 0, 7);
    pt_net *net = make_net(NET_PLAIN);
    pt_replica *r = make_replica(net, dev0, 16, 7);
    if (r) {
        pt_train_options o = test_options(at("sched"), 10, 16, 0.1);
        o.schedule = PT_SCHED_ONECYCLE;
        pt_model_meta meta = test_meta();
        pt_trainer *t = NULL;
        pt_error err;
        pt_error_clear(&err);
        CHECKF(pt_trainer_create(&r, 1, &meta, ms_source(&ts), ms_source(&vs), &o, &t, &err) == PT_OK, "%s",
               err.msg);
        if (t) {
            /* 70 steps: peak at step 0.3 * 70 - 1 = 20, min_lr at step 69 */
            CHECK(fabs(pt_trainer_lr_at(t, 0) - 0.004) < 1e-12);
            CHECK(fabs(pt_trainer_lr_at(t, 20) - 0.1) < 1e-12);
            CHECK(fabs(pt_trainer_lr_at(t, 69) - 4e-7) < 1e-15);
        }
        pt_trainer_free(t);
        o.schedule = PT_SCHED_COSINE;
        o.warmup_epochs = 1;
        t = NULL;
        CHECK(pt_trainer_create(&r, 1, &meta, ms_source(&ts), ms_source(&vs), &o, &t, &err) == PT_OK);
        if (t) {
            CHECK(fabs(pt_trainer_lr_at(t, 0) - 0.1 / 7) < 1e-12); /* warmup of one epoch = 7 steps */
            CHECK(fabs(pt_trainer_lr_at(t, 6) - 0.1) < 1e-12);
            CHECK(fabs(pt_trainer_lr_at(t, 7) - 0.1) < 1e-12);
        }
        pt_trainer_free(t);
    }
    pt_replica_free(r);
    pt_net_free(net);
    ms_free(&ts);
    ms_free(&vs);
    free_data(&tr);
    free_data(&va);
}

int main(void)
{
    const char *base = getenv("PT_TEST_TMP");
    if (!base || !base[0]) base = "/tmp";
    snprintf(root, sizeof root, "%s/test_trainer.%ld", base, (long)getpid());
    pt_error err;
    pt_error_clear(&err);
    pt_device_options dopt = {.threads = 1, .deterministic = 1};
    if (pt_remove_tree(root, &err) != PT_OK || pt_mkdir_p(root, &err) != PT_OK ||
        pt_device_open("cpu", 0, NULL, &dev0, &err) != PT_OK ||
        pt_device_open("cpu", 0, &dopt, &dev1, &err) != PT_OK) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return 1;
    }
    RUN(test_training_overfits_a_small_dataset);
    RUN(test_training_overfits_with_a_residual_block);
    RUN(test_two_replicas_of_8_follow_one_replica_of_16);
    RUN(test_a_last_batch_of_one_leaves_the_second_replica_idle);
    RUN(test_two_replicas_with_batchnorm_train_and_stay_identical);
    RUN(test_batch_larger_than_the_devices_hold_is_an_error);
    RUN(test_every_batch_size_up_to_capacity_runs);
    RUN(test_accumulation_without_batchnorm_equals_the_large_batch);
    RUN(test_early_stopping_on_scripted_sequences);
    RUN(test_stop_and_resume_matches_an_uninterrupted_run);
    RUN(test_interrupt_mid_epoch_and_in_evaluation_resume_bitwise);
    RUN(test_resume_refuses_another_seed_or_step_count);
    RUN(test_divergence_stops_without_overwriting_last);
    RUN(test_divergence_in_the_last_step_of_an_epoch_keeps_last);
    RUN(test_divergence_from_the_start_fails_cleanly);
    RUN(test_evaluation_covers_every_sample_once_with_a_short_last_batch);
    RUN(test_evaluation_handles_a_short_first_batch);
    RUN(test_trainer_lr_follows_the_schedule_per_step);
    pt_device_close(dev0);
    pt_device_close(dev1);
    if (pt_t_fail == 0) pt_remove_tree(root, NULL);
    TEST_EXIT();
}
