/* core/checkpoint: a saved checkpoint loads back bit for bit (parameters, BN buffers,
 * optimizer state, progress); every damaged or mismatched checkpoint is refused with a
 * message naming the file and tensor, leaving the replica untouched; an interrupted or
 * failed save never costs the last complete checkpoint. Runs on the cpu backend. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "polytrain/checkpoint.h"
#include "core/fileio.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "pt_test.h"

#define CAP 8
#define KCLS 4

static char root[512];
static pt_device *dev;

static const char *at(const char *leaf)
{
    static char buf[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", root, leaf);
    return buf[k];
}

/* conv(bias)-bn-relu-maxpool-gap-linear on 1x8x8: every kind of saved tensor. */
static pt_net *small_net(int classes)
{
    pt_net *net = pt_net_new(1, 8, 8, classes);
    int x = pt_net_input(net);
    x = pt_net_conv2d(net, x, "conv1", 4, 3, 1, 1, 1);
    x = pt_net_batchnorm2d(net, x, "bn1");
    x = pt_net_relu(net, x);
    x = pt_net_maxpool2d(net, x, 2, 2, 0);
    x = pt_net_conv2d(net, x, "conv2", 6, 3, 1, 1, 0);
    x = pt_net_batchnorm2d(net, x, "bn2");
    x = pt_net_relu(net, x);
    x = pt_net_global_avgpool(net, x);
    x = pt_net_linear(net, x, "fc", classes, 1);
    pt_error err;
    pt_error_clear(&err);
    if (pt_net_finish(net, x, &err) != PT_OK) {
        fprintf(stderr, "small_net: %s\n", err.msg);
        pt_net_free(net);
        return NULL;
    }
    return net;
}

static pt_replica *make_replica(const pt_net *net, pt_optim_kind kind, uint64_t seed)
{
    pt_optim_config oc = pt_optim_defaults(kind);
    pt_replica *r = NULL;
    pt_error err;
    pt_error_clear(&err);
    if (pt_replica_create(net, dev, CAP, &oc, seed, &r, &err) != PT_OK ||
        pt_replica_init_params(r, seed, &err) != PT_OK) {
        fprintf(stderr, "make_replica: %s\n", err.msg);
        pt_replica_free(r);
        return NULL;
    }
    return r;
}

/* A few SGD steps on random data so parameters, BN statistics and momentum all differ
 * from their initial values. */
static int train_steps(pt_replica *r, int steps, uint64_t key)
{
    const pt_net *net = pt_replica_net(r);
    float x[CAP * 64];
    int32_t y[CAP];
    pt_error err;
    pt_error_clear(&err);
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < CAP * 64; i++) x[i] = pt_rng_normal(key, PT_RNG_INIT, (uint64_t)s, (uint64_t)i, 7);
        for (int i = 0; i < CAP; i++) y[i] = (int32_t)((unsigned)(i + s) % (unsigned)net->num_classes);
        if (pt_replica_forward_backward(r, x, y, CAP, 0, s, 1.0f / CAP, NULL, NULL, &err) != PT_OK ||
            pt_replica_update(r, 0.05f, s + 1, &err) != PT_OK) {
            fprintf(stderr, "train_steps: %s\n", err.msg);
            return 0;
        }
    }
    return 1;
}

typedef struct state {
    float *params, *buffers, *opt;
    int64_t P, B;
    int slots;
} state;

static state read_state(pt_replica *r)
{
    state s;
    s.P = pt_replica_param_region(r);
    s.B = pt_replica_buffer_region(r);
    s.slots = pt_replica_opt_slots(r);
    s.params = malloc((size_t)s.P * sizeof(float));
    s.buffers = malloc((size_t)(s.B + 1) * sizeof(float));
    s.opt = malloc((size_t)(s.slots * s.P + 1) * sizeof(float));
    pt_error err;
    pt_error_clear(&err);
    pt_status st = pt_replica_read_state(r, s.params, s.buffers, s.opt, &err);
    CHECKF(st == PT_OK, "%s", err.msg);
    return s;
}

static void free_state(state *s)
{
    free(s->params);
    free(s->buffers);
    free(s->opt);
}

/* Bitwise equality of every parameter, buffer and optimizer slot (padding excluded). */
static int same_state(const pt_net *net, const state *a, const state *b, int with_opt)
{
    for (int i = 0; i < net->nparams; i++) {
        const pt_param_info *p = &net->params[i];
        size_t bytes = (size_t)p->numel * sizeof(float);
        if (memcmp(a->params + p->offset, b->params + p->offset, bytes)) return 0;
        for (int s = 0; with_opt && s < a->slots; s++)
            if (memcmp(a->opt + s * a->P + p->offset, b->opt + s * b->P + p->offset, bytes)) return 0;
    }
    for (int i = 0; i < net->nbuffers; i++) {
        const pt_buffer_info *q = &net->buffers[i];
        if (memcmp(a->buffers + q->offset, b->buffers + q->offset, (size_t)q->numel * sizeof(float)))
            return 0;
    }
    return 1;
}

static const char *const class_names[KCLS] = {"T-shirt/top", "say \"hi\"", "caf\xc3\xa9", "d"};

static pt_model_meta test_meta(int classes)
{
    pt_model_meta m;
    memset(&m, 0, sizeof m);
    snprintf(m.model, sizeof m.model, "tiny");
    m.in_channels = 1;
    m.height = m.width = 8;
    m.num_classes = classes;
    m.mean[0] = 0.2860402f;
    m.std[0] = 0.3530239f;
    m.class_names = (char **)(classes == KCLS ? class_names : NULL);
    return m;
}

