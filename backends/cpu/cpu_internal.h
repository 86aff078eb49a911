/* Private to backends/cpu: the buffer, backend and device contexts and the op kernels'
 * entry points. Nothing outside backends/cpu includes this (tests and benchmarks of this
 * backend excepted); the core sees the backend only through pt_cpu_backend. */
#ifndef PT_CPU_INTERNAL_H
#define PT_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/op_act16.h"
#include "polytrain/backend.h"

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
    /* bf16 math (pt_op.math) runs the AVX512-BF16 GEMM (cpu_gemm_lowp.c): set where the CPU has
     * the instructions; tests clear it to check the emulated path on such a CPU. */
    int bf16_kernel;
    /* PT_CPU_ACT16=copy (tests): every op with 16-bit operands runs over float32 copies
     * instead of reading and writing them natively (cpu_act16.c) */
    int act16_copy;
    /* pt_device_options.emulate_graphs (tests): the graph and pinned-input hooks record and
     * replay (cpu_emulate.c) */
    int emulate; /* 2: every capture fails at its end */
    struct cpu_recording *rec;  /* the graph being captured, or NULL */
    struct cpu_pending *pending; /* asynchronous writes not yet carried out */
    int npending, cap_pending;
    uint64_t next_fence;
    /* The compute queue as a GPU's would be: every op run since the host last waited for the
     * device (read, synchronize) may still be running, its operands in reads (op numbers
     * after ops_synced); the copy queue waits for ops up to copy_after (copy_wait). An
     * asynchronous write into an operand of an op that may still run fails. */
    struct cpu_range *reads;
    int nreads, cap_reads;
    uint64_t ops_run, ops_synced, copy_after;
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

/* ---- cpu_gemm_lowp.c: GEMMs in a reduced-precision math mode (pt_op.math) ---- */
/* The build has the AVX512-BF16 code (x86-64, GCC or Clang): built without -march, functions
 * that use it carry CPU_BF16_TARGET and run only where cpu_has_bf16_kernel() says so. */
#if defined(__x86_64__) && defined(__GNUC__)
#define CPU_BF16_BUILT 1
#define CPU_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#else
#define CPU_BF16_BUILT 0
#define CPU_BF16_TARGET
#endif
/* Whether this CPU and build run the AVX512-BF16 GEMM (vdpbf16ps). */
int cpu_has_bf16_kernel(void);
/* Row-major C = alpha*op(A)*op(B) + beta*C with A and B rounded to bf16 (round to nearest
 * even while packed; float32 subnormals count as zero, as vdpbf16ps treats them), exact
 * products, float32 sums; beta 0: C is not read. Runs on `threads` OpenMP threads (one when
 * called inside a parallel region); scratch: cpu_gemm_bf16_scratch bytes, any alignment.
 * Only where cpu_has_bf16_kernel(). */
void cpu_gemm_bf16(int threads, int trans_a, int trans_b, int m, int n, int k, float alpha,
                   const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc,
                   void *scratch);
size_t cpu_gemm_bf16_scratch(int m, int n, int k, int threads);
/* The same kernel on operands the caller lays out, for operands made once and multiplied many
 * times or written by a transform in the kernel's layout (Winograd, the packed im2col path),
 * each rounded once. A dword holds a pair of bf16 (even k in the low half). Packed A (m x k):
 * panels of CPU_BF16_MR rows, element (i, kk) in dword (i / MR) * MR * kc2 + (kk / 2) * MR +
 * i % MR (kc2 = (k + 1) / 2). Packed B (k x n): panels of CPU_BF16_NR columns, element (kk, j)
 * in dword (j / NR) * NR * kc2 + (kk / 2) * NR + j % NR. The rows of A past m and the other
 * half of an odd k's last pair must be zero (the kernel runs whole panels); the columns of B
 * past n may hold anything: they only reach columns of C that are not stored. Run on the
 * calling thread; only where cpu_has_bf16_kernel(). */
#define CPU_BF16_MR 8
#define CPU_BF16_NR 48
size_t cpu_bf16_packed_a_dwords(int m, int k);
size_t cpu_bf16_packed_b_dwords(int k, int n);
/* The whole op(A) (m x k; ta: A stored k x m) into packed A at dst, on up to `threads`
 * threads (one inside a parallel region). */
