/* pt_dataset's lifetime and the dispatch from a user's dataset spec to the reader that
 * understands it. New data sources register here, never in the loader. */
#include "polytrain/dataset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "core/fileio.h"
#include "data/decode.h"
#include "data/fashion_mnist.h"
#include "data/filelist.h"
#include "data/pack.h"

int64_t pt_dataset_sample_bytes(const pt_dataset *ds)
{
    return (int64_t)ds->channels * ds->height * ds->width;
}

pt_status pt_dataset_sample(const pt_dataset *ds, int64_t index, uint8_t *scratch,
                            const uint8_t **pixels, pt_error *err)
{
    if (index < 0 || index >= ds->count)
        return pt_fail(err, PT_ERR_INVALID, "%s: sample %lld out of range [0, %lld)", ds->name,
                       (long long)index, (long long)ds->count);
    if (ds->pixels) {
        *pixels = ds->pixels + index * pt_dataset_sample_bytes(ds);
        return PT_OK;
    }
    if (!ds->fetch)
        return pt_fail(err, PT_ERR_INVALID, "%s: dataset has neither pixels nor a fetch function",
                       ds->name);
    PT_TRY(ds->fetch(ds, index, scratch, err));
    *pixels = scratch;
    return PT_OK;
}

void pt_dataset_free(pt_dataset *ds)
{
    if (!ds) return;
    if (ds->release) ds->release(ds);
    free(ds->pixels);
    free(ds->labels);
    if (ds->class_names) {
        for (int i = 0; i < ds->num_classes; i++) free(ds->class_names[i]);
        free(ds->class_names);
    }
    memset(ds, 0, sizeof *ds);
}

pt_status pt_dataset_set_class_names(pt_dataset *ds, const char *const *names, int n,
                                     pt_error *err)
{
    char **v = calloc((size_t)(n > 0 ? n : 1), sizeof *v);
    if (!v) return pt_fail(err, PT_ERR_NOMEM, "out of memory for %d class names", n);
    for (int i = 0; i < n; i++) {
        v[i] = strdup(names[i]);
        if (!v[i]) {
            for (int j = 0; j < i; j++) free(v[j]);
            free(v);
            return pt_fail(err, PT_ERR_NOMEM, "out of memory for %d class names", n);
        }
    }
    if (ds->class_names) {
        for (int i = 0; i < ds->num_classes; i++) free(ds->class_names[i]);
        free(ds->class_names);
    }
    ds->class_names = v;
    ds->num_classes = n;
    return PT_OK;
}

