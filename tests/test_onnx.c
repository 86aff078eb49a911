/* core/protobuf and core/onnx: the encoder writes protobuf's documented encodings byte for
 * byte, and an exported net, read back with this test's own wire-format reader, is one
 * ModelProto whose fields, nodes and initializers are what the net says; a bad opset writes
 * nothing. (onnxruntime runs the exported zoo in tests/python/test_onnx_export.py.) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/onnx.h"
#include "core/protobuf.h"
#include "pt_test.h"

static int same(const pt_pb *b, const uint8_t *want, size_t n) { return b->len == n && memcmp(b->data, want, n) == 0; }

static void test_encodings_match_protobuf_documentation(void)
{
    pt_pb b = {0};
    pt_pb_int(&b, 1, 150); /* the encoding guide's first example */
    CHECK(same(&b, (const uint8_t[]){0x08, 0x96, 0x01}, 3));
    pt_pb_reset(&b);
    pt_pb_string(&b, 2, "testing");
    CHECK(same(&b, (const uint8_t[]){0x12, 0x07, 't', 'e', 's', 't', 'i', 'n', 'g'}, 9));
    pt_pb sub = {0};
    pt_pb_int(&sub, 1, 150);
    pt_pb_reset(&b);
    pt_pb_message(&b, 3, &sub);
    CHECK(same(&b, (const uint8_t[]){0x1a, 0x03, 0x08, 0x96, 0x01}, 5));
    pt_pb_reset(&b);
    pt_pb_int(&b, 1, -1); /* int64: ten bytes of two's complement */
    CHECK(same(&b, (const uint8_t[]){0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 11));
    pt_pb_reset(&b);
    pt_pb_float(&b, 2, 1.0f);
    CHECK(same(&b, (const uint8_t[]){0x15, 0x00, 0x00, 0x80, 0x3f}, 5));
    pt_pb_reset(&b);
    pt_pb_int(&b, 20, 300); /* a two-byte tag */
    CHECK(same(&b, (const uint8_t[]){0xa0, 0x01, 0xac, 0x02}, 4));
    const uint64_t v[] = {0, 127, 128, 16383, 16384, UINT64_MAX};
    const size_t n[] = {1, 1, 2, 2, 3, 10};
    for (int i = 0; i < 6; i++) {
        pt_pb_reset(&b);
        pt_pb_varint(&b, v[i]);
        CHECKF(b.len == n[i] && pt_pb_varint_size(v[i]) == n[i], "varint %llu: %zu bytes", (unsigned long long)v[i], b.len);
    }
    pt_pb_reset(&b);
    pt_pb_len_prefix(&b, 9, 300);
    CHECK(pt_pb_len_field_size(9, 300) == b.len + 300);
    CHECK(pt_pb_check(&b, NULL) == PT_OK);
    pt_pb_free(&b);
    pt_pb_free(&sub);
}

/* ---- a wire-format reader: fields of one message ---- */
typedef struct field {
    int number, wire;
    uint64_t v;          /* varint or fixed value */
    const uint8_t *p;    /* length-delimited payload */
    size_t n;
} field;

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int s = 0; s < 70 && *p < end; s += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << s;
        if (!(b & 0x80)) return 1;
    }
    return 0;
}

/* The next field at *p, or 0 at the end or on a malformed field (*bad set). */
static int next_field(const uint8_t **p, const uint8_t *end, field *f, int *bad)
{
    if (*p >= end) return 0;
    uint64_t tag;
    if (!read_varint(p, end, &tag)) return (*bad = 1), 0;
    f->number = (int)(tag >> 3);
    f->wire = (int)(tag & 7);
    if (f->wire == PT_PB_VARINT) {
        if (!read_varint(p, end, &f->v)) return (*bad = 1), 0;
    } else if (f->wire == PT_PB_FIXED32) {
        if (end - *p < 4) return (*bad = 1), 0;
        f->v = (uint64_t)(*p)[0] | (uint64_t)(*p)[1] << 8 | (uint64_t)(*p)[2] << 16 | (uint64_t)(*p)[3] << 24;
        *p += 4;
    } else if (f->wire == PT_PB_LEN) {
        uint64_t n;
        if (!read_varint(p, end, &n) || n > (uint64_t)(end - *p)) return (*bad = 1), 0;
        f->p = *p;
        f->n = (size_t)n;
        *p += n;
    } else {
        return (*bad = 1), 0;
    }
    return 1;
}

/* The first string field `number` of a message, as a NUL-terminated copy in buf. */
static const char *string_field(const uint8_t *p, size_t n, int number, char *buf, size_t cap)
{
    const uint8_t *end = p + n;
    field f;
    int bad = 0;
    buf[0] = '\0';
    while (next_field(&p, end, &f, &bad))
        if (f.number == number && f.wire == PT_PB_LEN && f.n < cap) {
            memcpy(buf, f.p, f.n);
            buf[f.n] = '\0';
            break;
        }
    return buf;
}

