/* Kernels written in the form PoCL vectorises, compiled on the host against the plain forms
 * they replace (kept below as the reference): the Winograd tile kernels
 * (backends/kernels/ops_winograd.cl, straight-line code with divisions through a float
 * reciprocal) must give bitwise the plain array formulas' results, write +0 (not -0) into the
 * padding rows and tiles and leave everything else alone, and pt_wino_div must divide exactly
 * everywhere kernel_winograd.c allows (below 2^24); the max-pool forward's 2x2 stride-2 path
 * must give the general loop's maxima and argmax, NaN and tie rules included; the direct
 * small convolution's forward, four output channels at a time, one at a time's sums, and
 * its filter gradient, three weights of a filter row per work-group, one weight per group's. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_host_dialect.h"
#include "backends/kernels/philox.h"
#include "backends/kernels/act16.cl"
#include "backends/kernels/ops.cl"
#include "backends/kernels/ops_winograd.cl"
#include "backends/kernels/ops_conv_small.cl"
#include "pt_test.h"

/* ---- the reference: the kernels as plain formulas over private arrays ---- */
KERNEL void ref_wino_filter(GLOBAL const float *w, pt_i64 wo, GLOBAL float *u, pt_i64 uo, int n, int K, int C,
                           int rot, int ld, int ps)
{
    long idx = GID(0);
    if (idx >= n) return;
    const int i = (int)(idx / ld), o = (int)(idx - (long)i * ld);
    const int k = rot ? i : o, c = rot ? o : i;
    GLOBAL float *dst = u + uo + idx;
    if (k >= K || c >= C) {
        for (int xi = 0; xi < 16; xi++) dst[(long)xi * ps] = 0.0f;
        return;
    }
    GLOBAL const float *src = w + wo + ((long)k * C + c) * 9;
    float g[9];
    for (int q = 0; q < 9; q++) g[q] = src[rot ? 8 - q : q];
    float t[12]; /* G g: 4 x 3 */
    for (int j = 0; j < 3; j++) {
        const float a = g[j], b = g[3 + j], cc = g[6 + j];
        t[j] = a;
        t[3 + j] = 0.5f * ((a + b) + cc);
        t[6 + j] = 0.5f * ((a - b) + cc);
        t[9 + j] = cc;
    }
    for (int r = 0; r < 4; r++) {
        const float a = t[3 * r], b = t[3 * r + 1], cc = t[3 * r + 2];
        dst[(long)(4 * r + 0) * ps] = a;
        dst[(long)(4 * r + 1) * ps] = 0.5f * ((a + b) + cc);
        dst[(long)(4 * r + 2) * ps] = 0.5f * ((a - b) + cc);
        dst[(long)(4 * r + 3) * ps] = cc;
    }
}

/* V[xi](c, t) = (B^T d B)[xi] for d the 4x4 patch of x (zeros outside) at the tile t0 + t:
 * rows 2*ti - pad .. +3, columns 2*tj - pad .. +3; B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0;
 * 0 1 0 -1]. x is [N][C][H][W]; tq tile columns, tps tiles per sample. Items over (c, t)
 * for t below tn (c fastest when ts != 1); zeros for c >= C or t >= Tb. */
