/* The training loop (see trainer.h). Host buffers are allocated in pt_trainer_create;
 * the per-step path only splits the batch, runs the replicas and applies updates. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/early_stop.h"
#include "core/fileio.h"
#include "core/runlock.h"
#include "core/group.h"
#include "core/json.h"
#include "polytrain/metrics.h"
#include "core/tb_events.h"
#include "core/world_agree.h"
#include "polytrain/trace.h"
#include "polytrain/trainer.h"

struct pt_trainer {
    pt_replica **rep;
    int nrep;
    const pt_net *net;
    pt_model_meta meta;
    pt_batch_source train, val;
    pt_train_options opt;
    char *out_dir, *config_json;
    pt_schedule sched;
    int64_t steps_per_epoch;  /* optimizer steps */
    int64_t batches_per_epoch; /* the source's batches: accumulate of them per step */
    int accumulate;
    int64_t start_epoch, global_step;
    double best_top1;
    int64_t best_epoch;
    int stopped;
    double fixed_momentum;
    FILE *steps_log;
    pt_tb_writer *events;   /* rank 0: RUN/tensorboard, the scalars of metrics.jsonl and steps.jsonl */
    float *logits, *losses; /* per replica capacity, one region per replica */
    pt_group *group;
    pt_group_slice *slices;
    const pt_world *world;
    pt_world single;
    int rank0;              /* this process writes the run directory */
    int check;              /* compare replicas after every step */
    int64_t global_samples; /* per epoch, over all ranks */
    int rank_batch;
    pt_precision precision;
    int scaling;            /* fp16: dynamic loss scaling */
    pt_loss_scaler scaler;
    pt_epoch_metrics cur;   /* the epoch being trained: its loss-scale record */
    int ws_fitted;          /* the workspace has been fitted (pt_group_fit_workspace) */
    pt_trace *trace;        /* --trace: the step timeline, slots allocated at creation */
    int64_t run_steps;      /* steps this run can reach (epochs or stop_after_epoch) */
    int64_t trace_at;       /* the global step traced (-1: none) */
    /* Resuming from a mid-epoch checkpoint: the epoch's batch to continue at and its sums so far */
    int64_t resume_batch;
    pt_train_progress resumed;
    int64_t saved_step;     /* the global step of the last checkpoint (-1: none) */
    double elapsed_base;    /* training time saved in the checkpoint resumed */
    double run_start;       /* when this run's training began (monotonic) */
    int started;            /* run_start is set */
    pt_early_stop es;       /* early stopping on val top-1 (--patience) */
    char stop_reason[256];  /* why early stopping ended the run ("" while it goes on) */
    float *h_ema, *h_live;  /* --ema: host copies of the EMA and of the live weights (P + B) */
    int ema_loaded;         /* the EMA was resumed from the checkpoint (t->h_ema holds it) */
    float *bn_stash;        /* several replicas: each one's BatchNorm statistics kept across a
                               mid-epoch save, which averages them for the checkpoint only */
    pt_run_lock *lock;      /* rank 0: the run directory's lock */
    /* The last completed epoch's records (metrics.jsonl line, metrics.csv row), carried by
     * every checkpoint after it so that a resume can complete what a crash cut short. */
    char rec_jsonl[4096], rec_csv[4096];
    char resume_note[1024]; /* what a resume found and completed (pt_trainer_resume_note) */
    /* Staging ahead (pt_trainer_stages_input): the source's next batch is fetched once the
     * current step is queued and copied into the replica's free input slot while it runs.
     * want_next: the epoch has a batch after the one being stepped (set around each step);
     * have_next: next_b, or the failure next_st/next_err, is that batch, fetched already, and
     * is what the next fetch returns (a failure is reported where the batch is needed). */
    int stage, want_next, have_next;
    pt_batch next_b;
    /* next_b's parts per device (split as train_step splits it); next_ok: they are staged */
    int next_ok, next_first[64], next_count[64];
    pt_status next_st;
    pt_error next_err;
    /* the step's labels, read after the step: the fetch of the next batch invalidates the
     * source's (B x replicas) */
    int32_t *labels;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The trace's event slots, so that the traced step records without allocating: per device
 * every op of its lists, up to three spans per reduction (copies, wait) and a few more; per
 * reduction one event on the communication track. */
static pt_status create_trace(pt_trainer *t, pt_error *err)
{
    if (t->opt.trace_step >= t->run_steps)
        return pt_fail(err, PT_ERR_INVALID, "--trace-step %lld: the run has %lld step%s (0..%lld)",
                       (long long)t->opt.trace_step, (long long)t->run_steps, t->run_steps == 1 ? "" : "s",
                       (long long)t->run_steps - 1);
    int nf, nb, nu, nbn = 0;
    const pt_op *fwd = pt_replica_ops(t->rep[0], PT_LIST_FORWARD, &nf);
    const pt_op *bwd = pt_replica_ops(t->rep[0], PT_LIST_BACKWARD, &nb);
    pt_replica_ops(t->rep[0], PT_LIST_OTHER, &nu);
    for (int i = 0; i < nf; i++) nbn += fwd[i].kind == PT_OP_BN_SYNC_STATS;
    for (int i = 0; i < nb; i++) nbn += bwd[i].kind == PT_OP_BN_SYNC_BWD_STATS;
    const int reductions = pt_group_buckets(t->group) + nbn;
    /* and per micro-batch a few input spans: the copy, the next batch's fetch or wait and stage */
    PT_TRY(pt_trace_create(t->nrep, nf + nb + nu + 3 * reductions + 16 + 4 * t->accumulate, reductions + 16,
                           &t->trace, err));
    for (int d = 0; d < t->nrep; d++) {
        const pt_device *dev = pt_replica_device(t->rep[d]);
        char name[256]; /* the track keeps 127 bytes of it */
        snprintf(name, sizeof name, "device %d: %s %d (%s)", d, dev->be->name, dev->index, dev->info.name);
        pt_trace_name_track(t->trace, d, name);
    }
    char name[128];
    snprintf(name, sizeof name, "communication (%s reduction)", pt_group_reduction(t->group));
    pt_trace_name_track(t->trace, pt_trace_comm_track(t->trace), name);
    return PT_OK;
}

/* The traced step's file: the timeline and, in otherData, what step it was. */
static pt_status write_trace(pt_trainer *t, int64_t epoch, int64_t batch, int global_n, float lr, float mom,
                             pt_error *err)
{
    int nf, nb, nu;
    pt_replica_ops(t->rep[0], PT_LIST_FORWARD, &nf);
    pt_replica_ops(t->rep[0], PT_LIST_BACKWARD, &nb);
    pt_replica_ops(t->rep[0], PT_LIST_OTHER, &nu);
    pt_strbuf sb;
    pt_strbuf_init(&sb);
    pt_strbuf_printf(&sb, "\"step\":%lld,\"epoch\":%lld,\"batch\":%lld,\"samples\":%d,\"device_samples\":[",
                     (long long)t->global_step, (long long)epoch + 1, (long long)batch, global_n);
    for (int d = 0; d < t->nrep; d++) pt_strbuf_printf(&sb, "%s%d", d ? "," : "", t->slices[d].n);
    pt_strbuf_puts(&sb, "],\"lr\":");
    pt_strbuf_json_float(&sb, lr);
    pt_strbuf_puts(&sb, ",\"momentum\":");
    pt_strbuf_json_float(&sb, mom);
    pt_strbuf_puts(&sb, ",\"model\":");
    pt_strbuf_json_string(&sb, t->meta.model);
    pt_strbuf_printf(&sb, ",\"precision\":\"%s\",\"devices\":%d,\"processes\":%d,\"reduction\":\"%s\","
                          "\"buckets\":%d,\"ops\":{\"forward\":%d,\"backward\":%d,\"update\":%d}",
                     pt_precision_name(t->precision), t->nrep, t->world->size, pt_group_reduction(t->group),
                     pt_group_buckets(t->group), nf, nb, nu);
    if (t->scaling) {
        pt_strbuf_puts(&sb, ",\"loss_scale\":");
        pt_strbuf_json_double(&sb, t->cur.loss_scale);
    }
    pt_status st = pt_strbuf_check(&sb, err);
    if (st == PT_OK) st = pt_trace_write(t->trace, t->opt.trace_path, sb.data, err);
    pt_strbuf_free(&sb);
    if (st != PT_OK) return pt_error_wrap(err, "--trace");
    return PT_OK;
}

static int64_t real_bits(double d)
{
    int64_t v;
    memcpy(&v, &d, sizeof v);
    return v;
}

/* Before the first collective whose length depends on them: every rank has the same data
 * shape, model, step counts and options, or every rank fails saying what differs (else the
 * ranks would wait for each other forever). */
static pt_status agree_ranks(pt_trainer *t, pt_batch_source train, pt_batch_source val,
                             const pt_train_options *opt, pt_error *err)
{
    if (t->world->size < 2) return PT_OK;
    const pt_model_meta *m = &t->meta;
    uint64_t names = PT_AGREE_DIGEST_START, norm = PT_AGREE_DIGEST_START, model = PT_AGREE_DIGEST_START;
    for (int i = 0; m->class_names && i < m->num_classes; i++)
        names = pt_agree_digest(names, m->class_names[i], strlen(m->class_names[i]) + 1);
    norm = pt_agree_digest(norm, m->mean, sizeof m->mean);
    norm = pt_agree_digest(norm, m->std, sizeof m->std);
    model = pt_agree_digest(model, m->model, strnlen(m->model, sizeof m->model));
    const pt_optim_config *oc = pt_replica_optim(t->rep[0]);
    const pt_agree_item items[] = {
        {"devices per process", PT_AGREE_INT, t->nrep},
        {"model", PT_AGREE_DIGEST, (int64_t)model},
        {"model parameters", PT_AGREE_INT, pt_net_param_region(t->net)},
        {"model buffers", PT_AGREE_INT, pt_net_buffer_region(t->net)},
        {"input channels", PT_AGREE_INT, t->net->in_channels},
        {"image height", PT_AGREE_INT, t->net->in_height},
        {"image width", PT_AGREE_INT, t->net->in_width},
        {"classes", PT_AGREE_INT, t->net->num_classes},
        {"class names", PT_AGREE_DIGEST, (int64_t)names},
        {"normalisation mean/std", PT_AGREE_DIGEST, (int64_t)norm},
        {"training samples (all processes)", PT_AGREE_INT, t->global_samples},
        {"training batches per epoch", PT_AGREE_INT, train.batches_per_epoch(train.ctx)},
        {"validation batches", PT_AGREE_INT, val.batches_per_epoch(val.ctx)},
        {"samples per step in each process", PT_AGREE_INT, t->rank_batch},
        {"--batch-per-device", PT_AGREE_INT, opt->batch_per_device},
        {"--accumulate", PT_AGREE_INT, opt->accumulate},
        {"--epochs", PT_AGREE_INT, opt->epochs},
        {"--stop-after-epoch", PT_AGREE_INT, opt->stop_after_epoch},
        {"--seed", PT_AGREE_INT, (int64_t)opt->seed},
        {"--resume", PT_AGREE_INT, opt->resume},
        {"--save-every-steps", PT_AGREE_INT, opt->save_every_steps},
        {"--log-steps", PT_AGREE_INT, opt->log_steps},
        {"--lr (in effect)", PT_AGREE_REAL, real_bits(opt->lr)},
        {"--schedule", PT_AGREE_INT, opt->schedule},
        {"--ema", PT_AGREE_REAL, real_bits(opt->ema_decay)},
        {"--clip-grad-norm", PT_AGREE_REAL, real_bits(opt->clip_grad_norm)},
        {"--patience", PT_AGREE_INT, opt->patience},
        {"--optimizer", PT_AGREE_INT, oc->kind},
        {"--precision", PT_AGREE_INT, t->precision},
        {"--sync-bn", PT_AGREE_INT, pt_replica_sync_bn(t->rep[0])},
    };
    return pt_world_agree(t->world, items, (int)(sizeof items / sizeof items[0]), err);
}

