/* polytrain experiment: runs a suite (tools/experiments.c) of training runs into one folder
 * and compares them. DIR/experiment.json records the configuration (a different one is
 * refused), DIR/runs/NAME is each run's own run directory (train --out), and the results are
 * DIR/results.md, DIR/results.csv and DIR/plots/{loss,accuracy}.png (gnuplot). Running the
 * same command again skips finished runs and resumes an interrupted one from its checkpoint. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/json.h"
#include "polytrain/models.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/common.h"
#include "tools/experiments.h"
#include "tools/gnuplot.h"
#include "tools/jsonl.h"
#include "tools/session.h"
#include "polytrain/version.h"

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"
#define XP_MAX_ARGS 96

typedef struct xp_args {
    const char *suite, *out, *data, *backend, *devices, *runs, *precision;
    const char *fuse; /* --fuse on|off, passed to every run (not a setting: the results are the same) */
    const char *act_storage; /* --act-storage auto|16bit|fp32, passed to every run (free on its resume) */
    const char *layout;      /* --layout auto|nchw|nhwc, passed to every run (free on its resume) */
    const char *fit_workspace; /* --fit-workspace on|off, passed to every run (free on its resume) */
    int epochs, batch, threads, no_plots, list, retry_failed, stop_after;
    int64_t limit_train, limit_val;
    uint64_t seed;
} xp_args;

/* One run's outcome, read back from its run directory. */
typedef struct xp_result {
    const char *name;
    int state;           /* 0 not run, 1 finished, 2 failed, 3 partial (interrupted) */
    char error[512];     /* failed: the trainer's message */
    int64_t params;
    int epochs;
    double final_top1, final_top5, best_top1, best_top5, final_train_loss, final_val_loss;
    int best_epoch;
    double img_per_s, wall_s;
    char device[160];
} xp_result;

/* ---------------------------------------------------------------- small file helpers */

static pt_status write_text(const char *path, const char *text, pt_error *err)
{
    const void *chunks[1] = {text};
    size_t sizes[1] = {strlen(text)};
    return pt_write_file_atomic(path, chunks, sizes, 1, err);
}

/* ---------------------------------------------------------------- the runs' options */

typedef struct xp_plan {
    const xp_suite *suite;
    int n;
    const xp_run *run[XP_MAX_RUNS];
} xp_plan;

/* The options every run gets from the command line, as train options. */
static int common_options(const xp_args *a, char bufs[][32], const char **v)
{
    int n = 0;
    snprintf(bufs[0], 32, "%d", a->epochs);
    snprintf(bufs[1], 32, "%lld", (long long)a->limit_train);
    snprintf(bufs[2], 32, "%lld", (long long)a->limit_val);
    snprintf(bufs[3], 32, "%d", a->batch);
    snprintf(bufs[4], 32, "%llu", (unsigned long long)a->seed);
    v[n++] = "--epochs", v[n++] = bufs[0];
    v[n++] = "--limit-train", v[n++] = bufs[1];
    v[n++] = "--limit-val", v[n++] = bufs[2];
    v[n++] = "--batch-per-device", v[n++] = bufs[3];
    v[n++] = "--seed", v[n++] = bufs[4];
    v[n++] = "--data", v[n++] = a->data;
    v[n++] = "--backend", v[n++] = a->backend;
    v[n++] = "--precision", v[n++] = a->precision;
    if (a->devices) v[n++] = "--devices", v[n++] = a->devices;
    return n;
}

/* The model a run trains: the last --model among the preset's, the suite's and its own. */
static const char *run_model(const xp_suite *s, const xp_run *r)
{
    const char *model = "baseline";
    const char *const *lists[2] = {s->base, r->options};
    for (int l = 0; l < 2; l++)
        for (int i = 0; lists[l][i]; i++) {
            if (strcmp(lists[l][i], "--preset") == 0 && lists[l][i + 1]) {
                const xp_preset *p = xp_preset_find(lists[l][i + 1]);
                for (int k = 0; p && p->options[k]; k++)
                    if (strcmp(p->options[k], "--model") == 0 && p->options[k + 1]) model = p->options[k + 1];
            }
        }
    for (int l = 0; l < 2; l++)
        for (int i = 0; lists[l][i]; i++)
            if (strcmp(lists[l][i], "--model") == 0 && lists[l][i + 1]) model = lists[l][i + 1];
    return model;
}

static void run_options_text(const xp_suite *s, const xp_run *r, char *buf, size_t cap)
{
    buf[0] = '\0';
    const char *const *lists[2] = {s->base, r->options};
    for (int l = 0; l < 2; l++)
        for (int i = 0; lists[l][i]; i++) {
            if (buf[0]) strncat(buf, " ", cap - strlen(buf) - 1);
            strncat(buf, lists[l][i], cap - strlen(buf) - 1);
        }
}

