/* ONNX export of a net (see onnx.h). The graph is built by walking the net's nodes in their
 * topological order, each layer kind becoming the ONNX operators that compute its
 * evaluation-mode forward with the same padding, strides, eps and pooling rules; field
 * numbers are those of onnx/onnx.proto. The weights are never copied: the file is the
 * model's small parts followed, tensor by tensor, by each initializer's header and its data
 * straight from the caller's arrays. */
#include "core/onnx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/layers/layer.h"
#include "core/protobuf.h"

/* onnx.proto field numbers, by message */
enum {
    MODEL_IR_VERSION = 1, MODEL_PRODUCER_NAME = 2, MODEL_PRODUCER_VERSION = 3, MODEL_DOC_STRING = 6,
    MODEL_GRAPH = 7, MODEL_OPSET_IMPORT = 8, MODEL_METADATA_PROPS = 14,
    OPSET_DOMAIN = 1, OPSET_VERSION = 2,
    ENTRY_KEY = 1, ENTRY_VALUE = 2,
    GRAPH_NODE = 1, GRAPH_NAME = 2, GRAPH_INITIALIZER = 5, GRAPH_INPUT = 11, GRAPH_OUTPUT = 12,
    NODE_INPUT = 1, NODE_OUTPUT = 2, NODE_NAME = 3, NODE_OP_TYPE = 4, NODE_ATTRIBUTE = 5,
    ATTR_NAME = 1, ATTR_F = 2, ATTR_I = 3, ATTR_INTS = 8, ATTR_TYPE = 20,
    TENSOR_DIMS = 1, TENSOR_DATA_TYPE = 2, TENSOR_NAME = 8, TENSOR_RAW_DATA = 9,
    VALUE_INFO_NAME = 1, VALUE_INFO_TYPE = 2,
    TYPE_TENSOR_TYPE = 1, TENSOR_TYPE_ELEM_TYPE = 1, TENSOR_TYPE_SHAPE = 2,
    SHAPE_DIM = 1, DIM_VALUE = 1, DIM_PARAM = 2,
};
enum { ATTR_TYPE_FLOAT = 1, ATTR_TYPE_INT = 2, ATTR_TYPE_INTS = 7 };
enum { DATA_TYPE_FLOAT = 1, DATA_TYPE_INT64 = 7 };

#define VALUE_MAX (PT_NAME_MAX + 48)

int64_t pt_onnx_ir_version(int opset)
{
    /* the IR version of the ONNX release that introduced each opset */
    static const int64_t ir[PT_ONNX_OPSET_MAX - PT_ONNX_OPSET_MIN + 1] = {
        7, 7,       /* 13, 14 */
        8, 8, 8, 8, /* 15..18 */
        9, 9,       /* 19, 20 */
        10, 10,     /* 21, 22 */
    };
    return opset >= PT_ONNX_OPSET_MIN && opset <= PT_ONNX_OPSET_MAX ? ir[opset - PT_ONNX_OPSET_MIN] : 0;
}

typedef struct attr {
    const char *name;
    int type;
    float f;
    int64_t i;
    int nints;
    int64_t ints[4];
} attr;

static attr attr_int(const char *name, int64_t v) { return (attr){.name = name, .type = ATTR_TYPE_INT, .i = v}; }
static attr attr_float(const char *name, float v) { return (attr){.name = name, .type = ATTR_TYPE_FLOAT, .f = v}; }
static attr attr_pair(const char *name, int64_t v)
{
    return (attr){.name = name, .type = ATTR_TYPE_INTS, .nints = 2, .ints = {v, v}};
}
static attr attr_quad(const char *name, int64_t v)
{
    return (attr){.name = name, .type = ATTR_TYPE_INTS, .nints = 4, .ints = {v, v, v, v}};
}
static attr attr_axis1(const char *name) { return (attr){.name = name, .type = ATTR_TYPE_INTS, .nints = 1, .ints = {1}}; }

