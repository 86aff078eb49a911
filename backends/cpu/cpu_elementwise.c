/* Elementwise and per-channel ops of the cpu backend: fill, axpy, bias add/grad, dropout, and
 * the pointwise kinds of the op table (add, the activations and their gradients, dropout's
 * gradient), which run() hands to cpu_op_pointwise. Plain loops the compiler vectorises,
 * split over the device's OpenMP threads when large enough to pay for the fork. */
#include <math.h>
#include <stdint.h>

#include "backends/cpu/cpu_internal.h"
#include "core/rng.h"

/* Below this many elements a parallel region costs more than it saves. */
#define CPU_PAR_MIN 32768

pt_status cpu_op_fill(const cpu_device *d, const pt_op *op, pt_error *err)
{
    (void)err;
    float *y = cpu_f32(&op->t[0]);
    const float v = op->p.fill.value;
    const int64_t n = pt_tensor_numel(&op->t[0]);
#pragma omp parallel for simd num_threads(d->threads) if (n > CPU_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = v;
    return PT_OK;
}

pt_status cpu_op_amp_unscale(const cpu_device *d, const pt_op *op, pt_error *err)
{
    (void)err;
    float *g = cpu_f32(&op->t[0]);
    float *found = cpu_f32(&op->t[1]);
    const float inv = op->p.amp.inv_scale;
    const int64_t n = pt_tensor_numel(&op->t[0]);
    int bad = 0;
#pragma omp parallel for simd num_threads(d->threads) if (n > CPU_PAR_MIN) schedule(static) reduction(| : bad)
    for (int64_t i = 0; i < n; i++) {
        bad |= !isfinite(g[i]);
        g[i] *= inv;
    }
    if (bad) found[0] = 1.0f;
    return PT_OK;
}

pt_status cpu_op_axpy(const cpu_device *d, const pt_op *op, pt_error *err)
{
    (void)err;
    const float *x = cpu_f32(&op->t[0]);
    float *y = cpu_f32(&op->t[1]);
    const float a = op->p.axpy.alpha;
    const int64_t n = pt_tensor_numel(&op->t[1]);
    if (op->accumulate) {
#pragma omp parallel for simd num_threads(d->threads) if (n > CPU_PAR_MIN) schedule(static)
        for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
    } else {
#pragma omp parallel for simd num_threads(d->threads) if (n > CPU_PAR_MIN) schedule(static)
        for (int64_t i = 0; i < n; i++) y[i] = a * x[i];
    }
    return PT_OK;
}

static void add(const cpu_device *d, const pt_op *op)
{
    /* y may alias a or b: each element is read before it is written, so that is safe. */
    const float *a = cpu_f32(&op->t[0]), *b = cpu_f32(&op->t[1]);
    float *y = cpu_f32(&op->t[2]);
    const int64_t n = pt_tensor_numel(&op->t[2]);
    if (op->fuse_relu) {
#pragma omp parallel for simd num_threads(d->threads) if (n > CPU_PAR_MIN) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            const float v = a[i] + b[i];
            y[i] = v < 0.0f ? 0.0f : v; /* as relu_fwd: NaN stays NaN */
        }
        return;
    }
#pragma omp parallel for simd num_threads(d->threads) if (n > CPU_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

/* [N,C] or [N,C,H,W] as N x C planes of `inner` elements. */
static void channel_layout(const pt_tensor *t, int64_t *n, int64_t *c, int64_t *inner)
{
    *n = t->dim[0];
    *c = t->ndim > 1 ? t->dim[1] : 1;
    *inner = 1;
    for (int i = 2; i < t->ndim; i++) *inner *= t->dim[i];
}

/* Elements of a 16-bit plane widened, added to and rounded back at a time (bias_add). */
#define BIAS_CHUNK 2048

