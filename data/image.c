/* Image decoding (libpng, libjpeg-turbo) and conversion to a normalised model input.
 * Both libraries report errors by longjmp: every setjmp sits in a small function whose
 * changing state lives in a caller-owned context, never in its own locals, and nothing
 * the libraries say is printed. */
#include "data/image.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "core/fileio.h"
#include "core/json.h"
#include "data/idx.h"

void pt_image_free(pt_image *img)
{
    if (!img) return;
    free(img->pixels);
    memset(img, 0, sizeof *img);
}

/* ---- PNG ---- */

typedef struct png_ctx {
    FILE *f;
    png_structp png;
    png_infop info;
    uint8_t *pixels;
    png_bytep *rows;
    int width, height, channels;
    int depth, ctype, trns; /* as stored */
    char msg[256];
    char warning[128]; /* the last warning: often says why an error followed */
} png_ctx;

static void png_error_fn(png_structp png, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(png);
    if (c->warning[0])
        snprintf(c->msg, sizeof c->msg, "%s (%s)", msg, c->warning);
    else
        snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_warning_fn(png_structp png, png_const_charp msg)
{
    /* Warnings (bad ancillary chunks, gamma) do not change the pixels we use: keep the
     * text for a later error's message, print nothing. */
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->warning, sizeof c->warning, "%s", msg);
}

static void png_read_fn(png_structp png, png_bytep dst, size_t n)
{
    png_ctx *c = png_get_io_ptr(png);
    if (fread(dst, 1, n, c->f) != n)
        png_error(png, ferror(c->f) ? "read error" : "file ends early (truncated)");
}

