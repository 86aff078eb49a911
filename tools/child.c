/* A child run of this binary with captured output and a time limit (see child.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tools/child.h"
#include "tools/session.h"

/* A child's output is JSON of a few kilobytes; more than this is a runaway child. */
#define CHILD_MAX_OUTPUT (64u << 20)
/* After an interrupt was passed on, the time a child has to stop on its own before it is
 * killed: a command stops at its next step, but one in a driver call may never return. */
#define CHILD_STOP_GRACE_S 10.0

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cli_child_run(const char *const *args, double timeout_s, cli_child *c)
{
    memset(c, 0, sizeof *c);
    pt_strbuf_init(&c->out);
    pt_strbuf_init(&c->err);
    c->exit_code = -1;
    int po[2], pe[2];
    if (pipe(po) != 0) {
        pt_strbuf_printf(&c->err, "cannot create a pipe: %s", strerror(errno));
        return -1;
    }
    if (pipe(pe) != 0) {
        pt_strbuf_printf(&c->err, "cannot create a pipe: %s", strerror(errno));
        close(po[0]);
        close(po[1]);
        return -1;
    }
    int n = 0;
    while (args[n]) n++;
    const char **argv = calloc((size_t)n + 2, sizeof *argv);
    if (!argv) {
        pt_strbuf_puts(&c->err, "out of host memory");
        close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
        return -1;
    }
    argv[0] = "polytrain";
    for (int i = 0; i < n; i++) argv[i + 1] = args[i];
    fflush(stdout);
    fflush(stderr);
    double t0 = mono_s();
    const pid_t parent = getpid();
    /* Interrupts wait from the check to the handover (cli_interrupt_forward), so that each
     * reaches the child exactly once; none is started after one came. */
    sigset_t ints, old;
    sigemptyset(&ints);
    sigaddset(&ints, SIGINT);
    sigaddset(&ints, SIGTERM);
    sigprocmask(SIG_BLOCK, &ints, &old);
    pid_t pid = -1;
    if (cli_interrupted()) {
        errno = EINTR;
        pt_strbuf_puts(&c->err, "interrupted");
    } else {
        pid = fork();
        if (pid < 0) pt_strbuf_printf(&c->err, "cannot start a child process: %s", strerror(errno));
    }
    if (pid != 0) {
        if (pid > 0) cli_interrupt_forward(pid);
        sigprocmask(SIG_SETMASK, &old, NULL);
    }
    if (pid < 0) {
        free(argv);
        close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
        return -1;
    }
    if (pid == 0) {
        /* A process group of its own, so that the terminal's Ctrl-C reaches the parent only,
         * which passes it on once (cli_interrupt_forward): a child that got it from both
         * would count two interrupts and exit at once instead of stopping cleanly. Out of
         * the terminal's reach, it must not outlive a parent killed outright: it then gets
         * SIGTERM. */
        setpgid(0, 0);
#ifdef __linux__
        prctl(PR_SET_PDEATHSIG, SIGTERM);
#endif
        if (getppid() != parent) _exit(130); /* the parent died before that took effect */
        sigprocmask(SIG_SETMASK, &old, NULL);
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0) dup2(null, 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
        execv("/proc/self/exe", (char *const *)argv);
        fprintf(stderr, "cannot run /proc/self/exe: %s\n", strerror(errno));
        _exit(127);
    }
    free(argv);
    setpgid(pid, pid); /* as the child does: whichever runs first */
    double stop_by = 0;
    close(po[1]);
    close(pe[1]);
    struct pollfd fds[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
    pt_strbuf *bufs[2] = {&c->out, &c->err};
    int open_fds = 2;
    while (open_fds > 0) {
        int wait_ms = -1;
        /* the handler passed the interrupt on; the child has a while to stop by itself */
        if (cli_interrupted() && !stop_by) stop_by = mono_s() + CHILD_STOP_GRACE_S;
        if (stop_by) {
            double left = stop_by - mono_s();
            if (left <= 0) {
                kill(pid, SIGKILL);
                break;
            }
            wait_ms = (int)(left * 1000) + 1;
        }
        if (timeout_s > 0) {
            double left = timeout_s - (mono_s() - t0);
            if (left <= 0) {
                c->timed_out = 1;
                kill(pid, SIGKILL);
                break;
            }
            const int ms = left > 1e6 ? 1000000000 : (int)(left * 1000) + 1;
            if (wait_ms < 0 || ms < wait_ms) wait_ms = ms;
        }
        /* poll is never restarted after a signal (SA_RESTART or not): an interrupt ends the
         * wait at once and is seen above */
        int r = poll(fds, 2, wait_ms);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char chunk[8192];
            ssize_t got = read(fds[i].fd, chunk, sizeof chunk);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
                continue;
            }
            if (bufs[i]->len < CHILD_MAX_OUTPUT) pt_strbuf_append(bufs[i], chunk, (size_t)got);
        }
    }
    for (int i = 0; i < 2; i++)
        if (fds[i].fd >= 0) close(fds[i].fd);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    cli_interrupt_forward(0);
    c->interrupted = stop_by > 0;
    c->seconds = mono_s() - t0;
    if (WIFEXITED(status)) c->exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status)) c->signal = WTERMSIG(status);
    return 0;
}

void cli_child_free(cli_child *c)
{
    pt_strbuf_free(&c->out);
    pt_strbuf_free(&c->err);
}

void cli_child_failure(const cli_child *c, char *buf, size_t cap)
{
    if (c->timed_out) {
        snprintf(buf, cap, "no answer within %.3g s (killed)", c->seconds);
        return;
    }
    if (c->interrupted && (c->signal || c->exit_code == 130)) {
        snprintf(buf, cap, "interrupted");
        return;
    }
    if (c->signal) {
        snprintf(buf, cap, "crashed: killed by signal %d (%s)", c->signal, strsignal(c->signal));
        return;
    }
    /* a --json command that failed says why on stdout: {"error": ..., "exit_code": ...} */
    pt_json *js = NULL;
    pt_error e;
    if (c->out.data && pt_json_parse(c->out.data, c->out.len, NULL, &js, &e) == PT_OK) {
        const pt_json *m = pt_json_get(js, "error");
        if (m && m->type == PT_JSON_STRING && m->str[0]) {
            snprintf(buf, cap, "%s", m->str);
            pt_json_free(js);
            return;
        }
    }
    pt_json_free(js);
    /* else its last non-empty line on stderr, without the program's prefix */
    const char *s = c->err.data ? c->err.data : "";
    size_t len = c->err.len;
    while (len && (s[len - 1] == '\n' || s[len - 1] == ' ')) len--;
    size_t start = len;
    while (start && s[start - 1] != '\n') start--;
    const char *line = s + start;
    size_t ll = len - start;
    const char *prefix = "polytrain: error: ";
    if (ll > strlen(prefix) && strncmp(line, prefix, strlen(prefix)) == 0) line += strlen(prefix), ll -= strlen(prefix);
    if (ll) snprintf(buf, cap, "%.*s (exit status %d)", (int)ll, line, c->exit_code);
    else snprintf(buf, cap, "exit status %d without a message", c->exit_code);
}
