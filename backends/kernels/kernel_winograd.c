/* Winograd F(2x2,3x3) for the device backends' 3x3 stride-1 convolutions (kernel_winograd.h),
 * the method of the cpu backend's cpu_winograd.c: 16 multiply-adds per 2x2 output tile and
 * channel pair instead of im2col's 36, and a transformed input of 4x the input instead of 9x.
 *
 * The data gradient is itself a 3x3 stride-1 convolution of dy, with the filter rotated by 180
 * degrees, its channel axes swapped (the GEMM reads U transposed) and padding 2 - pad; the
 * filter gradient is the adjoint of the forward computation with respect to the transformed
 * filter, summed over the tiles by the GEMMs (beta 1 after the first block) and mapped back
 * through G^T . G. Tiles run over (sample, tile row, tile column) flat in blocks as large as
 * conv_ws_cap allows, so that small maps still give wide GEMMs and one block usually holds
 * the whole batch.
 *
 * Every GEMM is C = A^T B with A stored k x m and B k x n (row-major, the leading dimension the
 * row length), the form in which the device's GEMM (pt_kdev.gemm_mult) reads its operands and
 * writes C in place: CLBlast's tiled kernel copies, pads or transposes any other operand
 * through a temporary, one more kernel and pass per operand and GEMM, 16 GEMMs per block. So
 * the transforms write their planes already padded, with zeros, to the GEMM's multiples: the
 * forward and data gradient multiply U [16][in][out] (in: the input's channels, C forward and
 * K for the data gradient) by V [16][in][tiles] into M [16][out][tiles]; the filter gradient
 * multiplies D^T [16][tiles][K] (the transformed dy) by V^T [16][tiles][C] into dU [16][K][C].
 * All of it in the op's workspace, each plane on a gemm_align boundary.
 *
 * bf16/fp16 math keeps im2col: the transforms would have to round their results to the
 * format before the GEMMs, giving the products of rounded transforms (a different rounding
 * from the im2col path's rounded x, w and dy); fp16 on OpenCL is a correctness mode run at
 * float32 speed anyway (pt_kdev.lowp_f32). */
#include "backends/kernels/kernel_winograd.h"

typedef struct wino_shape {
    int n, c, k, h, w, p, q, pad;
    int in_rows, out_rows; /* channels of the transformed input and of the GEMMs' products */
    int ih, iw, oh, ow;    /* the transformed input's extent, the output's */
    int ipad;              /* the transformed input's padding */
    int tq, tps, tiles;    /* tile columns, tiles per sample, tiles in all */
    /* The GEMMs' layout: rows of V (and of V^T's tiles) and of M (D^T's) per tile, padded to
     * the GEMM's multiples; tiles per block padded to tmult; plane alignment in floats. */
    size_t v_rows, m_rows, align;
    int tmult;
    size_t u_plane, u_floats;
} wino_shape;

/* Bound on the tile kernels' indices (their divisions are exact below it, ops_winograd.cl). */
#define PT_WINO_INDEX_LIMIT (1 << 24)

static size_t round_up(size_t n, size_t m) { return m > 1 ? (n + m - 1) / m * m : n; }
static size_t mult_of(int m) { return m > 1 ? (size_t)m : 1; }