/* Returns 0 on success; else c->msg says why. */
static int png_decode(png_ctx *c)
{
    if (setjmp(png_jmpbuf(c->png))) return 1;
    png_set_read_fn(c->png, c, png_read_fn);
    png_set_user_limits(c->png, PT_IMAGE_MAX_SIDE, PT_IMAGE_MAX_SIDE);
    png_read_info(c->png, c->info);
    png_uint_32 w, h;
    int depth, ctype, interlace;
    png_get_IHDR(c->png, c->info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    c->depth = depth;
    c->ctype = ctype;
    if (w == 0 || h == 0 || w > PT_IMAGE_MAX_SIDE || h > PT_IMAGE_MAX_SIDE) {
        snprintf(c->msg, sizeof c->msg, "image of %ux%u pixels, at most %dx%d supported",
                 (unsigned)w, (unsigned)h, PT_IMAGE_MAX_SIDE, PT_IMAGE_MAX_SIDE);
        return 1;
    }
    if ((long long)w * h > PT_IMAGE_MAX_PIXELS) {
        pt_image_too_many_pixels(c->msg, sizeof c->msg, (int)w, (int)h);
        return 1;
    }
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(c->png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(c->png);
    if (png_get_valid(c->png, c->info, PNG_INFO_tRNS)) {
        c->trns = 1;
        png_set_tRNS_to_alpha(c->png);
    }
    if (depth == 16) png_set_strip_16(c->png);
    png_set_interlace_handling(c->png);
    png_read_update_info(c->png, c->info);
    int ch = png_get_channels(c->png, c->info);
    size_t rowbytes = png_get_rowbytes(c->png, c->info);
    if (ch < 1 || ch > 4 || png_get_bit_depth(c->png, c->info) != 8 ||
        rowbytes != (size_t)w * (size_t)ch) {
        snprintf(c->msg, sizeof c->msg, "unexpected PNG layout after conversion (%d channels)",
                 ch);
        return 1;
    }
    c->pixels = malloc(rowbytes * h);
    c->rows = malloc(sizeof *c->rows * h);
    if (!c->pixels || !c->rows) {
        snprintf(c->msg, sizeof c->msg, "out of memory for %ux%u pixels", (unsigned)w,
                 (unsigned)h);
        return 1;
    }
    for (png_uint_32 y = 0; y < h; y++) c->rows[y] = c->pixels + (size_t)y * rowbytes;
    png_read_image(c->png, c->rows);
    png_read_end(c->png, NULL);
    c->width = (int)w;
    c->height = (int)h;
    c->channels = ch;
    return 0;
}

static pt_status load_png(const char *path, FILE *f, pt_image *out, pt_image_source *src, pt_error *err)
{
    png_ctx c;
    memset(&c, 0, sizeof c);
    c.f = f;
    c.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &c, png_error_fn, png_warning_fn);
    if (c.png) c.info = png_create_info_struct(c.png);
    if (!c.png || !c.info) {
        png_destroy_read_struct(c.png ? &c.png : NULL, NULL, NULL);
        return pt_fail(err, PT_ERR_NOMEM, "%s: out of memory for the PNG decoder", path);
    }
    int bad = png_decode(&c);
    png_destroy_read_struct(&c.png, &c.info, NULL);
    free(c.rows);
    if (bad) {
        free(c.pixels);
        return pt_fail(err, PT_ERR_FORMAT, "%s: bad PNG image: %s", path, c.msg);
    }
    out->pixels = c.pixels;
    out->width = c.width;
    out->height = c.height;
    out->channels = c.channels;
    if (src) {
        snprintf(src->format, sizeof src->format, "PNG");
        src->bit_depth = c.depth;
        src->color = (c.ctype & PNG_COLOR_MASK_COLOR) != 0;
        src->palette = c.ctype == PNG_COLOR_TYPE_PALETTE;
        src->alpha = (c.ctype & PNG_COLOR_MASK_ALPHA) != 0 || c.trns;
    }
    return PT_OK;
}

/* ---- JPEG ---- */

typedef struct jpeg_ctx {
    struct jpeg_error_mgr jerr; /* first, so that cinfo->err points at the context */
    jmp_buf jump;
    struct jpeg_decompress_struct cinfo;
    int created;
    FILE *f;
    uint8_t *pixels, *cmyk_row;
    int width, height, channels, cmyk;
    char msg[JMSG_LENGTH_MAX];
    char damage[JMSG_LENGTH_MAX]; /* first warning that means lost image data */
} jpeg_ctx;

static void jpeg_error_exit_fn(j_common_ptr cinfo)
{
    jpeg_ctx *c = (jpeg_ctx *)cinfo->err;
    c->jerr.format_message(cinfo, c->msg);
    longjmp(c->jump, 1);
}

static void jpeg_emit_message_fn(j_common_ptr cinfo, int level)
{
    jpeg_ctx *c = (jpeg_ctx *)cinfo->err;
    if (level != -1) return; /* trace messages */
    c->jerr.num_warnings++;
    int code = c->jerr.msg_code;
    /* Truncated or corrupt entropy-coded data: libjpeg fills the rest with gray and goes on;
     * we refuse such an image. Harmless oddities (extra bytes before a marker) pass. */
    if (!c->damage[0] && (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER ||
                          code == JWRN_HUFF_BAD_CODE || code == JWRN_MUST_RESYNC))
        c->jerr.format_message(cinfo, c->damage);
}

static void jpeg_output_message_fn(j_common_ptr cinfo)
{
    (void)cinfo; /* the library never prints */
}

static int jpeg_decode(jpeg_ctx *c)
{
    if (setjmp(c->jump)) return 1;
    jpeg_create_decompress(&c->cinfo);
    c->created = 1;
    /* Progressive files keep every coefficient in memory (2 bytes a sample): bound what a
     * forged one can take to what the largest image allowed needs. */
    c->cinfo.mem->max_memory_to_use = (long)(PT_IMAGE_MAX_PIXELS * 3 * 2);
    jpeg_stdio_src(&c->cinfo, c->f);
    jpeg_read_header(&c->cinfo, TRUE);
    struct jpeg_decompress_struct *ci = &c->cinfo;
    if (ci->image_width == 0 || ci->image_height == 0 || ci->image_width > PT_IMAGE_MAX_SIDE ||
        ci->image_height > PT_IMAGE_MAX_SIDE) {
        snprintf(c->msg, sizeof c->msg, "image of %ux%u pixels, at most %dx%d supported",
                 (unsigned)ci->image_width, (unsigned)ci->image_height, PT_IMAGE_MAX_SIDE,
                 PT_IMAGE_MAX_SIDE);
        return 1;
    }
    if ((long long)ci->image_width * ci->image_height > PT_IMAGE_MAX_PIXELS) {
        pt_image_too_many_pixels(c->msg, sizeof c->msg, (int)ci->image_width, (int)ci->image_height);
        return 1;
    }
    int cmyk = 0;
    switch (ci->jpeg_color_space) {
    case JCS_GRAYSCALE: ci->out_color_space = JCS_GRAYSCALE; break;
    case JCS_CMYK:
    case JCS_YCCK:
        ci->out_color_space = JCS_CMYK;
        cmyk = 1;
        break;
    default: ci->out_color_space = JCS_RGB; break;
    }
    jpeg_start_decompress(ci);
    int comps = ci->output_components;
    if (comps != (cmyk ? 4 : ci->out_color_space == JCS_GRAYSCALE ? 1 : 3)) {
        snprintf(c->msg, sizeof c->msg, "unexpected %d output components", comps);
        return 1;
    }
    int w = (int)ci->output_width, h = (int)ci->output_height, ch = cmyk ? 3 : comps;
    c->pixels = malloc((size_t)w * (size_t)h * (size_t)ch);
    if (cmyk) c->cmyk_row = malloc((size_t)w * 4);
    if (!c->pixels || (cmyk && !c->cmyk_row)) {
        snprintf(c->msg, sizeof c->msg, "out of memory for %dx%d pixels", w, h);
        return 1;
    }
    while (ci->output_scanline < ci->output_height) {
        /* Lost image data refuses the image (load_jpeg): libjpeg would go on making gray rows
         * up to the height the header claims, seconds for a few hundred bytes claiming 16384^2. */
        if (c->damage[0]) return 0;
        uint8_t *dst = c->pixels + (size_t)ci->output_scanline * (size_t)w * (size_t)ch;
        JSAMPROW row = cmyk ? c->cmyk_row : dst;
        if (jpeg_read_scanlines(ci, &row, 1) != 1) {
            snprintf(c->msg, sizeof c->msg, "no scanline decoded");
            return 1;
        }
        if (cmyk) {
            /* Adobe's writers store inverted inks (255 = none), which an Adobe marker tells. */
            int inverted = ci->saw_Adobe_marker;
            for (int x = 0; x < w; x++) {
                const uint8_t *p = c->cmyk_row + 4 * x;
                unsigned k = inverted ? p[3] : 255u - p[3];
                for (int j = 0; j < 3; j++) {
                    unsigned v = inverted ? p[j] : 255u - p[j];
                    dst[3 * x + j] = (uint8_t)((v * k + 127) / 255);
                }
            }
        }
    }
    jpeg_finish_decompress(ci);
    c->cmyk = cmyk;
    c->width = w;
    c->height = h;
    c->channels = ch;
    return 0;
}

static pt_status load_jpeg(const char *path, FILE *f, pt_image *out, pt_image_source *src, pt_error *err)
{
    jpeg_ctx *c = calloc(1, sizeof *c);
    if (!c) return pt_fail(err, PT_ERR_NOMEM, "%s: out of memory for the JPEG decoder", path);
    c->f = f;
    c->cinfo.err = jpeg_std_error(&c->jerr);
    c->jerr.error_exit = jpeg_error_exit_fn;
    c->jerr.emit_message = jpeg_emit_message_fn;
    c->jerr.output_message = jpeg_output_message_fn;
    int bad = jpeg_decode(c);
    if (c->created) jpeg_destroy_decompress(&c->cinfo);
    free(c->cmyk_row);
    pt_status s = PT_OK;
    if (bad)
        s = pt_fail(err, PT_ERR_FORMAT, "%s: bad JPEG image: %s", path, c->msg);
    else if (c->damage[0])
        s = pt_fail(err, PT_ERR_FORMAT, "%s: damaged JPEG image: %s", path, c->damage);
    if (s != PT_OK) {
        free(c->pixels);
    } else {
        out->pixels = c->pixels;
        out->width = c->width;
        out->height = c->height;
        out->channels = c->channels;
        if (src) {
            snprintf(src->format, sizeof src->format, "JPEG");
            src->bit_depth = 8;
            src->color = c->channels == 3;
            src->cmyk = c->cmyk;
        }
    }
    free(c);
    return s;
}

/* What a file that is neither PNG nor JPEG looks like, from its first n bytes (n > 0), as a
 * phrase ("a text file"), or NULL when nothing is recognised. *image: 1 for an image format
 * that could be converted. */
static const char *sniff(const uint8_t *b, size_t n, int *image)
{
    *image = 1;
#define HAS(off, lit) (n >= (off) + sizeof(lit) - 1 && memcmp(b + (off), lit, sizeof(lit) - 1) == 0)
    if (HAS(0, "GIF87a") || HAS(0, "GIF89a")) return "a GIF image";
    if (HAS(0, "RIFF") && HAS(8, "WEBP")) return "a WebP image";
    if (HAS(0, "BM") && n >= 26) return "a BMP image";
    if (HAS(0, "II*\0") || HAS(0, "MM\0*")) return "a TIFF image";
    if (HAS(4, "ftypavif") || HAS(4, "ftypheic") || HAS(4, "ftypheix") || HAS(4, "ftypmif1"))
        return "a HEIF/AVIF image";
    if (HAS(4, "ftyp")) return "an MP4/QuickTime video or similar container";
    if (HAS(0, "\0\0\0\x0cjP  ") || HAS(0, "\xff\x4f\xff\x51")) return "a JPEG 2000 image";
    *image = 0;
    if (HAS(0, "\x89PNG")) return "a damaged PNG file (its signature is cut or altered)";
    if (HAS(0, "%PDF-")) return "a PDF document";
    if (HAS(0, "\0\0\x08\x03")) return "an IDX images file (give it as idx:FILE or idx:FILE:INDEX)";
    if (HAS(0, "\0\0\x08\x01")) return "an IDX labels file";
    if (HAS(0, "\x1f\x8b")) return "a gzip-compressed file (an IDX images file.gz is given as idx:FILE[:INDEX])";
    if (HAS(0, "PK\x03\x04")) return "a ZIP archive";
    if (HAS(0, "\x7f" "ELF")) return "an executable (ELF)";
    if (n >= 3 && b[0] == 'P' && b[1] >= '1' && b[1] <= '6' && (b[2] == '\n' || b[2] == ' ' || b[2] == '\r')) {
        *image = 1;
        return "a PNM/PGM/PPM image";
    }
#undef HAS
    /* Text: no NUL or other control bytes but whitespace, and valid UTF-8 except perhaps a
     * sequence cut at the end of what was read. */
    for (size_t i = 0; i < n; i++)
        if ((b[i] < 0x20 && b[i] != '\n' && b[i] != '\r' && b[i] != '\t' && b[i] != '\f') || b[i] == 0x7f) return NULL;
    size_t valid = n;
    while (valid > 0 && n - valid < 4 && !pt_utf8_valid((const char *)b, valid)) valid--;
    if (valid == 0 || !pt_utf8_valid((const char *)b, valid)) return NULL;
    const char *t = (const char *)b;
    for (size_t i = 0; i + 4 <= n; i++)
        if (!memcmp(t + i, "<svg", 4)) {
            *image = 1;
            return "an SVG (vector) image";
        }
    if (n >= 5 && (!memcmp(t, "<html", 5) || !memcmp(t, "<!DOC", 5) || !memcmp(t, "<!doc", 5)))
        return "an HTML page";
    return "a text file";
}

pt_status pt_image_load(const char *path, pt_image *out, pt_error *err)
{
    return pt_image_load_ex(path, out, NULL, err);
}

void pt_image_too_many_pixels(char *msg, size_t cap, int width, int height)
{
    snprintf(msg, cap, "image of %dx%d pixels, more than the %lld pixels (8192x8192) supported", width, height,
             (long long)PT_IMAGE_MAX_PIXELS);
}

pt_status pt_image_load_ex(const char *path, pt_image *out, pt_image_source *src, pt_error *err)
{
    memset(out, 0, sizeof *out);
    if (src) memset(src, 0, sizeof *src);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return pt_fail(err, PT_ERR_FORMAT, "%s: a directory, expected a PNG or JPEG image file", path);
    int fd;
    PT_TRY(pt_open_input(path, PT_INPUT_FILE, "image", &fd, err));
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return pt_fail(err, PT_ERR_NOMEM, "cannot read image %s: %s", path, strerror(errno));
    }
    uint8_t magic[512];
    size_t n = fread(magic, 1, sizeof magic, f);
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    pt_status s;
    if (n >= 8 && memcmp(magic, png_magic, 8) == 0) {
        rewind(f);
        s = load_png(path, f, out, src, err);
    } else if (n >= 3 && magic[0] == 0xff && magic[1] == 0xd8 && magic[2] == 0xff) {
        rewind(f);
        s = load_jpeg(path, f, out, src, err);
    } else if (n == 0) {
        s = pt_fail(err, PT_ERR_FORMAT, "%s: an empty file, expected a PNG or JPEG image", path);
    } else {
        int image = 0;
        const char *what = sniff(magic, n, &image);
        if (what && image) {
            s = pt_fail(err, PT_ERR_FORMAT, "%s: %s; only PNG and JPEG images are read (convert it to PNG)", path,
                        what);
        } else if (what) {
            s = pt_fail(err, PT_ERR_FORMAT, "%s: %s, not a PNG or JPEG image", path, what);
        } else {
            char hex[8 * 3 + 1] = "";
            for (size_t i = 0; i < n && i < 4; i++) snprintf(hex + 3 * i, 4, " %02x", magic[i]);
            s = pt_fail(err, PT_ERR_FORMAT,
                        "%s: not a PNG or JPEG image (first bytes%s; the type is recognised by "
                        "content, not by name)",
                        path, hex);
        }
    }
    fclose(f);
    if (s == PT_OK && src) {
        src->width = out->width;
        src->height = out->height;
    }
    return s;
}

