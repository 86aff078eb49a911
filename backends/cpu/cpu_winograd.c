/* Winograd F(2x2, 3x3) for the cpu backend's 3x3 stride-1 convolutions: forward, data
 * gradient (itself a 3x3 stride-1 convolution, with the filter rotated, its channel axes
 * swapped and padding 2 - pad) and filter gradient (the adjoint of the forward computation
 * with respect to the transformed filter, mapped back through G^T . G). Each 2x2 output tile
 * costs 16 multiply-adds per channel pair instead of 36, and the transformed input is 4x the
 * input instead of im2col's 9x, so both the GEMM work and the memory traffic shrink.
 *
 * Layout: U[16][Co][Ci] (transformed filters, shared), and per thread, for a chunk of Tc
 * tiles, V[16][Ci][Tc] (transformed input) and M[16][Co][Tc] = U[xi] * V[xi] (16 GEMMs,
 * one-thread each, inside the thread's own chunk, so that V and M stay in cache between the
 * transforms and the GEMMs). The filter gradient keeps a per-thread dU[16][Co][Ci] += dM V^T
 * instead, summed over threads in a fixed order at the end. Tiles run over (n, tile row,
 * tile column) flat, so that small feature maps still give wide GEMMs. All scratch comes
 * from the op's workspace. */
#include <omp.h>
#include <string.h>

#include "backends/cpu/cpu_internal.h"

/* Per-thread scratch budget (floats) for V and M, which sets the tile chunk: half the L2
 * cache (smaller measured faster than 1-4 MiB on baseline's layers), so that the GEMMs and
 * transforms work in cache; but never fewer than WINO_MIN_CHUNK tiles, below which the
 * GEMMs get too narrow for the kernel. */
#define WINO_SLOT_FLOATS (1u << 17)
/* The filter gradient's GEMMs update a Co x Ci matrix per chunk: larger chunks amortise it. */
#define WINO_SLOT_FLOATS_FILTER (1u << 18)
#define WINO_MIN_CHUNK 64

typedef struct wino_geom {
    int64_t n, ci, co, hi, wi, ho, wo, pad;
    int64_t tp, tq, tiles; /* tile rows, tile columns per sample; tiles in all */
    int64_t chunk;         /* tiles per GEMM */
    int slots;
    size_t u_floats, v_floats, m_floats, du_floats, slot_floats, bytes;
} wino_geom;

static size_t round16(size_t n)
{
    return (n + 15) / 16 * 16;
}

int cpu_winograd_applies(const pt_op *op)
{
    const pt_tensor *w = &op->t[1];
    return w->dim[2] == 3 && w->dim[3] == 3 && op->p.conv.stride == 1 && op->p.conv.pad >= 0 &&
           op->p.conv.pad <= 2;
}

static wino_geom geom_of(const cpu_device *d, const pt_op *op)
{
    wino_geom g;
    memset(&g, 0, sizeof g);
    const pt_tensor *x = &op->t[0], *w = &op->t[1], *y = &op->t[2];
    /* The filter gradient tiles the forward pass: its geometry is the forward one. */
    const int fwd = op->kind != PT_OP_CONV2D_BWD_DATA, filt = op->kind == PT_OP_CONV2D_BWD_FILTER;
    g.n = x->dim[0];
    g.ci = fwd ? x->dim[1] : w->dim[0];
    g.co = fwd ? w->dim[0] : x->dim[1];
    g.hi = fwd ? x->dim[2] : y->dim[2];
    g.wi = fwd ? x->dim[3] : y->dim[3];
    g.ho = fwd ? y->dim[2] : x->dim[2];
    g.wo = fwd ? y->dim[3] : x->dim[3];
    g.pad = fwd ? op->p.conv.pad : 2 - op->p.conv.pad;
    g.tp = (g.ho + 1) / 2;
    g.tq = (g.wo + 1) / 2;
    g.tiles = g.n * g.tp * g.tq;
    g.slots = d->threads;
    int64_t per = (g.tiles + g.slots - 1) / g.slots;
    int64_t chunk = (int64_t)(filt ? WINO_SLOT_FLOATS_FILTER : WINO_SLOT_FLOATS) / (16 * (g.ci + g.co));
    chunk = chunk / 16 * 16;
    if (chunk < WINO_MIN_CHUNK) chunk = WINO_MIN_CHUNK;
    if (chunk > per) chunk = per;
    if (d->conv_force_mode == 3 && d->conv_force_group > 0) chunk = d->conv_force_group; /* tests */
    if (chunk < 1) chunk = 1;
    g.chunk = chunk;
    g.u_floats = filt ? 0 : round16((size_t)(16 * g.ci * g.co));
    g.v_floats = round16((size_t)(16 * g.ci * chunk));
    g.m_floats = round16((size_t)(16 * g.co * chunk));
    g.du_floats = filt ? round16((size_t)(16 * g.ci * g.co)) : 0;
    g.slot_floats = g.v_floats + g.m_floats + g.du_floats;
    g.bytes = (g.u_floats + (size_t)g.slots * g.slot_floats) * sizeof(float);
    return g;
}

