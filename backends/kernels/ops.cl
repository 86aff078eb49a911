/* The device kernels of every non-GEMM op of polytrain/op.h, written once in the kernel dialect
 * (dialect_opencl.h or dialect_cuda.h): no OpenCL or CUDA builtin appears here except
 * through its macros. Each kernel mirrors the cpu backend's arithmetic (the oracle) and never
 * uses atomics, so results are deterministic. Tensors arrive as (pointer, element offset). */

/* ---- helpers ---- */

DEVFN void pt_k_kahan(float *s, float *c, float v)
{
    float y = v - *c;
    float t = *s + y;
    *c = (t - *s) - y;
    *s = t;
}

/* Pairwise sum over the work-group (size PT_RED_WG, a power of two); every item gets it. */
DEVFN float pt_k_block_sum(LOCAL_PTR float *buf, float v)
{
    int l = LID(0);
    buf[l] = v;
    for (int s = PT_RED_WG / 2; s > 0; s >>= 1) {
        BARRIER();
        if (l < s) buf[l] += buf[l + s];
    }
    BARRIER();
    float r = buf[0];
    BARRIER();
    return r;
}

/* Walks the elements (n, i) of one channel of an [N, C, inner] tensor, PT_RED_WG apart; a
 * step past the end of a plane of at least PT_RED_WG elements lands in the next one, without
 * a division. */
DEVFN void pt_k_ch_step(int *n, int *i, int inner)
{
    *i += PT_RED_WG;
    if (*i >= inner) {
        if (*i < 2 * inner) {
            *n += 1;
            *i -= inner;
        } else {
            *n += *i / inner;
            *i %= inner;
        }
    }
}
#define PT_CHANNEL_LOOP(n, i, N, inner) \
    for (int n = LID(0) / (inner), i = LID(0) % (inner); n < (N); pt_k_ch_step(&n, &i, (inner)))

/* pt_k_ch_step by `by` elements (a multiple of PT_RED_WG). */
DEVFN void pt_k_ch_step_by(int *n, int *i, int inner, int by)
{
    *i += by;
    if (*i >= inner) {
        if (*i < 2 * inner) {
            *n += 1;
            *i -= inner;
        } else {
            *n += *i / inner;
            *i %= inner;
        }
    }
}

/* The same walk as two interleaved ones, (na, ia) on the even steps and (nb, ib) on the odd
 * (the body tests nb < N): sums kept apart per walk are two independent dependency chains,
 * which a CPU device's core overlaps (a compensated sum's chain is four dependent adds per
 * element). */
#define PT_CHANNEL_LOOP2(na, ia, nb, ib, N, inner)                                                            \
    for (int na = LID(0) / (inner), ia = LID(0) % (inner), nb = (LID(0) + PT_RED_WG) / (inner),                \
             ib = (LID(0) + PT_RED_WG) % (inner);                                                              \
         na < (N); pt_k_ch_step_by(&na, &ia, (inner), 2 * PT_RED_WG), pt_k_ch_step_by(&nb, &ib, (inner), 2 * PT_RED_WG))

/* ---- elementwise ---- */

KERNEL void pt_fill(GLOBAL float *y, pt_i64 yo, int n, float value)
{
    long i = GID(0);
    if (i >= n) return;
    y[yo + i] = value;
}

/* y = beta == 0 ? 0 : beta*y (a GEMM with an empty inner dimension) */
KERNEL void pt_scale(GLOBAL float *y, pt_i64 yo, int n, float beta)
{
    long i = GID(0);
    if (i >= n) return;
    y[yo + i] = beta == 0.0f ? 0.0f : beta * y[yo + i];
}

/* use_ss: the step record's skip word (12) set turns the update ops into no-ops (a step whose
 * loss-scaling check found Inf/NaN, decided on the device: polytrain/op.h pt_op_step_gated) */
KERNEL void pt_axpy(GLOBAL const float *x, pt_i64 xo, GLOBAL float *y, pt_i64 yo, int n, float alpha,
                    int acc, GLOBAL const pt_u32 *ss, pt_i64 sso, int use_ss)
{
    long i = GID(0);
    if (i >= n) return;
    if (use_ss && ss[sso + 12] != 0u) return;
    y[yo + i] = acc ? y[yo + i] + alpha * x[xo + i] : alpha * x[xo + i];
}

/* The kernels whose operands may be activations stored in 16 bits (the op table's lowp ones)
 * are a body over storage codes (act16.cl) and two entry points: the float32 kernel, which
 * passes PT_KDT_F32, and its twin <name>_a16, which takes the float32 kernel's parameters
 * followed by the code of each lowp operand of the op, in operand order (kernel_ops.c). */

/* relu: the op's fuse_relu, y = max(a + b, 0) as relu_fwd (NaN stays NaN) */
DEVFN_INLINE void pt_add_body(GLOBAL const float *a, pt_i64 ao, int adt, GLOBAL const float *b, pt_i64 bo, int bdt,
                              GLOBAL float *y, pt_i64 yo, int ydt, int n, int relu)
{
    long i = GID(0);
    if (i >= n) return;
    float v = pt_k_ld(a, ao, adt, i) + pt_k_ld(b, bo, bdt, i);
    pt_k_st(y, yo, ydt, i, relu && v < 0.0f ? 0.0f : v);
}

KERNEL void pt_add(GLOBAL const float *a, pt_i64 ao, GLOBAL const float *b, pt_i64 bo, GLOBAL float *y,
                   pt_i64 yo, int n, int relu)
{
    pt_add_body(a, ao, PT_KDT_F32, b, bo, PT_KDT_F32, y, yo, PT_KDT_F32, n, relu);
}

KERNEL void pt_add_a16(GLOBAL const float *a, pt_i64 ao, GLOBAL const float *b, pt_i64 bo, GLOBAL float *y,
                       pt_i64 yo, int n, int relu, int adt, int bdt, int ydt)
{
    pt_add_body(a, ao, adt, b, bo, bdt, y, yo, ydt, n, relu);
}

