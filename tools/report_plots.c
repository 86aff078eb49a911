/* polytrain report's plots: gnuplot/report.gp and the data it reads (epochs.dat, steps.dat,
 * confusion.dat, cells.dat, per_class*.dat, misNNN.rgb from report_samples.c), then gnuplot
 * run on it. The script stays beside its data, so 'gnuplot report.gp' in that folder draws
 * the PNGs again. Without gnuplot, everything but the PNGs is written. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "tools/gnuplot.h"
#include "tools/report_internal.h"

/* A confusion matrix with at most this many classes gets its counts printed in the
 * cells; up to REPORT_NAMED_AXES classes, its axes name every class. */
#define REPORT_CELL_TEXT 20
#define REPORT_NAMED_AXES 60
/* Per-class bars: every class up to this many, else the lowest and highest of them. */
#define REPORT_ALL_BARS 30
#define REPORT_SOME_BARS 15

/* A gnuplot double-quoted string: backslash and quote escaped, a newline as gnuplot's \n,
 * other control characters dropped. */
static void gp_string(FILE *g, const char *s)
{
    fputc('"', g);
    for (; *s; s++) {
        if (*s == '\n') fputs("\\n", g);
        if (*s == '"' || *s == '\\') fputc('\\', g);
        if ((unsigned char)*s >= 0x20) fputc(*s, g);
    }
    fputc('"', g);
}

/* A quoted string in a gnuplot data file, where a quote cannot be escaped. */
static void dat_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) fputc(*s == '"' ? '\'' : (unsigned char)*s < 0x20 ? ' ' : *s, f);
    fputc('"', f);
}

static void dat_num(FILE *f, double v, double scale)
{
    if (isfinite(v)) fprintf(f, " %.8g", v * scale);
    else fputs(" ?", f);
}

static FILE *open_dat(const char *dir, const char *name, pt_error *err)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) pt_fail(err, PT_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    return f;
}

static pt_status close_dat(FILE *f, const char *dir, const char *name, pt_error *err)
{
    if (fclose(f) != 0) return pt_fail(err, PT_ERR_IO, "cannot write '%s/%s'", dir, name);
    return PT_OK;
}

static pt_status write_curves_data(const report_ctx *r, const char *dir, pt_error *err)
{
    FILE *f = open_dat(dir, "epochs.dat", err);
    if (!f) return err->status;
    fprintf(f, "# epoch train_loss val_loss train_acc%% val_top1%% val_top5%% lr\n");
    for (int i = 0; i < r->nepochs; i++) {
        const report_epoch *e = &r->epochs[i];
        fprintf(f, "%lld", (long long)e->epoch);
        dat_num(f, e->train_loss, 1);
        dat_num(f, e->val_loss, 1);
        dat_num(f, e->train_acc, 100);
        dat_num(f, e->val_top1, 100);
        dat_num(f, e->val_top5, 100);
        dat_num(f, e->lr, 1);
        fputc('\n', f);
    }
    PT_TRY(close_dat(f, dir, "epochs.dat", err));
    if (!r->nsteps) return PT_OK;
    if (!(f = open_dat(dir, "steps.dat", err))) return err->status;
    /* x in epochs: step s ends at (s + 1) / steps per epoch */
    fprintf(f, "# epoch (fractional) loss lr\n");
    for (int64_t i = 0; i < r->nsteps; i++) {
        fprintf(f, "%.6f", (double)(r->steps[i].step + 1) / (double)r->steps_per_epoch);
        dat_num(f, r->steps[i].loss, 1);
        dat_num(f, r->steps[i].lr, 1);
        fputc('\n', f);
    }
    return close_dat(f, dir, "steps.dat", err);
}

/* A run without metrics.jsonl (deleted, or from before it was written): empty frames that
 * say so, rather than a gnuplot error about a file without data. */