static void split(int n, int ndev, int cap, int *first, int *count);

int pt_trainer_stages_input(pt_replica *const *replicas, int nreplicas)
{
    if (nreplicas < 1 || nreplicas > 64) return 0;
    for (int d = 0; d < nreplicas; d++)
        if (!pt_replica_pinned_input(replicas[d], NULL, 0)) return 0;
    return 1;
}

/* The group's "all queued" point: every device's step is on its device, no outputs read yet.
 * The next batch comes from the source now, once for all devices (the current one's data is
 * in the pinned buffers already and its labels in t->labels), split as train_step will split
 * it; what the step will refuse (a failed fetch, the data's end, a batch too large) is left to
 * it, not staged. */
static pt_status fetch_next(void *user, pt_error *err)
{
    (void)err;
    pt_trainer *t = user;
    t->next_ok = 0;
    if (!t->want_next) return PT_OK;
    t->want_next = 0;
    memset(&t->next_b, 0, sizeof t->next_b);
    t->next_st = t->train.next(t->train.ctx, &t->next_b, &t->next_err);
    t->have_next = 1;
    const pt_batch *b = &t->next_b;
    if (t->next_st != PT_OK || b->n < 1 || b->n > t->opt.batch_per_device * t->nrep || !b->x || !b->y ||
        !b->y2 != !b->lam)
        return PT_OK;
    split(b->n, t->nrep, t->opt.batch_per_device, t->next_first, t->next_count);
    t->next_ok = 1;
    return PT_OK;
}

/* Device d's part of the batch fetched ahead into its free input slot (on d's thread). */
static pt_status stage_part(void *user, int d, pt_replica *r, pt_error *err)
{
    pt_trainer *t = user;
    if (!t->next_ok || t->next_count[d] < 1) return PT_OK;
    const pt_batch *b = &t->next_b;
    const size_t xs = (size_t)t->net->in_channels * t->net->in_height * t->net->in_width;
    const int f = t->next_first[d];
    return pt_replica_stage_input(r, b->x + (size_t)f * xs, b->y + f, b->y2 ? b->y2 + f : NULL,
                                  b->lam ? b->lam + f : NULL, t->next_count[d], err);
}

/* The epoch's next batch: the one fetched during the last step, else from the source. */
static pt_status fetch_batch(pt_trainer *t, pt_batch *b, pt_error *err)
{
    if (!t->have_next) {
        memset(b, 0, sizeof *b); /* fields a source does not know (mixup) stay NULL */
        return t->train.next(t->train.ctx, b, err);
    }
    t->have_next = 0;
    *b = t->next_b;
    if (t->next_st != PT_OK && err) *err = t->next_err;
    return t->next_st;
}

pt_status pt_trainer_create(pt_replica **replicas, int nreplicas, const pt_model_meta *meta,
                            pt_batch_source train, pt_batch_source val,
                            const pt_train_options *opt, pt_trainer **out, pt_error *err)
{
    *out = NULL;
    if (nreplicas < 1) return pt_fail(err, PT_ERR_INVALID, "trainer: no device");
    if (opt->epochs < 1) return pt_fail(err, PT_ERR_INVALID, "--epochs must be >= 1");
    if (!(opt->lr > 0) || !isfinite(opt->lr)) return pt_fail(err, PT_ERR_INVALID, "--lr must be > 0");
    if (!(opt->clip_grad_norm >= 0) || !isfinite(opt->clip_grad_norm))
        return pt_fail(err, PT_ERR_INVALID, "--clip-grad-norm must be a finite number >= 0 (0: off)");
    if (!(opt->ema_decay >= 0 && opt->ema_decay < 1))
        return pt_fail(err, PT_ERR_INVALID, "--ema must be a decay in (0, 1), e.g. 0.999 (0: off), got %g",
                       opt->ema_decay);
    if (opt->accumulate < 0 || opt->accumulate > 1000000)
        return pt_fail(err, PT_ERR_INVALID, "--accumulate must be between 1 and 1000000, got %d", opt->accumulate);
    if (opt->patience < 0 || !(opt->min_delta >= 0) || !isfinite(opt->min_delta))
        return pt_fail(err, PT_ERR_INVALID, "--patience must be >= 0 and --min-delta a finite number >= 0");
    pt_trainer *t = calloc(1, sizeof *t);
    if (!t) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    t->rep = replicas;
    t->nrep = nreplicas;
    t->net = pt_replica_net(replicas[0]);
    t->train = train;
    t->val = val;
    t->opt = *opt;
    t->best_top1 = -1.0;
    t->best_epoch = -1;
    t->precision = pt_replica_precision(replicas[0]);
    t->scaling = pt_precision_scales_loss(t->precision);
    pt_loss_scaler_init(&t->scaler);
    /* Test hooks (README, environment): another initial scale and growth interval, so that a
     * short run meets overflow and growth. GradScaler's init_scale and growth_interval. */
    const char *e = getenv("PT_LOSS_SCALE_INIT");
    if (e && atof(e) > 0 && isfinite(atof(e))) t->scaler.scale = atof(e);
    e = getenv("PT_LOSS_SCALE_INTERVAL");
    if (e && atol(e) > 0) t->scaler.growth_interval = atol(e);
    pt_status st = pt_model_meta_copy(&t->meta, meta, err);
    if (st != PT_OK) {
        free(t);
        return st;
    }
    t->out_dir = strdup(opt->out_dir ? opt->out_dir : ".");
    t->config_json = strdup(opt->config_json ? opt->config_json : "{}");
    int K = t->net->num_classes, B = opt->batch_per_device;
    t->single = pt_world_single();
    t->world = opt->world && opt->world->size > 1 ? opt->world : &t->single;
    t->rank0 = t->world->rank == 0;
#ifdef NDEBUG
    t->check = opt->check_replicas;
#else
    t->check = 1; /* debug builds: replicas must stay bitwise identical */
#endif
    if (nreplicas * t->world->size == 1) t->check = 0;
    t->rank_batch = opt->rank_batch > 0 ? opt->rank_batch : B * nreplicas;
    t->global_samples = opt->global_samples > 0 ? opt->global_samples : train.samples_per_epoch(train.ctx);
    t->logits = malloc((size_t)B * nreplicas * K * sizeof(float));
    t->losses = malloc((size_t)B * nreplicas * sizeof(float));
    t->slices = calloc((size_t)nreplicas, sizeof *t->slices);
    t->labels = malloc((size_t)B * nreplicas * sizeof(int32_t));
    if (!t->out_dir || !t->config_json || !t->logits || !t->losses || !t->slices || !t->labels) {
        pt_trainer_free(t);
        return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    }
    if (t->rank_batch > B * nreplicas) {
        int rb = t->rank_batch;
        pt_trainer_free(t);
        return pt_fail(err, PT_ERR_INVALID, "a step of %d samples does not fit %d device(s) x %d", rb, nreplicas, B);
    }
    if (t->global_samples < (int64_t)nreplicas * t->world->size) {
        int64_t have = t->global_samples;
        pt_trainer_free(t);
        return pt_fail(err, PT_ERR_INVALID,
                       "the training set has %lld sample%s, fewer than the %d device(s) x %d process(es) to "
                       "split it across",
                       (long long)have, have == 1 ? "" : "s", nreplicas, opt->world ? opt->world->size : 1);
    }
    st = agree_ranks(t, train, val, opt, err);
    if (st == PT_OK)
        st = pt_group_create(replicas, nreplicas, t->world, opt->bucket_bytes, !opt->host_reduction, &t->group, err);
    if (st != PT_OK) {
        pt_trainer_free(t);
        return st;
    }
    t->batches_per_epoch = train.batches_per_epoch(train.ctx);
    t->accumulate = opt->accumulate > 1 ? opt->accumulate : 1;
    t->steps_per_epoch = (t->batches_per_epoch + t->accumulate - 1) / t->accumulate;
    for (int d = 0; d < nreplicas && t->accumulate > 1 && st == PT_OK; d++)
        st = pt_replica_enable_accumulation(replicas[d], err);
    if (st != PT_OK) {
        pt_trainer_free(t);
        return st;
    }
    pt_schedule *s = &t->sched;
    memset(s, 0, sizeof *s);
    s->kind = opt->schedule;
    s->lr = opt->lr;
    s->total_steps = t->steps_per_epoch * opt->epochs;
    s->warmup_steps = (int64_t)llround(opt->warmup_epochs * (double)t->steps_per_epoch);
    s->step_every = (int64_t)llround((opt->step_epochs > 0 ? opt->step_epochs : 1e18) * (double)t->steps_per_epoch);
    if (s->step_every < 1) s->step_every = 1;
    s->gamma = opt->gamma > 0 ? opt->gamma : 0.1;
    s->pct_start = 0.3;
    s->div_factor = 25.0;
    s->final_div_factor = 1e4;
    s->cycle_momentum = opt->cycle_momentum;
    s->base_momentum = 0.85;
    s->max_momentum = 0.95;
    const pt_optim_config *oc = pt_replica_optim(replicas[0]);
    const int uses_momentum = oc->kind == PT_OPTIM_SGD || oc->kind == PT_OPTIM_RMSPROP;
    t->fixed_momentum = uses_momentum ? oc->momentum : oc->beta1;
    if (s->cycle_momentum && uses_momentum && oc->momentum == 0.0f) s->cycle_momentum = 0;
    const int64_t epochs = opt->stop_after_epoch > 0 && opt->stop_after_epoch < opt->epochs ? opt->stop_after_epoch
                                                                                         : opt->epochs;
    t->run_steps = t->steps_per_epoch * epochs;
    t->trace_at = -1;
    t->saved_step = -1;
    pt_early_stop_init(&t->es);
    if (opt->ema_decay > 0) {
        const size_t n = (size_t)(pt_replica_param_region(replicas[0]) + pt_replica_buffer_region(replicas[0])) + 1;
        t->h_ema = malloc(n * sizeof(float));
        t->h_live = malloc(n * sizeof(float));
        for (int d = 0; d < nreplicas && st == PT_OK; d++) st = pt_replica_enable_ema(replicas[d], err);
        if (st == PT_OK && (!t->h_ema || !t->h_live)) st = pt_fail(err, PT_ERR_NOMEM, "out of host memory");
        if (st != PT_OK) {
            pt_trainer_free(t);
            return st;
        }
        pt_group_set_ema(t->group, (float)opt->ema_decay);
    }
    pt_group_set_clip(t->group, (float)opt->clip_grad_norm);
    if (nreplicas * t->world->size > 1 && pt_net_buffer_region(t->net) > 0) {
        t->bn_stash = malloc((size_t)pt_net_buffer_region(t->net) * nreplicas * sizeof(float));
        if (!t->bn_stash) {
            pt_trainer_free(t);
            return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
        }
    }
    if (opt->trace_path && t->rank0 && (st = create_trace(t, err)) != PT_OK) {
        pt_trainer_free(t);
        return st;
    }
    t->stage = pt_trainer_stages_input(replicas, nreplicas);
    if (t->stage) pt_group_set_queued(t->group, fetch_next, stage_part, t);
    *out = t;
    return PT_OK;
}

