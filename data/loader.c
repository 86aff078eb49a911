/* The batch loader: epoch permutation, per-sample augmentation keyed by dataset index,
 * normalisation through a lookup table, worker threads filling a ring of batches ahead,
 * batch-level mixup/cutmix and the split of global batches by rank. It must never allocate
 * after init, and never let a seek race with a batch being filled. */
#include "polytrain/loader.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* Random draws of one sample's augmentation: counters b of (seed, AUGMENT, epoch, index):
 * 0 flip, 1-2 padded crop, 3..42 random-resized-crop attempts, 50-52 jitter, 53-54 cutout,
 * 60-63 mixing partner/kind/box, 100.. and 300.. the two Gamma draws of lam. */
static inline float U(uint64_t seed, int64_t epoch, int64_t index, uint32_t b)
{
    return pt_rng_uniform(seed, PT_RNG_AUGMENT, (uint64_t)epoch, (uint64_t)index, b);
}

/* Random-resized-crop region (torchvision's rule, 10 attempts then the whole image). */
static void rrc_region(const pt_loader *ld, int64_t index, int64_t epoch, float *y0, float *x0,
                       float *h, float *w)
{
    int H = ld->height, W = ld->width;
    uint64_t seed = ld->opt.seed;
    float smin = ld->opt.rrc_scale < 1.0f ? ld->opt.rrc_scale : 1.0f;
    const float lr0 = logf(3.0f / 4.0f), lr1 = logf(4.0f / 3.0f);
    for (uint32_t a = 0; a < 10; a++) {
        uint32_t b = 3 + 4 * a;
        float area = (float)H * W * (smin + (1.0f - smin) * U(seed, epoch, index, b));
        float ratio = expf(lr0 + (lr1 - lr0) * U(seed, epoch, index, b + 1));
        int cw = (int)lroundf(sqrtf(area * ratio)), ch = (int)lroundf(sqrtf(area / ratio));
        if (cw >= 1 && ch >= 1 && cw <= W && ch <= H) {
            *y0 = (float)(int)(U(seed, epoch, index, b + 2) * (float)(H - ch + 1));
            *x0 = (float)(int)(U(seed, epoch, index, b + 3) * (float)(W - cw + 1));
            *h = (float)ch;
            *w = (float)cw;
            return;
        }
    }
    *y0 = *x0 = 0;
    *h = (float)H;
    *w = (float)W;
}

