/* Every op kind of the cpu backend against a plain float64 reference written here: fresh
 * seeded random inputs, several shapes (odd sizes, stride 2, 1x1 and 7x7 kernels, padding
 * 0/1/3, batch 1), accumulate 0 and 1, outputs poisoned with NaN before each run. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/cpu_internal.h"
#include "polytrain/backend.h"
#include "core/rng.h"
#include "pt_test.h"

static pt_device *g_dev;
static uint64_t g_rng = 0x1234567887654321ull;

/* ---- helpers ---- */

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

static pt_buffer *upload(const void *src, size_t bytes)
{
    pt_buffer *b = NULL;
    pt_error e;
    if (pt_device_alloc(g_dev, bytes, &b, &e) != PT_OK) abort();
    if (bytes && pt_device_write(g_dev, (pt_mem){b, 0}, src, bytes, &e) != PT_OK) abort();
    return b;
}

static pt_buffer *upload_f(const float *src, int64_t n)
{
    return upload(src, (size_t)n * sizeof(float));
}

static pt_buffer *nan_buf(int64_t n)
{
    float *p = malloc((size_t)(n ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = NAN;
    pt_buffer *b = upload_f(p, n);
    free(p);
    return b;
}

static float *download(pt_buffer *b, int64_t n)
{
    float *p = malloc((size_t)(n ? n : 1) * sizeof(float));
    pt_error e;
    if (pt_device_read(g_dev, p, (pt_mem){b, 0}, (size_t)n * sizeof(float), &e) != PT_OK) abort();
    return p;
}

static pt_tensor t4(pt_buffer *b, int64_t n, int64_t c, int64_t h, int64_t w)
{
    return pt_tensor_4d(b, 0, n, c, h, w);
}

static pt_tensor t1(pt_buffer *b, int64_t n)
{
    return pt_tensor_1d(b, 0, PT_F32, n);
}

static pt_op make_op(pt_op_kind kind, int nt)
{
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = kind;
    op.nt = nt;
    return op;
}

/* Runs op with the workspace the backend asks for. */
static pt_status run(pt_op *op, pt_error *e)
{
    size_t ws = g_dev->be->workspace_size(g_dev->ctx, op);
    pt_buffer *w = NULL;
    if (ws) {
        if (pt_device_alloc(g_dev, ws, &w, e) != PT_OK) return e->status;
        /* poison the workspace too: nothing may depend on its contents */
        float *p = malloc(ws);
        for (size_t i = 0; i < ws / 4; i++) p[i] = NAN;
        pt_device_write(g_dev, (pt_mem){w, 0}, p, ws / 4 * 4, e);
        free(p);
    }
    op->workspace = (pt_mem){w, 0};
    op->workspace_bytes = ws;
    pt_status st = pt_device_run(g_dev, op, e);
    if (w) pt_device_free(g_dev, w);
    return st;
}

static void run_ok(pt_op *op)
{
    pt_error e;
    pt_error_clear(&e);
    pt_status st = run(op, &e);
    CHECKF(st == PT_OK, "%s failed: %s", pt_op_name(op->kind), e.msg);
}

static double rel_err(const float *got, const double *want, int64_t n)
{
    return pt_t_rel_err_f32_f64(got, want, (long)n);
}

#define TOL 1e-5

/* ---- fill, axpy, add ---- */

static void fill_writes_value_everywhere(void)
{
    int64_t n = 1001;
    pt_buffer *y = nan_buf(n);
    pt_op op = make_op(PT_OP_FILL, 1);
    op.t[0] = t1(y, n);
    op.p.fill.value = 0.375f;
    run_ok(&op);
    float *g = download(y, n);
    int ok = 1;
    for (int64_t i = 0; i < n; i++) ok &= g[i] == 0.375f;
    CHECK(ok);
    free(g);
    pt_device_free(g_dev, y);
}

static void axpy_matches_reference_with_and_without_accumulate(void)
{
    int64_t sizes[] = {1, 17, 100003};
    for (int si = 0; si < 3; si++)
        for (int acc = 0; acc < 2; acc++) {
            int64_t n = sizes[si];
            float *x = rand_f(n, 1), *y0 = rand_f(n, 1);
            pt_buffer *bx = upload_f(x, n), *by = acc ? upload_f(y0, n) : nan_buf(n);
            pt_op op = make_op(PT_OP_AXPY, 2);
            op.t[0] = t1(bx, n);
            op.t[1] = t1(by, n);
            op.p.axpy.alpha = -0.7f;
            op.accumulate = acc;
            run_ok(&op);
            double *ref = malloc((size_t)n * sizeof(double));
            for (int64_t i = 0; i < n; i++) ref[i] = -0.7 * x[i] + (acc ? y0[i] : 0.0);
            float *g = download(by, n);
            double err = rel_err(g, ref, n);
            CHECKF(err < TOL, "n=%lld acc=%d err=%g", (long long)n, acc, err);
            free(x), free(y0), free(ref), free(g);
            pt_device_free(g_dev, bx), pt_device_free(g_dev, by);
        }
}

static void add_matches_reference_also_in_place(void)
{
    for (int alias = 0; alias < 3; alias++) {
        int64_t n = 70001;
        float *a = rand_f(n, 1), *b = rand_f(n, 1);
        pt_buffer *ba = upload_f(a, n), *bb = upload_f(b, n);
        pt_buffer *by = alias == 0 ? nan_buf(n) : alias == 1 ? ba : bb;
        pt_op op = make_op(PT_OP_ADD, 3);
        op.t[0] = t1(ba, n);
        op.t[1] = t1(bb, n);
        op.t[2] = t1(by, n);
        run_ok(&op);
        double *ref = malloc((size_t)n * sizeof(double));
        for (int64_t i = 0; i < n; i++) ref[i] = (double)a[i] + b[i];
        float *g = download(by, n);
        double err = rel_err(g, ref, n);
        CHECKF(err < TOL, "alias=%d err=%g", alias, err);
        free(a), free(b), free(ref), free(g);
        if (alias == 0) pt_device_free(g_dev, by);
        pt_device_free(g_dev, ba), pt_device_free(g_dev, bb);
    }
}

/* ---- gemm, bias ---- */

static void gemm_matches_reference_for_all_transposes(void)
{
    int shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {33, 17, 65}, {64, 130, 9}, {1, 300, 77}};
    for (int si = 0; si < 5; si++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int bi = 0; bi < 2; bi++) {
                    int m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
                    float beta = bi ? 0.5f : 0.0f;
                    float *a = rand_f((int64_t)m * k, 1), *b = rand_f((int64_t)k * n, 1);
                    float *c0 = rand_f((int64_t)m * n, 1);
                    pt_buffer *ba = upload_f(a, (int64_t)m * k), *bb = upload_f(b, (int64_t)k * n);
                    pt_buffer *bc = bi ? upload_f(c0, (int64_t)m * n) : nan_buf((int64_t)m * n);
                    pt_op op = make_op(PT_OP_GEMM, 3);
                    op.t[0] = ta ? pt_tensor_2d(ba, 0, k, m) : pt_tensor_2d(ba, 0, m, k);
                    op.t[1] = tb ? pt_tensor_2d(bb, 0, n, k) : pt_tensor_2d(bb, 0, k, n);
                    op.t[2] = pt_tensor_2d(bc, 0, m, n);
                    op.p.gemm.trans_a = ta;
                    op.p.gemm.trans_b = tb;
                    op.p.gemm.alpha = 1.5f;
                    op.p.gemm.beta = beta;
                    run_ok(&op);
                    double *ref = malloc((size_t)m * n * sizeof(double));
                    for (int i = 0; i < m; i++)
                        for (int j = 0; j < n; j++) {
                            double s = 0;
                            for (int l = 0; l < k; l++) {
                                double av = ta ? a[l * m + i] : a[i * k + l];
                                double bv = tb ? b[j * k + l] : b[l * n + j];
                                s += av * bv;
                            }
                            ref[i * n + j] = 1.5 * s + (bi ? 0.5 * c0[i * n + j] : 0.0);
                        }
                    float *g = download(bc, (int64_t)m * n);
                    double err = rel_err(g, ref, (int64_t)m * n);
                    CHECKF(err < TOL, "m=%d n=%d k=%d ta=%d tb=%d beta=%g err=%g", m, n, k, ta, tb,
                           beta, err);
                    free(a), free(b), free(c0), free(ref), free(g);
                    pt_device_free(g_dev, ba), pt_device_free(g_dev, bb), pt_device_free(g_dev, bc);
                }
}

static void bias_add_and_bias_grad_match_reference(void)
{
    int64_t shapes[][4] = {{5, 7, 1, 1}, {3, 4, 5, 6}, {1, 16, 9, 9}};
    for (int si = 0; si < 3; si++) {
        int64_t n = shapes[si][0], c = shapes[si][1], hw = shapes[si][2] * shapes[si][3];
        int two_d = si == 0;
        int64_t total = n * c * hw;
        float *y = rand_f(total, 1), *bias = rand_f(c, 1);
        pt_buffer *by = upload_f(y, total), *bb = upload_f(bias, c);
        pt_tensor ty = two_d ? pt_tensor_2d(by, 0, n, c) : t4(by, n, c, shapes[si][2], shapes[si][3]);
        pt_op op = make_op(PT_OP_BIAS_ADD, 2);
        op.t[0] = ty;
        op.t[1] = t1(bb, c);
        run_ok(&op);
        double *ref = malloc((size_t)total * sizeof(double));
        for (int64_t i = 0; i < total; i++) ref[i] = (double)y[i] + bias[(i / hw) % c];
        float *g = download(by, total);
        double err = rel_err(g, ref, total);
        CHECKF(err < TOL, "bias_add shape %d err=%g", si, err);
        free(g);
        for (int acc = 0; acc < 2; acc++) {
            float *db0 = rand_f(c, 1);
            pt_buffer *bd = acc ? upload_f(db0, c) : nan_buf(c);
            pt_op go = make_op(PT_OP_BIAS_GRAD, 2);
            go.t[0] = ty;
            go.t[1] = t1(bd, c);
            go.accumulate = acc;
            run_ok(&go);
            double *rd = calloc((size_t)c, sizeof(double));
            float *cur = download(by, total);
            for (int64_t i = 0; i < total; i++) rd[(i / hw) % c] += cur[i];
            for (int64_t k = 0; k < c; k++) rd[k] += acc ? db0[k] : 0.0;
            float *gd = download(bd, c);
            err = rel_err(gd, rd, c);
            CHECKF(err < TOL, "bias_grad shape %d acc %d err=%g", si, acc, err);
            free(db0), free(rd), free(cur), free(gd);
            pt_device_free(g_dev, bd);
        }
        free(y), free(bias), free(ref);
        pt_device_free(g_dev, by), pt_device_free(g_dev, bb);
    }
}

/* ---- convolution ---- */

typedef struct conv_case {
    int n, c, h, w, k, r, s, stride, pad;
} conv_case;

static const conv_case conv_cases[] = {
    {2, 3, 7, 9, 4, 3, 3, 1, 1},   /* odd sizes, pad 1 */
    {1, 5, 8, 8, 6, 1, 1, 1, 0},   /* 1x1 stride 1 (no im2col), batch 1 */
    {3, 4, 11, 10, 5, 3, 3, 2, 1}, /* stride 2 */
    {2, 3, 16, 15, 4, 7, 7, 2, 3}, /* 7x7, pad 3, stride 2 */
    {5, 2, 5, 6, 3, 3, 3, 1, 0},   /* pad 0 */
    {3, 8, 5, 5, 16, 1, 1, 2, 0},  /* 1x1 stride 2 */
    {20, 16, 3, 3, 8, 3, 3, 1, 1}, /* small maps: samples grouped into one GEMM */
    {13, 6, 6, 6, 7, 3, 3, 1, 1},  /* several groups, uneven last group */
    {8, 32, 12, 12, 16, 3, 3, 1, 1}, /* large enough for multithreaded im2col / col2im */
    {2, 3, 9, 300, 2, 3, 3, 1, 2},   /* pad 2, a tile row longer than one Winograd run */
    {3, 17, 7, 5, 18, 3, 3, 1, 1},   /* odd maps with channels enough for automatic Winograd */
    {2, 40, 8, 8, 48, 3, 3, 1, 1},   /* few tiles, wide channels: automatic Winograd, shared blocks */
    {2, 3, 13, 14, 4, 5, 5, 3, 2},   /* stride 3 (im2col's general strided rows) */
};

static int conv_out(int in, int k, int stride, int pad)
{
    return (in + 2 * pad - k) / stride + 1;
}

static double xv(const float *x, const conv_case *cc, int n, int c, int h, int w)
{
    if (h < 0 || h >= cc->h || w < 0 || w >= cc->w) return 0.0;
    return x[((n * cc->c + c) * cc->h + h) * cc->w + w];
}

/* Each plan the cpu backend can take: automatic, forced groups x modes (im2col), and
 * Winograd forced wherever it applies (3x3 stride 1; other shapes fall back to im2col), in
 * per-thread chunks and in shared blocks, each with the automatic number of tiles and with 5
 * tiles (chunks and blocks that end inside a tile row). */
static const int conv_plans[][2] = {{0, 0}, {1, 1}, {1, 2}, {3, 1}, {3, 2}, {4, 1}, {0, 3}, {5, 3}, {0, 4}, {5, 4}};
#define N_CONV_PLANS 10
#define PLAN_IM2COL 1
#define PLAN_WINO_CHUNKS 6
#define PLAN_WINO_SHARED 8

static void set_plan(int pi)
{
    cpu_device *cd = g_dev->ctx;
    cd->conv_force_group = conv_plans[pi][0];
    cd->conv_force_mode = conv_plans[pi][1];
}

/* Inputs like a ReLU's output (all positive, correlated through their common offset) when
 * set: Winograd's transforms subtract neighbouring inputs, the case where it could lose
 * digits that direct convolution keeps. */
static int g_positive_x;

static double conv_case_run(const conv_case *cc, pt_op_kind kind, int acc, int pi)
{
    const int p = conv_out(cc->h, cc->r, cc->stride, cc->pad), q = conv_out(cc->w, cc->s, cc->stride, cc->pad);
    const int64_t nx = (int64_t)cc->n * cc->c * cc->h * cc->w, nw = (int64_t)cc->k * cc->c * cc->r * cc->s;
    const int64_t ny = (int64_t)cc->n * cc->k * p * q;
    float *x = rand_f(nx, 1), *w = rand_f(nw, 1), *y = rand_f(ny, 1);
    if (g_positive_x)
        for (int64_t i = 0; i < nx; i++) x[i] = 1.0f + 0.25f * x[i];
    int64_t nout = kind == PT_OP_CONV2D_FWD ? ny : kind == PT_OP_CONV2D_BWD_DATA ? nx : nw;
    float *o0 = rand_f(nout, 1);
    pt_buffer *bx = upload_f(x, nx), *bw = upload_f(w, nw), *by = upload_f(y, ny);
    pt_buffer *bo = acc ? upload_f(o0, nout) : nan_buf(nout);
    if (kind == PT_OP_CONV2D_FWD) by = (pt_device_free(g_dev, by), bo);
    if (kind == PT_OP_CONV2D_BWD_DATA) bx = (pt_device_free(g_dev, bx), bo);
    if (kind == PT_OP_CONV2D_BWD_FILTER) bw = (pt_device_free(g_dev, bw), bo);
    pt_op op = make_op(kind, 3);
    op.t[0] = t4(bx, cc->n, cc->c, cc->h, cc->w);
    op.t[1] = t4(bw, cc->k, cc->c, cc->r, cc->s);
    op.t[2] = t4(by, cc->n, cc->k, p, q);
    op.p.conv.stride = cc->stride;
    op.p.conv.pad = cc->pad;
    op.accumulate = acc;
    set_plan(pi);
    run_ok(&op);
    set_plan(0);
    double *ref = calloc((size_t)nout, sizeof(double));
    for (int64_t i = 0; i < nout; i++) ref[i] = acc ? o0[i] : 0.0;
    for (int n = 0; n < cc->n; n++)
        for (int k = 0; k < cc->k; k++)
            for (int i = 0; i < p; i++)
                for (int j = 0; j < q; j++)
                    for (int c = 0; c < cc->c; c++)
                        for (int r = 0; r < cc->r; r++)
                            for (int s = 0; s < cc->s; s++) {
                                int h = i * cc->stride - cc->pad + r, ww = j * cc->stride - cc->pad + s;
                                int64_t yi = ((int64_t)(n * cc->k + k) * p + i) * q + j;
                                int64_t wi = ((int64_t)(k * cc->c + c) * cc->r + r) * cc->s + s;
                                if (kind == PT_OP_CONV2D_FWD) {
                                    ref[yi] += (double)w[wi] * xv(x, cc, n, c, h, ww);
                                } else if (h >= 0 && h < cc->h && ww >= 0 && ww < cc->w) {
                                    int64_t xi = ((int64_t)(n * cc->c + c) * cc->h + h) * cc->w + ww;
                                    if (kind == PT_OP_CONV2D_BWD_DATA) ref[xi] += (double)w[wi] * y[yi];
                                    else ref[wi] += (double)x[xi] * y[yi];
                                }
                            }
    float *g = download(bo, nout);
    double err = rel_err(g, ref, nout);
    CHECKF(err < TOL, "%s n=%d c=%d %dx%d k=%d %dx%d s=%d p=%d acc=%d plan=%d err=%g",
           pt_op_name(kind), cc->n, cc->c, cc->h, cc->w, cc->k, cc->r, cc->s, cc->stride, cc->pad,
           acc, pi, err);
    free(x), free(w), free(y), free(o0), free(ref), free(g);
    pt_device_free(g_dev, bx), pt_device_free(g_dev, bw), pt_device_free(g_dev, by);
    return err;
}

static void conv_kind_all_cases(pt_op_kind kind)
{
    for (size_t ci = 0; ci < sizeof conv_cases / sizeof conv_cases[0]; ci++)
        for (int acc = 0; acc < 2; acc++)
            for (int pi = 0; pi < N_CONV_PLANS; pi++) conv_case_run(&conv_cases[ci], kind, acc, pi);
}

static void conv2d_fwd_matches_reference(void)
{
    conv_kind_all_cases(PT_OP_CONV2D_FWD);
}

static void conv2d_bwd_data_matches_reference(void)
{
    conv_kind_all_cases(PT_OP_CONV2D_BWD_DATA);
}

static void conv2d_bwd_filter_matches_reference(void)
{
    conv_kind_all_cases(PT_OP_CONV2D_BWD_FILTER);
}

/* Winograd (on by default) is as accurate as im2col + GEMM on layer shapes of the zoo's
 * networks, for all three passes, with signed and with ReLU-like inputs: its normalised error
 * against float64 within 3x im2col's (measured: 0.6x to 1.7x, both 1e-7 to 4e-7). */
static void winograd_error_is_that_of_im2col(void)
{
    static const conv_case cases[] = {{2, 64, 20, 20, 64, 3, 3, 1, 1}, {2, 128, 12, 12, 96, 3, 3, 1, 1},
                                      {4, 256, 6, 6, 64, 3, 3, 1, 1}};
    static const pt_op_kind kinds[] = {PT_OP_CONV2D_FWD, PT_OP_CONV2D_BWD_DATA, PT_OP_CONV2D_BWD_FILTER};
    for (int positive = 0; positive < 2; positive++)
        for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
            for (int k = 0; k < 3; k++) {
                g_positive_x = positive;
                const double e_im2col = conv_case_run(&cases[ci], kinds[k], 0, PLAN_IM2COL);
                const double e_chunks = conv_case_run(&cases[ci], kinds[k], 0, PLAN_WINO_CHUNKS);
                const double e_shared = conv_case_run(&cases[ci], kinds[k], 0, PLAN_WINO_SHARED);
                g_positive_x = 0;
                CHECKF(e_chunks <= 3.0 * e_im2col + 1e-9 && e_shared <= 3.0 * e_im2col + 1e-9,
                       "%s c=%d %dx%d k=%d positive=%d: Winograd %.3g (chunks), %.3g (shared), im2col %.3g",
                       pt_op_name(kinds[k]), cases[ci].c, cases[ci].h, cases[ci].w, cases[ci].k, positive, e_chunks,
                       e_shared, e_im2col);
                if (getenv("PT_TEST_VERBOSE"))
                    printf("  %s c=%d %dx%d k=%d positive=%d: Winograd %.3g (chunks), %.3g (shared), im2col %.3g\n",
                           pt_op_name(kinds[k]), cases[ci].c, cases[ci].h, cases[ci].w, cases[ci].k, positive,
                           e_chunks, e_shared, e_im2col);
            }
}

/* Shared Winograd blocks split the 16 position GEMMs into lcm(16, threads) items: thread
 * counts that do not divide 16 cut each position's GEMM into slices (columns, or rows of the
 * filter gradient), and a team of 1 takes all. Each against the float64 reference. */
static void winograd_shared_blocks_with_any_thread_count(void)
{
    static const conv_case cases[] = {{2, 24, 8, 8, 20, 3, 3, 1, 1}, {3, 17, 7, 5, 18, 3, 3, 1, 1}};
    static const pt_op_kind kinds[] = {PT_OP_CONV2D_FWD, PT_OP_CONV2D_BWD_DATA, PT_OP_CONV2D_BWD_FILTER};
    cpu_device *cd = g_dev->ctx;
    const int saved = cd->threads;
    static const int team[] = {1, 3, 5};
    for (size_t t = 0; t < sizeof team / sizeof team[0]; t++) {
        cd->threads = team[t];
        for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
            for (int k = 0; k < 3; k++)
                for (int acc = 0; acc < 2; acc++) {
                    conv_case_run(&cases[ci], kinds[k], acc, PLAN_WINO_SHARED);
                    conv_case_run(&cases[ci], kinds[k], acc, PLAN_WINO_SHARED + 1);
                }
    }
    cd->threads = saved;
}

/* Buffers of 4 MiB and more start on a 2 MiB boundary (the transparent-huge-page request;
 * whether the kernel grants it is its business) and hold every byte asked for; small ones keep
 * 64-byte alignment. */
static void large_buffers_start_on_huge_page_boundaries(void)
{
    cpu_device *cd = g_dev->ctx;
    static const size_t sizes[] = {100000, ((size_t)4 << 20) + 4, (size_t)6 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const size_t n = sizes[i] / 4;
        pt_buffer *b = NULL;
        pt_error e;
        pt_error_clear(&e);
        CHECKF(pt_device_alloc(g_dev, n * 4, &b, &e) == PT_OK, "%s", e.msg);
        const uintptr_t at = (uintptr_t)cpu_ptr((pt_mem){b, 0});
        const uintptr_t align = cd->be->hugepages && n * 4 >= ((size_t)4 << 20) ? (uintptr_t)2 << 20 : 64;
        CHECKF(at % align == 0, "%zu bytes at %#lx: not %lu-byte aligned", n * 4, (unsigned long)at,
               (unsigned long)align);
        float *w = malloc(n * 4), *r = malloc(n * 4);
        for (size_t k = 0; k < n; k++) w[k] = (float)(k % 1000003);
        CHECK(pt_device_write(g_dev, (pt_mem){b, 0}, w, n * 4, &e) == PT_OK);
        CHECK(pt_device_read(g_dev, r, (pt_mem){b, 0}, n * 4, &e) == PT_OK);
        CHECKF(memcmp(w, r, n * 4) == 0, "%zu-byte buffer: read back differs", n * 4);
        free(w), free(r);
        pt_device_free(g_dev, b);
    }
}

static void conv2d_refuses_a_missing_workspace(void)
{
    conv_case cc = {2, 3, 7, 9, 4, 3, 3, 1, 1};
    pt_buffer *bx = nan_buf(2 * 3 * 7 * 9), *bw = nan_buf(4 * 3 * 9), *by = nan_buf(2 * 4 * 7 * 9);
    pt_op op = make_op(PT_OP_CONV2D_FWD, 3);
    op.t[0] = t4(bx, cc.n, cc.c, cc.h, cc.w);
    op.t[1] = t4(bw, cc.k, cc.c, cc.r, cc.s);
    op.t[2] = t4(by, cc.n, cc.k, 7, 9);
    op.p.conv.stride = 1;
    op.p.conv.pad = 1;
    CHECK(g_dev->be->workspace_size(g_dev->ctx, &op) > 0);
    pt_error e;
    pt_error_clear(&e);
    pt_status st = pt_device_run(g_dev, &op, &e);
    CHECKF(st == PT_ERR_INVALID && strstr(e.msg, "conv2d_fwd") && strstr(e.msg, "workspace"),
           "status %d: %s", (int)st, e.msg);
    pt_device_free(g_dev, bx), pt_device_free(g_dev, bw), pt_device_free(g_dev, by);
}

/* ---- batch norm ---- */

static void bn_reference_stats(const float *x, int n, int c, int hw, int ch, double *mean, double *var)
{
    double s = 0, sq = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < hw; j++) s += x[((int64_t)i * c + ch) * hw + j];
    *mean = s / (n * hw);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < hw; j++) {
            double d = x[((int64_t)i * c + ch) * hw + j] - *mean;
            sq += d * d;
        }
    *var = sq / (n * hw);
}

