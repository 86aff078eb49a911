/* polytrain compare's report (see compare_report.h): report.md's tables and the gnuplot
 * charts, read from the report tree alone. The tree may come from a file another machine
 * wrote, so every member is looked up with a fallback, never assumed. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "tools/compare_report.h"
#include "tools/gnuplot.h"
#include "tools/jsonl.h"

#define CR_MAX_DEVICES 256
#define CR_MAX_MODELS 16
#define CR_STACK_KINDS 8 /* op kinds drawn on their own; the rest is "other" */

/* distinct colours, none of them grey (the "other" layer and the GEMM peak are grey) */
static const char *const palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                                      "#e377c2", "#17becf", "#bcbd22", "#393b79", "#e7ba52", "#637939"};
#define CR_COLORS 12
#define CR_GREY "#9a9a9a"

/* ---------------------------------------------------------------- reading the tree */

static const char *str_of(const pt_json *obj, const char *key, const char *fallback)
{
    const pt_json *v = pt_json_get(obj, key);
    return v && v->type == PT_JSON_STRING ? v->str : fallback;
}

/* The row of device d for model name, or NULL. */
static const pt_json *model_of(const pt_json *d, const char *name)
{
    const pt_json *ms = pt_json_get(d, "models");
    for (size_t i = 0; i < pt_json_len(ms); i++)
        if (strcmp(str_of(pt_json_at(ms, i), "model", ""), name) == 0) return pt_json_at(ms, i);
    return NULL;
}

typedef struct cr_ctx {
    const pt_json *root, *settings;
    const pt_json *dev[CR_MAX_DEVICES];
    int nd;
    const char *model[CR_MAX_MODELS];
    int nm;
    int machines; /* more than one: labels name the machine */
    const char *kind[64]; /* every op kind of any row, by its largest share of a step */
    int nkinds;
    char label[CR_MAX_DEVICES][160];  /* "cpu[0] AMD EPYC" (md), with the machine when several */
    char tic[CR_MAX_DEVICES][320];    /* the same over lines, for a chart's axis */
} cr_ctx;

/* Breaks text into lines of about width characters at spaces (dropped) and after '-', '_'
 * or '/', appending them to out with '\n' between. A word longer than width stays whole. */
static void wrap_into(char *out, size_t cap, const char *text, int width)
{
    size_t len = strlen(out);
    int col = 0;
    const char *p = text;
    while (*p) {
        while (*p == ' ') p++;
        if (!*p) break;
        size_t w = 0; /* the next piece: up to and including a break character */
        while (p[w] && p[w] != ' ' && !(w && (p[w - 1] == '-' || p[w - 1] == '_' || p[w - 1] == '/'))) w++;
        int space = col && p[-1] == ' ';
        if (col && col + space + (int)w > width) {
            if (len + 1 < cap) out[len++] = '\n';
            col = 0;
            space = 0;
        }
        if (space && len + 1 < cap) out[len++] = ' ', col++;
        for (size_t i = 0; i < w && len + 1 < cap; i++) out[len++] = p[i];
        col += (int)w;
        p += w;
    }
    out[len] = '\0';
}

/* The op kinds of rows (model NULL: of every model) ordered by their largest share of a
 * step on any device; returns how many (at most 64). */
static int rank_kinds(const cr_ctx *c, const char *model, const char **kinds, double *share)
{
    int nk = 0;
    for (int i = 0; i < c->nd; i++) {
        const pt_json *ms = pt_json_get(c->dev[i], "models");
        for (size_t r = 0; r < pt_json_len(ms); r++) {
            const pt_json *row = pt_json_at(ms, r);
            if (model && strcmp(str_of(row, "model", ""), model) != 0) continue;
            const pt_json *ops = pt_json_get(row, "per_op_ms");
            if (!ops || ops->type != PT_JSON_OBJECT) continue;
            double total = 0;
            for (size_t k = 0; k < ops->count; k++) {
                double v = cli_json_number(ops, ops->members[k].key);
                if (isfinite(v)) total += v;
            }
            for (size_t k = 0; k < ops->count; k++) {
                int j = 0;
                while (j < nk && strcmp(kinds[j], ops->members[k].key) != 0) j++;
                if (j == nk) {
                    if (nk == 64) continue;
                    kinds[nk] = ops->members[k].key, share[nk++] = 0;
                }
                double v = cli_json_number(ops, ops->members[k].key);
                if (total > 0 && isfinite(v) && v / total > share[j]) share[j] = v / total;
            }
        }
    }
    for (int a = 0; a < nk; a++)
        for (int b = a + 1; b < nk; b++)
            if (share[b] > share[a]) {
                double t = share[a];
                share[a] = share[b], share[b] = t;
                const char *tk = kinds[a];
                kinds[a] = kinds[b], kinds[b] = tk;
            }
    return nk;
}

