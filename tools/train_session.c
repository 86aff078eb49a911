/* polytrain train's session: from the resolved options, the datasets and their loaders, the
 * model, the devices with a replica each, config.json and the core trainer over them. What
 * it reports goes through train_report.c; it prints only a bad --devices list itself. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/dircommit.h"
#include "core/fileio.h"
#include "core/runlock.h"
#include "core/init_from.h"
#include "polytrain/trace.h"
#include "polytrain/source.h"
#include "polytrain/models.h"
#include "tools/evaluate.h"
#include "tools/run_data.h"
#include "tools/common.h"
#include "tools/train_internal.h"
#include "polytrain/version.h"

/* A resumed run continues on data of the shape and classes its checkpoint was trained on. */
static int check_resumed_data(const train_session *s, const train_args *ap, pt_error *err)
{
    char last[4200], what[1100];
    snprintf(last, sizeof last, "%s/last", ap->resume);
    pt_model_meta saved;
    if (pt_checkpoint_read_meta(last, &saved, err) != PT_OK) {
        pt_error_wrap(err, "cannot resume");
        return 1;
    }
    snprintf(what, sizeof what, "training data '%.1024s'", s->train_ds.source);
    pt_status st = cli_check_checkpoint_data(&saved, last, &s->train_ds, what, err);
    pt_model_meta_free(&saved);
    if (st != PT_OK) pt_error_wrap(err, "cannot resume");
    return st != PT_OK;
}

/* A resumed run must train the model its checkpoint holds. */
static int check_resumed_model(const train_args *ap, pt_error *err)
{
    char last[4200];
    snprintf(last, sizeof last, "%s/last", ap->resume);
    pt_model_meta saved;
    if (pt_checkpoint_read_meta(last, &saved, err) != PT_OK) {
        pt_error_wrap(err, "cannot resume");
        return 1;
    }
    int same = strcmp(saved.model, ap->model) == 0;
    pt_fail(err, PT_ERR_MISMATCH, "cannot resume: '%s' holds a '%s' model, --model asks for '%s'", last,
            saved.model, ap->model);
    pt_model_meta_free(&saved);
    return !same;
}

/* A Ctrl-C while a dataset cache is packed stops the packing (minutes on a large tree). */
static int pack_cancelled(void *user)
{
    (void)user;
    return cli_interrupted();
}

static int open_datasets(train_session *s, const train_args *ap, pt_error *err)
{
    double last = 0;
    pt_data_options dopt = cli_data_options(ap->val_split, ap->skip_bad, ap->no_cache, ap->cache);
    dopt.progress = train_on_pack_progress;
    dopt.cancelled = pack_cancelled;
    dopt.user = &last;
    pt_data_report rep;
    dopt.limit = ap->limit_train;
    if (pt_dataset_open_ex(ap->data, 1, &dopt, &s->train_ds, &rep, err) != PT_OK) return 1;
    train_print_data_report("train", &s->train_ds, &rep);
    dopt.limit = ap->limit_val;
    dopt.height = s->train_ds.height;
    dopt.width = s->train_ds.width;
    if (pt_dataset_open_ex(ap->data, 0, &dopt, &s->val_ds, &rep, err) != PT_OK) return 1;
    train_print_data_report("val", &s->val_ds, &rep);
    /* The model is built for the training samples: validation samples of another shape would
     * be read past their end, other classes scored as the wrong ones. */
    pt_dataset_shape want = pt_dataset_shape_of(&s->train_ds), have = pt_dataset_shape_of(&s->val_ds);
    char tw[1100], vw[1100];
    snprintf(tw, sizeof tw, "training data '%.1024s'", s->train_ds.source);
    snprintf(vw, sizeof vw, "validation data '%.1024s'", s->val_ds.source);
    if (pt_dataset_check_compatible(&want, tw, &have, vw, err) != PT_OK) return 1;
    /* Validation is normalised with the training statistics, as the checkpoint records. */
    memcpy(s->val_ds.mean, s->train_ds.mean, sizeof s->val_ds.mean);
    memcpy(s->val_ds.std, s->train_ds.std, sizeof s->val_ds.std);
    return 0;
}