DEVFN_INLINE void pt_bias_add_body(GLOBAL float *y, pt_i64 yo, int ydt, GLOBAL const float *bias, pt_i64 bo, int n,
                                   int C, int inner)
{
    long i = GID(0);
    if (i >= n) return;
    int c = (int)((i / inner) % C);
    pt_k_st(y, yo, ydt, i, pt_k_ld(y, yo, ydt, i) + bias[bo + c]);
}

KERNEL void pt_bias_add(GLOBAL float *y, pt_i64 yo, GLOBAL const float *bias, pt_i64 bo, int n, int C,
                        int inner)
{
    pt_bias_add_body(y, yo, PT_KDT_F32, bias, bo, n, C, inner);
}

KERNEL void pt_bias_add_a16(GLOBAL float *y, pt_i64 yo, GLOBAL const float *bias, pt_i64 bo, int n, int C,
                            int inner, int ydt)
{
    pt_bias_add_body(y, yo, ydt, bias, bo, n, C, inner);
}

DEVFN_INLINE void pt_relu_fwd_body(GLOBAL const float *x, pt_i64 xo, int xdt, GLOBAL float *y, pt_i64 yo, int ydt,
                                   int n)
{
    long i = GID(0);
    if (i >= n) return;
    float v = pt_k_ld(x, xo, xdt, i);
    pt_k_st(y, yo, ydt, i, v < 0.0f ? 0.0f : v); /* NaN stays NaN */
}

KERNEL void pt_relu_fwd(GLOBAL const float *x, pt_i64 xo, GLOBAL float *y, pt_i64 yo, int n)
{
    pt_relu_fwd_body(x, xo, PT_KDT_F32, y, yo, PT_KDT_F32, n);
}

KERNEL void pt_relu_fwd_a16(GLOBAL const float *x, pt_i64 xo, GLOBAL float *y, pt_i64 yo, int n, int xdt, int ydt)
{
    pt_relu_fwd_body(x, xo, xdt, y, yo, ydt, n);
}

DEVFN_INLINE void pt_relu_bwd_body(GLOBAL const float *y, pt_i64 yo, int ydt, GLOBAL const float *dy, pt_i64 dyo,
                                   GLOBAL float *dx, pt_i64 dxo, int n, int acc)
{
    long i = GID(0);
    if (i >= n) return;
    float g = pt_k_ld(y, yo, ydt, i) > 0.0f ? dy[dyo + i] : 0.0f;
    dx[dxo + i] = acc ? dx[dxo + i] + g : g;
}

KERNEL void pt_relu_bwd(GLOBAL const float *y, pt_i64 yo, GLOBAL const float *dy, pt_i64 dyo,
                        GLOBAL float *dx, pt_i64 dxo, int n, int acc)
{
    pt_relu_bwd_body(y, yo, PT_KDT_F32, dy, dyo, dx, dxo, n, acc);
}

KERNEL void pt_relu_bwd_a16(GLOBAL const float *y, pt_i64 yo, GLOBAL const float *dy, pt_i64 dyo,
                            GLOBAL float *dx, pt_i64 dxo, int n, int acc, int ydt)
{
    pt_relu_bwd_body(y, yo, ydt, dy, dyo, dx, dxo, n, acc);
}

KERNEL void pt_dropout_fwd(GLOBAL const float *x, pt_i64 xo, GLOBAL float *y, pt_i64 yo,
                           GLOBAL float *mask, pt_i64 mo, int n, int per, float p, float scale,
                           pt_u64 seed, pt_u32 purpose, pt_u64 stream, pt_i64 sample_base,
                           GLOBAL const pt_u32 *ss, pt_i64 sso, int use_ss)
{
    long i = GID(0);
    if (i >= n) return;
    if (use_ss) { /* the step's record (pt_step_scalars): words 6-7 step, 8-9 sample_base */
        const pt_u64 step = (pt_u64)ss[sso + 6] | (pt_u64)ss[sso + 7] << 32;
        stream = step * 65536u + (stream & 0xffffu);
        sample_base = (pt_i64)((pt_u64)ss[sso + 8] | (pt_u64)ss[sso + 9] << 32);
    }
    int s = (int)(i / per), e = (int)(i % per);
    float u = pt_k_rng_uniform(seed, purpose, stream, (pt_u64)(sample_base + s), (pt_u32)e);
    float m = u >= p ? scale : 0.0f;
    mask[mo + i] = m;
    y[yo + i] = x[xo + i] * m;
}

/* Philox words themselves, for the bitwise test against core/rng.h. */
KERNEL void pt_rng_words(GLOBAL pt_u32 *out, pt_i64 oo, int n, pt_u64 seed, pt_u32 purpose,
                         pt_u64 stream, pt_u64 a)
{
    long i = GID(0);
    if (i >= n) return;
    out[oo + i] = pt_k_rng_u32(seed, purpose, stream, a, (pt_u32)i);
}

KERNEL void pt_mul_acc(GLOBAL const float *dy, pt_i64 dyo, GLOBAL const float *mask, pt_i64 mo,
                       GLOBAL float *dx, pt_i64 dxo, int n, int acc)
{
    long i = GID(0);
    if (i >= n) return;
    float g = dy[dyo + i] * mask[mo + i];
    dx[dxo + i] = acc ? dx[dxo + i] + g : g;
}

/* ---- per-channel reductions: one work-group of PT_RED_WG items per channel ---- */

KERNEL void pt_bias_grad(GLOBAL const float *dy, pt_i64 dyo, GLOBAL float *db, pt_i64 dbo, int N,
                         int C, int inner, int acc)
{
    LOCAL float buf[PT_RED_WG];
    int c = GROUP_ID(0);
    float s = 0.0f, k = 0.0f;
    PT_CHANNEL_LOOP(n, i, N, inner) pt_k_kahan(&s, &k, dy[dyo + ((long)n * C + c) * inner + i]);
    float t = pt_k_block_sum(buf, s - k);
    if (LID(0) == 0) db[dbo + c] = acc ? db[dbo + c] + t : t;
}

