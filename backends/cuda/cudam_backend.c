/* The cuda module's backend table: device enumeration, devices (one non-blocking stream,
 * cuBLAS and cuDNN handles bound to it, the embedded kernels, pinned staging buffers, the
 * caching allocator), buffers, op validation and dispatch, and the entry point the stub in
 * libpolytrain calls (cuda_stub.c). Work is queued asynchronously on the stream; read() and
 * synchronize() wait. run() never allocates device memory: scratch is the op's workspace,
 * cuBLAS gets a workspace of its own at open. GEMMs and convolutions run in each op's math
 * mode (pt_op.math: fp32, or tf32/bf16/fp16 where precision() accepts it for the device's
 * compute capability, which is what `--precision` asks for); nothing is switched per device.
 * Options from the environment: PT_CUDA_CONV_BENCHMARK=0 keeps cuDNN's heuristic algorithm
 * instead of measuring, PT_CUDA_CONV_WS_MB caps a convolution's workspace. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cuda/cuda_module.h"
#include "backends/cuda/cudam_internal.h"

extern const unsigned long long pt_cuda_fatbin[];

#ifndef PT_CUDA_ARCHS_DESC
#define PT_CUDA_ARCHS_DESC "?"
#endif

#define CU_CUBLAS_WS_BYTES ((size_t)32 << 20)
#define CU_MAX_CACHED_BYTES ((size_t)4 << 30)

static int env_flag(const char *name, int dflt)
{
    const char *v = getenv(name);
    if (!v || !*v) return dflt;
    return strcmp(v, "0") != 0;
}

/* ---- backend context ---- */

static pt_status no_device_error(cudaError_t rc, int driver, pt_error *err)
{
    int runtime = 0;
    cudaRuntimeGetVersion(&runtime);
    if (rc == cudaErrorInsufficientDriver && driver == 0)
        return pt_fail(err, PT_ERR_UNSUPPORTED,
                       "no NVIDIA driver: libcuda.so.1 is not installed or not loadable, so no GPU can be used "
                       "(cudaGetDeviceCount: %s)",
                       cudaGetErrorName(rc));
    if (rc == cudaErrorInsufficientDriver)
        return pt_fail(err, PT_ERR_UNSUPPORTED,
                       "the NVIDIA driver supports CUDA %d.%d but this build's runtime is CUDA %d.%d: update the "
                       "driver",
                       driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
    if (rc == cudaErrorNoDevice || rc == cudaSuccess)
        return pt_fail(err, PT_ERR_UNSUPPORTED, "no CUDA GPU found (driver %d.%d is installed; CUDA_VISIBLE_DEVICES=%s)",
                       driver / 1000, driver % 1000 / 10,
                       getenv("CUDA_VISIBLE_DEVICES") ? getenv("CUDA_VISIBLE_DEVICES") : "(unset)");
    return cu_fail_cuda(err, rc, "cudaGetDeviceCount", __FILE__, __LINE__);
}

static pt_status cu_init(void **backend_ctx, pt_error *err)
{
    *backend_ctx = NULL;
    int driver = 0, count = 0;
    cudaDriverGetVersion(&driver);
    cudaError_t rc = cudaGetDeviceCount(&count);
    if (rc != cudaSuccess || count <= 0) return no_device_error(rc, driver, err);
    cu_backend *be = calloc(1, sizeof *be);
    if (be) be->dev = calloc((size_t)count, sizeof *be->dev);
    if (!be || !be->dev) {
        free(be);
        return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    }
    pthread_mutex_init(&be->lock, NULL);
    be->count = count;
    be->driver_version = driver;
    cudaRuntimeGetVersion(&be->runtime_version);
    be->cudnn_version = cudnnGetVersion();
    be->cublas_version = 0;
    for (int i = 0; i < count; i++) {
        struct cudaDeviceProp prop;
        cu_device_entry *e = &be->dev[i];
        if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
            snprintf(e->name, sizeof e->name, "CUDA device %d (properties unreadable)", i);
            continue;
        }
        snprintf(e->name, sizeof e->name, "%.119s", prop.name);
        e->major = prop.major;
        e->minor = prop.minor;
        e->sms = prop.multiProcessorCount;
        e->total_mem = prop.totalGlobalMem;
        snprintf(e->pci, sizeof e->pci, "%04x:%02x:%02x", prop.pciDomainID, prop.pciBusID, prop.pciDeviceID);
    }
    *backend_ctx = be;
    return PT_OK;
}

