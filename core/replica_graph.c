/* A replica's step as graphs (polytrain/replica.h, pt_replica_options.graphs): each part of
 * the step (forward + loss + backward, the update, the evaluation forward, or the whole
 * training step with its update) is captured once its ops have run unchanged RP_GRAPH_WARMUP
 * times and replayed from then on. What changes every step lives in a per-replica step record
 * on the device (pt_step_scalars, one write per part and step), so a replay needs nothing but
 * a launch. Whether a part's graph still holds is decided by comparing its ops, per-step
 * values cleared and input pointed at slot 0, with the ops it was captured from: a new batch
 * size, a re-planned arena or any other change of the lists gets an entry of its own
 * (RP_GRAPH_SLOTS per part, least recently used replaced), with a graph per input slot. A
 * capture that fails turns graphs off for the replica, which then runs op by op. Also here:
 * the pinned input, double-buffered on the host and in the arena (two input slots, used in
 * turn, the next batch staged while a step runs). Everything is allocated at creation: a
 * step allocates nothing on the host. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/replica_internal.h"
#include "polytrain/trace.h"

static const char *const part_name[RP_NSEG] = {"training", "update", "evaluation", "whole step"};

int pt_switch_parse(const char *s, pt_switch *out)
{
    if (!s) return 0;
    if (strcmp(s, "auto") == 0) *out = PT_SWITCH_AUTO;
    else if (strcmp(s, "on") == 0) *out = PT_SWITCH_ON;
    else if (strcmp(s, "off") == 0) *out = PT_SWITCH_OFF;
    else return 0;
    return 1;
}

const char *pt_switch_name(pt_switch s)
{
    return s == PT_SWITCH_ON ? "on" : s == PT_SWITCH_OFF ? "off" : "auto";
}

#define RP_PART_LISTS 5

/* The lists of part seg, in order. */
static int part_lists(pt_replica *r, int seg, const op_list **l)
{
    switch (seg) {
    case RP_SEG_TRAIN: l[0] = &r->fwd_train, l[1] = &r->bwd; return 2;
    case RP_SEG_UPDATE: l[0] = &r->update; return 1;
    case RP_SEG_EVAL: l[0] = &r->fwd_eval; return 1;
    default: l[0] = &r->fwd_train, l[1] = &r->bwd, l[2] = &r->pre, l[3] = &r->update, l[4] = &r->post; return 5;
    }
}

/* Whether dev copies input from pinned memory; why not in why. PT_ERR_UNSUPPORTED where
 * pinned is on and it does not. */
static pt_status check_pinned(pt_device *dev, pt_switch pinned, int *on, char *why, size_t cap, pt_error *err)
{
    *on = 0;
    if (pinned == PT_SWITCH_OFF) {
        snprintf(why, cap, "--pinned-input off");
        return PT_OK;
    }
    if (!pt_device_pinned_input(dev)) {
        snprintf(why, cap, "the %s backend has no asynchronous copies from pinned memory", dev->be->name);
        if (pinned == PT_SWITCH_ON)
            return pt_fail(err, PT_ERR_UNSUPPORTED, "--pinned-input on: %s device %d (%s): %s", dev->be->name,
                           dev->index, dev->info.name, why);
        return PT_OK;
    }
    *on = 1;
    return PT_OK;
}

/* The same for graph capture. */
static pt_status check_graphs(pt_device *dev, pt_switch graphs, int *on, char *why, size_t cap, pt_error *err)
{
    *on = 0;
    if (graphs == PT_SWITCH_OFF) {
        snprintf(why, cap, "--cuda-graphs off");
        return PT_OK;
    }
    if (!pt_device_graph_capable(dev, why, cap)) {
        if (graphs == PT_SWITCH_ON)
            return pt_fail(err, PT_ERR_UNSUPPORTED, "--cuda-graphs on: %s device %d (%s) cannot capture graphs: %s",
                           dev->be->name, dev->index, dev->info.name, why);
        return PT_OK;
    }
    *on = 1;
    return PT_OK;
}

pt_status pt_replica_check_options(pt_device *dev, const pt_replica_options *ro, pt_error *err)
{
    if (!ro) return PT_OK;
    char why[160];
    int on;
    PT_TRY(pt_device_precision(dev, ro->precision, NULL, 0, err));
    PT_TRY(rp_check_layout(dev, ro->layout, err));
    PT_TRY(check_pinned(dev, ro->pinned_input, &on, why, sizeof why, err));
    return check_graphs(dev, ro->graphs, &on, why, sizeof why, err);
}

