/* TensorBoard event files (see tb_events.h): TFRecord framing and the few protobuf fields
 * of tensorflow.Event and Summary that scalars need, encoded by hand. Old event files are
 * read, never trusted: every record's two CRCs are checked and its fields bounded. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/tb_events.h"

#define EVENTS_PREFIX "events.out.tfevents."
#define MAX_TAG 1024
/* a scan reads each old event file whole; a run's scalars are far below this */
#define MAX_SCAN_BYTES ((size_t)1 << 30)

typedef struct {
    char *tag;
    int64_t last_step;
} logged_tag;

struct pt_tb_writer {
    FILE *f;
    char *path;
    logged_tag *logged; /* resume: the last step of every tag already in the folder */
    int nlogged, caplogged;
};

/* ---------------------------------------------------------------- CRC-32C */

static uint32_t crc_table[256];

static void crc_init(void)
{
    if (crc_table[1]) return; /* table[1] is never 0 once built */
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t pt_crc32c(const void *data, size_t n)
{
    crc_init();
    const unsigned char *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

uint32_t pt_tb_masked_crc(const void *data, size_t n)
{
    uint32_t c = pt_crc32c(data, n);
    return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

/* ---------------------------------------------------------------- protobuf encoding */

static size_t put_varint(unsigned char *p, uint64_t v)
{
    size_t n = 0;
    do {
        p[n++] = (unsigned char)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return n;
}

static void put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Event {wall_time = 1 (double), step = 2 (int64)} followed by either file_version = 3
 * (string) or summary = 5 holding one Value {tag = 1, simple_value = 2 (float)}. */
static size_t encode_event(unsigned char *buf, double wall_time, int64_t step, const char *version,
                           const char *tag, float value)
{
    size_t n = 0;
    uint64_t bits;
    buf[n++] = 0x09; /* field 1, 64-bit */
    memcpy(&bits, &wall_time, 8);
    put_le(buf + n, bits, 8);
    n += 8;
    buf[n++] = 0x10; /* field 2, varint */
    n += put_varint(buf + n, (uint64_t)step);
    if (version) {
        size_t len = strlen(version);
        buf[n++] = 0x1A; /* field 3, bytes */
        n += put_varint(buf + n, len);
        memcpy(buf + n, version, len);
        return n + len;
    }
    size_t tlen = strlen(tag);
    unsigned char tlenv[10];
    size_t tlenn = put_varint(tlenv, tlen);
    size_t value_len = 1 + tlenn + tlen + 1 + 4;
    unsigned char vlenv[10];
    size_t vlenn = put_varint(vlenv, value_len);
    size_t summary_len = 1 + vlenn + value_len;
    buf[n++] = 0x2A; /* Event field 5, bytes: the Summary */
    n += put_varint(buf + n, summary_len);
    buf[n++] = 0x0A; /* Summary field 1, bytes: a Value */
    memcpy(buf + n, vlenv, vlenn);
    n += vlenn;
    buf[n++] = 0x0A; /* Value field 1, bytes: the tag */
    memcpy(buf + n, tlenv, tlenn);
    n += tlenn;
    memcpy(buf + n, tag, tlen);
    n += tlen;
    buf[n++] = 0x15; /* Value field 2, 32-bit: simple_value */
    uint32_t fbits;
    memcpy(&fbits, &value, 4);
    put_le(buf + n, fbits, 4);
    return n + 4;
}

static pt_status write_record(pt_tb_writer *w, const unsigned char *data, size_t n, pt_error *err)
{
    unsigned char head[12], foot[4];
    put_le(head, n, 8);
    put_le(head + 8, pt_tb_masked_crc(head, 8), 4);
    put_le(foot, pt_tb_masked_crc(data, n), 4);
    if (fwrite(head, 1, 12, w->f) != 12 || fwrite(data, 1, n, w->f) != n || fwrite(foot, 1, 4, w->f) != 4)
        return pt_fail(err, PT_ERR_IO, "cannot write '%s': %s", w->path, strerror(errno));
    return PT_OK;
}

static double wall_time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------- old event files */

static int64_t *logged_slot(pt_tb_writer *w, const char *tag, size_t len, int add)
{
    for (int i = 0; i < w->nlogged; i++)
        if (strlen(w->logged[i].tag) == len && memcmp(w->logged[i].tag, tag, len) == 0) return &w->logged[i].last_step;
    if (!add) return NULL;
    if (w->nlogged == w->caplogged) {
        int cap = w->caplogged ? 2 * w->caplogged : 16;
        logged_tag *nl = realloc(w->logged, (size_t)cap * sizeof *nl);
        if (!nl) return NULL;
        w->logged = nl;
        w->caplogged = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) return NULL;
    memcpy(copy, tag, len);
    copy[len] = '\0';
    w->logged[w->nlogged].tag = copy;
    w->logged[w->nlogged].last_step = INT64_MIN;
    return &w->logged[w->nlogged++].last_step;
}

static int get_varint(const unsigned char *p, size_t n, size_t *pos, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && *pos < n; shift += 7) {
        unsigned char b = p[(*pos)++];
        *v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) return 1;
    }
    return 0;
}

/* Visits the fields of one message: returns 0 on a malformed one. For length-delimited
 * fields *sub and *sublen are the payload; for varints *v is the value. */
static int next_field(const unsigned char *p, size_t n, size_t *pos, uint32_t *field, uint64_t *v,
                      const unsigned char **sub, size_t *sublen)
{
    uint64_t key;
    if (!get_varint(p, n, pos, &key)) return 0;
    *field = (uint32_t)(key >> 3);
    *sub = NULL;
    switch (key & 7) {
    case 0: return get_varint(p, n, pos, v);
    case 1: if (n - *pos < 8) return 0; *pos += 8; return 1;
    case 5: if (n - *pos < 4) return 0; *pos += 4; return 1;
    case 2:
        if (!get_varint(p, n, pos, v) || *v > n - *pos) return 0;
        *sub = p + *pos;
        *sublen = (size_t)*v;
        *pos += (size_t)*v;
        return 1;
    default: return 0;
    }
}

/* The tags of one Event's summary and its step, into the table of last steps. */
static pt_status note_event(pt_tb_writer *w, const unsigned char *p, size_t n, pt_error *err)
{
    size_t pos = 0, sumlen = 0;
    const unsigned char *summary = NULL, *sub;
    size_t sublen;
    uint64_t v = 0, step = 0;
    uint32_t field;
    while (pos < n) {
        if (!next_field(p, n, &pos, &field, &v, &sub, &sublen)) return PT_OK;
        if (field == 2 && !sub) step = v;
        if (field == 5 && sub) {
            summary = sub;
            sumlen = sublen;
        }
    }
    for (size_t spos = 0; summary && spos < sumlen;) {
        const unsigned char *value;
        size_t vlen;
        if (!next_field(summary, sumlen, &spos, &field, &v, &value, &vlen)) break;
        if (field != 1 || !value) continue;
        for (size_t vpos = 0; vpos < vlen;) {
            if (!next_field(value, vlen, &vpos, &field, &v, &sub, &sublen)) break;
            if (field != 1 || !sub || sublen > MAX_TAG) continue;
            int64_t *last = logged_slot(w, (const char *)sub, sublen, 1);
            if (!last) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
            if ((int64_t)step > *last) *last = (int64_t)step;
        }
    }
    return PT_OK;
}

/* Reads records until the file ends or one is torn or fails its CRC: the end of what a
 * crashed writer left, and where TensorBoard's reader stops too. */
static pt_status scan_file(pt_tb_writer *w, const char *path, pt_error *err)
{
    void *data = NULL;
    size_t size = 0;
    PT_TRY(pt_read_file(path, MAX_SCAN_BYTES, &data, &size, err));
    const unsigned char *p = data;
    pt_status st = PT_OK;
    for (size_t pos = 0; st == PT_OK && size - pos >= 12;) {
        uint64_t len = get_le(p + pos, 8);
        if ((uint32_t)get_le(p + pos + 8, 4) != pt_tb_masked_crc(p + pos, 8)) break;
        if (len > size - pos - 12 || size - pos - 12 - len < 4) break;
        const unsigned char *rec = p + pos + 12;
        if ((uint32_t)get_le(rec + len, 4) != pt_tb_masked_crc(rec, (size_t)len)) break;
        st = note_event(w, rec, (size_t)len, err);
        pos += 12 + (size_t)len + 4;
    }
    free(data);
    return st;
}

/* Every regular event file (events.out.tfevents.<...>) of dir: scanned (resume) or removed (new run). */
static pt_status visit_old_files(pt_tb_writer *w, const char *dir, int resume, pt_error *err)
{
    DIR *d = opendir(dir);
    if (!d) return pt_fail(err, PT_ERR_IO, "cannot read directory '%s': %s", dir, strerror(errno));
    pt_status st = PT_OK;
    struct dirent *de;
    char path[4200];
    while (st == PT_OK && (de = readdir(d)) != NULL) {
        struct stat sb;
        if (strncmp(de->d_name, EVENTS_PREFIX, strlen(EVENTS_PREFIX)) != 0) continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path) continue;
        if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (resume) st = scan_file(w, path, err);
        else if (unlink(path) != 0)
            st = pt_fail(err, PT_ERR_IO, "cannot remove the old event file '%s': %s", path, strerror(errno));
    }
    closedir(d);
    return st;
}

/* ---------------------------------------------------------------- the writer */

static void host_name(char *dst, size_t n)
{
    if (gethostname(dst, n) != 0 || !dst[0]) snprintf(dst, n, "localhost");
    dst[n - 1] = '\0';
    /* a file name component: no separators or odd characters */
    for (char *c = dst; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '.' ||
              *c == '-' || *c == '_'))
            *c = '_';
}

