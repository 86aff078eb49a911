/* Kernel launches of the cuda module: the shared kernels (backends/kernels/<name>.cl compiled by
 * nvcc into the embedded fatbin) are found by name at device open and launched with
 * cudaLaunchKernel on the device's stream. Arguments are collected as the opencl backend's
 * are, so an op's code reads as a plain argument list, in the kernel's order and types. */
#include <stdio.h>
#include <string.h>

#include "backends/cuda/cudam_internal.h"

static const char *const kernel_names[CU_K_COUNT] = {
    [CU_K_FILL] = "pt_fill",
    [CU_K_SCALE] = "pt_scale",
    [CU_K_AXPY] = "pt_axpy",
    [CU_K_ADD] = "pt_add",
    [CU_K_BIAS_ADD] = "pt_bias_add",
    [CU_K_BIAS_GRAD] = "pt_bias_grad",
    [CU_K_RELU_FWD] = "pt_relu_fwd",
    [CU_K_RELU_BWD] = "pt_relu_bwd",
    [CU_K_DROPOUT_FWD] = "pt_dropout_fwd",
    [CU_K_MUL_ACC] = "pt_mul_acc",
    [CU_K_BN_FWD_TRAIN] = "pt_bn_fwd_train",
    [CU_K_BN_FWD_EVAL] = "pt_bn_fwd_eval",
    [CU_K_BN_BWD] = "pt_bn_bwd",
    [CU_K_BN_SYNC_STATS] = "pt_bn_sync_stats",
    [CU_K_BN_SYNC_FWD] = "pt_bn_sync_fwd",
    [CU_K_BN_SYNC_BWD_STATS] = "pt_bn_sync_bwd_stats",
    [CU_K_BN_SYNC_BWD] = "pt_bn_sync_bwd",
    [CU_K_MAXPOOL_FWD] = "pt_maxpool_fwd",
    [CU_K_MAXPOOL_BWD] = "pt_maxpool_bwd",
    [CU_K_GAP_FWD] = "pt_gap_fwd",
    [CU_K_GAP_BWD] = "pt_gap_bwd",
    [CU_K_XENT] = "pt_xent",
    [CU_K_XENT_MIX] = "pt_xent_mix",
    [CU_K_SGD] = "pt_sgd",
    [CU_K_ADAM] = "pt_adam",
    [CU_K_RMSPROP] = "pt_rmsprop",
    [CU_K_IM2COL] = "pt_im2col",
    [CU_K_COL2IM] = "pt_col2im",
    [CU_K_GATHER_GROUPS] = "pt_gather_groups",
    [CU_K_SCATTER_GROUPS] = "pt_scatter_groups",
    [CU_K_BCAST_MUL] = "pt_bcast_mul",
    [CU_K_BCAST_MUL_GRAD_CHANNEL] = "pt_bcast_mul_grad_channel",
    [CU_K_BCAST_MUL_GRAD_PIXEL] = "pt_bcast_mul_grad_pixel",
    [CU_K_SIGMOID_FWD] = "pt_sigmoid_fwd",
    [CU_K_SIGMOID_BWD] = "pt_sigmoid_bwd",
    [CU_K_GMP_FWD] = "pt_gmp_fwd",
    [CU_K_GMP_BWD] = "pt_gmp_bwd",
    [CU_K_CHANNEL_POOL_FWD] = "pt_channel_pool_fwd",
    [CU_K_CHANNEL_POOL_BWD] = "pt_channel_pool_bwd",
};

const char *cu_kernel_name(cu_kernel_id id)
{
    return (int)id >= 0 && id < CU_K_COUNT ? kernel_names[id] : "?";
}

void cu_kernel(cu_launch *l, cu_device *d, cu_kernel_id id)
{
    l->d = d;
    l->id = id;
    l->n = 0;
}

static void *next(cu_launch *l, size_t size)
{
    if (l->n >= CU_MAX_ARGS) {
        l->n++; /* reported by kl_run */
        return &l->slot[0];
    }
    l->argp[l->n] = &l->slot[l->n];
    l->size[l->n] = (unsigned char)size;
    return &l->slot[l->n++];
}

