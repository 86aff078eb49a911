/* The convolution plan cache (cuda_algo_cache.h): open addressing with linear probing over
 * FNV-1a hashes of the shape key; grows at 50% load. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cuda/cuda_algo_cache.h"

static pt_dtype lowp_type(const pt_op *op)
{
    return op->math == PT_PREC_BF16 ? PT_BF16 : op->math == PT_PREC_FP16 ? PT_F16 : PT_F32;
}

int pt_conv_nhwc(const pt_op *op)
{
    return lowp_type(op) != PT_F32 && op->nt == 3 && (pt_tensor_nhwc(&op->t[0]) || pt_tensor_nhwc(&op->t[2]));
}

unsigned pt_conv_direct(const pt_op *op)
{
    const pt_dtype want = lowp_type(op);
    if (want == PT_F32 || op->nt != 3) return 0;
    const int nhwc = pt_conv_nhwc(op);
    unsigned m = 0;
    if (op->kind != PT_OP_CONV2D_BWD_DATA && op->t[0].dtype == want && pt_tensor_nhwc(&op->t[0]) == nhwc)
        m |= 1u; /* x, read */
    if (op->kind == PT_OP_CONV2D_FWD && op->t[2].dtype == want && pt_tensor_nhwc(&op->t[2]) == nhwc &&
        !op->accumulate)
        m |= 4u;
    return m;
}

unsigned pt_conv_takes(const pt_op *op)
{
    unsigned m = pt_conv_direct(op);
    if (lowp_type(op) == PT_F32 || op->nt != 3) return m;
    for (int i = 0; i < 3; i += 2)
        if (pt_tensor_nhwc(&op->t[i]) && op->t[i].dtype == PT_F32) m |= 1u << i;
    return m;
}

pt_conv_key pt_conv_key_of(const pt_op *op, int deterministic)
{
    const pt_tensor *x = &op->t[0], *w = &op->t[1], *y = &op->t[2];
    pt_conv_key k;
    memset(&k, 0, sizeof k); /* no padding bytes in the struct, but hashes read it whole */
    k.kind = (int32_t)op->kind;
    k.n = (int32_t)x->dim[0];
    k.c = (int32_t)x->dim[1];
    k.h = (int32_t)x->dim[2];
    k.w = (int32_t)x->dim[3];
    k.k = (int32_t)w->dim[0];
    k.r = (int32_t)w->dim[2];
    k.s = (int32_t)w->dim[3];
    k.p = (int32_t)y->dim[2];
    k.q = (int32_t)y->dim[3];
    k.stride = op->p.conv.stride;
    k.pad = op->p.conv.pad;
    k.deterministic = deterministic != 0;
    k.math = (int32_t)op->math;
    k.direct = (int32_t)pt_conv_direct(op);
    k.nhwc = pt_conv_nhwc(op);
    return k;
}

int pt_conv_key_equal(const pt_conv_key *a, const pt_conv_key *b)
{
    return memcmp(a, b, sizeof *a) == 0;
}

uint64_t pt_conv_key_hash(const pt_conv_key *k)
{
    const unsigned char *p = (const unsigned char *)k;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < sizeof *k; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

void pt_conv_key_format(const pt_conv_key *k, char *out, size_t cap)
{
    const char *dir = k->kind == PT_OP_CONV2D_FWD ? "fwd" : k->kind == PT_OP_CONV2D_BWD_DATA ? "bwd_data" : "bwd_filter";
    snprintf(out, cap, "%s x=%dx%dx%dx%d w=%dx%dx%dx%d y=%dx%d s=%d p=%d%s%s%s%s%s%s", dir, k->n, k->c, k->h, k->w, k->k,
             k->c, k->r, k->s, k->p, k->q, k->stride, k->pad, k->deterministic ? " deterministic" : "",
             k->math != PT_PREC_FP32 ? " math=" : "",
             k->math != PT_PREC_FP32 ? pt_precision_name((pt_precision)k->math) : "",
             k->direct & 1 ? " x=16-bit" : "", k->direct & 4 ? " y=16-bit" : "", k->nhwc ? " nhwc" : "");
}

void pt_algo_cache_init(pt_algo_cache *c)
{
    memset(c, 0, sizeof *c);
}

void pt_algo_cache_destroy(pt_algo_cache *c, void (*free_value)(void *value, void *user), void *user)
{
    for (size_t i = 0; i < c->cap; i++)
        if (c->values[i] && free_value) free_value(c->values[i], user);
    free(c->keys);
    free(c->values);
    memset(c, 0, sizeof *c);
}

static size_t slot_of(const pt_algo_cache *c, const pt_conv_key *key)
{
    size_t i = (size_t)pt_conv_key_hash(key) & (c->cap - 1);
    while (c->values[i] && !pt_conv_key_equal(&c->keys[i], key)) i = (i + 1) & (c->cap - 1);
    return i;
}

void *pt_algo_cache_find(pt_algo_cache *c, const pt_conv_key *key)
{
    c->lookups++;
    if (!c->cap) return NULL;
    void *v = c->values[slot_of(c, key)];
    if (v) c->hits++;
    return v;
}

static int grow(pt_algo_cache *c)
{
    size_t cap = c->cap ? 2 * c->cap : 64;
    pt_algo_cache n;
    memset(&n, 0, sizeof n);
    n.cap = cap;
    n.keys = calloc(cap, sizeof *n.keys);
    n.values = calloc(cap, sizeof *n.values);
    if (!n.keys || !n.values) {
        free(n.keys);
        free(n.values);
        return -1;
    }
    for (size_t i = 0; i < c->cap; i++) {
        if (!c->values[i]) continue;
        size_t j = slot_of(&n, &c->keys[i]);
        n.keys[j] = c->keys[i];
        n.values[j] = c->values[i];
    }
    n.count = c->count;
    n.lookups = c->lookups;
    n.hits = c->hits;
    free(c->keys);
    free(c->values);
    *c = n;
    return 0;
}

int pt_algo_cache_insert(pt_algo_cache *c, const pt_conv_key *key, void *value)
{
    if (!value) return -1;
    if ((c->count + 1) * 2 > c->cap && grow(c) != 0) return -1;
    size_t i = slot_of(c, key);
    if (c->values[i]) return 1;
    c->keys[i] = *key;
    c->values[i] = value;
    c->count++;
    return 0;
}
