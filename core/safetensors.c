/* safetensors reading and writing. The reader trusts nothing in the file: every length,
 * shape and offset is bounded and cross-checked before a tensor pointer is handed out, and
 * no byte outside the buffers read is ever touched. */
#include "core/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/json.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this file assumes a little-endian host"
#endif

/* ---------------------------------------------------------------- dtypes */

static const struct {
    const char *name;
    size_t size;
} st_dtypes[PT_ST_DTYPE_COUNT] = {
    [PT_ST_F64] = {"F64", 8}, [PT_ST_F32] = {"F32", 4}, [PT_ST_F16] = {"F16", 2},
    [PT_ST_BF16] = {"BF16", 2}, [PT_ST_I64] = {"I64", 8}, [PT_ST_I32] = {"I32", 4},
    [PT_ST_I16] = {"I16", 2}, [PT_ST_I8] = {"I8", 1}, [PT_ST_U8] = {"U8", 1},
    [PT_ST_BOOL] = {"BOOL", 1},
};

static int dtype_ok(pt_st_dtype t) { return (int)t >= 0 && t < PT_ST_DTYPE_COUNT; }

const char *pt_st_dtype_name(pt_st_dtype t) { return dtype_ok(t) ? st_dtypes[t].name : "?"; }

size_t pt_st_dtype_size(pt_st_dtype t) { return dtype_ok(t) ? st_dtypes[t].size : 0; }

int pt_st_dtype_parse(const char *name, pt_st_dtype *out)
{
    for (int i = 0; i < PT_ST_DTYPE_COUNT; i++) {
        if (strcmp(name, st_dtypes[i].name) == 0) {
            *out = (pt_st_dtype)i;
            return 1;
        }
    }
    return 0;
}

pt_st_dtype pt_st_dtype_of(pt_dtype t)
{
    switch (t) {
    case PT_F32: return PT_ST_F32;
    case PT_I32: return PT_ST_I32;
    case PT_I64: return PT_ST_I64;
    case PT_U8: return PT_ST_U8;
    case PT_BF16: return PT_ST_BF16;
    case PT_F16: return PT_ST_F16;
    }
    return PT_ST_DTYPE_COUNT;
}

int pt_st_dtype_to_pt(pt_st_dtype t, pt_dtype *out)
{
    switch (t) {
    case PT_ST_F32: *out = PT_F32; return 1;
    case PT_ST_I32: *out = PT_I32; return 1;
    case PT_ST_I64: *out = PT_I64; return 1;
    case PT_ST_U8: *out = PT_U8; return 1;
    case PT_ST_BF16: *out = PT_BF16; return 1;
    case PT_ST_F16: *out = PT_F16; return 1;
    default: return 0;
    }
}

/* A bounded, printable rendering of a name taken from a file, for error messages. */
static const char *show(char *buf, size_t cap, const char *s)
{
    size_t o = 0, i = 0;
    for (; s[i] && o + 4 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[o++] = (c >= 0x20 && c != 0x7F) ? (char)c : '?';
    }
    if (s[i]) buf[o++] = '.', buf[o++] = '.', buf[o++] = '.';
    buf[o] = '\0';
    return buf;
}

/* ---------------------------------------------------------------- reader */

struct pt_st_file {
    pt_json *header;   /* owns every name and metadata string handed out */
    void *data;        /* the data section, 16-byte aligned */
    size_t data_size;
    pt_st_tensor *tensors; /* header order */
    size_t count;
    size_t *by_name;       /* tensor indices sorted by name, for pt_st_find */
    const char **meta_key, **meta_val;
    size_t meta_count;
};

void pt_st_close(pt_st_file *f)
{
    if (!f) return;
    pt_json_free(f->header);
    free(f->data);
    free(f->tensors);
    free(f->by_name);
    free(f->meta_key);
    free(f->meta_val);
    free(f);
}

static void *alloc_data(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 16, n ? n : 1) != 0) return NULL;
    return p;
}

