/* http.c - libmicrohttpd front of `lostd serve`: the daemon's lifecycle
 * (start, attach the model, wait for warm-up, graceful stop) and routing.
 * Connections run one thread each (so a connection may block on its job);
 * the forward itself runs on the pool's workers. Per-request state (struct
 * req) is allocated on the first handler call and freed in exactly one
 * place: on_completed. The other jobs live beside this file: replies and
 * CORS (http_reply.c), GET endpoints (http_get.c), bodies (http_body.c),
 * parameters (http_params.c), the discover / analyze job (http_job.c). */
#include "http.h"
#include "clock.h"
#include "http_impl.h"
#include "cli.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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
    if (http_static_index(url) >= 0)
        return METRICS_ROUTE_STATIC;
    return METRICS_ROUTE_OTHER;
}

/* 1 when the Host header is one of --allowed-hosts (or the list is empty).
 * An entry without a port matches any port; "[v6]" and "[v6]:port" work. */
static int host_allowed(const char *list, const char *host)
{
    if (!list[0])
        return 1;
    if (!host || !*host)
        return 0;
    size_t hn = strlen(host), name_n = hn;
    const char *colon = strrchr(host, ':');
    if (colon && !strchr(colon, ']'))
        name_n = (size_t)(colon - host);
    size_t n;
    const char *p;
    for (const char *q = list; (q = http_list_next(q, &p, &n));) {
        int has_port = n && memchr(p, ':', n) && (p[0] != '[' || p[n - 1] != ']');
        if ((has_port && n == hn && !strncasecmp(p, host, n)) ||
            (!has_port && n == name_n && !strncasecmp(p, host, n)))
            return 1;
    }
    return 0;
}

static enum MHD_Result begin(struct req *r, struct MHD_Connection *c, const char *url,
                             int stopping)
{
    const char *m = r->method;
    int is_get = !strcmp(m, "GET") || !strcmp(m, "HEAD");
    /* DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends
     * Host: evil.example. Health checks stay open (probes use the pod IP). */
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    if (r->route != METRICS_ROUTE_HEALTH && !host_allowed(r->s->c->allowed_hosts, host)) {
        metrics_reject(r->s->metrics, METRICS_REJECT_MISDIRECTED);
        return http_send_error(r, c, 421, "misdirected_request", NULL,
                               "Host '%.100s' is not served here (--allowed-hosts)",
                               host ? host : "");
    }
    if (r->route == METRICS_ROUTE_OTHER || (r->health_only && r->route != METRICS_ROUTE_HEALTH))
        return http_send_error(r, c, 404, "not_found", NULL, "no route %.200s", url);
    if (!strcmp(m, "OPTIONS")) {
        static const char *const h[] = {
            "Allow", "GET, HEAD, POST, OPTIONS",
            "Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS",
            "Access-Control-Allow-Headers", "Content-Type, Authorization, X-API-Key",
            "Access-Control-Max-Age", "600", NULL};
        return http_send(r, c, 204, NULL, "", 0, h);
    }
    if (r->route == METRICS_ROUTE_DISCOVER) {
        if (strcmp(m, "POST")) {
            static const char *const h[] = {"Allow", "POST, OPTIONS", NULL};
            return http_send_error(r, c, 405, "method_not_allowed", h,
                              "%s %s: use POST", m, r->analyze ? "/analyze" : "/discover");
        }
        return http_body_begin(r, c, stopping);
    }
    if (!is_get) {
        static const char *const h[] = {"Allow", "GET, HEAD, OPTIONS", NULL};
        return http_send_error(r, c, 405, "method_not_allowed", h, "%s %.200s: use GET", m, url);
    }
    switch (r->route) {
    case METRICS_ROUTE_HEALTH: return http_get_health(r, c, !strcmp(url, "/health/live"));
    case METRICS_ROUTE_MODELS: return http_get_models(r, c);
    case METRICS_ROUTE_METRICS: return http_get_metrics(r, c);
    case METRICS_ROUTE_VERSION: return http_get_version(r, c);
    case METRICS_ROUTE_OPENAPI: return http_get_openapi(r, c);
    default: return http_get_static(r, c, http_static_index(url));
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
        r->t0 = clock_now_ms();
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->path, sizeof r->path, "%s", url);
        r->route = route_of(url);
        r->analyze = !strcmp(url, "/analyze");
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_DAEMON);
        r->health_only = s->health_d && ci && ci->daemon == s->health_d;
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
        return http_body_feed(r, c, upload, n);
    }
    if (r->route == METRICS_ROUTE_DISCOVER && r->kind != BODY_NONE)
        return http_job_finish(r, c);
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
    double ms = clock_now_ms() - r->t0;
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
    http_budget_give(r, r->cap);
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

/* One libmicrohttpd daemon on host:port, answered by on_request. */
static int listen_on(struct http_server *s, const char *host, long port, unsigned limit,
                     unsigned timeout, struct MHD_Daemon **d, int *bound, struct err *e)
{
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char ps[16];
    snprintf(ps, sizeof ps, "%ld", port);
    int gai = getaddrinfo(host[0] ? host : NULL, ps, &hints, &ai);
    if (gai)
        return err_set(e, ERR_INPUT, "--host %s: %s", host, gai_strerror(gai));
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG | MHD_USE_POLL;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    errno = 0;
    *d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s,
                          MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
                          MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                          MHD_OPTION_CONNECTION_LIMIT, limit,
                          MHD_OPTION_CONNECTION_TIMEOUT, timeout,
                          MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                          MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
                          MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!*d) {
        int en = errno;
        return err_set(e, ERR_IO, "cannot listen on %s:%ld (%s)", host, port,
                       en ? strerror(en) : "libmicrohttpd refused");
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(*d, MHD_DAEMON_INFO_BIND_PORT);
    *bound = di ? di->port : (int)port;
    return 0;
}

