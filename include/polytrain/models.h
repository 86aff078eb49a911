/* The model zoo: builders by name, each producing a pt_net whose parameter names equal
 * the PyTorch modules of docs/MODELS.md of the source tree (state_dict loads with strict=True). */
#ifndef PT_MODELS_H
#define PT_MODELS_H

#include "polytrain/net.h"

typedef struct pt_model_entry {
    const char *name;
    const char *description;
    pt_status (*build)(pt_net *net, pt_error *err); /* adds layers after the input node */
} pt_model_entry;

/* NULL-terminated table. */
const pt_model_entry *pt_models(void);
const pt_model_entry *pt_model_find(const char *name);
/* Builds and finishes the named model for the given input and class count. */
pt_status pt_model_build(const char *name, int in_channels, int height, int width,
                         int num_classes, pt_net **out, pt_error *err);

pt_status pt_model_baseline(pt_net *net, pt_error *err);
pt_status pt_model_resnet18(pt_net *net, pt_error *err);
pt_status pt_model_resnet34(pt_net *net, pt_error *err);
pt_status pt_model_wide_resnet18(pt_net *net, pt_error *err);
pt_status pt_model_se_resnet18(pt_net *net, pt_error *err);
pt_status pt_model_cbam_resnet18(pt_net *net, pt_error *err);
pt_status pt_model_resnet18_imagenet(pt_net *net, pt_error *err);

#endif
