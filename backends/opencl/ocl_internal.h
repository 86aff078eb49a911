/* Private to backends/opencl: buffer, backend and device contexts, the cl* error check, the
 * kernel launcher and the program builder. Nothing outside backends/opencl includes this
 * (tests of this backend excepted); the core sees the backend only through pt_opencl_backend. */
#ifndef PT_OCL_INTERNAL_H
#define PT_OCL_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <CL/cl.h>

#include "backends/kernels/kernel_ops.h"
#include "polytrain/backend.h"

/* Device memory: a cl_mem of `bytes` usable bytes; views add a byte offset (pt_mem.off). */
struct pt_buffer {
    cl_mem mem;
    size_t bytes;
};

/* One enumerated OpenCL device, with the facts device_info reports. */
typedef struct ocl_device_entry {
    cl_platform_id platform;
    cl_device_id device;
    cl_device_type type;
    char name[128];
    char platform_name[128];
    char platform_version[128];
    char c_version[64]; /* "OpenCL C 1.2 ..." */
    char driver[64];
    uint64_t global_mem;
    uint64_t max_alloc;
    size_t max_work_group;
    int compute_units;
    int fp16; /* has cl_khr_fp16 */
    /* Timings of the last device_open of this device (guarded by the backend's lock). */
    double last_program_s, last_clblast_s;
    int last_program_cached, opened;
    char last_tuning[200]; /* CLBlast's GEMM parameters applied (ocl_tuning_apply) */
} ocl_device_entry;

typedef struct ocl_backend {
    pthread_mutex_t lock;
    int count;
    ocl_device_entry *dev;
} ocl_backend;

/* Per-op-kind device time, collected from profiling events when PT_OPENCL_PROFILE=1. */
#define OCL_MAX_EVENTS 64
typedef struct ocl_profile {
    double op_s[PT_OP_KIND_COUNT];
    long op_runs[PT_OP_KIND_COUNT];
    double gemm_s, other_s; /* CLBlast GEMMs (host-timed) vs our own kernels (events) */
    double kernel_s[PT_K_COUNT]; /* our own kernels, per kernel of the table */
    long kernel_runs[PT_K_COUNT];
} ocl_profile;

typedef struct ocl_device {
    ocl_backend *be;
    ocl_device_entry *info;
    cl_context ctx;
    cl_command_queue queue;
    cl_program program;
    cl_kernel k[PT_K_COUNT]; /* every kernel of backends/kernels/kernel_table.h */
    int red_wg;              /* work-group size of the per-channel reductions (PT_RED_WG) */
    /* pt_kdev.conv_small_fwd_crs and conv_small_crs (ocl_conv_small_limits) */
    int conv_small_fwd_crs, conv_small_crs;
    double program_s;        /* time to get the program built (from source or the cache) */
    int program_cached;      /* 1: from polytrain's binary cache */
    double clblast_s;        /* CLBlast's first SGEMM (its kernel compilation) */
    char tuning[200];        /* which CLBlast GEMM parameters are in force, as text */
    /* CL_DEVICE_MEM_BASE_ADDR_ALIGN in bytes (GEMM operand views), and the tile multiples of
     * CLBlast's parameters in force (MWG, NWG, KWG; 0 when CLBlast's own: unknown) */
    size_t base_align;
    int gemm_tile[3];
    int profile;             /* PT_OPENCL_PROFILE=1 */
    int fp16_math;           /* claims --precision fp16: cl_khr_fp16, or PT_OPENCL_FP16=force */
    int winograd;            /* pt_kdev.winograd: PT_OPENCL_WINOGRAD (ocl_winograd_setting) */
    int act16_copy;          /* pt_kdev.act16_copy: PT_OPENCL_ACT16=copy */
    int act16_copy_channels; /* pt_kdev.act16_copy_channels: on CPU devices */
    cl_event events[OCL_MAX_EVENTS];
    int event_kernel[OCL_MAX_EVENTS]; /* the table's kernel of each event (-1: none) */
    int nevents;
    double gemm_pending_s;   /* GEMM time of the op being run (profiling) */
    ocl_profile prof;
} ocl_device;

