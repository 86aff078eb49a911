/* Running this same binary (/proc/self/exe) as a child process with a time limit and its
 * output captured, so that a command built from other commands (compare) survives one of
 * them failing, crashing or hanging in a driver: each becomes a result to report. */
#ifndef PT_TOOLS_CHILD_H
#define PT_TOOLS_CHILD_H

#include "core/json.h"

typedef struct cli_child {
    pt_strbuf out;     /* everything the child wrote on stdout */
    pt_strbuf err;     /* everything it wrote on stderr */
    int exit_code;     /* its exit status when it exited, else -1 */
    int signal;        /* the signal that ended it, else 0 */
    int timed_out;     /* 1 when it ran past the limit and was killed */
    int interrupted;   /* 1 when an interrupt (SIGINT/SIGTERM) was passed on to it */
    double seconds;    /* wall time */
} cli_child;

/* Runs `/proc/self/exe args...` (args NULL-terminated, without the program name) with stdin
 * from /dev/null, killing it (SIGKILL) after timeout_s seconds (<= 0: no limit). Returns 0
 * when it ran (whatever its outcome, see c), -1 when it could not be started (c->err says
 * why). Free c with cli_child_free. */
int cli_child_run(const char *const *args, double timeout_s, cli_child *c);
void cli_child_free(cli_child *c);

/* One line saying how a child that did not succeed ended: its --json error message, its last
 * line on stderr, "killed by signal 11 (Segmentation fault)", "no answer within 600 s". */
void cli_child_failure(const cli_child *c, char *buf, size_t cap);

#endif