static pt_train_progress test_progress(pt_replica *r)
{
    pt_train_progress p;
    memset(&p, 0, sizeof p);
    p.epoch = 3;
    p.global_step = 3;
    p.bn_steps = pt_replica_bn_steps(r);
    p.seed = 18446744073709551557ull; /* needs all 64 bits */
    p.best_top1 = 0.6251;
    p.best_epoch = 2;
    snprintf(p.schedule, sizeof p.schedule, "{\"kind\":\"cosine\",\"step\":3}");
    return p;
}

/* The fixture every test starts from: a trained replica and its checkpoint in dir. */
typedef struct fixture {
    pt_net *net;
    pt_replica *r;
    state s;
} fixture;

static int fixture_make(fixture *f, const char *dir)
{
    memset(f, 0, sizeof *f);
    f->net = small_net(KCLS);
    if (!f->net) return 0;
    f->r = make_replica(f->net, PT_OPTIM_SGD, 11);
    if (!f->r || !train_steps(f->r, 3, 5)) return 0;
    f->s = read_state(f->r);
    pt_model_meta m = test_meta(KCLS);
    pt_train_progress p = test_progress(f->r);
    pt_error err;
    pt_error_clear(&err);
    pt_status st = pt_checkpoint_save(dir, f->r, &m, &p, &err);
    CHECKF(st == PT_OK, "save %s: %s", dir, err.msg);
    return st == PT_OK;
}

static void fixture_free(fixture *f)
{
    free_state(&f->s);
    pt_replica_free(f->r);
    pt_net_free(f->net);
}

/* Loads dir into a fresh replica of the fixture's net; 1 if it holds the fixture's state. */
static int loads_fixture_state(fixture *f, const char *dir)
{
    pt_replica *r = make_replica(f->net, PT_OPTIM_SGD, 99);
    if (!r) return 0;
    pt_train_progress p;
    pt_error err;
    pt_error_clear(&err);
    pt_status st = pt_checkpoint_load(dir, r, &p, &err);
    CHECKF(st == PT_OK, "load %s: %s", dir, err.msg);
    int same = 0;
    if (st == PT_OK) {
        state s = read_state(r);
        same = same_state(f->net, &f->s, &s, 1);
        free_state(&s);
    }
    pt_replica_free(r);
    return same;
}

/* ---------------------------------------------------------------- round trip */

static void test_save_then_load_is_bitwise_identical(void)
{
    fixture f;
    if (!fixture_make(&f, at("rt"))) { fixture_free(&f); return; }
    CHECK(pt_path_exists(at("rt/model.safetensors")));
    CHECK(pt_path_exists(at("rt/optimizer.safetensors")));
    CHECK(!pt_path_exists(at("rt.tmp")) && !pt_path_exists(at("rt.old")));

    pt_replica *r = make_replica(f.net, PT_OPTIM_SGD, 99);
    state before = read_state(r);
    CHECK(!same_state(f.net, &f.s, &before, 0)); /* different seed: the load must change it */
    free_state(&before);
    pt_train_progress p;
    pt_error err;
    pt_error_clear(&err);
    CHECK(pt_replica_optimizer_started(r) == 0);
    pt_status st = pt_checkpoint_load(at("rt"), r, &p, &err);
    CHECKF(st == PT_OK, "%s", err.msg);
    state s = read_state(r);
    CHECK(same_state(f.net, &f.s, &s, 1));
    free_state(&s);

    pt_train_progress want = test_progress(f.r);
    CHECK(p.epoch == want.epoch);
    CHECK(p.global_step == want.global_step);
    CHECKF(p.bn_steps == 3 && p.bn_steps == want.bn_steps, "%lld", (long long)p.bn_steps);
    CHECK(p.seed == want.seed);
    CHECK(p.best_top1 == want.best_top1);
    CHECK(p.best_epoch == want.best_epoch);
    CHECKF(strcmp(p.schedule, want.schedule) == 0, "%s", p.schedule);
    CHECK(pt_replica_bn_steps(r) == pt_replica_bn_steps(f.r));
    CHECK(pt_replica_optimizer_started(r) == 1);
    pt_replica_free(r);
    fixture_free(&f);
}

