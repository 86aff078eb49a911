/* The presets and experiment suites (see experiments.h). Each suite changes one factor
 * against the same base; learning rates that belong to an optimizer travel with it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/args.h"
#include "tools/experiments.h"

/* shared/docs/MODELS.md 'Recipes': lr 0.1 for a global batch of 128, scaled linearly. */
static const char *const best_options[] = {
    "--model", "se_resnet18", "--optimizer", "nesterov", "--momentum", "0.9", "--lr", "0.1",
    "--lr-batch", "128", "--weight-decay", "5e-4", "--no-decay-bn-bias", "--schedule", "cosine",
    "--warmup-epochs", "5", "--label-smoothing", "0.1", "--augment", "crop=4,flip,cutout", NULL};

static const xp_preset presets[] = {
    {"best", "se_resnet18, SGD Nesterov 0.9, lr 0.1 per 128 samples (linear scaling), wd 5e-4 "
             "(not on BN/bias), 5-epoch warmup then cosine, label smoothing 0.1, crop 4 + flip + cutout",
     best_options},
    {NULL, NULL, NULL},
};

#define OPTS(...) ((const char *const[]){__VA_ARGS__, NULL})

static const char *const no_options[] = {NULL};

static const xp_suite suites[] = {
    {"models", "deeper and wider: the model zoo's plain and residual nets with the default recipe",
     "model", no_options,
     {{"baseline", OPTS("--model", "baseline")},
      {"resnet18", OPTS("--model", "resnet18")},
      {"resnet34", OPTS("--model", "resnet34")},
      {"wide_resnet18", OPTS("--model", "wide_resnet18")},
      {NULL, NULL}}},
    {"optimizers", "baseline with each optimizer at its usual learning rate (one-cycle schedule)",
     "optimizer", OPTS("--model", "baseline"),
     {{"sgd", OPTS("--optimizer", "sgd", "--lr", "0.1")},
      {"momentum", OPTS("--optimizer", "momentum", "--lr", "0.1")},
      {"nesterov", OPTS("--optimizer", "nesterov", "--lr", "0.1")},
      {"adam", OPTS("--optimizer", "adam", "--lr", "1e-3")},
      {"adamw", OPTS("--optimizer", "adamw", "--lr", "1e-3")},
      {"rmsprop", OPTS("--optimizer", "rmsprop", "--lr", "1e-3")},
      {NULL, NULL}}},
    {"augmentation", "baseline with more and more augmentation; cutout, mixup and cutmix each on top of flip+crop",
     "augment", OPTS("--model", "baseline"),
     {{"none", OPTS("--augment", "none")},
      {"flip", OPTS("--augment", "flip")},
      {"flip-crop", OPTS("--augment", "flip,crop=4")},
      {"flip-crop-cutout", OPTS("--augment", "flip,crop=4,cutout")},
      {"flip-crop-mixup", OPTS("--augment", "flip,crop=4,mixup")},
      {"flip-crop-cutmix", OPTS("--augment", "flip,crop=4,cutmix")},
      {NULL, NULL}}},
    {"attention", "channel and spatial attention on resnet18 with the default recipe", "model", no_options,
     {{"resnet18", OPTS("--model", "resnet18")},
      {"se_resnet18", OPTS("--model", "se_resnet18")},
      {"cbam_resnet18", OPTS("--model", "cbam_resnet18")},
      {NULL, NULL}}},
    {"best", "the 'best' preset, and the same with one ingredient taken out", "change", no_options,
     {{"best", OPTS("--preset", "best")},
      {"best-resnet18", OPTS("--preset", "best", "--model", "resnet18")},
      {"best-no-smoothing", OPTS("--preset", "best", "--label-smoothing", "0")},
      {"best-no-cutout", OPTS("--preset", "best", "--augment", "crop=4,flip")},
      {"best-onecycle", OPTS("--preset", "best", "--schedule", "onecycle", "--warmup-epochs", "0")},
      {NULL, NULL}}},
    {NULL, NULL, NULL, NULL, {{NULL, NULL}}},
};

const xp_preset *xp_presets(void) { return presets; }
const xp_suite *xp_suites(void) { return suites; }

const xp_preset *xp_preset_find(const char *name)
{
    for (const xp_preset *p = presets; p->name; p++)
        if (strcmp(p->name, name) == 0) return p;
    return NULL;
}

const xp_suite *xp_suite_find(const char *name)
{
    for (const xp_suite *s = suites; s->name; s++)
        if (strcmp(s->name, name) == 0) return s;
    return NULL;
}

int xp_suite_run_count(const xp_suite *s)
{
    int n = 0;
    while (n < XP_MAX_RUNS && s->runs[n].name) n++;
    return n;
}

static void join_names(char *buf, unsigned long cap, const char *const *names, size_t stride, int count)
{
    buf[0] = '\0';
    for (int i = 0; i < count; i++) {
        const char *n = *(const char *const *)((const char *)names + (size_t)i * stride);
        if (i) strncat(buf, ", ", cap - strlen(buf) - 1);
        strncat(buf, n, cap - strlen(buf) - 1);
    }
}

void xp_preset_names(char *buf, unsigned long cap)
{
    int n = 0;
    while (presets[n].name) n++;
    join_names(buf, cap, &presets[0].name, sizeof presets[0], n);
}

void xp_suite_names(char *buf, unsigned long cap)
{
    int n = 0;
    while (suites[n].name) n++;
    join_names(buf, cap, &suites[0].name, sizeof suites[0], n);
}

int xp_expand_preset(const char *cmd, int argc, char **argv, int *out_argc, char ***out_argv)
{
    *out_argc = argc;
    *out_argv = argv;
    const char *name = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        const char *v = NULL;
        if (strcmp(argv[i], "--preset") == 0) {
            if (i + 1 >= argc) return 0; /* args_parse reports the missing value */
            v = argv[++i];
        } else if (strncmp(argv[i], "--preset=", 9) == 0) {
            v = argv[i] + 9;
        } else {
            continue;
        }
        if (name) {
            cli_error("%s: --preset given twice ('%s' and '%s')", cmd, name, v);
            return 2;
        }
        name = v;
    }
    if (!name) return 0;
    const xp_preset *p = xp_preset_find(name);
    if (!p) {
        char known[256];
        xp_preset_names(known, sizeof known);
        cli_error("%s: unknown preset '%s' (known presets: %s; 'polytrain experiment --list' shows them)", cmd, name,
                  known);
        return 2;
    }
    int k = 0;
    while (p->options[k]) k++;
    char **v = malloc(sizeof(char *) * (size_t)(k + argc + 1));
    if (!v) {
        cli_error("%s: out of memory", cmd);
        return 2;
    }
    /* args_parse reads but never writes its argv: the preset's literals are safe there. */
    for (int i = 0; i < k; i++) v[i] = (char *)(uintptr_t)p->options[i];
    for (int i = 0; i < argc; i++) v[k + i] = argv[i];
    v[k + argc] = NULL;
    *out_argc = k + argc;
    *out_argv = v;
    return 0;
}