static pt_status setup_input(pt_replica *r, pt_switch pinned, pt_error *err)
{
    rp_input *in = &r->in;
    int on;
    PT_TRY(check_pinned(r->dev, pinned, &on, in->why, sizeof in->why, err));
    if (!on) return PT_OK;
    in->x_bytes = rp_node_bytes(&r->net->nodes[0], r->capacity);
    in->y_bytes = (size_t)r->capacity * sizeof(int32_t);
    in->lam_bytes = (size_t)r->capacity * sizeof(float);
    const size_t bytes = in->x_bytes + 2 * in->y_bytes + in->lam_bytes;
    for (int k = 0; k < 2; k++) PT_TRY(r->dev->be->host_alloc(r->dev->ctx, bytes, &in->host[k], err));
    in->on = 1;
    return PT_OK;
}

pt_status rp_graphs_setup(pt_replica *r, pt_switch graphs, pt_switch pinned, pt_error *err)
{
    rp_graphs *g = &r->g;
    g->first_capture_step = -1;
    for (int seg = 0; seg < RP_NSEG; seg++)
        for (int k = 0; k < RP_GRAPH_SLOTS; k++) g->slot[seg][k].n = -1;
    PT_TRY(setup_input(r, pinned, err));
    int on;
    PT_TRY(check_graphs(r->dev, graphs, &on, g->why, sizeof g->why, err));
    if (!on) return PT_OK;
    PT_TRY(pt_device_alloc(r->dev, 2 * sizeof(pt_step_scalars), &g->rec, err));
    memset(g->host, 0, sizeof g->host);
    r->pre.ops = calloc(RP_PRE_OPS, sizeof(pt_op));
    r->post.ops = calloc(RP_POST_OPS, sizeof(pt_op));
    if (!r->pre.ops || !r->post.ops) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    r->pre.cap = RP_PRE_OPS;
    r->post.cap = RP_POST_OPS;
    g->cap_ops[RP_SEG_TRAIN] = r->fwd_train.n + r->bwd.n;
    g->cap_ops[RP_SEG_UPDATE] = r->update.n;
    g->cap_ops[RP_SEG_EVAL] = r->fwd_eval.n;
    g->cap_ops[RP_SEG_STEP] = r->fwd_train.n + r->bwd.n + RP_PRE_OPS + r->update.n + RP_POST_OPS;
    for (int seg = 0; seg < RP_NSEG; seg++)
        for (int k = 0; k < RP_GRAPH_SLOTS; k++) {
            g->slot[seg][k].snap = calloc((size_t)g->cap_ops[seg] + 1, sizeof(pt_op));
            if (!g->slot[seg][k].snap) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
        }
    g->on = 1;
    return PT_OK;
}

static void drop_graph(pt_replica *r, rp_graph_slot *s)
{
    for (int k = 0; k < 2; k++) {
        if (s->exec[k]) r->dev->be->graph_free(r->dev->ctx, s->exec[k]);
        s->exec[k] = NULL;
    }
    s->n = -1;
    s->runs = 0;
}

/* Every graph refers to the workspace by address: a new workspace (pt_replica_fit_workspace)
 * drops them all, even where a list compares equal (a freed handle's address may come back). */
void rp_graphs_invalidate(pt_replica *r)
{
    for (int seg = 0; seg < RP_NSEG; seg++)
        for (int k = 0; k < RP_GRAPH_SLOTS; k++) drop_graph(r, &r->g.slot[seg][k]);
}

void rp_graphs_free(pt_replica *r)
{
    rp_graphs *g = &r->g;
    for (int seg = 0; seg < RP_NSEG; seg++)
        for (int k = 0; k < RP_GRAPH_SLOTS; k++) {
            drop_graph(r, &g->slot[seg][k]);
            free(g->slot[seg][k].snap);
            g->slot[seg][k].snap = NULL;
        }
    if (g->rec) pt_device_free(r->dev, g->rec);
    g->rec = NULL;
    free(r->pre.ops);
    free(r->post.ops);
    r->pre.ops = r->post.ops = NULL;
    for (int k = 0; k < 2; k++)
        if (r->in.host[k]) {
            pt_error e;
            r->dev->be->write_fence_wait(r->dev->ctx, r->in.fence[k], 1, &e);
            r->dev->be->host_free(r->dev->ctx, r->in.host[k]);
            r->in.host[k] = NULL;
        }
}

