/* Building a pt_net: nodes, shape inference through each layer's infer(), parameter and
 * buffer declarations, and the parameter layout (decayed parameters first). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/layers/layer.h"
#include "polytrain/net.h"

#define PT_ALIGN_ELEMS 16 /* 64 bytes of float32 */

static int64_t align_up(int64_t n) { return (n + PT_ALIGN_ELEMS - 1) / PT_ALIGN_ELEMS * PT_ALIGN_ELEMS; }

pt_net *pt_net_new(int in_channels, int height, int width, int num_classes)
{
    pt_net *net = calloc(1, sizeof *net);
    if (!net) return NULL;
    net->in_channels = in_channels;
    net->in_height = height;
    net->in_width = width;
    net->num_classes = num_classes;
    net->output = -1;
    if (in_channels < 1 || height < 1 || width < 1 || num_classes < 1)
        pt_fail(&net->err, PT_ERR_INVALID, "net: bad input shape %dx%dx%d or class count %d",
                in_channels, height, width, num_classes);
    return net;
}

void pt_net_free(pt_net *net)
{
    if (!net) return;
    free(net->nodes);
    free(net->params);
    free(net->buffers);
    free(net);
}

static int grow(void **arr, int *cap, int need, size_t elem)
{
    if (need <= *cap) return 1;
    int ncap = *cap ? *cap * 2 : 32;
    while (ncap < need) ncap *= 2;
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (!p) return 0;
    *arr = p;
    *cap = ncap;
    return 1;
}

static int set_name(pt_net *net, char *dst, const char *module, const char *leaf)
{
    int n = snprintf(dst, PT_NAME_MAX, "%s%s%s", module ? module : "",
                     module && module[0] && leaf && leaf[0] ? "." : "", leaf ? leaf : "");
    if (n < 0 || n >= PT_NAME_MAX) {
        pt_fail(&net->err, PT_ERR_INVALID, "net: name '%s.%s' is too long", module ? module : "",
                leaf ? leaf : "");
        return 0;
    }
    return 1;
}

int pt_net_declare_param(pt_net *net, const char *module, const char *leaf, int ndim,
                         const int64_t *dim, pt_init init, int64_t fan, int no_decay)
{
    if (net->err.status) return -1;
    if (!grow((void **)&net->params, &net->cap_params, net->nparams + 1, sizeof *net->params)) {
        pt_fail(&net->err, PT_ERR_NOMEM, "net: out of memory");
        return -1;
    }
    pt_param_info *p = &net->params[net->nparams];
    memset(p, 0, sizeof *p);
    if (!set_name(net, p->name, module, leaf)) return -1;
    if (pt_net_find_param(net, p->name) >= 0) {
        pt_fail(&net->err, PT_ERR_INVALID, "net: parameter '%s' declared twice", p->name);
        return -1;
    }
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < 4; i++) {
        p->dim[i] = i < ndim ? dim[i] : 1;
        if (i < ndim) p->numel *= dim[i];
    }
    p->init = init;
    p->fan = fan;
    p->no_decay = no_decay;
    p->offset = -1;
    net->param_count += p->numel;
    return net->nparams++;
}

int pt_net_declare_buffer(pt_net *net, const char *module, const char *leaf, int64_t numel,
                          float init)
{
    if (net->err.status) return -1;
    if (!grow((void **)&net->buffers, &net->cap_buffers, net->nbuffers + 1, sizeof *net->buffers)) {
        pt_fail(&net->err, PT_ERR_NOMEM, "net: out of memory");
        return -1;
    }
    pt_buffer_info *b = &net->buffers[net->nbuffers];
    memset(b, 0, sizeof *b);
    if (!set_name(net, b->name, module, leaf)) return -1;
    b->numel = numel;
    b->init = init;
    b->offset = net->nbuffers ? align_up(net->buffers[net->nbuffers - 1].offset +
                                         net->buffers[net->nbuffers - 1].numel)
                              : 0;
    net->buffer_count += numel;
    return net->nbuffers++;
}

