/* Learning-rate schedule formulas (see schedule.h); onecycle follows torch.optim.lr_scheduler.OneCycleLR
 * with anneal_strategy='cos' and three_phase=False. */
#include <math.h>
#include <string.h>

#include "polytrain/schedule.h"

static const char *const names[] = {"constant", "step", "cosine", "onecycle"};

const char *pt_schedule_name(pt_schedule_kind kind)
{
    return (unsigned)kind < 4 ? names[kind] : "?";
}

int pt_schedule_parse(const char *name, pt_schedule_kind *out)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (pt_schedule_kind)i;
            return 1;
        }
    return 0;
}

static double cos_anneal(double start, double end, double pct)
{
    return end + (start - end) / 2.0 * (cos(M_PI * pct) + 1.0);
}

/* The two OneCycleLR phases: fraction done of phase 1 (warm) or phase 2 (anneal). */
static int onecycle_phase(const pt_schedule *s, int64_t step, double *pct)
{
    double up_end = s->pct_start * (double)s->total_steps - 1.0;
    double down_end = (double)s->total_steps - 1.0;
    double t = (double)step;
    if (t <= up_end) {
        *pct = up_end > 0 ? t / up_end : 1.0;
        return 1;
    }
    double span = down_end - up_end;
    *pct = span > 0 ? (t - up_end) / span : 1.0;
    if (*pct > 1.0) *pct = 1.0;
    return 2;
}

double pt_schedule_momentum(const pt_schedule *s, int64_t step, double fixed)
{
    if (s->kind != PT_SCHED_ONECYCLE || !s->cycle_momentum) return fixed;
    double pct;
    if (onecycle_phase(s, step, &pct) == 1) return cos_anneal(s->max_momentum, s->base_momentum, pct);
    return cos_anneal(s->base_momentum, s->max_momentum, pct);
}

double pt_schedule_lr(const pt_schedule *s, int64_t step)
{
    if (s->kind == PT_SCHED_ONECYCLE) {
        double initial = s->lr / s->div_factor;
        double min_lr = initial / s->final_div_factor;
        double pct;
        if (onecycle_phase(s, step, &pct) == 1) return cos_anneal(initial, s->lr, pct);
        return cos_anneal(s->lr, min_lr, pct);
    }
    if (s->warmup_steps > 0 && step < s->warmup_steps)
        return s->lr * (double)(step + 1) / (double)s->warmup_steps;
    switch (s->kind) {
    case PT_SCHED_CONSTANT: return s->lr;
    case PT_SCHED_STEP:
        return s->step_every > 0 ? s->lr * pow(s->gamma, (double)(step / s->step_every)) : s->lr;
    case PT_SCHED_COSINE: {
        int64_t span = s->total_steps - s->warmup_steps;
        if (span <= 0) return s->lr;
        double pct = (double)(step - s->warmup_steps) / (double)span;
        if (pct > 1.0) pct = 1.0;
        return cos_anneal(s->lr, 0.0, pct);
    }
    case PT_SCHED_ONECYCLE: break;
    }
    return s->lr;
}
