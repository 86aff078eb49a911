/* The graph and pinned-input hooks of the backend contract (polytrain/backend.h), emulated on a
 * cpu device for tests (pt_device_options.emulate_graphs): a capture records the ops run()
 * receives instead of executing them and a launch executes the recording, each op reading its
 * step record (pt_op.step) as it runs; an asynchronous write is held back until the device is
 * told to wait for it, so a caller that reads the destination too early, or changes the source
 * before the copy completed, gets different numbers; and an asynchronous write into memory an
 * op may still read (run since the host last waited for the device, and not waited for by the
 * copy queue through copy_wait) fails, as on a GPU such a copy could overwrite it while the op
 * runs. That makes the core's capture decisions and input double-buffering testable for
 * bitwise equality without a GPU. */
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

typedef struct cpu_range {
    const pt_buffer *buf;
    size_t off, bytes;
    uint64_t op; /* the op's number (ops_run after it) */
} cpu_range;

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
    for (int i = 0; i < r->n; i++) {
        PT_TRY(cpu_execute(d, &r->ops[i], err));
        PT_TRY(cpu_emu_note_op(d, &r->ops[i], err));
    }
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

pt_status cpu_emu_note_op(cpu_device *d, const pt_op *op, pt_error *err)
{
    d->ops_run++;
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++) {
        if (!op->t[i].mem.buf) continue;
        if (d->nreads == d->cap_reads) {
            const int cap = d->cap_reads ? 2 * d->cap_reads : 256;
            cpu_range *p = realloc(d->reads, (size_t)cap * sizeof *p);
            if (!p) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
            d->reads = p;
            d->cap_reads = cap;
        }
        d->reads[d->nreads++] = (cpu_range){op->t[i].mem.buf, op->t[i].mem.off, pt_tensor_bytes(&op->t[i]), d->ops_run};
    }
    return PT_OK;
}

void cpu_emu_synced(cpu_device *d)
{
    d->ops_synced = d->ops_run;
    d->nreads = 0;
}

pt_status cpu_emu_compute_fence(void *dev_ctx, uint64_t *fence, pt_error *err)
{
    cpu_device *d = dev_ctx;
    if (!d->emulate) return pt_fail(err, PT_ERR_UNSUPPORTED, "cpu: no compute fences on this device");
    if (cpu_emu_refuse(d, "compute_fence")) return pt_fail(err, PT_ERR_INVALID, "cpu: compute_fence() during a capture");
    *fence = d->ops_run + 1; /* 0 is no fence */
    return PT_OK;
}

pt_status cpu_emu_copy_wait(void *dev_ctx, uint64_t fence, pt_error *err)
{
    cpu_device *d = dev_ctx;
    if (!d->emulate) return pt_fail(err, PT_ERR_UNSUPPORTED, "cpu: no asynchronous writes on this device");
    if (fence > 0 && fence - 1 > d->copy_after) d->copy_after = fence - 1;
    return PT_OK;
}

pt_status cpu_emu_write_async(void *dev_ctx, pt_mem dst, const void *src, size_t bytes, uint64_t *fence,
                              pt_error *err)
{
    cpu_device *d = dev_ctx;
    if (!d->emulate) return pt_fail(err, PT_ERR_UNSUPPORTED, "cpu: no asynchronous writes on this device");
    for (int i = 0; i < d->nreads; i++) {
        const cpu_range *q = &d->reads[i];
        if (q->op > d->copy_after && q->buf == dst.buf && q->off < dst.off + bytes && dst.off < q->off + q->bytes)
            return pt_fail(err, PT_ERR_INVALID,
                           "cpu: an asynchronous write of %zu bytes at offset %zu overlaps an operand of op %llu, "
                           "which may still run: the copy queue must wait for it (copy_wait)",
                           bytes, dst.off, (unsigned long long)q->op);
    }
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
    free(d->reads);
}
