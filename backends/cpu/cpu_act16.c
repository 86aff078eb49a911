/* Activations stored in 16 bits (PT_BF16, PT_F16) on the operands the op table marks lowp.
 * The cpu kernels compute in float32 and most of them read and write the 16-bit operands
 * natively (cpu_act16_native): a 16-bit input is widened (exactly) as it is read, a row or a
 * plane at a time into a small per-thread buffer, and each 16-bit output is rounded to nearest
 * even once as it is written (core/half.h), with the float arithmetic and its order unchanged,
 * so the results are bitwise those of the float kernel on widened copies. The conversions are
 * vectorised (AVX-512: bf16 widened by a shift, narrowed by the integer rounding of
 * pt_bf16_from_f32; fp16 by vcvtph2ps / vcvtps2ph) with scalar fallbacks, chosen at run time.
 * An op not done natively (a convolution accumulating into a 16-bit y, the kinds without a
 * native loop) runs as the same op over float32 copies in its workspace: each 16-bit
 * input widened before, each 16-bit output rounded once after. PT_CPU_ACT16=copy sends every
 * op that way (tests compare the two bitwise). The copies and the per-thread buffers live in
 * the op's workspace, which the core reserves when the lists are built, so a step still
 * allocates nothing. A convolution in bf16 (fp16) math reading a bf16 (fp16) x forms exactly
 * the products it forms from a float x rounded to that format: the widened values are already
 * representable, and the math mode's rounding leaves them as they are. Winograd transforms the
 * stored x, which is the rounded one. */
#include <omp.h>
#include <string.h>

#include "backends/cpu/cpu_internal.h"
#include "core/half.h"
#include "core/op_act16.h"

#if CPU_BF16_BUILT
#include <immintrin.h>
#define ACT16_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#endif

/* Elements above which a conversion is spread over the device's threads. */
#define ACT16_PAR_MIN 32768
/* Operands of a pointwise kind run natively (stack staging per operand). */
#define ACT16_POINTWISE_MAX 3

static size_t align64(size_t n) { return (n + 63) / 64 * 64; }

/* ---- conversions of a row ---- */

static void widen_scalar(float *dst, const uint16_t *src, int64_t n, pt_dtype dt)
{
    if (dt == PT_BF16)
        for (int64_t i = 0; i < n; i++) dst[i] = pt_f32_from_bf16(src[i]);
    else
        for (int64_t i = 0; i < n; i++) dst[i] = pt_f32_from_f16(src[i]);
}

static void narrow_scalar(uint16_t *dst, const float *src, int64_t n, pt_dtype dt)
{
    if (dt == PT_BF16)
        for (int64_t i = 0; i < n; i++) dst[i] = pt_bf16_from_f32(src[i]);
    else
        for (int64_t i = 0; i < n; i++) dst[i] = pt_f16_from_f32(src[i]);
}

#if CPU_BF16_BUILT
ACT16_AVX512 static void widen_avx512(float *dst, const uint16_t *src, int64_t n, pt_dtype dt)
{
    int64_t i = 0;
    if (dt == PT_BF16) {
        for (; i + 16 <= n; i += 16) {
            const __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(src + i)));
            _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)));
        }
    } else {
        /* vcvtph2ps is exact but quietens a signalling NaN; pt_f32_from_f16 keeps its bits */
        const __m512i e = _mm512_set1_epi32(0x7c00), m = _mm512_set1_epi32(0x3ff);
        for (; i + 16 <= n; i += 16) {
            const __m256i hv = _mm256_loadu_si256((const __m256i *)(src + i));
            const __m512i h = _mm512_cvtepu16_epi32(hv);
            const __mmask16 nan = _mm512_cmpeq_epi32_mask(_mm512_and_si512(h, e), e) &
                                  _mm512_test_epi32_mask(h, m);
            const __m512i bits = _mm512_or_si512(
                _mm512_or_si512(_mm512_slli_epi32(_mm512_srli_epi32(h, 15), 31), _mm512_set1_epi32(0x7f800000)),
                _mm512_slli_epi32(_mm512_and_si512(h, m), 13));
            const __m512 v = _mm512_mask_mov_ps(_mm512_cvtph_ps(hv), nan, _mm512_castsi512_ps(bits));
            _mm512_storeu_ps(dst + i, v);
        }
    }
    widen_scalar(dst + i, src + i, n - i, dt);
}

/* pt_bf16_from_f32 on 16 lanes: NaN quietened, the rest rounded to nearest even in integers
 * (vcvtneps2bf16 would flush float32 subnormals to zero, which the scalar rounding keeps). */
ACT16_AVX512 static inline __m256i bf16_round16(__m512 v)
{
    const __m512i u = _mm512_castps_si512(v);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                  _mm512_set1_epi32(0x7f800000));
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(r);
}

