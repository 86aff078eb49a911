/* The device kernels of the model zoo's ops (BCAST_MUL, BCAST_MUL_GRAD, SIGMOID_*, SILU_*,
 * GMP_*, CHANNEL_POOL_*), in the kernel dialect only (dialect_opencl.h / dialect_cuda.h), so
 * every device backend compiles this same file. Each kernel mirrors the cpu backend's
 * arithmetic (backends/cpu/cpu_zoo.c); every output element has one writer (no atomics), so
 * results are deterministic. Tensors arrive as (pointer, element offset). Argmax indices
 * outside their range (which the cpu backend reports as an error) contribute nothing here. */

/* Compensated summation (the cpu backend sums in double). */
DEVFN void pt_kz_kahan(float *s, float *c, float v)
{
    float y = v - *c;
    float t = *s + y;
    *c = (t - *s) - y;
    *s = t;
}

/* y = x*s (+ y), s per (n,c) plane or per (n,h,w) pixel. One item per element of y. */
KERNEL void pt_bcast_mul(GLOBAL const float *x, pt_i64 xo, GLOBAL const float *s, pt_i64 so,
                         GLOBAL float *y, pt_i64 yo, int n, int c, int hw, int per_pixel, int acc)
{
    long idx = GID(0);
    if (idx >= n) return;
    long plane = idx / hw;
    long i = idx - plane * hw;
    float f = per_pixel ? s[so + (plane / c) * hw + i] : s[so + plane];
    float v = x[xo + idx] * f;
    y[yo + idx] = acc ? y[yo + idx] + v : v;
}

/* ds[n,c] = sum over h,w of x*dy (+ ds). One item per plane. */
KERNEL void pt_bcast_mul_grad_channel(GLOBAL const float *x, pt_i64 xo, GLOBAL const float *dy, pt_i64 dyo,
                                      GLOBAL float *ds, pt_i64 dso, int planes, int hw, int acc)
{
    long pl = GID(0);
    if (pl >= planes) return;
    GLOBAL const float *xp = x + xo + pl * hw;
    GLOBAL const float *gp = dy + dyo + pl * hw;
    float s = 0.0f, k = 0.0f;
    for (int i = 0; i < hw; i++) pt_kz_kahan(&s, &k, xp[i] * gp[i]);
    float v = s - k;
    ds[dso + pl] = acc ? ds[dso + pl] + v : v;
}

/* ds[n,0,h,w] = sum over c of x*dy (+ ds). One item per pixel of a sample: neighbouring
 * items read neighbouring addresses of each channel. */
KERNEL void pt_bcast_mul_grad_pixel(GLOBAL const float *x, pt_i64 xo, GLOBAL const float *dy, pt_i64 dyo,
                                    GLOBAL float *ds, pt_i64 dso, int pixels, int c, int hw, int acc)
{
    long idx = GID(0);
    if (idx >= pixels) return;
    long b = idx / hw;
    long i = idx - b * hw;
    GLOBAL const float *xb = x + xo + b * c * hw + i;
    GLOBAL const float *gb = dy + dyo + b * c * hw + i;
    float s = 0.0f, k = 0.0f;
    for (int ch = 0; ch < c; ch++) pt_kz_kahan(&s, &k, xb[(long)ch * hw] * gb[(long)ch * hw]);
    float v = s - k;
    ds[dso + idx] = acc ? ds[dso + idx] + v : v;
}

KERNEL void pt_sigmoid_fwd(GLOBAL const float *x, pt_i64 xo, GLOBAL float *y, pt_i64 yo, int n)
{
    long i = GID(0);
    if (i >= n) return;
    y[yo + i] = 1.0f / (1.0f + EXPF(-x[xo + i]));
}

KERNEL void pt_sigmoid_bwd(GLOBAL const float *y, pt_i64 yo, GLOBAL const float *dy, pt_i64 dyo,
                           GLOBAL float *dx, pt_i64 dxo, int n, int acc)
{
    long i = GID(0);
    if (i >= n) return;
    float yv = y[yo + i];
    float g = dy[dyo + i] * (yv * (1.0f - yv));
    dx[dxo + i] = acc ? dx[dxo + i] + g : g;
}

