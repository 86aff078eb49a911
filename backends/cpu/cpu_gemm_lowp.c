/* Reduced-precision GEMM on the cpu backend (pt_op.math): a BLIS-style bf16 GEMM for CPUs with
 * AVX512-BF16 (A and B rounded to bfloat16 while they are packed, vdpbf16ps multiplies pairs
 * exactly and sums in float32), and the emulation every other mode and CPU gets (operands
 * rounded to the format in scratch, then OpenBLAS SGEMM). The same kernel also runs on
 * operands the caller lays out itself (cpu_gemm_bf16_packed, cpu_gemm_bf16_rows and their
 * packing helpers), so that Winograd's transforms and the convolutions' im2col write bf16 in
 * the kernel's layout directly instead of float32 for the GEMM to convert. Built without
 * -march: the AVX-512 functions carry target attributes and run only where
 * cpu_has_bf16_kernel() says so. Never allocates (scratch comes from the op's workspace) and
 * never calls OpenBLAS from inside an OpenMP region. */
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "backends/cpu/cpu_internal.h"
#include "core/half.h"

#if CPU_BF16_BUILT
#include <immintrin.h>
#define BF_TARGET CPU_BF16_TARGET
#endif

/* Register tile: BF_MR rows of C by BF_NV vectors of 16 columns. 8 x 48 keeps 24 accumulators,
 * 3 B vectors and a broadcast in the 32 zmm registers; per pair of k it issues 24 vdpbf16ps
 * for 8 dword broadcasts and 3 vector loads, so the FMA pipe, not the loads, is the limit.
 * Conv GEMMs have M = output channels (multiples of 8) on the short side. */
#ifndef BF_MR
#define BF_MR 8
#endif
#ifndef BF_NV
#define BF_NV 3
#endif
#define BF_NR (BF_NV * 16)
/* Cache blocks: a KC x NR panel of packed B (KC/2 x NR dwords: 36 KiB at 384 x 48) is reused
 * by every MR row tile of an MC block of packed A (MC x KC bf16, 384 KiB at 512 x 384: in L2);
 * the KC x NC block of packed B lives in L3. KC must be even. */
#ifndef BF_KC
#define BF_KC 384
#endif
#ifndef BF_MC
#define BF_MC 512
#endif
#ifndef BF_NC
#define BF_NC 3072
#endif
/* GEMMs below this many flops run on one thread: waking the team costs more. */
#define BF_PAR_MIN_FLOPS 4e6

int cpu_has_bf16_kernel(void)
{
#if CPU_BF16_BUILT
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

/* ---- rounding to a format: the emulated path's operands ---- */

#if CPU_BF16_BUILT
/* v rounded to bf16 and back, 16 lanes, with integer ops: round to nearest even on the upper
 * 16 bits, NaN made quiet, exactly pt_round_bf16 (subnormals included, unlike vcvtneps2bf16,
 * which flushes them: the emulated path must not lose what fp32 SGEMM would multiply). */
__attribute__((target("avx512f"))) static void round_bf16_avx512(float *dst, const float *src, size_t n)
{
    const __m512i abs = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
    const __m512i hi = _mm512_set1_epi32((int)0xffff0000u), quiet = _mm512_set1_epi32(0x00400000);
    size_t i = 0;
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
        const __m512i u = _mm512_maskz_loadu_epi32(m, src + i);
        const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs), inf);
        __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(u, 16), one)));
        r = _mm512_mask_or_epi32(r, nan, u, quiet);
        _mm512_mask_storeu_epi32(dst + i, m, _mm512_and_si512(r, hi));
    }
}

/* v rounded to IEEE half and back by vcvtps2ph / vcvtph2ps (round to nearest even, subnormal
 * halves, overflow to Inf), NaNs made the canonical quiet NaN as pt_round_f16 makes them;
 * 8x faster than the scalar pt_round_f16 loop, which has a branch per value. */
__attribute__((target("avx512f"))) static void round_f16_avx512(float *dst, const float *src, size_t n)
{
    const __m512i abs = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u), qnan = _mm512_set1_epi32(0x7fc00000);
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
        const __m512i u = _mm512_maskz_loadu_epi32(m, src + i);
        const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs), inf);
        const __m256i h = _mm512_cvtps_ph(_mm512_castsi512_ps(u), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m512i r = _mm512_castps_si512(_mm512_cvtph_ps(h));
        r = _mm512_mask_or_epi32(r, nan, _mm512_and_si512(u, sign), qnan);
        _mm512_mask_storeu_epi32(dst + i, m, r);
    }
}
#endif

