/* The device group (see group.h): persistent worker threads, one per device, and a
 * communication thread that performs the step's reductions ("events") strictly in one
 * order, the order in which they appear in the op lists. That order is the same on every
 * device and every process, so collectives across processes always match, whatever the
 * timing of the threads. An event is a sync-BN statistics vector (forward or backward) or
 * a gradient bucket; a bucket becomes an event after the last backward op that writes
 * into it, so reducing it overlaps with the rest of backward. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/group.h"

#define DEFAULT_BUCKET_BYTES ((size_t)1 << 20)

typedef struct event {
    int bn;          /* sync-BN statistics (reduced at once, every op after waits) */
    size_t count;    /* floats */
    size_t stage;    /* float offset in the staging and sum arrays */
    pt_mem *mem;     /* per device: a gradient bucket's range of the slab */
    /* sync-BN statistics (list >= 0): operand `tensor` of op `op` of that list, read from the
     * replica's current list (an arena re-sized by pt_group_fit_workspace, or grown for a new
     * batch size, moves it) */
    int list, op, tensor;
    int bucket;               /* gradient bucket index, -1 for statistics */
    int ready_list, ready_op; /* the op after which a device has produced it (traces) */
} event;

enum { JOB_STEP = 1, JOB_EVAL = 2 };

struct pt_group {
    pt_replica **rep;
    int n;
    const pt_world *world;
    pt_world single;
    int64_t preg, breg;
    int slots;

    /* events, in processing order, and where they arise in the op lists */
    event *ev;
    int nev, nbuckets;
    pt_mem *evmem;
    int nfwd, nbwd;
    int *fwd_first, *fwd_cnt, *bwd_first, *bwd_cnt;
    float *stage; /* n x stage_floats */
    float *sum;
    size_t stage_floats;

    /* PT_FAULT_INJECT, for the tests of the checks that must catch these: 1 drop-bucket (the
     * first gradient bucket of a step and every direct all-reduce lose the other devices'
     * contributions), 2 diverge-replica (after every step the last device's first parameter
     * moves by 1e-3) */
    int fault;

    /* backend collectives */
    const pt_backend_iface *be;
    void *coll;
    pt_mem *callbufs; /* comm thread's argument array */

    /* threads */
    pthread_t *workers;
    int nworkers;
    pthread_t comm;
    int have_comm;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t job_gen, comm_gen;
    int job_kind, jobs_left, comm_running, stop;
    int *arrived, *done;
    int failed;
    pt_error fail_err;
    pt_error *werr;

    /* the step being run */
    const pt_group_slice *slices;
    int global_n;
    int64_t step;
    float scale, lr, mom;
    /* fp16 loss scaling: inv_scale 0 is off; found[d], device d's overflow answer */
    float inv_scale;
    int64_t updates_before;
    int *found;
    float clip;    /* > 0: clip the gradients' global norm to it */
    int micro, micro_count; /* gradient accumulation: this micro-batch of the step's count */
    const pt_group_slice *next; /* the next step's slices, staged during this one (or NULL) */
    /* pt_group_set_queued: the hooks, and this step's devices queued so far and whether the
     * fetch has run */
    pt_group_fetch_fn q_fetch;
    pt_group_stage_fn q_stage;
    void *q_user;
    int q_arrived, q_fetched;
    float ema;              /* > 0: the weight EMA's decay */
    double *norm;  /* per device: the last step's gradient norm */

    pt_trace *trace; /* the traced step only (pt_group_set_trace) */

    /* host copies for state operations (main thread only) */
    float *h_params, *h_opt, *h_bufs, *h_params2, *h_opt2, *h_bufs2;
};

typedef struct worker_arg {
    pt_group *g;
    int d;
} worker_arg;

int pt_group_size(const pt_group *g) { return g->n; }
const char *pt_group_reduction(const pt_group *g) { return g->coll ? "backend" : "host"; }
int pt_group_buckets(const pt_group *g) { return g->nbuckets; }

static int world_size(const pt_group *g) { return g->world->size; }

/* ---------------------------------------------------------------- events */

static void record_fail(pt_group *g, const pt_error *e, pt_status st)
{
    /* Caller holds the lock. The first failure is the one reported. */
    if (!g->failed) {
        g->failed = 1;
        if (e) g->fail_err = *e;
        else pt_fail(&g->fail_err, st, "device group: a step failed");
        if (g->fail_err.status == PT_OK) g->fail_err.status = st;
    }
    pthread_cond_broadcast(&g->cv);
}

static pt_status aborted(pt_error *err)
{
    return pt_fail(err, PT_ERR_BACKEND, "device group: stopped because another device failed");
}

/* Where event ev's floats are on device d. */
static pt_mem ev_mem(const pt_group *g, const event *ev, int d)
{
    if (ev->list < 0) return ev->mem[d];
    int n;
    return pt_replica_ops(g->rep[d], (pt_replica_list)ev->list, &n)[ev->op].t[ev->tensor].mem;
}

/* Device d has produced event e: the host path copies it to d's staging row first. */
static pt_status arrive(pt_group *g, int d, int e, pt_error *err)
{
    const event *ev = &g->ev[e];
    if (!g->coll) {
        const double t0 = g->trace ? pt_trace_now() : 0;
        PT_TRY(pt_device_read(pt_replica_device(g->rep[d]), g->stage + (size_t)d * g->stage_floats + ev->stage,
                              ev_mem(g, ev, d), ev->count * sizeof(float), err));
        if (g->trace) pt_trace_span(g->trace, d, "copy_to_host", "reduction", "event", e, t0, pt_trace_now());
    }
    pthread_mutex_lock(&g->mu);
    g->arrived[e]++;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    return PT_OK;
}

