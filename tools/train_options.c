/* polytrain train's options: the defaults and the option table, the saved options --resume
 * takes from DIR/config.json, and the checks that resolve them into what the run uses.
 * Builds nothing; prints nothing but errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/fileio.h"
#include "polytrain/models.h"
#include "tools/train_internal.h"

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

/* Options not given again come from DIR/config.json; *tree keeps their strings alive. */
static int load_resume_config(const arg_command *cmd, const char *dir, pt_json **tree, char *saved_precision)
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
        if (opts && opts->type == PT_JSON_OBJECT && saved_precision) {
            const pt_json *p = pt_json_get(opts, "precision");
            snprintf(saved_precision, 8, "%s", p && p->type == PT_JSON_STRING ? p->str : "fp32");
        }
        if (!opts || opts->type != PT_JSON_OBJECT) {
            cli_error("train: --resume: '%s' has no \"options\" object", path);
            rc = 1;
        } else if (args_apply_json(cmd, opts, path)) {
            cli_error("train: --resume: bad option value in '%s'", path);
            rc = 1;
        }
    }
    if (rc) pt_json_free(js);
    else *tree = js;
    free(text);
    return rc;
}

int train_options_parse(train_options *o, int argc, char **argv)
{
    train_args *a = &o->args;
    memset(a, 0, sizeof *a);
    a->data = DEFAULT_DATA;
    a->model = "baseline";
    a->backend = "auto";
    a->optimizer = "nesterov";
    a->no_decay_bn_bias = 1;
    a->alpha = 0.99;
    a->schedule = "onecycle";
    a->augment = "flip";
    a->val_split = 0.1;
    a->loader_threads = 0; /* automatic: train_session.c */
    a->epochs = 3;
    a->batch = 64;
    a->nesterov = 1;
    a->cycle_momentum = 1;
    a->lr = 0.1;
    a->momentum = 0.9;
    a->weight_decay = 5e-4;
    a->gamma = 0.1;
    a->step_epochs = 30;
    a->beta1 = 0.9;
    a->beta2 = 0.999;
    a->eps = 1e-8;
    a->seed = 1;
    a->precision = "fp32";
    a->cuda_graphs = a->pinned_input = "auto";
    a->fuse = NULL; /* cli_fuse_parse: on, or what PT_FUSE_RELU says */
    a->act_storage = "auto";
    a->layout = "auto";
    a->fit_workspace = "on";
    a->trace_step = -1;
    a->accumulate = 1;
    const arg_spec specs[] = {
        {"data", ARG_STRING, &a->data, "SPEC", "fashion-mnist[:DIR], tinyimagenet:DIR, folder:DIR, pack:TRAIN,VAL or a directory (default " DEFAULT_DATA ")", 0, 0, NULL},
        {"val-split", ARG_DOUBLE, &a->val_split, "F", "folder datasets: held-out fraction of each class (default 0.1)", 1e-6, 0.999999, NULL},
        {"skip-bad-images", ARG_FLAG, &a->skip_bad, NULL, "leave out (and count) images that fail to decode", 0, 0, NULL},
        {"cache", ARG_STRING, &a->cache, "DIR", "where packed dataset caches live (default ~/.cache/polytrain)", 0, 0, NULL},
        {"no-cache", ARG_FLAG, &a->no_cache, NULL, "decode image files every epoch instead of packing them", 0, 0, NULL},
        {"loader-threads", ARG_INT, &a->loader_threads, "N",
         "data loader worker threads (default 0: automatic, 2 on the cpu backend, on GPUs 2 per device from the "
         "packed cache and 4 per device with --no-cache, at most the cores)",
         0, 256, NULL},
        {"model", ARG_STRING, &a->model, "NAME", "model from the zoo (default baseline; see 'polytrain models')", 0, 0, NULL},
        {"backend", ARG_STRING, &a->backend, "NAME", "auto (a GPU backend if any, else cpu) or a backend name", 0, 0, NULL},
        {"devices", ARG_STRING, &a->devices, "LIST", "all, a count N (the first N) or indices like 0,1 (one index: 0,); default all (cpu: 1)", 0, 0, NULL},
        {"epochs", ARG_INT, &a->epochs, "N", "epochs to train (default 3)", 1, 100000, NULL},
        {"batch-per-device", ARG_INT, &a->batch, "N", "samples per device per step (default 64)", 1, 65536, &a->given_batch},
        {"preset", ARG_STRING, &a->preset, "NAME", "start from a named recipe, e.g. best; options given override it ('polytrain experiment --list')", 0, 0, &a->given_preset},
        {"lr", ARG_DOUBLE, &a->lr, "F", "learning rate for the global batch (peak for onecycle; default 0.1)", 1e-12, 100, NULL},
        {"lr-batch", ARG_INT, &a->lr_batch, "N", "--lr is for a global batch of N: scale it linearly to the actual one (default 0: as given)", 0, 1 << 24, NULL},
        {"scale-lr", ARG_FLAG, &a->scale_lr, NULL, "linear scaling rule: --lr is for 64 samples, the rate in effect is lr x global batch / 64, with warmup", 0, 0, NULL},
        {"sync-bn", ARG_FLAG, &a->sync_bn, NULL, "BatchNorm batch statistics over every device and process (default: per device)", 0, 0, NULL},
        {"check-replicas", ARG_FLAG, &a->check_replicas, NULL, "compare every replica bitwise after each step (slow; debug builds always do)", 0, 0, &a->given_check},
        {"optimizer", ARG_STRING, &a->optimizer, "NAME", "sgd (plain), momentum, nesterov, adam, adamw or rmsprop (default nesterov)", 0, 0, NULL},
        {"momentum", ARG_DOUBLE, &a->momentum, "F", "SGD/RMSprop momentum (default: 0.9 for momentum and nesterov, 0 for sgd and rmsprop)", 0, 1, &a->given_momentum},
        {"nesterov", ARG_FLAG, &a->nesterov, NULL, "Nesterov momentum (SGD; default on for --optimizer nesterov only)", 0, 0, &a->given_nesterov},
        {"no-nesterov", ARG_NOFLAG, &a->nesterov, NULL, "plain momentum", 0, 0, &a->given_nesterov},
        {"weight-decay", ARG_DOUBLE, &a->weight_decay, "F", "weight decay (default 5e-4; adamw: decoupled, default 1e-2)", 0, 1, &a->given_wd},
        {"no-decay-bn-bias", ARG_FLAG, &a->no_decay_bn_bias, NULL, "no weight decay on BatchNorm parameters and biases (default)", 0, 0, NULL},
        {"decay-all", ARG_NOFLAG, &a->no_decay_bn_bias, NULL, "weight decay on every parameter, BatchNorm and biases included", 0, 0, NULL},
        {"alpha", ARG_DOUBLE, &a->alpha, "F", "RMSprop smoothing constant (default 0.99)", 0, 0.999999, NULL},
        {"centered", ARG_FLAG, &a->centered, NULL, "RMSprop: normalise by the estimated variance of the gradient", 0, 0, NULL},
        {"beta1", ARG_DOUBLE, &a->beta1, "F", "Adam beta1 (default 0.9)", 0, 0.999999, NULL},
        {"beta2", ARG_DOUBLE, &a->beta2, "F", "Adam beta2 (default 0.999)", 0, 0.999999, NULL},
        {"eps", ARG_DOUBLE, &a->eps, "F", "Adam/RMSprop epsilon (default 1e-8)", 1e-30, 1, NULL},
        {"schedule", ARG_STRING, &a->schedule, "NAME", "constant, step, cosine or onecycle (default onecycle)", 0, 0, NULL},
        {"cycle-momentum", ARG_FLAG, &a->cycle_momentum, NULL, "onecycle: cycle momentum 0.95 -> 0.85 -> 0.95 as PyTorch's OneCycleLR (default on)", 0, 0, &a->given_cycle},
        {"no-cycle-momentum", ARG_NOFLAG, &a->cycle_momentum, NULL, "onecycle: keep --momentum fixed", 0, 0, &a->given_cycle},
        {"warmup-epochs", ARG_DOUBLE, &a->warmup_epochs, "F", "linear warmup (constant/step/cosine; default 0, with --scale-lr 5 but at most a fifth of the run)", 0, 1e6, &a->given_warmup},
        {"step-epochs", ARG_DOUBLE, &a->step_epochs, "F", "step schedule: decay every F epochs (default 30)", 1e-6, 1e6, NULL},
        {"gamma", ARG_DOUBLE, &a->gamma, "F", "step schedule: decay factor (default 0.1)", 1e-9, 1, NULL},
        {"label-smoothing", ARG_DOUBLE, &a->label_smoothing, "F", "label smoothing of the training loss (default 0)", 0, 0.999, NULL},
        {"augment", ARG_STRING, &a->augment, "LIST", "comma separated: flip, crop[=PAD], rrc[=SCALE], jitter[=F], cutout[=N], mixup[=A], cutmix[=A] or none (default flip)", 0, 0, NULL},
        {"seed", ARG_U64, &a->seed, "N", "seed for init, shuffling, augmentation, dropout (default 1)", 0, 0, NULL},
        {"precision", ARG_STRING, &a->precision, "P", "fp32, tf32, bf16 or fp16: the precision of convolutions and matrix products; weights, optimizer, BatchNorm and loss stay fp32; fp16 scales the loss (default fp32)", 0, 0, &a->given_precision},
        {"fuse", ARG_STRING, &a->fuse, "on|off", CLI_FUSE_HELP, 0, 0, NULL},
        {"act-storage", ARG_STRING, &a->act_storage, "auto|16bit|fp32", CLI_ACT_STORAGE_HELP, 0, 0, NULL},
        {"layout", ARG_STRING, &a->layout, "auto|nchw|nhwc", CLI_LAYOUT_HELP, 0, 0, NULL},
        {"fit-workspace", ARG_STRING, &a->fit_workspace, "on|off", CLI_FIT_WORKSPACE_HELP, 0, 0, NULL},
        {"deterministic", ARG_FLAG, &a->deterministic, NULL, "bitwise-reproducible algorithms only", 0, 0, NULL},
        {"cuda-graphs", ARG_STRING, &a->cuda_graphs, "MODE", "auto, on or off: each part of the step (forward and backward, update, evaluation) replayed as one CUDA graph once its ops have run unchanged twice (auto: where the device captures; default auto)", 0, 0, NULL},
        {"pinned-input", ARG_STRING, &a->pinned_input, "MODE", "auto, on or off: batches copied from page-locked memory on a copy stream of their own, double-buffered (auto: where the device has it; default auto)", 0, 0, NULL},
        {"out", ARG_STRING, &a->out, "DIR", "run directory (default runs/<model>-<time>)", 0, 0, &a->given_out},
        {"init-from", ARG_STRING, &a->init_from, "FILE", "start from pretrained weights: a safetensors state dict with PyTorch names (F32, F16, BF16 or F64) or a checkpoint directory; the optimizer starts afresh", 0, 0, &a->given_init_from},
        {"reset-head", ARG_FLAG, &a->reset_head, NULL, "--init-from: keep the classifier (fc) at its random init, as for another class count", 0, 0, &a->given_reset_head},
        {"resume", ARG_STRING, &a->resume, "DIR", "continue the run in DIR from DIR/last", 0, 0, &a->given_resume},
        {"config", ARG_STRING, &a->config, "FILE", "take the options not given here from FILE: a run's config.json (to repeat it) or a JSON object of options by their names; unknown names are refused", 0, 0, NULL},
        {"allow-changes", ARG_FLAG, &a->allow_changes, NULL,
         "--resume: accept options that change the run (recorded in config.json)", 0, 0, &a->given_allow},
        {"overwrite", ARG_FLAG, &a->overwrite, NULL,
         "--out may hold a run: replace its records and checkpoints", 0, 0, &a->given_overwrite},
        {"stop-after-epoch", ARG_INT, &a->stop_after, "N", "stop once epoch N is saved (resume later)", 0, 1000000, &a->given_stop},
        {"limit-train", ARG_I64, &a->limit_train, "N", "use the first N training samples (0 = all)", 0, 1e15, NULL},
        {"limit-val", ARG_I64, &a->limit_val, "N", "use the first N test samples (0 = all)", 0, 1e15, NULL},
        {"threads", ARG_INT, &a->threads, "N", "cpu worker threads per device (default: all cores)", 0, 4096, NULL},
        {"clip-grad-norm", ARG_DOUBLE, &a->clip_grad_norm, "F", "clip the gradients' global L2 norm (every parameter, after the reduction over devices and processes) to F before each update, as torch.nn.utils.clip_grad_norm_ [0: off]", 0, 1e30, NULL},
        {"accumulate", ARG_INT, &a->accumulate, "N", "gradient accumulation: each optimizer step sums the gradients of N global batches (micro-batches), so a step trains on N x the global batch; the schedule counts optimizer steps, --lr-batch and --scale-lr the effective batch [1]", 1, 1000000, NULL},
        {"ema", ARG_DOUBLE, &a->ema, "DECAY", "keep an exponential moving average of the weights and BatchNorm buffers (ema = DECAY ema + (1 - DECAY) w after each update, e.g. 0.999), evaluate it after every epoch and save it as DIR/ema [0: off]", 0, 1, NULL},
        {"patience", ARG_INT, &a->patience, "N", "early stopping: stop when val top-1 has not improved (by more than --min-delta) for N epochs in a row; the reason is recorded [0: off]", 0, 1000000, NULL},
        {"min-delta", ARG_DOUBLE, &a->min_delta, "F", "early stopping: the smallest rise of val top-1 (a fraction: 0.001 is 0.1 point) that counts as an improvement [0]", 0, 1, NULL},
        {"save-every-steps", ARG_I64, &a->save_every_steps, "N", "also save DIR/last every N steps within an epoch (a resume continues from there bit for bit; default 0: at each epoch's end; Ctrl-C always saves)", 0, 1e15, NULL},
        {"log-every", ARG_I64, &a->log_every, "N", "a plain progress line every N steps (default 0: about every 30 s when stdout is not a terminal, none on a terminal, which has the progress bar)", 0, 1e15, &a->given_log_every},
        {"log-steps", ARG_FLAG, &a->log_steps, NULL, "write the loss and LR of every step to DIR/steps.jsonl", 0, 0, NULL},
        {"trace", ARG_STRING, &a->trace, "FILE", "write a timeline of one step as Chrome/Perfetto trace JSON: every op of each device (synchronised), the gradient reductions, waits and updates", 0, 0, &a->given_trace},
        {"trace-step", ARG_I64, &a->trace_step, "N", "the 0-based global step --trace records (default: the run's third step)", 0, 1e15, &a->given_trace_step},
        {"no-progress", ARG_FLAG, &a->no_progress, NULL, "no progress bar", 0, 0, &a->given_progress},
        {NULL, 0, NULL, NULL, NULL, 0, 0, NULL},
    };
    _Static_assert(sizeof specs <= sizeof o->specs, "train: raise TRAIN_MAX_OPTIONS");
    memcpy(o->specs, specs, sizeof specs);
    memset(o->given, 0, sizeof o->given); /* the experiment runner trains many times in one process */
    o->resumed_precision[0] = '\0';
    o->resume_changes[0] = '\0';
    const arg_command cmd = {
        "train", "Train a model and write checkpoints, metrics.jsonl and config.json into a run directory.",
        "[options]", o->specs,
        "The default run trains 'baseline' on Fashion-MNIST for 3 epochs with SGD (Nesterov, momentum\n"
        "0.9, weight decay 5e-4 except on BatchNorm and biases), a one-cycle LR peaking at 0.1, random\n"
        "flips and 64 samples per device. --preset NAME starts from a recipe (options given win).\n"
        "--resume DIR takes the options not given again from DIR/config.json.",
        o->given};
    o->cmd = cmd;
    return args_parse(&o->cmd, argc, argv, NULL, 0, NULL);
}

