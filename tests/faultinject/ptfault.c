/* An LD_PRELOAD library for the fault-injection test (tests/python/test_fault_injection.py):
 * it wraps the file-system calls a program makes through libc (the POSIX calls and the stdio
 * output calls, which glibc does not route through the wrapped write) and counts those on
 * paths under one directory. At the call numbered PT_FAULT_AT it fails the call with an errno
 * or kills the process just before it, so that a test can make every such call of a run fail
 * in turn.
 *
 * Environment:
 *   PT_FAULT_DIR    absolute path of the directory whose calls count (the directory itself
 *                   included); without it the library does nothing
 *   PT_FAULT_MODE   count (default: only count), errno (fail the call) or kill (SIGKILL
 *                   just before the call)
 *   PT_FAULT_AT     the 1-based number of the call to fault
 *   PT_FAULT_ERRNO  ENOSPC, EIO or EINTR (errno mode)
 *   PT_FAULT_LOG    file to which a line "N OP PATH" is appended for every counted call
 *                   (count mode) or for the faulted call (other modes)
 *
 * Calls counted: open/open64/openat/openat64/creat, fopen/fopen64, opendir, read/pread,
 * write/pwrite, fsync/fdatasync, ftruncate, flock, close, fwrite/fputs/fputc/fprintf/
 * vfprintf/fflush/fclose, rename/renameat/renameat2 and syscall(SYS_renameat2), unlink/
 * unlinkat/remove, mkdir/mkdirat, rmdir. Queries (stat, lstat, readdir) are not faulted.
 * A failed close or fclose still releases the descriptor, as Linux does; a failed stdio
 * output call drops the stream's unwritten data and sets its error flag, as a failed write
 * inside glibc does. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

enum { MODE_OFF, MODE_COUNT, MODE_ERRNO, MODE_KILL };

static int g_mode = MODE_OFF;
static char g_dir[PATH_MAX];
static size_t g_dirlen;
static long g_at;
static int g_errno;
static long g_count;
static int g_log = -1;

#define MAX_FD 65536
static char *g_fdpath[MAX_FD]; /* the path of each descriptor opened under the directory */

static ssize_t (*real_write)(int, const void *, size_t);

#define REAL(name) static __typeof__(name) *real_##name; if (!real_##name) real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

__attribute__((constructor)) static void ptfault_init(void)
{
    real_write = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    const char *dir = getenv("PT_FAULT_DIR");
    if (!dir || dir[0] != '/') return;
    snprintf(g_dir, sizeof g_dir, "%s", dir);
    g_dirlen = strlen(g_dir);
    while (g_dirlen > 1 && g_dir[g_dirlen - 1] == '/') g_dir[--g_dirlen] = '\0';
    const char *mode = getenv("PT_FAULT_MODE"), *at = getenv("PT_FAULT_AT"), *en = getenv("PT_FAULT_ERRNO");
    g_mode = !mode || !strcmp(mode, "count") ? MODE_COUNT : !strcmp(mode, "errno") ? MODE_ERRNO
           : !strcmp(mode, "kill") ? MODE_KILL : MODE_OFF;
    g_at = at ? atol(at) : 0;
    g_errno = !en ? EIO : !strcmp(en, "ENOSPC") ? ENOSPC : !strcmp(en, "EINTR") ? EINTR : EIO;
    const char *log = getenv("PT_FAULT_LOG");
    if (log) {
        REAL(open);
        g_log = real_open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    }
}

/* Is path (absolute, or relative to the working directory) g_dir or under it? */
static int under(const char *path)
{
    if (g_mode == MODE_OFF || !path) return 0;
    char buf[PATH_MAX * 2];
    if (path[0] != '/') {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) return 0;
        snprintf(buf, sizeof buf, "%s/%s", cwd, path);
        path = buf;
    }
    return !strncmp(path, g_dir, g_dirlen) && (path[g_dirlen] == '\0' || path[g_dirlen] == '/');
}

