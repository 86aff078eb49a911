/* Image decoding and conversion for predict: PNGs of every colour type written here with
 * libpng must decode exactly, JPEGs within a tolerance, damaged or foreign files must be
 * refused with a message naming them, and conversion/resizing must match float64
 * references. */
#include <errno.h>
#include <pthread.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include "data/decode.h"
#include "data/idx.h"
#include "data/image.h"
#include "data/png_encode.h"
#include "pt_test.h"

static char tmp_root[1024];

static const char *tmp_path(const char *name)
{
    static char buf[4][2048];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp_root, name);
    return buf[k];
}

/* ---- writers ---- */

/* rows of `data` are w * channels(ctype) samples of bit_depth bits, packed as PNG wants
 * (16-bit big-endian, sub-byte depths packed). */
static void write_png(const char *path, int w, int h, int ctype, int depth, const uint8_t *data,
                      size_t rowbytes, const png_color *palette, int npal,
                      const uint8_t *trans, int ntrans, int interlace)
{
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) abort();
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, ctype,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (palette) png_set_PLTE(png, info, palette, npal);
    if (trans) png_set_tRNS(png, info, trans, ntrans, NULL);
    png_bytep *rows = malloc(sizeof *rows * (size_t)h);
    for (int y = 0; y < h; y++) rows[y] = (png_bytep)(data + (size_t)y * rowbytes);
    png_set_rows(png, info, rows);
    png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    fclose(f);
}

static void write_jpeg(const char *path, int w, int h, int comps, J_COLOR_SPACE cs,
                       const uint8_t *data)
{
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = comps;
    c.in_color_space = cs;
    jpeg_set_defaults(&c);
    if (cs == JCS_CMYK) jpeg_set_colorspace(&c, JCS_CMYK);
    jpeg_set_quality(&c, 95, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(data + (size_t)c.next_scanline * w * comps);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
}

static uint8_t *read_all(const char *path, long *size)
{
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)*size);
    if (fread(b, 1, (size_t)*size, f) != (size_t)*size) abort();
    fclose(f);
    return b;
}

static void write_all(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}

static uint8_t *gradient(int w, int h, int ch)
{
    uint8_t *p = malloc((size_t)w * h * ch);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < ch; c++)
                p[((size_t)y * w + x) * ch + c] = (uint8_t)((x * 7 + y * 3 + c * 60 + x * y) & 255);
    return p;
}

/* ---- PNG ---- */

static void check_png_roundtrip(const char *name, int ctype, int ch)
{
    int w = 13, h = 7;
    uint8_t *px = gradient(w, h, ch);
    const char *path = tmp_path(name);
    write_png(path, w, h, ctype, 8, px, (size_t)w * ch, NULL, 0, NULL, 0, 0);
    pt_image img;
    pt_error err = {0};
    pt_status s = pt_image_load(path, &img, &err);
    CHECKF(s == PT_OK, "%s: %s", name, err.msg);
    if (s == PT_OK) {
        CHECKF(img.width == w && img.height == h && img.channels == ch, "%s: %dx%dx%d", name,
               img.width, img.height, img.channels);
        CHECKF(memcmp(img.pixels, px, (size_t)w * h * ch) == 0, "%s: pixels differ", name);
    }
    pt_image_free(&img);
    free(px);
}

/* pt_png_write (report's images) decodes back to the same pixels; bad shapes are refused. */
static void test_png_writer_round_trips(void)
{
    for (int ch = 1; ch <= 3; ch += 2) {
        int w = 29, h = 11;
        uint8_t *px = gradient(w, h, ch);
        const char *path = tmp_path(ch == 1 ? "written_gray.png" : "written_rgb.png");
        pt_error err = {0};
        CHECKF(pt_png_write(path, px, w, h, ch, &err) == PT_OK, "write %d channels: %s", ch, err.msg);
        pt_image img;
        pt_status s = pt_image_load(path, &img, &err);
        CHECKF(s == PT_OK, "read back: %s", err.msg);
        if (s == PT_OK) {
            CHECKF(img.width == w && img.height == h && img.channels == ch, "%dx%dx%d", img.width, img.height,
                   img.channels);
            CHECKF(memcmp(img.pixels, px, (size_t)w * h * ch) == 0, "%d channels: pixels differ", ch);
        }
        pt_image_free(&img);
        free(px);
    }
    uint8_t one[4] = {0};
    pt_error err = {0};
    CHECK(pt_png_write(tmp_path("bad.png"), one, 1, 1, 2, &err) == PT_ERR_INVALID);
    CHECK(strstr(err.msg, "bad.png") != NULL);
    CHECK(pt_png_write(tmp_path("bad.png"), one, 0, 1, 1, &err) == PT_ERR_INVALID);
    CHECK(pt_png_write("/nonexistent-dir/x.png", one, 1, 1, 1, &err) == PT_ERR_IO);
}

