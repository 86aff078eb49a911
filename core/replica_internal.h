/* Private to the replica files (core/replica*.c): the replica's struct, the records of its
 * memory layout, and the functions one of those files calls in another. Nothing outside
 * them includes this; the rest of the library sees a replica only through polytrain/replica.h. */
#ifndef PT_REPLICA_INTERNAL_H
#define PT_REPLICA_INTERNAL_H

#include <stddef.h>

#include "polytrain/replica.h"

/* Every range of the arena starts at a multiple of this many bytes. */
#define ALIGN_BYTES 64
/* Distinct batch sizes a replica records (a run has the full batch and a short last one for
 * training and for evaluation; tests and tools a few more). */
#define RP_SEEN_MAX 8

typedef struct node_mem {
    size_t act, grad;   /* byte offsets in the arena */
    size_t saved[2];
} node_mem;

typedef struct op_list {
    pt_op *ops;
    int n, cap;
    int in_slot; /* the input slot its ops read (emission writes slot 0) */
} op_list;

/* The parts of a step captured as one graph each (core/replica_graph.c): forward + loss +
 * backward, the update, the evaluation forward, and the whole step (forward + loss +
 * backward + unscale, clipping, update and EMA: pt_replica_train_step). */
enum { RP_SEG_TRAIN = 0, RP_SEG_UPDATE, RP_SEG_EVAL, RP_SEG_STEP, RP_NSEG };
/* Graphs kept per part: a run alternates between the full batch and a short last one. Each
 * holds a graph per input slot (the ops compared with their input pointed at slot 0, so the
 * warm-up runs of either slot count for both). */
#define RP_GRAPH_SLOTS 2
/* Ops of the whole step's lists before the update (overflow flag, unscale, sum of squares,
 * clipping) and after it (the EMA: a copy or a scale and an add, for params and buffers). */
#define RP_PRE_OPS 4
#define RP_POST_OPS 4
/* A part's lists must have run this many times unchanged, one op at a time, before they are
 * captured: the first run is where a backend measures its algorithms (cuDNN) and sizes what
 * it caches, which a capture cannot hold. */
#define RP_GRAPH_WARMUP PT_GRAPH_WARMUP_STEPS

typedef struct rp_graph_slot {
    pt_op *snap; /* the part's ops when first seen, per-step values cleared */
    int n;       /* ops in snap; -1: empty */
    void *exec[2]; /* the backend's graph of these ops per input slot, or NULL (not captured yet) */
    int runs;    /* runs of these very ops so far */
    uint64_t used;
} rp_graph_slot;

typedef struct rp_graphs {
    int on;          /* the ops carry step records and the parts are captured when stable */
    char why[192];   /* off: the reason */
    pt_buffer *rec;  /* step records on the device: RP_SEG_TRAIN's, then RP_SEG_UPDATE's */
    pt_step_scalars host[2];
    rp_graph_slot slot[RP_NSEG][RP_GRAPH_SLOTS];
    int cap_ops[RP_NSEG];
    pt_op scratch;
    uint64_t clock;
    int failed;      /* a capture failed: every part runs op by op from then on */
    int64_t captures, launches, first_capture_step; /* first_capture_step: -1 none */
    int64_t train_steps, whole_steps;
} rp_graphs;

/* Pinned, double-buffered input (core/replica_graph.c): two page-locked staging buffers and,
 * in the arena, two input slots (x, y, y2, lam each), used in turn, so that the copy of the
 * next batch into one slot overlaps the step that reads the other. */
enum { RP_IN_X = 0, RP_IN_Y, RP_IN_Y2, RP_IN_LAM, RP_IN_PARTS };
typedef struct rp_input {
    int on;
    char why[160];
    void *host[2];      /* page-locked staging: x | y | y2 | lam for the capacity */
    uint64_t fence[2];  /* each one's last copy */
    int next;           /* the staging buffer and arena slot the next batch goes to */
    int busy[2];        /* ops that read the slot may still be queued */
    /* the backend's compute fence after the ops that last read each slot (0: none), which a
     * copy into the slot waits for on the device (compute_fence / copy_wait); without those
     * hooks a copy into a busy slot synchronises the device first */
    uint64_t read_fence[2];
    size_t x_bytes, y_bytes, lam_bytes;
    /* staged ahead (pt_replica_stage_input): the slot holds this batch, still unconsumed */
    int staged, staged_slot, staged_n;
    int64_t staged_used;
    const void *staged_x, *staged_y, *staged_y2, *staged_lam;
} rp_input;

struct pt_replica {
    const pt_net *net;
    pt_device *dev;
    pt_optim_config opt;
    int capacity;
    uint64_t seed;

    /* slab: params | grads | opt slots | buffers (float elements) */
    pt_buffer *slab;
    int64_t preg, breg;
    int nslots;
    size_t slab_bytes;

