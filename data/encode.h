/* JPEG encoding of 8-bit RGB or grayscale pixels through TurboJPEG, into a buffer the
 * encoder keeps between images (the twin of data/decode.h). An encoder is one thread's.
 * Never prints. */
#ifndef PT_ENCODE_H
#define PT_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "polytrain/status.h"

typedef struct pt_jpeg_encoder pt_jpeg_encoder;

pt_status pt_jpeg_encoder_create(pt_jpeg_encoder **out, pt_error *err);
void pt_jpeg_encoder_free(pt_jpeg_encoder *e);

/* Encodes width x height pixels (row-major, channels 3: RGB with 4:2:0 chroma as camera
 * and web JPEGs have it; channels 1: a single-channel JPEG) at quality 1..100. *jpeg points
 * into the encoder and stays valid until its next call. */
pt_status pt_jpeg_encode(pt_jpeg_encoder *e, const uint8_t *pixels, int width, int height, int channels,
                         int quality, const uint8_t **jpeg, size_t *size, pt_error *err);

#endif
