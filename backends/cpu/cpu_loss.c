/* Softmax cross-entropy with label smoothing (and mixup/cutmix targets) on the cpu backend:
 * per-sample loss and the logits gradient in one pass, with the log-sum-exp in double. */
#include <math.h>

#include "backends/cpu/cpu_internal.h"

pt_status cpu_op_xent(const cpu_device *d, const pt_op *op, pt_error *err)
{
    const float *logits = cpu_f32(&op->t[0]);
    const int32_t *labels = (const int32_t *)cpu_ptr(op->t[1].mem);
    float *loss = cpu_f32(&op->t[2]);
    float *dl = op->t[3].ndim > 0 ? cpu_f32(&op->t[3]) : NULL;
    const int mixed = op->nt == 6;
    const int32_t *labels2 = mixed ? (const int32_t *)cpu_ptr(op->t[4].mem) : NULL;
    const float *lam = mixed ? cpu_f32(&op->t[5]) : NULL;
    const int64_t n = op->t[0].dim[0], k = op->t[0].dim[1];
    const double sm = op->p.xent.smoothing, gs = op->p.xent.grad_scale;
    const double off = k > 0 ? sm / (double)k : 0.0;
    int64_t bad = -1;
#pragma omp parallel for num_threads(d->threads) if (n * k > 65536) schedule(static) reduction(max : bad)
    for (int64_t i = 0; i < n; i++) {
        const float *z = logits + i * k;
        const int32_t label = labels[i], label2 = mixed ? labels2[i] : label;
        const double w1 = mixed ? lam[i] : 1.0, w2 = 1.0 - w1;
        if (label < 0 || label >= k || label2 < 0 || label2 >= k) {
            bad = i > bad ? i : bad;
            continue;
        }
        double mx = -INFINITY;
        for (int64_t j = 0; j < k; j++) mx = z[j] > mx ? z[j] : mx;
        double se = 0.0, sz = 0.0;
        for (int64_t j = 0; j < k; j++) {
            se += exp(z[j] - mx);
            sz += z[j];
        }
        const double lse = mx + log(se);
        /* -sum q_j (z_j - lse), q = w1*t(label) + w2*t(label2), t(y) = (1-sm)*onehot(y) + sm/K */
        loss[i] = (float)(lse - (1.0 - sm) * (w1 * z[label] + w2 * z[label2]) - off * sz);
        if (!dl) continue;
        float *g = dl + i * k;
        for (int64_t j = 0; j < k; j++) {
            const double q = (1.0 - sm) * ((j == label ? w1 : 0.0) + (j == label2 ? w2 : 0.0)) + off;
            g[j] = (float)(gs * (exp(z[j] - lse) - q));
        }
    }
    if (bad >= 0)
        return pt_fail(err, PT_ERR_INVALID, "cpu xent: label of sample %lld is %d, expected 0..%lld",
                       (long long)bad, labels[bad] >= 0 && labels[bad] < k && mixed ? labels2[bad] : labels[bad],
                       (long long)(k - 1));
    return PT_OK;
}