/* An op kind's colour, the same in every panel. */
static const char *kind_color(const cr_ctx *c, const char *kind)
{
    for (int i = 0; i < c->nkinds; i++)
        if (strcmp(c->kind[i], kind) == 0) return palette[i % CR_COLORS];
    return palette[0];
}

static void ctx_init(cr_ctx *c, const pt_json *root)
{
    memset(c, 0, sizeof *c);
    c->root = root;
    c->settings = pt_json_get(root, "settings");
    const pt_json *ds = pt_json_get(root, "devices");
    for (size_t i = 0; i < pt_json_len(ds) && c->nd < CR_MAX_DEVICES; i++)
        if (pt_json_at(ds, i)->type == PT_JSON_OBJECT) c->dev[c->nd++] = pt_json_at(ds, i);
    const pt_json *ms = pt_json_get(c->settings, "models");
    for (size_t i = 0; i < pt_json_len(ms) && c->nm < CR_MAX_MODELS; i++)
        if (pt_json_at(ms, i)->type == PT_JSON_STRING) c->model[c->nm++] = pt_json_at(ms, i)->str;
    c->machines = pt_json_len(pt_json_get(root, "machines")) > 1;
    for (int i = 0; i < c->nd; i++) {
        const pt_json *d = c->dev[i];
        char id[96];
        snprintf(id, sizeof id, "%s[%lld]", str_of(d, "backend", "?"), (long long)cli_json_number(d, "index"));
        const char *name = str_of(d, "name", "?");
        if (c->machines) {
            snprintf(c->label[i], sizeof c->label[i], "%s: %s %s", str_of(d, "machine", "?"), id, name);
            snprintf(c->tic[i], sizeof c->tic[i], "%s\n%s\n", str_of(d, "machine", "?"), id);
        } else {
            snprintf(c->label[i], sizeof c->label[i], "%s %s", id, name);
            snprintf(c->tic[i], sizeof c->tic[i], "%s\n", id);
        }
        wrap_into(c->tic[i], sizeof c->tic[i], name, 18);
    }
    double share[64];
    c->nkinds = rank_kinds(c, NULL, c->kind, share);
}

/* ---------------------------------------------------------------- report.md */

static void md_cell(pt_strbuf *sb, const char *s)
{
    pt_strbuf_puts(sb, " ");
    for (; *s; s++) pt_strbuf_putc(sb, *s == '|' || *s == '\n' ? ' ' : *s);
    pt_strbuf_puts(sb, " |");
}

static void md_num(pt_strbuf *sb, const char *fmt, double v)
{
    char b[64];
    if (isfinite(v)) snprintf(b, sizeof b, fmt, v);
    else snprintf(b, sizeof b, "-");
    md_cell(sb, b);
}