/* The global batch defines the run (its schedule, data order and steps per epoch): a run
 * resumed on another number of devices or processes keeps it and re-divides it. */
static int divide_global_batch(train_session *s, train_args *ap, const pt_json *resume_cfg, const pt_world *world,
                               pt_error *err)
{
    int ndev = s->ndev;
    s->procs = world->size;
    s->capacity = ap->batch;
    s->global_batch = (int64_t)ap->batch * ndev * s->procs;
    /* Batches, their sample counts and offsets are ints from here on. */
    if (s->global_batch > INT_MAX) {
        pt_fail(err, PT_ERR_INVALID,
                "--batch-per-device %d on %d device(s) in %d process(es) is a global batch of %lld samples, more "
                "than %d",
                ap->batch, ndev, s->procs, (long long)s->global_batch, INT_MAX);
        return 1;
    }
    s->rank_batch = ap->batch * ndev;
    const pt_json *res = resume_cfg ? pt_json_get(resume_cfg, "resolved") : NULL;
    const pt_json *gb = pt_json_get(res, "global_batch");
    int64_t saved = 0;
    if (gb) {
        if (gb->type != PT_JSON_NUMBER || !gb->is_int || gb->integer < 1 || gb->integer > INT_MAX) {
            pt_fail(err, PT_ERR_FORMAT,
                    "cannot resume: '%s/config.json': \"resolved\".\"global_batch\" is not an integer in 1..%d",
                    ap->out, INT_MAX); /* the run's directory (ap->resume is NULL when it starts over) */
            return 1;
        }
        saved = gb->integer;
    }
    if (saved > 0 && saved != s->global_batch) {
        if (saved % s->procs != 0) {
            pt_fail(err, PT_ERR_INVALID,
                    "cannot resume: the run's global batch of %lld does not divide over %d processes",
                    (long long)saved, s->procs);
            return 1;
        }
        if ((saved / s->procs + ndev - 1) / ndev > 65536) {
            pt_fail(err, PT_ERR_INVALID,
                    "cannot resume: the run's global batch of %lld is more than 65536 samples per device on %d "
                    "device(s) in %d process(es)",
                    (long long)saved, ndev, s->procs);
            return 1;
        }
        s->global_batch = saved;
        s->rank_batch = (int)(saved / s->procs);
        s->capacity = (s->rank_batch + ndev - 1) / ndev;
        train_print_kept_batch(ndev, s->procs, saved, s->capacity);
        ap->batch = s->capacity;
    }
    return 0;
}

/* The training loader's threads without --loader-threads. The cpu backend computes on the
 * cores, so it gets 2. A GPU device needs about 25,000 images/s for a TinyImageNet epoch in
 * 4 s, and one loader thread gives about 70,000/s from the packed cache (flip) and 9,000/s
 * decoding JPEGs every epoch (polytrain bench-loader on a Zen 4 core): 2 per device from the
 * cache, 4 per device decoding, at most this process's share of the cores. */
static void choose_loader_threads(train_session *s, const train_args *ap)
{
    if (ap->loader_threads > 0) {
        s->loader_threads = ap->loader_threads;
        snprintf(s->loader_why, sizeof s->loader_why, "--loader-threads");
        return;
    }
    if (s->devs[0]->info.kind != PT_DEVICE_GPU) {
        s->loader_threads = 2;
        snprintf(s->loader_why, sizeof s->loader_why, "automatic: the devices compute on the cores");
        return;
    }
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int share = (int)(cores > 0 ? cores : 2) / cli_local_processes();
    if (share < 2) share = 2;
    int want = (ap->no_cache ? 4 : 2) * s->ndev;
    if (want > share) want = share;
    s->loader_threads = want;
    snprintf(s->loader_why, sizeof s->loader_why, "automatic: %d per GPU %s, at most %d cores",
             ap->no_cache ? 4 : 2, ap->no_cache ? "decoding every epoch" : "from the packed cache", share);
}