typedef struct offset_key {
    uint64_t begin, end;
    size_t index;
} offset_key;

static int by_offset_cmp(const void *a, const void *b)
{
    const offset_key *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

typedef struct name_key {
    const char *name;
    size_t index;
} name_key;

static int by_name_cmp(const void *a, const void *b)
{
    return strcmp(((const name_key *)a)->name, ((const name_key *)b)->name);
}

/* Reads a non-negative JSON integer, or returns 0. */
static int get_uint(const pt_json *v, uint64_t *out)
{
    if (!v || v->type != PT_JSON_NUMBER || !v->is_int || v->integer < 0) return 0;
    *out = (uint64_t)v->integer;
    return 1;
}

static pt_status parse_metadata(pt_st_file *f, const char *name, const pt_json *m, pt_error *err)
{
    char sk[96];
    if (m->type == PT_JSON_NULL) return PT_OK;
    if (m->type != PT_JSON_OBJECT)
        return pt_fail(err, PT_ERR_FORMAT, "%s: __metadata__ must be an object of strings, got %s",
                       name, pt_json_type_name(m->type));
    f->meta_key = malloc((m->count ? m->count : 1) * sizeof *f->meta_key);
    f->meta_val = malloc((m->count ? m->count : 1) * sizeof *f->meta_val);
    if (!f->meta_key || !f->meta_val) return pt_fail(err, PT_ERR_NOMEM, "%s: out of memory", name);
    for (size_t i = 0; i < m->count; i++) {
        const pt_json_member *e = &m->members[i];
        if (e->value.type != PT_JSON_STRING)
            return pt_fail(err, PT_ERR_FORMAT, "%s: __metadata__ '%s' must be a string, got %s",
                           name, show(sk, sizeof sk, e->key), pt_json_type_name(e->value.type));
        if (strlen(e->key) != e->key_len || strlen(e->value.str) != e->value.str_len)
            return pt_fail(err, PT_ERR_FORMAT, "%s: __metadata__ '%s' contains a NUL character",
                           name, show(sk, sizeof sk, e->key));
        f->meta_key[i] = e->key;
        f->meta_val[i] = e->value.str;
    }
    f->meta_count = m->count;
    return PT_OK;
}

static pt_status parse_tensor(const char *name, const pt_json_member *e, size_t data_size,
                              pt_st_tensor *t, uint64_t *begin_out, uint64_t *end_out, pt_error *err)
{
    char sk[96];
    const char *tn = show(sk, sizeof sk, e->key);
    const pt_json *v = &e->value;
    if (strlen(e->key) != e->key_len)
        return pt_fail(err, PT_ERR_FORMAT, "%s: tensor name '%s' contains a NUL character", name, tn);
    if (v->type != PT_JSON_OBJECT)
        return pt_fail(err, PT_ERR_FORMAT, "%s: tensor '%s': expected an object, got %s", name, tn,
                       pt_json_type_name(v->type));
    t->name = e->key;

    const pt_json *dt = pt_json_get(v, "dtype");
    if (!dt) return pt_fail(err, PT_ERR_FORMAT, "%s: tensor '%s': missing 'dtype'", name, tn);
    char sd[32];
    if (dt->type != PT_JSON_STRING || !pt_st_dtype_parse(dt->str, &t->dtype))
        return pt_fail(err, PT_ERR_FORMAT,
                       "%s: tensor '%s': unknown dtype %s%s%s (expected F64, F32, F16, BF16, I64, "
                       "I32, I16, I8, U8 or BOOL)",
                       name, tn, dt->type == PT_JSON_STRING ? "'" : "",
                       dt->type == PT_JSON_STRING ? show(sd, sizeof sd, dt->str)
                                                  : pt_json_type_name(dt->type),
                       dt->type == PT_JSON_STRING ? "'" : "");

    const pt_json *sh = pt_json_get(v, "shape");
    if (!sh) return pt_fail(err, PT_ERR_FORMAT, "%s: tensor '%s': missing 'shape'", name, tn);
    if (sh->type != PT_JSON_ARRAY)
        return pt_fail(err, PT_ERR_FORMAT, "%s: tensor '%s': shape must be an array, got %s", name,
                       tn, pt_json_type_name(sh->type));
    if (sh->count > PT_ST_MAX_DIMS)
        return pt_fail(err, PT_ERR_FORMAT, "%s: tensor '%s': shape has %zu dimensions, more than %d",
                       name, tn, sh->count, PT_ST_MAX_DIMS);
    t->ndim = (int)sh->count;
    uint64_t numel = 1;
    int overflow = 0;
    for (size_t i = 0; i < sh->count; i++) {
        uint64_t d;
        if (!get_uint(&sh->items[i], &d))
            return pt_fail(err, PT_ERR_FORMAT,
                           "%s: tensor '%s': shape entry %zu is not a non-negative integer", name,
                           tn, i);
        t->shape[i] = (int64_t)d;
        if (d != 0 && numel > (uint64_t)INT64_MAX / d) overflow = 1;
        else numel *= d;
    }
    /* A zero dimension makes the product 0 whatever overflowed before it. */
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] == 0) overflow = 0, numel = 0;
    size_t esz = pt_st_dtype_size(t->dtype);
    if (overflow || numel > SIZE_MAX / esz)
        return pt_fail(err, PT_ERR_FORMAT, "%s: tensor '%s': shape is too large (element count overflows)",
                       name, tn);
    t->numel = (int64_t)numel;
    t->nbytes = (size_t)numel * esz;

    const pt_json *of = pt_json_get(v, "data_offsets");
    if (!of) return pt_fail(err, PT_ERR_FORMAT, "%s: tensor '%s': missing 'data_offsets'", name, tn);
    uint64_t b, en;
    if (of->type != PT_JSON_ARRAY || of->count != 2 || !get_uint(&of->items[0], &b) ||
        !get_uint(&of->items[1], &en))
        return pt_fail(err, PT_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets must be two non-negative integers [begin, end]",
                       name, tn);
    if (b > en)
        return pt_fail(err, PT_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin",
                       name, tn, (unsigned long long)b, (unsigned long long)en);
    if (en > data_size)
        return pt_fail(err, PT_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu] past the end of the data (%zu bytes)",
                       name, tn, (unsigned long long)b, (unsigned long long)en, data_size);
    if (en - b != t->nbytes)
        return pt_fail(err, PT_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but %s shape of "
                       "%lld elements needs %zu",
                       name, tn, (unsigned long long)b, (unsigned long long)en,
                       (unsigned long long)(en - b), pt_st_dtype_name(t->dtype), (long long)t->numel,
                       t->nbytes);
    *begin_out = b;
    *end_out = en;
    return PT_OK;
}

