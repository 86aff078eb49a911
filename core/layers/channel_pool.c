/* channel_pool: the mean and the max over channels of an image, concatenated into a
 * 2xHxW image (CBAM's spatial-attention input, torch.cat([x.mean(1), x.amax(1)], 1)); the
 * argmax channel is saved for backward. */
#include "core/layers/layer.h"

static pt_status channel_pool_infer(pt_net *net, pt_node *n, pt_error *err)
{
    const pt_node *x = &net->nodes[n->in[0]];
    if (x->flat) return pt_fail(err, PT_ERR_INVALID, "channel_pool: input is not an image");
    n->c = 2;
    n->h = x->h;
    n->w = x->w;
    return PT_OK;
}

static void channel_pool_saved_shape(const pt_node *n, int slot, int batch, int64_t dim[4], int *ndim,
                                     pt_dtype *dtype)
{
    (void)slot;
    dim[0] = batch;
    dim[1] = 1;
    dim[2] = n->h;
    dim[3] = n->w;
    *ndim = 4;
    *dtype = PT_I32;
}

static pt_status channel_pool_forward(pt_emit *em, const pt_node *n, int id)
{
    pt_op *op = pt_emit_op(em, PT_OP_CHANNEL_POOL_FWD);
    if (!op) return PT_ERR_NOMEM;
    op->nt = 3;
    op->t[0] = pt_emit_act(em, n->in[0]);
    op->t[1] = pt_emit_act(em, id);
    op->t[2] = pt_emit_saved(em, id, 0);
    return PT_OK;
}

static pt_status channel_pool_backward(pt_emit *em, const pt_node *n, int id)
{
    if (!pt_emit_wants_grad(em, n->in[0])) return PT_OK;
    pt_op *op = pt_emit_op(em, PT_OP_CHANNEL_POOL_BWD);
    if (!op) return PT_ERR_NOMEM;
    op->nt = 3;
    op->t[0] = pt_emit_grad(em, id);
    op->t[1] = pt_emit_saved(em, id, 0);
    op->t[2] = pt_emit_grad(em, n->in[0]);
    op->accumulate = pt_emit_grad_accumulate(em, n->in[0]);
    return PT_OK;
}

const pt_layer_vt pt_layer_channel_pool = {
    .name = "channel_pool",
    .nhwc = 1,
    .infer = channel_pool_infer,
    .nsaved = 1,
    .saved_shape = channel_pool_saved_shape,
    .forward = channel_pool_forward,
    .backward = channel_pool_backward,
};
