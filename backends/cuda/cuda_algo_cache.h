/* The convolution plan cache of the cuda backend, free of CUDA: a hash table from a
 * convolution's shape key (direction, every extent, stride, padding, and the numeric mode:
 * deterministic, the op's math mode, which 16-bit operands cuDNN takes where they are stored)
 * to the module's plan for it (cuDNN descriptors, chosen algorithm,
 * workspace). The core asks workspace_size for every batch size a replica can see, and run()
 * finds the same entry again without allocating. Not thread-safe: one per device. */
#ifndef PT_CUDA_ALGO_CACHE_H
#define PT_CUDA_ALGO_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "polytrain/op.h"

typedef struct pt_conv_key {
    int32_t kind; /* PT_OP_CONV2D_FWD, _BWD_DATA or _BWD_FILTER */
    int32_t n, c, h, w, k, r, s, p, q, stride, pad;
    int32_t deterministic;
    int32_t math; /* pt_precision: op->math (fp32, tf32, bf16, fp16 each get their own plan) */
    int32_t direct; /* pt_conv_direct(op): the workspace holds no 16-bit copy of these */
    int32_t nhwc;   /* pt_conv_nhwc(op): cuDNN runs channels last */
} pt_conv_key;

/* Whether cuDNN runs convolution op channels last (its x, y and filter descriptors NHWC): in a
 * 16-bit math mode (the tensor-core kernels read NHWC without a transpose), when x or y (dx or
 * dy) is stored NHWC. Every operand then reaches cuDNN through the plan's 16-bit copies in NHWC
 * (transposed as they are converted: the filter [K,C,R,S] as [K,R,S,C]) unless it is direct. */
int pt_conv_nhwc(const pt_op *op);

/* The operands of a convolution (bit i: operand i) that cuDNN reads or writes where they are: an
 * activation stored in the 16-bit type of the op's math mode (bf16: PT_BF16, fp16: PT_F16) and
 * in the plan's layout (pt_conv_nhwc), which cuDNN takes as it takes the 16-bit copies of
 * float32 operands; the forward's y only when it is overwritten (an accumulated y is summed in
 * float32 and rounded once, through a copy). The rest are converted into the workspace and back. */
unsigned pt_conv_direct(const pt_op *op);
/* The operands the convolution takes as they are stored (cudam_backend.c's native mask): the
 * direct ones, and in a 16-bit math mode a float32 NHWC image too (converted, and transposed
 * where the plan's layout differs, into the plan's copies). A 16-bit operand that is not direct
 * comes as a float32 NCHW copy (kernel_act16.c). */
unsigned pt_conv_takes(const pt_op *op);

/* The key of a convolution op (t0 x-shaped, t1 w-shaped, t2 y-shaped in all three kinds), in
 * the op's math mode. */
pt_conv_key pt_conv_key_of(const pt_op *op, int deterministic);
int pt_conv_key_equal(const pt_conv_key *a, const pt_conv_key *b);
uint64_t pt_conv_key_hash(const pt_conv_key *k);
/* "fwd n=.. c=.. ..." for messages. */
void pt_conv_key_format(const pt_conv_key *k, char *out, size_t cap);

typedef struct pt_algo_cache {
    pt_conv_key *keys;
    void **values; /* NULL: empty slot */
    size_t cap, count; /* cap: a power of two */
    long lookups, hits;
} pt_algo_cache;

void pt_algo_cache_init(pt_algo_cache *c);
/* Calls free_value on every value, then frees the table. */
void pt_algo_cache_destroy(pt_algo_cache *c, void (*free_value)(void *value, void *user), void *user);
/* The value stored for key, or NULL. Never allocates. */
void *pt_algo_cache_find(pt_algo_cache *c, const pt_conv_key *key);
/* Stores value (non-NULL) for key, replacing nothing: 0 on success, -1 out of host memory,
 * 1 when the key is already there. */
int pt_algo_cache_insert(pt_algo_cache *c, const pt_conv_key *key, void *value);

#endif