void pt_trainer_free(pt_trainer *t)
{
    if (!t) return;
    pt_model_meta_free(&t->meta);
    if (t->steps_log) fclose(t->steps_log);
    pt_tb_close(t->events);
    free(t->out_dir);
    free(t->config_json);
    pt_group_free(t->group);
    pt_trace_free(t->trace);
    free(t->logits);
    free(t->losses);
    free(t->slices);
    free(t->labels);
    free(t->bn_stash);
    free(t->h_ema);
    free(t->h_live);
    pt_run_lock_release(t->lock);
    free(t);
}

int64_t pt_trainer_start_epoch(const pt_trainer *t) { return t->start_epoch; }
int64_t pt_trainer_steps_per_epoch(const pt_trainer *t) { return t->steps_per_epoch; }
double pt_trainer_elapsed_s(const pt_trainer *t)
{
    return t->elapsed_base + (t->started ? now_s() - t->run_start : 0);
}
int pt_trainer_stopped_early(const pt_trainer *t) { return t->stopped; }
const char *pt_trainer_resume_note(const pt_trainer *t) { return t->resume_note[0] ? t->resume_note : NULL; }
const char *pt_trainer_stop_reason(const pt_trainer *t) { return t->stop_reason[0] ? t->stop_reason : NULL; }
double pt_trainer_lr_at(const pt_trainer *t, int64_t step) { return pt_schedule_lr(&t->sched, step); }

struct pt_group *pt_trainer_group(const pt_trainer *t) { return t->group; }

/* ---------------------------------------------------------------- multi-replica glue */

/* BatchNorm running statistics averaged across replicas (each saw its own share). */
static pt_status sync_buffers(pt_trainer *t, pt_error *err)
{
    return pt_group_average_buffers(t->group, err);
}

/* Even split of n samples by index over the devices; an uneven batch gives the last
 * devices fewer (possibly none). */
static void split(int n, int ndev, int cap, int *first, int *count)
{
    int share = (n + ndev - 1) / ndev;
    if (share > cap) share = cap;
    for (int d = 0, start = 0; d < ndev; d++) {
        int c = n - start < share ? n - start : share;
        if (c < 0) c = 0;
        first[d] = start;
        count[d] = c;
        start += c;
    }
}

/* This rank's place in global batch g: the loader's split of each global batch over ranks. */
static void rank_share(const pt_trainer *t, int64_t g, int *global_n, int64_t *first)
{
    int world = t->world->size, rank = t->world->rank;
    int64_t G = (int64_t)t->rank_batch * world, start = g * G;
    int64_t m = t->global_samples - start < G ? t->global_samples - start : G;
    if (m < 0) m = 0;
    int64_t base = m / world, extra = m % world;
    *global_n = (int)m;
    *first = start + rank * base + (rank < extra ? rank : extra);
}

/* ---------------------------------------------------------------- evaluation */

static pt_status replica_forward(void *ctx, const float *x, const int32_t *y, int n, float *logits, float *losses,
                                 pt_error *err)
{
    return pt_replica_eval(ctx, x, y, n, logits, losses, err);
}

pt_status pt_evaluate(pt_replica *r, pt_batch_source src, pt_eval_result *res, float *logits_out,
                      pt_error *err)
{
    return pt_evaluate_with(replica_forward, r, pt_replica_net(r)->num_classes, src, res, logits_out, err);
}

pt_status pt_evaluate_with(pt_eval_forward forward, void *ctx, int classes, pt_batch_source src,
                           pt_eval_result *res, float *logits_out, pt_error *err)
{
    const int K = classes;
    memset(res, 0, sizeof *res);
    PT_TRY(src.start_epoch(src.ctx, 0, err));
    int64_t total = src.samples_per_epoch(src.ctx);
    float *logits = NULL, *losses = NULL;
    int cap = 0; /* batches may come in any size */
    double loss = 0;
    int64_t top1 = 0, top5 = 0, count = 0;
    pt_status st = PT_OK;
    for (;;) {
        pt_batch b;
        memset(&b, 0, sizeof b); /* fields a source does not know stay NULL */
        if ((st = src.next(src.ctx, &b, err)) != PT_OK) break;
        if (b.n == 0) break;
        if (b.n > cap) {
            float *nl = realloc(logits, (size_t)b.n * K * sizeof(float));
            if (nl) logits = nl;
            float *ns = nl ? realloc(losses, (size_t)b.n * sizeof(float)) : NULL;
            if (ns) losses = ns;
            if (!nl || !ns) {
                st = pt_fail(err, PT_ERR_NOMEM, "out of host memory");
                break;
            }
            cap = b.n;
        }
        if ((st = forward(ctx, b.x, b.y, b.n, logits, losses, err)) != PT_OK) break;
        for (int i = 0; i < b.n; i++) loss += losses[i];
        top1 += pt_topk_hits(logits, b.y, b.n, K, 1);
        top5 += pt_topk_hits(logits, b.y, b.n, K, K < 5 ? K : 5);
        if (logits_out && count + b.n <= total)
            memcpy(logits_out + count * K, logits, (size_t)b.n * K * sizeof(float));
        count += b.n;
    }
    free(logits);
    free(losses);
    if (st != PT_OK) return st;
    if (count == 0) return pt_fail(err, PT_ERR_INVALID, "evaluation set is empty");
    res->loss = loss / (double)count;
    res->top1 = (double)top1 / (double)count;
    res->top5 = (double)top5 / (double)count;
    res->count = count;
    return PT_OK;
}

/* ---------------------------------------------------------------- run directory */

static pt_status path_join(char *dst, size_t n, const char *dir, const char *leaf, pt_error *err)
{
    if (snprintf(dst, n, "%s/%s", dir, leaf) >= (int)n)
        return pt_fail(err, PT_ERR_INVALID, "path '%s/%s' is too long", dir, leaf);
    return PT_OK;
}

static pt_status append_csv(pt_trainer *t, const pt_epoch_metrics *m, pt_error *err);
static pt_status append_text(pt_trainer *t, const char *leaf, const char *text, pt_error *err);

/* A run log rewritten from the lines kept (outbuf, olen bytes), atomically; frees outbuf and
 * the old text. */
static pt_status replace_file(const char *path, char *outbuf, size_t olen, void *old, pt_error *err)
{
    const void *chunks[1] = {outbuf};
    size_t sizes[1] = {olen};
    pt_status st = pt_write_file_atomic(path, chunks, sizes, 1, err);
    free(outbuf);
    free(old);
    return st;
}

/* UTC, ISO 8601: 2026-12-02T07:10:11Z */
static void utc_text(int64_t when, char *buf, size_t n)
{
    time_t tt = (time_t)when;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm)) snprintf(buf, n, "%lld", (long long)when);
}

/* A record into dst (n bytes) from what f (an open_memstream) collected: 0 when it did not fit. */
static int take_record(FILE *f, char **buf, size_t *len, char *dst, size_t n)
{
    int ok = fclose(f) == 0 && *buf && *len < n;
    if (ok) memcpy(dst, *buf, *len + 1);
    free(*buf);
    return ok;
}

/* The epoch's metrics.jsonl line and metrics.csv row into t->rec_jsonl and t->rec_csv: they
 * are written with the epoch's checkpoint (see save_checkpoints). */
static pt_status format_records(pt_trainer *t, const pt_epoch_metrics *m, pt_error *err)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    fprintf(f,
            "{\"epoch\":%lld,\"train_loss\":%.6f,\"train_acc\":%.6f,\"val_loss\":%.6f,"
            "\"val_top1\":%.6f,\"val_top5\":%.6f,\"val_count\":%lld,\"lr\":%.8g,\"img_per_s\":%.2f,"
            "\"train_s\":%.3f,\"epoch_s\":%.3f,\"elapsed_s\":%.3f,\"best\":%s,\"precision\":\"%s\"",
            (long long)m->epoch, m->train_loss, m->train_acc, m->val_loss, m->val_top1, m->val_top5,
            (long long)m->val_count, m->lr, m->img_per_s, m->train_s, m->epoch_s, m->elapsed_s,
            m->best ? "true" : "false", pt_precision_name(t->precision));
    char t0[40], t1[40];
    utc_text(m->started_at, t0, sizeof t0);
    utc_text(m->ended_at, t1, sizeof t1);
    fprintf(f, ",\"data_wait_s\":%.3f,\"started_at\":\"%s\",\"ended_at\":\"%s\"%s", m->data_wait_s, t0, t1,
            m->resumed_mid_epoch ? ",\"resumed_mid_epoch\":true" : "");
    fprintf(f, ",\"device_mib\":%.1f,\"peak_device_mib\":%.1f", (double)m->device_bytes / 1048576.0,
            (double)m->peak_device_bytes / 1048576.0);
    if (m->ws_before != m->ws_after)
        fprintf(f, ",\"workspace_mib_fitted\":[%.1f,%.1f]", (double)m->ws_before / 1048576.0,
                (double)m->ws_after / 1048576.0);
    if (t->opt.clip_grad_norm > 0)
        fprintf(f, ",\"clipped_steps\":%lld,\"grad_norm_mean\":%.6g", (long long)m->clipped_steps, m->grad_norm_mean);
    if (t->opt.patience > 0) fprintf(f, ",\"epochs_without_improvement\":%d", m->epochs_without_improvement);
    if (m->ema_count > 0)
        fprintf(f, ",\"ema_val_loss\":%.6f,\"ema_val_top1\":%.6f,\"ema_val_top5\":%.6f", m->ema_val_loss,
                m->ema_val_top1, m->ema_val_top5);
    if (m->stop_reason[0]) {
        /* plain text written by the trainer: no character needs escaping */
        fprintf(f, ",\"stop_reason\":\"%s\"", m->stop_reason);
    }
    if (m->loss_scale > 0) {
        /* the loss-scale history: the epoch's changes as [step, new scale] */
        fprintf(f, ",\"loss_scale\":%.17g,\"loss_scale_min\":%.17g,\"skipped_steps\":%lld,\"loss_scale_changes\":%d,"
                   "\"loss_scale_history\":[",
                m->loss_scale, m->loss_scale_min, (long long)m->skipped_steps, m->nscale_events);
        for (int i = 0; i < m->nscale_events && i < PT_SCALE_EVENTS; i++)
            fprintf(f, "%s[%lld,%.17g]", i ? "," : "", (long long)m->scale_event[i].step, m->scale_event[i].scale);
        fputc(']', f);
    }
    fputs("}\n", f);
    if (!take_record(f, &buf, &len, t->rec_jsonl, sizeof t->rec_jsonl))
        return pt_fail(err, PT_ERR_NOMEM, "the epoch's metrics line does not fit its buffer");
    return append_csv(t, m, err);
}

/* metrics.csv: metrics.jsonl's fields as a table. One column set for every run, so that a
 * run resumed in another precision keeps its header: cells a run does not have are empty,
 * and the array fields are their JSON text in a quoted cell. */
