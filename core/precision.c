/* The precision names, their parsing, and the rounding and unit roundoff of each. */
#include <string.h>

#include "core/half.h"
#include "polytrain/precision.h"

static const char *const names[PT_PREC_COUNT] = {"fp32", "tf32", "bf16", "fp16"};

const char *pt_precision_name(pt_precision p)
{
    return (unsigned)p < PT_PREC_COUNT ? names[p] : "?";
}

int pt_precision_parse(const char *s, pt_precision *out)
{
    for (int i = 0; s && i < PT_PREC_COUNT; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (pt_precision)i;
            return 1;
        }
    return 0;
}

const char *pt_precision_choices(void) { return "fp32|tf32|bf16|fp16"; }

int pt_precision_scales_loss(pt_precision p) { return p == PT_PREC_FP16; }

float pt_precision_round(pt_precision p, float v)
{
    switch (p) {
    case PT_PREC_TF32: return pt_round_tf32(v);
    case PT_PREC_BF16: return pt_round_bf16(v);
    case PT_PREC_FP16: return pt_round_f16(v);
    default: return v;
    }
}

double pt_precision_unit_roundoff(pt_precision p)
{
    switch (p) {
    case PT_PREC_TF32: return 0x1p-11;
    case PT_PREC_BF16: return 0x1p-8;
    case PT_PREC_FP16: return 0x1p-11;
    default: return 0x1p-24;
    }
}

pt_dtype pt_precision_act_dtype(pt_precision p)
{
    return p == PT_PREC_BF16 ? PT_BF16 : p == PT_PREC_FP16 ? PT_F16 : PT_F32;
}

const char *pt_act_storage_name(pt_act_storage s)
{
    return s == PT_ACT_STORAGE_FP32 ? "fp32" : s == PT_ACT_STORAGE_16BIT ? "16bit" : "auto";
}

int pt_act_storage_parse(const char *s, pt_act_storage *out)
{
    if (s && strcmp(s, "auto") == 0) *out = PT_ACT_STORAGE_AUTO;
    else if (s && strcmp(s, "fp32") == 0) *out = PT_ACT_STORAGE_FP32;
    else if (s && strcmp(s, "16bit") == 0) *out = PT_ACT_STORAGE_16BIT;
    else return 0;
    return 1;
}