static void write_md(const cr_ctx *c, int plotted, pt_strbuf *sb)
{
    const pt_json *s = c->settings;
    pt_strbuf_puts(sb, "# polytrain compare\n\n");
    pt_strbuf_printf(sb, "Model%s:", c->nm == 1 ? "" : "s");
    for (int m = 0; m < c->nm; m++) pt_strbuf_printf(sb, "%s %s", m ? "," : "", c->model[m]);
    pt_strbuf_printf(sb, "; input %s, %lld classes, batch %lld, precision %s. Random data; every number is a "
                         "median over the timed steps.\n\n",
                     str_of(s, "input", "?"), (long long)cli_json_number(s, "classes"),
                     (long long)cli_json_number(s, "batch"), str_of(s, "precision", "?"));

    pt_strbuf_puts(sb, "## Machines\n\n| machine | CPU | cores | memory GiB | OS | date | polytrain | steps (warm-up) "
                       "| GEMM peak size | command |\n|---|---|--:|--:|---|---|---|---|--:|---|\n");
    const pt_json *ms = pt_json_get(c->root, "machines");
    for (size_t i = 0; i < pt_json_len(ms); i++) {
        const pt_json *m = pt_json_at(ms, i), *ms_set = pt_json_get(m, "settings");
        char steps[64];
        snprintf(steps, sizeof steps, "%lld (%lld)", (long long)cli_json_number(ms_set, "steps"),
                 (long long)cli_json_number(ms_set, "warmup"));
        pt_strbuf_puts(sb, "|");
        char who[700];
        if (str_of(m, "file", NULL))
            snprintf(who, sizeof who, "%s (from %s)", str_of(m, "label", "?"), str_of(m, "file", ""));
        else
            snprintf(who, sizeof who, "%s", str_of(m, "label", str_of(m, "host", "?")));
        md_cell(sb, who);
        md_cell(sb, str_of(m, "cpu", "?"));
        md_num(sb, "%.0f", cli_json_number(m, "cores"));
        md_num(sb, "%.1f", cli_json_number(m, "memory_bytes") / 1073741824.0);
        md_cell(sb, str_of(m, "os", "?"));
        md_cell(sb, str_of(m, "date", "?"));
        md_cell(sb, str_of(m, "polytrain", "?"));
        md_cell(sb, steps);
        md_num(sb, "%.0f", cli_json_number(ms_set, "sgemm_n"));
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "`%s`", str_of(m, "command", ""));
        md_cell(sb, cmd);
        pt_strbuf_puts(sb, "\n");
    }

    pt_strbuf_puts(sb, "\n## Devices\n\n| device | backend | kind | platform, driver, libraries | memory GiB | "
                       "compute units | threads |\n|---|---|---|---|--:|--:|--:|\n");
    for (int i = 0; i < c->nd; i++) {
        const pt_json *d = c->dev[i];
        pt_strbuf_puts(sb, "|");
        md_cell(sb, c->label[i]);
        md_cell(sb, str_of(d, "backend", "?"));
        md_cell(sb, str_of(d, "kind", "?"));
        md_cell(sb, str_of(d, "details", ""));
        md_num(sb, "%.1f", cli_json_number(d, "memory_bytes") / 1073741824.0);
        md_num(sb, "%.0f", cli_json_number(d, "compute_units"));
        md_num(sb, "%.0f", cli_json_number(d, "threads"));
        pt_strbuf_puts(sb, "\n");
    }
    const pt_json *un = pt_json_get(c->root, "unavailable");
    for (size_t i = 0; i < pt_json_len(un); i++) {
        const pt_json *u = pt_json_at(un, i);
        pt_strbuf_printf(sb, "%sNot available on %s: backend %s (%s).\n", i ? "" : "\n", str_of(u, "machine", "?"),
                         str_of(u, "backend", "?"), str_of(u, "error", "?"));
    }

    pt_strbuf_puts(sb, "\n## Conformance\n\nEvery op checked against the cpu backend's device 0 (polytrain selftest).\n\n"
                       "| device | result | cases | passed | failed | not claimed | worst error / bound | worst case | "
                       "time s |\n|---|---|--:|--:|--:|--:|--:|---|--:|\n");
    for (int i = 0; i < c->nd; i++) {
        const pt_json *cf = pt_json_get(c->dev[i], "conformance");
        pt_strbuf_puts(sb, "|");
        md_cell(sb, c->label[i]);
        if (!cf || cf->type != PT_JSON_OBJECT) {
            md_cell(sb, "not run");
            pt_strbuf_puts(sb, " | | | | | | |\n");
            continue;
        }
        const char *e = str_of(cf, "error", NULL);
        if (e) {
            char b[1100];
            snprintf(b, sizeof b, "failed to run: %s", e);
            md_cell(sb, b);
            pt_strbuf_puts(sb, " | | | | | | |\n");
            continue;
        }
        md_cell(sb, cli_json_number(cf, "failed") == 0 ? "pass" : "FAIL");
        md_num(sb, "%.0f", cli_json_number(cf, "cases"));
        md_num(sb, "%.0f", cli_json_number(cf, "passed"));
        md_num(sb, "%.0f", cli_json_number(cf, "failed"));
        md_num(sb, "%.0f", cli_json_number(cf, "unclaimed"));
        md_num(sb, "%.3g", cli_json_number(cf, "worst_ratio"));
        md_cell(sb, str_of(cf, "worst_case", ""));
        md_num(sb, "%.1f", cli_json_number(cf, "seconds"));
        pt_strbuf_puts(sb, "\n");
    }
    pt_strbuf_puts(sb, "\n\"Not claimed\": cases in precisions the device does not offer, not run.\n");

    for (int m = 0; m < c->nm; m++) {
        pt_strbuf_printf(sb, "\n## %s\n\n| device | train img/s | eval img/s | train step ms | GFLOP/s | GEMM peak "
                             "GFLOP/s | of peak | warm-up s | peak host memory MiB | device memory MiB | status |\n"
                             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n",
                         c->model[m]);
        for (int i = 0; i < c->nd; i++) {
            const pt_json *r = model_of(c->dev[i], c->model[m]);
            const pt_json *pk = pt_json_get(c->dev[i], "gemm_peak");
            pt_strbuf_puts(sb, "|");
            md_cell(sb, c->label[i]);
            md_num(sb, "%.1f", cli_json_number(r, "train_img_per_s"));
            md_num(sb, "%.1f", cli_json_number(r, "eval_img_per_s"));
            md_num(sb, "%.1f", cli_json_number(r, "train_step_ms"));
            md_num(sb, "%.1f", cli_json_number(r, "step_gflop_per_s"));
            md_num(sb, "%.1f", cli_json_number(pk, "best_gflop_per_s"));
            md_num(sb, "%.0f%%", 100 * cli_json_number(r, "peak_fraction"));
            md_num(sb, "%.2f", cli_json_number(r, "warmup_s"));
            md_num(sb, "%.1f", cli_json_number(r, "peak_mem_bytes") / 1048576.0);
            md_num(sb, "%.1f", cli_json_number(r, "device_mem_bytes") / 1048576.0);
            char st[1200];
            const char *e = str_of(r, "error", NULL);
            if (!r) snprintf(st, sizeof st, "not measured");
            else if (e) snprintf(st, sizeof st, "failed: %s", e);
            else if (str_of(r, "per_op_error", NULL)) snprintf(st, sizeof st, "ok; per-op run failed: %s", str_of(r, "per_op_error", ""));
            else snprintf(st, sizeof st, "ok");
            if (str_of(pk, "error", NULL)) {
                size_t u = strlen(st);
                snprintf(st + u, sizeof st - u, "; GEMM peak failed: %s", str_of(pk, "error", ""));
            }
            md_cell(sb, st);
            pt_strbuf_puts(sb, "\n");
        }
        /* step time by op kind: the kinds of any device, by their largest share of a step */
        const char *kinds[64];
        double share[64];
        const int nk = rank_kinds(c, c->model[m], kinds, share);
        if (!nk) continue;
        pt_strbuf_printf(sb, "\nTraining step time by op kind, ms per step (a run of its own that synchronises "
                             "after every op):\n\n| op kind |");
        for (int i = 0; i < c->nd; i++) md_cell(sb, c->label[i]);
        pt_strbuf_puts(sb, "\n|---|");
        for (int i = 0; i < c->nd; i++) pt_strbuf_puts(sb, "--:|");
        pt_strbuf_puts(sb, "\n");
        for (int k = 0; k <= nk; k++) {
            pt_strbuf_puts(sb, "|");
            md_cell(sb, k < nk ? kinds[k] : "**total**");
            for (int i = 0; i < c->nd; i++) {
                const pt_json *ops = pt_json_get(model_of(c->dev[i], c->model[m]), "per_op_ms");
                double v = 0;
                if (k < nk) v = cli_json_number(ops, kinds[k]);
                else
                    for (size_t j = 0; ops && ops->type == PT_JSON_OBJECT && j < ops->count; j++)
                        v += isfinite(cli_json_number(ops, ops->members[j].key)) ? cli_json_number(ops, ops->members[j].key) : 0;
                md_num(sb, "%.2f", ops && ops->type == PT_JSON_OBJECT ? v : NAN);
            }
            pt_strbuf_puts(sb, "\n");
        }
    }
    pt_strbuf_puts(sb, "\nimg/s: training steps (forward, backward, update) and evaluation batches per second on "
                       "random data. GFLOP/s: every op of the training step (the op table's counts) over its median "
                       "time; \"of peak\": that against the device's own GEMM op on square matrices. Warm-up: the "
                       "untimed first steps, kernel builds and tuning included. Host memory: the process's high-water "
                       "resident set (VmHWM); device memory: the replica's plan (parameters, gradients, optimizer "
                       "state, activations, workspace).\n");
    if (plotted)
        pt_strbuf_puts(sb, "\n![throughput](throughput.png)\n\n![step time by op kind](op_time.png)\n\n"
                           "![GFLOP/s against the GEMM peak](gflops.png)\n\n![warm-up and memory](setup.png)\n");
}

