/* The table of models by name, and the one entry point that builds a finished net. */
#include <stdio.h>
#include <string.h>

#include "models/models.h"

static const pt_model_entry models[] = {
    {"baseline", "plain CNN: 4 x (conv3x3-BN-ReLU-maxpool), widths 64..512, GAP, fc", pt_model_baseline},
    {"resnet18", "ResNet-18 (BasicBlock [2,2,2,2]) with a 3x3 stem and no max-pool", pt_model_resnet18},
    {"resnet34", "ResNet-34 (BasicBlock [3,4,6,3]) with a 3x3 stem and no max-pool", pt_model_resnet34},
    {NULL, NULL, NULL},
};

const pt_model_entry *pt_models(void) { return models; }

const pt_model_entry *pt_model_find(const char *name)
{
    for (const pt_model_entry *m = models; m->name; m++)
        if (strcmp(m->name, name) == 0) return m;
    return NULL;
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
        pt_error_wrap(err, "model '%s'", name);
        pt_net_free(net);
        return st;
    }
    *out = net;
    return PT_OK;
}
