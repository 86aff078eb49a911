/* polytrain bench: training-step and inference throughput of a model on a device, on
 * random data, with an optional per-op-kind time breakdown, and (--sgemm N) the device's
 * own GEMM op on an NxNxN product, the peak the step's GFLOP/s is compared with. Timings are
 * medians over repeated steps after warm-up steps (which absorb kernel builds and library
 * warm-ups). Peak memory is the process's VmHWM, as bench/cpu_vs_torch.py reads it for
 * PyTorch too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/json.h"
#include "polytrain/metrics.h"
#include "polytrain/replica.h"
#include "core/rng.h"
#include "polytrain/models.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/common.h"
#include "tools/group_timing.h"
#include "tools/session.h"

/* ,"key":"value" with the value escaped: device names and details come from drivers. */
static void json_str(pt_strbuf *sb, const char *key, const char *value)
{
    pt_strbuf_printf(sb, ",\"%s\":", key);
    pt_strbuf_json_string(sb, value);
}

static void json_print(pt_strbuf *sb)
{
    fputs(sb->data, stdout);
    cli_json_wrote();
    pt_strbuf_free(sb);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct { pt_op_kind kind; double s; int64_t n; double flop; } op_row;

/* FLOPs of one training step by op kind (the op table's count of every op of the forward,
 * backward and update lists); returns the total. */
static double step_flops(const pt_replica *rep, double *per_kind)
{
    double total = 0;
    for (int k = 0; k < PT_OP_KIND_COUNT; k++) per_kind[k] = 0;
    const pt_replica_list lists[] = {PT_LIST_FORWARD, PT_LIST_BACKWARD, PT_LIST_OTHER};
    for (int l = 0; l < 3; l++) {
        int n = 0;
        const pt_op *ops = pt_replica_ops(rep, lists[l], &n);
        for (int i = 0; i < n; i++) {
            const double f = pt_op_flops(&ops[i]);
            per_kind[ops[i].kind] += f;
            total += f;
        }
    }
    return total;
}

/* High-water resident set of this process (bytes), 0 where /proc is missing. */
static long long vm_hwm_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lld kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024;
}

/* --sgemm N: C = A*B with N x N operands through the device's GEMM op (on the cpu backend
 * the OpenBLAS kernel it selected), best and median of `steps` runs after `warmup`. */
