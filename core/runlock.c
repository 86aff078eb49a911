/* Run-directory lock (see runlock.h): flock(2) on RUN/.polytrain.lock. flock belongs to the
 * open file description, so it is neither lost when another descriptor of the file closes
 * (as fcntl locks are) nor inherited meaningfully by exec; a process that locks the same
 * directory twice (the CLI, then the trainer) shares one descriptor through a small table. */
#include "core/runlock.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct pt_run_lock {
    int fd;
    int refs;
    dev_t dev;
    ino_t ino;
    pid_t pid; /* a forked child inherits the table but not the right to nest */
    pt_run_lock *next;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pt_run_lock *g_held;

static pt_status busy(const char *dir, int fd, pt_error *err)
{
    char text[512];
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    text[n > 0 ? n : 0] = '\0';
    /* the holder's own line, printable characters only */
    size_t k = 0;
    while (text[k] && text[k] != '\n') {
        if ((unsigned char)text[k] < 0x20 || (unsigned char)text[k] >= 0x7f) text[k] = '?';
        k++;
    }
    text[k] = '\0';
    return pt_fail(err, PT_ERR_IO,
                   "run directory '%s' is in use by %s; wait for it to end or choose another directory (the lock "
                   "is released when that process ends)",
                   dir, k ? text : "another process (it has not written its name yet)");
}

pt_status pt_run_lock_acquire(const char *dir, const char *what, pt_run_lock **out, pt_error *err)
{
    *out = NULL;
    char path[4200];
    if (snprintf(path, sizeof path, "%s/%s", dir, PT_RUN_LOCK_FILE) >= (int)sizeof path)
        return pt_fail(err, PT_ERR_INVALID, "run directory path '%s' is too long", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0666);
    if (fd < 0) return pt_fail(err, PT_ERR_IO, "cannot open the run lock '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return pt_fail(err, PT_ERR_IO, "run lock '%s' is not a regular file", path);
    }
    pthread_mutex_lock(&g_mu);
    for (pt_run_lock *l = g_held; l; l = l->next)
        if (l->dev == sb.st_dev && l->ino == sb.st_ino && l->pid == getpid()) {
            l->refs++;
            pthread_mutex_unlock(&g_mu);
            close(fd);
            *out = l;
            return PT_OK;
        }
    int rc;
    while ((rc = flock(fd, LOCK_EX | LOCK_NB)) < 0 && errno == EINTR) {}
    if (rc < 0) {
        pthread_mutex_unlock(&g_mu);
        pt_status st = errno == EWOULDBLOCK ? busy(dir, fd, err)
                                            : pt_fail(err, PT_ERR_IO, "cannot lock '%s': %s", path, strerror(errno));
        close(fd);
        return st;
    }
    pt_run_lock *l = calloc(1, sizeof *l);
    if (!l) {
        pthread_mutex_unlock(&g_mu);
        close(fd);
        return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    }
    l->fd = fd;
    l->refs = 1;
    l->dev = sb.st_dev;
    l->ino = sb.st_ino;
    l->pid = getpid();
    l->next = g_held;
    g_held = l;
    pthread_mutex_unlock(&g_mu);
    /* who holds it, for the message of a run refused: informative only, so a failure to write
     * it does not stop this run */
    char host[256] = "?", when[40] = "?", line[800];
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int n = snprintf(line, sizeof line, "pid %ld on host %s since %s (%s)\n", (long)getpid(), host, when,
                     what ? what : "polytrain");
    if (n > 0 && ftruncate(fd, 0) == 0 && pwrite(fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1, 0) > 0)
        fsync(fd);
    *out = l;
    return PT_OK;
}

void pt_run_lock_release(pt_run_lock *l)
{
    if (!l) return;
    pthread_mutex_lock(&g_mu);
    if (--l->refs > 0) {
        pthread_mutex_unlock(&g_mu);
        return;
    }
    for (pt_run_lock **p = &g_held; *p; p = &(*p)->next)
        if (*p == l) {
            *p = l->next;
            break;
        }
    pthread_mutex_unlock(&g_mu);
    close(l->fd); /* releases the flock; the file stays, naming the last holder */
    free(l);
}
