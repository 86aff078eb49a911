/* Top-k and softmax on host rows of logits. */
#include <math.h>

#include "polytrain/metrics.h"

int pt_topk_hits(const float *logits, const int32_t *labels, int n, int classes, int k)
{
    int hits = 0;
    for (int i = 0; i < n; i++) {
        const float *row = logits + (int64_t)i * classes;
        float v = row[labels[i]];
        if (isnan(v)) continue;
        int larger = 0, nan = 0;
        for (int c = 0; c < classes; c++) {
            if (isnan(row[c])) nan = 1;
            else if (row[c] > v || (row[c] == v && c < labels[i])) larger++;
        }
        if (!nan && larger < k) hits++;
    }
    return hits;
}

void pt_topk_indices(const float *row, int classes, int k, int *out)
{
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int c = 0; c < classes; c++) {
            int taken = 0;
            for (int t = 0; t < j; t++) taken |= out[t] == c;
            if (taken) continue;
            if (best < 0 || row[c] > row[best]) best = c;
        }
        out[j] = best;
    }
}

void pt_softmax_row(const float *row, int classes, float *probs)
{
    float m = row[0];
    for (int c = 1; c < classes; c++) m = row[c] > m ? row[c] : m;
    double s = 0;
    for (int c = 0; c < classes; c++) s += exp((double)row[c] - m);
    for (int c = 0; c < classes; c++) probs[c] = (float)(exp((double)row[c] - m) / s);
}