void cu_kernel_signatures(cu_device *d)
{
    for (int k = 0; k < CU_K_COUNT; k++) {
        int n = 0;
        size_t off = 0, size = 0;
        while (n < 32 && cudaFuncGetParamInfo((const void *)d->k[k], (size_t)n, &off, &size) == cudaSuccess) {
            d->ksizes[k][n] = (unsigned char)size;
            n++;
        }
        cudaGetLastError(); /* the query past the last parameter is expected to fail */
        d->knparams[k] = n > 0 ? n : -1; /* every kernel has parameters: 0 means no answer */
    }
}

/* The host's argument list against the kernel's compiled parameters. */
static pt_status check_signature(const cu_launch *l, pt_error *err)
{
    const int want = l->d->knparams[l->id];
    if (want < 0) return PT_OK;
    int same = want == l->n;
    for (int i = 0; same && i < want; i++) same = l->d->ksizes[l->id][i] == l->size[i];
    if (same) return PT_OK;
    char a[160] = "", b[160] = "";
    for (int i = 0; i < want && i < 32; i++) {
        size_t u = strlen(a);
        snprintf(a + u, sizeof a - u, "%s%d", i ? "," : "", l->d->ksizes[l->id][i]);
    }
    for (int i = 0; i < l->n && i < CU_MAX_ARGS; i++) {
        size_t u = strlen(b);
        snprintf(b + u, sizeof b - u, "%s%d", i ? "," : "", l->size[i]);
    }
    return pt_fail(err, PT_ERR_BACKEND,
                   "cuda: kernel %s takes %d parameters of sizes [%s], the host passes %d of sizes [%s] "
                   "(backends/cuda out of step with backends/kernels)",
                   cu_kernel_name(l->id), want, a, l->n, b);
}

void kl_mem(cu_launch *l, pt_mem m)
{
    *(void **)next(l, sizeof(void *)) = m.buf->ptr;
    *(int64_t *)next(l, 8) = (int64_t)(m.off / 4); /* run() checked 4-byte alignment */
}

void kl_tensor(cu_launch *l, const pt_tensor *t)
{
    kl_mem(l, t->mem);
}

void kl_int(cu_launch *l, int v)
{
    *(int32_t *)next(l, 4) = v;
}

void kl_float(cu_launch *l, float v)
{
    *(float *)next(l, 4) = v;
}

void kl_long(cu_launch *l, int64_t v)
{
    *(int64_t *)next(l, 8) = v;
}

void kl_ulong(cu_launch *l, uint64_t v)
{
    *(uint64_t *)next(l, 8) = v;
}

void kl_uint(cu_launch *l, uint32_t v)
{
    *(uint32_t *)next(l, 4) = v;
}

static pt_status launch(cu_launch *l, size_t blocks, int block, pt_error *err)
{
    if (l->n > CU_MAX_ARGS)
        return pt_fail(err, PT_ERR_INVALID, "cuda: kernel %s given %d arguments, at most %d", cu_kernel_name(l->id),
                       l->n, CU_MAX_ARGS);
    PT_TRY(check_signature(l, err));
    if (blocks == 0) return PT_OK;
    if (blocks > 0x7fffffffu)
        return pt_fail(err, PT_ERR_INVALID, "cuda: kernel %s needs %zu blocks", cu_kernel_name(l->id), blocks);
    dim3 grid = {(unsigned)blocks, 1, 1}, threads = {(unsigned)block, 1, 1};
    cudaError_t rc = cudaLaunchKernel((const void *)l->d->k[l->id], grid, threads, l->argp, 0, l->d->stream);
    if (rc != cudaSuccess) {
        cu_fail_cuda(err, rc, "cudaLaunchKernel", __FILE__, __LINE__);
        return pt_error_wrap(err, "kernel %s", cu_kernel_name(l->id));
    }
    return PT_OK;
}

pt_status kl_run(cu_launch *l, size_t items, int block, pt_error *err)
{
    if (block <= 0) block = 256;
    return launch(l, (items + (size_t)block - 1) / (size_t)block, block, err);
}

pt_status kl_run_groups(cu_launch *l, size_t groups, int block, pt_error *err)
{
    return launch(l, groups, block, err);
}
