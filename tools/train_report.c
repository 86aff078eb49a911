/* What polytrain train prints: the data reports, the banner before any work, while the
 * trainer runs a progress bar on a terminal with a line per epoch, and the closing line.
 * Decides nothing about the run; every value comes from the session and the options. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/group.h"
#include "tools/common.h"
#include "tools/train_internal.h"
#include "polytrain/version.h"

double train_wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Packing progress while train builds a dataset cache (terminal only). */
void train_on_pack_progress(void *user, int64_t done, int64_t total)
{
    double *last = user;
    if (!isatty(2)) return;
    double t = train_wall_s();
    if (t - *last < 0.2 && done < total) return;
    *last = t;
    fprintf(stderr, "\rpacking dataset cache: %lld/%lld images%s", (long long)done, (long long)total,
            done >= total ? "\n" : "");
    fflush(stderr);
}

void train_print_data_report(const char *split, const pt_dataset *ds, const pt_data_report *r)
{
    static const char *const action[] = {"", "reused", "built", "rebuilt"};
    if (r->cache_action)
        printf("data: %s cache %s %s%s%s (%.1f s)\n", split, cli_safe(r->cache_path), action[r->cache_action],
               r->cache_action == 3 ? ": " : "", r->cache_action == 3 ? cli_safe(r->rebuild_reason) : "", r->pack_s);
    if (r->gray || r->skipped)
        printf("data: %s: %lld of %lld images were grayscale (converted to RGB), %lld unreadable skipped\n",
               split, (long long)r->gray, (long long)ds->count, (long long)r->skipped);
}

/* A run resumed on another number of devices or processes keeps its global batch. */
void train_print_kept_batch(int ndev, int procs, int64_t global_batch, int capacity)
{
    printf("resuming with %d device(s) x %d process(es): the run's global batch of %lld stays, %d per "
           "device at most\n",
           ndev, procs, (long long)global_batch, capacity);
}

