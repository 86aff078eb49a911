/* GEMMs on the cuda module: cuBLAS, in the math mode of each call (pt_op.math through the
 * shared kernel layer): plain fp32 SGEMM, TF32 tensor cores (float32 operands, TF32 compute
 * type), or bfloat16/half operands with float32 C and accumulation. The handle's math mode
 * stays CUBLAS_DEFAULT_MATH (no TF32), so nothing but the call itself selects a mode. The
 * shared kernel layer calls these for GEMM ops and for the im2col convolutions of the shapes
 * cuDNN refuses. */
#include <limits.h>

#include "backends/cuda/cudam_internal.h"

/* cuBLAS takes int sizes: anything larger is refused rather than cut short. */
static pt_status check_int_sizes(size_t m, size_t n, size_t k, size_t lda, size_t ldb, size_t ldc, pt_error *err)
{
    const size_t v[6] = {m, n, k, lda, ldb, ldc};
    for (int i = 0; i < 6; i++)
        if (v[i] > (size_t)INT_MAX)
            return pt_fail(err, PT_ERR_UNSUPPORTED,
                           "cuda gemm: %zu x %zu x %zu (leading dimensions %zu, %zu, %zu) exceeds cuBLAS's int sizes",
                           m, n, k, lda, ldb, ldc);
    return PT_OK;
}

/* Row-major C = alpha*op(A)*op(B) + beta*C through column-major cuBLAS: C^T = op(B)^T op(A)^T. */
pt_status cu_sgemm_rowmajor(cu_device *d, pt_precision math, int ta, int tb, size_t m, size_t n, size_t k, float alpha,
                            const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc,
                            pt_error *err)
{
    if (m == 0 || n == 0) return PT_OK;
    PT_TRY(check_int_sizes(m, n, k, lda, ldb, ldc, err));
    const cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (math == PT_PREC_FP32) {
        CUBLAS_CHECK(cublasSgemm(d->cublas, opb, opa, (int)n, (int)m, (int)k, &alpha, b, (int)ldb, a, (int)lda, &beta,
                                 c, (int)ldc),
                     err);
        return PT_OK;
    }
    if (math != PT_PREC_TF32)
        return pt_fail(err, PT_ERR_INVALID, "cuda sgemm: math=%s takes 16-bit operands (cu_gemm16_rowmajor)",
                       pt_precision_name(math));
    CUBLAS_CHECK(cublasGemmEx(d->cublas, opb, opa, (int)n, (int)m, (int)k, &alpha, b, CUDA_R_32F, (int)ldb, a,
                              CUDA_R_32F, (int)lda, &beta, c, CUDA_R_32F, (int)ldc, CUBLAS_COMPUTE_32F_FAST_TF32,
                              CUBLAS_GEMM_DEFAULT),
                 err);
    return PT_OK;
}

pt_status cu_gemm16_rowmajor(cu_device *d, pt_precision math, int ta, int tb, size_t m, size_t n, size_t k,
                             float alpha, const void *a, size_t lda, const void *b, size_t ldb, float beta, float *c,
                             size_t ldc, pt_error *err)
{
    if (m == 0 || n == 0) return PT_OK;
    PT_TRY(check_int_sizes(m, n, k, lda, ldb, ldc, err));
    if (math != PT_PREC_BF16 && math != PT_PREC_FP16)
        return pt_fail(err, PT_ERR_INVALID, "cuda gemm16: math=%s has no 16-bit operands", pt_precision_name(math));
    const cudaDataType_t t = math == PT_PREC_BF16 ? CUDA_R_16BF : CUDA_R_16F;
    CUBLAS_CHECK(cublasGemmEx(d->cublas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)n, (int)m,
                              (int)k, &alpha, b, t, (int)ldb, a, t, (int)lda, &beta, c, CUDA_R_32F, (int)ldc,
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 err);
    return PT_OK;
}
