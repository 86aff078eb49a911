/* The whole training step as one part (pt_replica_train_step, what a single-device group runs
 * when its replica captures): on a cpu device that emulates capture, steps with fp16 loss
 * scaling (one forced overflow), gradient clipping and the weight EMA are bitwise the steps of
 * a plain cpu device, which makes each of those decisions on the host between separate calls;
 * a captured step is one launch; one input slot or two alternating ones, and batches staged
 * during the step before, give the same numbers; a new batch size and a re-fitted workspace
 * are captured anew. */
#include <math.h>
#include <string.h>

#include "core/group.h"
#include "polytrain/backend.h"
#include "polytrain/loss_scale.h"
#include "polytrain/net.h"
#include "polytrain/replica.h"
#include "pt_test.h"
#include "pt_test_net.h"

enum { C = 2, H = 8, W = 8, K = 5, CAP = 8, STEPS = 17, OVERFLOW_STEP = 7 };

static pt_net *tiny_net(void) { return pt_t_tiny_dropout_net(C, H, W, K); }

/* Two batch buffers: step k's in buffer k % 2, so the next one can be staged during a step. */
static float g_x[2][CAP * C * H * W];
static int32_t g_y[2][CAP];

static void fill_batch(int step)
{
    float *x = g_x[step % 2];
    for (int i = 0; i < CAP * C * H * W; i++) x[i] = (float)((i * 37 + step * 11) % 29) / 29.0f - 0.5f;
    for (int i = 0; i < CAP; i++) g_y[step % 2][i] = (int32_t)((i + step) % K);
}

/* 0-8 batch 6, 9-11 batch 4 (a new size), 12-16 batch 6 again (kept); a re-fit before 13 */
static int batch_of(int step) { return step >= 9 && step <= 11 ? 4 : 6; }

typedef struct rig {
    pt_device *dev;
    pt_net *net;
    pt_replica *r;
    pt_group *g;
    pt_loss_scaler scaler;
    int ema;
    pt_group_slice s[1], next[1];
    float logits[CAP * K], loss[CAP];
} rig;

/* The rigs' precision: fp16 stores the convolution's output in 16 bits (its float copies in
 * the workspace), which a captured step must run the same. */
static pt_precision g_precision = PT_PREC_FP32;

static int rig_open(rig *g, int emulate, pt_switch pinned, pt_optim_kind kind, float clip, float ema)
{
    memset(g, 0, sizeof *g);
    pt_error err;
    pt_device_options dopt = {.threads = 1, .emulate_graphs = emulate};
    g->net = tiny_net();
    CHECKF(g->net && pt_device_open("cpu", 0, &dopt, &g->dev, &err) == PT_OK, "%s", err.msg);
    if (!g->dev || !g->net) return 0;
    pt_optim_config oc = pt_optim_defaults(kind);
    if (kind == PT_OPTIM_RMSPROP) {
        oc.momentum = 0.5f;
        oc.centered = 1;
    }
    pt_replica_options ro = {.pinned_input = pinned, .precision = g_precision};
    CHECKF(pt_replica_create_ex(g->net, g->dev, CAP, &oc, 7, &ro, &g->r, &err) == PT_OK, "%s", err.msg);
    if (!g->r) return 0;
    pt_act_plan plan;
    pt_replica_act_plan(g->r, &plan);
    CHECKF((plan.n16 > 0) == (g_precision == PT_PREC_FP16), "%d 16-bit activations", plan.n16);
    CHECK(pt_replica_init_params(g->r, 7, &err) == PT_OK);
    if (ema > 0) CHECK(pt_replica_enable_ema(g->r, &err) == PT_OK);
    g->ema = ema > 0;
    CHECKF(pt_group_create(&g->r, 1, NULL, 0, 1, &g->g, &err) == PT_OK, "%s", err.msg);
    if (!g->g) return 0;
    pt_group_set_clip(g->g, clip);
    pt_group_set_ema(g->g, ema);
    pt_loss_scaler_init(&g->scaler);
    return 1;
}

static void rig_close(rig *g)
{
    pt_group_free(g->g);
    pt_replica_free(g->r);
    pt_net_free(g->net);
    pt_device_close(g->dev);
}

