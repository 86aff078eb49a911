/* polytrain tune: a backend's library parameters tuned ahead of time for its devices on a
 * model's shapes (today the opencl backend's CLBlast GEMM parameters), stored in the tuning
 * cache that device open reads. Without it a device uses built-in parameters. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "polytrain/backend.h"
#include "polytrain/models.h"
#include "tools/args.h"
#include "tools/commands.h"
#if PT_HAVE_OPENCL
#include "backends/opencl/ocl_tune.h"
#endif

#define TUNE_MAX_SHAPES 256

typedef struct tune_ui {
    int tty;
    int device;
} tune_ui;

#if PT_HAVE_OPENCL
static void on_progress(void *user, int done, int total, const char *what)
{
    const tune_ui *ui = user;
    if (!ui->tty) return;
    const int width = 30, fill = total ? width * done / total : width;
    fprintf(stderr, "\r\033[Kdevice %d [%.*s%*s] %d/%d %.60s", ui->device, fill, "##############################",
            width - fill, "", done, total, what);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

/* Adds shape g to the list, merging it with an equal one (their calls add up). */
static void add_shape(pt_ocl_gemm_shape *list, int *n, pt_ocl_gemm_shape g)
{
    for (int i = 0; i < *n; i++)
        if (list[i].m == g.m && list[i].n == g.n && list[i].k == g.k && list[i].trans_a == g.trans_a &&
            list[i].trans_b == g.trans_b && list[i].tiled == g.tiled) {
            list[i].calls += g.calls;
            return;
        }
    if (*n < TUNE_MAX_SHAPES) list[(*n)++] = g;
}

/* The GEMMs of a training step of net at batch n: each convolution's three directions (no
 * input gradient for one reading the network's input), each linear layer's three. */
static int net_shapes(const pt_net *net, int n, pt_ocl_gemm_shape *list)
{
    int count = 0;
    for (int i = 0; i < net->nnodes; i++) {
        const pt_node *nd = &net->nodes[i];
        if (nd->nin < 1) continue;
        const pt_node *in = &net->nodes[nd->in[0]];
        if (nd->kind == PT_NODE_CONV2D) {
            pt_ocl_gemm_shape g[3];
            const int m = pt_opencl_conv_gemms(n, (int)in->c, (int)in->h, (int)in->w, nd->a.conv.out, nd->a.conv.k,
                                               nd->a.conv.stride, nd->a.conv.pad, in->kind == PT_NODE_INPUT, g);
            for (int j = 0; j < m; j++) add_shape(list, &count, g[j]);
        } else if (nd->kind == PT_NODE_LINEAR) {
            const size_t f = (size_t)(in->c * (in->flat ? 1 : in->h * in->w)), o = (size_t)nd->a.linear.out;
            add_shape(list, &count, (pt_ocl_gemm_shape){(size_t)n, o, f, 0, 1, 1, 0});
            add_shape(list, &count, (pt_ocl_gemm_shape){(size_t)n, f, o, 0, 0, 1, 0});
            add_shape(list, &count, (pt_ocl_gemm_shape){o, f, (size_t)n, 1, 0, 1, 0});
        }
    }
    return count;
}
#endif

