/* The replica (polytrain/replica.h): creation, which plans the memory (replica_plan.c) and builds
 * the op lists (replica_emit.c), the state copies, and the step functions that only patch
 * and run prebuilt ops. Nothing here allocates after pt_replica_create returns. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/replica_internal.h"
#include "core/rng.h"

pt_status pt_replica_create(const pt_net *net, pt_device *dev, int batch_capacity,
                            const pt_optim_config *opt, uint64_t seed, pt_replica **out,
                            pt_error *err)
{
    return pt_replica_create_ex(net, dev, batch_capacity, opt, seed, NULL, out, err);
}

pt_status pt_replica_create_ex(const pt_net *net, pt_device *dev, int batch_capacity,
                               const pt_optim_config *opt, uint64_t seed, const pt_replica_options *ro,
                               pt_replica **out, pt_error *err)
{
    *out = NULL;
    if (net->output < 0) return pt_fail(err, PT_ERR_INVALID, "replica: the net is not finished");
    if (batch_capacity < 1) return pt_fail(err, PT_ERR_INVALID, "replica: batch must be >= 1");
    pt_replica *r = calloc(1, sizeof *r);
    if (!r) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    r->net = net;
    r->dev = dev;
    r->opt = *opt;
    r->capacity = batch_capacity;
    r->seed = seed;
    r->sync_bn = ro ? ro->sync_bn : 0;
    r->precision = ro ? ro->precision : PT_PREC_FP32;
    r->act_storage = ro ? ro->act_storage : PT_ACT_STORAGE_AUTO;
    r->layout_opt = ro ? ro->layout : PT_IMAGES_AUTO;
    pt_status lst = rp_check_layout(dev, r->layout_opt, err);
    if (lst != PT_OK) {
        free(r);
        return lst;
    }
    pt_status pst = pt_device_precision(dev, r->precision, NULL, 0, err);
    if (pst != PT_OK) {
        free(r);
        return pst;
    }
    r->fold_relu = !(ro && ro->no_fuse_relu);
    r->preg = pt_net_param_region(net);
    r->breg = pt_net_buffer_region(net);
    r->nslots = pt_optim_slots(opt);
    r->mem = calloc((size_t)net->nnodes, sizeof *r->mem);
    r->consumers = calloc((size_t)net->nnodes, sizeof *r->consumers);
    r->grad_written = calloc((size_t)net->nnodes, sizeof *r->grad_written);
    r->param_grad_written = calloc((size_t)net->nparams + 1, sizeof *r->param_grad_written);
    r->act_dtype = calloc((size_t)net->nnodes, sizeof *r->act_dtype); /* PT_F32 (0) */
    r->act_layout = calloc((size_t)net->nnodes, sizeof *r->act_layout);
    r->act_unused = calloc((size_t)net->nnodes, sizeof *r->act_unused);
    pt_dtype *want = calloc((size_t)net->nnodes, sizeof *want);
    pt_status st = PT_OK;
    if (!r->mem || !r->consumers || !r->grad_written || !r->param_grad_written || !r->act_dtype || !r->act_layout ||
        !r->act_unused || !want) {
        st = pt_fail(err, PT_ERR_NOMEM, "out of host memory");
        goto fail;
    }
    for (int i = 0; i < net->nnodes; i++)
        for (int k = 0; k < net->nodes[i].nin; k++) r->consumers[net->nodes[i].in[k]]++;
    rp_choose_layouts(r);

    /* pinned input gets a second input slot in the arena (planned with the rest) */
    r->in_slots = (!ro || ro->pinned_input != PT_SWITCH_OFF) && pt_device_pinned_input(dev) ? 2 : 1;
    r->slab_bytes = (size_t)((2 + r->nslots) * r->preg + r->breg) * sizeof(float);
    st = pt_device_alloc(dev, r->slab_bytes, &r->slab, err);
    if (st != PT_OK) goto fail;
    {
        /* Zero, once: device memory comes uninitialised, and the regions' alignment padding is
         * never written by a step or by a resume's pt_replica_write_state, yet the ops over a
         * whole region read it (the gradients' sum of squares for clipping, the loss scale's
         * Inf/NaN check): a replica whose state came from a checkpoint must read zeros there,
         * as one from pt_replica_init_params does. */
        pt_op fill;
        memset(&fill, 0, sizeof fill);
        fill.kind = PT_OP_FILL;
        fill.nt = 1;
        fill.t[0] = pt_tensor_1d(r->slab, 0, PT_F32, (int64_t)(r->slab_bytes / sizeof(float)));
        if ((st = pt_device_run(dev, &fill, err)) != PT_OK) goto fail;
    }

    /* Emit against a provisional arena layout to learn the workspace need. A backend may
     * plan differently for different batch sizes (its need is not monotonic in n), and a
     * short last batch re-plans for its n: take the maximum over every n that can occur. */
    size_t acts_end = rp_plan_acts_sequential(r);
    rp_plan_tail(r, acts_end);
    r->batch_train = r->batch_eval = -1;
    if ((st = rp_emit_forward(r, &r->fwd_train, 1, batch_capacity, err)) != PT_OK ||
        (st = rp_emit_backward(r, batch_capacity, err)) != PT_OK ||
        (st = rp_emit_forward(r, &r->fwd_eval, 0, batch_capacity, err)) != PT_OK ||
        (st = rp_choose_act_dtypes(r, want, err)) != PT_OK)
        goto fail;
    /* outputs no op touches (a BN's, folded into the residual add after it) take no memory:
     * the layout again without them */
    if (rp_mark_unused_acts(r)) {
        acts_end = rp_plan_acts_sequential(r);
        rp_plan_tail(r, acts_end);
        if ((st = rp_emit_forward(r, &r->fwd_train, 1, batch_capacity, err)) != PT_OK ||
            (st = rp_emit_backward(r, batch_capacity, err)) != PT_OK ||
            (st = rp_emit_forward(r, &r->fwd_eval, 0, batch_capacity, err)) != PT_OK)
            goto fail;
    }
    if ((st = rp_share_activations(r, acts_end, err)) != PT_OK) goto fail;
    r->act_plan.act_bytes_fp32 = r->act_plan.act_bytes;
    r->act_plan.dtype16 = PT_F32;
    for (int i = 0; i < net->nnodes; i++) {
        if (want[i] != PT_F32) r->act_plan.dtype16 = want[i];
        r->act_dtype[i] = want[i];
    }
    if (r->act_plan.dtype16 != PT_F32) {
        /* the plan again with those sizes: sequential, emitted, then shared by live range */
        acts_end = rp_plan_acts_sequential(r);
        rp_plan_tail(r, acts_end);
        if ((st = rp_emit_forward(r, &r->fwd_train, 1, batch_capacity, err)) != PT_OK ||
            (st = rp_emit_backward(r, batch_capacity, err)) != PT_OK ||
            (st = rp_emit_forward(r, &r->fwd_eval, 0, batch_capacity, err)) != PT_OK ||
            (st = rp_share_activations(r, acts_end, err)) != PT_OK)
            goto fail;
    }
    rp_count_acts(r, &r->act_plan.nacts, &r->act_plan.n16);
    size_t ws = 0;
    for (int n = batch_capacity; n >= 1; n--) {
        if ((st = rp_emit_forward(r, &r->fwd_train, 1, n, err)) != PT_OK) goto fail;
        if ((st = rp_emit_backward(r, n, err)) != PT_OK) goto fail;
        if ((st = rp_emit_forward(r, &r->fwd_eval, 0, n, err)) != PT_OK) goto fail;
        size_t w1 = rp_list_workspace(r, &r->fwd_train), w2 = rp_list_workspace(r, &r->bwd),
               w3 = rp_list_workspace(r, &r->fwd_eval);
        if (w1 > ws) ws = w1;
        if (w2 > ws) ws = w2;
        if (w3 > ws) ws = w3;
    }
    rp_emit_update(r);
    r->ws_bytes = rp_align_bytes(ws);
    r->arena_bytes = r->ws_off + r->ws_bytes;
    st = pt_device_alloc(dev, r->ws_off, &r->arena, err);
    if (st == PT_OK) st = pt_device_alloc(dev, rp_ws_alloc_bytes(r->ws_bytes), &r->wsbuf, err);
    if (st != PT_OK) goto fail;
    r->peak_bytes = r->slab_bytes + r->arena_bytes;
    /* Now with the real arena handle. */
    if ((st = rp_set_train_batch(r, batch_capacity, err)) != PT_OK) goto fail;
    if ((st = rp_set_eval_batch(r, batch_capacity, err)) != PT_OK) goto fail;
    rp_emit_update(r);
    if ((st = rp_attach_workspace(r, &r->update, err)) != PT_OK) goto fail;
    if ((st = rp_graphs_setup(r, ro ? ro->graphs : PT_SWITCH_AUTO, ro ? ro->pinned_input : PT_SWITCH_AUTO, err)) !=
        PT_OK)
        goto fail;
    free(want);
    *out = r;
    return PT_OK;
