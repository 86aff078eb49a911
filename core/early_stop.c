/* Early stopping's rule (see early_stop.h). */
#include "core/early_stop.h"

void pt_early_stop_init(pt_early_stop *es)
{
    es->best = -1;
    es->wait = 0;
}

int pt_early_stop_update(pt_early_stop *es, double value, double min_delta, int patience)
{
    if (value > es->best + min_delta) {
        es->best = value;
        es->wait = 0;
    } else {
        es->wait++;
    }
    return patience > 0 && es->wait >= patience;
}
