/* The shared kernels of backends/kernels compiled as C (tests/kernel_host_dialect.h) against
 * the cpu backend, so that the kernels a GPU backend runs are checked on machines with
 * neither GPU nor OpenCL driver: the mixup/cutmix loss kernel (ops_mixup.cl) and, as a check
 * of the harness itself, ops.cl's pt_xent; the model zoo's kernels (ops_zoo.cl) and
 * pt_rmsprop, called with the argument lists of the cuda and opencl launchers
 * (backends/cuda/cudam_zoo.c, cudam_ops.c; backends/opencl/ocl_zoo.c, ocl_ops.c). Fresh
 * random inputs; outputs poisoned with NaN; normalised error against the cpu op (NaN never
 * passes); argmax outputs exactly equal; a label outside 0..K-1 gives NaN where the cpu
 * backend gives an error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernel_host_dialect.h"
/* the kernel files, in the order the backends compile them */
#include "backends/kernels/philox.h"
#include "backends/kernels/ops.cl"
#include "backends/kernels/ops_mixup.cl"
#include "backends/kernels/ops_zoo.cl"

#include "core/backend.h"
#include "core/rng.h"
#include "pt_test.h"

static uint64_t g_seed;

/* ||a - b|| / max(||b||, floor): the floor keeps values whose float rounding is absolute
 * (a log-sum-exp of logits of magnitude ~5 near zero) from reading as large relative errors. */
static double rel_err_floor(const float *a, const float *b, int n, double floor)
{
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    den = sqrt(den) > floor ? sqrt(den) : floor;
    return sqrt(num) / (den > 1e-15 ? den : 1e-15);
}

/* The cpu backend's loss and gradient for (n, k) with optional mixup targets. */
static pt_status cpu_xent(pt_device *dev, const float *z, const int32_t *l1, const int32_t *l2, const float *lam,
                          int n, int k, float sm, float gs, float *loss, float *dl, pt_error *err)
{
    const size_t zb = (size_t)n * k * 4, nb = (size_t)n * 4;
    const size_t off_l1 = zb, off_l2 = zb + nb, off_lam = zb + 2 * nb, off_loss = zb + 3 * nb, off_dl = zb + 4 * nb;
    pt_buffer *b = NULL;
    PT_TRY(pt_device_alloc(dev, 2 * zb + 4 * nb, &b, err));
    pt_status st = pt_device_write(dev, (pt_mem){b, 0}, z, zb, err);
    if (st == PT_OK) st = pt_device_write(dev, (pt_mem){b, off_l1}, l1, nb, err);
    if (st == PT_OK && l2) st = pt_device_write(dev, (pt_mem){b, off_l2}, l2, nb, err);
    if (st == PT_OK && lam) st = pt_device_write(dev, (pt_mem){b, off_lam}, lam, nb, err);
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = PT_OP_XENT;
    op.nt = l2 ? 6 : 4;
    op.t[0] = pt_tensor_2d(b, 0, n, k);
    op.t[1] = pt_tensor_1d(b, off_l1, PT_I32, n);
    op.t[2] = pt_tensor_1d(b, off_loss, PT_F32, n);
    op.t[3] = pt_tensor_2d(b, off_dl, n, k);
    if (l2) {
        op.t[4] = pt_tensor_1d(b, off_l2, PT_I32, n);
        op.t[5] = pt_tensor_1d(b, off_lam, PT_F32, n);
    }
    op.p.xent.smoothing = sm;
    op.p.xent.grad_scale = gs;
    if (st == PT_OK) st = pt_device_run(dev, &op, err);
    if (st == PT_OK) st = pt_device_read(dev, loss, (pt_mem){b, off_loss}, nb, err);
    if (st == PT_OK) st = pt_device_read(dev, dl, (pt_mem){b, off_dl}, zb, err);
    pt_device_free(dev, b);
    return st;
}

