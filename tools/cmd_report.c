/* polytrain report RUN: one folder (RUN/report by default) that shows a finished or running
 * training run: its loss, accuracy and LR curves, the checkpoint's confusion matrix and
 * per-class accuracy on the run's own validation data, its most confident mistakes, and an
 * index.html tying them together. Writes the report folder only, never the run's records. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dircommit.h"
#include "core/fileio.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/evaluate.h"
#include "tools/gnuplot.h"
#include "tools/jsonl.h"
#include "tools/report_internal.h"

const report_epoch *report_find_epoch(const report_ctx *r, int64_t e)
{
    for (int i = r->nepochs - 1; i >= 0; i--)
        if (r->epochs[i].epoch == e) return &r->epochs[i];
    return NULL;
}

/* ---------------------------------------------------------------- the run's records */

static void on_epoch(void *user, const pt_json *js)
{
    report_ctx *r = user;
    const double e = cli_json_number(js, "epoch");
    if (!(e >= 1)) return;
    report_epoch *n = realloc(r->epochs, (size_t)(r->nepochs + 1) * sizeof *n);
    if (!n) return;
    r->epochs = n;
    report_epoch *p = &r->epochs[r->nepochs++];
    p->epoch = (int64_t)e;
    p->train_loss = cli_json_number(js, "train_loss");
    p->train_acc = cli_json_number(js, "train_acc");
    p->val_loss = cli_json_number(js, "val_loss");
    p->val_top1 = cli_json_number(js, "val_top1");
    p->val_top5 = cli_json_number(js, "val_top5");
    p->lr = cli_json_number(js, "lr");
    p->elapsed_s = cli_json_number(js, "elapsed_s");
    p->img_per_s = cli_json_number(js, "img_per_s");
    const double vc = cli_json_number(js, "val_count");
    p->val_count = vc >= 0 ? (int64_t)vc : -1;
    const pt_json *b = pt_json_get(js, "best");
    p->best = b && b->type == PT_JSON_BOOL && b->boolean;
}

typedef struct steps_acc {
    report_ctx *r;
    int64_t cap;
} steps_acc;

static void on_step(void *user, const pt_json *js)
{
    steps_acc *a = user;
    report_ctx *r = a->r;
    const double s = cli_json_number(js, "step"), e = cli_json_number(js, "epoch");
    if (!(s >= 0) || !(e >= 1)) return;
    if (r->nsteps == a->cap) {
        const int64_t cap = a->cap ? 2 * a->cap : 1024;
        report_step *n = realloc(r->steps, (size_t)cap * sizeof *n);
        if (!n) return;
        r->steps = n;
        a->cap = cap;
    }
    report_step *p = &r->steps[r->nsteps++];
    p->step = (int64_t)s;
    p->epoch = (int64_t)e;
    p->loss = cli_json_number(js, "loss");
    p->lr = cli_json_number(js, "lr");
}

static void read_records(report_ctx *r)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/metrics.jsonl", r->run);
    cli_for_each_jsonl(path, on_epoch, r);
    snprintf(path, sizeof path, "%s/steps.jsonl", r->run);
    steps_acc a = {r, 0};
    cli_for_each_jsonl(path, on_step, &a);
    if (r->nsteps > 0) {
        int64_t n = 0;
        while (n < r->nsteps && r->steps[n].epoch == r->steps[0].epoch) n++;
        r->steps_per_epoch = n;
    }
}

/* ---------------------------------------------------------------- the checkpoint */

static int is_checkpoint(const char *dir)
{
    char path[4500], r[4400];
    pt_checkpoint_resolve(dir, r, sizeof r); /* never repaired here: the trainer does that */
    snprintf(path, sizeof path, "%s/model.safetensors", r);
    return pt_path_exists(path);
}