void pt_loader_augment_sample(const pt_loader *ld, const uint8_t *pixels, int64_t index,
                              int64_t epoch, int augment, float *dst)
{
    const pt_dataset *ds = ld->ds;
    int C = ld->channels, H = ld->height, W = ld->width;
    int rrc = augment && ld->opt.rrc_scale > 0;
    int pad = augment && !rrc ? ld->opt.crop_pad : 0;
    int jitter = augment && ld->opt.jitter > 0;
    int dy = 0, dx = 0, flip = 0;
    uint64_t seed = ld->opt.seed;
    int64_t plane = (int64_t)H * W;
    if (pad > 0) {
        dy = (int)pt_rng_below(seed, PT_RNG_AUGMENT, (uint64_t)epoch, (uint64_t)index, 1,
                               (uint32_t)(2 * pad + 1)) - pad;
        dx = (int)pt_rng_below(seed, PT_RNG_AUGMENT, (uint64_t)epoch, (uint64_t)index, 2,
                               (uint32_t)(2 * pad + 1)) - pad;
    }
    if (augment && ld->opt.flip)
        flip = pt_rng_uniform(seed, PT_RNG_AUGMENT, (uint64_t)epoch, (uint64_t)index, 0) < 0.5f;
    if (!rrc && !jitter) {
        /* The fast path: crop, flip and normalisation through the lookup table. */
        for (int c = 0; c < C; c++) {
            const float *lut = ld->lut[c < 3 ? c : 2];
            const uint8_t *src = pixels + (int64_t)c * plane;
            float *out = dst + (int64_t)c * plane;
            if (!dy && !dx && !flip) {
                for (int64_t k = 0; k < plane; k++) out[k] = lut[src[k]];
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
                if (flip) {
                    for (int x = 0; x < W; x++) {
                        int sx = W - 1 - x + dx;
                        row[x] = sx >= 0 && sx < W ? lut[srow[sx]] : lut[0];
                    }
                } else {
                    int x0 = dx < 0 ? -dx : 0, x1 = dx > 0 ? W - dx : W;
                    for (int x = 0; x < x0; x++) row[x] = lut[0];
                    for (int x = x0; x < x1; x++) row[x] = lut[srow[x + dx]];
                    for (int x = x1; x < W; x++) row[x] = lut[0];
                }
            }
        }
    } else {
        /* The general path in [0, 1]: geometry, colour jitter, then normalisation. */
        if (rrc) {
            float ry0, rx0, rh, rw;
            rrc_region(ld, index, epoch, &ry0, &rx0, &rh, &rw);
            float sy = rh / (float)H, sx = rw / (float)W;
            for (int c = 0; c < C; c++) {
                const uint8_t *src = pixels + (int64_t)c * plane;
                float *out = dst + (int64_t)c * plane;
                for (int y = 0; y < H; y++) {
                    float fy = ry0 + ((float)y + 0.5f) * sy - 0.5f;
                    if (fy < 0) fy = 0;
                    if (fy > (float)(H - 1)) fy = (float)(H - 1);
                    int y0 = (int)fy, y1 = y0 + 1 < H ? y0 + 1 : y0;
                    float wy = fy - (float)y0;
                    for (int x = 0; x < W; x++) {
                        int xo = flip ? W - 1 - x : x;
                        float fx = rx0 + ((float)xo + 0.5f) * sx - 0.5f;
                        if (fx < 0) fx = 0;
                        if (fx > (float)(W - 1)) fx = (float)(W - 1);
                        int x0 = (int)fx, x1 = x0 + 1 < W ? x0 + 1 : x0;
                        float wx = fx - (float)x0;
                        float top = src[y0 * W + x0] + wx * (float)(src[y0 * W + x1] - src[y0 * W + x0]);
                        float bot = src[y1 * W + x0] + wx * (float)(src[y1 * W + x1] - src[y1 * W + x0]);
                        out[(int64_t)y * W + x] = (top + wy * (bot - top)) / 255.0f;
                    }
                }
            }
        } else {
            for (int c = 0; c < C; c++) {
                const uint8_t *src = pixels + (int64_t)c * plane;
                float *out = dst + (int64_t)c * plane;
                for (int y = 0; y < H; y++)
                    for (int x = 0; x < W; x++) {
                        int sy = y + dy, sx = (flip ? W - 1 - x : x) + dx;
                        out[(int64_t)y * W + x] =
                            sy >= 0 && sy < H && sx >= 0 && sx < W ? (float)src[sy * W + sx] / 255.0f : 0.0f;
                    }
            }
        }
        if (jitter) {
            float j = ld->opt.jitter;
            float fb = 1.0f - j + 2.0f * j * U(seed, epoch, index, 50);
            float fc = 1.0f - j + 2.0f * j * U(seed, epoch, index, 51);
            float fs = 1.0f - j + 2.0f * j * U(seed, epoch, index, 52);
            int64_t total = (int64_t)C * plane;
            double m = 0;
            for (int64_t k = 0; k < total; k++) {
                float v = dst[k] * fb;
                dst[k] = v > 1.0f ? 1.0f : v;
                m += dst[k];
            }
            float mean = (float)(m / (double)total);
            for (int64_t k = 0; k < total; k++) {
                float v = (dst[k] - mean) * fc + mean;
                dst[k] = v < 0 ? 0 : v > 1 ? 1 : v;
            }
            if (C == 3)
                for (int64_t k = 0; k < plane; k++) {
                    float r = dst[k], g = dst[plane + k], b = dst[2 * plane + k];
                    float gray = 0.299f * r + 0.587f * g + 0.114f * b;
                    for (int c = 0; c < 3; c++) {
                        float v = gray + (dst[c * plane + k] - gray) * fs;
                        dst[c * plane + k] = v < 0 ? 0 : v > 1 ? 1 : v;
                    }
                }
        }
        for (int c = 0; c < C; c++) {
            float mean = ds->mean[c < 3 ? c : 2], sd = ds->std[c < 3 ? c : 2];
            float *out = dst + (int64_t)c * plane;
            for (int64_t k = 0; k < plane; k++) out[k] = (out[k] - mean) / sd;
        }
    }
    if (augment && ld->opt.cutout > 0) {
        int size = ld->opt.cutout;
        int cy = (int)pt_rng_below(seed, PT_RNG_AUGMENT, (uint64_t)epoch, (uint64_t)index, 53, (uint32_t)H);
        int cx = (int)pt_rng_below(seed, PT_RNG_AUGMENT, (uint64_t)epoch, (uint64_t)index, 54, (uint32_t)W);
        int y0 = cy - size / 2, x0 = cx - size / 2, y1 = y0 + size, x1 = x0 + size;
        if (y0 < 0) y0 = 0;
        if (x0 < 0) x0 = 0;
        if (y1 > H) y1 = H;
        if (x1 > W) x1 = W;
        for (int c = 0; c < C; c++)
            for (int y = y0; y < y1; y++)
                for (int x = x0; x < x1; x++) dst[(int64_t)c * plane + (int64_t)y * W + x] = 0.0f;
    }
}

