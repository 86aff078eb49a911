/* The opencl backend: platform and device enumeration, devices (context, in-order queue,
 * kernel program, CLBlast warm-up), cl_mem buffers, op validation, and the pt_opencl_backend
 * vtable. Every op runs through the shared kernel layer (backends/kernels/kernel_ops.h) with
 * this backend's launches and CLBlast's SGEMM. Work is queued asynchronously; blocking reads
 * are the sync points. run() never allocates device memory: scratch is the op's workspace. */
#include <clblast_c.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/opencl/ocl_internal.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- backend context: every device of every platform ---- */

/* A string device/platform property, trimmed (some drivers pad names with spaces). */
static void info_str(cl_int rc, char *s)
{
    if (rc != CL_SUCCESS) {
        strcpy(s, "?");
        return;
    }
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\n')) s[--n] = '\0';
    size_t lead = strspn(s, " ");
    if (lead) memmove(s, s + lead, n - lead + 1);
}

static void read_entry(ocl_device_entry *e)
{
    info_str(clGetPlatformInfo(e->platform, CL_PLATFORM_NAME, sizeof e->platform_name - 1, e->platform_name, NULL),
             e->platform_name);
    info_str(clGetPlatformInfo(e->platform, CL_PLATFORM_VERSION, sizeof e->platform_version - 1,
                               e->platform_version, NULL),
             e->platform_version);
    info_str(clGetDeviceInfo(e->device, CL_DEVICE_NAME, sizeof e->name - 1, e->name, NULL), e->name);
    info_str(clGetDeviceInfo(e->device, CL_DEVICE_OPENCL_C_VERSION, sizeof e->c_version - 1, e->c_version, NULL),
             e->c_version);
    info_str(clGetDeviceInfo(e->device, CL_DRIVER_VERSION, sizeof e->driver - 1, e->driver, NULL), e->driver);
    cl_ulong mem = 0, alloc = 0;
    cl_uint cu = 0;
    size_t wg = 0;
    cl_device_type type = 0;
    clGetDeviceInfo(e->device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL);
    clGetDeviceInfo(e->device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof alloc, &alloc, NULL);
    clGetDeviceInfo(e->device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
    clGetDeviceInfo(e->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
    clGetDeviceInfo(e->device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    size_t ext_len = 0;
    e->fp16 = 0;
    if (clGetDeviceInfo(e->device, CL_DEVICE_EXTENSIONS, 0, NULL, &ext_len) == CL_SUCCESS && ext_len > 0) {
        char *ext = malloc(ext_len + 1);
        if (ext && clGetDeviceInfo(e->device, CL_DEVICE_EXTENSIONS, ext_len, ext, NULL) == CL_SUCCESS) {
            ext[ext_len] = '\0';
            e->fp16 = strstr(ext, "cl_khr_fp16") != NULL;
        }
        free(ext);
    }
    e->global_mem = mem;
    e->max_alloc = alloc;
    e->compute_units = (int)cu;
    e->max_work_group = wg;
    e->type = type;
}

static pt_status ocl_init(void **backend_ctx, pt_error *err)
{
    *backend_ctx = NULL;
    cl_uint np = 0;
    cl_int rc = clGetPlatformIDs(0, NULL, &np);
    if (rc == -1001 /* CL_PLATFORM_NOT_FOUND_KHR: the ICD loader found no driver */ || (rc == CL_SUCCESS && np == 0))
        return pt_fail(err, PT_ERR_UNSUPPORTED,
                       "no OpenCL platform found: the ICD loader lists no driver in /etc/OpenCL/vendors "
                       "(or OCL_ICD_VENDORS); install one, e.g. Debian's pocl-opencl-icd for the CPU, "
                       "or the GPU vendor's OpenCL ICD");
    OCL_CHECK_RC(rc, "clGetPlatformIDs", err);
    if (np > 64) np = 64;
    cl_platform_id plats[64];
    OCL_CHECK(clGetPlatformIDs(np, plats, NULL), err);
    ocl_backend *be = calloc(1, sizeof *be);
    if (!be) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    pthread_mutex_init(&be->lock, NULL);
    for (cl_uint p = 0; p < np; p++) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS || nd == 0) continue;
        if (nd > 64) nd = 64;
        cl_device_id devs[64];
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, nd, devs, NULL) != CL_SUCCESS) continue;
        ocl_device_entry *grown = realloc(be->dev, (size_t)(be->count + (int)nd) * sizeof *grown);
        if (!grown) {
            free(be->dev);
            free(be);
            return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
        }
        be->dev = grown;
        for (cl_uint i = 0; i < nd; i++) {
            ocl_device_entry *e = &be->dev[be->count++];
            memset(e, 0, sizeof *e);
            e->platform = plats[p];
            e->device = devs[i];
            read_entry(e);
        }
    }
    if (be->count == 0) {
        free(be);
        return pt_fail(err, PT_ERR_UNSUPPORTED,
                       "%u OpenCL platform(s) found but no device on any of them (check the driver "
                       "installation, e.g. pocl-opencl-icd, and clinfo)", np);
    }
    *backend_ctx = be;
    return PT_OK;
}

