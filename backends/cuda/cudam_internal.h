/* Private to the cuda module (backends/cuda/cudam_*.c, built into libpolytrain_cuda.so):
 * buffer, backend and device contexts, the error checks of the CUDA runtime, cuBLAS and
 * cuDNN, the kernel launcher and the op entry points. */
#ifndef PT_CUDAM_INTERNAL_H
#define PT_CUDAM_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include "backends/cuda/cuda_algo_cache.h"
#include "backends/cuda/cuda_alloc.h"
#include "backends/cuda/cuda_precision.h"
#include "backends/kernels/kernel_ops.h"
#include "polytrain/backend.h"

/* Device memory: a block of the device's caching allocator; views add pt_mem.off. */
struct pt_buffer {
    void *ptr;
    size_t bytes; /* asked for */
    size_t block; /* held (allocator's rounding) */
};

typedef struct cu_device_entry {
    char name[120];
    int major, minor, sms;
    size_t total_mem;
    char pci[32];
} cu_device_entry;

/* NCCL, dlopen()ed on the first group (cudam_nccl.c). */
typedef struct cu_nccl cu_nccl;

typedef struct cu_backend {
    pthread_mutex_t lock;
    int count;
    cu_device_entry *dev;
    int driver_version, runtime_version;
    size_t cudnn_version;
    int cublas_version;
    cu_nccl *nccl;
    char nccl_error[1024];
} cu_backend;

#define CU_STAGING_BYTES ((size_t)8 << 20)
#define CU_FENCES 16

typedef struct cu_device {
    cu_backend *be;
    int ordinal;
    const cu_device_entry *info;
    cudaStream_t stream;
    cublasHandle_t cublas;
    cudnnHandle_t cudnn;
    void *cublas_ws;
    size_t cublas_ws_bytes;
    cudaLibrary_t lib;
    cudaKernel_t k[PT_K_COUNT]; /* every kernel of backends/kernels/kernel_table.h */
    /* each kernel's parameter sizes as compiled (cudaFuncGetParamInfo at open; nparams -1:
     * unknown), so a launch whose arguments do not match fails with both lists */
    int knparams[PT_K_COUNT];
    unsigned char ksizes[PT_K_COUNT][32];
    pt_cuda_alloc alloc;
    /* pinned host staging: two halves, each reusable once its event has completed */
    void *staging[2];
    cudaEvent_t staged[2];
    int next_half;
    int deterministic, conv_benchmark;
    unsigned math_caps; /* PT_CAP_MATH bits of its compute capability (cuda_precision.h) */
    unsigned act16_caps; /* PT_CAP_ACT16 bits, likewise */
    int act16_copy;      /* PT_CUDA_ACT16=copy: every 16-bit operand through float32 copies */
    size_t ws_cap; /* largest convolution workspace a plan may ask for */
    pt_algo_cache convs;
    pt_algo_cache bns; /* batch-norm descriptors per shape (cudam_bn.c) */
    /* pinned input (cudam_graph.c): asynchronous copies on a stream of their own, each
     * fence an event recorded after its copy (a ring: a reused event is a later fence of the
     * same stream, so waiting on it waits at least as long) */
    cudaStream_t copy_stream;
    cudaEvent_t fences[CU_FENCES];
    uint64_t next_fence;
    /* compute_fence: events recorded on the compute stream (a ring like fences), which the
     * copy stream waits on before a copy into memory the ops before them read */
    cudaEvent_t reads[CU_FENCES];
    uint64_t next_read;
    int capturing; /* between graph_begin and graph_end */
} cu_device;

/* ---- graph capture and pinned input (cudam_graph.c) ---- */
int cu_graph_capable(void *dev_ctx, char *why, size_t cap);
pt_status cu_graph_begin(void *dev_ctx, pt_error *err);
pt_status cu_graph_end(void *dev_ctx, void **graph, pt_error *err);
pt_status cu_graph_launch(void *dev_ctx, void *graph, pt_error *err);
void cu_graph_free(void *dev_ctx, void *graph);
int cu_pinned_capable(void *dev_ctx);
pt_status cu_host_alloc(void *dev_ctx, size_t bytes, void **ptr, pt_error *err);
void cu_host_free(void *dev_ctx, void *ptr);
pt_status cu_write_async(void *dev_ctx, pt_mem dst, const void *src, size_t bytes, uint64_t *fence, pt_error *err);
pt_status cu_write_fence_wait(void *dev_ctx, uint64_t fence, int host, pt_error *err);
pt_status cu_compute_fence(void *dev_ctx, uint64_t *fence, pt_error *err);
pt_status cu_copy_wait(void *dev_ctx, uint64_t fence, pt_error *err);
/* The copy stream and its events (open_parts), and their release. */
pt_status cu_copy_queue_open(cu_device *d, pt_error *err);
void cu_copy_queue_close(cu_device *d);