/* Takes ownership of data (data_size bytes, from alloc_data) in every case. */
static pt_status build(const char *name, const char *header, size_t hlen, void *data,
                       size_t data_size, pt_st_file **out, pt_error *err)
{
    pt_st_file *f = calloc(1, sizeof *f);
    if (!f) {
        free(data);
        return pt_fail(err, PT_ERR_NOMEM, "%s: out of memory", name);
    }
    f->data = data;
    f->data_size = data_size;
    offset_key *ranges = NULL;
    name_key *names = NULL;
    pt_status st;

    /* A valid header nests 3 deep and needs about 10 values per tensor: 2^20 values allow
     * 100k tensors (big language models have a few thousand) and bound the tree a hostile
     * header can make to about 100 MB. */
    pt_json_limits lim = {.max_depth = 8, .max_nodes = (size_t)1 << 20};
    pt_error jerr = {0};
    st = pt_json_parse(header, hlen, &lim, &f->header, &jerr);
    if (st) {
        st = pt_fail(err, st, "%s: header is not valid JSON: %s", name, jerr.msg);
        goto fail;
    }
    const pt_json *root = f->header;
    if (root->type != PT_JSON_OBJECT) {
        st = pt_fail(err, PT_ERR_FORMAT, "%s: header is not a JSON object (got %s)", name,
                     pt_json_type_name(root->type));
        goto fail;
    }
    f->tensors = calloc(root->count ? root->count : 1, sizeof *f->tensors);
    ranges = malloc((root->count ? root->count : 1) * sizeof *ranges);
    if (!f->tensors || !ranges) {
        st = pt_fail(err, PT_ERR_NOMEM, "%s: out of memory", name);
        goto fail;
    }
    for (size_t i = 0; i < root->count; i++) {
        const pt_json_member *e = &root->members[i];
        if (strcmp(e->key, "__metadata__") == 0 && e->key_len == 12) {
            st = parse_metadata(f, name, &e->value, err);
            if (st) goto fail;
            continue;
        }
        pt_st_tensor *t = &f->tensors[f->count];
        offset_key *r = &ranges[f->count];
        st = parse_tensor(name, e, data_size, t, &r->begin, &r->end, err);
        if (st) goto fail;
        r->index = f->count++;
    }

    /* The ranges must tile [0, data_size) exactly, as the reference implementation demands:
     * an overlap would alias two tensors, a gap or a tail means the file is not what its
     * header says. */
    qsort(ranges, f->count, sizeof *ranges, by_offset_cmp);
    uint64_t expect = 0;
    char s1[96], s2[96];
    for (size_t k = 0; k < f->count; k++) {
        const offset_key *r = &ranges[k];
        const pt_st_tensor *t = &f->tensors[r->index];
        if (r->begin < expect) {
            const offset_key *p = &ranges[k - 1];
            st = pt_fail(err, PT_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' [%llu, %llu]",
                         name, show(s1, sizeof s1, t->name), (unsigned long long)r->begin,
                         (unsigned long long)r->end, show(s2, sizeof s2, f->tensors[p->index].name),
                         (unsigned long long)p->begin, (unsigned long long)p->end);
            goto fail;
        }
        if (r->begin > expect) {
            st = pt_fail(err, PT_ERR_FORMAT,
                         "%s: data bytes [%llu, %llu) belong to no tensor (next is '%s' at %llu)",
                         name, (unsigned long long)expect, (unsigned long long)r->begin,
                         show(s1, sizeof s1, t->name), (unsigned long long)r->begin);
            goto fail;
        }
        expect = r->end;
        f->tensors[r->index].data = (const char *)f->data + r->begin;
    }
    if (expect != data_size) {
        st = pt_fail(err, PT_ERR_FORMAT,
                     "%s: data bytes [%llu, %zu) after the last tensor belong to no tensor", name,
                     (unsigned long long)expect, data_size);
        goto fail;
    }

    names = malloc((f->count ? f->count : 1) * sizeof *names);
    f->by_name = malloc((f->count ? f->count : 1) * sizeof *f->by_name);
    if (!names || !f->by_name) {
        st = pt_fail(err, PT_ERR_NOMEM, "%s: out of memory", name);
        goto fail;
    }
    for (size_t i = 0; i < f->count; i++) names[i] = (name_key){f->tensors[i].name, i};
    qsort(names, f->count, sizeof *names, by_name_cmp);
    for (size_t i = 0; i < f->count; i++) f->by_name[i] = names[i].index;
    free(names);
    free(ranges);
    *out = f;
    return PT_OK;
fail:
    free(names);
    free(ranges);
    pt_st_close(f);
    return st;
}

