/* libFuzzer harness: the TinyImageNet annotation files (pt_filelist_tinyimagenet:
 * wnids.txt, words.txt and val/val_annotations.txt). The input holds the three texts
 * separated by NUL bytes (fewer parts: the later files are absent); they are written into
 * a scratch dataset tree made once, whose train/ and val/ folders hold a few (empty) image
 * files for the classes n01443537, n01629819 and n01641577 (that one without images), and
 * every split is listed. */
#include "fuzz_util.h"

#include "data/filelist.h"

static char root[600];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *scratch = fuzz_scratch_dir();
    fuzz_mkdir(scratch, "tin");
    snprintf(root, sizeof root, "%s/tin", scratch);
    static const char *const dirs[] = {"train", "train/n01443537", "train/n01443537/images", "train/n01629819",
                                       "train/n01641577", "train/n01641577/images", "val", "val/images",
                                       "test", "test/images"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) fuzz_mkdir(root, dirs[i]);
    static const char *const files[] = {"train/n01443537/images/n01443537_0.JPEG",
                                        "train/n01443537/images/n01443537_1.jpeg",
                                        "train/n01629819/n01629819_0.png", "val/images/val_0.JPEG",
                                        "val/images/val_1.JPEG", "val/images/val_2.png", "test/images/test_0.JPEG"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) fuzz_write(root, files[i], "", 0);
    return 0;
}

static void check(const pt_filelist *fl, int split)
{
    if (fl->num_classes < 1 || fl->count < 1 || fl->split != split || !fl->fingerprint) abort();
    for (int c = 0; c < fl->num_classes; c++) fuzz_sink += strlen(fl->class_ids[c]) + strlen(fl->class_names[c]);
    for (int64_t i = 0; i < fl->count; i++) {
        if (split == PT_SPLIT_TEST ? fl->labels[i] != -1 : fl->labels[i] < 0 || fl->labels[i] >= fl->num_classes)
            abort();
        if (access(fl->paths[i], F_OK) != 0) abort(); /* a listed image that is not there */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *part[3];
    size_t len[3];
    int n = fuzz_split(data, size, 0, part, len, 3);
    static const char *const names[3] = {"wnids.txt", "words.txt", "val/val_annotations.txt"};
    for (int i = 0; i < 3; i++) {
        char path[700];
        snprintf(path, sizeof path, "%s/%s", root, names[i]);
        if (i < n) fuzz_write(root, names[i], part[i], len[i]);
        else unlink(path);
    }
    static const int splits[3] = {PT_SPLIT_VAL, PT_SPLIT_TRAIN, PT_SPLIT_TEST};
    for (int i = 0; i < 3; i++) {
        pt_filelist fl;
        pt_error e;
        pt_error_clear(&e);
        pt_status s = pt_filelist_tinyimagenet(root, splits[i], &fl, &e);
        fuzz_check_error(s, &e);
        if (s != PT_OK) continue;
        check(&fl, splits[i]);
        pt_filelist_free(&fl);
    }
    return 0;
}
