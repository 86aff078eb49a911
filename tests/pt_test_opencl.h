/* Opens opencl device 0 for a test of the opencl backend, or says why the test is skipped
 * (exit 77): the backend is not registered, or the machine has no OpenCL platform or device.
 * A device that is listed but does not open is a failure, not a skip. */
#ifndef PT_TEST_OPENCL_H
#define PT_TEST_OPENCL_H

#include <stdio.h>
#include <stdlib.h>

#include "polytrain/backend.h"

/* 0 with *dev open, or the exit code the test returns (77: skipped, 1: failed). */
static inline int pt_t_open_opencl(pt_device **dev)
{
    const pt_backend_iface *be = pt_backend_find("opencl");
    void *ctx;
    pt_error err;
    if (!be) {
        printf("SKIP: opencl backend not registered\n");
        return 77;
    }
    if (pt_backend_context(be, &ctx, &err) != PT_OK) {
        printf("SKIP: %s\n", err.msg);
        return 77;
    }
    if (be->device_count(ctx) < 1) {
        printf("SKIP: no opencl device\n");
        return 77;
    }
    if (pt_device_open("opencl", 0, NULL, dev, &err) != PT_OK) {
        fprintf(stderr, "FAIL: cannot open opencl device 0: %s\n", err.msg);
        return 1;
    }
    return 0;
}

/* The mixed-precision tests' devices: opencl device 0 with fp16 math forced where the device
 * lacks cl_khr_fp16 (PoCL; unless the environment says otherwise), and a two-thread cpu device
 * as the reference. 0, or the exit code the test returns. */
static inline int pt_t_open_opencl_fp16_and_cpu(pt_device **ocl, pt_device **cpu)
{
    setenv("PT_OPENCL_FP16", "force", 0);
    const int rc = pt_t_open_opencl(ocl);
    if (rc) return rc;
    pt_error err;
    pt_device_options dopt = {.threads = 2};
    if (pt_device_open("cpu", 0, &dopt, cpu, &err) != PT_OK) {
        fprintf(stderr, "cpu device: %s\n", err.msg);
        return 1;
    }
    return 0;
}

#endif
