/* conv2d: cross-correlation with PyTorch's weight layout [out, in, k, k] and optional
 * bias; forward, input gradient and weight gradient are three backend ops. */
#include "core/layers/layer.h"

static pt_status conv2d_infer(pt_net *net, pt_node *n, pt_error *err)
{
    const pt_node *x = &net->nodes[n->in[0]];
    if (x->flat) return pt_fail(err, PT_ERR_INVALID, "conv2d '%s': input is not an image", n->name);
    int k = n->a.conv.k, s = n->a.conv.stride, pad = n->a.conv.pad;
    if (k < 1 || s < 1 || pad < 0)
        return pt_fail(err, PT_ERR_INVALID, "conv2d '%s': bad kernel/stride/padding", n->name);
    if (x->h + 2 * pad < k || x->w + 2 * pad < k)
        return pt_fail(err, PT_ERR_INVALID,
                       "conv2d '%s': input %lldx%lld is smaller than the %dx%d kernel", n->name,
                       (long long)x->h, (long long)x->w, k, k);
    n->c = n->a.conv.out;
    n->h = (x->h + 2 * pad - k) / s + 1;
    n->w = (x->w + 2 * pad - k) / s + 1;
    int64_t wdim[4] = {n->a.conv.out, x->c, k, k};
    int64_t fan_in = x->c * k * k, fan_out = (int64_t)n->a.conv.out * k * k;
    n->param[0] = pt_net_declare_param(net, n->name, "weight", 4, wdim,
                                       PT_INIT_KAIMING_NORMAL_FAN_OUT, fan_out, 0);
    n->param[1] = -1;
    if (n->a.conv.bias) {
        int64_t bdim[1] = {n->a.conv.out};
        n->param[1] = pt_net_declare_param(net, n->name, "bias", 1, bdim, PT_INIT_UNIFORM_FAN_IN,
                                           fan_in, 1);
    }
    return net->err.status;
}

static pt_status conv2d_forward(pt_emit *em, const pt_node *n, int id)
{
    pt_op *op = pt_emit_op(em, PT_OP_CONV2D_FWD);
    if (!op) return PT_ERR_NOMEM;
    op->nt = 3;
    op->t[0] = pt_emit_act(em, n->in[0]);
    op->t[1] = pt_emit_param(em, n->param[0]);
    op->t[2] = pt_emit_act(em, id);
    op->p.conv.stride = n->a.conv.stride;
    op->p.conv.pad = n->a.conv.pad;
    if (n->param[1] >= 0) {
        pt_op *b = pt_emit_op(em, PT_OP_BIAS_ADD);
        if (!b) return PT_ERR_NOMEM;
        b->nt = 2;
        b->t[0] = pt_emit_act(em, id);
        b->t[1] = pt_emit_param(em, n->param[1]);
    }
    return PT_OK;
}

static pt_status conv2d_backward(pt_emit *em, const pt_node *n, int id)
{
    if (n->param[1] >= 0) {
        pt_op *b = pt_emit_op(em, PT_OP_BIAS_GRAD);
        if (!b) return PT_ERR_NOMEM;
        b->nt = 2;
        b->t[0] = pt_emit_grad(em, id);
        b->t[1] = pt_emit_param_grad(em, n->param[1]);
    }
    pt_op *f = pt_emit_op(em, PT_OP_CONV2D_BWD_FILTER);
    if (!f) return PT_ERR_NOMEM;
    f->nt = 3;
    f->t[0] = pt_emit_act(em, n->in[0]);
    f->t[1] = pt_emit_param_grad(em, n->param[0]);
    f->t[2] = pt_emit_grad(em, id);
    f->p.conv.stride = n->a.conv.stride;
    f->p.conv.pad = n->a.conv.pad;
    if (pt_emit_wants_grad(em, n->in[0])) {
        pt_op *d = pt_emit_op(em, PT_OP_CONV2D_BWD_DATA);
        if (!d) return PT_ERR_NOMEM;
        d->nt = 3;
        d->t[0] = pt_emit_grad(em, n->in[0]);
        d->t[1] = pt_emit_param(em, n->param[0]);
        d->t[2] = pt_emit_grad(em, id);
        /* not f->p.conv: emitting d may have moved the list f points into */
        d->p.conv.stride = n->a.conv.stride;
        d->p.conv.pad = n->a.conv.pad;
        d->accumulate = pt_emit_grad_accumulate(em, n->in[0]);
    }
    return PT_OK;
}

const pt_layer_vt pt_layer_conv2d = {
    .name = "conv2d",
    .nhwc = 1,
    .infer = conv2d_infer,
    .forward = conv2d_forward,
    .backward = conv2d_backward,
};
