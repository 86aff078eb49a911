/* The batch loader: epoch permutation, per-sample augmentation keyed by dataset index,
 * normalisation through a lookup table, and an optional producer thread one batch ahead.
 * It must never allocate after init, and never let a seek race with a batch being filled. */
#include "data/loader.h"

#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

enum { SLOT_EMPTY, SLOT_FILLING, SLOT_READY, SLOT_IN_USE };

void pt_loader_permutation(uint64_t seed, int64_t epoch, int64_t n, int64_t *perm)
{
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = pt_rng_below(seed, PT_RNG_SHUFFLE, (uint64_t)epoch, (uint64_t)i, 0,
                                 (uint32_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

void pt_loader_augment_sample(const pt_loader *ld, const uint8_t *pixels, int64_t index,
                              int64_t epoch, int augment, float *dst)
{
    const pt_dataset *ds = ld->ds;
    int C = ds->channels, H = ds->height, W = ds->width;
    int pad = augment ? ld->opt.crop_pad : 0;
    int dy = 0, dx = 0, flip = 0;
    uint64_t seed = ld->opt.seed;
    if (pad > 0) {
        dy = (int)pt_rng_below(seed, PT_RNG_AUGMENT, (uint64_t)epoch, (uint64_t)index, 1,
                               (uint32_t)(2 * pad + 1)) - pad;
        dx = (int)pt_rng_below(seed, PT_RNG_AUGMENT, (uint64_t)epoch, (uint64_t)index, 2,
                               (uint32_t)(2 * pad + 1)) - pad;
    }
    if (augment && ld->opt.flip)
        flip = pt_rng_uniform(seed, PT_RNG_AUGMENT, (uint64_t)epoch, (uint64_t)index, 0) < 0.5f;
    for (int c = 0; c < C; c++) {
        const float *lut = ld->lut[c < 3 ? c : 2];
        const uint8_t *src = pixels + (int64_t)c * H * W;
        float *out = dst + (int64_t)c * H * W;
        if (!dy && !dx && !flip) {
            for (int64_t k = 0; k < (int64_t)H * W; k++) out[k] = lut[src[k]];
            continue;
        }
        /* out(y, x) = padded(y + pad + dy, x' + pad + dx) with x' = flip ? W-1-x : x,
         * i.e. src(y + dy, x' + dx), or pixel 0 outside the image. */
        for (int y = 0; y < H; y++) {
            int sy = y + dy;
            float *row = out + (int64_t)y * W;
            if (sy < 0 || sy >= H) {
                for (int x = 0; x < W; x++) row[x] = lut[0];
                continue;
            }
            const uint8_t *srow = src + (int64_t)sy * W;
            for (int x = 0; x < W; x++) {
                int sx = (flip ? W - 1 - x : x) + dx;
                row[x] = sx >= 0 && sx < W ? lut[srow[sx]] : lut[0];
            }
        }
    }
}

int64_t pt_loader_samples_per_epoch(const pt_loader *ld)
{
    return ld->n;
}

int64_t pt_loader_batches_per_epoch(const pt_loader *ld)
{
    int64_t b = ld->opt.batch_size;
    return ld->opt.drop_last ? ld->n / b : (ld->n + b - 1) / b;
}

/* Fills slot with batch `batch` of the current order; touches only the slot and reads
 * order/ds, so it runs without the lock while order is guaranteed stable. */
static void fill_slot(const pt_loader *ld, pt_loader_slot *s, int64_t batch, int64_t epoch)
{
    const pt_dataset *ds = ld->ds;
    int64_t sample = pt_dataset_sample_bytes(ds);
    int64_t first = batch * ld->opt.batch_size;
    int64_t n = ld->n - first < ld->opt.batch_size ? ld->n - first : ld->opt.batch_size;
    int augment = ld->opt.flip || ld->opt.crop_pad > 0;
    s->status = PT_OK;
    s->batch = batch;
    s->n = 0;
    for (int64_t k = 0; k < n; k++) {
        int64_t idx = ld->order[first + k];
        const uint8_t *px;
        pt_status st = pt_dataset_sample(ds, idx, s->scratch, &px, &s->error);
        if (st != PT_OK) {
            s->status = st;
            return;
        }
        pt_loader_augment_sample(ld, px, idx, epoch, augment, s->x + k * sample);
        s->y[k] = ds->labels[idx];
        s->index[k] = idx;
    }
    s->n = (int)n;
}

/* Sets order for `epoch`. The caller guarantees no slot is being filled. */
static void make_order(pt_loader *ld, int64_t epoch)
{
    if (ld->opt.shuffle) {
        pt_loader_permutation(ld->opt.seed, epoch, ld->n, ld->order);
        if (ld->opt.subset)
            for (int64_t i = 0; i < ld->n; i++) ld->order[i] = ld->opt.subset[ld->order[i]];
    } else {
        for (int64_t i = 0; i < ld->n; i++) ld->order[i] = ld->opt.subset ? ld->opt.subset[i] : i;
    }
    ld->epoch = epoch;
}

static void *producer(void *arg)
{
    pt_loader *ld = arg;
    int64_t nb = pt_loader_batches_per_epoch(ld);
    pthread_mutex_lock(&ld->mu);
    for (;;) {
        pt_loader_slot *s = NULL;
        while (!ld->stop) {
            if (ld->produce < nb)
                for (int i = 0; i < ld->nslots && !s; i++)
                    if (ld->slot[i].state == SLOT_EMPTY) s = &ld->slot[i];
            if (s) break;
            pthread_cond_wait(&ld->cv, &ld->mu);
        }
        if (ld->stop) break;
        s->state = SLOT_FILLING;
        s->gen = ld->gen;
        int64_t batch = ld->produce++, epoch = ld->epoch;
        pthread_mutex_unlock(&ld->mu);
        fill_slot(ld, s, batch, epoch);
        pthread_mutex_lock(&ld->mu);
        s->state = s->gen == ld->gen ? SLOT_READY : SLOT_EMPTY;
        pthread_cond_broadcast(&ld->cv);
    }
    pthread_mutex_unlock(&ld->mu);
    return NULL;
}

pt_status pt_loader_init(pt_loader *ld, const pt_dataset *ds, const pt_loader_options *opt,
                         pt_error *err)
{
    memset(ld, 0, sizeof *ld);
    if (!ds || ds->count <= 0)
        return pt_fail(err, PT_ERR_INVALID, "loader: empty dataset");
    if (ds->channels < 1 || ds->height < 1 || ds->width < 1)
        return pt_fail(err, PT_ERR_INVALID, "loader: dataset %s has shape %dx%dx%d", ds->name,
                       ds->channels, ds->height, ds->width);
    if (opt->batch_size <= 0)
        return pt_fail(err, PT_ERR_INVALID, "loader: batch size must be > 0, got %d",
                       opt->batch_size);
    if (opt->crop_pad < 0 || opt->crop_pad > 4096)
        return pt_fail(err, PT_ERR_INVALID, "loader: crop padding must be in [0, 4096], got %d",
                       opt->crop_pad);
    if (opt->subset) {
        if (opt->subset_count <= 0)
            return pt_fail(err, PT_ERR_INVALID, "loader: empty subset");
        for (int64_t i = 0; i < opt->subset_count; i++)
            if (opt->subset[i] < 0 || opt->subset[i] >= ds->count)
                return pt_fail(err, PT_ERR_INVALID,
                               "loader: subset entry %lld is sample %lld, outside [0, %lld)",
                               (long long)i, (long long)opt->subset[i], (long long)ds->count);
    }
    if (ds->count > UINT32_MAX)
        return pt_fail(err, PT_ERR_INVALID, "loader: %lld samples, at most 2^32 supported",
                       (long long)ds->count);
    for (int c = 0; c < 3; c++) {
        float mean = ds->mean[c < ds->channels ? c : 0], sd = ds->std[c < ds->channels ? c : 0];
        if (!(sd > 0.0f))
            return pt_fail(err, PT_ERR_INVALID, "loader: dataset %s has std %g for channel %d",
                           ds->name, (double)sd, c);
        /* The exact formula of the specification, so that tests can compare bit for bit. */
        for (int p = 0; p < 256; p++) ld->lut[c][p] = ((float)p / 255.0f - mean) / sd;
    }
    ld->ds = ds;
    ld->opt = *opt;
    ld->n = opt->subset ? opt->subset_count : ds->count;
    ld->nslots = opt->prefetch ? 2 : 1;
    int64_t sample = pt_dataset_sample_bytes(ds), B = opt->batch_size;
    ld->order = malloc((size_t)ld->n * sizeof *ld->order);
    int ok = ld->order != NULL;
    for (int i = 0; i < ld->nslots && ok; i++) {
        pt_loader_slot *s = &ld->slot[i];
        s->x = malloc((size_t)(B * sample) * sizeof *s->x);
        s->y = malloc((size_t)B * sizeof *s->y);
        s->index = malloc((size_t)B * sizeof *s->index);
        s->scratch = ds->pixels ? NULL : malloc((size_t)sample);
        ok = s->x && s->y && s->index && (ds->pixels || s->scratch);
    }
    if (!ok) {
        pt_loader_free(ld);
        return pt_fail(err, PT_ERR_NOMEM, "loader: out of memory for batches of %lld",
                       (long long)B);
    }
    make_order(ld, 0);
    ld->produce = pt_loader_batches_per_epoch(ld); /* nothing to produce before an epoch starts */
    ld->next_batch = ld->produce;
    if (opt->prefetch) {
        if (pthread_mutex_init(&ld->mu, NULL) != 0) {
            pt_loader_free(ld);
            return pt_fail(err, PT_ERR_NOMEM, "loader: cannot create a mutex");
        }
        if (pthread_cond_init(&ld->cv, NULL) != 0) {
            pthread_mutex_destroy(&ld->mu);
            pt_loader_free(ld);
            return pt_fail(err, PT_ERR_NOMEM, "loader: cannot create a condition variable");
        }
        if (pthread_create(&ld->thread, NULL, producer, ld) != 0) {
            pthread_cond_destroy(&ld->cv);
            pthread_mutex_destroy(&ld->mu);
            pt_loader_free(ld);
            return pt_fail(err, PT_ERR_NOMEM, "loader: cannot start the prefetch thread");
        }
        ld->started = 1;
    }
    return PT_OK;
}

void pt_loader_free(pt_loader *ld)
{
    if (!ld) return;
    if (ld->started) {
        pthread_mutex_lock(&ld->mu);
        ld->stop = 1;
        pthread_cond_broadcast(&ld->cv);
        pthread_mutex_unlock(&ld->mu);
        pthread_join(ld->thread, NULL);
        pthread_cond_destroy(&ld->cv);
        pthread_mutex_destroy(&ld->mu);
    }
    for (int i = 0; i < 2; i++) {
        free(ld->slot[i].x);
        free(ld->slot[i].y);
        free(ld->slot[i].index);
        free(ld->slot[i].scratch);
    }
    free(ld->order);
    memset(ld, 0, sizeof *ld);
}

/* With the lock held: drops every prefetched batch and restarts production at `batch` of
 * `epoch`. Waits for a fill in progress first, since the order may be rewritten. */
static void reset_locked(pt_loader *ld, int64_t epoch, int64_t batch)
{
    ld->gen++; /* a batch being filled now is thrown away when it completes */
    for (;;) {
        int filling = 0;
        for (int i = 0; i < ld->nslots; i++) filling |= ld->slot[i].state == SLOT_FILLING;
        if (!filling) break;
        pthread_cond_wait(&ld->cv, &ld->mu);
    }
    for (int i = 0; i < ld->nslots; i++) ld->slot[i].state = SLOT_EMPTY;
    if (epoch != ld->epoch) make_order(ld, epoch);
    ld->next_batch = ld->produce = batch;
    pthread_cond_broadcast(&ld->cv);
}

pt_status pt_loader_seek(pt_loader *ld, int64_t epoch, int64_t batch, pt_error *err)
{
    int64_t nb = pt_loader_batches_per_epoch(ld);
    if (epoch < 0 || batch < 0 || batch > nb)
        return pt_fail(err, PT_ERR_INVALID, "loader: cannot seek to batch %lld of epoch %lld "
                       "(%lld batches per epoch)", (long long)batch, (long long)epoch,
                       (long long)nb);
    if (!ld->started) {
        if (epoch != ld->epoch) make_order(ld, epoch);
        ld->next_batch = batch;
        return PT_OK;
    }
    pthread_mutex_lock(&ld->mu);
    reset_locked(ld, epoch, batch);
    pthread_mutex_unlock(&ld->mu);
    return PT_OK;
}

pt_status pt_loader_start_epoch(pt_loader *ld, int64_t epoch, pt_error *err)
{
    return pt_loader_seek(ld, epoch, 0, err);
}

pt_status pt_loader_next(pt_loader *ld, pt_host_batch *out, pt_error *err)
{
    memset(out, 0, sizeof *out);
    out->epoch = ld->epoch;
    out->batch = ld->next_batch;
    if (ld->next_batch >= pt_loader_batches_per_epoch(ld)) return PT_OK;
    pt_loader_slot *s = NULL;
    if (!ld->started) {
        s = &ld->slot[0];
        fill_slot(ld, s, ld->next_batch, ld->epoch);
    } else {
        pthread_mutex_lock(&ld->mu);
        for (int i = 0; i < ld->nslots; i++)
            if (ld->slot[i].state == SLOT_IN_USE) ld->slot[i].state = SLOT_EMPTY;
        pthread_cond_broadcast(&ld->cv);
        for (;;) {
            for (int i = 0; i < ld->nslots && !s; i++)
                if (ld->slot[i].state == SLOT_READY && ld->slot[i].batch == ld->next_batch)
                    s = &ld->slot[i];
            if (s) break;
            pthread_cond_wait(&ld->cv, &ld->mu);
        }
        s->state = SLOT_IN_USE;
        if (s->status != PT_OK) {
            /* Copy the error out before the slot is reused, and restart production at this
             * batch so that a later call retries it instead of waiting forever. */
            pt_status st = s->status;
            if (err) *err = s->error;
            reset_locked(ld, ld->epoch, ld->next_batch);
            pthread_mutex_unlock(&ld->mu);
            return st;
        }
        pthread_mutex_unlock(&ld->mu);
    }
    if (s->status != PT_OK) {
        if (err) *err = s->error;
        return s->status;
    }
    ld->next_batch++;
    out->x = s->x;
    out->y = s->y;
    out->index = s->index;
    out->n = s->n;
    out->batch = s->batch;
    return PT_OK;
}
