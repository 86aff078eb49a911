/* Writing and mapping packed caches. The writer decodes with a pool of threads straight
 * into the mapped temporary file, then compacts out skipped images, checksums, writes the
 * header last, syncs and renames. The reader never trusts the header: sizes are bounded,
 * offsets checked against the file's real length, then every checksum verified. */
#include "data/pack.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <math.h>
#include <stddef.h>
#include <unistd.h>

#include "core/fileio.h"
#include "data/decode.h"

static const char PACK_MAGIC[8] = {'P', 'T', 'P', 'A', 'C', 'K', '\r', '\n'};

/* On-disk header, little-endian (the writer refuses big-endian hosts). */
typedef struct pack_header {
    char magic[8];
    uint32_t version, header_bytes;
    uint32_t channels, height, width, num_classes;
    uint64_t count, chunk_samples, nchunks;
    uint64_t fingerprint, gray, skipped;
    float mean[3], std[3];
    uint64_t names_off, names_bytes, labels_off, sums_off, pixels_off, file_bytes;
    uint64_t meta_sum;   /* checksum of [names_off, pixels_off) */
    uint64_t header_sum; /* checksum of every byte before this field */
} pack_header;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

uint64_t pt_pack_checksum(const uint8_t *p, size_t n)
{
    const uint64_t P1 = 0x9E3779B185EBCA87ull, P2 = 0xC2B2AE3D27D4EB4Full;
    uint64_t a = P1 + P2, b = P2, c = 0, d = (uint64_t)0 - P1;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t w[4];
        memcpy(w, p + i, 32);
        a = rotl(a + w[0] * P2, 31) * P1;
        b = rotl(b + w[1] * P2, 31) * P1;
        c = rotl(c + w[2] * P2, 31) * P1;
        d = rotl(d + w[3] * P2, 31) * P1;
    }
    uint64_t h = rotl(a, 1) + rotl(b, 7) + rotl(c, 12) + rotl(d, 18) + (uint64_t)n;
    for (; i < n; i++) h = rotl(h ^ (p[i] * P1), 11) * P2;
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P1;
    h ^= h >> 32;
    return h;
}

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/* ---- writer ---- */

typedef struct pack_job {
    const pt_filelist *fl;
    const char *path;     /* the cache being written (messages) */
    const pt_pack_options *opt;
    uint8_t *pixels;      /* count slots of sample bytes, by source index */
    uint8_t *ok;          /* per source index: 1 decoded, 0 skipped */
    uint8_t *gray;
    int64_t sample;
    atomic_llong next, done;
    atomic_int failed;
    pthread_mutex_t mu;
    pt_status status;
    pt_error error;       /* the first failure (or first skipped image) */
    int64_t skipped;
    uint64_t sums[3], sqsums[3]; /* per channel, over decoded samples */
} pack_job;