/* The last path component contains "mnist" but not "fashion" (case-insensitive). */
static int names_digit_mnist(const char *dir)
{
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && dir[start - 1] != '/') start--;
    char last[256];
    size_t n = len - start < sizeof last - 1 ? len - start : sizeof last - 1;
    for (size_t i = 0; i < n; i++) {
        char c = dir[start + i];
        last[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    last[n] = '\0';
    return strstr(last, "mnist") && !strstr(last, "fashion");
}

static pt_status open_legacy(const char *spec, int train, int64_t limit, pt_dataset *out,
                             pt_error *err);

/* ---- image datasets decoded on the fly (no cache) ---- */

#define LAZY_MAX_DECODERS 64

typedef struct lazy_impl {
    pt_filelist fl;
    pthread_mutex_t mu;
    pt_decoder *free_dec[LAZY_MAX_DECODERS]; /* idle decoders, reused across threads */
    int nfree;
} lazy_impl;

static void lazy_release(pt_dataset *ds)
{
    lazy_impl *li = ds->impl;
    if (!li) return;
    for (int i = 0; i < li->nfree; i++) pt_decoder_free(li->free_dec[i]);
    pthread_mutex_destroy(&li->mu);
    pt_filelist_free(&li->fl);
    free(li);
    ds->impl = NULL;
}

static pt_status lazy_fetch(const pt_dataset *ds, int64_t index, uint8_t *dst, pt_error *err)
{
    lazy_impl *li = ds->impl;
    pt_decoder *d = NULL;
    pthread_mutex_lock(&li->mu);
    if (li->nfree > 0) d = li->free_dec[--li->nfree];
    pthread_mutex_unlock(&li->mu);
    if (!d) PT_TRY(pt_decoder_create(&d, err));
    pt_status s = pt_decode_file(d, li->fl.paths[index], ds->channels, ds->height, ds->width, dst,
                                 NULL, err);
    pthread_mutex_lock(&li->mu);
    if (li->nfree < LAZY_MAX_DECODERS) {
        li->free_dec[li->nfree++] = d;
        d = NULL;
    }
    pthread_mutex_unlock(&li->mu);
    pt_decoder_free(d);
    return s;
}

/* Takes ownership of *fl (zeroed on return, success or not). */
static pt_status lazy_dataset(pt_filelist *fl, int C, int H, int W, int64_t limit, pt_dataset *out,
                              pt_error *err)
{
    memset(out, 0, sizeof *out);
    lazy_impl *li = calloc(1, sizeof *li);
    int64_t n = limit > 0 && limit < fl->count ? limit : fl->count;
    int32_t *labels = malloc((size_t)n * sizeof *labels);
    if (!li || !labels || pthread_mutex_init(&li->mu, NULL) != 0) {
        free(li);
        free(labels);
        pt_filelist_free(fl);
        return pt_fail(err, PT_ERR_NOMEM, "out of memory");
    }
    memcpy(labels, fl->labels, (size_t)n * sizeof *labels);
    pt_status s = pt_dataset_set_class_names(out, (const char *const *)fl->class_names, fl->num_classes, err);
    li->fl = *fl;
    memset(fl, 0, sizeof *fl);
    snprintf(out->name, sizeof out->name, "%s", li->fl.kind);
    out->count = n;
    out->channels = C;
    out->height = H;
    out->width = W;
    out->labels = labels;
    /* ImageNet's statistics until a cache has measured the dataset's own. */
    const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    for (int c = 0; c < 3; c++) {
        out->mean[c] = C == 1 ? 0.449f : mean[c];
        out->std[c] = C == 1 ? 0.226f : sd[c];
    }
    out->fetch = lazy_fetch;
    out->impl = li;
    out->release = lazy_release;
    if (s != PT_OK) pt_dataset_free(out);
    return s;
}

/* ---- packed caches ---- */

static uint64_t hash_str(uint64_t h, const char *s) { return pt_fnv1a(h, s, strlen(s) + 1); }

pt_status pt_dataset_cache_path(const char *kind, const char *root, int split,
                                const pt_data_options *opt, int channels, int height, int width,
                                char *path, size_t size, pt_error *err)
{
    char dir[4096];
    if (opt->cache_dir && *opt->cache_dir) {
        snprintf(dir, sizeof dir, "%s", opt->cache_dir);
    } else {
        const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        if (xdg && *xdg) snprintf(dir, sizeof dir, "%s/polytrain", xdg);
        else if (home && *home) snprintf(dir, sizeof dir, "%s/.cache/polytrain", home);
        else return pt_fail(err, PT_ERR_INVALID, "no cache directory: set HOME, XDG_CACHE_HOME or give one");
    }
    /* mkdir -p */
    for (char *p = dir + 1;; p++) {
        char c = *p;
        if (c == '/' || c == '\0') {
            *p = '\0';
            if (mkdir(dir, 0755) != 0 && errno != EEXIST)
                return pt_fail(err, PT_ERR_IO, "cannot create cache directory %s: %s", dir, strerror(errno));
            *p = c;
        }
        if (!c) break;
    }
    char real[PATH_MAX];
    if (!realpath(root, real)) snprintf(real, sizeof real, "%s", root);
    uint64_t h = hash_str(PT_FNV_START, real);
    if (strcmp(kind, "folder") == 0) {
        double f = opt->val_split > 0 ? opt->val_split : 0.1;
        h = pt_fnv1a(h, &f, sizeof f);
        h = pt_fnv1a(h, &opt->split_seed, sizeof opt->split_seed);
    }
    h = pt_fnv1a(h, &opt->skip_bad, sizeof opt->skip_bad);
    const char *base = strrchr(real, '/');
    base = base && base[1] ? base + 1 : "root";
    int n = snprintf(path, size, "%s/%s-%.40s-%08x-%s-%dx%dx%d.ptpack", dir, kind, base,
                     (unsigned)(h ^ (h >> 32)), split == PT_SPLIT_TRAIN ? "train" : "val", channels,
                     height, width);
    if (n < 0 || (size_t)n >= size) return pt_fail(err, PT_ERR_INVALID, "cache path too long in %s", dir);
    return PT_OK;
}

static pt_status list_split(const char *kind, const char *root, int split, const pt_data_options *opt,
                            pt_filelist *fl, pt_error *err)
{
    if (strcmp(kind, "tinyimagenet") == 0) return pt_filelist_tinyimagenet(root, split, fl, err);
    return pt_filelist_folder(root, split, opt->val_split > 0 ? opt->val_split : 0.1, opt->split_seed, fl,
                              err);
}

static pt_status open_images(const char *kind, const char *root, int train, const pt_data_options *opt,
                             pt_dataset *out, pt_data_report *rep, pt_error *err)
{
    int split = train ? PT_SPLIT_TRAIN : PT_SPLIT_VAL;
    int C = opt->channels > 0 ? opt->channels : 3, H = opt->height, W = opt->width;
    if (C != 1 && C != 3) return pt_fail(err, PT_ERR_INVALID, "image datasets have 1 or 3 channels, not %d", C);
    pt_filelist fl;
    PT_TRY(list_split(kind, root, split, opt, &fl, err));
    if (H <= 0 || W <= 0) {
        if (strcmp(kind, "tinyimagenet") == 0) {
            H = H > 0 ? H : 64;
            W = W > 0 ? W : 64;
        } else {
            /* The first image of the first class, whichever split asks, so both agree. */
            pt_filelist first;
            pt_status s = split == PT_SPLIT_TRAIN ? PT_OK : list_split(kind, root, PT_SPLIT_TRAIN, opt, &first, err);
            const pt_filelist *src = split == PT_SPLIT_TRAIN ? &fl : &first;
            const char *p0 = src->paths[0];
            for (int64_t i = 0; s == PT_OK && i < src->count; i++)
                if (strcmp(src->paths[i], p0) < 0) p0 = src->paths[i];
            pt_decoder *d = NULL;
            int w = 0, h = 0;
            if (s == PT_OK) s = pt_decoder_create(&d, err);
            if (s == PT_OK) s = pt_decode_size(d, p0, &w, &h, err);
            pt_decoder_free(d);
            if (split != PT_SPLIT_TRAIN) pt_filelist_free(&first);
            if (s != PT_OK) {
                pt_filelist_free(&fl);
                return s;
            }
            H = H > 0 ? H : h;
            W = W > 0 ? W : w;
        }
    }
    if (H > 4096 || W > 4096) {
        pt_filelist_free(&fl);
        return pt_fail(err, PT_ERR_INVALID, "%s %s: image size %dx%d too large for a sample (give a size)",
                       kind, root, H, W);
    }
    if (opt->cache == PT_CACHE_OFF) return lazy_dataset(&fl, C, H, W, opt->limit, out, err);

    char path[4096];
    pt_status s = pt_dataset_cache_path(kind, root, split, opt, C, H, W, path, sizeof path, err);
    if (s != PT_OK) {
        pt_filelist_free(&fl);
        return s;
    }
    if (rep) snprintf(rep->cache_path, sizeof rep->cache_path, "%s", path);
    pt_pack_info info;
    pt_error why;
    pt_error_clear(&why);
    s = pt_pack_open(path, fl.fingerprint, C, H, W, opt->limit, out, &info, &why);
    int existed = access(path, F_OK) == 0;
    if (s == PT_OK) {
        if (rep) {
            rep->cache_action = 1;
            rep->gray = info.gray;
            rep->skipped = info.skipped;
        }
    } else {
        pt_pack_options po;
        memset(&po, 0, sizeof po);
        po.channels = C;
        po.height = H;
        po.width = W;
        po.threads = opt->threads > 0 ? opt->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
        po.skip_bad = opt->skip_bad;
        po.progress = opt->progress;
        po.cancelled = opt->cancelled;
        po.user = opt->user;
        pt_pack_report pr;
        s = pt_pack_write(&fl, path, &po, &pr, err);
        if (s == PT_OK) s = pt_pack_open(path, fl.fingerprint, C, H, W, opt->limit, out, &info, err);
        if (s == PT_OK && rep) {
            rep->cache_action = existed ? 3 : 2;
            if (existed) snprintf(rep->rebuild_reason, sizeof rep->rebuild_reason, "%s", why.msg);
            rep->gray = pr.gray;
            rep->skipped = pr.skipped;
            rep->pack_s = pr.seconds;
        }
    }
    if (s == PT_OK) snprintf(out->name, sizeof out->name, "%s", kind);
    pt_filelist_free(&fl);
    return s;
}

static int is_pack_file(const char *path)
{
    int fd;
    if (pt_open_input(path, PT_INPUT_FILE, NULL, &fd, NULL) != PT_OK) return 0;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return 0;
    }
    char m[8];
    int ok = fread(m, 1, 8, f) == 8 && memcmp(m, "PTPACK\r\n", 8) == 0;
    fclose(f);
    return ok;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int has_file(const char *dir, const char *name)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static pt_status open_mnist_dir(const char *spec, const char *dir, int train, int64_t limit, int digits,
                                pt_dataset *out, pt_error *err)
{
    if (!is_dir(dir))
        return pt_fail(err, PT_ERR_IO, "dataset %s: %s is not a directory", spec, dir);
    if (!pt_mnist_dir_has_split(dir, train))
        return pt_fail(err, PT_ERR_FORMAT, "dataset %s: %s holds no %s-images-idx3-ubyte[.gz]", spec, dir,
                       train ? "train" : "t10k");
    return digits ? pt_mnist_load(dir, train, limit, out, err) : pt_fashion_mnist_load(dir, train, limit, out, err);
}

/* ---- the spec's form ---- */

static const char *const dataset_kinds[] = {"fashion-mnist", "mnist", "tinyimagenet", "folder", "pack"};
#define NKINDS (sizeof dataset_kinds / sizeof dataset_kinds[0])

static int path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static char lower(char c) { return (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c); }

/* Edits (insert, delete, substitute, swap two neighbours) from a[0..n) to b, ignoring case;
 * words longer than 31 characters are too far from every kind to matter. */
static int edit_distance(const char *a, size_t n, const char *b)
{
    size_t m = strlen(b);
    if (n > 31 || m > 31) return 99;
    int d[32][32];
    for (size_t i = 0; i <= n; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            int cost = lower(a[i - 1]) != lower(b[j - 1]);
            int v = d[i - 1][j - 1] + cost;
            if (d[i - 1][j] + 1 < v) v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) && lower(a[i - 2]) == lower(b[j - 1]) &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[n][m];
}

/* The kind that word[0..n) most likely misspells, or NULL: at most 2 edits, and fewer than a
 * third of the longer word's letters, so that "foo" suggests nothing. */
static const char *nearest_kind(const char *word, size_t n)
{
    const char *best = NULL;
    int bd = 99;
    for (size_t k = 0; k < NKINDS; k++) {
        int dist = edit_distance(word, n, dataset_kinds[k]);
        size_t longer = n > strlen(dataset_kinds[k]) ? n : strlen(dataset_kinds[k]);
        if (dist < bd && dist <= 2 && (size_t)dist * 3 < longer) {
            bd = dist;
            best = dataset_kinds[k];
        }
    }
    return best;
}

/* A KIND: prefix as a user would type one: letters, digits, '-', '_', '.', '+'. */
static int looks_like_kind(const char *s, size_t n)
{
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.' || c == '+'))
            return 0;
    }
    return 1;
}

