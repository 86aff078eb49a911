/* A replica: one net instantiated on one device for a fixed batch capacity. It owns one
 * slab (parameters | gradients | optimizer state | BN buffers, addressed by offset), one
 * activation arena sized at creation, and the ops' workspace (re-sized only between steps: on
 * request, pt_replica_fit_workspace, and when a batch size first run after that needs more); its op
 * lists are built once, so a training step allocates nothing. The multi-device trainer runs one replica per device. */
#ifndef PT_REPLICA_H
#define PT_REPLICA_H

#include <stdint.h>

#include "polytrain/backend.h"
#include "polytrain/net.h"
#include "polytrain/optim.h"
#include "polytrain/trace.h"

typedef struct pt_replica pt_replica;

pt_status pt_replica_create(const pt_net *net, pt_device *dev, int batch_capacity,
                            const pt_optim_config *opt, uint64_t seed, pt_replica **out,
                            pt_error *err);
void pt_replica_free(pt_replica *r);

/* An auto/on/off option (--cuda-graphs, --pinned-input): auto uses the feature where the
 * device has it; on requires it (creation fails with the device's reason). */
typedef enum pt_switch { PT_SWITCH_AUTO = 0, PT_SWITCH_ON, PT_SWITCH_OFF } pt_switch;
/* "auto", "on", "off" to *out; 0 for anything else. */
int pt_switch_parse(const char *s, pt_switch *out);
const char *pt_switch_name(pt_switch s);

/* Where 4-D activations and their gradients lie in memory (pt_replica_options.layout). nchw:
 * always; nhwc: every 4-D activation whose layer and consumers take channels-last images (not
 * the data input, which the host writes NCHW, nor what a linear layer or dropout reads), on a
 * backend that declares them (PT_CAP_NHWC); auto: NCHW for now: no backend yet runs its
 * convolutions on NHWC images natively, and over NCHW copies NHWC only adds transposes. */
typedef enum pt_image_layout { PT_IMAGES_AUTO = 0, PT_IMAGES_NCHW = 1, PT_IMAGES_NHWC = 2 } pt_image_layout;
/* "auto", "nchw", "nhwc" to *out; 0 for anything else. */
int pt_image_layout_parse(const char *s, pt_image_layout *out);
const char *pt_image_layout_name(pt_image_layout l);
/* Whether dev stores images channels last (its supports() of a ReLU on NHWC tensors). */
int pt_device_takes_nhwc(pt_device *dev);

typedef struct pt_replica_options {
    int sync_bn; /* BatchNorm batch statistics over every device (see PT_OP_BN_SYNC_*) */
    /* Capture the step's parts as graphs (pt_device_graph_capable) and replay them: the
     * per-step parameters then live in a step record on the device (pt_op.step). */
    pt_switch graphs;
    /* The batch through page-locked host memory and an asynchronous copy on the device's
     * copy queue (pt_device_pinned_input), double-buffered on the host. */
    pt_switch pinned_input;
    /* The math mode of every GEMM and convolution (pt_op.math); the device must take it
     * (pt_device_precision), else creation fails with its reason. */
    pt_precision precision;
    /* Activations in precision's 16-bit type where every op on them takes it (auto, the
     * default), or float32 always (polytrain/precision.h). */
    pt_act_storage act_storage;
    /* 1: every ReLU runs as its own op. 0 (the default): an in-place ReLU after a BN forward or
     * an add is folded into that op where the device has the fused form (PT_CAP_FUSED_RELU).
     * (The command line's --fuse sets it; PT_FUSE_RELU=0 in the environment is its default
     * there, not read here.) */
    int no_fuse_relu;
    /* NCHW or NHWC activations (see pt_image_layout); nhwc on a device without it is refused. */
    pt_image_layout layout;
} pt_replica_options;
/* The refusals of pt_replica_create_ex that depend on the device and the options only (a
 * precision it cannot compute in, --cuda-graphs on or --pinned-input on where it cannot),
 * without creating anything: callers check them before they write anything. */