void cpu_round_to(pt_precision p, float *dst, const float *src, size_t n, int threads)
{
    if (p == PT_PREC_FP32) {
        if (dst != src && n) memmove(dst, src, n * sizeof(float));
        return;
    }
    /* 64 Ki floats per chunk: big enough that a thread's share is worth waking it for */
    const size_t chunk = 65536, chunks = (n + chunk - 1) / chunk;
#if CPU_BF16_BUILT
    __builtin_cpu_init();
    const int vec = (p == PT_PREC_BF16 || p == PT_PREC_FP16) && __builtin_cpu_supports("avx512f");
#endif
    if (omp_in_parallel()) threads = 1;
#pragma omp parallel for num_threads(threads) if (threads > 1 && chunks > 1) schedule(static)
    for (size_t c = 0; c < chunks; c++) {
        const size_t lo = c * chunk, len = n - lo < chunk ? n - lo : chunk;
        float *o = dst + lo;
        const float *in = src + lo;
#if CPU_BF16_BUILT
        if (vec) {
            if (p == PT_PREC_BF16) round_bf16_avx512(o, in, len);
            else round_f16_avx512(o, in, len);
            continue;
        }
#endif
        switch (p) {
        case PT_PREC_BF16:
            for (size_t i = 0; i < len; i++) o[i] = pt_round_bf16(in[i]);
            break;
        case PT_PREC_FP16:
            for (size_t i = 0; i < len; i++) o[i] = pt_round_f16(in[i]);
            break;
        case PT_PREC_TF32:
            for (size_t i = 0; i < len; i++) o[i] = pt_round_tf32(in[i]);
            break;
        default:
            if (o != in) memmove(o, in, len * sizeof(float));
            break;
        }
    }
}

/* ---- the bf16 GEMM ----
 * Packed operands are arrays of dwords, each a pair of bf16 (even k in the low half, odd k in
 * the high half): what vdpbf16ps multiplies and adds in one lane. An A micro-panel holds, for
 * each pair of k, MR dwords (one per row); a B micro-panel NR dwords (one per column). Rows,
 * columns and the odd k past the edges are packed as zeros, so the kernel always runs whole
 * tiles, and 0 * 0 adds nothing (no padded zero ever meets an operand's Inf). */

static int round_up(int v, int to) { return (v + to - 1) / to * to; }

/* How the product is split: each thread takes a contiguous range of N (or of M when M is the
 * longer side) in whole tiles and runs the blocked algorithm on its part alone, so every
 * element of C is summed in the same order whatever the thread count. */
typedef struct bf_plan {
    int threads;
    int split_n;
    size_t slot_bytes; /* per thread: packed A block + packed B block */
} bf_plan;

static bf_plan bf_plan_of(int m, int n, int k, int threads)
{
    bf_plan pl;
    const double flops = 2.0 * (double)m * (double)n * (double)k;
    pl.split_n = n >= m;
    const int tiles = pl.split_n ? (n + BF_NR - 1) / BF_NR : (m + BF_MR - 1) / BF_MR;
    pl.threads = threads < 1 || flops < BF_PAR_MIN_FLOPS ? 1 : threads;
    if (pl.threads > tiles) pl.threads = tiles > 0 ? tiles : 1;
    /* the whole m and n bound every thread's part, whatever the split */
    const int kc2 = ((k < BF_KC ? k : BF_KC) + 1) / 2;
    const int mc = round_up(m < BF_MC ? m : BF_MC, BF_MR), nc = round_up(n < BF_NC ? n : BF_NC, BF_NR);
    pl.slot_bytes = ((size_t)(mc + nc) * (size_t)kc2 * sizeof(uint32_t) + 63) / 64 * 64;
    return pl;
}

size_t cpu_gemm_bf16_scratch(int m, int n, int k, int threads)
{
    if (m <= 0 || n <= 0 || k <= 0) return 0;
    bf_plan pl = bf_plan_of(m, n, k, threads);
    return pl.slot_bytes * (size_t)pl.threads + 64; /* + 64: the base is aligned up */
}

#if CPU_BF16_BUILT

static inline __mmask16 lanes(int count)
{
    return count >= 16 ? (__mmask16)0xffff : count > 0 ? (__mmask16)((1u << count) - 1u) : 0;
}

/* words 2j, 2j+1 of the result = words j, 16 + j of the input: turns vcvtne2ps2bf16's
 * [row0 x16 | row1 x16] into 16 (row0, row1) pairs */
BF_TARGET static inline __m512i interleave_index(void)
{
    return _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7,
                            22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
}

/* 16 x 16 dword transpose in registers: r[i] word j becomes r[j] word i. */
BF_TARGET static inline void transpose16(__m512i r[16])
{
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* u[4b + c] holds columns c, c+4, c+8, c+12 (one per 128-bit lane) of rows 4b..4b+3 */
    for (int h = 0; h < 16; h += 8)
        for (int c = 0; c < 4; c++) {
            t[h + 2 * c] = _mm512_shuffle_i32x4(u[h + c], u[h + 4 + c], 0x88);
            t[h + 2 * c + 1] = _mm512_shuffle_i32x4(u[h + c], u[h + 4 + c], 0xdd);
        }
    /* t[2c] (and t[8 + 2c]): column c then c+8, rows 0..7 (8..15); t[2c+1]: c+4, c+12 */
    for (int c = 0; c < 4; c++) {
        r[c] = _mm512_shuffle_i32x4(t[2 * c], t[8 + 2 * c], 0x88);
        r[c + 8] = _mm512_shuffle_i32x4(t[2 * c], t[8 + 2 * c], 0xdd);
        r[c + 4] = _mm512_shuffle_i32x4(t[2 * c + 1], t[8 + 2 * c + 1], 0x88);
        r[c + 12] = _mm512_shuffle_i32x4(t[2 * c + 1], t[8 + 2 * c + 1], 0xdd);
    }
}