static void test_saved_tensors_have_pytorch_names_shapes_and_metadata(void)
{
    fixture f;
    if (!fixture_make(&f, at("names"))) { fixture_free(&f); return; }
    pt_st_file *st = NULL;
    pt_error err;
    pt_error_clear(&err);
    CHECKF(pt_st_open(at("names/model.safetensors"), &st, &err) == PT_OK, "%s", err.msg);
    if (st) {
        /* 5 conv/linear params + 4 BN affine + 4 running stats + 2 num_batches_tracked */
        CHECKF(pt_st_count(st) == 15, "%zu", pt_st_count(st));
        const pt_st_tensor *t = pt_st_find(st, "conv1.weight");
        CHECK(t && t->dtype == PT_ST_F32 && t->ndim == 4 && t->shape[0] == 4 && t->shape[1] == 1 &&
              t->shape[2] == 3 && t->shape[3] == 3);
        t = pt_st_find(st, "bn2.num_batches_tracked");
        int64_t v = -1;
        if (t) memcpy(&v, t->data, sizeof v);
        CHECK(t && t->dtype == PT_ST_I64 && t->ndim == 0 && v == 3);
        t = pt_st_find(st, "fc.weight");
        CHECK(t && t->ndim == 2 && t->shape[0] == KCLS && t->shape[1] == 6);
        CHECK(pt_st_find(st, "bn1.running_var") != NULL);
        CHECK(pt_st_meta(st, "framework") && strcmp(pt_st_meta(st, "framework"), "polytrain") == 0);
        CHECK(pt_st_meta(st, "format_version") && strcmp(pt_st_meta(st, "format_version"), "1") == 0);
        pt_st_close(st);
    }
    st = NULL;
    CHECKF(pt_st_open(at("names/optimizer.safetensors"), &st, &err) == PT_OK, "%s", err.msg);
    if (st) {
        CHECK(pt_st_count(st) == (size_t)f.net->nparams); /* one momentum_buffer each */
        CHECK(pt_st_find(st, "conv1.bias.momentum_buffer") != NULL);
        CHECK(pt_st_meta(st, "optimizer") && strcmp(pt_st_meta(st, "optimizer"), "sgd") == 0);
        pt_st_close(st);
    }

    pt_model_meta m;
    memset(&m, 0, sizeof m);
    CHECKF(pt_checkpoint_read_meta(at("names"), &m, &err) == PT_OK, "%s", err.msg);
    CHECK(strcmp(m.model, "tiny") == 0);
    CHECK(m.in_channels == 1 && m.height == 8 && m.width == 8 && m.num_classes == KCLS);
    CHECK(m.mean[0] == 0.2860402f && m.std[0] == 0.3530239f);
    int names_ok = m.class_names != NULL;
    for (int i = 0; names_ok && i < KCLS; i++) names_ok = strcmp(m.class_names[i], class_names[i]) == 0;
    CHECK(names_ok);
    pt_model_meta_free(&m);
    fixture_free(&f);
}

static void test_model_only_checkpoint_loads_without_progress(void)
{
    fixture f;
    if (!fixture_make(&f, at("mo_src"))) { fixture_free(&f); return; }
    pt_model_meta m = test_meta(KCLS);
    pt_error err;
    pt_error_clear(&err);
    CHECKF(pt_checkpoint_save(at("mo"), f.r, &m, NULL, &err) == PT_OK, "%s", err.msg);
    CHECK(!pt_path_exists(at("mo/optimizer.safetensors")));
    pt_replica *r = make_replica(f.net, PT_OPTIM_SGD, 99);
    CHECK(train_steps(r, 1, 4) && pt_replica_optimizer_started(r));
    CHECKF(pt_checkpoint_load(at("mo"), r, NULL, &err) == PT_OK, "%s", err.msg);
    /* its momentum is now zero, so the next SGD step must start it afresh */
    CHECK(pt_replica_optimizer_started(r) == 0);
    CHECK(pt_replica_bn_steps(r) == 3);
    state s = read_state(r);
    CHECK(same_state(f.net, &f.s, &s, 0));
    free_state(&s);
    pt_train_progress p;
    CHECK(pt_checkpoint_load(at("mo"), r, &p, &err) == PT_ERR_IO); /* asks for the optimizer */
    CHECKF(strstr(err.msg, "optimizer.safetensors") != NULL, "%s", err.msg);
    pt_replica_free(r);
    fixture_free(&f);
}

static void test_saving_again_replaces_the_checkpoint(void)
{
    fixture f;
    if (!fixture_make(&f, at("again"))) { fixture_free(&f); return; }
    CHECK(train_steps(f.r, 2, 77));
    free_state(&f.s);
    f.s = read_state(f.r);
    pt_model_meta m = test_meta(KCLS);
    pt_train_progress p = test_progress(f.r);
    pt_error err;
    pt_error_clear(&err);
    CHECKF(pt_checkpoint_save(at("again"), f.r, &m, &p, &err) == PT_OK, "%s", err.msg);
    CHECK(!pt_path_exists(at("again.tmp")) && !pt_path_exists(at("again.old")));
    CHECK(loads_fixture_state(&f, at("again")));
    fixture_free(&f);
}

/* ---------------------------------------------------------------- damaged checkpoints */

typedef enum edit {
    EDIT_DROP,   /* leave the tensor out */
    EDIT_EXTRA,  /* add a tensor named target that the model lacks */
    EDIT_SHAPE,  /* same bytes, another shape */
    EDIT_DTYPE,  /* same bytes, I32 instead of F32 */
    EDIT_NAN     /* one element NaN */
} edit;

static int copy_file(const char *from, const char *to)
{
    void *data = NULL;
    size_t size = 0;
    pt_error err;
    pt_error_clear(&err);
    if (pt_read_file(from, (size_t)1 << 30, &data, &size, &err) != PT_OK) return 0;
    const void *chunks[1] = {data};
    pt_status st = pt_write_file_atomic(to, chunks, &size, 1, &err);
    free(data);
    return st == PT_OK;
}

