/* core/json: the strict parser accepts what RFC 8259 accepts, rejects every malformed class
 * with a byte offset, and the pt_strbuf writer produces text the parser reads back exactly. */
#include <locale.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/json.h"
#include "pt_test.h"

static uint64_t rng_state;
static uint64_t next_rand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static pt_json *parse_ok(const char *text)
{
    pt_json *j = NULL;
    pt_error e = {0};
    pt_status st = pt_json_parse(text, strlen(text), NULL, &j, &e);
    CHECKF(st == PT_OK, "parse of %s failed: %s", text, e.msg);
    return j;
}

/* Parsing must fail with PT_ERR_FORMAT and a message containing want. */
static void reject(const char *text, size_t len, const char *want)
{
    pt_json *j = (pt_json *)0x1;
    pt_error e = {0};
    pt_status st = pt_json_parse(text, len, NULL, &j, &e);
    CHECKF(st == PT_ERR_FORMAT, "'%.*s' was accepted (status %d)", (int)(len > 60 ? 60 : len), text, st);
    CHECKF(j == NULL, "output not cleared for '%.40s'", text);
    CHECKF(strstr(e.msg, want) != NULL, "'%.40s': message '%s' lacks '%s'", text, e.msg, want);
}

static void test_parses_nested_document_in_order(void)
{
    pt_json *j = parse_ok(" {\"b\": [1, 2.5, \"x\", true, false, null, {}], \"a\": {\"c\": []}} ");
    if (!j) return;
    CHECK(j->type == PT_JSON_OBJECT && j->count == 2);
    CHECK(strcmp(j->members[0].key, "b") == 0 && strcmp(j->members[1].key, "a") == 0);
    const pt_json *b = pt_json_get(j, "b");
    CHECK(b && b->type == PT_JSON_ARRAY && pt_json_len(b) == 7);
    CHECK(pt_json_at(b, 0)->is_int && pt_json_at(b, 0)->integer == 1);
    CHECK(pt_json_at(b, 1)->type == PT_JSON_NUMBER && !pt_json_at(b, 1)->is_int &&
          pt_json_at(b, 1)->number == 2.5);
    CHECK(pt_json_at(b, 2)->type == PT_JSON_STRING && strcmp(pt_json_at(b, 2)->str, "x") == 0);
    CHECK(pt_json_at(b, 3)->type == PT_JSON_BOOL && pt_json_at(b, 3)->boolean == 1);
    CHECK(pt_json_at(b, 4)->type == PT_JSON_BOOL && pt_json_at(b, 4)->boolean == 0);
    CHECK(pt_json_at(b, 5)->type == PT_JSON_NULL);
    CHECK(pt_json_at(b, 6)->type == PT_JSON_OBJECT && pt_json_len(pt_json_at(b, 6)) == 0);
    CHECK(pt_json_at(b, 7) == NULL);
    CHECK(pt_json_at(b, 2)->offset == 16);
    const pt_json *c = pt_json_get(pt_json_get(j, "a"), "c");
    CHECK(c && c->type == PT_JSON_ARRAY && c->count == 0);
    CHECK(pt_json_get(j, "missing") == NULL && pt_json_get(b, "b") == NULL);
    pt_json_free(j);
}

static void test_integers_are_exact_in_int64(void)
{
    pt_json *j = parse_ok("[9007199254740993, 9223372036854775807, -9223372036854775808, "
                          "9223372036854775808, 1e3, -0, 1.0, 1.5, 2E-1, 123456789012]");
    if (!j) return;
    CHECK(j->items[0].is_int && j->items[0].integer == 9007199254740993LL);
    CHECK(j->items[1].is_int && j->items[1].integer == INT64_MAX);
    CHECK(j->items[2].is_int && j->items[2].integer == INT64_MIN);
    CHECK(!j->items[3].is_int && j->items[3].number == 9223372036854775808.0);
    CHECK(j->items[4].is_int && j->items[4].integer == 1000);
    CHECK(j->items[5].is_int && j->items[5].integer == 0);
    CHECK(j->items[6].is_int && j->items[6].integer == 1);
    CHECK(!j->items[7].is_int && j->items[7].number == 1.5);
    CHECK(!j->items[8].is_int && j->items[8].number == 0.2);
    CHECK(j->items[9].is_int && j->items[9].integer == 123456789012LL);
    pt_json_free(j);
}

