/* The generic image folder: classes are sorted sub-folders, JPEG and PNG both read, the
 * validation split is a seeded, order-independent fraction of every class, and an empty
 * class folder is refused. */
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "polytrain/dataset.h"
#include "data/filelist.h"
#include "pt_test.h"

#include "image_fixture.h"

static void write_png(const char *path, int c, uint32_t seed, int side)
{
    uint8_t rgb[128 * 128 * 3];
    make_pixels(c, seed, rgb, side);
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)side;
    img.height = (png_uint_32)side;
    img.format = PNG_FORMAT_RGB;
    png_image_write_to_file(&img, path, 0, rgb, 0, NULL);
}

/* root/<zebra|apple|mango>/: 10 images each, half PNG, half JPEG, 40x40. */
static void make_folder(const char *root)
{
    rm_rf(root);
    const char *cls[3] = {"zebra", "apple", "mango"};
    char p[2048];
    for (int k = 0; k < 3; k++) {
        snprintf(p, sizeof p, "%s/%s", root, cls[k]);
        mkdirs(p);
        for (int i = 0; i < 10; i++) {
            snprintf(p, sizeof p, "%s/%s/img%02d.%s", root, cls[k], i, i % 2 ? "png" : "jpg");
            if (i % 2) write_png(p, k, (uint32_t)(k * 100 + i), 40);
            else write_jpeg(p, k, (uint32_t)(k * 100 + i), 0, 40);
        }
        snprintf(p, sizeof p, "%s/%s/notes.txt", root, cls[k]);
        write_bytes(p, "x", 1);
    }
}

static void test_classes_are_sorted_and_splits_partition_each_class(void)
{
    const char *root = tmp_path("folder-split");
    make_folder(root);
    pt_filelist tr, va;
    pt_error err = {0};
    CHECKF(pt_filelist_folder(root, PT_SPLIT_TRAIN, 0.2, 9, &tr, &err) == PT_OK, "%s", err.msg);
    CHECKF(pt_filelist_folder(root, PT_SPLIT_VAL, 0.2, 9, &va, &err) == PT_OK, "%s", err.msg);
    CHECK(tr.num_classes == 3 && strcmp(tr.class_names[0], "apple") == 0 && strcmp(tr.class_names[2], "zebra") == 0);
    CHECK(tr.count == 24 && va.count == 6);
    int per[3] = {0};
    for (int64_t i = 0; i < va.count; i++) {
        per[va.labels[i]]++;
        for (int64_t j = 0; j < tr.count; j++) CHECK(strcmp(va.paths[i], tr.paths[j]) != 0);
    }
    CHECK(per[0] == 2 && per[1] == 2 && per[2] == 2);
    /* another seed, another choice; same seed, same choice */
    pt_filelist v2, v3;
    CHECK(pt_filelist_folder(root, PT_SPLIT_VAL, 0.2, 10, &v2, &err) == PT_OK);
    CHECK(pt_filelist_folder(root, PT_SPLIT_VAL, 0.2, 9, &v3, &err) == PT_OK);
    int diff = 0, same = 1;
    for (int64_t i = 0; i < va.count; i++) {
        diff |= strcmp(va.paths[i], v2.paths[i]) != 0;
        same &= strcmp(va.paths[i], v3.paths[i]) == 0;
    }
    CHECK(diff && same && va.fingerprint == v3.fingerprint && va.fingerprint != v2.fingerprint);
    pt_filelist_free(&tr);
    pt_filelist_free(&va);
    pt_filelist_free(&v2);
    pt_filelist_free(&v3);
}

static void test_png_and_jpeg_decode_at_the_first_images_size(void)
{
    const char *root = tmp_path("folder-open");
    make_folder(root);
    pt_data_options o;
    memset(&o, 0, sizeof o);
    o.cache_dir = tmp_path("folder-cache");
    o.val_split = 0.3;
    rm_rf(o.cache_dir);
    char spec[2100];
    snprintf(spec, sizeof spec, "folder:%s", root);
    pt_dataset tr, va;
    pt_error err = {0};
    CHECKF(pt_dataset_open_ex(spec, 1, &o, &tr, NULL, &err) == PT_OK, "%s", err.msg);
    CHECKF(pt_dataset_open_ex(spec, 0, &o, &va, NULL, &err) == PT_OK, "%s", err.msg);
    CHECK(tr.height == 40 && tr.width == 40 && va.height == 40 && tr.channels == 3);
    CHECK(tr.count == 21 && va.count == 9);
    pt_dataset_free(&tr);
    pt_dataset_free(&va);
    /* resizing to another size works for both formats */
    o.height = o.width = 24;
    o.cache = PT_CACHE_OFF;
    CHECKF(pt_dataset_open_ex(spec, 1, &o, &tr, NULL, &err) == PT_OK, "%s", err.msg);
    uint8_t px[3 * 24 * 24];
    const uint8_t *pp;
    for (int64_t i = 0; i < tr.count; i++) CHECKF(pt_dataset_sample(&tr, i, px, &pp, &err) == PT_OK, "%s", err.msg);
    pt_dataset_free(&tr);
}

static void test_empty_class_folder_is_refused(void)
{
    const char *root = tmp_path("folder-empty");
    make_folder(root);
    char p[2048];
    snprintf(p, sizeof p, "%s/empty", root);
    mkdirs(p);
    pt_filelist fl;
    pt_error err = {0};
    pt_status s = pt_filelist_folder(root, PT_SPLIT_TRAIN, 0.1, 1, &fl, &err);
    CHECKF(s == PT_ERR_FORMAT && strstr(err.msg, "/empty") && strstr(err.msg, "no images"), "%d %s", s, err.msg);
    CHECK(pt_filelist_folder(root, PT_SPLIT_TRAIN, 1.5, 1, &fl, &err) == PT_ERR_INVALID);
}

int main(void)
{
    (void)make_tiny;
    RUN(test_classes_are_sorted_and_splits_partition_each_class);
    RUN(test_png_and_jpeg_decode_at_the_first_images_size);
    RUN(test_empty_class_folder_is_refused);
    TEST_EXIT();
}
