/* The polytrain subcommands; each returns the process exit code (0 ok, 1 runtime
 * failure, 2 usage error). */
#ifndef PT_TOOLS_COMMANDS_H
#define PT_TOOLS_COMMANDS_H

int cmd_devices(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_models(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_selftest(int argc, char **argv);
int cmd_pack(int argc, char **argv);
int cmd_bench_loader(int argc, char **argv);
int cmd_experiment(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_tune(int argc, char **argv);

/* train with an optional report of the failure (status and message; status PT_OK when the
 * run finished or failed on a usage error, exit code 2). The experiment runner's entry. */
struct pt_error;
int cli_train(int argc, char **argv, struct pt_error *outcome);

#endif
