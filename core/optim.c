/* Optimizer configuration helpers: defaults, names, the user-facing recipes, state slots. */
#include <string.h>

#include "polytrain/optim.h"

pt_optim_config pt_optim_defaults(pt_optim_kind kind)
{
    pt_optim_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.alpha = 0.99f;
    c.no_decay_bn_bias = 1;
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
    case PT_OPTIM_RMSPROP: return "rmsprop";
    }
    return "?";
}

int pt_optim_parse(const char *name, pt_optim_kind *out)
{
    for (int k = PT_OPTIM_SGD; k <= PT_OPTIM_RMSPROP; k++)
        if (strcmp(name, pt_optim_name((pt_optim_kind)k)) == 0) {
            *out = (pt_optim_kind)k;
            return 1;
        }
    return 0;
}

static const pt_optim_recipe recipes[] = {
    {"sgd", PT_OPTIM_SGD, 0.0f, 0, "plain SGD (momentum 0 unless --momentum is given)"},
    {"momentum", PT_OPTIM_SGD, 0.9f, 0, "SGD with heavy-ball momentum 0.9"},
    {"nesterov", PT_OPTIM_SGD, 0.9f, 1, "SGD with Nesterov momentum 0.9"},
    {"adam", PT_OPTIM_ADAM, 0.0f, 0, "Adam, L2 weight decay added to the gradient"},
    {"adamw", PT_OPTIM_ADAMW, 0.0f, 0, "AdamW, decoupled weight decay (default 1e-2)"},
    {"rmsprop", PT_OPTIM_RMSPROP, 0.0f, 0, "RMSprop, alpha 0.99 (optional --momentum, --centered)"},
    {NULL, PT_OPTIM_SGD, 0.0f, 0, NULL},
};

const pt_optim_recipe *pt_optim_recipes(void) { return recipes; }

const pt_optim_recipe *pt_optim_recipe_find(const char *name)
{
    for (const pt_optim_recipe *r = recipes; r->name; r++)
        if (strcmp(r->name, name) == 0) return r;
    return NULL;
}

int pt_optim_rmsprop_momentum_slot(const pt_optim_config *cfg)
{
    return cfg->kind == PT_OPTIM_RMSPROP && cfg->momentum != 0.0f ? 1 : -1;
}

int pt_optim_rmsprop_grad_avg_slot(const pt_optim_config *cfg)
{
    if (cfg->kind != PT_OPTIM_RMSPROP || !cfg->centered) return -1;
    return cfg->momentum != 0.0f ? 2 : 1;
}

int pt_optim_slots(const pt_optim_config *cfg)
{
    switch (cfg->kind) {
    case PT_OPTIM_SGD: return cfg->momentum != 0.0f ? 1 : 0;
    case PT_OPTIM_ADAM:
    case PT_OPTIM_ADAMW: return 2;
    case PT_OPTIM_RMSPROP: return 1 + (cfg->momentum != 0.0f) + (cfg->centered != 0);
    }
    return 0;
}

const char *pt_optim_slot_name(const pt_optim_config *cfg, int slot)
{
    switch (cfg->kind) {
    case PT_OPTIM_SGD: return "momentum_buffer";
    case PT_OPTIM_ADAM:
    case PT_OPTIM_ADAMW: return slot == 0 ? "exp_avg" : "exp_avg_sq";
    case PT_OPTIM_RMSPROP:
        if (slot == 0) return "square_avg";
        return slot == pt_optim_rmsprop_momentum_slot(cfg) ? "momentum_buffer" : "grad_avg";
    }
    return "?";
}