/* 32 consecutive k of one row (kn of them valid) as 16 bf16 pairs. */
BF_TARGET static inline __m512i pairs_along_row(const float *p, int kn)
{
    const __m512 lo = _mm512_maskz_loadu_ps(lanes(kn), p);
    const __m512 hi = _mm512_maskz_loadu_ps(lanes(kn - 16), p + 16);
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

/* Pairs (row0[j], row1[j]) of two rows, the first `cols` of 16 columns (row1 NULL: zeros). */
BF_TARGET static inline __m512i pairs_across_rows(const float *row0, const float *row1, int cols,
                                                  __m512i il)
{
    const __mmask16 m = lanes(cols);
    const __m512 x0 = _mm512_maskz_loadu_ps(m, row0);
    const __m512 x1 = row1 ? _mm512_maskz_loadu_ps(m, row1) : _mm512_setzero_ps();
    return _mm512_permutexvar_epi16(il, (__m512i)_mm512_cvtne2ps_pbh(x1, x0));
}

/* Packs `rows` (<= 16) rows of which k runs along memory (element (r, kk) at p[r*ld + kk]),
 * kk in [0, kc), into dst[kp * stride + r] for the first `width` r: the layout of an A
 * micro-panel (ta = 0) and of a B micro-panel's 16 columns (tb = 1); `avail` >= rows rows
 * exist from p on. Each row's kc values are
 * converted in one sequential run into a staging block first, then transposed 16 pairs at a
 * time: reading the 16 rows side by side instead (ld often a multiple of 4 KiB: conv columns)
 * put them all in one cache set, and packing took a third of the GEMM's time. */
#define BF_STAGE (((BF_KC / 2) + 15) / 16 * 16) /* dwords per staged row */
BF_TARGET static void pack_k_contiguous(const float *p, int ld, int rows, int avail, int kc,
                                        uint32_t *dst, int stride, int width)
{
    const int kc2 = (kc + 1) / 2;
    const __mmask16 wm = lanes(width);
    _Alignas(64) uint32_t stage[16 * BF_STAGE];
    for (int i = 0; i < rows; i++) {
        const float *row = p + (size_t)i * ld;
        /* rows are short runs (kc floats) far apart: the prefetcher barely starts on one
         * before it ends, so fetch 8 rows ahead by hand, into the next call's rows (avail:
         * the rows that exist from p on); measured 28% -> 19% of a B^T GEMM's time */
        const float *ahead = i + 8 < avail ? row + 8 * (size_t)ld : NULL;
        for (int kp0 = 0; kp0 < kc2; kp0 += 16) {
            if (ahead) {
                _mm_prefetch((const char *)(ahead + 2 * kp0), _MM_HINT_T0);
                _mm_prefetch((const char *)(ahead + 2 * kp0 + 16), _MM_HINT_T0);
            }
            _mm512_store_si512(stage + i * BF_STAGE + kp0, pairs_along_row(row + 2 * kp0, kc - 2 * kp0));
        }
    }
    __m512i r[16];
    for (int kp0 = 0; kp0 < kc2; kp0 += 16) {
        for (int i = 0; i < 16; i++)
            r[i] = i < rows ? _mm512_load_si512(stage + i * BF_STAGE + kp0) : _mm512_setzero_si512();
        transpose16(r);
        const int np = kc2 - kp0 < 16 ? kc2 - kp0 : 16;
        for (int q = 0; q < np; q++) _mm512_mask_storeu_epi32(dst + (size_t)(kp0 + q) * stride, wm, r[q]);
    }
}

/* Packs a block whose k runs across rows (element (kk, c) at p[kk*ld + c]), `cols` (<= 16)
 * valid columns, into dst[kp * stride + c] for the first `width` c. */
BF_TARGET static void pack_k_strided(const float *p, int ld, int cols, int kc, uint32_t *dst, int stride,
                                     int width)
{
    const __m512i il = interleave_index();
    const __mmask16 wm = lanes(width);
    const int kc2 = (kc + 1) / 2;
    for (int kp = 0; kp < kc2; kp++) {
        const float *r0 = p + (size_t)(2 * kp) * ld;
        const float *r1 = 2 * kp + 1 < kc ? r0 + ld : NULL;
        __m512i v = cols > 0 ? pairs_across_rows(r0, r1, cols, il) : _mm512_setzero_si512();
        _mm512_mask_storeu_epi32(dst + (size_t)kp * stride, wm, v);
    }
}

/* op(B)[pc.., jc..] (kc x nc) into NR-wide micro-panels of kc2 x NR dwords each. Untransposed B
 * is read two whole rows at a time, across every panel: walking down one panel's rows instead
 * touches kc pages at once, and on a B larger than L3 ran at half the speed. */
BF_TARGET static void pack_b(int tb, const float *b, int ldb, int pc, int jc, int kc, int nc,
                             uint32_t *dst)
{
    const int kc2 = (kc + 1) / 2, ncr = round_up(nc, BF_NR);
    if (tb) {
        for (int jr = 0; jr < nc; jr += BF_NR) {
            uint32_t *panel = dst + (size_t)jr * kc2;
            for (int v = 0; v < BF_NV; v++) {
                const int j0 = jr + 16 * v, cols = nc - j0 < 16 ? nc - j0 : 16;
                if (cols > 0)
                    pack_k_contiguous(b + (size_t)(jc + j0) * ldb + pc, ldb, cols, nc - j0, kc, panel + 16 * v, BF_NR,
                                      16);
                else
                    for (int kp = 0; kp < kc2; kp++) memset(panel + (size_t)kp * BF_NR + 16 * v, 0, 64);
            }
        }
        return;
    }
    const __m512i il = interleave_index();
    for (int kp = 0; kp < kc2; kp++) {
        const float *r0 = b + (size_t)(pc + 2 * kp) * ldb + jc;
        const float *r1 = 2 * kp + 1 < kc ? r0 + ldb : NULL;
        for (int j0 = 0; j0 < ncr; j0 += 16) {
            const int cols = nc - j0;
            uint32_t *o = dst + (size_t)(j0 / BF_NR) * BF_NR * kc2 + (size_t)kp * BF_NR + j0 % BF_NR;
            const __m512i v = cols > 0 ? pairs_across_rows(r0 + j0, r1 ? r1 + j0 : NULL, cols, il)
                                       : _mm512_setzero_si512();
            _mm512_storeu_si512(o, v);
        }
    }
}

/* op(A)[ic.., pc..] (mc x kc) into MR-tall micro-panels of kc2 x MR dwords each. */
BF_TARGET static void pack_a(int ta, const float *a, int lda, int ic, int pc, int mc, int kc,
                             uint32_t *dst)
{
    const int kc2 = (kc + 1) / 2;
    for (int ir = 0; ir < mc; ir += BF_MR) {
        const int rows = mc - ir < BF_MR ? mc - ir : BF_MR;
        uint32_t *panel = dst + (size_t)ir * kc2;
        if (ta) pack_k_strided(a + (size_t)pc * lda + ic + ir, lda, rows, kc, panel, BF_MR, BF_MR);
        else pack_k_contiguous(a + (size_t)(ic + ir) * lda + pc, lda, rows, mc - ir, kc, panel, BF_MR, BF_MR);
    }
}

/* C[0..mr, 0..nr] = alpha * A_panel * B_panel + beta * C (beta 0: C is not read), on the first
 * nv vectors of the B panel: a panel's last 16 or 32 columns (a 64-tile Winograd chunk is
 * 48 + 16) take one or two thirds of the work of a whole panel instead of all of it. Each
 * lane sums its k in the same order whatever nv, so the width changes no bit. */
/* C[0..mr, 0..nr] = alpha * acc + beta * C (beta 0: C is not read). */
BF_TARGET static inline __attribute__((always_inline)) void store_tile(const int nv, __m512 acc[BF_MR][BF_NV], float *c,
                                                                    int ldc, int mr, int nr, float alpha, float beta)
{
    __mmask16 m[BF_NV];
    for (int v = 0; v < nv; v++) m[v] = lanes(nr - 16 * v);
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
    for (int i = 0; i < BF_MR; i++) {
        if (i >= mr) break;
        float *ci = c + (size_t)i * ldc;
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            __m512 r;
            if (beta == 0.0f) r = _mm512_mul_ps(acc[i][v], va);
            else r = _mm512_fmadd_ps(acc[i][v], va, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m[v], ci + 16 * v)));
            _mm512_mask_storeu_ps(ci + 16 * v, m[v], r);
        }
    }
}