static void plot_no_curves(FILE *g)
{
    static const char *const files[] = {"loss", "accuracy", "lr"};
    for (int i = 0; i < 3; i++)
        fprintf(g, "reset\nset output \"../%s.png\"\nset title \"%s: the run has no metrics.jsonl\"\n"
                   "set xrange [0:1]\nset yrange [0:1]\nplot NaN notitle\n",
                files[i], files[i]);
}

static void plot_curves(const report_ctx *r, FILE *g)
{
    if (!r->nepochs) {
        plot_no_curves(g);
        return;
    }
    double xmax = 1, lo = INFINITY, hi = 0;
    for (int i = 0; i < r->nepochs; i++) {
        if (r->epochs[i].epoch > xmax) xmax = (double)r->epochs[i].epoch;
        const double v[2] = {r->epochs[i].train_loss, r->epochs[i].val_loss};
        for (int k = 0; k < 2; k++)
            if (v[k] > 0 && isfinite(v[k])) lo = fmin(lo, v[k]), hi = fmax(hi, v[k]);
    }
    for (int64_t i = 0; i < r->nsteps; i++) {
        const double v = r->steps[i].loss;
        if (v > 0 && isfinite(v)) lo = fmin(lo, v), hi = fmax(hi, v);
    }
    const int steps = r->nsteps > 0;
    /* the key below the plot, where it hides no point (a last epoch's sits at the right edge) */
    const char *common = "reset\nset datafile missing \"?\"\nset grid\nset key below horizontal\nset xlabel \"epoch\"\n"
                         "set pointsize 1.3\n";
    /* loss: log scale once it spans more than a decade and a half, which a linear axis
     * would flatten to a line at zero */
    fprintf(g, "%sset xrange [0:%g]\n", common, xmax * 1.02 + 0.05);
    if (xmax <= 20) fprintf(g, "set xtics 1\n");
    fprintf(g, "set output \"../loss.png\"\nset title \"loss\"\nset ylabel \"loss%s\"\n%s", lo > 0 && hi / lo > 30 ? " (log scale)" : "",
            lo > 0 && hi / lo > 30 ? "set logscale y\n" : "");
    fprintf(g, "plot ");
    if (steps) fprintf(g, "\"steps.dat\" using 1:2 with lines lw 1 lc rgb \"#9ecae1\" title \"training loss per step\", \\\n     ");
    fprintf(g, "\"epochs.dat\" using 1:2 with linespoints pt 7 lw 2 lc rgb \"#1f77b4\" title \"training loss (epoch mean)\", \\\n"
               "     \"epochs.dat\" using 1:3 with linespoints pt 5 lw 2 lc rgb \"#d62728\" title \"validation loss\"\n");
    fprintf(g, "%sset xrange [0:%g]\n", common, xmax * 1.02 + 0.05);
    if (xmax <= 20) fprintf(g, "set xtics 1\n");
    fprintf(g, "set output \"../accuracy.png\"\nset title \"accuracy\"\nset ylabel \"%%\"\nset yrange [*:100.5]\n"
               "plot \"epochs.dat\" using 1:4 with linespoints pt 7 lw 2 lc rgb \"#1f77b4\" title \"training accuracy\", \\\n"
               "     \"epochs.dat\" using 1:5 with linespoints pt 5 lw 2 lc rgb \"#d62728\" title \"validation top-1\", \\\n"
               "     \"epochs.dat\" using 1:6 with linespoints pt 9 lw 2 lc rgb \"#2ca02c\" title \"validation top-5\"\n");
    fprintf(g, "%sset xrange [0:%g]\n", common, xmax * 1.02 + 0.05);
    if (xmax <= 20) fprintf(g, "set xtics 1\n");
    fprintf(g, "set output \"../lr.png\"\nset title \"learning rate (%s)\"\nset ylabel \"learning rate\"\n"
               "set format y \"%%g\"\nset yrange [0:*]\nunset key\n",
            steps ? "per step" : "per epoch, at its end");
    if (steps) fprintf(g, "plot \"steps.dat\" using 1:3 with lines lw 2 lc rgb \"#9467bd\"\n");
    else fprintf(g, "plot \"epochs.dat\" using 1:7 with linespoints pt 7 lw 2 lc rgb \"#9467bd\"\n");
}