/* Device d waits for the communication thread to finish event e. */
static pt_status wait_done(pt_group *g, int d, int e, pt_error *err)
{
    pthread_mutex_lock(&g->mu);
    /* only a wait that blocks is worth a span */
    const int traced = g->trace && !g->done[e];
    const double t0 = traced ? pt_trace_now() : 0;
    while (!g->done[e] && !g->failed) pthread_cond_wait(&g->cv, &g->mu);
    int failed = !g->done[e];
    pthread_mutex_unlock(&g->mu);
    if (traced) pt_trace_span(g->trace, d, "wait_reduction", "wait", "event", e, t0, pt_trace_now());
    return failed ? aborted(err) : PT_OK;
}

/* Waits for a statistics event and, on the host path, writes the sum back to device d. */
static pt_status finish_bn_event(pt_group *g, int d, int e, pt_error *err)
{
    PT_TRY(wait_done(g, d, e, err));
    if (g->coll) return PT_OK;
    const event *ev = &g->ev[e];
    const double t0 = g->trace ? pt_trace_now() : 0;
    PT_TRY(pt_device_write(pt_replica_device(g->rep[d]), ev_mem(g, ev, d), g->sum + ev->stage,
                           ev->count * sizeof(float), err));
    if (g->trace) pt_trace_span(g->trace, d, "copy_from_host", "reduction", "event", e, t0, pt_trace_now());
    return PT_OK;
}

static int replica_index(const pt_group *g, const pt_replica *r)
{
    for (int d = 0; d < g->n; d++)
        if (g->rep[d] == r) return d;
    return -1;
}

static pt_status on_op(void *user, pt_replica *r, pt_replica_list which, int index, pt_error *err)
{
    pt_group *g = user;
    int d = replica_index(g, r);
    if (d < 0) return pt_fail(err, PT_ERR_INVALID, "device group: unknown replica");
    int first, cnt;
    if (which == PT_LIST_FORWARD) {
        if (index >= g->nfwd) return PT_OK;
        first = g->fwd_first[index];
        cnt = g->fwd_cnt[index];
    } else {
        if (index >= g->nbwd) return PT_OK;
        first = g->bwd_first[index];
        cnt = g->bwd_cnt[index];
    }
    for (int e = first; e < first + cnt; e++) {
        PT_TRY(arrive(g, d, e, err));
        if (g->ev[e].bn) PT_TRY(finish_bn_event(g, d, e, err));
    }
    return PT_OK;
}

/* The comm thread's work for one event: the sum over devices (host rows in device order,
 * so every device gets the same bits) and over processes. */
static pt_status reduce_event(pt_group *g, int e, pt_error *err)
{
    const event *ev = &g->ev[e];
    if (g->fault == 1 && !ev->bn && ev->stage == 0) {
        /* the injected fault: the first bucket is not summed (the backend path keeps each
         * device's own gradient, the host path device 0's) */
        if (!g->coll) memcpy(g->sum, g->stage, ev->count * sizeof(float));
        return PT_OK;
    }
    if (g->coll) {
        for (int d = 0; d < g->n; d++) g->callbufs[d] = ev_mem(g, ev, d);
        return g->be->group_allreduce_f32(g->coll, g->callbufs, ev->count, err);
    }
    float *sum = g->sum + ev->stage;
    memcpy(sum, g->stage + ev->stage, ev->count * sizeof(float));
    for (int d = 1; d < g->n; d++) {
        const float *row = g->stage + (size_t)d * g->stage_floats + ev->stage;
        for (size_t i = 0; i < ev->count; i++) sum[i] += row[i];
    }
    if (world_size(g) > 1) PT_TRY(g->world->allreduce_sum_f32(g->world->ctx, sum, ev->count, err));
    return PT_OK;
}

static void *comm_main(void *arg)
{
    pt_group *g = arg;
    uint64_t seen = 0;
    pt_error err;
    for (;;) {
        pthread_mutex_lock(&g->mu);
        while (g->comm_gen == seen && !g->stop) pthread_cond_wait(&g->cv, &g->mu);
        if (g->stop) {
            pthread_mutex_unlock(&g->mu);
            break;
        }
        seen = g->comm_gen;
        pthread_mutex_unlock(&g->mu);
        for (int e = 0; e < g->nev; e++) {
            pthread_mutex_lock(&g->mu);
            while (g->arrived[e] < g->n && !g->failed) pthread_cond_wait(&g->cv, &g->mu);
            int failed = g->failed;
            pthread_mutex_unlock(&g->mu);
            if (failed) break;
            pt_error_clear(&err);
            const double t0 = g->trace ? pt_trace_now() : 0;
            pt_status st = reduce_event(g, e, &err);
            if (g->trace && st == PT_OK) {
                const event *ev = &g->ev[e];
                const pt_trace_reduction red = {e, ev->bucket, ev->count, pt_group_reduction(g),
                                                ev->ready_list == PT_LIST_FORWARD ? "forward" : "backward",
                                                ev->ready_op};
                pt_trace_reduce(g->trace, &red, t0, pt_trace_now());
            }
            pthread_mutex_lock(&g->mu);
            if (st != PT_OK) record_fail(g, &err, st);
            else g->done[e] = 1;
            pthread_cond_broadcast(&g->cv);
            pthread_mutex_unlock(&g->mu);
            if (st != PT_OK) break;
        }
        pthread_mutex_lock(&g->mu);
        g->comm_running = 0;
        pthread_cond_broadcast(&g->cv);
        pthread_mutex_unlock(&g->mu);
    }
    return NULL;
}

/* ---------------------------------------------------------------- jobs */

/* Device d's step is queued: the last device to get here fetches, the others wait for it;
 * then each stages its own part. */