static void ocl_shutdown(void *backend_ctx)
{
    ocl_backend *be = backend_ctx;
    if (!be) return;
    CLBlastClearCache();
    pthread_mutex_destroy(&be->lock);
    free(be->dev);
    free(be);
}

static int ocl_device_count(void *backend_ctx)
{
    return ((ocl_backend *)backend_ctx)->count;
}

static const char *type_name(cl_device_type t)
{
    if (t & CL_DEVICE_TYPE_GPU) return "GPU";
    if (t & CL_DEVICE_TYPE_ACCELERATOR) return "accelerator";
    if (t & CL_DEVICE_TYPE_CPU) return "CPU";
    return "other";
}

static pt_status ocl_device_info(void *backend_ctx, int index, pt_device_info *out, pt_error *err)
{
    ocl_backend *be = backend_ctx;
    if (index < 0 || index >= be->count)
        return pt_fail(err, PT_ERR_INVALID, "opencl backend has %d device(s), no device %d", be->count, index);
    const ocl_device_entry *e = &be->dev[index];
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", e->name);
    out->kind = (e->type & (CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_ACCELERATOR)) ? PT_DEVICE_GPU : PT_DEVICE_CPU;
    out->memory_bytes = e->global_mem;
    out->compute_units = e->compute_units;
    out->threads = 1;
    pthread_mutex_lock(&be->lock);
    char timing[360] = "";
    if (e->opened) {
        snprintf(timing, sizeof timing, ", program %.2f s%s, CLBlast warm-up %.2f s, GEMM parameters %s",
                 e->last_program_s, e->last_program_cached ? " (cached)" : "", e->last_clblast_s, e->last_tuning);
    } else {
        char tuning[200];
        ocl_tuning_describe(e, tuning, sizeof tuning);
        snprintf(timing, sizeof timing, ", GEMM parameters %s", tuning);
    }
    pthread_mutex_unlock(&be->lock);
    int wino = PT_KWINO_AUTO;
    const int wino_ok = ocl_winograd_setting(&wino, NULL) == PT_OK;
    snprintf(out->details, sizeof out->details,
             "platform %.64s, %s, %.40s, driver %.40s, Winograd %s, CLBlast%.280s", e->platform_name,
             type_name(e->type), e->c_version, e->driver, wino_ok ? ocl_winograd_name(wino) : "(bad setting)",
             timing);
    return PT_OK;
}

/* ---- device ---- */

pt_status ocl_winograd_setting(int *out, pt_error *err)
{
    const char *v = getenv("PT_OPENCL_WINOGRAD");
    if (!v || strcmp(v, "1") == 0) *out = PT_KWINO_AUTO;
    else if (strcmp(v, "0") == 0) *out = PT_KWINO_OFF;
    else if (strcmp(v, "force") == 0) *out = PT_KWINO_FORCE;
    else
        return pt_fail(err, PT_ERR_INVALID,
                       "PT_OPENCL_WINOGRAD is '%.40s', expected 0 (im2col only), 1 (Winograd where it measured "
                       "faster, the default) or force (Winograd for every 3x3 stride-1 convolution)",
                       v);
    return PT_OK;
}

