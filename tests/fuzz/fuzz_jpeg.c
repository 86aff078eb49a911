/* libFuzzer harness: JPEG decoding, both paths: TurboJPEG's (data/decode.c, packing and
 * --no-cache loading) and libjpeg's exact reader (data/image.c, `predict` and the fallback
 * for what TurboJPEG refuses), which must agree on whether a file is good. */
#include "fuzz_image_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_decode_image(data, size);
    return 0;
}
