/* Per-class results of a classifier on a labelled dataset: the confusion matrix (rows the
 * true class, columns the predicted one), each sample's prediction and its probability,
 * and the CSV, text and JSON forms eval and report print and write. Never reads a model. */
#ifndef PT_TOOLS_CONFUSION_H
#define PT_TOOLS_CONFUSION_H

#include <stdint.h>
#include <stdio.h>

#include "core/json.h"

typedef struct cli_confusion {
    int classes;
    int64_t count, correct;
    int64_t *matrix;    /* [classes][classes]: matrix[t * classes + p] samples of class t predicted p */
    int32_t *predicted; /* [count] */
    float *prob;        /* [count]: the softmax probability of the predicted class */
} cli_confusion;

/* From logits [n, classes] and labels [n]. The prediction is the first of the largest
 * logits, the rule top-1 accuracy uses (core/metrics.c), so that the diagonal's sum is
 * top-1 x count (rows with NaN logits, which top-1 never counts, aside). */
pt_status cli_confusion_compute(const float *logits, const int32_t *labels, int64_t n, int classes,
                                cli_confusion *cm, pt_error *err);
void cli_confusion_free(cli_confusion *cm);

/* Row c: its samples and how many were right. */
int64_t cli_confusion_row_count(const cli_confusion *cm, int c);
/* The class that samples of class c were most often taken for (ties: the lowest index),
 * -1 when none was wrong. */
int cli_confusion_most_confused(const cli_confusion *cm, int c);

/* names[c] for c < classes. CSV fields are quoted when they need it. */
pt_status cli_confusion_write_csv(const char *path, const cli_confusion *cm, const char *const *names,
                                  pt_error *err);
/* class,count,correct,accuracy,most_confused_with,most_confused_count */
pt_status cli_per_class_write_csv(const char *path, const cli_confusion *cm, const char *const *names,
                                  pt_error *err);
/* An aligned table, one line per class. */
void cli_per_class_print(FILE *f, const cli_confusion *cm, const char *const *names);
/* A JSON array of {"class","index","count","correct","accuracy","most_confused_with"}. */
void cli_per_class_json(pt_strbuf *sb, const cli_confusion *cm, const char *const *names);

#endif
