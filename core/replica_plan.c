/* The replica's memory plan: where each activation, saved tensor and gradient lies in the
 * arena, which layers compute in place, and which ranges share memory by live range.
 * It only assigns offsets: it never emits or runs an op and never touches the device. */
#include <stdlib.h>

#include "core/layers/layer.h"
#include "core/liveplan.h"
#include "core/replica_internal.h"

static size_t saved_bytes(const pt_node *n, int slot, int batch)
{
    int64_t dim[4] = {1, 1, 1, 1};
    int ndim;
    pt_dtype dt;
    pt_layer_vtable(n->kind)->saved_shape(n, slot, batch, dim, &ndim, &dt);
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) numel *= dim[d];
    return (size_t)numel * pt_dtype_size(dt);
}

/* A layer computes in place when it allows it and its input feeds nothing else (and is
 * not itself in place, whose backward would need the overwritten output). */
static int alias_input(const pt_replica *r, int id)
{
    const pt_node *n = &r->net->nodes[id];
    if (!pt_layer_in_place(n)) return 0;
    int in = n->in[0];
    const pt_node *src = &r->net->nodes[in];
    if (src->kind == PT_NODE_INPUT || r->consumers[in] != 1) return 0;
    return !pt_layer_in_place(src);
}

/* A node's gradient is its first input's range when it computes in place, or when its
 * backward hands dy on unchanged to that input (a residual add) and the input feeds
 * nothing else: the add's backward then skips that copy. */
static int grad_alias(const pt_replica *r, int id)
{
    if (alias_input(r, id)) return 1;
    const pt_node *n = &r->net->nodes[id];
    const pt_layer_vt *vt = pt_layer_vtable(n->kind);
    if (!vt || !vt->grad_in_place) return 0;
    const int in = n->in[0];
    return r->net->nodes[in].kind != PT_NODE_INPUT && r->consumers[in] == 1;
}

/* Without host memory to plan: one range per group. */
static size_t grads_one_each(pt_replica *r, size_t base)
{
    size_t end = 0;
    for (int i = 0; i < r->net->nnodes; i++) {
        r->mem[i].grad = grad_alias(r, i) ? r->mem[r->net->nodes[i].in[0]].grad : base + end;
        if (!grad_alias(r, i)) end = rp_align_bytes(end + rp_node_bytes(&r->net->nodes[i], r->capacity));
    }
    return end;
}

/* Gradients are live only from the backward op of a node's last consumer (the first to
 * write it) to the node's own backward op, so they share memory (pt_live_assign): each
 * group (a node and the layers aliasing its gradient) is one range, live in backward time
 * from the largest index of a node consuming any member (the net's output: from the loss)
 * down to its root's index. Returns the region's size; offsets are relative to `base`. */
static size_t plan_grads(pt_replica *r, size_t base)
{
    const pt_net *net = r->net;
    const int nn = net->nnodes;
    int *born = malloc((size_t)nn * sizeof *born);
    pt_live_item *it = calloc((size_t)nn, sizeof *it);
    if (!born || !it) {
        free(born), free(it);
        return grads_one_each(r, base);
    }
    for (int i = 0; i < nn; i++) born[i] = i == net->output ? nn : i;
    for (int j = 0; j < nn; j++)
        for (int k = 0; k < net->nodes[j].nin; k++) {
            int in = net->nodes[j].in[k];
            if (j > born[in]) born[in] = j;
        }
    for (int i = nn - 1; i >= 0; i--)
        if (grad_alias(r, i)) {
            int root = net->nodes[i].in[0];
            if (born[i] > born[root]) born[root] = born[i];
        }
    /* backward time runs from nn (the loss) down to 0: position nn - t */
    for (int i = 0; i < nn; i++) {
        it[i].bytes = grad_alias(r, i) ? 0 : rp_align_bytes(rp_node_bytes(&net->nodes[i], r->capacity));
        it[i].first[0] = nn - born[i];
        it[i].last[0] = nn - i;
        it[i].first[1] = 1, it[i].last[1] = 0;
    }
    size_t end = pt_live_assign(it, nn);
    if (end == (size_t)-1) {
        end = grads_one_each(r, base);
    } else {
        for (int i = 0; i < nn; i++)
            r->mem[i].grad = grad_alias(r, i) ? r->mem[net->nodes[i].in[0]].grad : base + it[i].off;
    }
    free(born), free(it);
    return end;
}

