/* The packed cache: it holds exactly what decoding the files gives, and a truncated,
 * corrupted, half-written or other-source cache is refused with the file named, while the
 * automatic cache is rebuilt when its source changed; a pack stopped part way (Ctrl-C)
 * leaves no file at all. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "polytrain/dataset.h"
#include "data/filelist.h"
#include "data/pack.h"
#include "pt_test.h"

#include "image_fixture.h"

/* The entries of dir that do not start with a dot. */
static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n;
}

/* Packs the train split of a fresh tree into file; returns the filelist's fingerprint. */
static uint64_t pack_tree(const char *root, const char *file, int side)
{
    make_tiny(root, 3, 5, 1, 4);
    pt_filelist fl;
    pt_error err = {0};
    if (pt_filelist_tinyimagenet(root, PT_SPLIT_TRAIN, &fl, &err) != PT_OK) {
        CHECKF(0, "%s", err.msg);
        return 0;
    }
    pt_pack_options po;
    memset(&po, 0, sizeof po);
    po.channels = 3;
    po.height = po.width = side;
    po.threads = 2;
    pt_pack_report rep;
    CHECKF(pt_pack_write(&fl, file, &po, &rep, &err) == PT_OK, "%s", err.msg);
    CHECK(rep.packed == 15 && rep.skipped == 0 && rep.gray == 4);
    uint64_t fp = fl.fingerprint;
    pt_filelist_free(&fl);
    return fp;
}

static void test_cache_holds_what_decoding_gives(void)
{
    const char *root = tmp_path("pack-rt"), *file = tmp_path("pack-rt.ptpack");
    uint64_t fp = pack_tree(root, file, 48);
    pt_dataset packed, lazy;
    pt_pack_info info;
    pt_error err = {0};
    CHECKF(pt_pack_open(file, fp, 3, 48, 48, 0, &packed, &info, &err) == PT_OK, "%s", err.msg);
    pt_data_options o;
    memset(&o, 0, sizeof o);
    o.cache = PT_CACHE_OFF;
    o.height = o.width = 48;
    char spec[2100];
    snprintf(spec, sizeof spec, "tinyimagenet:%s", root);
    CHECKF(pt_dataset_open_ex(spec, 1, &o, &lazy, NULL, &err) == PT_OK, "%s", err.msg);
    CHECK(packed.count == lazy.count && packed.num_classes == 3 && info.gray == 4);
    uint8_t scratch[3 * 48 * 48];
    int same = 1;
    double mean0 = 0;
    for (int64_t i = 0; i < packed.count && i < lazy.count; i++) {
        const uint8_t *a, *b;
        pt_dataset_sample(&packed, i, NULL, &a, &err);
        CHECK(pt_dataset_sample(&lazy, i, scratch, &b, &err) == PT_OK);
        same &= memcmp(a, b, sizeof scratch) == 0 && packed.labels[i] == lazy.labels[i];
        for (int k = 0; k < 48 * 48; k++) mean0 += a[k];
    }
    CHECK(same);
    mean0 /= (double)packed.count * 48 * 48 * 255;
    CHECKF(fabs(mean0 - packed.mean[0]) < 1e-4, "mean %g vs %g", mean0, (double)packed.mean[0]);
    CHECK(strcmp(packed.class_names[0], "thing 0") == 0);
    pt_dataset_free(&packed);
    pt_dataset_free(&lazy);
}

