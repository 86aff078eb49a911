/* Kernel launches and CLBlast GEMMs on a device's in-order queue (the opencl side of the shared
 * kernel layer, backends/kernels/kernel_ops.h), and per-op-kind device time from profiling
 * events (PT_OPENCL_PROFILE=1). */
#include <clblast_c.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "backends/opencl/ocl_internal.h"

double ocl_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

cl_event *ocl_event_slot(ocl_device *d)
{
    if (!d->profile || d->nevents >= OCL_MAX_EVENTS) return NULL;
    d->event_kernel[d->nevents] = -1;
    return &d->events[d->nevents++];
}

pt_status ocl_launch_call(ocl_device *d, const pt_kcall *c, pt_error *err)
{
    const cl_kernel k = d->k[c->kernel];
    for (int i = 0, p = 0; i < c->nargs; i++) {
        const pt_karg *a = &c->arg[i];
        cl_int rc = CL_SUCCESS;
        switch (a->type) {
        case 'm': {
            const cl_long off = (cl_long)(a->v.m.off / 4); /* run() checked 4-byte alignment */
            rc = clSetKernelArg(k, (cl_uint)p++, sizeof(cl_mem), &a->v.m.buf->mem);
            if (rc == CL_SUCCESS) rc = clSetKernelArg(k, (cl_uint)p, sizeof off, &off);
            break;
        }
        case 'i': rc = clSetKernelArg(k, (cl_uint)p, sizeof(cl_int), &a->v.i); break;
        case 'u': rc = clSetKernelArg(k, (cl_uint)p, sizeof(cl_uint), &a->v.u); break;
        case 'l': rc = clSetKernelArg(k, (cl_uint)p, sizeof(cl_long), &a->v.l); break;
        case 'U': rc = clSetKernelArg(k, (cl_uint)p, sizeof(cl_ulong), &a->v.ul); break;
        default: rc = clSetKernelArg(k, (cl_uint)p, sizeof(cl_float), &a->v.f); break;
        }
        if (rc != CL_SUCCESS) {
            char what[96];
            snprintf(what, sizeof what, "clSetKernelArg (%s, parameter %d)", pt_kernel_info_of(c->kernel)->name, p);
            return ocl_fail_cl(err, rc, what, __FILE__, __LINE__);
        }
        p++;
    }
    if (c->count == 0) return PT_OK;
    /* elementwise: the runtime picks the work-group; reductions: one group of red_wg per channel */
    const int channels = pt_kernel_info_of(c->kernel)->launch == PT_K_CHANNELS;
    const size_t local = channels ? (size_t)d->red_wg : 0;
    const size_t global = channels ? c->count * local : c->count;
    cl_event *ev = ocl_event_slot(d);
    if (ev) d->event_kernel[ev - d->events] = (int)c->kernel;
    OCL_CHECK(clEnqueueNDRangeKernel(d->queue, k, 1, NULL, &global, local ? &local : NULL, 0, NULL, ev), err);
    return PT_OK;
}

static pt_status kdev_launch(void *ctx, const pt_kcall *c, pt_error *err)
{
    return ocl_launch_call(ctx, c, err);
}

/* CLBlast's SGEMM multiplies in float32: a TF32 request is refused. fp16 ops reach it with
 * operands already rounded to half (pt_kdev.lowp_f32) and math fp32. */
static pt_status kdev_sgemm(void *ctx, pt_precision math, int ta, int tb, size_t m, size_t n, size_t k, float alpha,
                            pt_mem a, size_t lda, pt_mem b, size_t ldb, float beta, pt_mem c, size_t ldc,
                            pt_error *err)
{
    if (math != PT_PREC_FP32)
        return pt_fail(err, PT_ERR_UNSUPPORTED, "opencl: no %s GEMM (CLBlast's SGEMM multiplies in fp32)",
                       pt_precision_name(math));
    return ocl_sgemm(ctx, ta, tb, m, n, k, alpha, a.buf->mem, a.off / 4, lda, b.buf->mem, b.off / 4, ldb, beta,
                     c.buf->mem, c.off / 4, ldc, err);
}

/* The Winograd convolutions' 16 GEMMs per block of tiles, one CLBlastSgemm each. Not
 * CLBlastSgemmStridedBatched: in CLBlast 1.5.3 on PoCL it returned wrong products (normalised
 * error 1 to 3e3 against im2col, and NaN from C's old contents with beta 0) on baseline's
 * layers, e.g. the data gradient of 64 -> 128 channels on 14x14 maps, where small shapes
 * matched (tests/test_opencl_winograd.c has such a layer); the loop measured as fast. */
