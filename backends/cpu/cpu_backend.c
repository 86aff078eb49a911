/* The cpu backend: its context (OpenBLAS, CPU facts), devices (a thread count), host
 * buffers, op validation and dispatch, and the pt_cpu_backend vtable. Work runs synchronously
 * on the calling thread plus the device's OpenMP threads; it never allocates inside run(). */
#include <limits.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backends/cpu/cpu_internal.h"
#include "core/host.h"

/* ---- backend context ---- */

static pt_status cpu_init(void **backend_ctx, pt_error *err)
{
    *backend_ctx = NULL;
    const char *huge = getenv("PT_CPU_HUGEPAGES");
    if (huge && *huge && strcmp(huge, "0") != 0 && strcmp(huge, "1") != 0)
        return pt_fail(err, PT_ERR_INVALID, "PT_CPU_HUGEPAGES is '%s', expected 0 or 1", huge);
    cpu_backend *be = calloc(1, sizeof *be);
    if (!be) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    be->hugepages = !(huge && strcmp(huge, "0") == 0);
    pt_status st = cpu_blas_load(&be->blas, err);
    if (st != PT_OK) {
        free(be);
        return st;
    }
    snprintf(be->cpu_name, sizeof be->cpu_name, "x86-64 CPU");
    pt_host_cpu_model(be->cpu_name, sizeof be->cpu_name);
    snprintf(be->simd, sizeof be->simd, "%s", cpu_simd_level());
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    be->memory_bytes = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    be->cores = cores > 0 ? (int)cores : 1;
    be->default_threads = omp_get_max_threads();
    *backend_ctx = be;
    return PT_OK;
}

static void cpu_shutdown(void *backend_ctx)
{
    /* The OpenBLAS handle is deliberately not dlclose()d (its thread pools do not unload). */
    free(backend_ctx);
}

/* The cpu backend splits the machine into as many devices as it has cores: a device
 * group of N cpu devices runs N replicas on host threads, each with its own OpenMP (and
 * OpenBLAS) thread count, so that the cores are divided rather than oversubscribed.
 * Every device sees the same memory; they differ only in the threads that drive them. */
static int cpu_device_count(void *backend_ctx)
{
    const cpu_backend *be = backend_ctx;
    return be->cores > 0 ? be->cores : 1;
}

static const char *parallel_name(int p)
{
    return p == 2 ? "openmp" : p == 1 ? "pthreads" : "sequential";
}

static pt_status cpu_device_info(void *backend_ctx, int index, pt_device_info *out, pt_error *err)
{
    const cpu_backend *be = backend_ctx;
    if (index < 0 || index >= cpu_device_count(backend_ctx))
        return pt_fail(err, PT_ERR_INVALID, "cpu backend has %d devices (one per core), no device %d",
                       cpu_device_count(backend_ctx), index);
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", be->cpu_name);
    out->kind = PT_DEVICE_CPU;
    out->memory_bytes = be->memory_bytes;
    out->compute_units = be->cores;
    out->threads = be->default_threads;
    snprintf(out->details, sizeof out->details, "%s, OpenBLAS %s kernel %s (%s), %d threads, bf16 math %s",
             be->simd, be->blas.version[0] ? be->blas.version : "?", be->blas.corename,
             parallel_name(be->blas.parallel), out->threads,
             cpu_has_bf16_kernel() ? "on AVX512-BF16" : "emulated");
    return PT_OK;
}

/* ---- device ---- */

