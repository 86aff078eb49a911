/* The direct convolution for a small reduction C*R*S (ops_conv_small.cl) as calls of the shared
 * kernel layer: forward and filter gradient of fp32 convolutions whose C*R*S is at most the
 * device's pt_kdev.conv_small_fwd_crs and conv_small_crs. The input gradient of such a layer (the network's input,
 * which wants none) and the reduced-precision math modes stay on im2col + GEMM. */
#include "backends/kernels/kernel_ops.h"

/* C*R*S of a convolution op (t1 is w-shaped in every direction), or -1 when it has no work. */
static int64_t small_crs(const pt_op *op)
{
    const pt_tensor *x = &op->t[0], *w = &op->t[1], *y = &op->t[2];
    if (x->ndim != 4 || w->ndim != 4 || y->ndim != 4) return -1;
    if (x->dim[0] == 0 || y->dim[2] == 0 || y->dim[3] == 0 || w->dim[0] == 0) return -1;
    return w->dim[1] * w->dim[2] * w->dim[3];
}

int pt_kconv_small_applies(const pt_kdev *dev, const pt_op *op)
{
    if (!dev || op->nt != 3 || op->math != PT_PREC_FP32) return 0;
    if (op->kind != PT_OP_CONV2D_FWD && op->kind != PT_OP_CONV2D_BWD_FILTER) return 0;
    const int limit = op->kind == PT_OP_CONV2D_FWD ? dev->conv_small_fwd_crs : dev->conv_small_crs;
    const int64_t crs = small_crs(op);
    return crs >= 1 && crs <= limit && crs <= PT_KCONV_SMALL_MAX;
}

pt_status pt_kconv_small_run(const pt_kdev *dev, const pt_op *op, pt_error *err)
{
    const pt_tensor *x = &op->t[0], *w = &op->t[1], *y = &op->t[2]; /* (x, dw, dy) for the filter gradient */
    const int n = (int)x->dim[0], k = (int)w->dim[0];
    const int fwd = op->kind == PT_OP_CONV2D_FWD;
    pt_kcall c;
    /* forward: an item per output pixel; filter gradient: a work-group per three weights of a
     * filter row (k, c, r) */
    pt_kcall_begin(&c, fwd ? PT_K_CONV_SMALL_FWD : PT_K_CONV_SMALL_BWD_FILTER,
                   fwd ? (size_t)n * (size_t)(y->dim[2] * y->dim[3])
                       : (size_t)(w->dim[0] * w->dim[1] * w->dim[2] * ((w->dim[3] + 2) / 3)));
    pt_karg_tensor(&c, x);
    pt_karg_tensor(&c, w);
    pt_karg_tensor(&c, y);
    pt_karg_int(&c, fwd ? (int)(n * y->dim[2] * y->dim[3]) : n);
    pt_karg_int(&c, (int)x->dim[1]);
    pt_karg_int(&c, (int)x->dim[2]);
    pt_karg_int(&c, (int)x->dim[3]);
    pt_karg_int(&c, k);
    pt_karg_int(&c, (int)w->dim[2]);
    pt_karg_int(&c, (int)w->dim[3]);
    pt_karg_int(&c, (int)y->dim[2]);
    pt_karg_int(&c, (int)y->dim[3]);
    pt_karg_int(&c, op->p.conv.stride);
    pt_karg_int(&c, op->p.conv.pad);
    pt_karg_int(&c, op->accumulate);
    PT_TRY(pt_kcall_check(&c, dev->backend, err));
    return dev->launch(dev->ctx, &c, err);
}