static int bench_sgemm(const char *backend, const char *devices, int threads, int n, int steps, int warmup,
                       int json, pt_precision prec)
{
    pt_error err;
    pt_error_clear(&err);
    pt_device *devs[CLI_MAX_DEVICES];
    int ndev = 0, code = 1;
    pt_buffer *buf[3] = {NULL, NULL, NULL};
    size_t bytes = (size_t)n * (size_t)n * sizeof(float);
    float *host = malloc(bytes);
    double *t = calloc((size_t)steps, sizeof *t);
    if (!host || !t) {
        pt_fail(&err, PT_ERR_NOMEM, "out of host memory");
        goto fail;
    }
    if (cli_open_devices(backend, devices, threads, 0, devs, &ndev, &err) != PT_OK) goto fail;
    for (size_t i = 0; i < (size_t)n * (size_t)n; i++) host[i] = pt_rng_normal(1, PT_RNG_SPLIT, 11, i, 0);
    for (int i = 0; i < 3; i++) {
        if (pt_device_alloc(devs[0], bytes, &buf[i], &err) != PT_OK) goto fail;
        if (pt_device_write(devs[0], (pt_mem){buf[i], 0}, host, bytes, &err) != PT_OK) goto fail;
    }
    pt_op op;
    memset(&op, 0, sizeof op);
    op.kind = PT_OP_GEMM;
    op.nt = 3;
    for (int i = 0; i < 3; i++) op.t[i] = pt_tensor_2d(buf[i], 0, n, n);
    op.p.gemm.alpha = 1.0f;
    op.p.gemm.beta = 0.0f;
    op.math = prec;
    if (pt_device_precision(devs[0], prec, NULL, 0, &err) != PT_OK) goto fail;
    for (int s = 0; s < warmup + steps; s++) {
        double t0 = now_s();
        if (pt_device_run(devs[0], &op, &err) != PT_OK || pt_device_sync(devs[0], &err) != PT_OK) goto fail;
        if (s >= warmup) t[s - warmup] = now_s() - t0;
    }
    double flop = 2.0 * n * (double)n * n, best = t[0];
    for (int s = 1; s < steps; s++)
        if (t[s] < best) best = t[s];
    double med = median(t, steps);
    if (json) {
        pt_strbuf sb;
        pt_strbuf_init(&sb);
        pt_strbuf_printf(&sb, "{\"sgemm_n\":%d", n);
        json_str(&sb, "backend", devs[0]->be->name);
        json_str(&sb, "device", devs[0]->info.name);
        json_str(&sb, "details", devs[0]->info.details);
        pt_strbuf_printf(&sb, ",\"threads\":%d", devs[0]->info.threads);
        json_str(&sb, "precision", pt_precision_name(prec));
        pt_strbuf_printf(&sb, ",\"sgemm_best_gflop_per_s\":%.2f,\"sgemm_median_gflop_per_s\":%.2f,\"runs\":%d}\n",
                         flop / best / 1e9, flop / med / 1e9, steps);
        if (pt_strbuf_check(&sb, &err) != PT_OK) {
            pt_strbuf_free(&sb);
            goto fail;
        }
        json_print(&sb);
    } else
        printf("bench: GEMM %dx%dx%d in %s on %s (%s): best %.1f GFLOP/s, median %.1f GFLOP/s over %d runs\n  %s\n",
               n, n, n, pt_precision_name(prec), devs[0]->info.name, devs[0]->be->name, flop / best / 1e9,
               flop / med / 1e9, steps, devs[0]->info.details);
    code = 0;
    goto out;
fail:
    cli_error("bench --sgemm: %s", err.msg);
    code = err.status == PT_ERR_INVALID ? 2 : 1;
out:
    for (int i = 0; i < 3; i++)
        if (buf[i]) pt_device_free(devs[0], buf[i]);
    cli_close_devices(devs, ndev);
    free(host);
    free(t);
    return code;
}

static int cmp_row(const void *a, const void *b)
{
    double x = ((const op_row *)a)->s, y = ((const op_row *)b)->s;
    return x > y ? -1 : x < y;
}