const char *ocl_winograd_name(int setting)
{
    return setting == PT_KWINO_OFF ? "off" : setting == PT_KWINO_FORCE ? "forced" : "on";
}

static void release_device(ocl_device *d)
{
    for (int i = 0; i < PT_K_COUNT; i++)
        if (d->k[i]) clReleaseKernel(d->k[i]);
    if (d->program) clReleaseProgram(d->program);
    if (d->queue) clReleaseCommandQueue(d->queue);
    if (d->ctx) clReleaseContext(d->ctx);
    free(d);
}

/* The first SGEMM compiles CLBlast's kernels for this context: do it at open, timed, so that
 * it stays out of the first step and of steady-state numbers. The size is above CLBlast's
 * direct-kernel threshold so that the indirect (large GEMM) kernel is the one compiled. */
static pt_status clblast_warm_up(ocl_device *d, pt_error *err)
{
    const double t0 = now_s();
    const int profile = d->profile;
    d->profile = 0; /* the profile starts after the warm-up */
    cl_int rc;
    const size_t dim = 512, n = 3 * dim * dim;
    cl_mem m = clCreateBuffer(d->ctx, CL_MEM_READ_WRITE, n * sizeof(float), NULL, &rc);
    if (rc != CL_SUCCESS) {
        d->profile = profile;
        return ocl_fail_cl(err, rc, "clCreateBuffer", __FILE__, __LINE__);
    }
    const float zero = 0.0f;
    rc = clEnqueueFillBuffer(d->queue, m, &zero, sizeof zero, 0, n * sizeof(float), 0, NULL, NULL);
    pt_status st = PT_OK;
    if (rc != CL_SUCCESS) st = ocl_fail_cl(err, rc, "clEnqueueFillBuffer", __FILE__, __LINE__);
    /* a small one (direct kernel) and a large one (indirect kernel) */
    if (st == PT_OK) st = ocl_sgemm(d, 0, 0, 16, 16, 16, 1.0f, m, 0, 16, m, 256, 16, 0.0f, m, 512, 16, err);
    if (st == PT_OK)
        st = ocl_sgemm(d, 0, 0, dim, dim, dim, 1.0f, m, 0, dim, m, dim * dim, dim, 0.0f, m, 2 * dim * dim, dim, err);
    if (st == PT_OK && (rc = clFinish(d->queue)) != CL_SUCCESS)
        st = ocl_fail_cl(err, rc, "clFinish", __FILE__, __LINE__);
    d->profile = profile;
    clReleaseMemObject(m);
    d->clblast_s = now_s() - t0;
    return st == PT_OK ? PT_OK : pt_error_wrap(err, "CLBlast warm-up");
}

/* Every kernel of the table, checked against it: its parameter count as compiled, and for the
 * per-channel reductions a work-group of d->red_wg items (their PT_RED_WG). */
static pt_status create_kernels(ocl_device *d, pt_error *err)
{
    for (int i = 0; i < PT_K_COUNT; i++) {
        const pt_kernel_info *ki = pt_kernel_info_of((pt_kernel_id)i);
        cl_int rc;
        d->k[i] = clCreateKernel(d->program, ki->name, &rc);
        if (rc != CL_SUCCESS) {
            ocl_fail_cl(err, rc, "clCreateKernel", __FILE__, __LINE__);
            return pt_error_wrap(err, "kernel %s", ki->name);
        }
        cl_uint nargs = 0;
        rc = clGetKernelInfo(d->k[i], CL_KERNEL_NUM_ARGS, sizeof nargs, &nargs, NULL);
        if (rc == CL_SUCCESS && (int)nargs != pt_kernel_param_count((pt_kernel_id)i))
            return pt_fail(err, PT_ERR_BACKEND,
                           "opencl: kernel %s has %u parameters, backends/kernels/kernel_table.h lists %d (%s)",
                           ki->name, nargs, pt_kernel_param_count((pt_kernel_id)i), ki->params);
        size_t kwg = 0;
        if (ki->launch == PT_K_CHANNELS &&
            clGetKernelWorkGroupInfo(d->k[i], d->info->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kwg, &kwg, NULL) ==
                CL_SUCCESS &&
            kwg && kwg < (size_t)d->red_wg)
            return pt_fail(err, PT_ERR_UNSUPPORTED, "opencl: kernel %s allows work-groups of %zu, needs %d", ki->name,
                           kwg, d->red_wg);
    }
    return PT_OK;
}

