/* Tensor views over device memory. Device memory is always (buffer, byte offset):
 * the core never dereferences it, since an OpenCL cl_mem or a CUDA allocation is not
 * a host pointer. Layout is NCHW, row-major, contiguous. */
#ifndef PT_TENSOR_H
#define PT_TENSOR_H

#include <stddef.h>
#include <stdint.h>

/* PT_BF16 and PT_F16 are the storage types of reduced precision (core/half.h converts). */
typedef enum pt_dtype { PT_F32 = 0, PT_I32 = 1, PT_I64 = 2, PT_U8 = 3, PT_BF16 = 4, PT_F16 = 5 } pt_dtype;

/* Opaque: each backend defines struct pt_buffer for itself. */
typedef struct pt_buffer pt_buffer;

typedef struct pt_mem {
    pt_buffer *buf;
    size_t off; /* bytes */
} pt_mem;

#define PT_MAX_DIMS 4

typedef struct pt_tensor {
    pt_mem mem;
    pt_dtype dtype;
    int ndim;
    int64_t dim[PT_MAX_DIMS]; /* dim[0] outermost (N), unused dims are 1 */
} pt_tensor;

size_t pt_dtype_size(pt_dtype t);
const char *pt_dtype_name(pt_dtype t);
int64_t pt_tensor_numel(const pt_tensor *t);
size_t pt_tensor_bytes(const pt_tensor *t);
/* Both start at the same byte of the same buffer (one aliases the other). */
int pt_tensor_same_start(const pt_tensor *a, const pt_tensor *b);
/* A tensor of the given shape at (buf, off). ndim 1..4. */
pt_tensor pt_tensor_make(pt_buffer *buf, size_t off, pt_dtype dtype, int ndim, const int64_t *dim);
pt_tensor pt_tensor_4d(pt_buffer *buf, size_t off, int64_t n, int64_t c, int64_t h, int64_t w);
pt_tensor pt_tensor_2d(pt_buffer *buf, size_t off, int64_t rows, int64_t cols);
pt_tensor pt_tensor_1d(pt_buffer *buf, size_t off, pt_dtype dtype, int64_t n);

#endif