static void bn_fwd_train_matches_pytorch_semantics(void)
{
    int shapes[][4] = {{4, 3, 5, 5}, {1, 6, 3, 7}, {16, 5, 1, 1}, {64, 8, 7, 7}};
    for (int si = 0; si < 4; si++) {
        int n = shapes[si][0], c = shapes[si][1], hw = shapes[si][2] * shapes[si][3];
        int64_t total = (int64_t)n * c * hw;
        float *x = rand_f(total, 2);
        for (int64_t i = 0; i < total; i++) x[i] += 3.0f; /* a mean far from 0 */
        float *gamma = rand_f(c, 1), *beta = rand_f(c, 1), *rm = rand_f(c, 1), *rv = rand_f(c, 1);
        for (int k = 0; k < c; k++) rv[k] = 1.0f + 0.5f * rv[k];
        pt_buffer *bx = upload_f(x, total), *bg = upload_f(gamma, c), *bb = upload_f(beta, c);
        pt_buffer *by = nan_buf(total), *brm = upload_f(rm, c), *brv = upload_f(rv, c);
        pt_buffer *bsm = nan_buf(c), *bsi = nan_buf(c);
        pt_op op = make_op(PT_OP_BN_FWD_TRAIN, 8);
        op.t[0] = t4(bx, n, c, shapes[si][2], shapes[si][3]);
        op.t[1] = t1(bg, c), op.t[2] = t1(bb, c);
        op.t[3] = t4(by, n, c, shapes[si][2], shapes[si][3]);
        op.t[4] = t1(brm, c), op.t[5] = t1(brv, c), op.t[6] = t1(bsm, c), op.t[7] = t1(bsi, c);
        op.p.bn.eps = 1e-5f;
        op.p.bn.momentum = 0.1f;
        run_ok(&op);
        double *ry = malloc((size_t)total * sizeof(double));
        double *rrm = malloc((size_t)c * sizeof(double)), *rrv = malloc((size_t)c * sizeof(double));
        double *rsm = malloc((size_t)c * sizeof(double)), *rsi = malloc((size_t)c * sizeof(double));
        for (int k = 0; k < c; k++) {
            double mean, var, m = (double)n * hw;
            bn_reference_stats(x, n, c, hw, k, &mean, &var);
            rsm[k] = mean;
            rsi[k] = 1.0 / sqrt(var + 1e-5);
            rrm[k] = 0.9 * rm[k] + 0.1 * mean;
            rrv[k] = 0.9 * rv[k] + 0.1 * var * m / (m - 1);
            for (int i = 0; i < n; i++)
                for (int j = 0; j < hw; j++) {
                    int64_t idx = ((int64_t)i * c + k) * hw + j;
                    ry[idx] = gamma[k] * (x[idx] - mean) * rsi[k] + beta[k];
                }
        }
        float *gy = download(by, total), *grm = download(brm, c), *grv = download(brv, c);
        float *gsm = download(bsm, c), *gsi = download(bsi, c);
        CHECKF(rel_err(gy, ry, total) < TOL, "y shape %d err %g", si, rel_err(gy, ry, total));
        CHECKF(rel_err(grm, rrm, c) < TOL, "running_mean shape %d", si);
        CHECKF(rel_err(grv, rrv, c) < TOL, "running_var shape %d err %g", si, rel_err(grv, rrv, c));
        CHECKF(rel_err(gsm, rsm, c) < TOL, "save_mean shape %d", si);
        CHECKF(rel_err(gsi, rsi, c) < TOL, "save_invstd shape %d", si);
        free(x), free(gamma), free(beta), free(rm), free(rv), free(ry), free(rrm), free(rrv);
        free(rsm), free(rsi), free(gy), free(grm), free(grv), free(gsm), free(gsi);
        pt_buffer *all[] = {bx, bg, bb, by, brm, brv, bsm, bsi};
        for (int i = 0; i < 8; i++) pt_device_free(g_dev, all[i]);
    }
}