typedef struct graph {
    const pt_net *net;
    int opset;
    pt_pb body;         /* the graph's nodes, constants, name, input and output */
    pt_pb node, sub;    /* scratch: one node, one of its attributes */
    int nodes, consts;
    int have_axes_c, have_axes_hw; /* int64 constants made so far (opset 18+ reductions, Unsqueeze) */
    char (*value)[VALUE_MAX];      /* per net node: the name of the ONNX value holding its output */
} graph;

static void emit(graph *g, const char *op, const char *out, const char *const *in, int nin, const attr *a, int na)
{
    pt_pb *n = &g->node;
    pt_pb_reset(n);
    for (int i = 0; i < nin; i++) pt_pb_string(n, NODE_INPUT, in[i]);
    pt_pb_string(n, NODE_OUTPUT, out);
    pt_pb_string(n, NODE_NAME, out); /* values are assigned once: their names are unique node names */
    pt_pb_string(n, NODE_OP_TYPE, op);
    for (int k = 0; k < na; k++) {
        pt_pb *s = &g->sub;
        pt_pb_reset(s);
        pt_pb_string(s, ATTR_NAME, a[k].name);
        pt_pb_int(s, ATTR_TYPE, a[k].type);
        if (a[k].type == ATTR_TYPE_FLOAT) pt_pb_float(s, ATTR_F, a[k].f);
        else if (a[k].type == ATTR_TYPE_INT) pt_pb_int(s, ATTR_I, a[k].i);
        else
            for (int j = 0; j < a[k].nints; j++) pt_pb_int(s, ATTR_INTS, a[k].ints[j]);
        pt_pb_message(n, NODE_ATTRIBUTE, s);
    }
    pt_pb_message(&g->body, GRAPH_NODE, n);
    g->nodes++;
}

static void emit1(graph *g, const char *op, const char *out, const char *x, const attr *a, int na)
{
    emit(g, op, out, &x, 1, a, na);
}

/* An int64 vector constant in the graph (small: its data goes into the body). */
static const char *int64_const(graph *g, const char *name, const int64_t *v, int n, int *made)
{
    if (*made) return name;
    *made = 1;
    pt_pb *s = &g->sub;
    pt_pb_reset(s);
    pt_pb_int(s, TENSOR_DIMS, n);
    pt_pb_int(s, TENSOR_DATA_TYPE, DATA_TYPE_INT64);
    pt_pb_string(s, TENSOR_NAME, name);
    uint8_t le[4 * 8];
    for (int i = 0; i < n; i++)
        for (int b = 0; b < 8; b++) le[8 * i + b] = (uint8_t)((uint64_t)v[i] >> (8 * b));
    pt_pb_bytes(s, TENSOR_RAW_DATA, le, (size_t)n * 8);
    pt_pb_message(&g->body, GRAPH_INITIALIZER, s);
    g->consts++;
    return name;
}

static const char *axes_c(graph *g)
{
    static const int64_t axes[1] = {1};
    return int64_const(g, "axes.channel", axes, 1, &g->have_axes_c);
}

static const char *axes_hw(graph *g)
{
    static const int64_t axes[2] = {2, 3};
    return int64_const(g, "axes.height_width", axes, 2, &g->have_axes_hw);
}

/* A reduction over the channel axis keeping it (ReduceMean/ReduceMax): axes is an attribute
 * before opset 18 and an input from it on. */
static void reduce_channels(graph *g, const char *op, const char *out, const char *x)
{
    attr keep = attr_int("keepdims", 1);
    if (g->opset >= 18) {
        const char *in[2] = {x, axes_c(g)};
        emit(g, op, out, in, 2, &keep, 1);
    } else {
        attr a[2] = {attr_axis1("axes"), keep};
        emit1(g, op, out, x, a, 2);
    }
}

static const char *param(const graph *g, int i) { return g->net->params[i].name; }

static void suffixed(char *dst, const char *value, const char *suffix)
{
    snprintf(dst, VALUE_MAX, "%s/%s", value, suffix);
}

