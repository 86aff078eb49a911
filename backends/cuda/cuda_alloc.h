/* The cuda backend's caching device allocator, as bookkeeping free of CUDA: blocks come from
 * and go back to callbacks (cudaMalloc/cudaFree in the module, host memory in the tests).
 * A freed buffer's block is kept for the next request of a similar size, so re-planning,
 * evaluation or a checkpoint round trip never reaches cudaMalloc (which synchronises the
 * device), and when the device is out of memory the cache is released and the request
 * retried once before failing with the sizes involved. Thread-safe. */
#ifndef PT_CUDA_ALLOC_H
#define PT_CUDA_ALLOC_H

#include <pthread.h>
#include <stddef.h>

#include "polytrain/status.h"

typedef struct pt_cuda_alloc_ops {
    /* A block of `bytes`; NULL with *oom = 1 when the device is out of memory, NULL with
     * *oom = 0 (and why in err) for any other failure. */
    void *(*alloc)(void *user, size_t bytes, int *oom, pt_error *err);
    void (*release)(void *user, void *ptr);
    /* Free and total device memory, for the out-of-memory message (may be NULL). */
    int (*meminfo)(void *user, size_t *free_bytes, size_t *total_bytes);
    void *user;
} pt_cuda_alloc_ops;

typedef struct pt_cuda_block {
    void *ptr;
    size_t bytes; /* rounded size of the block */
} pt_cuda_block;

typedef struct pt_cuda_alloc_stats {
    size_t in_use_bytes, cached_bytes, peak_bytes;
    long device_allocs, device_releases, cache_hits, oom_retries;
} pt_cuda_alloc_stats;

typedef struct pt_cuda_alloc {
    pt_cuda_alloc_ops ops;
    char name[160]; /* device name for messages */
    size_t max_cached; /* cached bytes kept at most; beyond, freed blocks are released */
    pthread_mutex_t lock;
    pt_cuda_block *free_list; /* sorted by size, ascending */
    int nfree, cap;
    pt_cuda_alloc_stats stats;
} pt_cuda_alloc;

/* Block size for a request: 512-byte granules up to 1 MiB, then eighths of the power of two
 * below (at most 12.5% over the request), so that near sizes share blocks. */
size_t pt_cuda_alloc_round(size_t bytes);
void pt_cuda_alloc_init(pt_cuda_alloc *a, const pt_cuda_alloc_ops *ops, const char *name, size_t max_cached);
/* Releases every cached block; blocks still in use are the caller's to free first. */
void pt_cuda_alloc_destroy(pt_cuda_alloc *a);
/* A block of at least `bytes` (*block_bytes says how many), from the cache when one of a
 * size up to 1/8 larger than the rounded request is there. */
pt_status pt_cuda_alloc_get(pt_cuda_alloc *a, size_t bytes, void **ptr, size_t *block_bytes, pt_error *err);
/* Gives a block back to the cache (or to the device when the cache is full). */
void pt_cuda_alloc_put(pt_cuda_alloc *a, void *ptr, size_t block_bytes);
/* Releases every cached block to the device. */
void pt_cuda_alloc_trim(pt_cuda_alloc *a);
pt_cuda_alloc_stats pt_cuda_alloc_get_stats(pt_cuda_alloc *a);

#endif
