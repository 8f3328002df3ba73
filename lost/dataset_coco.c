/* dataset_coco.c - the COCO instances JSON, read in one pass with yajl's
 * event parser. Takes the selected images (sorted ids) and fills what LOST's
 * `extract_gt_COCO` reads for them: size, non-crowd boxes, crowd count. The
 * file is fed to the parser a chunk at a time and never held whole, and
 * nothing is kept for the other images or for any other key (segmentation
 * polygons and RLEs, captions, licenses are parsed and dropped), so memory
 * follows the selection, not the file: the official train2014 file is
 * 340 MB, its 20k selection a few MB of boxes. Reads one file; never prints.
 *
 * What counts is what the former jansson tree walk counted, value for value
 * (tests/test_dataset.c keeps that walk and compares): numbers converted as
 * jansson does (strtoll / strtod, an integer beyond 64 bits or a real beyond
 * double range is a malformed file), ids and sizes as its json_int read them,
 * a repeated key replacing the earlier value (also "images" and
 * "annotations" at the top level), strings with \u0000 and nesting deeper
 * than jansson's 2048 levels rejected. Where the two parsers differ, on text
 * no COCO file holds: yajl accepts a lone UTF-16 surrogate escape ("\ud800")
 * and overlong UTF-8, which jansson refused.
 *
 * A malformed file is reported with an offset that does not depend on how
 * the reads split it: the end of the last well-formed token before the
 * error (the next token or two are the culprit), the file's size when the
 * file ends early, the end of the offending number or string for what we
 * refuse ourselves. */
#include "dataset_impl.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#define COCO_DEPTH_MAX 2048   /* jansson's JSON_PARSER_MAX_DEPTH */

/* The depths of the only containers we enter; every other container is
 * skipped, its events only counted. */
enum {
    D_ROOT = 1,     /* the top-level object */
    D_SECTION = 2,  /* the "images" or "annotations" array */
    D_ELEMENT = 3,  /* one image or annotation object */
    D_BBOX = 4      /* an annotation's "bbox" array */
};

enum section { SEC_NONE, SEC_IMAGES, SEC_ANNS };

enum field { K_OTHER, K_ID, K_WIDTH, K_HEIGHT, K_IMAGE_ID, K_BBOX, K_ISCROWD, K_CATEGORY };

/* A value read as jansson's json_int read it: an integer, or a real with
 * no fraction and magnitude below 1e15. */
struct jint {
    int ok;
    long v;
};

struct coco_parse {
    yajl_handle h;
    const char *path;
    struct coco_image *img;     /* [n] sorted by id */
    long *ids;                  /* [n] their ids: the search stays in cache */
    long n;
    unsigned long long base;    /* file offset of the chunk being parsed */
    unsigned long long good;    /* where the last event's token ends */
    int depth;                  /* containers open */
    int skip;                   /* > 0: depth of the container being skipped */
    enum section top;           /* named by the last top-level key */
    enum section sec;           /* the array open at D_SECTION */
    enum field field;           /* named by the last key of the element */
    int images_seen, anns_seen; /* top-level keys met so far */
    int anns_array;             /* the last "annotations" value is an array */
    /* The element open at D_ELEMENT. COCO promises no key order, so its
     * fields wait here until it closes. */
    struct jint id, width, height, image_id, category;
    long crowd;                 /* iscrowd: true = 1 (Python's True == 1) */
    int bb_n, bb_bad, bb_ok;    /* bbox: values seen, one unusable, complete */
    double bb[4];
    int fail;                   /* ERR_* once a callback stopped the parse */
    struct err *e;
};

/* In a callback: the file offset where the current token ends. Exact
 * whatever the reads: yajl holds a token split across reads until it is
 * whole, and reports it from the read that completes it. */
static unsigned long long offset(const struct coco_parse *p)
{
    return p->base + yajl_get_bytes_consumed(p->h);
}

/* Records the failure and returns 0, which makes yajl stop. */
static int stop(struct coco_parse *p, int code, const char *what)
{
    p->fail = err_set(p->e, code, "%s: byte %llu: %s", p->path, offset(p), what);
    return 0;
}

static int key_is(const unsigned char *k, size_t n, const char *name)
{
    return n == strlen(name) && !memcmp(k, name, n);
}

