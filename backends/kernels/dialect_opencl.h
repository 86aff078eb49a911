/* The kernel dialect, OpenCL C flavour: the macros every kernel body under backends/kernels uses
 * instead of OpenCL builtins, so that a CUDA twin (dialect_cuda.h) compiles the same bodies.
 * Prepended to the kernel sources at program build time; it must stay plain OpenCL C 1.2. */

/* Bitwise parity with the cpu oracle (compiled in ISO C mode, no contraction) in the
 * optimizers and elementwise ops: never fuse a*b+c into an FMA behind our back. */
#pragma OPENCL FP_CONTRACT OFF

#define KERNEL __kernel
#define GLOBAL __global
#define LOCAL __local
/* A pointer parameter to LOCAL memory (CUDA has no address-space qualifier on parameters). */
#define LOCAL_PTR __local
/* A kernel's pointer parameter that no other parameter's memory overlaps: lets the compiler
 * vectorise across work-items (PoCL) without runtime alias checks. */
#define RESTRICT restrict
#define DEVFN static inline
/* A kernel body shared by a float32 kernel and its 16-bit twin (act16.cl): always inlined, so
 * that the float32 kernel's constant storage codes fold its 16-bit branches away. */
#define DEVFN_INLINE static inline __attribute__((always_inline))

#define GID(i) ((long)get_global_id(i))
#define LID(i) ((int)get_local_id(i))
#define GROUP_ID(i) ((int)get_group_id(i))
#define LSIZE(i) ((int)get_local_size(i))
#define NGROUPS(i) ((int)get_num_groups(i))
#define BARRIER() barrier(CLK_LOCAL_MEM_FENCE)

typedef uint pt_u32;
typedef ulong pt_u64;
typedef long pt_i64;
typedef ushort pt_u16;

#define EXPF(x) exp(x)
#define LOGF(x) log(x)
#define SQRTF(x) sqrt(x)
/* a*b + c rounded once, where a kernel wants the fused form on purpose (FP_CONTRACT is off) */
#define FMAF(a, b, c) fma(a, b, c)
#define ISNAN(x) isnan(x)
#define INF_F INFINITY
#define MUL_HI_U32(a, b) mul_hi((pt_u32)(a), (pt_u32)(b))
/* The bits of a float and back (reduced-precision conversions, ops_cast.cl). */
#define F32_BITS(x) as_uint(x)
#define F32_FROM_BITS(u) as_float((pt_u32)(u))

/* Work-group size of the per-channel reductions: a power of two set by the host through
 * -DPT_RED_WG (at most the device's limit); 256 when built without it. */
#ifndef PT_RED_WG
#define PT_RED_WG 256
#endif
