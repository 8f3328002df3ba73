/* params.c - the discovery parameters, one row each (see params.h). */
#include "params.h"
#include "err.h"
#include "lost_opts.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const feature_words[] = {"q", "k", "v", NULL}; /* enum model_feature */
static const char *const format_words[] = {"json", "hf", "coco", NULL};
static const char *const method_words[] = {"lost", "tokencut", NULL}; /* enum pipeline_method */
static const char *const exif_words[] = {"apply", "ignore", NULL};      /* enum image_exif */

const struct param_def params_table[] = {
    {.name = "method", .flag = "--method", .type = PARAM_ENUM, .values = method_words,
     .where = PARAM_CLI | PARAM_FILE | PARAM_HTTP | PARAM_MAP, .request = 0,
     .off = offsetof(struct pipeline_opts, method), .size = sizeof(int),
     .given = LOST_OPTS_GIVEN_METHOD, .def = "lost",
     .help = "discovery method: lost (LOST, the seed with the fewest correlated patches) "
             "or tokencut (TokenCut, a Normalized Cut of the patch graph)"},
    {.name = "k_patches", .flag = "--k-patches", .type = PARAM_INT, .lo = 1, .hi = 1000000,
     .where = PARAM_CLI | PARAM_FILE | PARAM_HTTP | PARAM_MAP, .request = 0,
     .off = offsetof(struct pipeline_opts, lost.k_patches), .size = sizeof(int),
     .given = LOST_OPTS_GIVEN_K, .def = "100",
     .help = "LOST candidates: the k lowest-degree patches seed the mask"},
    {.name = "gram_bias", .flag = "--gram-bias", .type = PARAM_REAL, .lo = -1e6, .hi = 1e6,
     .where = PARAM_CLI | PARAM_FILE | PARAM_HTTP | PARAM_MAP, .request = 0,
     .off = offsetof(struct pipeline_opts, lost.gram_bias), .size = sizeof(float),
     .given = LOST_OPTS_GIVEN_BIAS, .def = "0",
     .help = "added to every Gram-matrix entry (negative: fewer positive correlations)"},
    {.name = "features", .flag = "--features", .type = PARAM_ENUM, .values = feature_words,
     .where = PARAM_CLI | PARAM_FILE | PARAM_HTTP, .request = 0,
     .off = offsetof(struct pipeline_opts, feature), .size = sizeof(int),
     .given = LOST_OPTS_GIVEN_FEATURE, .def = "the family's (k for DINOv2 and DINO)",
     .help = "feature of the tapped block: k, q or v"},
    {.name = "l2norm", .flag = "--l2norm", .neg_flag = "--no-l2norm", .type = PARAM_BOOL,
     .where = PARAM_CLI | PARAM_FILE | PARAM_HTTP | PARAM_MAP, .request = 0,
     .off = offsetof(struct pipeline_opts, lost.l2norm), .size = sizeof(int),
     .given = LOST_OPTS_GIVEN_L2NORM, .def = "false",
     .help = "L2-normalise each patch feature before the Gram matrix"},
    {.name = "layer", .flag = "--layer", .type = PARAM_INT, .lo = -1000, .hi = 999,
     .where = PARAM_CLI | PARAM_FILE | PARAM_HTTP, .request = 0,
     .off = offsetof(struct pipeline_opts, layer), .size = sizeof(int),
     .given = LOST_OPTS_GIVEN_LAYER, .def = "-1",
     .help = "block to tap, negative counts from the end (-1: the last)"},
    {.name = "max_side", .flag = "--max-side", .type = PARAM_INT, .lo = 0, .hi = 16384,
     .where = PARAM_CLI | PARAM_FILE | PARAM_HTTP, .request = 0,
     .off = offsetof(struct pipeline_opts, max_side), .size = sizeof(int),
     .given = LOST_OPTS_GIVEN_MAX_SIDE, .def = "0 (never; the daemon: its --max-side)",
     .help = "downscale images whose longer side exceeds it; over HTTP it may only lower "
             "the daemon's --max-side"},
    {.name = "tau", .flag = "--tau", .type = PARAM_REAL, .lo = -1, .hi = 1,
     .where = PARAM_CLI | PARAM_FILE | PARAM_HTTP | PARAM_MAP, .request = 0,
     .off = offsetof(struct pipeline_opts, tc.tau), .size = sizeof(float),
     .given = LOST_OPTS_GIVEN_TAU, .def = "0.2",
     .help = "TokenCut: cosine similarity above which two patches are joined"},
    {.name = "eps", .flag = "--eps", .type = PARAM_REAL, .lo = 0, .lo_open = 1, .hi = 1e30,
     .where = PARAM_CLI | PARAM_FILE | PARAM_HTTP | PARAM_MAP, .request = 0,
     .off = offsetof(struct pipeline_opts, tc.eps), .size = sizeof(float),
     .given = LOST_OPTS_GIVEN_EPS, .def = "1e-05",
     .help = "TokenCut: weight of the pairs below tau"},
    {.name = "binary_graph", .flag = "--binary-graph", .neg_flag = "--no-binary-graph",
     .type = PARAM_BOOL, .where = PARAM_CLI | PARAM_FILE | PARAM_HTTP | PARAM_MAP,
     .request = 0, .off = offsetof(struct pipeline_opts, tc.binary), .size = sizeof(int),
     .given = LOST_OPTS_GIVEN_BINARY, .def = "true",
     .help = "TokenCut: edges weigh 1; --no-binary-graph: the similarity itself"},
    {.name = "exif", .flag = "--exif", .type = PARAM_ENUM, .values = exif_words,
     .where = PARAM_CLI | PARAM_HTTP, .request = 0,
     .off = offsetof(struct pipeline_opts, exif), .size = sizeof(int),
     .def = "apply; eval and calibrate: ignore",
     .help = "JPEG EXIF orientation: apply (upright) or ignore (the stored pixels, the "
             "frame of dataset boxes)"},
    {.name = "format", .type = PARAM_ENUM, .values = format_words, .where = PARAM_HTTP,
     .request = 1, .off = offsetof(struct param_request, format), .size = sizeof(int),
     .def = "json",
     .help = "json: the full reply; hf: the Hugging Face object-detection list; coco: COCO "
             "result entries"},
    {.name = "image_id", .type = PARAM_INT, .lo = 0, .hi = 9007199254740991.0,
     .where = PARAM_HTTP, .request = 1, .off = offsetof(struct param_request, image_id),
     .size = sizeof(long long), .def = "0", .help = "image_id of format=coco entries"},
    {.name = "debug", .type = PARAM_BOOL, .where = PARAM_HTTP, .request = 1,
     .off = offsetof(struct param_request, debug), .size = sizeof(int), .def = "false",
     .help = "add the per-patch maps the demo page draws (format=json only)"},
    {.name = "threshold", .type = PARAM_REAL, .lo = 0, .hi = 1e30, .where = PARAM_HTTP,
     .request = 1, .off = offsetof(struct param_request, threshold), .size = sizeof(float),
     .def = "0 (automatic)",
     .help = "POST /analyze only: fixed outlier threshold on the token norm"},
};

