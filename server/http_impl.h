/* http_impl.h - private to server/http*.c: the state shared by the files of
 * the HTTP front (server, request, job, parameters) and their internal
 * calls. Nobody outside these files includes it. */
#ifndef LOSTD_HTTP_IMPL_H
#define LOSTD_HTTP_IMPL_H

#include <microhttpd.h>
#include <jansson.h>
#include <pthread.h>
#include <stddef.h>

#include "config.h"
#include "err.h"
#include "http.h"
#include "log.h"
#include "lost_opts.h"
#include "metrics.h"
#include "model.h"
#include "pipeline.h"
#include "pool.h"
#include "budget.h"
#include "params.h"

#include "version.h"

#define PARAM_MAX 64                  /* bytes of one parameter value */
#define FORM_OVERHEAD (1L << 20)      /* multipart framing and fields beyond the image */
#define DISCARD_MAX (64L << 20)       /* bytes swallowed after a 413 before we hang up */
#define STATIC_MAX (16L << 20)        /* largest static file served */
#define HEALTH_CONNECTIONS 16         /* open connections of the health listener */
#define HEALTH_TIMEOUT_S 5            /* its idle timeout */
#define HTTP_GONE_POLL_MS 100         /* a waiting request looks this often whether its client left */
#define HTTP_CLIENT_GONE 499          /* logged (never sent) for a client that closed first */

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
    struct MHD_Daemon *health_d; /* --health-port: /health* only; NULL without */
    int health_port;
    struct budget *scratch;     /* the workers' large buffers: decoders, Gram matrices
                                   (--scratch-budget); set by http_attach */
    struct budget *uploads;     /* bytes of request bodies and decoded base64 held by all
                                   requests (--max-upload-total) */
};

/* ---------------------------------------------------------------- params */

#define PARAMS_ROWS_MAX 32            /* rows of params_table that a request may carry */

/* Parameter values as received (text), one slot per row of params_table. */
struct params {
    char v[PARAMS_ROWS_MAX][PARAM_MAX];
    size_t len[PARAMS_ROWS_MAX];
    unsigned char set[PARAMS_ROWS_MAX];
};

/* ------------------------------------------------------------------ jobs */

struct discover_job {
    struct pool_job base;       /* first: the pool hands us back this pointer */
    unsigned char *data;        /* the image bytes; freed by the worker once decoded */
    size_t n;
    size_t held;                /* bytes of the upload budget data holds */
    struct budget *uploads;
    struct pipeline_opts opts;
    struct param_request rq;    /* format, image_id, debug, threshold */
    const char *model_id;       /* lives in the server */
    int analyze;                /* POST /analyze: artifact analysis instead of LOST */
    _Atomic int gone;           /* set by the connection when its client left: opts.cancel */
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
    int health_only;            /* arrived on the health listener */
    char method[16];
    char path[256];
    int status;                 /* sent, 0 = nothing sent yet */
    unsigned long long bytes;
    char errmsg[ERR_MSG_MAX];   /* for the access log */
    int replied;
    /* POST /discover */
    int kind;
    unsigned char *buf;         /* the body; r->cap bytes of it are held in s->uploads */
    size_t n, cap, limit;
    unsigned long long received;
    int fail_status;            /* a 4xx decided while receiving, sent at the end */
    const char *fail_type;
    struct MHD_PostProcessor *pp;
    int image_parts;
    struct params qp, bp;       /* query string, body */
    struct discover_job *job;
};

/* http_reply.c */
/* Walks a comma-separated list (--cors-origins, --allowed-hosts): the next
 * item, blanks trimmed, in *item / *n; returns where to continue, or NULL
 * at the end. */
const char *http_list_next(const char *p, const char **item, size_t *n);
/* The HTTP status of an ERR_* code and the error "type" it is reported as. */
int http_status_of(int code, const char **type);
/* {"error": {"code", "type", "message"}} as heap text (free()), or NULL. */
char *http_error_json(int status, const char *type, const char *msg);
/* Queues one reply. extra: NULL-terminated name, value pairs. */
enum MHD_Result http_send(struct req *r, struct MHD_Connection *c, int status,
                          const char *ctype, const void *body, size_t n,
                          const char *const *extra);
/* root is consumed. */
enum MHD_Result http_send_json(struct req *r, struct MHD_Connection *c, int status,
                               json_t *root, const char *const *extra);
/* The message also goes to the access log; a 500 says "internal error". */
enum MHD_Result http_send_error(struct req *r, struct MHD_Connection *c, int status,
                                const char *type, const char *const *extra,
                                const char *fmt, ...) __attribute__((format(printf, 6, 7)));
extern const char *const http_retry_1[];
extern const char *const http_retry_5[];

/* http_get.c */
/* 1 ready; 0 not, with the reason in buf. */
int http_is_ready(struct http_server *s, char *buf, size_t n);
enum MHD_Result http_get_health(struct req *r, struct MHD_Connection *c, int live);
enum MHD_Result http_get_models(struct req *r, struct MHD_Connection *c);
enum MHD_Result http_get_version(struct req *r, struct MHD_Connection *c);
enum MHD_Result http_get_metrics(struct req *r, struct MHD_Connection *c);
enum MHD_Result http_get_openapi(struct req *r, struct MHD_Connection *c);
/* Index of url in the fixed list of static files, or -1. */
int http_static_index(const char *url);
enum MHD_Result http_get_static(struct req *r, struct MHD_Connection *c, int idx);

/* http_body.c */
/* Records the first refusal decided while receiving (sent when the body ends). */
void http_fail(struct req *r, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same from an error: its status by http_status_of, its message. */
void http_fail_err(struct req *r, const struct err *e);
enum MHD_Result http_on_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value);
/* First call of POST /discover: everything refused before the body is read. */
enum MHD_Result http_body_begin(struct req *r, struct MHD_Connection *c, int stopping);
/* One piece of the body. */
enum MHD_Result http_body_feed(struct req *r, struct MHD_Connection *c, const char *data,
                               size_t size);
/* {"inputs", "parameters"} into r->buf and r->bp. 0, or an HTTP status with r->errmsg. */
int http_body_parse_json(struct req *r);
/* b when it starts with the magic of an image format we do not decode, else NULL. */
const unsigned char *http_find_magic(const unsigned char *b, size_t n);

/* Takes n bytes of the shared upload budget for r (0), or -1 when it is
 * spent. http_budget_give returns them. */
int http_budget_take(struct req *r, size_t n);
void http_budget_give(struct req *r, size_t n);

/* http_params.c */
/* Stores (part of) a parameter value at offset off. 0, or ERR_INPUT. */
int http_param_put(struct params *p, const char *key, const char *data, size_t off,
                   size_t size, struct err *e);
/* The parameters (body values win over the query string's) into the job,
 * through the parameter table. 0, or ERR_INPUT. */
int http_params_parse(struct req *r, struct discover_job *j, struct err *e);

/* http_job.c */
/* The body is complete: check it, run the job on the pool, send its reply. */
enum MHD_Result http_job_finish(struct req *r, struct MHD_Connection *c);

#endif