static void test_png_gray_is_exact(void) { check_png_roundtrip("g.png", PNG_COLOR_TYPE_GRAY, 1); }
static void test_png_gray_alpha_is_exact(void)
{
    check_png_roundtrip("ga.png", PNG_COLOR_TYPE_GRAY_ALPHA, 2);
}
static void test_png_rgb_is_exact(void) { check_png_roundtrip("rgb.png", PNG_COLOR_TYPE_RGB, 3); }
static void test_png_rgba_is_exact(void)
{
    check_png_roundtrip("rgba.png", PNG_COLOR_TYPE_RGB_ALPHA, 4);
}

static void test_png_palette_expands_to_rgb_and_rgba(void)
{
    png_color pal[4] = {{0, 0, 0}, {255, 0, 0}, {10, 200, 30}, {90, 91, 92}};
    uint8_t idx[3 * 5];
    for (int i = 0; i < 15; i++) idx[i] = (uint8_t)(i * 7 % 4);
    const char *path = tmp_path("pal.png");
    write_png(path, 5, 3, PNG_COLOR_TYPE_PALETTE, 8, idx, 5, pal, 4, NULL, 0, 0);
    pt_image img;
    pt_error err = {0};
    CHECKF(pt_image_load(path, &img, &err) == PT_OK, "%s", err.msg);
    int ok = img.channels == 3 && img.width == 5 && img.height == 3;
    for (int i = 0; ok && i < 15; i++)
        ok = img.pixels[3 * i] == pal[idx[i]].red && img.pixels[3 * i + 1] == pal[idx[i]].green &&
             img.pixels[3 * i + 2] == pal[idx[i]].blue;
    CHECK(ok);
    pt_image_free(&img);
    /* with a transparency chunk: RGBA */
    uint8_t trans[4] = {0, 255, 128, 255};
    path = tmp_path("pal_t.png");
    write_png(path, 5, 3, PNG_COLOR_TYPE_PALETTE, 8, idx, 5, pal, 4, trans, 4, 0);
    CHECKF(pt_image_load(path, &img, &err) == PT_OK, "%s", err.msg);
    ok = img.channels == 4;
    for (int i = 0; ok && i < 15; i++)
        ok = img.pixels[4 * i] == pal[idx[i]].red && img.pixels[4 * i + 3] == trans[idx[i]];
    CHECK(ok);
    pt_image_free(&img);
    /* 2-bit palette indices, packed */
    uint8_t packed[3 * 2]; /* 5 pixels of 2 bits: 2 bytes per row */
    memset(packed, 0, sizeof packed);
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 5; x++)
            packed[y * 2 + x / 4] |= (uint8_t)(idx[y * 5 + x] << (6 - 2 * (x % 4)));
    path = tmp_path("pal2.png");
    write_png(path, 5, 3, PNG_COLOR_TYPE_PALETTE, 2, packed, 2, pal, 4, NULL, 0, 0);
    CHECKF(pt_image_load(path, &img, &err) == PT_OK, "%s", err.msg);
    ok = img.channels == 3;
    for (int i = 0; ok && i < 15; i++) ok = img.pixels[3 * i + 1] == pal[idx[i]].green;
    CHECK(ok);
    pt_image_free(&img);
}

static void test_png_16_bit_keeps_the_high_byte(void)
{
    int w = 6, h = 4;
    for (int rgb = 0; rgb < 2; rgb++) {
        int ch = rgb ? 3 : 1;
        uint8_t *raw = malloc((size_t)w * h * ch * 2);
        uint16_t *val = malloc(sizeof *val * (size_t)w * h * ch);
        for (int i = 0; i < w * h * ch; i++) {
            val[i] = (uint16_t)(i * 2731 + 17);
            raw[2 * i] = (uint8_t)(val[i] >> 8);
            raw[2 * i + 1] = (uint8_t)val[i];
        }
        const char *path = tmp_path(rgb ? "rgb16.png" : "g16.png");
        write_png(path, w, h, rgb ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, 16, raw,
                  (size_t)w * ch * 2, NULL, 0, NULL, 0, 0);
        pt_image img;
        pt_error err = {0};
        CHECKF(pt_image_load(path, &img, &err) == PT_OK, "%s", err.msg);
        int ok = img.channels == ch && img.width == w;
        for (int i = 0; ok && i < w * h * ch; i++) ok = img.pixels[i] == val[i] >> 8;
        CHECKF(ok, "rgb=%d", rgb);
        pt_image_free(&img);
        free(raw);
        free(val);
    }
}

static void test_png_1_bit_gray_expands_to_0_and_255(void)
{
    uint8_t rows[2] = {0xA0, 0x50}; /* 4 pixels wide: 1010, 0101 */
    const char *path = tmp_path("g1.png");
    write_png(path, 4, 2, PNG_COLOR_TYPE_GRAY, 1, rows, 1, NULL, 0, NULL, 0, 0);
    pt_image img;
    pt_error err = {0};
    CHECKF(pt_image_load(path, &img, &err) == PT_OK, "%s", err.msg);
    uint8_t want[8] = {255, 0, 255, 0, 0, 255, 0, 255};
    CHECK(img.channels == 1 && img.pixels && memcmp(img.pixels, want, 8) == 0);
    pt_image_free(&img);
}

