/* Decoding single images (PNG, JPEG, one image of an IDX file) and turning one into a
 * model input: channel conversion, resizing, the loader's normalisation. For `predict`
 * and image-folder datasets. Never trusts a file: dimensions are bounded before any
 * allocation, and decoder errors come back as messages naming the file. */
#ifndef PT_IMAGE_H
#define PT_IMAGE_H

#include <stdint.h>

#include "core/status.h"

#define PT_IMAGE_MAX_SIDE 16384

typedef struct pt_image {
    int width, height;
    int channels;       /* 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA */
    uint8_t *pixels;    /* height * width * channels, interleaved (HWC), row-major */
} pt_image;

void pt_image_free(pt_image *img);

/* Decodes a PNG (any bit depth, palette, gray/RGB with or without alpha; 16-bit is
 * reduced to 8) or a JPEG (gray, YCbCr/RGB, CMYK/YCCK converted to RGB), recognised by
 * the file's first bytes, not its name. */
pt_status pt_image_load(const char *path, pt_image *out, pt_error *err);

/* Image `index` (0-based) of an IDX images file (magic 0x803) as a 1-channel image. */
pt_status pt_idx_image(const char *idx_path, int64_t index, pt_image *out, pt_error *err);

/* An input as the command line takes it: "idx:FILE" or "idx:FILE:INDEX" for an IDX
 * image, anything else an image file's path. */
pt_status pt_image_load_input(const char *input, pt_image *out, pt_error *err);

/* Converts img to `channels` (1 or 3: RGB->gray by luma 0.299 R + 0.587 G + 0.114 B,
 * gray->RGB by copying, alpha dropped), resizes it to height x width (bilinear with pixel
 * centres at +0.5, widened to an area average when shrinking), and normalises as the
 * loader does: (v/255 - mean[c]) / std[c]. out: channels*height*width floats, CHW. */
pt_status pt_image_to_input(const pt_image *img, int channels, int height, int width,
                            const float *mean, const float *std, float *out, pt_error *err);

/* As pt_image_to_input, without normalisation: the converted, resized image as CHW bytes
 * (rounded to nearest). Same size: a plain channel shuffle. out: channels*height*width. */
pt_status pt_image_to_u8(const pt_image *img, int channels, int height, int width, uint8_t *out,
                         pt_error *err);

#endif
