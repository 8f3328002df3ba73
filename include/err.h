/* err.h - result codes and the error handle every fallible call fills.
 * A failing function returns a negative ERR_* code and leaves a short,
 * human-readable message in e->msg; success is 0. No allocation, no I/O:
 * safe from any thread as long as each thread uses its own struct err. */
#ifndef LOSTD_ERR_H
#define LOSTD_ERR_H

enum {
    ERR_OK = 0,
    ERR_INPUT = -1,       /* bad input: malformed file, bad parameter (HTTP 400) */
    ERR_TOOBIG = -2,      /* over a size or pixel limit, scratch exhausted (413) */
    ERR_BUSY = -3,        /* no worker free in time (503) */
    ERR_IO = -4,          /* open/read/write/mmap failed */
    ERR_NOMEM = -5,       /* heap allocation failed */
    ERR_MODEL = -6,       /* checkpoint does not fit any supported model */
    ERR_UNSUPPORTED = -7, /* well-formed but not handled (415 for media types) */
    ERR_NOTFOUND = -8,    /* missing file or resource (404) */
    ERR_INTERNAL = -9,    /* a bug of ours */
    ERR_CANCELLED = -10   /* the caller withdrew the work (a cancel flag was set) */
};

#define ERR_MSG_MAX 512

struct err {
    int code;
    char msg[ERR_MSG_MAX];
};

/* Stores code and a printf-style message in e (when e is not NULL) and
 * returns code, so a failure is one line: return err_set(e, ERR_INPUT, ...). */
int err_set(struct err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the message already in e with "<prefix>: " (e.g. a file name)
 * and returns e->code. Cannot fail; truncates if needed. */
int err_prefix(struct err *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Resets e to "no error". */
void err_clear(struct err *e);

/* A stable lowercase name for a code ("input", "too_big", ...). */
const char *err_name(int code);

#endif
