/* http.c - libmicrohttpd front of `lostd serve`: routing, request bodies,
 * parameters, replies, CORS, API key, access log. Connections run one thread
 * each (so a connection may block on its job); the forward itself runs on the
 * pool's workers, which also build the reply JSON while the debug maps still
 * live in their arena. Per-request state (struct req) is allocated on the
 * first handler call and freed in exactly one place: on_completed. */
#include "http.h"
#include "analyze_json.h"
#include "cli.h"
#include "config.h"
#include "err.h"
#include "image.h"
#include "log.h"
#include "metrics.h"
#include "model.h"
#include "openapi.h"
#include "lost_opts.h"
#include "pipeline.h"
#include "pool.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef LOSTD_VERSION
#define LOSTD_VERSION "0.1.0"
#endif

#define PARAM_MAX 64                  /* bytes of one parameter value */
#define FORM_OVERHEAD (1L << 20)      /* multipart framing and fields beyond the image */
#define DISCARD_MAX (64L << 20)       /* bytes swallowed after a 413 before we hang up */
#define STATIC_MAX (16L << 20)        /* largest static file served */

struct http_server {
    const struct config *c;
    const struct log *log;
    struct MHD_Daemon *d;
    int port;
    struct metrics *metrics;
    pthread_mutex_t mu;
    pthread_cond_t idle_cv;     /* signalled when active drops to 0 */
    long active;                /* requests between first call and on_completed */
    int stopping;
    char reason[256];           /* why not ready */
    const struct model *m;      /* set once by http_attach */
    struct pool *pool;
    struct http_model_info info;
    struct pipeline_opts lost_defaults; /* --lost-config, else pipeline_opts_default */
};

/* ---------------------------------------------------------------- params */

enum {
    P_K_PATCHES, P_GRAM_BIAS, P_FEATURES, P_L2NORM, P_LAYER, P_MAX_SIDE, P_FORMAT,
    P_IMAGE_ID, P_DEBUG, P_THRESHOLD, N_PARAM
};
static const char *const param_names[N_PARAM] = {
    "k_patches", "gram_bias", "features", "l2norm", "layer", "max_side", "format",
    "image_id", "debug", "threshold"};

struct params {
    char v[N_PARAM][PARAM_MAX];
    size_t len[N_PARAM];
    unsigned char set[N_PARAM];
};

enum { FMT_DEFAULT = 0, FMT_HF, FMT_COCO };

/* ------------------------------------------------------------------ jobs */

struct discover_job {
    struct pool_job base;       /* first: the pool hands us back this pointer */
    unsigned char *data;        /* the image bytes; freed by the worker once decoded */
    size_t n;
    struct pipeline_opts opts;
    int format, debug;
    long long image_id;
    const char *model_id;       /* lives in the server */
    int analyze;                /* POST /analyze: artifact analysis instead of LOST */
    float threshold;            /* /analyze: fixed outlier threshold, 0 = automatic */
    /* out, written by the worker before it marks the job done */
    int status;
    char *body;                 /* malloc'd JSON text */
    size_t body_len;
    char errmsg[ERR_MSG_MAX];
    double ms[METRICS_N_STAGE];
};

/* --------------------------------------------------------------- request */

enum body_kind { BODY_NONE = 0, BODY_RAW, BODY_JSON, BODY_FORM };

struct req {
    struct http_server *s;
    double t0;
    int route;                  /* enum metrics_route; /analyze counts as discover */
    int analyze;                /* the path is /analyze */
    char method[16];
    char path[256];
    int status;                 /* sent, 0 = nothing sent yet */
    unsigned long long bytes;
    char errmsg[ERR_MSG_MAX];   /* for the access log */
    int replied;
    /* POST /discover */
    int kind;
    unsigned char *buf;
    size_t n, cap, limit;
    unsigned long long received;
    int fail_status;            /* a 4xx decided while receiving, sent at the end */
    const char *fail_type;
    struct MHD_PostProcessor *pp;
    int image_parts;
    struct params qp, bp;       /* query string, body */
    struct discover_job *job;
};

/* -------------------------------------------------------------- helpers */

static int now_status(int code, const char **type)
{
    switch (code) {
    case ERR_INPUT: *type = "bad_request"; return 400;
    case ERR_TOOBIG: *type = "payload_too_large"; return 413;
    case ERR_UNSUPPORTED: *type = "unsupported_media_type"; return 415;
    case ERR_BUSY: *type = "busy"; return 503;
    case ERR_NOTFOUND: *type = "not_found"; return 404;
    default: *type = "internal"; return 500;
    }
}

/* {"error": {"code", "type", "message"}} as heap text (free()), or NULL. */
static char *error_json(int status, const char *type, const char *msg)
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
    if (!list[0] || !origin)
        return;
    if (!strcmp(list, "*")) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
        return;
    }
    size_t on = strlen(origin);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *q = p;
        while (*q && *q != ',')
            q++;
        const char *end = q;
        while (end > p && end[-1] == ' ')
            end--;
        if ((size_t)(end - p) == on && on && !strncmp(p, origin, on)) {
            MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
            MHD_add_response_header(resp, "Vary", "Origin");
            return;
        }
        p = q;
    }
}

/* Queues one reply. extra: NULL-terminated name, value pairs. */
static enum MHD_Result send_reply(struct req *r, struct MHD_Connection *c, int status,
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

static enum MHD_Result send_json(struct req *r, struct MHD_Connection *c, int status,
                                 json_t *root, const char *const *extra)
{
    char *s = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(7));
    json_decref(root);
    if (!s)
        return MHD_NO;
    enum MHD_Result ok = send_reply(r, c, status, "application/json", s, strlen(s), extra);
    free(s);
    return ok;
}

static enum MHD_Result send_error(struct req *r, struct MHD_Connection *c, int status,
                                  const char *type, const char *const *extra,
                                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static enum MHD_Result send_error(struct req *r, struct MHD_Connection *c, int status,
                                  const char *type, const char *const *extra,
                                  const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errmsg, sizeof r->errmsg, fmt, ap);
    va_end(ap);
    /* 500s say nothing about our insides; the log line has the message. */
    char *s = error_json(status, type, status >= 500 && status != 503 ? "internal error"
                                                                       : r->errmsg);
    if (!s)
        return MHD_NO;
    enum MHD_Result ok = send_reply(r, c, status, "application/json", s, strlen(s), extra);
    free(s);
    return ok;
}

static const char *const retry_1[] = {"Retry-After", "1", NULL};
static const char *const retry_5[] = {"Retry-After", "5", NULL};

/* ------------------------------------------------------------ readiness */

