/* core/safetensors: files round-trip exactly, every malformed or truncated file is rejected
 * with a message naming the problem, and random damage never crashes the reader.
 * Also a helper for tests/python/test_safetensors_format.py:
 *   test_safetensors --write-reference PATH   writes the reference file and exits
 *   test_safetensors --check-reference PATH   exits 0 iff PATH holds the reference content */
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/json.h"
#include "core/safetensors.h"
#include "pt_test.h"

static char tmpdir[512];
static uint64_t rng_state;

static uint64_t next_rand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* ---------------------------------------------------------------- the reference content
 * The Python test knows the same formulas: keep them in sync with REFERENCE there. */

static float conv_w[4 * 3 * 3 * 3], bn_w[4], bn_b[4], bn_mean[4], bn_var[4], fc_w[2 * 4];
static const float fc_b[2] = {0.5f, -0.5f};
static const int64_t nbt = 7;
static const double x_f64[3] = {1.0 / 3.0, -2.5, 1e300};
static const int32_t x_i32[4] = {-1, 2, -3, 4};
static const uint8_t x_u8[5] = {0, 1, 127, 128, 255};
static const uint16_t x_f16[2] = {0x3C00, 0xC000};  /* 1.0, -2.0 */
static const uint16_t x_bf16[2] = {0x3F80, 0x4049}; /* 1.0, 3.140625 */
static const uint8_t x_bool[3] = {1, 0, 1};
static const int16_t x_i16[1] = {-300};
static const int8_t x_i8[2] = {-128, 127};
static const int64_t x_i64[2] = {INT64_MIN, (int64_t)1 << 40};

typedef struct ref_tensor {
    const char *name;
    pt_st_dtype dtype;
    int ndim;
    int64_t shape[4];
    const void *data;
} ref_tensor;

static const ref_tensor reference[] = {
    {"conv.weight", PT_ST_F32, 4, {4, 3, 3, 3}, conv_w},
    {"bn.weight", PT_ST_F32, 1, {4}, bn_w},
    {"bn.bias", PT_ST_F32, 1, {4}, bn_b},
    {"bn.running_mean", PT_ST_F32, 1, {4}, bn_mean},
    {"bn.running_var", PT_ST_F32, 1, {4}, bn_var},
    {"bn.num_batches_tracked", PT_ST_I64, 0, {0}, &nbt},
    {"fc.weight", PT_ST_F32, 2, {2, 4}, fc_w},
    {"fc.bias", PT_ST_F32, 1, {2}, fc_b},
    {"extra.u8", PT_ST_U8, 1, {5}, x_u8},
    {"extra.f64", PT_ST_F64, 1, {3}, x_f64},
    {"extra.i32", PT_ST_I32, 2, {2, 2}, x_i32},
    {"extra.f16", PT_ST_F16, 1, {2}, x_f16},
    {"extra.bf16", PT_ST_BF16, 1, {2}, x_bf16},
    {"extra.bool", PT_ST_BOOL, 1, {3}, x_bool},
    {"extra.empty", PT_ST_F32, 2, {0, 3}, NULL},
    {"extra.i16", PT_ST_I16, 1, {1}, x_i16},
    {"extra.i8", PT_ST_I8, 1, {2}, x_i8},
    {"extra.i64", PT_ST_I64, 1, {2}, x_i64},
};
#define NREF (sizeof reference / sizeof reference[0])

static const char *ref_meta[][2] = {
    {"framework", "polytrain"},
    {"format_version", "1"},
    {"note", "caf\xc3\xa9 \"quoted\"\n\\ end"},
};
#define NMETA (sizeof ref_meta / sizeof ref_meta[0])

static void fill_reference(void)
{
    for (int i = 0; i < 108; i++) conv_w[i] = (float)i * 0.25f - 13.5f;
    for (int i = 0; i < 4; i++) {
        bn_w[i] = 1.0f + (float)i * 0.5f;
        bn_b[i] = 0.125f - (float)i * 0.125f;
        bn_mean[i] = (float)i * 0.0625f;
        bn_var[i] = 1.0f + (float)i;
    }
    for (int i = 0; i < 8; i++) fc_w[i] = (float)i - 3.5f;
}