pt_status pt_dataset_spec_check(const char *spec, pt_error *err)
{
    if (!spec || !*spec) return pt_fail(err, PT_ERR_INVALID, "empty dataset spec; expected " PT_DATASET_FORMS);
    const char *colon = strchr(spec, ':');
    if (colon) {
        size_t n = (size_t)(colon - spec);
        for (size_t k = 0; k < NKINDS; k++)
            if (strlen(dataset_kinds[k]) == n && memcmp(spec, dataset_kinds[k], n) == 0) {
                if (!colon[1] && strcmp(dataset_kinds[k], "fashion-mnist") != 0)
                    return pt_fail(err, PT_ERR_INVALID, "dataset '%s': %s needs a path: %s:%s", spec,
                                   dataset_kinds[k], dataset_kinds[k],
                                   strcmp(dataset_kinds[k], "pack") == 0 ? "TRAIN[,VAL]" : "DIR");
                return PT_OK;
            }
        if (path_exists(spec) || !looks_like_kind(spec, n)) return PT_OK;
        const char *near = nearest_kind(spec, n);
        char hint[4200] = "";
        if (near) snprintf(hint, sizeof hint, " (did you mean %s:%s?)", near, colon + 1);
        return pt_fail(err, PT_ERR_INVALID,
                       "dataset '%s': unknown kind '%.*s'%s, and no file or directory has that name; expected "
                       PT_DATASET_FORMS,
                       spec, (int)n, spec, hint);
    }
    if (path_exists(spec) || strchr(spec, '/') || strcmp(spec, "fashion-mnist") == 0) return PT_OK;
    /* A bare word that names nothing: a kind without its path, or a misspelt one. */
    const char *near = nearest_kind(spec, strlen(spec));
    if (!near) return PT_OK;
    const char *form = !strcmp(near, "fashion-mnist") ? "fashion-mnist[:DIR]"
                       : !strcmp(near, "pack")         ? "pack:TRAIN[,VAL]"
                       : !strcmp(near, "mnist")        ? "mnist:DIR"
                       : !strcmp(near, "folder")       ? "folder:DIR"
                                                       : "tinyimagenet:DIR";
    return pt_fail(err, PT_ERR_INVALID,
                   "dataset '%s': no file or directory has that name, and it is not a dataset kind (did you mean "
                   "%s?); expected " PT_DATASET_FORMS,
                   spec, form);
}

