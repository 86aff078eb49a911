/* The cuda module's graph and pinned-input hooks (polytrain/backend.h). A capture is a stream
 * capture of the device's stream (thread-local mode: only this thread's calls are checked),
 * instantiated once and launched with cudaGraphLaunch; the kernels of per-step ops read their
 * values from the op's step record (pt_op.step), so one graph serves every step. A call the
 * capture cannot hold (a synchronisation, an allocation, cuDNN's algorithm measurement) makes
 * cudaStreamEndCapture fail, and the core then runs op by op. Pinned input: cudaHostAlloc'd
 * memory, copies on a non-blocking stream of their own, one event per fence; the compute
 * stream waits for a fence with cudaStreamWaitEvent, the host with cudaEventSynchronize. */
#include <stdio.h>
#include <stdlib.h>

#include "backends/cuda/cudam_internal.h"

int cu_graph_capable(void *dev_ctx, char *why, size_t cap)
{
    (void)dev_ctx;
    if (why && cap) why[0] = '\0';
    return 1;
}

pt_status cu_graph_begin(void *dev_ctx, pt_error *err)
{
    cu_device *d = dev_ctx;
    if (d->capturing) return pt_fail(err, PT_ERR_INVALID, "cuda: a capture is already under way");
    CU_CHECK(cudaSetDevice(d->ordinal), err);
    CU_CHECK(cudaStreamBeginCapture(d->stream, cudaStreamCaptureModeThreadLocal), err);
    d->capturing = 1;
    return PT_OK;
}

pt_status cu_graph_end(void *dev_ctx, void **graph, pt_error *err)
{
    cu_device *d = dev_ctx;
    *graph = NULL;
    if (!d->capturing) return pt_fail(err, PT_ERR_INVALID, "cuda: no capture is under way");
    d->capturing = 0;
    cudaGraph_t g = NULL;
    cudaError_t rc = cudaStreamEndCapture(d->stream, &g);
    if (rc != cudaSuccess) {
        if (g) cudaGraphDestroy(g);
        cudaGetLastError(); /* an invalidated capture leaves its error pending */
        return cu_fail_cuda(err, rc, "cudaStreamEndCapture", __FILE__, __LINE__);
    }
    cudaGraphExec_t exec = NULL;
    rc = cudaGraphInstantiate(&exec, g, 0);
    cudaGraphDestroy(g);
    if (rc != cudaSuccess) {
        cudaGetLastError();
        return cu_fail_cuda(err, rc, "cudaGraphInstantiate", __FILE__, __LINE__);
    }
    *graph = exec;
    return PT_OK;
}

pt_status cu_graph_launch(void *dev_ctx, void *graph, pt_error *err)
{
    cu_device *d = dev_ctx;
    CU_CHECK(cudaSetDevice(d->ordinal), err);
    CU_CHECK(cudaGraphLaunch((cudaGraphExec_t)graph, d->stream), err);
    return PT_OK;
}

void cu_graph_free(void *dev_ctx, void *graph)
{
    cu_device *d = dev_ctx;
    if (!graph) return;
    cudaSetDevice(d->ordinal);
    /* a launch still queued keeps running: the stream finishes it first */
    cudaStreamSynchronize(d->stream);
    cudaGraphExecDestroy((cudaGraphExec_t)graph);
}

pt_status cu_copy_queue_open(cu_device *d, pt_error *err)
{
    CU_CHECK(cudaStreamCreateWithFlags(&d->copy_stream, cudaStreamNonBlocking), err);
    for (int i = 0; i < CU_FENCES; i++) CU_CHECK(cudaEventCreateWithFlags(&d->fences[i], cudaEventDisableTiming), err);
    for (int i = 0; i < CU_FENCES; i++) CU_CHECK(cudaEventCreateWithFlags(&d->reads[i], cudaEventDisableTiming), err);
    return PT_OK;
}