/* y = x*s, s = 1/(1 + exp(-x)): SiLU. */
KERNEL void pt_silu_fwd(GLOBAL const float *x, pt_i64 xo, GLOBAL float *y, pt_i64 yo, int n)
{
    long i = GID(0);
    if (i >= n) return;
    float v = x[xo + i];
    y[yo + i] = v * (1.0f / (1.0f + EXPF(-v)));
}

/* dx = dy*(s*(1 + x*(1 - s))) (+ dx), from the forward's input x. */
KERNEL void pt_silu_bwd(GLOBAL const float *x, pt_i64 xo, GLOBAL const float *dy, pt_i64 dyo,
                        GLOBAL float *dx, pt_i64 dxo, int n, int acc)
{
    long i = GID(0);
    if (i >= n) return;
    float v = x[xo + i];
    float s = 1.0f / (1.0f + EXPF(-v));
    float g = dy[dyo + i] * (s * (1.0f + v * (1.0f - s)));
    dx[dxo + i] = acc ? dx[dxo + i] + g : g;
}

/* Max over a plane, first maximum (or first NaN) wins. One item per plane. */
KERNEL void pt_gmp_fwd(GLOBAL const float *x, pt_i64 xo, GLOBAL float *y, pt_i64 yo, GLOBAL int *arg,
                       pt_i64 ao, int planes, int hw)
{
    long pl = GID(0);
    if (pl >= planes) return;
    GLOBAL const float *xp = x + xo + pl * hw;
    float best = xp[0];
    int bi = 0;
    for (int i = 1; i < hw && !ISNAN(best); i++) {
        float v = xp[i];
        if (v > best || ISNAN(v)) {
            best = v;
            bi = i;
        }
    }
    y[yo + pl] = best;
    arg[ao + pl] = bi;
}

/* One item per element of dx. */
KERNEL void pt_gmp_bwd(GLOBAL const float *dy, pt_i64 dyo, GLOBAL const int *arg, pt_i64 ao,
                       GLOBAL float *dx, pt_i64 dxo, int n, int hw, int acc)
{
    long idx = GID(0);
    if (idx >= n) return;
    long pl = idx / hw;
    int i = (int)(idx - pl * hw);
    float g = arg[ao + pl] == i ? dy[dyo + pl] : 0.0f;
    dx[dxo + idx] = acc ? dx[dxo + idx] + g : g;
}

/* y[n,0] = mean over channels, y[n,1] = max over channels (first maximum or NaN wins).
 * One item per pixel of a sample. */
KERNEL void pt_channel_pool_fwd(GLOBAL const float *x, pt_i64 xo, GLOBAL float *y, pt_i64 yo,
                                GLOBAL int *arg, pt_i64 ao, int pixels, int c, int hw)
{
    long idx = GID(0);
    if (idx >= pixels) return;
    long b = idx / hw;
    long i = idx - b * hw;
    GLOBAL const float *xb = x + xo + b * c * hw + i;
    float best = xb[0], s = xb[0], k = 0.0f;
    int bi = 0;
    for (int ch = 1; ch < c; ch++) {
        float v = xb[(long)ch * hw];
        pt_kz_kahan(&s, &k, v);
        if (!ISNAN(best) && (v > best || ISNAN(v))) {
            best = v;
            bi = ch;
        }
    }
    y[yo + b * 2 * hw + i] = (s - k) / (float)c;
    y[yo + b * 2 * hw + hw + i] = best;
    arg[ao + idx] = bi;
}

/* dx = dy[n,0]*inv_c + (c == argmax ? dy[n,1] : 0) (+ dx). One item per element of dx. */
KERNEL void pt_channel_pool_bwd(GLOBAL const float *dy, pt_i64 dyo, GLOBAL const int *arg, pt_i64 ao,
                                GLOBAL float *dx, pt_i64 dxo, int n, int c, int hw, float inv_c, int acc)
{
    long idx = GID(0);
    if (idx >= n) return;
    long plane = idx / hw;
    long i = idx - plane * hw;
    long b = plane / c;
    int ch = (int)(plane - b * c);
    float g1 = dy[dyo + b * 2 * hw + hw + i];
    float g = dy[dyo + b * 2 * hw + i] * inv_c + (arg[ao + b * hw + i] == ch ? g1 : 0.0f);
    dx[dxo + idx] = acc ? dx[dxo + idx] + g : g;
}