static void fill(float *z, int32_t *l1, int32_t *l2, float *lam, int n, int k, uint64_t stream)
{
    for (int i = 0; i < n * k; i++) z[i] = 10.0f * pt_rng_uniform(g_seed, 0, stream, 0, (uint32_t)i) - 5.0f;
    for (int i = 0; i < n; i++) {
        l1[i] = (int32_t)(pt_rng_uniform(g_seed, 0, stream, 1, (uint32_t)i) * (float)k) % k;
        l2[i] = (int32_t)(pt_rng_uniform(g_seed, 0, stream, 2, (uint32_t)i) * (float)k) % k;
        lam[i] = pt_rng_uniform(g_seed, 0, stream, 3, (uint32_t)i);
    }
}

static void mixup_loss_kernel_matches_cpu(void)
{
    pt_device *cpu = NULL;
    pt_error err;
    if (pt_device_open("cpu", 0, NULL, &cpu, &err) != PT_OK) {
        CHECKF(0, "%s", err.msg);
        return;
    }
    static const int shapes[][2] = {{1, 3}, {4, 10}, {64, 10}, {5, 200}, {33, 7}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int smooth = 0; smooth < 2; smooth++)
            for (int mixed = 0; mixed < 2; mixed++) {
                const int n = shapes[s][0], k = shapes[s][1];
                const float sm = smooth ? 0.1f : 0.0f, gs = 1.0f / (float)n;
                float *z = malloc((size_t)n * k * 4), *dl = malloc((size_t)n * k * 4),
                      *rdl = malloc((size_t)n * k * 4), *lam = malloc((size_t)n * 4), *loss = malloc((size_t)n * 4),
                      *rloss = malloc((size_t)n * 4);
                int32_t *l1 = malloc((size_t)n * 4), *l2 = malloc((size_t)n * 4);
                fill(z, l1, l2, lam, n, k, s * 4 + (size_t)smooth * 2 + (size_t)mixed);
                for (int i = 0; i < n; i++) loss[i] = NAN;
                for (int i = 0; i < n * k; i++) dl[i] = NAN;
                pt_status st = cpu_xent(cpu, z, l1, mixed ? l2 : NULL, mixed ? lam : NULL, n, k, sm, gs, rloss, rdl,
                                        &err);
                CHECKF(st == PT_OK, "%s", err.msg);
                if (mixed)
                    PT_HOST_LAUNCH(n, pt_xent_mix(z, 0, l1, 0, l2, 0, lam, 0, loss, 0, dl, 0, n, k, 1, sm, gs));
                else
                    PT_HOST_LAUNCH(n, pt_xent(z, 0, l1, 0, loss, 0, dl, 0, n, k, 1, sm, gs));
                /* a confident sample's loss and gradient are near 0 and carry the absolute
                 * rounding of its logits: per sample, loss below 1 and gradient below
                 * grad_scale are measured against 1 and grad_scale */
                const double el = rel_err_floor(loss, rloss, n, sqrt((double)n)),
                             eg = rel_err_floor(dl, rdl, n * k, (double)gs * sqrt((double)n));
                CHECKF(el < 1e-5 && eg < 1e-5, "%s n=%d k=%d smoothing=%g: loss error %.3g, gradient error %.3g",
                       mixed ? "pt_xent_mix" : "pt_xent", n, k, sm, el, eg);
                if (mixed) {
                    /* lam = 1 is the plain loss with the first labels */
                    for (int i = 0; i < n; i++) lam[i] = 1.0f;
                    float *l1loss = malloc((size_t)n * 4);
                    PT_HOST_LAUNCH(n, pt_xent_mix(z, 0, l1, 0, l2, 0, lam, 0, loss, 0, dl, 0, n, k, 0, sm, gs));
                    PT_HOST_LAUNCH(n, pt_xent(z, 0, l1, 0, l1loss, 0, dl, 0, n, k, 0, sm, gs));
                    CHECKF(memcmp(loss, l1loss, (size_t)n * 4) == 0, "lam=1 differs from the plain loss (n=%d k=%d)",
                           n, k);
                    free(l1loss);
                    /* a second label out of range: NaN for that sample only */
                    l2[0] = k;
                    for (int i = 0; i < n * k; i++) dl[i] = 0.0f;
                    PT_HOST_LAUNCH(n, pt_xent_mix(z, 0, l1, 0, l2, 0, lam, 0, loss, 0, dl, 0, n, k, 1, sm, gs));
                    int nan_row = 1;
                    for (int j = 0; j < k; j++) nan_row &= isnan(dl[j]);
                    CHECKF(isnan(loss[0]) && nan_row && (n == 1 || !isnan(loss[1])), "bad label not flagged");
                }
                free(z), free(dl), free(rdl), free(lam), free(loss), free(rloss), free(l1), free(l2);
            }
    pt_device_close(cpu);
}

