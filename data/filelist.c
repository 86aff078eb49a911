/* Directory listings for image datasets. Everything is sorted before use so that a listing,
 * its labels and its fingerprint never depend on the order readdir happens to return. */
#include "data/filelist.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/rng.h"

uint64_t pt_fnv1a(uint64_t h, const void *data, size_t n)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void pt_filelist_free(pt_filelist *fl)
{
    if (!fl) return;
    for (int64_t i = 0; i < fl->count && fl->paths; i++) free(fl->paths[i]);
    for (int i = 0; i < fl->num_classes; i++) {
        if (fl->class_ids) free(fl->class_ids[i]);
        if (fl->class_names) free(fl->class_names[i]);
    }
    free(fl->paths);
    free(fl->labels);
    free(fl->class_ids);
    free(fl->class_names);
    free(fl->root);
    memset(fl, 0, sizeof *fl);
}

/* ---- small growable string list ---- */

typedef struct strv {
    char **v;
    int64_t n, cap;
} strv;

static void strv_free(strv *s)
{
    for (int64_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int strv_push(strv *s, const char *str)
{
    if (s->n == s->cap) {
        int64_t cap = s->cap ? 2 * s->cap : 64;
        char **v = realloc(s->v, (size_t)cap * sizeof *v);
        if (!v) return 0;
        s->v = v;
        s->cap = cap;
    }
    if (!(s->v[s->n] = strdup(str))) return 0;
    s->n++;
    return 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 2);
    if (!s) return NULL;
    memcpy(s, a, la);
    s[la] = '/';
    memcpy(s + la + 1, b, lb + 1);
    return s;
}

static int is_image_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot || name[0] == '.') return 0;
    return !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".png");
}

/* Sorted names of dir's entries: regular image files (want_dirs 0) or sub-directories
 * (want_dirs 1, hidden ones skipped). */
static pt_status list_dir(const char *dir, int want_dirs, strv *out, pt_error *err)
{
    memset(out, 0, sizeof *out);
    DIR *d = opendir(dir);
    if (!d) return pt_fail(err, PT_ERR_IO, "cannot read directory %s: %s", dir, strerror(errno));
    struct dirent *e;
    pt_status s = PT_OK;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *full = join(dir, e->d_name);
        struct stat st;
        int ok = full && stat(full, &st) == 0;
        free(full);
        if (!ok) continue;
        /* An image's name on a FIFO, device or socket is an error here: skipped, it would
         * silently shrink the data set; opened later, it would block the reader. */
        if (!want_dirs && is_image_name(e->d_name) && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
            s = pt_fail(err, PT_ERR_FORMAT, "%s/%s: it is %s, expected a regular image file", dir, e->d_name,
                        pt_file_type_name(st.st_mode));
            break;
        }
        int keep = want_dirs ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode) && is_image_name(e->d_name);
        if (keep && !strv_push(out, e->d_name)) {
            s = pt_fail(err, PT_ERR_NOMEM, "out of memory listing %s", dir);
            break;
        }
        if (out->n > PT_FILELIST_MAX_FILES) {
            s = pt_fail(err, PT_ERR_INVALID, "%s: more than %lld entries", dir,
                        (long long)PT_FILELIST_MAX_FILES);
            break;
        }
    }
    closedir(d);
    if (s != PT_OK) {
        strv_free(out);
        return s;
    }
    if (out->n > 1) qsort(out->v, (size_t)out->n, sizeof *out->v, cmp_str);
    return PT_OK;
}

/* ---- building the list ---- */

typedef struct builder {
    strv paths;
    int32_t *labels;
    int64_t lcap;
} builder;

static int add_file(builder *b, const char *path, int32_t label)
{
    if (b->paths.n == b->lcap) {
        int64_t cap = b->lcap ? 2 * b->lcap : 256;
        int32_t *l = realloc(b->labels, (size_t)cap * sizeof *l);
        if (!l) return 0;
        b->labels = l;
        b->lcap = cap;
    }
    if (!strv_push(&b->paths, path)) return 0;
    b->labels[b->paths.n - 1] = label;
    return 1;
}

