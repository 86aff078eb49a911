/* Command-line option tables for the polytrain subcommands: typed, range-checked
 * values, --name value and --name=value, generated --help text. Usage errors exit 2. */
#ifndef PT_TOOLS_ARGS_H
#define PT_TOOLS_ARGS_H

#include <stdint.h>

typedef enum { ARG_FLAG, ARG_NOFLAG, ARG_INT, ARG_I64, ARG_U64, ARG_DOUBLE, ARG_STRING } arg_kind;

typedef struct arg_spec {
    const char *name;    /* without leading dashes */
    arg_kind kind;
    void *target;        /* int*, int64_t*, uint64_t*, double*, const char** */
    const char *metavar;
    const char *help;
    double min, max;     /* numeric range (inclusive) when min < max */
    int *given;          /* optional: set to 1 when the option appears */
} arg_spec;

typedef struct arg_command {
    const char *name;      /* "train" */
    const char *summary;   /* one line */
    const char *usage;     /* e.g. "[options]" or "--checkpoint DIR [options] INPUT..." */
    const arg_spec *specs; /* terminated by name == NULL */
    const char *epilog;    /* extra help text or NULL */
    int *given;            /* optional: one flag per spec, set when it appears (resume) */
} arg_command;

/* Parses argv (after the command name). Positional arguments are collected into
 * positional (argv pointers) when max_positional > 0. Returns 0 on success, 1 when
 * --help was printed (caller exits 0), 2 on a usage error (message printed). */
int args_parse(const arg_command *cmd, int argc, char **argv, char **positional,
               int max_positional, int *npositional);
void args_print_help(const arg_command *cmd);

/* "polytrain: error: ..." on stderr. The message is escaped as cli_safe does. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "polytrain: note: ..." on stderr: something the command did that the user may not expect. */
void cli_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "polytrain: warning: ..." on stderr: something that may make the result not what was meant. */
void cli_warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* s escaped for a terminal or log (core/safe_text.h: control characters and invalid UTF-8
 * as \xHH): every name read from a file (classes, tensors, paths from a listing, a run's
 * recorded options) goes through it on its way to stdout or stderr. The result lives in one
 * of 8 buffers of this thread, reused in turn, so several may appear in one printf. */
const char *cli_safe(const char *s);

/* --json: stdout holds JSON only. A command that has --json and was given it (args_parse
 * notices) calls cli_json_wrote once it has written JSON to stdout (or when another process
 * writes it: MPI ranks other than 0); main passes the exit code through cli_exit, which for a
 * failure with nothing written writes {"error": the first cli_error message, "exit_code":
 * code} on stdout. Returns code. */
void cli_json_wrote(void);
int cli_exit(int code);



/* For each option not given on the command line (cmd->given), takes its value from
 * obj[name] of a saved config.json (resume, read from `file`) and marks it given. String
 * values point into obj, which must outlive their use. Every option must be there, each of
 * its JSON type (a boolean for a flag, an integer for an integer option, a string or null
 * for a string); otherwise, or on a value out of range, returns 2 with a message naming the
 * option, the file and what was expected. Returns 0 on success. */
struct pt_json;
int args_apply_json(const arg_command *cmd, const struct pt_json *obj, const char *file);
/* The same for a partial set of options (--config): absent ones are left alone, and so are
 * those named in skip (NULL-terminated; NULL: none). */
int args_apply_json_except(const arg_command *cmd, const struct pt_json *obj, const char *file,
                           const char *const *skip);
/* Appends every option's current value to a JSON object under construction
 * ("name":value,...), for config.json. */
struct pt_strbuf;
void args_to_json(const arg_command *cmd, struct pt_strbuf *sb);
#endif