static void cu_shutdown(void *backend_ctx)
{
    cu_backend *be = backend_ctx;
    if (!be) return;
    cu_nccl_unload(be);
    pthread_mutex_destroy(&be->lock);
    free(be->dev);
    free(be);
}

static int cu_device_count(void *backend_ctx)
{
    return ((cu_backend *)backend_ctx)->count;
}

static pt_status cu_device_info(void *backend_ctx, int index, pt_device_info *out, pt_error *err)
{
    cu_backend *be = backend_ctx;
    if (index < 0 || index >= be->count)
        return pt_fail(err, PT_ERR_INVALID, "cuda backend has %d device(s), no device %d", be->count, index);
    const cu_device_entry *e = &be->dev[index];
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", e->name);
    out->kind = PT_DEVICE_GPU;
    out->memory_bytes = e->total_mem;
    out->compute_units = e->sms;
    out->threads = 1;
    snprintf(out->details, sizeof out->details,
             "sm_%d%d, PCI %s, driver %d.%d, runtime %d.%d, cuDNN %zu.%zu.%zu, cuBLAS, kernels %s", e->major,
             e->minor, e->pci, be->driver_version / 1000, be->driver_version % 1000 / 10, be->runtime_version / 1000,
             be->runtime_version % 1000 / 10, be->cudnn_version / 10000, be->cudnn_version / 100 % 100,
             be->cudnn_version % 100, PT_CUDA_ARCHS_DESC);
    return PT_OK;
}

/* ---- allocator callbacks ---- */

static void *dev_alloc(void *user, size_t bytes, int *oom, pt_error *err)
{
    cu_device *d = user;
    void *p = NULL;
    cudaError_t rc = cudaMalloc(&p, bytes);
    if (rc == cudaSuccess) return p;
    cudaGetLastError(); /* clear the sticky-free error state */
    *oom = rc == cudaErrorMemoryAllocation;
    if (!*oom) cu_fail_cuda(err, rc, "cudaMalloc", __FILE__, __LINE__);
    (void)d;
    return NULL;
}

static void dev_release(void *user, void *ptr)
{
    (void)user;
    cudaFree(ptr);
}

static int dev_meminfo(void *user, size_t *fr, size_t *total)
{
    (void)user;
    return cudaMemGetInfo(fr, total) == cudaSuccess;
}

/* ---- device ---- */

static void release_device(cu_device *d)
{
    cudaSetDevice(d->ordinal);
    if (d->stream) cudaStreamSynchronize(d->stream);
    cu_copy_queue_close(d);
    cu_conv_cache_free(d);
    cu_bn_cache_free(d);
    if (d->cudnn) cudnnDestroy(d->cudnn);
    if (d->cublas) cublasDestroy(d->cublas);
    if (d->cublas_ws) cudaFree(d->cublas_ws);
    for (int h = 0; h < 2; h++) {
        if (d->staged[h]) cudaEventDestroy(d->staged[h]);
        if (d->staging[h]) cudaFreeHost(d->staging[h]);
    }
    if (d->lib) cudaLibraryUnload(d->lib);
    if (d->alloc.ops.alloc) pt_cuda_alloc_destroy(&d->alloc);
    if (d->stream) cudaStreamDestroy(d->stream);
    free(d);
}

/* The embedded kernels hold no code this GPU runs (no SASS for it, PTX too new for the driver). */
static int no_image(cudaError_t rc)
{
    return rc == cudaErrorNoKernelImageForDevice || rc == cudaErrorUnsupportedPtxVersion || rc == cudaErrorInvalidPtx;
}