static const char csv_header[] =
    "epoch,train_loss,train_acc,val_loss,val_top1,val_top5,val_count,lr,img_per_s,train_s,epoch_s,elapsed_s,"
    "best,precision,device_mib,workspace_mib_fitted,loss_scale,loss_scale_min,skipped_steps,loss_scale_changes,"
    "loss_scale_history,data_wait_s,peak_device_mib,started_at,ended_at,clipped_steps,grad_norm_mean,"
    "epochs_without_improvement,stop_reason,ema_val_loss,ema_val_top1,ema_val_top5\n";

static pt_status append_csv(pt_trainer *t, const pt_epoch_metrics *m, pt_error *err)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    fprintf(f, "%lld,%.6f,%.6f,%.6f,%.6f,%.6f,%lld,%.8g,%.2f,%.3f,%.3f,%.3f,%s,%s,%.1f,", (long long)m->epoch,
            m->train_loss, m->train_acc, m->val_loss, m->val_top1, m->val_top5, (long long)m->val_count, m->lr,
            m->img_per_s, m->train_s, m->epoch_s, m->elapsed_s, m->best ? "true" : "false",
            pt_precision_name(t->precision), (double)m->device_bytes / 1048576.0);
    if (m->ws_before != m->ws_after)
        fprintf(f, "\"[%.1f,%.1f]\"", (double)m->ws_before / 1048576.0, (double)m->ws_after / 1048576.0);
    if (m->loss_scale > 0) {
        fprintf(f, ",%.17g,%.17g,%lld,%d,\"[", m->loss_scale, m->loss_scale_min, (long long)m->skipped_steps,
                m->nscale_events);
        for (int i = 0; i < m->nscale_events && i < PT_SCALE_EVENTS; i++)
            fprintf(f, "%s[%lld,%.17g]", i ? "," : "", (long long)m->scale_event[i].step, m->scale_event[i].scale);
        fputs("]\"", f);
    } else {
        fputs(",,,,,", f);
    }
    char t0[40], t1[40];
    utc_text(m->started_at, t0, sizeof t0);
    utc_text(m->ended_at, t1, sizeof t1);
    fprintf(f, ",%.3f,%.1f,%s,%s,", m->data_wait_s, (double)m->peak_device_bytes / 1048576.0, t0, t1);
    if (t->opt.clip_grad_norm > 0) fprintf(f, "%lld,%.6g", (long long)m->clipped_steps, m->grad_norm_mean);
    else fputc(',', f);
    if (t->opt.patience > 0) fprintf(f, ",%d,", m->epochs_without_improvement);
    else fputs(",,", f);
    if (m->stop_reason[0]) fprintf(f, "\"%s\"", m->stop_reason); /* has commas, never a quote */
    if (m->ema_count > 0) fprintf(f, ",%.6f,%.6f,%.6f\n", m->ema_val_loss, m->ema_val_top1, m->ema_val_top5);
    else fputs(",,,\n", f);
    if (!take_record(f, &buf, &len, t->rec_csv, sizeof t->rec_csv))
        return pt_fail(err, PT_ERR_NOMEM, "the epoch's metrics.csv row does not fit its buffer");
    return PT_OK;
}

/* Appends text (whole lines) to out_dir/leaf. A failure can leave part of a line, which the
 * next resume drops before it writes the line again from the checkpoint. */
static pt_status append_text(pt_trainer *t, const char *leaf, const char *text, pt_error *err)
{
    char path[4200];
    PT_TRY(path_join(path, sizeof path, t->out_dir, leaf, err));
    return pt_append_file(path, text, strlen(text), err);
}

/* The header and the rows of epochs 1..keep (those of the checkpoint resumed): rows a
 * crash left after the checkpoint go, as in metrics.jsonl. A file with another header
 * (another version's columns) starts again. */
static pt_status start_csv(pt_trainer *t, int64_t keep, const char *last_row, pt_error *err)
{
    char path[4200];
    PT_TRY(path_join(path, sizeof path, t->out_dir, "metrics.csv", err));
    void *data = NULL;
    size_t size = 0, hlen = strlen(csv_header), olen = hlen, rlen = last_row ? strlen(last_row) : 0;
    if (rlen) keep--; /* epoch `keep`'s row is last_row, as its checkpoint recorded it */
    if (keep > 0 && pt_path_exists(path)) PT_TRY(pt_read_file(path, (size_t)1 << 30, &data, &size, err));
    char *text = data, *outbuf = malloc(size + hlen + rlen + 1);
    if (!outbuf) {
        free(data);
        return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    }
    memcpy(outbuf, csv_header, hlen);
    if (text && size >= hlen && memcmp(text, csv_header, hlen) == 0) {
        for (size_t pos = hlen, end; pos < size; pos = end + 1) {
            for (end = pos; end < size && text[end] != '\n'; end++) {}
            char *after = NULL;
            long long epoch = strtoll(text + pos, &after, 10);
            if (end < size && after != text + pos && *after == ',' && epoch >= 1 && epoch <= keep) {
                memcpy(outbuf + olen, text + pos, end - pos + 1);
                olen += end - pos + 1;
            }
        }
    }
    memcpy(outbuf + olen, last_row ? last_row : "", rlen);
    olen += rlen;
    return replace_file(path, outbuf, olen, data, err);
}

/* RUN/tensorboard: a new event file per run; a resumed run skips the steps already there. */
static pt_status open_events(pt_trainer *t, pt_error *err)
{
    char path[4200];
    PT_TRY(path_join(path, sizeof path, t->out_dir, "tensorboard", err));
    return pt_tb_open(path, t->opt.resume, &t->events, err);
}

/* The epoch's scalars at the global step it ended on; the file is flushed with the step
 * records before it, so a reader sees whole epochs. */
static pt_status log_epoch_events(pt_trainer *t, const pt_epoch_metrics *m, pt_error *err)
{
    const struct { const char *tag; double value; } s[] = {
        {"train/loss", m->train_loss}, {"train/accuracy", m->train_acc}, {"val/loss", m->val_loss},
        {"val/top1", m->val_top1}, {"val/top5", m->val_top5}, {"lr", m->lr},
        {"throughput/img_per_s", m->img_per_s}, {"time/epoch_s", m->epoch_s}, {"loss_scale", m->loss_scale},
    };
    const int n = (int)(sizeof s / sizeof s[0]) - (m->loss_scale > 0 ? 0 : 1);
    for (int i = 0; i < n; i++) PT_TRY(pt_tb_scalar(t->events, s[i].tag, t->global_step, s[i].value, err));
    if (m->ema_count > 0) {
        PT_TRY(pt_tb_scalar(t->events, "ema/val_loss", t->global_step, m->ema_val_loss, err));
        PT_TRY(pt_tb_scalar(t->events, "ema/val_top1", t->global_step, m->ema_val_top1, err));
        PT_TRY(pt_tb_scalar(t->events, "ema/val_top5", t->global_step, m->ema_val_top5, err));
    }
    return pt_tb_flush(t->events, err);
}

/* steps.jsonl: one line per update. Kept open for the run (no open per step). */
static pt_status append_step(pt_trainer *t, int64_t step, int64_t epoch, double loss, double lr,
                             pt_error *err)
{
    if (!t->steps_log) {
        char path[4200];
        PT_TRY(path_join(path, sizeof path, t->out_dir, "steps.jsonl", err));
        t->steps_log = fopen(path, "a");
        if (!t->steps_log) return pt_fail(err, PT_ERR_IO, "cannot append to '%s': %s", path, strerror(errno));
    }
    char scale[160] = "";
    const int skipped = pt_group_last_step_skipped(t->group);
    if (t->scaling)
        snprintf(scale, sizeof scale, ",\"loss_scale\":%.17g,\"skipped\":%s", t->cur.loss_scale,
                 skipped ? "true" : "false");
    if (t->opt.clip_grad_norm > 0 && !skipped) {
        /* the norm before clipping, as clip_grad_norm_ returns it */
        const size_t l = strlen(scale);
        snprintf(scale + l, sizeof scale - l, ",\"grad_norm\":%.9g", pt_group_last_grad_norm(t->group));
    }
    /* a line at a time: a reader (tail -f, a plot) sees every step as it ends */
    if (fprintf(t->steps_log, "{\"step\":%lld,\"epoch\":%lld,\"loss\":%.9g,\"lr\":%.9g%s}\n", (long long)step,
                (long long)epoch, loss, lr, scale) < 0 ||
        fflush(t->steps_log) != 0)
        return pt_fail(err, PT_ERR_IO, "cannot write steps.jsonl in '%s': %s", t->out_dir, strerror(errno));
    return PT_OK;
}

/* On resume, lines of a run log (metrics.jsonl by "epoch", steps.jsonl by "step") written
 * after the checkpoint (before a crash that lost their checkpoint) are dropped so the file
 * matches the weights: lines with 1 <= key <= keep stay (key 0 too for "step"). */
static pt_status trim_jsonl(pt_trainer *t, const char *leaf, const char *key, int64_t min_key,
                            int64_t keep, const char *last_line, pt_error *err)
{
    char path[4200];
    PT_TRY(path_join(path, sizeof path, t->out_dir, leaf, err));
    const size_t llen = last_line ? strlen(last_line) : 0;
    if (llen) keep--; /* line `keep` is last_line, as its checkpoint recorded it */
    if (!pt_path_exists(path) && !llen) return PT_OK;
    void *data = NULL;
    size_t size = 0;
    if (pt_path_exists(path)) PT_TRY(pt_read_file(path, (size_t)1 << 30, &data, &size, err));
    char *text = data, *outbuf = malloc(size + llen + 1);
    if (!outbuf) {
        free(data);
        return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    }
    size_t olen = 0, pos = 0;
    while (pos < size) {
        size_t end = pos;
        while (end < size && text[end] != '\n') end++;
        pt_json *js = NULL;
        int64_t value = -1;
        if (pt_json_parse(text + pos, end - pos, NULL, &js, NULL) == PT_OK) {
            if (pt_json_get_int64(js, key, &value, NULL) != PT_OK) value = -1;
            pt_json_free(js);
        }
        if (value >= min_key && value <= keep) {
            memcpy(outbuf + olen, text + pos, end - pos);
            olen += end - pos;
            outbuf[olen++] = '\n';
        }
        pos = end + 1;
    }
    memcpy(outbuf + olen, last_line ? last_line : "", llen);
    olen += llen;
    return replace_file(path, outbuf, olen, data, err);
}

static void schedule_json(const pt_trainer *t, char *dst, size_t n)
{
    snprintf(dst, n,
             "{\"kind\":\"%s\",\"lr\":%.17g,\"total_steps\":%lld,\"warmup_steps\":%lld,"
             "\"step\":%lld}",
             pt_schedule_name(t->sched.kind), t->sched.lr, (long long)t->sched.total_steps,
             (long long)t->sched.warmup_steps, (long long)t->global_step);
}

/* The epoch in progress when a checkpoint is saved part way through it. */
typedef struct mid_epoch {
    int64_t step;          /* updates done in it */
    double loss_sum, train_s;
    int64_t hits, seen;
    int64_t clipped;       /* gradient clipping: steps clipped, and the sum of the norms */
    double norm_sum;
} mid_epoch;

/* last/ (and best/ when best) at the current step. mid: NULL at an epoch's end. */
static pt_status save_checkpoints(pt_trainer *t, int64_t epochs_done, int best, const mid_epoch *mid,
                                  pt_error *err);

/* ---------------------------------------------------------------- weight EMA */

/* The EMA into t->h_ema (params then buffers): replica 0's parameters (every replica's are
 * the same) and the BatchNorm buffers averaged over the replicas of every process, as
 * sync_buffers does with the live ones. Every rank calls it. */