/* --checkpoint best (falling back to last), last, or a directory. */
static int choose_checkpoint(report_ctx *r, const char *which)
{
    r->checkpoint_epoch = -1;
    const int best = strcmp(which, "best") == 0, last = strcmp(which, "last") == 0;
    if (!best && !last) {
        snprintf(r->checkpoint, sizeof r->checkpoint, "%s", which);
        snprintf(r->checkpoint_note, sizeof r->checkpoint_note, "%.100s", which);
        if (!is_checkpoint(which)) {
            cli_error("report: --checkpoint '%s' is not a checkpoint directory (no model.safetensors)", which);
            return 1;
        }
        return 0;
    }
    snprintf(r->checkpoint, sizeof r->checkpoint, "%s/%s", r->run, which);
    int use_last = last;
    if (best && !is_checkpoint(r->checkpoint)) {
        snprintf(r->checkpoint, sizeof r->checkpoint, "%s/last", r->run);
        use_last = 1;
        if (is_checkpoint(r->checkpoint))
            cli_warning("run '%s' has no best/ checkpoint: reporting on last/", r->run);
    }
    if (!is_checkpoint(r->checkpoint)) {
        cli_error("report: run '%s' has no %s checkpoint (no %s/model.safetensors)", r->run,
                  best ? "best/ or last/" : "last/", r->checkpoint);
        return 1;
    }
    /* the epoch it holds: last/ the last epoch recorded, best/ the last one marked best */
    for (int i = r->nepochs - 1; i >= 0 && r->checkpoint_epoch < 0; i--)
        if (use_last || r->epochs[i].best) r->checkpoint_epoch = r->epochs[i].epoch;
    if (r->checkpoint_epoch >= 0)
        snprintf(r->checkpoint_note, sizeof r->checkpoint_note, "%s/ (epoch %lld)", use_last ? "last" : "best",
                 (long long)r->checkpoint_epoch);
    else
        snprintf(r->checkpoint_note, sizeof r->checkpoint_note, "%s/", use_last ? "last" : "best");
    return 0;
}

/* ---------------------------------------------------------------- report.json */

static void json_file(pt_strbuf *sb, int *first, const char *name)
{
    pt_strbuf_puts(sb, *first ? "" : ",");
    pt_strbuf_json_string(sb, name);
    *first = 0;
}

static void json_num(pt_strbuf *sb, const char *key, double v)
{
    pt_strbuf_printf(sb, ",\"%s\":", key);
    if (v == v) pt_strbuf_json_double(sb, v);
    else pt_strbuf_puts(sb, "null");
}

static void json_epoch(pt_strbuf *sb, const char *key, const report_epoch *e)
{
    pt_strbuf_printf(sb, ",\"%s\":", key);
    if (!e) {
        pt_strbuf_puts(sb, "null");
        return;
    }
    pt_strbuf_printf(sb, "{\"epoch\":%lld", (long long)e->epoch);
    json_num(sb, "train_loss", e->train_loss);
    json_num(sb, "train_acc", e->train_acc);
    json_num(sb, "val_loss", e->val_loss);
    json_num(sb, "val_top1", e->val_top1);
    json_num(sb, "val_top5", e->val_top5);
    pt_strbuf_putc(sb, '}');
}

