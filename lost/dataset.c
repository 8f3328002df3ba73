/* dataset.c - readers for the datasets LOST is evaluated on: PASCAL VOC
 * (set file + one XML per image, parsed with expat on demand) and COCO 20k
 * (the image list here; the instances JSON streamed once at load by
 * lost/dataset_coco.c). Mirrors LOST's datasets.py (`extract_gt_VOC`,
 * `extract_gt_COCO`, `select_coco_20k`) on top of torchvision's
 * VOCDetection / COCO parsing. Hands out image paths and ground-truth boxes;
 * never decodes images, never prints. */
#include "dataset.h"
#include "dataset_impl.h"

#include <ctype.h>
#include <errno.h>
#include <expat.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

struct dataset {
    enum dataset_kind kind;
    int no_hard;
    char base[DATASET_PATH_MAX]; /* VOC: the VOC2007 folder; COCO: root */
    long n;
    char **ids;                  /* VOC: [n] set-file ids (one block) */
    char *id_block;
    struct coco_image *img;      /* COCO: [n] sorted by id */
};

int dataset_kind_parse(const char *name, enum dataset_kind *kind, struct err *e)
{
    if (name && !strcasecmp(name, "voc07"))
        *kind = DATASET_VOC07;
    else if (name && !strcasecmp(name, "voc12"))
        *kind = DATASET_VOC12;
    else if (name && !strcasecmp(name, "coco20k"))
        *kind = DATASET_COCO20K;
    else
        return err_set(e, ERR_INPUT, "unknown dataset '%s' (voc07, voc12, coco20k)",
                       name ? name : "");
    return 0;
}

