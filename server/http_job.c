/* http_job.c - the discover / analyze job: handing a request to the worker
 * pool, running it on a worker (pipeline, then the reply JSON while the
 * debug maps still live in the worker's arena), and sending its result, or
 * dropping it when the client went away first. */
#include "http_impl.h"
#include "clock.h"

#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "analyze_json.h"
#include "discover_json.h"
#include "cli.h"
#include "image.h"
#include "metrics.h"
#include "pool.h"

/* The image bytes are decoded: free them and give their share of the upload
 * budget back at once, not when the reply is sent. */
static void drop_data(struct discover_job *j)
{
    free(j->data);
    j->data = NULL;
    budget_release(j->uploads, (long long)j->held);
    j->held = 0;
}

/* A worker's reply: the error body for rc != 0, else root (consumed) as
 * compact JSON with 7 significant digits plus extra_flags; 500 when the
 * body cannot be built. */
static void set_reply(struct discover_job *j, int rc, const struct err *e, json_t *root,
                      size_t extra_flags)
{
    if (rc) {
        const char *type;
        j->status = http_status_of(rc, &type);
        snprintf(j->errmsg, sizeof j->errmsg, "%s", e->msg);
        j->body = http_error_json(j->status, type, j->status == 500 ? "internal error" : e->msg);
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
    struct analyze_json_opts ao = {.threshold = j->rq.threshold, .max_side = j->opts.max_side,
                                   .deadline_ms = j->opts.deadline_ms,
                                   .scratch = j->opts.scratch, .cancel = j->opts.cancel,
                                   .max_pixels = j->opts.max_pixels};
    json_t *root = NULL;
    double t0 = clock_now_ms();
    int rc = analyze_json_bytes(m, w, a, j->data, j->n, &ao, &root, &e);
    drop_data(j);
    j->ms[METRICS_STAGE_FORWARD] = rc ? 0 : clock_now_ms() - t0;
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
    j->ms[METRICS_STAGE_QUEUE] = clock_now_ms() - pj->t_queued;
    if (j->analyze) {
        analyze_run(j, m, w, a);
        return;
    }
    int rc = pipeline_run_bytes(m, w, a, j->data, j->n, &j->opts, &res, &e);
    drop_data(j);
    j->ms[METRICS_STAGE_DECODE] = res.ms_decode;
    j->ms[METRICS_STAGE_PREPROCESS] = rc ? 0 : res.ms_preprocess;
    j->ms[METRICS_STAGE_FORWARD] = rc ? 0 : res.ms_forward;
    j->ms[METRICS_STAGE_LOST] = rc ? 0 : res.ms_lost;
    struct discover_json_opts dj = {.schema = DISCOVER_JSON_API, .opts = &j->opts,
                                    .rq = &j->rq, .model_id = j->model_id,
                                    .ms_queue = j->ms[METRICS_STAGE_QUEUE]};
    set_reply(j, rc, &e, rc ? NULL : discover_json(&res, &dj), 0);
}

static void discover_destroy(struct pool_job *pj)
{
    struct discover_job *j = (struct discover_job *)pj;
    drop_data(j);
    free(j->body);
    free(j);
}

/* Whether the client closed (or reset) its side of connection c: a read
 * would return end of file or an error; nothing is consumed. A client that
 * shut down only its sending side counts as gone as well: HTTP clients keep
 * both open while they wait for a reply (proxies such as nginx treat it so
 * too). */
static int client_gone(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return 0;
    char b;
    ssize_t n = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Waits for the request's job up to --timeout, looking every
 * HTTP_GONE_POLL_MS whether the client is still there. Once it is not,
 * j->gone is set, a job no worker took yet leaves the queue and a running one
 * is told to stop (its decode between MCU rows, its forward before the next
 * block): a client that sends a request and closes costs no forward.
 * Returns the job's state: POOL_DONE, POOL_CANCELLED (taken off the queue,
 * or the pool is stopping) or POOL_RUNNING (still on a worker). */
static int wait_job(struct http_server *s, struct MHD_Connection *c, struct discover_job *j)
{
    double end = clock_now_ms() + (double)s->c->timeout * 1000;
    int st;
    for (;;) {
        double left = end - clock_now_ms();
        st = pool_await(s->pool, &j->base, left < HTTP_GONE_POLL_MS ? left : HTTP_GONE_POLL_MS);
        if (st != POOL_QUEUED && st != POOL_RUNNING)
            return st;
        if (client_gone(c)) {
            atomic_store(&j->gone, 1); /* a running decode or forward stops early */
            break;
        }
        if (left <= HTTP_GONE_POLL_MS)
            break;
    }
    return st == POOL_QUEUED ? pool_give_up(s->pool, &j->base) : st;
}

enum MHD_Result http_job_finish(struct req *r, struct MHD_Connection *c)
{
    struct http_server *s = r->s;
    if (r->replied)
        return MHD_YES;
    if (!r->fail_status)
        MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, http_on_query_arg, r);
    if (!r->fail_status && r->kind == BODY_JSON) {
        int st = http_body_parse_json(r);
        if (st)
            r->fail_status = st, r->fail_type = st == 413   ? "payload_too_large"
                                                : st == 503 ? "busy"
                                                            : "bad_request";
    }
    if (!r->fail_status && r->n == 0)
        http_fail(r, 400, "bad_request", r->kind == BODY_FORM ? "no 'image' field in the form"
                                                        : "empty body: send an image");
    if (!r->fail_status && image_sniff(r->buf, r->n) == IMAGE_FORMAT_UNKNOWN) {
        if (http_find_magic(r->buf, r->n))
            http_fail(r, 415, "unsupported_media_type", "only JPEG and PNG images are decoded");
        else
            http_fail(r, 400, "bad_request", "the body is not a JPEG or PNG image");
    }
    struct discover_job *j = NULL;
    if (!r->fail_status) {
        j = calloc(1, sizeof *j);
        if (!j)
            http_fail(r, 503, "busy", "out of memory");
    }
    if (j)
        j->analyze = r->analyze;
    struct err pe;
    if (!r->fail_status && http_params_parse(r, j, &pe))
        http_fail_err(r, &pe);
    if (r->fail_status) {
        free(j);
        metrics_reject(s->metrics, r->fail_status == 413   ? METRICS_REJECT_TOO_LARGE
                                   : r->fail_status == 415 ? METRICS_REJECT_UNSUPPORTED
                                   : r->fail_status == 503 ? METRICS_REJECT_UPLOAD_BUDGET
                                                           : METRICS_REJECT_BAD_REQUEST);
        char msg[ERR_MSG_MAX];
        memcpy(msg, r->errmsg, sizeof msg);
        return http_send_error(r, c, r->fail_status, r->fail_type,
                               r->fail_status == 503 ? http_retry_1 : NULL, "%s", msg);
    }
    pool_job_init(&j->base, discover_run, discover_destroy);
    j->data = r->buf;
    j->n = r->n;
    j->held = r->cap;
    j->uploads = s->uploads;
    r->buf = NULL;
    r->n = r->cap = 0;
    j->model_id = s->info.id;
    /* A decode shares the workers' decode budget and stops when the client
     * would no longer wait for it. */
    j->opts.scratch = s->scratch;
    j->opts.deadline_ms = clock_now_ms() + (double)s->c->timeout * 1000;
    j->opts.cancel = &j->gone;
    r->job = j;
    struct err e;
    err_clear(&e);
    if (pool_submit(s->pool, &j->base, &e)) {
        metrics_reject(s->metrics, METRICS_REJECT_QUEUE_FULL);
        return http_send_error(r, c, 503, "busy", http_retry_1, "busy: %s", e.msg);
    }
    int st = wait_job(s, c, j);
    if (atomic_load(&j->gone)) {
        /* Nobody to answer: record it (as 499, the code proxies log for a
         * client that closed first) and close the connection. A running job
         * stops at its next check and is freed by the worker's release. */
        metrics_reject(s->metrics, METRICS_REJECT_CLIENT_GONE);
        r->status = HTTP_CLIENT_GONE;
        snprintf(r->errmsg, sizeof r->errmsg, "client went away %s",
                 st == POOL_CANCELLED ? "while queued: dropped before inference"
                                      : "during inference: stopped at its next block");
        return MHD_NO;
    }
    if (st == POOL_RUNNING || st == POOL_CANCELLED) {
        pthread_mutex_lock(&s->mu);
        int stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stopping && st == POOL_CANCELLED) {
            metrics_reject(s->metrics, METRICS_REJECT_SHUTTING_DOWN);
            return http_send_error(r, c, 503, "shutting_down", http_retry_5, "the server is shutting "
                              "down");
        }
        metrics_reject(s->metrics, METRICS_REJECT_TIMEOUT);
        return http_send_error(r, c, 503, "timeout", http_retry_1, "no result within %lds (%s)",
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
        return http_send_error(r, c, 500, "internal", NULL, "%s", j->errmsg);
    return http_send(r, c, j->status, "application/json", j->body, j->body_len, NULL);
}