pt_mem rp_step_record(const pt_replica *r, int seg)
{
    pt_mem m = {NULL, 0};
    if (r->g.on && seg >= 0 && seg < 2) {
        m.buf = r->g.rec;
        m.off = (size_t)seg * sizeof(pt_step_scalars);
    }
    return m;
}

pt_status rp_write_step_record(pt_replica *r, int seg, pt_error *err)
{
    if (!r->g.on) return PT_OK;
    if (seg == RP_SEG_STEP) /* both records, one copy */
        return pt_device_write(r->dev, rp_step_record(r, RP_SEG_TRAIN), r->g.host, sizeof r->g.host, err);
    return pt_device_write(r->dev, rp_step_record(r, seg), &r->g.host[seg], sizeof(pt_step_scalars), err);
}

static pt_status run_lists(pt_replica *r, const op_list *const *l, int nl, pt_error *err)
{
    for (int k = 0; k < nl; k++) PT_TRY(rp_run_list(r, l[k], err));
    return PT_OK;
}

static size_t in_part_bytes(const pt_replica *r, int part)
{
    return part == RP_IN_X ? rp_node_bytes(&r->net->nodes[0], r->capacity)
                           : (size_t)r->capacity * (part == RP_IN_LAM ? sizeof(float) : sizeof(int32_t));
}

/* op's operands that lie in input slot `from` moved to slot `to` (the input ranges are the
 * arena's only ones at these offsets: the input node is live for the whole step and nothing
 * aliases it) */
static void move_input(const pt_replica *r, pt_op *op, int from, int to)
{
    for (int t = 0; t < PT_OP_MAX_OPERANDS; t++) {
        pt_mem *m = &op->t[t].mem;
        if (m->buf != r->arena) continue;
        for (int k = 0; k < RP_IN_PARTS; k++)
            if (m->off >= r->in_off[from][k] && m->off < r->in_off[from][k] + in_part_bytes(r, k)) {
                m->off = m->off - r->in_off[from][k] + r->in_off[to][k];
                break;
            }
    }
}

/* Op i of the lists as a graph's snapshot holds it: per-step values cleared, input at slot 0. */
static void snap_op(const pt_replica *r, const op_list *const *l, int i, pt_op *out)
{
    while (i >= l[0]->n) i -= (*l++)->n;
    *out = l[0]->ops[i];
    pt_op_clear_step_params(out);
    if (l[0]->in_slot != 0) move_input(r, out, l[0]->in_slot, 0);
}

static int same_ops(const pt_replica *r, rp_graphs *g, const rp_graph_slot *s, const op_list *const *l, int n)
{
    if (s->n != n) return 0;
    for (int i = 0; i < n; i++) {
        snap_op(r, l, i, &g->scratch);
        if (memcmp(&g->scratch, &s->snap[i], sizeof(pt_op)) != 0) return 0;
    }
    return 1;
}

/* Records the part's ops into a graph: nothing executes. */
static pt_status capture(pt_replica *r, rp_graph_slot *s, int slot, const op_list *const *l, int nl,
                         pt_error *err)
{
    const pt_backend_iface *be = r->dev->be;
    PT_TRY(be->graph_begin(r->dev->ctx, err));
    pt_status st = run_lists(r, l, nl, err);
    pt_error end_err;
    void *exec = NULL;
    const pt_status est = be->graph_end(r->dev->ctx, &exec, st == PT_OK ? err : &end_err);
    if (st == PT_OK) st = est;
    if (st != PT_OK) {
        if (exec) be->graph_free(r->dev->ctx, exec);
        return st;
    }
    s->exec[slot] = exec;
    r->g.captures++;
    return PT_OK;
}

