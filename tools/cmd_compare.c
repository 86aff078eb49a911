/* polytrain compare: the same models on every backend and device of this machine, side by
 * side. Each measurement is one of the existing commands run as a child of this binary
 * (devices --json, selftest --json, bench --json, bench --per-op --json, bench --sgemm
 * --json), so a driver that crashes or hangs costs one row of the report, not the report.
 * --merge puts the report.json files of several machines into one report. The output
 * (tools/compare_report.c) is written to a temporary directory and moved into place at the
 * end, so a failed or interrupted comparison leaves an existing report as it was. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "core/dircommit.h"
#include "core/host.h"
#include "core/fileio.h"
#include "core/json.h"
#include "polytrain/backend.h"
#include "polytrain/models.h"
#include "polytrain/version.h"
#include "tools/args.h"
#include "tools/child.h"
#include "tools/commands.h"
#include "tools/compare_report.h"
#include "tools/gnuplot.h"
#include "tools/jsonl.h"
#include "tools/session.h"

#define CMP_MAX_MODELS 16
#define CMP_MAX_MERGE 32

typedef struct cmp_args {
    const char *models[CMP_MAX_MODELS];
    int nmodels;
    const char *input, *precision, *backends, *devices, *out, *selftest_filter;
    int classes, batch, steps, warmup, sgemm, threads, overwrite, no_plots, merge, no_selftest;
    double timeout;
} cmp_args;

/* ---------------------------------------------------------------- this machine */

static long long host_memory_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (long long)pages * size : 0;
}

/* machines[0]: what the rows of this run were measured on. */
static void machine_json(pt_strbuf *sb, const char *host, const char *command, const char *settings)
{
    char cpu[256], date[64];
    snprintf(cpu, sizeof cpu, "unknown");
    pt_host_cpu_model(cpu, sizeof cpu);
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    struct utsname u;
    char os[400] = "unknown";
    if (uname(&u) == 0) snprintf(os, sizeof os, "%s %s %s", u.sysname, u.release, u.machine);
    pt_strbuf_puts(sb, "{\"host\":");
    pt_strbuf_json_string(sb, host);
    pt_strbuf_puts(sb, ",\"cpu\":");
    pt_strbuf_json_string(sb, cpu);
    pt_strbuf_printf(sb, ",\"cores\":%ld,\"memory_bytes\":%lld,\"os\":", sysconf(_SC_NPROCESSORS_ONLN),
                     host_memory_bytes());
    pt_strbuf_json_string(sb, os);
    pt_strbuf_puts(sb, ",\"date\":");
    pt_strbuf_json_string(sb, date);
    pt_strbuf_puts(sb, ",\"polytrain\":");
    pt_strbuf_json_string(sb, PT_VERSION);
    pt_strbuf_puts(sb, ",\"command\":");
    pt_strbuf_json_string(sb, command);
    pt_strbuf_printf(sb, ",\"settings\":%s}", settings);
}

static void settings_json(const cmp_args *a, pt_strbuf *sb)
{
    pt_strbuf_puts(sb, "{\"models\":[");
    for (int i = 0; i < a->nmodels; i++) {
        if (i) pt_strbuf_putc(sb, ',');
        pt_strbuf_json_string(sb, a->models[i]);
    }
    pt_strbuf_puts(sb, "],\"input\":");
    pt_strbuf_json_string(sb, a->input);
    pt_strbuf_printf(sb, ",\"classes\":%d,\"batch\":%d,\"precision\":", a->classes, a->batch);
    pt_strbuf_json_string(sb, a->precision);
    pt_strbuf_printf(sb, ",\"steps\":%d,\"warmup\":%d,\"sgemm_n\":%d,\"threads\":%d,\"selftest\":", a->steps,
                     a->warmup, a->sgemm, a->threads);
    if (a->no_selftest) pt_strbuf_puts(sb, "false");
    else pt_strbuf_puts(sb, "true");
    pt_strbuf_puts(sb, ",\"selftest_filter\":");
    if (a->selftest_filter) pt_strbuf_json_string(sb, a->selftest_filter);
    else pt_strbuf_puts(sb, "null");
    pt_strbuf_puts(sb, ",\"backends\":");
    pt_strbuf_json_string(sb, a->backends);
    pt_strbuf_puts(sb, ",\"devices\":");
    pt_strbuf_json_string(sb, a->devices);
    pt_strbuf_puts(sb, "}");
}

/* ---------------------------------------------------------------- child runs */

typedef struct cmp_dev {
    char backend[64];
    int index;
    const pt_json *info; /* its entry in devices --json */
} cmp_dev;

/* Runs one child; on success *js is its parsed stdout. Returns 0, or -1 with why in msg. */
static int run_json(const char *const *args, double timeout, pt_json **js, double *secs, char *msg, size_t cap)
{
    cli_child c;
    *js = NULL;
    if (cli_child_run(args, timeout, &c) != 0) {
        snprintf(msg, cap, "%s", c.err.data ? c.err.data : "cannot start a child process");
        cli_child_free(&c);
        return -1;
    }
    *secs = c.seconds;
    pt_error e;
    int ok = c.exit_code == 0 && c.out.data && pt_json_parse(c.out.data, c.out.len, NULL, js, &e) == PT_OK &&
             (*js)->type == PT_JSON_OBJECT;
    /* selftest exits 1 when a case fails, and still reports every case */
    if (!ok && c.exit_code == 1 && strcmp(args[0], "selftest") == 0 && c.out.data) {
        pt_json_free(*js);
        *js = NULL;
        ok = pt_json_parse(c.out.data, c.out.len, NULL, js, &e) == PT_OK && pt_json_get(*js, "devices");
    }
    if (!ok) {
        pt_json_free(*js);
        *js = NULL;
        cli_child_failure(&c, msg, cap);
    }
    cli_child_free(&c);
    return ok ? 0 : -1;
}