/* The record of what this folder runs: compared key by key when a suite continues. */
static void config_json(const xp_args *a, const xp_plan *p, pt_strbuf *sb)
{
    pt_strbuf_puts(sb, "{\n\"suite\":");
    pt_strbuf_json_string(sb, p->suite->name);
    pt_strbuf_puts(sb, ",\n\"settings\":{\"epochs\":");
    pt_strbuf_json_int(sb, a->epochs);
    pt_strbuf_puts(sb, ",\"limit-train\":");
    pt_strbuf_json_int(sb, a->limit_train);
    pt_strbuf_puts(sb, ",\"limit-val\":");
    pt_strbuf_json_int(sb, a->limit_val);
    pt_strbuf_puts(sb, ",\"batch-per-device\":");
    pt_strbuf_json_int(sb, a->batch);
    pt_strbuf_printf(sb, ",\"seed\":%llu,\"data\":", (unsigned long long)a->seed);
    pt_strbuf_json_string(sb, a->data);
    pt_strbuf_puts(sb, ",\"backend\":");
    pt_strbuf_json_string(sb, a->backend);
    pt_strbuf_puts(sb, ",\"precision\":");
    pt_strbuf_json_string(sb, a->precision);
    pt_strbuf_puts(sb, ",\"devices\":");
    if (a->devices) pt_strbuf_json_string(sb, a->devices);
    else pt_strbuf_puts(sb, "null");
    pt_strbuf_puts(sb, "},\n\"runs\":{");
    for (int i = 0; i < p->n; i++) {
        char opts[1024];
        run_options_text(p->suite, p->run[i], opts, sizeof opts);
        pt_strbuf_puts(sb, i ? ",\n  " : "\n  ");
        pt_strbuf_json_string(sb, p->run[i]->name);
        pt_strbuf_putc(sb, ':');
        pt_strbuf_json_string(sb, opts);
    }
    pt_strbuf_printf(sb, "\n},\n\"framework\":\"polytrain %s\"\n}\n", PT_VERSION);
}

static void describe_json(const pt_json *v, char *buf, size_t cap)
{
    if (!v) snprintf(buf, cap, "(none)");
    else if (v->type == PT_JSON_STRING) snprintf(buf, cap, "'%s'", v->str);
    else if (v->type == PT_JSON_NUMBER && v->is_int) snprintf(buf, cap, "%lld", (long long)v->integer);
    else if (v->type == PT_JSON_NUMBER) snprintf(buf, cap, "%g", v->number);
    else if (v->type == PT_JSON_NULL) snprintf(buf, cap, "(default)");
    else snprintf(buf, cap, "(%s)", pt_json_type_name(v->type));
}

static int same_json(const pt_json *a, const pt_json *b)
{
    if (!a || !b) return a == b;
    if (a->type != b->type) return 0;
    switch (a->type) {
    case PT_JSON_NULL: return 1;
    case PT_JSON_BOOL: return a->boolean == b->boolean;
    case PT_JSON_NUMBER: return a->number == b->number;
    case PT_JSON_STRING: return strcmp(a->str, b->str) == 0;
    default: return 0;
    }
}

/* Refuses to continue a folder made for another configuration, naming what differs. */
static int check_same_config(const char *path, const char *want_text, const char *dir)
{
    pt_error err;
    pt_json *have = cli_read_json_file(path, &err), *want = NULL;
    if (!have || have->type != PT_JSON_OBJECT) {
        cli_error("experiment: '%s' exists but %s; use another --out", path,
                  have ? "is not a JSON object" : err.msg);
        pt_json_free(have);
        return 1;
    }
    if (pt_json_parse(want_text, strlen(want_text), NULL, &want, &err) != PT_OK) {
        cli_error("experiment: %s", err.msg);
        pt_json_free(have);
        return 1;
    }
    int rc = 0;
    char h[256], w[256];
    const pt_json *hs = pt_json_get(have, "suite"), *ws = pt_json_get(want, "suite");
    if (!same_json(hs, ws)) {
        describe_json(hs, h, sizeof h);
        describe_json(ws, w, sizeof w);
        cli_error("experiment: '%s' holds suite %s, this command runs suite %s; use another --out", dir, h, w);
        rc = 1;
    }
    const pt_json *hset = pt_json_get(have, "settings"), *wset = pt_json_get(want, "settings");
    for (size_t i = 0; !rc && wset && i < wset->count; i++) {
        const char *key = wset->members[i].key;
        const pt_json *hv = pt_json_get(hset, key);
        if (!same_json(hv, &wset->members[i].value)) {
            describe_json(hv, h, sizeof h);
            describe_json(&wset->members[i].value, w, sizeof w);
            cli_error("experiment: '%s' was run with --%s %s, this command asks for --%s %s; give the same "
                      "options to continue it, or use another --out",
                      dir, key, h, key, w);
            rc = 1;
        }
    }
    const pt_json *hr = pt_json_get(have, "runs"), *wr = pt_json_get(want, "runs");
    if (!rc && !(hr && wr && hr->type == PT_JSON_OBJECT && hr->count == wr->count)) {
        cli_error("experiment: '%s' holds %zu runs, this command asks for %zu (--runs differs?); use another --out",
                  dir, hr ? hr->count : 0, wr ? wr->count : 0);
        rc = 1;
    }
    for (size_t i = 0; !rc && wr && i < wr->count; i++) {
        const pt_json *hv = pt_json_get(hr, wr->members[i].key);
        if (!same_json(hv, &wr->members[i].value)) {
            describe_json(hv, h, sizeof h);
            describe_json(&wr->members[i].value, w, sizeof w);
            cli_error("experiment: run '%s' in '%s' was made with options %s, this version of the suite uses %s; "
                      "use another --out",
                      wr->members[i].key, dir, h, w);
            rc = 1;
        }
    }
    pt_json_free(have);
    pt_json_free(want);
    return rc;
}

/* ---------------------------------------------------------------- reading results */

typedef struct metrics_acc {
    xp_result *r;
    double train_imgs, train_s;
} metrics_acc;

