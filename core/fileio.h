/* Whole-file reads with a size bound, crash-safe file writes (temp file, fsync, rename)
 * (see dircommit.h for replacing a directory of files). A failed write never damages the
 * file it was meant to replace. */
#ifndef PT_FILEIO_H
#define PT_FILEIO_H

#include <stddef.h>

#include "polytrain/status.h"

/* Writes the concatenation of chunks[0..nchunks) to path atomically: the data goes to
 * "<dir>/.<name>.tmp.<pid>", is fsync'd, renamed over path, and the directory is fsync'd.
 * On failure the temp file is removed, an existing file at path is untouched, and the
 * result is PT_ERR_IO naming path and the system's reason. A chunk may be NULL if its
 * size is 0. */
pt_status pt_write_file_atomic(const char *path, const void *const *chunks, const size_t *sizes,
                               int nchunks, pt_error *err);

/* Reads a whole regular file into a malloc'd buffer (*out, free() it) with a NUL byte
 * after the last one, so text can be used as a C string. Refuses files larger than
 * max_bytes (PT_ERR_FORMAT) and files that are not regular (PT_ERR_IO). */
pt_status pt_read_file(const char *path, size_t max_bytes, void **out, size_t *size, pt_error *err);

/* mkdir -p: creates path and its missing parents (mode 0777 minus umask). */
pt_status pt_mkdir_p(const char *path, pt_error *err);

/* 1 if something (file, directory, ...) exists at path, else 0. Symlinks are not followed. */
int pt_path_exists(const char *path);

/* Creates dir if missing, then proves a file can be created and removed in it. Error:
 * "cannot write to output directory 'X': <reason>". Use before a long run starts. */
pt_status pt_check_dir_writable(const char *dir, pt_error *err);

/* rm -r: removes path and, if it is a directory, everything below it, never following
 * symlinks. A missing path is not an error. */
pt_status pt_remove_tree(const char *path, pt_error *err);

#endif