/* ---------------------------------------------------------------- charts */

/* A gnuplot double-quoted string: backslash and quote escaped, a newline as gnuplot's \n,
 * other control characters dropped. */
static void gp_string(FILE *g, const char *s)
{
    fputc('"', g);
    for (; *s; s++) {
        if (*s == '\n') {
            fputs("\\n", g);
            continue;
        }
        if (*s == '"' || *s == '\\') fputc('\\', g);
        if ((unsigned char)*s >= 0x20) fputc(*s, g);
    }
    fputc('"', g);
}

/* A quoted string in a gnuplot data file, where a quote cannot be escaped. */
static void dat_string(FILE *f, const char *s)
{
    fputs(" \"", f);
    for (; *s; s++) fputc(*s == '"' ? '\'' : (unsigned char)*s < 0x20 ? ' ' : *s, f);
    fputc('"', f);
}

static void fmt_value(char *b, size_t cap, double v)
{
    if (!isfinite(v)) snprintf(b, cap, "no result");
    else if (v >= 100) snprintf(b, cap, "%.0f", v);
    else if (v >= 10) snprintf(b, cap, "%.1f", v);
    else snprintf(b, cap, "%.2f", v);
}

typedef struct cr_series {
    char title[200];
    const char *color;
    double v[CR_MAX_DEVICES];
    char lab[CR_MAX_DEVICES][48];
} cr_series;