static int init_loaders(train_session *s, const train_args *ap, const pt_world *world, pt_error *err)
{
    pt_loader_options lo;
    memset(&lo, 0, sizeof lo);
    lo.batch_size = s->rank_batch;
    lo.rank = world->rank;
    lo.world = s->procs;
    lo.shuffle = 1;
    lo.seed = ap->seed;
    if (pt_augment_parse(ap->augment, s->train_ds.height, &lo, err) != PT_OK) return 1;
    lo.prefetch = 1;
    /* both loaders feed the model built for the training samples */
    lo.channels = s->train_ds.channels;
    lo.height = s->train_ds.height;
    lo.width = s->train_ds.width;
    lo.num_classes = s->train_ds.num_classes;
    choose_loader_threads(s, ap);
    lo.workers = s->loader_threads;
    if (pt_loader_init(&s->train_ld, &s->train_ds, &lo, err) != PT_OK) return 1;
    pt_loader_options vo;
    memset(&vo, 0, sizeof vo);
    vo.batch_size = s->capacity * s->ndev;
    vo.rank = world->rank;
    vo.world = s->procs;
    vo.seed = ap->seed;
    vo.prefetch = 1;
    vo.channels = lo.channels;
    vo.height = lo.height;
    vo.width = lo.width;
    vo.num_classes = lo.num_classes;
    if (pt_loader_init(&s->val_ld, &s->val_ds, &vo, err) != PT_OK) return 1;
    return 0;
}

/* config.json: the options by their command-line names, then what they resolved to, and
 * every resume of the run (when, and the options it changed with --allow-changes). */
static int write_config_json(train_session *s, const train_options *o, const pt_json *resume_cfg, pt_error *err)
{
    pt_strbuf *cfg = &s->cfg;
    pt_strbuf_puts(cfg, "{\"options\":{");
    args_to_json(&o->cmd, cfg);
    pt_strbuf_printf(cfg, "\n},\n\"resolved\":{\"framework\":\"polytrain %s\",\"backend\":", PT_VERSION);
    pt_strbuf_json_string(cfg, s->devs[0]->be->name);
    pt_strbuf_printf(cfg, ",\"devices\":%d,\"processes\":%d,\"lr_in_effect\":%.17g,\"device\":", s->ndev, s->procs,
                     s->lr);
    pt_strbuf_json_string(cfg, s->devs[0]->info.name);
    pt_strbuf_puts(cfg, ",\"device_details\":");
    pt_strbuf_json_string(cfg, s->devs[0]->info.details);
    pt_strbuf_printf(cfg, ",\"loader_threads\":%d", s->loader_threads);
    if (cli_backend_choice()[0]) {
        pt_strbuf_puts(cfg, ",\"backend_choice\":");
        pt_strbuf_json_string(cfg, cli_backend_choice());
    }
    pt_strbuf_printf(cfg, ",\"fuse_relu\":%s", pt_replica_fuse_relu(s->reps[0]) ? "true" : "false");
    cli_act_storage_json(s->reps[0], cfg);
    pt_strbuf_printf(cfg, ",\"precision\":\"%s\",\"precision_how\":", pt_precision_name(o->precision));
    pt_strbuf_json_string(cfg, s->precision_how);
    char graphs[256], pinned[256];
    cli_graphs_line(s->reps[0], s->ndev * s->procs > 1 ? 1 : o->args.accumulate > 1 ? 2 : 0, graphs, sizeof graphs,
                    pinned, sizeof pinned);
    cli_pinned_training_line(s->reps, s->ndev, pinned, sizeof pinned);
    pt_strbuf_puts(cfg, ",\"cuda_graphs\":");
    pt_strbuf_json_string(cfg, graphs);
    pt_strbuf_puts(cfg, ",\"pinned_input\":");
    pt_strbuf_json_string(cfg, pinned);
    pt_strbuf_puts(cfg, ",\"lr\":");
    pt_strbuf_json_double(cfg, s->lr);
    pt_strbuf_printf(cfg, ",\"parameters\":%lld,\"global_batch\":%lld,\"step_batch\":%lld,\"train_samples\":%lld,"
                          "\"val_samples\":%lld,\"dataset\":",
                     (long long)s->net->param_count, (long long)s->global_batch,
                     (long long)s->global_batch * (o->args.accumulate > 1 ? o->args.accumulate : 1), (long long)s->train_ds.count,
                     (long long)s->val_ds.count);
    pt_strbuf_json_string(cfg, s->train_ds.name);
    pt_strbuf_puts(cfg, "}");
    const pt_json *prev = resume_cfg ? pt_json_get(resume_cfg, "resumes") : NULL;
    if (o->args.resume || (prev && prev->type == PT_JSON_ARRAY && prev->count)) {
        pt_strbuf_puts(cfg, ",\n\"resumes\":[");
        size_t n = 0;
        if (prev && prev->type == PT_JSON_ARRAY)
            for (; n < prev->count; n++) {
                if (n) pt_strbuf_putc(cfg, ',');
                pt_strbuf_json_value(cfg, &prev->items[n]);
            }
        if (o->args.resume) {
            char when[32];
            const time_t now = time(NULL);
            struct tm tm;
            gmtime_r(&now, &tm);
            strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
            pt_strbuf_printf(cfg, "%s{\"time\":\"%s\",\"changes\":%s}", n ? "," : "", when,
                             o->resume_changes[0] ? o->resume_changes : "{}");
        }
        pt_strbuf_putc(cfg, ']');
    }
    pt_strbuf_puts(cfg, "}");
    return pt_strbuf_check(cfg, err) != PT_OK;
}