/* Options that may differ on --resume: where and how fast the run goes, what it prints, when
 * it stops, the precision (said in the banner), --fuse, --layout and --fit-workspace (the same results). Every other
 * option changes what the run computes, so its record in config.json would no longer
 * describe it. */
static int free_on_resume(const char *name)
{
    static const char *const names[] = {"backend", "devices", "threads", "loader-threads", "cache", "no-cache",
                                        "skip-bad-images", "check-replicas", "precision", "fuse", "act-storage",
                                        "layout", "fit-workspace", "deterministic",
                                        "out",
                                        "resume", "stop-after-epoch", "log-steps", "trace", "trace-step",
                                        "no-progress", "allow-changes", "overwrite", "save-every-steps",
                                        "log-every", "config", "cuda-graphs", "pinned-input",
                                        /* they choose the starting weights; a resume starts from last/ */
                                        "init-from", "reset-head"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i]) == 0) return 1;
    return 0;
}

static int json_same(const pt_json *a, const pt_json *b)
{
    if (a->type != b->type) return 0;
    switch (a->type) {
    case PT_JSON_NUMBER: return a->number == b->number;
    case PT_JSON_STRING: return strcmp(a->str, b->str) == 0;
    case PT_JSON_BOOL: return a->boolean == b->boolean;
    default: return a->type == PT_JSON_NULL;
    }
}