static struct coco_image *find(const struct coco_parse *p, long id)
{
    long lo = 0, hi = p->n;
    while (lo < hi) {
        long mid = lo + (hi - lo) / 2;
        if (p->ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < p->n && p->ids[lo] == id ? &p->img[lo] : NULL;
}

/* ---- numbers ------------------------------------------------------------ */

struct num {
    int is_int;
    long long i;
    double d;
};

/* Converts number text from yajl (valid JSON number syntax) as jansson's
 * lexer does: without '.', 'e', 'E' an integer (strtoll), else a real
 * (strtod). Returns 0, or -1 with why set when out of range. */
static int num_parse(const char *s, size_t len, struct num *out, const char **why)
{
    char small[64];
    char *t = len < sizeof small ? small : malloc(len + 1);
    if (!t) {
        *why = "out of memory for a number";
        return -1;
    }
    memcpy(t, s, len);
    t[len] = 0;
    int rc = 0;
    out->is_int = !strpbrk(t, ".eE");
    errno = 0;
    if (out->is_int) {
        out->i = strtoll(t, NULL, 10);
        out->d = (double)out->i;
        if (errno == ERANGE) {
            *why = "integer out of 64-bit range";
            rc = -1;
        }
    } else {
        out->d = strtod(t, NULL);
        if ((out->d == HUGE_VAL || out->d == -HUGE_VAL) && errno == ERANGE) {
            *why = "real number out of double range";
            rc = -1;
        }
    }
    if (t != small)
        free(t);
    return rc;
}

static struct jint jint_of(const struct num *x)
{
    struct jint r = {0, 0};
    if (x->is_int) {
        r.ok = 1;
        r.v = (long)x->i;
    } else if (x->d == floor(x->d) && fabs(x->d) < 1e15) {
        r.ok = 1;
        r.v = (long)x->d;
    }
    return r;
}

/* ---- elements ----------------------------------------------------------- */

static void element_begin(struct coco_parse *p)
{
    struct jint none = {0, 0};
    p->id = p->width = p->height = p->image_id = p->category = none;
    p->crowd = 0;
    p->bb_ok = 0;
    p->field = K_OTHER;
}

static void image_end(struct coco_parse *p)
{
    struct coco_image *ci = p->id.ok ? find(p, p->id.v) : NULL;
    if (!ci)
        return;
    ci->in_json = 1;
    if (p->width.ok && p->width.v > 0 && p->width.v < INT_MAX)
        ci->width = (int)p->width.v;
    if (p->height.ok && p->height.v > 0 && p->height.v < INT_MAX)
        ci->height = (int)p->height.v;
}

static int annotation_end(struct coco_parse *p)
{
    struct coco_image *ci = p->image_id.ok ? find(p, p->image_id.v) : NULL;
    if (!ci)
        return 1;
    if (p->crowd == 1) {
        ci->n_crowd++;
        return 1;
    }
    if (!p->bb_ok) {
        /* One bad box spoils its image only: mark it with n_obj -1. */
        ci->n_obj = -1;
        return 1;
    }
    if (ci->n_obj < 0)
        return 1;
    if (ci->n_obj == ci->cap) {
        int ncap = ci->cap ? ci->cap * 2 : 4;
        void *q = realloc(ci->obj, (size_t)ncap * sizeof *ci->obj);
        if (!q)
            return stop(p, ERR_NOMEM, "out of memory for COCO boxes");
        ci->obj = q;
        ci->cap = ncap;
    }
    struct dataset_object *o = &ci->obj[ci->n_obj++];
    memset(o, 0, sizeof *o);
    /* extract_gt_COCO: [x, y, x + w, y + h] summed in double, then
     * Python round() = half to even = rint in the default mode. */
    o->box[0] = (float)rint(p->bb[0]);
    o->box[1] = (float)rint(p->bb[1]);
    o->box[2] = (float)rint(p->bb[0] + p->bb[2]);
    o->box[3] = (float)rint(p->bb[1] + p->bb[3]);
    if (p->category.ok)
        snprintf(o->name, sizeof o->name, "%ld", p->category.v);
    return 1;
}

/* A second top-level "images" or "annotations" replaces the first, as in
 * jansson's tree (the last of repeated keys wins). */
static void top_key(struct coco_parse *p, const unsigned char *k, size_t n)
{
    p->top = key_is(k, n, "images") ? SEC_IMAGES
             : key_is(k, n, "annotations") ? SEC_ANNS : SEC_NONE;
    if (p->top == SEC_IMAGES && p->images_seen++)
        for (long i = 0; i < p->n; i++) {
            p->img[i].in_json = 0;
            p->img[i].width = p->img[i].height = 0;
        }
    if (p->top == SEC_ANNS) {
        if (p->anns_seen++)
            for (long i = 0; i < p->n; i++)
                p->img[i].n_obj = p->img[i].n_crowd = 0;
        p->anns_array = 0;
    }
}

/* The integer field the current key fills, or NULL (iscrowd, bbox, other). */
static struct jint *jint_slot(struct coco_parse *p)
{
    switch (p->field) {
    case K_ID: return &p->id;
    case K_WIDTH: return &p->width;
    case K_HEIGHT: return &p->height;
    case K_IMAGE_ID: return &p->image_id;
    case K_CATEGORY: return &p->category;
    case K_ISCROWD: case K_BBOX: case K_OTHER: break;
    }
    return NULL;
}

/* A key of the element: which field its value fills. The value starts out
 * unusable, so a key repeated with a bad value leaves the field unusable. */
static void element_key(struct coco_parse *p, const unsigned char *k, size_t n)
{
    static const struct {
        enum section sec;
        const char *name;
        enum field field;
    } keys[] = {
        {SEC_IMAGES, "id", K_ID},          {SEC_IMAGES, "width", K_WIDTH},
        {SEC_IMAGES, "height", K_HEIGHT},  {SEC_ANNS, "image_id", K_IMAGE_ID},
        {SEC_ANNS, "bbox", K_BBOX},        {SEC_ANNS, "iscrowd", K_ISCROWD},
        {SEC_ANNS, "category_id", K_CATEGORY},
    };
    p->field = K_OTHER;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (keys[i].sec == p->sec && key_is(k, n, keys[i].name))
            p->field = keys[i].field;
    struct jint *slot = jint_slot(p);
    if (slot)
        *slot = (struct jint){0, 0};
    else if (p->field == K_ISCROWD)
        p->crowd = 0;
    else if (p->field == K_BBOX)
        p->bb_ok = 0;
}

/* ---- yajl callbacks ----------------------------------------------------- */

/* A scalar that is not a number (string, true, false, null). */
static int scalar(struct coco_parse *p, int is_true)
{
    p->good = offset(p);
    if (p->skip)
        return 1;
    if (p->depth == D_ELEMENT && p->field == K_ISCROWD && is_true)
        p->crowd = 1;
    else if (p->depth == D_BBOX) {
        p->bb_bad = 1;
        p->bb_n++;
    }
    return 1;
}

static int on_null(void *ctx) { return scalar(ctx, 0); }

static int on_boolean(void *ctx, int b) { return scalar(ctx, b); }

static int on_string(void *ctx, const unsigned char *s, size_t n)
{
    if (memchr(s, 0, n))
        return stop(ctx, ERR_INPUT, "\\u0000 in a string");
    return scalar(ctx, 0);
}

static int on_number(void *ctx, const char *s, size_t n)
{
    struct coco_parse *p = ctx;
    p->good = offset(p);
    int wanted = !p->skip && ((p->depth == D_ELEMENT && p->field != K_OTHER) ||
                              p->depth == D_BBOX);
    /* The numbers nobody reads (polygons, areas, ids of other things) are
     * only checked for range, and only when they could be out of it: 19
     * digits or more, or an exponent. */
    if (!wanted && n < 19) {
        size_t i = 0;
        while (i < n && (s[i] | 0x20) != 'e')
            i++;
        if (i == n)
            return 1;
    }
    struct num x;
    const char *why;
    if (num_parse(s, n, &x, &why))
        return stop(p, ERR_INPUT, why);
    if (!wanted)
        return 1;
    if (p->depth == D_BBOX) {
        if (p->bb_n < 4) {
            p->bb[p->bb_n] = x.d;
            if (!isfinite(x.d) || fabs(x.d) >= 1e9)
                p->bb_bad = 1;
        }
        p->bb_n++;
        return 1;
    }
    struct jint v = jint_of(&x), *slot = jint_slot(p);
    if (slot)
        *slot = v;
    else if (p->field == K_ISCROWD)
        p->crowd = v.ok ? v.v : 0;
    return 1;
}

static int on_key(void *ctx, const unsigned char *k, size_t n)
{
    struct coco_parse *p = ctx;
    p->good = offset(p);
    if (memchr(k, 0, n))
        return stop(p, ERR_INPUT, "\\u0000 in a key");
    if (p->skip)
        return 1;
    if (p->depth == D_ROOT)
        top_key(p, k, n);
    else if (p->depth == D_ELEMENT)
        element_key(p, k, n);
    return 1;
}

static int open_container(struct coco_parse *p, int is_map)
{
    p->good = offset(p);
    if (++p->depth > COCO_DEPTH_MAX)
        return stop(p, ERR_INPUT, "nested deeper than 2048 levels");
    if (p->skip)
        return 1;
    switch (p->depth) {
    case D_ROOT:
        if (!is_map)
            p->skip = D_ROOT;
        break;
    case D_SECTION:
        if (!is_map && p->top != SEC_NONE) {
            p->sec = p->top;
            p->anns_array |= p->sec == SEC_ANNS;
        } else {
            p->skip = D_SECTION;
        }
        break;
    case D_ELEMENT:
        if (is_map)
            element_begin(p);
        else
            p->skip = D_ELEMENT;
        break;
    case D_BBOX:
        if (!is_map && p->field == K_BBOX)
            p->bb_n = p->bb_bad = 0;
        else
            p->skip = D_BBOX;
        break;
    default:            /* a container inside bbox */
        p->bb_bad = 1;
        p->bb_n++;
        p->skip = p->depth;
        break;
    }
    return 1;
}

static int close_container(struct coco_parse *p)
{
    p->good = offset(p);
    if (p->skip) {
        if (p->skip == p->depth)
            p->skip = 0;
        p->depth--;
        return 1;
    }
    int ok = 1;
    switch (p->depth) {
    case D_SECTION:
        p->sec = SEC_NONE;
        break;
    case D_ELEMENT:
        if (p->sec == SEC_IMAGES)
            image_end(p);
        else
            ok = annotation_end(p);
        break;
    case D_BBOX:
        p->bb_ok = !p->bb_bad && p->bb_n == 4;
        break;
    }
    p->depth--;
    return ok;
}

static int on_start_map(void *ctx) { return open_container(ctx, 1); }
static int on_start_array(void *ctx) { return open_container(ctx, 0); }
static int on_end(void *ctx) { return close_container(ctx); }

/* ---- the file ----------------------------------------------------------- */

static const yajl_callbacks coco_callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_boolean,
    .yajl_number = on_number,     /* raw text: we convert only what we read */
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_key,
    .yajl_end_map = on_end,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end,
};

int dataset_coco_read(const char *path, size_t chunk, struct coco_image *img, long n,
                      struct err *e)
{
    if (!chunk)
        chunk = DATASET_COCO_CHUNK;
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(e, errno == ENOENT ? ERR_NOTFOUND : ERR_IO, "%s: %s", path,
                       strerror(errno));
    struct coco_parse p;
    memset(&p, 0, sizeof p);
    p.path = path;
    p.img = img;
    p.n = n;
    p.e = e;
    unsigned char *buf = malloc(chunk);
    p.ids = malloc((size_t)(n > 0 ? n : 1) * sizeof *p.ids);
    for (long i = 0; p.ids && i < n; i++)
        p.ids[i] = img[i].id;
    /* yajl's defaults are JSON's rules: no comments, UTF-8 checked, one
     * value, nothing after it. */
    p.h = buf && p.ids ? yajl_alloc(&coco_callbacks, NULL, &p) : NULL;
    if (!p.h) {
        free(p.ids);
        free(buf);
        fclose(f);
        return err_set(e, ERR_NOMEM, "%s: out of memory for the JSON parser", path);
    }
    int rc = 0, finishing = 0;
    yajl_status st = yajl_status_ok;
    for (;;) {
        size_t got = fread(buf, 1, chunk, f);
        if (got == 0) {
            if (ferror(f))
                rc = err_set(e, ERR_IO, "%s: read error at byte %llu", path, p.base);
            break;
        }
        st = yajl_parse(p.h, buf, got);
        if (st != yajl_status_ok)
            break;
        p.base += got;
    }
    if (!rc && st == yajl_status_ok) {
        finishing = 1;
        st = yajl_complete_parse(p.h);
    }
    if (rc) {
        /* read error, reported above */
    } else if (st == yajl_status_client_canceled) {
        rc = p.fail;
    } else if (st == yajl_status_error) {
        unsigned char *msg = yajl_get_error(p.h, 0, NULL, 0);
        size_t len = msg ? strlen((char *)msg) : 0;
        while (len && (msg[len - 1] == '\n' || msg[len - 1] == '.' || msg[len - 1] == ' '))
            msg[--len] = 0;
        /* yajl's own offset of an error moves with the read size (it
         * backs up by the token's length within the current read only), so
         * the message names where the last good token ended, which does
         * not; at the end of the file, the file's size. */
        const char *what = msg ? (char *)msg : "malformed JSON";
        if (finishing)
            rc = err_set(e, ERR_INPUT, "%s: byte %llu (end of file): %s", path, p.base, what);
        else
            rc = err_set(e, ERR_INPUT, "%s: malformed JSON after byte %llu: %s", path, p.good,
                         what);
        if (msg)
            yajl_free_error(p.h, msg);
    } else if (!p.anns_array) {
        rc = err_set(e, ERR_INPUT, "%s: no \"annotations\" array", path);
    }
    yajl_free(p.h);
    free(p.ids);
    free(buf);
    fclose(f);
    return rc;
}