static void test_png_interlaced_decodes_like_plain(void)
{
    int w = 17, h = 11;
    uint8_t *px = gradient(w, h, 3);
    const char *path = tmp_path("adam7.png");
    write_png(path, w, h, PNG_COLOR_TYPE_RGB, 8, px, (size_t)w * 3, NULL, 0, NULL, 0, 1);
    pt_image img;
    pt_error err = {0};
    CHECKF(pt_image_load(path, &img, &err) == PT_OK, "%s", err.msg);
    CHECK(img.pixels && memcmp(img.pixels, px, (size_t)w * h * 3) == 0);
    pt_image_free(&img);
    free(px);
}

/* ---- JPEG ---- */

static int max_abs_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d > m) m = d;
    }
    return m;
}

/* A smooth image: JPEG at quality 95 keeps it within a few levels. */
static uint8_t *smooth(int w, int h, int ch)
{
    uint8_t *p = malloc((size_t)w * h * ch);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < ch; c++)
                p[((size_t)y * w + x) * ch + c] =
                    (uint8_t)(128 + 100 * sin(0.1 * x + 0.07 * y + c) * cos(0.05 * y - 0.3 * c));
    return p;
}

static void test_jpeg_gray_and_rgb_within_tolerance(void)
{
    int w = 40, h = 24;
    for (int rgb = 0; rgb < 2; rgb++) {
        int ch = rgb ? 3 : 1;
        uint8_t *px = smooth(w, h, ch);
        const char *path = tmp_path(rgb ? "rgb.jpg" : "g.jpg");
        write_jpeg(path, w, h, ch, rgb ? JCS_RGB : JCS_GRAYSCALE, px);
        pt_image img;
        pt_error err = {0};
        pt_status s = pt_image_load(path, &img, &err);
        CHECKF(s == PT_OK, "%s", err.msg);
        if (s == PT_OK) {
            CHECK(img.width == w && img.height == h && img.channels == ch);
            int d = max_abs_diff(img.pixels, px, (size_t)w * h * ch);
            CHECKF(d <= 10, "rgb=%d: max difference %d", rgb, d);
        }
        pt_image_free(&img);
        free(px);
    }
}

static void test_jpeg_cmyk_is_converted_to_rgb(void)
{
    /* Adobe convention (the writer adds the Adobe marker): stored values are 255 - ink.
     * Constant inks C=0 (255 stored), M=255 (0 stored), Y=255, K=0: pure red. */
    int w = 16, h = 16;
    uint8_t *px = malloc((size_t)w * h * 4);
    for (int i = 0; i < w * h; i++) {
        px[4 * i] = 255;
        px[4 * i + 1] = 0;
        px[4 * i + 2] = 0;
        px[4 * i + 3] = 255;
    }
    const char *path = tmp_path("cmyk.jpg");
    write_jpeg(path, w, h, 4, JCS_CMYK, px);
    pt_image img;
    pt_error err = {0};
    CHECKF(pt_image_load(path, &img, &err) == PT_OK, "%s", err.msg);
    CHECK(img.channels == 3);
    if (img.pixels)
        CHECKF(img.pixels[0] > 245 && img.pixels[1] < 10 && img.pixels[2] < 10, "rgb %d %d %d",
               img.pixels[0], img.pixels[1], img.pixels[2]);
    pt_image_free(&img);
    free(px);
}

static void test_type_is_recognised_by_content_not_name(void)
{
    uint8_t *px = gradient(5, 5, 1);
    const char *path = tmp_path("really_a_png.jpg");
    write_png(path, 5, 5, PNG_COLOR_TYPE_GRAY, 8, px, 5, NULL, 0, NULL, 0, 0);
    pt_image img;
    pt_error err = {0};
    CHECKF(pt_image_load(path, &img, &err) == PT_OK, "%s", err.msg);
    CHECK(img.pixels && memcmp(img.pixels, px, 25) == 0);
    pt_image_free(&img);
    free(px);
}

/* ---- damaged and foreign files ---- */

static void expect_refused(const char *path, const char *what, const char *want)
{
    pt_image img;
    pt_error err = {0};
    pt_status s = pt_image_load(path, &img, &err);
    CHECKF(s != PT_OK && img.pixels == NULL, "%s accepted", what);
    CHECKF(strstr(err.msg, path) != NULL, "%s: message does not name the file: %s", what,
           err.msg);
    if (want) CHECKF(strstr(err.msg, want) != NULL, "%s: '%s' not in: %s", what, want, err.msg);
    printf("  %s: %s\n", what, err.msg);
}

