/* Evaluation of a checkpoint on a dataset (see evaluate.h). */
#include <math.h>
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
    char what[1200];
    snprintf(what, sizeof what, "dataset '%.500s'%s%.500s%s", data_name, ds->source[0] ? " (" : "", ds->source,
             ds->source[0] ? ")" : "");
    PT_TRY(cli_check_checkpoint_data(&m->meta, checkpoint, ds, what, err));
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
    lo.channels = m->meta.in_channels;
    lo.height = m->meta.height;
    lo.width = m->meta.width;
    lo.num_classes = m->meta.num_classes;
    pt_status st = pt_loader_init(&ld, ds, &lo, err);
    if (st == PT_OK)
        st = pt_evaluate_with(model_forward, m, m->meta.num_classes, pt_loader_source(&ld), res, out, err);
    pt_loader_free(&ld);
    if (st == PT_OK && !isfinite(res->loss))
        st = pt_fail(err, PT_ERR_FORMAT,
                     "checkpoint '%s' gives non-finite outputs on %s (loss %g): its weights or statistics overflow "
                     "float; no result",
                     checkpoint, data_name, res->loss);
    if (st != PT_OK) {
        free(out);
        return st;
    }
    if (logits) *logits = out;
    return PT_OK;
}

pt_status cli_check_checkpoint_data(const pt_model_meta *meta, const char *checkpoint, const pt_dataset *ds,
                                    const char *what, pt_error *err)
{
    pt_dataset_shape want = {meta->in_channels, meta->height, meta->width, meta->num_classes,
                             (const char *const *)meta->class_names};
    pt_dataset_shape have = pt_dataset_shape_of(ds);
    char who[4200];
    snprintf(who, sizeof who, "the data checkpoint '%s' was trained on", checkpoint);
    return pt_dataset_check_compatible(&want, who, &have, what, err);
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