/* Rewrites src/<leaf> into dst/<leaf> with one tensor edited (the other file is copied). */
static int craft(const char *src, const char *dst, const char *leaf, edit e, const char *target)
{
    char in[1100], out[1100], other_in[1100], other_out[1100];
    const char *other = strcmp(leaf, "model.safetensors") ? "model.safetensors" : "optimizer.safetensors";
    snprintf(in, sizeof in, "%s/%s", src, leaf);
    snprintf(out, sizeof out, "%s/%s", dst, leaf);
    snprintf(other_in, sizeof other_in, "%s/%s", src, other);
    snprintf(other_out, sizeof other_out, "%s/%s", dst, other);
    pt_error err;
    pt_error_clear(&err);
    pt_st_file *f = NULL;
    pt_st_writer *w = NULL;
    if (pt_remove_tree(dst, &err) || pt_mkdir_p(dst, &err) || !copy_file(other_in, other_out) ||
        pt_st_open(in, &f, &err) || pt_st_writer_new(&w, &err)) {
        fprintf(stderr, "craft: %s\n", err.msg);
        pt_st_close(f);
        return 0;
    }
    pt_status st = PT_OK;
    int hit = 0;
    for (size_t i = 0; st == PT_OK && i < pt_st_count(f); i++) {
        const pt_st_tensor *t = pt_st_at(f, i);
        if (strcmp(t->name, target) != 0 || e == EDIT_EXTRA) {
            st = pt_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, PT_ST_BORROW, &err);
            continue;
        }
        hit = 1;
        if (e == EDIT_DROP) continue;
        if (e == EDIT_SHAPE) {
            int64_t flat[1] = {t->numel};
            st = pt_st_writer_add(w, t->name, t->dtype, 1, flat, t->data, PT_ST_BORROW, &err);
        } else if (e == EDIT_DTYPE) {
            st = pt_st_writer_add(w, t->name, PT_ST_I32, t->ndim, t->shape, t->data, PT_ST_BORROW, &err);
        } else if (e == EDIT_NAN) {
            float *copy = malloc(t->nbytes);
            memcpy(copy, t->data, t->nbytes);
            copy[t->numel / 2] = NAN;
            st = pt_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, copy, PT_ST_COPY, &err);
            free(copy);
        }
    }
    if (e == EDIT_EXTRA) {
        float extra[3] = {1, 2, 3};
        int64_t dim[1] = {3};
        hit = 1;
        if (st == PT_OK) st = pt_st_writer_add(w, target, PT_ST_F32, 1, dim, extra, PT_ST_COPY, &err);
    }
    for (size_t i = 0; st == PT_OK && i < pt_st_meta_count(f); i++) {
        const char *k, *v;
        pt_st_meta_at(f, i, &k, &v);
        st = pt_st_writer_add_meta(w, k, v, &err);
    }
    if (st == PT_OK) st = pt_st_write_atomic(w, out, &err);
    if (st != PT_OK) fprintf(stderr, "craft: %s\n", err.msg);
    pt_st_writer_free(w);
    pt_st_close(f);
    return st == PT_OK && hit;
}

/* Writes dst/ with model.safetensors replaced by raw bytes (optimizer copied). */
static int craft_raw(const char *src, const char *dst, const void *bytes, size_t size)
{
    char a[1100], b[1100];
    pt_error err;
    pt_error_clear(&err);
    if (pt_remove_tree(dst, &err) || pt_mkdir_p(dst, &err)) return 0;
    snprintf(a, sizeof a, "%s/optimizer.safetensors", src);
    snprintf(b, sizeof b, "%s/optimizer.safetensors", dst);
    if (!copy_file(a, b)) return 0;
    snprintf(b, sizeof b, "%s/model.safetensors", dst);
    const void *chunks[1] = {bytes};
    return pt_write_file_atomic(b, chunks, &size, 1, &err) == PT_OK;
}

/* Loading dir fails with a message holding both needles, and leaves the replica as it
 * was (parameters and buffers). */
static void expect_rejected(fixture *f, const char *dir, pt_optim_kind kind, const char *needle1,
                            const char *needle2)
{
    pt_replica *r = make_replica(f->net, kind, 99);
    if (!r) return;
    state before = read_state(r);
    pt_train_progress p;
    pt_error err;
    pt_error_clear(&err);
    pt_status st = pt_checkpoint_load(dir, r, &p, &err);
    CHECKF(st != PT_OK, "%s loaded", dir);
    if (getenv("PT_TEST_VERBOSE")) printf("  %s: %s\n", pt_status_name(st), err.msg);
    CHECKF(err.msg[0] && strstr(err.msg, needle1) != NULL, "'%s' not in: %s", needle1, err.msg);
    if (needle2) CHECKF(strstr(err.msg, needle2) != NULL, "'%s' not in: %s", needle2, err.msg);
    state after = read_state(r);
    CHECK(same_state(f->net, &before, &after, 1));
    CHECK(pt_replica_bn_steps(r) == 0 && pt_replica_optimizer_started(r) == 0);
    free_state(&before);
    free_state(&after);
    pt_replica_free(r);
}

static void test_load_rejects_a_missing_tensor(void)
{
    fixture f;
    if (!fixture_make(&f, at("bad_src1"))) { fixture_free(&f); return; }
    CHECK(craft(at("bad_src1"), at("missing"), "model.safetensors", EDIT_DROP, "bn2.running_mean"));
    expect_rejected(&f, at("missing"), PT_OPTIM_SGD, "model.safetensors", "bn2.running_mean");
    CHECK(craft(at("bad_src1"), at("missing_nbt"), "model.safetensors", EDIT_DROP, "bn1.num_batches_tracked"));
    expect_rejected(&f, at("missing_nbt"), PT_OPTIM_SGD, "model.safetensors", "bn1.num_batches_tracked");
    CHECK(craft(at("bad_src1"), at("missing_opt"), "optimizer.safetensors", EDIT_DROP,
                "fc.weight.momentum_buffer"));
    expect_rejected(&f, at("missing_opt"), PT_OPTIM_SGD, "optimizer.safetensors", "fc.weight.momentum_buffer");
    fixture_free(&f);
}