    pt_buffer *arena;  /* activations, gradients, inputs, labels, losses: ws_off bytes */
    pt_buffer *wsbuf;  /* the ops' workspace (ws_bytes), a buffer of its own: fitting it moves nothing else */
    size_t arena_bytes; /* arena + workspace */
    size_t peak_bytes; /* slab + arena + workspaces held at once, the most so far */
    pt_buffer *acc;    /* gradient accumulation: the step's sum so far (preg floats), or NULL */
    pt_buffer *ema;    /* weight EMA: params | buffers (preg + breg floats), or NULL */
    int ema_started;   /* the EMA holds a value (the first update copies) */
    node_mem *mem;
    int *consumers;
    size_t x_off, y_off, y2_off, lam_off, loss_off, found_off, ws_off, ws_bytes;
    /* input slots: 2 with pinned input (the second after found_off), else 1; their ranges
     * (RP_IN_*, slot 0 the ones above), and the slot the training and evaluation lists read */
    int in_slots;
    size_t in_off[2][RP_IN_PARTS];
    int slot_train, slot_eval;

    op_list fwd_train, bwd, fwd_eval, update;
    op_list pre, post; /* the whole step's ops around the update (RP_PRE_OPS, RP_POST_OPS) */
    int batch_train, batch_eval; /* n the lists were emitted for */

    int *grad_written; /* emission scratch, sized nnodes */
    int *param_grad_written; /* emission scratch, sized nparams (shared parameters) */
    int64_t bn_steps;
    int opt_started;
    /* pt_replica_set_initial_state: what pt_replica_init_params writes (NULL: seeded values) */
    float *init_params, *init_buffers;
    int64_t init_bn_steps;
    float label_smoothing;
    pt_op_profile *prof;
    pt_trace *trace; /* the traced step only (pt_replica_set_trace) */
    int trace_track;
    int sync_bn;
    pt_precision precision; /* math mode of the kinds with PT_OPF_MATH */
    pt_act_storage act_storage;
    pt_dtype *act_dtype; /* per node: its activation's storage type (replica_plan.c) */
    char *act_unused;    /* per node: no op reads or writes its activation (rp_mark_unused_acts) */
    pt_image_layout layout_opt;
    pt_layout *act_layout; /* per node: its activation's and gradient's layout (replica_plan.c) */
    pt_act_plan act_plan;
    int global_batch; /* sync-BN: samples of the step over every device (0: this replica's) */
    pt_replica_hook hook;
    void *hook_user;
    pt_replica_queued_fn queued; /* pt_replica_set_queued */
    void *queued_user;
    int fold_relu; /* fold in-place ReLUs into the op before them (no_fuse_relu: no),
                    * read once so every emission of the lists has the same ops */
    /* the batch sizes run so far (pt_replica_fit_workspace fits the workspace to them);
     * overflow: more distinct sizes than recorded, and the workspace is left as created */
    int seen_train[RP_SEEN_MAX], seen_eval[RP_SEEN_MAX];
    int nseen_train, nseen_eval, seen_overflow;
    rp_graphs g;
    rp_input in;
};

static inline size_t rp_align_bytes(size_t n) { return (n + ALIGN_BYTES - 1) / ALIGN_BYTES * ALIGN_BYTES; }

/* Bytes of a node's gradient (float32) for a batch, and of its input when it is the data. */
static inline size_t rp_node_bytes(const pt_node *n, int batch)
{
    return (size_t)batch * (size_t)(n->c * n->h * n->w) * sizeof(float);
}

/* What the workspace buffer is allocated with: its bytes, and never nothing (an op may point
 * into it with no bytes to use). */
static inline size_t rp_ws_alloc_bytes(size_t ws_bytes) { return ws_bytes > ALIGN_BYTES ? ws_bytes : ALIGN_BYTES; }

/* Bytes of node i's activation for a batch, in its storage type. */
static inline size_t rp_act_bytes(const pt_replica *r, int i, int batch)
{
    if (r->act_unused[i]) return 0;
    const pt_node *n = &r->net->nodes[i];
    return (size_t)batch * (size_t)(n->c * n->h * n->w) * pt_dtype_size(r->act_dtype[i]);
}

/* ---------------------------------------------------------------- replica_plan.c */

/* Activations and saved tensors one range each, from arena offset 0; returns the end. */
size_t rp_plan_acts_sequential(pt_replica *r);
/* Gradients, labels, losses and the workspace offset after the activations ending at off. */
void rp_plan_tail(pt_replica *r, size_t off);
/* Re-plans the activations ending at region_end by live range, from the full-batch lists
 * emitted against the sequential layout (PT_ACT_SHARE=0: leaves that layout). */