static pt_status read_ema(pt_trainer *t, pt_error *err)
{
    const int64_t P = pt_replica_param_region(t->rep[0]), B = pt_replica_buffer_region(t->rep[0]);
    PT_TRY(pt_device_read(pt_replica_device(t->rep[0]), t->h_ema, pt_replica_ema_mem(t->rep[0]),
                          (size_t)(P + B) * sizeof(float), err));
    const int total = t->nrep * t->world->size;
    if (B == 0 || total == 1 || pt_replica_sync_bn(t->rep[0])) return PT_OK;
    for (int d = 1; d < t->nrep; d++) {
        pt_mem m = pt_replica_ema_mem(t->rep[d]);
        m.off += (size_t)P * sizeof(float);
        PT_TRY(pt_device_read(pt_replica_device(t->rep[d]), t->h_live, m, (size_t)B * sizeof(float), err));
        for (int64_t i = 0; i < B; i++) t->h_ema[P + i] += t->h_live[i];
    }
    if (t->world->size > 1) PT_TRY(t->world->allreduce_sum_f32(t->world->ctx, t->h_ema + P, (size_t)B, err));
    for (int64_t i = 0; i < B; i++) t->h_ema[P + i] /= (float)total;
    return PT_OK;
}

/* After a resume: rank 0's EMA (t->h_ema, read from the checkpoint) on every replica of
 * every process. */
static pt_status share_ema(pt_trainer *t, pt_error *err)
{
    const int64_t P = pt_replica_param_region(t->rep[0]), B = pt_replica_buffer_region(t->rep[0]);
    const size_t bytes = (size_t)(P + B) * sizeof(float);
    if (t->world->size > 1) PT_TRY(t->world->broadcast(t->world->ctx, t->h_ema, bytes, 0, err));
    for (int d = 0; d < t->nrep; d++) {
        PT_TRY(pt_device_write(pt_replica_device(t->rep[d]), pt_replica_ema_mem(t->rep[d]), t->h_ema, bytes, err));
        pt_replica_set_ema_started(t->rep[d], 1);
    }
    return PT_OK;
}

static pt_status evaluate_group(pt_trainer *t, const pt_train_callbacks *cb, int64_t epoch, pt_eval_result *res,
                                int *interrupted, pt_error *err);

/* The EMA's evaluation after an epoch, and out_dir/ema: the EMA takes the weights' place on
 * every replica (its buffers averaged over them), then the live weights come back. */
static pt_status evaluate_ema(pt_trainer *t, const pt_train_callbacks *cb, int64_t epoch, pt_epoch_metrics *m,
                              int *stopped, pt_error *err)
{
    const int64_t P = pt_replica_param_region(t->rep[0]);
    /* after sync_buffers every replica holds the same weights and buffers: one copy */
    PT_TRY(pt_replica_read_state(t->rep[0], t->h_live, t->h_live + P, NULL, err));
    pt_status st = PT_OK;
    for (int d = 0; d < t->nrep && st == PT_OK; d++) st = pt_replica_ema_to_live(t->rep[d], err);
    if (st == PT_OK) st = sync_buffers(t, err);
    pt_eval_result ev;
    memset(&ev, 0, sizeof ev);
    if (st == PT_OK) st = evaluate_group(t, cb, epoch, &ev, stopped, err);
    if (st == PT_OK && !*stopped && t->rank0) {
        /* staged: the epoch's commit (save_checkpoints) installs it with last/ */
        char path[4200];
        t->meta.epoch = epoch;
        t->meta.global_step = t->global_step;
        st = path_join(path, sizeof path, t->out_dir, "ema", err);
        if (st == PT_OK) st = pt_checkpoint_stage(path, t->rep[0], &t->meta, NULL, err);
    }
    pt_error e2;
    for (int d = 0; d < t->nrep; d++) {
        pt_status w = pt_replica_write_state(t->rep[d], t->h_live, t->h_live + P, NULL, &e2);
        if (w != PT_OK && st == PT_OK) {
            *err = e2;
            st = w;
        }
    }
    PT_TRY(st);
    m->ema_val_loss = ev.loss;
    m->ema_val_top1 = ev.top1;
    m->ema_val_top5 = ev.top5;
    m->ema_count = ev.count;
    return PT_OK;
}

/* After last/ took an epoch's end (the epoch's commit point): best/ and ema/ staged for it
 * are installed and its records appended. Every step can be redone from last/ alone, so a
 * crash or a full disk in here is completed by the next resume (complete_epoch). */
static pt_status finish_epoch(pt_trainer *t, int64_t epochs_done, int *installed_best, pt_error *err)
{
    static const char *const leaves[] = {"best", "ema"};
    char path[4200];
    *installed_best = 0;
    for (int i = 0; i < 2; i++) {
        int done = 0;
        PT_TRY(path_join(path, sizeof path, t->out_dir, leaves[i], err));
        PT_TRY(pt_checkpoint_install_staged(path, t->meta.run_id, epochs_done, t->global_step, &done, err));
        if (i == 0) *installed_best = done;
    }
    return PT_OK;
}

/* Mid-epoch, the replicas' own BatchNorm statistics (each saw its share of the batches) go
 * back after the save: saving every N steps must not change the run. */
static pt_status save_mid_epoch(pt_trainer *t, int64_t epochs_done, const mid_epoch *mid, pt_error *err)
{
    const size_t bytes = (size_t)pt_net_buffer_region(t->net) * sizeof(float);
    if (t->bn_stash)
        for (int d = 0; d < t->nrep; d++)
            PT_TRY(pt_device_read(pt_replica_device(t->rep[d]), t->bn_stash + d * (bytes / sizeof(float)),
                                  pt_replica_buffer_mem(t->rep[d]), bytes, err));
    PT_TRY(save_checkpoints(t, epochs_done, 0, mid, err));
    if (t->bn_stash)
        for (int d = 0; d < t->nrep; d++)
            PT_TRY(pt_device_write(pt_replica_device(t->rep[d]), pt_replica_buffer_mem(t->rep[d]),
                                   t->bn_stash + d * (bytes / sizeof(float)), bytes, err));
    return PT_OK;
}

static pt_status save_checkpoints(pt_trainer *t, int64_t epochs_done, int best, const mid_epoch *mid,
                                  pt_error *err)
{
    PT_TRY(sync_buffers(t, err));
    mid_epoch sums = {0, 0, 0, 0, 0, 0, 0};
    if (mid) {
        /* the epoch's sums over every process: rank 0 saves them, a resume restarts the
         * others' at 0, so the epoch's all-reduced totals are what a straight run gets */
        sums = *mid;
        if (t->world->size > 1) {
            double v[3] = {sums.loss_sum, (double)sums.hits, (double)sums.seen};
            PT_TRY(t->world->allreduce_sum_f64(t->world->ctx, v, 3, err));
            sums.loss_sum = v[0];
            sums.hits = (int64_t)v[1];
            sums.seen = (int64_t)v[2];
        }
    }
    t->saved_step = t->global_step;
    const int ema = t->h_ema && pt_replica_ema_started(t->rep[0]);
    if (ema) PT_TRY(read_ema(t, err));
    if (!t->rank0) return PT_OK;
    pt_train_progress pr;
    memset(&pr, 0, sizeof pr);
    pr.epoch = epochs_done;
    pr.elapsed_s = pt_trainer_elapsed_s(t);
    pr.ema = ema ? t->h_ema : NULL;
    pr.es_best = t->es.best;
    pr.es_wait = t->es.wait;
    snprintf(pr.stop_reason, sizeof pr.stop_reason, "%s", t->stop_reason);
    if (mid) {
        pr.epoch_step = sums.step;
        pr.epoch_steps = t->steps_per_epoch;
        pr.epoch_loss_sum = sums.loss_sum;
        pr.epoch_hits = sums.hits;
        pr.epoch_seen = sums.seen;
        pr.epoch_train_s = sums.train_s;
        pr.epoch_clipped = sums.clipped;
        pr.epoch_norm_sum = sums.norm_sum;
        if (t->scaling) {
            pr.epoch_skipped = t->cur.skipped_steps;
            pr.epoch_scale_min = t->cur.loss_scale_min;
            pr.epoch_scale_changes = t->cur.nscale_events;
            for (int i = 0; i < t->cur.nscale_events && i < PT_PROGRESS_SCALE_EVENTS; i++) {
                pr.epoch_scale_step[i] = t->cur.scale_event[i].step;
                pr.epoch_scale_value[i] = t->cur.scale_event[i].scale;
            }
        }
    }
    pr.global_step = t->global_step;
    pr.bn_steps = pt_replica_bn_steps(t->rep[0]);
    pr.seed = t->opt.seed;
    pr.best_top1 = t->best_top1;
    pr.best_epoch = t->best_epoch;
    schedule_json(t, pr.schedule, sizeof pr.schedule);
    snprintf(pr.precision, sizeof pr.precision, "%s", pt_precision_name(t->precision));
    if (t->scaling) {
        pr.loss_scale = t->scaler.scale;
        pr.loss_scale_growth_tracker = t->scaler.growth_tracker;
        pr.skipped_steps = t->scaler.skipped;
    }
    /* the records of the last completed epoch travel with every checkpoint after it */
    snprintf(pr.record_jsonl, sizeof pr.record_jsonl, "%s", t->rec_jsonl);
    snprintf(pr.record_csv, sizeof pr.record_csv, "%s", t->rec_csv);
    t->meta.epoch = epochs_done;
    t->meta.global_step = t->global_step;
    /* One commit per epoch end: best/ (and ema/, see evaluate_ema) staged beside their
     * directories, then last/ replaced (the commit point: it holds everything the rest
     * needs), then the staged directories installed and the records appended. */
    char path[4200];
    if (best) {
        PT_TRY(path_join(path, sizeof path, t->out_dir, "best", err));
        PT_TRY(pt_checkpoint_stage(path, t->rep[0], &t->meta, &pr, err));
    }
    PT_TRY(path_join(path, sizeof path, t->out_dir, "last", err));
    PT_TRY(pt_checkpoint_save(path, t->rep[0], &t->meta, &pr, err));
    if (mid) return PT_OK;
    int installed = 0;
    PT_TRY(finish_epoch(t, epochs_done, &installed, err));
    PT_TRY(append_text(t, "metrics.jsonl", t->rec_jsonl, err));
    return append_text(t, "metrics.csv", t->rec_csv, err);
}

/* A fresh run's id, stamped into each of its checkpoints: 128 random bits in hex. */
static void new_run_id(pt_trainer *t)
{
    unsigned char b[16];
    int ok = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (f) {
        ok = fread(b, 1, sizeof b, f) == sizeof b;
        fclose(f);
    }
    if (!ok) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40);
        for (int i = 0; i < 16; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            b[i] = (unsigned char)(x >> 56);
        }
    }
    for (int i = 0; i < 16; i++) snprintf(t->meta.run_id + 2 * i, 3, "%02x", b[i]);
}

/* A record a checkpoint carried: one whole line, of epoch `epoch` (its first field). */
static int record_of_epoch(const char *rec, int64_t epoch, int json)
{
    const size_t n = strlen(rec);
    if (n < 2 || rec[n - 1] != '\n' || memchr(rec, '\n', n - 1)) return 0;
    char head[48];
    if (json) snprintf(head, sizeof head, "{\"epoch\":%lld,", (long long)epoch);
    else snprintf(head, sizeof head, "%lld,", (long long)epoch);
    return strncmp(rec, head, strlen(head)) == 0;
}