static pt_status all_queued(pt_group *g, int d, pt_error *err)
{
    pthread_mutex_lock(&g->mu);
    if (++g->q_arrived == g->n) {
        pthread_mutex_unlock(&g->mu);
        const double t0 = g->trace ? pt_trace_now() : 0;
        const pt_status st = g->q_fetch(g->q_user, err);
        if (g->trace) pt_trace_span(g->trace, d, "fetch_next_batch", "input", "device", d, t0, pt_trace_now());
        pthread_mutex_lock(&g->mu);
        if (st != PT_OK) record_fail(g, err, st);
        g->q_fetched = st == PT_OK;
        pthread_cond_broadcast(&g->cv);
        pthread_mutex_unlock(&g->mu);
        PT_TRY(st);
    } else {
        const int traced = g->trace != NULL;
        const double t0 = traced ? pt_trace_now() : 0;
        while (!g->q_fetched && !g->failed) pthread_cond_wait(&g->cv, &g->mu);
        const int failed = !g->q_fetched;
        pthread_mutex_unlock(&g->mu);
        if (traced) pt_trace_span(g->trace, d, "wait_next_batch", "wait", "device", d, t0, pt_trace_now());
        if (failed) return aborted(err);
    }
    return g->q_stage(g->q_user, d, g->rep[d], err);
}

/* The replicas' queued hook while the group stages ahead. */
static pt_status on_queued(void *user, pt_replica *r, pt_error *err)
{
    pt_group *g = user;
    const int d = replica_index(g, r);
    if (d < 0) return pt_fail(err, PT_ERR_INVALID, "device group: unknown replica");
    return all_queued(g, d, err);
}

void pt_group_set_queued(pt_group *g, pt_group_fetch_fn fetch, pt_group_stage_fn stage, void *user)
{
    g->q_fetch = fetch && stage ? fetch : NULL;
    g->q_stage = stage;
    g->q_user = user;
    for (int d = 0; d < g->n; d++) pt_replica_set_queued(g->rep[d], g->q_fetch ? on_queued : NULL, g);
}

static pt_status fill_zero(pt_device *dev, pt_mem m, size_t count, pt_error *err)
{
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = PT_OP_FILL;
    op.nt = 1;
    op.t[0] = pt_tensor_1d(m.buf, m.off, PT_F32, (int64_t)count);
    op.p.fill.value = 0.0f;
    return pt_device_run(dev, &op, err);
}

static pt_status step_job(pt_group *g, int d, pt_error *err)
{
    pt_replica *r = g->rep[d];
    pt_device *dev = pt_replica_device(r);
    const pt_group_slice *s = &g->slices[d];
    /* a single device without reductions or accumulation runs the step as one part */
    const int whole = g->n == 1 && g->nev == 0 && g->micro_count <= 1 && s->n > 0 && pt_replica_fuses_update(r);
    if (whole) {
        pt_replica_set_global_batch(r, g->global_n);
        pt_replica_set_momentum(r, g->mom);
    } else if (s->n > 0) {
        pt_replica_set_global_batch(r, g->global_n);
        const double t0 = g->trace ? pt_trace_now() : 0;
        PT_TRY(pt_replica_forward_backward_mixed(r, s->x, s->y, s->y2, s->lam, s->n, s->sample_base, g->step,
                                                 g->scale, s->logits, s->losses, err));
        if (g->trace) pt_trace_span(g->trace, d, "forward_backward", "step", "samples", s->n, t0, pt_trace_now());
    } else {
        if (g->nev > 0) {
            /* Nothing to compute: contribute zeros to every reduction, in order. */
            PT_TRY(fill_zero(dev, pt_replica_grad_mem(r), (size_t)g->preg, err));
            for (int e = 0; e < g->nev; e++)
                if (g->ev[e].bn) PT_TRY(fill_zero(dev, ev_mem(g, &g->ev[e], d), g->ev[e].count, err));
            for (int e = 0; e < g->nev; e++) {
                PT_TRY(arrive(g, d, e, err));
                if (g->ev[e].bn) PT_TRY(finish_bn_event(g, d, e, err));
            }
            pt_replica_set_progress(r, pt_replica_bn_steps(r) + 1, pt_replica_optimizer_started(r));
        }
        /* the device's part is "queued" once it has arrived everywhere the others wait for it */
        if (g->q_fetch) PT_TRY(all_queued(g, d, err));
    }
    for (int e = 0; e < g->nev; e++) PT_TRY(wait_done(g, d, e, err));
    double t0 = g->trace ? pt_trace_now() : 0;
    if (g->nev > 0 && !g->coll) {
        PT_TRY(pt_device_write(dev, pt_replica_grad_mem(r), g->sum, (size_t)g->preg * sizeof(float), err));
        if (g->trace) {
            pt_trace_span(g->trace, d, "copy_from_host", "reduction", "floats", g->preg, t0, pt_trace_now());
            t0 = pt_trace_now();
        }
    }
    if (g->micro_count > 1) {
        const int last = g->micro == g->micro_count - 1;
        PT_TRY(pt_replica_accumulate_grads(r, last ? PT_ACC_ADD_INTO_GRADS : g->micro == 0 ? PT_ACC_FIRST : PT_ACC_ADD,
                                           err));
        if (g->trace) {
            pt_trace_span(g->trace, d, "accumulate_grads", "update", "micro_batch", g->micro, t0, pt_trace_now());
            t0 = pt_trace_now();
        }
        if (!last) return PT_OK; /* the update waits for the step's last micro-batch */
    }
    pt_replica_set_momentum(r, g->mom);
    int64_t updates = g->step + 1;
    if (whole) {
        /* one part: forward, backward, unscale, clipping, update and EMA, decided on the device */
        pt_step_update u;
        memset(&u, 0, sizeof u);
        u.lr = g->lr;
        u.updates = g->inv_scale > 0 ? g->updates_before + 1 : updates;
        u.inv_scale = g->inv_scale;
        u.clip = g->clip;
        u.ema = g->ema;
        if (g->next && g->next[d].n > 0) {
            u.next_x = g->next[d].x, u.next_y = g->next[d].y, u.next_y2 = g->next[d].y2;
            u.next_lam = g->next[d].lam, u.next_n = g->next[d].n;
        }
        pt_step_outcome out;
        const double t0w = g->trace ? pt_trace_now() : 0;
        PT_TRY(pt_replica_train_step(r, s->x, s->y, s->y2, s->lam, s->n, s->sample_base, g->step, g->scale, &u,
                                     s->logits, s->losses, &out, err));
        if (g->trace) pt_trace_span(g->trace, d, "whole_step", "step", "samples", s->n, t0w, pt_trace_now());
        g->found[d] = out.found_inf;
        if (out.have_norm) g->norm[d] = out.norm;
        return PT_OK;
    }
    if (g->inv_scale > 0) {
        PT_TRY(pt_replica_unscale_grads(r, g->inv_scale, &g->found[d], err));
        if (g->trace) {
            pt_trace_span(g->trace, d, "amp_unscale", "loss_scaling", "found_inf", g->found[d], t0, pt_trace_now());
            t0 = pt_trace_now();
        }
        if (g->found[d]) return PT_OK; /* the step is skipped: no update */
        updates = g->updates_before + 1;
    }
    if (g->clip > 0) {
        /* every replica holds the same reduced gradients, so each finds the same norm */
        PT_TRY(pt_replica_clip_grads(r, g->clip, &g->norm[d], err));
        if (g->trace) {
            pt_trace_span(g->trace, d, "clip_grad_norm", "update", "update", updates, t0, pt_trace_now());
            t0 = pt_trace_now();
        }
    }
    PT_TRY(pt_replica_update(r, g->lr, updates, err));
    if (g->trace) pt_trace_span(g->trace, d, "optimizer_update", "update", "update", updates, t0, pt_trace_now());
    if (g->ema > 0) {
        t0 = g->trace ? pt_trace_now() : 0;
        PT_TRY(pt_replica_ema_update(r, g->ema, err));
        if (g->trace) pt_trace_span(g->trace, d, "ema_update", "update", "update", updates, t0, pt_trace_now());
    }
    return PT_OK;
}

