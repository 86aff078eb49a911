/* Kernel launches and CLBlast GEMMs on a device's in-order queue, and per-op-kind device time
 * from profiling events (PT_OPENCL_PROFILE=1). Argument errors are collected and reported at
 * launch, so an op's code reads as a plain list of arguments. */
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

ocl_launch ocl_kernel(ocl_device *d, ocl_kernel_id id)
{
    ocl_launch l;
    l.d = d;
    l.k = d->k[id];
    l.n = 0;
    l.rc = CL_SUCCESS;
    l.bad_arg = 0;
    return l;
}

static void set_arg(ocl_launch *l, size_t size, const void *v)
{
    cl_int rc = clSetKernelArg(l->k, l->n, size, v);
    if (rc != CL_SUCCESS && l->rc == CL_SUCCESS) {
        l->rc = rc;
        l->bad_arg = l->n;
    }
    l->n++;
}

void kl_mem(ocl_launch *l, pt_mem m)
{
    cl_long off = (cl_long)(m.off / 4); /* run() checked 4-byte alignment */
    set_arg(l, sizeof(cl_mem), &m.buf->mem);
    set_arg(l, sizeof off, &off);
}

void kl_tensor(ocl_launch *l, const pt_tensor *t)
{
    kl_mem(l, t->mem);
}

void kl_int(ocl_launch *l, int v)
{
    cl_int x = v;
    set_arg(l, sizeof x, &x);
}

void kl_float(ocl_launch *l, float v)
{
    cl_float x = v;
    set_arg(l, sizeof x, &x);
}

void kl_long(ocl_launch *l, int64_t v)
{
    cl_long x = v;
    set_arg(l, sizeof x, &x);
}

void kl_ulong(ocl_launch *l, uint64_t v)
{
    cl_ulong x = v;
    set_arg(l, sizeof x, &x);
}

void kl_uint(ocl_launch *l, uint32_t v)
{
    cl_uint x = v;
    set_arg(l, sizeof x, &x);
}

cl_event *ocl_event_slot(ocl_device *d)
{
    if (!d->profile || d->nevents >= OCL_MAX_EVENTS) return NULL;
    return &d->events[d->nevents++];
}

pt_status kl_run(ocl_launch *l, size_t global, size_t local, pt_error *err)
{
    if (l->rc != CL_SUCCESS) {
        char what[64];
        snprintf(what, sizeof what, "clSetKernelArg (argument %u)", l->bad_arg);
        return ocl_fail_cl(err, l->rc, what, __FILE__, __LINE__);
    }
    if (global == 0) return PT_OK;
    size_t g = global;
    if (local) g = (global + local - 1) / local * local;
    cl_event *ev = ocl_event_slot(l->d);
    OCL_CHECK(clEnqueueNDRangeKernel(l->d->queue, l->k, 1, NULL, &g, local ? &local : NULL, 0, NULL, ev),
              err);
    return PT_OK;
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
    cl_event *ev = NULL;
    CLBlastStatusCode rc = CLBlastSgemm(CLBlastLayoutRowMajor, trans_a ? CLBlastTransposeYes : CLBlastTransposeNo,
                                        trans_b ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k, alpha,
                                        a, a_off, lda, b, b_off, ldb, beta, c, c_off, ldc, &d->queue, ev);
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
}