static void test_damaged_pngs_are_refused_with_a_message(void)
{
    int w = 30, h = 20;
    uint8_t *px = gradient(w, h, 3);
    const char *good = tmp_path("good.png");
    write_png(good, w, h, PNG_COLOR_TYPE_RGB, 8, px, (size_t)w * 3, NULL, 0, NULL, 0, 0);
    long size;
    uint8_t *b = read_all(good, &size);
    const char *path = tmp_path("trunc.png");
    write_all(path, b, (size_t)size / 2);
    expect_refused(path, "truncated PNG", "PNG");
    write_all(path, b, 20); /* inside IHDR */
    expect_refused(path, "PNG cut in its header", "PNG");
    b[size / 2] ^= 0x55; /* inside IDAT: the chunk CRC no longer matches */
    b[size / 2 + 1] ^= 0x33;
    path = tmp_path("crc.png");
    write_all(path, b, (size_t)size);
    expect_refused(path, "corrupt PNG data", "PNG");
    free(b);
    free(px);
    /* A valid-looking IHDR announcing 100000 x 100000 pixels in a 57-byte file. */
    uint8_t huge[8 + 25 + 12];
    memcpy(huge, "\x89PNG\r\n\x1a\n", 8);
    uint8_t *c = huge + 8;
    memcpy(c, "\0\0\0\x0dIHDR", 8);
    uint32_t dim = 100000;
    for (int k = 0; k < 2; k++) {
        c[8 + 4 * k] = (uint8_t)(dim >> 24);
        c[9 + 4 * k] = (uint8_t)(dim >> 16);
        c[10 + 4 * k] = (uint8_t)(dim >> 8);
        c[11 + 4 * k] = (uint8_t)dim;
    }
    c[16] = 8; /* depth */
    c[17] = 2; /* RGB */
    c[18] = c[19] = c[20] = 0;
    uint32_t crc = (uint32_t)crc32(0, c + 4, 17);
    c[21] = (uint8_t)(crc >> 24);
    c[22] = (uint8_t)(crc >> 16);
    c[23] = (uint8_t)(crc >> 8);
    c[24] = (uint8_t)crc;
    memcpy(huge + 33, "\0\0\0\0IEND\xae\x42\x60\x82", 12);
    path = tmp_path("huge.png");
    write_all(path, huge, sizeof huge);
    expect_refused(path, "PNG with huge dimensions", "PNG");
}

static void test_damaged_jpegs_are_refused_with_a_message(void)
{
    int w = 64, h = 48;
    uint8_t *px = smooth(w, h, 3);
    const char *good = tmp_path("good.jpg");
    write_jpeg(good, w, h, 3, JCS_RGB, px);
    long size;
    uint8_t *b = read_all(good, &size);
    const char *path = tmp_path("trunc.jpg");
    write_all(path, b, (size_t)size * 2 / 3);
    expect_refused(path, "truncated JPEG", "JPEG");
    write_all(path, b, 40);
    expect_refused(path, "JPEG cut in its headers", "JPEG");
    /* Width and height in the SOF0 marker forged to 60000 x 60000. */
    for (long i = 2; i + 9 < size; i++)
        if (b[i] == 0xff && b[i + 1] == 0xc0) {
            b[i + 5] = b[i + 7] = 0xea;
            b[i + 6] = b[i + 8] = 0x60;
            break;
        }
    path = tmp_path("huge.jpg");
    write_all(path, b, (size_t)size);
    expect_refused(path, "JPEG with huge dimensions", "at most");
    free(b);
    free(px);
}

/* A few hundred bytes whose header claims the largest size accepted, 8192 x 8192, with the
 * data of a small image: refused as damaged at the first missing row, not after making 8192
 * rows of gray (seconds and 200 MB). Found by tests/fuzz/fuzz_jpeg. */
static void test_truncated_huge_jpeg_is_refused_at_once(void)
{
    int w = 16, h = 16;
    uint8_t *px = smooth(w, h, 3);
    const char *good = tmp_path("small.jpg");
    write_jpeg(good, w, h, 3, JCS_RGB, px);
    long size;
    uint8_t *b = read_all(good, &size);
    int patched = 0;
    for (long i = 2; i + 9 < size && !patched; i++)
        if (b[i] == 0xff && b[i + 1] == 0xc0) {
            b[i + 5] = b[i + 7] = 0x20;
            b[i + 6] = b[i + 8] = 0x00;
            patched = 1;
        }
    CHECK(patched);
    const char *path = tmp_path("huge-truncated.jpg");
    write_all(path, b, (size_t)size);
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    pt_image img;
    pt_error err = {0};
    pt_status s = pt_image_load(path, &img, &err);
    getrusage(RUSAGE_SELF, &r1);
    CHECKF(s == PT_ERR_FORMAT && strstr(err.msg, "damaged JPEG"), "%d: %s", (int)s, err.msg);
    /* the rows it made: 24 KiB each (the peak only grows, so an earlier test's cannot hide them) */
    long grown_mb = (r1.ru_maxrss - r0.ru_maxrss) / 1024;
    CHECKF(grown_mb < 128, "%ld MB more memory for a %ld-byte file", grown_mb, size);
    if (s == PT_OK) pt_image_free(&img);
    free(b);
    free(px);
}

