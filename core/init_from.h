/* Starting a net from pretrained weights: a plain safetensors state dict with PyTorch names
 * (safetensors.torch.save_file(model.state_dict(), ...), metadata optional) or a polytrain
 * checkpoint directory, matched strictly to the net's parameters and BatchNorm buffers.
 * Unlike a checkpoint, it carries no optimizer state and no training progress, its head may
 * be left at its random init (a new class count), and a 1-channel net takes RGB weights of
 * its first convolution summed over their input channels. */
#ifndef PT_INIT_FROM_H
#define PT_INIT_FROM_H

#include <stdint.h>

#include "core/json.h"
#include "polytrain/net.h"

/* Float dtypes accepted (converted to float32 on loading), and num_batches_tracked's. */
#define PT_INIT_FLOAT_DTYPES "F32, F16, BF16 or F64"
#define PT_INIT_COUNT_DTYPES "I64 or I32"
/* How many names of each kind of mismatch the report lists (all are counted). */
#define PT_INIT_LIST_MAX 10

typedef enum pt_head_reset {
    PT_HEAD_LOADED = 0, /* taken from the file */
    PT_HEAD_RESET_SHAPE, /* its shape differs from the file's (a new class count) */
    PT_HEAD_RESET_ASKED, /* reset_head asked for it */
} pt_head_reset;

typedef struct pt_init_result {
    char file[4200];        /* the safetensors file read (DIR/model.safetensors for a directory) */
    int loaded;             /* entries taken from the file (parameters, buffers, num_batches_tracked) */
    int file_tensors;       /* entries in the file */
    char head[PT_NAME_MAX]; /* the classifier's module name ("fc"); "" when the net ends otherwise */
    pt_head_reset head_reset;
    int head_classes;       /* the net's classes */
    int file_classes;       /* rows of the file's head weight; -1 when the file has none */
    char summed[PT_NAME_MAX + 32]; /* the first convolution's weight when summed over input channels */
    int summed_from;        /* the file's input channels of it */
    char converted[32];     /* dtypes converted to float32, e.g. "F16" ("" when all were F32) */
    int64_t bn_steps;       /* num_batches_tracked (the largest of the file's) */
} pt_init_result;

/* Reads `path` (a .safetensors file, or a directory holding model.safetensors) and fills
 * params [pt_net_param_region floats] and buffers [pt_net_buffer_region floats] with its
 * tensors; every entry of the net must be in the file with the net's shape, nothing else may
 * be. The head (the linear layer producing the logits) keeps the seeded random init of
 * pt_net_init_values when reset_head is set; without it a head of another shape is an error
 * that suggests reset_head. A 1-channel net's first convolution takes a file's multi-channel
 * weight summed over its input channels. On a mismatch the status is PT_ERR_MISMATCH, the
 * message a summary and, when detail is not NULL, detail gets every kind of mismatch with the
 * first PT_INIT_LIST_MAX names and shapes, one line each kind. The file's header is validated
 * whole first (pt_st_open); nothing is written anywhere. */
pt_status pt_init_from_read(const char *path, const pt_net *net, uint64_t seed, int reset_head, float *params,
                            float *buffers, pt_init_result *res, pt_strbuf *detail, pt_error *err);

/* One line of what was loaded, e.g. "initialised from r18.safetensors: 120 tensors; head fc.*
 * reset (10 classes, the file has 1000)". */
void pt_init_result_describe(const pt_init_result *r, char *buf, size_t cap);

#endif
