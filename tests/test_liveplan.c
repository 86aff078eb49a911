/* The replica's memory plan and op rewrites: pt_live_assign never overlaps two ranges that
 * are in use at the same time (random live ranges in two sequences), and reuses memory when
 * it can; a replica of every zoo model trains and evaluates bit for bit like one that gives
 * every activation its own range (PT_ACT_SHARE=0), with less device memory, and like one
 * that runs every ReLU and residual add as its own op (no_fuse_relu, --fuse off). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/liveplan.h"
#include "polytrain/polytrain.h"
#include "core/rng.h"
#include "polytrain/models.h"
#include "pt_test.h"

static int live_in(const pt_live_item *a, int l) { return a->first[l] <= a->last[l]; }

static int clash(const pt_live_item *a, const pt_live_item *b)
{
    for (int l = 0; l < PT_LIVE_TIMELINES; l++)
        if (live_in(a, l) && live_in(b, l) && a->first[l] <= b->last[l] && b->first[l] <= a->last[l]) return 1;
    return 0;
}

static void test_live_ranges_in_use_together_never_overlap(void)
{
    enum { N = 60, ROUNDS = 200 };
    pt_live_item it[N];
    uint64_t seed = (uint64_t)time(NULL);
    int bad = 0, shared = 0;
    for (int round = 0; round < ROUNDS; round++) {
        size_t sum = 0;
        for (int i = 0; i < N; i++) {
            memset(&it[i], 0, sizeof it[i]);
            it[i].bytes = 64 * (1 + pt_rng_below(seed, PT_RNG_SPLIT, (uint64_t)round, (uint64_t)i, 0, 40));
            sum += it[i].bytes;
            for (int l = 0; l < PT_LIVE_TIMELINES; l++) {
                it[i].first[l] = 1, it[i].last[l] = 0;
                /* sometimes unused in a sequence; otherwise touched 1..3 times */
                if (pt_rng_below(seed, PT_RNG_SPLIT, (uint64_t)round, (uint64_t)i, (uint64_t)(1 + l), 5) == 0) continue;
                int touches = 1 + (int)pt_rng_below(seed, PT_RNG_SPLIT, (uint64_t)round, (uint64_t)i, (uint64_t)(3 + l), 3);
                for (int t = 0; t < touches; t++)
                    pt_live_touch(&it[i], l, (long)pt_rng_below(seed, PT_RNG_SPLIT, (uint64_t)round,
                                                                (uint64_t)(i * 8 + t), (uint64_t)(5 + l), 100));
            }
            it[i].off = (size_t)-7; /* poison: every item must be placed */
        }
        size_t total = pt_live_assign(it, N);
        CHECK(total != (size_t)-1 && total <= sum);
        for (int i = 0; i < N; i++) {
            if (it[i].off % 64 || it[i].off + it[i].bytes > total) bad++;
            for (int j = i + 1; j < N; j++) {
                int overlap = it[i].off < it[j].off + it[j].bytes && it[j].off < it[i].off + it[i].bytes;
                if (overlap && clash(&it[i], &it[j])) bad++;
                if (overlap) shared++;
            }
        }
        /* no placement can be smaller than the bytes in use at the busiest position */
        for (int l = 0; l < PT_LIVE_TIMELINES; l++)
            for (long p = 0; p < 100; p++) {
                size_t busy = 0;
                for (int i = 0; i < N; i++)
                    if (live_in(&it[i], l) && it[i].first[l] <= p && p <= it[i].last[l]) busy += it[i].bytes;
                CHECKF(busy <= total, "round %d: %zu bytes live at position %ld, region %zu", round, busy, p, total);
            }
    }
    CHECKF(bad == 0, "%d misplaced or overlapping pairs (seed %llu)", bad, (unsigned long long)seed);
    CHECKF(shared > 0, "no memory was ever shared over %d rounds", ROUNDS);
}