static void bn_fwd_eval_uses_running_stats_also_in_place(void)
{
    for (int alias = 0; alias < 2; alias++) {
        int n = 3, c = 5, h = 4, w = 3, hw = h * w;
        int64_t total = (int64_t)n * c * hw;
        float *x = rand_f(total, 2), *gamma = rand_f(c, 1), *beta = rand_f(c, 1);
        float *rm = rand_f(c, 1), *rv = rand_f(c, 1);
        for (int k = 0; k < c; k++) rv[k] = 1.0f + 0.5f * rv[k];
        pt_buffer *bx = upload_f(x, total), *bg = upload_f(gamma, c), *bb = upload_f(beta, c);
        pt_buffer *by = alias ? bx : nan_buf(total), *brm = upload_f(rm, c), *brv = upload_f(rv, c);
        pt_op op = make_op(PT_OP_BN_FWD_EVAL, 6);
        op.t[0] = t4(bx, n, c, h, w), op.t[1] = t1(bg, c), op.t[2] = t1(bb, c);
        op.t[3] = t4(by, n, c, h, w), op.t[4] = t1(brm, c), op.t[5] = t1(brv, c);
        op.p.bn.eps = 1e-3f;
        run_ok(&op);
        double *ry = malloc((size_t)total * sizeof(double));
        for (int64_t i = 0; i < total; i++) {
            int k = (int)((i / hw) % c);
            ry[i] = gamma[k] * (x[i] - (double)rm[k]) / sqrt((double)rv[k] + (double)1e-3f) + beta[k];
        }
        float *gy = download(by, total);
        CHECKF(rel_err(gy, ry, total) < TOL, "alias %d err %g", alias, rel_err(gy, ry, total));
        free(x), free(gamma), free(beta), free(rm), free(rv), free(ry), free(gy);
        pt_buffer *all[] = {bx, bg, bb, brm, brv};
        for (int i = 0; i < 5; i++) pt_device_free(g_dev, all[i]);
        if (!alias) pt_device_free(g_dev, by);
    }
}