static void test_foreign_empty_and_missing_files_are_refused(void)
{
    const char *path = tmp_path("notes.png");
    write_all(path, (const uint8_t *)"hello, not an image\n", 20);
    expect_refused(path, "text file", "not a PNG or JPEG");
    path = tmp_path("empty.jpg");
    write_all(path, (const uint8_t *)"", 0);
    expect_refused(path, "empty file", "empty");
    path = tmp_path("missing.png");
    expect_refused(path, "missing file", "cannot open");
    path = tmp_path("sig_only.png");
    write_all(path, (const uint8_t *)"\x89PNG\r\n\x1a\n", 8);
    expect_refused(path, "PNG signature only", "PNG");
    path = tmp_path("soi_only.jpg");
    write_all(path, (const uint8_t *)"\xff\xd8\xff", 3);
    expect_refused(path, "JPEG start marker only", "JPEG");
}

/* Deterministic mutations (byte flips, cuts) of valid files: each load either succeeds
 * with a well-formed image or fails with a message naming the file; never a crash (run
 * under AddressSanitizer in CI). */
static void test_random_corruptions_never_crash(void)
{
    int w = 24, h = 16;
    uint8_t *px = smooth(w, h, 3);
    const char *src[2] = {tmp_path("fz.png"), tmp_path("fz.jpg")};
    write_png(src[0], w, h, PNG_COLOR_TYPE_RGB, 8, px, (size_t)w * 3, NULL, 0, NULL, 0, 0);
    write_jpeg(src[1], w, h, 3, JCS_RGB, px);
    uint32_t x = 12345;
    int bad_result = 0, refused = 0, total = 0;
    for (int fmt = 0; fmt < 2; fmt++) {
        long size;
        uint8_t *orig = read_all(src[fmt], &size);
        uint8_t *b = malloc((size_t)size);
        for (int t = 0; t < 300; t++) {
            memcpy(b, orig, (size_t)size);
            long n = size;
            x = x * 1664525u + 1013904223u;
            int flips = 1 + (int)(x >> 29);
            for (int k = 0; k < flips; k++) {
                x = x * 1664525u + 1013904223u;
                long at = 8 + (long)((x >> 8) % (uint32_t)(size - 8));
                x = x * 1664525u + 1013904223u;
                b[at] ^= (uint8_t)(1 + (x >> 24) % 255);
            }
            if (t % 5 == 0) {
                x = x * 1664525u + 1013904223u;
                n = 1 + (long)((x >> 8) % (uint32_t)size);
            }
            const char *path = tmp_path(fmt ? "fz_bad.jpg" : "fz_bad.png");
            write_all(path, b, (size_t)n);
            pt_image img;
            pt_error err = {0};
            pt_status s = pt_image_load(path, &img, &err);
            total++;
            if (s == PT_OK) {
                bad_result += !(img.pixels && img.width >= 1 && img.height >= 1 &&
                                img.width <= PT_IMAGE_MAX_SIDE && img.channels >= 1);
                pt_image_free(&img);
            } else {
                refused++;
                bad_result += img.pixels != NULL || strstr(err.msg, path) == NULL;
            }
        }
        free(b);
        free(orig);
    }
    CHECKF(bad_result == 0, "%d of %d mutated files gave a malformed result or message",
           bad_result, total);
    CHECKF(refused > total / 4, "only %d of %d mutated files refused", refused, total);
    free(px);
}

/* ---- conversion to a model input ---- */

static void test_same_size_gray_input_is_exactly_the_loader_normalisation(void)
{
    int w = 9, h = 7;
    uint8_t *px = gradient(w, h, 1);
    pt_image img = {w, h, 1, px};
    float mean[1] = {0.2860f}, sd[1] = {0.3530f};
    float *out = malloc(sizeof *out * (size_t)w * h);
    for (int i = 0; i < w * h; i++) out[i] = NAN;
    pt_error err = {0};
    CHECK(pt_image_to_input(&img, 1, h, w, mean, sd, out, &err) == PT_OK);
    int exact = 1;
    for (int i = 0; i < w * h; i++) exact &= out[i] == ((float)px[i] / 255.0f - mean[0]) / sd[0];
    CHECK(exact);
    free(out);
    free(px);
}

