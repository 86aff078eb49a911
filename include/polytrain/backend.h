/* The backend contract: what a backend (cpu, opencl, cuda) implements, and the registry
 * and device handles the core uses. Backends include this header; the core never
 * includes a backend's header or a vendor header. Modelled on ggml's iface + context +
 * opaque handle, with an API version so a mismatched backend is refused, not misused. */
#ifndef PT_BACKEND_H
#define PT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "polytrain/op.h"
#include "polytrain/status.h"
#include "polytrain/tensor.h"
#include "polytrain/world.h"

#define PT_BACKEND_API_VERSION 5

typedef enum pt_device_kind { PT_DEVICE_CPU = 0, PT_DEVICE_GPU = 1 } pt_device_kind;

typedef struct pt_device_info {
    char name[128];          /* e.g. "Intel(R) Xeon(R) Processor" */
    pt_device_kind kind;
    uint64_t memory_bytes;   /* usable memory (host RAM for cpu) */
    int compute_units;       /* cores, SMs, CUs */
    int threads;             /* host threads that drive it (cpu: worker threads) */
    char details[512];       /* one line: SIMD level, BLAS kernel, driver, ... */
} pt_device_info;

typedef struct pt_device_options {
    int threads;       /* cpu: worker threads for this device, 0 = the backend's default */
    int deterministic; /* pick bitwise-reproducible algorithms where a backend has a choice */
    /* Tests only, cpu: the device implements the graph hooks by recording the ops at capture
     * and running the recording at launch (op->step read when it runs), and the pinned-input
     * hooks by holding each asynchronous write back until the device is told to wait for it,
     * so the core's capture and double-buffering logic runs on a CPU; 2: the same, but every
     * capture fails at its end (the fallback to launching op by op). */
    int emulate_graphs;
} pt_device_options;

/* Function table of a backend. All pointers are required unless marked optional.
 * Work may be queued asynchronously per device; read() and synchronize() wait for it. */
