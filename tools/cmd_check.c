/* polytrain check: whether a multi-device (and multi-process) set-up works, as one command.
 * It lists the devices it will use and why (what --backend auto chose), runs the conformance
 * suite on each against the cpu backend, checks the device group's collectives (all-reduce and
 * broadcast against host sums: odd sizes, sizes past a gradient bucket, every device of every
 * process), trains a few steps on the whole group with the replicas compared bitwise after
 * each, and measures weak scaling (64 per device: 1 device, 2, 4, ... the group) with each
 * device's time alone, next to the expected speed-ups. Exit 0 only when every check passes;
 * a speed-up below the expected range or unbalanced devices is reported, not failed (the
 * numbers depend on the machine). Under mpirun every rank runs it and rank 0 reports. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm/mpi_world.h"
#include "core/conformance.h"
#include "core/group.h"
#include "core/json.h"
#include "polytrain/replica.h"
#include "polytrain/models.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/group_timing.h"
#include "tools/session.h"

/* The seed's expected speed-ups of data parallelism at 64 per GPU (devices: low, high). */
static const struct {
    int devices;
    double lo, hi;
} g_expected[] = {{2, 1.7, 1.9}, {4, 3.0, 3.5}, {8, 5.5, 6.5}};

typedef struct check_ctx {
    pt_strbuf js; /* the JSON report, built as the checks run */
    int json, failures, warnings;
    const pt_world *world;
} check_ctx;