/* The ONNX operators of one node; its output gets the name g->value[id]. */
static pt_status translate(graph *g, int id, pt_error *err)
{
    const pt_net *net = g->net;
    const pt_node *n = &net->nodes[id];
    const char *out = g->value[id];
    const char *x = n->nin > 0 ? g->value[n->in[0]] : NULL;
    char t1[VALUE_MAX], t2[VALUE_MAX];
    switch (n->kind) {
    case PT_NODE_CONV2D: {
        const char *in[3] = {x, param(g, n->param[0]), n->param[1] >= 0 ? param(g, n->param[1]) : NULL};
        const attr a[5] = {attr_pair("kernel_shape", n->a.conv.k), attr_pair("strides", n->a.conv.stride),
                           attr_quad("pads", n->a.conv.pad), attr_pair("dilations", 1), attr_int("group", 1)};
        emit(g, "Conv", out, in, n->param[1] >= 0 ? 3 : 2, a, 5);
        return PT_OK;
    }
    case PT_NODE_BATCHNORM2D: {
        /* inference: normalised with the running statistics, as the eval forward does */
        const char *in[5] = {x, param(g, n->param[0]), param(g, n->param[1]), net->buffers[n->buffer[0]].name,
                             net->buffers[n->buffer[1]].name};
        const attr eps = attr_float("epsilon", n->a.bn.eps);
        emit(g, "BatchNormalization", out, in, 5, &eps, 1);
        return PT_OK;
    }
    case PT_NODE_RELU:
        emit1(g, "Relu", out, x, NULL, 0);
        return PT_OK;
    case PT_NODE_MAXPOOL2D: {
        /* floor output size; padding never wins a window (it is -inf), as in ONNX */
        const attr a[4] = {attr_pair("kernel_shape", n->a.pool.k), attr_pair("strides", n->a.pool.stride),
                           attr_quad("pads", n->a.pool.pad), attr_int("ceil_mode", 0)};
        emit1(g, "MaxPool", out, x, a, 4);
        return PT_OK;
    }
    case PT_NODE_GLOBAL_AVGPOOL:
    case PT_NODE_GLOBAL_MAXPOOL: {
        /* the pool leaves [N, C, 1, 1]; the net's features are [N, C] */
        const attr axis = attr_int("axis", 1);
        suffixed(t1, out, "pool");
        emit1(g, n->kind == PT_NODE_GLOBAL_AVGPOOL ? "GlobalAveragePool" : "GlobalMaxPool", t1, x, NULL, 0);
        emit1(g, "Flatten", out, t1, &axis, 1);
        return PT_OK;
    }
    case PT_NODE_LINEAR: {
        /* an image input is flattened C, H, W in memory order, as the layer reads it */
        if (!net->nodes[n->in[0]].flat) {
            const attr axis = attr_int("axis", 1);
            suffixed(t1, out, "flatten");
            emit1(g, "Flatten", t1, x, &axis, 1);
            x = t1;
        }
        /* a shared linear applies its owner's weights: the same initializers */
        const char *in[3] = {x, param(g, n->a.linear.w), n->a.linear.b >= 0 ? param(g, n->a.linear.b) : NULL};
        const attr tb = attr_int("transB", 1);
        emit(g, "Gemm", out, in, n->a.linear.b >= 0 ? 3 : 2, &tb, 1);
        return PT_OK;
    }
    case PT_NODE_ADD: {
        const char *in[2] = {x, g->value[n->in[1]]};
        emit(g, "Add", out, in, 2, NULL, 0);
        return PT_OK;
    }
    case PT_NODE_DROPOUT:
        /* identity in evaluation: the output is the input's value, unless it is the logits */
        if (id == net->output) emit1(g, "Identity", out, x, NULL, 0);
        else snprintf(g->value[id], VALUE_MAX, "%s", x);
        return PT_OK;
    case PT_NODE_ACTIVATION:
        switch ((pt_op_kind)n->a.act.op) {
        case PT_OP_SIGMOID_FWD:
            emit1(g, "Sigmoid", out, x, NULL, 0);
            return PT_OK;
        case PT_OP_RELU_FWD:
            emit1(g, "Relu", out, x, NULL, 0);
            return PT_OK;
        case PT_OP_SILU_FWD: {
            /* x * sigmoid(x): ONNX has no SiLU operator in these opsets */
            suffixed(t1, out, "sigmoid");
            emit1(g, "Sigmoid", t1, x, NULL, 0);
            const char *in[2] = {x, t1};
            emit(g, "Mul", out, in, 2, NULL, 0);
            return PT_OK;
        }
        default:
            return pt_fail(err, PT_ERR_UNSUPPORTED, "node %d: activation %s has no ONNX translation", id,
                           pt_op_name((pt_op_kind)n->a.act.op));
        }
    case PT_NODE_BCAST_MUL: {
        const char *s = g->value[n->in[1]];
        if (net->nodes[n->in[1]].flat) {
            /* one factor per channel: [N, C] -> [N, C, 1, 1] broadcasts over H, W */
            const char *in[2] = {s, axes_hw(g)};
            suffixed(t1, out, "unsqueeze");
            emit(g, "Unsqueeze", t1, in, 2, NULL, 0);
            s = t1;
        }
        /* else one factor per pixel, [N, 1, H, W], broadcast over the channels */
        const char *in[2] = {x, s};
        emit(g, "Mul", out, in, 2, NULL, 0);
        return PT_OK;
    }
    case PT_NODE_CHANNEL_POOL: {
        /* [mean over C, max over C] as 2 channels */
        suffixed(t1, out, "mean");
        suffixed(t2, out, "max");
        reduce_channels(g, "ReduceMean", t1, x);
        reduce_channels(g, "ReduceMax", t2, x);
        const char *in[2] = {t1, t2};
        const attr axis = attr_int("axis", 1);
        emit(g, "Concat", out, in, 2, &axis, 1);
        return PT_OK;
    }
    case PT_NODE_INPUT:
    case PT_NODE_KIND_COUNT:
        break;
    }
    const pt_layer_vt *vt = pt_layer_vtable(n->kind);
    return pt_fail(err, PT_ERR_UNSUPPORTED, "node %d ('%s'): a %s layer has no ONNX translation", id,
                   n->name[0] ? n->name : "unnamed", vt ? vt->name : "unknown");
}