pt_status pt_idx_image(const char *idx_path, int64_t index, pt_image *out, pt_error *err)
{
    memset(out, 0, sizeof *out);
    pt_idx h;
    PT_TRY(pt_idx_read_header(idx_path, PT_IDX_MAGIC_U8_3D, &h, err));
    if (index < 0 || index >= h.dim[0])
        return pt_fail(err, PT_ERR_INVALID,
                       "%s: image index %lld out of range: the file holds %lld images (0..%lld)",
                       idx_path, (long long)index, (long long)h.dim[0],
                       (long long)h.dim[0] - 1);
    pt_idx one;
    PT_TRY(pt_idx_read_items(idx_path, PT_IDX_MAGIC_U8_3D, index, 1, &one, err));
    out->pixels = one.data;
    out->height = (int)one.dim[1];
    out->width = (int)one.dim[2];
    out->channels = 1;
    return PT_OK;
}

pt_status pt_image_load_input(const char *input, pt_image *out, pt_error *err)
{
    return pt_image_load_input_ex(input, out, NULL, err);
}

pt_status pt_image_load_input_ex(const char *input, pt_image *out, pt_image_source *src, pt_error *err)
{
    if (strncmp(input, "idx:", 4) != 0) return pt_image_load_ex(input, out, src, err);
    if (src) memset(src, 0, sizeof *src);
    const char *spec = input + 4;
    const char *colon = strrchr(spec, ':');
    int64_t index = 0;
    size_t len = strlen(spec);
    if (colon && colon[1]) {
        char *end;
        errno = 0;
        long long v = strtoll(colon + 1, &end, 10);
        if (*end == '\0' && errno == 0) {
            if (v < 0)
                return pt_fail(err, PT_ERR_INVALID, "%s: image index must be >= 0", input);
            index = v;
            len = (size_t)(colon - spec);
        }
    }
    char path[4096];
    if (len == 0 || len >= sizeof path)
        return pt_fail(err, PT_ERR_INVALID, "%s: expected idx:FILE or idx:FILE:INDEX", input);
    memcpy(path, spec, len);
    path[len] = '\0';
    PT_TRY(pt_idx_image(path, index, out, err));
    if (src) {
        snprintf(src->format, sizeof src->format, "IDX");
        src->width = out->width;
        src->height = out->height;
        src->bit_depth = 8;
    }
    return PT_OK;
}