/* Resuming: the writer's side of the commits, under the run lock. Commits a crash cut short
 * between their renames are settled, best/ and ema/ staged for last/'s epoch are installed
 * (others discarded), and the records of last/'s epoch are written from the copy it holds;
 * then t->resume_note says what the run directory holds. */
static pt_status complete_epoch(pt_trainer *t, const pt_train_progress *pr, int *have_records, pt_error *err)
{
    *have_records = 0;
    snprintf(t->meta.run_id, sizeof t->meta.run_id, "%s", pr->run_id);
    if (!t->meta.run_id[0]) new_run_id(t); /* a checkpoint from before stamps: its run gets one now */
    t->global_step = pr->global_step;
    int installed = 0;
    PT_TRY(finish_epoch(t, pr->epoch, &installed, err));
    if (record_of_epoch(pr->record_jsonl, pr->epoch, 1) && record_of_epoch(pr->record_csv, pr->epoch, 0)) {
        snprintf(t->rec_jsonl, sizeof t->rec_jsonl, "%s", pr->record_jsonl);
        snprintf(t->rec_csv, sizeof t->rec_csv, "%s", pr->record_csv);
        *have_records = 1;
    }
    char path[4200], best[160] = "";
    PT_TRY(path_join(path, sizeof path, t->out_dir, "best", err));
    pt_model_meta bm;
    pt_error ignored;
    if (pt_checkpoint_read_meta(path, &bm, &ignored) != PT_OK) {
        snprintf(best, sizeof best, "best/ is missing or unreadable");
    } else {
        if (bm.run_id[0] && strcmp(bm.run_id, t->meta.run_id) != 0)
            snprintf(best, sizeof best, "best/ is from another run");
        else if (bm.run_id[0] && bm.epoch != pr->best_epoch)
            snprintf(best, sizeof best, "best/ holds epoch %lld, not the best epoch %lld", (long long)bm.epoch,
                     (long long)pr->best_epoch);
        else
            snprintf(best, sizeof best, "best/ holds epoch %lld (val_top1 %.4f)", (long long)pr->best_epoch,
                     pr->best_top1);
        pt_model_meta_free(&bm);
    }
    snprintf(t->resume_note, sizeof t->resume_note, "last/ holds %s%lld epoch%s (step %lld)%s; %s%s",
             pr->epoch_step > 0 ? "a mid-epoch state after " : "", (long long)pr->epoch, pr->epoch == 1 ? "" : "s",
             (long long)pr->global_step, pr->epoch_step > 0 ? " and part of the next" : "",
             pr->best_epoch >= 1 ? best : "no best/ yet",
             installed ? "; best/ of that epoch was installed now, completing its commit" : "");
    return PT_OK;
}

/* Rank 0 reads or initialises the state and writes the run directory; every replica of
 * every rank then starts from rank 0's replica 0. */
static pt_status prepare_rank0(pt_trainer *t, pt_error *err)
{
    /* one writer per run directory, from before anything in it is read or written */
    PT_TRY(pt_mkdir_p(t->out_dir, err));
    PT_TRY(pt_run_lock_acquire(t->out_dir, "polytrain train", &t->lock, err));
    /* the temp files of the run's own writes that a kill left; under the lock no other
     * process writes them */
    static const char *const run_files[] = {"metrics.jsonl", "metrics.csv", "steps.jsonl", "config.json",
                                            "pt_write_probe"};
    PT_TRY(pt_output_sweep(t->out_dir, run_files, (int)(sizeof run_files / sizeof run_files[0]), err));
    PT_TRY(pt_check_dir_writable(t->out_dir, err));
    char path[4200];
    static const char *const ckpts[] = {"last", "best", "ema"};
    for (int i = 0; i < 3; i++) {
        PT_TRY(path_join(path, sizeof path, t->out_dir, ckpts[i], err));
        PT_TRY(pt_checkpoint_recover(path, err));
    }
    int have_records = 0;
    if (t->opt.resume) {
        PT_TRY(path_join(path, sizeof path, t->out_dir, "last", err));
        pt_train_progress pr;
        pt_status st = pt_checkpoint_load(path, t->rep[0], &pr, err);
        if (st != PT_OK) return pt_error_wrap(err, "cannot resume from '%s'", path);
        if (pr.epoch > t->opt.epochs)
            return pt_fail(err, PT_ERR_INVALID, "'%s' has already trained %lld epochs, more than --epochs %d",
                           path, (long long)pr.epoch, t->opt.epochs);
        if (pr.global_step != pr.epoch * t->steps_per_epoch + pr.epoch_step || pr.epoch_step > t->steps_per_epoch)
            return pt_fail(err, PT_ERR_MISMATCH,
                           "'%s' was saved at step %lld after %lld epoch(s) and %lld step(s) of the next, which "
                           "does not fit this configuration's %lld steps per epoch (different data, limit or "
                           "global batch size?)",
                           path, (long long)pr.global_step, (long long)pr.epoch, (long long)pr.epoch_step,
                           (long long)t->steps_per_epoch);
        if (pr.epoch_step > 0 && pr.epoch_steps != t->steps_per_epoch)
            return pt_fail(err, PT_ERR_MISMATCH,
                           "'%s' was saved at step %lld of an epoch of %lld steps; this configuration has %lld steps "
                           "per epoch, so the epoch cannot continue where it stopped (different data, limit or "
                           "global batch size?)",
                           path, (long long)pr.epoch_step, (long long)pr.epoch_steps, (long long)t->steps_per_epoch);
        if (pr.epoch_step > 0 && pr.epoch >= t->opt.epochs)
            return pt_fail(err, PT_ERR_INVALID, "'%s' is part way through epoch %lld, more than --epochs %d", path,
                           (long long)pr.epoch + 1, t->opt.epochs);
        if (pr.epoch_step > 0 && !t->train.seek)
            return pt_fail(err, PT_ERR_INVALID,
                           "'%s' was saved part way through epoch %lld and this data source cannot start an epoch "
                           "part way",
                           path, (long long)pr.epoch + 1);
        if (pr.seed != t->opt.seed)
            return pt_fail(err, PT_ERR_MISMATCH, "'%s' was trained with --seed %llu, not %llu", path,
                           (unsigned long long)pr.seed, (unsigned long long)t->opt.seed);
        t->start_epoch = pr.epoch;
        t->global_step = pr.global_step;
        t->saved_step = pr.global_step;
        t->resume_batch = pr.epoch_step;
        t->resumed = pr;
        t->elapsed_base = pr.elapsed_s;
        /* the weight EMA goes on from the checkpoint's; a run that had none starts it now */
        if (t->h_ema && pr.has_ema) {
            st = pt_checkpoint_load_ema(path, t->rep[0], t->h_ema, err);
            if (st != PT_OK) return pt_error_wrap(err, "cannot resume the weight EMA from '%s'", path);
            t->ema_loaded = 1;
        }
        /* A run resumed in fp16 continues its scaler; one that was not fp16 starts afresh. */
        if (t->scaling && pr.loss_scale > 0) {
            t->scaler.scale = pr.loss_scale;
            t->scaler.growth_tracker = pr.loss_scale_growth_tracker;
            t->scaler.skipped = pr.skipped_steps;
        }
        t->best_top1 = pr.best_top1;
        t->best_epoch = pr.best_epoch;
        if (pr.es_best != 0 || pr.es_wait != 0) { /* else a checkpoint from before early stopping */
            t->es.best = pr.es_best;
            t->es.wait = pr.es_wait;
        }
        if (t->opt.patience > 0 && t->es.wait >= t->opt.patience && pr.epoch < t->opt.epochs)
            return pt_fail(err, PT_ERR_INVALID,
                           "'%s' stopped early after epoch %lld (%s): with --patience %d there is nothing to continue "
                           "(a larger --patience with --allow-changes trains on)",
                           path, (long long)pr.epoch,
                           pr.stop_reason[0] ? pr.stop_reason : "no val_top1 improvement for --patience epochs",
                           t->opt.patience);
        PT_TRY(complete_epoch(t, &pr, &have_records, err));
        PT_TRY(trim_jsonl(t, "metrics.jsonl", "epoch", 1, pr.epoch, have_records ? t->rec_jsonl : NULL, err));
        PT_TRY(trim_jsonl(t, "steps.jsonl", "step", 0, pr.global_step - 1, NULL, err));
    } else {
        new_run_id(t);
        PT_TRY(pt_replica_init_params(t->rep[0], t->opt.seed, err));
        const void *chunks[1] = {""};
        size_t sizes[1] = {0};
        PT_TRY(path_join(path, sizeof path, t->out_dir, "metrics.jsonl", err));
        PT_TRY(pt_write_file_atomic(path, chunks, sizes, 1, err));
        PT_TRY(path_join(path, sizeof path, t->out_dir, "steps.jsonl", err));
        if (t->opt.log_steps) PT_TRY(pt_write_file_atomic(path, chunks, sizes, 1, err));
        else if (pt_path_exists(path)) remove(path);
    }
    PT_TRY(start_csv(t, t->start_epoch, have_records ? t->rec_csv : NULL, err));
    PT_TRY(open_events(t, err));
    PT_TRY(path_join(path, sizeof path, t->out_dir, "config.json", err));
    const void *chunks[2] = {t->config_json, "\n"};
    size_t sizes[2] = {strlen(t->config_json), 1};
    return pt_write_file_atomic(path, chunks, sizes, 2, err);
}

static pt_status prepare_run(pt_trainer *t, pt_error *err)
{
    if (t->rank0) PT_TRY(prepare_rank0(t, err));
    if (t->world->size > 1) {
        double v[13] = {(double)t->start_epoch, (double)t->global_step, t->best_top1, (double)t->best_epoch,
                        t->scaler.scale, (double)t->scaler.growth_tracker, (double)t->scaler.skipped,
                        (double)t->resume_batch, (double)t->saved_step, t->elapsed_base, t->es.best,
                        (double)t->es.wait, (double)t->ema_loaded};
        PT_TRY(t->world->broadcast(t->world->ctx, v, sizeof v, 0, err));
        t->start_epoch = (int64_t)v[0];
        t->global_step = (int64_t)v[1];
        t->best_top1 = v[2];
        t->best_epoch = (int64_t)v[3];
        t->scaler.scale = v[4];
        t->scaler.growth_tracker = (int64_t)v[5];
        t->scaler.skipped = (int64_t)v[6];
        t->resume_batch = (int64_t)v[7];
        t->saved_step = (int64_t)v[8];
        t->elapsed_base = v[9];
        t->es.best = v[10];
        t->es.wait = (int64_t)v[11];
        t->ema_loaded = (int)v[12];
    }
    PT_TRY(pt_group_broadcast_state(t->group, err));
    if (t->ema_loaded) PT_TRY(share_ema(t, err));
    return PT_OK;
}

/* Global samples in the source's batches [first, first + count) of an epoch. */
static int64_t step_samples(const pt_trainer *t, int64_t first, int count)
{
    int64_t n = 0;
    for (int k = 0; k < count; k++) {
        int gn;
        int64_t f;
        rank_share(t, first + k, &gn, &f);
        n += gn;
    }
    return n;
}

/* Micro-batch `micro` of `count` making the optimizer step at t->global_step (count 1: the
 * whole step); step_n: the step's global samples. The last one updates the weights. */
