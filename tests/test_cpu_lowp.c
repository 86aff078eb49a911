/* The cpu backend's reduced-precision math (pt_op.math): the AVX512-BF16 GEMM against a float64
 * reference on bf16-rounded operands (odd shapes, every transpose, alpha and beta, C poisoned
 * with NaN where beta is 0), its operand conversion against core/half.h, the emulated rounding,
 * and the GEMM op and the three convolutions in every math mode, each within the error bound of
 * float32 sums of exact products; in bf16 on the kernel, 3x3 stride-1 convolutions run Winograd
 * F(2x2,3x3), whose rounded operands are the transformed ones: those are checked against
 * float64 on the same rounded transforms, and against the exact convolution. `test_cpu_lowp --bench` prints the GFLOP/s of OpenBLAS SGEMM,
 * the bf16 kernel and the emulation on convolution-shaped GEMMs instead (`--bench 1`: one
 * thread). */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "backends/cpu/cpu_internal.h"
#include "polytrain/backend.h"
#include "core/half.h"
#include "pt_test.h"

static pt_device *g_dev;
static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_u64(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static double urand(void) /* [-1, 1) */
{
    return (double)(next_u64() >> 11) / 4503599627370496.0 - 1.0;
}

static float *rand_f(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = (float)urand();
    return p;
}

static cpu_device *cdev(void) { return g_dev->ctx; }

/* |got - want| within float32 summation's bound for sums whose absolute terms add up to
 * `mass` over `terms` terms (products of rounded operands are exact in float32). */
static int within_bound(float got, double want, double mass, int terms)
{
    if (isnan(want)) return isnan(got);
    const double bound = 2.0 * (terms + 4) * 0x1p-24 * mass + 1e-30;
    return fabs((double)got - want) <= bound;
}

/* ---- reference GEMM ---- */

typedef struct gemm_case {
    int ta, tb, m, n, k, lda, ldb, ldc;
    float alpha, beta;
} gemm_case;

static float elem_a(const gemm_case *g, const float *a, int i, int kk)
{
    return g->ta ? a[(size_t)kk * g->lda + i] : a[(size_t)i * g->lda + kk];
}

static float elem_b(const gemm_case *g, const float *b, int kk, int j)
{
    return g->tb ? b[(size_t)j * g->ldb + kk] : b[(size_t)kk * g->ldb + j];
}

/* Checks c against alpha * round(A) round(B) + beta * c0 in float64; returns the normalised error. */
static double check_gemm(const gemm_case *g, pt_precision p, const float *a, const float *b, const float *c0,
                         const float *c, int *bad)
{
    double num = 0, den = 0;
    *bad = 0;
    /* rounded once: op(A) as m x k, op(B) as n x k */
    double *ra = malloc((size_t)g->m * g->k * sizeof(double)), *rb = malloc((size_t)g->n * g->k * sizeof(double));
    for (int kk = 0; kk < g->k; kk++) {
        for (int i = 0; i < g->m; i++) ra[(size_t)i * g->k + kk] = pt_precision_round(p, elem_a(g, a, i, kk));
        for (int j = 0; j < g->n; j++) rb[(size_t)j * g->k + kk] = pt_precision_round(p, elem_b(g, b, kk, j));
    }
    for (int i = 0; i < g->m; i++)
        for (int j = 0; j < g->n; j++) {
            double s = 0, mass = 0;
            const double *ai = ra + (size_t)i * g->k, *bj = rb + (size_t)j * g->k;
            for (int kk = 0; kk < g->k; kk++) {
                const double x = ai[kk] * bj[kk];
                s += x;
                mass += fabs(x);
            }
            const double cz = g->beta == 0.0f ? 0.0 : (double)g->beta * c0[(size_t)i * g->ldc + j];
            const double want = g->alpha * s + cz;
            const float got = c[(size_t)i * g->ldc + j];
            if (!within_bound(got, want, fabs(g->alpha) * mass + fabs(cz), g->k)) {
                if (*bad < 3)
                    fprintf(stderr, "  (%d,%d) of %dx%dx%d ta%d tb%d: got %.9g want %.9g\n", i, j, g->m, g->n, g->k,
                            g->ta, g->tb, got, want);
                (*bad)++;
            }
            num += (got - want) * (got - want);
            den += want * want;
        }
    free(ra), free(rb);
    return sqrt(num) / (den > 1e-30 ? sqrt(den) : 1e-15);
}

/* Operands of a case with leading dimensions as given, C filled with c_fill (NaN: poisoned). */
static void make_gemm(const gemm_case *g, float **a, float **b, float **c)
{
    const int arows = g->ta ? g->k : g->m, brows = g->tb ? g->n : g->k;
    *a = rand_f((size_t)arows * g->lda);
    *b = rand_f((size_t)brows * g->ldb);
    *c = rand_f((size_t)g->m * g->ldc);
    if (g->beta == 0.0f)
        for (size_t i = 0; i < (size_t)g->m * g->ldc; i++) (*c)[i] = NAN;
}

static void run_bf16(const gemm_case *g, int threads, const float *a, const float *b, float *c)
{
    void *ws = malloc(cpu_gemm_bf16_scratch(g->m, g->n, g->k, threads) + 1);
    /* +1 and an odd start: the kernel must not depend on the scratch's alignment */
    cpu_gemm_bf16(threads, g->ta, g->tb, g->m, g->n, g->k, g->alpha, a, g->lda, b, g->ldb, g->beta, c, g->ldc,
                  (char *)ws + 1);
    free(ws);
}

static const int gemm_shapes[][3] = {
    {1, 1, 1},      {1, 1, 2},     {7, 5, 3},     {8, 48, 2},     {9, 49, 33},    {17, 100, 385},
    {130, 77, 769}, {33, 17, 1},   {3, 3100, 7},  {600, 40, 50},  {5, 300, 1},    {64, 1024, 576},
    {16, 96, 384},  {15, 95, 383}, {520, 9, 20},
};

static void bf16_gemm_matches_float64_reference_on_rounded_operands(void)
{
    if (!cpu_has_bf16_kernel()) {
        printf("  skipped: no AVX512-BF16 on this CPU\n");
        return;
    }
    const float ab[][2] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {0.5f, -0.25f}, {-2.0f, 0.0f}};
    double worst = 0;
    for (size_t si = 0; si < sizeof gemm_shapes / sizeof gemm_shapes[0]; si++) {
        const int m = gemm_shapes[si][0], n = gemm_shapes[si][1], k = gemm_shapes[si][2];
        const int big = (double)m * n * k > 2e6;
        for (int t = 0; t < 4; t++)
            for (size_t ai = 0; ai < (big ? 1u : 4u); ai++) {
                gemm_case g = {t & 1, t >> 1, m, n, k, 0, 0, 0, ab[ai][0], ab[ai][1]};
                /* leading dimensions past the used columns on the odd cases */
                const int pad = (int)(si & 1) * 3;
                g.lda = (g.ta ? m : k) + pad;
                g.ldb = (g.tb ? k : n) + pad;
                g.ldc = n + pad;
                float *a, *b, *c;
                make_gemm(&g, &a, &b, &c);
                float *c0 = malloc((size_t)m * g.ldc * sizeof(float)), *c1 = malloc((size_t)m * g.ldc * sizeof(float));
                memcpy(c0, c, (size_t)m * g.ldc * sizeof(float));
                memcpy(c1, c, (size_t)m * g.ldc * sizeof(float));
                run_bf16(&g, 2, a, b, c);
                run_bf16(&g, 1, a, b, c1);
                int bad;
                const double e = check_gemm(&g, PT_PREC_BF16, a, b, c0, c, &bad);
                if (e > worst) worst = e;
                CHECKF(bad == 0 && e < 2e-6, "%dx%dx%d ta%d tb%d alpha %g beta %g: %d elements off, error %.3g", m, n,
                       k, g.ta, g.tb, g.alpha, g.beta, bad, e);
                /* each element is summed in one order whatever the thread count */
                CHECKF(memcmp(c, c1, (size_t)m * g.ldc * sizeof(float)) == 0, "%dx%dx%d: 1 and 2 threads differ", m,
                       n, k);
                /* the padding between rows of C is left alone */
                int kept = 1;
                for (int i = 0; i < m; i++)
                    for (int j = n; j < g.ldc; j++) {
                        const size_t o = (size_t)i * g.ldc + j;
                        if (memcmp(&c[o], &c0[o], sizeof(float)) != 0) kept = 0;
                    }
                CHECKF(kept, "%dx%dx%d: C written past n", m, n, k);
                free(a), free(b), free(c), free(c0), free(c1);
            }
    }
    printf("  worst normalised error %.3g\n", worst);
}

/* Memory with no access right before and right after: `bytes` placed against the guard after
 * it (at_end) or the one before it, so that a read or write one element outside faults. */
typedef struct guarded {
    char *map;
    size_t len;
} guarded;

