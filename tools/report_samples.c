/* polytrain report's misclassified samples: the most confident mistakes (the highest
 * probability given to a wrong class; ties in dataset order), each written upscaled
 * (nearest neighbour, so that 28x28 images are visible) as misclassified/NNN.png for the
 * page, and at its own size as raw RGB for gnuplot's grid (gnuplot/misNNN.rgb). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "data/png_encode.h"
#include "tools/report_internal.h"

/* Images are shown about this many pixels on their longer side. */
#define REPORT_SAMPLE_PX 112

static const report_ctx *sort_ctx;

static int by_confidence(const void *a, const void *b)
{
    const int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    const float pi = sort_ctx->cm.prob[i], pj = sort_ctx->cm.prob[j];
    if (pi != pj) return pi > pj ? -1 : 1;
    return i < j ? -1 : i > j;
}

pt_status report_write_samples(report_ctx *r, int max, pt_error *err)
{
    const cli_confusion *cm = &r->cm;
    const pt_dataset *ds = &r->ds;
    r->wrong = 0;
    for (int64_t i = 0; i < cm->count; i++) r->wrong += cm->predicted[i] != ds->labels[i];
    if (max <= 0 || r->wrong == 0) return PT_OK;
    int64_t *idx = malloc((size_t)r->wrong * sizeof *idx);
    if (!idx) return pt_fail(err, PT_ERR_NOMEM, "out of host memory listing %lld mistakes", (long long)r->wrong);
    int64_t n = 0;
    for (int64_t i = 0; i < cm->count; i++)
        if (cm->predicted[i] != ds->labels[i]) idx[n++] = i;
    sort_ctx = r;
    qsort(idx, (size_t)n, sizeof *idx, by_confidence);
    sort_ctx = NULL;
    const int shown = n < max ? (int)n : max;
    const int C = ds->channels, H = ds->height, W = ds->width;
    const int side = H > W ? H : W;
    r->scale = side >= REPORT_SAMPLE_PX ? 1 : (REPORT_SAMPLE_PX + side - 1) / side;
    const int s = r->scale;
    r->mistakes = calloc((size_t)shown, sizeof *r->mistakes);
    uint8_t *scratch = malloc((size_t)pt_dataset_sample_bytes(ds));
    uint8_t *big = malloc((size_t)H * s * W * s * (C == 1 ? 1 : 3));
    uint8_t *rgb = malloc((size_t)H * W * 3);
    char dir[4300], gdir[4300], path[4400];
    snprintf(dir, sizeof dir, "%s/misclassified", r->tmp);
    snprintf(gdir, sizeof gdir, "%s/gnuplot", r->tmp);
    pt_status st = PT_OK;
    if (!r->mistakes || !scratch || !big || !rgb)
        st = pt_fail(err, PT_ERR_NOMEM, "out of host memory for the misclassified images");
    if (st == PT_OK) st = pt_mkdir_p(dir, err);
    if (st == PT_OK) st = pt_mkdir_p(gdir, err);
    for (int k = 0; k < shown && st == PT_OK; k++) {
        report_mistake *mk = &r->mistakes[k];
        mk->index = idx[k];
        mk->truth = ds->labels[idx[k]];
        mk->predicted = cm->predicted[idx[k]];
        mk->prob = cm->prob[idx[k]];
        const uint8_t *px = NULL;
        if ((st = pt_dataset_sample(ds, idx[k], scratch, &px, err)) != PT_OK) break;
        /* CHW bytes -> interleaved RGB (gray repeated), the form both outputs take */
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < 3; c++)
                    rgb[((size_t)y * W + x) * 3 + c] = px[((size_t)(c < C ? c : C - 1) * H + y) * W + x];
        const int oc = C == 1 ? 1 : 3;
        for (int y = 0; y < H * s; y++)
            for (int x = 0; x < W * s; x++)
                for (int c = 0; c < oc; c++)
                    big[((size_t)y * W * s + x) * oc + c] = rgb[((size_t)(y / s) * W + x / s) * 3 + c];
        snprintf(mk->png, sizeof mk->png, "misclassified/%03d.png", k);
        snprintf(path, sizeof path, "%s/%s", r->tmp, mk->png);
        if ((st = pt_png_write(path, big, W * s, H * s, oc, err)) != PT_OK) break;
        snprintf(path, sizeof path, "%s/mis%03d.rgb", gdir, k);
        const void *chunks[1] = {rgb};
        size_t sizes[1] = {(size_t)H * W * 3};
        st = pt_write_file_atomic(path, chunks, sizes, 1, err);
    }
    if (st == PT_OK) r->nmistakes = shown;
    free(rgb);
    free(big);
    free(scratch);
    free(idx);
    return st;
}
