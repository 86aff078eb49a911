/* A run directory's own validation data: the data options `polytrain train` recorded in
 * RUN/config.json, mapped to pt_data_options as the trainer maps them, so that eval and
 * report open the very split (and the same samples) the run validated on. Reads only. */
#ifndef PT_TOOLS_RUN_DATA_H
#define PT_TOOLS_RUN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "core/json.h"
#include "polytrain/dataset.h"

typedef struct cli_run_data {
    char dir[4096];
    pt_json *config;       /* RUN/config.json, owned; the strings below point into it */
    const char *data;      /* --data */
    double val_split;      /* --val-split */
    int skip_bad;          /* --skip-bad-images */
    const char *cache;     /* --cache, or NULL */
    int no_cache;          /* --no-cache */
    int64_t limit_val;     /* --limit-val */
    int batch_per_device;  /* --batch-per-device */
    int64_t val_samples;   /* resolved.val_samples: what the run validated on (-1: not recorded) */
} cli_run_data;

/* The dataset options of train's --val-split, --skip-bad-images, --no-cache and --cache:
 * train opens its data with them, eval and report a run's validation split. */
pt_data_options cli_data_options(double val_split, int skip_bad, int no_cache, const char *cache);

/* 1 when dir holds config.json (a directory `polytrain train --out` made). */
int cli_is_run_dir(const char *dir);

/* The run directory a checkpoint directory belongs to into run: its parent when that holds
 * config.json (RUN/best, RUN/last), or the directory itself when it is a run directory;
 * 0 when it belongs to none. */
int cli_checkpoint_run_dir(const char *checkpoint, char *run, size_t cap);

/* Reads RUN/config.json. A missing file, bad JSON or an option of the wrong type is an
 * error naming the file; options older runs lack take train's defaults. */
pt_status cli_run_data_read(const char *run_dir, cli_run_data *rd, pt_error *err);
void cli_run_data_free(cli_run_data *rd);

/* Opens the run's validation split as train does: its --data, --val-split,
 * --skip-bad-images, --cache/--no-cache, and limit (the run's --limit-val unless the caller
 * passes limit >= 0), with samples of height x width (the checkpoint's input; train gives
 * validation the training set's size). */
pt_status cli_run_data_open_val(const cli_run_data *rd, int64_t limit, int height, int width, pt_dataset *ds,
                                pt_data_report *rep, pt_error *err);

/* What cli_run_data_open_val opened, in one line for the user: "SPEC, its test split, 512
 * samples (--limit-val 512)". rep and ds: what it returned. */
void cli_run_data_describe(const cli_run_data *rd, const pt_data_report *rep, const pt_dataset *ds, int64_t limit,
                           char *buf, size_t cap);

#endif