typedef struct pt_backend_iface {
    int api_version; /* PT_BACKEND_API_VERSION */
    const char *name;

    /* registry: init loads libraries and enumerates devices, once per process. */
    pt_status (*init)(void **backend_ctx, pt_error *err);
    void (*shutdown)(void *backend_ctx);
    int (*device_count)(void *backend_ctx);
    pt_status (*device_info)(void *backend_ctx, int index, pt_device_info *out, pt_error *err);

    /* device */
    pt_status (*device_open)(void *backend_ctx, int index, const pt_device_options *opt,
                             void **dev_ctx, pt_error *err);
    void (*device_close)(void *dev_ctx);
    pt_status (*buffer_alloc)(void *dev_ctx, size_t bytes, pt_buffer **out, pt_error *err);
    void (*buffer_free)(void *dev_ctx, pt_buffer *buf);
    pt_status (*write)(void *dev_ctx, pt_mem dst, const void *src, size_t bytes, pt_error *err);
    pt_status (*read)(void *dev_ctx, void *dst, pt_mem src, size_t bytes, pt_error *err);
    pt_status (*copy)(void *dev_ctx, pt_mem dst, pt_mem src, size_t bytes, pt_error *err);
    pt_status (*synchronize)(void *dev_ctx, pt_error *err);

    /* ops */
    int (*supports)(void *dev_ctx, const pt_op *op);
    /* Scratch bytes run() needs for this op (0 if none); asked once when a plan is built. */
    size_t (*workspace_size)(void *dev_ctx, const pt_op *op);
    pt_status (*run)(void *dev_ctx, const pt_op *op, pt_error *err);

    /* collectives (optional, all four or none): a group of this backend's devices in this
     * process, and through `world` the same group in every other process of the run
     * (global rank of device i = world->rank * ndev + i; every process has the same
     * ndev). Without them the core reduces through host memory and world. Calls are
     * queued in order with the devices' other work, like run(). The device group
     * (core/group.c) calls group_allreduce_f32 from its communication thread, once per
     * gradient bucket or sync-BN statistics vector, in the same order on every process,
     * while each device's own host thread keeps queueing that device's later ops; before a
     * device's next dependent op is queued, the call has returned. */
    pt_status (*group_open)(void *backend_ctx, void *const *dev_ctxs, int ndev,
                            const pt_world *world, void **group, pt_error *err);
    void (*group_close)(void *group);
    /* In place: bufs[i] (on device i) becomes the sum over every device of every
     * process of `count` float32s. */
    pt_status (*group_allreduce_f32)(void *group, const pt_mem *bufs, size_t count,
                                     pt_error *err);
    /* bufs[0] of rank 0 is copied to bufs[i] on every device of every process. */
    pt_status (*group_broadcast)(void *group, const pt_mem *bufs, size_t bytes, pt_error *err);

    /* Optional (NULL: fp32 only). Whether the device runs the kinds with PT_OPF_MATH in
     * precision p (polytrain/precision.h): PT_OK with one line in how (e.g. "AVX512-BF16
     * microkernel", "emulated: rounded to bf16, multiplied in fp32, not faster"), else
     * PT_ERR_UNSUPPORTED with the reason (the missing extension or instruction set). The
     * modes it accepts here are the PT_CAP_MATH its supports() and run() take. */
    pt_status (*precision)(void *dev_ctx, pt_precision p, char *how, size_t cap, pt_error *err);

    /* Graph capture (optional, all five or none; NULL: every op is launched by itself).
     * graph_capable: 1, or 0 with the reason in why. Between graph_begin and graph_end the
     * device records what run() and copy() queue instead of executing it; graph_end returns
     * the recording ready to launch (or fails, e.g. when a call could not be recorded, and
     * leaves the device out of capture either way). graph_launch queues one replay, in order
     * with the device's other work: the ops with op->step set read their per-step values from
     * that memory when the replay executes them. write() and read() are not recorded and are
     * not called during a capture. A backend with these hooks also runs the ops of a step
     * captured whole (polytrain/op.h): the gated kinds with op->step set do nothing while the
     * record's skip word is set (pt_op_step_gated), and AMP_UNSCALE honours its modes
     * (PT_AMP_LOSS, PT_AMP_CLIP), whether captured or run one by one. */
    int (*graph_capable)(void *dev_ctx, char *why, size_t cap);
    pt_status (*graph_begin)(void *dev_ctx, pt_error *err);
    pt_status (*graph_end)(void *dev_ctx, void **graph, pt_error *err);
    pt_status (*graph_launch)(void *dev_ctx, void *graph, pt_error *err);
    void (*graph_free)(void *dev_ctx, void *graph);

    /* Pinned input (optional, all five or none; NULL: the core writes inputs with write()).
     * pinned_capable: whether this device has it. host_alloc: page-locked host memory the device copies from directly. write_async
     * queues a copy from such memory on a queue of its own (it overlaps the ops queued
     * before it) and returns its fence; src must stay unchanged until write_fence_wait(...,
     * host = 1) on that fence has returned. write_fence_wait with host = 0 makes the ops
     * queued after it wait for the copy (the host does not block). */
    int (*pinned_capable)(void *dev_ctx);
    pt_status (*host_alloc)(void *dev_ctx, size_t bytes, void **ptr, pt_error *err);
    void (*host_free)(void *dev_ctx, void *ptr);
    pt_status (*write_async)(void *dev_ctx, pt_mem dst, const void *src, size_t bytes, uint64_t *fence,
                             pt_error *err);
    pt_status (*write_fence_wait)(void *dev_ctx, uint64_t fence, int host, pt_error *err);
    /* Copies after the compute queue's readers (optional with pinned input, both or neither;
     * NULL: the core synchronises the device before a copy into memory ops may still read).
     * compute_fence returns a fence after the ops queued so far on the compute queue;
     * copy_wait makes the copies queued after it on the copy queue wait on the device until
     * that fence has passed (the host does not block). The core takes such a fence after the
     * ops that read an input slot and has the copy queue wait for it before the next copy
     * into that slot. */
    pt_status (*compute_fence)(void *dev_ctx, uint64_t *fence, pt_error *err);
    pt_status (*copy_wait)(void *dev_ctx, uint64_t fence, pt_error *err);

    /* 16-bit activations (optional; NULL: none native). Whether run() handles every 16-bit
     * operand of op (one supports() accepts) in its kernels, reading and writing 16 bits,
     * rather than through float32 copies around a float32 kernel: where it does, storing
     * the activation in 16 bits is no slower, and --act-storage auto does it. */
    int (*act16_native)(void *dev_ctx, const pt_op *op);
} pt_backend_iface;

/* ---- registry (core/registry.c): the only mutable global in polytrain ---- */
int pt_backend_count(void);
const pt_backend_iface *pt_backend_at(int i);
/* Name lookup; NULL if not compiled in. */
const pt_backend_iface *pt_backend_find(const char *name);
/* Initialises the backend once (thread-safe) and returns its context. */
pt_status pt_backend_context(const pt_backend_iface *be, void **ctx, pt_error *err);

/* ---- device handle (core/device.c) ---- */
typedef struct pt_device {
    const pt_backend_iface *be;
    void *ctx; /* backend's device context */
    int index;
    pt_device_info info;
} pt_device;

pt_status pt_device_open(const char *backend, int index, const pt_device_options *opt,
                         pt_device **out, pt_error *err);
void pt_device_close(pt_device *dev);
pt_status pt_device_alloc(pt_device *dev, size_t bytes, pt_buffer **out, pt_error *err);
void pt_device_free(pt_device *dev, pt_buffer *buf);
pt_status pt_device_write(pt_device *dev, pt_mem dst, const void *src, size_t bytes, pt_error *err);
pt_status pt_device_read(pt_device *dev, void *dst, pt_mem src, size_t bytes, pt_error *err);
pt_status pt_device_run(pt_device *dev, const pt_op *op, pt_error *err);
pt_status pt_device_sync(pt_device *dev, pt_error *err);
/* The backend's precision() (fp32 always holds): how the device computes in p, or why not. */
pt_status pt_device_precision(pt_device *dev, pt_precision p, char *how, size_t cap, pt_error *err);
/* Whether the device can capture graphs (the backend's graph hooks): 1, or 0 with why. */
int pt_device_graph_capable(pt_device *dev, char *why, size_t cap);
/* Whether the device has the pinned-input hooks. */
int pt_device_pinned_input(const pt_device *dev);

#endif