static void put_error(pt_strbuf *sb, const char *msg)
{
    pt_strbuf_puts(sb, "{\"error\":");
    pt_strbuf_json_string(sb, msg);
    pt_strbuf_putc(sb, '}');
}

/* Copies obj[key] (a number) as "key":value, null when missing. */
static void copy_num(pt_strbuf *sb, const pt_json *obj, const char *key)
{
    double v = cli_json_number(obj, key);
    pt_strbuf_printf(sb, ",\"%s\":", key);
    pt_strbuf_json_double(sb, v);
}

static void progress_start(int k, int n, const cmp_dev *d, const char *what)
{
    const pt_json *name = pt_json_get(d->info, "name");
    fprintf(stderr, "compare: [%d/%d] %s[%d] %s: %s ... ", k, n, d->backend, d->index,
            name && name->type == PT_JSON_STRING ? name->str : "?", what);
    fflush(stderr);
}

static int conformance(const cmp_args *a, const cmp_dev *d, int k, int n, pt_strbuf *sb)
{
    pt_strbuf_puts(sb, ",\"conformance\":");
    if (a->no_selftest) {
        pt_strbuf_puts(sb, "null");
        return 0;
    }
    char idx[16], msg[1024];
    snprintf(idx, sizeof idx, "%d", d->index);
    const char *args[12] = {"selftest", "--backend", d->backend, "--devices", idx, "--json"};
    int na = 6;
    if (a->selftest_filter) args[na++] = "--filter", args[na++] = a->selftest_filter;
    args[na] = NULL;
    progress_start(k, n, d, "conformance (selftest)");
    pt_json *js = NULL;
    double secs = 0;
    if (run_json(args, a->timeout, &js, &secs, msg, sizeof msg) != 0) {
        fprintf(stderr, "failed: %s\n", msg);
        put_error(sb, msg);
        return 1;
    }
    const pt_json *dev = pt_json_at(pt_json_get(js, "devices"), 0);
    const pt_json *av = pt_json_get(dev, "available");
    if (!dev || !av || av->type != PT_JSON_BOOL || !av->boolean) {
        const pt_json *e = pt_json_get(dev, "error");
        snprintf(msg, sizeof msg, "%s", e && e->type == PT_JSON_STRING ? e->str : "selftest ran no device");
        fprintf(stderr, "failed: %s\n", msg);
        put_error(sb, msg);
        pt_json_free(js);
        return 1;
    }
    double failed = cli_json_number(dev, "failed"), cases = cli_json_number(dev, "cases"),
           passed = cli_json_number(dev, "passed");
    pt_strbuf_printf(sb, "{\"ok\":%s", failed == 0 ? "true" : "false");
    copy_num(sb, dev, "cases");
    copy_num(sb, dev, "passed");
    copy_num(sb, dev, "failed");
    copy_num(sb, dev, "unclaimed");
    copy_num(sb, dev, "worst_ratio");
    pt_strbuf_puts(sb, ",\"worst_case\":");
    const pt_json *wc = pt_json_get(dev, "worst_case");
    pt_strbuf_json_string(sb, wc && wc->type == PT_JSON_STRING ? wc->str : "");
    copy_num(sb, js, "seed");
    pt_strbuf_puts(sb, ",\"seconds\":");
    pt_strbuf_json_double(sb, secs);
    pt_strbuf_putc(sb, '}');
    fprintf(stderr, "%.1f s: %.0f of %.0f cases passed\n", secs, passed, cases);
    pt_json_free(js);
    return failed != 0;
}

static int gemm_peak(const cmp_args *a, const cmp_dev *d, int k, int n, pt_strbuf *sb, double *peak)
{
    *peak = NAN;
    pt_strbuf_puts(sb, ",\"gemm_peak\":");
    if (!a->sgemm) {
        pt_strbuf_puts(sb, "null");
        return 0;
    }
    char idx[16], size[16], steps[16], msg[1024];
    snprintf(idx, sizeof idx, "%d,", d->index);
    snprintf(size, sizeof size, "%d", a->sgemm);
    snprintf(steps, sizeof steps, "%d", a->steps < 3 ? 3 : a->steps);
    const char *args[20] = {"bench", "--sgemm", size, "--backend", d->backend, "--devices", idx,
                            "--precision", a->precision, "--steps", steps, "--warmup", "1", "--json"};
    int na = 14;
    char threads[16];
    if (a->threads) {
        snprintf(threads, sizeof threads, "%d", a->threads);
        args[na++] = "--threads", args[na++] = threads;
    }
    args[na] = NULL;
    char what[64];
    snprintf(what, sizeof what, "GEMM peak (%dx%dx%d)", a->sgemm, a->sgemm, a->sgemm);
    progress_start(k, n, d, what);
    pt_json *js = NULL;
    double secs = 0;
    if (run_json(args, a->timeout, &js, &secs, msg, sizeof msg) != 0) {
        fprintf(stderr, "failed: %s\n", msg);
        put_error(sb, msg);
        return 1;
    }
    *peak = cli_json_number(js, "sgemm_best_gflop_per_s");
    pt_strbuf_printf(sb, "{\"n\":%d,\"best_gflop_per_s\":", a->sgemm);
    pt_strbuf_json_double(sb, *peak);
    pt_strbuf_puts(sb, ",\"median_gflop_per_s\":");
    pt_strbuf_json_double(sb, cli_json_number(js, "sgemm_median_gflop_per_s"));
    pt_strbuf_puts(sb, "}");
    fprintf(stderr, "%.1f s: %.1f GFLOP/s\n", secs, *peak);
    pt_json_free(js);
    return 0;
}

