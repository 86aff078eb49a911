/* polytrain report's index.html: one self-contained page (inline CSS, no scripts, relative
 * links to the report's own files only) that opens from file:// anywhere the folder is
 * copied. Every text that comes from the run (names, options, paths) is escaped. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/fileio.h"
#include "tools/report_internal.h"
#include "polytrain/version.h"

static void esc(pt_strbuf *sb, const char *s)
{
    for (; *s; s++) switch (*s) {
        case '&': pt_strbuf_puts(sb, "&amp;"); break;
        case '<': pt_strbuf_puts(sb, "&lt;"); break;
        case '>': pt_strbuf_puts(sb, "&gt;"); break;
        case '"': pt_strbuf_puts(sb, "&quot;"); break;
        case '\'': pt_strbuf_puts(sb, "&#39;"); break;
        default: pt_strbuf_putc(sb, *s);
        }
}

static void pct(pt_strbuf *sb, double v)
{
    if (isfinite(v)) pt_strbuf_printf(sb, "%.2f%%", 100 * v);
    else pt_strbuf_puts(sb, "&ndash;");
}

static void num(pt_strbuf *sb, const char *fmt, double v)
{
    if (isfinite(v)) pt_strbuf_printf(sb, fmt, v);
    else pt_strbuf_puts(sb, "&ndash;");
}

/* A JSON value as compact text (objects and arrays written out), escaped for HTML. */
static void json_text(pt_strbuf *sb, const pt_json *v)
{
    char buf[64];
    switch (v->type) {
    case PT_JSON_STRING: esc(sb, v->str); break;
    case PT_JSON_NUMBER:
        if (v->is_int) pt_strbuf_printf(sb, "%lld", (long long)v->integer);
        else {
            snprintf(buf, sizeof buf, "%.9g", v->number);
            pt_strbuf_puts(sb, buf);
        }
        break;
    case PT_JSON_BOOL: pt_strbuf_puts(sb, v->boolean ? "true" : "false"); break;
    case PT_JSON_NULL: pt_strbuf_puts(sb, "<span class=\"dim\">&ndash;</span>"); break;
    case PT_JSON_ARRAY:
        pt_strbuf_putc(sb, '[');
        for (size_t i = 0; i < v->count; i++) {
            if (i) pt_strbuf_puts(sb, ", ");
            json_text(sb, &v->items[i]);
        }
        pt_strbuf_putc(sb, ']');
        break;
    case PT_JSON_OBJECT:
        pt_strbuf_putc(sb, '{');
        for (size_t i = 0; i < v->count; i++) {
            if (i) pt_strbuf_puts(sb, ", ");
            esc(sb, v->members[i].key);
            pt_strbuf_puts(sb, ": ");
            json_text(sb, &v->members[i].value);
        }
        pt_strbuf_putc(sb, '}');
        break;
    }
}

static void json_table(pt_strbuf *sb, const char *title, const pt_json *obj)
{
    pt_strbuf_printf(sb, "<div class=\"cfg\"><h3>%s</h3>\n", title);
    if (!obj || obj->type != PT_JSON_OBJECT) {
        pt_strbuf_puts(sb, "<p class=\"dim\">not recorded</p></div>\n");
        return;
    }
    pt_strbuf_puts(sb, "<table>\n");
    for (size_t i = 0; i < obj->count; i++) {
        pt_strbuf_puts(sb, "<tr><th>");
        esc(sb, obj->members[i].key);
        pt_strbuf_puts(sb, "</th><td>");
        json_text(sb, &obj->members[i].value);
        pt_strbuf_puts(sb, "</td></tr>\n");
    }
    pt_strbuf_puts(sb, "</table></div>\n");
}

/* An <img> of a plot, or why it is missing. */
static void plot(pt_strbuf *sb, const report_ctx *r, const char *file, const char *alt)
{
    if (r->plots) {
        pt_strbuf_printf(sb, "<a href=\"%s\"><img class=\"plot\" src=\"%s\" alt=\"%s\"></a>\n", file, file, alt);
        return;
    }
    pt_strbuf_printf(sb, "<p class=\"missing\">%s: not drawn, ", alt);
    esc(sb, r->plots_missing);
    pt_strbuf_puts(sb, ". Install it and run <code>polytrain report</code> again.</p>\n");
}

static void epoch_row(pt_strbuf *sb, const char *what, const report_epoch *e)
{
    pt_strbuf_printf(sb, "<tr><th>%s</th>", what);
    if (!e) {
        pt_strbuf_puts(sb, "<td colspan=\"8\" class=\"dim\">not recorded</td></tr>\n");
        return;
    }
    pt_strbuf_printf(sb, "<td>%lld</td><td>", (long long)e->epoch);
    num(sb, "%.4f", e->train_loss);
    pt_strbuf_puts(sb, "</td><td>");
    pct(sb, e->train_acc);
    pt_strbuf_puts(sb, "</td><td>");
    num(sb, "%.4f", e->val_loss);
    pt_strbuf_puts(sb, "</td><td>");
    pct(sb, e->val_top1);
    pt_strbuf_puts(sb, "</td><td>");
    pct(sb, e->val_top5);
    pt_strbuf_puts(sb, "</td><td>");
    num(sb, "%.4g", e->lr);
    pt_strbuf_puts(sb, "</td><td>");
    num(sb, "%.1f s", e->elapsed_s);
    pt_strbuf_puts(sb, "</td></tr>\n");
}