/* params | optimizer state | buffers | EMA (zeros without), read into a new array of *n floats */
static float *read_all(rig *g, size_t *n)
{
    pt_error err;
    const int64_t preg = pt_replica_param_region(g->r), breg = pt_replica_buffer_region(g->r);
    const int slots = pt_replica_opt_slots(g->r);
    *n = (size_t)((1 + slots) * preg + breg + preg + breg);
    float *a = calloc(*n + 1, sizeof(float));
    if (!a) return NULL;
    float *opt = a + preg, *bufs = opt + slots * preg, *ema = bufs + breg;
    const size_t ema_bytes = (size_t)(preg + breg) * sizeof(float);
    if (pt_replica_read_state(g->r, a, bufs, slots ? opt : NULL, &err) != PT_OK ||
        (g->ema && pt_device_read(g->dev, ema, pt_replica_ema_mem(g->r), ema_bytes, &err) != PT_OK)) {
        free(a);
        return NULL;
    }
    return a;
}

static int same_state(rig *a, rig *b)
{
    size_t na = 0, nb = 0;
    float *sa = read_all(a, &na), *sb = read_all(b, &nb);
    const int same = sa && sb && na == nb && memcmp(sa, sb, na * sizeof(float)) == 0;
    free(sa);
    free(sb);
    return same;
}

/* One trainer-like step: loss scaling from the rig's scaler (the forced overflow step scales
 * the loss gradient to Inf), the next batch given for staging. Returns whether it skipped. */
static int rig_step(rig *g, int step, int scaling, int stage)
{
    pt_error err;
    const int n = batch_of(step);
    g->s[0] = (pt_group_slice){.x = g_x[step % 2], .y = g_y[step % 2], .n = n, .sample_base = 100 * step,
                               .logits = g->logits, .losses = g->loss};
    g->next[0] = (pt_group_slice){.x = g_x[(step + 1) % 2], .y = g_y[(step + 1) % 2], .n = batch_of(step + 1)};
    pt_group_set_next(g->g, stage ? g->next : NULL);
    float grad_scale = 1.0f / (float)n;
    if (scaling) {
        grad_scale = step == OVERFLOW_STEP ? INFINITY : (float)((double)grad_scale * g->scaler.scale);
        pt_group_set_loss_scaling(g->g, (float)(1.0 / g->scaler.scale), step - g->scaler.skipped);
    }
    const float lr = 0.05f / (float)(1 + step % 5), mom = 0.9f - 0.01f * (float)step;
    CHECKF(pt_group_step(g->g, g->s, n, step, grad_scale, lr, mom, &err) == PT_OK, "step %d: %s", step, err.msg);
    const int skipped = pt_group_last_step_skipped(g->g);
    if (scaling) pt_loss_scaler_update(&g->scaler, skipped);
    return skipped;
}

/* A plain device, one capturing with a single input slot and one with two (batches staged),
 * side by side: losses, skips, norms, loss scales and the whole state (EMA included) bitwise
 * equal after every step; the forced overflow step leaves the state as it was and halves the
 * scale; once captured, a step is one launch. */
