/* Counter-based random numbers (Philox4x32-10), header-only so that every backend's
 * kernels compute the very same streams. Randomness is a pure function of
 * (seed, purpose, stream, index...): no generator state to carry, split or save. */
#ifndef PT_RNG_H
#define PT_RNG_H

#include <stdint.h>

enum pt_rng_purpose {
    PT_RNG_INIT = 1,      /* parameter initialisation: stream = parameter index */
    PT_RNG_SHUFFLE = 2,   /* epoch permutation: stream = epoch */
    PT_RNG_AUGMENT = 3,   /* data augmentation: stream = epoch, a = sample index */
    PT_RNG_DROPOUT = 4,   /* dropout masks: stream = step*65536 + layer, a = global sample */
    PT_RNG_SPLIT = 5      /* train/val splits and subsampling */
};

static inline void pt_philox4x32(uint64_t key, const uint32_t ctr_in[4], uint32_t out[4])
{
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0;
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* 32 random bits for (seed, purpose, stream, a, b). */
static inline uint32_t pt_rng_u32(uint64_t seed, uint32_t purpose, uint64_t stream, uint64_t a,
                                  uint32_t b)
{
    uint32_t ctr[4], out[4];
    ctr[0] = b;
    ctr[1] = (uint32_t)a ^ (purpose << 24);
    ctr[2] = (uint32_t)(a >> 32) ^ (uint32_t)(stream << 8);
    ctr[3] = (uint32_t)(stream >> 24);
    pt_philox4x32(seed ^ ((uint64_t)purpose * 0x9E3779B97F4A7C15ull), ctr, out);
    return out[0];
}

/* Uniform in [0, 1) with 24 random bits. */
static inline float pt_rng_uniform(uint64_t seed, uint32_t purpose, uint64_t stream, uint64_t a,
                                   uint32_t b)
{
    return (float)(pt_rng_u32(seed, purpose, stream, a, b) >> 8) * (1.0f / 16777216.0f);
}

/* Uniform integer in [0, n) (n > 0), with negligible bias for n << 2^32. */
static inline uint32_t pt_rng_below(uint64_t seed, uint32_t purpose, uint64_t stream, uint64_t a,
                                    uint32_t b, uint32_t n)
{
    return (uint32_t)(((uint64_t)pt_rng_u32(seed, purpose, stream, a, b) * n) >> 32);
}

/* Standard normal by Box-Muller from two counters (b and b | 0x80000000). */
float pt_rng_normal(uint64_t seed, uint32_t purpose, uint64_t stream, uint64_t a, uint32_t b);

#endif
