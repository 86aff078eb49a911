/* The conformance suite (core/conformance.h): the case table, built per op family, and the
 * runner that gives a reference device and a device under test the very same inputs and
 * compares what they write. It reaches devices through pt_device only and never prints. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/conformance.h"
#include "core/half.h"
#include "core/rng.h"

/* A pt_rng purpose of the suite's own, so its inputs never coincide with training streams. */
#define CONF_RNG_PURPOSE 0x43u
/* Every operand sits at a non-zero offset inside its buffer, with sentinel bytes before and
 * after it: a backend that ignores pt_mem.off or writes past a tensor is caught. */
#define GUARD_BYTES 256
#define SENTINEL 0xA5

/* Bounds on the normalised error. Elementwise ops differ by an ulp at most (FMA contraction,
 * a division or exp done another way); dot products and reductions sum in another order. */
#define B_ELEM 1e-5
#define B_REDUCE 1e-5
#define B_DOT 1e-4
/* A GEMM or convolution in a reduced-precision math mode against the reference's float32:
 * each product's operands are rounded (relative error up to u each, u the mode's unit
 * roundoff), so a normalised error near u; 4u leaves room for unlucky cancellation and
 * still fails a wrong rounding (round-toward-zero doubles the bias) or a mode applied twice. */
static double lowp_bound(pt_precision p) { return 4.0 * pt_precision_unit_roundoff(p); }

enum conf_role { R_IN, R_OUT, R_INOUT, R_ABSENT };
enum conf_gen {
    G_UNIFORM, G_TIES, G_LABELS, G_ARGMAX, G_RELU_OUT, G_MASK, G_BN_MEAN, G_BN_INVSTD,
    /* sync-BN inputs that a forward pass would have produced from operand 0 (x): the sums
     * about operand 4 (shift), mean | invstd, and the backward sums with dy (operand 1) */
    G_BN_SUMS, G_BN_MEAN_INVSTD, G_BN_BSUMS,
    /* G_UNIFORM with one non-finite element: +Inf in the middle, NaN last, -Inf first */
    G_POS_INF, G_NAN, G_NEG_INF,
    G_CONST /* every element lo */
};
/* C_DELTA compares (final - initial): for optimizer parameters, where the update is what an
 * optimizer computes and the parameter itself would hide it. */
/* C_NORM_NF: C_NORM where the reference may hold Inf/NaN (the input had them): there the
 * device must hold the same (Inf of the same sign, or NaN), and the rest is compared. */
enum conf_check { C_NONE, C_NORM, C_DELTA, C_EXACT, C_NORM_NF };

typedef struct conf_operand {
    const char *name;
    pt_dtype dtype;
    int ndim;
    int64_t dim[PT_MAX_DIMS];
    int role, gen, check;
    int alias;    /* -1, or the operand whose memory (and initial contents) this one shares */
    float lo, hi; /* G_UNIFORM range; G_LABELS: classes in hi; G_MASK: drop rate in hi */
    double bound;
    /* The error's denominator is at least floor*sqrt(numel): for outputs whose size says
     * nothing about their accuracy (a loss near 0 is a difference of O(1) terms). Optimizer
     * updates (C_DELTA) are small by design and use a smaller floor. */
    double floor;
    /* > 0: also every element, |dut - ref| <= elem_bound * max(max |ref|, floor). The
     * reduced-precision cases' bounds are loose enough that one wrong element of a large
     * output would hide in the norm; an element off by a fraction of the output's scale
     * does not hide here. */
    double elem_bound;
    /* PT_BF16 or PT_F16: the device under test holds this operand in that 16-bit storage
     * (a lowp operand); the reference holds the same values, rounded to it, as float32.
     * PT_F32 (0) otherwise. */
    pt_dtype store;
    /* A 4-D img operand the device under test holds channels last (PT_LAYOUT_NHWC): its
     * elements are transposed on the way in and back before the comparison; the reference
     * holds it NCHW. */
    int nhwc;
    int transposed; /* run_case: the device's result is back in NCHW */
} conf_operand;

typedef struct conf_case {
    char name[112];
    pt_op op; /* kind, nt, params, accumulate; operand memory is set when the case runs */
    conf_operand o[PT_OP_MAX_OPERANDS];
    int steps;      /* optimizer cases: updates in a row, with fresh inputs (gradients) each */
    int first_step; /* SGD: the first of them is the optimizer's first step */
    int64_t adam_step0;
    /* kinds with per-step parameters: the device under test reads them from a step record
     * (pt_op.step), its by-value ones cleared; the reference keeps them by value */
    int step_record;
    /* with step_record, the decisions of a step captured whole (polytrain/op.h): gate, the
     * record's skip word set (the op must leave every output as it was; the reference does
     * not run); amp_mode, AMP_UNSCALE's mode on the device under test (PT_AMP_LOSS: the
     * factor from the record; PT_AMP_CLIP: the clipping coefficient of sumsq, which the
     * reference applies by value where pt_clip_applies) */
    int gate, amp_mode;
    float sumsq;
} conf_case;

typedef struct conf_table {
    conf_case *c;
    int n, cap;
    int oom;
} conf_table;

/* ---- building the table: each op kind's description names the recipe that makes its
 * cases (pt_op_desc.cases); the table is every kind's cases, in the order of the kinds ---- */

static conf_case new_case(pt_op_kind kind, int nt)
{
    conf_case c;
    memset(&c, 0, sizeof c);
    c.op.kind = kind;
    c.op.nt = nt;
    c.steps = 1;
    for (int i = 0; i < PT_OP_MAX_OPERANDS; i++) c.o[i].alias = -1, c.o[i].role = R_ABSENT;
    return c;
}

static void push(conf_table *t, conf_case *c, const char *fmt, ...) PT_PRINTF(3, 4);
static void push(conf_table *t, conf_case *c, const char *fmt, ...)
{
    if (t->oom) return;
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 256;
        conf_case *p = realloc(t->c, (size_t)cap * sizeof *p);
        if (!p) {
            t->oom = 1;
            return;
        }
        t->c = p, t->cap = cap;
    }
    int len = snprintf(c->name, sizeof c->name, "%s ", pt_op_name(c->op.kind));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->name + len, sizeof c->name - (size_t)len, fmt, ap);
    va_end(ap);
    t->c[t->n++] = *c;
}

/* Operand i of the case, named and typed as the kind's description says. */
static conf_operand *opnd(conf_case *c, int i, int role, double bound, int ndim, int64_t d0, int64_t d1,
                          int64_t d2, int64_t d3)
{
    const pt_op_operand *a = &pt_op_describe(c->op.kind)->arg[i];
    conf_operand *o = &c->o[i];
    o->name = a->name;
    o->dtype = a->dtype;
    o->role = role;
    o->gen = a->dtype == PT_I32 ? G_LABELS : G_UNIFORM;
    o->lo = -1.0f, o->hi = 1.0f;
    o->check = role == R_IN ? C_NONE : a->dtype == PT_I32 ? C_EXACT : C_NORM;
    o->bound = bound;
    /* Inputs are O(1): an output element near 0 is a cancellation (1x1 gemm with beta 1,
     * axpy of one element) whose absolute accuracy is an ulp of the terms, not of itself. */
    o->floor = 1e-2;
    o->alias = -1;
    o->ndim = ndim;
    int64_t d[PT_MAX_DIMS] = {d0, d1, d2, d3};
    for (int k = 0; k < PT_MAX_DIMS; k++) o->dim[k] = k < ndim ? d[k] : 1;
    return o;
}

static conf_operand *in(conf_case *c, int i, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    return opnd(c, i, R_IN, 0, ndim, d0, d1, d2, d3);
}

/* An output, or with acc an accumulate target that starts from random values. */
static conf_operand *out(conf_case *c, int i, double bound, int acc, int ndim, int64_t d0, int64_t d1, int64_t d2,
                         int64_t d3)
{
    return opnd(c, i, acc ? R_INOUT : R_OUT, bound, ndim, d0, d1, d2, d3);
}

/* Operand i is written in place over operand j (same memory, same shape). */
static void alias(conf_case *c, int i, int j)
{
    c->o[i].alias = j;
    c->o[i].role = R_OUT;
    c->o[i].check = C_NORM;
}

/* The three ways a backward writes its input gradient: overwriting it, adding to it, and
 * in place over dy (where the kind allows it). */
static const char *const grad_mode_name[] = {"acc=0", "acc=1", "dx=dy"};

static void cases_fill(conf_table *t, pt_op_kind kind)
{
    static const struct { int64_t n; float v; } v[] = {{1, 0.375f}, {1001, -2.5f}, {4099, 0.0f}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        conf_case c = new_case(kind, 1);
        out(&c, 0, 0, 0, 1, v[i].n, 1, 1, 1)->check = C_EXACT;
        c.op.p.fill.value = v[i].v;
        push(t, &c, "n=%lld value=%g", (long long)v[i].n, (double)v[i].v);
    }
}

static void cases_axpy(conf_table *t, pt_op_kind kind)
{
    static const int64_t sizes[] = {1, 17, 10007};
    for (int si = 0; si < 3; si++)
        for (int acc = 0; acc < 2; acc++) {
            conf_case c = new_case(kind, 2);
            in(&c, 0, 1, sizes[si], 1, 1, 1);
            out(&c, 1, B_ELEM, acc, 1, sizes[si], 1, 1, 1);
            c.op.p.axpy.alpha = -0.7f;
            c.op.accumulate = acc;
            push(t, &c, "n=%lld alpha=-0.7 acc=%d", (long long)sizes[si], acc);
        }
}

static void cases_add(conf_table *t, pt_op_kind kind)
{
    static const char *const alias_name[] = {"none", "a", "b"};
    static const int64_t add_sizes[] = {1, 4097};
    for (int si = 0; si < 2; si++)
        for (int al = 0; al < 3; al++) {
            conf_case c = new_case(kind, 3);
            in(&c, 0, 1, add_sizes[si], 1, 1, 1);
            in(&c, 1, 1, add_sizes[si], 1, 1, 1);
            out(&c, 2, B_ELEM, 0, 1, add_sizes[si], 1, 1, 1);
            if (al) alias(&c, 2, al - 1);
            push(t, &c, "n=%lld y=%s", (long long)add_sizes[si], alias_name[al]);
        }
}

static void cases_gemm(conf_table *t, pt_op_kind kind)
{
    /* m, n, k: degenerate, odd, larger than a tile, the baseline's classifier, a row vector. */
    static const int shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {33, 17, 65}, {64, 10, 128}, {1, 300, 77}};
    for (int si = 0; si < 5; si++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int bi = 0; bi < 2; bi++) {
                    int m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
                    conf_case c = new_case(kind, 3);
                    if (ta) in(&c, 0, 2, k, m, 1, 1);
                    else in(&c, 0, 2, m, k, 1, 1);
                    if (tb) in(&c, 1, 2, n, k, 1, 1);
                    else in(&c, 1, 2, k, n, 1, 1);
                    out(&c, 2, B_DOT, bi, 2, m, n, 1, 1);
                    c.op.p.gemm.trans_a = ta, c.op.p.gemm.trans_b = tb;
                    c.op.p.gemm.alpha = bi ? 1.5f : 1.0f;
                    c.op.p.gemm.beta = bi ? 1.0f : 0.0f;
                    push(t, &c, "m=%d n=%d k=%d ta=%d tb=%d alpha=%g beta=%d", m, n, k, ta, tb,
                         bi ? 1.5 : 1.0, bi);
                }
}

static void cases_bias(conf_table *t, pt_op_kind kind)
{
    static const int64_t shapes[][5] = {{2, 5, 7, 1, 1}, {2, 1, 1, 1, 1}, {4, 2, 3, 5, 7}, {4, 1, 16, 1, 1}};
    for (int si = 0; si < 4; si++) {
        const int64_t *s = shapes[si];
        int nd = (int)s[0];
        const char *tail = nd == 4 ? (s[3] == 1 ? "x1x1" : "x5x7") : "";
        if (kind == PT_OP_BIAS_ADD) {
            conf_case c = new_case(kind, 2);
            out(&c, 0, B_ELEM, 1, nd, s[1], s[2], s[3], s[4]);
            in(&c, 1, 1, s[2], 1, 1, 1);
            push(t, &c, "y=%lldx%lld%s", (long long)s[1], (long long)s[2], tail);
            continue;
        }
        for (int acc = 0; acc < 2; acc++) {
            conf_case g = new_case(kind, 2);
            in(&g, 0, nd, s[1], s[2], s[3], s[4]);
            out(&g, 1, B_REDUCE, acc, 1, s[2], 1, 1, 1);
            g.op.accumulate = acc;
            push(t, &g, "dy=%lldx%lld%s acc=%d", (long long)s[1], (long long)s[2], tail, acc);
        }
    }
}

