/* A small strict JSON reader (text -> tree, with depth and size limits and byte-offset
 * error messages) and a growing string buffer for writing JSON. Used for safetensors
 * headers, config.json and metrics.jsonl. It never accepts anything RFC 8259 rejects. */
#ifndef PT_JSON_H
#define PT_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "polytrain/status.h"

typedef enum pt_json_type {
    PT_JSON_NULL = 0,
    PT_JSON_BOOL,
    PT_JSON_NUMBER,
    PT_JSON_STRING,
    PT_JSON_ARRAY,
    PT_JSON_OBJECT
} pt_json_type;

typedef struct pt_json pt_json;
typedef struct pt_json_member pt_json_member;

/* One parsed value. Read-only for callers; the tree is freed as a whole by pt_json_free. */
struct pt_json {
    pt_json_type type;
    size_t offset;   /* byte offset of the value's first character in the source text */
    int boolean;     /* PT_JSON_BOOL */
    double number;   /* PT_JSON_NUMBER: nearest double */
    int is_int;      /* PT_JSON_NUMBER: 1 if the value is integral and `integer` holds it exactly */
    int64_t integer; /* valid when is_int */
    int is_uint;     /* PT_JSON_NUMBER: 1 if written as a non-negative integer up to UINT64_MAX */
    uint64_t uinteger; /* valid when is_uint (exact, also past INT64_MAX where is_int is 0) */
    char *str;       /* PT_JSON_STRING: UTF-8, NUL-terminated; may contain NUL via \u0000 */
    size_t str_len;  /* length in bytes, without the terminator */
    size_t count;    /* PT_JSON_ARRAY: items; PT_JSON_OBJECT: members */
    pt_json *items;  /* PT_JSON_ARRAY */
    pt_json_member *members; /* PT_JSON_OBJECT, in document order, keys unique */
};

struct pt_json_member {
    char *key; /* UTF-8, NUL-terminated */
    size_t key_len;
    pt_json value;
};

typedef struct pt_json_limits {
    int max_depth;    /* nesting of arrays/objects; the top-level value is depth 1 */
    size_t max_nodes; /* values in the whole document (members count their value only) */
} pt_json_limits;

#define PT_JSON_DEFAULT_MAX_DEPTH 64
#define PT_JSON_DEFAULT_MAX_NODES ((size_t)1 << 20)

/* Parses exactly one JSON value surrounded by optional whitespace. Rejects trailing
 * characters, duplicate object keys, invalid UTF-8, lone surrogates, control characters
 * in strings, leading zeros, NaN/Infinity. limits may be NULL (defaults above).
 * Errors are PT_ERR_FORMAT ("expected ':' at byte 57") or PT_ERR_NOMEM. */
pt_status pt_json_parse(const char *text, size_t len, const pt_json_limits *limits,
                        pt_json **out, pt_error *err);
void pt_json_free(pt_json *root);

const char *pt_json_type_name(pt_json_type t);

/* Member of an object by key, or NULL (also when obj is NULL or not an object). */
const pt_json *pt_json_get(const pt_json *obj, const char *key);
/* Items of an array (members of an object); 0 for other types. */
size_t pt_json_len(const pt_json *v);
/* Item i of an array, or NULL if out of range or not an array. */
const pt_json *pt_json_at(const pt_json *arr, size_t i);

/* Typed getters on an object member: PT_ERR_FORMAT "missing key 'k'" or
 * "key 'k': expected a string, got number" (the caller wraps it with the file name). */
pt_status pt_json_get_string(const pt_json *obj, const char *key, const char **out, pt_error *err);
pt_status pt_json_get_int64(const pt_json *obj, const char *key, int64_t *out, pt_error *err);
pt_status pt_json_get_double(const pt_json *obj, const char *key, double *out, pt_error *err);
pt_status pt_json_get_bool(const pt_json *obj, const char *key, int *out, pt_error *err);

/* 1 if s[0..len) is well-formed UTF-8 (no overlongs, surrogates or code points > U+10FFFF). */
int pt_utf8_valid(const char *s, size_t len);

/* ---- writing ---- */

/* A growing NUL-terminated string. Zero-initialise it (or pt_strbuf_init). An allocation
 * failure makes the buffer sticky-failed: later appends do nothing, and pt_strbuf_check
 * reports it, so a writer can append freely and check once at the end. */
typedef struct pt_strbuf {
    char *data; /* NULL until something is appended */
    size_t len;
    size_t cap;
    int failed;
} pt_strbuf;

void pt_strbuf_init(pt_strbuf *sb);
void pt_strbuf_free(pt_strbuf *sb);
/* PT_OK, or PT_ERR_NOMEM with a message if any append failed. */
pt_status pt_strbuf_check(const pt_strbuf *sb, pt_error *err);
pt_status pt_strbuf_append(pt_strbuf *sb, const char *s, size_t n);
pt_status pt_strbuf_puts(pt_strbuf *sb, const char *s);
pt_status pt_strbuf_putc(pt_strbuf *sb, char c);
pt_status pt_strbuf_printf(pt_strbuf *sb, const char *fmt, ...) PT_PRINTF(2, 3);
/* "s" with JSON escapes (\" \\ \n \t \uXXXX for other controls). Bytes that are not valid
 * UTF-8 are written as U+FFFD, so the output is always valid JSON; callers that must not
 * lose information check pt_utf8_valid first. */
pt_status pt_strbuf_json_string(pt_strbuf *sb, const char *s);
pt_status pt_strbuf_json_string_n(pt_strbuf *sb, const char *s, size_t n);
pt_status pt_strbuf_json_int(pt_strbuf *sb, int64_t v);
/* Shortest-safe round trip: %.17g for doubles, %.9g for float values. JSON has no NaN or
 * infinity: those are written as null. Independent of the C locale's decimal point. */
pt_status pt_strbuf_json_double(pt_strbuf *sb, double v);
pt_status pt_strbuf_json_float(pt_strbuf *sb, float v);
/* A parsed value written back as compact JSON (NULL writes null): keys and members in their
 * order, integers exactly (up to UINT64_MAX), strings with their exact bytes. */
pt_status pt_strbuf_json_value(pt_strbuf *sb, const pt_json *v);

#endif