/* What a run directory holds that a new run would replace: its records and checkpoints, and
 * the reserved names of their interrupted commits (see core/dircommit.h; never a user's own
 * "last.old"). */
static const char *const k_run_files[] = {"config.json", "metrics.jsonl", "metrics.csv", "steps.jsonl"};
static const char *const k_run_dirs[] = {"last", "best", "ema", "tensorboard"};
static const char *const k_ckpt_dirs[] = {"last", "best", "ema"};

static int run_has(const char *dir, const char *leaf)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, leaf);
    return pt_path_exists(p);
}

/* 2: an epoch finished (metrics or a checkpoint), 1: a run started but none finished, 0: none. */
static int run_state(const char *dir)
{
    char p[4200], q[4400];
    for (size_t i = 0; i < sizeof k_ckpt_dirs / sizeof k_ckpt_dirs[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, k_ckpt_dirs[i]);
        if (pt_checkpoint_resolve(p, q, sizeof q) && i < 2) return 2; /* a commit cut short */
    }
    if (run_has(dir, "metrics.jsonl") || run_has(dir, "last") || run_has(dir, "best")) return 2;
    return run_has(dir, "config.json") || run_has(dir, "steps.jsonl") ? 1 : 0;
}

static pt_status clear_run(const char *dir, pt_error *err)
{
    char p[4200];
    for (size_t i = 0; i < sizeof k_run_files / sizeof k_run_files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, k_run_files[i]);
        if (pt_path_exists(p) && remove(p) != 0)
            return pt_fail(err, PT_ERR_IO, "cannot remove '%s': %s", p, strerror(errno));
    }
    for (size_t i = 0; i < sizeof k_run_dirs / sizeof k_run_dirs[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, k_run_dirs[i]);
        if (pt_path_exists(p)) PT_TRY(pt_remove_tree(p, err));
    }
    for (size_t i = 0; i < sizeof k_ckpt_dirs / sizeof k_ckpt_dirs[0]; i++)
        for (int slot = PT_DIR_NEW; slot <= PT_DIR_OLD; slot++) {
            char q[4400];
            snprintf(p, sizeof p, "%s/%s", dir, k_ckpt_dirs[i]);
            if (pt_dir_slot_path(p, (pt_dir_slot)slot, q, sizeof q, err) == PT_OK && pt_path_exists(q))
                PT_TRY(pt_remove_tree(q, err));
        }
    return PT_OK;
}

