/* core/schedule: every learning-rate schedule against an independent float64 closed form
 * (onecycle: PyTorch's OneCycleLR with anneal_strategy='cos', three_phase=False), with
 * exact values at phase boundaries and midpoints. */
#include <math.h>
#include <string.h>

#include "polytrain/schedule.h"
#include "pt_test.h"

static int close_to(double got, double want)
{
    return isfinite(got) && fabs(got - want) <= 1e-12 + 1e-9 * fabs(want);
}

#define CHECK_LR(s, step, want)                                                            \
    do {                                                                                   \
        double got_ = pt_schedule_lr(&(s), (step));                                        \
        double want_ = (want);                                                             \
        CHECKF(close_to(got_, want_), "step %lld: lr %.17g, expected %.17g", (long long)(step), \
               got_, want_);                                                               \
    } while (0)

/* PyTorch OneCycleLR, written out from torch/optim/lr_scheduler.py: two phases ending at
 * float(pct_start * total) - 1 and total - 1; cos annealing inside each. */
static double ref_cos(double start, double end, double pct)
{
    return end + (start - end) / 2.0 * (cos(3.14159265358979323846 * pct) + 1.0);
}

static double ref_onecycle(double max_lr, long total, double pct_start, double div, double final_div,
                           long step)
{
    double initial = max_lr / div, min_lr = initial / final_div;
    double end1 = pct_start * (double)total - 1.0, end2 = (double)total - 1.0;
    if ((double)step <= end1) return ref_cos(initial, max_lr, (double)step / end1);
    return ref_cos(max_lr, min_lr, ((double)step - end1) / (end2 - end1));
}

static pt_schedule onecycle(double lr, long total)
{
    pt_schedule s;
    memset(&s, 0, sizeof s);
    s.kind = PT_SCHED_ONECYCLE;
    s.lr = lr;
    s.total_steps = total;
    s.pct_start = 0.3;
    s.div_factor = 25.0;
    s.final_div_factor = 1e4;
    return s;
}

static void test_onecycle_matches_pytorch_at_every_step(void)
{
    const long totals[] = {10, 100, 469 * 3, 1000, 7};
    for (size_t k = 0; k < sizeof totals / sizeof totals[0]; k++) {
        long T = totals[k];
        pt_schedule s = onecycle(0.1, T);
        double worst = 0;
        for (long i = 0; i < T; i++) {
            double want = ref_onecycle(0.1, T, 0.3, 25.0, 1e4, i);
            double got = pt_schedule_lr(&s, i);
            double e = isfinite(got) ? fabs(got - want) / want : INFINITY;
            if (e > worst) worst = e;
        }
        CHECKF(worst < 1e-12, "total %ld: worst relative error %g", T, worst);
    }
}

static void test_onecycle_boundaries(void)
{
    pt_schedule s = onecycle(0.1, 1000);
    CHECK_LR(s, 0, 0.1 / 25.0);                 /* initial_lr = max_lr / div_factor */
    CHECK_LR(s, 299, 0.1);                      /* peak at pct_start * total - 1 */
    CHECK_LR(s, 999, 0.1 / 25.0 / 1e4);         /* min_lr at the last step */
    CHECK(pt_schedule_lr(&s, 298) < 0.1 && pt_schedule_lr(&s, 300) < 0.1);
}

static void test_onecycle_midpoints(void)
{
    /* total 70: phase 1 ends at step 20, so step 10 is its midpoint */
    pt_schedule s = onecycle(0.2, 70);
    CHECK_LR(s, 10, (0.2 / 25.0 + 0.2) / 2.0);
    /* total 100: phase 1 ends at 29, phase 2 at 99: step 64 is phase 2's midpoint */
    s = onecycle(0.2, 100);
    CHECK_LR(s, 64, (0.2 + 0.2 / 25.0 / 1e4) / 2.0);
}

static void test_onecycle_rises_then_falls(void)
{
    pt_schedule s = onecycle(1.0, 500);
    int up = 1, down = 1;
    for (long i = 1; i < 500; i++) {
        double a = pt_schedule_lr(&s, i - 1), b = pt_schedule_lr(&s, i);
        if (i <= 149 && !(b > a)) up = 0;
        if (i > 149 && !(b < a)) down = 0;
    }
    CHECK(up);
    CHECK(down);
}