static int tic_lines(const cr_ctx *c)
{
    int most = 1;
    for (int i = 0; i < c->nd; i++) {
        int n = 1;
        for (const char *p = c->tic[i]; *p; p++) n += *p == '\n';
        if (n > most) most = n;
    }
    return most;
}

static void set_device_tics(FILE *g, const cr_ctx *c)
{
    fprintf(g, "set xrange [-0.6:%g]\nset xtics nomirror scale 0 (", c->nd - 0.4);
    for (int i = 0; i < c->nd; i++) {
        if (i) fputs(", ", g);
        gp_string(g, c->tic[i]);
        fprintf(g, " %d", i);
    }
    fprintf(g, ")\nset bmargin %d\n", tic_lines(c) + 2);
}

/* One panel of grouped bars: a group per device, a bar per series, its label above it. A
 * missing value is drawn as a bar of height 0 labelled "no result". */
static pt_status bars_panel(FILE *g, const char *dir, const char *dat, const cr_ctx *c, cr_series *s, int ns,
                            const char *title, const char *ylabel, pt_error *err)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, dat);
    FILE *f = fopen(path, "w");
    if (!f) return pt_fail(err, PT_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    fprintf(f, "# device");
    for (int j = 0; j < ns; j++) fprintf(f, " value%d label%d", j, j);
    fputc('\n', f);
    int any = 0;
    size_t longest = 0;
    for (int i = 0; i < c->nd; i++) {
        fprintf(f, "%d", i);
        for (int j = 0; j < ns; j++) {
            any |= isfinite(s[j].v[i]);
            if (!s[j].lab[i][0]) fmt_value(s[j].lab[i], sizeof s[j].lab[i], s[j].v[i]);
            if (strlen(s[j].lab[i]) > longest) longest = strlen(s[j].lab[i]);
            fprintf(f, " %.6g", isfinite(s[j].v[i]) ? s[j].v[i] : 0.0);
            dat_string(f, s[j].lab[i]);
        }
        fputc('\n', f);
    }
    if (fclose(f) != 0) return pt_fail(err, PT_ERR_IO, "cannot write '%s'", path);
    const double w = 0.8 / ns;
    /* a label wider than its bar (about 150 px per device at the chart's width, 6 px a
     * character) would run into its neighbour's: written upwards instead */
    const int upright = 6.0 * (double)longest > 0.95 * 150.0 * w / 0.8;
    fprintf(g, "set title ");
    gp_string(g, title);
    fprintf(g, "\nset ylabel ");
    gp_string(g, ylabel);
    fprintf(g, "\nset boxwidth %g absolute\nset style fill solid 0.85 border rgb \"#404040\"\n", w * 0.92);
    if (any) fprintf(g, "set yrange [0:*]\nset offsets 0, 0, graph %g, 0\n", upright ? 0.35 : 0.18);
    else fprintf(g, "set yrange [0:1]\nset offsets 0, 0, 0, 0\n");
    set_device_tics(g, c);
    fprintf(g, "plot ");
    for (int j = 0; j < ns; j++) {
        const double off = (j - (ns - 1) / 2.0) * w;
        fprintf(g, "%s\"%s\" using ($1%+g):%d with boxes lc rgb \"%s\" title ", j ? ", \\\n     " : "", dat, off,
                2 + 2 * j, s[j].color);
        gp_string(g, s[j].title);
        fprintf(g, ", \\\n     \"%s\" using ($1%+g):%d:%d with labels %s font \",9\" notitle", dat, off,
                2 + 2 * j, 3 + 2 * j, upright ? "rotate by 90 left offset 0,0.5" : "offset 0,0.7");
    }
    fputc('\n', g);
    return PT_OK;
}

