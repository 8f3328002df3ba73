/* http_json.c - the JSON body of POST /discover and /analyze:
 *
 *     {"inputs": "<base64 image or data: URL>", "parameters": {"k": scalar, ...}}
 *
 * The body is checked by a bounded scanner BEFORE any tree is built: the
 * top level must be an object; "inputs" a string; "parameters" an object of
 * scalars (or null); any other key a scalar or a flat object of scalars (as
 * clients of hosted inference APIs send "options"). Arrays, deeper nesting and
 * more than JSON_BODY_MAX_VALUES values are refused at the first byte that
 * breaks the shape, so a 26 MB `[{},{},...]` costs nothing beyond the body
 * buffer it arrived in. The image is decoded from base64 straight out of the
 * body buffer (no copy of the string); only the small "parameters" object is
 * handed to jansson. Memory: the body (<= its cap) + the decoded image (<=
 * --max-upload) + a parameters tree of at most JSON_BODY_MAX_VALUES scalars. */
#include "http_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Values in the whole body (keys not counted): far above any valid body. */
#define JSON_BODY_MAX_VALUES 256

struct span {
    const char *p;
    size_t n;
};

struct scan {
    const char *p, *end, *start;
    int values;
    char msg[160];
};

static int scan_fail(struct scan *s, const char *what)
{
    snprintf(s->msg, sizeof s->msg, "bad JSON at byte %zu: %s", (size_t)(s->p - s->start),
             what);
    return -1;
}

static void skip_ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* A string starting at '"'; sp gets its raw content (escapes not decoded),
 * *escaped whether it holds a backslash. Checks escape syntax and rejects
 * raw control characters; UTF-8 is checked by jansson for the parameters
 * and by the base64 decoder (ASCII only) for the image. */
static int scan_string(struct scan *s, struct span *sp, int *escaped)
{
    if (s->p >= s->end || *s->p != '"')
        return scan_fail(s, "expected a string");
    const char *q = ++s->p;
    int esc = 0;
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            sp->p = q;
            sp->n = (size_t)(s->p - q);
            if (escaped)
                *escaped = esc;
            s->p++;
            return 0;
        }
        if (c < 0x20)
            return scan_fail(s, "control character in a string");
        if (c == '\\') {
            esc = 1;
            if (++s->p >= s->end)
                break;
            char e = *s->p;
            if (e == 'u') {
                for (int i = 1; i <= 4; i++) {
                    if (s->p + i >= s->end || !strchr("0123456789abcdefABCDEF", s->p[i]) ||
                        !s->p[i])
                        return scan_fail(s, "bad \\u escape");
                }
                s->p += 4;
            } else if (!strchr("\"\\/bfnrt", e) || !e) {
                return scan_fail(s, "bad escape in a string");
            }
        }
        s->p++;
    }
    return scan_fail(s, "unterminated string");
}

static int scan_number(struct scan *s)
{
    const char *q = s->p;
    if (s->p < s->end && *s->p == '-')
        s->p++;
    if (s->p >= s->end || *s->p < '0' || *s->p > '9')
        return scan_fail(s, "expected a value");
    if (*s->p == '0')
        s->p++;
    else
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
            s->p++;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (s->p >= s->end || *s->p < '0' || *s->p > '9')
            return scan_fail(s, "bad number");
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
            s->p++;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (s->p >= s->end || *s->p < '0' || *s->p > '9')
            return scan_fail(s, "bad number");
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
            s->p++;
    }
    return s->p > q ? 0 : scan_fail(s, "expected a value");
}

static int scan_word(struct scan *s, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n))
        return scan_fail(s, "expected a value");
    s->p += n;
    return 0;
}

/* A string, number, true, false or null. */
static int scan_scalar(struct scan *s)
{
    if (++s->values > JSON_BODY_MAX_VALUES)
        return scan_fail(s, "too many values (a valid body has a handful)");
    if (s->p >= s->end)
        return scan_fail(s, "unexpected end");
    switch (*s->p) {
    case '"': {
        struct span sp;
        return scan_string(s, &sp, NULL);
    }
    case 't': return scan_word(s, "true");
    case 'f': return scan_word(s, "false");
    case 'n': return scan_word(s, "null");
    case '{':
    case '[': return scan_fail(s, "only numbers, strings and booleans are allowed here");
    default: return scan_number(s);
    }
}

