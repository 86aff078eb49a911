/* core/fileio: atomic writes replace or leave the old file intact (no temp file left). The
 * directory commit has its own test (test_dircommit.c). */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"
#include "pt_test.h"

static char root[512];

static const char *at(const char *rel)
{
    static char buf[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", root, rel);
    return buf[k];
}

static int write_plain(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

/* Whole file as a string (static buffer), or NULL if it cannot be read. */
static const char *slurp(const char *path)
{
    static char buf[1 << 16];
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* Number of entries in dir whose name contains needle. */
static int count_entries(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strstr(de->d_name, needle)) n++;
    closedir(d);
    return n;
}

static void test_atomic_write_creates_and_replaces(void)
{
    const char *p = at("a.bin");
    const void *chunks[] = {"abc", NULL, "", "def"};
    size_t sizes[] = {3, 0, 0, 3};
    pt_error e = {0};
    CHECKF(pt_write_file_atomic(p, chunks, sizes, 4, &e) == PT_OK, "%s", e.msg);
    const char *got = slurp(p);
    CHECK(got && strcmp(got, "abcdef") == 0);
    const void *c2[] = {"new"};
    size_t s2[] = {3};
    CHECKF(pt_write_file_atomic(p, c2, s2, 1, &e) == PT_OK, "%s", e.msg);
    got = slurp(p);
    CHECK(got && strcmp(got, "new") == 0);
    CHECK(count_entries(root, ".tmp.") == 0);
    /* Empty file, relative-to-cwd style path without a directory part is covered by "./". */
    CHECKF(pt_write_file_atomic(p, NULL, NULL, 0, &e) == PT_OK, "%s", e.msg);
    got = slurp(p);
    CHECK(got && got[0] == '\0');
}

static void test_atomic_write_into_a_non_directory_fails_cleanly(void)
{
    CHECK(write_plain(at("plainfile"), "x") == 0);
    const char *p = at("plainfile/x");
    const void *c[] = {"data"};
    size_t s[] = {4};
    pt_error e = {0};
    CHECK(pt_write_file_atomic(p, c, s, 1, &e) == PT_ERR_IO);
    CHECKF(strstr(e.msg, p) && strstr(e.msg, strerror(ENOTDIR)), "%s", e.msg);
    const char *got = slurp(at("plainfile"));
    CHECK(got && strcmp(got, "x") == 0);
}

/* RLIMIT_FSIZE makes write() fail with EFBIG part-way, like a disk filling up, without
 * privileges or a special file system. */
static void test_write_failing_midway_keeps_old_file_and_no_temp(void)
{
    const char *p = at("ckpt.bin");
    CHECK(write_plain(p, "previous good content") == 0);
    size_t big = 1 << 20;
    char *data = malloc(big);
    memset(data, 'z', big);
    const void *c[] = {"header", data};
    size_t s[] = {6, big};
    pt_error e = {0};

    struct rlimit old;
    getrlimit(RLIMIT_FSIZE, &old);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = old;
    lim.rlim_cur = 64 * 1024;
    int limited = setrlimit(RLIMIT_FSIZE, &lim) == 0;
    pt_status st = pt_write_file_atomic(p, c, s, 2, &e);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    free(data);

    CHECKF(limited, "setrlimit failed: %s", strerror(errno));
    CHECKF(st == PT_ERR_IO, "status %d", st);
    CHECKF(strstr(e.msg, p) && strstr(e.msg, strerror(EFBIG)), "%s", e.msg);
    const char *got = slurp(p);
    CHECK(got && strcmp(got, "previous good content") == 0);
    CHECK(count_entries(root, ".tmp.") == 0);
}

static void test_write_into_readonly_directory_fails(void)
{
    if (geteuid() == 0) {
        printf("  (running as root: permissions do not stop root; covered by the non-directory test)\n");
        return;
    }
    pt_error e = {0};
    CHECK(pt_mkdir_p(at("ro"), &e) == PT_OK);
    CHECK(write_plain(at("ro/f"), "old") == 0);
    chmod(at("ro"), 0500);
    const void *c[] = {"new"};
    size_t s[] = {3};
    CHECK(pt_write_file_atomic(at("ro/f"), c, s, 1, &e) == PT_ERR_IO);
    CHECKF(strstr(e.msg, strerror(EACCES)) != NULL, "%s", e.msg);
    CHECK(pt_check_dir_writable(at("ro"), &e) == PT_ERR_IO);
    CHECKF(strstr(e.msg, "cannot write to output directory") != NULL, "%s", e.msg);
    chmod(at("ro"), 0700);
    const char *got = slurp(at("ro/f"));
    CHECK(got && strcmp(got, "old") == 0);
    CHECK(count_entries(at("ro"), ".tmp.") == 0);
}

static void test_read_file_bounds_and_errors(void)
{
    CHECK(write_plain(at("r.txt"), "hello") == 0);
    void *buf = NULL;
    size_t n = 0;
    pt_error e = {0};
    CHECKF(pt_read_file(at("r.txt"), 5, &buf, &n, &e) == PT_OK, "%s", e.msg);
    CHECK(buf && n == 5 && memcmp(buf, "hello", 6) == 0); /* NUL-terminated */
    free(buf);
    CHECK(pt_read_file(at("r.txt"), 4, &buf, &n, &e) == PT_ERR_FORMAT && buf == NULL);
    CHECKF(strstr(e.msg, "is 5 bytes, more than the limit of 4 bytes") != NULL, "%s", e.msg);
    CHECK(pt_read_file(at("nope.txt"), 100, &buf, &n, &e) == PT_ERR_IO);
    CHECKF(strstr(e.msg, "nope.txt") && strstr(e.msg, strerror(ENOENT)), "%s", e.msg);
    CHECK(pt_read_file(root, 100, &buf, &n, &e) == PT_ERR_IO);
    CHECKF(strstr(e.msg, "not a regular file") != NULL, "%s", e.msg);
}

static void test_mkdir_p_and_check_dir_writable(void)
{
    pt_error e = {0};
    CHECKF(pt_mkdir_p(at("m/n/o/"), &e) == PT_OK, "%s", e.msg);
    CHECK(pt_path_exists(at("m/n/o")));
    CHECKF(pt_mkdir_p(at("m/n/o"), &e) == PT_OK, "existing: %s", e.msg);
    CHECK(write_plain(at("m/file"), "x") == 0);
    CHECK(pt_mkdir_p(at("m/file/sub"), &e) == PT_ERR_IO);
    CHECKF(strstr(e.msg, "m/file") != NULL, "%s", e.msg);
    CHECKF(pt_check_dir_writable(at("w/new/dir"), &e) == PT_OK, "%s", e.msg);
    CHECK(pt_path_exists(at("w/new/dir")) && count_entries(at("w/new/dir"), "probe") == 0);
    CHECK(pt_check_dir_writable(at("m/file/out"), &e) == PT_ERR_IO);
    CHECKF(strncmp(e.msg, "cannot write to output directory '", 34) == 0 && strstr(e.msg, "m/file/out"),
           "%s", e.msg);
    CHECK(!pt_path_exists(at("does/not/exist")));
}

static void test_remove_tree_does_not_follow_symlinks(void)
{
    pt_error e = {0};
    CHECK(pt_mkdir_p(at("keep"), &e) == PT_OK && write_plain(at("keep/precious"), "p") == 0);
    CHECK(pt_mkdir_p(at("t/a/b"), &e) == PT_OK);
    CHECK(write_plain(at("t/a/b/f1"), "1") == 0 && write_plain(at("t/f2"), "2") == 0);
    CHECK(symlink(at("keep"), at("t/a/link")) == 0);
    CHECKF(pt_remove_tree(at("t"), &e) == PT_OK, "%s", e.msg);
    CHECK(!pt_path_exists(at("t")));
    CHECK(pt_path_exists(at("keep/precious")));
    CHECKF(pt_remove_tree(at("t"), &e) == PT_OK, "missing path: %s", e.msg);
}

int main(void)
{
    const char *base = getenv("PT_TEST_TMP");
    if (!base || !base[0]) base = "/tmp";
    snprintf(root, sizeof root, "%s/test_fileio.%ld", base, (long)getpid());
    pt_error e = {0};
    if (pt_remove_tree(root, &e) != PT_OK || pt_mkdir_p(root, &e) != PT_OK) {
        fprintf(stderr, "cannot set up %s: %s\n", root, e.msg);
        return 1;
    }
    RUN(test_atomic_write_creates_and_replaces);
    RUN(test_atomic_write_into_a_non_directory_fails_cleanly);
    RUN(test_write_failing_midway_keeps_old_file_and_no_temp);
    RUN(test_write_into_readonly_directory_fails);
    RUN(test_read_file_bounds_and_errors);
    RUN(test_mkdir_p_and_check_dir_writable);
    RUN(test_remove_tree_does_not_follow_symlinks);
    if (pt_t_fail == 0) pt_remove_tree(root, &e);
    TEST_EXIT();
}
