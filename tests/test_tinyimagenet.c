/* The TinyImageNet reader on a generated tree of real JPEG files (some grayscale): class
 * order from wnids.txt, names from words.txt, val labels from val_annotations.txt, every
 * malformed layout refused with the file named, and a small net trained on it to >= 90%
 * validation accuracy through the packed cache and the loader. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "polytrain/trainer.h"
#include "polytrain/dataset.h"
#include "data/filelist.h"
#include "polytrain/loader.h"
#include "polytrain/source.h"
#include "pt_test.h"

#include "image_fixture.h"

static pt_data_options cached_opts(void)
{
    pt_data_options o;
    memset(&o, 0, sizeof o);
    o.cache_dir = tmp_path("tin-cache");
    o.threads = 2;
    return o;
}

static void test_class_order_follows_wnids_and_names_come_from_words(void)
{
    const char *root = tmp_path("tin-order");
    make_tiny(root, 4, 3, 2, 0);
    pt_filelist fl;
    pt_error err = {0};
    CHECKF(pt_filelist_tinyimagenet(root, PT_SPLIT_TRAIN, &fl, &err) == PT_OK, "%s", err.msg);
    CHECK(fl.num_classes == 4 && fl.count == 12);
    for (int k = 0; k < fl.num_classes && k < 4; k++) {
        char want[32];
        snprintf(want, sizeof want, "thing %d", k);
        CHECKF(strcmp(fl.class_ids[k], wnid_of(k)) == 0, "class %d is %s", k, fl.class_ids[k]);
        CHECKF(strcmp(fl.class_names[k], want) == 0, "class %d named '%s'", k, fl.class_names[k]);
    }
    for (int64_t i = 0; i < fl.count; i++)
        CHECKF(strstr(fl.paths[i], wnid_of(fl.labels[i])) != NULL, "%s has label %d", fl.paths[i], fl.labels[i]);
    pt_filelist_free(&fl);
}

static void test_val_labels_come_from_val_annotations(void)
{
    const char *root = tmp_path("tin-val");
    make_tiny(root, 5, 2, 3, 0);
    pt_filelist fl;
    pt_error err = {0};
    CHECKF(pt_filelist_tinyimagenet(root, PT_SPLIT_VAL, &fl, &err) == PT_OK, "%s", err.msg);
    CHECK(fl.count == 15);
    for (int64_t i = 0; i < fl.count; i++) {
        char want[64];
        snprintf(want, sizeof want, "/val_%lld.JPEG", (long long)i);
        CHECKF(strstr(fl.paths[i], want) != NULL, "entry %lld is %s", (long long)i, fl.paths[i]);
        CHECKF(fl.labels[i] == (int)((i * 7 + 3) % 5), "val_%lld has label %d", (long long)i, fl.labels[i]);
    }
    pt_filelist_free(&fl);
    /* The test split is listed unlabeled. */
    CHECKF(pt_filelist_tinyimagenet(root, PT_SPLIT_TEST, &fl, &err) == PT_OK, "%s", err.msg);
    CHECK(fl.count == 1 && fl.labels[0] == -1);
    pt_filelist_free(&fl);
}

static void expect_error(const char *root, int split, pt_status want, const char *needle)
{
    pt_filelist fl;
    pt_error err = {0};
    pt_status s = pt_filelist_tinyimagenet(root, split, &fl, &err);
    CHECKF(s == want, "status %d (%s), want %d", s, err.msg, want);
    CHECKF(strstr(err.msg, needle) != NULL, "message '%s' lacks '%s'", err.msg, needle);
    if (s == PT_OK) pt_filelist_free(&fl);
}

static void test_missing_wnids_is_an_error_naming_it(void)
{
    const char *root = tmp_path("tin-nownids");
    make_tiny(root, 2, 1, 1, 0);
    char p[2048];
    snprintf(p, sizeof p, "%s/wnids.txt", root);
    unlink(p);
    expect_error(root, PT_SPLIT_TRAIN, PT_ERR_IO, "wnids.txt");
}

static void test_missing_val_annotations_is_an_error_naming_it(void)
{
    const char *root = tmp_path("tin-noann");
    make_tiny(root, 2, 1, 1, 0);
    char p[2048];
    snprintf(p, sizeof p, "%s/val/val_annotations.txt", root);
    unlink(p);
    expect_error(root, PT_SPLIT_VAL, PT_ERR_IO, "val_annotations.txt");
}

static void test_val_entry_with_unknown_class_or_missing_file_is_refused(void)
{
    const char *root = tmp_path("tin-badval");
    make_tiny(root, 2, 1, 1, 0);
    char p[2048];
    snprintf(p, sizeof p, "%s/val/val_annotations.txt", root);
    FILE *f = fopen(p, "a");
    fprintf(f, "val_0.JPEG\tn09999999\t0\t0\t1\t1\n");
    fclose(f);
    expect_error(root, PT_SPLIT_VAL, PT_ERR_FORMAT, "n09999999");
    expect_error(root, PT_SPLIT_VAL, PT_ERR_FORMAT, "line 3");
    f = fopen(p, "w");
    fprintf(f, "val_0.JPEG\t%s\t0\t0\t1\t1\nval_77.JPEG\t%s\t0\t0\t1\t1\n", wnid_of(0), wnid_of(1));
    fclose(f);
    expect_error(root, PT_SPLIT_VAL, PT_ERR_FORMAT, "val_77.JPEG");
}

