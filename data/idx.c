/* IDX reading through zlib's gz* calls, which read gzip and raw files alike. Memory for
 * the data grows only as bytes actually arrive, so a forged header announcing terabytes
 * in a tiny file costs one small buffer, never a huge allocation. */
#include "data/idx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "core/fileio.h"

#define IDX_CHUNK (1 << 20)
#define IDX_MAX_TOTAL (1LL << 36) /* 64 GiB: far above any IDX data set, below overflow */

static const char *gz_message(gzFile f, const char *path)
{
    int code = Z_OK;
    const char *m = gzerror(f, &code);
    if (code == Z_OK) return NULL;
    if (code == Z_ERRNO) return strerror(errno);
    if (!m || !*m) return "unknown zlib error";
    /* zlib prefixes the path it was opened with; ours is in the message already. */
    size_t n = strlen(path);
    return strncmp(m, path, n) == 0 && m[n] == ':' && m[n + 1] == ' ' ? m + n + 2 : m;
}

/* Reads up to n bytes; returns how many arrived (short only at end of data or on error). */
static int64_t gz_read_full(gzFile f, uint8_t *dst, int64_t n, int *failed)
{
    int64_t got = 0;
    *failed = 0;
    while (got < n) {
        int64_t want = n - got > IDX_CHUNK ? IDX_CHUNK : n - got;
        int r = gzread(f, dst + got, (unsigned)want);
        if (r < 0) {
            *failed = 1;
            break;
        }
        if (r == 0) break;
        got += r;
    }
    return got;
}