static void whole_steps_match_separate_calls_with(pt_optim_kind kind, int scaling, float clip, float ema)
{
    rig plain, one, two;
    if (!rig_open(&plain, 0, PT_SWITCH_OFF, kind, clip, ema) || !rig_open(&one, 1, PT_SWITCH_OFF, kind, clip, ema) ||
        !rig_open(&two, 1, PT_SWITCH_AUTO, kind, clip, ema))
        return;
    CHECK(!pt_replica_fuses_update(plain.r) && pt_replica_fuses_update(one.r) && pt_replica_fuses_update(two.r));
    CHECK(!pt_replica_pinned_input(one.r, NULL, 0) && pt_replica_pinned_input(two.r, NULL, 0));
    /* the second input slot is device memory of its own, counted */
    CHECKF(pt_replica_device_bytes(two.r) > pt_replica_device_bytes(one.r), "%zu vs %zu bytes",
           pt_replica_device_bytes(two.r), pt_replica_device_bytes(one.r));
    const char *name = pt_optim_name(kind);
    pt_error err;
    int clipped = 0, unclipped = 0, skipped_steps = 0;
    int64_t caps_before_short = -1, caps_after_short = -1, caps_before_fit = -1;
    fill_batch(0);
    for (int step = 0; step < STEPS; step++) {
        fill_batch(step + 1); /* the next batch is final before this step: it may be staged */
        pt_graph_stats gs;
        if (step == 9 || step == 12 || step == 13) {
            pt_replica_graph_stats(two.r, &gs);
            if (step == 9) caps_before_short = gs.captures;
            if (step == 12) caps_after_short = gs.captures;
            if (step == 13) caps_before_fit = gs.captures;
        }
        if (step == 13)
            for (rig *g = &plain; g; g = g == &plain ? &one : g == &one ? &two : NULL)
                CHECK(pt_replica_fit_workspace(g->r, NULL, NULL, &err) == PT_OK);
        size_t nb = 0;
        float *before = scaling && step == OVERFLOW_STEP ? read_all(&two, &nb) : NULL;
        pt_replica_graph_stats(two.r, &gs);
        const int64_t launches0 = gs.launches, whole0 = gs.whole_steps;
        const int sp = rig_step(&plain, step, scaling, 1);
        const int s1 = rig_step(&one, step, scaling, 0);
        const int s2 = rig_step(&two, step, scaling, 1);
        skipped_steps += sp;
        pt_replica_graph_stats(two.r, &gs);
        CHECKF(gs.whole_steps == whole0 + 1, "%s step %d: not run as one part", name, step);
        /* captured from step 4 (the EMA's first step is a copy: other ops; then the warm-up
         * runs, one capture per input slot); the short batch and the re-fit warm up again */
        if (step >= 4 && step != 9 && step != 10 && step != 13 && step != 14)
            CHECKF(gs.launches == launches0 + 1, "%s step %d: %lld launches", name, step,
                   (long long)(gs.launches - launches0));
        const int n = batch_of(step);
        CHECKF(memcmp(plain.loss, one.loss, (size_t)n * sizeof(float)) == 0 &&
                   memcmp(plain.loss, two.loss, (size_t)n * sizeof(float)) == 0,
               "%s step %d: losses differ (%.9g, %.9g, %.9g)", name, step, plain.loss[0], one.loss[0], two.loss[0]);
        CHECKF(memcmp(plain.logits, two.logits, (size_t)n * K * sizeof(float)) == 0, "%s step %d: logits differ", name,
               step);
        CHECKF(sp == s1 && sp == s2, "%s step %d: skipped %d, %d, %d", name, step, sp, s1, s2);
        CHECKF(plain.scaler.scale == two.scaler.scale && plain.scaler.scale == one.scaler.scale,
               "%s step %d: loss scales %g, %g, %g", name, step, plain.scaler.scale, one.scaler.scale,
               two.scaler.scale);
        if (clip > 0 && !sp) {
            const double a = pt_group_last_grad_norm(plain.g), b = pt_group_last_grad_norm(one.g),
                         c = pt_group_last_grad_norm(two.g);
            CHECKF(a == b && a == c && a > 0, "%s step %d: norms %.17g, %.17g, %.17g", name, step, a, b, c);
            clipped += (float)clip / ((float)a + 1e-6f) < 1.0f;
            unclipped += !((float)clip / ((float)a + 1e-6f) < 1.0f);
        }
        CHECKF(same_state(&plain, &one) && same_state(&plain, &two),
               "%s step %d: the weights, optimizer state, buffers or EMA differ", name, step);
        if (before) {
            CHECK(sp && s2);
            size_t na = 0;
            float *after = read_all(&two, &na);
            /* BN running statistics move in the forward pass, skipped or not: compare the
             * parameters, the optimizer state and the EMA */
            const int64_t preg = pt_replica_param_region(two.r), breg = pt_replica_buffer_region(two.r);
            const size_t head = (size_t)((1 + pt_replica_opt_slots(two.r)) * preg);
            CHECKF(after && na == nb && memcmp(before, after, head * sizeof(float)) == 0 &&
                       memcmp(before + head + breg, after + head + breg, (size_t)(preg + breg) * sizeof(float)) == 0,
                   "%s: the skipped step changed the weights, optimizer state or EMA", name);
            free(after);
            free(before);
        }
    }
    if (scaling) {
        CHECKF(skipped_steps == 1 && plain.scaler.skipped == 1, "%s: %d skipped steps", name, skipped_steps);
        CHECKF(plain.scaler.scale == 32768.0, "%s: loss scale %g after one overflow", name, plain.scaler.scale);
    }
    /* the bound lies inside the norms seen: the coefficient decides both ways */
    if (clip > 0) CHECKF(clipped > 0 && unclipped > 0, "%s: %d steps clipped, %d not", name, clipped, unclipped);
    pt_graph_stats gs;
    pt_replica_graph_stats(two.r, &gs);
    CHECKF(gs.on && gs.captured_after_step > 0, "why: %s", gs.why);
    CHECKF(caps_after_short == caps_before_short + 1, "%s: a new batch size: %lld -> %lld captures", name,
           (long long)caps_before_short, (long long)caps_after_short);
    CHECKF(caps_before_fit == caps_after_short, "%s: back to a batch size seen: %lld -> %lld captures", name,
           (long long)caps_after_short, (long long)caps_before_fit);
    CHECKF(gs.captures == caps_before_fit + 2, "%s: after a workspace re-fit: %lld -> %lld captures", name,
           (long long)caps_before_fit, (long long)gs.captures);
    CHECKF(gs.inputs_staged == STEPS - 1, "%s: %lld batches found staged", name, (long long)gs.inputs_staged);
    rig_close(&plain);
    rig_close(&one);
    rig_close(&two);
}

