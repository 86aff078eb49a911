/* Building the embedded kernel program for a device: from polytrain's binary cache when a
 * valid entry exists, else from source (then the binary is cached). A cached binary is never
 * trusted blindly: its header must match the key, and if the driver refuses it the program is
 * rebuilt from source. The cache is best effort: any failure there falls back silently. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backends/opencl/ocl_internal.h"

extern const size_t pt_ocl_kernel_source_count;
extern const char *const pt_ocl_kernel_sources[];

#define CACHE_MAGIC "PTCLBIN2"
#define CACHE_HEADER 40 /* magic, key 1, key 2, binary size, binary checksum */
#define CACHE_MAX_BYTES ((uint64_t)512 << 20)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

pt_status ocl_build_program(cl_context ctx, cl_device_id dev, size_t count,
                            const char *const *sources, const char *options, cl_program *out,
                            pt_error *err)
{
    *out = NULL;
    cl_int rc;
    cl_program p = clCreateProgramWithSource(ctx, (cl_uint)count, (const char **)sources, NULL, &rc);
    OCL_CHECK_RC(rc, "clCreateProgramWithSource", err);
    rc = clBuildProgram(p, 1, &dev, options, NULL, NULL);
    if (rc != CL_SUCCESS) {
        char log[768] = "";
        size_t len = 0;
        if (clGetProgramBuildInfo(p, dev, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, &len) != CL_SUCCESS) {
            /* the log is longer than our buffer: take its head */
            size_t full = 0;
            clGetProgramBuildInfo(p, dev, CL_PROGRAM_BUILD_LOG, 0, NULL, &full);
            char *big = full ? malloc(full + 1) : NULL;
            if (big && clGetProgramBuildInfo(p, dev, CL_PROGRAM_BUILD_LOG, full, big, NULL) == CL_SUCCESS) {
                big[full] = '\0';
                snprintf(log, sizeof log, "%s", big);
            }
            free(big);
        }
        log[sizeof log - 1] = '\0';
        clReleaseProgram(p);
        return pt_fail(err, PT_ERR_BACKEND,
                       "opencl: clBuildProgram failed: %s (%d) with options '%s'; build log:\n%s",
                       ocl_error_name(rc), (int)rc, options ? options : "", log[0] ? log : "(empty)");
    }
    *out = p;
    return PT_OK;
}

/* FNV-1a, 64 bits, from a given basis (two bases give two independent keys). */
static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t cache_key(const ocl_device *d, const char *options, uint64_t basis)
{
    uint64_t h = basis;
    for (size_t i = 0; i < pt_ocl_kernel_source_count; i++)
        h = fnv(h, pt_ocl_kernel_sources[i], strlen(pt_ocl_kernel_sources[i]) + 1);
    const char *parts[] = {d->info->name, d->info->platform_name, d->info->platform_version,
                           d->info->driver, d->info->c_version, options};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) h = fnv(h, parts[i], strlen(parts[i]) + 1);
    return h;
}

int ocl_cache_path(const ocl_device *d, const char *options, char *out, size_t cap)
{
    const char *off = getenv("PT_OPENCL_CACHE");
    if (off && strcmp(off, "0") == 0) return 0;
    const char *own = getenv("PT_OPENCL_CACHE_DIR");
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char dir[512];
    if (own && own[0] == '/') snprintf(dir, sizeof dir, "%s", own);
    else if (xdg && xdg[0] == '/') snprintf(dir, sizeof dir, "%s/polytrain", xdg);
    else if (home && home[0] == '/') snprintf(dir, sizeof dir, "%s/.cache/polytrain", home);
    else return 0;
    uint64_t key = cache_key(d, options, 0xcbf29ce484222325ull);
    int n = snprintf(out, cap, "%s/opencl-%016llx.bin", dir, (unsigned long long)key);
    return n > 0 && (size_t)n < cap;
}