size_t cpu_winograd_workspace(const cpu_device *d, const pt_op *op)
{
    return geom_of(d, op).bytes;
}

/* U[xi][o][i] = G g G^T of the 3x3 filter g from output channel o to input channel i: for the
 * forward pass w[o, i]; for the data gradient w[i, o] rotated by 180 degrees. */
static void filter_transform(const wino_geom *g, const float *w, int fwd, float *u, int64_t lo, int64_t hi)
{
    for (int64_t pair = lo; pair < hi; pair++) {
        const int64_t o = pair / g->ci, i = pair % g->ci;
        const float *src = fwd ? w + (o * g->ci + i) * 9 : w + (i * g->co + o) * 9;
        float k[3][3];
        for (int r = 0; r < 3; r++)
            for (int s = 0; s < 3; s++) k[r][s] = fwd ? src[r * 3 + s] : src[(2 - r) * 3 + (2 - s)];
        float t[4][3]; /* G k */
        for (int s = 0; s < 3; s++) {
            t[0][s] = k[0][s];
            t[1][s] = 0.5f * (k[0][s] + k[1][s] + k[2][s]);
            t[2][s] = 0.5f * (k[0][s] - k[1][s] + k[2][s]);
            t[3][s] = k[2][s];
        }
        for (int a = 0; a < 4; a++) {
            float v[4] = {t[a][0], 0.5f * (t[a][0] + t[a][1] + t[a][2]), 0.5f * (t[a][0] - t[a][1] + t[a][2]),
                          t[a][2]};
            for (int b = 0; b < 4; b++) u[((size_t)(a * 4 + b) * g->co + o) * g->ci + i] = v[b];
        }
    }
}

/* Tiles are transformed a run at a time: the tiles of one tile row of one sample (at most
 * WINO_RUN of them), so that every loop below runs over contiguous memory and vectorises. */
#define WINO_RUN 128

/* V[a*4 + b][c][j0 + j] = (B^T d B)[a][b] for the 4x4 patch d of tile (n, ti, tj0 + j), for
 * every input channel c; B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]. */
