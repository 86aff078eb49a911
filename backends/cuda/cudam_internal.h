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
#include "core/backend.h"

/* Device memory: a block of the device's caching allocator; views add pt_mem.off. */
struct pt_buffer {
    void *ptr;
    size_t bytes; /* asked for */
    size_t block; /* held (allocator's rounding) */
};

/* The kernels of backends/kernels (ops.cl, ops_mixup.cl, ops_zoo.cl) the module launches, looked up by name at open. */
typedef enum cu_kernel_id {
    CU_K_FILL,
    CU_K_SCALE,
    CU_K_AXPY,
    CU_K_ADD,
    CU_K_BIAS_ADD,
    CU_K_BIAS_GRAD,
    CU_K_RELU_FWD,
    CU_K_RELU_BWD,
    CU_K_DROPOUT_FWD,
    CU_K_MUL_ACC,
    CU_K_BN_FWD_TRAIN,
    CU_K_BN_FWD_EVAL,
    CU_K_BN_BWD,
    CU_K_BN_SYNC_STATS,
    CU_K_BN_SYNC_FWD,
    CU_K_BN_SYNC_BWD_STATS,
    CU_K_BN_SYNC_BWD,
    CU_K_MAXPOOL_FWD,
    CU_K_MAXPOOL_BWD,
    CU_K_GAP_FWD,
    CU_K_GAP_BWD,
    CU_K_XENT,
    CU_K_XENT_MIX, /* ops_mixup.cl */
    CU_K_SGD,
    CU_K_ADAM,
    CU_K_RMSPROP,
    CU_K_IM2COL,
    CU_K_COL2IM,
    CU_K_GATHER_GROUPS,
    CU_K_SCATTER_GROUPS,
    /* ops_zoo.cl */
    CU_K_BCAST_MUL,
    CU_K_BCAST_MUL_GRAD_CHANNEL,
    CU_K_BCAST_MUL_GRAD_PIXEL,
    CU_K_SIGMOID_FWD,
    CU_K_SIGMOID_BWD,
    CU_K_GMP_FWD,
    CU_K_GMP_BWD,
    CU_K_CHANNEL_POOL_FWD,
    CU_K_CHANNEL_POOL_BWD,
    CU_K_COUNT
} cu_kernel_id;

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
    cudaKernel_t k[CU_K_COUNT];
    /* each kernel's parameter sizes as compiled (cudaFuncGetParamInfo at open; nparams -1:
     * unknown), so a launch whose arguments do not match fails with both lists */
    int knparams[CU_K_COUNT];
    unsigned char ksizes[CU_K_COUNT][32];
    pt_cuda_alloc alloc;
    /* pinned host staging: two halves, each reusable once its event has completed */
    void *staging[2];
    cudaEvent_t staged[2];
    int next_half;
    int deterministic, tf32, conv_benchmark;
    size_t ws_cap; /* largest convolution workspace a plan may ask for */
    pt_algo_cache convs;
    pt_algo_cache bns; /* batch-norm descriptors per shape (cudam_bn.c) */
} cu_device;

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
#define CU_MAX_ARGS 32
typedef struct cu_launch {
    cu_device *d;
    cu_kernel_id id;
    int n;
    void *argp[CU_MAX_ARGS];
    unsigned char size[CU_MAX_ARGS]; /* bytes of each argument as passed */
    /* argument storage: every value lives in one 8-byte slot */
    union {
        int32_t i;
        uint32_t u;
        float f;
        int64_t l;
        uint64_t ul;
        void *p;
    } slot[CU_MAX_ARGS];
} cu_launch;

void cu_kernel(cu_launch *l, cu_device *d, cu_kernel_id id);
void kl_mem(cu_launch *l, pt_mem m); /* two arguments: the base pointer and the element offset */
void kl_tensor(cu_launch *l, const pt_tensor *t);
void kl_int(cu_launch *l, int v);
void kl_float(cu_launch *l, float v);
void kl_long(cu_launch *l, int64_t v);
void kl_ulong(cu_launch *l, uint64_t v);
void kl_uint(cu_launch *l, uint32_t v);
/* Launches over `items` threads (blocks of `block` threads; 0 = 256). */
pt_status kl_run(cu_launch *l, size_t items, int block, pt_error *err);
/* Over `groups` blocks of `block` threads each (the per-channel reductions). */
pt_status kl_run_groups(cu_launch *l, size_t groups, int block, pt_error *err);
const char *cu_kernel_name(cu_kernel_id id);
/* Reads every kernel's parameter sizes (for the launch check). */
void cu_kernel_signatures(cu_device *d);

/* Device address of a pt_mem. */
static inline float *cu_f32(pt_mem m)
{
    return (float *)((char *)m.buf->ptr + m.off);
}

/* ---- ops ---- */
pt_status cu_op_gemm(cu_device *d, const pt_op *op, pt_error *err);
pt_status cu_sgemm_rowmajor(cu_device *d, int ta, int tb, size_t m, size_t n, size_t k, float alpha, const float *a,
                            size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc, pt_error *err);
pt_status cu_op_elementwise(cu_device *d, const pt_op *op, pt_error *err);
pt_status cu_op_channel(cu_device *d, const pt_op *op, pt_error *err);
/* The model zoo's ops (cudam_zoo.c). */
pt_status cu_op_zoo(cu_device *d, const pt_op *op, pt_error *err);
size_t cu_conv_workspace(cu_device *d, const pt_op *op);
pt_status cu_op_conv2d(cu_device *d, const pt_op *op, pt_error *err);
void cu_conv_cache_free(cu_device *d);
/* cuDNN batch norm for the cases it handles (no aliasing); PT_ERR_UNSUPPORTED otherwise. */
int cu_bn_cudnn_applies(const pt_op *op);
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
