/* Conversions between float32 and the reduced-precision formats: bfloat16 (8 exponent bits, 8
 * significand bits), IEEE half (5 and 11, with subnormals) and TF32 (8 and 11, held in a
 * float32). All round to nearest, ties to even, as the hardware does; NaN stays NaN (quiet) and
 * overflow gives infinity. Header-only so backends, the conformance suite and tests share one
 * definition; the cpu backend's vector paths are checked against these. */
#ifndef PT_HALF_H
#define PT_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t pt_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float pt_f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t pt_bf16_from_f32(float f)
{
    uint32_t u = pt_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float pt_f32_from_bf16(uint16_t h) { return pt_f32_from_bits((uint32_t)h << 16); }

static inline uint16_t pt_f16_from_f32(float f)
{
    uint32_t u = pt_f32_bits(f);
    const uint32_t sign = (u >> 16) & 0x8000u;
    u &= 0x7fffffffu;
    if (u >= 0x47800000u) /* 65536 and up (and Inf, NaN): 65520..65535 round up below */
        return (uint16_t)(sign | (u > 0x7f800000u ? 0x7e00u : 0x7c00u));
    if (u < 0x38800000u) { /* below 2^-14: a subnormal half or zero */
        /* adding 0.5 puts the half's last subnormal bit at float's last bit, so the FPU's own
         * round-to-nearest-even rounds it */
        const float r = pt_f32_from_bits(u) + 0.5f;
        return (uint16_t)(sign | (pt_f32_bits(r) - 0x3f000000u));
    }
    u += 0xc8000fffu + ((u >> 13) & 1u); /* exponent bias 127 -> 15, and round */
    return (uint16_t)(sign | (u >> 13));
}

static inline float pt_f32_from_f16(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        const float f = (float)m * 0x1p-24f;
        return pt_f32_from_bits(pt_f32_bits(f) | sign);
    }
    if (e == 31) return pt_f32_from_bits(sign | 0x7f800000u | (m << 13));
    return pt_f32_from_bits(sign | ((e + 112u) << 23) | (m << 13));
}

/* The float32 value nearest to v that each format can hold. */
static inline float pt_round_bf16(float v) { return pt_f32_from_bf16(pt_bf16_from_f32(v)); }
static inline float pt_round_f16(float v) { return pt_f32_from_f16(pt_f16_from_f32(v)); }
static inline float pt_round_tf32(float v)
{
    uint32_t u = pt_f32_bits(v);
    if ((u & 0x7fffffffu) >= 0x7f800000u) return v;
    u += 0xfffu + ((u >> 13) & 1u);
    return pt_f32_from_bits(u & ~0x1fffu);
}

#endif