static void on_metrics_line(void *user, const pt_json *js)
{
    metrics_acc *m = user;
    xp_result *r = m->r;
    double e = cli_json_number(js, "epoch");
    if (!(e >= 1)) return;
    r->epochs = (int)e;
    r->final_top1 = cli_json_number(js, "val_top1");
    r->final_top5 = cli_json_number(js, "val_top5");
    r->final_train_loss = cli_json_number(js, "train_loss");
    r->final_val_loss = cli_json_number(js, "val_loss");
    if (r->best_epoch == 0 || r->final_top1 > r->best_top1) r->best_top1 = r->final_top1, r->best_epoch = (int)e;
    if (r->final_top5 > r->best_top5) r->best_top5 = r->final_top5;
    double ips = cli_json_number(js, "img_per_s"), ts = cli_json_number(js, "train_s"), es = cli_json_number(js, "epoch_s");
    if (isfinite(ips) && isfinite(ts)) m->train_imgs += ips * ts, m->train_s += ts;
    if (isfinite(es)) r->wall_s += es;
}

static void read_result(const char *rundir, int epochs, xp_result *r)
{
    char path[4400];
    pt_error err;
    snprintf(path, sizeof path, "%s/failed.json", rundir);
    if (pt_path_exists(path)) {
        r->state = 2;
        pt_json *js = cli_read_json_file(path, &err);
        const pt_json *m = pt_json_get(js, "error");
        snprintf(r->error, sizeof r->error, "%s", m && m->type == PT_JSON_STRING ? m->str : "failed");
        pt_json_free(js);
    }
    snprintf(path, sizeof path, "%s/config.json", rundir);
    pt_json *cfg = pt_path_exists(path) ? cli_read_json_file(path, &err) : NULL;
    const pt_json *res = pt_json_get(cfg, "resolved");
    double p = cli_json_number(res, "parameters");
    if (isfinite(p)) r->params = (int64_t)p;
    const pt_json *dev = pt_json_get(res, "device");
    const pt_json *ndev = pt_json_get(res, "devices");
    const pt_json *be = pt_json_get(res, "backend");
    if (dev && dev->type == PT_JSON_STRING)
        snprintf(r->device, sizeof r->device, "%lld x %s (%s backend)",
                 ndev && ndev->is_int ? (long long)ndev->integer : 1LL, dev->str,
                 be && be->type == PT_JSON_STRING ? be->str : "?");
    pt_json_free(cfg);
    snprintf(path, sizeof path, "%s/metrics.jsonl", rundir);
    metrics_acc m = {r, 0, 0};
    if (pt_path_exists(path) && cli_for_each_jsonl(path, on_metrics_line, &m) > 0 && r->state != 2) {
        snprintf(path, sizeof path, "%s/last", rundir);
        r->state = r->epochs >= epochs && pt_path_exists(path) ? 1 : 3;
    }
    r->img_per_s = m.train_s > 0 ? m.train_imgs / m.train_s : NAN;
}

/* ---------------------------------------------------------------- tables */

static void fmt_pct(char *b, size_t cap, double v)
{
    if (isfinite(v)) snprintf(b, cap, "%.2f", 100 * v);
    else snprintf(b, cap, "-");
}

static void fmt_num(char *b, size_t cap, const char *f, double v)
{
    if (isfinite(v)) snprintf(b, cap, f, v);
    else snprintf(b, cap, "-");
}

static const char *state_text(const xp_result *r)
{
    static const char *const t[] = {"not run", "finished", "failed", "interrupted"};
    return t[r->state];
}

/* CSV field: quoted when it holds a comma, quote or newline. */
static void csv_field(pt_strbuf *sb, const char *s, int last)
{
    if (strpbrk(s, ",\"\n")) {
        pt_strbuf_putc(sb, '"');
        for (const char *c = s; *c; c++) {
            if (*c == '"') pt_strbuf_putc(sb, '"');
            pt_strbuf_putc(sb, *c);
        }
        pt_strbuf_putc(sb, '"');
    } else {
        pt_strbuf_puts(sb, s);
    }
    pt_strbuf_putc(sb, last ? '\n' : ',');
}