/* One convolution case of any direction: x, w and y-shaped operands are inputs except the
 * one the direction writes. */
static void conv_case(conf_table *t, pt_op_kind kind, int n, int ch, int h, int w, int k, int r, int st, int pad,
                      int acc, const char *tag)
{
    int p = (h + 2 * pad - r) / st + 1, q = (w + 2 * pad - r) / st + 1;
    conf_case c = new_case(kind, 3);
    if (kind == PT_OP_CONV2D_BWD_DATA) out(&c, 0, B_DOT, acc, 4, n, ch, h, w);
    else in(&c, 0, 4, n, ch, h, w);
    if (kind == PT_OP_CONV2D_BWD_FILTER) out(&c, 1, B_DOT, acc, 4, k, ch, r, r);
    else in(&c, 1, 4, k, ch, r, r);
    if (kind == PT_OP_CONV2D_FWD) out(&c, 2, B_DOT, acc, 4, n, k, p, q);
    else in(&c, 2, 4, n, k, p, q);
    c.op.p.conv.stride = st, c.op.p.conv.pad = pad;
    c.op.accumulate = acc;
    push(t, &c, "%sx=%dx%dx%dx%d w=%dx%dx%dx%d s=%d p=%d acc=%d", tag, n, ch, h, w, k, ch, r, r, st, pad, acc);
}

static void cases_conv(conf_table *t, pt_op_kind kind)
{
    /* n, c, h, w, k, r (= s), stride, pad */
    static const int cc[][8] = {
        {2, 3, 9, 7, 4, 3, 1, 1},   /* 3x3, odd sizes */
        {1, 5, 8, 8, 6, 3, 2, 1},   /* stride 2, batch 1 */
        {3, 4, 7, 9, 5, 1, 1, 0},   /* 1x1 */
        {2, 4, 6, 6, 8, 1, 2, 0},   /* 1x1 stride 2 (a ResNet shortcut) */
        {1, 3, 15, 13, 4, 7, 2, 3}, /* 7x7 stride 2 pad 3 (a ResNet stem) */
        {2, 2, 5, 5, 3, 3, 1, 0},   /* 3x3 pad 0 */
        {1, 1, 28, 28, 8, 3, 1, 1}, /* the baseline's first layer on Fashion-MNIST */
        {4, 16, 14, 14, 16, 3, 1, 1},
        {2, 3, 4, 4, 2, 3, 2, 1},   /* 2x2 output */
        {1, 2, 3, 3, 3, 7, 1, 3},   /* kernel larger than the input */
    };
    for (size_t ci = 0; ci < sizeof cc / sizeof cc[0]; ci++)
        for (int acc = 0; acc < 2; acc++) {
            const int *v = cc[ci];
            conv_case(t, kind, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], acc, "");
        }
    /* CBAM's spatial convolution: 7x7, padding 3, 2 channels in, 1 out, on odd planes */
    static const int cs[][3] = {{2, 9, 7}, {1, 4, 4}, {3, 8, 8}};
    for (int si = 0; si < 3; si++)
        for (int acc = 0; acc < 2; acc++) conv_case(t, kind, cs[si][0], 2, cs[si][1], cs[si][2], 1, 7, 1, 3, acc, "cbam ");
}

static void cases_bn(conf_table *t, pt_op_kind kind)
{
    if (kind == PT_OP_BN_FWD_TRAIN) {
        /* n, c, h, w, and x's range: centred, and offset (variance by cancellation would fail);
         * the last a ResNet layer's size, where a GPU library spreads a channel over blocks */
        static const struct { int n, c, h, w; float lo, hi; } tr[] = {
            {2, 3, 5, 7, -1, 1}, {8, 16, 4, 4, -1, 1}, {1, 4, 3, 3, -1, 1},
            {2, 5, 1, 1, -1, 1}, {4, 6, 8, 8, 3, 5},   {32, 64, 8, 8, -1, 1}};
        for (size_t i = 0; i < sizeof tr / sizeof tr[0]; i++) {
            conf_case c = new_case(kind, 8);
            conf_operand *x = in(&c, 0, 4, tr[i].n, tr[i].c, tr[i].h, tr[i].w);
            x->lo = tr[i].lo, x->hi = tr[i].hi;
            conf_operand *g = in(&c, 1, 1, tr[i].c, 1, 1, 1);
            g->lo = 0.5f, g->hi = 1.5f;
            in(&c, 2, 1, tr[i].c, 1, 1, 1);
            out(&c, 3, B_DOT, 0, 4, tr[i].n, tr[i].c, tr[i].h, tr[i].w);
            out(&c, 4, B_DOT, 1, 1, tr[i].c, 1, 1, 1);
            conf_operand *rv = out(&c, 5, B_DOT, 1, 1, tr[i].c, 1, 1, 1);
            rv->lo = 0.5f, rv->hi = 1.5f;
            out(&c, 6, B_DOT, 0, 1, tr[i].c, 1, 1, 1);
            out(&c, 7, B_DOT, 0, 1, tr[i].c, 1, 1, 1);
            c.op.p.bn.eps = 1e-5f, c.op.p.bn.momentum = 0.1f;
            push(t, &c, "x=%dx%dx%dx%d in [%g,%g)", tr[i].n, tr[i].c, tr[i].h, tr[i].w, (double)tr[i].lo,
                 (double)tr[i].hi);
            /* with the residual z (a folded residual add): the centred shapes, y new and, in
             * the first, y over z */
            if (tr[i].lo > 0.0f || tr[i].h == 1 || i == 2) continue;
            for (int over_z = 0; over_z < (i == 0 ? 2 : 1); over_z++) {
                conf_case r = c;
                r.op.nt = 9;
                in(&r, 8, 4, tr[i].n, tr[i].c, tr[i].h, tr[i].w);
                if (over_z) alias(&r, 3, 8);
                push(t, &r, "x=%dx%dx%dx%d in [%g,%g) z y=%s", tr[i].n, tr[i].c, tr[i].h, tr[i].w,
                     (double)tr[i].lo, (double)tr[i].hi, over_z ? "z" : "new");
            }
        }
    } else if (kind == PT_OP_BN_FWD_EVAL) {
        static const int ev[][5] = {{2, 3, 5, 7, 0}, {1, 16, 1, 1, 0}, {4, 8, 6, 6, 1}};
        for (int i = 0; i < 3; i++) {
            const int *s = ev[i];
            conf_case c = new_case(kind, 6);
            in(&c, 0, 4, s[0], s[1], s[2], s[3]);
            conf_operand *g = in(&c, 1, 1, s[1], 1, 1, 1);
            g->lo = 0.5f, g->hi = 1.5f;
            in(&c, 2, 1, s[1], 1, 1, 1);
            out(&c, 3, B_ELEM, 0, 4, s[0], s[1], s[2], s[3]);
            if (s[4]) alias(&c, 3, 0);
            in(&c, 4, 1, s[1], 1, 1, 1);
            conf_operand *rv = in(&c, 5, 1, s[1], 1, 1, 1);
            rv->lo = 0.5f, rv->hi = 1.5f;
            c.op.p.bn.eps = 1e-3f, c.op.p.bn.momentum = 0.1f;
            push(t, &c, "x=%dx%dx%dx%d y=%s", s[0], s[1], s[2], s[3], s[4] ? "x" : "new");
            /* with the residual z: y as above, and y over z */
            if (s[2] == 1) continue;
            for (int over_z = 0; over_z < 2; over_z++) {
                conf_case r = c;
                r.op.nt = 7;
                in(&r, 6, 4, s[0], s[1], s[2], s[3]);
                if (over_z) {
                    if (s[4]) continue;
                    alias(&r, 3, 6);
                }
                push(t, &r, "x=%dx%dx%dx%d z y=%s", s[0], s[1], s[2], s[3], over_z ? "z" : s[4] ? "x" : "new");
            }
        }
    } else {
        /* Batch of 4 at 1x1, not 2 (with two samples the input gradient is zero and only
         * rounding noise is left to compare). */
        static const int bw[][4] = {{2, 3, 5, 7}, {8, 16, 4, 4}, {4, 5, 1, 1}, {32, 64, 8, 8}};
        for (int i = 0; i < 4; i++)
            for (int mode = 0; mode < 3; mode++) {
                const int *s = bw[i];
                conf_case c = new_case(kind, 8);
                in(&c, 0, 4, s[0], s[1], s[2], s[3]);
                in(&c, 1, 4, s[0], s[1], s[2], s[3]);
                conf_operand *g = in(&c, 2, 1, s[1], 1, 1, 1);
                g->lo = 0.5f, g->hi = 1.5f;
                in(&c, 3, 1, s[1], 1, 1, 1)->gen = G_BN_MEAN;
                in(&c, 4, 1, s[1], 1, 1, 1)->gen = G_BN_INVSTD;
                out(&c, 5, B_DOT, mode == 1, 4, s[0], s[1], s[2], s[3]);
                if (mode == 2) alias(&c, 5, 1);
                out(&c, 6, B_DOT, 0, 1, s[1], 1, 1, 1);
                out(&c, 7, B_DOT, 0, 1, s[1], 1, 1, 1);
                c.op.accumulate = mode == 1;
                push(t, &c, "x=%dx%dx%dx%d %s", s[0], s[1], s[2], s[3], grad_mode_name[mode]);
            }
    }
}

/* A pointwise forward x -> y: one element, an odd size and a larger one in place (when the
 * kind allows it); the first two take their inputs from the middle 4% and 8% of the
 * description's range, the last from all of it (the function's tails: exp overflows past
 * 88 for a sigmoid). */
static void cases_pointwise_fwd(conf_table *t, pt_op_kind kind)
{
    const pt_op_desc *d = pt_op_describe(kind);
    const int in_place = (d->may_alias[1] & 1u) != 0;
    static const struct { int64_t n; float share; int inplace; } sz[] = {{1, 0.04f, 0}, {1001, 0.08f, 0}, {4099, 1, 1}};
    for (size_t i = 0; i < sizeof sz / sizeof sz[0]; i++) {
        const float mid = 0.5f * (d->cases.lo + d->cases.hi), half = 0.5f * (d->cases.hi - d->cases.lo) * sz[i].share;
        conf_case c = new_case(kind, 2);
        conf_operand *x = in(&c, 0, 1, sz[i].n, 1, 1, 1);
        x->lo = mid - half, x->hi = mid + half;
        out(&c, 1, B_ELEM, 0, 1, sz[i].n, 1, 1, 1);
        if (sz[i].inplace && in_place) alias(&c, 1, 0);
        push(t, &c, "n=%lld x in [%g,%g) y=%s", (long long)sz[i].n, (double)x->lo, (double)x->hi,
             sz[i].inplace && in_place ? "x" : "new");
    }
}

/* A pointwise backward (saved, dy) -> dx: the saved tensor (the forward's input or output)
 * from the description's range (a ReLU's output when nonneg), dy in [-1, 1). */
static void cases_pointwise_bwd(conf_table *t, pt_op_kind kind)
{
    const pt_op_desc *d = pt_op_describe(kind);
    const int in_place = (d->may_alias[2] & 2u) != 0;
    for (int mode = 0; mode < 3; mode++) {
        if (mode == 2 && !in_place) continue;
        conf_case c = new_case(kind, 3);
        conf_operand *s = in(&c, 0, 2, 37, 111, 1, 1);
        s->lo = d->cases.lo, s->hi = d->cases.hi;
        if (d->cases.nonneg) s->gen = G_RELU_OUT;
        in(&c, 1, 2, 37, 111, 1, 1);
        out(&c, 2, B_ELEM, mode == 1, 2, 37, 111, 1, 1);
        if (mode == 2) alias(&c, 2, 1);
        c.op.accumulate = mode == 1;
        push(t, &c, "n=37x111 %s", grad_mode_name[mode]);
    }
}

