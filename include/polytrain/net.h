/* A network as a graph of layers (nodes in topological order) with named parameters.
 * Building a net touches no device: it records layers, infers shapes and declares
 * parameters and buffers under their PyTorch names. A replica (polytrain/replica.h) turns it
 * into memory and op lists on one device. */
#ifndef PT_NET_H
#define PT_NET_H

#include <stdint.h>

#include "polytrain/op.h"
#include "polytrain/status.h"

typedef enum pt_node_kind {
    PT_NODE_INPUT = 0,
    PT_NODE_CONV2D,
    PT_NODE_BATCHNORM2D,
    PT_NODE_RELU,
    PT_NODE_MAXPOOL2D,
    PT_NODE_GLOBAL_AVGPOOL,
    PT_NODE_LINEAR,
    PT_NODE_ADD,
    PT_NODE_DROPOUT,
    PT_NODE_ACTIVATION, /* a pointwise activation kind of the op table (a.act.op) */
    PT_NODE_BCAST_MUL,
    PT_NODE_GLOBAL_MAXPOOL,
    PT_NODE_CHANNEL_POOL,
    PT_NODE_KIND_COUNT
} pt_node_kind;

typedef enum pt_init {
    PT_INIT_ZEROS = 0,
    PT_INIT_ONES,
    PT_INIT_KAIMING_NORMAL_FAN_OUT, /* N(0, 2/fan_out), conv weights */
    PT_INIT_UNIFORM_FAN_IN          /* U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch Linear */
} pt_init;

#define PT_NAME_MAX 96

typedef struct pt_param_info {
    char name[PT_NAME_MAX]; /* PyTorch state_dict name, e.g. "layer1.0.conv1.weight" */
    int ndim;
    int64_t dim[4];
    int64_t numel;
    pt_init init;
    int64_t fan; /* fan_in or fan_out for the init rule */
    int no_decay; /* BN weights/biases and biases: excluded from weight decay on request */
    int64_t offset; /* element offset inside the replica's parameter region (set by the net) */
} pt_param_info;

/* Non-trained state saved with the model (BatchNorm running statistics). */
typedef struct pt_buffer_info {
    char name[PT_NAME_MAX]; /* e.g. "bn1.running_mean" */
    int64_t numel;
    float init;
    int64_t offset; /* element offset inside the replica's buffer region */
} pt_buffer_info;

typedef struct pt_node {
    pt_node_kind kind;
    char name[PT_NAME_MAX]; /* module path, e.g. "layer2.0.downsample.0" */
    int in[2];
    int nin;
    /* Output shape of one sample: (C, H, W) for images, (F, 1, 1) for features. */
    int64_t c, h, w;
    int flat; /* output is [N, F] rather than [N, C, H, W] */
    union {
        struct { int out, k, stride, pad, bias; } conv;
        struct { float eps, momentum; } bn;
        struct { int k, stride, pad; } pool;
        /* share: 0, or the linear node whose parameters this one uses (CBAM's shared MLP);
         * w, b: the parameters it applies (its own, or the owner's; b -1 without bias) */
        struct { int out, bias, share, w, b; } linear;
        struct { float p; } dropout;
        struct { int op; } act; /* the forward pt_op_kind */
    } a;
    int param[2]; /* indices into the net's params: weight, bias (-1 if none) */
    int buffer[2]; /* BN: running_mean, running_var */
    int bn_index; /* BN: index among BN layers (num_batches_tracked) */
} pt_node;

typedef struct pt_net {
    int in_channels, in_height, in_width, num_classes;
    pt_node *nodes;
    int nnodes, cap_nodes;
    pt_param_info *params;
    int nparams, cap_params;
    pt_buffer_info *buffers;
    int nbuffers, cap_buffers;
    int nbn; /* BatchNorm layers, each with a num_batches_tracked counter */
    int output; /* node producing the logits */
    int64_t param_count, buffer_count; /* elements */
    pt_error err; /* first build error; builders after it are no-ops */
} pt_net;

/* Builder: every call returns the new node's index, or -1 after an error (kept in
 * net->err and returned by pt_net_finish). Names are module paths. */
pt_net *pt_net_new(int in_channels, int height, int width, int num_classes);
void pt_net_free(pt_net *net);
int pt_net_input(pt_net *net);
int pt_net_conv2d(pt_net *net, int in, const char *name, int out_channels, int k, int stride,
                  int pad, int bias);
int pt_net_batchnorm2d(pt_net *net, int in, const char *name);
int pt_net_relu(pt_net *net, int in);
int pt_net_maxpool2d(pt_net *net, int in, int k, int stride, int pad);
int pt_net_global_avgpool(pt_net *net, int in);
int pt_net_linear(pt_net *net, int in, const char *name, int out_features, int bias);
int pt_net_add(pt_net *net, int a, int b);
int pt_net_dropout(pt_net *net, int in, float p);
/* A linear layer applying the weight and bias of the linear node `owner` (declared once,
 * gradients summed over both uses). */
int pt_net_linear_shared(pt_net *net, int in, int owner);
/* y = f(x) for an activation kind of the op table (pt_op_is_activation: a pointwise forward
 * with a gradient kind, such as sigmoid_fwd); its backward is the kind's gradient op. */
int pt_net_activation(pt_net *net, int in, pt_op_kind op);
/* pt_net_activation with PT_OP_SIGMOID_FWD. */
int pt_net_sigmoid(pt_net *net, int in);
/* y = x * s: s is [C] features (one factor per channel) or a 1xHxW image (one per pixel). */
int pt_net_bcast_mul(pt_net *net, int x, int s);
int pt_net_global_maxpool(pt_net *net, int in);
/* Mean and max over channels as a 2-channel image (CBAM's spatial-attention input). */
int pt_net_channel_pool(pt_net *net, int in);
/* Marks the logits node, checks it is [N, num_classes] and lays out parameter offsets
 * (decayed parameters first, so the optimizer runs as at most two fused ranges). */
pt_status pt_net_finish(pt_net *net, int output, pt_error *err);

/* Multiply-adds x 2 of one sample's forward pass through convolutions and linear layers
 * (the work that dominates; element-wise layers are not counted). A training step costs
 * about three times this per sample. */
double pt_net_forward_flops(const pt_net *net);

int pt_net_find_param(const pt_net *net, const char *name);
int pt_net_find_buffer(const pt_net *net, const char *name);
/* Padding keeps every parameter 64-byte aligned: region sizes in elements. */
int64_t pt_net_param_region(const pt_net *net);
int64_t pt_net_buffer_region(const pt_net *net);
/* Elements at the start of the parameter region that take weight decay when no_decay
 * parameters are excluded (they are laid out after). */
int64_t pt_net_decay_prefix(const pt_net *net);

#endif
