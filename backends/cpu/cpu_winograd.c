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
 * scratch comes from the op's workspace.
 *
 * bf16 math on the AVX512-BF16 kernel (cpu_gemm_lowp.c) multiplies the transformed operands
 * rounded to bf16, products summed in float32: the same convolution with bf16 products
 * (the transforms themselves in float32). Each operand is written in the kernel's layout by
 * whatever makes it and rounded once: U packed once per op, V packed by the input transform
 * (pairs of channels); for the filter gradient, V and dM as bf16 rows along the tiles (the
 * GEMM's k), dM read by the kernel in place and V packed by a transpose of dwords. M, dU and
 * everything after them stay float32.
 *
 * A 16-bit x or y (PT_BF16, PT_F16: activations stored in 16 bits, cpu_act16.c) is staged run
 * by run: the input rows a run of tiles reads widened into the thread's staging, laid out as
 * one sample, before its transform; the output rows it writes rounded from the thread's
 * staging after it. The transforms then run as on float32 operands, on the same values. */
#include <omp.h>
#include <string.h>

#include "backends/cpu/cpu_internal.h"

#if CPU_BF16_BUILT
#include <immintrin.h>
#endif

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
/* bf16: tiles per chunk where the channels (in and out together) are at most WINO_BF16_WIDE
 * (wider layers keep the float32 rule). Its V is half the size and its GEMMs twice as fast,
 * and wider GEMMs amortise each chunk's pass over U: against 64 tiles, 128 measured 0.88x-0.92x
 * the time of resnet18's 64-channel layers (batch 16, 2 threads; its filter gradient 0.93x),
 * 0.92x the 128-channel filter gradient and the same on 256 channels; 96 no better. */
#define WINO_BF16_CHUNK 128
#define WINO_BF16_WIDE 512
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
 * 1.4x-1.5x faster). Not in bf16, whose filter gradient writes its transforms in bf16 and
 * multiplies at twice the rate: there chunks measured faster on the same maps (batch 64,
 * 2 threads: 14x14 6.2 vs 8.0 ms, 7x7 6.0 vs 8.2 ms; 8x8 with 256 -> 512 channels 20 vs
 * 36 ms). */
#define WINO_FILTER_MIN_WIDTH 16

typedef struct wino_geom {
    int64_t n, ci, co, hi, wi, ho, wo, pad;
    int64_t tp, tq, tiles; /* tile rows, tile columns per sample; tiles in all */
    int64_t chunk;         /* tiles per GEMM: a thread's chunk, or the shared block */
    int64_t vstride, mstride; /* floats from one position's plane of V (M) to the next */
    int slots;             /* scratch sets: one per thread, or one shared */
    int shared;
    int bf16;              /* bf16 math on the AVX512-BF16 kernel (bf16_winograd) */
    size_t u_floats, v_floats, m_floats, du_floats, slot_floats, bytes;
    /* bf16, forward and data gradient: U packed (u_floats holds it), upk_dwords per position;
     * V packed too (v_floats holds it), vpk_dwords per position. Filter gradient: V and dM as
     * bf16 rows of ldh elements along the tiles (v_floats and m_floats hold them), vpk_halves
     * and mpk_halves elements per position; per thread, pack_floats for V packed, after the
     * slots. */
    size_t upk_dwords, vpk_dwords, pack_floats;
    int64_t ldh;
    size_t vpk_halves, mpk_halves;
    /* 16-bit x (forward, filter gradient) or y (forward): per thread, xs_floats and ys_floats
     * of staging, one sample each, at stage (set by the run) */
    pt_dtype xdt, ydt;
    size_t xs_floats, ys_floats;
    const uint16_t *x16;
    uint16_t *y16;
    float *stage;
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

/* In bf16 math the GEMMs multiply the transformed operands rounded to bf16 (V = B^T d B and
 * U = G g G^T; for the filter gradient A dy A^T and V), with float32 sums: bf16 products and
 * float32 sums of the same convolution, the transforms themselves in float32. The other
 * modes are emulated (rounding in scratch, then SGEMM) and keep im2col, whose rounded
 * operands are x, w and dy themselves. */
static int bf16_winograd(const cpu_device *d, const pt_op *op)
{
    return op->math == PT_PREC_BF16 && d->bf16_kernel;
}

int cpu_winograd_math(const cpu_device *d, const pt_op *op)
{
    return op->math == PT_PREC_FP32 || bf16_winograd(d, op);
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
        if (op->kind == PT_OP_CONV2D_BWD_FILTER && wo < WINO_FILTER_MIN_WIDTH && !bf16_winograd(d, op))
            return CPU_WINO_OFF;
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
    g.bf16 = bf16_winograd(d, op);
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
        if (g.bf16 && g.ci + g.co <= WINO_BF16_WIDE) chunk = WINO_BF16_CHUNK;
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
    if (g.bf16) {
        if (filt) {
            /* rows of an even length (whole pairs), planes padded as the float ones */
            g.ldh = (chunk + 1) / 2 * 2;
            g.vpk_halves = (size_t)(g.ci * g.ldh + 2 * WINO_PLANE_PAD);
            g.mpk_halves = (size_t)(g.co * g.ldh + 2 * WINO_PLANE_PAD);
            g.v_floats = round16(16 * g.vpk_halves / 2);
            g.m_floats = round16(16 * g.mpk_halves / 2);
            g.pack_floats = round16(cpu_bf16_packed_b_dwords((int)chunk, (int)g.ci));
        } else {
            g.upk_dwords = cpu_bf16_packed_a_dwords((int)g.co, (int)g.ci);
            g.u_floats = round16(16 * g.upk_dwords);
            /* padded like the float planes: the transform writes all 16 at once */
            g.vpk_dwords = cpu_bf16_packed_b_dwords((int)g.ci, (int)chunk) + WINO_PLANE_PAD;
            g.v_floats = round16(16 * g.vpk_dwords);
        }
    }
    g.du_floats = filt ? round16((size_t)(16 * g.ci * g.co)) : 0;
    g.slot_floats = g.v_floats + g.m_floats + g.du_floats;
    g.bytes = (g.u_floats + (size_t)g.slots * g.slot_floats + (size_t)d->threads * g.pack_floats) * sizeof(float);
    g.xdt = fwd ? x->dtype : PT_F32;
    g.ydt = op->kind == PT_OP_CONV2D_FWD ? y->dtype : PT_F32;
    g.xs_floats = g.xdt != PT_F32 ? round16((size_t)(g.ci * g.hi * g.wi)) : 0;
    g.ys_floats = g.ydt != PT_F32 ? round16((size_t)(g.co * g.ho * g.wo)) : 0;
    g.bytes += (size_t)d->threads * (g.xs_floats + g.ys_floats) * sizeof(float);
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

/* out[xi][j] = (G k_j G^T)[xi / 4][xi % 4] for the FT_BLOCK filters k_j (k[e][j]: element e of
 * filter j); G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]. */
static inline void filter_block(const float k[9][FT_BLOCK], float out[16][FT_BLOCK])
{
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
}

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
        filter_block(k, out);
        for (int xi = 0; xi < 16; xi++) memcpy(u + xi * pairs + (size_t)p0, out[xi], (size_t)n * sizeof(float));
    }
}

