/* ONNX export: a net in evaluation mode as an ONNX model (ModelProto), translated node by
 * node from the net graph, weights as float32 initializers. Written with polytrain's own
 * protobuf encoder, atomically; the weights go from the caller's arrays to the file without
 * a copy. Never touches a device. */
#ifndef PT_ONNX_H
#define PT_ONNX_H

#include <stddef.h>
#include <stdint.h>

#include "polytrain/net.h"
#include "polytrain/status.h"

/* The operator sets the writer knows: every operator it uses means the same over them. */
#define PT_ONNX_OPSET_MIN 13
#define PT_ONNX_OPSET_MAX 22
#define PT_ONNX_OPSET_DEFAULT 17

typedef struct pt_onnx_prop {
    const char *key, *value; /* a metadata_props entry (UTF-8) */
} pt_onnx_prop;

typedef struct pt_onnx_options {
    int opset;                    /* PT_ONNX_OPSET_MIN..PT_ONNX_OPSET_MAX */
    int64_t batch;                /* 0: a symbolic batch dimension "batch"; else that many samples */
    const char *graph_name;       /* NULL: "polytrain" */
    const char *producer_version; /* NULL: none */
    const char *doc_string;       /* the model's doc_string, or NULL */
    const pt_onnx_prop *props;
    int nprops;
} pt_onnx_options;

typedef struct pt_onnx_summary {
    int nodes;            /* ONNX nodes in the graph */
    int initializers;     /* weight and constant tensors */
    int64_t ir_version;
    uint64_t bytes;       /* file size */
} pt_onnx_summary;

/* The IR version a model of this opset declares (the one ONNX released it with); 0 for an
 * opset outside PT_ONNX_OPSET_MIN..PT_ONNX_OPSET_MAX. */
int64_t pt_onnx_ir_version(int opset);

/* Writes net (finished; pt_net_finish) as an ONNX model to path, replaced atomically: input
 * "input" float32 [N, C, H, W], output "logits" float32 [N, classes]. params and buffers hold
 * the net's parameters and buffers at their offsets (pt_net_param_region and
 * pt_net_buffer_region elements, as a checkpoint loads them). BatchNorm layers are written as
 * BatchNormalization nodes with their running statistics (inference), dropout is left out
 * (identity in evaluation). A layer kind without a translation is PT_ERR_UNSUPPORTED naming
 * it; nothing is written then. summary may be NULL. */
pt_status pt_onnx_write(const char *path, const pt_net *net, const float *params, const float *buffers,
                        const pt_onnx_options *opt, pt_onnx_summary *summary, pt_error *err);

#endif