pt_status pt_tb_open(const char *dir, int resume, pt_tb_writer **out, pt_error *err)
{
    *out = NULL;
    PT_TRY(pt_mkdir_p(dir, err));
    pt_tb_writer *w = calloc(1, sizeof *w);
    if (!w) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    pt_status st = visit_old_files(w, dir, resume, err);
    if (st != PT_OK) {
        pt_tb_close(w);
        return st;
    }
    /* TensorBoard's writer counts its files per process from 0; the count also makes a
     * name unique when another file took it in the same second. */
    static unsigned counter;
    char host[256], path[4200];
    host_name(host, sizeof host);
    const double now = wall_time_now();
    int fd = -1;
    for (int tries = 0; fd < 0 && tries < 1000; tries++) {
        if (snprintf(path, sizeof path, "%s/" EVENTS_PREFIX "%010lld.%s.%ld.%u", dir, (long long)now, host,
                     (long)getpid(), counter++) >= (int)sizeof path) {
            pt_tb_close(w);
            return pt_fail(err, PT_ERR_INVALID, "path '%s/%s...' is too long", dir, EVENTS_PREFIX);
        }
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0 || !(w->f = fdopen(fd, "wb"))) {
        int e = errno;
        if (fd >= 0) close(fd);
        pt_tb_close(w);
        return pt_fail(err, PT_ERR_IO, "cannot create the event file '%s': %s", path, strerror(e));
    }
    w->path = strdup(path);
    unsigned char buf[64];
    size_t n = encode_event(buf, now, 0, "brain.Event:2", NULL, 0);
    if (!w->path) st = pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    if (st == PT_OK) st = write_record(w, buf, n, err);
    if (st == PT_OK) st = pt_tb_flush(w, err);
    if (st != PT_OK) {
        pt_tb_close(w);
        return st;
    }
    *out = w;
    return PT_OK;
}

pt_status pt_tb_scalar(pt_tb_writer *w, const char *tag, int64_t step, double value, pt_error *err)
{
    size_t len = strlen(tag);
    if (len == 0 || len > MAX_TAG)
        return pt_fail(err, PT_ERR_INVALID, "event tag '%.40s...' is empty or longer than %d bytes", tag, MAX_TAG);
    const int64_t *last = logged_slot(w, tag, len, 0);
    if (last && step <= *last) return PT_OK;
    unsigned char buf[MAX_TAG + 64];
    size_t n = encode_event(buf, wall_time_now(), step, NULL, tag, (float)value);
    return write_record(w, buf, n, err);
}

pt_status pt_tb_flush(pt_tb_writer *w, pt_error *err)
{
    if (fflush(w->f) != 0) return pt_fail(err, PT_ERR_IO, "cannot write '%s': %s", w->path, strerror(errno));
    return PT_OK;
}

const char *pt_tb_path(const pt_tb_writer *w) { return w->path; }

void pt_tb_close(pt_tb_writer *w)
{
    if (!w) return;
    if (w->f) fclose(w->f);
    for (int i = 0; i < w->nlogged; i++) free(w->logged[i].tag);
    free(w->logged);
    free(w->path);
    free(w);
}
