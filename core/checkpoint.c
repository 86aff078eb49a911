/* Saving and loading checkpoint directories (see checkpoint.h). The host copy of the
 * replica state is the single source for both files; nothing is written in place. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "polytrain/checkpoint.h"
#include "core/dircommit.h"
#include "core/fileio.h"
#include "core/json.h"
#include "core/safetensors.h"

#define FORMAT_VERSION "1"

void pt_model_meta_free(pt_model_meta *m)
{
    if (!m || !m->class_names) return;
    for (int i = 0; i < m->num_classes; i++) free(m->class_names[i]);
    free(m->class_names);
    m->class_names = NULL;
}

pt_status pt_model_meta_copy(pt_model_meta *dst, const pt_model_meta *src, pt_error *err)
{
    *dst = *src;
    dst->class_names = NULL;
    if (!src->class_names) return PT_OK;
    dst->class_names = calloc((size_t)src->num_classes, sizeof(char *));
    if (!dst->class_names) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    for (int i = 0; i < src->num_classes; i++) {
        dst->class_names[i] = strdup(src->class_names[i] ? src->class_names[i] : "");
        if (!dst->class_names[i]) {
            pt_model_meta_free(dst);
            return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
        }
    }
    return PT_OK;
}

/* ---------------------------------------------------------------- host state */

typedef struct host_state {
    float *params, *buffers, *opt;
    int64_t *nbt; /* one num_batches_tracked value per BN layer (all equal) */
    int64_t bn_steps; /* progress to apply once everything loaded (a failed load changes nothing) */
    int started;
} host_state;

static void host_state_free(host_state *h)
{
    free(h->params);
    free(h->buffers);
    free(h->opt);
    free(h->nbt);
}

static pt_status host_state_alloc(pt_replica *r, host_state *h, pt_error *err)
{
    memset(h, 0, sizeof *h);
    const pt_net *net = pt_replica_net(r);
    int64_t P = pt_replica_param_region(r), B = pt_replica_buffer_region(r);
    int slots = pt_replica_opt_slots(r);
    h->params = calloc((size_t)P + 1, sizeof(float));
    h->buffers = calloc((size_t)B + 1, sizeof(float));
    h->opt = calloc((size_t)(slots * P) + 1, sizeof(float));
    h->nbt = calloc((size_t)net->nbn + 1, sizeof(int64_t));
    if (!h->params || !h->buffers || !h->opt || !h->nbt) {
        host_state_free(h);
        return pt_fail(err, PT_ERR_NOMEM, "out of host memory for the checkpoint");
    }
    return PT_OK;
}

static pt_status meta_printf(pt_st_writer *w, const char *key, pt_error *err, const char *fmt, ...)
    PT_PRINTF(4, 5);
static pt_status meta_printf(pt_st_writer *w, const char *key, pt_error *err, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return pt_st_writer_add_meta(w, key, buf, err);
}

static pt_status add_model_tensors(pt_st_writer *w, const pt_net *net, const host_state *h,
                                   pt_error *err)
{
    /* In the net's declaration order, i.e. the module order of the PyTorch state_dict. */
    int pi = 0, bi = 0;
    for (int n = 0; n < net->nnodes; n++) {
        const pt_node *node = &net->nodes[n];
        for (int k = 0; k < 2; k++) {
            int p = node->param[k];
            if (p < 0) continue;
            const pt_param_info *info = &net->params[p];
            PT_TRY(pt_st_writer_add(w, info->name, PT_ST_F32, info->ndim, info->dim,
                                    h->params + info->offset, PT_ST_BORROW, err));
            pi++;
        }
        if (node->kind == PT_NODE_BATCHNORM2D) {
            for (int k = 0; k < 2; k++) {
                const pt_buffer_info *b = &net->buffers[node->buffer[k]];
                int64_t dim[1] = {b->numel};
                PT_TRY(pt_st_writer_add(w, b->name, PT_ST_F32, 1, dim, h->buffers + b->offset,
                                        PT_ST_BORROW, err));
                bi++;
            }
            char name[PT_NAME_MAX + 32];
            snprintf(name, sizeof name, "%s.num_batches_tracked", node->name);
            PT_TRY(pt_st_writer_add(w, name, PT_ST_I64, 0, NULL, &h->nbt[node->bn_index],
                                    PT_ST_BORROW, err));
        }
    }
    if (pi != net->nparams || bi != net->nbuffers)
        return pt_fail(err, PT_ERR_INVALID, "checkpoint: net has parameters outside its layers");
    return PT_OK;
}

/* The checkpoint's stamp, in both of its files (see pt_model_meta). */
static pt_status add_stamp(pt_st_writer *w, const pt_model_meta *m, pt_error *err)
{
    if (!m->run_id[0]) return PT_OK;
    PT_TRY(pt_st_writer_add_meta(w, "run_id", m->run_id, err));
    PT_TRY(meta_printf(w, "checkpoint_epoch", err, "%lld", (long long)m->epoch));
    return meta_printf(w, "checkpoint_step", err, "%lld", (long long)m->global_step);
}

static pt_status add_model_meta(pt_st_writer *w, const pt_model_meta *m, pt_error *err)
{
    PT_TRY(pt_st_writer_add_meta(w, "framework", "polytrain", err));
    PT_TRY(pt_st_writer_add_meta(w, "format_version", FORMAT_VERSION, err));
    PT_TRY(pt_st_writer_add_meta(w, "model", m->model, err));
    PT_TRY(meta_printf(w, "in_channels", err, "%d", m->in_channels));
    PT_TRY(meta_printf(w, "num_classes", err, "%d", m->num_classes));
    PT_TRY(meta_printf(w, "image_height", err, "%d", m->height));
    PT_TRY(meta_printf(w, "image_width", err, "%d", m->width));
    char mean[128] = "", std[128] = "";
    for (int c = 0; c < m->in_channels && c < 3; c++) {
        char a[32], b[32];
        snprintf(a, sizeof a, "%s%.9g", c ? "," : "", (double)m->mean[c]);
        snprintf(b, sizeof b, "%s%.9g", c ? "," : "", (double)m->std[c]);
        strncat(mean, a, sizeof mean - strlen(mean) - 1);
        strncat(std, b, sizeof std - strlen(std) - 1);
    }
    PT_TRY(pt_st_writer_add_meta(w, "mean", mean, err));
    PT_TRY(pt_st_writer_add_meta(w, "std", std, err));
    PT_TRY(add_stamp(w, m, err));
    pt_strbuf sb;
    pt_strbuf_init(&sb);
    pt_strbuf_putc(&sb, '[');
    for (int i = 0; i < m->num_classes; i++) {
        if (i) pt_strbuf_putc(&sb, ',');
        pt_strbuf_json_string(&sb, m->class_names ? m->class_names[i] : "");
    }
    pt_strbuf_putc(&sb, ']');
    pt_status st = pt_strbuf_check(&sb, err);
    if (st == PT_OK) st = pt_st_writer_add_meta(w, "class_names", sb.data, err);
    pt_strbuf_free(&sb);
    return st;
}