fail:
    free(want);
    pt_replica_free(r);
    return st;
}

void pt_replica_free(pt_replica *r)
{
    if (!r) return;
    rp_graphs_free(r);
    if (r->slab) pt_device_free(r->dev, r->slab);
    if (r->arena) pt_device_free(r->dev, r->arena);
    if (r->wsbuf) pt_device_free(r->dev, r->wsbuf);
    if (r->acc) pt_device_free(r->dev, r->acc);
    if (r->ema) pt_device_free(r->dev, r->ema);
    free(r->fwd_train.ops);
    free(r->bwd.ops);
    free(r->fwd_eval.ops);
    free(r->update.ops);
    free(r->mem);
    free(r->consumers);
    free(r->grad_written);
    free(r->param_grad_written);
    free(r->act_dtype);
    free(r->act_layout);
    free(r->act_unused);
    free(r->init_params);
    free(r->init_buffers);
    free(r);
}

/* ---------------------------------------------------------------- state */

static float init_value(const pt_param_info *p, uint64_t seed, int index, int64_t e)
{
    switch (p->init) {
    case PT_INIT_ZEROS: return 0.0f;
    case PT_INIT_ONES: return 1.0f;
    case PT_INIT_KAIMING_NORMAL_FAN_OUT:
        return sqrtf(2.0f / (float)p->fan) *
               pt_rng_normal(seed, PT_RNG_INIT, (uint64_t)index, (uint64_t)e, 0);
    case PT_INIT_UNIFORM_FAN_IN: {
        float bound = 1.0f / sqrtf((float)p->fan);
        return (2.0f * pt_rng_uniform(seed, PT_RNG_INIT, (uint64_t)index, (uint64_t)e, 0) - 1.0f) * bound;
    }
    }
    return 0.0f;
}

void pt_net_init_values(const pt_net *net, uint64_t seed, float *params, float *buffers)
{
    memset(params, 0, (size_t)pt_net_param_region(net) * sizeof *params);
    memset(buffers, 0, (size_t)pt_net_buffer_region(net) * sizeof *buffers);
    for (int i = 0; i < net->nparams; i++) {
        const pt_param_info *p = &net->params[i];
        for (int64_t e = 0; e < p->numel; e++) params[p->offset + e] = init_value(p, seed, i, e);
    }
    for (int i = 0; i < net->nbuffers; i++)
        for (int64_t e = 0; e < net->buffers[i].numel; e++) buffers[net->buffers[i].offset + e] = net->buffers[i].init;
}