/* pt_f16_from_f32 on 16 lanes: vcvtps2ph rounds to nearest even as it does (subnormal halves
 * and overflow to infinity included); every NaN becomes the one quiet NaN it gives. */
ACT16_AVX512 static inline __m256i f16_round16(__m512 v)
{
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    const __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256i sign = _mm256_and_si256(_mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(v), 16)),
                                          _mm256_set1_epi16((short)0x8000));
    return _mm256_mask_blend_epi16(nan, h, _mm256_or_si256(sign, _mm256_set1_epi16(0x7e00)));
}

ACT16_AVX512 static void narrow_avx512(uint16_t *dst, const float *src, int64_t n, pt_dtype dt)
{
    int64_t i = 0;
    if (dt == PT_BF16)
        for (; i + 16 <= n; i += 16) _mm256_storeu_si256((__m256i *)(dst + i), bf16_round16(_mm512_loadu_ps(src + i)));
    else
        for (; i + 16 <= n; i += 16) _mm256_storeu_si256((__m256i *)(dst + i), f16_round16(_mm512_loadu_ps(src + i)));
    narrow_scalar(dst + i, src + i, n - i, dt);
}

static int have_avx512(void)
{
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512vl");
    }
    return known;
}
#endif

void cpu_act16_widen_row(float *dst, const void *src, int64_t n, pt_dtype dt)
{
#if CPU_BF16_BUILT
    if (have_avx512()) {
        widen_avx512(dst, src, n, dt);
        return;
    }
#endif
    widen_scalar(dst, src, n, dt);
}

void cpu_act16_narrow_row(void *dst, const float *src, int64_t n, pt_dtype dt)
{
#if CPU_BF16_BUILT
    if (have_avx512()) {
        narrow_avx512(dst, src, n, dt);
        return;
    }
#endif
    narrow_scalar(dst, src, n, dt);
}

/* Whole tensors (the copy path), spread over the device's threads in blocks. */
#define ACT16_BLOCK 8192

static void widen(const cpu_device *d, float *dst, const uint16_t *src, int64_t n, pt_dtype dt)
{
    const int64_t blocks = (n + ACT16_BLOCK - 1) / ACT16_BLOCK;
#pragma omp parallel for num_threads(d->threads) if (n > ACT16_PAR_MIN) schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        const int64_t i = b * ACT16_BLOCK, len = n - i < ACT16_BLOCK ? n - i : ACT16_BLOCK;
        cpu_act16_widen_row(dst + i, src + i, len, dt);
    }
}

static void narrow(const cpu_device *d, uint16_t *dst, const float *src, int64_t n, pt_dtype dt)
{
    const int64_t blocks = (n + ACT16_BLOCK - 1) / ACT16_BLOCK;
#pragma omp parallel for num_threads(d->threads) if (n > ACT16_PAR_MIN) schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        const int64_t i = b * ACT16_BLOCK, len = n - i < ACT16_BLOCK ? n - i : ACT16_BLOCK;
        cpu_act16_narrow_row(dst + i, src + i, len, dt);
    }
}

void cpu_act16_load(const cpu_device *d, const pt_op *op, const pt_op *w)
{
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++)
        if (pt_act16_copy_in(op, 0, i))
            widen(d, cpu_f32(&w->t[i]), cpu_ptr(op->t[i].mem), pt_tensor_numel(&op->t[i]), op->t[i].dtype);
}

void cpu_act16_store(const cpu_device *d, const pt_op *op, const pt_op *w)
{
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++)
        if (pt_act16_copy_out(op, 0, i))
            narrow(d, cpu_ptr(op->t[i].mem), cpu_f32(&w->t[i]), pt_tensor_numel(&op->t[i]), op->t[i].dtype);
}

/* ---- native ---- */

/* Operands that share memory share a dtype (in-place ops), or the op takes the copies. */
static int aliases_agree(const pt_op *op)
{
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++)
        for (int j = 0; j < i; j++)
            if (!pt_op_operand_absent(op, i) && !pt_op_operand_absent(op, j) && op->t[i].mem.buf == op->t[j].mem.buf &&
                op->t[i].mem.off == op->t[j].mem.off && op->t[i].dtype != op->t[j].dtype)
                return 0;
    return 1;
}

int cpu_act16_native(const cpu_device *d, const pt_op *op)
{
    if (d->act16_copy || !aliases_agree(op)) return 0;
    switch (op->kind) {
    case PT_OP_ADD:
    case PT_OP_RELU_FWD:
    case PT_OP_RELU_BWD:
        return op->nt <= ACT16_POINTWISE_MAX;
    case PT_OP_BIAS_ADD:
    case PT_OP_BN_FWD_TRAIN:
    case PT_OP_BN_FWD_EVAL:
    case PT_OP_BN_BWD:
    case PT_OP_MAXPOOL_FWD:
    case PT_OP_GAP_FWD:
        return 1;
    case PT_OP_CONV2D_FWD:
        /* accumulating into a 16-bit y would round twice where the copy rounds once */
        return !(op->accumulate && op->t[2].dtype != PT_F32);
    case PT_OP_CONV2D_BWD_FILTER:
        return 1;
    default:
        return 0;
    }
}

