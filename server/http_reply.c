/* http_reply.c - replies of `lostd serve`: the one ERR_* -> HTTP status map,
 * JSON error bodies, CORS headers, and queueing a reply on a connection. */
#include "http_impl.h"

#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *http_list_next(const char *p, const char **item, size_t *n)
{
    while (*p == ' ' || *p == ',')
        p++;
    if (!*p)
        return NULL;
    const char *q = p;
    while (*q && *q != ',')
        q++;
    const char *end = q;
    while (end > p && end[-1] == ' ')
        end--;
    *item = p;
    *n = (size_t)(end - p);
    return q;
}

int http_status_of(int code, const char **type)
{
    switch (code) {
    case ERR_INPUT: *type = "bad_request"; return 400;
    case ERR_TOOBIG: *type = "payload_too_large"; return 413;
    case ERR_UNSUPPORTED: *type = "unsupported_media_type"; return 415;
    case ERR_BUSY: *type = "busy"; return 503;
    case ERR_NOTFOUND: *type = "not_found"; return 404;
    case ERR_CANCELLED: *type = "cancelled"; return 503; /* its client left: never sent */
    default: *type = "internal"; return 500;
    }
}

/* {"error": {"code", "type", "message"}} as heap text (free()), or NULL. */
char *http_error_json(int status, const char *type, const char *msg)
{
    json_t *root = json_object(), *e = json_object();
    json_object_set_new(e, "code", json_integer(status));
    json_object_set_new(e, "type", json_string(type));
    json_t *m = json_string(msg);
    json_object_set_new(e, "message", m ? m : json_string("(message not UTF-8)"));
    json_object_set_new(root, "error", e);
    char *s = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(7));
    json_decref(root);
    return s;
}

static void add_cors(struct req *r, struct MHD_Connection *c, struct MHD_Response *resp)
{
    const char *list = r->s->c->cors_origins;
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (!list[0])
        return;
    /* With a list, the reply depends on Origin whether it matched or not:
     * caches must key on it. */
    MHD_add_response_header(resp, "Vary", "Origin");
    if (!origin)
        return;
    if (!strcmp(list, "*")) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
        return;
    }
    size_t on = strlen(origin), n;
    const char *item;
    for (const char *p = list; (p = http_list_next(p, &item, &n));) {
        if (n == on && on && !strncmp(item, origin, on)) {
            MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
            return;
        }
    }
}

/* Queues one reply. extra: NULL-terminated name, value pairs. */
enum MHD_Result http_send(struct req *r, struct MHD_Connection *c, int status,
                                  const char *ctype, const void *body, size_t n,
                                  const char *const *extra)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(n, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    if (ctype)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    for (const char *const *h = extra; h && h[0]; h += 2)
        MHD_add_response_header(resp, h[0], h[1]);
    add_cors(r, c, resp);
    pthread_mutex_lock(&r->s->mu);
    int stopping = r->s->stopping;
    pthread_mutex_unlock(&r->s->mu);
    if (stopping)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    if (ok == MHD_YES) {
        r->replied = 1;
        r->status = status;
        r->bytes = n;
    }
    return ok;
}

enum MHD_Result http_send_json(struct req *r, struct MHD_Connection *c, int status,
                                 json_t *root, const char *const *extra)
{
    char *s = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(7));
    json_decref(root);
    if (!s)
        return MHD_NO;
    enum MHD_Result ok = http_send(r, c, status, "application/json", s, strlen(s), extra);
    free(s);
    return ok;
}

enum MHD_Result http_send_error(struct req *r, struct MHD_Connection *c, int status,
                                  const char *type, const char *const *extra,
                                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));
enum MHD_Result http_send_error(struct req *r, struct MHD_Connection *c, int status,
                                  const char *type, const char *const *extra,
                                  const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errmsg, sizeof r->errmsg, fmt, ap);
    va_end(ap);
    /* 500s say nothing about our insides; the log line has the message. */
    char *s = http_error_json(status, type, status >= 500 && status != 503 ? "internal error"
                                                                       : r->errmsg);
    if (!s)
        return MHD_NO;
    enum MHD_Result ok = http_send(r, c, status, "application/json", s, strlen(s), extra);
    free(s);
    return ok;
}

const char *const http_retry_1[] = {"Retry-After", "1", NULL};
const char *const http_retry_5[] = {"Retry-After", "5", NULL};
