/* SGEMM on the cuda module: cuBLAS, plain fp32 unless TF32 was asked for (PT_CUDA_TF32=1, set
 * on the handle at open). The shared kernel layer calls it for GEMM ops and for the im2col
 * convolutions of the shapes cuDNN refuses. */
#include "backends/cuda/cudam_internal.h"

/* Row-major C = alpha*op(A)*op(B) + beta*C through column-major cuBLAS: C^T = op(B)^T op(A)^T. */
pt_status cu_sgemm_rowmajor(cu_device *d, int ta, int tb, size_t m, size_t n, size_t k, float alpha, const float *a,
                            size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc, pt_error *err)
{
    if (m == 0 || n == 0) return PT_OK;
    CUBLAS_CHECK(cublasSgemm(d->cublas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)n, (int)m,
                             (int)k, &alpha, b, (int)ldb, a, (int)lda, &beta, c, (int)ldc),
                 err);
    return PT_OK;
}
