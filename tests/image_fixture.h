/* Test fixture shared by the image-dataset tests: a small TinyImageNet-layout tree of real
 * JPEG files (class colours and stripes plus noise, some saved grayscale), written with
 * TurboJPEG into the test's scratch directory. Include once per test program. */
#ifndef PT_TEST_IMAGE_FIXTURE_H
#define PT_TEST_IMAGE_FIXTURE_H
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

static const char *tmp_path(const char *name)
{
    static char buf[8][2048];
    static int k;
    k = (k + 1) % 8;
    const char *base = getenv("PT_TEST_TMP");
    snprintf(buf[k], sizeof buf[k], "%s/%s", base && *base ? base : "/tmp", name);
    return buf[k];
}

static void mkdirs(const char *path)
{
    char p[2048];
    snprintf(p, sizeof p, "%s", path);
    for (char *q = p + 1; *q; q++)
        if (*q == '/') {
            *q = '\0';
            mkdir(p, 0755);
            *q = '/';
        }
    mkdir(p, 0755);
}

static void rm_rf(const char *path)
{
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", path);
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        return;
    }
    fwrite(data, 1, n, f);
    fclose(f);
}

/* Class colours with distinct luma, so that grayscale copies stay separable. */
static const uint8_t class_rgb[8][3] = {{230, 40, 40}, {40, 200, 60}, {40, 60, 220}, {230, 220, 40},
                                        {30, 30, 30}, {240, 240, 240}, {150, 40, 200}, {40, 200, 200}};

static uint32_t fx_rand(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* A 64x64 image of class c: its colour, a class-specific stripe pattern, noise. */
static void make_pixels(int c, uint32_t seed, uint8_t *rgb, int side)
{
    uint32_t s = seed * 2654435761u + 12345u;
    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++) {
            int stripe = ((c % 2 ? x : y) / (2 + c)) % 2 ? 25 : -25;
            for (int k = 0; k < 3; k++) {
                int v = class_rgb[c][k] + stripe + (int)(fx_rand(&s) % 41) - 20;
                rgb[(y * side + x) * 3 + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
}

/* Writes a JPEG of class c; gray: a single-channel JPEG of the same picture. */
static int write_jpeg(const char *path, int c, uint32_t seed, int gray, int side)
{
    uint8_t rgb[128 * 128 * 3], g[128 * 128];
    make_pixels(c, seed, rgb, side);
    tjhandle tj = tjInitCompress();
    unsigned char *buf = NULL;
    unsigned long size = 0;
    int rc;
    if (gray) {
        for (int i = 0; i < side * side; i++)
            g[i] = (uint8_t)((299 * rgb[3 * i] + 587 * rgb[3 * i + 1] + 114 * rgb[3 * i + 2]) / 1000);
        rc = tjCompress2(tj, g, side, 0, side, TJPF_GRAY, &buf, &size, TJSAMP_GRAY, 92, 0);
    } else {
        rc = tjCompress2(tj, rgb, side, 0, side, TJPF_RGB, &buf, &size, TJSAMP_420, 92, 0);
    }
    if (rc == 0) write_bytes(path, buf, size);
    tjFree(buf);
    tjDestroy(tj);
    return rc == 0;
}

/* wnids in a non-alphabetical order: class k is wnid_of(k). */
static const char *wnid_of(int k)
{
    static const char *ids[8] = {"n05000005", "n01000001", "n03000003", "n02000002",
                                 "n07000007", "n04000004", "n06000006", "n08000008"};
    return ids[k];
}

/* Builds root with K classes, ntrain train and nval val images per class; every
 * gray_every-th image (0: none) is a grayscale JPEG. Returns the gray count (train). */
static int make_tiny(const char *root, int K, int ntrain, int nval, int gray_every)
{
    rm_rf(root);
    mkdirs(root);
    char p[2048];
    snprintf(p, sizeof p, "%s/wnids.txt", root);
    FILE *f = fopen(p, "w");
    for (int k = 0; k < K; k++) fprintf(f, "%s\n", wnid_of(k));
    fclose(f);
    snprintf(p, sizeof p, "%s/words.txt", root);
    f = fopen(p, "w");
    for (int k = 7; k >= 0; k--) fprintf(f, "%s\tthing %d, other name\n", wnid_of(k), k);
    fclose(f);
    int gray = 0, n = 0;
    for (int k = 0; k < K; k++) {
        snprintf(p, sizeof p, "%s/train/%s/images", root, wnid_of(k));
        mkdirs(p);
        for (int i = 0; i < ntrain; i++, n++) {
            int g = gray_every && n % gray_every == 0;
            gray += g;
            snprintf(p, sizeof p, "%s/train/%s/images/%s_%d.JPEG", root, wnid_of(k), wnid_of(k), i);
            write_jpeg(p, k, (uint32_t)(k * 1000 + i), g, 64);
        }
    }
    snprintf(p, sizeof p, "%s/val/images", root);
    mkdirs(p);
    snprintf(p, sizeof p, "%s/test/images", root);
    mkdirs(p);
    snprintf(p, sizeof p, "%s/test/images/test_0.JPEG", root);
    write_jpeg(p, 0, 999, 0, 64);
    snprintf(p, sizeof p, "%s/val/val_annotations.txt", root);
    f = fopen(p, "w");
    for (int i = 0; i < K * nval; i++) {
        int k = (i * 7 + 3) % K; /* labels interleaved, not sorted */
        fprintf(f, "val_%d.JPEG\t%s\t0\t0\t63\t63\n", i, wnid_of(k));
        char img[2048];
        snprintf(img, sizeof img, "%s/val/images/val_%d.JPEG", root, i);
        write_jpeg(img, k, (uint32_t)(500000 + i), gray_every && i % gray_every == 1, 64);
    }
    fclose(f);
    return gray;
}

#endif