pt_status pt_replica_set_initial_state(pt_replica *r, const float *params, const float *buffers, int64_t bn_steps,
                                       pt_error *err)
{
    free(r->init_params);
    free(r->init_buffers);
    r->init_params = r->init_buffers = NULL;
    r->init_bn_steps = 0;
    if (!params) return PT_OK;
    r->init_params = malloc((size_t)(r->preg + 1) * sizeof(float));
    r->init_buffers = malloc((size_t)(r->breg + 1) * sizeof(float));
    if (!r->init_params || !r->init_buffers) {
        free(r->init_params);
        free(r->init_buffers);
        r->init_params = r->init_buffers = NULL;
        return pt_fail(err, PT_ERR_NOMEM, "out of host memory for the initial state");
    }
    memcpy(r->init_params, params, (size_t)r->preg * sizeof(float));
    memcpy(r->init_buffers, buffers, (size_t)r->breg * sizeof(float));
    r->init_bn_steps = bn_steps;
    return PT_OK;
}

pt_status pt_replica_init_params(pt_replica *r, uint64_t seed, pt_error *err)
{
    size_t n = (size_t)((2 + r->nslots) * r->preg + r->breg);
    float *host = calloc(n, sizeof *host);
    if (!host) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    float *bufs = host + (2 + r->nslots) * r->preg;
    if (r->init_params) {
        memcpy(host, r->init_params, (size_t)r->preg * sizeof(float));
        memcpy(bufs, r->init_buffers, (size_t)r->breg * sizeof(float));
    } else {
        pt_net_init_values(r->net, seed, host, bufs);
    }
    pt_mem dst = {r->slab, 0};
    pt_status st = pt_device_write(r->dev, dst, host, n * sizeof(float), err);
    free(host);
    r->bn_steps = r->init_params ? r->init_bn_steps : 0;
    r->opt_started = 0;
    return st;
}

int64_t pt_replica_param_region(const pt_replica *r) { return r->preg; }
int64_t pt_replica_buffer_region(const pt_replica *r) { return r->breg; }
int pt_replica_opt_slots(const pt_replica *r) { return r->nslots; }
int64_t pt_replica_bn_steps(const pt_replica *r) { return r->bn_steps; }
int pt_replica_optimizer_started(const pt_replica *r) { return r->opt_started; }
const pt_net *pt_replica_net(const pt_replica *r) { return r->net; }
pt_device *pt_replica_device(const pt_replica *r) { return r->dev; }
static size_t acc_bytes(const pt_replica *r)
{
    return (r->acc ? (size_t)r->preg * sizeof(float) : 0) + (r->ema ? (size_t)(r->preg + r->breg) * sizeof(float) : 0);
}
size_t pt_replica_device_bytes(const pt_replica *r) { return r->slab_bytes + r->arena_bytes + acc_bytes(r); }
size_t pt_replica_peak_bytes(const pt_replica *r) { return r->peak_bytes; }
const pt_optim_config *pt_replica_optim(const pt_replica *r) { return &r->opt; }

void pt_replica_set_progress(pt_replica *r, int64_t bn_steps, int optimizer_started)
{
    r->bn_steps = bn_steps;
    r->opt_started = optimizer_started;
}

pt_mem pt_replica_grad_mem(const pt_replica *r)
{
    pt_mem m = {r->slab, (size_t)r->preg * sizeof(float)};
    return m;
}

pt_mem pt_replica_buffer_mem(const pt_replica *r)
{
    pt_mem m = {r->slab, (size_t)(2 + r->nslots) * (size_t)r->preg * sizeof(float)};
    return m;
}

pt_status pt_replica_read_grads(pt_replica *r, float *grads, pt_error *err)
{
    return pt_device_read(r->dev, grads, pt_replica_grad_mem(r), (size_t)r->preg * sizeof(float), err);
}

static pt_status state_io(pt_replica *r, float *params, float *buffers, float *opt, int write,
                          pt_error *err)
{
    size_t pb = (size_t)r->preg * sizeof(float);
    pt_mem pm = {r->slab, 0};
    pt_mem om = {r->slab, 2 * pb};
    pt_mem bm = {r->slab, (size_t)(2 + r->nslots) * pb};
    size_t ob = (size_t)r->nslots * pb, bb = (size_t)r->breg * sizeof(float);
    if (write) {
        PT_TRY(pt_device_write(r->dev, pm, params, pb, err));
        if (ob && opt) PT_TRY(pt_device_write(r->dev, om, opt, ob, err));
        if (bb) PT_TRY(pt_device_write(r->dev, bm, buffers, bb, err));
    } else {
        PT_TRY(pt_device_read(r->dev, params, pm, pb, err));
        if (ob && opt) PT_TRY(pt_device_read(r->dev, opt, om, ob, err));
        if (bb) PT_TRY(pt_device_read(r->dev, buffers, bm, bb, err));
    }
    return PT_OK;
}

pt_status pt_replica_read_state(pt_replica *r, float *params, float *buffers, float *opt, pt_error *err)
{
    return state_io(r, params, buffers, opt, 0, err);
}

pt_status pt_replica_write_state(pt_replica *r, const float *params, const float *buffers,
                                 const float *opt, pt_error *err)
{
    return state_io(r, (float *)params, (float *)buffers, (float *)opt, 1, err);
}

/* ---------------------------------------------------------------- steps */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *list_name(const pt_replica *r, const op_list *l)
{
    return l == &r->fwd_train ? "forward" : l == &r->bwd ? "backward" : l == &r->update ? "update" : "eval";
}

pt_status rp_run_list(pt_replica *r, const op_list *l, pt_error *err)
{
    pt_replica_list which = l == &r->fwd_train ? PT_LIST_FORWARD : l == &r->bwd ? PT_LIST_BACKWARD : PT_LIST_OTHER;
    /* An asynchronous backend returns when the op is queued: a synchronisation after it puts
     * its execution inside [t0, t1] */
    const int timed = r->prof || r->trace;
    for (int i = 0; i < l->n; i++) {
        double t0 = timed ? now_s() : 0;
        pt_status st = pt_device_run(r->dev, &l->ops[i], err);
        if (st == PT_OK && timed) st = pt_device_sync(r->dev, err);
        if (st != PT_OK) return pt_error_wrap(err, "op %d (%s)", i, pt_op_name(l->ops[i].kind));
        if (timed) {
            const double t1 = now_s();
            if (r->prof) {
                r->prof->seconds[l->ops[i].kind] += t1 - t0;
                r->prof->count[l->ops[i].kind]++;
            }
            if (r->trace) pt_trace_op(r->trace, r->trace_track, list_name(r, l), i, &l->ops[i], t0, t1);
        }
        if (r->hook && which != PT_LIST_OTHER) PT_TRY(r->hook(r->hook_user, r, which, i, err));
    }
    return PT_OK;
}