/* Gamma(alpha) by Marsaglia-Tsang from counter draws starting at b0 (alpha < 1 boosted). */
static float gamma_draw(uint64_t seed, int64_t epoch, int64_t index, uint32_t b0, float alpha)
{
    float boost = 1.0f;
    if (alpha < 1.0f) {
        boost = powf(U(seed, epoch, index, b0 + 150), 1.0f / alpha);
        alpha += 1.0f;
    }
    float d = alpha - 1.0f / 3.0f, c = 1.0f / sqrtf(9.0f * d);
    for (uint32_t k = 0; k < 64; k++) {
        float x = pt_rng_normal(seed, PT_RNG_AUGMENT, (uint64_t)epoch, (uint64_t)index, b0 + 2 * k);
        float v = 1.0f + c * x;
        if (v <= 0) continue;
        v = v * v * v;
        float u = U(seed, epoch, index, b0 + 2 * k + 1);
        if (logf(u) < 0.5f * x * x + d - d * v + d * logf(v)) return d * v * boost;
    }
    return d * boost;
}

/* Mixes sample k (x, label y) with its partner in place: the partner, its kind and lam are
 * functions of (seed, epoch, index) only. */
static pt_status mix_sample(const pt_loader *ld, pt_loader_slot *s, int64_t idx, int64_t epoch,
                            float *x, int32_t *y2, float *lam_out, pt_error *err)
{
    const pt_dataset *ds = ld->ds;
    uint64_t seed = ld->opt.seed;
    int64_t j = (int64_t)pt_rng_below(seed, PT_RNG_AUGMENT, (uint64_t)epoch, (uint64_t)idx, 60,
                                      (uint32_t)ld->n);
    int64_t partner = ld->opt.subset ? ld->opt.subset[j] : j;
    const uint8_t *px;
    PT_TRY(pt_dataset_sample(ds, partner, s->scratch2, &px, err));
    pt_loader_augment_sample(ld, px, partner, epoch, 1, s->mix);
    int cutmix = ld->opt.cutmix_alpha > 0 &&
                 (ld->opt.mixup_alpha <= 0 || U(seed, epoch, idx, 61) < 0.5f);
    float alpha = cutmix ? ld->opt.cutmix_alpha : ld->opt.mixup_alpha;
    float g1 = gamma_draw(seed, epoch, idx, 100, alpha), g2 = gamma_draw(seed, epoch, idx, 300, alpha);
    float lam = g1 + g2 > 0 ? g1 / (g1 + g2) : 0.5f;
    int C = ld->channels, H = ld->height, W = ld->width;
    int64_t total = (int64_t)C * H * W, plane = (int64_t)H * W;
    if (!cutmix) {
        for (int64_t k = 0; k < total; k++) x[k] = lam * x[k] + (1.0f - lam) * s->mix[k];
    } else {
        float r = sqrtf(1.0f - lam);
        int ch = (int)((float)H * r), cw = (int)((float)W * r);
        int cy = (int)pt_rng_below(seed, PT_RNG_AUGMENT, (uint64_t)epoch, (uint64_t)idx, 62, (uint32_t)H);
        int cx = (int)pt_rng_below(seed, PT_RNG_AUGMENT, (uint64_t)epoch, (uint64_t)idx, 63, (uint32_t)W);
        int y0 = cy - ch / 2, x0 = cx - cw / 2, y1 = cy + ch / 2, x1 = cx + cw / 2;
        if (y0 < 0) y0 = 0;
        if (x0 < 0) x0 = 0;
        if (y1 > H) y1 = H;
        if (x1 > W) x1 = W;
        for (int c = 0; c < C; c++)
            for (int y = y0; y < y1; y++)
                for (int xx = x0; xx < x1; xx++) {
                    int64_t o = c * plane + (int64_t)y * W + xx;
                    x[o] = s->mix[o];
                }
        lam = 1.0f - (float)((y1 - y0) * (x1 - x0)) / (float)plane;
    }
    *y2 = ds->labels[partner];
    *lam_out = lam;
    return PT_OK;
}