size_t cpu_act16_plane_workspace(const cpu_device *d, int64_t in_floats, int64_t out_floats)
{
    return (size_t)d->threads * (align64((size_t)in_floats * sizeof(float)) + align64((size_t)out_floats * sizeof(float)));
}

float *cpu_act16_plane_buffer(const pt_op *op, int64_t in_floats, int64_t out_floats, int out)
{
    const size_t in_b = align64((size_t)in_floats * sizeof(float)), out_b = align64((size_t)out_floats * sizeof(float));
    char *base = (char *)cpu_ptr(op->workspace) + (size_t)omp_get_thread_num() * (in_b + out_b);
    return (float *)(out ? base + in_b : base);
}

/* Pointwise kinds (add, relu forward and backward): the float kernels' loops over chunks of
 * float32 staging on the stack, each 16-bit input widened into its chunk, each 16-bit output
 * rounded from it. Elementwise, so the chunking changes nothing in the results. */
#define ACT16_CHUNK 4096

static void pointwise_chunk(const pt_op *op, const float *const *in, float *out, int64_t len)
{
    switch (op->kind) {
    case PT_OP_ADD: {
        const float *a = in[0], *b = in[1];
        if (op->fuse_relu) {
#pragma omp simd
            for (int64_t i = 0; i < len; i++) {
                const float v = a[i] + b[i];
                out[i] = v < 0.0f ? 0.0f : v; /* as relu_fwd: NaN stays NaN */
            }
        } else {
#pragma omp simd
            for (int64_t i = 0; i < len; i++) out[i] = a[i] + b[i];
        }
        break;
    }
    case PT_OP_RELU_FWD: {
        const float *x = in[0];
#pragma omp simd
        for (int64_t i = 0; i < len; i++) out[i] = x[i] < 0.0f ? 0.0f : x[i];
        break;
    }
    default: { /* PT_OP_RELU_BWD */
        const float *y = in[0], *dy = in[1];
        if (op->accumulate) {
#pragma omp simd
            for (int64_t i = 0; i < len; i++) out[i] += y[i] > 0.0f ? dy[i] : 0.0f;
        } else {
#pragma omp simd
            for (int64_t i = 0; i < len; i++) out[i] = y[i] > 0.0f ? dy[i] : 0.0f;
        }
        break;
    }
    }
}

#if CPU_BF16_BUILT
/* AVX-512: the conversions inside the loop, 16 elements at a time, so that every operand
 * streams at once (staging chunk by chunk measured slower than the float32 op on 16M
 * elements: each phase restarted the prefetchers). The same float operations as
 * pointwise_chunk; the scalar tail goes through it. */
ACT16_AVX512 static inline __m512 load16(const void *p, pt_dtype dt, int64_t i)
{
    if (dt == PT_F32) return _mm512_loadu_ps((const float *)p + i);
    const __m256i hv = _mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i));
    const __m512i h = _mm512_cvtepu16_epi32(hv);
    if (dt == PT_BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
    const __m512i e = _mm512_set1_epi32(0x7c00), m = _mm512_set1_epi32(0x3ff);
    const __mmask16 nan = _mm512_cmpeq_epi32_mask(_mm512_and_si512(h, e), e) & _mm512_test_epi32_mask(h, m);
    const __m512i bits = _mm512_or_si512(
        _mm512_or_si512(_mm512_slli_epi32(_mm512_srli_epi32(h, 15), 31), _mm512_set1_epi32(0x7f800000)),
        _mm512_slli_epi32(_mm512_and_si512(h, m), 13));
    return _mm512_mask_mov_ps(_mm512_cvtph_ps(hv), nan, _mm512_castsi512_ps(bits));
}

ACT16_AVX512 static inline void store16(void *p, pt_dtype dt, int64_t i, __m512 v)
{
    if (dt == PT_F32) _mm512_storeu_ps((float *)p + i, v);
    else if (dt == PT_BF16) _mm256_storeu_si256((__m256i *)((uint16_t *)p + i), bf16_round16(v));
    else _mm256_storeu_si256((__m256i *)((uint16_t *)p + i), f16_round16(v));
}