pt_status cpu_op_bias_add(const cpu_device *d, const pt_op *op, pt_error *err)
{
    (void)err;
    if (op->t[0].dtype != PT_F32) {
        const pt_tensor *yt = &op->t[0];
        const float *bias = cpu_f32(&op->t[1]);
        int64_t n, c, inner;
        channel_layout(yt, &n, &c, &inner);
        const int64_t planes = n * c;
#pragma omp parallel for num_threads(d->threads) if (planes * inner > CPU_PAR_MIN) schedule(static)
        for (int64_t p = 0; p < planes; p++) {
            float buf[BIAS_CHUNK];
            const float b = bias[p % c];
            for (int64_t i0 = 0; i0 < inner; i0 += BIAS_CHUNK) {
                const int64_t len = inner - i0 < BIAS_CHUNK ? inner - i0 : BIAS_CHUNK;
                cpu_act16_widen_row(buf, (const uint16_t *)cpu_ptr(yt->mem) + p * inner + i0, len, yt->dtype);
#pragma omp simd
                for (int64_t i = 0; i < len; i++) buf[i] += b;
                cpu_act16_narrow_row((uint16_t *)cpu_ptr(yt->mem) + p * inner + i0, buf, len, yt->dtype);
            }
        }
        return PT_OK;
    }
    float *y = cpu_f32(&op->t[0]);
    const float *bias = cpu_f32(&op->t[1]);
    int64_t n, c, inner;
    channel_layout(&op->t[0], &n, &c, &inner);
    const int64_t planes = n * c;
#pragma omp parallel for num_threads(d->threads) if (planes * inner > CPU_PAR_MIN) schedule(static)
    for (int64_t p = 0; p < planes; p++) {
        float *row = y + p * inner;
        const float b = bias[p % c];
#pragma omp simd
        for (int64_t i = 0; i < inner; i++) row[i] += b;
    }
    return PT_OK;
}

pt_status cpu_op_bias_grad(const cpu_device *d, const pt_op *op, pt_error *err)
{
    (void)err;
    const float *dy = cpu_f32(&op->t[0]);
    float *db = cpu_f32(&op->t[1]);
    int64_t n, c, inner;
    channel_layout(&op->t[0], &n, &c, &inner);
    const int acc = op->accumulate;
#pragma omp parallel for num_threads(d->threads) if (n * c * inner > CPU_PAR_MIN) schedule(static)
    for (int64_t k = 0; k < c; k++) {
        double s = 0.0;
        for (int64_t i = 0; i < n; i++) {
            const float *row = dy + (i * c + k) * inner;
#pragma omp simd reduction(+ : s)
            for (int64_t j = 0; j < inner; j++) s += row[j];
        }
        db[k] = (float)((acc ? db[k] : 0.0) + s);
    }
    return PT_OK;
}