static void *guarded_alloc(size_t bytes, int at_end, guarded *g)
{
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), span = (bytes + page - 1) / page * page;
    g->len = span + 2 * page;
    g->map = mmap(NULL, g->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->map == MAP_FAILED) abort();
    mprotect(g->map, page, PROT_NONE);
    mprotect(g->map + page + span, page, PROT_NONE);
    return at_end ? g->map + page + span - bytes : g->map + page;
}

static void guarded_free(guarded *g) { munmap(g->map, g->len); }

/* Operands and scratch against guard pages on either side, for edge-heavy shapes: packing's
 * masked loads and the kernel's masked stores stay inside A, B, C and the scratch it asked
 * for (a stray access ends the test with SIGSEGV). */
static void bf16_gemm_stays_inside_operands_and_scratch(void)
{
    if (!cpu_has_bf16_kernel()) {
        printf("  skipped: no AVX512-BF16 on this CPU\n");
        return;
    }
    static const int shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {9, 49, 33}, {17, 33, 31}, {3, 97, 385}, {130, 15, 17}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int t = 0; t < 4; t++)
            for (int at_end = 0; at_end < 2; at_end++) {
                const int m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
                gemm_case g = {t & 1, t >> 1, m, n, k, 0, 0, n, 1.0f, 0.0f};
                g.lda = g.ta ? m : k;
                g.ldb = g.tb ? k : n;
                const size_t na = (size_t)m * k, nb = (size_t)k * n, nc = (size_t)m * n;
                const size_t ns = cpu_gemm_bf16_scratch(m, n, k, 2);
                guarded ga, gb, gc, gs;
                float *a = guarded_alloc(na * sizeof(float), at_end, &ga);
                float *b = guarded_alloc(nb * sizeof(float), at_end, &gb);
                float *c = guarded_alloc(nc * sizeof(float), at_end, &gc);
                void *scratch = guarded_alloc(ns, at_end, &gs);
                for (size_t i = 0; i < na; i++) a[i] = (float)urand();
                for (size_t i = 0; i < nb; i++) b[i] = (float)urand();
                for (size_t i = 0; i < nc; i++) c[i] = NAN;
                cpu_gemm_bf16(2, g.ta, g.tb, m, n, k, 1.0f, a, g.lda, b, g.ldb, 0.0f, c, n, scratch);
                int bad;
                check_gemm(&g, PT_PREC_BF16, a, b, c, c, &bad);
                CHECKF(bad == 0, "%dx%dx%d ta%d tb%d: %d elements off", m, n, k, g.ta, g.tb, bad);
                guarded_free(&ga), guarded_free(&gb), guarded_free(&gc), guarded_free(&gs);
            }
}

/* k = 0 and alpha = 0 read neither A nor B: C = beta*C, exactly 0 where beta is 0. */
static void bf16_gemm_without_products_only_scales_c(void)
{
    float a[4] = {NAN, NAN, NAN, NAN}, b[4] = {NAN, NAN, NAN, NAN}, c[4] = {NAN, NAN, NAN, NAN};
    char ws[256];
    cpu_gemm_bf16(2, 0, 0, 2, 2, 0, 1.0f, a, 1, b, 2, 0.0f, c, 2, ws);
    CHECK(c[0] == 0.0f && c[3] == 0.0f);
    float d[4] = {1, 2, 3, 4};
    cpu_gemm_bf16(2, 0, 0, 2, 2, 2, 0.0f, a, 2, b, 2, 0.5f, d, 2, ws);
    CHECK(d[0] == 0.5f && d[3] == 2.0f);
}

/* The entry points for operands the caller lays out (Winograd, the packed im2col path): A
 * packed whole (from A and from A stored transposed, the same bytes), B packed from pairs of
 * its rows in two column ranges (the second from an odd column, so that stores split at a
 * panel's end), the kernel on them with beta 0 (C poisoned) and 1; and A as bf16 rows read in
 * place with B packed from bf16 rows by the dword transpose. k past 256 takes several
 * blocks of k; odd k, m and n leave partial pairs, panels and columns. */
static void bf16_caller_packed_gemms_match_float64(void)
{
    if (!cpu_has_bf16_kernel()) {
        printf("  skipped: no AVX512-BF16 on this CPU\n");
        return;
    }
    static const int shapes[][3] = {{8, 48, 2}, {13, 50, 7}, {64, 96, 64}, {3, 130, 301}, {40, 17, 600}, {1, 1, 1}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int bi = 0; bi < 2; bi++) {
            const int m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
            gemm_case g = {0, 0, m, n, k, k + 3, n + 2, n + 1, 1.0f, bi ? 1.0f : 0.0f};
            float *a, *b, *c;
            make_gemm(&g, &a, &b, &c);
            float *c0 = malloc((size_t)m * g.ldc * sizeof(float)), *c1 = malloc((size_t)m * g.ldc * sizeof(float));
            memcpy(c0, c, (size_t)m * g.ldc * sizeof(float));
            memcpy(c1, c, (size_t)m * g.ldc * sizeof(float));
            /* A packed, from A and from A^T */
            const size_t na = cpu_bf16_packed_a_dwords(m, k), nb = cpu_bf16_packed_b_dwords(k, n);
            uint32_t *apk = calloc(na, 4), *apk_t = calloc(na, 4), *bpk = calloc(nb, 4);
            float *at = malloc((size_t)k * m * sizeof(float));
            for (int i = 0; i < m; i++)
                for (int kk = 0; kk < k; kk++) at[(size_t)kk * m + i] = a[(size_t)i * g.lda + kk];
            cpu_bf16_pack_a(0, a, g.lda, m, k, apk, 2);
            cpu_bf16_pack_a(1, at, m, m, k, apk_t, 1);
            CHECKF(memcmp(apk, apk_t, na * 4) == 0, "%dx%d: A and A^T pack differently", m, k);
            const int split = (n / 2 | 1) < n ? (n / 2 | 1) : n;
            for (int kk = 0; kk < k; kk += 2) {
                const float *lo = b + (size_t)kk * g.ldb, *hi = kk + 1 < k ? lo + g.ldb : NULL;
                cpu_bf16_pack_b_pair(lo, hi, split, 0, k, kk, bpk);
                cpu_bf16_pack_b_pair(lo + split, hi ? hi + split : NULL, n - split, split, k, kk, bpk);
            }
            cpu_gemm_bf16_packed(m, n, k, apk, bpk, g.beta, c, g.ldc);
            int bad;
            check_gemm(&g, PT_PREC_BF16, a, b, c0, c, &bad);
            CHECKF(bad == 0, "packed %dx%dx%d beta %g: %d elements off", m, n, k, g.beta, bad);
            /* A as bf16 rows in place, B packed from bf16 rows (its columns) */
            const int ldh = (k + 1) / 2 * 2;
            uint16_t *abf = malloc((size_t)m * ldh * 2), *bbf = malloc((size_t)n * ldh * 2);
            float *col = malloc((size_t)k * sizeof(float));
            for (int i = 0; i < m; i++) {
                cpu_bf16_round_row(a + (size_t)i * g.lda, k, abf + (size_t)i * ldh);
                if (k & 1) abf[(size_t)i * ldh + k] = 0;
            }
            for (int j = 0; j < n; j++) {
                for (int kk = 0; kk < k; kk++) col[kk] = b[(size_t)kk * g.ldb + j];
                cpu_bf16_round_row(col, k, bbf + (size_t)j * ldh);
                if (k & 1) bbf[(size_t)j * ldh + k] = 0;
            }
            /* NaN in what the transpose leaves unwritten (whole vectors of columns past n):
             * it may only reach columns of C that are not stored */
            memset(bpk, 0xff, nb * 4);
            cpu_bf16_pack_b_pairs((const uint32_t *)bbf, (size_t)ldh / 2, k, n, bpk);
            cpu_gemm_bf16_rows(m, n, k, (const uint32_t *)abf, (size_t)ldh / 2, bpk, g.beta, c1, g.ldc);
            check_gemm(&g, PT_PREC_BF16, a, b, c0, c1, &bad);
            CHECKF(bad == 0, "rows %dx%dx%d beta %g: %d elements off", m, n, k, g.beta, bad);
            free(a), free(b), free(c), free(c0), free(c1), free(apk), free(apk_t), free(bpk), free(at), free(abf);
            free(bbf), free(col);
        }
}

/* ---- conversion ---- */