void pt_group_set_trace(pt_group *g, pt_trace *trace)
{
    g->trace = trace;
    for (int d = 0; d < g->n; d++) pt_replica_set_trace(g->rep[d], trace, d);
}

void pt_group_set_loss_scaling(pt_group *g, float inv_scale, int64_t updates_before)
{
    g->inv_scale = inv_scale > 0 ? inv_scale : 0;
    g->updates_before = updates_before;
}

int pt_group_last_step_skipped(const pt_group *g) { return g->inv_scale > 0 && g->found[0]; }

void pt_group_set_next(pt_group *g, const pt_group_slice *next) { g->next = next; }

void pt_group_set_clip(pt_group *g, float max_norm) { g->clip = max_norm > 0 ? max_norm : 0; }
void pt_group_set_ema(pt_group *g, float decay) { g->ema = decay > 0 ? decay : 0; }

void pt_group_set_micro_batch(pt_group *g, int micro, int count)
{
    g->micro = micro;
    g->micro_count = count;
}
double pt_group_last_grad_norm(const pt_group *g) { return g->norm[0]; }

static pt_status eval_job(pt_group *g, int d, pt_error *err)
{
    const pt_group_slice *s = &g->slices[d];
    if (s->n < 1) return PT_OK;
    return pt_replica_eval(g->rep[d], s->x, s->y, s->n, s->logits, s->losses, err);
}

static pt_status run_job(pt_group *g, int d, pt_error *err)
{
    return g->job_kind == JOB_STEP ? step_job(g, d, err) : eval_job(g, d, err);
}

static void *worker_main(void *arg)
{
    worker_arg *wa = arg;
    pt_group *g = wa->g;
    int d = wa->d;
    uint64_t seen = 0;
    for (;;) {
        pthread_mutex_lock(&g->mu);
        while (g->job_gen == seen && !g->stop) pthread_cond_wait(&g->cv, &g->mu);
        if (g->stop) {
            pthread_mutex_unlock(&g->mu);
            break;
        }
        seen = g->job_gen;
        pthread_mutex_unlock(&g->mu);
        pt_error_clear(&g->werr[d]);
        pt_status st = run_job(g, d, &g->werr[d]);
        pthread_mutex_lock(&g->mu);
        if (st != PT_OK) record_fail(g, &g->werr[d], st);
        g->jobs_left--;
        pthread_cond_broadcast(&g->cv);
        pthread_mutex_unlock(&g->mu);
    }
    free(wa);
    return NULL;
}

/* Runs a job on every device (device 0 on the calling thread) and waits for it and, for a
 * step, for the communication thread. */
static pt_status run_all(pt_group *g, int kind, pt_error *err)
{
    int comm = kind == JOB_STEP && g->nev > 0;
    pthread_mutex_lock(&g->mu);
    g->job_kind = kind;
    g->failed = 0;
    pt_error_clear(&g->fail_err);
    if (comm) {
        memset(g->arrived, 0, (size_t)g->nev * sizeof *g->arrived);
        memset(g->done, 0, (size_t)g->nev * sizeof *g->done);
        g->comm_running = 1;
        g->comm_gen++;
    }
    g->jobs_left = g->n - 1;
    g->job_gen++;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);

    pt_error_clear(&g->werr[0]);
    pt_status st = run_job(g, 0, &g->werr[0]);
    pthread_mutex_lock(&g->mu);
    if (st != PT_OK) record_fail(g, &g->werr[0], st);
    while (g->jobs_left > 0 || g->comm_running) pthread_cond_wait(&g->cv, &g->mu);
    int failed = g->failed;
    pthread_mutex_unlock(&g->mu);
    if (failed) {
        if (err) *err = g->fail_err;
        return g->fail_err.status != PT_OK ? g->fail_err.status : PT_ERR_BACKEND;
    }
    return PT_OK;
}