/* 1 if op has Winograd's shape (3x3, stride 1, padding 0..2, fp32, something to compute). */
static int wino_shape_of(const pt_op *op, wino_shape *s)
{
    if (op->kind != PT_OP_CONV2D_FWD && op->kind != PT_OP_CONV2D_BWD_DATA && op->kind != PT_OP_CONV2D_BWD_FILTER)
        return 0;
    if (op->nt != 3 || op->math != PT_PREC_FP32) return 0;
    const pt_tensor *x = &op->t[0], *w = &op->t[1], *y = &op->t[2];
    if (w->dim[2] != 3 || w->dim[3] != 3 || op->p.conv.stride != 1 || op->p.conv.pad < 0 || op->p.conv.pad > 2)
        return 0;
    s->n = (int)x->dim[0];
    s->c = (int)x->dim[1];
    s->h = (int)x->dim[2];
    s->w = (int)x->dim[3];
    s->k = (int)w->dim[0];
    s->p = (int)y->dim[2];
    s->q = (int)y->dim[3];
    s->pad = op->p.conv.pad;
    if (s->n <= 0 || s->c <= 0 || s->k <= 0 || s->p <= 0 || s->q <= 0) return 0;
    const int data = op->kind == PT_OP_CONV2D_BWD_DATA;
    s->in_rows = data ? s->k : s->c;
    s->out_rows = data ? s->c : s->k;
    s->ih = data ? s->p : s->h;
    s->iw = data ? s->q : s->w;
    s->ipad = data ? 2 - s->pad : s->pad;
    s->oh = data ? s->h : s->p;
    s->ow = data ? s->w : s->q;
    s->tq = (s->ow + 1) / 2;
    const int64_t tps = (int64_t)((s->oh + 1) / 2) * s->tq, tiles = tps * s->n;
    /* the kernels index in int and divide through a float reciprocal (pt_wino_div, exact
     * below 2^24): every tile index, item index and product of the GEMMs stays below that */
    if (tiles >= PT_WINO_INDEX_LIMIT || (int64_t)s->c * s->k >= PT_WINO_INDEX_LIMIT) return 0;
    s->tps = (int)tps;
    s->tiles = (int)tiles;
    return 1;
}

/* The padded layout for dev's GEMM (GEMM m, n, k multiples mm, nm, km): forward and data
 * gradient m = out rows, n = tiles, k = in rows; filter gradient m = K, n = C, k = tiles. */
static void layout_of(const pt_kdev *dev, const pt_op *op, wino_shape *s)
{
    const size_t mm = mult_of(dev->gemm_mult[0]), nm = mult_of(dev->gemm_mult[1]), km = mult_of(dev->gemm_mult[2]);
    s->align = round_up(mult_of(dev->gemm_align), 16);
    if (op->kind == PT_OP_CONV2D_BWD_FILTER) {
        s->v_rows = round_up((size_t)s->c, nm);
        s->m_rows = round_up((size_t)s->k, mm);
        s->tmult = (int)km;
    } else {
        s->v_rows = round_up((size_t)s->in_rows, km);
        s->m_rows = round_up((size_t)s->out_rows, mm);
        s->tmult = (int)nm;
    }
    s->u_plane = round_up(s->v_rows * s->m_rows, s->align);
    s->u_floats = 16 * s->u_plane;
}

/* Floats of one block's V and M planes for tb tiles (tn: tb padded). */
static size_t block_floats(const wino_shape *s, size_t tn)
{
    return 16 * (round_up(s->v_rows * tn, s->align) + round_up(s->m_rows * tn, s->align));
}

static int wino_layout(const pt_kdev *dev, const pt_op *op, wino_shape *s)
{
    if (!wino_shape_of(op, s)) return 0;
    layout_of(dev, op, s);
    return s->v_rows * s->m_rows < PT_WINO_INDEX_LIMIT;
}

/* Tiles per block: as many as the scratch bound holds next to U (a multiple of tmult, unless
 * fewer than tmult fit, when tmult drops to 1: the GEMM then pads through its temporaries). */
static int block_of(const pt_kdev *dev, wino_shape *s)
{
    const size_t cap = dev->conv_ws_cap / sizeof(float), slack = 2 * s->align;
    const size_t per_tile = (size_t)16 * (s->v_rows + s->m_rows);
    if (cap <= s->u_floats + slack + 32 * s->align) return 0;
    size_t tb = (cap - s->u_floats - slack - 32 * s->align) / per_tile;
    if (tb >= (size_t)s->tmult)
        tb = tb / (size_t)s->tmult * (size_t)s->tmult;
    else
        s->tmult = 1;
    if (tb > (size_t)s->tiles) tb = (size_t)s->tiles;
    /* a block's planes (rows x tiles padded) are the tile kernels' item counts */
    const size_t rows = s->v_rows > s->m_rows ? s->v_rows : s->m_rows;
    const size_t most = (PT_WINO_INDEX_LIMIT - 1) / rows / (size_t)s->tmult * (size_t)s->tmult;
    if (tb > most) tb = most;
    return (int)tb;
}