static pt_status cpu_device_open(void *backend_ctx, int index, const pt_device_options *opt,
                                 void **dev_ctx, pt_error *err)
{
    const cpu_backend *be = backend_ctx;
    *dev_ctx = NULL;
    if (index < 0 || index >= cpu_device_count(backend_ctx))
        return pt_fail(err, PT_ERR_INVALID, "cpu backend has %d devices (one per core), no device %d",
                       cpu_device_count(backend_ctx), index);
    if (opt->threads < 0 || opt->threads > 4096)
        return pt_fail(err, PT_ERR_INVALID, "cpu device threads is %d, expected 0 (default) to 4096",
                       opt->threads);
    const char *wino = getenv("PT_CPU_WINOGRAD");
    if (wino && *wino && strcmp(wino, "0") != 0 && strcmp(wino, "1") != 0)
        return pt_fail(err, PT_ERR_INVALID, "PT_CPU_WINOGRAD is '%s', expected 0 or 1", wino);
    const char *act16 = getenv("PT_CPU_ACT16");
    if (act16 && *act16 && strcmp(act16, "copy") != 0 && strcmp(act16, "native") != 0)
        return pt_fail(err, PT_ERR_INVALID, "PT_CPU_ACT16 is '%s', expected copy or native", act16);
    cpu_device *d = calloc(1, sizeof *d);
    if (!d) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    d->act16_copy = act16 && strcmp(act16, "copy") == 0;
    d->be = be;
    d->winograd = !(wino && strcmp(wino, "0") == 0);
    d->threads = opt->threads > 0 ? opt->threads : be->default_threads;
    d->bf16_kernel = cpu_has_bf16_kernel();
    d->emulate = opt->emulate_graphs;
    *dev_ctx = d;
    return PT_OK;
}

static void cpu_device_close(void *dev_ctx)
{
    cpu_emu_close(dev_ctx);
    free(dev_ctx);
}

/* Buffers of CPU_HUGE_MIN bytes or more start on a 2 MiB boundary, span whole 2 MiB pages
 * and ask for transparent huge pages (Debian's kernels grant them on madvise; without them
 * this is plain memory). im2col, the Winograd transforms and the per-channel passes over
 * activations step through these buffers a plane or a row at a time, touching a new 4 KiB page
 * every few accesses; on huge pages resnet18's step measured 0.94x and baseline's 0.95x
 * (medians of 10 and 8 alternating runs). */
#define CPU_HUGE_PAGE ((size_t)2 << 20)
#define CPU_HUGE_MIN ((size_t)4 << 20)

static pt_status cpu_buffer_alloc(void *dev_ctx, size_t bytes, pt_buffer **out, pt_error *err)
{
    const cpu_device *d = dev_ctx;
    *out = NULL;
    if (bytes > SIZE_MAX - CPU_HUGE_PAGE)
        return pt_fail(err, PT_ERR_NOMEM, "buffer of %zu bytes is too large", bytes);
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded == 0) rounded = 64;
    pt_buffer *b = malloc(sizeof *b);
    void *data;
    if (d->be->hugepages && rounded >= CPU_HUGE_MIN) {
        rounded = (rounded + CPU_HUGE_PAGE - 1) / CPU_HUGE_PAGE * CPU_HUGE_PAGE;
        data = aligned_alloc(CPU_HUGE_PAGE, rounded);
#ifdef MADV_HUGEPAGE
        /* advice only: where the kernel refuses, the buffer keeps 4 KiB pages */
        if (data) (void)madvise(data, rounded, MADV_HUGEPAGE);
#endif
    } else {
        data = aligned_alloc(64, rounded);
    }
    if (!b || !data) {
        free(b);
        free(data);
        return pt_fail(err, PT_ERR_NOMEM, "cannot allocate %zu bytes of host memory", bytes);
    }
    b->data = data;
    b->bytes = bytes;
    *out = b;
    return PT_OK;
}

static void cpu_buffer_free(void *dev_ctx, pt_buffer *buf)
{
    (void)dev_ctx;
    if (!buf) return;
    free(buf->data);
    free(buf);
}

static pt_status check_range(pt_mem m, size_t bytes, const char *what, pt_error *err)
{
    if (!m.buf) return pt_fail(err, PT_ERR_INVALID, "cpu %s: no buffer", what);
    if (m.off > m.buf->bytes || bytes > m.buf->bytes - m.off)
        return pt_fail(err, PT_ERR_INVALID, "cpu %s: %zu bytes at offset %zu exceed the buffer's %zu",
                       what, bytes, m.off, m.buf->bytes);
    return PT_OK;
}