pt_status pt_replica_check_options(pt_device *dev, const pt_replica_options *ro, pt_error *err);
/* pt_replica_create with options (NULL: the defaults). */
pt_status pt_replica_create_ex(const pt_net *net, pt_device *dev, int batch_capacity,
                               const pt_optim_config *opt, uint64_t seed, const pt_replica_options *ro,
                               pt_replica **out, pt_error *err);
int pt_replica_sync_bn(const pt_replica *r);
pt_precision pt_replica_precision(const pt_replica *r);
/* The storage type of node's activation: PT_F32, or the precision's 16-bit type where the
 * planner chose it (pt_replica_options.act_storage). */
pt_dtype pt_replica_act_dtype(const pt_replica *r, int node);
/* The activation storage as planned: distinct activation tensors (in-place layers share
 * their input's) and how many of them are 16-bit; the bytes of the arena's activation region
 * (activations and saved tensors after live-range sharing) and what the same plan takes
 * with every activation float32. */
typedef struct pt_act_plan {
    int nacts, n16;
    pt_dtype dtype16; /* PT_BF16, PT_F16, or PT_F32 when nothing may be 16-bit */
    size_t act_bytes, act_bytes_fp32;
} pt_act_plan;
void pt_replica_act_plan(const pt_replica *r, pt_act_plan *out);
pt_act_storage pt_replica_act_storage(const pt_replica *r);
/* The layout option the replica was made with, and what it resolved to: the memory order of
 * node's activation and gradient (PT_LAYOUT_NCHW for a 2-D one), and how many of the 4-D
 * activations (in-place layers share their input's) are NHWC. */
pt_image_layout pt_replica_layout_option(const pt_replica *r);
pt_layout pt_replica_node_layout(const pt_replica *r, int node);
void pt_replica_count_layouts(const pt_replica *r, int *n4d, int *nhwc);
/* Whether in-place ReLUs are folded into the op before them (no_fuse_relu; the device still
 * decides per op whether it has the fused form). */
int pt_replica_fuse_relu(const pt_replica *r);

/* The training op lists, for a device group that reduces across replicas between ops. The
 * lists keep their length and their tensors' memory for every batch size (a short batch
 * re-emits the same ops), so positions found once stay valid. */
typedef enum pt_replica_list { PT_LIST_FORWARD = 0, PT_LIST_BACKWARD = 1, PT_LIST_OTHER = 2 } pt_replica_list;
const pt_op *pt_replica_ops(const pt_replica *r, pt_replica_list which, int *n);
/* Called on the stepping thread after training op `index` of list `which` has been issued
 * (queued; asynchronous backends may still be running it). An error stops the step. */
typedef pt_status (*pt_replica_hook)(void *user, pt_replica *r, pt_replica_list which, int index,
                                     pt_error *err);
void pt_replica_set_hook(pt_replica *r, pt_replica_hook hook, void *user);
/* Called on the stepping thread once a training step's ops are queued (every
 * pt_replica_forward_backward*, pt_replica_train_step) and before its outputs are read: the
 * place to fetch the next batch and stage it (pt_replica_stage_input), so that its copy
 * overlaps the step; the outputs are then read as usual. NULL: none. An error stops the step. */
typedef pt_status (*pt_replica_queued_fn)(void *user, pt_replica *r, pt_error *err);
void pt_replica_set_queued(pt_replica *r, pt_replica_queued_fn fn, void *user);
/* Sync-BN: the number of samples of the step over every device and process (0: this
 * replica's n), which sets the element count of the global statistics. */
void pt_replica_set_global_batch(pt_replica *r, int n);

/* Parameters from the init rules keyed by (seed, parameter index); BN buffers to their
 * initial values; optimizer state to zero. Same seed, same weights, on any device. */
