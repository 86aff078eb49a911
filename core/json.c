/* Strict JSON: a recursive-descent parser into a pt_json tree, bounded in depth and node
 * count so a hostile header cannot exhaust the stack or memory, and pt_strbuf for writing.
 * Never trusts its input: every read is checked against the length, never past it. */
#include "core/json.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- UTF-8 */

/* Length of the well-formed UTF-8 sequence at s (n bytes available), or 0 if it is not. */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp_out)
{
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) {
        if (cp_out) *cp_out = c;
        return 1;
    }
    size_t len;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) {
        len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    if (cp_out) *cp_out = cp;
    return len;
}

int pt_utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t k = utf8_seq(u + i, len - i, NULL);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

static size_t utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---------------------------------------------------------------- parser */

typedef struct parser {
    const char *s;
    size_t len;
    size_t pos;
    int depth;
    size_t nodes;
    pt_json_limits lim;
    pt_error *err;
} parser;

/* A short printable rendering of a key for error messages (names come from the file). */
static void printable(char *out, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 4 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        out[o++] = (c >= 0x20 && c < 0x7F) || c >= 0x80 ? (char)c : '?';
    }
    if (o + 4 >= cap && n > o) {
        out[o++] = '.', out[o++] = '.', out[o++] = '.';
    }
    out[o] = '\0';
}

static pt_status fail_expected(parser *p, const char *what)
{
    if (p->pos >= p->len)
        return pt_fail(p->err, PT_ERR_FORMAT, "unexpected end of input at byte %zu: expected %s",
                       p->pos, what);
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c >= 0x20 && c < 0x7F)
        return pt_fail(p->err, PT_ERR_FORMAT, "expected %s at byte %zu, found '%c'", what, p->pos,
                       (char)c);
    return pt_fail(p->err, PT_ERR_FORMAT, "expected %s at byte %zu, found byte 0x%02x", what,
                   p->pos, c);
}

static void skip_ws(parser *p)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static void free_value(pt_json *v)
{
    if (v->type == PT_JSON_STRING) {
        free(v->str);
    } else if (v->type == PT_JSON_ARRAY) {
        for (size_t i = 0; i < v->count; i++) free_value(&v->items[i]);
        free(v->items);
    } else if (v->type == PT_JSON_OBJECT) {
        for (size_t i = 0; i < v->count; i++) {
            free(v->members[i].key);
            free_value(&v->members[i].value);
        }
        free(v->members);
    }
    memset(v, 0, sizeof *v);
}