#if CPU_BF16_BUILT
static inline __mmask16 lanes(int64_t count)
{
    return count >= 16 ? (__mmask16)0xffff : count > 0 ? (__mmask16)((1u << count) - 1u) : 0;
}

/* bf16: U[xi] = G g G^T as 16 packed A operands ([Co][Ci], rows o, k i: cpu_internal.h's
 * layout), row panels lo..hi, made once per op. For the data gradient row o, column i is
 * input channel i's filter for output channel o of the forward pass, rotated. The 16 filters
 * of a block are a panel's 8 rows by one pair of k, in the order of a packed row (filter
 * 2r + h: row r, k 2kp + h), so that each position's 16 results, converted, are one 32-byte
 * store of the packed row (vcvtneps2bf16: round to nearest even, subnormals as zero, as the
 * GEMM's own packing rounds). */
CPU_BF16_TARGET static void filter_pack(const wino_geom *g, const float *w, int fwd, uint32_t *upk, int64_t lo,
                                        int64_t hi)
{
    const int64_t kc2 = (g->ci + 1) / 2;
    /* filter 2r + h of a block at w + base + off[2r + h] * 9 .. (gathered, element e at + e) */
    const int64_t rstride = fwd ? g->ci : 1, hstride = fwd ? 1 : g->co;
    int32_t offs[FT_BLOCK];
    for (int j = 0; j < FT_BLOCK; j++) offs[j] = (int32_t)(((j / 2) * rstride + (j & 1) * hstride) * 9);
    const __m512i off = _mm512_loadu_si512(offs);
    for (int64_t panel = lo; panel < hi; panel++) {
        const int64_t o0 = panel * CPU_BF16_MR;
        uint32_t *dst = upk + (size_t)(o0 * kc2);
        __mmask16 rows = 0; /* lanes whose row lies inside the filter tensor */
        for (int j = 0; j < FT_BLOCK; j++)
            if (o0 + j / 2 < g->co) rows |= (__mmask16)(1u << j);
        for (int64_t kp = 0; kp < kc2; kp++) {
            const __mmask16 m = 2 * kp + 1 < g->ci ? rows : (__mmask16)(rows & 0x5555); /* odd k: its pair's half */
            const float *base = w + (fwd ? o0 * g->ci + 2 * kp : 2 * kp * g->co + o0) * 9;
            _Alignas(64) float k[9][FT_BLOCK], out[16][FT_BLOCK];
            for (int e = 0; e < 9; e++)
                _mm512_store_ps(k[e], _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, off, base + (fwd ? e : 8 - e), 4));
            filter_block(k, out);
            for (int xi = 0; xi < 16; xi++)
                _mm256_storeu_si256((__m256i *)(dst + (size_t)xi * g->upk_dwords + (size_t)kp * CPU_BF16_MR),
                                    (__m256i)_mm512_cvtneps_pbh(_mm512_load_ps(out[xi])));
        }
    }
}
#else
static void filter_pack(const wino_geom *g, const float *w, int fwd, uint32_t *upk, int64_t lo, int64_t hi)
{
    (void)g, (void)w, (void)fwd, (void)upk, (void)lo, (void)hi;
}
#endif

/* bf16: M[xi]'s columns c0 .. c0+cols-1 (c0 a multiple of the panel width) = U[xi] V[xi] on the
 * packed operands. */