void pt_image_describe_changes(const pt_image *img, const pt_image_source *src, int channels, int height,
                               int width, pt_image_changes *out)
{
    memset(out, 0, sizeof *out);
    out->from_width = img->width;
    out->from_height = img->height;
    out->to_width = width;
    out->to_height = height;
    out->resized = img->width != width || img->height != height;
    out->scale_x = img->width > 0 ? (double)width / img->width : 0;
    out->scale_y = img->height > 0 ? (double)height / img->height : 0;
    if (img->width > 0 && img->height > 0 && width > 0 && height > 0) {
        double a = (double)img->width / img->height, b = (double)width / height;
        out->aspect_change = a > b ? a / b : b / a;
    }
    /* axis_filter: bilinear where an axis grows or keeps its size, a triangle filter as wide
     * as the shrink factor (an area average) where it shrinks */
    const int shrink_x = width < img->width, shrink_y = height < img->height;
    if (!out->resized) snprintf(out->resampling, sizeof out->resampling, "none");
    else if (shrink_x == shrink_y) snprintf(out->resampling, sizeof out->resampling, "%s", shrink_x ? "area average" : "bilinear");
    else
        snprintf(out->resampling, sizeof out->resampling, "%s across, %s down", shrink_x ? "area average" : "bilinear",
                 shrink_y ? "area average" : "bilinear");
    const int color = img->channels >= 3, alpha = img->channels == 2 || img->channels == 4;
    out->to_gray = channels == 1 && color;
    out->to_rgb = channels == 3 && !color;
    out->alpha_dropped = alpha;
    if (src) {
        out->palette_expanded = src->palette;
        out->depth_reduced = src->bit_depth > 8;
        out->depth_expanded = src->bit_depth > 0 && src->bit_depth < 8 && !src->palette ? src->bit_depth : 0;
        out->cmyk_converted = src->cmyk;
    }
}

