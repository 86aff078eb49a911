/* Memory sharing by live ranges (see liveplan.h): first-fit placement over an interference
 * test, as register allocators and training frameworks' static planners do; the replica
 * plans its activations and its gradients with it.
 * Items are few (one per activation and saved tensor of a net), so the quadratic scan is
 * cheap next to the memory it saves. */
#include <stdlib.h>

#include "core/liveplan.h"

void pt_live_touch(pt_live_item *it, int line, long pos)
{
    if (it->first[line] > it->last[line]) {
        it->first[line] = it->last[line] = pos;
        return;
    }
    if (pos < it->first[line]) it->first[line] = pos;
    if (pos > it->last[line]) it->last[line] = pos;
}

static int interferes(const pt_live_item *a, const pt_live_item *b)
{
    for (int l = 0; l < PT_LIVE_TIMELINES; l++) {
        if (a->first[l] > a->last[l] || b->first[l] > b->last[l]) continue;
        if (a->first[l] <= b->last[l] && b->first[l] <= a->last[l]) return 1;
    }
    return 0;
}

/* sort keys carried with the index: qsort has no context argument */
typedef struct order_key {
    int unused;  /* not used in sequence 0: placed after the others */
    long first;  /* first use in sequence 0 */
    size_t size; /* bytes, or the offset when sorting placed items */
    int index;
} order_key;

static int by_first_use(const void *pa, const void *pb)
{
    const order_key *a = pa, *b = pb;
    if (a->unused != b->unused) return a->unused - b->unused;
    if (!a->unused && a->first != b->first) return a->first < b->first ? -1 : 1;
    if (a->unused && a->size != b->size) return a->size > b->size ? -1 : 1;
    return a->index - b->index;
}

static int by_offset(const void *pa, const void *pb)
{
    const order_key *a = pa, *b = pb;
    if (a->size != b->size) return a->size < b->size ? -1 : 1;
    return a->index - b->index;
}

/* First fit of the items in `order`: each at the lowest offset where it overlaps no placed
 * item it interferes with. Writes the offsets; returns the region's size. */
static size_t place(pt_live_item *items, const order_key *order, int n, order_key *near)
{
    size_t end = 0;
    for (int k = 0; k < n; k++) {
        pt_live_item *it = &items[order[k].index];
        int m = 0;
        for (int j = 0; j < k; j++) {
            const pt_live_item *o = &items[order[j].index];
            if (o->bytes && interferes(it, o)) near[m++] = (order_key){0, 0, o->off, order[j].index};
        }
        qsort(near, (size_t)m, sizeof *near, by_offset);
        size_t at = 0;
        for (int j = 0; j < m; j++) {
            const pt_live_item *o = &items[near[j].index];
            if (o->off >= at + it->bytes) break;
            if (o->off + o->bytes > at) at = o->off + o->bytes;
        }
        it->off = at;
        if (at + it->bytes > end) end = at + it->bytes;
    }
    return end;
}

static int by_size(const void *pa, const void *pb)
{
    const order_key *a = pa, *b = pb;
    if (a->size != b->size) return a->size > b->size ? -1 : 1;
    return a->index - b->index;
}

size_t pt_live_assign(pt_live_item *items, int n)
{
    if (n <= 0) return 0;
    order_key *order = malloc((size_t)n * sizeof *order), *near = malloc((size_t)n * sizeof *near);
    size_t *first_fit = malloc((size_t)n * sizeof *first_fit);
    if (!order || !near || !first_fit) {
        free(order), free(near), free(first_fit);
        return (size_t)-1;
    }
    /* Two orders, the smaller region kept: by first use (what a stack allocator would do)
     * and biggest first (large ranges placed before small ones can fragment them) */
    for (int i = 0; i < n; i++)
        order[i] = (order_key){items[i].first[0] > items[i].last[0], items[i].first[0], items[i].bytes, i};
    qsort(order, (size_t)n, sizeof *order, by_first_use);
    size_t end = place(items, order, n, near);
    for (int i = 0; i < n; i++) first_fit[i] = items[i].off;
    qsort(order, (size_t)n, sizeof *order, by_size);
    size_t end2 = place(items, order, n, near);
    if (end2 >= end) {
        for (int i = 0; i < n; i++) items[i].off = first_fit[i];
    } else {
        end = end2;
    }
    free(order), free(near), free(first_fit);
    return end;
}