int http_start(const struct config *c, const struct log *l, struct http_server **out,
               struct err *e)
{
    *out = NULL;
    /* Flags and LOSTD_* twins first (their given bits keep them), then the
     * --lost-config file for the rest. */
    struct pipeline_opts lost_defaults = c->lost;
    if (c->lost_config[0]) {
        int lrc = lost_opts_read_config(c->lost_config, &lost_defaults, e);
        if (lrc)
            return lrc;
    }
    struct http_server *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(e, ERR_NOMEM, "out of memory");
    s->c = c;
    s->log = l;
    s->lost_defaults = lost_defaults;
    s->health_port = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->idle_cv, NULL);
    snprintf(s->reason, sizeof s->reason, "starting");
    /* config_parse resolves the automatic value; a config built by hand
     * (tests, fuzzers) may leave it 0. */
    s->uploads = budget_init(c->max_upload_total > 0
                                 ? c->max_upload_total
                                 : 2 * (config_json_body_cap(c) + c->max_upload));
    if (!s->uploads) {
        http_free(s);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    int rc = metrics_init(&s->metrics, e);
    if (!rc)
        rc = listen_on(s, c->host, c->port, (unsigned)c->max_connections,
                       (unsigned)c->timeout, &s->d, &s->port, e);
    /* Health checks on a listener of their own: slow clients holding every
     * connection of the main port cannot starve them. */
    if (!rc && c->health_port >= 0)
        rc = listen_on(s, c->host, c->health_port, HEALTH_CONNECTIONS, HEALTH_TIMEOUT_S,
                       &s->health_d, &s->health_port, e);
    if (rc) {
        http_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int http_port(const struct http_server *s) { return s->port; }

int http_health_port(const struct http_server *s) { return s->health_port; }

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
    int layer = s->lost_defaults.layer;
    if (layer < -mc->depth || layer >= mc->depth)
        return err_set(e, ERR_INPUT, "layer %d: this model has %d blocks (%d..%d)", layer,
                       mc->depth, -mc->depth, mc->depth - 1);
    long N = pipeline_max_patches(m, (int)c->max_side);
    size_t side = (size_t)c->max_side + (size_t)mc->patch;
    /* Arena: decoded pixels (twice: EXIF rotation), the downscaled copy, the
     * tensor, LOST's Gram matrix or TokenCut's graphs and its dense
     * fallback, the per-patch buffers, and slack. Only address space until
     * touched: what is touched comes from the scratch budget. */
    size_t bytes = (size_t)c->max_pixels * 3 * 2 + side * side * 3 + side * side * 3 * 4 +
                   (size_t)(pipeline_discovery_bytes(N) + tokencut_dense_bytes(N)) +
                   (size_t)N * (size_t)mc->dim * 4 * 4 + (64u << 20);
    struct pool_conf pc = {.workers = (int)c->workers, .max_side = (int)c->max_side,
                           .arena_bytes = bytes, .queue_cap = (int)c->queue,
                           .threads = (int)c->threads};
    /* The scratch budget: by default enough for the largest image the
     * limits let in (a full-size PNG at --max-pixels, a progressive JPEG of
     * as many pixels in 4:2:0, LOST's Gram matrix at --max-side), once.
     * TokenCut's graphs (twice the Gram matrix) on the largest inputs need
     * more: those requests get 413 naming the max_side that fits, unless
     * the budget is raised (a larger default would let a decode and a Gram
     * matrix of that size run side by side). */
    long long scratch = c->scratch_budget;
    if (scratch == 0) {
        long long px = (long long)c->max_pixels * 3 + (8LL << 20);
        long long gram = pipeline_gram_bytes(N, 1) + (8LL << 20);
        scratch = px > gram ? px : gram;
        if (scratch < (128LL << 20))
            scratch = 128LL << 20;
    }
    s->scratch = budget_init(scratch);
    if (!s->scratch)
        return err_set(e, ERR_NOMEM, "out of memory");
    struct pool *p;
    int rc = pool_init(m, &pc, &p, e);
    if (rc)
        return rc;
    /* What this process may hold at worst, for sizing a pod. */
    long long mb = 1 << 20;
    long long weights = (long long)model_n_params(m) * 4;
    long long per_worker = (long long)pool_work_bytes(p) +
                           pipeline_request_bound(m, (int)c->max_side);
    long long total = weights + c->workers * per_worker + scratch + c->max_upload_total +
                      (32LL << 20);
    log_msg(s->log, "info", "memory bound %lld MB = weights %lld + %ld workers x %lld "
            "(workspace + request) + scratch budget %lld + upload budget %lld + 32 "
            "(runtime)", total / mb, weights / mb, c->workers, per_worker / mb, scratch / mb,
            (long long)c->max_upload_total / mb);
    pthread_mutex_lock(&s->mu);
    s->m = m;
    s->info = *info;
    s->pool = p;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int http_wait_ready(struct http_server *s, double timeout_ms, struct err *e)
{
    double t_end = clock_now_ms() + timeout_ms;
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
        if (clock_now_ms() > t_end)
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
    clock_deadline(CLOCK_REALTIME, grace_ms, &dl);
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
    if (s->health_d)
        MHD_stop_daemon(s->health_d);
    s->health_d = NULL;
}

void http_free(struct http_server *s)
{
    if (!s)
        return;
    http_stop(s, 0);
    pool_free(s->pool);
    metrics_free(s->metrics);
    budget_free(s->uploads);
    budget_free(s->scratch);
    pthread_cond_destroy(&s->idle_cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