pt_status rp_run_part(pt_replica *r, int seg, pt_error *err)
{
    const op_list *l[RP_PART_LISTS];
    const int nl = part_lists(r, seg, l);
    rp_graphs *g = &r->g;
    int n = 0;
    for (int k = 0; k < nl; k++) n += l[k]->n;
    /* per-op hooks, profiling and tracing need control between ops */
    /* a device group's hook reduces gradients between the training part's ops */
    if (!g->on || g->failed || (r->hook && seg != RP_SEG_UPDATE && seg != RP_SEG_EVAL) || r->prof || r->trace ||
        n > g->cap_ops[seg])
        return run_lists(r, l, nl, err);
    rp_graph_slot *s = NULL;
    for (int k = 0; k < RP_GRAPH_SLOTS && !s; k++)
        if (same_ops(r, g, &g->slot[seg][k], l, n)) s = &g->slot[seg][k];
    if (!s) {
        s = &g->slot[seg][0];
        for (int k = 1; k < RP_GRAPH_SLOTS; k++)
            if (s->n >= 0 && (g->slot[seg][k].n < 0 || g->slot[seg][k].used < s->used)) s = &g->slot[seg][k];
        drop_graph(r, s);
        for (int i = 0; i < n; i++) snap_op(r, l, i, &s->snap[i]);
        s->n = n;
    }
    s->used = ++g->clock;
    const int slot = l[0]->in_slot; /* the update part reads no input: slot 0 */
    if (!s->exec[slot]) {
        if (s->runs < RP_GRAPH_WARMUP) {
            s->runs++;
            return run_lists(r, l, nl, err);
        }
        pt_error cerr;
        if (capture(r, s, slot, l, nl, &cerr) != PT_OK) {
            g->failed = 1;
            snprintf(g->why, sizeof g->why, "the capture of the %s part failed (%.120s)", part_name[seg], cerr.msg);
            return run_lists(r, l, nl, err);
        }
        if ((seg == RP_SEG_TRAIN || seg == RP_SEG_STEP) && g->first_capture_step < 0)
            g->first_capture_step = g->train_steps;
    }
    g->launches++;
    return r->dev->be->graph_launch(r->dev->ctx, s->exec[slot], err);
}

void pt_replica_graph_stats(const pt_replica *r, pt_graph_stats *out)
{
    memset(out, 0, sizeof *out);
    const rp_graphs *g = &r->g;
    out->on = g->on && !g->failed;
    out->training_part = out->on && !r->hook;
    out->captures = g->captures;
    out->launches = g->launches;
    out->captured_after_step = g->first_capture_step >= 0 ? g->first_capture_step : 0;
    out->whole_steps = g->whole_steps;
    out->inputs_staged = r->in.staged_used;
    if (out->on && !out->training_part)
        snprintf(out->why, sizeof out->why,
                 "the forward and backward ops run one by one: a device group reduces gradients between them");
    else if (!out->on)
        snprintf(out->why, sizeof out->why, "%s", g->why);
}

int pt_replica_pinned_input(const pt_replica *r, char *why, size_t cap)
{
    if (why && cap) snprintf(why, cap, "%s", r->in.on ? "" : r->in.why);
    return r->in.on;
}

pt_status rp_input_read_queued(pt_replica *r, int slot, pt_error *err)
{
    const pt_backend_iface *be = r->dev->be;
    if (!r->in.on || !be->compute_fence) return PT_OK;
    return be->compute_fence(r->dev->ctx, &r->in.read_fence[slot], err);
}

void rp_point_input(pt_replica *r, op_list *l, int to)
{
    if (l->in_slot == to) return;
    for (int i = 0; i < l->n; i++) move_input(r, &l->ops[i], l->in_slot, to);
    l->in_slot = to;
}

pt_status rp_input_quiesce(pt_replica *r, pt_error *err)
{
    for (int k = 0; k < 2; k++)
        if (r->in.host[k]) PT_TRY(r->dev->be->write_fence_wait(r->dev->ctx, r->in.fence[k], 1, err));
    return PT_OK;
}

