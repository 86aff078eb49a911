/* polytrain report's parts: what the command gathers about a run (its records, the
 * checkpoint's evaluation on the run's validation data, the chosen mistakes) and the
 * writers of its files (report_plots.c, report_samples.c, report_html.c). Internal to
 * the report command. */
#ifndef PT_TOOLS_REPORT_INTERNAL_H
#define PT_TOOLS_REPORT_INTERNAL_H

#include <stdint.h>

#include "core/json.h"
#include "polytrain/trainer.h"
#include "polytrain/dataset.h"
#include "tools/common.h"
#include "tools/confusion.h"
#include "tools/run_data.h"

/* One line of metrics.jsonl (NaN where a value is missing). */
typedef struct report_epoch {
    int64_t epoch;
    double train_loss, train_acc, val_loss, val_top1, val_top5, lr, elapsed_s, img_per_s;
    int64_t val_count;
    int best;
} report_epoch;

/* One line of steps.jsonl. */
typedef struct report_step {
    int64_t step, epoch;
    double loss, lr;
} report_step;

/* A misclassified validation sample shown in the report. */
typedef struct report_mistake {
    int64_t index;      /* in the validation set's order */
    int truth, predicted;
    float prob;         /* the predicted class's probability */
    char png[64];       /* its image, relative to the report directory */
} report_mistake;

typedef struct report_ctx {
    const char *run;            /* RUN as given */
    char checkpoint[4200];      /* the checkpoint directory evaluated */
    char checkpoint_note[128];  /* e.g. "best/ (epoch 3)" */
    int64_t checkpoint_epoch;   /* from metrics.jsonl, -1 when unknown */
    cli_run_data rd;
    cli_model m;
    pt_dataset ds;
    char data_desc[1400];
    pt_eval_result res;
    float *logits;
    cli_confusion cm;
    char **names;               /* [classes] */
    int classes;

    report_epoch *epochs;
    int nepochs;
    report_step *steps;
    int64_t nsteps;
    int64_t steps_per_epoch;    /* steps of the first logged epoch (0: no steps) */

    report_mistake *mistakes;
    int nmistakes;
    int64_t wrong;              /* misclassified samples in all */
    int scale;                  /* nearest-neighbour upscaling of the sample images */

    const char *out;            /* the final report directory */
    char tmp[4200];             /* where it is written first */
    int plots;                  /* 1 when gnuplot drew the PNG plots */
    char plots_missing[256];    /* why not, for the page and report.json */
} report_ctx;

/* The line of metrics.jsonl for epoch e, or NULL. */
const report_epoch *report_find_epoch(const report_ctx *r, int64_t e);

/* report_samples.c: chooses the max most confident mistakes and writes each as
 * TMP/misclassified/NNN.png (upscaled) and, for gnuplot, TMP/gnuplot/misNNN.rgb. */
pt_status report_write_samples(report_ctx *r, int max, pt_error *err);

/* report_plots.c: TMP/gnuplot/ (report.gp and its data), then gnuplot draws loss.png,
 * accuracy.png, lr.png, confusion.png, per_class.png and misclassified.png. Without
 * gnuplot only the script and data are written and r->plots_missing says why. */
pt_status report_write_plots(report_ctx *r, pt_error *err);

/* report_html.c: TMP/index.html. */
pt_status report_write_html(const report_ctx *r, pt_error *err);

#endif