/* The measured rule of PT_KWINO_AUTO (PoCL on 2 cores, CLBlast; docs/BENCHMARKS.md): Winograd
 * against im2col per op, batch 64 unless said, on a loaded machine (each ratio varied by
 * about +-30% between runs). Its GEMMs are 2.25x fewer multiply-adds, but each of the 16
 * multiplies a K x C matrix, which CLBlast pads to its tile (64 x 64 x 32 on CPUs): with few
 * channels the padding and the transforms cost more than the multiply-adds saved (C=1 -> K=64
 * on 28x28: forward 0.37x-0.64x, filter gradient 0.42x-0.52x; C=8 -> 16: 0.74x-1.5x; C=16 ->
 * 16: 1.3x-4.7x; C=64 -> 128 on 14x14: 2.2x-3.8x). The data gradient's GEMMs are C x K x
 * tiles with the transforms of dy and dx around them, and it gains least: C=16 -> K=32 on
 * 14x14 0.85x-1.06x, C=32 -> 64 on 7x7 0.85x-0.95x, C=32 -> 32 on 14x14 1.4x-1.8x, C=64 ->
 * 128 on 14x14 1.45x-2.1x. Maps under 3x3 waste most of each 2x2 tile and pay U's transform
 * for few tiles (2x2 with 256 channels, batch 16: 0.34x-0.75x; 1x1 with 512: 0.26x-0.70x;
 * 3x3 with 256 -> 512: 0.98x-1.6x). */
static int pays(const pt_op *op, const wino_shape *s)
{
    if (s->p < 3 || s->q < 3) return 0;
    if (op->kind == PT_OP_CONV2D_BWD_DATA) return s->c >= 32 && s->k >= 32;
    return s->c >= 16 && s->k >= 16;
}

int pt_kwino_block(const pt_kdev *dev, const pt_op *op)
{
    wino_shape s;
    return wino_layout(dev, op, &s) ? block_of(dev, &s) : 0;
}

int pt_kwino_use(const pt_kdev *dev, const pt_op *op)
{
    wino_shape s;
    if (!dev->sgemm_batched || dev->winograd == PT_KWINO_OFF || !wino_layout(dev, op, &s) || block_of(dev, &s) < 1)
        return 0;
    return dev->winograd == PT_KWINO_FORCE || pays(op, &s);
}

size_t pt_kwino_workspace(const pt_kdev *dev, const pt_op *op)
{
    wino_shape s;
    if (!wino_layout(dev, op, &s)) return 0;
    const int tb = block_of(dev, &s);
    if (tb < 1) return 0;
    /* align - 1: the workspace's own offset is brought to the alignment */
    return (s.align - 1 + s.u_floats + block_floats(&s, round_up((size_t)tb, (size_t)s.tmult))) * sizeof(float);
}

static pt_mem at(pt_mem m, size_t floats)
{
    m.off += floats * sizeof(float);
    return m;
}

static pt_status launch(const pt_kdev *dev, const pt_kcall *c, pt_error *err)
{
    PT_TRY(pt_kcall_check(c, dev->backend, err));
    return dev->launch(dev->ctx, c, err);
}

/* U [16][in][out] = the transformed filters (rot: rotated, for the data gradient, whose in are
 * the filter's K), zeros in the padding. */
static pt_status filter_transform(const pt_kdev *dev, const wino_shape *s, pt_mem w, pt_mem u, int rot, pt_error *err)
{
    const int n = (int)(s->v_rows * s->m_rows);
    pt_kcall c;
    pt_kcall_begin(&c, PT_K_WINO_FILTER, (size_t)n);
    pt_karg_mem(&c, w);
    pt_karg_mem(&c, u);
    pt_karg_int(&c, n);
    pt_karg_int(&c, s->k);
    pt_karg_int(&c, s->c);
    pt_karg_int(&c, rot);
    pt_karg_int(&c, (int)s->m_rows);
    pt_karg_int(&c, (int)s->u_plane);
    return launch(dev, &c, err);
}