static void *pack_worker(void *arg)
{
    pack_job *j = arg;
    pt_decoder *dec = NULL;
    pt_error e;
    pt_error_clear(&e);
    uint64_t sum[3] = {0}, sq[3] = {0};
    int64_t skipped = 0;
    int C = j->opt->channels, H = j->opt->height, W = j->opt->width;
    if (pt_decoder_create(&dec, &e) != PT_OK) {
        pthread_mutex_lock(&j->mu);
        if (j->status == PT_OK) {
            j->status = e.status;
            j->error = e;
        }
        pthread_mutex_unlock(&j->mu);
        atomic_store(&j->failed, 1);
        return NULL;
    }
    for (;;) {
        if (atomic_load(&j->failed)) break;
        if (j->opt->cancelled && j->opt->cancelled(j->opt->user)) {
            pthread_mutex_lock(&j->mu);
            if (j->status == PT_OK) {
                j->status = PT_ERR_INTERRUPTED;
                pt_fail(&j->error, PT_ERR_INTERRUPTED, "packing %s: interrupted (nothing kept)", j->path);
            }
            pthread_mutex_unlock(&j->mu);
            atomic_store(&j->failed, 1);
            break;
        }
        int64_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->fl->count) break;
        uint8_t *dst = j->pixels + i * j->sample;
        int g = 0;
        pt_status s = pt_decode_file(dec, j->fl->paths[i], C, H, W, dst, &g, &e);
        if (s == PT_OK) {
            j->ok[i] = 1;
            j->gray[i] = (uint8_t)g;
            int64_t plane = (int64_t)H * W;
            for (int c = 0; c < C; c++) {
                const uint8_t *p = dst + c * plane;
                uint64_t s1 = 0, s2 = 0;
                for (int64_t k = 0; k < plane; k++) {
                    s1 += p[k];
                    s2 += (uint64_t)p[k] * p[k];
                }
                sum[c] += s1;
                sq[c] += s2;
            }
        } else {
            int first;
            pthread_mutex_lock(&j->mu);
            first = j->error.msg[0] == '\0';
            if (first) j->error = e;
            if (!j->opt->skip_bad && j->status == PT_OK) {
                j->status = s;
                j->error = e;
            }
            pthread_mutex_unlock(&j->mu);
            if (!j->opt->skip_bad) {
                atomic_store(&j->failed, 1);
                break;
            }
            skipped++;
        }
        atomic_fetch_add(&j->done, 1);
    }
    pthread_mutex_lock(&j->mu);
    for (int c = 0; c < 3; c++) {
        j->sums[c] += sum[c];
        j->sqsums[c] += sq[c];
    }
    j->skipped += skipped;
    pthread_mutex_unlock(&j->mu);
    pt_decoder_free(dec);
    return NULL;
}

static pt_status write_all(int fd, const void *buf, size_t n, uint64_t off, const char *path,
                           pt_error *err)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return pt_fail(err, PT_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return PT_OK;
}

