/* The replica: memory planning (slab + arena), op-list emission through the layers'
 * emit functions, and the step functions that only patch and run prebuilt ops.
 * Nothing here allocates after pt_replica_create returns. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/layers/layer.h"
#include "core/liveplan.h"
#include "core/replica.h"
#include "core/rng.h"

#define ALIGN_BYTES 64

typedef struct node_mem {
    size_t act, grad;   /* byte offsets in the arena */
    size_t saved[2];
} node_mem;

typedef struct op_list {
    pt_op *ops;
    int n, cap;
} op_list;

struct pt_replica {
    const pt_net *net;
    pt_device *dev;
    pt_optim_config opt;
    int capacity;
    uint64_t seed;

    /* slab: params | grads | opt slots | buffers (float elements) */
    pt_buffer *slab;
    int64_t preg, breg;
    int nslots;
    size_t slab_bytes;

    pt_buffer *arena;
    size_t arena_bytes;
    node_mem *mem;
    int *consumers;
    size_t x_off, y_off, y2_off, lam_off, loss_off, ws_off, ws_bytes;

    op_list fwd_train, bwd, fwd_eval, update;
    int batch_train, batch_eval; /* n the lists were emitted for */

    int *grad_written; /* emission scratch, sized nnodes */
    int *param_grad_written; /* emission scratch, sized nparams (shared parameters) */
    int64_t bn_steps;
    int opt_started;
    float label_smoothing;
    pt_op_profile *prof;
    int sync_bn;
    int global_batch; /* sync-BN: samples of the step over every device (0: this replica's) */
    pt_replica_hook hook;
    void *hook_user;
    int fold_relu; /* fold in-place ReLUs into the op before them (PT_FUSE_RELU=0: no),
                    * read once so every emission of the lists has the same ops */
};

struct pt_emit {
    pt_replica *r;
    op_list *list;
    int train;
    int n;
    int64_t sample_base;
    pt_status status;
};

/* ---------------------------------------------------------------- emit services */

pt_op *pt_emit_op(pt_emit *em, pt_op_kind kind)
{
    op_list *l = em->list;
    if (l->n == l->cap) {
        /* Only while planning (create): lists are re-emitted into the same capacity. */
        int ncap = l->cap ? l->cap * 2 : 64;
        pt_op *p = realloc(l->ops, (size_t)ncap * sizeof *p);
        if (!p) {
            em->status = PT_ERR_NOMEM;
            return NULL;
        }
        l->ops = p;
        l->cap = ncap;
    }
    pt_op *op = &l->ops[l->n++];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    return op;
}

int pt_emit_train(const pt_emit *em) { return em->train; }
int pt_emit_batch(const pt_emit *em) { return em->n; }
int64_t pt_emit_sample_base(const pt_emit *em) { return em->sample_base; }
uint64_t pt_emit_seed(const pt_emit *em) { return em->r->seed; }
int pt_emit_sync_bn(const pt_emit *em) { return em->r->sync_bn; }

static pt_tensor node_tensor(const pt_emit *em, int node, size_t off)
{
    const pt_node *n = &em->r->net->nodes[node];
    if (n->flat) return pt_tensor_2d(em->r->arena, off, em->n, n->c);
    return pt_tensor_4d(em->r->arena, off, em->n, n->c, n->h, n->w);
}

int pt_emit_fold_relu(pt_emit *em, int node)
{
    op_list *l = em->list;
    if (!em->r->fold_relu || l->n == 0) return 0;
    pt_op *op = &l->ops[l->n - 1];
    /* a kind that may carry the ReLU applies it to its first written operand */
    const pt_op_desc *d = pt_op_describe(op->kind);
    int out = -1;
    for (int i = 0; d && (d->flags & PT_OPF_FUSED_RELU) && i < d->nt && out < 0; i++)
        if (d->arg[i].access == PT_ARG_OUT) out = i;
    const pt_node *n = &em->r->net->nodes[node];
    if (out < 0 || op->fuse_relu || op->nt <= out) return 0;
    /* in place on exactly what that op wrote */
    const pt_tensor y = pt_emit_act(em, node), x = pt_emit_act(em, n->in[0]);
    if (!pt_tensor_same_start(&y, &x) || !pt_tensor_same_start(&op->t[out], &y)) return 0;
    op->fuse_relu = 1;
    if (em->r->dev->be->supports(em->r->dev->ctx, op)) return 1;
    op->fuse_relu = 0;
    return 0;
}

