/* core/dircommit: a directory commit replaces the whole directory or nothing; what a crash
 * at any point leaves is read as the last complete state by readers, who change nothing, and
 * settled only by the writer's recover; a user's own names (X.old) are never touched; a
 * reader holding files open does not disturb a commit; the run lock admits one writer. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/dircommit.h"
#include "core/fileio.h"
#include "core/runlock.h"
#include "pt_test.h"
#include "scratch_files.h"

/* A complete directory of version `version`: both files hold the text. */
static void make_ckpt(const char *dir, const char *version)
{
    pt_error e = {0};
    char p[1100];
    CHECKF(pt_mkdir_p(dir, &e) == PT_OK, "%s", e.msg);
    snprintf(p, sizeof p, "%s/optimizer.safetensors", dir);
    CHECK(write_plain(p, version) == 0);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    CHECK(write_plain(p, version) == 0);
}

static int ckpt_is(const char *dir, const char *version)
{
    char p[1100];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    const char *m = slurp(p);
    if (!m || strcmp(m, version) != 0) return 0;
    snprintf(p, sizeof p, "%s/optimizer.safetensors", dir);
    const char *o = slurp(p);
    return o && strcmp(o, version) == 0;
}

#define MARK "model.safetensors"

static void test_commit_first_and_replacing_leaves_nothing_beside(void)
{
    pt_error e = {0};
    char slot[1200];
    CHECK(pt_dir_slot_path(at("c1/last/"), PT_DIR_NEW, slot, sizeof slot, &e) == PT_OK);
    CHECKF(strcmp(slot, at("c1/.last.polytrain-new")) == 0, "%s", slot);
    make_ckpt(at("c1/.last.polytrain-new"), "v1");
    CHECKF(pt_dir_commit(at("c1/.last.polytrain-new"), at("c1/last"), &e) == PT_OK, "%s", e.msg);
    CHECK(ckpt_is(at("c1/last"), "v1"));
    make_ckpt(at("c1/.last.polytrain-new"), "v2");
    CHECKF(pt_dir_commit(at("c1/.last.polytrain-new"), at("c1/last/"), &e) == PT_OK, "%s", e.msg);
    CHECK(ckpt_is(at("c1/last"), "v2"));
    CHECK(!pt_path_exists(at("c1/.last.polytrain-new")) && !pt_path_exists(at("c1/.last.polytrain-old")));
    CHECK(pt_dir_commit(at("c1/.missing"), at("c1/last"), &e) == PT_ERR_IO);
    CHECKF(strstr(e.msg, "is not a directory") != NULL, "%s", e.msg);
    CHECK(ckpt_is(at("c1/last"), "v2"));
}

/* A reader that opened a file before the commit keeps reading the old content; the commit
 * does not fail because of it (with an atomic exchange, final_dir never disappears). */
static void test_commit_with_a_reader_holding_files_open(void)
{
    pt_error e = {0};
    make_ckpt(at("c5/last"), "v1");
    int fd = open(at("c5/last/model.safetensors"), O_RDONLY);
    CHECK(fd >= 0);
    make_ckpt(at("c5/.last.polytrain-new"), "v2");
    CHECKF(pt_dir_commit(at("c5/.last.polytrain-new"), at("c5/last"), &e) == PT_OK, "%s", e.msg);
    CHECK(ckpt_is(at("c5/last"), "v2"));
    char buf[8] = {0};
    CHECK(read(fd, buf, sizeof buf - 1) == 2 && strcmp(buf, "v1") == 0);
    close(fd);
}

/* Crash while writing NEW: final intact; readers ignore NEW; recover removes it. */
static void test_crash_while_writing(void)
{
    pt_error e = {0};
    char r[1200];
    make_ckpt(at("c2/last"), "v1");
    CHECK(pt_mkdir_p(at("c2/.last.polytrain-new"), &e) == PT_OK);
    CHECK(write_plain(at("c2/.last.polytrain-new/optimizer.safetensors"), "v2-partial") == 0);
    CHECK(pt_dir_resolve(at("c2/last"), MARK, r, sizeof r) == 0 && strcmp(r, at("c2/last")) == 0);
    CHECK(pt_path_exists(at("c2/.last.polytrain-new")));
    CHECKF(pt_dir_recover(at("c2/last"), MARK, &e) == PT_OK, "%s", e.msg);
    CHECK(ckpt_is(at("c2/last"), "v1") && !pt_path_exists(at("c2/.last.polytrain-new")));
}