static pt_status cpu_write(void *dev_ctx, pt_mem dst, const void *src, size_t bytes, pt_error *err)
{
    if (cpu_emu_refuse(dev_ctx, "write")) return PT_OK;
    PT_TRY(check_range(dst, bytes, "write", err));
    if (bytes) memcpy(cpu_ptr(dst), src, bytes);
    return PT_OK;
}

static pt_status cpu_read(void *dev_ctx, void *dst, pt_mem src, size_t bytes, pt_error *err)
{
    if (cpu_emu_refuse(dev_ctx, "read"))
        return pt_fail(err, PT_ERR_INVALID, "cpu: read() during a graph capture");
    PT_TRY(check_range(src, bytes, "read", err));
    if (bytes) memcpy(dst, cpu_ptr(src), bytes);
    cpu_emu_synced(dev_ctx);
    return PT_OK;
}

static pt_status cpu_copy(void *dev_ctx, pt_mem dst, pt_mem src, size_t bytes, pt_error *err)
{
    if (cpu_emu_refuse(dev_ctx, "copy")) return PT_OK;
    PT_TRY(check_range(dst, bytes, "copy destination", err));
    PT_TRY(check_range(src, bytes, "copy source", err));
    if (bytes) memmove(cpu_ptr(dst), cpu_ptr(src), bytes);
    return PT_OK;
}

static pt_status cpu_synchronize(void *dev_ctx, pt_error *err)
{
    (void)err;
    cpu_emu_synced(dev_ctx);
    return PT_OK; /* every op has finished when run() returns */
}

/* ---- op validation: the kinds' descriptions (core/op_table.c) ---- */

static size_t buffer_bytes(const pt_buffer *b) { return b->bytes; }

/* Every math mode runs on every CPU: bf16 on the AVX512-BF16 GEMM where the CPU has it, the
 * rest (and bf16 elsewhere) emulated: operands rounded, then fp32 SGEMM (cpu_gemm_lowp.c). */
/* Activations in bf16 and fp16 on every CPU: read and written natively by most kernels, the
 * rest through float copies (cpu_act16.c). */
#define CPU_CAPS                                                                             \
    (PT_CAP_MIXUP_TARGETS | PT_CAP_FUSED_RELU | PT_CAP_BN_ADD | PT_CAP_MATH(PT_PREC_TF32) |  \
     PT_CAP_MATH(PT_PREC_BF16) | PT_CAP_MATH(PT_PREC_FP16) | PT_CAP_ACT16(PT_BF16) |         \
     PT_CAP_ACT16(PT_F16))

static pt_status validate(const pt_op *op, int check_memory, pt_error *err)
{
    PT_TRY(pt_op_check_operands(op, "cpu", CPU_CAPS, check_memory, err));
    return check_memory ? pt_op_check_memory(op, "cpu", buffer_bytes, 1, err) : PT_OK;
}

static int cpu_supports(void *dev_ctx, const pt_op *op)
{
    (void)dev_ctx;
    return validate(op, 0, NULL) == PT_OK;
}

static int64_t plane_of(const pt_tensor *t)
{
    int64_t inner = 1;
    for (int i = 2; i < t->ndim; i++) inner *= t->dim[i];
    return inner;
}

/* The workspace of an op as its kernel runs it: all operands float32 (or integers), or 16-bit
 * ones read natively (per-thread plane buffers where the kernel widens whole planes). */
static size_t f32_workspace_size(const cpu_device *d, const pt_op *op)
{
    const int any16 = pt_act16_any(op);
    switch (op->kind) {
    case PT_OP_BN_FWD_TRAIN:
    case PT_OP_BN_FWD_EVAL:
    case PT_OP_BN_BWD:
        /* a channel of x (all N planes: read twice) and a plane of z, and a plane of y (cpu_batchnorm.c) */
        return any16 ? cpu_act16_plane_workspace(d, cpu_bn_in_floats(op), plane_of(&op->t[0])) : 0;
    case PT_OP_MAXPOOL_FWD:
        return any16 ? cpu_act16_plane_workspace(d, plane_of(&op->t[0]), plane_of(&op->t[1])) : 0;
    case PT_OP_GAP_FWD:
        return any16 ? cpu_act16_plane_workspace(d, plane_of(&op->t[0]), 0) : 0;
    case PT_OP_GEMM:
        return cpu_gemm_workspace(d, op);
    case PT_OP_CONV2D_FWD:
    case PT_OP_CONV2D_BWD_DATA:
    case PT_OP_CONV2D_BWD_FILTER:
        return cpu_conv_workspace(d, op);
    default:
        return 0;
    }
}