void cpu_bf16_pack_a(int ta, const float *a, int lda, int m, int k, uint32_t *dst, int threads);
/* Rows kk and kk + 1 (kk even; hi NULL past an odd k) of a k x N operand B, n values each,
 * into columns col0 .. col0+n-1 of packed B at dst. */
void cpu_bf16_pack_b_pair(const float *lo, const float *hi, int n, int col0, int k, int kk, uint32_t *dst);
/* dst[0..n) = src rounded to bf16, as the packing rounds. */
void cpu_bf16_round_row(const float *src, int n, uint16_t *dst);
/* C = A B + beta C on packed A and B, on the calling thread; beta 0: C is not read. */
void cpu_gemm_bf16_packed(int m, int n, int k, const uint32_t *a, const uint32_t *b, float beta, float *c, int ldc);
/* Operands already in bf16 with k along rows (element kk of row i in the half kk % 2 of dword
 * i*ld + kk/2, the layout of a row-major bf16 matrix; an odd k's last pair zero in its high
 * half). cpu_bf16_pack_b_pairs: packed B from n such rows (B's columns), a transpose of
 * dwords; cpu_gemm_bf16_rows: C = A B + beta C with such an A read in place. */
void cpu_bf16_pack_b_pairs(const uint32_t *v, size_t ldv, int k, int n, uint32_t *dst);
void cpu_gemm_bf16_rows(int m, int n, int k, const uint32_t *a, size_t lda, const uint32_t *b, float beta, float *c,
                        int ldc);
/* dst[i] = src[i] rounded to p (pt_precision_round; dst may be src), on up to `threads`
 * threads (one inside a parallel region). */
void cpu_round_to(pt_precision p, float *dst, const float *src, size_t n, int threads);

/* ---- tensor access ---- */
static inline void *cpu_ptr(pt_mem m)
{
    return (char *)m.buf->data + m.off;
}
static inline float *cpu_f32(const pt_tensor *t)
{
    return (float *)cpu_ptr(t->mem);
}

/* ---- cpu_emulate.c: the graph and pinned-input hooks for tests (emulate) ---- */
/* Runs a validated op (cpu_backend.c), its step record read when op->step is set. */
pt_status cpu_execute(const cpu_device *d, const pt_op *op, pt_error *err);
int cpu_emu_graph_capable(void *dev_ctx, char *why, size_t cap);
pt_status cpu_emu_graph_begin(void *dev_ctx, pt_error *err);
pt_status cpu_emu_graph_end(void *dev_ctx, void **graph, pt_error *err);
pt_status cpu_emu_graph_launch(void *dev_ctx, void *graph, pt_error *err);
void cpu_emu_graph_free(void *dev_ctx, void *graph);
/* Under capture: records op (the device must be capturing). */
pt_status cpu_emu_record(cpu_device *d, const pt_op *op, pt_error *err);
/* Under capture: 1, and the capture will fail naming what (a call that is not recorded). */
int cpu_emu_refuse(cpu_device *d, const char *what);
/* An op ran on an emulating device: its operands may be in use until the host next waits. */
pt_status cpu_emu_note_op(cpu_device *d, const pt_op *op, pt_error *err);
/* The host waited for the device (read, synchronize): every op run so far has finished. */
void cpu_emu_synced(cpu_device *d);
pt_status cpu_emu_compute_fence(void *dev_ctx, uint64_t *fence, pt_error *err);
pt_status cpu_emu_copy_wait(void *dev_ctx, uint64_t fence, pt_error *err);
int cpu_emu_pinned_capable(void *dev_ctx);
pt_status cpu_emu_host_alloc(void *dev_ctx, size_t bytes, void **ptr, pt_error *err);
void cpu_emu_host_free(void *dev_ctx, void *ptr);
pt_status cpu_emu_write_async(void *dev_ctx, pt_mem dst, const void *src, size_t bytes, uint64_t *fence,
                              pt_error *err);
pt_status cpu_emu_write_fence_wait(void *dev_ctx, uint64_t fence, int host, pt_error *err);
void cpu_emu_close(cpu_device *d);

/* ---- cpu_act16.c: 16-bit activations (lowp operands), natively or through float32 copies ---- */
/* Whether op's kernel reads and writes its 16-bit operands itself (else the copies below). */
int cpu_act16_native(const cpu_device *d, const pt_op *op);
/* The float32 copies (core/op_act16.h; w from pt_act16_widen_op and pt_act16_place, 64-byte
 * aligned): widens the 16-bit operands op reads into w's copies; rounds w's outputs into op's. */
