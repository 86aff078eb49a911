/* Winograd F(2x2,3x3) transforms for 3x3 stride-1 convolutions (kernel_winograd.c runs them
 * around 16 strided-batched GEMMs of the device). Tiles are numbered over (sample, tile row,
 * tile column) flat and a call covers the block [t0, t0 + Tb) of them, so that small feature
 * maps still give wide GEMMs. The planes are laid out for the GEMMs (kernel_winograd.c): a
 * transform writes element (row, t) of plane xi at xi * ps + row * rs + t * ts, and covers
 * the padded rows and tn >= Tb tiles, writing zeros past the real ones. The element of a
 * tile's 4x4 transform at (i, j) lives in plane xi = 4i + j. Plain float32 arithmetic in a
 * fixed order (FP_CONTRACT OFF, dialect): the results do not depend on the work-group split
 * or the layout. */

/* U[xi][i][o] = (G g G^T)[xi] for g = w[k][c], (i, o) = (c, k) (forward), or for g = w[k][c]
 * rotated by 180 degrees with (i, o) = (k, c) (rot: the data gradient); zeros outside K x C.
 * G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]. Items over (i, o), o below ld. */
KERNEL void pt_wino_filter(GLOBAL const float *w, pt_i64 wo, GLOBAL float *u, pt_i64 uo, int n, int K, int C,
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
KERNEL void pt_wino_input(GLOBAL const float *x, pt_i64 xo, GLOBAL float *v, pt_i64 vo, int n, int C, int H,
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
KERNEL void pt_wino_output(GLOBAL const float *m, pt_i64 mo, GLOBAL float *y, pt_i64 yo, int n, int K, int P,
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

/* The filter gradient's dy side, the adjoint of pt_wino_output: D[xi](k, t) = (A g A^T)[xi]
 * for g the 2x2 cells of dy[s][k] at the tile (zeros outside P x Q). Items over (k, t) for t
 * below tn; zeros for k >= K or t >= Tb. */
KERNEL void pt_wino_dy(GLOBAL const float *dy, pt_i64 dyo, GLOBAL float *dm, pt_i64 dmo, int n, int K, int P,
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
 * the tiles: the adjoint of pt_wino_filter. */
KERNEL void pt_wino_filter_grad(GLOBAL const float *du, pt_i64 duo, GLOBAL float *dw, pt_i64 dwo, int n, int K,
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
