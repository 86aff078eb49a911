/* POSIX file helpers: bounded whole-file reads, atomic writes (temp + fsync + rename +
 * directory fsync) and directory helpers (the directory commit is in dircommit.c). Errors
 * name the path and carry strerror(errno); nothing here prints. */
#include "core/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* ---------------------------------------------------------------- small helpers */

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* malloc'd "a" + "b" + "c". */
static char *concat3(const char *a, const char *b, const char *c)
{
    size_t na = strlen(a), nb = strlen(b), nc = strlen(c);
    char *d = malloc(na + nb + nc + 1);
    if (!d) return NULL;
    memcpy(d, a, na);
    memcpy(d + na, b, nb);
    memcpy(d + na + nb, c, nc + 1);
    return d;
}

/* Copy of path without trailing slashes ("/" stays "/"). */
static char *strip_slashes(const char *path)
{
    char *p = dup_str(path);
    if (!p) return NULL;
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') p[--n] = '\0';
    return p;
}

/* Splits path into its directory ("." when none) and final component. */
static int split_path(const char *path, char **dir, char **base)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        *dir = dup_str(".");
        *base = dup_str(path);
    } else {
        size_t dl = (size_t)(slash - path);
        *dir = malloc(dl + 2);
        if (*dir) {
            if (dl == 0) {
                strcpy(*dir, "/");
            } else {
                memcpy(*dir, path, dl);
                (*dir)[dl] = '\0';
            }
        }
        *base = dup_str(slash + 1);
    }
    if (!*dir || !*base) {
        free(*dir);
        free(*base);
        *dir = *base = NULL;
        return 0;
    }
    return 1;
}

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* fsync, again when a signal interrupted it (its work is then not known to be done) */
static int fsync_retry(int fd)
{
    int rc;
    while ((rc = fsync(fd)) < 0 && errno == EINTR) {}
    return rc;
}

/* close whose result counts (a deferred write error on NFS), except EINTR: Linux has then
 * released the descriptor, and the data was fsync'd before. */
static int close_checked(int fd)
{
    return close(fd) < 0 && errno != EINTR ? -1 : 0;
}