static int hex4(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

/* Parses the string starting at the opening quote at p->pos into a malloc'd buffer. */
static pt_status parse_string(parser *p, char **out, size_t *out_len)
{
    size_t start = p->pos;
    if (p->pos >= p->len || p->s[p->pos] != '"') return fail_expected(p, "'\"'");
    p->pos++;
    /* Find the closing quote first: the decoded text is never longer than the raw text. */
    size_t end = p->pos;
    while (end < p->len && p->s[end] != '"') end += (p->s[end] == '\\') ? 2 : 1;
    if (end >= p->len)
        return pt_fail(p->err, PT_ERR_FORMAT,
                       "unterminated string starting at byte %zu (end of input at byte %zu)",
                       start, p->len);
    char *buf = malloc(end - p->pos + 1);
    if (!buf) return pt_fail(p->err, PT_ERR_NOMEM, "out of memory parsing a string at byte %zu", start);
    size_t o = 0;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '\\') {
            size_t esc = p->pos;
            char e = p->s[p->pos + 1];
            p->pos += 2;
            switch (e) {
            case '"': buf[o++] = '"'; break;
            case '\\': buf[o++] = '\\'; break;
            case '/': buf[o++] = '/'; break;
            case 'b': buf[o++] = '\b'; break;
            case 'f': buf[o++] = '\f'; break;
            case 'n': buf[o++] = '\n'; break;
            case 'r': buf[o++] = '\r'; break;
            case 't': buf[o++] = '\t'; break;
            case 'u': {
                uint32_t cp;
                if (end - p->pos < 4 || !hex4(p->s + p->pos, &cp)) {
                    free(buf);
                    return pt_fail(p->err, PT_ERR_FORMAT,
                                   "invalid \\u escape at byte %zu: expected 4 hex digits", esc);
                }
                p->pos += 4;
                if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    free(buf);
                    return pt_fail(p->err, PT_ERR_FORMAT,
                                   "invalid \\u escape at byte %zu: unpaired low surrogate", esc);
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    uint32_t lo;
                    if (end - p->pos < 6 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u' ||
                        !hex4(p->s + p->pos + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                        free(buf);
                        return pt_fail(p->err, PT_ERR_FORMAT,
                                       "invalid \\u escape at byte %zu: unpaired high surrogate",
                                       esc);
                    }
                    p->pos += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                o += utf8_encode(cp, buf + o);
                break;
            }
            default:
                free(buf);
                p->pos = esc + 1;
                return pt_fail(p->err, PT_ERR_FORMAT, "invalid escape '\\%c' at byte %zu",
                               (e >= 0x20 && e < 0x7F) ? e : '?', esc);
            }
        } else if (c < 0x20) {
            free(buf);
            return pt_fail(p->err, PT_ERR_FORMAT,
                           "control character 0x%02x in a string at byte %zu (must be escaped)", c,
                           p->pos);
        } else {
            size_t k = utf8_seq((const unsigned char *)p->s + p->pos, end - p->pos, NULL);
            if (!k) {
                free(buf);
                return pt_fail(p->err, PT_ERR_FORMAT, "invalid UTF-8 in a string at byte %zu",
                               p->pos);
            }
            memcpy(buf + o, p->s + p->pos, k);
            o += k;
            p->pos += k;
        }
    }
    p->pos = end + 1;
    buf[o] = '\0';
    *out = buf;
    *out_len = o;
    return PT_OK;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static pt_status parse_number(parser *p, pt_json *v)
{
    size_t start = p->pos, i = p->pos;
    int neg = 0, frac_or_exp = 0;
    if (i < p->len && p->s[i] == '-') neg = 1, i++;
    if (i >= p->len || !is_digit(p->s[i])) {
        p->pos = i;
        return fail_expected(p, "a digit");
    }
    if (p->s[i] == '0') {
        i++;
        if (i < p->len && is_digit(p->s[i]))
            return pt_fail(p->err, PT_ERR_FORMAT, "leading zero in a number at byte %zu", start);
    } else {
        while (i < p->len && is_digit(p->s[i])) i++;
    }
    size_t int_end = i;
    if (i < p->len && p->s[i] == '.') {
        frac_or_exp = 1;
        i++;
        if (i >= p->len || !is_digit(p->s[i])) {
            p->pos = i;
            return fail_expected(p, "a digit after '.'");
        }
        while (i < p->len && is_digit(p->s[i])) i++;
    }
    if (i < p->len && (p->s[i] == 'e' || p->s[i] == 'E')) {
        frac_or_exp = 1;
        i++;
        if (i < p->len && (p->s[i] == '+' || p->s[i] == '-')) i++;
        if (i >= p->len || !is_digit(p->s[i])) {
            p->pos = i;
            return fail_expected(p, "a digit in the exponent");
        }
        while (i < p->len && is_digit(p->s[i])) i++;
    }
    p->pos = i;
    v->type = PT_JSON_NUMBER;

    /* Integers are converted digit by digit: exact, and no detour through double. */
    int int_overflow = 0;
    if (!frac_or_exp) {
        /* non-negative ones up to UINT64_MAX: seeds use the whole 64-bit range */
        uint64_t acc = 0, limit = neg ? (uint64_t)INT64_MAX + 1u : UINT64_MAX;
        for (size_t k = start + (size_t)neg; k < int_end; k++) {
            unsigned d = (unsigned)(p->s[k] - '0');
            if (acc > (limit - d) / 10) {
                int_overflow = 1;
                break;
            }
            acc = acc * 10 + d;
        }
        if (!int_overflow && !neg && acc > (uint64_t)INT64_MAX) {
            v->is_uint = 1;
            v->uinteger = acc;
            v->number = (double)acc;
            return PT_OK;
        }
        if (!int_overflow) {
            v->is_int = 1;
            v->integer = neg ? (acc == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)acc)
                             : (int64_t)acc;
            v->number = (double)v->integer;
            v->is_uint = !neg;
            v->uinteger = neg ? 0 : acc;
            return PT_OK;
        }
    }

    /* strtod follows LC_NUMERIC, so swap '.' for the locale's decimal point. */
    char buf[512];
    const char *dp = localeconv()->decimal_point;
    size_t dpl = (dp && dp[0]) ? strlen(dp) : 1;
    if (i - start + dpl >= sizeof buf)
        return pt_fail(p->err, PT_ERR_FORMAT, "number too long at byte %zu (%zu characters)", start,
                       i - start);
    size_t o = 0;
    for (size_t k = start; k < i; k++) {
        if (p->s[k] == '.' && dp && dp[0]) {
            memcpy(buf + o, dp, dpl);
            o += dpl;
        } else {
            buf[o++] = p->s[k];
        }
    }
    buf[o] = '\0';
    errno = 0;
    double d = strtod(buf, NULL);
    if (!isfinite(d))
        return pt_fail(p->err, PT_ERR_FORMAT, "number out of range at byte %zu", start);
    v->number = d;
    if (d == floor(d) && fabs(d) <= 9007199254740992.0) {
        v->is_int = 1;
        v->integer = (int64_t)d;
        v->is_uint = d >= 0;
        v->uinteger = d >= 0 ? (uint64_t)d : 0;
    }
    return PT_OK;
}