/* 1 ready; 0 not, with the reason in buf. */
static int is_ready(struct http_server *s, char *buf, size_t n)
{
    pthread_mutex_lock(&s->mu);
    struct pool *p = s->pool;
    int stopping = s->stopping;
    snprintf(buf, n, "%s", s->reason);
    pthread_mutex_unlock(&s->mu);
    if (stopping) {
        snprintf(buf, n, "shutting down");
        return 0;
    }
    if (!p)
        return 0;
    struct err e;
    err_clear(&e);
    int rc = pool_ready(p, &e);
    if (rc < 0) {
        snprintf(buf, n, "warm-up failed: %.200s", e.msg);
        return 0;
    }
    if (rc == 0) {
        snprintf(buf, n, "warming up");
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------ endpoints */

static enum MHD_Result get_health(struct req *r, struct MHD_Connection *c, int live)
{
    char why[256];
    json_t *o = json_object();
    if (live) {
        json_object_set_new(o, "status", json_string("live"));
        return send_json(r, c, 200, o, NULL);
    }
    if (is_ready(r->s, why, sizeof why)) {
        json_object_set_new(o, "status", json_string("ready"));
        return send_json(r, c, 200, o, NULL);
    }
    json_t *e = json_object();
    json_object_set_new(e, "code", json_integer(503));
    json_object_set_new(e, "type", json_string("not_ready"));
    json_object_set_new(e, "message", json_string(why));
    json_object_set_new(o, "status", json_string("not_ready"));
    json_object_set_new(o, "reason", json_string(why));
    json_object_set_new(o, "error", e);
    snprintf(r->errmsg, sizeof r->errmsg, "not ready: %s", why);
    return send_json(r, c, 503, o, retry_5);
}

static enum MHD_Result get_models(struct req *r, struct MHD_Connection *c)
{
    struct http_server *s = r->s;
    char why[256];
    pthread_mutex_lock(&s->mu);
    const struct model *m = s->m; /* with s->info: written once, under mu */
    pthread_mutex_unlock(&s->mu);
    if (!m) {
        is_ready(s, why, sizeof why);
        return send_error(r, c, 503, "not_ready", retry_5, "model not loaded yet: %s", why);
    }
    const struct model_config *mc = model_config(m);
    const struct config *cf = s->c;
    json_t *mo = json_object();
    json_object_set_new(mo, "id", json_string(s->info.id));
    json_object_set_new(mo, "object", json_string("model"));
    json_object_set_new(mo, "architecture", json_string(mc->arch));
    json_object_set_new(mo, "family", json_string(model_family_name(mc->family)));
    json_object_set_new(mo, "naming", json_string(model_naming_name(mc->naming)));
    json_object_set_new(mo, "registers", json_integer(mc->n_reg));
    json_object_set_new(mo, "patch", json_integer(mc->patch));
    json_object_set_new(mo, "dim", json_integer(mc->dim));
    json_object_set_new(mo, "depth", json_integer(mc->depth));
    json_object_set_new(mo, "heads", json_integer(mc->n_head));
    json_object_set_new(mo, "params", json_integer((json_int_t)model_n_params(m)));
    json_object_set_new(mo, "sha256", json_string(s->info.sha256));
    json_t *ld = json_object();
    const struct pipeline_opts *lo = &s->lost_defaults;
    json_object_set_new(ld, "k_patches", json_integer(lo->lost.k_patches));
    json_object_set_new(ld, "gram_bias", json_real(lo->lost.gram_bias));
    json_object_set_new(ld, "features", json_string(model_feature_name(
        lo->feature >= 0 ? (enum model_feature)lo->feature : mc->lost_feature)));
    json_object_set_new(ld, "l2norm", json_boolean(lo->lost.l2norm));
    json_object_set_new(ld, "layer", json_integer(lo->layer));
    json_object_set_new(mo, "lost_defaults", ld);
    json_t *lim = json_object();
    json_object_set_new(lim, "max_upload", json_integer(cf->max_upload));
    json_object_set_new(lim, "max_pixels", json_integer(cf->max_pixels));
    json_object_set_new(lim, "max_side", json_integer(cf->max_side));
    json_object_set_new(lim, "max_patches",
                        json_integer(pipeline_max_patches(m, (int)cf->max_side)));
    json_object_set_new(lim, "timeout_s", json_integer(cf->timeout));
    json_object_set_new(mo, "limits", lim);
    json_t *root = json_object(), *data = json_array();
    json_array_append_new(data, mo);
    json_object_set_new(root, "object", json_string("list"));
    json_object_set_new(root, "data", data);
    return send_json(r, c, 200, root, NULL);
}

static enum MHD_Result get_version(struct req *r, struct MHD_Connection *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string("lostd"));
    json_object_set_new(o, "version", json_string(LOSTD_VERSION));
    json_object_set_new(o, "libmicrohttpd", json_string(MHD_get_version()));
    json_object_set_new(o, "jansson", json_string(JANSSON_VERSION));
    json_object_set_new(o, "libcurl", json_string(curl_version_info(CURLVERSION_NOW)->version));
    return send_json(r, c, 200, o, NULL);
}

static enum MHD_Result get_metrics(struct req *r, struct MHD_Connection *c)
{
    struct http_server *s = r->s;
    struct metrics_gauges g = {0};
    char why[8];
    g.queue_cap = s->c->queue;
    g.ready = is_ready(s, why, sizeof why);
    pthread_mutex_lock(&s->mu);
    struct pool *p = s->pool;
    pthread_mutex_unlock(&s->mu);
    if (p)
        pool_stats(p, &g.queue_depth, &g.in_flight, &g.workers);
    size_t n;
    char *text = metrics_render(s->metrics, &g, &n);
    if (!text)
        return send_error(r, c, 500, "internal", NULL, "out of memory for /metrics");
    enum MHD_Result ok = send_reply(r, c, 200, "text/plain; version=0.0.4; charset=utf-8",
                                    text, n, NULL);
    free(text);
    return ok;
}

static enum MHD_Result get_openapi(struct req *r, struct MHD_Connection *c)
{
    const char *doc = openapi_json();
    return send_reply(r, c, 200, "application/json", doc, strlen(doc), NULL);
}

/* The demo page: a fixed list, never a path made from the URL. */
static const struct {
    const char *url, *file, *ctype;
} static_files[] = {
    {"/", "index.html", "text/html; charset=utf-8"},
    {"/index.html", "index.html", "text/html; charset=utf-8"},
    {"/app.js", "app.js", "text/javascript; charset=utf-8"},
    {"/style.css", "style.css", "text/css; charset=utf-8"},
    {"/samples/voc07_000236.jpg", "samples/voc07_000236.jpg", "image/jpeg"},
    {"/samples/shapes.jpg", "samples/shapes.jpg", "image/jpeg"},
    {"/samples/disc.png", "samples/disc.png", "image/png"},
};
#define N_STATIC (sizeof static_files / sizeof static_files[0])

static int static_index(const char *url)
{
    for (size_t i = 0; i < N_STATIC; i++)
        if (!strcmp(url, static_files[i].url))
            return (int)i;
    return -1;
}

static enum MHD_Result get_static(struct req *r, struct MHD_Connection *c, int idx)
{
    char path[CONFIG_STR_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", r->s->c->static_dir, static_files[idx].file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > STATIC_MAX) {
        if (fd >= 0)
            close(fd);
        return send_error(r, c, 404, "not_found", NULL, "%s is not installed",
                          static_files[idx].file);
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = malloc(n ? n : 1);
    while (buf && got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k <= 0) {
            if (k < 0 && errno == EINTR)
                continue;
            break;
        }
        got += (size_t)k;
    }
    close(fd);
    if (!buf || got != n) {
        free(buf);
        return send_error(r, c, 500, "internal", NULL, "cannot read %s", path);
    }
    static const char *const hdr[] = {"Cache-Control", "no-cache", NULL};
    enum MHD_Result ok = send_reply(r, c, 200, static_files[idx].ctype, buf, n, hdr);
    free(buf);
    return ok;
}

/* ------------------------------------------------------- POST /discover */

static int param_index(const char *key)
{
    for (int i = 0; i < N_PARAM; i++)
        if (!strcmp(key, param_names[i]))
            return i;
    return -1;
}

/* Stores (part of) a parameter value at offset off. 0, or -1 with r->errmsg. */
static int param_put(struct req *r, struct params *p, const char *key, const char *data,
                     size_t off, size_t size)
{
    int i = param_index(key);
    if (i < 0) {
        snprintf(r->errmsg, sizeof r->errmsg, "unknown parameter '%.64s' (known: k_patches, "
                 "gram_bias, features, l2norm, layer, max_side, format, image_id, debug, "
                 "threshold)", key);
        return -1;
    }
    if (off != p->len[i] && !(off == 0 && p->set[i])) {
        snprintf(r->errmsg, sizeof r->errmsg, "parameter '%s' given in pieces out of order",
                 key);
        return -1;
    }
    if (off == 0)
        p->len[i] = 0;
    if (size && memchr(data, 0, size)) {
        snprintf(r->errmsg, sizeof r->errmsg, "parameter '%s' contains a NUL byte", key);
        return -1;
    }
    if (p->len[i] + size >= PARAM_MAX) {
        snprintf(r->errmsg, sizeof r->errmsg, "parameter '%s' is longer than %d bytes", key,
                 PARAM_MAX - 1);
        return -1;
    }
    if (size) /* data may be NULL for an empty field */
        memcpy(p->v[i] + p->len[i], data, size);
    p->len[i] += size;
    p->v[i][p->len[i]] = 0;
    p->set[i] = 1;
    return 0;
}

static void fail(struct req *r, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(struct req *r, int status, const char *type, const char *fmt, ...)
{
    if (r->fail_status)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errmsg, sizeof r->errmsg, fmt, ap);
    va_end(ap);
    r->fail_status = status;
    r->fail_type = type;
}

static enum MHD_Result on_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    (void)kind;
    struct req *r = cls;
    if (r->fail_status)
        return MHD_NO;
    if (!value || !*value) /* "?debug" alone means on */
        value = "1";
    if (param_put(r, &r->qp, key, value, 0, strlen(value))) {
        r->fail_status = 400;
        r->fail_type = "bad_request";
        return MHD_NO;
    }
    return MHD_YES;
}

