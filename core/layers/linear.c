/* linear: y = x W^T + b with PyTorch's weight layout [out, in]; an image input is
 * flattened (C*H*W features). Three GEMMs and a bias reduction. A shared linear applies
 * another linear node's parameters (CBAM's MLP over two pooled vectors): their gradients
 * add up, the first writer of a backward pass overwriting, the next accumulating. */
#include "core/layers/layer.h"

static pt_status linear_infer(pt_net *net, pt_node *n, pt_error *err)
{
    const pt_node *x = &net->nodes[n->in[0]];
    int64_t in_features = x->c * x->h * x->w;
    if (n->a.linear.out < 1)
        return pt_fail(err, PT_ERR_INVALID, "linear '%s': out_features must be >= 1", n->name);
    n->c = n->a.linear.out;
    n->h = n->w = 1;
    n->flat = 1;
    if (n->a.linear.share) {
        /* The parameters stay the owner's: a checkpoint lists them once, under its name. */
        const pt_node *o = &net->nodes[n->a.linear.share];
        if (net->params[o->param[0]].dim[1] != in_features)
            return pt_fail(err, PT_ERR_INVALID, "linear '%s' (shared): input has %lld features, the weights take %lld",
                           n->name, (long long)in_features, (long long)net->params[o->param[0]].dim[1]);
        n->a.linear.w = o->param[0];
        n->a.linear.b = o->param[1];
        return PT_OK;
    }
    int64_t wdim[2] = {n->a.linear.out, in_features};
    n->param[0] = pt_net_declare_param(net, n->name, "weight", 2, wdim, PT_INIT_UNIFORM_FAN_IN,
                                       in_features, 0);
    n->param[1] = -1;
    if (n->a.linear.bias) {
        int64_t bdim[1] = {n->a.linear.out};
        n->param[1] = pt_net_declare_param(net, n->name, "bias", 1, bdim, PT_INIT_UNIFORM_FAN_IN,
                                           in_features, 1);
    }
    n->a.linear.w = n->param[0];
    n->a.linear.b = n->param[1];
    return net->err.status;
}

/* The input as a matrix [n, features]. */
static pt_tensor as_matrix(pt_tensor t)
{
    int64_t rows = t.dim[0], cols = 1;
    for (int i = 1; i < t.ndim; i++) cols *= t.dim[i];
    const int64_t dim[2] = {rows, cols};
    return pt_tensor_make(t.mem.buf, t.mem.off, t.dtype, 2, dim);
}

static pt_status linear_forward(pt_emit *em, const pt_node *n, int id)
{
    pt_op *op = pt_emit_op(em, PT_OP_GEMM);
    if (!op) return PT_ERR_NOMEM;
    op->nt = 3;
    op->t[0] = as_matrix(pt_emit_act(em, n->in[0]));
    op->t[1] = pt_emit_param(em, n->a.linear.w);
    op->t[2] = pt_emit_act(em, id);
    op->p.gemm.trans_b = 1;
    op->p.gemm.alpha = 1.0f;
    op->p.gemm.beta = 0.0f;
    if (n->a.linear.b >= 0) {
        pt_op *b = pt_emit_op(em, PT_OP_BIAS_ADD);
        if (!b) return PT_ERR_NOMEM;
        b->nt = 2;
        b->t[0] = pt_emit_act(em, id);
        b->t[1] = pt_emit_param(em, n->a.linear.b);
    }
    return PT_OK;
}

static pt_status linear_backward(pt_emit *em, const pt_node *n, int id)
{
    pt_tensor dy = pt_emit_grad(em, id);
    if (n->a.linear.b >= 0) {
        pt_op *b = pt_emit_op(em, PT_OP_BIAS_GRAD);
        if (!b) return PT_ERR_NOMEM;
        b->nt = 2;
        b->t[0] = dy;
        b->t[1] = pt_emit_param_grad(em, n->a.linear.b);
        b->accumulate = pt_emit_param_grad_accumulate(em, n->a.linear.b);
    }
    pt_op *w = pt_emit_op(em, PT_OP_GEMM); /* dW = dy^T x */
    if (!w) return PT_ERR_NOMEM;
    w->nt = 3;
    w->t[0] = dy;
    w->t[1] = as_matrix(pt_emit_act(em, n->in[0]));
    w->t[2] = pt_emit_param_grad(em, n->a.linear.w);
    w->p.gemm.trans_a = 1;
    w->p.gemm.alpha = 1.0f;
    w->p.gemm.beta = pt_emit_param_grad_accumulate(em, n->a.linear.w) ? 1.0f : 0.0f;
    if (pt_emit_wants_grad(em, n->in[0])) {
        pt_op *d = pt_emit_op(em, PT_OP_GEMM); /* dx = dy W */
        if (!d) return PT_ERR_NOMEM;
        d->nt = 3;
        d->t[0] = dy;
        d->t[1] = pt_emit_param(em, n->a.linear.w);
        d->t[2] = as_matrix(pt_emit_grad(em, n->in[0]));
        d->p.gemm.alpha = 1.0f;
        d->p.gemm.beta = pt_emit_grad_accumulate(em, n->in[0]) ? 1.0f : 0.0f;
    }
    return PT_OK;
}

const pt_layer_vt pt_layer_linear = {
    .name = "linear",
    .infer = linear_infer,
    .forward = linear_forward,
    .backward = linear_backward,
};
