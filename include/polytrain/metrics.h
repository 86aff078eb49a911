/* Classification metrics on host logits: top-k hits, used by training and evaluation. */
#ifndef PT_METRICS_H
#define PT_METRICS_H

#include <stdint.h>

/* Number of rows whose label is among the k largest logits (ties count against the
 * label: a label tied with others is a hit only if fewer than k logits are larger, and
 * NaN logits never hit). */
int pt_topk_hits(const float *logits, const int32_t *labels, int n, int classes, int k);
/* Indices of the k largest values of row (k <= classes), largest first. */
void pt_topk_indices(const float *row, int classes, int k, int *out);
/* Softmax of one row into probs (numerically stable). */
void pt_softmax_row(const float *row, int classes, float *probs);

#endif