static void position_gemm_bf16(const wino_geom *g, const uint32_t *upk, const uint32_t *vpk, int64_t c0, float *m,
                               int64_t cols, int ld)
{
    const size_t kc2 = (size_t)(g->ci + 1) / 2;
    cpu_gemm_bf16_packed((int)g->co, (int)cols, (int)g->ci, upk, vpk + (size_t)c0 * kc2, 0.0f, m + c0, ld);
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

static const float wino_zeros[2 * WINO_RUN + 2];

/* e[a][k] = (B^T d)[a] over the columns w0 .. w0 + width - 1 of plane xp for tile row ti: the
 * four input rows' combinations, zero outside the image (columns k0 .. k1 lie inside). */
static inline void input_rows(const wino_geom *g, const float *xp, int64_t ti, int64_t w0, int64_t k0, int64_t k1,
                              int64_t width, float e[4][2 * WINO_RUN + 2])
{
    const float *rp[4]; /* the four input rows from column w0 + k0; rows outside read zeros */
    for (int a = 0; a < 4; a++) {
        const int64_t h = 2 * ti - g->pad + a;
        rp[a] = h >= 0 && h < g->hi ? xp + h * g->wi + w0 + k0 : wino_zeros;
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
}

/* v_b[j] = (row a of B^T d, times B)[b] for the len tiles of one row of e. */
static inline void input_cols(const float *ea, float *v0, float *v1, float *v2, float *v3, int64_t len)
{
#pragma omp simd
    for (int64_t j = 0; j < len; j++) {
        const float d0 = ea[2 * j], d1 = ea[2 * j + 1], d2 = ea[2 * j + 2], d3 = ea[2 * j + 3];
        v0[j] = d0 - d2;
        v1[j] = d1 + d2;
        v2[j] = d2 - d1;
        v3[j] = d1 - d3;
    }
}

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
    for (int64_t c = 0; c < g->ci; c++)
    for (int64_t ti = ti0; ti < ti0 + nrows; ti++) {
        input_rows(g, in + (n * g->ci + c) * g->hi * g->wi, ti, w0, k0, k1, width, e);
        float *vc = v + c * ld + j0 + (ti - ti0) * len;
        for (int a = 0; a < 4; a++)
            input_cols(e[a], vc + (a * 4 + 0) * plane, vc + (a * 4 + 1) * plane, vc + (a * 4 + 2) * plane,
                       vc + (a * 4 + 3) * plane, len);
    }
}

#if CPU_BF16_BUILT
/* Columns from `base` (relative to the row's start) of an image row: the lanes that lie
 * inside the row (0 .. wi). */
static inline __mmask16 row_lanes(int64_t base, int64_t wi)
{
    const int64_t lo = -base > 0 ? -base : 0, hi = wi - base < 16 ? wi - base : 16;
    return hi > lo ? (__mmask16)(lanes(hi) & ~lanes(lo)) : 0;
}

/* bf16: out[xi] = V[xi] = (B^T d B)[xi] for the 16 tiles (tile row ti, columns from tile
 * tj0 + jv) of plane xp, in registers: the four input rows read as three vectors each (masked
 * loads: zeros outside the image, nothing read outside it), combined down the rows (B^T d),
 * then across (even and odd columns by permutes: d0 = e[2j], d1 = e[2j+1], d2 = e[2j+2],
 * d3 = e[2j+3]), in the same float32 operations as input_rows and input_cols: the same values,
 * without their staging in memory, whose misaligned stores and reloads stalled. */
CPU_BF16_TARGET static inline __attribute__((always_inline)) void input_tile16(const wino_geom *g, const float *xp,
                                                                                int64_t ti, int64_t w0, int64_t jv,
                                                                                __m512 out[16])
{
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    __m512 r[4][3];
    for (int a = 0; a < 4; a++) {
        const int64_t hh = 2 * ti - g->pad + a;
        for (int q = 0; q < 3; q++) {
            const int64_t base = w0 + 2 * jv + 16 * q;
            const __mmask16 m = hh >= 0 && hh < g->hi ? row_lanes(base, g->wi) : 0;
            /* masked-off lanes are not read: the address may lie before the row */
            r[a][q] = m ? _mm512_maskz_loadu_ps(m, xp + hh * g->wi + base) : _mm512_setzero_ps();
        }
    }
    for (int q = 0; q < 3; q++) {
        const __m512 r0 = r[0][q], r1 = r[1][q], r2 = r[2][q], r3 = r[3][q];
        r[0][q] = _mm512_sub_ps(r0, r2);
        r[1][q] = _mm512_add_ps(r1, r2);
        r[2][q] = _mm512_sub_ps(r2, r1);
        r[3][q] = _mm512_sub_ps(r1, r3);
    }
    for (int a = 0; a < 4; a++) {
        const __m512 e0 = r[a][0], e1 = r[a][1], e2 = r[a][2];
        const __m512 s0 = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(e1), _mm512_castps_si512(e0), 2));
        const __m512 s1 = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(e2), _mm512_castps_si512(e1), 2));
        const __m512 d0 = _mm512_permutex2var_ps(e0, even, e1), d1 = _mm512_permutex2var_ps(e0, odd, e1);
        const __m512 d2 = _mm512_permutex2var_ps(s0, even, s1), d3 = _mm512_permutex2var_ps(s0, odd, s1);
        out[a * 4 + 0] = _mm512_sub_ps(d0, d2);
        out[a * 4 + 1] = _mm512_add_ps(d1, d2);
        out[a * 4 + 2] = _mm512_sub_ps(d2, d1);
        out[a * 4 + 3] = _mm512_sub_ps(d1, d3);
    }
}

/* bf16: V[xi] for the run's tiles as packed B operands (k: channels, columns: tiles j0 ..),
 * written by the transform itself, a pair of channels (one packed row) at a time, 16 tiles at
 * a time (input_tile16); each position's values for the two channels rounded and interleaved
 * (vcvtne2ps2bf16, then a word permute into (c, c + 1) dwords) and stored into its panels; an
 * odd last channel pairs with zeros. */
CPU_BF16_TARGET static void input_run_bf16(const wino_geom *g, const float *in, int64_t n, int64_t ti0,
                                           int64_t nrows, int64_t tj0, int64_t len, uint32_t *vpk, int64_t j0)
{
    const int64_t w0 = 2 * tj0 - g->pad, plane_in = g->hi * g->wi;
    const int64_t kc2 = (g->ci + 1) / 2, panel = kc2 * CPU_BF16_NR;
    const __m512i il = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                        21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int64_t c = 0; c < g->ci; c += 2) {
        const int two = c + 1 < g->ci;
        const float *xp = in + (n * g->ci + c) * plane_in;
        for (int64_t ti = ti0; ti < ti0 + nrows; ti++)
            for (int64_t jv = 0; jv < len; jv += 16) {
                const int64_t cnt = len - jv < 16 ? len - jv : 16;
                __m512 lo[16], hi[16];
                input_tile16(g, xp, ti, w0, jv, lo);
                if (two) input_tile16(g, xp + plane_in, ti, w0, jv, hi);
                else
                    for (int xi = 0; xi < 16; xi++) hi[xi] = _mm512_setzero_ps();
                const int64_t col = j0 + (ti - ti0) * len + jv;
                const int64_t jp = col % CPU_BF16_NR, first = CPU_BF16_NR - jp;
                const __mmask16 m1 = lanes(first < cnt ? first : cnt), m2 = (__mmask16)(lanes(cnt) & ~lanes(first));
                uint32_t *at = vpk + (size_t)(c / 2) * CPU_BF16_NR + (col / CPU_BF16_NR) * panel + jp;
                for (int xi = 0; xi < 16; xi++) {
                    const __m512i p = _mm512_permutexvar_epi16(il, (__m512i)_mm512_cvtne2ps_pbh(hi[xi], lo[xi]));
                    uint32_t *ax = at + (size_t)xi * g->vpk_dwords;
                    /* columns col .. col + cnt - 1, split where a panel ends: lane l >= first
                     * goes to column l - first of the next panel */
                    _mm512_mask_storeu_epi32(ax, m1, p);
                    if (m2) _mm512_mask_storeu_epi32(ax + panel - CPU_BF16_NR, m2, p);
                }
            }
    }
}
#else
static void input_run_bf16(const wino_geom *g, const float *in, int64_t n, int64_t ti0, int64_t nrows, int64_t tj0,
                           int64_t len, uint32_t *vpk, int64_t j0)
{
    (void)g, (void)in, (void)n, (void)ti0, (void)nrows, (void)tj0, (void)len, (void)vpk, (void)j0;
}
#endif

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