const char *dataset_kind_name(enum dataset_kind kind)
{
    switch (kind) {
    case DATASET_VOC07: return "voc07";
    case DATASET_VOC12: return "voc12";
    case DATASET_COCO20K: return "coco20k";
    }
    return "?";
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* snprintf into a fixed buffer; nonzero if it did not fit. */
static int path_fmt(char *dst, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int path_fmt(char *dst, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= cap;
}

/* Reads a whole file (at most max bytes) into a malloc'd, NUL-terminated
 * buffer. Returns 0, ERR_NOTFOUND, ERR_IO, ERR_TOOBIG or ERR_NOMEM. */
static int read_file(const char *path, size_t max, char **out, size_t *len, struct err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(e, errno == ENOENT ? ERR_NOTFOUND : ERR_IO, "%s: %s", path,
                       strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return err_set(e, ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n == cap) {
            if (cap >= max) {
                free(buf);
                fclose(f);
                return err_set(e, ERR_TOOBIG, "%s: larger than %zu bytes", path, max);
            }
            cap = cap * 2 > max ? max : cap * 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return err_set(e, ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                free(buf);
                fclose(f);
                return err_set(e, ERR_IO, "%s: read error", path);
            }
            break;
        }
    }
    fclose(f);
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

/* ---- VOC XML ------------------------------------------------------------ */

enum voc_field {
    F_NONE, F_FILENAME, F_WIDTH, F_HEIGHT, F_NAME, F_DIFFICULT, F_TRUNCATED,
    F_XMIN, F_YMIN, F_XMAX, F_YMAX
};

#define VOC_DEPTH 8
#define VOC_TEXT 256

struct voc_parse {
    XML_Parser xp;
    struct dataset_item *item;
    int no_hard;
    int depth;                  /* current element depth (root = 1) */
    const char *path[VOC_DEPTH]; /* names of the elements on the stack (static strings) */
    enum voc_field field;       /* collecting text for this field, or F_NONE */
    char text[VOC_TEXT];
    size_t text_len;
    int text_long;
    /* the object being read */
    int in_obj;
    struct dataset_object cur;
    char coord[4][VOC_TEXT];
    int have_coord[4];
    char flag_text[2][8];       /* difficult, truncated (stripped, truncated) */
    int cap;
    int fail;                   /* ERR_* once something is wrong */
    struct err *e;
    int n_obj_total;
};

static const char *intern(const char *name)
{
    static const char *const names[] = {"annotation", "filename", "size", "width", "height",
                                        "object", "name", "difficult", "truncated", "bndbox",
                                        "xmin", "ymin", "xmax", "ymax"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(name, names[i]))
            return names[i];
    return "";
}

static int at(const struct voc_parse *v, int depth, const char *a, const char *b, const char *c)
{
    if (v->depth != depth)
        return 0;
    const char *want[3] = {a, b, c};
    for (int i = 0; i < depth - 1 && i < 3; i++)
        if (strcmp(v->path[i + 1], want[i]))
            return 0;
    return 1;
}

static void voc_fail(struct voc_parse *v, int code, const char *msg)
{
    if (!v->fail) {
        v->fail = err_set(v->e, code, "%s", msg);
        XML_StopParser(v->xp, XML_FALSE);
    }
}

static void XMLCALL voc_start(void *ud, const XML_Char *name, const XML_Char **attr)
{
    (void)attr;
    struct voc_parse *v = ud;
    v->depth++;
    if (v->depth == 1 && strcmp(name, "annotation")) {
        voc_fail(v, ERR_INPUT, "root element is not <annotation>");
        return;
    }
    if (v->depth <= VOC_DEPTH)
        v->path[v->depth - 1] = intern(name);
    v->field = F_NONE;
    if (at(v, 2, "filename", 0, 0))
        v->field = F_FILENAME;
    else if (at(v, 3, "size", "width", 0))
        v->field = F_WIDTH;
    else if (at(v, 3, "size", "height", 0))
        v->field = F_HEIGHT;
    else if (at(v, 2, "object", 0, 0)) {
        v->in_obj = 1;
        memset(&v->cur, 0, sizeof v->cur);
        memset(v->have_coord, 0, sizeof v->have_coord);
        memset(v->flag_text, 0, sizeof v->flag_text);
    } else if (at(v, 3, "object", "name", 0))
        v->field = F_NAME;
    else if (at(v, 3, "object", "difficult", 0))
        v->field = F_DIFFICULT;
    else if (at(v, 3, "object", "truncated", 0))
        v->field = F_TRUNCATED;
    else if (at(v, 4, "object", "bndbox", "xmin"))
        v->field = F_XMIN;
    else if (at(v, 4, "object", "bndbox", "ymin"))
        v->field = F_YMIN;
    else if (at(v, 4, "object", "bndbox", "xmax"))
        v->field = F_XMAX;
    else if (at(v, 4, "object", "bndbox", "ymax"))
        v->field = F_YMAX;
    v->text_len = 0;
    v->text_long = 0;
}

static void XMLCALL voc_text(void *ud, const XML_Char *s, int len)
{
    struct voc_parse *v = ud;
    if (v->field == F_NONE)
        return;
    size_t n = (size_t)len;
    if (v->text_len + n >= VOC_TEXT) {
        n = VOC_TEXT - 1 - v->text_len;
        v->text_long = 1;
    }
    memcpy(v->text + v->text_len, s, n);
    v->text_len += n;
}

/* Python's str.strip() of the collected text, in place. */
static char *strip(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = 0;
    return s;
}

/* int(text) for plain integer text: optional sign, decimal digits. */
static int parse_int(const char *s, long *out)
{
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    if (!isdigit((unsigned char)*p))
        return -1;
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q))
            return -1;
    errno = 0;
    long x = strtol(s, NULL, 10);
    if (errno || x < -(1L << 24) || x > (1L << 24))
        return -1;
    *out = x;
    return 0;
}

static void voc_push_object(struct voc_parse *v)
{
    static const char *const cn[4] = {"xmin", "ymin", "xmax", "ymax"};
    long c[4];
    v->n_obj_total++;
    for (int k = 0; k < 4; k++) {
        if (!v->have_coord[k]) {
            char msg[96];
            snprintf(msg, sizeof msg, "object %d has no bndbox/%s", v->n_obj_total, cn[k]);
            voc_fail(v, ERR_INPUT, msg);
            return;
        }
        if (parse_int(v->coord[k], &c[k])) {
            char msg[VOC_TEXT + 96];
            snprintf(msg, sizeof msg, "object %d: %s '%s' is not an integer", v->n_obj_total,
                     cn[k], v->coord[k]);
            voc_fail(v, ERR_INPUT, msg);
            return;
        }
    }
    v->cur.difficult = !strcmp(v->flag_text[0], "1");
    v->cur.truncated = !strcmp(v->flag_text[1], "1");
    struct dataset_item *it = v->item;
    if (v->no_hard && (v->cur.difficult || v->cur.truncated)) {
        it->n_dropped++;
        return;
    }
    /* 1-based inclusive pixels -> 0-based, exclusive end (extract_gt_VOC). */
    v->cur.box[0] = (float)(c[0] - 1);
    v->cur.box[1] = (float)(c[1] - 1);
    v->cur.box[2] = (float)c[2];
    v->cur.box[3] = (float)c[3];
    if (it->n_obj == v->cap) {
        int ncap = v->cap ? v->cap * 2 : 8;
        void *p = realloc(it->obj, (size_t)ncap * sizeof *it->obj);
        if (!p) {
            voc_fail(v, ERR_NOMEM, "out of memory");
            return;
        }
        it->obj = p;
        v->cap = ncap;
    }
    it->obj[it->n_obj++] = v->cur;
}

static void XMLCALL voc_end(void *ud, const XML_Char *name)
{
    (void)name;
    struct voc_parse *v = ud;
    if (v->fail) {
        v->depth--;
        return;
    }
    if (v->field != F_NONE) {
        v->text[v->text_len] = 0;
        char *t = strip(v->text);
        long x;
        switch (v->field) {
        case F_FILENAME:
            if (strlen(t) >= sizeof v->item->file || strchr(t, '/')) {
                voc_fail(v, ERR_INPUT, "bad <filename>");
                return;
            }
            strcpy(v->item->file, t);
            break;
        case F_WIDTH:
            v->item->width = parse_int(t, &x) || x < 0 ? 0 : (int)x;
            break;
        case F_HEIGHT:
            v->item->height = parse_int(t, &x) || x < 0 ? 0 : (int)x;
            break;
        case F_NAME:
            snprintf(v->cur.name, sizeof v->cur.name, "%s", t);
            break;
        case F_DIFFICULT:
            snprintf(v->flag_text[0], sizeof v->flag_text[0], "%s", t);
            break;
        case F_TRUNCATED:
            snprintf(v->flag_text[1], sizeof v->flag_text[1], "%s", t);
            break;
        default: {
            int k = v->field - F_XMIN;
            if (v->text_long) {
                voc_fail(v, ERR_INPUT, "coordinate text too long");
                return;
            }
            strcpy(v->coord[k], t);
            v->have_coord[k] = 1;
        }
        }
        v->field = F_NONE;
    }
    if (v->in_obj && at(v, 2, "object", 0, 0)) {
        v->in_obj = 0;
        voc_push_object(v);
    }
    v->depth--;
}

int dataset_voc_parse(const char *xml, size_t len, int no_hard, struct dataset_item *item,
                      struct err *e)
{
    struct voc_parse v;
    memset(&v, 0, sizeof v);
    item->n_obj = 0;
    item->n_dropped = 0;
    item->obj = NULL;
    item->width = item->height = 0;
    item->file[0] = 0;
    if (len > INT_MAX)
        return err_set(e, ERR_TOOBIG, "annotation too large");
    v.xp = XML_ParserCreate(NULL);
    if (!v.xp)
        return err_set(e, ERR_NOMEM, "out of memory (XML parser)");
    v.item = item;
    v.no_hard = no_hard;
    v.e = e;
    XML_SetUserData(v.xp, &v);
    XML_SetElementHandler(v.xp, voc_start, voc_end);
    XML_SetCharacterDataHandler(v.xp, voc_text);
    enum XML_Status st = XML_Parse(v.xp, xml, (int)len, XML_TRUE);
    int rc = v.fail;
    if (!rc && st != XML_STATUS_OK)
        rc = err_set(e, ERR_INPUT, "malformed XML at line %lu: %s",
                     (unsigned long)XML_GetCurrentLineNumber(v.xp),
                     XML_ErrorString(XML_GetErrorCode(v.xp)));
    XML_ParserFree(v.xp);
    if (rc) {
        free(item->obj);
        item->obj = NULL;
        item->n_obj = 0;
    }
    return rc;
}

/* ---- VOC set ------------------------------------------------------------- */

static int cmp_id(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int voc_load(struct dataset *d, const char *root, const char *set, struct err *e)
{
    const char *year = d->kind == DATASET_VOC07 ? "2007" : "2012";
    char cand[3][DATASET_PATH_MAX], probe[DATASET_PATH_MAX + 32];
    int nc = 0;
    if (!path_fmt(cand[nc], sizeof cand[0], "%s", root))
        nc++;
    if (!path_fmt(cand[nc], sizeof cand[0], "%s/VOCdevkit/VOC%s", root, year))
        nc++;
    if (!path_fmt(cand[nc], sizeof cand[0], "%s/VOC%s/VOCdevkit/VOC%s", root, year, year))
        nc++;
    int found = -1;
    for (int i = 0; i < nc && found < 0; i++) {
        snprintf(probe, sizeof probe, "%s/Annotations", cand[i]);
        if (is_dir(probe))
            found = i;
    }
    if (found < 0)
        return err_set(e, ERR_NOTFOUND,
                       "no VOC%s under '%s' (looked for Annotations/ in it, in "
                       "VOCdevkit/VOC%s/ and VOC%s/VOCdevkit/VOC%s/)",
                       year, root, year, year, year);
    strcpy(d->base, cand[found]);

    char setpath[DATASET_PATH_MAX + 64];
    if (strchr(set, '/') || path_fmt(setpath, sizeof setpath, "%s/ImageSets/Main/%s.txt",
                                     d->base, set))
        return err_set(e, ERR_INPUT, "bad set name '%s'", set);
    char *txt;
    size_t len;
    int rc = read_file(setpath, 64u << 20, &txt, &len, e);
    if (rc)
        return rc;
    long lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += txt[i] == '\n';
    d->ids = malloc((size_t)lines * sizeof *d->ids);
    if (!d->ids) {
        free(txt);
        return err_set(e, ERR_NOMEM, "out of memory for %ld ids", lines);
    }
    d->id_block = txt;
    long n = 0, lineno = 0;
    for (char *s = txt; s && *s;) {
        char *nl = strchr(s, '\n');
        if (nl)
            *nl = 0;
        lineno++;
        char *id = strip(s);
        if (*id) {
            if (strlen(id) >= DATASET_ID_MAX || strchr(id, '/') || strchr(id, ' '))
                return err_set(e, ERR_INPUT, "%s:%ld: bad image id", setpath, lineno);
            d->ids[n++] = id;
        }
        s = nl ? nl + 1 : NULL;
    }
    d->n = n;
    /* An id listed twice would be evaluated twice, and --resume (which keys
     * results by id) would then disagree with an uninterrupted run. */
    char **sorted = malloc((size_t)(n ? n : 1) * sizeof *sorted);
    if (!sorted)
        return err_set(e, ERR_NOMEM, "out of memory for %ld ids", n);
    memcpy(sorted, d->ids, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_id);
    for (long i = 1; i < n; i++)
        if (!strcmp(sorted[i], sorted[i - 1])) {
            rc = err_set(e, ERR_INPUT, "%s: image id %s listed twice", setpath, sorted[i]);
            break;
        }
    free(sorted);
    return rc;
}

static int voc_get(const struct dataset *d, long i, struct dataset_item *it, struct err *e)
{
    const char *id = d->ids[i];
    snprintf(it->id, sizeof it->id, "%s", id);
    char xmlpath[DATASET_PATH_MAX + 128];
    snprintf(xmlpath, sizeof xmlpath, "%s/Annotations/%s.xml", d->base, id);
    char *xml;
    size_t len;
    struct err fe;
    err_clear(&fe);
    int rc = read_file(xmlpath, DATASET_XML_MAX, &xml, &len, &fe);
    if (!rc) {
        rc = dataset_voc_parse(xml, len, d->no_hard, it, &fe);
        free(xml);
        if (rc)
            err_prefix(&fe, "%s", xmlpath);
    }
    if (rc == ERR_NOMEM) {
        dataset_item_free(it);
        return err_set(e, rc, "%s", fe.msg);
    }
    if (rc)
        it->error = fe;
    if (!it->file[0])
        snprintf(it->file, sizeof it->file, "%s.jpg", id);
    if (path_fmt(it->path, sizeof it->path, "%s/JPEGImages/%s", d->base, it->file) &&
        !it->error.code)
        err_set(&it->error, ERR_INPUT, "image path too long");
    if (!rc && it->n_obj == 0 && !d->no_hard)
        err_set(&it->error, ERR_INPUT, "%s: no object in the annotation", xmlpath);
    return 0;
}

/* ---- COCO 20k ----------------------------------------------------------- */

static int cmp_coco(const void *a, const void *b)
{
    const struct coco_image *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

/* The image id of a coco_20k_filenames.txt line: integer of the digits after
 * the last '_' of the basename (COCO_train2014_%012d.jpg). */
static long coco_id_of(const char *line)
{
    const char *u = strrchr(line, '_');
    if (!u || !isdigit((unsigned char)u[1]))
        return -1;
    char *end;
    errno = 0;
    long id = strtol(u + 1, &end, 10);
    if (errno || id < 0 || (*end && *end != '.'))
        return -1;
    return id;
}

static int coco_load(struct dataset *d, const char *root, size_t chunk, struct err *e)
{
    char listp[DATASET_PATH_MAX + 64], annp[DATASET_PATH_MAX + 64];
    snprintf(d->base, sizeof d->base, "%s", root);
    snprintf(listp, sizeof listp, "%s/coco_20k_filenames.txt", root);
    if (!is_file(listp))
        snprintf(listp, sizeof listp, "%s/../coco_20k_filenames.txt", root);
    if (!is_file(listp))
        return err_set(e, ERR_NOTFOUND, "no coco_20k_filenames.txt in '%s' or its parent",
                       root);
    snprintf(annp, sizeof annp, "%s/annotations/instances_train2014_sel20k.json", root);
    if (!is_file(annp))
        snprintf(annp, sizeof annp, "%s/annotations/instances_train2014.json", root);
    if (!is_file(annp))
        return err_set(e, ERR_NOTFOUND, "no annotations/instances_train2014.json in '%s'",
                       root);

    char *txt;
    size_t len;
    int rc = read_file(listp, 64u << 20, &txt, &len, e);
    if (rc)
        return rc;
    long lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += txt[i] == '\n';
    d->img = calloc((size_t)lines, sizeof *d->img);
    if (!d->img) {
        free(txt);
        return err_set(e, ERR_NOMEM, "out of memory for %ld images", lines);
    }
    long n = 0, lineno = 0;
    for (char *s = txt; s && *s;) {
        char *nl = strchr(s, '\n');
        if (nl)
            *nl = 0;
        lineno++;
        char *line = strip(s);
        s = nl ? nl + 1 : NULL;
        if (!*line)
            continue;
        long id = coco_id_of(line);
        const char *base = strrchr(line, '/') ? strrchr(line, '/') + 1 : line;
        if (id < 0 || strlen(base) >= DATASET_ID_MAX || strlen(line) >= DATASET_PATH_MAX ||
            strstr(line, "..")) {
            rc = err_set(e, ERR_INPUT, "%s:%ld: not a COCO file name", listp, lineno);
            free(txt);
            return rc;
        }
        d->img[n].id = id;
        strcpy(d->img[n].file, base);
        strcpy(d->img[n].rel, line);
        n++;
    }
    free(txt);
    d->n = n;
    qsort(d->img, (size_t)n, sizeof *d->img, cmp_coco);
    for (long i = 1; i < n; i++)
        if (d->img[i].id == d->img[i - 1].id)
            return err_set(e, ERR_INPUT, "%s: image id %ld listed twice", listp, d->img[i].id);

    return dataset_coco_read(annp, chunk, d->img, n, e);
}

static int coco_get(const struct dataset *d, long i, struct dataset_item *it, struct err *e)
{
    const struct coco_image *ci = &d->img[i];
    snprintf(it->id, sizeof it->id, "%ld", ci->id);
    snprintf(it->file, sizeof it->file, "%s", ci->file);
    if (path_fmt(it->path, sizeof it->path, "%s/images/%s", d->base, ci->rel))
        err_set(&it->error, ERR_INPUT, "image path too long");
    it->width = ci->width;
    it->height = ci->height;
    it->n_dropped = ci->n_crowd;
    if (ci->n_obj < 0) {
        err_set(&it->error, ERR_INPUT, "image %ld: an annotation has a malformed bbox", ci->id);
        return 0;
    }
    if (ci->n_obj > 0) {
        it->obj = malloc((size_t)ci->n_obj * sizeof *it->obj);
        if (!it->obj)
            return err_set(e, ERR_NOMEM, "out of memory");
        memcpy(it->obj, ci->obj, (size_t)ci->n_obj * sizeof *it->obj);
        it->n_obj = ci->n_obj;
    } else if (!it->error.code) {
        err_set(&it->error, ERR_INPUT, "image %ld: %s", ci->id,
                ci->in_json || ci->n_crowd ? "no non-crowd annotation"
                                           : "not in the annotation file");
    }
    return 0;
}

/* ---- public ---------------------------------------------------------------- */

/* dataset_load, with the COCO JSON read chunk bytes at a time. */
static int load(enum dataset_kind kind, const char *root, const char *set, int no_hard,
                size_t chunk, struct dataset **out, struct err *e)
{
    *out = NULL;
    if (!root || !*root)
        return err_set(e, ERR_INPUT, "no dataset root given");
    if (strlen(root) > DATASET_PATH_MAX - 200)
        return err_set(e, ERR_INPUT, "dataset root path too long");
    if (!is_dir(root))
        return err_set(e, ERR_NOTFOUND, "dataset root '%s' is not a directory", root);
    struct dataset *d = calloc(1, sizeof *d);
    if (!d)
        return err_set(e, ERR_NOMEM, "out of memory");
    d->kind = kind;
    d->no_hard = no_hard;
    int rc;
    if (kind == DATASET_COCO20K)
        rc = coco_load(d, root, chunk, e);
    else
        rc = voc_load(d, root, set ? set : "trainval", e);
    if (rc) {
        dataset_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

int dataset_load(enum dataset_kind kind, const char *root, const char *set, int no_hard,
                 struct dataset **out, struct err *e)
{
    return load(kind, root, set, no_hard, 0, out, e);
}

int dataset_coco_load(const char *root, size_t chunk, struct dataset **out, struct err *e)
{
    return load(DATASET_COCO20K, root, NULL, 0, chunk, out, e);
}

void dataset_free(struct dataset *d)
{
    if (!d)
        return;
    free(d->ids);
    free(d->id_block);
    if (d->img)
        for (long i = 0; i < d->n; i++)
            free(d->img[i].obj);
    free(d->img);
    free(d);
}

long dataset_size(const struct dataset *d) { return d ? d->n : 0; }

int dataset_get(const struct dataset *d, long i, struct dataset_item *item, struct err *e)
{
    memset(item, 0, sizeof *item);
    if (!d || i < 0 || i >= d->n)
        return err_set(e, ERR_INPUT, "item %ld out of range (%ld items)", i, d ? d->n : 0L);
    item->index = i;
    if (d->kind == DATASET_COCO20K)
        return coco_get(d, i, item, e);
    return voc_get(d, i, item, e);
}

void dataset_item_free(struct dataset_item *item)
{
    if (!item)
        return;
    free(item->obj);
    memset(item, 0, sizeof *item);
}
