/* Finite-difference gradient checks of the cpu backend: each layer's backward ops against
 * central differences of the backend's own float32 forward ops, for a scalar loss
 * L = sum(y * r) with random r. Covers every layer the models use and the loss. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "polytrain/backend.h"
#include "pt_test.h"

static pt_device *g_dev;
static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static double urand(void) /* [-1, 1) */
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) / 4503599627370496.0 - 1.0;
}

static float *rand_f(int64_t n, double scale)
{
    float *p = malloc((size_t)(n ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = (float)(scale * urand());
    return p;
}

/* ---- device helpers: every call uploads to fresh buffers and reads the result back ---- */

#define MAX_BUFS 16
static pt_buffer *g_bufs[MAX_BUFS];
static int g_nbufs;

static pt_buffer *dev_buf(const void *src, size_t bytes)
{
    pt_buffer *b = NULL;
    pt_error e;
    if (g_nbufs == MAX_BUFS || pt_device_alloc(g_dev, bytes, &b, &e) != PT_OK) abort();
    if (src) {
        pt_device_write(g_dev, (pt_mem){b, 0}, src, bytes, &e);
    } else { /* outputs start as NaN */
        float *p = malloc(bytes);
        for (size_t i = 0; i < bytes / 4; i++) p[i] = NAN;
        pt_device_write(g_dev, (pt_mem){b, 0}, p, bytes, &e);
        free(p);
    }
    g_bufs[g_nbufs++] = b;
    return b;
}

static pt_buffer *dev_f(const float *src, int64_t n)
{
    return dev_buf(src, (size_t)n * 4);
}

static void dev_release(void)
{
    for (int i = 0; i < g_nbufs; i++) pt_device_free(g_dev, g_bufs[i]);
    g_nbufs = 0;
}

static void get(float *dst, pt_buffer *b, int64_t n)
{
    pt_error e;
    pt_device_read(g_dev, dst, (pt_mem){b, 0}, (size_t)n * 4, &e);
}

static pt_op mk(pt_op_kind kind, int nt)
{
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = kind;
    op.nt = nt;
    return op;
}

static void exec(pt_op *op)
{
    pt_error e;
    pt_error_clear(&e);
    size_t ws = g_dev->be->workspace_size(g_dev->ctx, op);
    if (ws) {
        op->workspace = (pt_mem){dev_buf(NULL, ws), 0};
        op->workspace_bytes = ws;
    }
    pt_status st = pt_device_run(g_dev, op, &e);
    if (st != PT_OK) CHECKF(st == PT_OK, "%s: %s", pt_op_name(op->kind), e.msg);
}

static pt_tensor T4(pt_buffer *b, int64_t n, int64_t c, int64_t h, int64_t w)
{
    return pt_tensor_4d(b, 0, n, c, h, w);
}

static pt_tensor T1(pt_buffer *b, int64_t n)
{
    return pt_tensor_1d(b, 0, PT_F32, n);
}

/* ---- the check ---- */

#define MAX_IN 4

typedef struct layer layer;
struct layer {
    const char *name;
    int nin;
    float *in[MAX_IN];
    int64_t in_n[MAX_IN];
    int check[MAX_IN];
    int64_t out_n;
    double h;
    void (*forward)(layer *l, float *out);
    /* analytic gradients of L = sum(out * r) for the inputs */
    void (*backward)(layer *l, const float *r, float **grads);
    int dims[8]; /* layer-specific shape numbers */
};

static double loss_of(layer *l, const float *r, float *out)
{
    l->forward(l, out);
    double s = 0;
    for (int64_t i = 0; i < l->out_n; i++) s += (double)out[i] * r[i];
    return s;
}

static void gradcheck(layer *l, const float *r_given)
{
    float *r = r_given ? (float *)r_given : rand_f(l->out_n, 1);
    float *out = malloc((size_t)l->out_n * 4);
    float *grads[MAX_IN];
    for (int i = 0; i < l->nin; i++) {
        grads[i] = malloc((size_t)l->in_n[i] * 4);
        for (int64_t j = 0; j < l->in_n[i]; j++) grads[i][j] = NAN;
    }
    l->backward(l, r, grads);
    for (int i = 0; i < l->nin; i++) {
        if (!l->check[i]) continue;
        double *num = malloc((size_t)l->in_n[i] * sizeof(double));
        for (int64_t j = 0; j < l->in_n[i]; j++) {
            float v = l->in[i][j];
            l->in[i][j] = (float)(v + l->h);
            double lp = loss_of(l, r, out);
            l->in[i][j] = (float)(v - l->h);
            double lm = loss_of(l, r, out);
            l->in[i][j] = v;
            /* the step actually taken in float32 */
            double step = (double)(float)(v + l->h) - (double)(float)(v - l->h);
            num[j] = (lp - lm) / step;
        }
        double err = pt_t_rel_err_f32_f64(grads[i], num, (long)l->in_n[i]);
        CHECKF(err < 1e-2, "%s: input %d relative error %g", l->name, i, err);
        free(num);
    }
    for (int i = 0; i < l->nin; i++) free(grads[i]);
    free(out);
    if (!r_given) free(r);
}

static void free_inputs(layer *l)
{
    for (int i = 0; i < l->nin; i++) free(l->in[i]);
}

/* ---- conv2d: dims = n, c, h, w, k, r, stride, pad ---- */

static int conv_p(const layer *l)
{
    return (l->dims[2] + 2 * l->dims[7] - l->dims[5]) / l->dims[6] + 1;
}

static pt_op conv_op(layer *l, pt_op_kind kind, pt_buffer *x, pt_buffer *w, pt_buffer *y)
{
    const int *d = l->dims;
    int p = conv_p(l), q = (d[3] + 2 * d[7] - d[5]) / d[6] + 1;
    pt_op op = mk(kind, 3);
    op.t[0] = T4(x, d[0], d[1], d[2], d[3]);
    op.t[1] = T4(w, d[4], d[1], d[5], d[5]);
    op.t[2] = T4(y, d[0], d[4], p, q);
    op.p.conv.stride = d[6];
    op.p.conv.pad = d[7];
    return op;
}

static void conv_forward(layer *l, float *out)
{
    pt_buffer *y = dev_f(NULL, l->out_n);
    pt_op op = conv_op(l, PT_OP_CONV2D_FWD, dev_f(l->in[0], l->in_n[0]), dev_f(l->in[1], l->in_n[1]), y);
    exec(&op);
    get(out, y, l->out_n);
    dev_release();
}

static void conv_backward(layer *l, const float *r, float **g)
{
    pt_buffer *x = dev_f(l->in[0], l->in_n[0]), *w = dev_f(l->in[1], l->in_n[1]), *dy = dev_f(r, l->out_n);
    pt_buffer *dx = dev_f(NULL, l->in_n[0]), *dw = dev_f(NULL, l->in_n[1]);
    pt_op op = conv_op(l, PT_OP_CONV2D_BWD_DATA, dx, w, dy);
    exec(&op);
    op = conv_op(l, PT_OP_CONV2D_BWD_FILTER, x, dw, dy);
    exec(&op);
    get(g[0], dx, l->in_n[0]);
    get(g[1], dw, l->in_n[1]);
    dev_release();
}

static void conv2d_gradients_match_finite_differences(void)
{
    int cases[][8] = {{2, 3, 5, 5, 4, 3, 1, 1}, {2, 2, 7, 7, 3, 3, 2, 0}, {1, 3, 6, 6, 2, 3, 2, 1},
                      {2, 4, 4, 4, 3, 1, 1, 0}};
    for (int ci = 0; ci < 4; ci++) {
        layer l = {.name = "conv2d", .nin = 2, .check = {1, 1}, .h = 1e-2};
        memcpy(l.dims, cases[ci], sizeof cases[ci]);
        const int *d = l.dims;
        int p = conv_p(&l);
        l.in_n[0] = (int64_t)d[0] * d[1] * d[2] * d[3];
        l.in_n[1] = (int64_t)d[4] * d[1] * d[5] * d[5];
        l.out_n = (int64_t)d[0] * d[4] * p * p;
        l.in[0] = rand_f(l.in_n[0], 1);
        l.in[1] = rand_f(l.in_n[1], 1);
        l.forward = conv_forward;
        l.backward = conv_backward;
        gradcheck(&l, NULL);
        free_inputs(&l);
    }
}

/* ---- batchnorm (training): dims = n, c, h, w ---- */

static void bn_run_forward(layer *l, pt_buffer *y, pt_buffer *sm, pt_buffer *si)
{
    const int *d = l->dims;
    float rm[64] = {0}, rv[64];
    for (int i = 0; i < 64; i++) rv[i] = 1;
    pt_op op = mk(PT_OP_BN_FWD_TRAIN, 8);
    op.t[0] = T4(dev_f(l->in[0], l->in_n[0]), d[0], d[1], d[2], d[3]);
    op.t[1] = T1(dev_f(l->in[1], d[1]), d[1]);
    op.t[2] = T1(dev_f(l->in[2], d[1]), d[1]);
    op.t[3] = T4(y, d[0], d[1], d[2], d[3]);
    op.t[4] = T1(dev_f(rm, d[1]), d[1]);
    op.t[5] = T1(dev_f(rv, d[1]), d[1]);
    op.t[6] = T1(sm, d[1]);
    op.t[7] = T1(si, d[1]);
    op.p.bn.eps = 1e-5f;
    op.p.bn.momentum = 0.1f;
    exec(&op);
}

static void bn_forward(layer *l, float *out)
{
    pt_buffer *y = dev_f(NULL, l->out_n);
    bn_run_forward(l, y, dev_f(NULL, l->dims[1]), dev_f(NULL, l->dims[1]));
    get(out, y, l->out_n);
    dev_release();
}

static void bn_backward(layer *l, const float *r, float **g)
{
    const int *d = l->dims;
    pt_buffer *y = dev_f(NULL, l->out_n), *sm = dev_f(NULL, d[1]), *si = dev_f(NULL, d[1]);
    bn_run_forward(l, y, sm, si);
    pt_buffer *dx = dev_f(NULL, l->in_n[0]), *dg = dev_f(NULL, d[1]), *db = dev_f(NULL, d[1]);
    pt_op op = mk(PT_OP_BN_BWD, 8);
    op.t[0] = T4(dev_f(l->in[0], l->in_n[0]), d[0], d[1], d[2], d[3]);
    op.t[1] = T4(dev_f(r, l->out_n), d[0], d[1], d[2], d[3]);
    op.t[2] = T1(dev_f(l->in[1], d[1]), d[1]);
    op.t[3] = T1(sm, d[1]);
    op.t[4] = T1(si, d[1]);
    op.t[5] = T4(dx, d[0], d[1], d[2], d[3]);
    op.t[6] = T1(dg, d[1]);
    op.t[7] = T1(db, d[1]);
    exec(&op);
    get(g[0], dx, l->in_n[0]);
    get(g[1], dg, d[1]);
    get(g[2], db, d[1]);
    dev_release();
}

static void batchnorm_train_gradients_match_finite_differences(void)
{
    int cases[][4] = {{4, 3, 3, 3}, {8, 2, 1, 1}};
    for (int ci = 0; ci < 2; ci++) {
        layer l = {.name = "batchnorm", .nin = 3, .check = {1, 1, 1}, .h = 5e-3};
        memcpy(l.dims, cases[ci], sizeof cases[ci]);
        l.in_n[0] = l.out_n = (int64_t)l.dims[0] * l.dims[1] * l.dims[2] * l.dims[3];
        l.in_n[1] = l.in_n[2] = l.dims[1];
        l.in[0] = rand_f(l.in_n[0], 2);
        l.in[1] = rand_f(l.dims[1], 1);
        l.in[2] = rand_f(l.dims[1], 1);
        l.forward = bn_forward;
        l.backward = bn_backward;
        gradcheck(&l, NULL);
        free_inputs(&l);
    }
}

/* ---- relu ---- */

static void relu_forward(layer *l, float *out)
{
    pt_buffer *y = dev_f(NULL, l->out_n);
    pt_op op = mk(PT_OP_RELU_FWD, 2);
    op.t[0] = T1(dev_f(l->in[0], l->in_n[0]), l->in_n[0]);
    op.t[1] = T1(y, l->out_n);
    exec(&op);
    get(out, y, l->out_n);
    dev_release();
}

static void relu_backward(layer *l, const float *r, float **g)
{
    int64_t n = l->out_n;
    pt_buffer *y = dev_f(NULL, n), *dx = dev_f(NULL, n);
    pt_op op = mk(PT_OP_RELU_FWD, 2);
    op.t[0] = T1(dev_f(l->in[0], n), n);
    op.t[1] = T1(y, n);
    exec(&op);
    op = mk(PT_OP_RELU_BWD, 3);
    op.t[0] = T1(y, n), op.t[1] = T1(dev_f(r, n), n), op.t[2] = T1(dx, n);
    exec(&op);
    get(g[0], dx, n);
    dev_release();
}

static void relu_gradient_matches_finite_differences(void)
{
    layer l = {.name = "relu", .nin = 1, .check = {1}, .h = 1e-2};
    l.in_n[0] = l.out_n = 60;
    l.in[0] = rand_f(60, 1);
    for (int i = 0; i < 60; i++) /* keep every input away from the kink at 0 */
        if (fabsf(l.in[0][i]) < 0.05f) l.in[0][i] = l.in[0][i] < 0 ? -0.1f : 0.1f;
    l.forward = relu_forward;
    l.backward = relu_backward;
    gradcheck(&l, NULL);
    free_inputs(&l);
}

/* ---- maxpool: dims = n, c, h, w, k, stride, pad ---- */

static int pool_p(const layer *l)
{
    return (l->dims[2] + 2 * l->dims[6] - l->dims[4]) / l->dims[5] + 1;
}

static void maxpool_run(layer *l, pt_buffer *y, pt_buffer *arg)
{
    const int *d = l->dims;
    int p = pool_p(l);
    pt_op op = mk(PT_OP_MAXPOOL_FWD, 3);
    op.t[0] = T4(dev_f(l->in[0], l->in_n[0]), d[0], d[1], d[2], d[3]);
    op.t[1] = T4(y, d[0], d[1], p, p);
    op.t[2] = T4(arg, d[0], d[1], p, p);
    op.t[2].dtype = PT_I32;
    op.p.pool.k = d[4], op.p.pool.stride = d[5], op.p.pool.pad = d[6];
    exec(&op);
}

static void maxpool_forward(layer *l, float *out)
{
    pt_buffer *y = dev_f(NULL, l->out_n);
    maxpool_run(l, y, dev_f(NULL, l->out_n));
    get(out, y, l->out_n);
    dev_release();
}

static void maxpool_backward(layer *l, const float *r, float **g)
{
    const int *d = l->dims;
    int p = pool_p(l);
    pt_buffer *y = dev_f(NULL, l->out_n), *arg = dev_f(NULL, l->out_n), *dx = dev_f(NULL, l->in_n[0]);
    maxpool_run(l, y, arg);
    pt_op op = mk(PT_OP_MAXPOOL_BWD, 3);
    op.t[0] = T4(dev_f(r, l->out_n), d[0], d[1], p, p);
    op.t[1] = T4(arg, d[0], d[1], p, p);
    op.t[1].dtype = PT_I32;
    op.t[2] = T4(dx, d[0], d[1], d[2], d[3]);
    op.p.pool.k = d[4], op.p.pool.stride = d[5], op.p.pool.pad = d[6];
    exec(&op);
    get(g[0], dx, l->in_n[0]);
    dev_release();
}

static void maxpool_gradient_matches_finite_differences(void)
{
    int cases[][7] = {{2, 2, 6, 6, 2, 2, 0}, {1, 2, 7, 7, 3, 2, 1}};
    for (int ci = 0; ci < 2; ci++) {
        layer l = {.name = "maxpool", .nin = 1, .check = {1}, .h = 1e-2};
        memcpy(l.dims, cases[ci], sizeof cases[ci]);
        int p = pool_p(&l);
        l.in_n[0] = (int64_t)l.dims[0] * l.dims[1] * l.dims[2] * l.dims[3];
        l.out_n = (int64_t)l.dims[0] * l.dims[1] * p * p;
        /* distinct values 0.1 apart in shuffled order: no tie within reach of the step */
        l.in[0] = malloc((size_t)l.in_n[0] * 4);
        for (int64_t i = 0; i < l.in_n[0]; i++) l.in[0][i] = 0.1f * (float)i;
        for (int64_t i = l.in_n[0] - 1; i > 0; i--) {
            int64_t j = (int64_t)((urand() + 1) * 0.5 * (double)(i + 1)) % (i + 1);
            float t = l.in[0][i];
            l.in[0][i] = l.in[0][j];
            l.in[0][j] = t;
        }
        l.forward = maxpool_forward;
        l.backward = maxpool_backward;
        gradcheck(&l, NULL);
        free_inputs(&l);
    }
}

/* ---- global average pool: dims = n, c, h, w ---- */

static void gap_forward(layer *l, float *out)
{
    const int *d = l->dims;
    pt_buffer *y = dev_f(NULL, l->out_n);
    pt_op op = mk(PT_OP_GAP_FWD, 2);
    op.t[0] = T4(dev_f(l->in[0], l->in_n[0]), d[0], d[1], d[2], d[3]);
    op.t[1] = pt_tensor_2d(y, 0, d[0], d[1]);
    exec(&op);
    get(out, y, l->out_n);
    dev_release();
}

static void gap_backward(layer *l, const float *r, float **g)
{
    const int *d = l->dims;
    pt_buffer *dx = dev_f(NULL, l->in_n[0]);
    pt_op op = mk(PT_OP_GAP_BWD, 2);
    op.t[0] = pt_tensor_2d(dev_f(r, l->out_n), 0, d[0], d[1]);
    op.t[1] = T4(dx, d[0], d[1], d[2], d[3]);
    exec(&op);
    get(g[0], dx, l->in_n[0]);
    dev_release();
}

static void global_avg_pool_gradient_matches_finite_differences(void)
{
    layer l = {.name = "global_avg_pool", .nin = 1, .check = {1}, .h = 1e-2, .dims = {2, 3, 3, 4}};
    l.in_n[0] = 2 * 3 * 3 * 4;
    l.out_n = 6;
    l.in[0] = rand_f(l.in_n[0], 1);
    l.forward = gap_forward;
    l.backward = gap_backward;
    gradcheck(&l, NULL);
    free_inputs(&l);
}

/* ---- linear = gemm + bias_add: dims = batch, in, out ---- */

static void linear_forward(layer *l, float *out)
{
    const int n = l->dims[0], in = l->dims[1], o = l->dims[2];
    pt_buffer *y = dev_f(NULL, l->out_n), *b = dev_f(l->in[2], o);
    pt_op op = mk(PT_OP_GEMM, 3);
    op.t[0] = pt_tensor_2d(dev_f(l->in[0], l->in_n[0]), 0, n, in);
    op.t[1] = pt_tensor_2d(dev_f(l->in[1], l->in_n[1]), 0, o, in);
    op.t[2] = pt_tensor_2d(y, 0, n, o);
    op.p.gemm.trans_b = 1;
    op.p.gemm.alpha = 1;
    exec(&op);
    op = mk(PT_OP_BIAS_ADD, 2);
    op.t[0] = pt_tensor_2d(y, 0, n, o);
    op.t[1] = T1(b, o);
    exec(&op);
    get(out, y, l->out_n);
    dev_release();
}

static void linear_backward(layer *l, const float *r, float **g)
{
    const int n = l->dims[0], in = l->dims[1], o = l->dims[2];
    pt_buffer *x = dev_f(l->in[0], l->in_n[0]), *w = dev_f(l->in[1], l->in_n[1]), *dy = dev_f(r, l->out_n);
    pt_buffer *dx = dev_f(NULL, l->in_n[0]), *dw = dev_f(NULL, l->in_n[1]), *db = dev_f(NULL, o);
    pt_op op = mk(PT_OP_GEMM, 3); /* dx = dy W */
    op.t[0] = pt_tensor_2d(dy, 0, n, o), op.t[1] = pt_tensor_2d(w, 0, o, in), op.t[2] = pt_tensor_2d(dx, 0, n, in);
    op.p.gemm.alpha = 1;
    exec(&op);
    op = mk(PT_OP_GEMM, 3); /* dW = dy^T x */
    op.t[0] = pt_tensor_2d(dy, 0, n, o), op.t[1] = pt_tensor_2d(x, 0, n, in), op.t[2] = pt_tensor_2d(dw, 0, o, in);
    op.p.gemm.trans_a = 1;
    op.p.gemm.alpha = 1;
    exec(&op);
    op = mk(PT_OP_BIAS_GRAD, 2);
    op.t[0] = pt_tensor_2d(dy, 0, n, o), op.t[1] = T1(db, o);
    exec(&op);
    get(g[0], dx, l->in_n[0]);
    get(g[1], dw, l->in_n[1]);
    get(g[2], db, o);
    dev_release();
}

static void linear_gradients_match_finite_differences(void)
{
    layer l = {.name = "linear", .nin = 3, .check = {1, 1, 1}, .h = 1e-2, .dims = {3, 7, 5}};
    l.in_n[0] = 21, l.in_n[1] = 35, l.in_n[2] = 5;
    l.out_n = 15;
    for (int i = 0; i < 3; i++) l.in[i] = rand_f(l.in_n[i], 1);
    l.forward = linear_forward;
    l.backward = linear_backward;
    gradcheck(&l, NULL);
    free_inputs(&l);
}

/* ---- dropout with a fixed mask (same seed/stream/sample on every call) ---- */

static void dropout_run(layer *l, pt_buffer *y, pt_buffer *mask)
{
    pt_op op = mk(PT_OP_DROPOUT_FWD, 3);
    op.t[0] = T4(dev_f(l->in[0], l->in_n[0]), 4, 10, 1, 1);
    op.t[1] = T4(y, 4, 10, 1, 1);
    op.t[2] = T4(mask, 4, 10, 1, 1);
    op.p.dropout.p = 0.3f;
    op.p.dropout.seed = 5;
    op.p.dropout.stream = 11;
    exec(&op);
}

static void dropout_forward(layer *l, float *out)
{
    pt_buffer *y = dev_f(NULL, 40);
    dropout_run(l, y, dev_f(NULL, 40));
    get(out, y, 40);
    dev_release();
}

static void dropout_backward(layer *l, const float *r, float **g)
{
    pt_buffer *y = dev_f(NULL, 40), *mask = dev_f(NULL, 40), *dx = dev_f(NULL, 40);
    dropout_run(l, y, mask);
    pt_op op = mk(PT_OP_DROPOUT_BWD, 3);
    op.t[0] = T1(dev_f(r, 40), 40), op.t[1] = T1(mask, 40), op.t[2] = T1(dx, 40);
    exec(&op);
    get(g[0], dx, 40);
    dev_release();
}

static void dropout_gradient_matches_finite_differences(void)
{
    layer l = {.name = "dropout", .nin = 1, .check = {1}, .h = 1e-2};
    l.in_n[0] = l.out_n = 40;
    l.in[0] = rand_f(40, 1);
    l.forward = dropout_forward;
    l.backward = dropout_backward;
    gradcheck(&l, NULL);
    free_inputs(&l);
}

/* ---- add: the gradient reaching each operand is dy itself ---- */

static void add_forward(layer *l, float *out)
{
    int64_t n = l->out_n;
    pt_buffer *y = dev_f(NULL, n);
    pt_op op = mk(PT_OP_ADD, 3);
    op.t[0] = T1(dev_f(l->in[0], n), n), op.t[1] = T1(dev_f(l->in[1], n), n), op.t[2] = T1(y, n);
    exec(&op);
    get(out, y, n);
    dev_release();
}

static void add_backward(layer *l, const float *r, float **g)
{
    /* the residual block passes dy to both branches with axpy(alpha 1) */
    int64_t n = l->out_n;
    for (int i = 0; i < 2; i++) {
        pt_buffer *d = dev_f(NULL, n);
        pt_op op = mk(PT_OP_AXPY, 2);
        op.t[0] = T1(dev_f(r, n), n), op.t[1] = T1(d, n);
        op.p.axpy.alpha = 1;
        exec(&op);
        get(g[i], d, n);
        dev_release();
    }
}

static void add_gradients_match_finite_differences(void)
{
    layer l = {.name = "add", .nin = 2, .check = {1, 1}, .h = 1e-2};
    l.in_n[0] = l.in_n[1] = l.out_n = 30;
    l.in[0] = rand_f(30, 1);
    l.in[1] = rand_f(30, 1);
    l.forward = add_forward;
    l.backward = add_backward;
    gradcheck(&l, NULL);
    free_inputs(&l);
}

/* ---- softmax cross-entropy with label smoothing: L = grad_scale * sum(loss) ---- */

static const int32_t xent_labels[4] = {2, 0, 4, 4};

static void xent_run(layer *l, pt_buffer *loss, pt_buffer *dl)
{
    const int n = l->dims[0], k = l->dims[1];
    pt_op op = mk(PT_OP_XENT, 4);
    op.t[0] = pt_tensor_2d(dev_f(l->in[0], l->in_n[0]), 0, n, k);
    op.t[1] = pt_tensor_1d(dev_buf(xent_labels, sizeof xent_labels), 0, PT_I32, n);
    op.t[2] = T1(loss, n);
    if (dl) op.t[3] = pt_tensor_2d(dl, 0, n, k);
    op.p.xent.smoothing = l->dims[2] / 100.0f;
    op.p.xent.grad_scale = 0.25f;
    exec(&op);
}

static void xent_forward(layer *l, float *out)
{
    pt_buffer *loss = dev_f(NULL, l->dims[0]);
    xent_run(l, loss, NULL);
    get(out, loss, l->dims[0]);
    dev_release();
}

static void xent_backward(layer *l, const float *r, float **g)
{
    (void)r; /* r is fixed to grad_scale: the op has one scalar scale */
    pt_buffer *loss = dev_f(NULL, l->dims[0]), *dl = dev_f(NULL, l->in_n[0]);
    xent_run(l, loss, dl);
    get(g[0], dl, l->in_n[0]);
    dev_release();
}

static void softmax_xent_gradient_matches_finite_differences(void)
{
    for (int smooth = 0; smooth <= 10; smooth += 10) {
        layer l = {.name = smooth ? "xent (smoothing 0.1)" : "xent", .nin = 1, .check = {1}, .h = 1e-2,
                   .dims = {4, 5, smooth}};
        l.in_n[0] = 20;
        l.out_n = 4;
        l.in[0] = rand_f(20, 2);
        l.forward = xent_forward;
        l.backward = xent_backward;
        float r[4] = {0.25f, 0.25f, 0.25f, 0.25f};
        gradcheck(&l, r);
        free_inputs(&l);
    }
}

/* A gradient that is wrong must be caught: the check itself is checked. */
static void a_wrong_gradient_is_detected(void)
{
    float g[3] = {1.0f, 2.0f, 3.1f};
    double num[3] = {1.0, 2.0, 3.0};
    CHECK(pt_t_rel_err_f32_f64(g, num, 3) > 1e-2);
}

/* ---- every activation kind of the op table (sigmoid, ...): its forward and its gradient
 * kind as the activation layer emits them, dims[0] the forward kind ---- */

static void act_run(layer *l, pt_buffer *x, pt_buffer *y)
{
    pt_op op = mk((pt_op_kind)l->dims[0], 2);
    op.t[0] = T1(x, l->in_n[0]);
    op.t[1] = T1(y, l->out_n);
    exec(&op);
}

static void act_forward(layer *l, float *out)
{
    pt_buffer *y = dev_f(NULL, l->out_n);
    act_run(l, dev_f(l->in[0], l->in_n[0]), y);
    get(out, y, l->out_n);
    dev_release();
}

static void act_backward(layer *l, const float *r, float **g)
{
    const pt_op_desc *d = pt_op_describe((pt_op_kind)l->dims[0]);
    pt_buffer *x = dev_f(l->in[0], l->in_n[0]), *y = dev_f(NULL, l->out_n), *dx = dev_f(NULL, l->in_n[0]);
    act_run(l, x, y);
    pt_op op = mk(d->grad_kind, 3);
    op.t[0] = T1(d->grad_reads_output ? y : x, l->out_n);
    op.t[1] = T1(dev_f(r, l->out_n), l->out_n);
    op.t[2] = T1(dx, l->in_n[0]);
    exec(&op);
    get(g[0], dx, l->in_n[0]);
    dev_release();
}

static void every_activation_gradient_matches_finite_differences(void)
{
    int checked = 0;
    for (int k = 0; k < PT_OP_KIND_COUNT; k++) {
        if (!pt_op_is_activation((pt_op_kind)k)) continue;
        layer l = {.name = pt_op_name((pt_op_kind)k), .nin = 1, .check = {1}, .h = 1e-2, .dims = {k}};
        l.in_n[0] = l.out_n = 40;
        l.in[0] = rand_f(40, 4); /* both tails and the middle, never within 2h of a ReLU's kink */
        for (int i = 0; i < 40; i++) l.in[0][i] = copysignf(0.05f + fabsf(l.in[0][i]), l.in[0][i]);
        l.forward = act_forward;
        l.backward = act_backward;
        gradcheck(&l, NULL);
        free_inputs(&l);
        checked++;
    }
    CHECKF(checked >= 2, "%d activation kinds", checked);
}

/* ---- the model zoo's ops: broadcast multiply, global max pool, channel pool ---- */

/* dims = n, c, h, w, per_pixel */
static pt_tensor bcast_factor(const layer *l, pt_buffer *b)
{
    const int *d = l->dims;
    return d[4] ? T4(b, d[0], 1, d[2], d[3]) : pt_tensor_2d(b, 0, d[0], d[1]);
}

static void bcast_mul_forward(layer *l, float *out)
{
    const int *d = l->dims;
    pt_buffer *y = dev_f(NULL, l->out_n);
    pt_op op = mk(PT_OP_BCAST_MUL, 3);
    op.t[0] = T4(dev_f(l->in[0], l->in_n[0]), d[0], d[1], d[2], d[3]);
    op.t[1] = bcast_factor(l, dev_f(l->in[1], l->in_n[1]));
    op.t[2] = T4(y, d[0], d[1], d[2], d[3]);
    exec(&op);
    get(out, y, l->out_n);
    dev_release();
}

static void bcast_mul_backward(layer *l, const float *r, float **g)
{
    const int *d = l->dims;
    pt_buffer *dy = dev_f(r, l->out_n), *dx = dev_f(NULL, l->in_n[0]), *ds = dev_f(NULL, l->in_n[1]);
    pt_op op = mk(PT_OP_BCAST_MUL, 3); /* dx = dy * s */
    op.t[0] = T4(dy, d[0], d[1], d[2], d[3]);
    op.t[1] = bcast_factor(l, dev_f(l->in[1], l->in_n[1]));
    op.t[2] = T4(dx, d[0], d[1], d[2], d[3]);
    exec(&op);
    pt_op gs = mk(PT_OP_BCAST_MUL_GRAD, 3);
    gs.t[0] = T4(dev_f(l->in[0], l->in_n[0]), d[0], d[1], d[2], d[3]);
    gs.t[1] = T4(dy, d[0], d[1], d[2], d[3]);
    gs.t[2] = bcast_factor(l, ds);
    exec(&gs);
    get(g[0], dx, l->in_n[0]);
    get(g[1], ds, l->in_n[1]);
    dev_release();
}

static void bcast_mul_gradients_match_finite_differences(void)
{
    for (int pix = 0; pix < 2; pix++) {
        layer l = {.name = pix ? "bcast_mul per pixel" : "bcast_mul per channel", .nin = 2, .check = {1, 1},
                   .h = 1e-2, .dims = {2, 3, 4, 5, pix}};
        l.in_n[0] = l.out_n = 2 * 3 * 4 * 5;
        l.in_n[1] = pix ? 2 * 4 * 5 : 2 * 3;
        l.in[0] = rand_f(l.in_n[0], 1);
        l.in[1] = rand_f(l.in_n[1], 1);
        l.forward = bcast_mul_forward;
        l.backward = bcast_mul_backward;
        gradcheck(&l, NULL);
        free_inputs(&l);
    }
}

/* Values at least 2/n apart (a permutation of a grid), so a finite-difference step never
 * changes which element is the maximum. */
static float *spaced_f(int64_t n)
{
    float *p = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = (float)((double)((i * 37 + 11) % n) / (double)n * 2.0 - 1.0);
    return p;
}

/* dims = n, c, h, w, channel_pool (else global max pool) */
static void maxlike_run(layer *l, pt_buffer *y, pt_buffer *arg)
{
    const int *d = l->dims;
    pt_op op = mk(d[4] ? PT_OP_CHANNEL_POOL_FWD : PT_OP_GMP_FWD, 3);
    op.t[0] = T4(dev_f(l->in[0], l->in_n[0]), d[0], d[1], d[2], d[3]);
    if (d[4]) {
        op.t[1] = T4(y, d[0], 2, d[2], d[3]);
        op.t[2] = pt_tensor_make(arg, 0, PT_I32, 4, (int64_t[4]){d[0], 1, d[2], d[3]});
    } else {
        op.t[1] = pt_tensor_2d(y, 0, d[0], d[1]);
        op.t[2] = pt_tensor_make(arg, 0, PT_I32, 2, (int64_t[4]){d[0], d[1], 1, 1});
    }
    exec(&op);
}

static void maxlike_forward(layer *l, float *out)
{
    pt_buffer *y = dev_f(NULL, l->out_n), *arg = dev_f(NULL, l->out_n);
    maxlike_run(l, y, arg);
    get(out, y, l->out_n);
    dev_release();
}

static void maxlike_backward(layer *l, const float *r, float **g)
{
    const int *d = l->dims;
    pt_buffer *y = dev_f(NULL, l->out_n), *arg = dev_f(NULL, l->out_n), *dx = dev_f(NULL, l->in_n[0]);
    maxlike_run(l, y, arg);
    pt_op op = mk(d[4] ? PT_OP_CHANNEL_POOL_BWD : PT_OP_GMP_BWD, 3);
    if (d[4]) {
        op.t[0] = T4(dev_f(r, l->out_n), d[0], 2, d[2], d[3]);
        op.t[1] = pt_tensor_make(arg, 0, PT_I32, 4, (int64_t[4]){d[0], 1, d[2], d[3]});
    } else {
        op.t[0] = pt_tensor_2d(dev_f(r, l->out_n), 0, d[0], d[1]);
        op.t[1] = pt_tensor_make(arg, 0, PT_I32, 2, (int64_t[4]){d[0], d[1], 1, 1});
    }
    op.t[2] = T4(dx, d[0], d[1], d[2], d[3]);
    op.p.pool.k = d[4], op.p.pool.stride = d[5], op.p.pool.pad = d[6];
    exec(&op);
    get(g[0], dx, l->in_n[0]);
    dev_release();
}

static void global_max_and_channel_pool_gradients_match_finite_differences(void)
{
    for (int cp = 0; cp < 2; cp++) {
        layer l = {.name = cp ? "channel_pool" : "global_max_pool", .nin = 1, .check = {1}, .h = 2e-3,
                   .dims = {2, 5, 3, 4, cp}};
        l.in_n[0] = 2 * 5 * 3 * 4;
        l.out_n = cp ? 2 * 2 * 3 * 4 : 2 * 5;
        l.in[0] = spaced_f(l.in_n[0]);
        l.forward = maxlike_forward;
        l.backward = maxlike_backward;
        gradcheck(&l, NULL);
        free_inputs(&l);
    }
}

int main(void)
{
    pt_error e;
    pt_device_options opt = {.threads = 2};
    if (pt_device_open("cpu", 0, &opt, &g_dev, &e) != PT_OK) {
        fprintf(stderr, "cannot open the cpu device: %s\n", e.msg);
        printf("0 passed, 1 failed\n");
        return 1;
    }
    RUN(conv2d_gradients_match_finite_differences);
    RUN(batchnorm_train_gradients_match_finite_differences);
    RUN(relu_gradient_matches_finite_differences);
    RUN(maxpool_gradient_matches_finite_differences);
    RUN(global_avg_pool_gradient_matches_finite_differences);
    RUN(linear_gradients_match_finite_differences);
    RUN(dropout_gradient_matches_finite_differences);
    RUN(add_gradients_match_finite_differences);
    RUN(softmax_xent_gradient_matches_finite_differences);
    RUN(every_activation_gradient_matches_finite_differences);
    RUN(bcast_mul_gradients_match_finite_differences);
    RUN(global_max_and_channel_pool_gradients_match_finite_differences);
    RUN(a_wrong_gradient_is_detected);
    pt_device_close(g_dev);
    TEST_EXIT();
}
