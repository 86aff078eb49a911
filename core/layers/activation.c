/* activation: a pointwise function of its input with a gradient kind of its own (sigmoid, the
 * gate of SE and CBAM attention, or any other kind the op table marks so), read from the kind's
 * description: forward x -> y, backward (saved, dy) -> dx with `saved` the output or the
 * input as the description says. It computes in place only when its backward reads the
 * output (the input is then not needed again). */
#include "core/layers/layer.h"

static pt_status activation_infer(pt_net *net, pt_node *n, pt_error *err)
{
    (void)err;
    pt_layer_same_shape(net, n);
    return PT_OK;
}

static int activation_in_place(const pt_node *n)
{
    return pt_op_describe((pt_op_kind)n->a.act.op)->grad_reads_output;
}

static pt_status activation_forward(pt_emit *em, const pt_node *n, int id)
{
    pt_op *op = pt_emit_op(em, (pt_op_kind)n->a.act.op);
    if (!op) return PT_ERR_NOMEM;
    op->nt = 2;
    op->t[0] = pt_emit_act(em, n->in[0]);
    op->t[1] = pt_emit_act(em, id);
    return PT_OK;
}

static pt_status activation_backward(pt_emit *em, const pt_node *n, int id)
{
    if (!pt_emit_wants_grad(em, n->in[0])) return PT_OK;
    const pt_op_desc *d = pt_op_describe((pt_op_kind)n->a.act.op);
    pt_op *op = pt_emit_op(em, d->grad_kind);
    if (!op) return PT_ERR_NOMEM;
    op->nt = 3;
    op->t[0] = pt_emit_act(em, d->grad_reads_output ? id : n->in[0]);
    op->t[1] = pt_emit_grad(em, id);
    op->t[2] = pt_emit_grad(em, n->in[0]);
    op->accumulate = pt_emit_grad_accumulate(em, n->in[0]);
    return PT_OK;
}

const pt_layer_vt pt_layer_activation = {
    .name = "activation",
    .nhwc = 1,
    .infer = activation_infer,
    .in_place = 1,
    .in_place_if = activation_in_place,
    .forward = activation_forward,
    .backward = activation_backward,
};
