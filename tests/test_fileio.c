/* core/fileio: atomic writes replace or leave the old file intact (no temp file left),
 * outputs write through symlinks and into FIFOs and devices without replacing them, and
 * inputs never block on a FIFO. The directory commit has its own test (test_dircommit.c). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/fileio.h"
#include "pt_test.h"
#include "scratch_files.h"

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

/* ---- outputs at special paths: never replaced by a regular file ---- */

static int is_type(const char *path, mode_t type)
{
    struct stat sb;
    return lstat(path, &sb) == 0 && (sb.st_mode & S_IFMT) == type;
}

static pt_status write_text(const char *path, const char *text, pt_error *e)
{
    const void *chunks[1] = {text};
    size_t sizes[1] = {strlen(text)};
    return pt_write_file_atomic(path, chunks, sizes, 1, e);
}

/* The directories one mkdir -p made are exactly the ones undone: not one that existed, and
 * not one that has something in it by then (another run's sibling), nor its parents. */
static void test_mkdir_p_made_undoes_only_its_own_directories(void)
{
    pt_error e = {0};
    CHECK(pt_mkdir_p(at("md/old"), &e) == PT_OK);
    pt_made_dirs made;
    CHECKF(pt_mkdir_p_made(at("md/old/x/y/z/"), &made, &e) == PT_OK, "%s", e.msg);
    CHECK(made.n == 3);
    CHECK(pt_made_dirs_has(&made, at("md/old/x/y/z")) && pt_made_dirs_has(&made, at("md/old/x/y/z//")));
    CHECK(!pt_made_dirs_has(&made, at("md/old/x/y")));
    CHECK(mkdir(at("md/old/x/sibling"), 0777) == 0); /* another run's, made meanwhile */
    pt_made_dirs_remove(&made);
    CHECK(!pt_path_exists(at("md/old/x/y")));
    CHECK(pt_path_exists(at("md/old/x/sibling")));
    pt_made_dirs_free(&made);
    CHECK(rmdir(at("md/old/x/sibling")) == 0);
    /* nothing made: an existing path records nothing, and removing that removes nothing */
    CHECKF(pt_mkdir_p_made(at("md/old/x"), &made, &e) == PT_OK, "%s", e.msg);
    CHECK(made.n == 0 && !pt_made_dirs_has(&made, at("md/old/x")));
    pt_made_dirs_remove(&made);
    CHECK(pt_path_exists(at("md/old/x")));
    pt_made_dirs_free(&made);
    /* all of it made, all of it undone; the existing parent stays */
    CHECKF(pt_mkdir_p_made(at("md/new/a/b"), &made, &e) == PT_OK, "%s", e.msg);
    CHECK(made.n == 3);
    pt_made_dirs_remove(&made);
    pt_made_dirs_free(&made);
    CHECK(!pt_path_exists(at("md/new")) && pt_path_exists(at("md")));
    /* a failure leaves none of what it made: here a name longer than a file system allows */
    char deep[400];
    snprintf(deep, sizeof deep, "md/n/m/%0300d", 7);
    CHECK(pt_mkdir_p_made(at(deep), &made, &e) != PT_OK);
    CHECKF(strstr(e.msg, "cannot create directory") != NULL, "%s", e.msg);
    CHECK(made.n == 0 && !pt_path_exists(at("md/n")) && pt_path_exists(at("md")));
    pt_made_dirs_free(&made);
}

/* A replaced file keeps its permission bits and owner; a hard link to it keeps the old
 * content (the replacement is a new file renamed over this name). */
static void test_output_keeps_mode_and_owner_and_leaves_hard_links(void)
{
    pt_error e = {0};
    CHECK(pt_mkdir_p(at("hl"), &e) == PT_OK);
    CHECK(write_plain(at("hl/f"), "old") == 0);
    CHECK(chmod(at("hl/f"), 0604) == 0);
    CHECK(link(at("hl/f"), at("hl/other")) == 0);
    CHECKF(write_text(at("hl/f"), "new", &e) == PT_OK, "%s", e.msg);
    const char *got = slurp(at("hl/f"));
    CHECK(got && !strcmp(got, "new"));
    got = slurp(at("hl/other"));
    CHECK(got && !strcmp(got, "old"));
    struct stat sb;
    CHECK(stat(at("hl/f"), &sb) == 0 && (sb.st_mode & 07777) == 0604 && sb.st_nlink == 1);
    CHECK(count_entries(at("hl"), ".tmp.") == 0);
    if (geteuid() == 0) {
        /* root can give the file back to its owner, and the set-user-ID bit goes with it */
        CHECK(chown(at("hl/f"), 65534, 65534) == 0 && chmod(at("hl/f"), 04750) == 0);
        CHECKF(write_text(at("hl/f"), "again", &e) == PT_OK, "%s", e.msg);
        CHECK(stat(at("hl/f"), &sb) == 0 && sb.st_uid == 65534 && sb.st_gid == 65534);
        CHECKF((sb.st_mode & 07777) == 04750, "mode %o", (unsigned)(sb.st_mode & 07777));
    } else {
        /* another user's file cannot be given back: the set-user-ID bit is dropped, not
         * handed to this user */
        CHECK(chmod(at("hl/f"), 04750) == 0);
        CHECKF(write_text(at("hl/f"), "again", &e) == PT_OK, "%s", e.msg);
        CHECK(stat(at("hl/f"), &sb) == 0 && sb.st_uid == geteuid());
        CHECKF((sb.st_mode & 07777) == 04750, "own file: mode %o", (unsigned)(sb.st_mode & 07777));
    }
}