static int rank0(const check_ctx *c) { return !c->world || c->world->rank == 0; }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A line of the human report (rank 0, not in --json mode). */
static void say(const check_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const check_ctx *c, const char *fmt, ...)
{
    if (c->json || !rank0(c)) return;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

/* Failures of any rank count on every rank (the exit code agrees). */
static int world_failures(const check_ctx *c, int local)
{
    if (!c->world || c->world->size < 2) return local;
    double v = local;
    pt_error e;
    if (c->world->allreduce_sum_f64(c->world->ctx, &v, 1, &e) != PT_OK) return local + 1;
    return (int)v;
}

/* ---- 2. conformance on each device ---- */

static void check_conformance(check_ctx *c, pt_device *ref, pt_device **devs, int ndev, uint64_t seed)
{
    say(c, "\nconformance against cpu (seed %llu):\n", (unsigned long long)seed);
    pt_strbuf_puts(&c->js, ",\"conformance\":[");
    for (int d = 0; d < ndev; d++) {
        pt_conformance_summary s;
        pt_error err;
        const double t0 = now_s();
        const pt_status st = pt_conformance_run(ref, devs[d], seed, NULL, NULL, NULL, &s, &err);
        const double secs = now_s() - t0;
        const int ok = st == PT_OK && s.failed == 0 && s.cases > 0;
        if (!ok) c->failures++;
        if (st != PT_OK)
            say(c, "  FAIL [%d] %s: %s\n", d, devs[d]->info.name, err.msg);
        else
            say(c, "  %s [%d] %s: %d cases, %d passed, %d failed (%d in precisions it does not claim not run), "
                   "worst error/bound %.3g, %.1f s\n",
                ok ? "ok  " : "FAIL", d, devs[d]->info.name, s.cases, s.passed, s.failed, s.unclaimed, s.worst_ratio,
                secs);
        pt_strbuf_printf(&c->js, "%s{\"device\":%d,\"ok\":%s,\"cases\":%d,\"passed\":%d,\"failed\":%d,\"unclaimed\":%d,"
                                 "\"worst_ratio\":%.6g,\"seconds\":%.3f,\"worst_case\":",
                         d ? "," : "", devs[d]->index, ok ? "true" : "false", st == PT_OK ? s.cases : 0,
                         st == PT_OK ? s.passed : 0, st == PT_OK ? s.failed : 0, st == PT_OK ? s.unclaimed : 0,
                         st == PT_OK ? s.worst_ratio : 0.0, secs);
        pt_strbuf_json_string(&c->js, st == PT_OK ? s.worst_case : err.msg);
        pt_strbuf_puts(&c->js, "}");
    }
    pt_strbuf_puts(&c->js, "]");
}

/* ---- 3. collectives ---- */

/* Integer-valued floats, so that a sum in any order is exact and every path must give the
 * same bits: device g (global index over every process) element i. */
static float value_at(int g, size_t i) { return (float)((int)((g * 131u + i * 7u) % 61u) - 30); }

static int check_collectives(check_ctx *c, pt_group *grp, pt_device **devs, int ndev)
{
    const int procs = c->world ? c->world->size : 1, rank = c->world ? c->world->rank : 0;
    const int total = ndev * procs;
    /* odd sizes, and sizes past one gradient bucket (1 MiB = 262144 floats) */
    static const size_t counts[] = {1, 3, 1000, 65537, 262147, 600001};
    const size_t ncounts = sizeof counts / sizeof counts[0], maxc = 1000001; /* floats: the broadcasts too */
    pt_buffer *buf[16] = {NULL};
    pt_mem mem[16];
    float *h = malloc(maxc * sizeof(float)), *want = malloc(maxc * sizeof(float));
    int bad = 0;
    char first[256] = "";
    pt_error err;
    pt_status st = h && want ? PT_OK : pt_fail(&err, PT_ERR_NOMEM, "out of host memory");
    for (int d = 0; d < ndev && st == PT_OK; d++) {
        st = pt_device_alloc(devs[d], maxc * sizeof(float), &buf[d], &err);
        mem[d] = (pt_mem){buf[d], 0};
    }
    say(c, "\ncollectives (%d device%s x %d process%s, %s path):\n", ndev, ndev == 1 ? "" : "s", procs,
        procs == 1 ? "" : "es", pt_group_reduction(grp));
    pt_strbuf_puts(&c->js, ",\"collectives\":{\"path\":");
    pt_strbuf_json_string(&c->js, pt_group_reduction(grp));
    pt_strbuf_puts(&c->js, ",\"allreduce\":[");
    for (size_t k = 0; k < ncounts && st == PT_OK; k++) {
        const size_t n = counts[k];
        for (int d = 0; d < ndev && st == PT_OK; d++) {
            for (size_t i = 0; i < n; i++) h[i] = value_at(rank * ndev + d, i);
            st = pt_device_write(devs[d], mem[d], h, n * sizeof(float), &err);
        }
        for (size_t i = 0; i < n; i++) {
            float s = 0;
            for (int g = 0; g < total; g++) s += value_at(g, i);
            want[i] = s;
        }
        if (st == PT_OK) st = pt_group_allreduce(grp, mem, n, &err);
        int wrong = 0;
        for (int d = 0; d < ndev && st == PT_OK; d++) {
            st = pt_device_read(devs[d], h, mem[d], n * sizeof(float), &err);
            for (size_t i = 0; st == PT_OK && i < n; i++)
                if (memcmp(&h[i], &want[i], sizeof(float)) != 0) {
                    if (!first[0])
                        snprintf(first, sizeof first, "all-reduce of %zu floats: device %d element %zu is %g, the "
                                 "sum is %g", n, d, i, h[i], want[i]);
                    wrong++;
                    break;
                }
        }
        bad += wrong > 0;
        say(c, "  %s all-reduce of %7zu floats\n", wrong ? "FAIL" : "ok  ", n);
        pt_strbuf_printf(&c->js, "%s{\"floats\":%zu,\"ok\":%s}", k ? "," : "", n, wrong ? "false" : "true");
    }
    pt_strbuf_puts(&c->js, "],\"broadcast\":[");
    static const size_t bytes_list[] = {4, 13, 4000001};
    for (size_t k = 0; k < sizeof bytes_list / sizeof bytes_list[0] && st == PT_OK; k++) {
        const size_t bytes = bytes_list[k];
        unsigned char *hb = (unsigned char *)h, *wb = (unsigned char *)want;
        for (int d = 0; d < ndev && st == PT_OK; d++) {
            for (size_t i = 0; i < bytes; i++) hb[i] = (unsigned char)((rank * ndev + d) * 37 + i * 11);
            st = pt_device_write(devs[d], mem[d], hb, bytes, &err);
        }
        for (size_t i = 0; i < bytes; i++) wb[i] = (unsigned char)(i * 11); /* rank 0, device 0 */
        if (st == PT_OK) st = pt_group_broadcast(grp, mem, bytes, &err);
        int wrong = 0;
        for (int d = 0; d < ndev && st == PT_OK; d++) {
            st = pt_device_read(devs[d], hb, mem[d], bytes, &err);
            if (st == PT_OK && memcmp(hb, wb, bytes) != 0) {
                if (!first[0]) snprintf(first, sizeof first, "broadcast of %zu bytes: device %d differs from rank 0", bytes, d);
                wrong = 1;
            }
        }
        bad += wrong;
        say(c, "  %s broadcast of %7zu bytes\n", wrong ? "FAIL" : "ok  ", bytes);
        pt_strbuf_printf(&c->js, "%s{\"bytes\":%zu,\"ok\":%s}", k ? "," : "", bytes, wrong ? "false" : "true");
    }
    pt_strbuf_puts(&c->js, "]");
    if (st != PT_OK) {
        say(c, "  FAIL: %s\n", err.msg);
        snprintf(first, sizeof first, "%.250s", err.msg);
        bad++;
    } else if (first[0]) {
        say(c, "  first difference: %s\n", first);
    }
    bad = world_failures(c, bad);
    pt_strbuf_printf(&c->js, ",\"ok\":%s}", bad ? "false" : "true");
    for (int d = 0; d < ndev; d++)
        if (buf[d]) pt_device_free(devs[d], buf[d]);
    free(h);
    free(want);
    return bad;
}

/* ---- 4 and 5: training steps compared bitwise, weak scaling ---- */

static void expected_range(int k, double *lo, double *hi)
{
    *lo = *hi = 0;
    for (size_t i = 0; i < sizeof g_expected / sizeof g_expected[0]; i++)
        if (g_expected[i].devices == k) *lo = g_expected[i].lo, *hi = g_expected[i].hi;
}

int cmd_check(int argc, char **argv)
{
    const char *backend = "auto", *devices = NULL, *model = "baseline", *input = "3x32x32";
    int json = 0, steps = 5, batch = 64, no_scaling = 0;
    int64_t seed_arg = -1;
    const arg_spec specs[] = {
        {"backend", ARG_STRING, &backend, "NAME", "auto (cuda, then opencl GPUs, else cpu) or a backend name", 0, 0, NULL},
        {"devices", ARG_STRING, &devices, "LIST",
         "devices as for train (default: every GPU of the backend; on cpu, 2 shares of the cores)", 0, 0, NULL},
        {"model", ARG_STRING, &model, "NAME", "model of the training and scaling checks (default baseline)", 0, 0, NULL},
        {"input", ARG_STRING, &input, "CxHxW", "its input (default 3x32x32)", 0, 0, NULL},
        {"batch", ARG_INT, &batch, "N", "samples per device in the training and scaling checks (default 64)", 1, 4096, NULL},
        {"steps", ARG_INT, &steps, "N", "timed steps per scaling point (default 5)", 1, 1000, NULL},
        {"no-scaling", ARG_FLAG, &no_scaling, NULL, "skip the scaling measurement", 0, 0, NULL},
        {"seed", ARG_I64, &seed_arg, "N", "seed of the conformance inputs (default: a new one, printed)", 0, 9e18, NULL},
        {"json", ARG_FLAG, &json, NULL, "one JSON object instead of the report", 0, 0, NULL},
        {NULL, 0, NULL, NULL, NULL, 0, 0, NULL},
    };
    const arg_command cmd = {"check",
                             "Check a (multi-)device set-up: devices and the choice of backend, conformance on each "
                             "device, the group's collectives, training steps with replicas compared bitwise, "
                             "and weak scaling.",
                             "[options]", specs,
                             "Exit status: 0 every check passed, 1 a check failed or a device cannot be used, 2 "
                             "usage error. A speed-up below the expected range is reported, not failed. Under "
                             "mpirun every process runs the checks and rank 0 reports.",
                             NULL};
    int rc = args_parse(&cmd, argc, argv, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : 2;
    int C, H, W;
    char tail;
    if (sscanf(input, "%dx%dx%d%c", &C, &H, &W, &tail) != 3 || C < 1 || C > 3 || H < 8 || W < 8 || H > 1024 ||
        W > 1024) {
        cli_error("check: --input expects CxHxW with C in 1..3 and sides 8..1024, got '%s'", input);
        return 2;
    }
    pt_world world = pt_world_single();
    const int mpi = pt_mpi_launched();
    if (mpi) {
        pt_error e;
        if (pt_mpi_world_init(&world, &e) != PT_OK) {
            cli_error("check: %s", e.msg);
            return 1;
        }
    }
    check_ctx c;
    memset(&c, 0, sizeof c);
    c.json = json;
    c.world = &world;
    if (json && !rank0(&c)) cli_json_wrote(); /* rank 0 alone writes stdout's JSON, error or not */
    pt_strbuf_init(&c.js);
    pt_error err;
    pt_error_clear(&err);
    pt_device *devs[CLI_MAX_DEVICES], *ref = NULL;
    int ndev = 0, code = 1, hard = 0;
    pt_net *net = NULL;
    pt_replica *reps[CLI_MAX_DEVICES] = {NULL};
    pt_group *grp = NULL;
    const int cpu_backend = strcmp(backend, "cpu") == 0;
    /* two shares of the cores on the cpu backend by default: a group to check */
    if (cli_open_devices(backend, devices ? devices : cpu_backend ? "2" : NULL, 0, 0, devs, &ndev, &err) != PT_OK)
        goto fail;
    const uint64_t seed = seed_arg >= 0 ? (uint64_t)seed_arg : (uint64_t)time(NULL) * 2654435761u;

    /* ---- 1. the devices ---- */
    char each[48] = "";
    if (world.size > 1) snprintf(each, sizeof each, " in each of %d processes", world.size);
    say(&c, "polytrain check: %d device%s of the %s backend%s\n", ndev, ndev == 1 ? "" : "s", devs[0]->be->name, each);
    if (world.size > 1) say(&c, "processes: %d (MPI); every check runs on every device of every process\n", world.size);
    if (cli_backend_choice()[0]) say(&c, "backend: %s\n", cli_backend_choice());
    pt_strbuf_puts(&c.js, "{\"backend\":");
    pt_strbuf_json_string(&c.js, devs[0]->be->name);
    pt_strbuf_printf(&c.js, ",\"processes\":%d,\"backend_choice\":", world.size);
    pt_strbuf_json_string(&c.js, cli_backend_choice());
    pt_strbuf_puts(&c.js, ",\"devices\":[");
    for (int d = 0; d < ndev; d++) {
        const pt_device_info *in = &devs[d]->info;
        say(&c, "  [%d] device %d: %s (%s, %d compute units, %.1f GiB); %s\n", d, devs[d]->index, in->name,
            in->kind == PT_DEVICE_GPU ? "GPU" : "CPU", in->compute_units, in->memory_bytes / 1073741824.0, in->details);
        pt_strbuf_printf(&c.js, "%s{\"index\":%d,\"kind\":\"%s\",\"compute_units\":%d,\"memory_bytes\":%llu,\"name\":",
                         d ? "," : "", devs[d]->index, in->kind == PT_DEVICE_GPU ? "gpu" : "cpu", in->compute_units,
                         (unsigned long long)in->memory_bytes);
        pt_strbuf_json_string(&c.js, in->name);
        pt_strbuf_puts(&c.js, "}");
    }
    pt_strbuf_puts(&c.js, "]");

    /* ---- 2. conformance ---- */
    if (pt_device_open("cpu", 0, NULL, &ref, &err) != PT_OK) goto fail;
    check_conformance(&c, ref, devs, ndev, seed);
    c.failures = world_failures(&c, c.failures);

    /* ---- 3. a group over the devices, its collectives ---- */
    if (pt_model_build(model, C, H, W, 10, &net, &err) != PT_OK) {
        cli_error("check: %s", err.msg);
        code = 2;
        goto out;
    }
    pt_optim_config oc = pt_optim_defaults(PT_OPTIM_SGD);
    oc.momentum = 0.9f;
    oc.nesterov = 1;
    for (int d = 0; d < ndev; d++)
        if (pt_replica_create(net, devs[d], batch, &oc, 1, &reps[d], &err) != PT_OK) goto fail;
    if (pt_group_create(reps, ndev, &world, 0, 1, &grp, &err) != PT_OK) goto fail;
    c.failures += check_collectives(&c, grp, devs, ndev) ? 1 : 0;
    pt_group_free(grp);
    grp = NULL;
    for (int d = 0; d < ndev; d++) {
        pt_replica_free(reps[d]);
        reps[d] = NULL;
    }

    /* ---- 4. training steps on the whole group, replicas compared after each ---- */
    cli_group_timing_options go = {.net = net, .C = C, .H = H, .W = W, .classes = 10, .optim = oc,
                                   .precision = PT_PREC_FP32, .batch = batch, .steps = 3, .warmup = 1,
                                   .world = &world, .bucket_bytes = 64 << 10, .check_identical = 1};
    cli_group_timing gt;
    pt_error terr;
    const pt_status tst = cli_time_group(devs, ndev, &go, &gt, &terr);
    const int tok = world_failures(&c, tst != PT_OK) == 0;
    if (!tok) c.failures++;
    say(&c, "\ntraining: %s, %d per device, 4 steps on the group (gradients in 64 KiB buckets), replicas compared "
            "bitwise after each: %s\n",
        model, batch, tok ? "identical" : "FAILED");
    if (tst != PT_OK) say(&c, "  %s\n", terr.msg);
    pt_strbuf_printf(&c.js, ",\"training\":{\"ok\":%s,\"steps\":4,\"buckets\":%d,\"error\":", tok ? "true" : "false",
                     tst == PT_OK ? gt.buckets : 0);
    pt_strbuf_json_string(&c.js, tst == PT_OK ? "" : terr.msg);
    pt_strbuf_puts(&c.js, "}");

    /* ---- 5. weak scaling, and each device alone ---- */
    if (!no_scaling && tok) {
        go.check_identical = 0;
        go.bucket_bytes = 0;
        go.steps = steps;
        go.warmup = 2;
        say(&c, "\nweak scaling: %s, %d samples per device, median of %d steps%s\n", model, batch, steps,
            world.size > 1 ? " (each point on that many devices in every process)" : "");
        pt_strbuf_puts(&c.js, ",\"scaling\":{\"points\":[");
        double base = 0;
        int first = 1;
        for (int k = 1; k <= ndev; k = k * 2 > ndev && k < ndev ? ndev : k * 2) {
            pt_status st = cli_time_group(devs, k, &go, &gt, &err);
            if (st != PT_OK) goto fail;
            if (k == 1) base = gt.img_per_s;
            const double sp = base > 0 ? gt.img_per_s / base : 0;
            double lo, hi;
            expected_range(k * world.size, &lo, &hi);
            char exp[96] = "";
            if (lo > 0) {
                snprintf(exp, sizeof exp, "; expected %.1f-%.1fx%s", lo, hi, sp < lo ? ": BELOW" : "");
                if (sp < lo) c.warnings++;
            }
            say(&c, "  %2d device%s x %d: %8.1f img/s, step %.1f ms, speed-up %.2fx%s\n", k * world.size,
                k * world.size == 1 ? " " : "s", batch, gt.img_per_s, 1e3 * gt.step_s, sp, exp);
            pt_strbuf_printf(&c.js, "%s{\"devices\":%d,\"img_per_s\":%.3f,\"step_ms\":%.3f,\"speedup\":%.4f", first ? "" : ",",
                             k * world.size, gt.img_per_s, 1e3 * gt.step_s, sp);
            if (lo > 0) pt_strbuf_printf(&c.js, ",\"expected\":[%.1f,%.1f]", lo, hi);
            pt_strbuf_puts(&c.js, "}");
            first = 0;
            if (k == ndev) break;
        }
        pt_strbuf_puts(&c.js, "],\"alone_ms\":[");
        /* each device alone, in this process: a slow or throttled device holds the group back */
        double mn = 0, mx = 0;
        go.world = NULL;
        for (int d = 0; d < ndev; d++) {
            if (cli_time_group(&devs[d], 1, &go, &gt, &err) != PT_OK) goto fail;
            if (d == 0 || gt.step_s < mn) mn = gt.step_s;
            if (d == 0 || gt.step_s > mx) mx = gt.step_s;
            pt_strbuf_printf(&c.js, "%s%.3f", d ? "," : "", 1e3 * gt.step_s);
            say(&c, "  device %d alone: step %.1f ms\n", d, 1e3 * gt.step_s);
        }
        const double balance = mn > 0 ? mx / mn : 0;
        const int unbalanced = ndev > 1 && balance > 1.15;
        if (unbalanced) c.warnings++;
        if (ndev > 1)
            say(&c, "  balance: slowest/fastest device %.2f%s\n", balance,
                unbalanced ? " (over 1.15: the group runs at its slowest device's pace)" : " (balanced)");
        if (strcmp(devs[0]->be->name, "cpu") == 0 && ndev > 1)
            say(&c, "  (cpu devices are shares of the same cores, %d thread%s each here: one device alone uses its "
                    "share only, so the speed-up measures the cores added; the expected ranges are for GPUs)\n",
                devs[0]->info.threads, devs[0]->info.threads == 1 ? "" : "s");
        pt_strbuf_printf(&c.js, "],\"balance\":%.4f}", balance);
    }
    code = c.failures ? 1 : 0;
    pt_strbuf_printf(&c.js, ",\"failures\":%d,\"warnings\":%d,\"ok\":%s}\n", c.failures, c.warnings,
                     c.failures ? "false" : "true");
    if (json && rank0(&c)) {
        if (pt_strbuf_check(&c.js, &err) != PT_OK) goto fail;
        fputs(c.js.data, stdout);
        cli_json_wrote();
    }
    say(&c, "\ncheck: %s (%d failure%s, %d warning%s)\n", c.failures ? "FAILED" : "all checks passed", c.failures,
        c.failures == 1 ? "" : "s", c.warnings, c.warnings == 1 ? "" : "s");
    goto out;
fail:
    cli_error("check: %s", err.msg);
    code = err.status == PT_ERR_INVALID ? 2 : 1;
    hard = 1;
out:
    if (grp) pt_group_free(grp);
    for (int d = 0; d < CLI_MAX_DEVICES; d++) pt_replica_free(reps[d]);
    pt_net_free(net);
    if (ref) pt_device_close(ref);
    cli_close_devices(devs, ndev);
    pt_strbuf_free(&c.js);
    if (mpi) {
        /* a check that failed is agreed on by every rank (world_failures); an error that
         * stopped this rank alone would leave the others waiting in a collective */
        if (hard && world.size > 1) world.abort(world.ctx, code, NULL);
        pt_mpi_world_finalize(&world);
    }
    return code;
}
