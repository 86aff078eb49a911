/* pt_error helpers: formatting of the message a caller will show. */
#include "polytrain/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

pt_status pt_fail(pt_error *err, pt_status status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = status;
    }
    return status;
}

pt_status pt_error_wrap(pt_error *err, const char *fmt, ...)
{
    if (!err) return PT_ERR_INVALID;
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t cap = sizeof err->msg, plen = strlen(prefix), olen = strnlen(err->msg, cap - 1);
    if (plen + 3 > cap) plen = cap - 3;
    size_t keep = olen < cap - plen - 3 ? olen : cap - plen - 3;
    memmove(err->msg + plen + 2, err->msg, keep);
    err->msg[plen + 2 + keep] = '\0';
    memcpy(err->msg, prefix, plen);
    err->msg[plen] = ':';
    err->msg[plen + 1] = ' ';
    return err->status;
}

void pt_error_clear(pt_error *err)
{
    if (!err) return;
    err->status = PT_OK;
    err->msg[0] = '\0';
}

const char *pt_status_name(pt_status s)
{
    switch (s) {
    case PT_OK: return "ok";
    case PT_ERR_INVALID: return "invalid argument";
    case PT_ERR_IO: return "i/o error";
    case PT_ERR_FORMAT: return "format error";
    case PT_ERR_NOMEM: return "out of memory";
    case PT_ERR_UNSUPPORTED: return "unsupported";
    case PT_ERR_BACKEND: return "backend error";
    case PT_ERR_MISMATCH: return "mismatch";
    case PT_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown error";
}
