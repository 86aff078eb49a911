/* Winograd F(2x2,3x3) convolutions of the shared kernel layer: 3x3 stride-1 convolutions
 * (padding 0..2) in all three directions as the transforms of ops_winograd.cl around 16
 * strided-batched GEMMs per block of tiles (pt_kdev.sgemm_batched). kernel_ops.c's convolution
 * dispatch asks pt_kwino_use first and falls back to im2col where it says no. */
#ifndef PT_KERNEL_WINOGRAD_H
#define PT_KERNEL_WINOGRAD_H

#include "backends/kernels/kernel_ops.h"

/* Whether op (a validated, non-empty convolution) runs as Winograd on dev: the device has the
 * batched GEMM and dev->winograd allows it, the op is 3x3 stride 1 with padding 0..2 in fp32
 * math (bf16/fp16 keep im2col), its scratch fits conv_ws_cap, and under PT_KWINO_AUTO the
 * shape is one where Winograd measured faster than im2col. */
int pt_kwino_use(const pt_kdev *dev, const pt_op *op);
/* Scratch bytes of the Winograd run of op (0 when it does not apply). */
size_t pt_kwino_workspace(const pt_kdev *dev, const pt_op *op);
/* Tiles per block of GEMMs for op under dev's conv_ws_cap (0 when it does not fit). */
int pt_kwino_block(const pt_kdev *dev, const pt_op *op);
/* Runs op as Winograd; the caller checked pt_kwino_use and the workspace size. */
pt_status pt_kwino_run(const pt_kdev *dev, const pt_op *op, pt_error *err);

#endif