static pt_status add_optimizer(pt_st_writer *w, pt_replica *r, const host_state *h,
                               const pt_train_progress *pr, const pt_model_meta *m, pt_error *err)
{
    const pt_net *net = pt_replica_net(r);
    const pt_optim_config *o = pt_replica_optim(r);
    int slots = pt_replica_opt_slots(r);
    int64_t P = pt_replica_param_region(r);
    for (int s = 0; s < slots; s++)
        for (int i = 0; i < net->nparams; i++) {
            const pt_param_info *p = &net->params[i];
            char name[PT_NAME_MAX + 32];
            snprintf(name, sizeof name, "%s.%s", p->name, pt_optim_slot_name(o, s));
            PT_TRY(pt_st_writer_add(w, name, PT_ST_F32, p->ndim, p->dim,
                                    h->opt + (int64_t)s * P + p->offset, PT_ST_BORROW, err));
        }
    if (pr->ema) {
        /* the weight EMA: PyTorch's names under "ema.", params then BatchNorm buffers */
        for (int i = 0; i < net->nparams; i++) {
            const pt_param_info *p = &net->params[i];
            char name[PT_NAME_MAX + 32];
            snprintf(name, sizeof name, "ema.%s", p->name);
            PT_TRY(pt_st_writer_add(w, name, PT_ST_F32, p->ndim, p->dim, pr->ema + p->offset, PT_ST_BORROW, err));
        }
        for (int i = 0; i < net->nbuffers; i++) {
            const pt_buffer_info *b = &net->buffers[i];
            char name[PT_NAME_MAX + 32];
            int64_t dim[1] = {b->numel};
            snprintf(name, sizeof name, "ema.%s", b->name);
            PT_TRY(pt_st_writer_add(w, name, PT_ST_F32, 1, dim, pr->ema + P + b->offset, PT_ST_BORROW, err));
        }
    }
    PT_TRY(pt_st_writer_add_meta(w, "framework", "polytrain", err));
    PT_TRY(pt_st_writer_add_meta(w, "format_version", FORMAT_VERSION, err));
    PT_TRY(pt_st_writer_add_meta(w, "optimizer", pt_optim_name(o->kind), err));
    PT_TRY(add_stamp(w, m, err));
    if (pr->record_jsonl[0]) PT_TRY(pt_st_writer_add_meta(w, "epoch_record_jsonl", pr->record_jsonl, err));
    if (pr->record_csv[0]) PT_TRY(pt_st_writer_add_meta(w, "epoch_record_csv", pr->record_csv, err));
    PT_TRY(meta_printf(w, "momentum", err, "%.9g", (double)o->momentum));
    PT_TRY(meta_printf(w, "dampening", err, "%.9g", (double)o->dampening));
    PT_TRY(meta_printf(w, "nesterov", err, "%d", o->nesterov));
    PT_TRY(meta_printf(w, "betas", err, "%.9g,%.9g", (double)o->beta1, (double)o->beta2));
    PT_TRY(meta_printf(w, "eps", err, "%.9g", (double)o->eps));
    PT_TRY(meta_printf(w, "weight_decay", err, "%.9g", (double)o->weight_decay));
    if (o->kind == PT_OPTIM_RMSPROP) {
        PT_TRY(meta_printf(w, "alpha", err, "%.9g", (double)o->alpha));
        PT_TRY(meta_printf(w, "centered", err, "%d", o->centered));
    }
    PT_TRY(meta_printf(w, "no_decay_bn_bias", err, "%d", o->no_decay_bn_bias));
    PT_TRY(meta_printf(w, "optimizer_started", err, "%d", pt_replica_optimizer_started(r)));
    PT_TRY(meta_printf(w, "epoch", err, "%lld", (long long)pr->epoch));
    PT_TRY(meta_printf(w, "global_step", err, "%lld", (long long)pr->global_step));
    PT_TRY(meta_printf(w, "bn_steps", err, "%lld", (long long)pr->bn_steps));
    PT_TRY(meta_printf(w, "seed", err, "%llu", (unsigned long long)pr->seed));
    PT_TRY(meta_printf(w, "best_top1", err, "%.17g", pr->best_top1));
    PT_TRY(meta_printf(w, "best_epoch", err, "%lld", (long long)pr->best_epoch));
    PT_TRY(pt_st_writer_add_meta(w, "precision", pr->precision[0] ? pr->precision : "fp32", err));
    if (pr->loss_scale > 0) {
        PT_TRY(meta_printf(w, "loss_scale", err, "%.17g", pr->loss_scale));
        PT_TRY(meta_printf(w, "loss_scale_growth_tracker", err, "%lld", (long long)pr->loss_scale_growth_tracker));
        PT_TRY(meta_printf(w, "skipped_steps", err, "%lld", (long long)pr->skipped_steps));
    }
    PT_TRY(meta_printf(w, "elapsed_s", err, "%.17g", pr->elapsed_s));
    if (pr->es_wait > 0 || pr->es_best != 0) {
        PT_TRY(meta_printf(w, "early_stop_best", err, "%.17g", pr->es_best));
        PT_TRY(meta_printf(w, "early_stop_wait", err, "%lld", (long long)pr->es_wait));
    }
    if (pr->stop_reason[0]) PT_TRY(pt_st_writer_add_meta(w, "stop_reason", pr->stop_reason, err));
    if (pr->epoch_step > 0) {
        PT_TRY(meta_printf(w, "epoch_step", err, "%lld", (long long)pr->epoch_step));
        PT_TRY(meta_printf(w, "epoch_steps", err, "%lld", (long long)pr->epoch_steps));
        PT_TRY(meta_printf(w, "epoch_loss_sum", err, "%.17g", pr->epoch_loss_sum));
        PT_TRY(meta_printf(w, "epoch_hits", err, "%lld", (long long)pr->epoch_hits));
        PT_TRY(meta_printf(w, "epoch_seen", err, "%lld", (long long)pr->epoch_seen));
        PT_TRY(meta_printf(w, "epoch_train_s", err, "%.17g", pr->epoch_train_s));
        if (pr->epoch_clipped > 0 || pr->epoch_norm_sum > 0) {
            PT_TRY(meta_printf(w, "epoch_clipped_steps", err, "%lld", (long long)pr->epoch_clipped));
            PT_TRY(meta_printf(w, "epoch_grad_norm_sum", err, "%.17g", pr->epoch_norm_sum));
        }
        if (pr->loss_scale > 0) {
            PT_TRY(meta_printf(w, "epoch_skipped_steps", err, "%lld", (long long)pr->epoch_skipped));
            PT_TRY(meta_printf(w, "epoch_loss_scale_min", err, "%.17g", pr->epoch_scale_min));
            PT_TRY(meta_printf(w, "epoch_loss_scale_changes", err, "%d", pr->epoch_scale_changes));
            char hist[16 * 64 + 4];
            size_t n = 0;
            hist[n++] = '[';
            for (int i = 0; i < pr->epoch_scale_changes && i < PT_PROGRESS_SCALE_EVENTS; i++)
                n += (size_t)snprintf(hist + n, sizeof hist - n, "%s[%lld,%.17g]", i ? "," : "",
                                      (long long)pr->epoch_scale_step[i], pr->epoch_scale_value[i]);
            snprintf(hist + n, sizeof hist - n, "]");
            PT_TRY(pt_st_writer_add_meta(w, "epoch_loss_scale_history", hist, err));
        }
    }
    return pt_st_writer_add_meta(w, "schedule", pr->schedule[0] ? pr->schedule : "{}", err);
}