DEVFN_INLINE void pt_bn_fwd_train_body(GLOBAL const float *x, pt_i64 xo, int xdt, GLOBAL const float *gamma,
                                       pt_i64 go, GLOBAL const float *beta, pt_i64 bo, GLOBAL float *y, pt_i64 yo,
                                       int ydt, GLOBAL float *rmean, pt_i64 rmo, GLOBAL float *rvar, pt_i64 rvo,
                                       GLOBAL float *smean, pt_i64 smo, GLOBAL float *sinv, pt_i64 sio,
                                       GLOBAL const float *z, pt_i64 zo, int zdt, int N, int C, int inner, float eps,
                                       float momentum, int relu, int res, int nhwc, LOCAL_PTR float *buf)
{
    int c = GROUP_ID(0);
    int m = N * inner;
    /* element (n, c, i) at c*cs + n*nstride + i*is: NCHW or, nhwc (a literal at each call),
     * channels last; the same walk and arithmetic either way */
    const long cs = nhwc ? 1 : inner, is = nhwc ? C : 1;
    GLOBAL const void *xc = pt_k_at(x, xo, xdt, (long)c * cs);
    GLOBAL void *yc = pt_k_atw(y, yo, ydt, (long)c * cs);
    GLOBAL const void *zc = pt_k_at(z, zo, zdt, (long)c * cs);
    const long nstride = (long)C * inner;
    /* two passes, as the cpu oracle: the mean, then the centred squares */
    float s = 0.0f, k = 0.0f;
    PT_CHANNEL_LOOP(n, i, N, inner) pt_k_kahan(&s, &k, PT_K_LDP(xc, xdt, n * nstride + i * is));
    float sum = pt_k_block_sum(buf, s - k);
    float mean = m > 0 ? sum / (float)m : 0.0f;
    s = 0.0f;
    k = 0.0f;
    PT_CHANNEL_LOOP(n, i, N, inner)
    {
        float d = PT_K_LDP(xc, xdt, n * nstride + i * is) - mean;
        pt_k_kahan(&s, &k, d * d);
    }
    float sq = pt_k_block_sum(buf, s - k);
    float var = m > 0 ? sq / (float)m : 0.0f;
    float invstd = 1.0f / SQRTF(var + eps);
    if (LID(0) == 0) {
        float unbiased = m > 1 ? sq / (float)(m - 1) : var;
        smean[smo + c] = mean;
        sinv[sio + c] = invstd;
        rmean[rmo + c] = (1.0f - momentum) * rmean[rmo + c] + momentum * mean;
        rvar[rvo + c] = (1.0f - momentum) * rvar[rvo + c] + momentum * unbiased;
    }
    /* (x - mean)*scale + beta, never x*scale + shift: see cpu_batchnorm.c */
    float scale = gamma[go + c] * invstd, b = beta[bo + c];
    PT_CHANNEL_LOOP(n, i, N, inner)
    {
        float v = (PT_K_LDP(xc, xdt, n * nstride + i * is) - mean) * scale + b;
        if (res) v += PT_K_LDP(zc, zdt, n * nstride + i * is); /* the residual add, as the add kernel */
        PT_K_STP(yc, ydt, n * nstride + i * is, relu && v < 0.0f ? 0.0f : v); /* fused ReLU: NaN stays NaN */
    }
}

/* z: the residual (res 1), or any tensor the kernel does not read (res 0) */
KERNEL void pt_bn_fwd_train(GLOBAL const float *x, pt_i64 xo, GLOBAL const float *gamma, pt_i64 go,
                            GLOBAL const float *beta, pt_i64 bo, GLOBAL float *y, pt_i64 yo,
                            GLOBAL float *rmean, pt_i64 rmo, GLOBAL float *rvar, pt_i64 rvo,
                            GLOBAL float *smean, pt_i64 smo, GLOBAL float *sinv, pt_i64 sio,
                            GLOBAL const float *z, pt_i64 zo, int N, int C, int inner, float eps, float momentum,
                            int relu, int res)
{
    LOCAL float buf[PT_RED_WG];
    pt_bn_fwd_train_body(x, xo, PT_KDT_F32, gamma, go, beta, bo, y, yo, PT_KDT_F32, rmean, rmo, rvar, rvo, smean,
                         smo, sinv, sio, z, zo, PT_KDT_F32, N, C, inner, eps, momentum, relu, res, 0, buf);
}

KERNEL void pt_bn_fwd_train_a16(GLOBAL const float *x, pt_i64 xo, GLOBAL const float *gamma, pt_i64 go,
                                GLOBAL const float *beta, pt_i64 bo, GLOBAL float *y, pt_i64 yo,
                                GLOBAL float *rmean, pt_i64 rmo, GLOBAL float *rvar, pt_i64 rvo,
                                GLOBAL float *smean, pt_i64 smo, GLOBAL float *sinv, pt_i64 sio,
                                GLOBAL const float *z, pt_i64 zo, int N, int C, int inner, float eps, float momentum,
                                int relu, int res, int xdt, int ydt, int zdt)
{
    LOCAL float buf[PT_RED_WG];
    pt_bn_fwd_train_body(x, xo, xdt, gamma, go, beta, bo, y, yo, ydt, rmean, rmo, rvar, rvo, smean, smo, sinv, sio,
                         z, zo, zdt, N, C, inner, eps, momentum, relu, res, 0, buf);
}

DEVFN_INLINE void pt_bn_fwd_eval_body(GLOBAL const float *x, pt_i64 xo, int xdt, GLOBAL const float *gamma,
                                      pt_i64 go, GLOBAL const float *beta, pt_i64 bo, GLOBAL float *y, pt_i64 yo,
                                      int ydt, GLOBAL const float *rmean, pt_i64 rmo, GLOBAL const float *rvar,
                                      pt_i64 rvo, GLOBAL const float *z, pt_i64 zo, int zdt, int n, int C, int inner,
                                      float eps, int relu, int res)
{
    long i = GID(0);
    if (i >= n) return;
    int c = (int)((i / inner) % C);
    float invstd = 1.0f / SQRTF(rvar[rvo + c] + eps);
    float scale = gamma[go + c] * invstd;
    float v = (pt_k_ld(x, xo, xdt, i) - rmean[rmo + c]) * scale + beta[bo + c];
    if (res) v += pt_k_ld(z, zo, zdt, i); /* the residual add, as the add kernel */
    pt_k_st(y, yo, ydt, i, relu && v < 0.0f ? 0.0f : v); /* fused ReLU: NaN stays NaN */
}