static void test_channel_conversions(void)
{
    int w = 4, h = 3;
    uint8_t *rgba = gradient(w, h, 4);
    float zero[3] = {0, 0, 0}, one[3] = {1, 1, 1};
    float out[3 * 12];
    double ref[3 * 12];
    pt_error err = {0};
    /* RGBA -> gray: luma of RGB, alpha ignored */
    pt_image img = {w, h, 4, rgba};
    for (int i = 0; i < 36; i++) out[i] = NAN;
    CHECK(pt_image_to_input(&img, 1, h, w, zero, one, out, &err) == PT_OK);
    for (int i = 0; i < 12; i++)
        ref[i] = (0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1] + 0.114 * rgba[4 * i + 2]) / 255.0;
    double e = pt_t_rel_err_f32_f64(out, ref, 12);
    CHECKF(e < 1e-6, "luma error %g", e);
    /* RGBA -> RGB planes: alpha dropped, HWC -> CHW */
    for (int i = 0; i < 36; i++) out[i] = NAN;
    CHECK(pt_image_to_input(&img, 3, h, w, zero, one, out, &err) == PT_OK);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 12; i++) ref[c * 12 + i] = rgba[4 * i + c] / 255.0;
    e = pt_t_rel_err_f32_f64(out, ref, 36);
    CHECKF(e < 1e-6, "rgb error %g", e);
    /* gray+alpha -> RGB: the gray value in every plane */
    uint8_t ga[24];
    for (int i = 0; i < 12; i++) {
        ga[2 * i] = (uint8_t)(i * 20);
        ga[2 * i + 1] = 7;
    }
    pt_image gimg = {w, h, 2, ga};
    for (int i = 0; i < 36; i++) out[i] = NAN;
    CHECK(pt_image_to_input(&gimg, 3, h, w, zero, one, out, &err) == PT_OK);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 12; i++) ref[c * 12 + i] = ga[2 * i] / 255.0;
    e = pt_t_rel_err_f32_f64(out, ref, 36);
    CHECKF(e < 1e-6, "gray->rgb error %g", e);
    /* per-channel normalisation */
    float mean[3] = {0.1f, 0.5f, 0.9f}, sd[3] = {0.2f, 0.4f, 0.8f};
    CHECK(pt_image_to_input(&img, 3, h, w, mean, sd, out, &err) == PT_OK);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 12; i++) ref[c * 12 + i] = (rgba[4 * i + c] / 255.0 - mean[c]) / sd[c];
    e = pt_t_rel_err_f32_f64(out, ref, 36);
    CHECKF(e < 1e-6, "normalisation error %g", e);
    CHECK(pt_image_to_input(&img, 2, h, w, mean, sd, out, &err) == PT_ERR_INVALID);
    free(rgba);
}

/* float64 reference: bilinear with half-pixel centres and edge clamping (PyTorch's
 * align_corners=False), for enlarging. */
static double bilinear_ref(const uint8_t *src, int iw, int ih, int ow, int oh, int x, int y)
{
    double sx = (x + 0.5) * iw / ow - 0.5, sy = (y + 0.5) * ih / oh - 0.5;
    if (sx < 0) sx = 0;
    if (sy < 0) sy = 0;
    int x0 = (int)sx, y0 = (int)sy;
    int x1 = x0 + 1 < iw ? x0 + 1 : iw - 1, y1 = y0 + 1 < ih ? y0 + 1 : ih - 1;
    double fx = sx - x0, fy = sy - y0;
    double top = src[y0 * iw + x0] * (1 - fx) + src[y0 * iw + x1] * fx;
    double bot = src[y1 * iw + x0] * (1 - fx) + src[y1 * iw + x1] * fx;
    return top * (1 - fy) + bot * fy;
}

static void test_enlarging_is_bilinear(void)
{
    int iw = 5, ih = 4, ow = 13, oh = 9;
    uint8_t *px = gradient(iw, ih, 1);
    pt_image img = {iw, ih, 1, px};
    float zero[1] = {0}, one[1] = {1};
    float *out = malloc(sizeof *out * (size_t)ow * oh);
    double *ref = malloc(sizeof *ref * (size_t)ow * oh);
    for (int i = 0; i < ow * oh; i++) out[i] = NAN;
    pt_error err = {0};
    CHECK(pt_image_to_input(&img, 1, oh, ow, zero, one, out, &err) == PT_OK);
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++)
            ref[y * ow + x] = bilinear_ref(px, iw, ih, ow, oh, x, y) / 255.0;
    double e = pt_t_rel_err_f32_f64(out, ref, (long)ow * oh);
    CHECKF(e < 1e-6, "bilinear error %g", e);
    free(out);
    free(ref);
    free(px);
}

static void test_shrinking_averages_instead_of_aliasing(void)
{
    /* A one-pixel checkerboard shrunk 8x: plain bilinear would pick 0 or 255; an area-like
     * filter gives about the mean. A constant image stays constant. */
    int iw = 64, ih = 64, ow = 8, oh = 8;
    uint8_t *px = malloc((size_t)iw * ih);
    for (int y = 0; y < ih; y++)
        for (int x = 0; x < iw; x++) px[y * iw + x] = (uint8_t)(((x + y) & 1) ? 255 : 0);
    pt_image img = {iw, ih, 1, px};
    float zero[1] = {0}, one[1] = {1};
    float out[64];
    pt_error err = {0};
    CHECK(pt_image_to_input(&img, 1, oh, ow, zero, one, out, &err) == PT_OK);
    double maxdev = 0;
    for (int i = 0; i < 64; i++) {
        double d = isnan(out[i]) ? 1.0 : fabs(out[i] - 0.5);
        if (d > maxdev) maxdev = d;
    }
    CHECKF(maxdev < 0.05, "deviation from the mean %g", maxdev);
    memset(px, 77, (size_t)iw * ih);
    CHECK(pt_image_to_input(&img, 1, 5, 3, zero, one, out, &err) == PT_OK);
    double e = 0;
    for (int i = 0; i < 15; i++) e = fmax(e, fabs(out[i] - 77 / 255.0));
    CHECKF(e < 1e-6, "constant image error %g", e);
    free(px);
}