static void test_truncated_or_corrupt_cache_is_refused_naming_it(void)
{
    const char *root = tmp_path("pack-bad"), *file = tmp_path("pack-bad.ptpack");
    uint64_t fp = pack_tree(root, file, 32);
    pt_dataset ds;
    pt_error err = {0};
    struct stat st;
    stat(file, &st);
    /* one flipped pixel byte */
    FILE *f = fopen(file, "r+b");
    fseek(f, (long)st.st_size - 100, SEEK_SET);
    int c = fgetc(f);
    fseek(f, (long)st.st_size - 100, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
    pt_status s = pt_pack_open(file, fp, 0, 0, 0, 0, &ds, NULL, &err);
    CHECKF(s == PT_ERR_FORMAT && strstr(err.msg, "checksum") && strstr(err.msg, file), "%d %s", s, err.msg);
    /* truncated */
    CHECK(truncate(file, st.st_size - 5000) == 0);
    s = pt_pack_open(file, fp, 0, 0, 0, 0, &ds, NULL, &err);
    CHECKF(s == PT_ERR_FORMAT && strstr(err.msg, "truncated") && strstr(err.msg, file), "%d %s", s, err.msg);
    CHECK(truncate(file, 10) == 0);
    s = pt_pack_open(file, fp, 0, 0, 0, 0, &ds, NULL, &err);
    CHECKF(s == PT_ERR_FORMAT, "%d %s", s, err.msg);
}

static void test_half_written_cache_is_never_valid(void)
{
    /* A writer killed before the end leaves FILE.tmp.PID: sized, header still zero. */
    const char *file = tmp_path("pack-half.ptpack.tmp.1");
    FILE *f = fopen(file, "wb");
    static uint8_t zeros[65536];
    fwrite(zeros, 1, sizeof zeros, f);
    fclose(f);
    pt_dataset ds;
    pt_error err = {0};
    pt_status s = pt_pack_open(file, 0, 0, 0, 0, 0, &ds, NULL, &err);
    CHECKF(s == PT_ERR_FORMAT && strstr(err.msg, "magic"), "%d %s", s, err.msg);
    /* and a successful pack leaves no temporary behind */
    const char *root = tmp_path("pack-clean"), *dir = tmp_path("pack-clean-out");
    rm_rf(dir);
    mkdirs(dir);
    char out[2100];
    snprintf(out, sizeof out, "%s/x.ptpack", dir);
    pack_tree(root, out, 16);
    const int n = count_files(dir);
    CHECKF(n == 1, "%d files in %s", n, dir);
}

/* Stops the pack at its user's count of images asked about (a Ctrl-C part way). */
static int cancel_after(void *user)
{
    int *left = user;
    return __atomic_sub_fetch(left, 1, __ATOMIC_SEQ_CST) < 0;
}

static void test_an_interrupted_pack_leaves_nothing(void)
{
    const char *root = tmp_path("pack-int"), *dir = tmp_path("pack-int-out");
    rm_rf(dir);
    mkdirs(dir);
    make_tiny(root, 3, 5, 1, 4);
    pt_filelist fl;
    pt_error err = {0};
    if (pt_filelist_tinyimagenet(root, PT_SPLIT_TRAIN, &fl, &err) != PT_OK) {
        CHECKF(0, "%s", err.msg);
        return;
    }
    char out[2100];
    snprintf(out, sizeof out, "%s/x.ptpack", dir);
    for (int threads = 1; threads <= 2; threads++) {
        int left = 6; /* of 15 images */
        pt_pack_options po;
        memset(&po, 0, sizeof po);
        po.channels = 3;
        po.height = po.width = 16;
        po.threads = threads;
        po.cancelled = cancel_after;
        po.user = &left;
        pt_pack_report rep;
        const pt_status s = pt_pack_write(&fl, out, &po, &rep, &err);
        CHECKF(s == PT_ERR_INTERRUPTED && strstr(err.msg, "interrupted") && strstr(err.msg, out),
               "%d threads: %d %s", threads, s, err.msg);
        const int n = count_files(dir);
        CHECKF(n == 0, "%d threads: %d files left in %s", threads, n, dir);
    }
    pt_filelist_free(&fl);
}

static void test_cache_from_another_source_is_refused(void)
{
    const char *root = tmp_path("pack-src"), *file = tmp_path("pack-src.ptpack");
    uint64_t fp = pack_tree(root, file, 16);
    pt_dataset ds;
    pt_error err = {0};
    pt_status s = pt_pack_open(file, fp ^ 1, 0, 0, 0, 0, &ds, NULL, &err);
    CHECKF(s == PT_ERR_MISMATCH && strstr(err.msg, "another source"), "%d %s", s, err.msg);
    s = pt_pack_open(file, fp, 3, 32, 32, 0, &ds, NULL, &err);
    CHECKF(s == PT_ERR_MISMATCH && strstr(err.msg, "3x16x16"), "%d %s", s, err.msg);
    /* pack:FILE takes the file as it is */
    char spec[2100];
    snprintf(spec, sizeof spec, "pack:%s", file);
    CHECKF(pt_dataset_open(spec, 1, 0, &ds, &err) == PT_OK, "%s", err.msg);
    CHECK(ds.count == 15 && ds.height == 16);
    pt_dataset_free(&ds);
    CHECK(pt_dataset_open(spec, 0, 0, &ds, &err) == PT_ERR_INVALID);
}

static void test_automatic_cache_is_rebuilt_when_the_source_changes(void)
{
    const char *root = tmp_path("pack-auto");
    make_tiny(root, 2, 3, 1, 0);
    pt_data_options o;
    memset(&o, 0, sizeof o);
    o.cache_dir = tmp_path("pack-auto-cache");
    rm_rf(o.cache_dir);
    char spec[2100];
    snprintf(spec, sizeof spec, "tinyimagenet:%s", root);
    pt_dataset ds;
    pt_data_report rep;
    pt_error err = {0};
    CHECK(pt_dataset_open_ex(spec, 1, &o, &ds, &rep, &err) == PT_OK && rep.cache_action == 2);
    pt_dataset_free(&ds);
    CHECK(pt_dataset_open_ex(spec, 1, &o, &ds, &rep, &err) == PT_OK && rep.cache_action == 1);
    pt_dataset_free(&ds);
    /* one more image in a class */
    char p[2048];
    snprintf(p, sizeof p, "%s/train/%s/images/extra.JPEG", root, wnid_of(1));
    write_jpeg(p, 1, 77, 0, 64);
    CHECKF(pt_dataset_open_ex(spec, 1, &o, &ds, &rep, &err) == PT_OK, "%s", err.msg);
    CHECKF(rep.cache_action == 3 && strstr(rep.rebuild_reason, "another source"), "%d %s", rep.cache_action,
           rep.rebuild_reason);
    CHECK(ds.count == 7);
    pt_dataset_free(&ds);
    /* a corrupted automatic cache is rebuilt too */
    CHECK(truncate(rep.cache_path, 100) == 0);
    CHECKF(pt_dataset_open_ex(spec, 1, &o, &ds, &rep, &err) == PT_OK, "%s", err.msg);
    CHECK(rep.cache_action == 3 && ds.count == 7);
    pt_dataset_free(&ds);
}

int main(void)
{
    RUN(test_cache_holds_what_decoding_gives);
    RUN(test_truncated_or_corrupt_cache_is_refused_naming_it);
    RUN(test_half_written_cache_is_never_valid);
    RUN(test_an_interrupted_pack_leaves_nothing);
    RUN(test_cache_from_another_source_is_refused);
    RUN(test_automatic_cache_is_rebuilt_when_the_source_changes);
    TEST_EXIT();
}
