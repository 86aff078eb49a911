/* The table of models by name, and the one entry point that builds a finished net. */
#include <stdio.h>
#include <string.h>

#include "polytrain/models.h"

static const pt_model_entry models[] = {
    {"baseline", "plain CNN: 4 x (conv3x3-BN-ReLU-maxpool), widths 64..512, GAP, fc", pt_model_baseline},
    {"resnet18", "ResNet-18 (BasicBlock [2,2,2,2]) with a 3x3 stem and no max-pool", pt_model_resnet18},
    {"resnet34", "ResNet-34 (BasicBlock [3,4,6,3]) with a 3x3 stem and no max-pool", pt_model_resnet34},
    {"wide_resnet18", "ResNet-18 with doubled widths 128..1024", pt_model_wide_resnet18},
    {"se_resnet18", "ResNet-18 with squeeze-and-excitation (reduction 16) in every block", pt_model_se_resnet18},
    {"cbam_resnet18", "ResNet-18 with CBAM (channel + 7x7 spatial attention) in every block", pt_model_cbam_resnet18},
    {"resnet18_imagenet", "torchvision's ResNet-18 exactly (7x7 stride-2 stem, max-pool): loads its weights", pt_model_resnet18_imagenet},
    {NULL, NULL, NULL},
};

const pt_model_entry *pt_models(void) { return models; }

const pt_model_entry *pt_model_find(const char *name)
{
    for (const pt_model_entry *m = models; m->name; m++)
        if (strcmp(m->name, name) == 0) return m;
    return NULL;
}

/* Whether model m builds for this input (no error kept). */
static int builds(const pt_model_entry *m, int c, int h, int w, int k)
{
    pt_net *net = pt_net_new(c, h, w, k);
    if (!net) return 0;
    pt_error e;
    pt_error_clear(&e);
    int ok = m->build(net, &e) == PT_OK && !net->err.status;
    pt_net_free(net);
    return ok;
}

/* The smallest height (dim 0) or width (dim 1) the model takes, the other side being
 * `other`; 0 when none up to `limit` does. Building a net touches no device: cheap. */
static int smallest_side(const pt_model_entry *m, int c, int other, int k, int dim, int limit)
{
    for (int s = 1; s <= limit; s++)
        if (builds(m, c, dim == 0 ? s : other, dim == 0 ? other : s, k)) return s;
    return 0;
}

pt_status pt_model_build(const char *name, int in_channels, int height, int width,
                         int num_classes, pt_net **out, pt_error *err)
{
    *out = NULL;
    const pt_model_entry *m = pt_model_find(name);
    if (!m) {
        char list[256] = "";
        for (const pt_model_entry *e = models; e->name; e++) {
            strncat(list, e->name, sizeof list - strlen(list) - 1);
            if (e[1].name) strncat(list, ", ", sizeof list - strlen(list) - 1);
        }
        return pt_fail(err, PT_ERR_INVALID, "unknown model '%s' (available: %s)", name, list);
    }
    pt_net *net = pt_net_new(in_channels, height, width, num_classes);
    if (!net) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    pt_status st = m->build(net, err);
    if (st == PT_OK && net->err.status) {
        if (err) *err = net->err;
        st = net->err.status;
    }
    if (st != PT_OK) {
        pt_net_free(net);
        /* Too many poolings for this input? Then say which input size would do. */
        const int big = 1024;
        if (st == PT_ERR_INVALID && in_channels >= 1 && num_classes >= 1 && height >= 1 && width >= 1 &&
            builds(m, in_channels, big, big, num_classes)) {
            int min_h = smallest_side(m, in_channels, width > big ? width : big, num_classes, 0, big);
            int min_w = smallest_side(m, in_channels, height > big ? height : big, num_classes, 1, big);
            char reason[sizeof err->msg] = "";
            if (err) memcpy(reason, err->msg, sizeof reason);
            reason[sizeof reason - 1] = '\0';
            return pt_fail(err, PT_ERR_INVALID,
                           "model '%s' does not fit a %dx%dx%d input (%s): it needs at least %dx%d pixels",
                           name, in_channels, height, width, reason, min_h, min_w);
        }
        pt_error_wrap(err, "model '%s'", name);
        return st;
    }
    *out = net;
    return PT_OK;
}