pt_status pt_group_step(pt_group *g, const pt_group_slice *slices, int global_n, int64_t step,
                        float grad_scale, float lr, float momentum, pt_error *err)
{
    g->slices = slices;
    g->global_n = global_n;
    g->step = step;
    g->scale = grad_scale;
    g->lr = lr;
    g->mom = momentum;
    memset(g->found, 0, (size_t)g->n * sizeof *g->found);
    g->q_arrived = g->q_fetched = 0; /* no device thread runs between steps */
    if (g->n == 1 && g->nev == 0) return step_job(g, 0, err);
    PT_TRY(run_all(g, JOB_STEP, err));
    for (int d = 1; d < g->n; d++)
        if (g->found[d] != g->found[0])
            return pt_fail(err, PT_ERR_MISMATCH,
                           "loss scaling: device %d found %s gradients, device 0 %s (the reduction should have "
                           "made them equal)",
                           d, g->found[d] ? "non-finite" : "finite", g->found[0] ? "non-finite" : "finite");
    (void)global_n;
    if (g->fault == 2 && (g->n > 1 || world_size(g) > 1) && (g->n > 1 || g->world->rank == world_size(g) - 1)) {
        /* the injected fault: the last replica's first parameter moves */
        pt_replica *r = g->rep[g->n - 1];
        PT_TRY(pt_replica_read_state(r, g->h_params2, g->h_bufs2, g->slots ? g->h_opt2 : NULL, err));
        g->h_params2[0] += 1e-3f;
        PT_TRY(pt_replica_write_state(r, g->h_params2, g->h_bufs2, g->slots ? g->h_opt2 : NULL, err));
    }
    if (!pt_replica_sync_bn(g->rep[0]) || !g->breg) return PT_OK;
    /* A device without samples did not run the statistics ops: its running statistics
     * come from replica 0 of rank 0, which always has samples. Whether any device of any
     * rank idled is agreed on first (one double), so that all ranks join the broadcast. */
    double idle = 0;
    for (int d = 0; d < g->n; d++) idle += slices[d].n == 0;
    if (world_size(g) > 1) PT_TRY(g->world->allreduce_sum_f64(g->world->ctx, &idle, 1, err));
    if (idle == 0) return PT_OK;
    size_t bytes = (size_t)g->breg * sizeof(float);
    if (g->world->rank == 0)
        PT_TRY(pt_device_read(pt_replica_device(g->rep[0]), g->h_bufs, pt_replica_buffer_mem(g->rep[0]), bytes, err));
    if (world_size(g) > 1) PT_TRY(g->world->broadcast(g->world->ctx, g->h_bufs, bytes, 0, err));
    for (int d = 0; d < g->n; d++)
        if (slices[d].n == 0)
            PT_TRY(pt_device_write(pt_replica_device(g->rep[d]), pt_replica_buffer_mem(g->rep[d]), g->h_bufs, bytes, err));
    return PT_OK;
}

pt_status pt_group_eval(pt_group *g, const pt_group_slice *slices, pt_error *err)
{
    g->slices = slices;
    if (g->n == 1) return eval_job(g, 0, err);
    return run_all(g, JOB_EVAL, err);
}

/* ---------------------------------------------------------------- planning */

/* Events of the forward and backward lists: sync-BN statistics where their ops are, and
 * gradient buckets after the last backward op writing into them. */