static pt_status no_image_error(const cu_device *d, cudaError_t rc, pt_error *err)
{
    return pt_fail(err, PT_ERR_UNSUPPORTED,
                   "cuda: this build's kernels (%s) cannot run on %s (sm_%d%d): %s; rebuild with "
                   "-DPT_CUDA_ARCHS=%d%d, or update the driver for the embedded PTX",
                   PT_CUDA_ARCHS_DESC, d->info->name, d->info->major, d->info->minor, cudaGetErrorName(rc),
                   d->info->major, d->info->minor);
}

static pt_status open_parts(cu_device *d, pt_error *err)
{
    CU_CHECK(cudaSetDevice(d->ordinal), err);
    CU_CHECK(cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking), err);
    PT_TRY(cu_copy_queue_open(d, err));
    cudaError_t rc = cudaLibraryLoadData(&d->lib, pt_cuda_fatbin, NULL, NULL, 0, NULL, NULL, 0);
    if (no_image(rc)) return no_image_error(d, rc, err);
    if (rc != cudaSuccess) return cu_fail_cuda(err, rc, "cudaLibraryLoadData (embedded kernels)", __FILE__, __LINE__);
    for (int i = 0; i < PT_K_COUNT; i++) {
        const char *name = pt_kernel_info_of((pt_kernel_id)i)->name;
        rc = cudaLibraryGetKernel(&d->k[i], d->lib, name);
        if (rc != cudaSuccess) {
            cu_fail_cuda(err, rc, "cudaLibraryGetKernel", __FILE__, __LINE__);
            return pt_error_wrap(err, "kernel %s", name);
        }
    }
    /* With lazy loading (the default since CUDA 12.2) the library is loaded onto the device
     * only when a kernel is first used: ask for one kernel's attributes now, so that a build
     * without code for this GPU says so here and not at the first launch. */
    struct cudaFuncAttributes fa;
    rc = cudaFuncGetAttributes(&fa, (const void *)d->k[0]);
    if (no_image(rc)) {
        cudaGetLastError();
        return no_image_error(d, rc, err);
    }
    if (rc != cudaSuccess) return cu_fail_cuda(err, rc, "cudaFuncGetAttributes (loading the kernels)", __FILE__, __LINE__);
    cu_kernel_signatures(d);
    for (int h = 0; h < 2; h++) {
        CU_CHECK(cudaHostAlloc(&d->staging[h], CU_STAGING_BYTES, cudaHostAllocDefault), err);
        CU_CHECK(cudaEventCreateWithFlags(&d->staged[h], cudaEventDisableTiming), err);
    }
    CUBLAS_CHECK(cublasCreate(&d->cublas), err);
    CUBLAS_CHECK(cublasSetStream(d->cublas, d->stream), err);
    /* no TF32 unless a call asks for it (cudam_gemm.c chooses per call) */
    CUBLAS_CHECK(cublasSetMathMode(d->cublas, CUBLAS_DEFAULT_MATH), err);
    d->cublas_ws_bytes = CU_CUBLAS_WS_BYTES;
    rc = cudaMalloc(&d->cublas_ws, d->cublas_ws_bytes);
    if (rc != cudaSuccess) {
        cudaGetLastError();
        d->cublas_ws = NULL;
        return pt_fail(err, PT_ERR_NOMEM, "cuda: out of device memory on %s: asked for %zu bytes for cuBLAS's workspace",
                       d->info->name, d->cublas_ws_bytes);
    }
    CUBLAS_CHECK(cublasSetWorkspace(d->cublas, d->cublas_ws, d->cublas_ws_bytes), err);
    CUDNN_CHECK(cudnnCreate(&d->cudnn), err);
    CUDNN_CHECK(cudnnSetStream(d->cudnn, d->stream), err);
    return PT_OK;
}