static int key_cmp(const void *a, const void *b)
{
    const pt_json_member *x = *(const pt_json_member *const *)a;
    const pt_json_member *y = *(const pt_json_member *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    if (c) return c;
    return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

/* Sorting keeps the duplicate check O(n log n) for a header with a million keys. */
static pt_status check_duplicates(parser *p, const pt_json *obj, const size_t *key_offsets)
{
    if (obj->count < 2) return PT_OK;
    const pt_json_member **idx = malloc(obj->count * sizeof *idx);
    if (!idx) return pt_fail(p->err, PT_ERR_NOMEM, "out of memory checking object keys");
    for (size_t i = 0; i < obj->count; i++) idx[i] = &obj->members[i];
    qsort(idx, obj->count, sizeof *idx, key_cmp);
    for (size_t i = 1; i < obj->count; i++) {
        if (key_cmp(&idx[i - 1], &idx[i]) == 0) {
            size_t a = (size_t)(idx[i - 1] - obj->members), b = (size_t)(idx[i] - obj->members);
            size_t second = a > b ? a : b;
            char name[80];
            printable(name, sizeof name, idx[i]->key, idx[i]->key_len);
            free(idx);
            return pt_fail(p->err, PT_ERR_FORMAT, "duplicate key '%s' at byte %zu", name,
                           key_offsets[second]);
        }
    }
    free(idx);
    return PT_OK;
}

static pt_status parse_value(parser *p, pt_json *v);

static pt_status grow(parser *p, void **arr, size_t *cap, size_t elem)
{
    size_t ncap = *cap ? *cap * 2 : 4;
    if (ncap > SIZE_MAX / elem) return pt_fail(p->err, PT_ERR_NOMEM, "out of memory at byte %zu", p->pos);
    void *n = realloc(*arr, ncap * elem);
    if (!n) return pt_fail(p->err, PT_ERR_NOMEM, "out of memory at byte %zu", p->pos);
    *arr = n;
    *cap = ncap;
    return PT_OK;
}

static pt_status parse_array(parser *p, pt_json *v)
{
    size_t cap = 0;
    v->type = PT_JSON_ARRAY;
    p->pos++; /* '[' */
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ']') {
        p->pos++;
        return PT_OK;
    }
    for (;;) {
        if (v->count == cap) {
            void *items = v->items;
            pt_status st = grow(p, &items, &cap, sizeof(pt_json));
            v->items = items;
            if (st) return st;
        }
        pt_json *item = &v->items[v->count];
        memset(item, 0, sizeof *item);
        PT_TRY(parse_value(p, item));
        v->count++;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == ']') {
            p->pos++;
            return PT_OK;
        }
        return fail_expected(p, "',' or ']'");
    }
}

