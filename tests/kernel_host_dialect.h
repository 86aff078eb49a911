/* The kernel dialect as plain C, for tests only: compiles backends/kernels/<name>.cl bodies on
 * the host and runs a launch as a loop over the global index (one item per work-group, so
 * PT_RED_WG is 1 and the per-channel reductions are sequential), to check a kernel's
 * arithmetic against the cpu backend on machines with neither GPU nor OpenCL driver. */
#ifndef PT_KERNEL_HOST_DIALECT_H
#define PT_KERNEL_HOST_DIALECT_H

#include <math.h>
#include <stdint.h>

#include "core/half.h"

#define KERNEL __attribute__((unused)) static
#define GLOBAL
#define LOCAL
#define LOCAL_PTR
#define RESTRICT restrict
#define DEVFN __attribute__((unused)) static inline
#define DEVFN_INLINE __attribute__((unused)) static inline

static long pt_h_gid;  /* the item being run */
static int pt_h_group; /* its work-group (= the item: groups of one) */
#define GID(i) ((void)(i), pt_h_gid)
#define LID(i) ((void)(i), 0)
#define GROUP_ID(i) ((void)(i), pt_h_group)
#define LSIZE(i) ((void)(i), 1)
#define NGROUPS(i) ((void)(i), 1)
#define BARRIER() ((void)0)

typedef uint32_t pt_u32;
typedef uint64_t pt_u64;
typedef int64_t pt_i64;
typedef uint16_t pt_u16;

/* the bit casts of core/half.h, which the host-side conversions use too */
#define F32_BITS(x) pt_f32_bits(x)
#define F32_FROM_BITS(u) pt_f32_from_bits((pt_u32)(u))

#define EXPF(x) expf(x)
#define LOGF(x) logf(x)
#define SQRTF(x) sqrtf(x)
#define FMAF(a, b, c) fmaf(a, b, c)
#define ISNAN(x) isnan(x)
#define INF_F INFINITY
#define MUL_HI_U32(a, b) ((pt_u32)(((uint64_t)(pt_u32)(a) * (uint64_t)(pt_u32)(b)) >> 32))
#define PT_RED_WG 1

/* Runs `call` (a kernel call expression) for items 0..n-1. */
#define PT_HOST_LAUNCH(n, call)                                                          \
    do {                                                                                 \
        for (pt_h_gid = 0; pt_h_gid < (long)(n); pt_h_gid++) {                           \
            pt_h_group = (int)pt_h_gid;                                                  \
            call;                                                                        \
        }                                                                                \
    } while (0)

#endif