/* z as in pt_bn_fwd_train */
KERNEL void pt_bn_fwd_eval(GLOBAL const float *x, pt_i64 xo, GLOBAL const float *gamma, pt_i64 go,
                           GLOBAL const float *beta, pt_i64 bo, GLOBAL float *y, pt_i64 yo,
                           GLOBAL const float *rmean, pt_i64 rmo, GLOBAL const float *rvar, pt_i64 rvo,
                           GLOBAL const float *z, pt_i64 zo, int n, int C, int inner, float eps, int relu, int res)
{
    pt_bn_fwd_eval_body(x, xo, PT_KDT_F32, gamma, go, beta, bo, y, yo, PT_KDT_F32, rmean, rmo, rvar, rvo, z, zo,
                        PT_KDT_F32, n, C, inner, eps, relu, res);
}

KERNEL void pt_bn_fwd_eval_a16(GLOBAL const float *x, pt_i64 xo, GLOBAL const float *gamma, pt_i64 go,
                               GLOBAL const float *beta, pt_i64 bo, GLOBAL float *y, pt_i64 yo,
                               GLOBAL const float *rmean, pt_i64 rmo, GLOBAL const float *rvar, pt_i64 rvo,
                               GLOBAL const float *z, pt_i64 zo, int n, int C, int inner, float eps, int relu,
                               int res, int xdt, int ydt, int zdt)
{
    pt_bn_fwd_eval_body(x, xo, xdt, gamma, go, beta, bo, y, yo, ydt, rmean, rmo, rvar, rvo, z, zo, zdt, n, C, inner,
                        eps, relu, res);
}

DEVFN_INLINE void pt_bn_bwd_body(GLOBAL const float *x, pt_i64 xo, int xdt, GLOBAL const float *dy, pt_i64 dyo,
                                 GLOBAL const float *gamma, pt_i64 go, GLOBAL const float *smean, pt_i64 smo,
                                 GLOBAL const float *sinv, pt_i64 sio, GLOBAL float *dx, pt_i64 dxo,
                                 GLOBAL float *dgamma, pt_i64 dgo, GLOBAL float *dbeta, pt_i64 dbo, int N, int C,
                                 int inner, int acc, int nhwc, LOCAL_PTR float *buf)
{
    int c = GROUP_ID(0);
    int m = N * inner;
    const long nstride = (long)C * inner;
    /* as in pt_bn_fwd_train_body: NCHW or (nhwc, a literal at each call) channels last */
    const long cs = nhwc ? 1 : inner, is = nhwc ? C : 1;
    GLOBAL const void *xc = pt_k_at(x, xo, xdt, (long)c * cs);
    GLOBAL const float *dyc = dy + dyo + (long)c * cs;
    GLOBAL float *dxc = dx + dxo + (long)c * cs;
    /* One pass, as the cpu oracle: sums of x - meanf, dy and dy*(x - meanf) about the saved
     * (rounded) mean, then sum dy*(x - mean) = sum dy*(x - meanf) - (mean - meanf)*sum dy
     * with the batch mean's offset mean - meanf = sum (x - meanf) / m: the rounding of the
     * saved mean biases nothing, and nothing cancels (meanf is within rounding of the mean). */
    const float meanf = smean[smo + c];
    float s0 = 0.0f, k0 = 0.0f, s1 = 0.0f, k1 = 0.0f, s2 = 0.0f, k2 = 0.0f;
    float t0 = 0.0f, l0 = 0.0f, t1 = 0.0f, l1 = 0.0f, t2 = 0.0f, l2 = 0.0f; /* the odd steps' */
    PT_CHANNEL_LOOP2(n, i, n2, i2, N, inner)
    {
        const long j = n * nstride + i * is;
        const float g = dyc[j], d = PT_K_LDP(xc, xdt, j) - meanf;
        pt_k_kahan(&s0, &k0, d);
        pt_k_kahan(&s1, &k1, g);
        pt_k_kahan(&s2, &k2, g * d);
        if (n2 < N) {
            const long j2 = n2 * nstride + i2 * is;
            const float g2 = dyc[j2], d2 = PT_K_LDP(xc, xdt, j2) - meanf;
            pt_k_kahan(&t0, &l0, d2);
            pt_k_kahan(&t1, &l1, g2);
            pt_k_kahan(&t2, &l2, g2 * d2);
        }
    }
    const float sx = pt_k_block_sum(buf, (s0 - k0) + (t0 - l0));
    const float sdy = pt_k_block_sum(buf, (s1 - k1) + (t1 - l1));
    const float sdyx = pt_k_block_sum(buf, (s2 - k2) + (t2 - l2)) - (m > 0 ? sx / (float)m : 0.0f) * sdy;
    float invstd = sinv[sio + c];
    if (LID(0) == 0) {
        dbeta[dbo + c] = sdy;
        dgamma[dgo + c] = sdyx * invstd;
    }
    if (m <= 0) return;
    float kk = gamma[go + c] * invstd;
    float a = kk, b = -kk * sdyx * invstd * invstd / (float)m, c0 = -kk * sdy / (float)m;
    PT_CHANNEL_LOOP(n, i, N, inner)
    {
        long j = n * nstride + i * is;
        float v = a * dyc[j] + b * (PT_K_LDP(xc, xdt, j) - meanf) + c0;
        dxc[j] = acc ? dxc[j] + v : v;
    }
}

KERNEL void pt_bn_bwd(GLOBAL const float *x, pt_i64 xo, GLOBAL const float *dy, pt_i64 dyo,
                      GLOBAL const float *gamma, pt_i64 go, GLOBAL const float *smean, pt_i64 smo,
                      GLOBAL const float *sinv, pt_i64 sio, GLOBAL float *dx, pt_i64 dxo,
                      GLOBAL float *dgamma, pt_i64 dgo, GLOBAL float *dbeta, pt_i64 dbo, int N, int C,
                      int inner, int acc)
{
    LOCAL float buf[PT_RED_WG];
    pt_bn_bwd_body(x, xo, PT_KDT_F32, dy, dyo, gamma, go, smean, smo, sinv, sio, dx, dxo, dgamma, dgo, dbeta, dbo, N,
                   C, inner, acc, 0, buf);
}

