/* bcast_mul: y = x * s, an image scaled by attention weights broadcast over it: s is C
 * features (one factor per channel: SE, CBAM's channel branch) or a 1xHxW image (one factor
 * per pixel: CBAM's spatial branch). Backward: dx = dy*s (the same op), ds = sum of x*dy. */
#include "core/layers/layer.h"

static pt_status bcast_mul_infer(pt_net *net, pt_node *n, pt_error *err)
{
    const pt_node *x = &net->nodes[n->in[0]], *s = &net->nodes[n->in[1]];
    if (x->flat) return pt_fail(err, PT_ERR_INVALID, "bcast_mul: input is not an image");
    int channel = s->flat && s->c == x->c;
    int pixel = !s->flat && s->c == 1 && s->h == x->h && s->w == x->w;
    if (!channel && !pixel)
        return pt_fail(err, PT_ERR_INVALID,
                       "bcast_mul: factors %lldx%lldx%lld%s fit neither %lld channels nor a 1x%lldx%lld map",
                       (long long)s->c, (long long)s->h, (long long)s->w, s->flat ? " (features)" : "",
                       (long long)x->c, (long long)x->h, (long long)x->w);
    pt_layer_same_shape(net, n);
    return PT_OK;
}

static pt_status bcast_mul_forward(pt_emit *em, const pt_node *n, int id)
{
    pt_op *op = pt_emit_op(em, PT_OP_BCAST_MUL);
    if (!op) return PT_ERR_NOMEM;
    op->nt = 3;
    op->t[0] = pt_emit_act(em, n->in[0]);
    op->t[1] = pt_emit_act(em, n->in[1]);
    op->t[2] = pt_emit_act(em, id);
    return PT_OK;
}

static pt_status bcast_mul_backward(pt_emit *em, const pt_node *n, int id)
{
    if (pt_emit_wants_grad(em, n->in[1])) {
        pt_op *op = pt_emit_op(em, PT_OP_BCAST_MUL_GRAD);
        if (!op) return PT_ERR_NOMEM;
        op->nt = 3;
        op->t[0] = pt_emit_act(em, n->in[0]);
        op->t[1] = pt_emit_grad(em, id);
        op->t[2] = pt_emit_grad(em, n->in[1]);
        op->accumulate = pt_emit_grad_accumulate(em, n->in[1]);
    }
    if (pt_emit_wants_grad(em, n->in[0])) {
        pt_op *op = pt_emit_op(em, PT_OP_BCAST_MUL);
        if (!op) return PT_ERR_NOMEM;
        op->nt = 3;
        op->t[0] = pt_emit_grad(em, id);
        op->t[1] = pt_emit_act(em, n->in[1]);
        op->t[2] = pt_emit_grad(em, n->in[0]);
        op->accumulate = pt_emit_grad_accumulate(em, n->in[0]);
    }
    return PT_OK;
}

const pt_layer_vt pt_layer_bcast_mul = {
    .name = "bcast_mul",
    .nhwc = 1,
    .infer = bcast_mul_infer,
    .forward = bcast_mul_forward,
    .backward = bcast_mul_backward,
};
