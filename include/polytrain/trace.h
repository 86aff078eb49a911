/* A timeline of one training step in the Chrome Trace Event Format (chrome://tracing,
 * ui.perfetto.dev): a track per device host thread and one for the communication thread.
 * Every event slot is allocated at creation and each track is filled only by its own thread,
 * so recording never allocates or locks; the JSON is built and written after the step.
 * Where nothing is traced, callers hold a NULL trace and pay one pointer test. */
#ifndef PT_TRACE_H
#define PT_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "polytrain/op.h"
#include "polytrain/status.h"

typedef struct pt_trace pt_trace;

/* Tracks 0..ndevices-1 are the devices (device_events slots each), track ndevices the
 * communication thread (comm_events slots). Events past a track's slots are counted, not
 * kept, and the file says how many were dropped. */
pt_status pt_trace_create(int ndevices, int device_events, int comm_events, pt_trace **out, pt_error *err);
void pt_trace_free(pt_trace *t);
int pt_trace_comm_track(const pt_trace *t);
/* The name a viewer shows for a track (copied, truncated to 127 bytes). */
void pt_trace_name_track(pt_trace *t, int track, const char *name);
/* Empties every track and makes this moment time 0. Not while a step records. */
void pt_trace_start(pt_trace *t);
/* Seconds on the clock every event is stamped with (monotonic). */
double pt_trace_now(void);

/* Op `index` of a replica's list ("forward", "backward", "update", "eval") ran from t0 to
 * t1. The caller synchronised the device after it, so the span is its execution, not its
 * issue. The op is copied (its operands' shapes go into the file). */
void pt_trace_op(pt_trace *t, int track, const char *list, int index, const pt_op *op, double t0, double t1);
/* Other host work of a device thread: waits, copies, the update. name, cat and arg_name
 * must outlive the trace (string literals); arg_name NULL: no argument. */
void pt_trace_span(pt_trace *t, int track, const char *name, const char *cat, const char *arg_name, int64_t arg,
                   double t0, double t1);

/* One reduction of the communication thread: a gradient bucket or sync-BN statistics. */
typedef struct pt_trace_reduction {
    int event;             /* position in the step's reduction order */
    int bucket;            /* gradient bucket index, -1 for sync-BN statistics */
    size_t floats;
    const char *transport; /* "backend" (its collectives) or "host" (staging rows + world) */
    const char *ready_list; /* the op after which a device has produced it: list and index */
    int ready_index;
} pt_trace_reduction;
void pt_trace_reduce(pt_trace *t, const pt_trace_reduction *r, double t0, double t1);

/* Writes {"traceEvents":[...],"displayTimeUnit":"ms","otherData":{...}} to path through
 * pt_write_file_atomic. other_data: members of the otherData object (JSON text without the
 * braces, e.g. "\"step\":2"), or NULL. Allocates: call it after the traced step. */
pt_status pt_trace_write(const pt_trace *t, const char *path, const char *other_data, pt_error *err);
/* Whether a trace can be written to path later: its directory exists and takes a new file,
 * and path is not something other than a regular file. Error: PT_ERR_IO naming path. */
pt_status pt_trace_check_path(const char *path, pt_error *err);

#endif