/* ---- IDX images ---- */

static void test_idx_image_reads_one_image_and_bounds_the_index(void)
{
    const char *path = tmp_path("imgs.idx.gz");
    uint8_t hdr[16] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5};
    uint8_t data[60];
    for (int i = 0; i < 60; i++) data[i] = (uint8_t)(i * 3);
    gzFile f = gzopen(path, "wb");
    gzwrite(f, hdr, 16);
    gzwrite(f, data, 60);
    gzclose(f);
    pt_image img;
    pt_error err = {0};
    CHECKF(pt_idx_image(path, 2, &img, &err) == PT_OK, "%s", err.msg);
    CHECK(img.channels == 1 && img.height == 4 && img.width == 5 && img.pixels &&
          memcmp(img.pixels, data + 40, 20) == 0);
    pt_image_free(&img);
    CHECK(pt_idx_image(path, 3, &img, &err) == PT_ERR_INVALID);
    CHECKF(strstr(err.msg, "holds 3") && strstr(err.msg, path), "%s", err.msg);
    char spec[2200];
    snprintf(spec, sizeof spec, "idx:%s:1", path);
    CHECKF(pt_image_load_input(spec, &img, &err) == PT_OK, "%s", err.msg);
    CHECK(img.pixels && memcmp(img.pixels, data + 20, 20) == 0);
    pt_image_free(&img);
    snprintf(spec, sizeof spec, "idx:%s", path);
    CHECKF(pt_image_load_input(spec, &img, &err) == PT_OK, "%s", err.msg);
    CHECK(img.pixels && memcmp(img.pixels, data, 20) == 0);
    pt_image_free(&img);
    snprintf(spec, sizeof spec, "idx:%s:-1", path);
    CHECK(pt_image_load_input(spec, &img, &err) != PT_OK);
    /* a labels file is not an images file */
    const char *lab = tmp_path("labs.idx");
    FILE *g = fopen(lab, "wb");
    fwrite("\0\0\x08\x01\0\0\0\x02\x01\x02", 1, 10, g);
    fclose(g);
    CHECK(pt_idx_image(lab, 0, &img, &err) == PT_ERR_FORMAT);
}

/* ---- decoding memory: bounded by the image size allowed and shared between threads ---- */

/* Rewrites the frame size of the baseline JPEG at path (its SOF0 header): the file then
 * claims w x h pixels while holding the data of a small image. */
static int forge_jpeg_size(const char *path, int w, int h)
{
    long n = 0;
    uint8_t *b = read_all(path, &n);
    if (!b) return -1;
    long i = 2;
    while (i + 9 < n && !(b[i] == 0xff && b[i + 1] == 0xc0)) i++;
    int ok = i + 9 < n;
    if (ok) {
        b[i + 5] = (uint8_t)(h >> 8), b[i + 6] = (uint8_t)h;
        b[i + 7] = (uint8_t)(w >> 8), b[i + 8] = (uint8_t)w;
        FILE *f = fopen(path, "wb");
        ok = f && fwrite(b, 1, (size_t)n, f) == (size_t)n;
        if (f) ok = fclose(f) == 0 && ok;
    }
    free(b);
    return ok ? 0 : -1;
}

typedef struct decode_job {
    const char *path;
    pt_status st;
    pt_error err;
} decode_job;

static void *decode_one(void *arg)
{
    decode_job *j = arg;
    pt_decoder *d = NULL;
    static uint8_t dst[4][3 * 64 * 64];
    static int slot;
    uint8_t *out = dst[__atomic_fetch_add(&slot, 1, __ATOMIC_SEQ_CST) & 3];
    j->st = pt_decoder_create(&d, &j->err);
    if (j->st == PT_OK) j->st = pt_decode_file(d, j->path, 3, 64, 64, out, NULL, &j->err);
    pt_decoder_free(d);
    return NULL;
}

/* Decodes paths[0..n) on n threads in a child; returns the child's peak RSS in KiB (-1 if
 * it failed), and in *all_failed_with whether each decode failed with that text. */
static long decode_in_child(const char *const *paths, int n, const char *want, int *all_failed_with)
{
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        decode_job jobs[8];
        pthread_t th[8];
        for (int i = 0; i < n; i++) {
            jobs[i].path = paths[i];
            pthread_create(&th[i], NULL, decode_one, &jobs[i]);
        }
        int ok = 1;
        for (int i = 0; i < n; i++) {
            pthread_join(th[i], NULL);
            if (jobs[i].st == PT_OK || !strstr(jobs[i].err.msg, want)) {
                ok = 0;
                fprintf(stderr, "decode of %s: %s\n", paths[i], jobs[i].st == PT_OK ? "succeeded" : jobs[i].err.msg);
            }
        }
        if (write(fds[1], &ok, sizeof ok) != (ssize_t)sizeof ok) _exit(2);
        _exit(0);
    }
    close(fds[1]);
    int ok = 0;
    if (read(fds[0], &ok, sizeof ok) != (ssize_t)sizeof ok) ok = 0;
    close(fds[0]);
    int st = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    if (wait4(pid, &st, 0, &ru) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return -1;
    *all_failed_with = ok;
    return ru.ru_maxrss;
}