pt_status pt_pack_write(const pt_filelist *fl, const char *path, const pt_pack_options *opt,
                        pt_pack_report *rep, pt_error *err)
{
    double t0 = now_s();
    if (rep) memset(rep, 0, sizeof *rep);
    const uint16_t one = 1;
    if (*(const uint8_t *)&one != 1)
        return pt_fail(err, PT_ERR_UNSUPPORTED, "packed caches are little-endian; this host is not");
    int C = opt->channels, H = opt->height, W = opt->width;
    if ((C != 1 && C != 3) || H < 1 || W < 1 || H > 4096 || W > 4096)
        return pt_fail(err, PT_ERR_INVALID, "pack %s: sample shape %dx%dx%d (channels 1 or 3, sides 1..4096)",
                       path, C, H, W);
    if (fl->count < 1 || fl->count > PT_PACK_MAX_SAMPLES)
        return pt_fail(err, PT_ERR_INVALID, "pack %s: %lld images (1..%lld)", path, (long long)fl->count,
                       (long long)PT_PACK_MAX_SAMPLES);
    for (int64_t i = 0; i < fl->count; i++)
        if (fl->labels[i] < 0 || fl->labels[i] >= fl->num_classes)
            return pt_fail(err, PT_ERR_INVALID, "pack %s: image %s has no label in [0, %d)", path,
                           fl->paths[i], fl->num_classes);
    int64_t sample = (int64_t)C * H * W, n = fl->count;
    uint64_t names_bytes = 0;
    for (int c = 0; c < fl->num_classes; c++) names_bytes += strlen(fl->class_names[c]) + 1;
    uint64_t nchunks_max = (uint64_t)(n + PT_PACK_CHUNK_SAMPLES - 1) / PT_PACK_CHUNK_SAMPLES;
    uint64_t names_off = sizeof(pack_header);
    uint64_t labels_off = align_up(names_off + names_bytes, 8);
    uint64_t sums_off = align_up(labels_off + 4 * (uint64_t)n, 8);
    uint64_t pixels_off = align_up(sums_off + 8 * nchunks_max, 4096);
    uint64_t max_bytes = pixels_off + (uint64_t)n * (uint64_t)sample;

    /* The cache is mapped while it is filled, so only a regular file will do; a symlink
     * is followed, a FIFO or device refused, and the old cache stays until the rename. */
    pt_output out;
    PT_TRY(pt_output_open(&out, path, PT_OUTPUT_SEEKABLE, err));
    int fd = out.fd;
    const char *tmp = out.tmp;
    pt_status s = PT_OK;
    uint8_t *map = MAP_FAILED;
    pack_job j;
    memset(&j, 0, sizeof j);
    int mu_ok = 0;
    int64_t kept = 0, gray = 0;
    if (ftruncate(fd, (off_t)max_bytes) != 0) {
        s = pt_fail(err, PT_ERR_IO, "cannot size cache %s to %llu bytes: %s", tmp,
                    (unsigned long long)max_bytes, strerror(errno));
        goto done;
    }
    map = mmap(NULL, (size_t)max_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        s = pt_fail(err, PT_ERR_IO, "cannot map cache %s: %s", tmp, strerror(errno));
        goto done;
    }
    j.fl = fl;
    j.path = path;
    j.opt = opt;
    j.pixels = map + pixels_off;
    j.sample = sample;
    j.ok = calloc((size_t)n, 1);
    j.gray = calloc((size_t)n, 1);
    atomic_init(&j.next, 0);
    atomic_init(&j.done, 0);
    atomic_init(&j.failed, 0);
    if (!j.ok || !j.gray || pthread_mutex_init(&j.mu, NULL) != 0) {
        s = pt_fail(err, PT_ERR_NOMEM, "out of memory packing %lld images", (long long)n);
        goto done;
    }
    mu_ok = 1;
    {
        int nt = opt->threads > 0 ? opt->threads : 1;
        if (nt > 256) nt = 256;
        if (nt > n) nt = (int)n;
        pthread_t th[256];
        int started = 0;
        /* With a progress callback the calling thread only reports; otherwise it decodes. */
        int extra = opt->progress ? nt : nt - 1;
        for (int t = 0; t < extra; t++) {
            if (pthread_create(&th[started], NULL, pack_worker, &j) != 0) break;
            started++;
        }
        if (!opt->progress || started == 0) {
            pack_worker(&j);
        } else {
            while (atomic_load(&j.done) < n && !atomic_load(&j.failed)) {
                opt->progress(opt->user, atomic_load(&j.done), n);
                struct timespec ts = {0, 100000000};
                nanosleep(&ts, NULL);
            }
        }
        for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
        if (opt->progress) opt->progress(opt->user, atomic_load(&j.done), n);
    }
    if (j.status != PT_OK) {
        if (err) *err = j.error;
        s = j.status;
        goto done;
    }
    /* Compact out skipped images, keeping source order. */
    for (int64_t i = 0; i < n; i++) {
        if (!j.ok[i]) continue;
        if (kept != i) memmove(j.pixels + kept * sample, j.pixels + i * sample, (size_t)sample);
        gray += j.gray[i];
        kept++;
    }
    if (kept == 0) {
        s = pt_fail(err, PT_ERR_FORMAT, "pack %s: every image failed to decode; the first: %s", path,
                    j.error.msg);
        goto done;
    }
    {
        pack_header h;
        memset(&h, 0, sizeof h);
        memcpy(h.magic, PACK_MAGIC, 8);
        h.version = PT_PACK_VERSION;
        h.header_bytes = sizeof h;
        h.channels = (uint32_t)C;
        h.height = (uint32_t)H;
        h.width = (uint32_t)W;
        h.num_classes = (uint32_t)fl->num_classes;
        h.count = (uint64_t)kept;
        h.chunk_samples = PT_PACK_CHUNK_SAMPLES;
        h.nchunks = ((uint64_t)kept + PT_PACK_CHUNK_SAMPLES - 1) / PT_PACK_CHUNK_SAMPLES;
        h.fingerprint = fl->fingerprint;
        h.gray = (uint64_t)gray;
        h.skipped = (uint64_t)(n - kept);
        double px = (double)kept * H * W;
        for (int c = 0; c < 3; c++) {
            int cc = c < C ? c : 0;
            double m = (double)j.sums[cc] / px, v = (double)j.sqsums[cc] / px - m * m;
            h.mean[c] = (float)(m / 255.0);
            h.std[c] = (float)(v > 0 ? sqrt(v) / 255.0 : 1.0);
        }
        h.names_off = names_off;
        h.names_bytes = names_bytes;
        h.labels_off = labels_off;
        h.sums_off = align_up(labels_off + 4 * (uint64_t)kept, 8); /* <= sums_off: fewer labels when images were skipped */
        h.pixels_off = pixels_off;
        h.file_bytes = pixels_off + (uint64_t)kept * (uint64_t)sample;
        uint8_t *q = map + names_off;
        memset(map + names_off, 0, pixels_off - names_off);
        for (int c = 0; c < fl->num_classes; c++) {
            size_t l = strlen(fl->class_names[c]) + 1;
            memcpy(q, fl->class_names[c], l);
            q += l;
        }
        int32_t *lab = (int32_t *)(void *)(map + labels_off);
        for (int64_t i = 0, k = 0; i < n; i++)
            if (j.ok[i]) lab[k++] = fl->labels[i];
        uint64_t *sums = (uint64_t *)(void *)(map + h.sums_off);
        for (uint64_t ch = 0; ch < h.nchunks; ch++) {
            uint64_t first = ch * PT_PACK_CHUNK_SAMPLES;
            uint64_t cnt = (uint64_t)kept - first < PT_PACK_CHUNK_SAMPLES ? (uint64_t)kept - first : PT_PACK_CHUNK_SAMPLES;
            sums[ch] = pt_pack_checksum(j.pixels + first * (uint64_t)sample, (size_t)(cnt * (uint64_t)sample));
        }
        h.meta_sum = pt_pack_checksum(map + names_off, (size_t)(pixels_off - names_off));
        h.header_sum = pt_pack_checksum((const uint8_t *)&h, offsetof(pack_header, header_sum));
        if (msync(map, (size_t)max_bytes, MS_SYNC) != 0) {
            s = pt_fail(err, PT_ERR_IO, "cannot flush cache %s: %s", tmp, strerror(errno));
            goto done;
        }
        munmap(map, (size_t)max_bytes);
        map = MAP_FAILED;
        if (ftruncate(fd, (off_t)h.file_bytes) != 0) {
            s = pt_fail(err, PT_ERR_IO, "cannot size cache %s: %s", tmp, strerror(errno));
            goto done;
        }
        /* The header (with the magic) goes last: until then the file is not a cache. */
        s = write_all(fd, &h, sizeof h, 0, tmp, err);
        if (s != PT_OK) goto done;
        if (fsync(fd) != 0) {
            s = pt_fail(err, PT_ERR_IO, "cannot sync cache %s: %s", tmp, strerror(errno));
            goto done;
        }
    }
done:
    if (map != MAP_FAILED) munmap(map, (size_t)max_bytes);
    if (s == PT_OK) s = pt_output_commit(&out, err);
    else pt_output_abort(&out);
    if (s == PT_OK && rep) {
        rep->packed = kept;
        rep->gray = gray;
        rep->skipped = n - kept;
        if (rep->skipped) snprintf(rep->first_skipped, sizeof rep->first_skipped, "%s", j.error.msg);
        rep->seconds = now_s() - t0;
    }
    if (mu_ok) pthread_mutex_destroy(&j.mu);
    free(j.ok);
    free(j.gray);
    return s;
}