pt_tensor pt_emit_act(const pt_emit *em, int node) { return node_tensor(em, node, em->r->mem[node].act); }
pt_tensor pt_emit_grad(const pt_emit *em, int node) { return node_tensor(em, node, em->r->mem[node].grad); }
int pt_emit_wants_grad(const pt_emit *em, int node) { return em->r->net->nodes[node].kind != PT_NODE_INPUT; }

int pt_emit_grad_accumulate(pt_emit *em, int node)
{
    int acc = em->r->grad_written[node];
    em->r->grad_written[node] = 1;
    return acc;
}

int pt_emit_param_grad_accumulate(pt_emit *em, int param)
{
    int acc = em->r->param_grad_written[param];
    em->r->param_grad_written[param] = 1;
    return acc;
}

static pt_tensor param_tensor(const pt_replica *r, int param, int64_t region_off)
{
    const pt_param_info *p = &r->net->params[param];
    size_t off = (size_t)(region_off + p->offset) * sizeof(float);
    return pt_tensor_make(r->slab, off, PT_F32, p->ndim, p->dim);
}

pt_tensor pt_emit_param(const pt_emit *em, int param) { return param_tensor(em->r, param, 0); }
pt_tensor pt_emit_param_grad(const pt_emit *em, int param) { return param_tensor(em->r, param, em->r->preg); }

pt_tensor pt_emit_buffer(const pt_emit *em, int buffer)
{
    const pt_replica *r = em->r;
    const pt_buffer_info *b = &r->net->buffers[buffer];
    size_t off = (size_t)((2 + r->nslots) * r->preg + b->offset) * sizeof(float);
    return pt_tensor_1d(r->slab, off, PT_F32, b->numel);
}

pt_tensor pt_emit_saved(const pt_emit *em, int node, int slot)
{
    const pt_node *n = &em->r->net->nodes[node];
    const pt_layer_vt *vt = pt_layer_vtable(n->kind);
    int64_t dim[4];
    int ndim;
    pt_dtype dt;
    vt->saved_shape(n, slot, em->n, dim, &ndim, &dt);
    return pt_tensor_make(em->r->arena, em->r->mem[node].saved[slot], dt, ndim, dim);
}

/* ---------------------------------------------------------------- planning */

static size_t align_bytes(size_t n) { return (n + ALIGN_BYTES - 1) / ALIGN_BYTES * ALIGN_BYTES; }

static size_t node_bytes(const pt_node *n, int batch)
{
    return (size_t)batch * (size_t)(n->c * n->h * n->w) * sizeof(float);
}

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
        if (!grad_alias(r, i)) end = align_bytes(end + node_bytes(&r->net->nodes[i], r->capacity));
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
        it[i].bytes = grad_alias(r, i) ? 0 : align_bytes(node_bytes(&net->nodes[i], r->capacity));
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
static size_t plan_acts_sequential(pt_replica *r)
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
            off = align_bytes(off + node_bytes(n, B));
        }
        const pt_layer_vt *vt = pt_layer_vtable(n->kind);
        for (int s = 0; vt && s < vt->nsaved; s++) {
            m->saved[s] = off;
            off = align_bytes(off + saved_bytes(n, s, B));
        }
    }
    return off;
}

/* Gradients, labels, losses and the workspace after the activation region ending at off. */
static void plan_tail(pt_replica *r, size_t off)
{
    /* The data input gets a gradient range too: a BN on it still computes dx. */
    off = align_bytes(off + plan_grads(r, off));
    int B = r->capacity;
    r->y_off = off;
    off = align_bytes(off + (size_t)B * sizeof(int32_t));
    r->y2_off = off;
    off = align_bytes(off + (size_t)B * sizeof(int32_t));
    r->lam_off = off;
    off = align_bytes(off + (size_t)B * sizeof(float));
    r->loss_off = off;
    off = align_bytes(off + (size_t)B * sizeof(float));
    r->x_off = r->mem[0].act;
    r->ws_off = off;
    r->arena_bytes = off; /* workspace added after emission */
}