int pt_image_changes_phrases(const pt_image_changes *c, char phrase[][PT_IMAGE_PHRASE], int max)
{
    int n = 0;
#define PHRASE(...)                                                       \
    do {                                                                  \
        if (n < max) snprintf(phrase[n++], PT_IMAGE_PHRASE, __VA_ARGS__); \
    } while (0)
    if (c->cmyk_converted) PHRASE("CMYK to RGB");
    if (c->palette_expanded) PHRASE("palette expanded to RGB");
    if (c->depth_reduced) PHRASE("16-bit samples reduced to 8 bits");
    if (c->depth_expanded) PHRASE("%d-bit gray scaled to 8 bits", c->depth_expanded);
    if (c->alpha_dropped) PHRASE("alpha channel dropped (transparent pixels keep their colour)");
    if (c->to_gray) PHRASE("RGB to gray (luma 0.299 R + 0.587 G + 0.114 B)");
    if (c->to_rgb) PHRASE("gray replicated to RGB");
    if (c->resized) {
        double a = (double)c->from_width / c->from_height, b = (double)c->to_width / c->to_height;
        if (c->aspect_change > 1.01)
            PHRASE("resized from %dx%d to %dx%d (%s; aspect ratio %.2f %s to %.2f)", c->from_width, c->from_height,
                   c->to_width, c->to_height, c->resampling, a, a > b ? "squeezed" : "stretched", b);
        else
            PHRASE("resized from %dx%d to %dx%d (%s)", c->from_width, c->from_height, c->to_width, c->to_height,
                   c->resampling);
    }
#undef PHRASE
    return n;
}