#define MARKER "model.safetensors"

/* Both files into dir's NEW slot, then committed over dir (stage 0) or staged (stage 1). */
static pt_status save(const char *dir, pt_replica *r, const pt_model_meta *meta, const pt_train_progress *progress,
                      int stage, pt_error *err)
{
    const pt_net *net = pt_replica_net(r);
    host_state h;
    PT_TRY(host_state_alloc(r, &h, err));
    pt_status st = pt_replica_read_state(r, h.params, h.buffers, h.opt, err);
    for (int i = 0; i < net->nbn; i++) h.nbt[i] = pt_replica_bn_steps(r);
    char tmp[4400], path[4500];
    pt_st_writer *mw = NULL, *ow = NULL;
    if (st == PT_OK) st = pt_dir_slot_path(dir, PT_DIR_NEW, tmp, sizeof tmp, err);
    if (st == PT_OK) st = pt_remove_tree(tmp, err); /* leftovers of an interrupted save */
    if (st == PT_OK) st = pt_mkdir_p(tmp, err);
    if (st == PT_OK) st = pt_st_writer_new(&mw, err);
    if (st == PT_OK) st = add_model_tensors(mw, net, &h, err);
    if (st == PT_OK) st = add_model_meta(mw, meta, err);
    /* the optimizer file first: model.safetensors, the marker of a complete directory, last */
    if (st == PT_OK && progress) {
        st = pt_st_writer_new(&ow, err);
        if (st == PT_OK) st = add_optimizer(ow, r, &h, progress, meta, err);
        if (st == PT_OK) {
            snprintf(path, sizeof path, "%s/optimizer.safetensors", tmp);
            st = pt_st_write_atomic(ow, path, err);
        }
    }
    if (st == PT_OK) {
        snprintf(path, sizeof path, "%s/" MARKER, tmp);
        st = pt_st_write_atomic(mw, path, err);
    }
    if (st == PT_OK) st = stage ? pt_dir_stage(dir, err) : pt_dir_commit(tmp, dir, err);
    if (st != PT_OK) {
        pt_error keep = *err;
        pt_remove_tree(tmp, NULL);
        *err = keep;
        pt_error_wrap(err, "saving checkpoint '%s'", dir);
    }
    pt_st_writer_free(mw);
    pt_st_writer_free(ow);
    host_state_free(&h);
    return st;
}

pt_status pt_checkpoint_save(const char *dir, pt_replica *r, const pt_model_meta *meta,
                             const pt_train_progress *progress, pt_error *err)
{
    return save(dir, r, meta, progress, 0, err);
}

pt_status pt_checkpoint_stage(const char *dir, pt_replica *r, const pt_model_meta *meta,
                              const pt_train_progress *progress, pt_error *err)
{
    return save(dir, r, meta, progress, 1, err);
}

pt_status pt_checkpoint_recover(const char *dir, pt_error *err) { return pt_dir_recover(dir, MARKER, err); }

int pt_checkpoint_resolve(const char *dir, char *buf, size_t n) { return pt_dir_resolve(dir, MARKER, buf, n); }

/* The stamp of a checkpoint file: run id ("" when none) and the epoch and step it names. */
static void read_stamp(const pt_st_file *f, char *run_id, size_t n, long long *epoch, long long *step)
{
    const char *id = pt_st_meta(f, "run_id"), *e = pt_st_meta(f, "checkpoint_epoch"),
               *s = pt_st_meta(f, "checkpoint_step");
    snprintf(run_id, n, "%s", id ? id : "");
    *epoch = e ? strtoll(e, NULL, 10) : -1;
    *step = s ? strtoll(s, NULL, 10) : -1;
}

pt_status pt_checkpoint_install_staged(const char *dir, const char *run_id, int64_t epoch, int64_t global_step,
                                       int *installed, pt_error *err)
{
    *installed = 0;
    char pending[4400], path[4500];
    PT_TRY(pt_dir_slot_path(dir, PT_DIR_PENDING, pending, sizeof pending, err));
    snprintf(path, sizeof path, "%s/" MARKER, pending);
    struct stat sb;
    if (lstat(pending, &sb) != 0) return PT_OK;
    int match = 0;
    pt_st_file *f = NULL;
    pt_error e1;
    pt_status st = S_ISDIR(sb.st_mode) ? pt_st_open(path, &f, &e1) : PT_ERR_FORMAT;
    if (st == PT_OK) {
        char id[64];
        long long e, s2;
        read_stamp(f, id, sizeof id, &e, &s2);
        const char *fw = pt_st_meta(f, "framework");
        match = fw && strcmp(fw, "polytrain") == 0 && run_id[0] && strcmp(id, run_id) == 0 && e == epoch &&
                s2 == global_step;
        pt_st_close(f);
    } else if (!S_ISDIR(sb.st_mode) || lstat(path, &sb) != 0) {
        return PT_OK; /* not ours: left alone */
    } else if (st != PT_ERR_FORMAT) {
        /* A read that failed (I/O error, interrupted, out of memory) says nothing about the
         * stamp: the staged checkpoint may be the one to install, so it stays for a retry. */
        if (err) *err = e1;
        return pt_error_wrap(err, "cannot read the staged checkpoint of '%s'", dir);
    }
    if (!match) return pt_remove_tree(pending, err); /* of a commit that never reached its last/ */
    PT_TRY(pt_dir_commit(pending, dir, err));
    *installed = 1;
    return PT_OK;
}