/* ---- the model zoo's kernels and pt_rmsprop ---- */

/* An op's operands as host arrays: each kernel-side array has PAD elements in front, passed
 * as the kernel's element offset, so the offset arithmetic is exercised too. */
#define PAD 3
#define MAXT 5
typedef struct host_case {
    pt_op op;            /* kind, nt, shapes, parameters (memory set by cpu_run) */
    void *ref[MAXT];     /* the cpu backend's operands, in and out */
    void *ker[MAXT];     /* the kernel's: PAD elements, then the operand */
    int64_t len[MAXT];   /* elements */
    double floor[MAXT];  /* least norm an operand's error is normalised by (rel_err_floor) */
} host_case;

static float frand(uint64_t stream, uint32_t i, float lo, float hi)
{
    return lo + (hi - lo) * pt_rng_uniform(g_seed, 0, stream, 7, i);
}

static int64_t numel_of(const pt_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->dim[i];
    return n;
}

static void set_shape(pt_tensor *t, pt_dtype dt, int ndim, int64_t a, int64_t b, int64_t c, int64_t d)
{
    memset(t, 0, sizeof *t);
    t->dtype = dt;
    t->ndim = ndim;
    const int64_t dims[4] = {a, b, c, d};
    for (int i = 0; i < ndim; i++) t->dim[i] = dims[i];
}

/* Allocates both copies of every operand (one spare element each), zeroed; the caller fills
 * ref[] and copies it to ker[] with hc_mirror. */
static void hc_alloc(host_case *h)
{
    for (int i = 0; i < h->op.nt; i++) {
        h->len[i] = numel_of(&h->op.t[i]);
        h->ref[i] = calloc((size_t)h->len[i] + 1, 4);
        h->ker[i] = calloc((size_t)(h->len[i] + PAD) + 1, 4);
    }
}

static void hc_mirror(host_case *h)
{
    for (int i = 0; i < h->op.nt; i++) {
        memset(h->ker[i], 0x7f, PAD * 4); /* the pad holds garbage the kernel must not use */
        memcpy((char *)h->ker[i] + PAD * 4, h->ref[i], (size_t)h->len[i] * 4);
    }
}

static void hc_free(host_case *h)
{
    for (int i = 0; i < h->op.nt; i++) free(h->ref[i]), free(h->ker[i]);
}

#define KF(h, i) ((float *)(h)->ker[i])
#define KI(h, i) ((int32_t *)(h)->ker[i])