static pt_status ocl_device_open(void *backend_ctx, int index, const pt_device_options *opt,
                                 void **dev_ctx, pt_error *err)
{
    ocl_backend *be = backend_ctx;
    (void)opt; /* threads do not apply; the kernels are deterministic whatever `deterministic` says */
    *dev_ctx = NULL;
    if (index < 0 || index >= be->count)
        return pt_fail(err, PT_ERR_INVALID, "opencl backend has %d device(s), no device %d", be->count, index);
    ocl_device *d = calloc(1, sizeof *d);
    if (!d) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    d->be = be;
    d->info = &be->dev[index];
    const char *prof = getenv("PT_OPENCL_PROFILE");
    d->profile = prof && strcmp(prof, "1") == 0;
    /* fp16 math needs no half arithmetic (ocl_precision), but fp16 is offered where the device
     * has it (cl_khr_fp16); elsewhere it takes an explicit request, which the tests on CPU
     * OpenCL drivers use */
    const char *f16 = getenv("PT_OPENCL_FP16");
    d->fp16_math = d->info->fp16 || (f16 && strcmp(f16, "force") == 0);
    pt_status wst = ocl_winograd_setting(&d->winograd, err);
    if (wst == PT_OK) wst = pt_kact16_setting("PT_OPENCL_ACT16", &d->act16_copy, err);
    d->act16_copy_channels = (d->info->type & CL_DEVICE_TYPE_CPU) != 0;
    if (wst != PT_OK) {
        free(d);
        return wst;
    }
    /* The per-channel reductions' work-group: 256 on GPUs; 64 on CPU devices, where a group runs
     * on one core and its items are a loop: on PoCL (2 cores) a BN forward over 512 channels
     * of 3x3 took 2.3 ms at 64 against 4.8-5.8 ms at 256, and planes of 28x28 the same either
     * way (docs/BENCHMARKS.md). */
    const int red_max = d->info->type & CL_DEVICE_TYPE_CPU ? 64 : 256;
    int wg = 1;
    while (wg * 2 <= red_max && (size_t)(wg * 2) <= d->info->max_work_group) wg *= 2;
    d->red_wg = wg;
    const pt_status lim = ocl_conv_small_limits(d, err);
    if (lim != PT_OK) {
        free(d);
        return lim;
    }

    cl_int rc;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)d->info->platform, 0};
    d->ctx = clCreateContext(props, 1, &d->info->device, NULL, NULL, &rc);
    pt_status st = PT_OK;
    if (rc != CL_SUCCESS) st = ocl_fail_cl(err, rc, "clCreateContext", __FILE__, __LINE__);
    if (st == PT_OK) {
        d->queue = clCreateCommandQueue(d->ctx, d->info->device, d->profile ? CL_QUEUE_PROFILING_ENABLE : 0, &rc);
        if (rc != CL_SUCCESS) st = ocl_fail_cl(err, rc, "clCreateCommandQueue", __FILE__, __LINE__);
    }
    if (st == PT_OK) {
        cl_uint bits = 0;
        if (clGetDeviceInfo(d->info->device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof bits, &bits, NULL) == CL_SUCCESS)
            d->base_align = bits / 8;
    }
    if (st == PT_OK) st = ocl_program_load(d, err);
    if (st == PT_OK) st = create_kernels(d, err);
    if (st == PT_OK) {
        ocl_tuning_apply(d);
        st = clblast_warm_up(d, err);
    }
    if (st != PT_OK) {
        pt_error_wrap(err, "opening opencl device %d (%s)", index, d->info->name);
        release_device(d);
        return st;
    }
    pthread_mutex_lock(&be->lock);
    d->info->last_program_s = d->program_s;
    d->info->last_program_cached = d->program_cached;
    d->info->last_clblast_s = d->clblast_s;
    d->info->opened = 1;
    snprintf(d->info->last_tuning, sizeof d->info->last_tuning, "%s", d->tuning);
    pthread_mutex_unlock(&be->lock);
    *dev_ctx = d;
    return PT_OK;
}

