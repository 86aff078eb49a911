/* Lists the image files of a dataset split and their labels, without decoding anything:
 * the TinyImageNet layout and the generic <root>/<class>/<image> folder. The list's
 * fingerprint identifies the source (names, labels, sizes, modification times), so that a
 * packed cache can tell it was built from exactly these files. Never prints. */
#ifndef PT_FILELIST_H
#define PT_FILELIST_H

#include <stdint.h>

#include "polytrain/status.h"

enum { PT_SPLIT_VAL = 0, PT_SPLIT_TRAIN = 1, PT_SPLIT_TEST = 2 };

#define PT_FILELIST_MAX_CLASSES 100000
#define PT_FILELIST_MAX_FILES 100000000LL

typedef struct pt_filelist {
    char kind[16];        /* "tinyimagenet" or "folder" */
    char *root;           /* the dataset directory as given */
    int split;            /* PT_SPLIT_* */
    int64_t count;
    char **paths;         /* count full paths (root/...) */
    int32_t *labels;      /* count labels in [0, num_classes); -1 for the unlabeled test split */
    int num_classes;
    char **class_ids;     /* wnids (wnids.txt order) or folder names (sorted) */
    char **class_names;   /* human names (words.txt's first synonym), else the id */
    uint64_t fingerprint; /* of the listing and every file's size and mtime */
} pt_filelist;

/* TinyImageNet: classes in wnids.txt order, names from words.txt (optional),
 * train/<wnid>/images/ (or train/<wnid>/), val/images/ labelled by
 * val/val_annotations.txt, test/images/ unlabeled. Image files: .jpeg .jpg .png in any
 * case. Fails naming the file on a missing wnids.txt or val_annotations.txt, a duplicate
 * wnid, an empty class folder, or a val entry with an unknown class or missing image. */
pt_status pt_filelist_tinyimagenet(const char *root, int split, pt_filelist *out, pt_error *err);

/* <root>/<class>/<image>: classes are the sub-directories (sorted, hidden ones skipped).
 * The validation split is val_fraction (in (0, 1)) of every class, chosen by
 * pt_rng(split_seed, PT_RNG_SPLIT, class, ...) after sorting, so it never depends on the
 * directory order; the training split is the rest. split: PT_SPLIT_TRAIN or PT_SPLIT_VAL.
 * A class folder without images is an error. */
pt_status pt_filelist_folder(const char *root, int split, double val_fraction, uint64_t split_seed,
                             pt_filelist *out, pt_error *err);

void pt_filelist_free(pt_filelist *fl);

/* 64-bit FNV-1a, chained from h (start with PT_FNV_START). */
#define PT_FNV_START 0xcbf29ce484222325ull
uint64_t pt_fnv1a(uint64_t h, const void *data, size_t n);

#endif