pt_status rp_share_activations(pt_replica *r, size_t region_end, pt_error *err);
/* The storage type of each node's activation (out, nnodes entries), from the training and
 * evaluation lists emitted against the sequential layout with every activation float32:
 * the precision's 16-bit type for an in-place group none of whose ops' operands on its range
 * refuses it on the device, never for the data input or the net's output. */
pt_status rp_choose_act_dtypes(const pt_replica *r, pt_dtype *out, pt_error *err);
/* Distinct activation tensors (in-place layers share their input's) and the 16-bit ones. */
/* Marks the activations no op of the three lists touches (laid out sequentially: one range
 * each) as taking no memory (r->act_unused); returns how many it marked. */
int rp_mark_unused_acts(pt_replica *r);
void rp_count_acts(const pt_replica *r, int *nacts, int *n16);
/* The layout of each node's activation and gradient (r->act_layout) from r->layout_opt: NHWC
 * for a 4-D node (not the data input) whose layer and every consumer's layer take channels-last
 * images (pt_layer_vt.nhwc), when the option resolves to nhwc. */
void rp_choose_layouts(pt_replica *r);
/* --layout nhwc on a device that keeps images NCHW: refused, naming the backend. */
pt_status rp_check_layout(pt_device *dev, pt_image_layout layout, pt_error *err);
/* Distinct 4-D activation tensors (the data input included) and the NHWC ones. */
void rp_count_layouts(const pt_replica *r, int *n4d, int *nhwc);

/* ---------------------------------------------------------------- replica_emit.c */

/* The training (train 1, with the loss gradient) or evaluation forward list for n samples. */
pt_status rp_emit_forward(pt_replica *r, op_list *list, int train, int n, pt_error *err);
pt_status rp_emit_backward(pt_replica *r, int n, pt_error *err);
void rp_emit_update(pt_replica *r);
/* The largest workspace an op of l needs on the replica's device. */
size_t rp_list_workspace(pt_replica *r, const op_list *l);
/* Checks the device supports every op of l and points each at the planned workspace. */
pt_status rp_attach_workspace(pt_replica *r, op_list *l, pt_error *err);
/* Re-emits the training (forward + backward) or evaluation lists for a batch of n, when
 * they were last emitted for another n. */
pt_status rp_set_train_batch(pt_replica *r, int n, pt_error *err);
pt_status rp_set_eval_batch(pt_replica *r, int n, pt_error *err);
/* A new workspace of at least ws_bytes and what the lists for train_n and eval_n (-1: the
 * capacity) and the update list need, once the device is idle: the old one freed first (it
 * holds nothing between ops), and every list re-emitted against the new one. On a failed
 * allocation the old size is taken again and the error returned. */
pt_status rp_resize_workspace(pt_replica *r, size_t ws_bytes, int train_n, int eval_n, pt_error *err);

/* ---------------------------------------------------------------- replica.c */

/* Issues every op of l one by one (profiling, tracing and the group's hook included). */
pt_status rp_run_list(pt_replica *r, const op_list *l, pt_error *err);

/* ---------------------------------------------------------------- replica_graph.c */

/* Decides from the options and the device whether parts are captured and the input pinned,
 * and allocates what that needs (after the lists are built). */
pt_status rp_graphs_setup(pt_replica *r, pt_switch graphs, pt_switch pinned, pt_error *err);
void rp_graphs_free(pt_replica *r);
/* Drops every captured graph (a new workspace). */
void rp_graphs_invalidate(pt_replica *r);
/* The step record the per-step ops of part seg (RP_SEG_TRAIN, RP_SEG_UPDATE) refer to, or
 * none when the replica does not capture. */
pt_mem rp_step_record(const pt_replica *r, int seg);
/* Writes part seg's step record (r->g.host[seg]) to the device: one copy, before its ops. */
pt_status rp_write_step_record(pt_replica *r, int seg, pt_error *err);
/* Runs part seg: its graph when captured and its ops unchanged, else op by op (capturing
 * once they have been stable for RP_GRAPH_WARMUP runs). */
pt_status rp_run_part(pt_replica *r, int seg, pt_error *err);
/* The batch to the arena's input: through the pinned double buffer when on (the next slot,
 * or the one it was staged in), else write(); *slot: the slot it is in. */
pt_status rp_upload_input(pt_replica *r, const float *x, const int32_t *y, const int32_t *y2, const float *lam,
                          int n, int *slot, pt_error *err);
/* Waits (host) for every asynchronous input copy. */
pt_status rp_input_quiesce(pt_replica *r, pt_error *err);
/* The ops that read input slot `slot` are queued: a fence after them for the next copy into
 * the slot to wait for (backends with compute_fence; nothing otherwise). */
pt_status rp_input_read_queued(pt_replica *r, int slot, pt_error *err);
/* Points list l's input operands (slot l->in_slot) at slot `to`. */
void rp_point_input(pt_replica *r, op_list *l, int to);

#endif