/* A new run never mixes its records with another's: a directory holding a finished epoch is
 * refused unless --overwrite; one whose run never finished an epoch is cleared (nothing of
 * it could be resumed). Returns 0, 1 (err) or 2 (usage, printed). */
static int prepare_out(const train_args *ap, pt_error *err)
{
    const int state = run_state(ap->out);
    if (state == 2 && !ap->overwrite) {
        cli_error("train: --out %s holds a run (%s%s%s): pick another --out, continue it with --resume %s, or pass "
                  "--overwrite to replace its records and checkpoints",
                  ap->out, run_has(ap->out, "metrics.jsonl") ? "metrics.jsonl" : "",
                  run_has(ap->out, "metrics.jsonl") && run_has(ap->out, "last") ? ", " : "",
                  run_has(ap->out, "last") ? "last/" : "", ap->out);
        return 2;
    }
    if (state == 0) return 0;
    if (clear_run(ap->out, err) != PT_OK) {
        pt_error_wrap(err, "--out %s", ap->out);
        return 1;
    }
    printf("out: %s %s\n", ap->out,
           state == 2 ? "held a run: --overwrite removed its records and checkpoints"
                      : "held a run that never finished an epoch: it starts again");
    return 0;
}

/* The run directory, made ready for a new run or checked for a resumed one. */
static int prepare_run_dir(train_session *s, const train_args *ap, const pt_world *world, pt_error *err)
{
    /* one training per run directory: the lock is taken before anything in it is read for
     * a decision or changed, and held until the run ends */
    if (world->rank == 0 && (pt_mkdir_p_made(ap->out, &s->made_out, err) != PT_OK ||
                             pt_run_lock_acquire(ap->out, "polytrain train", &s->lock, err) != PT_OK)) {
        pt_error_wrap(err, "--out %s", ap->out);
        return 1;
    }
    if (world->rank == 0 && !ap->resume) {
        const int rc = prepare_out(ap, err);
        if (rc) return rc;
    }
    if (world->rank == 0 && pt_check_dir_writable(ap->out, err) != PT_OK) return 1;
    /* a trace is written after its step, possibly hours in: its path is checked now */
    if (world->rank == 0 && ap->trace && pt_trace_check_path(ap->trace, err) != PT_OK) {
        pt_error_wrap(err, "--trace %s", ap->trace);
        return 1;
    }
    return 0;
}

/* --init-from: the file matched to the net into host copies (params, buffers), or 1 with the
 * summary in err and every mismatch in s->init_detail. */
static int read_init_from(train_session *s, const train_args *ap, float **params, float **buffers, int64_t *bn_steps,
                          pt_error *err)
{
    *params = calloc((size_t)pt_net_param_region(s->net) + 1, sizeof(float));
    *buffers = calloc((size_t)pt_net_buffer_region(s->net) + 1, sizeof(float));
    if (!*params || !*buffers) {
        pt_fail(err, PT_ERR_NOMEM, "out of host memory for --init-from");
        return 1;
    }
    pt_init_result res;
    if (pt_init_from_read(ap->init_from, s->net, ap->seed, ap->reset_head, *params, *buffers, &res, &s->init_detail,
                          err) != PT_OK) {
        pt_error_wrap(err, "--init-from into model '%s'", ap->model);
        return 1;
    }
    pt_init_result_describe(&res, s->init_what, sizeof s->init_what);
    *bn_steps = res.bn_steps;
    return 0;
}

/* The devices, a replica on each (starting from init_params when given), the loaders,
 * config.json and the trainer. */
static pt_replica_options replica_options(const train_options *o)
{
    const pt_replica_options ro = {.sync_bn = o->args.sync_bn,
                                   .precision = o->precision,
                                   .graphs = o->graphs,
                                   .pinned_input = o->pinned_input,
                                   .no_fuse_relu = !o->fuse_relu,
                                   .act_storage = o->act_storage,
                                   .layout = o->layout};
    return ro;
}