static void cases_pool(conf_table *t, pt_op_kind kind)
{
    /* n, c, h, w, k, stride, pad */
    static const int pc[][7] = {
        {2, 3, 8, 8, 2, 2, 0}, {1, 4, 9, 7, 3, 2, 1}, {2, 2, 7, 7, 3, 2, 0},
        {2, 3, 5, 6, 2, 2, 1}, {4, 16, 28, 28, 2, 2, 0}};
    for (size_t i = 0; i < sizeof pc / sizeof pc[0]; i++) {
        const int *s = pc[i];
        int p = (s[2] + 2 * s[6] - s[4]) / s[5] + 1, q = (s[3] + 2 * s[6] - s[4]) / s[5] + 1;
        if (kind == PT_OP_MAXPOOL_FWD) {
            for (int ties = 0; ties < 2; ties++) {
                conf_case c = new_case(kind, 3);
                in(&c, 0, 4, s[0], s[1], s[2], s[3])->gen = ties ? G_TIES : G_UNIFORM;
                out(&c, 1, B_ELEM, 0, 4, s[0], s[1], p, q);
                out(&c, 2, 0, 0, 4, s[0], s[1], p, q);
                c.op.p.pool.k = s[4], c.op.p.pool.stride = s[5], c.op.p.pool.pad = s[6];
                push(t, &c, "x=%dx%dx%dx%d k=%d s=%d p=%d %s", s[0], s[1], s[2], s[3], s[4], s[5], s[6],
                     ties ? "ties" : "distinct");
            }
            continue;
        }
        for (int acc = 0; acc < 2; acc++) {
            conf_case c = new_case(kind, 3);
            in(&c, 0, 4, s[0], s[1], p, q);
            in(&c, 1, 4, s[0], s[1], p, q)->gen = G_ARGMAX;
            out(&c, 2, B_ELEM, acc, 4, s[0], s[1], s[2], s[3]);
            c.op.p.pool.k = s[4], c.op.p.pool.stride = s[5], c.op.p.pool.pad = s[6];
            c.op.accumulate = acc;
            push(t, &c, "x=%dx%dx%dx%d k=%d s=%d p=%d acc=%d", s[0], s[1], s[2], s[3], s[4], s[5], s[6], acc);
        }
    }
}

static void cases_gap(conf_table *t, pt_op_kind kind)
{
    static const int gs[][4] = {{2, 3, 5, 7}, {4, 16, 7, 7}, {1, 1, 1, 1}};
    for (int i = 0; i < 3; i++) {
        const int *s = gs[i];
        if (kind == PT_OP_GAP_FWD) {
            conf_case c = new_case(kind, 2);
            in(&c, 0, 4, s[0], s[1], s[2], s[3]);
            out(&c, 1, B_REDUCE, 0, 2, s[0], s[1], 1, 1);
            push(t, &c, "x=%dx%dx%dx%d", s[0], s[1], s[2], s[3]);
            continue;
        }
        for (int acc = 0; acc < 2; acc++) {
            conf_case b = new_case(kind, 2);
            in(&b, 0, 2, s[0], s[1], 1, 1);
            out(&b, 1, B_ELEM, acc, 4, s[0], s[1], s[2], s[3]);
            b.op.accumulate = acc;
            push(t, &b, "x=%dx%dx%dx%d acc=%d", s[0], s[1], s[2], s[3], acc);
        }
    }
}

static void cases_dropout(conf_table *t, pt_op_kind kind)
{
    if (kind == PT_OP_DROPOUT_FWD) {
        /* ndim, dims, p, sample_base, in place */
        static const struct { int nd; int64_t d[4]; float p; int64_t base; int inplace; } fw[] = {
            {2, {4, 100, 1, 1}, 0.5f, 17, 0},
            {4, {3, 2, 5, 5}, 0.1f, 0, 1},
            {2, {1, 1000, 1, 1}, 0.3f, 123456789, 0},
            {4, {2, 7, 3, 3}, 0.5f, 64, 0},
        };
        for (size_t i = 0; i < sizeof fw / sizeof fw[0]; i++) {
            const int64_t *d = fw[i].d;
            conf_case c = new_case(kind, 3);
            in(&c, 0, fw[i].nd, d[0], d[1], d[2], d[3]);
            out(&c, 1, B_ELEM, 0, fw[i].nd, d[0], d[1], d[2], d[3]);
            if (fw[i].inplace) alias(&c, 1, 0);
            out(&c, 2, 0, 0, fw[i].nd, d[0], d[1], d[2], d[3])->check = C_EXACT;
            c.op.p.dropout.p = fw[i].p;
            c.op.p.dropout.stream = 3 * 65536 + 2; /* step 3, layer 2; the seed is the suite's */
            c.op.p.dropout.sample_base = fw[i].base;
            push(t, &c, "x=%lldx%lldx%lldx%lld p=%g base=%lld y=%s", (long long)d[0], (long long)d[1],
                 (long long)d[2], (long long)d[3], (double)fw[i].p, (long long)fw[i].base,
                 fw[i].inplace ? "x" : "new");
        }
        return;
    }
    for (int mode = 0; mode < 3; mode++) {
        conf_case c = new_case(kind, 3);
        in(&c, 0, 2, 4, 100, 1, 1);
        conf_operand *m = in(&c, 1, 2, 4, 100, 1, 1);
        m->gen = G_MASK, m->hi = 0.5f;
        out(&c, 2, B_ELEM, mode == 1, 2, 4, 100, 1, 1);
        if (mode == 2) alias(&c, 2, 0);
        c.op.accumulate = mode == 1;
        push(t, &c, "x=4x100 %s", grad_mode_name[mode]);
    }
}

static void cases_xent(conf_table *t, pt_op_kind kind)
{
    static const int nk[][2] = {{4, 10}, {1, 3}, {64, 10}, {5, 200}};
    for (int i = 0; i < 4; i++)
        for (int sm = 0; sm < 2; sm++)
            for (int form = 0; form < 3; form++) {
                /* form 0: loss only; 1: loss and gradient; 2: with mixup targets too */
                int n = nk[i][0], k = nk[i][1];
                conf_case c = new_case(kind, form == 2 ? 6 : 4);
                conf_operand *z = in(&c, 0, 2, n, k, 1, 1);
                z->lo = -5.0f, z->hi = 5.0f;
                in(&c, 1, 1, n, 1, 1, 1)->hi = (float)k;
                /* loss = logsumexp - logit: absolute accuracy ~ ulp(logits), whatever the loss */
                out(&c, 2, B_ELEM, 0, 1, n, 1, 1, 1)->floor = 1.0;
                /* dlogits = (softmax - q)/n: p - 1 of a confident row is a difference too */
                if (form) out(&c, 3, B_ELEM, 0, 2, n, k, 1, 1)->floor = 1.0 / n;
                if (form == 2) {
                    in(&c, 4, 1, n, 1, 1, 1)->hi = (float)k;
                    conf_operand *lam = in(&c, 5, 1, n, 1, 1, 1);
                    lam->lo = 0.0f, lam->hi = 1.0f;
                }
                c.op.p.xent.smoothing = sm ? 0.1f : 0.0f;
                c.op.p.xent.grad_scale = 1.0f / (float)n;
                push(t, &c, "n=%d k=%d smoothing=%g dlogits=%s%s", n, k, sm ? 0.1 : 0.0, form ? "yes" : "no",
                     form == 2 ? " mixup" : "");
            }
}

static void cases_optim(conf_table *t, pt_op_kind kind)
{
    /* Parameters are small (as weights are) so that one rounding of a parameter stays far
     * below the bound on the update C_DELTA compares. */
    const int64_t n = 4097;
    if (kind == PT_OP_SGD) {
        static const struct { float mom, damp, wd; int nesterov, first; } sg[] = {
            {0, 0, 0, 0, 0},           {0, 0, 5e-4f, 0, 0},         {0.9f, 0, 0, 0, 1},
            {0.9f, 0, 5e-4f, 1, 1},    {0.9f, 0.1f, 1e-4f, 0, 0},   {0.9f, 0, 5e-4f, 1, 0},
        };
        for (size_t i = 0; i < sizeof sg / sizeof sg[0]; i++) {
            conf_case c = new_case(kind, 3);
            conf_operand *p = out(&c, 0, B_ELEM, 1, 1, n, 1, 1, 1);
            p->check = C_DELTA, p->lo = -0.05f, p->hi = 0.05f, p->floor = 1e-4;
            in(&c, 1, 1, n, 1, 1, 1);
            /* momentum 0: the buffer is neither read nor written (poisoned, not compared);
             * a first step must not read it (poisoned); later steps read and write it. */
            conf_operand *b = out(&c, 2, B_ELEM, sg[i].mom != 0 && !sg[i].first, 1, n, 1, 1, 1);
            b->lo = -0.1f, b->hi = 0.1f;
            if (sg[i].mom == 0) b->check = C_NONE;
            c.op.p.sgd.lr = 0.05f, c.op.p.sgd.momentum = sg[i].mom, c.op.p.sgd.dampening = sg[i].damp;
            c.op.p.sgd.weight_decay = sg[i].wd, c.op.p.sgd.nesterov = sg[i].nesterov;
            c.steps = 3, c.first_step = sg[i].first;
            push(t, &c, "n=%lld momentum=%g dampening=%g wd=%g nesterov=%d first_step=%d steps=3", (long long)n,
                 (double)sg[i].mom, (double)sg[i].damp, (double)sg[i].wd, sg[i].nesterov, sg[i].first);
        }
    } else if (kind == PT_OP_ADAM) {
        static const struct { int decoupled; float wd; int64_t step0; int fresh; } ad[] = {
            {0, 0, 1, 1}, {0, 1e-2f, 1, 1}, {1, 1e-2f, 1, 1}, {1, 0.05f, 1000, 0}, {0, 0, 10, 0}};
        for (size_t i = 0; i < sizeof ad / sizeof ad[0]; i++) {
            conf_case c = new_case(kind, 4);
            conf_operand *p = out(&c, 0, B_ELEM, 1, 1, n, 1, 1, 1);
            p->check = C_DELTA, p->lo = -0.05f, p->hi = 0.05f, p->floor = 1e-4;
            in(&c, 1, 1, n, 1, 1, 1);
            conf_operand *m = out(&c, 2, B_ELEM, 1, 1, n, 1, 1, 1);
            conf_operand *v = out(&c, 3, B_ELEM, 1, 1, n, 1, 1, 1);
            if (ad[i].fresh) m->lo = m->hi = v->lo = v->hi = 0.0f; /* state of a new optimizer */
            else m->lo = -0.01f, m->hi = 0.01f, v->lo = 0.0f, v->hi = 1e-4f;
            c.op.p.adam.lr = 1e-2f, c.op.p.adam.beta1 = 0.9f, c.op.p.adam.beta2 = 0.999f;
            c.op.p.adam.eps = 1e-8f, c.op.p.adam.weight_decay = ad[i].wd, c.op.p.adam.decoupled = ad[i].decoupled;
            c.steps = 3, c.adam_step0 = ad[i].step0;
            push(t, &c, "n=%lld %s wd=%g step=%lld.. steps=3", (long long)n, ad[i].decoupled ? "adamw" : "adam",
                 (double)ad[i].wd, (long long)ad[i].step0);
        }
    } else {
        /* RMSprop: plain, with L2 and momentum, centered, and both on state already running.
         * Unused state (momentum 0, not centered) is poisoned and not compared: reading it
         * would turn the parameter into NaN. */
        static const struct { float wd, mom; int centered, fresh; } rp[] = {
            {0, 0, 0, 1}, {5e-4f, 0.9f, 0, 1}, {0, 0, 1, 1}, {1e-2f, 0.9f, 1, 0}, {0, 0.5f, 0, 0}};
        for (size_t i = 0; i < sizeof rp / sizeof rp[0]; i++) {
            conf_case c = new_case(kind, 5);
            conf_operand *p = out(&c, 0, B_ELEM, 1, 1, n, 1, 1, 1);
            p->check = C_DELTA, p->lo = -0.05f, p->hi = 0.05f, p->floor = 1e-4;
            in(&c, 1, 1, n, 1, 1, 1);
            conf_operand *sq = out(&c, 2, B_ELEM, 1, 1, n, 1, 1, 1);
            conf_operand *b = out(&c, 3, B_ELEM, rp[i].mom != 0, 1, n, 1, 1, 1);
            conf_operand *a = out(&c, 4, B_ELEM, rp[i].centered, 1, n, 1, 1, 1);
            /* running state keeps square_avg >= grad_avg^2, as RMSprop's own updates do */
            if (rp[i].fresh) sq->lo = sq->hi = b->lo = b->hi = a->lo = a->hi = 0.0f;
            else sq->lo = 1e-4f, sq->hi = 2e-4f, b->lo = -0.1f, b->hi = 0.1f, a->lo = -5e-3f, a->hi = 5e-3f;
            if (rp[i].mom == 0) b->check = C_NONE;
            if (!rp[i].centered) a->check = C_NONE;
            c.op.p.rmsprop.lr = 1e-2f, c.op.p.rmsprop.alpha = 0.99f, c.op.p.rmsprop.eps = 1e-8f;
            c.op.p.rmsprop.weight_decay = rp[i].wd, c.op.p.rmsprop.momentum = rp[i].mom;
            c.op.p.rmsprop.centered = rp[i].centered;
            c.steps = 3;
            push(t, &c, "n=%lld wd=%g momentum=%g centered=%d %s state steps=3", (long long)n, (double)rp[i].wd,
                 (double)rp[i].mom, rp[i].centered, rp[i].fresh ? "fresh" : "running");
        }
    }
}