/* The banner: what runs where, before any work. */
void train_print_banner(const train_session *s, const train_options *o)
{
    const train_args *ap = &o->args;
    const pt_optim_kind okind = o->optim;
    const int ndev = s->ndev, procs = s->procs;
    pt_device *const *devs = s->devs;
    const pt_dataset *train_ds = &s->train_ds;
    printf("polytrain %s: training '%s' on %s\n", PT_VERSION, cli_safe(ap->model), cli_safe(train_ds->name));
    printf("devices: %d x %s (%s backend)%s\n", ndev, devs[0]->info.name, devs[0]->be->name,
           procs > 1 ? " in each process" : "");
    if (cli_backend_choice()[0]) printf("backend: %s\n", cli_backend_choice());
    for (int d = 0; d < ndev; d++)
        printf("  [%d] device %d: %s, %d threads; %s\n", d, devs[d]->index, devs[d]->info.name, devs[d]->info.threads,
               devs[d]->info.details);
    if (procs > 1) printf("processes: %d (MPI), rank 0 logs and saves\n", procs);
    {
        pt_group *grp = pt_trainer_group(s->trainer);
        if (ndev * procs > 1)
            printf("data parallel: %d replica%s, gradients all-reduced in %d bucket%s through %s, BatchNorm "
                   "statistics %s\n",
                   ndev * procs, ndev * procs == 1 ? "" : "s", pt_group_buckets(grp),
                   pt_group_buckets(grp) == 1 ? "" : "s",
                   strcmp(pt_group_reduction(grp), "host") == 0 ? (procs > 1 ? "host memory and MPI" : "host memory")
                                                                : "the backend's collectives",
                   ap->sync_bn ? "synchronised (--sync-bn)" : "per device (averaged before evaluation and saving)");
    }
    {
        char graphs[256], pinned[256];
        cli_graphs_line(s->reps[0], ndev * procs > 1 ? 1 : ap->accumulate > 1 ? 2 : 0, graphs, sizeof graphs, pinned,
                        sizeof pinned);
        cli_pinned_training_line(s->reps, ndev, pinned, sizeof pinned);
        printf("CUDA graphs: %s\npinned input: %s\n", graphs, pinned);
    }
    printf("model: %s, %.3f M parameters (%lld), input %dx%dx%d, %d classes\n", cli_safe(ap->model),
           (double)s->net->param_count / 1e6, (long long)s->net->param_count, train_ds->channels, train_ds->height,
           train_ds->width, train_ds->num_classes);
    if (s->init_what[0]) printf("init: %s; the optimizer and the schedule start at step 0\n", cli_safe(s->init_what));
    else if (ap->resume && ap->init_from)
        printf("init: continues from %s/last (--init-from %s was the start)\n", cli_safe(ap->resume), cli_safe(ap->init_from));
    char accum[128] = "";
    if (ap->accumulate > 1)
        snprintf(accum, sizeof accum, " x %d micro-batches accumulated = %lld samples per optimizer step",
                 ap->accumulate, (long long)s->global_batch * ap->accumulate);
    printf("batch: %d per device x %d device%s%s = global batch %lld%s; %lld steps per epoch\n", s->capacity, ndev,
           ndev == 1 ? "" : "s", procs > 1 ? (procs == 2 ? " x 2 processes" : " x processes") : "",
           (long long)s->global_batch, accum, (long long)pt_trainer_steps_per_epoch(s->trainer));
    printf("data: %lld train / %lld test samples; augment %s; loader %d thread%s (%s)\n", (long long)train_ds->count,
           (long long)s->val_ds.count, ap->augment, s->loader_threads, s->loader_threads == 1 ? "" : "s",
           s->loader_why);
    char mom[64];
    const int has_momentum = okind == PT_OPTIM_SGD || okind == PT_OPTIM_RMSPROP;
    if (o->schedule == PT_SCHED_ONECYCLE && ap->cycle_momentum && !(has_momentum && ap->momentum == 0))
        snprintf(mom, sizeof mom, "%s 0.95->0.85->0.95", has_momentum ? "momentum" : "beta1");
    else
        snprintf(mom, sizeof mom, "%s %g", has_momentum ? "momentum" : "beta1", has_momentum ? ap->momentum : ap->beta1);
    char rms[48] = "";
    if (okind == PT_OPTIM_RMSPROP) snprintf(rms, sizeof rms, ", alpha %g%s", ap->alpha, ap->centered ? " centered" : "");
    const double lr = s->lr;
    char lr_text[96];
    if (ap->lr_batch > 0)
        snprintf(lr_text, sizeof lr_text, "%g (%g per %d samples, global batch %lld)", lr, ap->lr, ap->lr_batch,
                 (long long)s->global_batch);
    else if (ap->scale_lr)
        snprintf(lr_text, sizeof lr_text, "%g (--scale-lr: %g x %lld/64)", lr, ap->lr, (long long)s->global_batch);
    else
        snprintf(lr_text, sizeof lr_text, "%g", lr);
    printf("optimizer: %s lr %s (%s schedule%s), %s%s%s, weight decay %g%s; label smoothing %g%s%s\n", ap->optimizer,
           lr_text, ap->schedule, ap->warmup_epochs > 0 ? ", warmup" : "", mom,
           okind == PT_OPTIM_SGD && ap->nesterov ? " nesterov" : "",
           rms, ap->weight_decay,
           ap->weight_decay > 0 ? (ap->no_decay_bn_bias ? " (not on BN/bias)" : " (on every parameter)") : "",
           ap->label_smoothing, ap->preset ? "; preset " : "", ap->preset ? ap->preset : "");
    printf("precision: %s, %s; weights, optimizer state, BatchNorm statistics and the loss in fp32%s\n",
           pt_precision_name(o->precision), s->precision_how,
           pt_precision_scales_loss(o->precision) ? "; dynamic loss scaling (from 65536, x2 after 2000 clean steps, "
                                                    "x0.5 and the step skipped on Inf/NaN)"
                                                  : "");
    printf("fused BN+ReLU, BN+add+ReLU, add+ReLU: %s\n", pt_replica_fuse_relu(s->reps[0]) ? "on" : "off");
    char act_line[160];
    cli_act_storage_line(s->reps[0], act_line, sizeof act_line);
    printf("activations: %s\n", act_line);
    if (ap->resume && o->resumed_precision[0] && strcmp(o->resumed_precision, pt_precision_name(o->precision)) != 0)
        printf("precision: the run so far trained in %s and continues in %s (--precision given): the checkpoint is "
               "fp32 either way%s\n",
               o->resumed_precision, pt_precision_name(o->precision),
               pt_precision_scales_loss(o->precision) ? "; the loss scale starts at 65536" : "");
    if (ap->resume && o->resume_changes[0])
        printf("resume: continues with options changed by --allow-changes, {option: [the run's, now]}: %s "
               "(recorded in config.json under \"resumes\")\n",
               cli_safe(o->resume_changes));
    printf("memory: %.1f MiB per device, of which workspace %.1f MiB (%s)\n",
           (double)pt_replica_device_bytes(s->reps[0]) / (1024.0 * 1024.0),
           (double)pt_replica_workspace_bytes(s->reps[0]) / (1024.0 * 1024.0),
           o->fit_workspace ? "fitted to the algorithms chosen, after the first epoch"
                            : "kept at this size: --fit-workspace off");
    printf("output: %s%s\n", cli_safe(ap->out), ap->resume ? " (resuming)" : "");
    if (ap->trace) {
        char which[48] = "the run's third step";
        if (ap->trace_step >= 0) snprintf(which, sizeof which, "step %lld", (long long)ap->trace_step);
        printf("trace: %s to %s (every op synchronised in that step)\n", which, cli_safe(ap->trace));
    }
    fflush(stdout);
}

