/* http_get.c - the small GET endpoints of `lostd serve`: readiness and
 * health, /v1/models, /version, /metrics, /openapi.json and the demo page's
 * fixed list of static files. */
#include "http_impl.h"

#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "metrics.h"
#include "openapi.h"
#include "pool.h"

/* ------------------------------------------------------------ readiness */

/* 1 ready; 0 not, with the reason in buf. */
int http_is_ready(struct http_server *s, char *buf, size_t n)
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

enum MHD_Result http_get_health(struct req *r, struct MHD_Connection *c, int live)
{
    char why[256];
    json_t *o = json_object();
    if (live) {
        json_object_set_new(o, "status", json_string("live"));
        return http_send_json(r, c, 200, o, NULL);
    }
    if (http_is_ready(r->s, why, sizeof why)) {
        json_object_set_new(o, "status", json_string("ready"));
        return http_send_json(r, c, 200, o, NULL);
    }
    json_t *e = json_object();
    json_object_set_new(e, "code", json_integer(503));
    json_object_set_new(e, "type", json_string("not_ready"));
    json_object_set_new(e, "message", json_string(why));
    json_object_set_new(o, "status", json_string("not_ready"));
    json_object_set_new(o, "reason", json_string(why));
    json_object_set_new(o, "error", e);
    snprintf(r->errmsg, sizeof r->errmsg, "not ready: %s", why);
    return http_send_json(r, c, 503, o, http_retry_5);
}

enum MHD_Result http_get_models(struct req *r, struct MHD_Connection *c)
{
    struct http_server *s = r->s;
    char why[256];
    pthread_mutex_lock(&s->mu);
    const struct model *m = s->m; /* with s->info: written once, under mu */
    pthread_mutex_unlock(&s->mu);
    if (!m) {
        http_is_ready(s, why, sizeof why);
        return http_send_error(r, c, 503, "not_ready", http_retry_5, "model not loaded yet: %s", why);
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
    /* the discovery method and TokenCut's settings a request gets unless it
     * names its own (the daemon's --method, --tau, --eps, --no-binary-graph) */
    json_object_set_new(ld, "method",
                        json_string(lo->method == PIPELINE_TOKENCUT ? "tokencut" : "lost"));
    json_object_set_new(ld, "tau", json_real(lo->tc.tau));
    json_object_set_new(ld, "eps", json_real(lo->tc.eps));
    json_object_set_new(ld, "binary_graph", json_boolean(lo->tc.binary));
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
    return http_send_json(r, c, 200, root, NULL);
}

enum MHD_Result http_get_version(struct req *r, struct MHD_Connection *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string("lostd"));
    json_object_set_new(o, "version", json_string(LOSTD_VERSION));
    json_object_set_new(o, "libmicrohttpd", json_string(MHD_get_version()));
    json_object_set_new(o, "jansson", json_string(JANSSON_VERSION));
    json_object_set_new(o, "libcurl", json_string(curl_version_info(CURLVERSION_NOW)->version));
    return http_send_json(r, c, 200, o, NULL);
}

enum MHD_Result http_get_metrics(struct req *r, struct MHD_Connection *c)
{
    struct http_server *s = r->s;
    struct metrics_gauges g = {0};
    char why[8];
    g.queue_cap = s->c->queue;
    g.ready = http_is_ready(s, why, sizeof why);
    pthread_mutex_lock(&s->mu);
    struct pool *p = s->pool;
    pthread_mutex_unlock(&s->mu);
    if (p)
        pool_stats(p, &g.queue_depth, &g.in_flight, &g.workers);
    size_t n;
    char *text = metrics_render(s->metrics, &g, &n);
    if (!text)
        return http_send_error(r, c, 500, "internal", NULL, "out of memory for /metrics");
    enum MHD_Result ok = http_send(r, c, 200, "text/plain; version=0.0.4; charset=utf-8",
                                    text, n, NULL);
    free(text);
    return ok;
}

enum MHD_Result http_get_openapi(struct req *r, struct MHD_Connection *c)
{
    const char *doc = openapi_json();
    return http_send(r, c, 200, "application/json", doc, strlen(doc), NULL);
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

int http_static_index(const char *url)
{
    for (size_t i = 0; i < N_STATIC; i++)
        if (!strcmp(url, static_files[i].url))
            return (int)i;
    return -1;
}

enum MHD_Result http_get_static(struct req *r, struct MHD_Connection *c, int idx)
{
    char path[CONFIG_STR_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", r->s->c->static_dir, static_files[idx].file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > STATIC_MAX) {
        if (fd >= 0)
            close(fd);
        return http_send_error(r, c, 404, "not_found", NULL, "%s is not installed",
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
        return http_send_error(r, c, 500, "internal", NULL, "cannot read %s", path);
    }
    static const char *const hdr[] = {"Cache-Control", "no-cache", NULL};
    enum MHD_Result ok = http_send(r, c, 200, static_files[idx].ctype, buf, n, hdr);
    free(buf);
    return ok;
}
