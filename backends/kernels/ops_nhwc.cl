/* Channels-last (NHWC) forms of the kernels that index images by channel or by pixel: bias
 * add, batch-norm training forward, evaluation and backward, max-pool forward and backward,
 * global average pooling forward and backward. Element (b,c,h,w) of an NHWC image lies at ((b*H + h)*W + w)*C + c. Each does
 * the NCHW kernel's arithmetic in the NCHW kernel's order (the same window order, the same
 * first-maximum and NaN rules, the same summation order), so an NHWC plan computes what the
 * NCHW plan computes, bit for bit; the operands that may be stored in 16 bits (the op table's
 * lowp ones) come with their storage codes, as in the 16-bit twins. Used where every image
 * operand of the op is NHWC (kernel_ops.c); the rest go through NCHW copies. */

/* y[...,c] += bias[c]; n elements */
KERNEL void pt_bias_add_nhwc(GLOBAL float *y, pt_i64 yo, GLOBAL const float *bias, pt_i64 bo, int n, int C, int ydt)
{
    long i = GID(0);
    if (i >= n) return;
    pt_k_st(y, yo, ydt, i, pt_k_ld(y, yo, ydt, i) + bias[bo + i % C]);
}

/* pt_bn_fwd_eval with the channel of element i at i % C (z, res: the residual, as there) */
KERNEL void pt_bn_fwd_eval_nhwc(GLOBAL const float *x, pt_i64 xo, GLOBAL const float *gamma, pt_i64 go,
                                GLOBAL const float *beta, pt_i64 bo, GLOBAL float *y, pt_i64 yo,
                                GLOBAL const float *rmean, pt_i64 rmo, GLOBAL const float *rvar, pt_i64 rvo,
                                GLOBAL const float *z, pt_i64 zo, int n, int C, float eps, int relu, int res, int xdt,
                                int ydt, int zdt)
{
    long i = GID(0);
    if (i >= n) return;
    int c = (int)(i % C);
    float invstd = 1.0f / SQRTF(rvar[rvo + c] + eps);
    float scale = gamma[go + c] * invstd;
    float v = (pt_k_ld(x, xo, xdt, i) - rmean[rmo + c]) * scale + beta[bo + c];
    if (res) v += pt_k_ld(z, zo, zdt, i);
    pt_k_st(y, yo, ydt, i, relu && v < 0.0f ? 0.0f : v); /* fused ReLU: NaN stays NaN */
}

/* pt_bn_fwd_train over channels-last x, y and z: ops.cl's body with its NHWC walk (one
 * work-group per channel, the same order of sums, so the same bits); storage codes last */
KERNEL void pt_bn_fwd_train_nhwc(GLOBAL const float *x, pt_i64 xo, GLOBAL const float *gamma, pt_i64 go,
                                 GLOBAL const float *beta, pt_i64 bo, GLOBAL float *y, pt_i64 yo,
                                 GLOBAL float *rmean, pt_i64 rmo, GLOBAL float *rvar, pt_i64 rvo,
                                 GLOBAL float *smean, pt_i64 smo, GLOBAL float *sinv, pt_i64 sio,
                                 GLOBAL const float *z, pt_i64 zo, int N, int C, int inner, float eps, float momentum,
                                 int relu, int res, int xdt, int ydt, int zdt)
{
    LOCAL float buf[PT_RED_WG];
    pt_bn_fwd_train_body(x, xo, xdt, gamma, go, beta, bo, y, yo, ydt, rmean, rmo, rvar, rvo, smean, smo, sinv, sio,
                         z, zo, zdt, N, C, inner, eps, momentum, relu, res, 1, buf);
}

/* pt_bn_bwd over channels-last x, dy and dx, as above */
KERNEL void pt_bn_bwd_nhwc(GLOBAL const float *x, pt_i64 xo, GLOBAL const float *dy, pt_i64 dyo,
                           GLOBAL const float *gamma, pt_i64 go, GLOBAL const float *smean, pt_i64 smo,
                           GLOBAL const float *sinv, pt_i64 sio, GLOBAL float *dx, pt_i64 dxo,
                           GLOBAL float *dgamma, pt_i64 dgo, GLOBAL float *dbeta, pt_i64 dbo, int N, int C,
                           int inner, int acc, int xdt)
{
    LOCAL float buf[PT_RED_WG];
    pt_bn_bwd_body(x, xo, xdt, dy, dyo, gamma, go, smean, smo, sinv, sio, dx, dxo, dgamma, dgo, dbeta, dbo, N, C,
                   inner, acc, 1, buf);
}

