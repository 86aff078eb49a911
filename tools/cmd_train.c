/* polytrain train: the options resolved (train_options.c), the session built from them
 * (train_session.c), then the core trainer run with a banner, a progress bar on a terminal
 * and a line per epoch (train_report.c). Here only the order and the exit codes. */
#include <stdio.h>
#include <stdlib.h>

#include "comm/mpi_world.h"
#include "tools/commands.h"
#include "tools/common.h"
#include "tools/experiments.h"
#include "tools/train_internal.h"

static int train_main(train_options *o, const pt_json *resume_cfg, pt_world *world, pt_error *outcome);
static int train_parse_and_run(int argc, char **argv, pt_error *outcome);

int cmd_train(int argc, char **argv) { return cli_train(argc, argv, NULL); }

int cli_train(int argc, char **argv, pt_error *outcome)
{
    if (outcome) pt_error_clear(outcome);
    char **full = argv;
    int rc = xp_expand_preset("train", argc, argv, &argc, &full);
    if (rc) return rc;
    rc = train_parse_and_run(argc, full, outcome);
    if (full != argv) free(full);
    return rc;
}

static int train_parse_and_run(int argc, char **argv, pt_error *outcome)
{
    train_options o;
    int rc = train_options_parse(&o, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    /* Under mpirun every rank runs this command; rank 0 speaks and writes the run directory. */
    pt_world world = pt_world_single();
    int mpi = pt_mpi_launched();
    if (mpi) {
        pt_error e;
        pt_error_clear(&e);
        if (pt_mpi_world_init(&world, &e) != PT_OK) {
            cli_error("train: %s", e.msg);
            return 1;
        }
        if (world.rank != 0 && !freopen("/dev/null", "w", stdout)) {
            cli_error("train: rank %d: cannot silence stdout", world.rank);
            world.abort(world.ctx, 1, NULL);
        }
    }
    pt_json *resume_cfg = NULL, *config_cfg = NULL;
    rc = train_options_config(&o, &config_cfg);
    if (rc == 0) rc = train_options_resume(&o, &resume_cfg);
    if (rc) {
        pt_json_free(config_cfg);
        if (rc == 1 && world.size > 1) world.abort(world.ctx, 1, NULL);
        return rc;
    }
    int code = train_main(&o, resume_cfg, &world, outcome);
    pt_json_free(resume_cfg);
    pt_json_free(config_cfg);
    if (code != 0 && world.size > 1) world.abort(world.ctx, code, NULL); /* takes every rank down */
    if (mpi) pt_mpi_world_finalize(&world);
    return code;
}

static int train_main(train_options *o, const pt_json *resume_cfg, pt_world *world, pt_error *outcome)
{
    double start_time = train_wall_s();
    int code = train_options_resolve(o);
    if (code) return code;
    /* A misspelt --data kind is a usage error, found before devices and data are touched. */
    if ((code = cli_check_data("train", o->args.data)) != 0) return code;

    pt_error err;
    pt_error_clear(&err);
    train_session s;
    /* from here: a Ctrl-C while the data is packed stops the packing (nothing kept, exit 130);
     * one after that stops the run at its next step */
    cli_install_interrupt_handler();
    code = train_session_build(&s, o, resume_cfg, world, &err);
    if (code == 0) {
        train_print_banner(&s, o);
        run_ui ui;
        pt_train_callbacks cb = train_ui_init(&ui, &o->args, start_time, s.trainer);
        pt_status st = pt_trainer_run(s.trainer, &cb, &err);
        cli_progress_clear(&ui.bar);
        if (st == PT_OK) train_print_summary(s.trainer, &o->args);
        else code = 1;
    }
    if (code == 1) {
        if (world->size > 1) cli_error("train: rank %d: %s", world->rank, err.msg);
        else cli_error("train: %s", err.msg);
        if (s.init_detail.len) fputs(s.init_detail.data, stderr); /* --init-from's mismatches */
        if (outcome) *outcome = err;
        code = err.status == PT_ERR_INTERRUPTED ? 130 : 1;
    }
    train_session_free(&s);
    return code;
}
