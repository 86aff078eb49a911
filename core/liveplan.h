/* Memory sharing by live ranges: places buffers in one region so that two of them overlap
 * only when they are never in use at the same time. A buffer's use is an interval of op
 * positions, in up to PT_LIVE_TIMELINES op sequences that run separately (the replica's
 * training step and its evaluation pass): two buffers may share bytes only when their
 * intervals are disjoint in every sequence. */
#ifndef PT_LIVEPLAN_H
#define PT_LIVEPLAN_H

#include <stddef.h>

#define PT_LIVE_TIMELINES 2

typedef struct pt_live_item {
    size_t bytes;                  /* already aligned as the caller needs */
    long first[PT_LIVE_TIMELINES]; /* first and last position that touches it; */
    long last[PT_LIVE_TIMELINES];  /* first > last: not used in that sequence */
    size_t off;                    /* out: byte offset in the region */
} pt_live_item;

/* Marks position pos of sequence line as a use of the item. */
void pt_live_touch(pt_live_item *it, int line, long pos);
/* Assigns every item's offset: each at the lowest gap that holds it, items taken once in
 * order of first use in sequence 0 and once biggest first, the smaller region kept.
 * Offsets are multiples of an alignment every size is a multiple of. Returns the region's
 * size; (size_t)-1 when out of host memory. */
size_t pt_live_assign(pt_live_item *items, int n);

#endif