static uint64_t read_u64le(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}

/* Checks the 8-byte length against the file size before anything is allocated for it. */
static pt_status check_header_len(const char *name, uint64_t n, uint64_t file_size, pt_error *err)
{
    if (n < 2)
        return pt_fail(err, PT_ERR_FORMAT, "%s: header length %llu is too small (at least 2: '{}')",
                       name, (unsigned long long)n);
    if (n > PT_ST_MAX_HEADER)
        return pt_fail(err, PT_ERR_FORMAT, "%s: header length %llu exceeds the limit of %u bytes",
                       name, (unsigned long long)n, PT_ST_MAX_HEADER);
    if (n > file_size - 8)
        return pt_fail(err, PT_ERR_FORMAT,
                       "%s: header length %llu runs past the end of the file (%llu bytes): truncated?",
                       name, (unsigned long long)n, (unsigned long long)file_size);
    return PT_OK;
}

pt_status pt_st_open_memory(const void *bytes, size_t size, const char *name, pt_st_file **out,
                            pt_error *err)
{
    *out = NULL;
    if (!name) name = "<memory>";
    if (size < 8)
        return pt_fail(err, PT_ERR_FORMAT,
                       "%s: file is %zu bytes, too short for the 8-byte header length: truncated?",
                       name, size);
    const unsigned char *b = bytes;
    uint64_t n = read_u64le(b);
    PT_TRY(check_header_len(name, n, size, err));
    size_t dsize = size - 8 - (size_t)n;
    void *data = alloc_data(dsize);
    if (!data) return pt_fail(err, PT_ERR_NOMEM, "%s: out of memory (%zu bytes of data)", name, dsize);
    if (dsize) memcpy(data, b + 8 + n, dsize);
    return build(name, (const char *)b + 8, (size_t)n, data, dsize, out, err);
}

