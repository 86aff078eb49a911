/* The caching device allocator of the cuda backend (see cuda_alloc.h): a size-sorted free
 * list in front of the device's allocate/release callbacks. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cuda/cuda_alloc.h"

size_t pt_cuda_alloc_round(size_t bytes)
{
    if (bytes == 0) return 512;
    if (bytes <= ((size_t)1 << 20)) return (bytes + 511) / 512 * 512;
    size_t p = (size_t)1 << 20;
    while (p <= bytes / 2) p <<= 1; /* p: the largest power of two <= bytes */
    const size_t step = p / 8;
    if (bytes > SIZE_MAX - step) return bytes;
    return (bytes + step - 1) / step * step;
}

void pt_cuda_alloc_init(pt_cuda_alloc *a, const pt_cuda_alloc_ops *ops, const char *name, size_t max_cached)
{
    memset(a, 0, sizeof *a);
    a->ops = *ops;
    strncpy(a->name, name ? name : "device", sizeof a->name - 1);
    a->max_cached = max_cached;
    pthread_mutex_init(&a->lock, NULL);
}

static void release_all_locked(pt_cuda_alloc *a)
{
    for (int i = 0; i < a->nfree; i++) {
        a->ops.release(a->ops.user, a->free_list[i].ptr);
        a->stats.device_releases++;
    }
    a->nfree = 0;
    a->stats.cached_bytes = 0;
}

void pt_cuda_alloc_destroy(pt_cuda_alloc *a)
{
    pthread_mutex_lock(&a->lock);
    release_all_locked(a);
    free(a->free_list);
    a->free_list = NULL;
    a->cap = 0;
    pthread_mutex_unlock(&a->lock);
    pthread_mutex_destroy(&a->lock);
}

void pt_cuda_alloc_trim(pt_cuda_alloc *a)
{
    pthread_mutex_lock(&a->lock);
    release_all_locked(a);
    pthread_mutex_unlock(&a->lock);
}

/* First cached block with bytes >= want. */
static int lower_bound(const pt_cuda_alloc *a, size_t want)
{
    int lo = 0, hi = a->nfree;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (a->free_list[mid].bytes < want) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static void take_locked(pt_cuda_alloc *a, void *ptr, size_t bytes)
{
    a->stats.in_use_bytes += bytes;
    if (a->stats.in_use_bytes > a->stats.peak_bytes) a->stats.peak_bytes = a->stats.in_use_bytes;
    (void)ptr;
}

static double gib(size_t b)
{
    return (double)b / (1024.0 * 1024.0 * 1024.0);
}

pt_status pt_cuda_alloc_get(pt_cuda_alloc *a, size_t bytes, void **ptr, size_t *block_bytes, pt_error *err)
{
    *ptr = NULL;
    const size_t want = pt_cuda_alloc_round(bytes);
    pthread_mutex_lock(&a->lock);
    int i = lower_bound(a, want);
    if (i < a->nfree && a->free_list[i].bytes - want <= want / 8) {
        pt_cuda_block b = a->free_list[i];
        memmove(&a->free_list[i], &a->free_list[i + 1], (size_t)(a->nfree - i - 1) * sizeof *a->free_list);
        a->nfree--;
        a->stats.cached_bytes -= b.bytes;
        a->stats.cache_hits++;
        take_locked(a, b.ptr, b.bytes);
        pthread_mutex_unlock(&a->lock);
        *ptr = b.ptr;
        *block_bytes = b.bytes;
        return PT_OK;
    }
    pt_error why;
    pt_error_clear(&why);
    int oom = 0;
    void *p = a->ops.alloc(a->ops.user, want, &oom, &why);
    if (!p && oom && a->nfree) {
        /* cached blocks of other sizes may be what stands in the way */
        release_all_locked(a);
        a->stats.oom_retries++;
        oom = 0;
        p = a->ops.alloc(a->ops.user, want, &oom, &why);
    }
    if (!p) {
        const size_t in_use = a->stats.in_use_bytes;
        pthread_mutex_unlock(&a->lock);
        if (!oom)
            return pt_fail(err, why.status ? why.status : PT_ERR_BACKEND, "cuda: allocating %zu bytes on %s: %s",
                           bytes, a->name, why.msg);
        size_t fr = 0, total = 0;
        char mem[160] = "";
        if (a->ops.meminfo && a->ops.meminfo(a->ops.user, &fr, &total))
            snprintf(mem, sizeof mem, "; the device has %zu bytes (%.2f GiB) free of %zu (%.2f GiB)", fr, gib(fr),
                     total, gib(total));
        return pt_fail(err, PT_ERR_NOMEM,
                       "cuda: out of device memory on %s: asked for %zu bytes (%.2f GiB, block of %zu); "
                       "polytrain holds %zu bytes (%.2f GiB) in buffers%s. A smaller --batch needs less",
                       a->name, bytes, gib(bytes), want, in_use, gib(in_use), mem);
    }
    a->stats.device_allocs++;
    take_locked(a, p, want);
    pthread_mutex_unlock(&a->lock);
    *ptr = p;
    *block_bytes = want;
    return PT_OK;
}

void pt_cuda_alloc_put(pt_cuda_alloc *a, void *ptr, size_t block_bytes)
{
    if (!ptr) return;
    pthread_mutex_lock(&a->lock);
    a->stats.in_use_bytes -= block_bytes <= a->stats.in_use_bytes ? block_bytes : a->stats.in_use_bytes;
    int keep = a->stats.cached_bytes + block_bytes <= a->max_cached;
    if (keep && a->nfree == a->cap) {
        int cap = a->cap ? 2 * a->cap : 16;
        pt_cuda_block *grown = realloc(a->free_list, (size_t)cap * sizeof *grown);
        if (grown) {
            a->free_list = grown;
            a->cap = cap;
        } else {
            keep = 0;
        }
    }
    if (!keep) {
        a->ops.release(a->ops.user, ptr);
        a->stats.device_releases++;
        pthread_mutex_unlock(&a->lock);
        return;
    }
    int i = lower_bound(a, block_bytes);
    memmove(&a->free_list[i + 1], &a->free_list[i], (size_t)(a->nfree - i) * sizeof *a->free_list);
    a->free_list[i].ptr = ptr;
    a->free_list[i].bytes = block_bytes;
    a->nfree++;
    a->stats.cached_bytes += block_bytes;
    pthread_mutex_unlock(&a->lock);
}

pt_cuda_alloc_stats pt_cuda_alloc_get_stats(pt_cuda_alloc *a)
{
    pthread_mutex_lock(&a->lock);
    pt_cuda_alloc_stats s = a->stats;
    pthread_mutex_unlock(&a->lock);
    return s;
}
