/* Decoding single images (PNG, JPEG, one image of an IDX file) and turning one into a
 * model input: channel conversion, resizing, the loader's normalisation. For `predict`
 * and image-folder datasets. Never trusts a file: dimensions are bounded before any
 * allocation, and decoder errors come back as messages naming the file. */
#ifndef PT_IMAGE_H
#define PT_IMAGE_H

#include <stdint.h>

#include "polytrain/status.h"

#define PT_IMAGE_MAX_SIDE 16384
/* Pixels of one image (8192x8192): a header claiming more is refused before any memory is
 * taken for it, since decoding costs several bytes per pixel (and per decoding thread). */
#define PT_IMAGE_MAX_PIXELS (64LL << 20)
#define PT_IMAGE_PHRASE 160 /* bytes of one phrase of pt_image_changes_phrases */

typedef struct pt_image {
    int width, height;
    int channels;       /* 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA */
    uint8_t *pixels;    /* height * width * channels, interleaved (HWC), row-major */
} pt_image;

void pt_image_free(pt_image *img);

/* What an image file held, as stored, before decoding converted it to 8-bit gray, gray+alpha,
 * RGB or RGBA pixels. */
typedef struct pt_image_source {
    char format[8];   /* "PNG", "JPEG" or "IDX" */
    int width, height;
    int bit_depth;    /* bits per sample as stored: PNG 1..16, JPEG and IDX 8 */
    int color;        /* 1: colour (PNG truecolour or palette; JPEG YCbCr, RGB, CMYK); 0: gray */
    int alpha;        /* an alpha channel, or a PNG transparency chunk (decoded as alpha) */
    int palette;      /* a PNG palette image, expanded to RGB */
    int cmyk;         /* a JPEG in CMYK/YCCK, converted to RGB */
} pt_image_source;

/* The message for an image over PT_IMAGE_MAX_PIXELS, into msg[cap]. */
void pt_image_too_many_pixels(char *msg, size_t cap, int width, int height);

/* Decodes a PNG (any bit depth, palette, gray/RGB with or without alpha; 16-bit is
 * reduced to 8) or a JPEG (gray, YCbCr/RGB, CMYK/YCCK converted to RGB), recognised by
 * the file's first bytes, not its name. */
pt_status pt_image_load(const char *path, pt_image *out, pt_error *err);
/* The same, also saying what the file held (src may be NULL). A file that is neither PNG nor
 * JPEG fails with PT_ERR_FORMAT and a message saying what it looks like when the first bytes
 * tell (a text file, a PDF, a GIF, WebP, BMP or TIFF image, an IDX file, an archive...). */
pt_status pt_image_load_ex(const char *path, pt_image *out, pt_image_source *src, pt_error *err);

/* Image `index` (0-based) of an IDX images file (magic 0x803) as a 1-channel image. */
pt_status pt_idx_image(const char *idx_path, int64_t index, pt_image *out, pt_error *err);

/* An input as the command line takes it: "idx:FILE" or "idx:FILE:INDEX" for an IDX
 * image, anything else an image file's path. */
pt_status pt_image_load_input(const char *input, pt_image *out, pt_error *err);
pt_status pt_image_load_input_ex(const char *input, pt_image *out, pt_image_source *src, pt_error *err);

/* What pt_image_to_input and pt_image_to_u8 do to a decoded image (and what decoding did to
 * the file, from src) to make a channels x height x width input. */
typedef struct pt_image_changes {
    int resized;                /* the size differs */
    int from_width, from_height, to_width, to_height;
    double scale_x, scale_y;    /* output / input size per axis: above 1 enlarges */
    double aspect_change;       /* >= 1: how far resizing stretches the shape, the larger of the
                                   two aspect ratios (width/height) over the smaller */
    char resampling[48];        /* "bilinear" (enlarging), "area average" (shrinking), or per axis */
    int to_gray;                /* colour reduced to gray by luma 0.299 R + 0.587 G + 0.114 B */
    int to_rgb;                 /* gray replicated to the three channels */
    int alpha_dropped;          /* an alpha channel ignored (the colour kept, not composited) */
    int palette_expanded;       /* from src: a palette expanded to RGB */
    int depth_reduced;          /* from src: 16 bits per sample reduced to 8 */
    int depth_expanded;         /* from src: the 1, 2 or 4 bits per gray sample scaled to 8, or 0 */
    int cmyk_converted;         /* from src: CMYK to RGB */
} pt_image_changes;

/* Fills out for img (decoded from src; src may be NULL: then only the resizing and the
 * channel conversion are known). */
void pt_image_describe_changes(const pt_image *img, const pt_image_source *src, int channels, int height,
                               int width, pt_image_changes *out);
/* The changes as phrases, one per change, e.g. "resized from 300x200 to 28x28 (area average;
 * the aspect ratio 1.50 squeezed to 1.00)", "RGB to gray (luma)". Returns how many were
 * written (at most max), each of them NUL-terminated in phrase[i][0..size). */
int pt_image_changes_phrases(const pt_image_changes *c, char phrase[][PT_IMAGE_PHRASE], int max);

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
