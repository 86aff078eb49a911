/* core/init_from.c: a plain safetensors state dict into a small conv-BN-fc net. Exact F32,
 * F16, BF16 and F64 values arrive as float32; a 3-channel first convolution is summed for a
 * 1-channel net; the head is reset (seeded init) with reset_head, and a head of another shape
 * or a missing one is refused without it, the message suggesting --reset-head; every kind of
 * mismatch is counted and listed (the first PT_INIT_LIST_MAX); bad values and broken files
 * are refused; a checkpoint directory is read through its model.safetensors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/half.h"
#include "core/init_from.h"
#include "polytrain/replica.h"
#include "core/safetensors.h"
#include "pt_test.h"

static char root[512];

static const char *at(const char *leaf)
{
    static char path[4][1024];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, sizeof path[0], "%s/%s", root, leaf);
    return p;
}

/* conv1 (4 filters 3x3 over `channels`) -> bn1 -> relu -> global average pool -> fc (classes) */
static pt_net *small_net(int channels, int classes)
{
    pt_net *net = pt_net_new(channels, 8, 8, classes);
    int x = pt_net_input(net);
    x = pt_net_conv2d(net, x, "conv1", 4, 3, 1, 1, 0);
    x = pt_net_batchnorm2d(net, x, "bn1");
    x = pt_net_relu(net, x);
    x = pt_net_global_avgpool(net, x);
    x = pt_net_linear(net, x, "fc", classes, 1);
    pt_error err;
    CHECKF(pt_net_finish(net, x, &err) == PT_OK, "%s", err.msg);
    return net;
}

/* A file builder: tensors by name with values f(i) in a dtype. */
typedef struct file_builder {
    pt_st_writer *w;
    void *bufs[64];
    int n;
} file_builder;

static void fb_init(file_builder *b)
{
    memset(b, 0, sizeof *b);
    pt_error err;
    CHECK(pt_st_writer_new(&b->w, &err) == PT_OK);
}

static float value(int64_t i, int seed) { return (float)((i * 7 + seed) % 13 - 6) * 0.25f; }

static void fb_add(file_builder *b, const char *name, pt_st_dtype dt, int ndim, const int64_t *shape, int seed)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    size_t es = pt_st_dtype_size(dt);
    unsigned char *p = calloc((size_t)(n > 0 ? n : 1), es);
    const int var = strstr(name, "running_var") != NULL; /* a variance: positive */
    for (int64_t i = 0; i < n; i++) {
        const float v = var ? fabsf(value(i, seed)) + 0.5f : value(i, seed);
        if (dt == PT_ST_F32) memcpy(p + i * 4, &v, 4);
        if (dt == PT_ST_F64) {
            const double d = v;
            memcpy(p + i * 8, &d, 8);
        }
        if (dt == PT_ST_F16) {
            const uint16_t h = pt_f16_from_f32(v);
            memcpy(p + i * 2, &h, 2);
        }
        if (dt == PT_ST_BF16) {
            const uint16_t h = pt_bf16_from_f32(v);
            memcpy(p + i * 2, &h, 2);
        }
        if (dt == PT_ST_I64) {
            const int64_t c = 5 + seed;
            memcpy(p + i * 8, &c, 8);
        }
    }
    b->bufs[b->n++] = p;
    pt_error err;
    CHECKF(pt_st_writer_add(b->w, name, dt, ndim, shape, p, PT_ST_BORROW, &err) == PT_OK, "%s", err.msg);
}

/* The net's state dict, as PyTorch would save it; skip: a name left out. */
static void fb_net(file_builder *b, int channels, int classes, pt_st_dtype conv_dtype, const char *skip)
{
    const int64_t conv[4] = {4, channels, 3, 3}, four[1] = {4}, fcw[2] = {classes, 4}, fcb[1] = {classes};
    struct { const char *name; pt_st_dtype dt; int ndim; const int64_t *shape; } e[] = {
        {"conv1.weight", conv_dtype, 4, conv},  {"bn1.weight", PT_ST_F32, 1, four},
        {"bn1.bias", PT_ST_F32, 1, four},       {"bn1.running_mean", PT_ST_F32, 1, four},
        {"bn1.running_var", PT_ST_F32, 1, four}, {"bn1.num_batches_tracked", PT_ST_I64, 0, NULL},
        {"fc.weight", PT_ST_F32, 2, fcw},       {"fc.bias", PT_ST_F32, 1, fcb}};
    for (size_t i = 0; i < sizeof e / sizeof e[0]; i++)
        if (!skip || strcmp(skip, e[i].name) != 0) fb_add(b, e[i].name, e[i].dt, e[i].ndim, e[i].shape, (int)i);
}