static pt_status write_tables(const char *dir, const xp_args *a, const xp_plan *p, const xp_result *res,
                              int plots, pt_error *err)
{
    pt_strbuf md, csv;
    pt_strbuf_init(&md);
    pt_strbuf_init(&csv);
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M UTC", &tmv);
    const char *device = "";
    for (int i = 0; i < p->n; i++)
        if (res[i].device[0]) {
            device = res[i].device;
            break;
        }
    pt_strbuf_printf(&md, "# Experiment '%s'\n\n%s.\n\n", p->suite->name, p->suite->summary);
    pt_strbuf_printf(&md,
                     "polytrain %s, %s. Data `%s`, %d epoch%s, limit-train %lld%s, limit-val %lld%s, batch %d "
                     "per device, seed %llu, precision %s, backend %s%s%s.\n\n",
                     PT_VERSION, stamp, a->data, a->epochs, a->epochs == 1 ? "" : "s", (long long)a->limit_train,
                     a->limit_train ? "" : " (all)", (long long)a->limit_val, a->limit_val ? "" : " (all)", a->batch,
                     (unsigned long long)a->seed, a->precision, a->backend,
                     a->devices ? " devices " : "", a->devices ? a->devices : "");
    if (device[0]) pt_strbuf_printf(&md, "Device: %s.\n\n", device);
    pt_strbuf_printf(&md,
                     "| run | options | params | epochs | final top-1 %% | final top-5 %% | best top-1 %% (epoch) | "
                     "best top-5 %% | final train loss | final val loss | img/s | wall s | status |\n"
                     "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n");
    csv_field(&csv, "run", 0);
    const char *const cols[] = {"options", "parameters", "epochs", "final_top1", "final_top5", "best_top1",
                                "best_epoch", "best_top5", "final_train_loss", "final_val_loss", "img_per_s",
                                "wall_s", "status", "error"};
    for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++) csv_field(&csv, cols[c], c + 1 == sizeof cols / sizeof cols[0]);
    for (int i = 0; i < p->n; i++) {
        const xp_result *r = &res[i];
        char opts[1024], f1[32], f5[32], b1[32], b5[32], tl[32], vl[32], ips[32], ws[32], params[32], ep[32], be[32];
        run_options_text(p->suite, p->run[i], opts, sizeof opts);
        int have = r->epochs > 0;
        fmt_pct(f1, sizeof f1, have ? r->final_top1 : NAN);
        fmt_pct(f5, sizeof f5, have ? r->final_top5 : NAN);
        fmt_pct(b1, sizeof b1, have ? r->best_top1 : NAN);
        fmt_pct(b5, sizeof b5, have ? r->best_top5 : NAN);
        fmt_num(tl, sizeof tl, "%.4f", have ? r->final_train_loss : NAN);
        fmt_num(vl, sizeof vl, "%.4f", have ? r->final_val_loss : NAN);
        fmt_num(ips, sizeof ips, "%.0f", have ? r->img_per_s : NAN);
        fmt_num(ws, sizeof ws, "%.1f", have ? r->wall_s : NAN);
        if (r->params) snprintf(params, sizeof params, "%lld", (long long)r->params);
        else snprintf(params, sizeof params, "-");
        snprintf(ep, sizeof ep, "%d", r->epochs);
        snprintf(be, sizeof be, "%d", r->best_epoch);
        char status[600];
        if (r->state == 2) snprintf(status, sizeof status, "failed: %s", r->error);
        else snprintf(status, sizeof status, "%s", state_text(r));
        for (char *c = status; *c; c++)
            if (*c == '|' || *c == '\n') *c = ' ';
        pt_strbuf_printf(&md, "| %s | `%s` | %s | %s | %s | %s | %s (%s) | %s | %s | %s | %s | %s | %s |\n",
                         r->name, opts, params, ep, f1, f5, b1, have ? be : "-", b5, tl, vl, ips, ws, status);
        const char *row[] = {r->name, opts, params, ep, f1, f5, b1, have ? be : "-", b5, tl, vl, ips, ws,
                             state_text(r), r->state == 2 ? r->error : ""};
        for (size_t c = 0; c < sizeof row / sizeof row[0]; c++) csv_field(&csv, row[c], c + 1 == sizeof row / sizeof row[0]);
    }
    pt_strbuf_puts(&md, "\nTop-1/top-5: validation accuracy (the dataset's test split); img/s: training images per "
                        "second over all epochs; wall s: the epochs' time, evaluation and checkpoints included.\n");
    if (plots)
        pt_strbuf_puts(&md, "\n![loss](plots/loss.png)\n\n![accuracy](plots/accuracy.png)\n");
    char path[4400];
    pt_status st = pt_strbuf_check(&md, err);
    if (st == PT_OK) st = pt_strbuf_check(&csv, err);
    if (st == PT_OK) {
        snprintf(path, sizeof path, "%s/results.md", dir);
        st = write_text(path, md.data, err);
    }
    if (st == PT_OK) {
        snprintf(path, sizeof path, "%s/results.csv", dir);
        st = write_text(path, csv.data, err);
    }
    pt_strbuf_free(&md);
    pt_strbuf_free(&csv);
    return st;
}

/* ---------------------------------------------------------------- plots (gnuplot) */

typedef struct steps_acc {
    FILE *f;
    double *loss;
    int64_t *epoch;
    int64_t n, cap;
} steps_acc;

static void on_step_line(void *user, const pt_json *js)
{
    steps_acc *s = user;
    double l = cli_json_number(js, "loss"), e = cli_json_number(js, "epoch");
    if (!isfinite(l) || !(e >= 1)) return;
    if (s->n == s->cap) {
        int64_t cap = s->cap ? 2 * s->cap : 1024;
        double *nl = realloc(s->loss, (size_t)cap * sizeof(double));
        if (!nl) return;
        s->loss = nl;
        int64_t *ne = realloc(s->epoch, (size_t)cap * sizeof(int64_t));
        if (!ne) return;
        s->epoch = ne;
        s->cap = cap;
    }
    s->loss[s->n] = l;
    s->epoch[s->n] = (int64_t)e;
    s->n++;
}

static void on_epoch_line(void *user, const pt_json *js)
{
    FILE *f = user;
    fprintf(f, "%g %.6f %.6f %.4f %.4f %.4f\n", cli_json_number(js, "epoch"), cli_json_number(js, "train_loss"), cli_json_number(js, "val_loss"),
            100 * cli_json_number(js, "train_acc"), 100 * cli_json_number(js, "val_top1"), 100 * cli_json_number(js, "val_top5"));
}

/* NAME.epochs.dat (epoch, train loss, val loss, train acc %, val top-1 %, val top-5 %) and
 * NAME.steps.dat (fractional epoch, training loss averaged over a window of steps). */
