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

/* The output columns q with 0 <= q*st - pad + s < W, as [*lo, *hi] (empty when *hi < *lo). */
DEVFN void pt_k_small_qrange(int s, int st, int pad, int W, int Q, int *lo, int *hi)
{
    *lo = pad - s > 0 ? (pad - s + st - 1) / st : 0;
    *hi = W - 1 + pad - s >= 0 ? (W - 1 + pad - s) / st : -1;
    if (*hi > Q - 1) *hi = Q - 1;
}

/* dw[k, c, r, s] = (acc ? dw : 0) + sum_{b,p,q} dy[b, k, p, q] x[b, c, p*st - pad + r, q*st - pad + s]:
 * one work-group of PT_RED_WG items per three weights (s0, s0 + 1, s0 + 2) of a filter row
 * (k, c, r), the items taking the output rows (b, p) PT_RED_WG apart, each row's in-bounds
 * span of q, then a pairwise sum over the group (a fixed order: deterministic). The three
 * weights go through one walk over dy as three independent sums, each in the order it would
 * have alone: the core overlaps them where a single sum waits on each add. The block sums run
 * unconditionally (every item through every barrier; PoCL summed twice into dw with them in a
 * loop over the row's weights). */
KERNEL void pt_conv_small_bwd_filter(GLOBAL const float *x, pt_i64 xo, GLOBAL float *dw, pt_i64 wo,
                                     GLOBAL const float *dy, pt_i64 dyo, int N, int C, int H, int W, int K,
                                     int R, int S, int P, int Q, int st, int pad, int acc)
{
    LOCAL float buf[PT_RED_WG];
    /* (k, c, r, s0) in w's order: a filter row's weights s0, s0 + 1, s0 + 2 (those below S) */
    const int g = GROUP_ID(0), triples = (S + 2) / 3;
    const int row_id = g / triples, s0 = 3 * (g - row_id * triples);
    const int k = row_id / (C * R), cr = row_id - k * (C * R);
    const int c = cr / R, r = cr - c * R;
    const int rows = N * P, ns = S - s0 < 3 ? S - s0 : 3;
    int lo0, hi0, lo1 = 1, hi1 = 0, lo2 = 1, hi2 = 0;
    pt_k_small_qrange(s0, st, pad, W, Q, &lo0, &hi0);
    if (ns > 1) pt_k_small_qrange(s0 + 1, st, pad, W, Q, &lo1, &hi1);
    if (ns > 2) pt_k_small_qrange(s0 + 2, st, pad, W, Q, &lo2, &hi2);
    const int qa = lo0 < lo1 ? (lo0 < lo2 ? lo0 : lo2) : (lo1 < lo2 ? lo1 : lo2);
    const int qb = hi0 > hi1 ? (hi0 > hi2 ? hi0 : hi2) : (hi1 > hi2 ? hi1 : hi2);
    float sum0 = 0.0f, sum1 = 0.0f, sum2 = 0.0f;
    for (int row = LID(0); row < rows; row += PT_RED_WG) {
        const int b = row / P, p = row % P;
        const int h = p * st - pad + r;
        if (h < 0 || h >= H) continue;
        GLOBAL const float *gr = dy + dyo + (((long)b * K + k) * P + p) * Q;
        GLOBAL const float *xr = x + xo + (((long)b * C + c) * H + h) * W - pad + s0;
        for (int q = qa; q <= qb; q++) {
            const float gv = gr[q];
            if (q >= lo0 && q <= hi0) sum0 += gv * xr[q * st];
            if (q >= lo1 && q <= hi1) sum1 += gv * xr[q * st + 1];
            if (q >= lo2 && q <= hi2) sum2 += gv * xr[q * st + 2];
        }
    }
    /* every item through every barrier; only the weights below S are written */
    const float t0 = pt_k_block_sum(buf, sum0), t1 = pt_k_block_sum(buf, sum1), t2 = pt_k_block_sum(buf, sum2);
    const long at = wo + (long)row_id * S + s0;
    if (LID(0) == 0) {
        dw[at] = acc ? dw[at] + t0 : t0;
        if (ns > 1) dw[at + 1] = acc ? dw[at + 1] + t1 : t1;
        if (ns > 2) dw[at + 2] = acc ? dw[at + 2] + t2 : t2;
    }
}
