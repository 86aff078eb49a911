/* The step timeline (see trace.h): fixed event slots per track, filled by the track's own
 * thread during the traced step, and the Trace Event Format JSON built from them afterwards.
 * The recording functions must never allocate: they run inside a training step. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/json.h"
#include "polytrain/trace.h"

enum { EV_OP = 1, EV_SPAN = 2, EV_REDUCE = 3 };

typedef struct trace_event {
    int type;
    const char *name, *cat, *arg_name; /* spans (ops: cat is the list) */
    int64_t arg;
    int index;
    double t0, t1;
    pt_op op;               /* EV_OP */
    pt_trace_reduction red; /* EV_REDUCE */
} trace_event;

typedef struct trace_track {
    trace_event *ev;
    int n, cap;
    int64_t dropped;
    char name[128];
} trace_track;

struct pt_trace {
    int ndev;
    trace_track *tracks; /* ndev devices, then the communication thread */
    double origin;
};

pt_status pt_trace_create(int ndevices, int device_events, int comm_events, pt_trace **out, pt_error *err)
{
    *out = NULL;
    if (ndevices < 1 || device_events < 1 || comm_events < 1)
        return pt_fail(err, PT_ERR_INVALID, "trace: needs at least one device and one event slot per track");
    pt_trace *t = calloc(1, sizeof *t);
    if (!t) return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    t->ndev = ndevices;
    t->tracks = calloc((size_t)ndevices + 1, sizeof *t->tracks);
    if (!t->tracks) {
        free(t);
        return pt_fail(err, PT_ERR_NOMEM, "out of host memory");
    }
    for (int k = 0; k <= ndevices; k++) {
        trace_track *tr = &t->tracks[k];
        tr->cap = k < ndevices ? device_events : comm_events;
        tr->ev = calloc((size_t)tr->cap, sizeof *tr->ev);
        if (!tr->ev) {
            pt_trace_free(t);
            return pt_fail(err, PT_ERR_NOMEM, "out of host memory for %d trace events", tr->cap);
        }
        if (k < ndevices) snprintf(tr->name, sizeof tr->name, "device %d", k);
        else snprintf(tr->name, sizeof tr->name, "communication");
    }
    t->origin = pt_trace_now();
    *out = t;
    return PT_OK;
}

void pt_trace_free(pt_trace *t)
{
    if (!t) return;
    if (t->tracks)
        for (int k = 0; k <= t->ndev; k++) free(t->tracks[k].ev);
    free(t->tracks);
    free(t);
}

int pt_trace_comm_track(const pt_trace *t) { return t->ndev; }

void pt_trace_name_track(pt_trace *t, int track, const char *name)
{
    if (track < 0 || track > t->ndev) return;
    snprintf(t->tracks[track].name, sizeof t->tracks[track].name, "%s", name);
}

void pt_trace_start(pt_trace *t)
{
    for (int k = 0; k <= t->ndev; k++) {
        t->tracks[k].n = 0;
        t->tracks[k].dropped = 0;
    }
    t->origin = pt_trace_now();
}

double pt_trace_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The next free slot of a track, or NULL (counted as dropped). */
static trace_event *slot(pt_trace *t, int track)
{
    if (track < 0 || track > t->ndev) return NULL;
    trace_track *tr = &t->tracks[track];
    if (tr->n >= tr->cap) {
        tr->dropped++;
        return NULL;
    }
    return &tr->ev[tr->n++];
}

void pt_trace_op(pt_trace *t, int track, const char *list, int index, const pt_op *op, double t0, double t1)
{
    trace_event *e = slot(t, track);
    if (!e) return;
    e->type = EV_OP;
    e->name = pt_op_name(op->kind);
    e->cat = list;
    e->arg_name = NULL;
    e->index = index;
    e->t0 = t0;
    e->t1 = t1;
    e->op = *op;
}

void pt_trace_span(pt_trace *t, int track, const char *name, const char *cat, const char *arg_name, int64_t arg,
                   double t0, double t1)
{
    trace_event *e = slot(t, track);
    if (!e) return;
    e->type = EV_SPAN;
    e->name = name;
    e->cat = cat;
    e->arg_name = arg_name;
    e->arg = arg;
    e->t0 = t0;
    e->t1 = t1;
}