/* A ValueInfoProto of a float32 tensor: dims < 0 is the symbolic batch dimension. */
static void value_info(pt_pb *dst, int field, const char *name, const int64_t *dims, int ndim)
{
    pt_pb shape = {0}, tensor = {0}, type = {0}, dim = {0}, info = {0};
    for (int i = 0; i < ndim; i++) {
        pt_pb_reset(&dim);
        if (dims[i] < 0) pt_pb_string(&dim, DIM_PARAM, "batch");
        else pt_pb_int(&dim, DIM_VALUE, dims[i]);
        pt_pb_message(&shape, SHAPE_DIM, &dim);
    }
    pt_pb_int(&tensor, TENSOR_TYPE_ELEM_TYPE, DATA_TYPE_FLOAT);
    pt_pb_message(&tensor, TENSOR_TYPE_SHAPE, &shape);
    pt_pb_message(&type, TYPE_TENSOR_TYPE, &tensor);
    pt_pb_string(&info, VALUE_INFO_NAME, name);
    pt_pb_message(&info, VALUE_INFO_TYPE, &type);
    pt_pb_message(dst, field, &info);
    if (info.failed) dst->failed = 1;
    pt_pb_free(&shape);
    pt_pb_free(&tensor);
    pt_pb_free(&type);
    pt_pb_free(&dim);
    pt_pb_free(&info);
}

/* One float32 initializer whose data the file takes from elsewhere. */
typedef struct weight {
    const char *name;
    int ndim;
    const int64_t *dim;
    const float *data;
    size_t nbytes;
    size_t head_off, head_len; /* its header in the heads buffer */
} weight;