/* A member's key and its ':'; the value comes next. */
static int scan_key(struct scan *s, struct span *key, int *escaped)
{
    skip_ws(s);
    if (scan_string(s, key, escaped))
        return -1;
    skip_ws(s);
    if (s->p >= s->end || *s->p != ':')
        return scan_fail(s, "expected ':'");
    s->p++;
    skip_ws(s);
    return 0;
}

/* After an object member: 1 when a ',' follows (another member), 0 at the
 * closing '}' (consumed), -1 with s->msg otherwise. */
static int next_member(struct scan *s)
{
    skip_ws(s);
    if (s->p < s->end && (*s->p == ',' || *s->p == '}'))
        return *s->p++ == ',';
    return scan_fail(s, "expected ',' or '}'");
}

/* {"key": scalar, ...}; sp gets the object's text, braces included. */
static int scan_flat_object(struct scan *s, struct span *sp)
{
    const char *q = s->p;
    s->p++; /* '{' */
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        sp->p = q;
        sp->n = (size_t)(s->p - q);
        return 0;
    }
    for (;;) {
        struct span key;
        if (scan_key(s, &key, NULL) || scan_scalar(s))
            return -1;
        int more = next_member(s);
        if (more < 0)
            return -1;
        if (!more) {
            sp->p = q;
            sp->n = (size_t)(s->p - q);
            return 0;
        }
    }
}

static int key_is(const struct span *k, int escaped, const char *want)
{
    return !escaped && k->n == strlen(want) && !memcmp(k->p, want, k->n);
}

/* The whole body: the shape above. in / params: spans (n == 0 / p == NULL
 * when absent). Returns 0, or -1 with s->msg. */
static int scan_body(struct scan *s, struct span *in, int *in_escaped, struct span *params)
{
    in->p = params->p = NULL;
    in->n = params->n = 0;
    int have_in = 0, have_params = 0;
    skip_ws(s);
    if (s->p >= s->end || *s->p != '{') {
        if (s->p < s->end && (*s->p == '[' || *s->p == '"' || *s->p == '-' ||
                              (*s->p >= '0' && *s->p <= '9') || *s->p == 't' ||
                              *s->p == 'f' || *s->p == 'n'))
            snprintf(s->msg, sizeof s->msg, "expected {\"inputs\": \"<base64 image>\", "
                     "\"parameters\": {...}}");
        else
            scan_fail(s, "expected '{'");
        return -1;
    }
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
    } else {
        for (;;) {
            struct span key;
            int kesc;
            if (scan_key(s, &key, &kesc))
                return -1;
            if (s->p >= s->end)
                return scan_fail(s, "unexpected end");
            int is_in = key_is(&key, kesc, "inputs");
            int is_params = key_is(&key, kesc, "parameters");
            if ((is_in && have_in) || (is_params && have_params))
                return scan_fail(s, "duplicate key");
            if (is_in && *s->p == '"') {
                have_in = 1;
                if (scan_string(s, in, in_escaped))
                    return -1;
            } else if (is_in) {
                snprintf(s->msg, sizeof s->msg, "expected {\"inputs\": \"<base64 image>\", "
                         "\"parameters\": {...}}");
                return -1;
            } else if (*s->p == '{') {
                struct span obj;
                if (scan_flat_object(s, &obj))
                    return -1;
                if (is_params) {
                    have_params = 1;
                    *params = obj;
                }
            } else if (is_params && *s->p != 'n') {
                snprintf(s->msg, sizeof s->msg, "\"parameters\" must be an object");
                return -1;
            } else {
                have_params |= is_params;
                if (scan_scalar(s))
                    return -1;
            }
            int more = next_member(s);
            if (more < 0)
                return -1;
            if (!more)
                break;
        }
    }
    skip_ws(s);
    if (s->p != s->end)
        return scan_fail(s, "data after the JSON object");
    if (!have_in) {
        snprintf(s->msg, sizeof s->msg, "expected {\"inputs\": \"<base64 image>\", "
                 "\"parameters\": {...}}");
        return -1;
    }
    return 0;
}