static void input_run(const wino_geom *g, const float *in, int64_t n, int64_t ti, int64_t tj0, int64_t len,
                      float *v, int64_t j0)
{
    const int64_t ld = g->chunk, plane = g->ci * ld, width = 2 * len + 2, w0 = 2 * tj0 - g->pad;
    /* columns of the input this run reads that lie inside the image */
    int64_t k0 = -w0 > 0 ? -w0 : 0, k1 = g->wi - w0 < width ? g->wi - w0 : width;
    if (k1 < k0) k1 = k0;
    float e[4][2 * WINO_RUN + 2];
    static const float zeros[2 * WINO_RUN + 2];
    for (int64_t c = 0; c < g->ci; c++) {
        const float *xp = in + (n * g->ci + c) * g->hi * g->wi;
        const float *rp[4]; /* the four input rows from column w0 + k0; rows outside read zeros */
        for (int a = 0; a < 4; a++) {
            const int64_t h = 2 * ti - g->pad + a;
            rp[a] = h >= 0 && h < g->hi ? xp + h * g->wi + w0 + k0 : zeros;
        }
        const float *r0 = rp[0], *r1 = rp[1], *r2 = rp[2], *r3 = rp[3];
        float *e0 = e[0] + k0, *e1 = e[1] + k0, *e2 = e[2] + k0, *e3 = e[3] + k0;
        for (int64_t k = 0; k < k0; k++) e[0][k] = e[1][k] = e[2][k] = e[3][k] = 0.0f;
#pragma omp simd
        for (int64_t k = 0; k < k1 - k0; k++) {
            e0[k] = r0[k] - r2[k];
            e1[k] = r1[k] + r2[k];
            e2[k] = r2[k] - r1[k];
            e3[k] = r1[k] - r3[k];
        }
        for (int64_t k = k1; k < width; k++) e[0][k] = e[1][k] = e[2][k] = e[3][k] = 0.0f;
        float *vc = v + c * ld + j0;
        for (int a = 0; a < 4; a++) {
            const float *ea = e[a];
            float *v0 = vc + (a * 4 + 0) * plane, *v1 = vc + (a * 4 + 1) * plane;
            float *v2 = vc + (a * 4 + 2) * plane, *v3 = vc + (a * 4 + 3) * plane;
#pragma omp simd
            for (int64_t j = 0; j < len; j++) {
                const float d0 = ea[2 * j], d1 = ea[2 * j + 1], d2 = ea[2 * j + 2], d3 = ea[2 * j + 3];
                v0[j] = d0 - d2;
                v1[j] = d1 + d2;
                v2[j] = d2 - d1;
                v3[j] = d1 - d3;
            }
        }
    }
}

/* out[n, o, 2ti + a, 2(tj0 + j) + b] (+)= (A^T m A)[a][b], m = M[.][o][j0 + j], for every
 * output channel o; A^T = [1 1 1 0; 0 1 -1 -1]. */
static void output_run(const wino_geom *g, const float *m, int64_t n, int64_t ti, int64_t tj0, int64_t len,
                       int64_t j0, float *out, int acc)
{
    const int64_t ld = g->chunk, plane = g->co * ld;
    const int64_t cols = 2 * len < g->wo - 2 * tj0 ? 2 * len : g->wo - 2 * tj0;
    const int rows = 2 * ti + 1 < g->ho ? 2 : 1;
    float r[2][2 * WINO_RUN];
    for (int64_t o = 0; o < g->co; o++) {
        const float *mo = m + o * ld + j0;
        const float *m0 = mo, *m1 = mo + plane, *m2 = mo + 2 * plane, *m3 = mo + 3 * plane;
        const float *m4 = mo + 4 * plane, *m5 = mo + 5 * plane, *m6 = mo + 6 * plane, *m7 = mo + 7 * plane;
        const float *m8 = mo + 8 * plane, *m9 = mo + 9 * plane, *m10 = mo + 10 * plane, *m11 = mo + 11 * plane;
        const float *m12 = mo + 12 * plane, *m13 = mo + 13 * plane, *m14 = mo + 14 * plane, *m15 = mo + 15 * plane;
        float *r0 = r[0], *r1 = r[1];
#pragma omp simd
        for (int64_t j = 0; j < len; j++) {
            /* A^T m: row 0 = m[0] + m[1] + m[2], row 1 = m[1] - m[2] - m[3] (rows of 4) */
            const float s00 = m0[j] + m4[j] + m8[j], s01 = m1[j] + m5[j] + m9[j];
            const float s02 = m2[j] + m6[j] + m10[j], s03 = m3[j] + m7[j] + m11[j];
            const float s10 = m4[j] - m8[j] - m12[j], s11 = m5[j] - m9[j] - m13[j];
            const float s12 = m6[j] - m10[j] - m14[j], s13 = m7[j] - m11[j] - m15[j];
            r0[2 * j] = s00 + s01 + s02;
            r0[2 * j + 1] = s01 - s02 - s03;
            r1[2 * j] = s10 + s11 + s12;
            r1[2 * j + 1] = s11 - s12 - s13;
        }
        for (int a = 0; a < rows; a++) {
            float *yp = out + ((n * g->co + o) * g->ho + 2 * ti + a) * g->wo + 2 * tj0;
            const float *ra = r[a];
            if (acc) {
#pragma omp simd
                for (int64_t k = 0; k < cols; k++) yp[k] += ra[k];
            } else {
                memcpy(yp, ra, (size_t)cols * sizeof(float));
            }
        }
    }
}