static void weight_head(pt_pb *heads, pt_pb *scratch, weight *w)
{
    pt_pb_reset(scratch);
    for (int i = 0; i < w->ndim; i++) pt_pb_int(scratch, TENSOR_DIMS, w->dim[i]);
    pt_pb_int(scratch, TENSOR_DATA_TYPE, DATA_TYPE_FLOAT);
    pt_pb_string(scratch, TENSOR_NAME, w->name);
    pt_pb_len_prefix(scratch, TENSOR_RAW_DATA, w->nbytes);
    w->head_off = heads->len;
    pt_pb_len_prefix(heads, GRAPH_INITIALIZER, scratch->len + w->nbytes);
    pt_pb_raw(heads, scratch->data, scratch->len);
    if (scratch->failed) heads->failed = 1;
    w->head_len = heads->len - w->head_off;
}

static pt_status check_net(const pt_net *net, const pt_onnx_options *o, pt_error *err)
{
    const uint16_t one = 1;
    if (*(const uint8_t *)&one != 1)
        return pt_fail(err, PT_ERR_UNSUPPORTED, "ONNX export writes little-endian tensors; this host is not");
    if (!pt_onnx_ir_version(o->opset))
        return pt_fail(err, PT_ERR_INVALID, "ONNX opset %d is not supported (polytrain writes opsets %d to %d)",
                       o->opset, PT_ONNX_OPSET_MIN, PT_ONNX_OPSET_MAX);
    if (o->batch < 0) return pt_fail(err, PT_ERR_INVALID, "ONNX batch size %lld is negative", (long long)o->batch);
    if (net->output < 1 || net->output >= net->nnodes || net->nodes[0].kind != PT_NODE_INPUT)
        return pt_fail(err, PT_ERR_INVALID, "ONNX export: the net is not finished");
    return PT_OK;
}

