/* What the libFuzzer harnesses share: a file holding the current input for readers that
 * only take a path (an anonymous memory file, reached as /proc/self/fd/N, so that nothing
 * touches the disk), a scratch directory for readers of a directory tree, and a check that
 * an error message was filled in. Header-only: each harness is one program. */
#ifndef PT_FUZZ_UTIL_H
#define PT_FUZZ_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sanitizer/common_interface_defs.h>

#include "polytrain/status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Where harnesses add up bytes they read, so that the reads are not optimised away. */
static volatile size_t fuzz_sink;

/* A defect the harness itself detects: the message goes where the sanitizers' reports go
 * (libFuzzer's -close_fd_mask=3 closes stderr for everything else), then abort(). */
static inline void fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static inline void fuzz_fail(const char *fmt, ...)
{
    char msg[8192] = "fuzz: ";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + 6, sizeof msg - 6, fmt, ap);
    va_end(ap);
    __sanitizer_report_error_summary(msg);
    abort();
}

/* A reader that fails must say why: an empty message is a defect too. */
static inline void fuzz_check_error(pt_status s, const pt_error *e)
{
    if (s != PT_OK && e->msg[0] == '\0') fuzz_fail("status %d with an empty error message", (int)s);
}

/* The memory file; created on first use and kept for the whole run. */
static int fuzz_memfd_ = -1;
static char fuzz_memfd_path_[64];

/* Makes the memory file hold exactly data[0..size) and returns a path that opens it. */
static inline const char *fuzz_file(const void *data, size_t size)
{
    if (fuzz_memfd_ < 0) {
        fuzz_memfd_ = (int)syscall(SYS_memfd_create, "pt-fuzz-input", 0u);
        if (fuzz_memfd_ < 0) {
            perror("fuzz: memfd_create");
            abort();
        }
        snprintf(fuzz_memfd_path_, sizeof fuzz_memfd_path_, "/proc/self/fd/%d", fuzz_memfd_);
    }
    if (ftruncate(fuzz_memfd_, 0) != 0) abort();
    const uint8_t *p = data;
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(fuzz_memfd_, p + done, size - done, (off_t)done);
        if (w <= 0) abort();
        done += (size_t)w;
    }
    return fuzz_memfd_path_;
}

/* A scratch directory under $TMPDIR (or /tmp), made once per process. */
static char fuzz_dir_[512];

static inline const char *fuzz_scratch_dir(void)
{
    if (!fuzz_dir_[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(fuzz_dir_, sizeof fuzz_dir_, "%s/pt-fuzz-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(fuzz_dir_)) {
            perror("fuzz: mkdtemp");
            abort();
        }
    }
    return fuzz_dir_;
}

/* Writes data[0..size) to dir/name (replacing it). */
static inline void fuzz_write(const char *dir, const char *name, const void *data, size_t size)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

static inline void fuzz_mkdir(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (mkdir(path, 0755) != 0 && access(path, F_OK) != 0) {
        perror(path);
        abort();
    }
}

/* Splits data at every byte `sep` into at most max parts; returns how many. */
static inline int fuzz_split(const uint8_t *data, size_t size, uint8_t sep, const uint8_t **part,
                             size_t *len, int max)
{
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= size && n < max; i++) {
        if (i == size || (data[i] == sep && n < max - 1)) {
            part[n] = data + start;
            len[n] = i - start;
            n++;
            start = i + 1;
        }
    }
    return n;
}

#endif