static void bn_bwd_matches_reference(void)
{
    int shapes[][4] = {{4, 3, 5, 5}, {1, 6, 3, 7}, {16, 5, 1, 1}, {32, 8, 6, 6}};
    for (int si = 0; si < 4; si++)
        for (int mode = 0; mode < 3; mode++) { /* 0: acc 0, 1: acc 1, 2: dx aliases dy */
            int n = shapes[si][0], c = shapes[si][1], hw = shapes[si][2] * shapes[si][3];
            int64_t total = (int64_t)n * c * hw;
            float *x = rand_f(total, 2), *dy = rand_f(total, 1), *dx0 = rand_f(total, 1);
            for (int64_t i = 0; i < total; i++) x[i] += 3.0f;
            float *gamma = rand_f(c, 1), *sm = malloc((size_t)c * sizeof(float)), *si_ = malloc((size_t)c * sizeof(float));
            double *mean = malloc((size_t)c * sizeof(double)), *inv = malloc((size_t)c * sizeof(double));
            for (int k = 0; k < c; k++) {
                double var;
                bn_reference_stats(x, n, c, hw, k, &mean[k], &var);
                sm[k] = (float)mean[k];
                si_[k] = (float)(1.0 / sqrt(var + 1e-5));
                inv[k] = si_[k];
                mean[k] = sm[k]; /* the reference uses the very statistics the op is given */
            }
            pt_buffer *bx = upload_f(x, total), *bdy = upload_f(dy, total), *bg = upload_f(gamma, c);
            pt_buffer *bsm = upload_f(sm, c), *bsi = upload_f(si_, c);
            pt_buffer *bdx = mode == 2 ? bdy : mode == 1 ? upload_f(dx0, total) : nan_buf(total);
            pt_buffer *bdg = nan_buf(c), *bdb = nan_buf(c);
            pt_op op = make_op(PT_OP_BN_BWD, 8);
            op.t[0] = t4(bx, n, c, shapes[si][2], shapes[si][3]);
            op.t[1] = t4(bdy, n, c, shapes[si][2], shapes[si][3]);
            op.t[2] = t1(bg, c), op.t[3] = t1(bsm, c), op.t[4] = t1(bsi, c);
            op.t[5] = t4(bdx, n, c, shapes[si][2], shapes[si][3]);
            op.t[6] = t1(bdg, c), op.t[7] = t1(bdb, c);
            op.accumulate = mode == 1;
            run_ok(&op);
            double *rdx = malloc((size_t)total * sizeof(double));
            double *rdg = calloc((size_t)c, sizeof(double)), *rdb = calloc((size_t)c, sizeof(double));
            double m = (double)n * hw;
            for (int k = 0; k < c; k++) {
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < hw; j++) {
                        int64_t idx = ((int64_t)i * c + k) * hw + j;
                        rdb[k] += dy[idx];
                        rdg[k] += dy[idx] * (x[idx] - mean[k]) * inv[k];
                    }
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < hw; j++) {
                        int64_t idx = ((int64_t)i * c + k) * hw + j;
                        double xh = (x[idx] - mean[k]) * inv[k];
                        rdx[idx] = gamma[k] * inv[k] * (dy[idx] - rdb[k] / m - xh * rdg[k] / m) +
                                   (mode == 1 ? dx0[idx] : 0.0);
                    }
            }
            float *gdx = download(bdx, total), *gdg = download(bdg, c), *gdb = download(bdb, c);
            CHECKF(rel_err(gdx, rdx, total) < 1e-4, "dx shape %d mode %d err %g", si, mode, rel_err(gdx, rdx, total));
            CHECKF(rel_err(gdg, rdg, c) < TOL, "dgamma shape %d mode %d err %g", si, mode, rel_err(gdg, rdg, c));
            CHECKF(rel_err(gdb, rdb, c) < TOL, "dbeta shape %d mode %d", si, mode);
            free(x), free(dy), free(dx0), free(gamma), free(sm), free(si_), free(mean), free(inv);
            free(rdx), free(rdg), free(rdb), free(gdx), free(gdg), free(gdb);
            pt_buffer *all[] = {bx, bdy, bg, bsm, bsi, bdg, bdb};
            for (int i = 0; i < 7; i++) pt_device_free(g_dev, all[i]);
            if (mode != 2) pt_device_free(g_dev, bdx);
        }
}

/* ---- relu ---- */

static void relu_fwd_and_bwd_match_reference(void)
{
    for (int mode = 0; mode < 3; mode++) { /* bwd: 0 acc 0, 1 acc 1, 2 dx aliases dy */
        int64_t n = 50001;
        float *x = rand_f(n, 1), *dy = rand_f(n, 1), *dx0 = rand_f(n, 1);
        x[0] = 0.0f;
        pt_buffer *bx = upload_f(x, n), *by = mode == 2 ? bx : nan_buf(n);
        pt_op op = make_op(PT_OP_RELU_FWD, 2);
        op.t[0] = t1(bx, n), op.t[1] = t1(by, n);
        run_ok(&op);
        double *ry = malloc((size_t)n * sizeof(double)), *rdx = malloc((size_t)n * sizeof(double));
        for (int64_t i = 0; i < n; i++) {
            ry[i] = x[i] > 0 ? x[i] : 0.0;
            rdx[i] = (ry[i] > 0 ? dy[i] : 0.0) + (mode == 1 ? dx0[i] : 0.0);
        }
        float *gy = download(by, n);
        CHECKF(rel_err(gy, ry, n) < TOL, "relu_fwd mode %d", mode);
        pt_buffer *bdy = upload_f(dy, n), *bdx = mode == 2 ? bdy : mode == 1 ? upload_f(dx0, n) : nan_buf(n);
        pt_op bo = make_op(PT_OP_RELU_BWD, 3);
        bo.t[0] = t1(by, n), bo.t[1] = t1(bdy, n), bo.t[2] = t1(bdx, n);
        bo.accumulate = mode == 1;
        run_ok(&bo);
        float *gdx = download(bdx, n);
        CHECKF(rel_err(gdx, rdx, n) < TOL, "relu_bwd mode %d", mode);
        free(x), free(dy), free(dx0), free(ry), free(rdx), free(gy), free(gdx);
        pt_device_free(g_dev, bx), pt_device_free(g_dev, bdy);
        if (mode != 2) pt_device_free(g_dev, by), pt_device_free(g_dev, bdx);
    }
}

