/* libFuzzer harness: PNG decoding (libpng through data/image.c and data/decode.c). A
 * mutated chunk almost never keeps its CRC, which libpng checks first, so each input is
 * decoded as given and, when any chunk's CRC was wrong, once more with every CRC put right:
 * the second pass is what reaches the header, palette, transparency and pixel handling. */
#include "fuzz_image_common.h"

#include <zlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Rewrites the CRC of every whole chunk after the signature; returns 1 if one changed. */
static int fix_crcs(uint8_t *p, size_t n)
{
    int changed = 0;
    size_t off = 8;
    while (off + 12 <= n) {
        uint32_t len = be32(p + off);
        if (len > n - off - 12) break;
        uint32_t crc = (uint32_t)crc32(0L, p + off + 4, (uInt)len + 4);
        uint8_t *c = p + off + 8 + len;
        if (be32(c) != crc) {
            c[0] = (uint8_t)(crc >> 24), c[1] = (uint8_t)(crc >> 16), c[2] = (uint8_t)(crc >> 8), c[3] = (uint8_t)crc;
            changed = 1;
        }
        off += 12 + (size_t)len;
    }
    return changed;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_decode_image(data, size);
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (size < 8 || memcmp(data, sig, 8) != 0) return 0;
    uint8_t *copy = malloc(size);
    if (!copy) abort();
    memcpy(copy, data, size);
    if (fix_crcs(copy, size)) fuzz_decode_image(copy, size);
    free(copy);
    return 0;
}
