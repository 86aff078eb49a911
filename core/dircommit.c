/* Directory commits (see dircommit.h).
 *
 * Crash-safety argument. Invariant: final_dir, whenever it exists, is complete; when it is
 * missing, its OLD slot is the previous complete directory.
 *   exchange  (Linux, most local file systems): one renameat2(RENAME_EXCHANGE) swaps `from`
 *             and final_dir atomically; afterwards `from`'s name holds the old content, which
 *             is moved to OLD and removed. A crash leaves final_dir complete (old or new) and
 *             at most garbage in `from`/OLD, which the writer's next recover removes.
 *   fallback  rename final -> OLD (state B: final missing, OLD complete; a reader reads OLD
 *             through pt_dir_resolve, the writer's recover renames it back), then rename
 *             from -> final (state C: OLD is garbage).
 * `from` and the parent are fsync'd before and after the renames so that they reach the disk
 * in order. The first commit (no final_dir yet) is a single rename. A reader never changes
 * anything, so it cannot make a commit fail: with the exchange, readers that opened files
 * keep reading them; in the fallback a reader that arrives between the renames reads OLD. */
#include "core/dircommit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/fileio.h"

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

static const char *const k_suffix[] = {".polytrain-new", ".polytrain-pending", ".polytrain-old"};

pt_status pt_dir_slot_path(const char *final_dir, pt_dir_slot slot, char *buf, size_t n, pt_error *err)
{
    size_t len = strlen(final_dir);
    while (len > 1 && final_dir[len - 1] == '/') len--;
    size_t b = len;
    while (b > 0 && final_dir[b - 1] != '/') b--;
    if (b == len) return pt_fail(err, PT_ERR_INVALID, "'%s' does not name a directory to commit", final_dir);
    int w = snprintf(buf, n, "%.*s.%.*s%s", (int)b, final_dir, (int)(len - b), final_dir + b, k_suffix[slot]);
    if (w < 0 || (size_t)w >= n) return pt_fail(err, PT_ERR_INVALID, "path '%s' is too long", final_dir);
    return PT_OK;
}

/* The parent directory of path (without trailing slashes) into buf. */
static void parent_of(const char *path, char *buf, size_t n)
{
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    while (len > 0 && path[len - 1] != '/') len--;
    while (len > 1 && path[len - 1] == '/') len--;
    if (len == 0) snprintf(buf, n, ".");
    else snprintf(buf, n, "%.*s", (int)len, path);
}