static const char *fd_path(int fd) { return fd >= 0 && fd < MAX_FD ? g_fdpath[fd] : NULL; }

static void track(int fd, const char *path)
{
    if (fd < 0 || fd >= MAX_FD) return;
    free(g_fdpath[fd]);
    g_fdpath[fd] = NULL;
    if (path && under(path)) {
        if (path[0] == '/') {
            g_fdpath[fd] = strdup(path);
        } else {
            char cwd[PATH_MAX], buf[PATH_MAX * 2];
            if (getcwd(cwd, sizeof cwd)) {
                snprintf(buf, sizeof buf, "%s/%s", cwd, path);
                g_fdpath[fd] = strdup(buf);
            }
        }
    }
}

static void untrack(int fd)
{
    if (fd < 0 || fd >= MAX_FD) return;
    free(g_fdpath[fd]);
    g_fdpath[fd] = NULL;
}

static void log_line(long n, const char *op, const char *path)
{
    if (g_log < 0 || !real_write) return;
    char line[PATH_MAX + 128];
    int k = snprintf(line, sizeof line, "%ld %s %s\n", n, op, path ? path : "?");
    if (k > 0) real_write(g_log, line, (size_t)k < sizeof line ? (size_t)k : sizeof line - 1);
}

/* Counts a call on path (NULL: not under the directory). Returns 1 when this call is to fail
 * (errno is then set); in kill mode the process ends here. */
static int fault(const char *op, const char *path)
{
    if (!path || g_mode == MODE_OFF) return 0;
    long n = __atomic_add_fetch(&g_count, 1, __ATOMIC_SEQ_CST);
    if (g_mode == MODE_COUNT) {
        log_line(n, op, path);
        return 0;
    }
    if (n != g_at) return 0;
    log_line(n, op, path);
    if (g_mode == MODE_KILL) {
        kill(getpid(), SIGKILL);
        for (;;) pause();
    }
    errno = g_errno;
    return 1;
}

static const char *pathif(const char *path) { return under(path) ? path : NULL; }

/* ---------------------------------------------------------------- opening */

static int mode_needed(int flags) { return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE; }