static size_t ref_nbytes(const ref_tensor *r)
{
    size_t n = pt_st_dtype_size(r->dtype);
    for (int d = 0; d < r->ndim; d++) n *= (size_t)r->shape[d];
    return n;
}

static pt_st_writer *reference_writer(void)
{
    pt_st_writer *w = NULL;
    pt_error e = {0};
    if (pt_st_writer_new(&w, &e) != PT_OK) return NULL;
    for (size_t i = 0; i < NREF; i++) {
        const ref_tensor *r = &reference[i];
        /* Half borrowed, half copied: both paths must produce the same file. */
        if (pt_st_writer_add(w, r->name, r->dtype, r->ndim, r->shape, r->data,
                             i % 2 ? PT_ST_COPY : PT_ST_BORROW, &e) != PT_OK) {
            fprintf(stderr, "add %s: %s\n", r->name, e.msg);
            pt_st_writer_free(w);
            return NULL;
        }
    }
    for (size_t i = 0; i < NMETA; i++) {
        if (pt_st_writer_add_meta(w, ref_meta[i][0], ref_meta[i][1], &e) != PT_OK) {
            pt_st_writer_free(w);
            return NULL;
        }
    }
    return w;
}

/* Counts how f differs from the reference content (tensors, values, metadata). */
static int reference_mismatches(const pt_st_file *f, int verbose)
{
    int bad = 0;
    if (pt_st_count(f) != NREF) {
        if (verbose) fprintf(stderr, "count %zu, expected %zu\n", pt_st_count(f), (size_t)NREF);
        bad++;
    }
    for (size_t i = 0; i < NREF; i++) {
        const ref_tensor *r = &reference[i];
        const pt_st_tensor *t = pt_st_find(f, r->name);
        int ok = t && t->dtype == r->dtype && t->ndim == r->ndim && t->nbytes == ref_nbytes(r);
        for (int d = 0; ok && d < r->ndim; d++) ok = t->shape[d] == r->shape[d];
        if (ok && t->nbytes) ok = memcmp(t->data, r->data, t->nbytes) == 0;
        if (!ok) {
            if (verbose) fprintf(stderr, "tensor %s differs or is missing\n", r->name);
            bad++;
        }
    }
    if (pt_st_meta_count(f) != NMETA) bad++;
    for (size_t i = 0; i < NMETA; i++) {
        const char *v = pt_st_meta(f, ref_meta[i][0]);
        if (!v || strcmp(v, ref_meta[i][1]) != 0) {
            if (verbose) fprintf(stderr, "metadata %s differs or is missing\n", ref_meta[i][0]);
            bad++;
        }
    }
    return bad;
}

