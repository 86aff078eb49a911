/* The ranks of a multi-process run agree on what they are about to do before the first
 * collective that depends on it: ranks that loaded different data (sample counts, image
 * geometry, classes) or were given different options would otherwise wait for each other
 * forever inside a collective of mismatched length. */
#ifndef PT_WORLD_AGREE_H
#define PT_WORLD_AGREE_H

#include <stdint.h>

#include "polytrain/world.h"

typedef enum { PT_AGREE_INT, PT_AGREE_REAL, PT_AGREE_DIGEST } pt_agree_kind;

typedef struct pt_agree_item {
    const char *what; /* what it is, for the message ("training samples") */
    pt_agree_kind kind;
    int64_t value;    /* an integer, a double's bits (PT_AGREE_REAL) or a digest */
} pt_agree_item;

#define PT_AGREE_MAX 64

/* Every rank calls it with the same list (same order, at most PT_AGREE_MAX items). It uses
 * only fixed-size collectives, so it cannot hang itself. When any item differs between any
 * two ranks, every rank fails with PT_ERR_MISMATCH naming the items: this rank's value and
 * rank 0's where they differ, and which items differ elsewhere. A single process: PT_OK. */
pt_status pt_world_agree(const pt_world *w, const pt_agree_item *items, int n, pt_error *err);

/* FNV-1a digests for PT_AGREE_DIGEST items (strings, bytes). */
uint64_t pt_agree_digest(uint64_t h, const void *data, size_t n);
#define PT_AGREE_DIGEST_START 1469598103934665603ULL

#endif