/* ---------------------------------------------------------------- loading */

static pt_status parse_int_meta(const pt_st_file *f, const char *file, const char *key, long long lo,
                                long long hi, long long *out, pt_error *err)
{
    const char *v = pt_st_meta(f, key);
    if (!v) return pt_fail(err, PT_ERR_FORMAT, "%s: metadata '%s' is missing", file, key);
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return pt_fail(err, PT_ERR_FORMAT, "%s: metadata '%s' = '%s' is not an integer in %lld..%lld",
                       file, key, v, lo, hi);
    *out = x;
    return PT_OK;
}

/* An optional finite number >= lo (0 when absent: checkpoints written before it existed). */
static pt_status parse_double_meta(const pt_st_file *f, const char *file, const char *key, double lo,
                                   double *out, pt_error *err)
{
    const char *v = pt_st_meta(f, key);
    *out = 0;
    if (!v) return PT_OK;
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !isfinite(x) || x < lo)
        return pt_fail(err, PT_ERR_FORMAT, "%s: metadata '%s' = '%.32s' is not a finite number >= %g", file, key,
                       v, lo);
    *out = x;
    return PT_OK;
}

/* The largest magnitude a parameter or BatchNorm statistic may have. Training never comes
 * near it (weight decay and normalisation keep weights within a few units); a few layers of
 * such values overflow float, and every result after would be NaN. */
#define MAX_ABS_STATE 1e10

/* Every value of tensor `name` finite, >= 0 when nonneg (a variance or a mean square), and
 * within +-max_abs when max_abs > 0: a loaded value is never trusted into a NaN result. */
static pt_status check_values(const char *file, const char *name, const float *v, int64_t n, double max_abs,
                              int nonneg, pt_error *err)
{
    for (int64_t i = 0; i < n; i++) {
        const float x = v[i];
        if (!isfinite(x))
            return pt_fail(err, PT_ERR_FORMAT, "%s: tensor '%s' holds a non-finite value (%g at element %lld); "
                           "the checkpoint cannot be used", file, name, (double)x, (long long)i);
        if (nonneg && x < 0)
            return pt_fail(err, PT_ERR_FORMAT, "%s: tensor '%s' holds %g at element %lld; expected values >= 0",
                           file, name, (double)x, (long long)i);
        if (max_abs > 0 && fabs((double)x) > max_abs)
            return pt_fail(err, PT_ERR_FORMAT, "%s: tensor '%s' holds %g at element %lld; expected magnitudes up to "
                           "%g (no training gives such a value, and it overflows float in a forward pass)",
                           file, name, (double)x, (long long)i, max_abs);
    }
    return PT_OK;
}

/* name ends with suffix */
static int ends_with(const char *name, const char *suffix)
{
    size_t n = strlen(name), k = strlen(suffix);
    return n >= k && strcmp(name + n - k, suffix) == 0;
}

/* An optional number in [lo, hi] (0 when absent). */
static pt_status parse_double_range(const pt_st_file *f, const char *file, const char *key, double lo, double hi,
                                    double *out, pt_error *err)
{
    PT_TRY(parse_double_meta(f, file, key, lo, out, err));
    if (*out > hi)
        return pt_fail(err, PT_ERR_FORMAT, "%s: metadata '%s' = '%.32s' is not a number in [%g, %g]", file, key,
                       pt_st_meta(f, key), lo, hi);
    return PT_OK;
}

/* The rest of an epoch's record in a mid-epoch checkpoint (see pt_train_progress). */
static pt_status parse_epoch_progress(const pt_st_file *f, const char *file, pt_train_progress *pr,
                                      pt_error *err)
{
    long long v;
    PT_TRY(parse_double_meta(f, file, "elapsed_s", 0, &pr->elapsed_s, err));
    PT_TRY(parse_double_range(f, file, "early_stop_best", -1, 1, &pr->es_best, err));
    if (pt_st_meta(f, "early_stop_wait")) {
        PT_TRY(parse_int_meta(f, file, "early_stop_wait", 0, pr->epoch, &v, err));
        pr->es_wait = v;
    }
    const char *why = pt_st_meta(f, "stop_reason");
    if (why) snprintf(pr->stop_reason, sizeof pr->stop_reason, "%s", why);
    if (!pt_st_meta(f, "epoch_step")) return PT_OK;
    PT_TRY(parse_int_meta(f, file, "epoch_step", 0, pr->global_step, &v, err));
    pr->epoch_step = v;
    PT_TRY(parse_int_meta(f, file, "epoch_steps", pr->epoch_step, (long long)1 << 62, &v, err));
    pr->epoch_steps = v;
    PT_TRY(parse_int_meta(f, file, "epoch_seen", 0, (long long)1 << 62, &v, err));
    pr->epoch_seen = v;
    PT_TRY(parse_int_meta(f, file, "epoch_hits", 0, pr->epoch_seen, &v, err));
    pr->epoch_hits = v;
    PT_TRY(parse_double_meta(f, file, "epoch_loss_sum", -1e300, &pr->epoch_loss_sum, err));
    PT_TRY(parse_double_meta(f, file, "epoch_train_s", 0, &pr->epoch_train_s, err));
    if (pt_st_meta(f, "epoch_clipped_steps")) {
        PT_TRY(parse_int_meta(f, file, "epoch_clipped_steps", 0, pr->epoch_step, &v, err));
        pr->epoch_clipped = v;
        PT_TRY(parse_double_meta(f, file, "epoch_grad_norm_sum", 0, &pr->epoch_norm_sum, err));
    }
    if (pr->loss_scale > 0 && pt_st_meta(f, "epoch_loss_scale_history")) {
        PT_TRY(parse_int_meta(f, file, "epoch_skipped_steps", 0, pr->epoch_step, &v, err));
        pr->epoch_skipped = v;
        PT_TRY(parse_double_meta(f, file, "epoch_loss_scale_min", 0, &pr->epoch_scale_min, err));
        PT_TRY(parse_int_meta(f, file, "epoch_loss_scale_changes", 0, pr->epoch_step, &v, err));
        pr->epoch_scale_changes = (int)v;
        const char *h = pt_st_meta(f, "epoch_loss_scale_history");
        pt_json *js = NULL;
        if (pt_json_parse(h, strlen(h), NULL, &js, NULL) != PT_OK)
            return pt_fail(err, PT_ERR_FORMAT, "%s: metadata 'epoch_loss_scale_history' is not JSON", file);
        pt_status st = PT_OK;
        int want = pr->epoch_scale_changes < PT_PROGRESS_SCALE_EVENTS ? pr->epoch_scale_changes
                                                                      : PT_PROGRESS_SCALE_EVENTS;
        if (js->type != PT_JSON_ARRAY || (int)js->count != want) st = PT_ERR_FORMAT;
        for (int i = 0; st == PT_OK && i < want; i++) {
            const pt_json *e = &js->items[i];
            if (e->type != PT_JSON_ARRAY || e->count != 2 || e->items[0].type != PT_JSON_NUMBER ||
                e->items[1].type != PT_JSON_NUMBER || !(e->items[1].number > 0) || !e->items[0].is_int)
                st = PT_ERR_FORMAT;
            else {
                pr->epoch_scale_step[i] = e->items[0].integer;
                pr->epoch_scale_value[i] = e->items[1].number;
            }
        }
        pt_json_free(js);
        if (st != PT_OK)
            return pt_fail(err, PT_ERR_FORMAT,
                           "%s: metadata 'epoch_loss_scale_history' is not %d [step, scale] pairs", file, want);
    }
    return PT_OK;
}

