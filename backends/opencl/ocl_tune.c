/* CLBlast's GEMM parameters for the device: the set in use is chosen at device open (a tuned
 * set from the tuning cache, else built-in defaults on CPU devices, else CLBlast's own
 * database), and pt_opencl_tune searches candidate sets on a model's GEMM shapes and caches
 * the fastest. CLBlast ships no tuning for CPU OpenCL drivers (PoCL) and its fallback runs at
 * 3-4 GFLOP/s there; its small-GEMM "direct" kernel is slower still on PoCL (2-4 GFLOP/s
 * against 20-30 for the tiled kernel on the same shapes), so the defaults also send every
 * GEMM but the tiniest to the tiled kernel.
 *
 * The cache is a small text file per device identity (device, platform, driver, CLBlast and
 * polytrain versions) in the program cache's directory. It is never trusted blindly: its key
 * must match, its checksum verify and every value pass CLBlast's constraints; a file failing
 * any of these is ignored with a message, and the built-in parameters are used. */
#include <clblast_c.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/kernels/kernel_winograd.h"
#include "backends/opencl/ocl_internal.h"
#include "backends/opencl/ocl_tune.h"
#include "polytrain/version.h"

extern const pt_backend_iface pt_opencl_backend;

#define TUNE_MAGIC "polytrain-opencl-tuning 1"

/* An Xgemm parameter set in the form searched: MDIMA = MDIMC, NDIMB = NDIMC, no local memory
 * (CPU caches do its work), plus the size from which CLBlast takes the tiled kernel. */
typedef struct xgemm_set {
    int mwg, nwg, kwg, mdimc, ndimc, kwi, vwm, vwn;
    int min_indirect; /* XGEMM_MIN_INDIRECT_SIZE: m*n*k below its cube uses the direct kernel */
} xgemm_set;

/* The first is the built-in default for CPU devices (the fastest on PoCL 3.1 / AVX-512 over
 * the baseline and resnet18 shapes); the rest are the search's candidates, in the order tried. */
static const xgemm_set candidates[] = {
    {64, 64, 32, 8, 8, 2, 8, 8, 64},    {64, 32, 32, 8, 4, 2, 8, 8, 64},   {64, 64, 16, 8, 8, 2, 8, 8, 64},
    {64, 64, 64, 8, 8, 2, 8, 8, 64},    {32, 64, 32, 4, 8, 2, 8, 8, 64},   {128, 64, 32, 16, 8, 2, 8, 8, 64},
    {64, 128, 32, 8, 16, 2, 8, 8, 64},  {64, 64, 32, 4, 4, 2, 16, 16, 64}, {64, 64, 32, 8, 8, 2, 4, 4, 64},
    {32, 32, 32, 4, 4, 2, 8, 8, 64},    {64, 64, 32, 8, 8, 8, 8, 8, 64},   {128, 128, 32, 8, 8, 2, 16, 16, 64},
    {64, 64, 32, 8, 8, 2, 8, 8, 256},   {64, 64, 32, 8, 8, 2, 8, 8, 16},
};
#define NCAND ((int)(sizeof candidates / sizeof candidates[0]))

static int pow2_in(int v, int lo, int hi)
{
    return v >= lo && v <= hi && (v & (v - 1)) == 0;
}

/* CLBlast's constraints on Xgemm's parameters (its tuner's), for sets read from a file. */
static int set_valid(const xgemm_set *s)
{
    if (!pow2_in(s->mwg, 8, 256) || !pow2_in(s->nwg, 8, 256) || !pow2_in(s->kwg, 8, 128) ||
        !pow2_in(s->mdimc, 1, 64) || !pow2_in(s->ndimc, 1, 64) || !pow2_in(s->kwi, 1, 16) ||
        !pow2_in(s->vwm, 1, 16) || !pow2_in(s->vwn, 1, 16) || s->min_indirect < 1 || s->min_indirect > 4096)
        return 0;
    return s->mwg % (s->mdimc * s->vwm) == 0 && s->nwg % (s->ndimc * s->vwn) == 0 && s->kwg % s->kwi == 0 &&
           s->kwg % s->mdimc == 0 && s->kwg % s->ndimc == 0 && s->mdimc * s->ndimc <= 1024;
}

static void set_text(const xgemm_set *s, char *out, size_t cap)
{
    snprintf(out, cap, "MWG=%d NWG=%d KWG=%d MDIMC=%d NDIMC=%d KWI=%d VWM=%d VWN=%d MIN_INDIRECT=%d", s->mwg, s->nwg,
             s->kwg, s->mdimc, s->ndimc, s->kwi, s->vwm, s->vwn, s->min_indirect);
}