KERNEL void ref_wino_input(GLOBAL const float *x, pt_i64 xo, GLOBAL float *v, pt_i64 vo, int n, int C, int H,
                          int W, int pad, int tq, int tps, int t0, int Tb, int tn, int rs, int ts, int ps)
{
    long idx = GID(0);
    if (idx >= n) return;
    /* neighbouring items write neighbouring floats: along t (ts 1), else along c */
    const int rows = n / tn;
    const int c = ts == 1 ? (int)(idx / tn) : (int)(idx % rows);
    const int t = ts == 1 ? (int)(idx - (long)c * tn) : (int)(idx / rows);
    GLOBAL float *dst = v + vo + (long)c * rs + (long)t * ts;
    if (c >= C || t >= Tb) {
        for (int xi = 0; xi < 16; xi++) dst[(long)xi * ps] = 0.0f;
        return;
    }
    const int tile = t0 + t, s = tile / tps, r = tile - s * tps;
    const int ti = r / tq;
    const int h0 = 2 * ti - pad, w0 = 2 * (r - ti * tq) - pad;
    GLOBAL const float *src = x + xo + ((long)s * C + c) * H * W;
    float d[16];
    if (h0 >= 0 && h0 + 3 < H && w0 >= 0 && w0 + 3 < W) {
        GLOBAL const float *p = src + (long)h0 * W + w0;
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) d[4 * i + j] = p[(long)i * W + j];
    } else {
        for (int i = 0; i < 4; i++) {
            const int h = h0 + i;
            for (int j = 0; j < 4; j++) {
                const int ww = w0 + j;
                d[4 * i + j] = h >= 0 && h < H && ww >= 0 && ww < W ? src[(long)h * W + ww] : 0.0f;
            }
        }
    }
    float e[16]; /* B^T d */
    for (int j = 0; j < 4; j++) {
        e[j] = d[j] - d[8 + j];
        e[4 + j] = d[4 + j] + d[8 + j];
        e[8 + j] = d[8 + j] - d[4 + j];
        e[12 + j] = d[4 + j] - d[12 + j];
    }
    for (int i = 0; i < 4; i++) {
        const float a = e[4 * i], b = e[4 * i + 1], cc = e[4 * i + 2], dd = e[4 * i + 3];
        dst[(long)(4 * i + 0) * ps] = a - cc;
        dst[(long)(4 * i + 1) * ps] = b + cc;
        dst[(long)(4 * i + 2) * ps] = cc - b;
        dst[(long)(4 * i + 3) * ps] = b - dd;
    }
}

/* y[s][k][2ti..+1][2tj..+1] = (acc ? y : 0) + A^T m A for m = M[.](k, t) at xi * ps + k * rs
 * + t (the cells inside P x Q), A^T = [1 1 1 0; 0 1 -1 -1]. */
KERNEL void ref_wino_output(GLOBAL const float *m, pt_i64 mo, GLOBAL float *y, pt_i64 yo, int n, int K, int P,
                           int Q, int tq, int tps, int t0, int Tb, int acc, int rs, int ps)
{
    long idx = GID(0);
    if (idx >= n) return;
    const int k = (int)(idx / Tb), t = (int)(idx - (long)k * Tb);
    const int tile = t0 + t, s = tile / tps, r = tile - s * tps;
    const int p0 = 2 * (r / tq), q0 = 2 * (r % tq);
    const long plane = ps;
    GLOBAL const float *src = m + mo + (long)k * rs + t;
    float e[8]; /* A^T m: 2 x 4 */
    for (int j = 0; j < 4; j++) {
        const float a = src[j * plane], b = src[(4 + j) * plane], c = src[(8 + j) * plane],
                    d = src[(12 + j) * plane];
        e[j] = (a + b) + c;
        e[4 + j] = (b - c) - d;
    }
    GLOBAL float *dst = y + yo + ((long)s * K + k) * P * Q;
    for (int i = 0; i < 2; i++) {
        const int p = p0 + i;
        if (p >= P) break;
        const float a = e[4 * i], b = e[4 * i + 1], c = e[4 * i + 2], d = e[4 * i + 3];
        const float o0 = (a + b) + c, o1 = (b - c) - d;
        GLOBAL float *row = dst + (long)p * Q + q0;
        row[0] = acc ? row[0] + o0 : o0;
        if (q0 + 1 < Q) row[1] = acc ? row[1] + o1 : o1;
    }
}

/* The filter gradient's dy side, the adjoint of ref_wino_output: D[xi](k, t) = (A g A^T)[xi]
 * for g the 2x2 cells of dy[s][k] at the tile (zeros outside P x Q). Items over (k, t) for t
 * below tn; zeros for k >= K or t >= Tb. */
