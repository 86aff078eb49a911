/* Fused optimizer updates on the cpu backend: SGD (momentum, dampening, Nesterov, weight
 * decay), Adam/AdamW and RMSprop, elementwise over one flat range of the parameter slab, with
 * PyTorch's formulas and float arithmetic so that trajectories match torch.optim. */
#include <math.h>

#include "backends/cpu/cpu_internal.h"

#define CPU_PAR_MIN 32768

pt_status cpu_op_sgd(const cpu_device *d, const pt_op *op, pt_error *err)
{
    (void)err;
    float *param = cpu_f32(&op->t[0]);
    const float *grad = cpu_f32(&op->t[1]);
    const int64_t n = pt_tensor_numel(&op->t[0]);
    const float lr = op->p.sgd.lr, mom = op->p.sgd.momentum, damp = op->p.sgd.dampening;
    const float wd = op->p.sgd.weight_decay;
    const int nesterov = op->p.sgd.nesterov, first = op->p.sgd.first_step;
    if (mom == 0.0f) {
#pragma omp parallel for simd num_threads(d->threads) if (n > CPU_PAR_MIN) schedule(static)
        for (int64_t i = 0; i < n; i++) param[i] -= lr * (grad[i] + wd * param[i]);
        return PT_OK;
    }
    float *buf = cpu_f32(&op->t[2]);
#pragma omp parallel for simd num_threads(d->threads) if (n > CPU_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float g = grad[i] + wd * param[i];
        const float b = first ? g : mom * buf[i] + (1.0f - damp) * g;
        buf[i] = b;
        param[i] -= lr * (nesterov ? g + mom * b : b);
    }
    return PT_OK;
}

pt_status cpu_op_adam(const cpu_device *d, const pt_op *op, pt_error *err)
{
    (void)err; /* the step was checked by run() (the kind's rule) */
    float *param = cpu_f32(&op->t[0]);
    const float *grad = cpu_f32(&op->t[1]);
    float *m = cpu_f32(&op->t[2]), *v = cpu_f32(&op->t[3]);
    const int64_t n = pt_tensor_numel(&op->t[0]);
    const float lr = op->p.adam.lr, b1 = op->p.adam.beta1, b2 = op->p.adam.beta2;
    const float eps = op->p.adam.eps, wd = op->p.adam.weight_decay;
    const int decoupled = op->p.adam.decoupled;
    /* PyTorch: denom = sqrt(v)/sqrt(bc2) + eps; param -= (lr/bc1) * m/denom */
    float step_size, sqrt_bc2;
    pt_adam_bias_terms(lr, b1, b2, op->p.adam.step, &step_size, &sqrt_bc2);
    const float decay = decoupled ? 1.0f - lr * wd : 1.0f;
    const float l2 = decoupled ? 0.0f : wd;
#pragma omp parallel for simd num_threads(d->threads) if (n > CPU_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float p = param[i] * decay;
        const float g = grad[i] + l2 * param[i];
        const float mi = b1 * m[i] + (1.0f - b1) * g;
        const float vi = b2 * v[i] + (1.0f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] = p - step_size * (mi / (sqrtf(vi) / sqrt_bc2 + eps));
    }
    return PT_OK;
}

/* torch.optim.RMSprop's single-tensor path, term for term: square_avg.mul_(alpha)
 * .addcmul_(g, g, 1-alpha); grad_avg.lerp_(g, 1-alpha); avg = sqrt(...) + eps;
 * buf.mul_(momentum).addcdiv_(g, avg); param.add_(buf, -lr) (or addcdiv_ without momentum).
 * 1-alpha is formed in double, as Python forms it before handing it to the kernel. */
pt_status cpu_op_rmsprop(const cpu_device *d, const pt_op *op, pt_error *err)
{
    (void)err;
    float *param = cpu_f32(&op->t[0]);
    const float *grad = cpu_f32(&op->t[1]);
    float *sq = cpu_f32(&op->t[2]);
    const float mom = op->p.rmsprop.momentum;
    const int centered = op->p.rmsprop.centered;
    float *buf = mom != 0.0f ? cpu_f32(&op->t[3]) : NULL;
    float *gavg = centered ? cpu_f32(&op->t[4]) : NULL;
    const int64_t n = pt_tensor_numel(&op->t[0]);
    const float lr = op->p.rmsprop.lr, alpha = op->p.rmsprop.alpha, eps = op->p.rmsprop.eps;
    const float wd = op->p.rmsprop.weight_decay;
    const float oma = (float)(1.0 - (double)alpha);
#pragma omp parallel for simd num_threads(d->threads) if (n > CPU_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float g = grad[i] + wd * param[i];
        const float s = sq[i] * alpha + oma * g * g;
        sq[i] = s;
        float avg;
        if (centered) {
            const float a = gavg[i] + oma * (g - gavg[i]);
            gavg[i] = a;
            avg = sqrtf(s - a * a) + eps;
        } else {
            avg = sqrtf(s) + eps;
        }
        if (mom != 0.0f) {
            const float b = buf[i] * mom + g / avg;
            buf[i] = b;
            param[i] += -lr * b;
        } else {
            param[i] += -lr * (g / avg);
        }
    }
    return PT_OK;
}
