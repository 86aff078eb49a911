/* polytrain train: datasets, model, devices and replicas from the options, then the
 * core trainer with a banner, a progress bar on a terminal and a line per epoch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm/mpi_world.h"
#include "core/fileio.h"
#include "core/group.h"
#include "core/json.h"
#include "core/trainer.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/source.h"
#include "models/models.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/experiments.h"
#include "tools/progress.h"
#include "tools/session.h"

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

typedef struct train_args {
    const char *data, *model, *backend, *devices, *optimizer, *schedule, *augment, *out, *resume;
    const char *cache, *preset;
    int skip_bad, no_cache, loader_threads;
    double val_split;
    int epochs, batch, nesterov, deterministic, threads, no_progress, stop_after;
    int no_decay_bn_bias, cycle_momentum, log_steps, centered, lr_batch;
    int sync_bn, scale_lr, check_replicas, given_warmup, given_batch, given_check;
    double lr, momentum, weight_decay, warmup_epochs, step_epochs, gamma, label_smoothing;
    double beta1, beta2, eps, alpha;
    uint64_t seed;
    int64_t limit_train, limit_val;
    int given_nesterov, given_cycle, given_out, given_resume, given_stop, given_progress, given_wd;
    int given_momentum, given_preset;
} train_args;

typedef struct run_ui {
    cli_progress bar;
    const pt_loader *train_ld; /* for the time spent waiting for data */
    double waited;
    int epochs;
    double start;  /* when the command started */
    int first_done;
} run_ui;

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Time to first step: everything a user waits for before training runs (data, device
 * setup and kernel builds, the first step with its library warm-ups). */
static void on_step(void *user, int64_t step, int64_t epoch, double loss, double lr)
{
    run_ui *ui = user;
    (void)epoch;
    if (ui->first_done) return;
    ui->first_done = 1;
    cli_progress_clear(&ui->bar);
    printf("first step %lld done %.2f s after start (loss %.4f, lr %.3g)\n", (long long)step, wall_s() - ui->start,
           loss, lr);
    fflush(stdout);
}

static void on_batch(void *user, int64_t epoch, int64_t batch, int64_t batches, double loss,
                     double acc, double ips)
{
    run_ui *ui = user;
    cli_progress_update(&ui->bar, epoch, ui->epochs, batch, batches, loss, acc, ips);
}

static void on_epoch(void *user, const pt_epoch_metrics *m)
{
    run_ui *ui = user;
    cli_progress_clear(&ui->bar);
    double waited = ui->train_ld ? pt_loader_wait_seconds(ui->train_ld) : 0;
    printf("epoch %lld/%d  train loss %.4f acc %.2f%%  val loss %.4f top1 %.2f%% top5 %.2f%%  "
           "%.0f img/s  %.1fs (data wait %.1fs)%s\n",
           (long long)m->epoch, ui->epochs, m->train_loss, 100 * m->train_acc, m->val_loss,
           100 * m->val_top1, 100 * m->val_top5, m->img_per_s, m->epoch_s, waited - ui->waited,
           m->best ? "  *best" : "");
    ui->waited = waited;
    fflush(stdout);
}

static int should_stop(void *user)
{
    (void)user;
    return cli_interrupted();
}

/* Packing progress while train builds a dataset cache (terminal only). */
static void on_pack_progress(void *user, int64_t done, int64_t total)
{
    double *last = user;
    if (!isatty(2)) return;
    double t = wall_s();
    if (t - *last < 0.2 && done < total) return;
    *last = t;
    fprintf(stderr, "\rpacking dataset cache: %lld/%lld images%s", (long long)done, (long long)total,
            done >= total ? "\n" : "");
    fflush(stderr);
}

static void print_data_report(const char *split, const pt_dataset *ds, const pt_data_report *r)
{
    static const char *const action[] = {"", "reused", "built", "rebuilt"};
    if (r->cache_action)
        printf("data: %s cache %s %s%s%s (%.1f s)\n", split, r->cache_path, action[r->cache_action],
               r->cache_action == 3 ? ": " : "", r->cache_action == 3 ? r->rebuild_reason : "", r->pack_s);
    if (r->gray || r->skipped)
        printf("data: %s: %lld of %lld images were grayscale (converted to RGB), %lld unreadable skipped\n",
               split, (long long)r->gray, (long long)ds->count, (long long)r->skipped);
}