KERNEL void ref_wino_dy(GLOBAL const float *dy, pt_i64 dyo, GLOBAL float *dm, pt_i64 dmo, int n, int K, int P,
                       int Q, int tq, int tps, int t0, int Tb, int tn, int rs, int ts, int ps)
{
    long idx = GID(0);
    if (idx >= n) return;
    const int rows = n / tn;
    const int k = ts == 1 ? (int)(idx / tn) : (int)(idx % rows);
    const int t = ts == 1 ? (int)(idx - (long)k * tn) : (int)(idx / rows);
    GLOBAL float *dst = dm + dmo + (long)k * rs + (long)t * ts;
    if (k >= K || t >= Tb) {
        for (int xi = 0; xi < 16; xi++) dst[(long)xi * ps] = 0.0f;
        return;
    }
    const int tile = t0 + t, s = tile / tps, r = tile - s * tps;
    const int p0 = 2 * (r / tq), q0 = 2 * (r % tq);
    GLOBAL const float *src = dy + dyo + ((long)s * K + k) * P * Q;
    float g[4];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            const int p = p0 + i, q = q0 + j;
            g[2 * i + j] = p < P && q < Q ? src[(long)p * Q + q] : 0.0f;
        }
    float e[8]; /* A g: 4 x 2, A = [1 0; 1 1; 1 -1; 0 -1] */
    for (int j = 0; j < 2; j++) {
        e[j] = g[j];
        e[2 + j] = g[j] + g[2 + j];
        e[4 + j] = g[j] - g[2 + j];
        e[6 + j] = -g[2 + j];
    }
    const long plane = ps;
    for (int i = 0; i < 4; i++) {
        const float a = e[2 * i], b = e[2 * i + 1];
        dst[(4 * i + 0) * plane] = a;
        dst[(4 * i + 1) * plane] = a + b;
        dst[(4 * i + 2) * plane] = a - b;
        dst[(4 * i + 3) * plane] = -b;
    }
}

/* dw[k][c] = (acc ? dw : 0) + G^T dU G for dU[xi](k, c) at xi * ps + k * ld + c, the sums over
 * the tiles: the adjoint of ref_wino_filter. */
KERNEL void ref_wino_filter_grad(GLOBAL const float *du, pt_i64 duo, GLOBAL float *dw, pt_i64 dwo, int n, int K,
                                int C, int acc, int ld, int ps)
{
    long idx = GID(0);
    if (idx >= n) return;
    const long kc = ps;
    const int k = (int)(idx / C), c = (int)(idx - (long)k * C);
    if (k >= K) return;
    GLOBAL const float *src = du + duo + (long)k * ld + c;
    float e[12]; /* G^T dU: 3 x 4, G^T = [1 1/2 1/2 0; 0 1/2 -1/2 0; 0 1/2 1/2 1] */
    for (int j = 0; j < 4; j++) {
        const float a = src[j * kc], b = src[(4 + j) * kc], c = src[(8 + j) * kc], d = src[(12 + j) * kc];
        e[j] = a + 0.5f * (b + c);
        e[4 + j] = 0.5f * (b - c);
        e[8 + j] = 0.5f * (b + c) + d;
    }
    GLOBAL float *dst = dw + dwo + idx * 9;
    for (int i = 0; i < 3; i++) {
        const float a = e[4 * i], b = e[4 * i + 1], c = e[4 * i + 2], d = e[4 * i + 3];
        const float o[3] = {a + 0.5f * (b + c), 0.5f * (b - c), 0.5f * (b + c) + d};
        for (int j = 0; j < 3; j++) dst[3 * i + j] = acc ? dst[3 * i + j] + o[j] : o[j];
    }
}

KERNEL void ref_maxpool_fwd(GLOBAL const float *x, pt_i64 xo, GLOBAL float *y, pt_i64 yo,
                           GLOBAL int *arg, pt_i64 ao, int n, int H, int W, int P, int Q, int k,
                           int st, int pad)
{
    long idx = GID(0);
    if (idx >= n) return;
    long plane = idx / P;
    int oi = (int)(idx - plane * P);
    GLOBAL const float *xp = x + xo + plane * H * W;
    GLOBAL float *yr = y + yo + idx * Q;
    GLOBAL int *ar = arg + ao + idx * Q;
    int alo = oi * st - pad < 0 ? pad - oi * st : 0; /* window rows inside the plane */
    int ahi = oi * st - pad + k > H ? H - (oi * st - pad) : k;
    for (int oj = 0; oj < Q; oj++) {
        float best = -INF_F;
        int bi = -1;
        for (int a = alo; a < ahi; a++) {
            int hi = oi * st - pad + a;
            for (int b = 0; b < k; b++) {
                int wi = oj * st - pad + b;
                if (wi < 0 || wi >= W) continue;
                float v = xp[hi * W + wi];
                /* first maximum wins; the first NaN wins and sticks (as the cpu backend) */
                if (bi < 0 || (!ISNAN(best) && (v > best || ISNAN(v)))) {
                    best = v;
                    bi = hi * W + wi;
                }
            }
        }
        yr[oj] = best;
        ar[oj] = bi;
    }
}

