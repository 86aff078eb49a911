/* Optimizer settings (SGD with momentum/Nesterov, Adam, AdamW, RMSprop) as the replica's
 * fused update ops use them, and the named recipes the command line offers. State lives in
 * the replica's slab, see polytrain/replica.h. */
#ifndef PT_OPTIM_H
#define PT_OPTIM_H

typedef enum pt_optim_kind { PT_OPTIM_SGD = 0, PT_OPTIM_ADAM, PT_OPTIM_ADAMW, PT_OPTIM_RMSPROP } pt_optim_kind;

typedef struct pt_optim_config {
    pt_optim_kind kind;
    float momentum, dampening; /* SGD; RMSprop uses momentum too */
    int nesterov;              /* SGD */
    float beta1, beta2, eps;   /* Adam, AdamW; RMSprop uses eps */
    float alpha;               /* RMSprop smoothing constant */
    int centered;              /* RMSprop: normalise by the variance estimate */
    float weight_decay;
    int no_decay_bn_bias;      /* exclude BatchNorm parameters and biases from weight decay */
} pt_optim_config;

/* Defaults: SGD momentum 0.9 Nesterov wd 5e-4; Adam betas (0.9, 0.999) eps 1e-8; AdamW
 * wd 1e-2; RMSprop alpha 0.99 eps 1e-8 momentum 0 (PyTorch's). BatchNorm parameters and
 * biases take no weight decay (no_decay_bn_bias = 1). */
pt_optim_config pt_optim_defaults(pt_optim_kind kind);
/* The core kind's name as checkpoints record it: sgd, adam, adamw, rmsprop. */
const char *pt_optim_name(pt_optim_kind kind);
int pt_optim_parse(const char *name, pt_optim_kind *out);

/* The optimizers by the names users choose them, each a kind plus defaults:
 * sgd (plain, momentum 0), momentum (0.9), nesterov (0.9, Nesterov), adam, adamw, rmsprop. */
typedef struct pt_optim_recipe {
    const char *name;
    pt_optim_kind kind;
    float momentum;
    int nesterov;
    const char *summary;
} pt_optim_recipe;
/* NULL-terminated table, and lookup by name (NULL when unknown). */
const pt_optim_recipe *pt_optim_recipes(void);
const pt_optim_recipe *pt_optim_recipe_find(const char *name);

/* State slots per parameter: SGD 1 (momentum_buffer) or 0 without momentum, Adam 2,
 * RMSprop 1 (square_avg) + 1 with momentum (momentum_buffer) + 1 centered (grad_avg). */
int pt_optim_slots(const pt_optim_config *cfg);
/* The PyTorch state name of slot i: "momentum_buffer", "exp_avg", "exp_avg_sq",
 * "square_avg", "grad_avg". */
const char *pt_optim_slot_name(const pt_optim_config *cfg, int slot);
/* RMSprop: the slot of the momentum buffer and of grad_avg, or -1 when not kept. */
int pt_optim_rmsprop_momentum_slot(const pt_optim_config *cfg);
int pt_optim_rmsprop_grad_avg_slot(const pt_optim_config *cfg);

#endif
