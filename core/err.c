/* err.c - the error handle: code plus message. Pure formatting, no I/O. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int err_set(struct err *e, int code, const char *fmt, ...)
{
    if (!e)
        return code;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}

int err_prefix(struct err *e, const char *fmt, ...)
{
    if (!e)
        return ERR_INTERNAL;
    char pre[ERR_MSG_MAX], old[ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    /* Build by hand: truncation is intended, and snprintf warns about it. */
    size_t n = strlen(pre);
    if (n > sizeof e->msg - 3)
        n = sizeof e->msg - 3;
    memcpy(e->msg, pre, n);
    e->msg[n++] = ':';
    e->msg[n++] = ' ';
    size_t m = strlen(old);
    if (m > sizeof e->msg - 1 - n)
        m = sizeof e->msg - 1 - n;
    memcpy(e->msg + n, old, m);
    e->msg[n + m] = '\0';
    return e->code;
}

void err_clear(struct err *e)
{
    if (!e)
        return;
    e->code = 0;
    e->msg[0] = '\0';
}

const char *err_name(int code)
{
    switch (code) {
    case ERR_OK: return "ok";
    case ERR_INPUT: return "invalid_input";
    case ERR_TOOBIG: return "too_large";
    case ERR_BUSY: return "busy";
    case ERR_IO: return "io";
    case ERR_NOMEM: return "out_of_memory";
    case ERR_MODEL: return "model";
    case ERR_UNSUPPORTED: return "unsupported";
    case ERR_NOTFOUND: return "not_found";
    case ERR_CANCELLED: return "cancelled";
    default: return "internal";
    }
}