static void relu_keeps_nan(void)
{
    float x[3] = {NAN, -1.0f, 2.0f};
    pt_buffer *bx = upload_f(x, 3), *by = nan_buf(3);
    pt_op op = make_op(PT_OP_RELU_FWD, 2);
    op.t[0] = t1(bx, 3), op.t[1] = t1(by, 3);
    run_ok(&op);
    float *g = download(by, 3);
    CHECK(isnan(g[0]) && g[1] == 0.0f && g[2] == 2.0f);
    free(g);
    pt_device_free(g_dev, bx), pt_device_free(g_dev, by);
}

/* ---- silu: y = x*sigmoid(x), against float64 over both tails; the gradient from x ---- */

static void silu_fwd_and_bwd_match_float64(void)
{
    for (int mode = 0; mode < 3; mode++) { /* bwd: 0 acc 0, 1 acc 1, 2 dx aliases dy */
        int64_t n = 40001;
        float *x = rand_f(n, 30), *dy = rand_f(n, 1), *dx0 = rand_f(n, 1);
        x[0] = 0.0f, x[1] = -100.0f, x[2] = 100.0f; /* exp(100) overflows: y must be -0, not NaN */
        pt_buffer *bx = upload_f(x, n), *by = nan_buf(n);
        pt_op op = make_op(PT_OP_SILU_FWD, 2);
        op.t[0] = t1(bx, n), op.t[1] = t1(by, n);
        run_ok(&op);
        double *ry = malloc((size_t)n * sizeof(double)), *rdx = malloc((size_t)n * sizeof(double));
        for (int64_t i = 0; i < n; i++) {
            const double v = x[i], sg = 1.0 / (1.0 + exp(-v));
            ry[i] = v * sg;
            rdx[i] = dy[i] * sg * (1.0 + v * (1.0 - sg)) + (mode == 1 ? dx0[i] : 0.0);
        }
        float *gy = download(by, n);
        CHECKF(rel_err(gy, ry, n) < TOL, "silu_fwd: normalised error %.3g", rel_err(gy, ry, n));
        CHECKF(gy[1] == 0.0f && gy[2] == 100.0f, "silu(-100) = %g, silu(100) = %g", (double)gy[1], (double)gy[2]);
        pt_buffer *bdy = upload_f(dy, n), *bdx = mode == 2 ? bdy : mode == 1 ? upload_f(dx0, n) : nan_buf(n);
        pt_op bo = make_op(PT_OP_SILU_BWD, 3);
        bo.t[0] = t1(bx, n), bo.t[1] = t1(bdy, n), bo.t[2] = t1(bdx, n);
        bo.accumulate = mode == 1;
        run_ok(&bo);
        float *gdx = download(bdx, n);
        CHECKF(rel_err(gdx, rdx, n) < TOL, "silu_bwd mode %d: normalised error %.3g", mode, rel_err(gdx, rdx, n));
        free(x), free(dy), free(dx0), free(ry), free(rdx), free(gy), free(gdx);
        pt_device_free(g_dev, bx), pt_device_free(g_dev, by), pt_device_free(g_dev, bdy);
        if (mode != 2) pt_device_free(g_dev, bdx);
    }
}

/* fuse_relu (the emitter folds an in-place ReLU into the BN or add before it): the fused op
 * gives, bit for bit, what the op followed by relu_fwd gives, running statistics and saved
 * mean/invstd included; NaN stays NaN; other kinds refuse the flag. */
static void fused_relu_is_bitwise_the_op_then_relu(void)
{
    const int n = 4, c = 6, h = 5, w = 7;
    const int64_t total = (int64_t)n * c * h * w;
    for (int kind = 0; kind < 3; kind++) { /* BN train, BN eval, add */
        float *x = rand_f(total, 3), *x2 = rand_f(total, 3), *gamma = rand_f(c, 1), *beta = rand_f(c, 1);
        float *rm = rand_f(c, 1), *rv = rand_f(c, 1);
        for (int k = 0; k < c; k++) rv[k] = 1.0f + rv[k] * rv[k];
        if (kind == 2) x[17] = NAN;
        float *out[2], *stats[2][4];
        for (int fused = 0; fused < 2; fused++) {
            pt_buffer *bx = upload_f(x, total), *bx2 = upload_f(x2, total), *by = nan_buf(total);
            pt_buffer *bg = upload_f(gamma, c), *bb = upload_f(beta, c), *brm = upload_f(rm, c), *brv = upload_f(rv, c);
            pt_buffer *bsm = nan_buf(c), *bsi = nan_buf(c);
            pt_op op = make_op(kind == 0 ? PT_OP_BN_FWD_TRAIN : kind == 1 ? PT_OP_BN_FWD_EVAL : PT_OP_ADD,
                               kind == 0 ? 8 : kind == 1 ? 6 : 3);
            if (kind < 2) {
                op.t[0] = t4(bx, n, c, h, w), op.t[1] = t1(bg, c), op.t[2] = t1(bb, c), op.t[3] = t4(by, n, c, h, w);
                op.t[4] = t1(brm, c), op.t[5] = t1(brv, c);
                if (kind == 0) op.t[6] = t1(bsm, c), op.t[7] = t1(bsi, c);
                op.p.bn.eps = 1e-5f, op.p.bn.momentum = 0.1f;
            } else {
                op.t[0] = t4(bx, n, c, h, w), op.t[1] = t4(bx2, n, c, h, w), op.t[2] = t4(by, n, c, h, w);
            }
            op.fuse_relu = fused;
            run_ok(&op);
            if (!fused) {
                pt_op r = make_op(PT_OP_RELU_FWD, 2);
                r.t[0] = r.t[1] = t4(by, n, c, h, w);
                run_ok(&r);
            }
            out[fused] = download(by, total);
            stats[fused][0] = download(brm, c), stats[fused][1] = download(brv, c);
            stats[fused][2] = download(bsm, c), stats[fused][3] = download(bsi, c);
            pt_buffer *all[] = {bx, bx2, by, bg, bb, brm, brv, bsm, bsi};
            for (int i = 0; i < 9; i++) pt_device_free(g_dev, all[i]);
        }
        int zeros = 0;
        for (int64_t i = 0; i < total; i++) zeros += out[1][i] == 0.0f;
        CHECKF(memcmp(out[0], out[1], (size_t)total * sizeof(float)) == 0, "kind %d: fused output differs", kind);
        CHECKF(zeros > total / 8 && zeros < total, "kind %d: %d of %lld outputs clamped", kind, zeros, (long long)total);
        if (kind == 2) CHECK(isnan(out[1][17]));
        for (int j = 0; j < 4; j++)
            CHECKF(memcmp(stats[0][j], stats[1][j], (size_t)c * sizeof(float)) == 0, "kind %d: statistics %d differ",
                   kind, j);
        free(x), free(x2), free(gamma), free(beta), free(rm), free(rv), free(out[0]), free(out[1]);
        for (int f = 0; f < 2; f++)
            for (int j = 0; j < 4; j++) free(stats[f][j]);
    }
    /* the flag on a kind that has no fused form is an error, not ignored */
    pt_buffer *b = nan_buf(8);
    pt_op op = make_op(PT_OP_RELU_FWD, 2);
    op.t[0] = op.t[1] = t1(b, 8);
    op.fuse_relu = 1;
    pt_error e;
    CHECK(run(&op, &e) == PT_ERR_INVALID && strstr(e.msg, "fuse_relu"));
    CHECK(!g_dev->be->supports(g_dev->ctx, &op));
    pt_device_free(g_dev, b);
}

/* ---- pooling ---- */

typedef struct pool_case {
    int n, c, h, w, k, stride, pad;
} pool_case;

static void maxpool_reference(const float *x, const pool_case *pc, int p, int q, double *y, int32_t *arg)
{
    for (int pl = 0; pl < pc->n * pc->c; pl++)
        for (int i = 0; i < p; i++)
            for (int j = 0; j < q; j++) {
                double best = -INFINITY;
                int bi = -1;
                for (int a = 0; a < pc->k; a++)
                    for (int b = 0; b < pc->k; b++) {
                        int h = i * pc->stride - pc->pad + a, w = j * pc->stride - pc->pad + b;
                        if (h < 0 || h >= pc->h || w < 0 || w >= pc->w) continue;
                        double v = x[(int64_t)pl * pc->h * pc->w + h * pc->w + w];
                        if (bi < 0 || v > best) best = v, bi = h * pc->w + w;
                    }
                y[((int64_t)pl * p + i) * q + j] = best;
                arg[((int64_t)pl * p + i) * q + j] = bi;
            }
}

