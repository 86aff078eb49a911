/* The reduced-precision formats and the loss scaler: core/half.h against exact references
 * (every 16-bit pattern, ties, overflow, subnormals), the precision names, and the loss
 * scale's update rule against PyTorch's GradScaler. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/half.h"
#include "polytrain/loss_scale.h"
#include "polytrain/precision.h"
#include "core/rng.h"
#include "pt_test.h"

/* The value of a half bit pattern, computed in double from its fields. */
static double f16_value(uint16_t h)
{
    const int sign = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v;
    if (e == 0) v = ldexp((double)m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexp(1.0 + m / 1024.0, e - 15);
    return sign ? -v : v;
}

/* Round-to-nearest-even of x onto a grid with `bits` significand bits (implicit bit
 * included) and minimum exponent emin (below it, a fixed spacing: the subnormals), and the
 * largest finite value max; in double, independent of the bit tricks under test. */
static double round_ref(double x, int bits, int emin, double max)
{
    if (isnan(x) || isinf(x) || x == 0) return x;
    int e;
    frexp(fabs(x), &e); /* |x| = f * 2^e, f in [0.5, 1) */
    int exp = e - 1;
    if (exp < emin) exp = emin;
    const double ulp = ldexp(1.0, exp - (bits - 1));
    double q = x / ulp, r = nearbyint(q); /* the default rounding mode: to nearest even */
    double v = r * ulp;
    /* the largest finite value plus half an ulp of it rounds to infinity */
    const double maxulp = ldexp(1.0, (int)floor(log2(max)) - (bits - 1));
    if (fabs(v) > max || fabs(x) >= max + maxulp / 2) return x > 0 ? INFINITY : -INFINITY;
    return v;
}

static void test_every_half_pattern_round_trips(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = pt_f32_from_f16((uint16_t)h);
        const double want = f16_value((uint16_t)h);
        if (isnan(want)) {
            bad += !isnan(f);
            bad += !((pt_f16_from_f32(f) & 0x7c00) == 0x7c00 && (pt_f16_from_f32(f) & 0x3ff));
            continue;
        }
        bad += (double)f != want;
        bad += pt_f16_from_f32(f) != h;
    }
    CHECKF(bad == 0, "%d half patterns do not survive half -> float -> half", bad);
}

static void test_every_bf16_pattern_round_trips(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = pt_f32_from_bf16((uint16_t)h);
        if (isnan(f)) {
            bad += !isnan(pt_f32_from_bf16(pt_bf16_from_f32(f)));
            continue;
        }
        bad += pt_bf16_from_f32(f) != h;
    }
    CHECKF(bad == 0, "%d bf16 patterns do not survive bf16 -> float -> bf16", bad);
}

/* Random floats over the whole exponent range, and the values halfway between neighbours
 * (ties go to even), against the double-precision reference. */
static void test_rounding_matches_the_reference(void)
{
    int bad16 = 0, badbf = 0, badtf = 0;
    const double f16max = 65504.0, bfmax = 0x1.fep127, tfmax = 0x1.ffcp127;
    for (uint64_t i = 0; i < 400000; i++) {
        uint32_t u = pt_rng_u32(7, 0x51u, 0, i, 0);
        float x = pt_f32_from_bits(u);
        if (i % 4 == 1) x = ldexpf((float)pt_rng_uniform(7, 0x52u, 0, i, 0) * 2.0f - 1.0f, (int)(i % 60) - 40);
        if (i % 4 == 2) { /* a tie: a representable half value plus half its ulp */
            const uint16_t h = (uint16_t)(u & 0x7bff);
            const double a = f16_value(h), b = f16_value((uint16_t)(h + 1));
            x = (float)((a + b) / 2);
        }
        if (isnan(x)) continue;
        const double r16 = round_ref(x, 11, -14, f16max), rbf = round_ref(x, 8, -126, bfmax),
                     rtf = round_ref(x, 11, -126, tfmax);
        if ((double)pt_round_f16(x) != r16) bad16++;
        /* bf16 and tf32 keep float32's subnormals: the reference's spacing below 2^-126 */
        if ((double)pt_round_bf16(x) != rbf) badbf++;
        if ((double)pt_round_tf32(x) != rtf) badtf++;
    }
    CHECKF(bad16 == 0, "%d floats rounded to half differ from the reference", bad16);
    CHECKF(badbf == 0, "%d floats rounded to bf16 differ from the reference", badbf);
    CHECKF(badtf == 0, "%d floats rounded to tf32 differ from the reference", badtf);
}