static const char *tmp_path(const char *name)
{
    static char buf[2][1024];
    static int k;
    k ^= 1;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

/* The reference file's bytes (malloc'd). */
static void *reference_bytes(size_t *size)
{
    pt_st_writer *w = reference_writer();
    void *bytes = NULL;
    pt_error e = {0};
    *size = 0;
    if (w && pt_st_write_memory(w, &bytes, size, &e) != PT_OK) bytes = NULL;
    pt_st_writer_free(w);
    return bytes;
}

/* ---------------------------------------------------------------- round trip */

static void test_round_trip_preserves_tensors_metadata_and_order(void)
{
    pt_st_writer *w = reference_writer();
    CHECK(w != NULL);
    if (!w) return;
    pt_error e = {0};
    const char *path = tmp_path("ref.safetensors");
    CHECKF(pt_st_write_atomic(w, path, &e) == PT_OK, "%s", e.msg);
    pt_st_writer_free(w);
    pt_st_file *f = NULL;
    CHECKF(pt_st_open(path, &f, &e) == PT_OK, "%s", e.msg);
    if (!f) return;
    CHECK(reference_mismatches(f, 1) == 0);
    for (size_t i = 0; i < NREF; i++)
        CHECKF(pt_st_at(f, i) && strcmp(pt_st_at(f, i)->name, reference[i].name) == 0,
               "file order at %zu", i);
    CHECK(pt_st_at(f, NREF) == NULL);
    const pt_st_tensor *s = pt_st_find(f, "bn.num_batches_tracked");
    CHECK(s && s->ndim == 0 && s->numel == 1 && s->nbytes == 8 && *(const int64_t *)s->data == 7);
    const pt_st_tensor *z = pt_st_find(f, "extra.empty");
    CHECK(z && z->numel == 0 && z->nbytes == 0);
    CHECK(pt_st_find(f, "bn.missing") == NULL && pt_st_find(f, "") == NULL);
    CHECK(pt_st_meta(f, "missing") == NULL);
    const char *k, *v;
    CHECK(pt_st_meta_at(f, 0, &k, &v) && strcmp(k, "framework") == 0 && strcmp(v, "polytrain") == 0);
    CHECK(!pt_st_meta_at(f, NMETA, &k, &v));
    pt_st_close(f);
}

static void test_file_bytes_equal_memory_bytes(void)
{
    size_t n = 0;
    void *mem = reference_bytes(&n);
    void *disk = NULL;
    size_t dn = 0;
    pt_error e = {0};
    CHECKF(pt_read_file(tmp_path("ref.safetensors"), 1 << 20, &disk, &dn, &e) == PT_OK, "%s", e.msg);
    CHECK(mem && disk && n == dn && memcmp(mem, disk, n) == 0);
    free(mem);
    free(disk);
}

static void test_layout_is_aligned_json_in_insertion_order(void)
{
    size_t n = 0;
    unsigned char *b = reference_bytes(&n);
    if (!b) return;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | b[i];
    CHECKF((8 + hl) % 8 == 0, "data starts at %llu", (unsigned long long)(8 + hl));
    pt_json *j = NULL;
    pt_error e = {0};
    CHECKF(pt_json_parse((const char *)b + 8, hl, NULL, &j, &e) == PT_OK, "%s", e.msg);
    if (j) {
        CHECK(j->count == NREF + 1 && strcmp(j->members[0].key, "__metadata__") == 0);
        uint64_t covered = 0;
        for (size_t i = 0; i < NREF && i + 1 < j->count; i++) {
            CHECK(strcmp(j->members[i + 1].key, reference[i].name) == 0);
            const pt_json *of = pt_json_get(&j->members[i + 1].value, "data_offsets");
            int64_t begin = of ? pt_json_at(of, 0)->integer : -1;
            CHECKF(begin >= 0 && begin % (int64_t)pt_st_dtype_size(reference[i].dtype) == 0,
                   "%s begins at %lld", reference[i].name, (long long)begin);
            covered += ref_nbytes(&reference[i]);
        }
        CHECK(covered == n - 8 - hl);
    }
    pt_json_free(j);
    pt_st_file *f = NULL;
    CHECK(pt_st_open_memory(b, n, "ref", &f, &e) == PT_OK);
    for (size_t i = 0; f && i < pt_st_count(f); i++) {
        const pt_st_tensor *t = pt_st_at(f, i);
        CHECKF((uintptr_t)t->data % pt_st_dtype_size(t->dtype) == 0, "%s unaligned", t->name);
    }
    pt_st_close(f);
    free(b);
}

static void test_empty_writer_gives_valid_file(void)
{
    pt_st_writer *w = NULL;
    pt_error e = {0};
    CHECK(pt_st_writer_new(&w, &e) == PT_OK);
    void *b = NULL;
    size_t n = 0;
    CHECK(pt_st_write_memory(w, &b, &n, &e) == PT_OK && n == 16);
    pt_st_file *f = NULL;
    CHECKF(pt_st_open_memory(b, n, "empty", &f, &e) == PT_OK, "%s", e.msg);
    CHECK(f && pt_st_count(f) == 0 && pt_st_meta_count(f) == 0);
    pt_st_close(f);
    free(b);
    pt_st_writer_free(w);
}

static void test_writer_rejects_bad_tensors_and_metadata(void)
{
    pt_st_writer *w = NULL;
    pt_error e = {0};
    CHECK(pt_st_writer_new(&w, &e) == PT_OK);
    float d[4] = {0};
    int64_t s2[2] = {2, 2}, neg[1] = {-1}, big[17] = {0};
    CHECK(pt_st_writer_add(w, "a", PT_ST_F32, 2, s2, d, PT_ST_BORROW, &e) == PT_OK);
    CHECK(pt_st_writer_add(w, "a", PT_ST_F32, 2, s2, d, PT_ST_BORROW, &e) == PT_ERR_INVALID);
    CHECKF(strstr(e.msg, "'a' added twice") != NULL, "%s", e.msg);
    CHECK(pt_st_writer_add(w, "__metadata__", PT_ST_F32, 2, s2, d, PT_ST_BORROW, &e) == PT_ERR_INVALID);
    CHECK(pt_st_writer_add(w, "", PT_ST_F32, 2, s2, d, PT_ST_BORROW, &e) == PT_ERR_INVALID);
    CHECK(pt_st_writer_add(w, "bad\xff", PT_ST_F32, 2, s2, d, PT_ST_BORROW, &e) == PT_ERR_INVALID);
    CHECK(pt_st_writer_add(w, "n", PT_ST_F32, 1, neg, d, PT_ST_BORROW, &e) == PT_ERR_INVALID);
    CHECKF(strstr(e.msg, "negative dimension -1") != NULL, "%s", e.msg);
    CHECK(pt_st_writer_add(w, "r", PT_ST_F32, 17, big, d, PT_ST_BORROW, &e) == PT_ERR_INVALID);
    CHECK(pt_st_writer_add(w, "x", PT_ST_F32, 2, s2, NULL, PT_ST_BORROW, &e) == PT_ERR_INVALID);
    CHECK(pt_st_writer_add(w, "t", (pt_st_dtype)99, 2, s2, d, PT_ST_BORROW, &e) == PT_ERR_INVALID);
    CHECK(pt_st_writer_add_meta(w, "k", "v", &e) == PT_OK);
    CHECK(pt_st_writer_add_meta(w, "k", "w", &e) == PT_ERR_INVALID);
    CHECK(pt_st_writer_add_meta(w, "k2", "\xc3", &e) == PT_ERR_INVALID);
    pt_st_writer_free(w);
}

static void test_write_to_unwritable_path_fails_and_keeps_old(void)
{
    pt_st_writer *w = reference_writer();
    pt_error e = {0};
    const char *path = tmp_path("ref.safetensors/sub.safetensors");
    CHECK(pt_st_write_atomic(w, path, &e) == PT_ERR_IO);
    CHECKF(strstr(e.msg, "sub.safetensors") != NULL, "%s", e.msg);
    pt_st_file *f = NULL;
    CHECK(pt_st_open(tmp_path("ref.safetensors"), &f, &e) == PT_OK);
    pt_st_close(f);
    pt_st_writer_free(w);
}

/* ---------------------------------------------------------------- rejection */

static void expect_reject_memory(const void *b, size_t n, const char *want, const char *what)
{
    pt_st_file *f = (pt_st_file *)0x1;
    pt_error e = {0};
    pt_status st = pt_st_open_memory(b, n, "bad.safetensors", &f, &e);
    CHECKF(st == PT_ERR_FORMAT, "%s: status %d (%s)", what, st, e.msg);
    CHECKF(f == NULL, "%s: output not cleared", what);
    CHECKF(strncmp(e.msg, "bad.safetensors: ", 17) == 0 && (!want || strstr(e.msg, want)),
           "%s: message '%s' lacks '%s'", what, e.msg, want ? want : "");
}

/* Bytes of a file with the given 8-byte length field, header text and data length. */
static unsigned char *craft(uint64_t len_field, const char *header, size_t data_len, size_t *n)
{
    size_t hl = strlen(header);
    *n = 8 + hl + data_len;
    unsigned char *b = calloc(1, *n);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(len_field >> (8 * i));
    memcpy(b + 8, header, hl);
    for (size_t i = 0; i < data_len; i++) b[8 + hl + i] = (unsigned char)i;
    return b;
}

static void reject_header(const char *header, size_t data_len, const char *want)
{
    size_t n;
    unsigned char *b = craft(strlen(header), header, data_len, &n);
    expect_reject_memory(b, n, want, header);
    free(b);
}

static void test_every_truncated_prefix_is_rejected(void)
{
    size_t n = 0;
    unsigned char *b = reference_bytes(&n);
    if (!b) return;
    for (size_t k = 0; k < n; k++) {
        /* A fresh exact-size copy, so ASan catches any read past the prefix. */
        unsigned char *p = malloc(k ? k : 1);
        memcpy(p, b, k);
        const char *want = k < 8 ? "too short for the 8-byte header length" : NULL;
        expect_reject_memory(p, k, want, "prefix");
        free(p);
    }
    /* The same through real files, for a few prefix lengths. */
    size_t lens[] = {0, 7, 8, 20, n / 2, n - 1};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        const void *c[] = {b};
        size_t s[] = {lens[i]};
        pt_error e = {0};
        CHECK(pt_write_file_atomic(tmp_path("trunc.safetensors"), c, s, 1, &e) == PT_OK);
        pt_st_file *f = NULL;
        char path[1024];
        snprintf(path, sizeof path, "%s", tmp_path("trunc.safetensors"));
        CHECK(pt_st_open(path, &f, &e) == PT_ERR_FORMAT && f == NULL);
        CHECKF(strncmp(e.msg, path, strlen(path)) == 0,
               "%s", e.msg);
    }
    free(b);
}

