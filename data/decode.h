/* Fast decoding of one image file straight into a model-sized CHW byte sample: JPEG through
 * the TurboJPEG API, anything else (PNG, CMYK JPEG, damaged files) through data/image.h.
 * A decoder is one thread's: it keeps its TurboJPEG handle and buffers between files. */
#ifndef PT_DECODE_H
#define PT_DECODE_H

#include <stdint.h>

#include "polytrain/status.h"

#define PT_DECODE_MAX_FILE_BYTES (256LL << 20)
/* What all decoders of a process may hold at once for decoding and resizing (beyond the
 * files themselves): a decode reserves what its image's size needs and waits while others
 * hold the rest, so the memory does not grow with the number of decoding threads. The
 * largest image allowed (PT_IMAGE_MAX_PIXELS) fits in it. */
#define PT_DECODE_BUDGET_BYTES (1LL << 30)

typedef struct pt_decoder pt_decoder;

pt_status pt_decoder_create(pt_decoder **out, pt_error *err);
void pt_decoder_free(pt_decoder *d);

/* Decodes the image at path, converts it to `channels` (1 or 3; gray and CMYK become RGB)
 * and resizes it to height x width (area average when shrinking, bilinear when enlarging),
 * writing channels*height*width bytes to dst. *was_gray (may be NULL) is set to 1 when the
 * file held a single-channel image. A corrupt or truncated file is PT_ERR_FORMAT with a
 * message naming path. */
pt_status pt_decode_file(pt_decoder *d, const char *path, int channels, int height, int width,
                         uint8_t *dst, int *was_gray, pt_error *err);

/* The pixel size of the image at path (reads the whole file; decodes only what it must). */
pt_status pt_decode_size(pt_decoder *d, const char *path, int *width, int *height, pt_error *err);

#endif