static int read_exact(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) {
            errno = 0; /* shrank */
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

pt_status pt_st_open(const char *path, pt_st_file **out, pt_error *err)
{
    *out = NULL;
    int fd;
    PT_TRY(pt_open_input(path, PT_INPUT_FILE, NULL, &fd, err));
    struct stat sb;
    pt_status st = PT_OK;
    char *header = NULL;
    void *data = NULL;
    if (fstat(fd, &sb) < 0) {
        st = pt_fail(err, PT_ERR_IO, "cannot stat '%s': %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = pt_fail(err, PT_ERR_IO, "cannot read '%s': not a regular file", path);
        goto out;
    }
    uint64_t fsize = (uint64_t)sb.st_size;
    if (sb.st_size < 8) {
        st = pt_fail(err, PT_ERR_FORMAT,
                     "%s: file is %llu bytes, too short for the 8-byte header length: truncated?",
                     path, (unsigned long long)fsize);
        goto out;
    }
    unsigned char lenb[8];
    if (read_exact(fd, lenb, 8) < 0) goto ioerr;
    uint64_t n = read_u64le(lenb);
    st = check_header_len(path, n, fsize, err);
    if (st) goto out;
    if (fsize - 8 - n > SIZE_MAX) {
        st = pt_fail(err, PT_ERR_NOMEM, "%s: file too large for this machine", path);
        goto out;
    }
    size_t dsize = (size_t)(fsize - 8 - n);
    header = malloc((size_t)n);
    data = alloc_data(dsize);
    if (!header || !data) {
        st = pt_fail(err, PT_ERR_NOMEM, "%s: out of memory (%llu bytes)", path,
                     (unsigned long long)fsize);
        goto out;
    }
    if (read_exact(fd, header, (size_t)n) < 0 || read_exact(fd, data, dsize) < 0) goto ioerr;
    close(fd);
    fd = -1;
    st = build(path, header, (size_t)n, data, dsize, out, err);
    data = NULL; /* build owns it */
    goto out;
ioerr:
    st = pt_fail(err, PT_ERR_IO, "cannot read '%s': %s", path,
                 errno ? strerror(errno) : "file shrank while being read");
out:
    if (fd >= 0) close(fd);
    free(header);
    free(data);
    return st;
}

size_t pt_st_count(const pt_st_file *f) { return f ? f->count : 0; }

const pt_st_tensor *pt_st_at(const pt_st_file *f, size_t i)
{
    return (f && i < f->count) ? &f->tensors[i] : NULL;
}

const pt_st_tensor *pt_st_find(const pt_st_file *f, const char *name)
{
    if (!f || !name) return NULL;
    size_t lo = 0, hi = f->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const pt_st_tensor *t = &f->tensors[f->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

const char *pt_st_meta(const pt_st_file *f, const char *key)
{
    if (!f || !key) return NULL;
    for (size_t i = 0; i < f->meta_count; i++)
        if (strcmp(f->meta_key[i], key) == 0) return f->meta_val[i];
    return NULL;
}

size_t pt_st_meta_count(const pt_st_file *f) { return f ? f->meta_count : 0; }

int pt_st_meta_at(const pt_st_file *f, size_t i, const char **key, const char **value)
{
    if (!f || i >= f->meta_count) return 0;
    *key = f->meta_key[i];
    *value = f->meta_val[i];
    return 1;
}

/* ---------------------------------------------------------------- writer */

typedef struct st_entry {
    char *name;
    pt_st_dtype dtype;
    int ndim;
    int64_t shape[PT_ST_MAX_DIMS];
    const void *data;
    void *owned; /* the copy, when PT_ST_COPY */
    size_t nbytes;
} st_entry;

struct pt_st_writer {
    st_entry *t;
    size_t n, cap;
    char **mkey, **mval;
    size_t mn, mcap;
};

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

pt_status pt_st_writer_new(pt_st_writer **out, pt_error *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out) return pt_fail(err, PT_ERR_NOMEM, "out of memory creating a safetensors writer");
    return PT_OK;
}

void pt_st_writer_free(pt_st_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].owned);
    }
    for (size_t i = 0; i < w->mn; i++) {
        free(w->mkey[i]);
        free(w->mval[i]);
    }
    free(w->t);
    free(w->mkey);
    free(w->mval);
    free(w);
}