static int model_row(const cmp_args *a, const cmp_dev *d, const char *model, double peak, int k, int n,
                      pt_strbuf *sb)
{
    char idx[16], classes[16], batch[16], steps[16], warmup[16], threads[16], msg[1024];
    snprintf(idx, sizeof idx, "%d,", d->index);
    snprintf(classes, sizeof classes, "%d", a->classes);
    snprintf(batch, sizeof batch, "%d", a->batch);
    snprintf(steps, sizeof steps, "%d", a->steps);
    snprintf(warmup, sizeof warmup, "%d", a->warmup);
    snprintf(threads, sizeof threads, "%d", a->threads);
    const char *args[32] = {"bench",     "--model",   model,    "--input",   a->input,     "--classes",
                            classes,     "--batch",   batch,    "--backend", d->backend,   "--devices",
                            idx,         "--steps",   steps,    "--warmup",  warmup,       "--precision",
                            a->precision, "--json"};
    int na = 20;
    if (a->threads) args[na++] = "--threads", args[na++] = threads;
    args[na] = NULL;
    pt_strbuf_puts(sb, "{\"model\":");
    pt_strbuf_json_string(sb, model);
    char what[200];
    snprintf(what, sizeof what, "%s: train and eval img/s", model);
    progress_start(k, n, d, what);
    pt_json *js = NULL;
    double secs = 0;
    if (run_json(args, a->timeout, &js, &secs, msg, sizeof msg) != 0) {
        fprintf(stderr, "failed: %s\n", msg);
        pt_strbuf_puts(sb, ",\"error\":");
        pt_strbuf_json_string(sb, msg);
        pt_strbuf_putc(sb, '}');
        return 1;
    }
    fprintf(stderr, "%.1f s: %.1f train img/s, %.1f eval img/s\n", secs, cli_json_number(js, "train_img_per_s"),
            cli_json_number(js, "eval_img_per_s"));
    static const char *const keys[] = {"parameters",     "train_step_ms",   "train_img_per_s", "eval_batch_ms",
                                       "eval_img_per_s", "step_gflop",      "step_gflop_per_s", "warmup_s",
                                       "peak_mem_bytes", "device_mem_bytes", "workspace_bytes", "threads"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) copy_num(sb, js, keys[i]);
    pt_strbuf_puts(sb, ",\"peak_fraction\":");
    pt_strbuf_json_double(sb, cli_json_number(js, "step_gflop_per_s") / peak);
    const pt_json *how = pt_json_get(js, "precision_how");
    pt_strbuf_puts(sb, ",\"precision_how\":");
    pt_strbuf_json_string(sb, how && how->type == PT_JSON_STRING ? how->str : "");
    pt_json_free(js);

    /* the op-kind breakdown from a run of its own: --per-op synchronises after every op */
    args[na++] = "--per-op";
    args[na] = NULL;
    snprintf(what, sizeof what, "%s: step time by op kind", model);
    progress_start(k, n, d, what);
    if (run_json(args, a->timeout, &js, &secs, msg, sizeof msg) != 0) {
        fprintf(stderr, "failed: %s\n", msg);
        pt_strbuf_puts(sb, ",\"per_op\":null,\"per_op_error\":");
        pt_strbuf_json_string(sb, msg);
        pt_strbuf_putc(sb, '}');
        return 1;
    }
    const pt_json *ops = pt_json_get(js, "per_op");
    pt_strbuf_puts(sb, ",\"per_op_ms\":{");
    double total = 0;
    for (size_t i = 0; ops && ops->type == PT_JSON_OBJECT && i < ops->count; i++) {
        double ms = cli_json_number(&ops->members[i].value, "ms_per_step");
        if (i) pt_strbuf_putc(sb, ',');
        pt_strbuf_json_string(sb, ops->members[i].key);
        pt_strbuf_putc(sb, ':');
        pt_strbuf_json_double(sb, ms);
        if (isfinite(ms)) total += ms;
    }
    pt_strbuf_puts(sb, "}}");
    fprintf(stderr, "%.1f s: %.1f ms per step\n", secs, total);
    pt_json_free(js);
    return 0;
}

/* ---------------------------------------------------------------- choosing the devices */

static int name_in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        size_t k = strcspn(p, ",");
        if (k == n && strncmp(p, name, n) == 0) return 1;
        p += k + (p[k] == ',');
    }
    return 0;
}

/* --backends: all, or names compiled into this build. 0 or 2 (printed). */
static int check_backends(const char *list)
{
    if (strcmp(list, "all") == 0) return 0;
    char known[256] = "";
    for (int i = 0; i < pt_backend_count(); i++) {
        strncat(known, i ? ", " : "", sizeof known - strlen(known) - 1);
        strncat(known, pt_backend_at(i)->name, sizeof known - strlen(known) - 1);
    }
    if (!*list) {
        cli_error("compare: --backends: empty list (expected all or names among: %s)", known);
        return 2;
    }
    for (const char *p = list; *p;) {
        size_t k = strcspn(p, ",");
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(k < 63 ? k : 63), p);
        if (!k || !pt_backend_find(name)) {
            cli_error("compare: --backends: '%s' is not a backend of this build (expected all or a comma-separated "
                      "list of: %s)",
                      name, known);
            return 2;
        }
        p += k + (p[k] == ',');
    }
    return 0;
}

/* --devices: all, or indices like 0 or 0,2. want[i] set for each. 0 or 2 (printed). */
static int parse_devices(const char *s, int *want, int cap, int *all)
{
    *all = strcmp(s, "all") == 0;
    if (*all) return 0;
    memset(want, 0, (size_t)cap * sizeof *want);
    int n = 0;
    for (const char *p = s; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ',') || v < 0 || v >= cap) {
            cli_error("compare: --devices expects all or device indices like 0 or 0,1 (each below %d), got '%s'", cap,
                      s);
            return 2;
        }
        want[v] = 1;
        n++;
        p = *end ? end + 1 : end;
    }
    if (!n) {
        cli_error("compare: --devices: empty list");
        return 2;
    }
    return 0;
}