static pt_status plan_events(pt_group *g, size_t bucket_bytes, pt_error *err)
{
    const pt_replica *r0 = g->rep[0];
    const pt_op *fwd = pt_replica_ops(r0, PT_LIST_FORWARD, &g->nfwd);
    const pt_op *bwd = pt_replica_ops(r0, PT_LIST_BACKWARD, &g->nbwd);
    for (int d = 1; d < g->n; d++) {
        int nf, nb;
        pt_replica_ops(g->rep[d], PT_LIST_FORWARD, &nf);
        pt_replica_ops(g->rep[d], PT_LIST_BACKWARD, &nb);
        if (nf != g->nfwd || nb != g->nbwd || pt_replica_param_region(g->rep[d]) != g->preg ||
            pt_replica_sync_bn(g->rep[d]) != pt_replica_sync_bn(r0))
            return pt_fail(err, PT_ERR_INVALID, "device group: replica %d is not built like replica 0", d);
    }
    int64_t bucket = (int64_t)(bucket_bytes / sizeof(float));
    if (bucket < 1024) bucket = 1024;
    int nb = (int)((g->preg + bucket - 1) / bucket);
    int *complete = malloc((size_t)(nb > 0 ? nb : 1) * sizeof *complete);
    g->fwd_first = calloc((size_t)g->nfwd + 1, sizeof(int));
    g->fwd_cnt = calloc((size_t)g->nfwd + 1, sizeof(int));
    g->bwd_first = calloc((size_t)g->nbwd + 1, sizeof(int));
    g->bwd_cnt = calloc((size_t)g->nbwd + 1, sizeof(int));
    int maxev = nb + g->nfwd + g->nbwd;
    g->ev = calloc((size_t)maxev + 1, sizeof *g->ev);
    g->evmem = calloc(((size_t)maxev + 1) * (size_t)g->n, sizeof *g->evmem);
    if (!complete || !g->fwd_first || !g->fwd_cnt || !g->bwd_first || !g->bwd_cnt || !g->ev || !g->evmem) {
        free(complete);
        return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    }
    pt_mem gm = pt_replica_grad_mem(r0);
    size_t glo = gm.off, ghi = gm.off + (size_t)g->preg * sizeof(float);
    for (int b = 0; b < nb; b++) complete[b] = g->nbwd - 1;
    int *seen = calloc((size_t)(nb > 0 ? nb : 1), sizeof *seen);
    if (!seen) {
        free(complete);
        return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    }
    for (int i = 0; i < g->nbwd; i++) {
        const pt_op *op = &bwd[i];
        for (int k = 0; k < op->nt; k++) {
            const pt_tensor *t = &op->t[k];
            if (t->ndim == 0 || t->mem.buf != gm.buf || t->mem.off < glo || t->mem.off >= ghi) continue;
            int64_t a = (int64_t)((t->mem.off - glo) / sizeof(float));
            int64_t z = a + pt_tensor_numel(t);
            for (int64_t b = a / bucket; b < nb && b * bucket < z; b++) {
                if (!seen[b] || complete[b] < i) complete[b] = i;
                seen[b] = 1;
            }
        }
    }
    free(seen);
    size_t stage = (size_t)g->preg;
    int e = 0;
    for (int i = 0; i < g->nfwd; i++) {
        g->fwd_first[i] = e;
        if (fwd[i].kind == PT_OP_BN_SYNC_STATS) {
            event *ev = &g->ev[e];
            ev->bn = 1;
            ev->count = (size_t)pt_tensor_numel(&fwd[i].t[2]);
            ev->stage = stage;
            stage += ev->count;
            ev->mem = g->evmem + (size_t)e * g->n;
            ev->list = PT_LIST_FORWARD;
            ev->op = i;
            ev->tensor = 2;
            ev->bucket = -1;
            ev->ready_list = PT_LIST_FORWARD;
            ev->ready_op = i;
            e++;
        }
        g->fwd_cnt[i] = e - g->fwd_first[i];
    }
    int nbuckets = nb;
    for (int i = 0; i < g->nbwd; i++) {
        g->bwd_first[i] = e;
        if (bwd[i].kind == PT_OP_BN_SYNC_BWD_STATS) {
            event *ev = &g->ev[e];
            ev->bn = 1;
            ev->count = (size_t)pt_tensor_numel(&bwd[i].t[3]);
            ev->stage = stage;
            stage += ev->count;
            ev->mem = g->evmem + (size_t)e * g->n;
            ev->list = PT_LIST_BACKWARD;
            ev->op = i;
            ev->tensor = 3;
            ev->bucket = -1;
            ev->ready_list = PT_LIST_BACKWARD;
            ev->ready_op = i;
            e++;
        }
        for (int b = 0; b < nbuckets; b++) {
            if (complete[b] != i) continue;
            event *ev = &g->ev[e];
            int64_t lo = b * bucket, hi = lo + bucket < g->preg ? lo + bucket : g->preg;
            ev->count = (size_t)(hi - lo);
            ev->stage = (size_t)lo;
            ev->mem = g->evmem + (size_t)e * g->n;
            ev->list = -1;
            ev->bucket = b;
            ev->ready_list = PT_LIST_BACKWARD;
            ev->ready_op = i;
            for (int d = 0; d < g->n; d++) {
                pt_mem m = pt_replica_grad_mem(g->rep[d]);
                m.off += (size_t)lo * sizeof(float);
                ev->mem[d] = m;
            }
            e++;
        }
        g->bwd_cnt[i] = e - g->bwd_first[i];
    }
    free(complete);
    g->nev = e;
    g->nbuckets = nbuckets;
    g->stage_floats = stage;
    return PT_OK;
}

pt_status pt_group_create(pt_replica **replicas, int n, const pt_world *world, size_t bucket_bytes,
                          int use_collectives, pt_group **out, pt_error *err)
{
    *out = NULL;
    if (n < 1) return pt_fail(err, PT_ERR_INVALID, "device group: no device");
    pt_group *g = calloc(1, sizeof *g);
    if (!g) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    g->rep = replicas;
    g->n = n;
    const char *fault = getenv("PT_FAULT_INJECT");
    g->fault = !fault ? 0 : !strcmp(fault, "drop-bucket") ? 1 : !strcmp(fault, "diverge-replica") ? 2 : 0;
    g->single = pt_world_single();
    g->world = world && world->size > 1 ? world : &g->single;
    g->preg = pt_replica_param_region(replicas[0]);
    g->breg = pt_replica_buffer_region(replicas[0]);
    g->slots = pt_replica_opt_slots(replicas[0]);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->werr = calloc((size_t)n, sizeof *g->werr);
    g->found = calloc((size_t)n, sizeof *g->found);
    g->norm = calloc((size_t)n, sizeof *g->norm);
    size_t P = (size_t)g->preg, B = (size_t)g->breg + 1, O = (size_t)g->slots * P + 1;
    g->h_params = malloc(P * sizeof(float));
    g->h_params2 = malloc(P * sizeof(float));
    g->h_opt = malloc(O * sizeof(float));
    g->h_opt2 = malloc(O * sizeof(float));
    g->h_bufs = malloc(B * sizeof(float));
    g->h_bufs2 = malloc(B * sizeof(float));
    pt_status st = PT_OK;
    if (!g->werr || !g->found || !g->norm || !g->h_params || !g->h_params2 || !g->h_opt || !g->h_opt2 || !g->h_bufs ||
        !g->h_bufs2) {
        st = pt_fail(err, PT_ERR_NOMEM, "out of host memory");
        goto fail;
    }
    pt_device *d0 = pt_replica_device(replicas[0]);
    for (int d = 1; d < n; d++)
        if (pt_replica_device(replicas[d])->be != d0->be) {
            st = pt_fail(err, PT_ERR_INVALID, "device group: devices of different backends (%s and %s)",
                         d0->be->name, pt_replica_device(replicas[d])->be->name);
            goto fail;
        }
    if (n * g->world->size > 1) {
        if ((st = plan_events(g, bucket_bytes ? bucket_bytes : DEFAULT_BUCKET_BYTES, err)) != PT_OK) goto fail;
        g->arrived = calloc((size_t)g->nev + 1, sizeof *g->arrived);
        g->done = calloc((size_t)g->nev + 1, sizeof *g->done);
        g->callbufs = calloc((size_t)n, sizeof *g->callbufs);
        if (!g->arrived || !g->done || !g->callbufs) {
            st = pt_fail(err, PT_ERR_NOMEM, "out of host memory");
            goto fail;
        }
        const pt_backend_iface *be = d0->be;
        if (use_collectives && be->group_open && be->group_close && be->group_allreduce_f32) {
            void *bctx = NULL;
            void **ctxs = calloc((size_t)n, sizeof *ctxs);
            if (!ctxs) {
                st = pt_fail(err, PT_ERR_NOMEM, "out of host memory");
                goto fail;
            }
            for (int d = 0; d < n; d++) ctxs[d] = pt_replica_device(replicas[d])->ctx;
            st = pt_backend_context(be, &bctx, err);
            if (st == PT_OK) st = be->group_open(bctx, ctxs, n, g->world, &g->coll, err);
            free(ctxs);
            if (st != PT_OK) goto fail;
            g->be = be;
        } else {
            g->stage = malloc(((size_t)n + 1) * (g->stage_floats + 1) * sizeof(float));
            g->sum = malloc((g->stage_floats + 1) * sizeof(float));
            if (!g->stage || !g->sum) {
                st = pt_fail(err, PT_ERR_NOMEM, "out of host memory");
                goto fail;
            }
        }
        for (int d = 0; d < n; d++) pt_replica_set_hook(replicas[d], on_op, g);
        if (pthread_create(&g->comm, NULL, comm_main, g) != 0) {
            st = pt_fail(err, PT_ERR_BACKEND, "device group: cannot start the communication thread");
            goto fail;
        }
        g->have_comm = 1;
    }
    if (n > 1) {
        g->workers = calloc((size_t)n, sizeof *g->workers);
        if (!g->workers) {
            st = pt_fail(err, PT_ERR_NOMEM, "out of host memory");
            goto fail;
        }
        for (int d = 1; d < n; d++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (!wa || pthread_create(&g->workers[d], NULL, worker_main, wa ? (wa->g = g, wa->d = d, wa) : NULL) != 0) {
                free(wa);
                st = pt_fail(err, PT_ERR_BACKEND, "device group: cannot start the thread of device %d", d);
                goto fail;
            }
            g->nworkers = d;
        }
    }
    *out = g;
    return PT_OK;
fail:
    pt_group_free(g);
    return st;
}

