/* The step as graphs and the pinned input, on a CPU: the per-step op parameters are exactly the
 * declared ones (pt_op_clear_step_params), a cpu device that emulates capture and asynchronous
 * writes (pt_device_options.emulate_graphs) trains bitwise like a plain one while its parts
 * are captured and replayed, and a batch-size change or a workspace re-fit re-captures; a copy
 * into an input slot waits on the device for the ops that read the slot before (the emulating
 * device fails a copy that does not). */
#include <string.h>

#include "polytrain/backend.h"
#include "polytrain/net.h"
#include "polytrain/replica.h"
#include "pt_test.h"
#include "pt_test_net.h"

enum { C = 2, H = 8, W = 8, K = 5, CAP = 8 };

static pt_net *tiny_net(void) { return pt_t_tiny_dropout_net(C, H, W, K); }

static float g_x[CAP * C * H * W];
static int32_t g_y[CAP];

static void fill_batch(int step)
{
    for (int i = 0; i < CAP * C * H * W; i++) g_x[i] = (float)((i * 37 + step * 11) % 29) / 29.0f - 0.5f;
    for (int i = 0; i < CAP; i++) g_y[i] = (int32_t)((i + step) % K);
}

typedef struct lists {
    pt_op *ops;
    int n;
} lists;

/* Copies of the forward, backward and update lists, in that order. */
static lists copy_lists(const pt_replica *r)
{
    lists l = {NULL, 0};
    int n[3];
    const pt_op *src[3];
    for (int w = 0; w < 3; w++) src[w] = pt_replica_ops(r, (pt_replica_list)w, &n[w]);
    l.ops = malloc((size_t)(n[0] + n[1] + n[2] + 1) * sizeof(pt_op));
    for (int w = 0; w < 3; w++) {
        memcpy(l.ops + l.n, src[w], (size_t)n[w] * sizeof(pt_op));
        l.n += n[w];
    }
    return l;
}

static void one_step(pt_replica *r, int step, int n, float lr, float mom, float *loss)
{
    pt_error err;
    float logits[CAP * K];
    fill_batch(step);
    pt_replica_set_momentum(r, mom);
    CHECKF(pt_replica_forward_backward(r, g_x, g_y, n, 100 * step, step, 1.0f / (float)(n + step), logits, loss,
                                       &err) == PT_OK,
           "step %d: %s", step, err.msg);
    CHECKF(pt_replica_update(r, lr, step + 1, &err) == PT_OK, "update %d: %s", step, err.msg);
}

/* Two consecutive steps differ, op for op, in the declared per-step parameters only: every op
 * of a kind with step parameters changed (lr, momentum, grad_scale, step, sample_base all
 * change), every other op is byte for byte the same, and clearing the per-step values makes
 * the lists equal. */
static void per_step_parameters_are_exactly_the_declared_ones(void)
{
    const pt_optim_kind kinds[3] = {PT_OPTIM_SGD, PT_OPTIM_ADAMW, PT_OPTIM_RMSPROP};
    for (int kk = 0; kk < 3; kk++) {
        pt_error err;
        pt_device *dev = NULL;
        pt_net *net = tiny_net();
        pt_replica *r = NULL;
        pt_optim_config oc = pt_optim_defaults(kinds[kk]);
        if (kinds[kk] == PT_OPTIM_RMSPROP) {
            oc.momentum = 0.5f;
            oc.centered = 1;
        }
        CHECK(net && pt_device_open("cpu", 0, NULL, &dev, &err) == PT_OK);
        CHECKF(dev && net && pt_replica_create(net, dev, CAP, &oc, 3, &r, &err) == PT_OK, "%s", err.msg);
        if (!r) return;
        CHECK(pt_replica_init_params(r, 3, &err) == PT_OK);
        float loss[CAP];
        one_step(r, 0, CAP, 0.1f, 0.9f, loss);
        lists a = copy_lists(r);
        one_step(r, 1, CAP, 0.05f, 0.8f, loss);
        lists b = copy_lists(r);
        CHECK(a.n == b.n && a.n > 0);
        int with_params = 0;
        for (int i = 0; i < a.n && a.n == b.n; i++) {
            const int differs = memcmp(&a.ops[i], &b.ops[i], sizeof(pt_op)) != 0;
            if (pt_op_has_step_params(a.ops[i].kind)) {
                with_params++;
                CHECKF(differs, "%s: op %d (%s) has per-step parameters but did not change", pt_optim_name(kinds[kk]),
                       i, pt_op_name(a.ops[i].kind));
            } else {
                CHECKF(!differs, "%s: op %d (%s) changed between steps but declares no per-step parameters",
                       pt_optim_name(kinds[kk]), i, pt_op_name(a.ops[i].kind));
            }
            pt_op_clear_step_params(&a.ops[i]);
            pt_op_clear_step_params(&b.ops[i]);
            CHECKF(memcmp(&a.ops[i], &b.ops[i], sizeof(pt_op)) == 0,
                   "%s: op %d (%s) differs in more than its declared per-step parameters", pt_optim_name(kinds[kk]), i,
                   pt_op_name(a.ops[i].kind));
        }
        /* dropout, the loss and at least one update op */
        CHECKF(with_params >= 3, "%d ops with per-step parameters", with_params);
        free(a.ops);
        free(b.ops);
        pt_replica_free(r);
        pt_net_free(net);
        pt_device_close(dev);
    }
}