BF_TARGET static inline __attribute__((always_inline)) void kernel_nv(const int nv, int kc2, const uint32_t *restrict a,
                                                                   const uint32_t *restrict b, float *c, int ldc,
                                                                   int mr, int nr, float alpha, float beta)
{
    __m512 acc[BF_MR][BF_NV];
#pragma GCC unroll 16
    for (int i = 0; i < BF_MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) acc[i][v] = _mm512_setzero_ps();
    for (int kp = 0; kp < kc2; kp++) {
        __m512bh bv[BF_NV];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) bv[v] = (__m512bh)_mm512_loadu_si512(b + 16 * v);
#pragma GCC unroll 16
        for (int i = 0; i < BF_MR; i++) {
            const __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[i]);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], av, bv[v]);
        }
        a += BF_MR;
        b += BF_NR;
    }
    store_tile(nv, acc, c, ldc, mr, nr, alpha, beta);
}

#if BF_NV != 3
#error "kernel() below dispatches on 1, 2 or 3 vectors"
#endif
BF_TARGET static void kernel_1(int kc2, const uint32_t *a, const uint32_t *b, float *c, int ldc, int mr, int nr,
                               float alpha, float beta)
{
    kernel_nv(1, kc2, a, b, c, ldc, mr, nr, alpha, beta);
}
BF_TARGET static void kernel_2(int kc2, const uint32_t *a, const uint32_t *b, float *c, int ldc, int mr, int nr,
                               float alpha, float beta)
{
    kernel_nv(2, kc2, a, b, c, ldc, mr, nr, alpha, beta);
}
BF_TARGET static void kernel_3(int kc2, const uint32_t *a, const uint32_t *b, float *c, int ldc, int mr, int nr,
                               float alpha, float beta)
{
    kernel_nv(3, kc2, a, b, c, ldc, mr, nr, alpha, beta);
}