pt_status pt_replica_init_params(pt_replica *r, uint64_t seed, pt_error *err);
/* The parameters and BN buffers pt_replica_init_params writes for seed, as host copies:
 * params [pt_net_param_region floats], buffers [pt_net_buffer_region floats]. */
void pt_net_init_values(const pt_net *net, uint64_t seed, float *params, float *buffers);
/* Fine-tuning: from now on pt_replica_init_params writes these parameters and buffers (copied,
 * same layout as pt_net_init_values) and BN num_batches_tracked bn_steps instead of the
 * seeded values, the optimizer state still zero. params NULL goes back to the seeded ones. */
pt_status pt_replica_set_initial_state(pt_replica *r, const float *params, const float *buffers, int64_t bn_steps,
                                       pt_error *err);

/* Forward + loss + backward for n <= capacity samples: x is [n, C, H, W] normalised
 * floats, y the labels. Gradients are overwritten with d(grad_scale * sum of losses).
 * sample_base is the global index of sample 0 (dropout keys); step is the 0-based global
 * step (dropout stream). logits_out [n, K] and loss_out [n] receive host copies. */
pt_status pt_replica_forward_backward(pt_replica *r, const float *x, const int32_t *y, int n,
                                      int64_t sample_base, int64_t step, float grad_scale,
                                      float *logits_out, float *loss_out, pt_error *err);
/* Label smoothing of the training loss (0 by default; evaluation never smooths). */
void pt_replica_set_label_smoothing(pt_replica *r, float smoothing);
/* Momentum (SGD, RMSprop with momentum) or beta1 (Adam) for the following updates, e.g.
 * cycled by onecycle. */
void pt_replica_set_momentum(pt_replica *r, float momentum);
/* The same with mixup/cutmix targets: sample i's loss is lam[i]*CE(y[i]) +
 * (1-lam[i])*CE(y2[i]) (label smoothing applies to both). y2 and lam NULL: plain labels. */
pt_status pt_replica_forward_backward_mixed(pt_replica *r, const float *x, const int32_t *y,
                                            const int32_t *y2, const float *lam, int n,
                                            int64_t sample_base, int64_t step, float grad_scale,
                                            float *logits_out, float *loss_out, pt_error *err);
/* fp16 loss scaling, between the gradient reduction and the update: every gradient times
 * inv_scale, in place, and *found_inf = 1 when any of them was Inf or NaN (else 0). Waits
 * for the device (the caller decides on the update from the answer). */
pt_status pt_replica_unscale_grads(pt_replica *r, float inv_scale, int *found_inf, pt_error *err);
/* Gradient accumulation over micro-batches: enable allocates the sum (one float per
 * parameter, counted in pt_replica_device_bytes); FIRST sets it to the reduced gradients of
 * the first micro-batch, ADD adds those of a later one, ADD_INTO_GRADS adds the sum into the
 * last micro-batch's gradients, which the update then uses. */
typedef enum pt_accumulate { PT_ACC_FIRST, PT_ACC_ADD, PT_ACC_ADD_INTO_GRADS } pt_accumulate;
pt_status pt_replica_enable_accumulation(pt_replica *r, pt_error *err);
pt_status pt_replica_accumulate_grads(pt_replica *r, pt_accumulate how, pt_error *err);
/* An exponential moving average of the weights and BatchNorm buffers (AveragedModel with an
 * EMA: ema = decay ema + (1 - decay) w after each update; the first update copies). Its
 * memory, pt_replica_ema_mem: params then buffers, preg + breg floats in the regions' order.
 * ema_to_live puts it in place of the weights and buffers (evaluation, saving). */