typedef struct rig {
    pt_device *dev;
    pt_net *net;
    pt_replica *r;
} rig;

static int rig_open(rig *g, int emulate, pt_optim_kind kind, pt_switch graphs)
{
    memset(g, 0, sizeof *g);
    pt_error err;
    pt_device_options dopt = {.threads = 1, .emulate_graphs = emulate};
    g->net = tiny_net();
    CHECKF(g->net && pt_device_open("cpu", 0, &dopt, &g->dev, &err) == PT_OK, "%s", err.msg);
    if (!g->dev || !g->net) return 0;
    pt_optim_config oc = pt_optim_defaults(kind);
    pt_replica_options ro = {.graphs = graphs};
    CHECKF(pt_replica_create_ex(g->net, g->dev, CAP, &oc, 7, &ro, &g->r, &err) == PT_OK, "%s", err.msg);
    if (!g->r) return 0;
    CHECK(pt_replica_init_params(g->r, 7, &err) == PT_OK);
    return 1;
}

static void rig_close(rig *g)
{
    pt_replica_free(g->r);
    pt_net_free(g->net);
    pt_device_close(g->dev);
}

static int same_state(rig *a, rig *b)
{
    pt_error err;
    const int64_t preg = pt_replica_param_region(a->r), breg = pt_replica_buffer_region(a->r);
    const int slots = pt_replica_opt_slots(a->r);
    const size_t n = (size_t)((2 + slots) * preg + breg + 1);
    float *sa = calloc(n, sizeof(float)), *sb = calloc(n, sizeof(float));
    int same = sa && sb && pt_replica_read_state(a->r, sa, sa + preg, slots ? sa + preg + breg : NULL, &err) == PT_OK &&
               pt_replica_read_state(b->r, sb, sb + preg, slots ? sb + preg + breg : NULL, &err) == PT_OK &&
               memcmp(sa, sb, n * sizeof(float)) == 0;
    free(sa);
    free(sb);
    return same;
}

/* Steps on a plain cpu device and on one that captures (auto) run side by side with changing
 * learning rate, momentum, batch sizes, a step without host outputs and evaluations; the
 * losses and the whole state stay bitwise equal, the parts are captured after the warm-up
 * steps, a new batch size and a re-fitted workspace are captured anew (counted). */