KERNEL void ref_conv_small_fwd(GLOBAL const float *x, pt_i64 xo, GLOBAL const float *w, pt_i64 wo,
                              GLOBAL float *y, pt_i64 yo, int n, int C, int H, int W, int K, int R, int S,
                              int P, int Q, int st, int pad, int acc)
{
    long idx = GID(0);
    if (idx >= n) return;
    const int pq = P * Q, crs = C * R * S;
    const long b = idx / pq;
    const int o = (int)(idx - b * pq);
    const int p = o / Q, q = o % Q;
    float patch[PT_SMALL_CRS];
    int j = 0;
    for (int c = 0; c < C; c++)
        for (int r = 0; r < R; r++) {
            const int h = p * st - pad + r;
            for (int s = 0; s < S; s++, j++) {
                const int ww = q * st - pad + s;
                patch[j] = h >= 0 && h < H && ww >= 0 && ww < W ? x[xo + ((b * C + c) * H + h) * W + ww] : 0.0f;
            }
        }
    GLOBAL float *yp = y + yo + b * K * pq + o;
    for (int k = 0; k < K; k++) {
        GLOBAL const float *wk = w + wo + (long)k * crs;
        float sum = 0.0f;
        for (int i = 0; i < crs; i++) sum = FMAF(wk[i], patch[i], sum);
        const long at = (long)k * pq;
        yp[at] = acc ? yp[at] + sum : sum;
    }
}

KERNEL void ref_conv_small_bwd_filter(GLOBAL const float *x, pt_i64 xo, GLOBAL float *dw, pt_i64 wo,
                                     GLOBAL const float *dy, pt_i64 dyo, int N, int C, int H, int W, int K,
                                     int R, int S, int P, int Q, int st, int pad, int acc)
{
    LOCAL float buf[PT_RED_WG];
    const int g = GROUP_ID(0); /* (k, c, r, s) in w's order */
    const int crs = C * R * S;
    const int k = g / crs, j = g % crs;
    const int c = j / (R * S), r = (j / S) % R, s = j % S;
    /* q with 0 <= q*st - pad + s < W */
    int qlo = pad - s > 0 ? (pad - s + st - 1) / st : 0;
    int qhi = W - 1 + pad - s >= 0 ? (W - 1 + pad - s) / st : -1;
    if (qhi > Q - 1) qhi = Q - 1;
    float sum = 0.0f;
    const int rows = N * P;
    for (int row = LID(0); row < rows; row += PT_RED_WG) {
        const int b = row / P, p = row % P;
        const int h = p * st - pad + r;
        if (h < 0 || h >= H) continue;
        GLOBAL const float *gr = dy + dyo + (((long)b * K + k) * P + p) * Q;
        GLOBAL const float *xr = x + xo + (((long)b * C + c) * H + h) * W - pad + s;
        for (int q = qlo; q <= qhi; q++) sum += gr[q] * xr[q * st];
    }
    const float t = pt_k_block_sum(buf, sum);
    if (LID(0) == 0) dw[wo + g] = acc ? dw[wo + g] + t : t;
}

/* ---- helpers ---- */

static uint32_t g_rng = 12345u;
static float rnd(void)
{
    g_rng = g_rng * 1664525u + 1013904223u;
    return (float)((int)(g_rng >> 8) % 2001 - 1000) / 256.0f;
}

