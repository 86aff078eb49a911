/* safetensors checkpoint files: a reader that validates the whole header against the file
 * before handing out a single pointer, and a writer that lays out an aligned header and
 * writes tensors straight from host memory through pt_write_file_atomic.
 * Format: u64 LE header length N, N bytes of JSON, raw little-endian C-order data. */
#ifndef PT_SAFETENSORS_H
#define PT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "polytrain/status.h"
#include "polytrain/tensor.h"

typedef enum pt_st_dtype {
    PT_ST_F64 = 0,
    PT_ST_F32,
    PT_ST_F16,
    PT_ST_BF16,
    PT_ST_I64,
    PT_ST_I32,
    PT_ST_I16,
    PT_ST_I8,
    PT_ST_U8,
    PT_ST_BOOL,
    PT_ST_DTYPE_COUNT
} pt_st_dtype;

/* Limits the reader enforces (the first matches the reference implementation). */
#define PT_ST_MAX_HEADER 100000000u /* bytes of JSON header */
#define PT_ST_MAX_DIMS 16           /* tensor rank */

const char *pt_st_dtype_name(pt_st_dtype t); /* "F32"; "?" for an invalid value */
size_t pt_st_dtype_size(pt_st_dtype t);      /* bytes per element; 0 for an invalid value */
/* "F32" -> PT_ST_F32; 0 if name is not one of the dtypes above, else 1. */
int pt_st_dtype_parse(const char *name, pt_st_dtype *out);
/* Conversions to and from the core tensor dtypes (every pt_dtype has a safetensors dtype;
 * pt_st_dtype_to_pt returns 0 for dtypes polytrain tensors do not have). */
pt_st_dtype pt_st_dtype_of(pt_dtype t);
int pt_st_dtype_to_pt(pt_st_dtype t, pt_dtype *out);

/* ---------------------------------------------------------------- reader */

typedef struct pt_st_file pt_st_file;

typedef struct pt_st_tensor {
    const char *name;
    pt_st_dtype dtype;
    int ndim; /* 0 for a scalar */
    int64_t shape[PT_ST_MAX_DIMS];
    int64_t numel; /* product of shape (1 for a scalar) */
    /* Points into the file's data section, which is kept 16-byte aligned; so data is
     * aligned for its dtype whenever its offset is (always for files pt_st_writer makes
     * and for files made by the Python safetensors library). Use memcpy if unsure. */
    const void *data;
    size_t nbytes;
} pt_st_tensor;

/* Reads and validates a whole file: header length (>= 2, <= PT_ST_MAX_HEADER, inside the
 * file), JSON well-formed and an object, every entry an object with a known dtype, a shape
 * of non-negative integers (overflow-checked), data_offsets [begin, end] with
 * end - begin == numel * dtype size, all ranges together covering the data section exactly
 * (no gap, no overlap, nothing after the last), __metadata__ an object of strings, no
 * duplicate names. Any violation is PT_ERR_FORMAT with a message starting with the path,
 * e.g. "out/model.safetensors: tensor 'conv1.weight': data_offsets [0, 9999] past the end
 * of the data (4096 bytes)". */
pt_status pt_st_open(const char *path, pt_st_file **out, pt_error *err);
/* The same on bytes already in memory (copied; the caller keeps ownership of bytes).
 * name is used in error messages in place of the path. */
pt_status pt_st_open_memory(const void *bytes, size_t size, const char *name, pt_st_file **out,
                            pt_error *err);
void pt_st_close(pt_st_file *f);

size_t pt_st_count(const pt_st_file *f);
/* Tensor i in header (file) order; NULL if i >= count. */
const pt_st_tensor *pt_st_at(const pt_st_file *f, size_t i);
/* Tensor by exact name, or NULL. */
const pt_st_tensor *pt_st_find(const pt_st_file *f, const char *name);

/* __metadata__ value for key, or NULL if absent. */
const char *pt_st_meta(const pt_st_file *f, const char *key);
size_t pt_st_meta_count(const pt_st_file *f);
/* Metadata entry i in file order; 0 if i is out of range. */
int pt_st_meta_at(const pt_st_file *f, size_t i, const char **key, const char **value);

/* ---------------------------------------------------------------- writer */

typedef struct pt_st_writer pt_st_writer;

typedef enum pt_st_ownership {
    PT_ST_BORROW = 0, /* data must stay valid and unchanged until the write returns */
    PT_ST_COPY = 1    /* the writer keeps its own copy */
} pt_st_ownership;

pt_status pt_st_writer_new(pt_st_writer **out, pt_error *err);
void pt_st_writer_free(pt_st_writer *w);

/* Adds a tensor (ndim 0..PT_ST_MAX_DIMS, shape entries >= 0, data little-endian C-order,
 * numel * dtype size bytes; data may be NULL only if that is 0). Names must be valid
 * UTF-8, non-empty, unique and not "__metadata__". */
pt_status pt_st_writer_add(pt_st_writer *w, const char *name, pt_st_dtype dtype, int ndim,
                           const int64_t *shape, const void *data, pt_st_ownership own,
                           pt_error *err);
/* Adds a __metadata__ entry (UTF-8 key and value, unique keys). */
pt_status pt_st_writer_add_meta(pt_st_writer *w, const char *key, const char *value, pt_error *err);

/* Writes the file atomically. The header lists __metadata__ first, then tensors in the
 * order they were added; in the data section tensors are placed by decreasing dtype size
 * (stable), so every tensor is aligned to its dtype without gaps, and the header is padded
 * with spaces so the data section starts at a multiple of 8 bytes. Tensor data is written
 * from the caller's buffers (no full copy). */
pt_status pt_st_write_atomic(const pt_st_writer *w, const char *path, pt_error *err);
/* The same bytes in one malloc'd buffer (free() it), for tests and in-memory use. */
pt_status pt_st_write_memory(const pt_st_writer *w, void **out, size_t *size, pt_error *err);

#endif