double pt_loader_wait_seconds(const pt_loader *ld)
{
    return ld->wait_s;
}

/* This rank's part of global batch g: positions [*first, *first + *n) of the epoch order. */
static void batch_part(const pt_loader *ld, int64_t g, int64_t *first, int64_t *n)
{
    int world = ld->opt.world > 1 ? ld->opt.world : 1, rank = world > 1 ? ld->opt.rank : 0;
    int64_t G = (int64_t)ld->opt.batch_size * world, start = g * G;
    int64_t m = ld->n - start < G ? ld->n - start : G;
    if (m < 0) m = 0;
    int64_t base = m / world, extra = m % world;
    *first = start + rank * base + (rank < extra ? rank : extra);
    *n = base + (rank < extra ? 1 : 0);
}

int64_t pt_loader_samples_per_epoch(const pt_loader *ld)
{
    return ld->rank_samples;
}

int64_t pt_loader_batches_per_epoch(const pt_loader *ld)
{
    int64_t b = (int64_t)ld->opt.batch_size * (ld->opt.world > 1 ? ld->opt.world : 1);
    return ld->opt.drop_last ? ld->n / b : (ld->n + b - 1) / b;
}

/* Fills slot with batch `batch` of the current order; touches only the slot and reads
 * order/ds, so it runs without the lock while order is guaranteed stable. */