/* The tile block's geometry, in the order the tile kernels take it after their extents. */
static void karg_tiles(pt_kcall *c, const wino_shape *s, int t0, int tb)
{
    pt_karg_int(c, s->tq);
    pt_karg_int(c, s->tps);
    pt_karg_int(c, t0);
    pt_karg_int(c, tb);
}

/* A plane of rows x tn tiles: element (row, t) at row * rs + t * ts, planes ps apart. */
typedef struct plane_geom {
    int rows, tn, rs, ts, ps;
} plane_geom;

static void karg_plane(pt_kcall *c, const plane_geom *g)
{
    pt_karg_int(c, g->tn);
    pt_karg_int(c, g->rs);
    pt_karg_int(c, g->ts);
    pt_karg_int(c, g->ps);
}

/* V (or V^T) for the block's tiles; rows/tiles past the real ones are zeros. */
static pt_status input_transform(const pt_kdev *dev, const wino_shape *s, pt_mem x, pt_mem v, int t0, int tb,
                                 const plane_geom *g, pt_error *err)
{
    const int n = g->rows * g->tn;
    pt_kcall c;
    pt_kcall_begin(&c, PT_K_WINO_INPUT, (size_t)n);
    pt_karg_mem(&c, x);
    pt_karg_mem(&c, v);
    pt_karg_int(&c, n);
    pt_karg_int(&c, s->in_rows);
    pt_karg_int(&c, s->ih);
    pt_karg_int(&c, s->iw);
    pt_karg_int(&c, s->ipad);
    karg_tiles(&c, s, t0, tb);
    karg_plane(&c, g);
    return launch(dev, &c, err);
}

static pt_status output_transform(const pt_kdev *dev, const wino_shape *s, pt_mem m, pt_mem y, int t0, int tb,
                                  int acc, const plane_geom *g, pt_error *err)
{
    const int n = s->out_rows * tb;
    pt_kcall c;
    pt_kcall_begin(&c, PT_K_WINO_OUTPUT, (size_t)n);
    pt_karg_mem(&c, m);
    pt_karg_mem(&c, y);
    pt_karg_int(&c, n);
    pt_karg_int(&c, s->out_rows);
    pt_karg_int(&c, s->oh);
    pt_karg_int(&c, s->ow);
    karg_tiles(&c, s, t0, tb);
    pt_karg_int(&c, acc);
    pt_karg_int(&c, g->rs);
    pt_karg_int(&c, g->ps);
    return launch(dev, &c, err);
}

/* D^T for the block's tiles; rows/tiles past the real ones are zeros. */
static pt_status dy_transform(const pt_kdev *dev, const wino_shape *s, pt_mem dy, pt_mem d, int t0, int tb,
                              const plane_geom *g, pt_error *err)
{
    const int n = g->rows * g->tn;
    pt_kcall c;
    pt_kcall_begin(&c, PT_K_WINO_DY, (size_t)n);
    pt_karg_mem(&c, dy);
    pt_karg_mem(&c, d);
    pt_karg_int(&c, n);
    pt_karg_int(&c, s->k);
    pt_karg_int(&c, s->p);
    pt_karg_int(&c, s->q);
    karg_tiles(&c, s, t0, tb);
    karg_plane(&c, g);
    return launch(dev, &c, err);
}

static pt_status filter_grad(const pt_kdev *dev, const wino_shape *s, pt_mem du, pt_mem dw, int acc, pt_error *err)
{
    const int n = s->k * s->c;
    pt_kcall c;
    pt_kcall_begin(&c, PT_K_WINO_FILTER_GRAD, (size_t)n);
    pt_karg_mem(&c, du);
    pt_karg_mem(&c, dw);
    pt_karg_int(&c, n);
    pt_karg_int(&c, s->k);
    pt_karg_int(&c, s->c);
    pt_karg_int(&c, acc);
    pt_karg_int(&c, (int)s->v_rows);
    pt_karg_int(&c, (int)s->u_plane);
    return launch(dev, &c, err);
}