/* Random bit patterns (every exponent, NaNs, subnormals) and the edge values. */
static float *conversion_inputs(size_t *count)
{
    static const uint32_t special[] = {
        0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff812345u,
        0x7f7fffffu, 0xff7fffffu, 0x7f7f8000u, 0x7f7f7fffu, 0x3f808000u, 0x3f818000u, 0x3f808001u, 0x3f817fffu,
        0x00800000u, 0x80800000u, 0x007fffffu, 0x00000001u, 0x807fffffu, 0x00ff8000u, 0x3f800000u, 0xbf7fffffu,
    };
    const size_t ns = sizeof special / sizeof special[0], n = 200000 + ns;
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < ns; i++) v[i] = pt_f32_from_bits(special[i]);
    for (size_t i = ns; i < n; i++) {
        const uint64_t r = next_u64();
        /* uniformly random bits, and values near bf16's ties (low 16 bits 0x8000 +- 1) and
         * near tf32's and normal fp16's (low 13 bits 0x1000 +- 1) */
        uint32_t u = (uint32_t)(r >> 32);
        if (i % 3 == 1) u = (u & 0xffff0000u) | (uint32_t)(0x7fff + (r & 3));
        if (i % 3 == 2) u = (u & 0xffffe000u) | (uint32_t)(0x0fff + (r & 3));
        v[i] = pt_f32_from_bits(u);
    }
    *count = n;
    return v;
}

static int is_subnormal(float v)
{
    return v != 0.0f && fabsf(v) < FLT_MIN;
}

/* What the bf16 GEMM multiplies for v: pt_bf16_from_f32's value, except that float32
 * subnormals count as zero (vcvtne2ps2bf16 and vdpbf16ps treat denormals as zero). */
static int matches_bf16(float got, float v)
{
    if (isnan(v)) return isnan(got);
    if (is_subnormal(v)) return got == 0.0f;
    return got == pt_round_bf16(v);
}

/* Each operand side and layout of the packing converts like pt_bf16_from_f32: 1 x v with the
 * values in A or in B, transposed or not, in the even and in the odd k of a pair. */
static void bf16_packing_converts_like_pt_bf16_from_f32(void)
{
    if (!cpu_has_bf16_kernel()) {
        printf("  skipped: no AVX512-BF16 on this CPU\n");
        return;
    }
    size_t n;
    float *v = conversion_inputs(&n);
    const int nn = (int)n;
    float *c = malloc(n * sizeof(float));
    void *ws = malloc(cpu_gemm_bf16_scratch(nn, nn, 2, 2));
    float one[2] = {1.0f, 0.0f}, one_odd[2] = {0.0f, 1.0f};
    for (int side = 0; side < 2; side++)
        for (int trans = 0; trans < 2; trans++)
            for (int odd = 0; odd < 2; odd++) {
                /* values v_j in the (odd ? second : first) k of each pair, zeros in the other */
                float *vals = malloc(2 * n * sizeof(float));
                for (size_t j = 0; j < n; j++)
                    for (size_t kk = 0; kk < 2; kk++) {
                        /* element (kk, j) of a 2 x n matrix, or (j, kk) of an n x 2 one */
                        const size_t at = trans ? 2 * j + kk : kk * n + j;
                        vals[at] = kk == (size_t)odd ? v[j] : 0.0f;
                    }
                const float *unit = odd ? one_odd : one;
                if (side == 0) /* B holds the values: C (1 x n) = [1 0] * B (2 x n) */
                    cpu_gemm_bf16(2, 0, trans, 1, nn, 2, 1.0f, unit, 2, vals, trans ? 2 : nn, 0.0f, c, nn, ws);
                else /* A holds them: C (n x 1) = A (n x 2) * [1 0]^T */
                    cpu_gemm_bf16(2, !trans, 0, nn, 1, 2, 1.0f, vals, trans ? 2 : nn, unit, 1, 0.0f, c, 1, ws);
                int bad = 0;
                for (size_t j = 0; j < n; j++)
                    if (!matches_bf16(c[j], v[j])) {
                        if (bad++ < 3)
                            fprintf(stderr, "  side %d trans %d odd %d: %08x -> %08x, want %08x\n", side, trans, odd,
                                    pt_f32_bits(v[j]), pt_f32_bits(c[j]), pt_f32_bits(pt_round_bf16(v[j])));
                    }
                CHECKF(bad == 0, "side %d trans %d odd %d: %d of %zu values converted differently", side, trans, odd,
                       bad, n);
                free(vals);
            }
    free(v), free(c), free(ws);
}

/* The emulated path's rounding is pt_precision_round, bit for bit (NaNs quiet, subnormals
 * kept), in place and out of place, with tails shorter than a vector. */
static void round_to_matches_pt_precision_round_bitwise(void)
{
    size_t n;
    float *v = conversion_inputs(&n);
    float *o = malloc(n * sizeof(float)), *ip = malloc(n * sizeof(float));
    const pt_precision modes[] = {PT_PREC_BF16, PT_PREC_FP16, PT_PREC_TF32, PT_PREC_FP32};
    for (size_t mi = 0; mi < 4; mi++) {
        const pt_precision p = modes[mi];
        const size_t len = n - 5; /* not a multiple of 16 */
        cpu_round_to(p, o, v, len, 2);
        memcpy(ip, v, len * sizeof(float));
        cpu_round_to(p, ip, ip, len, 1);
        int bad = 0;
        for (size_t i = 0; i < len; i++) {
            const uint32_t want = pt_f32_bits(pt_precision_round(p, v[i]));
            if (pt_f32_bits(o[i]) != want || pt_f32_bits(ip[i]) != want) {
                if (bad++ < 3)
                    fprintf(stderr, "  %s: %08x -> %08x / %08x, want %08x\n", pt_precision_name(p), pt_f32_bits(v[i]),
                            pt_f32_bits(o[i]), pt_f32_bits(ip[i]), want);
            }
        }
        CHECKF(bad == 0, "%s: %d of %zu values rounded differently", pt_precision_name(p), bad, len);
    }
    free(v), free(o), free(ip);
}

/* ---- ops through the device ---- */

static pt_buffer *upload(const float *src, size_t n)
{
    pt_buffer *b = NULL;
    pt_error e;
    if (pt_device_alloc(g_dev, (n ? n : 1) * sizeof(float), &b, &e) != PT_OK) abort();
    if (n && pt_device_write(g_dev, (pt_mem){b, 0}, src, n * sizeof(float), &e) != PT_OK) abort();
    return b;
}

static void download(float *dst, pt_buffer *b, size_t n)
{
    pt_error e;
    if (n && pt_device_read(g_dev, dst, (pt_mem){b, 0}, n * sizeof(float), &e) != PT_OK) abort();
}

/* Runs op with exactly the workspace the backend asks for, poisoned. */
static pt_status run_op(pt_op *op, pt_error *e)
{
    const size_t ws = g_dev->be->workspace_size(g_dev->ctx, op);
    pt_buffer *w = NULL;
    if (ws) {
        float *poison = malloc(ws + sizeof(float));
        for (size_t i = 0; i < ws / sizeof(float) + 1; i++) poison[i] = NAN;
        pt_device_alloc(g_dev, ws, &w, e);
        pt_device_write(g_dev, (pt_mem){w, 0}, poison, ws, e);
        free(poison);
    }
    op->workspace = (pt_mem){w, 0};
    op->workspace_bytes = ws;
    pt_error_clear(e);
    pt_status st = pt_device_run(g_dev, op, e);
    if (w) pt_device_free(g_dev, w);
    return st;
}

/* The modes to check: bf16 on the kernel (where the CPU has it) and emulated, tf32, fp16. */
typedef struct mode {
    pt_precision p;
    int kernel;
    const char *name;
} mode;

static const mode g_modes[] = {
    {PT_PREC_BF16, 1, "bf16 (AVX512-BF16)"},
    {PT_PREC_BF16, 0, "bf16 (emulated)"},
    {PT_PREC_TF32, 0, "tf32"},
    {PT_PREC_FP16, 0, "fp16"},
};
#define N_MODES 4

static int set_mode(const mode *md)
{
    if (md->kernel && !cpu_has_bf16_kernel()) return 0;
    cdev()->bf16_kernel = md->kernel;
    return 1;
}