static pt_status emit_forward(pt_replica *r, op_list *list, int train, int n, pt_error *err)
{
    pt_emit em = {.r = r, .list = list, .train = train, .n = n, .sample_base = 0, .status = PT_OK};
    list->n = 0;
    const pt_net *net = r->net;
    for (int i = 1; i < net->nnodes; i++) {
        const pt_node *node = &net->nodes[i];
        pt_status st = pt_layer_vtable(node->kind)->forward(&em, node, i);
        if (st != PT_OK || em.status != PT_OK)
            return pt_fail(err, PT_ERR_NOMEM, "replica: cannot build the forward ops of '%s'", node->name);
    }
    pt_op *x = pt_emit_op(&em, PT_OP_XENT);
    if (!x) return pt_fail(err, PT_ERR_NOMEM, "replica: out of memory");
    x->nt = 4;
    x->t[0] = pt_emit_act(&em, net->output);
    x->t[1] = pt_tensor_1d(r->arena, r->y_off, PT_I32, n);
    x->t[2] = pt_tensor_1d(r->arena, r->loss_off, PT_F32, n);
    if (train) {
        x->t[3] = pt_emit_grad(&em, net->output);
        /* Mixup targets: attached always, used (nt = 6) only by steps that pass them. */
        x->t[4] = pt_tensor_1d(r->arena, r->y2_off, PT_I32, n);
        x->t[5] = pt_tensor_1d(r->arena, r->lam_off, PT_F32, n);
    } else {
        memset(&x->t[3], 0, sizeof x->t[3]); /* ndim 0: no gradient */
    }
    return PT_OK;
}

static pt_status emit_backward(pt_replica *r, int n, pt_error *err)
{
    pt_emit em = {.r = r, .list = &r->bwd, .train = 1, .n = n, .status = PT_OK};
    r->bwd.n = 0;
    const pt_net *net = r->net;
    memset(r->grad_written, 0, (size_t)net->nnodes * sizeof *r->grad_written);
    memset(r->param_grad_written, 0, (size_t)net->nparams * sizeof *r->param_grad_written);
    r->grad_written[net->output] = 1; /* written by the loss op */
    for (int i = net->nnodes - 1; i >= 1; i--) {
        const pt_node *node = &net->nodes[i];
        if (!r->grad_written[i]) continue; /* does not reach the loss */
        pt_status st = pt_layer_vtable(node->kind)->backward(&em, node, i);
        if (st != PT_OK || em.status != PT_OK)
            return pt_fail(err, PT_ERR_NOMEM, "replica: cannot build the backward ops of '%s'", node->name);
    }
    return PT_OK;
}

static void emit_update(pt_replica *r)
{
    r->update.n = 0;
    pt_emit em = {.r = r, .list = &r->update, .train = 1, .n = 0, .status = PT_OK};
    int64_t P = r->preg;
    int64_t split = r->opt.no_decay_bn_bias ? pt_net_decay_prefix(r->net) : P;
    int64_t lo[2] = {0, split}, hi[2] = {split, P};
    const pt_optim_kind kind = r->opt.kind;
    const pt_op_kind op_kind = kind == PT_OPTIM_SGD ? PT_OP_SGD : kind == PT_OPTIM_RMSPROP ? PT_OP_RMSPROP : PT_OP_ADAM;
    /* Slab region of each operand: 0 params, 1 grads, 2.. optimizer slots. Unused state
     * (SGD or RMSprop without momentum, RMSprop not centered) points at the gradients,
     * which the op never reads through it. */
    int region[5] = {0, 1, 2, 3, 1};
    int nt = 4;
    if (op_kind == PT_OP_SGD) {
        nt = 3;
        region[2] = r->nslots ? 2 : 1;
    } else if (op_kind == PT_OP_RMSPROP) {
        nt = 5;
        int ms = pt_optim_rmsprop_momentum_slot(&r->opt), gs = pt_optim_rmsprop_grad_avg_slot(&r->opt);
        region[3] = ms >= 0 ? 2 + ms : 1;
        region[4] = gs >= 0 ? 2 + gs : 1;
    }
    for (int g = 0; g < 2; g++) {
        if (hi[g] <= lo[g]) continue;
        int64_t len = hi[g] - lo[g];
        pt_op *op = pt_emit_op(&em, op_kind);
        if (!op) return;
        op->nt = nt;
        for (int t = 0; t < nt; t++)
            op->t[t] = pt_tensor_1d(r->slab, (size_t)(region[t] * P + lo[g]) * sizeof(float), PT_F32, len);
        float wd = g == 0 ? r->opt.weight_decay : 0.0f;
        if (op->kind == PT_OP_SGD) {
            op->p.sgd.momentum = r->opt.momentum;
            op->p.sgd.dampening = r->opt.dampening;
            op->p.sgd.nesterov = r->opt.nesterov;
            op->p.sgd.weight_decay = wd;
        } else if (op->kind == PT_OP_RMSPROP) {
            op->p.rmsprop.alpha = r->opt.alpha;
            op->p.rmsprop.eps = r->opt.eps;
            op->p.rmsprop.weight_decay = wd;
            op->p.rmsprop.momentum = r->opt.momentum;
            op->p.rmsprop.centered = r->opt.centered;
        } else {
            op->p.adam.beta1 = r->opt.beta1;
            op->p.adam.beta2 = r->opt.beta2;
            op->p.adam.eps = r->opt.eps;
            op->p.adam.weight_decay = wd;
            op->p.adam.decoupled = r->opt.kind == PT_OPTIM_ADAMW;
        }
    }
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
static pt_status share_activations(pt_replica *r, size_t region_end, pt_error *err)
{
    const char *env = getenv("PT_ACT_SHARE");
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
            it[k].bytes = align_bytes(node_bytes(nd, r->capacity));
            act_item[i] = k++;
        }
        for (int s = 0; vt && s < vt->nsaved; s++) {
            start[k] = r->mem[i].saved[s];
            it[k].bytes = align_bytes(saved_bytes(nd, s, r->capacity));
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
        plan_tail(r, align_bytes(total));
    }
    free(it), free(start), free(act_item), free(saved_item);
    return PT_OK;
}