static size_t cpu_workspace_size(void *dev_ctx, const pt_op *op)
{
    const cpu_device *d = dev_ctx;
    if (!pt_act16_any(op) || cpu_act16_native(d, op)) return f32_workspace_size(d, op);
    pt_op w;
    pt_act16_widen_op(op, 0, &w);
    return pt_act16_place(op, 0, &w, f32_workspace_size(d, &w), 64);
}

/* op with 16-bit activations: the float op over copies in its workspace. */
static pt_status execute_act16(const cpu_device *d, const pt_op *op, pt_error *err)
{
    pt_op w;
    pt_act16_widen_op(op, 0, &w);
    const size_t need = pt_act16_place(op, 0, &w, f32_workspace_size(d, &w), 64);
    if (!op->workspace.buf || op->workspace_bytes < need)
        return pt_fail(err, PT_ERR_INVALID, "cpu %s: 16-bit operands need %zu bytes of workspace, the op has %zu",
                       pt_op_name(op->kind), need, op->workspace.buf ? op->workspace_bytes : (size_t)0);
    cpu_threads_enter(d);
    cpu_act16_load(d, op, &w);
    PT_TRY(cpu_execute(d, &w, err));
    cpu_act16_store(d, op, &w);
    return PT_OK;
}

static pt_status cpu_run(void *dev_ctx, const pt_op *op, pt_error *err)
{
    cpu_device *d = dev_ctx;
    PT_TRY(validate(op, 1, err));
    if (op->step.buf) PT_TRY(check_range(op->step, sizeof(pt_step_scalars), "step record", err));
    if (d->rec) return cpu_emu_record(d, op, err);
    PT_TRY(cpu_execute(d, op, err));
    return d->emulate ? cpu_emu_note_op(d, op, err) : PT_OK;
}