/* Tiles t0 .. t0+nt-1 (flat over n, tile row, tile column), run by run. */
static void input_transform(const wino_geom *g, const float *in, int64_t t0, int64_t nt, float *v)
{
    for (int64_t j = 0; j < nt;) {
        const int64_t t = t0 + j, n = t / (g->tp * g->tq), rem = t % (g->tp * g->tq);
        const int64_t ti = rem / g->tq, tj = rem % g->tq;
        int64_t len = g->tq - tj;
        if (len > nt - j) len = nt - j;
        if (len > WINO_RUN) len = WINO_RUN;
        input_run(g, in, n, ti, tj, len, v, j);
        j += len;
    }
}

static void output_transform(const wino_geom *g, const float *m, int64_t t0, int64_t nt, float *out, int acc)
{
    for (int64_t j = 0; j < nt;) {
        const int64_t t = t0 + j, n = t / (g->tp * g->tq), rem = t % (g->tp * g->tq);
        const int64_t ti = rem / g->tq, tj = rem % g->tq;
        int64_t len = g->tq - tj;
        if (len > nt - j) len = nt - j;
        if (len > WINO_RUN) len = WINO_RUN;
        output_run(g, m, n, ti, tj, len, j, out, acc);
        j += len;
    }
}

/* M[a*4 + b][o][j0 + j] = (A dy A^T)[a][b] for the 2x2 output-gradient tile dy of tile
 * (n, ti, tj0 + j), zero outside the output: the adjoint of output_run. */
static void dy_run(const wino_geom *g, const float *dy, int64_t n, int64_t ti, int64_t tj0, int64_t len,
                   float *m, int64_t j0)
{
    const int64_t ld = g->chunk, plane = g->co * ld;
    const int64_t cols = 2 * len < g->wo - 2 * tj0 ? 2 * len : g->wo - 2 * tj0;
    const int rows = 2 * ti + 1 < g->ho ? 2 : 1;
    float row[2][2 * WINO_RUN];
    for (int64_t o = 0; o < g->co; o++) {
        const float *y0, *y1;
        const float *src = dy + ((n * g->co + o) * g->ho + 2 * ti) * g->wo + 2 * tj0;
        if (rows == 2 && cols == 2 * len) { /* the whole 2 x 2len block is inside the output */
            y0 = src;
            y1 = src + g->wo;
        } else {
            y0 = row[0];
            y1 = row[1];
        }
        for (int a = 0; a < 2 && y0 == row[0]; a++) {
            if (a < rows) {
                memcpy(row[a], dy + ((n * g->co + o) * g->ho + 2 * ti + a) * g->wo + 2 * tj0,
                       (size_t)cols * sizeof(float));
                for (int64_t k = cols; k < 2 * len; k++) row[a][k] = 0.0f;
            } else {
                memset(row[a], 0, (size_t)(2 * len) * sizeof(float));
            }
        }
        float *mo = m + o * ld + j0;
#pragma omp simd
        for (int64_t j = 0; j < len; j++) {
            const float y00 = y0[2 * j], y01 = y0[2 * j + 1], y10 = y1[2 * j], y11 = y1[2 * j + 1];
            /* rows of A dy: (y0), (y0 + y1), (y0 - y1), (-y1), each over the two columns */
            const float t[4][2] = {{y00, y01}, {y00 + y10, y01 + y11}, {y00 - y10, y01 - y11}, {-y10, -y11}};
            for (int a = 0; a < 4; a++) {
                mo[(a * 4 + 0) * plane + j] = t[a][0];
                mo[(a * 4 + 1) * plane + j] = t[a][0] + t[a][1];
                mo[(a * 4 + 2) * plane + j] = t[a][0] - t[a][1];
                mo[(a * 4 + 3) * plane + j] = -t[a][1];
            }
        }
    }
}