static void sgd_with_loss_scaling_clipping_and_ema(void)
{
    whole_steps_match_separate_calls_with(PT_OPTIM_SGD, 1, 0.25f, 0.9f);
}

static void adamw_with_loss_scaling_clipping_and_ema(void)
{
    whole_steps_match_separate_calls_with(PT_OPTIM_ADAMW, 1, 0.25f, 0.9f);
}

static void rmsprop_with_loss_scaling_clipping_and_ema(void)
{
    whole_steps_match_separate_calls_with(PT_OPTIM_RMSPROP, 1, 0.25f, 0.9f);
}

static void sgd_plain(void) { whole_steps_match_separate_calls_with(PT_OPTIM_SGD, 0, 0, 0); }
static void fp16_storage_sgd_with_loss_scaling_clipping_and_ema(void)
{
    g_precision = PT_PREC_FP16;
    whole_steps_match_separate_calls_with(PT_OPTIM_SGD, 1, 0.25f, 0.9f);
    g_precision = PT_PREC_FP32;
}

/* The device-side decisions alone: the gated kinds do nothing while the record's skip word
 * is set, the loss-scaling unscale never is, and the clipping coefficient is the host's. */
static void step_record_gates_and_clip_coefficient(void)
{
    pt_step_scalars s;
    memset(&s, 0, sizeof s);
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = PT_OP_SGD;
    op.p.sgd.lr = 1;
    CHECK(pt_op_step_gated(&op) && pt_op_resolve_step_params(&op, &s) == 1);
    s.skip = 0x3f800000u; /* 1.0f, as the unscale kernel writes it */
    CHECK(pt_op_resolve_step_params(&op, &s) == 0);
    op.kind = PT_OP_AMP_UNSCALE;
    op.p.amp.mode = PT_AMP_LOSS;
    s.inv_scale = 0.25f;
    CHECK(!pt_op_step_gated(&op) && pt_op_resolve_step_params(&op, &s) == 1 && op.p.amp.inv_scale == 0.25f &&
          op.p.amp.mode == PT_AMP_FIXED);
    op.p.amp.mode = PT_AMP_CLIP;
    CHECK(pt_op_step_gated(&op) && pt_op_resolve_step_params(&op, &s) == 0);
    s.skip = 0;
    s.sumsq = 16.0f; /* norm 4: bound 1 clips by 1 / (4 + 1e-6), bound 8 leaves the gradients */
    op.p.amp.inv_scale = 1.0f;
    CHECK(pt_op_resolve_step_params(&op, &s) == 1 && op.p.amp.inv_scale == 1.0f / (4.0f + 1e-6f));
    op.p.amp.mode = PT_AMP_CLIP;
    op.p.amp.inv_scale = 8.0f;
    CHECK(pt_op_resolve_step_params(&op, &s) == 0);
    CHECK(pt_clip_applies(pt_clip_coef(1.0f, NAN)) && !pt_clip_applies(pt_clip_coef(1.0f, 0.25f)));
    op.kind = PT_OP_XENT;
    s.skip = 1;
    CHECK(!pt_op_step_gated(&op) && pt_op_resolve_step_params(&op, &s) == 1);
}

int main(void)
{
    RUN(step_record_gates_and_clip_coefficient);
    RUN(sgd_with_loss_scaling_clipping_and_ema);
    RUN(adamw_with_loss_scaling_clipping_and_ema);
    RUN(rmsprop_with_loss_scaling_clipping_and_ema);
    RUN(sgd_plain);
    RUN(fp16_storage_sgd_with_loss_scaling_clipping_and_ema);
    TEST_EXIT();
}