static void test_output_through_symlink_replaces_the_target(void)
{
    pt_error e = {0};
    CHECK(pt_mkdir_p(at("sl/sub"), &e) == PT_OK);
    CHECK(write_plain(at("sl/sub/real.txt"), "old") == 0);
    CHECK(chmod(at("sl/sub/real.txt"), 0640) == 0);
    CHECK(symlink("sub/real.txt", at("sl/link")) == 0);
    CHECKF(write_text(at("sl/link"), "new", &e) == PT_OK, "%s", e.msg);
    CHECK(is_type(at("sl/link"), S_IFLNK));
    const char *got = slurp(at("sl/sub/real.txt"));
    CHECK(got && !strcmp(got, "new"));
    struct stat sb;
    CHECK(stat(at("sl/sub/real.txt"), &sb) == 0 && (sb.st_mode & 07777) == 0640);
    CHECK(count_entries(at("sl/sub"), ".tmp.") == 0);
    /* A dangling link: its target is created, the link stays. */
    CHECK(symlink("sub/created.txt", at("sl/dangling")) == 0);
    CHECKF(write_text(at("sl/dangling"), "made", &e) == PT_OK, "%s", e.msg);
    CHECK(is_type(at("sl/dangling"), S_IFLNK));
    got = slurp(at("sl/sub/created.txt"));
    CHECK(got && !strcmp(got, "made"));
}

static void test_output_to_fifo_is_a_stream_and_never_blocks(void)
{
    pt_error e = {0};
    CHECK(pt_mkdir_p(at("ff"), &e) == PT_OK);
    CHECK(mkfifo(at("ff/pipe"), 0600) == 0);
    /* No reader: refused at once (the alarm in main catches a blocking open). */
    CHECK(write_text(at("ff/pipe"), "x", &e) == PT_ERR_IO);
    CHECKF(strstr(e.msg, "FIFO") && strstr(e.msg, "ff/pipe"), "%s", e.msg);
    CHECK(is_type(at("ff/pipe"), S_IFIFO));
    /* A reader: the data goes through the FIFO, which stays a FIFO. */
    int rd = open(at("ff/pipe"), O_RDONLY | O_NONBLOCK);
    CHECK(rd >= 0);
    CHECKF(write_text(at("ff/pipe"), "through", &e) == PT_OK, "%s", e.msg);
    char buf[32] = {0};
    CHECK(rd >= 0 && read(rd, buf, sizeof buf - 1) == 7 && !strcmp(buf, "through"));
    if (rd >= 0) close(rd);
    CHECK(is_type(at("ff/pipe"), S_IFIFO));
    CHECK(count_entries(at("ff"), ".tmp.") == 0);
    /* A writer that maps its output cannot use a FIFO. */
    pt_output o;
    CHECK(pt_output_open(&o, at("ff/pipe"), PT_OUTPUT_SEEKABLE, &e) == PT_ERR_IO);
    CHECKF(strstr(e.msg, "regular file"), "%s", e.msg);
    CHECK(is_type(at("ff/pipe"), S_IFIFO));
}

static void test_output_to_character_device_writes_in_place(void)
{
    pt_error e = {0};
    CHECK(pt_mkdir_p(at("dev"), &e) == PT_OK);
    /* A private /dev/null: a broken writer must never get to replace the real one. */
    const char *null = at("dev/null");
    if (mknod(null, S_IFCHR | 0666, makedev(1, 3)) != 0) {
        printf("skip test_output_to_character_device_writes_in_place: mknod: %s (needs root)\n", strerror(errno));
        return;
    }
    CHECKF(write_text(null, "discarded", &e) == PT_OK, "%s", e.msg);
    CHECK(is_type(null, S_IFCHR));
    pt_output o;
    CHECK(pt_output_open(&o, null, PT_OUTPUT_SEEKABLE, &e) == PT_ERR_IO);
    CHECKF(strstr(e.msg, "character device"), "%s", e.msg);
    CHECK(is_type(null, S_IFCHR));
}

