/* The table from node kind to layer implementation. */
#include "core/layers/layer.h"

const pt_layer_vt *pt_layer_vtable(pt_node_kind kind)
{
    switch (kind) {
    case PT_NODE_CONV2D: return &pt_layer_conv2d;
    case PT_NODE_BATCHNORM2D: return &pt_layer_batchnorm2d;
    case PT_NODE_RELU: return &pt_layer_relu;
    case PT_NODE_MAXPOOL2D: return &pt_layer_maxpool2d;
    case PT_NODE_GLOBAL_AVGPOOL: return &pt_layer_global_avgpool;
    case PT_NODE_LINEAR: return &pt_layer_linear;
    case PT_NODE_ADD: return &pt_layer_add;
    case PT_NODE_DROPOUT: return &pt_layer_dropout;
    case PT_NODE_ACTIVATION: return &pt_layer_activation;
    case PT_NODE_BCAST_MUL: return &pt_layer_bcast_mul;
    case PT_NODE_GLOBAL_MAXPOOL: return &pt_layer_global_maxpool;
    case PT_NODE_CHANNEL_POOL: return &pt_layer_channel_pool;
    default: return 0;
    }
}

int pt_layer_in_place(const pt_node *node)
{
    const pt_layer_vt *vt = pt_layer_vtable(node->kind);
    return vt && vt->in_place && (!vt->in_place_if || vt->in_place_if(node));
}

void pt_layer_same_shape(const pt_net *net, pt_node *node)
{
    const pt_node *x = &net->nodes[node->in[0]];
    node->c = x->c;
    node->h = x->h;
    node->w = x->w;
    node->flat = x->flat;
}

void pt_layer_output_dims(const pt_node *node, int batch, int64_t dim[4], int *ndim)
{
    dim[0] = batch;
    dim[1] = node->c;
    dim[2] = node->h;
    dim[3] = node->w;
    *ndim = 4;
}
