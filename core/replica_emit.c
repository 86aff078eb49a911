/* The replica's op lists: the pt_emit services the layers build their ops through, the
 * forward, backward and update lists, and their workspace. It emits against the planned
 * layout and never changes it; lists grow only while the replica is being created. */
#include <stdlib.h>
#include <string.h>

#include "core/layers/layer.h"
#include "core/replica_internal.h"

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
    const pt_op_desc *d = pt_op_describe(kind);
    if (d && (d->flags & PT_OPF_MATH)) op->math = em->r->precision;
    return op;
}

int pt_emit_train(const pt_emit *em) { return em->train; }
int pt_emit_batch(const pt_emit *em) { return em->n; }
int64_t pt_emit_sample_base(const pt_emit *em) { return em->sample_base; }
uint64_t pt_emit_seed(const pt_emit *em) { return em->r->seed; }
int pt_emit_sync_bn(const pt_emit *em) { return em->r->sync_bn; }

static pt_tensor node_tensor(const pt_emit *em, int node, size_t off, pt_dtype dtype)
{
    const pt_node *n = &em->r->net->nodes[node];
    pt_tensor t = n->flat ? pt_tensor_2d(em->r->arena, off, em->n, n->c)
                          : pt_tensor_4d(em->r->arena, off, em->n, n->c, n->h, n->w);
    t.dtype = dtype;
    if (!n->flat) t.layout = em->r->act_layout[node];
    return t;
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

int pt_emit_fold_add(pt_emit *em, int node)
{
    op_list *l = em->list;
    const pt_net *net = em->r->net;
    if (!em->r->fold_relu || l->n == 0 || node < 1) return 0;
    pt_op *op = &l->ops[l->n - 1];
    if (op->kind != PT_OP_BN_FWD_TRAIN && op->kind != PT_OP_BN_FWD_EVAL) return 0;
    const pt_op_desc *d = pt_op_describe(op->kind);
    if (op->nt != d->nt_min || op->fuse_relu) return 0;
    const pt_node *n = &net->nodes[node];
    /* the BN is the node right before the add (no op of another node between them), and the
     * add is the only reader of its output: that output is then never stored (nothing reads
     * it; its range is free, rp_share_activations) */
    const int bn = node - 1;
    if (n->nin != 2 || n->in[0] == n->in[1] || (n->in[0] != bn && n->in[1] != bn)) return 0;
    if (net->nodes[bn].kind != PT_NODE_BATCHNORM2D || em->r->consumers[bn] != 1 || bn == net->output) return 0;
    const pt_tensor was = pt_emit_act(em, bn);
    if (!pt_tensor_same_start(&op->t[3], &was)) return 0;
    const pt_op saved = *op;
    op->nt = d->nt;
    op->t[d->nt - 1] = pt_emit_act(em, n->in[0] == bn ? n->in[1] : n->in[0]);
    op->t[3] = pt_emit_act(em, node);
    if (em->r->dev->be->supports(em->r->dev->ctx, op)) return 1;
    *op = saved;
    return 0;
}

pt_tensor pt_emit_act(const pt_emit *em, int node)
{
    return node_tensor(em, node, em->r->mem[node].act, em->r->act_dtype[node]);
}
pt_tensor pt_emit_grad(const pt_emit *em, int node) { return node_tensor(em, node, em->r->mem[node].grad, PT_F32); }
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
    pt_tensor t = pt_tensor_make(em->r->arena, em->r->mem[node].saved[slot], dt, ndim, dim);
    /* a saved image (a max-pool's argmax) lies as the node's output does */
    if (ndim == 4) t.layout = em->r->act_layout[node];
    return t;
}

/* ---------------------------------------------------------------- op lists */