static pt_status write_confusion_data(const report_ctx *r, const char *dir, pt_error *err)
{
    const int K = r->classes;
    FILE *f = open_dat(dir, "confusion.dat", err);
    if (!f) return err->status;
    /* colour: the share of the true class (rows differ in size); text: the counts */
    for (int t = 0; t < K; t++) {
        const int64_t n = cli_confusion_row_count(&r->cm, t);
        for (int p = 0; p < K; p++)
            fprintf(f, "%s%.4f", p ? " " : "",
                    n ? 100.0 * (double)r->cm.matrix[(size_t)t * K + p] / (double)n : 0.0);
        fputc('\n', f);
    }
    PT_TRY(close_dat(f, dir, "confusion.dat", err));
    if (!(f = open_dat(dir, "cells.dat", err))) return err->status;
    fprintf(f, "# predicted true count colour\n");
    if (K <= REPORT_CELL_TEXT)
        for (int t = 0; t < K; t++) {
            const int64_t n = cli_confusion_row_count(&r->cm, t);
            for (int p = 0; p < K; p++) {
                const int64_t v = r->cm.matrix[(size_t)t * K + p];
                if (v) fprintf(f, "%d %d %lld %d\n", p, t, (long long)v, n && 2 * v > n ? 0xffffff : 0x202020);
            }
        }
    return close_dat(f, dir, "cells.dat", err);
}

static void class_tics(const report_ctx *r, FILE *g, const char *axis)
{
    fprintf(g, "set %s (", axis);
    for (int c = 0; c < r->classes; c++) {
        if (c) fputs(", ", g);
        gp_string(g, r->names[c]);
        fprintf(g, " %d", c);
    }
    fprintf(g, ")\n");
}

static void plot_confusion(const report_ctx *r, FILE *g)
{
    const int K = r->classes;
    const int px = K <= REPORT_CELL_TEXT ? 900 : K <= REPORT_NAMED_AXES ? 1100 : 1000;
    fprintf(g, "reset\nset terminal pngcairo size %d,%d noenhanced font \"sans,11\"\nset output \"../confusion.png\"\n",
            px + 120, px);
    fprintf(g, "set title ");
    char title[300];
    snprintf(title, sizeof title, "confusion matrix, %s on %lld validation samples (top-1 %.2f%%)",
             r->checkpoint_note, (long long)r->res.count, 100 * r->res.top1);
    gp_string(g, title);
    fprintf(g, "\nunset key\nset size ratio -1\nset xrange [-0.5:%g]\nset yrange [%g:-0.5]\n"
               "set palette defined (0 \"#ffffff\", 0.5 \"#6baed6\", 1 \"#08306b\")\nset cbrange [0:100]\n"
               "set cblabel \"%% of the true class\"\nset tics nomirror out\n",
            K - 0.5, K - 0.5);
    if (K <= REPORT_NAMED_AXES) {
        if (K > REPORT_CELL_TEXT) fprintf(g, "set tics font \"sans,7\"\n");
        class_tics(r, g, "xtics");
        class_tics(r, g, "ytics");
        fprintf(g, "set xtics rotate by 45 right\nset xlabel \"predicted class\"\nset ylabel \"true class\"\n");
    } else {
        /* too many names to read: class indices, the row order of per_class.csv */
        const int step = K <= 100 ? 10 : K <= 400 ? 20 : 50;
        fprintf(g, "set xtics 0,%d\nset ytics 0,%d\nset xlabel \"predicted class (index: row of per_class.csv, from 0)\"\n"
                   "set ylabel \"true class (index)\"\n",
                step, step);
    }
    fprintf(g, "plot \"confusion.dat\" matrix with image");
    if (K <= REPORT_CELL_TEXT)
        fprintf(g, ", \\\n     \"cells.dat\" using 1:2:3:4 with labels tc rgb variable font \"sans,%d\"", K <= 12 ? 11 : 8);
    fputc('\n', g);
}