static void maxpool_fwd_bwd_match_reference_with_ties(void)
{
    pool_case cases[] = {{2, 3, 8, 8, 2, 2, 0}, {2, 3, 9, 7, 2, 2, 0}, {1, 4, 9, 9, 3, 2, 1},
                         {3, 2, 6, 5, 3, 1, 1}, {2, 2, 7, 7, 3, 3, 0}};
    for (int ci = 0; ci < 5; ci++)
        for (int acc = 0; acc < 2; acc++) {
            const pool_case *pc = &cases[ci];
            int p = (pc->h + 2 * pc->pad - pc->k) / pc->stride + 1, q = (pc->w + 2 * pc->pad - pc->k) / pc->stride + 1;
            int64_t nx = (int64_t)pc->n * pc->c * pc->h * pc->w, ny = (int64_t)pc->n * pc->c * p * q;
            float *x = rand_f(nx, 1);
            for (int64_t i = 0; i < nx; i++) x[i] = roundf(x[i] * 3.0f); /* many ties */
            pt_buffer *bx = upload_f(x, nx), *by = nan_buf(ny), *ba = nan_buf(ny);
            pt_op op = make_op(PT_OP_MAXPOOL_FWD, 3);
            op.t[0] = t4(bx, pc->n, pc->c, pc->h, pc->w);
            op.t[1] = t4(by, pc->n, pc->c, p, q);
            op.t[2] = t4(ba, pc->n, pc->c, p, q);
            op.t[2].dtype = PT_I32;
            op.p.pool.k = pc->k, op.p.pool.stride = pc->stride, op.p.pool.pad = pc->pad;
            run_ok(&op);
            double *ry = malloc((size_t)ny * sizeof(double));
            int32_t *ra = malloc((size_t)ny * sizeof(int32_t)), *ga = malloc((size_t)ny * sizeof(int32_t));
            maxpool_reference(x, pc, p, q, ry, ra);
            float *gy = download(by, ny);
            pt_error e;
            pt_device_read(g_dev, ga, (pt_mem){ba, 0}, (size_t)ny * 4, &e);
            CHECKF(rel_err(gy, ry, ny) < TOL, "case %d", ci);
            CHECKF(memcmp(ga, ra, (size_t)ny * 4) == 0, "argmax differs, case %d", ci);
            /* backward: scatter-add of dy at argmax */
            float *dy = rand_f(ny, 1), *dx0 = rand_f(nx, 1);
            pt_buffer *bdy = upload_f(dy, ny), *bdx = acc ? upload_f(dx0, nx) : nan_buf(nx);
            pt_op bo = make_op(PT_OP_MAXPOOL_BWD, 3);
            bo.t[0] = op.t[1], bo.t[0].mem.buf = bdy;
            bo.t[1] = op.t[2];
            bo.t[2] = t4(bdx, pc->n, pc->c, pc->h, pc->w);
            bo.p.pool = op.p.pool; /* as the layer emits it */
            bo.accumulate = acc;
            run_ok(&bo);
            double *rdx = malloc((size_t)nx * sizeof(double));
            for (int64_t i = 0; i < nx; i++) rdx[i] = acc ? dx0[i] : 0.0;
            for (int64_t i = 0; i < ny; i++) rdx[(i / (p * q)) * pc->h * pc->w + ra[i]] += dy[i];
            float *gdx = download(bdx, nx);
            CHECKF(rel_err(gdx, rdx, nx) < TOL, "bwd case %d acc %d", ci, acc);
            free(x), free(ry), free(ra), free(ga), free(gy), free(dy), free(dx0), free(rdx), free(gdx);
            pt_buffer *all[] = {bx, by, ba, bdy, bdx};
            for (int i = 0; i < 5; i++) pt_device_free(g_dev, all[i]);
        }
}

static void maxpool_propagates_nan(void)
{
    for (int k = 2; k <= 3; k++) {
        float x[9] = {1, 2, 3, 4, NAN, 6, 7, 8, 9};
        int p = k == 2 ? 1 : 1;
        pt_buffer *bx = upload_f(x, 9), *by = nan_buf(p * p), *ba = nan_buf(p * p);
        pt_op op = make_op(PT_OP_MAXPOOL_FWD, 3);
        op.t[0] = t4(bx, 1, 1, 3, 3), op.t[1] = t4(by, 1, 1, p, p), op.t[2] = t4(ba, 1, 1, p, p);
        op.t[2].dtype = PT_I32;
        op.p.pool.k = k, op.p.pool.stride = 2, op.p.pool.pad = 0;
        run_ok(&op);
        float y;
        int32_t a;
        pt_error e;
        pt_device_read(g_dev, &y, (pt_mem){by, 0}, 4, &e);
        pt_device_read(g_dev, &a, (pt_mem){ba, 0}, 4, &e);
        CHECKF(isnan(y) && a == 4, "k=%d y=%g argmax=%d", k, y, a);
        pt_device_free(g_dev, bx), pt_device_free(g_dev, by), pt_device_free(g_dev, ba);
    }
}

/* An argmax outside the input plane (2x2 stride 2 and 3x3 windows) is refused with an error
 * naming the op, not written somewhere. */
