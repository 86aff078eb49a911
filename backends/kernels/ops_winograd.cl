/* Winograd F(2x2,3x3) transforms for 3x3 stride-1 convolutions (kernel_winograd.c runs them
 * around 16 strided-batched GEMMs of the device). Tiles are numbered over (sample, tile row,
 * tile column) flat and a call covers the block [t0, t0 + Tb) of them, so that small feature
 * maps still give wide GEMMs. The planes are laid out for the GEMMs (kernel_winograd.c): a
 * transform writes element (row, t) of plane xi at xi * ps + row * rs + t * ts, and covers
 * the padded rows and tn >= Tb tiles, writing zeros past the real ones. The element of a
 * tile's 4x4 transform at (i, j) lives in plane xi = 4i + j. Plain float32 arithmetic in a
 * fixed order (FP_CONTRACT OFF, dialect): the results do not depend on the work-group split
 * or the layout. */

/* The kernels are straight-line code over scalars (no private arrays, no loops) and divide
 * by the launch's sizes through pt_wino_div: PoCL keeps a private array of every item of a
 * work-group in memory across the loops of a kernel (an item's 4x4 window became a stack
 * buffer of the whole group), and does not vectorise across items through integer
 * divisions; written this way the tile kernels run as one loop over the items that LLVM
 * vectorises. The arithmetic and its order are those of the plain formulas. */

/* a / b for 0 <= a < 2^24 and b > 0, through the reciprocal r = 1 / b. a is exact in float,
 * a * r within 2^-23 of a / b relative (exact for b = 1), so below 2^24 / b <= 2^23 the
 * truncated estimate is off by at most one, which the two corrections remove.
 * kernel_winograd.c keeps every index it is used on below 2^24. */
DEVFN int pt_wino_div(int a, int b, float r)
{
    int q = (int)((float)a * r);
    q -= q * b > a;
    q += (q + 1) * b <= a;
    return q;
}

/* U[xi][i][o] = (G g G^T)[xi] for g = w[k][c], (i, o) = (c, k) (forward), or for g = w[k][c]
 * rotated by 180 degrees with (i, o) = (k, c) (rot: the data gradient); zeros outside K x C.
 * G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]. Items over (i, o), o below ld. */
KERNEL void pt_wino_filter(GLOBAL const float *RESTRICT w, pt_i64 wo, GLOBAL float *RESTRICT u, pt_i64 uo, int n,
                           int K, int C, int rot, int ld, int ps)
{
    long idx = GID(0);
    if (idx >= n) return;
    const int i = pt_wino_div((int)idx, ld, 1.0f / (float)ld), o = (int)idx - i * ld;
    const int k = rot ? i : o, c = rot ? o : i;
    const int live = k < K && c < C;
    GLOBAL float *dst = u + uo + idx;
    GLOBAL const float *src = w + wo + ((long)(live ? k : 0) * C + (live ? c : 0)) * 9;
    /* g in the order of the 180-degree rotation when rot */
#define PT_WF_G(q) (live ? src[rot ? 8 - (q) : (q)] : 0.0f)
    const float g0 = PT_WF_G(0), g1 = PT_WF_G(1), g2 = PT_WF_G(2), g3 = PT_WF_G(3), g4 = PT_WF_G(4),
                g5 = PT_WF_G(5), g6 = PT_WF_G(6), g7 = PT_WF_G(7), g8 = PT_WF_G(8);
#undef PT_WF_G
    /* G g: 4 x 3, column j from g[j], g[3 + j], g[6 + j] */
    const float t00 = g0, t01 = g1, t02 = g2;
    const float t10 = 0.5f * ((g0 + g3) + g6), t11 = 0.5f * ((g1 + g4) + g7), t12 = 0.5f * ((g2 + g5) + g8);
    const float t20 = 0.5f * ((g0 - g3) + g6), t21 = 0.5f * ((g1 - g4) + g7), t22 = 0.5f * ((g2 - g5) + g8);
    const float t30 = g6, t31 = g7, t32 = g8;
    const long P = ps;
#define PT_WF_ROW(r, a, b, cc)                             \
    dst[(4 * (r) + 0) * P] = (a);                          \
    dst[(4 * (r) + 1) * P] = 0.5f * (((a) + (b)) + (cc));  \
    dst[(4 * (r) + 2) * P] = 0.5f * (((a) - (b)) + (cc));  \
    dst[(4 * (r) + 3) * P] = (cc);
    PT_WF_ROW(0, t00, t01, t02)
    PT_WF_ROW(1, t10, t11, t12)
    PT_WF_ROW(2, t20, t21, t22)
    PT_WF_ROW(3, t30, t31, t32)
#undef PT_WF_ROW
}

