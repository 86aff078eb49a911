/* libFuzzer harness: the IDX reader (data/idx.c, the MNIST / Fashion-MNIST container) on
 * arbitrary bytes, as a raw file and, unless the bytes are gzip already, gzip-compressed
 * here first, so that the header and data checks behind zlib are reached too (a mutated
 * gzip stream rarely survives its CRC). Each file is read whole, in part (first/count
 * taken from the input's size) and header only, as labels and as images, and one image
 * is taken out as `predict idx:FILE:INDEX` does. */
#include "fuzz_util.h"

#include <zlib.h>

#include "data/idx.h"
#include "data/image.h"

/* Full reads of announced data larger than this are left out: a real data set that large
 * is legitimate, and its allocation would only measure the machine. */
#define FUZZ_IDX_MAX_DATA (64LL << 20)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static void check_items(const pt_idx *x)
{
    if (x->ndim < 1 || x->ndim > 3 || x->count < 0 || x->first < 0 || x->first + x->count > x->dim[0]) abort();
    int64_t n = x->count * x->item_bytes;
    for (int64_t i = 0; i < n; i++) fuzz_sink += x->data[i];
}

static void read_file(const char *path, int64_t variant)
{
    static const uint32_t magics[2] = {PT_IDX_MAGIC_U8_1D, PT_IDX_MAGIC_U8_3D};
    for (int m = 0; m < 2; m++) {
        pt_idx h, x;
        pt_error e;
        pt_error_clear(&e);
        pt_status s = pt_idx_read_header(path, magics[m], &h, &e);
        fuzz_check_error(s, &e);
        if (s != PT_OK) continue;
        if (h.data || h.count) abort();
        if (h.dim[0] * h.item_bytes <= FUZZ_IDX_MAX_DATA) {
            s = pt_idx_read(path, magics[m], &x, &e);
            fuzz_check_error(s, &e);
            if (s == PT_OK) {
                check_items(&x);
                pt_idx_free(&x);
            }
        }
        int64_t first = variant % 3, count = variant % 2 ? 1 : -1;
        if (count < 0 && (h.dim[0] - first) * h.item_bytes > FUZZ_IDX_MAX_DATA) count = 1;
        s = pt_idx_read_items(path, magics[m], first, count, &x, &e);
        fuzz_check_error(s, &e);
        if (s == PT_OK) {
            check_items(&x);
            pt_idx_free(&x);
        }
        if (magics[m] == PT_IDX_MAGIC_U8_3D) {
            pt_image img;
            s = pt_idx_image(path, variant % 4 - 1, &img, &e);
            fuzz_check_error(s, &e);
            if (s == PT_OK) {
                if ((int64_t)img.width * img.height != h.item_bytes) abort();
                pt_image_free(&img);
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    read_file(fuzz_file(data, size), (int64_t)size);
    if ((size >= 2 && data[0] == 0x1f && data[1] == 0x8b) || size > (1u << 20)) return 0;
    /* gzip of the input */
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) abort();
    uLong cap = deflateBound(&z, (uLong)size);
    uint8_t *gz = malloc(cap);
    if (!gz) abort();
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)size;
    z.next_out = gz;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) abort();
    size_t gz_size = cap - z.avail_out;
    deflateEnd(&z);
    read_file(fuzz_file(gz, gz_size), (int64_t)size);
    free(gz);
    return 0;
}