static float *filled(size_t n, int random)
{
    float *p = malloc(n * sizeof *p);
    if (!p) abort();
    const uint32_t poison = 0x7fc0beefu; /* a NaN: a slot either kernel forgot stays it */
    for (size_t i = 0; i < n; i++) {
        if (random) {
            p[i] = rnd();
        } else {
            memcpy(&p[i], &poison, sizeof poison);
        }
    }
    return p;
}

static int same_bits(const float *a, const float *b, size_t n, size_t *at)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof a[i]) != 0) {
            *at = i;
            return 0;
        }
    return 1;
}

/* 1 if no float of plane rows x cols (row stride rs, column stride cs) outside rows_live x
 * cols_live is anything but +0 */
static int padding_is_plus_zero(const float *v, int planes, long ps, int rows, int cols, long rs, long cs,
                                int rows_live, int cols_live)
{
    for (int xi = 0; xi < planes; xi++)
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) {
                if (r < rows_live && c < cols_live) continue;
                uint32_t bits;
                memcpy(&bits, &v[xi * ps + r * rs + c * cs], sizeof bits);
                if (bits != 0) return 0;
            }
    return 1;
}

/* ---- the tests ---- */

/* every quotient a / b with a < 2^24: the values on both sides of each multiple of the small
 * divisors, and random pairs over the whole range */
static void division_is_exact_below_2_pow_24(void)
{
    const int lim = 1 << 24;
    long bad = 0, tried = 0;
    for (int b = 1; b <= 1200; b++) {
        const float r = 1.0f / (float)b;
        for (long q = 0; q * b < lim; q += (b < 64 ? 1 : 7)) {
            for (int d = -1; d <= 1; d++) {
                const long a = q * b + d;
                if (a < 0 || a >= lim) continue;
                tried++;
                if (pt_wino_div((int)a, b, r) != (int)(a / b)) bad++;
            }
        }
    }
    for (int i = 0; i < 2000000; i++) {
        g_rng = g_rng * 1664525u + 1013904223u;
        const int b = 1 + (int)(g_rng % (uint32_t)lim);
        g_rng = g_rng * 1664525u + 1013904223u;
        const int a = (int)(g_rng % (uint32_t)lim);
        tried++;
        if (pt_wino_div(a, b, 1.0f / (float)b) != a / b) bad++;
    }
    const int edge[][2] = {{lim - 1, 1}, {lim - 1, 2}, {lim - 1, 3}, {lim - 1, 7}, {lim - 1, lim - 1}, {lim - 2, lim - 1}, {0, 5}};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) {
        tried++;
        if (pt_wino_div(edge[i][0], edge[i][1], 1.0f / (float)edge[i][1]) != edge[i][0] / edge[i][1]) bad++;
    }
    CHECKF(bad == 0, "%ld of %ld quotients wrong", bad, tried);
}

static void filter_transform_matches_the_formulas(void)
{
    const int K = 5, C = 3;
    for (int rot = 0; rot <= 1; rot++) {
        const int in = rot ? K : C, out = rot ? C : K, vr = in + 3, ld = out + 2, ps = vr * ld + 5, n = vr * ld;
        float *w = filled((size_t)K * C * 9 + 4, 1), *a = filled(16 * (size_t)ps + 8, 0), *b = filled(16 * (size_t)ps + 8, 0);
        PT_HOST_LAUNCH(n, pt_wino_filter(w, 4, a, 8, n, K, C, rot, ld, ps));
        PT_HOST_LAUNCH(n, ref_wino_filter(w, 4, b, 8, n, K, C, rot, ld, ps));
        size_t at = 0;
        CHECKF(same_bits(a, b, 16 * (size_t)ps + 8, &at), "rot %d: float %zu differs", rot, at);
        CHECKF(padding_is_plus_zero(a + 8, 16, ps, vr, ld, ld, 1, in, out), "rot %d: padding not +0", rot);
        free(w), free(a), free(b);
    }
}

/* the input transform (x -> V) and the dy transform (dy -> D), both layouts (tile-fastest and
 * channel-fastest), paddings 0..2, odd map sizes, blocks that start past the first tile */