/* The shapes of the model zoo's attention and pooling ops: odd sizes, a single element,
 * batch 1 with many channels, 1x1 planes. */
static const int zoo_shapes[][4] = {{2, 3, 5, 7}, {1, 1, 1, 1}, {1, 16, 4, 4}, {3, 5, 1, 1}, {2, 32, 8, 8}};
#define ZOO_SHAPES (sizeof zoo_shapes / sizeof zoo_shapes[0])

/* SE/CBAM attention: the broadcast multiply per channel or per pixel, and its factor gradient. */
static void cases_bcast_mul(conf_table *t, pt_op_kind kind)
{
    for (size_t i = 0; i < ZOO_SHAPES; i++) {
        const int n = zoo_shapes[i][0], c = zoo_shapes[i][1], h = zoo_shapes[i][2], w = zoo_shapes[i][3];
        for (int pix = 0; pix < 2; pix++)
            for (int acc = 0; acc < 2; acc++) {
                conf_case m = new_case(kind, 3);
                in(&m, 0, 4, n, c, h, w);
                if (kind == PT_OP_BCAST_MUL) {
                    if (pix) in(&m, 1, 4, n, 1, h, w);
                    else in(&m, 1, 2, n, c, 1, 1);
                    out(&m, 2, B_ELEM, acc, 4, n, c, h, w);
                } else {
                    in(&m, 1, 4, n, c, h, w);
                    if (pix) out(&m, 2, B_REDUCE, acc, 4, n, 1, h, w);
                    else out(&m, 2, B_REDUCE, acc, 2, n, c, 1, 1);
                }
                m.op.accumulate = acc;
                push(t, &m, "x=%dx%dx%dx%d %s=%s acc=%d", n, c, h, w, kind == PT_OP_BCAST_MUL ? "s" : "ds",
                     pix ? "per-pixel" : "per-channel", acc);
            }
    }
}

static void cases_global_maxpool(conf_table *t, pt_op_kind kind)
{
    for (size_t i = 0; i < ZOO_SHAPES; i++) {
        const int n = zoo_shapes[i][0], c = zoo_shapes[i][1], h = zoo_shapes[i][2], w = zoo_shapes[i][3];
        for (int v = 0; v < 2; v++) {
            conf_case f = new_case(kind, 3);
            if (kind == PT_OP_GMP_FWD) {
                in(&f, 0, 4, n, c, h, w)->gen = v ? G_TIES : G_UNIFORM;
                out(&f, 1, B_ELEM, 0, 2, n, c, 1, 1);
                out(&f, 2, 0, 0, 2, n, c, 1, 1);
                push(t, &f, "x=%dx%dx%dx%d %s", n, c, h, w, v ? "ties" : "distinct");
            } else {
                in(&f, 0, 2, n, c, 1, 1);
                in(&f, 1, 2, n, c, 1, 1)->hi = (float)(h * w);
                out(&f, 2, B_ELEM, v, 4, n, c, h, w);
                f.op.accumulate = v;
                push(t, &f, "x=%dx%dx%dx%d acc=%d", n, c, h, w, v);
            }
        }
    }
}

static void cases_channel_pool(conf_table *t, pt_op_kind kind)
{
    for (size_t i = 0; i < ZOO_SHAPES; i++) {
        const int n = zoo_shapes[i][0], c = zoo_shapes[i][1], h = zoo_shapes[i][2], w = zoo_shapes[i][3];
        for (int v = 0; v < 2; v++) {
            conf_case p = new_case(kind, 3);
            if (kind == PT_OP_CHANNEL_POOL_FWD) {
                in(&p, 0, 4, n, c, h, w)->gen = v ? G_TIES : G_UNIFORM;
                out(&p, 1, B_REDUCE, 0, 4, n, 2, h, w);
                out(&p, 2, 0, 0, 4, n, 1, h, w);
                push(t, &p, "x=%dx%dx%dx%d %s", n, c, h, w, v ? "ties" : "distinct");
            } else {
                in(&p, 0, 4, n, 2, h, w);
                in(&p, 1, 4, n, 1, h, w)->hi = (float)c;
                out(&p, 2, B_ELEM, v, 4, n, c, h, w);
                p.op.accumulate = v;
                push(t, &p, "x=%dx%dx%dx%d acc=%d", n, c, h, w, v);
            }
        }
    }
}

/* Synchronised BatchNorm: on one device the "global" sums are this device's, which is
 * what each op sees after the core's reduction. */
static void cases_bn_sync(conf_table *t, pt_op_kind kind)
{
    static const struct { int n, c, h, w; float lo, hi; } sh[] = {
        {2, 3, 5, 7, -1, 1}, {8, 16, 4, 4, -1, 1}, {4, 5, 1, 1, -1, 1}, {4, 6, 8, 8, 3, 5}};
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++) {
        int n = sh[i].n, ch = sh[i].c, h = sh[i].h, w = sh[i].w;
        if (kind == PT_OP_BN_SYNC_STATS) {
            conf_case c = new_case(kind, 3);
            conf_operand *x = in(&c, 0, 4, n, ch, h, w);
            x->lo = sh[i].lo, x->hi = sh[i].hi;
            conf_operand *s = in(&c, 1, 1, ch, 1, 1, 1);
            s->lo = sh[i].lo, s->hi = sh[i].hi;
            out(&c, 2, B_DOT, 0, 1, 2 * ch, 1, 1, 1);
            push(t, &c, "x=%dx%dx%dx%d in [%g,%g)", n, ch, h, w, (double)sh[i].lo, (double)sh[i].hi);
        } else if (kind == PT_OP_BN_SYNC_FWD) {
            conf_case c = new_case(kind, 7);
            conf_operand *x = in(&c, 0, 4, n, ch, h, w);
            x->lo = sh[i].lo, x->hi = sh[i].hi;
            conf_operand *g = in(&c, 1, 1, ch, 1, 1, 1);
            g->lo = 0.5f, g->hi = 1.5f;
            in(&c, 2, 1, ch, 1, 1, 1);
            out(&c, 3, B_DOT, 0, 4, n, ch, h, w);
            conf_operand *rm = out(&c, 4, B_DOT, 1, 1, ch, 1, 1, 1);
            rm->lo = sh[i].lo, rm->hi = sh[i].hi;
            conf_operand *rv = out(&c, 5, B_DOT, 1, 1, ch, 1, 1, 1);
            rv->lo = 0.5f, rv->hi = 1.5f;
            out(&c, 6, B_DOT, 1, 1, 2 * ch, 1, 1, 1)->gen = G_BN_SUMS;
            c.op.p.bn.eps = 1e-5f, c.op.p.bn.momentum = 0.1f;
            c.op.p.bn.count = (int64_t)n * h * w;
            push(t, &c, "x=%dx%dx%dx%d in [%g,%g)", n, ch, h, w, (double)sh[i].lo, (double)sh[i].hi);
        } else if (kind == PT_OP_BN_SYNC_BWD_STATS) {
            conf_case c = new_case(kind, 6);
            in(&c, 0, 4, n, ch, h, w);
            in(&c, 1, 4, n, ch, h, w);
            in(&c, 2, 1, 2 * ch, 1, 1, 1)->gen = G_BN_MEAN_INVSTD;
            out(&c, 3, B_DOT, 0, 1, 2 * ch, 1, 1, 1);
            out(&c, 4, B_DOT, 0, 1, ch, 1, 1, 1);
            out(&c, 5, B_DOT, 0, 1, ch, 1, 1, 1);
            push(t, &c, "x=%dx%dx%dx%d", n, ch, h, w);
        } else {
            for (int mode = 0; mode < 3; mode++) {
                conf_case c = new_case(kind, 6);
                in(&c, 0, 4, n, ch, h, w);
                in(&c, 1, 4, n, ch, h, w);
                conf_operand *g = in(&c, 2, 1, ch, 1, 1, 1);
                g->lo = 0.5f, g->hi = 1.5f;
                in(&c, 3, 1, 2 * ch, 1, 1, 1)->gen = G_BN_MEAN_INVSTD;
                in(&c, 4, 1, 2 * ch, 1, 1, 1)->gen = G_BN_BSUMS;
                out(&c, 5, B_DOT, mode == 1, 4, n, ch, h, w);
                if (mode == 2) alias(&c, 5, 1);
                c.op.accumulate = mode == 1;
                c.op.p.bn.count = (int64_t)n * h * w;
                push(t, &c, "x=%dx%dx%dx%d %s", n, ch, h, w, grad_mode_name[mode]);
            }
        }
    }
}

/* Loss-scaling unscale: finite gradients (found stays as it was, 0 or 1), and one +Inf, NaN
 * or -Inf among them (found becomes 1; the non-finite element stays non-finite). */
static void cases_amp_unscale(conf_table *t, pt_op_kind kind)
{
    static const int64_t sizes[] = {1, 1001, 65537};
    static const struct { int gen; float found; const char *what; } v[] = {
        {G_UNIFORM, 0.0f, "finite found=0"}, {G_UNIFORM, 1.0f, "finite found=1"},
        {G_POS_INF, 0.0f, "+inf"}, {G_NAN, 0.0f, "nan"}, {G_NEG_INF, 0.0f, "-inf"}};
    for (int si = 0; si < 3; si++)
        for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
            if (sizes[si] == 1 && v[k].gen != G_UNIFORM && v[k].gen != G_NAN) continue;
            conf_case c = new_case(kind, 2);
            conf_operand *g = out(&c, 0, B_ELEM, 1, 1, sizes[si], 1, 1, 1);
            g->gen = v[k].gen;
            g->lo = -3000.0f, g->hi = 3000.0f; /* gradients of a loss scaled by 2^16 */
            g->check = C_NORM_NF;
            conf_operand *f = out(&c, 1, 0, 1, 1, 1, 1, 1, 1);
            f->gen = G_CONST, f->lo = v[k].found, f->check = C_EXACT;
            c.op.p.amp.inv_scale = 1.0f / 65536.0f;
            push(t, &c, "n=%lld %s", (long long)sizes[si], v[k].what);
        }
}

typedef void (*conf_recipe)(conf_table *t, pt_op_kind kind);