static void test_load_rejects_an_extra_tensor(void)
{
    fixture f;
    if (!fixture_make(&f, at("bad_src2"))) { fixture_free(&f); return; }
    CHECK(craft(at("bad_src2"), at("extra"), "model.safetensors", EDIT_EXTRA, "fc2.weight"));
    expect_rejected(&f, at("extra"), PT_OPTIM_SGD, "model.safetensors", "fc2.weight");
    CHECK(craft(at("bad_src2"), at("extra_opt"), "optimizer.safetensors", EDIT_EXTRA, "fc.weight.exp_avg"));
    expect_rejected(&f, at("extra_opt"), PT_OPTIM_SGD, "optimizer.safetensors", "fc.weight.exp_avg");
    /* a counter of a BatchNorm layer the model does not have */
    CHECK(craft(at("bad_src2"), at("extra_nbt"), "model.safetensors", EDIT_EXTRA, "bn3.num_batches_tracked"));
    expect_rejected(&f, at("extra_nbt"), PT_OPTIM_SGD, "model.safetensors", "bn3.num_batches_tracked");
    fixture_free(&f);
}

static void test_load_rejects_a_wrong_shape(void)
{
    fixture f;
    if (!fixture_make(&f, at("bad_src3"))) { fixture_free(&f); return; }
    CHECK(craft(at("bad_src3"), at("shape"), "model.safetensors", EDIT_SHAPE, "conv1.weight"));
    expect_rejected(&f, at("shape"), PT_OPTIM_SGD, "model.safetensors", "conv1.weight");
    CHECK(craft(at("bad_src3"), at("shape_opt"), "optimizer.safetensors", EDIT_SHAPE,
                "conv2.weight.momentum_buffer"));
    expect_rejected(&f, at("shape_opt"), PT_OPTIM_SGD, "optimizer.safetensors", "conv2.weight.momentum_buffer");
    fixture_free(&f);
}

static void test_load_rejects_a_wrong_dtype(void)
{
    fixture f;
    if (!fixture_make(&f, at("bad_src4"))) { fixture_free(&f); return; }
    CHECK(craft(at("bad_src4"), at("dtype"), "model.safetensors", EDIT_DTYPE, "fc.bias"));
    expect_rejected(&f, at("dtype"), PT_OPTIM_SGD, "model.safetensors", "fc.bias");
    fixture_free(&f);
}

static void test_load_rejects_a_nan_parameter(void)
{
    fixture f;
    if (!fixture_make(&f, at("bad_src5"))) { fixture_free(&f); return; }
    CHECK(craft(at("bad_src5"), at("nan"), "model.safetensors", EDIT_NAN, "conv2.weight"));
    expect_rejected(&f, at("nan"), PT_OPTIM_SGD, "model.safetensors", "conv2.weight");
    fixture_free(&f);
}

static void test_load_rejects_a_different_class_count(void)
{
    fixture f;
    if (!fixture_make(&f, at("bad_src6"))) { fixture_free(&f); return; }
    pt_net *net5 = small_net(5);
    pt_replica *r5 = net5 ? make_replica(net5, PT_OPTIM_SGD, 3) : NULL;
    if (r5) {
        pt_model_meta m = test_meta(5);
        pt_train_progress p = test_progress(r5);
        pt_error err;
        pt_error_clear(&err);
        CHECKF(pt_checkpoint_save(at("classes5"), r5, &m, &p, &err) == PT_OK, "%s", err.msg);
        expect_rejected(&f, at("classes5"), PT_OPTIM_SGD, "model.safetensors", "5 classes");
    }
    pt_replica_free(r5);
    pt_net_free(net5);
    fixture_free(&f);
}

static void test_load_rejects_an_optimizer_of_another_kind(void)
{
    fixture f;
    if (!fixture_make(&f, at("bad_src7"))) { fixture_free(&f); return; }
    expect_rejected(&f, at("bad_src7"), PT_OPTIM_ADAM, "optimizer.safetensors", "sgd");
    expect_rejected(&f, at("bad_src7"), PT_OPTIM_ADAMW, "optimizer.safetensors", "adamw");
    fixture_free(&f);
}