static void gemm_op_honours_every_math_mode(void)
{
    const int shapes[][3] = {{37, 45, 29}, {64, 300, 200}, {3, 2, 1}, {128, 96, 640}};
    for (int mi = 0; mi < N_MODES; mi++) {
        if (!set_mode(&g_modes[mi])) continue;
        for (size_t si = 0; si < 4; si++)
            for (int t = 0; t < 4; t++) {
                const int m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
                gemm_case g = {t & 1, t >> 1, m, n, k, 0, 0, n, 1.0f, si & 1 ? 0.75f : 0.0f};
                g.alpha = t == 3 ? -1.5f : 1.0f;
                g.lda = g.ta ? m : k;
                g.ldb = g.tb ? k : n;
                float *a, *b, *c;
                make_gemm(&g, &a, &b, &c);
                const size_t na = (size_t)(g.ta ? k : m) * g.lda, nb = (size_t)(g.tb ? n : k) * g.ldb;
                pt_buffer *ba = upload(a, na), *bb = upload(b, nb), *bc = upload(c, (size_t)m * n);
                pt_op op;
                memset(&op, 0, sizeof op);
                op.kind = PT_OP_GEMM;
                op.nt = 3;
                op.math = g_modes[mi].p;
                op.t[0] = pt_tensor_2d(ba, 0, g.ta ? k : m, g.ta ? m : k);
                op.t[1] = pt_tensor_2d(bb, 0, g.tb ? n : k, g.tb ? k : n);
                op.t[2] = pt_tensor_2d(bc, 0, m, n);
                op.p.gemm.trans_a = g.ta;
                op.p.gemm.trans_b = g.tb;
                op.p.gemm.alpha = g.alpha;
                op.p.gemm.beta = g.beta;
                pt_error e;
                pt_status st = run_op(&op, &e);
                CHECKF(st == PT_OK, "%s: %s", g_modes[mi].name, e.msg);
                float *got = malloc((size_t)m * n * sizeof(float));
                download(got, bc, (size_t)m * n);
                int bad;
                const double err = check_gemm(&g, g_modes[mi].p, a, b, c, got, &bad);
                CHECKF(bad == 0, "%s gemm %dx%dx%d ta%d tb%d: %d elements off (error %.3g)", g_modes[mi].name, m, n, k,
                       g.ta, g.tb, bad, err);
                pt_device_free(g_dev, ba), pt_device_free(g_dev, bb), pt_device_free(g_dev, bc);
                free(a), free(b), free(c), free(got);
            }
    }
    cdev()->bf16_kernel = cpu_has_bf16_kernel();
}

static void gemm_op_refuses_a_short_workspace_in_a_math_mode(void)
{
    const int n = 40;
    float *a = rand_f((size_t)n * n);
    pt_buffer *ba = upload(a, (size_t)n * n), *bb = upload(a, (size_t)n * n), *bc = upload(a, (size_t)n * n);
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = PT_OP_GEMM;
    op.nt = 3;
    op.t[0] = pt_tensor_2d(ba, 0, n, n);
    op.t[1] = pt_tensor_2d(bb, 0, n, n);
    op.t[2] = pt_tensor_2d(bc, 0, n, n);
    op.p.gemm.alpha = 1.0f;
    CHECK(g_dev->be->workspace_size(g_dev->ctx, &op) == 0); /* fp32 needs none, as before */
    op.math = PT_PREC_FP16;
    CHECK(g_dev->be->workspace_size(g_dev->ctx, &op) > 0);
    pt_error e;
    pt_error_clear(&e);
    pt_status st = pt_device_run(g_dev, &op, &e);
    CHECKF(st == PT_ERR_INVALID && strstr(e.msg, "workspace"), "status %d: %s", (int)st, e.msg);
    pt_device_free(g_dev, ba), pt_device_free(g_dev, bb), pt_device_free(g_dev, bc);
    free(a);
}

/* ---- convolutions ---- */

typedef struct conv_case {
    int n, c, h, w, k, r, s, stride, pad;
} conv_case;

static const conv_case conv_cases[] = {
    {2, 5, 9, 8, 6, 3, 3, 1, 1},    /* 3x3 stride 1: Winograd in fp32 */
    {3, 8, 5, 7, 16, 1, 1, 1, 0},   /* 1x1 direct */
    {2, 4, 11, 10, 5, 3, 3, 2, 1},  /* stride 2 */
    {9, 16, 3, 3, 8, 3, 3, 1, 1},   /* small maps: samples grouped */
    {1, 3, 6, 6, 4, 1, 1, 1, 0},    /* batch 1, direct */
    {4, 32, 12, 12, 24, 3, 3, 1, 1}, /* large enough to thread im2col and the GEMM */
};

/* Plans: automatic, groups in parallel, groups in turn (threaded GEMMs), 3 samples per group,
 * and Winograd forced (which only bf16 on the kernel takes in a reduced precision). */
static const int conv_plans[][2] = {{0, 0}, {1, 1}, {1, 2}, {3, 1}, {0, 3}};
#define N_CONV_PLANS 5

static int conv_out(int in, int k, int stride, int pad)
{
    return (in + 2 * pad - k) / stride + 1;
}

/* ---- Winograd F(2x2,3x3) reference: the transforms in float32 in the order cpu_winograd.c
 * computes them (so that their values, rounded to bf16, are the operands the GEMMs
 * multiplied), everything after them in float64 ---- */

/* What the bf16 kernel multiplies for v (see matches_bf16). */
static double as_bf16(float v)
{
    return is_subnormal(v) ? 0.0 : (double)pt_round_bf16(v);
}

/* V = B^T d B of the 4x4 patch at (h0, w0) of an H x W plane, zero outside: the rows first
 * (input_rows), then the columns (input_cols). */
static void wref_input(const float *p, int H, int W, int h0, int w0, float v[16])
{
    float r[4][4], e[4][4];
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            const int h = h0 + a, w = w0 + b;
            r[a][b] = h >= 0 && h < H && w >= 0 && w < W ? p[(size_t)h * W + w] : 0.0f;
        }
    for (int k = 0; k < 4; k++) {
        e[0][k] = r[0][k] - r[2][k];
        e[1][k] = r[1][k] + r[2][k];
        e[2][k] = r[2][k] - r[1][k];
        e[3][k] = r[1][k] - r[3][k];
    }
    for (int a = 0; a < 4; a++) {
        v[a * 4 + 0] = e[a][0] - e[a][2];
        v[a * 4 + 1] = e[a][1] + e[a][2];
        v[a * 4 + 2] = e[a][2] - e[a][1];
        v[a * 4 + 3] = e[a][1] - e[a][3];
    }
}

/* U = G g G^T of a 3x3 filter (rotated by 180 degrees for the data gradient): filter_block. */
static void wref_filter(const float *g9, int rot, float u[16])
{
    float k[9], t[4][3];
    for (int e = 0; e < 9; e++) k[e] = g9[rot ? 8 - e : e];
    for (int s = 0; s < 3; s++) {
        t[0][s] = k[s];
        t[1][s] = 0.5f * (k[s] + k[3 + s] + k[6 + s]);
        t[2][s] = 0.5f * (k[s] - k[3 + s] + k[6 + s]);
        t[3][s] = k[6 + s];
    }
    for (int a = 0; a < 4; a++) {
        u[a * 4 + 0] = t[a][0];
        u[a * 4 + 1] = 0.5f * (t[a][0] + t[a][1] + t[a][2]);
        u[a * 4 + 2] = 0.5f * (t[a][0] - t[a][1] + t[a][2]);
        u[a * 4 + 3] = t[a][2];
    }
}

/* A dy A^T of the 2x2 tile at (h0, w0) of a P x Q plane, zero outside: dy_run. */
static void wref_dy(const float *p, int P, int Q, int h0, int w0, float m[16])
{
    float y[2][2], t[4][2];
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
            const int h = h0 + a, w = w0 + b;
            y[a][b] = h < P && w < Q ? p[(size_t)h * Q + w] : 0.0f;
        }
    for (int b = 0; b < 2; b++) {
        t[0][b] = y[0][b];
        t[1][b] = y[0][b] + y[1][b];
        t[2][b] = y[0][b] - y[1][b];
        t[3][b] = -y[1][b];
    }
    for (int a = 0; a < 4; a++) {
        m[a * 4 + 0] = t[a][0];
        m[a * 4 + 1] = t[a][0] + t[a][1];
        m[a * 4 + 2] = t[a][0] - t[a][1];
        m[a * 4 + 3] = -t[a][1];
    }
}

static const double wref_at[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};                     /* A^T */
static const double wref_g[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}}; /* G */

/* A stride-1 3x3 convolution as Winograd computes it: out[n, o] (ho x wo) from in[n, i]
 * (hi x wi, padding pad), filter (o, i) at w + (fwd ? o*ci + i : i*co + o)*9, rotated for the
 * data gradient (fwd 0). ref: the sums of the rounded transformed products, then the output
 * transform, in float64; mass: the same of their magnitudes. */