static void tile_transforms_match_the_formulas(void)
{
    const int N = 2, C = 3, H = 5, W = 6;
    for (int pad = 0; pad <= 2; pad++)
        for (int ts1 = 0; ts1 <= 1; ts1++)
            for (int blk = 0; blk <= 1; blk++) {
                const int oh = H + 2 * pad - 2, ow = W + 2 * pad - 2, tq = (ow + 1) / 2, tps = ((oh + 1) / 2) * tq;
                const int tiles = N * tps, t0 = blk ? tiles / 3 : 0, Tb = blk ? tiles - t0 : tiles, tn = Tb + 3;
                const int rows = C + 2, n = rows * tn, rs = ts1 ? tn : 1, ts = ts1 ? 1 : rows, ps = rows * tn + 7;
                const size_t vn = 16 * (size_t)ps + 8;
                float *x = filled((size_t)N * C * H * W + 2, 1), *a = filled(vn, 0), *b = filled(vn, 0);
                PT_HOST_LAUNCH(n, pt_wino_input(x, 2, a, 8, n, C, H, W, pad, tq, tps, t0, Tb, tn, rs, ts, ps));
                PT_HOST_LAUNCH(n, ref_wino_input(x, 2, b, 8, n, C, H, W, pad, tq, tps, t0, Tb, tn, rs, ts, ps));
                size_t at = 0;
                CHECKF(same_bits(a, b, vn, &at), "input pad %d ts1 %d block %d: float %zu differs", pad, ts1, blk, at);
                CHECKF(padding_is_plus_zero(a + 8, 16, ps, rows, tn, rs, ts, C, Tb), "input pad %d ts1 %d: padding", pad, ts1);
                /* dy of the same tiling: K = C channels of oh x ow */
                float *dy = filled((size_t)N * C * oh * ow + 2, 1), *c = filled(vn, 0), *d = filled(vn, 0);
                PT_HOST_LAUNCH(n, pt_wino_dy(dy, 2, c, 8, n, C, oh, ow, tq, tps, t0, Tb, tn, rs, ts, ps));
                PT_HOST_LAUNCH(n, ref_wino_dy(dy, 2, d, 8, n, C, oh, ow, tq, tps, t0, Tb, tn, rs, ts, ps));
                CHECKF(same_bits(c, d, vn, &at), "dy pad %d ts1 %d block %d: float %zu differs", pad, ts1, blk, at);
                CHECKF(padding_is_plus_zero(c + 8, 16, ps, rows, tn, rs, ts, C, Tb), "dy pad %d ts1 %d: padding", pad, ts1);
                free(x), free(a), free(b), free(dy), free(c), free(d);
            }
}

/* the output transform (M -> y), overwriting and accumulating, odd output sizes, a block past
 * the first tile; and the filter gradient's G^T dU G */
static void output_and_filter_gradient_match_the_formulas(void)
{
    const int N = 2, K = 3;
    const int sizes[][2] = {{5, 5}, {4, 7}, {1, 3}};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (int acc = 0; acc <= 1; acc++)
            for (int blk = 0; blk <= 1; blk++) {
                const int P = sizes[si][0], Q = sizes[si][1], tq = (Q + 1) / 2, tps = ((P + 1) / 2) * tq;
                const int tiles = N * tps, t0 = blk ? tiles / 2 : 0, Tb = blk ? tiles - t0 : tiles, tn = Tb + 2;
                const int rs = tn, ps = (K + 1) * tn + 3, n = K * Tb;
                float *m = filled(16 * (size_t)ps + 4, 1);
                const size_t yn = (size_t)N * K * P * Q + 4;
                float *a = filled(yn, acc), *b = malloc(yn * sizeof *b);
                memcpy(b, a, yn * sizeof *b);
                PT_HOST_LAUNCH(n, pt_wino_output(m, 4, a, 4, n, K, P, Q, tq, tps, t0, Tb, acc, rs, ps));
                PT_HOST_LAUNCH(n, ref_wino_output(m, 4, b, 4, n, K, P, Q, tq, tps, t0, Tb, acc, rs, ps));
                size_t at = 0;
                CHECKF(same_bits(a, b, yn, &at), "output %dx%d acc %d block %d: float %zu differs", P, Q, acc, blk, at);
                free(m), free(a), free(b);
            }
    for (int acc = 0; acc <= 1; acc++) {
        const int C = 4, ld = C + 3, ps = (K + 2) * ld + 1, n = K * C;
        float *du = filled(16 * (size_t)ps + 4, 1);
        const size_t wn = (size_t)K * C * 9 + 4;
        float *a = filled(wn, acc), *b = malloc(wn * sizeof *b);
        memcpy(b, a, wn * sizeof *b);
        PT_HOST_LAUNCH(n, pt_wino_filter_grad(du, 4, a, 4, n, K, C, acc, ld, ps));
        PT_HOST_LAUNCH(n, ref_wino_filter_grad(du, 4, b, 4, n, K, C, acc, ld, ps));
        size_t at = 0;
        CHECKF(same_bits(a, b, wn, &at), "filter gradient acc %d: float %zu differs", acc, at);
        free(du), free(a), free(b);
    }
}