static const char CSS[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:1200px;"
    "padding:1em 2em;color:#222;background:#fff}\n"
    "h1{font-size:1.6em;margin-bottom:0.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:0.2em}\n"
    "table{border-collapse:collapse;margin:0.5em 0}th,td{padding:0.2em 0.7em;border-bottom:1px solid #eee;"
    "text-align:left;vertical-align:top}\n"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}\n"
    ".dim{color:#888}.missing{background:#fff4e5;border-left:4px solid #f0a030;padding:0.6em 1em}\n"
    ".summary{font-size:1.1em;background:#f5f8fc;border-left:4px solid #1f77b4;padding:0.6em 1em}\n"
    "img.plot{max-width:100%;height:auto;border:1px solid #eee;margin:0.3em 0}\n"
    ".curves{display:flex;flex-wrap:wrap;gap:0.5em}.curves a{flex:0 1 calc(50% - 0.25em);min-width:380px}"
    ".curves img.plot{width:100%}.curves p{flex:1 1 100%}\n"
    ".bar{display:inline-block;height:0.8em;background:#1f77b4;vertical-align:middle}\n"
    ".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:0.8em}\n"
    "figure{margin:0;padding:0.4em;border:1px solid #eee;text-align:center;font-size:0.85em}\n"
    "figure img{image-rendering:pixelated;max-width:100%}\n"
    ".cfgs{display:flex;flex-wrap:wrap;gap:2em}.cfg table{font-size:0.9em}\n"
    "code{background:#f3f3f3;padding:0 0.3em}\n";

