/* Error reporting of the cuda module: a failed CUDA runtime, cuBLAS or cuDNN call becomes a
 * pt_error naming the call, the library's status name and the source site; allocation
 * failures give PT_ERR_NOMEM. */
#include "backends/cuda/cudam_internal.h"

/* Errors a kernel or copy left behind: every later call on the context returns them, so the
 * call named is not the one at fault. */
static int sticky(cudaError_t rc)
{
    switch (rc) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorMisalignedAddress:
    case cudaErrorIllegalInstruction:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorHardwareStackError:
    case cudaErrorAssert:
    case cudaErrorLaunchTimeout:
    case cudaErrorECCUncorrectable: return 1;
    default: return 0;
    }
}

pt_status cu_fail_cuda(pt_error *err, cudaError_t rc, const char *call, const char *file, int line)
{
    const int nomem = rc == cudaErrorMemoryAllocation;
    return pt_fail(err, nomem ? PT_ERR_NOMEM : PT_ERR_BACKEND, "cuda: %s failed: %s (%s, %d) [%s:%d]%s", call,
                   cudaGetErrorString(rc), cudaGetErrorName(rc), (int)rc, file, line,
                   sticky(rc) ? "; an earlier asynchronous kernel or copy may be at fault, not this call (run with "
                                "CUDA_LAUNCH_BLOCKING=1 to find it)"
                              : "");
}

const char *cu_cublas_status_name(cublasStatus_t rc)
{
    switch (rc) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "CUBLAS_STATUS_?";
    }
}

pt_status cu_fail_cublas(pt_error *err, cublasStatus_t rc, const char *call, const char *file, int line)
{
    return pt_fail(err, rc == CUBLAS_STATUS_ALLOC_FAILED ? PT_ERR_NOMEM : PT_ERR_BACKEND,
                   "cuda: %s failed: %s (%d) [%s:%d]", call, cu_cublas_status_name(rc), (int)rc, file, line);
}

pt_status cu_fail_cudnn(pt_error *err, cudnnStatus_t rc, const char *call, const char *file, int line)
{
    const int nomem = rc == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
                      rc == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED;
    return pt_fail(err, nomem ? PT_ERR_NOMEM : PT_ERR_BACKEND, "cuda: %s failed: %s (%d) [%s:%d]", call,
                   cudnnGetErrorString(rc), (int)rc, file, line);
}