static void wref_forward(int nn, int ci, int hi, int wi, const float *in, int co, int ho, int wo, int pad,
                         const float *w, int fwd, double *ref, double *mass)
{
    double *u = malloc((size_t)co * ci * 16 * sizeof(double)), *v = malloc((size_t)ci * 16 * sizeof(double));
    for (int o = 0; o < co; o++)
        for (int i = 0; i < ci; i++) {
            float t[16];
            wref_filter(w + ((size_t)(fwd ? o * ci + i : i * co + o)) * 9, !fwd, t);
            for (int x = 0; x < 16; x++) u[((size_t)o * ci + i) * 16 + x] = as_bf16(t[x]);
        }
    for (int n = 0; n < nn; n++)
        for (int ti = 0; ti < (ho + 1) / 2; ti++)
            for (int tj = 0; tj < (wo + 1) / 2; tj++) {
                for (int i = 0; i < ci; i++) {
                    float t[16];
                    wref_input(in + ((size_t)n * ci + i) * hi * wi, hi, wi, 2 * ti - pad, 2 * tj - pad, t);
                    for (int x = 0; x < 16; x++) v[(size_t)i * 16 + x] = as_bf16(t[x]);
                }
                for (int o = 0; o < co; o++) {
                    double m[16] = {0}, ma[16] = {0};
                    for (int i = 0; i < ci; i++)
                        for (int x = 0; x < 16; x++) {
                            const double p = u[((size_t)o * ci + i) * 16 + x] * v[(size_t)i * 16 + x];
                            m[x] += p;
                            ma[x] += fabs(p);
                        }
                    for (int a = 0; a < 2; a++)
                        for (int b = 0; b < 2; b++) {
                            const int h = 2 * ti + a, ww = 2 * tj + b;
                            if (h >= ho || ww >= wo) continue;
                            double s = 0, sa = 0;
                            for (int p = 0; p < 4; p++)
                                for (int q = 0; q < 4; q++) {
                                    const double c = wref_at[a][p] * wref_at[b][q];
                                    s += c * m[p * 4 + q];
                                    sa += fabs(c) * ma[p * 4 + q];
                                }
                            const size_t at = (((size_t)n * co + o) * ho + h) * wo + ww;
                            ref[at] = s;
                            mass[at] = sa;
                        }
                }
            }
    free(u), free(v);
}

/* The filter gradient: dw[k, c] = G^T (sum over the tiles of (A dy A^T) (B^T x B), rounded
 * operands) G, in float64 after the transforms. */
static void wref_filter_grad(int nn, int c, int h, int w, const float *x, int k, int p, int q, int pad,
                             const float *dy, double *ref, double *mass)
{
    double *s = calloc((size_t)k * c * 16, sizeof(double)), *sa = calloc((size_t)k * c * 16, sizeof(double));
    double *v = malloc((size_t)c * 16 * sizeof(double)), *dm = malloc((size_t)k * 16 * sizeof(double));
    for (int n = 0; n < nn; n++)
        for (int ti = 0; ti < (p + 1) / 2; ti++)
            for (int tj = 0; tj < (q + 1) / 2; tj++) {
                float t[16];
                for (int i = 0; i < c; i++) {
                    wref_input(x + ((size_t)n * c + i) * h * w, h, w, 2 * ti - pad, 2 * tj - pad, t);
                    for (int e = 0; e < 16; e++) v[(size_t)i * 16 + e] = as_bf16(t[e]);
                }
                for (int o = 0; o < k; o++) {
                    wref_dy(dy + ((size_t)n * k + o) * p * q, p, q, 2 * ti, 2 * tj, t);
                    for (int e = 0; e < 16; e++) dm[(size_t)o * 16 + e] = as_bf16(t[e]);
                }
                for (int o = 0; o < k; o++)
                    for (int i = 0; i < c; i++)
                        for (int e = 0; e < 16; e++) {
                            const double pr = dm[(size_t)o * 16 + e] * v[(size_t)i * 16 + e];
                            s[((size_t)o * c + i) * 16 + e] += pr;
                            sa[((size_t)o * c + i) * 16 + e] += fabs(pr);
                        }
            }
    for (size_t pair = 0; pair < (size_t)k * c; pair++)
        for (int r = 0; r < 3; r++)
            for (int t2 = 0; t2 < 3; t2++) {
                double acc = 0, am = 0;
                for (int a = 0; a < 4; a++)
                    for (int b = 0; b < 4; b++) {
                        const double g = wref_g[a][r] * wref_g[b][t2];
                        acc += g * s[pair * 16 + a * 4 + b];
                        am += fabs(g) * sa[pair * 16 + a * 4 + b];
                    }
                ref[pair * 9 + r * 3 + t2] = acc;
                mass[pair * 9 + r * 3 + t2] = am;
            }
    free(s), free(sa), free(v), free(dm);
}

/* The reference of one conv op run as bf16 Winograd, and the number of float32 terms summed. */
static int wino_reference(const pt_op *op, const float *x, const float *w, const float *y, double *ref,
                          double *mass)
{
    const pt_tensor *tx = &op->t[0], *ty = &op->t[2];
    const int n = (int)tx->dim[0], c = (int)tx->dim[1], h = (int)tx->dim[2], ww = (int)tx->dim[3];
    const int k = (int)ty->dim[1], p = (int)ty->dim[2], q = (int)ty->dim[3], pad = op->p.conv.pad;
    if (op->kind == PT_OP_CONV2D_FWD) {
        wref_forward(n, c, h, ww, x, k, p, q, pad, w, 1, ref, mass);
        return c + 8;
    }
    if (op->kind == PT_OP_CONV2D_BWD_DATA) {
        wref_forward(n, k, p, q, y, c, h, ww, 2 - pad, w, 0, ref, mass);
        return k + 8;
    }
    wref_filter_grad(n, c, h, ww, x, k, p, q, pad, y, ref, mass);
    return n * ((p + 1) / 2) * ((q + 1) / 2) + 24;
}

/* One conv op in mode md against float64 on rounded operands; returns elements off. */
static int conv_check(const conv_case *cc, pt_op_kind kind, int acc, pt_precision p)
{
    const int P = conv_out(cc->h, cc->r, cc->stride, cc->pad), Q = conv_out(cc->w, cc->s, cc->stride, cc->pad);
    const size_t nx = (size_t)cc->n * cc->c * cc->h * cc->w, nw = (size_t)cc->k * cc->c * cc->r * cc->s;
    const size_t ny = (size_t)cc->n * cc->k * P * Q;
    float *x = rand_f(nx), *w = rand_f(nw), *y = rand_f(ny);
    /* the operands as the op multiplies them */
    double *rx = malloc(nx * sizeof(double)), *rw = malloc(nw * sizeof(double)), *ry = malloc(ny * sizeof(double));
    for (size_t i = 0; i < nx; i++) rx[i] = pt_precision_round(p, x[i]);
    for (size_t i = 0; i < nw; i++) rw[i] = pt_precision_round(p, w[i]);
    for (size_t i = 0; i < ny; i++) ry[i] = pt_precision_round(p, y[i]);
    const size_t nout = kind == PT_OP_CONV2D_FWD ? ny : kind == PT_OP_CONV2D_BWD_DATA ? nx : nw;
    float *o0 = rand_f(nout);
    if (!acc)
        for (size_t i = 0; i < nout; i++) o0[i] = NAN;
    float *xs = kind == PT_OP_CONV2D_BWD_DATA ? o0 : x, *ws = kind == PT_OP_CONV2D_BWD_FILTER ? o0 : w;
    float *ys = kind == PT_OP_CONV2D_FWD ? o0 : y;
    pt_buffer *bx = upload(xs, nx), *bw = upload(ws, nw), *by = upload(ys, ny);
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = kind;
    op.nt = 3;
    op.math = p;
    op.accumulate = acc;
    op.t[0] = pt_tensor_4d(bx, 0, cc->n, cc->c, cc->h, cc->w);
    op.t[1] = pt_tensor_4d(bw, 0, cc->k, cc->c, cc->r, cc->s);
    op.t[2] = pt_tensor_4d(by, 0, cc->n, cc->k, P, Q);
    op.p.conv.stride = cc->stride;
    op.p.conv.pad = cc->pad;
    /* bf16 on the kernel rounds the transformed operands where the op runs as Winograd */
    const int wino = p == PT_PREC_BF16 && cdev()->bf16_kernel && cpu_conv_uses_winograd(cdev(), &op);
    pt_error e;
    pt_status st = run_op(&op, &e);
    CHECKF(st == PT_OK, "%s: %s", pt_op_name(kind), e.msg);
    pt_buffer *bo = kind == PT_OP_CONV2D_FWD ? by : kind == PT_OP_CONV2D_BWD_DATA ? bx : bw;
    float *got = malloc(nout * sizeof(float));
    download(got, bo, nout);
    double *ref = calloc(nout, sizeof(double)), *mass = calloc(nout, sizeof(double));
    int terms = kind == PT_OP_CONV2D_FWD ? cc->c * cc->r * cc->s
                : kind == PT_OP_CONV2D_BWD_DATA ? cc->k * cc->r * cc->s
                                                : cc->n * P * Q;
    if (wino) terms = wino_reference(&op, x, w, y, ref, mass);
    for (int n = 0; n < cc->n && !wino; n++)
        for (int k = 0; k < cc->k; k++)
            for (int i = 0; i < P; i++)
                for (int j = 0; j < Q; j++)
                    for (int c = 0; c < cc->c; c++)
                        for (int r = 0; r < cc->r; r++)
                            for (int s = 0; s < cc->s; s++) {
                                const int h = i * cc->stride - cc->pad + r, ww = j * cc->stride - cc->pad + s;
                                if (h < 0 || h >= cc->h || ww < 0 || ww >= cc->w) continue;
                                const size_t xi = (((size_t)n * cc->c + c) * cc->h + h) * cc->w + ww;
                                const size_t wi = (((size_t)k * cc->c + c) * cc->r + r) * cc->s + s;
                                const size_t yi = (((size_t)n * cc->k + k) * P + i) * Q + j;
                                size_t o;
                                double v;
                                if (kind == PT_OP_CONV2D_FWD) o = yi, v = rx[xi] * rw[wi];
                                else if (kind == PT_OP_CONV2D_BWD_DATA) o = xi, v = rw[wi] * ry[yi];
                                else o = wi, v = rx[xi] * ry[yi];
                                ref[o] += v;
                                mass[o] += fabs(v);
                            }
    int bad = 0;
    for (size_t i = 0; i < nout; i++) {
        const double want = ref[i] + (acc ? o0[i] : 0.0);
        if (!within_bound(got[i], want, mass[i] + (acc ? fabs(o0[i]) : 0.0), terms)) {
            if (bad < 2) fprintf(stderr, "  [%zu] got %.9g want %.9g\n", i, got[i], want);
            bad++;
        }
    }
    pt_device_free(g_dev, bx), pt_device_free(g_dev, bw), pt_device_free(g_dev, by);
    free(x), free(w), free(y), free(rx), free(rw), free(ry), free(o0), free(got), free(ref), free(mass);
    return bad;
}