KERNEL void pt_bn_bwd_a16(GLOBAL const float *x, pt_i64 xo, GLOBAL const float *dy, pt_i64 dyo,
                          GLOBAL const float *gamma, pt_i64 go, GLOBAL const float *smean, pt_i64 smo,
                          GLOBAL const float *sinv, pt_i64 sio, GLOBAL float *dx, pt_i64 dxo,
                          GLOBAL float *dgamma, pt_i64 dgo, GLOBAL float *dbeta, pt_i64 dbo, int N, int C,
                          int inner, int acc, int xdt)
{
    LOCAL float buf[PT_RED_WG];
    pt_bn_bwd_body(x, xo, xdt, dy, dyo, gamma, go, smean, smo, sinv, sio, dx, dxo, dgamma, dgo, dbeta, dbo, N, C,
                   inner, acc, 0, buf);
}

/* ---- pooling ---- */

/* One item per output row (plane, i), n = planes*P: the index arithmetic once per Q outputs. */
DEVFN_INLINE void pt_maxpool_fwd_body(GLOBAL const float *x, pt_i64 xo, int xdt, GLOBAL float *y, pt_i64 yo,
                                      int ydt, GLOBAL int *arg, pt_i64 ao, int n, int H, int W, int P, int Q, int k,
                                      int st, int pad)
{
    long idx = GID(0);
    if (idx >= n) return;
    long plane = idx / P;
    int oi = (int)(idx - plane * P);
    GLOBAL const void *xp = pt_k_at(x, xo, xdt, plane * H * W);
    GLOBAL void *yr = pt_k_atw(y, yo, ydt, idx * Q);
    GLOBAL int *ar = arg + ao + idx * Q;
    if (k == 2 && st == 2 && pad == 0 && 2 * oi + 1 < H && 2 * Q <= W) {
        /* the common 2x2 window, inside the plane: straight-line code that PoCL vectorises
         * along the row; the same first-maximum and NaN rules as below, as selects. The
         * float32 loop loads as plain floats: through PT_K_LDP's storage test, even folded
         * away, the compiler no longer widens the row's indices and PoCL stops vectorising
         * it (12-15% slower). */
        const int h0 = 2 * oi * W;
#define PT_MP_STEP(LD, at)                                                                                 \
    {                                                                                                      \
        const float v = LD(at);                                                                            \
        const int take = !ISNAN(best) && (v > best || ISNAN(v));                                           \
        best = take ? v : best;                                                                            \
        bi = take ? (at) : bi;                                                                             \
    }
#define PT_MP_ROW(LD, ST)                                                                                  \
    for (int oj = 0; oj < Q; oj++) {                                                                       \
        const int c0 = h0 + 2 * oj;                                                                        \
        float best = LD(c0);                                                                               \
        int bi = c0;                                                                                       \
        PT_MP_STEP(LD, c0 + 1)                                                                             \
        PT_MP_STEP(LD, c0 + W)                                                                             \
        PT_MP_STEP(LD, c0 + W + 1)                                                                         \
        ST(oj, best);                                                                                      \
        ar[oj] = bi;                                                                                       \
    }
#define PT_MP_LD32(j) ((GLOBAL const float *)xp)[j]
#define PT_MP_ST32(j, v) ((GLOBAL float *)yr)[j] = (v)
#define PT_MP_LD16(j) PT_K_LDP(xp, xdt, j)
#define PT_MP_ST16(j, v) PT_K_STP(yr, ydt, j, v)
        if (xdt == PT_KDT_F32 && ydt == PT_KDT_F32)
            PT_MP_ROW(PT_MP_LD32, PT_MP_ST32)
        else
            PT_MP_ROW(PT_MP_LD16, PT_MP_ST16)
#undef PT_MP_STEP
#undef PT_MP_ROW
#undef PT_MP_LD32
#undef PT_MP_ST32
#undef PT_MP_LD16
#undef PT_MP_ST16
        return;
    }
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
                float v = PT_K_LDP(xp, xdt, hi * W + wi);
                /* first maximum wins; the first NaN wins and sticks (as the cpu backend) */
                if (bi < 0 || (!ISNAN(best) && (v > best || ISNAN(v)))) {
                    best = v;
                    bi = hi * W + wi;
                }
            }
        }
        PT_K_STP(yr, ydt, oj, best);
        ar[oj] = bi;
    }
}

KERNEL void pt_maxpool_fwd(GLOBAL const float *x, pt_i64 xo, GLOBAL float *y, pt_i64 yo,
                           GLOBAL int *arg, pt_i64 ao, int n, int H, int W, int P, int Q, int k,
                           int st, int pad)
{
    pt_maxpool_fwd_body(x, xo, PT_KDT_F32, y, yo, PT_KDT_F32, arg, ao, n, H, W, P, Q, k, st, pad);
}

KERNEL void pt_maxpool_fwd_a16(GLOBAL const float *x, pt_i64 xo, GLOBAL float *y, pt_i64 yo,
                               GLOBAL int *arg, pt_i64 ao, int n, int H, int W, int P, int Q, int k,
                               int st, int pad, int xdt, int ydt)
{
    pt_maxpool_fwd_body(x, xo, xdt, y, yo, ydt, arg, ao, n, H, W, P, Q, k, st, pad);
}

/* A gather, not a scatter: each input cell sums the outputs whose argmax it is, in output
 * order, so overlapping windows need no atomics and the sum is the cpu backend's. One item
 * per input row (plane, h), n = planes*H: it starts the row from dx (acc) or 0, then walks
 * the output rows whose windows cover h and, in (i, j) order, adds each output's gradient to
 * its argmax cell when that cell is in this row: the same sums in the same order as a cell at
 * a time, without a division per cell. */
