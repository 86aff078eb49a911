/* The cuda backend as compiled into libpolytrain: a stub that loads the real backend, the
 * module libpolytrain_cuda.so (CUDA runtime, cuBLAS, cuDNN), on first use and forwards every
 * call to it. polytrain therefore starts on a machine without a GPU, a driver, cuDNN or NCCL;
 * only using the cuda backend there fails, with an error naming what is missing.
 * Device and group contexts are wrapped so that each carries the module's table. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cuda/cuda_loader.h"
#include "backends/cuda/cuda_module.h"

typedef struct stub_backend {
    void *handle;
    const pt_backend_iface *m;
    void *ctx;
    char path[4096];
} stub_backend;

typedef struct stub_device {
    const pt_backend_iface *m;
    void *ctx;
} stub_device;

typedef struct stub_group {
    const pt_backend_iface *m;
    void *group;
} stub_group;

static pt_status stub_init(void **backend_ctx, pt_error *err)
{
    *backend_ctx = NULL;
    stub_backend *b = calloc(1, sizeof *b);
    if (!b) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    pt_status st = pt_cuda_module_open(&b->handle, b->path, sizeof b->path, err);
    if (st != PT_OK) {
        free(b);
        return st;
    }
    pt_cuda_module_entry_fn entry;
    *(void **)&entry = dlsym(b->handle, PT_CUDA_MODULE_ENTRY);
    b->m = entry ? entry(PT_BACKEND_API_VERSION, sizeof(pt_backend_iface)) : NULL;
    if (!b->m) {
        st = pt_fail(err, PT_ERR_BACKEND,
                     "the cuda module %s %s (rebuild it with this polytrain: backend API %d)", b->path,
                     entry ? "was built for another backend API" : "has no entry point " PT_CUDA_MODULE_ENTRY,
                     PT_BACKEND_API_VERSION);
        dlclose(b->handle);
        free(b);
        return st;
    }
    st = b->m->init(&b->ctx, err);
    if (st != PT_OK) {
        /* the module stays loaded: cudart and cuDNN do not all unload cleanly */
        free(b);
        return st;
    }
    *backend_ctx = b;
    return PT_OK;
}

static void stub_shutdown(void *backend_ctx)
{
    stub_backend *b = backend_ctx;
    if (!b) return;
    b->m->shutdown(b->ctx);
    free(b);
}

static int stub_device_count(void *backend_ctx)
{
    stub_backend *b = backend_ctx;
    return b->m->device_count(b->ctx);
}

static pt_status stub_device_info(void *backend_ctx, int index, pt_device_info *out, pt_error *err)
{
    stub_backend *b = backend_ctx;
    return b->m->device_info(b->ctx, index, out, err);
}

static pt_status stub_device_open(void *backend_ctx, int index, const pt_device_options *opt, void **dev_ctx,
                                  pt_error *err)
{
    stub_backend *b = backend_ctx;
    *dev_ctx = NULL;
    stub_device *d = calloc(1, sizeof *d);
    if (!d) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    d->m = b->m;
    pt_status st = b->m->device_open(b->ctx, index, opt, &d->ctx, err);
    if (st != PT_OK) {
        free(d);
        return st;
    }
    *dev_ctx = d;
    return PT_OK;
}

static void stub_device_close(void *dev_ctx)
{
    stub_device *d = dev_ctx;
    if (!d) return;
    d->m->device_close(d->ctx);
    free(d);
}

#define DEV(x) ((stub_device *)(x))

static pt_status stub_buffer_alloc(void *dev_ctx, size_t bytes, pt_buffer **out, pt_error *err)
{
    return DEV(dev_ctx)->m->buffer_alloc(DEV(dev_ctx)->ctx, bytes, out, err);
}

static void stub_buffer_free(void *dev_ctx, pt_buffer *buf)
{
    DEV(dev_ctx)->m->buffer_free(DEV(dev_ctx)->ctx, buf);
}