const int params_count = (int)(sizeof params_table / sizeof params_table[0]);

const struct param_def *params_find(const char *name)
{
    for (int i = 0; i < params_count; i++)
        if (!strcmp(params_table[i].name, name))
            return &params_table[i];
    return NULL;
}

const struct param_def *params_find_flag(const char *flag, const char **value)
{
    for (int i = 0; i < params_count; i++) {
        const struct param_def *d = &params_table[i];
        if (!(d->where & PARAM_CLI))
            continue;
        if (d->flag && !strcmp(d->flag, flag)) {
            *value = d->type == PARAM_BOOL ? "1" : NULL;
            return d;
        }
        if (d->neg_flag && !strcmp(d->neg_flag, flag)) {
            *value = "0";
            return d;
        }
    }
    return NULL;
}

void params_request_default(struct param_request *rq)
{
    memset(rq, 0, sizeof *rq);
    rq->format = PARAM_FORMAT_JSON;
}

/* The row's rule in words, for its one error message. */
static void rule(const struct param_def *d, char *buf, size_t n)
{
    switch (d->type) {
    case PARAM_INT:
        snprintf(buf, n, "an integer in %.0f..%.0f", d->lo, d->hi);
        break;
    case PARAM_REAL:
        if (d->lo_open && d->hi >= 1e30)
            snprintf(buf, n, "a number > %g", d->lo);
        else if (d->hi >= 1e30)
            snprintf(buf, n, "a number >= %g", d->lo);
        else
            snprintf(buf, n, "a number in %s%g, %g%s", d->lo_open ? "(" : "[", d->lo, d->hi,
                     d->hi_open ? ")" : "]");
        break;
    case PARAM_BOOL:
        snprintf(buf, n, "0/1 or true/false");
        break;
    case PARAM_ENUM: {
        size_t k = (size_t)snprintf(buf, n, "one of");
        for (int i = 0; d->values[i] && k < n; i++)
            k += (size_t)snprintf(buf + k, n - k, "%s %s", i ? "," : "", d->values[i]);
        break;
    }
    }
}

