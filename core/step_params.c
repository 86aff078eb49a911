/* Per-step op parameters by reference (pt_step_scalars in polytrain/op.h): which kinds have
 * them, how two ops of consecutive steps are compared without them (what decides whether a
 * captured graph still holds), how a host-side backend reads them back into an op, and the
 * decisions a step captured whole makes on the device (the overflow skip, the clipping
 * coefficient), formed here once for the host and for the cpu backend. */
#include <math.h>
#include <string.h>

#include "polytrain/op.h"

int pt_op_has_step_params(pt_op_kind kind)
{
    switch (kind) {
    case PT_OP_SGD:
    case PT_OP_ADAM:
    case PT_OP_RMSPROP:
    case PT_OP_DROPOUT_FWD:
    case PT_OP_XENT: return 1;
    default: return 0;
    }
}

void pt_op_clear_step_params(pt_op *op)
{
    switch (op->kind) {
    case PT_OP_SGD:
        op->p.sgd.lr = 0;
        op->p.sgd.momentum = op->p.sgd.momentum != 0.0f ? 1.0f : 0.0f;
        op->p.sgd.first_step = 0;
        break;
    case PT_OP_ADAM:
        op->p.adam.lr = 0;
        op->p.adam.beta1 = 0;
        op->p.adam.step = 1; /* a placeholder the kind's rule accepts (step >= 1) */
        break;
    case PT_OP_RMSPROP:
        op->p.rmsprop.lr = 0;
        op->p.rmsprop.momentum = op->p.rmsprop.momentum != 0.0f ? 1.0f : 0.0f;
        break;
    case PT_OP_DROPOUT_FWD:
        op->p.dropout.stream &= 0xffffu;
        op->p.dropout.sample_base = 0;
        break;
    case PT_OP_XENT: op->p.xent.grad_scale = 0; break;
    case PT_OP_AMP_UNSCALE:
        if (op->p.amp.mode == PT_AMP_LOSS) op->p.amp.inv_scale = 0;
        break;
    default: break;
    }
}

int pt_op_step_gated(const pt_op *op)
{
    switch (op->kind) {
    case PT_OP_SGD:
    case PT_OP_ADAM:
    case PT_OP_RMSPROP:
    case PT_OP_AXPY: return 1;
    case PT_OP_AMP_UNSCALE: return op->p.amp.mode != PT_AMP_LOSS;
    default: return 0;
    }
}

float pt_clip_coef(float max_norm, float sumsq)
{
    const double norm = sqrt((double)sumsq);
    return max_norm / ((float)norm + 1e-6f);
}

int pt_clip_applies(float coef) { return coef < 1.0f || isnan(coef); }

static uint64_t u64_of(uint32_t lo, uint32_t hi) { return (uint64_t)lo | (uint64_t)hi << 32; }

int pt_op_resolve_step_params(pt_op *op, const pt_step_scalars *s)
{
    if (pt_op_step_gated(op) && s->skip != 0) return 0;
    switch (op->kind) {
    case PT_OP_SGD:
        op->p.sgd.lr = s->lr;
        op->p.sgd.momentum = s->momentum;
        op->p.sgd.first_step = s->first_step;
        break;
    case PT_OP_ADAM:
        op->p.adam.lr = s->lr;
        op->p.adam.beta1 = s->momentum;
        op->p.adam.step = (int64_t)u64_of(s->adam_step_lo, s->adam_step_hi);
        break;
    case PT_OP_RMSPROP:
        op->p.rmsprop.lr = s->lr;
        op->p.rmsprop.momentum = s->momentum;
        break;
    case PT_OP_DROPOUT_FWD:
        op->p.dropout.stream = u64_of(s->step_lo, s->step_hi) * 65536u + (op->p.dropout.stream & 0xffffu);
        op->p.dropout.sample_base = (int64_t)u64_of(s->sample_base_lo, s->sample_base_hi);
        break;
    case PT_OP_XENT: op->p.xent.grad_scale = s->grad_scale; break;
    case PT_OP_AMP_UNSCALE:
        if (op->p.amp.mode == PT_AMP_LOSS) {
            op->p.amp.inv_scale = s->inv_scale;
        } else if (op->p.amp.mode == PT_AMP_CLIP) {
            const float coef = pt_clip_coef(op->p.amp.inv_scale, s->sumsq);
            if (!pt_clip_applies(coef)) return 0;
            op->p.amp.inv_scale = coef;
        }
        op->p.amp.mode = PT_AMP_FIXED;
        break;
    default: break;
    }
    return 1;
}

void pt_step_scalars_from_op(pt_step_scalars *s, const pt_op *op)
{
    switch (op->kind) {
    case PT_OP_SGD:
        s->lr = op->p.sgd.lr;
        s->momentum = op->p.sgd.momentum;
        s->first_step = op->p.sgd.first_step;
        break;
    case PT_OP_ADAM:
        s->lr = op->p.adam.lr;
        s->momentum = op->p.adam.beta1;
        s->adam_step_lo = (uint32_t)(uint64_t)op->p.adam.step;
        s->adam_step_hi = (uint32_t)((uint64_t)op->p.adam.step >> 32);
        pt_adam_bias_terms(op->p.adam.lr, op->p.adam.beta1, op->p.adam.beta2, op->p.adam.step, &s->adam_step_size,
                           &s->adam_sqrt_bc2);
        break;
    case PT_OP_RMSPROP:
        s->lr = op->p.rmsprop.lr;
        s->momentum = op->p.rmsprop.momentum;
        break;
    case PT_OP_DROPOUT_FWD: {
        const uint64_t step = op->p.dropout.stream >> 16;
        s->step_lo = (uint32_t)step;
        s->step_hi = (uint32_t)(step >> 32);
        s->sample_base_lo = (uint32_t)(uint64_t)op->p.dropout.sample_base;
        s->sample_base_hi = (uint32_t)((uint64_t)op->p.dropout.sample_base >> 32);
        break;
    }
    case PT_OP_XENT: s->grad_scale = op->p.xent.grad_scale; break;
    case PT_OP_AMP_UNSCALE:
        if (op->p.amp.mode == PT_AMP_LOSS) s->inv_scale = op->p.amp.inv_scale;
        break;
    default: break;
    }
}

void pt_adam_bias_terms(float lr, float beta1, float beta2, int64_t step, float *step_size, float *sqrt_bc2)
{
    const double bc1 = 1.0 - pow((double)beta1, (double)step);
    const double bc2 = 1.0 - pow((double)beta2, (double)step);
    *step_size = (float)(lr / bc1);
    *sqrt_bc2 = (float)sqrt(bc2);
}