/* Options not given again come from DIR/config.json; *tree keeps their strings alive. */
static int load_resume_config(const arg_command *cmd, const char *dir, pt_json **tree)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    void *text = NULL;
    size_t size = 0;
    pt_error err;
    pt_error_clear(&err);
    if (pt_read_file(path, (size_t)1 << 20, &text, &size, &err) != PT_OK) {
        cli_error("train: --resume %s: %s", dir, err.msg);
        return 1;
    }
    pt_json *js = NULL;
    int rc = 0;
    if (pt_json_parse(text, size, NULL, &js, &err) != PT_OK || js->type != PT_JSON_OBJECT) {
        cli_error("train: --resume: '%s' is not a JSON object: %s", path, err.msg);
        rc = 1;
    } else {
        const pt_json *opts = pt_json_get(js, "options");
        if (!opts || opts->type != PT_JSON_OBJECT) {
            cli_error("train: --resume: '%s' has no \"options\" object", path);
            rc = 1;
        } else if (args_apply_json(cmd, opts)) {
            cli_error("train: --resume: bad option value in '%s'", path);
            rc = 1;
        }
    }
    if (rc) pt_json_free(js);
    else *tree = js;
    free(text);
    return rc;
}

static int train_main(train_args *ap, const arg_command *cmdp, const pt_json *resume_cfg, pt_world *world,
                      pt_error *outcome);
static int train_parse_and_run(int argc, char **argv, pt_error *outcome);

int cmd_train(int argc, char **argv) { return cli_train(argc, argv, NULL); }

int cli_train(int argc, char **argv, pt_error *outcome)
{
    if (outcome) pt_error_clear(outcome);
    char **full = argv;
    int rc = xp_expand_preset("train", argc, argv, &argc, &full);
    if (rc) return rc;
    rc = train_parse_and_run(argc, full, outcome);
    if (full != argv) free(full);
    return rc;
}