static pt_status parse_floats_meta(const pt_st_file *f, const char *file, const char *key, int n,
                                   float *out, pt_error *err)
{
    const char *v = pt_st_meta(f, key);
    if (!v) return pt_fail(err, PT_ERR_FORMAT, "%s: metadata '%s' is missing", file, key);
    const char *s = v;
    for (int i = 0; i < n; i++) {
        char *end;
        errno = 0;
        double x = strtod(s, &end);
        if (errno || end == s || !isfinite(x) || !isfinite((float)x) || (i + 1 < n ? *end != ',' : *end != '\0'))
            return pt_fail(err, PT_ERR_FORMAT, "%s: metadata '%s' = '%.200s' is not %d %snumber%s finite as float32",
                           file, key, v, n, n > 1 ? "comma-separated " : "", n > 1 ? "s" : "");
        out[i] = (float)x;
        s = end + 1;
    }
    return PT_OK;
}

static pt_status meta_from_file(const pt_st_file *f, const char *file, pt_model_meta *m, pt_error *err)
{
    memset(m, 0, sizeof *m);
    const char *fw = pt_st_meta(f, "framework");
    if (!fw || strcmp(fw, "polytrain") != 0)
        return pt_fail(err, PT_ERR_FORMAT, "%s: not a polytrain checkpoint (metadata framework=%s)",
                       file, fw ? fw : "missing");
    const char *model = pt_st_meta(f, "model");
    if (!model || !model[0] || strlen(model) >= sizeof m->model)
        return pt_fail(err, PT_ERR_FORMAT, "%s: metadata 'model' is missing or too long", file);
    strcpy(m->model, model);
    long long v;
    PT_TRY(parse_int_meta(f, file, "in_channels", 1, 3, &v, err));
    m->in_channels = (int)v;
    PT_TRY(parse_int_meta(f, file, "num_classes", 1, PT_MAX_CLASSES, &v, err));
    m->num_classes = (int)v;
    PT_TRY(parse_int_meta(f, file, "image_height", 1, 16384, &v, err));
    m->height = (int)v;
    PT_TRY(parse_int_meta(f, file, "image_width", 1, 16384, &v, err));
    m->width = (int)v;
    long long se, ss;
    read_stamp(f, m->run_id, sizeof m->run_id, &se, &ss);
    m->epoch = se;
    m->global_step = ss;
    PT_TRY(parse_floats_meta(f, file, "mean", m->in_channels, m->mean, err));
    PT_TRY(parse_floats_meta(f, file, "std", m->in_channels, m->std, err));
    /* Pixels are normalised as (p/255 - mean) / std: these bounds keep every input finite and
     * far from float's limits; real statistics of images in [0, 1] are well inside them. */
    for (int c = 0; c < m->in_channels; c++) {
        if (!(fabsf(m->mean[c]) <= 1000.0f))
            return pt_fail(err, PT_ERR_FORMAT, "%s: metadata 'mean' = '%.200s': channel %d is %g, expected a number "
                           "in [-1000, 1000]", file, pt_st_meta(f, "mean"), c, (double)m->mean[c]);
        if (!(m->std[c] >= 1e-6f && m->std[c] <= 1000.0f))
            return pt_fail(err, PT_ERR_FORMAT, "%s: metadata 'std' = '%.200s': channel %d is %g, expected a number "
                           "in [1e-06, 1000]", file, pt_st_meta(f, "std"), c, (double)m->std[c]);
    }
    const char *names = pt_st_meta(f, "class_names");
    if (!names) return pt_fail(err, PT_ERR_FORMAT, "%s: metadata 'class_names' is missing", file);
    pt_json *js = NULL;
    pt_error jerr;
    pt_error_clear(&jerr);
    if (pt_json_parse(names, strlen(names), NULL, &js, &jerr) != PT_OK)
        return pt_fail(err, PT_ERR_FORMAT, "%s: metadata 'class_names': %s", file, jerr.msg);
    pt_status st = PT_OK;
    if (js->type != PT_JSON_ARRAY || (int)js->count != m->num_classes) {
        st = pt_fail(err, PT_ERR_FORMAT, "%s: metadata 'class_names' must be an array of %d strings",
                     file, m->num_classes);
    } else {
        m->class_names = calloc((size_t)m->num_classes, sizeof(char *));
        if (!m->class_names) st = pt_fail(err, PT_ERR_NOMEM, "out of host memory");
        for (int i = 0; st == PT_OK && i < m->num_classes; i++) {
            const pt_json *s = pt_json_at(js, (size_t)i);
            if (s->type != PT_JSON_STRING) {
                st = pt_fail(err, PT_ERR_FORMAT, "%s: class name %d is not a string", file, i);
                break;
            }
            m->class_names[i] = strdup(s->str);
            if (!m->class_names[i]) st = pt_fail(err, PT_ERR_NOMEM, "out of host memory");
        }
        if (st != PT_OK) pt_model_meta_free(m);
    }
    pt_json_free(js);
    return st;
}