pt_status pt_st_writer_add(pt_st_writer *w, const char *name, pt_st_dtype dtype, int ndim,
                           const int64_t *shape, const void *data, pt_st_ownership own,
                           pt_error *err)
{
    char sk[96];
    if (!w || !name) return pt_fail(err, PT_ERR_INVALID, "pt_st_writer_add: NULL argument");
    const char *tn = show(sk, sizeof sk, name);
    if (!name[0] || !pt_utf8_valid(name, strlen(name)) || strcmp(name, "__metadata__") == 0)
        return pt_fail(err, PT_ERR_INVALID,
                       "tensor name '%s' is not allowed (must be non-empty UTF-8, not __metadata__)", tn);
    if (!dtype_ok(dtype)) return pt_fail(err, PT_ERR_INVALID, "tensor '%s': invalid dtype %d", tn, (int)dtype);
    if (ndim < 0 || ndim > PT_ST_MAX_DIMS || (ndim > 0 && !shape))
        return pt_fail(err, PT_ERR_INVALID, "tensor '%s': rank %d is not in 0..%d", tn, ndim, PT_ST_MAX_DIMS);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return pt_fail(err, PT_ERR_INVALID, "tensor '%s' added twice", tn);
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return pt_fail(err, PT_ERR_INVALID, "tensor '%s': negative dimension %lld", tn,
                           (long long)shape[i]);
        if (shape[i] && numel > (uint64_t)INT64_MAX / (uint64_t)shape[i])
            return pt_fail(err, PT_ERR_INVALID, "tensor '%s': shape too large", tn);
        numel *= (uint64_t)shape[i];
    }
    size_t esz = pt_st_dtype_size(dtype);
    if (numel > SIZE_MAX / esz) return pt_fail(err, PT_ERR_INVALID, "tensor '%s': shape too large", tn);
    size_t nbytes = (size_t)numel * esz;
    if (nbytes && !data) return pt_fail(err, PT_ERR_INVALID, "tensor '%s': NULL data", tn);

    if (w->n == w->cap) {
        size_t ncap = w->cap ? w->cap * 2 : 16;
        st_entry *nt = realloc(w->t, ncap * sizeof *nt);
        if (!nt) return pt_fail(err, PT_ERR_NOMEM, "out of memory adding tensor '%s'", tn);
        w->t = nt;
        w->cap = ncap;
    }
    st_entry *e = &w->t[w->n];
    memset(e, 0, sizeof *e);
    e->name = dup_str(name);
    if (!e->name) return pt_fail(err, PT_ERR_NOMEM, "out of memory adding tensor '%s'", tn);
    if (own == PT_ST_COPY && nbytes) {
        e->owned = malloc(nbytes);
        if (!e->owned) {
            free(e->name);
            return pt_fail(err, PT_ERR_NOMEM, "out of memory copying tensor '%s' (%zu bytes)", tn, nbytes);
        }
        memcpy(e->owned, data, nbytes);
        e->data = e->owned;
    } else {
        e->data = data;
    }
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->nbytes = nbytes;
    w->n++;
    return PT_OK;
}