static int train_parse_and_run(int argc, char **argv, pt_error *outcome)
{
    train_args a;
    memset(&a, 0, sizeof a);
    a.data = DEFAULT_DATA;
    a.model = "baseline";
    a.backend = "auto";
    a.optimizer = "nesterov";
    a.no_decay_bn_bias = 1;
    a.alpha = 0.99;
    a.schedule = "onecycle";
    a.augment = "flip";
    a.val_split = 0.1;
    a.loader_threads = 2;
    a.epochs = 3;
    a.batch = 64;
    a.nesterov = 1;
    a.cycle_momentum = 1;
    a.lr = 0.1;
    a.momentum = 0.9;
    a.weight_decay = 5e-4;
    a.gamma = 0.1;
    a.step_epochs = 30;
    a.beta1 = 0.9;
    a.beta2 = 0.999;
    a.eps = 1e-8;
    a.seed = 1;
    const arg_spec specs[] = {
        {"data", ARG_STRING, &a.data, "SPEC", "fashion-mnist[:DIR], tinyimagenet:DIR, folder:DIR, pack:TRAIN,VAL or a directory (default " DEFAULT_DATA ")", 0, 0, NULL},
        {"val-split", ARG_DOUBLE, &a.val_split, "F", "folder datasets: held-out fraction of each class (default 0.1)", 1e-6, 0.999999, NULL},
        {"skip-bad-images", ARG_FLAG, &a.skip_bad, NULL, "leave out (and count) images that fail to decode", 0, 0, NULL},
        {"cache", ARG_STRING, &a.cache, "DIR", "where packed dataset caches live (default ~/.cache/polytrain)", 0, 0, NULL},
        {"no-cache", ARG_FLAG, &a.no_cache, NULL, "decode image files every epoch instead of packing them", 0, 0, NULL},
        {"loader-threads", ARG_INT, &a.loader_threads, "N", "data loader worker threads (default 2)", 1, 256, NULL},
        {"model", ARG_STRING, &a.model, "NAME", "model from the zoo (default baseline; see 'polytrain models')", 0, 0, NULL},
        {"backend", ARG_STRING, &a.backend, "NAME", "auto (a GPU backend if any, else cpu) or a backend name", 0, 0, NULL},
        {"devices", ARG_STRING, &a.devices, "LIST", "all, a count N (the first N) or indices like 0,1 (one index: 0,); default all (cpu: 1)", 0, 0, NULL},
        {"epochs", ARG_INT, &a.epochs, "N", "epochs to train (default 3)", 1, 100000, NULL},
        {"batch-per-device", ARG_INT, &a.batch, "N", "samples per device per step (default 64)", 1, 65536, &a.given_batch},
        {"preset", ARG_STRING, &a.preset, "NAME", "start from a named recipe, e.g. best; options given override it ('polytrain experiment --list')", 0, 0, &a.given_preset},
        {"lr", ARG_DOUBLE, &a.lr, "F", "learning rate for the global batch (peak for onecycle; default 0.1)", 1e-12, 100, NULL},
        {"lr-batch", ARG_INT, &a.lr_batch, "N", "--lr is for a global batch of N: scale it linearly to the actual one (default 0: as given)", 0, 1 << 24, NULL},
        {"scale-lr", ARG_FLAG, &a.scale_lr, NULL, "linear scaling rule: --lr is for 64 samples, the rate in effect is lr x global batch / 64, with warmup", 0, 0, NULL},
        {"sync-bn", ARG_FLAG, &a.sync_bn, NULL, "BatchNorm batch statistics over every device and process (default: per device)", 0, 0, NULL},
        {"check-replicas", ARG_FLAG, &a.check_replicas, NULL, "compare every replica bitwise after each step (slow; debug builds always do)", 0, 0, &a.given_check},
        {"optimizer", ARG_STRING, &a.optimizer, "NAME", "sgd (plain), momentum, nesterov, adam, adamw or rmsprop (default nesterov)", 0, 0, NULL},
        {"momentum", ARG_DOUBLE, &a.momentum, "F", "SGD/RMSprop momentum (default: 0.9 for momentum and nesterov, 0 for sgd and rmsprop)", 0, 1, &a.given_momentum},
        {"nesterov", ARG_FLAG, &a.nesterov, NULL, "Nesterov momentum (SGD; default on for --optimizer nesterov only)", 0, 0, &a.given_nesterov},
        {"no-nesterov", ARG_NOFLAG, &a.nesterov, NULL, "plain momentum", 0, 0, &a.given_nesterov},
        {"weight-decay", ARG_DOUBLE, &a.weight_decay, "F", "weight decay (default 5e-4; adamw: decoupled, default 1e-2)", 0, 1, &a.given_wd},
        {"no-decay-bn-bias", ARG_FLAG, &a.no_decay_bn_bias, NULL, "no weight decay on BatchNorm parameters and biases (default)", 0, 0, NULL},
        {"decay-all", ARG_NOFLAG, &a.no_decay_bn_bias, NULL, "weight decay on every parameter, BatchNorm and biases included", 0, 0, NULL},
        {"alpha", ARG_DOUBLE, &a.alpha, "F", "RMSprop smoothing constant (default 0.99)", 0, 0.999999, NULL},
        {"centered", ARG_FLAG, &a.centered, NULL, "RMSprop: normalise by the estimated variance of the gradient", 0, 0, NULL},
        {"beta1", ARG_DOUBLE, &a.beta1, "F", "Adam beta1 (default 0.9)", 0, 0.999999, NULL},
        {"beta2", ARG_DOUBLE, &a.beta2, "F", "Adam beta2 (default 0.999)", 0, 0.999999, NULL},
        {"eps", ARG_DOUBLE, &a.eps, "F", "Adam/RMSprop epsilon (default 1e-8)", 1e-30, 1, NULL},
        {"schedule", ARG_STRING, &a.schedule, "NAME", "constant, step, cosine or onecycle (default onecycle)", 0, 0, NULL},
        {"cycle-momentum", ARG_FLAG, &a.cycle_momentum, NULL, "onecycle: cycle momentum 0.95 -> 0.85 -> 0.95 as PyTorch's OneCycleLR (default on)", 0, 0, &a.given_cycle},
        {"no-cycle-momentum", ARG_NOFLAG, &a.cycle_momentum, NULL, "onecycle: keep --momentum fixed", 0, 0, &a.given_cycle},
        {"warmup-epochs", ARG_DOUBLE, &a.warmup_epochs, "F", "linear warmup (constant/step/cosine; default 0, with --scale-lr 5 but at most a fifth of the run)", 0, 1e6, &a.given_warmup},
        {"step-epochs", ARG_DOUBLE, &a.step_epochs, "F", "step schedule: decay every F epochs (default 30)", 1e-6, 1e6, NULL},
        {"gamma", ARG_DOUBLE, &a.gamma, "F", "step schedule: decay factor (default 0.1)", 1e-9, 1, NULL},
        {"label-smoothing", ARG_DOUBLE, &a.label_smoothing, "F", "label smoothing of the training loss (default 0)", 0, 0.999, NULL},
        {"augment", ARG_STRING, &a.augment, "LIST", "comma separated: flip, crop[=PAD], rrc[=SCALE], jitter[=F], cutout[=N], mixup[=A], cutmix[=A] or none (default flip)", 0, 0, NULL},
        {"seed", ARG_U64, &a.seed, "N", "seed for init, shuffling, augmentation, dropout (default 1)", 0, 0, NULL},
        {"deterministic", ARG_FLAG, &a.deterministic, NULL, "bitwise-reproducible algorithms only", 0, 0, NULL},
        {"out", ARG_STRING, &a.out, "DIR", "run directory (default runs/<model>-<time>)", 0, 0, &a.given_out},
        {"resume", ARG_STRING, &a.resume, "DIR", "continue the run in DIR from DIR/last", 0, 0, &a.given_resume},
        {"stop-after-epoch", ARG_INT, &a.stop_after, "N", "stop once epoch N is saved (resume later)", 0, 1000000, &a.given_stop},
        {"limit-train", ARG_I64, &a.limit_train, "N", "use the first N training samples (0 = all)", 0, 1e15, NULL},
        {"limit-val", ARG_I64, &a.limit_val, "N", "use the first N test samples (0 = all)", 0, 1e15, NULL},
        {"threads", ARG_INT, &a.threads, "N", "cpu worker threads per device (default: all cores)", 0, 4096, NULL},
        {"log-steps", ARG_FLAG, &a.log_steps, NULL, "write the loss and LR of every step to DIR/steps.jsonl", 0, 0, NULL},
        {"no-progress", ARG_FLAG, &a.no_progress, NULL, "no progress bar", 0, 0, &a.given_progress},
        {NULL, 0, NULL, NULL, NULL, 0, 0, NULL},
    };
    static int given[64];
    memset(given, 0, sizeof given); /* the experiment runner trains many times in one process */
    const arg_command cmd = {
        "train", "Train a model and write checkpoints, metrics.jsonl and config.json into a run directory.",
        "[options]", specs,
        "The default run trains 'baseline' on Fashion-MNIST for 3 epochs with SGD (Nesterov, momentum\n"
        "0.9, weight decay 5e-4 except on BatchNorm and biases), a one-cycle LR peaking at 0.1, random\n"
        "flips and 64 samples per device. --preset NAME starts from a recipe (options given win).\n"
        "--resume DIR takes the options not given again from DIR/config.json.",
        given};
    int rc = args_parse(&cmd, argc, argv, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : 2;
    /* Under mpirun every rank runs this command; rank 0 speaks and writes the run directory. */
    pt_world world = pt_world_single();
    int mpi = pt_mpi_launched();
    if (mpi) {
        pt_error e;
        pt_error_clear(&e);
        if (pt_mpi_world_init(&world, &e) != PT_OK) {
            cli_error("train: %s", e.msg);
            return 1;
        }
        if (world.rank != 0 && !freopen("/dev/null", "w", stdout)) {
            cli_error("train: rank %d: cannot silence stdout", world.rank);
            world.abort(world.ctx, 1, NULL);
        }
    }
    pt_json *resume_cfg = NULL;
    if (a.resume && a.given_preset) {
        cli_error("train: --resume continues with the run's saved options; drop --preset");
        return 2;
    }
    if (a.resume) {
        if (a.given_out && strcmp(a.out, a.resume) != 0) {
            cli_error("train: --resume continues in its own directory; drop --out");
            return 2;
        }
        /* Per-run options are never inherited from the interrupted run. */
        a.given_out = a.given_stop = a.given_progress = a.given_check = 1;
        if (load_resume_config(&cmd, a.resume, &resume_cfg)) {
            if (world.size > 1) world.abort(world.ctx, 1, NULL);
            return 1;
        }
        a.out = a.resume;
    }
    int code = train_main(&a, &cmd, resume_cfg, &world, outcome);
    pt_json_free(resume_cfg);
    if (code != 0 && world.size > 1) world.abort(world.ctx, code, NULL); /* takes every rank down */
    if (mpi) pt_mpi_world_finalize(&world);
    return code;
}

static int train_main(train_args *ap, const arg_command *cmdp, const pt_json *resume_cfg, pt_world *world,
                      pt_error *outcome)
{
    double start_time = wall_s();
    const arg_command cmd = *cmdp;
    if (strcmp(ap->backend, "auto") != 0 && !pt_backend_find(ap->backend)) {
        pt_error e;
        pt_device *none[1];
        int n;
        cli_open_devices(ap->backend, NULL, 0, 0, none, &n, &e);
        cli_error("train: %s", e.msg);
        return 2;
    }

    pt_optim_kind okind;
    const pt_optim_recipe *orec = pt_optim_recipe_find(ap->optimizer);
    pt_schedule_kind skind;
    pt_loader_options aug;
    memset(&aug, 0, sizeof aug);
    if (!orec) {
        cli_error("train: --optimizer must be sgd, momentum, nesterov, adam, adamw or rmsprop, got '%s'",
                  ap->optimizer);
        return 2;
    }
    okind = orec->kind;
    /* The optimizer's name sets momentum and Nesterov unless they were given (a resumed
     * run's saved values count as given). */
    if (okind == PT_OPTIM_SGD || okind == PT_OPTIM_RMSPROP) {
        if (!ap->given_momentum) ap->momentum = orec->momentum;
        if (!ap->given_nesterov) ap->nesterov = orec->nesterov;
    } else if (!ap->given_nesterov) {
        ap->nesterov = 0;
    }
    if (okind == PT_OPTIM_RMSPROP && ap->nesterov) {
        cli_error("train: --nesterov is an SGD option (use --optimizer nesterov)");
        return 2;
    }
    if (okind != PT_OPTIM_RMSPROP && ap->centered) {
        cli_error("train: --centered is an RMSprop option (--optimizer rmsprop)");
        return 2;
    }
    if (!pt_schedule_parse(ap->schedule, &skind)) {
        cli_error("train: --schedule must be constant, step, cosine or onecycle, got '%s'", ap->schedule);
        return 2;
    }
    {
        pt_error e;
        if (pt_augment_parse(ap->augment, 64, &aug, &e) != PT_OK) {
            cli_error("train: %s", e.msg);
            return 2;
        }
    }
    if (!pt_model_find(ap->model)) {
        pt_error e;
        pt_net *dummy = NULL;
        pt_model_build(ap->model, 1, 28, 28, 10, &dummy, &e);
        cli_error("train: --model: %s", e.msg);
        return 2;
    }
    if (okind == PT_OPTIM_ADAMW && !ap->given_wd) ap->weight_decay = 1e-2;
    char default_out[256];
    if (!ap->out) {
        time_t now = time(NULL);
        struct tm tmv;
        localtime_r(&now, &tmv);
        char stamp[32];
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tmv);
        snprintf(default_out, sizeof default_out, "runs/%s-%s", ap->model, stamp);
        ap->out = default_out;
    }

    pt_error err;
    pt_error_clear(&err);
    pt_dataset train_ds, val_ds;
    memset(&train_ds, 0, sizeof train_ds);
    memset(&val_ds, 0, sizeof val_ds);
    pt_device *devs[CLI_MAX_DEVICES];
    int ndev = 0;
    pt_net *net = NULL;
    pt_replica *reps[CLI_MAX_DEVICES] = {0};
    pt_loader train_ld, val_ld;
    memset(&train_ld, 0, sizeof train_ld);
    memset(&val_ld, 0, sizeof val_ld);
    pt_trainer *trainer = NULL;
    pt_strbuf cfg;
    pt_strbuf_init(&cfg);
    pt_model_meta meta;
    memset(&meta, 0, sizeof meta);
    int exit_code = 1;

    if (world->rank == 0 && pt_check_dir_writable(ap->out, &err) != PT_OK) goto fail;
    if (ap->resume) {
        char last[4200];
        snprintf(last, sizeof last, "%s/last", ap->resume);
        pt_model_meta saved;
        if (pt_checkpoint_read_meta(last, &saved, &err) != PT_OK) {
            pt_error_wrap(&err, "cannot resume");
            goto fail;
        }
        int same = strcmp(saved.model, ap->model) == 0;
        pt_fail(&err, PT_ERR_MISMATCH, "cannot resume: '%s' holds a '%s' model, --model asks for '%s'", last,
                saved.model, ap->model);
        pt_model_meta_free(&saved);
        if (!same) goto fail;
    }
    {
        double last = 0;
        pt_data_options dopt;
        memset(&dopt, 0, sizeof dopt);
        dopt.val_split = ap->val_split;
        dopt.skip_bad = ap->skip_bad;
        dopt.cache = ap->no_cache ? PT_CACHE_OFF : PT_CACHE_AUTO;
        dopt.cache_dir = ap->cache;
        dopt.progress = on_pack_progress;
        dopt.user = &last;
        pt_data_report rep;
        dopt.limit = ap->limit_train;
        if (pt_dataset_open_ex(ap->data, 1, &dopt, &train_ds, &rep, &err) != PT_OK) goto fail;
        print_data_report("train", &train_ds, &rep);
        dopt.limit = ap->limit_val;
        dopt.height = train_ds.height;
        dopt.width = train_ds.width;
        if (pt_dataset_open_ex(ap->data, 0, &dopt, &val_ds, &rep, &err) != PT_OK) goto fail;
        print_data_report("val", &val_ds, &rep);
        /* Validation is normalised with the training statistics, as the checkpoint records. */
        memcpy(val_ds.mean, train_ds.mean, sizeof val_ds.mean);
        memcpy(val_ds.std, train_ds.std, sizeof val_ds.std);
    }
    if (pt_model_build(ap->model, train_ds.channels, train_ds.height, train_ds.width, train_ds.num_classes,
                       &net, &err) != PT_OK)
        goto fail;
    if (cli_open_devices(ap->backend, ap->devices, ap->threads, ap->deterministic, devs, &ndev, &err) != PT_OK) {
        if (err.status == PT_ERR_INVALID) { /* a bad --devices list is a usage error */
            cli_error("train: %s", err.msg);
            exit_code = 2;
            goto out;
        }
        goto fail;
    }

    pt_optim_config oc = pt_optim_defaults(okind);
    oc.momentum = (float)ap->momentum;
    oc.nesterov = ap->nesterov;
    oc.weight_decay = (float)ap->weight_decay;
    oc.beta1 = (float)ap->beta1;
    oc.beta2 = (float)ap->beta2;
    oc.eps = (float)ap->eps;
    oc.no_decay_bn_bias = ap->no_decay_bn_bias;
    oc.alpha = (float)ap->alpha;
    oc.centered = ap->centered;
    if (okind == PT_OPTIM_SGD && oc.nesterov && oc.momentum == 0.0f) {
        cli_error("train: Nesterov momentum needs --momentum > 0 (or --no-nesterov)");
        exit_code = 2;
        goto out;
    }
    /* The global batch defines the run (its schedule, data order and steps per epoch): a run
     * resumed on another number of devices or processes keeps it and re-divides it. */
    int procs = world->size, capacity = ap->batch, rank_batch = ap->batch * ndev;
    int64_t global_batch = (int64_t)ap->batch * ndev * procs;
    {
        const pt_json *res = resume_cfg ? pt_json_get(resume_cfg, "resolved") : NULL;
        int64_t saved = 0;
        if (res && pt_json_get_int64(res, "global_batch", &saved, NULL) == PT_OK && saved > 0 &&
            saved != global_batch) {
            if (saved % procs != 0) {
                pt_fail(&err, PT_ERR_INVALID,
                        "cannot resume: the run's global batch of %lld does not divide over %d processes",
                        (long long)saved, procs);
                goto fail;
            }
            global_batch = saved;
            rank_batch = (int)(saved / procs);
            capacity = (rank_batch + ndev - 1) / ndev;
            printf("resuming with %d device(s) x %d process(es): the run's global batch of %lld stays, %d per "
                   "device at most\n",
                   ndev, procs, (long long)saved, capacity);
            ap->batch = capacity;
        }
    }
    pt_replica_options ro = {.sync_bn = ap->sync_bn};
    for (int d = 0; d < ndev; d++)
        if (pt_replica_create_ex(net, devs[d], capacity, &oc, ap->seed, &ro, &reps[d], &err) != PT_OK) goto fail;
    for (int d = 0; d < ndev; d++) pt_replica_set_label_smoothing(reps[d], (float)ap->label_smoothing);

    pt_loader_options lo;
    memset(&lo, 0, sizeof lo);
    lo.batch_size = rank_batch;
    lo.rank = world->rank;
    lo.world = procs;
    lo.shuffle = 1;
    lo.seed = ap->seed;
    if (pt_augment_parse(ap->augment, train_ds.height, &lo, &err) != PT_OK) goto fail;
    lo.prefetch = 1;
    lo.workers = ap->loader_threads;
    if (pt_loader_init(&train_ld, &train_ds, &lo, &err) != PT_OK) goto fail;
    pt_loader_options vo;
    memset(&vo, 0, sizeof vo);
    vo.batch_size = capacity * ndev;
    vo.rank = world->rank;
    vo.world = procs;
    vo.seed = ap->seed;
    vo.prefetch = 1;
    if (pt_loader_init(&val_ld, &val_ds, &vo, &err) != PT_OK) goto fail;

    /* The linear scaling rule (Goyal et al. 2017): --lr is the rate for 64 samples, the
     * rate in effect grows with the global batch, reached after a warmup (onecycle has its
     * own). The warmup is written into config.json, so a resumed run keeps it. */
    double lr = ap->lr;
    if (ap->lr_batch > 0 && ap->scale_lr) {
        pt_fail(&err, PT_ERR_INVALID, "--lr-batch and --scale-lr both scale the learning rate: give one");
        goto fail;
    }
    /* --lr-batch N: the learning rate was chosen for a global batch of N (linear scaling). */
    if (ap->lr_batch > 0) lr = ap->lr * (double)global_batch / (double)ap->lr_batch;
    if (ap->scale_lr) {
        lr = ap->lr * (double)global_batch / 64.0;
        if (!ap->given_warmup && skind != PT_SCHED_ONECYCLE) {
            ap->warmup_epochs = 5.0;
            if (ap->warmup_epochs > 0.2 * ap->epochs) ap->warmup_epochs = 0.2 * ap->epochs;
        }
    }
    double warmup = ap->warmup_epochs;
    snprintf(meta.model, sizeof meta.model, "%s", ap->model);
    meta.in_channels = train_ds.channels;
    meta.height = train_ds.height;
    meta.width = train_ds.width;
    meta.num_classes = train_ds.num_classes;
    memcpy(meta.mean, train_ds.mean, sizeof meta.mean);
    memcpy(meta.std, train_ds.std, sizeof meta.std);
    meta.class_names = train_ds.class_names;

    /* config.json: the options by their command-line names, then what they resolved to. */
    pt_strbuf_puts(&cfg, "{\"options\":{");
    args_to_json(&cmd, &cfg);
    pt_strbuf_printf(&cfg, "\n},\n\"resolved\":{\"framework\":\"polytrain %s\",\"backend\":", PT_VERSION);
    pt_strbuf_json_string(&cfg, devs[0]->be->name);
    pt_strbuf_printf(&cfg, ",\"devices\":%d,\"processes\":%d,\"lr_in_effect\":%.17g,\"device\":", ndev, procs, lr);
    pt_strbuf_json_string(&cfg, devs[0]->info.name);
    pt_strbuf_puts(&cfg, ",\"device_details\":");
    pt_strbuf_json_string(&cfg, devs[0]->info.details);
    pt_strbuf_puts(&cfg, ",\"lr\":");
    pt_strbuf_json_double(&cfg, lr);
    pt_strbuf_printf(&cfg, ",\"parameters\":%lld,\"global_batch\":%d,\"train_samples\":%lld,"
                           "\"val_samples\":%lld,\"dataset\":",
                     (long long)net->param_count, (int)global_batch, (long long)train_ds.count,
                     (long long)val_ds.count);
    pt_strbuf_json_string(&cfg, train_ds.name);
    pt_strbuf_puts(&cfg, "}}");
    if (pt_strbuf_check(&cfg, &err) != PT_OK) goto fail;

    pt_train_options to;
    memset(&to, 0, sizeof to);
    to.epochs = ap->epochs;
    to.batch_per_device = ap->batch;
    to.lr = lr;
    to.world = world;
    to.global_samples = train_ld.n;
    to.rank_batch = rank_batch;
    to.check_replicas = ap->check_replicas;
    to.host_reduction = getenv("PT_HOST_REDUCTION") && atoi(getenv("PT_HOST_REDUCTION")) > 0;
    to.schedule = skind;
    to.warmup_epochs = warmup;
    to.step_epochs = ap->step_epochs;
    to.gamma = ap->gamma;
    to.label_smoothing = (float)ap->label_smoothing;
    to.cycle_momentum = ap->cycle_momentum;
    to.seed = ap->seed;
    to.out_dir = ap->out;
    to.resume = ap->resume != NULL;
    to.stop_after_epoch = ap->stop_after;
    to.config_json = cfg.data;
    to.log_steps = ap->log_steps;
    if (pt_trainer_create(reps, ndev, &meta, pt_loader_source(&train_ld), pt_loader_source(&val_ld), &to,
                          &trainer, &err) != PT_OK)
        goto fail;

    /* The banner: what runs where, before any work. */
    printf("polytrain %s: training '%s' on %s\n", PT_VERSION, ap->model, train_ds.name);
    printf("devices: %d x %s (%s backend)%s\n", ndev, devs[0]->info.name, devs[0]->be->name,
           procs > 1 ? " in each process" : "");
    for (int d = 0; d < ndev; d++)
        printf("  [%d] device %d: %s, %d threads; %s\n", d, devs[d]->index, devs[d]->info.name, devs[d]->info.threads,
               devs[d]->info.details);
    if (procs > 1) printf("processes: %d (MPI), rank 0 logs and saves\n", procs);
    {
        pt_group *grp = pt_trainer_group(trainer);
        if (ndev * procs > 1)
            printf("data parallel: %d replica%s, gradients all-reduced in %d bucket%s through %s, BatchNorm "
                   "statistics %s\n",
                   ndev * procs, ndev * procs == 1 ? "" : "s", pt_group_buckets(grp),
                   pt_group_buckets(grp) == 1 ? "" : "s",
                   strcmp(pt_group_reduction(grp), "host") == 0 ? (procs > 1 ? "host memory and MPI" : "host memory")
                                                                : "the backend's collectives",
                   ap->sync_bn ? "synchronised (--sync-bn)" : "per device (averaged before evaluation and saving)");
    }
    printf("model: %s, %.3f M parameters (%lld), input %dx%dx%d, %d classes\n", ap->model,
           (double)net->param_count / 1e6, (long long)net->param_count, train_ds.channels, train_ds.height,
           train_ds.width, train_ds.num_classes);
    printf("batch: %d per device x %d device%s%s = global batch %lld; %lld steps per epoch\n", capacity, ndev,
           ndev == 1 ? "" : "s", procs > 1 ? (procs == 2 ? " x 2 processes" : " x processes") : "",
           (long long)global_batch, (long long)pt_loader_batches_per_epoch(&train_ld));
    printf("data: %lld train / %lld test samples; augment %s\n", (long long)train_ds.count,
           (long long)val_ds.count, ap->augment);
    char mom[64];
    const int has_momentum = okind == PT_OPTIM_SGD || okind == PT_OPTIM_RMSPROP;
    if (skind == PT_SCHED_ONECYCLE && ap->cycle_momentum && !(has_momentum && ap->momentum == 0))
        snprintf(mom, sizeof mom, "%s 0.95->0.85->0.95", has_momentum ? "momentum" : "beta1");
    else
        snprintf(mom, sizeof mom, "%s %g", has_momentum ? "momentum" : "beta1", has_momentum ? ap->momentum : ap->beta1);
    char rms[48] = "";
    if (okind == PT_OPTIM_RMSPROP) snprintf(rms, sizeof rms, ", alpha %g%s", ap->alpha, ap->centered ? " centered" : "");
    char lr_text[96];
    if (ap->lr_batch > 0)
        snprintf(lr_text, sizeof lr_text, "%g (%g per %d samples, global batch %lld)", lr, ap->lr, ap->lr_batch,
                 (long long)global_batch);
    else if (ap->scale_lr)
        snprintf(lr_text, sizeof lr_text, "%g (--scale-lr: %g x %lld/64)", lr, ap->lr, (long long)global_batch);
    else
        snprintf(lr_text, sizeof lr_text, "%g", lr);
    printf("optimizer: %s lr %s (%s schedule%s), %s%s%s, weight decay %g%s; label smoothing %g%s%s\n", ap->optimizer,
           lr_text, ap->schedule, ap->warmup_epochs > 0 ? ", warmup" : "", mom,
           okind == PT_OPTIM_SGD && ap->nesterov ? " nesterov" : "",
           rms, ap->weight_decay,
           ap->weight_decay > 0 ? (ap->no_decay_bn_bias ? " (not on BN/bias)" : " (on every parameter)") : "",
           ap->label_smoothing, ap->preset ? "; preset " : "", ap->preset ? ap->preset : "");
    printf("memory: %.1f MiB per device\n", (double)pt_replica_device_bytes(reps[0]) / (1024.0 * 1024.0));
    printf("output: %s%s\n", ap->out, ap->resume ? " (resuming)" : "");
    fflush(stdout);

    run_ui ui;
    memset(&ui, 0, sizeof ui);
    ui.epochs = ap->epochs;
    cli_progress_init(&ui.bar, !ap->no_progress && isatty(2));
    ui.start = start_time;
    ui.train_ld = &train_ld;
    pt_train_callbacks cb = {&ui, on_batch, on_epoch, should_stop, on_step};
    cli_install_interrupt_handler();
    pt_status st = pt_trainer_run(trainer, &cb, &err);
    cli_progress_clear(&ui.bar);
    if (st != PT_OK) goto fail;
    if (pt_trainer_stopped_early(trainer))
        printf("stopped after epoch %d as asked; continue with: polytrain train --resume %s\n", ap->stop_after, ap->out);
    else
        printf("done: checkpoints in %s/last and %s/best\n", ap->out, ap->out);
    exit_code = 0;
    goto out;
fail:
    if (world->size > 1) cli_error("train: rank %d: %s", world->rank, err.msg);
    else cli_error("train: %s", err.msg);
    if (outcome) *outcome = err;
    exit_code = err.status == PT_ERR_INTERRUPTED ? 130 : 1;
out:
    pt_trainer_free(trainer);
    pt_loader_free(&train_ld);
    pt_loader_free(&val_ld);
    for (int d = 0; d < ndev; d++) pt_replica_free(reps[d]);
    cli_close_devices(devs, ndev);
    pt_net_free(net);
    pt_dataset_free(&train_ds);
    pt_dataset_free(&val_ds);
    pt_strbuf_free(&cfg);
    return exit_code;
}
