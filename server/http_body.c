/* http_body.c - request bodies of POST /discover and /analyze: what is
 * refused before the body (API key, readiness, content type, declared size),
 * receiving a raw body or a multipart / urlencoded form within the limits,
 * the JSON body {"inputs": base64, "parameters": {...}}, base64, and
 * recognising image formats we do not decode. */
#include "http_impl.h"

#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "image.h"
#include "metrics.h"

void http_fail(struct req *r, int status, const char *type, const char *fmt, ...)
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

enum MHD_Result http_on_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    (void)kind;
    struct req *r = cls;
    if (r->fail_status)
        return MHD_NO;
    if (!value) { /* "?debug" alone (no '=') means on; "?debug=" is empty */
        const struct param_def *d = params_find(key);
        value = d && d->type == PARAM_BOOL ? "1" : "";
    }
    struct err e;
    if (http_param_put(&r->qp, key, value, 0, strlen(value), &e)) {
        http_fail_err(r, &e);
        return MHD_NO;
    }
    return MHD_YES;
}

void http_fail_err(struct req *r, const struct err *e)
{
    if (r->fail_status)
        return;
    r->fail_status = http_status_of(e->code, &r->fail_type);
    snprintf(r->errmsg, sizeof r->errmsg, "%s", e->msg);
}

int http_budget_take(struct req *r, size_t n)
{
    return budget_try(r->s->uploads, (long long)n);
}

void http_budget_give(struct req *r, size_t n)
{
    budget_release(r->s->uploads, (long long)n);
}

static int append(struct req *r, const char *data, size_t size)
{
    if (size == 0) /* an empty form part: data and r->buf may both be NULL */
        return 0;
    if (size > r->limit - r->n) {
        http_fail(r, 413, "payload_too_large", "the upload is over the %zu-byte limit", r->limit);
        return -1;
    }
    if (r->n + size > r->cap) {
        size_t cap = r->cap ? r->cap : 65536;
        while (cap < r->n + size)
            cap *= 2;
        if (cap > r->limit)
            cap = r->limit;
        if (http_budget_take(r, cap - r->cap)) {
            http_fail(r, 503, "busy", "too many uploads in flight (--max-upload-total): "
                      "retry shortly");
            return -1;
        }
        unsigned char *b = realloc(r->buf, cap);
        if (!b) {
            http_budget_give(r, cap - r->cap);
            http_fail(r, 503, "busy", "out of memory for the upload");
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
            http_fail(r, 400, "bad_request", "more than one image in the form");
            return MHD_YES;
        }
        append(r, data, size);
        return MHD_YES;
    }
    struct err e;
    if (http_param_put(&r->bp, key, data, (size_t)off, size, &e))
        http_fail_err(r, &e);
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
enum MHD_Result http_body_begin(struct req *r, struct MHD_Connection *c, int stopping)
{
    struct http_server *s = r->s;
    const struct config *cf = s->c;
    if (stopping) {
        metrics_reject(s->metrics, METRICS_REJECT_SHUTTING_DOWN);
        return http_send_error(r, c, 503, "shutting_down", http_retry_5, "the server is shutting down");
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
            return http_send_error(r, c, 401, "unauthorized", h,
                              "missing or wrong API key (Authorization: Bearer KEY, or "
                              "X-API-Key: KEY)");
        }
    }
    char why[256];
    if (!http_is_ready(s, why, sizeof why)) {
        metrics_reject(s->metrics, METRICS_REJECT_NOT_READY);
        return http_send_error(r, c, 503, "not_ready", http_retry_5, "not ready: %s", why);
    }
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_TYPE);
    size_t limit = (size_t)cf->max_upload;
    if (!ct || !*ct || ieq_prefix(ct, "image/jpeg") || ieq_prefix(ct, "image/jpg") ||
        ieq_prefix(ct, "image/png") || ieq_prefix(ct, "application/octet-stream")) {
        r->kind = BODY_RAW;
    } else if (ieq_prefix(ct, "application/json")) {
        r->kind = BODY_JSON;
        limit = (size_t)config_json_body_cap(cf); /* base64 plus the parameters */
    } else if (ieq_prefix(ct, "multipart/form-data") ||
               ieq_prefix(ct, "application/x-www-form-urlencoded")) {
        r->kind = BODY_FORM;
    } else {
        metrics_reject(s->metrics, METRICS_REJECT_UNSUPPORTED);
        static const char *const h[] = {"Accept-Post", "image/jpeg, image/png, "
                                        "multipart/form-data, application/json", NULL};
        return http_send_error(r, c, 415, "unsupported_media_type", h,
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
            return http_send_error(r, c, 413, "payload_too_large",
                              NULL, "the body is %llu bytes, the limit is %llu", v, body_cap);
        }
        if (!errno && end != cl && !*end && r->kind != BODY_FORM && v > 0) {
            if (http_budget_take(r, (size_t)v)) {
                metrics_reject(s->metrics, METRICS_REJECT_UPLOAD_BUDGET);
                return http_send_error(r, c, 503, "busy", http_retry_1, "too many uploads in "
                                       "flight (--max-upload-total): retry shortly");
            }
            r->buf = malloc((size_t)v);
            r->cap = r->buf ? (size_t)v : 0;
            if (!r->buf)
                http_budget_give(r, (size_t)v);
        }
    }
    if (r->kind == BODY_FORM) {
        r->pp = MHD_create_post_processor(c, 65536, on_form_field, r);
        if (!r->pp) {
            metrics_reject(s->metrics, METRICS_REJECT_BAD_REQUEST);
            return http_send_error(r, c, 400, "bad_request", NULL,
                              "cannot parse this form (multipart boundary missing?)");
        }
    }
    return MHD_YES;
}

enum MHD_Result http_body_feed(struct req *r, struct MHD_Connection *c,
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
            http_fail(r, 413, "payload_too_large", "the form is over the %zu-byte limit",
                 r->limit + FORM_OVERHEAD);
        else if (MHD_post_process(r->pp, data, size) != MHD_YES)
            http_fail(r, 400, "bad_request", "malformed form body");
    } else {
        append(r, data, size);
    }
    if (r->fail_status == 413) {
        /* Answer now if libmicrohttpd lets us (it then discards the rest of
         * the body); otherwise the answer goes out when the body ends. */
        char msg[ERR_MSG_MAX];
        memcpy(msg, r->errmsg, sizeof msg);
        if (http_send_error(r, c, 413, "payload_too_large", NULL, "%s", msg) == MHD_YES)
            metrics_reject(r->s->metrics, METRICS_REJECT_TOO_LARGE);
    }
    return MHD_YES;
}

const unsigned char *http_find_magic(const unsigned char *b, size_t n)
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

