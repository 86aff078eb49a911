/* An op's operands in a stored form a float32 NCHW kernel does not read: 16-bit activations
 * (PT_BF16/PT_F16 on the op table's lowp operands) and channels-last images (PT_LAYOUT_NHWC on
 * its img operands); and the float32 NCHW copies a backend runs such an op over when its kernel
 * does not take them natively: which operands, how in-place pairs share a copy, where the copies
 * go in the workspace, and which copies are filled before the op (widened, transposed) and
 * stored back after (transposed, rounded). The cpu backend (16-bit only: it takes no NHWC) and
 * the shared kernel layer (opencl, cuda) both run their copy paths on it.
 * `native` is a mask of operands (bit i: operand i) that the backend's kernel reads or writes as
 * stored itself: those keep their storage, and only the others get float32 NCHW copies. */
#ifndef PT_CORE_OP_ACT16_H
#define PT_CORE_OP_ACT16_H

#include <stddef.h>

#include "polytrain/op.h"

/* Operand i is used and PT_BF16 or PT_F16. */
int pt_act16_operand(const pt_op *op, int i);
/* Operand i is used, 4-D and NHWC. */
int pt_act16_nhwc(const pt_op *op, int i);
/* Operand i is used and stored 16-bit or NHWC: a float32 NCHW kernel cannot read it as it is. */
int pt_act16_stored(const pt_op *op, int i);
/* Some used operand of op is 16-bit or NHWC. */
int pt_act16_any(const pt_op *op);
/* Operand i is 16-bit or NHWC and not in native: it runs on a float32 NCHW copy. */
int pt_act16_copied(const pt_op *op, unsigned native, int i);
/* Every 16-bit or NHWC operand of op is in native: the op runs without copies. */
int pt_act16_all_native(const pt_op *op, unsigned native);
/* w = op with its copied operands PT_F32 and NCHW (the op the kernel runs, whose workspace need
 * is base). */
void pt_act16_widen_op(const pt_op *op, unsigned native, pt_op *w);
/* The copied operand before i with i's storage (an in-place pair), or -1. */
int pt_act16_alias(const pt_op *op, unsigned native, int i);
/* Points w's widened operands at float32 copies in op's workspace after its first base bytes,
 * each at a multiple of align (a power of two) and an in-place pair sharing one; sets w's
 * workspace_bytes to base; returns the bytes of the whole workspace. */
size_t pt_act16_place(const pt_op *op, unsigned native, pt_op *w, size_t base, size_t align);
/* Operand i's copy must be filled from the stored tensor before the op: it is read (an
 * input, an output added to, or the storage of an in-place input), and not another
 * operand's copy. */
int pt_act16_copy_in(const pt_op *op, unsigned native, int i);
/* Operand i's copy must be stored back into the tensor after the op: it is written,
 * and not through an earlier written operand with the same storage. */
int pt_act16_copy_out(const pt_op *op, unsigned native, int i);

#endif
