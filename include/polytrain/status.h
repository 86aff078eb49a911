/* Status codes and error messages returned by every fallible polytrain call.
 * A library function never prints and never exits: it fills a pt_error and returns
 * its status, and the caller decides what to show. */
#ifndef PT_STATUS_H
#define PT_STATUS_H

#include <stddef.h>

typedef enum pt_status {
    PT_OK = 0,
    PT_ERR_INVALID = 1,     /* bad argument or option value */
    PT_ERR_IO = 2,          /* open/read/write/rename failed */
    PT_ERR_FORMAT = 3,      /* a file's content is malformed or inconsistent */
    PT_ERR_NOMEM = 4,       /* host or device allocation failed */
    PT_ERR_UNSUPPORTED = 5, /* op or feature not available on this backend/device */
    PT_ERR_BACKEND = 6,     /* a backend library call failed */
    PT_ERR_MISMATCH = 7,    /* e.g. checkpoint for another model or class count */
    PT_ERR_INTERRUPTED = 8  /* stopped on request (Ctrl-C) */
} pt_status;

typedef struct pt_error {
    pt_status status;
    char msg[1024];
} pt_error;

#if defined(__GNUC__)
#define PT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PT_PRINTF(a, b)
#endif

/* Records status and a formatted message in err (if non-NULL) and returns status. A message
 * may hold names read from files exactly as they are (control characters too): escape it
 * before showing it on a terminal (the CLI's cli_error does). */
pt_status pt_fail(pt_error *err, pt_status status, const char *fmt, ...) PT_PRINTF(3, 4);
/* Prepends "context: " to an error's message, keeping its status; returns the status. */
pt_status pt_error_wrap(pt_error *err, const char *fmt, ...) PT_PRINTF(2, 3);
void pt_error_clear(pt_error *err);
const char *pt_status_name(pt_status status);

/* Evaluate a pt_status expression; on failure return it from the enclosing function. */
#define PT_TRY(expr)                                                                     \
    do {                                                                                 \
        pt_status pt_try_s_ = (expr);                                                    \
        if (pt_try_s_ != PT_OK) return pt_try_s_;                                        \
    } while (0)

#endif