/* 16-bit x: the input rows and columns run r reads (its tiles' 4x4 patches, inside the image)
 * of sample r->n, widened into this thread's staging at their places in a sample, and r->n
 * set to 0 there; float32 x: in itself. */
static const float *stage_in(const wino_geom *g, const float *in, wino_run *r)
{
    if (g->xdt == PT_F32) return in;
    float *xs = g->stage + (size_t)omp_get_thread_num() * (g->xs_floats + g->ys_floats);
    int64_t h0 = 2 * r->ti - g->pad, h1 = 2 * (r->ti + r->nrows) - g->pad + 2;
    int64_t w0 = 2 * r->tj - g->pad, w1 = w0 + 2 * r->len + 2;
    if (h0 < 0) h0 = 0;
    if (h1 > g->hi) h1 = g->hi;
    if (w0 < 0) w0 = 0;
    if (w1 > g->wi) w1 = g->wi;
    const int64_t plane = g->hi * g->wi;
    const uint16_t *src = g->x16 + (size_t)(r->n * g->ci * plane);
    if (w1 > w0)
        for (int64_t c = 0; c < g->ci; c++)
            for (int64_t h = h0; h < h1; h++) {
                const int64_t at = c * plane + h * g->wi + w0;
                cpu_act16_widen_row(xs + at, src + at, w1 - w0, g->xdt);
            }
    r->n = 0;
    return xs;
}

/* 16-bit y: this thread's staging (one sample), r->n set to 0 there; float32 y: out itself. */
static float *stage_out(const wino_geom *g, float *out, wino_run *r)
{
    if (g->ydt == PT_F32) return out;
    r->n = 0;
    return g->stage + (size_t)omp_get_thread_num() * (g->xs_floats + g->ys_floats) + g->xs_floats;
}

/* 16-bit y: the output rows and columns run r wrote into the staging, rounded into sample n. */
static void stage_out_done(const wino_geom *g, const wino_run *r, int64_t n)
{
    if (g->ydt == PT_F32) return;
    const float *ys = g->stage + (size_t)omp_get_thread_num() * (g->xs_floats + g->ys_floats) + g->xs_floats;
    const int64_t h0 = 2 * r->ti, h1 = 2 * (r->ti + r->nrows) < g->ho ? 2 * (r->ti + r->nrows) : g->ho;
    const int64_t w0 = 2 * r->tj, w1 = 2 * (r->tj + r->len) < g->wo ? 2 * (r->tj + r->len) : g->wo;
    const int64_t plane = g->ho * g->wo;
    uint16_t *dst = g->y16 + (size_t)(n * g->co * plane);
    if (w1 > w0)
        for (int64_t o = 0; o < g->co; o++)
            for (int64_t h = h0; h < h1; h++) {
                const int64_t at = o * plane + h * g->wo + w0;
                cpu_act16_narrow_row(dst + at, ys + at, w1 - w0, g->ydt);
            }
}

/* Tiles t0 .. t0+nt-1 (flat over n, tile row, tile column), run by run. */
static void input_transform(const wino_geom *g, const float *in, int64_t t0, int64_t nt, float *v)
{
    for (int64_t j = 0; j < nt;) {
        wino_run r = run_at(g, t0 + j, nt - j);
        const float *src = stage_in(g, in, &r);
        input_run(g, src, r.n, r.ti, r.nrows, r.tj, r.len, v, j);
        j += r.nrows * r.len;
    }
}

/* bf16: the same into packed V, the tiles at columns j0 .. j0+nt-1. */
static void input_transform_bf16(const wino_geom *g, const float *in, int64_t t0, int64_t nt, uint32_t *vpk,
                                 int64_t j0)
{
    for (int64_t j = 0; j < nt;) {
        wino_run r = run_at(g, t0 + j, nt - j);
        const float *src = stage_in(g, in, &r);
        input_run_bf16(g, src, r.n, r.ti, r.nrows, r.tj, r.len, vpk, j0 + j);
        j += r.nrows * r.len;
    }
}

#if CPU_BF16_BUILT
/* bf16 (whose M is float32 like float32's): output_run with 16 tiles in registers at a time,
 * the two output rows' even and odd columns interleaved by permutes and stored (or added)
 * straight into the output, instead of through a staging row and a copy. */
CPU_BF16_TARGET static void output_run_bf16(const wino_geom *g, const float *m, int64_t n, int64_t ti0, int64_t nrows,
                                            int64_t tj0, int64_t len, int64_t j0, float *out, int acc)
{
    const int64_t ld = g->chunk, plane = g->mstride;
    const int64_t cols = 2 * len < g->wo - 2 * tj0 ? 2 * len : g->wo - 2 * tj0;
    const __m512i ilo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i ihi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    for (int64_t o = 0; o < g->co; o++)
        for (int64_t ti = ti0; ti < ti0 + nrows; ti++) {
            const int rows = 2 * ti + 1 < g->ho ? 2 : 1;
            const float *mo = m + o * ld + j0 + (ti - ti0) * len;
            float *y0 = out + ((n * g->co + o) * g->ho + 2 * ti) * g->wo + 2 * tj0;
            for (int64_t j = 0; j < len; j += 16) {
                const __mmask16 mj = lanes(len - j);
                __m512 mv[16];
                for (int xi = 0; xi < 16; xi++) mv[xi] = _mm512_maskz_loadu_ps(mj, mo + xi * plane + j);
                /* A^T m: row 0 = m[0] + m[1] + m[2], row 1 = m[1] - m[2] - m[3] (rows of 4) */
                __m512 s[2][4];
                for (int b = 0; b < 4; b++) {
                    s[0][b] = _mm512_add_ps(_mm512_add_ps(mv[b], mv[4 + b]), mv[8 + b]);
                    s[1][b] = _mm512_sub_ps(_mm512_sub_ps(mv[4 + b], mv[8 + b]), mv[12 + b]);
                }
                for (int a = 0; a < rows; a++) {
                    const __m512 ev = _mm512_add_ps(_mm512_add_ps(s[a][0], s[a][1]), s[a][2]);
                    const __m512 od = _mm512_sub_ps(_mm512_sub_ps(s[a][1], s[a][2]), s[a][3]);
                    float *yp = y0 + a * g->wo + 2 * j;
                    const int64_t left = cols - 2 * j;
                    const __mmask16 k0 = lanes(left), k1 = lanes(left - 16);
                    __m512 v0 = _mm512_permutex2var_ps(ev, ilo, od), v1 = _mm512_permutex2var_ps(ev, ihi, od);
                    if (acc) {
                        v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(k0, yp), v0);
                        v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(k1, yp + 16), v1);
                    }
                    _mm512_mask_storeu_ps(yp, k0, v0);
                    _mm512_mask_storeu_ps(yp + 16, k1, v1);
                }
            }
        }
}
#else
static void output_run_bf16(const wino_geom *g, const float *m, int64_t n, int64_t ti0, int64_t nrows, int64_t tj0,
                            int64_t len, int64_t j0, float *out, int acc)
{
    (void)g, (void)m, (void)n, (void)ti0, (void)nrows, (void)tj0, (void)len, (void)j0, (void)out, (void)acc;
}
#endif

