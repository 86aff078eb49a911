/* CLBlast's GEMM parameters tuned for an OpenCL device: the interface `polytrain tune` uses
 * (the backend applies the result by itself at device open, see ocl_tune.c). Only compiled
 * when the opencl backend is (PT_HAVE_OPENCL). */
#ifndef PT_OCL_TUNE_H
#define PT_OCL_TUNE_H

#include <stddef.h>

#include "polytrain/status.h"

/* One GEMM a model runs, row-major, and how often per training step (weights the timing). */
typedef struct pt_ocl_gemm_shape {
    size_t m, n, k;
    int trans_a, trans_b;
    int calls;
    /* 1: a Winograd convolution's GEMM, whose operands the backend lays out padded to the tile
     * multiples of the parameters in force (kernel_winograd.c): timed at those padded sizes */
    int tiled;
} pt_ocl_gemm_shape;

/* The GEMMs of one fp32 convolution (x [n,c,h,w], w [k,c,r,r], stride, pad) in the three
 * directions as this backend runs them (im2col's, or for the directions that take Winograd by
 * default one of its 16 GEMMs per block of tiles; none for the directions that run a direct
 * kernel), with their calls per step; skip_data: the input
 * gradient is not computed (a first layer). Returns how many were written to out (0..3). */
int pt_opencl_conv_gemms(int n, int c, int h, int w, int k, int r, int stride, int pad, int skip_data,
                         pt_ocl_gemm_shape out[3]);

typedef struct pt_ocl_tune_request {
    const pt_ocl_gemm_shape *shapes;
    int nshapes;
    int budget; /* candidate parameter sets to time, at most; 0: all of them */
    int reps;   /* timed runs of each shape (the best counts), >= 1 */
    /* called before each candidate and once at the end (done == total) */
    void (*progress)(void *user, int done, int total, const char *what);
    void *user;
} pt_ocl_tune_request;

typedef struct pt_ocl_tune_result {
    double default_s; /* the step's GEMM time with the parameters in use before tuning */
    double best_s;    /* with the chosen ones */
    int tried;
    char chosen[200]; /* the chosen parameters, as text */
    char cache_path[600]; /* where they were stored ("" when no cache directory) */
} pt_ocl_tune_result;

/* Times candidate CLBlast parameter sets on device `index` of the opencl backend context
 * (pt_backend_context of pt_opencl_backend) over the request's GEMMs, keeps the fastest, and
 * stores it in the tuning cache, which every later device open of that device reads. */
pt_status pt_opencl_tune(void *backend_ctx, int index, const pt_ocl_tune_request *req, pt_ocl_tune_result *res,
                         pt_error *err);

#endif