static pt_status parse_object(parser *p, pt_json *v)
{
    size_t cap = 0, ocap = 0;
    size_t *key_offsets = NULL;
    pt_status st = PT_OK;
    v->type = PT_JSON_OBJECT;
    p->pos++; /* '{' */
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == '}') {
        p->pos++;
        return PT_OK;
    }
    for (;;) {
        if (v->count == cap) {
            void *m = v->members;
            st = grow(p, &m, &cap, sizeof(pt_json_member));
            v->members = m;
            if (st) goto done;
        }
        if (v->count == ocap) {
            void *k = key_offsets;
            st = grow(p, &k, &ocap, sizeof(size_t));
            key_offsets = k;
            if (st) goto done;
        }
        pt_json_member *m = &v->members[v->count];
        memset(m, 0, sizeof *m);
        skip_ws(p);
        if (p->pos >= p->len || p->s[p->pos] != '"') {
            st = fail_expected(p, "a string key");
            goto done;
        }
        key_offsets[v->count] = p->pos;
        st = parse_string(p, &m->key, &m->key_len);
        if (st) goto done;
        skip_ws(p);
        if (p->pos >= p->len || p->s[p->pos] != ':') {
            free(m->key);
            st = fail_expected(p, "':'");
            goto done;
        }
        p->pos++;
        st = parse_value(p, &m->value);
        if (st) {
            free(m->key);
            goto done;
        }
        v->count++;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == '}') {
            p->pos++;
            st = check_duplicates(p, v, key_offsets);
            goto done;
        }
        st = fail_expected(p, "',' or '}'");
        goto done;
    }
done:
    free(key_offsets);
    return st;
}

static int match_word(parser *p, const char *w)
{
    size_t n = strlen(w);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, w, n) != 0) return 0;
    p->pos += n;
    return 1;
}

/* On failure v is left empty (everything it owned is freed). */
static pt_status parse_value(parser *p, pt_json *v)
{
    memset(v, 0, sizeof *v);
    skip_ws(p);
    v->offset = p->pos;
    if (++p->nodes > p->lim.max_nodes)
        return pt_fail(p->err, PT_ERR_FORMAT, "more than %zu values at byte %zu", p->lim.max_nodes,
                       p->pos);
    if (p->pos >= p->len) return fail_expected(p, "a value");
    pt_status st;
    switch (p->s[p->pos]) {
    case '{':
    case '[':
        if (p->depth >= p->lim.max_depth)
            return pt_fail(p->err, PT_ERR_FORMAT, "nesting deeper than %d levels at byte %zu",
                           p->lim.max_depth, p->pos);
        p->depth++;
        st = p->s[p->pos] == '{' ? parse_object(p, v) : parse_array(p, v);
        p->depth--;
        break;
    case '"':
        v->type = PT_JSON_STRING;
        st = parse_string(p, &v->str, &v->str_len);
        break;
    case 't':
    case 'f':
    case 'n':
        if (match_word(p, "true")) {
            v->type = PT_JSON_BOOL, v->boolean = 1;
        } else if (match_word(p, "false")) {
            v->type = PT_JSON_BOOL;
        } else if (match_word(p, "null")) {
            v->type = PT_JSON_NULL;
        } else {
            return fail_expected(p, "a value");
        }
        return PT_OK;
    default:
        if (p->s[p->pos] == '-' || is_digit(p->s[p->pos])) {
            st = parse_number(p, v);
        } else {
            return fail_expected(p, "a value");
        }
    }
    if (st) {
        size_t off = v->offset;
        free_value(v);
        v->offset = off;
    }
    return st;
}