static void fb_write(file_builder *b, const char *path)
{
    pt_error err;
    CHECKF(pt_st_write_atomic(b->w, path, &err) == PT_OK, "%s", err.msg);
    pt_st_writer_free(b->w);
    for (int i = 0; i < b->n; i++) free(b->bufs[i]);
}

typedef struct loaded {
    pt_status st;
    pt_init_result res;
    pt_error err;
    pt_strbuf detail;
    float *params, *buffers;
} loaded;

static void load(loaded *l, const char *path, const pt_net *net, int reset_head)
{
    memset(l, 0, sizeof *l);
    pt_strbuf_init(&l->detail);
    l->params = calloc((size_t)pt_net_param_region(net) + 1, sizeof(float));
    l->buffers = calloc((size_t)pt_net_buffer_region(net) + 1, sizeof(float));
    l->st = pt_init_from_read(path, net, 3, reset_head, l->params, l->buffers, &l->res, &l->detail, &l->err);
}

static void loaded_free(loaded *l)
{
    free(l->params);
    free(l->buffers);
    pt_strbuf_free(&l->detail);
}

static const float *param(const pt_net *net, const loaded *l, const char *name)
{
    return l->params + net->params[pt_net_find_param(net, name)].offset;
}

static void test_every_float_dtype_arrives_exactly(void)
{
    const pt_st_dtype dts[4] = {PT_ST_F32, PT_ST_F16, PT_ST_BF16, PT_ST_F64};
    pt_net *net = small_net(1, 3);
    for (int k = 0; k < 4; k++) {
        file_builder b;
        fb_init(&b);
        fb_net(&b, 1, 3, dts[k], NULL);
        fb_write(&b, at("dtypes.safetensors"));
        loaded l;
        load(&l, at("dtypes.safetensors"), net, 0);
        CHECKF(l.st == PT_OK, "%s: %s", pt_st_dtype_name(dts[k]), l.err.msg);
        if (l.st == PT_OK) {
            const float *w = param(net, &l, "conv1.weight");
            int same = 1;
            for (int i = 0; i < 36; i++) same &= w[i] == value(i, 0); /* quarters: exact in every dtype */
            CHECKF(same, "%s", pt_st_dtype_name(dts[k]));
            CHECK(param(net, &l, "fc.bias")[2] == value(2, 7));
            const float *var = l.buffers + net->buffers[pt_net_find_buffer(net, "bn1.running_var")].offset;
            CHECK(var[1] == fabsf(value(1, 4)) + 0.5f);
            CHECK(l.res.loaded == 8 && l.res.file_tensors == 8 && l.res.bn_steps == 10);
            CHECK(l.res.head_reset == PT_HEAD_LOADED && strcmp(l.res.head, "fc") == 0);
            CHECKF(strcmp(l.res.converted, k ? pt_st_dtype_name(dts[k]) : "") == 0, "'%s'", l.res.converted);
        }
        loaded_free(&l);
    }
    pt_net_free(net);
}

static void test_rgb_first_convolution_is_summed_for_one_channel(void)
{
    pt_net *net = small_net(1, 3);
    file_builder b;
    fb_init(&b);
    fb_net(&b, 3, 3, PT_ST_F32, NULL);
    fb_write(&b, at("rgb.safetensors"));
    loaded l;
    load(&l, at("rgb.safetensors"), net, 0);
    CHECKF(l.st == PT_OK, "%s", l.err.msg);
    if (l.st == PT_OK) {
        const float *w = param(net, &l, "conv1.weight");
        int same = 1;
        for (int o = 0; o < 4; o++)
            for (int k = 0; k < 9; k++)
                same &= w[o * 9 + k] == value((o * 3 + 0) * 9 + k, 0) + value((o * 3 + 1) * 9 + k, 0) +
                                            value((o * 3 + 2) * 9 + k, 0);
        CHECK(same);
        CHECK(strcmp(l.res.summed, "conv1.weight") == 0 && l.res.summed_from == 3);
        char line[1024];
        pt_init_result_describe(&l.res, line, sizeof line);
        CHECKF(strstr(line, "8 tensors") && strstr(line, "conv1.weight summed over the file's 3 input channels"),
               "%s", line);
    }
    loaded_free(&l);
    /* a 3-channel net takes no 1-channel weight: that is a shape mismatch */
    pt_net *rgb = small_net(3, 3);
    file_builder g;
    fb_init(&g);
    fb_net(&g, 1, 3, PT_ST_F32, NULL);
    fb_write(&g, at("gray.safetensors"));
    load(&l, at("gray.safetensors"), rgb, 0);
    CHECKF(l.st == PT_ERR_MISMATCH && strstr(l.detail.data, "conv1.weight: model [4,3,3,3], file [4,1,3,3]"), "%s",
           l.detail.data ? l.detail.data : l.err.msg);
    loaded_free(&l);
    pt_net_free(rgb);
    pt_net_free(net);
}

