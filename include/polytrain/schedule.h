/* Learning-rate schedules, stepped per optimizer update: constant, step decay, cosine,
 * PyTorch's OneCycleLR, each with an optional linear warmup. A pure function of the step,
 * so resuming needs only the step counter. */
#ifndef PT_SCHEDULE_H
#define PT_SCHEDULE_H

#include <stdint.h>

typedef enum pt_schedule_kind {
    PT_SCHED_CONSTANT = 0,
    PT_SCHED_STEP,
    PT_SCHED_COSINE,
    PT_SCHED_ONECYCLE
} pt_schedule_kind;

typedef struct pt_schedule {
    pt_schedule_kind kind;
    double lr;             /* base (peak for onecycle) learning rate */
    int64_t total_steps;   /* updates in the whole run */
    int64_t warmup_steps;  /* linear warmup from lr/warmup_steps (not onecycle) */
    int64_t step_every;    /* step decay: every this many updates ... */
    double gamma;          /* ... multiply by gamma */
    double pct_start, div_factor, final_div_factor; /* onecycle (PyTorch defaults 0.3, 25, 1e4) */
    int cycle_momentum;    /* onecycle: momentum (SGD) or beta1 (Adam) goes max -> base -> max */
    double base_momentum, max_momentum; /* PyTorch defaults 0.85, 0.95 */
} pt_schedule;

const char *pt_schedule_name(pt_schedule_kind kind);
int pt_schedule_parse(const char *name, pt_schedule_kind *out);
/* Learning rate for the update with 0-based index step. */
double pt_schedule_lr(const pt_schedule *s, int64_t step);
/* Momentum (or Adam's beta1) for that update: the cycled value under onecycle with
 * cycle_momentum, else fixed. */
double pt_schedule_momentum(const pt_schedule *s, int64_t step, double fixed);

#endif