static int set_apply(cl_device_id dev, const xgemm_set *s)
{
    const char *names[] = {"GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB",
                           "NDIMC", "NWG",  "SA",   "SB",  "STRM",  "STRN",  "VWM", "VWN"};
    const size_t values[] = {0,          1,          (size_t)s->kwg, (size_t)s->kwi, (size_t)s->mdimc, (size_t)s->mdimc,
                             (size_t)s->mwg, (size_t)s->ndimc, (size_t)s->ndimc, (size_t)s->nwg, 0, 0, 0, 0,
                             (size_t)s->vwm, (size_t)s->vwn};
    if (CLBlastOverrideParameters(dev, "Xgemm", CLBlastPrecisionSingle, 16, names, values) != CLBlastSuccess)
        return 0;
    const char *rname[] = {"XGEMM_MIN_INDIRECT_SIZE"};
    const size_t rvalue[] = {(size_t)s->min_indirect};
    return CLBlastOverrideParameters(dev, "GemmRoutine", CLBlastPrecisionSingle, 1, rname, rvalue) == CLBlastSuccess;
}

/* ---- the cache file ---- */

static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t tune_key(const ocl_device_entry *e)
{
    char clblast[32];
    snprintf(clblast, sizeof clblast, "CLBlast %d.%d.%d", CLBLAST_VERSION_MAJOR, CLBLAST_VERSION_MINOR,
             CLBLAST_VERSION_PATCH);
    const char *parts[] = {e->name, e->platform_name, e->platform_version, e->driver, clblast, pt_version()};
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) h = fnv(h, parts[i], strlen(parts[i]) + 1);
    return h;
}

/* The tuning file of device e; 0 when no cache directory can be named (or caching is off). */
static int tune_path(const ocl_device_entry *e, char *out, size_t cap)
{
    char bin[600];
    ocl_device probe;
    memset(&probe, 0, sizeof probe);
    probe.info = (ocl_device_entry *)e;
    if (!ocl_cache_path(&probe, "", bin, sizeof bin)) return 0;
    char *slash = strrchr(bin, '/');
    if (!slash) return 0;
    *slash = '\0';
    int n = snprintf(out, cap, "%s/opencl-tuning-%016llx.txt", bin, (unsigned long long)tune_key(e));
    return n > 0 && (size_t)n < cap;
}

/* Reads and checks a tuning file. 1: *s holds its set; 0: no file; -1: refused (why says why). */
static int tune_read(const ocl_device_entry *e, const char *path, xgemm_set *s, char *why, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char text[2048];
    const size_t n = fread(text, 1, sizeof text - 1, f);
    const int more = fgetc(f) != EOF;
    fclose(f);
    text[n] = '\0';
    if (more || strlen(text) != n) {
        snprintf(why, cap, "not a tuning file (too long, or binary)");
        return -1;
    }
    char *check = strstr(text, "\ncheck ");
    unsigned long long sum = 0;
    if (strncmp(text, TUNE_MAGIC "\n", strlen(TUNE_MAGIC) + 1) != 0 || !check ||
        sscanf(check + 7, "%16llx", &sum) != 1) {
        snprintf(why, cap, "not a tuning file of this polytrain (no '%s' header or no checksum)", TUNE_MAGIC);
        return -1;
    }
    if (fnv(0xcbf29ce484222325ull, text, (size_t)(check + 1 - text)) != (uint64_t)sum) {
        snprintf(why, cap, "checksum mismatch (the file was damaged or edited)");
        return -1;
    }
    unsigned long long key = 0;
    const char *kl = strstr(text, "\nkey ");
    if (!kl || sscanf(kl + 5, "%16llx", &key) != 1 || (uint64_t)key != tune_key(e)) {
        snprintf(why, cap, "written for another device, driver, CLBlast or polytrain version");
        return -1;
    }
    const char *xl = strstr(text, "\nxgemm ");
    if (!xl || sscanf(xl + 7, "%d %d %d %d %d %d %d %d %d", &s->mwg, &s->nwg, &s->kwg, &s->mdimc, &s->ndimc, &s->kwi,
                      &s->vwm, &s->vwn, &s->min_indirect) != 9 ||
        !set_valid(s)) {
        snprintf(why, cap, "its xgemm line is missing or breaks CLBlast's parameter constraints");
        return -1;
    }
    return 1;
}

