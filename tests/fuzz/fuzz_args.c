/* libFuzzer harness: the command-line parser (tools/args.c) with `polytrain train`'s option
 * table, the largest, which has every kind of option (flags and their negations, int,
 * int64, uint64, double and string values with ranges). The input is the argument list,
 * NUL-separated; only the parsing runs, never the command. After a successful parse the
 * options are written as config.json does and read back through the --resume path
 * as `train --config` reads a run's config.json (args_apply_json_except, leaving out the
 * options a config file never sets), which must take every value it wrote. */
#include "fuzz_util.h"

#include "core/json.h"
#include "tools/args.h"
#include "tools/train_internal.h"

#define FUZZ_MAX_ARGS 64

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* one writable NUL-terminated copy holding every argument */
    char *buf = malloc(size + 1);
    if (!buf) abort();
    memcpy(buf, data, size);
    buf[size] = '\0';
    const uint8_t *part[FUZZ_MAX_ARGS];
    size_t len[FUZZ_MAX_ARGS];
    int n = size ? fuzz_split((const uint8_t *)buf, size, 0, part, len, FUZZ_MAX_ARGS) : 0;
    char *argv[FUZZ_MAX_ARGS + 1];
    for (int i = 0; i < n; i++) {
        argv[i] = buf + (part[i] - (const uint8_t *)buf);
        argv[i][len[i]] = '\0';
    }
    argv[n] = NULL;

    static train_options o; /* the option table points into it */
    memset(&o, 0, sizeof o);
    int rc = train_options_parse(&o, n, argv);
    if (rc != 0 && rc != 1 && rc != 2) abort();
    if (rc == 0) {
        pt_strbuf sb;
        pt_strbuf_init(&sb);
        pt_strbuf_putc(&sb, '{');
        args_to_json(&o.cmd, &sb);
        pt_strbuf_putc(&sb, '}');
        pt_error e;
        pt_json *js = NULL;
        if (pt_strbuf_check(&sb, &e) != PT_OK) abort();
        if (pt_json_parse(sb.data, sb.len, NULL, &js, &e) != PT_OK) {
            fuzz_fail("the options written as JSON do not parse: %s\n%s", e.msg, sb.data);
        }
        static train_options back;
        memset(&back, 0, sizeof back);
        if (train_options_parse(&back, 0, argv + n) != 0) abort();
        static const char *const per_invocation[] = {"out", "resume", "overwrite", "allow-changes", "config",
                                                     "preset", "trace", "trace-step", "stop-after-epoch", NULL};
        if (args_apply_json_except(&back.cmd, js, "config.json", per_invocation) != 0) {
            fuzz_fail("the options written as JSON are not taken back:\n%s", sb.data);
        }
        pt_json_free(js);
        pt_strbuf_free(&sb);
    }
    free(buf);
    return 0;
}