pt_status cpu_execute(const cpu_device *d, const pt_op *op_in, pt_error *err)
{
    if (pt_act16_any(op_in)) {
        if (!cpu_act16_native(d, op_in)) return execute_act16(d, op_in, err);
        const size_t need = f32_workspace_size(d, op_in);
        if (need && (!op_in->workspace.buf || op_in->workspace_bytes < need))
            return pt_fail(err, PT_ERR_INVALID, "cpu %s: 16-bit operands need %zu bytes of workspace, the op has %zu",
                           pt_op_name(op_in->kind), need, op_in->workspace.buf ? op_in->workspace_bytes : (size_t)0);
    }
    pt_op resolved;
    const pt_op *op = op_in;
    if (op_in->step.buf && (pt_op_has_step_params(op_in->kind) || pt_op_step_gated(op_in) ||
                            op_in->kind == PT_OP_AMP_UNSCALE)) {
        pt_step_scalars s;
        memcpy(&s, cpu_ptr(op_in->step), sizeof s);
        resolved = *op_in;
        if (!pt_op_resolve_step_params(&resolved, &s)) return PT_OK; /* skipped or not clipped */
        op = &resolved;
    }
    cpu_threads_enter(d);
    if (pt_op_describe(op->kind)->flags & PT_OPF_POINTWISE)
        return pt_act16_any(op) ? cpu_act16_pointwise(d, op, err) : cpu_op_pointwise(d, op, err);
    switch (op->kind) {
    case PT_OP_FILL: return cpu_op_fill(d, op, err);
    case PT_OP_AXPY: return cpu_op_axpy(d, op, err);
    case PT_OP_GEMM: return cpu_op_gemm(d, op, err);
    case PT_OP_BIAS_ADD: return cpu_op_bias_add(d, op, err);
    case PT_OP_BIAS_GRAD: return cpu_op_bias_grad(d, op, err);
    case PT_OP_CONV2D_FWD: return cpu_op_conv2d_fwd(d, op, err);
    case PT_OP_CONV2D_BWD_DATA: return cpu_op_conv2d_bwd_data(d, op, err);
    case PT_OP_CONV2D_BWD_FILTER: return cpu_op_conv2d_bwd_filter(d, op, err);
    case PT_OP_BN_FWD_TRAIN: return cpu_op_bn_fwd_train(d, op, err);
    case PT_OP_BN_FWD_EVAL: return cpu_op_bn_fwd_eval(d, op, err);
    case PT_OP_BN_BWD: return cpu_op_bn_bwd(d, op, err);
    case PT_OP_MAXPOOL_FWD: return cpu_op_maxpool_fwd(d, op, err);
    case PT_OP_MAXPOOL_BWD: return cpu_op_maxpool_bwd(d, op, err);
    case PT_OP_GAP_FWD: return cpu_op_gap_fwd(d, op, err);
    case PT_OP_GAP_BWD: return cpu_op_gap_bwd(d, op, err);
    case PT_OP_DROPOUT_FWD: return cpu_op_dropout_fwd(d, op, err);
    case PT_OP_XENT: return cpu_op_xent(d, op, err);
    case PT_OP_SGD: return cpu_op_sgd(d, op, err);
    case PT_OP_ADAM: return cpu_op_adam(d, op, err);
    case PT_OP_RMSPROP: return cpu_op_rmsprop(d, op, err);
    case PT_OP_BCAST_MUL: return cpu_op_bcast_mul(d, op, err);
    case PT_OP_BCAST_MUL_GRAD: return cpu_op_bcast_mul_grad(d, op, err);
    case PT_OP_GMP_FWD: return cpu_op_gmp_fwd(d, op, err);
    case PT_OP_GMP_BWD: return cpu_op_gmp_bwd(d, op, err);
    case PT_OP_CHANNEL_POOL_FWD: return cpu_op_channel_pool_fwd(d, op, err);
    case PT_OP_CHANNEL_POOL_BWD: return cpu_op_channel_pool_bwd(d, op, err);
    case PT_OP_BN_SYNC_STATS: return cpu_op_bn_sync_stats(d, op, err);
    case PT_OP_BN_SYNC_FWD: return cpu_op_bn_sync_fwd(d, op, err);
    case PT_OP_BN_SYNC_BWD_STATS: return cpu_op_bn_sync_bwd_stats(d, op, err);
    case PT_OP_BN_SYNC_BWD: return cpu_op_bn_sync_bwd(d, op, err);
    case PT_OP_AMP_UNSCALE: return cpu_op_amp_unscale(d, op, err);
    default: break;
    }
    return pt_fail(err, PT_ERR_UNSUPPORTED, "cpu backend: no loop for %s", pt_op_name(op->kind));
}

/* How the GEMMs and convolutions compute in p (pt_op.math). */
static pt_status cpu_precision(void *dev_ctx, pt_precision p, char *how, size_t cap, pt_error *err)
{
    const cpu_device *d = dev_ctx;
    switch (p) {
    case PT_PREC_FP32:
        snprintf(how, cap, "float32: OpenBLAS %s SGEMM", d->be->blas.corename);
        return PT_OK;
    case PT_PREC_BF16:
        if (d->bf16_kernel) snprintf(how, cap, "AVX512-BF16 microkernel: bf16 products, fp32 sums");
        else snprintf(how, cap, "emulated: operands rounded to bf16, multiplied in fp32 (no AVX512-BF16 on this CPU; not faster than fp32)");
        return PT_OK;
    case PT_PREC_TF32:
    case PT_PREC_FP16:
        /* x86 has no tf32 arithmetic, and the fp16 one (AVX512-FP16) sums in fp16 */
        snprintf(how, cap, "emulated: operands rounded to %s, multiplied in fp32 (not faster than fp32)",
                 pt_precision_name(p));
        return PT_OK;
    default:
        return pt_fail(err, PT_ERR_UNSUPPORTED, "cpu: precision %d is not one polytrain knows", (int)p);
    }
}