static pt_status cu_device_open(void *backend_ctx, int index, const pt_device_options *opt, void **dev_ctx,
                                pt_error *err)
{
    cu_backend *be = backend_ctx;
    *dev_ctx = NULL;
    if (index < 0 || index >= be->count)
        return pt_fail(err, PT_ERR_INVALID, "cuda backend has %d device(s), no device %d", be->count, index);
    cu_device *d = calloc(1, sizeof *d);
    if (!d) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    d->be = be;
    d->ordinal = index;
    d->info = &be->dev[index];
    d->deterministic = opt && opt->deterministic;
    d->math_caps = pt_cuda_math_caps(d->info->major, d->info->minor);
    d->act16_caps = pt_cuda_act16_caps(d->info->major, d->info->minor);
    if (pt_kact16_setting("PT_CUDA_ACT16", &d->act16_copy, err) != PT_OK) {
        free(d);
        return err ? err->status : PT_ERR_INVALID;
    }
    /* measuring picks by timing, which may differ run to run: never when deterministic */
    d->conv_benchmark = !d->deterministic && env_flag("PT_CUDA_CONV_BENCHMARK", 1);
    const char *wsmb = getenv("PT_CUDA_CONV_WS_MB");
    d->ws_cap = wsmb && *wsmb ? (size_t)strtoull(wsmb, NULL, 10) << 20 : (size_t)512 << 20;
    if (d->info->total_mem && d->ws_cap > d->info->total_mem / 8) d->ws_cap = d->info->total_mem / 8;
    pt_algo_cache_init(&d->convs);
    pt_algo_cache_init(&d->bns);
    const pt_cuda_alloc_ops ops = {dev_alloc, dev_release, dev_meminfo, d};
    char name[200];
    snprintf(name, sizeof name, "cuda device %d (%s)", index, d->info->name);
    pt_cuda_alloc_init(&d->alloc, &ops, name, CU_MAX_CACHED_BYTES);
    pt_status st = open_parts(d, err);
    if (st != PT_OK) {
        pt_error_wrap(err, "opening cuda device %d (%s)", index, d->info->name);
        release_device(d);
        return st;
    }
    *dev_ctx = d;
    return PT_OK;
}

static void cu_device_close(void *dev_ctx)
{
    if (dev_ctx) release_device(dev_ctx);
}

static pt_status cu_buffer_alloc(void *dev_ctx, size_t bytes, pt_buffer **out, pt_error *err)
{
    cu_device *d = dev_ctx;
    *out = NULL;
    /* cudaMalloc would end the capture, and the graph would never hold the buffer */
    if (d->capturing) return pt_fail(err, PT_ERR_INVALID, "cuda: buffer_alloc() during a graph capture");
    pt_buffer *b = malloc(sizeof *b);
    if (!b) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    CU_CHECK(cudaSetDevice(d->ordinal), err);
    pt_status st = pt_cuda_alloc_get(&d->alloc, bytes, &b->ptr, &b->block, err);
    if (st != PT_OK) {
        free(b);
        return st;
    }
    b->bytes = bytes;
    *out = b;
    return PT_OK;
}

static void cu_buffer_free(void *dev_ctx, pt_buffer *buf)
{
    cu_device *d = dev_ctx;
    if (!buf) return;
    cudaSetDevice(d->ordinal);
    pt_cuda_alloc_put(&d->alloc, buf->ptr, buf->block);
    free(buf);
}

static pt_status check_range(pt_mem m, size_t bytes, const char *what, pt_error *err)
{
    if (!m.buf) return pt_fail(err, PT_ERR_INVALID, "cuda %s: no buffer", what);
    if (m.off > m.buf->bytes || bytes > m.buf->bytes - m.off)
        return pt_fail(err, PT_ERR_INVALID, "cuda %s: %zu bytes at offset %zu exceed the buffer's %zu", what, bytes,
                       m.off, m.buf->bytes);
    return PT_OK;
}

/* Host to device through the pinned halves: the caller's memory is free on return, the copy
 * itself stays queued (a half is refilled once its previous copy has completed). */