static size_t list_workspace(pt_replica *r, const op_list *l)
{
    size_t m = 0;
    for (int i = 0; i < l->n; i++) {
        size_t w = r->dev->be->workspace_size(r->dev->ctx, &l->ops[i]);
        if (w > m) m = w;
    }
    return m;
}

static pt_status attach_workspace(pt_replica *r, op_list *l, pt_error *err)
{
    for (int i = 0; i < l->n; i++) {
        pt_op *op = &l->ops[i];
        if (!r->dev->be->supports(r->dev->ctx, op))
            return pt_fail(err, PT_ERR_UNSUPPORTED, "backend '%s' does not support op %s",
                           r->dev->be->name, pt_op_name(op->kind));
        size_t w = r->dev->be->workspace_size(r->dev->ctx, op);
        if (w > r->ws_bytes)
            return pt_fail(err, PT_ERR_INVALID, "op %s needs %zu bytes of workspace, %zu planned",
                           pt_op_name(op->kind), w, r->ws_bytes);
        op->workspace.buf = r->arena;
        op->workspace.off = r->ws_off;
        op->workspace_bytes = w;
    }
    return PT_OK;
}

/* Re-emits the training lists for a batch of n (same op count, same memory). */
static pt_status set_train_batch(pt_replica *r, int n, pt_error *err)
{
    if (r->batch_train == n) return PT_OK;
    PT_TRY(emit_forward(r, &r->fwd_train, 1, n, err));
    PT_TRY(emit_backward(r, n, err));
    PT_TRY(attach_workspace(r, &r->fwd_train, err));
    PT_TRY(attach_workspace(r, &r->bwd, err));
    r->batch_train = n;
    return PT_OK;
}

static pt_status set_eval_batch(pt_replica *r, int n, pt_error *err)
{
    if (r->batch_eval == n) return PT_OK;
    PT_TRY(emit_forward(r, &r->fwd_eval, 0, n, err));
    PT_TRY(attach_workspace(r, &r->fwd_eval, err));
    r->batch_eval = n;
    return PT_OK;
}

pt_status pt_replica_create(const pt_net *net, pt_device *dev, int batch_capacity,
                            const pt_optim_config *opt, uint64_t seed, pt_replica **out,
                            pt_error *err)
{
    return pt_replica_create_ex(net, dev, batch_capacity, opt, seed, NULL, out, err);
}