/* Activations and saved tensors one after another, each its own range (the layout the ops
 * are first emitted against); returns the end of that region. */
size_t rp_plan_acts_sequential(pt_replica *r)
{
    const pt_net *net = r->net;
    size_t off = 0;
    int B = r->capacity;
    for (int i = 0; i < net->nnodes; i++) {
        const pt_node *n = &net->nodes[i];
        node_mem *m = &r->mem[i];
        if (alias_input(r, i)) {
            m->act = r->mem[n->in[0]].act;
        } else {
            m->act = off;
            off = rp_align_bytes(off + rp_act_bytes(r, i, B));
        }
        const pt_layer_vt *vt = pt_layer_vtable(n->kind);
        for (int s = 0; vt && s < vt->nsaved; s++) {
            m->saved[s] = off;
            off = rp_align_bytes(off + saved_bytes(n, s, B));
        }
    }
    return off;
}

/* Gradients, labels, losses and the workspace after the activation region ending at off. */
void rp_plan_tail(pt_replica *r, size_t off)
{
    /* The data input gets a gradient range too: a BN on it still computes dx. */
    off = rp_align_bytes(off + plan_grads(r, off));
    int B = r->capacity;
    r->y_off = off;
    off = rp_align_bytes(off + (size_t)B * sizeof(int32_t));
    r->y2_off = off;
    off = rp_align_bytes(off + (size_t)B * sizeof(int32_t));
    r->lam_off = off;
    off = rp_align_bytes(off + (size_t)B * sizeof(float));
    r->loss_off = off;
    off = rp_align_bytes(off + (size_t)B * sizeof(float));
    r->found_off = off; /* the overflow flag of loss scaling: one float */
    off = rp_align_bytes(off + sizeof(float));
    r->x_off = r->mem[0].act;
    const size_t part[RP_IN_PARTS] = {rp_node_bytes(&r->net->nodes[0], B), (size_t)B * sizeof(int32_t),
                                      (size_t)B * sizeof(int32_t), (size_t)B * sizeof(float)};
    r->in_off[0][RP_IN_X] = r->x_off;
    r->in_off[0][RP_IN_Y] = r->y_off;
    r->in_off[0][RP_IN_Y2] = r->y2_off;
    r->in_off[0][RP_IN_LAM] = r->lam_off;
    /* the second input slot: the batch after the current one is copied in while the
     * current one's step runs */
    for (int k = 0; k < RP_IN_PARTS; k++) {
        r->in_off[1][k] = r->in_off[0][k];
        if (r->in_slots < 2) continue;
        r->in_off[1][k] = off;
        off = rp_align_bytes(off + part[k]);
    }
    r->ws_off = off;
    r->arena_bytes = off; /* workspace added after emission */
}

/* Marks every item of the activation region (sorted provisional offsets `start`, sizes in
 * `it`) that an op of list l touches, at position base + the op's index. */
static void touch_list(const pt_replica *r, const op_list *l, long base, int line, pt_live_item *it,
                       const size_t *start, int nitems, size_t region_end)
{
    for (int i = 0; i < l->n; i++) {
        const pt_op *op = &l->ops[i];
        for (int t = 0; t < op->nt && t < PT_OP_MAX_OPERANDS; t++) {
            const pt_tensor *x = &op->t[t];
            if (x->ndim == 0 || x->mem.buf != r->arena || x->mem.off >= region_end) continue;
            size_t lo = x->mem.off, hi = lo + pt_tensor_bytes(x);
            int a = 0, b = nitems - 1; /* the last item starting at or before lo */
            while (a < b) {
                int m = (a + b + 1) / 2;
                if (start[m] <= lo) a = m;
                else b = m - 1;
            }
            for (int k = a; k < nitems && (start[k] < hi || k == a); k++) pt_live_touch(&it[k], line, base + i);
        }
    }
}