static void test_a_chain_reuses_the_first_range(void)
{
    /* a [0,1], b [1,2], c [2,3]: c may take a's bytes, b may not */
    pt_live_item it[3];
    memset(it, 0, sizeof it);
    for (int i = 0; i < 3; i++) {
        it[i].bytes = 128;
        it[i].first[1] = 1, it[i].last[1] = 0;
        it[i].first[0] = i, it[i].last[0] = i + 1;
    }
    CHECK(pt_live_assign(it, 3) == 256);
    CHECK(it[0].off == 0 && it[1].off == 128 && it[2].off == 0);
    /* the same in use together in the second sequence: no sharing */
    it[2].first[1] = 0, it[2].last[1] = 5, it[0].first[1] = 3, it[0].last[1] = 3;
    CHECK(pt_live_assign(it, 3) == 384);
}

enum { B = 4, C = 1, H = 28, W = 28, K = 10 };

typedef struct run_out {
    float logits[2][B * K], loss[2][B], eval_logits[B * K];
    float *params, *buffers; /* parameters, then BN running statistics */
    int64_t nparams, nbuffers;
    size_t bytes;
} run_out;

static int train_two_steps(pt_device *dev, const pt_net *net, const float *x, const int32_t *y, int no_fuse,
                           run_out *o, pt_error *err)
{
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
    oc.momentum = 0.9f;
    pt_replica *r = NULL;
    const pt_replica_options ro = {.no_fuse_relu = no_fuse};
    if (pt_replica_create_ex(net, dev, B, &oc, 5, &ro, &r, err) != PT_OK) return 0;
    int ok = pt_replica_init_params(r, 5, err) == PT_OK;
    for (int s = 0; ok && s < 2; s++)
        ok = pt_replica_forward_backward(r, x, y, B, 0, s, 1.0f / B, o->logits[s], o->loss[s], err) == PT_OK &&
             pt_replica_update(r, 0.05f, s + 1, err) == PT_OK;
    ok = ok && pt_replica_eval(r, x, y, B, o->eval_logits, NULL, err) == PT_OK;
    o->nparams = pt_replica_param_region(r);
    o->nbuffers = pt_replica_buffer_region(r);
    o->params = malloc((size_t)o->nparams * sizeof(float));
    o->buffers = malloc((size_t)(o->nbuffers + 1) * sizeof(float));
    ok = ok && o->params && o->buffers && pt_replica_read_state(r, o->params, o->buffers, NULL, err) == PT_OK;
    o->bytes = pt_replica_device_bytes(r);
    pt_replica_free(r);
    return ok;
}