pt_status pt_json_parse(const char *text, size_t len, const pt_json_limits *limits,
                        pt_json **out, pt_error *err)
{
    *out = NULL;
    parser p = {.s = text, .len = len, .err = err};
    p.lim.max_depth = limits && limits->max_depth > 0 ? limits->max_depth : PT_JSON_DEFAULT_MAX_DEPTH;
    p.lim.max_nodes = limits && limits->max_nodes > 0 ? limits->max_nodes : PT_JSON_DEFAULT_MAX_NODES;
    if (!text && len) return pt_fail(err, PT_ERR_INVALID, "pt_json_parse: NULL text");
    pt_json *root = calloc(1, sizeof *root);
    if (!root) return pt_fail(err, PT_ERR_NOMEM, "out of memory parsing JSON");
    pt_status st = parse_value(&p, root);
    if (st == PT_OK) {
        skip_ws(&p);
        if (p.pos != p.len)
            st = pt_fail(err, PT_ERR_FORMAT, "unexpected characters after the JSON value at byte %zu",
                         p.pos);
    }
    if (st) {
        pt_json_free(root);
        return st;
    }
    *out = root;
    return PT_OK;
}

void pt_json_free(pt_json *root)
{
    if (!root) return;
    free_value(root);
    free(root);
}

const char *pt_json_type_name(pt_json_type t)
{
    switch (t) {
    case PT_JSON_NULL: return "null";
    case PT_JSON_BOOL: return "boolean";
    case PT_JSON_NUMBER: return "number";
    case PT_JSON_STRING: return "string";
    case PT_JSON_ARRAY: return "array";
    case PT_JSON_OBJECT: return "object";
    }
    return "unknown";
}

/* ---------------------------------------------------------------- lookup */

const pt_json *pt_json_get(const pt_json *obj, const char *key)
{
    if (!obj || obj->type != PT_JSON_OBJECT || !key) return NULL;
    size_t n = strlen(key);
    for (size_t i = 0; i < obj->count; i++) {
        const pt_json_member *m = &obj->members[i];
        if (m->key_len == n && memcmp(m->key, key, n) == 0) return &m->value;
    }
    return NULL;
}

size_t pt_json_len(const pt_json *v)
{
    if (!v || (v->type != PT_JSON_ARRAY && v->type != PT_JSON_OBJECT)) return 0;
    return v->count;
}

const pt_json *pt_json_at(const pt_json *arr, size_t i)
{
    if (!arr || arr->type != PT_JSON_ARRAY || i >= arr->count) return NULL;
    return &arr->items[i];
}

static pt_status get_typed(const pt_json *obj, const char *key, pt_json_type want,
                           const char *want_name, const pt_json **out, pt_error *err)
{
    if (!obj || obj->type != PT_JSON_OBJECT)
        return pt_fail(err, PT_ERR_FORMAT, "looking up key '%s': not an object", key);
    const pt_json *v = pt_json_get(obj, key);
    if (!v) return pt_fail(err, PT_ERR_FORMAT, "missing key '%s'", key);
    if (v->type != want)
        return pt_fail(err, PT_ERR_FORMAT, "key '%s': expected %s, got %s", key, want_name,
                       pt_json_type_name(v->type));
    *out = v;
    return PT_OK;
}

pt_status pt_json_get_string(const pt_json *obj, const char *key, const char **out, pt_error *err)
{
    const pt_json *v = NULL;
    PT_TRY(get_typed(obj, key, PT_JSON_STRING, "a string", &v, err));
    *out = v->str;
    return PT_OK;
}

