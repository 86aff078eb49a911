/* The cpu backend's BLAS: it initialises, device_info names the OpenBLAS kernel it really
 * uses (never the generic "Prescott" one on a CPU with AVX2), and a 512^3 GEMM through the
 * op matches a float64 reference. */
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "polytrain/backend.h"
#include "pt_test.h"

static pt_device *g_dev;

static void device_info_is_filled_in(void)
{
    const pt_device_info *in = &g_dev->info;
    printf("  device: %s | %s\n", in->name, in->details);
    CHECK(in->name[0] != '\0');
    CHECK(in->kind == PT_DEVICE_CPU);
    CHECKF(in->memory_bytes > ((uint64_t)64 << 20), "memory %llu", (unsigned long long)in->memory_bytes);
    CHECKF(in->compute_units >= 1, "compute units %d", in->compute_units);
    CHECKF(in->threads >= 1, "threads %d", in->threads);
    CHECKF(strstr(in->details, "OpenBLAS") && strstr(in->details, "kernel "), "%s", in->details);
}

static void openblas_kernel_is_not_the_generic_one_on_avx2(void)
{
    __builtin_cpu_init();
    const char *k = strstr(g_dev->info.details, "kernel ");
    CHECKF(k != NULL, "%s", g_dev->info.details);
    if (!k) return;
    k += 7;
    if (__builtin_cpu_supports("avx2")) {
        CHECKF(strncmp(k, "Prescott", 8) != 0 && strncmp(k, "Core2", 5) != 0 &&
                   strncmp(k, "Nehalem", 7) != 0 && strncmp(k, "unknown", 7) != 0,
               "this CPU has AVX2 but OpenBLAS runs its generic kernel: %s (OPENBLAS_CORETYPE=%s)",
               g_dev->info.details, getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "unset");
    }
    if (__builtin_cpu_supports("avx512f") && !getenv("OPENBLAS_CORETYPE"))
        CHECKF(strncmp(k, "SkylakeX", 8) == 0 || strncmp(k, "Cooperlake", 10) == 0 ||
                   strncmp(k, "SapphireRapids", 14) == 0,
               "AVX-512 CPU without an AVX-512 kernel: %s", g_dev->info.details);
}

static void gemm_512_matches_float64_reference(void)
{
    const int n = 512;
    size_t bytes = (size_t)n * n * sizeof(float);
    float *a = malloc(bytes), *b = malloc(bytes), *c = malloc(bytes);
    uint64_t s = 12345;
    for (int i = 0; i < n * n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        a[i] = (float)((double)(s >> 40) / 16777216.0 - 0.5);
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        b[i] = (float)((double)(s >> 40) / 16777216.0 - 0.5);
        c[i] = NAN;
    }
    pt_buffer *ba, *bb, *bc;
    pt_error e;
    pt_device_alloc(g_dev, bytes, &ba, &e);
    pt_device_alloc(g_dev, bytes, &bb, &e);
    pt_device_alloc(g_dev, bytes, &bc, &e);
    pt_device_write(g_dev, (pt_mem){ba, 0}, a, bytes, &e);
    pt_device_write(g_dev, (pt_mem){bb, 0}, b, bytes, &e);
    pt_device_write(g_dev, (pt_mem){bc, 0}, c, bytes, &e);
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = PT_OP_GEMM;
    op.nt = 3;
    op.t[0] = pt_tensor_2d(ba, 0, n, n);
    op.t[1] = pt_tensor_2d(bb, 0, n, n);
    op.t[2] = pt_tensor_2d(bc, 0, n, n);
    op.p.gemm.alpha = 1.0f;
    op.p.gemm.beta = 0.0f;
    pt_status st = pt_device_run(g_dev, &op, &e);
    CHECKF(st == PT_OK, "%s", e.msg);
    pt_device_read(g_dev, c, (pt_mem){bc, 0}, bytes, &e);
    double *ref = calloc((size_t)n * n, sizeof(double));
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++) {
            double av = a[i * n + k];
            for (int j = 0; j < n; j++) ref[i * n + j] += av * b[k * n + j];
        }
    double err = pt_t_rel_err_f32_f64(c, ref, (long)n * n);
    CHECKF(err < 1e-5, "relative error %g", err);
    free(a), free(b), free(c), free(ref);
    pt_device_free(g_dev, ba), pt_device_free(g_dev, bb), pt_device_free(g_dev, bc);
}

static void device_thread_count_is_honoured(void)
{
    pt_device *one;
    pt_error e;
    pt_device_options opt = {.threads = 1};
    CHECKF(pt_device_open("cpu", 0, &opt, &one, &e) == PT_OK, "%s", e.msg);
    pt_buffer *b;
    pt_device_alloc(one, 64, &b, &e);
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = PT_OP_FILL;
    op.nt = 1;
    op.t[0] = pt_tensor_1d(b, 0, PT_F32, 16);
    CHECK(pt_device_run(one, &op, &e) == PT_OK);
    /* the driving thread's OpenMP team size (which the OpenMP OpenBLAS follows) is the device's */
    CHECKF(omp_get_max_threads() == 1, "omp_get_max_threads() = %d", omp_get_max_threads());
    pt_device_free(one, b);
    pt_device_close(one);
}

static void negative_thread_count_is_refused(void)
{
    pt_device *d = NULL;
    pt_error e;
    pt_error_clear(&e);
    pt_device_options opt = {.threads = -3};
    CHECK(pt_device_open("cpu", 0, &opt, &d, &e) == PT_ERR_INVALID && d == NULL);
    CHECKF(strstr(e.msg, "threads") != NULL, "%s", e.msg);
}

int main(void)
{
    pt_error e;
    pt_device_options opt = {.threads = 0};
    if (pt_device_open("cpu", 0, &opt, &g_dev, &e) != PT_OK) {
        fprintf(stderr, "FAIL: the cpu backend does not initialise: %s\n", e.msg);
        printf("0 passed, 1 failed\n");
        return 1;
    }
    RUN(device_info_is_filled_in);
    RUN(openblas_kernel_is_not_the_generic_one_on_avx2);
    RUN(gemm_512_matches_float64_reference);
    RUN(device_thread_count_is_honoured);
    RUN(negative_thread_count_is_refused);
    pt_device_close(g_dev);
    TEST_EXIT();
}