static int is_dir(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* A leftover slot is ours only when it is a directory holding the marker file. */
static int holds_marker(const char *dir, const char *marker)
{
    char p[4400];
    struct stat sb;
    if (!is_dir(dir)) return 0;
    if (snprintf(p, sizeof p, "%s/%s", dir, marker) >= (int)sizeof p) return 0;
    return lstat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* 0: swapped; -1 with errno (EINVAL, ENOSYS, ENOTSUP: the file system cannot). */
static int exchange(const char *a, const char *b)
{
#if defined(__linux__) && defined(SYS_renameat2)
    return (int)syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
#else
    (void)a;
    (void)b;
    errno = ENOSYS;
    return -1;
#endif
}

pt_status pt_dir_recover(const char *final_dir, const char *marker, pt_error *err)
{
    char fresh[4400], old[4400], parent[4400];
    PT_TRY(pt_dir_slot_path(final_dir, PT_DIR_NEW, fresh, sizeof fresh, err));
    PT_TRY(pt_dir_slot_path(final_dir, PT_DIR_OLD, old, sizeof old, err));
    parent_of(final_dir, parent, sizeof parent);
    if (is_dir(fresh)) PT_TRY(pt_remove_tree(fresh, err));
    /* beside a complete final_dir, OLD is garbage whatever it still holds (a removal cut
     * short may have taken its marker already), as pt_dir_commit treats it */
    if (pt_path_exists(final_dir)) return is_dir(old) ? pt_remove_tree(old, err) : PT_OK;
    if (!holds_marker(old, marker)) return PT_OK;
    if (rename(old, final_dir) < 0)
        return pt_fail(err, PT_ERR_IO, "cannot restore '%s' from '%s': %s", final_dir, old, strerror(errno));
    if (pt_fsync_dir(parent) < 0)
        return pt_fail(err, PT_ERR_IO, "restored '%s' but cannot fsync '%s': %s", final_dir, parent,
                       strerror(errno));
    return PT_OK;
}

int pt_dir_resolve(const char *final_dir, const char *marker, char *buf, size_t n)
{
    char old[4400];
    pt_error ignored;
    if (!pt_path_exists(final_dir) && pt_dir_slot_path(final_dir, PT_DIR_OLD, old, sizeof old, &ignored) == PT_OK &&
        holds_marker(old, marker) && strlen(old) < n) {
        memcpy(buf, old, strlen(old) + 1);
        return 1;
    }
    snprintf(buf, n, "%s", final_dir);
    return 0;
}

pt_status pt_dir_stage(const char *final_dir, pt_error *err)
{
    char fresh[4400], pending[4400], parent[4400];
    PT_TRY(pt_dir_slot_path(final_dir, PT_DIR_NEW, fresh, sizeof fresh, err));
    PT_TRY(pt_dir_slot_path(final_dir, PT_DIR_PENDING, pending, sizeof pending, err));
    parent_of(final_dir, parent, sizeof parent);
    if (pt_fsync_dir(fresh) < 0)
        return pt_fail(err, PT_ERR_IO, "cannot stage '%s': fsync of '%s' failed: %s", final_dir, fresh,
                       strerror(errno));
    if (is_dir(pending)) PT_TRY(pt_remove_tree(pending, err));
    if (rename(fresh, pending) < 0)
        return pt_fail(err, PT_ERR_IO, "cannot stage '%s': rename of '%s' failed: %s", final_dir, fresh,
                       strerror(errno));
    if (pt_fsync_dir(parent) < 0)
        return pt_fail(err, PT_ERR_IO, "cannot stage '%s': fsync of '%s' failed: %s", final_dir, parent,
                       strerror(errno));
    return PT_OK;
}

pt_status pt_dir_commit(const char *from, const char *final_dir, pt_error *err)
{
    char old[4400], parent[4400];
    PT_TRY(pt_dir_slot_path(final_dir, PT_DIR_OLD, old, sizeof old, err));
    parent_of(final_dir, parent, sizeof parent);
    if (!is_dir(from))
        return pt_fail(err, PT_ERR_IO, "cannot commit '%s': '%s' is not a directory", final_dir, from);
    if (pt_fsync_dir(from) < 0)
        return pt_fail(err, PT_ERR_IO, "cannot commit '%s': fsync of '%s' failed: %s", final_dir, from,
                       strerror(errno));
    /* garbage of an earlier commit in the way of this one */
    if (pt_path_exists(final_dir) && is_dir(old)) PT_TRY(pt_remove_tree(old, err));
    if (!pt_path_exists(final_dir)) {
        if (rename(from, final_dir) < 0)
            return pt_fail(err, PT_ERR_IO, "cannot commit '%s': rename from '%s' failed: %s", final_dir, from,
                           strerror(errno));
        if (pt_fsync_dir(parent) < 0)
            return pt_fail(err, PT_ERR_IO, "committed '%s' but cannot fsync '%s': %s", final_dir, parent,
                           strerror(errno));
        return PT_OK;
    }
    if (!is_dir(final_dir))
        return pt_fail(err, PT_ERR_IO, "cannot commit '%s': it exists and is not a directory", final_dir);
    if (exchange(from, final_dir) == 0) {
        if (pt_fsync_dir(parent) < 0)
            return pt_fail(err, PT_ERR_IO, "committed '%s' but cannot fsync '%s': %s", final_dir, parent,
                           strerror(errno));
        /* `from` now holds the old content: garbage. If removing it fails, the next recover or
         * commit removes it; the commit itself has succeeded. */
        pt_error ignored;
        if (rename(from, old) == 0) pt_remove_tree(old, &ignored);
        else pt_remove_tree(from, &ignored);
        return PT_OK;
    }
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP && errno != EOPNOTSUPP)
        return pt_fail(err, PT_ERR_IO, "cannot commit '%s': exchange with '%s' failed: %s", final_dir, from,
                       strerror(errno));
    if (rename(final_dir, old) < 0)
        return pt_fail(err, PT_ERR_IO, "cannot commit '%s': rename to '%s' failed: %s", final_dir, old,
                       strerror(errno));
    if (pt_fsync_dir(parent) < 0) {
        int e = errno;
        rename(old, final_dir);
        return pt_fail(err, PT_ERR_IO, "cannot commit '%s': fsync of '%s' failed: %s", final_dir, parent,
                       strerror(e));
    }
    if (rename(from, final_dir) < 0) {
        int e = errno;
        rename(old, final_dir); /* back as it was; if this fails, recover does it */
        return pt_fail(err, PT_ERR_IO, "cannot commit '%s': rename from '%s' failed: %s", final_dir, from,
                       strerror(e));
    }
    if (pt_fsync_dir(parent) < 0)
        return pt_fail(err, PT_ERR_IO, "committed '%s' but cannot fsync '%s': %s", final_dir, parent,
                       strerror(errno));
    pt_error ignored;
    pt_remove_tree(old, &ignored);
    return PT_OK;
}
