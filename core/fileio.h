/* Whole-file reads with a size bound that never block on a FIFO, and crash-safe output files
 * (temp file, fsync, rename) that never replace a FIFO, device or symlink (see dircommit.h
 * for replacing a directory of files). A failed write never damages the file it was meant
 * to replace. */
#ifndef PT_FILEIO_H
#define PT_FILEIO_H

#include <stddef.h>

#include "polytrain/status.h"

/* An output file at a path the user gave, written by one mechanism for every writer:
 *  - no file there, or a regular file: the data goes to a temp file beside it
 *    ("<dir>/.<name>.tmp.<pid>"), which is fsync'd and renamed over it on commit, then the
 *    directory is fsync'd; an abort or a crash leaves the old file untouched. The new file
 *    keeps the replaced one's permission bits, and its owner and group where this process
 *    may set them (set-user/group-ID bits only with the owner/group they were for); ACLs
 *    and extended attributes are not copied. A file with several hard links is replaced
 *    under this name only: the other names keep the old content (as with git, rsync or
 *    sed -i), since writing in place would let a crash leave a half-written file;
 *  - a symbolic link: followed, so the file it points to is created or replaced and the
 *    link stays a link;
 *  - a FIFO or a character device (/dev/null, a terminal, /dev/stdout): written in place as
 *    a stream, never replaced by a regular file; a FIFO that no process reads is refused
 *    rather than waited for. PT_OUTPUT_SEEKABLE refuses streams too;
 *  - a directory, block device or socket: refused.
 * Every error names the path given and says what was found there. */
typedef struct pt_output {
    int fd;          /* where the data goes: the temp file, or the stream itself */
    int stream;      /* 1: fd is the FIFO or device itself (no temp file, no rename) */
    char *path;      /* as given, for messages */
    char *target;    /* the file to create or replace (path, or the end of its symlinks) */
    char *tmp;       /* the temp file; NULL for a stream */
    char *dir;       /* target's directory */
} pt_output;

#define PT_OUTPUT_SEEKABLE 1u /* the writer maps or seeks the file: only a regular file will do */

/* Opens an output as above. The temp file is opened read-write, so that a writer may map
 * it. On failure nothing was created and o needs no cleanup. */
pt_status pt_output_open(pt_output *o, const char *path, unsigned flags, pt_error *err);
/* Writes all n bytes (retrying short writes and EINTR). */
pt_status pt_output_write(pt_output *o, const void *buf, size_t n, pt_error *err);
/* Finishes the output: for a file fsync, close, rename over the target and fsync of the
 * directory; for a stream close. On failure the temp file is removed. o is released either
 * way. */
pt_status pt_output_commit(pt_output *o, pt_error *err);
/* Drops an output that was opened but is not to be committed: the temp file is removed and
 * the target untouched. Safe on a zeroed pt_output. */
void pt_output_abort(pt_output *o);

/* Appends n bytes to the regular file path (created if missing) and fsyncs it; short writes
 * and calls a signal interrupted (EINTR) are retried. A failure can leave part of the bytes,
 * which the caller must be able to recognise (a run log drops a partial last line). */
pt_status pt_append_file(const char *path, const void *buf, size_t n, pt_error *err);

/* Removes the temp files that writers which died (a kill, a crash) left for dir/NAME, for
 * each of the n names: ".NAME.tmp.<pid>". Only for a directory whose writer holds it alone
 * (a run directory under its run lock): another live writer's temp file would go too. */
pt_status pt_output_sweep(const char *dir, const char *const *names, int n, pt_error *err);

/* Writes the concatenation of chunks[0..nchunks) to path through pt_output (so crash-safe
 * for a file, written in place for a FIFO or character device). On failure an existing file
 * at path is untouched and the result names path and the system's reason. A chunk may be
 * NULL if its size is 0. */
pt_status pt_write_file_atomic(const char *path, const void *const *chunks, const size_t *sizes,
                               int nchunks, pt_error *err);

/* "a regular file", "a directory", "a FIFO", "a character device", "a block device",
 * "a socket", "a symbolic link" or "a special file", for messages. */
const char *pt_file_type_name(unsigned mode);

#define PT_INPUT_FILE 0 /* pt_open_input: a regular file is expected */
#define PT_INPUT_DIR 1  /* a directory */

/* Opens a path the user gave for reading without ever blocking: O_NONBLOCK, so that a FIFO
 * or a device returns at once, then fstat, and anything but a regular file (or directory,
 * with PT_INPUT_DIR) is refused with PT_ERR_IO: "cannot read 'X': it is a FIFO, not a
 * regular file". *fd is then a descriptor in blocking mode (else -1). `what` (e.g. "image",
 * may be NULL) goes into the message: "cannot read image 'X': ...". */
pt_status pt_open_input(const char *path, int kind, const char *what, int *fd, pt_error *err);

/* Reads a whole regular file into a malloc'd buffer (*out, free() it) with a NUL byte
 * after the last one, so text can be used as a C string. Refuses files larger than
 * max_bytes (PT_ERR_FORMAT) and files that are not regular (PT_ERR_IO, through
 * pt_open_input: a FIFO never blocks it). */
pt_status pt_read_file(const char *path, size_t max_bytes, void **out, size_t *size, pt_error *err);

/* mkdir -p: creates path and its missing parents (mode 0777 minus umask). A parent that
 * disappears during the walk (another process removing the empty directories it made) is
 * made again. */
pt_status pt_mkdir_p(const char *path, pt_error *err);

/* The directories one pt_mkdir_p_made call created itself (its mkdir succeeded), so that a
 * command that fails can take back exactly those: never one that existed before, nor one
 * another process created at the same time. */
typedef struct pt_made_dirs {
    char *path;   /* the path, without trailing slashes */
    size_t *ends; /* the made directories are path[0..ends[i]), shallowest first */
    int n;
} pt_made_dirs;

/* pt_mkdir_p that records in *made (zeroed first; free with pt_made_dirs_free) what it
 * created. On failure the directories it created are removed again and *made is empty. */
pt_status pt_mkdir_p_made(const char *path, pt_made_dirs *made, pt_error *err);
/* 1 when path itself (trailing slashes aside) is one that *made records as created. */
int pt_made_dirs_has(const pt_made_dirs *made, const char *path);
/* Removes the recorded directories, deepest first, each only while empty (rmdir): the first
 * one that is not (something was put in it since) stays, and so do all its parents. Errors
 * are not reported: what stays is what could not be removed safely. Then *made is empty. */
void pt_made_dirs_remove(pt_made_dirs *made);
void pt_made_dirs_free(pt_made_dirs *made);

/* 1 if something (file, directory, ...) exists at path, else 0. Symlinks are not followed. */
int pt_path_exists(const char *path);
/* fsync of a directory, which makes the renames and creations inside it durable: 0, or -1
 * with errno. Some file systems cannot fsync a directory (EINVAL): there is nothing more to
 * do there, so that counts as done. */
int pt_fsync_dir(const char *dir);

/* Creates dir if missing, then proves a file can be created and removed in it. Error:
 * "cannot write to output directory 'X': <reason>". Use before a long run starts. */
pt_status pt_check_dir_writable(const char *dir, pt_error *err);

/* rm -r: removes path and, if it is a directory, everything below it, never following
 * symlinks. A missing path is not an error. */
pt_status pt_remove_tree(const char *path, pt_error *err);

#endif
