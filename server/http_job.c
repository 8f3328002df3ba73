/* http_job.c - the discover / analyze job: handing a request to the worker
 * pool, running it on a worker (pipeline, then the reply JSON while the
 * debug maps still live in the worker's arena), and sending its result. */
#include "http_impl.h"

#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <pthread.h>

#include "analyze_json.h"
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
    if (j->rq.format == PARAM_FORMAT_COCO) {
        json_t *e = json_object(), *bb = json_array();
        json_array_append_new(bb, json_integer(L->box[0]));
        json_array_append_new(bb, json_integer(L->box[1]));
        json_array_append_new(bb, json_integer(L->box[2] - L->box[0]));
        json_array_append_new(bb, json_integer(L->box[3] - L->box[1]));
        json_object_set_new(e, "image_id", json_integer(j->rq.image_id));
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
    if (j->rq.format == PARAM_FORMAT_HF)
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
    if (j->rq.debug) {
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
                                   .scratch = j->opts.scratch,
                                   .max_pixels = j->opts.max_pixels};
    json_t *root = NULL;
    double t0 = cli_now_ms();
    int rc = analyze_json_bytes(m, w, a, j->data, j->n, &ao, &root, &e);
    drop_data(j);
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
    drop_data(j);
    j->ms[METRICS_STAGE_DECODE] = res.ms_decode;
    j->ms[METRICS_STAGE_PREPROCESS] = rc ? 0 : res.ms_preprocess;
    j->ms[METRICS_STAGE_FORWARD] = rc ? 0 : res.ms_forward;
    j->ms[METRICS_STAGE_LOST] = rc ? 0 : res.ms_lost;
    set_reply(j, rc, &e, rc ? NULL : discover_reply(j, &res), 0);
}

static void discover_destroy(struct pool_job *pj)
{
    struct discover_job *j = (struct discover_job *)pj;
    drop_data(j);
    free(j->body);
    free(j);
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
    j->opts.deadline_ms = cli_now_ms() + (double)s->c->timeout * 1000;
    r->job = j;
    struct err e;
    err_clear(&e);
    if (pool_submit(s->pool, &j->base, &e)) {
        metrics_reject(s->metrics, METRICS_REJECT_QUEUE_FULL);
        return http_send_error(r, c, 503, "busy", http_retry_1, "busy: %s", e.msg);
    }
    int st = pool_wait(s->pool, &j->base, (double)s->c->timeout * 1000);
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
