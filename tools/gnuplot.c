/* gnuplot as a child process (see gnuplot.h). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tools/gnuplot.h"
#include "tools/session.h"

int cli_gnuplot_available(void)
{
    const char *path = getenv("PATH");
    if (!path) path = "/usr/bin:/bin";
    char buf[4200];
    while (*path) {
        size_t n = strcspn(path, ":");
        snprintf(buf, sizeof buf, "%.*s/gnuplot", (int)n, path);
        if (n && access(buf, X_OK) == 0) return 1;
        path += n + (path[n] == ':');
    }
    return 0;
}

pt_status cli_gnuplot_run(const char *dir, const char *script, pt_error *err)
{
    /* the child inherits the buffers: flush them so nothing is printed twice */
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return pt_fail(err, PT_ERR_IO, "cannot start gnuplot: %s", strerror(errno));
    if (pid == 0) {
        if (chdir(dir) != 0) _exit(126);
        execlp("gnuplot", "gnuplot", script, (char *)NULL);
        _exit(127);
    }
    /* Polled rather than waited for: waitpid is restarted after the interrupt handler
     * (SA_RESTART), so a SIGTERM sent to this process alone would wait gnuplot out; the
     * nanosleep returns early on it instead, and the plots of a stopped command are not
     * worth finishing. */
    int status = 0, stopped = 0;
    for (;;) {
        const pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) return pt_fail(err, PT_ERR_IO, "waiting for gnuplot: %s", strerror(errno));
        if (!stopped && cli_interrupted()) {
            kill(pid, SIGTERM);
            stopped = 1;
        }
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    if (stopped)
        return pt_fail(err, PT_ERR_INTERRUPTED, "gnuplot on '%s/%s' stopped: interrupted", dir, script);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return pt_fail(err, PT_ERR_IO, "gnuplot failed on '%s/%s' (exit status %d)", dir, script,
                       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return PT_OK;
}
