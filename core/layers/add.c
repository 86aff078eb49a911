/* add: the residual sum y = a + b of two same-shaped outputs, folded into the batch norm that
 * computes one of them where the device has that form; backward hands dy to both (to the
 * first by sharing its range, where the planner allows). */
#include "core/layers/layer.h"

static pt_status add_infer(pt_net *net, pt_node *n, pt_error *err)
{
    const pt_node *a = &net->nodes[n->in[0]], *b = &net->nodes[n->in[1]];
    if (a->c != b->c || a->h != b->h || a->w != b->w || a->flat != b->flat)
        return pt_fail(err, PT_ERR_INVALID,
                       "add: shapes differ (%lldx%lldx%lld vs %lldx%lldx%lld)", (long long)a->c,
                       (long long)a->h, (long long)a->w, (long long)b->c, (long long)b->h,
                       (long long)b->w);
    n->c = a->c;
    n->h = a->h;
    n->w = a->w;
    n->flat = a->flat;
    return PT_OK;
}

static pt_status add_forward(pt_emit *em, const pt_node *n, int id)
{
    if (pt_emit_fold_add(em, id)) return PT_OK;
    pt_op *op = pt_emit_op(em, PT_OP_ADD);
    if (!op) return PT_ERR_NOMEM;
    op->nt = 3;
    op->t[0] = pt_emit_act(em, n->in[0]);
    op->t[1] = pt_emit_act(em, n->in[1]);
    op->t[2] = pt_emit_act(em, id);
    return PT_OK;
}

static pt_status add_backward(pt_emit *em, const pt_node *n, int id)
{
    for (int i = 0; i < 2; i++) {
        if (!pt_emit_wants_grad(em, n->in[i])) continue;
        const pt_tensor dy = pt_emit_grad(em, id), dx = pt_emit_grad(em, n->in[i]);
        /* the planner gave the first input the output's gradient range (grad_in_place):
         * dy already is its gradient */
        if (pt_tensor_same_start(&dx, &dy)) {
            /* the add is that input's only consumer, so nothing wrote its gradient before */
            if (pt_emit_grad_accumulate(em, n->in[i])) return PT_ERR_INVALID;
            continue;
        }
        pt_op *op = pt_emit_op(em, PT_OP_AXPY);
        if (!op) return PT_ERR_NOMEM;
        op->nt = 2;
        op->t[0] = pt_emit_grad(em, id);
        op->t[1] = pt_emit_grad(em, n->in[i]);
        op->p.axpy.alpha = 1.0f;
        op->accumulate = pt_emit_grad_accumulate(em, n->in[i]);
    }
    return PT_OK;
}

const pt_layer_vt pt_layer_add = {
    .name = "add",
    .nhwc = 1,
    .infer = add_infer,
    .forward = add_forward,
    .backward = add_backward,
    .grad_in_place = 1,
};