static void test_output_refuses_directories_and_sockets(void)
{
    pt_error e = {0};
    CHECK(pt_mkdir_p(at("rd/dir"), &e) == PT_OK);
    CHECK(write_text(at("rd/dir"), "x", &e) == PT_ERR_IO);
    CHECKF(strstr(e.msg, "a directory"), "%s", e.msg);
    CHECK(is_type(at("rd/dir"), S_IFDIR));
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", at("rd/sock"));
    if (s >= 0 && strlen(at("rd/sock")) < sizeof sa.sun_path &&
        bind(s, (struct sockaddr *)&sa, sizeof sa) == 0) {
        CHECK(write_text(at("rd/sock"), "x", &e) == PT_ERR_IO);
        CHECKF(strstr(e.msg, "socket"), "%s", e.msg);
        CHECK(is_type(at("rd/sock"), S_IFSOCK));
    }
    if (s >= 0) close(s);
}

static void test_inputs_never_block_on_a_fifo(void)
{
    pt_error e = {0};
    CHECK(pt_mkdir_p(at("in"), &e) == PT_OK);
    CHECK(mkfifo(at("in/data"), 0600) == 0);
    void *data = NULL;
    size_t size = 0;
    CHECK(pt_read_file(at("in/data"), 1024, &data, &size, &e) == PT_ERR_IO);
    CHECKF(strstr(e.msg, "a FIFO, not a regular file") && strstr(e.msg, "in/data"), "%s", e.msg);
    int fd = -1;
    CHECK(pt_open_input(at("in/data"), PT_INPUT_DIR, "data set", &fd, &e) == PT_ERR_IO && fd < 0);
    CHECKF(strstr(e.msg, "data set") && strstr(e.msg, "not a directory"), "%s", e.msg);
    CHECKF(pt_open_input(at("in"), PT_INPUT_DIR, NULL, &fd, &e) == PT_OK && fd >= 0, "%s", e.msg);
    if (fd >= 0) close(fd);
    CHECK(pt_open_input(at("in"), PT_INPUT_FILE, NULL, &fd, &e) == PT_ERR_IO);
    CHECKF(strstr(e.msg, "a directory, not a regular file"), "%s", e.msg);
}

/* The temp files a killed writer left for a run's own files go; nothing else does. */
static void test_sweep_removes_only_dead_writers_temp_files(void)
{
    pt_error e = {0};
    CHECK(pt_mkdir_p(at("sw"), &e) == PT_OK);
    const char *const gone[] = {"sw/.metrics.csv.tmp.4242", "sw/.config.json.tmp.1"};
    const char *const kept[] = {"sw/metrics.csv", "sw/.metrics.csv.tmp.x1", "sw/.metrics.csv.tmp.", "sw/metrics.csv.tmp.7",
                                "sw/.other.tmp.7", "sw/.metrics.csv.old"};
    for (size_t i = 0; i < sizeof gone / sizeof *gone; i++) CHECK(write_plain(at(gone[i]), "x") == 0);
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) CHECK(write_plain(at(kept[i]), "x") == 0);
    CHECK(pt_mkdir_p(at("sw/.config.json.tmp.9"), &e) == PT_OK); /* not a regular file: not ours */
    const char *const names[] = {"metrics.csv", "config.json"};
    CHECKF(pt_output_sweep(at("sw"), names, 2, &e) == PT_OK, "%s", e.msg);
    for (size_t i = 0; i < sizeof gone / sizeof *gone; i++) CHECKF(!pt_path_exists(at(gone[i])), "%s", gone[i]);
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) CHECKF(pt_path_exists(at(kept[i])), "%s", kept[i]);
    CHECK(pt_path_exists(at("sw/.config.json.tmp.9")));
    CHECK(pt_output_sweep(at("sw-missing"), names, 2, &e) == PT_OK);
}

/* Appends whole lines, creating the file; anything but a regular file is refused at once. */
static void test_append_file(void)
{
    pt_error e = {0};
    CHECK(pt_append_file(at("ap.txt"), "a\n", 2, &e) == PT_OK);
    CHECK(pt_append_file(at("ap.txt"), "bc\n", 3, &e) == PT_OK);
    CHECK(slurp(at("ap.txt")) && strcmp(slurp(at("ap.txt")), "a\nbc\n") == 0);
    CHECK(mkfifo(at("ap.fifo"), 0600) == 0);
    CHECK(pt_append_file(at("ap.fifo"), "x", 1, &e) == PT_ERR_IO);
    CHECKF(strstr(e.msg, "ap.fifo") != NULL, "%s", e.msg);
}

int main(void)
{
    alarm(60); /* a blocking open must fail the test, not hang it */
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
    RUN(test_mkdir_p_made_undoes_only_its_own_directories);
    RUN(test_output_keeps_mode_and_owner_and_leaves_hard_links);
    RUN(test_output_through_symlink_replaces_the_target);
    RUN(test_output_to_fifo_is_a_stream_and_never_blocks);
    RUN(test_output_to_character_device_writes_in_place);
    RUN(test_output_refuses_directories_and_sockets);
    RUN(test_inputs_never_block_on_a_fifo);
    RUN(test_sweep_removes_only_dead_writers_temp_files);
    RUN(test_append_file);
    if (pt_t_fail == 0) pt_remove_tree(root, &e);
    TEST_EXIT();
}