pt_status pt_replica_create_ex(const pt_net *net, pt_device *dev, int batch_capacity,
                               const pt_optim_config *opt, uint64_t seed, const pt_replica_options *ro,
                               pt_replica **out, pt_error *err)
{
    *out = NULL;
    if (net->output < 0) return pt_fail(err, PT_ERR_INVALID, "replica: the net is not finished");
    if (batch_capacity < 1) return pt_fail(err, PT_ERR_INVALID, "replica: batch must be >= 1");
    pt_replica *r = calloc(1, sizeof *r);
    if (!r) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    r->net = net;
    r->dev = dev;
    r->opt = *opt;
    r->capacity = batch_capacity;
    r->seed = seed;
    r->sync_bn = ro ? ro->sync_bn : 0;
    const char *fuse = getenv("PT_FUSE_RELU");
    r->fold_relu = !(fuse && fuse[0] == '0' && fuse[1] == 0);
    r->preg = pt_net_param_region(net);
    r->breg = pt_net_buffer_region(net);
    r->nslots = pt_optim_slots(opt);
    r->mem = calloc((size_t)net->nnodes, sizeof *r->mem);
    r->consumers = calloc((size_t)net->nnodes, sizeof *r->consumers);
    r->grad_written = calloc((size_t)net->nnodes, sizeof *r->grad_written);
    r->param_grad_written = calloc((size_t)net->nparams + 1, sizeof *r->param_grad_written);
    pt_status st = PT_OK;
    if (!r->mem || !r->consumers || !r->grad_written || !r->param_grad_written) {
        st = pt_fail(err, PT_ERR_NOMEM, "out of host memory");
        goto fail;
    }
    for (int i = 0; i < net->nnodes; i++)
        for (int k = 0; k < net->nodes[i].nin; k++) r->consumers[net->nodes[i].in[k]]++;

    r->slab_bytes = (size_t)((2 + r->nslots) * r->preg + r->breg) * sizeof(float);
    st = pt_device_alloc(dev, r->slab_bytes, &r->slab, err);
    if (st != PT_OK) goto fail;

    /* Emit against a provisional arena layout to learn the workspace need. A backend may
     * plan differently for different batch sizes (its need is not monotonic in n), and a
     * short last batch re-plans for its n: take the maximum over every n that can occur. */
    size_t acts_end = plan_acts_sequential(r);
    plan_tail(r, acts_end);
    r->batch_train = r->batch_eval = -1;
    if ((st = emit_forward(r, &r->fwd_train, 1, batch_capacity, err)) != PT_OK ||
        (st = emit_backward(r, batch_capacity, err)) != PT_OK ||
        (st = emit_forward(r, &r->fwd_eval, 0, batch_capacity, err)) != PT_OK ||
        (st = share_activations(r, acts_end, err)) != PT_OK)
        goto fail;
    size_t ws = 0;
    for (int n = batch_capacity; n >= 1; n--) {
        if ((st = emit_forward(r, &r->fwd_train, 1, n, err)) != PT_OK) goto fail;
        if ((st = emit_backward(r, n, err)) != PT_OK) goto fail;
        if ((st = emit_forward(r, &r->fwd_eval, 0, n, err)) != PT_OK) goto fail;
        size_t w1 = list_workspace(r, &r->fwd_train), w2 = list_workspace(r, &r->bwd),
               w3 = list_workspace(r, &r->fwd_eval);
        if (w1 > ws) ws = w1;
        if (w2 > ws) ws = w2;
        if (w3 > ws) ws = w3;
    }
    emit_update(r);
    r->ws_bytes = align_bytes(ws);
    r->arena_bytes = r->ws_off + r->ws_bytes;
    st = pt_device_alloc(dev, r->arena_bytes, &r->arena, err);
    if (st != PT_OK) goto fail;
    /* Now with the real arena handle. */
    if ((st = set_train_batch(r, batch_capacity, err)) != PT_OK) goto fail;
    if ((st = set_eval_batch(r, batch_capacity, err)) != PT_OK) goto fail;
    emit_update(r);
    if ((st = attach_workspace(r, &r->update, err)) != PT_OK) goto fail;
    *out = r;
    return PT_OK;
fail:
    pt_replica_free(r);
    return st;
}

void pt_replica_free(pt_replica *r)
{
    if (!r) return;
    if (r->slab) pt_device_free(r->dev, r->slab);
    if (r->arena) pt_device_free(r->dev, r->arena);
    free(r->fwd_train.ops);
    free(r->bwd.ops);
    free(r->fwd_eval.ops);
    free(r->update.ops);
    free(r->mem);
    free(r->consumers);
    free(r->grad_written);
    free(r->param_grad_written);
    free(r);
}

/* ---------------------------------------------------------------- state */

