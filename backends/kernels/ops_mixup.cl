/* Softmax cross-entropy with mixup/cutmix targets (PT_OP_XENT with 6 operands), in the kernel
 * dialect: the twin of pt_xent in ops.cl for q = lam*t(label) + (1-lam)*t(label2), t(y) =
 * (1-smoothing)*onehot(y) + smoothing/K. One item per sample; the loss is written as a sum of
 * non-negative terms, as pt_xent's, so it does not cancel. A label outside 0..K-1 gives NaN
 * loss and gradient. Uses pt_k_kahan from ops.cl (files are compiled in name order). */

KERNEL void pt_xent_mix(GLOBAL const float *z, pt_i64 zo, GLOBAL const int *labels, pt_i64 lo,
                        GLOBAL const int *labels2, pt_i64 l2o, GLOBAL const float *lam, pt_i64 lamo,
                        GLOBAL float *loss, pt_i64 losso, GLOBAL float *dl, pt_i64 dlo, int N, int K,
                        int has_grad, float smoothing, float grad_scale, GLOBAL const pt_u32 *ss, pt_i64 sso, int use_ss)
{
    long r = GID(0);
    if (r >= N) return;
    if (use_ss) grad_scale = F32_FROM_BITS(ss[sso + 5]);
    GLOBAL const float *zr = z + zo + r * K;
    int a = labels[lo + r], b = labels2[l2o + r];
    if (a < 0 || a >= K || b < 0 || b >= K) {
        loss[losso + r] = NAN;
        if (has_grad)
            for (int j = 0; j < K; j++) dl[dlo + r * K + j] = NAN;
        return;
    }
    float w1 = lam[lamo + r], w2 = 1.0f - w1;
    float mx = -INF_F;
    for (int j = 0; j < K; j++) mx = zr[j] > mx ? zr[j] : mx;
    float se = 0.0f, ke = 0.0f;
    for (int j = 0; j < K; j++) pt_k_kahan(&se, &ke, EXPF(zr[j] - mx));
    float lse = mx + LOGF(se - ke);
    float off = K > 0 ? smoothing / (float)K : 0.0f;
    float sd = 0.0f, kd = 0.0f;
    for (int j = 0; j < K; j++) pt_k_kahan(&sd, &kd, lse - zr[j]);
    loss[losso + r] = (1.0f - smoothing) * (w1 * (lse - zr[a]) + w2 * (lse - zr[b])) + off * (sd - kd);
    if (!has_grad) return;
    for (int j = 0; j < K; j++) {
        float q = (1.0f - smoothing) * ((j == a ? w1 : 0.0f) + (j == b ? w2 : 0.0f)) + off;
        dl[dlo + r * K + j] = grad_scale * (EXPF(zr[j] - lse) - q);
    }
}