void pt_replica_set_hook(pt_replica *r, pt_replica_hook hook, void *user)
{
    r->hook = hook;
    r->hook_user = user;
}

void pt_replica_set_queued(pt_replica *r, pt_replica_queued_fn fn, void *user)
{
    r->queued = fn;
    r->queued_user = user;
}

void pt_replica_set_global_batch(pt_replica *r, int n) { r->global_batch = n; }
int pt_replica_sync_bn(const pt_replica *r) { return r->sync_bn; }
pt_precision pt_replica_precision(const pt_replica *r) { return r->precision; }

pt_dtype pt_replica_act_dtype(const pt_replica *r, int node)
{
    return node >= 0 && node < r->net->nnodes ? r->act_dtype[node] : PT_F32;
}

void pt_replica_act_plan(const pt_replica *r, pt_act_plan *out) { *out = r->act_plan; }
pt_act_storage pt_replica_act_storage(const pt_replica *r) { return r->act_storage; }
pt_image_layout pt_replica_layout_option(const pt_replica *r) { return r->layout_opt; }

pt_layout pt_replica_node_layout(const pt_replica *r, int node)
{
    return node >= 0 && node < r->net->nnodes ? r->act_layout[node] : PT_LAYOUT_NCHW;
}

void pt_replica_count_layouts(const pt_replica *r, int *n4d, int *nhwc) { rp_count_layouts(r, n4d, nhwc); }

int pt_image_layout_parse(const char *s, pt_image_layout *out)
{
    if (s && strcmp(s, "auto") == 0) *out = PT_IMAGES_AUTO;
    else if (s && strcmp(s, "nchw") == 0) *out = PT_IMAGES_NCHW;
    else if (s && strcmp(s, "nhwc") == 0) *out = PT_IMAGES_NHWC;
    else return 0;
    return 1;
}

const char *pt_image_layout_name(pt_image_layout l)
{
    return l == PT_IMAGES_NCHW ? "nchw" : l == PT_IMAGES_NHWC ? "nhwc" : "auto";
}

pt_status rp_check_layout(pt_device *dev, pt_image_layout layout, pt_error *err)
{
    if (layout == PT_IMAGES_NHWC && !pt_device_takes_nhwc(dev))
        return pt_fail(err, PT_ERR_UNSUPPORTED, "layout nhwc: the %s backend keeps images NCHW only", dev->be->name);
    return PT_OK;
}

int pt_device_takes_nhwc(pt_device *dev)
{
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = PT_OP_RELU_FWD;
    op.nt = 2;
    for (int i = 0; i < 2; i++) {
        op.t[i] = pt_tensor_4d(NULL, 0, 1, 1, 1, 1);
        op.t[i].layout = PT_LAYOUT_NHWC;
    }
    return dev->be->supports(dev->ctx, &op);
}
int pt_replica_fuse_relu(const pt_replica *r) { return r->fold_relu; }

const pt_op *pt_replica_ops(const pt_replica *r, pt_replica_list which, int *n)
{
    const op_list *l = which == PT_LIST_FORWARD ? &r->fwd_train : which == PT_LIST_BACKWARD ? &r->bwd : &r->update;
    *n = l->n;
    return l->ops;
}

void pt_replica_set_profile(pt_replica *r, pt_op_profile *prof) { r->prof = prof; }

void pt_replica_set_trace(pt_replica *r, pt_trace *trace, int track)
{
    r->trace = trace;
    r->trace_track = track;
}

static pt_status check_labels(const pt_replica *r, const int32_t *y, int n, pt_error *err)
{
    for (int i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= r->net->num_classes)
            return pt_fail(err, PT_ERR_INVALID, "label %d of sample %d is outside 0..%d", (int)y[i],
                           i, r->net->num_classes - 1);
    return PT_OK;
}

static pt_status download_outputs(pt_replica *r, int n, float *logits, float *loss, pt_error *err)
{
    pt_mem lm = {r->arena, r->mem[r->net->output].act}, sm = {r->arena, r->loss_off};
    if (logits)
        PT_TRY(pt_device_read(r->dev, logits, lm, (size_t)n * r->net->num_classes * sizeof(float), err));
    if (loss) PT_TRY(pt_device_read(r->dev, loss, sm, (size_t)n * sizeof(float), err));
    if (logits || loss) r->in.busy[0] = r->in.busy[1] = 0; /* a read waits for the device */
    return PT_OK;
}

pt_status pt_replica_forward_backward(pt_replica *r, const float *x, const int32_t *y, int n,
                                      int64_t sample_base, int64_t step, float grad_scale,
                                      float *logits_out, float *loss_out, pt_error *err)
{
    return pt_replica_forward_backward_mixed(r, x, y, NULL, NULL, n, sample_base, step, grad_scale,
                                             logits_out, loss_out, err);
}

/* Records a batch size the replica has run (pt_replica_fit_workspace fits to these). */
static void note_batch(pt_replica *r, int *seen, int *nseen, int n)
{
    for (int i = 0; i < *nseen; i++)
        if (seen[i] == n) return;
    if (*nseen < RP_SEEN_MAX)
        seen[(*nseen)++] = n;
    else
        r->seen_overflow = 1;
}

static size_t max_bytes(size_t a, size_t b) { return a > b ? a : b; }