/* Non-negative integers are exact up to UINT64_MAX (a 64-bit seed), past it they are not. */
static void test_unsigned_integers_are_exact_in_uint64(void)
{
    pt_json *j = parse_ok("[18446744073709551615, 9223372036854775808, 7, -7, 18446744073709551616, 2e3, 0.5]");
    if (!j) return;
    CHECK(j->items[0].is_uint && j->items[0].uinteger == UINT64_MAX && !j->items[0].is_int);
    CHECK(j->items[1].is_uint && j->items[1].uinteger == (uint64_t)INT64_MAX + 1u);
    CHECK(j->items[2].is_uint && j->items[2].uinteger == 7 && j->items[2].is_int && j->items[2].integer == 7);
    CHECK(!j->items[3].is_uint && j->items[3].is_int && j->items[3].integer == -7);
    CHECK(!j->items[4].is_uint && !j->items[4].is_int && j->items[4].number == 18446744073709551616.0);
    CHECK(j->items[5].is_uint && j->items[5].uinteger == 2000);
    CHECK(!j->items[6].is_uint && !j->items[6].is_int);
    pt_json_free(j);
}

static void test_string_escapes_decode_to_utf8(void)
{
    pt_json *j = parse_ok("[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\", \"\\u00e9\\u20AC\", \"\\ud83d\\ude00\", "
                          "\"a\\u0000b\", \"caf\xc3\xa9 \xf0\x9f\x98\x80\"]");
    if (!j) return;
    CHECK(strcmp(j->items[0].str, "\"\\/\b\f\n\r\t") == 0);
    CHECK(strcmp(j->items[1].str, "\xc3\xa9\xe2\x82\xac") == 0);
    CHECK(strcmp(j->items[2].str, "\xf0\x9f\x98\x80") == 0);
    CHECK(j->items[3].str_len == 3 && memcmp(j->items[3].str, "a\0b", 3) == 0);
    CHECK(strcmp(j->items[4].str, "caf\xc3\xa9 \xf0\x9f\x98\x80") == 0);
    pt_json_free(j);
}

static void test_malformed_documents_are_rejected_with_offset(void)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"", "unexpected end of input at byte 0"},
        {"   ", "unexpected end of input at byte 3"},
        {"{\"a\" 1}", "expected ':' at byte 5"},
        {"{\"a\":1 \"b\":2}", "expected ',' or '}' at byte 7"},
        {"[1,2", "unexpected end of input at byte 4: expected ',' or ']'"},
        {"[1,]", "expected a value at byte 3"},
        {"{\"a\":1,}", "expected a string key at byte 7"},
        {"{1:2}", "expected a string key at byte 1"},
        {"{} x", "unexpected characters after the JSON value at byte 3"},
        {"[] []", "unexpected characters after the JSON value at byte 3"},
        {"\"abc", "unterminated string starting at byte 0"},
        {"[\"a\\\"]", "unterminated string starting at byte 1"},
        {"\"\\x\"", "invalid escape '\\x' at byte 1"},
        {"\"\\u12g4\"", "invalid \\u escape at byte 1"},
        {"\"\\u12\"", "invalid \\u escape at byte 1"},
        {"\"ab\\ud800\"", "unpaired high surrogate"},
        {"\"\\ud800\\u0041\"", "unpaired high surrogate"},
        {"\"\\udc00\"", "unpaired low surrogate"},
        {"\"a\tb\"", "control character 0x09 in a string at byte 2"},
        {"\"\xc0\x80\"", "invalid UTF-8 in a string at byte 1"},
        {"\"\xed\xa0\x80\"", "invalid UTF-8 in a string at byte 1"},
        {"\"\xf5\x80\x80\x80\"", "invalid UTF-8 in a string at byte 1"},
        {"\"\xe2\x82\"", "invalid UTF-8 in a string at byte 1"},
        {"01", "leading zero in a number at byte 0"},
        {"-01", "leading zero in a number at byte 0"},
        {"1.", "expected a digit after '.'"},
        {".5", "expected a value at byte 0"},
        {"-", "expected a digit"},
        {"+1", "expected a value at byte 0"},
        {"1e", "expected a digit in the exponent"},
        {"1e999", "number out of range at byte 0"},
        {"tru", "expected a value at byte 0"},
        {"nul", "expected a value at byte 0"},
        {"NaN", "expected a value at byte 0"},
        {"[Infinity]", "expected a value at byte 1"},
        {"{\"a\":1,\"a\":2}", "duplicate key 'a' at byte 7"},
        {"{\"k\":{\"x\":1,\"y\":2,\"x\":3}}", "duplicate key 'x' at byte 18"},
        {"\xef\xbb\xbf{}", "expected a value at byte 0"},
        {"[1]\x01", "unexpected characters after the JSON value at byte 3"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        reject(cases[i].text, strlen(cases[i].text), cases[i].want);
    reject("[1,\0 2]", 7, "expected a value at byte 3");
}