static int write_plot_data(const char *plots, const char *rundir, const char *name, int *has_steps)
{
    char src[4400], dst[4400];
    snprintf(src, sizeof src, "%s/metrics.jsonl", rundir);
    snprintf(dst, sizeof dst, "%s/%s.epochs.dat", plots, name);
    FILE *f = fopen(dst, "w");
    if (!f) return -1;
    int n = cli_for_each_jsonl(src, on_epoch_line, f);
    if (fclose(f) != 0 || n <= 0) return -1;
    *has_steps = 0;
    snprintf(src, sizeof src, "%s/steps.jsonl", rundir);
    steps_acc s = {0};
    if (cli_for_each_jsonl(src, on_step_line, &s) > 0 && s.n > 0) {
        /* steps per epoch: those of the first epoch; the window is about 1/20 of an epoch or
         * 1/100 of the run, whichever is longer, so noise does not hide the trend */
        int64_t spe = 0;
        while (spe < s.n && s.epoch[spe] == s.epoch[0]) spe++;
        int64_t w = spe / 20 > s.n / 100 ? spe / 20 : s.n / 100;
        if (w < 1) w = 1;
        snprintf(dst, sizeof dst, "%s/%s.steps.dat", plots, name);
        f = fopen(dst, "w");
        if (f) {
            double sum = 0;
            for (int64_t i = 0; i < s.n; i++) {
                sum += s.loss[i];
                if (i >= w) sum -= s.loss[i - w];
                int64_t k = i + 1 < w ? i + 1 : w;
                int64_t in_epoch = 0, first = i;
                while (first > 0 && s.epoch[first - 1] == s.epoch[i]) first--;
                in_epoch = i - first + 1;
                double x = (double)(s.epoch[i] - 1) + (double)in_epoch / (double)(spe > 0 ? spe : 1);
                fprintf(f, "%.5f %.6f\n", x, sum / (double)k);
            }
            *has_steps = fclose(f) == 0;
        }
    }
    free(s.loss);
    free(s.epoch);
    return 0;
}

/* logy: losses span decades (an early epoch of a deep net can be 1e4 while others are
 * 0.3), which a linear axis would flatten to a line at zero. */
static void plot_panel(FILE *g, const char *title, const char *ylabel, const xp_plan *p, const int *have,
                       const int *steps, const char *suffix, int col, int with_points, int logy)
{
    fprintf(g, "%s\nset title \"%s\"\nset ylabel \"%s\"\nplot ", logy ? "set logscale y" : "unset logscale y",
            title, ylabel);
    int first = 1;
    for (int i = 0; i < p->n; i++) {
        if (!have[i] || (steps && !steps[i])) continue;
        fprintf(g, "%s\"%s.%s.dat\" using 1:%d with %s lw 2 lt %d title \"%s\"", first ? "" : ", \\\n     ",
                p->run[i]->name, suffix, col, with_points ? "linespoints pt 7 ps 0.8" : "lines", i + 1,
                p->run[i]->name);
        first = 0;
    }
    if (first) fprintf(g, "NaN notitle");
    fputc('\n', g);
}

