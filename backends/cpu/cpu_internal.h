/* Private to backends/cpu: the buffer, backend and device contexts and the op kernels'
 * entry points. Nothing outside backends/cpu includes this (tests and benchmarks of this
 * backend excepted); the core sees the backend only through pt_cpu_backend. */
#ifndef PT_CPU_INTERNAL_H
#define PT_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"

/* Host memory, 64-byte aligned, `bytes` usable. */
struct pt_buffer {
    void *data;
    size_t bytes;
};

/* CBLAS enum values (cblas.h), so that no vendor header is needed at build time. */
enum { CPU_CBLAS_ROW_MAJOR = 101, CPU_CBLAS_NO_TRANS = 111, CPU_CBLAS_TRANS = 112 };

/* OpenBLAS, loaded at run time (see cpu_blas.c for why it is never linked). */
typedef struct cpu_blas {
    void *lib;
    char path[256];
    void (*sgemm)(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                  const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
    char *(*get_corename)(void);
    char *(*get_config)(void);
    void (*set_num_threads)(int n);
    int (*get_num_threads)(void);
    int (*get_parallel)(void); /* 0 sequential, 1 pthreads, 2 OpenMP */
    char corename[64];
    char version[32];
    int parallel;
} cpu_blas;

typedef struct cpu_backend {
    cpu_blas blas;
    char cpu_name[128];
    char simd[48];          /* "AVX-512 (bf16)", "AVX2", ... */
    uint64_t memory_bytes;
    int cores;
    int default_threads;
    /* Large buffers on transparent huge pages (see cpu_buffer_alloc): on unless
     * PT_CPU_HUGEPAGES=0. */
    int hugepages;
} cpu_backend;

typedef struct cpu_device {
    const cpu_backend *be;
    int threads;
    /* Convolution plan override for tests and benchmarks (0 = automatic): samples per GEMM
     * group and 1 = groups in parallel with one-thread GEMMs, 2 = groups in turn with threaded
     * GEMMs (both im2col), 3 = Winograd wherever it applies (3x3, stride 1) with per-thread
     * tile chunks, 4 = the same with shared tile blocks (CPU_WINO_SHARED); the group then sets
     * the tiles per chunk or block. */
    int conv_force_group, conv_force_mode;
    /* Winograd F(2x2,3x3) for 3x3 stride-1 convolutions: on unless PT_CPU_WINOGRAD=0 (for
     * comparisons; its normalised error is that of im2col's, see tests/test_cpu_ops.c). */
    int winograd;
} cpu_device;

/* ---- cpu_blas.c ---- */
/* Picks OPENBLAS_CORETYPE from CPUID (unless the user set it) and dlopen()s OpenBLAS. */
pt_status cpu_blas_load(cpu_blas *blas, pt_error *err);
/* The SIMD level this CPU and OS support, for device_info. */
const char *cpu_simd_level(void);
/* The OpenBLAS core type this CPU should use, or NULL to leave OpenBLAS's own choice. */
const char *cpu_blas_coretype_for_cpu(void);
/* Row-major C = alpha*op(A)*op(B) + beta*C. Called from inside an OpenMP parallel region it
 * runs on the calling thread only (see cpu_blas_region_begin). */
void cpu_sgemm(const cpu_device *d, int trans_a, int trans_b, int m, int n, int k, float alpha,
               const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
/* Sets this thread's OpenMP and BLAS thread counts to the device's before an op runs. */
void cpu_threads_enter(const cpu_device *d);
/* Around an OpenMP region whose threads each call cpu_sgemm: the pthread OpenBLAS build
 * must be told to stay single-threaded there (the OpenMP build notices by itself). */
void cpu_blas_region_begin(const cpu_device *d);
void cpu_blas_region_end(const cpu_device *d);

/* ---- tensor access ---- */
static inline void *cpu_ptr(pt_mem m)
{
    return (char *)m.buf->data + m.off;
}
static inline float *cpu_f32(const pt_tensor *t)
{
    return (float *)cpu_ptr(t->mem);
}

/* ---- op kernels: each assumes run() has validated operand count, dtypes and extents ---- */
pt_status cpu_op_gemm(const cpu_device *d, const pt_op *op, pt_error *err);

size_t cpu_conv_workspace(const cpu_device *d, const pt_op *op);
pt_status cpu_op_conv2d_fwd(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_conv2d_bwd_data(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_conv2d_bwd_filter(const cpu_device *d, const pt_op *op, pt_error *err);

/* ---- cpu_winograd.c: F(2x2, 3x3) for 3x3 stride-1 convolutions, all three passes ---- */
int cpu_winograd_applies(const pt_op *op);
/* How Winograd runs an op, if it pays: each thread on its own chunks of tiles, or all threads
 * on shared blocks of tiles (few tiles, wide channels); CPU_WINO_OFF where im2col is faster. */
typedef enum { CPU_WINO_OFF, CPU_WINO_CHUNKS, CPU_WINO_SHARED } cpu_wino_mode;
cpu_wino_mode cpu_winograd_mode(const cpu_device *d, const pt_op *op);
size_t cpu_winograd_workspace(const cpu_device *d, const pt_op *op);
pt_status cpu_winograd_run(const cpu_device *d, const pt_op *op, pt_error *err);

pt_status cpu_op_bn_fwd_train(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_bn_fwd_eval(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_bn_bwd(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_bn_sync_stats(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_bn_sync_fwd(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_bn_sync_bwd_stats(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_bn_sync_bwd(const cpu_device *d, const pt_op *op, pt_error *err);

pt_status cpu_op_maxpool_fwd(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_maxpool_bwd(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_gap_fwd(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_gap_bwd(const cpu_device *d, const pt_op *op, pt_error *err);

pt_status cpu_op_fill(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_axpy(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_bias_add(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_bias_grad(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_dropout_fwd(const cpu_device *d, const pt_op *op, pt_error *err);
/* Every PT_OPF_POINTWISE kind (add, the activations and their gradients, dropout's gradient). */
pt_status cpu_op_pointwise(const cpu_device *d, const pt_op *op, pt_error *err);

pt_status cpu_op_xent(const cpu_device *d, const pt_op *op, pt_error *err);

/* ---- cpu_zoo.c: attention and pooling ops of the model zoo ---- */
pt_status cpu_op_bcast_mul(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_bcast_mul_grad(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_gmp_fwd(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_gmp_bwd(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_channel_pool_fwd(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_channel_pool_bwd(const cpu_device *d, const pt_op *op, pt_error *err);

pt_status cpu_op_sgd(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_adam(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_rmsprop(const cpu_device *d, const pt_op *op, pt_error *err);

#endif
