/* Timed training steps on a device group (group_timing.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/group.h"
#include "polytrain/replica.h"
#include "core/rng.h"
#include "tools/group_timing.h"
#include "tools/session.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

pt_status cli_time_group(pt_device **devs, int ndev, const cli_group_timing_options *o, cli_group_timing *out,
                         pt_error *err)
{
    memset(out, 0, sizeof *out);
    if (ndev < 1 || ndev > 16) return pt_fail(err, PT_ERR_INVALID, "group timing: %d devices (1..16)", ndev);
    const int procs = o->world ? o->world->size : 1, rank = o->world ? o->world->rank : 0;
    /* samples per device: weak, the batch each; strong, the batch split as the trainer splits */
    int cap = 0, local = 0;
    for (int d = 0; d < ndev; d++) {
        const int n = o->strong ? o->batch / ndev + (d < o->batch % ndev) : o->batch;
        out->per_device[d] = n;
        local += n;
        if (n > cap) cap = n;
    }
    if (cap < 1) return pt_fail(err, PT_ERR_INVALID, "group timing: a global batch of %d for %d devices", o->batch, ndev);
    out->ndev = ndev;
    out->global_batch = local * procs;
    const size_t per = (size_t)o->C * (size_t)o->H * (size_t)o->W;
    pt_replica *reps[16] = {NULL};
    pt_group *g = NULL;
    float *x = malloc((size_t)local * per * sizeof(float)), *logits = malloc((size_t)local * o->classes * sizeof(float));
    float *loss = malloc((size_t)local * sizeof(float));
    int32_t *y = malloc((size_t)local * sizeof(int32_t));
    double *t = calloc((size_t)(o->steps > 0 ? o->steps : 1), sizeof(double));
    pt_status st = x && logits && loss && y && t ? PT_OK : pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    pt_replica_options ro = {.precision = o->precision,
                             .graphs = o->graphs,
                             .pinned_input = o->pinned_input,
                             .no_fuse_relu = o->no_fuse_relu,
                             .act_storage = o->act_storage,
                             .layout = o->layout};
    for (int d = 0; d < ndev && st == PT_OK; d++) {
        st = pt_replica_create_ex(o->net, devs[d], cap, &o->optim, 1, &ro, &reps[d], err);
        if (st == PT_OK) st = pt_replica_init_params(reps[d], 1, err);
    }
    if (st == PT_OK) st = pt_group_create(reps, ndev, o->world, o->bucket_bytes, 1, &g, err);
    if (st == PT_OK) st = pt_group_broadcast_state(g, err);
    if (st == PT_OK) {
        out->buckets = pt_group_buckets(g);
        out->fuse_relu = pt_replica_fuse_relu(reps[0]);
        cli_act_storage_line(reps[0], out->act_line, sizeof out->act_line);
        snprintf(out->reduction, sizeof out->reduction, "%s", pt_group_reduction(g));
        /* every rank draws its own samples: they only have to be valid, not shared */
        for (size_t i = 0; i < (size_t)local * per; i++) x[i] = pt_rng_normal(1 + (uint64_t)rank, PT_RNG_SPLIT, 9, i, 0);
        for (int i = 0; i < local; i++)
            y[i] = (int32_t)pt_rng_below(1 + (uint64_t)rank, PT_RNG_SPLIT, 10, (uint64_t)i, 0, (uint32_t)o->classes);
    }
    pt_group_slice sl[16];
    int off = 0;
    for (int d = 0; d < ndev; d++) {
        memset(&sl[d], 0, sizeof sl[d]);
        sl[d].x = x ? x + (size_t)off * per : NULL;
        sl[d].y = y ? y + off : NULL;
        sl[d].n = out->per_device[d];
        sl[d].sample_base = (int64_t)rank * local + off;
        sl[d].logits = logits ? logits + (size_t)off * o->classes : NULL;
        sl[d].losses = loss ? loss + off : NULL;
        off += out->per_device[d];
    }
    out->identical = 1;
    const float scale = 1.0f / (float)out->global_batch;
    /* every step trains on the same batch: known ahead, so a device that runs its step as one
     * part copies it for the next step while the current one runs */
    if (g) pt_group_set_next(g, sl);
    for (int s = 0; s < o->warmup + o->steps && st == PT_OK; s++) {
        const double t0 = now_s();
        /* a small learning rate: many steps on random data must stay finite */
        st = pt_group_step(g, sl, out->global_batch, s, scale, 1e-3f, 0.9f, err);
        if (st == PT_OK) {
            /* asynchronous devices may still run the update: the step ends when every one is done */
            for (int d = 0; d < ndev && st == PT_OK; d++) st = pt_device_sync(devs[d], err);
        }
        if (st == PT_OK && s >= o->warmup) t[s - o->warmup] = now_s() - t0;
        /* after the warm-up, the workspaces for what the devices chose in it (as train does
         * after its first epoch): the timed steps are the steady state's */
        if (st == PT_OK && s == o->warmup - 1 && o->fit_workspace)
            st = pt_group_fit_workspace(g, &out->ws_before, &out->ws_after, err);
        if (st == PT_OK && o->check_identical) {
            pt_error e;
            /* parameters and optimizer state: BN running statistics are per device (averaged
             * before evaluation and saving) unless synchronised */
            if (pt_group_check_identical(g, 0, &e) != PT_OK) {
                out->identical = 0;
                st = pt_fail(err, PT_ERR_MISMATCH, "after step %d: %s", s, e.msg);
            }
        }
    }
    if (st == PT_OK) {
        if (!o->fit_workspace || o->warmup < 1)
            out->ws_before = out->ws_after = pt_replica_workspace_bytes(reps[0]);
        out->device_bytes = pt_replica_device_bytes(reps[0]);
    }
    if (st == PT_OK && o->steps > 0) {
        qsort(t, (size_t)o->steps, sizeof *t, cmp_double);
        out->best_s = t[0];
        out->step_s = t[o->steps / 2];
        out->img_per_s = out->step_s > 0 ? out->global_batch / out->step_s : 0;
    }
    if (g) pt_group_free(g);
    for (int d = 0; d < ndev; d++) pt_replica_free(reps[d]);
    free(x);
    free(logits);
    free(loss);
    free(y);
    free(t);
    return st;
}