pt_status pt_replica_fit_workspace(pt_replica *r, size_t *before, size_t *after, pt_error *err)
{
    if (before) *before = r->ws_bytes;
    if (after) *after = r->ws_bytes;
    if (r->seen_overflow || (r->nseen_train == 0 && r->nseen_eval == 0)) return PT_OK;
    const int cur_train = r->batch_train, cur_eval = r->batch_eval;
    /* what the device needs now for every size run so far and the current ones (a backend
     * that has measured its algorithms answers for the chosen ones) */
    size_t need = rp_list_workspace(r, &r->update);
    for (int i = 0; i <= r->nseen_train; i++) {
        const int n = i < r->nseen_train ? r->seen_train[i] : cur_train;
        if (n < 1) continue;
        r->batch_train = -1;
        PT_TRY(rp_emit_forward(r, &r->fwd_train, 1, n, err));
        PT_TRY(rp_emit_backward(r, n, err));
        need = max_bytes(need, max_bytes(rp_list_workspace(r, &r->fwd_train), rp_list_workspace(r, &r->bwd)));
    }
    for (int i = 0; i <= r->nseen_eval; i++) {
        const int n = i < r->nseen_eval ? r->seen_eval[i] : cur_eval;
        if (n < 1) continue;
        r->batch_eval = -1;
        PT_TRY(rp_emit_forward(r, &r->fwd_eval, 0, n, err));
        need = max_bytes(need, rp_list_workspace(r, &r->fwd_eval));
    }
    r->batch_train = r->batch_eval = -1;
    need = rp_align_bytes(need);
    if (need != r->ws_bytes) {
        PT_TRY(rp_resize_workspace(r, need, cur_train, cur_eval, err));
    } else {
        PT_TRY(rp_set_train_batch(r, cur_train > 0 ? cur_train : r->capacity, err));
        PT_TRY(rp_set_eval_batch(r, cur_eval > 0 ? cur_eval : r->capacity, err));
    }
    if (after) *after = r->ws_bytes;
    return PT_OK;
}

size_t pt_replica_workspace_bytes(const pt_replica *r) { return r->ws_bytes; }

/* Forward, loss and backward queued as part seg (RP_SEG_TRAIN, or RP_SEG_STEP with the update
 * lists set up by the caller); the outputs are not read. */
static pt_status train_part(pt_replica *r, const float *x, const int32_t *y, const int32_t *y2, const float *lam,
                            int n, int64_t sample_base, int64_t step, float grad_scale, int seg, pt_error *err)
{
    if (n < 1 || n > r->capacity)
        return pt_fail(err, PT_ERR_INVALID, "batch of %d samples, replica holds 1..%d", n, r->capacity);
    if (!y2 != !lam) return pt_fail(err, PT_ERR_INVALID, "mixup targets need both second labels and weights");
    PT_TRY(check_labels(r, y, n, err));
    if (y2) PT_TRY(check_labels(r, y2, n, err));
    PT_TRY(rp_set_train_batch(r, n, err));
    note_batch(r, r->seen_train, &r->nseen_train, n);
    /* the per-step values by value and in the step record, which the ops refer to when the
     * replica captures graphs */
    pt_step_scalars *rec = &r->g.host[RP_SEG_TRAIN];
    rec->step_lo = (uint32_t)(uint64_t)step;
    rec->step_hi = (uint32_t)((uint64_t)step >> 32);
    rec->sample_base_lo = (uint32_t)(uint64_t)sample_base;
    rec->sample_base_hi = (uint32_t)((uint64_t)sample_base >> 32);
    rec->grad_scale = grad_scale;
    const pt_mem ref = rp_step_record(r, RP_SEG_TRAIN);
    for (int i = 0; i < r->fwd_train.n; i++) {
        pt_op *op = &r->fwd_train.ops[i];
        if (pt_op_has_step_params(op->kind)) op->step = ref;
        if (op->kind == PT_OP_DROPOUT_FWD) {
            /* stream = step*65536 + layer id; the layer id was stored at emission */
            op->p.dropout.stream = (uint64_t)step * 65536u + (op->p.dropout.stream & 0xffffu);
            op->p.dropout.sample_base = sample_base;
        } else if (op->kind == PT_OP_BN_SYNC_FWD) {
            const pt_tensor *xt = &op->t[0];
            op->p.bn.count = (int64_t)(r->global_batch > 0 ? r->global_batch : n) * xt->dim[2] * xt->dim[3];
        } else if (op->kind == PT_OP_XENT) {
            op->p.xent.grad_scale = grad_scale;
            op->p.xent.smoothing = r->label_smoothing;
            op->nt = y2 ? 6 : 4;
            if (y2 && !r->dev->be->supports(r->dev->ctx, op)) {
                op->nt = 4;
                return pt_fail(err, PT_ERR_UNSUPPORTED, "backend '%s' has no mixup/cutmix targets in its loss",
                               r->dev->be->name);
            }
        }
    }
    int slot;
    PT_TRY(rp_upload_input(r, x, y, y2, lam, n, &slot, err));
    rp_point_input(r, &r->fwd_train, slot);
    rp_point_input(r, &r->bwd, slot);
    PT_TRY(rp_write_step_record(r, seg, err));
    for (int i = 0; i < r->bwd.n; i++) {
        pt_op *op = &r->bwd.ops[i];
        if (op->kind == PT_OP_BN_SYNC_BWD) {
            const pt_tensor *xt = &op->t[0];
            op->p.bn.count = (int64_t)(r->global_batch > 0 ? r->global_batch : n) * xt->dim[2] * xt->dim[3];
        }
    }
    PT_TRY(rp_run_part(r, seg, err));
    PT_TRY(rp_input_read_queued(r, slot, err));
    r->bn_steps++;
    r->g.train_steps++;
    return PT_OK;
}

pt_status pt_replica_forward_backward_mixed(pt_replica *r, const float *x, const int32_t *y,
                                            const int32_t *y2, const float *lam, int n,
                                            int64_t sample_base, int64_t step, float grad_scale,
                                            float *logits_out, float *loss_out, pt_error *err)
{
    PT_TRY(train_part(r, x, y, y2, lam, n, sample_base, step, grad_scale, RP_SEG_TRAIN, err));
    if (r->queued) PT_TRY(r->queued(r->queued_user, r, err));
    return download_outputs(r, n, logits_out, loss_out, err);
}