static const conf_recipe recipes[] = {
    [PT_CASES_FILL] = cases_fill,
    [PT_CASES_AXPY] = cases_axpy,
    [PT_CASES_ADD] = cases_add,
    [PT_CASES_GEMM] = cases_gemm,
    [PT_CASES_BIAS] = cases_bias,
    [PT_CASES_CONV] = cases_conv,
    [PT_CASES_BN] = cases_bn,
    [PT_CASES_POINTWISE_FWD] = cases_pointwise_fwd,
    [PT_CASES_POINTWISE_BWD] = cases_pointwise_bwd,
    [PT_CASES_POOL] = cases_pool,
    [PT_CASES_GAP] = cases_gap,
    [PT_CASES_DROPOUT] = cases_dropout,
    [PT_CASES_XENT] = cases_xent,
    [PT_CASES_OPTIM] = cases_optim,
    [PT_CASES_BCAST_MUL] = cases_bcast_mul,
    [PT_CASES_GLOBAL_MAXPOOL] = cases_global_maxpool,
    [PT_CASES_CHANNEL_POOL] = cases_channel_pool,
    [PT_CASES_BN_SYNC] = cases_bn_sync,
    [PT_CASES_AMP_UNSCALE] = cases_amp_unscale,
};

/* The cases of a kind with a math mode again in each reduced-precision mode, against the
 * reference's float32 result with the mode's bound. Run only on devices that claim the mode. */
static void math_variants(conf_table *t, int first)
{
    const int last = t->n;
    for (int p = PT_PREC_TF32; p < PT_PREC_COUNT; p++)
        for (int i = first; i < last && !t->oom; i++) {
            conf_case c = t->c[i];
            c.op.math = (pt_precision)p;
            /* The rounding error is relative to the products' magnitudes, O(1) terms here, not to
             * the result's, which cancels in the small cases (1x1x1 with alpha*a*b against
             * beta*c): a floor of 0.5 per element keeps that from reading as a large error. */
            for (int j = 0; j < c.op.nt; j++)
                if (c.o[j].check == C_NORM) {
                    c.o[j].bound = lowp_bound((pt_precision)p);
                    c.o[j].elem_bound = 4.0 * c.o[j].bound;
                    if (c.o[j].floor < 0.5) c.o[j].floor = 0.5;
                }
            /* push() writes the kind's name first: keep what follows it (a copy: push may move
             * the table) */
            char rest[sizeof c.name];
            const char *sp = strchr(c.name, ' ');
            snprintf(rest, sizeof rest, "%s", sp ? sp + 1 : "");
            push(t, &c, "%s math=%s", rest, pt_precision_name((pt_precision)p));
        }
}

/* The cases of a kind with lowp operands (16-bit activations) again with those operands in
 * bf16 and in fp16 on the device under test, fresh random inputs rounded to the format on both
 * sides, outputs poisoned with NaN; a kind with a math mode computes in the matching one, as
 * training does. Every case once with all its lowp operands 16-bit, and two with the first
 * one only (an op's operands decide alone: an add of a bf16 and a float tensor). Bounds: an
 * output stored in 16 bits is rounded to nearest once, a relative error of at most u (2^-8
 * bf16, 2^-11 fp16) per element, so u on the norm and on each element against the output's
 * largest magnitude, on top of what the op accumulates (the math mode's 4u for convolutions;
 * the float bound for the rest, whose inputs are the same rounded values on both sides).
 * Rounding toward zero (errors up to 2u) fails them. Run only on devices that declare
 * PT_CAP_ACT16 of the format. */
static void act16_variants(conf_table *t, int first, int last)
{
    const pt_op_desc *d = pt_op_describe(last > first ? t->c[first].op.kind : PT_OP_KIND_COUNT);
    if (!d) return;
    int lowp[PT_OP_MAX_OPERANDS], nl = 0;
    for (int j = 0; j < d->nt; j++)
        if (d->arg[j].lowp) lowp[nl++] = j;
    if (!nl) return;
    static const pt_dtype dts[2] = {PT_BF16, PT_F16};
    for (int v = 0; v < 2; v++)
        for (int only_first = 0; only_first < (nl > 1 ? 2 : 1); only_first++)
            for (int i = first; i < last && !t->oom && (!only_first || i < first + 2); i++) {
                conf_case c = t->c[i];
                const pt_dtype dt = dts[v];
                const pt_precision p = dt == PT_BF16 ? PT_PREC_BF16 : PT_PREC_FP16;
                const double u = pt_precision_unit_roundoff(p);
                if (c.steps != 1) continue;
                for (int k = 0; k < (only_first ? 1 : nl); k++)
                    if (c.o[lowp[k]].role != R_ABSENT) c.o[lowp[k]].store = dt;
                /* an operand in place over a 16-bit one is that memory: 16-bit too, and it
                 * must be lowp itself */
                int ok = 1;
                for (int j = 0; j < c.op.nt; j++) {
                    const int a = c.o[j].alias;
                    if (a >= 0 && (c.o[a].store != PT_F32 || c.o[j].store != PT_F32)) {
                        ok = ok && d->arg[j].lowp && d->arg[a].lowp;
                        c.o[j].store = c.o[a].store = dt;
                    }
                }
                if (!ok) continue;
                if (d->flags & PT_OPF_MATH) c.op.math = p;
                for (int j = 0; j < c.op.nt; j++) {
                    conf_operand *o = &c.o[j];
                    if (o->check != C_NORM) continue;
                    if (d->flags & PT_OPF_MATH) {
                        o->bound = lowp_bound(p) + (o->store ? u : 0.0);
                        o->elem_bound = 4.0 * lowp_bound(p) + (o->store ? u : 0.0);
                        if (o->floor < 0.5) o->floor = 0.5;
                    } else if (o->store) {
                        o->elem_bound = u + o->bound;
                        o->bound += u;
                    }
                }
                char rest[sizeof c.name];
                const char *sp = strchr(c.name, ' ');
                snprintf(rest, sizeof rest, "%s", sp ? sp + 1 : "");
                push(t, &c, "%s act=%s%s", rest, dt == PT_BF16 ? "bf16" : "fp16", only_first ? " first" : "");
            }
}

/* The cases of a kind with 4-D img operands again with those operands channels last (NHWC) on
 * the device under test: every one (`layout=nhwc`), and, in the first two cases of the kind,
 * only the first (`layout=nhwc first`: an op's operands decide alone, so a kernel meets NCHW and
 * NHWC operands together). Inputs, outputs and bounds are the case's own: a layout changes
 * where an element lies, not its value, and the device's result is transposed back before the
 * comparison. Cases that run several steps or read a step record are not repeated. Run only on
 * devices that declare PT_CAP_NHWC. */
/* A pointwise case over vectors or matrices (every used operand the same 1-D or 2-D shape, n
 * elements) as one over images [1, f, n/f, 1], f the smallest factor of n above 1, so that NHWC
 * moves its elements (a prime n, or 1, stays as it is): the rule is the same over either order. */
static int64_t numel_of(const conf_operand *o);
static void as_images(conf_case *c)
{
    int64_t n = -1, d0 = -1;
    for (int j = 0; j < c->op.nt; j++) {
        const conf_operand *o = &c->o[j];
        if (o->role == R_ABSENT) continue;
        if (o->ndim > 2 || (d0 >= 0 && (o->dim[0] != d0 || numel_of(o) != n))) return;
        d0 = o->dim[0];
        n = numel_of(o);
    }
    int64_t f = 2;
    while (f * f <= n && n % f) f++;
    if (n < 4 || f * f > n) return;
    for (int j = 0; j < c->op.nt; j++) {
        if (c->o[j].role == R_ABSENT) continue;
        c->o[j].ndim = 4;
        c->o[j].dim[0] = 1, c->o[j].dim[1] = f, c->o[j].dim[2] = n / f, c->o[j].dim[3] = 1;
    }
}

static void nhwc_variants(conf_table *t, int first, int last)
{
    const pt_op_desc *d = pt_op_describe(last > first ? t->c[first].op.kind : PT_OP_KIND_COUNT);
    if (!d) return;
    int nkind = 0;
    for (int i = first; i < last && !t->oom; i++) {
        for (int only_first = 0; only_first < 2; only_first++) {
            conf_case c = t->c[i];
            if (c.steps != 1 || c.step_record || (only_first && nkind >= 2)) continue;
            if ((d->flags & PT_OPF_POINTWISE) || c.op.kind == PT_OP_AXPY) as_images(&c);
            int n = 0;
            for (int j = 0; j < c.op.nt; j++)
                if (d->arg[j].img && c.o[j].role != R_ABSENT && c.o[j].ndim == 4 && (!only_first || n == 0)) {
                    c.o[j].nhwc = 1;
                    n++;
                }
            if (!n) break;
            /* an operand in place over another is that memory: both NHWC, both images */
            int ok = 1, changed = 1;
            while (changed) {
                changed = 0;
                for (int j = 0; j < c.op.nt; j++) {
                    const int a = c.o[j].alias;
                    if (a < 0 || c.o[a].nhwc == c.o[j].nhwc) continue;
                    ok = ok && d->arg[j].img && d->arg[a].img && c.o[j].ndim == 4 && c.o[a].ndim == 4;
                    c.o[j].nhwc = c.o[a].nhwc = 1;
                    changed = 1;
                }
            }
            if (!ok) continue;
            nkind += only_first;
            char rest[sizeof c.name];
            const char *sp = strchr(c.name, ' ');
            snprintf(rest, sizeof rest, "%s", sp ? sp + 1 : "");
            push(t, &c, "%s layout=nhwc%s", rest, only_first ? " first" : "");
        }
    }
}

/* The cases of a kind with per-step parameters again, the device under test reading them
 * from a step record as a captured graph does: the same results, bit for bit where the case
 * asks for it. */
static void step_record_variants(conf_table *t, int first)
{
    const int last = t->n;
    for (int i = first; i < last && !t->oom; i++) {
        conf_case c = t->c[i];
        c.step_record = 1;
        char rest[sizeof c.name];
        const char *sp = strchr(c.name, ' ');
        snprintf(rest, sizeof rest, "%s", sp ? sp + 1 : "");
        push(t, &c, "%s step=record", rest);
    }
}

/* The kinds that may carry a fused ReLU (PT_OPF_FUSED_RELU): their cases again with fuse_relu
 * set, then once more with a NaN in the first input, so that outputs straddle zero (the
 * cases' inputs are centred, BN's outputs are by construction) and the ReLU must keep NaN
 * (as relu_fwd). Run only on devices that support the fused form (the others fold nothing). */
static void fuse_variants(conf_table *t, int first)
{
    const int last = t->n;
    for (int nan = 0; nan < 2; nan++)
        for (int i = first; i < last && !t->oom; i++) {
            conf_case c = t->c[i];
            c.op.fuse_relu = 1;
            if (nan) {
                c.o[0].gen = G_NAN;
                /* the written operands may hold NaN where the reference does */
                for (int j = 0; j < c.op.nt; j++)
                    if (c.o[j].check == C_NORM) c.o[j].check = C_NORM_NF;
            }
            char rest[sizeof c.name];
            const char *sp = strchr(c.name, ' ');
            snprintf(rest, sizeof rest, "%s", sp ? sp + 1 : "");
            push(t, &c, "%s relu%s", rest, nan ? " nan" : "");
        }
}

/* The device-side decisions of a whole step on the kinds that take part in them: every gated
 * kind skipped by the record (two of its cases), AXPY and AMP_UNSCALE by record but not
 * skipped, and AMP_UNSCALE's loss-scale and clipping modes (clipping applied and not). */
static void whole_step_variants(conf_table *t, pt_op_kind kind, int first)
{
    pt_op probe;
    memset(&probe, 0, sizeof probe);
    probe.kind = kind;
    if (!pt_op_step_gated(&probe)) return;
    const int last = t->n;
    int picked = 0;
    for (int i = first; i < last && picked < 2 && !t->oom; i++) {
        conf_case c = t->c[i];
        /* a skipped op leaves its outputs as they were: only where they hold a value before
         * (AXPY accumulating; the optimizers' and the unscale's are updated in place) */
        if (kind == PT_OP_AXPY && !c.op.accumulate) continue;
        picked++;
        c.step_record = 1;
        c.gate = 1;
        char rest[sizeof c.name];
        const char *sp = strchr(c.name, ' ');
        snprintf(rest, sizeof rest, "%s", sp ? sp + 1 : "");
        push(t, &c, "%s step=record skip", rest);
        if (pt_op_has_step_params(kind)) continue;
        c.gate = 0;
        push(t, &c, "%s step=record", rest);
    }
    if (kind != PT_OP_AMP_UNSCALE) return;
    for (int i = first; i < last && !t->oom; i++) {
        conf_case c = t->c[i];
        c.step_record = 1;
        char rest[sizeof c.name];
        const char *sp = strchr(c.name, ' ');
        snprintf(rest, sizeof rest, "%s", sp ? sp + 1 : "");
        c.amp_mode = PT_AMP_LOSS;
        push(t, &c, "%s mode=loss", rest);
        if (c.o[0].gen != G_UNIFORM) continue;
        c.amp_mode = PT_AMP_CLIP;
        c.op.p.amp.inv_scale = 1.0f; /* the norm bound */
        c.sumsq = 1.0e6f;            /* norm 1000: scaled by about 1e-3 */
        push(t, &c, "%s mode=clip applied", rest);
        c.sumsq = 0.25f; /* norm 0.5: left as it is */
        push(t, &c, "%s mode=clip not applied", rest);
    }
}