static int append(struct req *r, const char *data, size_t size)
{
    if (size == 0) /* an empty form part: data and r->buf may both be NULL */
        return 0;
    if (size > r->limit - r->n) {
        fail(r, 413, "payload_too_large", "the upload is over the %zu-byte limit", r->limit);
        return -1;
    }
    if (r->n + size > r->cap) {
        size_t cap = r->cap ? r->cap : 65536;
        while (cap < r->n + size)
            cap *= 2;
        if (cap > r->limit)
            cap = r->limit;
        unsigned char *b = realloc(r->buf, cap);
        if (!b) {
            fail(r, 503, "busy", "out of memory for the upload");
            return -1;
        }
        r->buf = b;
        r->cap = cap;
    }
    memcpy(r->buf + r->n, data, size);
    r->n += size;
    return 0;
}

static enum MHD_Result on_form_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *filename, const char *content_type,
                                     const char *transfer_encoding, const char *data,
                                     uint64_t off, size_t size)
{
    (void)kind;
    (void)filename;
    (void)content_type;
    (void)transfer_encoding;
    struct req *r = cls;
    if (r->fail_status || !key)
        return MHD_YES;
    if (!strcmp(key, "image") || !strcmp(key, "file")) {
        if (off == 0 && ++r->image_parts > 1) {
            fail(r, 400, "bad_request", "more than one image in the form");
            return MHD_YES;
        }
        append(r, data, size);
        return MHD_YES;
    }
    if (param_put(r, &r->bp, key, data, (size_t)off, size)) {
        r->fail_status = 400;
        r->fail_type = "bad_request";
    }
    return MHD_YES;
}

static int ieq_prefix(const char *s, const char *p)
{
    size_t n = strlen(p);
    return !strncasecmp(s, p, n) && (s[n] == 0 || s[n] == ';' || s[n] == ' ');
}

static int key_matches(const char *given, const char *want)
{
    /* Constant time in the length of the wanted key. */
    size_t n = strlen(want), g = given ? strlen(given) : 0;
    unsigned d = (unsigned)(n != g);
    for (size_t i = 0; i < n; i++)
        d |= (unsigned char)want[i] ^ (unsigned char)(i < g ? given[i] : 0);
    return given && d == 0;
}

/* First call of POST /discover: everything that can be refused before a
 * single byte of the body is read. */
static enum MHD_Result discover_begin(struct req *r, struct MHD_Connection *c, int stopping)
{
    struct http_server *s = r->s;
    const struct config *cf = s->c;
    if (stopping) {
        metrics_reject(s->metrics, METRICS_REJECT_SHUTTING_DOWN);
        return send_error(r, c, 503, "shutting_down", retry_5, "the server is shutting down");
    }
    if (cf->api_key[0]) {
        const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        const char *x = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-API-Key");
        const char *given = x;
        if (!given && auth && !strncasecmp(auth, "Bearer ", 7))
            given = auth + 7;
        if (!key_matches(given, cf->api_key)) {
            metrics_reject(s->metrics, METRICS_REJECT_UNAUTHORIZED);
            static const char *const h[] = {"WWW-Authenticate", "Bearer", NULL};
            return send_error(r, c, 401, "unauthorized", h,
                              "missing or wrong API key (Authorization: Bearer KEY, or "
                              "X-API-Key: KEY)");
        }
    }
    char why[256];
    if (!is_ready(s, why, sizeof why)) {
        metrics_reject(s->metrics, METRICS_REJECT_NOT_READY);
        return send_error(r, c, 503, "not_ready", retry_5, "not ready: %s", why);
    }
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_TYPE);
    size_t limit = (size_t)cf->max_upload;
    if (!ct || !*ct || ieq_prefix(ct, "image/jpeg") || ieq_prefix(ct, "image/jpg") ||
        ieq_prefix(ct, "image/png") || ieq_prefix(ct, "application/octet-stream")) {
        r->kind = BODY_RAW;
    } else if (ieq_prefix(ct, "application/json")) {
        r->kind = BODY_JSON;
        limit = limit / 3 * 4 + 8 + 65536; /* base64 plus the parameters */
    } else if (ieq_prefix(ct, "multipart/form-data") ||
               ieq_prefix(ct, "application/x-www-form-urlencoded")) {
        r->kind = BODY_FORM;
    } else {
        metrics_reject(s->metrics, METRICS_REJECT_UNSUPPORTED);
        static const char *const h[] = {"Accept-Post", "image/jpeg, image/png, "
                                        "multipart/form-data, application/json", NULL};
        return send_error(r, c, 415, "unsupported_media_type", h,
                          "Content-Type '%.100s' is not accepted: send image/jpeg, image/png,"
                          " multipart/form-data (field 'image') or application/json", ct);
    }
    r->limit = limit;
    unsigned long long body_cap = limit + (r->kind == BODY_FORM ? FORM_OVERHEAD : 0);
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(cl, &end, 10);
        if (!errno && end != cl && !*end && v > body_cap) {
            metrics_reject(s->metrics, METRICS_REJECT_TOO_LARGE);
            return send_error(r, c, 413, "payload_too_large",
                              NULL, "the body is %llu bytes, the limit is %llu", v, body_cap);
        }
        if (!errno && end != cl && !*end && r->kind != BODY_FORM && v > 0) {
            r->buf = malloc((size_t)v);
            r->cap = r->buf ? (size_t)v : 0;
        }
    }
    if (r->kind == BODY_FORM) {
        r->pp = MHD_create_post_processor(c, 65536, on_form_field, r);
        if (!r->pp) {
            metrics_reject(s->metrics, METRICS_REJECT_BAD_REQUEST);
            return send_error(r, c, 400, "bad_request", NULL,
                              "cannot parse this form (multipart boundary missing?)");
        }
    }
    return MHD_YES;
}