static void test_special_values(void)
{
    CHECK(pt_f16_from_f32(65504.0f) == 0x7bff);
    CHECK(pt_f16_from_f32(65519.99f) == 0x7bff);
    CHECK(pt_f16_from_f32(65520.0f) == 0x7c00); /* the tie above the largest half overflows */
    CHECK(pt_f16_from_f32(-1e10f) == 0xfc00);
    CHECK(pt_f16_from_f32(0x1p-24f) == 0x0001);  /* smallest subnormal */
    CHECK(pt_f16_from_f32(0x1p-25f) == 0x0000);  /* half of it: a tie, to even (zero) */
    CHECK(pt_f16_from_f32(0x1.8p-25f) == 0x0001);
    CHECK(pt_f16_from_f32(-0.0f) == 0x8000);
    CHECK(isnan(pt_round_f16(NAN)) && isnan(pt_round_bf16(NAN)) && isnan(pt_round_tf32(NAN)));
    CHECK(isinf(pt_round_bf16(INFINITY)) && pt_round_bf16(-INFINITY) < 0);
    CHECK(pt_bf16_from_f32(1.0f) == 0x3f80);
    CHECK(pt_bf16_from_f32(0x1.01p0f) == 0x3f80);   /* a tie: stays even */
    CHECK(pt_bf16_from_f32(0x1.03p0f) == 0x3f82);   /* a tie: up to even */
    CHECK(pt_bf16_from_f32(0x1.fffffep127f) == 0x7f80); /* rounds up to infinity */
    CHECK(pt_round_tf32(1.0f + 0x1p-11f) == 1.0f);   /* a tie, to even */
    CHECK(pt_round_tf32(1.0f + 0x1.8p-11f) == 1.0f + 0x1p-10f);
}

static void test_precision_names(void)
{
    pt_precision p;
    for (int i = 0; i < PT_PREC_COUNT; i++) {
        CHECK(pt_precision_parse(pt_precision_name((pt_precision)i), &p) && p == (pt_precision)i);
        CHECK(pt_precision_round((pt_precision)i, 1.0f) == 1.0f);
    }
    CHECK(!pt_precision_parse("bf17", &p) && !pt_precision_parse("", &p) && !pt_precision_parse(NULL, &p));
    CHECK(!pt_precision_parse("FP32", &p));
    CHECK(strcmp(pt_precision_name((pt_precision)9), "?") == 0);
    CHECK(pt_precision_scales_loss(PT_PREC_FP16) && !pt_precision_scales_loss(PT_PREC_BF16));
    CHECK(pt_precision_round(PT_PREC_FP32, 0.1f) == 0.1f);
    CHECK(pt_precision_round(PT_PREC_BF16, 0.1f) != 0.1f);
    CHECK(pt_precision_unit_roundoff(PT_PREC_BF16) == 0x1p-8 && pt_precision_unit_roundoff(PT_PREC_FP16) == 0x1p-11);
}

/* torch.cuda.amp.GradScaler: init_scale 2^16, growth 2, backoff 0.5, interval 2000. */
static void test_loss_scaler_follows_gradscaler(void)
{
    pt_loss_scaler s;
    pt_loss_scaler_init(&s);
    CHECK(s.scale == 65536.0 && s.growth_tracker == 0 && s.skipped == 0);
    for (int i = 0; i < 1999; i++) CHECK(pt_loss_scaler_update(&s, 0) == 0);
    CHECK(s.scale == 65536.0 && s.growth_tracker == 1999);
    CHECK(pt_loss_scaler_update(&s, 0) == 1); /* the 2000th clean step */
    CHECK(s.scale == 131072.0 && s.growth_tracker == 0);
    for (int i = 0; i < 10; i++) pt_loss_scaler_update(&s, 0);
    CHECK(pt_loss_scaler_update(&s, 1) == 1); /* overflow: halve, reset, count the skip */
    CHECK(s.scale == 65536.0 && s.growth_tracker == 0 && s.skipped == 1);
    pt_loss_scaler_update(&s, 1);
    CHECK(s.scale == 32768.0 && s.skipped == 2);
    /* never grows past float32's range */
    s.scale = 0x1p127;
    s.growth_tracker = 1999;
    CHECK(pt_loss_scaler_update(&s, 0) == 0);
    CHECK(s.scale == 0x1p127 && s.growth_tracker == 0);
}

int main(void)
{
    RUN(test_every_half_pattern_round_trips);
    RUN(test_every_bf16_pattern_round_trips);
    RUN(test_rounding_matches_the_reference);
    RUN(test_special_values);
    RUN(test_precision_names);
    RUN(test_loss_scaler_follows_gradscaler);
    TEST_EXIT();
}