static pt_status open_in_dir(const char *dir, const char *leaf, pt_st_file **f, char *path,
                             size_t pathsz, pt_error *err)
{
    snprintf(path, pathsz, "%s/%s", dir, leaf);
    if (!pt_path_exists(dir)) return pt_fail(err, PT_ERR_IO, "checkpoint directory '%s' does not exist", dir);
    return pt_st_open(path, f, err);
}

pt_status pt_checkpoint_read_meta(const char *dir, pt_model_meta *meta, pt_error *err)
{
    char rdir[4400];
    pt_checkpoint_resolve(dir, rdir, sizeof rdir);
    dir = rdir;
    char path[4600];
    pt_st_file *f = NULL;
    PT_TRY(open_in_dir(dir, "model.safetensors", &f, path, sizeof path, err));
    pt_status st = meta_from_file(f, path, meta, err);
    pt_st_close(f);
    return st;
}

static pt_status expect_tensor(const pt_st_file *f, const char *file, const char *name,
                               pt_st_dtype dtype, int ndim, const int64_t *dim,
                               const pt_st_tensor **out, pt_error *err)
{
    const pt_st_tensor *t = pt_st_find(f, name);
    if (!t) return pt_fail(err, PT_ERR_MISMATCH, "%s: tensor '%s' is missing", file, name);
    int ok = t->dtype == dtype && t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == dim[i];
    if (!ok) {
        char want[96] = "", got[96] = "";
        for (int i = 0; i < ndim; i++) {
            char b[24];
            snprintf(b, sizeof b, "%s%lld", i ? "," : "", (long long)dim[i]);
            strncat(want, b, sizeof want - strlen(want) - 1);
        }
        for (int i = 0; i < t->ndim && i < 8; i++) {
            char b[24];
            snprintf(b, sizeof b, "%s%lld", i ? "," : "", (long long)t->shape[i]);
            strncat(got, b, sizeof got - strlen(got) - 1);
        }
        return pt_fail(err, PT_ERR_MISMATCH, "%s: tensor '%s' is %s[%s], expected %s[%s]", file, name,
                       pt_st_dtype_name(t->dtype), got, pt_st_dtype_name(dtype), want);
    }
    *out = t;
    return PT_OK;
}

/* "<BN module>.num_batches_tracked" for one of the net's BatchNorm layers. */
static int is_num_batches_tracked(const pt_net *net, const char *name)
{
    for (int n = 0; n < net->nnodes; n++) {
        const pt_node *node = &net->nodes[n];
        if (node->kind != PT_NODE_BATCHNORM2D) continue;
        size_t len = strlen(node->name);
        if (strncmp(name, node->name, len) == 0 && strcmp(name + len, ".num_batches_tracked") == 0)
            return 1;
    }
    return 0;
}

/* "<parameter>.<slot name>" for one of the optimizer's state slots. */
static int is_optimizer_state(const pt_net *net, const pt_optim_config *o, int slots, const char *name)
{
    for (int i = 0; i < net->nparams; i++) {
        size_t len = strlen(net->params[i].name);
        if (strncmp(name, net->params[i].name, len) != 0 || name[len] != '.') continue;
        for (int s = 0; s < slots; s++)
            if (strcmp(name + len + 1, pt_optim_slot_name(o, s)) == 0) return 1;
    }
    return 0;
}

static pt_status load_model_file(const pt_st_file *f, const char *file, const pt_net *net, host_state *h,
                                 pt_error *err)
{
    size_t expected = 0;
    for (int i = 0; i < net->nparams; i++) {
        const pt_param_info *p = &net->params[i];
        const pt_st_tensor *t = NULL;
        PT_TRY(expect_tensor(f, file, p->name, PT_ST_F32, p->ndim, p->dim, &t, err));
        memcpy(h->params + p->offset, t->data, t->nbytes);
        expected++;
    }
    for (int i = 0; i < net->nbuffers; i++) {
        const pt_buffer_info *b = &net->buffers[i];
        const pt_st_tensor *t = NULL;
        int64_t dim[1] = {b->numel};
        PT_TRY(expect_tensor(f, file, b->name, PT_ST_F32, 1, dim, &t, err));
        memcpy(h->buffers + b->offset, t->data, t->nbytes);
        expected++;
    }
    int64_t nbt = -1;
    for (int n = 0; n < net->nnodes; n++) {
        const pt_node *node = &net->nodes[n];
        if (node->kind != PT_NODE_BATCHNORM2D) continue;
        char name[PT_NAME_MAX + 32];
        snprintf(name, sizeof name, "%s.num_batches_tracked", node->name);
        const pt_st_tensor *t = NULL;
        PT_TRY(expect_tensor(f, file, name, PT_ST_I64, 0, NULL, &t, err));
        int64_t v;
        memcpy(&v, t->data, sizeof v);
        if (v < 0) return pt_fail(err, PT_ERR_FORMAT, "%s: '%s' is negative", file, name);
        if (nbt < 0 || v > nbt) nbt = v;
        h->nbt[node->bn_index] = v;
        expected++;
    }
    for (int i = 0; i < net->nparams; i++)
        PT_TRY(check_values(file, net->params[i].name, h->params + net->params[i].offset, net->params[i].numel,
                            MAX_ABS_STATE, 0, err));
    for (int i = 0; i < net->nbuffers; i++) {
        const pt_buffer_info *b = &net->buffers[i];
        PT_TRY(check_values(file, b->name, h->buffers + b->offset, b->numel, MAX_ABS_STATE,
                            ends_with(b->name, ".running_var"), err));
    }
    if (pt_st_count(f) != expected) {
        for (size_t i = 0; i < pt_st_count(f); i++) {
            const char *name = pt_st_at(f, i)->name;
            if (pt_net_find_param(net, name) < 0 && pt_net_find_buffer(net, name) < 0 &&
                !is_num_batches_tracked(net, name))
                return pt_fail(err, PT_ERR_MISMATCH, "%s: unexpected tensor '%s' (not in model '%s')",
                               file, name, pt_st_meta(f, "model") ? pt_st_meta(f, "model") : "?");
        }
        return pt_fail(err, PT_ERR_MISMATCH, "%s: %zu tensors, the model has %zu", file, pt_st_count(f),
                       expected);
    }
    h->bn_steps = nbt < 0 ? 0 : nbt;
    return PT_OK;
}