static int alias_root(const pt_replica *r, int id)
{
    while (alias_input(r, id)) id = r->net->nodes[id].in[0];
    return id;
}

/* Activations and saved tensors that are never in use at the same time share memory. The
 * training lists (forward with the loss, then backward) and the evaluation list, emitted
 * at full batch against the sequential layout, say which op touches which range: an
 * activation no backward op reads (a BN output feeding only a residual add, say) is free
 * again after its last forward reader. The input is written before the lists run and the
 * output read after them, so both stay live throughout. PT_ACT_SHARE=0 keeps one range
 * each, the layout before this pass. */
pt_status rp_share_activations(pt_replica *r, size_t region_end, pt_error *err)
{
    const char *env = getenv("PT_ACT_SHARE");
    r->act_plan.act_bytes = region_end;
    if (env && env[0] == '0' && env[1] == 0) return PT_OK;
    const pt_net *net = r->net;
    const int nn = net->nnodes;
    int n = 0;
    for (int i = 0; i < nn; i++) {
        const pt_layer_vt *vt = pt_layer_vtable(net->nodes[i].kind);
        n += !alias_input(r, i) + (vt ? vt->nsaved : 0);
    }
    pt_live_item *it = calloc((size_t)n, sizeof *it);
    size_t *start = malloc((size_t)n * sizeof *start);
    int *act_item = malloc((size_t)nn * sizeof *act_item);
    int(*saved_item)[2] = malloc((size_t)nn * sizeof *saved_item);
    if (!it || !start || !act_item || !saved_item) {
        free(it), free(start), free(act_item), free(saved_item);
        return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    }
    int k = 0;
    for (int i = 0; i < nn; i++) {
        const pt_node *nd = &net->nodes[i];
        const pt_layer_vt *vt = pt_layer_vtable(nd->kind);
        if (!alias_input(r, i)) {
            start[k] = r->mem[i].act;
            it[k].bytes = rp_align_bytes(rp_act_bytes(r, i, r->capacity));
            act_item[i] = k++;
        }
        for (int s = 0; vt && s < vt->nsaved; s++) {
            start[k] = r->mem[i].saved[s];
            it[k].bytes = rp_align_bytes(saved_bytes(nd, s, r->capacity));
            saved_item[i][s] = k++;
        }
    }
    for (int j = 0; j < n; j++)
        for (int l = 0; l < PT_LIVE_TIMELINES; l++) it[j].first[l] = 1, it[j].last[l] = 0;
    touch_list(r, &r->fwd_train, 0, 0, it, start, n, region_end);
    touch_list(r, &r->bwd, r->fwd_train.n, 0, it, start, n, region_end);
    touch_list(r, &r->fwd_eval, 0, 1, it, start, n, region_end);
    const long end_pos = (long)r->fwd_train.n + r->bwd.n + r->fwd_eval.n + 1;
    for (int l = 0; l < PT_LIVE_TIMELINES; l++) {
        pt_live_touch(&it[act_item[0]], l, -1);
        pt_live_touch(&it[act_item[0]], l, end_pos);
        pt_live_touch(&it[act_item[alias_root(r, net->output)]], l, -1);
        pt_live_touch(&it[act_item[alias_root(r, net->output)]], l, end_pos);
    }
    size_t total = pt_live_assign(it, n);
    if (total == (size_t)-1) {
        free(it), free(start), free(act_item), free(saved_item);
        return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    }
    if (total < region_end) {
        for (int i = 0; i < nn; i++) {
            const pt_layer_vt *vt = pt_layer_vtable(net->nodes[i].kind);
            r->mem[i].act = alias_input(r, i) ? r->mem[net->nodes[i].in[0]].act : it[act_item[i]].off;
            for (int s = 0; vt && s < vt->nsaved; s++) r->mem[i].saved[s] = it[saved_item[i][s]].off;
        }
        rp_plan_tail(r, rp_align_bytes(total));
        r->act_plan.act_bytes = rp_align_bytes(total);
    }
    free(it), free(start), free(act_item), free(saved_item);
    return PT_OK;
}

