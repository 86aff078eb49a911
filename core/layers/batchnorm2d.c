/* batchnorm2d: PyTorch's BatchNorm2d (eps 1e-5, momentum 0.1, running variance updated
 * with the unbiased batch variance). Saves the batch mean and 1/std for backward. With
 * synchronised BatchNorm (a replica created with sync_bn) the statistics are global: the
 * layer emits partial sums, the core sums them over every device between the ops. */
#include "core/layers/layer.h"

static pt_status bn_infer(pt_net *net, pt_node *n, pt_error *err)
{
    const pt_node *x = &net->nodes[n->in[0]];
    if (x->flat) return pt_fail(err, PT_ERR_INVALID, "batchnorm2d '%s': input is not an image", n->name);
    n->c = x->c;
    n->h = x->h;
    n->w = x->w;
    int64_t dim[1] = {x->c};
    n->param[0] = pt_net_declare_param(net, n->name, "weight", 1, dim, PT_INIT_ONES, 0, 1);
    n->param[1] = pt_net_declare_param(net, n->name, "bias", 1, dim, PT_INIT_ZEROS, 0, 1);
    n->buffer[0] = pt_net_declare_buffer(net, n->name, "running_mean", x->c, 0.0f);
    n->buffer[1] = pt_net_declare_buffer(net, n->name, "running_var", x->c, 1.0f);
    n->bn_index = net->nbn++;
    return net->err.status;
}

static void bn_saved_shape(const pt_node *n, int slot, int batch, int64_t dim[4], int *ndim,
                           pt_dtype *dtype)
{
    (void)slot;
    (void)batch;
    /* Two C-vectors per slot: sync-BN keeps mean | invstd in slot 0 and the backward sums in
     * slot 1; plain BN uses the first half of each (mean, invstd). */
    dim[0] = 2 * n->c;
    *ndim = 1;
    *dtype = PT_F32;
}

/* The first C elements of a saved slot. */
static pt_tensor half(pt_tensor t, int64_t c)
{
    return pt_tensor_1d(t.mem.buf, t.mem.off, PT_F32, c);
}

static pt_status bn_sync_forward(pt_emit *em, const pt_node *n, int id)
{
    pt_op *st = pt_emit_op(em, PT_OP_BN_SYNC_STATS);
    if (!st) return PT_ERR_NOMEM;
    st->nt = 3;
    st->t[0] = pt_emit_act(em, n->in[0]);
    st->t[1] = pt_emit_buffer(em, n->buffer[0]);
    st->t[2] = pt_emit_saved(em, id, 0);
    pt_op *op = pt_emit_op(em, PT_OP_BN_SYNC_FWD);
    if (!op) return PT_ERR_NOMEM;
    op->nt = 7;
    op->t[0] = pt_emit_act(em, n->in[0]);
    op->t[1] = pt_emit_param(em, n->param[0]);
    op->t[2] = pt_emit_param(em, n->param[1]);
    op->t[3] = pt_emit_act(em, id);
    op->t[4] = pt_emit_buffer(em, n->buffer[0]);
    op->t[5] = pt_emit_buffer(em, n->buffer[1]);
    op->t[6] = pt_emit_saved(em, id, 0);
    op->p.bn.eps = n->a.bn.eps;
    op->p.bn.momentum = n->a.bn.momentum;
    op->p.bn.count = (int64_t)pt_emit_batch(em) * n->h * n->w; /* the replica sets the global count */
    return PT_OK;
}