/* Crash between the fallback's renames: final missing, OLD complete. A reader resolves to OLD
 * and changes nothing, even on a read-only directory; the writer's recover renames it back. */
static void test_crash_between_renames(void)
{
    pt_error e = {0};
    char r[1200];
    make_ckpt(at("c3/.last.polytrain-old"), "v1");
    make_ckpt(at("c3/.last.polytrain-new"), "v2");
    CHECK(chmod(at("c3"), 0555) == 0);
    CHECK(pt_dir_resolve(at("c3/last"), MARK, r, sizeof r) == 1);
    CHECKF(strcmp(r, at("c3/.last.polytrain-old")) == 0, "%s", r);
    CHECK(ckpt_is(r, "v1") && !pt_path_exists(at("c3/last")));
    CHECK(chmod(at("c3"), 0755) == 0);
    CHECKF(pt_dir_recover(at("c3/last"), MARK, &e) == PT_OK, "%s", e.msg);
    CHECK(ckpt_is(at("c3/last"), "v1"));
    CHECK(!pt_path_exists(at("c3/.last.polytrain-old")) && !pt_path_exists(at("c3/.last.polytrain-new")));
}

/* After the exchange or the second rename: OLD is garbage (possibly half removed). */
static void test_crash_while_removing_old(void)
{
    pt_error e = {0};
    make_ckpt(at("c4/last"), "v2");
    make_ckpt(at("c4/.last.polytrain-old"), "v1");
    CHECKF(pt_dir_recover(at("c4/last"), MARK, &e) == PT_OK, "%s", e.msg);
    CHECK(ckpt_is(at("c4/last"), "v2") && !pt_path_exists(at("c4/.last.polytrain-old")));
    /* half removed, the marker already gone: beside a complete last/ still garbage, removed
     * (as the next commit would) */
    CHECK(pt_mkdir_p(at("c4/.last.polytrain-old"), &e) == PT_OK);
    CHECK(write_plain(at("c4/.last.polytrain-old/optimizer.safetensors"), "v1") == 0);
    CHECKF(pt_dir_recover(at("c4/last"), MARK, &e) == PT_OK, "%s", e.msg);
    CHECK(ckpt_is(at("c4/last"), "v2") && !pt_path_exists(at("c4/.last.polytrain-old")));
    /* and in the way of a commit: removed by it */
    CHECK(pt_mkdir_p(at("c4/.last.polytrain-old"), &e) == PT_OK);
    CHECK(write_plain(at("c4/.last.polytrain-old/optimizer.safetensors"), "v1") == 0);
    make_ckpt(at("c4/.last.polytrain-new"), "v3");
    CHECKF(pt_dir_commit(at("c4/.last.polytrain-new"), at("c4/last"), &e) == PT_OK, "%s", e.msg);
    CHECK(ckpt_is(at("c4/last"), "v3") && !pt_path_exists(at("c4/.last.polytrain-old")));
    /* nothing at all: not an error, nothing created */
    CHECKF(pt_dir_recover(at("c4/none"), MARK, &e) == PT_OK, "%s", e.msg);
    CHECK(!pt_path_exists(at("c4/none")));
}

/* A user's last.old / last.tmp beside last: no reader or writer ever moves or removes them. */
static void test_user_names_are_never_touched(void)
{
    pt_error e = {0};
    char r[1200];
    make_ckpt(at("c6/last.old"), "backup");
    make_ckpt(at("c6/last.tmp"), "mine");
    CHECK(pt_dir_resolve(at("c6/last"), MARK, r, sizeof r) == 0);
    CHECKF(pt_dir_recover(at("c6/last"), MARK, &e) == PT_OK, "%s", e.msg);
    CHECK(!pt_path_exists(at("c6/last")));
    make_ckpt(at("c6/.last.polytrain-new"), "v1");
    CHECKF(pt_dir_commit(at("c6/.last.polytrain-new"), at("c6/last"), &e) == PT_OK, "%s", e.msg);
    make_ckpt(at("c6/.last.polytrain-new"), "v2");
    CHECKF(pt_dir_commit(at("c6/.last.polytrain-new"), at("c6/last"), &e) == PT_OK, "%s", e.msg);
    CHECK(ckpt_is(at("c6/last"), "v2") && ckpt_is(at("c6/last.old"), "backup") && ckpt_is(at("c6/last.tmp"), "mine"));
}

