/* Optimizer configuration helpers: defaults, names, state slots. */
#include <string.h>

#include "core/optim.h"

pt_optim_config pt_optim_defaults(pt_optim_kind kind)
{
    pt_optim_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    if (kind == PT_OPTIM_SGD) {
        c.momentum = 0.9f;
        c.nesterov = 1;
        c.weight_decay = 5e-4f;
    } else if (kind == PT_OPTIM_ADAMW) {
        c.weight_decay = 1e-2f;
    }
    return c;
}

const char *pt_optim_name(pt_optim_kind kind)
{
    switch (kind) {
    case PT_OPTIM_SGD: return "sgd";
    case PT_OPTIM_ADAM: return "adam";
    case PT_OPTIM_ADAMW: return "adamw";
    }
    return "?";
}

int pt_optim_parse(const char *name, pt_optim_kind *out)
{
    for (int k = PT_OPTIM_SGD; k <= PT_OPTIM_ADAMW; k++)
        if (strcmp(name, pt_optim_name((pt_optim_kind)k)) == 0) {
            *out = (pt_optim_kind)k;
            return 1;
        }
    return 0;
}

int pt_optim_slots(const pt_optim_config *cfg)
{
    if (cfg->kind == PT_OPTIM_SGD) return cfg->momentum != 0.0f ? 1 : 0;
    return 2;
}

const char *pt_optim_slot_name(const pt_optim_config *cfg, int slot)
{
    if (cfg->kind == PT_OPTIM_SGD) return "momentum_buffer";
    return slot == 0 ? "exp_avg" : "exp_avg_sq";
}