static void test_onecycle_custom_factors(void)
{
    pt_schedule s = onecycle(0.5, 200);
    s.pct_start = 0.25;
    s.div_factor = 10.0;
    s.final_div_factor = 100.0;
    CHECK_LR(s, 0, 0.05);
    CHECK_LR(s, 49, 0.5);
    CHECK_LR(s, 199, 0.0005);
    for (long i = 0; i < 200; i += 7) CHECK_LR(s, i, ref_onecycle(0.5, 200, 0.25, 10.0, 100.0, i));
}

/* PyTorch cycles momentum the other way round: max_momentum -> base_momentum over phase
 * 1, back to max_momentum at the last step. */
static double ref_onecycle_momentum(double base, double max, long total, double pct_start, long step)
{
    double end1 = pct_start * (double)total - 1.0, end2 = (double)total - 1.0;
    if ((double)step <= end1) return ref_cos(max, base, (double)step / end1);
    return ref_cos(base, max, ((double)step - end1) / (end2 - end1));
}

#define CHECK_MOM(s, step, fixed, want)                                                    \
    do {                                                                                   \
        double got_ = pt_schedule_momentum(&(s), (step), (fixed));                         \
        CHECKF(close_to(got_, (want)), "step %ld: momentum %.17g, expected %.17g", (long)(step), \
               got_, (double)(want));                                                      \
    } while (0)

static void test_onecycle_cycles_momentum_like_pytorch(void)
{
    pt_schedule s = onecycle(0.1, 100);
    s.cycle_momentum = 1;
    s.base_momentum = 0.85;
    s.max_momentum = 0.95;
    CHECK_MOM(s, 0, 0.9, 0.95);  /* starts at max_momentum */
    CHECK_MOM(s, 29, 0.9, 0.85); /* lowest where the learning rate peaks */
    CHECK_MOM(s, 64, 0.9, 0.90); /* phase 2 midpoint */
    CHECK_MOM(s, 99, 0.9, 0.95);
    for (long i = 0; i < 100; i++) CHECK_MOM(s, i, 0.9, ref_onecycle_momentum(0.85, 0.95, 100, 0.3, i));
}

static void test_momentum_is_fixed_unless_cycled(void)
{
    pt_schedule s = onecycle(0.1, 100);
    s.base_momentum = 0.85;
    s.max_momentum = 0.95;
    s.cycle_momentum = 0;
    CHECK_MOM(s, 0, 0.9, 0.9);
    CHECK_MOM(s, 29, 0.9, 0.9);
    s.kind = PT_SCHED_COSINE;
    s.cycle_momentum = 1; /* only onecycle cycles */
    CHECK_MOM(s, 29, 0.8, 0.8);
}

static pt_schedule plain(pt_schedule_kind kind, double lr, long total, long warmup)
{
    pt_schedule s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    s.lr = lr;
    s.total_steps = total;
    s.warmup_steps = warmup;
    s.step_every = 30;
    s.gamma = 0.1;
    return s;
}

/* Linear warmup from lr/warmup to lr, then cosine from lr to 0 over the remaining steps. */
static double ref_cosine(double lr, long total, long warmup, long step)
{
    if (step < warmup) return lr * (double)(step + 1) / (double)warmup;
    double pct = (double)(step - warmup) / (double)(total - warmup);
    if (pct > 1.0) pct = 1.0;
    return lr * 0.5 * (1.0 + cos(3.14159265358979323846 * pct));
}

static void test_cosine_without_warmup(void)
{
    pt_schedule s = plain(PT_SCHED_COSINE, 0.1, 100, 0);
    CHECK_LR(s, 0, 0.1);
    CHECK_LR(s, 50, 0.05);
    CHECK_LR(s, 25, 0.1 * 0.5 * (1.0 + sqrt(0.5)));
    CHECK_LR(s, 100, 0.0);
    CHECK(pt_schedule_lr(&s, 99) > 0 && pt_schedule_lr(&s, 99) < 1e-4);
    for (long i = 0; i <= 100; i++) CHECK_LR(s, i, ref_cosine(0.1, 100, 0, i));
}