static void test_every_truncation_of_a_document_is_rejected(void)
{
    const char *doc = "{\"name\": \"conv\\u00e9\", \"shape\": [3, 64, -1.5e2], \"ok\": true, \"n\": null}";
    size_t n = strlen(doc);
    pt_json *j = parse_ok(doc);
    pt_json_free(j);
    for (size_t k = 0; k < n; k++) reject(doc, k, "at byte");
}

static void test_depth_bomb_is_rejected_without_recursing_deeper(void)
{
    size_t n = 200000;
    char *bomb = malloc(n);
    memset(bomb, '[', n);
    reject(bomb, n, "nesting deeper than 64 levels at byte 64");
    for (size_t i = 0; i < n; i += 2) bomb[i] = '{', bomb[i + 1] = '"';
    reject(bomb, n, "expected ':' at byte 4, found '{'");
    size_t m = 0;
    for (int i = 0; i < 70; i++) m += (size_t)sprintf(bomb + m, "{\"a\":");
    reject(bomb, m, "nesting deeper than 64 levels");
    free(bomb);

    /* Exactly at the limit is fine. */
    char ok[256];
    memset(ok, '[', 64);
    memset(ok + 64, ']', 64);
    pt_json *j = NULL;
    pt_error e = {0};
    CHECKF(pt_json_parse(ok, 128, NULL, &j, &e) == PT_OK, "%s", e.msg);
    pt_json_free(j);
}

static void test_node_limit_is_enforced(void)
{
    pt_json_limits lim = {.max_depth = 4, .max_nodes = 10};
    pt_json *j = NULL;
    pt_error e = {0};
    const char *ten = "[1,2,3,4,5,6,7,8,9]";
    CHECKF(pt_json_parse(ten, strlen(ten), &lim, &j, &e) == PT_OK, "%s", e.msg);
    pt_json_free(j);
    j = NULL;
    const char *eleven = "[1,2,3,4,5,6,7,8,9,10]";
    CHECK(pt_json_parse(eleven, strlen(eleven), &lim, &j, &e) == PT_ERR_FORMAT);
    CHECKF(strstr(e.msg, "more than 10 values at byte 19") != NULL, "%s", e.msg);
    CHECK(j == NULL);
    const char *deep = "[[[[[1]]]]]";
    CHECK(pt_json_parse(deep, strlen(deep), &lim, &j, &e) == PT_ERR_FORMAT);
    CHECKF(strstr(e.msg, "nesting deeper than 4 levels at byte 4") != NULL, "%s", e.msg);
}