static void test_bad_header_lengths_are_rejected(void)
{
    size_t n;
    unsigned char *b = craft(0, "{}", 0, &n);
    expect_reject_memory(b, n, "header length 0 is too small", "zero");
    free(b);
    b = craft(1, "{}", 0, &n);
    expect_reject_memory(b, n, "header length 1 is too small", "one");
    free(b);
    b = craft((uint64_t)1 << 63, "{}", 0, &n);
    expect_reject_memory(b, n, "header length 9223372036854775808 exceeds the limit of 100000000", "huge");
    free(b);
    b = craft(100000001, "{}", 0, &n);
    expect_reject_memory(b, n, "exceeds the limit", "limit+1");
    free(b);
    b = craft(200, "{}", 40, &n);
    expect_reject_memory(b, n, "header length 200 runs past the end of the file (50 bytes)", "past end");
    free(b);
}

static void test_malformed_headers_are_rejected_with_reason(void)
{
    reject_header("[]", 0, "header is not a JSON object (got array)");
    reject_header("\"{}\"", 0, "header is not a JSON object (got string)");
    reject_header("{\"a\":", 0, "header is not valid JSON: unexpected end of input at byte 5");
    reject_header("{\"a\":{}} x", 0, "header is not valid JSON: unexpected characters");
    reject_header("{\"a\":5}", 0, "tensor 'a': expected an object, got number");
    reject_header("{\"a\":{\"shape\":[],\"data_offsets\":[0,4]}}", 4, "tensor 'a': missing 'dtype'");
    reject_header("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'a': missing 'shape'");
    reject_header("{\"a\":{\"dtype\":\"F32\",\"shape\":[]}}", 4, "tensor 'a': missing 'data_offsets'");
    reject_header("{\"a\":{\"dtype\":\"F8\",\"shape\":[],\"data_offsets\":[0,1]}}", 1,
                  "tensor 'a': unknown dtype 'F8'");
    reject_header("{\"a\":{\"dtype\":\"f32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, "unknown dtype 'f32'");
    reject_header("{\"a\":{\"dtype\":4,\"shape\":[],\"data_offsets\":[0,4]}}", 4, "unknown dtype number");
    reject_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", 16,
                  "tensor 'w': data_offsets [0, 16] hold 16 bytes but F32 shape of 6 elements needs 24");
    reject_header("{\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,9999]}}", 4096,
                  "tensor 'conv1.weight': data_offsets [0, 9999] past the end of the data (4096 bytes)");
    reject_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[4,12]}}",
                  12, "tensor 'b': data_offsets [4, 12] overlap tensor 'a' [0, 8]");
    reject_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                  "\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,4]}}",
                  8, "tensor 'z': data_offsets [4, 4] overlap tensor 'a'");
    reject_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                  "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,12]}}",
                  12, "data bytes [4, 8) belong to no tensor (next is 'b' at 8)");
    reject_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 8,
                  "data bytes [4, 8) after the last tensor belong to no tensor");
    reject_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8,
                  "data_offsets [8, 4] end before they begin");
    reject_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4,4]}}", 4,
                  "data_offsets must be two non-negative integers");
    reject_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[-4,0]}}", 4,
                  "data_offsets must be two non-negative integers");
    reject_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4.5]}}", 4,
                  "data_offsets must be two non-negative integers");
    reject_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[-4],\"data_offsets\":[0,4]}}", 4,
                  "shape entry 0 is not a non-negative integer");
    reject_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[2,1.5],\"data_offsets\":[0,3]}}", 3,
                  "shape entry 1 is not a non-negative integer");
    reject_header("{\"a\":{\"dtype\":\"U8\",\"shape\":4,\"data_offsets\":[0,4]}}", 4,
                  "shape must be an array, got number");
    reject_header("{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,8]}}",
                  8, "shape is too large");
    reject_header("{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}}",
                  8, "shape is too large");
    reject_header("{\"a\":{\"dtype\":\"F64\",\"shape\":[1152921504606846976],\"data_offsets\":[0,8]}}",
                  8, "hold 8 bytes but F64 shape of 1152921504606846976 elements needs 9223372036854775808");
    reject_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"
                  "\"data_offsets\":[0,1]}}",
                  1, "shape has 17 dimensions, more than 16");
    reject_header("{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ 'k' must be a string, got number");
    reject_header("{\"__metadata__\":[]}", 0, "__metadata__ must be an object of strings, got array");
    reject_header("{\"__metadata__\":{\"k\":\"a\\u0000b\"}}", 0, "contains a NUL character");
    reject_header("{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0,
                  "contains a NUL character");
    reject_header("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                  "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                  2, "duplicate key 'a'");
    reject_header("{\"a\":[[[[[[[[[[[[1]]]]]]]]]]]}", 0, "nesting deeper than 8 levels");
    reject_header("{\"a\":\"\xff\"}", 0, "invalid UTF-8");
}