static void json_text(const pt_json *v, char *buf, size_t cap)
{
    switch (v->type) {
    case PT_JSON_NUMBER:
        if (v->is_int) snprintf(buf, cap, "%lld", (long long)v->integer);
        else snprintf(buf, cap, "%.9g", v->number);
        break;
    case PT_JSON_STRING: snprintf(buf, cap, "%s", v->str); break;
    case PT_JSON_BOOL: snprintf(buf, cap, "%s", v->boolean ? "on" : "off"); break;
    default: snprintf(buf, cap, "null");
    }
}

/* The options given on the command line that differ from the run's saved ones: refused
 * unless --allow-changes, then recorded (o->resume_changes). cur: the command line's values
 * before the saved ones were applied; user_given: which the user gave. */
static int compare_resumed(train_options *o, const pt_json *cur, const int *user_given, const pt_json *saved)
{
    train_args *a = &o->args;
    char list[2048] = "";
    /* {"option":[the run's, now], ...}: JSON strings, escaped (a --data path may hold quotes) */
    pt_strbuf js;
    pt_strbuf_init(&js);
    pt_strbuf_putc(&js, '{');
    int n = 0, refused = 0;
    for (int i = 0; o->specs[i].name; i++) {
        const arg_spec *sp = &o->specs[i];
        if (!user_given[i] || free_on_resume(sp->name)) continue;
        /* a NOFLAG option's value is its FLAG twin's */
        const char *name = sp->name;
        if (sp->kind == ARG_NOFLAG)
            for (int j = 0; o->specs[j].name; j++)
                if (o->specs[j].target == sp->target && o->specs[j].kind == ARG_FLAG) name = o->specs[j].name;
        const pt_json *was = pt_json_get(saved, name), *now = pt_json_get(cur, name);
        if (!was || !now || json_same(was, now)) continue;
        char wt[256], nt[256];
        json_text(was, wt, sizeof wt);
        json_text(now, nt, sizeof nt);
        size_t l = strlen(list);
        if (strcmp(name, "epochs") == 0) {
            const pt_json *sch = pt_json_get(saved, "schedule");
            const char *schedule = sch && sch->type == PT_JSON_STRING ? sch->str : "onecycle";
            /* a constant or step schedule does not depend on the run's length: more epochs
             * (or fewer, not yet trained) train on as the run would have; onecycle and cosine
             * are laid over the whole run, and the finished part would not be what they say */
            if (strcmp(schedule, "constant") != 0 && strcmp(schedule, "step") != 0) {
                snprintf(list + l, sizeof list - l,
                         "\n  --epochs %s (the run's %s): its %s schedule is laid over %s epochs; stretched, the "
                         "learning rate would jump back up (to train on, start a new run from the checkpoint)",
                         nt, wt, schedule, wt);
                refused++;
            }
        } else {
            snprintf(list + l, sizeof list - l, "\n  --%s %s (the run's %s)", name, nt, wt);
            refused++;
        }
        if (n) pt_strbuf_putc(&js, ',');
        pt_strbuf_json_string(&js, name);
        pt_strbuf_puts(&js, ":[");
        pt_strbuf_json_string(&js, wt);
        pt_strbuf_putc(&js, ',');
        pt_strbuf_json_string(&js, nt);
        pt_strbuf_putc(&js, ']');
        n++;
    }
    pt_strbuf_putc(&js, '}');
    pt_error jerr;
    const int js_ok = pt_strbuf_check(&js, &jerr) == PT_OK && js.len < sizeof o->resume_changes;
    if (js_ok) memcpy(o->resume_changes, js.data, js.len + 1);
    else snprintf(o->resume_changes, sizeof o->resume_changes, "{\"options changed\":%d}", n); /* too long to keep */
    pt_strbuf_free(&js);
    if (n == 0) {
        o->resume_changes[0] = '\0';
        return 0;
    }
    if (refused && !a->allow_changes) {
        cli_error("train: --resume %s: %d option%s differ%s from the run's (%s/config.json); each changes what the "
                  "run computes, so its record would no longer describe it:%s\ndrop %s, or pass --allow-changes to "
                  "continue with %s anyway (recorded in config.json)",
                  a->resume, refused, refused == 1 ? "" : "s", refused == 1 ? "s" : "", a->resume, list,
                  refused == 1 ? "it" : "them", refused == 1 ? "it" : "them");
        return 2;
    }
    return 0;
}