static void captured_steps_match_uncaptured_bitwise_with(pt_optim_kind kind)
{
    rig plain, cap;
    if (!rig_open(&plain, 0, kind, PT_SWITCH_AUTO) || !rig_open(&cap, 1, kind, PT_SWITCH_AUTO)) return;
    pt_graph_stats gs;
    pt_replica_graph_stats(plain.r, &gs);
    CHECKF(!gs.on && strstr(gs.why, "nothing to capture"), "plain cpu: on %d, why '%s'", gs.on, gs.why);
    CHECK(!pt_replica_pinned_input(plain.r, NULL, 0));
    CHECK(pt_replica_pinned_input(cap.r, NULL, 0));
    pt_error err;
    int64_t caps_before_short = -1, caps_after_short = -1, caps_before_fit = -1;
    size_t ws_before = 0, ws_after = 0;
    for (int step = 0; step < 16; step++) {
        /* 0-5 batch 6, 6-8 batch 4 (a new graph), 9-10 batch 6 again (kept), a re-fit, 11-15 */
        const int n = step >= 6 && step <= 8 ? 4 : 6;
        if (step == 6) {
            pt_replica_graph_stats(cap.r, &gs);
            caps_before_short = gs.captures;
        }
        if (step == 9) {
            pt_replica_graph_stats(cap.r, &gs);
            caps_after_short = gs.captures;
        }
        if (step == 11) {
            pt_replica_graph_stats(cap.r, &gs);
            caps_before_fit = gs.captures;
            size_t b2, a2;
            CHECK(pt_replica_fit_workspace(plain.r, &b2, &a2, &err) == PT_OK);
            CHECK(pt_replica_fit_workspace(cap.r, &ws_before, &ws_after, &err) == PT_OK);
        }
        const float lr = 0.1f / (float)(1 + step), mom = 0.9f - 0.01f * (float)step;
        float la[CAP], lb[CAP];
        if (step == 4) {
            /* no host outputs: nothing waits for the device before the next batch is copied */
            fill_batch(step);
            CHECK(pt_replica_forward_backward(plain.r, g_x, g_y, n, 0, step, 0.2f, NULL, NULL, &err) == PT_OK);
            CHECK(pt_replica_forward_backward(cap.r, g_x, g_y, n, 0, step, 0.2f, NULL, NULL, &err) == PT_OK);
            CHECK(pt_replica_update(plain.r, lr, step + 1, &err) == PT_OK);
            CHECK(pt_replica_update(cap.r, lr, step + 1, &err) == PT_OK);
            continue;
        }
        one_step(plain.r, step, n, lr, mom, la);
        one_step(cap.r, step, n, lr, mom, lb);
        CHECKF(memcmp(la, lb, (size_t)n * sizeof(float)) == 0, "%s step %d: losses differ (%.9g vs %.9g)",
               pt_optim_name(kind), step, la[0], lb[0]);
        if (step == 2 || step == 5 || step == 13) { /* not 3 in a row: no evaluation graph */
            float e1[CAP * K], e2[CAP * K];
            CHECK(pt_replica_eval(plain.r, g_x, g_y, 5, e1, NULL, &err) == PT_OK);
            CHECK(pt_replica_eval(cap.r, g_x, g_y, 5, e2, NULL, &err) == PT_OK);
            CHECKF(memcmp(e1, e2, sizeof(float) * 5 * K) == 0, "step %d: evaluation logits differ", step);
        }
        CHECKF(same_state(&plain, &cap), "%s step %d: the weights, optimizer state or buffers differ",
               pt_optim_name(kind), step);
    }
    pt_replica_graph_stats(cap.r, &gs);
    CHECKF(gs.on, "why: %s", gs.why);
    CHECKF(gs.captured_after_step == 2, "captured after step %lld", (long long)gs.captured_after_step);
    /* the training part once per input slot (the batches alternate between two), the update */
    CHECKF(caps_before_short == 3, "%lld captures in the first 6 steps (training twice and update)",
           (long long)caps_before_short);
    CHECKF(caps_after_short == caps_before_short + 1, "a new batch size: %lld -> %lld captures",
           (long long)caps_before_short, (long long)caps_after_short);
    CHECKF(caps_before_fit == caps_after_short, "back to a batch size seen: %lld -> %lld captures",
           (long long)caps_after_short, (long long)caps_before_fit);
    CHECKF(ws_after != ws_before, "the re-fit did not change the workspace (%zu bytes), nothing to re-capture",
           ws_before);
    /* the training part (both slots) and the update part again; the evaluation ran once since */
    CHECKF(gs.captures == caps_before_fit + 3, "after a workspace re-fit: %lld -> %lld captures",
           (long long)caps_before_fit, (long long)gs.captures);
    CHECKF(gs.launches > 10, "%lld graph launches", (long long)gs.launches);
    rig_close(&plain);
    rig_close(&cap);
}

static void captured_steps_match_uncaptured_bitwise(void)
{
    captured_steps_match_uncaptured_bitwise_with(PT_OPTIM_SGD);
    captured_steps_match_uncaptured_bitwise_with(PT_OPTIM_ADAMW);
    captured_steps_match_uncaptured_bitwise_with(PT_OPTIM_RMSPROP);
}

/* on where the device cannot: creation fails with the reason; off on a device that can: no
 * capture, ops one by one, and the input written plainly when pinned input is off. */