static pt_node *add_node(pt_net *net, pt_node_kind kind, const char *name, int a, int b)
{
    if (net->err.status) return NULL;
    int nin = kind == PT_NODE_INPUT ? 0 : (kind == PT_NODE_ADD || kind == PT_NODE_BCAST_MUL ? 2 : 1);
    int ins[2] = {a, b};
    for (int i = 0; i < nin; i++)
        if (ins[i] < 0 || ins[i] >= net->nnodes) {
            pt_fail(&net->err, PT_ERR_INVALID, "net: layer '%s' takes node %d, which does not exist",
                    name ? name : "?", ins[i]);
            return NULL;
        }
    if (kind == PT_NODE_INPUT && net->nnodes != 0) {
        pt_fail(&net->err, PT_ERR_INVALID, "net: the input must be the first node");
        return NULL;
    }
    if (!grow((void **)&net->nodes, &net->cap_nodes, net->nnodes + 1, sizeof *net->nodes)) {
        pt_fail(&net->err, PT_ERR_NOMEM, "net: out of memory");
        return NULL;
    }
    pt_node *n = &net->nodes[net->nnodes];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->nin = nin;
    n->in[0] = a;
    n->in[1] = b;
    n->param[0] = n->param[1] = -1;
    n->buffer[0] = n->buffer[1] = -1;
    n->bn_index = -1;
    if (!set_name(net, n->name, name, NULL)) return NULL;
    return n;
}

static int finish_node(pt_net *net, pt_node *n)
{
    if (!n) return -1;
    const pt_layer_vt *vt = pt_layer_vtable(n->kind);
    pt_error e;
    pt_error_clear(&e);
    if (vt && vt->infer(net, n, &e) != PT_OK) {
        if (!net->err.status) net->err = e;
        return -1;
    }
    return net->nnodes++;
}

int pt_net_input(pt_net *net)
{
    pt_node *n = add_node(net, PT_NODE_INPUT, "input", -1, -1);
    if (!n) return -1;
    n->c = net->in_channels;
    n->h = net->in_height;
    n->w = net->in_width;
    return finish_node(net, n);
}

int pt_net_conv2d(pt_net *net, int in, const char *name, int out_channels, int k, int stride,
                  int pad, int bias)
{
    pt_node *n = add_node(net, PT_NODE_CONV2D, name, in, -1);
    if (!n) return -1;
    n->a.conv.out = out_channels;
    n->a.conv.k = k;
    n->a.conv.stride = stride;
    n->a.conv.pad = pad;
    n->a.conv.bias = bias;
    return finish_node(net, n);
}

int pt_net_batchnorm2d(pt_net *net, int in, const char *name)
{
    pt_node *n = add_node(net, PT_NODE_BATCHNORM2D, name, in, -1);
    if (!n) return -1;
    n->a.bn.eps = 1e-5f;
    n->a.bn.momentum = 0.1f;
    return finish_node(net, n);
}

int pt_net_relu(pt_net *net, int in)
{
    return finish_node(net, add_node(net, PT_NODE_RELU, "", in, -1));
}

int pt_net_maxpool2d(pt_net *net, int in, int k, int stride, int pad)
{
    pt_node *n = add_node(net, PT_NODE_MAXPOOL2D, "", in, -1);
    if (!n) return -1;
    n->a.pool.k = k;
    n->a.pool.stride = stride;
    n->a.pool.pad = pad;
    return finish_node(net, n);
}

int pt_net_global_avgpool(pt_net *net, int in)
{
    return finish_node(net, add_node(net, PT_NODE_GLOBAL_AVGPOOL, "", in, -1));
}

int pt_net_linear(pt_net *net, int in, const char *name, int out_features, int bias)
{
    pt_node *n = add_node(net, PT_NODE_LINEAR, name, in, -1);
    if (!n) return -1;
    n->a.linear.out = out_features;
    n->a.linear.bias = bias;
    return finish_node(net, n);
}

int pt_net_add(pt_net *net, int a, int b)
{
    return finish_node(net, add_node(net, PT_NODE_ADD, "", a, b));
}

int pt_net_dropout(pt_net *net, int in, float p)
{
    pt_node *n = add_node(net, PT_NODE_DROPOUT, "", in, -1);
    if (!n) return -1;
    n->a.dropout.p = p;
    return finish_node(net, n);
}

int pt_net_linear_shared(pt_net *net, int in, int owner)
{
    if (!net->err.status && (owner < 1 || owner >= net->nnodes || net->nodes[owner].kind != PT_NODE_LINEAR ||
                             net->nodes[owner].a.linear.share)) {
        pt_fail(&net->err, PT_ERR_INVALID, "net: shared linear takes node %d, which is not a linear layer "
                "with parameters of its own", owner);
        return -1;
    }
    pt_node *n = add_node(net, PT_NODE_LINEAR, net->err.status ? "" : net->nodes[owner].name, in, -1);
    if (!n) return -1;
    n->a.linear.out = net->nodes[owner].a.linear.out;
    n->a.linear.bias = net->nodes[owner].a.linear.bias;
    n->a.linear.share = owner;
    return finish_node(net, n);
}

