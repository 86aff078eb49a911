/* TurboJPEG encoding into a reusable buffer (see encode.h). Sizes the buffer for the worst
 * case before each image, so TurboJPEG never reallocates behind the encoder's back. */
#include "data/encode.h"

#include <stdlib.h>

#include <turbojpeg.h>

struct pt_jpeg_encoder {
    tjhandle tj;
    unsigned char *buf;
    unsigned long cap;
};

pt_status pt_jpeg_encoder_create(pt_jpeg_encoder **out, pt_error *err)
{
    *out = NULL;
    pt_jpeg_encoder *e = calloc(1, sizeof *e);
    if (!e) return pt_fail(err, PT_ERR_NOMEM, "out of memory for a JPEG encoder");
    e->tj = tjInitCompress();
    if (!e->tj) {
        free(e);
        return pt_fail(err, PT_ERR_NOMEM, "cannot create a TurboJPEG compressor");
    }
    *out = e;
    return PT_OK;
}

void pt_jpeg_encoder_free(pt_jpeg_encoder *e)
{
    if (!e) return;
    tjDestroy(e->tj);
    tjFree(e->buf);
    free(e);
}

pt_status pt_jpeg_encode(pt_jpeg_encoder *e, const uint8_t *pixels, int width, int height, int channels,
                         int quality, const uint8_t **jpeg, size_t *size, pt_error *err)
{
    if (width < 1 || height < 1 || width > 65500 || height > 65500 || (channels != 1 && channels != 3) ||
        quality < 1 || quality > 100)
        return pt_fail(err, PT_ERR_INVALID, "JPEG encode: bad shape %dx%dx%d or quality %d", channels, height,
                       width, quality);
    int samp = channels == 3 ? TJSAMP_420 : TJSAMP_GRAY;
    int fmt = channels == 3 ? TJPF_RGB : TJPF_GRAY;
    unsigned long need = tjBufSize(width, height, samp);
    if (need == (unsigned long)-1) return pt_fail(err, PT_ERR_INVALID, "JPEG encode: image too large");
    if (need > e->cap) {
        tjFree(e->buf);
        e->buf = tjAlloc((int)need);
        e->cap = e->buf ? need : 0;
        if (!e->buf) return pt_fail(err, PT_ERR_NOMEM, "out of memory for a %lu-byte JPEG buffer", need);
    }
    unsigned long n = e->cap;
    if (tjCompress2(e->tj, pixels, width, width * channels, height, fmt, &e->buf, &n, samp, quality,
                    TJFLAG_NOREALLOC) != 0)
        return pt_fail(err, PT_ERR_FORMAT, "JPEG encode failed: %s", tjGetErrorStr2(e->tj));
    *jpeg = e->buf;
    *size = (size_t)n;
    return PT_OK;
}
