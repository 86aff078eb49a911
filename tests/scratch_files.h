/* Test fixture shared by the tests that write files (test_fileio, test_dircommit, the trainer
 * tests): paths under the test's scratch directory `root` (set by main), and plain whole-file
 * writes and reads that bypass the code under test. Include once per test program. */
#ifndef PT_TEST_SCRATCH_FILES_H
#define PT_TEST_SCRATCH_FILES_H
#include <stdio.h>

static char root[512];

/* root/rel, in one of 4 rotating buffers (several may appear in one call). */
static inline const char *at(const char *rel)
{
    static char buf[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", root, rel);
    return buf[k];
}

static inline int write_plain(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

/* Whole file as a string (static buffer), or NULL if it cannot be read. */
static inline const char *slurp(const char *path)
{
    static char buf[1 << 16];
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

#endif
