/* The packed dataset cache: every sample of a split decoded once into one memory-mapped
 * file of CHW bytes, with its labels, class names, per-channel mean/std, a checksum per
 * chunk and the fingerprint of the source it was built from. A cache is written under a
 * temporary name and renamed into place only when complete, and a reader checks the size,
 * every offset and every checksum before trusting it: nothing half-written is ever read. */
#ifndef PT_PACK_H
#define PT_PACK_H

#include <stdint.h>

#include "polytrain/status.h"
#include "polytrain/dataset.h"
#include "data/filelist.h"

#define PT_PACK_VERSION 1
#define PT_PACK_CHUNK_SAMPLES 256
#define PT_PACK_MAX_SAMPLES 100000000LL

typedef struct pt_pack_options {
    int channels, height, width; /* the stored sample shape (the model's input) */
    int threads;                 /* decoding threads (<= 0: 1) */
    int skip_bad;                /* 1: leave out (and count) images that fail to decode */
    /* Called from the calling thread now and then, and once at the end. */
    void (*progress)(void *user, int64_t done, int64_t total);
    /* Asked before each image, from every decoding thread (NULL: never): nonzero stops the
     * pack, which then leaves nothing behind and returns PT_ERR_INTERRUPTED (a Ctrl-C). */
    int (*cancelled)(void *user);
    void *user;
} pt_pack_options;

typedef struct pt_pack_report {
    int64_t packed;        /* samples in the cache */
    int64_t gray;          /* of them, decoded from single-channel images */
    int64_t skipped;       /* bad images left out (skip_bad) */
    char first_skipped[1024]; /* the first skipped image's error */
    double seconds;
} pt_pack_report;

/* Decodes every image of fl into path (written as path.tmp.<pid>, then renamed). Without
 * skip_bad the first bad image fails the whole pack with its message. */
pt_status pt_pack_write(const pt_filelist *fl, const char *path, const pt_pack_options *opt,
                        pt_pack_report *rep, pt_error *err);

typedef struct pt_pack_info {
    uint32_t version;
    int channels, height, width, num_classes;
    int64_t count, gray, skipped;
    uint64_t fingerprint;
    float mean[3], std[3];
} pt_pack_info;

/* Maps a cache as a dataset (pixels point into the mapping; pt_dataset_free unmaps it).
 * expect_fingerprint: 0 accepts any source, else a cache built from another source is
 * PT_ERR_MISMATCH. Channels/height/width > 0 must match the stored shape (PT_ERR_MISMATCH).
 * A truncated, extended or corrupt file is PT_ERR_FORMAT naming it. limit > 0 keeps the
 * first `limit` samples. info may be NULL. */
pt_status pt_pack_open(const char *path, uint64_t expect_fingerprint, int channels, int height,
                       int width, int64_t limit, pt_dataset *out, pt_pack_info *info,
                       pt_error *err);

/* 64-bit checksum of n bytes (4 lanes of multiply-rotate over 8-byte words). */
uint64_t pt_pack_checksum(const uint8_t *p, size_t n);

#endif
