/* libFuzzer harness: the JSON reader (pt_json_parse, behind safetensors headers,
 * config.json and the jsonl logs) on arbitrary text, under the default limits and tight
 * ones. An accepted document is walked, written back with the JSON writer and parsed again:
 * the second parse must succeed and give the same tree. */
#include "fuzz_util.h"

#include <math.h>

#include "core/json.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

/* a and b hold the same values (numbers: the writer's round trip is exact for finite ones) */
static int same(const pt_json *a, const pt_json *b)
{
    if (a->type != b->type) return 0;
    switch (a->type) {
    case PT_JSON_OBJECT:
        if (a->count != b->count) return 0;
        for (size_t i = 0; i < a->count; i++)
            if (a->members[i].key_len != b->members[i].key_len ||
                memcmp(a->members[i].key, b->members[i].key, a->members[i].key_len) != 0 ||
                !same(&a->members[i].value, &b->members[i].value))
                return 0;
        return 1;
    case PT_JSON_ARRAY:
        if (a->count != b->count) return 0;
        for (size_t i = 0; i < a->count; i++)
            if (!same(&a->items[i], &b->items[i])) return 0;
        return 1;
    case PT_JSON_STRING: return a->str_len == b->str_len && memcmp(a->str, b->str, a->str_len) == 0;
    case PT_JSON_NUMBER:
        if (a->is_int && b->is_int && a->integer != b->integer) return 0;
        return a->number == b->number;
    case PT_JSON_BOOL: return a->boolean == b->boolean;
    case PT_JSON_NULL: return 1;
    }
    return 0;
}

static int has_inf(const pt_json *v)
{
    if (v->type == PT_JSON_NUMBER) return !isfinite(v->number);
    size_t n = v->type == PT_JSON_OBJECT || v->type == PT_JSON_ARRAY ? v->count : 0;
    for (size_t i = 0; i < n; i++)
        if (has_inf(v->type == PT_JSON_OBJECT ? &v->members[i].value : &v->items[i])) return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    pt_json *root = NULL;
    pt_error e;
    pt_error_clear(&e);
    pt_status s = pt_json_parse(text, size, NULL, &root, &e);
    fuzz_check_error(s, &e);
    if (s == PT_OK) {
        if (!pt_utf8_valid(text, size)) abort(); /* accepted bad UTF-8 */
        pt_strbuf sb;
        pt_strbuf_init(&sb);
        pt_strbuf_json_value(&sb, root);
        if (pt_strbuf_check(&sb, &e) == PT_OK && !has_inf(root)) {
            pt_json *again = NULL;
            if (pt_json_parse(sb.data, sb.len, NULL, &again, &e) != PT_OK) {
                fuzz_fail("the written JSON does not parse: %s\n%s", e.msg, sb.data);
            }
            if (!same(root, again)) {
                fuzz_fail("the written JSON parses to another tree:\n%s", sb.data);
            }
            pt_json_free(again);
        }
        pt_strbuf_free(&sb);
        /* the getters on whatever the top level is */
        const char *str;
        int64_t i64;
        double d;
        int b;
        for (size_t i = 0; root->type == PT_JSON_OBJECT && i < root->count; i++) {
            const char *k = root->members[i].key;
            if (pt_json_get(root, k) == NULL && strlen(k) == root->members[i].key_len) abort();
            pt_json_get_string(root, k, &str, NULL);
            pt_json_get_int64(root, k, &i64, NULL);
            pt_json_get_double(root, k, &d, NULL);
            pt_json_get_bool(root, k, &b, NULL);
        }
        for (size_t i = 0; i < pt_json_len(root) + 1; i++) (void)pt_json_at(root, i);
        pt_json_free(root);
    }
    /* tight limits: depth and node count errors on the way out of deep trees */
    pt_json_limits lim = {size % 5 + 1, size % 17 + 1};
    root = NULL;
    s = pt_json_parse(text, size, &lim, &root, &e);
    fuzz_check_error(s, &e);
    pt_json_free(root);
    return 0;
}
