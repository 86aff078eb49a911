/* libFuzzer harness: a run's config.json read back. The input is the file's text, put in a
 * scratch run directory; then, as the command line does it, `train --resume DIR` (alone and
 * with options that differ, refused and then allowed), `train --config FILE`, each followed
 * by the option checks a run makes before it builds anything, and the run-data reader that
 * eval and report use. Nothing is trained: without DIR/last the resume starts over. */
#include "fuzz_util.h"

#include "core/json.h"
#include "tools/run_data.h"
#include "tools/train_internal.h"

static char run_dir[600], config_path[700];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *scratch = fuzz_scratch_dir();
    fuzz_mkdir(scratch, "run");
    snprintf(run_dir, sizeof run_dir, "%s/run", scratch);
    snprintf(config_path, sizeof config_path, "%s/config.json", run_dir);
    return 0;
}

/* The checks after the saved options are in: what train does before it builds a run. */
static void resolve(train_options *o)
{
    if (train_options_resolve(o) != 0) return;
    pt_optim_config oc;
    if (train_options_optim(o, &oc) != 0) return;
    double lr;
    pt_error e;
    pt_error_clear(&e);
    fuzz_check_error(train_options_lr(o, 64, &lr, &e), &e);
}

static void train_with(int argc, char **argv)
{
    static train_options o; /* the option table points into it: kept in place */
    memset(&o, 0, sizeof o);
    if (train_options_parse(&o, argc, argv) != 0) return;
    pt_json *tree = NULL;
    int rc = o.args.resume ? train_options_resume(&o, &tree) : train_options_config(&o, &tree);
    if (rc == 0) resolve(&o);
    pt_json_free(tree);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_write(run_dir, "config.json", data, size);
    char *resume[] = {"--resume", run_dir};
    train_with(2, resume);
    char *changed[] = {"--resume", run_dir, "--epochs", "7", "--lr=0.5", "--optimizer", "adam"};
    train_with(7, changed);
    char *allowed[] = {"--resume", run_dir, "--epochs", "7", "--seed", "3", "--allow-changes"};
    train_with(7, allowed);
    char *config[] = {"--config", config_path};
    train_with(2, config);

    cli_run_data rd;
    pt_error e;
    pt_error_clear(&e);
    pt_status s = cli_run_data_read(run_dir, &rd, &e);
    fuzz_check_error(s, &e);
    if (s == PT_OK) cli_run_data_free(&rd);
    return 0;
}
