/* Evaluation of a checkpoint on a dataset (see evaluate.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "polytrain/loader.h"
#include "polytrain/source.h"
#include "tools/evaluate.h"

/* The model's forward on its devices, for pt_evaluate_with. */
static pt_status model_forward(void *ctx, const float *x, const int32_t *y, int n, float *logits, float *losses,
                               pt_error *err)
{
    return cli_model_forward(ctx, x, y, n, logits, losses, err);
}

pt_status cli_evaluate_dataset(cli_model *m, const char *checkpoint, pt_dataset *ds, const char *data_name,
                               pt_eval_result *res, float **logits, pt_error *err)
{
    if (logits) *logits = NULL;
    if (ds->channels != m->meta.in_channels || ds->num_classes != m->meta.num_classes ||
        ds->height != m->meta.height || ds->width != m->meta.width)
        return pt_fail(err, PT_ERR_MISMATCH,
                       "checkpoint '%s' expects %dx%dx%d images and %d classes, dataset '%s' has %dx%dx%d and %d",
                       checkpoint, m->meta.in_channels, m->meta.height, m->meta.width, m->meta.num_classes,
                       data_name, ds->channels, ds->height, ds->width, ds->num_classes);
    memcpy(ds->mean, m->meta.mean, sizeof ds->mean);
    memcpy(ds->std, m->meta.std, sizeof ds->std);
    float *out = NULL;
    if (logits) {
        out = malloc((size_t)(ds->count > 0 ? ds->count : 1) * (size_t)ds->num_classes * sizeof(float));
        if (!out) return pt_fail(err, PT_ERR_NOMEM, "out of host memory for %lld x %d logits", (long long)ds->count,
                                 ds->num_classes);
    }
    pt_loader ld;
    memset(&ld, 0, sizeof ld);
    pt_loader_options lo;
    memset(&lo, 0, sizeof lo);
    lo.batch_size = m->batch * m->ndev;
    lo.prefetch = 1;
    pt_status st = pt_loader_init(&ld, ds, &lo, err);
    if (st == PT_OK)
        st = pt_evaluate_with(model_forward, m, m->meta.num_classes, pt_loader_source(&ld), res, out, err);
    pt_loader_free(&ld);
    if (st != PT_OK) {
        free(out);
        return st;
    }
    if (logits) *logits = out;
    return PT_OK;
}

char **cli_class_names(const cli_model *m, const pt_dataset *ds)
{
    const int k = m->meta.num_classes;
    char **names = calloc((size_t)k, sizeof *names);
    if (!names) return NULL;
    for (int c = 0; c < k; c++) {
        char buf[16];
        const char *s = m->meta.class_names && m->meta.class_names[c] ? m->meta.class_names[c]
                        : ds && ds->class_names && ds->class_names[c] ? ds->class_names[c]
                                                                      : NULL;
        if (!s) {
            snprintf(buf, sizeof buf, "%d", c);
            s = buf;
        }
        if (!(names[c] = strdup(s))) {
            cli_class_names_free(names, k);
            return NULL;
        }
    }
    return names;
}

void cli_class_names_free(char **names, int classes)
{
    if (!names) return;
    for (int c = 0; c < classes; c++) free(names[c]);
    free(names);
}