/* V[xi](c, t) = (B^T d B)[xi] for d the 4x4 patch of x (zeros outside) at the tile t0 + t:
 * rows 2*ti - pad .. +3, columns 2*tj - pad .. +3; B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0;
 * 0 1 0 -1]. x is [N][C][H][W]; tq tile columns, tps tiles per sample. Items over (c, t)
 * for t below tn (c fastest when ts != 1); zeros for c >= C or t >= Tb. */
KERNEL void pt_wino_input(GLOBAL const float *RESTRICT x, pt_i64 xo, GLOBAL float *RESTRICT v, pt_i64 vo, int n,
                          int C, int H, int W, int pad, int tq, int tps, int t0, int Tb, int tn, int rs, int ts,
                          int ps)
{
    long idx = GID(0);
    if (idx >= n) return;
    /* neighbouring items write neighbouring floats: along t (ts 1), else along c */
    const int rows = n / tn, dv = ts == 1 ? tn : rows;
    const int qq = pt_wino_div((int)idx, dv, 1.0f / (float)dv), rr = (int)idx - qq * dv;
    const int c = ts == 1 ? qq : rr, t = ts == 1 ? rr : qq;
    GLOBAL float *dst = v + vo + (long)c * rs + (long)t * ts;
    const int live = c < C && t < Tb;
    const int tile = t0 + (live ? t : 0), s = pt_wino_div(tile, tps, 1.0f / (float)tps), r = tile - s * tps;
    const int ti = pt_wino_div(r, tq, 1.0f / (float)tq);
    const int h0 = 2 * ti - pad, w0 = 2 * (r - ti * tq) - pad;
    GLOBAL const float *src = x + xo + ((long)s * C + (live ? c : 0)) * H * W + (long)h0 * W + w0;
    const int r0 = live && h0 >= 0 && h0 < H, r1 = live && h0 + 1 >= 0 && h0 + 1 < H;
    const int r2 = live && h0 + 2 >= 0 && h0 + 2 < H, r3 = live && h0 + 3 >= 0 && h0 + 3 < H;
    const int c0 = w0 >= 0 && w0 < W, c1 = w0 + 1 >= 0 && w0 + 1 < W;
    const int c2 = w0 + 2 >= 0 && w0 + 2 < W, c3 = w0 + 3 >= 0 && w0 + 3 < W;
#define PT_WI_D(i, j) (r##i && c##j ? src[(long)(i) * W + (j)] : 0.0f)
    const float d00 = PT_WI_D(0, 0), d01 = PT_WI_D(0, 1), d02 = PT_WI_D(0, 2), d03 = PT_WI_D(0, 3);
    const float d10 = PT_WI_D(1, 0), d11 = PT_WI_D(1, 1), d12 = PT_WI_D(1, 2), d13 = PT_WI_D(1, 3);
    const float d20 = PT_WI_D(2, 0), d21 = PT_WI_D(2, 1), d22 = PT_WI_D(2, 2), d23 = PT_WI_D(2, 3);
    const float d30 = PT_WI_D(3, 0), d31 = PT_WI_D(3, 1), d32 = PT_WI_D(3, 2), d33 = PT_WI_D(3, 3);
#undef PT_WI_D
    /* B^T d */
    const float e00 = d00 - d20, e01 = d01 - d21, e02 = d02 - d22, e03 = d03 - d23;
    const float e10 = d10 + d20, e11 = d11 + d21, e12 = d12 + d22, e13 = d13 + d23;
    const float e20 = d20 - d10, e21 = d21 - d11, e22 = d22 - d12, e23 = d23 - d13;
    const float e30 = d10 - d30, e31 = d11 - d31, e32 = d12 - d32, e33 = d13 - d33;
    const long P = ps;
#define PT_WI_ROW(i, a, b, cc, dd)           \
    dst[(4 * (i) + 0) * P] = (a) - (cc);     \
    dst[(4 * (i) + 1) * P] = (b) + (cc);     \
    dst[(4 * (i) + 2) * P] = (cc) - (b);     \
    dst[(4 * (i) + 3) * P] = (b) - (dd);
    PT_WI_ROW(0, e00, e01, e02, e03)
    PT_WI_ROW(1, e10, e11, e12, e13)
    PT_WI_ROW(2, e20, e21, e22, e23)
    PT_WI_ROW(3, e30, e31, e32, e33)
#undef PT_WI_ROW
}