static void series_title(cr_series *s, const char *fmt, const char *a, const char *b)
{
    snprintf(s->title, sizeof s->title, fmt, a, b);
}

/* The stacked bars of the op kinds of one model: boxes from the sum below a kind to the sum
 * with it, the total above the stack. */
static pt_status stack_panel(FILE *g, const char *dir, int m, const cr_ctx *c, pt_error *err)
{
    const char *model = c->model[m];
    const char *kinds[64];
    double share[64];
    const int nk = rank_kinds(c, model, kinds, share);
    const int shown = nk > CR_STACK_KINDS + 1 ? CR_STACK_KINDS : nk, layers = shown + (nk > shown);
    char dat[64], path[4400];
    snprintf(dat, sizeof dat, "op_time_%d.dat", m);
    snprintf(path, sizeof path, "%s/%s", dir, dat);
    FILE *f = fopen(path, "w");
    if (!f) return pt_fail(err, PT_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    fprintf(f, "# device, then per layer (bottom first) the sums below and with it (ms), the total, its label\n");
    int any = 0;
    for (int i = 0; i < c->nd; i++) {
        const pt_json *ops = pt_json_get(model_of(c->dev[i], model), "per_op_ms");
        double sum = 0;
        fprintf(f, "%d", i);
        for (int l = 0; l < layers; l++) {
            double v = 0;
            if (l < shown) v = cli_json_number(ops, kinds[l]);
            else
                for (int k = shown; k < nk; k++)
                    v += isfinite(cli_json_number(ops, kinds[k])) ? cli_json_number(ops, kinds[k]) : 0;
            if (!isfinite(v)) v = 0;
            fprintf(f, " %.6g %.6g", sum, sum + v);
            sum += v;
        }
        char lab[48];
        if (ops && ops->type == PT_JSON_OBJECT) snprintf(lab, sizeof lab, "%.1f ms", sum), any = 1;
        else snprintf(lab, sizeof lab, "no result");
        fprintf(f, " %.6g", sum);
        dat_string(f, lab);
        fputc('\n', f);
    }
    if (fclose(f) != 0) return pt_fail(err, PT_ERR_IO, "cannot write '%s'", path);
    char title[300];
    snprintf(title, sizeof title, "%s: training step time by op kind (stacked; synchronised after every op)", model);
    fprintf(g, "set title ");
    gp_string(g, title);
    fprintf(g, "\nset ylabel \"ms per training step\"\nset boxwidth 0.55 absolute\n"
               "set style fill solid 0.9 border rgb \"#404040\"\n%s\n",
            any ? "set yrange [0:*]\nset offsets 0, 0, graph 0.12, 0" : "set yrange [0:1]\nset offsets 0, 0, 0, 0");
    set_device_tics(g, c);
    fprintf(g, "plot ");
    /* top layer first, so that the key lists the kinds in the order of the stack */
    for (int l = layers - 1; l >= 0; l--) {
        const char *color = l < shown ? kind_color(c, kinds[l]) : CR_GREY;
        fprintf(g, "\"%s\" using 1:(($%d+$%d)/2):($1-0.275):($1+0.275):%d:%d with boxxyerror lc rgb \"%s\" title ", dat,
                2 + 2 * l, 3 + 2 * l, 2 + 2 * l, 3 + 2 * l, color);
        char t[80];
        if (l < shown) snprintf(t, sizeof t, "%s", kinds[l]);
        else snprintf(t, sizeof t, "other (%d kinds)", nk - shown);
        gp_string(g, t);
        fprintf(g, ", \\\n     ");
    }
    fprintf(g, "\"%s\" using 1:%d:%d with labels offset 0,0.8 font \",9\" notitle%s\n", dat, 2 + 2 * layers,
            3 + 2 * layers, layers ? "" : "");
    return PT_OK;
}

static pt_status write_charts(const cr_ctx *c, const char *dir, pt_error *err)
{
    char gdir[4300], path[4400];
    snprintf(gdir, sizeof gdir, "%s/gnuplot", dir);
    PT_TRY(pt_mkdir_p(gdir, err));
    snprintf(path, sizeof path, "%s/compare.gp", gdir);
    FILE *g = fopen(path, "w");
    if (!g) return pt_fail(err, PT_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    cr_series *s = calloc(2 * CR_MAX_MODELS + 1, sizeof *s);
    if (!s) {
        fclose(g);
        return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    }
    pt_status st = PT_OK;
    const int width = 260 + 190 * c->nd < 900 ? 900 : 260 + 190 * c->nd;
    const int lines = tic_lines(c);
    const int panel_h = 380 + 16 * lines;
    char title[400], sub[200];
    snprintf(sub, sizeof sub, "input %s, batch %lld, %s", str_of(c->settings, "input", "?"),
             (long long)cli_json_number(c->settings, "batch"), str_of(c->settings, "precision", "?"));
    fprintf(g, "# gnuplot script written by polytrain compare; 'gnuplot compare.gp' in this folder draws the\n"
               "# charts again (into the folder above) from the .dat files beside it.\n"
               "set terminal pngcairo size %d,%d noenhanced font \"sans,11\"\nset grid ytics\n"
               "set key outside top center horizontal\nset border 3\nset ytics nomirror\n",
            width, panel_h * c->nm);

    /* throughput.png: train and eval img/s, a panel per model */
    fprintf(g, "set output \"../throughput.png\"\nset multiplot layout %d,1\n", c->nm);
    for (int m = 0; st == PT_OK && m < c->nm; m++) {
        memset(s, 0, 2 * sizeof *s);
        series_title(&s[0], "train (forward, backward, update)%s%s", "", "");
        series_title(&s[1], "eval (forward)%s%s", "", "");
        s[0].color = palette[0], s[1].color = palette[1];
        for (int i = 0; i < c->nd; i++) {
            const pt_json *r = model_of(c->dev[i], c->model[m]);
            s[0].v[i] = cli_json_number(r, "train_img_per_s");
            s[1].v[i] = cli_json_number(r, "eval_img_per_s");
        }
        char dat[64];
        snprintf(dat, sizeof dat, "throughput_%d.dat", m);
        snprintf(title, sizeof title, "%s: images per second (%s; higher is better)", c->model[m], sub);
        st = bars_panel(g, gdir, dat, c, s, 2, title, "img/s", err);
    }
    fprintf(g, "unset multiplot\n");

    /* op_time.png: stacked op kinds, a panel per model */
    fprintf(g, "set output \"../op_time.png\"\nset key outside right top vertical\nset multiplot layout %d,1\n", c->nm);
    for (int m = 0; st == PT_OK && m < c->nm; m++) st = stack_panel(g, gdir, m, c, err);
    fprintf(g, "unset multiplot\nset key outside top center horizontal\n");

    /* gflops.png: the GEMM peak and each model's GFLOP/s with its share of the peak */
    if (st == PT_OK) {
        fprintf(g, "set terminal pngcairo size %d,%d noenhanced font \"sans,11\"\nset output \"../gflops.png\"\n", width,
                panel_h + 40);
        int ns = 1 + c->nm;
        memset(s, 0, (size_t)ns * sizeof *s);
        snprintf(s[0].title, sizeof s[0].title, "GEMM peak (the device's GEMM op, %lld x %lld x %lld)",
                 (long long)cli_json_number(c->settings, "sgemm_n"), (long long)cli_json_number(c->settings, "sgemm_n"),
                 (long long)cli_json_number(c->settings, "sgemm_n"));
        s[0].color = CR_GREY;
        for (int i = 0; i < c->nd; i++)
            s[0].v[i] = cli_json_number(pt_json_get(c->dev[i], "gemm_peak"), "best_gflop_per_s");
        for (int m = 0; m < c->nm; m++) {
            series_title(&s[1 + m], "%s training step%s", c->model[m], "");
            s[1 + m].color = palette[m % CR_COLORS];
            for (int i = 0; i < c->nd; i++) {
                const pt_json *r = model_of(c->dev[i], c->model[m]);
                double v = cli_json_number(r, "step_gflop_per_s"), p = cli_json_number(r, "peak_fraction");
                s[1 + m].v[i] = v;
                char val[32];
                fmt_value(val, sizeof val, v);
                if (isfinite(v) && isfinite(p)) snprintf(s[1 + m].lab[i], sizeof s[1 + m].lab[i], "%s (%.0f%%)", val, 100 * p);
            }
        }
        snprintf(title, sizeof title, "achieved GFLOP/s against the device's GEMM peak (%s; %% = share of the peak)", sub);
        st = bars_panel(g, gdir, "gflops.dat", c, s, ns, title, "GFLOP/s", err);
    }

    /* setup.png: warm-up time and memory, side by side */
    if (st == PT_OK) {
        fprintf(g, "set terminal pngcairo size %d,%d noenhanced font \"sans,11\"\nset output \"../setup.png\"\n"
                   "set multiplot layout 1,2\n",
                2 * width > 1800 ? 2 * width : 1800, panel_h + 40);
        memset(s, 0, (size_t)c->nm * sizeof *s);
        for (int m = 0; m < c->nm; m++) {
            series_title(&s[m], "%s%s", c->model[m], "");
            s[m].color = palette[m % CR_COLORS];
            for (int i = 0; i < c->nd; i++) s[m].v[i] = cli_json_number(model_of(c->dev[i], c->model[m]), "warmup_s");
        }
        const long long wu = (long long)cli_json_number(c->settings, "warmup");
        snprintf(title, sizeof title, "time to the first timed step: %lld warm-up step%s, kernel builds and tuning "
                                      "included",
                 wu, wu == 1 ? "" : "s");
        st = bars_panel(g, gdir, "warmup.dat", c, s, c->nm, title, "seconds", err);
        if (st == PT_OK) {
            memset(s, 0, 2 * (size_t)c->nm * sizeof *s);
            for (int m = 0; m < c->nm; m++) {
                series_title(&s[2 * m], "%s: host peak (VmHWM)%s", c->model[m], "");
                series_title(&s[2 * m + 1], "%s: device (parameters, state, activations)%s", c->model[m], "");
                s[2 * m].color = palette[(2 * m) % CR_COLORS];
                s[2 * m + 1].color = palette[(2 * m + 1) % CR_COLORS];
                for (int i = 0; i < c->nd; i++) {
                    const pt_json *r = model_of(c->dev[i], c->model[m]);
                    s[2 * m].v[i] = cli_json_number(r, "peak_mem_bytes") / 1048576.0;
                    s[2 * m + 1].v[i] = cli_json_number(r, "device_mem_bytes") / 1048576.0;
                }
            }
            st = bars_panel(g, gdir, "memory.dat", c, s, 2 * c->nm, "memory (lower is better)", "MiB", err);
        }
        fprintf(g, "unset multiplot\n");
    }
    fprintf(g, "unset output\n");
    free(s);
    if (fclose(g) != 0 && st == PT_OK) st = pt_fail(err, PT_ERR_IO, "cannot write '%s'", path);
    if (st == PT_OK) st = cli_gnuplot_run(gdir, "compare.gp", err);
    return st;
}

/* ---------------------------------------------------------------- the whole report */

static pt_status write_text(const char *dir, const char *name, const pt_strbuf *sb, pt_error *err)
{
    PT_TRY(pt_strbuf_check(sb, err));
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    const void *chunks[1] = {sb->data ? sb->data : ""};
    size_t sizes[1] = {sb->len};
    return pt_write_file_atomic(path, chunks, sizes, 1, err);
}

pt_status cli_compare_write(const pt_json *report, const char *dir, int plots, int *plotted, char *plot_error,
                            size_t cap, pt_error *err)
{
    *plotted = 0;
    if (cap) plot_error[0] = '\0';
    cr_ctx *c = calloc(1, sizeof *c);
    if (!c) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    ctx_init(c, report);
    pt_strbuf js, md;
    pt_strbuf_init(&js);
    pt_strbuf_init(&md);
    pt_strbuf_json_value(&js, report);
    pt_strbuf_putc(&js, '\n');
    pt_status st = write_text(dir, "report.json", &js, err), plot_st = PT_OK;
    pt_error plot_err;
    pt_error_clear(&plot_err);
    if (st == PT_OK && plots && c->nd && c->nm) {
        plot_st = write_charts(c, dir, &plot_err);
        *plotted = plot_st == PT_OK;
    }
    if (st == PT_OK) {
        write_md(c, *plotted, &md);
        st = write_text(dir, "report.md", &md, err);
    }
    if (plot_st != PT_OK) snprintf(plot_error, cap, "%s", plot_err.msg);
    pt_strbuf_free(&js);
    pt_strbuf_free(&md);
    free(c);
    return st;
}