static void test_typed_getters_check_types(void)
{
    pt_json *j = parse_ok("{\"s\":\"v\",\"i\":42,\"f\":0.5,\"b\":false,\"big\":1e300}");
    if (!j) return;
    const char *s = NULL;
    int64_t i = 0;
    double d = 0;
    int b = 1;
    pt_error e = {0};
    CHECK(pt_json_get_string(j, "s", &s, &e) == PT_OK && strcmp(s, "v") == 0);
    CHECK(pt_json_get_int64(j, "i", &i, &e) == PT_OK && i == 42);
    CHECK(pt_json_get_double(j, "f", &d, &e) == PT_OK && d == 0.5);
    CHECK(pt_json_get_double(j, "i", &d, &e) == PT_OK && d == 42.0);
    CHECK(pt_json_get_bool(j, "b", &b, &e) == PT_OK && b == 0);
    CHECK(pt_json_get_string(j, "i", &s, &e) == PT_ERR_FORMAT);
    CHECKF(strcmp(e.msg, "key 'i': expected a string, got number") == 0, "%s", e.msg);
    CHECK(pt_json_get_int64(j, "f", &i, &e) == PT_ERR_FORMAT && strstr(e.msg, "expected an integer"));
    CHECK(pt_json_get_int64(j, "big", &i, &e) == PT_ERR_FORMAT);
    CHECK(pt_json_get_bool(j, "nope", &b, &e) == PT_ERR_FORMAT);
    CHECKF(strcmp(e.msg, "missing key 'nope'") == 0, "%s", e.msg);
    CHECK(pt_json_get_string(pt_json_get(j, "s"), "x", &s, &e) == PT_ERR_FORMAT);
    pt_json_free(j);
}

static void test_strbuf_json_string_round_trips(void)
{
    const char *samples[] = {"plain", "quote\" backslash\\ slash/", "ctl\x01\x1f\n\r\t\b\f",
                             "utf8 caf\xc3\xa9 \xf0\x9f\x98\x80", ""};
    for (size_t k = 0; k < sizeof samples / sizeof samples[0]; k++) {
        pt_strbuf sb;
        pt_strbuf_init(&sb);
        pt_strbuf_json_string(&sb, samples[k]);
        CHECK(pt_strbuf_check(&sb, NULL) == PT_OK);
        pt_json *j = parse_ok(sb.data);
        CHECKF(j && j->type == PT_JSON_STRING && strcmp(j->str, samples[k]) == 0, "sample %zu: %s",
               k, sb.data);
        pt_json_free(j);
        pt_strbuf_free(&sb);
    }
    /* Invalid UTF-8 becomes U+FFFD, so the output is still valid JSON. */
    pt_strbuf sb = {0};
    pt_strbuf_json_string(&sb, "bad\xff\xc3");
    CHECKF(strcmp(sb.data, "\"bad\xef\xbf\xbd\xef\xbf\xbd\"") == 0, "%s", sb.data);
    pt_strbuf_free(&sb);
    CHECK(!pt_utf8_valid("\xff", 1) && pt_utf8_valid("\xc3\xa9", 2) && !pt_utf8_valid("\xc3", 1));
}

static void test_strbuf_numbers_round_trip(void)
{
    pt_strbuf sb = {0};
    pt_strbuf_putc(&sb, '[');
    double vals[400];
    for (int i = 0; i < 400; i++) {
        uint64_t r = next_rand();
        double v;
        memcpy(&v, &r, sizeof v);
        if (!isfinite(v)) v = (double)(int64_t)r;
        if (i % 2) v = (double)(float)((double)(int64_t)(r >> 11) * 0x1p-40); /* float values */
        vals[i] = v;
        if (i) pt_strbuf_putc(&sb, ',');
        if (i % 2) pt_strbuf_json_float(&sb, (float)v);
        else pt_strbuf_json_double(&sb, v);
    }
    pt_strbuf_puts(&sb, ",");
    pt_strbuf_json_int(&sb, INT64_MIN);
    pt_strbuf_puts(&sb, ",");
    pt_strbuf_json_double(&sb, NAN);
    pt_strbuf_puts(&sb, ",");
    pt_strbuf_json_float(&sb, 0.1f);
    pt_strbuf_putc(&sb, ']');
    CHECK(pt_strbuf_check(&sb, NULL) == PT_OK);
    pt_json *j = parse_ok(sb.data);
    if (j) {
        int bad = 0;
        /* A float is written with just enough digits to come back as the same float. */
        for (int i = 0; i < 400; i++)
            bad += (i % 2) ? (float)j->items[i].number != (float)vals[i] : j->items[i].number != vals[i];
        CHECKF(bad == 0, "%d of 400 numbers did not round-trip (seed %llu)", bad,
               (unsigned long long)rng_state);
        CHECK(j->items[400].is_int && j->items[400].integer == INT64_MIN);
        CHECK(j->items[401].type == PT_JSON_NULL);
        CHECKF((float)j->items[402].number == 0.1f, "%.17g", j->items[402].number);
        CHECKF(strstr(sb.data, ",0.1]") != NULL, "float 0.1 not written shortest: %s",
               sb.data + sb.len - 20);
    }
    pt_json_free(j);
    pt_strbuf_free(&sb);
}