static void test_oversized_image_headers_are_refused_before_allocating(void)
{
    enum { W = 16, H = 16 };
    uint8_t px[W * H * 3];
    for (int i = 0; i < W * H * 3; i++) px[i] = (uint8_t)(i * 7);
    const char *path = tmp_path("claims_16384.jpg");
    write_jpeg(path, W, H, 3, JCS_RGB, px);
    CHECK(forge_jpeg_size(path, 16384, 16384) == 0);
    const char *paths[2] = {path, path};
    int refused = 0;
    long rss = decode_in_child(paths, 2, "16384x16384 pixels, more than", &refused);
    CHECK(refused);
    /* Decoding it would take 1-2 GB per thread. */
    printf("  2 threads, a 16384x16384 claim: peak RSS %ld KiB\n", rss);
    CHECKF(rss > 0 && rss < 64 * 1024, "peak RSS %ld KiB", rss);
    /* The exact reader has the same bound (an image between the side and pixel limits). */
    CHECK(forge_jpeg_size(path, 9000, 9000) == 0);
    pt_image img;
    pt_error err = {0};
    CHECK(pt_image_load(path, &img, &err) == PT_ERR_FORMAT);
    CHECKF(strstr(err.msg, "9000x9000 pixels, more than") && strstr(err.msg, path), "%s", err.msg);
}

static void test_decoding_memory_does_not_grow_with_threads(void)
{
    enum { W = 16, H = 16 };
    uint8_t px[W * H * 3];
    for (int i = 0; i < W * H * 3; i++) px[i] = (uint8_t)(i * 5);
    char names[4][64];
    const char *paths[4];
    for (int i = 0; i < 4; i++) {
        snprintf(names[i], sizeof names[i], "claims_8192_%d.jpg", i);
        paths[i] = strdup(tmp_path(names[i]));
        write_jpeg(paths[i], W, H, 3, JCS_RGB, px);
        CHECK(forge_jpeg_size(paths[i], 8192, 8192) == 0);
    }
    /* Each is allowed, and damaged: the exact reader fills 8192x8192 pixels before it says
     * so. Four threads at once would take about 4 x 200 MB; the shared budget lets them
     * take their turn instead. */
    int damaged = 0;
    long rss = decode_in_child(paths, 4, "premature end", &damaged);
    CHECK(damaged);
    printf("  4 threads, 8192x8192 claims: peak RSS %ld KiB\n", rss);
    CHECKF(rss > 0 && rss < 450 * 1024, "peak RSS %ld KiB for 4 threads", rss);
    for (int i = 0; i < 4; i++) free((void *)paths[i]);
}

int main(void)
{
    const char *t = getenv("PT_TEST_TMP");
    /* A fixed name, so that reruns overwrite rather than pile up. */
    snprintf(tmp_root, sizeof tmp_root, "%s/test_image%s", t && *t ? t : "/tmp",
             t && *t ? "" : ".tmp");
    if (t && *t) mkdir(t, 0755);
    if (mkdir(tmp_root, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "cannot create %s\n", tmp_root);
        return 1;
    }
    RUN(test_png_gray_is_exact);
    RUN(test_png_writer_round_trips);
    RUN(test_png_gray_alpha_is_exact);
    RUN(test_png_rgb_is_exact);
    RUN(test_png_rgba_is_exact);
    RUN(test_png_palette_expands_to_rgb_and_rgba);
    RUN(test_png_16_bit_keeps_the_high_byte);
    RUN(test_png_1_bit_gray_expands_to_0_and_255);
    RUN(test_png_interlaced_decodes_like_plain);
    RUN(test_jpeg_gray_and_rgb_within_tolerance);
    RUN(test_jpeg_cmyk_is_converted_to_rgb);
    RUN(test_type_is_recognised_by_content_not_name);
    RUN(test_damaged_pngs_are_refused_with_a_message);
    RUN(test_damaged_jpegs_are_refused_with_a_message);
    RUN(test_truncated_huge_jpeg_is_refused_at_once);
    RUN(test_foreign_empty_and_missing_files_are_refused);
    RUN(test_random_corruptions_never_crash);
    RUN(test_same_size_gray_input_is_exactly_the_loader_normalisation);
    RUN(test_channel_conversions);
    RUN(test_enlarging_is_bilinear);
    RUN(test_shrinking_averages_instead_of_aliasing);
    RUN(test_idx_image_reads_one_image_and_bounds_the_index);
    RUN(test_oversized_image_headers_are_refused_before_allocating);
    RUN(test_decoding_memory_does_not_grow_with_threads);
    TEST_EXIT();
}