static void output_transform(const wino_geom *g, const float *m, int64_t t0, int64_t nt, float *out, int acc)
{
    for (int64_t j = 0; j < nt;) {
        wino_run r = run_at(g, t0 + j, nt - j);
        const int64_t n = r.n;
        float *dst = stage_out(g, out, &r);
        if (g->bf16) output_run_bf16(g, m, r.n, r.ti, r.nrows, r.tj, r.len, j, dst, acc);
        else output_run(g, m, r.n, r.ti, r.nrows, r.tj, r.len, j, dst, acc);
        stage_out_done(g, &r, n);
        j += r.nrows * r.len;
    }
}

/* The two rows of output-gradient channel o's plane that tile row ti covers, from column 2 tj0,
 * 2 len columns: in place where all lie inside the output, else copied into row with zeros
 * outside. */
static inline void dy_rows(const wino_geom *g, const float *plane, int64_t ti, int64_t tj0, int64_t len,
                           float row[2][2 * WINO_RUN], const float **y0, const float **y1)
{
    const int64_t cols = 2 * len < g->wo - 2 * tj0 ? 2 * len : g->wo - 2 * tj0;
    const int rows = 2 * ti + 1 < g->ho ? 2 : 1;
    const float *src = plane + 2 * ti * g->wo + 2 * tj0;
    if (rows == 2 && cols == 2 * len) { /* the whole 2 x 2len block is inside the output */
        *y0 = src;
        *y1 = src + g->wo;
        return;
    }
    for (int a = 0; a < 2; a++) {
        if (a < rows) {
            memcpy(row[a], src + a * g->wo, (size_t)cols * sizeof(float));
            for (int64_t k = cols; k < 2 * len; k++) row[a][k] = 0.0f;
        } else {
            memset(row[a], 0, (size_t)(2 * len) * sizeof(float));
        }
    }
    *y0 = row[0];
    *y1 = row[1];
}

/* mo[xi * plane + j] = (A dy A^T)[xi] of the len tiles of rows y0, y1. */
static inline void dy_cols(const float *y0, const float *y1, float *mo, int64_t plane, int64_t len)
{
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

/* M[a*4 + b][o][j0 + j] = (A dy A^T)[a][b] for the 2x2 output-gradient tile dy of tile
 * (n, ti, tj0 + j), zero outside the output: the adjoint of output_run. */
static void dy_run(const wino_geom *g, const float *dy, int64_t n, int64_t ti0, int64_t nrows, int64_t tj0,
                   int64_t len, float *m, int64_t j0)
{
    const int64_t ld = g->chunk, plane = g->mstride;
    float row[2][2 * WINO_RUN];
    for (int64_t o = 0; o < g->co; o++)
    for (int64_t ti = ti0; ti < ti0 + nrows; ti++) {
        const float *y0, *y1;
        dy_rows(g, dy + (n * g->co + o) * g->ho * g->wo, ti, tj0, len, row, &y0, &y1);
        dy_cols(y0, y1, m + o * ld + j0 + (ti - ti0) * len, plane, len);
    }
}

#if CPU_BF16_BUILT
/* bf16, filter gradient: V and dM as bf16 matrices whose rows run along the tiles (row c of
 * position xi at vb + xi * plane + c * ldh; the chunk's tiles from column j0): k-contiguous
 * rows, the layout cpu_gemm_bf16_rows reads dM in and cpu_bf16_pack_b_pairs packs V from.
 * 16 tiles at a time in registers (input_tile16), each position's 16 values rounded
 * (vcvtneps2bf16) and stored as 16 elements of its row. */
CPU_BF16_TARGET static void input_rows_run_bf16(const wino_geom *g, const float *in, int64_t n, int64_t ti0,
                                                int64_t nrows, int64_t tj0, int64_t len, uint16_t *vb,
                                                int64_t j0)
{
    const int64_t w0 = 2 * tj0 - g->pad, plane_in = g->hi * g->wi;
    for (int64_t c = 0; c < g->ci; c++) {
        const float *xp = in + (n * g->ci + c) * plane_in;
        uint16_t *row = vb + (size_t)(c * g->ldh + j0);
        for (int64_t ti = ti0; ti < ti0 + nrows; ti++)
            for (int64_t jv = 0; jv < len; jv += 16) {
                const __mmask16 m = lanes(len - jv);
                __m512 v[16];
                input_tile16(g, xp, ti, w0, jv, v);
                uint16_t *at = row + (ti - ti0) * len + jv;
                for (int xi = 0; xi < 16; xi++)
                    _mm256_mask_storeu_epi16(at + (size_t)xi * g->vpk_halves, m, (__m256i)_mm512_cvtneps_pbh(v[xi]));
            }
    }
}

/* -v exactly (the sign flipped, zeros included), as C's unary minus */
CPU_BF16_TARGET static inline __m512 negate(__m512 v)
{
    return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u)));
}

/* bf16, filter gradient: dM = A dy A^T likewise, 16 tiles in registers: the tile row's two
 * output-gradient rows read as two vectors each (masked: zeros outside the output), their
 * even and odd columns split by permutes, then dy_cols's operations. */
