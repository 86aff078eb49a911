/* A minimal test harness: CHECK counts, FAIL lines name file:line and the test, and the
 * run ends with the "N passed, N failed" line CTest logs and CI reads. */
#ifndef PT_TEST_H
#define PT_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* unused in a test that only skips (built without its backend) */
__attribute__((unused)) static int pt_t_pass, pt_t_fail;
__attribute__((unused)) static const char *pt_t_current = "";

#define CHECKF(cond, ...)                                                                  \
    do {                                                                                   \
        if (cond) {                                                                        \
            pt_t_pass++;                                                                   \
        } else {                                                                           \
            pt_t_fail++;                                                                   \
            fprintf(stderr, "FAIL %s:%d [%s] %s: ", __FILE__, __LINE__, pt_t_current, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
        }                                                                                  \
    } while (0)
#define CHECK(cond) CHECKF(cond, "%s", "")

/* Runs one test function, named after the behaviour it checks. */
#define RUN(fn)                                                                            \
    do {                                                                                   \
        int pt_t_before_ = pt_t_fail;                                                      \
        pt_t_current = #fn;                                                                \
        fn();                                                                              \
        printf("%s %s\n", pt_t_fail == pt_t_before_ ? "ok  " : "FAIL", #fn);               \
        fflush(stdout);                                                                    \
    } while (0)

#define TEST_EXIT()                                                                        \
    do {                                                                                   \
        printf("%d passed, %d failed\n", pt_t_pass, pt_t_fail);                            \
        return pt_t_fail ? 1 : 0;                                                          \
    } while (0)

/* Normalised error ||a - b|| / max(||b||, tiny); NaN or Inf anywhere gives +INFINITY. */
static inline double pt_t_rel_err_f32_f64(const float *a, const double *b, long n)
{
    double num = 0, den = 0;
    for (long i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
        double d = (double)a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    return sqrt(num) / (den > 1e-30 ? sqrt(den) : 1e-15);
}

#endif
