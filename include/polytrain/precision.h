/* Training precision: what `--precision` selects, and the math mode of the ops that honour one
 * (GEMMs and convolutions: pt_op.math). fp32 multiplies in float32; tf32, bf16 and fp16 round
 * the multiplied operands to that format and accumulate in float32, like tensor cores and
 * AVX512-BF16, and like PyTorch's autocast for convolutions and matrix products. Master
 * weights, optimizer state, BatchNorm statistics and the loss stay float32 whatever the
 * precision; fp16 adds dynamic loss scaling (polytrain/loss_scale.h). */
#ifndef PT_PRECISION_H
#define PT_PRECISION_H

#include "polytrain/tensor.h"

typedef enum pt_precision {
    PT_PREC_FP32 = 0,
    PT_PREC_TF32 = 1,
    PT_PREC_BF16 = 2,
    PT_PREC_FP16 = 3,
    PT_PREC_COUNT
} pt_precision;

/* "fp32", "tf32", "bf16", "fp16" ("?" outside the enum). */
const char *pt_precision_name(pt_precision p);
/* Parses one of those names; 0 if it is none of them. */
int pt_precision_parse(const char *s, pt_precision *out);
/* "fp32|tf32|bf16|fp16": for usage lines and error messages. */
const char *pt_precision_choices(void);
/* Whether training in p needs loss scaling (fp16: its exponent range loses small gradients). */
int pt_precision_scales_loss(pt_precision p);
/* v rounded to what p's multiplies see (v itself for fp32). */
float pt_precision_round(pt_precision p, float v);
/* Unit roundoff of p's operands: 2^-24 (fp32), 2^-11 (tf32, fp16), 2^-8 (bf16). */
double pt_precision_unit_roundoff(pt_precision p);
/* The 16-bit storage type of activations under p: PT_BF16 (bf16), PT_F16 (fp16), else PT_F32
 * (tf32 rounds operands only; its format is float32). */
pt_dtype pt_precision_act_dtype(pt_precision p);

/* Where activations are stored (`--act-storage`). auto: a node's activation is stored in p's
 * 16-bit type (pt_precision_act_dtype) where every op that reads or writes it takes that
 * type on the device in its own kernels (the backend's act16_native), so that storing it is
 * no slower than float32; 16bit: wherever every op on it takes that type at all, also through
 * float32 copies around a float32 kernel (less memory, possibly slower); fp32: always
 * float32. Gradients, parameters, optimizer state, BN statistics, the data input and the
 * logits are float32 whatever. */
typedef enum pt_act_storage { PT_ACT_STORAGE_AUTO = 0, PT_ACT_STORAGE_FP32 = 1, PT_ACT_STORAGE_16BIT = 2 } pt_act_storage;
const char *pt_act_storage_name(pt_act_storage s); /* "auto", "fp32", "16bit" */
int pt_act_storage_parse(const char *s, pt_act_storage *out); /* 0 for anything else */

#endif