pt_status pt_st_writer_add_meta(pt_st_writer *w, const char *key, const char *value, pt_error *err)
{
    char sk[96];
    if (!w || !key || !value) return pt_fail(err, PT_ERR_INVALID, "pt_st_writer_add_meta: NULL argument");
    const char *kn = show(sk, sizeof sk, key);
    if (!pt_utf8_valid(key, strlen(key)) || !pt_utf8_valid(value, strlen(value)))
        return pt_fail(err, PT_ERR_INVALID, "metadata '%s': key and value must be UTF-8", kn);
    for (size_t i = 0; i < w->mn; i++)
        if (strcmp(w->mkey[i], key) == 0)
            return pt_fail(err, PT_ERR_INVALID, "metadata '%s' added twice", kn);
    if (w->mn == w->mcap) {
        size_t ncap = w->mcap ? w->mcap * 2 : 8;
        char **nk = realloc(w->mkey, ncap * sizeof *nk);
        if (!nk) return pt_fail(err, PT_ERR_NOMEM, "out of memory adding metadata");
        w->mkey = nk;
        char **nv = realloc(w->mval, ncap * sizeof *nv);
        if (!nv) return pt_fail(err, PT_ERR_NOMEM, "out of memory adding metadata");
        w->mval = nv;
        w->mcap = ncap;
    }
    char *k = dup_str(key), *v = dup_str(value);
    if (!k || !v) {
        free(k);
        free(v);
        return pt_fail(err, PT_ERR_NOMEM, "out of memory adding metadata");
    }
    w->mkey[w->mn] = k;
    w->mval[w->mn] = v;
    w->mn++;
    return PT_OK;
}