static void test_strbuf_grows_for_long_printf(void)
{
    pt_strbuf sb = {0};
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int i = 0; i < 10; i++) pt_strbuf_printf(&sb, "%s%d", big, i);
    CHECK(pt_strbuf_check(&sb, NULL) == PT_OK);
    CHECK(sb.len == 10 * 5000 && strlen(sb.data) == sb.len && sb.data[4999] == '0');
    pt_strbuf_free(&sb);
    CHECK(sb.data == NULL && sb.len == 0);
}

static void test_numbers_ignore_the_c_locale(void)
{
    const char *names[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8"};
    const char *got = NULL;
    for (size_t i = 0; i < 4 && !got; i++) got = setlocale(LC_NUMERIC, names[i]);
    if (!got) {
        printf("  (no comma-decimal locale installed; checking the C locale only)\n");
    }
    pt_strbuf sb = {0};
    pt_strbuf_json_double(&sb, 2.5);
    CHECKF(strcmp(sb.data, "2.5") == 0, "%s", sb.data);
    pt_json *j = parse_ok("[2.5, 1e-3]");
    CHECK(j && j->items[0].number == 2.5 && j->items[1].number == 1e-3);
    pt_json_free(j);
    pt_strbuf_free(&sb);
    setlocale(LC_NUMERIC, "C");
}

static void test_random_mutations_never_crash(void)
{
    const char *doc = "{\"__metadata__\":{\"k\":\"v\\u00e9\"},\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],"
                      "\"data_offsets\":[0,24]},\"x\":[true,false,null,-1.5e-3]}";
    size_t n = strlen(doc);
    char *buf = malloc(n);
    int accepted = 0;
    for (int it = 0; it < 5000; it++) {
        memcpy(buf, doc, n);
        int flips = 1 + (int)(next_rand() % 4);
        for (int f = 0; f < flips; f++) {
            size_t pos = next_rand() % n;
            uint64_t r = next_rand();
            buf[pos] = (r & 1) ? (char)(r >> 8) : "{}[]\",:\\u0e-"[(r >> 8) % 13];
        }
        size_t len = (next_rand() % 8 == 0) ? next_rand() % n : n;
        pt_json *j = NULL;
        pt_error e = {0};
        pt_status st = pt_json_parse(buf, len, NULL, &j, &e);
        if (st == PT_OK) accepted++;
        else if (st != PT_ERR_FORMAT || !strstr(e.msg, "byte")) {
            CHECKF(0, "status %d message '%s'", st, e.msg);
            break;
        }
        pt_json_free(j);
    }
    CHECK(accepted < 5000);
    free(buf);
}

int main(void)
{
    rng_state = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid();
    if (!rng_state) rng_state = 1;
    printf("seed %llu\n", (unsigned long long)rng_state);
    RUN(test_parses_nested_document_in_order);
    RUN(test_integers_are_exact_in_int64);
    RUN(test_string_escapes_decode_to_utf8);
    RUN(test_malformed_documents_are_rejected_with_offset);
    RUN(test_every_truncation_of_a_document_is_rejected);
    RUN(test_unsigned_integers_are_exact_in_uint64);
    RUN(test_depth_bomb_is_rejected_without_recursing_deeper);
    RUN(test_node_limit_is_enforced);
    RUN(test_typed_getters_check_types);
    RUN(test_strbuf_json_string_round_trips);
    RUN(test_strbuf_numbers_round_trip);
    RUN(test_strbuf_grows_for_long_printf);
    RUN(test_numbers_ignore_the_c_locale);
    RUN(test_random_mutations_never_crash);
    TEST_EXIT();
}
