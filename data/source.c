/* pt_loader behind the pt_batch_source function table. */
#include "polytrain/source.h"

static int64_t src_samples(void *ctx) { return pt_loader_samples_per_epoch(ctx); }
static int64_t src_batches(void *ctx) { return pt_loader_batches_per_epoch(ctx); }
static pt_status src_start(void *ctx, int64_t epoch, pt_error *err) { return pt_loader_start_epoch(ctx, epoch, err); }

static pt_status src_seek(void *ctx, int64_t epoch, int64_t batch, pt_error *err)
{
    return pt_loader_seek(ctx, epoch, batch, err);
}
static double src_wait(void *ctx) { return pt_loader_wait_seconds(ctx); }

static pt_status src_next(void *ctx, pt_batch *out, pt_error *err)
{
    pt_host_batch hb;
    PT_TRY(pt_loader_next(ctx, &hb, err));
    out->x = hb.x;
    out->y = hb.y;
    out->index = hb.index;
    out->y2 = hb.y2; /* mixup/cutmix targets, NULL unless enabled */
    out->lam = hb.lam;
    out->n = hb.n;
    out->batch = hb.batch;
    return PT_OK;
}

pt_batch_source pt_loader_source(pt_loader *ld)
{
    pt_batch_source s = {ld, src_samples, src_batches, src_start, src_next, src_seek, src_wait};
    return s;
}
