/* Philox4x32-10 and the uniform floats of core/rng.h, in the kernel dialect, so that device
 * dropout masks are bitwise the cpu backend's. Must stay the exact twin of core/rng.h:
 * tests/test_opencl_backend.c compares the masks bit for bit. */

DEVFN pt_u32 pt_k_rng_u32(pt_u64 seed, pt_u32 purpose, pt_u64 stream, pt_u64 a, pt_u32 b)
{
    pt_u64 key = seed ^ ((pt_u64)purpose * (pt_u64)0x9E3779B97F4A7C15UL);
    pt_u32 k0 = (pt_u32)key, k1 = (pt_u32)(key >> 32);
    pt_u32 c0 = b;
    pt_u32 c1 = (pt_u32)a ^ (purpose << 24);
    pt_u32 c2 = (pt_u32)(a >> 32) ^ (pt_u32)(stream << 8);
    pt_u32 c3 = (pt_u32)(stream >> 24);
    for (int r = 0; r < 10; r++) {
        pt_u32 hi0 = MUL_HI_U32(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        pt_u32 hi1 = MUL_HI_U32(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        pt_u32 n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return c0;
}

/* Uniform in [0, 1) with 24 random bits, as pt_rng_uniform. */
DEVFN float pt_k_rng_uniform(pt_u64 seed, pt_u32 purpose, pt_u64 stream, pt_u64 a, pt_u32 b)
{
    return (float)(pt_k_rng_u32(seed, purpose, stream, a, b) >> 8) * (1.0f / 16777216.0f);
}
