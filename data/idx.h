/* Reader for IDX files (the MNIST / Fashion-MNIST container), gzip-compressed or raw.
 * The header is never trusted: every dimension is bounded and the data size checked
 * against what the file really holds before and while memory is taken for it. */
#ifndef PT_IDX_H
#define PT_IDX_H

#include <stdint.h>

#include "polytrain/status.h"

#define PT_IDX_MAGIC_U8_1D 0x00000801u /* labels */
#define PT_IDX_MAGIC_U8_3D 0x00000803u /* images: count, rows, cols */

#define PT_IDX_MAX_COUNT 100000000LL   /* items (dim 0) */
#define PT_IDX_MAX_DIM 4096            /* any other dimension */

typedef struct pt_idx {
    uint32_t magic;
    int ndim;                /* 1..3 */
    int64_t dim[3];          /* as in the header; dim[0] = items in the file */
    int64_t item_bytes;      /* product of dim[1..ndim) (1 for labels) */
    int64_t first, count;    /* the items held in data: [first, first + count) */
    uint8_t *data;           /* count * item_bytes */
} pt_idx;

/* Reads every item of an unsigned-byte IDX file whose magic must equal `magic`
 * (PT_IDX_MAGIC_U8_1D or _3D). Fails on a bad magic, zero or out-of-bound dimensions,
 * truncated data, bytes after the data, or a corrupt gzip stream; the message names path. */
pt_status pt_idx_read(const char *path, uint32_t magic, pt_idx *out, pt_error *err);

/* Reads items [first, first + count) only. count < 0 means through the last item, and
 * then bytes after the data are an error as with pt_idx_read. Reading a prefix does not
 * decompress the rest, so a corrupt tail goes unnoticed. */
pt_status pt_idx_read_items(const char *path, uint32_t magic, int64_t first, int64_t count,
                            pt_idx *out, pt_error *err);

/* Reads the first `keep` items (keep <= 0, or more than the file holds: all of them) and
 * checks the whole file as pt_idx_read does, the items after the kept ones streamed through
 * a small buffer: memory is what the kept items need, whatever the header claims and however
 * far the data decompresses. max_value >= 0 makes every byte above it an error (labels:
 * "label 10 of sample 7 is not a class in [0, 10)"). */
pt_status pt_idx_read_checked(const char *path, uint32_t magic, int64_t keep, int max_value, pt_idx *out,
                              pt_error *err);

/* Reads and checks only the header (data stays NULL, count 0). */
pt_status pt_idx_read_header(const char *path, uint32_t magic, pt_idx *out, pt_error *err);

void pt_idx_free(pt_idx *idx);

#endif
