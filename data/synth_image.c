/* Procedural class images (see synth_image.h). The per-image parameters come from one
 * splitmix64 stream keyed by (seed, split, class, index) and the pixel noise from a second
 * one, so the parameters (and the box) can be drawn without rendering. Single precision,
 * no contraction-sensitive reductions: the same build gives the same bytes on any thread. */
#include "data/synth_image.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define PI_F 3.14159265358979f

uint64_t pt_synth_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t pt_synth_key(uint64_t seed, uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t s = seed ^ 0x5EED5EED5EED5EEDull;
    uint64_t k = pt_synth_next(&s);
    s = k ^ a;
    k = pt_synth_next(&s);
    s = k ^ b;
    k = pt_synth_next(&s);
    s = k ^ c;
    return pt_synth_next(&s);
}

uint32_t pt_synth_below(uint64_t *state, uint32_t n)
{
    return (uint32_t)(((pt_synth_next(state) >> 32) * (uint64_t)n) >> 32);
}

/* Uniform in [lo, hi). */
static float uni(uint64_t *s, float lo, float hi)
{
    return lo + (hi - lo) * (float)(pt_synth_next(s) >> 40) * (1.0f / 16777216.0f);
}

static const char *const hue_names[PT_SYNTH_HUES] = {"red",   "orange", "yellow", "lime",   "green",
                                                     "cyan",  "azure",  "blue",   "violet", "magenta"};

enum {
    PAT_STRIPES_0, PAT_STRIPES_45, PAT_STRIPES_90, PAT_STRIPES_135, PAT_WIDE_STRIPES_22, PAT_WIDE_STRIPES_112,
    PAT_CHECKER, PAT_DIAMONDS, PAT_RINGS, PAT_WIDE_RINGS, PAT_BLOBS, PAT_SPOTS, PAT_DISC, PAT_SQUARE,
    PAT_TRIANGLE, PAT_PLUS, PAT_RING, PAT_CROSS, PAT_DOTS, PAT_SPOKES
};

static const char *const pattern_names[PT_SYNTH_PATTERNS] = {
    "stripes-0", "stripes-45", "stripes-90", "stripes-135", "wide-stripes-22", "wide-stripes-112",
    "checkerboard", "diamonds", "rings", "wide-rings", "blobs", "spots", "disc", "square",
    "triangle", "plus", "ring", "cross", "dots", "spokes"};

/* Class -> (background hue, pattern, foreground variant). For a fixed variant, the 200
 * classes cover every (hue, pattern) pair once; the first ten classes already differ in both. */
typedef struct class_attr {
    int hue, pattern, fg;
} class_attr;

static class_attr class_attributes(int cls)
{
    class_attr a;
    a.hue = cls % PT_SYNTH_HUES;
    a.pattern = (cls / PT_SYNTH_HUES + 3 * a.hue) % PT_SYNTH_PATTERNS;
    a.fg = (cls / (PT_SYNTH_HUES * PT_SYNTH_PATTERNS)) % PT_SYNTH_FG_VARIANTS;
    return a;
}

/* Foreground hue offsets in hue families (variants 3 and 4 are white and black). */
static const int fg_offset[3] = {5, 3, 7};

void pt_synth_class_name(int cls, char *buf, size_t n)
{
    class_attr a = class_attributes(cls);
    const char *fg = a.fg == 3 ? "white" : a.fg == 4 ? "black" : hue_names[(a.hue + fg_offset[a.fg]) % PT_SYNTH_HUES];
    snprintf(buf, n, "%s %s on %s", fg, pattern_names[a.pattern], hue_names[a.hue]);
}

#define MAX_BLOBS 16

typedef struct params {
    int pattern, gray, nblobs, distractor, distractor_square;
    float bg[3], fg[3], dcol[3];
    float grad_x, grad_y, brightness, opacity, noise;
    float cx, cy, scale, cosa, sina, phase, phase2;
    float bx[MAX_BLOBS], by[MAX_BLOBS], br[MAX_BLOBS];
    float dx, dy, dr;
    int box[4];
} params;