static pt_status open_ex(const char *spec, int train, const pt_data_options *opt_in, pt_dataset *out,
                         pt_data_report *rep, pt_error *err)
{
    memset(out, 0, sizeof *out);
    if (rep) memset(rep, 0, sizeof *rep);
    pt_data_options opt;
    if (opt_in) opt = *opt_in;
    else memset(&opt, 0, sizeof opt);
    PT_TRY(pt_dataset_spec_check(spec, err));
    if (opt.limit < 0) return pt_fail(err, PT_ERR_INVALID, "dataset %s: limit must be >= 0", spec);
    const char *colon = strchr(spec, ':');
    char kind[32] = "";
    const char *arg = spec;
    if (colon && (size_t)(colon - spec) < sizeof kind) {
        memcpy(kind, spec, (size_t)(colon - spec));
        kind[colon - spec] = '\0';
        if (!strcmp(kind, "fashion-mnist") || !strcmp(kind, "mnist") || !strcmp(kind, "tinyimagenet") ||
            !strcmp(kind, "folder") || !strcmp(kind, "pack"))
            arg = colon + 1;
        else
            kind[0] = '\0';
    }
    if (!kind[0]) {
        /* A plain path (or the bare name fashion-mnist): what it holds decides. */
        if (!is_dir(spec) && strcmp(spec, "fashion-mnist") == 0) {
            strcpy(kind, "fashion-mnist");
            arg = PT_FASHION_MNIST_DIR;
        } else if (is_dir(spec) && has_file(spec, "wnids.txt")) {
            strcpy(kind, "tinyimagenet");
        } else if (!is_dir(spec) && is_pack_file(spec)) {
            strcpy(kind, "pack");
        } else {
            if (rep) snprintf(rep->kind, sizeof rep->kind, "%s", "fashion-mnist");
            return open_legacy(spec, train, opt.limit, out, err);
        }
    }
    if (rep) snprintf(rep->kind, sizeof rep->kind, "%.15s", kind);
    if (!*arg && strcmp(kind, "fashion-mnist") != 0)
        return pt_fail(err, PT_ERR_INVALID, "dataset %s: expected %s:PATH", spec, kind);
    if (!strcmp(kind, "fashion-mnist"))
        return open_mnist_dir(spec, *arg ? arg : PT_FASHION_MNIST_DIR, train, opt.limit, 0, out, err);
    if (!strcmp(kind, "mnist")) return open_mnist_dir(spec, arg, train, opt.limit, 1, out, err);
    if (!strcmp(kind, "tinyimagenet") || !strcmp(kind, "folder")) {
        if (!is_dir(arg))
            return pt_fail(err, PT_ERR_IO, "dataset %s: %s is not a directory", spec, arg);
        return open_images(kind, arg, train, &opt, out, rep, err);
    }
    /* pack:TRAIN[,VAL] */
    char file[4096];
    const char *comma = strchr(arg, ',');
    if (train) {
        size_t len = comma ? (size_t)(comma - arg) : strlen(arg);
        if (len >= sizeof file) return pt_fail(err, PT_ERR_INVALID, "dataset %s: path too long", spec);
        memcpy(file, arg, len);
        file[len] = '\0';
    } else {
        if (!comma || !comma[1])
            return pt_fail(err, PT_ERR_INVALID, "dataset %s: no validation cache (use pack:TRAIN,VAL)", spec);
        snprintf(file, sizeof file, "%s", comma + 1);
    }
    if (rep) snprintf(rep->cache_path, sizeof rep->cache_path, "%s", file);
    pt_pack_info info;
    /* its own shape: the caller's compatibility check then names both sides of a mismatch */
    PT_TRY(pt_pack_open(file, 0, 0, 0, 0, opt.limit, out, &info, err));
    if (rep) {
        rep->cache_action = 1;
        rep->gray = info.gray;
        rep->skipped = info.skipped;
    }
    return PT_OK;
}