/* Options a config file never sets: where the run goes, how it starts and what this one
 * invocation records or stops at are the command line's (a run's own config.json names its
 * directory, which holds that run). The preset's options are in the file already, resolved. */
static const char *const not_from_config[] = {"out",   "resume",     "overwrite",        "allow-changes", "config",
                                              "preset", "trace",     "trace-step",       "stop-after-epoch", NULL};

int train_options_config(train_options *o, pt_json **tree)
{
    train_args *a = &o->args;
    *tree = NULL;
    if (!a->config) return 0;
    if (a->resume) {
        cli_error("train: --config with --resume: a resumed run takes its options from its own config.json; drop "
                  "--config");
        return 2;
    }
    void *text = NULL;
    size_t size = 0;
    pt_error err;
    pt_error_clear(&err);
    if (pt_read_file(a->config, (size_t)1 << 20, &text, &size, &err) != PT_OK) {
        cli_error("train: --config: %s", err.msg);
        return 1;
    }
    pt_json *js = NULL;
    if (pt_json_parse(text, size, NULL, &js, &err) != PT_OK || js->type != PT_JSON_OBJECT) {
        cli_error("train: --config: '%s' is not a JSON object%s%s", a->config, js ? "" : ": ", js ? "" : err.msg);
        pt_json_free(js);
        free(text);
        return 2;
    }
    free(text);
    /* a run's config.json, or its options alone */
    const pt_json *opts = pt_json_get(js, "options");
    if (opts && opts->type != PT_JSON_OBJECT) opts = NULL;
    char unknown[1024] = "";
    int nunknown = 0;
    if (opts) {
        for (size_t i = 0; i < js->count; i++) {
            const char *k = js->members[i].key;
            if (strcmp(k, "options") && strcmp(k, "resolved") && strcmp(k, "resumes")) {
                size_t l = strlen(unknown);
                snprintf(unknown + l, sizeof unknown - l, "%s'%s'", nunknown++ ? ", " : "", k);
            }
        }
    } else {
        opts = js;
    }
    for (size_t i = 0; i < opts->count; i++) {
        const char *k = opts->members[i].key;
        int known = 0;
        for (int j = 0; o->specs[j].name && !known; j++) known = strcmp(o->specs[j].name, k) == 0;
        if (!known) {
            size_t l = strlen(unknown);
            snprintf(unknown + l, sizeof unknown - l, "%s'%s'", nunknown++ ? ", " : "", k);
        }
    }
    if (nunknown) {
        cli_error("train: --config %s: unknown key%s %s (expected train's option names, as in a run's "
                  "config.json \"options\"; see 'polytrain train --help')",
                  a->config, nunknown == 1 ? "" : "s", unknown);
        pt_json_free(js);
        return 2;
    }
    if (args_apply_json_except(&o->cmd, opts, a->config, not_from_config)) {
        cli_error("train: --config %s: a value above does not fit its option", a->config);
        pt_json_free(js);
        return 2;
    }
    *tree = js;
    return 0;
}