static void test_every_model_trains_bitwise_alike_with_shared_memory_and_fused_relus(void)
{
    pt_error err;
    pt_device *dev = NULL;
    if (pt_device_open("cpu", 0, NULL, &dev, &err) != PT_OK) {
        CHECKF(0, "cpu device: %s", err.msg);
        return;
    }
    static float x[B * C * H * W];
    int32_t y[B];
    uint64_t seed = (uint64_t)time(NULL);
    for (int i = 0; i < B * C * H * W; i++) x[i] = pt_rng_normal(seed, PT_RNG_SPLIT, 1, (uint64_t)i, 0);
    for (int i = 0; i < B; i++) y[i] = (int32_t)pt_rng_below(seed, PT_RNG_SPLIT, 2, (uint64_t)i, 0, K);
    for (const pt_model_entry *m = pt_models(); m->name; m++) {
        /* resnet34 and wide_resnet18 are resnet18's layers again, at 2x and 4x the work
         * (minutes under the sanitizers): every layer kind is in the others */
        if (!strcmp(m->name, "resnet34") || !strcmp(m->name, "wide_resnet18")) continue;
        pt_net *net = NULL;
        if (pt_model_build(m->name, C, H, W, K, &net, &err) != PT_OK) {
            CHECKF(0, "%s: %s", m->name, err.msg);
            continue;
        }
        run_out *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b), *f = calloc(1, sizeof *f);
        unsetenv("PT_ACT_SHARE");
        int oka = train_two_steps(dev, net, x, y, 0, a, &err);
        CHECKF(oka, "%s shared: %s", m->name, err.msg);
        setenv("PT_ACT_SHARE", "0", 1);
        int okb = train_two_steps(dev, net, x, y, 0, b, &err);
        unsetenv("PT_ACT_SHARE");
        CHECKF(okb, "%s separate: %s", m->name, err.msg);
        int okf = train_two_steps(dev, net, x, y, 1, f, &err);
        CHECKF(okf, "%s unfused: %s", m->name, err.msg);
        if (oka && okb && okf) {
            int finite = 1;
            for (int i = 0; i < B * K; i++) finite &= isfinite(a->logits[1][i]) && isfinite(a->eval_logits[i]);
            CHECKF(finite, "%s: NaN or infinity in the logits", m->name);
            const run_out *other[2] = {b, f};
            const char *what[2] = {"separate activations", "ReLUs not fused"};
            for (int v = 0; v < 2; v++) {
                const run_out *o = other[v];
                CHECKF(memcmp(a->logits, o->logits, sizeof a->logits) == 0 && memcmp(a->loss, o->loss, sizeof a->loss) == 0,
                       "%s: training logits or losses differ with %s", m->name, what[v]);
                CHECKF(memcmp(a->eval_logits, o->eval_logits, sizeof a->eval_logits) == 0,
                       "%s: evaluation logits differ with %s", m->name, what[v]);
                CHECKF(a->nparams == o->nparams && memcmp(a->params, o->params, (size_t)a->nparams * sizeof(float)) == 0,
                       "%s: parameters after two updates differ with %s", m->name, what[v]);
                CHECKF(memcmp(a->buffers, o->buffers, (size_t)a->nbuffers * sizeof(float)) == 0,
                       "%s: BN running statistics differ with %s", m->name, what[v]);
            }
            /* a residual block's last BN output feeds only the add, which keeps nothing for its
             * backward: every resnet frees memory (the plain baseline keeps all it makes) */
            if (strstr(m->name, "resnet"))
                CHECKF(a->bytes < b->bytes, "%s: %zu bytes with sharing, %zu without", m->name, a->bytes, b->bytes);
            else
                CHECKF(a->bytes <= b->bytes, "%s: %zu bytes with sharing, %zu without", m->name, a->bytes, b->bytes);
            printf("  %s: %.2f MiB of device memory at batch %d, %.2f MiB without sharing\n", m->name,
                   a->bytes / 1048576.0, B, b->bytes / 1048576.0);
        }
        free(a->params), free(b->params), free(f->params), free(a->buffers), free(b->buffers), free(f->buffers);
        free(a), free(b), free(f);
        pt_net_free(net);
    }
    pt_device_close(dev);
}

/* Counts in r's training forward: residual adds, batch-norm forwards carrying the residual z,
 * and those with the ReLU fused as well. */
static void count_folds(const pt_replica *r, int *adds, int *with_z, int *with_z_relu)
{
    int n = 0;
    const pt_op *ops = pt_replica_ops(r, PT_LIST_FORWARD, &n);
    *adds = *with_z = *with_z_relu = 0;
    for (int i = 0; i < n; i++) {
        *adds += ops[i].kind == PT_OP_ADD;
        if (ops[i].kind == PT_OP_BN_FWD_TRAIN && ops[i].nt == 9) {
            ++*with_z;
            *with_z_relu += ops[i].fuse_relu;
        }
    }
}

/* resnet18's eight residual adds fold into the batch norm before each (with the ReLU after
 * them) on every backend that has the form; the BN outputs they replace take no memory; and
 * opencl (the shared kernels' residual) trains bit for bit as with every add its own op. */
