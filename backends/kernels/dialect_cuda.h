/* The kernel dialect, CUDA flavour: the twin of dialect_opencl.h, so that the kernel bodies
 * under backends/kernels/<name>.cl compile unchanged with nvcc (as CUDA C++). The cuda backend's
 * build includes this header, then philox.h, then every backends/kernels/<name>.cl file in name
 * order into one translation unit (backends/cuda/CMakeLists.txt), as the opencl backend
 * builds them into one program. Kernels are extern "C" so the host finds them by name.
 * FP contraction is off by nvcc's --fmad=false (the dialect's FP_CONTRACT OFF).
 * Rules for kernel files, so that both dialects compile them: only the macros and types
 * below (no OpenCL or CUDA builtin, no vector types, no atomics), 1-D launches, LOCAL_PTR
 * (not LOCAL) on a pointer parameter to work-group memory, and valid C++ (nvcc compiles
 * the bodies as CUDA C++: no implicit void* conversions, no `restrict`). */
#ifndef PT_DIALECT_CUDA_H
#define PT_DIALECT_CUDA_H

#include <math.h>

#define KERNEL extern "C" __global__
#define GLOBAL
#define LOCAL __shared__
/* CUDA puts no address-space qualifier on a parameter: a __shared__ array decays to a
 * generic pointer that the compiler resolves. */
#define LOCAL_PTR
#define RESTRICT __restrict__
#define DEVFN static __device__ __forceinline__
#define DEVFN_INLINE static __device__ __forceinline__

/* Every kernel of the dialect is launched on a 1-D grid; dimension 0 is x. */
static __device__ __forceinline__ long pt_d_gid(int d)
{
    return d == 0 ? (long)blockIdx.x * (long)blockDim.x + (long)threadIdx.x : 0L;
}
#define GID(i) pt_d_gid(i)
#define LID(i) ((i) == 0 ? (int)threadIdx.x : 0)
#define GROUP_ID(i) ((i) == 0 ? (int)blockIdx.x : 0)
#define LSIZE(i) ((i) == 0 ? (int)blockDim.x : 1)
#define NGROUPS(i) ((i) == 0 ? (int)gridDim.x : 1)
#define BARRIER() __syncthreads()

typedef unsigned int pt_u32;
typedef unsigned long long pt_u64;
typedef long long pt_i64;
typedef unsigned short pt_u16;

#define EXPF(x) expf(x)
#define LOGF(x) logf(x)
#define SQRTF(x) sqrtf(x)
#define FMAF(a, b, c) fmaf(a, b, c)
#define ISNAN(x) isnan(x)
#define INF_F __int_as_float(0x7f800000)
#define MUL_HI_U32(a, b) __umulhi((pt_u32)(a), (pt_u32)(b))
#define F32_BITS(x) __float_as_uint(x)
#define F32_FROM_BITS(u) __uint_as_float((pt_u32)(u))
#ifndef NAN
#define NAN __int_as_float(0x7fffffff)
#endif
#ifndef INFINITY
#define INFINITY INF_F
#endif

/* Block size of the per-channel reductions: every CUDA device allows 256 threads. */
#ifndef PT_RED_WG
#define PT_RED_WG 256
#endif

#endif
