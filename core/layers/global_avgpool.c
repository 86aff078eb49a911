/* global_avgpool: mean over H and W, turning [N,C,H,W] into features [N,C]. */
#include "core/layers/layer.h"

static pt_status gap_infer(pt_net *net, pt_node *n, pt_error *err)
{
    const pt_node *x = &net->nodes[n->in[0]];
    if (x->flat) return pt_fail(err, PT_ERR_INVALID, "global_avgpool: input is not an image");
    n->c = x->c;
    n->h = 1;
    n->w = 1;
    n->flat = 1;
    return PT_OK;
}

static pt_status gap_forward(pt_emit *em, const pt_node *n, int id)
{
    pt_op *op = pt_emit_op(em, PT_OP_GAP_FWD);
    if (!op) return PT_ERR_NOMEM;
    op->nt = 2;
    op->t[0] = pt_emit_act(em, n->in[0]);
    op->t[1] = pt_emit_act(em, id);
    return PT_OK;
}

static pt_status gap_backward(pt_emit *em, const pt_node *n, int id)
{
    if (!pt_emit_wants_grad(em, n->in[0])) return PT_OK;
    pt_op *op = pt_emit_op(em, PT_OP_GAP_BWD);
    if (!op) return PT_ERR_NOMEM;
    op->nt = 2;
    op->t[0] = pt_emit_grad(em, id);
    op->t[1] = pt_emit_grad(em, n->in[0]);
    op->accumulate = pt_emit_grad_accumulate(em, n->in[0]);
    return PT_OK;
}

const pt_layer_vt pt_layer_global_avgpool = {
    .name = "global_avgpool",
    .nhwc = 1,
    .infer = gap_infer,
    .forward = gap_forward,
    .backward = gap_backward,
};
