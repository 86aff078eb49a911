/* A minimal Protocol Buffers encoder: the wire format (varints, fixed32, length-delimited
 * fields) into a growing byte buffer, enough to write messages such as ONNX models without a
 * protobuf library. It only encodes; it knows no schema and never reads. */
#ifndef PT_PROTOBUF_H
#define PT_PROTOBUF_H

#include <stddef.h>
#include <stdint.h>

#include "polytrain/status.h"

/* Wire types of the protobuf encoding. */
enum { PT_PB_VARINT = 0, PT_PB_FIXED64 = 1, PT_PB_LEN = 2, PT_PB_FIXED32 = 5 };

/* A growing byte buffer. Zero-initialise it. An allocation failure makes it sticky-failed:
 * later appends do nothing and pt_pb_check reports it, so a message can be built without
 * checking every call. */
typedef struct pt_pb {
    uint8_t *data;
    size_t len, cap;
    int failed;
} pt_pb;

void pt_pb_free(pt_pb *b);
/* Forgets the content, keeps the memory (for building many small messages in one buffer). */
void pt_pb_reset(pt_pb *b);
pt_status pt_pb_check(const pt_pb *b, pt_error *err);

/* Bytes the varint encoding of v takes (1..10). */
size_t pt_pb_varint_size(uint64_t v);
void pt_pb_raw(pt_pb *b, const void *p, size_t n);
void pt_pb_varint(pt_pb *b, uint64_t v);
void pt_pb_tag(pt_pb *b, int field, int wire);

/* One field each. int64 and int32 fields are varints of the two's complement (a negative
 * value takes 10 bytes), as protobuf's int32/int64/enum types are encoded; float is fixed32. */
void pt_pb_int(pt_pb *b, int field, int64_t v);
void pt_pb_float(pt_pb *b, int field, float v);
void pt_pb_bytes(pt_pb *b, int field, const void *p, size_t n);
void pt_pb_string(pt_pb *b, int field, const char *s);
/* A length-delimited field holding the message encoded in sub. */
void pt_pb_message(pt_pb *b, int field, const pt_pb *sub);
/* The tag and length of a length-delimited field of n bytes whose payload the caller
 * places right after (written from elsewhere, e.g. a large tensor written without a copy). */
void pt_pb_len_prefix(pt_pb *b, int field, size_t n);
/* Bytes a length-delimited field with an n-byte payload takes in all. */
size_t pt_pb_len_field_size(int field, size_t n);

#endif