BF_TARGET static inline void kernel(int kc2, const uint32_t *a, const uint32_t *b, float *c, int ldc, int mr, int nr,
                                    float alpha, float beta)
{
    if (nr > 32) kernel_3(kc2, a, b, c, ldc, mr, nr, alpha, beta);
    else if (nr > 16) kernel_2(kc2, a, b, c, ldc, mr, nr, alpha, beta);
    else kernel_1(kc2, a, b, c, ldc, mr, nr, alpha, beta);
}

/* The same with A row-major in pairs (row i's pair kp at a[i*lda + kp]): the layout a
 * transform writes when its rows run along k (Winograd's filter gradient, k = tiles), read
 * in place instead of packed. Rows past mr read row 0 (their results are not stored). */
BF_TARGET static inline __attribute__((always_inline)) void kernel_rows_nv(const int nv, int kc2, const uint32_t *a,
                                                                        size_t lda, const uint32_t *restrict b,
                                                                        float *c, int ldc, int mr, int nr, float beta)
{
    const uint32_t *ap[BF_MR];
    for (int i = 0; i < BF_MR; i++) ap[i] = a + (i < mr ? (size_t)i * lda : 0);
    __m512 acc[BF_MR][BF_NV];
#pragma GCC unroll 16
    for (int i = 0; i < BF_MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) acc[i][v] = _mm512_setzero_ps();
    for (int kp = 0; kp < kc2; kp++) {
        __m512bh bv[BF_NV];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) bv[v] = (__m512bh)_mm512_loadu_si512(b + 16 * v);
#pragma GCC unroll 16
        for (int i = 0; i < BF_MR; i++) {
            const __m512bh av = (__m512bh)_mm512_set1_epi32((int)ap[i][kp]);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], av, bv[v]);
        }
        b += BF_NR;
    }
    store_tile(nv, acc, c, ldc, mr, nr, 1.0f, beta);
}

BF_TARGET static void kernel_rows_1(int kc2, const uint32_t *a, size_t lda, const uint32_t *b, float *c, int ldc,
                                    int mr, int nr, float beta)
{
    kernel_rows_nv(1, kc2, a, lda, b, c, ldc, mr, nr, beta);
}
BF_TARGET static void kernel_rows_2(int kc2, const uint32_t *a, size_t lda, const uint32_t *b, float *c, int ldc,
                                    int mr, int nr, float beta)
{
    kernel_rows_nv(2, kc2, a, lda, b, c, ldc, mr, nr, beta);
}
BF_TARGET static void kernel_rows_3(int kc2, const uint32_t *a, size_t lda, const uint32_t *b, float *c, int ldc,
                                    int mr, int nr, float beta)
{
    kernel_rows_nv(3, kc2, a, lda, b, c, ldc, mr, nr, beta);
}

/* One thread's part: the blocked loops (BLIS order jc, pc, ic, jr, ir). */
BF_TARGET static void gemm_part(int ta, int tb, int m, int n, int k, float alpha, const float *a,
                                int lda, const float *b, int ldb, float beta, float *c, int ldc,
                                uint32_t *apack, uint32_t *bpack)
{
    for (int jc = 0; jc < n; jc += BF_NC) {
        const int nc = n - jc < BF_NC ? n - jc : BF_NC;
        for (int pc = 0; pc < k; pc += BF_KC) {
            const int kc = k - pc < BF_KC ? k - pc : BF_KC, kc2 = (kc + 1) / 2;
            /* later k blocks add to what the first wrote */
            const float beta_k = pc == 0 ? beta : 1.0f;
            pack_b(tb, b, ldb, pc, jc, kc, nc, bpack);
            for (int ic = 0; ic < m; ic += BF_MC) {
                const int mc = m - ic < BF_MC ? m - ic : BF_MC;
                pack_a(ta, a, lda, ic, pc, mc, kc, apack);
                for (int jr = 0; jr < nc; jr += BF_NR) {
                    const int nr = nc - jr < BF_NR ? nc - jr : BF_NR;
                    for (int ir = 0; ir < mc; ir += BF_MR) {
                        const int mr = mc - ir < BF_MR ? mc - ir : BF_MR;
                        kernel(kc2, apack + (size_t)ir * kc2, bpack + (size_t)jr * kc2,
                               c + (size_t)(ic + ir) * ldc + jc + jr, ldc, mr, nr, alpha, beta_k);
                    }
                }
            }
        }
    }
}

#endif /* CPU_BF16_BUILT */

/* C = beta * C, and exactly 0 where beta is 0 (C not read): what a product with nothing to
 * sum (k = 0) or alpha = 0 leaves, as cpu_sgemm does. */
