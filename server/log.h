/* log.h - private to server/: the daemon's log lines on stderr, as text or
 * one JSON object per line. One access line per request (method, path,
 * status, bytes, milliseconds) and one line per error or event. Each line is
 * formatted in full and written with one call, so lines from concurrent
 * connections never interleave. Thread-safe; the struct is read-only after
 * log_init. */
#ifndef LOSTD_LOG_H
#define LOSTD_LOG_H

#include <stdio.h>

struct log {
    FILE *f;
    int json;   /* 1: JSON lines, 0: text */
};

/* Cannot fail. f NULL means stderr. */
void log_init(struct log *l, FILE *f, int json);

/* level: "info", "warn", "error". */
void log_msg(const struct log *l, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One line per finished request. path is logged without the query string;
 * err may be NULL (the message of a failed request). */
void log_access(const struct log *l, const char *method, const char *path, int status,
                unsigned long long bytes, double ms, const char *err);

#endif