static pt_status kdev_sgemm_batched(void *ctx, int ta, int tb, size_t m, size_t n, size_t k, float alpha, pt_mem a,
                                    size_t lda, size_t stride_a, pt_mem b, size_t ldb, size_t stride_b, float beta,
                                    pt_mem c, size_t ldc, size_t stride_c, size_t batch, pt_error *err)
{
    ocl_device *d = ctx;
    for (size_t i = 0; i < batch; i++)
        PT_TRY(ocl_sgemm(d, ta, tb, m, n, k, alpha, a.buf->mem, a.off / 4 + i * stride_a, lda, b.buf->mem,
                         b.off / 4 + i * stride_b, ldb, beta, c.buf->mem, c.off / 4 + i * stride_c, ldc, err));
    return PT_OK;
}

/* 64 MiB of im2col scratch: a group of samples per GEMM keeps CLBlast's GEMMs wide. */
#define OCL_CONV_WS_CAP ((size_t)64 << 20)
/* The direct kernels (ops_conv_small.cl) where they measured faster than im2col + CLBlast on
 * PoCL (2 cores, docs/BENCHMARKS.md), which tiles an inner dimension of 9..27 badly: the
 * filter gradient up to C*R*S 32 (1.25-4.8x), the forward up to 18 (2.2x at 9, even at 18,
 * 0.76x at 27). */
#define OCL_CONV_SMALL_FWD_CRS 18
#define OCL_CONV_SMALL_CRS PT_KCONV_SMALL_MAX

pt_kdev ocl_kdev(ocl_device *d)
{
    const pt_kdev k = {.ctx = d,
                       .backend = "opencl",
                       .launch = kdev_launch,
                       .sgemm = kdev_sgemm,
                       .conv_ws_cap = OCL_CONV_WS_CAP,
                       .lowp_f32 = d->fp16_math,
                       .sgemm_batched = d->winograd != PT_KWINO_OFF ? kdev_sgemm_batched : NULL,
                       .winograd = d->winograd,
                       .conv_small_fwd_crs = d->conv_small_fwd_crs,
                       .conv_small_crs = d->conv_small_crs,
                       .act16_copy = d->act16_copy,
                       .act16_copy_channels = d->act16_copy_channels,
                       /* CLBlast's C = A^T B runs column-major C^T = B^T A (ocl_sgemm): its
                        * kernel's M is our n (MWG), its N our m (NWG) */
                       .gemm_mult = {d->gemm_tile[1], d->gemm_tile[0], d->gemm_tile[2]},
                       .gemm_align = (int)(d->base_align / sizeof(float))};
    return k;
}

pt_status ocl_conv_small_limits(ocl_device *d, pt_error *err)
{
    d->conv_small_fwd_crs = OCL_CONV_SMALL_FWD_CRS;
    d->conv_small_crs = OCL_CONV_SMALL_CRS;
    const char *v = getenv("PT_OPENCL_CONV_SMALL_CRS");
    if (!v) return PT_OK;
    char *end = NULL;
    const long n = strtol(v, &end, 10);
    if (!v[0] || *end || n < 0 || n > PT_KCONV_SMALL_MAX)
        return pt_fail(err, PT_ERR_INVALID,
                       "opencl: PT_OPENCL_CONV_SMALL_CRS must be an integer from 0 (no direct convolution) to %d, "
                       "got '%s'",
                       PT_KCONV_SMALL_MAX, v);
    d->conv_small_fwd_crs = d->conv_small_crs = (int)n;
    return PT_OK;
}

/* CLBlast's tiled GEMM copies an operand into a padded temporary (one more kernel and a pass
 * over it, plus a temporary buffer allocated per call) unless it starts at offset 0; a view
 * of the rest of the buffer from a base-aligned offset spares that copy. NULL: no view (the
 * caller passes the offset). */
static cl_mem offset_view(const ocl_device *d, cl_mem buf, size_t off_floats)
{
    const size_t off = off_floats * sizeof(float);
    if (off == 0 || !d->base_align || off % d->base_align) return NULL;
    size_t bytes = 0;
    if (clGetMemObjectInfo(buf, CL_MEM_SIZE, sizeof bytes, &bytes, NULL) != CL_SUCCESS || bytes <= off) return NULL;
    const cl_buffer_region region = {off, bytes - off};
    cl_int rc = CL_SUCCESS;
    cl_mem view = clCreateSubBuffer(buf, 0, CL_BUFFER_CREATE_TYPE_REGION, &region, &rc);
    return rc == CL_SUCCESS ? view : NULL;
}