void pt_replica_set_momentum(pt_replica *r, float momentum)
{
    if (r->opt.kind == PT_OPTIM_SGD) r->opt.momentum = momentum;
    else if (r->opt.kind == PT_OPTIM_RMSPROP) {
        /* without a momentum buffer (momentum 0 at creation) there is nothing to cycle */
        if (pt_optim_rmsprop_momentum_slot(&r->opt) >= 0 && momentum != 0.0f) r->opt.momentum = momentum;
    } else r->opt.beta1 = momentum;
}

void pt_replica_set_label_smoothing(pt_replica *r, float smoothing) { r->label_smoothing = smoothing; }

pt_status pt_replica_unscale_grads(pt_replica *r, float inv_scale, int *found_inf, pt_error *err)
{
    *found_inf = 0;
    const pt_mem flag = {r->arena, r->found_off};
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = PT_OP_FILL;
    op.nt = 1;
    op.t[0] = pt_tensor_1d(flag.buf, flag.off, PT_F32, 1);
    PT_TRY(pt_device_run(r->dev, &op, err));
    if (r->preg > 0) {
        memset(&op, 0, sizeof op);
        op.kind = PT_OP_AMP_UNSCALE;
        op.nt = 2;
        const pt_mem g = pt_replica_grad_mem(r);
        op.t[0] = pt_tensor_1d(g.buf, g.off, PT_F32, r->preg);
        op.t[1] = pt_tensor_1d(flag.buf, flag.off, PT_F32, 1);
        op.p.amp.inv_scale = inv_scale;
        PT_TRY(pt_device_run(r->dev, &op, err));
    }
    float found = 0;
    PT_TRY(pt_device_read(r->dev, &found, flag, sizeof found, err));
    *found_inf = found != 0.0f;
    return PT_OK;
}

pt_status pt_replica_enable_accumulation(pt_replica *r, pt_error *err)
{
    if (r->acc || r->preg == 0) return PT_OK;
    PT_TRY(pt_device_alloc(r->dev, (size_t)r->preg * sizeof(float), &r->acc, err));
    if (r->slab_bytes + r->arena_bytes + acc_bytes(r) > r->peak_bytes)
        r->peak_bytes = r->slab_bytes + r->arena_bytes + acc_bytes(r);
    return PT_OK;
}

pt_status pt_replica_accumulate_grads(pt_replica *r, pt_accumulate how, pt_error *err)
{
    if (r->preg == 0) return PT_OK;
    if (!r->acc) return pt_fail(err, PT_ERR_INVALID, "gradient accumulation was not enabled on this replica");
    const pt_mem g = pt_replica_grad_mem(r);
    const pt_tensor grad = pt_tensor_1d(g.buf, g.off, PT_F32, r->preg), acc = pt_tensor_1d(r->acc, 0, PT_F32, r->preg);
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = PT_OP_AXPY;
    op.nt = 2;
    op.p.axpy.alpha = 1.0f;
    /* first: acc = g; then acc += g; last: g += acc, the step's whole gradient */
    op.t[0] = how == PT_ACC_ADD_INTO_GRADS ? acc : grad;
    op.t[1] = how == PT_ACC_ADD_INTO_GRADS ? grad : acc;
    op.accumulate = how != PT_ACC_FIRST;
    return pt_device_run(r->dev, &op, err);
}

pt_status pt_replica_enable_ema(pt_replica *r, pt_error *err)
{
    if (r->ema) return PT_OK;
    PT_TRY(pt_device_alloc(r->dev, (size_t)(r->preg + r->breg + 1) * sizeof(float), &r->ema, err));
    if (r->slab_bytes + r->arena_bytes + acc_bytes(r) > r->peak_bytes)
        r->peak_bytes = r->slab_bytes + r->arena_bytes + acc_bytes(r);
    return PT_OK;
}

pt_mem pt_replica_ema_mem(const pt_replica *r)
{
    pt_mem m = {r->ema, 0};
    return m;
}

int pt_replica_ema_started(const pt_replica *r) { return r->ema_started; }
void pt_replica_set_ema_started(pt_replica *r, int started) { r->ema_started = started; }

/* y = alpha x (+ y), n floats */
static pt_status axpy(pt_replica *r, pt_mem x, pt_mem y, int64_t n, float alpha, int accumulate, pt_error *err)
{
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = PT_OP_AXPY;
    op.nt = 2;
    op.t[0] = pt_tensor_1d(x.buf, x.off, PT_F32, n);
    op.t[1] = pt_tensor_1d(y.buf, y.off, PT_F32, n);
    op.p.axpy.alpha = alpha;
    op.accumulate = accumulate;
    return pt_device_run(r->dev, &op, err);
}

pt_status pt_replica_ema_update(pt_replica *r, float decay, pt_error *err)
{
    if (!r->ema) return pt_fail(err, PT_ERR_INVALID, "the weight EMA was not enabled on this replica");
    const pt_mem params = {r->slab, 0}, bufs = pt_replica_buffer_mem(r);
    const pt_mem ep = {r->ema, 0}, eb = {r->ema, (size_t)r->preg * sizeof(float)};
    const struct { pt_mem live, ema; int64_t n; } part[2] = {{params, ep, r->preg}, {bufs, eb, r->breg}};
    for (int k = 0; k < 2; k++) {
        if (part[k].n == 0) continue;
        if (!r->ema_started) {
            PT_TRY(axpy(r, part[k].live, part[k].ema, part[k].n, 1.0f, 0, err)); /* the first: a copy */
            continue;
        }
        /* ema = decay ema + (1 - decay) w: scaled in place (the unscale kernel; its flag
         * goes unread), then the weights added */
        pt_op op;
        memset(&op, 0, sizeof op);
        op.kind = PT_OP_AMP_UNSCALE;
        op.nt = 2;
        op.t[0] = pt_tensor_1d(part[k].ema.buf, part[k].ema.off, PT_F32, part[k].n);
        op.t[1] = pt_tensor_1d(r->arena, r->found_off, PT_F32, 1);
        op.p.amp.inv_scale = decay;
        PT_TRY(pt_device_run(r->dev, &op, err));
        PT_TRY(axpy(r, part[k].live, part[k].ema, part[k].n, 1.0f - decay, 1, err));
    }
    r->ema_started = 1;
    return PT_OK;
}