/* Opens path through pt_open_input (a FIFO or device fails at once instead of blocking). */
static pt_status open_gz(const char *path, gzFile *out, pt_error *err)
{
    *out = NULL;
    int fd;
    PT_TRY(pt_open_input(path, PT_INPUT_FILE, "IDX file", &fd, err));
    gzFile f = gzdopen(fd, "rb");
    if (!f) {
        close(fd);
        return pt_fail(err, PT_ERR_NOMEM, "cannot read %s: out of memory", path);
    }
    *out = f;
    return PT_OK;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The part of the error message after "path: " for a short read. */
static pt_status fail_short(pt_error *err, const char *path, gzFile f, int failed,
                            const char *what, int64_t expected, int64_t got)
{
    const char *zm = gz_message(f, path);
    if (failed && zm && strcmp(zm, "unexpected end of file") != 0)
        return pt_fail(err, PT_ERR_FORMAT, "%s: corrupt gzip data: %s", path, zm);
    return pt_fail(err, PT_ERR_FORMAT, "%s: truncated %s: expected %lld bytes, found %lld%s%s%s",
                   path, what, (long long)expected, (long long)got, zm ? " (zlib: " : "",
                   zm ? zm : "", zm ? ")" : "");
}

static pt_status read_header(gzFile f, const char *path, uint32_t want_magic, pt_idx *h,
                             pt_error *err)
{
    uint8_t b[4 + 4 * 3];
    int failed;
    int64_t got = gz_read_full(f, b, 4, &failed);
    if (got < 4) return fail_short(err, path, f, failed, "IDX header", 4, got);
    uint32_t magic = be32(b);
    if (magic != want_magic)
        return pt_fail(err, PT_ERR_FORMAT,
                       "%s: not an IDX file of the expected kind: magic 0x%08x, expected 0x%08x "
                       "(unsigned bytes, %u dimension%s)",
                       path, magic, want_magic, want_magic & 0xffu,
                       (want_magic & 0xffu) == 1 ? "" : "s");
    int ndim = (int)(magic & 0xffu);
    if (ndim < 1 || ndim > 3)
        return pt_fail(err, PT_ERR_INVALID, "unsupported IDX magic 0x%08x", want_magic);
    got = gz_read_full(f, b + 4, 4 * ndim, &failed);
    if (got < 4 * ndim)
        return fail_short(err, path, f, failed, "IDX header", 4 + 4 * ndim, 4 + got);
    memset(h, 0, sizeof *h);
    h->magic = magic;
    h->ndim = ndim;
    h->item_bytes = 1;
    for (int d = 0; d < ndim; d++) {
        int64_t v = be32(b + 4 + 4 * d);
        int64_t bound = d == 0 ? PT_IDX_MAX_COUNT : PT_IDX_MAX_DIM;
        if (v == 0 || v > bound)
            return pt_fail(err, PT_ERR_FORMAT,
                           "%s: IDX dimension %d is %lld, expected 1..%lld", path, d,
                           (long long)v, (long long)bound);
        h->dim[d] = v;
        if (d > 0) h->item_bytes *= v; /* <= 4096^2: cannot overflow */
    }
    if (h->dim[0] > IDX_MAX_TOTAL / h->item_bytes)
        return pt_fail(err, PT_ERR_FORMAT, "%s: IDX data of %lld x %lld bytes is too large", path,
                       (long long)h->dim[0], (long long)h->item_bytes);
    return PT_OK;
}

/* Discards n bytes of data. */
static pt_status skip_bytes(gzFile f, const char *path, int64_t n, pt_error *err)
{
    uint8_t buf[16384];
    int64_t left = n;
    while (left > 0) {
        int want = left > (int64_t)sizeof buf ? (int)sizeof buf : (int)left;
        int r = gzread(f, buf, (unsigned)want);
        if (r <= 0) return fail_short(err, path, f, r < 0, "IDX data", n, n - left);
        left -= r;
    }
    return PT_OK;
}

/* Reads exactly n bytes into a buffer that grows with the data actually read. */
static pt_status read_data(gzFile f, const char *path, int64_t n, uint8_t **out, pt_error *err)
{
    int64_t cap = n < IDX_CHUNK ? n : IDX_CHUNK, got = 0;
    uint8_t *buf = malloc((size_t)cap);
    if (!buf) return pt_fail(err, PT_ERR_NOMEM, "%s: out of memory for %lld bytes", path,
                             (long long)cap);
    while (got < n) {
        if (got == cap) {
            int64_t ncap = cap * 2 < n ? cap * 2 : n;
            uint8_t *nb = realloc(buf, (size_t)ncap);
            if (!nb) {
                free(buf);
                return pt_fail(err, PT_ERR_NOMEM, "%s: out of memory for %lld bytes", path,
                               (long long)ncap);
            }
            buf = nb;
            cap = ncap;
        }
        int failed;
        int64_t r = gz_read_full(f, buf + got, cap - got, &failed);
        got += r;
        if (got < cap) {
            free(buf);
            return fail_short(err, path, f, failed, "IDX data", n, got);
        }
    }
    *out = buf;
    return PT_OK;
}

/* Checks n more bytes of data without keeping them, through a small buffer: a truncated
 * file, a corrupt stream and (max_value >= 0) a byte above max_value are errors. first_item
 * is the index of the item the bytes start at, for messages. */
static pt_status check_rest(gzFile f, const char *path, int64_t n, int64_t first_item, int64_t item_bytes,
                            int max_value, pt_error *err)
{
    uint8_t buf[65536];
    int64_t done = 0;
    while (done < n) {
        int want = n - done > (int64_t)sizeof buf ? (int)sizeof buf : (int)(n - done);
        int r = gzread(f, buf, (unsigned)want);
        if (r <= 0) return fail_short(err, path, f, r < 0, "IDX data", n, done);
        if (max_value >= 0)
            for (int i = 0; i < r; i++)
                if (buf[i] > max_value)
                    return pt_fail(err, PT_ERR_FORMAT, "%s: label %u of sample %lld is not a class in [0, %d)", path,
                                   buf[i], (long long)(first_item + (done + i) / item_bytes), max_value + 1);
        done += r;
    }
    return PT_OK;
}

static pt_status check_values(const pt_idx *h, const char *path, int max_value, pt_error *err)
{
    if (max_value < 0) return PT_OK;
    int64_t n = h->count * h->item_bytes;
    for (int64_t i = 0; i < n; i++)
        if (h->data[i] > max_value)
            return pt_fail(err, PT_ERR_FORMAT, "%s: label %u of sample %lld is not a class in [0, %d)", path,
                           h->data[i], (long long)(h->first + i / h->item_bytes), max_value + 1);
    return PT_OK;
}

/* Items [first, first + count) into memory; with check_to_end the items after them are read
 * and checked too (check_rest), without being kept, then the end of the file. */
static pt_status read_items(const char *path, uint32_t magic, int64_t first, int64_t count, int check_to_end,
                            int max_value, pt_idx *out, pt_error *err)
{
    memset(out, 0, sizeof *out);
    if (first < 0)
        return pt_fail(err, PT_ERR_INVALID, "%s: negative first item %lld", path,
                       (long long)first);
    gzFile f;
    PT_TRY(open_gz(path, &f, err));
    gzbuffer(f, 1 << 17);
    pt_idx h;
    pt_status s = read_header(f, path, magic, &h, err);
    if (s != PT_OK) goto done;
    if (count >= 0 && check_to_end && first + count > h.dim[0] && first < h.dim[0]) count = h.dim[0] - first;
    int to_end = count < 0 || first + count >= h.dim[0] || check_to_end;
    if (first >= h.dim[0] || (count >= 0 && count > h.dim[0] - first)) {
        s = pt_fail(err, PT_ERR_INVALID, "%s: items [%lld, %lld) requested, the file holds %lld",
                    path, (long long)first, (long long)(count < 0 ? h.dim[0] : first + count),
                    (long long)h.dim[0]);
        goto done;
    }
    if (count < 0) count = h.dim[0] - first;
    s = skip_bytes(f, path, first * h.item_bytes, err);
    if (s != PT_OK) goto done;
    /* Memory grows with the bytes that arrive, up to the items asked for: never more,
     * whatever the header claims the file holds. */
    s = read_data(f, path, count * h.item_bytes, &h.data, err);
    if (s != PT_OK) goto done;
    h.first = first;
    h.count = count;
    s = check_values(&h, path, max_value, err);
    int64_t after = first + count;
    if (s == PT_OK && to_end && after < h.dim[0])
        s = check_rest(f, path, (h.dim[0] - after) * h.item_bytes, after, h.item_bytes, max_value, err);
    if (s != PT_OK) {
        free(h.data);
        goto done;
    }
    if (to_end) {
        /* One more read must find the end: it also makes zlib check the gzip trailer's CRC. */
        uint8_t extra;
        int r = gzread(f, &extra, 1);
        if (r != 0) {
            const char *zm = gz_message(f, path);
            free(h.data);
            if (r < 0)
                s = pt_fail(err, PT_ERR_FORMAT, "%s: corrupt gzip data after the IDX data: %s",
                            path, zm ? zm : "read error");
            else
                s = pt_fail(err, PT_ERR_FORMAT,
                            "%s: unexpected bytes after the %lld bytes of IDX data the header "
                            "announces",
                            path, (long long)(h.dim[0] * h.item_bytes));
            goto done;
        }
    }
    *out = h;
done:
    gzclose_r(f);
    return s;
}

pt_status pt_idx_read_items(const char *path, uint32_t magic, int64_t first, int64_t count,
                            pt_idx *out, pt_error *err)
{
    return read_items(path, magic, first, count, 0, -1, out, err);
}

pt_status pt_idx_read_checked(const char *path, uint32_t magic, int64_t keep, int max_value, pt_idx *out,
                              pt_error *err)
{
    return read_items(path, magic, 0, keep > 0 ? keep : -1, 1, max_value, out, err);
}

pt_status pt_idx_read_header(const char *path, uint32_t magic, pt_idx *out, pt_error *err)
{
    memset(out, 0, sizeof *out);
    gzFile f;
    PT_TRY(open_gz(path, &f, err));
    pt_status s = read_header(f, path, magic, out, err);
    gzclose_r(f);
    return s;
}

pt_status pt_idx_read(const char *path, uint32_t magic, pt_idx *out, pt_error *err)
{
    return pt_idx_read_items(path, magic, 0, -1, out, err);
}

void pt_idx_free(pt_idx *idx)
{
    if (!idx) return;
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}