/* ---- reader ---- */

typedef struct pack_map {
    void *addr;
    size_t bytes;
} pack_map;

static void pack_release(pt_dataset *ds)
{
    pack_map *m = ds->impl;
    if (m) {
        munmap(m->addr, m->bytes);
        free(m);
    }
    ds->impl = NULL;
    ds->pixels = NULL; /* points into the mapping, not malloc'd */
}

pt_status pt_pack_open(const char *path, uint64_t expect_fingerprint, int channels, int height,
                       int width, int64_t limit, pt_dataset *out, pt_pack_info *info,
                       pt_error *err)
{
    memset(out, 0, sizeof *out);
    if (limit < 0) return pt_fail(err, PT_ERR_INVALID, "cache %s: limit must be >= 0", path);
    int fd;
    PT_TRY(pt_open_input(path, PT_INPUT_FILE, "cache", &fd, err));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return pt_fail(err, PT_ERR_IO, "cannot stat cache %s: %s", path, strerror(errno));
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < sizeof(pack_header)) {
        close(fd);
        return pt_fail(err, PT_ERR_FORMAT, "cache %s: %llu bytes, too short for a header (truncated?)", path,
                       (unsigned long long)size);
    }
    uint8_t *map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return pt_fail(err, PT_ERR_IO, "cannot map cache %s: %s", path, strerror(errno));
    pack_header h;
    memcpy(&h, map, sizeof h);
    pt_status s = PT_OK;