static enum MHD_Result discover_feed(struct req *r, struct MHD_Connection *c,
                                     const char *data, size_t size)
{
    r->received += size;
    if (r->fail_status) {
        /* Already refused: swallow the rest, up to a point, so the client
         * can read our answer; then hang up. */
        if (r->received > r->limit + FORM_OVERHEAD + DISCARD_MAX)
            return MHD_NO;
        return MHD_YES;
    }
    if (r->kind == BODY_FORM) {
        if (r->received > r->limit + FORM_OVERHEAD)
            fail(r, 413, "payload_too_large", "the form is over the %zu-byte limit",
                 r->limit + FORM_OVERHEAD);
        else if (MHD_post_process(r->pp, data, size) != MHD_YES)
            fail(r, 400, "bad_request", "malformed form body");
    } else {
        append(r, data, size);
    }
    if (r->fail_status == 413) {
        /* Answer now if libmicrohttpd lets us (it then discards the rest of
         * the body); otherwise the answer goes out when the body ends. */
        char msg[ERR_MSG_MAX];
        memcpy(msg, r->errmsg, sizeof msg);
        if (send_error(r, c, 413, "payload_too_large", NULL, "%s", msg) == MHD_YES)
            metrics_reject(r->s->metrics, METRICS_REJECT_TOO_LARGE);
    }
    return MHD_YES;
}

/* Parses the parameters into the job. 0, or -1 with r->errmsg (a 400). */
static int parse_params(struct req *r, struct discover_job *j)
{
    const struct model_config *mc = model_config(r->s->m);
    const struct config *cf = r->s->c;
    j->opts = r->s->lost_defaults;
    j->opts.given = 0;
    j->opts.max_side = (int)cf->max_side;
    j->opts.max_pixels = cf->max_pixels;
    j->format = FMT_DEFAULT;
    for (int i = 0; i < N_PARAM; i++) {
        const struct params *p = r->bp.set[i] ? &r->bp : r->qp.set[i] ? &r->qp : NULL;
        if (!p)
            continue;
        const char *v = p->v[i];
        const char *name = param_names[i];
        char *end;
        long long x = 0;
        double d = 0;
        int is_int = 0, is_bool = -1;
        if ((v[0] >= '0' && v[0] <= '9') || (v[0] == '-' && v[1] >= '0' && v[1] <= '9')) {
            errno = 0;
            x = strtoll(v, &end, 10);
            is_int = !errno && !*end;
        }
        if (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") ||
            !strcasecmp(v, "on"))
            is_bool = 1;
        else if (!strcmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no") ||
                 !strcasecmp(v, "off"))
            is_bool = 0;
        switch (i) {
        case P_K_PATCHES:
            if (!is_int || x < 1 || x > 1000000)
                goto bad_int;
            j->opts.lost.k_patches = (int)x;
            break;
        case P_LAYER:
            if (!is_int || x < -mc->depth || x >= mc->depth) {
                snprintf(r->errmsg, sizeof r->errmsg, "layer must be an integer in %d..%d, "
                         "got '%s'", -mc->depth, mc->depth - 1, v);
                return -1;
            }
            j->opts.layer = (int)x;
            break;
        case P_MAX_SIDE:
            if (!is_int || x < mc->patch || x > cf->max_side) {
                snprintf(r->errmsg, sizeof r->errmsg, "max_side must be an integer in %d..%ld,"
                         " got '%s'", mc->patch, cf->max_side, v);
                return -1;
            }
            j->opts.max_side = (int)x;
            break;
        case P_IMAGE_ID:
            if (!is_int || x < 0)
                goto bad_int;
            j->image_id = x;
            break;
        case P_GRAM_BIAS:
            errno = 0;
            d = strtod(v, &end);
            if (!*v || *end || errno || !isfinite(d) || fabs(d) > 1e6) {
                snprintf(r->errmsg, sizeof r->errmsg, "gram_bias must be a finite number in "
                         "-1e6..1e6, got '%s'", v);
                return -1;
            }
            j->opts.lost.gram_bias = (float)d;
            break;
        case P_FEATURES: {
            int f = model_feature_parse(v);
            if (f < 0) {
                snprintf(r->errmsg, sizeof r->errmsg, "features must be k, q or v, got '%s'",
                         v);
                return -1;
            }
            j->opts.feature = f;
            break;
        }
        case P_L2NORM:
        case P_DEBUG:
            if (is_bool < 0) {
                snprintf(r->errmsg, sizeof r->errmsg, "%s must be 0/1 or true/false, got '%s'",
                         name, v);
                return -1;
            }
            if (i == P_L2NORM)
                j->opts.lost.l2norm = is_bool;
            else
                j->debug = is_bool;
            break;
        case P_THRESHOLD:
            errno = 0;
            d = strtod(v, &end);
            if (!r->analyze || !*v || *end || errno || !isfinite(d) || d < 0) {
                snprintf(r->errmsg, sizeof r->errmsg, "threshold (POST /analyze only) must be "
                         "a number >= 0, 0 = automatic, got '%s'", v);
                return -1;
            }
            j->threshold = (float)d;
            break;
        case P_FORMAT:
            if (!strcmp(v, "json") || !strcmp(v, "default"))
                j->format = FMT_DEFAULT;
            else if (!strcmp(v, "hf"))
                j->format = FMT_HF;
            else if (!strcmp(v, "coco"))
                j->format = FMT_COCO;
            else {
                snprintf(r->errmsg, sizeof r->errmsg, "format must be json, hf or coco, got "
                         "'%s'", v);
                return -1;
            }
            break;
        }
        continue;
    bad_int:
        snprintf(r->errmsg, sizeof r->errmsg, "%s must be an integer %s, got '%s'", name,
                 i == P_IMAGE_ID ? ">= 0" : "in 1..1000000", v);
        return -1;
    }
    j->opts.debug = j->debug && j->format == FMT_DEFAULT;
    return 0;
}