static void dy_transform(const wino_geom *g, const float *dy, int64_t t0, int64_t nt, float *m)
{
    for (int64_t j = 0; j < nt;) {
        const int64_t t = t0 + j, n = t / (g->tp * g->tq), rem = t % (g->tp * g->tq);
        const int64_t ti = rem / g->tq, tj = rem % g->tq;
        int64_t len = g->tq - tj;
        if (len > nt - j) len = nt - j;
        if (len > WINO_RUN) len = WINO_RUN;
        dy_run(g, dy, n, ti, tj, len, m, j);
        j += len;
    }
}

/* dU[xi] = sum over this thread's tiles of dM[xi] V[xi]^T (the first chunk overwrites). */
static void filter_tiles(const cpu_device *d, const wino_geom *g, const float *x, const float *dy, float *slot,
                         int64_t lo, int64_t hi)
{
    float *v = slot, *m = slot + g->v_floats, *du = m + g->m_floats;
    const int ld = (int)g->chunk;
    if (lo >= hi) memset(du, 0, g->du_floats * sizeof(float));
    for (int64_t t0 = lo; t0 < hi; t0 += g->chunk) {
        const int64_t nt = hi - t0 < g->chunk ? hi - t0 : g->chunk;
        input_transform(g, x, t0, nt, v);
        dy_transform(g, dy, t0, nt, m);
        for (int xi = 0; xi < 16; xi++)
            cpu_sgemm(d, 0, 1, (int)g->co, (int)g->ci, (int)nt, 1.0f, m + (size_t)xi * g->co * ld, ld,
                      v + (size_t)xi * g->ci * ld, ld, t0 == lo ? 0.0f : 1.0f, du + (size_t)xi * g->co * g->ci,
                      (int)g->ci);
    }
}

/* dw[o, i] (+)= sum over slots of G^T dU_slot G, for pairs lo..hi, in slot order;
 * G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]. Each slot's partial is mapped back to the
 * filter domain before the sum: then a device whose threads split a batch sums its filter
 * gradient the way as many one-thread devices and the group's reduction do (each device maps
 * its own partial, the group adds the results), instead of adding in the transformed domain,
 * which measured 1.7e-6 apart from the 2-device result after 2 steps (4e-7 with im2col). */
static void filter_gradient_out(const wino_geom *g, const float *ws, int slots, float *dw, int acc, int64_t lo,
                                int64_t hi)
{
    const size_t pairs = (size_t)(g->co * g->ci);
    for (int64_t pair = lo; pair < hi; pair++) {
        float sum[9] = {0};
        for (int t = 0; t < slots; t++) {
            const float *part = ws + (size_t)t * g->slot_floats + g->v_floats + g->m_floats + (size_t)pair;
            float du[4][4];
            for (int xi = 0; xi < 16; xi++) du[xi / 4][xi % 4] = part[(size_t)xi * pairs];
            float tt[3][4]; /* G^T dU */
            for (int b = 0; b < 4; b++) {
                tt[0][b] = du[0][b] + 0.5f * (du[1][b] + du[2][b]);
                tt[1][b] = 0.5f * (du[1][b] - du[2][b]);
                tt[2][b] = 0.5f * (du[1][b] + du[2][b]) + du[3][b];
            }
            for (int r = 0; r < 3; r++) {
                const float v[3] = {tt[r][0] + 0.5f * (tt[r][1] + tt[r][2]), 0.5f * (tt[r][1] - tt[r][2]),
                                    0.5f * (tt[r][1] + tt[r][2]) + tt[r][3]};
                for (int s2 = 0; s2 < 3; s2++) sum[r * 3 + s2] = t == 0 ? v[s2] : sum[r * 3 + s2] + v[s2];
            }
        }
        float *dp = dw + pair * 9;
        for (int k = 0; k < 9; k++) dp[k] = acc ? dp[k] + sum[k] : sum[k];
    }
}