/* ---- conversion to a model input ---- */

/* Resampling weights along one axis: output o reads in[start[o] .. start[o]+taps) with
 * weights w[o*maxtaps ..]. A triangle filter of radius max(1, in/out) around the output
 * pixel's centre: plain bilinear when enlarging, an area-like average when shrinking. */
typedef struct axis_filter {
    int *start, *taps;
    float *w;
    int maxtaps;
} axis_filter;

static void axis_filter_free(axis_filter *a)
{
    free(a->start);
    free(a->taps);
    free(a->w);
}

static int axis_filter_make(axis_filter *a, int in, int out)
{
    double scale = (double)in / out, support = scale > 1.0 ? scale : 1.0;
    a->maxtaps = (int)ceil(2.0 * support) + 2;
    a->start = malloc(sizeof *a->start * (size_t)out);
    a->taps = malloc(sizeof *a->taps * (size_t)out);
    a->w = malloc(sizeof *a->w * (size_t)out * (size_t)a->maxtaps);
    if (!a->start || !a->taps || !a->w) return 0;
    for (int o = 0; o < out; o++) {
        double center = (o + 0.5) * scale;
        int lo = (int)ceil(center - support - 0.5), hi = (int)floor(center + support - 0.5);
        if (lo < 0) lo = 0;
        if (hi > in - 1) hi = in - 1;
        float *w = a->w + (size_t)o * a->maxtaps;
        double wsum = 0;
        int n = 0;
        for (int i = lo; i <= hi && n < a->maxtaps; i++) {
            double t = fabs(i + 0.5 - center) / support;
            double v = t < 1.0 ? 1.0 - t : 0.0;
            w[n++] = (float)v;
            wsum += v;
        }
        a->start[o] = lo;
        a->taps[o] = n;
        /* wsum > 0: the source pixel nearest the centre is within 0.5 <= support of it */
        for (int k = 0; k < n; k++) w[k] = (float)(w[k] / wsum);
    }
    return 1;
}