static int by_accuracy_ctx_cmp(const report_ctx *r, int a, int b)
{
    const int64_t na = cli_confusion_row_count(&r->cm, a), nb = cli_confusion_row_count(&r->cm, b);
    const double aa = na ? (double)r->cm.matrix[(size_t)a * r->classes + a] / (double)na : -1;
    const double ab = nb ? (double)r->cm.matrix[(size_t)b * r->classes + b] / (double)nb : -1;
    if (aa != ab) return aa < ab ? -1 : 1;
    return a - b;
}

static pt_status write_bars(const report_ctx *r, const char *dir, const char *name, const int *cls, int n,
                            pt_error *err)
{
    FILE *f = open_dat(dir, name, err);
    if (!f) return err->status;
    fprintf(f, "# index \"class\" accuracy%%\n");
    for (int i = 0; i < n; i++) {
        const int c = cls[i];
        const int64_t cnt = cli_confusion_row_count(&r->cm, c);
        fprintf(f, "%d ", c);
        dat_string(f, r->names[c]);
        dat_num(f, cnt ? (double)r->cm.matrix[(size_t)c * r->classes + c] / (double)cnt : NAN, 100);
        fputc('\n', f);
    }
    return close_dat(f, dir, name, err);
}

static pt_status per_class(const report_ctx *r, const char *dir, FILE *g, pt_error *err)
{
    const int K = r->classes;
    int *order = malloc((size_t)K * sizeof *order);
    if (!order) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    for (int c = 0; c < K; c++) order[c] = c;
    const char *bars = "set style fill solid 0.85 border -1\nset boxwidth 0.8\nset yrange [0:109]\n"
                       "set ylabel \"accuracy %\"\nset xtics rotate by 45 right nomirror\nunset key\nset grid ytics\n"
                       /* room for the first class's name, slanted down to the left */
                       "set lmargin 14\n";
    pt_status st;
    if (K <= REPORT_ALL_BARS) {
        st = write_bars(r, dir, "per_class.dat", order, K, err);
        fprintf(g, "reset\nset terminal pngcairo size 1000,560 noenhanced font \"sans,11\"\nset output \"../per_class.png\"\n"
                   "set title \"validation accuracy per class\"\n%sset xrange [-0.6:%g]\n"
                   "plot \"per_class.dat\" using 0:3:xtic(2) with boxes lc rgb \"#1f77b4\", \\\n"
                   "     \"\" using 0:($3 + 3):(sprintf(\"%%.1f\", $3)) with labels font \"sans,9\"\n",
                bars, K - 0.4);
    } else {
        /* insertion sort: K is a few hundred at most */
        for (int i = 1; i < K; i++)
            for (int j = i; j > 0 && by_accuracy_ctx_cmp(r, order[j - 1], order[j]) > 0; j--) {
                int t = order[j];
                order[j] = order[j - 1];
                order[j - 1] = t;
            }
        st = write_bars(r, dir, "per_class_low.dat", order, REPORT_SOME_BARS, err);
        int high[REPORT_SOME_BARS]; /* the best first */
        for (int i = 0; i < REPORT_SOME_BARS; i++) high[i] = order[K - 1 - i];
        if (st == PT_OK) st = write_bars(r, dir, "per_class_high.dat", high, REPORT_SOME_BARS, err);
        fprintf(g, "reset\nset terminal pngcairo size 1400,600 noenhanced font \"sans,10\"\nset output \"../per_class.png\"\n"
                   "set multiplot layout 1,2 title \"validation accuracy per class: the %d lowest and the %d highest of %d\"\n"
                   "%sset xrange [-0.6:%g]\n"
                   "set title \"lowest\"\nplot \"per_class_low.dat\" using 0:3:xtic(2) with boxes lc rgb \"#d62728\", \\\n"
                   "     \"\" using 0:($3 + 3):(sprintf(\"%%.0f\", $3)) with labels font \"sans,8\"\n"
                   "set title \"highest\"\nplot \"per_class_high.dat\" using 0:3:xtic(2) with boxes lc rgb \"#2ca02c\", \\\n"
                   "     \"\" using 0:($3 + 3):(sprintf(\"%%.0f\", $3)) with labels font \"sans,8\"\nunset multiplot\n",
                REPORT_SOME_BARS, REPORT_SOME_BARS, K, bars, REPORT_SOME_BARS - 0.4);
    }
    free(order);
    return st;
}