/* The file a split's samples come from, for messages that compare two datasets: the cache
 * read (pack, or an image dataset's), an IDX directory's images file, else the spec. */
static void describe_source(const char *spec, int train, const pt_data_report *rep, pt_dataset *ds)
{
    const char *split = train ? "train" : "t10k";
    if (rep->cache_path[0]) {
        snprintf(ds->source, sizeof ds->source, "%.1020s", rep->cache_path);
        return;
    }
    if (!strcmp(rep->kind, "fashion-mnist") || !strcmp(rep->kind, "mnist")) {
        const char *dir = spec;
        if (!strncmp(spec, "fashion-mnist:", 14)) dir = spec[14] ? spec + 14 : PT_FASHION_MNIST_DIR;
        else if (!strncmp(spec, "mnist:", 6)) dir = spec + 6;
        else if (!is_dir(spec) && !strcmp(spec, "fashion-mnist")) dir = PT_FASHION_MNIST_DIR;
        char p[1100];
        snprintf(p, sizeof p, "%.1000s/%s-images-idx3-ubyte", dir, split);
        snprintf(ds->source, sizeof ds->source, "%.1000s%s", p, access(p, F_OK) == 0 ? "" : ".gz");
        return;
    }
    snprintf(ds->source, sizeof ds->source, "%.990s (%s split)", spec, train ? "training" : "validation");
}