/* 2x2 stride-2 windows (the straight-line path) on even and odd maps, values with ties, NaN
 * (first NaN of a window wins) and -Inf; and windows the general loop keeps (3x3, padding) */
static void maxpool_matches_the_general_loop(void)
{
    const int cfg[][5] = {{8, 8, 2, 2, 0}, {7, 7, 2, 2, 0}, {28, 28, 2, 2, 0}, {5, 6, 2, 2, 0}, {3, 2, 2, 2, 0},
                          {7, 7, 3, 2, 1}, {6, 6, 2, 2, 1}, {9, 7, 3, 2, 0}};
    const int planes = 5;
    for (size_t ci = 0; ci < sizeof cfg / sizeof cfg[0]; ci++) {
        const int H = cfg[ci][0], W = cfg[ci][1], k = cfg[ci][2], st = cfg[ci][3], pad = cfg[ci][4];
        const int P = (H + 2 * pad - k) / st + 1, Q = (W + 2 * pad - k) / st + 1, n = planes * P;
        const size_t xn = (size_t)planes * H * W, yn = (size_t)planes * P * Q;
        float *x = filled(xn, 1);
        for (size_t i = 0; i < xn; i++) {
            g_rng = g_rng * 1664525u + 1013904223u;
            const uint32_t r = g_rng >> 24;
            if (r < 20) x[i] = NAN;
            else if (r < 30) x[i] = -INFINITY;
            else if (r < 120) x[i] = 1.0f; /* ties */
        }
        float *ya = filled(yn, 0), *yb = filled(yn, 0);
        int *aa = malloc(yn * sizeof *aa), *ab = malloc(yn * sizeof *ab);
        if (!aa || !ab) abort();
        memset(aa, 0x5a, yn * sizeof *aa);
        memset(ab, 0x5a, yn * sizeof *ab);
        PT_HOST_LAUNCH(n, pt_maxpool_fwd(x, 0, ya, 0, aa, 0, n, H, W, P, Q, k, st, pad));
        PT_HOST_LAUNCH(n, ref_maxpool_fwd(x, 0, yb, 0, ab, 0, n, H, W, P, Q, k, st, pad));
        size_t at = 0;
        CHECKF(same_bits(ya, yb, yn, &at), "%dx%d k%d s%d p%d: maximum %zu differs", H, W, k, st, pad, at);
        CHECKF(memcmp(aa, ab, yn * sizeof *aa) == 0, "%dx%d k%d s%d p%d: argmax differs", H, W, k, st, pad);
        free(x), free(ya), free(yb), free(aa), free(ab);
    }
}

/* output channel counts around the multiples of four, one and three input channels,
 * stride 1 and 2, padding, overwrite and accumulate */
