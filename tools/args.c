/* Option parsing shared by every polytrain subcommand (see args.h). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/args.h"

#include "core/json.h"

/* Under --json: whether the command wrote its own JSON, and its first error for the object
 * cli_exit writes when it did not. */
static struct {
    int on, written;
    char first_error[4096];
} json_mode;

void cli_error(const char *fmt, ...)
{
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "polytrain: error: %s\n", msg);
    if (json_mode.on && !json_mode.first_error[0]) memcpy(json_mode.first_error, msg, sizeof msg);
}

void cli_note(const char *fmt, ...)
{
    va_list ap;
    fputs("polytrain: note: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cli_json_wrote(void) { json_mode.written = 1; }

int cli_exit(int code)
{
    if (json_mode.on && code != 0 && !json_mode.written) {
        pt_strbuf sb;
        pt_strbuf_init(&sb);
        pt_strbuf_puts(&sb, "{\"error\":");
        pt_strbuf_json_string(&sb, json_mode.first_error[0] ? json_mode.first_error : "failed");
        pt_strbuf_printf(&sb, ",\"exit_code\":%d}\n", code);
        if (sb.data && !sb.failed) fputs(sb.data, stdout);
        pt_strbuf_free(&sb);
    }
    fflush(stdout);
    return code;
}

void args_print_help(const arg_command *cmd)
{
    printf("usage: polytrain %s %s\n\n%s\n\noptions:\n", cmd->name, cmd->usage, cmd->summary);
    for (const arg_spec *s = cmd->specs; s->name; s++) {
        char left[64];
        if (s->kind == ARG_FLAG || s->kind == ARG_NOFLAG)
            snprintf(left, sizeof left, "--%s", s->name);
        else
            snprintf(left, sizeof left, "--%s %s", s->name, s->metavar ? s->metavar : "VALUE");
        printf("  %-28s %s\n", left, s->help);
    }
    printf("  %-28s %s\n", "--help", "show this help and exit");
    if (cmd->epilog) printf("\n%s\n", cmd->epilog);
}

static int set_value(const arg_command *cmd, const arg_spec *s, const char *v)
{
    char *end;
    errno = 0;
    switch (s->kind) {
    case ARG_STRING:
        if (!*v) {
            cli_error("%s: --%s needs a non-empty value", cmd->name, s->name);
            return 2;
        }
        *(const char **)s->target = v;
        return 0;
    case ARG_INT:
    case ARG_I64: {
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end || (s->min < s->max && (x < s->min || x > s->max))) {
            if (s->min < s->max)
                cli_error("%s: --%s expects an integer in %.0f..%.0f, got '%s'", cmd->name, s->name,
                          s->min, s->max, v);
            else
                cli_error("%s: --%s expects an integer, got '%s'", cmd->name, s->name, v);
            return 2;
        }
        if (s->kind == ARG_INT) *(int *)s->target = (int)x;
        else *(int64_t *)s->target = (int64_t)x;
        return 0;
    }
    case ARG_U64: {
        if (*v == '-') {
            cli_error("%s: --%s expects a non-negative integer, got '%s'", cmd->name, s->name, v);
            return 2;
        }
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end) {
            cli_error("%s: --%s expects a non-negative integer, got '%s'", cmd->name, s->name, v);
            return 2;
        }
        *(uint64_t *)s->target = (uint64_t)x;
        return 0;
    }
    case ARG_DOUBLE: {
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x) || (s->min < s->max && (x < s->min || x > s->max))) {
            if (s->min < s->max)
                cli_error("%s: --%s expects a number in [%g, %g], got '%s'", cmd->name, s->name, s->min,
                          s->max, v);
            else
                cli_error("%s: --%s expects a number, got '%s'", cmd->name, s->name, v);
            return 2;
        }
        *(double *)s->target = x;
        return 0;
    }
    case ARG_FLAG:
    case ARG_NOFLAG: break;
    }
    return 2;
}

