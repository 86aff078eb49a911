/* The op descriptor: the one way the core asks a backend to compute something.
 * Each kind below documents its operands (t[0..]) and params; every backend implements
 * every kind, and tests/conformance runs each on each backend against the cpu backend.
 * Shapes are checked by the core when it builds ops; a backend may assume them. */
#ifndef PT_OP_H
#define PT_OP_H

#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"

typedef enum pt_op_kind {
    /* t0 = y (F32). y = value. */
    PT_OP_FILL = 0,
    /* t0 = x, t1 = y, same numel (F32). y = alpha*x + (accumulate ? y : 0). */
    PT_OP_AXPY,
    /* t0 = a, t1 = b, t2 = y, same numel. y = a + b. y may alias a or b. */
    PT_OP_ADD,
    /* t0 = A, t1 = B, t2 = C, all 2-D row-major. op(A) is [M,K] (A is [K,M] when trans_a),
     * op(B) is [K,N] (B is [N,K] when trans_b), C is [M,N].
     * C = alpha*op(A)*op(B) + beta*C (beta 0 means C is not read). */
    PT_OP_GEMM,
    /* t0 = y [N,C] or [N,C,H,W], t1 = bias [C]. y[n,c,...] += bias[c], in place. */
    PT_OP_BIAS_ADD,
    /* t0 = dy [N,C] or [N,C,H,W], t1 = dbias [C]. dbias = (accumulate ? dbias : 0) + sum over n,h,w. */
    PT_OP_BIAS_GRAD,
    /* t0 = x [N,C,H,W], t1 = w [K,C,R,S], t2 = y [N,K,P,Q] with P = (H + 2*pad - R)/stride + 1
     * (same for Q with W, S). Cross-correlation as PyTorch's conv2d, no bias.
     * y = conv(x, w) + (accumulate ? y : 0). Uses workspace if workspace_size asked for one. */
    PT_OP_CONV2D_FWD,
    /* t0 = dx [N,C,H,W], t1 = w, t2 = dy. dx = (accumulate ? dx : 0) + conv2d input gradient. */
    PT_OP_CONV2D_BWD_DATA,
    /* t0 = x, t1 = dw [K,C,R,S], t2 = dy. dw = (accumulate ? dw : 0) + conv2d weight gradient. */
    PT_OP_CONV2D_BWD_FILTER,
    /* t0 = x [N,C,H,W], t1 = gamma [C], t2 = beta [C], t3 = y (not aliasing x),
     * t4 = running_mean [C], t5 = running_var [C], t6 = save_mean [C], t7 = save_invstd [C].
     * Batch statistics over (N,H,W) with the biased variance for normalisation;
     * running_mean = (1-momentum)*running_mean + momentum*mean,
     * running_var  = (1-momentum)*running_var + momentum*var*M/(M-1), M = N*H*W (PyTorch).
     * save_invstd = 1/sqrt(var_biased + eps). */
    PT_OP_BN_FWD_TRAIN,
    /* t0 = x, t1 = gamma, t2 = beta, t3 = y (may alias x), t4 = running_mean, t5 = running_var.
     * y = gamma*(x - running_mean)/sqrt(running_var + eps) + beta. */
    PT_OP_BN_FWD_EVAL,
    /* t0 = x, t1 = dy, t2 = gamma, t3 = save_mean, t4 = save_invstd, t5 = dx, t6 = dgamma,
     * t7 = dbeta. dx = (accumulate ? dx : 0) + input gradient of BN_FWD_TRAIN;
     * dgamma and dbeta are overwritten. dx may alias dy only when accumulate is 0. */
    PT_OP_BN_BWD,
    /* t0 = x, t1 = y (may alias x). y = max(x, 0). */
    PT_OP_RELU_FWD,
    /* t0 = y (the forward output), t1 = dy, t2 = dx. dx = (accumulate ? dx : 0) + (y > 0 ? dy : 0).
     * dx may alias dy when accumulate is 0. */
    PT_OP_RELU_BWD,
    /* t0 = x [N,C,H,W], t1 = y [N,C,P,Q], t2 = argmax (I32, shape of y): index h*W + w of the
     * maximum inside x's plane (first maximum in row-major window order wins; NaN propagates).
     * Window pool.k x pool.k, step pool.stride, padding pool.pad (padded cells never win);
     * P = (H + 2*pad - k)/stride + 1 (floor). */
    PT_OP_MAXPOOL_FWD,
    /* t0 = dy, t1 = argmax, t2 = dx [N,C,H,W]. dx = (accumulate ? dx : 0) + scatter-add of dy. */
    PT_OP_MAXPOOL_BWD,
    /* t0 = x [N,C,H,W], t1 = y [N,C]. y = mean over H,W. */
    PT_OP_GAP_FWD,
    /* t0 = dy [N,C], t1 = dx [N,C,H,W]. dx = (accumulate ? dx : 0) + dy/(H*W). */
    PT_OP_GAP_BWD,
    /* t0 = x [N,...], t1 = y (may alias x), t2 = mask (F32, shape of x).
     * For sample n and element e inside the sample: u = pt_rng_uniform(dropout.seed,
     * PT_RNG_DROPOUT, dropout.stream, dropout.sample_base + n, e); keep = u >= p;
     * mask = keep ? 1/(1-p) : 0; y = x*mask. The same (seed, stream, global sample) gives the
     * same mask whatever the device split. */
    PT_OP_DROPOUT_FWD,
    /* t0 = dy, t1 = mask, t2 = dx. dx = (accumulate ? dx : 0) + dy*mask. dx may alias dy
     * when accumulate is 0. */
    PT_OP_DROPOUT_BWD,
    /* Softmax cross-entropy with label smoothing, forward and backward in one.
     * t0 = logits [N,K], t1 = labels (I32 [N], each in 0..K-1), t2 = loss (F32 [N]),
     * t3 = dlogits [N,K] or a tensor with ndim 0 to skip the gradient.
     * q = (1 - smoothing)*onehot(label) + smoothing/K; loss[n] = -sum_k q_k*log_softmax_k;
     * dlogits = grad_scale*(softmax - q) (grad_scale is 1/global batch for a mean loss).
     * Mixup/cutmix targets (nt == 6): t4 = second labels (I32 [N]), t5 = weights lam (F32 [N]);
     * q = lam*t(label) + (1-lam)*t(label2) with t(y) = (1-smoothing)*onehot(y) + smoothing/K.
     * A backend without them answers supports() = 0 for nt == 6. */
    PT_OP_XENT,
    /* Fused SGD over a flat range, PyTorch semantics. t0 = param, t1 = grad, t2 = momentum
     * buffer (ignored when momentum is 0), same numel.
     * g = grad + weight_decay*param; if momentum != 0: buf = first_step ? g : momentum*buf +
     * (1 - dampening)*g, g = nesterov ? g + momentum*buf : buf; param -= lr*g. */
    PT_OP_SGD,
    /* Fused Adam/AdamW over a flat range, PyTorch semantics. t0 = param, t1 = grad,
     * t2 = exp_avg, t3 = exp_avg_sq. step is the 1-based step count after this update.
     * decoupled (AdamW): param *= 1 - lr*weight_decay; else g = grad + weight_decay*param.
     * m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g; mhat = m/(1-b1^step); vhat = v/(1-b2^step);
     * param -= lr*mhat/(sqrt(vhat) + eps). */
    PT_OP_ADAM,
    /* Fused RMSprop over a flat range, PyTorch semantics (torch.optim.RMSprop).
     * t0 = param, t1 = grad, t2 = square_avg, t3 = momentum_buffer (not used, and may be
     * any tensor, when momentum is 0), t4 = grad_avg (not used unless centered); all used
     * operands have the same numel. g = grad + weight_decay*param;
     * square_avg = alpha*square_avg + (1-alpha)*g*g;
     * centered: grad_avg = alpha*grad_avg + (1-alpha)*g, avg = sqrt(square_avg - grad_avg^2) + eps;
     * else avg = sqrt(square_avg) + eps;
     * momentum != 0: buf = momentum*buf + g/avg, param -= lr*buf; else param -= lr*g/avg.
     * State starts at zero (no first-step special case). */
    PT_OP_RMSPROP,
    /* ---- attention and pooling ops of the model zoo (SE, CBAM) ---- */
    /* t0 = x [N,C,H,W], t1 = s, either [N,C] (one factor per channel, SE/CBAM channel
     * attention) or [N,1,H,W] (one factor per pixel broadcast over channels, CBAM spatial
     * attention), t2 = y [N,C,H,W] (aliasing neither x nor s).
     * y = x*s + (accumulate ? y : 0). The input gradient is this op with x = dy. */
    PT_OP_BCAST_MUL,
    /* t0 = x [N,C,H,W], t1 = dy [N,C,H,W], t2 = ds ([N,C] or [N,1,H,W], BCAST_MUL's s).
     * ds = (accumulate ? ds : 0) + the sum of x*dy over what s was broadcast over (H,W for
     * [N,C]; C for [N,1,H,W]). */
    PT_OP_BCAST_MUL_GRAD,
    /* t0 = x, t1 = y (may alias x), same numel. y = 1/(1 + exp(-x)). */
    PT_OP_SIGMOID_FWD,
    /* t0 = y (the forward output), t1 = dy, t2 = dx, same numel.
     * dx = (accumulate ? dx : 0) + dy*(y*(1 - y)). dx may alias dy when accumulate is 0. */
    PT_OP_SIGMOID_BWD,
    /* t0 = x [N,C,H,W] (H*W >= 1), t1 = y [N,C], t2 = argmax (I32 [N,C]): y = max over H,W,
     * argmax = its index h*W + w (the first maximum in row-major order wins; NaN propagates
     * and the first NaN wins). */
    PT_OP_GMP_FWD,
    /* t0 = dy [N,C], t1 = argmax (I32 [N,C]), t2 = dx [N,C,H,W].
     * dx = (accumulate ? dx : 0) + (h*W + w == argmax ? dy : 0). */
    PT_OP_GMP_BWD,
    /* Mean and max over channels, concatenated (CBAM's spatial-attention input).
     * t0 = x [N,C,H,W] (C >= 1), t1 = y [N,2,H,W], t2 = argmax (I32 [N,1,H,W]).
     * y[n,0,h,w] = mean over c of x; y[n,1,h,w] = max over c of x; argmax = that channel
     * (the first maximum wins; NaN propagates and the first NaN wins). */
    PT_OP_CHANNEL_POOL_FWD,
    /* t0 = dy [N,2,H,W], t1 = argmax (I32 [N,1,H,W]), t2 = dx [N,C,H,W].
     * dx = (accumulate ? dx : 0) + dy[n,0,h,w]/C + (c == argmax ? dy[n,1,h,w] : 0). */
    PT_OP_CHANNEL_POOL_BWD,
    /* Synchronised BatchNorm (--sync-bn): batch statistics over every device of every
     * process. The core sums the partial sums between the ops (device collectives or host
     * memory), so each op sees the same global sums; p.bn.count is the global element count
     * per channel M = (global batch)*H*W. Sums are about a shift (the running mean) so the
     * variance does not cancel catastrophically.
     * t0 = x [N,C,H,W], t1 = shift [C], t2 = stats [2C]:
     * stats[c] = sum over (N,H,W) of (x - shift[c]), stats[C+c] = sum of (x - shift[c])^2. */
    PT_OP_BN_SYNC_STATS,
    /* t0 = x, t1 = gamma, t2 = beta, t3 = y (not aliasing x), t4 = running_mean (the shift of
     * BN_SYNC_STATS, read before it is updated), t5 = running_var, t6 = stats [2C]: the global
     * sums in, mean | invstd out (in place). mean = shift + s1/M, var = s2/M - (s1/M)^2
     * (biased, clamped at 0), invstd = 1/sqrt(var + eps); running statistics as
     * BN_FWD_TRAIN (unbiased var*M/(M-1)); y = (x - mean)*gamma*invstd + beta. */
    PT_OP_BN_SYNC_FWD,
    /* t0 = x, t1 = dy, t2 = stats (mean | invstd) [2C], t3 = bstats [2C] out:
     * bstats[c] = sum of dy, bstats[C+c] = sum of dy*(x - mean); t4 = dgamma, t5 = dbeta
     * (overwritten with this device's share: dbeta = sum dy, dgamma = sum dy*(x-mean)*invstd). */
    PT_OP_BN_SYNC_BWD_STATS,
    /* t0 = x, t1 = dy, t2 = gamma, t3 = stats (mean | invstd), t4 = bstats (global sums),
     * t5 = dx. dx = (accumulate ? dx : 0) + gamma*invstd*(dy - sdy/M - (x-mean)*invstd^2*sdyx/M).
     * dx may alias dy only when accumulate is 0. */
    PT_OP_BN_SYNC_BWD,
    PT_OP_KIND_COUNT
} pt_op_kind;