static pt_status load_optimizer_file(const pt_st_file *f, const char *file, pt_replica *r, host_state *h,
                                     pt_train_progress *pr, pt_error *err)
{
    const pt_net *net = pt_replica_net(r);
    const pt_optim_config *o = pt_replica_optim(r);
    const char *kind = pt_st_meta(f, "optimizer");
    if (!kind || strcmp(kind, pt_optim_name(o->kind)) != 0)
        return pt_fail(err, PT_ERR_MISMATCH, "%s: optimizer is '%s', this run uses '%s'", file,
                       kind ? kind : "missing", pt_optim_name(o->kind));
    int slots = pt_replica_opt_slots(r);
    int64_t P = pt_replica_param_region(r);
    for (int s = 0; s < slots; s++)
        for (int i = 0; i < net->nparams; i++) {
            const pt_param_info *p = &net->params[i];
            char name[PT_NAME_MAX + 32];
            snprintf(name, sizeof name, "%s.%s", p->name, pt_optim_slot_name(o, s));
            const pt_st_tensor *t = NULL;
            PT_TRY(expect_tensor(f, file, name, PT_ST_F32, p->ndim, p->dim, &t, err));
            memcpy(h->opt + (int64_t)s * P + p->offset, t->data, t->nbytes);
            /* mean squares of gradients are >= 0; any state is finite */
            const char *slot = pt_optim_slot_name(o, s);
            PT_TRY(check_values(file, name, h->opt + (int64_t)s * P + p->offset, p->numel, 0,
                                !strcmp(slot, "exp_avg_sq") || !strcmp(slot, "square_avg"), err));
        }
    /* the weight EMA's tensors, all of them or none (pt_checkpoint_load_ema reads them) */
    size_t nema = 0;
    for (size_t i = 0; i < pt_st_count(f); i++) nema += strncmp(pt_st_at(f, i)->name, "ema.", 4) == 0;
    if (nema && nema != (size_t)(net->nparams + net->nbuffers))
        return pt_fail(err, PT_ERR_MISMATCH, "%s: %zu weight-EMA tensors, the model has %d parameters and buffers",
                       file, nema, net->nparams + net->nbuffers);
    if (pt_st_count(f) != (size_t)slots * (size_t)net->nparams + nema) {
        for (size_t i = 0; i < pt_st_count(f); i++)
            if (strncmp(pt_st_at(f, i)->name, "ema.", 4) != 0 && !is_optimizer_state(net, o, slots, pt_st_at(f, i)->name))
                return pt_fail(err, PT_ERR_MISMATCH, "%s: unexpected tensor '%s' (not %s state of this model)",
                               file, pt_st_at(f, i)->name, pt_optim_name(o->kind));
        return pt_fail(err, PT_ERR_MISMATCH, "%s: %zu tensors, expected %d", file, pt_st_count(f),
                       slots * net->nparams);
    }
    long long v;
    memset(pr, 0, sizeof *pr);
    pr->has_ema = nema > 0;
    PT_TRY(parse_int_meta(f, file, "epoch", 0, 1000000000LL, &v, err));
    pr->epoch = v;
    PT_TRY(parse_int_meta(f, file, "global_step", 0, (long long)1 << 62, &v, err));
    pr->global_step = v;
    PT_TRY(parse_int_meta(f, file, "bn_steps", 0, (long long)1 << 62, &v, err));
    pr->bn_steps = v;
    PT_TRY(parse_int_meta(f, file, "best_epoch", -1, 1000000000LL, &v, err));
    pr->best_epoch = v;
    PT_TRY(parse_int_meta(f, file, "optimizer_started", 0, 1, &v, err));
    int started = (int)v;
    const char *seed = pt_st_meta(f, "seed");
    char *end;
    errno = 0;
    if (!seed || !(*seed >= '0' && *seed <= '9') || (pr->seed = strtoull(seed, &end, 10), *end) || errno)
        return pt_fail(err, PT_ERR_FORMAT, "%s: metadata 'seed' = '%.32s' is not an integer in 0..%llu", file,
                       seed ? seed : "(missing)", (unsigned long long)UINT64_MAX);
    /* A top-1 accuracy, or -1 before the first validation: NaN would never compare greater,
     * and best/ would never be replaced again. */
    const char *best = pt_st_meta(f, "best_top1");
    if (!best || (pr->best_top1 = strtod(best, &end), *end || end == best) ||
        !(pr->best_top1 == -1 || (pr->best_top1 >= 0 && pr->best_top1 <= 1)))
        return pt_fail(err, PT_ERR_FORMAT, "%s: metadata 'best_top1' = '%.32s' is not -1 or a number in [0, 1]", file,
                       best ? best : "(missing)");
    long long se, ss;
    read_stamp(f, pr->run_id, sizeof pr->run_id, &se, &ss);
    const char *rec = pt_st_meta(f, "epoch_record_jsonl");
    if (rec && strlen(rec) < sizeof pr->record_jsonl) snprintf(pr->record_jsonl, sizeof pr->record_jsonl, "%s", rec);
    rec = pt_st_meta(f, "epoch_record_csv");
    if (rec && strlen(rec) < sizeof pr->record_csv) snprintf(pr->record_csv, sizeof pr->record_csv, "%s", rec);
    const char *sched = pt_st_meta(f, "schedule");
    snprintf(pr->schedule, sizeof pr->schedule, "%s", sched ? sched : "{}");
    /* Mixed-precision fields: absent in checkpoints of fp32 runs and of older versions. */
    const char *prec = pt_st_meta(f, "precision");
    pt_precision pp = PT_PREC_FP32;
    if (prec && !pt_precision_parse(prec, &pp))
        return pt_fail(err, PT_ERR_FORMAT, "%s: metadata 'precision' is '%.16s', expected one of %s", file, prec,
                       pt_precision_choices());
    snprintf(pr->precision, sizeof pr->precision, "%s", pt_precision_name(pp));
    const char *ls = pt_st_meta(f, "loss_scale");
    if (ls) {
        pr->loss_scale = strtod(ls, &end);
        if (*end || end == ls || !(pr->loss_scale > 0) || !isfinite(pr->loss_scale))
            return pt_fail(err, PT_ERR_FORMAT, "%s: metadata 'loss_scale' is '%.32s', expected a positive number",
                           file, ls);
        PT_TRY(parse_int_meta(f, file, "loss_scale_growth_tracker", 0, (long long)1 << 62, &v, err));
        pr->loss_scale_growth_tracker = v;
        PT_TRY(parse_int_meta(f, file, "skipped_steps", 0, pr->global_step, &v, err));
        pr->skipped_steps = v;
    }
    PT_TRY(parse_epoch_progress(f, file, pr, err));
    h->bn_steps = pr->bn_steps;
    h->started = started;
    return PT_OK;
}