static void test_load_rejects_damaged_bytes(void)
{
    fixture f;
    if (!fixture_make(&f, at("bad_src8"))) { fixture_free(&f); return; }
    void *data = NULL;
    size_t size = 0;
    pt_error err;
    pt_error_clear(&err);
    if (pt_read_file(at("bad_src8/model.safetensors"), (size_t)1 << 30, &data, &size, &err) != PT_OK) {
        CHECKF(0, "%s", err.msg);
        { fixture_free(&f); return; }
    }
    unsigned char *bytes = data;
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)bytes[i] << (8 * i);
    CHECK(hlen > 2 && 8 + hlen < size);

    /* truncated: the last tensor's bytes are cut off */
    CHECK(craft_raw(at("bad_src8"), at("truncated"), bytes, size - 10));
    expect_rejected(&f, at("truncated"), PT_OPTIM_SGD, "model.safetensors", "past the end");
    /* truncated inside the header */
    CHECK(craft_raw(at("bad_src8"), at("truncated_hdr"), bytes, 8 + hlen / 2));
    expect_rejected(&f, at("truncated_hdr"), PT_OPTIM_SGD, "model.safetensors", NULL);

    /* malformed header: the JSON object loses its closing brace */
    unsigned char *copy = malloc(size);
    memcpy(copy, bytes, size);
    for (size_t i = 8 + hlen; i-- > 8;)
        if (copy[i] == '}') {
            copy[i] = ' ';
            break;
        }
    CHECK(craft_raw(at("bad_src8"), at("malformed"), copy, size));
    expect_rejected(&f, at("malformed"), PT_OPTIM_SGD, "model.safetensors", NULL);
    /* header length larger than the file */
    memcpy(copy, bytes, size);
    uint64_t huge = (uint64_t)size * 2;
    for (int i = 0; i < 8; i++) copy[i] = (unsigned char)(huge >> (8 * i));
    CHECK(craft_raw(at("bad_src8"), at("hdrlen"), copy, size));
    expect_rejected(&f, at("hdrlen"), PT_OPTIM_SGD, "model.safetensors", NULL);
    free(copy);

    /* offsets past the end: the tensor ending at the end of the data moves 64 bytes on */
    size_t data_bytes = size - 8 - hlen;
    char *hdr = malloc(hlen + 1);
    memcpy(hdr, bytes + 8, hlen);
    hdr[hlen] = '\0';
    char want[64];
    char *hit = NULL;
    unsigned long long b0 = 0;
    for (char *p = strstr(hdr, "\"data_offsets\":["); p; p = strstr(p + 1, "\"data_offsets\":[")) {
        unsigned long long b, e;
        if (sscanf(p, "\"data_offsets\":[%llu,%llu]", &b, &e) == 2 && e == data_bytes) {
            hit = p;
            b0 = b;
        }
    }
    CHECK(hit != NULL);
    if (hit) {
        char *end = strchr(hit, ']');
        snprintf(want, sizeof want, "\"data_offsets\":[%llu,%llu]", b0 + 64, (unsigned long long)data_bytes + 64);
        size_t pre = (size_t)(hit - hdr);
        char *nh = malloc(hlen + 128);
        memcpy(nh, hdr, pre);
        size_t n = pre + (size_t)sprintf(nh + pre, "%s", want);
        n += (size_t)sprintf(nh + n, "%s", end + 1);
        while (n % 8) nh[n++] = ' ';
        unsigned char *file = malloc(8 + n + data_bytes);
        for (int i = 0; i < 8; i++) file[i] = (unsigned char)((uint64_t)n >> (8 * i));
        memcpy(file + 8, nh, n);
        memcpy(file + 8 + n, bytes + 8 + hlen, data_bytes);
        CHECK(craft_raw(at("bad_src8"), at("offsets"), file, 8 + n + data_bytes));
        expect_rejected(&f, at("offsets"), PT_OPTIM_SGD, "model.safetensors", "past the end");
        free(file);
        free(nh);
    }
    free(hdr);
    free(data);
    fixture_free(&f);
}

static void test_load_of_a_missing_directory_fails_naming_it(void)
{
    fixture f;
    if (!fixture_make(&f, at("bad_src9"))) { fixture_free(&f); return; }
    expect_rejected(&f, at("no_such_checkpoint"), PT_OPTIM_SGD, "no_such_checkpoint", NULL);
    fixture_free(&f);
}

/* ---------------------------------------------------------------- crash safety */

static void test_leftover_tmp_from_an_interrupted_save_is_ignored(void)
{
    fixture f;
    if (!fixture_make(&f, at("crash1"))) { fixture_free(&f); return; }
    /* An interrupted save left a half-written NEW slot behind. */
    pt_error err;
    pt_error_clear(&err);
    CHECK(pt_mkdir_p(at(".crash1.polytrain-new"), &err) == PT_OK);
    const void *chunks[1] = {"\x10\0\0\0\0\0\0\0{\"a\":"};
    size_t sizes[1] = {13};
    CHECK(pt_write_file_atomic(at(".crash1.polytrain-new/model.safetensors"), chunks, sizes, 1, &err) == PT_OK);
    CHECK(loads_fixture_state(&f, at("crash1")));
    /* and the next save clears it */
    pt_model_meta m = test_meta(KCLS);
    pt_train_progress p = test_progress(f.r);
    CHECKF(pt_checkpoint_save(at("crash1"), f.r, &m, &p, &err) == PT_OK, "%s", err.msg);
    CHECK(!pt_path_exists(at(".crash1.polytrain-new")) && !pt_path_exists(at(".crash1.polytrain-old")));
    CHECK(loads_fixture_state(&f, at("crash1")));
    fixture_free(&f);
}

/* Between the renames of a commit (no atomic exchange): readers read the previous checkpoint
 * where it waits and change nothing; only the writer's recover puts it back. */