static pt_net *tiny_net(void)
{
    pt_net *net = pt_net_new(3, 8, 8, 5);
    int x = pt_net_input(net);
    x = pt_net_conv2d(net, x, "conv", 4, 3, 1, 1, 1);
    x = pt_net_batchnorm2d(net, x, "bn");
    x = pt_net_relu(net, x);
    x = pt_net_dropout(net, x, 0.5f);
    x = pt_net_global_avgpool(net, x);
    x = pt_net_linear(net, x, "fc", 5, 0);
    pt_error e;
    CHECKF(pt_net_finish(net, x, &e) == PT_OK, "%s", e.msg);
    return net;
}

static void test_exported_net_reads_back_as_its_model(void)
{
    pt_net *net = tiny_net();
    const int64_t P = pt_net_param_region(net), B = pt_net_buffer_region(net);
    float *params = calloc((size_t)P, sizeof(float)), *buffers = calloc((size_t)B, sizeof(float));
    for (int64_t i = 0; i < P; i++) params[i] = (float)i * 0.25f - 3.0f;
    for (int64_t i = 0; i < B; i++) buffers[i] = 1.0f + (float)i;
    char path[256];
    snprintf(path, sizeof path, "%s/test_onnx.%d.onnx", getenv("PT_TEST_TMP") ? getenv("PT_TEST_TMP") : "/tmp",
             (int)getpid());
    pt_mkdir_p(getenv("PT_TEST_TMP") ? getenv("PT_TEST_TMP") : "/tmp", NULL);
    const pt_onnx_prop props[1] = {{"mean", "[0.5,0.5,0.5]"}};
    pt_onnx_options o = {.opset = 17, .props = props, .nprops = 1, .doc_string = "doc"};
    pt_onnx_summary sum;
    pt_error err;
    CHECKF(pt_onnx_write(path, net, params, buffers, &o, &sum, &err) == PT_OK, "%s", err.msg);
    void *data = NULL;
    size_t size = 0;
    CHECKF(pt_read_file(path, 1u << 24, &data, &size, &err) == PT_OK, "%s", err.msg);
    CHECK(size == sum.bytes);

    const uint8_t *p = data, *end = p + size;
    field f;
    int bad = 0, graphs = 0, props_seen = 0;
    int64_t ir = -1, opset = -1;
    char ops[16][32];
    int nops = 0, inits = 0, weights_ok = 1;
    char buf[256];
    while (next_field(&p, end, &f, &bad)) {
        if (f.number == 1 && f.wire == PT_PB_VARINT) ir = (int64_t)f.v;
        if (f.number == 8 && f.wire == PT_PB_LEN) {
            const uint8_t *q = f.p;
            field g;
            while (next_field(&q, f.p + f.n, &g, &bad))
                if (g.number == 2) opset = (int64_t)g.v;
        }
        if (f.number == 14 && f.wire == PT_PB_LEN)
            props_seen += strcmp(string_field(f.p, f.n, 1, buf, sizeof buf), "mean") == 0;
        if (f.number != 7 || f.wire != PT_PB_LEN) continue;
        graphs++;
        const uint8_t *q = f.p;
        field g;
        while (next_field(&q, f.p + f.n, &g, &bad)) {
            if (g.number == 1 && nops < 16) snprintf(ops[nops++], sizeof ops[0], "%s", string_field(g.p, g.n, 4, buf, sizeof buf));
            if (g.number != 5) continue;
            inits++;
            /* the raw data of a float initializer is the named parameter's values */
            string_field(g.p, g.n, 8, buf, sizeof buf);
            const uint8_t *r = g.p;
            field t;
            while (next_field(&r, g.p + g.n, &t, &bad)) {
                if (t.number != 9) continue;
                int pi = pt_net_find_param(net, buf), bi = pt_net_find_buffer(net, buf);
                const float *want = pi >= 0 ? params + net->params[pi].offset : bi >= 0 ? buffers + net->buffers[bi].offset : NULL;
                size_t bytes = pi >= 0 ? (size_t)net->params[pi].numel * 4 : bi >= 0 ? (size_t)net->buffers[bi].numel * 4 : 0;
                weights_ok &= want && t.n == bytes && memcmp(t.p, want, bytes) == 0;
            }
        }
    }
    CHECK(!bad && p == end);
    CHECK(graphs == 1 && ir == 8 && opset == 17 && props_seen == 1);
    /* conv, bn, relu, (dropout left out), GAP + flatten, gemm */
    const char *want_ops[] = {"Conv", "BatchNormalization", "Relu", "GlobalAveragePool", "Flatten", "Gemm"};
    CHECKF(nops == 6, "%d nodes", nops);
    for (int i = 0; i < nops && i < 6; i++) CHECKF(strcmp(ops[i], want_ops[i]) == 0, "node %d is %s", i, ops[i]);
    CHECKF(inits == net->nparams + net->nbuffers && inits == sum.initializers, "%d initializers", inits);
    CHECK(weights_ok);
    free(data);
    unlink(path);

    /* an opset outside the known range writes nothing */
    o.opset = 12;
    CHECK(pt_onnx_write(path, net, params, buffers, &o, NULL, &err) == PT_ERR_INVALID && strstr(err.msg, "opset 12"));
    CHECK(!pt_path_exists(path));
    free(params);
    free(buffers);
    pt_net_free(net);
}

int main(void)
{
    RUN(test_encodings_match_protobuf_documentation);
    RUN(test_exported_net_reads_back_as_its_model);
    TEST_EXIT();
}
