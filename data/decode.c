/* TurboJPEG decoding with data/image.c as the slow, exact path: whenever TurboJPEG refuses
 * a file or warns, the libjpeg/libpng reader decides, so both paths give one verdict and
 * one message style. Never prints; bounds the file size and dimensions before allocating. */
#include "data/decode.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <turbojpeg.h>

#include "core/fileio.h"
#include "data/image.h"

struct pt_decoder {
    tjhandle tj;
    uint8_t *file;
    size_t file_cap;
    uint8_t *pix;
    size_t pix_cap;
};

pt_status pt_decoder_create(pt_decoder **out, pt_error *err)
{
    *out = NULL;
    pt_decoder *d = calloc(1, sizeof *d);
    if (!d) return pt_fail(err, PT_ERR_NOMEM, "out of memory for an image decoder");
    d->tj = tjInitDecompress();
    if (!d->tj) {
        free(d);
        return pt_fail(err, PT_ERR_NOMEM, "cannot create a TurboJPEG decompressor");
    }
    *out = d;
    return PT_OK;
}

void pt_decoder_free(pt_decoder *d)
{
    if (!d) return;
    tjDestroy(d->tj);
    free(d->file);
    free(d->pix);
    free(d);
}

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap) return 1;
    size_t n = *cap ? *cap : 65536;
    while (n < need) n *= 2;
    uint8_t *p = realloc(*buf, n);
    if (!p) return 0;
    *buf = p;
    *cap = n;
    return 1;
}

/* Reads the whole file into d->file; *size its length. */
static pt_status read_all(pt_decoder *d, const char *path, size_t *size, pt_error *err)
{
    int fd;
    PT_TRY(pt_open_input(path, PT_INPUT_FILE, "image", &fd, err));
    FILE *f = fdopen(fd, "rb");
    struct stat st;
    if (!f || fstat(fd, &st) != 0) {
        if (f) fclose(f);
        else close(fd);
        return pt_fail(err, PT_ERR_IO, "cannot read image %s: %s", path, strerror(errno));
    }
    if (st.st_size > PT_DECODE_MAX_FILE_BYTES) {
        fclose(f);
        return pt_fail(err, PT_ERR_FORMAT, "image %s: %lld bytes, at most %lld supported", path,
                       (long long)st.st_size, (long long)PT_DECODE_MAX_FILE_BYTES);
    }
    if (!grow(&d->file, &d->file_cap, (size_t)st.st_size + 1)) {
        fclose(f);
        return pt_fail(err, PT_ERR_NOMEM, "out of memory reading %s", path);
    }
    size_t n = fread(d->file, 1, (size_t)st.st_size, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n != (size_t)st.st_size)
        return pt_fail(err, PT_ERR_IO, "cannot read image %s (%zu of %lld bytes)", path, n,
                       (long long)st.st_size);
    *size = n;
    return PT_OK;
}

static int is_jpeg(const uint8_t *p, size_t n)
{
    return n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff;
}

/* The exact path: data/image.c's reader, then its converter. */
static pt_status slow_path(const char *path, int channels, int height, int width, uint8_t *dst,
                           int *was_gray, pt_error *err)
{
    pt_image img;
    PT_TRY(pt_image_load(path, &img, err));
    if (was_gray) *was_gray = img.channels <= 2;
    pt_status s = pt_image_to_u8(&img, channels, height, width, dst, err);
    if (s != PT_OK) pt_error_wrap(err, "%s", path);
    pt_image_free(&img);
    return s;
}

pt_status pt_decode_file(pt_decoder *d, const char *path, int channels, int height, int width,
                         uint8_t *dst, int *was_gray, pt_error *err)
{
    if (was_gray) *was_gray = 0;
    size_t size = 0;
    PT_TRY(read_all(d, path, &size, err));
    if (!is_jpeg(d->file, size)) return slow_path(path, channels, height, width, dst, was_gray, err);
    int w, h, subsamp, cs;
    if (tjDecompressHeader3(d->tj, d->file, (unsigned long)size, &w, &h, &subsamp, &cs) != 0 ||
        w < 1 || h < 1 || w > PT_IMAGE_MAX_SIDE || h > PT_IMAGE_MAX_SIDE || cs == TJCS_CMYK ||
        cs == TJCS_YCCK)
        return slow_path(path, channels, height, width, dst, was_gray, err);
    int gray = cs == TJCS_GRAY;
    int pc = gray ? 1 : 3;
    if (!grow(&d->pix, &d->pix_cap, (size_t)w * (size_t)h * (size_t)pc))
        return pt_fail(err, PT_ERR_NOMEM, "out of memory decoding %s (%dx%d)", path, w, h);
    /* Any warning (truncated data, corrupt Huffman codes) stops the fast path; the exact
     * reader then tells a harmless oddity from lost image data. */
    if (tjDecompress2(d->tj, d->file, (unsigned long)size, d->pix, w, 0, h,
                      gray ? TJPF_GRAY : TJPF_RGB, TJFLAG_STOPONWARNING | TJFLAG_NOREALLOC) != 0)
        return slow_path(path, channels, height, width, dst, was_gray, err);
    if (was_gray) *was_gray = gray;
    pt_image img = {w, h, pc, d->pix};
    pt_status s = pt_image_to_u8(&img, channels, height, width, dst, err);
    if (s != PT_OK) pt_error_wrap(err, "%s", path);
    return s;
}

pt_status pt_decode_size(pt_decoder *d, const char *path, int *width, int *height, pt_error *err)
{
    size_t size = 0;
    PT_TRY(read_all(d, path, &size, err));
    int w, h, subsamp, cs;
    if (is_jpeg(d->file, size) &&
        tjDecompressHeader3(d->tj, d->file, (unsigned long)size, &w, &h, &subsamp, &cs) == 0 &&
        w >= 1 && h >= 1 && w <= PT_IMAGE_MAX_SIDE && h <= PT_IMAGE_MAX_SIDE) {
        *width = w;
        *height = h;
        return PT_OK;
    }
    pt_image img;
    PT_TRY(pt_image_load(path, &img, err));
    *width = img.width;
    *height = img.height;
    pt_image_free(&img);
    return PT_OK;
}