int train_options_resume(train_options *o, pt_json **resume_cfg)
{
    train_args *a = &o->args;
    *resume_cfg = NULL;
    if (a->resume && a->given_preset) {
        cli_error("train: --resume continues with the run's saved options; drop --preset");
        return 2;
    }
    if (a->resume && (a->given_init_from || a->given_reset_head)) {
        cli_error("train: --resume continues from %s/last, which holds the run's weights; drop %s (--init-from "
                  "and --reset-head choose the weights a run starts from)",
                  a->resume, a->given_init_from ? "--init-from" : "--reset-head");
        return 2;
    }
    if (a->resume) {
        if (a->given_out && strcmp(a->out, a->resume) != 0) {
            cli_error("train: --resume continues in its own directory; drop --out");
            return 2;
        }
        /* what the command line says, before the saved options fill in the rest */
        int user_given[TRAIN_MAX_OPTIONS];
        memcpy(user_given, o->given, sizeof user_given);
        pt_strbuf sb;
        pt_strbuf_init(&sb);
        pt_strbuf_putc(&sb, '{');
        args_to_json(&o->cmd, &sb);
        pt_strbuf_putc(&sb, '}');
        pt_json *cur = NULL;
        pt_error jerr;
        if (pt_strbuf_check(&sb, &jerr) != PT_OK || pt_json_parse(sb.data, sb.len, NULL, &cur, &jerr) != PT_OK) {
            pt_strbuf_free(&sb);
            cli_error("train: --resume: %s", jerr.msg);
            return 1;
        }
        pt_strbuf_free(&sb);
        /* Per-run options are never inherited from the interrupted run. */
        a->given_out = a->given_stop = a->given_progress = a->given_check = 1;
        a->given_trace = a->given_trace_step = a->given_allow = a->given_overwrite = 1;
        if (load_resume_config(&o->cmd, a->resume, resume_cfg, o->resumed_precision)) {
            pt_json_free(cur);
            return 1;
        }
        const int rc = compare_resumed(o, cur, user_given, pt_json_get(*resume_cfg, "options"));
        pt_json_free(cur);
        if (rc) {
            pt_json_free(*resume_cfg);
            *resume_cfg = NULL;
            return rc;
        }
        a->out = a->resume;
        char last[4200];
        char rlast[4400];
        snprintf(last, sizeof last, "%s/last", a->resume);
        pt_checkpoint_resolve(last, rlast, sizeof rlast); /* read only: the trainer repairs, under the run lock */
        if (!pt_path_exists(rlast)) {
            /* stopped before its first epoch ended: nothing to continue, so it starts over
             * with its own options */
            printf("resume: %s has no finished epoch (no last/ checkpoint): the run starts again from the beginning "
                   "with its options\n",
                   a->resume);
            a->resume = NULL;
            a->overwrite = 1;
        }
    }
    return 0;
}