int cmd_bench(int argc, char **argv)
{
    /* bench --loader: the data pipeline instead of a model (tools/cmd_bench_loader.c). */
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--loader") == 0) return cmd_bench_loader(argc, argv);
    const char *model = "baseline", *backend = "auto", *devices = "0,", *input = "3x64x64";
    const char *optimizer = "nesterov", *precision = "fp32", *graphs_opt = "auto", *pinned_opt = "auto", *fuse = NULL, *act_opt = "auto";
    const char *layout_opt = "auto", *fit_opt = "on";
    pt_act_storage act_storage = PT_ACT_STORAGE_AUTO;
    pt_image_layout layout = PT_IMAGES_AUTO;
    int fuse_on = 1, fit_ws = 1;
    int batch = 64, classes = 200, steps = 10, warmup = 2, threads = 0, per_op = 0, json = 0, sgemm = 0, strong = 0;
    const arg_spec specs[] = {
        {"model", ARG_STRING, &model, "NAME", "model from the zoo (default baseline)", 0, 0, NULL},
        {"input", ARG_STRING, &input, "CxHxW", "input shape (default 3x64x64, TinyImageNet)", 0, 0, NULL},
        {"classes", ARG_INT, &classes, "K", "classes (default 200)", 1, 100000, NULL},
        {"batch", ARG_INT, &batch, "N",
         "samples per step on each device (default 64); with --strong the global batch split over the devices", 1,
         65536, NULL},
        {"optimizer", ARG_STRING, &optimizer, "NAME", "sgd, momentum, nesterov, adam, adamw or rmsprop (default nesterov)", 0, 0, NULL},
        {"steps", ARG_INT, &steps, "N", "timed steps (default 10)", 1, 100000, NULL},
        {"warmup", ARG_INT, &warmup, "N", "untimed steps first (default 2)", 0, 100000, NULL},
        {"backend", ARG_STRING, &backend, "NAME", "auto or a backend name", 0, 0, NULL},
        {"devices", ARG_STRING, &devices, "LIST",
         "devices as for train: a count N or indices like 0, or 0,1 (default 0,); several are timed as one "
         "data-parallel group",
         0, 0, NULL},
        {"strong", ARG_FLAG, &strong, NULL, "with several devices: a fixed global batch (--batch) split over them "
         "(strong scaling) instead of --batch on each (weak scaling)", 0, 0, NULL},
        {"threads", ARG_INT, &threads, "N", "cpu worker threads (default: all cores)", 0, 4096, NULL},
        {"precision", ARG_STRING, &precision, "P", "fp32, tf32, bf16 or fp16: the precision of convolutions and matrix products (default fp32)", 0, 0, NULL},
        {"cuda-graphs", ARG_STRING, &graphs_opt, "MODE", "auto, on or off: replay each part of the step as one CUDA graph once its ops are fixed (default auto: where the device captures)", 0, 0, NULL},
        {"pinned-input", ARG_STRING, &pinned_opt, "MODE", "auto, on or off: batches from page-locked memory on a copy stream of their own (default auto)", 0, 0, NULL},
        {"fuse", ARG_STRING, &fuse, "on|off", CLI_FUSE_HELP, 0, 0, NULL},
        {"act-storage", ARG_STRING, &act_opt, "auto|16bit|fp32", CLI_ACT_STORAGE_HELP, 0, 0, NULL},
        {"layout", ARG_STRING, &layout_opt, "auto|nchw|nhwc", CLI_LAYOUT_HELP, 0, 0, NULL},
        {"fit-workspace", ARG_STRING, &fit_opt, "on|off", CLI_FIT_WORKSPACE_HELP, 0, 0, NULL},
        {"per-op", ARG_FLAG, &per_op, NULL, "time per op kind (synchronises after every op)", 0, 0, NULL},
        {"json", ARG_FLAG, &json, NULL, "one JSON object", 0, 0, NULL},
        {"sgemm", ARG_INT, &sgemm, "N", "instead of a model: the device's GEMM op on N x N matrices (peak FLOP/s)", 0,
         16384, NULL},
        {NULL, 0, NULL, NULL, NULL, 0, 0, NULL},
    };
    const arg_command cmd = {"bench", "Measure training-step and inference throughput of a model on random data.",
                             "[options]", specs, NULL, NULL};
    int rc = args_parse(&cmd, argc, argv, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : 2;
    pt_precision prec;
    if (!pt_precision_parse(precision, &prec)) {
        cli_error("bench: --precision must be fp32, tf32, bf16 or fp16, got '%s'", precision);
        return 2;
    }
    pt_switch graphs, pinned;
    if (!pt_switch_parse(graphs_opt, &graphs)) {
        cli_error("bench: --cuda-graphs must be auto, on or off, got '%s'", graphs_opt);
        return 2;
    }
    if (!pt_switch_parse(pinned_opt, &pinned)) {
        cli_error("bench: --pinned-input must be auto, on or off, got '%s'", pinned_opt);
        return 2;
    }
    if (cli_fuse_parse("bench", &fuse, &fuse_on)) return 2;
    if (cli_act_storage_parse("bench", act_opt, &act_storage)) return 2;
    if (cli_layout_parse("bench", layout_opt, &layout)) return 2;
    if (cli_fit_workspace_parse("bench", fit_opt, &fit_ws)) return 2;
    if (sgemm > 0) return bench_sgemm(backend, devices, threads, sgemm, steps, warmup, json, prec);
    int C, H, W;
    char tail;
    if (sscanf(input, "%dx%dx%d%c", &C, &H, &W, &tail) != 3 || C < 1 || C > 3 || H < 1 || W < 1 || H > 4096 ||
        W > 4096) {
        cli_error("bench: --input expects CxHxW with C in 1..3, got '%s'", input);
        return 2;
    }
    const pt_optim_recipe *orec = pt_optim_recipe_find(optimizer);
    if (!orec) {
        cli_error("bench: --optimizer must be sgd, momentum, nesterov, adam, adamw or rmsprop, got '%s'", optimizer);
        return 2;
    }
    pt_error err;
    pt_error_clear(&err);
    pt_net *net = NULL;
    pt_device *devs[CLI_MAX_DEVICES];
    int ndev = 0, code = 1;
    pt_replica *rep = NULL;
    float *x = NULL, *logits = NULL, *loss = NULL;
    int32_t *y = NULL;
    double *train_t = calloc((size_t)steps, sizeof(double)), *eval_t = calloc((size_t)steps, sizeof(double));
    if (pt_model_build(model, C, H, W, classes, &net, &err) != PT_OK) {
        cli_error("bench: %s", err.msg);
        free(train_t);
        free(eval_t);
        return 2;
    }
    if (cli_open_devices(backend, devices, threads, 0, devs, &ndev, &err) != PT_OK) goto fail;
    pt_optim_config oc = pt_optim_defaults(orec->kind);
    if (orec->kind == PT_OPTIM_SGD || orec->kind == PT_OPTIM_RMSPROP) {
        oc.momentum = orec->momentum;
        oc.nesterov = orec->nesterov;
    }
    char how[160] = "";
    if (pt_device_precision(devs[0], prec, how, sizeof how, &err) != PT_OK) {
        pt_error_wrap(&err, "--precision %s", precision);
        goto fail;
    }
    if (ndev > 1) {
        if (per_op) {
            pt_fail(&err, PT_ERR_INVALID, "--per-op times one device: use --devices with one device");
            goto fail;
        }
        /* the whole group: every device's forward, backward, the gradient reduction, the update */
        cli_group_timing_options go = {.net = net, .C = C, .H = H, .W = W, .classes = classes, .optim = oc,
                                       .precision = prec, .graphs = graphs, .pinned_input = pinned, .batch = batch, .strong = strong, .steps = steps,
                                       .warmup = warmup, .no_fuse_relu = !fuse_on, .fit_workspace = fit_ws,
                                       .act_storage = act_storage, .layout = layout};
        cli_group_timing gt;
        if (strong && batch < ndev) {
            pt_fail(&err, PT_ERR_INVALID, "--strong --batch %d: fewer samples than the %d devices", batch, ndev);
            goto fail;
        }
        if (cli_time_group(devs, ndev, &go, &gt, &err) != PT_OK) goto fail;
        const char *mode = strong ? "strong scaling: a global batch split over the devices"
                                  : "weak scaling: the batch on each device";
        if (json) {
            pt_strbuf sb;
            pt_strbuf_init(&sb);
            pt_strbuf_puts(&sb, "{\"model\":");
            pt_strbuf_json_string(&sb, model);
            json_str(&sb, "input", input);
            pt_strbuf_printf(&sb, ",\"classes\":%d", classes);
            json_str(&sb, "backend", devs[0]->be->name);
            json_str(&sb, "device", devs[0]->info.name);
            json_str(&sb, "details", devs[0]->info.details);
            pt_strbuf_printf(&sb, ",\"devices\":%d,\"scaling\":\"%s\",\"global_batch\":%d,\"per_device\":[", ndev,
                             strong ? "strong" : "weak", gt.global_batch);
            for (int d = 0; d < ndev; d++) pt_strbuf_printf(&sb, "%s%d", d ? "," : "", gt.per_device[d]);
            pt_strbuf_printf(&sb, "],\"train_step_ms\":%.3f,\"best_step_ms\":%.3f,\"train_img_per_s\":%.2f",
                             1e3 * gt.step_s, 1e3 * gt.best_s, gt.img_per_s);
            json_str(&sb, "reduction", gt.reduction);
            pt_strbuf_printf(&sb, ",\"buckets\":%d", gt.buckets);
            json_str(&sb, "precision", precision);
            json_str(&sb, "cuda_graphs", pt_switch_name(graphs));
            json_str(&sb, "pinned_input", pt_switch_name(pinned));
            json_str(&sb, "fuse", gt.fuse_relu ? "on" : "off");
            json_str(&sb, "act_storage", pt_act_storage_name(act_storage));
            json_str(&sb, "layout", pt_image_layout_name(layout));
            json_str(&sb, "fit_workspace", fit_ws ? "on" : "off");
            pt_strbuf_printf(&sb, ",\"workspace_bytes\":%lld,\"workspace_bytes_created\":%lld,\"device_mem_bytes\":%lld",
                             (long long)gt.ws_after, (long long)gt.ws_before, (long long)gt.device_bytes);
            json_str(&sb, "activations", gt.act_line);
            pt_strbuf_puts(&sb, ",\"timed\":\"the whole group: every device's forward and backward, the gradient "
                                "reduction and the update, per step\"}\n");
            if (pt_strbuf_check(&sb, &err) != PT_OK) {
                pt_strbuf_free(&sb);
                goto fail;
            }
            json_print(&sb);
        } else {
            printf("bench: %s, input %s, %d classes, %s on %d x %s (%s)\n", model, input, classes, optimizer, ndev,
                   devs[0]->info.name, devs[0]->be->name);
            printf("  timed: the whole group of %d devices per step (forward and backward on every device, the "
                   "gradient reduction through %s in %d bucket%s, the update); %s\n",
                   ndev, gt.reduction, gt.buckets, gt.buckets == 1 ? "" : "s", mode);
            printf("  batch: ");
            for (int d = 0; d < ndev; d++) printf("%s%d", d ? " + " : "", gt.per_device[d]);
            printf(" = global %d\n", gt.global_batch);
            printf("  precision %s: %s\n", precision, how);
            printf("  fused BN+ReLU, BN+add+ReLU, add+ReLU: %s\n", gt.fuse_relu ? "on" : "off");
            printf("  activations: %s\n", gt.act_line);
            printf("  device memory of device 0: %.1f MiB, workspace %.1f MiB", gt.device_bytes / 1048576.0,
                   gt.ws_after / 1048576.0);
            if (gt.ws_after != gt.ws_before)
                printf(" (%.1f MiB before it was fitted to the chosen algorithms)", gt.ws_before / 1048576.0);
            else if (!fit_ws)
                printf(" (kept at its first size: --fit-workspace off)");
            printf("\n");
            printf("  train step: median %.1f ms (best %.1f) over %d steps = %.1f img/s\n", 1e3 * gt.step_s,
                   1e3 * gt.best_s, steps, gt.img_per_s);
            if (!strcmp(devs[0]->be->name, "cpu"))
                printf("  (cpu devices are shares of the same cores: more of them divide the cores, they do not add "
                       "any)\n");
        }
        code = 0;
        goto out;
    }
    pt_replica_options ro = {
        .precision = prec, .graphs = graphs, .pinned_input = pinned, .no_fuse_relu = !fuse_on, .act_storage = act_storage,
        .layout = layout};
    if (pt_replica_create_ex(net, devs[0], batch, &oc, 1, &ro, &rep, &err) != PT_OK) goto fail;
    if (pt_replica_init_params(rep, 1, &err) != PT_OK) goto fail;
    size_t xs = (size_t)batch * C * H * W;
    x = malloc(xs * sizeof(float));
    logits = malloc((size_t)batch * classes * sizeof(float));
    loss = malloc((size_t)batch * sizeof(float));
    y = malloc((size_t)batch * sizeof(int32_t));
    if (!x || !logits || !loss || !y || !train_t || !eval_t) {
        pt_fail(&err, PT_ERR_NOMEM, "out of host memory");
        goto fail;
    }
    for (size_t i = 0; i < xs; i++) x[i] = pt_rng_normal(1, PT_RNG_SPLIT, 9, i, 0);
    for (int i = 0; i < batch; i++) y[i] = (int32_t)pt_rng_below(1, PT_RNG_SPLIT, 10, (uint64_t)i, 0, (uint32_t)classes);

    double t_setup = now_s();
    for (int s = 0; s < warmup; s++) {
        if (pt_replica_forward_backward(rep, x, y, batch, 0, s, 1.0f / batch, logits, loss, &err) != PT_OK ||
            pt_replica_update(rep, 1e-3f, s + 1, &err) != PT_OK || pt_replica_eval(rep, x, y, batch, logits, loss, &err) != PT_OK)
            goto fail;
    }
    /* the workspace for what the device chose in the warm-up (cuDNN measures its candidates on
     * first use): the memory and speed of the steps below are the steady state's */
    size_t ws_created = pt_replica_workspace_bytes(rep), ws_fitted = ws_created;
    const size_t dev_created = pt_replica_device_bytes(rep);
    if (fit_ws && pt_replica_fit_workspace(rep, &ws_created, &ws_fitted, &err) != PT_OK) goto fail;
    double warm_s = now_s() - t_setup;
    pt_op_profile prof;
    memset(&prof, 0, sizeof prof);
    if (per_op) pt_replica_set_profile(rep, &prof);
    for (int s = 0; s < steps; s++) {
        double t0 = now_s();
        if (pt_replica_forward_backward(rep, x, y, batch, 0, warmup + s, 1.0f / batch, logits, loss, &err) != PT_OK ||
            pt_replica_update(rep, 1e-3f, warmup + s + 1, &err) != PT_OK)
            goto fail;
        train_t[s] = now_s() - t0;
    }
    pt_replica_set_profile(rep, NULL);
    for (int s = 0; s < steps; s++) {
        double t0 = now_s();
        if (pt_replica_eval(rep, x, y, batch, logits, loss, &err) != PT_OK) goto fail;
        eval_t[s] = now_s() - t0;
    }
    double step = median(train_t, steps), inf = median(eval_t, steps);
    char graphs_line[256], pinned_line[200];
    cli_graphs_line(rep, 0, graphs_line, sizeof graphs_line, pinned_line, sizeof pinned_line);
    double flops = pt_net_forward_flops(net);
    double gflops_train = 3.0 * flops * batch / step / 1e9;
    double kind_flops[PT_OP_KIND_COUNT];
    const double all_flops = step_flops(rep, kind_flops);
    pt_strbuf js; /* --json: the document, printed once complete */
    pt_strbuf_init(&js);
    if (json) {
        pt_strbuf_puts(&js, "{\"model\":");
        pt_strbuf_json_string(&js, model);
        json_str(&js, "input", input);
        pt_strbuf_printf(&js, ",\"classes\":%d,\"batch\":%d", classes, batch);
        json_str(&js, "backend", devs[0]->be->name);
        json_str(&js, "device", devs[0]->info.name);
        json_str(&js, "details", devs[0]->info.details);
        pt_strbuf_printf(&js,
                         ",\"parameters\":%lld,\"forward_gflop_per_image\":%.6f,\"train_step_ms\":%.3f,"
                         "\"train_img_per_s\":%.2f,\"train_gflop_per_s\":%.2f,\"step_gflop\":%.4f,"
                         "\"step_gflop_per_s\":%.2f,\"eval_batch_ms\":%.3f,\"eval_img_per_s\":%.2f,\"warmup_s\":%.3f,"
                         "\"threads\":%d,\"peak_mem_bytes\":%lld,\"peak_mem_source\":\"VmHWM of the process (host)\","
                         "\"device_mem_bytes\":%lld,\"device_mem_bytes_created\":%lld,\"workspace_bytes\":%lld,"
                         "\"workspace_bytes_created\":%lld",
                         (long long)net->param_count, flops / 1e9, 1e3 * step, batch / step, gflops_train,
                         all_flops / 1e9, all_flops / step / 1e9, 1e3 * inf, batch / inf, warm_s, devs[0]->info.threads,
                         vm_hwm_bytes(), (long long)pt_replica_device_bytes(rep), (long long)dev_created,
                         (long long)ws_fitted, (long long)ws_created);
        json_str(&js, "precision", precision);
        json_str(&js, "precision_how", how);
        json_str(&js, "cuda_graphs", graphs_line);
        json_str(&js, "pinned_input", pinned_line);
        json_str(&js, "fuse", pt_replica_fuse_relu(rep) ? "on" : "off");
        json_str(&js, "fit_workspace", fit_ws ? "on" : "off");
        cli_act_storage_json(rep, &js);
        pt_strbuf_puts(&js, per_op ? ",\"per_op\":{" : "}\n");
    } else {
        printf("bench: %s, input %s, %d classes, batch %d, %s on %s (%s)\n", model, input, classes, batch, optimizer,
               devs[0]->info.name, devs[0]->be->name);
        printf("  %s\n", devs[0]->info.details);
        printf("  precision %s: %s\n", precision, how);
        printf("  CUDA graphs: %s\n  pinned input: %s\n", graphs_line, pinned_line);
        printf("  fused BN+ReLU, BN+add+ReLU, add+ReLU: %s\n", pt_replica_fuse_relu(rep) ? "on" : "off");
        char act_line[160];
        cli_act_storage_line(rep, act_line, sizeof act_line);
        printf("  activations: %s\n", act_line);
        printf("  parameters %.3f M, forward %.3f GFLOP per image (conv + linear)\n", net->param_count / 1e6, flops / 1e9);
        printf("  warm-up %d steps: %.2f s (includes kernel builds and library warm-up)\n", warmup, warm_s);
        printf("  train step: median %.1f ms over %d steps = %.1f img/s, %.1f GFLOP/s (3 x forward)\n", 1e3 * step,
               steps, batch / step, gflops_train);
        printf("  every op of the step: %.3f GFLOP = %.1f GFLOP/s (the op table's counts)\n", all_flops / 1e9,
               all_flops / step / 1e9);
        printf("  eval batch: median %.1f ms = %.1f img/s\n", 1e3 * inf, batch / inf);
        printf("  peak memory (VmHWM): %.1f MiB\n", vm_hwm_bytes() / 1048576.0);
        /* on a GPU VmHWM is host memory (mostly the vendor libraries): the device's own use
         * is the replica's plan, its workspace fitted after the warm-up */
        printf("  device memory: %.1f MiB (parameters, gradients, optimizer state, activations, workspace %.1f MiB)",
               pt_replica_device_bytes(rep) / 1048576.0, ws_fitted / 1048576.0);
        if (ws_fitted != ws_created)
            printf("; %.1f MiB before the workspace was fitted to the chosen algorithms", dev_created / 1048576.0);
        else if (!fit_ws)
            printf("; the workspace kept at its first size (--fit-workspace off)");
        printf("\n");
    }
    if (per_op) {
        op_row rows[PT_OP_KIND_COUNT];
        int nr = 0;
        double total = 0;
        for (int k = 0; k < PT_OP_KIND_COUNT; k++)
            if (prof.count[k]) {
                rows[nr++] = (op_row){(pt_op_kind)k, prof.seconds[k], prof.count[k], kind_flops[k]};
                total += prof.seconds[k];
            }
        qsort(rows, (size_t)nr, sizeof rows[0], cmp_row);
        if (!json) printf("  per op kind (synchronised after every op; %d steps):\n", steps);
        for (int i = 0; i < nr; i++) {
            if (json) {
                if (i) pt_strbuf_putc(&js, ',');
                pt_strbuf_json_string(&js, pt_op_name(rows[i].kind));
                pt_strbuf_printf(&js,
                                 ":{\"ms_per_step\":%.3f,\"share\":%.4f,\"calls_per_step\":%.2f,"
                                 "\"gflop_per_step\":%.4f,\"gflop_per_s\":%.2f}",
                                 1e3 * rows[i].s / steps, rows[i].s / total, (double)rows[i].n / steps,
                                 rows[i].flop / 1e9, rows[i].flop * steps / rows[i].s / 1e9);
            } else
                printf("    %-18s %8.2f ms/step %6.1f%%  %8.2f GFLOP/s  (%lld calls)\n", pt_op_name(rows[i].kind),
                       1e3 * rows[i].s / steps, 100 * rows[i].s / total, rows[i].flop * steps / rows[i].s / 1e9,
                       (long long)(rows[i].n / steps));
        }
        if (json) pt_strbuf_puts(&js, "}}\n");
    }
    if (json) {
        if (pt_strbuf_check(&js, &err) != PT_OK) {
            pt_strbuf_free(&js);
            goto fail;
        }
        json_print(&js);
    }
    pt_strbuf_free(&js);
    code = 0;
    goto out;
fail:
    cli_error("bench: %s", err.msg);
    code = err.status == PT_ERR_INVALID ? 2 : 1;
out:
    free(x);
    free(y);
    free(logits);
    free(loss);
    free(train_t);
    free(eval_t);
    pt_replica_free(rep);
    cli_close_devices(devs, ndev);
    pt_net_free(net);
    return code;
}
