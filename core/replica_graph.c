/* A replica's step as graphs (polytrain/replica.h, pt_replica_options.graphs): each part of
 * the step (forward + loss + backward, the update, the evaluation forward) is captured once
 * its ops have run unchanged RP_GRAPH_WARMUP times and replayed from then on. What changes
 * every step lives in a per-replica step record on the device (pt_step_scalars, one write per
 * part and step), so a replay needs nothing but a launch. Whether a part's graph still holds
 * is decided by comparing its ops, per-step values cleared, with the ops it was captured from:
 * a new batch size, a re-planned arena or any other change of the lists gets a graph of its
 * own (RP_GRAPH_SLOTS per part, least recently used replaced). A capture that fails turns
 * graphs off for the replica, which then runs op by op. Also here: the pinned, double-buffered
 * input. Everything is allocated at creation: a step allocates nothing on the host. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/replica_internal.h"

static const char *const part_name[RP_NSEG] = {"training", "update", "evaluation"};

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

static void part_lists(pt_replica *r, int seg, const op_list **a, const op_list **b)
{
    *b = NULL;
    if (seg == RP_SEG_TRAIN) {
        *a = &r->fwd_train;
        *b = &r->bwd;
    } else {
        *a = seg == RP_SEG_UPDATE ? &r->update : &r->fwd_eval;
    }
}

static pt_status setup_input(pt_replica *r, pt_switch pinned, pt_error *err)
{
    rp_input *in = &r->in;
    if (pinned == PT_SWITCH_OFF) {
        snprintf(in->why, sizeof in->why, "--pinned-input off");
        return PT_OK;
    }
    if (!pt_device_pinned_input(r->dev)) {
        snprintf(in->why, sizeof in->why, "the %s backend has no asynchronous copies from pinned memory",
                 r->dev->be->name);
        if (pinned == PT_SWITCH_ON)
            return pt_fail(err, PT_ERR_UNSUPPORTED, "--pinned-input on: %s device %d (%s): %s", r->dev->be->name,
                           r->dev->index, r->dev->info.name, in->why);
        return PT_OK;
    }
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
    if (graphs == PT_SWITCH_OFF) {
        snprintf(g->why, sizeof g->why, "--cuda-graphs off");
        return PT_OK;
    }
    char why[160];
    if (!pt_device_graph_capable(r->dev, why, sizeof why)) {
        snprintf(g->why, sizeof g->why, "%s", why);
        if (graphs == PT_SWITCH_ON)
            return pt_fail(err, PT_ERR_UNSUPPORTED, "--cuda-graphs on: %s device %d (%s) cannot capture graphs: %s",
                           r->dev->be->name, r->dev->index, r->dev->info.name, why);
        return PT_OK;
    }
    PT_TRY(pt_device_alloc(r->dev, 2 * sizeof(pt_step_scalars), &g->rec, err));
    memset(g->host, 0, sizeof g->host);
    g->cap_ops[RP_SEG_TRAIN] = r->fwd_train.n + r->bwd.n;
    g->cap_ops[RP_SEG_UPDATE] = r->update.n;
    g->cap_ops[RP_SEG_EVAL] = r->fwd_eval.n;
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
    if (s->exec) r->dev->be->graph_free(r->dev->ctx, s->exec);
    s->exec = NULL;
    s->n = -1;
    s->runs = 0;
}

/* Every graph refers to the arena by address: a new arena (pt_replica_fit_workspace) drops
 * them all, even where a list compares equal (a freed handle's address may come back). */
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
    return pt_device_write(r->dev, rp_step_record(r, seg), &r->g.host[seg], sizeof(pt_step_scalars), err);
}

static pt_status run_lists(pt_replica *r, const op_list *a, const op_list *b, pt_error *err)
{
    PT_TRY(rp_run_list(r, a, err));
    return b ? rp_run_list(r, b, err) : PT_OK;
}

static const pt_op *op_at(const op_list *a, const op_list *b, int i)
{
    return i < a->n ? &a->ops[i] : &b->ops[i - a->n];
}

static int same_ops(rp_graphs *g, const rp_graph_slot *s, const op_list *a, const op_list *b, int n)
{
    if (s->n != n) return 0;
    for (int i = 0; i < n; i++) {
        g->scratch = *op_at(a, b, i);
        pt_op_clear_step_params(&g->scratch);
        if (memcmp(&g->scratch, &s->snap[i], sizeof(pt_op)) != 0) return 0;
    }
    return 1;
}