static void plot_mistakes(const report_ctx *r, FILE *g)
{
    if (!r->nmistakes) return;
    const int n = r->nmistakes;
    int cols = 1;
    while (cols * cols < n) cols++;
    if (cols > 8) cols = 8;
    const int rows = (n + cols - 1) / cols;
    const int W = r->ds.width, H = r->ds.height;
    /* room above the grid for its title, and above each image for two lines of caption */
    const int height = rows * 215 + 85;
    fprintf(g, "reset\nset terminal pngcairo size %d,%d noenhanced font \"sans,9\"\nset output \"../misclassified.png\"\n",
            cols * 190, height);
    char title[200];
    snprintf(title, sizeof title, "the %d most confident of %lld misclassified validation images", n,
             (long long)r->wrong);
    fprintf(g, "set multiplot layout %d,%d margins 0.01,0.99,0.01,%.4f spacing 0.02,%.4f title ", rows, cols,
            1 - 85.0 / height, 40.0 / height);
    gp_string(g, title);
    fprintf(g, " font \"sans,12\"\nunset key\nunset border\nunset tics\nunset colorbox\nset size ratio -1\n"
               "set xrange [-0.5:%g]\nset yrange [-0.5:%g]\n",
            W - 0.5, H - 0.5);
    for (int k = 0; k < n; k++) {
        const report_mistake *mk = &r->mistakes[k];
        char cap[300];
        snprintf(cap, sizeof cap, "true: %.60s\npredicted: %.60s (%.0f%%)", r->names[mk->truth], r->names[mk->predicted],
                 100.0 * mk->prob);
        fprintf(g, "set title ");
        gp_string(g, cap);
        fprintf(g, "\nplot \"mis%03d.rgb\" binary array=(%d,%d) flipy format=\"%%uchar%%uchar%%uchar\" with rgbimage\n",
                k, W, H);
    }
    fprintf(g, "unset multiplot\n");
}

pt_status report_write_plots(report_ctx *r, pt_error *err)
{
    char dir[4300], path[4400];
    snprintf(dir, sizeof dir, "%s/gnuplot", r->tmp);
    PT_TRY(pt_mkdir_p(dir, err));
    PT_TRY(write_curves_data(r, dir, err));
    PT_TRY(write_confusion_data(r, dir, err));
    snprintf(path, sizeof path, "%s/report.gp", dir);
    FILE *g = fopen(path, "w");
    if (!g) return pt_fail(err, PT_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    fprintf(g, "# gnuplot script written by polytrain report; 'gnuplot report.gp' in this folder draws the\n"
               "# report's PNG files (in the folder above) again from the data beside it.\n");
    fprintf(g, "set terminal pngcairo size 1000,560 noenhanced font \"sans,11\"\n");
    plot_curves(r, g);
    plot_confusion(r, g);
    pt_status st = per_class(r, dir, g, err);
    plot_mistakes(r, g);
    fprintf(g, "unset output\n");
    if (fclose(g) != 0 && st == PT_OK) st = pt_fail(err, PT_ERR_IO, "cannot write '%s'", path);
    if (st != PT_OK) return st;
    if (r->plots_missing[0]) return PT_OK;
    PT_TRY(cli_gnuplot_run(dir, "report.gp", err));
    r->plots = 1;
    return PT_OK;
}