CPU_BF16_TARGET static void dy_run_bf16(const wino_geom *g, const float *dy, int64_t n, int64_t ti0, int64_t nrows,
                                        int64_t tj0, int64_t len, uint16_t *mb, int64_t j0)
{
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    const int64_t plane_out = g->ho * g->wo;
    for (int64_t o = 0; o < g->co; o++) {
        const float *yp = dy + (n * g->co + o) * plane_out;
        uint16_t *row = mb + (size_t)(o * g->ldh + j0);
        for (int64_t ti = ti0; ti < ti0 + nrows; ti++)
            for (int64_t jv = 0; jv < len; jv += 16) {
                const __mmask16 m = lanes(len - jv);
                __m512 y[2][2];
                for (int a = 0; a < 2; a++) {
                    const int64_t hh = 2 * ti + a, base = 2 * (tj0 + jv);
                    for (int q = 0; q < 2; q++) {
                        const __mmask16 k = hh < g->ho ? row_lanes(base + 16 * q, g->wo) : 0;
                        y[a][q] = k ? _mm512_maskz_loadu_ps(k, yp + hh * g->wo + base + 16 * q) : _mm512_setzero_ps();
                    }
                }
                const __m512 y00 = _mm512_permutex2var_ps(y[0][0], even, y[0][1]);
                const __m512 y01 = _mm512_permutex2var_ps(y[0][0], odd, y[0][1]);
                const __m512 y10 = _mm512_permutex2var_ps(y[1][0], even, y[1][1]);
                const __m512 y11 = _mm512_permutex2var_ps(y[1][0], odd, y[1][1]);
                /* rows of A dy: (y0), (y0 + y1), (y0 - y1), (-y1), each over the two columns */
                const __m512 t[4][2] = {{y00, y01},
                                        {_mm512_add_ps(y00, y10), _mm512_add_ps(y01, y11)},
                                        {_mm512_sub_ps(y00, y10), _mm512_sub_ps(y01, y11)},
                                        {negate(y10), negate(y11)}};
                __m512 v[16];
                for (int a = 0; a < 4; a++) {
                    v[a * 4 + 0] = t[a][0];
                    v[a * 4 + 1] = _mm512_add_ps(t[a][0], t[a][1]);
                    v[a * 4 + 2] = _mm512_sub_ps(t[a][0], t[a][1]);
                    v[a * 4 + 3] = negate(t[a][1]);
                }
                uint16_t *at = row + (ti - ti0) * len + jv;
                for (int xi = 0; xi < 16; xi++)
                    _mm256_mask_storeu_epi16(at + (size_t)xi * g->mpk_halves, m, (__m256i)_mm512_cvtneps_pbh(v[xi]));
            }
    }
}
#else
static void input_rows_run_bf16(const wino_geom *g, const float *in, int64_t n, int64_t ti0, int64_t nrows,
                                int64_t tj0, int64_t len, uint16_t *vb, int64_t j0)
{
    (void)g, (void)in, (void)n, (void)ti0, (void)nrows, (void)tj0, (void)len, (void)vb, (void)j0;
}
static void dy_run_bf16(const wino_geom *g, const float *dy, int64_t n, int64_t ti0, int64_t nrows, int64_t tj0,
                        int64_t len, uint16_t *mb, int64_t j0)
{
    (void)g, (void)dy, (void)n, (void)ti0, (void)nrows, (void)tj0, (void)len, (void)mb, (void)j0;
}
#endif

/* bf16, filter gradient: the chunk's tiles t0 .. t0+nt-1 at columns j0 .. of V and dM. */
static void filter_transforms_bf16(const wino_geom *g, const float *x, const float *dy, int64_t t0, int64_t nt,
                                   uint16_t *vb, uint16_t *mb, int64_t j0)
{
    for (int64_t j = 0; j < nt;) {
        wino_run r = run_at(g, t0 + j, nt - j);
        const int64_t n = r.n;
        const float *src = stage_in(g, x, &r);
        input_rows_run_bf16(g, src, r.n, r.ti, r.nrows, r.tj, r.len, vb, j0 + j);
        dy_run_bf16(g, dy, n, r.ti, r.nrows, r.tj, r.len, mb, j0 + j);
        j += r.nrows * r.len;
    }
}

/* An odd number of tiles leaves the last pair of every row half full: its other half zero, so
 * that the kernel multiplies zeros there (the workspace's old contents could be NaN). */
static void filter_pad_bf16(const wino_geom *g, int64_t nt, uint16_t *vb, uint16_t *mb)
{
    if (!(nt & 1)) return;
    for (int xi = 0; xi < 16; xi++) {
        for (int64_t c = 0; c < g->ci; c++) vb[(size_t)xi * g->vpk_halves + (size_t)(c * g->ldh + nt)] = 0;
        for (int64_t o = 0; o < g->co; o++) mb[(size_t)xi * g->mpk_halves + (size_t)(o * g->ldh + nt)] = 0;
    }
}

/* bf16: dU[xi] (+)= dM[xi] V[xi]^T over nt tiles, V packed into the thread's scratch (a dword
 * transpose) and dM read in place; rows r0 .. r1 of dU. */