#define BAD(...) do { s = pt_fail(err, PT_ERR_FORMAT, __VA_ARGS__); goto fail; } while (0)
    if (memcmp(h.magic, PACK_MAGIC, 8) != 0) BAD("cache %s: not a polytrain packed cache (bad magic)", path);
    if (h.version != PT_PACK_VERSION)
        BAD("cache %s: version %u, this build reads version %d (rebuild it)", path, h.version, PT_PACK_VERSION);
    if (h.header_bytes != sizeof h) BAD("cache %s: header of %u bytes, expected %zu", path, h.header_bytes, sizeof h);
    if (pt_pack_checksum((const uint8_t *)&h, offsetof(pack_header, header_sum)) != h.header_sum)
        BAD("cache %s: header checksum mismatch (corrupt file)", path);
    if ((h.channels != 1 && h.channels != 3) || h.height < 1 || h.height > 4096 || h.width < 1 ||
        h.width > 4096 || h.num_classes < 1 || h.num_classes > PT_FILELIST_MAX_CLASSES || h.count < 1 ||
        h.count > (uint64_t)PT_PACK_MAX_SAMPLES || h.chunk_samples != PT_PACK_CHUNK_SAMPLES ||
        h.nchunks != (h.count + PT_PACK_CHUNK_SAMPLES - 1) / PT_PACK_CHUNK_SAMPLES)
        BAD("cache %s: implausible header (shape %ux%ux%u, %llu samples, %u classes)", path, h.channels,
            h.height, h.width, (unsigned long long)h.count, h.num_classes);
    uint64_t sample = (uint64_t)h.channels * h.height * h.width;
    if (h.names_off != sizeof h || h.names_bytes > ((uint64_t)64 << 20) ||
        h.labels_off < h.names_off + h.names_bytes || h.labels_off > size ||
        h.sums_off != align_up(h.labels_off + 4 * h.count, 8) || h.labels_off % 8 || h.pixels_off < h.sums_off + 8 * h.nchunks ||
        h.pixels_off > size || h.file_bytes != h.pixels_off + h.count * sample)
        BAD("cache %s: inconsistent section offsets", path);
    if (size != h.file_bytes)
        BAD("cache %s: %llu bytes, the header says %llu (%s)", path, (unsigned long long)size,
            (unsigned long long)h.file_bytes, size < h.file_bytes ? "truncated" : "extra bytes at the end");
    if (pt_pack_checksum(map + h.names_off, (size_t)(h.pixels_off - h.names_off)) != h.meta_sum)
        BAD("cache %s: checksum mismatch in the labels/class names (corrupt file)", path);
    {
        const uint64_t *sums = (const uint64_t *)(const void *)(map + h.sums_off);
        for (uint64_t c = 0; c < h.nchunks; c++) {
            uint64_t first = c * PT_PACK_CHUNK_SAMPLES;
            uint64_t cnt = h.count - first < PT_PACK_CHUNK_SAMPLES ? h.count - first : PT_PACK_CHUNK_SAMPLES;
            if (pt_pack_checksum(map + h.pixels_off + first * sample, (size_t)(cnt * sample)) != sums[c])
                BAD("cache %s: checksum mismatch in chunk %llu (samples %llu..%llu): corrupt file", path,
                    (unsigned long long)c, (unsigned long long)first, (unsigned long long)(first + cnt - 1));
        }
    }
    const int32_t *labels = (const int32_t *)(const void *)(map + h.labels_off);
    for (uint64_t i = 0; i < h.count; i++)
        if (labels[i] < 0 || (uint32_t)labels[i] >= h.num_classes)
            BAD("cache %s: sample %llu has label %d outside [0, %u)", path, (unsigned long long)i, labels[i],
                h.num_classes);
    for (int c = 0; c < 3; c++)
        if (!(h.std[c] > 0.0f) || !(h.mean[c] >= 0.0f && h.mean[c] <= 1.0f))
            BAD("cache %s: bad normalisation (mean %g, std %g for channel %d)", path, (double)h.mean[c],
                (double)h.std[c], c);
    if (expect_fingerprint && h.fingerprint != expect_fingerprint) {
        s = pt_fail(err, PT_ERR_MISMATCH, "cache %s was built from another source (fingerprint %016llx, the "
                    "source now is %016llx): rebuild it with polytrain pack", path,
                    (unsigned long long)h.fingerprint, (unsigned long long)expect_fingerprint);
        goto fail;
    }
    if ((channels > 0 && (uint32_t)channels != h.channels) || (height > 0 && (uint32_t)height != h.height) ||
        (width > 0 && (uint32_t)width != h.width)) {
        s = pt_fail(err, PT_ERR_MISMATCH, "cache %s holds %ux%ux%u samples, %dx%dx%d were asked for", path,
                    h.channels, h.height, h.width, channels, height, width);
        goto fail;
    }
    {
        /* class names: num_classes NUL-terminated strings within names_bytes */
        const char *names = (const char *)map + h.names_off;
        char **v = calloc(h.num_classes, sizeof *v);
        if (!v) {
            s = pt_fail(err, PT_ERR_NOMEM, "out of memory");
            goto fail;
        }
        uint64_t off = 0;
        for (uint32_t c = 0; c < h.num_classes; c++) {
            const char *nul = off < h.names_bytes ? memchr(names + off, '\0', (size_t)(h.names_bytes - off)) : NULL;
            if (!nul || !(v[c] = strdup(names + off))) {
                for (uint32_t k = 0; k < c; k++) free(v[k]);
                free(v);
                BAD("cache %s: class names section is malformed", path);
            }
            off = (uint64_t)(nul - names) + 1;
        }
        out->class_names = v;
        out->num_classes = (int)h.num_classes;
    }
    int64_t count = (int64_t)h.count;
    if (limit > 0 && limit < count) count = limit;
    out->labels = malloc((size_t)count * sizeof *out->labels);
    pack_map *pm = malloc(sizeof *pm);
    if (!out->labels || !pm) {
        free(pm);
        s = pt_fail(err, PT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    memcpy(out->labels, labels, (size_t)count * sizeof *out->labels);
    pm->addr = map;
    pm->bytes = (size_t)size;
    snprintf(out->name, sizeof out->name, "cache");
    out->count = count;
    out->channels = (int)h.channels;
    out->height = (int)h.height;
    out->width = (int)h.width;
    out->pixels = map + h.pixels_off;
    memcpy(out->mean, h.mean, sizeof out->mean);
    memcpy(out->std, h.std, sizeof out->std);
    out->impl = pm;
    out->release = pack_release;
    if (info) {
        info->version = h.version;
        info->channels = (int)h.channels;
        info->height = (int)h.height;
        info->width = (int)h.width;
        info->num_classes = (int)h.num_classes;
        info->count = (int64_t)h.count;
        info->gray = (int64_t)h.gray;
        info->skipped = (int64_t)h.skipped;
        info->fingerprint = h.fingerprint;
        memcpy(info->mean, h.mean, sizeof info->mean);
        memcpy(info->std, h.std, sizeof info->std);
    }
    madvise(map + h.pixels_off, (size_t)(h.count * sample), MADV_WILLNEED);
    return PT_OK;
#undef BAD
fail:
    if (out->class_names) {
        for (int c = 0; c < out->num_classes; c++) free(out->class_names[c]);
        free(out->class_names);
    }
    free(out->labels);
    memset(out, 0, sizeof *out);
    munmap(map, (size_t)size);
    return s;
}