KERNEL void pt_maxpool_bwd(GLOBAL const float *dy, pt_i64 dyo, GLOBAL const int *arg, pt_i64 ao,
                           GLOBAL float *dx, pt_i64 dxo, int n, int H, int W, int P, int Q, int k,
                           int st, int pad, int acc)
{
    long idx = GID(0);
    if (idx >= n) return;
    long plane = idx / H;
    int h = (int)(idx - plane * H);
    int ilo = h + pad - k + 1 <= 0 ? 0 : (h + pad - k + 1 + st - 1) / st;
    int ihi = (h + pad) / st;
    if (ihi > P - 1) ihi = P - 1;
    GLOBAL float *row = dx + dxo + idx * W;
    GLOBAL const float *gp = dy + dyo + plane * P * Q;
    GLOBAL const int *ap = arg + ao + plane * P * Q;
    if (!acc)
        for (int w = 0; w < W; w++) row[w] = 0.0f;
    const int first = h * W, last = first + W; /* this row's cells: [first, last) of the plane */
    for (int i = ilo; i <= ihi; i++)
        for (int j = 0; j < Q; j++) {
            const int a = ap[i * Q + j];
            if (a >= first && a < last) row[a - first] += gp[i * Q + j];
        }
}

DEVFN_INLINE void pt_gap_fwd_body(GLOBAL const float *x, pt_i64 xo, int xdt, GLOBAL float *y, pt_i64 yo, int planes,
                                  int hw, float inv)
{
    long pl = GID(0);
    if (pl >= planes) return;
    GLOBAL const void *xp = pt_k_at(x, xo, xdt, pl * hw);
    float s = 0.0f, k = 0.0f;
    for (int i = 0; i < hw; i++) pt_k_kahan(&s, &k, PT_K_LDP(xp, xdt, i));
    y[yo + pl] = (s - k) * inv;
}

KERNEL void pt_gap_fwd(GLOBAL const float *x, pt_i64 xo, GLOBAL float *y, pt_i64 yo, int planes,
                       int hw, float inv)
{
    pt_gap_fwd_body(x, xo, PT_KDT_F32, y, yo, planes, hw, inv);
}

KERNEL void pt_gap_fwd_a16(GLOBAL const float *x, pt_i64 xo, GLOBAL float *y, pt_i64 yo, int planes,
                           int hw, float inv, int xdt)
{
    pt_gap_fwd_body(x, xo, xdt, y, yo, planes, hw, inv);
}

KERNEL void pt_gap_bwd(GLOBAL const float *dy, pt_i64 dyo, GLOBAL float *dx, pt_i64 dxo, int n, int hw,
                       float inv, int acc)
{
    long i = GID(0);
    if (i >= n) return;
    float g = dy[dyo + i / hw] * inv;
    dx[dxo + i] = acc ? dx[dxo + i] + g : g;
}

/* ---- loss ---- */

/* One item per sample. loss = sum_j q_j (lse - z_j): every term is non-negative, so the
 * float sum does not cancel. A label outside 0..K-1 gives NaN loss and gradient (the cpu
 * backend returns an error; a device cannot without a sync). */
KERNEL void pt_xent(GLOBAL const float *z, pt_i64 zo, GLOBAL const int *labels, pt_i64 lo,
                    GLOBAL float *loss, pt_i64 losso, GLOBAL float *dl, pt_i64 dlo, int N, int K,
                    int has_grad, float smoothing, float grad_scale, GLOBAL const pt_u32 *ss, pt_i64 sso, int use_ss)
{
    long r = GID(0);
    if (r >= N) return;
    if (use_ss) grad_scale = F32_FROM_BITS(ss[sso + 5]);
    GLOBAL const float *zr = z + zo + r * K;
    int label = labels[lo + r];
    if (label < 0 || label >= K) {
        loss[losso + r] = NAN;
        if (has_grad)
            for (int j = 0; j < K; j++) dl[dlo + r * K + j] = NAN;
        return;
    }
    float mx = -INF_F;
    for (int j = 0; j < K; j++) mx = zr[j] > mx ? zr[j] : mx;
    float se = 0.0f, ke = 0.0f;
    for (int j = 0; j < K; j++) pt_k_kahan(&se, &ke, EXPF(zr[j] - mx));
    float lse = mx + LOGF(se - ke);
    float off = K > 0 ? smoothing / (float)K : 0.0f;
    float sd = 0.0f, kd = 0.0f;
    for (int j = 0; j < K; j++) pt_k_kahan(&sd, &kd, lse - zr[j]);
    loss[losso + r] = (1.0f - smoothing) * (lse - zr[label]) + off * (sd - kd);
    if (!has_grad) return;
    for (int j = 0; j < K; j++) {
        float q = (j == label ? 1.0f - smoothing : 0.0f) + off;
        dl[dlo + r * K + j] = grad_scale * (EXPF(zr[j] - lse) - q);
    }
}

/* ---- optimizers: the cpu backend's float formulas, term for term ---- */

KERNEL void pt_sgd(GLOBAL float *param, pt_i64 po, GLOBAL const float *grad, pt_i64 go,
                   GLOBAL float *buf, pt_i64 bo, int n, float lr, float mom, float damp, float wd,
                   int nesterov, int first, GLOBAL const pt_u32 *ss, pt_i64 sso, int use_ss)
{
    long i = GID(0);
    if (i >= n) return;
    if (use_ss) {
        if (ss[sso + 12] != 0u) return;
        lr = F32_FROM_BITS(ss[sso + 0]);
        mom = F32_FROM_BITS(ss[sso + 1]);
        first = (int)ss[sso + 2];
    }
    if (mom == 0.0f) {
        param[po + i] -= lr * (grad[go + i] + wd * param[po + i]);
        return;
    }
    const float g = grad[go + i] + wd * param[po + i];
    const float b = first ? g : mom * buf[bo + i] + (1.0f - damp) * g;
    buf[bo + i] = b;
    param[po + i] -= lr * (nesterov ? g + mom * b : b);
}