static float init_value(const pt_param_info *p, uint64_t seed, int index, int64_t e)
{
    switch (p->init) {
    case PT_INIT_ZEROS: return 0.0f;
    case PT_INIT_ONES: return 1.0f;
    case PT_INIT_KAIMING_NORMAL_FAN_OUT:
        return sqrtf(2.0f / (float)p->fan) *
               pt_rng_normal(seed, PT_RNG_INIT, (uint64_t)index, (uint64_t)e, 0);
    case PT_INIT_UNIFORM_FAN_IN: {
        float bound = 1.0f / sqrtf((float)p->fan);
        return (2.0f * pt_rng_uniform(seed, PT_RNG_INIT, (uint64_t)index, (uint64_t)e, 0) - 1.0f) * bound;
    }
    }
    return 0.0f;
}

pt_status pt_replica_init_params(pt_replica *r, uint64_t seed, pt_error *err)
{
    const pt_net *net = r->net;
    size_t n = (size_t)((2 + r->nslots) * r->preg + r->breg);
    float *host = calloc(n, sizeof *host);
    if (!host) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    for (int i = 0; i < net->nparams; i++) {
        const pt_param_info *p = &net->params[i];
        for (int64_t e = 0; e < p->numel; e++) host[p->offset + e] = init_value(p, seed, i, e);
    }
    float *bufs = host + (2 + r->nslots) * r->preg;
    for (int i = 0; i < net->nbuffers; i++)
        for (int64_t e = 0; e < net->buffers[i].numel; e++)
            bufs[net->buffers[i].offset + e] = net->buffers[i].init;
    pt_mem dst = {r->slab, 0};
    pt_status st = pt_device_write(r->dev, dst, host, n * sizeof(float), err);
    free(host);
    r->bn_steps = 0;
    r->opt_started = 0;
    return st;
}

int64_t pt_replica_param_region(const pt_replica *r) { return r->preg; }
int64_t pt_replica_buffer_region(const pt_replica *r) { return r->breg; }
int pt_replica_opt_slots(const pt_replica *r) { return r->nslots; }
int64_t pt_replica_bn_steps(const pt_replica *r) { return r->bn_steps; }
int pt_replica_optimizer_started(const pt_replica *r) { return r->opt_started; }
const pt_net *pt_replica_net(const pt_replica *r) { return r->net; }
pt_device *pt_replica_device(const pt_replica *r) { return r->dev; }
size_t pt_replica_device_bytes(const pt_replica *r) { return r->slab_bytes + r->arena_bytes; }
const pt_optim_config *pt_replica_optim(const pt_replica *r) { return &r->opt; }

void pt_replica_set_progress(pt_replica *r, int64_t bn_steps, int optimizer_started)
{
    r->bn_steps = bn_steps;
    r->opt_started = optimizer_started;
}

pt_mem pt_replica_grad_mem(const pt_replica *r)
{
    pt_mem m = {r->slab, (size_t)r->preg * sizeof(float)};
    return m;
}

pt_mem pt_replica_buffer_mem(const pt_replica *r)
{
    pt_mem m = {r->slab, (size_t)(2 + r->nslots) * (size_t)r->preg * sizeof(float)};
    return m;
}

pt_status pt_replica_read_grads(pt_replica *r, float *grads, pt_error *err)
{
    return pt_device_read(r->dev, grads, pt_replica_grad_mem(r), (size_t)r->preg * sizeof(float), err);
}

static pt_status state_io(pt_replica *r, float *params, float *buffers, float *opt, int write,
                          pt_error *err)
{
    size_t pb = (size_t)r->preg * sizeof(float);
    pt_mem pm = {r->slab, 0};
    pt_mem om = {r->slab, 2 * pb};
    pt_mem bm = {r->slab, (size_t)(2 + r->nslots) * pb};
    size_t ob = (size_t)r->nslots * pb, bb = (size_t)r->breg * sizeof(float);
    if (write) {
        PT_TRY(pt_device_write(r->dev, pm, params, pb, err));
        if (ob) PT_TRY(pt_device_write(r->dev, om, opt, ob, err));
        if (bb) PT_TRY(pt_device_write(r->dev, bm, buffers, bb, err));
    } else {
        PT_TRY(pt_device_read(r->dev, params, pm, pb, err));
        if (ob && opt) PT_TRY(pt_device_read(r->dev, opt, om, ob, err));
        if (bb) PT_TRY(pt_device_read(r->dev, buffers, bm, bb, err));
    }
    return PT_OK;
}

pt_status pt_replica_read_state(pt_replica *r, float *params, float *buffers, float *opt, pt_error *err)
{
    return state_io(r, params, buffers, opt, 0, err);
}