int open(const char *path, int flags, ...)
{
    REAL(open);
    mode_t mode = 0;
    if (mode_needed(flags)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    if (fault("open", pathif(path))) return -1;
    int fd = real_open(path, flags, mode);
    track(fd, path);
    return fd;
}

int open64(const char *path, int flags, ...)
{
    REAL(open64);
    mode_t mode = 0;
    if (mode_needed(flags)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    if (fault("open", pathif(path))) return -1;
    int fd = real_open64(path, flags, mode);
    track(fd, path);
    return fd;
}

/* openat relative to a directory descriptor: under the directory when that descriptor is. */
static const char *at_path(int dirfd, const char *path, char *buf, size_t n)
{
    if (!path) return NULL;
    if (path[0] == '/' || dirfd == AT_FDCWD) return pathif(path);
    const char *d = fd_path(dirfd);
    if (!d) return NULL;
    snprintf(buf, n, "%s/%s", d, path);
    return buf;
}

int openat(int dirfd, const char *path, int flags, ...)
{
    REAL(openat);
    mode_t mode = 0;
    if (mode_needed(flags)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    char buf[PATH_MAX * 2];
    const char *p = at_path(dirfd, path, buf, sizeof buf);
    if (fault("openat", p)) return -1;
    int fd = real_openat(dirfd, path, flags, mode);
    track(fd, p);
    return fd;
}

int openat64(int dirfd, const char *path, int flags, ...)
{
    REAL(openat64);
    mode_t mode = 0;
    if (mode_needed(flags)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    char buf[PATH_MAX * 2];
    const char *p = at_path(dirfd, path, buf, sizeof buf);
    if (fault("openat", p)) return -1;
    int fd = real_openat64(dirfd, path, flags, mode);
    track(fd, p);
    return fd;
}

int creat(const char *path, mode_t mode)
{
    REAL(creat);
    if (fault("creat", pathif(path))) return -1;
    int fd = real_creat(path, mode);
    track(fd, path);
    return fd;
}

FILE *fopen(const char *path, const char *how)
{
    REAL(fopen);
    if (fault("fopen", pathif(path))) return NULL;
    FILE *f = real_fopen(path, how);
    if (f) track(fileno(f), path);
    return f;
}

FILE *fopen64(const char *path, const char *how)
{
    REAL(fopen64);
    if (fault("fopen", pathif(path))) return NULL;
    FILE *f = real_fopen64(path, how);
    if (f) track(fileno(f), path);
    return f;
}

DIR *opendir(const char *path)
{
    REAL(opendir);
    if (fault("opendir", pathif(path))) return NULL;
    return real_opendir(path);
}

/* ---------------------------------------------------------------- descriptors */

ssize_t read(int fd, void *buf, size_t n)
{
    REAL(read);
    if (fault("read", fd_path(fd))) return -1;
    return real_read(fd, buf, n);
}

ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
    REAL(pread);
    if (fault("pread", fd_path(fd))) return -1;
    return real_pread(fd, buf, n, off);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    if (!real_write) real_write = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    if (fault("write", fd_path(fd))) return -1;
    return real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    REAL(pwrite);
    if (fault("pwrite", fd_path(fd))) return -1;
    return real_pwrite(fd, buf, n, off);
}

int fsync(int fd)
{
    REAL(fsync);
    if (fault("fsync", fd_path(fd))) return -1;
    return real_fsync(fd);
}

int fdatasync(int fd)
{
    REAL(fdatasync);
    if (fault("fdatasync", fd_path(fd))) return -1;
    return real_fdatasync(fd);
}

int ftruncate(int fd, off_t len)
{
    REAL(ftruncate);
    if (fault("ftruncate", fd_path(fd))) return -1;
    return real_ftruncate(fd, len);
}

int flock(int fd, int op)
{
    REAL(flock);
    if (fault("flock", fd_path(fd))) return -1;
    return real_flock(fd, op);
}

int close(int fd)
{
    REAL(close);
    int failed = fault("close", fd_path(fd));
    int e = errno;
    untrack(fd);
    int rc = real_close(fd);
    if (failed) {
        errno = e;
        return -1;
    }
    return rc;
}

/* ---------------------------------------------------------------- stdio output */

static const char *file_path(FILE *f)
{
    int fd = f ? fileno(f) : -1;
    return fd >= 0 ? fd_path(fd) : NULL;
}

/* A write inside glibc failed: its unwritten data is gone and the stream's error flag set. */
static void stream_failed(FILE *f)
{
    int e = errno;
    __fpurge(f);
    f->_flags |= _IO_ERR_SEEN;
    errno = e;
}

size_t fwrite(const void *buf, size_t size, size_t n, FILE *f)
{
    REAL(fwrite);
    if (fault("fwrite", file_path(f))) {
        stream_failed(f);
        return 0;
    }
    return real_fwrite(buf, size, n, f);
}

int fputs(const char *s, FILE *f)
{
    REAL(fputs);
    if (fault("fputs", file_path(f))) {
        stream_failed(f);
        return EOF;
    }
    return real_fputs(s, f);
}

int fputc(int c, FILE *f)
{
    REAL(fputc);
    if (fault("fputc", file_path(f))) {
        stream_failed(f);
        return EOF;
    }
    return real_fputc(c, f);
}

int vfprintf(FILE *f, const char *fmt, va_list ap)
{
    REAL(vfprintf);
    if (fault("fprintf", file_path(f))) {
        stream_failed(f);
        return -1;
    }
    return real_vfprintf(f, fmt, ap);
}

int fprintf(FILE *f, const char *fmt, ...)
{
    REAL(vfprintf);
    if (fault("fprintf", file_path(f))) {
        stream_failed(f);
        return -1;
    }
    va_list ap;
    va_start(ap, fmt);
    int rc = real_vfprintf(f, fmt, ap);
    va_end(ap);
    return rc;
}

int fflush(FILE *f)
{
    REAL(fflush);
    if (fault("fflush", file_path(f))) {
        stream_failed(f);
        return EOF;
    }
    return real_fflush(f);
}

int fclose(FILE *f)
{
    REAL(fclose);
    int fd = f ? fileno(f) : -1;
    int failed = fault("fclose", file_path(f));
    int e = errno;
    if (failed) __fpurge(f);
    untrack(fd);
    int rc = real_fclose(f);
    if (failed) {
        errno = e;
        return EOF;
    }
    return rc;
}

/* ---------------------------------------------------------------- names */

/* A rename counts when either name is under the directory. */
static const char *either(const char *a, const char *b) { return under(a) ? a : under(b) ? b : NULL; }

int rename(const char *from, const char *to)
{
    REAL(rename);
    if (fault("rename", either(from, to))) return -1;
    return real_rename(from, to);
}

int renameat(int fd1, const char *from, int fd2, const char *to)
{
    REAL(renameat);
    char b1[PATH_MAX * 2], b2[PATH_MAX * 2];
    const char *p1 = at_path(fd1, from, b1, sizeof b1), *p2 = at_path(fd2, to, b2, sizeof b2);
    if (fault("renameat", p1 ? p1 : p2)) return -1;
    return real_renameat(fd1, from, fd2, to);
}

int renameat2(int fd1, const char *from, int fd2, const char *to, unsigned flags)
{
    REAL(renameat2);
    char b1[PATH_MAX * 2], b2[PATH_MAX * 2];
    const char *p1 = at_path(fd1, from, b1, sizeof b1), *p2 = at_path(fd2, to, b2, sizeof b2);
    if (fault("renameat2", p1 ? p1 : p2)) return -1;
    return real_renameat2(fd1, from, fd2, to, flags);
}

long syscall(long nr, ...)
{
    REAL(syscall);
    va_list ap;
    va_start(ap, nr);
    long a[6];
    for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
    va_end(ap);
#ifdef SYS_renameat2
    if (nr == SYS_renameat2) {
        char b1[PATH_MAX * 2], b2[PATH_MAX * 2];
        const char *p1 = at_path((int)a[0], (const char *)a[1], b1, sizeof b1),
                   *p2 = at_path((int)a[2], (const char *)a[3], b2, sizeof b2);
        if (fault("renameat2", p1 ? p1 : p2)) return -1;
    }
#endif
    return real_syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

int unlink(const char *path)
{
    REAL(unlink);
    if (fault("unlink", pathif(path))) return -1;
    return real_unlink(path);
}

int unlinkat(int dirfd, const char *path, int flags)
{
    REAL(unlinkat);
    char buf[PATH_MAX * 2];
    if (fault("unlinkat", at_path(dirfd, path, buf, sizeof buf))) return -1;
    return real_unlinkat(dirfd, path, flags);
}

int remove(const char *path)
{
    REAL(remove);
    if (fault("remove", pathif(path))) return -1;
    return real_remove(path);
}

int mkdir(const char *path, mode_t mode)
{
    REAL(mkdir);
    if (fault("mkdir", pathif(path))) return -1;
    return real_mkdir(path, mode);
}

int mkdirat(int dirfd, const char *path, mode_t mode)
{
    REAL(mkdirat);
    char buf[PATH_MAX * 2];
    if (fault("mkdirat", at_path(dirfd, path, buf, sizeof buf))) return -1;
    return real_mkdirat(dirfd, path, mode);
}

int rmdir(const char *path)
{
    REAL(rmdir);
    if (fault("rmdir", pathif(path))) return -1;
    return real_rmdir(path);
}