KERNEL void pt_adam(GLOBAL float *param, pt_i64 po, GLOBAL const float *grad, pt_i64 go,
                    GLOBAL float *m, pt_i64 mo, GLOBAL float *v, pt_i64 vo, int n, float b1,
                    float b2, float eps, float step_size, float sqrt_bc2, float decay, float l2,
                    GLOBAL const pt_u32 *ss, pt_i64 sso, int use_ss, float wd_decoupled)
{
    long i = GID(0);
    if (i >= n) return;
    if (use_ss) { /* decay = 1 - lr*wd as the host forms it (AdamW) */
        if (ss[sso + 12] != 0u) return;
        const float lr = F32_FROM_BITS(ss[sso + 0]);
        b1 = F32_FROM_BITS(ss[sso + 1]);
        step_size = F32_FROM_BITS(ss[sso + 3]);
        sqrt_bc2 = F32_FROM_BITS(ss[sso + 4]);
        if (wd_decoupled != 0.0f) decay = 1.0f - lr * wd_decoupled;
    }
    const float p = param[po + i] * decay;
    const float g = grad[go + i] + l2 * param[po + i];
    const float mi = b1 * m[mo + i] + (1.0f - b1) * g;
    const float vi = b2 * v[vo + i] + (1.0f - b2) * g * g;
    m[mo + i] = mi;
    v[vo + i] = vi;
    param[po + i] = p - step_size * (mi / (SQRTF(vi) / sqrt_bc2 + eps));
}

/* RMSprop as cpu_op_rmsprop; buf and gavg stand in for any valid buffer when unused
 * (momentum 0, not centered). oma = 1 - alpha, formed in double on the host. */
KERNEL void pt_rmsprop(GLOBAL float *param, pt_i64 po, GLOBAL const float *grad, pt_i64 go,
                       GLOBAL float *sq, pt_i64 so, GLOBAL float *buf, pt_i64 bo, GLOBAL float *gavg,
                       pt_i64 ao, int n, float lr, float alpha, float oma, float eps, float wd,
                       float mom, int centered, GLOBAL const pt_u32 *ss, pt_i64 sso, int use_ss)
{
    long i = GID(0);
    if (i >= n) return;
    if (use_ss) {
        if (ss[sso + 12] != 0u) return;
        lr = F32_FROM_BITS(ss[sso + 0]);
        mom = F32_FROM_BITS(ss[sso + 1]);
    }
    const float g = grad[go + i] + wd * param[po + i];
    const float s = sq[so + i] * alpha + oma * g * g;
    sq[so + i] = s;
    float avg;
    if (centered) {
        const float a = gavg[ao + i] + oma * (g - gavg[ao + i]);
        gavg[ao + i] = a;
        avg = SQRTF(s - a * a) + eps;
    } else {
        avg = SQRTF(s) + eps;
    }
    if (mom != 0.0f) {
        const float b = buf[bo + i] * mom + g / avg;
        buf[bo + i] = b;
        param[po + i] += -lr * b;
    } else {
        param[po + i] += -lr * (g / avg);
    }
}

/* ---- convolution data movement (the GEMMs are CLBlast's) ---- */

/* col[row][g*PQ + p*Q + q] = x[g, c, p*st - pad + r, q*st - pad + s] (0 outside), for the
 * G samples starting at x: one [CRS, G*PQ] matrix, so one GEMM covers the group. One item per
 * output row (row, g, p), n = CRS*G*P of them: the index arithmetic once per Q elements, and
 * the in-bounds span of q copied without a test per element. */
KERNEL void pt_im2col(GLOBAL const float *x, pt_i64 xo, GLOBAL float *col, pt_i64 co, int n, int G,
                      int C, int H, int W, int R, int S, int P, int Q, int st, int pad)
{
    long idx = GID(0);
    if (idx >= n) return;
    const long gp = (long)G * P;
    const int row = (int)(idx / gp);
    const int rest = (int)(idx - row * gp);
    const int g = rest / P, p = rest % P;
    const int c = row / (R * S), r = (row / S) % R, s = row % S;
    const int h = p * st - pad + r;
    GLOBAL float *out = col + co + idx * Q;
    if (h < 0 || h >= H) {
        for (int q = 0; q < Q; q++) out[q] = 0.0f;
        return;
    }
    /* q with 0 <= q*st - pad + s < W */
    int qlo = pad - s > 0 ? (pad - s + st - 1) / st : 0;
    int qhi = W - 1 + pad - s >= 0 ? (W - 1 + pad - s) / st : -1;
    if (qhi > Q - 1) qhi = Q - 1;
    if (qlo > Q) qlo = Q;
    GLOBAL const float *xr = x + xo + (((long)g * C + c) * H + h) * W - pad + s;
    for (int q = 0; q < qlo; q++) out[q] = 0.0f;
    for (int q = qlo; q <= qhi; q++) out[q] = xr[q * st];
    for (int q = qhi + 1 > qlo ? qhi + 1 : qlo; q < Q; q++) out[q] = 0.0f;
}

/* dx[g, c, h, w] = (acc ? dx : 0) + the col entries im2col took from it, in (r, s) order
 * (the cpu backend's col2im order): a gather, so no atomics. */
KERNEL void pt_col2im(GLOBAL const float *col, pt_i64 co, GLOBAL float *dx, pt_i64 dxo, int n, int G,
                      int C, int H, int W, int R, int S, int P, int Q, int st, int pad, int acc)
{
    long idx = GID(0);
    if (idx >= n) return;
    const int hw = H * W, pq = P * Q;
    const long ld = (long)G * pq;
    int plane = (int)(idx / hw);
    int cell = (int)(idx - (long)plane * hw);
    int g = plane / C, c = plane % C;
    int h = cell / W, w = cell % W;
    float sum = acc ? dx[dxo + idx] : 0.0f;
    for (int r = 0; r < R; r++) {
        int ph = h + pad - r;
        if (ph < 0 || ph % st != 0) continue;
        int p = ph / st;
        if (p >= P) continue;
        for (int s = 0; s < S; s++) {
            int qw = w + pad - s;
            if (qw < 0 || qw % st != 0) continue;
            int q = qw / st;
            if (q >= Q) continue;
            int row = (c * R + r) * S + s;
            sum += col[co + row * ld + (long)g * pq + p * Q + q];
        }
    }
    dx[dxo + idx] = sum;
}

/* tmp[k][g*PQ + j] = dy[g, k, j] */
KERNEL void pt_gather_groups(GLOBAL const float *dy, pt_i64 dyo, GLOBAL float *tmp, pt_i64 to, int n,
                             int G, int K, int pq)
{
    long idx = GID(0);
    if (idx >= n) return;
    const long ld = (long)G * pq;
    int k = (int)(idx / ld);
    int rest = (int)(idx - k * ld);
    int g = rest / pq, j = rest % pq;
    tmp[to + idx] = dy[dyo + ((long)g * K + k) * pq + j];
}