static pt_status cu_write(void *dev_ctx, pt_mem dst, const void *src, size_t bytes, pt_error *err)
{
    cu_device *d = dev_ctx;
    if (d->capturing) return pt_fail(err, PT_ERR_INVALID, "cuda: write() during a graph capture");
    PT_TRY(check_range(dst, bytes, "write", err));
    CU_CHECK(cudaSetDevice(d->ordinal), err);
    for (size_t done = 0; done < bytes;) {
        const size_t n = bytes - done < CU_STAGING_BYTES ? bytes - done : CU_STAGING_BYTES;
        const int h = d->next_half;
        d->next_half ^= 1;
        CU_CHECK(cudaEventSynchronize(d->staged[h]), err);
        memcpy(d->staging[h], (const char *)src + done, n);
        CU_CHECK(cudaMemcpyAsync((char *)dst.buf->ptr + dst.off + done, d->staging[h], n, cudaMemcpyHostToDevice,
                                 d->stream),
                 err);
        CU_CHECK(cudaEventRecord(d->staged[h], d->stream), err);
        done += n;
    }
    return PT_OK;
}

static pt_status cu_read(void *dev_ctx, void *dst, pt_mem src, size_t bytes, pt_error *err)
{
    cu_device *d = dev_ctx;
    if (d->capturing) return pt_fail(err, PT_ERR_INVALID, "cuda: read() during a graph capture");
    PT_TRY(check_range(src, bytes, "read", err));
    CU_CHECK(cudaSetDevice(d->ordinal), err);
    /* memory the copy stream writes (an input slot) is read as last written there too */
    if (d->copy_stream) CU_CHECK(cudaStreamSynchronize(d->copy_stream), err);
    for (size_t done = 0; done < bytes;) {
        const size_t n = bytes - done < CU_STAGING_BYTES ? bytes - done : CU_STAGING_BYTES;
        CU_CHECK(cudaMemcpyAsync(d->staging[0], (const char *)src.buf->ptr + src.off + done, n,
                                 cudaMemcpyDeviceToHost, d->stream),
                 err);
        CU_CHECK(cudaStreamSynchronize(d->stream), err);
        memcpy((char *)dst + done, d->staging[0], n);
        done += n;
    }
    if (!bytes) CU_CHECK(cudaStreamSynchronize(d->stream), err);
    return PT_OK;
}

static pt_status cu_copy(void *dev_ctx, pt_mem dst, pt_mem src, size_t bytes, pt_error *err)
{
    cu_device *d = dev_ctx;
    PT_TRY(check_range(dst, bytes, "copy destination", err));
    PT_TRY(check_range(src, bytes, "copy source", err));
    if (!bytes || (dst.buf == src.buf && dst.off == src.off)) return PT_OK;
    CU_CHECK(cudaSetDevice(d->ordinal), err);
    if (dst.buf == src.buf && dst.off < src.off + bytes && src.off < dst.off + bytes) {
        /* memmove semantics (cudaMemcpy leaves overlap undefined) through host memory, a
         * path no training step takes */
        void *tmp = malloc(bytes);
        if (!tmp) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
        pt_status st = cu_read(d, tmp, src, bytes, err);
        if (st == PT_OK) st = cu_write(d, dst, tmp, bytes, err);
        if (st == PT_OK) {
            cudaError_t rc = cudaStreamSynchronize(d->stream);
            if (rc != cudaSuccess) st = cu_fail_cuda(err, rc, "cudaStreamSynchronize", __FILE__, __LINE__);
        }
        free(tmp);
        return st;
    }
    CU_CHECK(cudaMemcpyAsync((char *)dst.buf->ptr + dst.off, (const char *)src.buf->ptr + src.off, bytes,
                             cudaMemcpyDeviceToDevice, d->stream),
             err);
    return PT_OK;
}

static pt_status cu_synchronize(void *dev_ctx, pt_error *err)
{
    cu_device *d = dev_ctx;
    if (d->capturing) return pt_fail(err, PT_ERR_INVALID, "cuda: synchronize() during a graph capture");
    CU_CHECK(cudaSetDevice(d->ordinal), err);
    CU_CHECK(cudaStreamSynchronize(d->stream), err);
    if (d->copy_stream) CU_CHECK(cudaStreamSynchronize(d->copy_stream), err);
    return PT_OK;
}

/* ---- ops ---- */

static size_t buffer_bytes(const pt_buffer *b) { return b->bytes; }