static void relu_fwd(const cpu_device *d, const pt_op *op)
{
    const float *x = cpu_f32(&op->t[0]);
    float *y = cpu_f32(&op->t[1]);
    const int64_t n = pt_tensor_numel(&op->t[0]);
    /* Written so that NaN stays NaN, as PyTorch's relu(NaN) does. */
#pragma omp parallel for simd num_threads(d->threads) if (n > CPU_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

static void relu_bwd(const cpu_device *d, const pt_op *op)
{
    const float *y = cpu_f32(&op->t[0]), *dy = cpu_f32(&op->t[1]);
    float *dx = cpu_f32(&op->t[2]);
    const int64_t n = pt_tensor_numel(&op->t[2]);
    if (op->accumulate) {
#pragma omp parallel for simd num_threads(d->threads) if (n > CPU_PAR_MIN) schedule(static)
        for (int64_t i = 0; i < n; i++) dx[i] += y[i] > 0.0f ? dy[i] : 0.0f;
    } else {
#pragma omp parallel for simd num_threads(d->threads) if (n > CPU_PAR_MIN) schedule(static)
        for (int64_t i = 0; i < n; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
    }
}

pt_status cpu_op_dropout_fwd(const cpu_device *d, const pt_op *op, pt_error *err)
{
    (void)err;
    const float *x = cpu_f32(&op->t[0]);
    float *y = cpu_f32(&op->t[1]), *mask = cpu_f32(&op->t[2]);
    const int64_t n = op->t[0].dim[0];
    const int64_t per = n > 0 ? pt_tensor_numel(&op->t[0]) / n : 0;
    const float p = op->p.dropout.p;
    const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    const uint64_t seed = op->p.dropout.seed, stream = op->p.dropout.stream;
    const int64_t base = op->p.dropout.sample_base;
#pragma omp parallel for num_threads(d->threads) if (n * per > CPU_PAR_MIN / 8) schedule(static)
    for (int64_t s = 0; s < n; s++) {
        const uint64_t sample = (uint64_t)(base + s);
        for (int64_t e = 0; e < per; e++) {
            float u = pt_rng_uniform(seed, PT_RNG_DROPOUT, stream, sample, (uint32_t)e);
            float m = u >= p ? scale : 0.0f;
            mask[s * per + e] = m;
            y[s * per + e] = x[s * per + e] * m;
        }
    }
    return PT_OK;
}

static void dropout_bwd(const cpu_device *d, const pt_op *op)
{
    const float *dy = cpu_f32(&op->t[0]), *mask = cpu_f32(&op->t[1]);
    float *dx = cpu_f32(&op->t[2]);
    const int64_t n = pt_tensor_numel(&op->t[2]);
    if (op->accumulate) {
#pragma omp parallel for simd num_threads(d->threads) if (n > CPU_PAR_MIN) schedule(static)
        for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * mask[i];
    } else {
#pragma omp parallel for simd num_threads(d->threads) if (n > CPU_PAR_MIN) schedule(static)
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * mask[i];
    }
}

static void sigmoid_fwd(const cpu_device *d, const pt_op *op)
{
    const float *x = cpu_f32(&op->t[0]);
    float *y = cpu_f32(&op->t[1]);
    const int64_t n = pt_tensor_numel(&op->t[0]);
#pragma omp parallel for num_threads(d->threads) if (n > CPU_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
}

static void sigmoid_bwd(const cpu_device *d, const pt_op *op)
{
    const float *y = cpu_f32(&op->t[0]), *dy = cpu_f32(&op->t[1]);
    float *dx = cpu_f32(&op->t[2]);
    const int64_t n = pt_tensor_numel(&op->t[2]);
    const int acc = op->accumulate;
#pragma omp parallel for num_threads(d->threads) if (n > CPU_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float g = dy[i] * (y[i] * (1.0f - y[i]));
        dx[i] = acc ? dx[i] + g : g;
    }
}

/* SiLU: y = x*s with s = 1/(1 + exp(-x)); its gradient from x, dy*(s*(1 + x*(1 - s))). */
static void silu_fwd(const cpu_device *d, const pt_op *op)
{
    const float *x = cpu_f32(&op->t[0]);
    float *y = cpu_f32(&op->t[1]);
    const int64_t n = pt_tensor_numel(&op->t[0]);
#pragma omp parallel for num_threads(d->threads) if (n > CPU_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * (1.0f / (1.0f + expf(-x[i])));
}

static void silu_bwd(const cpu_device *d, const pt_op *op)
{
    const float *x = cpu_f32(&op->t[0]), *dy = cpu_f32(&op->t[1]);
    float *dx = cpu_f32(&op->t[2]);
    const int64_t n = pt_tensor_numel(&op->t[2]);
    const int acc = op->accumulate;
#pragma omp parallel for num_threads(d->threads) if (n > CPU_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float s = 1.0f / (1.0f + expf(-x[i]));
        const float g = dy[i] * (s * (1.0f + x[i] * (1.0f - s)));
        dx[i] = acc ? dx[i] + g : g;
    }
}

pt_status cpu_op_pointwise(const cpu_device *d, const pt_op *op, pt_error *err)
{
    switch (op->kind) {
    case PT_OP_ADD: add(d, op); return PT_OK;
    case PT_OP_RELU_FWD: relu_fwd(d, op); return PT_OK;
    case PT_OP_RELU_BWD: relu_bwd(d, op); return PT_OK;
    case PT_OP_DROPOUT_BWD: dropout_bwd(d, op); return PT_OK;
    case PT_OP_SIGMOID_FWD: sigmoid_fwd(d, op); return PT_OK;
    case PT_OP_SIGMOID_BWD: sigmoid_bwd(d, op); return PT_OK;
    case PT_OP_SILU_FWD: silu_fwd(d, op); return PT_OK;
    case PT_OP_SILU_BWD: silu_bwd(d, op); return PT_OK;
    default:
        return pt_fail(err, PT_ERR_UNSUPPORTED, "cpu backend: no pointwise loop for %s", pt_op_name(op->kind));
    }
}