/* Runs h->op on the cpu backend over ref[] (every operand written, run, every operand read). */
static pt_status cpu_run(pt_device *dev, host_case *h, pt_error *err)
{
    size_t off[MAXT], total = 0;
    for (int i = 0; i < h->op.nt; i++) {
        off[i] = total;
        total += ((size_t)h->len[i] * 4 + 63) / 64 * 64 + 64;
    }
    pt_buffer *b = NULL;
    PT_TRY(pt_device_alloc(dev, total, &b, err));
    pt_status st = PT_OK;
    for (int i = 0; i < h->op.nt; i++) {
        h->op.t[i].mem = (pt_mem){b, off[i]};
        if (st == PT_OK) st = pt_device_write(dev, h->op.t[i].mem, h->ref[i], (size_t)h->len[i] * 4, err);
    }
    if (st == PT_OK) st = pt_device_run(dev, &h->op, err);
    for (int i = 0; i < h->op.nt && st == PT_OK; i++)
        st = pt_device_read(dev, h->ref[i], h->op.t[i].mem, (size_t)h->len[i] * 4, err);
    pt_device_free(dev, b);
    return st;
}

/* The kernel's operands against the cpu backend's: float ones ('f') by normalised error, int
 * ones ('i') and unused ones ('-') bitwise; the pads untouched. Returns the worst float error
 * (INFINITY on any mismatch). */
static double hc_compare(const host_case *h, const char *types)
{
    double worst = 0;
    for (int i = 0; i < h->op.nt; i++) {
        const char *k = (const char *)h->ker[i];
        for (int j = 0; j < PAD * 4; j++)
            if ((unsigned char)k[j] != 0x7f) return INFINITY;
        if (types[i] == 'i' || types[i] == '-') { /* '-': unused, must stay as it was */
            if (memcmp(k + PAD * 4, h->ref[i], (size_t)h->len[i] * 4) != 0) return INFINITY;
            continue;
        }
        if (h->len[i] == 0) continue;
        const double e =
            rel_err_floor((const float *)(k + PAD * 4), (const float *)h->ref[i], (int)h->len[i], h->floor[i]);
        if (!(e <= worst)) worst = e; /* NaN-safe: a NaN error is kept */
    }
    return worst;
}

/* The zoo kernels as the launchers call them (argument lists of cudam_zoo.c / ocl_zoo.c);
 * `bug` perturbs one argument, for the check that the comparison can fail. */
static void run_zoo_kernel(host_case *h, int bug)
{
    const pt_op *op = &h->op;
    const pt_tensor *t = op->t;
    const int acc = op->accumulate;
    switch (op->kind) {
    case PT_OP_BCAST_MUL: {
        const int n = (int)numel_of(&t[2]), c = (int)t[0].dim[1], hw = (int)(t[0].dim[2] * t[0].dim[3]);
        PT_HOST_LAUNCH(n, pt_bcast_mul(KF(h, 0), PAD, KF(h, 1), PAD, KF(h, 2), PAD, n, c, hw, t[1].ndim == 4,
                                       acc ^ bug));
        break;
    }
    case PT_OP_BCAST_MUL_GRAD: {
        const int n = (int)numel_of(&t[2]), c = (int)t[0].dim[1], hw = (int)(t[0].dim[2] * t[0].dim[3]);
        if (t[2].ndim == 4)
            PT_HOST_LAUNCH(n, pt_bcast_mul_grad_pixel(KF(h, 0), PAD, KF(h, 1), PAD, KF(h, 2), PAD, n, c - bug, hw,
                                                      acc));
        else
            PT_HOST_LAUNCH(n, pt_bcast_mul_grad_channel(KF(h, 0), PAD, KF(h, 1), PAD, KF(h, 2), PAD, n, hw - bug,
                                                        acc));
        break;
    }
    case PT_OP_SIGMOID_FWD: {
        const int n = (int)numel_of(&t[1]);
        PT_HOST_LAUNCH(n - bug, pt_sigmoid_fwd(KF(h, 0), PAD, KF(h, 1), PAD, n));
        break;
    }
    case PT_OP_SIGMOID_BWD: {
        const int n = (int)numel_of(&t[2]);
        PT_HOST_LAUNCH(n, pt_sigmoid_bwd(KF(h, 0), PAD, KF(h, 1), PAD, KF(h, 2), PAD, n, acc ^ bug));
        break;
    }
    case PT_OP_GMP_FWD: {
        const int planes = (int)numel_of(&t[1]), hw = (int)(t[0].dim[2] * t[0].dim[3]);
        PT_HOST_LAUNCH(planes, pt_gmp_fwd(KF(h, 0), PAD, KF(h, 1), PAD, KI(h, 2), PAD, planes, hw - bug));
        break;
    }
    case PT_OP_GMP_BWD: {
        const int n = (int)numel_of(&t[2]), hw = (int)(t[2].dim[2] * t[2].dim[3]);
        PT_HOST_LAUNCH(n, pt_gmp_bwd(KF(h, 0), PAD, KI(h, 1), PAD, KF(h, 2), PAD, n, hw, acc ^ bug));
        break;
    }
    case PT_OP_CHANNEL_POOL_FWD: {
        const int pixels = (int)numel_of(&t[2]), hw = (int)(t[0].dim[2] * t[0].dim[3]);
        PT_HOST_LAUNCH(pixels, pt_channel_pool_fwd(KF(h, 0), PAD, KF(h, 1), PAD, KI(h, 2), PAD, pixels,
                                                   (int)t[0].dim[1] - bug, hw));
        break;
    }
    case PT_OP_CHANNEL_POOL_BWD: {
        const int n = (int)numel_of(&t[2]), c = (int)t[2].dim[1], hw = (int)(t[2].dim[2] * t[2].dim[3]);
        PT_HOST_LAUNCH(n, pt_channel_pool_bwd(KF(h, 0), PAD, KI(h, 1), PAD, KF(h, 2), PAD, n, c, hw,
                                              1.0f / (float)(c + bug), acc));
        break;
    }
    default: break;
    }
}