void cu_copy_queue_close(cu_device *d)
{
    if (d->copy_stream) cudaStreamSynchronize(d->copy_stream);
    for (int i = 0; i < CU_FENCES; i++)
        if (d->fences[i]) cudaEventDestroy(d->fences[i]);
    for (int i = 0; i < CU_FENCES; i++)
        if (d->reads[i]) cudaEventDestroy(d->reads[i]);
    if (d->copy_stream) cudaStreamDestroy(d->copy_stream);
}

int cu_pinned_capable(void *dev_ctx) { return ((const cu_device *)dev_ctx)->copy_stream != NULL; }

pt_status cu_host_alloc(void *dev_ctx, size_t bytes, void **ptr, pt_error *err)
{
    cu_device *d = dev_ctx;
    *ptr = NULL;
    CU_CHECK(cudaSetDevice(d->ordinal), err);
    cudaError_t rc = cudaHostAlloc(ptr, bytes ? bytes : 1, cudaHostAllocDefault);
    if (rc != cudaSuccess) {
        cudaGetLastError();
        *ptr = NULL;
        return pt_fail(err, PT_ERR_NOMEM, "cuda: cannot pin %zu bytes of host memory (%s)", bytes, cudaGetErrorName(rc));
    }
    return PT_OK;
}

void cu_host_free(void *dev_ctx, void *ptr)
{
    (void)dev_ctx;
    if (ptr) cudaFreeHost(ptr);
}

pt_status cu_write_async(void *dev_ctx, pt_mem dst, const void *src, size_t bytes, uint64_t *fence, pt_error *err)
{
    cu_device *d = dev_ctx;
    if (!dst.buf || dst.off > dst.buf->bytes || bytes > dst.buf->bytes - dst.off)
        return pt_fail(err, PT_ERR_INVALID, "cuda write_async: %zu bytes at offset %zu exceed the buffer", bytes,
                       dst.off);
    CU_CHECK(cudaSetDevice(d->ordinal), err);
    if (bytes)
        CU_CHECK(cudaMemcpyAsync((char *)dst.buf->ptr + dst.off, src, bytes, cudaMemcpyHostToDevice, d->copy_stream),
                 err);
    const uint64_t f = ++d->next_fence;
    CU_CHECK(cudaEventRecord(d->fences[f % CU_FENCES], d->copy_stream), err);
    *fence = f;
    return PT_OK;
}

pt_status cu_write_fence_wait(void *dev_ctx, uint64_t fence, int host, pt_error *err)
{
    cu_device *d = dev_ctx;
    if (fence == 0) return PT_OK;
    /* an event recorded before the capture cannot be waited on inside it (the capture would
     * fail at its end, far from the cause) */
    if (d->capturing) return pt_fail(err, PT_ERR_INVALID, "cuda: write_fence_wait() during a graph capture");
    CU_CHECK(cudaSetDevice(d->ordinal), err);
    cudaEvent_t ev = d->fences[fence % CU_FENCES];
    if (host) CU_CHECK(cudaEventSynchronize(ev), err);
    else CU_CHECK(cudaStreamWaitEvent(d->stream, ev, 0), err);
    return PT_OK;
}

/* An event after the compute stream's work so far: the copy stream, which is non-blocking
 * and would otherwise start a copy at once, waits on it before overwriting memory that work
 * reads (an input slot whose step may still run). */
pt_status cu_compute_fence(void *dev_ctx, uint64_t *fence, pt_error *err)
{
    cu_device *d = dev_ctx;
    *fence = 0;
    if (d->capturing) return pt_fail(err, PT_ERR_INVALID, "cuda: compute_fence() during a graph capture");
    CU_CHECK(cudaSetDevice(d->ordinal), err);
    const uint64_t f = ++d->next_read;
    CU_CHECK(cudaEventRecord(d->reads[f % CU_FENCES], d->stream), err);
    *fence = f;
    return PT_OK;
}

pt_status cu_copy_wait(void *dev_ctx, uint64_t fence, pt_error *err)
{
    cu_device *d = dev_ctx;
    if (fence == 0) return PT_OK;
    CU_CHECK(cudaSetDevice(d->ordinal), err);
    CU_CHECK(cudaStreamWaitEvent(d->copy_stream, d->reads[fence % CU_FENCES], 0), err);
    return PT_OK;
}
