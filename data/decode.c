/* TurboJPEG decoding with data/image.c as the slow, exact path: whenever TurboJPEG refuses
 * a file or warns, the libjpeg/libpng reader decides, so both paths give one verdict and
 * one message style. Never prints; bounds the file size and dimensions before allocating,
 * and every decode first reserves what it will need from one budget shared by all decoders,
 * so that the memory of decoding does not grow with the number of decoding threads. */
#include "data/decode.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
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

/* ---- the decoding memory budget ---- */

static pthread_mutex_t budget_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t budget_cv = PTHREAD_COND_INITIALIZER;
static int64_t budget_used;

/* Waits until `bytes` fit in the budget, then takes them. A single request never exceeds the
 * budget (the pixel bound sees to it), and every taker gives back, so waiting always ends. */
static void budget_take(int64_t bytes)
{
    pthread_mutex_lock(&budget_mu);
    while (budget_used > 0 && budget_used + bytes > PT_DECODE_BUDGET_BYTES) pthread_cond_wait(&budget_cv, &budget_mu);
    budget_used += bytes;
    pthread_mutex_unlock(&budget_mu);
}

static void budget_give(int64_t bytes)
{
    pthread_mutex_lock(&budget_mu);
    budget_used -= bytes;
    pthread_cond_broadcast(&budget_cv);
    pthread_mutex_unlock(&budget_mu);
}

/* Bytes that decoding a w x h image (the file already read) and resizing it to out_h x
 * out_w may take at once: the decoded pixels (4 a pixel at most), a progressive JPEG's
 * coefficients (6 a pixel), the float plane of the resize (4 a pixel) and its row buffer. */
static int64_t decode_cost(int w, int h, int out_w)
{
    return (int64_t)w * h * (4 + 6 + 4) + (int64_t)h * out_w * 4 + (int64_t)h * 16 + (1 << 20);
}

/* The size a PNG's IHDR or a JPEG's frame header claims, or 0 when the first bytes do not
 * tell (then the exact reader's own checks apply). */
static void header_size(pt_decoder *d, size_t size, int *w, int *h)
{
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const uint8_t *p = d->file;
    *w = *h = 0;
    if (size >= 24 && !memcmp(p, png_magic, 8) && !memcmp(p + 12, "IHDR", 4)) {
        uint32_t pw = (uint32_t)p[16] << 24 | (uint32_t)p[17] << 16 | (uint32_t)p[18] << 8 | p[19];
        uint32_t ph = (uint32_t)p[20] << 24 | (uint32_t)p[21] << 16 | (uint32_t)p[22] << 8 | p[23];
        *w = pw > 0x7fffffffu ? 0x7fffffff : (int)pw;
        *h = ph > 0x7fffffffu ? 0x7fffffff : (int)ph;
        return;
    }
    int subsamp, cs;
    if (size >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff &&
        tjDecompressHeader3(d->tj, d->file, (unsigned long)size, w, h, &subsamp, &cs) != 0)
        *w = *h = 0;
}

/* Buffers a decoder keeps between files; a larger one is given back after its file, so that
 * an idle decoder holds little outside the budget. */
#define DECODE_RETAIN_BYTES ((size_t)4 << 20)

static void trim(pt_decoder *d)
{
    if (d->file_cap > DECODE_RETAIN_BYTES) {
        free(d->file);
        d->file = NULL;
        d->file_cap = 0;
    }
    if (d->pix_cap > DECODE_RETAIN_BYTES) {
        free(d->pix);
        d->pix = NULL;
        d->pix_cap = 0;
    }
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

static pt_status decode_file(pt_decoder *d, const char *path, size_t size, int channels, int height, int width,
                             uint8_t *dst, int *was_gray, pt_error *err);

pt_status pt_decode_file(pt_decoder *d, const char *path, int channels, int height, int width,
                         uint8_t *dst, int *was_gray, pt_error *err)
{
    if (was_gray) *was_gray = 0;
    size_t size = 0;
    pt_status s = read_all(d, path, &size, err);
    if (s != PT_OK) {
        trim(d);
        return s;
    }
    int w, h;
    header_size(d, size, &w, &h);
    if (w > PT_IMAGE_MAX_SIDE || h > PT_IMAGE_MAX_SIDE || (int64_t)w * h > PT_IMAGE_MAX_PIXELS) {
        char why[200];
        if (w > PT_IMAGE_MAX_SIDE || h > PT_IMAGE_MAX_SIDE)
            snprintf(why, sizeof why, "image of %dx%d pixels, at most %dx%d supported", w, h, PT_IMAGE_MAX_SIDE,
                     PT_IMAGE_MAX_SIDE);
        else
            pt_image_too_many_pixels(why, sizeof why, w, h);
        trim(d);
        return pt_fail(err, PT_ERR_FORMAT, "%s: %s", path, why);
    }
    /* Unknown: the exact reader refuses more than PT_IMAGE_MAX_PIXELS before allocating. */
    int64_t cost = w > 0 && h > 0 ? decode_cost(w, h, width) : decode_cost(8192, 8192, width);
    budget_take(cost);
    s = decode_file(d, path, size, channels, height, width, dst, was_gray, err);
    trim(d);
    budget_give(cost);
    return s;
}

static pt_status decode_file(pt_decoder *d, const char *path, size_t size, int channels, int height, int width,
                             uint8_t *dst, int *was_gray, pt_error *err)
{
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
