/* The loss scale's update rule (PyTorch's _amp_update_scale_): halve on overflow, double
 * after growth_interval clean steps unless that overflows float32. */
#include <math.h>

#include "polytrain/loss_scale.h"

void pt_loss_scaler_init(pt_loss_scaler *s)
{
    s->scale = 65536.0;
    s->growth_tracker = 0;
    s->growth_interval = 2000;
    s->growth_factor = 2.0;
    s->backoff_factor = 0.5;
    s->skipped = 0;
}

int pt_loss_scaler_update(pt_loss_scaler *s, int found_inf)
{
    if (found_inf) {
        s->scale *= s->backoff_factor;
        s->growth_tracker = 0;
        s->skipped++;
        return 1;
    }
    if (++s->growth_tracker < s->growth_interval) return 0;
    s->growth_tracker = 0;
    const double grown = s->scale * s->growth_factor;
    if (!isfinite((float)grown)) return 0;
    s->scale = grown;
    return 1;
}
