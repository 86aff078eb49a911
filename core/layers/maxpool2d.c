/* maxpool2d: k x k windows (floor output size, optional padding); the argmax of each
 * window is saved for backward instead of the input. */
#include "core/layers/layer.h"

static pt_status maxpool_infer(pt_net *net, pt_node *n, pt_error *err)
{
    const pt_node *x = &net->nodes[n->in[0]];
    int k = n->a.pool.k, s = n->a.pool.stride, pad = n->a.pool.pad;
    if (x->flat) return pt_fail(err, PT_ERR_INVALID, "maxpool2d: input is not an image");
    if (k < 1 || s < 1 || pad < 0 || 2 * pad > k)
        return pt_fail(err, PT_ERR_INVALID, "maxpool2d: bad kernel/stride/padding");
    if (x->h + 2 * pad < k || x->w + 2 * pad < k)
        return pt_fail(err, PT_ERR_INVALID, "maxpool2d: input %lldx%lld is smaller than the %dx%d window",
                       (long long)x->h, (long long)x->w, k, k);
    n->c = x->c;
    n->h = (x->h + 2 * pad - k) / s + 1;
    n->w = (x->w + 2 * pad - k) / s + 1;
    return PT_OK;
}

static void maxpool_saved_shape(const pt_node *n, int slot, int batch, int64_t dim[4], int *ndim,
                                pt_dtype *dtype)
{
    (void)slot;
    pt_layer_output_dims(n, batch, dim, ndim);
    *dtype = PT_I32;
}

static pt_status maxpool_forward(pt_emit *em, const pt_node *n, int id)
{
    pt_op *op = pt_emit_op(em, PT_OP_MAXPOOL_FWD);
    if (!op) return PT_ERR_NOMEM;
    op->nt = 3;
    op->t[0] = pt_emit_act(em, n->in[0]);
    op->t[1] = pt_emit_act(em, id);
    op->t[2] = pt_emit_saved(em, id, 0);
    op->p.pool.k = n->a.pool.k;
    op->p.pool.stride = n->a.pool.stride;
    op->p.pool.pad = n->a.pool.pad;
    return PT_OK;
}

static pt_status maxpool_backward(pt_emit *em, const pt_node *n, int id)
{
    if (!pt_emit_wants_grad(em, n->in[0])) return PT_OK;
    pt_op *op = pt_emit_op(em, PT_OP_MAXPOOL_BWD);
    if (!op) return PT_ERR_NOMEM;
    op->nt = 3;
    op->t[0] = pt_emit_grad(em, id);
    op->t[1] = pt_emit_saved(em, id, 0);
    op->t[2] = pt_emit_grad(em, n->in[0]);
    op->p.pool.k = n->a.pool.k;
    op->p.pool.stride = n->a.pool.stride;
    op->p.pool.pad = n->a.pool.pad;
    op->accumulate = pt_emit_grad_accumulate(em, n->in[0]);
    return PT_OK;
}

const pt_layer_vt pt_layer_maxpool2d = {
    .name = "maxpool2d",
    .nhwc = 1,
    .infer = maxpool_infer,
    .nsaved = 1,
    .saved_shape = maxpool_saved_shape,
    .forward = maxpool_forward,
    .backward = maxpool_backward,
};