static void test_valid_variants_from_other_writers_are_accepted(void)
{
    /* Padding with spaces, null metadata, unknown extra keys, reversed data order. */
    const char *h = "{\"__metadata__\":null,\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]},"
                    "\"a\":{\"shape\":[1,2],\"dtype\":\"I8\",\"data_offsets\":[0,2],\"extra\":[1]}}    ";
    size_t n;
    unsigned char *b = craft(strlen(h), h, 4, &n);
    pt_st_file *f = NULL;
    pt_error e = {0};
    CHECKF(pt_st_open_memory(b, n, "ok", &f, &e) == PT_OK, "%s", e.msg);
    if (f) {
        CHECK(pt_st_count(f) == 2 && strcmp(pt_st_at(f, 0)->name, "b") == 0);
        const pt_st_tensor *a = pt_st_find(f, "a"), *bb = pt_st_find(f, "b");
        CHECK(a && a->dtype == PT_ST_I8 && ((const unsigned char *)a->data)[1] == 1);
        CHECK(bb && ((const unsigned char *)bb->data)[0] == 2);
        CHECK(pt_st_meta_count(f) == 0);
    }
    pt_st_close(f);
    free(b);
    b = craft(2, "{}", 0, &n);
    f = NULL;
    CHECKF(pt_st_open_memory(b, n, "ok", &f, &e) == PT_OK, "%s", e.msg);
    CHECK(f && pt_st_count(f) == 0);
    pt_st_close(f);
    free(b);
}

