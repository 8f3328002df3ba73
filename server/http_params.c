/* http_params.c - request parameters of POST /discover and /analyze: kept
 * as text per row of the parameter table (params.c) from the query string,
 * form fields or the JSON body, then parsed by that table, as a flag or a
 * settings file would be, plus the checks that depend on the model and the
 * daemon's limits. */
#include "http_impl.h"

#include <stdio.h>
#include <string.h>

static int row_of(const char *key)
{
    const struct param_def *d = params_find(key);
    return d && (d->where & PARAM_HTTP) ? (int)(d - params_table) : -1;
}

int http_param_put(struct params *p, const char *key, const char *data, size_t off,
                   size_t size, struct err *e)
{
    int i = row_of(key);
    if (i < 0) {
        char known[512];
        size_t k = 0;
        for (int r = 0; r < params_count && k < sizeof known; r++)
            if (params_table[r].where & PARAM_HTTP)
                k += (size_t)snprintf(known + k, sizeof known - k, "%s%s", k ? ", " : "",
                                      params_table[r].name);
        return err_set(e, ERR_INPUT, "unknown parameter '%.64s' (known: %s)", key, known);
    }
    if (off != p->len[i] && !(off == 0 && p->set[i]))
        return err_set(e, ERR_INPUT, "parameter '%s' given in pieces out of order", key);
    if (off == 0)
        p->len[i] = 0;
    if (size && memchr(data, 0, size))
        return err_set(e, ERR_INPUT, "parameter '%s' contains a NUL byte", key);
    if (p->len[i] + size >= PARAM_MAX)
        return err_set(e, ERR_INPUT, "parameter '%s' is longer than %d bytes", key,
                       PARAM_MAX - 1);
    if (size) /* data may be NULL for an empty field */
        memcpy(p->v[i] + p->len[i], data, size);
    p->len[i] += size;
    p->v[i][p->len[i]] = 0;
    p->set[i] = 1;
    return 0;
}

int http_params_parse(struct req *r, struct discover_job *j, struct err *e)
{
    const struct model_config *mc = model_config(r->s->m);
    const struct config *cf = r->s->c;
    j->opts = r->s->lost_defaults;
    j->opts.given = 0;
    j->opts.max_side = (int)cf->max_side;
    j->opts.max_pixels = cf->max_pixels;
    params_request_default(&j->rq);
    for (int i = 0; i < params_count; i++) {
        const struct param_def *d = &params_table[i];
        const struct params *p = r->bp.set[i] ? &r->bp : r->qp.set[i] ? &r->qp : NULL;
        if (!p || !(d->where & PARAM_HTTP))
            continue;
        const char *v = p->v[i];
        int rc = params_set(d, v, &j->opts, &j->rq, e);
        if (rc)
            return rc;
        /* What the table cannot know: the model's depth, the daemon's own
         * --max-side (a request may only lower it), the route. */
        if (!strcmp(d->name, "layer") &&
            (j->opts.layer < -mc->depth || j->opts.layer >= mc->depth))
            return err_set(e, ERR_INPUT, "layer must be an integer in %d..%d for this "
                           "model, got '%s'", -mc->depth, mc->depth - 1, v);
        if (!strcmp(d->name, "max_side") &&
            (j->opts.max_side < mc->patch || j->opts.max_side > cf->max_side))
            return err_set(e, ERR_INPUT, "max_side must be an integer in %d..%ld (the "
                           "daemon's --max-side), got '%s'", mc->patch, cf->max_side, v);
        if (!strcmp(d->name, "threshold") && !r->analyze)
            return err_set(e, ERR_INPUT, "threshold is a parameter of POST /analyze only");
    }
    j->opts.debug = j->rq.debug && j->rq.format == PARAM_FORMAT_JSON;
    return 0;
}