pt_status pt_checkpoint_load_ema(const char *dir, pt_replica *r, float *ema, pt_error *err)
{
    const pt_net *net = pt_replica_net(r);
    const int64_t P = pt_replica_param_region(r);
    char path[4600];
    pt_st_file *f = NULL;
    char rdir[4400];
    pt_checkpoint_resolve(dir, rdir, sizeof rdir);
    PT_TRY(open_in_dir(rdir, "optimizer.safetensors", &f, path, sizeof path, err));
    pt_status st = PT_OK;
    for (int i = 0; i < net->nparams && st == PT_OK; i++) {
        const pt_param_info *p = &net->params[i];
        char name[PT_NAME_MAX + 32];
        const pt_st_tensor *t = NULL;
        snprintf(name, sizeof name, "ema.%s", p->name);
        st = expect_tensor(f, path, name, PT_ST_F32, p->ndim, p->dim, &t, err);
        if (st == PT_OK) memcpy(ema + p->offset, t->data, t->nbytes);
        if (st == PT_OK) st = check_values(path, name, ema + p->offset, p->numel, MAX_ABS_STATE, 0, err);
    }
    for (int i = 0; i < net->nbuffers && st == PT_OK; i++) {
        const pt_buffer_info *b = &net->buffers[i];
        char name[PT_NAME_MAX + 32];
        int64_t dim[1] = {b->numel};
        const pt_st_tensor *t = NULL;
        snprintf(name, sizeof name, "ema.%s", b->name);
        st = expect_tensor(f, path, name, PT_ST_F32, 1, dim, &t, err);
        if (st == PT_OK) memcpy(ema + P + b->offset, t->data, t->nbytes);
        if (st == PT_OK)
            st = check_values(path, name, ema + P + b->offset, b->numel, MAX_ABS_STATE,
                              ends_with(b->name, ".running_var"), err);
    }
    pt_st_close(f);
    return st;
}

/* The checkpoint's metadata names as many classes and input channels as the net has. */
static pt_status check_meta_fits(const pt_st_file *f, const char *path, const pt_net *net, pt_error *err)
{
    pt_model_meta meta;
    pt_status st = meta_from_file(f, path, &meta, err);
    if (st == PT_OK) {
        if (meta.num_classes != net->num_classes || meta.in_channels != net->in_channels)
            st = pt_fail(err, PT_ERR_MISMATCH,
                         "%s: checkpoint has %d classes and %d input channels, the model has %d and %d",
                         path, meta.num_classes, meta.in_channels, net->num_classes, net->in_channels);
        pt_model_meta_free(&meta);
    }
    return st;
}

pt_status pt_checkpoint_read_model(const char *dir, const pt_net *net, float **params, float **buffers,
                                   pt_error *err)
{
    *params = *buffers = NULL;
    char rdir[4400];
    pt_checkpoint_resolve(dir, rdir, sizeof rdir);
    dir = rdir;
    char path[4600];
    pt_st_file *f = NULL;
    PT_TRY(open_in_dir(dir, "model.safetensors", &f, path, sizeof path, err));
    host_state h;
    memset(&h, 0, sizeof h);
    pt_status st = check_meta_fits(f, path, net, err);
    if (st == PT_OK) {
        h.params = calloc((size_t)pt_net_param_region(net) + 1, sizeof(float));
        h.buffers = calloc((size_t)pt_net_buffer_region(net) + 1, sizeof(float));
        h.nbt = calloc((size_t)net->nbn + 1, sizeof(int64_t));
        if (!h.params || !h.buffers || !h.nbt) st = pt_fail(err, PT_ERR_NOMEM, "out of host memory for the checkpoint");
    }
    if (st == PT_OK) st = load_model_file(f, path, net, &h, err);
    pt_st_close(f);
    if (st == PT_OK) {
        *params = h.params;
        *buffers = h.buffers;
        h.params = h.buffers = NULL;
    }
    host_state_free(&h);
    return st;
}

/* model.safetensors and optimizer.safetensors are one checkpoint: the same stamp. A pair
 * where neither has one (written before stamps existed) is accepted as it always was. */
static pt_status check_pair(const pt_st_file *mf, const pt_st_file *of, const char *dir, pt_error *err)
{
    char mid[64], oid[64];
    long long me, ms, oe, os;
    read_stamp(mf, mid, sizeof mid, &me, &ms);
    read_stamp(of, oid, sizeof oid, &oe, &os);
    if (!mid[0] && !oid[0]) return PT_OK;
    if (strcmp(mid, oid) == 0 && me == oe && ms == os) return PT_OK;
    return pt_fail(err, PT_ERR_MISMATCH,
                   "'%s': model.safetensors (run %s, epoch %lld, step %lld) and optimizer.safetensors (run %s, "
                   "epoch %lld, step %lld) are not one checkpoint; a file copied in from another checkpoint or "
                   "run? Restore the matching pair, or start from the weights alone with --init-from",
                   dir, mid[0] ? mid : "unknown", me, ms, oid[0] ? oid : "unknown", oe, os);
}

pt_status pt_checkpoint_load(const char *dir, pt_replica *r, pt_train_progress *progress,
                             pt_error *err)
{
    char rdir[4400];
    pt_checkpoint_resolve(dir, rdir, sizeof rdir);
    dir = rdir;
    const pt_net *net = pt_replica_net(r);
    char path[4600], opath[4600];
    pt_st_file *f = NULL, *of = NULL;
    PT_TRY(open_in_dir(dir, "model.safetensors", &f, path, sizeof path, err));
    pt_status st = check_meta_fits(f, path, net, err);
    host_state h;
    int have_h = 0;
    if (st == PT_OK && (st = host_state_alloc(r, &h, err)) == PT_OK) have_h = 1;
    if (st == PT_OK) st = load_model_file(f, path, net, &h, err);
    if (st == PT_OK && progress) {
        st = open_in_dir(dir, "optimizer.safetensors", &of, opath, sizeof opath, err);
        if (st == PT_OK) st = check_pair(f, of, dir, err);
        if (st == PT_OK) st = load_optimizer_file(of, opath, r, &h, progress, err);
    }
    if (st == PT_OK) st = pt_replica_write_state(r, h.params, h.buffers, h.opt, err);
    /* Without optimizer.safetensors the optimizer state was just zeroed: not started. */
    if (st == PT_OK) pt_replica_set_progress(r, h.bn_steps, h.started);
    if (have_h) host_state_free(&h);
    pt_st_close(f);
    pt_st_close(of);
    return st;
}