static void ocl_device_close(void *dev_ctx)
{
    ocl_device *d = dev_ctx;
    if (!d) return;
    clFinish(d->queue);
    if (d->profile) {
        /* Asked for with PT_OPENCL_PROFILE=1: the one place this backend prints. */
        char text[16384];
        ocl_profile_format(d, text, sizeof text);
        fprintf(stderr, "%s", text);
    }
    release_device(d);
}

static pt_status ocl_buffer_alloc(void *dev_ctx, size_t bytes, pt_buffer **out, pt_error *err)
{
    ocl_device *d = dev_ctx;
    *out = NULL;
    if (bytes > d->info->max_alloc)
        return pt_fail(err, PT_ERR_NOMEM,
                       "opencl: a buffer of %zu bytes exceeds the largest allocation device '%s' allows "
                       "(%llu bytes, CL_DEVICE_MAX_MEM_ALLOC_SIZE)",
                       bytes, d->info->name, (unsigned long long)d->info->max_alloc);
    pt_buffer *b = malloc(sizeof *b);
    if (!b) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    cl_int rc;
    /* never zero-sized (invalid in OpenCL); rounded so that float views of the tail fit */
    const size_t rounded = bytes ? (bytes + 63) / 64 * 64 : 64;
    b->mem = clCreateBuffer(d->ctx, CL_MEM_READ_WRITE, rounded, NULL, &rc);
    b->bytes = bytes;
    if (rc != CL_SUCCESS) {
        free(b);
        ocl_fail_cl(err, rc, "clCreateBuffer", __FILE__, __LINE__);
        pt_error_wrap(err, "allocating %zu bytes on '%s'", bytes, d->info->name);
        const int nomem = rc == CL_INVALID_BUFFER_SIZE || rc == CL_OUT_OF_RESOURCES ||
                          rc == CL_MEM_OBJECT_ALLOCATION_FAILURE || rc == CL_OUT_OF_HOST_MEMORY;
        if (err && nomem) err->status = PT_ERR_NOMEM;
        return nomem ? PT_ERR_NOMEM : PT_ERR_BACKEND;
    }
    *out = b;
    return PT_OK;
}

static void ocl_buffer_free(void *dev_ctx, pt_buffer *buf)
{
    (void)dev_ctx;
    if (!buf) return;
    clReleaseMemObject(buf->mem);
    free(buf);
}

static pt_status check_range(pt_mem m, size_t bytes, const char *what, pt_error *err)
{
    if (!m.buf) return pt_fail(err, PT_ERR_INVALID, "opencl %s: no buffer", what);
    if (m.off > m.buf->bytes || bytes > m.buf->bytes - m.off)
        return pt_fail(err, PT_ERR_INVALID, "opencl %s: %zu bytes at offset %zu exceed the buffer's %zu", what,
                       bytes, m.off, m.buf->bytes);
    return PT_OK;
}

static pt_status ocl_write(void *dev_ctx, pt_mem dst, const void *src, size_t bytes, pt_error *err)
{
    ocl_device *d = dev_ctx;
    PT_TRY(check_range(dst, bytes, "write", err));
    if (!bytes) return PT_OK;
    /* blocking: the caller may reuse its host memory as soon as we return */
    OCL_CHECK(clEnqueueWriteBuffer(d->queue, dst.buf->mem, CL_TRUE, dst.off, bytes, src, 0, NULL, NULL), err);
    return PT_OK;
}