pt_status pt_replica_ema_to_live(pt_replica *r, pt_error *err)
{
    if (!r->ema) return pt_fail(err, PT_ERR_INVALID, "the weight EMA was not enabled on this replica");
    const pt_mem params = {r->slab, 0}, bufs = pt_replica_buffer_mem(r);
    const pt_mem ep = {r->ema, 0}, eb = {r->ema, (size_t)r->preg * sizeof(float)};
    if (r->preg) PT_TRY(axpy(r, ep, params, r->preg, 1.0f, 0, err));
    if (r->breg) PT_TRY(axpy(r, eb, bufs, r->breg, 1.0f, 0, err));
    return PT_OK;
}

pt_status pt_replica_clip_grads(pt_replica *r, float max_norm, double *norm, pt_error *err)
{
    *norm = 0;
    if (r->preg == 0) return PT_OK;
    /* the sum of squares as a 1 x 1 product g g^T: every backend has the GEMM, in fp32 */
    const pt_mem out = {r->arena, r->found_off};
    const pt_mem g = pt_replica_grad_mem(r);
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = PT_OP_GEMM;
    op.nt = 3;
    op.t[0] = pt_tensor_2d(g.buf, g.off, 1, r->preg);
    op.t[1] = pt_tensor_2d(g.buf, g.off, 1, r->preg);
    op.t[2] = pt_tensor_2d(out.buf, out.off, 1, 1);
    op.p.gemm.trans_b = 1;
    op.p.gemm.alpha = 1.0f;
    op.p.gemm.beta = 0.0f;
    PT_TRY(pt_device_run(r->dev, &op, err));
    float sumsq = 0;
    PT_TRY(pt_device_read(r->dev, &sumsq, out, sizeof sumsq, err));
    *norm = sqrt((double)sumsq);
    /* torch: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1 (a NaN norm makes the
     * gradients NaN there too, and the run's divergence check stops it) */
    const float coef = max_norm / ((float)*norm + 1e-6f);
    if (!(coef < 1.0f) && !isnan(coef)) return PT_OK;
    memset(&op, 0, sizeof op);
    op.kind = PT_OP_AMP_UNSCALE; /* g *= coef; its finiteness flag goes unread */
    op.nt = 2;
    op.t[0] = pt_tensor_1d(g.buf, g.off, PT_F32, r->preg);
    op.t[1] = pt_tensor_1d(out.buf, out.off, PT_F32, 1);
    op.p.amp.inv_scale = coef;
    return pt_device_run(r->dev, &op, err);
}

/* The update list's per-step values, by value and in the update's step record. */
static void prepare_update(pt_replica *r, float lr, int64_t step_count)
{
    pt_step_scalars *rec = &r->g.host[RP_SEG_UPDATE];
    rec->lr = lr;
    rec->momentum = r->opt.kind == PT_OPTIM_SGD || r->opt.kind == PT_OPTIM_RMSPROP ? r->opt.momentum : r->opt.beta1;
    rec->first_step = !r->opt_started;
    rec->adam_step_lo = (uint32_t)(uint64_t)step_count;
    rec->adam_step_hi = (uint32_t)((uint64_t)step_count >> 32);
    if (r->opt.kind == PT_OPTIM_ADAM || r->opt.kind == PT_OPTIM_ADAMW)
        pt_adam_bias_terms(lr, r->opt.beta1, r->opt.beta2, step_count, &rec->adam_step_size, &rec->adam_sqrt_bc2);
    const pt_mem ref = rp_step_record(r, RP_SEG_UPDATE);
    for (int i = 0; i < r->update.n; i++) {
        pt_op *op = &r->update.ops[i];
        op->step = ref;
        if (op->kind == PT_OP_SGD) {
            op->p.sgd.lr = lr;
            op->p.sgd.momentum = r->opt.momentum;
            op->p.sgd.first_step = !r->opt_started;
        } else if (op->kind == PT_OP_RMSPROP) {
            op->p.rmsprop.lr = lr;
            op->p.rmsprop.momentum = r->opt.momentum;
        } else {
            op->p.adam.lr = lr;
            op->p.adam.beta1 = r->opt.beta1;
            op->p.adam.step = step_count;
        }
    }
}

pt_status pt_replica_update(pt_replica *r, float lr, int64_t step_count, pt_error *err)
{
    prepare_update(r, lr, step_count);
    PT_TRY(rp_write_step_record(r, RP_SEG_UPDATE, err));
    PT_TRY(rp_run_part(r, RP_SEG_UPDATE, err));
    r->opt_started = 1;
    return PT_OK;
}

int pt_replica_fuses_update(const pt_replica *r) { return r->g.on && !r->hook; }

static pt_op *push_op(op_list *l, pt_op_kind kind, int nt)
{
    pt_op *op = &l->ops[l->n++];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->nt = nt;
    return op;
}

/* The ops around the update in the whole step: what step_job does with separate calls, each
 * decision moved to the device through the update's step record (skip, sumsq). */
