/* The synthetic TinyImageNet-layout tree writer (see synth.h): lays out the directories
 * under a fresh <out>.partial-XXXXXX, draws, encodes and writes the images on worker
 * threads (each image keyed by (seed, split, class, index), so the bytes never depend on
 * the thread count), then the text files, synth.json last, and renames the whole into place. */
#include "data/synth.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/json.h"
#include "data/encode.h"
#include "data/filelist.h"
#include "data/synth_image.h"

#define SYNTH_FORMAT "polytrain-synth"
#define SYNTH_VERSION 1
#define CLAIM 16 /* images a worker takes at a time */

void pt_synth_defaults(pt_synth_options *o)
{
    memset(o, 0, sizeof *o);
    o->classes = 200;
    o->train_per_class = 500;
    o->val_per_class = 50;
    o->size = 64;
    o->quality = 90;
    o->gray_fraction = 0.01;
    o->threads = 1;
}

pt_status pt_synth_check(const pt_synth_options *o, pt_error *err)
{
    if (o->classes < 1 || o->classes > PT_SYNTH_MAX_CLASSES)
        return pt_fail(err, PT_ERR_INVALID, "classes must be in 1..%d, got %d", PT_SYNTH_MAX_CLASSES, o->classes);
    if (o->train_per_class < 1)
        return pt_fail(err, PT_ERR_INVALID, "train images per class must be at least 1, got %d", o->train_per_class);
    if (o->val_per_class < 1)
        return pt_fail(err, PT_ERR_INVALID, "val images per class must be at least 1, got %d", o->val_per_class);
    if (o->test_images < 0)
        return pt_fail(err, PT_ERR_INVALID, "test images must be at least 0, got %d", o->test_images);
    if (o->size < PT_SYNTH_MIN_SIZE || o->size > PT_SYNTH_MAX_SIZE)
        return pt_fail(err, PT_ERR_INVALID, "image size must be in %d..%d pixels, got %d", PT_SYNTH_MIN_SIZE,
                       PT_SYNTH_MAX_SIZE, o->size);
    if (o->quality < 1 || o->quality > 100)
        return pt_fail(err, PT_ERR_INVALID, "JPEG quality must be in 1..100, got %d", o->quality);
    if (!(o->gray_fraction >= 0.0 && o->gray_fraction <= 1.0))
        return pt_fail(err, PT_ERR_INVALID, "gray fraction must be in [0, 1], got %g", o->gray_fraction);
    int64_t total = (int64_t)o->classes * ((int64_t)o->train_per_class + o->val_per_class) + o->test_images;
    if (total > PT_SYNTH_MAX_IMAGES)
        return pt_fail(err, PT_ERR_INVALID, "%lld images asked for, at most %lld", (long long)total,
                       (long long)PT_SYNTH_MAX_IMAGES);
    return PT_OK;
}

/* "out" without trailing slashes (malloc'd). */
static char *strip_slashes(const char *out)
{
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '/') n--;
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, out, n);
        s[n] = '\0';
    }
    return s;
}

pt_synth_out_state pt_synth_out_state_of(const char *out)
{
    struct stat st;
    if (lstat(out, &st) != 0) return errno == ENOENT ? PT_SYNTH_OUT_MISSING : PT_SYNTH_OUT_NOT_DIR;
    if (!S_ISDIR(st.st_mode)) return PT_SYNTH_OUT_NOT_DIR;
    DIR *d = opendir(out);
    if (!d) return PT_SYNTH_OUT_OTHER;
    int empty = 1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            empty = 0;
            break;
        }
    closedir(d);
    if (empty) return PT_SYNTH_OUT_EMPTY;
    size_t n = strlen(out) + sizeof PT_SYNTH_MARKER + 2;
    char *marker = malloc(n);
    if (!marker) return PT_SYNTH_OUT_OTHER;
    snprintf(marker, n, "%s/%s", out, PT_SYNTH_MARKER);
    void *text = NULL;
    size_t size = 0;
    pt_synth_out_state s = PT_SYNTH_OUT_OTHER;
    if (pt_read_file(marker, 1 << 16, &text, &size, NULL) == PT_OK && strstr(text, "\"" SYNTH_FORMAT "\""))
        s = PT_SYNTH_OUT_SYNTH_TREE;
    free(text);
    free(marker);
    return s;
}