static void fill_slot(const pt_loader *ld, pt_loader_slot *s, int64_t batch, int64_t epoch)
{
    const pt_dataset *ds = ld->ds;
    int64_t sample = (int64_t)ld->channels * ld->height * ld->width;
    int64_t first, n;
    batch_part(ld, batch, &first, &n);
    int augment = ld->opt.flip || ld->opt.crop_pad > 0 || ld->opt.rrc_scale > 0 ||
                  ld->opt.jitter > 0 || ld->opt.cutout > 0;
    s->status = PT_OK;
    s->batch = batch;
    s->n = 0;
    /* The buffers hold samples of the shape seen at init: a dataset changed since would be
     * read or written past them. */
    if (ds->channels != ld->channels || ds->height != ld->height || ds->width != ld->width) {
        s->status = pt_fail(&s->error, PT_ERR_MISMATCH,
                            "loader: %s now holds %dx%dx%d samples, the loader was built for %dx%dx%d",
                            ds->source[0] ? ds->source : ds->name, ds->channels, ds->height, ds->width,
                            ld->channels, ld->height, ld->width);
        return;
    }
    for (int64_t k = 0; k < n; k++) {
        int64_t idx = ld->order[first + k];
        const uint8_t *px;
        pt_status st = pt_dataset_sample(ds, idx, s->scratch, &px, &s->error);
        if (st != PT_OK) {
            s->status = st;
            return;
        }
        pt_loader_augment_sample(ld, px, idx, epoch, augment, s->x + k * sample);
        if (ld->mixing) {
            st = mix_sample(ld, s, idx, epoch, s->x + k * sample, &s->y2[k], &s->lam[k], &s->error);
            if (st != PT_OK) {
                s->status = st;
                return;
            }
        }
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

static void *buf_alloc(const pt_loader_options *o, size_t bytes)
{
    return o->host_alloc ? o->host_alloc(o->alloc_ctx, bytes) : malloc(bytes);
}

static void buf_free(const pt_loader_options *o, void *p)
{
    if (!p) return;
    if (o->host_free) o->host_free(o->alloc_ctx, p);
    else free(p);
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
    if ((opt->channels > 0 && opt->channels != ds->channels) || (opt->height > 0 && opt->height != ds->height) ||
        (opt->width > 0 && opt->width != ds->width))
        return pt_fail(err, PT_ERR_MISMATCH,
                       "loader: %s holds %dx%dx%d samples, but its batches go to a consumer built for %dx%dx%d",
                       ds->source[0] ? ds->source : ds->name, ds->channels, ds->height, ds->width, opt->channels,
                       opt->height, opt->width);
    if (opt->num_classes < 0 || (opt->num_classes > 0 && ds->num_classes > opt->num_classes))
        return pt_fail(err, PT_ERR_MISMATCH, "loader: %s has %d classes, but its batches go to a consumer of %d",
                       ds->source[0] ? ds->source : ds->name, ds->num_classes, opt->num_classes);
    for (int64_t i = 0; opt->num_classes > 0 && i < ds->count; i++)
        if (ds->labels[i] < 0 || ds->labels[i] >= opt->num_classes)
            return pt_fail(err, PT_ERR_FORMAT, "loader: %s: sample %lld has label %d, outside [0, %d)",
                           ds->source[0] ? ds->source : ds->name, (long long)i, (int)ds->labels[i],
                           opt->num_classes);
    if (opt->batch_size <= 0)
        return pt_fail(err, PT_ERR_INVALID, "loader: batch size must be > 0, got %d",
                       opt->batch_size);
    if (opt->crop_pad < 0 || opt->crop_pad > 4096)
        return pt_fail(err, PT_ERR_INVALID, "loader: crop padding must be in [0, 4096], got %d",
                       opt->crop_pad);
    if (opt->workers < 0 || opt->workers > 256 || opt->ring < 0 || opt->ring > 1024)
        return pt_fail(err, PT_ERR_INVALID, "loader: workers must be in [0, 256] and ring in "
                       "[0, 1024], got %d and %d", opt->workers, opt->ring);
    if (!(opt->rrc_scale >= 0 && opt->rrc_scale <= 1) || !(opt->jitter >= 0 && opt->jitter <= 1) ||
        opt->cutout < 0 || !(opt->mixup_alpha >= 0 && opt->mixup_alpha <= 100) ||
        !(opt->cutmix_alpha >= 0 && opt->cutmix_alpha <= 100))
        return pt_fail(err, PT_ERR_INVALID, "loader: augmentation out of range (rrc scale and jitter "
                       "in [0, 1], cutout >= 0, mixup/cutmix alpha in [0, 100])");
    if (opt->world < 0 || (opt->world > 1 && (opt->rank < 0 || opt->rank >= opt->world)))
        return pt_fail(err, PT_ERR_INVALID, "loader: rank %d outside [0, %d)", opt->rank, opt->world);
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
    ld->channels = ds->channels;
    ld->height = ds->height;
    ld->width = ds->width;
    ld->n = opt->subset ? opt->subset_count : ds->count;
    ld->mixing = opt->mixup_alpha > 0 || opt->cutmix_alpha > 0;
    ld->nthreads = opt->workers > 0 ? opt->workers : opt->prefetch ? 1 : 0;
    ld->nslots = ld->nthreads ? (opt->ring > 0 ? opt->ring : ld->nthreads + 1) : 1;
    if (ld->nthreads && ld->nslots < 2) ld->nslots = 2;
    {
        int64_t nb = pt_loader_batches_per_epoch(ld), total = 0;
        for (int64_t g = 0; g < nb; g++) {
            int64_t f, m;
            batch_part(ld, g, &f, &m);
            total += m;
        }
        ld->rank_samples = total;
    }
    int64_t sample = pt_dataset_sample_bytes(ds), B = opt->batch_size;
    ld->order = malloc((size_t)ld->n * sizeof *ld->order);
    ld->slot = calloc((size_t)ld->nslots, sizeof *ld->slot);
    ld->threads = ld->nthreads ? calloc((size_t)ld->nthreads, sizeof *ld->threads) : NULL;
    int ok = ld->order && ld->slot && (!ld->nthreads || ld->threads);
    for (int i = 0; i < ld->nslots && ok; i++) {
        pt_loader_slot *s = &ld->slot[i];
        s->x = buf_alloc(opt, (size_t)(B * sample) * sizeof *s->x);
        s->y = malloc((size_t)B * sizeof *s->y);
        s->index = malloc((size_t)B * sizeof *s->index);
        s->scratch = ds->pixels ? NULL : malloc((size_t)sample);
        ok = s->x && s->y && s->index && (ds->pixels || s->scratch);
        if (ok && ld->mixing) {
            s->scratch2 = ds->pixels ? NULL : malloc((size_t)sample);
            s->mix = malloc((size_t)sample * sizeof *s->mix);
            s->y2 = malloc((size_t)B * sizeof *s->y2);
            s->lam = malloc((size_t)B * sizeof *s->lam);
            ok = (ds->pixels || s->scratch2) && s->mix && s->y2 && s->lam;
        }
    }
    if (!ok) {
        pt_loader_free(ld);
        return pt_fail(err, PT_ERR_NOMEM, "loader: out of memory for batches of %lld",
                       (long long)B);
    }
    make_order(ld, 0);
    ld->produce = pt_loader_batches_per_epoch(ld); /* nothing to produce before an epoch starts */
    ld->next_batch = ld->produce;
    if (ld->nthreads) {
        if (pthread_mutex_init(&ld->mu, NULL) != 0) {
            pt_loader_free(ld);
            return pt_fail(err, PT_ERR_NOMEM, "loader: cannot create a mutex");
        }
        if (pthread_cond_init(&ld->cv, NULL) != 0) {
            pthread_mutex_destroy(&ld->mu);
            pt_loader_free(ld);
            return pt_fail(err, PT_ERR_NOMEM, "loader: cannot create a condition variable");
        }
        ld->started = 1;
        int created = 0;
        for (; created < ld->nthreads; created++)
            if (pthread_create(&ld->threads[created], NULL, producer, ld) != 0) break;
        if (created < ld->nthreads) {
            ld->nthreads = created; /* pt_loader_free joins those that started */
            pt_loader_free(ld);
            return pt_fail(err, PT_ERR_NOMEM, "loader: cannot start worker thread %d", created);
        }
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
        for (int t = 0; t < ld->nthreads; t++) pthread_join(ld->threads[t], NULL);
        pthread_cond_destroy(&ld->cv);
        pthread_mutex_destroy(&ld->mu);
    }
    for (int i = 0; ld->slot && i < ld->nslots; i++) {
        pt_loader_slot *s = &ld->slot[i];
        buf_free(&ld->opt, s->x);
        free(s->y);
        free(s->index);
        free(s->scratch);
        free(s->scratch2);
        free(s->mix);
        free(s->y2);
        free(s->lam);
    }
    free(ld->slot);
    free(ld->threads);
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

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

pt_status pt_loader_next(pt_loader *ld, pt_host_batch *out, pt_error *err)
{
    memset(out, 0, sizeof *out);
    double t0 = mono_s();
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
            ld->wait_s += mono_s() - t0;
            reset_locked(ld, ld->epoch, ld->next_batch);
            pthread_mutex_unlock(&ld->mu);
            return st;
        }
        pthread_mutex_unlock(&ld->mu);
    }
    ld->wait_s += mono_s() - t0;
    if (s->status != PT_OK) {
        if (err) *err = s->error;
        return s->status;
    }
    ld->next_batch++;
    out->y2 = ld->mixing ? s->y2 : NULL;
    out->lam = ld->mixing ? s->lam : NULL;
    out->x = s->x;
    out->y = s->y;
    out->index = s->index;
    out->n = s->n;
    out->batch = s->batch;
    out->channels = ld->channels;
    out->height = ld->height;
    out->width = ld->width;
    return PT_OK;
}

pt_status pt_augment_parse(const char *list, int height, pt_loader_options *opt, pt_error *err)
{
    pt_loader_options o = *opt;
    o.flip = 0;
    o.crop_pad = 0;
    o.rrc_scale = 0;
    o.jitter = 0;
    o.cutout = 0;
    o.mixup_alpha = 0;
    o.cutmix_alpha = 0;
    char buf[256];
    if (!list || strlen(list) >= sizeof buf)
        return pt_fail(err, PT_ERR_INVALID, "--augment: expected a comma-separated list");
    strcpy(buf, list);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        double v = -1;
        if (eq) {
            *eq = '\0';
            char *end;
            v = strtod(eq + 1, &end);
            if (end == eq + 1 || *end || !(v >= 0))
                return pt_fail(err, PT_ERR_INVALID, "--augment: '%s=%s' needs a number >= 0", tok, eq + 1);
        }
        if (!strcmp(tok, "none") && !eq) continue;
        else if (!strcmp(tok, "flip") && !eq) o.flip = 1;
        else if (!strcmp(tok, "crop")) o.crop_pad = eq ? (int)v : 4;
        else if (!strcmp(tok, "rrc")) o.rrc_scale = eq ? (float)v : 0.08f;
        else if (!strcmp(tok, "jitter")) o.jitter = eq ? (float)v : 0.4f;
        else if (!strcmp(tok, "cutout")) o.cutout = eq ? (int)v : (height / 4 > 0 ? height / 4 : 1);
        else if (!strcmp(tok, "mixup")) o.mixup_alpha = eq ? (float)v : 0.2f;
        else if (!strcmp(tok, "cutmix")) o.cutmix_alpha = eq ? (float)v : 1.0f;
        else
            return pt_fail(err, PT_ERR_INVALID, "--augment: unknown entry '%s' (expected none, flip, crop[=PAD], "
                           "rrc[=SCALE], jitter[=F], cutout[=SIZE], mixup[=ALPHA], cutmix[=ALPHA])", tok);
        if ((o.rrc_scale > 1) || (o.jitter > 1) || o.crop_pad > 4096 || o.mixup_alpha > 100 || o.cutmix_alpha > 100)
            return pt_fail(err, PT_ERR_INVALID, "--augment: '%s' out of range", tok);
        if (eq && (!strcmp(tok, "rrc") || !strcmp(tok, "mixup") || !strcmp(tok, "cutmix")) && v == 0)
            return pt_fail(err, PT_ERR_INVALID, "--augment: '%s' needs a value > 0", tok);
    }
    *opt = o;
    return PT_OK;
}
