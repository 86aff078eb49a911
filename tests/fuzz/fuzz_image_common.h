/* The decoding steps the PNG and JPEG harnesses share: the exact reader (data/image.c,
 * behind `predict` and the checks of image folders) with the conversion to a model input,
 * and the fast decoder (data/decode.c, behind packing and --no-cache loading), on the file
 * the harness prepared. Both must agree on whether a file is good. */
#ifndef PT_FUZZ_IMAGE_COMMON_H
#define PT_FUZZ_IMAGE_COMMON_H

#include "fuzz_util.h"

#include "data/decode.h"
#include "data/image.h"

static pt_decoder *fuzz_decoder;

static inline void fuzz_decode_image(const void *data, size_t size)
{
    if (!fuzz_decoder) {
        pt_error e;
        if (pt_decoder_create(&fuzz_decoder, &e) != PT_OK) abort();
    }
    const char *path = fuzz_file(data, size);
    pt_image img;
    pt_image_source src;
    pt_error e;
    pt_error_clear(&e);
    pt_status s = pt_image_load_ex(path, &img, &src, &e);
    fuzz_check_error(s, &e);
    int good = s == PT_OK;
    if (good) {
        if (img.width < 1 || img.height < 1 || img.channels < 1 || img.channels > 4 ||
            img.width > PT_IMAGE_MAX_SIDE || img.height > PT_IMAGE_MAX_SIDE || src.width != img.width ||
            src.height != img.height)
            abort();
        size_t n = (size_t)img.width * (size_t)img.height * (size_t)img.channels;
        for (size_t i = 0; i < n; i += 61) fuzz_sink += img.pixels[i];
        fuzz_sink += img.pixels[n - 1];
        uint8_t u8[3 * 9 * 7];
        float in[3 * 9 * 7];
        static const float mean[3] = {0.5f, 0.5f, 0.5f}, std[3] = {0.25f, 0.25f, 0.25f};
        fuzz_check_error(s = pt_image_to_u8(&img, 3, 9, 7, u8, &e), &e);
        if (s != PT_OK) abort();
        fuzz_check_error(s = pt_image_to_input(&img, 1, 5, 4, mean, std, in, &e), &e);
        if (s != PT_OK) abort();
        pt_image_changes ch;
        char phrases[16][PT_IMAGE_PHRASE];
        pt_image_describe_changes(&img, &src, 1, 9, 7, &ch);
        pt_image_changes_phrases(&ch, phrases, 16);
        pt_image_free(&img);
    }
    uint8_t out[3 * 8 * 6];
    int gray;
    s = pt_decode_file(fuzz_decoder, path, 3, 8, 6, out, &gray, &e);
    fuzz_check_error(s, &e);
    if ((s == PT_OK) != good) {
        fuzz_fail("the exact reader %s the image, the fast decoder %s it (%s)",
                good ? "accepts" : "refuses", s == PT_OK ? "accepts" : "refuses", s == PT_OK ? "" : e.msg);
    }
    int w, h;
    s = pt_decode_size(fuzz_decoder, path, &w, &h, &e);
    fuzz_check_error(s, &e);
}

#endif