pt_status pt_json_get_int64(const pt_json *obj, const char *key, int64_t *out, pt_error *err)
{
    const pt_json *v = NULL;
    PT_TRY(get_typed(obj, key, PT_JSON_NUMBER, "an integer", &v, err));
    if (!v->is_int)
        return pt_fail(err, PT_ERR_FORMAT, "key '%s': expected an integer, got %.17g", key,
                       v->number);
    *out = v->integer;
    return PT_OK;
}

pt_status pt_json_get_double(const pt_json *obj, const char *key, double *out, pt_error *err)
{
    const pt_json *v = NULL;
    PT_TRY(get_typed(obj, key, PT_JSON_NUMBER, "a number", &v, err));
    *out = v->number;
    return PT_OK;
}

pt_status pt_json_get_bool(const pt_json *obj, const char *key, int *out, pt_error *err)
{
    const pt_json *v = NULL;
    PT_TRY(get_typed(obj, key, PT_JSON_BOOL, "true or false", &v, err));
    *out = v->boolean;
    return PT_OK;
}

/* ---------------------------------------------------------------- writer */

void pt_strbuf_init(pt_strbuf *sb) { memset(sb, 0, sizeof *sb); }

void pt_strbuf_free(pt_strbuf *sb)
{
    free(sb->data);
    memset(sb, 0, sizeof *sb);
}

pt_status pt_strbuf_check(const pt_strbuf *sb, pt_error *err)
{
    if (sb->failed)
        return pt_fail(err, PT_ERR_NOMEM, "out of memory building a text of %zu bytes", sb->len);
    return PT_OK;
}

static pt_status reserve(pt_strbuf *sb, size_t extra)
{
    if (sb->failed) return PT_ERR_NOMEM;
    if (extra > SIZE_MAX - sb->len - 1) {
        sb->failed = 1;
        return PT_ERR_NOMEM;
    }
    size_t need = sb->len + extra + 1;
    if (need <= sb->cap) return PT_OK;
    size_t ncap = sb->cap ? sb->cap : 64;
    while (ncap < need) ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    char *n = realloc(sb->data, ncap);
    if (!n) {
        sb->failed = 1;
        return PT_ERR_NOMEM;
    }
    sb->data = n;
    sb->cap = ncap;
    return PT_OK;
}

pt_status pt_strbuf_append(pt_strbuf *sb, const char *s, size_t n)
{
    PT_TRY(reserve(sb, n));
    if (n) memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
    return PT_OK;
}

pt_status pt_strbuf_puts(pt_strbuf *sb, const char *s) { return pt_strbuf_append(sb, s, strlen(s)); }

pt_status pt_strbuf_putc(pt_strbuf *sb, char c) { return pt_strbuf_append(sb, &c, 1); }

pt_status pt_strbuf_printf(pt_strbuf *sb, const char *fmt, ...)
{
    if (sb->failed) return PT_ERR_NOMEM;
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        sb->failed = 1;
        return PT_ERR_NOMEM;
    }
    if ((size_t)n < sizeof small) return pt_strbuf_append(sb, small, (size_t)n);
    PT_TRY(reserve(sb, (size_t)n));
    va_start(ap, fmt);
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
    return PT_OK;
}

pt_status pt_strbuf_json_string_n(pt_strbuf *sb, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    PT_TRY(pt_strbuf_putc(sb, '"'));
    size_t i = 0;
    while (i < n) {
        unsigned char c = u[i];
        if (c >= 0x80) {
            size_t k = utf8_seq(u + i, n - i, NULL);
            if (k) {
                PT_TRY(pt_strbuf_append(sb, s + i, k));
                i += k;
            } else {
                PT_TRY(pt_strbuf_append(sb, "\xEF\xBF\xBD", 3)); /* U+FFFD */
                i++;
            }
            continue;
        }
        i++;
        switch (c) {
        case '"': PT_TRY(pt_strbuf_append(sb, "\\\"", 2)); break;
        case '\\': PT_TRY(pt_strbuf_append(sb, "\\\\", 2)); break;
        case '\n': PT_TRY(pt_strbuf_append(sb, "\\n", 2)); break;
        case '\r': PT_TRY(pt_strbuf_append(sb, "\\r", 2)); break;
        case '\t': PT_TRY(pt_strbuf_append(sb, "\\t", 2)); break;
        case '\b': PT_TRY(pt_strbuf_append(sb, "\\b", 2)); break;
        case '\f': PT_TRY(pt_strbuf_append(sb, "\\f", 2)); break;
        default:
            if (c < 0x20) PT_TRY(pt_strbuf_printf(sb, "\\u%04x", c));
            else PT_TRY(pt_strbuf_putc(sb, (char)c));
        }
    }
    return pt_strbuf_putc(sb, '"');
}