/* The activation range [start, end) of an in-place group's root in the sequential layout. */
typedef struct act_range {
    size_t start, end;
    int root;
} act_range;

/* Whether op still passes the device's check with its operands on range g (those exactly
 * covering it: any other view of it refuses) in dt, and under --act-storage auto whether the
 * device runs it so in its own kernels (no float32 copies, so no slower). */
static int op_takes(const pt_replica *r, const pt_op *op, const act_range *g, pt_dtype dt)
{
    pt_op o = *op;
    for (int t = 0; t < o.nt && t < PT_OP_MAX_OPERANDS; t++) {
        pt_tensor *x = &o.t[t];
        if (x->ndim == 0 || x->mem.buf != r->arena) continue;
        const size_t lo = x->mem.off, hi = lo + pt_tensor_bytes(x);
        if (hi <= g->start || lo >= g->end) continue;
        if (lo != g->start || hi != g->end || x->dtype != PT_F32) return 0;
        x->dtype = dt;
    }
    const pt_backend_iface *be = r->dev->be;
    if (!be->supports(r->dev->ctx, &o)) return 0;
    return r->act_storage != PT_ACT_STORAGE_AUTO || (be->act16_native && be->act16_native(r->dev->ctx, &o));
}

static void judge_list(const pt_replica *r, const op_list *l, const act_range *g, int ng, pt_dtype dt, char *ok)
{
    for (int i = 0; i < l->n; i++) {
        const pt_op *op = &l->ops[i];
        for (int t = 0; t < op->nt && t < PT_OP_MAX_OPERANDS; t++) {
            const pt_tensor *x = &op->t[t];
            if (x->ndim == 0 || x->mem.buf != r->arena) continue;
            const size_t lo = x->mem.off, hi = lo + pt_tensor_bytes(x);
            for (int k = 0; k < ng; k++) /* ranges are disjoint; few enough to scan */
                if (ok[k] && lo < g[k].end && hi > g[k].start && !op_takes(r, op, &g[k], dt)) ok[k] = 0;
        }
    }
}

pt_status rp_choose_act_dtypes(const pt_replica *r, pt_dtype *out, pt_error *err)
{
    const pt_net *net = r->net;
    const int nn = net->nnodes;
    const pt_dtype dt = pt_precision_act_dtype(r->precision);
    for (int i = 0; i < nn; i++) out[i] = PT_F32;
    if (dt == PT_F32 || r->act_storage == PT_ACT_STORAGE_FP32) return PT_OK;
    act_range *g = calloc((size_t)nn + 1, sizeof *g);
    char *ok = malloc((size_t)nn);
    int *group = malloc((size_t)nn * sizeof *group);
    if (!g || !ok || !group) {
        free(g), free(ok), free(group);
        return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    }
    int ng = 0;
    for (int i = 0; i < nn; i++) {
        if (alias_input(r, i)) continue;
        g[ng].start = r->mem[i].act;
        g[ng].end = r->mem[i].act + rp_node_bytes(&net->nodes[i], r->capacity);
        g[ng].root = i;
        /* the data input is written from the host, the logits read by the loss and the host */
        ok[ng] = i != 0 && i != alias_root(r, net->output);
        group[i] = ng++;
    }
    judge_list(r, &r->fwd_train, g, ng, dt, ok);
    judge_list(r, &r->bwd, g, ng, dt, ok);
    judge_list(r, &r->fwd_eval, g, ng, dt, ok);
    for (int i = 0; i < nn; i++) out[i] = ok[group[alias_root(r, i)]] ? dt : PT_F32;
    free(g), free(ok), free(group);
    return PT_OK;
}