static void hsv_to_rgb(float h, float s, float v, float rgb[3])
{
    h = h - 360.0f * floorf(h / 360.0f);
    float c = v * s, hp = h / 60.0f, x = c * (1.0f - fabsf(fmodf(hp, 2.0f) - 1.0f)), m = v - c;
    float r = 0, g = 0, b = 0;
    switch ((int)hp) {
    case 0: r = c; g = x; break;
    case 1: r = x; g = c; break;
    case 2: g = c; b = x; break;
    case 3: g = x; b = c; break;
    case 4: r = x; b = c; break;
    default: r = c; b = x; break;
    }
    rgb[0] = 255.0f * (r + m);
    rgb[1] = 255.0f * (g + m);
    rgb[2] = 255.0f * (b + m);
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* The box of a centred object of extent (ex, ey) in image units, in pixels. */
static void set_box(params *p, int size, float x0, float y0, float x1, float y1)
{
    p->box[0] = clampi((int)floorf((x0 + 0.5f) * (float)size), 0, size - 1);
    p->box[1] = clampi((int)floorf((y0 + 0.5f) * (float)size), 0, size - 1);
    p->box[2] = clampi((int)floorf((x1 + 0.5f) * (float)size), 0, size - 1);
    p->box[3] = clampi((int)floorf((y1 + 0.5f) * (float)size), 0, size - 1);
}

/* The object's extent around (cx, cy), in image units (0 for textures). */
static float object_radius(const params *p)
{
    float s = p->scale, rot = fabsf(p->cosa) + fabsf(p->sina);
    switch (p->pattern) {
    case PAT_DISC: return 0.24f * s;
    case PAT_SQUARE: return 0.2f * s * rot;
    case PAT_TRIANGLE: return 0.3f * s;
    case PAT_PLUS:
    case PAT_CROSS: return sqrtf(0.3f * 0.3f + 0.07f * 0.07f) * s;
    case PAT_RING: return (0.22f + 0.06f) * s;
    default: return 0.0f;
    }
}

static void draw_params(uint64_t seed, int split, int cls, int64_t index, int size, double gray_fraction,
                        params *p)
{
    memset(p, 0, sizeof *p);
    uint64_t s = pt_synth_key(seed, (uint64_t)split, (uint64_t)cls, (uint64_t)index);
    class_attr a = class_attributes(cls);
    p->pattern = a.pattern;
    float hue = 36.0f * (float)a.hue + uni(&s, -9.0f, 9.0f);
    hsv_to_rgb(hue, uni(&s, 0.45f, 0.85f), uni(&s, 0.45f, 0.85f), p->bg);
    if (a.fg < 3)
        hsv_to_rgb(36.0f * (float)(a.hue + fg_offset[a.fg]) + uni(&s, -9.0f, 9.0f), uni(&s, 0.6f, 1.0f),
                   uni(&s, 0.6f, 1.0f), p->fg);
    else if (a.fg == 3)
        hsv_to_rgb(uni(&s, 0.0f, 360.0f), uni(&s, 0.0f, 0.12f), uni(&s, 0.88f, 1.0f), p->fg);
    else
        hsv_to_rgb(uni(&s, 0.0f, 360.0f), uni(&s, 0.2f, 0.6f), uni(&s, 0.05f, 0.22f), p->fg);
    p->grad_x = uni(&s, -0.35f, 0.35f);
    p->grad_y = uni(&s, -0.35f, 0.35f);
    p->brightness = uni(&s, 0.8f, 1.2f);
    p->opacity = uni(&s, 0.65f, 1.0f);
    p->noise = uni(&s, 3.0f, 16.0f);
    p->scale = uni(&s, 0.8f, 1.25f);
    p->cx = uni(&s, -0.17f, 0.17f);
    p->cy = uni(&s, -0.17f, 0.17f);
    p->phase = uni(&s, 0.0f, 1.0f);
    p->phase2 = uni(&s, 0.0f, 1.0f);
    float base = 0.0f, jitter = 10.0f;
    switch (p->pattern) {
    case PAT_STRIPES_45: base = 45.0f; break;
    case PAT_STRIPES_90: base = 90.0f; break;
    case PAT_STRIPES_135: base = 135.0f; break;
    case PAT_WIDE_STRIPES_22: base = 22.5f; break;
    case PAT_WIDE_STRIPES_112: base = 112.5f; break;
    case PAT_DIAMONDS: base = 45.0f; break;
    case PAT_SQUARE:
    case PAT_TRIANGLE:
    case PAT_PLUS: jitter = 15.0f; break;
    case PAT_CROSS: base = 45.0f; jitter = 15.0f; break;
    case PAT_RINGS:
    case PAT_WIDE_RINGS:
    case PAT_DISC:
    case PAT_RING:
    case PAT_BLOBS:
    case PAT_SPOTS: jitter = 0.0f; break;
    case PAT_SPOKES: jitter = 30.0f; break;
    default: break;
    }
    float ang = (base + uni(&s, -jitter, jitter)) * (PI_F / 180.0f);
    p->cosa = cosf(ang);
    p->sina = sinf(ang);
    set_box(p, size, -0.5f, -0.5f, 0.5f, 0.5f);
    if (p->pattern == PAT_BLOBS || p->pattern == PAT_SPOTS) {
        int big = p->pattern == PAT_BLOBS;
        p->nblobs = big ? 3 + (int)pt_synth_below(&s, 2) : 10 + (int)pt_synth_below(&s, 7);
        float x0 = 1, y0 = 1, x1 = -1, y1 = -1;
        for (int k = 0; k < p->nblobs; k++) {
            p->br[k] = big ? uni(&s, 0.11f, 0.18f) * p->scale : uni(&s, 0.035f, 0.06f) * p->scale;
            p->bx[k] = uni(&s, -0.4f, 0.4f);
            p->by[k] = uni(&s, -0.4f, 0.4f);
            x0 = fminf(x0, p->bx[k] - p->br[k]);
            y0 = fminf(y0, p->by[k] - p->br[k]);
            x1 = fmaxf(x1, p->bx[k] + p->br[k]);
            y1 = fmaxf(y1, p->by[k] + p->br[k]);
        }
        set_box(p, size, x0, y0, x1, y1);
    } else {
        float r = object_radius(p);
        if (r > 0) set_box(p, size, p->cx - r, p->cy - r, p->cx + r, p->cy + r);
    }
    p->distractor = uni(&s, 0.0f, 1.0f) < 0.3f;
    if (p->distractor) {
        p->distractor_square = (int)pt_synth_below(&s, 2);
        p->dx = uni(&s, -0.42f, 0.42f);
        p->dy = uni(&s, -0.42f, 0.42f);
        p->dr = uni(&s, 0.04f, 0.08f);
        hsv_to_rgb(uni(&s, 0.0f, 360.0f), uni(&s, 0.3f, 1.0f), uni(&s, 0.2f, 1.0f), p->dcol);
    }
    /* Drawn last, so the other parameters do not depend on the fraction. */
    p->gray = (double)uni(&s, 0.0f, 1.0f) < gray_fraction;
}

/* Signed "inside" distance of a periodic band: positive on half of each period. */
static float band(float t, float period)
{
    float f = t - floorf(t);
    return (0.25f - fabsf(f - 0.5f)) * period;
}

/* Signed distance (image units, > 0 inside the foreground) of the pattern at (u, v). */
static float pattern_distance(const params *p, float u, float v)
{
    float px = u - p->cx, py = v - p->cy;
    float x = px * p->cosa + py * p->sina, y = -px * p->sina + py * p->cosa;
    float s = p->scale;
    switch (p->pattern) {
    case PAT_STRIPES_0:
    case PAT_STRIPES_45:
    case PAT_STRIPES_90:
    case PAT_STRIPES_135: return band(x / (0.125f * s) + p->phase, 0.125f * s);
    case PAT_WIDE_STRIPES_22:
    case PAT_WIDE_STRIPES_112: return band(x / (0.25f * s) + p->phase, 0.25f * s);
    case PAT_CHECKER:
    case PAT_DIAMONDS: {
        float c = (p->pattern == PAT_CHECKER ? 0.125f : 0.16f) * s;
        float a = x / c + p->phase, b = y / c + p->phase2;
        float fa = a - floorf(a), fb = b - floorf(b);
        float dist = fminf(fminf(fa, 1.0f - fa), fminf(fb, 1.0f - fb)) * c;
        return (((long)floorf(a) + (long)floorf(b)) & 1) ? dist : -dist;
    }
    case PAT_RINGS:
    case PAT_WIDE_RINGS: {
        float per = (p->pattern == PAT_RINGS ? 0.1f : 0.18f) * s;
        return band(sqrtf(px * px + py * py) / per + p->phase, per);
    }
    case PAT_BLOBS:
    case PAT_SPOTS: {
        float d = -1.0f;
        for (int k = 0; k < p->nblobs; k++) {
            float dx = u - p->bx[k], dy = v - p->by[k];
            d = fmaxf(d, p->br[k] - sqrtf(dx * dx + dy * dy));
        }
        return d;
    }
    case PAT_DISC: return 0.24f * s - sqrtf(x * x + y * y);
    case PAT_SQUARE: return 0.2f * s - fmaxf(fabsf(x), fabsf(y));
    case PAT_TRIANGLE: {
        /* Three half-planes with outward normals at 90, 210 and 330 degrees. */
        float ri = 0.15f * s;
        float d1 = ri - y, d2 = ri - (-0.8660254f * x - 0.5f * y), d3 = ri - (0.8660254f * x - 0.5f * y);
        return fminf(d1, fminf(d2, d3));
    }
    case PAT_PLUS:
    case PAT_CROSS: {
        float w = 0.07f * s, l = 0.3f * s;
        float b1 = fminf(w - fabsf(x), l - fabsf(y)), b2 = fminf(w - fabsf(y), l - fabsf(x));
        return fmaxf(b1, b2);
    }
    case PAT_RING: return 0.06f * s - fabsf(sqrtf(x * x + y * y) - 0.22f * s);
    case PAT_DOTS: {
        float per = 0.2f * s;
        float a = x / per + p->phase, b = y / per + p->phase2;
        float fa = a - floorf(a) - 0.5f, fb = b - floorf(b) - 0.5f;
        return 0.06f * s - sqrtf(fa * fa + fb * fb) * per;
    }
    case PAT_SPOKES: {
        float r = sqrtf(x * x + y * y), k = 6.0f;
        float t = atan2f(y, x) * (k / (2.0f * PI_F)) + p->phase;
        return band(t, 2.0f * PI_F * r / k);
    }
    default: return -1.0f;
    }
}

static float coverage(float d, float size)
{
    float m = 0.5f + d * size; /* a one-pixel soft edge */
    return m < 0.0f ? 0.0f : m > 1.0f ? 1.0f : m;
}

static uint8_t to_byte(float v)
{
    if (!(v > 0.0f)) return 0;
    if (v >= 255.0f) return 255;
    return (uint8_t)(v + 0.5f);
}

void pt_synth_describe(uint64_t seed, int split, int cls, int64_t index, int size, double gray_fraction,
                       pt_synth_image *info)
{
    params p;
    draw_params(seed, split, cls, index, size, gray_fraction, &p);
    info->gray = p.gray;
    memcpy(info->box, p.box, sizeof info->box);
}

void pt_synth_render(uint64_t seed, int split, int cls, int64_t index, int size, double gray_fraction,
                     uint8_t *pixels, pt_synth_image *info)
{
    params p;
    draw_params(seed, split, cls, index, size, gray_fraction, &p);
    info->gray = p.gray;
    memcpy(info->box, p.box, sizeof info->box);
    uint64_t noise = pt_synth_key(seed, (uint64_t)split | 0x100u, (uint64_t)cls, (uint64_t)index);
    const float fs = (float)size, inv = 1.0f / fs, amp = p.noise * (1.0f / 32768.0f); /* std ~0.8 noise */
    for (int yi = 0; yi < size; yi++) {
        float v = ((float)yi + 0.5f) * inv - 0.5f;
        for (int xi = 0; xi < size; xi++) {
            float u = ((float)xi + 0.5f) * inv - 0.5f;
            float m = coverage(pattern_distance(&p, u, v), fs) * p.opacity;
            float light = (1.0f + p.grad_x * u + p.grad_y * v) * p.brightness;
            float dm = 0.0f;
            if (p.distractor) {
                float dx = u - p.dx, dy = v - p.dy;
                float dd = p.distractor_square ? p.dr - fmaxf(fabsf(dx), fabsf(dy))
                                               : p.dr - sqrtf(dx * dx + dy * dy);
                dm = coverage(dd, fs);
            }
            /* Triangular noise: two 16-bit uniforms per channel. */
            uint64_t r1 = pt_synth_next(&noise), r2 = pt_synth_next(&noise);
            float rgb[3];
            for (int c = 0; c < 3; c++) {
                float col = p.bg[c] + (p.fg[c] - p.bg[c]) * m;
                col += (p.dcol[c] - col) * dm;
                float n = (float)((r1 >> (16 * c)) & 0xFFFF) + (float)((r2 >> (16 * c)) & 0xFFFF) - 65535.0f;
                rgb[c] = col * light + n * amp;
            }
            size_t o = (size_t)yi * (size_t)size + (size_t)xi;
            if (p.gray) {
                pixels[o] = to_byte(0.299f * rgb[0] + 0.587f * rgb[1] + 0.114f * rgb[2]);
            } else {
                pixels[3 * o] = to_byte(rgb[0]);
                pixels[3 * o + 1] = to_byte(rgb[1]);
                pixels[3 * o + 2] = to_byte(rgb[2]);
            }
        }
    }
}