pt_status pt_replica_write_state(pt_replica *r, const float *params, const float *buffers,
                                 const float *opt, pt_error *err)
{
    return state_io(r, (float *)params, (float *)buffers, (float *)opt, 1, err);
}

/* ---------------------------------------------------------------- steps */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static pt_status run_list(pt_replica *r, const op_list *l, pt_error *err)
{
    pt_replica_list which = l == &r->fwd_train ? PT_LIST_FORWARD : l == &r->bwd ? PT_LIST_BACKWARD : PT_LIST_OTHER;
    for (int i = 0; i < l->n; i++) {
        double t0 = r->prof ? now_s() : 0;
        pt_status st = pt_device_run(r->dev, &l->ops[i], err);
        if (st == PT_OK && r->prof) st = pt_device_sync(r->dev, err);
        if (st != PT_OK) return pt_error_wrap(err, "op %d (%s)", i, pt_op_name(l->ops[i].kind));
        if (r->prof) {
            r->prof->seconds[l->ops[i].kind] += now_s() - t0;
            r->prof->count[l->ops[i].kind]++;
        }
        if (r->hook && which != PT_LIST_OTHER) PT_TRY(r->hook(r->hook_user, r, which, i, err));
    }
    return PT_OK;
}

void pt_replica_set_hook(pt_replica *r, pt_replica_hook hook, void *user)
{
    r->hook = hook;
    r->hook_user = user;
}

void pt_replica_set_global_batch(pt_replica *r, int n) { r->global_batch = n; }
int pt_replica_sync_bn(const pt_replica *r) { return r->sync_bn; }

const pt_op *pt_replica_ops(const pt_replica *r, pt_replica_list which, int *n)
{
    const op_list *l = which == PT_LIST_FORWARD ? &r->fwd_train : which == PT_LIST_BACKWARD ? &r->bwd : &r->update;
    *n = l->n;
    return l->ops;
}

void pt_replica_set_profile(pt_replica *r, pt_op_profile *prof) { r->prof = prof; }

static pt_status upload_batch(pt_replica *r, const float *x, const int32_t *y, int n, pt_error *err)
{
    const pt_node *in = &r->net->nodes[0];
    pt_mem xm = {r->arena, r->x_off}, ym = {r->arena, r->y_off};
    PT_TRY(pt_device_write(r->dev, xm, x, node_bytes(in, n), err));
    return pt_device_write(r->dev, ym, y, (size_t)n * sizeof(int32_t), err);
}

static pt_status check_labels(const pt_replica *r, const int32_t *y, int n, pt_error *err)
{
    for (int i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= r->net->num_classes)
            return pt_fail(err, PT_ERR_INVALID, "label %d of sample %d is outside 0..%d", (int)y[i],
                           i, r->net->num_classes - 1);
    return PT_OK;
}

static pt_status download_outputs(pt_replica *r, int n, float *logits, float *loss, pt_error *err)
{
    pt_mem lm = {r->arena, r->mem[r->net->output].act}, sm = {r->arena, r->loss_off};
    if (logits)
        PT_TRY(pt_device_read(r->dev, logits, lm, (size_t)n * r->net->num_classes * sizeof(float), err));
    if (loss) PT_TRY(pt_device_read(r->dev, loss, sm, (size_t)n * sizeof(float), err));
    return PT_OK;
}

pt_status pt_replica_forward_backward(pt_replica *r, const float *x, const int32_t *y, int n,
                                      int64_t sample_base, int64_t step, float grad_scale,
                                      float *logits_out, float *loss_out, pt_error *err)
{
    return pt_replica_forward_backward_mixed(r, x, y, NULL, NULL, n, sample_base, step, grad_scale,
                                             logits_out, loss_out, err);
}

