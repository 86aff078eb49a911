/* polytrain selftest: the conformance suite (core/conformance.h) on this machine's devices
 * against cpu device 0, so that a user checks their own GPUs with one command. Prints
 * the device list, failing cases (all with --verbose) and a summary line per device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "polytrain/backend.h"
#include "core/conformance.h"
#include "core/json.h"
#include "tools/args.h"
#include "tools/commands.h"

#define SELFTEST_MAX_DEVICES 64

typedef struct selftest_out {
    int verbose, json;
    pt_strbuf *sb;     /* --json: the results array of the device being run */
    int nresults;
} selftest_out;

static void on_case(const pt_conformance_result *r, void *user)
{
    selftest_out *o = user;
    if (o->json) {
        if (r->pass && !o->verbose) return;
        pt_strbuf *sb = o->sb;
        pt_strbuf_puts(sb, o->nresults++ ? "," : "");
        pt_strbuf_puts(sb, "{\"name\":");
        pt_strbuf_json_string(sb, r->name);
        pt_strbuf_printf(sb, ",\"index\":%d,\"op\":", r->index);
        pt_strbuf_json_string(sb, pt_op_name(r->kind));
        pt_strbuf_printf(sb, ",\"pass\":%s,\"error\":", r->pass ? "true" : "false");
        pt_strbuf_json_double(sb, r->error);
        pt_strbuf_puts(sb, ",\"bound\":");
        pt_strbuf_json_double(sb, r->bound);
        pt_strbuf_puts(sb, ",\"ratio\":");
        pt_strbuf_json_double(sb, r->ratio);
        pt_strbuf_puts(sb, ",\"output\":");
        pt_strbuf_json_string(sb, r->output);
        pt_strbuf_puts(sb, ",\"ms\":");
        pt_strbuf_json_double(sb, r->dut_ms);
        pt_strbuf_puts(sb, ",\"detail\":");
        pt_strbuf_json_string(sb, r->detail);
        pt_strbuf_puts(sb, "}");
        return;
    }
    if (!r->pass)
        printf("  FAIL %s\n       %s\n", r->name, r->detail);
    else if (o->verbose)
        printf("  ok   %-70s %-16s %9.2e / %-7.0e %8.2f ms\n", r->name, r->output, r->error, r->bound, r->dut_ms);
    fflush(stdout);
}

/* --list: every op kind from its description (core/op_table.c) with its operands and the number
 * of conformance cases the suite makes for it. */
static int list_ops(int json)
{
    int cases[PT_OP_KIND_COUNT] = {0};
    for (int i = 0; i < pt_conformance_case_count(); i++) {
        const pt_op_kind k = pt_conformance_case_kind(i);
        if ((int)k >= 0 && k < PT_OP_KIND_COUNT) cases[k]++;
    }
    static const char *const access[] = {"", "in", "out", "inout"};
    pt_strbuf sb;
    pt_strbuf_init(&sb);
    if (json) pt_strbuf_puts(&sb, "{\"ops\":[");
    else printf("%-18s %5s  %-56s %s\n", "op", "cases", "computes", "operands (name:dtype:access; f32|16: or a 16-bit activation)");
    for (int k = 0; k < PT_OP_KIND_COUNT; k++) {
        const pt_op_desc *d = pt_op_describe((pt_op_kind)k);
        char args[256] = "";
        for (int i = 0; i < d->nt; i++) {
            size_t u = strlen(args);
            snprintf(args + u, sizeof args - u, "%s%s:%s:%s%s", i ? " " : "", d->arg[i].name,
                     d->arg[i].dtype == PT_I32 ? "i32" : d->arg[i].lowp ? "f32|16" : "f32", access[d->arg[i].access & 3],
                     d->arg[i].optional || (d->nt_min && i >= d->nt_min) ? "?" : "");
        }
        if (json) {
            pt_strbuf_puts(&sb, k ? ",{\"name\":" : "{\"name\":");
            pt_strbuf_json_string(&sb, d->name);
            pt_strbuf_printf(&sb, ",\"cases\":%d,\"operands\":", cases[k]);
            pt_strbuf_json_string(&sb, args);
            pt_strbuf_printf(&sb, ",\"pointwise\":%s,\"accumulates\":%s,\"fused_relu\":%s,\"computes\":",
                             d->flags & PT_OPF_POINTWISE ? "true" : "false", d->flags & PT_OPF_ACCUMULATE ? "true" : "false",
                             d->flags & PT_OPF_FUSED_RELU ? "true" : "false");
            pt_strbuf_json_string(&sb, d->summary);
            pt_strbuf_puts(&sb, "}");
        } else {
            printf("%-18s %5d  %-56s %s\n", d->name, cases[k], d->summary, args);
        }
    }
    pt_error err;
    if (json) {
        pt_strbuf_puts(&sb, "]}\n");
        if (pt_strbuf_check(&sb, &err) != PT_OK) {
            cli_error("selftest: %s", err.msg);
            pt_strbuf_free(&sb);
            return 1;
        }
        fputs(sb.data, stdout);
    } else {
        printf("(%d op kinds, %d cases; '?' marks an operand that may be absent)\n", (int)PT_OP_KIND_COUNT,
               pt_conformance_case_count());
    }
    pt_strbuf_free(&sb);
    return 0;
}