int pt_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync_retry(fd);
    int e = errno;
    close(fd);
    if (rc < 0 && e != EINVAL && e != ENOTSUP) {
        errno = e;
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- file types */

const char *pt_file_type_name(unsigned mode)
{
    switch ((mode_t)mode & S_IFMT) {
    case S_IFREG: return "a regular file";
    case S_IFDIR: return "a directory";
    case S_IFIFO: return "a FIFO";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    case S_IFSOCK: return "a socket";
    case S_IFLNK: return "a symbolic link";
    }
    return "a special file";
}

/* ---------------------------------------------------------------- output files */

#define PT_SYMLINK_HOPS 40 /* as the kernel's ELOOP limit */

/* For a dangling symlink: follows the chain by hand to the missing file at its end, which
 * is then created (as a shell's '>' would). A relative link is relative to its directory. */
static char *dangling_target(const char *path, pt_error *err)
{
    char *cur = dup_str(path);
    for (int hop = 0; cur && hop < PT_SYMLINK_HOPS; hop++) {
        struct stat sb;
        if (lstat(cur, &sb) < 0) {
            if (errno == ENOENT) return cur;
            pt_fail(err, PT_ERR_IO, "cannot write '%s': cannot follow its link to '%s': %s", path, cur,
                    strerror(errno));
            free(cur);
            return NULL;
        }
        if (!S_ISLNK(sb.st_mode)) {
            /* Appeared meanwhile: the caller's stat saw it missing. */
            pt_fail(err, PT_ERR_IO, "cannot write '%s': its link target '%s' changed while being resolved",
                    path, cur);
            free(cur);
            return NULL;
        }
        char link[4096];
        ssize_t n = readlink(cur, link, sizeof link - 1);
        if (n < 0 || (size_t)n >= sizeof link - 1) {
            pt_fail(err, PT_ERR_IO, "cannot write '%s': cannot read the link '%s': %s", path, cur,
                    n < 0 ? strerror(errno) : "target too long");
            free(cur);
            return NULL;
        }
        link[n] = '\0';
        char *next;
        if (link[0] == '/') {
            next = dup_str(link);
        } else {
            char *dir, *base;
            if (!split_path(cur, &dir, &base)) {
                free(cur);
                break;
            }
            next = concat3(dir, "/", link);
            free(dir);
            free(base);
        }
        free(cur);
        cur = next;
    }
    if (cur) {
        pt_fail(err, PT_ERR_IO, "cannot write '%s': more than %d symbolic links to follow", path, PT_SYMLINK_HOPS);
        free(cur);
    } else if (err && err->status == PT_OK) {
        pt_fail(err, PT_ERR_NOMEM, "out of memory writing '%s'", path);
    }
    return NULL;
}

void pt_output_abort(pt_output *o)
{
    if (!o) return;
    if (o->fd >= 0 && (o->tmp || o->stream)) close(o->fd);
    if (o->tmp) unlink(o->tmp);
    free(o->path);
    free(o->target);
    free(o->tmp);
    free(o->dir);
    memset(o, 0, sizeof *o);
    o->fd = -1;
}

/* Opens a FIFO or character device as a stream. O_NONBLOCK makes the open of a FIFO that
 * nobody reads fail (ENXIO) instead of waiting for a reader that may never come. */
static pt_status open_stream(pt_output *o, unsigned flags, mode_t mode, pt_error *err)
{
    if (flags & PT_OUTPUT_SEEKABLE)
        return pt_fail(err, PT_ERR_IO, "cannot write '%s': it is %s, and this output must be a regular file "
                       "(it is mapped into memory); give the path of a file",
                       o->path, pt_file_type_name(mode));
    int fd = open(o->path, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENXIO && S_ISFIFO(mode))
            return pt_fail(err, PT_ERR_IO, "cannot write '%s': it is a FIFO that no process has open for "
                           "reading; start its reader first", o->path);
        return pt_fail(err, PT_ERR_IO, "cannot write '%s': %s", o->path, strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !(S_ISFIFO(sb.st_mode) || S_ISCHR(sb.st_mode))) {
        close(fd);
        return pt_fail(err, PT_ERR_IO, "cannot write '%s': it changed while being opened", o->path);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    o->fd = fd;
    o->stream = 1;
    return PT_OK;
}

pt_status pt_output_open(pt_output *o, const char *path, unsigned flags, pt_error *err)
{
    memset(o, 0, sizeof *o);
    o->fd = -1;
    if (!path || !path[0]) return pt_fail(err, PT_ERR_INVALID, "cannot write a file with an empty name");
    o->path = dup_str(path);
    if (!o->path) return pt_fail(err, PT_ERR_NOMEM, "out of memory writing '%s'", path);
    pt_status st = PT_OK;
    struct stat lsb, sb;
    int exists = 0;
    if (lstat(path, &lsb) < 0) {
        if (errno != ENOENT) {
            st = pt_fail(err, PT_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
            goto fail;
        }
        o->target = dup_str(path);
    } else if (S_ISLNK(lsb.st_mode)) {
        if (stat(path, &sb) == 0) {
            exists = 1;
            if (S_ISREG(sb.st_mode)) {
                o->target = realpath(path, NULL);
                if (!o->target) {
                    st = pt_fail(err, PT_ERR_IO, "cannot write '%s': cannot resolve its link: %s", path,
                                 strerror(errno));
                    goto fail;
                }
            }
        } else if (errno == ENOENT) {
            pt_error_clear(err);
            o->target = dangling_target(path, err);
            if (!o->target) {
                st = err ? err->status : PT_ERR_IO;
                if (st == PT_OK) st = PT_ERR_IO;
                goto fail;
            }
        } else {
            st = pt_fail(err, PT_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
            goto fail;
        }
    } else {
        exists = 1;
        sb = lsb;
        if (S_ISREG(sb.st_mode)) o->target = dup_str(path);
    }
    if (exists && !S_ISREG(sb.st_mode)) {
        if (S_ISFIFO(sb.st_mode) || S_ISCHR(sb.st_mode)) {
            st = open_stream(o, flags, sb.st_mode, err);
            if (st != PT_OK) goto fail;
            return PT_OK;
        }
        st = pt_fail(err, PT_ERR_IO, "cannot write '%s': it is %s, not a regular file%s", path,
                     pt_file_type_name(sb.st_mode), S_ISDIR(sb.st_mode) ? "" : "; refusing to replace it");
        goto fail;
    }
    if (!o->target) {
        st = pt_fail(err, PT_ERR_NOMEM, "out of memory writing '%s'", path);
        goto fail;
    }
    char *base;
    if (!split_path(o->target, &o->dir, &base)) {
        st = pt_fail(err, PT_ERR_NOMEM, "out of memory writing '%s'", path);
        goto fail;
    }
    if (!base[0]) {
        free(base);
        st = pt_fail(err, PT_ERR_INVALID, "cannot write '%s': the path names a directory", path);
        goto fail;
    }
    char pid[32];
    snprintf(pid, sizeof pid, ".tmp.%ld", (long)getpid());
    char *name = concat3(".", base, pid);
    free(base);
    o->tmp = name ? concat3(o->dir, "/", name) : NULL;
    free(name);
    if (!o->tmp) {
        st = pt_fail(err, PT_ERR_NOMEM, "out of memory writing '%s'", path);
        goto fail;
    }
    /* A temp file of this name can only be a leftover of a dead process with our pid. */
    unlink(o->tmp);
    o->fd = open(o->tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (o->fd < 0) {
        st = pt_fail(err, PT_ERR_IO, "cannot write '%s': cannot create temporary file '%s': %s", path, o->tmp,
                     strerror(errno));
        free(o->tmp);
        o->tmp = NULL;
        goto fail;
    }
    if (exists) {
        /* The replacement keeps the replaced file's permission bits and, where allowed, its
         * owner and group (only root may give a file away; a member of the file's group may
         * keep that). A set-user-ID or set-group-ID bit is kept only with the owner or group
         * it was for, never handed to this process's user. */
        mode_t mode = sb.st_mode & 07777;
        if (fchown(o->fd, sb.st_uid, sb.st_gid) < 0 && fchown(o->fd, (uid_t)-1, sb.st_gid) < 0) {
        }
        struct stat now;
        if (fstat(o->fd, &now) < 0 || now.st_uid != sb.st_uid) mode &= ~(mode_t)(S_ISUID | S_ISGID);
        else if (now.st_gid != sb.st_gid) mode &= ~(mode_t)S_ISGID;
        fchmod(o->fd, mode);
    }
    return PT_OK;
fail:
    pt_output_abort(o);
    return st;
}

pt_status pt_output_write(pt_output *o, const void *buf, size_t n, pt_error *err)
{
    if (n == 0) return PT_OK;
    if (!buf) return pt_fail(err, PT_ERR_INVALID, "cannot write '%s': no data", o->path);
    if (write_all(o->fd, buf, n) < 0)
        return pt_fail(err, PT_ERR_IO, "cannot write '%s': %s", o->path, strerror(errno));
    return PT_OK;
}

pt_status pt_output_commit(pt_output *o, pt_error *err)
{
    pt_status st = PT_OK;
    if (o->stream) {
        int rc = close(o->fd);
        o->fd = -1;
        if (rc < 0) st = pt_fail(err, PT_ERR_IO, "cannot write '%s': close failed: %s", o->path, strerror(errno));
        pt_output_abort(o);
        return st;
    }
    if (fsync_retry(o->fd) < 0)
        st = pt_fail(err, PT_ERR_IO, "cannot write '%s': fsync failed: %s", o->path, strerror(errno));
    if (close_checked(o->fd) < 0 && st == PT_OK)
        st = pt_fail(err, PT_ERR_IO, "cannot write '%s': close failed: %s", o->path, strerror(errno));
    o->fd = -1;
    if (st == PT_OK && rename(o->tmp, o->target) < 0)
        st = pt_fail(err, PT_ERR_IO, "cannot write '%s': rename from '%s' failed: %s", o->path, o->tmp,
                     strerror(errno));
    if (st != PT_OK) {
        pt_output_abort(o);
        return st;
    }
    free(o->tmp);
    o->tmp = NULL;
    /* The content is in place; only the durability of the rename is left to ensure. */
    if (pt_fsync_dir(o->dir) < 0)
        st = pt_fail(err, PT_ERR_IO, "wrote '%s' but cannot fsync its directory '%s': %s", o->path, o->dir,
                     strerror(errno));
    pt_output_abort(o);
    return st;
}

pt_status pt_append_file(const char *path, const void *buf, size_t n, pt_error *err)
{
    int fd;
    while ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0666)) < 0 &&
           errno == EINTR) {}
    if (fd < 0) return pt_fail(err, PT_ERR_IO, "cannot append to '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return pt_fail(err, PT_ERR_IO, "cannot append to '%s': not a regular file", path);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    pt_status st = PT_OK;
    if (write_all(fd, buf, n) < 0) st = pt_fail(err, PT_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    else if (fsync_retry(fd) < 0)
        st = pt_fail(err, PT_ERR_IO, "cannot write '%s': fsync failed: %s", path, strerror(errno));
    if (close_checked(fd) < 0 && st == PT_OK)
        st = pt_fail(err, PT_ERR_IO, "cannot write '%s': close failed: %s", path, strerror(errno));
    return st;
}

/* name is ".<base>.tmp.<digits>" */
static int is_temp_of(const char *name, const char *base)
{
    size_t bl = strlen(base);
    if (name[0] != '.' || strncmp(name + 1, base, bl) != 0 || strncmp(name + 1 + bl, ".tmp.", 5) != 0) return 0;
    const char *d = name + 1 + bl + 5;
    if (!*d) return 0;
    for (; *d; d++)
        if (*d < '0' || *d > '9') return 0;
    return 1;
}

pt_status pt_output_sweep(const char *dir, const char *const *names, int n, pt_error *err)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return PT_OK;
        return pt_fail(err, PT_ERR_IO, "cannot list '%s': %s", dir, strerror(errno));
    }
    pt_status st = PT_OK;
    struct dirent *de;
    errno = 0;
    while (st == PT_OK && (de = readdir(d)) != NULL) {
        for (int i = 0; i < n; i++) {
            if (!is_temp_of(de->d_name, names[i])) continue;
            char *p = concat3(dir, "/", de->d_name);
            struct stat sb;
            if (!p) st = pt_fail(err, PT_ERR_NOMEM, "out of memory cleaning '%s'", dir);
            else if (lstat(p, &sb) == 0 && S_ISREG(sb.st_mode) && unlink(p) < 0 && errno != ENOENT)
                st = pt_fail(err, PT_ERR_IO, "cannot remove the temporary file '%s' a stopped writer left: %s", p,
                             strerror(errno));
            free(p);
            break;
        }
        errno = 0;
    }
    closedir(d);
    return st;
}

pt_status pt_write_file_atomic(const char *path, const void *const *chunks, const size_t *sizes,
                               int nchunks, pt_error *err)
{
    if (!path || !path[0]) return pt_fail(err, PT_ERR_INVALID, "pt_write_file_atomic: empty path");
    if (nchunks < 0 || (nchunks > 0 && (!chunks || !sizes)))
        return pt_fail(err, PT_ERR_INVALID, "pt_write_file_atomic: bad chunk list for '%s'", path);
    pt_output o;
    PT_TRY(pt_output_open(&o, path, 0, err));
    pt_status st = PT_OK;
    for (int i = 0; i < nchunks && st == PT_OK; i++) {
        if (sizes[i] == 0) continue;
        if (!chunks[i]) st = pt_fail(err, PT_ERR_INVALID, "cannot write '%s': chunk %d is NULL", path, i);
        else st = pt_output_write(&o, chunks[i], sizes[i], err);
    }
    if (st != PT_OK) {
        pt_output_abort(&o);
        return st;
    }
    return pt_output_commit(&o, err);
}

/* ---------------------------------------------------------------- reading */

pt_status pt_open_input(const char *path, int kind, const char *what, int *out, pt_error *err)
{
    *out = -1;
    const char *sp = what && what[0] ? " " : "";
    if (!what) what = "";
    if (!path || !path[0]) {
        return pt_fail(err, PT_ERR_INVALID, "cannot read %s%san empty path", what, sp);
    }
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | (kind == PT_INPUT_DIR ? O_DIRECTORY : 0));
    if (fd < 0) {
        int e = errno;
        struct stat sb;
        if (e == ENOTDIR && kind == PT_INPUT_DIR && stat(path, &sb) == 0)
            return pt_fail(err, PT_ERR_IO, "cannot read %s%s'%s': it is %s, not a directory", what, sp, path,
                           pt_file_type_name(sb.st_mode));
        return pt_fail(err, PT_ERR_IO, "cannot open %s%s'%s': %s", what, sp, path, strerror(e));
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        int e = errno;
        close(fd);
        return pt_fail(err, PT_ERR_IO, "cannot stat %s%s'%s': %s", what, sp, path, strerror(e));
    }
    int ok = kind == PT_INPUT_DIR ? S_ISDIR(sb.st_mode) : S_ISREG(sb.st_mode);
    if (!ok) {
        close(fd);
        return pt_fail(err, PT_ERR_IO, "cannot read %s%s'%s': it is %s, not %s", what, sp, path,
                       pt_file_type_name(sb.st_mode), kind == PT_INPUT_DIR ? "a directory" : "a regular file");
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    *out = fd;
    return PT_OK;
}

pt_status pt_read_file(const char *path, size_t max_bytes, void **out, size_t *size, pt_error *err)
{
    *out = NULL;
    *size = 0;
    int fd;
    PT_TRY(pt_open_input(path, PT_INPUT_FILE, NULL, &fd, err));
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        int e = errno;
        close(fd);
        return pt_fail(err, PT_ERR_IO, "cannot stat '%s': %s", path, strerror(e));
    }
    if (sb.st_size < 0 || (uintmax_t)sb.st_size > (uintmax_t)max_bytes ||
        (uintmax_t)sb.st_size >= (uintmax_t)SIZE_MAX) {
        close(fd);
        return pt_fail(err, PT_ERR_FORMAT, "'%s' is %jd bytes, more than the limit of %zu bytes",
                       path, (intmax_t)sb.st_size, max_bytes);
    }
    size_t n = (size_t)sb.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return pt_fail(err, PT_ERR_NOMEM, "out of memory reading '%s' (%zu bytes)", path, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            free(buf);
            close(fd);
            if (r == 0)
                return pt_fail(err, PT_ERR_IO, "cannot read '%s': file shrank while being read", path);
            return pt_fail(err, PT_ERR_IO, "cannot read '%s': %s", path, strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *size = n;
    return PT_OK;
}

/* ---------------------------------------------------------------- directories */

static int is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Attempts before pt_mkdir_p gives up on a path whose parents keep vanishing. */
#define PT_MKDIR_TRIES 16

pt_status pt_mkdir_p_made(const char *path, pt_made_dirs *made, pt_error *err)
{
    if (made) memset(made, 0, sizeof *made);
    if (!path || !path[0]) return pt_fail(err, PT_ERR_INVALID, "cannot create a directory with an empty name");
    char *p = strip_slashes(path);
    if (!p) return pt_fail(err, PT_ERR_NOMEM, "out of memory creating '%s'", path);
    size_t len = strlen(p), *ends = NULL;
    int n = 0;
    if (made) {
        /* at most one directory per component, and a component takes at least two bytes */
        ends = malloc((len / 2 + 2) * sizeof *ends);
        if (!ends) {
            free(p);
            return pt_fail(err, PT_ERR_NOMEM, "out of memory creating '%s'", path);
        }
    }
    pt_status st = PT_OK;
    for (int attempt = 0;; attempt++) {
        int vanished = 0;
        for (char *s = p + 1;; s++) {
            char c = *s;
            if (c != '/' && c != '\0') continue;
            *s = '\0';
            if (mkdir(p, 0777) == 0) {
                /* only what this call's mkdir created is ever undone: never a directory that
                 * existed, nor one another process made meanwhile */
                if (ends) {
                    int seen = 0; /* made again after it vanished: recorded once */
                    for (int i = 0; i < n && !seen; i++) seen = ends[i] == (size_t)(s - p);
                    if (!seen) ends[n++] = (size_t)(s - p);
                }
            } else {
                int e = errno;
                if (e == ENOENT && attempt + 1 < PT_MKDIR_TRIES) {
                    /* a parent went away after it was seen (another run removing the empty
                     * directories it made): the walk starts again from the top */
                    *s = c;
                    vanished = 1;
                    break;
                }
                if (e != EEXIST) {
                    st = pt_fail(err, PT_ERR_IO, "cannot create directory '%s': %s", p, strerror(e));
                    *s = c;
                    break;
                }
                if (!is_dir(p)) {
                    st = pt_fail(err, PT_ERR_IO, "cannot create directory '%s': %s exists and is not a directory",
                                 path, p);
                    *s = c;
                    break;
                }
            }
            *s = c;
            if (c == '\0') break;
        }
        if (!vanished || st != PT_OK) break;
    }
    for (int i = 1; i < n; i++) /* shallowest first, also after a walk started again */
        for (int j = i; j > 0 && ends[j - 1] > ends[j]; j--) {
            const size_t t = ends[j];
            ends[j] = ends[j - 1];
            ends[j - 1] = t;
        }
    if (made && st == PT_OK && n > 0) {
        made->path = p;
        made->ends = ends;
        made->n = n;
        return PT_OK;
    }
    if (made && st != PT_OK) {
        /* a failed call leaves nothing of its own behind */
        pt_made_dirs partial = {p, ends, n};
        pt_made_dirs_remove(&partial);
    }
    free(ends);
    free(p);
    return st;
}

pt_status pt_mkdir_p(const char *path, pt_error *err) { return pt_mkdir_p_made(path, NULL, err); }

int pt_made_dirs_has(const pt_made_dirs *made, const char *path)
{
    if (!made || made->n == 0 || !path) return 0;
    char *p = strip_slashes(path);
    int yes = p && strlen(p) == made->ends[made->n - 1] && strncmp(p, made->path, strlen(p)) == 0;
    free(p);
    return yes;
}

void pt_made_dirs_remove(pt_made_dirs *made)
{
    if (!made || !made->path) return;
    /* deepest first; rmdir removes only an empty directory, and the first that is not empty
     * (another run's files, a sibling made since) keeps itself and every parent */
    for (int i = made->n - 1; i >= 0; i--) {
        const char saved = made->path[made->ends[i]];
        made->path[made->ends[i]] = '\0';
        const int rc = rmdir(made->path);
        made->path[made->ends[i]] = saved;
        if (rc < 0 && errno != ENOENT) break;
    }
    made->n = 0;
}

void pt_made_dirs_free(pt_made_dirs *made)
{
    if (!made) return;
    free(made->path);
    free(made->ends);
    memset(made, 0, sizeof *made);
}

int pt_path_exists(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0;
}

pt_status pt_check_dir_writable(const char *dir, pt_error *err)
{
    pt_error e = {0};
    if (pt_mkdir_p(dir, &e) != PT_OK)
        return pt_fail(err, PT_ERR_IO, "cannot write to output directory '%s': %s", dir, e.msg);
    char pid[48];
    /* named as pt_output names its temp files, so that pt_output_sweep removes one a kill left */
    snprintf(pid, sizeof pid, "/.pt_write_probe.tmp.%ld", (long)getpid());
    char *probe = concat3(dir, pid, "");
    if (!probe) return pt_fail(err, PT_ERR_NOMEM, "out of memory checking '%s'", dir);
    unlink(probe);
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int en = errno;
        free(probe);
        return pt_fail(err, PT_ERR_IO, "cannot write to output directory '%s': %s", dir, strerror(en));
    }
    close(fd);
    int rc = unlink(probe), en = errno;
    free(probe);
    if (rc < 0)
        return pt_fail(err, PT_ERR_IO, "cannot write to output directory '%s': cannot remove a file there: %s",
                       dir, strerror(en));
    return PT_OK;
}

#define PT_REMOVE_MAX_DEPTH 64

static pt_status remove_tree(const char *path, int depth, pt_error *err)
{
    struct stat sb;
    if (lstat(path, &sb) < 0) {
        if (errno == ENOENT) return PT_OK;
        return pt_fail(err, PT_ERR_IO, "cannot remove '%s': %s", path, strerror(errno));
    }
    if (!S_ISDIR(sb.st_mode)) {
        if (unlink(path) < 0 && errno != ENOENT)
            return pt_fail(err, PT_ERR_IO, "cannot remove '%s': %s", path, strerror(errno));
        return PT_OK;
    }
    if (depth >= PT_REMOVE_MAX_DEPTH)
        return pt_fail(err, PT_ERR_IO, "cannot remove '%s': nested deeper than %d directories", path,
                       PT_REMOVE_MAX_DEPTH);
    /* Names are collected first and the directory closed before recursing, so that at
     * most one directory stream is open per call and removal does not disturb readdir. */
    DIR *d = opendir(path);
    if (!d) return pt_fail(err, PT_ERR_IO, "cannot remove '%s': %s", path, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    pt_status st = PT_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **nn = realloc(names, ncap * sizeof *nn);
            if (!nn) {
                st = pt_fail(err, PT_ERR_NOMEM, "out of memory removing '%s'", path);
                break;
            }
            names = nn;
            cap = ncap;
        }
        names[n] = concat3(path, "/", de->d_name);
        if (!names[n]) {
            st = pt_fail(err, PT_ERR_NOMEM, "out of memory removing '%s'", path);
            break;
        }
        n++;
    }
    closedir(d);
    for (size_t i = 0; i < n; i++) {
        if (st == PT_OK) st = remove_tree(names[i], depth + 1, err);
        free(names[i]);
    }
    free(names);
    if (st == PT_OK && rmdir(path) < 0 && errno != ENOENT)
        st = pt_fail(err, PT_ERR_IO, "cannot remove directory '%s': %s", path, strerror(errno));
    return st;
}

pt_status pt_remove_tree(const char *path, pt_error *err)
{
    if (!path || !path[0]) return pt_fail(err, PT_ERR_INVALID, "cannot remove an empty path");
    return remove_tree(path, 0, err);
}