/* The devices, and what they refuse for the run's options (its precision, --cuda-graphs on,
 * --pinned-input on), before the run directory or the data is touched: a refusal leaves
 * nothing behind. */
static int open_devices(train_session *s, train_options *o, pt_error *err)
{
    train_args *ap = &o->args;
    if (cli_open_devices(ap->backend, ap->devices, ap->threads, ap->deterministic, s->devs, &s->ndev, err) !=
        PT_OK) {
        if (err->status == PT_ERR_INVALID) { /* a bad --devices list is a usage error */
            cli_error("train: %s", err->msg);
            return 2;
        }
        return 1;
    }
    /* Every device must compute in the run's precision; the first that cannot says why. */
    for (int d = 0; d < s->ndev; d++)
        if (pt_device_precision(s->devs[d], o->precision, s->precision_how, sizeof s->precision_how, err) != PT_OK) {
            pt_error_wrap(err, "--precision %s", ap->precision);
            return 1;
        }
    const pt_replica_options ro = replica_options(o);
    for (int d = 0; d < s->ndev; d++)
        if (pt_replica_check_options(s->devs[d], &ro, err) != PT_OK) return 1;
    return 0;
}

static int train_session_devices(train_session *s, train_options *o, const pt_json *resume_cfg, pt_world *world,
                                 const float *init_params, const float *init_buffers, int64_t init_bn_steps,
                                 pt_error *err)
{
    train_args *ap = &o->args;
    pt_optim_config oc;
    if (train_options_optim(o, &oc)) return 2;
    if (divide_global_batch(s, ap, resume_cfg, world, err)) return 1;
    const pt_replica_options ro = replica_options(o);
    for (int d = 0; d < s->ndev; d++)
        if (pt_replica_create_ex(s->net, s->devs[d], s->capacity, &oc, ap->seed, &ro, &s->reps[d], err) != PT_OK)
            return 1;
    for (int d = 0; d < s->ndev; d++) pt_replica_set_label_smoothing(s->reps[d], (float)ap->label_smoothing);
    /* the trainer initialises replica 0 and copies it to the others */
    if (init_params && pt_replica_set_initial_state(s->reps[0], init_params, init_buffers, init_bn_steps, err) != PT_OK)
        return 1;
    if (init_loaders(s, ap, world, err)) return 1;

    if (train_options_lr(o, s->global_batch, &s->lr, err) != PT_OK) return 1;
    snprintf(s->meta.model, sizeof s->meta.model, "%s", ap->model);
    s->meta.in_channels = s->train_ds.channels;
    s->meta.height = s->train_ds.height;
    s->meta.width = s->train_ds.width;
    s->meta.num_classes = s->train_ds.num_classes;
    memcpy(s->meta.mean, s->train_ds.mean, sizeof s->meta.mean);
    memcpy(s->meta.std, s->train_ds.std, sizeof s->meta.std);
    s->meta.class_names = s->train_ds.class_names;
    if (write_config_json(s, o, resume_cfg, err)) return 1;

    pt_train_options to;
    memset(&to, 0, sizeof to);
    to.epochs = ap->epochs;
    to.batch_per_device = ap->batch;
    to.lr = s->lr;
    to.world = world;
    to.global_samples = s->train_ld.n;
    to.rank_batch = s->rank_batch;
    to.check_replicas = ap->check_replicas;
    to.host_reduction = getenv("PT_HOST_REDUCTION") && atoi(getenv("PT_HOST_REDUCTION")) > 0;
    to.schedule = o->schedule;
    to.warmup_epochs = ap->warmup_epochs;
    to.step_epochs = ap->step_epochs;
    to.gamma = ap->gamma;
    to.label_smoothing = (float)ap->label_smoothing;
    to.cycle_momentum = ap->cycle_momentum;
    to.seed = ap->seed;
    to.out_dir = ap->out;
    to.resume = ap->resume != NULL;
    to.stop_after_epoch = ap->stop_after;
    to.config_json = s->cfg.data;
    to.log_steps = ap->log_steps;
    to.save_every_steps = ap->save_every_steps;
    to.clip_grad_norm = ap->clip_grad_norm;
    to.accumulate = ap->accumulate;
    to.ema_decay = ap->ema;
    to.keep_workspace = !o->fit_workspace;
    to.patience = ap->patience;
    to.min_delta = ap->min_delta;
    to.trace_path = ap->trace;
    to.trace_step = ap->trace_step;
    if (pt_trainer_create(s->reps, s->ndev, &s->meta, pt_loader_source(&s->train_ld), pt_loader_source(&s->val_ld),
                          &to, &s->trainer, err) != PT_OK)
        return 1;
    return 0;
}

