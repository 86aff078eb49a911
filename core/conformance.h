/* The cross-backend conformance suite: a table of op cases (every op kind, odd shapes,
 * strides, paddings, aliasing, accumulate) run on a device under test and on a reference
 * device with the same random inputs, outputs compared by normalised error. Only pt_device
 * calls: it never includes a backend or vendor header, never prints. */
#ifndef PT_CONFORMANCE_H
#define PT_CONFORMANCE_H

#include <stdint.h>

#include "polytrain/backend.h"

/* One case's outcome, passed to the report callback (pointers valid during the call). */
typedef struct pt_conformance_result {
    int index;          /* row of the table: with the same seed, the same inputs, filter or not */
    const char *name;   /* e.g. "conv2d_fwd x=2x3x9x7 w=4x3x3x3 s=2 p=1 acc=1" */
    pt_op_kind kind;
    int pass;
    double error;       /* worst output: normalised error ||dut-ref||/||ref|| (exact outputs:
                           fraction of elements that differ); INFINITY for NaN/Inf */
    double bound;       /* its bound (0 for outputs that must be bitwise equal) */
    double ratio;       /* error/bound, the case passes when <= 1 (INFINITY when it cannot) */
    const char *output; /* the operand that gave the worst ratio, e.g. "t2 y" */
    double dut_ms;      /* wall time of the op on the device under test, synchronised; the
                           first run of a shape, so it includes any kernel compilation */
    const char *detail; /* why it failed (worst element, guard bytes, backend error), or "" */
} pt_conformance_result;

typedef void (*pt_conformance_report)(const pt_conformance_result *r, void *user);

typedef struct pt_conformance_summary {
    int cases, passed, failed;
    int unclaimed;          /* cases in a math mode the device under test does not claim
                               (pt_device_precision), with a fused ReLU, a 16-bit storage or
                               NHWC operands it does not support: not run, not counted in
                               cases */
    double worst_ratio;     /* largest error/bound over the cases run */
    char worst_case[128];   /* the case that had it */
    double dut_ms;          /* total op time on the device under test */
} pt_conformance_summary;

/* Number of rows in the table and the name of row i ("" when out of range), e.g. to list
 * them or to check that every op kind has a row. */
int pt_conformance_case_count(void);
const char *pt_conformance_case_name(int i, char *buf, size_t cap);
pt_op_kind pt_conformance_case_kind(int i);

/* Runs every case whose name contains filter (NULL or "" = all) on ref and on dut. Inputs
 * come from pt_rng keyed by (seed, case, operand), so a seed reproduces a failure. A case
 * that fails on the device under test (wrong values, NaN/Inf, bytes written outside an
 * output, an error or an unsupported op) is reported, not returned: the call returns an
 * error only when it cannot run at all (bad arguments, host memory). ref and dut may be
 * the same backend, even the same handle: each side gets its own buffers. */
pt_status pt_conformance_run(pt_device *ref, pt_device *dut, uint64_t seed, const char *filter,
                             pt_conformance_report cb, void *user, pt_conformance_summary *out,
                             pt_error *err);

#endif