pt_status pt_replica_enable_ema(pt_replica *r, pt_error *err);
pt_status pt_replica_ema_update(pt_replica *r, float decay, pt_error *err);
pt_status pt_replica_ema_to_live(pt_replica *r, pt_error *err);
pt_mem pt_replica_ema_mem(const pt_replica *r);
int pt_replica_ema_started(const pt_replica *r);
void pt_replica_set_ema_started(pt_replica *r, int started);
/* Gradient clipping by the global L2 norm, as torch.nn.utils.clip_grad_norm_: *norm is the
 * norm of every parameter's gradient (sum of squares in float32 on the device), and the
 * gradients are multiplied by max_norm / (norm + 1e-6) when that is below 1. */
pt_status pt_replica_clip_grads(pt_replica *r, float max_norm, double *norm, pt_error *err);
/* Applies the optimizer with learning rate lr; step_count is the 1-based number of
 * updates including this one (Adam bias correction). */
pt_status pt_replica_update(pt_replica *r, float lr, int64_t step_count, pt_error *err);

/* A whole training step in one part: forward, loss, backward and then on the device what
 * the caller otherwise does between its own calls: fp16 loss scaling's unscale and overflow
 * check (inv_scale > 0; the flag is written to the step record, and the update, clipping and
 * EMA ops read it and do nothing when it is set, so a skipped step leaves the weights, the
 * optimizer state and the EMA bitwise as they were), gradient clipping to the global norm
 * clip (> 0; the sum of squares and the coefficient formed on the device, with the very float
 * operations pt_replica_clip_grads uses), the update (lr; updates: the 1-based update count
 * as pt_replica_update's step_count) and the weight EMA (ema > 0: its decay). Captured, this
 * is one graph launch per step. */
typedef struct pt_step_update {
    float lr;
    int64_t updates;
    float inv_scale, clip, ema;
    /* next_n > 0: the next step's batch, staged (pt_replica_stage_input) once this step is
     * queued and before its outputs are read, so that its copy overlaps this whole step */
    const float *next_x, *next_lam;
    const int32_t *next_y, *next_y2;
    int next_n;
} pt_step_update;
/* What the host reads after the step's launch: found_inf (loss scaling found Inf/NaN and the
 * update was skipped) and, with clipping on a step that was not skipped, the norm. */
typedef struct pt_step_outcome {
    int found_inf;
    int have_norm;
    double norm;
} pt_step_outcome;
/* Whether the replica runs pt_replica_train_step as one part: it captures graphs (the
 * device-side decisions need a backend with the graph hooks) and no hook reduces gradients
 * between its ops (a device group keeps the separate calls). */
int pt_replica_fuses_update(const pt_replica *r);
pt_status pt_replica_train_step(pt_replica *r, const float *x, const int32_t *y, const int32_t *y2,
                                const float *lam, int n, int64_t sample_base, int64_t step, float grad_scale,
                                const pt_step_update *u, float *logits_out, float *loss_out, pt_step_outcome *out,
                                pt_error *err);
/* With pinned input: copies the next step's batch into the input slot the current step does
 * not read, now (on the copy queue, overlapping what is queued), so that the next
 * pt_replica_forward_backward*, pt_replica_train_step or pt_replica_eval given these very
 * pointers and n finds it there; the data must not change in between. Without: nothing. */
pt_status pt_replica_stage_input(pt_replica *r, const float *x, const int32_t *y, const int32_t *y2,
                                 const float *lam, int n, pt_error *err);
/* Eval-mode forward: logits_out [n, K] and per-sample loss_out [n] (label smoothing 0). */
pt_status pt_replica_eval(pt_replica *r, const float *x, const int32_t *y, int n,
                          float *logits_out, float *loss_out, pt_error *err);

/* Per-op-kind timing: when set, every op is followed by a device synchronisation (so an
 * asynchronous backend's time lands on the op that spent it) and its wall time and count
 * are added to prof. Profiling slows the step; for measurement runs only. NULL turns it off. */
typedef struct pt_op_profile {
    double seconds[PT_OP_KIND_COUNT];
    int64_t count[PT_OP_KIND_COUNT];
} pt_op_profile;
void pt_replica_set_profile(pt_replica *r, pt_op_profile *prof);
/* Step tracing: when set, every op of every list is followed by a device synchronisation,
 * as when profiling, and recorded on `track` of trace (pt_trace_op). Set it for the traced
 * step only; NULL turns it off. */