/* ---- errors (ocl_errors.c) ---- */
const char *ocl_error_name(cl_int code);
/* "opencl: <call> failed: CL_... (code) [file:line]"; memory codes give PT_ERR_NOMEM. */
pt_status ocl_fail_cl(pt_error *err, cl_int code, const char *call, const char *file, int line);
const char *ocl_clblast_error_name(int code);

/* Every cl* call goes through here: the error code becomes its name, the call its site. */
#define OCL_CHECK(call, err)                                                             \
    do {                                                                                 \
        cl_int ocl_rc_ = (call);                                                         \
        if (ocl_rc_ != CL_SUCCESS) return ocl_fail_cl((err), ocl_rc_, #call, __FILE__, __LINE__); \
    } while (0)
/* For calls that report through an errcode_ret argument. */
#define OCL_CHECK_RC(rc, name, err)                                                      \
    do {                                                                                 \
        if ((rc) != CL_SUCCESS) return ocl_fail_cl((err), (rc), (name), __FILE__, __LINE__); \
    } while (0)

/* PT_OPENCL_WINOGRAD as a pt_kdev.winograd setting: unset or "1" by the measured rule, "0" off,
 * "force" wherever Winograd applies; anything else is refused, naming the variable. */
pt_status ocl_winograd_setting(int *out, pt_error *err);
/* The setting in words for devices and bench --json: "on", "off", "forced". */
const char *ocl_winograd_name(int setting);

/* ---- program (ocl_program.c) ---- */
/* Builds sources (in order, as one program) for one device. On a build failure the error
 * carries the compiler's log. Exposed for the tests' bad-kernel case. */
pt_status ocl_build_program(cl_context ctx, cl_device_id dev, size_t count,
                            const char *const *sources, const char *options, cl_program *out,
                            pt_error *err);
/* The embedded kernel program for d (binary cache first, then source); fills d->program,
 * d->program_s and d->program_cached. */
pt_status ocl_program_load(ocl_device *d, pt_error *err);
/* The cache file for this device and build, or 0 when no cache directory can be named. */
int ocl_cache_path(const ocl_device *d, const char *options, char *out, size_t cap);
/* mkdir -p (mode 0700) of the directory a cache file goes in; 1 on success. */
int ocl_cache_make_parent_dirs(const char *path);

/* ---- CLBlast's parameters for the device (ocl_tune.c) ---- */
/* Applies the tuning cache's parameters for d's device, else the built-in ones on CPU devices
 * (else CLBlast's own); a refused cache file is reported on stderr. Fills d->tuning. */
void ocl_tuning_apply(ocl_device *d);
/* What ocl_tuning_apply would apply to e's device now, as text (devices before any open). */
void ocl_tuning_describe(const ocl_device_entry *e, char *text, size_t cap);

/* ---- kernel launches and GEMMs (ocl_launch.c) ---- */
/* The device as the shared kernel layer sees it (backends/kernels/kernel_ops.h): launches on
 * its queue, CLBlast's SGEMM, the im2col scratch bound. */
pt_kdev ocl_kdev(ocl_device *d);
/* The direct small-C*R*S convolution's limits of d: the measured rule, or both set by
 * PT_OPENCL_CONV_SMALL_CRS=N (0..PT_KCONV_SMALL_MAX; 0 turns the direct kernels off); any
 * other value is PT_ERR_INVALID naming the variable. */
pt_status ocl_conv_small_limits(ocl_device *d, pt_error *err);
/* Queues one shared-kernel call (checked against the kernel table by the caller). */
pt_status ocl_launch_call(ocl_device *d, const pt_kcall *c, pt_error *err);
/* An event slot for the next enqueue when profiling, else NULL. */
cl_event *ocl_event_slot(ocl_device *d);
double ocl_now_s(void);
/* Waits for the op's events and adds their device time to the profile of `kind`. */
pt_status ocl_profile_collect(ocl_device *d, pt_op_kind kind, pt_error *err);
/* The profile as text lines (per op kind, GEMM vs other kernels). */
void ocl_profile_format(const ocl_device *d, char *out, size_t cap);

/* Row-major SGEMM through CLBlast; offsets and leading dimensions in elements. */
pt_status ocl_sgemm(ocl_device *d, int trans_a, int trans_b, size_t m, size_t n, size_t k,
                    float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b, size_t b_off,
                    size_t ldb, float beta, cl_mem c, size_t c_off, size_t ldc, pt_error *err);

#endif