/* Reads {"inputs": "<base64 or data: URL>", "parameters": {...}} into r->buf
 * and r->bp. 0, or an HTTP status with r->errmsg. */
static int parse_json_body(struct req *r)
{
    json_error_t jerr;
    json_t *root = json_loadb((const char *)r->buf, r->n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(r->errmsg, sizeof r->errmsg, "bad JSON at line %d: %s", jerr.line, jerr.text);
        return 400;
    }
    int status = 400;
    json_t *in = json_object_get(root, "inputs");
    json_t *params = json_object_get(root, "parameters");
    const char *key;
    json_t *val;
    if (!json_is_object(root) || !json_is_string(in)) {
        snprintf(r->errmsg, sizeof r->errmsg, "expected {\"inputs\": \"<base64 image>\", "
                 "\"parameters\": {...}}");
        goto out;
    }
    if (params && !json_is_object(params)) {
        snprintf(r->errmsg, sizeof r->errmsg, "\"parameters\" must be an object");
        goto out;
    }
    json_object_foreach(params, key, val) {
        char tmp[PARAM_MAX];
        if (json_is_null(val))
            continue;
        if (json_is_integer(val))
            snprintf(tmp, sizeof tmp, "%" JSON_INTEGER_FORMAT, json_integer_value(val));
        else if (json_is_real(val))
            snprintf(tmp, sizeof tmp, "%.17g", json_real_value(val));
        else if (json_is_boolean(val))
            snprintf(tmp, sizeof tmp, "%d", json_is_true(val));
        else if (json_is_string(val) && json_string_length(val) < PARAM_MAX)
            snprintf(tmp, sizeof tmp, "%s", json_string_value(val));
        else {
            snprintf(r->errmsg, sizeof r->errmsg, "parameter '%.64s' must be a number, a "
                     "boolean or a short string", key);
            goto out;
        }
        if (param_put(r, &r->bp, key, tmp, 0, strlen(tmp)))
            goto out;
    }
    const char *b64 = json_string_value(in);
    size_t n = json_string_length(in);
    if (!strncmp(b64, "data:", 5)) {
        const char *comma = memchr(b64, ',', n);
        if (!comma || !memmem(b64, (size_t)(comma - b64), ";base64", 7)) {
            snprintf(r->errmsg, sizeof r->errmsg, "a data: URL in \"inputs\" must be base64");
            goto out;
        }
        n -= (size_t)(comma + 1 - b64);
        b64 = comma + 1;
    }
    size_t cap = (size_t)r->s->c->max_upload;
    unsigned char *img = malloc(cap < n ? cap + 1 : n + 1);
    if (!img) {
        snprintf(r->errmsg, sizeof r->errmsg, "out of memory for the image");
        status = 503;
        goto out;
    }
    long got = http_base64_decode(b64, n, img, cap);
    if (got < 0) {
        free(img);
        if (got == -2) {
            snprintf(r->errmsg, sizeof r->errmsg, "the image is over the %zu-byte limit", cap);
            status = 413;
        } else {
            snprintf(r->errmsg, sizeof r->errmsg, "\"inputs\" is not valid base64");
        }
        goto out;
    }
    free(r->buf);
    r->buf = img;
    r->n = (size_t)got;
    r->cap = cap;
    status = 0;
out:
    json_decref(root);
    return status;
}

static double r3(double x) { return round(x * 1000) / 1000; }

static json_t *box_json(const int *b)
{
    json_t *o = json_object();
    json_object_set_new(o, "xmin", json_integer(b[0]));
    json_object_set_new(o, "ymin", json_integer(b[1]));
    json_object_set_new(o, "xmax", json_integer(b[2]));
    json_object_set_new(o, "ymax", json_integer(b[3]));
    return o;
}

/* Builds the reply of one successful run (in the worker, while the maps in
 * res still live in its arena). */
static json_t *discover_reply(const struct discover_job *j, const struct pipeline_result *res)
{
    const struct lost_result *L = &res->lost;
    int n = res->grid_h * res->grid_w;
    /* LOST has no calibrated confidence; the score is how rare the seed is:
     * 1 - degree / (N - 1), so 1 when it correlates with no other patch. */
    double score = n > 1 ? 1.0 - (double)L->seed_degree / (n - 1) : 1.0;
    score = r3(score);
    if (j->format == FMT_COCO) {
        json_t *e = json_object(), *bb = json_array();
        json_array_append_new(bb, json_integer(L->box[0]));
        json_array_append_new(bb, json_integer(L->box[1]));
        json_array_append_new(bb, json_integer(L->box[2] - L->box[0]));
        json_array_append_new(bb, json_integer(L->box[3] - L->box[1]));
        json_object_set_new(e, "image_id", json_integer(j->image_id));
        json_object_set_new(e, "category_id", json_integer(1));
        json_object_set_new(e, "bbox", bb);
        json_object_set_new(e, "score", json_real(score));
        json_t *a = json_array();
        json_array_append_new(a, e);
        return a;
    }
    json_t *obj = json_object();
    json_object_set_new(obj, "score", json_real(score));
    json_object_set_new(obj, "label", json_string("object"));
    json_object_set_new(obj, "box", box_json(L->box));
    json_t *objects = json_array();
    json_array_append_new(objects, obj);
    if (j->format == FMT_HF)
        return objects;

    json_t *root = json_object();
    json_object_set_new(root, "objects", objects);
    json_t *im = json_object();
    json_object_set_new(im, "width", json_integer(res->img_w));
    json_object_set_new(im, "height", json_integer(res->img_h));
    json_object_set_new(root, "image", im);
    json_t *sd = json_object();
    json_object_set_new(sd, "index", json_integer(L->seed));
    json_object_set_new(sd, "row", json_integer(L->seed / res->grid_w));
    json_object_set_new(sd, "col", json_integer(L->seed % res->grid_w));
    json_object_set_new(sd, "degree", json_integer(L->seed_degree));
    json_object_set_new(sd, "n_similar", json_integer(L->n_similar));
    json_object_set_new(sd, "background", json_boolean(L->seed_background));
    json_object_set_new(root, "seed", sd);
    json_t *g = json_object();
    json_object_set_new(g, "rows", json_integer(res->grid_h));
    json_object_set_new(g, "cols", json_integer(res->grid_w));
    json_object_set_new(g, "patch", json_integer(res->patch));
    json_object_set_new(g, "width", json_integer(res->run_w));
    json_object_set_new(g, "height", json_integer(res->run_h));
    json_object_set_new(g, "scale_x", json_real(res->scale_x));
    json_object_set_new(g, "scale_y", json_real(res->scale_y));
    json_object_set_new(root, "grid", g);
    json_object_set_new(root, "model", json_string(j->model_id));
    json_t *pa = json_object();
    json_object_set_new(pa, "k_patches", json_integer(j->opts.lost.k_patches));
    json_object_set_new(pa, "gram_bias", json_real(j->opts.lost.gram_bias));
    json_object_set_new(pa, "features", json_string(model_feature_name(res->feature)));
    json_object_set_new(pa, "l2norm", json_boolean(j->opts.lost.l2norm));
    json_object_set_new(pa, "layer", json_integer(res->layer));
    json_object_set_new(pa, "max_side", json_integer(j->opts.max_side));
    json_object_set_new(root, "parameters", pa);
    json_t *t = json_object();
    json_object_set_new(t, "queue", json_real(r3(j->ms[METRICS_STAGE_QUEUE])));
    json_object_set_new(t, "decode", json_real(r3(res->ms_decode)));
    json_object_set_new(t, "preprocess", json_real(r3(res->ms_preprocess)));
    json_object_set_new(t, "forward", json_real(r3(res->ms_forward)));
    json_object_set_new(t, "lost", json_real(r3(res->ms_lost)));
    json_object_set_new(t, "total", json_real(r3(res->ms_decode + res->ms_preprocess +
                                                 res->ms_forward + res->ms_lost)));
    json_object_set_new(root, "timings_ms", t);
    if (j->debug) {
        json_t *dbg = json_object();
        json_t *mask = json_array(), *deg = json_array(), *aff = json_array();
        json_t *tn = json_array(), *rn = json_array();
        for (int i = 0; i < n; i++) {
            json_array_append_new(mask, json_integer(L->mask ? L->mask[i] : 0));
            json_array_append_new(deg, json_integer(L->degree ? L->degree[i] : 0));
            json_array_append_new(aff, json_real(L->affinity ? r3(L->affinity[i]) : 0));
            json_array_append_new(tn, json_real(res->token_norms ? r3(res->token_norms[i]) : 0));
        }
        for (int i = 0; res->register_norms && i < res->n_reg; i++)
            json_array_append_new(rn, json_real(r3(res->register_norms[i])));
        json_t *sb = json_array(), *bf = json_array();
        for (int k = 0; k < 4; k++) {
            json_array_append_new(sb, json_integer(L->seed_box[k]));
            json_array_append_new(bf, json_integer(L->box_feat[k]));
        }
        json_object_set_new(dbg, "seed", json_integer(L->seed));
        json_object_set_new(dbg, "seed_box", sb);
        json_object_set_new(dbg, "box_patches", bf);
        json_object_set_new(dbg, "mask", mask);
        json_object_set_new(dbg, "degree", deg);
        json_object_set_new(dbg, "affinity", aff);
        json_object_set_new(dbg, "token_norms", tn);
        json_object_set_new(dbg, "register_norms", rn);
        json_object_set_new(root, "debug", dbg);
    }
    return root;
}