/* "all" or a comma-separated list of indices below count; 0 on a malformed list. */
static int parse_devices(const char *s, int count, int *out, int *n)
{
    *n = 0;
    if (strcmp(s, "all") == 0) {
        for (int i = 0; i < count && i < 64; i++) out[(*n)++] = i;
        return *n > 0;
    }
    const char *p = s;
    while (*p) {
        char *end;
        const long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v >= count || *n >= 64 || (*end && *end != ',')) return 0;
        out[(*n)++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return *n > 0;
}

int cmd_tune(int argc, char **argv)
{
    const char *backend = "opencl", *devices = "all", *model = "baseline", *input = "3x64x64";
    int classes = 200, batch = 64, budget = 0, reps = 2, no_progress = 0;
    const arg_spec specs[] = {
        {"backend", ARG_STRING, &backend, "NAME", "the backend to tune (opencl; the others have nothing to tune)", 0, 0,
         NULL},
        {"devices", ARG_STRING, &devices, "LIST", "all (default) or device indices like 0 or 0,1", 0, 0, NULL},
        {"model", ARG_STRING, &model, "NAME", "the model whose shapes are timed (default baseline)", 0, 0, NULL},
        {"input", ARG_STRING, &input, "CxHxW", "its input shape (default 3x64x64)", 0, 0, NULL},
        {"classes", ARG_INT, &classes, "K", "its classes (default 200)", 1, 100000, NULL},
        {"batch", ARG_INT, &batch, "N", "samples per step (default 64)", 1, 16384, NULL},
        {"budget", ARG_INT, &budget, "N", "candidate parameter sets to time, at most (default 0: all)", 0, 1000, NULL},
        {"reps", ARG_INT, &reps, "N", "timed runs of each GEMM, the best counts (default 2)", 1, 100, NULL},
        {"no-progress", ARG_FLAG, &no_progress, NULL, "no progress bar", 0, 0, NULL},
        {NULL, 0, NULL, NULL, NULL, 0, 0, NULL},
    };
    const arg_command cmd = {"tune",
                             "Tune a backend's library parameters for its devices on a model's shapes, ahead of time; "
                             "the result is cached (next to the kernel cache) and used by every later run.",
                             "[options]", specs, NULL, NULL};
    int rc = args_parse(&cmd, argc, argv, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : 2;
    if (strcmp(backend, "opencl") != 0) {
        cli_error("tune: --backend must be opencl (the only backend with parameters to tune), got '%s'", backend);
        return 2;
    }
    int C, H, W;
    char tail;
    if (sscanf(input, "%dx%dx%d%c", &C, &H, &W, &tail) != 3 || C < 1 || C > 3 || H < 1 || W < 1 || H > 4096 ||
        W > 4096) {
        cli_error("tune: --input expects CxHxW with C in 1..3, got '%s'", input);
        return 2;
    }
#if !PT_HAVE_OPENCL
    (void)classes, (void)batch, (void)budget, (void)reps, (void)no_progress, (void)devices, (void)model;
    cli_error("tune: this build has no opencl backend");
    return 1;
#else
    pt_error err;
    pt_error_clear(&err);
    pt_net *net = NULL;
    if (pt_model_build(model, C, H, W, classes, &net, &err) != PT_OK) {
        cli_error("tune: %s", err.msg);
        return 2;
    }
    pt_ocl_gemm_shape *shapes = calloc(TUNE_MAX_SHAPES, sizeof *shapes);
    const int nshapes = shapes ? net_shapes(net, batch, shapes) : 0;
    pt_net_free(net);
    if (!nshapes) {
        free(shapes);
        cli_error("tune: model %s has no GEMM or convolution to tune", model);
        return 1;
    }
    const pt_backend_iface *be = NULL;
    for (int b = 0; b < pt_backend_count(); b++)
        if (strcmp(pt_backend_at(b)->name, "opencl") == 0) be = pt_backend_at(b);
    void *ctx = NULL;
    if (!be || pt_backend_context(be, &ctx, &err) != PT_OK) {
        cli_error("tune: opencl backend unavailable: %s", be ? err.msg : "not compiled in");
        free(shapes);
        return 1;
    }
    int list[64], ndev = 0;
    if (!parse_devices(devices, be->device_count(ctx), list, &ndev)) {
        cli_error("tune: --devices must be 'all' or indices below %d separated by commas, got '%s'",
                  be->device_count(ctx), devices);
        free(shapes);
        return 2;
    }
    int failures = 0;
    for (int i = 0; i < ndev; i++) {
        pt_device_info info;
        if (be->device_info(ctx, list[i], &info, &err) != PT_OK) {
            cli_error("tune: device %d: %s", list[i], err.msg);
            failures++;
            continue;
        }
        printf("opencl device %d (%s): timing %d GEMM shapes of %s at batch %d\n", list[i], cli_safe(info.name),
               nshapes, cli_safe(model), batch);
        fflush(stdout);
        tune_ui ui = {!no_progress && isatty(2), list[i]};
        const pt_ocl_tune_request req = {.shapes = shapes, .nshapes = nshapes, .budget = budget, .reps = reps,
                                         .progress = on_progress, .user = &ui};
        pt_ocl_tune_result res;
        if (pt_opencl_tune(ctx, list[i], &req, &res, &err) != PT_OK) {
            cli_error("tune: opencl device %d: %s", list[i], err.msg);
            failures++;
            continue;
        }
        printf("  GEMMs of one step: %.1f ms with the parameters in use, %.1f ms with the best of %d candidates "
               "(%.2fx)\n  chosen: %s\n",
               1e3 * res.default_s, 1e3 * res.best_s, res.tried, res.best_s > 0 ? res.default_s / res.best_s : 0.0,
               res.chosen);
        if (res.cache_path[0]) printf("  stored in %s\n", cli_safe(res.cache_path));
        else printf("  not stored: no cache directory (set PT_OPENCL_CACHE_DIR, XDG_CACHE_HOME or HOME)\n");
    }
    free(shapes);
    return failures ? 1 : 0;
#endif
}