static void test_cosine_with_warmup(void)
{
    pt_schedule s = plain(PT_SCHED_COSINE, 0.1, 110, 10);
    CHECK_LR(s, 0, 0.01);   /* warmup starts at lr / warmup_steps */
    CHECK_LR(s, 4, 0.05);   /* warmup midpoint */
    CHECK_LR(s, 9, 0.1);    /* warmup reaches lr on its last step */
    CHECK_LR(s, 10, 0.1);   /* cosine starts at lr */
    CHECK_LR(s, 60, 0.05);  /* cosine midpoint */
    CHECK_LR(s, 110, 0.0);
    for (long i = 0; i <= 110; i++) CHECK_LR(s, i, ref_cosine(0.1, 110, 10, i));
}

static void test_step_decay(void)
{
    pt_schedule s = plain(PT_SCHED_STEP, 0.1, 100, 0);
    CHECK_LR(s, 0, 0.1);
    CHECK_LR(s, 15, 0.1);
    CHECK_LR(s, 29, 0.1);
    CHECK_LR(s, 30, 0.01);
    CHECK_LR(s, 59, 0.01);
    CHECK_LR(s, 60, 0.001);
    CHECK_LR(s, 95, 0.0001);
    s.gamma = 0.5;
    s.step_every = 7;
    for (long i = 0; i < 100; i++) CHECK_LR(s, i, 0.1 * pow(0.5, (double)(i / 7)));
}

static void test_step_decay_with_warmup(void)
{
    pt_schedule s = plain(PT_SCHED_STEP, 0.1, 100, 5);
    CHECK_LR(s, 0, 0.02);
    CHECK_LR(s, 2, 0.06);
    CHECK_LR(s, 4, 0.1);
    CHECK_LR(s, 5, 0.1);
    CHECK_LR(s, 30, 0.01); /* decay steps count from step 0, warmup included */
}

static void test_constant(void)
{
    pt_schedule s = plain(PT_SCHED_CONSTANT, 0.05, 100, 0);
    CHECK_LR(s, 0, 0.05);
    CHECK_LR(s, 50, 0.05);
    CHECK_LR(s, 99, 0.05);
    CHECK_LR(s, 1000, 0.05); /* past the end: unchanged */
    s.warmup_steps = 4;
    CHECK_LR(s, 0, 0.0125);
    CHECK_LR(s, 1, 0.025);
    CHECK_LR(s, 3, 0.05);
    CHECK_LR(s, 4, 0.05);
}

static void test_names_round_trip_and_unknown_names_fail(void)
{
    const pt_schedule_kind kinds[] = {PT_SCHED_CONSTANT, PT_SCHED_STEP, PT_SCHED_COSINE, PT_SCHED_ONECYCLE};
    const char *names[] = {"constant", "step", "cosine", "onecycle"};
    for (int i = 0; i < 4; i++) {
        CHECK(strcmp(pt_schedule_name(kinds[i]), names[i]) == 0);
        pt_schedule_kind k = (pt_schedule_kind)-1;
        CHECK(pt_schedule_parse(names[i], &k) == 1 && k == kinds[i]);
    }
    pt_schedule_kind k;
    CHECK(pt_schedule_parse("Cosine", &k) == 0);
    CHECK(pt_schedule_parse("linear", &k) == 0);
    CHECK(pt_schedule_parse("", &k) == 0);
    CHECK(strcmp(pt_schedule_name((pt_schedule_kind)42), "?") == 0);
}

int main(void)
{
    RUN(test_onecycle_matches_pytorch_at_every_step);
    RUN(test_onecycle_boundaries);
    RUN(test_onecycle_midpoints);
    RUN(test_onecycle_rises_then_falls);
    RUN(test_onecycle_custom_factors);
    RUN(test_onecycle_cycles_momentum_like_pytorch);
    RUN(test_momentum_is_fixed_unless_cycled);
    RUN(test_cosine_without_warmup);
    RUN(test_cosine_with_warmup);
    RUN(test_step_decay);
    RUN(test_step_decay_with_warmup);
    RUN(test_constant);
    RUN(test_names_round_trip_and_unknown_names_fail);
    TEST_EXIT();
}
