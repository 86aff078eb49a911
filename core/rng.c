/* Out-of-line parts of the counter-based generator (core/rng.h). */
#include <math.h>

#include "core/rng.h"

float pt_rng_normal(uint64_t seed, uint32_t purpose, uint64_t stream, uint64_t a, uint32_t b)
{
    /* u1 in (0, 1] so that log() is finite. */
    float u1 = 1.0f - pt_rng_uniform(seed, purpose, stream, a, b & 0x7fffffffu);
    float u2 = pt_rng_uniform(seed, purpose, stream, a, b | 0x80000000u);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530717958647692f * u2);
}