static void test_residual_adds_fold_into_the_batch_norm_before_them(void)
{
    pt_error err;
    pt_net *net = NULL;
    if (pt_model_build("resnet18", 3, 16, 16, K, &net, &err) != PT_OK) {
        CHECKF(0, "resnet18: %s", err.msg);
        return;
    }
    static float x[B * 3 * 16 * 16];
    int32_t y[B];
    uint64_t seed = (uint64_t)time(NULL);
    for (int i = 0; i < B * 3 * 16 * 16; i++) x[i] = pt_rng_normal(seed, PT_RNG_SPLIT, 1, (uint64_t)i, 0);
    for (int i = 0; i < B; i++) y[i] = (int32_t)pt_rng_below(seed, PT_RNG_SPLIT, 2, (uint64_t)i, 0, K);
    const char *backends[2] = {"cpu", "opencl"};
    for (int bi = 0; bi < 2; bi++) {
        pt_device *dev = NULL;
        if (pt_device_open(backends[bi], 0, NULL, &dev, &err) != PT_OK) {
            if (bi == 0) CHECKF(0, "cpu device: %s", err.msg);
            else printf("  opencl: no device (%s)\n", err.msg);
            continue;
        }
        pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
        int counts[2][3] = {{0}};
        pt_act_plan plan[2];
        for (int no_fuse = 0; no_fuse < 2; no_fuse++) {
            const pt_replica_options ro = {.no_fuse_relu = no_fuse};
            pt_replica *r = NULL;
            if (pt_replica_create_ex(net, dev, B, &oc, 5, &ro, &r, &err) != PT_OK) {
                CHECKF(0, "%s %s: %s", backends[bi], no_fuse ? "unfused" : "fused", err.msg);
                continue;
            }
            count_folds(r, &counts[no_fuse][0], &counts[no_fuse][1], &counts[no_fuse][2]);
            pt_replica_act_plan(r, &plan[no_fuse]);
            pt_replica_free(r);
        }
        CHECKF(counts[0][0] == 0 && counts[0][1] == 8 && counts[0][2] == 8,
               "%s fused: %d adds, %d BNs with z (%d with the ReLU), expected 0, 8, 8", backends[bi], counts[0][0],
               counts[0][1], counts[0][2]);
        CHECKF(counts[1][0] == 8 && counts[1][1] == 0, "%s unfused: %d adds, %d BNs with z, expected 8, 0",
               backends[bi], counts[1][0], counts[1][1]);
        CHECKF(plan[0].nacts == plan[1].nacts - 8, "%s: %d activations stored fused, %d unfused (expected 8 fewer)",
               backends[bi], plan[0].nacts, plan[1].nacts);
        if (bi == 1) {
            run_out *a = calloc(1, sizeof *a), *f = calloc(1, sizeof *f);
            const int oka = a && train_two_steps(dev, net, x, y, 0, a, &err);
            CHECKF(oka, "opencl fused: %s", err.msg);
            const int okf = f && train_two_steps(dev, net, x, y, 1, f, &err);
            CHECKF(okf, "opencl unfused: %s", err.msg);
            if (oka && okf) {
                int finite = 1;
                for (int i = 0; i < B * K; i++) finite &= isfinite(a->logits[1][i]) && isfinite(a->eval_logits[i]);
                CHECKF(finite, "opencl resnet18: NaN or infinity in the logits");
                CHECKF(memcmp(a->logits, f->logits, sizeof a->logits) == 0 && memcmp(a->loss, f->loss, sizeof a->loss) == 0 &&
                           memcmp(a->eval_logits, f->eval_logits, sizeof a->eval_logits) == 0,
                       "opencl resnet18: logits or losses differ with the adds unfused");
                CHECKF(a->nparams == f->nparams && memcmp(a->params, f->params, (size_t)a->nparams * sizeof(float)) == 0 &&
                           memcmp(a->buffers, f->buffers, (size_t)a->nbuffers * sizeof(float)) == 0,
                       "opencl resnet18: parameters or BN statistics differ with the adds unfused");
            }
            if (a) free(a->params), free(a->buffers);
            if (f) free(f->params), free(f->buffers);
            free(a), free(f);
        }
        pt_device_close(dev);
    }
    pt_net_free(net);
}

int main(void)
{
    RUN(test_live_ranges_in_use_together_never_overlap);
    RUN(test_a_chain_reuses_the_first_range);
    RUN(test_every_model_trains_bitwise_alike_with_shared_memory_and_fused_relus);
    RUN(test_residual_adds_fold_into_the_batch_norm_before_them);
    TEST_EXIT();
}