/* y[s][k][2ti..+1][2tj..+1] = (acc ? y : 0) + A^T m A for m = M[.](k, t) at xi * ps + k * rs
 * + t (the cells inside P x Q), A^T = [1 1 1 0; 0 1 -1 -1]. */
KERNEL void pt_wino_output(GLOBAL const float *RESTRICT m, pt_i64 mo, GLOBAL float *RESTRICT y, pt_i64 yo, int n,
                           int K, int P, int Q, int tq, int tps, int t0, int Tb, int acc, int rs, int ps)
{
    long idx = GID(0);
    if (idx >= n) return;
    const int k = pt_wino_div((int)idx, Tb, 1.0f / (float)Tb), t = (int)idx - k * Tb;
    const int tile = t0 + t, s = pt_wino_div(tile, tps, 1.0f / (float)tps), r = tile - s * tps;
    const int ti = pt_wino_div(r, tq, 1.0f / (float)tq);
    const int p0 = 2 * ti, q0 = 2 * (r - ti * tq);
    const long plane = ps;
    GLOBAL const float *src = m + mo + (long)k * rs + t;
    /* A^T m: 2 x 4, column j from planes j, 4 + j, 8 + j, 12 + j */
#define PT_WO_COL(j, top, bottom)                                                              \
    const float top = (src[(j) * plane] + src[(4 + (j)) * plane]) + src[(8 + (j)) * plane];   \
    const float bottom = (src[(4 + (j)) * plane] - src[(8 + (j)) * plane]) - src[(12 + (j)) * plane];
    PT_WO_COL(0, e0, e4)
    PT_WO_COL(1, e1, e5)
    PT_WO_COL(2, e2, e6)
    PT_WO_COL(3, e3, e7)
#undef PT_WO_COL
    GLOBAL float *row = y + yo + ((long)s * K + k) * P * Q + (long)p0 * Q + q0;
    const int right = q0 + 1 < Q;
    const float o00 = (e0 + e1) + e2, o01 = (e1 - e2) - e3;
    row[0] = acc ? row[0] + o00 : o00;
    if (right) row[1] = acc ? row[1] + o01 : o01;
    if (p0 + 1 < P) {
        const float o10 = (e4 + e5) + e6, o11 = (e5 - e6) - e7;
        row += Q;
        row[0] = acc ? row[0] + o10 : o10;
        if (right) row[1] = acc ? row[1] + o11 : o11;
    }
}

/* The filter gradient's dy side, the adjoint of pt_wino_output: D[xi](k, t) = (A g A^T)[xi]
 * for g the 2x2 cells of dy[s][k] at the tile (zeros outside P x Q). Items over (k, t) for t
 * below tn; zeros for k >= K or t >= Tb. */