pt_status pt_replica_forward_backward_mixed(pt_replica *r, const float *x, const int32_t *y,
                                            const int32_t *y2, const float *lam, int n,
                                            int64_t sample_base, int64_t step, float grad_scale,
                                            float *logits_out, float *loss_out, pt_error *err)
{
    if (n < 1 || n > r->capacity)
        return pt_fail(err, PT_ERR_INVALID, "batch of %d samples, replica holds 1..%d", n, r->capacity);
    if (!y2 != !lam) return pt_fail(err, PT_ERR_INVALID, "mixup targets need both second labels and weights");
    PT_TRY(check_labels(r, y, n, err));
    if (y2) PT_TRY(check_labels(r, y2, n, err));
    PT_TRY(set_train_batch(r, n, err));
    for (int i = 0; i < r->fwd_train.n; i++) {
        pt_op *op = &r->fwd_train.ops[i];
        if (op->kind == PT_OP_DROPOUT_FWD) {
            /* stream = step*65536 + layer id; the layer id was stored at emission */
            op->p.dropout.stream = (uint64_t)step * 65536u + (op->p.dropout.stream & 0xffffu);
            op->p.dropout.sample_base = sample_base;
        } else if (op->kind == PT_OP_BN_SYNC_FWD) {
            const pt_tensor *xt = &op->t[0];
            op->p.bn.count = (int64_t)(r->global_batch > 0 ? r->global_batch : n) * xt->dim[2] * xt->dim[3];
        } else if (op->kind == PT_OP_XENT) {
            op->p.xent.grad_scale = grad_scale;
            op->p.xent.smoothing = r->label_smoothing;
            op->nt = y2 ? 6 : 4;
            if (y2 && !r->dev->be->supports(r->dev->ctx, op)) {
                op->nt = 4;
                return pt_fail(err, PT_ERR_UNSUPPORTED, "backend '%s' has no mixup/cutmix targets in its loss",
                               r->dev->be->name);
            }
        }
    }
    PT_TRY(upload_batch(r, x, y, n, err));
    if (y2) {
        pt_mem m2 = {r->arena, r->y2_off}, ml = {r->arena, r->lam_off};
        PT_TRY(pt_device_write(r->dev, m2, y2, (size_t)n * sizeof(int32_t), err));
        PT_TRY(pt_device_write(r->dev, ml, lam, (size_t)n * sizeof(float), err));
    }
    for (int i = 0; i < r->bwd.n; i++) {
        pt_op *op = &r->bwd.ops[i];
        if (op->kind == PT_OP_BN_SYNC_BWD) {
            const pt_tensor *xt = &op->t[0];
            op->p.bn.count = (int64_t)(r->global_batch > 0 ? r->global_batch : n) * xt->dim[2] * xt->dim[3];
        }
    }
    PT_TRY(run_list(r, &r->fwd_train, err));
    r->bn_steps++;
    PT_TRY(run_list(r, &r->bwd, err));
    return download_outputs(r, n, logits_out, loss_out, err);
}

void pt_replica_set_momentum(pt_replica *r, float momentum)
{
    if (r->opt.kind == PT_OPTIM_SGD) r->opt.momentum = momentum;
    else if (r->opt.kind == PT_OPTIM_RMSPROP) {
        /* without a momentum buffer (momentum 0 at creation) there is nothing to cycle */
        if (pt_optim_rmsprop_momentum_slot(&r->opt) >= 0 && momentum != 0.0f) r->opt.momentum = momentum;
    } else r->opt.beta1 = momentum;
}

void pt_replica_set_label_smoothing(pt_replica *r, float smoothing) { r->label_smoothing = smoothing; }

pt_status pt_replica_update(pt_replica *r, float lr, int64_t step_count, pt_error *err)
{
    for (int i = 0; i < r->update.n; i++) {
        pt_op *op = &r->update.ops[i];
        if (op->kind == PT_OP_SGD) {
            op->p.sgd.lr = lr;
            op->p.sgd.momentum = r->opt.momentum;
            op->p.sgd.first_step = !r->opt_started;
        } else if (op->kind == PT_OP_RMSPROP) {
            op->p.rmsprop.lr = lr;
            op->p.rmsprop.momentum = r->opt.momentum;
        } else {
            op->p.adam.lr = lr;
            op->p.adam.beta1 = r->opt.beta1;
            op->p.adam.step = step_count;
        }
    }
    PT_TRY(run_list(r, &r->update, err));
    r->opt_started = 1;
    return PT_OK;
}

pt_status pt_replica_eval(pt_replica *r, const float *x, const int32_t *y, int n,
                          float *logits_out, float *loss_out, pt_error *err)
{
    if (n < 1 || n > r->capacity)
        return pt_fail(err, PT_ERR_INVALID, "batch of %d samples, replica holds 1..%d", n, r->capacity);
    PT_TRY(check_labels(r, y, n, err));
    PT_TRY(set_eval_batch(r, n, err));
    PT_TRY(upload_batch(r, x, y, n, err));
    PT_TRY(run_list(r, &r->fwd_eval, err));
    return download_outputs(r, n, logits_out, loss_out, err);
}