static pt_status stub_write(void *dev_ctx, pt_mem dst, const void *src, size_t bytes, pt_error *err)
{
    return DEV(dev_ctx)->m->write(DEV(dev_ctx)->ctx, dst, src, bytes, err);
}

static pt_status stub_read(void *dev_ctx, void *dst, pt_mem src, size_t bytes, pt_error *err)
{
    return DEV(dev_ctx)->m->read(DEV(dev_ctx)->ctx, dst, src, bytes, err);
}

static pt_status stub_copy(void *dev_ctx, pt_mem dst, pt_mem src, size_t bytes, pt_error *err)
{
    return DEV(dev_ctx)->m->copy(DEV(dev_ctx)->ctx, dst, src, bytes, err);
}

static pt_status stub_synchronize(void *dev_ctx, pt_error *err)
{
    return DEV(dev_ctx)->m->synchronize(DEV(dev_ctx)->ctx, err);
}

static int stub_supports(void *dev_ctx, const pt_op *op)
{
    return DEV(dev_ctx)->m->supports(DEV(dev_ctx)->ctx, op);
}

static int stub_act16_native(void *dev_ctx, const pt_op *op)
{
    const pt_backend_iface *m = DEV(dev_ctx)->m;
    return m->act16_native && m->act16_native(DEV(dev_ctx)->ctx, op);
}

static size_t stub_workspace_size(void *dev_ctx, const pt_op *op)
{
    return DEV(dev_ctx)->m->workspace_size(DEV(dev_ctx)->ctx, op);
}

static pt_status stub_run(void *dev_ctx, const pt_op *op, pt_error *err)
{
    return DEV(dev_ctx)->m->run(DEV(dev_ctx)->ctx, op, err);
}

/* Graph capture and pinned input: the module's (it has every hook; the API version says so). */
static int stub_graph_capable(void *dev_ctx, char *why, size_t cap)
{
    return DEV(dev_ctx)->m->graph_capable(DEV(dev_ctx)->ctx, why, cap);
}
static pt_status stub_graph_begin(void *dev_ctx, pt_error *err)
{
    return DEV(dev_ctx)->m->graph_begin(DEV(dev_ctx)->ctx, err);
}
static pt_status stub_graph_end(void *dev_ctx, void **graph, pt_error *err)
{
    return DEV(dev_ctx)->m->graph_end(DEV(dev_ctx)->ctx, graph, err);
}
static pt_status stub_graph_launch(void *dev_ctx, void *graph, pt_error *err)
{
    return DEV(dev_ctx)->m->graph_launch(DEV(dev_ctx)->ctx, graph, err);
}
static void stub_graph_free(void *dev_ctx, void *graph) { DEV(dev_ctx)->m->graph_free(DEV(dev_ctx)->ctx, graph); }
static int stub_pinned_capable(void *dev_ctx) { return DEV(dev_ctx)->m->pinned_capable(DEV(dev_ctx)->ctx); }
static pt_status stub_host_alloc(void *dev_ctx, size_t bytes, void **ptr, pt_error *err)
{
    return DEV(dev_ctx)->m->host_alloc(DEV(dev_ctx)->ctx, bytes, ptr, err);
}
static void stub_host_free(void *dev_ctx, void *ptr) { DEV(dev_ctx)->m->host_free(DEV(dev_ctx)->ctx, ptr); }
static pt_status stub_write_async(void *dev_ctx, pt_mem dst, const void *src, size_t bytes, uint64_t *fence,
                                  pt_error *err)
{
    return DEV(dev_ctx)->m->write_async(DEV(dev_ctx)->ctx, dst, src, bytes, fence, err);
}
static pt_status stub_write_fence_wait(void *dev_ctx, uint64_t fence, int host, pt_error *err)
{
    return DEV(dev_ctx)->m->write_fence_wait(DEV(dev_ctx)->ctx, fence, host, err);
}
static pt_status stub_compute_fence(void *dev_ctx, uint64_t *fence, pt_error *err)
{
    return DEV(dev_ctx)->m->compute_fence(DEV(dev_ctx)->ctx, fence, err);
}
static pt_status stub_copy_wait(void *dev_ctx, uint64_t fence, pt_error *err)
{
    return DEV(dev_ctx)->m->copy_wait(DEV(dev_ctx)->ctx, fence, err);
}