static void report_json(const report_ctx *r, pt_strbuf *sb)
{
    pt_strbuf_puts(sb, "{\"run\":");
    pt_strbuf_json_string(sb, r->run);
    pt_strbuf_puts(sb, ",\"report\":");
    pt_strbuf_json_string(sb, r->out);
    pt_strbuf_puts(sb, ",\"checkpoint\":");
    pt_strbuf_json_string(sb, r->checkpoint);
    pt_strbuf_puts(sb, ",\"checkpoint_epoch\":");
    if (r->checkpoint_epoch >= 0) pt_strbuf_printf(sb, "%lld", (long long)r->checkpoint_epoch);
    else pt_strbuf_puts(sb, "null");
    pt_strbuf_puts(sb, ",\"model\":");
    pt_strbuf_json_string(sb, r->m.meta.model);
    pt_strbuf_puts(sb, ",\"data\":");
    pt_strbuf_json_string(sb, r->data_desc);
    pt_strbuf_printf(sb, ",\"classes\":%d,\"count\":%lld,\"correct\":%lld", r->classes, (long long)r->res.count,
                     (long long)r->cm.correct);
    json_num(sb, "loss", r->res.loss);
    json_num(sb, "top1", r->res.top1);
    json_num(sb, "top5", r->res.top5);
    json_epoch(sb, "final_epoch", r->nepochs ? &r->epochs[r->nepochs - 1] : NULL);
    json_epoch(sb, "checkpoint_record", r->checkpoint_epoch >= 0 ? report_find_epoch(r, r->checkpoint_epoch) : NULL);
    pt_strbuf_printf(sb, ",\"misclassified\":{\"total\":%lld,\"shown\":%d,\"order\":\"most confident first\"}",
                     (long long)r->wrong, r->nmistakes);
    pt_strbuf_printf(sb, ",\"plots\":%s,\"plots_missing\":", r->plots ? "true" : "false");
    if (r->plots) pt_strbuf_puts(sb, "null");
    else pt_strbuf_json_string(sb, r->plots_missing);
    pt_strbuf_puts(sb, ",\"files\":[");
    int first = 1;
    json_file(sb, &first, "index.html");
    json_file(sb, &first, "report.json");
    json_file(sb, &first, "confusion.csv");
    json_file(sb, &first, "per_class.csv");
    if (r->plots) {
        static const char *const pngs[] = {"loss.png", "accuracy.png", "lr.png", "confusion.png", "per_class.png"};
        for (size_t i = 0; i < sizeof pngs / sizeof pngs[0]; i++) json_file(sb, &first, pngs[i]);
        if (r->nmistakes) json_file(sb, &first, "misclassified.png");
    }
    json_file(sb, &first, "gnuplot/report.gp");
    for (int i = 0; i < r->nmistakes; i++) json_file(sb, &first, r->mistakes[i].png);
    pt_strbuf_puts(sb, "]}\n");
}

/* ---------------------------------------------------------------- the command */

static pt_status write_text(const char *path, const pt_strbuf *sb, pt_error *err)
{
    PT_TRY(pt_strbuf_check(sb, err));
    const void *chunks[1] = {sb->data};
    size_t sizes[1] = {sb->len};
    return pt_write_file_atomic(path, chunks, sizes, 1, err);
}

/* The report folder's files, written into r->tmp. */
static pt_status write_report(report_ctx *r, int max_mis, pt_strbuf *json, pt_error *err)
{
    char path[4400];
    PT_TRY(pt_remove_tree(r->tmp, err));
    PT_TRY(pt_mkdir_p(r->tmp, err));
    snprintf(path, sizeof path, "%s/confusion.csv", r->tmp);
    PT_TRY(cli_confusion_write_csv(path, &r->cm, (const char *const *)r->names, err));
    snprintf(path, sizeof path, "%s/per_class.csv", r->tmp);
    PT_TRY(cli_per_class_write_csv(path, &r->cm, (const char *const *)r->names, err));
    PT_TRY(report_write_samples(r, max_mis, err));
    PT_TRY(report_write_plots(r, err));
    PT_TRY(report_write_html(r, err));
    report_json(r, json);
    snprintf(path, sizeof path, "%s/report.json", r->tmp);
    return write_text(path, json, err);
}

/* --out may replace a report written before, never another directory. */
static int check_out(const char *out)
{
    char path[4300];
    /* a crash inside the report's own commit (see core/dircommit.h) is settled first */
    pt_error e;
    if (pt_dir_recover(out, "report.json", &e) != PT_OK) {
        cli_error("report: --out %s: %s", out, e.msg);
        return 1;
    }
    snprintf(path, sizeof path, "%s/report.json", out);
    if (!pt_path_exists(out) || pt_path_exists(path)) return 0;
    cli_error("report: '%s' exists and holds no report.json: not replacing it (choose another --out)", out);
    return 1;
}

