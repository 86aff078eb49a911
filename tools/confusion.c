/* Confusion matrix and per-class accuracy (see confusion.h). */
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "polytrain/metrics.h"
#include "tools/confusion.h"

#include "tools/args.h"

pt_status cli_confusion_compute(const float *logits, const int32_t *labels, int64_t n, int classes,
                                cli_confusion *cm, pt_error *err)
{
    memset(cm, 0, sizeof *cm);
    if (classes < 1 || n < 0) return pt_fail(err, PT_ERR_INVALID, "confusion matrix of %d classes", classes);
    cm->classes = classes;
    cm->count = n;
    cm->matrix = calloc((size_t)classes * (size_t)classes, sizeof *cm->matrix);
    cm->predicted = malloc((size_t)(n > 0 ? n : 1) * sizeof *cm->predicted);
    cm->prob = malloc((size_t)(n > 0 ? n : 1) * sizeof *cm->prob);
    float *probs = malloc((size_t)classes * sizeof *probs);
    if (!cm->matrix || !cm->predicted || !cm->prob || !probs) {
        free(probs);
        cli_confusion_free(cm);
        return pt_fail(err, PT_ERR_NOMEM, "out of host memory for a %d-class confusion matrix", classes);
    }
    for (int64_t i = 0; i < n; i++) {
        const float *row = logits + (size_t)i * (size_t)classes;
        int p = 0;
        pt_topk_indices(row, classes, 1, &p);
        const int t = labels[i];
        if (t < 0 || t >= classes) {
            free(probs);
            cli_confusion_free(cm);
            return pt_fail(err, PT_ERR_FORMAT, "sample %lld has label %d, outside 0..%d", (long long)i, t,
                           classes - 1);
        }
        pt_softmax_row(row, classes, probs);
        cm->predicted[i] = p;
        cm->prob[i] = probs[p];
        cm->matrix[(size_t)t * (size_t)classes + (size_t)p]++;
        if (p == t) cm->correct++;
    }
    free(probs);
    return PT_OK;
}

void cli_confusion_free(cli_confusion *cm)
{
    free(cm->matrix);
    free(cm->predicted);
    free(cm->prob);
    memset(cm, 0, sizeof *cm);
}

int64_t cli_confusion_row_count(const cli_confusion *cm, int c)
{
    int64_t s = 0;
    for (int p = 0; p < cm->classes; p++) s += cm->matrix[(size_t)c * (size_t)cm->classes + (size_t)p];
    return s;
}

int cli_confusion_most_confused(const cli_confusion *cm, int c)
{
    int best = -1;
    int64_t most = 0;
    for (int p = 0; p < cm->classes; p++) {
        const int64_t v = cm->matrix[(size_t)c * (size_t)cm->classes + (size_t)p];
        if (p != c && v > most) {
            most = v;
            best = p;
        }
    }
    return best;
}

static void csv_field(pt_strbuf *sb, const char *s)
{
    if (!strpbrk(s, ",\"\r\n") && s[0] != ' ' && (!*s || s[strlen(s) - 1] != ' ')) {
        pt_strbuf_puts(sb, s);
        return;
    }
    pt_strbuf_putc(sb, '"');
    for (; *s; s++) {
        if (*s == '"') pt_strbuf_putc(sb, '"');
        pt_strbuf_putc(sb, *s);
    }
    pt_strbuf_putc(sb, '"');
}

static pt_status write_buf(const char *path, pt_strbuf *sb, pt_error *err)
{
    pt_status st = pt_strbuf_check(sb, err);
    if (st == PT_OK) {
        const void *chunks[1] = {sb->data};
        size_t sizes[1] = {sb->len};
        st = pt_write_file_atomic(path, chunks, sizes, 1, err);
    }
    pt_strbuf_free(sb);
    return st;
}