static void test_empty_class_folder_is_refused(void)
{
    const char *root = tmp_path("tin-empty");
    make_tiny(root, 3, 2, 1, 0);
    char p[2048];
    snprintf(p, sizeof p, "%s/train/%s/images", root, wnid_of(1));
    rm_rf(p);
    mkdirs(p);
    expect_error(root, PT_SPLIT_TRAIN, PT_ERR_FORMAT, wnid_of(1));
    expect_error(root, PT_SPLIT_TRAIN, PT_ERR_FORMAT, "no images");
}

static void test_corrupt_jpeg_is_named_or_skipped_and_counted(void)
{
    const char *root = tmp_path("tin-corrupt");
    make_tiny(root, 2, 4, 1, 0);
    /* truncate one file to half, overwrite another's entropy data with garbage */
    char bad1[2048], bad2[2048];
    snprintf(bad1, sizeof bad1, "%s/train/%s/images/%s_2.JPEG", root, wnid_of(0), wnid_of(0));
    snprintf(bad2, sizeof bad2, "%s/train/%s/images/%s_1.JPEG", root, wnid_of(1), wnid_of(1));
    struct stat st;
    stat(bad1, &st);
    CHECK(truncate(bad1, st.st_size / 2) == 0);
    write_bytes(bad2, "\xff\xd8\xff\xe0garbage", 11);
    pt_data_options o = cached_opts();
    o.cache_dir = tmp_path("tin-corrupt-cache");
    rm_rf(o.cache_dir);
    pt_dataset ds;
    pt_data_report rep;
    pt_error err = {0};
    char spec[2100];
    snprintf(spec, sizeof spec, "tinyimagenet:%s", root);
    pt_status s = pt_dataset_open_ex(spec, 1, &o, &ds, &rep, &err);
    CHECKF(s == PT_ERR_FORMAT, "status %d: %s", s, err.msg);
    CHECKF(strstr(err.msg, "_2.JPEG") || strstr(err.msg, "_1.JPEG"), "message names no file: %s", err.msg);
    /* Nothing half-written was left as a cache. */
    char cache[4096];
    CHECK(pt_dataset_cache_path("tinyimagenet", root, PT_SPLIT_TRAIN, &o, 3, 64, 64, cache, sizeof cache, &err) == PT_OK);
    CHECK(access(cache, F_OK) != 0);
    o.skip_bad = 1;
    s = pt_dataset_open_ex(spec, 1, &o, &ds, &rep, &err);
    CHECKF(s == PT_OK, "%s", err.msg);
    if (s == PT_OK) {
        CHECK(ds.count == 6);
        CHECK(rep.skipped == 2);
        pt_dataset_free(&ds);
    }
    /* Decoding on the fly, a bad image is an error naming it. */
    o.skip_bad = 0;
    o.cache = PT_CACHE_OFF;
    CHECK(pt_dataset_open_ex(spec, 1, &o, &ds, &rep, &err) == PT_OK);
    uint8_t px[3 * 64 * 64];
    const uint8_t *pp;
    s = pt_dataset_sample(&ds, 2, px, &pp, &err);
    CHECKF(s == PT_ERR_FORMAT && strstr(err.msg, "_2.JPEG"), "status %d: %s", s, err.msg);
    CHECK(pt_dataset_sample(&ds, 0, px, &pp, &err) == PT_OK);
    pt_dataset_free(&ds);
}

/* A tiny conv net: enough for colour + stripe classes. */
static pt_net *tiny_net(int C, int H, int W, int K)
{
    pt_net *net = pt_net_new(C, H, W, K);
    pt_error err = {0};
    if (!net) return NULL;
    int x = pt_net_input(net);
    x = pt_net_conv2d(net, x, "conv1", 16, 3, 2, 1, 0);
    x = pt_net_batchnorm2d(net, x, "bn1");
    x = pt_net_relu(net, x);
    x = pt_net_conv2d(net, x, "conv2", 16, 3, 2, 1, 0);
    x = pt_net_batchnorm2d(net, x, "bn2");
    x = pt_net_relu(net, x);
    x = pt_net_global_avgpool(net, x);
    x = pt_net_linear(net, x, "fc", K, 1);
    if (pt_net_finish(net, x, &err) != PT_OK) {
        fprintf(stderr, "tiny_net: %s\n", err.msg);
        pt_net_free(net);
        return NULL;
    }
    return net;
}