int train_session_build(train_session *s, train_options *o, const pt_json *resume_cfg, pt_world *world,
                        pt_error *err)
{
    train_args *ap = &o->args;
    memset(s, 0, sizeof *s);
    pt_strbuf_init(&s->cfg);
    pt_strbuf_init(&s->init_detail);
    /* Pretrained weights are checked against the model before the run directory is touched:
     * a file that does not fit leaves --out as it was. */
    const int init = ap->init_from && !ap->resume;
    int rc;
    if ((rc = open_devices(s, o, err)) != 0) return rc;
    if (!init && (rc = prepare_run_dir(s, ap, world, err)) != 0) return rc;
    if (ap->resume && check_resumed_model(ap, err)) return 1;
    if (open_datasets(s, ap, err)) return 1;
    if (ap->resume && check_resumed_data(s, ap, err)) return 1;
    if (pt_model_build(ap->model, s->train_ds.channels, s->train_ds.height, s->train_ds.width,
                       s->train_ds.num_classes, &s->net, err) != PT_OK)
        return 1;
    if (!init) return train_session_devices(s, o, resume_cfg, world, NULL, NULL, 0, err);
    float *params = NULL, *buffers = NULL;
    int64_t bn_steps = 0;
    rc = read_init_from(s, ap, &params, &buffers, &bn_steps, err);
    if (!rc) rc = prepare_run_dir(s, ap, world, err);
    if (!rc) rc = train_session_devices(s, o, resume_cfg, world, params, buffers, bn_steps, err);
    free(params);
    free(buffers);
    return rc;
}

/* The directories this run made for --out (the run directory and the parents it created
 * on the way), removed when the run directory holds nothing but the lock: a run that failed
 * before writing anything (its data unreadable, say) leaves no empty directories behind. The
 * lock file goes while the lock is still held, then the directories, deepest first and each
 * only while empty (pt_made_dirs_remove), so a sibling another run made meanwhile keeps its
 * parents. */
static void forget_made_out(train_session *s)
{
    if (!s->lock || !s->made_out.path) return;
    const char *out = s->made_out.path; /* the whole --out path, as made */
    if (!pt_made_dirs_has(&s->made_out, out)) return;
    DIR *d = opendir(out);
    if (!d) return;
    int other = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL && !other;)
        other = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 && strcmp(e->d_name, PT_RUN_LOCK_FILE) != 0;
    closedir(d);
    if (other) return;
    char path[4200];
    if (snprintf(path, sizeof path, "%s/%s", out, PT_RUN_LOCK_FILE) >= (int)sizeof path) return;
    if (unlink(path) == 0 || errno == ENOENT) pt_made_dirs_remove(&s->made_out);
}

void train_session_free(train_session *s)
{
    pt_trainer_free(s->trainer);
    pt_loader_free(&s->train_ld);
    pt_loader_free(&s->val_ld);
    for (int d = 0; d < s->ndev; d++) pt_replica_free(s->reps[d]);
    cli_close_devices(s->devs, s->ndev);
    pt_net_free(s->net);
    pt_dataset_free(&s->train_ds);
    pt_dataset_free(&s->val_ds);
    pt_strbuf_free(&s->cfg);
    pt_strbuf_free(&s->init_detail);
    forget_made_out(s);
    pt_made_dirs_free(&s->made_out);
    pt_run_lock_release(s->lock);
    s->lock = NULL;
}