/* ---------------------------------------------------------------- the output directory */

/* 1 when dir is a directory with nothing in it. */
static int dir_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int empty = 1;
    for (struct dirent *e; empty && (e = readdir(d));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) empty = 0;
    closedir(d);
    return empty;
}

/* A report compare wrote: DIR/report.json whose format says so. */
static int holds_compare_report(const char *dir)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/report.json", dir);
    if (!pt_path_exists(path)) return 0;
    pt_error e;
    pt_json *js = cli_read_json_file(path, &e);
    const pt_json *f = pt_json_get(js, "format");
    int yes = f && f->type == PT_JSON_STRING && strcmp(f->str, CLI_COMPARE_FORMAT) == 0;
    pt_json_free(js);
    return yes;
}

/* 0, or 2 with the reason printed: an --out with files in it is replaced only with
 * --overwrite and only when it holds a report of compare. */
static int check_out(const char *out, int overwrite)
{
    pt_error e;
    pt_dir_recover(out, "report.json", &e); /* what a crash in an earlier publish left */
    if (!pt_path_exists(out) || dir_empty(out)) return 0;
    struct stat stv;
    if (stat(out, &stv) != 0 || !S_ISDIR(stv.st_mode)) {
        cli_error("compare: --out '%s' exists and is not a directory (choose another --out)", out);
        return 2;
    }
    if (!holds_compare_report(out)) {
        cli_error("compare: --out '%s' exists and is not empty, and holds no report of compare: not replacing it "
                  "(choose another --out)",
                  out);
        return 2;
    }
    if (!overwrite) {
        cli_error("compare: --out '%s' holds a report already: give --overwrite to replace it, or choose another --out",
                  out);
        return 2;
    }
    return 0;
}

/* Writes the report into a fresh temporary directory, then moves it to out. */
static int publish(const pt_json *report, const char *out, int plots)
{
    char tmp[4400];
    pt_error err;
    pt_error_clear(&err);
    int plotted = 0;
    /* the directory's NEW slot beside it (same file system), which pt_dir_commit swaps in */
    if (pt_dir_slot_path(out, PT_DIR_NEW, tmp, sizeof tmp, &err) != PT_OK || pt_remove_tree(tmp, &err) != PT_OK ||
        pt_mkdir_p(tmp, &err) != PT_OK) {
        cli_error("compare: %s", err.msg);
        return 1;
    }
    char plot_error[1100];
    pt_status st = cli_compare_write(report, tmp, plots, &plotted, plot_error, sizeof plot_error, &err);
    int code = 0;
    if (st != PT_OK || pt_dir_commit(tmp, out, &err) != PT_OK) {
        cli_error("compare: %s", err.msg);
        pt_error e2;
        pt_remove_tree(tmp, &e2);
        return 1;
    }
    if (plot_error[0]) {
        cli_error("compare: no charts: %s (the tables are written)", plot_error);
        code = cli_interrupted() ? 130 : 1;
    }
    printf("compare: report in %s/report.md and report.json%s\n", out,
           plotted ? ", charts throughput.png, op_time.png, gflops.png, setup.png" : "");
    return code;
}

/* ---------------------------------------------------------------- --merge */

static const char *const merge_keys[] = {"models", "input", "classes", "batch", "precision"};

static void describe_value(const pt_json *v, char *buf, size_t cap)
{
    if (!v) {
        snprintf(buf, cap, "(missing)");
        return;
    }
    pt_strbuf sb;
    pt_strbuf_init(&sb);
    pt_strbuf_json_value(&sb, v);
    snprintf(buf, cap, "%s", sb.data && !sb.failed ? sb.data : "?");
    pt_strbuf_free(&sb);
}

static int same_value(const pt_json *a, const pt_json *b)
{
    char x[1024], y[1024];
    describe_value(a, x, sizeof x);
    describe_value(b, y, sizeof y);
    return strcmp(x, y) == 0;
}

/* A report.json of compare, checked enough that its rows can be drawn. NULL (printed) if not. */
static pt_json *read_report(const char *path)
{
    pt_error e;
    if (!pt_path_exists(path)) {
        cli_error("compare --merge: '%s' does not exist", path);
        return NULL;
    }
    pt_json *js = cli_read_json_file(path, &e);
    if (!js) {
        cli_error("compare --merge: %s", e.msg);
        return NULL;
    }
    const pt_json *f = pt_json_get(js, "format");
    const char *why = NULL;
    if (js->type != PT_JSON_OBJECT) why = "it is not a JSON object";
    else if (!f || f->type != PT_JSON_STRING || strcmp(f->str, CLI_COMPARE_FORMAT) != 0)
        why = "its \"format\" is not \"" CLI_COMPARE_FORMAT "\"";
    else if (!pt_json_get(js, "settings") || pt_json_get(js, "settings")->type != PT_JSON_OBJECT)
        why = "it has no \"settings\" object";
    else if (!pt_json_get(js, "machines") || pt_json_get(js, "machines")->type != PT_JSON_ARRAY ||
             !pt_json_len(pt_json_get(js, "machines")))
        why = "it has no \"machines\" array";
    else if (!pt_json_get(js, "devices") || pt_json_get(js, "devices")->type != PT_JSON_ARRAY)
        why = "it has no \"devices\" array";
    for (size_t i = 0; !why && i < pt_json_len(pt_json_get(js, "devices")); i++) {
        const pt_json *d = pt_json_at(pt_json_get(js, "devices"), i);
        const pt_json *m = pt_json_get(d, "machine"), *b = pt_json_get(d, "backend");
        if (!m || m->type != PT_JSON_STRING || !b || b->type != PT_JSON_STRING)
            why = "a device in \"devices\" lacks its \"machine\" or \"backend\"";
    }
    if (why) {
        cli_error("compare --merge: '%s' is not a report.json written by polytrain compare: %s", path, why);
        pt_json_free(js);
        return NULL;
    }
    return js;
}

