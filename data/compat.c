/* Whether samples from one dataset can go where another's went: validation data next to the
 * training data, a dataset next to the checkpoint trained on another. A model reads exactly
 * channels x height x width values per sample and a label means a class by its position, so
 * any difference in these is either an out-of-bounds read or metrics of the wrong classes. */
#include <stdio.h>
#include <string.h>

#include "core/json.h"
#include "polytrain/dataset.h"

pt_dataset_shape pt_dataset_shape_of(const pt_dataset *ds)
{
    pt_dataset_shape s;
    s.channels = ds->channels;
    s.height = ds->height;
    s.width = ds->width;
    s.num_classes = ds->num_classes;
    s.class_names = (const char *const *)ds->class_names;
    return s;
}

/* Appends "; " and a formatted part to buf (len used so far), never past cap. */
static void add_part(char *buf, size_t cap, size_t *len, const char *part)
{
    if (*len >= cap - 1) return;
    int n = snprintf(buf + *len, cap - *len, "%s%s", *len ? "; " : "", part);
    if (n > 0) *len += (size_t)n < cap - *len ? (size_t)n : cap - *len - 1;
}

/* Class names compare as a checkpoint records them: its metadata is JSON, where a byte that is
 * not UTF-8 is stored as U+FFFD, so a name read back from a checkpoint equals the dataset's
 * name after the same encoding, not before. */
static int same_class_name(const char *a, const char *b)
{
    if (strcmp(a, b) == 0) return 1;
    pt_strbuf x = {0}, y = {0};
    int eq = pt_strbuf_json_string(&x, a) == PT_OK && pt_strbuf_json_string(&y, b) == PT_OK && x.len == y.len &&
             memcmp(x.data, y.data, x.len) == 0;
    pt_strbuf_free(&x);
    pt_strbuf_free(&y);
    return eq;
}

pt_status pt_dataset_check_compatible(const pt_dataset_shape *want, const char *want_what,
                                      const pt_dataset_shape *have, const char *have_what,
                                      pt_error *err)
{
    char diff[1024] = "", part[640];
    size_t len = 0;
    if (have->channels != want->channels) {
        snprintf(part, sizeof part, "%d channel%s, expected %d", have->channels, have->channels == 1 ? "" : "s",
                 want->channels);
        add_part(diff, sizeof diff, &len, part);
    }
    if (have->height != want->height || have->width != want->width) {
        snprintf(part, sizeof part, "%dx%d images, expected %dx%d", have->height, have->width, want->height,
                 want->width);
        add_part(diff, sizeof diff, &len, part);
    }
    if (have->num_classes != want->num_classes) {
        snprintf(part, sizeof part, "%d classes, expected %d", have->num_classes, want->num_classes);
        add_part(diff, sizeof diff, &len, part);
    } else if (have->class_names && want->class_names) {
        int differ = 0, first = -1;
        for (int c = 0; c < have->num_classes; c++) {
            const char *a = have->class_names[c], *b = want->class_names[c];
            if (!a || !b || same_class_name(a, b)) continue;
            if (first < 0) first = c;
            differ++;
        }
        if (first >= 0) {
            snprintf(part, sizeof part, "class %d is '%.200s', expected '%.200s'%s (%d of %d class names differ; "
                     "the classes must be the same, in the same order)",
                     first, have->class_names[first], want->class_names[first], differ > 1 ? ", and more" : "",
                     differ, have->num_classes);
            add_part(diff, sizeof diff, &len, part);
        }
    }
    if (!len) return PT_OK;
    /* the sides are capped so that the differences always fit in the message */
    return pt_fail(err, PT_ERR_MISMATCH, "%.300s does not match %.300s: %s", have_what, want_what, diff);
}