int pt_net_activation(pt_net *net, int in, pt_op_kind op)
{
    if (!net->err.status && !pt_op_is_activation(op)) {
        pt_fail(&net->err, PT_ERR_INVALID, "net: %s is not an activation kind (a pointwise forward with a gradient kind)",
                pt_op_name(op));
        return -1;
    }
    pt_node *n = add_node(net, PT_NODE_ACTIVATION, "", in, -1);
    if (!n) return -1;
    n->a.act.op = (int)op;
    return finish_node(net, n);
}

int pt_net_sigmoid(pt_net *net, int in) { return pt_net_activation(net, in, PT_OP_SIGMOID_FWD); }

int pt_net_bcast_mul(pt_net *net, int x, int s)
{
    return finish_node(net, add_node(net, PT_NODE_BCAST_MUL, "", x, s));
}

int pt_net_global_maxpool(pt_net *net, int in)
{
    return finish_node(net, add_node(net, PT_NODE_GLOBAL_MAXPOOL, "", in, -1));
}

int pt_net_channel_pool(pt_net *net, int in)
{
    return finish_node(net, add_node(net, PT_NODE_CHANNEL_POOL, "", in, -1));
}

pt_status pt_net_finish(pt_net *net, int output, pt_error *err)
{
    if (net->err.status) {
        if (err) *err = net->err;
        return net->err.status;
    }
    if (output < 1 || output >= net->nnodes)
        return pt_fail(err, PT_ERR_INVALID, "net: output node %d does not exist", output);
    const pt_node *o = &net->nodes[output];
    if (!o->flat || o->c != net->num_classes)
        return pt_fail(err, PT_ERR_INVALID, "net: output must be [N, %d] logits, got %lldx%lldx%lld",
                       net->num_classes, (long long)o->c, (long long)o->h, (long long)o->w);
    net->output = output;
    int64_t off = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < net->nparams; i++) {
            if (net->params[i].no_decay != pass) continue;
            net->params[i].offset = off;
            off = align_up(off + net->params[i].numel);
        }
    return PT_OK;
}

int pt_net_find_param(const pt_net *net, const char *name)
{
    for (int i = 0; i < net->nparams; i++)
        if (strcmp(net->params[i].name, name) == 0) return i;
    return -1;
}

int pt_net_find_buffer(const pt_net *net, const char *name)
{
    for (int i = 0; i < net->nbuffers; i++)
        if (strcmp(net->buffers[i].name, name) == 0) return i;
    return -1;
}

int64_t pt_net_param_region(const pt_net *net)
{
    int64_t end = 0;
    for (int i = 0; i < net->nparams; i++) {
        int64_t e = align_up(net->params[i].offset + net->params[i].numel);
        if (e > end) end = e;
    }
    return end;
}

int64_t pt_net_buffer_region(const pt_net *net)
{
    if (!net->nbuffers) return 0;
    const pt_buffer_info *b = &net->buffers[net->nbuffers - 1];
    return align_up(b->offset + b->numel);
}

int64_t pt_net_decay_prefix(const pt_net *net)
{
    int64_t end = 0;
    for (int i = 0; i < net->nparams; i++)
        if (!net->params[i].no_decay) {
            int64_t e = align_up(net->params[i].offset + net->params[i].numel);
            if (e > end) end = e;
        }
    return end;
}

/* The op table's count for the GEMM-like op of each convolution and linear layer, on one
 * sample (the tensors carry shapes only). */
double pt_net_forward_flops(const pt_net *net)
{
    double flops = 0;
    for (int i = 0; i < net->nnodes; i++) {
        const pt_node *n = &net->nodes[i];
        const pt_node *x = n->nin ? &net->nodes[n->in[0]] : n;
        pt_op op;
        memset(&op, 0, sizeof op);
        op.nt = 3;
        if (n->kind == PT_NODE_CONV2D) {
            op.kind = PT_OP_CONV2D_FWD;
            op.t[0] = pt_tensor_4d(NULL, 0, 1, x->c, x->h, x->w);
            op.t[1] = pt_tensor_4d(NULL, 0, n->c, x->c, n->a.conv.k, n->a.conv.k);
            op.t[2] = pt_tensor_4d(NULL, 0, 1, n->c, n->h, n->w);
        } else if (n->kind == PT_NODE_LINEAR) {
            op.kind = PT_OP_GEMM;
            op.p.gemm.trans_b = 1; /* y = x W^T */
            op.t[0] = pt_tensor_2d(NULL, 0, 1, x->c * x->h * x->w);
            op.t[1] = pt_tensor_2d(NULL, 0, n->c, x->c * x->h * x->w);
            op.t[2] = pt_tensor_2d(NULL, 0, 1, n->c);
        } else {
            continue;
        }
        flops += pt_op_flops(&op);
    }
    return flops;
}