static pt_status tune_write(const ocl_device_entry *e, const char *path, const xgemm_set *s, double gemm_s,
                            pt_error *err)
{
    char body[1024];
    int n = snprintf(body, sizeof body,
                     "%s\nkey %016llx\ndevice %.120s\ndriver %.60s\nclblast %d.%d.%d\npolytrain %.40s\n"
                     "step_gemm_seconds %.6f\nxgemm %d %d %d %d %d %d %d %d %d\n",
                     TUNE_MAGIC, (unsigned long long)tune_key(e), e->name, e->driver, CLBLAST_VERSION_MAJOR,
                     CLBLAST_VERSION_MINOR, CLBLAST_VERSION_PATCH, pt_version(), gemm_s, s->mwg, s->nwg, s->kwg,
                     s->mdimc, s->ndimc, s->kwi, s->vwm, s->vwn, s->min_indirect);
    if (n < 0 || (size_t)n >= sizeof body - 32) return pt_fail(err, PT_ERR_INVALID, "opencl tune: record too long");
    snprintf(body + n, sizeof body - (size_t)n, "check %016llx\n",
             (unsigned long long)fnv(0xcbf29ce484222325ull, body, (size_t)n));
    if (!ocl_cache_make_parent_dirs(path)) return pt_fail(err, PT_ERR_IO, "opencl tune: cannot create the directory of %s: %s", path, strerror(errno));
    char tmp[640];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return pt_fail(err, PT_ERR_IO, "opencl tune: cannot write %s: %s", tmp, strerror(errno));
    int ok = fputs(body, f) >= 0;
    ok = fclose(f) == 0 && ok;
    /* rename: the entry appears whole or not at all */
    if (!ok || rename(tmp, path) != 0) {
        const int e2 = errno;
        remove(tmp);
        return pt_fail(err, PT_ERR_IO, "opencl tune: cannot write %s: %s", path, strerror(e2));
    }
    return PT_OK;
}

/* ---- at device open ---- */

/* The parameters device e gets: 2 from the tuning cache, 1 built-in (CPU devices), 0 CLBlast's
 * own; text says which. warn: a refused cache file is reported on stderr. */
static int tuning_choose(const ocl_device_entry *e, xgemm_set *s, char *text, size_t cap, int warn)
{
    const int cpu = (e->type & CL_DEVICE_TYPE_CPU) != 0;
    const char *env = getenv("PT_OPENCL_CLBLAST_CPU_TUNING");
    if (env && strcmp(env, "0") == 0) {
        snprintf(text, cap, "CLBlast's own (PT_OPENCL_CLBLAST_CPU_TUNING=0)");
        return 0;
    }
    char path[640], why[160] = "", set[160];
    const int got = tune_path(e, path, sizeof path) ? tune_read(e, path, s, why, sizeof why) : 0;
    if (got < 0 && warn)
        fprintf(stderr, "polytrain: opencl: ignoring the tuning file %s: %s; using %s (polytrain tune --backend "
                        "opencl writes a new one)\n",
                path, why, cpu ? "built-in parameters" : "CLBlast's own");
    if (got > 0) {
        set_text(s, set, sizeof set);
        snprintf(text, cap, "tuned (%s)", set);
        return 2;
    }
    if (!cpu) {
        snprintf(text, cap, "CLBlast's own");
        return 0;
    }
    *s = candidates[0];
    set_text(s, set, sizeof set);
    snprintf(text, cap, "built-in (%s)", set);
    return 1;
}

void ocl_tuning_describe(const ocl_device_entry *e, char *text, size_t cap)
{
    xgemm_set s;
    tuning_choose(e, &s, text, cap, 1);
}

void ocl_tuning_apply(ocl_device *d)
{
    xgemm_set s;
    memset(d->gemm_tile, 0, sizeof d->gemm_tile);
    /* best effort: on failure CLBlast keeps its defaults, which are correct, only slower */
    if (!tuning_choose(d->info, &s, d->tuning, sizeof d->tuning, 1)) return;
    if (!set_apply(d->info->device, &s)) {
        snprintf(d->tuning, sizeof d->tuning, "CLBlast's own (its parameter override failed)");
        return;
    }
    d->gemm_tile[0] = s.mwg;
    d->gemm_tile[1] = s.nwg;
    d->gemm_tile[2] = s.kwg;
}

/* ---- the search ---- */