/* d NULL (no device opened): fp32 only, the math modes depend on the device. */
static pt_status validate(const cu_device *d, const pt_op *op, int check_memory, pt_error *err)
{
    /* fused ReLU and the BN forwards' residual: the shared add and BN kernels take them as
     * flags; cuDNN's BN fuses them where it can, else the shared add or ReLU follows in place
     * (cudam_bn.c) */
    const unsigned caps = PT_CAP_MIXUP_TARGETS | PT_CAP_FUSED_RELU | PT_CAP_BN_ADD | PT_CAP_NHWC |
                          (d ? d->math_caps | d->act16_caps : 0u);
    PT_TRY(pt_op_check_operands(op, "cuda", caps, check_memory, err));
    return check_memory ? pt_op_check_memory(op, "cuda", buffer_bytes, 4, err) : PT_OK;
}

static int cu_supports(void *dev_ctx, const pt_op *op)
{
    return validate(dev_ctx, op, 0, NULL) == PT_OK;
}

static pt_status cu_precision(void *dev_ctx, pt_precision p, char *how, size_t cap, pt_error *err)
{
    const cu_device *d = dev_ctx;
    char label[160]; /* "0 (NVIDIA H200)": the messages name the device as `devices` does */
    snprintf(label, sizeof label, "%d (%s)", d->ordinal, d->info->name);
    return pt_cuda_precision_check(label, d->info->major, d->info->minor, p, how, cap, err);
}

/* The workspace of an op whose operands are all float32 (or integers). */
static size_t f32_workspace_size(void *dev_ctx, const pt_op *op)
{
    cu_device *d = dev_ctx;
    switch (op->kind) {
    case PT_OP_CONV2D_FWD:
    case PT_OP_CONV2D_BWD_DATA:
    case PT_OP_CONV2D_BWD_FILTER:
        if (op->nt != 3) return 0;
        cudaSetDevice(d->ordinal);
        return cu_conv_workspace(d, op);
    case PT_OP_BN_FWD_TRAIN:
    case PT_OP_BN_BWD:
        if (!d->deterministic && cu_bn_cudnn_applies(op)) {
            /* cuDNN's, or the shared kernels' should cuDNN refuse the type or layout */
            cudaSetDevice(d->ordinal);
            const pt_kdev k = cu_kdev(d);
            const size_t own = cu_bn_workspace(d, op), shared = pt_kops_workspace(&k, op);
            return own > shared ? own : shared;
        }
        break;
    default: break;
    }
    /* the shared layer's: GEMMs in bf16/fp16 convert A and B into the workspace */
    const pt_kdev k = cu_kdev(d);
    return pt_kops_workspace(&k, op);
}

/* cuDNN and cuBLAS where they serve, the shared kernel layer for everything else. */
static pt_status dispatch_f32(void *dev_ctx, const pt_op *op, pt_error *err)
{
    cu_device *d = dev_ctx;
    switch (op->kind) {
    case PT_OP_CONV2D_FWD:
    case PT_OP_CONV2D_BWD_DATA:
    case PT_OP_CONV2D_BWD_FILTER: return cu_op_conv2d(d, op, err);
    case PT_OP_BN_FWD_TRAIN:
    case PT_OP_BN_BWD:
        /* deterministic: the shared kernels, which use no atomics */
        if (!d->deterministic && cu_bn_cudnn_applies(op)) return cu_op_bn_cudnn(d, op, err);
        break;
    default: break;
    }
    const pt_kdev k = cu_kdev(d);
    return pt_kops_run(&k, op, err);
}

/* 16-bit activations and NHWC images (backends/kernels/kernel_act16.c): the operands each path
 * takes where they are stored, the others as float32 NCHW copies in the op's workspace.
 * Convolutions: cuDNN reads x and writes y in the 16-bit type of the op's math mode, and in
 * bf16/fp16 runs channels last where an image is NHWC (pt_conv_takes). Batch norm through cuDNN
 * (forward: x and y in one type and layout; backward: x, dy, dx in one layout, a 16-bit x widened
 * by the op itself): every operand as stored. Everything else: the shared kernels' 16-bit twins
 * and NHWC forms. */
static unsigned all_stored(const pt_op *op)
{
    unsigned m = 0;
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++)
        if (pt_act16_stored(op, i)) m |= 1u << i;
    return m;
}