int train_options_resolve(train_options *o)
{
    train_args *ap = &o->args;
    if (ap->ema >= 1) {
        cli_error("train: --ema expects a decay below 1 (ema = DECAY ema + (1 - DECAY) w; e.g. 0.999), got '%g'",
                  ap->ema);
        return 2;
    }
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
    if (!pt_precision_parse(ap->precision, &o->precision)) {
        cli_error("train: --precision must be fp32, tf32, bf16 or fp16, got '%s'", ap->precision);
        return 2;
    }
    if (!pt_switch_parse(ap->cuda_graphs, &o->graphs)) {
        cli_error("train: --cuda-graphs must be auto, on or off, got '%s'", ap->cuda_graphs);
        return 2;
    }
    if (!pt_switch_parse(ap->pinned_input, &o->pinned_input)) {
        cli_error("train: --pinned-input must be auto, on or off, got '%s'", ap->pinned_input);
        return 2;
    }
    if (cli_fuse_parse("train", &ap->fuse, &o->fuse_relu)) return 2;
    if (cli_act_storage_parse("train", ap->act_storage, &o->act_storage)) return 2;
    if (cli_layout_parse("train", ap->layout, &o->layout)) return 2;
    if (cli_fit_workspace_parse("train", ap->fit_workspace, &o->fit_workspace)) return 2;
    if (ap->given_trace_step && ap->trace_step >= 0 && !ap->trace) {
        cli_error("train: --trace-step picks the step --trace records; give --trace FILE too");
        return 2;
    }
    if (ap->reset_head && !ap->init_from) {
        cli_error("train: --reset-head keeps the classifier of --init-from's weights at its random init; give "
                  "--init-from FILE too");
        return 2;
    }
    if (okind == PT_OPTIM_ADAMW && !ap->given_wd) ap->weight_decay = 1e-2;
    if (!ap->out) {
        time_t now = time(NULL);
        struct tm tmv;
        localtime_r(&now, &tmv);
        char stamp[32];
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tmv);
        snprintf(o->default_out, sizeof o->default_out, "runs/%s-%s", ap->model, stamp);
        ap->out = o->default_out;
    }
    o->optim = okind;
    o->schedule = skind;
    return 0;
}

