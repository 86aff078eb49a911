/* Reduced-precision kernels: float32 to and from bfloat16 and IEEE half (what the device backends
 * use to hand tensor cores their operands, and what mixed-precision storage is made of), and the
 * unscale-and-check of fp16 loss scaling. The conversions are bit operations, identical to
 * core/half.h (round to nearest even, NaN stays NaN, overflow gives infinity; act16.cl), so
 * every device rounds as the cpu oracle does, with or without a native half type.
 * A 16-bit tensor arrives as (pointer, offset in 32-bit words): the launch layer gives every
 * tensor's offset in 4-byte units, and 16-bit tensors start at 4-byte-aligned offsets. */

/* y (16-bit, yw words in) = x rounded; to_f16 0: bfloat16, 1: half */
KERNEL void pt_to_lowp(GLOBAL const float *x, pt_i64 xo, GLOBAL pt_u16 *y, pt_i64 yw, int n, int to_f16)
{
    long i = GID(0);
    if (i >= n) return;
    float v = x[xo + i];
    y[2 * yw + i] = (pt_u16)(to_f16 ? pt_k_f16_bits(v) : pt_k_bf16_bits(v));
}

/* y = (acc ? y : 0) + alpha * x, x 16-bit (xw words in); from_f16 0: bfloat16, 1: half */
KERNEL void pt_from_lowp(GLOBAL const pt_u16 *x, pt_i64 xw, GLOBAL float *y, pt_i64 yo, int n, int from_f16,
                         float alpha, int acc)
{
    long i = GID(0);
    if (i >= n) return;
    pt_u32 h = x[2 * xw + i];
    float v = alpha * (from_f16 ? pt_k_from_f16(h) : pt_k_from_bf16(h));
    y[yo + i] = acc ? y[yo + i] + v : v;
}

/* y = x widened exactly, x 16-bit (xw words in): the float32 copy an op reads of an activation
 * stored in 16 bits; from_f16 0: bfloat16, 1: half. Unlike from_lowp it multiplies by nothing,
 * so every bit pattern, a signalling NaN's included, comes through as core/half.h widens it. */
KERNEL void pt_widen_lowp(GLOBAL const pt_u16 *x, pt_i64 xw, GLOBAL float *y, pt_i64 yo, int n, int from_f16)
{
    long i = GID(0);
    if (i >= n) return;
    pt_u32 h = x[2 * xw + i];
    y[yo + i] = from_f16 ? pt_k_from_f16(h) : pt_k_from_bf16(h);
}

/* y = x rounded to bfloat16 (to_f16 0) or half (1), kept as float32: the operands of a device
 * that multiplies them with its float32 GEMM (every product of two 16-bit values is exact in
 * float32, so that GEMM gives the 16-bit formats' products with float32 sums). */
KERNEL void pt_round_lowp(GLOBAL const float *x, pt_i64 xo, GLOBAL float *y, pt_i64 yo, int n, int to_f16)
{
    long i = GID(0);
    if (i >= n) return;
    float v = x[xo + i];
    y[yo + i] = to_f16 ? pt_k_from_f16(pt_k_f16_bits(v)) : pt_k_from_bf16(pt_k_bf16_bits(v));
}

/* g = g*inv_scale; found[0] = 1 when an element was Inf or NaN (untouched otherwise). Items that
 * find one all store the same 1: no atomics needed, the result does not depend on order.
 * With the step record (use_ss), by mode (polytrain/op.h PT_AMP_*): 0 skipped while its skip
 * word (12) is set; 1 the factor is its inv_scale word (14); 2 clipping: inv_scale is the
 * norm bound, the factor bound / (sqrt(sumsq word 13) + 1e-6) as pt_clip_coef forms it (both
 * operations correctly rounded), applied only below 1 or NaN, skipped as mode 0. */
KERNEL void pt_amp_unscale(GLOBAL float *g, pt_i64 go, GLOBAL float *found, pt_i64 fo, int n, float inv_scale,
                           GLOBAL const pt_u32 *ss, pt_i64 sso, int use_ss, int mode)
{
    long i = GID(0);
    if (i >= n) return;
    if (use_ss) {
        if (mode != 1 && ss[sso + 12] != 0u) return;
        if (mode == 1) {
            inv_scale = F32_FROM_BITS(ss[sso + 14]);
        } else if (mode == 2) {
            const float coef = inv_scale / (SQRTF(F32_FROM_BITS(ss[sso + 13])) + 1e-6f);
            if (!(coef < 1.0f) && coef == coef) return;
            inv_scale = coef;
        }
    }
    float v = g[go + i];
    if ((F32_BITS(v) & 0x7f800000u) == 0x7f800000u) found[fo] = 1.0f;
    g[go + i] = v * inv_scale;
}