/* "all" or "0,2,...": which indices to run (each below SELFTEST_MAX_DEVICES). */
static int parse_devices(const char *spec, int *want)
{
    memset(want, 0, SELFTEST_MAX_DEVICES * sizeof *want);
    if (!spec || strcmp(spec, "all") == 0) {
        for (int i = 0; i < SELFTEST_MAX_DEVICES; i++) want[i] = 1;
        return 0;
    }
    const char *p = spec;
    int n = 0;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v >= SELFTEST_MAX_DEVICES || (*end && *end != ',')) {
            cli_error("selftest: --devices expects 'all' or indices like 0,1, got '%s'", spec);
            return 2;
        }
        want[v] = 1, n++;
        p = *end ? end + 1 : end;
    }
    if (!n) {
        cli_error("selftest: --devices: empty list");
        return 2;
    }
    return 0;
}

int cmd_selftest(int argc, char **argv)
{
    const char *backend = "all", *devices = "all", *filter = NULL;
    uint64_t seed = 0;
    int seed_given = 0, verbose = 0, json = 0, list = 0;
    const arg_spec specs[] = {
        {"backend", ARG_STRING, &backend, "NAME", "a backend name, or all (default): every compiled-in backend",
         0, 0, NULL},
        {"devices", ARG_STRING, &devices, "LIST", "device indices, e.g. 0 or 0,1 (default all)", 0, 0, NULL},
        {"seed", ARG_U64, &seed, "N", "seed of the random inputs (default: a new one, printed)", 0, 0, &seed_given},
        {"filter", ARG_STRING, &filter, "SUBSTR", "only the cases whose name contains SUBSTR, e.g. conv2d_fwd", 0, 0,
         NULL},
        {"verbose", ARG_FLAG, &verbose, NULL, "a line for every case, not only the failing ones", 0, 0, NULL},
        {"json", ARG_FLAG, &json, NULL, "machine-readable output (one JSON object)", 0, 0, NULL},
        {"list", ARG_FLAG, &list, NULL, "list the op kinds (operands, conformance cases) and exit", 0, 0, NULL},
        {NULL, 0, NULL, NULL, NULL, 0, 0, NULL},
    };
    const arg_command cmd = {
        "selftest", "Check every op of a backend's devices against the cpu backend.", "[options]", specs,
        "Each case gives both devices the same random inputs (poisoned outputs, guard bytes around\n"
        "every tensor) and compares the outputs by normalised error against a bound per op; NaN or\n"
        "Inf never passes. Exit status: 0 all cases pass, 1 a case fails or a backend/device named\n"
        "cannot be used, 2 usage error. A failure reproduces with the --seed it prints.",
        NULL};
    int rc = args_parse(&cmd, argc, argv, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : 2;
    if (list) return list_ops(json);
    int all = strcmp(backend, "all") == 0;
    if (!all && !pt_backend_find(backend)) {
        char list[256] = "";
        for (int i = 0; i < pt_backend_count(); i++) {
            strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
            strncat(list, pt_backend_at(i)->name, sizeof list - strlen(list) - 1);
        }
        cli_error("selftest: --backend '%s' is not compiled in (available: all, %s)", backend, list);
        return 2;
    }
    int want[SELFTEST_MAX_DEVICES];
    if (parse_devices(devices, want)) return 2;
    if (!seed_given) seed = ((uint64_t)time(NULL) * 2654435761u) ^ ((uint64_t)getpid() << 32);

    pt_error err;
    pt_error_clear(&err);
    if (!all && strcmp(devices, "all") != 0) { /* an index the named backend lacks is a usage error */
        void *ctx = NULL;
        const pt_backend_iface *be = pt_backend_find(backend);
        if (pt_backend_context(be, &ctx, &err) == PT_OK) {
            int ndev = be->device_count(ctx);
            for (int d = ndev; d < SELFTEST_MAX_DEVICES; d++)
                if (want[d]) {
                    cli_error("selftest: --devices: backend '%s' has %d device%s, no device %d", be->name, ndev,
                              ndev == 1 ? "" : "s", d);
                    return 2;
                }
        }
    }
    pt_device *ref = NULL;
    if (pt_device_open("cpu", 0, NULL, &ref, &err) != PT_OK) {
        cli_error("selftest: cannot open the reference device cpu[0]: %s", err.msg);
        return 1;
    }
    int ncases = 0;
    if (filter && filter[0]) {
        char name[128];
        for (int i = 0; i < pt_conformance_case_count(); i++)
            ncases += strstr(pt_conformance_case_name(i, name, sizeof name), filter) != NULL;
    } else {
        ncases = pt_conformance_case_count();
    }
    if (ncases == 0) {
        cli_error("selftest: --filter '%s' matches none of the %d cases", filter, pt_conformance_case_count());
        pt_device_close(ref);
        return 2;
    }
    if (!json) {
        char *none[] = {NULL};
        cmd_devices(0, none);
        printf("\nselftest: %d case%s per device against cpu[0], seed %llu (--seed %llu repeats it)\n", ncases,
               ncases == 1 ? "" : "s", (unsigned long long)seed, (unsigned long long)seed);
        fflush(stdout);
    }

    pt_strbuf doc;
    pt_strbuf_init(&doc);
    pt_strbuf_printf(&doc, "{\"seed\":%llu,\"filter\":", (unsigned long long)seed);
    if (filter) pt_strbuf_json_string(&doc, filter);
    else pt_strbuf_puts(&doc, "null");
    pt_strbuf_printf(&doc, ",\"cases\":%d,\"reference\":{\"backend\":\"cpu\",\"index\":0,\"name\":", ncases);
    pt_strbuf_json_string(&doc, ref->info.name);
    pt_strbuf_puts(&doc, "},\"devices\":[");

    int ran = 0, failed_devices = 0, problems = 0, nentries = 0;
    for (int b = 0; b < pt_backend_count(); b++) {
        const pt_backend_iface *be = pt_backend_at(b);
        if (!all && strcmp(be->name, backend) != 0) continue;
        void *ctx = NULL;
        if (pt_backend_context(be, &ctx, &err) != PT_OK) {
            if (json) {
                pt_strbuf_puts(&doc, nentries++ ? "," : "");
                pt_strbuf_puts(&doc, "{\"backend\":");
                pt_strbuf_json_string(&doc, be->name);
                pt_strbuf_puts(&doc, ",\"available\":false,\"error\":");
                pt_strbuf_json_string(&doc, err.msg);
                pt_strbuf_puts(&doc, "}");
            } else {
                printf("%s: not available: %s\n", be->name, err.msg);
            }
            if (!all) problems++; /* asked for by name */
            continue;
        }
        int ndev = be->device_count(ctx);
        for (int d = 0; d < ndev && d < SELFTEST_MAX_DEVICES; d++) {
            if (!want[d]) continue;
            pt_device *dut = NULL;
            if (pt_device_open(be->name, d, NULL, &dut, &err) != PT_OK) {
                if (json) {
                    pt_strbuf_puts(&doc, nentries++ ? "," : "");
                    pt_strbuf_puts(&doc, "{\"backend\":");
                    pt_strbuf_json_string(&doc, be->name);
                    pt_strbuf_printf(&doc, ",\"index\":%d,\"available\":false,\"error\":", d);
                    pt_strbuf_json_string(&doc, err.msg);
                    pt_strbuf_puts(&doc, "}");
                } else {
                    printf("%s[%d]: cannot open: %s\n", be->name, d, err.msg);
                }
                problems++;
                continue;
            }
            if (!json) {
                printf("%s[%d] %s: running...\n", be->name, d, dut->info.name);
                fflush(stdout);
            }
            pt_strbuf results;
            pt_strbuf_init(&results);
            selftest_out o = {verbose, json, &results, 0};
            pt_conformance_summary sum;
            pt_status st = pt_conformance_run(ref, dut, seed, filter, on_case, &o, &sum, &err);
            ran++;
            if (st != PT_OK) {
                cli_error("selftest: %s[%d]: %s", be->name, d, err.msg);
                problems++;
            }
            if (sum.failed) failed_devices++;
            if (json) {
                pt_strbuf_puts(&doc, nentries++ ? "," : "");
                pt_strbuf_puts(&doc, "{\"backend\":");
                pt_strbuf_json_string(&doc, be->name);
                pt_strbuf_printf(&doc, ",\"index\":%d,\"available\":true,\"name\":", d);
                pt_strbuf_json_string(&doc, dut->info.name);
                pt_strbuf_printf(&doc,
                                 ",\"kind\":\"%s\",\"cases\":%d,\"passed\":%d,\"failed\":%d,\"unclaimed\":%d,"
                                 "\"worst_ratio\":",
                                 dut->info.kind == PT_DEVICE_GPU ? "gpu" : "cpu", sum.cases, sum.passed, sum.failed,
                                 sum.unclaimed);
                pt_strbuf_json_double(&doc, sum.worst_ratio);
                pt_strbuf_puts(&doc, ",\"worst_case\":");
                pt_strbuf_json_string(&doc, sum.worst_case);
                pt_strbuf_puts(&doc, ",\"ms\":");
                pt_strbuf_json_double(&doc, sum.dut_ms);
                pt_strbuf_printf(&doc, ",\"results\":[%s]}", results.data ? results.data : "");
            } else {
                printf("%s[%d] %s: %d cases, %d passed, %d failed, worst error/bound %.3g (%s), %.0f ms\n", be->name,
                       d, dut->info.name, sum.cases, sum.passed, sum.failed, sum.worst_ratio, sum.worst_case,
                       sum.dut_ms);
                if (sum.unclaimed)
                    printf("  (%d cases in precisions, fused forms, 16-bit storage or NHWC layouts this device does not claim were "
                           "not run)\n",
                           sum.unclaimed);
                fflush(stdout);
            }
            pt_strbuf_free(&results);
            pt_device_close(dut);
        }
    }
    pt_device_close(ref);
    if (json) {
        pt_strbuf_printf(&doc, "],\"devices_run\":%d,\"devices_failed\":%d,\"ok\":%s}\n", ran, failed_devices,
                         failed_devices || problems || !ran ? "false" : "true");
        if (pt_strbuf_check(&doc, &err) != PT_OK) {
            cli_error("selftest: %s", err.msg);
            pt_strbuf_free(&doc);
            return 1;
        }
        fputs(doc.data, stdout);
        cli_json_wrote();
    } else if (!ran) {
        printf("selftest: no device was run\n");
    } else if (failed_devices || problems) {
        printf("selftest: FAILED: %d of %d device%s had failing cases, %d backend%s or device%s could not be "
               "used (seed %llu)\n",
               failed_devices, ran, ran == 1 ? "" : "s", problems, problems == 1 ? "" : "s", problems == 1 ? "" : "s",
               (unsigned long long)seed);
    } else {
        printf("selftest: all %d device%s passed\n", ran, ran == 1 ? "" : "s");
    }
    pt_strbuf_free(&doc);
    return failed_devices || problems || !ran ? 1 : 0;
}