static void conv_ops_round_their_operands_in_every_math_mode(void)
{
    static const pt_op_kind kinds[] = {PT_OP_CONV2D_FWD, PT_OP_CONV2D_BWD_DATA, PT_OP_CONV2D_BWD_FILTER};
    for (int mi = 0; mi < N_MODES; mi++) {
        if (!set_mode(&g_modes[mi])) continue;
        for (size_t ci = 0; ci < sizeof conv_cases / sizeof conv_cases[0]; ci++)
            for (int ki = 0; ki < 3; ki++)
                for (int pi = 0; pi < N_CONV_PLANS; pi++) {
                    /* every plan in bf16 on the kernel and emulated; tf32 and fp16 automatic only */
                    if (g_modes[mi].p != PT_PREC_BF16 && pi > 0) continue;
                    cdev()->conv_force_group = conv_plans[pi][0];
                    cdev()->conv_force_mode = conv_plans[pi][1];
                    const int acc = (int)((ci + (size_t)pi) & 1);
                    const int bad = conv_check(&conv_cases[ci], kinds[ki], acc, g_modes[mi].p);
                    CHECKF(bad == 0, "%s %s case %zu plan %d acc %d: %d elements off", g_modes[mi].name,
                           pt_op_name(kinds[ki]), ci, pi, acc, bad);
                }
    }
    cdev()->conv_force_group = cdev()->conv_force_mode = 0;
    cdev()->bf16_kernel = cpu_has_bf16_kernel();
}

/* ---- bf16 Winograd ---- */

typedef struct wino_case {
    int n, c, h, w, k, pad;
} wino_case;

static const wino_case wino_cases[] = {
    {2, 5, 9, 8, 6, 1},     /* odd channels (the last pair half zero), odd output width */
    {1, 7, 5, 11, 13, 0},   /* pad 0; 13 output channels: a partial panel of rows */
    {3, 16, 7, 7, 16, 2},   /* pad 2: 9x9 outputs, an odd number of tiles per row */
    {2, 33, 12, 10, 24, 1}, /* 60 tiles: more than a panel of columns */
    {2, 520, 6, 6, 40, 1},  /* 520 channels: two blocks of k in the packed GEMM */
    {4, 64, 16, 16, 72, 1}, /* several tile rows per run, chunks across samples */
};

/* How the op runs: threads, conv_force_mode (3: per-thread chunks, 4: shared blocks),
 * conv_force_group (tiles per chunk or block; 0: the automatic one). */
static const int wino_configs[][3] = {{2, 3, 0}, {1, 3, 0}, {2, 3, 7}, {1, 3, 50}, {2, 4, 0}, {2, 4, 50}, {3, 4, 20}};
#define N_WINO_CONFIGS 7

static void set_config(const int cfg[3])
{
    cdev()->threads = cfg[0];
    cdev()->conv_force_mode = cfg[1];
    cdev()->conv_force_group = cfg[2];
}

static void reset_config(void)
{
    cdev()->threads = 2;
    cdev()->conv_force_mode = cdev()->conv_force_group = 0;
}

static pt_op conv_op(const wino_case *wc, pt_op_kind kind, int acc, pt_buffer *bx, pt_buffer *bw, pt_buffer *by)
{
    const int p = wc->h + 2 * wc->pad - 2, q = wc->w + 2 * wc->pad - 2;
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = kind;
    op.nt = 3;
    op.math = PT_PREC_BF16;
    op.accumulate = acc;
    op.t[0] = pt_tensor_4d(bx, 0, wc->n, wc->c, wc->h, wc->w);
    op.t[1] = pt_tensor_4d(bw, 0, wc->k, wc->c, 3, 3);
    op.t[2] = pt_tensor_4d(by, 0, wc->n, wc->k, p, q);
    op.p.conv.stride = 1;
    op.p.conv.pad = wc->pad;
    return op;
}

/* Every case, direction and accumulate flag in every config: within float32 summation's bound
 * of float64 on the rounded transformed operands; and the forward and data-gradient results
 * bit for bit the same in every config (each output element sums its channels in one order,
 * whatever the threads, chunks or blocks). The filter gradient sums each thread's tiles on
 * its own, as in float32, so its bits depend on the split. */
static void bf16_winograd_matches_float64_on_rounded_transforms(void)
{
    if (!cpu_has_bf16_kernel()) {
        printf("  skipped: no AVX512-BF16 on this CPU\n");
        return;
    }
    static const pt_op_kind kinds[] = {PT_OP_CONV2D_FWD, PT_OP_CONV2D_BWD_DATA, PT_OP_CONV2D_BWD_FILTER};
    for (size_t ci = 0; ci < sizeof wino_cases / sizeof wino_cases[0]; ci++)
        for (int ki = 0; ki < 3; ki++)
            for (int acc = 0; acc < 2; acc++) {
                const wino_case *wc = &wino_cases[ci];
                const pt_op_kind kind = kinds[ki];
                const int p = wc->h + 2 * wc->pad - 2, q = wc->w + 2 * wc->pad - 2;
                const size_t nx = (size_t)wc->n * wc->c * wc->h * wc->w, nw = (size_t)wc->k * wc->c * 9;
                const size_t ny = (size_t)wc->n * wc->k * p * q;
                const size_t nout = kind == PT_OP_CONV2D_FWD ? ny : kind == PT_OP_CONV2D_BWD_DATA ? nx : nw;
                float *x = rand_f(nx), *w = rand_f(nw), *y = rand_f(ny), *o0 = rand_f(nout);
                float *got = malloc(nout * sizeof(float)), *first = malloc(nout * sizeof(float));
                double *ref = calloc(nout, sizeof(double)), *mass = calloc(nout, sizeof(double));
                pt_buffer *bx = upload(x, nx), *bw = upload(w, nw), *by = upload(y, ny);
                pt_buffer *bo = kind == PT_OP_CONV2D_FWD ? by : kind == PT_OP_CONV2D_BWD_DATA ? bx : bw;
                pt_op op = conv_op(wc, kind, acc, bx, bw, by);
                const int terms = wino_reference(&op, x, w, y, ref, mass);
                for (int cf = 0; cf < N_WINO_CONFIGS; cf++) {
                    set_config(wino_configs[cf]);
                    CHECK(cpu_conv_uses_winograd(cdev(), &op));
                    pt_error e;
                    if (!acc)
                        for (size_t i = 0; i < nout; i++) got[i] = NAN;
                    pt_device_write(g_dev, (pt_mem){bo, 0}, acc ? o0 : got, nout * sizeof(float), &e);
                    pt_status st = run_op(&op, &e);
                    CHECKF(st == PT_OK, "%s: %s", pt_op_name(kind), e.msg);
                    download(got, bo, nout);
                    int bad = 0;
                    for (size_t i = 0; i < nout; i++) {
                        const double want = ref[i] + (acc ? o0[i] : 0.0);
                        if (!within_bound(got[i], want, mass[i] + (acc ? fabs(o0[i]) : 0.0), terms)) {
                            if (bad < 2) fprintf(stderr, "  [%zu] got %.9g want %.9g\n", i, got[i], want);
                            bad++;
                        }
                    }
                    CHECKF(bad == 0, "%s case %zu acc %d config %d: %d of %zu elements off", pt_op_name(kind), ci,
                           acc, cf, bad, nout);
                    if (cf == 0) memcpy(first, got, nout * sizeof(float));
                    else if (kind != PT_OP_CONV2D_BWD_FILTER)
                        CHECKF(memcmp(first, got, nout * sizeof(float)) == 0, "%s case %zu acc %d: config %d differs from config 0",
                               pt_op_name(kind), ci, acc, cf);
                }
                reset_config();
                pt_device_free(g_dev, bx), pt_device_free(g_dev, bw), pt_device_free(g_dev, by);
                free(x), free(w), free(y), free(o0), free(got), free(first), free(ref), free(mass);
            }
}

