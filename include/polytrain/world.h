/* The process world: this process's place among the processes of one training run
 * (1 of 1 without MPI; rank r of K under mpirun). core/ never includes mpi.h: an MPI
 * build fills this table (comm/ or wherever the MPI glue lives) and the core only calls
 * through it. Collectives over host memory; backends with their own transport (NCCL)
 * use broadcast() to bootstrap it. */
#ifndef PT_WORLD_H
#define PT_WORLD_H

#include <stddef.h>

#include "polytrain/status.h"

typedef struct pt_world {
    int rank; /* 0-based rank of this process */
    int size; /* number of processes; 1 = no other process, every function may be NULL */
    void *ctx;
    /* In-place element-wise sum of n float32s over every rank (host memory). */
    pt_status (*allreduce_sum_f32)(void *ctx, float *buf, size_t n, pt_error *err);
    /* In-place element-wise sum of n doubles over every rank (metrics, counts). */
    pt_status (*allreduce_sum_f64)(void *ctx, double *buf, size_t n, pt_error *err);
    /* Copies `bytes` at buf on rank `root` to buf on every rank. */
    pt_status (*broadcast)(void *ctx, void *buf, size_t bytes, int root, pt_error *err);
    pt_status (*barrier)(void *ctx, pt_error *err);
    /* Ends every rank of the run (after printing msg on this one); does not return. */
    void (*abort)(void *ctx, int code, const char *msg);
} pt_world;

/* The world of a single process: rank 0 of 1, no functions. */
pt_world pt_world_single(void);

#endif