/* Operand types and which operands are outputs (poisoned, or random when accumulating). */
static const char *zoo_types(pt_op_kind k)
{
    switch (k) {
    case PT_OP_GMP_FWD:
    case PT_OP_CHANNEL_POOL_FWD: return "ffi";
    case PT_OP_GMP_BWD:
    case PT_OP_CHANNEL_POOL_BWD: return "fif";
    case PT_OP_SIGMOID_FWD: return "ff";
    default: return "fff";
    }
}

/* Sets up one case of `kind` over x [n,c,hh,w]; variant picks the broadcast form. */
static void zoo_case(host_case *h, pt_op_kind kind, int n, int c, int hh, int w, int variant, int acc,
                     uint64_t stream)
{
    memset(h, 0, sizeof *h);
    pt_op *op = &h->op;
    op->kind = kind;
    op->accumulate = acc;
    pt_tensor *t = op->t;
    const int pixel = variant & 1;
    switch (kind) {
    case PT_OP_BCAST_MUL:
    case PT_OP_BCAST_MUL_GRAD: {
        op->nt = 3;
        const int si = kind == PT_OP_BCAST_MUL ? 1 : 2, yi = kind == PT_OP_BCAST_MUL ? 2 : 1;
        set_shape(&t[0], PT_F32, 4, n, c, hh, w);
        set_shape(&t[yi], PT_F32, 4, n, c, hh, w);
        if (pixel)
            set_shape(&t[si], PT_F32, 4, n, 1, hh, w);
        else
            set_shape(&t[si], PT_F32, 2, n, c, 0, 0);
        break;
    }
    case PT_OP_SIGMOID_FWD:
        op->nt = 2;
        set_shape(&t[0], PT_F32, 4, n, c, hh, w);
        set_shape(&t[1], PT_F32, 4, n, c, hh, w);
        break;
    case PT_OP_SIGMOID_BWD:
        op->nt = 3;
        for (int i = 0; i < 3; i++) set_shape(&t[i], PT_F32, 4, n, c, hh, w);
        break;
    case PT_OP_GMP_FWD:
        op->nt = 3;
        set_shape(&t[0], PT_F32, 4, n, c, hh, w);
        set_shape(&t[1], PT_F32, 2, n, c, 0, 0);
        set_shape(&t[2], PT_I32, 2, n, c, 0, 0);
        break;
    case PT_OP_GMP_BWD:
        op->nt = 3;
        set_shape(&t[0], PT_F32, 2, n, c, 0, 0);
        set_shape(&t[1], PT_I32, 2, n, c, 0, 0);
        set_shape(&t[2], PT_F32, 4, n, c, hh, w);
        break;
    case PT_OP_CHANNEL_POOL_FWD:
        op->nt = 3;
        set_shape(&t[0], PT_F32, 4, n, c, hh, w);
        set_shape(&t[1], PT_F32, 4, n, 2, hh, w);
        set_shape(&t[2], PT_I32, 4, n, 1, hh, w);
        break;
    case PT_OP_CHANNEL_POOL_BWD:
        op->nt = 3;
        set_shape(&t[0], PT_F32, 4, n, 2, hh, w);
        set_shape(&t[1], PT_I32, 4, n, 1, hh, w);
        set_shape(&t[2], PT_F32, 4, n, c, hh, w);
        break;
    default: break;
    }
    hc_alloc(h);
    /* inputs are O(1): an output that sums or accumulates them can cancel to near 0, where
     * float rounding is absolute (~1e-7 of the terms), so errors are normalised by at least
     * one unit per element (a wrong argument or index still errs by O(1)) */
    for (int i = 0; i < op->nt; i++) h->floor[i] = sqrt((double)h->len[i]);
    const char *types = zoo_types(kind);
    /* the output: the last float operand, except the forward poolings (y and argmax) */
    const int fwd_pool = kind == PT_OP_GMP_FWD || kind == PT_OP_CHANNEL_POOL_FWD;
    const int out = fwd_pool ? 1 : op->nt - 1;
    for (int i = 0; i < op->nt; i++) {
        float *f = h->ref[i];
        int32_t *a = h->ref[i];
        const uint64_t s = stream * 8 + (uint64_t)i;
        for (int64_t j = 0; j < h->len[i]; j++) {
            if (types[i] == 'i' || types[i] == '-') { /* '-': unused, must stay as it was */
                /* argmax inputs: valid indices (an output is poisoned) */
                const int range = kind == PT_OP_GMP_BWD ? hh * w : c;
                a[j] = fwd_pool ? -7 : (int32_t)(frand(s, (uint32_t)j, 0.0f, 1.0f) * (float)range) % range;
            } else if ((i == out || (fwd_pool && i == 1)) && !acc) {
                f[j] = NAN;
            } else if (fwd_pool && i == 0) {
                /* few distinct values, so maxima tie and the first must win */
                f[j] = 0.5f * (float)(int)frand(s, (uint32_t)j, -4.0f, 4.0f);
            } else if (kind == PT_OP_SIGMOID_BWD && i == 0) {
                f[j] = frand(s, (uint32_t)j, 0.0f, 1.0f); /* a sigmoid output */
            } else {
                f[j] = frand(s, (uint32_t)j, -3.0f, 3.0f);
            }
        }
    }
    hc_mirror(h);
}

