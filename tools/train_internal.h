/* The parts of polytrain train, shared by its files only: the options and what they
 * resolve to (train_options.c), the session built from them (train_session.c) and what a
 * run prints (train_report.c); tools/cmd_train.c runs them in that order. */
#ifndef PT_TOOLS_TRAIN_INTERNAL_H
#define PT_TOOLS_TRAIN_INTERNAL_H

#include <stdint.h>

#include "core/fileio.h"
#include "core/json.h"
#include "polytrain/trainer.h"
#include "polytrain/world.h"
#include "polytrain/dataset.h"
#include "polytrain/loader.h"
#include "tools/args.h"
#include "tools/progress.h"
#include "tools/session.h"

/* ---- options (train_options.c) ---- */

typedef struct train_args {
    const char *data, *model, *backend, *devices, *optimizer, *schedule, *augment, *out, *resume;
    const char *cache, *preset, *precision;
    const char *cuda_graphs, *pinned_input; /* --cuda-graphs, --pinned-input: auto, on, off */
    const char *fuse;      /* --fuse on|off */
    const char *act_storage; /* --act-storage auto|fp32 */
    const char *layout;      /* --layout auto|nchw|nhwc */
    const char *fit_workspace; /* --fit-workspace on|off */
    const char *config;    /* --config FILE */
    const char *trace;     /* --trace FILE */
    int64_t trace_step;    /* --trace-step N; -1: the run's third step */
    int given_trace, given_trace_step;
    int skip_bad, no_cache, loader_threads;
    double val_split;
    int epochs, batch, nesterov, deterministic, threads, no_progress, stop_after;
    int no_decay_bn_bias, cycle_momentum, log_steps, centered, lr_batch;
    int sync_bn, scale_lr, check_replicas, given_warmup, given_batch, given_check;
    double lr, momentum, weight_decay, warmup_epochs, step_epochs, gamma, label_smoothing;
    double beta1, beta2, eps, alpha;
    uint64_t seed;
    int64_t limit_train, limit_val;
    int64_t save_every_steps; /* --save-every-steps N (0: at epochs' ends only) */
    int64_t log_every;        /* --log-every N steps (0: automatic) */
    double clip_grad_norm;    /* --clip-grad-norm F (0: off) */
    int accumulate;           /* --accumulate N (1: off) */
    double ema;               /* --ema DECAY (0: off) */
    int patience;             /* --patience N (0: off) */
    double min_delta;         /* --min-delta F */
    int given_log_every;
    int given_nesterov, given_cycle, given_out, given_resume, given_stop, given_progress, given_wd;
    int given_momentum, given_preset, given_precision;
    int allow_changes, overwrite, given_allow, given_overwrite;
    const char *init_from; /* --init-from FILE|DIR: pretrained weights at the start */
    int reset_head, given_init_from, given_reset_head;
} train_args;

#define TRAIN_MAX_OPTIONS 80

/* The option table points into args, so a train_options stays where it was parsed. */
typedef struct train_options {
    train_args args;                    /* as given, then resolved in place */
    pt_optim_kind optim;                /* resolved (train_options_resolve) */
    pt_schedule_kind schedule;
    pt_precision precision;
    pt_switch graphs, pinned_input;     /* --cuda-graphs, --pinned-input */
    int fuse_relu;                      /* --fuse on (1) or off (0) */
    pt_act_storage act_storage;         /* --act-storage */
    pt_image_layout layout;             /* --layout */
    int fit_workspace;                  /* --fit-workspace on (1) or off (0) */
    char resumed_precision[8];          /* --resume: the precision the run was trained in so far */
    char resume_changes[2048];          /* --resume --allow-changes: {"option":[saved, new], ...} */
    char default_out[256];              /* args.out when --out was not given */
    arg_spec specs[TRAIN_MAX_OPTIONS];
    int given[TRAIN_MAX_OPTIONS];       /* one flag per spec (resume) */
    arg_command cmd;
} train_options;

/* The defaults, then argv. Returns args_parse's 0, 1 (--help printed) or 2 (usage error). */
int train_options_parse(train_options *o, int argc, char **argv);
/* --resume DIR: the options not given again come from DIR/config.json (*resume_cfg keeps
 * their strings alive; NULL without --resume). Returns 0, 2 on a usage error or 1 when the
 * saved configuration is unreadable, with the message printed. */