/* A worker's reply: the error body for rc != 0, else root (consumed) as
 * compact JSON with 7 significant digits plus extra_flags; 500 when the
 * body cannot be built. */
static void set_reply(struct discover_job *j, int rc, const struct err *e, json_t *root,
                      size_t extra_flags)
{
    if (rc) {
        const char *type;
        j->status = now_status(rc, &type);
        snprintf(j->errmsg, sizeof j->errmsg, "%s", e->msg);
        j->body = error_json(j->status, type, j->status == 500 ? "internal error" : e->msg);
    } else {
        j->body = root ? json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(7) | extra_flags)
                       : NULL;
        json_decref(root);
        j->status = 200;
    }
    if (!j->body) {
        j->status = 500;
        snprintf(j->errmsg, sizeof j->errmsg, "out of memory for the reply");
    } else {
        j->body_len = strlen(j->body);
    }
}

/* POST /analyze on a worker: server/analyze_json.c builds the reply. */
static void analyze_run(struct discover_job *j, const struct model *m, struct vit_work *w,
                        struct arena *a)
{
    struct err e;
    err_clear(&e);
    struct analyze_json_opts ao = {.threshold = j->threshold, .max_side = j->opts.max_side,
                                   .max_pixels = j->opts.max_pixels};
    json_t *root = NULL;
    double t0 = cli_now_ms();
    int rc = analyze_json_bytes(m, w, a, j->data, j->n, &ao, &root, &e);
    free(j->data);
    j->data = NULL;
    j->ms[METRICS_STAGE_FORWARD] = rc ? 0 : cli_now_ms() - t0;
    if (!rc)
        json_object_set_new(root, "model", json_string(j->model_id));
    set_reply(j, rc, &e, root, JSON_PRESERVE_ORDER);
}

static void discover_run(struct pool_job *pj, const struct model *m, struct vit_work *w,
                         struct arena *a)
{
    struct discover_job *j = (struct discover_job *)pj;
    struct pipeline_result res;
    struct err e;
    err_clear(&e);
    j->ms[METRICS_STAGE_QUEUE] = cli_now_ms() - pj->t_queued;
    if (j->analyze) {
        analyze_run(j, m, w, a);
        return;
    }
    int rc = pipeline_run_bytes(m, w, a, j->data, j->n, &j->opts, &res, &e);
    free(j->data);
    j->data = NULL;
    j->ms[METRICS_STAGE_DECODE] = res.ms_decode;
    j->ms[METRICS_STAGE_PREPROCESS] = rc ? 0 : res.ms_preprocess;
    j->ms[METRICS_STAGE_FORWARD] = rc ? 0 : res.ms_forward;
    j->ms[METRICS_STAGE_LOST] = rc ? 0 : res.ms_lost;
    set_reply(j, rc, &e, rc ? NULL : discover_reply(j, &res), 0);
}

static void discover_destroy(struct pool_job *pj)
{
    struct discover_job *j = (struct discover_job *)pj;
    free(j->data);
    free(j->body);
    free(j);
}

static const unsigned char *find_magic(const unsigned char *b, size_t n)
{
    static const struct {
        const char *m;
        size_t n;
    } other[] = {{"GIF8", 4}, {"BM", 2}, {"II*\0", 4}, {"MM\0*", 4}, {"\0\0\0\fjP", 6}};
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        if (n >= other[i].n && !memcmp(b, other[i].m, other[i].n))
            return b;
    if (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4))
        return b;
    if (n >= 12 && !memcmp(b + 4, "ftyp", 4))
        return b; /* HEIC / AVIF */
    return NULL;
}