int train_options_optim(const train_options *o, pt_optim_config *oc)
{
    const train_args *ap = &o->args;
    *oc = pt_optim_defaults(o->optim);
    oc->momentum = (float)ap->momentum;
    oc->nesterov = ap->nesterov;
    oc->weight_decay = (float)ap->weight_decay;
    oc->beta1 = (float)ap->beta1;
    oc->beta2 = (float)ap->beta2;
    oc->eps = (float)ap->eps;
    oc->no_decay_bn_bias = ap->no_decay_bn_bias;
    oc->alpha = (float)ap->alpha;
    oc->centered = ap->centered;
    if (o->optim == PT_OPTIM_SGD && oc->nesterov && oc->momentum == 0.0f) {
        cli_error("train: Nesterov momentum needs --momentum > 0 (or --no-nesterov)");
        return 2;
    }
    return 0;
}

/* The linear scaling rule (Goyal et al. 2017): --lr is the rate for 64 samples, the
 * rate in effect grows with the global batch, reached after a warmup (onecycle has its
 * own). The warmup is written into config.json, so a resumed run keeps it. */
pt_status train_options_lr(train_options *o, int64_t global_batch, double *lr, pt_error *err)
{
    train_args *ap = &o->args;
    *lr = ap->lr;
    if (ap->lr_batch > 0 && ap->scale_lr)
        return pt_fail(err, PT_ERR_INVALID, "--lr-batch and --scale-lr both scale the learning rate: give one");
    /* --lr-batch N: the learning rate was chosen for a global batch of N (linear scaling). */
    global_batch *= ap->accumulate > 1 ? ap->accumulate : 1; /* the samples of one update */
    if (ap->lr_batch > 0) *lr = ap->lr * (double)global_batch / (double)ap->lr_batch;
    if (ap->scale_lr) {
        *lr = ap->lr * (double)global_batch / 64.0;
        if (!ap->given_warmup && o->schedule != PT_SCHED_ONECYCLE) {
            ap->warmup_epochs = 5.0;
            if (ap->warmup_epochs > 0.2 * ap->epochs) ap->warmup_epochs = 0.2 * ap->epochs;
        }
    }
    return PT_OK;
}
