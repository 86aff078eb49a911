/* dropout: inverted dropout whose mask comes from the counter-based RNG keyed by the
 * global sample index, so it is the same whatever the device split; identity in eval. */
#include "core/layers/layer.h"

static pt_status dropout_infer(pt_net *net, pt_node *n, pt_error *err)
{
    if (!(n->a.dropout.p >= 0.0f && n->a.dropout.p < 1.0f))
        return pt_fail(err, PT_ERR_INVALID, "dropout: p must be in [0, 1), got %g",
                       (double)n->a.dropout.p);
    pt_layer_same_shape(net, n);
    return PT_OK;
}

static void dropout_saved_shape(const pt_node *n, int slot, int batch, int64_t dim[4], int *ndim,
                                pt_dtype *dtype)
{
    (void)slot;
    pt_layer_output_dims(n, batch, dim, ndim);
    *dtype = PT_F32;
}

static pt_status dropout_forward(pt_emit *em, const pt_node *n, int id)
{
    if (!pt_emit_train(em)) {
        pt_op *op = pt_emit_op(em, PT_OP_AXPY);
        if (!op) return PT_ERR_NOMEM;
        op->nt = 2;
        op->t[0] = pt_emit_act(em, n->in[0]);
        op->t[1] = pt_emit_act(em, id);
        op->p.axpy.alpha = 1.0f;
        return PT_OK;
    }
    pt_op *op = pt_emit_op(em, PT_OP_DROPOUT_FWD);
    if (!op) return PT_ERR_NOMEM;
    op->nt = 3;
    op->t[0] = pt_emit_act(em, n->in[0]);
    op->t[1] = pt_emit_act(em, id);
    op->t[2] = pt_emit_saved(em, id, 0);
    op->p.dropout.p = n->a.dropout.p;
    op->p.dropout.seed = pt_emit_seed(em);
    /* stream is set per step by the replica (step*65536 + layer id). */
    op->p.dropout.stream = (uint64_t)id;
    op->p.dropout.sample_base = pt_emit_sample_base(em);
    return PT_OK;
}

static pt_status dropout_backward(pt_emit *em, const pt_node *n, int id)
{
    if (!pt_emit_wants_grad(em, n->in[0])) return PT_OK;
    pt_op *op = pt_emit_op(em, PT_OP_DROPOUT_BWD);
    if (!op) return PT_ERR_NOMEM;
    op->nt = 3;
    op->t[0] = pt_emit_grad(em, id);
    op->t[1] = pt_emit_saved(em, id, 0);
    op->t[2] = pt_emit_grad(em, n->in[0]);
    op->accumulate = pt_emit_grad_accumulate(em, n->in[0]);
    return PT_OK;
}

const pt_layer_vt pt_layer_dropout = {
    .name = "dropout",
    .infer = dropout_infer,
    .nsaved = 1,
    .saved_shape = dropout_saved_shape,
    .forward = dropout_forward,
    .backward = dropout_backward,
};