static pt_status ocl_read(void *dev_ctx, void *dst, pt_mem src, size_t bytes, pt_error *err)
{
    ocl_device *d = dev_ctx;
    PT_TRY(check_range(src, bytes, "read", err));
    if (!bytes) return PT_OK;
    OCL_CHECK(clEnqueueReadBuffer(d->queue, src.buf->mem, CL_TRUE, src.off, bytes, dst, 0, NULL, NULL), err);
    return PT_OK;
}

static pt_status ocl_copy(void *dev_ctx, pt_mem dst, pt_mem src, size_t bytes, pt_error *err)
{
    ocl_device *d = dev_ctx;
    PT_TRY(check_range(dst, bytes, "copy destination", err));
    PT_TRY(check_range(src, bytes, "copy source", err));
    if (!bytes || (dst.buf == src.buf && dst.off == src.off)) return PT_OK;
    if (dst.buf == src.buf && dst.off < src.off + bytes && src.off < dst.off + bytes) {
        /* OpenCL refuses overlapping copies (CL_MEM_COPY_OVERLAP); memmove semantics by a
         * bounce through host memory, a path no training step takes. */
        void *tmp = malloc(bytes);
        if (!tmp) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
        pt_status st = ocl_read(d, tmp, src, bytes, err);
        if (st == PT_OK) st = ocl_write(d, dst, tmp, bytes, err);
        free(tmp);
        return st;
    }
    OCL_CHECK(clEnqueueCopyBuffer(d->queue, src.buf->mem, dst.buf->mem, src.off, dst.off, bytes, 0, NULL, NULL),
              err);
    return PT_OK;
}

static pt_status ocl_synchronize(void *dev_ctx, pt_error *err)
{
    ocl_device *d = dev_ctx;
    OCL_CHECK(clFinish(d->queue), err);
    return PT_OK;
}

/* ---- op validation: the kinds' descriptions (core/op_table.c), 4-byte aligned offsets ---- */

static size_t buffer_bytes(const pt_buffer *b) { return b->bytes; }

static pt_status validate(const ocl_device *d, const pt_op *op, int check_memory, pt_error *err)
{
    /* fused ReLU and the BN forwards' residual: the shared add and BN forward kernels take them
     * as flags. Activations in
     * fp16 on every device: the conversions are bit operations, no cl_khr_fp16 needed (only
     * fp16 math, which bf16 lacks here, lets the planner choose them). NHWC images: every kind
     * through the shared layer's forms or its NCHW copies */
    const unsigned caps = PT_CAP_MIXUP_TARGETS | PT_CAP_FUSED_RELU | PT_CAP_BN_ADD | PT_CAP_ACT16(PT_F16) | PT_CAP_NHWC |
                          (d->fp16_math ? PT_CAP_MATH(PT_PREC_FP16) : 0u);
    PT_TRY(pt_op_check_operands(op, "opencl", caps, check_memory, err));
    return check_memory ? pt_op_check_memory(op, "opencl", buffer_bytes, 4, err) : PT_OK;
}

static int ocl_supports(void *dev_ctx, const pt_op *op)
{
    return validate(dev_ctx, op, 0, NULL) == PT_OK;
}

static size_t ocl_workspace_size(void *dev_ctx, const pt_op *op)
{
    const pt_kdev k = ocl_kdev(dev_ctx);
    return pt_kops_workspace(&k, op);
}

/* Every 16-bit operand of op goes to a kernel that takes it in 16 bits (no float32 copies): what
 * --act-storage auto stores. */
static int ocl_act16_native(void *dev_ctx, const pt_op *op)
{
    const pt_kdev k = ocl_kdev(dev_ctx);
    return pt_act16_all_native(op, pt_kops_act16_native(&k, op));
}

