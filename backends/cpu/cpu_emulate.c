/* The graph and pinned-input hooks of the backend contract (polytrain/backend.h), emulated on a
 * cpu device for tests (pt_device_options.emulate_graphs): a capture records the ops run()
 * receives instead of executing them and a launch executes the recording, each op reading its
 * step record (pt_op.step) as it runs; an asynchronous write is held back until the device is
 * told to wait for it, so a caller that reads the destination too early, or changes the source
 * before the copy completed, gets different numbers. That makes the core's capture decisions
 * and input double-buffering testable for bitwise equality without a GPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/cpu_internal.h"

typedef struct cpu_recording {
    pt_op *ops;
    int n, cap;
    int failed; /* a call that cannot be recorded came during the capture */
    char why[160];
} cpu_recording;

typedef struct cpu_pending {
    pt_mem dst;
    const void *src;
    size_t bytes;
    uint64_t fence;
} cpu_pending;

int cpu_emu_graph_capable(void *dev_ctx, char *why, size_t cap)
{
    const cpu_device *d = dev_ctx;
    if (!d->emulate && why && cap)
        snprintf(why, cap, "the cpu backend runs each op as it is queued, there is nothing to capture");
    return d->emulate != 0;
}

pt_status cpu_emu_graph_begin(void *dev_ctx, pt_error *err)
{
    cpu_device *d = dev_ctx;
    if (!d->emulate) return pt_fail(err, PT_ERR_UNSUPPORTED, "cpu: no graph capture on this device");
    if (d->rec) return pt_fail(err, PT_ERR_INVALID, "cpu: a capture is already under way");
    d->rec = calloc(1, sizeof *d->rec);
    if (!d->rec) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    return PT_OK;
}

/* A call during a capture that the recording cannot hold: the capture fails at its end. */
int cpu_emu_refuse(cpu_device *d, const char *what)
{
    if (!d->rec) return 0;
    if (!d->rec->failed) snprintf(d->rec->why, sizeof d->rec->why, "%s() during a capture", what);
    d->rec->failed = 1;
    return 1;
}

pt_status cpu_emu_record(cpu_device *d, const pt_op *op, pt_error *err)
{
    cpu_recording *r = d->rec;
    if (r->n == r->cap) {
        const int cap = r->cap ? 2 * r->cap : 64;
        pt_op *ops = realloc(r->ops, (size_t)cap * sizeof *ops);
        if (!ops) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
        r->ops = ops;
        r->cap = cap;
    }
    r->ops[r->n++] = *op;
    return PT_OK;
}

static void free_recording(cpu_recording *r)
{
    if (!r) return;
    free(r->ops);
    free(r);
}

pt_status cpu_emu_graph_end(void *dev_ctx, void **graph, pt_error *err)
{
    cpu_device *d = dev_ctx;
    *graph = NULL;
    cpu_recording *r = d->rec;
    d->rec = NULL;
    if (!r) return pt_fail(err, PT_ERR_INVALID, "cpu: no capture is under way");
    if (d->emulate == 2 && !r->failed) {
        r->failed = 1;
        snprintf(r->why, sizeof r->why, "the device was opened to fail every capture");
    }
    if (r->failed) {
        pt_status st = pt_fail(err, PT_ERR_UNSUPPORTED, "cpu: capture failed: %s", r->why);
        free_recording(r);
        return st;
    }
    *graph = r;
    return PT_OK;
}

pt_status cpu_emu_graph_launch(void *dev_ctx, void *graph, pt_error *err)
{
    cpu_device *d = dev_ctx;
    const cpu_recording *r = graph;
    for (int i = 0; i < r->n; i++) PT_TRY(cpu_execute(d, &r->ops[i], err));
    return PT_OK;
}

void cpu_emu_graph_free(void *dev_ctx, void *graph)
{
    (void)dev_ctx;
    free_recording(graph);
}

int cpu_emu_pinned_capable(void *dev_ctx) { return ((const cpu_device *)dev_ctx)->emulate != 0; }

pt_status cpu_emu_host_alloc(void *dev_ctx, size_t bytes, void **ptr, pt_error *err)
{
    (void)dev_ctx;
    *ptr = malloc(bytes ? bytes : 1);
    return *ptr ? PT_OK : pt_fail(err, PT_ERR_NOMEM, "out of host memory for %zu pinned bytes", bytes);
}

void cpu_emu_host_free(void *dev_ctx, void *ptr)
{
    (void)dev_ctx;
    free(ptr);
}

pt_status cpu_emu_write_async(void *dev_ctx, pt_mem dst, const void *src, size_t bytes, uint64_t *fence,
                              pt_error *err)
{
    cpu_device *d = dev_ctx;
    if (!d->emulate) return pt_fail(err, PT_ERR_UNSUPPORTED, "cpu: no asynchronous writes on this device");
    if (d->npending == d->cap_pending) {
        const int cap = d->cap_pending ? 2 * d->cap_pending : 8;
        cpu_pending *p = realloc(d->pending, (size_t)cap * sizeof *p);
        if (!p) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
        d->pending = p;
        d->cap_pending = cap;
    }
    *fence = ++d->next_fence;
    d->pending[d->npending++] = (cpu_pending){dst, src, bytes, *fence};
    return PT_OK;
}

/* Carries out every held write up to fence (they complete in order, as on one copy queue). */
pt_status cpu_emu_write_fence_wait(void *dev_ctx, uint64_t fence, int host, pt_error *err)
{
    (void)host;
    cpu_device *d = dev_ctx;
    int done = 0;
    while (done < d->npending && d->pending[done].fence <= fence) {
        const cpu_pending *p = &d->pending[done];
        if (p->dst.off > p->dst.buf->bytes || p->bytes > p->dst.buf->bytes - p->dst.off)
            return pt_fail(err, PT_ERR_INVALID, "cpu write_async: %zu bytes at offset %zu exceed the buffer's %zu",
                           p->bytes, p->dst.off, p->dst.buf->bytes);
        if (p->bytes) memcpy(cpu_ptr(p->dst), p->src, p->bytes);
        done++;
    }
    if (done) memmove(d->pending, d->pending + done, (size_t)(d->npending - done) * sizeof *d->pending);
    d->npending -= done;
    return PT_OK;
}

void cpu_emu_close(cpu_device *d)
{
    free_recording(d->rec);
    free(d->pending);
}