/* The exact convolution of the unrounded operands in float64. */
static void conv_exact(const wino_case *wc, pt_op_kind kind, const float *x, const float *w, const float *y,
                       double *ref)
{
    const int P = wc->h + 2 * wc->pad - 2, Q = wc->w + 2 * wc->pad - 2;
    for (int n = 0; n < wc->n; n++)
        for (int k = 0; k < wc->k; k++)
            for (int i = 0; i < P; i++)
                for (int j = 0; j < Q; j++)
                    for (int c = 0; c < wc->c; c++)
                        for (int r = 0; r < 3; r++)
                            for (int s2 = 0; s2 < 3; s2++) {
                                const int h = i - wc->pad + r, ww = j - wc->pad + s2;
                                if (h < 0 || h >= wc->h || ww < 0 || ww >= wc->w) continue;
                                const size_t xi = (((size_t)n * wc->c + c) * wc->h + h) * wc->w + ww;
                                const size_t wi = (((size_t)k * wc->c + c) * 3 + r) * 3 + s2;
                                const size_t yi = (((size_t)n * wc->k + k) * P + i) * Q + j;
                                if (kind == PT_OP_CONV2D_FWD) ref[yi] += (double)x[xi] * w[wi];
                                else if (kind == PT_OP_CONV2D_BWD_DATA) ref[xi] += (double)w[wi] * y[yi];
                                else ref[wi] += (double)x[xi] * y[yi];
                            }
}

/* Against the exact convolution, rounding the transformed operands costs about twice what
 * rounding x, w and dy themselves does (im2col in bf16: about 0.5 * 2^-8; Winograd about
 * 1.0 * 2^-8, its transformed values being sums of up to 9 terms whose rounding the output
 * transform adds up again): the normalised error stays within half the conformance suite's
 * bf16 bound (4 * 2^-8, against float32) and every element within its bound of 16 * 2^-8 of
 * the largest magnitude, on ResNet-like channel counts. */
static void bf16_winograd_error_is_that_of_bf16_operands(void)
{
    if (!cpu_has_bf16_kernel()) {
        printf("  skipped: no AVX512-BF16 on this CPU\n");
        return;
    }
    static const wino_case cases[] = {{2, 64, 16, 16, 64, 1}, {1, 128, 8, 8, 128, 1}, {2, 32, 14, 14, 48, 0}};
    static const pt_op_kind kinds[] = {PT_OP_CONV2D_FWD, PT_OP_CONV2D_BWD_DATA, PT_OP_CONV2D_BWD_FILTER};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (int ki = 0; ki < 3; ki++) {
            const wino_case *wc = &cases[ci];
            const pt_op_kind kind = kinds[ki];
            const int p = wc->h + 2 * wc->pad - 2, q = wc->w + 2 * wc->pad - 2;
            const size_t nx = (size_t)wc->n * wc->c * wc->h * wc->w, nw = (size_t)wc->k * wc->c * 9;
            const size_t ny = (size_t)wc->n * wc->k * p * q;
            const size_t nout = kind == PT_OP_CONV2D_FWD ? ny : kind == PT_OP_CONV2D_BWD_DATA ? nx : nw;
            float *x = rand_f(nx), *w = rand_f(nw), *y = rand_f(ny), *got = malloc(nout * sizeof(float));
            double *ref = calloc(nout, sizeof(double));
            conv_exact(wc, kind, x, w, y, ref);
            double refmax = 0;
            for (size_t i = 0; i < nout; i++) refmax = fmax(refmax, fabs(ref[i]));
            pt_buffer *bx = upload(x, nx), *bw = upload(w, nw), *by = upload(y, ny);
            pt_buffer *bo = kind == PT_OP_CONV2D_FWD ? by : kind == PT_OP_CONV2D_BWD_DATA ? bx : bw;
            pt_op op = conv_op(wc, kind, 0, bx, bw, by);
            double err[2], elem[2];
            for (int wino = 0; wino < 2; wino++) {
                /* im2col (groups in parallel), then Winograd (chunks) */
                const int cfg[3] = {2, wino ? 3 : 1, 0};
                set_config(cfg);
                CHECK(cpu_conv_uses_winograd(cdev(), &op) == wino);
                pt_error e;
                CHECKF(run_op(&op, &e) == PT_OK, "%s", e.msg);
                download(got, bo, nout);
                double num = 0, den = 0, worst = 0;
                for (size_t i = 0; i < nout; i++) {
                    const double d = got[i] - ref[i];
                    num += d * d;
                    den += ref[i] * ref[i];
                    worst = fmax(worst, fabs(d));
                }
                err[wino] = sqrt(num / den);
                elem[wino] = worst / refmax;
            }
            reset_config();
            printf("  %s %dx%dx%dx%d -> %d: normalised error im2col %.2f, Winograd %.2f; worst element %.2f, %.2f "
                   "(units of 2^-8)\n",
                   pt_op_name(kind), wc->n, wc->c, wc->h, wc->w, wc->k, err[0] * 256, err[1] * 256, elem[0] * 256,
                   elem[1] * 256);
            CHECKF(err[1] <= 2.0 * 0x1p-8 && elem[1] <= 16.0 * 0x1p-8, "%s case %zu: error %.3g, worst element %.3g",
                   pt_op_name(kind), ci, err[1], elem[1]);
            pt_device_free(g_dev, bx), pt_device_free(g_dev, bw), pt_device_free(g_dev, by);
            free(x), free(w), free(y), free(got), free(ref);
        }
}

/* x, w, y and the workspace each against a guard page (after it, then before it): the bf16
 * transforms' and im2col's masked loads and stores (edges of the image, of the channels, of
 * a chunk's panels) stay inside them, on Winograd's chunks and shared blocks and on the
 * packed im2col path. A stray access ends the test with SIGSEGV. */
static void bf16_convolutions_stay_inside_operands_and_workspace(void)
{
    if (!cpu_has_bf16_kernel()) {
        printf("  skipped: no AVX512-BF16 on this CPU\n");
        return;
    }
    static const wino_case cases[] = {{2, 5, 9, 8, 6, 1}, {1, 7, 5, 11, 13, 0}, {3, 16, 7, 7, 16, 2}, {2, 17, 3, 35, 9, 1}};
    static const pt_op_kind kinds[] = {PT_OP_CONV2D_FWD, PT_OP_CONV2D_BWD_DATA, PT_OP_CONV2D_BWD_FILTER};
    static const int modes[][2] = {{3, 0}, {3, 7}, {4, 0}, {1, 0}}; /* conv_force_mode, group */
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (int ki = 0; ki < 3; ki++)
            for (int mi = 0; mi < 4; mi++)
                for (int at_end = 0; at_end < 2; at_end++) {
                    const wino_case *wc = &cases[ci];
                    const int p = wc->h + 2 * wc->pad - 2, q = wc->w + 2 * wc->pad - 2;
                    const size_t nx = (size_t)wc->n * wc->c * wc->h * wc->w, nw = (size_t)wc->k * wc->c * 9;
                    const size_t ny = (size_t)wc->n * wc->k * p * q;
                    cdev()->conv_force_mode = modes[mi][0];
                    cdev()->conv_force_group = modes[mi][1];
                    guarded gx, gw, gy, gs;
                    pt_buffer bx = {guarded_alloc(nx * sizeof(float), at_end, &gx), nx * sizeof(float)};
                    pt_buffer bw = {guarded_alloc(nw * sizeof(float), at_end, &gw), nw * sizeof(float)};
                    pt_buffer by = {guarded_alloc(ny * sizeof(float), at_end, &gy), ny * sizeof(float)};
                    for (size_t i = 0; i < nx; i++) ((float *)bx.data)[i] = (float)urand();
                    for (size_t i = 0; i < nw; i++) ((float *)bw.data)[i] = (float)urand();
                    for (size_t i = 0; i < ny; i++) ((float *)by.data)[i] = (float)urand();
                    /* (accumulating on the guard-after runs: the output is read as well) */
                    pt_op op = conv_op(wc, kinds[ki], at_end, &bx, &bw, &by);
                    CHECK(cpu_conv_uses_winograd(cdev(), &op) == (modes[mi][0] != 1));
                    const size_t wsb = g_dev->be->workspace_size(g_dev->ctx, &op);
                    pt_buffer bs = {guarded_alloc(wsb ? wsb : 1, at_end, &gs), wsb};
                    op.workspace = (pt_mem){&bs, 0};
                    op.workspace_bytes = wsb;
                    pt_error e;
                    pt_error_clear(&e);
                    CHECKF(pt_device_run(g_dev, &op, &e) == PT_OK, "%s case %zu mode %d: %s", pt_op_name(kinds[ki]),
                           ci, mi, e.msg);
                    guarded_free(&gx), guarded_free(&gw), guarded_free(&gy), guarded_free(&gs);
                }
    reset_config();
}