static pt_status build_table(conf_table *t, pt_error *err)
{
    memset(t, 0, sizeof *t);
    for (int k = 0; k < PT_OP_KIND_COUNT; k++) {
        const pt_op_desc *d = pt_op_describe((pt_op_kind)k);
        const unsigned r = d ? (unsigned)d->cases.recipe : 0u;
        const int first = t->n;
        if (r < sizeof recipes / sizeof recipes[0] && recipes[r]) recipes[r](t, (pt_op_kind)k);
        const int recipe_end = t->n;
        if (d && (d->flags & PT_OPF_MATH)) math_variants(t, first);
        if (pt_op_has_step_params((pt_op_kind)k)) step_record_variants(t, first);
        const int fuse_first = t->n;
        if (d && (d->flags & PT_OPF_FUSED_RELU)) fuse_variants(t, first);
        /* fuse_variants' first half: the ReLU without a NaN */
        const int fuse_end = fuse_first + (t->n - fuse_first) / 2;
        whole_step_variants(t, (pt_op_kind)k, first);
        act16_variants(t, first, recipe_end); /* of the recipe's own cases */
        act16_variants(t, fuse_first, fuse_end); /* a fused ReLU over 16-bit operands */
        nhwc_variants(t, first, t->n);
    }
    if (t->oom) {
        free(t->c);
        memset(t, 0, sizeof *t);
        return pt_fail(err, PT_ERR_NOMEM, "conformance: out of host memory for the case table");
    }
    return PT_OK;
}

int pt_conformance_case_count(void)
{
    conf_table t;
    if (build_table(&t, NULL) != PT_OK) return 0;
    free(t.c);
    return t.n;
}

const char *pt_conformance_case_name(int i, char *buf, size_t cap)
{
    conf_table t;
    if (cap) buf[0] = '\0';
    if (build_table(&t, NULL) != PT_OK) return buf;
    if (i >= 0 && i < t.n && cap) snprintf(buf, cap, "%s", t.c[i].name);
    free(t.c);
    return buf;
}

pt_op_kind pt_conformance_case_kind(int i)
{
    conf_table t;
    pt_op_kind k = PT_OP_KIND_COUNT;
    if (build_table(&t, NULL) != PT_OK) return k;
    if (i >= 0 && i < t.n) k = t.c[i].op.kind;
    free(t.c);
    return k;
}

/* ---- inputs ---- */

static int64_t numel_of(const conf_operand *o)
{
    int64_t n = 1;
    for (int k = 0; k < o->ndim; k++) n *= o->dim[k];
    return n;
}

static uint32_t bits(uint64_t seed, int index, int operand, int step, int64_t e)
{
    return pt_rng_u32(seed, CONF_RNG_PURPOSE, (uint64_t)index, ((uint64_t)operand << 32) | (uint32_t)step,
                      (uint32_t)e);
}

static float unit(uint32_t u) { return (float)(u >> 8) * (1.0f / 16777216.0f); }

/* BN statistics of x = operand 0 per channel (float64, then rounded as a forward pass would). */
static void bn_stats(const conf_case *c, const float *x, int want_invstd, float *out)
{
    const conf_operand *xo = &c->o[0];
    int64_t n = xo->dim[0], ch = xo->dim[1], hw = xo->dim[2] * xo->dim[3];
    for (int64_t k = 0; k < ch; k++) {
        double s = 0, s2 = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < hw; j++) s += x[(i * ch + k) * hw + j];
        double mean = s / (double)(n * hw);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < hw; j++) {
                double d = x[(i * ch + k) * hw + j] - mean;
                s2 += d * d;
            }
        double var = s2 / (double)(n * hw);
        out[k] = want_invstd ? (float)(1.0 / sqrt(var + 1e-5)) : (float)mean;
    }
}

/* Fills operand i's host values for this step. data[] holds the operands generated so far. */
static void generate(const conf_case *c, int index, uint64_t seed, int i, int step, void *const *data)
{
    const conf_operand *o = &c->o[i];
    int64_t n = numel_of(o);
    float *f = data[i];
    int32_t *d = data[i];
    if (o->role == R_OUT) {
        for (int64_t e = 0; e < n; e++) {
            if (o->dtype == PT_I32) d[e] = INT32_MIN;
            else f[e] = NAN;
        }
        return;
    }
    switch (o->gen) {
    case G_UNIFORM:
        for (int64_t e = 0; e < n; e++) f[e] = o->lo + (o->hi - o->lo) * unit(bits(seed, index, i, step, e));
        break;
    case G_POS_INF:
    case G_NAN:
    case G_NEG_INF:
        for (int64_t e = 0; e < n; e++) f[e] = o->lo + (o->hi - o->lo) * unit(bits(seed, index, i, step, e));
        if (o->gen == G_POS_INF) f[n / 2] = INFINITY;
        else if (o->gen == G_NAN) f[n - 1] = NAN;
        else f[0] = -INFINITY;
        break;
    case G_CONST:
        for (int64_t e = 0; e < n; e++) f[e] = o->lo;
        break;
    case G_TIES: /* five values: many equal maxima inside a window */
        for (int64_t e = 0; e < n; e++)
            f[e] = (float)((int)(((uint64_t)bits(seed, index, i, step, e) * 5) >> 32) - 2);
        break;
    case G_LABELS:
        for (int64_t e = 0; e < n; e++)
            d[e] = (int32_t)(((uint64_t)bits(seed, index, i, step, e) * (uint64_t)o->hi) >> 32);
        break;
    case G_RELU_OUT:
        for (int64_t e = 0; e < n; e++) f[e] = fmaxf(0.0f, 2.0f * unit(bits(seed, index, i, step, e)) - 1.0f);
        break;
    case G_MASK:
        for (int64_t e = 0; e < n; e++)
            f[e] = unit(bits(seed, index, i, step, e)) >= o->hi ? 1.0f / (1.0f - o->hi) : 0.0f;
        break;
    case G_ARGMAX: {
        /* A random cell inside each output's window (never a padded one): what a forward
         * pass could have produced, including windows that overlap. */
        const conf_operand *x = &c->o[2];
        int64_t h = x->dim[2], w = x->dim[3], p = o->dim[2], q = o->dim[3];
        int k = c->op.p.pool.k, st = c->op.p.pool.stride, pad = c->op.p.pool.pad;
        for (int64_t e = 0; e < n; e++) {
            int64_t pi = (e / q) % p, qi = e % q;
            int64_t h0 = pi * st - pad, w0 = qi * st - pad;
            int64_t h1 = h0 + k < h ? h0 + k : h, w1 = w0 + k < w ? w0 + k : w;
            if (h0 < 0) h0 = 0;
            if (w0 < 0) w0 = 0;
            uint32_t u = bits(seed, index, i, step, e);
            int64_t hh = h0 + (int64_t)(((uint64_t)(u & 0xffff) * (uint64_t)(h1 - h0)) >> 16);
            int64_t ww = w0 + (int64_t)(((uint64_t)(u >> 16) * (uint64_t)(w1 - w0)) >> 16);
            d[e] = (int32_t)(hh * w + ww);
        }
        break;
    }
    case G_BN_MEAN:
    case G_BN_INVSTD:
        bn_stats(c, data[0], o->gen == G_BN_INVSTD, f);
        break;
    case G_BN_MEAN_INVSTD: {
        int64_t ch = c->o[0].dim[1];
        bn_stats(c, data[0], 0, f);
        bn_stats(c, data[0], 1, f + ch);
        break;
    }
    case G_BN_SUMS:
    case G_BN_BSUMS: {
        const conf_operand *xo = &c->o[0];
        int64_t nn = xo->dim[0], ch = xo->dim[1], hw = xo->dim[2] * xo->dim[3];
        const float *x = data[0], *dy = data[1], *shift = data[4], *mean = data[3];
        for (int64_t k = 0; k < ch; k++) {
            double s1 = 0, s2 = 0;
            for (int64_t a = 0; a < nn; a++)
                for (int64_t j = 0; j < hw; j++) {
                    int64_t e = (a * ch + k) * hw + j;
                    if (o->gen == G_BN_SUMS) {
                        double dv = (double)x[e] - shift[k];
                        s1 += dv;
                        s2 += dv * dv;
                    } else {
                        s1 += dy[e];
                        s2 += (double)dy[e] * ((double)x[e] - mean[k]);
                    }
                }
            f[k] = (float)s1;
            f[ch + k] = (float)s2;
        }
        break;
    }
    }
}

/* ---- running one case ---- */

typedef struct conf_side {
    pt_device *dev;
    pt_buffer *buf[PT_OP_MAX_OPERANDS];
    pt_buffer *ws;
    pt_op op;
    unsigned char *img[PT_OP_MAX_OPERANDS]; /* buffers read back after the run */
} conf_side;

typedef struct conf_layout {
    int present[PT_OP_MAX_OPERANDS]; /* has memory of its own (not absent, not an alias) */
    size_t off[PT_OP_MAX_OPERANDS], bytes[PT_OP_MAX_OPERANDS], total[PT_OP_MAX_OPERANDS];
} conf_layout;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void set_step(pt_op *op, const conf_case *c, int step)
{
    if (op->kind == PT_OP_SGD) op->p.sgd.first_step = c->first_step && step == 0;
    if (op->kind == PT_OP_ADAM) op->p.adam.step = c->adam_step0 + step;
}