static enum MHD_Result discover_finish(struct req *r, struct MHD_Connection *c)
{
    struct http_server *s = r->s;
    if (r->replied)
        return MHD_YES;
    if (!r->fail_status)
        MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, on_query_arg, r);
    if (!r->fail_status && r->kind == BODY_JSON) {
        int st = parse_json_body(r);
        if (st)
            r->fail_status = st, r->fail_type = st == 413 ? "payload_too_large" : "bad_request";
    }
    if (!r->fail_status && r->n == 0)
        fail(r, 400, "bad_request", r->kind == BODY_FORM ? "no 'image' field in the form"
                                                        : "empty body: send an image");
    if (!r->fail_status && image_sniff(r->buf, r->n) == IMAGE_FORMAT_UNKNOWN) {
        if (find_magic(r->buf, r->n))
            fail(r, 415, "unsupported_media_type", "only JPEG and PNG images are decoded");
        else
            fail(r, 400, "bad_request", "the body is not a JPEG or PNG image");
    }
    struct discover_job *j = NULL;
    if (!r->fail_status) {
        j = calloc(1, sizeof *j);
        if (!j)
            fail(r, 503, "busy", "out of memory");
    }
    if (j)
        j->analyze = r->analyze;
    if (!r->fail_status && parse_params(r, j)) {
        r->fail_status = 400;
        r->fail_type = "bad_request";
    }
    if (r->fail_status) {
        free(j);
        metrics_reject(s->metrics, r->fail_status == 413   ? METRICS_REJECT_TOO_LARGE
                                   : r->fail_status == 415 ? METRICS_REJECT_UNSUPPORTED
                                                           : METRICS_REJECT_BAD_REQUEST);
        char msg[ERR_MSG_MAX];
        memcpy(msg, r->errmsg, sizeof msg);
        return send_error(r, c, r->fail_status, r->fail_type, NULL, "%s", msg);
    }
    pool_job_init(&j->base, discover_run, discover_destroy);
    j->data = r->buf;
    j->n = r->n;
    r->buf = NULL;
    r->n = r->cap = 0;
    j->model_id = s->info.id;
    r->job = j;
    struct err e;
    err_clear(&e);
    if (pool_submit(s->pool, &j->base, &e)) {
        metrics_reject(s->metrics, METRICS_REJECT_QUEUE_FULL);
        return send_error(r, c, 503, "busy", retry_1, "busy: %s", e.msg);
    }
    int st = pool_wait(s->pool, &j->base, (double)s->c->timeout * 1000);
    if (st == POOL_RUNNING || st == POOL_CANCELLED) {
        pthread_mutex_lock(&s->mu);
        int stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stopping && st == POOL_CANCELLED) {
            metrics_reject(s->metrics, METRICS_REJECT_SHUTTING_DOWN);
            return send_error(r, c, 503, "shutting_down", retry_5, "the server is shutting "
                              "down");
        }
        metrics_reject(s->metrics, METRICS_REJECT_TIMEOUT);
        return send_error(r, c, 503, "timeout", retry_1, "no result within %lds (%s)",
                          s->c->timeout, st == POOL_RUNNING ? "still running" : "queued");
    }
    for (int k = 0; k < METRICS_STAGE_TOTAL; k++)
        metrics_stage(s->metrics, (enum metrics_stage)k, j->ms[k]);
    if (j->status != 200)
        snprintf(r->errmsg, sizeof r->errmsg, "%s", j->errmsg);
    if (j->status == 400 || j->status == 413 || j->status == 415)
        metrics_reject(s->metrics, j->status == 413   ? METRICS_REJECT_TOO_LARGE
                                   : j->status == 415 ? METRICS_REJECT_UNSUPPORTED
                                                      : METRICS_REJECT_BAD_REQUEST);
    if (!j->body)
        return send_error(r, c, 500, "internal", NULL, "%s", j->errmsg);
    return send_reply(r, c, j->status, "application/json", j->body, j->body_len, NULL);
}

/* -------------------------------------------------------------- routing */

static int route_of(const char *url)
{
    if (!strcmp(url, "/discover") || !strcmp(url, "/analyze"))
        return METRICS_ROUTE_DISCOVER;
    if (!strcmp(url, "/health") || !strcmp(url, "/health/ready") ||
        !strcmp(url, "/health/live"))
        return METRICS_ROUTE_HEALTH;
    if (!strcmp(url, "/v1/models"))
        return METRICS_ROUTE_MODELS;
    if (!strcmp(url, "/metrics"))
        return METRICS_ROUTE_METRICS;
    if (!strcmp(url, "/version"))
        return METRICS_ROUTE_VERSION;
    if (!strcmp(url, "/openapi.json"))
        return METRICS_ROUTE_OPENAPI;
    if (static_index(url) >= 0)
        return METRICS_ROUTE_STATIC;
    return METRICS_ROUTE_OTHER;
}

static enum MHD_Result begin(struct req *r, struct MHD_Connection *c, const char *url,
                             int stopping)
{
    const char *m = r->method;
    int is_get = !strcmp(m, "GET") || !strcmp(m, "HEAD");
    if (r->route == METRICS_ROUTE_OTHER)
        return send_error(r, c, 404, "not_found", NULL, "no route %.200s", url);
    if (!strcmp(m, "OPTIONS")) {
        static const char *const h[] = {
            "Allow", "GET, HEAD, POST, OPTIONS",
            "Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS",
            "Access-Control-Allow-Headers", "Content-Type, Authorization, X-API-Key",
            "Access-Control-Max-Age", "600", NULL};
        return send_reply(r, c, 204, NULL, "", 0, h);
    }
    if (r->route == METRICS_ROUTE_DISCOVER) {
        if (strcmp(m, "POST")) {
            static const char *const h[] = {"Allow", "POST, OPTIONS", NULL};
            return send_error(r, c, 405, "method_not_allowed", h,
                              "%s %s: use POST", m, r->analyze ? "/analyze" : "/discover");
        }
        return discover_begin(r, c, stopping);
    }
    if (!is_get) {
        static const char *const h[] = {"Allow", "GET, HEAD, OPTIONS", NULL};
        return send_error(r, c, 405, "method_not_allowed", h, "%s %.200s: use GET", m, url);
    }
    switch (r->route) {
    case METRICS_ROUTE_HEALTH: return get_health(r, c, !strcmp(url, "/health/live"));
    case METRICS_ROUTE_MODELS: return get_models(r, c);
    case METRICS_ROUTE_METRICS: return get_metrics(r, c);
    case METRICS_ROUTE_VERSION: return get_version(r, c);
    case METRICS_ROUTE_OPENAPI: return get_openapi(r, c);
    default: return get_static(r, c, static_index(url));
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **con_cls)
{
    (void)version;
    struct http_server *s = cls;
    struct req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        r->s = s;
        r->t0 = cli_now_ms();
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->path, sizeof r->path, "%s", url);
        r->route = route_of(url);
        r->analyze = !strcmp(url, "/analyze");
        *con_cls = r;
        pthread_mutex_lock(&s->mu);
        s->active++;
        int stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        return begin(r, c, url, stopping);
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (r->replied)
            return MHD_YES;
        return discover_feed(r, c, upload, n);
    }
    if (r->route == METRICS_ROUTE_DISCOVER && r->kind != BODY_NONE)
        return discover_finish(r, c);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)c;
    struct http_server *s = cls;
    struct req *r = *con_cls;
    if (!r)
        return;
    *con_cls = NULL;
    double ms = cli_now_ms() - r->t0;
    if (!r->status && !r->errmsg[0])
        snprintf(r->errmsg, sizeof r->errmsg, "%s",
                 toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? "connection timed out"
                 : toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT  ? "client went away"
                 : toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN ? "daemon shut down"
                                                                 : "closed without reply");
    metrics_request(s->metrics, (enum metrics_route)r->route, r->status);
    if (r->route == METRICS_ROUTE_DISCOVER && r->status)
        metrics_stage(s->metrics, METRICS_STAGE_TOTAL, ms);
    log_access(s->log, r->method, r->path, r->status, r->bytes, ms,
               r->errmsg[0] ? r->errmsg : NULL);
    if (r->pp)
        MHD_destroy_post_processor(r->pp);
    free(r->buf);
    if (r->job)
        pool_release(s->pool, &r->job->base);
    free(r);
    pthread_mutex_lock(&s->mu);
    if (--s->active == 0)
        pthread_cond_broadcast(&s->idle_cv);
    pthread_mutex_unlock(&s->mu);
}