static void switches_on_and_off(void)
{
    pt_error err;
    pt_device *dev = NULL;
    pt_net *net = tiny_net();
    CHECK(net && pt_device_open("cpu", 0, NULL, &dev, &err) == PT_OK);
    if (!dev || !net) return;
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
    pt_replica *r = NULL;
    pt_replica_options ro = {.graphs = PT_SWITCH_ON};
    CHECK(pt_replica_create_ex(net, dev, CAP, &oc, 1, &ro, &r, &err) == PT_ERR_UNSUPPORTED && !r);
    CHECKF(strstr(err.msg, "--cuda-graphs on") && strstr(err.msg, "cannot capture graphs"), "%s", err.msg);
    ro = (pt_replica_options){.pinned_input = PT_SWITCH_ON};
    CHECK(pt_replica_create_ex(net, dev, CAP, &oc, 1, &ro, &r, &err) == PT_ERR_UNSUPPORTED && !r);
    CHECKF(strstr(err.msg, "--pinned-input on") && strstr(err.msg, "pinned"), "%s", err.msg);
    pt_device_close(dev);
    pt_net_free(net);

    rig off;
    if (!rig_open(&off, 1, PT_OPTIM_SGD, PT_SWITCH_OFF)) return;
    float loss[CAP];
    for (int step = 0; step < 5; step++) one_step(off.r, step, 6, 0.1f, 0.9f, loss);
    pt_graph_stats gs;
    pt_replica_graph_stats(off.r, &gs);
    CHECKF(!gs.on && gs.captures == 0 && gs.launches == 0 && strcmp(gs.why, "--cuda-graphs off") == 0,
           "on %d, %lld captures, why '%s'", gs.on, (long long)gs.captures, gs.why);
    rig_close(&off);

    CHECK(pt_switch_parse("auto", &ro.graphs) && ro.graphs == PT_SWITCH_AUTO);
    CHECK(pt_switch_parse("off", &ro.graphs) && ro.graphs == PT_SWITCH_OFF);
    CHECK(!pt_switch_parse("yes", &ro.graphs) && !pt_switch_parse("", &ro.graphs));
    CHECK(strcmp(pt_switch_name(PT_SWITCH_ON), "on") == 0);
}

/* A capture that fails leaves the replica launching op by op, with the same numbers, and says
 * why. */
static void a_failed_capture_falls_back_to_launching_op_by_op(void)
{
    rig plain, failing;
    if (!rig_open(&plain, 0, PT_OPTIM_SGD, PT_SWITCH_AUTO) || !rig_open(&failing, 2, PT_OPTIM_SGD, PT_SWITCH_AUTO))
        return;
    for (int step = 0; step < 6; step++) {
        float la[CAP], lb[CAP];
        one_step(plain.r, step, 6, 0.1f, 0.9f, la);
        one_step(failing.r, step, 6, 0.1f, 0.9f, lb);
        CHECKF(memcmp(la, lb, 6 * sizeof(float)) == 0, "step %d: losses differ", step);
    }
    CHECK(same_state(&plain, &failing));
    pt_graph_stats gs;
    pt_replica_graph_stats(failing.r, &gs);
    CHECKF(!gs.on && gs.captures == 0 && gs.launches == 0, "on %d, %lld captures, %lld launches", gs.on,
           (long long)gs.captures, (long long)gs.launches);
    CHECKF(strstr(gs.why, "the capture of the training part failed") && strstr(gs.why, "fail every capture"),
           "why: '%s'", gs.why);
    rig_close(&plain);
    rig_close(&failing);
}

/* The emulating device's copy queue: an asynchronous write into an operand of an op run since
 * the host last waited for the device fails, unless the copy queue waits for a compute fence
 * taken after that op; memory no such op touches, and any memory after a read, is free. */