static void scale_c(int m, int n, float beta, float *c, int ldc)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[(size_t)i * ldc + j];
}

void cpu_gemm_bf16(int threads, int trans_a, int trans_b, int m, int n, int k, float alpha,
                   const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc,
                   void *scratch)
{
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0.0f) {
        scale_c(m, n, beta, c, ldc);
        return;
    }
#if CPU_BF16_BUILT
    if (omp_in_parallel()) threads = 1;
    const bf_plan pl = bf_plan_of(m, n, k, threads);
    char *base = (char *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    const int kc2 = ((k < BF_KC ? k : BF_KC) + 1) / 2;
    const int mc = round_up(m < BF_MC ? m : BF_MC, BF_MR);
    const int tiles = pl.split_n ? (n + BF_NR - 1) / BF_NR : (m + BF_MR - 1) / BF_MR;
#pragma omp parallel num_threads(pl.threads) if (pl.threads > 1)
    {
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        const int t0 = (int)((int64_t)tiles * tid / nth), t1 = (int)((int64_t)tiles * (tid + 1) / nth);
        uint32_t *apack = (uint32_t *)(base + (size_t)tid * pl.slot_bytes);
        uint32_t *bpack = apack + (size_t)mc * kc2;
        if (pl.split_n) {
            const int j0 = t0 * BF_NR, j1 = t1 * BF_NR < n ? t1 * BF_NR : n;
            if (j1 > j0)
                gemm_part(trans_a, trans_b, m, j1 - j0, k, alpha, a, lda,
                          trans_b ? b + (size_t)j0 * ldb : b + j0, ldb, beta, c + j0, ldc, apack, bpack);
        } else {
            const int i0 = t0 * BF_MR, i1 = t1 * BF_MR < m ? t1 * BF_MR : m;
            if (i1 > i0)
                gemm_part(trans_a, trans_b, i1 - i0, n, k, alpha, trans_a ? a + i0 : a + (size_t)i0 * lda,
                          lda, b, ldb, beta, c + (size_t)i0 * ldc, ldc, apack, bpack);
        }
    }
#else
    (void)threads, (void)trans_a, (void)trans_b, (void)a, (void)lda, (void)b, (void)ldb, (void)scratch;
#endif
}

/* ---- operands the caller packs (Winograd) ----
 * The layouts of cpu_internal.h: an m x k A as MR-row panels of (k+1)/2 pairs each, a k x n B
 * as NR-column panels of (k+1)/2 pairs each, every panel whole (zero rows, columns and odd k
 * past the edges). Winograd packs its transformed filters once per op this way and each
 * chunk's transformed tiles once, then runs only the kernel on them. */

#if BF_MR != CPU_BF16_MR || BF_NR != CPU_BF16_NR
#error "cpu_internal.h's packed layout must be the kernel's"
#endif
/* Pairs of k per block of the caller-packed GEMMs: 256 (512 k: Winograd's widest channel
 * counts in one block, no second pass over C). The kernel streams its 48 KiB of B from L2 as
 * fast as from L1: 128 pairs measured 1-2% slower on 256- and 512-channel shapes. */
#define BF_PACKED_KC2 256

size_t cpu_bf16_packed_a_dwords(int m, int k)
{
    return m > 0 && k > 0 ? (size_t)round_up(m, BF_MR) * (size_t)((k + 1) / 2) : 0;
}

size_t cpu_bf16_packed_b_dwords(int k, int n)
{
    return n > 0 && k > 0 ? (size_t)round_up(n, BF_NR) * (size_t)((k + 1) / 2) : 0;
}

#if CPU_BF16_BUILT
/* Row panels lo .. hi of op(A) (m x k) packed whole in k; k along memory is staged BF_KC at a
 * time (pack_k_contiguous's limit), which splits no pair since BF_KC is even. */
BF_TARGET static void pack_a_full(int ta, const float *a, int lda, int m, int k, uint32_t *dst, int lo, int hi)
{
    const int kc2 = (k + 1) / 2;
    for (int p = lo; p < hi; p++) {
        const int ir = p * BF_MR, rows = m - ir < BF_MR ? m - ir : BF_MR;
        uint32_t *panel = dst + (size_t)ir * kc2;
        if (ta) {
            pack_k_strided(a + ir, lda, rows, k, panel, BF_MR, BF_MR);
            continue;
        }
        for (int k0 = 0; k0 < k; k0 += BF_KC) {
            const int kc = k - k0 < BF_KC ? k - k0 : BF_KC;
            pack_k_contiguous(a + (size_t)ir * lda + k0, lda, rows, m - ir, kc, panel + (size_t)(k0 / 2) * BF_MR,
                              BF_MR, BF_MR);
        }
    }
}