/* Staged: NEW -> PENDING survives, and a later commit installs it. */
static void test_stage_then_install(void)
{
    pt_error e = {0};
    char pending[1200];
    make_ckpt(at("c7/best"), "v1");
    make_ckpt(at("c7/.best.polytrain-new"), "v2");
    CHECKF(pt_dir_stage(at("c7/best"), &e) == PT_OK, "%s", e.msg);
    CHECK(pt_dir_slot_path(at("c7/best"), PT_DIR_PENDING, pending, sizeof pending, &e) == PT_OK);
    CHECK(ckpt_is(pending, "v2") && ckpt_is(at("c7/best"), "v1"));
    CHECKF(pt_dir_recover(at("c7/best"), MARK, &e) == PT_OK, "%s", e.msg); /* leaves PENDING */
    CHECK(ckpt_is(pending, "v2"));
    CHECKF(pt_dir_commit(pending, at("c7/best"), &e) == PT_OK, "%s", e.msg);
    CHECK(ckpt_is(at("c7/best"), "v2") && !pt_path_exists(pending));
}

/* The run lock: a second process is refused with the holder's pid; the holder's own second
 * acquisition nests; the lock is gone when the holder exits. */
static void test_run_lock(void)
{
    pt_error e = {0};
    CHECK(pt_mkdir_p(at("run"), &e) == PT_OK);
    pt_run_lock *a = NULL, *b = NULL;
    CHECKF(pt_run_lock_acquire(at("run"), "test holder", &a, &e) == PT_OK, "%s", e.msg);
    CHECKF(pt_run_lock_acquire(at("run"), "test holder", &b, &e) == PT_OK, "%s", e.msg);
    CHECK(a == b);
    char pid[32];
    snprintf(pid, sizeof pid, "pid %ld on host", (long)getpid());
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t child = fork();
    if (child == 0) {
        pt_run_lock *c = NULL;
        pt_error ce = {0};
        int refused = pt_run_lock_acquire(at("run"), "child", &c, &ce) != PT_OK;
        int named = refused && strstr(ce.msg, pid) && strstr(ce.msg, "(test holder)") && strstr(ce.msg, "in use by");
        char ok = named ? 'y' : 'n';
        if (write(fds[1], &ok, 1) != 1) _exit(2);
        _exit(0);
    }
    char got = 0;
    CHECK(read(fds[0], &got, 1) == 1 && got == 'y');
    waitpid(child, NULL, 0);
    pt_run_lock_release(b);
    child = fork();
    if (child == 0) { /* still held: one reference left */
        pt_run_lock *c = NULL;
        pt_error ce = {0};
        _exit(pt_run_lock_acquire(at("run"), "child", &c, &ce) != PT_OK ? 0 : 1);
    }
    int status = 0;
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    pt_run_lock_release(a);
    child = fork();
    if (child == 0) {
        pt_run_lock *c = NULL;
        pt_error ce = {0};
        _exit(pt_run_lock_acquire(at("run"), "child", &c, &ce) == PT_OK ? 0 : 1);
    }
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    const char *base = getenv("PT_TEST_TMP");
    if (!base || !base[0]) base = "/tmp";
    snprintf(root, sizeof root, "%s/test_dircommit.%ld", base, (long)getpid());
    pt_error e = {0};
    if (pt_remove_tree(root, &e) != PT_OK || pt_mkdir_p(root, &e) != PT_OK) {
        fprintf(stderr, "cannot set up %s: %s\n", root, e.msg);
        return 1;
    }
    RUN(test_commit_first_and_replacing_leaves_nothing_beside);
    RUN(test_commit_with_a_reader_holding_files_open);
    RUN(test_crash_while_writing);
    RUN(test_crash_between_renames);
    RUN(test_crash_while_removing_old);
    RUN(test_user_names_are_never_touched);
    RUN(test_stage_then_install);
    RUN(test_run_lock);
    if (pt_t_fail == 0) pt_remove_tree(root, &e);
    TEST_EXIT();
}