int train_options_resume(train_options *o, pt_json **resume_cfg);
/* --config FILE: the options not given on the command line come from FILE, a config.json
 * of a run or its "options" object alone (*tree keeps their strings alive; NULL without
 * --config). Returns 0, 2 on a usage error (unknown keys, with --resume) or 1 when the file
 * is unreadable, with the message printed. */
int train_options_config(train_options *o, pt_json **tree);
/* Checks the names (backend, optimizer, schedule, augmentation, model) and settles the
 * defaults that depend on others and the run directory. Returns 0 or 2 (message printed). */
int train_options_resolve(train_options *o);
/* The optimizer's configuration. Returns 0 or 2 (message printed). */
int train_options_optim(const train_options *o, pt_optim_config *oc);
/* The learning rate in effect for a global batch (--lr-batch, --scale-lr and its warmup). */
pt_status train_options_lr(train_options *o, int64_t global_batch, double *lr, pt_error *err);

/* ---- the session (train_session.c) ---- */

/* Everything a run holds; train_session_free releases what was built, also after a
 * failure part way. */
typedef struct train_session {
    pt_dataset train_ds, val_ds;
    pt_device *devs[CLI_MAX_DEVICES];
    int ndev;
    pt_net *net;
    pt_replica *reps[CLI_MAX_DEVICES];
    pt_loader train_ld, val_ld;
    pt_trainer *trainer;
    pt_strbuf cfg;        /* config.json */
    pt_model_meta meta;
    int procs;            /* MPI processes */
    int capacity;         /* samples per device per step, at most */
    int rank_batch;       /* samples per step in this process */
    int64_t global_batch;
    double lr;            /* in effect */
    char precision_how[160]; /* how the devices compute in the run's precision */
    int loader_threads;   /* the training loader's workers, resolved */
    char loader_why[96];  /* how that number was chosen */
    char init_what[8600]; /* --init-from: what was loaded (pt_init_result_describe) */
    pt_strbuf init_detail; /* --init-from that does not fit: every mismatch, a line per kind */
    struct pt_run_lock *lock; /* rank 0: the run directory's lock, from before it is touched */
    /* rank 0: the directories this run made for --out (none when it existed): a run that
     * fails before writing anything there removes them again rather than leave only the lock */
    pt_made_dirs made_out;
} train_session;

/* Returns 0, 1 with the failure in *err, or 2 on a usage error (message printed). */
int train_session_build(train_session *s, train_options *o, const pt_json *resume_cfg, pt_world *world,
                        pt_error *err);
void train_session_free(train_session *s);

/* ---- what a run prints (train_report.c) ---- */

double train_wall_s(void);
void train_on_pack_progress(void *user, int64_t done, int64_t total);
void train_print_data_report(const char *split, const pt_dataset *ds, const pt_data_report *r);
void train_print_kept_batch(int ndev, int procs, int64_t global_batch, int capacity);
void train_print_banner(const train_session *s, const train_options *o);
void train_print_summary(const pt_trainer *trainer, const train_args *a);

/* The live view while the trainer runs: a progress bar on a terminal, the time to the
 * first step and a line per epoch. */
typedef struct run_ui {
    cli_progress bar;
    /* plain lines (stdout not a terminal, or --log-every): every log_every steps, or about
     * every 30 s when log_every is 0 */
    int lines;
    int64_t log_every;
    double interval_s;                   /* automatic lines: seconds between them */
    double last_line;
    int64_t steps_per_epoch, run_steps;  /* the run's last step + 1 (its --epochs) */
    int64_t first_step;                  /* the global step this run started at */
    double run_t0;                       /* when the first step of this run started */
    double epoch_t0;                     /* when this epoch's first step (in this run) started */
    int64_t epoch_first_step;
    double eval_s;                       /* the last evaluation's seconds (for the ETA) */
    double eval_t0, eval_line, eval_total;
    int64_t last_step;                   /* the last global step done */
    double step_loss;
    int epochs;
    double start;  /* when the command started */
    int first_done;
    const pt_trainer *trainer;
} run_ui;

pt_train_callbacks train_ui_init(run_ui *ui, const train_args *a, double start, const pt_trainer *trainer);

#endif