/* "[n,c,h,w]" of flat element e of o. */
static void format_index(const conf_operand *o, int64_t e, char *buf, size_t cap)
{
    int64_t idx[PT_MAX_DIMS];
    for (int k = o->ndim - 1; k >= 0; k--) {
        idx[k] = o->dim[k] ? e % o->dim[k] : 0;
        e = o->dim[k] ? e / o->dim[k] : 0;
    }
    size_t len = 0;
    buf[0] = '\0';
    for (int k = 0; k < o->ndim && len < cap; k++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", k ? "," : "[", (long long)idx[k]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

typedef struct conf_outcome {
    double error, bound, ratio;
    char output[48];
    char detail[512];
} conf_outcome;

/* Records a failure that is not a numeric comparison (an error, a guard, NaN in the reference). */
static void outcome_fail(conf_outcome *r, const char *output, const char *fmt, ...) PT_PRINTF(3, 4);
static void outcome_fail(conf_outcome *r, const char *output, const char *fmt, ...)
{
    if (isinf(r->ratio) && r->detail[0]) return; /* keep the first hard failure */
    r->error = INFINITY, r->ratio = INFINITY, r->bound = 0;
    snprintf(r->output, sizeof r->output, "%s", output);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->detail, sizeof r->detail, fmt, ap);
    va_end(ap);
}

/* Compares operand j (its memory: region) of dut against ref; keeps the worst in r. */
static void compare(const conf_case *c, int j, const unsigned char *dut, const unsigned char *ref,
                    const unsigned char *init, conf_outcome *r)
{
    const conf_operand *o = &c->o[j];
    int64_t n = numel_of(o);
    char oname[48], where[64];
    snprintf(oname, sizeof oname, "t%d %s", j, o->name);
    if (o->check == C_EXACT) {
        int64_t bad = 0, first = -1;
        for (int64_t e = 0; e < n; e++)
            if (memcmp(dut + 4 * e, ref + 4 * e, 4) != 0) {
                if (first < 0) first = e;
                bad++;
            }
        if (!bad) {
            if (r->ratio <= 0 && !r->output[0]) snprintf(r->output, sizeof r->output, "%s", oname);
            return;
        }
        format_index(o, first, where, sizeof where);
        char a[32], b[32];
        if (o->dtype == PT_I32) {
            int32_t x, y;
            memcpy(&x, dut + 4 * first, 4), memcpy(&y, ref + 4 * first, 4);
            snprintf(a, sizeof a, "%d", (int)x), snprintf(b, sizeof b, "%d", (int)y);
        } else {
            float x, y;
            memcpy(&x, dut + 4 * first, 4), memcpy(&y, ref + 4 * first, 4);
            snprintf(a, sizeof a, "%.9g", (double)x), snprintf(b, sizeof b, "%.9g", (double)y);
        }
        double err = (double)bad / (double)n;
        if (!isinf(r->ratio) || !r->detail[0]) {
            r->error = err, r->bound = 0, r->ratio = INFINITY;
            snprintf(r->output, sizeof r->output, "%s", oname);
            snprintf(r->detail, sizeof r->detail,
                     "%s must be bitwise equal: %lld of %lld elements differ, first at %s: %s (reference %s)",
                     oname, (long long)bad, (long long)n, where, a, b);
        }
        return;
    }
    const float *a = (const float *)dut, *b = (const float *)ref, *i0 = (const float *)init;
    double num = 0, den = 0, worst = -1;
    int64_t worst_e = 0, nonfinite = 0, first_nf = -1;
    for (int64_t e = 0; e < n; e++) {
        if (!isfinite(b[e]) && o->check == C_NORM_NF) {
            if ((isnan(b[e]) && isnan(a[e])) || (isinf(b[e]) && a[e] == b[e])) continue;
            format_index(o, e, where, sizeof where);
            outcome_fail(r, oname, "%s: %g at %s where the reference has %g", oname, (double)a[e], where,
                         (double)b[e]);
            return;
        }
        if (!isfinite(b[e])) {
            format_index(o, e, where, sizeof where);
            outcome_fail(r, oname, "%s: the reference device produced %g at %s (a reference or suite bug)", oname,
                         (double)b[e], where);
            return;
        }
        if (!isfinite(a[e])) {
            if (first_nf < 0) first_nf = e;
            nonfinite++;
            continue;
        }
        double x = a[e], y = b[e];
        if (o->check == C_DELTA) x -= i0[e], y -= i0[e];
        double d = fabs(x - y);
        num += d * d, den += y * y;
        if (d > worst) worst = d, worst_e = e;
    }
    if (nonfinite) {
        format_index(o, first_nf, where, sizeof where);
        outcome_fail(r, oname, "%s: %lld of %lld elements are NaN/Inf, first at %s: %g (reference %.7g)", oname,
                     (long long)nonfinite, (long long)n, where, (double)a[first_nf], (double)b[first_nf]);
        return;
    }
    double scale = sqrt(den) > o->floor * sqrt((double)n) ? sqrt(den) : o->floor * sqrt((double)n);
    double err = sqrt(num) / (scale > 0 ? scale : 1.0);
    double ratio = err / o->bound;
    int elem_worse = 0;
    if (o->elem_bound > 0 && worst >= 0) {
        double refmax = o->floor;
        for (int64_t e = 0; e < n; e++)
            if (fabs(b[e]) > refmax) refmax = fabs(b[e]);
        const double eratio = worst / (o->elem_bound * refmax);
        if (eratio > ratio) ratio = eratio, err = worst / refmax, elem_worse = 1;
    }
    if (ratio > r->ratio || !r->output[0]) {
        r->error = err, r->bound = elem_worse ? o->elem_bound : o->bound, r->ratio = ratio;
        snprintf(r->output, sizeof r->output, "%s", oname);
        if (ratio > 1) {
            format_index(o, worst_e, where, sizeof where);
            if (elem_worse)
                snprintf(r->detail, sizeof r->detail,
                         "%s: element error %.3g of the output's largest magnitude > %.2g at %s: %.7g (reference "
                         "%.7g)",
                         oname, err, o->elem_bound, where, (double)a[worst_e], (double)b[worst_e]);
            else
                snprintf(r->detail, sizeof r->detail,
                         "%s%s: normalised error %.3g > %.1g; largest difference at %s: %.7g (reference %.7g)", oname,
                         o->check == C_DELTA ? " update" : "", err, o->bound, where, (double)a[worst_e],
                         (double)b[worst_e]);
        }
    }
}

/* Guard bytes of one buffer image: what a backend must never touch. */
static void check_guards(const conf_case *c, int i, const conf_layout *L, const unsigned char *img,
                         const char *who, conf_outcome *r)
{
    size_t before = 0, after = 0, first_after = 0;
    for (size_t b = 0; b < L->off[i]; b++) before += img[b] != SENTINEL;
    for (size_t b = L->off[i] + L->bytes[i]; b < L->total[i]; b++)
        if (img[b] != SENTINEL) {
            if (!after) first_after = b - (L->off[i] + L->bytes[i]);
            after++;
        }
    if (before || after) {
        char oname[48];
        snprintf(oname, sizeof oname, "t%d %s", i, c->o[i].name);
        outcome_fail(r, oname,
                     "%s wrote outside %s: %zu of the %zu bytes before it, %zu of the %d bytes after it "
                     "changed (first at end+%zu)",
                     who, oname, before, L->off[i], after, GUARD_BYTES, first_after);
    }
}

static void free_side(conf_side *s)
{
    for (int i = 0; i < PT_OP_MAX_OPERANDS; i++) {
        if (s->buf[i]) pt_device_free(s->dev, s->buf[i]);
        free(s->img[i]);
        s->buf[i] = NULL, s->img[i] = NULL;
    }
    if (s->ws) pt_device_free(s->dev, s->ws);
    s->ws = NULL;
}

/* Buffers, operands and workspace of one side; contents written from the host images. */
static pt_status setup_side(conf_side *s, const conf_case *c, const conf_layout *L, unsigned char *const *image,
                            int dut, pt_error *err)
{
    s->op = c->op;
    /* every memory first: an operand may be in place over a later one (y over a BN's z) */
    for (int i = 0; i < c->op.nt; i++) {
        if (c->o[i].role == R_ABSENT || !L->present[i]) continue;
        PT_TRY(pt_device_alloc(s->dev, L->total[i], &s->buf[i], err));
        PT_TRY(pt_device_write(s->dev, (pt_mem){s->buf[i], 0}, image[i], L->total[i], err));
    }
    for (int i = 0; i < c->op.nt; i++) {
        const conf_operand *o = &c->o[i];
        if (o->role == R_ABSENT) {
            memset(&s->op.t[i], 0, sizeof s->op.t[i]);
            continue;
        }
        int r = o->alias >= 0 ? o->alias : i;
        s->op.t[i] = pt_tensor_make(s->buf[r], L->off[r], dut && o->store ? o->store : o->dtype, o->ndim, o->dim);
        if (dut && o->nhwc) s->op.t[i].layout = PT_LAYOUT_NHWC;
    }
    size_t ws = s->dev->be->workspace_size(s->dev->ctx, &s->op);
    if (ws) {
        PT_TRY(pt_device_alloc(s->dev, ws, &s->ws, err));
        float *nan = malloc(ws);
        if (!nan) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
        for (size_t k = 0; k < ws / sizeof(float); k++) nan[k] = NAN;
        memset((unsigned char *)nan + ws / sizeof(float) * sizeof(float), SENTINEL, ws % sizeof(float));
        pt_status st = pt_device_write(s->dev, (pt_mem){s->ws, 0}, nan, ws, err);
        free(nan);
        PT_TRY(st);
    }
    s->op.workspace = (pt_mem){s->ws, 0};
    s->op.workspace_bytes = ws;
    return PT_OK;
}

static pt_status read_side(conf_side *s, const conf_case *c, const conf_layout *L, pt_error *err)
{
    PT_TRY(pt_device_sync(s->dev, err));
    for (int i = 0; i < c->op.nt; i++) {
        if (!L->present[i]) continue;
        s->img[i] = malloc(L->total[i]);
        if (!s->img[i]) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
        PT_TRY(pt_device_read(s->dev, s->img[i], (pt_mem){s->buf[i], 0}, L->total[i], err));
    }
    return PT_OK;
}

/* The n-element image at p ([N,C,H,W] as o's dims, elements of es bytes) moved between NCHW
 * and NHWC: to_nhwc 1 from NCHW, 0 back. 0, or -1 without host memory. */
static int transpose_image(const conf_operand *o, unsigned char *p, size_t es, int to_nhwc)
{
    const int64_t N = o->dim[0], C = o->dim[1], hw = o->dim[2] * o->dim[3], n = N * C * hw;
    unsigned char *tmp = malloc((size_t)(n ? n : 1) * es);
    if (!tmp) return -1;
    memcpy(tmp, p, (size_t)n * es);
    for (int64_t b = 0; b < N; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t q = 0; q < hw; q++) {
                const int64_t i = (b * C + c) * hw + q, j = (b * hw + q) * C + c;
                memcpy(p + (size_t)(to_nhwc ? j : i) * es, tmp + (size_t)(to_nhwc ? i : j) * es, es);
            }
    free(tmp);
    return 0;
}

/* Runs case c on both sides. Returns an error only for host memory; everything that goes
 * wrong on a device is a failed outcome. */
static pt_status run_case(pt_device *ref, pt_device *dut, const conf_case *c0, int index, uint64_t seed,
                          conf_outcome *r, double *dut_ms)
{
    conf_case cc = *c0;
    const conf_case *c = &cc;
    if (cc.op.kind == PT_OP_DROPOUT_FWD) cc.op.p.dropout.seed = seed ^ ((uint64_t)index << 40);
    memset(r, 0, sizeof *r);
    *dut_ms = 0;
    conf_layout L, LD; /* the reference's, and the device under test's (16-bit operands) */
    memset(&L, 0, sizeof L);
    unsigned char *image[PT_OP_MAX_OPERANDS] = {0}, *image_dut[PT_OP_MAX_OPERANDS] = {0};
    float *decoded = NULL;
    void *data[PT_OP_MAX_OPERANDS] = {0};
    conf_side sides[2];
    memset(sides, 0, sizeof sides);
    sides[0].dev = ref, sides[1].dev = dut;
    pt_buffer *rec = NULL; /* the step record of a step=record case, on the device under test */
    pt_status st = PT_OK;
    pt_error e;
    pt_error_clear(&e);

    for (int i = 0; i < c->op.nt; i++) {
        const conf_operand *o = &c->o[i];
        if (o->role == R_ABSENT || o->alias >= 0) continue;
        L.present[i] = 1;
        L.off[i] = 64 * (size_t)(i + 1);
        L.bytes[i] = (size_t)numel_of(o) * pt_dtype_size(o->dtype);
        L.total[i] = L.off[i] + L.bytes[i] + GUARD_BYTES;
        image[i] = malloc(L.total[i]);
        if (!image[i]) {
            st = PT_ERR_NOMEM;
            goto done;
        }
        memset(image[i], SENTINEL, L.total[i]);
        data[i] = image[i] + L.off[i];
        generate(c, index, seed, i, 0, data);
    }
    LD = L;
    for (int i = 0; i < c->op.nt; i++) {
        const conf_operand *o = &c->o[i];
        image_dut[i] = image[i];
        if (!L.present[i] || !o->store) continue;
        /* the values either side sees: rounded to the storage format (NaN stays NaN) */
        const int64_t n = numel_of(o);
        float *f = data[i];
        LD.bytes[i] = (size_t)n * 2;
        LD.total[i] = LD.off[i] + LD.bytes[i] + GUARD_BYTES;
        image_dut[i] = malloc(LD.total[i]);
        if (!image_dut[i]) {
            st = PT_ERR_NOMEM;
            goto done;
        }
        memset(image_dut[i], SENTINEL, LD.total[i]);
        uint16_t *h = (uint16_t *)(void *)(image_dut[i] + LD.off[i]);
        for (int64_t e = 0; e < n; e++) {
            h[e] = o->store == PT_BF16 ? pt_bf16_from_f32(f[e]) : pt_f16_from_f32(f[e]);
            f[e] = o->store == PT_BF16 ? pt_f32_from_bf16(h[e]) : pt_f32_from_f16(h[e]);
        }
    }
    for (int i = 0; i < c->op.nt; i++) {
        const conf_operand *o = &c->o[i];
        if (!L.present[i] || !o->nhwc) continue;
        /* the device under test's own image, its elements channels last */
        if (image_dut[i] == image[i]) {
            image_dut[i] = malloc(LD.total[i]);
            if (!image_dut[i]) {
                st = PT_ERR_NOMEM;
                goto done;
            }
            memcpy(image_dut[i], image[i], LD.total[i]);
        }
        if (transpose_image(o, image_dut[i] + LD.off[i], o->store ? 2 : pt_dtype_size(o->dtype), 1) != 0) {
            st = PT_ERR_NOMEM;
            goto done;
        }
    }
    /* The initial values (C_DELTA compares against them) stay in image[]. The reference
     * computes in float32 whatever the case's math mode (its workspace is sized for that). */
    conf_case ref_case = cc;
    ref_case.op.math = PT_PREC_FP32;
    for (int s = 0; s < 2; s++)
        if (setup_side(&sides[s], s ? c : &ref_case, s ? &LD : &L, s ? image_dut : image, s, &e) != PT_OK) {
            outcome_fail(r, "setup", "%s device: %s", s ? "device under test" : "reference", e.msg);
            goto done;
        }
    if (!ref->be->supports(ref->ctx, &sides[0].op)) {
        outcome_fail(r, "supports", "the reference device does not support this op");
        goto done;
    }
    if (!dut->be->supports(dut->ctx, &sides[1].op)) {
        outcome_fail(r, "supports", "not supported by backend '%s'", dut->be->name);
        goto done;
    }
    if (c->step_record && pt_device_alloc(dut, sizeof(pt_step_scalars), &rec, &e) != PT_OK) {
        outcome_fail(r, "setup", "device under test: step record: %s", e.msg);
        goto done;
    }
    unsigned char *fresh = NULL;
    for (int step = 0; step < c->steps; step++) {
        if (step > 0) { /* optimizer cases: new gradients each step, the same on both sides */
            for (int i = 0; i < c->op.nt; i++) {
                if (!L.present[i] || c->o[i].role != R_IN) continue;
                free(fresh);
                fresh = malloc(L.bytes[i] ? L.bytes[i] : 1);
                if (!fresh) {
                    st = PT_ERR_NOMEM;
                    goto done;
                }
                void *tmp[PT_OP_MAX_OPERANDS];
                memcpy(tmp, data, sizeof tmp);
                tmp[i] = fresh;
                generate(c, index, seed, i, step, tmp);
                for (int s = 0; s < 2; s++)
                    if (pt_device_write(sides[s].dev, (pt_mem){sides[s].buf[i], L.off[i]}, fresh, L.bytes[i], &e) !=
                        PT_OK) {
                        outcome_fail(r, "write", "%s device: %s", s ? "device under test" : "reference", e.msg);
                        free(fresh);
                        goto done;
                    }
            }
        }
        set_step(&sides[0].op, c, step);
        set_step(&sides[1].op, c, step);
        /* the reference runs by value what the record decides on the device under test */
        pt_op ref_op = sides[0].op;
        int ref_runs = !c->gate;
        if (c->amp_mode == PT_AMP_CLIP) {
            const float coef = pt_clip_coef(ref_op.p.amp.inv_scale, c->sumsq);
            ref_runs = ref_runs && pt_clip_applies(coef);
            ref_op.p.amp.inv_scale = coef;
        }
        if (ref_runs && (pt_device_run(ref, &ref_op, &e) != PT_OK || pt_device_sync(ref, &e) != PT_OK)) {
            outcome_fail(r, "run", "the reference device failed: %s", e.msg);
            free(fresh);
            goto done;
        }
        pt_op by_record = sides[1].op;
        if (rec) {
            pt_step_scalars s;
            memset(&s, 0, sizeof s);
            if (c->amp_mode) by_record.p.amp.mode = c->amp_mode;
            pt_step_scalars_from_op(&s, &by_record);
            pt_op_clear_step_params(&by_record);
            s.skip = c->gate ? 0x3f800000u : 0u; /* 1.0f, as the unscale kernels write it */
            s.sumsq = c->sumsq;
            by_record.step = (pt_mem){rec, 0};
            if (pt_device_write(dut, by_record.step, &s, sizeof s, &e) != PT_OK) {
                outcome_fail(r, "write", "device under test: step record: %s", e.msg);
                free(fresh);
                goto done;
            }
        }
        double t0 = now_ms();
        if (pt_device_run(dut, &by_record, &e) != PT_OK || pt_device_sync(dut, &e) != PT_OK) {
            outcome_fail(r, "run", "%s", e.msg);
            free(fresh);
            goto done;
        }
        *dut_ms += now_ms() - t0;
    }
    free(fresh);
    for (int s = 0; s < 2; s++)
        if (read_side(&sides[s], c, s ? &LD : &L, &e) != PT_OK) {
            outcome_fail(r, "read", "%s device: %s", s ? "device under test" : "reference", e.msg);
            goto done;
        }
    for (int i = 0; i < c->op.nt; i++) {
        if (!L.present[i]) continue;
        check_guards(c, i, &LD, sides[1].img[i], "the device under test", r);
        check_guards(c, i, &L, sides[0].img[i], "the reference device", r);
    }
    if (isinf(r->ratio)) goto done;
    for (int j = 0; j < c->op.nt; j++) {
        const conf_operand *o = &c->o[j];
        if (o->role == R_ABSENT || o->check == C_NONE) continue;
        int reg = o->alias >= 0 ? o->alias : j;
        const unsigned char *dut_data = sides[1].img[reg] + LD.off[reg];
        if (c->o[reg].nhwc && !c->o[reg].transposed) { /* back to NCHW, once per memory */
            if (transpose_image(&c->o[reg], sides[1].img[reg] + LD.off[reg],
                                c->o[reg].store ? 2 : pt_dtype_size(c->o[reg].dtype), 0) != 0) {
                st = PT_ERR_NOMEM;
                goto done;
            }
            cc.o[reg].transposed = 1;
        }
        if (c->o[reg].store) { /* widened exactly for the comparison */
            const int64_t n = numel_of(o);
            free(decoded);
            decoded = malloc((size_t)(n ? n : 1) * sizeof *decoded);
            if (!decoded) {
                st = PT_ERR_NOMEM;
                goto done;
            }
            const uint16_t *h = (const uint16_t *)(const void *)dut_data;
            for (int64_t k = 0; k < n; k++)
                decoded[k] = c->o[reg].store == PT_BF16 ? pt_f32_from_bf16(h[k]) : pt_f32_from_f16(h[k]);
            dut_data = (const unsigned char *)decoded;
        }
        compare(c, j, dut_data, sides[0].img[reg] + L.off[reg], image[reg] + L.off[reg], r);
    }
done:
    free(decoded);
    for (int i = 0; i < PT_OP_MAX_OPERANDS; i++)
        if (image_dut[i] != image[i]) free(image_dut[i]);
    if (rec) pt_device_free(dut, rec);
    free_side(&sides[0]);
    free_side(&sides[1]);
    for (int i = 0; i < PT_OP_MAX_OPERANDS; i++) free(image[i]);
    return st;
}

/* Whether dut declares the fused ReLU (PT_CAP_FUSED_RELU): supports() of an add carrying it. */
static int dut_fuses_relu(pt_device *dut)
{
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = PT_OP_ADD;
    op.nt = 3;
    op.fuse_relu = 1;
    for (int i = 0; i < 3; i++) op.t[i].dtype = PT_F32, op.t[i].ndim = 1, op.t[i].dim[0] = 1;
    return dut->be->supports(dut->ctx, &op);
}

/* Whether dut declares 16-bit activations in dt (PT_CAP_ACT16): supports() of a ReLU on them. */
static int dut_stores(pt_device *dut, pt_dtype dt)
{
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = PT_OP_RELU_FWD;
    op.nt = 2;
    for (int i = 0; i < 2; i++) op.t[i].dtype = dt, op.t[i].ndim = 1, op.t[i].dim[0] = 1;
    return dut->be->supports(dut->ctx, &op);
}

/* Whether dut declares NHWC images (PT_CAP_NHWC): supports() of a ReLU on a 4-D NHWC tensor. */
static int dut_nhwc(pt_device *dut)
{
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = PT_OP_RELU_FWD;
    op.nt = 2;
    for (int i = 0; i < 2; i++) {
        op.t[i].dtype = PT_F32, op.t[i].ndim = 4, op.t[i].layout = PT_LAYOUT_NHWC;
        for (int k = 0; k < 4; k++) op.t[i].dim[k] = 1;
    }
    return dut->be->supports(dut->ctx, &op);
}

static int case_nhwc(const conf_case *c)
{
    for (int j = 0; j < c->op.nt; j++)
        if (c->o[j].nhwc) return 1;
    return 0;
}

/* The 16-bit storage of case c's operands, if any (PT_F32 when none). */
static pt_dtype case_store(const conf_case *c)
{
    for (int j = 0; j < c->op.nt; j++)
        if (c->o[j].store) return c->o[j].store;
    return PT_F32;
}

pt_status pt_conformance_run(pt_device *ref, pt_device *dut, uint64_t seed, const char *filter,
                             pt_conformance_report cb, void *user, pt_conformance_summary *out, pt_error *err)
{
    if (out) memset(out, 0, sizeof *out);
    if (!ref || !dut)
        return pt_fail(err, PT_ERR_INVALID, "conformance: a reference device and a device under test are required");
    conf_table t;
    PT_TRY(build_table(&t, err));
    pt_conformance_summary sum;
    memset(&sum, 0, sizeof sum);
    pt_status st = PT_OK;
    /* Math modes the device under test claims; the cases of the others are not run. */
    int claims[PT_PREC_COUNT];
    for (int p = 0; p < PT_PREC_COUNT; p++) claims[p] = pt_device_precision(dut, (pt_precision)p, NULL, 0, NULL) == PT_OK;
    const int fuses = dut_fuses_relu(dut);
    const int stores_bf16 = dut_stores(dut, PT_BF16), stores_f16 = dut_stores(dut, PT_F16), nhwc = dut_nhwc(dut);
    for (int i = 0; i < t.n; i++) {
        if (filter && filter[0] && !strstr(t.c[i].name, filter)) continue;
        const pt_dtype store = case_store(&t.c[i]);
        if (!claims[t.c[i].op.math] || (t.c[i].op.fuse_relu && !fuses) || (store == PT_BF16 && !stores_bf16) ||
            (store == PT_F16 && !stores_f16) || (case_nhwc(&t.c[i]) && !nhwc)) {
            sum.unclaimed++;
            continue;
        }
        conf_outcome r;
        double ms = 0;
        if (run_case(ref, dut, &t.c[i], i, seed, &r, &ms) != PT_OK) {
            st = pt_fail(err, PT_ERR_NOMEM, "conformance: out of host memory in case '%s'", t.c[i].name);
            break;
        }
        int pass = r.ratio <= 1.0 && !isinf(r.ratio) && !isnan(r.ratio);
        sum.cases++;
        if (pass) sum.passed++;
        else sum.failed++;
        sum.dut_ms += ms;
        if (r.ratio > sum.worst_ratio || (isnan(r.ratio) && !isnan(sum.worst_ratio)) || sum.cases == 1) {
            sum.worst_ratio = r.ratio;
            snprintf(sum.worst_case, sizeof sum.worst_case, "%s", t.c[i].name);
        }
        if (cb) {
            pt_conformance_result res;
            memset(&res, 0, sizeof res);
            res.index = i;
            res.name = t.c[i].name;
            res.kind = t.c[i].op.kind;
            res.pass = pass;
            res.error = r.error;
            res.bound = r.bound;
            res.ratio = r.ratio;
            res.output = r.output;
            res.dut_ms = ms;
            res.detail = pass ? "" : r.detail;
            cb(&res, user);
        }
    }
    free(t.c);
    if (out) *out = sum;
    return st;
}