/* Local wall-clock time for log lines: 2026-12-02T07:10:11+0100. */
static void stamp(char *buf, size_t n)
{
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    if (!strftime(buf, n, "%Y-%m-%dT%H:%M:%S%z", &tm)) snprintf(buf, n, "%lld", (long long)now);
}

static void hms(double s, char *buf, size_t n)
{
    if (!(s >= 0) || s > 1e8) {
        snprintf(buf, n, "?");
        return;
    }
    long long t = (long long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%lld:%02lld:%02lld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%lld:%02lld", t / 60, t % 60);
}

static void on_start(void *user, int64_t epoch, int64_t batch, int64_t global_step)
{
    run_ui *ui = user;
    ui->first_step = ui->last_step = global_step;
    ui->run_t0 = ui->epoch_t0 = ui->last_line = train_wall_s();
    ui->epoch_first_step = global_step;
    if (global_step > 0) {
        if (batch > 0)
            printf("resuming at step %lld of %lld in epoch %lld (step %lld of the run), from a checkpoint saved "
                   "part way through the epoch\n",
                   (long long)batch, (long long)ui->steps_per_epoch, (long long)epoch + 1, (long long)global_step);
        else
            printf("resuming at the start of epoch %lld (step %lld of the run)\n", (long long)epoch + 1,
                   (long long)global_step);
        if (pt_trainer_resume_note(ui->trainer)) printf("resume: %s\n", pt_trainer_resume_note(ui->trainer));
        fflush(stdout);
    }
}

/* Time to first step: everything a user waits for before training runs (data, device
 * setup and kernel builds, the first step with its library warm-ups). */
static void on_step(void *user, int64_t step, int64_t epoch, double loss, double lr)
{
    run_ui *ui = user;
    (void)epoch;
    ui->last_step = step + 1;
    ui->step_loss = loss;
    if (ui->first_done) return;
    ui->first_done = 1;
    cli_progress_clear(&ui->bar);
    printf("first step %lld done %.2f s after start (loss %.4f, lr %.3g)\n", (long long)step,
           train_wall_s() - ui->start, loss, lr);
    fflush(stdout);
}

static void on_batch(void *user, int64_t epoch, int64_t batch, int64_t batches, double loss,
                     double acc, double ips)
{
    run_ui *ui = user;
    cli_progress_update(&ui->bar, epoch, ui->epochs, batch, batches, loss, acc, ips);
    if (!ui->lines) return;
    const double now = train_wall_s();
    if (ui->log_every > 0 ? ui->last_step % ui->log_every != 0 : now - ui->last_line < ui->interval_s) return;
    ui->last_line = now;
    /* a step's time at this epoch's pace (the machine's load or the data can change between
     * epochs); in its first steps, this run's so far, evaluations left out */
    const int64_t done = ui->last_step - ui->first_step, in_epoch = ui->last_step - ui->epoch_first_step;
    const double per_step = in_epoch >= 5 ? (now - ui->epoch_t0) / (double)in_epoch
                            : done > 0    ? (now - ui->run_t0 - ui->eval_total) / (double)done
                                          : 0;
    const int64_t evals_left = ui->run_steps > ui->last_step
                                   ? (ui->run_steps - ui->last_step + ui->steps_per_epoch - 1) / ui->steps_per_epoch
                                   : 0;
    char t[40], ee[24], er[24];
    stamp(t, sizeof t);
    hms(per_step * (double)(batches - batch) + (ui->eval_s > 0 ? ui->eval_s : 0), ee, sizeof ee);
    hms(per_step * (double)(ui->run_steps - ui->last_step) + (double)evals_left * ui->eval_s, er, sizeof er);
    printf("%s  epoch %lld/%d  step %lld/%lld  loss %.4f (batch %.4f)  acc %.2f%%  %.0f img/s  eta epoch %s%s, "
           "run %s%s\n",
           t, (long long)epoch, ui->epochs, (long long)batch, (long long)batches, loss, ui->step_loss, 100 * acc, ips,
           ee, ui->eval_s > 0 ? "" : " + validation", er, ui->eval_s > 0 ? "" : " + validation");
    fflush(stdout);
}

static void on_eval_batch(void *user, int64_t epoch, int64_t done, int64_t batches)
{
    run_ui *ui = user;
    const double now = train_wall_s();
    if (done == 0) {
        ui->eval_t0 = now;
        ui->eval_line = now;
    }
    if (done == batches) {
        ui->eval_s = now - ui->eval_t0;
        ui->eval_total += ui->eval_s;
    }
    if (ui->bar.enabled && (done == 0 || now - ui->bar.last >= 0.1 || done == batches)) {
        ui->bar.last = now;
        fprintf(stderr, "\r\033[Kepoch %lld/%d validating %lld/%lld batches", (long long)epoch, ui->epochs,
                (long long)done, (long long)batches);
        fflush(stderr);
        ui->bar.shown = 1;
    }
    if (ui->lines && done > 0 && done < batches && now - ui->eval_line >= ui->interval_s) {
        ui->eval_line = now;
        char t[40], eta[24];
        stamp(t, sizeof t);
        hms((now - ui->eval_t0) / (double)done * (double)(batches - done), eta, sizeof eta);
        printf("%s  epoch %lld/%d  validating %lld/%lld batches  eta %s\n", t, (long long)epoch, ui->epochs,
               (long long)done, (long long)batches, eta);
        fflush(stdout);
    }
}

static void on_epoch(void *user, const pt_epoch_metrics *m)
{
    run_ui *ui = user;
    cli_progress_clear(&ui->bar);
    char t[40] = "";
    if (ui->lines) {
        stamp(t, sizeof t);
        strcat(t, "  ");
    }
    printf("%sepoch %lld/%d  train loss %.4f acc %.2f%%  val loss %.4f top1 %.2f%% top5 %.2f%%  "
           "%.0f img/s  %.1fs (data wait %.1fs)%s\n",
           t, (long long)m->epoch, ui->epochs, m->train_loss, 100 * m->train_acc, m->val_loss,
           100 * m->val_top1, 100 * m->val_top5, m->img_per_s, m->epoch_s, m->data_wait_s,
           m->best ? "  *best" : "");
    if (m->ema_count > 0)
        printf("%sepoch %lld/%d  EMA of the weights: val loss %.4f top1 %.2f%% top5 %.2f%%\n", t, (long long)m->epoch,
               ui->epochs, m->ema_val_loss, 100 * m->ema_val_top1, 100 * m->ema_val_top5);
    /* the next epoch's pace is timed from here (its evaluation is over) */
    ui->epoch_t0 = train_wall_s();
    ui->epoch_first_step = ui->last_step;
    if (m->ws_before != m->ws_after)
        printf("memory: %.1f MiB per device now, the workspace fitted to the batch sizes of the run and the "
               "algorithms the device chose (%.1f -> %.1f MiB)\n",
               (double)m->device_bytes / 1048576.0, (double)m->ws_before / 1048576.0, (double)m->ws_after / 1048576.0);
    fflush(stdout);
}

static int should_stop(void *user)
{
    (void)user;
    return cli_interrupted();
}

pt_train_callbacks train_ui_init(run_ui *ui, const train_args *a, double start, const pt_trainer *trainer)
{
    memset(ui, 0, sizeof *ui);
    ui->epochs = a->epochs;
    cli_progress_init(&ui->bar, !a->no_progress && isatty(2));
    ui->start = start;
    ui->log_every = a->log_every;
    /* lines when asked for, or by default where there is no terminal to draw a bar on */
    ui->lines = a->log_every > 0 || (!a->no_progress && !isatty(1));
    /* PT_LOG_INTERVAL_S: the seconds between automatic lines (tests; README) */
    const char *e = getenv("PT_LOG_INTERVAL_S");
    ui->interval_s = e && atof(e) >= 0 && atof(e) < 1e6 ? atof(e) : 30.0;
    ui->steps_per_epoch = pt_trainer_steps_per_epoch(trainer);
    ui->trainer = trainer;
    const int64_t epochs = a->stop_after > 0 && a->stop_after < a->epochs ? a->stop_after : a->epochs;
    ui->run_steps = ui->steps_per_epoch * epochs;
    pt_train_callbacks cb = {ui, on_batch, on_epoch, should_stop, on_step, on_eval_batch, on_start};
    return cb;
}

void train_print_summary(const pt_trainer *trainer, const train_args *ap)
{
    /* only what exists: best/ is named when it is there */
    char path[4300], where[4400];
    snprintf(path, sizeof path, "%s/best/model.safetensors", ap->out);
    if (pt_path_exists(path))
        snprintf(where, sizeof where, "checkpoints in %s/last and %s/best", cli_safe(ap->out), cli_safe(ap->out));
    else snprintf(where, sizeof where, "checkpoint in %s/last (no best/)", cli_safe(ap->out));
    if (pt_trainer_stop_reason(trainer))
        printf("stopped before --epochs %d: %s; %s\n", ap->epochs, pt_trainer_stop_reason(trainer), where);
    else if (pt_trainer_stopped_early(trainer))
        printf("stopped after epoch %d as asked; continue with: polytrain train --resume %s\n", ap->stop_after,
               cli_safe(ap->out));
    else
        printf("done: %s\n", where);
}