static unsigned cu_act16_mask(cu_device *d, const pt_op *op)
{
    if (d->act16_copy) return 0;
    switch (op->kind) {
    case PT_OP_CONV2D_FWD:
    case PT_OP_CONV2D_BWD_DATA:
    case PT_OP_CONV2D_BWD_FILTER: return pt_conv_takes(op);
    case PT_OP_BN_FWD_TRAIN:
    case PT_OP_BN_BWD:
        if (!d->deterministic && cu_bn_cudnn_applies(op)) return all_stored(op);
        break;
    default: break;
    }
    const pt_kdev k = cu_kdev(d);
    return pt_kops_act16_native(&k, op);
}

/* What --act-storage auto stores: every 16-bit operand taken where it is stored, and the
 * batch-norm backward's x, which the shared kernels' path takes through a float32 copy (one
 * pass over x; cuDNN's path widens it itself); its forward and the convolutions on either side
 * read and write half the bytes. */
static int cu_act16_native(void *dev_ctx, const pt_op *op)
{
    cu_device *d = dev_ctx;
    if (d->act16_copy) return 0;
    if (op->kind == PT_OP_BN_BWD) return 1;
    return pt_act16_all_native(op, cu_act16_mask(d, op));
}

static size_t cu_workspace_size(void *dev_ctx, const pt_op *op)
{
    if (!pt_act16_any(op)) return f32_workspace_size(dev_ctx, op);
    const pt_kdev k = cu_kdev(dev_ctx);
    return pt_kact16_workspace(&k, op, cu_act16_mask(dev_ctx, op), f32_workspace_size, dev_ctx);
}

static pt_status dispatch(cu_device *d, const pt_op *op, pt_error *err)
{
    if (!pt_act16_any(op)) return dispatch_f32(d, op, err);
    const pt_kdev k = cu_kdev(d);
    return pt_kact16_run(&k, op, cu_act16_mask(d, op), f32_workspace_size, dispatch_f32, d, err);
}

static pt_status cu_run(void *dev_ctx, const pt_op *op, pt_error *err)
{
    cu_device *d = dev_ctx;
    PT_TRY(validate(d, op, 1, err));
    CU_CHECK(cudaSetDevice(d->ordinal), err);
    return dispatch(d, op, err);
}

static const pt_backend_iface cu_iface = {
    .api_version = PT_BACKEND_API_VERSION,
    .name = "cuda",
    .init = cu_init,
    .shutdown = cu_shutdown,
    .device_count = cu_device_count,
    .device_info = cu_device_info,
    .device_open = cu_device_open,
    .device_close = cu_device_close,
    .buffer_alloc = cu_buffer_alloc,
    .buffer_free = cu_buffer_free,
    .write = cu_write,
    .read = cu_read,
    .copy = cu_copy,
    .synchronize = cu_synchronize,
    .supports = cu_supports,
    .act16_native = cu_act16_native,
    .workspace_size = cu_workspace_size,
    .run = cu_run,
    .group_open = cu_group_open,
    .group_close = cu_group_close,
    .group_allreduce_f32 = cu_group_allreduce_f32,
    .group_broadcast = cu_group_broadcast,
    .precision = cu_precision,
    .graph_capable = cu_graph_capable,
    .graph_begin = cu_graph_begin,
    .graph_end = cu_graph_end,
    .graph_launch = cu_graph_launch,
    .graph_free = cu_graph_free,
    .pinned_capable = cu_pinned_capable,
    .host_alloc = cu_host_alloc,
    .host_free = cu_host_free,
    .write_async = cu_write_async,
    .write_fence_wait = cu_write_fence_wait,
    .compute_fence = cu_compute_fence,
    .copy_wait = cu_copy_wait,
};

__attribute__((visibility("default"))) const pt_backend_iface *pt_cuda_module_entry(int api_version,
                                                                                    size_t iface_size)
{
    if (api_version != PT_BACKEND_API_VERSION || iface_size != sizeof(pt_backend_iface)) return NULL;
    return &cu_iface;
}