/* bf16 on the kernel with one thread: the packed im2col path runs its groups in turn (with two
 * threads it runs them in parallel, above), and Winograd its chunks on one thread. */
static void bf16_convolutions_on_one_thread(void)
{
    if (!cpu_has_bf16_kernel()) {
        printf("  skipped: no AVX512-BF16 on this CPU\n");
        return;
    }
    static const pt_op_kind kinds[] = {PT_OP_CONV2D_FWD, PT_OP_CONV2D_BWD_DATA, PT_OP_CONV2D_BWD_FILTER};
    cdev()->threads = 1;
    for (size_t ci = 0; ci < sizeof conv_cases / sizeof conv_cases[0]; ci++)
        for (int ki = 0; ki < 3; ki++)
            for (int acc = 0; acc < 2; acc++) {
                const int bad = conv_check(&conv_cases[ci], kinds[ki], acc, PT_PREC_BF16);
                CHECKF(bad == 0, "%s case %zu acc %d: %d elements off", pt_op_name(kinds[ki]), ci, acc, bad);
            }
    cdev()->threads = 2;
}

static void precision_says_how_each_mode_runs(void)
{
    char how[256];
    pt_error e;
    CHECK(pt_device_precision(g_dev, PT_PREC_FP32, how, sizeof how, &e) == PT_OK && strstr(how, "float32"));
    CHECK(pt_device_precision(g_dev, PT_PREC_BF16, how, sizeof how, &e) == PT_OK);
    printf("  bf16: %s\n", how);
    CHECKF(strstr(how, cpu_has_bf16_kernel() ? "AVX512-BF16" : "emulated") != NULL, "%s", how);
    CHECK(pt_device_precision(g_dev, PT_PREC_TF32, how, sizeof how, &e) == PT_OK && strstr(how, "emulated"));
    CHECK(pt_device_precision(g_dev, PT_PREC_FP16, how, sizeof how, &e) == PT_OK && strstr(how, "emulated"));
    CHECK(strstr(g_dev->info.details, "bf16") != NULL);
}

/* ---- --bench ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef enum { B_SGEMM, B_BF16, B_EMUL } bench_path;

/* One run of one path, in seconds. */
static double bench_once(bench_path path, const gemm_case *g, const float *a, const float *b, float *c, float *ar,
                         float *br, void *ws)
{
    const cpu_device *d = cdev();
    const size_t na = (size_t)(g->ta ? g->k : g->m) * g->lda, nb = (size_t)(g->tb ? g->n : g->k) * g->ldb;
    const double t0 = now_s();
    if (path == B_SGEMM) {
        cpu_sgemm(d, g->ta, g->tb, g->m, g->n, g->k, 1.0f, a, g->lda, b, g->ldb, 0.0f, c, g->ldc);
    } else if (path == B_BF16) {
        cpu_gemm_bf16(d->threads, g->ta, g->tb, g->m, g->n, g->k, 1.0f, a, g->lda, b, g->ldb, 0.0f, c, g->ldc, ws);
    } else {
        cpu_round_to(PT_PREC_BF16, ar, a, na, d->threads);
        cpu_round_to(PT_PREC_BF16, br, b, nb, d->threads);
        cpu_sgemm(d, g->ta, g->tb, g->m, g->n, g->k, 1.0f, ar, g->lda, br, g->ldb, 0.0f, c, g->ldc);
    }
    return now_s() - t0;
}

static int bench(int threads)
{
    /* conv-shaped: fwd (M = out channels, N = columns, K = C*R*S), bwd_data (A transposed,
     * M = C*R*S, K = out channels), bwd_filter (B transposed, K = columns) */
    const gemm_case shapes[] = {
        {0, 0, 64, 16384, 576, 0, 0, 0, 1, 0},  {0, 0, 128, 4096, 1152, 0, 0, 0, 1, 0},
        {0, 0, 256, 1024, 2304, 0, 0, 0, 1, 0}, {0, 0, 512, 1024, 4608, 0, 0, 0, 1, 0},
        {0, 0, 64, 4096, 576, 0, 0, 0, 1, 0},   {0, 0, 512, 2048, 512, 0, 0, 0, 1, 0},
        {1, 0, 576, 4096, 64, 0, 0, 0, 1, 0},   {1, 0, 2304, 1024, 256, 0, 0, 0, 1, 0},
        {0, 1, 64, 576, 16384, 0, 0, 0, 1, 0},  {0, 1, 256, 2304, 1024, 0, 0, 0, 1, 0},
    };
    cpu_device *d = cdev();
    if (threads > 0) d->threads = threads;
    cpu_threads_enter(d);
    printf("%d threads; GFLOP/s, best of several runs\n", d->threads);
    printf("%-4s %6s %6s %6s | %9s %9s %9s | %s\n", "op", "M", "N", "K", "sgemm", "bf16", "emulated", "bf16/sgemm");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        gemm_case g = shapes[i];
        g.lda = g.ta ? g.m : g.k;
        g.ldb = g.tb ? g.k : g.n;
        g.ldc = g.n;
        const size_t na = (size_t)g.m * g.k, nb = (size_t)g.k * g.n;
        float *a = rand_f(na), *b = rand_f(nb), *c = rand_f((size_t)g.m * g.n);
        float *ar = malloc(na * sizeof(float)), *br = malloc(nb * sizeof(float));
        void *ws = malloc(cpu_gemm_bf16_scratch(g.m, g.n, g.k, d->threads));
        const double flops = 2.0 * g.m * g.n * g.k;
        const int reps = flops > 4e9 ? 6 : 12, kernel = cpu_has_bf16_kernel();
        /* the paths take turns, best time of each: other load on the machine hits all alike */
        double ts = 1e30, tb = 1e30, te = 1e30;
        for (int r = 0; r <= reps; r++) {
            const double s1 = bench_once(B_SGEMM, &g, a, b, c, ar, br, ws);
            const double s2 = kernel ? bench_once(B_BF16, &g, a, b, c, ar, br, ws) : 1e30;
            const double s3 = bench_once(B_EMUL, &g, a, b, c, ar, br, ws);
            if (r == 0) continue; /* warm-up */
            ts = s1 < ts ? s1 : ts;
            tb = s2 < tb ? s2 : tb;
            te = s3 < te ? s3 : te;
        }
        if (!kernel) tb = 0;
        printf("%-4s %6d %6d %6d | %9.1f %9.1f %9.1f | %.2fx\n", g.ta ? "A^T" : g.tb ? "B^T" : "", g.m, g.n, g.k,
               flops / ts * 1e-9, tb > 0 ? flops / tb * 1e-9 : 0.0, flops / te * 1e-9, tb > 0 ? ts / tb : 0.0);
        fflush(stdout);
        free(a), free(b), free(c), free(ar), free(br), free(ws);
    }
    return 0;
}

int main(int argc, char **argv)
{
    pt_error e;
    pt_device_options opt = {.threads = 2};
    if (pt_device_open("cpu", 0, &opt, &g_dev, &e) != PT_OK) {
        fprintf(stderr, "cannot open the cpu device: %s\n", e.msg);
        printf("0 passed, 1 failed\n");
        return 1;
    }
    if (argc > 1 && strcmp(argv[1], "--bench") == 0) {
        /* --bench [THREADS] */
        int rc = bench(argc > 2 ? atoi(argv[2]) : 0);
        pt_device_close(g_dev);
        return rc;
    }
    printf("  bf16 kernel: %s\n", cpu_has_bf16_kernel() ? "AVX512-BF16" : "none (emulated only)");
    RUN(bf16_gemm_matches_float64_reference_on_rounded_operands);
    RUN(bf16_gemm_stays_inside_operands_and_scratch);
    RUN(bf16_gemm_without_products_only_scales_c);
    RUN(bf16_caller_packed_gemms_match_float64);
    RUN(bf16_packing_converts_like_pt_bf16_from_f32);
    RUN(round_to_matches_pt_precision_round_bitwise);
    RUN(gemm_op_honours_every_math_mode);
    RUN(gemm_op_refuses_a_short_workspace_in_a_math_mode);
    RUN(conv_ops_round_their_operands_in_every_math_mode);
    RUN(bf16_winograd_matches_float64_on_rounded_transforms);
    RUN(bf16_winograd_error_is_that_of_bf16_operands);
    RUN(bf16_convolutions_on_one_thread);
    RUN(bf16_convolutions_stay_inside_operands_and_workspace);
    RUN(precision_says_how_each_mode_runs);
    pt_device_close(g_dev);
    TEST_EXIT();
}