/* ---- errors (cudam_errors.c) ---- */
pt_status cu_fail_cuda(pt_error *err, cudaError_t rc, const char *call, const char *file, int line);
pt_status cu_fail_cublas(pt_error *err, cublasStatus_t rc, const char *call, const char *file, int line);
pt_status cu_fail_cudnn(pt_error *err, cudnnStatus_t rc, const char *call, const char *file, int line);
const char *cu_cublas_status_name(cublasStatus_t rc);

#define CU_CHECK(call, err)                                                                  \
    do {                                                                                     \
        cudaError_t cu_rc_ = (call);                                                         \
        if (cu_rc_ != cudaSuccess) return cu_fail_cuda((err), cu_rc_, #call, __FILE__, __LINE__); \
    } while (0)
#define CUBLAS_CHECK(call, err)                                                              \
    do {                                                                                     \
        cublasStatus_t cu_rc_ = (call);                                                      \
        if (cu_rc_ != CUBLAS_STATUS_SUCCESS) return cu_fail_cublas((err), cu_rc_, #call, __FILE__, __LINE__); \
    } while (0)
#define CUDNN_CHECK(call, err)                                                               \
    do {                                                                                     \
        cudnnStatus_t cu_rc_ = (call);                                                       \
        if (cu_rc_ != CUDNN_STATUS_SUCCESS) return cu_fail_cudnn((err), cu_rc_, #call, __FILE__, __LINE__); \
    } while (0)

/* ---- kernel launches (cudam_launch.c) ---- */
/* The device as the shared kernel layer sees it (backends/kernels/kernel_ops.h): launches on
 * its stream, cuBLAS's SGEMM (fp32 or TF32) and 16-bit GEMM (bf16, fp16), the im2col scratch
 * bound. */
pt_kdev cu_kdev(cu_device *d);
/* Queues one shared-kernel call on the stream (256-thread blocks over the items, or one block
 * of PT_RED_WG threads per channel), after comparing its argument sizes with the compiled
 * kernel's parameters. */
pt_status cu_launch_call(cu_device *d, const pt_kcall *c, pt_error *err);
/* Reads every kernel's parameter sizes (for the launch check). */
void cu_kernel_signatures(cu_device *d);

/* Device address of a pt_mem. */
static inline float *cu_f32(pt_mem m)
{
    return (float *)((char *)m.buf->ptr + m.off);
}
static inline void *cu_ptr(pt_mem m)
{
    return (char *)m.buf->ptr + m.off;
}

/* ---- ops the module runs with its own libraries; the rest go through the shared layer ---- */
/* Row-major C = alpha*op(A)*op(B) + beta*C through column-major cuBLAS: math PT_PREC_FP32
 * (cublasSgemm, the handle's default math: no TF32) or PT_PREC_TF32 (cublasGemmEx with
 * CUBLAS_COMPUTE_32F_FAST_TF32), chosen per call. */
pt_status cu_sgemm_rowmajor(cu_device *d, pt_precision math, int ta, int tb, size_t m, size_t n, size_t k, float alpha,
                            const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc,
                            pt_error *err);
/* The same with A and B bfloat16 (math PT_PREC_BF16) or half (PT_PREC_FP16) and C float32:
 * cublasGemmEx, CUBLAS_COMPUTE_32F (float32 accumulation on the tensor cores). */
pt_status cu_gemm16_rowmajor(cu_device *d, pt_precision math, int ta, int tb, size_t m, size_t n, size_t k,
                             float alpha, const void *a, size_t lda, const void *b, size_t ldb, float beta, float *c,
                             size_t ldc, pt_error *err);
/* cuDNN convolutions in the op's math mode, or the shared im2col path for shapes (and modes)
 * cuDNN refuses. */
size_t cu_conv_workspace(cu_device *d, const pt_op *op);
pt_status cu_op_conv2d(cu_device *d, const pt_op *op, pt_error *err);
void cu_conv_cache_free(cu_device *d);
/* cuDNN batch norm for the cases it handles (no aliasing); PT_ERR_UNSUPPORTED otherwise. */
int cu_bn_cudnn_applies(const pt_op *op);
/* The workspace cuDNN's batch norm needs (a 16-bit x of the backward widened, the persistent
 * mode's scratch and the fused ReLU's reserve), 0 for none; the backend reserves at least the
 * shared kernels' too, in case cuDNN refuses a type or layout. */
size_t cu_bn_workspace(cu_device *d, const pt_op *op);
pt_status cu_op_bn_cudnn(cu_device *d, const pt_op *op, pt_error *err);
void cu_bn_cache_free(cu_device *d);

/* ---- collectives (cudam_nccl.c) ---- */
pt_status cu_group_open(void *backend_ctx, void *const *dev_ctxs, int ndev, const pt_world *world, void **group,
                        pt_error *err);
void cu_group_close(void *group);
pt_status cu_group_allreduce_f32(void *group, const pt_mem *bufs, size_t count, pt_error *err);
pt_status cu_group_broadcast(void *group, const pt_mem *bufs, size_t bytes, pt_error *err);
void cu_nccl_unload(cu_backend *be);

#endif
