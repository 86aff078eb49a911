/* Dynamic loss scaling for fp16 training, as PyTorch's GradScaler: the loss gradient is
 * multiplied by `scale` so that small gradients survive fp16's exponent range; before each
 * update the gradients are divided by it again and checked (PT_OP_AMP_UNSCALE). A step whose
 * gradients hold Inf or NaN is skipped and the scale halved; after `growth_interval` clean
 * steps in a row it doubles. The state is saved with the optimizer, so a resumed run
 * continues bitwise. */
#ifndef PT_LOSS_SCALE_H
#define PT_LOSS_SCALE_H

#include <stdint.h>

typedef struct pt_loss_scaler {
    double scale;            /* 2^16 at the start; always a power of two */
    int64_t growth_tracker;  /* clean steps since the last change */
    int64_t growth_interval; /* 2000 */
    double growth_factor;    /* 2 */
    double backoff_factor;   /* 0.5 */
    int64_t skipped;         /* steps skipped over the run */
} pt_loss_scaler;

/* PyTorch's defaults: scale 65536, x2 after 2000 clean steps, x0.5 on overflow. */
void pt_loss_scaler_init(pt_loss_scaler *s);
/* After a step: found_inf 1 when its gradients held Inf/NaN (the update was skipped).
 * Returns 1 when the scale changed. */
int pt_loss_scaler_update(pt_loss_scaler *s, int found_inf);

#endif
