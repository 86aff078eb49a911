/* Procedural class images for synthetic datasets: each class is one combination of a
 * background hue, a foreground colour and a pattern (stripes, checkerboards, rings, blobs,
 * shapes...); each image jitters position, scale, angle, hue, lighting and pixel noise.
 * An image is a pure function of (seed, split, class, index, size): no state, no I/O. */
#ifndef PT_SYNTH_IMAGE_H
#define PT_SYNTH_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#define PT_SYNTH_HUES 10
#define PT_SYNTH_PATTERNS 20
#define PT_SYNTH_FG_VARIANTS 5
/* Every class below this count is a distinct (background, foreground, pattern) triple. */
#define PT_SYNTH_MAX_CLASSES (PT_SYNTH_HUES * PT_SYNTH_PATTERNS * PT_SYNTH_FG_VARIANTS)
#define PT_SYNTH_MIN_SIZE 8
#define PT_SYNTH_MAX_SIZE 1024

typedef struct pt_synth_image {
    int gray;   /* 1: stored as a single-channel picture */
    int box[4]; /* x0, y0, x1, y1 (inclusive pixels): the object, or the whole image for a texture */
} pt_synth_image;

/* A 64-bit key for (seed, a, b, c), e.g. (seed, split, class, index); and the splitmix64
 * step that draws from a key used as the state. */
uint64_t pt_synth_key(uint64_t seed, uint64_t a, uint64_t b, uint64_t c);
uint64_t pt_synth_next(uint64_t *state);
/* Uniform integer in [0, n), n >= 1. */
uint32_t pt_synth_below(uint64_t *state, uint32_t n);

/* "yellow stripes-45 on blue": the class's human name (no tab or comma). */
void pt_synth_class_name(int cls, char *buf, size_t n);

/* The image's gray flag and box without drawing it (cheap). cls < PT_SYNTH_MAX_CLASSES,
 * size in PT_SYNTH_MIN_SIZE..PT_SYNTH_MAX_SIZE, gray_fraction in [0, 1]. */
void pt_synth_describe(uint64_t seed, int split, int cls, int64_t index, int size, double gray_fraction,
                       pt_synth_image *info);

/* Draws the image into pixels (size*size*3 bytes, row-major RGB; for a gray image the first
 * size*size bytes hold it) and fills info as pt_synth_describe does. */
void pt_synth_render(uint64_t seed, int split, int cls, int64_t index, int size, double gray_fraction,
                     uint8_t *pixels, pt_synth_image *info);

#endif