KERNEL void pt_wino_dy(GLOBAL const float *RESTRICT dy, pt_i64 dyo, GLOBAL float *RESTRICT dm, pt_i64 dmo, int n,
                       int K, int P, int Q, int tq, int tps, int t0, int Tb, int tn, int rs, int ts, int ps)
{
    long idx = GID(0);
    if (idx >= n) return;
    const int rows = n / tn, dv = ts == 1 ? tn : rows;
    const int qq = pt_wino_div((int)idx, dv, 1.0f / (float)dv), rr = (int)idx - qq * dv;
    const int k = ts == 1 ? qq : rr, t = ts == 1 ? rr : qq;
    GLOBAL float *dst = dm + dmo + (long)k * rs + (long)t * ts;
    const int live = k < K && t < Tb;
    const int tile = t0 + (live ? t : 0), s = pt_wino_div(tile, tps, 1.0f / (float)tps), r = tile - s * tps;
    const int ti = pt_wino_div(r, tq, 1.0f / (float)tq);
    const int p0 = 2 * ti, q0 = 2 * (r - ti * tq);
    GLOBAL const float *src = dy + dyo + ((long)s * K + (live ? k : 0)) * P * Q + (long)p0 * Q + q0;
    const int top = live, bottom = live && p0 + 1 < P, right = q0 + 1 < Q;
    const float g0 = top ? src[0] : 0.0f, g1 = top && right ? src[1] : 0.0f;
    const float g2 = bottom ? src[Q] : 0.0f, g3 = bottom && right ? src[(long)Q + 1] : 0.0f;
    /* A g: 4 x 2, A = [1 0; 1 1; 1 -1; 0 -1] */
    const float e0 = g0, e1 = g1, e2 = g0 + g2, e3 = g1 + g3, e4 = g0 - g2, e5 = g1 - g3, e6 = -g2, e7 = -g3;
    const long plane = ps;
    /* (A g) A^T row by row; a dead item writes +0 (its -g would be -0) */
#define PT_WD_ROW(i, a, b)                                         \
    dst[(4 * (i) + 0) * plane] = live ? (a) : 0.0f;                \
    dst[(4 * (i) + 1) * plane] = live ? (a) + (b) : 0.0f;          \
    dst[(4 * (i) + 2) * plane] = live ? (a) - (b) : 0.0f;          \
    dst[(4 * (i) + 3) * plane] = live ? -(b) : 0.0f;
    PT_WD_ROW(0, e0, e1)
    PT_WD_ROW(1, e2, e3)
    PT_WD_ROW(2, e4, e5)
    PT_WD_ROW(3, e6, e7)
#undef PT_WD_ROW
}

/* dw[k][c] = (acc ? dw : 0) + G^T dU G for dU[xi](k, c) at xi * ps + k * ld + c, the sums over
 * the tiles: the adjoint of pt_wino_filter. */
KERNEL void pt_wino_filter_grad(GLOBAL const float *RESTRICT du, pt_i64 duo, GLOBAL float *RESTRICT dw, pt_i64 dwo,
                                int n, int K, int C, int acc, int ld, int ps)
{
    long idx = GID(0);
    if (idx >= n) return;
    const long kc = ps;
    const int k = pt_wino_div((int)idx, C, 1.0f / (float)C), c = (int)idx - k * C;
    if (k >= K) return;
    GLOBAL const float *src = du + duo + (long)k * ld + c;
    /* G^T dU: 3 x 4, G^T = [1 1/2 1/2 0; 0 1/2 -1/2 0; 0 1/2 1/2 1]; column j from planes
     * j, 4 + j, 8 + j, 12 + j */
#define PT_WG_COL(j, e0, e1, e2)                                                          \
    const float e0##_a = src[(j) * kc], e0##_b = src[(4 + (j)) * kc], e0##_c = src[(8 + (j)) * kc], \
                e0##_d = src[(12 + (j)) * kc];                                             \
    const float e0 = e0##_a + 0.5f * (e0##_b + e0##_c);                                    \
    const float e1 = 0.5f * (e0##_b - e0##_c);                                             \
    const float e2 = 0.5f * (e0##_b + e0##_c) + e0##_d;
    PT_WG_COL(0, e00, e10, e20)
    PT_WG_COL(1, e01, e11, e21)
    PT_WG_COL(2, e02, e12, e22)
    PT_WG_COL(3, e03, e13, e23)
#undef PT_WG_COL
    GLOBAL float *dst = dw + dwo + idx * 9;
#define PT_WG_ROW(i, a, b, cc, d)                                     \
    {                                                                 \
        const float o0 = (a) + 0.5f * ((b) + (cc)), o1 = 0.5f * ((b) - (cc)), o2 = 0.5f * ((b) + (cc)) + (d); \
        dst[3 * (i) + 0] = acc ? dst[3 * (i) + 0] + o0 : o0;          \
        dst[3 * (i) + 1] = acc ? dst[3 * (i) + 1] + o1 : o1;          \
        dst[3 * (i) + 2] = acc ? dst[3 * (i) + 2] + o2 : o2;          \
    }
    PT_WG_ROW(0, e00, e01, e02, e03)
    PT_WG_ROW(1, e10, e11, e12, e13)
    PT_WG_ROW(2, e20, e21, e22, e23)
#undef PT_WG_ROW
}