static void emit_step_tail(pt_replica *r, const pt_step_update *u)
{
    const pt_mem rec = rp_step_record(r, RP_SEG_UPDATE);
    const pt_mem g = pt_replica_grad_mem(r);
    const pt_tensor grads = pt_tensor_1d(g.buf, g.off, PT_F32, r->preg);
    const pt_tensor skip = pt_tensor_1d(rec.buf, rec.off + PT_SS_SKIP * sizeof(uint32_t), PT_F32, 1);
    const pt_tensor sumsq = pt_tensor_1d(rec.buf, rec.off + PT_SS_SUMSQ * sizeof(uint32_t), PT_F32, 1);
    const pt_tensor scratch = pt_tensor_1d(r->arena, r->found_off, PT_F32, 1);
    r->pre.n = r->post.n = 0;
    if (r->preg == 0) return;
    pt_op *op;
    if (u->inv_scale > 0) {
        /* the overflow flag is the record's skip word: the gated ops below read it */
        op = push_op(&r->pre, PT_OP_FILL, 1);
        op->t[0] = skip;
        op = push_op(&r->pre, PT_OP_AMP_UNSCALE, 2);
        op->t[0] = grads;
        op->t[1] = skip;
        op->p.amp.inv_scale = u->inv_scale;
        op->p.amp.mode = PT_AMP_LOSS;
        op->step = rec;
    }
    if (u->clip > 0) {
        /* the sum of squares as pt_replica_clip_grads forms it, into the record */
        op = push_op(&r->pre, PT_OP_GEMM, 3);
        op->t[0] = pt_tensor_2d(g.buf, g.off, 1, r->preg);
        op->t[1] = pt_tensor_2d(g.buf, g.off, 1, r->preg);
        op->t[2] = pt_tensor_2d(sumsq.mem.buf, sumsq.mem.off, 1, 1);
        op->p.gemm.trans_b = 1;
        op->p.gemm.alpha = 1.0f;
        op = push_op(&r->pre, PT_OP_AMP_UNSCALE, 2);
        op->t[0] = grads;
        op->t[1] = scratch; /* its finiteness flag goes unread */
        op->p.amp.inv_scale = u->clip;
        op->p.amp.mode = PT_AMP_CLIP;
        op->step = rec;
    }
    if (u->ema > 0) {
        const pt_mem params = {r->slab, 0}, bufs = pt_replica_buffer_mem(r);
        const pt_mem ep = {r->ema, 0}, eb = {r->ema, (size_t)r->preg * sizeof(float)};
        const struct { pt_mem live, ema; int64_t n; } part[2] = {{params, ep, r->preg}, {bufs, eb, r->breg}};
        for (int k = 0; k < 2; k++) {
            if (part[k].n == 0) continue;
            const pt_tensor live = pt_tensor_1d(part[k].live.buf, part[k].live.off, PT_F32, part[k].n);
            const pt_tensor ema = pt_tensor_1d(part[k].ema.buf, part[k].ema.off, PT_F32, part[k].n);
            if (r->ema_started) { /* as pt_replica_ema_update: scaled in place, then the weights added */
                op = push_op(&r->post, PT_OP_AMP_UNSCALE, 2);
                op->t[0] = ema;
                op->t[1] = scratch;
                op->p.amp.inv_scale = u->ema;
                op->step = rec;
            }
            op = push_op(&r->post, PT_OP_AXPY, 2);
            op->t[0] = live;
            op->t[1] = ema;
            op->p.axpy.alpha = r->ema_started ? 1.0f - u->ema : 1.0f;
            op->accumulate = r->ema_started;
            op->step = rec;
        }
    }
}

pt_status pt_replica_train_step(pt_replica *r, const float *x, const int32_t *y, const int32_t *y2,
                                const float *lam, int n, int64_t sample_base, int64_t step, float grad_scale,
                                const pt_step_update *u, float *logits_out, float *loss_out, pt_step_outcome *out,
                                pt_error *err)
{
    memset(out, 0, sizeof *out);
    if (!pt_replica_fuses_update(r))
        return pt_fail(err, PT_ERR_INVALID, "this replica runs the update by itself (no graphs, or in a group)");
    if (u->ema > 0 && !r->ema) return pt_fail(err, PT_ERR_INVALID, "the weight EMA was not enabled on this replica");
    prepare_update(r, u->lr, u->updates);
    pt_step_scalars *rec = &r->g.host[RP_SEG_UPDATE];
    rec->skip = 0;
    rec->sumsq = 0;
    rec->inv_scale = u->inv_scale;
    emit_step_tail(r, u);
    PT_TRY(train_part(r, x, y, y2, lam, n, sample_base, step, grad_scale, RP_SEG_STEP, err));
    r->g.whole_steps++;
    if (u->next_n > 0)
        PT_TRY(pt_replica_stage_input(r, u->next_x, u->next_y, u->next_y2, u->next_lam, u->next_n, err));
    if (r->queued) PT_TRY(r->queued(r->queued_user, r, err));
    PT_TRY(download_outputs(r, n, logits_out, loss_out, err));
    if (u->inv_scale > 0 || u->clip > 0) {
        pt_step_scalars got;
        PT_TRY(pt_device_read(r->dev, &got, rp_step_record(r, RP_SEG_UPDATE), sizeof got, err));
        out->found_inf = u->inv_scale > 0 && got.skip != 0;
        if (u->clip > 0 && !out->found_inf) {
            out->have_norm = 1;
            out->norm = r->preg > 0 ? sqrt((double)got.sumsq) : 0.0;
        }
    }
    if (!out->found_inf) {
        r->opt_started = 1;
        if (u->ema > 0) r->ema_started = 1;
    }
    return PT_OK;
}

pt_status pt_replica_eval(pt_replica *r, const float *x, const int32_t *y, int n,
                          float *logits_out, float *loss_out, pt_error *err)
{
    if (n < 1 || n > r->capacity)
        return pt_fail(err, PT_ERR_INVALID, "batch of %d samples, replica holds 1..%d", n, r->capacity);
    PT_TRY(check_labels(r, y, n, err));
    PT_TRY(rp_set_eval_batch(r, n, err));
    note_batch(r, r->seen_eval, &r->nseen_eval, n);
    int slot;
    PT_TRY(rp_upload_input(r, x, y, NULL, NULL, n, &slot, err));
    rp_point_input(r, &r->fwd_eval, slot);
    PT_TRY(rp_run_part(r, RP_SEG_EVAL, err));
    PT_TRY(rp_input_read_queued(r, slot, err));
    return download_outputs(r, n, logits_out, loss_out, err);
}