static pt_status filter_gradient(const cpu_device *d, const pt_op *op, const wino_geom *g)
{
    const float *x = cpu_f32(&op->t[0]), *dy = cpu_f32(&op->t[2]);
    float *dw = cpu_f32(&op->t[1]);
    float *ws = (float *)cpu_ptr(op->workspace);
    const int64_t pairs = g->ci * g->co;
    const int slots = g->slots;
    cpu_blas_region_begin(d);
#pragma omp parallel num_threads(d->threads)
    {
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        float *slot = ws + (size_t)tid * g->slot_floats;
        filter_tiles(d, g, x, dy, slot, g->tiles * tid / nth, g->tiles * (tid + 1) / nth);
        /* slots a smaller team did not reach hold no partial: clear them before the sum */
        for (int t = nth + tid; t < slots; t += nth)
            memset(ws + (size_t)t * g->slot_floats + g->v_floats + g->m_floats, 0, g->du_floats * sizeof(float));
#pragma omp barrier
        filter_gradient_out(g, ws, slots, dw, op->accumulate, pairs * tid / nth, pairs * (tid + 1) / nth);
    }
    cpu_blas_region_end(d);
    return PT_OK;
}

static void run_tiles(const cpu_device *d, const wino_geom *g, const float *u, const float *in, float *out,
                      int acc, float *slot, int64_t lo, int64_t hi)
{
    float *v = slot, *m = slot + g->v_floats;
    const int ld = (int)g->chunk;
    for (int64_t t0 = lo; t0 < hi; t0 += g->chunk) {
        const int64_t nt = hi - t0 < g->chunk ? hi - t0 : g->chunk;
        input_transform(g, in, t0, nt, v);
        for (int xi = 0; xi < 16; xi++)
            cpu_sgemm(d, 0, 0, (int)g->co, (int)nt, (int)g->ci, 1.0f, u + (size_t)xi * g->co * g->ci, (int)g->ci,
                      v + (size_t)xi * g->ci * ld, ld, 0.0f, m + (size_t)xi * g->co * ld, ld);
        output_transform(g, m, t0, nt, out, acc);
    }
}

pt_status cpu_winograd_run(const cpu_device *d, const pt_op *op, pt_error *err)
{
    const wino_geom g = geom_of(d, op);
    if (op->workspace_bytes < g.bytes)
        return pt_fail(err, PT_ERR_INVALID, "cpu %s: needs a workspace of %zu bytes (ask workspace_size), got %zu",
                       pt_op_name(op->kind), g.bytes, op->workspace_bytes);
    if (op->kind == PT_OP_CONV2D_BWD_FILTER) {
        if (g.n == 0) {
            if (!op->accumulate) memset(cpu_f32(&op->t[1]), 0, (size_t)(g.co * g.ci * 9) * sizeof(float));
            return PT_OK;
        }
        return filter_gradient(d, op, &g);
    }
    const int fwd = op->kind == PT_OP_CONV2D_FWD;
    const float *w = cpu_f32(&op->t[1]);
    const float *in = fwd ? cpu_f32(&op->t[0]) : cpu_f32(&op->t[2]);
    float *out = fwd ? cpu_f32(&op->t[2]) : cpu_f32(&op->t[0]);
    if (g.n == 0) return PT_OK;
    float *ws = (float *)cpu_ptr(op->workspace), *u = ws;
    const int64_t pairs = g.ci * g.co;
    /* Threads each take a contiguous range of tiles; the GEMMs inside run on one thread. */
    cpu_blas_region_begin(d);
#pragma omp parallel num_threads(d->threads)
    {
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        filter_transform(&g, w, fwd, u, pairs * tid / nth, pairs * (tid + 1) / nth);
#pragma omp barrier
        float *slot = ws + g.u_floats + (size_t)tid * g.slot_floats;
        run_tiles(d, &g, u, in, out, op->accumulate, slot, g.tiles * tid / nth, g.tiles * (tid + 1) / nth);
    }
    cpu_blas_region_end(d);
    return PT_OK;
}