/* One item per output element (NHWC order), n = N*P*Q*C; argmax (NHWC, as y) holds the index
 * h*W + w inside the plane, as in NCHW. */
KERNEL void pt_maxpool_fwd_nhwc(GLOBAL const float *x, pt_i64 xo, GLOBAL float *y, pt_i64 yo, GLOBAL int *arg,
                                pt_i64 ao, int n, int H, int W, int P, int Q, int C, int k, int st, int pad, int xdt,
                                int ydt)
{
    long idx = GID(0);
    if (idx >= n) return;
    const int c = (int)(idx % C);
    const long t = idx / C;
    const int oj = (int)(t % Q), oi = (int)(t / Q % P);
    const long b = t / ((long)P * Q);
    float best = -INF_F;
    int bi = -1;
    for (int a = 0; a < k; a++) {
        const int hi = oi * st - pad + a;
        if (hi < 0 || hi >= H) continue;
        for (int e = 0; e < k; e++) {
            const int wi = oj * st - pad + e;
            if (wi < 0 || wi >= W) continue;
            const float v = pt_k_ld(x, xo, xdt, ((b * H + hi) * W + wi) * C + c);
            /* first maximum wins; the first NaN wins and sticks (as the NCHW kernel) */
            if (bi < 0 || (!ISNAN(best) && (v > best || ISNAN(v)))) {
                best = v;
                bi = hi * W + wi;
            }
        }
    }
    pt_k_st(y, yo, ydt, idx, best);
    arg[ao + idx] = bi;
}

/* A gather: one item per input element (NHWC order), n = N*H*W*C, summing the gradients of the
 * outputs whose windows cover it and whose argmax it is, in (i, j) order, from dx (acc) or 0:
 * the NCHW kernel's sums in its order. */
KERNEL void pt_maxpool_bwd_nhwc(GLOBAL const float *dy, pt_i64 dyo, GLOBAL const int *arg, pt_i64 ao,
                                GLOBAL float *dx, pt_i64 dxo, int n, int H, int W, int P, int Q, int C, int k, int st,
                                int pad, int acc)
{
    long idx = GID(0);
    if (idx >= n) return;
    const int c = (int)(idx % C);
    const long t = idx / C;
    const int w = (int)(t % W), h = (int)(t / W % H);
    const long b = t / ((long)H * W);
    int ilo = h + pad - k + 1 <= 0 ? 0 : (h + pad - k + 1 + st - 1) / st;
    int ihi = (h + pad) / st;
    if (ihi > P - 1) ihi = P - 1;
    int jlo = w + pad - k + 1 <= 0 ? 0 : (w + pad - k + 1 + st - 1) / st;
    int jhi = (w + pad) / st;
    if (jhi > Q - 1) jhi = Q - 1;
    const int cell = h * W + w;
    float s = acc ? dx[dxo + idx] : 0.0f;
    for (int i = ilo; i <= ihi; i++)
        for (int j = jlo; j <= jhi; j++) {
            const long o = ((b * P + i) * Q + j) * C + c;
            if (arg[ao + o] == cell) s += dy[dyo + o];
        }
    dx[dxo + idx] = s;
}

/* One item per (sample, channel), planes = N*C: the mean over the plane's hw pixels, summed in
 * pixel order (compensated) as the NCHW kernel sums them. */
KERNEL void pt_gap_fwd_nhwc(GLOBAL const float *x, pt_i64 xo, GLOBAL float *y, pt_i64 yo, int planes, int hw, int C,
                            float inv, int xdt)
{
    long pl = GID(0);
    if (pl >= planes) return;
    const long b = pl / C, c = pl % C;
    float s = 0.0f, k = 0.0f;
    for (int i = 0; i < hw; i++) pt_k_kahan(&s, &k, pt_k_ld(x, xo, xdt, (b * hw + i) * C + c));
    y[yo + pl] = (s - k) * inv;
}

/* dx (NHWC, n elements) = (acc ? dx : 0) + dy[b, c] / hw */
KERNEL void pt_gap_bwd_nhwc(GLOBAL const float *dy, pt_i64 dyo, GLOBAL float *dx, pt_i64 dxo, int n, int hw, int C,
                            float inv, int acc)
{
    long i = GID(0);
    if (i >= n) return;
    float g = dy[dyo + i / ((long)hw * C) * C + i % C] * inv;
    dx[dxo + i] = acc ? dx[dxo + i] + g : g;
}