static void test_head_of_another_shape_needs_reset_head(void)
{
    pt_net *net = small_net(1, 3);
    file_builder b;
    fb_init(&b);
    fb_net(&b, 1, 1000, PT_ST_F32, NULL);
    fb_write(&b, at("head.safetensors"));
    loaded l;
    load(&l, at("head.safetensors"), net, 0);
    CHECKF(l.st == PT_ERR_MISMATCH && strstr(l.err.msg, "--reset-head") && strstr(l.err.msg, "fc.* differs"), "%s",
           l.err.msg);
    CHECKF(l.detail.data && strstr(l.detail.data, "another shape or dtype (2): fc.weight: model [3,4], file [1000,4]"),
           "%s", l.detail.data ? l.detail.data : "");
    loaded_free(&l);

    load(&l, at("head.safetensors"), net, 1);
    CHECKF(l.st == PT_OK, "%s", l.err.msg);
    float *p = calloc((size_t)pt_net_param_region(net), sizeof(float));
    float *q = calloc((size_t)pt_net_buffer_region(net) + 1, sizeof(float));
    pt_net_init_values(net, 3, p, q);
    const int fw = net->params[pt_net_find_param(net, "fc.weight")].offset;
    CHECK(l.st == PT_OK && memcmp(l.params + fw, p + fw, 12 * sizeof(float)) == 0); /* the seeded init */
    CHECK(l.res.head_reset == PT_HEAD_RESET_SHAPE && l.res.file_classes == 1000 && l.res.loaded == 6);
    char line[1024];
    pt_init_result_describe(&l.res, line, sizeof line);
    CHECKF(strstr(line, "6 tensors; head fc.* reset (3 classes, the file has 1000)"), "%s", line);
    free(p);
    free(q);
    loaded_free(&l);
    pt_net_free(net);
}

static void test_missing_head_needs_reset_head(void)
{
    pt_net *net = small_net(1, 3);
    file_builder b;
    fb_init(&b);
    fb_net(&b, 1, 3, PT_ST_F32, "fc.bias");
    fb_write(&b, at("nohead.safetensors"));
    loaded l;
    load(&l, at("nohead.safetensors"), net, 0);
    CHECKF(l.st == PT_ERR_MISMATCH && strstr(l.err.msg, "is not in the file") && strstr(l.err.msg, "--reset-head"),
           "%s", l.err.msg);
    CHECK(l.detail.data && strstr(l.detail.data, "missing, as the model has them (1): fc.bias [3]"));
    loaded_free(&l);
    load(&l, at("nohead.safetensors"), net, 1);
    CHECKF(l.st == PT_OK && l.res.head_reset == PT_HEAD_RESET_ASKED, "%s", l.err.msg);
    loaded_free(&l);
    pt_net_free(net);
}

static void test_mismatches_are_counted_and_the_first_listed(void)
{
    pt_net *net = small_net(1, 3);
    file_builder b;
    fb_init(&b);
    fb_net(&b, 1, 3, PT_ST_F32, "bn1.running_mean");
    const int64_t one[1] = {1};
    for (int i = 0; i < PT_INIT_LIST_MAX + 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "extra.%02d", i);
        fb_add(&b, name, PT_ST_F32, 1, one, i);
    }
    fb_write(&b, at("extra.safetensors"));
    loaded l;
    load(&l, at("extra.safetensors"), net, 0);
    CHECKF(l.st == PT_ERR_MISMATCH && strstr(l.err.msg, "1 missing, 15 unexpected") &&
               strstr(l.err.msg, "of its 8 entries 7 match") && !strstr(l.err.msg, "--reset-head"),
           "%s", l.err.msg);
    const char *d = l.detail.data ? l.detail.data : "";
    CHECKF(strstr(d, "missing, as the model has them (1): bn1.running_mean [4]") &&
               strstr(d, "unexpected, not in the model (15): extra.00 F32[1]") &&
               strstr(d, "extra.09 F32[1], ... (5 more)") &&
               !strstr(d, "extra.10"),
           "%s", d);
    loaded_free(&l);
    pt_net_free(net);
}

