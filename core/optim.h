/* Optimizer settings (SGD with momentum/Nesterov, Adam, AdamW) as the replica's fused
 * update ops use them. State lives in the replica's slab, see core/replica.h. */
#ifndef PT_OPTIM_H
#define PT_OPTIM_H

typedef enum pt_optim_kind { PT_OPTIM_SGD = 0, PT_OPTIM_ADAM, PT_OPTIM_ADAMW } pt_optim_kind;

typedef struct pt_optim_config {
    pt_optim_kind kind;
    float momentum, dampening; /* SGD */
    int nesterov;              /* SGD */
    float beta1, beta2, eps;   /* Adam, AdamW */
    float weight_decay;
    int no_decay_bn_bias;      /* exclude BatchNorm parameters and biases from weight decay */
} pt_optim_config;

/* Defaults: SGD momentum 0.9 Nesterov wd 5e-4; Adam betas (0.9, 0.999) eps 1e-8. */
pt_optim_config pt_optim_defaults(pt_optim_kind kind);
const char *pt_optim_name(pt_optim_kind kind);
int pt_optim_parse(const char *name, pt_optim_kind *out);
/* State slots per parameter: SGD 1 (momentum_buffer) or 0 without momentum, Adam 2. */
int pt_optim_slots(const pt_optim_config *cfg);
/* The PyTorch state names of slot i: "momentum_buffer", "exp_avg", "exp_avg_sq". */
const char *pt_optim_slot_name(const pt_optim_config *cfg, int slot);

#endif