static uint64_t hash_stat(uint64_t h, const char *path)
{
    struct stat st;
    int64_t v[3] = {-1, -1, -1};
    if (stat(path, &st) == 0) {
        v[0] = (int64_t)st.st_size;
        v[1] = (int64_t)st.st_mtim.tv_sec;
        v[2] = (int64_t)st.st_mtim.tv_nsec;
    }
    return pt_fnv1a(h, v, sizeof v);
}

/* Moves the builder's files and the classes into out, with the fingerprint. */
static pt_status finish(builder *b, const char *kind, const char *root, int split, strv *ids,
                        strv *names, uint64_t extra_hash, pt_filelist *out, pt_error *err)
{
    memset(out, 0, sizeof *out);
    snprintf(out->kind, sizeof out->kind, "%s", kind);
    out->root = strdup(root);
    if (!out->root) return pt_fail(err, PT_ERR_NOMEM, "out of memory");
    out->split = split;
    out->count = b->paths.n;
    out->paths = b->paths.v;
    out->labels = b->labels;
    out->num_classes = (int)ids->n;
    out->class_ids = ids->v;
    out->class_names = names->v;
    memset(&b->paths, 0, sizeof b->paths);
    b->labels = NULL;
    memset(ids, 0, sizeof *ids);
    memset(names, 0, sizeof *names);
    uint64_t h = pt_fnv1a(PT_FNV_START, kind, strlen(kind) + 1);
    h = pt_fnv1a(h, &split, sizeof split);
    h = pt_fnv1a(h, &extra_hash, sizeof extra_hash);
    for (int i = 0; i < out->num_classes; i++)
        h = pt_fnv1a(h, out->class_names[i], strlen(out->class_names[i]) + 1);
    size_t rl = strlen(root);
    for (int64_t i = 0; i < out->count; i++) {
        const char *rel = out->paths[i] + (strncmp(out->paths[i], root, rl) == 0 ? rl : 0);
        h = pt_fnv1a(h, rel, strlen(rel) + 1);
        h = pt_fnv1a(h, &out->labels[i], sizeof out->labels[i]);
        h = hash_stat(h, out->paths[i]);
    }
    out->fingerprint = h ? h : 1;
    return PT_OK;
}

static void builder_free(builder *b)
{
    strv_free(&b->paths);
    free(b->labels);
    memset(b, 0, sizeof *b);
}

/* Reads a whole small text file (at most 64 MiB). */
static pt_status slurp(const char *path, char **text, pt_error *err)
{
    int fd;
    PT_TRY(pt_open_input(path, PT_INPUT_FILE, NULL, &fd, err));
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return pt_fail(err, PT_ERR_NOMEM, "cannot read %s: %s", path, strerror(errno));
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fclose(f);
            return pt_fail(err, PT_ERR_NOMEM, "out of memory reading %s", path);
        }
        n += fread(buf + n, 1, cap - 1 - n, f);
        if (n < cap - 1) break;
        if (cap >= ((size_t)64 << 20)) {
            free(buf);
            fclose(f);
            return pt_fail(err, PT_ERR_FORMAT, "%s: larger than 64 MiB", path);
        }
        cap *= 2;
        char *nb = realloc(buf, cap);
        if (!nb) free(buf);
        buf = nb;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return pt_fail(err, PT_ERR_IO, "cannot read %s", path);
    }
    buf[n] = '\0';
    *text = buf;
    return PT_OK;
}

/* Next line of *p (CR/LF stripped), or NULL at the end. */
static char *next_line(char **p)
{
    if (!**p) return NULL;
    char *line = *p, *nl = strchr(line, '\n');
    if (nl) {
        *nl = '\0';
        *p = nl + 1;
    } else {
        *p = line + strlen(line);
    }
    size_t len = strlen(line);
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
        line[--len] = '\0';
    return line;
}