static void store_int(const struct param_def *d, void *base, long long v)
{
    char *p = (char *)base + d->off;
    if (d->size == sizeof(long long)) {
        memcpy(p, &v, sizeof v);
    } else {
        int x = (int)v;
        memcpy(p, &x, sizeof x);
    }
}

int params_set(const struct param_def *d, const char *v, struct pipeline_opts *o,
               struct param_request *rq, struct err *e)
{
    void *base = d->request ? (void *)rq : (void *)o;
    char why[128];
    const char *s = v ? v : "";
    char *end;
    switch (d->type) {
    case PARAM_INT: {
        /* Decimal digits only: no "0x10", "1e3", spaces or a trailing dot. */
        const char *q = s + (*s == '-');
        int digits = *q != 0;
        for (; *q; q++)
            digits &= *q >= '0' && *q <= '9';
        errno = 0;
        long long x = digits ? strtoll(s, &end, 10) : 0;
        if (!digits || errno || (double)x < d->lo || (double)x > d->hi)
            goto bad;
        if (base)
            store_int(d, base, x);
        break;
    }
    case PARAM_REAL: {
        errno = 0;
        double x = strtod(s, &end);
        if (!*s || *end || errno || !isfinite(x) || x < d->lo || x > d->hi ||
            (d->lo_open && x == d->lo) || (d->hi_open && x == d->hi))
            goto bad;
        if (base) {
            char *p = (char *)base + d->off;
            if (d->size == sizeof(double)) {
                memcpy(p, &x, sizeof x);
            } else {
                float f = (float)x;
                memcpy(p, &f, sizeof f);
            }
        }
        break;
    }
    case PARAM_BOOL: {
        int x;
        if (!strcmp(s, "1") || !strcasecmp(s, "true") || !strcasecmp(s, "yes") ||
            !strcasecmp(s, "on"))
            x = 1;
        else if (!strcmp(s, "0") || !strcasecmp(s, "false") || !strcasecmp(s, "no") ||
                 !strcasecmp(s, "off"))
            x = 0;
        else
            goto bad;
        if (base)
            store_int(d, base, x);
        break;
    }
    case PARAM_ENUM: {
        int k = -1;
        for (int i = 0; d->values[i]; i++)
            if (!strcmp(s, d->values[i]))
                k = i;
        /* "default" is the historical spelling of format=json. */
        if (k < 0 && d->values == format_words && !strcmp(s, "default"))
            k = PARAM_FORMAT_JSON;
        if (k < 0)
            goto bad;
        if (base)
            store_int(d, base, k);
        break;
    }
    }
    if (o && !d->request)
        o->given |= d->given;
    return 0;
bad:
    rule(d, why, sizeof why);
    return err_set(e, ERR_INPUT, "%s must be %s, got '%.64s'", d->name, why, s);
}

int params_json_text(const json_t *v, char *buf, size_t n)
{
    int w;
    if (json_is_integer(v))
        w = snprintf(buf, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v)) {
        /* Always with a point or an exponent: 1000.0 is a number, not the
         * integer 1000, as "1000.0" on the command line is not. */
        w = snprintf(buf, n, "%.17g", json_real_value(v));
        if (w > 0 && (size_t)w + 2 < n && !strpbrk(buf, ".eEni"))
            w += snprintf(buf + w, n - (size_t)w, ".0");
    }
    else if (json_is_boolean(v))
        w = snprintf(buf, n, "%d", json_is_true(v));
    else if (json_is_string(v) && json_string_length(v) < n &&
             strlen(json_string_value(v)) == json_string_length(v))
        w = snprintf(buf, n, "%s", json_string_value(v));
    else
        return -1;
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