int pt_opencl_conv_gemms(int n, int c, int h, int w, int k, int r, int stride, int pad, int skip_data,
                         pt_ocl_gemm_shape out[3])
{
    if (n < 1 || c < 1 || h < 1 || w < 1 || k < 1 || r < 1 || stride < 1 || pad < 0) return 0;
    const int p = (h + 2 * pad - r) / stride + 1, q = (w + 2 * pad - r) / stride + 1;
    if (p < 1 || q < 1) return 0;
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = PT_OP_CONV2D_FWD;
    op.nt = 3;
    const int64_t dims[3][4] = {{n, c, h, w}, {k, c, r, r}, {n, k, p, q}};
    for (int i = 0; i < 3; i++) {
        op.t[i].ndim = 4;
        for (int j = 0; j < 4; j++) op.t[i].dim[j] = dims[i][j];
    }
    op.p.conv.stride = stride;
    op.p.conv.pad = pad;
    ocl_device probe;
    memset(&probe, 0, sizeof probe);
    pt_error werr;
    /* the paths as devices open: Winograd's setting, the direct kernels' limits */
    if (ocl_winograd_setting(&probe.winograd, &werr) != PT_OK) probe.winograd = PT_KWINO_AUTO;
    if (ocl_conv_small_limits(&probe, &werr) != PT_OK) probe.conv_small_fwd_crs = probe.conv_small_crs = 0;
    const pt_kdev kd = ocl_kdev(&probe);
    const int g = pt_kconv_group(&kd, &op);
    const size_t crs = (size_t)c * (size_t)r * (size_t)r, cols = (size_t)g * (size_t)p * (size_t)q;
    const int calls = (n + g - 1) / g;
    const pt_op_kind kinds[3] = {PT_OP_CONV2D_FWD, PT_OP_CONV2D_BWD_DATA, PT_OP_CONV2D_BWD_FILTER};
    const pt_ocl_gemm_shape im2col[3] = {{(size_t)k, cols, crs, 0, 0, calls, 0},
                                         {crs, cols, (size_t)k, 1, 0, calls, 0},
                                         {(size_t)k, crs, cols, 0, 1, calls, 0}};
    const size_t tiles = (size_t)n * (size_t)((p + 1) / 2) * (size_t)((q + 1) / 2);
    int m = 0;
    for (int i = 0; i < 3; i++) {
        if (i == 1 && skip_data) continue;
        op.kind = kinds[i];
        if (pt_kconv_small_applies(&kd, &op)) continue; /* a direct kernel, no GEMM */
        if (!pt_kwino_use(&kd, &op)) {
            out[m++] = im2col[i];
            continue;
        }
        /* C = A^T B per plane (kernel_winograd.c): forward K x tiles x C, data gradient C x
         * tiles x K, filter gradient K x C x tiles; 16 per block of tiles */
        const size_t tb = (size_t)pt_kwino_block(&kd, &op), blocks = (tiles + tb - 1) / tb;
        const size_t nt = tb < tiles ? tb : tiles;
        const pt_ocl_gemm_shape wg[3] = {{(size_t)k, nt, (size_t)c, 1, 0, (int)(16 * blocks), 1},
                                         {(size_t)c, nt, (size_t)k, 1, 0, (int)(16 * blocks), 1},
                                         {(size_t)k, (size_t)c, nt, 1, 0, (int)(16 * blocks), 1}};
        out[m++] = wg[i];
    }
    return m;
}

/* The step's GEMM time with the parameters in force: each shape once untimed (CLBlast builds
 * its kernels), then the best of reps, times its calls per step. < 0: a GEMM failed. */
static size_t pad_to(size_t v, int mult) { return mult > 1 ? (v + (size_t)mult - 1) / (size_t)mult * (size_t)mult : v; }

/* The shape as run under parameters whose MWG, NWG, KWG are tile[0..2] (0: unknown, unpadded):
 * a Winograd GEMM's m, n, k padded as ocl_kdev's gemm_mult says. */
static pt_ocl_gemm_shape as_run(const pt_ocl_gemm_shape *g, const int tile[3])
{
    pt_ocl_gemm_shape r = *g;
    if (g->tiled) {
        r.m = pad_to(g->m, tile[1]);
        r.n = pad_to(g->n, tile[0]);
        r.k = pad_to(g->k, tile[2]);
    }
    return r;
}

static double time_shapes(ocl_device *d, const pt_ocl_tune_request *req, const int tile[3], cl_mem a, cl_mem b,
                          cl_mem c, pt_error *err)
{
    double total = 0.0;
    for (int i = 0; i < req->nshapes; i++) {
        const pt_ocl_gemm_shape run = as_run(&req->shapes[i], tile), *g = &run;
        const size_t lda = g->trans_a ? g->m : g->k, ldb = g->trans_b ? g->k : g->n;
        double best = 1e30;
        for (int r = 0; r <= req->reps; r++) {
            const double t0 = ocl_now_s();
            if (ocl_sgemm(d, g->trans_a, g->trans_b, g->m, g->n, g->k, 1.0f, a, 0, lda, b, 0, ldb, 0.0f, c, 0, g->n,
                          err) != PT_OK ||
                clFinish(d->queue) != CL_SUCCESS)
                return -1.0;
            const double t = ocl_now_s() - t0;
            if (r > 0 && t < best) best = t;
        }
        total += best * (g->calls > 0 ? g->calls : 1);
    }
    return total;
}