static void ctx_free(report_ctx *r)
{
    cli_class_names_free(r->names, r->classes);
    cli_confusion_free(&r->cm);
    free(r->logits);
    pt_dataset_free(&r->ds);
    cli_model_free(&r->m);
    cli_run_data_free(&r->rd);
    free(r->epochs);
    free(r->steps);
    free(r->mistakes);
}

int cmd_report(int argc, char **argv)
{
    const char *out = NULL, *which = "best", *backend = "auto", *devices = NULL;
    int threads = 0, batch = 0, max_mis = 36, json = 0;
    const arg_spec specs[] = {
        {"out", ARG_STRING, &out, "DIR", "where to write the report (default RUN/report; replaced as a whole)", 0, 0, NULL},
        {"checkpoint", ARG_STRING, &which, "WHICH", "best (default; last/ when the run has no best/), last, or a checkpoint directory", 0, 0, NULL},
        {"backend", ARG_STRING, &backend, "NAME", "auto (a GPU backend if any, else cpu) or a backend name", 0, 0, NULL},
        {"devices", ARG_STRING, &devices, "LIST", "all, a count N (the first N) or indices like 0,1 (one index: 0,); default all (cpu: 1)", 0, 0, NULL},
        {"threads", ARG_INT, &threads, "N", "cpu worker threads per device (default: the cores divided between the devices)", 0, 4096, NULL},
        {"batch", ARG_INT, &batch, "N", "samples per device per forward pass (default: the run's --batch-per-device)", 0, 65536, NULL},
        {"max-misclassified", ARG_INT, &max_mis, "N", "show the N most confidently misclassified validation images (default 36; 0: none)", 0, 1000, NULL},
        {"json", ARG_FLAG, &json, NULL, "print the report's summary (report.json) instead of text", 0, 0, NULL},
        {NULL, 0, NULL, NULL, NULL, 0, 0, NULL},
    };
    const arg_command cmd = {
        "report", "Write an HTML report of a training run: curves, confusion matrix, per-class accuracy, mistakes.",
        "RUN [options]", specs,
        "RUN is a run directory (train --out). The checkpoint is evaluated on the run's own\n"
        "validation data as RUN/config.json records it. RUN/report/ (or --out) gets index.html,\n"
        "report.json, confusion.csv (rows: true class, columns: predicted), per_class.csv,\n"
        "loss.png, accuracy.png, lr.png, confusion.png, per_class.png, misclassified.png and\n"
        "misclassified/*.png. The plots need gnuplot (Debian package " CLI_GNUPLOT_PACKAGE "); without it\n"
        "the rest is written and the page says that the plots are missing.",
        NULL};
    char *pos[2];
    int npos = 0;
    int rc = args_parse(&cmd, argc, argv, pos, 2, &npos);
    if (rc) return rc == 1 ? 0 : 2;
    if (npos != 1) {
        cli_error("report: expected one run directory, got %d (see 'polytrain report --help')", npos);
        return 2;
    }
    report_ctx r;
    memset(&r, 0, sizeof r);
    r.run = pos[0];
    if (!pt_path_exists(r.run)) {
        cli_error("report: run directory '%s' does not exist", r.run);
        return 1;
    }
    if (!cli_is_run_dir(r.run)) {
        cli_error("report: '%s' is not a run directory (no config.json in it; expected a directory "
                  "that 'polytrain train --out DIR' wrote)",
                  r.run);
        return 1;
    }
    char default_out[4200];
    if (!out) {
        snprintf(default_out, sizeof default_out, "%s/report", r.run);
        out = default_out;
    }
    {
        pt_error e;
        if (pt_dir_slot_path(out, PT_DIR_NEW, r.tmp, sizeof r.tmp, &e) != PT_OK) {
            cli_error("report: --out %s: %s", out, e.msg);
            return 2;
        }
    }
    r.out = out;
    if (check_out(out)) return 1;
    pt_error err;
    pt_error_clear(&err);
    int code = 1;
    if (cli_run_data_read(r.run, &r.rd, &err) != PT_OK) goto fail;
    read_records(&r);
    if (choose_checkpoint(&r, which)) {
        ctx_free(&r);
        return 1;
    }
    if (cli_model_open_devices(&r.m, backend, devices, threads, &err) != PT_OK) {
        cli_error("report: %s", err.msg);
        ctx_free(&r);
        return err.status == PT_ERR_INVALID ? 2 : 1;
    }
    if (cli_model_load(&r.m, r.checkpoint, batch ? batch : r.rd.batch_per_device, PT_PREC_FP32, &err) != PT_OK)
        goto fail;
    pt_data_report rep;
    if (cli_run_data_open_val(&r.rd, -1, r.m.meta.height, r.m.meta.width, &r.ds, &rep, &err) != PT_OK) goto fail;
    cli_run_data_describe(&r.rd, &rep, &r.ds, -1, r.data_desc, sizeof r.data_desc);
    FILE *info = json ? stderr : stdout;
    fprintf(info, "report: run %s, checkpoint %s\n", cli_safe(r.run), cli_safe(r.checkpoint_note));
    fprintf(info, "evaluating on the run's validation split: %s\n", cli_safe(r.data_desc));
    if (r.rd.val_samples >= 0 && r.rd.val_samples != r.ds.count)
        cli_warning("the run validated on %lld samples, its data now gives %lld", (long long)r.rd.val_samples,
                    (long long)r.ds.count);
    if (cli_evaluate_dataset(&r.m, r.checkpoint, &r.ds, r.rd.data, &r.res, &r.logits, &err) != PT_OK) goto fail;
    r.classes = r.ds.num_classes;
    if (cli_confusion_compute(r.logits, r.ds.labels, r.res.count, r.classes, &r.cm, &err) != PT_OK) goto fail;
    if (!(r.names = cli_class_names(&r.m, &r.ds))) {
        pt_fail(&err, PT_ERR_NOMEM, "out of host memory for class names");
        goto fail;
    }
    char recorded[128] = "";
    const report_epoch *ce = r.checkpoint_epoch >= 0 ? report_find_epoch(&r, r.checkpoint_epoch) : NULL;
    if (ce && ce->val_top1 == ce->val_top1)
        snprintf(recorded, sizeof recorded, " (the run recorded %.2f%% after epoch %lld)", 100 * ce->val_top1,
                 (long long)ce->epoch);
    fprintf(info, "%lld samples: top1 %.2f%%  top5 %.2f%%  loss %.4f%s\n", (long long)r.res.count,
            100 * r.res.top1, 100 * r.res.top5, r.res.loss, recorded);
    if (!cli_gnuplot_available())
        snprintf(r.plots_missing, sizeof r.plots_missing,
                 "gnuplot was not found on PATH (Debian package " CLI_GNUPLOT_PACKAGE ")");
    pt_strbuf js;
    pt_strbuf_init(&js);
    if (write_report(&r, max_mis, &js, &err) != PT_OK || pt_dir_commit(r.tmp, out, &err) != PT_OK) {
        pt_strbuf_free(&js);
        pt_error e2;
        pt_remove_tree(r.tmp, &e2);
        goto fail;
    }
    if (!r.plots)
        cli_warning("report: no plots: %s; the page, the CSV files and the sample images are written",
                    r.plots_missing);
    if (json) fputs(js.data, stdout);
    else printf("report written: %s/index.html\n", out);
    pt_strbuf_free(&js);
    code = 0;
    goto out;
fail:
    cli_error("report: %s", err.msg);
out:
    ctx_free(&r);
    return code;
}