/* The machine label of file i's rows: its host, made unique among the files before it. */
static void unique_label(char labels[][256], int i, const char *host)
{
    snprintf(labels[i], 256, "%s", host);
    for (int n = 2;; n++) {
        int clash = 0;
        for (int j = 0; j < i; j++) clash |= strcmp(labels[j], labels[i]) == 0;
        if (!clash) return;
        snprintf(labels[i], 256, "%s #%d", host, n);
    }
}

static void write_with_machine(pt_strbuf *sb, const pt_json *obj, const char *label)
{
    pt_strbuf_puts(sb, "{\"machine\":");
    pt_strbuf_json_string(sb, label);
    for (size_t i = 0; i < obj->count; i++) {
        if (strcmp(obj->members[i].key, "machine") == 0) continue;
        pt_strbuf_putc(sb, ',');
        pt_strbuf_json_string(sb, obj->members[i].key);
        pt_strbuf_putc(sb, ':');
        pt_strbuf_json_value(sb, &obj->members[i].value);
    }
    pt_strbuf_putc(sb, '}');
}

static int do_merge(const cmp_args *a, char **files, int nfiles)
{
    pt_json *rep[CMP_MAX_MERGE] = {0};
    int code = 0;
    for (int i = 0; i < nfiles && !code; i++)
        if (!(rep[i] = read_report(files[i]))) code = 1;
    for (int i = 1; i < nfiles && !code; i++) {
        const pt_json *s0 = pt_json_get(rep[0], "settings"), *si = pt_json_get(rep[i], "settings");
        for (size_t k = 0; k < sizeof merge_keys / sizeof merge_keys[0]; k++) {
            const pt_json *v0 = pt_json_get(s0, merge_keys[k]), *vi = pt_json_get(si, merge_keys[k]);
            if (same_value(v0, vi)) continue;
            char x[512], y[512];
            describe_value(v0, x, sizeof x);
            describe_value(vi, y, sizeof y);
            cli_error("compare --merge: '%s' and '%s' measured different things: %s %s in '%s', %s in '%s' (only "
                      "reports of the same models, input, classes, batch and precision can be put side by side)",
                      files[0], files[i], merge_keys[k], x, files[0], y, files[i]);
            code = 1;
            break;
        }
    }
    pt_strbuf sb;
    pt_strbuf_init(&sb);
    pt_json *merged = NULL;
    if (!code) {
        /* each file's machines keep their own settings (steps may differ); its rows are labelled
         * with their machine, renamed where two files come from machines of the same name */
        char(*labels)[256] = calloc((size_t)nfiles * 8, 256);
        char(*hosts)[256] = calloc((size_t)nfiles * 8, 256);
        int nl = 0;
        pt_strbuf_puts(&sb, "{\"format\":\"" CLI_COMPARE_FORMAT "\",\"format_version\":1,\"settings\":");
        pt_strbuf_json_value(&sb, pt_json_get(rep[0], "settings"));
        pt_strbuf_puts(&sb, ",\"merged_from\":[");
        for (int i = 0; i < nfiles; i++) {
            if (i) pt_strbuf_putc(&sb, ',');
            pt_strbuf_json_string(&sb, files[i]);
        }
        pt_strbuf_puts(&sb, "],\"machines\":[");
        int first = 1;
        int base[CMP_MAX_MERGE];
        for (int i = 0; i < nfiles && labels && hosts; i++) {
            const pt_json *ms = pt_json_get(rep[i], "machines");
            base[i] = nl;
            for (size_t m = 0; m < pt_json_len(ms) && nl < nfiles * 8; m++) {
                const pt_json *mach = pt_json_at(ms, m);
                const pt_json *h = pt_json_get(mach, "host");
                const char *host = h && h->type == PT_JSON_STRING ? h->str : "?";
                snprintf(hosts[nl], 256, "%s", host);
                unique_label(labels, nl, host);
                if (strcmp(labels[nl], host) != 0)
                    cli_note("compare --merge: '%s' also comes from machine '%s': its rows are labelled '%s'",
                             files[i], host, labels[nl]);
                if (!first) pt_strbuf_putc(&sb, ',');
                first = 0;
                if (mach->type == PT_JSON_OBJECT) {
                    pt_strbuf_puts(&sb, "{\"label\":");
                    pt_strbuf_json_string(&sb, labels[nl]);
                    pt_strbuf_puts(&sb, ",\"file\":");
                    pt_strbuf_json_string(&sb, files[i]);
                    for (size_t k = 0; k < mach->count; k++) {
                        if (!strcmp(mach->members[k].key, "label") || !strcmp(mach->members[k].key, "file")) continue;
                        pt_strbuf_putc(&sb, ',');
                        pt_strbuf_json_string(&sb, mach->members[k].key);
                        pt_strbuf_putc(&sb, ':');
                        pt_strbuf_json_value(&sb, &mach->members[k].value);
                    }
                    pt_strbuf_putc(&sb, '}');
                } else {
                    pt_strbuf_puts(&sb, "null");
                }
                nl++;
            }
        }
        /* a row's machine: the label of its file's machine whose host (or earlier label) it names */
        const char *const sections[] = {"devices", "unavailable"};
        for (int s = 0; s < 2; s++) {
            pt_strbuf_printf(&sb, "],\"%s\":[", sections[s]);
            first = 1;
            for (int i = 0; i < nfiles && labels && hosts; i++) {
                const pt_json *rows = pt_json_get(rep[i], sections[s]);
                int end = i + 1 < nfiles ? base[i + 1] : nl;
                for (size_t r = 0; r < pt_json_len(rows); r++) {
                    const pt_json *row = pt_json_at(rows, r);
                    if (!row || row->type != PT_JSON_OBJECT) continue;
                    const pt_json *m = pt_json_get(row, "machine");
                    const char *label = m && m->type == PT_JSON_STRING ? m->str : "?";
                    const pt_json *ms = pt_json_get(rep[i], "machines");
                    for (int k = base[i]; k < end; k++) {
                        const pt_json *lab = pt_json_get(pt_json_at(ms, (size_t)(k - base[i])), "label");
                        if (strcmp(hosts[k], label) == 0 ||
                            (lab && lab->type == PT_JSON_STRING && strcmp(lab->str, label) == 0)) {
                            label = labels[k];
                            break;
                        }
                    }
                    if (!first) pt_strbuf_putc(&sb, ',');
                    first = 0;
                    write_with_machine(&sb, row, label);
                }
            }
        }
        pt_strbuf_puts(&sb, "]}\n");
        if (!labels || !hosts) sb.failed = 1;
        free(labels);
        free(hosts);
        pt_error err;
        if (pt_strbuf_check(&sb, &err) != PT_OK || pt_json_parse(sb.data, sb.len, NULL, &merged, &err) != PT_OK) {
            cli_error("compare --merge: %s", err.msg);
            code = 1;
        }
    }
    if (!code) {
        fprintf(stderr, "compare --merge: %d reports, %zu devices\n", nfiles,
                pt_json_len(pt_json_get(merged, "devices")));
        code = publish(merged, a->out, !a->no_plots);
    }
    pt_json_free(merged);
    pt_strbuf_free(&sb);
    for (int i = 0; i < nfiles; i++) pt_json_free(rep[i]);
    return code;
}