static void progress(const pt_ocl_tune_request *req, int done, int total, const char *what)
{
    if (req->progress) req->progress(req->user, done, total, what);
}

pt_status pt_opencl_tune(void *backend_ctx, int index, const pt_ocl_tune_request *req, pt_ocl_tune_result *res,
                         pt_error *err)
{
    memset(res, 0, sizeof *res);
    if (!req->nshapes || req->reps < 1 || req->budget < 0)
        return pt_fail(err, PT_ERR_INVALID, "opencl tune: no GEMM shapes, or reps < 1, or a negative budget");
    pt_device_options opt;
    memset(&opt, 0, sizeof opt);
    void *dctx = NULL;
    PT_TRY(pt_opencl_backend.device_open(backend_ctx, index, &opt, &dctx, err));
    ocl_device *d = dctx;
    size_t fa = 1, fb = 1, fc = 1;
    const int widest[3] = {256, 256, 256}; /* the largest tile multiples set_valid allows */
    for (int i = 0; i < req->nshapes; i++) {
        const pt_ocl_gemm_shape run = as_run(&req->shapes[i], widest), *g = &run;
        if (g->m * g->k > fa) fa = g->m * g->k;
        if (g->k * g->n > fb) fb = g->k * g->n;
        if (g->m * g->n > fc) fc = g->m * g->n;
    }
    pt_status st = PT_OK;
    cl_int rc = CL_SUCCESS;
    cl_mem bufs[3] = {NULL, NULL, NULL};
    const size_t floats[3] = {fa, fb, fc};
    for (int i = 0; i < 3 && st == PT_OK; i++) {
        if (floats[i] * sizeof(float) > d->info->max_alloc) {
            st = pt_fail(err, PT_ERR_NOMEM, "opencl tune: a GEMM operand of %zu floats exceeds the device's largest allocation",
                         floats[i]);
            break;
        }
        bufs[i] = clCreateBuffer(d->ctx, CL_MEM_READ_WRITE, floats[i] * sizeof(float), NULL, &rc);
        if (rc != CL_SUCCESS) st = ocl_fail_cl(err, rc, "clCreateBuffer", __FILE__, __LINE__);
        const float zero = 0.0f;
        if (st == PT_OK && (rc = clEnqueueFillBuffer(d->queue, bufs[i], &zero, sizeof zero, 0, floats[i] * sizeof(float),
                                                     0, NULL, NULL)) != CL_SUCCESS)
            st = ocl_fail_cl(err, rc, "clEnqueueFillBuffer", __FILE__, __LINE__);
    }
    const int total = req->budget && req->budget < NCAND ? req->budget : NCAND;
    int best = -1;
    if (st == PT_OK) {
        progress(req, 0, total + 1, "parameters in use");
        res->default_s = time_shapes(d, req, d->gemm_tile, bufs[0], bufs[1], bufs[2], err);
        if (res->default_s < 0) st = pt_error_wrap(err, "opencl tune: timing the parameters in use");
    }
    res->best_s = 1e30;
    for (int i = 0; i < total && st == PT_OK; i++) {
        char text[160];
        set_text(&candidates[i], text, sizeof text);
        progress(req, i + 1, total + 1, text);
        if (!set_apply(d->info->device, &candidates[i])) continue;
        pt_error cerr;
        const int tile[3] = {candidates[i].mwg, candidates[i].nwg, candidates[i].kwg};
        const double t = time_shapes(d, req, tile, bufs[0], bufs[1], bufs[2], &cerr);
        res->tried++;
        if (t >= 0 && t < res->best_s) {
            res->best_s = t;
            best = i;
        }
    }
    progress(req, total + 1, total + 1, "done");
    if (st == PT_OK && best < 0) st = pt_fail(err, PT_ERR_BACKEND, "opencl tune: no candidate parameter set ran");
    if (st == PT_OK) {
        set_text(&candidates[best], res->chosen, sizeof res->chosen);
        set_apply(d->info->device, &candidates[best]);
        if (tune_path(d->info, res->cache_path, sizeof res->cache_path))
            st = tune_write(d->info, res->cache_path, &candidates[best], res->best_s, err);
    }
    for (int i = 0; i < 3; i++)
        if (bufs[i]) clReleaseMemObject(bufs[i]);
    pt_opencl_backend.device_close(dctx);
    return st;
}