static pt_status ocl_run(void *dev_ctx, const pt_op *op, pt_error *err)
{
    ocl_device *d = dev_ctx;
    PT_TRY(validate(d, op, 1, err));
    const pt_kdev k = ocl_kdev(d);
    pt_status st = pt_kops_run(&k, op, err);
    if (d->profile) {
        pt_error perr;
        pt_status ps = ocl_profile_collect(d, op->kind, st == PT_OK ? err : &perr);
        if (st == PT_OK) st = ps;
    }
    return st;
}

/* fp32 always; fp16 on devices with cl_khr_fp16 (or PT_OPENCL_FP16=force); no bf16 or tf32
 * (formats OpenCL has no arithmetic for: bf16 is a CPU and NVIDIA format, TF32 NVIDIA's tensor
 * cores). fp16 GEMMs are CLBlast's SGEMM on operands rounded to half (exact products, float32
 * sums), not CLBlast's HGEMM: HGEMM sums in half, and a convolution's filter gradient sums
 * batch x pixels products, which half's 11 bits (and its 65504 ceiling) cannot hold; every
 * backend's fp16 sums in float32 (polytrain/op.h). So fp16 here gives fp16's numbers (what
 * comparing a run with the cuda backend's needs), at float32's speed. */
static pt_status ocl_precision(void *dev_ctx, pt_precision p, char *how, size_t cap, pt_error *err)
{
    const ocl_device *d = dev_ctx;
    const ocl_device_entry *e = d->info;
    const int index = (int)(e - d->be->dev);
    const char *alt = d->fp16_math ? " or fp16" : "";
    switch (p) {
    case PT_PREC_FP32:
        if (how && cap) snprintf(how, cap, "float32 (CLBlast SGEMM)");
        return PT_OK;
    case PT_PREC_TF32:
        return pt_fail(err, PT_ERR_UNSUPPORTED,
                       "opencl device %d (%s): no tf32 (TF32 is the format of NVIDIA's tensor cores, the cuda "
                       "backend's); use --precision fp32%s",
                       index, e->name, alt);
    case PT_PREC_BF16:
        return pt_fail(err, PT_ERR_UNSUPPORTED,
                       "opencl device %d (%s): no bf16 (OpenCL has no bfloat16 arithmetic); use --precision fp32%s, "
                       "or bf16 on the cpu or cuda backend",
                       index, e->name, alt);
    case PT_PREC_FP16:
        if (!d->fp16_math)
            return pt_fail(err, PT_ERR_UNSUPPORTED,
                           "opencl device %d (%s) lacks the cl_khr_fp16 extension that --precision fp16 needs; use "
                           "--precision fp32 on it (PT_OPENCL_FP16=force runs fp16 numerics anyway, no faster)",
                           index, e->name);
        if (how && cap)
            snprintf(how, cap, "operands rounded to fp16, float32 sums (CLBlast SGEMM): not faster than fp32%s",
                     e->fp16 ? "" : "; no cl_khr_fp16, run as PT_OPENCL_FP16=force asks");
        return PT_OK;
    default:
        return pt_fail(err, PT_ERR_INVALID, "opencl: precision %d is not one polytrain knows", (int)p);
    }
}

const pt_backend_iface pt_opencl_backend = {
    .api_version = PT_BACKEND_API_VERSION,
    .name = "opencl",
    .init = ocl_init,
    .shutdown = ocl_shutdown,
    .device_count = ocl_device_count,
    .device_info = ocl_device_info,
    .device_open = ocl_device_open,
    .device_close = ocl_device_close,
    .buffer_alloc = ocl_buffer_alloc,
    .buffer_free = ocl_buffer_free,
    .write = ocl_write,
    .read = ocl_read,
    .copy = ocl_copy,
    .synchronize = ocl_synchronize,
    .supports = ocl_supports,
    .act16_native = ocl_act16_native,
    .workspace_size = ocl_workspace_size,
    .run = ocl_run,
    .precision = ocl_precision,
};
