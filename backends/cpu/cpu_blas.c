/* OpenBLAS for the cpu backend, loaded with dlopen() at init and never linked: OpenBLAS picks
 * its kernel in a library constructor from OPENBLAS_CORETYPE, and Debian's 0.3.21 mistakes
 * recent Xeons for "Prescott" (6x slower SGEMM), so the core type must be set before loading.
 * Must never call a multithreaded BLAS from inside an OpenMP parallel region. */
#include <dlfcn.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/cpu_internal.h"

const char *cpu_simd_level(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        return __builtin_cpu_supports("avx512bf16") ? "AVX-512 (bf16)" : "AVX-512";
    }
    if (__builtin_cpu_supports("avx2")) return "AVX2";
    if (__builtin_cpu_supports("avx")) return "AVX";
    return "SSE";
}

const char *cpu_blas_coretype_for_cpu(void)
{
    __builtin_cpu_init();
    int skx = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
              __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    if (skx && __builtin_cpu_supports("avx512bf16")) return "Cooperlake";
    if (skx) return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}

#define CPU_BLAS_OPENMP "/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0"
#define CPU_BLAS_PTHREAD "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0"
#define CPU_BLAS_DEFAULT "libopenblas.so.0"

static int bind(cpu_blas *b, pt_error *err)
{
    /* dlsym returns void*; memcpy into the function pointer is the ISO C way round that. */
    struct { const char *name; void *slot; size_t size; } syms[] = {
        {"cblas_sgemm", &b->sgemm, sizeof b->sgemm},
        {"openblas_get_corename", &b->get_corename, sizeof b->get_corename},
        {"openblas_get_config", &b->get_config, sizeof b->get_config},
        {"openblas_set_num_threads", &b->set_num_threads, sizeof b->set_num_threads},
        {"openblas_get_num_threads", &b->get_num_threads, sizeof b->get_num_threads},
        {"openblas_get_parallel", &b->get_parallel, sizeof b->get_parallel},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        void *p = dlsym(b->lib, syms[i].name);
        if (!p) {
            pt_fail(err, PT_ERR_BACKEND, "%s has no symbol %s: not an OpenBLAS library", b->path,
                    syms[i].name);
            return 0;
        }
        memcpy(syms[i].slot, &p, syms[i].size);
    }
    return 1;
}

pt_status cpu_blas_load(cpu_blas *b, pt_error *err)
{
    memset(b, 0, sizeof *b);
    /* Only our own choice is undone after loading; a user's OPENBLAS_CORETYPE stays as is. */
    const char *coretype = cpu_blas_coretype_for_cpu();
    int set_env = coretype && !getenv("OPENBLAS_CORETYPE");
    if (set_env) setenv("OPENBLAS_CORETYPE", coretype, 0);

    const char *user = getenv("PT_OPENBLAS");
    const char *candidates[3] = {CPU_BLAS_OPENMP, CPU_BLAS_PTHREAD, CPU_BLAS_DEFAULT};
    int ncand = 3;
    if (user && *user) {
        candidates[0] = user;
        ncand = 1;
    }
    char tried[900] = "";
    for (int i = 0; i < ncand && !b->lib; i++) {
        b->lib = dlopen(candidates[i], RTLD_NOW | RTLD_LOCAL);
        if (b->lib) {
            snprintf(b->path, sizeof b->path, "%s", candidates[i]);
        } else {
            size_t len = strlen(tried);
            snprintf(tried + len, sizeof tried - len, "%s%s", len ? ", " : "", candidates[i]);
        }
    }
    if (set_env) unsetenv("OPENBLAS_CORETYPE");
    if (!b->lib) {
        return pt_fail(err, PT_ERR_BACKEND,
                       "cannot load OpenBLAS (tried %s%s); install the Debian package "
                       "libopenblas0-openmp",
                       tried, user && *user ? " from PT_OPENBLAS" : "");
    }
    if (!bind(b, err)) {
        /* Not dlclose()d: OpenBLAS's thread pools do not survive unloading. */
        b->lib = NULL;
        return PT_ERR_BACKEND;
    }
    const char *core = b->get_corename();
    snprintf(b->corename, sizeof b->corename, "%s", core ? core : "unknown");
    /* The config string starts "OpenBLAS 0.3.21 ..." */
    const char *cfg = b->get_config();
    b->version[0] = '\0';
    if (cfg && strncmp(cfg, "OpenBLAS ", 9) == 0) {
        size_t n = strcspn(cfg + 9, " ");
        if (n >= sizeof b->version) n = sizeof b->version - 1;
        memcpy(b->version, cfg + 9, n);
        b->version[n] = '\0';
    }
    b->parallel = b->get_parallel();
    return PT_OK;
}

void cpu_threads_enter(const cpu_device *d)
{
    /* The OpenMP OpenBLAS build follows the calling thread's omp_get_max_threads(). */
    if (omp_get_max_threads() != d->threads) omp_set_num_threads(d->threads);
    const cpu_blas *b = &d->be->blas;
    if (b->parallel == 1 && b->get_num_threads() != d->threads) b->set_num_threads(d->threads);
}

void cpu_blas_region_begin(const cpu_device *d)
{
    const cpu_blas *b = &d->be->blas;
    if (b->parallel == 1 && d->threads > 1) b->set_num_threads(1);
}

void cpu_blas_region_end(const cpu_device *d)
{
    const cpu_blas *b = &d->be->blas;
    if (b->parallel == 1 && d->threads > 1) b->set_num_threads(d->threads);
}

void cpu_sgemm(const cpu_device *d, int trans_a, int trans_b, int m, int n, int k, float alpha,
               const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        /* BLAS would still scale C; keep "beta 0 means C is not read" exact. */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[(size_t)i * ldc + j];
        return;
    }
    d->be->blas.sgemm(CPU_CBLAS_ROW_MAJOR, trans_a ? CPU_CBLAS_TRANS : CPU_CBLAS_NO_TRANS,
                      trans_b ? CPU_CBLAS_TRANS : CPU_CBLAS_NO_TRANS, m, n, k, alpha, a, lda, b,
                      ldb, beta, c, ldc);
}

pt_status cpu_op_gemm(const cpu_device *d, const pt_op *op, pt_error *err)
{
    if (op->math != PT_PREC_FP32) return cpu_op_gemm_math(d, op, err);
    const pt_tensor *A = &op->t[0], *B = &op->t[1], *C = &op->t[2];
    int ta = op->p.gemm.trans_a, tb = op->p.gemm.trans_b;
    int m = (int)C->dim[0], n = (int)C->dim[1];
    int k = (int)(ta ? A->dim[0] : A->dim[1]);
    cpu_sgemm(d, ta, tb, m, n, k, op->p.gemm.alpha, cpu_f32(A), (int)A->dim[1], cpu_f32(B),
              (int)B->dim[1], op->p.gemm.beta, cpu_f32(C), (int)C->dim[1]);
    return PT_OK;
}