static void small_convolution_matches_one_channel_at_a_time(void)
{
    const int ks[] = {1, 3, 4, 5, 8, 13};
    const int cfg[][6] = {{1, 7, 6, 3, 1, 1}, {3, 6, 5, 3, 2, 1}, {2, 5, 5, 2, 1, 0}};
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
        for (size_t ci = 0; ci < sizeof cfg / sizeof cfg[0]; ci++)
            for (int acc = 0; acc <= 1; acc++) {
                const int N = 2, K = ks[ki], C = cfg[ci][0], H = cfg[ci][1], W = cfg[ci][2], R = cfg[ci][3],
                          S = R, st = cfg[ci][4], pad = cfg[ci][5];
                const int P = (H + 2 * pad - R) / st + 1, Q = (W + 2 * pad - S) / st + 1, n = N * P * Q;
                float *x = filled((size_t)N * C * H * W + 1, 1), *w = filled((size_t)K * C * R * S + 1, 1);
                const size_t yn = (size_t)N * K * P * Q + 2;
                float *a = filled(yn, acc), *b = malloc(yn * sizeof *b);
                if (!b) abort();
                memcpy(b, a, yn * sizeof *b);
                PT_HOST_LAUNCH(n, pt_conv_small_fwd(x, 1, w, 1, a, 2, n, C, H, W, K, R, S, P, Q, st, pad, acc));
                PT_HOST_LAUNCH(n, ref_conv_small_fwd(x, 1, w, 1, b, 2, n, C, H, W, K, R, S, P, Q, st, pad, acc));
                size_t at = 0;
                CHECKF(same_bits(a, b, yn, &at), "K %d C %d %dx%d r%d s%d p%d acc %d: float %zu differs", K, C, H, W,
                       R, st, pad, acc, at);
                free(x), free(w), free(a), free(b);
            }
}

/* filter widths around the multiples of three, strides 1 and 2, paddings 0..2, accumulate
 * (host work-groups are one item: the sums' order is each weight's walk over all rows) */
static void small_filter_gradient_matches_one_weight_per_group(void)
{
    const int cfg[][7] = {{1, 7, 6, 3, 3, 1, 1}, {3, 6, 5, 3, 3, 2, 1}, {2, 5, 5, 2, 2, 1, 0}, {1, 9, 8, 5, 5, 1, 2},
                          {1, 6, 7, 1, 4, 1, 0}, {2, 6, 6, 2, 1, 2, 0}};
    for (size_t ci = 0; ci < sizeof cfg / sizeof cfg[0]; ci++)
        for (int acc = 0; acc <= 1; acc++) {
            const int N = 2, K = 3, C = cfg[ci][0], H = cfg[ci][1], W = cfg[ci][2], R = cfg[ci][3], S = cfg[ci][4],
                      st = cfg[ci][5], pad = cfg[ci][6];
            const int P = (H + 2 * pad - R) / st + 1, Q = (W + 2 * pad - S) / st + 1;
            float *x = filled((size_t)N * C * H * W + 1, 1), *dy = filled((size_t)N * K * P * Q + 1, 1);
            const size_t wn = (size_t)K * C * R * S + 2;
            float *a = filled(wn, acc), *b = malloc(wn * sizeof *b);
            if (!b) abort();
            memcpy(b, a, wn * sizeof *b);
            PT_HOST_LAUNCH(K * C * R * ((S + 2) / 3),
                           pt_conv_small_bwd_filter(x, 1, a, 2, dy, 1, N, C, H, W, K, R, S, P, Q, st, pad, acc));
            PT_HOST_LAUNCH(K * C * R * S,
                           ref_conv_small_bwd_filter(x, 1, b, 2, dy, 1, N, C, H, W, K, R, S, P, Q, st, pad, acc));
            size_t at = 0;
            CHECKF(same_bits(a, b, wn, &at), "C %d %dx%d %dx%d s%d p%d acc %d: float %zu differs", C, H, W, R, S, st,
                   pad, acc, at);
            free(x), free(dy), free(a), free(b);
        }
}

int main(void)
{
    RUN(division_is_exact_below_2_pow_24);
    RUN(filter_transform_matches_the_formulas);
    RUN(tile_transforms_match_the_formulas);
    RUN(output_and_filter_gradient_match_the_formulas);
    RUN(maxpool_matches_the_general_loop);
    RUN(small_convolution_matches_one_channel_at_a_time);
    RUN(small_filter_gradient_matches_one_weight_per_group);
    TEST_EXIT();
}