static void maxpool_bwd_refuses_a_corrupt_argmax(void)
{
    for (int k = 2; k <= 3; k++) {
        const int h = 6, p = k == 2 ? 3 : 2;
        float dy[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
        int32_t arg[9] = {0, 2, 4, 12, 14, 16, 24, 26, 28};
        arg[k == 2 ? 4 : 3] = k == 2 ? -2 : 36; /* outside the 6x6 plane */
        pt_buffer *bdy = upload_f(dy, p * p), *bdx = nan_buf(h * h);
        pt_buffer *ba = NULL;
        pt_error e;
        pt_error_clear(&e);
        CHECK(pt_device_alloc(g_dev, sizeof arg, &ba, &e) == PT_OK);
        CHECK(pt_device_write(g_dev, (pt_mem){ba, 0}, arg, (size_t)(p * p) * 4, &e) == PT_OK);
        pt_op op = make_op(PT_OP_MAXPOOL_BWD, 3);
        op.t[0] = t4(bdy, 1, 1, p, p), op.t[1] = t4(ba, 1, 1, p, p), op.t[2] = t4(bdx, 1, 1, h, h);
        op.t[1].dtype = PT_I32;
        op.p.pool.k = k, op.p.pool.stride = 2, op.p.pool.pad = 0;
        const pt_status st = run(&op, &e);
        CHECKF(st == PT_ERR_INVALID && strstr(e.msg, "maxpool_bwd") && strstr(e.msg, "argmax"), "k=%d: status %d: %s",
               k, (int)st, e.msg);
        pt_device_free(g_dev, bdy), pt_device_free(g_dev, bdx), pt_device_free(g_dev, ba);
    }
}

static void gap_fwd_bwd_match_reference(void)
{
    int shapes[][4] = {{2, 3, 5, 7}, {64, 512, 3, 3}, {1, 1, 1, 1}};
    for (int si = 0; si < 3; si++)
        for (int acc = 0; acc < 2; acc++) {
            int n = shapes[si][0], c = shapes[si][1], h = shapes[si][2], w = shapes[si][3];
            int64_t nx = (int64_t)n * c * h * w, ny = (int64_t)n * c;
            float *x = rand_f(nx, 1), *dy = rand_f(ny, 1), *dx0 = rand_f(nx, 1);
            pt_buffer *bx = upload_f(x, nx), *by = nan_buf(ny);
            pt_op op = make_op(PT_OP_GAP_FWD, 2);
            op.t[0] = t4(bx, n, c, h, w), op.t[1] = pt_tensor_2d(by, 0, n, c);
            run_ok(&op);
            double *ry = calloc((size_t)ny, sizeof(double)), *rdx = malloc((size_t)nx * sizeof(double));
            for (int64_t i = 0; i < nx; i++) ry[i / (h * w)] += x[i] / (double)(h * w);
            for (int64_t i = 0; i < nx; i++) rdx[i] = dy[i / (h * w)] / (double)(h * w) + (acc ? dx0[i] : 0.0);
            float *gy = download(by, ny);
            CHECKF(rel_err(gy, ry, ny) < TOL, "gap_fwd shape %d", si);
            pt_buffer *bdy = upload_f(dy, ny), *bdx = acc ? upload_f(dx0, nx) : nan_buf(nx);
            pt_op bo = make_op(PT_OP_GAP_BWD, 2);
            bo.t[0] = pt_tensor_2d(bdy, 0, n, c), bo.t[1] = t4(bdx, n, c, h, w);
            bo.accumulate = acc;
            run_ok(&bo);
            float *gdx = download(bdx, nx);
            CHECKF(rel_err(gdx, rdx, nx) < TOL, "gap_bwd shape %d acc %d", si, acc);
            free(x), free(dy), free(dx0), free(ry), free(rdx), free(gy), free(gdx);
            pt_buffer *all[] = {bx, by, bdy, bdx};
            for (int i = 0; i < 4; i++) pt_device_free(g_dev, all[i]);
        }
}

/* ---- dropout ---- */

static void run_dropout(pt_buffer *bx, pt_buffer *by, pt_buffer *bm, int n, int c, int hw, float p,
                        int64_t base, size_t off_floats)
{
    pt_op op = make_op(PT_OP_DROPOUT_FWD, 3);
    op.t[0] = pt_tensor_4d(bx, off_floats * 4, n, c, hw, 1);
    op.t[1] = pt_tensor_4d(by, off_floats * 4, n, c, hw, 1);
    op.t[2] = pt_tensor_4d(bm, off_floats * 4, n, c, hw, 1);
    op.p.dropout.p = p;
    op.p.dropout.seed = 42;
    op.p.dropout.stream = 7 * 65536 + 3;
    op.p.dropout.sample_base = base;
    run_ok(&op);
}

static void dropout_mask_follows_the_rng_formula(void)
{
    int n = 6, c = 5, hw = 37;
    int64_t per = (int64_t)c * hw, total = n * per;
    float p = 0.3f;
    float *x = rand_f(total, 1);
    pt_buffer *bx = upload_f(x, total), *by = nan_buf(total), *bm = nan_buf(total);
    run_dropout(bx, by, bm, n, c, hw, p, 100, 0);
    float *gm = download(bm, total), *gy = download(by, total);
    int mask_ok = 1, y_ok = 1;
    for (int s = 0; s < n; s++)
        for (int64_t e = 0; e < per; e++) {
            float u = pt_rng_uniform(42, PT_RNG_DROPOUT, 7 * 65536 + 3, (uint64_t)(100 + s), (uint32_t)e);
            float want = u >= p ? 1.0f / (1.0f - p) : 0.0f;
            mask_ok &= gm[s * per + e] == want;
            y_ok &= gy[s * per + e] == x[s * per + e] * want;
        }
    CHECK(mask_ok);
    CHECK(y_ok);
    free(x), free(gm), free(gy);
    pt_device_free(g_dev, bx), pt_device_free(g_dev, by), pt_device_free(g_dev, bm);
}

static void dropout_keeps_about_one_minus_p(void)
{
    int n = 64, c = 32, hw = 64;
    int64_t total = (int64_t)n * c * hw;
    float *x = rand_f(total, 1);
    pt_buffer *bx = upload_f(x, total), *by = nan_buf(total), *bm = nan_buf(total);
    for (int pi = 0; pi < 3; pi++) {
        float p = pi == 0 ? 0.1f : pi == 1 ? 0.5f : 0.9f;
        run_dropout(bx, by, bm, n, c, hw, p, 0, 0);
        float *gm = download(bm, total);
        int64_t kept = 0;
        for (int64_t i = 0; i < total; i++) kept += gm[i] != 0.0f;
        double rate = (double)kept / (double)total, sd = sqrt(p * (1 - p) / (double)total);
        CHECKF(fabs(rate - (1 - p)) < 5 * sd, "p=%g keep rate %g", p, rate);
        free(gm);
    }
    free(x);
    pt_device_free(g_dev, bx), pt_device_free(g_dev, by), pt_device_free(g_dev, bm);
}

static void dropout_mask_is_the_same_when_the_batch_is_split(void)
{
    int n = 7, c = 3, hw = 11;
    int64_t per = (int64_t)c * hw, total = n * per;
    float *x = rand_f(total, 1);
    pt_buffer *bx = upload_f(x, total), *by = nan_buf(total), *bm = nan_buf(total);
    pt_buffer *by2 = nan_buf(total), *bm2 = nan_buf(total);
    run_dropout(bx, by, bm, n, c, hw, 0.4f, 50, 0);
    run_dropout(bx, by2, bm2, 3, c, hw, 0.4f, 50, 0);
    run_dropout(bx, by2, bm2, 4, c, hw, 0.4f, 53, (size_t)(3 * per));
    float *m1 = download(bm, total), *m2 = download(bm2, total), *y1 = download(by, total), *y2 = download(by2, total);
    CHECK(memcmp(m1, m2, (size_t)total * 4) == 0);
    CHECK(memcmp(y1, y2, (size_t)total * 4) == 0);
    free(x), free(m1), free(m2), free(y1), free(y2);
    pt_buffer *all[] = {bx, by, bm, by2, bm2};
    for (int i = 0; i < 5; i++) pt_device_free(g_dev, all[i]);
}

static void dropout_bwd_multiplies_by_the_mask(void)
{
    for (int mode = 0; mode < 3; mode++) {
        int64_t n = 40000;
        float *dy = rand_f(n, 1), *m = rand_f(n, 1), *dx0 = rand_f(n, 1);
        for (int64_t i = 0; i < n; i++) m[i] = m[i] > 0 ? 2.0f : 0.0f;
        pt_buffer *bdy = upload_f(dy, n), *bm = upload_f(m, n);
        pt_buffer *bdx = mode == 2 ? bdy : mode == 1 ? upload_f(dx0, n) : nan_buf(n);
        pt_op op = make_op(PT_OP_DROPOUT_BWD, 3);
        op.t[0] = t1(bdy, n), op.t[1] = t1(bm, n), op.t[2] = t1(bdx, n);
        op.accumulate = mode == 1;
        run_ok(&op);
        double *r = malloc((size_t)n * sizeof(double));
        for (int64_t i = 0; i < n; i++) r[i] = (double)dy[i] * m[i] + (mode == 1 ? dx0[i] : 0.0);
        float *g = download(bdx, n);
        CHECKF(rel_err(g, r, n) < TOL, "mode %d", mode);
        free(dy), free(m), free(dx0), free(r), free(g);
        pt_device_free(g_dev, bdy), pt_device_free(g_dev, bm);
        if (mode != 2) pt_device_free(g_dev, bdx);
    }
}

/* ---- cross-entropy ---- */

static void xent_matches_reference_with_label_smoothing(void)
{
    int shapes[][2] = {{5, 10}, {64, 10}, {3, 200}, {1, 1}};
    for (int si = 0; si < 4; si++)
        for (int smi = 0; smi < 2; smi++)
            for (int with_grad = 0; with_grad < 2; with_grad++) {
                int n = shapes[si][0], k = shapes[si][1];
                double sm = smi ? 0.1 : 0.0, gs = 1.0 / n;
                float *z = rand_f((int64_t)n * k, 4);
                int32_t *lab = malloc((size_t)n * 4);
                for (int i = 0; i < n; i++) lab[i] = (int32_t)((urand() + 1) * 0.5 * k) % k;
                pt_buffer *bz = upload_f(z, (int64_t)n * k), *bl = upload(lab, (size_t)n * 4);
                pt_buffer *bloss = nan_buf(n), *bg = nan_buf((int64_t)n * k);
                pt_op op = make_op(PT_OP_XENT, 4);
                op.t[0] = pt_tensor_2d(bz, 0, n, k);
                op.t[1] = pt_tensor_1d(bl, 0, PT_I32, n);
                op.t[2] = t1(bloss, n);
                if (with_grad) op.t[3] = pt_tensor_2d(bg, 0, n, k);
                else memset(&op.t[3], 0, sizeof op.t[3]);
                op.p.xent.smoothing = (float)sm;
                op.p.xent.grad_scale = (float)gs;
                run_ok(&op);
                double *rl = malloc((size_t)n * sizeof(double)), *rg = malloc((size_t)n * k * sizeof(double));
                for (int i = 0; i < n; i++) {
                    double mx = -INFINITY, se = 0;
                    for (int j = 0; j < k; j++) mx = fmax(mx, z[i * k + j]);
                    for (int j = 0; j < k; j++) se += exp(z[i * k + j] - mx);
                    double l = 0;
                    for (int j = 0; j < k; j++) {
                        double lsm = z[i * k + j] - mx - log(se);
                        double qj = (j == lab[i] ? 1 - sm : 0) + sm / k;
                        l -= qj * lsm;
                        rg[i * k + j] = gs * (exp(lsm) - qj);
                    }
                    rl[i] = l;
                }
                float *gl = download(bloss, n), *gg = download(bg, (int64_t)n * k);
                CHECKF(rel_err(gl, rl, n) < TOL || (k == 1 && fabs(gl[0]) < 1e-6),
                       "loss shape %d sm %g err %g", si, sm, rel_err(gl, rl, n));
                if (with_grad) {
                    double err = rel_err(gg, rg, (int64_t)n * k);
                    CHECKF(err < TOL || (k == 1 && fabs(gg[0]) < 1e-6), "grad shape %d sm %g err %g", si, sm, err);
                } else {
                    int untouched = 1;
                    for (int64_t i = 0; i < (int64_t)n * k; i++) untouched &= isnan(gg[i]);
                    CHECKF(untouched, "gradient written although skipped, shape %d", si);
                }
                free(z), free(lab), free(rl), free(rg), free(gl), free(gg);
                pt_buffer *all[] = {bz, bl, bloss, bg};
                for (int i = 0; i < 4; i++) pt_device_free(g_dev, all[i]);
            }
}

static void xent_rejects_a_label_out_of_range(void)
{
    float z[6] = {0};
    int32_t lab[2] = {1, 3};
    pt_buffer *bz = upload_f(z, 6), *bl = upload(lab, 8), *bloss = nan_buf(2);
    pt_op op = make_op(PT_OP_XENT, 4);
    op.t[0] = pt_tensor_2d(bz, 0, 2, 3);
    op.t[1] = pt_tensor_1d(bl, 0, PT_I32, 2);
    op.t[2] = t1(bloss, 2);
    memset(&op.t[3], 0, sizeof op.t[3]);
    pt_error e;
    pt_error_clear(&e);
    pt_status st = pt_device_run(g_dev, &op, &e);
    CHECKF(st == PT_ERR_INVALID && strstr(e.msg, "label"), "status %d: %s", (int)st, e.msg);
    pt_device_free(g_dev, bz), pt_device_free(g_dev, bl), pt_device_free(g_dev, bloss);
}

/* ---- optimizers ---- */

static void sgd_matches_pytorch_formula_over_several_steps(void)
{
    struct { float mom, damp, wd; int nesterov; } cfg[] = {
        {0, 0, 0, 0}, {0, 0, 5e-4f, 0}, {0.9f, 0, 0, 0}, {0.9f, 0.1f, 1e-2f, 0}, {0.9f, 0, 1e-2f, 1}};
    for (int ci = 0; ci < 5; ci++) {
        int64_t n = 40003;
        float *p = rand_f(n, 1), *buf = rand_f(n, 1);
        double *rp = malloc((size_t)n * sizeof(double)), *rb = malloc((size_t)n * sizeof(double));
        for (int64_t i = 0; i < n; i++) rp[i] = p[i], rb[i] = 0;
        pt_buffer *bp = upload_f(p, n), *bg = nan_buf(n), *bb = nan_buf(n);
        for (int step = 0; step < 4; step++) {
            float *g = rand_f(n, 1);
            pt_device_write(g_dev, (pt_mem){bg, 0}, g, (size_t)n * 4, NULL);
            pt_op op = make_op(PT_OP_SGD, 3);
            op.t[0] = t1(bp, n), op.t[1] = t1(bg, n), op.t[2] = t1(bb, n);
            op.p.sgd.lr = 0.05f, op.p.sgd.momentum = cfg[ci].mom, op.p.sgd.dampening = cfg[ci].damp;
            op.p.sgd.weight_decay = cfg[ci].wd, op.p.sgd.nesterov = cfg[ci].nesterov;
            op.p.sgd.first_step = step == 0;
            run_ok(&op);
            for (int64_t i = 0; i < n; i++) {
                double d = g[i] + (double)cfg[ci].wd * rp[i];
                if (cfg[ci].mom != 0) {
                    rb[i] = step == 0 ? d : cfg[ci].mom * rb[i] + (1 - (double)cfg[ci].damp) * d;
                    d = cfg[ci].nesterov ? d + cfg[ci].mom * rb[i] : rb[i];
                }
                rp[i] -= 0.05 * d;
            }
            free(g);
        }
        float *gp = download(bp, n);
        CHECKF(rel_err(gp, rp, n) < TOL, "config %d err %g", ci, rel_err(gp, rp, n));
        if (cfg[ci].mom != 0) {
            float *gb = download(bb, n);
            CHECKF(rel_err(gb, rb, n) < TOL, "momentum buffer config %d", ci);
            free(gb);
        }
        free(p), free(buf), free(rp), free(rb), free(gp);
        pt_device_free(g_dev, bp), pt_device_free(g_dev, bg), pt_device_free(g_dev, bb);
    }
}

static void adam_and_adamw_match_pytorch_formula_over_several_steps(void)
{
    for (int ci = 0; ci < 3; ci++) { /* 0 Adam, 1 Adam + L2, 2 AdamW */
        int64_t n = 40003;
        float wd = ci == 0 ? 0.0f : 0.05f;
        int decoupled = ci == 2;
        float *p = rand_f(n, 1), *zero = calloc((size_t)n, sizeof(float));
        double *rp = malloc((size_t)n * sizeof(double)), *rm = calloc((size_t)n, sizeof(double)),
               *rv = calloc((size_t)n, sizeof(double));
        for (int64_t i = 0; i < n; i++) rp[i] = p[i];
        pt_buffer *bp = upload_f(p, n), *bg = nan_buf(n), *bm = upload_f(zero, n), *bv = upload_f(zero, n);
        const double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8;
        for (int step = 1; step <= 5; step++) {
            float *g = rand_f(n, 1);
            pt_device_write(g_dev, (pt_mem){bg, 0}, g, (size_t)n * 4, NULL);
            pt_op op = make_op(PT_OP_ADAM, 4);
            op.t[0] = t1(bp, n), op.t[1] = t1(bg, n), op.t[2] = t1(bm, n), op.t[3] = t1(bv, n);
            op.p.adam.lr = (float)lr, op.p.adam.beta1 = (float)b1, op.p.adam.beta2 = (float)b2;
            op.p.adam.eps = (float)eps, op.p.adam.weight_decay = wd, op.p.adam.decoupled = decoupled;
            op.p.adam.step = step;
            run_ok(&op);
            for (int64_t i = 0; i < n; i++) {
                double gi = g[i];
                if (decoupled) rp[i] *= 1 - lr * (double)wd;
                else gi += (double)wd * rp[i];
                rm[i] = (double)(float)b1 * rm[i] + (1 - (double)(float)b1) * gi;
                rv[i] = (double)(float)b2 * rv[i] + (1 - (double)(float)b2) * gi * gi;
                double mh = rm[i] / (1 - pow((float)b1, step)), vh = rv[i] / (1 - pow((float)b2, step));
                rp[i] -= (double)(float)lr * mh / (sqrt(vh) + (double)(float)eps);
            }
            free(g);
        }
        float *gp = download(bp, n), *gm = download(bm, n), *gv = download(bv, n);
        CHECKF(rel_err(gp, rp, n) < TOL, "config %d param err %g", ci, rel_err(gp, rp, n));
        CHECKF(rel_err(gm, rm, n) < TOL, "config %d exp_avg err %g", ci, rel_err(gm, rm, n));
        CHECKF(rel_err(gv, rv, n) < TOL, "config %d exp_avg_sq err %g", ci, rel_err(gv, rv, n));
        free(p), free(zero), free(rp), free(rm), free(rv), free(gp), free(gm), free(gv);
        pt_buffer *all[] = {bp, bg, bm, bv};
        for (int i = 0; i < 4; i++) pt_device_free(g_dev, all[i]);
    }
}

/* ---- contract ---- */

static void supports_every_kind_with_its_operands(void)
{
    for (int k = 0; k < PT_OP_KIND_COUNT; k++) {
        const pt_op_desc *d = pt_op_describe((pt_op_kind)k);
        CHECKF(d != NULL, "op kind %d has no description", k);
        if (!d) continue;
        pt_op op = make_op((pt_op_kind)k, 0);
        /* the operand count and dtypes the kind's description gives */
        op.nt = d->nt;
        for (int i = 0; i < op.nt; i++) op.t[i].dtype = d->arg[i].dtype, op.t[i].ndim = 1;
        CHECKF(g_dev->be->supports(g_dev->ctx, &op), "%s", pt_op_name((pt_op_kind)k));
        op.t[0].dtype = PT_I64;
        CHECKF(!g_dev->be->supports(g_dev->ctx, &op), "%s with an I64 operand", pt_op_name((pt_op_kind)k));
        op.t[0].dtype = d->arg[0].dtype;
        op.nt = d->nt + 1;
        CHECKF(!g_dev->be->supports(g_dev->ctx, &op), "%s with %d operands", pt_op_name((pt_op_kind)k), op.nt);
    }
}

static void run_rejects_wrong_operands_naming_the_op(void)
{
    pt_buffer *b = nan_buf(16);
    pt_op op = make_op(PT_OP_ADD, 2);
    op.t[0] = t1(b, 16), op.t[1] = t1(b, 16);
    pt_error e;
    pt_error_clear(&e);
    pt_status st = pt_device_run(g_dev, &op, &e);
    CHECKF(st == PT_ERR_INVALID && strstr(e.msg, "add"), "%s", e.msg);
    op = make_op(PT_OP_RELU_FWD, 2);
    op.t[0] = t1(b, 16), op.t[1] = t1(b, 17); /* one element past the buffer */
    st = pt_device_run(g_dev, &op, &e);
    CHECKF(st == PT_ERR_INVALID && strstr(e.msg, "relu_fwd"), "%s", e.msg);
    op.t[1] = t1(b, 16);
    op.t[1].dtype = PT_I32;
    st = pt_device_run(g_dev, &op, &e);
    CHECKF(st == PT_ERR_INVALID && strstr(e.msg, "relu_fwd"), "%s", e.msg);
    pt_device_free(g_dev, b);
}

static void rel_err_never_passes_nan(void)
{
    float g[2] = {1.0f, NAN};
    double r[2] = {1.0, 2.0};
    CHECK(!(rel_err(g, r, 2) < TOL));
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
    RUN(fill_writes_value_everywhere);
    RUN(axpy_matches_reference_with_and_without_accumulate);
    RUN(add_matches_reference_also_in_place);
    RUN(gemm_matches_reference_for_all_transposes);
    RUN(bias_add_and_bias_grad_match_reference);
    RUN(conv2d_fwd_matches_reference);
    RUN(conv2d_bwd_data_matches_reference);
    RUN(conv2d_bwd_filter_matches_reference);
    RUN(winograd_error_is_that_of_im2col);
    RUN(winograd_shared_blocks_with_any_thread_count);
    RUN(large_buffers_start_on_huge_page_boundaries);
    RUN(conv2d_refuses_a_missing_workspace);
    RUN(bn_fwd_train_matches_pytorch_semantics);
    RUN(bn_fwd_eval_uses_running_stats_also_in_place);
    RUN(bn_bwd_matches_reference);
    RUN(relu_fwd_and_bwd_match_reference);
    RUN(relu_keeps_nan);
    RUN(silu_fwd_and_bwd_match_float64);
    RUN(fused_relu_is_bitwise_the_op_then_relu);
    RUN(maxpool_fwd_bwd_match_reference_with_ties);
    RUN(maxpool_propagates_nan);
    RUN(maxpool_bwd_refuses_a_corrupt_argmax);
    RUN(gap_fwd_bwd_match_reference);
    RUN(dropout_mask_follows_the_rng_formula);
    RUN(dropout_keeps_about_one_minus_p);
    RUN(dropout_mask_is_the_same_when_the_batch_is_split);
    RUN(dropout_bwd_multiplies_by_the_mask);
    RUN(xent_matches_reference_with_label_smoothing);
    RUN(xent_rejects_a_label_out_of_range);
    RUN(sgd_matches_pytorch_formula_over_several_steps);
    RUN(adam_and_adamw_match_pytorch_formula_over_several_steps);
    RUN(supports_every_kind_with_its_operands);
    RUN(run_rejects_wrong_operands_naming_the_op);
    RUN(rel_err_never_passes_nan);
    pt_device_close(g_dev);
    TEST_EXIT();
}