/* ---------------------------------------------------------------- the command */

/* Every --model value (each may be a comma-separated list), in order, before args_parse
 * keeps only the last. 0 or 2 (printed). */
static int collect_models(int argc, char **argv, cmp_args *a, char *store, size_t cap)
{
    size_t used = 0;
    for (int i = 0; i < argc; i++) {
        const char *v = NULL;
        if (strcmp(argv[i], "--") == 0) break;
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) v = argv[++i];
        else if (strncmp(argv[i], "--model=", 8) == 0) v = argv[i] + 8;
        if (!v) continue;
        for (const char *p = v; *p;) {
            size_t k = strcspn(p, ",");
            if (k && used + k + 1 <= cap) {
                if (a->nmodels == CMP_MAX_MODELS) {
                    cli_error("compare: at most %d models", CMP_MAX_MODELS);
                    return 2;
                }
                memcpy(store + used, p, k);
                store[used + k] = '\0';
                a->models[a->nmodels++] = store + used;
                used += k + 1;
            }
            p += k + (p[k] == ',');
        }
    }
    return 0;
}

int cmd_compare(int argc, char **argv)
{
    cmp_args a;
    memset(&a, 0, sizeof a);
    const char *model_opt = NULL;
    a.input = "3x64x64";
    a.precision = "fp32";
    a.backends = "all";
    a.devices = "all";
    a.out = "compare";
    a.classes = 200;
    a.batch = 64;
    a.steps = 10;
    a.warmup = 2;
    a.sgemm = 1024;
    a.timeout = 1800;
    const arg_spec specs[] = {
        {"model", ARG_STRING, &model_opt, "NAME", "model from the zoo; several: --model a,b or the option again "
         "(default baseline)", 0, 0, NULL},
        {"input", ARG_STRING, &a.input, "CxHxW", "input shape (default 3x64x64, TinyImageNet)", 0, 0, NULL},
        {"classes", ARG_INT, &a.classes, "K", "classes (default 200)", 1, 100000, NULL},
        {"batch", ARG_INT, &a.batch, "N", "samples per step (default 64)", 1, 65536, NULL},
        {"precision", ARG_STRING, &a.precision, "P", "fp32, tf32, bf16 or fp16: the precision of convolutions and "
         "matrix products (default fp32)", 0, 0, NULL},
        {"backends", ARG_STRING, &a.backends, "LIST", "all (default: every backend of this build that finds a "
         "device) or a comma-separated list, e.g. cpu,opencl", 0, 0, NULL},
        {"devices", ARG_STRING, &a.devices, "LIST", "device indices of every backend, e.g. 0 or 0,1 (default all; "
         "cpu: device 0, its devices are shares of the same cores)", 0, 0, NULL},
        {"steps", ARG_INT, &a.steps, "N", "timed steps of each measurement (default 10)", 1, 100000, NULL},
        {"warmup", ARG_INT, &a.warmup, "N", "untimed steps first (default 2); their time is the warm-up column", 0,
         100000, NULL},
        {"sgemm", ARG_INT, &a.sgemm, "N", "the GEMM peak of each device on N x N matrices (default 1024; 0: none)", 0,
         16384, NULL},
        {"selftest-filter", ARG_STRING, &a.selftest_filter, "SUBSTR", "only the conformance cases whose name contains "
         "SUBSTR (default: all)", 0, 0, NULL},
        {"no-selftest", ARG_FLAG, &a.no_selftest, NULL, "skip the conformance check", 0, 0, NULL},
        {"threads", ARG_INT, &a.threads, "N", "cpu worker threads (default: all cores)", 0, 4096, NULL},
        {"timeout", ARG_DOUBLE, &a.timeout, "S", "give up on one measurement after S seconds (default 1800)", 0.01, 1e7,
         NULL},
        {"out", ARG_STRING, &a.out, "DIR", "output folder (default compare)", 0, 0, NULL},
        {"overwrite", ARG_FLAG, &a.overwrite, NULL, "replace the report --out holds", 0, 0, NULL},
        {"no-plots", ARG_FLAG, &a.no_plots, NULL, "tables only (no gnuplot needed)", 0, 0, NULL},
        {"merge", ARG_FLAG, &a.merge, NULL, "instead of measuring: combine the REPORT.json files given as arguments "
         "into one report", 0, 0, NULL},
        {NULL, 0, NULL, NULL, NULL, 0, 0, NULL},
    };
    const arg_command cmd = {
        "compare",
        "Run the same models on every backend and device, side by side: conformance, throughput, time per op kind, "
        "GFLOP/s against the device's GEMM peak, memory, warm-up.",
        "[options] | --merge [--out DIR] REPORT.json...", specs,
        "Writes DIR/report.md, DIR/report.json and the charts DIR/throughput.png (train and eval\n"
        "img/s), op_time.png (training step time by op kind, stacked), gflops.png (achieved GFLOP/s\n"
        "against the device's GEMM peak) and setup.png (warm-up time and memory), drawn by gnuplot\n"
        "(Debian package " CLI_GNUPLOT_PACKAGE ") from DIR/gnuplot/. Each measurement is a child run of\n"
        "selftest --json and bench --json; one that fails, crashes or runs past --timeout becomes a\n"
        "row saying so. Throughput comes from a run without --per-op (which synchronises after\n"
        "every op). The report names each machine (host, CPU, OS, date, polytrain version) and\n"
        "device (platform, driver, libraries), so that reports of several machines can be merged:\n"
        "polytrain compare --merge a/report.json b/report.json --out both. Exit status: 0 every\n"
        "measurement succeeded, 1 one failed (the report is still written), 2 usage error.",
        NULL};
    char *pos[CMP_MAX_MERGE + 1];
    int npos = 0;
    char model_store[1024];
    if (collect_models(argc, argv, &a, model_store, sizeof model_store)) return 2;
    int rc = args_parse(&cmd, argc, argv, pos, CMP_MAX_MERGE + 1, &npos);
    if (rc) return rc == 1 ? 0 : 2;
    if (a.merge) {
        if (npos < 2) {
            cli_error("compare --merge: expected at least two report.json files, got %d", npos);
            return 2;
        }
        if (npos > CMP_MAX_MERGE) {
            cli_error("compare --merge: at most %d files", CMP_MAX_MERGE);
            return 2;
        }
        if (a.nmodels) {
            cli_error("compare --merge: --model does not apply: the reports' own models are merged");
            return 2;
        }
        if (!a.no_plots && !cli_gnuplot_available()) {
            cli_error("compare: the charts need gnuplot (Debian package " CLI_GNUPLOT_PACKAGE "), not found on PATH; "
                      "install it or pass --no-plots");
            return 2;
        }
        if (check_out(a.out, a.overwrite)) return 2;
        return do_merge(&a, pos, npos);
    }
    if (npos) {
        cli_error("compare: unexpected argument '%s' (report.json files are merged with --merge)", pos[0]);
        return 2;
    }
    if (!a.nmodels) a.models[a.nmodels++] = "baseline";
    int C, H, W;
    char tail;
    if (sscanf(a.input, "%dx%dx%d%c", &C, &H, &W, &tail) != 3 || C < 1 || C > 3 || H < 1 || W < 1 || H > 4096 ||
        W > 4096) {
        cli_error("compare: --input expects CxHxW with C in 1..3 and H, W in 1..4096, got '%s'", a.input);
        return 2;
    }
    pt_precision prec;
    if (!pt_precision_parse(a.precision, &prec)) {
        cli_error("compare: --precision must be fp32, tf32, bf16 or fp16, got '%s'", a.precision);
        return 2;
    }
    for (int i = 0; i < a.nmodels; i++) {
        pt_net *net = NULL;
        pt_error e;
        if (pt_model_build(a.models[i], C, H, W, a.classes, &net, &e) != PT_OK) {
            cli_error("compare: --model %s: %s", a.models[i], e.msg);
            return 2;
        }
        pt_net_free(net);
    }
    if (check_backends(a.backends)) return 2;
    int want[64], all_devices;
    if (parse_devices(a.devices, want, 64, &all_devices)) return 2;
    if (!a.no_plots && !cli_gnuplot_available()) {
        cli_error("compare: the charts need gnuplot (Debian package " CLI_GNUPLOT_PACKAGE "), not found on PATH; "
                  "install it or pass --no-plots");
        return 2;
    }
    if (check_out(a.out, a.overwrite)) return 2;

    cli_install_interrupt_handler();
    /* the devices, from a child too: a driver that crashes while it is asked stays out */
    const char *dargs[] = {"devices", "--json", NULL};
    cli_child c;
    char msg[1024];
    pt_json *devs = NULL;
    pt_error err;
    if (cli_child_run(dargs, 120, &c) != 0 || !c.out.data ||
        pt_json_parse(c.out.data, c.out.len, NULL, &devs, &err) != PT_OK || devs->type != PT_JSON_ARRAY) {
        cli_child_failure(&c, msg, sizeof msg);
        cli_error("compare: cannot list the devices (polytrain devices --json): %s", msg);
        cli_child_free(&c);
        pt_json_free(devs);
        return 1;
    }
    cli_child_free(&c);

    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1) != 0 || !host[0]) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    pt_strbuf settings, command, doc;
    pt_strbuf_init(&settings);
    pt_strbuf_init(&command);
    pt_strbuf_init(&doc);
    settings_json(&a, &settings);
    pt_strbuf_puts(&command, "polytrain compare");
    for (int i = 0; i < argc; i++) pt_strbuf_printf(&command, " %s", argv[i]);

    cmp_dev list[256];
    int n = 0;
    pt_strbuf unavailable;
    pt_strbuf_init(&unavailable);
    for (size_t b = 0; b < pt_json_len(devs); b++) {
        const pt_json *be = pt_json_at(devs, b);
        const pt_json *name = pt_json_get(be, "backend"), *av = pt_json_get(be, "available");
        if (!name || name->type != PT_JSON_STRING) continue;
        int listed = strcmp(a.backends, "all") != 0;
        if (listed && !name_in_list(a.backends, name->str)) continue;
        if (!av || av->type != PT_JSON_BOOL || !av->boolean) {
            const pt_json *e = pt_json_get(be, "error");
            const char *why = e && e->type == PT_JSON_STRING ? e->str : "not available";
            if (listed) cli_note("compare: backend %s is not available: %s", name->str, why);
            if (unavailable.len) pt_strbuf_putc(&unavailable, ',');
            pt_strbuf_puts(&unavailable, "{\"machine\":");
            pt_strbuf_json_string(&unavailable, host);
            pt_strbuf_puts(&unavailable, ",\"backend\":");
            pt_strbuf_json_string(&unavailable, name->str);
            pt_strbuf_puts(&unavailable, ",\"error\":");
            pt_strbuf_json_string(&unavailable, why);
            pt_strbuf_putc(&unavailable, '}');
            continue;
        }
        const pt_json *dl = pt_json_get(be, "devices");
        for (size_t i = 0; i < pt_json_len(dl) && n < 256; i++) {
            const pt_json *d = pt_json_at(dl, i);
            double idx = cli_json_number(d, "index");
            if (!(idx >= 0 && idx < 64)) continue;
            int k = (int)idx;
            if (all_devices ? strcmp(name->str, "cpu") == 0 && k != 0 : !want[k]) continue;
            snprintf(list[n].backend, sizeof list[n].backend, "%s", name->str);
            list[n].index = k;
            list[n].info = d;
            n++;
        }
    }
    if (!n) {
        cli_error("compare: no device to run: --backends %s --devices %s match none of this machine's devices "
                  "(polytrain devices lists them)",
                  a.backends, a.devices);
        pt_json_free(devs);
        pt_strbuf_free(&settings);
        pt_strbuf_free(&command);
        pt_strbuf_free(&unavailable);
        return 2;
    }
    fprintf(stderr, "compare: %d device%s, %d model%s (%s, batch %d, %s), %d steps each\n", n, n == 1 ? "" : "s",
            a.nmodels, a.nmodels == 1 ? "" : "s", a.input, a.batch, a.precision, a.steps);

    int failures = 0;
    pt_strbuf_puts(&doc, "{\"format\":\"" CLI_COMPARE_FORMAT "\",\"format_version\":1,\"settings\":");
    pt_strbuf_puts(&doc, settings.data ? settings.data : "{}");
    pt_strbuf_puts(&doc, ",\n\"machines\":[");
    machine_json(&doc, host, command.data ? command.data : "", settings.data ? settings.data : "{}");
    pt_strbuf_puts(&doc, "],\n\"devices\":[");
    for (int i = 0; i < n && !cli_interrupted(); i++) {
        const cmp_dev *d = &list[i];
        if (i) pt_strbuf_puts(&doc, ",\n");
        pt_strbuf_puts(&doc, "{\"machine\":");
        pt_strbuf_json_string(&doc, host);
        pt_strbuf_puts(&doc, ",\"backend\":");
        pt_strbuf_json_string(&doc, d->backend);
        pt_strbuf_printf(&doc, ",\"index\":%d", d->index);
        static const char *const info_keys[] = {"name", "kind", "memory_bytes", "compute_units", "threads",
                                                "details"};
        for (size_t k = 0; k < sizeof info_keys / sizeof info_keys[0]; k++) {
            const pt_json *v = pt_json_get(d->info, info_keys[k]);
            pt_strbuf_printf(&doc, ",\"%s\":", info_keys[k]);
            if (v) pt_strbuf_json_value(&doc, v);
            else pt_strbuf_puts(&doc, "null");
        }
        failures += conformance(&a, d, i + 1, n, &doc);
        double peak;
        failures += gemm_peak(&a, d, i + 1, n, &doc, &peak);
        pt_strbuf_puts(&doc, ",\"models\":[");
        for (int m = 0; m < a.nmodels && !cli_interrupted(); m++) {
            if (m) pt_strbuf_putc(&doc, ',');
            failures += model_row(&a, d, a.models[m], peak, i + 1, n, &doc);
        }
        pt_strbuf_puts(&doc, "]}");
    }
    pt_strbuf_printf(&doc, "],\n\"unavailable\":[%s]}\n", unavailable.data ? unavailable.data : "");
    pt_json_free(devs);
    pt_strbuf_free(&settings);
    pt_strbuf_free(&command);
    pt_strbuf_free(&unavailable);
    if (cli_interrupted()) {
        cli_error("compare: interrupted; nothing written");
        pt_strbuf_free(&doc);
        return 130;
    }
    pt_json *report = NULL;
    if (pt_strbuf_check(&doc, &err) != PT_OK || pt_json_parse(doc.data, doc.len, NULL, &report, &err) != PT_OK) {
        cli_error("compare: %s", err.msg);
        pt_strbuf_free(&doc);
        return 1;
    }
    pt_strbuf_free(&doc);
    int code = publish(report, a.out, !a.no_plots);
    pt_json_free(report);
    if (!code && failures) {
        cli_error("compare: %d measurement%s failed (rows in the report say which)", failures,
                  failures == 1 ? "" : "s");
        code = 1;
    }
    return code;
}