void params_help(unsigned where, char *buf, size_t n)
{
    size_t k = 0;
    if (n)
        buf[0] = 0;
    for (int i = 0; i < params_count && k < n; i++) {
        const struct param_def *d = &params_table[i];
        if (!(d->where & where) || !d->flag)
            continue;
        char arg[64], why[128];
        if (d->type == PARAM_BOOL)
            snprintf(arg, sizeof arg, "%s%s%s", d->flag, d->neg_flag ? " | " : "",
                     d->neg_flag ? d->neg_flag : "");
        else
            snprintf(arg, sizeof arg, "%s %c", d->flag,
                     d->type == PARAM_ENUM ? 'W' : d->type == PARAM_INT ? 'N' : 'X');
        rule(d, why, sizeof why);
        int w = snprintf(buf + k, n - k, "  %-22s %s\n  %-22s %s (default %s)\n", arg, d->help,
                         "", d->type == PARAM_BOOL ? "a switch" : why, d->def);
        if (w < 0)
            break;
        k += (size_t)w;
    }
}

json_t *params_openapi(void)
{
    json_t *arr = json_array();
    for (int i = 0; arr && i < params_count; i++) {
        const struct param_def *d = &params_table[i];
        if (!(d->where & PARAM_HTTP))
            continue;
        json_t *sc = json_object();
        switch (d->type) {
        case PARAM_INT:
            json_object_set_new(sc, "type", json_string("integer"));
            json_object_set_new(sc, "minimum", json_integer((json_int_t)d->lo));
            json_object_set_new(sc, "maximum", json_integer((json_int_t)d->hi));
            break;
        case PARAM_REAL:
            json_object_set_new(sc, "type", json_string("number"));
            json_object_set_new(sc, "minimum", json_real(d->lo));
            if (d->hi < 1e30)
                json_object_set_new(sc, "maximum", json_real(d->hi));
            if (d->lo_open)
                json_object_set_new(sc, "exclusiveMinimum", json_true());
            if (d->hi_open)
                json_object_set_new(sc, "exclusiveMaximum", json_true());
            break;
        case PARAM_BOOL:
            json_object_set_new(sc, "type", json_string("boolean"));
            break;
        case PARAM_ENUM: {
            json_t *en = json_array();
            for (int k = 0; d->values[k]; k++)
                json_array_append_new(en, json_string(d->values[k]));
            json_object_set_new(sc, "type", json_string("string"));
            json_object_set_new(sc, "enum", en);
            break;
        }
        }
        char desc[512];
        snprintf(desc, sizeof desc, "%s (default %s)", d->help, d->def);
        json_array_append_new(arr, json_pack("{s:s, s:s, s:o, s:s}", "name", d->name, "in",
                                             "query", "schema", sc, "description", desc));
    }
    return arr;
}

json_t *params_value_json(const struct param_def *d, const struct pipeline_opts *o,
                          const struct param_request *rq)
{
    const char *base = d->request ? (const char *)rq : (const char *)o;
    if (!base)
        return json_null();
    const char *p = base + d->off;
    switch (d->type) {
    case PARAM_INT:
        if (d->size == sizeof(long long)) {
            long long v;
            memcpy(&v, p, sizeof v);
            return json_integer(v);
        } else {
            int v;
            memcpy(&v, p, sizeof v);
            return json_integer(v);
        }
    case PARAM_REAL:
        if (d->size == sizeof(double)) {
            double v;
            memcpy(&v, p, sizeof v);
            return json_real(v);
        } else {
            float v;
            memcpy(&v, p, sizeof v);
            return json_real(v);
        }
    case PARAM_BOOL: {
        int v;
        memcpy(&v, p, sizeof v);
        return json_boolean(v);
    }
    case PARAM_ENUM: {
        int v;
        memcpy(&v, p, sizeof v);
        return v >= 0 ? json_string(d->values[v]) : json_null();
    }
    }
    return json_null();
}