void pt_replica_set_trace(pt_replica *r, pt_trace *trace, int track);

/* Host copies of the whole state: params [param region], buffers [buffer region],
 * opt [slots * param region] (may be NULL when slots == 0). */
int64_t pt_replica_param_region(const pt_replica *r);
int64_t pt_replica_buffer_region(const pt_replica *r);
int pt_replica_opt_slots(const pt_replica *r);
pt_status pt_replica_read_state(pt_replica *r, float *params, float *buffers, float *opt,
                                pt_error *err);
pt_status pt_replica_write_state(pt_replica *r, const float *params, const float *buffers,
                                 const float *opt, pt_error *err);
/* Gradient region on the device (for all-reduce) and the host copy of it (tests). */
pt_mem pt_replica_grad_mem(const pt_replica *r);
pt_status pt_replica_read_grads(pt_replica *r, float *grads, pt_error *err);
/* BN buffer region on the device (buffer region floats). */
pt_mem pt_replica_buffer_mem(const pt_replica *r);
/* BatchNorm num_batches_tracked (all BN layers step together) and whether optimizer
 * state has been initialised (SGD's first step copies the gradient). */
int64_t pt_replica_bn_steps(const pt_replica *r);
void pt_replica_set_progress(pt_replica *r, int64_t bn_steps, int optimizer_started);
int pt_replica_optimizer_started(const pt_replica *r);
const pt_net *pt_replica_net(const pt_replica *r);
pt_device *pt_replica_device(const pt_replica *r);
size_t pt_replica_device_bytes(const pt_replica *r);
/* The most it held at once: a workspace re-size holds the old and the new arena together. */
size_t pt_replica_peak_bytes(const pt_replica *r);
/* The workspace part of the arena (scratch of GEMMs and convolutions), in bytes. */
size_t pt_replica_workspace_bytes(const pt_replica *r);
/* Re-sizes the workspace to what the device now says the ops need for the batch sizes run so
 * far (training and evaluation): created, a replica holds the most any batch size could
 * need, and a backend that measures algorithms on first use (cuDNN's candidates) needs less
 * once it has chosen. A smaller (or larger) need gets a new workspace buffer (the old one
 * freed first, so the two are never held at once; the arena of activations and gradients
 * stays where it is), the lists re-emitted; the op lists keep their positions. A batch
 * size first run later that needs more grows it again. Waits for the device; not during a
 * step. before/after (may be NULL): the workspace bytes. */
pt_status pt_replica_fit_workspace(pt_replica *r, size_t *before, size_t *after, pt_error *err);
const pt_optim_config *pt_replica_optim(const pt_replica *r);

/* Graph capture of the step: a part is captured once its ops have run unchanged this many
 * times (the first run measures algorithms), i.e. after that many training steps. */
#define PT_GRAPH_WARMUP_STEPS 2
/* Whether the replica captures (on) and whether that includes the forward + backward part
 * (training_part: not in a device group that reduces between its ops), why not (off, or
 * on without the training part), and the counts so far: captures (each re-capture counts),
 * graph launches, the training steps run before the training part was first captured (0:
 * not yet). */
typedef struct pt_graph_stats {
    int on, training_part;
    int64_t whole_steps;   /* training steps run as one part (pt_replica_train_step) */
    int64_t inputs_staged; /* batches found in their input slot already (pt_replica_stage_input) */
    int64_t captures, launches, captured_after_step;
    char why[192];
} pt_graph_stats;
void pt_replica_graph_stats(const pt_replica *r, pt_graph_stats *out);
/* Whether the input goes through pinned double buffers, and if not why (why may be NULL). */
int pt_replica_pinned_input(const pt_replica *r, char *why, size_t cap);

#endif