/* (two levels at most are ours to create) */
int ocl_cache_make_parent_dirs(const char *path)
{
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s", path);
    char *slash = strrchr(tmp, '/');
    if (!slash) return 0;
    *slash = '\0';
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return 0;
        *p = '/';
    }
    return mkdir(tmp, 0700) == 0 || errno == EEXIST;
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* The cached binary for (d, options), validated against its header; NULL if none. */
static unsigned char *cache_read(const char *path, uint64_t k1, uint64_t k2, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char hdr[CACHE_HEADER];
    unsigned char *bin = NULL;
    if (fread(hdr, 1, sizeof hdr, f) != sizeof hdr || memcmp(hdr, CACHE_MAGIC, 8) != 0 ||
        get_u64(hdr + 8) != k1 || get_u64(hdr + 16) != k2)
        goto out;
    uint64_t n = get_u64(hdr + 24);
    if (n == 0 || n > CACHE_MAX_BYTES) goto out;
    bin = malloc((size_t)n);
    if (!bin) goto out;
    /* Some drivers abort on a damaged binary (PoCL asserts), so a checksum guards it. */
    if (fread(bin, 1, (size_t)n, f) != (size_t)n || fgetc(f) != EOF ||
        fnv(0xcbf29ce484222325ull, bin, (size_t)n) != get_u64(hdr + 32)) {
        free(bin);
        bin = NULL;
        goto out;
    }
    *size = (size_t)n;
out:
    fclose(f);
    return bin;
}

static void cache_write(const char *path, uint64_t k1, uint64_t k2, cl_program p)
{
    size_t n = 0;
    if (clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof n, &n, NULL) != CL_SUCCESS || n == 0 ||
        n > CACHE_MAX_BYTES)
        return;
    unsigned char *bin = malloc(n);
    if (!bin) return;
    unsigned char *bins[1] = {bin};
    char tmp[640];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = NULL;
    if (clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) != CL_SUCCESS) goto out;
    if (!ocl_cache_make_parent_dirs(path)) goto out;
    f = fopen(tmp, "wb");
    if (!f) goto out;
    unsigned char hdr[CACHE_HEADER];
    memcpy(hdr, CACHE_MAGIC, 8);
    put_u64(hdr + 8, k1);
    put_u64(hdr + 16, k2);
    put_u64(hdr + 24, n);
    put_u64(hdr + 32, fnv(0xcbf29ce484222325ull, bin, n));
    int ok = fwrite(hdr, 1, sizeof hdr, f) == sizeof hdr && fwrite(bin, 1, n, f) == n;
    ok = fclose(f) == 0 && ok;
    f = NULL;
    /* rename makes the entry appear whole or not at all, even with concurrent writers */
    if (!ok || rename(tmp, path) != 0) remove(tmp);
out:
    free(bin);
}

static cl_program build_from_binary(const ocl_device *d, const unsigned char *bin, size_t size,
                                    const char *options)
{
    cl_int rc, bin_status = CL_SUCCESS;
    cl_program p = clCreateProgramWithBinary(d->ctx, 1, &d->info->device, &size, &bin, &bin_status, &rc);
    if (rc != CL_SUCCESS || bin_status != CL_SUCCESS) {
        if (p) clReleaseProgram(p);
        return NULL;
    }
    if (clBuildProgram(p, 1, &d->info->device, options, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(p);
        return NULL;
    }
    return p;
}

pt_status ocl_program_load(ocl_device *d, pt_error *err)
{
    char options[128];
    snprintf(options, sizeof options, "-cl-std=CL1.2 -DPT_RED_WG=%d", d->red_wg);
    const double t0 = now_s();
    char path[600];
    const int use_cache = ocl_cache_path(d, options, path, sizeof path);
    const uint64_t k1 = cache_key(d, options, 0xcbf29ce484222325ull);
    const uint64_t k2 = cache_key(d, options, 0x84222325cbf29ce4ull);
    d->program = NULL;
    d->program_cached = 0;
    if (use_cache) {
        size_t size = 0;
        unsigned char *bin = cache_read(path, k1, k2, &size);
        if (bin) {
            d->program = build_from_binary(d, bin, size, options);
            free(bin);
            d->program_cached = d->program != NULL;
        }
    }
    if (!d->program) {
        PT_TRY(ocl_build_program(d->ctx, d->info->device, pt_ocl_kernel_source_count,
                                 pt_ocl_kernel_sources, options, &d->program, err));
        if (use_cache) cache_write(path, k1, k2, d->program);
    }
    d->program_s = now_s() - t0;
    return PT_OK;
}