pt_status pt_image_to_input(const pt_image *img, int channels, int height, int width,
                            const float *mean, const float *std, float *out, pt_error *err)
{
    if (!img || !img->pixels || img->width < 1 || img->height < 1 || img->channels < 1 ||
        img->channels > 4)
        return pt_fail(err, PT_ERR_INVALID, "image to convert is empty or malformed");
    if (channels != 1 && channels != 3)
        return pt_fail(err, PT_ERR_INVALID, "model input must have 1 or 3 channels, not %d",
                       channels);
    if (height < 1 || width < 1 || height > PT_IMAGE_MAX_SIDE || width > PT_IMAGE_MAX_SIDE)
        return pt_fail(err, PT_ERR_INVALID, "model input size %dx%d outside 1..%d", height, width,
                       PT_IMAGE_MAX_SIDE);
    for (int c = 0; c < channels; c++)
        if (!(std[c] > 0.0f))
            return pt_fail(err, PT_ERR_INVALID, "normalisation std[%d] = %g must be > 0", c,
                           (double)std[c]);
    int iw = img->width, ih = img->height, sc = img->channels;
    int src_color = sc >= 3;
    axis_filter fx = {0}, fy = {0};
    float *plane = malloc(sizeof *plane * (size_t)iw * (size_t)ih);
    float *tmp = malloc(sizeof *tmp * (size_t)ih * (size_t)width);
    pt_status s = PT_OK;
    if (!plane || !tmp || !axis_filter_make(&fx, iw, width) || !axis_filter_make(&fy, ih, height)) {
        s = pt_fail(err, PT_ERR_NOMEM, "out of memory converting a %dx%d image", iw, ih);
        goto done;
    }
    for (int c = 0; c < channels; c++) {
        /* 1. this channel of the converted image, as floats in [0, 255] */
        for (int64_t p = 0; p < (int64_t)iw * ih; p++) {
            const uint8_t *px = img->pixels + p * sc;
            float v;
            if (channels == 1 && src_color)
                v = 0.299f * px[0] + 0.587f * px[1] + 0.114f * px[2];
            else
                v = px[src_color ? c : 0];
            plane[p] = v;
        }
        /* 2. horizontal, then vertical resampling */
        for (int y = 0; y < ih; y++) {
            const float *row = plane + (int64_t)y * iw;
            for (int x = 0; x < width; x++) {
                const float *w = fx.w + (size_t)x * fx.maxtaps;
                const float *src = row + fx.start[x];
                float acc = 0;
                for (int k = 0; k < fx.taps[x]; k++) acc += w[k] * src[k];
                tmp[(int64_t)y * width + x] = acc;
            }
        }
        float m = mean[c], sd = std[c];
        float *dst = out + (int64_t)c * height * width;
        for (int y = 0; y < height; y++) {
            const float *w = fy.w + (size_t)y * fy.maxtaps;
            for (int x = 0; x < width; x++) {
                float acc = 0;
                for (int k = 0; k < fy.taps[y]; k++)
                    acc += w[k] * tmp[(int64_t)(fy.start[y] + k) * width + x];
                /* 3. the loader's normalisation, same expression */
                dst[(int64_t)y * width + x] = (acc / 255.0f - m) / sd;
            }
        }
    }
done:
    axis_filter_free(&fx);
    axis_filter_free(&fy);
    free(plane);
    free(tmp);
    return s;
}