pt_status pt_kwino_run(const pt_kdev *dev, const pt_op *op, pt_error *err)
{
    wino_shape s;
    if (!wino_layout(dev, op, &s) || !dev->sgemm_batched)
        return pt_fail(err, PT_ERR_INVALID, "%s %s: not a Winograd convolution on this device", dev->backend,
                       pt_op_name(op->kind));
    const int block = block_of(dev, &s);
    const size_t need = pt_kwino_workspace(dev, op);
    if (block < 1 || op->workspace_bytes < need)
        return pt_fail(err, PT_ERR_INVALID, "%s %s: needs a workspace of %zu bytes (ask workspace_size), got %zu",
                       dev->backend, pt_op_name(op->kind), need, op->workspace_bytes);
    const pt_mem x = op->t[0].mem, w = op->t[1].mem, y = op->t[2].mem; /* (dx, dw, dy) in backward */
    const size_t abytes = s.align * sizeof(float), skew = op->workspace.off % abytes;
    const pt_mem u = at(op->workspace, skew ? (abytes - skew) / sizeof(float) : 0);
    const size_t tn_max = round_up((size_t)block, (size_t)s.tmult);
    const pt_mem v = at(u, s.u_floats);
    const size_t v_plane_max = round_up(s.v_rows * tn_max, s.align);
    const pt_mem m = at(v, 16 * v_plane_max);
    const int acc = op->accumulate;
    const size_t VR = s.v_rows, MR = s.m_rows, UP = s.u_plane;
    if (op->kind != PT_OP_CONV2D_BWD_FILTER)
        PT_TRY(filter_transform(dev, &s, w, u, op->kind == PT_OP_CONV2D_BWD_DATA, err));
    for (int t0 = 0; t0 < s.tiles; t0 += block) {
        const int tb = s.tiles - t0 < block ? s.tiles - t0 : block;
        const size_t tn = round_up((size_t)tb, (size_t)s.tmult);
        const size_t vp = round_up(VR * tn, s.align), mp = round_up(MR * tn, s.align);
        if (op->kind != PT_OP_CONV2D_BWD_FILTER) {
            /* M[xi] (out x tiles) = U[xi]^T V[xi], U[xi] in x out; the data gradient's V is the
             * transformed dy and its U the rotated filters with the channel axes swapped */
            const plane_geom gv = {(int)VR, (int)tn, (int)tn, 1, (int)vp}, gm = {(int)MR, (int)tn, (int)tn, 1, (int)mp};
            PT_TRY(input_transform(dev, &s, op->kind == PT_OP_CONV2D_FWD ? x : y, v, t0, tb, &gv, err));
            PT_TRY(dev->sgemm_batched(dev->ctx, 1, 0, MR, tn, VR, 1.0f, u, MR, UP, v, tn, vp, 0.0f, m, tn, mp, 16, err));
            PT_TRY(output_transform(dev, &s, m, op->kind == PT_OP_CONV2D_FWD ? y : x, t0, tb, acc, &gm, err));
        } else {
            /* dU[xi] (K x C) (+)= D^T[xi]^T V^T[xi], D^T tiles x K, V^T tiles x C */
            const plane_geom gv = {(int)VR, (int)tn, 1, (int)VR, (int)vp}, gd = {(int)MR, (int)tn, 1, (int)MR, (int)mp};
            PT_TRY(input_transform(dev, &s, x, v, t0, tb, &gv, err));
            PT_TRY(dy_transform(dev, &s, y, m, t0, tb, &gd, err));
            PT_TRY(dev->sgemm_batched(dev->ctx, 1, 0, MR, VR, tn, 1.0f, m, MR, mp, v, VR, vp, t0 ? 1.0f : 0.0f, u, VR,
                                      UP, 16, err));
        }
    }
    if (op->kind == PT_OP_CONV2D_BWD_FILTER) PT_TRY(filter_grad(dev, &s, u, w, acc, err));
    return PT_OK;
}
