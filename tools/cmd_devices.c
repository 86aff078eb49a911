/* polytrain devices / models: what this build can run on and what it can train. */
#include <stdio.h>
#include <string.h>

#include "polytrain/backend.h"
#include "core/json.h"
#include "polytrain/models.h"
#include "tools/args.h"
#include "tools/commands.h"

int cmd_devices(int argc, char **argv)
{
    int json = 0;
    const arg_spec specs[] = {
        {"json", ARG_FLAG, &json, NULL, "machine-readable output", 0, 0, NULL},
        {NULL, 0, NULL, NULL, NULL, 0, 0, NULL},
    };
    const arg_command cmd = {"devices", "List the backends compiled into this build and their devices.",
                             "[--json]", specs, NULL, NULL};
    int rc = args_parse(&cmd, argc, argv, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : 2;
    int failures = 0;
    if (json) printf("[");
    for (int b = 0; b < pt_backend_count(); b++) {
        const pt_backend_iface *be = pt_backend_at(b);
        void *ctx = NULL;
        pt_error err;
        pt_error_clear(&err);
        pt_status st = pt_backend_context(be, &ctx, &err);
        int n = st == PT_OK ? be->device_count(ctx) : 0;
        if (json) {
            pt_strbuf sb;
            pt_strbuf_init(&sb);
            pt_strbuf_printf(&sb, "%s{\"backend\":", b ? "," : "");
            pt_strbuf_json_string(&sb, be->name);
            pt_strbuf_printf(&sb, ",\"available\":%s,", st == PT_OK ? "true" : "false");
            if (st != PT_OK) {
                pt_strbuf_puts(&sb, "\"error\":");
                pt_strbuf_json_string(&sb, err.msg);
                pt_strbuf_puts(&sb, ",");
            }
            pt_strbuf_puts(&sb, "\"devices\":[");
            for (int i = 0; i < n; i++) {
                pt_device_info info;
                if (be->device_info(ctx, i, &info, &err) != PT_OK) continue;
                pt_strbuf_printf(&sb, "%s{\"index\":%d,\"name\":", i ? "," : "", i);
                pt_strbuf_json_string(&sb, info.name);
                pt_strbuf_printf(&sb, ",\"kind\":\"%s\",\"memory_bytes\":%llu,\"compute_units\":%d,"
                                      "\"threads\":%d,\"details\":",
                                 info.kind == PT_DEVICE_GPU ? "gpu" : "cpu",
                                 (unsigned long long)info.memory_bytes, info.compute_units, info.threads);
                pt_strbuf_json_string(&sb, info.details);
                pt_strbuf_puts(&sb, "}");
            }
            pt_strbuf_puts(&sb, "]}");
            if (sb.data) fputs(sb.data, stdout);
            pt_strbuf_free(&sb);
        } else {
            if (st != PT_OK) {
                printf("%s: unavailable: %s\n", be->name, err.msg);
                failures++;
                continue;
            }
            printf("%s: %d device%s\n", be->name, n, n == 1 ? "" : "s");
            /* The cpu backend's devices are its cores: each line below shows the threads a
             * device runs when used alone; several used together split the cores. */
            if (strcmp(be->name, "cpu") == 0 && n > 1)
                printf("  (one device per core: a device used alone runs the threads shown; devices used "
                       "together split the cores between them)\n");
            for (int i = 0; i < n; i++) {
                pt_device_info info;
                if (be->device_info(ctx, i, &info, &err) != PT_OK) {
                    printf("  [%d] error: %s\n", i, err.msg);
                    continue;
                }
                printf("  [%d] %s (%s), %d compute units, %d threads, %.1f GiB\n      %s\n", i, info.name,
                       info.kind == PT_DEVICE_GPU ? "gpu" : "cpu", info.compute_units, info.threads,
                       (double)info.memory_bytes / (1024.0 * 1024.0 * 1024.0), info.details);
            }
        }
    }
    if (json) {
        printf("]\n");
        cli_json_wrote();
    }
    return failures == pt_backend_count() ? 1 : 0;
}

static void print_json_string(const char *text)
{
    pt_strbuf sb;
    pt_strbuf_init(&sb);
    pt_strbuf_json_string(&sb, text);
    fputs(sb.data && !sb.failed ? sb.data : "null", stdout);
    pt_strbuf_free(&sb);
}

/* "CxHxW" or "C,H,W". */
static int parse_input(const char *s, int *c, int *h, int *w)
{
    char tail;
    return (sscanf(s, "%dx%dx%d%c", c, h, w, &tail) == 3 || sscanf(s, "%d,%d,%d%c", c, h, w, &tail) == 3) &&
           *c >= 1 && *c <= 3 && *h >= 1 && *w >= 1 && *h <= 4096 && *w <= 4096;
}

int cmd_models(int argc, char **argv)
{
    const char *input = "3x64x64", *only = NULL;
    int classes = 200, json = 0;
    const arg_spec specs[] = {
        {"input", ARG_STRING, &input, "CxHxW", "input shape for the counts (default 3x64x64, TinyImageNet)", 0, 0,
         NULL},
        {"classes", ARG_INT, &classes, "K", "classes (default 200)", 1, 100000, NULL},
        {"model", ARG_STRING, &only, "NAME", "only this model (an error if it does not fit the input)", 0, 0, NULL},
        {"json", ARG_FLAG, &json, NULL, "machine-readable output (one JSON array)", 0, 0, NULL},
        {NULL, 0, NULL, NULL, NULL, 0, 0, NULL},
    };
    const arg_command cmd = {
        "models", "List the models polytrain can build, with their size and cost for an input.", "[options]", specs,
        "FLOPs are 2 x multiply-adds of one image's forward pass through the convolutions and linear\n"
        "layers (element-wise layers, pooling and attention gates are not counted); a training step\n"
        "costs about three times as much. A model whose poolings do not fit the input is listed\n"
        "with the smallest input it takes.",
        NULL};
    int rc = args_parse(&cmd, argc, argv, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : 2;
    int C, H, W;
    if (!parse_input(input, &C, &H, &W)) {
        cli_error("models: --input expects CxHxW with C in 1..3 and H, W in 1..4096, got '%s'", input);
        return 2;
    }
    if (only && !pt_model_find(only)) {
        pt_error err;
        pt_net *net = NULL;
        pt_model_build(only, C, H, W, classes, &net, &err); /* its message lists the zoo */
        cli_error("models: --model: %s", err.msg);
        return 2;
    }
    int width = 14; /* the name column: the longest name */
    for (const pt_model_entry *m = pt_models(); m->name; m++)
        if ((int)strlen(m->name) > width) width = (int)strlen(m->name);
    if (json) printf("[");
    int first = 1, failed = 0, rows = 0;
    for (const pt_model_entry *m = pt_models(); m->name; m++) {
        if (only && strcmp(only, m->name) != 0) continue;
        pt_net *net = NULL;
        pt_error err;
        pt_error_clear(&err);
        if (pt_model_build(m->name, C, H, W, classes, &net, &err) != PT_OK) {
            failed = 1;
            if (only) cli_error("%s", err.msg);
            if (json) {
                printf("%s{\"model\":", first ? "" : ",");
                print_json_string(m->name);
                printf(",\"error\":");
                print_json_string(err.msg);
                printf("}");
            } else if (!only) {
                if (!rows++)
                    printf("%-*s %12s %7s %12s  %s\n", width, "model", "parameters", "entries", "GFLOP/image", "description");
                printf("%-*s %12s %7s %12s  %s\n", width, m->name, "-", "-", "-", err.msg);
            }
            first = 0;
            continue;
        }
        int entries = net->nparams + net->nbuffers + net->nbn;
        double gflop = pt_net_forward_flops(net) / 1e9;
        if (json) {
            printf("%s{\"model\":", first ? "" : ",");
            print_json_string(m->name);
            printf(",\"input\":[%d,%d,%d],\"classes\":%d,\"parameters\":%lld,\"state_entries\":%d,"
                   "\"forward_flops\":%.0f,\"description\":",
                   C, H, W, classes, (long long)net->param_count, entries, pt_net_forward_flops(net));
            print_json_string(m->description);
            printf("}");
        } else {
            if (!rows++)
                printf("%-*s %12s %7s %12s  %s\n", width, "model", "parameters", "entries", "GFLOP/image", "description");
            printf("%-*s %12lld %7d %12.3f  %s\n", width, m->name, (long long)net->param_count, entries, gflop,
                   m->description);
        }
        first = 0;
        pt_net_free(net);
    }
    if (json) {
        printf("]\n");
        cli_json_wrote();
    } else if (rows) printf("(input %dx%dx%d, %d classes)\n", C, H, W, classes);
    return only && failed ? 1 : 0;
}
