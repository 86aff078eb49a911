/* Which math modes (polytrain/precision.h) a CUDA device runs, from its compute capability alone:
 * free of CUDA so that the stub, the module and the tests share it. TF32 and bfloat16 tensor
 * cores arrived with Ampere (compute capability 8.0), half-precision tensor cores that cuBLAS
 * and cuDNN use with float32 accumulation with Volta (7.0). */
#ifndef PT_CUDA_PRECISION_H
#define PT_CUDA_PRECISION_H

#include <stddef.h>

#include "polytrain/precision.h"
#include "polytrain/status.h"

/* The compute capability (major*10 + minor) mode p needs: 0 for fp32, 80 for tf32 and bf16,
 * 70 for fp16. */
int pt_cuda_precision_min_cc(pt_precision p);
/* The module's answer to precision(): PT_OK with how the device computes in p (one line in
 * how, when how is not NULL), or PT_ERR_UNSUPPORTED naming the device, its capability and the
 * one p needs. */
pt_status pt_cuda_precision_check(const char *device, int major, int minor, pt_precision p, char *how, size_t cap,
                                  pt_error *err);
/* The PT_CAP_MATH bits (polytrain/op.h) of a device of that capability. */
unsigned pt_cuda_math_caps(int major, int minor);
/* The PT_CAP_ACT16 bits: activations stored in bf16 (fp16) where the device has bf16 (fp16)
 * math, the only modes under which the planner stores them so. */
unsigned pt_cuda_act16_caps(int major, int minor);

#endif
