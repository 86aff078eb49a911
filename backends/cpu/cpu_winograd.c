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
 * instead, summed over threads in a fixed order at the end. Where there are too few tiles
 * per thread for that (wide channels on small maps), all threads share one V and M per
 * block of tiles instead and split the 16 GEMMs (see cpu_winograd_mode). Tiles run over
 * (n, tile row, tile column) flat, so that small feature maps still give wide GEMMs. All
 * scratch comes from the op's workspace. */
#include <omp.h>
#include <string.h>

#include "backends/cpu/cpu_internal.h"

/* Per-thread scratch budget (floats) for V and M, which sets the tile chunk: a quarter of the
 * L2 cache (smaller measured faster than 1-4 MiB on baseline's layers), so that the GEMMs and
 * transforms work in cache; but never fewer than WINO_MIN_CHUNK tiles, below which the
 * GEMMs get too narrow for the kernel. The filter gradient too: twice this budget measured
 * 1.08x its time on resnet18's 64-channel layers and no faster on wider ones. */
#define WINO_SLOT_FLOATS (1u << 17)
#define WINO_MIN_CHUNK 64
/* Scratch budget (floats) for the shared V and M blocks: 32 MiB, which holds ResNet's last
 * stage at batch 32 whole; larger batches take several blocks. */
#define WINO_SHARED_FLOATS (1u << 23)
/* The GEMMs' inner dimension (input channels; output ones for the data gradient) below which
 * they are too shallow for the kernel. */
#define WINO_MIN_CHANNELS 16
/* Floats between the end of one position's plane of V (M) and the next. The transforms write
 * or read all 16 planes at once; planes a multiple of 4 KiB apart (64 channels x 64 tiles)
 * fall into the same L1 cache sets. One cache line of padding measured 0.97x resnet18's
 * Winograd time in all (0.80x-0.83x on its last stage's filter gradient). */
#define WINO_PLANE_PAD 16
/* Output width below which the filter gradient in chunks measured slower than im2col
 * (Fashion-MNIST's baseline, batch 64: 14x14 maps 16.5 vs 24.0 ms, 7x7 15.2 vs 20.7 ms, and
 * still 1.5x-1.7x slower with several tile rows per transform run; 16x16 and wider: Winograd
 * 1.4x-1.5x faster). */
#define WINO_FILTER_MIN_WIDTH 16

