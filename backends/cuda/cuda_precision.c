/* The math modes of a CUDA device by compute capability (cuda_precision.h). */
#include <stdio.h>

#include "backends/cuda/cuda_precision.h"
#include "polytrain/op.h"

int pt_cuda_precision_min_cc(pt_precision p)
{
    switch (p) {
    case PT_PREC_TF32:
    case PT_PREC_BF16: return 80;
    case PT_PREC_FP16: return 70;
    default: return 0;
    }
}

pt_status pt_cuda_precision_check(const char *device, int major, int minor, pt_precision p, char *how, size_t cap,
                                  pt_error *err)
{
    if (how && cap) how[0] = '\0';
    if ((unsigned)p >= PT_PREC_COUNT)
        return pt_fail(err, PT_ERR_INVALID, "precision %d: expected one of %s", (int)p, pt_precision_choices());
    const int need = pt_cuda_precision_min_cc(p), have = major * 10 + minor;
    if (have < need)
        return pt_fail(err, PT_ERR_UNSUPPORTED,
                       "cuda device %s has compute capability %d.%d: --precision %s needs %d.%d (%s) or newer, "
                       "for its tensor cores",
                       device ? device : "?", major, minor, pt_precision_name(p), need / 10, need % 10,
                       need >= 80 ? "Ampere" : "Volta");
    static const char *const what[PT_PREC_COUNT] = {
        "float32 (cuBLAS SGEMM, cuDNN FMA math)",
        "TF32 tensor cores: cuBLAS with TF32 compute, cuDNN tensor-op math; float32 sums",
        "bfloat16 tensor cores: operands converted on the device, cublasGemmEx and cuDNN with float32 "
        "accumulation",
        "half-precision tensor cores: operands converted on the device, cublasGemmEx and cuDNN with float32 "
        "accumulation"};
    if (how && cap) snprintf(how, cap, "%s", what[p]);
    return PT_OK;
}

unsigned pt_cuda_math_caps(int major, int minor)
{
    unsigned caps = 0;
    for (int p = PT_PREC_TF32; p < PT_PREC_COUNT; p++)
        if (major * 10 + minor >= pt_cuda_precision_min_cc((pt_precision)p)) caps |= PT_CAP_MATH(p);
    return caps;
}

unsigned pt_cuda_act16_caps(int major, int minor)
{
    const int cc = major * 10 + minor;
    return (cc >= pt_cuda_precision_min_cc(PT_PREC_BF16) ? PT_CAP_ACT16(PT_BF16) : 0u) |
           (cc >= pt_cuda_precision_min_cc(PT_PREC_FP16) ? PT_CAP_ACT16(PT_F16) : 0u);
}
