/* pt_device: an opened device of some backend, and the thin checked wrappers the core
 * uses to reach it. Everything the core does to device memory goes through here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "polytrain/backend.h"

pt_status pt_device_open(const char *backend, int index, const pt_device_options *opt,
                         pt_device **out, pt_error *err)
{
    *out = NULL;
    const pt_backend_iface *be = pt_backend_find(backend);
    if (!be) return pt_fail(err, PT_ERR_INVALID, "backend '%s' is not compiled in", backend);
    void *bctx = NULL;
    PT_TRY(pt_backend_context(be, &bctx, err));
    int n = be->device_count(bctx);
    if (index < 0 || index >= n)
        return pt_fail(err, PT_ERR_INVALID, "backend '%s' has %d device(s), no device %d", backend,
                       n, index);
    pt_device *dev = calloc(1, sizeof *dev);
    if (!dev) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    dev->be = be;
    dev->index = index;
    pt_status st = be->device_info(bctx, index, &dev->info, err);
    if (st == PT_OK) {
        pt_device_options defaults;
        memset(&defaults, 0, sizeof defaults);
        st = be->device_open(bctx, index, opt ? opt : &defaults, &dev->ctx, err);
        /* Again after opening: a backend may add what opening measured (program build and
         * library warm-up times). The thread count is what this device was opened with. */
        pt_error ignore;
        if (st == PT_OK) be->device_info(bctx, index, &dev->info, &ignore);
        if (st == PT_OK && opt && opt->threads > 0) dev->info.threads = opt->threads;
    }
    if (st != PT_OK) {
        free(dev);
        return st;
    }
    *out = dev;
    return PT_OK;
}

void pt_device_close(pt_device *dev)
{
    if (!dev) return;
    dev->be->device_close(dev->ctx);
    free(dev);
}

pt_status pt_device_alloc(pt_device *dev, size_t bytes, pt_buffer **out, pt_error *err)
{
    return dev->be->buffer_alloc(dev->ctx, bytes, out, err);
}

void pt_device_free(pt_device *dev, pt_buffer *buf)
{
    if (buf) dev->be->buffer_free(dev->ctx, buf);
}

pt_status pt_device_write(pt_device *dev, pt_mem dst, const void *src, size_t bytes, pt_error *err)
{
    return dev->be->write(dev->ctx, dst, src, bytes, err);
}

pt_status pt_device_read(pt_device *dev, void *dst, pt_mem src, size_t bytes, pt_error *err)
{
    return dev->be->read(dev->ctx, dst, src, bytes, err);
}

pt_status pt_device_run(pt_device *dev, const pt_op *op, pt_error *err)
{
    return dev->be->run(dev->ctx, op, err);
}

pt_status pt_device_sync(pt_device *dev, pt_error *err)
{
    return dev->be->synchronize(dev->ctx, err);
}

pt_status pt_device_precision(pt_device *dev, pt_precision p, char *how, size_t cap, pt_error *err)
{
    if (how && cap) how[0] = '\0';
    if ((unsigned)p >= PT_PREC_COUNT)
        return pt_fail(err, PT_ERR_INVALID, "precision %d: expected one of %s", (int)p, pt_precision_choices());
    if (dev->be->precision) return dev->be->precision(dev->ctx, p, how, cap, err);
    if (p == PT_PREC_FP32) {
        if (how && cap) snprintf(how, cap, "float32");
        return PT_OK;
    }
    return pt_fail(err, PT_ERR_UNSUPPORTED, "%s device %d (%s) computes in fp32 only: --precision %s is not available",
                   dev->be->name, dev->index, dev->info.name, pt_precision_name(p));
}

int pt_device_graph_capable(pt_device *dev, char *why, size_t cap)
{
    const pt_backend_iface *be = dev->be;
    if (!be->graph_capable || !be->graph_begin || !be->graph_end || !be->graph_launch || !be->graph_free) {
        if (why && cap) snprintf(why, cap, "the %s backend launches every op by itself", be->name);
        return 0;
    }
    if (why && cap) why[0] = '\0';
    return be->graph_capable(dev->ctx, why, cap);
}

int pt_device_pinned_input(const pt_device *dev)
{
    const pt_backend_iface *be = dev->be;
    return be->pinned_capable && be->host_alloc && be->host_free && be->write_async && be->write_fence_wait &&
           be->pinned_capable(dev->ctx);
}