static void test_missing_file_is_an_io_error_naming_it(void)
{
    pt_st_file *f = NULL;
    pt_error e = {0};
    CHECK(pt_st_open(tmp_path("none.safetensors"), &f, &e) == PT_ERR_IO && f == NULL);
    CHECKF(strstr(e.msg, "none.safetensors") != NULL, "%s", e.msg);
    CHECK(pt_st_open(tmpdir, &f, &e) == PT_ERR_IO);
}

static void test_random_header_damage_never_crashes(void)
{
    size_t n = 0;
    unsigned char *b = reference_bytes(&n);
    if (!b) return;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | b[i];
    unsigned char *m = malloc(n);
    int accepted = 0, odd = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(m, b, n);
        int flips = 1 + (int)(next_rand() % 3);
        for (int k = 0; k < flips; k++) {
            uint64_t r = next_rand();
            size_t pos = (it % 10 == 0) ? r % 8 : 8 + (r >> 8) % hl; /* length field sometimes */
            m[pos] = (r & 1) ? (unsigned char)(r >> 16) : (unsigned char)"0123456789[]{},:\"-.e"[(r >> 16) % 20];
        }
        pt_st_file *f = NULL;
        pt_error e = {0};
        pt_status st = pt_st_open_memory(m, n, "fuzz", &f, &e);
        if (st == PT_OK) {
            accepted++;
            /* Whatever was accepted must be self-consistent. */
            size_t total = 0;
            for (size_t i = 0; i < pt_st_count(f); i++) total += pt_st_at(f, i)->nbytes;
            if (total > n) odd++;
            for (size_t i = 0; i < pt_st_count(f); i++) {
                const pt_st_tensor *t = pt_st_at(f, i);
                volatile unsigned char sink = 0;
                for (size_t k = 0; k < t->nbytes; k++) sink ^= ((const unsigned char *)t->data)[k];
                (void)sink;
                if (pt_st_find(f, t->name) != t) odd++;
            }
        } else if (st != PT_ERR_FORMAT) {
            odd++;
        }
        pt_st_close(f);
    }
    CHECKF(odd == 0, "%d inconsistent results (seed %llu)", odd, (unsigned long long)rng_state);
    CHECK(accepted < 3000);
    free(m);
    free(b);
}

