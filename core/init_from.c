/* Pretrained weights into a net (see init_from.h): every entry the net has is looked up by
 * its PyTorch name, checked for dtype, shape and finiteness, converted to float32, and only
 * when the whole file fits are the results final; the mismatches are collected, not just the
 * first, so that one run of the command shows everything to fix. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/half.h"
#include "core/init_from.h"
#include "polytrain/replica.h"
#include "core/safetensors.h"

typedef enum entry_kind { ENTRY_PARAM, ENTRY_BUFFER, ENTRY_COUNT } entry_kind;

/* One state-dict entry of the net. */
typedef struct entry {
    char name[PT_NAME_MAX + 32];
    entry_kind kind;
    int ndim;
    int64_t dim[4];
    int64_t numel;
    float *dst;     /* ENTRY_PARAM and ENTRY_BUFFER */
    int head;       /* a parameter of the head */
    int first_conv; /* the weight of the convolution applied to the input */
} entry;

/* A list of one kind of mismatch: its count and the first PT_INIT_LIST_MAX lines. */
typedef struct mismatch_list {
    int count;
    pt_strbuf text;
} mismatch_list;

static void shape_text(char *buf, size_t cap, int ndim, const int64_t *dim)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? "," : "", (long long)dim[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

static void list_add(mismatch_list *l, const char *fmt, const char *name, const char *a, const char *b)
{
    if (l->count++ >= PT_INIT_LIST_MAX) return;
    if (l->text.len) pt_strbuf_puts(&l->text, ", ");
    pt_strbuf_printf(&l->text, fmt, name, a, b);
}

static void list_write(pt_strbuf *sb, const char *what, const mismatch_list *l)
{
    if (!l->count) return;
    pt_strbuf_printf(sb, "  %s (%d): %s", what, l->count, l->text.data ? l->text.data : "");
    if (l->count > PT_INIT_LIST_MAX) pt_strbuf_printf(sb, ", ... (%d more)", l->count - PT_INIT_LIST_MAX);
    pt_strbuf_putc(sb, '\n');
}

static int is_float_dtype(pt_st_dtype t)
{
    return t == PT_ST_F32 || t == PT_ST_F16 || t == PT_ST_BF16 || t == PT_ST_F64;
}

/* Element i of a float tensor as float32 (the data may be unaligned: memcpy). */
static float float_at(const pt_st_tensor *t, int64_t i)
{
    const unsigned char *p = (const unsigned char *)t->data + (size_t)i * pt_st_dtype_size(t->dtype);
    switch (t->dtype) {
    case PT_ST_F32: {
        float v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    case PT_ST_F64: {
        double v;
        memcpy(&v, p, sizeof v);
        return (float)v;
    }
    case PT_ST_F16: {
        uint16_t v;
        memcpy(&v, p, sizeof v);
        return pt_f32_from_f16(v);
    }
    case PT_ST_BF16: {
        uint16_t v;
        memcpy(&v, p, sizeof v);
        return pt_f32_from_bf16(v);
    }
    default: return NAN;
    }
}

static int64_t count_at(const pt_st_tensor *t)
{
    if (t->dtype == PT_ST_I64) {
        int64_t v;
        memcpy(&v, t->data, sizeof v);
        return v;
    }
    int32_t v;
    memcpy(&v, t->data, sizeof v);
    return v;
}

static void note_dtype(pt_init_result *res, pt_st_dtype t)
{
    if (t == PT_ST_F32) return;
    const char *name = pt_st_dtype_name(t);
    /* a list of distinct names: "F16", "F16,F64" */
    const char *s = res->converted;
    size_t len = strlen(name);
    while ((s = strstr(s, name)) != NULL) {
        if ((s == res->converted || s[-1] == ',') && (s[len] == ',' || s[len] == '\0')) return;
        s += len;
    }
    size_t n = strlen(res->converted);
    snprintf(res->converted + n, sizeof res->converted - n, "%s%s", n ? "," : "", name);
}

/* The net's state-dict entries in declaration order; the caller frees the array. */
static entry *net_entries(const pt_net *net, float *params, float *buffers, int *count, pt_error *err)
{
    int n = net->nparams + net->nbuffers + net->nbn, k = 0;
    entry *e = calloc((size_t)n + 1, sizeof *e);
    if (!e) {
        pt_fail(err, PT_ERR_NOMEM, "out of host memory");
        return NULL;
    }
    const pt_node *out = net->output >= 0 ? &net->nodes[net->output] : NULL;
    int first_conv = -1;
    for (int i = 0; i < net->nnodes && first_conv < 0; i++)
        if (net->nodes[i].kind == PT_NODE_CONV2D && net->nodes[i].nin >= 1 &&
            net->nodes[net->nodes[i].in[0]].kind == PT_NODE_INPUT)
            first_conv = i;
    for (int i = 0; i < net->nnodes; i++) {
        const pt_node *node = &net->nodes[i];
        for (int w = 0; w < 2; w++) {
            if (node->param[w] < 0) continue;
            const pt_param_info *p = &net->params[node->param[w]];
            entry *x = &e[k++];
            snprintf(x->name, sizeof x->name, "%s", p->name);
            x->kind = ENTRY_PARAM;
            x->ndim = p->ndim;
            for (int d = 0; d < p->ndim && d < 4; d++) x->dim[d] = p->dim[d];
            x->numel = p->numel;
            x->dst = params + p->offset;
            x->head = out && out->kind == PT_NODE_LINEAR && node == out;
            x->first_conv = i == first_conv && w == 0;
        }
        if (node->kind == PT_NODE_BATCHNORM2D) {
            for (int b = 0; b < 2; b++) {
                const pt_buffer_info *bi = &net->buffers[node->buffer[b]];
                entry *x = &e[k++];
                snprintf(x->name, sizeof x->name, "%s", bi->name);
                x->kind = ENTRY_BUFFER;
                x->ndim = 1;
                x->dim[0] = x->numel = bi->numel;
                x->dst = buffers + bi->offset;
            }
            entry *x = &e[k++];
            snprintf(x->name, sizeof x->name, "%s.num_batches_tracked", node->name);
            x->kind = ENTRY_COUNT;
            x->numel = 1;
        }
    }
    if (k != n) {
        free(e);
        pt_fail(err, PT_ERR_INVALID, "init-from: the net has parameters outside its layers");
        return NULL;
    }
    *count = n;
    return e;
}

static int shape_equal(const pt_st_tensor *t, const entry *x)
{
    if (t->ndim != x->ndim) return 0;
    for (int d = 0; d < x->ndim; d++)
        if (t->shape[d] != x->dim[d]) return 0;
    return 1;
}

/* A multi-channel first-convolution weight [O, C, kh, kw] for a 1-channel one [O, 1, kh, kw]. */
static int summable(const pt_st_tensor *t, const entry *x)
{
    return x->first_conv && x->ndim == 4 && x->dim[1] == 1 && t->ndim == 4 && t->shape[1] > 1 &&
           t->shape[0] == x->dim[0] && t->shape[2] == x->dim[2] && t->shape[3] == x->dim[3];
}

static pt_status open_file(const char *path, pt_init_result *res, pt_st_file **f, pt_error *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0) return pt_fail(err, PT_ERR_IO, "'%s' does not exist", path);
    if (S_ISDIR(sb.st_mode)) {
        if (snprintf(res->file, sizeof res->file, "%s/model.safetensors", path) >= (int)sizeof res->file)
            return pt_fail(err, PT_ERR_INVALID, "path '%s' is too long", path);
        if (stat(res->file, &sb) != 0)
            return pt_fail(err, PT_ERR_IO, "'%s' is a directory without model.safetensors (expected a checkpoint "
                           "directory such as a run's best/, or a .safetensors file)", path);
    } else {
        snprintf(res->file, sizeof res->file, "%s", path);
    }
    pt_status st = pt_st_open(res->file, f, err);
    if (st == PT_ERR_FORMAT)
        pt_error_wrap(err, "not a readable safetensors state dict (expected a file written by "
                           "safetensors.torch.save_file(model.state_dict(), ...) or a polytrain checkpoint)");
    return st;
}

pt_status pt_init_from_read(const char *path, const pt_net *net, uint64_t seed, int reset_head, float *params,
                            float *buffers, pt_init_result *res, pt_strbuf *detail, pt_error *err)
{
    memset(res, 0, sizeof *res);
    res->file_classes = -1;
    res->head_classes = net->num_classes;
    pt_st_file *f = NULL;
    PT_TRY(open_file(path, res, &f, err));
    res->file_tensors = (int)pt_st_count(f);
    pt_net_init_values(net, seed, params, buffers);

    int n = 0;
    entry *e = net_entries(net, params, buffers, &n, err);
    if (!e) {
        pt_st_close(f);
        return err->status;
    }
    /* The head: reset when asked; else taken, and a shape of its own is an error. */
    const pt_node *out = &net->nodes[net->output];
    if (out->kind == PT_NODE_LINEAR) snprintf(res->head, sizeof res->head, "%s", out->name);
    int head_mismatch = 0, head_missing = 0;
    for (int i = 0; i < n; i++) {
        if (!e[i].head) continue;
        const pt_st_tensor *t = pt_st_find(f, e[i].name);
        if (t && e[i].ndim == 2 && t->ndim == 2) res->file_classes = (int)t->shape[0];
        if (!t) head_missing = 1;
        else if (!shape_equal(t, &e[i]) || !is_float_dtype(t->dtype)) head_mismatch = 1;
    }
    if (res->head[0] && reset_head) res->head_reset = head_mismatch ? PT_HEAD_RESET_SHAPE : PT_HEAD_RESET_ASKED;
    const int skip_head = res->head_reset != PT_HEAD_LOADED;

    mismatch_list missing = {0}, unexpected = {0}, misshaped = {0}, bad = {0};
    pt_strbuf_init(&missing.text);
    pt_strbuf_init(&unexpected.text);
    pt_strbuf_init(&misshaped.text);
    pt_strbuf_init(&bad.text);
    int64_t bn_steps = 0;
    char want[96], got[96];
    for (int i = 0; i < n; i++) {
        entry *x = &e[i];
        if (x->head && skip_head) continue;
        shape_text(want, sizeof want, x->ndim, x->dim);
        const pt_st_tensor *t = pt_st_find(f, x->name);
        if (!t) {
            list_add(&missing, "%s %s%s", x->name, want, "");
            continue;
        }
        shape_text(got, sizeof got, t->ndim < 8 ? t->ndim : 8, t->shape);
        if (x->kind == ENTRY_COUNT) {
            if ((t->dtype != PT_ST_I64 && t->dtype != PT_ST_I32) || t->ndim != 0) {
                list_add(&misshaped, "%s: model I64[], file %s%s", x->name, pt_st_dtype_name(t->dtype), got);
                continue;
            }
            const int64_t v = count_at(t);
            if (v < 0) list_add(&bad, "%s = %s%s", x->name, "a negative count", "");
            else if (v > bn_steps) bn_steps = v;
            res->loaded++;
            continue;
        }
        if (!is_float_dtype(t->dtype)) {
            list_add(&misshaped, "%s: model F32%s, file %s", x->name, want, pt_st_dtype_name(t->dtype));
            continue;
        }
        const int sum = !shape_equal(t, x) && summable(t, x);
        if (!shape_equal(t, x) && !sum) {
            list_add(&misshaped, "%s: model %s, file %s", x->name, want, got);
            continue;
        }
        note_dtype(res, t->dtype);
        int finite = 1;
        if (sum) {
            /* a gray image repeated over C channels meets the sum of the C filters */
            const int64_t O = t->shape[0], C = t->shape[1], K = t->shape[2] * t->shape[3];
            for (int64_t o = 0; o < O; o++)
                for (int64_t k = 0; k < K; k++) {
                    float s = 0.0f;
                    for (int64_t c = 0; c < C; c++) s += float_at(t, (o * C + c) * K + k);
                    x->dst[o * K + k] = s;
                    finite &= isfinite(s) != 0;
                }
            snprintf(res->summed, sizeof res->summed, "%s", x->name);
            res->summed_from = (int)C;
        } else {
            for (int64_t k = 0; k < x->numel; k++) {
                x->dst[k] = float_at(t, k);
                finite &= isfinite(x->dst[k]) != 0;
            }
        }
        const size_t len = strlen(x->name);
        const int is_var = len > 12 && strcmp(x->name + len - 12, ".running_var") == 0;
        if (!finite) list_add(&bad, "%s %s%s", x->name, "holds a non-finite value (or one too large for F32)", "");
        else if (is_var)
            for (int64_t k = 0; k < x->numel; k++)
                if (x->dst[k] < 0) {
                    list_add(&bad, "%s %s%s", x->name, "holds a negative variance", "");
                    break;
                }
        res->loaded++;
    }
    /* What the file has that the net does not (its head's entries when the head is reset). */
    for (size_t i = 0; i < pt_st_count(f); i++) {
        const pt_st_tensor *t = pt_st_at(f, i);
        int known = 0;
        for (int j = 0; j < n && !known; j++) known = strcmp(e[j].name, t->name) == 0;
        if (known) continue;
        shape_text(got, sizeof got, t->ndim < 8 ? t->ndim : 8, t->shape);
        list_add(&unexpected, "%s %s%s", t->name, pt_st_dtype_name(t->dtype), got);
    }
    res->bn_steps = bn_steps;

    pt_status st = PT_OK;
    if (missing.count || unexpected.count || misshaped.count || bad.count) {
        char what[256] = "";
        size_t w = 0;
        if (missing.count) w += (size_t)snprintf(what + w, sizeof what - w, "%d missing", missing.count);
        if (unexpected.count && w < sizeof what)
            w += (size_t)snprintf(what + w, sizeof what - w, "%s%d unexpected", w ? ", " : "", unexpected.count);
        if (misshaped.count && w < sizeof what)
            w += (size_t)snprintf(what + w, sizeof what - w, "%s%d of another shape or dtype", w ? ", " : "",
                                  misshaped.count);
        if (bad.count && w < sizeof what)
            snprintf(what + w, sizeof what - w, "%s%d with bad values", w ? ", " : "", bad.count);
        char hint[320] = "";
        if (res->head[0] && !reset_head && (head_missing || head_mismatch))
            snprintf(hint, sizeof hint,
                     "; the head %s.* %s: train --reset-head keeps its random init, to train it for %d classes",
                     res->head, head_missing ? "is not in the file" : "differs", net->num_classes);
        st = pt_fail(err, PT_ERR_MISMATCH,
                     "%s does not fit the model (%d input channel%s, %d classes): of its %d entries %d match; "
                     "tensors: %s%s",
                     res->file, net->in_channels, net->in_channels == 1 ? "" : "s", net->num_classes, n,
                     res->loaded, what, hint);
        if (detail) {
            list_write(detail, "missing, as the model has them", &missing);
            list_write(detail, "unexpected, not in the model", &unexpected);
            list_write(detail, "another shape or dtype", &misshaped);
            list_write(detail, "bad values", &bad);
            if (misshaped.count || bad.count)
                pt_strbuf_printf(detail, "  (floats: %s, converted to F32; num_batches_tracked: %s scalars)\n",
                                 PT_INIT_FLOAT_DTYPES, PT_INIT_COUNT_DTYPES);
        }
    }
    if (st == PT_OK && (missing.text.failed || unexpected.text.failed))
        st = pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    pt_strbuf_free(&missing.text);
    pt_strbuf_free(&unexpected.text);
    pt_strbuf_free(&misshaped.text);
    pt_strbuf_free(&bad.text);
    free(e);
    pt_st_close(f);
    return st;
}

void pt_init_result_describe(const pt_init_result *r, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "initialised from %s: %d tensor%s", r->file, r->loaded,
                                r->loaded == 1 ? "" : "s");
    if (n < cap && r->head_reset == PT_HEAD_RESET_SHAPE)
        n += (size_t)snprintf(buf + n, cap - n, "; head %s.* reset (%d classes, the file has %d)", r->head,
                              r->head_classes, r->file_classes);
    else if (n < cap && r->head_reset == PT_HEAD_RESET_ASKED && r->file_classes < 0)
        n += (size_t)snprintf(buf + n, cap - n, "; head %s.* reset (%d classes, not in the file)", r->head,
                              r->head_classes);
    else if (n < cap && r->head_reset == PT_HEAD_RESET_ASKED)
        n += (size_t)snprintf(buf + n, cap - n, "; head %s.* reset (--reset-head)", r->head);
    if (n < cap && r->summed[0])
        n += (size_t)snprintf(buf + n, cap - n, "; %s summed over the file's %d input channels (the model takes 1)",
                              r->summed, r->summed_from);
    if (n < cap && r->converted[0]) snprintf(buf + n, cap - n, "; %s converted to F32", r->converted);
}