pt_status cli_confusion_write_csv(const char *path, const cli_confusion *cm, const char *const *names,
                                  pt_error *err)
{
    pt_strbuf sb;
    pt_strbuf_init(&sb);
    /* the corner names both axes, so the file reads on its own */
    pt_strbuf_puts(&sb, "true\\predicted");
    for (int p = 0; p < cm->classes; p++) {
        pt_strbuf_putc(&sb, ',');
        csv_field(&sb, names[p]);
    }
    pt_strbuf_putc(&sb, '\n');
    for (int t = 0; t < cm->classes; t++) {
        csv_field(&sb, names[t]);
        for (int p = 0; p < cm->classes; p++)
            pt_strbuf_printf(&sb, ",%lld", (long long)cm->matrix[(size_t)t * (size_t)cm->classes + (size_t)p]);
        pt_strbuf_putc(&sb, '\n');
    }
    return write_buf(path, &sb, err);
}

pt_status cli_per_class_write_csv(const char *path, const cli_confusion *cm, const char *const *names,
                                  pt_error *err)
{
    pt_strbuf sb;
    pt_strbuf_init(&sb);
    pt_strbuf_puts(&sb, "class,count,correct,accuracy,most_confused_with,most_confused_count\n");
    for (int c = 0; c < cm->classes; c++) {
        const int64_t n = cli_confusion_row_count(cm, c), ok = cm->matrix[(size_t)c * (size_t)cm->classes + (size_t)c];
        const int mc = cli_confusion_most_confused(cm, c);
        csv_field(&sb, names[c]);
        pt_strbuf_printf(&sb, ",%lld,%lld,", (long long)n, (long long)ok);
        if (n) pt_strbuf_printf(&sb, "%.6f", (double)ok / (double)n);
        pt_strbuf_putc(&sb, ',');
        if (mc >= 0) csv_field(&sb, names[mc]);
        pt_strbuf_printf(&sb, ",%lld\n",
                         mc >= 0 ? (long long)cm->matrix[(size_t)c * (size_t)cm->classes + (size_t)mc] : 0LL);
    }
    return write_buf(path, &sb, err);
}

void cli_per_class_print(FILE *f, const cli_confusion *cm, const char *const *names)
{
    int w = 5;
    for (int c = 0; c < cm->classes; c++) {
        const int l = (int)strlen(cli_safe(names[c]));
        if (l > w) w = l < 40 ? l : 40;
    }
    fprintf(f, "%-*s %8s %8s %9s  %s\n", w, "class", "count", "correct", "accuracy", "most confused with");
    for (int c = 0; c < cm->classes; c++) {
        const int64_t n = cli_confusion_row_count(cm, c), ok = cm->matrix[(size_t)c * (size_t)cm->classes + (size_t)c];
        const int mc = cli_confusion_most_confused(cm, c);
        char acc[16] = "-";
        if (n) snprintf(acc, sizeof acc, "%.2f%%", 100.0 * (double)ok / (double)n);
        char conf[96] = "-";
        if (mc >= 0)
            snprintf(conf, sizeof conf, "%.60s (%lld)", cli_safe(names[mc]),
                     (long long)cm->matrix[(size_t)c * (size_t)cm->classes + (size_t)mc]);
        fprintf(f, "%-*.40s %8lld %8lld %9s  %s\n", w, cli_safe(names[c]), (long long)n, (long long)ok, acc, conf);
    }
}

void cli_per_class_json(pt_strbuf *sb, const cli_confusion *cm, const char *const *names)
{
    pt_strbuf_putc(sb, '[');
    for (int c = 0; c < cm->classes; c++) {
        const int64_t n = cli_confusion_row_count(cm, c), ok = cm->matrix[(size_t)c * (size_t)cm->classes + (size_t)c];
        const int mc = cli_confusion_most_confused(cm, c);
        pt_strbuf_puts(sb, c ? ",{\"class\":" : "{\"class\":");
        pt_strbuf_json_string(sb, names[c]);
        pt_strbuf_printf(sb, ",\"index\":%d,\"count\":%lld,\"correct\":%lld,\"accuracy\":", c, (long long)n,
                         (long long)ok);
        if (n) pt_strbuf_json_double(sb, (double)ok / (double)n);
        else pt_strbuf_puts(sb, "null");
        pt_strbuf_puts(sb, ",\"most_confused_with\":");
        if (mc >= 0) pt_strbuf_json_string(sb, names[mc]);
        else pt_strbuf_puts(sb, "null");
        pt_strbuf_putc(sb, '}');
    }
    pt_strbuf_putc(sb, ']');
}