int args_parse(const arg_command *cmd, int argc, char **argv, char **positional,
               int max_positional, int *npositional)
{
    if (npositional) *npositional = 0;
    /* --json anywhere (before "--") makes even a usage error below come out as JSON. */
    for (const arg_spec *p = cmd->specs; p->name; p++)
        if (p->kind == ARG_FLAG && strcmp(p->name, "json") == 0)
            for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++)
                if (strcmp(argv[i], "--json") == 0) json_mode.on = 1;
    int only_positional = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (only_positional || a[0] != '-' || a[1] == '\0') {
            if (!npositional || *npositional >= max_positional) {
                cli_error("%s: unexpected argument '%s' (see 'polytrain %s --help')", cmd->name, a,
                          cmd->name);
                return 2;
            }
            positional[(*npositional)++] = argv[i];
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_positional = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            args_print_help(cmd);
            return 1;
        }
        if (a[1] != '-') {
            cli_error("%s: unknown option '%s' (see 'polytrain %s --help')", cmd->name, a, cmd->name);
            return 2;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const arg_spec *s = NULL;
        for (const arg_spec *p = cmd->specs; p->name; p++)
            if (strlen(p->name) == len && strncmp(p->name, name, len) == 0) s = p;
        if (!s) {
            cli_error("%s: unknown option '--%.*s' (see 'polytrain %s --help')", cmd->name, (int)len,
                      name, cmd->name);
            return 2;
        }
        if (s->given) *s->given = 1;
        if (cmd->given) cmd->given[s - cmd->specs] = 1;
        if (s->kind == ARG_FLAG || s->kind == ARG_NOFLAG) {
            if (eq) {
                cli_error("%s: --%s takes no value", cmd->name, s->name);
                return 2;
            }
            *(int *)s->target = s->kind == ARG_FLAG;
            continue;
        }
        const char *v;
        if (eq) {
            v = eq + 1;
        } else {
            if (i + 1 >= argc) {
                cli_error("%s: --%s needs a value", cmd->name, s->name);
                return 2;
            }
            v = argv[++i];
        }
        int rc = set_value(cmd, s, v);
        if (rc) return rc;
    }
    return 0;
}

/* A saved value counts as given: it is what the run resolved, and defaults that depend on
 * whether an option was given (an optimizer's momentum) must not replace it. */
static void mark_given(const arg_command *cmd, const arg_spec *s)
{
    if (s->given) *s->given = 1;
    if (cmd->given) cmd->given[s - cmd->specs] = 1;
}

int args_apply_json(const arg_command *cmd, const pt_json *obj) { return args_apply_json_except(cmd, obj, NULL); }

static int listed(const char *name, const char *const *list)
{
    for (; list && *list; list++)
        if (strcmp(name, *list) == 0) return 1;
    return 0;
}

int args_apply_json_except(const arg_command *cmd, const pt_json *obj, const char *const *skip)
{
    for (const arg_spec *s = cmd->specs; s->name; s++) {
        if ((s->given && *s->given) || (cmd->given && cmd->given[s - cmd->specs])) continue;
        if (listed(s->name, skip)) continue;
        const pt_json *v = pt_json_get(obj, s->name);
        if (!v || v->type == PT_JSON_NULL) continue;
        char buf[64];
        const char *text = NULL;
        if (s->kind == ARG_NOFLAG) continue; /* its FLAG twin holds the saved value */
        if (s->kind == ARG_FLAG) {
            if (v->type == PT_JSON_BOOL) {
                *(int *)s->target = v->boolean;
                mark_given(cmd, s);
            }
            continue;
        }
        if (v->type == PT_JSON_STRING) {
            text = v->str;
        } else if (v->type == PT_JSON_NUMBER) {
            if (v->is_int) snprintf(buf, sizeof buf, "%lld", (long long)v->integer);
            else snprintf(buf, sizeof buf, "%.17g", v->number);
            text = buf;
        } else {
            continue;
        }
        if (s->kind == ARG_STRING) {
            if (v->type != PT_JSON_STRING) {
                cli_error("%s: saved option '%s' is not a string", cmd->name, s->name);
                return 2;
            }
            *(const char **)s->target = v->str;
            mark_given(cmd, s);
            continue;
        }
        if (set_value(cmd, s, text)) return 2;
        mark_given(cmd, s);
    }
    return 0;
}

void args_to_json(const arg_command *cmd, pt_strbuf *sb)
{
    int first = 1;
    for (const arg_spec *s = cmd->specs; s->name; s++) {
        if (!s->target || s->kind == ARG_NOFLAG) continue;
        pt_strbuf_printf(sb, "%s\n  ", first ? "" : ",");
        first = 0;
        pt_strbuf_json_string(sb, s->name);
        pt_strbuf_putc(sb, ':');
        switch (s->kind) {
        case ARG_FLAG:
        case ARG_NOFLAG: pt_strbuf_puts(sb, *(int *)s->target ? "true" : "false"); break;
        case ARG_INT: pt_strbuf_json_int(sb, *(int *)s->target); break;
        case ARG_I64: pt_strbuf_json_int(sb, *(int64_t *)s->target); break;
        case ARG_U64: {
            /* JSON readers (polytrain's included) hold integers exactly up to 2^63 - 1: a larger
             * value goes as a string, which args_apply_json reads back exactly. */
            const unsigned long long v = *(uint64_t *)s->target;
            if (v > (unsigned long long)INT64_MAX) pt_strbuf_printf(sb, "\"%llu\"", v);
            else pt_strbuf_printf(sb, "%llu", v);
            break;
        }
        case ARG_DOUBLE: pt_strbuf_json_double(sb, *(double *)s->target); break;
        case ARG_STRING: {
            const char *v = *(const char **)s->target;
            if (v) pt_strbuf_json_string(sb, v);
            else pt_strbuf_puts(sb, "null");
            break;
        }
        }
    }
}