pt_status pt_dataset_open_ex(const char *spec, int train, const pt_data_options *opt_in,
                             pt_dataset *out, pt_data_report *rep, pt_error *err)
{
    pt_data_report local;
    pt_data_report *r = rep ? rep : &local;
    PT_TRY(open_ex(spec, train, opt_in, out, r, err));
    describe_source(spec, train, r, out);
    return PT_OK;
}

pt_status pt_dataset_open(const char *spec, int train, int64_t limit, pt_dataset *out,
                          pt_error *err)
{
    pt_data_options opt;
    memset(&opt, 0, sizeof opt);
    opt.limit = limit;
    return pt_dataset_open_ex(spec, train, &opt, out, NULL, err);
}

/* IDX directories and the bare name fashion-mnist: the readers before image datasets. */
static pt_status open_legacy(const char *spec, int train, int64_t limit, pt_dataset *out,
                             pt_error *err)
{
    memset(out, 0, sizeof *out);
    if (!spec || !*spec) return pt_fail(err, PT_ERR_INVALID, "empty dataset name");
    struct stat st;
    if (stat(spec, &st) != 0) {
        if (errno == ENOENT && strcmp(spec, "fashion-mnist") == 0)
            return pt_fashion_mnist_load(PT_FASHION_MNIST_DIR, train, limit, out, err);
        return pt_fail(err, PT_ERR_IO, "dataset %s: %s (expected " PT_DATASET_FORMS ")", spec,
                       errno == ENOENT ? "no such file or directory" : strerror(errno));
    }
    if (S_ISDIR(st.st_mode) && pt_mnist_dir_has_split(spec, train)) {
        if (names_digit_mnist(spec)) return pt_mnist_load(spec, train, limit, out, err);
        return pt_fashion_mnist_load(spec, train, limit, out, err);
    }
    return pt_fail(err, PT_ERR_FORMAT,
                   "dataset %s: not a dataset this build reads: expected a directory holding "
                   "%s-images-idx3-ubyte[.gz] and %s-labels-idx1-ubyte[.gz] (Fashion-MNIST/MNIST)",
                   spec, train ? "train" : "t10k", train ? "train" : "t10k");
}
