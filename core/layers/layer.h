/* The contract between a layer kind (one file each in core/layers/) and the replica that
 * runs it: a layer infers its output shape and declares parameters when the net is
 * built, and emits op descriptors for forward and backward when a replica plans its
 * step. Layers never allocate device memory and never run ops themselves. */
#ifndef PT_LAYER_H
#define PT_LAYER_H

#include "polytrain/net.h"
#include "polytrain/op.h"

/* Where a layer's emitted ops go, and how it finds its tensors (implemented by
 * core/replica.c). */
typedef struct pt_emit pt_emit;

typedef struct pt_layer_vt {
    const char *name;
    /* Sets node->c/h/w/flat from its inputs and declares parameters/buffers. */
    pt_status (*infer)(pt_net *net, pt_node *node, pt_error *err);
    /* Saved tensors this layer needs from forward to backward: count and per-slot shape
     * for batch n (dtype in *dtype). */
    int nsaved;
    void (*saved_shape)(const pt_node *node, int slot, int n, int64_t dim[4], int *ndim,
                        pt_dtype *dtype);
    /* Output buffer may alias the first input's (in place), when the planner allows it;
     * in_place_if (optional) narrows that down per node. */
    int in_place;
    int (*in_place_if)(const pt_node *node);
    /* The first input's gradient equals the output's (backward passes dy on unchanged), so
     * the two may share a range; backward then skips the write to itself. */
    int grad_in_place;
    /* The layer's ops read its inputs and write its output (4-D ones, and their gradients) as
     * channels-last images as well (the op table's img operands): both its output and what it
     * reads may then be NHWC (rp_choose_layouts). 0: a layer that reads an image as a flat
     * matrix (linear) or by element index (dropout). */
    int nhwc;
    pt_status (*forward)(pt_emit *em, const pt_node *node, int id);
    pt_status (*backward)(pt_emit *em, const pt_node *node, int id);
} pt_layer_vt;

const pt_layer_vt *pt_layer_vtable(pt_node_kind kind);
/* Whether node's layer may compute in place over its first input (its vtable says so). */
int pt_layer_in_place(const pt_node *node);

/* Shape helpers shared by layers: an element-wise layer's output has its input's shape;
 * a saved tensor shaped like the node's output for `batch` samples. */
void pt_layer_same_shape(const pt_net *net, pt_node *node);
void pt_layer_output_dims(const pt_node *node, int batch, int64_t dim[4], int *ndim);

/* ---- services a layer uses while emitting (core/replica.c) ---- */
/* A zeroed op appended to the list. The pointer is good until the next pt_emit_op: the
 * list may grow (move) while a replica plans. */
pt_op *pt_emit_op(pt_emit *em, pt_op_kind kind);
int pt_emit_train(const pt_emit *em);              /* training-mode forward */
int pt_emit_batch(const pt_emit *em);              /* samples in this step */
int64_t pt_emit_sample_base(const pt_emit *em);    /* global index of sample 0 (dropout) */
uint64_t pt_emit_seed(const pt_emit *em);
int pt_emit_sync_bn(const pt_emit *em);            /* BatchNorm statistics over all devices */
pt_tensor pt_emit_act(const pt_emit *em, int node);   /* output of a node, [n,c,h,w] / [n,f] */
pt_tensor pt_emit_grad(const pt_emit *em, int node);  /* gradient of that output */
/* Whether the gradient w.r.t. node's output is wanted (false for the data input). */
int pt_emit_wants_grad(const pt_emit *em, int node);
/* The accumulate flag for the next write of grad(node): 0 for the first writer in this
 * backward pass, 1 afterwards. Call once per write. */
int pt_emit_grad_accumulate(pt_emit *em, int node);
pt_tensor pt_emit_param(const pt_emit *em, int param);
pt_tensor pt_emit_param_grad(const pt_emit *em, int param);
/* The accumulate flag for the next write of param's gradient: 0 for the first writer in
 * this backward pass, 1 afterwards (a parameter used by two nodes). Call once per write. */
int pt_emit_param_grad_accumulate(pt_emit *em, int param);
pt_tensor pt_emit_buffer(const pt_emit *em, int buffer);
pt_tensor pt_emit_saved(const pt_emit *em, int node, int slot);
/* A ReLU computing in place on the output of the op just emitted (a BN forward or an add):
 * sets that op's fuse_relu when the device runs the fused form, and returns 1, in which
 * case the ReLU emits nothing. pt_replica_options.no_fuse_relu (--fuse off) turns it off. */
int pt_emit_fold_relu(pt_emit *em, int node);
/* A residual add of the output of the BN forward just emitted (the node right before it, read
 * by nothing else) and another node's: makes it that op's residual z, the op writing the add's
 * output (y = BN(x) + z, one pass instead of two), and returns 1, in which case the add emits
 * nothing; a ReLU after it then folds into the same op. Where the device has the form
 * (PT_CAP_BN_ADD) and folding is on (no_fuse_relu turns this off too). */
int pt_emit_fold_add(pt_emit *em, int node);
/* Declares a parameter/buffer while inferring (net.c). Returns its index or -1. */
int pt_net_declare_param(pt_net *net, const char *module, const char *leaf, int ndim,
                         const int64_t *dim, pt_init init, int64_t fan, int no_decay);
int pt_net_declare_buffer(pt_net *net, const char *module, const char *leaf, int64_t numel,
                          float init);

extern const pt_layer_vt pt_layer_conv2d, pt_layer_batchnorm2d, pt_layer_relu,
    pt_layer_maxpool2d, pt_layer_global_avgpool, pt_layer_linear, pt_layer_add,
    pt_layer_dropout, pt_layer_activation, pt_layer_bcast_mul, pt_layer_global_maxpool,
    pt_layer_channel_pool;

#endif
