/* Early stopping on a metric that should rise (validation top-1): the rule of Lightning's
 * EarlyStopping(mode="max", min_delta, patience). Pure: the trainer keeps the state in its
 * checkpoints, tests feed it scripted sequences. */
#ifndef PT_EARLY_STOP_H
#define PT_EARLY_STOP_H

#include <stdint.h>

typedef struct pt_early_stop {
    double best;   /* the value to beat (-1 before the first: any value in [0, 1] beats it) */
    int64_t wait;  /* values in a row since best was last beaten */
} pt_early_stop;

void pt_early_stop_init(pt_early_stop *es);
/* Takes the epoch's value: an improvement is value > best + min_delta, which becomes the new
 * best (wait 0); otherwise wait grows. Returns 1 when wait has reached patience (stop). */
int pt_early_stop_update(pt_early_stop *es, double value, double min_delta, int patience);

#endif