int main(int argc, char **argv)
{
    fill_reference();
    if (argc == 3 && strcmp(argv[1], "--write-reference") == 0) {
        pt_st_writer *w = reference_writer();
        pt_error e = {0};
        if (!w || pt_st_write_atomic(w, argv[2], &e) != PT_OK) {
            fprintf(stderr, "test_safetensors: %s\n", e.msg);
            return 1;
        }
        pt_st_writer_free(w);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "--check-reference") == 0) {
        pt_st_file *f = NULL;
        pt_error e = {0};
        if (pt_st_open(argv[2], &f, &e) != PT_OK) {
            fprintf(stderr, "test_safetensors: %s\n", e.msg);
            return 1;
        }
        int bad = reference_mismatches(f, 1);
        pt_st_close(f);
        return bad ? 1 : 0;
    }
    if (argc != 1) {
        fprintf(stderr, "usage: test_safetensors [--write-reference PATH | --check-reference PATH]\n");
        return 2;
    }

    const char *base = getenv("PT_TEST_TMP");
    if (!base || !base[0]) base = "/tmp";
    snprintf(tmpdir, sizeof tmpdir, "%s/test_safetensors.%ld", base, (long)getpid());
    pt_error e = {0};
    if (pt_mkdir_p(tmpdir, &e) != PT_OK) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    rng_state = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid();
    if (!rng_state) rng_state = 1;
    printf("seed %llu\n", (unsigned long long)rng_state);

    RUN(test_round_trip_preserves_tensors_metadata_and_order);
    RUN(test_file_bytes_equal_memory_bytes);
    RUN(test_layout_is_aligned_json_in_insertion_order);
    RUN(test_empty_writer_gives_valid_file);
    RUN(test_writer_rejects_bad_tensors_and_metadata);
    RUN(test_write_to_unwritable_path_fails_and_keeps_old);
    RUN(test_every_truncated_prefix_is_rejected);
    RUN(test_bad_header_lengths_are_rejected);
    RUN(test_malformed_headers_are_rejected_with_reason);
    RUN(test_valid_variants_from_other_writers_are_accepted);
    RUN(test_missing_file_is_an_io_error_naming_it);
    RUN(test_random_header_damage_never_crashes);
    if (pt_t_fail == 0) pt_remove_tree(tmpdir, &e);
    TEST_EXIT();
}
