/* global_maxpool: max over H and W, turning [N,C,H,W] into features [N,C] (CBAM's channel
 * branch); the argmax is saved for backward instead of the input. */
#include "core/layers/layer.h"

static pt_status gmp_infer(pt_net *net, pt_node *n, pt_error *err)
{
    const pt_node *x = &net->nodes[n->in[0]];
    if (x->flat) return pt_fail(err, PT_ERR_INVALID, "global_maxpool: input is not an image");
    n->c = x->c;
    n->h = 1;
    n->w = 1;
    n->flat = 1;
    return PT_OK;
}

static void gmp_saved_shape(const pt_node *n, int slot, int batch, int64_t dim[4], int *ndim, pt_dtype *dtype)
{
    (void)slot;
    dim[0] = batch;
    dim[1] = n->c;
    *ndim = 2;
    *dtype = PT_I32;
}

static pt_status gmp_forward(pt_emit *em, const pt_node *n, int id)
{
    pt_op *op = pt_emit_op(em, PT_OP_GMP_FWD);
    if (!op) return PT_ERR_NOMEM;
    op->nt = 3;
    op->t[0] = pt_emit_act(em, n->in[0]);
    op->t[1] = pt_emit_act(em, id);
    op->t[2] = pt_emit_saved(em, id, 0);
    return PT_OK;
}

static pt_status gmp_backward(pt_emit *em, const pt_node *n, int id)
{
    if (!pt_emit_wants_grad(em, n->in[0])) return PT_OK;
    pt_op *op = pt_emit_op(em, PT_OP_GMP_BWD);
    if (!op) return PT_ERR_NOMEM;
    op->nt = 3;
    op->t[0] = pt_emit_grad(em, id);
    op->t[1] = pt_emit_saved(em, id, 0);
    op->t[2] = pt_emit_grad(em, n->in[0]);
    op->accumulate = pt_emit_grad_accumulate(em, n->in[0]);
    return PT_OK;
}

const pt_layer_vt pt_layer_global_maxpool = {
    .name = "global_maxpool",
    .nhwc = 1,
    .infer = gmp_infer,
    .nsaved = 1,
    .saved_shape = gmp_saved_shape,
    .forward = gmp_forward,
    .backward = gmp_backward,
};