/* The module's answer (its device's compute capability decides); fp32 only from a module
 * without precision(). */
static pt_status stub_precision(void *dev_ctx, pt_precision p, char *how, size_t cap, pt_error *err)
{
    if (DEV(dev_ctx)->m->precision) return DEV(dev_ctx)->m->precision(DEV(dev_ctx)->ctx, p, how, cap, err);
    if (how && cap) how[0] = '\0';
    if (p == PT_PREC_FP32) {
        if (how && cap) snprintf(how, cap, "float32");
        return PT_OK;
    }
    return pt_fail(err, PT_ERR_UNSUPPORTED, "the cuda module computes in fp32 only: --precision %s is not available",
                   pt_precision_name(p));
}

static pt_status stub_group_open(void *backend_ctx, void *const *dev_ctxs, int ndev, const pt_world *world,
                                 void **group, pt_error *err)
{
    stub_backend *b = backend_ctx;
    *group = NULL;
    if (!b->m->group_open) return pt_fail(err, PT_ERR_UNSUPPORTED, "the cuda module has no device groups");
    if (ndev < 1) return pt_fail(err, PT_ERR_INVALID, "cuda group: %d devices", ndev);
    void **inner = calloc((size_t)ndev, sizeof *inner);
    stub_group *g = calloc(1, sizeof *g);
    if (!inner || !g) {
        free(inner);
        free(g);
        return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    }
    for (int i = 0; i < ndev; i++) inner[i] = DEV(dev_ctxs[i])->ctx;
    g->m = b->m;
    pt_status st = b->m->group_open(b->ctx, inner, ndev, world, &g->group, err);
    free(inner);
    if (st != PT_OK) {
        free(g);
        return st;
    }
    *group = g;
    return PT_OK;
}

static void stub_group_close(void *group)
{
    stub_group *g = group;
    if (!g) return;
    g->m->group_close(g->group);
    free(g);
}

static pt_status stub_group_allreduce_f32(void *group, const pt_mem *bufs, size_t count, pt_error *err)
{
    stub_group *g = group;
    return g->m->group_allreduce_f32(g->group, bufs, count, err);
}

static pt_status stub_group_broadcast(void *group, const pt_mem *bufs, size_t bytes, pt_error *err)
{
    stub_group *g = group;
    return g->m->group_broadcast(g->group, bufs, bytes, err);
}

const pt_backend_iface pt_cuda_backend = {
    .api_version = PT_BACKEND_API_VERSION,
    .name = "cuda",
    .init = stub_init,
    .shutdown = stub_shutdown,
    .device_count = stub_device_count,
    .device_info = stub_device_info,
    .device_open = stub_device_open,
    .device_close = stub_device_close,
    .buffer_alloc = stub_buffer_alloc,
    .buffer_free = stub_buffer_free,
    .write = stub_write,
    .read = stub_read,
    .copy = stub_copy,
    .synchronize = stub_synchronize,
    .supports = stub_supports,
    .act16_native = stub_act16_native,
    .workspace_size = stub_workspace_size,
    .run = stub_run,
    .group_open = stub_group_open,
    .group_close = stub_group_close,
    .group_allreduce_f32 = stub_group_allreduce_f32,
    .group_broadcast = stub_group_broadcast,
    .precision = stub_precision,
    .graph_capable = stub_graph_capable,
    .graph_begin = stub_graph_begin,
    .graph_end = stub_graph_end,
    .graph_launch = stub_graph_launch,
    .graph_free = stub_graph_free,
    .pinned_capable = stub_pinned_capable,
    .host_alloc = stub_host_alloc,
    .host_free = stub_host_free,
    .write_async = stub_write_async,
    .write_fence_wait = stub_write_fence_wait,
    .compute_fence = stub_compute_fence,
    .copy_wait = stub_copy_wait,
};