static void zoo_kernels_match_cpu(void)
{
    pt_device *cpu = NULL;
    pt_error err;
    if (pt_device_open("cpu", 0, NULL, &cpu, &err) != PT_OK) {
        CHECKF(0, "%s", err.msg);
        return;
    }
    static const pt_op_kind kinds[] = {PT_OP_BCAST_MUL, PT_OP_BCAST_MUL_GRAD, PT_OP_SIGMOID_FWD,
                                       PT_OP_SIGMOID_BWD, PT_OP_GMP_FWD, PT_OP_GMP_BWD,
                                       PT_OP_CHANNEL_POOL_FWD, PT_OP_CHANNEL_POOL_BWD};
    /* fixed edge shapes (1x1 planes, one channel, odd sizes), then random ones */
    int shapes[10][4] = {{1, 1, 1, 1}, {2, 3, 1, 1}, {1, 1, 5, 3}, {3, 7, 4, 5}, {2, 16, 7, 7}, {4, 64, 2, 3}};
    for (int r = 6; r < 10; r++)
        for (int j = 0; j < 4; j++)
            shapes[r][j] = 1 + (int)(frand(1000 + (uint64_t)r, (uint32_t)j, 0.0f, 1.0f) * (j == 1 ? 24.0f : 9.0f));
    uint64_t stream = 0;
    double worst = 0;
    int cases = 0, caught = 0;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        for (int s = 0; s < 10; s++)
            for (int variant = 0; variant < 2; variant++)
                for (int acc = 0; acc < 2; acc++) {
                    const pt_op_kind kind = kinds[k];
                    const int bcast = kind == PT_OP_BCAST_MUL || kind == PT_OP_BCAST_MUL_GRAD;
                    const int fwd = kind == PT_OP_SIGMOID_FWD || kind == PT_OP_GMP_FWD ||
                                    kind == PT_OP_CHANNEL_POOL_FWD;
                    if ((variant && !bcast) || (acc && fwd)) continue; /* no such variant */
                    host_case h;
                    zoo_case(&h, kind, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], variant, acc,
                             stream++);
                    pt_status st = cpu_run(cpu, &h, &err);
                    CHECKF(st == PT_OK, "%s: %s", pt_op_name(kind), err.msg);
                    run_zoo_kernel(&h, 0);
                    const double e = hc_compare(&h, zoo_types(kind));
                    CHECKF(e < 1e-5, "%s [%d,%d,%d,%d]%s acc=%d: normalised error %.3g", pt_op_name(kind),
                           shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3],
                           bcast ? (variant ? " per pixel" : " per channel") : "", acc, e);
                    if (e > worst || e != e) worst = e;
                    cases++;
                    hc_free(&h);
                    /* the comparison fails the kernel given one wrong argument */
                    if (s == 3) {
                        zoo_case(&h, kind, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], variant, acc,
                                 stream++);
                        if (cpu_run(cpu, &h, &err) == PT_OK) {
                            run_zoo_kernel(&h, 1);
                            const double eb = hc_compare(&h, zoo_types(kind));
                            CHECKF(!(eb < 1e-5), "%s%s acc=%d: a wrong argument passes (error %.3g)",
                                   pt_op_name(kind), variant ? " per pixel" : "", acc, eb);
                            caught++;
                        }
                        hc_free(&h);
                    }
                }
    printf("  %d zoo kernel cases, worst normalised error %.3g; %d perturbed launches all caught\n", cases, worst,
           caught);
    pt_device_close(cpu);
}