void pt_trace_reduce(pt_trace *t, const pt_trace_reduction *r, double t0, double t1)
{
    trace_event *e = slot(t, t->ndev);
    if (!e) return;
    e->type = EV_REDUCE;
    e->name = r->bucket >= 0 ? "allreduce_bucket" : "allreduce_bn_stats";
    e->cat = "reduction";
    e->arg_name = NULL;
    e->t0 = t0;
    e->t1 = t1;
    e->red = *r;
}

/* ---------------------------------------------------------------- the file */

static void put_op_args(pt_strbuf *sb, const trace_event *e)
{
    const pt_op *op = &e->op;
    const pt_op_desc *desc = pt_op_describe(op->kind);
    pt_strbuf_puts(sb, ",\"list\":");
    pt_strbuf_json_string(sb, e->cat);
    pt_strbuf_printf(sb, ",\"index\":%d,\"operands\":{", e->index);
    size_t bytes = 0;
    int first = 1;
    for (int i = 0; i < op->nt && i < PT_OP_MAX_OPERANDS; i++) {
        const pt_tensor *x = &op->t[i];
        if (x->ndim < 1 || pt_op_operand_absent(op, i)) continue;
        bytes += pt_tensor_bytes(x);
        char key[32];
        if (desc && desc->arg[i].name) snprintf(key, sizeof key, "%s", desc->arg[i].name);
        else snprintf(key, sizeof key, "t%d", i);
        char shape[96];
        int len = snprintf(shape, sizeof shape, "%s[", pt_dtype_name(x->dtype));
        for (int d = 0; d < x->ndim && len > 0 && (size_t)len < sizeof shape; d++)
            len += snprintf(shape + len, sizeof shape - (size_t)len, "%s%lld", d ? "," : "", (long long)x->dim[d]);
        if (len > 0 && (size_t)len < sizeof shape - 1) snprintf(shape + len, sizeof shape - (size_t)len, "]");
        if (!first) pt_strbuf_putc(sb, ',');
        first = 0;
        pt_strbuf_json_string(sb, key);
        pt_strbuf_putc(sb, ':');
        pt_strbuf_json_string(sb, shape);
    }
    pt_strbuf_printf(sb, "},\"bytes\":%zu,\"flops\":", bytes);
    pt_strbuf_json_double(sb, pt_op_flops(op));
    if (op->workspace_bytes) pt_strbuf_printf(sb, ",\"workspace_bytes\":%zu", op->workspace_bytes);
    if (op->accumulate) pt_strbuf_puts(sb, ",\"accumulate\":1");
}

static void put_event(pt_strbuf *sb, const pt_trace *t, int track, const trace_event *e)
{
    double ts = (e->t0 - t->origin) * 1e6, dur = (e->t1 - e->t0) * 1e6;
    if (dur < 0) dur = 0;
    pt_strbuf_puts(sb, ",\n{\"name\":");
    pt_strbuf_json_string(sb, e->name);
    pt_strbuf_puts(sb, ",\"cat\":");
    pt_strbuf_json_string(sb, e->cat);
    pt_strbuf_printf(sb, ",\"ph\":\"X\",\"pid\":0,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,\"args\":{\"track\":", track,
                     ts, dur);
    pt_strbuf_json_string(sb, t->tracks[track].name);
    if (e->type == EV_OP) {
        put_op_args(sb, e);
    } else if (e->type == EV_SPAN) {
        if (e->arg_name) {
            pt_strbuf_putc(sb, ',');
            pt_strbuf_json_string(sb, e->arg_name);
            pt_strbuf_printf(sb, ":%lld", (long long)e->arg);
        }
    } else {
        const pt_trace_reduction *r = &e->red;
        pt_strbuf_printf(sb, ",\"event\":%d", r->event);
        if (r->bucket >= 0) pt_strbuf_printf(sb, ",\"bucket\":%d", r->bucket);
        pt_strbuf_printf(sb, ",\"floats\":%zu,\"bytes\":%zu,\"transport\":", r->floats, r->floats * sizeof(float));
        pt_strbuf_json_string(sb, r->transport ? r->transport : "");
        pt_strbuf_puts(sb, ",\"ready_list\":");
        pt_strbuf_json_string(sb, r->ready_list ? r->ready_list : "");
        pt_strbuf_printf(sb, ",\"ready_index\":%d", r->ready_index);
    }
    pt_strbuf_puts(sb, "}}");
}