static void test_crash_between_the_renames_rolls_back_to_the_old_checkpoint(void)
{
    fixture f;
    if (!fixture_make(&f, at("crash2"))) { fixture_free(&f); return; }
    CHECK(rename(at("crash2"), at(".crash2.polytrain-old")) == 0);
    pt_model_meta m;
    memset(&m, 0, sizeof m);
    pt_error err;
    pt_error_clear(&err);
    CHECKF(pt_checkpoint_read_meta(at("crash2"), &m, &err) == PT_OK, "%s", err.msg);
    pt_model_meta_free(&m);
    CHECK(loads_fixture_state(&f, at("crash2")));
    CHECK(!pt_path_exists(at("crash2")) && pt_path_exists(at(".crash2.polytrain-old/model.safetensors")));
    CHECKF(pt_checkpoint_recover(at("crash2"), &err) == PT_OK, "%s", err.msg);
    CHECK(pt_path_exists(at("crash2/model.safetensors")) && !pt_path_exists(at(".crash2.polytrain-old")));
    CHECK(loads_fixture_state(&f, at("crash2")));
    fixture_free(&f);
}

static void test_crash_after_the_renames_keeps_the_new_checkpoint(void)
{
    fixture f;
    if (!fixture_make(&f, at("crash3"))) { fixture_free(&f); return; }
    /* The new checkpoint is in place, a garbage (half-removed) old one remains. */
    pt_error err;
    pt_error_clear(&err);
    CHECK(pt_mkdir_p(at(".crash3.polytrain-old"), &err) == PT_OK);
    const void *chunks[1] = {"garbage"};
    size_t sizes[1] = {7};
    CHECK(pt_write_file_atomic(at(".crash3.polytrain-old/model.safetensors"), chunks, sizes, 1, &err) == PT_OK);
    CHECK(loads_fixture_state(&f, at("crash3")));
    CHECK(pt_path_exists(at(".crash3.polytrain-old"))); /* a reader leaves it */
    CHECKF(pt_checkpoint_recover(at("crash3"), &err) == PT_OK, "%s", err.msg);
    CHECK(!pt_path_exists(at(".crash3.polytrain-old")));
    CHECK(loads_fixture_state(&f, at("crash3")));
    fixture_free(&f);
}

/* A user's own X.old (a natural backup name) is never read, moved or removed, by readers or
 * by the writer's recover, whether X exists or not. */
static void test_a_users_old_directory_is_never_touched(void)
{
    fixture f;
    if (!fixture_make(&f, at("bk.old"))) { fixture_free(&f); return; }
    pt_error err;
    pt_error_clear(&err);
    pt_model_meta m;
    memset(&m, 0, sizeof m);
    CHECK(pt_checkpoint_read_meta(at("bk"), &m, &err) != PT_OK); /* bk itself is missing */
    CHECK(!pt_path_exists(at("bk")) && pt_path_exists(at("bk.old/model.safetensors")));
    CHECKF(pt_checkpoint_recover(at("bk"), &err) == PT_OK, "%s", err.msg);
    CHECK(!pt_path_exists(at("bk")) && pt_path_exists(at("bk.old/model.safetensors")));
    pt_model_meta mm = test_meta(KCLS);
    pt_train_progress p = test_progress(f.r);
    CHECKF(pt_checkpoint_save(at("bk"), f.r, &mm, &p, &err) == PT_OK, "%s", err.msg);
    CHECKF(pt_checkpoint_save(at("bk"), f.r, &mm, &p, &err) == PT_OK, "%s", err.msg);
    CHECK(loads_fixture_state(&f, at("bk.old")) && loads_fixture_state(&f, at("bk")));
    fixture_free(&f);
}

/* Both files carry the checkpoint's stamp: an optimizer file of another step or run is refused. */
static void test_model_and_optimizer_of_different_checkpoints_are_refused(void)
{
    fixture f;
    if (!fixture_make(&f, at("pair_a"))) { fixture_free(&f); return; }
    pt_error err;
    pt_error_clear(&err);
    pt_model_meta m = test_meta(KCLS);
    pt_train_progress p = test_progress(f.r);
    snprintf(m.run_id, sizeof m.run_id, "run-one");
    m.epoch = 1;
    m.global_step = 10;
    CHECKF(pt_checkpoint_save(at("pair_a"), f.r, &m, &p, &err) == PT_OK, "%s", err.msg);
    CHECK(loads_fixture_state(&f, at("pair_a")));
    m.epoch = 2;
    m.global_step = 20;
    CHECKF(pt_checkpoint_save(at("pair_b"), f.r, &m, &p, &err) == PT_OK, "%s", err.msg);
    snprintf(m.run_id, sizeof m.run_id, "run-two");
    CHECKF(pt_checkpoint_save(at("pair_c"), f.r, &m, &p, &err) == PT_OK, "%s", err.msg);
    CHECK(rename(at("pair_b/optimizer.safetensors"), at("pair_a/optimizer.safetensors")) == 0);
    pt_replica *r = make_replica(f.net, PT_OPTIM_SGD, 5);
    pt_train_progress got;
    CHECK(pt_checkpoint_load(at("pair_a"), r, &got, &err) == PT_ERR_MISMATCH);
    CHECKF(strstr(err.msg, "run run-one, epoch 1, step 10") && strstr(err.msg, "epoch 2, step 20") &&
               strstr(err.msg, "not one checkpoint"),
           "%s", err.msg);
    CHECK(rename(at("pair_c/optimizer.safetensors"), at("pair_a/optimizer.safetensors")) == 0);
    CHECK(pt_checkpoint_load(at("pair_a"), r, &got, &err) == PT_ERR_MISMATCH);
    CHECKF(strstr(err.msg, "run run-two") != NULL, "%s", err.msg);
    pt_replica_free(r);
    fixture_free(&f);
}