/* pt_rmsprop as the launchers call it (cudam_ops.c / ocl_ops.c: unused state replaced by the
 * parameter, 1 - alpha computed in double), three steps in a row so the state carries. */
static void run_rmsprop_kernel(host_case *h, int bug)
{
    const pt_op *op = &h->op;
    const float mom = op->p.rmsprop.momentum;
    const int centered = op->p.rmsprop.centered, n = (int)h->len[0];
    PT_HOST_LAUNCH(n, pt_rmsprop(KF(h, 0), PAD, KF(h, 1), PAD, KF(h, 2), PAD, mom != 0.0f ? KF(h, 3) : KF(h, 0),
                                 PAD, centered ? KF(h, 4) : KF(h, 0), PAD, n, op->p.rmsprop.lr,
                                 op->p.rmsprop.alpha, (float)(1.0 - (double)op->p.rmsprop.alpha) + (float)bug * 1e-2f,
                                 op->p.rmsprop.eps, op->p.rmsprop.weight_decay, mom, centered));
}

static void rmsprop_kernel_matches_cpu(void)
{
    pt_device *cpu = NULL;
    pt_error err;
    if (pt_device_open("cpu", 0, NULL, &cpu, &err) != PT_OK) {
        CHECKF(0, "%s", err.msg);
        return;
    }
    static const int sizes[] = {1, 7, 256, 1000, 4099};
    double worst = 0;
    int cases = 0, caught = 0;
    uint64_t stream = 5000;
    for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++)
        for (int variant = 0; variant < 8; variant++) {
            const float mom = variant & 1 ? 0.9f : 0.0f, wd = variant & 4 ? 1e-2f : 0.0f;
            const int centered = (variant >> 1) & 1, n = sizes[z];
            const char types[] = {'f', 'f', 'f', mom != 0.0f ? 'f' : '-', centered ? 'f' : '-', 0};
            host_case h;
            memset(&h, 0, sizeof h);
            h.op.kind = PT_OP_RMSPROP;
            h.op.nt = 5;
            for (int i = 0; i < 5; i++) set_shape(&h.op.t[i], PT_F32, 1, n, 0, 0, 0);
            h.op.p.rmsprop.lr = frand(stream, 0, 1e-3f, 1e-2f);
            h.op.p.rmsprop.alpha = 0.99f;
            h.op.p.rmsprop.eps = 1e-8f;
            h.op.p.rmsprop.weight_decay = wd;
            h.op.p.rmsprop.momentum = mom;
            h.op.p.rmsprop.centered = centered;
            hc_alloc(&h);
            for (int j = 0; j < n; j++) {
                ((float *)h.ref[0])[j] = frand(stream + 1, (uint32_t)j, -1.0f, 1.0f);
                ((float *)h.ref[2])[j] = 0.0f; /* torch's initial state */
                ((float *)h.ref[3])[j] = mom != 0.0f ? 0.0f : NAN; /* unused: never read */
                ((float *)h.ref[4])[j] = centered ? 0.0f : NAN;
            }
            double e = 0;
            for (int step = 0; step < 3; step++) {
                for (int j = 0; j < n; j++)
                    ((float *)h.ref[1])[j] = frand(stream + 2 + (uint64_t)step, (uint32_t)j, -1.0f, 1.0f);
                hc_mirror(&h); /* both start each step from the cpu backend's state */
                run_rmsprop_kernel(&h, 0);
                pt_status st = cpu_run(cpu, &h, &err);
                CHECKF(st == PT_OK, "rmsprop: %s", err.msg);
                e = hc_compare(&h, types);
                if (!(e < 1e-5)) break;
            }
            CHECKF(e < 1e-5, "pt_rmsprop n=%d momentum=%g centered=%d weight_decay=%g: normalised error %.3g", n,
                   (double)mom, centered, (double)wd, e);
            if (e > worst || e != e) worst = e;
            cases++;
            /* a wrong 1 - alpha fails the bound (over enough elements that some gradient
             * is not tiny, so the change to square_avg shows) */
            hc_mirror(&h);
            run_rmsprop_kernel(&h, 1);
            if (n >= 256 && cpu_run(cpu, &h, &err) == PT_OK) {
                const double eb = hc_compare(&h, types);
                CHECKF(!(eb < 1e-5), "pt_rmsprop with a wrong 1 - alpha passes (error %.3g)", eb);
                caught++;
            }
            hc_free(&h);
            stream += 8;
        }
    printf("  %d rmsprop cases (3 steps each), worst normalised error %.3g; %d perturbed launches all caught\n",
           cases, worst, caught);
    pt_device_close(cpu);
}

int main(void)
{
    const char *env = getenv("PT_TEST_SEED");
    g_seed = env && *env ? strtoull(env, NULL, 0) : ((uint64_t)time(NULL) * 2654435761u) ^ (uint64_t)getpid();
    printf("seed %llu (PT_TEST_SEED repeats it)\n", (unsigned long long)g_seed);
    RUN(mixup_loss_kernel_matches_cpu);
    RUN(zoo_kernels_match_cpu);
    RUN(rmsprop_kernel_matches_cpu);
    TEST_EXIT();
}
