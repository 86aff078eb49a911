/* The protobuf wire-format encoder (see protobuf.h): little-endian base-128 varints, tags
 * (field << 3 | wire type), fixed32 floats and length-prefixed payloads. */
#include "core/protobuf.h"

#include <stdlib.h>
#include <string.h>

void pt_pb_free(pt_pb *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

void pt_pb_reset(pt_pb *b) { b->len = 0; }

pt_status pt_pb_check(const pt_pb *b, pt_error *err)
{
    return b->failed ? pt_fail(err, PT_ERR_NOMEM, "out of host memory encoding a protobuf message") : PT_OK;
}

static int reserve(pt_pb *b, size_t n)
{
    if (b->failed) return 0;
    if (n > SIZE_MAX / 2 - b->len) {
        b->failed = 1;
        return 0;
    }
    if (b->len + n <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p) {
        b->failed = 1;
        return 0;
    }
    b->data = p;
    b->cap = cap;
    return 1;
}

size_t pt_pb_varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

void pt_pb_raw(pt_pb *b, const void *p, size_t n)
{
    if (!n || !reserve(b, n)) return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void pt_pb_varint(pt_pb *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    while (v >= 0x80) {
        tmp[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    tmp[n++] = (uint8_t)v;
    pt_pb_raw(b, tmp, n);
}

void pt_pb_tag(pt_pb *b, int field, int wire) { pt_pb_varint(b, ((uint64_t)(uint32_t)field << 3) | (uint64_t)wire); }

void pt_pb_int(pt_pb *b, int field, int64_t v)
{
    pt_pb_tag(b, field, PT_PB_VARINT);
    pt_pb_varint(b, (uint64_t)v);
}

void pt_pb_float(pt_pb *b, int field, float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    const uint8_t le[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    pt_pb_tag(b, field, PT_PB_FIXED32);
    pt_pb_raw(b, le, sizeof le);
}

void pt_pb_len_prefix(pt_pb *b, int field, size_t n)
{
    pt_pb_tag(b, field, PT_PB_LEN);
    pt_pb_varint(b, (uint64_t)n);
}

size_t pt_pb_len_field_size(int field, size_t n)
{
    return pt_pb_varint_size((uint64_t)(uint32_t)field << 3) + pt_pb_varint_size((uint64_t)n) + n;
}

void pt_pb_bytes(pt_pb *b, int field, const void *p, size_t n)
{
    pt_pb_len_prefix(b, field, n);
    pt_pb_raw(b, p, n);
}

void pt_pb_string(pt_pb *b, int field, const char *s) { pt_pb_bytes(b, field, s, strlen(s)); }

void pt_pb_message(pt_pb *b, int field, const pt_pb *sub)
{
    if (sub->failed) {
        b->failed = 1;
        return;
    }
    pt_pb_bytes(b, field, sub->data, sub->len);
}