/* y[g, k, j] = (acc ? y : 0) + tmp[k][g*PQ + j] */
KERNEL void pt_scatter_groups(GLOBAL const float *tmp, pt_i64 to, GLOBAL float *y, pt_i64 yo, int n,
                              int G, int K, int pq, int acc)
{
    long idx = GID(0);
    if (idx >= n) return;
    int plane = (int)(idx / pq);
    int j = (int)(idx - (long)plane * pq);
    int g = plane / K, k = plane % K;
    float v = tmp[to + ((long)k * G + g) * pq + j];
    y[yo + idx] = acc ? y[yo + idx] + v : v;
}

/* ---- synchronised BatchNorm (PT_OP_BN_SYNC_*): partial sums about a shift, then the
 * normalisation and the backward with the global sums the core has reduced ---- */

KERNEL void pt_bn_sync_stats(GLOBAL const float *x, pt_i64 xo, GLOBAL const float *shift, pt_i64 sho,
                             GLOBAL float *stats, pt_i64 sto, int N, int C, int inner)
{
    LOCAL float buf[PT_RED_WG];
    int c = GROUP_ID(0);
    const long nstride = (long)C * inner;
    GLOBAL const float *xc = x + xo + (long)c * inner;
    float sh = shift[sho + c];
    float s1 = 0.0f, k1 = 0.0f, s2 = 0.0f, k2 = 0.0f;
    PT_CHANNEL_LOOP(n, i, N, inner)
    {
        float d = xc[n * nstride + i] - sh;
        pt_k_kahan(&s1, &k1, d);
        pt_k_kahan(&s2, &k2, d * d);
    }
    float t1 = pt_k_block_sum(buf, s1 - k1);
    float t2 = pt_k_block_sum(buf, s2 - k2);
    if (LID(0) == 0) {
        stats[sto + c] = t1;
        stats[sto + C + c] = t2;
    }
}

KERNEL void pt_bn_sync_fwd(GLOBAL const float *x, pt_i64 xo, GLOBAL const float *gamma, pt_i64 go,
                           GLOBAL const float *beta, pt_i64 bo, GLOBAL float *y, pt_i64 yo,
                           GLOBAL float *rmean, pt_i64 rmo, GLOBAL float *rvar, pt_i64 rvo,
                           GLOBAL float *stats, pt_i64 sto, int N, int C, int inner, float m, float eps,
                           float momentum)
{
    int c = GROUP_ID(0);
    const long nstride = (long)C * inner;
    GLOBAL const float *xc = x + xo + (long)c * inner;
    GLOBAL float *yc = y + yo + (long)c * inner;
    float d1 = m > 0.0f ? stats[sto + c] / m : 0.0f;
    float var = m > 0.0f ? stats[sto + C + c] / m - d1 * d1 : 0.0f;
    if (var < 0.0f) var = 0.0f;
    float shift = rmean[rmo + c];
    float mean = shift + d1;
    float invstd = 1.0f / SQRTF(var + eps);
    /* every item has read the shift and the sums before they are overwritten */
    BARRIER();
    if (LID(0) == 0) {
        float unbiased = m > 1.0f ? var * m / (m - 1.0f) : var;
        stats[sto + c] = mean;
        stats[sto + C + c] = invstd;
        rmean[rmo + c] = (1.0f - momentum) * shift + momentum * mean;
        rvar[rvo + c] = (1.0f - momentum) * rvar[rvo + c] + momentum * unbiased;
    }
    float scale = gamma[go + c] * invstd, b = beta[bo + c];
    PT_CHANNEL_LOOP(n, i, N, inner) yc[n * nstride + i] = (xc[n * nstride + i] - mean) * scale + b;
}

KERNEL void pt_bn_sync_bwd_stats(GLOBAL const float *x, pt_i64 xo, GLOBAL const float *dy, pt_i64 dyo,
                                 GLOBAL const float *stats, pt_i64 sto, GLOBAL float *bstats, pt_i64 bso,
                                 GLOBAL float *dgamma, pt_i64 dgo, GLOBAL float *dbeta, pt_i64 dbo, int N,
                                 int C, int inner)
{
    LOCAL float buf[PT_RED_WG];
    int c = GROUP_ID(0);
    const long nstride = (long)C * inner;
    GLOBAL const float *xc = x + xo + (long)c * inner;
    GLOBAL const float *dyc = dy + dyo + (long)c * inner;
    float mean = stats[sto + c];
    float s1 = 0.0f, k1 = 0.0f, s2 = 0.0f, k2 = 0.0f;
    PT_CHANNEL_LOOP(n, i, N, inner)
    {
        float g = dyc[n * nstride + i];
        pt_k_kahan(&s1, &k1, g);
        pt_k_kahan(&s2, &k2, g * (xc[n * nstride + i] - mean));
    }
    float sdy = pt_k_block_sum(buf, s1 - k1);
    float sdyx = pt_k_block_sum(buf, s2 - k2);
    if (LID(0) == 0) {
        bstats[bso + c] = sdy;
        bstats[bso + C + c] = sdyx;
        dbeta[dbo + c] = sdy;
        dgamma[dgo + c] = sdyx * stats[sto + C + c];
    }
}

KERNEL void pt_bn_sync_bwd(GLOBAL const float *x, pt_i64 xo, GLOBAL const float *dy, pt_i64 dyo,
                           GLOBAL const float *gamma, pt_i64 go, GLOBAL const float *stats, pt_i64 sto,
                           GLOBAL const float *bstats, pt_i64 bso, GLOBAL float *dx, pt_i64 dxo, int n, int C,
                           int inner, float m, int acc)
{
    long i = GID(0);
    if (i >= n) return;
    int c = (int)((i / inner) % C);
    float invstd = stats[sto + C + c], k = gamma[go + c] * invstd;
    float b = -k * bstats[bso + C + c] * invstd * invstd / m, c0 = -k * bstats[bso + c] / m;
    float v = k * dy[dyo + i] + b * (x[xo + i] - stats[sto + c]) + c0;
    dx[dxo + i] = acc ? dx[dxo + i] + v : v;
}