static pt_status train_step(pt_trainer *t, const pt_batch *b, int64_t epoch, int micro, int count, int64_t step_n,
                            double *loss_sum, int64_t *hits, pt_error *err)
{
    int K = t->net->num_classes;
    int B = t->opt.batch_per_device;
    if (b->n > B * t->nrep)
        return pt_fail(err, PT_ERR_INVALID, "training batch of %d samples is more than %d device(s) x %d",
                       b->n, t->nrep, B);
    int global_n;
    int64_t first;
    rank_share(t, b->batch, &global_n, &first);
    if (global_n < 1) return pt_fail(err, PT_ERR_INVALID, "training batch %lld is empty", (long long)b->batch);
    size_t xs = (size_t)t->net->in_channels * t->net->in_height * t->net->in_width;
    int firsts[64], counts[64];
    int *fs = firsts, *cs = counts;
    if (t->nrep > 64) return pt_fail(err, PT_ERR_INVALID, "at most 64 devices per process");
    split(b->n, t->nrep, B, fs, cs);
    for (int d = 0; d < t->nrep; d++) {
        pt_group_slice *s = &t->slices[d];
        int st0 = fs[d];
        s->n = cs[d];
        s->x = b->x + (size_t)st0 * xs;
        s->y = b->y + st0;
        s->y2 = b->y2 ? b->y2 + st0 : NULL;
        s->lam = b->lam ? b->lam + st0 : NULL;
        s->sample_base = epoch * t->global_samples + first + st0;
        s->logits = t->logits + (size_t)d * B * K;
        s->losses = t->losses + (size_t)d * B;
    }
    float lr = (float)pt_schedule_lr(&t->sched, t->global_step);
    float mom = (float)pt_schedule_momentum(&t->sched, t->global_step, t->fixed_momentum);
    /* the mean over the whole step: every micro-batch's loss gradient is 1 / the step's samples */
    float grad_scale = 1.0f / (float)step_n;
    if (t->scaling) {
        /* the loss is scaled (its gradient times the scale, exactly: a power of two), and the
         * gradients are unscaled and checked before the update */
        t->cur.loss_scale = t->scaler.scale;
        grad_scale = (float)((double)grad_scale * t->scaler.scale);
        pt_group_set_loss_scaling(t->group, (float)(1.0 / t->scaler.scale), t->global_step - t->scaler.skipped);
    }
    const int last = micro == count - 1;
    /* the labels outlive the source's batch, which the fetch of the next one during the step
     * replaces */
    memcpy(t->labels, b->y, (size_t)b->n * sizeof(int32_t));
    /* Tracing slows the step it records (a synchronisation after every op): that one only,
     * all of its micro-batches. */
    const int traced = t->trace && t->global_step == t->trace_at;
    if (traced) {
        if (micro == 0) pt_trace_start(t->trace);
        pt_group_set_trace(t->group, t->trace);
    }
    pt_group_set_micro_batch(t->group, micro, count);
    pt_status sst = pt_group_step(t->group, t->slices, global_n, t->global_step, grad_scale, lr, mom, err);
    if (traced) pt_group_set_trace(t->group, NULL);
    PT_TRY(sst);
    if (traced && last) PT_TRY(write_trace(t, epoch, b->batch, (int)step_n, lr, mom, err));
    for (int d = 0; d < t->nrep; d++) {
        const pt_group_slice *s = &t->slices[d];
        for (int i = 0; i < s->n; i++) *loss_sum += s->losses[i];
        *hits += pt_topk_hits(s->logits, t->labels + (s->y - b->y), s->n, K, 1);
    }
    if (!last) return PT_OK;
    if (t->scaling) {
        const int skipped = pt_group_last_step_skipped(t->group);
        if (skipped) t->cur.skipped_steps++;
        if (pt_loss_scaler_update(&t->scaler, skipped)) {
            if (t->cur.nscale_events < PT_SCALE_EVENTS) {
                t->cur.scale_event[t->cur.nscale_events].step = t->global_step;
                t->cur.scale_event[t->cur.nscale_events].scale = t->scaler.scale;
            }
            t->cur.nscale_events++;
        }
        if (t->scaler.scale < t->cur.loss_scale_min) t->cur.loss_scale_min = t->scaler.scale;
    }
    t->global_step++;
    if (t->check) {
        pt_status st = pt_group_check_identical(t->group, pt_replica_sync_bn(t->rep[0]), err);
        if (st != PT_OK) return pt_error_wrap(err, "after step %lld", (long long)t->global_step);
    }
    return PT_OK;
}

/* Evaluation on every device of every rank (each rank evaluates its share of the val
 * source, split over its devices); never drops a sample. */
static int stop_requested(pt_trainer *t, const pt_train_callbacks *cb, pt_error *err, pt_status *st);

/* *interrupted: Ctrl-C (should_stop) ended it early, every rank at the same batch. */
static pt_status evaluate_group(pt_trainer *t, const pt_train_callbacks *cb, int64_t epoch, pt_eval_result *res,
                                int *interrupted, pt_error *err)
{
    int K = t->net->num_classes, B = t->opt.batch_per_device;
    pt_batch_source src = t->val;
    memset(res, 0, sizeof *res);
    *interrupted = 0;
    PT_TRY(src.start_epoch(src.ctx, 0, err));
    const int64_t nb = src.batches_per_epoch(src.ctx);
    int64_t done = 0;
    if (cb && cb->on_eval_batch) cb->on_eval_batch(cb->user, epoch, 0, nb);
    double acc[4] = {0, 0, 0, 0}; /* loss, top1, top5, count */
    size_t xs = (size_t)t->net->in_channels * t->net->in_height * t->net->in_width;
    int fs[64], cs[64];
    for (;;) {
        pt_status sst = PT_OK;
        if (stop_requested(t, cb, err, &sst)) {
            *interrupted = 1;
            return PT_OK;
        }
        PT_TRY(sst);
        pt_batch b;
        memset(&b, 0, sizeof b);
        PT_TRY(src.next(src.ctx, &b, err));
        if (b.n == 0) break;
        if (b.n > B * t->nrep)
            return pt_fail(err, PT_ERR_INVALID, "evaluation batch of %d samples is more than %d device(s) x %d", b.n,
                           t->nrep, B);
        split(b.n, t->nrep, B, fs, cs);
        for (int d = 0; d < t->nrep; d++) {
            pt_group_slice *s = &t->slices[d];
            memset(s, 0, sizeof *s);
            s->n = cs[d];
            s->x = b.x + (size_t)fs[d] * xs;
            s->y = b.y + fs[d];
            s->logits = t->logits + (size_t)d * B * K;
            s->losses = t->losses + (size_t)d * B;
        }
        PT_TRY(pt_group_eval(t->group, t->slices, err));
        for (int d = 0; d < t->nrep; d++) {
            const pt_group_slice *s = &t->slices[d];
            for (int i = 0; i < s->n; i++) acc[0] += s->losses[i];
            acc[1] += (double)pt_topk_hits(s->logits, s->y, s->n, K, 1);
            acc[2] += (double)pt_topk_hits(s->logits, s->y, s->n, K, K < 5 ? K : 5);
            acc[3] += s->n;
        }
        done++;
        if (cb && cb->on_eval_batch) cb->on_eval_batch(cb->user, epoch, done, nb);
    }
    if (t->world->size > 1) PT_TRY(t->world->allreduce_sum_f64(t->world->ctx, acc, 4, err));
    if (acc[3] == 0) return pt_fail(err, PT_ERR_INVALID, "evaluation set is empty");
    res->loss = acc[0] / acc[3];
    res->top1 = acc[1] / acc[3];
    res->top5 = acc[2] / acc[3];
    res->count = (int64_t)acc[3];
    return PT_OK;
}

/* Ctrl-C, agreed by every rank (or the others would wait forever). Returns 1 to stop; a
 * failure of the agreement is in *st. */
static int stop_requested(pt_trainer *t, const pt_train_callbacks *cb, pt_error *err, pt_status *st)
{
    int stop = cb && cb->should_stop && cb->should_stop(cb->user);
    if (t->world->size > 1) {
        double v = stop;
        *st = t->world->allreduce_sum_f64(t->world->ctx, &v, 1, err);
        if (*st != PT_OK) return 0;
        stop = v > 0;
    }
    return stop;
}

/* Ctrl-C between steps: the run so far goes to last/ (unless it is there already), and the
 * message says exactly what a resume will continue from. */
static pt_status interrupted(pt_trainer *t, int64_t epoch, const mid_epoch *mid, int evaluating, pt_error *err)
{
    const int64_t spe = t->steps_per_epoch;
    if (t->global_step == 0 && t->saved_step < 0)
        return pt_fail(err, PT_ERR_INTERRUPTED,
                       "interrupted before the first step: nothing was saved; run the same command again to start "
                       "over");
    const int saved_before = t->saved_step == t->global_step;
    if (!saved_before) PT_TRY(save_mid_epoch(t, epoch, mid, err));
    char where[160];
    if (mid->step == 0)
        snprintf(where, sizeof where, "at the start of epoch %lld (step %lld of the run)", (long long)epoch + 1,
                 (long long)t->global_step);
    else if (evaluating || mid->step == spe)
        snprintf(where, sizeof where, "after epoch %lld's %lld steps, before its evaluation (step %lld)",
                 (long long)epoch + 1, (long long)spe, (long long)t->global_step);
    else
        snprintf(where, sizeof where, "at step %lld of %lld in epoch %lld (step %lld of the run)", (long long)mid->step,
                 (long long)spe, (long long)epoch + 1, (long long)t->global_step);
    return pt_fail(err, PT_ERR_INTERRUPTED, "interrupted %s; '%s/last' %s; continue with: polytrain train --resume %s",
                   where, t->out_dir, saved_before ? "holds that point already" : "saved there", t->out_dir);
}

static int64_t wall_now(void) { return (int64_t)time(NULL); }

/* A run ends with nothing of its commits left beside the checkpoints: a commit whose
 * removal of the replaced directory failed (the commit itself stands) left it for the next
 * commit, and after the last one there is none. */
static pt_status settle_run_dir(pt_trainer *t, pt_error *err)
{
    static const char *const ckpts[] = {"last", "best", "ema"};
    char path[4200];
    for (int i = 0; i < 3; i++) {
        PT_TRY(path_join(path, sizeof path, t->out_dir, ckpts[i], err));
        PT_TRY(pt_checkpoint_recover(path, err));
    }
    return PT_OK;
}

