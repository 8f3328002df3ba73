/* metrics.c - counters under one mutex and a growable text buffer for the
 * exposition. Histogram buckets are in seconds, as Prometheus expects. */
#include "metrics.h"
#include "err.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                0.5,   1,      2.5,   5,    10,   30,    60};
#define N_BOUND (sizeof bounds / sizeof bounds[0])
#define N_STATUS 600

static const char *route_names[METRICS_N_ROUTE] = {
    "/discover", "/health", "/v1/models", "/metrics", "/version", "/openapi.json", "static",
    "other"};
static const char *stage_names[METRICS_N_STAGE] = {"queue",   "decode", "preprocess",
                                                   "forward", "lost",   "total"};
static const char *reject_names[METRICS_N_REJECT] = {
    "queue_full",   "timeout",   "too_large",     "unsupported_media_type",
    "bad_request",  "unauthorized", "not_ready", "shutting_down", "upload_budget",
    "misdirected",  "client_gone"};

struct hist {
    unsigned long long bucket[N_BOUND]; /* non-cumulative; summed at render */
    unsigned long long count;
    double sum;                         /* seconds */
};

struct metrics {
    pthread_mutex_t mu;
    unsigned long long requests[METRICS_N_ROUTE][N_STATUS];
    struct hist stage[METRICS_N_STAGE];
    unsigned long long rejects[METRICS_N_REJECT];
};

int metrics_init(struct metrics **out, struct err *e)
{
    struct metrics *m = calloc(1, sizeof *m);
    if (!m)
        return err_set(e, ERR_NOMEM, "out of memory for metrics");
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    return 0;
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

const char *metrics_route_name(enum metrics_route r)
{
    return r < METRICS_N_ROUTE ? route_names[r] : "other";
}

void metrics_request(struct metrics *m, enum metrics_route r, int status)
{
    if (r >= METRICS_N_ROUTE)
        r = METRICS_ROUTE_OTHER;
    if (status < 100 || status >= N_STATUS)
        status = 0;
    pthread_mutex_lock(&m->mu);
    m->requests[r][status]++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_stage(struct metrics *m, enum metrics_stage s, double ms)
{
    if (s >= METRICS_N_STAGE || !(ms >= 0))
        return;
    double sec = ms / 1000;
    size_t b = 0;
    while (b < N_BOUND && sec > bounds[b])
        b++;
    pthread_mutex_lock(&m->mu);
    struct hist *h = &m->stage[s];
    if (b < N_BOUND)
        h->bucket[b]++;
    h->count++;
    h->sum += sec;
    pthread_mutex_unlock(&m->mu);
}

void metrics_reject(struct metrics *m, enum metrics_reject r)
{
    if (r >= METRICS_N_REJECT)
        return;
    pthread_mutex_lock(&m->mu);
    m->rejects[r]++;
    pthread_mutex_unlock(&m->mu);
}

struct buf {
    char *p;
    size_t n, cap;
    int oom;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct buf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (w < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)w < b->cap - b->n) {
            b->n += (size_t)w;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)w;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

char *metrics_render(struct metrics *m, const struct metrics_gauges *g, size_t *len)
{
    struct buf b = {malloc(16384), 0, 16384, 0};
    if (!b.p)
        return NULL;
    b.p[0] = 0;
    struct metrics snap;
    pthread_mutex_lock(&m->mu);
    memcpy(snap.requests, m->requests, sizeof snap.requests);
    memcpy(snap.stage, m->stage, sizeof snap.stage);
    memcpy(snap.rejects, m->rejects, sizeof snap.rejects);
    pthread_mutex_unlock(&m->mu);

    put(&b, "# HELP lostd_http_requests_total Finished HTTP requests by route and status.\n"
            "# TYPE lostd_http_requests_total counter\n");
    for (int r = 0; r < METRICS_N_ROUTE; r++)
        for (int s = 0; s < N_STATUS; s++)
            if (snap.requests[r][s])
                put(&b, "lostd_http_requests_total{route=\"%s\",code=\"%d\"} %llu\n",
                    route_names[r], s, snap.requests[r][s]);
    put(&b, "# HELP lostd_stage_seconds Time per pipeline stage of POST /discover.\n"
            "# TYPE lostd_stage_seconds histogram\n");
    for (int s = 0; s < METRICS_N_STAGE; s++) {
        const struct hist *h = &snap.stage[s];
        unsigned long long cum = 0;
        for (size_t k = 0; k < N_BOUND; k++) {
            cum += h->bucket[k];
            put(&b, "lostd_stage_seconds_bucket{stage=\"%s\",le=\"%g\"} %llu\n",
                stage_names[s], bounds[k], cum);
        }
        put(&b, "lostd_stage_seconds_bucket{stage=\"%s\",le=\"+Inf\"} %llu\n", stage_names[s],
            h->count);
        put(&b, "lostd_stage_seconds_sum{stage=\"%s\"} %.6f\n", stage_names[s], h->sum);
        put(&b, "lostd_stage_seconds_count{stage=\"%s\"} %llu\n", stage_names[s], h->count);
    }
    put(&b, "# HELP lostd_rejections_total Requests refused before or instead of inference.\n"
            "# TYPE lostd_rejections_total counter\n");
    for (int r = 0; r < METRICS_N_REJECT; r++)
        put(&b, "lostd_rejections_total{reason=\"%s\"} %llu\n", reject_names[r],
            snap.rejects[r]);
    put(&b, "# HELP lostd_queue_depth Jobs waiting for a worker.\n"
            "# TYPE lostd_queue_depth gauge\nlostd_queue_depth %ld\n"
            "# HELP lostd_queue_capacity Jobs the queue holds before 503.\n"
            "# TYPE lostd_queue_capacity gauge\nlostd_queue_capacity %ld\n"
            "# HELP lostd_in_flight Jobs a worker is running now.\n"
            "# TYPE lostd_in_flight gauge\nlostd_in_flight %ld\n"
            "# HELP lostd_workers Inference worker threads.\n"
            "# TYPE lostd_workers gauge\nlostd_workers %ld\n"
            "# HELP lostd_ready 1 once the model is loaded and warmed up.\n"
            "# TYPE lostd_ready gauge\nlostd_ready %ld\n",
            g->queue_depth, g->queue_cap, g->in_flight, g->workers, g->ready);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    *len = b.n;
    return b.p;
}