void pt_group_free(pt_group *g)
{
    if (!g) return;
    pthread_mutex_lock(&g->mu);
    g->stop = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    for (int d = 1; d <= g->nworkers; d++) pthread_join(g->workers[d], NULL);
    if (g->have_comm) pthread_join(g->comm, NULL);
    for (int d = 0; d < g->n; d++) pt_replica_set_hook(g->rep[d], NULL, NULL);
    if (g->q_fetch) /* the replicas outlive the group */
        for (int d = 0; d < g->n; d++) pt_replica_set_queued(g->rep[d], NULL, NULL);
    if (g->coll) g->be->group_close(g->coll);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g->workers);
    free(g->werr);
    free(g->found);
    free(g->norm);
    free(g->ev);
    free(g->evmem);
    free(g->fwd_first);
    free(g->fwd_cnt);
    free(g->bwd_first);
    free(g->bwd_cnt);
    free(g->stage);
    free(g->sum);
    free(g->callbufs);
    free(g->arrived);
    free(g->done);
    free(g->h_params);
    free(g->h_params2);
    free(g->h_opt);
    free(g->h_opt2);
    free(g->h_bufs);
    free(g->h_bufs2);
    free(g);
}

/* ---------------------------------------------------------------- state operations */

pt_status pt_group_broadcast_state(pt_group *g, pt_error *err)
{
    PT_TRY(pt_replica_read_state(g->rep[0], g->h_params, g->h_bufs, g->slots ? g->h_opt : NULL, err));
    int64_t progress[2] = {pt_replica_bn_steps(g->rep[0]), pt_replica_optimizer_started(g->rep[0])};
    if (world_size(g) > 1) {
        const pt_world *w = g->world;
        PT_TRY(w->broadcast(w->ctx, g->h_params, (size_t)g->preg * sizeof(float), 0, err));
        if (g->slots) PT_TRY(w->broadcast(w->ctx, g->h_opt, (size_t)g->slots * g->preg * sizeof(float), 0, err));
        if (g->breg) PT_TRY(w->broadcast(w->ctx, g->h_bufs, (size_t)g->breg * sizeof(float), 0, err));
        PT_TRY(w->broadcast(w->ctx, progress, sizeof progress, 0, err));
    }
    for (int d = 0; d < g->n; d++) {
        if (d == 0 && g->world->rank == 0) continue;
        PT_TRY(pt_replica_write_state(g->rep[d], g->h_params, g->h_bufs, g->slots ? g->h_opt : NULL, err));
        pt_replica_set_progress(g->rep[d], progress[0], (int)progress[1]);
    }
    return PT_OK;
}

pt_status pt_group_fit_workspace(pt_group *g, size_t *before, size_t *after, pt_error *err)
{
    size_t b = 0, a = 0;
    for (int d = 0; d < g->n; d++) {
        size_t bd, ad;
        PT_TRY(pt_replica_fit_workspace(g->rep[d], &bd, &ad, err));
        if (bd > b) b = bd;
        if (ad > a) a = ad;
    }
    if (before) *before = b;
    if (after) *after = a;
    return PT_OK;
}

pt_status pt_group_average_buffers(pt_group *g, pt_error *err)
{
    int total = g->n * world_size(g);
    /* Synchronised BN keeps every replica's statistics equal already (and an average of
     * equal floats is not always bitwise the same float). */
    if (total == 1 || g->breg == 0 || pt_replica_sync_bn(g->rep[0])) return PT_OK;
    size_t bytes = (size_t)g->breg * sizeof(float);
    PT_TRY(pt_device_read(pt_replica_device(g->rep[0]), g->h_bufs, pt_replica_buffer_mem(g->rep[0]), bytes, err));
    for (int d = 1; d < g->n; d++) {
        PT_TRY(pt_device_read(pt_replica_device(g->rep[d]), g->h_bufs2, pt_replica_buffer_mem(g->rep[d]), bytes, err));
        for (int64_t i = 0; i < g->breg; i++) g->h_bufs[i] += g->h_bufs2[i];
    }
    if (world_size(g) > 1) PT_TRY(g->world->allreduce_sum_f32(g->world->ctx, g->h_bufs, (size_t)g->breg, err));
    for (int64_t i = 0; i < g->breg; i++) g->h_bufs[i] /= (float)total;
    for (int d = 0; d < g->n; d++)
        PT_TRY(pt_device_write(pt_replica_device(g->rep[d]), pt_replica_buffer_mem(g->rep[d]), g->h_bufs, bytes, err));
    return PT_OK;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 1099511628211ull;
    return h;
}