/* Writes DIR/plots/plot.gp and runs gnuplot on it: loss.png and accuracy.png. */
static int make_plots(const char *dir, const xp_plan *p, int epochs, pt_error *err)
{
    char plots[4200], path[4300];
    snprintf(plots, sizeof plots, "%s/plots", dir);
    if (pt_mkdir_p(plots, err) != PT_OK) return -1;
    int have[XP_MAX_RUNS] = {0}, steps[XP_MAX_RUNS] = {0}, any = 0;
    for (int i = 0; i < p->n; i++) {
        char rundir[4300];
        snprintf(rundir, sizeof rundir, "%s/runs/%s", dir, p->run[i]->name);
        have[i] = write_plot_data(plots, rundir, p->run[i]->name, &steps[i]) == 0;
        any |= have[i];
    }
    if (!any) return 0;
    snprintf(path, sizeof path, "%s/plot.gp", plots);
    FILE *g = fopen(path, "w");
    if (!g) {
        pt_fail(err, PT_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
        return -1;
    }
    fprintf(g, "# gnuplot script written by polytrain experiment (suite %s); run 'gnuplot plot.gp' in this\n"
               "# folder to redraw loss.png and accuracy.png from the .dat files beside it.\n",
            p->suite->name);
    /* a little room right of the last epoch, so its points are not cut in half by the border */
    fprintf(g, "set terminal pngcairo size 1500,600 noenhanced font \"sans,11\"\nset grid\n"
               "set key outside right top vertical\nset xlabel \"epoch\"\nset xrange [0:%g]\n",
            epochs * 1.04 + 0.06);
    if (epochs <= 20) fprintf(g, "set xtics 1\n");
    fprintf(g, "set output \"loss.png\"\nset multiplot layout 1,2 title \"%s: loss\"\n", p->suite->name);
    plot_panel(g, "training loss (per step, moving average; log scale)", "loss", p, have, steps, "steps", 2, 0, 1);
    plot_panel(g, "validation loss (per epoch; log scale)", "loss", p, have, NULL, "epochs", 3, 1, 1);
    fprintf(g, "unset multiplot\n");
    fprintf(g, "set output \"accuracy.png\"\nset multiplot layout 1,2 title \"%s: accuracy\"\n", p->suite->name);
    plot_panel(g, "training accuracy (per epoch)", "top-1 %", p, have, NULL, "epochs", 4, 1, 0);
    plot_panel(g, "validation top-1 accuracy (per epoch)", "top-1 %", p, have, NULL, "epochs", 5, 1, 0);
    fprintf(g, "unset multiplot\nunset output\n");
    if (fclose(g) != 0) {
        pt_fail(err, PT_ERR_IO, "cannot write '%s'", path);
        return -1;
    }
    if (cli_gnuplot_run(plots, "plot.gp", err) != PT_OK) return -1;
    return 1;
}

/* ---------------------------------------------------------------- --list */

static void print_options(const char *const *o)
{
    for (int i = 0; o[i]; i++) printf("%s%s", i ? " " : "", o[i]);
}

static void print_list(void)
{
    printf("suites (polytrain experiment --suite NAME):\n");
    for (const xp_suite *s = xp_suites(); s->name; s++) {
        printf("  %-13s %s\n", s->name, s->summary);
        if (s->base[0]) {
            printf("  %-13s   every run: ", "");
            print_options(s->base);
            printf("\n");
        }
        for (int i = 0; i < xp_suite_run_count(s); i++) {
            printf("  %-13s   %-18s ", "", s->runs[i].name);
            print_options(s->runs[i].options);
            printf("\n");
        }
    }
    printf("\npresets (polytrain train --preset NAME; options given override them):\n");
    for (const xp_preset *p = xp_presets(); p->name; p++) {
        printf("  %-13s %s\n  %-13s   ", p->name, p->summary, "");
        print_options(p->options);
        printf("\n");
    }
}

/* ---------------------------------------------------------------- running */

static int select_runs(const xp_suite *s, const char *list, xp_plan *p)
{
    p->suite = s;
    p->n = 0;
    int total = xp_suite_run_count(s);
    if (!list) {
        for (int i = 0; i < total; i++) p->run[p->n++] = &s->runs[i];
        return 0;
    }
    int chosen[XP_MAX_RUNS] = {0};
    const char *c = list;
    while (*c) {
        size_t n = strcspn(c, ",");
        int found = -1;
        for (int i = 0; i < total; i++)
            if (strlen(s->runs[i].name) == n && strncmp(s->runs[i].name, c, n) == 0) found = i;
        if (found < 0) {
            char names[512] = "";
            for (int i = 0; i < total; i++) {
                if (i) strncat(names, ", ", sizeof names - strlen(names) - 1);
                strncat(names, s->runs[i].name, sizeof names - strlen(names) - 1);
            }
            cli_error("experiment: --runs: suite '%s' has no run '%.*s' (its runs: %s)", s->name, (int)n, c, names);
            return 2;
        }
        chosen[found] = 1;
        c += n + (c[n] == ',');
    }
    for (int i = 0; i < total; i++)
        if (chosen[i]) p->run[p->n++] = &s->runs[i];
    return 0;
}

static pt_status record_failure(const char *rundir, const pt_error *e, pt_error *err)
{
    pt_strbuf sb;
    pt_strbuf_init(&sb);
    pt_strbuf_puts(&sb, "{\"status\":");
    pt_strbuf_json_string(&sb, pt_status_name(e->status));
    pt_strbuf_puts(&sb, ",\"error\":");
    pt_strbuf_json_string(&sb, e->msg);
    pt_strbuf_puts(&sb, "}\n");
    char path[4400];
    snprintf(path, sizeof path, "%s/failed.json", rundir);
    pt_status st = pt_strbuf_check(&sb, err);
    if (st == PT_OK) st = write_text(path, sb.data, err);
    pt_strbuf_free(&sb);
    return st;
}

/* Runs (or resumes, or skips) one run. Returns 0 finished or skipped, 1 failed and recorded
 * (the suite goes on), 2 fatal (message printed), 130 interrupted. */
static int do_run(const xp_args *a, const xp_plan *p, int i, const char *dir)
{
    const xp_run *r = p->run[i];
    char rundir[4300], path[4400];
    snprintf(rundir, sizeof rundir, "%s/runs/%s", dir, r->name);
    xp_result st;
    memset(&st, 0, sizeof st);
    read_result(rundir, a->epochs, &st);
    char opts[1024];
    run_options_text(p->suite, r, opts, sizeof opts);
    if (st.state == 1 || (a->stop_after > 0 && st.state == 3 && st.epochs >= a->stop_after)) {
        printf("experiment %s: run %d/%d '%s' already %s, skipped\n", p->suite->name, i + 1, p->n, r->name,
               st.state == 1 ? "finished" : "at --stop-after-epoch");
        return 0;
    }
    snprintf(path, sizeof path, "%s/failed.json", rundir);
    if (st.state == 2) {
        if (!a->retry_failed) {
            printf("experiment %s: run %d/%d '%s' failed before (%s), skipped; --retry-failed tries it again\n",
                   p->suite->name, i + 1, p->n, r->name, st.error);
            return 1;
        }
        remove(path);
    }
    snprintf(path, sizeof path, "%s/last", rundir);
    char rpath[4400];
    pt_checkpoint_resolve(path, rpath, sizeof rpath); /* read only: the resumed trainer repairs */
    int resume = pt_path_exists(rpath) && st.epochs > 0;
    printf("\n=== experiment %s: run %d/%d '%s' (%s)%s ===\n", p->suite->name, i + 1, p->n, r->name, opts,
           resume ? ", resuming from its last checkpoint" : "");
    fflush(stdout);

    const char *v[XP_MAX_ARGS];
    char bufs[8][32], threads[32];
    int n = 0;
    if (resume) {
        v[n++] = "--resume", v[n++] = rundir;
    } else {
        for (int k = 0; p->suite->base[k]; k++) v[n++] = p->suite->base[k];
        for (int k = 0; r->options[k]; k++) v[n++] = r->options[k];
        n += common_options(a, bufs, v + n);
        v[n++] = "--out", v[n++] = rundir;
        v[n++] = "--overwrite"; /* a failed run tried again: its directory is the suite's own */
        v[n++] = "--log-steps";
    }
    v[n++] = "--fuse", v[n++] = a->fuse; /* free on --resume: fused or not, the same results */
    v[n++] = "--act-storage", v[n++] = a->act_storage; /* free on --resume too */
    v[n++] = "--layout", v[n++] = a->layout;           /* and the layout */
    v[n++] = "--fit-workspace", v[n++] = a->fit_workspace; /* and the workspace's fitting */
    if (a->threads) {
        snprintf(threads, sizeof threads, "%d", a->threads);
        v[n++] = "--threads", v[n++] = threads;
    }
    char stop[32];
    if (a->stop_after > 0) {
        snprintf(stop, sizeof stop, "%d", a->stop_after);
        v[n++] = "--stop-after-epoch", v[n++] = stop;
    }
    v[n] = NULL;
    pt_error outcome;
    int rc = cli_train(n, (char **)(uintptr_t)v, &outcome);
    if (rc == 0) return 0;
    if (rc == 130 || outcome.status == PT_ERR_INTERRUPTED || cli_interrupted()) return 130;
    if (rc == 2) {
        cli_error("experiment: run '%s' has options train refuses (above)", r->name);
        return 2;
    }
    /* A property of the configuration (diverged, the model does not fit the input or the
     * device): recorded, and the suite goes on. Anything else (I/O, a device lost) stops it. */
    if (outcome.status == PT_ERR_INVALID || outcome.status == PT_ERR_MISMATCH ||
        outcome.status == PT_ERR_UNSUPPORTED || outcome.status == PT_ERR_NOMEM) {
        pt_error werr;
        if (pt_mkdir_p(rundir, &werr) != PT_OK || record_failure(rundir, &outcome, &werr) != PT_OK) {
            cli_error("experiment: %s", werr.msg);
            return 2;
        }
        printf("experiment %s: run '%s' failed: %s (recorded in %s/failed.json; the suite goes on)\n",
               p->suite->name, r->name, outcome.msg, rundir);
        return 1;
    }
    cli_error("experiment: run '%s' stopped the suite; run the same command again to continue", r->name);
    return 2;
}

int cmd_experiment(int argc, char **argv)
{
    xp_args a;
    memset(&a, 0, sizeof a);
    a.data = DEFAULT_DATA;
    a.backend = "auto";
    a.precision = "fp32";
    a.fuse = NULL;
    a.act_storage = "auto";
    a.layout = "auto";
    a.fit_workspace = "on";
    a.epochs = 10;
    a.batch = 64;
    a.seed = 1;
    const arg_spec specs[] = {
        {"suite", ARG_STRING, &a.suite, "NAME", "models, optimizers, augmentation, attention or best", 0, 0, NULL},
        {"out", ARG_STRING, &a.out, "DIR", "output folder (default experiments/<suite>); runs go to DIR/runs/<run>", 0, 0, NULL},
        {"epochs", ARG_INT, &a.epochs, "N", "epochs of every run (default 10)", 1, 100000, NULL},
        {"limit-train", ARG_I64, &a.limit_train, "N", "use the first N training samples (0 = all)", 0, 1e15, NULL},
        {"limit-val", ARG_I64, &a.limit_val, "N", "use the first N test samples (0 = all)", 0, 1e15, NULL},
        {"data", ARG_STRING, &a.data, "SPEC", "dataset of every run, as train's --data (default " DEFAULT_DATA ")", 0, 0, NULL},
        {"backend", ARG_STRING, &a.backend, "NAME", "auto or a backend name", 0, 0, NULL},
        {"devices", ARG_STRING, &a.devices, "LIST", "device indices of the backend (default all)", 0, 0, NULL},
        {"batch-per-device", ARG_INT, &a.batch, "N", "samples per device per step (default 64)", 1, 65536, NULL},
        {"precision", ARG_STRING, &a.precision, "P", "fp32, tf32, bf16 or fp16 for every run (default fp32)", 0, 0, NULL},
        {"fuse", ARG_STRING, &a.fuse, "on|off", CLI_FUSE_HELP, 0, 0, NULL},
        {"act-storage", ARG_STRING, &a.act_storage, "auto|16bit|fp32", CLI_ACT_STORAGE_HELP, 0, 0, NULL},
        {"layout", ARG_STRING, &a.layout, "auto|nchw|nhwc", CLI_LAYOUT_HELP, 0, 0, NULL},
        {"fit-workspace", ARG_STRING, &a.fit_workspace, "on|off", CLI_FIT_WORKSPACE_HELP, 0, 0, NULL},
        {"seed", ARG_U64, &a.seed, "N", "seed of every run (default 1)", 0, 0, NULL},
        {"threads", ARG_INT, &a.threads, "N", "cpu worker threads per device (default: all cores)", 0, 4096, NULL},
        {"runs", ARG_STRING, &a.runs, "LIST", "only these runs of the suite, comma separated", 0, 0, NULL},
        {"stop-after-epoch", ARG_INT, &a.stop_after, "N", "stop every run once epoch N is saved (the same command without it continues)", 0, 1000000, NULL},
        {"retry-failed", ARG_FLAG, &a.retry_failed, NULL, "run again the runs that failed (diverged, did not fit)", 0, 0, NULL},
        {"no-plots", ARG_FLAG, &a.no_plots, NULL, "tables only (no gnuplot needed)", 0, 0, NULL},
        {"list", ARG_FLAG, &a.list, NULL, "show the suites, their runs, and the presets", 0, 0, NULL},
        {NULL, 0, NULL, NULL, NULL, 0, 0, NULL},
    };
    const arg_command cmd = {
        "experiment",
        "Run a suite of training runs that differ in one factor, then compare them in a table and plots.",
        "--suite NAME [--out DIR] [options]", specs,
        "Writes DIR/experiment.json (the configuration), DIR/runs/<run>/ (each run's metrics.jsonl,\n"
        "steps.jsonl, config.json and checkpoints), DIR/results.md, DIR/results.csv and\n"
        "DIR/plots/{loss,accuracy}.png (gnuplot, Debian package gnuplot-nox). The same command again\n"
        "skips finished runs and resumes an interrupted one; other options for the same DIR are refused.",
        NULL};
    int rc = args_parse(&cmd, argc, argv, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : 2;
    if (a.list) {
        print_list();
        return 0;
    }
    char known[256];
    xp_suite_names(known, sizeof known);
    if (!a.suite) {
        cli_error("experiment: --suite NAME is required (suites: %s; --list shows them)", known);
        return 2;
    }
    const xp_suite *suite = xp_suite_find(a.suite);
    if (!suite) {
        cli_error("experiment: unknown suite '%s' (suites: %s; --list shows them)", a.suite, known);
        return 2;
    }
    pt_precision prec;
    if (!pt_precision_parse(a.precision, &prec)) {
        cli_error("experiment: --precision must be fp32, tf32, bf16 or fp16, got '%s'", a.precision);
        return 2;
    }
    int fuse_on;
    if (cli_fuse_parse("experiment", &a.fuse, &fuse_on)) return 2;
    pt_act_storage act_storage;
    if (cli_act_storage_parse("experiment", a.act_storage, &act_storage)) return 2;
    pt_image_layout layout;
    if (cli_layout_parse("experiment", a.layout, &layout)) return 2;
    int fit_ws;
    if (cli_fit_workspace_parse("experiment", a.fit_workspace, &fit_ws)) return 2;
    if (cli_check_data("experiment", a.data)) return 2;
    xp_plan plan;
    if (select_runs(suite, a.runs, &plan)) return 2;
    /* Every run's model must exist before hours of training start. */
    for (int i = 0; i < plan.n; i++) {
        const char *model = run_model(suite, plan.run[i]);
        if (!pt_model_find(model)) {
            pt_error e;
            pt_net *none = NULL;
            pt_model_build(model, 1, 28, 28, 10, &none, &e);
            cli_error("experiment: suite '%s', run '%s': %s (--runs chooses a subset)", suite->name,
                      plan.run[i]->name, e.msg);
            return 2;
        }
    }
    if (!a.no_plots && !cli_gnuplot_available()) {
        cli_error("experiment: the plots need gnuplot (Debian package " CLI_GNUPLOT_PACKAGE "), not found on PATH; "
                  "install it or pass --no-plots");
        return 2;
    }
    char default_out[256];
    if (!a.out) {
        snprintf(default_out, sizeof default_out, "experiments/%s", suite->name);
        a.out = default_out;
    }
    pt_error err;
    pt_error_clear(&err);
    if (pt_check_dir_writable(a.out, &err) != PT_OK) {
        cli_error("experiment: %s", err.msg);
        return 1;
    }
    pt_strbuf cfg;
    pt_strbuf_init(&cfg);
    config_json(&a, &plan, &cfg);
    if (pt_strbuf_check(&cfg, &err) != PT_OK) {
        cli_error("experiment: %s", err.msg);
        return 1;
    }
    char path[4400];
    snprintf(path, sizeof path, "%s/experiment.json", a.out);
    if (pt_path_exists(path)) {
        if (check_same_config(path, cfg.data, a.out)) {
            pt_strbuf_free(&cfg);
            return 2;
        }
        printf("experiment %s: continuing in %s\n", suite->name, a.out);
    } else if (write_text(path, cfg.data, &err) != PT_OK) {
        cli_error("experiment: %s", err.msg);
        pt_strbuf_free(&cfg);
        return 1;
    }
    pt_strbuf_free(&cfg);
    snprintf(path, sizeof path, "%s/runs", a.out);
    if (pt_mkdir_p(path, &err) != PT_OK) {
        cli_error("experiment: %s", err.msg);
        return 1;
    }
    printf("experiment %s: %d run%s into %s (%d epochs each%s)\n", suite->name, plan.n, plan.n == 1 ? "" : "s",
           a.out, a.epochs, a.limit_train ? ", limited training set" : "");
    fflush(stdout);

    int failed = 0, code = 0;
    for (int i = 0; i < plan.n; i++) {
        int r = do_run(&a, &plan, i, a.out);
        if (r == 1) failed++;
        if (r == 2 || r == 130) {
            code = r == 130 ? 130 : 1;
            break;
        }
    }

    xp_result res[XP_MAX_RUNS];
    memset(res, 0, sizeof res);
    for (int i = 0; i < plan.n; i++) {
        char rundir[4300];
        snprintf(rundir, sizeof rundir, "%s/runs/%s", a.out, plan.run[i]->name);
        res[i].name = plan.run[i]->name;
        read_result(rundir, a.epochs, &res[i]);
    }
    int plotted = 0;
    if (!a.no_plots) {
        plotted = make_plots(a.out, &plan, a.epochs, &err);
        if (plotted < 0) {
            cli_error("experiment: plots: %s", err.msg);
            if (!code) code = err.status == PT_ERR_INTERRUPTED ? 130 : 1;
            plotted = 0;
        }
    }
    if (write_tables(a.out, &a, &plan, res, plotted, &err) != PT_OK) {
        cli_error("experiment: %s", err.msg);
        return 1;
    }
    printf("\nexperiment %s: results in %s/results.md and results.csv%s\n", suite->name, a.out,
           plotted ? ", plots in plots/loss.png and plots/accuracy.png" : "");
    printf("%-20s %10s %8s %8s %8s %8s %9s  %s\n", "run", "params", "top-1%", "best%", "top-5%", "img/s", "wall s",
           "status");
    for (int i = 0; i < plan.n; i++) {
        const xp_result *r = &res[i];
        printf("%-20s %10lld %8.2f %8.2f %8.2f %8.0f %9.1f  %s\n", r->name, (long long)r->params,
               r->epochs ? 100 * r->final_top1 : NAN, r->epochs ? 100 * r->best_top1 : NAN,
               r->epochs ? 100 * r->final_top5 : NAN, r->epochs ? r->img_per_s : NAN, r->epochs ? r->wall_s : NAN,
               r->state == 2 ? r->error : state_text(r));
    }
    if (code == 130) {
        printf("interrupted: run the same command again to continue where it stopped\n");
        return 130;
    }
    if (!code && failed) code = 1;
    return code;
}