static int find_class(const strv *ids, const char *id)
{
    for (int64_t i = 0; i < ids->n; i++)
        if (strcmp(ids->v[i], id) == 0) return (int)i;
    return -1;
}

/* Sorted image names of dir into b with label; an empty dir is an error. */
static pt_status add_class_dir(builder *b, const char *dir, int32_t label, const char *what,
                               pt_error *err)
{
    strv files;
    PT_TRY(list_dir(dir, 0, &files, err));
    if (files.n == 0) {
        strv_free(&files);
        return pt_fail(err, PT_ERR_FORMAT, "%s: class folder %s holds no images (.jpeg, .jpg or .png)",
                       what, dir);
    }
    pt_status s = PT_OK;
    for (int64_t i = 0; i < files.n && s == PT_OK; i++) {
        char *full = join(dir, files.v[i]);
        if (!full || !add_file(b, full, label)) s = pt_fail(err, PT_ERR_NOMEM, "out of memory");
        free(full);
    }
    strv_free(&files);
    return s;
}

pt_status pt_filelist_tinyimagenet(const char *root, int split, pt_filelist *out, pt_error *err)
{
    memset(out, 0, sizeof *out);
    builder b;
    memset(&b, 0, sizeof b);
    strv ids = {0}, names = {0};
    char *text = NULL, *words = NULL, *path = NULL, *dir = NULL;
    uint64_t extra = PT_FNV_START;
    pt_status s = PT_OK;

    path = join(root, "wnids.txt");
    if (!path) return pt_fail(err, PT_ERR_NOMEM, "out of memory");
    s = slurp(path, &text, err);
    if (s != PT_OK) {
        pt_error_wrap(err, "TinyImageNet %s: the class list wnids.txt is required", root);
        goto done;
    }
    extra = hash_stat(extra, path);
    {
        char *p = text, *line;
        int lineno = 0;
        while ((line = next_line(&p))) {
            lineno++;
            while (*line == ' ' || *line == '\t') line++;
            if (!*line) continue;
            if (strchr(line, '/') || strchr(line, '\t') || strchr(line, ' ')) {
                s = pt_fail(err, PT_ERR_FORMAT, "%s line %d: '%s' is not a class id", path, lineno, line);
                goto done;
            }
            if (find_class(&ids, line) >= 0) {
                s = pt_fail(err, PT_ERR_FORMAT, "%s line %d: class %s listed twice", path, lineno, line);
                goto done;
            }
            if (ids.n >= PT_FILELIST_MAX_CLASSES || !strv_push(&ids, line)) {
                s = pt_fail(err, PT_ERR_INVALID, "%s: too many classes or out of memory", path);
                goto done;
            }
        }
    }
    if (ids.n == 0) {
        s = pt_fail(err, PT_ERR_FORMAT, "%s lists no classes", path);
        goto done;
    }
    /* Human names: optional; the first synonym of words.txt, else the wnid. */
    free(path);
    path = join(root, "words.txt");
    if (!path) {
        s = pt_fail(err, PT_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < ids.n; i++)
        if (!strv_push(&names, ids.v[i])) {
            s = pt_fail(err, PT_ERR_NOMEM, "out of memory");
            goto done;
        }
    if (slurp(path, &words, NULL) == PT_OK) {
        extra = hash_stat(extra, path);
        char *p = words, *line;
        while ((line = next_line(&p))) {
            char *tab = strchr(line, '\t');
            if (!tab) continue;
            *tab = '\0';
            int c = find_class(&ids, line);
            if (c < 0) continue;
            char *name = tab + 1, *comma = strchr(name, ',');
            if (comma) *comma = '\0';
            while (*name == ' ') name++;
            if (!*name) continue;
            char *copy = strdup(name);
            if (!copy) {
                s = pt_fail(err, PT_ERR_NOMEM, "out of memory");
                goto done;
            }
            free(names.v[c]);
            names.v[c] = copy;
        }
    }

    if (split == PT_SPLIT_TRAIN) {
        for (int64_t c = 0; c < ids.n && s == PT_OK; c++) {
            free(dir);
            dir = malloc(strlen(root) + strlen(ids.v[c]) + 32);
            if (!dir) {
                s = pt_fail(err, PT_ERR_NOMEM, "out of memory");
                break;
            }
            sprintf(dir, "%s/train/%s/images", root, ids.v[c]);
            struct stat st;
            if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
                sprintf(dir, "%s/train/%s", root, ids.v[c]);
                if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
                    s = pt_fail(err, PT_ERR_FORMAT, "TinyImageNet %s: class %s (wnids.txt line %lld) "
                                "has no folder train/%s/images", root, ids.v[c], (long long)c + 1, ids.v[c]);
                    break;
                }
            }
            s = add_class_dir(&b, dir, (int32_t)c, "TinyImageNet", err);
        }
    } else if (split == PT_SPLIT_VAL) {
        free(path);
        path = join(root, "val/val_annotations.txt");
        if (!path) {
            s = pt_fail(err, PT_ERR_NOMEM, "out of memory");
            goto done;
        }
        free(text);
        text = NULL;
        s = slurp(path, &text, err);
        if (s != PT_OK) {
            pt_error_wrap(err, "TinyImageNet %s: the validation labels val/val_annotations.txt are required", root);
            goto done;
        }
        extra = hash_stat(extra, path);
        char *p = text, *line;
        int lineno = 0;
        while ((line = next_line(&p)) && s == PT_OK) {
            lineno++;
            if (!*line) continue;
            char *file = line, *tab = strchr(line, '\t');
            if (!tab) {
                s = pt_fail(err, PT_ERR_FORMAT, "%s line %d: expected FILE<TAB>WNID[<TAB>bbox], got '%s'",
                            path, lineno, line);
                break;
            }
            *tab = '\0';
            char *wnid = tab + 1, *tab2 = strchr(wnid, '\t');
            if (tab2) *tab2 = '\0';
            if (!*file || strchr(file, '/')) {
                s = pt_fail(err, PT_ERR_FORMAT, "%s line %d: bad file name '%s'", path, lineno, file);
                break;
            }
            int c = find_class(&ids, wnid);
            if (c < 0) {
                s = pt_fail(err, PT_ERR_FORMAT, "%s line %d: %s has class '%s', which wnids.txt does not list",
                            path, lineno, file, wnid);
                break;
            }
            free(dir);
            dir = malloc(strlen(root) + strlen(file) + 32);
            if (!dir) {
                s = pt_fail(err, PT_ERR_NOMEM, "out of memory");
                break;
            }
            sprintf(dir, "%s/val/images/%s", root, file);
            struct stat st;
            if (stat(dir, &st) != 0 || !S_ISREG(st.st_mode)) {
                s = pt_fail(err, PT_ERR_FORMAT, "%s line %d: image %s does not exist", path, lineno, dir);
                break;
            }
            if (!add_file(&b, dir, (int32_t)c)) s = pt_fail(err, PT_ERR_NOMEM, "out of memory");
        }
        if (s == PT_OK && b.paths.n == 0)
            s = pt_fail(err, PT_ERR_FORMAT, "%s lists no images", path);
    } else if (split == PT_SPLIT_TEST) {
        free(dir);
        dir = join(root, "test/images");
        if (!dir) {
            s = pt_fail(err, PT_ERR_NOMEM, "out of memory");
            goto done;
        }
        s = add_class_dir(&b, dir, -1, "TinyImageNet test split", err);
    } else {
        s = pt_fail(err, PT_ERR_INVALID, "unknown split %d", split);
    }
    if (s == PT_OK) s = finish(&b, "tinyimagenet", root, split, &ids, &names, extra, out, err);
