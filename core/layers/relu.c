/* relu: max(x, 0), computed in place when the planner allows, and then folded into the BN or
 * add just before it where the device has the fused form; backward reads the output. */
#include "core/layers/layer.h"

static pt_status relu_infer(pt_net *net, pt_node *n, pt_error *err)
{
    (void)err;
    pt_layer_same_shape(net, n);
    return PT_OK;
}

static pt_status relu_forward(pt_emit *em, const pt_node *n, int id)
{
    if (pt_emit_fold_relu(em, id)) return PT_OK;
    pt_op *op = pt_emit_op(em, PT_OP_RELU_FWD);
    if (!op) return PT_ERR_NOMEM;
    op->nt = 2;
    op->t[0] = pt_emit_act(em, n->in[0]);
    op->t[1] = pt_emit_act(em, id);
    return PT_OK;
}

static pt_status relu_backward(pt_emit *em, const pt_node *n, int id)
{
    if (!pt_emit_wants_grad(em, n->in[0])) return PT_OK;
    pt_op *op = pt_emit_op(em, PT_OP_RELU_BWD);
    if (!op) return PT_ERR_NOMEM;
    op->nt = 3;
    op->t[0] = pt_emit_act(em, id);
    op->t[1] = pt_emit_grad(em, id);
    op->t[2] = pt_emit_grad(em, n->in[0]);
    op->accumulate = pt_emit_grad_accumulate(em, n->in[0]);
    return PT_OK;
}

const pt_layer_vt pt_layer_relu = {
    .name = "relu",
    .nhwc = 1,
    .infer = relu_infer,
    .in_place = 1,
    .forward = relu_forward,
    .backward = relu_backward,
};