pt_status pt_trainer_run(pt_trainer *t, const pt_train_callbacks *cb, pt_error *err)
{
    PT_TRY(prepare_run(t, err));
    if (t->trace) {
        /* the third step of this run by default: the first ones warm up caches and algorithms */
        if (t->opt.trace_step >= 0 && t->opt.trace_step < t->global_step)
            return pt_fail(err, PT_ERR_INVALID, "--trace-step %lld: the resumed run continues at step %lld",
                           (long long)t->opt.trace_step, (long long)t->global_step);
        t->trace_at = t->opt.trace_step >= 0 ? t->opt.trace_step : t->global_step + 2;
        if (t->trace_at > t->run_steps - 1) t->trace_at = t->run_steps - 1;
    }
    t->run_start = now_s();
    t->started = 1;
    if (cb && cb->on_start) cb->on_start(cb->user, t->start_epoch, t->resume_batch, t->global_step);
    const int64_t nb = t->steps_per_epoch, every = t->opt.save_every_steps;
    for (int64_t epoch = t->start_epoch; epoch < t->opt.epochs; epoch++) {
        double t0 = now_s();
        const int64_t first = epoch == t->start_epoch ? t->resume_batch : 0;
        int64_t seen = 0, hits = 0, seen_here = 0, clipped = 0;
        double loss_sum = 0, train_before = 0, norm_sum = 0;
        memset(&t->cur, 0, sizeof t->cur);
        t->cur.loss_scale = t->cur.loss_scale_min = t->scaler.scale;
        t->cur.started_at = wall_now();
        if (first > 0) {
            /* the epoch continues from a mid-epoch checkpoint: its batches from `first` on, and
             * its sums so far (rank 0 holds every rank's) */
            PT_TRY(t->train.seek(t->train.ctx, epoch, first * t->accumulate, err));
            const pt_train_progress *r = &t->resumed;
            seen = r->epoch_seen;
            hits = r->epoch_hits;
            loss_sum = r->epoch_loss_sum;
            train_before = r->epoch_train_s;
            clipped = r->epoch_clipped;
            norm_sum = r->epoch_norm_sum;
            t->cur.resumed_mid_epoch = 1;
            if (t->scaling && r->loss_scale > 0) {
                t->cur.skipped_steps = r->epoch_skipped;
                if (r->epoch_scale_min > 0) t->cur.loss_scale_min = r->epoch_scale_min;
                t->cur.nscale_events = r->epoch_scale_changes;
                for (int i = 0; i < r->epoch_scale_changes && i < PT_SCALE_EVENTS; i++) {
                    t->cur.scale_event[i].step = r->epoch_scale_step[i];
                    t->cur.scale_event[i].scale = r->epoch_scale_value[i];
                }
            }
        } else {
            PT_TRY(t->train.start_epoch(t->train.ctx, epoch, err));
        }
        t->have_next = 0; /* the source starts over: nothing fetched ahead belongs to this epoch */
        const double wait0 = t->train.wait_seconds ? t->train.wait_seconds(t->train.ctx) : 0;
        for (;;) {
            pt_status sst = PT_OK;
            if (stop_requested(t, cb, err, &sst)) {
                /* epoch epochs are done, and mid.step updates of the next (0: at its start) */
                mid_epoch mid = {t->global_step - epoch * nb, loss_sum, train_before + now_s() - t0, hits, seen,
                                 clipped, norm_sum};
                return interrupted(t, epoch, &mid, 0, err);
            }
            PT_TRY(sst);
            /* the step's micro-batches: the source's batches [k A, k A + count) */
            const int64_t first_batch = (t->global_step - epoch * nb) * t->accumulate;
            const int64_t left = t->batches_per_epoch - first_batch;
            if (left <= 0) break;
            const int count = left < t->accumulate ? (int)left : t->accumulate;
            const int64_t step_n = step_samples(t, first_batch, count);
            double before = loss_sum;
            int64_t step = t->global_step, step_here = 0;
            pt_batch b;
            for (int micro = 0; micro < count; micro++) {
                PT_TRY(fetch_batch(t, &b, err));
                if (b.n == 0)
                    return pt_fail(err, PT_ERR_INVALID, "the training data ended after %lld of its %lld batches",
                                   (long long)(first_batch + micro), (long long)t->batches_per_epoch);
                /* staging: the batch after this one, while this one runs, never past the epoch */
                t->want_next = t->stage && first_batch + micro + 1 < t->batches_per_epoch;
                const pt_status sst2 = train_step(t, &b, epoch, micro, count, step_n, &loss_sum, &hits, err);
                t->want_next = 0;
                PT_TRY(sst2);
                step_here += b.n;
            }
            if (t->opt.clip_grad_norm > 0 && !pt_group_last_step_skipped(t->group)) {
                const double norm = pt_group_last_grad_norm(t->group);
                norm_sum += norm;
                clipped += (float)t->opt.clip_grad_norm / ((float)norm + 1e-6f) < 1.0f;
            }
            seen += step_here;
            seen_here += step_here;
            double step_loss = (loss_sum - before) / (double)step_here;
            if (t->opt.log_steps && t->world->size > 1) {
                /* steps.jsonl holds the loss of the whole global batch. */
                double v[2] = {loss_sum - before, (double)step_here};
                PT_TRY(t->world->allreduce_sum_f64(t->world->ctx, v, 2, err));
                step_loss = v[0] / v[1];
            }
            double step_lr = pt_schedule_lr(&t->sched, step);
            if (t->opt.log_steps && t->rank0) PT_TRY(append_step(t, step, epoch + 1, step_loss, step_lr, err));
            if (t->opt.log_steps && t->events) {
                /* at steps.jsonl's step; the epoch's "lr" is another series (at its end) */
                PT_TRY(pt_tb_scalar(t->events, "train/step_loss", step, step_loss, err));
                PT_TRY(pt_tb_scalar(t->events, "train/step_lr", step, step_lr, err));
            }
            if (cb && cb->on_step) cb->on_step(cb->user, step, epoch + 1, step_loss, step_lr);
            if (!isfinite(loss_sum))
                return pt_fail(err, PT_ERR_INVALID,
                               "training diverged: loss is %g at epoch %lld step %lld (lower --lr?)",
                               loss_sum, (long long)epoch + 1, (long long)t->global_step);
            const int64_t in_epoch = t->global_step - epoch * nb;
            if (cb && cb->on_batch)
                cb->on_batch(cb->user, epoch + 1, in_epoch, nb, loss_sum / (double)seen,
                             (double)hits / (double)seen, (double)seen_here / (now_s() - t0));
            if (every > 0 && t->global_step % every == 0 && in_epoch < nb) {
                mid_epoch mid = {in_epoch, loss_sum, train_before + now_s() - t0, hits, seen, clipped, norm_sum};
                PT_TRY(save_mid_epoch(t, epoch, &mid, err));
            }
        }
        const double here_s = now_s() - t0;
        double train_s = train_before + here_s;
        const double data_wait = t->train.wait_seconds ? t->train.wait_seconds(t->train.ctx) - wait0 : 0;
        const mid_epoch trained = {nb, loss_sum, train_s, hits, seen, clipped, norm_sum};
        if (t->world->size > 1) {
            double v[4] = {loss_sum, (double)hits, (double)seen, (double)seen_here};
            PT_TRY(t->world->allreduce_sum_f64(t->world->ctx, v, 4, err));
            loss_sum = v[0];
            hits = (int64_t)v[1];
            seen = (int64_t)v[2];
            seen_here = (int64_t)v[3];
        }
        pt_epoch_metrics m = t->cur;
        if (t->scaling) m.loss_scale = t->scaler.scale;
        else m.loss_scale = m.loss_scale_min = 0;
        m.epoch = epoch + 1;
        m.train_loss = seen ? loss_sum / (double)seen : 0;
        m.train_acc = seen ? (double)hits / (double)seen : 0;
        /* this run's share of the epoch (a resumed epoch's earlier part ran at another time) */
        m.img_per_s = here_s > 0 ? (double)seen_here / here_s : 0;
        m.train_s = train_s;
        m.data_wait_s = data_wait;
        m.clipped_steps = clipped;
        const int64_t normed = nb - m.skipped_steps; /* steps whose norm was taken */
        m.grad_norm_mean = normed > 0 ? norm_sum / (double)normed : 0;
        m.lr = pt_schedule_lr(&t->sched, t->global_step > 0 ? t->global_step - 1 : 0);
        PT_TRY(sync_buffers(t, err));
        pt_eval_result ev;
        int stopped_eval = 0;
        PT_TRY(evaluate_group(t, cb, epoch + 1, &ev, &stopped_eval, err));
        if (stopped_eval) return interrupted(t, epoch, &trained, 1, err);
        if (!t->ws_fitted && !t->opt.keep_workspace) {
            /* every batch size of the run has been trained and evaluated once: a backend that
             * measured its algorithms on first use now needs only the chosen ones' scratch */
            PT_TRY(pt_group_fit_workspace(t->group, &m.ws_before, &m.ws_after, err));
            t->ws_fitted = 1;
        }
        m.device_bytes = pt_replica_device_bytes(t->rep[0]);
        m.peak_device_bytes = pt_replica_peak_bytes(t->rep[0]);
        m.val_loss = ev.loss;
        m.val_top1 = ev.top1;
        m.val_top5 = ev.top5;
        m.val_count = ev.count;
        /* The epoch's last update can blow up the weights while its own loss was still
         * finite: never let such weights replace the last good checkpoint. */
        if (!isfinite(ev.loss))
            return pt_fail(err, PT_ERR_INVALID,
                           "training diverged: validation loss is %g after epoch %lld (lower --lr?)",
                           ev.loss, (long long)epoch + 1);
        const double best_before = t->best_top1;
        const int64_t best_epoch_before = t->best_epoch;
        const pt_early_stop es_before = t->es;
        if (ev.top1 > t->best_top1) {
            t->best_top1 = ev.top1;
            t->best_epoch = m.epoch;
            m.best = 1;
        }
        if (t->opt.patience > 0) {
            /* early stopping, as Lightning's EarlyStopping(mode="max"): an improvement is a
             * top-1 above the best so far by more than min_delta */
            const int stop = pt_early_stop_update(&t->es, ev.top1, t->opt.min_delta, t->opt.patience);
            m.epochs_without_improvement = (int)t->es.wait;
            if (stop && m.epoch < t->opt.epochs)
                snprintf(t->stop_reason, sizeof t->stop_reason,
                         "early stopping: val_top1 has not risen by more than %g above its best, %.6f, for %d "
                         "epoch%s",
                         t->opt.min_delta, t->es.best, t->opt.patience, t->opt.patience == 1 ? "" : "s");
            snprintf(m.stop_reason, sizeof m.stop_reason, "%s", t->stop_reason);
        }
        if (t->steps_log && fflush(t->steps_log) != 0)
            return pt_fail(err, PT_ERR_IO, "cannot write steps.jsonl in '%s': %s", t->out_dir, strerror(errno));
        if (t->h_ema) {
            /* before the epoch's commit, which installs the ema/ it stages */
            int stopped_ema = 0;
            PT_TRY(evaluate_ema(t, cb, epoch + 1, &m, &stopped_ema, err));
            if (stopped_ema) {
                /* the early-stopping state goes back to before this epoch's evaluation */
                t->best_top1 = best_before;
                t->best_epoch = best_epoch_before;
                t->es = es_before;
                t->stop_reason[0] = '\0';
                return interrupted(t, epoch, &trained, 1, err);
            }
        }
        m.epoch_s = train_before + now_s() - t0; /* over every run that trained part of it */
        m.elapsed_s = pt_trainer_elapsed_s(t);
        m.ended_at = wall_now();
        if (t->rank0) PT_TRY(format_records(t, &m, err));
        PT_TRY(save_checkpoints(t, m.epoch, m.best, NULL, err));
        if (t->events) PT_TRY(log_epoch_events(t, &m, err));
        if (cb && cb->on_epoch) cb->on_epoch(cb->user, &m);
        if (t->stop_reason[0]) break;
        if (t->opt.stop_after_epoch > 0 && m.epoch >= t->opt.stop_after_epoch && m.epoch < t->opt.epochs) {
            t->stopped = 1;
            break;
        }
    }
    return t->rank0 ? settle_run_dir(t, err) : PT_OK;
}
