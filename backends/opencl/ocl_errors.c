/* OpenCL and CLBlast error codes as names, and the one place a failed cl* call becomes a
 * pt_error: the code's name, the call and its source line. Memory exhaustion codes map to
 * PT_ERR_NOMEM so that callers can tell "too big for this device" from a driver fault. */
#include <stdio.h>
#include <string.h>

#include "backends/opencl/ocl_internal.h"

const char *ocl_error_name(cl_int code)
{
    switch (code) {
#define N(c) case c: return #c
        N(CL_SUCCESS);
        N(CL_DEVICE_NOT_FOUND);
        N(CL_DEVICE_NOT_AVAILABLE);
        N(CL_COMPILER_NOT_AVAILABLE);
        N(CL_MEM_OBJECT_ALLOCATION_FAILURE);
        N(CL_OUT_OF_RESOURCES);
        N(CL_OUT_OF_HOST_MEMORY);
        N(CL_PROFILING_INFO_NOT_AVAILABLE);
        N(CL_MEM_COPY_OVERLAP);
        N(CL_IMAGE_FORMAT_MISMATCH);
        N(CL_IMAGE_FORMAT_NOT_SUPPORTED);
        N(CL_BUILD_PROGRAM_FAILURE);
        N(CL_MAP_FAILURE);
        N(CL_MISALIGNED_SUB_BUFFER_OFFSET);
        N(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST);
        N(CL_COMPILE_PROGRAM_FAILURE);
        N(CL_LINKER_NOT_AVAILABLE);
        N(CL_LINK_PROGRAM_FAILURE);
        N(CL_DEVICE_PARTITION_FAILED);
        N(CL_KERNEL_ARG_INFO_NOT_AVAILABLE);
        N(CL_INVALID_VALUE);
        N(CL_INVALID_DEVICE_TYPE);
        N(CL_INVALID_PLATFORM);
        N(CL_INVALID_DEVICE);
        N(CL_INVALID_CONTEXT);
        N(CL_INVALID_QUEUE_PROPERTIES);
        N(CL_INVALID_COMMAND_QUEUE);
        N(CL_INVALID_HOST_PTR);
        N(CL_INVALID_MEM_OBJECT);
        N(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR);
        N(CL_INVALID_IMAGE_SIZE);
        N(CL_INVALID_SAMPLER);
        N(CL_INVALID_BINARY);
        N(CL_INVALID_BUILD_OPTIONS);
        N(CL_INVALID_PROGRAM);
        N(CL_INVALID_PROGRAM_EXECUTABLE);
        N(CL_INVALID_KERNEL_NAME);
        N(CL_INVALID_KERNEL_DEFINITION);
        N(CL_INVALID_KERNEL);
        N(CL_INVALID_ARG_INDEX);
        N(CL_INVALID_ARG_VALUE);
        N(CL_INVALID_ARG_SIZE);
        N(CL_INVALID_KERNEL_ARGS);
        N(CL_INVALID_WORK_DIMENSION);
        N(CL_INVALID_WORK_GROUP_SIZE);
        N(CL_INVALID_WORK_ITEM_SIZE);
        N(CL_INVALID_GLOBAL_OFFSET);
        N(CL_INVALID_EVENT_WAIT_LIST);
        N(CL_INVALID_EVENT);
        N(CL_INVALID_OPERATION);
        N(CL_INVALID_GL_OBJECT);
        N(CL_INVALID_BUFFER_SIZE);
        N(CL_INVALID_MIP_LEVEL);
        N(CL_INVALID_GLOBAL_WORK_SIZE);
        N(CL_INVALID_PROPERTY);
        N(CL_INVALID_IMAGE_DESCRIPTOR);
        N(CL_INVALID_COMPILER_OPTIONS);
        N(CL_INVALID_LINKER_OPTIONS);
        N(CL_INVALID_DEVICE_PARTITION_COUNT);
#undef N
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    default: return "unknown OpenCL error";
    }
}

const char *ocl_clblast_error_name(int code)
{
    switch (code) {
    case -1024: return "CLBlastNotImplemented";
    case -1017: return "CLBlastInvalidDimension";
    case -1016: return "CLBlastInvalidLeadDimA";
    case -1015: return "CLBlastInvalidLeadDimB";
    case -1014: return "CLBlastInvalidLeadDimC";
    case -1011: return "CLBlastInsufficientMemoryA";
    case -1010: return "CLBlastInsufficientMemoryB";
    case -1009: return "CLBlastInsufficientMemoryC";
    case -2050: return "CLBlastInsufficientMemoryTemp";
    case -2046: return "CLBlastInvalidLocalMemUsage";
    case -2041: return "CLBlastDatabaseError";
    case -2040: return "CLBlastUnknownError";
    case -2039: return "CLBlastUnexpectedError";
    default: return code > -1000 ? ocl_error_name(code) : "unknown CLBlast error";
    }
}

pt_status ocl_fail_cl(pt_error *err, cl_int code, const char *call, const char *file, int line)
{
    /* The call's name only (up to its argument list): the whole expression is noise. */
    size_t n = strcspn(call, "(");
    if (n > 64) n = 64;
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    const int nomem = code == CL_MEM_OBJECT_ALLOCATION_FAILURE || code == CL_OUT_OF_HOST_MEMORY;
    return pt_fail(err, nomem ? PT_ERR_NOMEM : PT_ERR_BACKEND, "opencl: %.*s failed: %s (%d)%s [%s:%d]",
                   (int)n, call, ocl_error_name(code), (int)code,
                   nomem ? ": device memory exhausted" : "", base, line);
}
