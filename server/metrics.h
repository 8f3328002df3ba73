/* metrics.h - private to server/: the daemon's counters and histograms,
 * rendered as Prometheus text for GET /metrics. Updates take one mutex for
 * a few additions; thread-safe. Never prints. */
#ifndef LOSTD_METRICS_H
#define LOSTD_METRICS_H

#include <stddef.h>

struct err;

/* Routes are a fixed set so a scanner cannot grow the label space. */
enum metrics_route {
    METRICS_ROUTE_DISCOVER = 0,
    METRICS_ROUTE_HEALTH,
    METRICS_ROUTE_MODELS,
    METRICS_ROUTE_METRICS,
    METRICS_ROUTE_VERSION,
    METRICS_ROUTE_OPENAPI,
    METRICS_ROUTE_STATIC,
    METRICS_ROUTE_OTHER,
    METRICS_N_ROUTE
};

enum metrics_stage {
    METRICS_STAGE_QUEUE = 0,    /* waiting for a worker */
    METRICS_STAGE_DECODE,
    METRICS_STAGE_PREPROCESS,
    METRICS_STAGE_FORWARD,
    METRICS_STAGE_LOST,
    METRICS_STAGE_TOTAL,        /* POST /discover, first byte to response */
    METRICS_N_STAGE
};

enum metrics_reject {
    METRICS_REJECT_QUEUE_FULL = 0,
    METRICS_REJECT_TIMEOUT,
    METRICS_REJECT_TOO_LARGE,
    METRICS_REJECT_UNSUPPORTED,
    METRICS_REJECT_BAD_REQUEST,
    METRICS_REJECT_UNAUTHORIZED,
    METRICS_REJECT_NOT_READY,
    METRICS_REJECT_SHUTTING_DOWN,
    METRICS_REJECT_UPLOAD_BUDGET,   /* uploads in flight hold the whole --max-upload-total */
    METRICS_REJECT_MISDIRECTED,     /* Host not in --allowed-hosts */
    METRICS_REJECT_CLIENT_GONE,     /* the client closed first: queued job dropped, running one stopped */
    METRICS_N_REJECT
};

struct metrics;

/* Returns 0 or ERR_NOMEM. Free with metrics_free. */
int metrics_init(struct metrics **out, struct err *e);
void metrics_free(struct metrics *m);

/* One finished request; status 100..599 (others are counted as 0). */
void metrics_request(struct metrics *m, enum metrics_route r, int status);
/* One observation of a stage, milliseconds. */
void metrics_stage(struct metrics *m, enum metrics_stage s, double ms);
void metrics_reject(struct metrics *m, enum metrics_reject r);

/* Gauges sampled by the caller at render time. */
struct metrics_gauges {
    long queue_depth, queue_cap, in_flight, workers, ready;
};

/* Prometheus text exposition (version 0.0.4). Returns a heap string the
 * caller frees with free(), or NULL when out of memory; *len its length. */
char *metrics_render(struct metrics *m, const struct metrics_gauges *g, size_t *len);

const char *metrics_route_name(enum metrics_route r);

#endif
