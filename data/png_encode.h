/* PNG encoding of 8-bit gray or RGB pixels through libpng, for the images polytrain writes
 * itself (report's misclassified samples). Written crash-safely, as every output file.
 * Never prints. */
#ifndef PT_PNG_ENCODE_H
#define PT_PNG_ENCODE_H

#include <stdint.h>

#include "polytrain/status.h"

/* Writes width x height pixels (row-major, interleaved: channels 1 gray, 3 RGB) to path as
 * an 8-bit PNG, through pt_write_file_atomic. */
pt_status pt_png_write(const char *path, const uint8_t *pixels, int width, int height, int channels,
                       pt_error *err);

#endif