/* Builds the 8-byte length + padded header, and the data order (*order, malloc'd). */
static pt_status layout(const pt_st_writer *w, pt_strbuf *hdr, size_t **order_out, pt_error *err)
{
    size_t *order = malloc((w->n ? w->n : 1) * sizeof *order);
    uint64_t *begin = malloc((w->n ? w->n : 1) * sizeof *begin);
    if (!order || !begin) {
        free(order);
        free(begin);
        return pt_fail(err, PT_ERR_NOMEM, "out of memory laying out a safetensors file");
    }
    /* Decreasing element size, stable: each tensor then starts at a multiple of its own
     * element size (all sizes are powers of two), with no padding between tensors. */
    size_t k = 0;
    for (size_t sz = 8; sz >= 1; sz /= 2)
        for (size_t i = 0; i < w->n; i++)
            if (pt_st_dtype_size(w->t[i].dtype) == sz) order[k++] = i;
    uint64_t off = 0;
    for (size_t j = 0; j < k; j++) {
        begin[order[j]] = off;
        off += w->t[order[j]].nbytes;
    }

    pt_strbuf_init(hdr);
    pt_strbuf_append(hdr, "\0\0\0\0\0\0\0\0", 8);
    pt_strbuf_putc(hdr, '{');
    int first = 1;
    if (w->mn) {
        pt_strbuf_puts(hdr, "\"__metadata__\":{");
        for (size_t i = 0; i < w->mn; i++) {
            if (i) pt_strbuf_putc(hdr, ',');
            pt_strbuf_json_string(hdr, w->mkey[i]);
            pt_strbuf_putc(hdr, ':');
            pt_strbuf_json_string(hdr, w->mval[i]);
        }
        pt_strbuf_putc(hdr, '}');
        first = 0;
    }
    for (size_t i = 0; i < w->n; i++) {
        const st_entry *e = &w->t[i];
        if (!first) pt_strbuf_putc(hdr, ',');
        first = 0;
        pt_strbuf_json_string(hdr, e->name);
        pt_strbuf_printf(hdr, ":{\"dtype\":\"%s\",\"shape\":[", pt_st_dtype_name(e->dtype));
        for (int d = 0; d < e->ndim; d++) pt_strbuf_printf(hdr, d ? ",%lld" : "%lld", (long long)e->shape[d]);
        pt_strbuf_printf(hdr, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)begin[i],
                         (unsigned long long)(begin[i] + e->nbytes));
    }
    pt_strbuf_putc(hdr, '}');
    while (hdr->len % 8) pt_strbuf_putc(hdr, ' ');
    free(begin);
    if (pt_strbuf_check(hdr, err) != PT_OK) {
        free(order);
        pt_strbuf_free(hdr);
        return PT_ERR_NOMEM;
    }
    uint64_t n = hdr->len - 8;
    for (int i = 0; i < 8; i++) hdr->data[i] = (char)((n >> (8 * i)) & 0xFF);
    *order_out = order;
    return PT_OK;
}

pt_status pt_st_write_atomic(const pt_st_writer *w, const char *path, pt_error *err)
{
    if (!w || !path) return pt_fail(err, PT_ERR_INVALID, "pt_st_write_atomic: NULL argument");
    if (w->n >= (size_t)INT_MAX)
        return pt_fail(err, PT_ERR_INVALID, "%s: too many tensors (%zu)", path, w->n);
    pt_strbuf hdr;
    size_t *order;
    pt_status st = layout(w, &hdr, &order, err);
    if (st) return pt_error_wrap(err, "%s", path);
    const void **chunks = malloc((w->n + 1) * sizeof *chunks);
    size_t *sizes = malloc((w->n + 1) * sizeof *sizes);
    if (!chunks || !sizes) {
        st = pt_fail(err, PT_ERR_NOMEM, "%s: out of memory", path);
    } else {
        chunks[0] = hdr.data;
        sizes[0] = hdr.len;
        for (size_t j = 0; j < w->n; j++) {
            chunks[j + 1] = w->t[order[j]].data;
            sizes[j + 1] = w->t[order[j]].nbytes;
        }
        st = pt_write_file_atomic(path, (const void *const *)chunks, sizes, (int)(w->n + 1), err);
    }
    free(chunks);
    free(sizes);
    free(order);
    pt_strbuf_free(&hdr);
    return st;
}

pt_status pt_st_write_memory(const pt_st_writer *w, void **out, size_t *size, pt_error *err)
{
    *out = NULL;
    *size = 0;
    pt_strbuf hdr;
    size_t *order;
    PT_TRY(layout(w, &hdr, &order, err));
    size_t total = hdr.len;
    for (size_t i = 0; i < w->n; i++) total += w->t[i].nbytes; /* bounded: each was accepted */
    char *buf = malloc(total ? total : 1);
    if (!buf) {
        free(order);
        pt_strbuf_free(&hdr);
        return pt_fail(err, PT_ERR_NOMEM, "out of memory (%zu bytes)", total);
    }
    memcpy(buf, hdr.data, hdr.len);
    size_t o = hdr.len;
    for (size_t j = 0; j < w->n; j++) {
        const st_entry *e = &w->t[order[j]];
        if (e->nbytes) memcpy(buf + o, e->data, e->nbytes);
        o += e->nbytes;
    }
    free(order);
    pt_strbuf_free(&hdr);
    *out = buf;
    *size = total;
    return PT_OK;
}
