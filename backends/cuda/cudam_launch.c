/* Kernel launches of the cuda module, its side of the shared kernel layer
 * (backends/kernels/kernel_ops.h): the kernels of backends/kernels/kernel_table.h, compiled by
 * nvcc into the embedded fatbin and found by name at device open, are launched with
 * cudaLaunchKernel on the device's stream; cuBLAS runs the GEMMs (fp32, TF32, and 16-bit
 * operands with float32 C: cudam_gemm.c). Every launch compares the sizes of the arguments it
 * passes with the parameters the kernel was compiled with. */
#include <stdio.h>
#include <string.h>

#include "backends/cuda/cudam_internal.h"

/* Block size of the per-channel reductions: the kernels' PT_RED_WG (dialect_cuda.h). */
#define CU_RED_WG 256
/* Threads per block of the elementwise kernels. */
#define CU_BLOCK 256
/* 256 MiB of im2col scratch for the shapes cuDNN refuses. */
#define CU_IM2COL_WS_CAP ((size_t)256 << 20)
/* Device parameters of the longest kernel (a tensor is two). */
#define CU_MAX_PARAMS 32

void cu_kernel_signatures(cu_device *d)
{
    for (int k = 0; k < PT_K_COUNT; k++) {
        int n = 0;
        size_t off = 0, size = 0;
        while (n < CU_MAX_PARAMS &&
               cudaFuncGetParamInfo((const void *)d->k[k], (size_t)n, &off, &size) == cudaSuccess) {
            d->ksizes[k][n] = (unsigned char)size;
            n++;
        }
        cudaGetLastError(); /* the query past the last parameter is expected to fail */
        d->knparams[k] = n > 0 ? n : -1; /* every kernel has parameters: 0 means no answer */
    }
}

/* The host's argument sizes (sizes[0..n-1]) against the kernel's compiled parameters. */
static pt_status check_signature(const cu_device *d, pt_kernel_id id, const unsigned char *sizes, int n,
                                 pt_error *err)
{
    const int want = d->knparams[id];
    if (want < 0) return PT_OK;
    int same = want == n;
    for (int i = 0; same && i < want; i++) same = d->ksizes[id][i] == sizes[i];
    if (same) return PT_OK;
    char a[160] = "", b[160] = "";
    for (int i = 0; i < want && i < CU_MAX_PARAMS; i++) {
        size_t u = strlen(a);
        snprintf(a + u, sizeof a - u, "%s%d", i ? "," : "", d->ksizes[id][i]);
    }
    for (int i = 0; i < n && i < CU_MAX_PARAMS; i++) {
        size_t u = strlen(b);
        snprintf(b + u, sizeof b - u, "%s%d", i ? "," : "", sizes[i]);
    }
    return pt_fail(err, PT_ERR_BACKEND,
                   "cuda: kernel %s takes %d parameters of sizes [%s], the host passes %d of sizes [%s] "
                   "(backends/kernels/kernel_table.h out of step with the kernel's source)",
                   pt_kernel_info_of(id)->name, want, a, n, b);
}

pt_status cu_launch_call(cu_device *d, const pt_kcall *c, pt_error *err)
{
    /* every value in an 8-byte slot; a tensor is its base pointer and its element offset */
    union {
        int32_t i;
        uint32_t u;
        float f;
        int64_t l;
        uint64_t ul;
        void *p;
    } slot[CU_MAX_PARAMS];
    void *argp[CU_MAX_PARAMS];
    unsigned char size[CU_MAX_PARAMS];
    int n = 0;
    for (int i = 0; i < c->nargs; i++) {
        const pt_karg *a = &c->arg[i];
        if (n + (a->type == 'm' ? 2 : 1) > CU_MAX_PARAMS)
            return pt_fail(err, PT_ERR_INVALID, "cuda: kernel %s given more than %d parameters",
                           pt_kernel_info_of(c->kernel)->name, CU_MAX_PARAMS);
        switch (a->type) {
        case 'm':
            slot[n].p = a->v.m.buf->ptr, size[n] = sizeof(void *), argp[n] = &slot[n], n++;
            slot[n].l = (int64_t)(a->v.m.off / 4), size[n] = 8; /* run() checked 4-byte alignment */
            break;
        case 'i': slot[n].i = a->v.i, size[n] = 4; break;
        case 'u': slot[n].u = a->v.u, size[n] = 4; break;
        case 'l': slot[n].l = a->v.l, size[n] = 8; break;
        case 'U': slot[n].ul = a->v.ul, size[n] = 8; break;
        default: slot[n].f = a->v.f, size[n] = 4; break;
        }
        argp[n] = &slot[n];
        n++;
    }
    PT_TRY(check_signature(d, c->kernel, size, n, err));
    if (c->count == 0) return PT_OK;
    const int channels = pt_kernel_info_of(c->kernel)->launch == PT_K_CHANNELS;
    const unsigned block = channels ? CU_RED_WG : CU_BLOCK;
    const size_t blocks = channels ? c->count : (c->count + CU_BLOCK - 1) / CU_BLOCK;
    if (blocks > 0x7fffffffu)
        return pt_fail(err, PT_ERR_INVALID, "cuda: kernel %s needs %zu blocks", pt_kernel_info_of(c->kernel)->name,
                       blocks);
    dim3 grid = {(unsigned)blocks, 1, 1}, threads = {block, 1, 1};
    cudaError_t rc = cudaLaunchKernel((const void *)d->k[c->kernel], grid, threads, argp, 0, d->stream);
    if (rc != cudaSuccess) {
        cu_fail_cuda(err, rc, "cudaLaunchKernel", __FILE__, __LINE__);
        return pt_error_wrap(err, "kernel %s", pt_kernel_info_of(c->kernel)->name);
    }
    return PT_OK;
}

static pt_status kdev_launch(void *ctx, const pt_kcall *c, pt_error *err)
{
    return cu_launch_call(ctx, c, err);
}

static pt_status kdev_sgemm(void *ctx, pt_precision math, int ta, int tb, size_t m, size_t n, size_t k, float alpha,
                            pt_mem a, size_t lda, pt_mem b, size_t ldb, float beta, pt_mem c, size_t ldc,
                            pt_error *err)
{
    return cu_sgemm_rowmajor(ctx, math, ta, tb, m, n, k, alpha, cu_f32(a), lda, cu_f32(b), ldb, beta, cu_f32(c), ldc,
                             err);
}

static pt_status kdev_gemm16(void *ctx, pt_precision math, int ta, int tb, size_t m, size_t n, size_t k, float alpha,
                             pt_mem a, size_t lda, pt_mem b, size_t ldb, float beta, pt_mem c, size_t ldc,
                             pt_error *err)
{
    return cu_gemm16_rowmajor(ctx, math, ta, tb, m, n, k, alpha, cu_ptr(a), lda, cu_ptr(b), ldb, beta, cu_f32(c), ldc,
                              err);
}

pt_kdev cu_kdev(cu_device *d)
{
    const pt_kdev k = {.ctx = d,
                       .backend = "cuda",
                       .launch = kdev_launch,
                       .sgemm = kdev_sgemm,
                       .conv_ws_cap = CU_IM2COL_WS_CAP,
                       .gemm16 = kdev_gemm16,
                       .act16_copy = d->act16_copy};
    return k;
}