pt_status pt_image_to_u8(const pt_image *img, int channels, int height, int width, uint8_t *out,
                         pt_error *err)
{
    if (!img || !img->pixels || img->width < 1 || img->height < 1 || img->channels < 1 ||
        img->channels > 4)
        return pt_fail(err, PT_ERR_INVALID, "image to convert is empty or malformed");
    if (channels != 1 && channels != 3)
        return pt_fail(err, PT_ERR_INVALID, "target must have 1 or 3 channels, not %d", channels);
    if (height < 1 || width < 1 || height > PT_IMAGE_MAX_SIDE || width > PT_IMAGE_MAX_SIDE)
        return pt_fail(err, PT_ERR_INVALID, "target size %dx%d outside 1..%d", height, width,
                       PT_IMAGE_MAX_SIDE);
    int iw = img->width, ih = img->height, sc = img->channels, src_color = sc >= 3;
    int64_t plane_px = (int64_t)iw * ih;
    if (iw == width && ih == height) {
        /* The common case (TinyImageNet is stored at 64x64): only a channel shuffle. */
        for (int c = 0; c < channels; c++) {
            uint8_t *dst = out + (int64_t)c * plane_px;
            const uint8_t *px = img->pixels;
            if (channels == 1 && src_color) {
                for (int64_t p = 0; p < plane_px; p++, px += sc)
                    dst[p] = (uint8_t)(0.299f * px[0] + 0.587f * px[1] + 0.114f * px[2] + 0.5f);
            } else {
                int k = src_color ? c : 0;
                for (int64_t p = 0; p < plane_px; p++) dst[p] = px[p * sc + k];
            }
        }
        return PT_OK;
    }
    axis_filter fx = {0}, fy = {0};
    float *plane = malloc(sizeof *plane * (size_t)plane_px);
    float *tmp = malloc(sizeof *tmp * (size_t)ih * (size_t)width);
    pt_status s = PT_OK;
    if (!plane || !tmp || !axis_filter_make(&fx, iw, width) || !axis_filter_make(&fy, ih, height)) {
        s = pt_fail(err, PT_ERR_NOMEM, "out of memory resizing a %dx%d image", iw, ih);
        goto done;
    }
    for (int c = 0; c < channels; c++) {
        for (int64_t p = 0; p < plane_px; p++) {
            const uint8_t *px = img->pixels + p * sc;
            plane[p] = channels == 1 && src_color ? 0.299f * px[0] + 0.587f * px[1] + 0.114f * px[2]
                                                  : px[src_color ? c : 0];
        }
        for (int y = 0; y < ih; y++) {
            const float *row = plane + (int64_t)y * iw;
            for (int x = 0; x < width; x++) {
                const float *w = fx.w + (size_t)x * fx.maxtaps;
                const float *src = row + fx.start[x];
                float acc = 0;
                for (int k = 0; k < fx.taps[x]; k++) acc += w[k] * src[k];
                tmp[(int64_t)y * width + x] = acc;
            }
        }
        uint8_t *dst = out + (int64_t)c * height * width;
        for (int y = 0; y < height; y++) {
            const float *w = fy.w + (size_t)y * fy.maxtaps;
            for (int x = 0; x < width; x++) {
                float acc = 0;
                for (int k = 0; k < fy.taps[y]; k++)
                    acc += w[k] * tmp[(int64_t)(fy.start[y] + k) * width + x];
                acc += 0.5f;
                dst[(int64_t)y * width + x] = (uint8_t)(acc < 0 ? 0 : acc > 255 ? 255 : acc);
            }
        }
    }
done:
    axis_filter_free(&fx);
    axis_filter_free(&fy);
    free(plane);
    free(tmp);
    return s;
}