/* Row kp of packed B, columns col0 .. col0+n-1: pairs (lo[j], hi[j]) (hi NULL: zeros). */
BF_TARGET static void pack_b_pair(const float *lo, const float *hi, int n, int col0, int kc2, uint32_t *row)
{
    const __m512i il = interleave_index();
    const size_t panel = (size_t)kc2 * BF_NR;
    for (int j = 0; j < n; j += 16) {
        const int cnt = n - j < 16 ? n - j : 16, col = col0 + j;
        const __m512i p = pairs_across_rows(lo + j, hi ? hi + j : NULL, cnt, il);
        /* split where a panel ends: lane l >= first goes to column l - first of the next */
        const int jp = col % BF_NR, first = BF_NR - jp;
        uint32_t *at = row + (size_t)(col / BF_NR) * panel + jp;
        _mm512_mask_storeu_epi32(at, lanes(first < cnt ? first : cnt), p);
        if (first < cnt) _mm512_mask_storeu_epi32(at + panel - BF_NR, (__mmask16)(lanes(cnt) & ~lanes(first)), p);
    }
}

/* dst[j] = src[j] in bf16 for n values. */
BF_TARGET static void round_row_bf16(const float *src, int n, uint16_t *dst)
{
    for (int j = 0; j < n; j += 16) {
        const __mmask16 m = lanes(n - j);
        _mm256_mask_storeu_epi16(dst + j, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + j)));
    }
}
#endif

void cpu_bf16_pack_a(int ta, const float *a, int lda, int m, int k, uint32_t *dst, int threads)
{
    if (m <= 0 || k <= 0) return;
#if CPU_BF16_BUILT
    const int panels = (m + BF_MR - 1) / BF_MR;
    if (omp_in_parallel() || (double)m * k < 65536) threads = 1;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        pack_a_full(ta, a, lda, m, k, dst, panels * tid / nth, panels * (tid + 1) / nth);
    }
#else
    (void)ta, (void)a, (void)lda, (void)dst, (void)threads;
#endif
}

void cpu_bf16_pack_b_pair(const float *lo, const float *hi, int n, int col0, int k, int kk, uint32_t *dst)
{
#if CPU_BF16_BUILT
    const int kc2 = (k + 1) / 2;
    if (n > 0) pack_b_pair(lo, hi, n, col0, kc2, dst + (size_t)(kk / 2) * BF_NR);
#else
    (void)lo, (void)hi, (void)n, (void)col0, (void)k, (void)kk, (void)dst;
#endif
}

void cpu_bf16_round_row(const float *src, int n, uint16_t *dst)
{
#if CPU_BF16_BUILT
    if (n > 0) round_row_bf16(src, n, dst);
#else
    (void)src, (void)n, (void)dst;
#endif
}

#if CPU_BF16_BUILT
BF_TARGET static void gemm_packed(int m, int n, int k, const uint32_t *a, const uint32_t *b, float beta, float *c,
                                  int ldc)
{
    const int kc2 = (k + 1) / 2;
    for (int jr = 0; jr < n; jr += BF_NR) {
        const int nr = n - jr < BF_NR ? n - jr : BF_NR;
        for (int p0 = 0; p0 < kc2; p0 += BF_PACKED_KC2) {
            const int kb = kc2 - p0 < BF_PACKED_KC2 ? kc2 - p0 : BF_PACKED_KC2;
            const float beta_k = p0 == 0 ? beta : 1.0f;
            for (int ir = 0; ir < m; ir += BF_MR) {
                const int mr = m - ir < BF_MR ? m - ir : BF_MR;
                kernel(kb, a + (size_t)ir * kc2 + (size_t)p0 * BF_MR, b + (size_t)jr * kc2 + (size_t)p0 * BF_NR,
                       c + (size_t)ir * ldc + jr, ldc, mr, nr, 1.0f, beta_k);
            }
        }
    }
}
#endif

void cpu_gemm_bf16_packed(int m, int n, int k, const uint32_t *a, const uint32_t *b, float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        scale_c(m, n, beta, c, ldc);
        return;
    }
#if CPU_BF16_BUILT
    gemm_packed(m, n, k, a, b, beta, c, ldc);
#else
    (void)a, (void)b;
#endif
}

#if CPU_BF16_BUILT
/* Packed B from n rows of kc2 pairs (row j's pair kp at v[j*ldv + kp]): a transpose of
 * dwords, 16 x 16 at a time, nothing converted. */
BF_TARGET static void pack_b_pairs(const uint32_t *v, size_t ldv, int kc2, int n, uint32_t *dst)
{
    for (int jr = 0; jr < n; jr += BF_NR) {
        uint32_t *panel = dst + (size_t)jr * kc2;
        for (int q = 0; q < BF_NV; q++) {
            const int j0 = jr + 16 * q, rows = n - j0 < 16 ? n - j0 : 16;
            for (int kp0 = 0; kp0 < kc2; kp0 += 16) {
                const int np = kc2 - kp0 < 16 ? kc2 - kp0 : 16;
                __m512i r[16];
                for (int i = 0; i < 16; i++)
                    r[i] = i < rows ? _mm512_maskz_loadu_epi32(lanes(np), v + (size_t)(j0 + i) * ldv + kp0)
                                    : _mm512_setzero_si512();
                transpose16(r);
                for (int t = 0; t < np; t++) _mm512_storeu_si512(panel + (size_t)(kp0 + t) * BF_NR + 16 * q, r[t]);
            }
        }
    }
}