#define PT_OP_MAX_OPERANDS 8

typedef struct pt_op {
    pt_op_kind kind;
    int nt;                            /* operands used */
    pt_tensor t[PT_OP_MAX_OPERANDS];
    int accumulate;                    /* see each kind */
    /* BN_FWD_TRAIN, BN_FWD_EVAL and ADD only: y = max(y, 0) in the same pass (the ReLU that
     * follows in place, folded in by the emitter where the backend has the fused form;
     * NaN stays NaN, as in RELU_FWD). Other kinds must leave it 0. */
    int fuse_relu;
    pt_mem workspace;                  /* scratch the core reserved, workspace_size bytes */
    size_t workspace_bytes;
    union {
        struct { float value; } fill;
        struct { float alpha; } axpy;
        struct { int trans_a, trans_b; float alpha, beta; } gemm;
        struct { int stride, pad; } conv;
        struct { float eps, momentum; int64_t count; } bn; /* count: sync-BN only */
        struct { int k, stride, pad; } pool;
        struct { float p; uint64_t seed, stream; int64_t sample_base; } dropout;
        struct { float smoothing, grad_scale; } xent;
        struct { float lr, momentum, dampening, weight_decay; int nesterov, first_step; } sgd;
        struct { float lr, beta1, beta2, eps, weight_decay; int decoupled; int64_t step; } adam;
        struct { float lr, alpha, eps, weight_decay, momentum; int centered; } rmsprop;
    } p;
} pt_op;

const char *pt_op_name(pt_op_kind kind);

/* Optional op features a backend declares to pt_op_check_operands. */
#define PT_CAP_MIXUP_TARGETS 1 /* the loss with mixup/cutmix targets (6 operands) */
#define PT_CAP_FUSED_RELU 2    /* fuse_relu on BN_FWD_TRAIN, BN_FWD_EVAL and ADD */

/* The operand signature every backend validates against: kind known, operand count (the
 * loss takes 4, or 6 with mixup targets when the backend has them), fuse_relu only where
 * allowed and where the backend has it (caps: PT_CAP_*), dtypes ('f' F32, 'i'
 * I32; the loss's dlogits and the optimizers' unused state buffers may be absent) and, with
 * check_shapes, ranks 1..4 and sizes that fit 32-bit indexing (RMSprop: equal numel of its
 * used operands, alpha in [0, 1), eps > 0). Messages name the backend. */
pt_status pt_op_check_operands(const pt_op *op, const char *backend, unsigned caps,
                               int check_shapes, pt_error *err);
/* Operand i is optional and not used by this op (see above). */
int pt_op_operand_absent(const pt_op *op, int i);

#endif
