/* 16-bit activations inside the kernels: the bit conversions between float32 and bfloat16 or
 * IEEE half (identical to core/half.h: round to nearest even, NaN stays NaN, overflow gives
 * infinity, every pattern widened exactly), and the loads and stores through which a kernel
 * body reads and writes an operand that may be stored in 16 bits. The file sorts before the
 * other kernel files, so every one of them may use it.
 *
 * An operand's storage type arrives as a code, PT_KDT_*: the float32 kernels pass the constant
 * PT_KDT_F32 to their bodies (the branches fold away, the code is the float kernel's), their
 * 16-bit twins pass the codes the host gives them (kernel_ops.c). A 16-bit tensor arrives as
 * (pointer, offset in 32-bit words), as every tensor does: it starts at a 4-byte boundary. */

#define PT_KDT_F32 0
#define PT_KDT_BF16 1
#define PT_KDT_F16 2

DEVFN pt_u32 pt_k_bf16_bits(float v)
{
    pt_u32 u = F32_BITS(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
    u += 0x7fffu + ((u >> 16) & 1u);
    return u >> 16;
}

DEVFN pt_u32 pt_k_f16_bits(float v)
{
    pt_u32 u = F32_BITS(v);
    pt_u32 sign = (u >> 16) & 0x8000u;
    u &= 0x7fffffffu;
    if (u >= 0x47800000u) return sign | (u > 0x7f800000u ? 0x7e00u : 0x7c00u);
    if (u < 0x38800000u) {
        /* adding 0.5 puts the half's last subnormal bit at float's last bit: the FPU rounds */
        float r = F32_FROM_BITS(u) + 0.5f;
        return sign | (F32_BITS(r) - 0x3f000000u);
    }
    u += 0xc8000fffu + ((u >> 13) & 1u);
    return sign | (u >> 13);
}

DEVFN float pt_k_from_bf16(pt_u32 h) { return F32_FROM_BITS(h << 16); }

DEVFN float pt_k_from_f16(pt_u32 h)
{
    pt_u32 sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) return F32_FROM_BITS(F32_BITS((float)m * 5.9604644775390625e-8f) | sign); /* m * 2^-24 */
    if (e == 31) return F32_FROM_BITS(sign | 0x7f800000u | (m << 13));
    return F32_FROM_BITS(sign | ((e + 112u) << 23) | (m << 13));
}

/* The address of element i of the tensor at (p, o) stored as dt, for pt_k_ldp / pt_k_stp, so
 * that a float32 body keeps its pointer arithmetic as written (untyped: a 16-bit element's
 * address is no float's). */
DEVFN_INLINE GLOBAL const void *pt_k_at(GLOBAL const float *p, pt_i64 o, int dt, long i)
{
    if (dt == PT_KDT_F32) return (GLOBAL const void *)(p + o + i);
    return (GLOBAL const void *)((GLOBAL const pt_u16 *)p + 2 * o + i);
}

DEVFN_INLINE GLOBAL void *pt_k_atw(GLOBAL float *p, pt_i64 o, int dt, long i)
{
    if (dt == PT_KDT_F32) return (GLOBAL void *)(p + o + i);
    return (GLOBAL void *)((GLOBAL pt_u16 *)p + 2 * o + i);
}

/* Element j of 16-bit storage h (dt PT_KDT_BF16 or PT_KDT_F16) widened, and set to v rounded. */
DEVFN_INLINE float pt_k_ld16(GLOBAL const pt_u16 *h, int dt, long j)
{
    return dt == PT_KDT_F16 ? pt_k_from_f16(h[j]) : pt_k_from_bf16(h[j]);
}

DEVFN_INLINE void pt_k_st16(GLOBAL pt_u16 *h, int dt, long j, float v)
{
    h[j] = (pt_u16)(dt == PT_KDT_F16 ? pt_k_f16_bits(v) : pt_k_bf16_bits(v));
}

/* Element j after q (from pt_k_at / pt_k_atw), stored as dt: widened to float32 (exactly), and
 * set to v (rounded once to nearest even). Macros, so that a float32 body indexes with j's own
 * type as it was written (an int index lets the compiler widen the induction variables of a
 * loop, which PoCL's vectoriser needs: 2x2 max-pool). */
#define PT_K_LDP(q, dt, j)                                                                                 \
    ((dt) == PT_KDT_F32 ? ((GLOBAL const float *)(q))[j] : pt_k_ld16((GLOBAL const pt_u16 *)(q), (dt), (j)))
#define PT_K_STP(q, dt, j, v)                                                                              \
    do {                                                                                                   \
        if ((dt) == PT_KDT_F32)                                                                            \
            ((GLOBAL float *)(q))[j] = (v);                                                                \
        else                                                                                               \
            pt_k_st16((GLOBAL pt_u16 *)(q), (dt), (j), (v));                                               \
    } while (0)

/* Element i of the tensor at (p, o), stored as dt, widened to float32 (exactly). */
DEVFN_INLINE float pt_k_ld(GLOBAL const float *p, pt_i64 o, int dt, long i)
{
    if (dt == PT_KDT_F32) return p[o + i];
    const pt_u32 h = ((GLOBAL const pt_u16 *)p)[2 * o + i];
    return dt == PT_KDT_F16 ? pt_k_from_f16(h) : pt_k_from_bf16(h);
}

/* Element i of the tensor at (p, o), stored as dt, set to v (rounded once to nearest even). */
DEVFN_INLINE void pt_k_st(GLOBAL float *p, pt_i64 o, int dt, long i, float v)
{
    if (dt == PT_KDT_F32) {
        p[o + i] = v;
        return;
    }
    ((GLOBAL pt_u16 *)p)[2 * o + i] = (pt_u16)(dt == PT_KDT_F16 ? pt_k_f16_bits(v) : pt_k_bf16_bits(v));
}