BF_TARGET static void gemm_rows(int m, int n, int k, const uint32_t *a, size_t lda, const uint32_t *b, float beta,
                                float *c, int ldc)
{
    const int kc2 = (k + 1) / 2;
    for (int jr = 0; jr < n; jr += BF_NR) {
        const int nr = n - jr < BF_NR ? n - jr : BF_NR;
        for (int p0 = 0; p0 < kc2; p0 += BF_PACKED_KC2) {
            const int kb = kc2 - p0 < BF_PACKED_KC2 ? kc2 - p0 : BF_PACKED_KC2;
            const float beta_k = p0 == 0 ? beta : 1.0f;
            const uint32_t *bp = b + (size_t)jr * kc2 + (size_t)p0 * BF_NR;
            for (int ir = 0; ir < m; ir += BF_MR) {
                const int mr = m - ir < BF_MR ? m - ir : BF_MR;
                const uint32_t *ap = a + (size_t)ir * lda + p0;
                float *cp = c + (size_t)ir * ldc + jr;
                if (nr > 32) kernel_rows_3(kb, ap, lda, bp, cp, ldc, mr, nr, beta_k);
                else if (nr > 16) kernel_rows_2(kb, ap, lda, bp, cp, ldc, mr, nr, beta_k);
                else kernel_rows_1(kb, ap, lda, bp, cp, ldc, mr, nr, beta_k);
            }
        }
    }
}
#endif

void cpu_bf16_pack_b_pairs(const uint32_t *v, size_t ldv, int k, int n, uint32_t *dst)
{
#if CPU_BF16_BUILT
    if (k > 0 && n > 0) pack_b_pairs(v, ldv, (k + 1) / 2, n, dst);
#else
    (void)v, (void)ldv, (void)k, (void)n, (void)dst;
#endif
}

void cpu_gemm_bf16_rows(int m, int n, int k, const uint32_t *a, size_t lda, const uint32_t *b, float beta, float *c,
                        int ldc)
{
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        scale_c(m, n, beta, c, ldc);
        return;
    }
#if CPU_BF16_BUILT
    gemm_rows(m, n, k, a, lda, b, beta, c, ldc);
#else
    (void)a, (void)lda, (void)b;
#endif
}

/* ---- the GEMM op in a math mode ---- */

static int op_uses_bf16_kernel(const cpu_device *d, const pt_op *op)
{
    return op->math == PT_PREC_BF16 && d->bf16_kernel;
}

size_t cpu_gemm_workspace(const cpu_device *d, const pt_op *op)
{
    if (op->math == PT_PREC_FP32) return 0;
    const pt_tensor *A = &op->t[0], *B = &op->t[1], *C = &op->t[2];
    const int m = (int)C->dim[0], n = (int)C->dim[1];
    const int k = (int)(op->p.gemm.trans_a ? A->dim[0] : A->dim[1]);
    if (op_uses_bf16_kernel(d, op)) return cpu_gemm_bf16_scratch(m, n, k, d->threads);
    /* emulated: rounded copies of A and B, 64-byte aligned */
    const size_t na = (size_t)(A->dim[0] * A->dim[1]), nb = (size_t)(B->dim[0] * B->dim[1]);
    return ((na + 15) / 16 * 16 + nb) * sizeof(float) + 64;
}

pt_status cpu_op_gemm_math(const cpu_device *d, const pt_op *op, pt_error *err)
{
    const pt_tensor *A = &op->t[0], *B = &op->t[1], *C = &op->t[2];
    const int ta = op->p.gemm.trans_a, tb = op->p.gemm.trans_b;
    const int m = (int)C->dim[0], n = (int)C->dim[1];
    const int k = (int)(ta ? A->dim[0] : A->dim[1]);
    const size_t need = cpu_gemm_workspace(d, op);
    if (op->workspace_bytes < need)
        return pt_fail(err, PT_ERR_INVALID, "cpu gemm (%s math): needs a workspace of %zu bytes (ask workspace_size), got %zu",
                       pt_precision_name(op->math), need, op->workspace_bytes);
    void *ws = need ? cpu_ptr(op->workspace) : NULL;
    if (op_uses_bf16_kernel(d, op)) {
        cpu_gemm_bf16(d->threads, ta, tb, m, n, k, op->p.gemm.alpha, cpu_f32(A), (int)A->dim[1], cpu_f32(B),
                      (int)B->dim[1], op->p.gemm.beta, cpu_f32(C), (int)C->dim[1], ws);
        return PT_OK;
    }
    const size_t na = (size_t)(A->dim[0] * A->dim[1]), nb = (size_t)(B->dim[0] * B->dim[1]);
    float *ar = (float *)(((uintptr_t)ws + 63) & ~(uintptr_t)63), *br = ar + (na + 15) / 16 * 16;
    cpu_round_to(op->math, ar, cpu_f32(A), na, d->threads);
    cpu_round_to(op->math, br, cpu_f32(B), nb, d->threads);
    cpu_sgemm(d, ta, tb, m, n, k, op->p.gemm.alpha, ar, (int)A->dim[1], br, (int)B->dim[1], op->p.gemm.beta,
              cpu_f32(C), (int)C->dim[1]);
    return PT_OK;
}