static void filter_gemm_bf16(const wino_geom *g, const uint16_t *vb, const uint16_t *mb, int xi, int64_t nt,
                             int64_t r0, int64_t r1, float beta, float *du, uint32_t *pack)
{
    const size_t ld2 = (size_t)g->ldh / 2;
    cpu_bf16_pack_b_pairs((const uint32_t *)(vb + (size_t)xi * g->vpk_halves), ld2, (int)nt, (int)g->ci, pack);
    cpu_gemm_bf16_rows((int)(r1 - r0), (int)g->ci, (int)nt,
                       (const uint32_t *)(mb + (size_t)xi * g->mpk_halves + (size_t)(r0 * g->ldh)), ld2, pack, beta,
                       du + ((size_t)xi * g->co + (size_t)r0) * g->ci, (int)g->ci);
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
                         uint32_t *pack, int64_t lo, int64_t hi)
{
    float *v = slot, *m = slot + g->v_floats, *du = m + g->m_floats;
    const int ld = (int)g->chunk;
    if (lo >= hi) memset(du, 0, g->du_floats * sizeof(float));
    for (int64_t t0 = lo; t0 < hi; t0 += g->chunk) {
        const int64_t nt = hi - t0 < g->chunk ? hi - t0 : g->chunk;
        const float beta = t0 == lo ? 0.0f : 1.0f;
        if (g->bf16) {
            uint16_t *vb = (uint16_t *)v, *mb = (uint16_t *)m;
            filter_transforms_bf16(g, x, dy, t0, nt, vb, mb, 0);
            filter_pad_bf16(g, nt, vb, mb);
            for (int xi = 0; xi < 16; xi++) filter_gemm_bf16(g, vb, mb, xi, nt, 0, g->co, beta, du, pack);
            continue;
        }
        input_transform(g, x, t0, nt, v);
        dy_transform(g, dy, t0, nt, m);
        for (int xi = 0; xi < 16; xi++)
            cpu_sgemm(d, 0, 1, (int)g->co, (int)g->ci, (int)nt, 1.0f, m + (size_t)xi * g->mstride, ld,
                      v + (size_t)xi * g->vstride, ld, beta, du + (size_t)xi * g->co * g->ci, (int)g->ci);
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

#if CPU_BF16_BUILT
/* bf16: filter_gradient_out on 16 pairs at a time, one vector lane each: each plane of dU read
 * as a contiguous run instead of 16 values a plane apart (512 x 512 channels: a fifth of the
 * filter gradient's time), the same operations in the same order per lane. */
CPU_BF16_TARGET static void filter_gradient_out_bf16(const wino_geom *g, const float *ws, int slots, float *dw,
                                                     int acc, int64_t lo, int64_t hi)
{
    const size_t pairs = (size_t)(g->co * g->ci);
    const __m512 half = _mm512_set1_ps(0.5f);
    for (int64_t p0 = lo; p0 < hi; p0 += 16) {
        const int64_t cnt = hi - p0 < 16 ? hi - p0 : 16;
        const __mmask16 m = lanes(cnt);
        __m512 sum[9];
        for (int k = 0; k < 9; k++) sum[k] = _mm512_setzero_ps();
        for (int t = 0; t < slots; t++) {
            const float *part = ws + (size_t)t * g->slot_floats + g->v_floats + g->m_floats + (size_t)p0;
            __m512 du[4][4], tt[3][4];
            for (int xi = 0; xi < 16; xi++) du[xi / 4][xi % 4] = _mm512_maskz_loadu_ps(m, part + (size_t)xi * pairs);
            for (int b = 0; b < 4; b++) { /* G^T dU */
                const __m512 s12 = _mm512_mul_ps(half, _mm512_add_ps(du[1][b], du[2][b]));
                tt[0][b] = _mm512_add_ps(du[0][b], s12);
                tt[1][b] = _mm512_mul_ps(half, _mm512_sub_ps(du[1][b], du[2][b]));
                tt[2][b] = _mm512_add_ps(s12, du[3][b]);
            }
            for (int r = 0; r < 3; r++) {
                const __m512 s12 = _mm512_mul_ps(half, _mm512_add_ps(tt[r][1], tt[r][2]));
                const __m512 v[3] = {_mm512_add_ps(tt[r][0], s12), _mm512_mul_ps(half, _mm512_sub_ps(tt[r][1], tt[r][2])),
                                     _mm512_add_ps(s12, tt[r][3])};
                for (int s2 = 0; s2 < 3; s2++) sum[r * 3 + s2] = t == 0 ? v[s2] : _mm512_add_ps(sum[r * 3 + s2], v[s2]);
            }
        }
        _Alignas(64) float res[9][16];
        for (int k = 0; k < 9; k++) _mm512_store_ps(res[k], sum[k]);
        float *dp = dw + p0 * 9;
        for (int64_t p = 0; p < cnt; p++)
            for (int k = 0; k < 9; k++) dp[p * 9 + k] = acc ? dp[p * 9 + k] + res[k][p] : res[k][p];
    }
}
#else
static void filter_gradient_out_bf16(const wino_geom *g, const float *ws, int slots, float *dw, int acc, int64_t lo,
                                     int64_t hi)
{
    (void)g, (void)ws, (void)slots, (void)dw, (void)acc, (void)lo, (void)hi;
}
#endif

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
        if (g->bf16) input_transform_bf16(g, in, t0 + lo, hi - lo, (uint32_t *)v, lo);
        else input_transform(g, in, t0 + lo, hi - lo, v + lo);
        /* (also: every thread has read the previous block's M before the GEMMs overwrite it) */
#pragma omp barrier
        for (int64_t it = items * tid / nth; it < items * (tid + 1) / nth; it++) {
            int64_t xi, c0, c1;
            if (g->bf16) {
                /* slices of whole panels of packed V */
                int64_t p0, p1;
                item_slice(it, slices, (nt + CPU_BF16_NR - 1) / CPU_BF16_NR, &xi, &p0, &p1);
                c0 = p0 * CPU_BF16_NR;
                c1 = p1 * CPU_BF16_NR < nt ? p1 * CPU_BF16_NR : nt;
                position_gemm_bf16(g, (const uint32_t *)u + (size_t)xi * g->upk_dwords,
                                   (const uint32_t *)v + (size_t)xi * g->vpk_dwords, c0, m + (size_t)xi * g->mstride,
                                   c1 - c0, ld);
            } else {
                item_slice(it, slices, nt, &xi, &c0, &c1);
                position_gemm(d, g, fwd, u + (size_t)xi * g->co * g->ci, v + (size_t)xi * g->vstride + c0,
                              m + (size_t)xi * g->mstride + c0, c1 - c0, ld);
            }
        }
#pragma omp barrier
        output_transform(g, m + lo, t0 + lo, hi - lo, out, acc);
    }
}

/* dU[xi] = sum over all tiles of dM[xi] V[xi]^T, one dU for all threads: items cut the rows
 * (output channels) of dU, so each element is summed over the tiles in one order whatever
 * the thread count. */