/* libmicrohttpd's own %-decoding of the path and the query, except that a
 * %00 would silently cut a component short ("k_patches=5%00x" would read as
 * 5, "/%00/x" as "/"): such a component becomes "\x7f", which no route and no
 * parameter accepts, so the request is refused (404 / 400). */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    size_t n = MHD_http_unescape(s);
    if (strlen(s) != n) { /* n >= 1 here, so s has room for two bytes */
        s[0] = 0x7f;
        s[1] = 0;
        n = 1;
    }
    return n;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct http_server *s = cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = 0;
    log_msg(s->log, "warn", "http: %s", msg);
}

/* --------------------------------------------------------------- server */

int http_start(const struct config *c, const struct log *l, struct http_server **out,
               struct err *e)
{
    *out = NULL;
    struct pipeline_opts lost_defaults;
    pipeline_opts_default(&lost_defaults);
    if (c->lost_config[0]) {
        int lrc = lost_opts_read_config(c->lost_config, &lost_defaults, e);
        if (lrc)
            return lrc;
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port[16];
    snprintf(port, sizeof port, "%ld", c->port);
    int gai = getaddrinfo(c->host[0] ? c->host : NULL, port, &hints, &ai);
    if (gai)
        return err_set(e, ERR_INPUT, "--host %s: %s", c->host, gai_strerror(gai));
    struct http_server *s = calloc(1, sizeof *s);
    if (!s) {
        freeaddrinfo(ai);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    s->c = c;
    s->log = l;
    s->lost_defaults = lost_defaults;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->idle_cv, NULL);
    snprintf(s->reason, sizeof s->reason, "starting");
    int rc = metrics_init(&s->metrics, e);
    if (rc) {
        freeaddrinfo(ai);
        http_free(s);
        return rc;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG | MHD_USE_POLL;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s,
                            MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
                            MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)c->max_connections,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c->timeout,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
                            MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->d) {
        int en = errno;
        http_free(s);
        return err_set(e, ERR_IO, "cannot listen on %s:%ld (%s)", c->host, c->port,
                       en ? strerror(en) : "libmicrohttpd refused");
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : (int)c->port;
    *out = s;
    return 0;
}

int http_port(const struct http_server *s) { return s->port; }

void http_set_status(struct http_server *s, const char *reason)
{
    pthread_mutex_lock(&s->mu);
    snprintf(s->reason, sizeof s->reason, "%s", reason);
    pthread_mutex_unlock(&s->mu);
}

int http_attach(struct http_server *s, const struct model *m,
                const struct http_model_info *info, struct err *e)
{
    const struct config *c = s->c;
    const struct model_config *mc = model_config(m);
    long N = pipeline_max_patches(m, (int)c->max_side);
    size_t side = (size_t)c->max_side + (size_t)mc->patch;
    /* Arena: decoded pixels (twice: EXIF rotation), the downscaled copy, the
     * tensor, the Gram matrix, LOST's per-patch buffers, and slack. Only
     * address space until touched. */
    size_t bytes = (size_t)c->max_pixels * 3 * 2 + side * side * 3 + side * side * 3 * 4 +
                   (size_t)N * (size_t)N * 4 * 2 + (size_t)N * (size_t)mc->dim * 4 * 4 +
                   (64u << 20);
    struct pool_conf pc = {.workers = (int)c->workers, .max_side = (int)c->max_side,
                           .arena_bytes = bytes, .queue_cap = (int)c->queue,
                           .threads = (int)c->threads};
    struct pool *p;
    int rc = pool_init(m, &pc, &p, e);
    if (rc)
        return rc;
    pthread_mutex_lock(&s->mu);
    s->m = m;
    s->info = *info;
    s->pool = p;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int http_wait_ready(struct http_server *s, double timeout_ms, struct err *e)
{
    double t_end = cli_now_ms() + timeout_ms;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        struct pool *p = s->pool;
        int stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stopping)
            return err_set(e, ERR_BUSY, "stopping");
        if (!p)
            return err_set(e, ERR_INTERNAL, "no model attached");
        int rc = pool_ready(p, e);
        if (rc < 0)
            return rc;
        if (rc == 1)
            return 0;
        if (cli_now_ms() > t_end)
            return err_set(e, ERR_BUSY, "warm-up still running");
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

void http_stop(struct http_server *s, double grace_ms)
{
    if (!s || !s->d)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_mutex_unlock(&s->mu);
    MHD_socket fd = MHD_quiesce_daemon(s->d);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    long long ns = dl.tv_nsec + (long long)(grace_ms * 1e6);
    dl.tv_sec += (time_t)(ns / 1000000000LL);
    dl.tv_nsec = (long)(ns % 1000000000LL);
    pthread_mutex_lock(&s->mu);
    while (s->active > 0)
        if (pthread_cond_timedwait(&s->idle_cv, &s->mu, &dl) == ETIMEDOUT)
            break;
    long left = s->active;
    struct pool *p = s->pool;
    pthread_mutex_unlock(&s->mu);
    if (left)
        log_msg(s->log, "warn", "%ld request(s) still open after the grace period", left);
    if (p)
        pool_stop(p);
    MHD_stop_daemon(s->d);
    s->d = NULL;
}

void http_free(struct http_server *s)
{
    if (!s)
        return;
    http_stop(s, 0);
    pool_free(s->pool);
    metrics_free(s->metrics);
    pthread_cond_destroy(&s->idle_cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* --------------------------------------------------------------- base64 */

long http_base64_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0, pad = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)in[i];
        int v;
        if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t')
            continue;
        if (ch == '=') {
            pad++;
            continue;
        }
        if (pad)
            return -1; /* data after padding */
        if (ch >= 'A' && ch <= 'Z')
            v = ch - 'A';
        else if (ch >= 'a' && ch <= 'z')
            v = ch - 'a' + 26;
        else if (ch >= '0' && ch <= '9')
            v = ch - '0' + 52;
        else if (ch == '+' || ch == '-')
            v = 62;
        else if (ch == '/' || ch == '_')
            v = 63;
        else
            return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -2;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Leftover bits: 0 (complete), 2 (one '=' missing or given), 4 (two).
     * 6 leftover bits means a lone character: not base64. Padding, when
     * present, must complete the last quantum exactly. */
    if (bits == 6 || (pad && pad != bits / 2) || pad > 2)
        return -1;
    if (acc != 0)
        return -1; /* non-canonical trailing bits */
    return (long)o;
}