/* Records the part's ops into a graph: nothing executes. */
static pt_status capture(pt_replica *r, rp_graph_slot *s, const op_list *a, const op_list *b, pt_error *err)
{
    const pt_backend_iface *be = r->dev->be;
    PT_TRY(be->graph_begin(r->dev->ctx, err));
    pt_status st = run_lists(r, a, b, err);
    pt_error end_err;
    void *exec = NULL;
    const pt_status est = be->graph_end(r->dev->ctx, &exec, st == PT_OK ? err : &end_err);
    if (st == PT_OK) st = est;
    if (st != PT_OK) {
        if (exec) be->graph_free(r->dev->ctx, exec);
        return st;
    }
    s->exec = exec;
    r->g.captures++;
    return PT_OK;
}

pt_status rp_run_part(pt_replica *r, int seg, pt_error *err)
{
    const op_list *a, *b;
    part_lists(r, seg, &a, &b);
    rp_graphs *g = &r->g;
    const int n = a->n + (b ? b->n : 0);
    /* per-op hooks, profiling and tracing need control between ops */
    /* a device group's hook reduces gradients between the training part's ops */
    if (!g->on || g->failed || (r->hook && seg == RP_SEG_TRAIN) || r->prof || r->trace || n > g->cap_ops[seg])
        return run_lists(r, a, b, err);
    rp_graph_slot *s = NULL;
    for (int k = 0; k < RP_GRAPH_SLOTS && !s; k++)
        if (same_ops(g, &g->slot[seg][k], a, b, n)) s = &g->slot[seg][k];
    if (!s) {
        s = &g->slot[seg][0];
        for (int k = 1; k < RP_GRAPH_SLOTS; k++)
            if (s->n >= 0 && (g->slot[seg][k].n < 0 || g->slot[seg][k].used < s->used)) s = &g->slot[seg][k];
        drop_graph(r, s);
        for (int i = 0; i < n; i++) {
            s->snap[i] = *op_at(a, b, i);
            pt_op_clear_step_params(&s->snap[i]);
        }
        s->n = n;
    }
    s->used = ++g->clock;
    if (!s->exec) {
        if (s->runs < RP_GRAPH_WARMUP) {
            s->runs++;
            return run_lists(r, a, b, err);
        }
        pt_error cerr;
        if (capture(r, s, a, b, &cerr) != PT_OK) {
            g->failed = 1;
            snprintf(g->why, sizeof g->why, "the capture of the %s part failed (%.120s)", part_name[seg], cerr.msg);
            return run_lists(r, a, b, err);
        }
        if (seg == RP_SEG_TRAIN && g->first_capture_step < 0) g->first_capture_step = g->train_steps;
    }
    g->launches++;
    return r->dev->be->graph_launch(r->dev->ctx, s->exec, err);
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

pt_status rp_upload_input(pt_replica *r, const float *x, const int32_t *y, const int32_t *y2, const float *lam,
                          int n, pt_error *err)
{
    const size_t xb = rp_node_bytes(&r->net->nodes[0], n), yb = (size_t)n * sizeof(int32_t);
    const pt_mem xm = {r->arena, r->x_off}, ym = {r->arena, r->y_off};
    const pt_mem y2m = {r->arena, r->y2_off}, lm = {r->arena, r->lam_off};
    rp_input *in = &r->in;
    if (!in->on) {
        PT_TRY(pt_device_write(r->dev, xm, x, xb, err));
        PT_TRY(pt_device_write(r->dev, ym, y, yb, err));
        if (y2) {
            PT_TRY(pt_device_write(r->dev, y2m, y2, yb, err));
            PT_TRY(pt_device_write(r->dev, lm, lam, (size_t)n * sizeof(float), err));
        }
        return PT_OK;
    }
    const pt_backend_iface *be = r->dev->be;
    /* the arena's input is single: ops of an earlier step that read it must be done */
    if (in->busy) PT_TRY(pt_device_sync(r->dev, err));
    in->busy = 0;
    const int k = in->next;
    in->next ^= 1;
    /* this half's previous copy has completed before its memory is refilled */
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
    /* the ops queued next wait for the copies on the device, not on the host */
    return be->write_fence_wait(r->dev->ctx, in->fence[k], 0, err);
}