static pt_status out_refusal(const char *out, pt_synth_out_state st, int overwrite, pt_error *err)
{
    switch (st) {
    case PT_SYNTH_OUT_MISSING:
    case PT_SYNTH_OUT_EMPTY: return PT_OK;
    case PT_SYNTH_OUT_SYNTH_TREE:
        if (overwrite) return PT_OK;
        return pt_fail(err, PT_ERR_INVALID, "%s is not empty: it holds a tree synth wrote, replaced only on request",
                       out);
    case PT_SYNTH_OUT_OTHER:
        return pt_fail(err, PT_ERR_INVALID, "%s is not empty and was not written by synth (no %s): never replaced",
                       out, PT_SYNTH_MARKER);
    case PT_SYNTH_OUT_NOT_DIR: break;
    }
    return pt_fail(err, PT_ERR_INVALID, "%s exists and is not a directory", out);
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void wnid_of(int cls, char buf[16]) { snprintf(buf, 16, "n%08d", 90000000 + cls); }

static pt_status write_whole(const char *path, const void *data, size_t n, pt_error *err)
{
    FILE *f = fopen(path, "wb");
    if (!f) return pt_fail(err, PT_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    int bad = w != n || ferror(f);
    int e = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (bad) {
        unlink(path);
        return pt_fail(err, PT_ERR_IO, "cannot write %s: %s", path, strerror(e));
    }
    return PT_OK;
}

/* The shared state of one run's workers. */
typedef struct synth_job {
    const pt_synth_options *o;
    const char *root;       /* the partial tree */
    const int32_t *val_cls; /* class of val image i */
    int64_t ntrain, nval, ntest;
    atomic_llong next, done, bytes, gray;
    atomic_int stop;
    pthread_mutex_t mu;
    pt_status status;
    pt_error err;
} synth_job;

/* Class of unlabeled test image i (its own stream, independent of the other splits). */
static int test_class(const pt_synth_options *o, int64_t i)
{
    uint64_t s = pt_synth_key(o->seed, PT_SPLIT_TEST, 0xC1A55u, (uint64_t)i);
    return (int)pt_synth_below(&s, (uint32_t)o->classes);
}

/* Image j of the run: its split, class, index within the split and path. */
static void item(const synth_job *j, int64_t k, int *split, int *cls, int64_t *index, char *path, size_t n)
{
    const pt_synth_options *o = j->o;
    if (k < j->ntrain) {
        char w[16];
        *split = PT_SPLIT_TRAIN;
        *cls = (int)(k / o->train_per_class);
        *index = k % o->train_per_class;
        wnid_of(*cls, w);
        snprintf(path, n, "%s/train/%s/images/%s_%lld.JPEG", j->root, w, w, (long long)*index);
    } else if (k < j->ntrain + j->nval) {
        *split = PT_SPLIT_VAL;
        *index = k - j->ntrain;
        *cls = j->val_cls[*index];
        snprintf(path, n, "%s/val/images/val_%lld.JPEG", j->root, (long long)*index);
    } else {
        *split = PT_SPLIT_TEST;
        *index = k - j->ntrain - j->nval;
        *cls = test_class(o, *index);
        snprintf(path, n, "%s/test/images/test_%lld.JPEG", j->root, (long long)*index);
    }
}

static void job_fail(synth_job *j, const pt_error *e)
{
    pthread_mutex_lock(&j->mu);
    if (j->status == PT_OK) {
        j->status = e->status;
        j->err = *e;
    }
    pthread_mutex_unlock(&j->mu);
    atomic_store(&j->stop, 1);
}

static void *synth_worker(void *arg)
{
    synth_job *j = arg;
    const pt_synth_options *o = j->o;
    int64_t total = j->ntrain + j->nval + j->ntest;
    size_t plen = strlen(j->root) + 96;
    char *path = malloc(plen);
    uint8_t *pix = malloc((size_t)o->size * (size_t)o->size * 3);
    pt_jpeg_encoder *enc = NULL;
    pt_error e;
    pt_error_clear(&e);
    if (!path || !pix) {
        pt_fail(&e, PT_ERR_NOMEM, "out of memory for an image buffer");
        job_fail(j, &e);
    } else if (pt_jpeg_encoder_create(&enc, &e) != PT_OK) {
        job_fail(j, &e);
    }
    while (!atomic_load(&j->stop)) {
        int64_t k0 = atomic_fetch_add(&j->next, CLAIM);
        if (k0 >= total) break;
        int64_t k1 = k0 + CLAIM < total ? k0 + CLAIM : total;
        long long bytes = 0, gray = 0;
        for (int64_t k = k0; k < k1 && !atomic_load(&j->stop); k++) {
            int split, cls;
            int64_t index;
            item(j, k, &split, &cls, &index, path, plen);
            pt_synth_image info;
            pt_synth_render(o->seed, split, cls, index, o->size, o->gray_fraction, pix, &info);
            const uint8_t *jpeg;
            size_t n;
            if (pt_jpeg_encode(enc, pix, o->size, o->size, info.gray ? 1 : 3, o->quality, &jpeg, &n, &e) != PT_OK ||
                write_whole(path, jpeg, n, &e) != PT_OK) {
                job_fail(j, &e);
                break;
            }
            bytes += (long long)n;
            gray += info.gray;
            atomic_fetch_add(&j->done, 1);
        }
        atomic_fetch_add(&j->bytes, bytes);
        atomic_fetch_add(&j->gray, gray);
    }
    pt_jpeg_encoder_free(enc);
    free(pix);
    free(path);
    return NULL;
}

/* A text file of the tree, counted in the report. */
static pt_status write_text(const char *root, const char *rel, pt_strbuf *sb, pt_synth_report *rep, pt_error *err)
{
    PT_TRY(pt_strbuf_check(sb, err));
    size_t n = strlen(root) + strlen(rel) + 2;
    char *path = malloc(n);
    if (!path) return pt_fail(err, PT_ERR_NOMEM, "out of memory");
    snprintf(path, n, "%s/%s", root, rel);
    pt_status s = write_whole(path, sb->data, sb->len, err);
    free(path);
    if (s == PT_OK) {
        rep->files++;
        rep->bytes += (int64_t)sb->len;
    }
    return s;
}

static pt_status make_dir(const char *root, const char *rel, pt_error *err)
{
    size_t n = strlen(root) + strlen(rel) + 2;
    char *path = malloc(n);
    if (!path) return pt_fail(err, PT_ERR_NOMEM, "out of memory");
    snprintf(path, n, "%s/%s", root, rel);
    pt_status s = pt_mkdir_p(path, err);
    free(path);
    return s;
}

/* wnids.txt, words.txt, every class's boxes file, val_annotations.txt and synth.json (last). */
static pt_status write_texts(const char *root, const pt_synth_options *o, const int32_t *val_cls, int64_t nval,
                             pt_synth_report *rep, pt_error *err)
{
    pt_strbuf sb;
    pt_strbuf_init(&sb);
    char w[16], rel[64], name[96];
    pt_status s = PT_OK;
    for (int c = 0; c < o->classes; c++) {
        wnid_of(c, w);
        pt_strbuf_printf(&sb, "%s\n", w);
    }
    s = write_text(root, "wnids.txt", &sb, rep, err);
    sb.len = 0;
    for (int c = 0; c < o->classes && s == PT_OK; c++) {
        wnid_of(c, w);
        pt_synth_class_name(c, name, sizeof name);
        pt_strbuf_printf(&sb, "%s\t%s\n", w, name);
    }
    if (s == PT_OK) s = write_text(root, "words.txt", &sb, rep, err);
    for (int c = 0; c < o->classes && s == PT_OK; c++) {
        sb.len = 0;
        wnid_of(c, w);
        for (int i = 0; i < o->train_per_class; i++) {
            pt_synth_image info;
            pt_synth_describe(o->seed, PT_SPLIT_TRAIN, c, i, o->size, o->gray_fraction, &info);
            pt_strbuf_printf(&sb, "%s_%d.JPEG\t%d\t%d\t%d\t%d\n", w, i, info.box[0], info.box[1], info.box[2],
                             info.box[3]);
        }
        snprintf(rel, sizeof rel, "train/%s/%s_boxes.txt", w, w);
        s = write_text(root, rel, &sb, rep, err);
    }
    sb.len = 0;
    for (int64_t i = 0; i < nval && s == PT_OK; i++) {
        pt_synth_image info;
        pt_synth_describe(o->seed, PT_SPLIT_VAL, val_cls[i], i, o->size, o->gray_fraction, &info);
        wnid_of(val_cls[i], w);
        pt_strbuf_printf(&sb, "val_%lld.JPEG\t%s\t%d\t%d\t%d\t%d\n", (long long)i, w, info.box[0], info.box[1],
                         info.box[2], info.box[3]);
    }
    if (s == PT_OK) s = write_text(root, "val/val_annotations.txt", &sb, rep, err);
    if (s == PT_OK) {
        /* The marker: written last, so a tree with it is complete. */
        sb.len = 0;
        pt_strbuf_printf(&sb,
                         "{\n  \"format\": \"%s\",\n  \"version\": %d,\n  \"seed\": %llu,\n  \"classes\": %d,\n"
                         "  \"train_per_class\": %d,\n  \"val_per_class\": %d,\n  \"test_images\": %d,\n"
                         "  \"size\": %d,\n  \"quality\": %d,\n  \"gray_fraction\": ",
                         SYNTH_FORMAT, SYNTH_VERSION, (unsigned long long)o->seed, o->classes, o->train_per_class,
                         o->val_per_class, o->test_images, o->size, o->quality);
        pt_strbuf_json_double(&sb, o->gray_fraction);
        pt_strbuf_printf(&sb, ",\n  \"images\": %lld,\n  \"gray_images\": %lld\n}\n",
                         (long long)(rep->train + rep->val + rep->test), (long long)rep->gray);
        s = write_text(root, PT_SYNTH_MARKER, &sb, rep, err);
    }
    pt_strbuf_free(&sb);
    return s;
}

/* Renames the finished tree to out, replacing an empty directory or (overwrite) a tree synth
 * wrote: the old tree is first renamed aside, then removed. */
static pt_status commit(const char *tmp, const char *out, const char *suffix, int overwrite, int *committed,
                        pt_error *err)
{
    pt_synth_out_state st = pt_synth_out_state_of(out);
    PT_TRY(out_refusal(out, st, overwrite, err));
    if (st == PT_SYNTH_OUT_EMPTY && rmdir(out) != 0)
        return pt_fail(err, PT_ERR_IO, "cannot replace the empty directory %s: %s", out, strerror(errno));
    char *old = NULL;
    if (st == PT_SYNTH_OUT_SYNTH_TREE) {
        size_t n = strlen(out) + strlen(suffix) + 8;
        old = malloc(n);
        if (!old) return pt_fail(err, PT_ERR_NOMEM, "out of memory");
        snprintf(old, n, "%s.old-%s", out, suffix);
        if (rename(out, old) != 0) {
            pt_status s = pt_fail(err, PT_ERR_IO, "cannot move the old tree %s aside: %s", out, strerror(errno));
            free(old);
            return s;
        }
    }
    if (rename(tmp, out) != 0) {
        pt_status s = pt_fail(err, PT_ERR_IO, "cannot rename %s to %s: %s", tmp, out, strerror(errno));
        if (old && rename(old, out) != 0) pt_error_wrap(err, "the old tree is left at %s", old);
        free(old);
        return s;
    }
    *committed = 1;
    pt_status s = PT_OK;
    if (old && pt_remove_tree(old, err) != PT_OK)
        s = pt_error_wrap(err, "%s is complete, but its predecessor %s could not be removed", out, old);
    free(old);
    return s;
}

pt_status pt_synth_write(const char *out_arg, const pt_synth_options *o, pt_synth_report *rep_out, pt_error *err)
{
    PT_TRY(pt_synth_check(o, err));
    double t0 = mono();
    pt_synth_report rep;
    memset(&rep, 0, sizeof rep);
    char *out = strip_slashes(out_arg);
    if (!out || !*out) {
        free(out);
        return pt_fail(err, PT_ERR_INVALID, "empty output path");
    }
    pt_status s = out_refusal(out, pt_synth_out_state_of(out), o->overwrite, err);
    if (s != PT_OK) {
        free(out);
        return s;
    }
    /* The parent must exist for the partial tree to sit next to out. */
    char *parent = strdup(out), *slash = parent ? strrchr(parent, '/') : NULL;
    if (!parent) s = pt_fail(err, PT_ERR_NOMEM, "out of memory");
    else if (slash && slash != parent) {
        *slash = '\0';
        s = pt_mkdir_p(parent, err);
    }
    free(parent);
    size_t tlen = strlen(out) + 32;
    char *tmp = s == PT_OK ? malloc(tlen) : NULL;
    if (!tmp) {
        if (s == PT_OK) s = pt_fail(err, PT_ERR_NOMEM, "out of memory");
        free(out);
        return s;
    }
    snprintf(tmp, tlen, "%s.partial-XXXXXX", out);
    if (!mkdtemp(tmp)) {
        s = pt_fail(err, PT_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        free(out);
        return s;
    }
    const char *suffix = strrchr(tmp, '-') + 1;

    int64_t nval = (int64_t)o->classes * o->val_per_class;
    int32_t *val_cls = malloc((size_t)nval * sizeof *val_cls);
    if (!val_cls) s = pt_fail(err, PT_ERR_NOMEM, "out of memory for %lld val labels", (long long)nval);
    /* Val classes: every class val_per_class times, in a seeded shuffle (as the real val/ is). */
    if (s == PT_OK) {
        for (int64_t i = 0; i < nval; i++) val_cls[i] = (int32_t)(i % o->classes);
        uint64_t st = pt_synth_key(o->seed, PT_SPLIT_VAL, 0x5F0FFu, 0);
        for (int64_t i = nval - 1; i > 0; i--) {
            int64_t k = pt_synth_below(&st, (uint32_t)(i + 1));
            int32_t t = val_cls[i];
            val_cls[i] = val_cls[k];
            val_cls[k] = t;
        }
    }
    char w[16], rel[64];
    for (int c = 0; c < o->classes && s == PT_OK; c++) {
        wnid_of(c, w);
        snprintf(rel, sizeof rel, "train/%s/images", w);
        s = make_dir(tmp, rel, err);
    }
    if (s == PT_OK) s = make_dir(tmp, "val/images", err);
    if (s == PT_OK && o->test_images > 0) s = make_dir(tmp, "test/images", err);

    synth_job j;
    memset(&j, 0, sizeof j);
    j.o = o;
    j.root = tmp;
    j.val_cls = val_cls;
    j.ntrain = (int64_t)o->classes * o->train_per_class;
    j.nval = nval;
    j.ntest = o->test_images;
    atomic_init(&j.next, 0);
    atomic_init(&j.done, 0);
    atomic_init(&j.bytes, 0);
    atomic_init(&j.gray, 0);
    atomic_init(&j.stop, 0);
    int mu_ok = 0;
    if (s == PT_OK) {
        if (pthread_mutex_init(&j.mu, NULL) != 0) s = pt_fail(err, PT_ERR_NOMEM, "cannot create a mutex");
        else mu_ok = 1;
    }
    if (s == PT_OK) {
        int64_t total = j.ntrain + j.nval + j.ntest;
        int nt = o->threads < 1 ? 1 : o->threads > 256 ? 256 : o->threads;
        pthread_t th[256];
        int started = 0;
        for (; started < nt; started++)
            if (pthread_create(&th[started], NULL, synth_worker, &j) != 0) break;
        if (started == 0) {
            synth_worker(&j);
        } else {
            int stopped = 0;
            while (atomic_load(&j.done) < total && !atomic_load(&j.stop)) {
                struct timespec ts = {0, 50 * 1000 * 1000};
                nanosleep(&ts, NULL);
                if (o->progress) o->progress(o->user, atomic_load(&j.done), total);
                if (o->should_stop && o->should_stop(o->user)) {
                    stopped = 1;
                    atomic_store(&j.stop, 1);
                }
            }
            for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
            if (stopped && j.status == PT_OK)
                pt_fail(&j.err, j.status = PT_ERR_INTERRUPTED, "interrupted");
        }
        if (o->progress && j.status == PT_OK) o->progress(o->user, atomic_load(&j.done), total);
        if (j.status != PT_OK) {
            s = j.status;
            if (err) *err = j.err;
        } else {
            rep.train = j.ntrain;
            rep.val = j.nval;
            rep.test = j.ntest;
            rep.gray = atomic_load(&j.gray);
            rep.files = total;
            rep.bytes = atomic_load(&j.bytes);
        }
    }
    if (mu_ok) pthread_mutex_destroy(&j.mu);
    if (s == PT_OK) s = write_texts(tmp, o, val_cls, nval, &rep, err);
    int committed = 0;
    if (s == PT_OK) s = commit(tmp, out, suffix, o->overwrite, &committed, err);
    if (s != PT_OK && !committed) {
        pt_error e2;
        if (pt_remove_tree(tmp, &e2) != PT_OK) pt_error_wrap(err, "the partial tree %s is left behind", tmp);
        else pt_error_wrap(err, "nothing written to %s", out);
    }
    free(val_cls);
    free(tmp);
    free(out);
    rep.seconds = mono() - t0;
    if (rep_out) *rep_out = rep;
    return s;
}
