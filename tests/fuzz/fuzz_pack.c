/* libFuzzer harness: the packed-cache reader (pt_pack_open) on arbitrary bytes. The reader
 * checks a checksum over its header, the labels and names and every chunk of pixels before
 * it looks further, and a mutation almost never keeps them, so each input is read as given
 * and, when a checksum was wrong, once more with every checksum the layout lets us find put
 * right: that pass reaches the offset, label, normalisation and class-name checks. */
#include "fuzz_util.h"

#include <stddef.h>

#include "data/pack.h"
#include "polytrain/dataset.h"

/* The on-disk header as data/pack.c lays it out (little-endian), to find the checksums. */
typedef struct fuzz_pack_header {
    char magic[8];
    uint32_t version, header_bytes;
    uint32_t channels, height, width, num_classes;
    uint64_t count, chunk_samples, nchunks;
    uint64_t fingerprint, gray, skipped;
    float mean[3], std[3];
    uint64_t names_off, names_bytes, labels_off, sums_off, pixels_off, file_bytes;
    uint64_t meta_sum;
    uint64_t header_sum;
} fuzz_pack_header;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static void open_cache(const void *data, size_t size, int64_t variant)
{
    const char *path = fuzz_file(data, size);
    for (int pass = 0; pass < 2; pass++) {
        pt_dataset ds;
        pt_pack_info info;
        pt_error e;
        pt_error_clear(&e);
        int64_t limit = pass ? variant % 5 : 0;
        pt_status s = pt_pack_open(path, 0, pass ? (int)(variant % 4) : 0, 0, 0, limit, &ds, &info, &e);
        fuzz_check_error(s, &e);
        if (s != PT_OK) continue;
        if (ds.count < 1 || ds.count > info.count || (limit > 0 && ds.count > limit) || ds.num_classes < 1)
            abort();
        int64_t sample = (int64_t)ds.channels * ds.height * ds.width;
        for (int64_t i = 0; i < ds.count; i++) {
            if (ds.labels[i] < 0 || ds.labels[i] >= ds.num_classes) abort();
            fuzz_sink += ds.pixels[i * sample] + ds.pixels[(i + 1) * sample - 1];
        }
        for (int c = 0; c < ds.num_classes; c++) fuzz_sink += (unsigned)strlen(ds.class_names[c]);
        pt_dataset_free(&ds);
    }
}

/* Puts every checksum the header's offsets let us find right; returns 1 if one changed. */
static int fix_sums(uint8_t *p, size_t size)
{
    fuzz_pack_header h;
    if (size < sizeof h) return 0;
    memcpy(&h, p, sizeof h);
    int changed = 0;
    uint64_t sample = (uint64_t)h.channels * h.height * h.width;
    if (h.sums_off <= size && h.nchunks <= (size - h.sums_off) / 8 && h.pixels_off <= size && sample > 0 &&
        sample <= size && h.count <= size) {
        for (uint64_t c = 0; c < h.nchunks; c++) {
            uint64_t first = c * PT_PACK_CHUNK_SAMPLES;
            if (first >= h.count) break;
            uint64_t cnt = h.count - first < PT_PACK_CHUNK_SAMPLES ? h.count - first : PT_PACK_CHUNK_SAMPLES;
            if (h.pixels_off + (first + cnt) * sample > size) break;
            uint64_t sum = pt_pack_checksum(p + h.pixels_off + first * sample, (size_t)(cnt * sample));
            uint8_t *at = p + h.sums_off + 8 * c;
            if (memcmp(at, &sum, 8) != 0) memcpy(at, &sum, 8), changed = 1;
        }
    }
    if (h.names_off <= h.pixels_off && h.pixels_off <= size) {
        uint64_t sum = pt_pack_checksum(p + h.names_off, (size_t)(h.pixels_off - h.names_off));
        if (sum != h.meta_sum) h.meta_sum = sum, changed = 1;
    }
    uint64_t hs = pt_pack_checksum((const uint8_t *)&h, offsetof(fuzz_pack_header, header_sum));
    if (hs != h.header_sum) h.header_sum = hs, changed = 1;
    memcpy(p, &h, sizeof h);
    return changed;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    open_cache(data, size, (int64_t)size);
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) abort();
    memcpy(copy, data, size);
    if (fix_sums(copy, size)) open_cache(copy, size, (int64_t)size);
    free(copy);
    return 0;
}