static void filter_shared(const cpu_device *d, const wino_geom *g, const float *x, const float *dy, float *ws,
                          uint32_t *pack, int tid, int nth)
{
    float *v = ws, *m = ws + g->v_floats, *du = m + g->m_floats;
    const int ld = (int)g->chunk;
    const int64_t slices = shared_slices(nth), items = 16 * slices;
    for (int64_t t0 = 0; t0 < g->tiles; t0 += g->chunk) {
        int64_t lo, hi;
        const int64_t nt = block_share(g, t0, tid, nth, &lo, &hi);
        if (g->bf16) {
            filter_transforms_bf16(g, x, dy, t0 + lo, hi - lo, (uint16_t *)v, (uint16_t *)m, lo);
            if (hi == nt) filter_pad_bf16(g, nt, (uint16_t *)v, (uint16_t *)m);
        } else {
            input_transform(g, x, t0 + lo, hi - lo, v + lo);
            dy_transform(g, dy, t0 + lo, hi - lo, m + lo);
        }
#pragma omp barrier
        for (int64_t it = items * tid / nth; it < items * (tid + 1) / nth; it++) {
            int64_t xi, r0, r1;
            item_slice(it, slices, g->co, &xi, &r0, &r1);
            const float beta = t0 == 0 ? 0.0f : 1.0f;
            if (g->bf16) {
                filter_gemm_bf16(g, (const uint16_t *)v, (const uint16_t *)m, (int)xi, nt, r0, r1, beta, du, pack);
                continue;
            }
            const float *mx = m + (size_t)xi * g->mstride + (size_t)r0 * ld, *vx = v + (size_t)xi * g->vstride;
            float *dux = du + ((size_t)xi * g->co + r0) * g->ci;
            cpu_sgemm(d, 0, 1, (int)(r1 - r0), (int)g->ci, (int)nt, 1.0f, mx, ld, vx, ld, beta, dux, (int)g->ci);
        }
#pragma omp barrier
    }
}

static pt_status filter_gradient(const cpu_device *d, const pt_op *op, const wino_geom *g)
{
    /* a 16-bit x is read through g's staging (stage_in), never as float32 */
    const float *x = g->xdt == PT_F32 ? cpu_f32(&op->t[0]) : NULL, *dy = cpu_f32(&op->t[2]);
    float *dw = cpu_f32(&op->t[1]);
    float *ws = (float *)cpu_ptr(op->workspace);
    const int64_t pairs = g->ci * g->co;
    const int slots = g->slots;
    cpu_blas_region_begin(d);
#pragma omp parallel num_threads(d->threads)
    {
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        uint32_t *pack = (uint32_t *)(ws + (size_t)slots * g->slot_floats + (size_t)tid * g->pack_floats);
        if (g->shared) {
            filter_shared(d, g, x, dy, ws, pack, tid, nth);
        } else {
            filter_tiles(d, g, x, dy, ws + (size_t)tid * g->slot_floats, pack, g->tiles * tid / nth,
                         g->tiles * (tid + 1) / nth);
            /* slots a smaller team did not reach hold no partial: clear them before the sum */
            for (int t = nth + tid; t < slots; t += nth)
                memset(ws + (size_t)t * g->slot_floats + g->v_floats + g->m_floats, 0, g->du_floats * sizeof(float));
#pragma omp barrier
        }
        if (g->bf16)
            filter_gradient_out_bf16(g, ws, slots, dw, op->accumulate, pairs * tid / nth, pairs * (tid + 1) / nth);
        else
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
        if (g->bf16) input_transform_bf16(g, in, t0, nt, (uint32_t *)v, 0);
        else input_transform(g, in, t0, nt, v);
        for (int xi = 0; xi < 16; xi++)
            if (g->bf16)
                position_gemm_bf16(g, (const uint32_t *)u + (size_t)xi * g->upk_dwords,
                                   (const uint32_t *)v + (size_t)xi * g->vpk_dwords, 0, m + (size_t)xi * g->mstride, nt,
                                   ld);
            else
                position_gemm(d, g, fwd, u + (size_t)xi * g->co * g->ci, v + (size_t)xi * g->vstride,
                              m + (size_t)xi * g->mstride, nt, ld);
        output_transform(g, m, t0, nt, out, acc);
    }
}


pt_status cpu_winograd_run(const cpu_device *d, const pt_op *op, pt_error *err)
{
    wino_geom g = geom_of(d, op);
    if (op->workspace_bytes < g.bytes)
        return pt_fail(err, PT_ERR_INVALID, "cpu %s: needs a workspace of %zu bytes (ask workspace_size), got %zu",
                       pt_op_name(op->kind), g.bytes, op->workspace_bytes);
    if (g.xs_floats || g.ys_floats) { /* the staging ends the workspace */
        g.stage = (float *)((char *)cpu_ptr(op->workspace) + g.bytes) -
                  (size_t)d->threads * (g.xs_floats + g.ys_floats);
        g.x16 = g.xs_floats ? (const uint16_t *)cpu_ptr(op->t[0].mem) : NULL;
        g.y16 = g.ys_floats ? (uint16_t *)cpu_ptr(op->t[2].mem) : NULL;
    }
    if (op->kind == PT_OP_CONV2D_BWD_FILTER) {
        if (g.n == 0) {
            if (!op->accumulate) memset(cpu_f32(&op->t[1]), 0, (size_t)(g.co * g.ci * 9) * sizeof(float));
            return PT_OK;
        }
        return filter_gradient(d, op, &g);
    }
    const int fwd = op->kind == PT_OP_CONV2D_FWD;
    const float *w = cpu_f32(&op->t[1]);
    /* 16-bit operands go through g's staging (stage_in, stage_out), never read as float32 */
    const float *in = g.xs_floats ? NULL : fwd ? cpu_f32(&op->t[0]) : cpu_f32(&op->t[2]);
    float *out = g.ys_floats ? NULL : fwd ? cpu_f32(&op->t[2]) : cpu_f32(&op->t[0]);
    if (g.n == 0) return PT_OK;
    float *ws = (float *)cpu_ptr(op->workspace), *u = ws;
    const int64_t pairs = g.ci * g.co;
    /* In chunks, threads each take a contiguous range of tiles; the GEMMs run on one thread. */
    cpu_blas_region_begin(d);
#pragma omp parallel num_threads(d->threads)
    {
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        if (g.bf16) {
            const int64_t panels = (g.co + CPU_BF16_MR - 1) / CPU_BF16_MR;
            filter_pack(&g, w, fwd, (uint32_t *)u, panels * tid / nth, panels * (tid + 1) / nth);
        } else {
            filter_transform(&g, w, fwd, u, pairs * tid / nth, pairs * (tid + 1) / nth);
        }
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
