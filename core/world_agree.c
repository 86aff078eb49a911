/* Start-of-run agreement between ranks (see world_agree.h): rank 0's values are broadcast
 * in a buffer of fixed size, each rank compares, and the per-item counts of disagreeing
 * ranks are summed, so that every rank knows the whole picture and fails with it. */
#include "core/world_agree.h"

#include <stdio.h>
#include <string.h>

uint64_t pt_agree_digest(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static void show(char *buf, size_t n, const pt_agree_item *it, int64_t v)
{
    if (it->kind == PT_AGREE_REAL) {
        double d;
        memcpy(&d, &v, sizeof d);
        snprintf(buf, n, "%.9g", d);
    } else if (it->kind == PT_AGREE_DIGEST) {
        snprintf(buf, n, "digest %016llx", (unsigned long long)v);
    } else {
        snprintf(buf, n, "%lld", (long long)v);
    }
}

pt_status pt_world_agree(const pt_world *w, const pt_agree_item *items, int n, pt_error *err)
{
    if (!w || w->size < 2) return PT_OK;
    if (n < 0 || n > PT_AGREE_MAX) return pt_fail(err, PT_ERR_INVALID, "pt_world_agree: %d items", n);
    int64_t root[PT_AGREE_MAX + 1];
    memset(root, 0, sizeof root);
    root[0] = n;
    for (int i = 0; i < n; i++) root[i + 1] = items[i].value;
    PT_TRY(w->broadcast(w->ctx, root, sizeof root, 0, err));
    double differ[PT_AGREE_MAX + 1];
    memset(differ, 0, sizeof differ);
    differ[0] = root[0] != n;
    for (int i = 0; i < n; i++) differ[i + 1] = root[0] == n && root[i + 1] != items[i].value;
    PT_TRY(w->allreduce_sum_f64(w->ctx, differ, PT_AGREE_MAX + 1, err));
    int any = differ[0] > 0;
    for (int i = 0; i < n; i++) any |= differ[i + 1] > 0;
    if (!any) return PT_OK;
    char msg[1800];
    size_t len = 0;
    int mine = 0;
#define ADD(...)                                                                                                       \
    do {                                                                                                               \
        if (len < sizeof msg) len += (size_t)snprintf(msg + len, sizeof msg - len, __VA_ARGS__);                       \
    } while (0)
    if (differ[0] > 0) ADD("the ranks run different program versions");
    for (int i = 0; root[0] == n && i < n; i++) {
        if (!(differ[i + 1] > 0) || root[i + 1] == items[i].value) continue;
        char a[48], b[48];
        show(a, sizeof a, &items[i], items[i].value);
        show(b, sizeof b, &items[i], root[i + 1]);
        ADD("%s%s: %s here, %s on rank 0", mine++ || differ[0] > 0 ? "; " : "", items[i].what, a, b);
    }
    int others = 0;
    for (int i = 0; root[0] == n && i < n; i++) {
        if (!(differ[i + 1] > 0) || root[i + 1] != items[i].value) continue;
        char a[48];
        show(a, sizeof a, &items[i], items[i].value);
        ADD("%s%s (%s here and on rank 0) differs on %.0f other rank%s", mine || others || differ[0] > 0 ? "; " : "",
            items[i].what, a, differ[i + 1], differ[i + 1] == 1 ? "" : "s");
        others++;
    }
#undef ADD
    return pt_fail(err, PT_ERR_MISMATCH,
                   "the %d processes of this run do not agree on what to train (each must load the same data with "
                   "the same options): %s",
                   w->size, msg);
}