/* Whether an operand of an op of l lies in [lo, hi) of the arena. */
static int list_touches(const pt_replica *r, const op_list *l, size_t lo, size_t hi)
{
    for (int i = 0; i < l->n; i++)
        for (int t = 0; t < l->ops[i].nt && t < PT_OP_MAX_OPERANDS; t++) {
            const pt_tensor *x = &l->ops[i].t[t];
            if (x->ndim == 0 || x->mem.buf != r->arena) continue;
            if (x->mem.off < hi && x->mem.off + pt_tensor_bytes(x) > lo) return 1;
        }
    return 0;
}

int rp_mark_unused_acts(pt_replica *r)
{
    const pt_net *net = r->net;
    int marked = 0;
    for (int i = 1; i < net->nnodes; i++) {
        if (r->act_unused[i] || alias_input(r, i) || i == alias_root(r, net->output)) continue;
        /* an in-place layer over it shares the range, and so its readers */
        const size_t lo = r->mem[i].act, hi = lo + rp_act_bytes(r, i, r->capacity);
        if (list_touches(r, &r->fwd_train, lo, hi) || list_touches(r, &r->bwd, lo, hi) ||
            list_touches(r, &r->fwd_eval, lo, hi))
            continue;
        r->act_unused[i] = 1;
        marked++;
    }
    return marked;
}

void rp_count_acts(const pt_replica *r, int *nacts, int *n16)
{
    *nacts = *n16 = 0;
    for (int i = 0; i < r->net->nnodes; i++)
        if (!alias_input(r, i) && !r->act_unused[i]) {
            ++*nacts;
            *n16 += r->act_dtype[i] != PT_F32;
        }
}

/* A node may be NHWC when its layer writes channels-last images and every layer reading it
 * reads them; the data input never (the host writes it NCHW), nor a flat node. */
static int may_be_nhwc(const pt_replica *r, int id)
{
    const pt_net *net = r->net;
    const pt_node *n = &net->nodes[id];
    const pt_layer_vt *vt = pt_layer_vtable(n->kind);
    if (id == 0 || n->kind == PT_NODE_INPUT || n->flat || !vt || !vt->nhwc) return 0;
    for (int j = id + 1; j < net->nnodes; j++)
        for (int k = 0; k < net->nodes[j].nin; k++)
            if (net->nodes[j].in[k] == id) {
                const pt_layer_vt *cv = pt_layer_vtable(net->nodes[j].kind);
                if (!cv || !cv->nhwc) return 0;
            }
    return 1;
}

void rp_choose_layouts(pt_replica *r)
{
    /* auto: NCHW, as long as no backend runs its convolutions on channels-last images natively
     * (over copies NHWC only adds transposes) */
    for (int i = 0; i < r->net->nnodes; i++) r->act_layout[i] = PT_LAYOUT_NCHW;
    if (r->layout_opt != PT_IMAGES_NHWC) return;
    /* an in-place layer's output is its input's memory, and a gradient passed on unchanged is
     * its input's gradient: one layout for such a pair, NHWC only when both may be */
    for (int i = 0; i < r->net->nnodes; i++) r->act_layout[i] = may_be_nhwc(r, i) ? PT_LAYOUT_NHWC : PT_LAYOUT_NCHW;
    for (int pass = 0; pass < 2; pass++)
        for (int i = r->net->nnodes - 1; i >= 0; i--) {
            if (!grad_alias(r, i)) continue;
            const int in = r->net->nodes[i].in[0];
            if (r->act_layout[i] != r->act_layout[in]) r->act_layout[i] = r->act_layout[in] = PT_LAYOUT_NCHW;
        }
}

void rp_count_layouts(const pt_replica *r, int *n4d, int *nhwc)
{
    *n4d = *nhwc = 0;
    for (int i = 0; i < r->net->nnodes; i++)
        if (!alias_input(r, i) && !r->net->nodes[i].flat) {
            ++*n4d;
            *nhwc += r->act_layout[i] == PT_LAYOUT_NHWC;
        }
}
