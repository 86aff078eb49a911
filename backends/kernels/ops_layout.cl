/* Channels-last images (PT_LAYOUT_NHWC): the copy between an image stored NHWC, in 32 or 16 bits,
 * and the float32 NCHW copy that a kernel without an NHWC form runs over (kernel_act16.c). One
 * pass both transposes and converts, so a 16-bit NHWC activation costs one copy as a 16-bit NCHW
 * one does. Conversions are act16.cl's (widened exactly, rounded to nearest even once); between
 * two 32-bit codes the words are copied as they are, so an int32 argmax comes through too. */

/* One item per element i of the NCHW side, i = (b*C + c)*hw + p; its NHWC place is
 * (b*hw + p)*C + c. to_nhwc 0: x (NHWC, stored as xdt) into y (NCHW, ydt); 1: x (NCHW, xdt) into
 * y (NHWC, ydt). n: the element count. acc (y float32 only): y += x's value instead of y = it
 * (a convolution's gradient added to, cudam_conv.c). A filter [K,C,R,S] moves the same way to
 * [K,R,S,C], the order cuDNN's NHWC convolutions read it in. */
KERNEL void pt_relayout(GLOBAL const float *x, pt_i64 xo, int xdt, GLOBAL float *y, pt_i64 yo, int ydt, int n,
                        int C, int hw, int to_nhwc, int acc)
{
    long i = GID(0);
    if (i >= n) return;
    const long p = i % hw, bc = i / hw;
    const long j = (bc / C * hw + p) * C + bc % C;
    const long src = to_nhwc ? i : j, dst = to_nhwc ? j : i;
    if (acc)
        y[yo + dst] += pt_k_ld(x, xo, xdt, src);
    else if (xdt == PT_KDT_F32 && ydt == PT_KDT_F32)
        ((GLOBAL pt_u32 *)y)[yo + dst] = ((GLOBAL const pt_u32 *)x)[xo + src];
    else
        pt_k_st(y, yo, ydt, dst, pt_k_ld(x, xo, xdt, src));
}
