/* gnuplot as a child process (see gnuplot.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tools/gnuplot.h"

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
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return pt_fail(err, PT_ERR_IO, "gnuplot failed on '%s/%s' (exit status %d)", dir, script,
                       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return PT_OK;
}
