/* Training presets and experiment suites, written in `polytrain train` option names:
 * a preset is a list of options that `train --preset NAME` puts before the user's own (so
 * explicit options win); a suite is a set of runs that differ in one factor, each run a
 * list of options on top of the suite's base. tools/cmd_experiment.c runs suites. */
#ifndef PT_TOOLS_EXPERIMENTS_H
#define PT_TOOLS_EXPERIMENTS_H

typedef struct xp_preset {
    const char *name;
    const char *summary;
    const char *const *options; /* NULL-terminated argv fragment: "--model", "se_resnet18", ... */
} xp_preset;

typedef struct xp_run {
    const char *name;            /* the run's directory and its row in the table */
    const char *const *options;  /* NULL-terminated argv fragment on top of the suite's base */
} xp_run;

#define XP_MAX_RUNS 12

typedef struct xp_suite {
    const char *name;
    const char *summary;         /* what the runs compare */
    const char *factor;          /* the table's column for what differs: "model", "optimizer" */
    const char *const *base;     /* NULL-terminated options every run shares */
    xp_run runs[XP_MAX_RUNS];    /* ends at name == NULL */
} xp_suite;

/* NULL-terminated tables and lookups (NULL when unknown). */
const xp_preset *xp_presets(void);
const xp_preset *xp_preset_find(const char *name);
const xp_suite *xp_suites(void);
const xp_suite *xp_suite_find(const char *name);
int xp_suite_run_count(const xp_suite *s);

/* "a, b, c": the known names, for error messages. */
void xp_preset_names(char *buf, unsigned long cap);
void xp_suite_names(char *buf, unsigned long cap);

/* Expands `--preset NAME` in argv: *out_argv becomes the preset's options followed by argv
 * (a new array to free(); argv itself when there is no --preset). Returns 0, or 2 with an
 * error printed (unknown preset, missing value) prefixed with cmd. */
int xp_expand_preset(const char *cmd, int argc, char **argv, int *out_argc, char ***out_argv);

#endif
