/* Tensor views over device memory. Device memory is always (buffer, byte offset):
 * the core never dereferences it, since an OpenCL cl_mem or a CUDA allocation is not
 * a host pointer. Row-major and contiguous; extents are always named N, C, H, W (dim[0..3]),
 * and a 4-D tensor's elements lie in that order (NCHW) unless its layout says NHWC. */
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

/* The memory order of a 4-D tensor's elements; dim[] stays [N,C,H,W] either way. NHWC (channels
 * last: element (n,c,h,w) at ((n*H + h)*W + w)*C + c) is what tensor-core convolutions read
 * without a transpose. Only 4-D image operands of ops may be NHWC (pt_op_operand.img), on a
 * backend that declares PT_CAP_NHWC. */
typedef enum pt_layout { PT_LAYOUT_NCHW = 0, PT_LAYOUT_NHWC = 1 } pt_layout;

typedef struct pt_tensor {
    pt_mem mem;
    pt_dtype dtype;
    int ndim;
    int64_t dim[PT_MAX_DIMS]; /* dim[0] outermost (N), unused dims are 1 */
    pt_layout layout;         /* PT_LAYOUT_NCHW but for a 4-D tensor stored channels last */
    int32_t zero;             /* always 0: no padding, so that ops compare bytewise (graph capture) */
} pt_tensor;

size_t pt_dtype_size(pt_dtype t);
const char *pt_dtype_name(pt_dtype t);
const char *pt_layout_name(pt_layout l); /* "nchw", "nhwc" */
/* t is 4-D and stored NHWC (a layout on any other rank is not NHWC). */
int pt_tensor_nhwc(const pt_tensor *t);
int64_t pt_tensor_numel(const pt_tensor *t);
size_t pt_tensor_bytes(const pt_tensor *t);
/* Both start at the same byte of the same buffer (one aliases the other). */
int pt_tensor_same_start(const pt_tensor *a, const pt_tensor *b);
/* A tensor of the given shape at (buf, off), NCHW. ndim 1..4. */
pt_tensor pt_tensor_make(pt_buffer *buf, size_t off, pt_dtype dtype, int ndim, const int64_t *dim);
pt_tensor pt_tensor_4d(pt_buffer *buf, size_t off, int64_t n, int64_t c, int64_t h, int64_t w);
pt_tensor pt_tensor_2d(pt_buffer *buf, size_t off, int64_t rows, int64_t cols);
pt_tensor pt_tensor_1d(pt_buffer *buf, size_t off, pt_dtype dtype, int64_t n);

#endif