static void a_copy_into_memory_a_queued_op_uses_must_wait_for_it(void)
{
    pt_device_options dopt = {.threads = 1, .emulate_graphs = 1};
    pt_device *dev = NULL;
    pt_buffer *buf = NULL;
    pt_error err;
    CHECK(pt_device_open("cpu", 0, &dopt, &dev, &err) == PT_OK);
    CHECK(dev && pt_device_alloc(dev, 64 * sizeof(float), &buf, &err) == PT_OK);
    if (!dev || !buf) return;
    const pt_backend_iface *be = dev->be;
    CHECK(be->compute_fence && be->copy_wait);
    if (!be->compute_fence || !be->copy_wait) return;
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = PT_OP_FILL;
    op.nt = 1;
    op.t[0] = pt_tensor_1d(buf, 0, PT_F32, 16);
    op.p.fill.value = 1.0f;
    static float src[16], back[16];
    uint64_t f, cf;
    const pt_mem at0 = {buf, 0}, at32 = {buf, 32 * sizeof(float)};
    CHECK(pt_device_run(dev, &op, &err) == PT_OK);
    CHECK(be->write_async(dev->ctx, at0, src, sizeof src, &f, &err) == PT_ERR_INVALID);
    CHECKF(strstr(err.msg, "may still run") && strstr(err.msg, "copy_wait"), "%s", err.msg);
    CHECKF(be->write_async(dev->ctx, at32, src, sizeof src, &f, &err) == PT_OK, "%s", err.msg);
    CHECK(be->compute_fence(dev->ctx, &cf, &err) == PT_OK && cf > 0);
    CHECK(be->copy_wait(dev->ctx, cf, &err) == PT_OK);
    CHECKF(be->write_async(dev->ctx, at0, src, sizeof src, &f, &err) == PT_OK, "%s", err.msg);
    CHECK(be->write_fence_wait(dev->ctx, f, 1, &err) == PT_OK);
    /* an op after the fence is not covered by it; a read is */
    CHECK(pt_device_run(dev, &op, &err) == PT_OK);
    CHECK(be->write_async(dev->ctx, at0, src, sizeof src, &f, &err) == PT_ERR_INVALID);
    CHECK(pt_device_read(dev, back, at0, sizeof back, &err) == PT_OK && back[0] == 1.0f);
    CHECKF(be->write_async(dev->ctx, at0, src, sizeof src, &f, &err) == PT_OK, "%s", err.msg);
    CHECK(be->write_fence_wait(dev->ctx, f, 1, &err) == PT_OK);
    pt_device_free(dev, buf);
    pt_device_close(dev);
}

/* Two steps whose outputs are not read (the host never waits), then the next batch staged into
 * the first step's slot: the copy waits for that step's ops on the device (else the emulating
 * device refuses it), and the step that reads it gets bitwise the losses of a plain device. */
static void a_staged_copy_waits_for_the_step_that_read_its_slot(void)
{
    rig plain, pin;
    if (!rig_open(&plain, 0, PT_OPTIM_SGD, PT_SWITCH_AUTO) || !rig_open(&pin, 1, PT_OPTIM_SGD, PT_SWITCH_AUTO)) return;
    CHECK(!pt_replica_pinned_input(plain.r, NULL, 0) && pt_replica_pinned_input(pin.r, NULL, 0));
    static float x[3][CAP * C * H * W];
    static int32_t y[3][CAP];
    for (int k = 0; k < 3; k++) {
        fill_batch(k);
        memcpy(x[k], g_x, sizeof g_x);
        memcpy(y[k], g_y, sizeof g_y);
    }
    float loss[2][CAP], logits[CAP * K];
    rig *rs[2] = {&plain, &pin};
    for (int w = 0; w < 2; w++) {
        pt_replica *r = rs[w]->r;
        pt_error err;
        for (int k = 0; k < 2; k++) {
            CHECKF(pt_replica_forward_backward(r, x[k], y[k], 6, 0, k, 0.125f, NULL, NULL, &err) == PT_OK, "%s",
                   err.msg);
            CHECKF(pt_replica_update(r, 0.1f, k + 1, &err) == PT_OK, "%s", err.msg);
        }
        CHECKF(pt_replica_stage_input(r, x[2], y[2], NULL, NULL, 6, &err) == PT_OK, "staging: %s", err.msg);
        CHECKF(pt_replica_forward_backward(r, x[2], y[2], 6, 0, 2, 0.125f, logits, loss[w], &err) == PT_OK, "%s",
               err.msg);
    }
    pt_graph_stats gs;
    pt_replica_graph_stats(pin.r, &gs);
    CHECKF(gs.inputs_staged == 1, "%lld batches found staged", (long long)gs.inputs_staged);
    CHECK(memcmp(loss[0], loss[1], 6 * sizeof(float)) == 0);
    rig_close(&plain);
    rig_close(&pin);
}

int main(void)
{
    RUN(per_step_parameters_are_exactly_the_declared_ones);
    RUN(captured_steps_match_uncaptured_bitwise);
    RUN(switches_on_and_off);
    RUN(a_failed_capture_falls_back_to_launching_op_by_op);
    RUN(a_copy_into_memory_a_queued_op_uses_must_wait_for_it);
    RUN(a_staged_copy_waits_for_the_step_that_read_its_slot);
    TEST_EXIT();
}