pt_status pt_onnx_write(const char *path, const pt_net *net, const float *params, const float *buffers,
                        const pt_onnx_options *opt, pt_onnx_summary *summary, pt_error *err)
{
    PT_TRY(check_net(net, opt, err));
    pt_status st = PT_OK;
    graph g;
    memset(&g, 0, sizeof g);
    g.net = net;
    g.opset = opt->opset;
    pt_pb head = {0}, heads = {0}, scratch = {0};
    const int nweights = net->nparams + net->nbuffers;
    weight *w = calloc((size_t)(nweights ? nweights : 1), sizeof *w);
    const void **chunks = calloc((size_t)(2 + 2 * nweights), sizeof *chunks);
    size_t *sizes = calloc((size_t)(2 + 2 * nweights), sizeof *sizes);
    g.value = calloc((size_t)net->nnodes, sizeof *g.value);
    if (!w || !chunks || !sizes || !g.value) {
        st = pt_fail(err, PT_ERR_NOMEM, "out of host memory for the ONNX graph");
        goto out;
    }

    /* values: the input, one per node, the logits */
    for (int i = 0; i < net->nnodes; i++) {
        const pt_node *n = &net->nodes[i];
        if (i == 0) snprintf(g.value[i], VALUE_MAX, "input");
        else if (i == net->output) snprintf(g.value[i], VALUE_MAX, "logits");
        else {
            const pt_layer_vt *vt = pt_layer_vtable(n->kind);
            const char *label = n->name[0] ? n->name
                                : n->kind == PT_NODE_ACTIVATION ? pt_op_name((pt_op_kind)n->a.act.op)
                                : vt ? vt->name : "node";
            snprintf(g.value[i], VALUE_MAX, "%s_%d", label, i);
        }
    }
    pt_pb_string(&g.body, GRAPH_NAME, opt->graph_name ? opt->graph_name : "polytrain");
    for (int i = 1; i < net->nnodes; i++)
        if ((st = translate(&g, i, err)) != PT_OK) goto out;
    const int64_t batch = opt->batch > 0 ? opt->batch : -1;
    const int64_t in_dims[4] = {batch, net->in_channels, net->in_height, net->in_width};
    const int64_t out_dims[2] = {batch, net->num_classes};
    value_info(&g.body, GRAPH_INPUT, "input", in_dims, 4);
    value_info(&g.body, GRAPH_OUTPUT, "logits", out_dims, 2);

    /* weights: every parameter (shared linears name their owner's) and BatchNorm statistic */
    uint64_t graph_len = g.body.len;
    for (int i = 0; i < nweights; i++) {
        weight *t = &w[i];
        if (i < net->nparams) {
            const pt_param_info *p = &net->params[i];
            *t = (weight){.name = p->name, .ndim = p->ndim, .dim = p->dim, .data = params + p->offset,
                          .nbytes = (size_t)p->numel * sizeof(float)};
        } else {
            const pt_buffer_info *b = &net->buffers[i - net->nparams];
            *t = (weight){.name = b->name, .ndim = 1, .dim = &b->numel, .data = buffers + b->offset,
                          .nbytes = (size_t)b->numel * sizeof(float)};
        }
        weight_head(&heads, &scratch, t);
        graph_len += t->head_len + t->nbytes;
    }

    pt_pb_int(&head, MODEL_IR_VERSION, pt_onnx_ir_version(opt->opset));
    pt_pb_string(&head, MODEL_PRODUCER_NAME, "polytrain");
    if (opt->producer_version) pt_pb_string(&head, MODEL_PRODUCER_VERSION, opt->producer_version);
    if (opt->doc_string) pt_pb_string(&head, MODEL_DOC_STRING, opt->doc_string);
    pt_pb_reset(&scratch);
    pt_pb_string(&scratch, OPSET_DOMAIN, ""); /* the default domain, ai.onnx */
    pt_pb_int(&scratch, OPSET_VERSION, opt->opset);
    pt_pb_message(&head, MODEL_OPSET_IMPORT, &scratch);
    for (int i = 0; i < opt->nprops; i++) {
        pt_pb_reset(&scratch);
        pt_pb_string(&scratch, ENTRY_KEY, opt->props[i].key);
        pt_pb_string(&scratch, ENTRY_VALUE, opt->props[i].value);
        pt_pb_message(&head, MODEL_METADATA_PROPS, &scratch);
    }
    pt_pb_len_prefix(&head, MODEL_GRAPH, (size_t)graph_len);
    if ((st = pt_pb_check(&head, err)) != PT_OK || (st = pt_pb_check(&heads, err)) != PT_OK ||
        (st = pt_pb_check(&g.body, err)) != PT_OK || (st = pt_pb_check(&g.node, err)) != PT_OK ||
        (st = pt_pb_check(&scratch, err)) != PT_OK)
        goto out;
    const uint64_t bytes = head.len + graph_len;
    /* protobuf's parsers refuse messages of 2 GiB and more */
    if (bytes >= (1ull << 31)) {
        st = pt_fail(err, PT_ERR_UNSUPPORTED, "the ONNX model would be %llu bytes, over protobuf's 2 GiB limit",
                     (unsigned long long)bytes);
        goto out;
    }
    int nchunks = 0;
    chunks[nchunks] = head.data;
    sizes[nchunks++] = head.len;
    chunks[nchunks] = g.body.data;
    sizes[nchunks++] = g.body.len;
    for (int i = 0; i < nweights; i++) {
        chunks[nchunks] = heads.data + w[i].head_off;
        sizes[nchunks++] = w[i].head_len;
        chunks[nchunks] = w[i].data;
        sizes[nchunks++] = w[i].nbytes;
    }
    if ((st = pt_write_file_atomic(path, (const void *const *)chunks, sizes, nchunks, err)) != PT_OK) goto out;
    if (summary) {
        summary->nodes = g.nodes;
        summary->initializers = nweights + g.consts;
        summary->ir_version = pt_onnx_ir_version(opt->opset);
        summary->bytes = bytes;
    }
out:
    pt_pb_free(&head);
    pt_pb_free(&heads);
    pt_pb_free(&scratch);
    pt_pb_free(&g.body);
    pt_pb_free(&g.node);
    pt_pb_free(&g.sub);
    free(g.value);
    free(w);
    free(chunks);
    free(sizes);
    return st;
}