pt_status report_write_html(const report_ctx *r, pt_error *err)
{
    pt_strbuf h;
    pt_strbuf_init(&h);
    const char *name = strrchr(r->run, '/');
    char run_name[512];
    snprintf(run_name, sizeof run_name, "%s", name && name[1] ? name + 1 : r->run);
    /* a trailing slash: the name before it */
    if (name && !name[1]) {
        snprintf(run_name, sizeof run_name, "%s", r->run);
        size_t n = strlen(run_name);
        while (n > 1 && run_name[n - 1] == '/') run_name[--n] = '\0';
        const char *b = strrchr(run_name, '/');
        if (b) memmove(run_name, b + 1, strlen(b + 1) + 1);
    }
    pt_strbuf_puts(&h, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                       "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>");
    esc(&h, run_name);
    pt_strbuf_printf(&h, ": polytrain report</title>\n<style>\n%s</style>\n</head>\n<body>\n<h1>", CSS);
    esc(&h, run_name);
    pt_strbuf_puts(&h, "</h1>\n<p class=\"dim\">run directory <code>");
    esc(&h, r->run);
    pt_strbuf_puts(&h, "</code>, model <code>");
    esc(&h, r->m.meta.model);
    pt_strbuf_puts(&h, "</code></p>\n");

    /* what the checkpoint scored on the run's validation data */
    pt_strbuf_puts(&h, "<p class=\"summary\">Checkpoint <code>");
    esc(&h, r->checkpoint_note);
    pt_strbuf_printf(&h, "</code> on %lld validation samples: <b>top-1 ", (long long)r->res.count);
    pct(&h, r->res.top1);
    pt_strbuf_puts(&h, "</b>, top-5 ");
    pct(&h, r->res.top5);
    pt_strbuf_puts(&h, ", loss ");
    num(&h, "%.4f", r->res.loss);
    pt_strbuf_printf(&h, " (%lld of %lld right).<br><span class=\"dim\">Data: ", (long long)r->cm.correct,
                     (long long)r->res.count);
    esc(&h, r->data_desc);
    pt_strbuf_puts(&h, "</span></p>\n");

    pt_strbuf_puts(&h, "<h2>Metrics</h2>\n<table>\n<tr><th></th><th>epoch</th><th>train loss</th><th>train acc</th>"
                       "<th>val loss</th><th>val top-1</th><th>val top-5</th><th>lr</th><th>elapsed</th></tr>\n");
    epoch_row(&h, "final", r->nepochs ? &r->epochs[r->nepochs - 1] : NULL);
    const report_epoch *best = NULL;
    for (int i = 0; i < r->nepochs; i++)
        if (r->epochs[i].best) best = &r->epochs[i];
    epoch_row(&h, "best", best);
    pt_strbuf_printf(&h, "</table>\n<p class=\"dim\">%d epoch%s recorded in metrics.jsonl%s.</p>\n", r->nepochs,
                     r->nepochs == 1 ? "" : "s",
                     r->nsteps ? ", every step in steps.jsonl" : " (no steps.jsonl: train with --log-steps for per-step curves)");

    pt_strbuf_puts(&h, "<h2>Training curves</h2>\n<div class=\"curves\">\n");
    plot(&h, r, "loss.png", "loss");
    plot(&h, r, "accuracy.png", "accuracy");
    plot(&h, r, "lr.png", "learning rate");
    pt_strbuf_puts(&h, "</div>\n");

    pt_strbuf_puts(&h, "<h2>Confusion matrix</h2>\n<p>Rows: the true class; columns: the predicted one. "
                       "Counts in <a href=\"confusion.csv\">confusion.csv</a>.</p>\n");
    plot(&h, r, "confusion.png", "confusion matrix");

    pt_strbuf_puts(&h, "<h2>Per-class accuracy</h2>\n");
    plot(&h, r, "per_class.png", "per-class accuracy");
    pt_strbuf_puts(&h, "<p>Also in <a href=\"per_class.csv\">per_class.csv</a>.</p>\n<table>\n<tr><th>class</th>"
                       "<th>count</th><th>correct</th><th>accuracy</th><th></th><th>most often taken for</th></tr>\n");
    for (int c = 0; c < r->classes; c++) {
        const int64_t n = cli_confusion_row_count(&r->cm, c), ok = r->cm.matrix[(size_t)c * r->classes + c];
        const int mc = cli_confusion_most_confused(&r->cm, c);
        const double acc = n ? (double)ok / (double)n : NAN;
        pt_strbuf_puts(&h, "<tr><td>");
        esc(&h, r->names[c]);
        pt_strbuf_printf(&h, "</td><td class=\"n\">%lld</td><td class=\"n\">%lld</td><td class=\"n\">", (long long)n,
                         (long long)ok);
        pct(&h, acc);
        pt_strbuf_printf(&h, "</td><td><span class=\"bar\" style=\"width:%.0fpx\"></span></td><td>",
                         isfinite(acc) ? 120 * acc : 0.0);
        if (mc >= 0) {
            esc(&h, r->names[mc]);
            pt_strbuf_printf(&h, " <span class=\"dim\">(%lld)</span>",
                             (long long)r->cm.matrix[(size_t)c * r->classes + mc]);
        } else
            pt_strbuf_puts(&h, "<span class=\"dim\">&ndash;</span>");
        pt_strbuf_puts(&h, "</td></tr>\n");
    }
    pt_strbuf_puts(&h, "</table>\n");

    pt_strbuf_puts(&h, "<h2>Misclassified images</h2>\n");
    if (!r->nmistakes)
        pt_strbuf_printf(&h, "<p>%s</p>\n", r->wrong ? "None shown (--max-misclassified 0)."
                                                     : "None: every validation image was classified right.");
    else {
        pt_strbuf_printf(&h, "<p>The %d most confident mistakes of %lld: the misclassified validation images "
                             "to which the model gave the highest probability, highest first (ties in dataset "
                             "order), shown %dx enlarged.",
                         r->nmistakes, (long long)r->wrong, r->scale);
        if (r->plots) pt_strbuf_puts(&h, " As one image: <a href=\"misclassified.png\">misclassified.png</a>.");
        pt_strbuf_puts(&h, "</p>\n<div class=\"grid\">\n");
        for (int k = 0; k < r->nmistakes; k++) {
            const report_mistake *mk = &r->mistakes[k];
            pt_strbuf_printf(&h, "<figure><img src=\"%s\" alt=\"validation sample %lld\" width=\"%d\" height=\"%d\">"
                                 "<figcaption>true: <b>",
                             mk->png, (long long)mk->index, r->ds.width * r->scale, r->ds.height * r->scale);
            esc(&h, r->names[mk->truth]);
            pt_strbuf_puts(&h, "</b><br>predicted: <b>");
            esc(&h, r->names[mk->predicted]);
            pt_strbuf_printf(&h, "</b> (%.1f%%)<br><span class=\"dim\">sample %lld</span></figcaption></figure>\n",
                             100.0 * mk->prob, (long long)mk->index);
        }
        pt_strbuf_puts(&h, "</div>\n");
    }

    pt_strbuf_puts(&h, "<h2>Configuration</h2>\n<p class=\"dim\">From the run's config.json: the options it was "
                       "started with, and what they resolved to.</p>\n<div class=\"cfgs\">\n");
    json_table(&h, "options", pt_json_get(r->rd.config, "options"));
    json_table(&h, "resolved", pt_json_get(r->rd.config, "resolved"));
    pt_strbuf_puts(&h, "</div>\n<p class=\"dim\">Written by polytrain " PT_VERSION
                       " report; the plots' script and data are in gnuplot/.</p>\n</body>\n</html>\n");

    char path[4400];
    snprintf(path, sizeof path, "%s/index.html", r->tmp);
    pt_status st = pt_strbuf_check(&h, err);
    if (st == PT_OK) {
        const void *chunks[1] = {h.data};
        size_t sizes[1] = {h.len};
        st = pt_write_file_atomic(path, chunks, sizes, 1, err);
    }
    pt_strbuf_free(&h);
    return st;
}
