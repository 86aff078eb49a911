/* Shape arithmetic for pt_tensor views; no memory is touched here. */
#include "polytrain/tensor.h"

size_t pt_dtype_size(pt_dtype t)
{
    switch (t) {
    case PT_F32: return 4;
    case PT_I32: return 4;
    case PT_I64: return 8;
    case PT_U8: return 1;
    case PT_BF16: return 2;
    case PT_F16: return 2;
    }
    return 0;
}

const char *pt_dtype_name(pt_dtype t)
{
    switch (t) {
    case PT_F32: return "F32";
    case PT_I32: return "I32";
    case PT_I64: return "I64";
    case PT_U8: return "U8";
    case PT_BF16: return "BF16";
    case PT_F16: return "F16";
    }
    return "?";
}

int64_t pt_tensor_numel(const pt_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->dim[i];
    return n;
}

size_t pt_tensor_bytes(const pt_tensor *t)
{
    return (size_t)pt_tensor_numel(t) * pt_dtype_size(t->dtype);
}

/* Ops are compared bytewise (memcmp) to decide that a step's op list is unchanged: a tensor
 * must hold no padding, whose bytes a struct returned by value leaves undefined. */
_Static_assert(sizeof(pt_tensor) == sizeof(pt_mem) + sizeof(pt_dtype) + sizeof(int) + PT_MAX_DIMS * sizeof(int64_t) +
                                        sizeof(pt_layout) + sizeof(int32_t),
               "pt_tensor has padding");

const char *pt_layout_name(pt_layout l) { return l == PT_LAYOUT_NHWC ? "nhwc" : l == PT_LAYOUT_NCHW ? "nchw" : "?"; }

int pt_tensor_nhwc(const pt_tensor *t) { return t->ndim == 4 && t->layout == PT_LAYOUT_NHWC; }

int pt_tensor_same_start(const pt_tensor *a, const pt_tensor *b)
{
    return a->mem.buf == b->mem.buf && a->mem.off == b->mem.off;
}

pt_tensor pt_tensor_make(pt_buffer *buf, size_t off, pt_dtype dtype, int ndim, const int64_t *dim)
{
    pt_tensor t;
    t.mem.buf = buf;
    t.mem.off = off;
    t.dtype = dtype;
    t.ndim = ndim;
    for (int i = 0; i < PT_MAX_DIMS; i++) t.dim[i] = i < ndim ? dim[i] : 1;
    t.layout = PT_LAYOUT_NCHW;
    t.zero = 0;
    return t;
}

pt_tensor pt_tensor_4d(pt_buffer *buf, size_t off, int64_t n, int64_t c, int64_t h, int64_t w)
{
    int64_t d[4] = {n, c, h, w};
    return pt_tensor_make(buf, off, PT_F32, 4, d);
}

pt_tensor pt_tensor_2d(pt_buffer *buf, size_t off, int64_t rows, int64_t cols)
{
    int64_t d[2] = {rows, cols};
    return pt_tensor_make(buf, off, PT_F32, 2, d);
}

pt_tensor pt_tensor_1d(pt_buffer *buf, size_t off, pt_dtype dtype, int64_t n)
{
    return pt_tensor_make(buf, off, dtype, 1, &n);
}