/* Elements [lo, hi) (hi - lo a multiple of 16). */
ACT16_AVX512 static void pointwise_avx512(const pt_op *op, int64_t lo, int64_t hi)
{
    const pt_tensor *yt = &op->t[op->nt - 1];
    void *y = cpu_ptr(yt->mem);
    const pt_dtype ydt = yt->dtype;
    const __m512 zero = _mm512_setzero_ps();
    if (op->kind == PT_OP_ADD) {
        const void *a = cpu_ptr(op->t[0].mem), *b = cpu_ptr(op->t[1].mem);
        const pt_dtype adt = op->t[0].dtype, bdt = op->t[1].dtype;
        const int relu = op->fuse_relu;
        for (int64_t i = lo; i < hi; i += 16) {
            __m512 v = _mm512_add_ps(load16(a, adt, i), load16(b, bdt, i));
            if (relu) v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), zero);
            store16(y, ydt, i, v);
        }
    } else if (op->kind == PT_OP_RELU_FWD) {
        const void *x = cpu_ptr(op->t[0].mem);
        const pt_dtype xdt = op->t[0].dtype;
        for (int64_t i = lo; i < hi; i += 16) {
            const __m512 v = load16(x, xdt, i);
            store16(y, ydt, i, _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), zero));
        }
    } else { /* PT_OP_RELU_BWD */
        const void *yv = cpu_ptr(op->t[0].mem);
        const float *dy = cpu_f32(&op->t[1]);
        const pt_dtype vdt = op->t[0].dtype;
        const int acc = op->accumulate;
        for (int64_t i = lo; i < hi; i += 16) {
            const __mmask16 pos = _mm512_cmp_ps_mask(load16(yv, vdt, i), zero, _CMP_GT_OQ);
            __m512 g = _mm512_maskz_mov_ps(pos, _mm512_loadu_ps(dy + i));
            if (acc) g = _mm512_add_ps(load16(y, ydt, i), g);
            store16(y, ydt, i, g);
        }
    }
}
#endif

pt_status cpu_act16_pointwise(const cpu_device *d, const pt_op *op, pt_error *err)
{
    if (op->kind != PT_OP_ADD && op->kind != PT_OP_RELU_FWD && op->kind != PT_OP_RELU_BWD)
        return pt_fail(err, PT_ERR_UNSUPPORTED, "cpu backend: no 16-bit pointwise loop for %s", pt_op_name(op->kind));
    const int nt = op->nt, o = nt - 1; /* the inputs, then the output */
    const pt_tensor *yt = &op->t[o];
    const int64_t n = pt_tensor_numel(yt);
    const int64_t chunks = (n + ACT16_CHUNK - 1) / ACT16_CHUNK;
#if CPU_BF16_BUILT
    const int vec = have_avx512();
#else
    const int vec = 0;
#endif
#pragma omp parallel for num_threads(d->threads) if (n > ACT16_PAR_MIN) schedule(static)
    for (int64_t ch = 0; ch < chunks; ch++) {
#if CPU_BF16_BUILT
        if (vec) {
            const int64_t lo = ch * ACT16_CHUNK, hi = n - lo < ACT16_CHUNK ? n : lo + ACT16_CHUNK;
            const int64_t body = lo + (hi - lo) / 16 * 16;
            pointwise_avx512(op, lo, body);
            if (body == hi) continue;
            /* the tail below, from body */
            float buf[ACT16_POINTWISE_MAX][16];
            const float *in[ACT16_POINTWISE_MAX - 1];
            const int64_t len = hi - body;
            for (int i = 0; i < o; i++) in[i] = cpu_act16_in(&op->t[i], body, len, buf[i]);
            float *out = cpu_act16_out(yt, body, buf[o]);
            if (op->accumulate && yt->dtype != PT_F32)
                cpu_act16_widen_row(out, (const uint16_t *)cpu_ptr(yt->mem) + body, len, yt->dtype);
            pointwise_chunk(op, in, out, len);
            cpu_act16_out_done(yt, body, len, out);
            continue;
        }
#endif
        (void)vec;
        float buf[ACT16_POINTWISE_MAX][ACT16_CHUNK];
        const float *in[ACT16_POINTWISE_MAX - 1];
        const int64_t i0 = ch * ACT16_CHUNK, len = n - i0 < ACT16_CHUNK ? n - i0 : ACT16_CHUNK;
        for (int i = 0; i < o; i++) in[i] = cpu_act16_in(&op->t[i], i0, len, buf[i]);
        float *out = cpu_act16_out(yt, i0, buf[o]);
        if (op->accumulate && yt->dtype != PT_F32) cpu_act16_widen_row(out, (const uint16_t *)cpu_ptr(yt->mem) + i0, len, yt->dtype);
        /* y may be an input (in place): its chunk was read whole above before it is written */
        pointwise_chunk(op, in, out, len);
        cpu_act16_out_done(yt, i0, len, out);
    }
    return PT_OK;
}