static void test_bad_values_and_dtypes_are_refused(void)
{
    pt_net *net = small_net(1, 3);
    /* an integer weight, a non-finite value, a negative variance, a float count */
    file_builder b;
    fb_init(&b);
    const int64_t conv[4] = {4, 1, 3, 3}, four[1] = {4}, fcw[2] = {3, 4}, fcb[1] = {3};
    fb_add(&b, "conv1.weight", PT_ST_I32, 4, conv, 0);
    fb_add(&b, "bn1.weight", PT_ST_F32, 1, four, 0);
    float *bias = calloc(4, sizeof(float));
    bias[2] = INFINITY;
    float *var = calloc(4, sizeof(float));
    var[1] = -1.0f;
    pt_error err;
    CHECK(pt_st_writer_add(b.w, "bn1.bias", PT_ST_F32, 1, four, bias, PT_ST_COPY, &err) == PT_OK);
    CHECK(pt_st_writer_add(b.w, "bn1.running_var", PT_ST_F32, 1, four, var, PT_ST_COPY, &err) == PT_OK);
    fb_add(&b, "bn1.running_mean", PT_ST_F32, 1, four, 0);
    fb_add(&b, "bn1.num_batches_tracked", PT_ST_F32, 0, NULL, 0);
    fb_add(&b, "fc.weight", PT_ST_F32, 2, fcw, 0);
    fb_add(&b, "fc.bias", PT_ST_F32, 1, fcb, 0);
    fb_write(&b, at("bad.safetensors"));
    free(bias);
    free(var);
    loaded l;
    load(&l, at("bad.safetensors"), net, 0);
    const char *d = l.detail.data ? l.detail.data : "";
    CHECKF(l.st == PT_ERR_MISMATCH && strstr(l.err.msg, "2 of another shape or dtype, 2 with bad values"), "%s",
           l.err.msg);
    CHECKF(strstr(d, "conv1.weight: model F32[4,1,3,3], file I32") &&
               strstr(d, "bn1.num_batches_tracked: model I64[], file F32[]") &&
               strstr(d, "bn1.bias holds a non-finite value") &&
               strstr(d, "bn1.running_var holds a negative variance") &&
               strstr(d, "F32, F16, BF16 or F64"),
           "%s", d);
    loaded_free(&l);
    pt_net_free(net);
}

static void test_broken_files_and_directories(void)
{
    pt_net *net = small_net(1, 3);
    file_builder b;
    fb_init(&b);
    fb_net(&b, 1, 3, PT_ST_F32, NULL);
    pt_error err;
    CHECK(pt_mkdir_p(at("run/best"), &err) == PT_OK);
    fb_write(&b, at("run/best/model.safetensors"));
    loaded l;
    load(&l, at("run/best"), net, 0);
    CHECKF(l.st == PT_OK && strstr(l.res.file, "run/best/model.safetensors"), "%s", l.err.msg);
    loaded_free(&l);
    load(&l, at("run"), net, 0);
    CHECKF(l.st == PT_ERR_IO && strstr(l.err.msg, "without model.safetensors"), "%s", l.err.msg);
    loaded_free(&l);
    load(&l, at("nothing.safetensors"), net, 0);
    CHECKF(l.st == PT_ERR_IO && strstr(l.err.msg, "does not exist"), "%s", l.err.msg);
    loaded_free(&l);
    /* the first half of a good file */
    void *bytes = NULL;
    size_t size = 0;
    CHECK(pt_read_file(at("run/best/model.safetensors"), 1 << 20, &bytes, &size, &err) == PT_OK);
    FILE *f = fopen(at("half.safetensors"), "wb");
    CHECK(f && fwrite(bytes, 1, size / 2, f) == size / 2);
    if (f) fclose(f);
    free(bytes);
    load(&l, at("half.safetensors"), net, 0);
    CHECKF(l.st == PT_ERR_FORMAT && strstr(l.err.msg, "not a readable safetensors state dict") &&
               strstr(l.err.msg, "half.safetensors"),
           "%s", l.err.msg);
    loaded_free(&l);
    pt_net_free(net);
}

int main(void)
{
    const char *base = getenv("PT_TEST_TMP");
    if (!base || !base[0]) base = "/tmp";
    snprintf(root, sizeof root, "%s/test_init_from.%ld", base, (long)getpid());
    pt_error err;
    if (pt_remove_tree(root, &err) != PT_OK || pt_mkdir_p(root, &err) != PT_OK) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return 1;
    }
    RUN(test_every_float_dtype_arrives_exactly);
    RUN(test_rgb_first_convolution_is_summed_for_one_channel);
    RUN(test_head_of_another_shape_needs_reset_head);
    RUN(test_missing_head_needs_reset_head);
    RUN(test_mismatches_are_counted_and_the_first_listed);
    RUN(test_bad_values_and_dtypes_are_refused);
    RUN(test_broken_files_and_directories);
    pt_remove_tree(root, &err);
    TEST_EXIT();
}