static void test_save_below_a_regular_file_fails_with_io_error(void)
{
    fixture f;
    if (!fixture_make(&f, at("good4"))) { fixture_free(&f); return; }
    pt_error err;
    pt_error_clear(&err);
    const void *chunks[1] = {"x"};
    size_t sizes[1] = {1};
    CHECK(pt_write_file_atomic(at("plainfile"), chunks, sizes, 1, &err) == PT_OK);
    pt_model_meta m = test_meta(KCLS);
    pt_train_progress p = test_progress(f.r);
    pt_status st = pt_checkpoint_save(at("plainfile/ckpt"), f.r, &m, &p, &err);
    CHECKF(st == PT_ERR_IO, "%s: %s", pt_status_name(st), err.msg);
    CHECKF(strstr(err.msg, "plainfile") != NULL, "%s", err.msg);
    struct stat sb;
    CHECK(stat(at("plainfile"), &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size == 1);
    CHECK(loads_fixture_state(&f, at("good4")));
    fixture_free(&f);
}

static void test_save_into_read_only_parent_fails_and_keeps_the_checkpoint(void)
{
    if (geteuid() == 0) return; /* root writes anyway: covered by the full-disk test */
    fixture f;
    pt_error err;
    pt_error_clear(&err);
    CHECK(pt_mkdir_p(at("ro"), &err) == PT_OK);
    if (!fixture_make(&f, at("ro/ckpt"))) { fixture_free(&f); return; }
    CHECK(chmod(at("ro"), 0555) == 0);
    CHECK(train_steps(f.r, 1, 3));
    pt_model_meta m = test_meta(KCLS);
    pt_train_progress p = test_progress(f.r);
    pt_status st = pt_checkpoint_save(at("ro/ckpt"), f.r, &m, &p, &err);
    CHECKF(st == PT_ERR_IO, "%s: %s", pt_status_name(st), err.msg);
    chmod(at("ro"), 0755);
    CHECK(loads_fixture_state(&f, at("ro/ckpt")));
    fixture_free(&f);
}

/* RLIMIT_FSIZE makes write() fail part-way (EFBIG), like a disk filling up, even for root. */
static void test_save_failing_midway_keeps_the_previous_checkpoint(void)
{
    fixture f;
    if (!fixture_make(&f, at("full"))) { fixture_free(&f); return; }
    CHECK(train_steps(f.r, 2, 9)); /* the replica now differs from the saved checkpoint */
    pt_model_meta m = test_meta(KCLS);
    pt_train_progress p = test_progress(f.r);
    pt_error err;
    pt_error_clear(&err);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 600; /* model.safetensors is larger */
    int limited = setrlimit(RLIMIT_FSIZE, &lim) == 0;
    pt_status st = limited ? pt_checkpoint_save(at("full"), f.r, &m, &p, &err) : PT_ERR_IO;
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    CHECK(limited);
    CHECKF(st == PT_ERR_IO, "%s: %s", pt_status_name(st), err.msg);
    CHECKF(strstr(err.msg, "full") != NULL, "%s", err.msg);
    CHECK(!pt_path_exists(at("full.tmp")) && !pt_path_exists(at("full.old")));
    CHECK(loads_fixture_state(&f, at("full"))); /* the fixture's state, not the newer one */
    fixture_free(&f);
}

int main(void)
{
    const char *base = getenv("PT_TEST_TMP");
    if (!base || !base[0]) base = "/tmp";
    snprintf(root, sizeof root, "%s/test_checkpoint.%ld", base, (long)getpid());
    pt_error err;
    pt_error_clear(&err);
    if (pt_remove_tree(root, &err) != PT_OK || pt_mkdir_p(root, &err) != PT_OK ||
        pt_device_open("cpu", 0, NULL, &dev, &err) != PT_OK) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return 1;
    }
    RUN(test_save_then_load_is_bitwise_identical);
    RUN(test_saved_tensors_have_pytorch_names_shapes_and_metadata);
    RUN(test_model_only_checkpoint_loads_without_progress);
    RUN(test_saving_again_replaces_the_checkpoint);
    RUN(test_load_rejects_a_missing_tensor);
    RUN(test_load_rejects_an_extra_tensor);
    RUN(test_load_rejects_a_wrong_shape);
    RUN(test_load_rejects_a_wrong_dtype);
    RUN(test_load_rejects_a_nan_parameter);
    RUN(test_load_rejects_a_different_class_count);
    RUN(test_load_rejects_an_optimizer_of_another_kind);
    RUN(test_load_rejects_damaged_bytes);
    RUN(test_load_of_a_missing_directory_fails_naming_it);
    RUN(test_leftover_tmp_from_an_interrupted_save_is_ignored);
    RUN(test_crash_between_the_renames_rolls_back_to_the_old_checkpoint);
    RUN(test_crash_after_the_renames_keeps_the_new_checkpoint);
    RUN(test_a_users_old_directory_is_never_touched);
    RUN(test_model_and_optimizer_of_different_checkpoints_are_refused);
    RUN(test_save_below_a_regular_file_fails_with_io_error);
    RUN(test_save_into_read_only_parent_fails_and_keeps_the_checkpoint);
    RUN(test_save_failing_midway_keeps_the_previous_checkpoint);
    pt_device_close(dev);
    if (pt_t_fail == 0) pt_remove_tree(root, NULL);
    TEST_EXIT();
}