static void put_track_names(pt_strbuf *sb, const pt_trace *t)
{
    pt_strbuf_puts(sb, "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":0,\"tid\":0,\"args\":{\"name\":\"polytrain\"}}");
    for (int k = 0; k <= t->ndev; k++) {
        pt_strbuf_printf(sb, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":0,\"tid\":%d,\"args\":{\"name\":", k);
        pt_strbuf_json_string(sb, t->tracks[k].name);
        pt_strbuf_printf(sb, "}},\n{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":0,\"tid\":%d,"
                             "\"args\":{\"sort_index\":%d}}",
                         k, k);
    }
}

pt_status pt_trace_write(const pt_trace *t, const char *path, const char *other_data, pt_error *err)
{
    pt_strbuf sb;
    pt_strbuf_init(&sb);
    pt_strbuf_puts(&sb, "{\"traceEvents\":[\n");
    put_track_names(&sb, t);
    int64_t dropped = 0;
    for (int k = 0; k <= t->ndev; k++) {
        const trace_track *tr = &t->tracks[k];
        for (int i = 0; i < tr->n; i++) put_event(&sb, t, k, &tr->ev[i]);
        dropped += tr->dropped;
    }
    /* The recording side never waits for the device, so its spans would show issue times:
     * the replica synchronises after every op of the traced step instead. */
    pt_strbuf_puts(&sb, "\n],\n\"displayTimeUnit\":\"ms\",\n\"otherData\":{\"ops_synchronised\":true,\"timing\":"
                        "\"every op of the traced step was followed by a device synchronisation, so an op's span "
                        "is its execution time; on asynchronous backends the traced step is slower than the "
                        "others\"");
    pt_strbuf_printf(&sb, ",\"dropped_events\":%lld", (long long)dropped);
    if (other_data && other_data[0]) {
        pt_strbuf_putc(&sb, ',');
        pt_strbuf_puts(&sb, other_data);
    }
    pt_strbuf_puts(&sb, "}}\n");
    pt_status st = pt_strbuf_check(&sb, err);
    if (st == PT_OK) {
        const void *chunks[1] = {sb.data};
        size_t sizes[1] = {sb.len};
        st = pt_write_file_atomic(path, chunks, sizes, 1, err);
    }
    pt_strbuf_free(&sb);
    return st;
}

pt_status pt_trace_check_path(const char *path, pt_error *err)
{
    if (!path || !path[0]) return pt_fail(err, PT_ERR_IO, "cannot write a trace to an empty path");
    size_t len = strlen(path);
    if (path[len - 1] == '/') return pt_fail(err, PT_ERR_IO, "cannot write '%s': the path names a directory", path);
    struct stat sb;
    if (lstat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return pt_fail(err, PT_ERR_IO, "cannot write '%s': it exists and is not a regular file", path);
    const char *slash = strrchr(path, '/');
    char probe[4200];
    int n = slash ? snprintf(probe, sizeof probe, "%.*s/.%s.probe.%ld", (int)(slash - path), path, slash + 1,
                             (long)getpid())
                  : snprintf(probe, sizeof probe, ".%s.probe.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof probe) return pt_fail(err, PT_ERR_IO, "cannot write '%s': path too long", path);
    unlink(probe);
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return pt_fail(err, PT_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    close(fd);
    if (unlink(probe) < 0)
        return pt_fail(err, PT_ERR_IO, "cannot write '%s': cannot remove a file next to it: %s", path,
                       strerror(errno));
    return PT_OK;
}