/* The "parameters" object (already scanned: flat, bounded) into r->bp. */
static int read_params(struct req *r, const struct span *sp)
{
    json_error_t jerr;
    json_t *root = json_loadb(sp->p, sp->n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(r->errmsg, sizeof r->errmsg, "bad JSON in \"parameters\": %s", jerr.text);
        return -1;
    }
    const char *key;
    json_t *val;
    int rc = 0;
    json_object_foreach(root, key, val) {
        char tmp[PARAM_MAX];
        struct err e;
        if (json_is_null(val))
            continue;
        if (params_json_text(val, tmp, sizeof tmp)) {
            snprintf(r->errmsg, sizeof r->errmsg, "parameter '%.64s' must be a number, a "
                     "boolean or a short string", key);
            rc = -1;
            break;
        }
        if (http_param_put(&r->bp, key, tmp, 0, strlen(tmp), &e)) {
            snprintf(r->errmsg, sizeof r->errmsg, "%s", e.msg);
            rc = -1;
            break;
        }
    }
    json_decref(root);
    return rc;
}

int http_body_parse_json(struct req *r)
{
    /* An empty body has no buffer at all: scan "" rather than NULL + 0. */
    const char *b = r->buf ? (const char *)r->buf : "";
    struct scan s = {.p = b, .end = b + r->n, .start = b};
    struct span in, params;
    int in_escaped = 0;
    if (scan_body(&s, &in, &in_escaped, &params)) {
        snprintf(r->errmsg, sizeof r->errmsg, "%s", s.msg);
        return 400;
    }
    if (params.p && read_params(r, &params))
        return 400;
    /* The base64 text lives in r->buf. JSON may escape '/' as "\/": drop
     * those backslashes in place; any other escape is not base64. */
    char *b64 = (char *)in.p;
    size_t n = in.n;
    if (in_escaped) {
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            if (b64[i] == '\\') {
                if (i + 1 < n && b64[i + 1] == '/') {
                    b64[o++] = '/';
                    i++;
                    continue;
                }
                snprintf(r->errmsg, sizeof r->errmsg, "\"inputs\" is not valid base64");
                return 400;
            }
            b64[o++] = b64[i];
        }
        n = o;
    }
    if (n >= 5 && !strncmp(b64, "data:", 5)) {
        const char *comma = memchr(b64, ',', n);
        if (!comma || !memmem(b64, (size_t)(comma - b64), ";base64", 7)) {
            snprintf(r->errmsg, sizeof r->errmsg, "a data: URL in \"inputs\" must be base64");
            return 400;
        }
        n -= (size_t)(comma + 1 - b64);
        b64 = (char *)comma + 1;
    }
    size_t cap = (size_t)r->s->c->max_upload;
    size_t want = (cap < n ? cap : n) + 1;
    if (http_budget_take(r, want)) {
        snprintf(r->errmsg, sizeof r->errmsg, "too many uploads in flight: retry shortly");
        return 503;
    }
    unsigned char *img = malloc(want);
    if (!img) {
        http_budget_give(r, want);
        snprintf(r->errmsg, sizeof r->errmsg, "out of memory for the image");
        return 503;
    }
    long got = http_base64_decode(b64, n, img, cap);
    if (got < 0) {
        free(img);
        http_budget_give(r, want);
        if (got == -2) {
            snprintf(r->errmsg, sizeof r->errmsg, "the image is over the %zu-byte limit", cap);
            return 413;
        }
        snprintf(r->errmsg, sizeof r->errmsg, "\"inputs\" is not valid base64");
        return 400;
    }
    /* The body is no longer needed: hand its share of the budget back. */
    free(r->buf);
    http_budget_give(r, r->cap);
    r->buf = img;
    r->n = (size_t)got;
    r->cap = want;
    return 0;
}