static void test_trains_to_90_percent_on_generated_tinyimagenet(void)
{
    const char *root = tmp_path("tin-train");
    enum { K = 5 };
    int gray = make_tiny(root, K, 60, 12, 9);
    char spec[2100];
    snprintf(spec, sizeof spec, "tinyimagenet:%s", root);
    pt_data_options o = cached_opts();
    o.cache_dir = tmp_path("tin-train-cache");
    o.height = o.width = 32; /* resized from 64x64 */
    rm_rf(o.cache_dir);
    pt_dataset tr, va;
    pt_data_report rt, rv;
    pt_error err = {0};
    CHECKF(pt_dataset_open_ex(spec, 1, &o, &tr, &rt, &err) == PT_OK, "%s", err.msg);
    CHECKF(pt_dataset_open_ex(spec, 0, &o, &va, &rv, &err) == PT_OK, "%s", err.msg);
    CHECK(tr.count == K * 60 && va.count == K * 12 && tr.num_classes == K);
    CHECKF(rt.gray == gray && gray > 0, "gray %lld, made %d", (long long)rt.gray, gray);
    CHECK(rt.cache_action == 2);
    {   /* a second open reuses the cache */
        pt_dataset again;
        pt_data_report r2;
        CHECKF(pt_dataset_open_ex(spec, 1, &o, &again, &r2, &err) == PT_OK, "%s", err.msg);
        CHECK(r2.cache_action == 1 && r2.gray == rt.gray && again.count == tr.count);
        pt_dataset_free(&again);
    }
    memcpy(va.mean, tr.mean, sizeof va.mean);
    memcpy(va.std, tr.std, sizeof va.std);
    pt_net *net = tiny_net(3, 32, 32, K);
    pt_device *dev = NULL;
    pt_replica *rep = NULL;
    CHECK(net != NULL);
    CHECKF(pt_device_open("cpu", 0, NULL, &dev, &err) == PT_OK, "%s", err.msg);
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
    oc.momentum = 0.9f;
    CHECKF(pt_replica_create(net, dev, 32, &oc, 3, &rep, &err) == PT_OK, "%s", err.msg);
    pt_loader tl, vl;
    pt_loader_options lo;
    memset(&lo, 0, sizeof lo);
    lo.batch_size = 32;
    lo.shuffle = 1;
    lo.seed = 5;
    lo.workers = 2;
    CHECK(pt_augment_parse("flip,crop=2", 32, &lo, &err) == PT_OK);
    CHECKF(pt_loader_init(&tl, &tr, &lo, &err) == PT_OK, "%s", err.msg);
    pt_loader_options vo;
    memset(&vo, 0, sizeof vo);
    vo.batch_size = 32;
    vo.prefetch = 1;
    CHECKF(pt_loader_init(&vl, &va, &vo, &err) == PT_OK, "%s", err.msg);
    pt_model_meta meta;
    memset(&meta, 0, sizeof meta);
    snprintf(meta.model, sizeof meta.model, "tiny");
    meta.in_channels = 3;
    meta.height = meta.width = 32;
    meta.num_classes = K;
    memcpy(meta.mean, tr.mean, sizeof meta.mean);
    memcpy(meta.std, tr.std, sizeof meta.std);
    meta.class_names = tr.class_names;
    pt_train_options to;
    memset(&to, 0, sizeof to);
    to.epochs = 6;
    to.batch_per_device = 32;
    to.lr = 0.05;
    to.schedule = PT_SCHED_ONECYCLE;
    to.cycle_momentum = 1;
    to.seed = 5;
    to.out_dir = tmp_path("tin-train-run");
    to.config_json = "{}";
    pt_trainer *t = NULL;
    double top1 = 0;
    if (rep && pt_trainer_create(&rep, 1, &meta, pt_loader_source(&tl), pt_loader_source(&vl), &to, &t, &err) == PT_OK) {
        pt_train_callbacks cb;
        memset(&cb, 0, sizeof cb);
        CHECKF(pt_trainer_run(t, &cb, &err) == PT_OK, "%s", err.msg);
        pt_eval_result res;
        CHECKF(pt_evaluate(rep, pt_loader_source(&vl), &res, NULL, &err) == PT_OK, "%s", err.msg);
        top1 = res.top1;
        printf("  val top1 %.1f%% on %lld images (%lld gray in train), data wait %.2f s\n", 100 * top1,
               (long long)res.count, (long long)rt.gray, pt_loader_wait_seconds(&tl));
    } else {
        CHECKF(0, "trainer: %s", err.msg);
    }
    CHECKF(top1 >= 0.90, "val top1 %.3f < 0.90", top1);
    pt_trainer_free(t);
    pt_loader_free(&tl);
    pt_loader_free(&vl);
    pt_replica_free(rep);
    pt_device_close(dev);
    pt_net_free(net);
    pt_dataset_free(&tr);
    pt_dataset_free(&va);
}

int main(void)
{
    RUN(test_class_order_follows_wnids_and_names_come_from_words);
    RUN(test_val_labels_come_from_val_annotations);
    RUN(test_missing_wnids_is_an_error_naming_it);
    RUN(test_missing_val_annotations_is_an_error_naming_it);
    RUN(test_val_entry_with_unknown_class_or_missing_file_is_refused);
    RUN(test_empty_class_folder_is_refused);
    RUN(test_corrupt_jpeg_is_named_or_skipped_and_counted);
    RUN(test_trains_to_90_percent_on_generated_tinyimagenet);
    TEST_EXIT();
}
