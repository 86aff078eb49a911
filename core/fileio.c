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

/* fsync of a directory makes the renames/creations inside it durable. Some file systems
 * cannot fsync a directory (EINVAL): there is nothing more we can do, so it counts as done. */
static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc < 0 && e != EINVAL && e != ENOTSUP) {
        errno = e;
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- atomic file write */

pt_status pt_write_file_atomic(const char *path, const void *const *chunks, const size_t *sizes,
                               int nchunks, pt_error *err)
{
    if (!path || !path[0]) return pt_fail(err, PT_ERR_INVALID, "pt_write_file_atomic: empty path");
    if (nchunks < 0 || (nchunks > 0 && (!chunks || !sizes)))
        return pt_fail(err, PT_ERR_INVALID, "pt_write_file_atomic: bad chunk list for '%s'", path);
    char *dir, *base;
    if (!split_path(path, &dir, &base)) return pt_fail(err, PT_ERR_NOMEM, "out of memory writing '%s'", path);
    if (!base[0]) {
        free(dir);
        free(base);
        return pt_fail(err, PT_ERR_INVALID, "cannot write '%s': the path names a directory", path);
    }
    char pid[32];
    snprintf(pid, sizeof pid, ".tmp.%ld", (long)getpid());
    char *name = concat3(".", base, pid);
    char *tmp = name ? concat3(dir, "/", name) : NULL;
    free(name);
    free(base);
    if (!tmp) {
        free(dir);
        return pt_fail(err, PT_ERR_NOMEM, "out of memory writing '%s'", path);
    }

    pt_status st = PT_OK;
    /* A temp file of this name can only be a leftover of a dead process with our pid. */
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) {
        st = pt_fail(err, PT_ERR_IO, "cannot write '%s': cannot create temporary file '%s': %s",
                     path, tmp, strerror(errno));
        goto out;
    }
    for (int i = 0; i < nchunks; i++) {
        if (sizes[i] == 0) continue;
        if (!chunks[i]) {
            st = pt_fail(err, PT_ERR_INVALID, "cannot write '%s': chunk %d is NULL", path, i);
            break;
        }
        if (write_all(fd, chunks[i], sizes[i]) < 0) {
            st = pt_fail(err, PT_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
            break;
        }
    }
    if (st == PT_OK && fsync(fd) < 0)
        st = pt_fail(err, PT_ERR_IO, "cannot write '%s': fsync failed: %s", path, strerror(errno));
    /* close can report a deferred write error (NFS), so its result counts. */
    if (close(fd) < 0 && st == PT_OK)
        st = pt_fail(err, PT_ERR_IO, "cannot write '%s': close failed: %s", path, strerror(errno));
    if (st == PT_OK && rename(tmp, path) < 0)
        st = pt_fail(err, PT_ERR_IO, "cannot write '%s': rename from '%s' failed: %s", path, tmp,
                     strerror(errno));
    if (st != PT_OK) {
        unlink(tmp);
        goto out;
    }
    /* The content is in place; only the durability of the rename is left to ensure. */
    if (fsync_dir(dir) < 0)
        st = pt_fail(err, PT_ERR_IO, "wrote '%s' but cannot fsync its directory '%s': %s", path,
                     dir, strerror(errno));
out:
    free(tmp);
    free(dir);
    return st;
}

/* ---------------------------------------------------------------- reading */

pt_status pt_read_file(const char *path, size_t max_bytes, void **out, size_t *size, pt_error *err)
{
    *out = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pt_fail(err, PT_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        int e = errno;
        close(fd);
        return pt_fail(err, PT_ERR_IO, "cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return pt_fail(err, PT_ERR_IO, "cannot read '%s': not a regular file", path);
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

pt_status pt_mkdir_p(const char *path, pt_error *err)
{
    if (!path || !path[0]) return pt_fail(err, PT_ERR_INVALID, "cannot create a directory with an empty name");
    char *p = strip_slashes(path);
    if (!p) return pt_fail(err, PT_ERR_NOMEM, "out of memory creating '%s'", path);
    pt_status st = PT_OK;
    for (char *s = p + 1;; s++) {
        char c = *s;
        if (c != '/' && c != '\0') continue;
        *s = '\0';
        if (mkdir(p, 0777) < 0) {
            int e = errno;
            if (e != EEXIST) {
                st = pt_fail(err, PT_ERR_IO, "cannot create directory '%s': %s", p, strerror(e));
                break;
            }
            if (!is_dir(p)) {
                st = pt_fail(err, PT_ERR_IO, "cannot create directory '%s': %s exists and is not a directory",
                             path, p);
                break;
            }
        }
        *s = c;
        if (c == '\0') break;
    }
    free(p);
    return st;
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
    snprintf(pid, sizeof pid, "/.pt_write_probe.%ld", (long)getpid());
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