/* ---- collectives: a cpu device group shares one address space, so a reduction is a sum
 * over the devices' buffers in place (device order, so every device gets the same bits),
 * then over the processes through the world. Every op on a cpu device has finished when
 * run() returns, so the buffers are complete when the core calls these. ---- */

typedef struct cpu_group {
    int ndev;
    const pt_world *world;
} cpu_group;

static pt_status cpu_group_open(void *backend_ctx, void *const *dev_ctxs, int ndev, const pt_world *world,
                                void **group, pt_error *err)
{
    (void)backend_ctx;
    (void)dev_ctxs;
    *group = NULL;
    if (ndev < 1) return pt_fail(err, PT_ERR_INVALID, "cpu group of %d devices", ndev);
    cpu_group *g = calloc(1, sizeof *g);
    if (!g) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    g->ndev = ndev;
    g->world = world;
    *group = g;
    return PT_OK;
}

static void cpu_group_close(void *group) { free(group); }

static pt_status cpu_group_allreduce_f32(void *group, const pt_mem *bufs, size_t count, pt_error *err)
{
    const cpu_group *g = group;
    for (int d = 0; d < g->ndev; d++) PT_TRY(check_range(bufs[d], count * sizeof(float), "all-reduce", err));
    float *sum = cpu_ptr(bufs[0]);
    for (int d = 1; d < g->ndev; d++) {
        const float *x = cpu_ptr(bufs[d]);
        for (size_t i = 0; i < count; i++) sum[i] += x[i];
    }
    if (g->world && g->world->size > 1) PT_TRY(g->world->allreduce_sum_f32(g->world->ctx, sum, count, err));
    for (int d = 1; d < g->ndev; d++) memcpy(cpu_ptr(bufs[d]), sum, count * sizeof(float));
    return PT_OK;
}

static pt_status cpu_group_broadcast(void *group, const pt_mem *bufs, size_t bytes, pt_error *err)
{
    const cpu_group *g = group;
    for (int d = 0; d < g->ndev; d++) PT_TRY(check_range(bufs[d], bytes, "broadcast", err));
    if (g->world && g->world->size > 1) PT_TRY(g->world->broadcast(g->world->ctx, cpu_ptr(bufs[0]), bytes, 0, err));
    for (int d = 1; d < g->ndev; d++) memcpy(cpu_ptr(bufs[d]), cpu_ptr(bufs[0]), bytes);
    return PT_OK;
}

/* --act-storage auto stores an activation in 16 bits only where the kernels take it natively. */
static int cpu_act16_native_op(void *dev_ctx, const pt_op *op) { return cpu_act16_native(dev_ctx, op); }

const pt_backend_iface pt_cpu_backend = {
    .api_version = PT_BACKEND_API_VERSION,
    .name = "cpu",
    .init = cpu_init,
    .shutdown = cpu_shutdown,
    .device_count = cpu_device_count,
    .device_info = cpu_device_info,
    .device_open = cpu_device_open,
    .device_close = cpu_device_close,
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_free = cpu_buffer_free,
    .write = cpu_write,
    .read = cpu_read,
    .copy = cpu_copy,
    .synchronize = cpu_synchronize,
    .supports = cpu_supports,
    .workspace_size = cpu_workspace_size,
    .run = cpu_run,
    .group_open = cpu_group_open,
    .group_close = cpu_group_close,
    .group_allreduce_f32 = cpu_group_allreduce_f32,
    .group_broadcast = cpu_group_broadcast,
    .precision = cpu_precision,
    .graph_capable = cpu_emu_graph_capable,
    .graph_begin = cpu_emu_graph_begin,
    .graph_end = cpu_emu_graph_end,
    .graph_launch = cpu_emu_graph_launch,
    .graph_free = cpu_emu_graph_free,
    .pinned_capable = cpu_emu_pinned_capable,
    .host_alloc = cpu_emu_host_alloc,
    .host_free = cpu_emu_host_free,
    .write_async = cpu_emu_write_async,
    .write_fence_wait = cpu_emu_write_fence_wait,
    .compute_fence = cpu_emu_compute_fence,
    .copy_wait = cpu_emu_copy_wait,
    .act16_native = cpu_act16_native_op,
};
