/* log.c - formats one line into a local buffer and writes it with a single
 * fwrite, which stdio locks, so concurrent lines stay whole. JSON strings go
 * through jansson for escaping. */
#include "log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void log_init(struct log *l, FILE *f, int json)
{
    l->f = f ? f : stderr;
    l->json = json;
}

static void stamp(char *buf, size_t n)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + k, n - k, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* Copies s into buf with control bytes turned into '?', so a decoded URL
 * cannot start a new log line; text mode also turns non-ASCII into '?'. */
static const char *clean(const char *s, char *buf, size_t n, int ascii)
{
    size_t j = 0;
    for (; s && *s && j + 1 < n; s++) {
        unsigned char ch = (unsigned char)*s;
        buf[j++] = ch < 0x20 || ch == 0x7f || (ascii && ch >= 0x80) ? '?' : (char)ch;
    }
    buf[j] = 0;
    return buf;
}

/* A JSON string even from bytes that are not UTF-8. */
static json_t *jstr(const char *s)
{
    char buf[1024];
    json_t *j = json_string(clean(s, buf, sizeof buf, 0));
    return j ? j : json_string(clean(s, buf, sizeof buf, 1));
}

static void emit_json(const struct log *l, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(o);
    if (!s)
        return;
    size_t n = strlen(s);
    s[n] = '\n'; /* replaces the NUL: written with an explicit length */
    fwrite(s, 1, n + 1, l->f);
    fflush(l->f);
    free(s);
}

void log_msg(const struct log *l, const char *level, const char *fmt, ...)
{
    char msg[1024], ts[40], line[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    stamp(ts, sizeof ts);
    if (l->json) {
        json_t *o = json_object();
        json_object_set_new(o, "time", json_string(ts));
        json_object_set_new(o, "level", json_string(level));
        json_object_set_new(o, "msg", jstr(msg));
        emit_json(l, o);
        return;
    }
    char cm[1024];
    int n = snprintf(line, sizeof line, "%s %s %s\n", ts, level,
                     clean(msg, cm, sizeof cm, 0));
    if (n > (int)sizeof line - 1) {
        n = (int)sizeof line - 1;
        line[n - 1] = '\n';
    }
    fwrite(line, 1, (size_t)n, l->f);
    fflush(l->f);
}

void log_access(const struct log *l, const char *method, const char *path, int status,
                unsigned long long bytes, double ms, const char *err)
{
    char ts[40], line[1400];
    stamp(ts, sizeof ts);
    if (l->json) {
        json_t *o = json_object();
        json_object_set_new(o, "time", json_string(ts));
        json_object_set_new(o, "level", json_string("info"));
        json_object_set_new(o, "method", jstr(method));
        json_object_set_new(o, "path", jstr(path));
        json_object_set_new(o, "status", json_integer(status));
        json_object_set_new(o, "bytes", json_integer((json_int_t)bytes));
        json_object_set_new(o, "ms", json_real((double)(long long)(ms * 1000) / 1000));
        if (err)
            json_object_set_new(o, "error", jstr(err));
        emit_json(l, o);
        return;
    }
    char cm[32], cp[256], ce[640];
    int n = snprintf(line, sizeof line, "%s access %s %s %d %llu %.3fms%s%s%s\n", ts,
                     clean(method, cm, sizeof cm, 1), clean(path, cp, sizeof cp, 1), status,
                     bytes, ms, err ? " \"" : "", err ? clean(err, ce, sizeof ce, 0) : "",
                     err ? "\"" : "");
    if (n > (int)sizeof line - 1) {
        n = (int)sizeof line - 1;
        line[n - 1] = '\n';
    }
    fwrite(line, 1, (size_t)n, l->f);
    fflush(l->f);
}