pt_status rp_emit_forward(pt_replica *r, op_list *list, int train, int n, pt_error *err)
{
    pt_emit em = {.r = r, .list = list, .train = train, .n = n, .sample_base = 0, .status = PT_OK};
    list->n = 0;
    list->in_slot = 0;
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

pt_status rp_emit_backward(pt_replica *r, int n, pt_error *err)
{
    pt_emit em = {.r = r, .list = &r->bwd, .train = 1, .n = n, .status = PT_OK};
    r->bwd.n = 0;
    r->bwd.in_slot = 0;
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

void rp_emit_update(pt_replica *r)
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

size_t rp_list_workspace(pt_replica *r, const op_list *l)
{
    size_t m = 0;
    for (int i = 0; i < l->n; i++) {
        size_t w = r->dev->be->workspace_size(r->dev->ctx, &l->ops[i]);
        if (w > m) m = w;
    }
    return m;
}

pt_status rp_attach_workspace(pt_replica *r, op_list *l, pt_error *err)
{
    if (!r->wsbuf)
        return pt_fail(err, PT_ERR_NOMEM, "the replica has no workspace: re-allocating it failed earlier");
    for (int i = 0; i < l->n; i++) {
        pt_op *op = &l->ops[i];
        if (!r->dev->be->supports(r->dev->ctx, op))
            return pt_fail(err, PT_ERR_UNSUPPORTED, "backend '%s' does not support op %s",
                           r->dev->be->name, pt_op_name(op->kind));
        size_t w = r->dev->be->workspace_size(r->dev->ctx, op);
        if (w > r->ws_bytes)
            return pt_fail(err, PT_ERR_INVALID, "op %s needs %zu bytes of workspace, %zu planned",
                           pt_op_name(op->kind), w, r->ws_bytes);
        op->workspace.buf = r->wsbuf;
        op->workspace.off = 0;
        op->workspace_bytes = w;
    }
    return PT_OK;
}

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

/* Re-emits the training lists for a batch of n (same op count, same memory). A workspace
 * that became too small for them (the device's need grew for a batch size not seen when it
 * was fitted) is grown first. */
pt_status rp_set_train_batch(pt_replica *r, int n, pt_error *err)
{
    if (r->batch_train == n) return PT_OK;
    PT_TRY(rp_emit_forward(r, &r->fwd_train, 1, n, err));
    PT_TRY(rp_emit_backward(r, n, err));
    const size_t need = max_size(rp_list_workspace(r, &r->fwd_train), rp_list_workspace(r, &r->bwd));
    if (need > r->ws_bytes) return rp_resize_workspace(r, need, n, r->batch_eval, err);
    PT_TRY(rp_attach_workspace(r, &r->fwd_train, err));
    PT_TRY(rp_attach_workspace(r, &r->bwd, err));
    r->batch_train = n;
    return PT_OK;
}

pt_status rp_set_eval_batch(pt_replica *r, int n, pt_error *err)
{
    if (r->batch_eval == n) return PT_OK;
    PT_TRY(rp_emit_forward(r, &r->fwd_eval, 0, n, err));
    if (rp_list_workspace(r, &r->fwd_eval) > r->ws_bytes)
        return rp_resize_workspace(r, rp_list_workspace(r, &r->fwd_eval), r->batch_train, n, err);
    PT_TRY(rp_attach_workspace(r, &r->fwd_eval, err));
    r->batch_eval = n;
    return PT_OK;
}

/* Every list for (train_n, eval_n) against the current arena handle, attached to its
 * workspace. */
static pt_status emit_all(pt_replica *r, int train_n, int eval_n, pt_error *err)
{
    r->batch_train = r->batch_eval = -1;
    PT_TRY(rp_emit_forward(r, &r->fwd_train, 1, train_n, err));
    PT_TRY(rp_emit_backward(r, train_n, err));
    PT_TRY(rp_emit_forward(r, &r->fwd_eval, 0, eval_n, err));
    rp_emit_update(r);
    PT_TRY(rp_attach_workspace(r, &r->fwd_train, err));
    PT_TRY(rp_attach_workspace(r, &r->bwd, err));
    PT_TRY(rp_attach_workspace(r, &r->fwd_eval, err));
    PT_TRY(rp_attach_workspace(r, &r->update, err));
    r->batch_train = train_n;
    r->batch_eval = eval_n;
    return PT_OK;
}

pt_status rp_resize_workspace(pt_replica *r, size_t ws_bytes, int train_n, int eval_n, pt_error *err)
{
    if (train_n < 1) train_n = r->capacity;
    if (eval_n < 1) eval_n = r->capacity;
    /* the lists' need at those sizes */
    r->batch_train = r->batch_eval = -1;
    PT_TRY(rp_emit_forward(r, &r->fwd_train, 1, train_n, err));
    PT_TRY(rp_emit_backward(r, train_n, err));
    PT_TRY(rp_emit_forward(r, &r->fwd_eval, 0, eval_n, err));
    size_t need = max_size(ws_bytes, rp_list_workspace(r, &r->fwd_train));
    need = max_size(need, rp_list_workspace(r, &r->bwd));
    need = max_size(need, rp_list_workspace(r, &r->fwd_eval));
    need = max_size(need, rp_list_workspace(r, &r->update));
    need = rp_align_bytes(need);
    pt_device *dev = r->dev;
    /* Scratch holds nothing from one op to the next: once the queued ops (and copies into the
     * input slots) are done, the old workspace goes before the new one comes, so the two are
     * never held together (at the size a batch fills the device to, both would not fit). */
    PT_TRY(rp_input_quiesce(r, err));
    PT_TRY(pt_device_sync(dev, err));
    rp_graphs_invalidate(r);
    const size_t old = r->ws_bytes;
    if (r->wsbuf) pt_device_free(dev, r->wsbuf);
    r->wsbuf = NULL;
    pt_status st = pt_device_alloc(dev, rp_ws_alloc_bytes(need), &r->wsbuf, err);
    if (st != PT_OK) {
        /* the size just given back, so that the replica stays as it was */
        pt_error again;
        if (pt_device_alloc(dev, rp_ws_alloc_bytes(old), &r->wsbuf, &again) != PT_OK) r->wsbuf = NULL;
        return pt_error_wrap(err, "re-sizing the workspace");
    }
    r->ws_bytes = need;
    r->arena_bytes = r->ws_off + need;
    if (r->slab_bytes + r->arena_bytes > r->peak_bytes) r->peak_bytes = r->slab_bytes + r->arena_bytes;
    return emit_all(r, train_n, eval_n, err);
}
