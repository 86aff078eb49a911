/* Direct 2-D convolution for a small reduction C*R*S (at most PT_SMALL_CRS: the first layer of
 * a network, 1 or 3 input channels): forward and filter gradient without im2col or a GEMM.
 * Through im2col and a tiled SGEMM such a layer is a GEMM with an inner dimension of 9 or 27,
 * which no GEMM tiling runs well; here each item holds one input patch in registers and
 * reuses it for every output channel. Launched by backends/kernels/kernel_conv_small.c. */

/* Largest C*R*S of the direct kernels (the size of their per-item patch). */
#define PT_SMALL_CRS 32

/* y[b, k, p, q] = (acc ? y : 0) + sum_{c,r,s} w[k, c, r, s] x[b, c, p*st - pad + r, q*st - pad + s],
 * one item per output pixel (b, p, q): n = N*P*Q. The sum runs in (c, r, s) order with fused
 * multiply-adds, as a BLAS GEMM's inner loop does: the cpu backend's first layer to the
 * rounding (plain products put 1e-5 between the backends' losses a step later, through
 * max-pool ties the rounding breaks differently). */
KERNEL void pt_conv_small_fwd(GLOBAL const float *x, pt_i64 xo, GLOBAL const float *w, pt_i64 wo,
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
    int k = 0;
    /* four output channels at a time: four independent chains of fused multiply-adds (each
     * in the same order as one at a time) that the core overlaps, where one chain waits for
     * each multiply-add's result */
    for (; k + 4 <= K; k += 4) {
        GLOBAL const float *wk = w + wo + (long)k * crs;
        float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
        for (int i = 0; i < crs; i++) {
            const float v = patch[i];
            s0 = FMAF(wk[i], v, s0);
            s1 = FMAF(wk[crs + i], v, s1);
            s2 = FMAF(wk[2 * crs + i], v, s2);
            s3 = FMAF(wk[3 * crs + i], v, s3);
        }
        const long at = (long)k * pq;
        yp[at] = acc ? yp[at] + s0 : s0;
        yp[at + pq] = acc ? yp[at + pq] + s1 : s1;
        yp[at + 2 * pq] = acc ? yp[at + 2 * pq] + s2 : s2;
        yp[at + 3 * pq] = acc ? yp[at + 3 * pq] + s3 : s3;
    }
    for (; k < K; k++) {
        GLOBAL const float *wk = w + wo + (long)k * crs;
        float sum = 0.0f;
        for (int i = 0; i < crs; i++) sum = FMAF(wk[i], patch[i], sum);
        const long at = (long)k * pq;
        yp[at] = acc ? yp[at] + sum : sum;
    }
}

/* dw[k, c, r, s] = (acc ? dw : 0) + sum_{b,p,q} dy[b, k, p, q] x[b, c, p*st - pad + r, q*st - pad + s]:
 * one work-group of PT_RED_WG items per weight (k, c, r, s), the items taking the output rows
 * (b, p) PT_RED_WG apart, each row's in-bounds span of q without a test per element, then a
 * pairwise sum over the group (a fixed order: deterministic). */
KERNEL void pt_conv_small_bwd_filter(GLOBAL const float *x, pt_i64 xo, GLOBAL float *dw, pt_i64 wo,
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
