/* http_params.c - request parameters of POST /discover and /analyze: stored
 * as text from the query string, form fields or the JSON body, then checked
 * and turned into the job's options. */
#include "http_impl.h"

#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <strings.h>

/* ------------------------------------------------------- POST /discover */

static int param_index(const char *key)
{
    for (int i = 0; i < N_PARAM; i++)
        if (!strcmp(key, param_names[i]))
            return i;
    return -1;
}

/* Stores (part of) a parameter value at offset off. 0, or -1 with r->errmsg. */
int http_param_put(struct req *r, struct params *p, const char *key, const char *data,
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

/* Parses the parameters into the job. 0, or -1 with r->errmsg (a 400). */
int http_params_parse(struct req *r, struct discover_job *j)
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

