/* PNG files from pixels (see png_encode.h): encoded into memory, then written atomically. */
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "data/png_encode.h"

typedef struct png_out {
    uint8_t *data;
    size_t size, cap;
    int nomem;
    char msg[200];
} png_out;

static void out_write(png_structp png, png_bytep src, size_t n)
{
    png_out *o = png_get_io_ptr(png);
    if (o->size + n > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap < o->size + n) cap *= 2;
        uint8_t *p = realloc(o->data, cap);
        if (!p) {
            o->nomem = 1;
            png_error(png, "out of host memory");
        }
        o->data = p;
        o->cap = cap;
    }
    memcpy(o->data + o->size, src, n);
    o->size += n;
}

static void out_flush(png_structp png) { (void)png; }

static void out_error(png_structp png, png_const_charp msg)
{
    png_out *o = png_get_error_ptr(png);
    snprintf(o->msg, sizeof o->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void out_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

/* Separate from pt_png_write so that nothing it changes after setjmp lives in its frame. */
static int encode(png_structp png, png_infop info, png_out *o, const uint8_t *pixels, int width, int height,
                  int channels)
{
    if (setjmp(png_jmpbuf(png))) return 1;
    png_set_write_fn(png, o, out_write, out_flush);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8,
                 channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++)
        png_write_row(png, (png_const_bytep)(pixels + (size_t)y * (size_t)width * (size_t)channels));
    png_write_end(png, info);
    return 0;
}

pt_status pt_png_write(const char *path, const uint8_t *pixels, int width, int height, int channels,
                       pt_error *err)
{
    if (width < 1 || height < 1 || width > 1 << 20 || height > 1 << 20 || (channels != 1 && channels != 3))
        return pt_fail(err, PT_ERR_INVALID, "cannot write '%s': a PNG of %dx%d pixels with %d channels", path, width,
                       height, channels);
    png_out o;
    memset(&o, 0, sizeof o);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &o, out_error, out_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return pt_fail(err, PT_ERR_NOMEM, "cannot write '%s': out of host memory", path);
    }
    int bad = encode(png, info, &o, pixels, width, height, channels);
    png_destroy_write_struct(&png, &info);
    pt_status st = PT_OK;
    if (bad)
        st = pt_fail(err, o.nomem ? PT_ERR_NOMEM : PT_ERR_IO, "cannot write '%s': libpng: %s", path, o.msg);
    else {
        const void *chunks[1] = {o.data};
        size_t sizes[1] = {o.size};
        st = pt_write_file_atomic(path, chunks, sizes, 1, err);
    }
    free(o.data);
    return st;
}