static int64_t first_difference(const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) return i;
    return -1;
}

pt_status pt_group_check_identical(pt_group *g, int with_buffers, pt_error *err)
{
    size_t P = (size_t)g->preg, O = (size_t)g->slots * P;
    PT_TRY(pt_replica_read_state(g->rep[0], g->h_params, g->h_bufs, g->slots ? g->h_opt : NULL, err));
    char what[256] = "";
    for (int d = 1; d < g->n && !what[0]; d++) {
        PT_TRY(pt_replica_read_state(g->rep[d], g->h_params2, g->h_bufs2, g->slots ? g->h_opt2 : NULL, err));
        int64_t i;
        if ((i = first_difference(g->h_params, g->h_params2, (int64_t)P)) >= 0)
            snprintf(what, sizeof what, "device %d parameter element %lld is %.9g, device 0 has %.9g", d,
                     (long long)i, g->h_params2[i], g->h_params[i]);
        else if ((i = first_difference(g->h_opt, g->h_opt2, (int64_t)O)) >= 0)
            snprintf(what, sizeof what, "device %d optimizer state element %lld differs from device 0", d, (long long)i);
        else if (with_buffers && (i = first_difference(g->h_bufs, g->h_bufs2, g->breg)) >= 0)
            snprintf(what, sizeof what, "device %d BatchNorm buffer element %lld differs from device 0", d, (long long)i);
    }
    if (world_size(g) > 1) {
        uint64_t h = 1469598103934665603ull;
        h = fnv1a(h, g->h_params, P * sizeof(float));
        h = fnv1a(h, g->h_opt, O * sizeof(float));
        if (with_buffers) h = fnv1a(h, g->h_bufs, (size_t)g->breg * sizeof(float));
        uint64_t h0 = h;
        PT_TRY(g->world->broadcast(g->world->ctx, &h0, sizeof h0, 0, err));
        if (h0 != h && !what[0]) snprintf(what, sizeof what, "rank %d holds other weights than rank 0", g->world->rank);
        double bad = what[0] ? 1.0 : 0.0;
        PT_TRY(g->world->allreduce_sum_f64(g->world->ctx, &bad, 1, err));
        if (bad > 0 && !what[0]) snprintf(what, sizeof what, "another rank's replicas differ");
    }
    if (what[0]) return pt_fail(err, PT_ERR_MISMATCH, "replicas are not identical: %s", what);
    return PT_OK;
}

/* ---------------------------------------------------------------- direct collectives */

pt_status pt_group_allreduce(pt_group *g, const pt_mem *bufs, size_t count, pt_error *err)
{
    if (count == 0) return PT_OK;
    if (g->fault == 1) {
        /* the injected fault (see pt_group.fault): the others' contributions dropped */
        if (g->coll) return PT_OK;
        float *h = malloc(count * sizeof(float));
        pt_status st = h ? PT_OK : pt_fail(err, PT_ERR_NOMEM, "out of host memory");
        if (st == PT_OK) st = pt_device_read(pt_replica_device(g->rep[0]), h, bufs[0], count * sizeof(float), err);
        for (int d = 1; d < g->n && st == PT_OK; d++)
            st = pt_device_write(pt_replica_device(g->rep[d]), bufs[d], h, count * sizeof(float), err);
        free(h);
        return st;
    }
    if (g->coll) return g->be->group_allreduce_f32(g->coll, bufs, count, err);
    /* the host path of a gradient bucket: device rows summed in device order, then ranks */
    float *sum = malloc(count * sizeof(float)), *row = malloc(count * sizeof(float));
    pt_status st = sum && row ? PT_OK : pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    if (st == PT_OK) st = pt_device_read(pt_replica_device(g->rep[0]), sum, bufs[0], count * sizeof(float), err);
    for (int d = 1; d < g->n && st == PT_OK; d++) {
        st = pt_device_read(pt_replica_device(g->rep[d]), row, bufs[d], count * sizeof(float), err);
        for (size_t i = 0; st == PT_OK && i < count; i++) sum[i] += row[i];
    }
    if (st == PT_OK && world_size(g) > 1) st = g->world->allreduce_sum_f32(g->world->ctx, sum, count, err);
    for (int d = 0; d < g->n && st == PT_OK; d++)
        st = pt_device_write(pt_replica_device(g->rep[d]), bufs[d], sum, count * sizeof(float), err);
    free(sum);
    free(row);
    return st;
}

pt_status pt_group_broadcast(pt_group *g, const pt_mem *bufs, size_t bytes, pt_error *err)
{
    if (bytes == 0) return PT_OK;
    if (g->coll) return g->be->group_broadcast(g->coll, bufs, bytes, err);
    void *h = malloc(bytes);
    pt_status st = h ? PT_OK : pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    if (st == PT_OK) st = pt_device_read(pt_replica_device(g->rep[0]), h, bufs[0], bytes, err);
    if (st == PT_OK && world_size(g) > 1) st = g->world->broadcast(g->world->ctx, h, bytes, 0, err);
    for (int d = 0; d < g->n && st == PT_OK; d++)
        st = pt_device_write(pt_replica_device(g->rep[d]), bufs[d], h, bytes, err);
    free(h);
    return st;
}