typedef struct wino_geom {
    int64_t n, ci, co, hi, wi, ho, wo, pad;
    int64_t tp, tq, tiles; /* tile rows, tile columns per sample; tiles in all */
    int64_t chunk;         /* tiles per GEMM: a thread's chunk, or the shared block */
    int64_t vstride, mstride; /* floats from one position's plane of V (M) to the next */
    int slots;             /* scratch sets: one per thread, or one shared */
    int shared;
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

/* Chunks where each thread has at least as many tiles as the widest channel count; with fewer
 * tiles (ResNet's last stage at 64x64 input: 128 tiles per thread, 512 channels) each chunk
 * re-reads the whole transformed filter and its GEMMs get narrow, and shared blocks, whose
 * GEMMs take all the block's tiles (threads split the 16 positions), measured 0.63x-0.74x
 * im2col's time there. Shared blocks only where the 2x2 tiles cover the map with at most a
 * quarter wasted: on 3x3 maps (16 outputs computed per 9 used) they measured 1.6x-1.9x
 * im2col's time. */
cpu_wino_mode cpu_winograd_mode(const cpu_device *d, const pt_op *op)
{
    if (!cpu_winograd_applies(op)) return CPU_WINO_OFF;
    if (d->conv_force_mode == 3) return CPU_WINO_CHUNKS; /* tests */
    if (d->conv_force_mode == 4) return CPU_WINO_SHARED;
    const pt_tensor *x = &op->t[0], *w = &op->t[1], *y = &op->t[2];
    const int64_t c = x->dim[1], k = w->dim[0], wide = c > k ? c : k;
    if ((op->kind == PT_OP_CONV2D_BWD_DATA ? k : c) < WINO_MIN_CHANNELS) return CPU_WINO_OFF;
    const int64_t ho = y->dim[2], wo = y->dim[3], tp = (ho + 1) / 2, tq = (wo + 1) / 2;
    const int64_t tiles = x->dim[0] * tp * tq;
    if (tiles / (d->threads > 0 ? d->threads : 1) >= wide) {
        if (op->kind == PT_OP_CONV2D_BWD_FILTER && wo < WINO_FILTER_MIN_WIDTH) return CPU_WINO_OFF;
        return CPU_WINO_CHUNKS;
    }
    return ho * wo >= 3 * tp * tq ? CPU_WINO_SHARED : CPU_WINO_OFF;
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
    g.shared = cpu_winograd_mode(d, op) == CPU_WINO_SHARED;
    int64_t chunk;
    if (g.shared) {
        g.slots = 1;
        chunk = (int64_t)WINO_SHARED_FLOATS / (16 * (g.ci + g.co));
        chunk = chunk / 16 * 16;
        if (chunk < WINO_MIN_CHUNK) chunk = WINO_MIN_CHUNK;
        if (chunk > g.tiles) chunk = g.tiles;
    } else {
        g.slots = d->threads;
        const int64_t per = (g.tiles + g.slots - 1) / g.slots;
        chunk = (int64_t)WINO_SLOT_FLOATS / (16 * (g.ci + g.co));
        chunk = chunk / 16 * 16;
        if (chunk < WINO_MIN_CHUNK) chunk = WINO_MIN_CHUNK;
        if (chunk > per) chunk = per;
    }
    if (d->conv_force_mode >= 3 && d->conv_force_group > 0) chunk = d->conv_force_group; /* tests */
    if (chunk < 1) chunk = 1;
    g.chunk = chunk;
    g.u_floats = filt ? 0 : round16((size_t)(16 * g.ci * g.co));
    g.vstride = g.ci * chunk + WINO_PLANE_PAD;
    g.mstride = g.co * chunk + WINO_PLANE_PAD;
    g.v_floats = round16((size_t)(16 * g.vstride));
    g.m_floats = round16((size_t)(16 * g.mstride));
    g.du_floats = filt ? round16((size_t)(16 * g.ci * g.co)) : 0;
    g.slot_floats = g.v_floats + g.m_floats + g.du_floats;
    g.bytes = (g.u_floats + (size_t)g.slots * g.slot_floats) * sizeof(float);
    return g;
}

size_t cpu_winograd_workspace(const cpu_device *d, const pt_op *op)
{
    return geom_of(d, op).bytes;
}

/* U[xi] = G g G^T of each 3x3 filter g, in the filter tensor's own order, so that the reads
 * and the 16 planes' writes are all contiguous: for the forward pass w[o, i], which makes
 * U[xi] a [Co][Ci] matrix; for the data gradient w[i, o] rotated by 180 degrees, which makes
 * U[xi] a [Ci][Co] matrix that the GEMMs read transposed (gathering it into [Co][Ci] order
 * instead measured 8-13 ms for 512 x 512 channels, against 2 ms). Filters run FT_BLOCK at a
 * time, one per vector lane. */
#define FT_BLOCK 16

static void filter_transform(const wino_geom *g, const float *w, int fwd, float *u, int64_t lo, int64_t hi)
{
    const size_t pairs = (size_t)(g->co * g->ci);
    for (int64_t p0 = lo; p0 < hi; p0 += FT_BLOCK) {
        const int n = hi - p0 < FT_BLOCK ? (int)(hi - p0) : FT_BLOCK;
        float k[9][FT_BLOCK], out[16][FT_BLOCK];
        for (int j = 0; j < n; j++) {
            const float *src = w + (p0 + j) * 9;
            for (int e = 0; e < 9; e++) k[e][j] = src[fwd ? e : 8 - e];
        }
        for (int j = n; j < FT_BLOCK; j++)
            for (int e = 0; e < 9; e++) k[e][j] = 0.0f;
#pragma omp simd
        for (int j = 0; j < FT_BLOCK; j++) {
            float t[4][3]; /* G k */
            for (int s = 0; s < 3; s++) {
                t[0][s] = k[s][j];
                t[1][s] = 0.5f * (k[s][j] + k[3 + s][j] + k[6 + s][j]);
                t[2][s] = 0.5f * (k[s][j] - k[3 + s][j] + k[6 + s][j]);
                t[3][s] = k[6 + s][j];
            }
            for (int a = 0; a < 4; a++) {
                out[a * 4 + 0][j] = t[a][0];
                out[a * 4 + 1][j] = 0.5f * (t[a][0] + t[a][1] + t[a][2]);
                out[a * 4 + 2][j] = 0.5f * (t[a][0] - t[a][1] + t[a][2]);
                out[a * 4 + 3][j] = t[a][2];
            }
        }
        for (int xi = 0; xi < 16; xi++) memcpy(u + xi * pairs + (size_t)p0, out[xi], (size_t)n * sizeof(float));
    }
}

/* M[xi] (cols columns, leading dimension ld) = U[xi] V[xi]; U[xi] is stored transposed for the
 * data gradient (see filter_transform). */
static void position_gemm(const cpu_device *d, const wino_geom *g, int fwd, const float *u, const float *v, float *m,
                          int64_t cols, int ld)
{
    cpu_sgemm(d, !fwd, 0, (int)g->co, (int)cols, (int)g->ci, 1.0f, u, fwd ? (int)g->ci : (int)g->co, v, ld, 0.0f, m,
              ld);
}

/* Tiles are transformed a run at a time: the tiles of one tile row of one sample (at most
 * WINO_RUN of them), so that every loop below runs over contiguous memory and vectorises. */
#define WINO_RUN 128

/* V[a*4 + b][c][j0 + j] = (B^T d B)[a][b] for the 4x4 patch d of tile (n, ti, tj0 + j), for
 * every input channel c; B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]. */
static void input_run(const wino_geom *g, const float *in, int64_t n, int64_t ti0, int64_t nrows, int64_t tj0,
                      int64_t len, float *v, int64_t j0)
{
    const int64_t ld = g->chunk, plane = g->vstride, width = 2 * len + 2, w0 = 2 * tj0 - g->pad;
    /* columns of the input this run reads that lie inside the image */
    int64_t k0 = -w0 > 0 ? -w0 : 0, k1 = g->wi - w0 < width ? g->wi - w0 : width;
    if (k1 < k0) k1 = k0;
    float e[4][2 * WINO_RUN + 2];
    static const float zeros[2 * WINO_RUN + 2];
    for (int64_t c = 0; c < g->ci; c++)
    for (int64_t ti = ti0; ti < ti0 + nrows; ti++) {
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
        float *vc = v + c * ld + j0 + (ti - ti0) * len;
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
static void output_run(const wino_geom *g, const float *m, int64_t n, int64_t ti0, int64_t nrows, int64_t tj0,
                       int64_t len, int64_t j0, float *out, int acc)
{
    const int64_t ld = g->chunk, plane = g->mstride;
    const int64_t cols = 2 * len < g->wo - 2 * tj0 ? 2 * len : g->wo - 2 * tj0;
    float r[2][2 * WINO_RUN];
    for (int64_t o = 0; o < g->co; o++)
    for (int64_t ti = ti0; ti < ti0 + nrows; ti++) {
        const int rows = 2 * ti + 1 < g->ho ? 2 : 1;
        const float *mo = m + o * ld + j0 + (ti - ti0) * len;
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

/* Tiles per run of whole tile rows: a run takes as many whole tile rows of one sample as fit
 * (each channel's rows one after another), so that each line of V and M is written or read
 * whole before the next channel's; rows longer than this, one at a time. Up to 128 tiles
 * (in practice: the whole chunk) measured 0.90x-0.93x the time of 32 on 64x64 maps with 64
 * channels and 0.96x-0.98x on resnet18's 32x32 and 16x16 layers. */
#define WINO_ROW_TILES 128

/* The run that starts at flat tile t with `left` tiles to go: sample n, tile row ti, tile
 * column tj, len tiles per row (the rest of the row, at most WINO_RUN and `left`), and nrows
 * whole rows when it starts a row. */
typedef struct wino_run {
    int64_t n, ti, tj, len, nrows;
} wino_run;

static wino_run run_at(const wino_geom *g, int64_t t, int64_t left)
{
    wino_run r;
    const int64_t rem = t % (g->tp * g->tq);
    r.n = t / (g->tp * g->tq);
    r.ti = rem / g->tq;
    r.tj = rem % g->tq;
    r.len = g->tq - r.tj;
    if (r.len > left) r.len = left;
    if (r.len > WINO_RUN) r.len = WINO_RUN;
    r.nrows = 1;
    if (r.tj == 0 && r.len == g->tq) {
        int64_t rows = WINO_ROW_TILES / g->tq;
        if (rows > g->tp - r.ti) rows = g->tp - r.ti;
        if (rows > left / g->tq) rows = left / g->tq;
        if (rows > 1) r.nrows = rows;
    }
    return r;
}

/* Tiles t0 .. t0+nt-1 (flat over n, tile row, tile column), run by run. */
static void input_transform(const wino_geom *g, const float *in, int64_t t0, int64_t nt, float *v)
{
    for (int64_t j = 0; j < nt;) {
        const wino_run r = run_at(g, t0 + j, nt - j);
        input_run(g, in, r.n, r.ti, r.nrows, r.tj, r.len, v, j);
        j += r.nrows * r.len;
    }
}

static void output_transform(const wino_geom *g, const float *m, int64_t t0, int64_t nt, float *out, int acc)
{
    for (int64_t j = 0; j < nt;) {
        const wino_run r = run_at(g, t0 + j, nt - j);
        output_run(g, m, r.n, r.ti, r.nrows, r.tj, r.len, j, out, acc);
        j += r.nrows * r.len;
    }
}

/* M[a*4 + b][o][j0 + j] = (A dy A^T)[a][b] for the 2x2 output-gradient tile dy of tile
 * (n, ti, tj0 + j), zero outside the output: the adjoint of output_run. */
static void dy_run(const wino_geom *g, const float *dy, int64_t n, int64_t ti0, int64_t nrows, int64_t tj0,
                   int64_t len, float *m, int64_t j0)
{
    const int64_t ld = g->chunk, plane = g->mstride;
    const int64_t cols = 2 * len < g->wo - 2 * tj0 ? 2 * len : g->wo - 2 * tj0;
    float row[2][2 * WINO_RUN];
    for (int64_t o = 0; o < g->co; o++)
    for (int64_t ti = ti0; ti < ti0 + nrows; ti++) {
        const int rows = 2 * ti + 1 < g->ho ? 2 : 1;
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
        float *mo = m + o * ld + j0 + (ti - ti0) * len;
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
        const wino_run r = run_at(g, t0 + j, nt - j);
        dy_run(g, dy, r.n, r.ti, r.nrows, r.tj, r.len, m, j);
        j += r.nrows * r.len;
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
            cpu_sgemm(d, 0, 1, (int)g->co, (int)g->ci, (int)nt, 1.0f, m + (size_t)xi * g->mstride, ld,
                      v + (size_t)xi * g->vstride, ld, t0 == lo ? 0.0f : 1.0f, du + (size_t)xi * g->co * g->ci,
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

/* Shared blocks: all threads transform their share of the block's tiles into one V (and dM),
 * then run the block's 16 position GEMMs, each over all the block's tiles, split into
 * lcm(16, threads) equal items (positions, cut into `slices` pieces when the threads do not
 * divide 16), then transform their share of M back. */
static int64_t shared_slices(int nth)
{
    int64_t a = 16, b = nth;
    while (b) {
        const int64_t r = a % b;
        a = b;
        b = r;
    }
    return nth / a;
}

/* This thread's share [*lo, *hi) of the block of tiles from t0; returns the block's size. */
static int64_t block_share(const wino_geom *g, int64_t t0, int tid, int nth, int64_t *lo, int64_t *hi)
{
    const int64_t nt = g->tiles - t0 < g->chunk ? g->tiles - t0 : g->chunk;
    *lo = nt * tid / nth;
    *hi = nt * (tid + 1) / nth;
    return nt;
}

/* Work item it: position *xi and the range [*a, *b) of its slice of `extent`. */
static void item_slice(int64_t it, int64_t slices, int64_t extent, int64_t *xi, int64_t *a, int64_t *b)
{
    const int64_t sl = it % slices;
    *xi = it / slices;
    *a = extent * sl / slices;
    *b = extent * (sl + 1) / slices;
}

static void run_shared(const cpu_device *d, const wino_geom *g, int fwd, const float *u, const float *in,
                       float *out, int acc, float *ws, int tid, int nth)
{
    float *v = ws, *m = ws + g->v_floats;
    const int ld = (int)g->chunk;
    const int64_t slices = shared_slices(nth), items = 16 * slices;
    for (int64_t t0 = 0; t0 < g->tiles; t0 += g->chunk) {
        int64_t lo, hi;
        const int64_t nt = block_share(g, t0, tid, nth, &lo, &hi);
        input_transform(g, in, t0 + lo, hi - lo, v + lo);
        /* (also: every thread has read the previous block's M before the GEMMs overwrite it) */
#pragma omp barrier
        for (int64_t it = items * tid / nth; it < items * (tid + 1) / nth; it++) {
            int64_t xi, c0, c1;
            item_slice(it, slices, nt, &xi, &c0, &c1);
            position_gemm(d, g, fwd, u + (size_t)xi * g->co * g->ci, v + (size_t)xi * g->vstride + c0,
                          m + (size_t)xi * g->mstride + c0, c1 - c0, ld);
        }
#pragma omp barrier
        output_transform(g, m + lo, t0 + lo, hi - lo, out, acc);
    }
}

/* dU[xi] = sum over all tiles of dM[xi] V[xi]^T, one dU for all threads: items cut the rows
 * (output channels) of dU, so each element is summed over the tiles in one order whatever
 * the thread count. */
static void filter_shared(const cpu_device *d, const wino_geom *g, const float *x, const float *dy, float *ws,
                          int tid, int nth)
{
    float *v = ws, *m = ws + g->v_floats, *du = m + g->m_floats;
    const int ld = (int)g->chunk;
    const int64_t slices = shared_slices(nth), items = 16 * slices;
    for (int64_t t0 = 0; t0 < g->tiles; t0 += g->chunk) {
        int64_t lo, hi;
        const int64_t nt = block_share(g, t0, tid, nth, &lo, &hi);
        input_transform(g, x, t0 + lo, hi - lo, v + lo);
        dy_transform(g, dy, t0 + lo, hi - lo, m + lo);
#pragma omp barrier
        for (int64_t it = items * tid / nth; it < items * (tid + 1) / nth; it++) {
            int64_t xi, r0, r1;
            item_slice(it, slices, g->co, &xi, &r0, &r1);
            cpu_sgemm(d, 0, 1, (int)(r1 - r0), (int)g->ci, (int)nt, 1.0f, m + (size_t)xi * g->mstride + (size_t)r0 * ld,
                      ld, v + (size_t)xi * g->vstride, ld, t0 == 0 ? 0.0f : 1.0f,
                      du + ((size_t)xi * g->co + r0) * g->ci, (int)g->ci);
        }
#pragma omp barrier
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
        if (g->shared) {
            filter_shared(d, g, x, dy, ws, tid, nth);
        } else {
            filter_tiles(d, g, x, dy, ws + (size_t)tid * g->slot_floats, g->tiles * tid / nth,
                         g->tiles * (tid + 1) / nth);
            /* slots a smaller team did not reach hold no partial: clear them before the sum */
            for (int t = nth + tid; t < slots; t += nth)
                memset(ws + (size_t)t * g->slot_floats + g->v_floats + g->m_floats, 0, g->du_floats * sizeof(float));
#pragma omp barrier
        }
        filter_gradient_out(g, ws, slots, dw, op->accumulate, pairs * tid / nth, pairs * (tid + 1) / nth);
    }
    cpu_blas_region_end(d);
    return PT_OK;
}

static void run_tiles(const cpu_device *d, const wino_geom *g, int fwd, const float *u, const float *in, float *out,
                      int acc, float *slot, int64_t lo, int64_t hi)
{
    float *v = slot, *m = slot + g->v_floats;
    const int ld = (int)g->chunk;
    for (int64_t t0 = lo; t0 < hi; t0 += g->chunk) {
        const int64_t nt = hi - t0 < g->chunk ? hi - t0 : g->chunk;
        input_transform(g, in, t0, nt, v);
        for (int xi = 0; xi < 16; xi++)
            position_gemm(d, g, fwd, u + (size_t)xi * g->co * g->ci, v + (size_t)xi * g->vstride,
                          m + (size_t)xi * g->mstride, nt, ld);
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
    /* In chunks, threads each take a contiguous range of tiles; the GEMMs run on one thread. */
    cpu_blas_region_begin(d);
#pragma omp parallel num_threads(d->threads)
    {
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        filter_transform(&g, w, fwd, u, pairs * tid / nth, pairs * (tid + 1) / nth);
#pragma omp barrier
        if (g.shared)
            run_shared(d, &g, fwd, u, in, out, op->accumulate, ws + g.u_floats, tid, nth);
        else
            run_tiles(d, &g, fwd, u, in, out, op->accumulate, ws + g.u_floats + (size_t)tid * g.slot_floats,
                      g.tiles * tid / nth, g.tiles * (tid + 1) / nth);
    }
    cpu_blas_region_end(d);
    return PT_OK;
}