pt_status ocl_sgemm(ocl_device *d, int trans_a, int trans_b, size_t m, size_t n, size_t k,
                    float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b, size_t b_off,
                    size_t ldb, float beta, cl_mem c, size_t c_off, size_t ldc, pt_error *err)
{
    if (m == 0 || n == 0) return PT_OK;
    /* Profiling times GEMMs on the host between two clFinish: CLBlast's event covers only
     * its last kernel, not its padding/transposition kernels. */
    double t0 = 0.0;
    if (d->profile) {
        OCL_CHECK(clFinish(d->queue), err);
        t0 = ocl_now_s();
    }
    cl_mem views[3] = {offset_view(d, a, a_off), offset_view(d, b, b_off), offset_view(d, c, c_off)};
    if (views[0]) a = views[0], a_off = 0;
    if (views[1]) b = views[1], b_off = 0;
    if (views[2]) c = views[2], c_off = 0;
    /* Row-major C = op(A) op(B) as the column-major C^T = op(B)^T op(A)^T: CLBlast's tiled
     * kernel (GEMMK 0) wants a column-major C, so a row-major call always transposes C
     * through a temporary, this one never; the first operand is copied unless untransposed
     * (here: B not transposed), the second unless transposed (A transposed). */
    cl_event *ev = NULL;
    CLBlastStatusCode rc = CLBlastSgemm(CLBlastLayoutColMajor, trans_b ? CLBlastTransposeYes : CLBlastTransposeNo,
                                        trans_a ? CLBlastTransposeYes : CLBlastTransposeNo, n, m, k, alpha,
                                        b, b_off, ldb, a, a_off, lda, beta, c, c_off, ldc, &d->queue, ev);
    for (int i = 0; i < 3; i++)
        if (views[i]) clReleaseMemObject(views[i]); /* the queued GEMM keeps its own reference */
    if (rc != CLBlastSuccess) {
        const int nomem = rc == CLBlastTempBufferAllocFailure || rc == CLBlastOpenCLOutOfHostMemory;
        return pt_fail(err, nomem ? PT_ERR_NOMEM : PT_ERR_BACKEND,
                       "opencl: CLBlastSgemm(%zu x %zu x %zu) failed: %s (%d)", m, n, k,
                       ocl_clblast_error_name(rc), (int)rc);
    }
    if (d->profile) {
        OCL_CHECK(clFinish(d->queue), err);
        const double s = ocl_now_s() - t0;
        d->prof.gemm_s += s;
        d->gemm_pending_s += s;
    }
    return PT_OK;
}

pt_status ocl_profile_collect(ocl_device *d, pt_op_kind kind, pt_error *err)
{
    if (!d->profile) return PT_OK;
    const int n = d->nevents;
    d->nevents = 0;
    cl_int rc = n ? clWaitForEvents((cl_uint)n, d->events) : CL_SUCCESS;
    double total = d->gemm_pending_s;
    d->gemm_pending_s = 0.0;
    for (int i = 0; i < n; i++) {
        cl_ulong t0 = 0, t1 = 0;
        if (rc == CL_SUCCESS &&
            clGetEventProfilingInfo(d->events[i], CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL) == CL_SUCCESS &&
            clGetEventProfilingInfo(d->events[i], CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL) == CL_SUCCESS &&
            t1 >= t0) {
            const double s = 1e-9 * (double)(t1 - t0);
            total += s;
            d->prof.other_s += s;
            const int kk = d->event_kernel[i];
            if (kk >= 0 && kk < PT_K_COUNT) {
                d->prof.kernel_s[kk] += s;
                d->prof.kernel_runs[kk]++;
            }
        }
        clReleaseEvent(d->events[i]);
    }
    if (kind >= 0 && kind < PT_OP_KIND_COUNT) {
        d->prof.op_s[kind] += total;
        d->prof.op_runs[kind]++;
    }
    OCL_CHECK_RC(rc, "clWaitForEvents", err);
    return PT_OK;
}

void ocl_profile_format(const ocl_device *d, char *out, size_t cap)
{
    size_t used = 0;
    const double all = d->prof.gemm_s + d->prof.other_s;
    int n = snprintf(out, cap, "opencl profile (%s): device time %.3f s, CLBlast GEMM %.3f s (%.1f%%), other kernels %.3f s (%.1f%%)\n",
                     d->info->name, all, d->prof.gemm_s, all > 0 ? 100.0 * d->prof.gemm_s / all : 0.0,
                     d->prof.other_s, all > 0 ? 100.0 * d->prof.other_s / all : 0.0);
    if (n < 0 || (size_t)n >= cap) return;
    used = (size_t)n;
    for (int k = 0; k < PT_OP_KIND_COUNT; k++) {
        if (!d->prof.op_runs[k]) continue;
        n = snprintf(out + used, cap - used, "  %-18s %8ld runs %9.3f s %5.1f%%\n", pt_op_name((pt_op_kind)k),
                     d->prof.op_runs[k], d->prof.op_s[k], all > 0 ? 100.0 * d->prof.op_s[k] / all : 0.0);
        if (n < 0 || (size_t)n >= cap - used) return;
        used += (size_t)n;
    }
    for (int k = 0; k < PT_K_COUNT; k++) {
        if (!d->prof.kernel_runs[k]) continue;
        n = snprintf(out + used, cap - used, "  kernel %-22s %8ld runs %9.3f s %5.1f%%\n", pt_kernel_info_of((pt_kernel_id)k)->name,
                     d->prof.kernel_runs[k], d->prof.kernel_s[k], all > 0 ? 100.0 * d->prof.kernel_s[k] / all : 0.0);
        if (n < 0 || (size_t)n >= cap - used) return;
        used += (size_t)n;
    }
}