static pt_status bn_sync_backward(pt_emit *em, const pt_node *n, int id)
{
    pt_op *st = pt_emit_op(em, PT_OP_BN_SYNC_BWD_STATS);
    if (!st) return PT_ERR_NOMEM;
    st->nt = 6;
    st->t[0] = pt_emit_act(em, n->in[0]);
    st->t[1] = pt_emit_grad(em, id);
    st->t[2] = pt_emit_saved(em, id, 0);
    st->t[3] = pt_emit_saved(em, id, 1);
    st->t[4] = pt_emit_param_grad(em, n->param[0]);
    st->t[5] = pt_emit_param_grad(em, n->param[1]);
    pt_op *op = pt_emit_op(em, PT_OP_BN_SYNC_BWD);
    if (!op) return PT_ERR_NOMEM;
    op->nt = 6;
    op->t[0] = pt_emit_act(em, n->in[0]);
    op->t[1] = pt_emit_grad(em, id);
    op->t[2] = pt_emit_param(em, n->param[0]);
    op->t[3] = pt_emit_saved(em, id, 0);
    op->t[4] = pt_emit_saved(em, id, 1);
    op->t[5] = pt_emit_grad(em, n->in[0]);
    op->p.bn.eps = n->a.bn.eps;
    op->p.bn.momentum = n->a.bn.momentum;
    op->p.bn.count = (int64_t)pt_emit_batch(em) * n->h * n->w;
    op->accumulate = pt_emit_wants_grad(em, n->in[0]) ? pt_emit_grad_accumulate(em, n->in[0]) : 0;
    return PT_OK;
}

static pt_status bn_forward(pt_emit *em, const pt_node *n, int id)
{
    int train = pt_emit_train(em);
    if (train && pt_emit_sync_bn(em)) return bn_sync_forward(em, n, id);
    pt_op *op = pt_emit_op(em, train ? PT_OP_BN_FWD_TRAIN : PT_OP_BN_FWD_EVAL);
    if (!op) return PT_ERR_NOMEM;
    op->t[0] = pt_emit_act(em, n->in[0]);
    op->t[1] = pt_emit_param(em, n->param[0]);
    op->t[2] = pt_emit_param(em, n->param[1]);
    op->t[3] = pt_emit_act(em, id);
    op->t[4] = pt_emit_buffer(em, n->buffer[0]);
    op->t[5] = pt_emit_buffer(em, n->buffer[1]);
    op->nt = 6;
    if (train) {
        op->t[6] = half(pt_emit_saved(em, id, 0), n->c);
        op->t[7] = half(pt_emit_saved(em, id, 1), n->c);
        op->nt = 8;
    }
    op->p.bn.eps = n->a.bn.eps;
    op->p.bn.momentum = n->a.bn.momentum;
    return PT_OK;
}

static pt_status bn_backward(pt_emit *em, const pt_node *n, int id)
{
    if (pt_emit_sync_bn(em)) return bn_sync_backward(em, n, id);
    pt_op *op = pt_emit_op(em, PT_OP_BN_BWD);
    if (!op) return PT_ERR_NOMEM;
    op->nt = 8;
    op->t[0] = pt_emit_act(em, n->in[0]);
    op->t[1] = pt_emit_grad(em, id);
    op->t[2] = pt_emit_param(em, n->param[0]);
    op->t[3] = half(pt_emit_saved(em, id, 0), n->c);
    op->t[4] = half(pt_emit_saved(em, id, 1), n->c);
    op->t[5] = pt_emit_grad(em, n->in[0]);
    op->t[6] = pt_emit_param_grad(em, n->param[0]);
    op->t[7] = pt_emit_param_grad(em, n->param[1]);
    op->p.bn.eps = n->a.bn.eps;
    op->p.bn.momentum = n->a.bn.momentum;
    /* The op always computes dx; a BN directly on the data input would simply discard it. */
    op->accumulate = pt_emit_wants_grad(em, n->in[0]) ? pt_emit_grad_accumulate(em, n->in[0]) : 0;
    return PT_OK;
}

const pt_layer_vt pt_layer_batchnorm2d = {
    .name = "batchnorm2d",
    .nhwc = 1,
    .infer = bn_infer,
    .nsaved = 2,
    .saved_shape = bn_saved_shape,
    .forward = bn_forward,
    .backward = bn_backward,
};