/* Copies the batch into staging buffer and arena slot k on the copy queue. */
static pt_status stage_copy(pt_replica *r, int k, const float *x, const int32_t *y, const int32_t *y2,
                            const float *lam, int n, pt_error *err)
{
    rp_input *in = &r->in;
    const pt_backend_iface *be = r->dev->be;
    const size_t xb = rp_node_bytes(&r->net->nodes[0], n), yb = (size_t)n * sizeof(int32_t);
    const size_t *off = r->in_off[k];
    const pt_mem xm = {r->arena, off[RP_IN_X]}, ym = {r->arena, off[RP_IN_Y]};
    const pt_mem y2m = {r->arena, off[RP_IN_Y2]}, lm = {r->arena, off[RP_IN_LAM]};
    /* ops of an earlier step that read this slot must be done before the copy overwrites it:
     * the copy queue waits for them on the device, or (a backend without compute fences) the
     * host synchronises unless it has read that step's outputs since */
    if (be->copy_wait && be->compute_fence) {
        if (in->read_fence[k]) PT_TRY(be->copy_wait(r->dev->ctx, in->read_fence[k], err));
    } else if (in->busy[k]) {
        PT_TRY(pt_device_sync(r->dev, err));
        in->busy[0] = in->busy[1] = 0;
    }
    /* this staging buffer's previous copy has completed before its memory is refilled */
    PT_TRY(be->write_fence_wait(r->dev->ctx, in->fence[k], 1, err));
    char *h = in->host[k];
    char *hy = h + in->x_bytes, *hy2 = hy + in->y_bytes, *hl = hy2 + in->y_bytes;
    memcpy(h, x, xb);
    memcpy(hy, y, yb);
    PT_TRY(be->write_async(r->dev->ctx, xm, h, xb, &in->fence[k], err));
    PT_TRY(be->write_async(r->dev->ctx, ym, hy, yb, &in->fence[k], err));
    if (y2) {
        memcpy(hy2, y2, yb);
        memcpy(hl, lam, (size_t)n * sizeof(float));
        PT_TRY(be->write_async(r->dev->ctx, y2m, hy2, yb, &in->fence[k], err));
        PT_TRY(be->write_async(r->dev->ctx, lm, hl, (size_t)n * sizeof(float), &in->fence[k], err));
    }
    return PT_OK;
}

pt_status pt_replica_stage_input(pt_replica *r, const float *x, const int32_t *y, const int32_t *y2,
                                 const float *lam, int n, pt_error *err)
{
    rp_input *in = &r->in;
    if (!in->on) return PT_OK;
    if (n < 1 || n > r->capacity)
        return pt_fail(err, PT_ERR_INVALID, "batch of %d samples, replica holds 1..%d", n, r->capacity);
    if (!y2 != !lam) return pt_fail(err, PT_ERR_INVALID, "mixup targets need both second labels and weights");
    const int k = in->next;
    in->next ^= 1;
    in->staged = 0;
    const double t0 = r->trace ? pt_trace_now() : 0;
    PT_TRY(stage_copy(r, k, x, y, y2, lam, n, err));
    /* the host's part: the batch into the pinned buffer and the copies queued */
    if (r->trace) pt_trace_span(r->trace, r->trace_track, "stage_input", "input", "samples", n, t0, pt_trace_now());
    in->staged = 1;
    in->staged_slot = k;
    in->staged_n = n;
    in->staged_x = x, in->staged_y = y, in->staged_y2 = y2, in->staged_lam = lam;
    return PT_OK;
}

pt_status rp_upload_input(pt_replica *r, const float *x, const int32_t *y, const int32_t *y2, const float *lam,
                          int n, int *slot, pt_error *err)
{
    rp_input *in = &r->in;
    *slot = 0;
    const double t0 = r->trace ? pt_trace_now() : 0;
    if (!in->on) {
        const size_t xb = rp_node_bytes(&r->net->nodes[0], n), yb = (size_t)n * sizeof(int32_t);
        const size_t *off = r->in_off[0];
        PT_TRY(pt_device_write(r->dev, (pt_mem){r->arena, off[RP_IN_X]}, x, xb, err));
        PT_TRY(pt_device_write(r->dev, (pt_mem){r->arena, off[RP_IN_Y]}, y, yb, err));
        if (y2) {
            PT_TRY(pt_device_write(r->dev, (pt_mem){r->arena, off[RP_IN_Y2]}, y2, yb, err));
            PT_TRY(pt_device_write(r->dev, (pt_mem){r->arena, off[RP_IN_LAM]}, lam, (size_t)n * sizeof(float), err));
        }
        if (r->trace) pt_trace_span(r->trace, r->trace_track, "copy_input", "input", "samples", n, t0, pt_trace_now());
        return PT_OK;
    }
    int k;
    if (in->staged && in->staged_n == n && in->staged_x == x && in->staged_y == y && in->staged_y2 == y2 &&
        in->staged_lam == lam) {
        k = in->staged_slot; /* copied already, while the step before ran */
        in->staged_used++;
    } else {
        k = in->next;
        in->next ^= 1;
        PT_TRY(stage_copy(r, k, x, y, y2, lam, n, err));
        if (r->trace) pt_trace_span(r->trace, r->trace_track, "copy_input", "input", "samples", n, t0, pt_trace_now());
    }
    in->staged = 0;
    in->busy[k] = 1;
    *slot = k;
    /* the ops queued next wait for the copies on the device, not on the host */
    return r->dev->be->write_fence_wait(r->dev->ctx, in->fence[k], 0, err);
}