void cpu_act16_load(const cpu_device *d, const pt_op *op, const pt_op *w);
void cpu_act16_store(const cpu_device *d, const pt_op *op, const pt_op *w);
/* dst[0..n) = src (PT_BF16 or PT_F16) widened, exactly; dst (dt) = src rounded to nearest
 * even as core/half.h rounds. Vectorised where the CPU allows; one thread. */
void cpu_act16_widen_row(float *dst, const void *src, int64_t n, pt_dtype dt);
void cpu_act16_narrow_row(void *dst, const float *src, int64_t n, pt_dtype dt);
/* The pointwise kinds on 16-bit operands (cpu_op_pointwise over float32 chunks). */
pt_status cpu_act16_pointwise(const cpu_device *d, const pt_op *op, pt_error *err);
/* Per-thread float32 buffers of a kernel that widens a plane (in_floats) and rounds one
 * (out_floats) at a time: the workspace they take, and this OpenMP thread's in (out 0) or
 * out (out 1) buffer in op's workspace. */
size_t cpu_act16_plane_workspace(const cpu_device *d, int64_t in_floats, int64_t out_floats);
float *cpu_act16_plane_buffer(const pt_op *op, int64_t in_floats, int64_t out_floats, int out);

/* Elements [i, i+n) of t as float32: t's own memory when it is PT_F32, else widened into buf. */
static inline const float *cpu_act16_in(const pt_tensor *t, int64_t i, int64_t n, float *buf)
{
    if (t->dtype == PT_F32) return (const float *)cpu_ptr(t->mem) + i;
    cpu_act16_widen_row(buf, (const uint16_t *)cpu_ptr(t->mem) + i, n, t->dtype);
    return buf;
}
/* Where a kernel writes elements [i, ...) of t: t itself when PT_F32, else buf, which
 * cpu_act16_out_done then rounds into t. */
static inline float *cpu_act16_out(const pt_tensor *t, int64_t i, float *buf)
{
    return t->dtype == PT_F32 ? (float *)cpu_ptr(t->mem) + i : buf;
}
static inline void cpu_act16_out_done(const pt_tensor *t, int64_t i, int64_t n, const float *buf)
{
    if (t->dtype != PT_F32) cpu_act16_narrow_row((uint16_t *)cpu_ptr(t->mem) + i, buf, n, t->dtype);
}

/* ---- op kernels: each assumes run() has validated operand count, dtypes and extents ---- */
/* cpu_batchnorm.c: the floats of a thread's input buffer for op's 16-bit operands (a channel of
 * x, and a plane of the forwards' residual z where it is 16-bit) */
int64_t cpu_bn_in_floats(const pt_op *op);
pt_status cpu_op_gemm(const cpu_device *d, const pt_op *op, pt_error *err);
/* cpu_gemm_lowp.c: the GEMM op with op->math != fp32, and the workspace it needs (0 for fp32) */
size_t cpu_gemm_workspace(const cpu_device *d, const pt_op *op);
pt_status cpu_op_gemm_math(const cpu_device *d, const pt_op *op, pt_error *err);

size_t cpu_conv_workspace(const cpu_device *d, const pt_op *op);
/* Whether this convolution runs as Winograd (cpu_winograd.c) rather than im2col. */
int cpu_conv_uses_winograd(const cpu_device *d, const pt_op *op);
pt_status cpu_op_conv2d_fwd(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_conv2d_bwd_data(const cpu_device *d, const pt_op *op, pt_error *err);
pt_status cpu_op_conv2d_bwd_filter(const cpu_device *d, const pt_op *op, pt_error *err);

/* ---- cpu_winograd.c: F(2x2, 3x3) for 3x3 stride-1 convolutions, all three passes ---- */
int cpu_winograd_applies(const pt_op *op);
/* Whether Winograd computes in the op's math mode: fp32, and bf16 on the AVX512-BF16 kernel
 * (the transformed operands rounded to bf16); the emulated modes take im2col. */
int cpu_winograd_math(const cpu_device *d, const pt_op *op);
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
pt_status cpu_op_amp_unscale(const cpu_device *d, const pt_op *op, pt_error *err);
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
