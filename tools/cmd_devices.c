/* polytrain devices / models: what this build can run on and what it can train. */
#include <stdio.h>

#include "core/backend.h"
#include "core/json.h"
#include "models/models.h"
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
    if (json) printf("]\n");
    return failures == pt_backend_count() ? 1 : 0;
}

int cmd_models(int argc, char **argv)
{
    const arg_spec specs[] = {{NULL, 0, NULL, NULL, NULL, 0, 0, NULL}};
    const arg_command cmd = {"models", "List the models polytrain can build.", "", specs, NULL, NULL};
    int rc = args_parse(&cmd, argc, argv, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : 2;
    for (const pt_model_entry *m = pt_models(); m->name; m++) printf("%-12s %s\n", m->name, m->description);
    return 0;
}