done:
    builder_free(&b);
    strv_free(&ids);
    strv_free(&names);
    free(text);
    free(words);
    free(path);
    free(dir);
    return s;
}

pt_status pt_filelist_folder(const char *root, int split, double val_fraction, uint64_t split_seed,
                             pt_filelist *out, pt_error *err)
{
    memset(out, 0, sizeof *out);
    if (split != PT_SPLIT_TRAIN && split != PT_SPLIT_VAL)
        return pt_fail(err, PT_ERR_INVALID, "image folder %s: only train and val splits exist", root);
    if (!(val_fraction > 0.0 && val_fraction < 1.0))
        return pt_fail(err, PT_ERR_INVALID, "image folder %s: validation fraction must be in (0, 1), got %g",
                       root, val_fraction);
    strv classes, ids = {0}, names = {0};
    PT_TRY(list_dir(root, 1, &classes, err));
    builder all, b;
    memset(&all, 0, sizeof all);
    memset(&b, 0, sizeof b);
    pt_status s = PT_OK;
    int64_t *perm = NULL;
    if (classes.n == 0)
        s = pt_fail(err, PT_ERR_FORMAT, "image folder %s: no class sub-folders (expected %s/<class>/<image>)",
                    root, root);
    if (classes.n > PT_FILELIST_MAX_CLASSES)
        s = pt_fail(err, PT_ERR_INVALID, "image folder %s: more than %d classes", root, PT_FILELIST_MAX_CLASSES);
    for (int64_t c = 0; c < classes.n && s == PT_OK; c++) {
        if (!strv_push(&ids, classes.v[c]) || !strv_push(&names, classes.v[c])) {
            s = pt_fail(err, PT_ERR_NOMEM, "out of memory");
            break;
        }
        char *dir = join(root, classes.v[c]);
        if (!dir) {
            s = pt_fail(err, PT_ERR_NOMEM, "out of memory");
            break;
        }
        builder one;
        memset(&one, 0, sizeof one);
        s = add_class_dir(&one, dir, (int32_t)c, "image folder", err);
        free(dir);
        if (s != PT_OK) {
            builder_free(&one);
            break;
        }
        /* Hold out round(fraction * n) of the class (at least one when it has two or more
         * images, never all of them), chosen by a seeded permutation of the sorted names. */
        int64_t n = one.paths.n;
        int64_t nval = (int64_t)(val_fraction * (double)n + 0.5);
        if (nval < 1 && n >= 2) nval = 1;
        if (nval >= n) nval = n - 1;
        free(perm);
        perm = malloc((size_t)n * sizeof *perm);
        if (!perm) {
            builder_free(&one);
            s = pt_fail(err, PT_ERR_NOMEM, "out of memory");
            break;
        }
        for (int64_t i = 0; i < n; i++) perm[i] = i;
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = pt_rng_below(split_seed, PT_RNG_SPLIT, (uint64_t)c, (uint64_t)i, 0, (uint32_t)(i + 1));
            int64_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        /* val: the first nval of the permutation; both splits keep sorted order. */
        char *is_val = calloc((size_t)n, 1);
        if (!is_val) {
            builder_free(&one);
            s = pt_fail(err, PT_ERR_NOMEM, "out of memory");
            break;
        }
        for (int64_t i = 0; i < nval; i++) is_val[perm[i]] = 1;
        for (int64_t i = 0; i < n && s == PT_OK; i++)
            if (is_val[i] == (split == PT_SPLIT_VAL) && !add_file(&b, one.paths.v[i], (int32_t)c))
                s = pt_fail(err, PT_ERR_NOMEM, "out of memory");
        free(is_val);
        builder_free(&one);
    }
    if (s == PT_OK && b.paths.n == 0)
        s = pt_fail(err, PT_ERR_FORMAT, "image folder %s: the %s split is empty (classes need at least two "
                    "images each for a validation split)", root, split == PT_SPLIT_VAL ? "validation" : "training");
    uint64_t extra = pt_fnv1a(PT_FNV_START, &val_fraction, sizeof val_fraction);
    extra = pt_fnv1a(extra, &split_seed, sizeof split_seed);
    if (s == PT_OK) s = finish(&b, "folder", root, split, &ids, &names, extra, out, err);
    free(perm);
    builder_free(&all);
    builder_free(&b);
    strv_free(&classes);
    strv_free(&ids);
    strv_free(&names);
    return s;
}