pt_status pt_strbuf_json_string(pt_strbuf *sb, const char *s)
{
    return pt_strbuf_json_string_n(sb, s, strlen(s));
}

pt_status pt_strbuf_json_int(pt_strbuf *sb, int64_t v)
{
    return pt_strbuf_printf(sb, "%lld", (long long)v);
}

/* Fewest digits (from min_prec up) that read back to the same value, then the locale's
 * decimal point replaced by '.'. */
static pt_status put_real(pt_strbuf *sb, double v, int is_float)
{
    if (!isfinite(v)) return pt_strbuf_puts(sb, "null");
    char buf[64];
    int lo = is_float ? 6 : 15, hi = is_float ? 9 : 17;
    for (int prec = lo; prec <= hi; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        double back = strtod(buf, NULL);
        if (is_float ? (float)back == (float)v : back == v) break;
    }
    const char *dp = localeconv()->decimal_point;
    char out[80];
    size_t o = 0, dpl = (dp && dp[0]) ? strlen(dp) : 0;
    for (size_t i = 0; buf[i] && o + 1 < sizeof out;) {
        if (dpl && strncmp(buf + i, dp, dpl) == 0) {
            out[o++] = '.';
            i += dpl;
        } else {
            out[o++] = buf[i++];
        }
    }
    out[o] = '\0';
    return pt_strbuf_append(sb, out, o);
}

pt_status pt_strbuf_json_double(pt_strbuf *sb, double v) { return put_real(sb, v, 0); }

pt_status pt_strbuf_json_float(pt_strbuf *sb, float v) { return put_real(sb, (double)v, 1); }

pt_status pt_strbuf_json_value(pt_strbuf *sb, const pt_json *v)
{
    if (!v) return pt_strbuf_puts(sb, "null");
    switch (v->type) {
    case PT_JSON_NULL: return pt_strbuf_puts(sb, "null");
    case PT_JSON_BOOL: return pt_strbuf_puts(sb, v->boolean ? "true" : "false");
    case PT_JSON_NUMBER:
        if (v->is_int) return pt_strbuf_json_int(sb, v->integer);
        if (v->is_uint) return pt_strbuf_printf(sb, "%llu", (unsigned long long)v->uinteger);
        return pt_strbuf_json_double(sb, v->number);
    case PT_JSON_STRING: return pt_strbuf_json_string_n(sb, v->str, v->str_len);
    case PT_JSON_ARRAY:
        PT_TRY(pt_strbuf_putc(sb, '['));
        for (size_t i = 0; i < v->count; i++) {
            if (i) PT_TRY(pt_strbuf_putc(sb, ','));
            PT_TRY(pt_strbuf_json_value(sb, &v->items[i]));
        }
        return pt_strbuf_putc(sb, ']');
    case PT_JSON_OBJECT:
        PT_TRY(pt_strbuf_putc(sb, '{'));
        for (size_t i = 0; i < v->count; i++) {
            if (i) PT_TRY(pt_strbuf_putc(sb, ','));
            PT_TRY(pt_strbuf_json_string_n(sb, v->members[i].key, v->members[i].key_len));
            PT_TRY(pt_strbuf_putc(sb, ':'));
            PT_TRY(pt_strbuf_json_value(sb, &v->members[i].value));
        }
        return pt_strbuf_putc(sb, '}');
    }
    return PT_OK;
}
