/* cmd_eval.c - `lostd eval`: CorLoc over VOC07 / VOC12 / COCO20k, the
 * protocol of LOST's main_lost.py / main_corloc_evaluation.py (specs/lost.md
 * section 5). Wiring only: dataset (lost/) yields items in dataset order, a
 * box source gives one box per item, corloc (lost/) counts the hits.
 *
 * Box sources are callbacks (eval_box_fn). Implemented: saved predictions
 * (LOST_VOC07.csv-style CSV, or the JSONL this command writes). The backbone
 * source (--model) plugs in at source_open_model(): load the model once,
 * then run the pipeline on item->path inside the callback.
 *
 * Output: one JSONL line per image with --out (written to <out>.part,
 * renamed to <out> when the run completes; --resume keeps the lines of
 * <out> and <out>.part and skips their images), progress on stderr when it
 * is a terminal, and one summary JSON line on stdout.
 * Exit status: 0 every image evaluated; 3 some images were skipped (corrupt
 * annotation, per-image failure) or had no prediction (counted as misses),
 * or, with --merge --root, some dataset images are in no input file;
 * 1 fatal error; 2 usage. */
#include "arena.h"
#include "clock.h"
#include "cli.h"

#include "corloc.h"
#include "dataset.h"
#include "err.h"
#include "file.h"
#include "image.h"
#include "lost_opts.h"
#include "model.h"
#include "pipeline.h"
#include "vit.h"

#include <cblas.h>
#include <errno.h>
#include <pthread.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CMD "eval"
#define EXIT_INCOMPLETE 3
#define LINE_MAX_BYTES (1 << 20)

/* The per-image step: one box (x1, y1, x2, y2, original pixels) for one
 * dataset item. Returns 0 with box filled; ERR_NOTFOUND when the source has
 * no box for this image (counted as a miss, reported as missing); any other
 * ERR_* skips the image (reported, not counted). Called once per item, in
 * dataset order within a shard. */
typedef int (*eval_box_fn)(void *ctx, const struct dataset_item *item, float box[4],
                           struct err *e);

struct eval_source {
    const char *name;       /* "predictions" or "model", for the summary */
    eval_box_fn box_for_image;
    void *ctx;
    void (*close)(void *ctx);
    /* Optional: the image the next box_for_image call will most likely
     * ask for, so the source can start reading it early. */
    void (*hint_next)(void *ctx, const char *path);
};

/* ---- a small string -> value map (open addressing) ---------------------- */

struct map_slot {
    char *key;              /* NULL = empty */
    float box[4];
    char *line;             /* JSONL lines: the text, kept for --out */
    long index;
    int status;
    int hit;
};

struct map {
    struct map_slot *slot;
    size_t cap, n;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

static struct map_slot *map_find(const struct map *m, const char *key)
{
    if (!m->cap)
        return NULL;
    for (size_t i = hash_str(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->slot[i].key)
            return NULL;
        if (!strcmp(m->slot[i].key, key))
            return &m->slot[i];
    }
}

/* Returns the slot for key, inserting it if new (*fresh = 1). NULL on ENOMEM. */
static struct map_slot *map_put(struct map *m, const char *key, int *fresh)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 1024;
        struct map_slot *ns = calloc(ncap, sizeof *ns);
        if (!ns)
            return NULL;
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->slot[i].key)
                continue;
            size_t j = hash_str(m->slot[i].key) & (ncap - 1);
            while (ns[j].key)
                j = (j + 1) & (ncap - 1);
            ns[j] = m->slot[i];
        }
        free(m->slot);
        m->slot = ns;
        m->cap = ncap;
    }
    size_t i = hash_str(key) & (m->cap - 1);
    while (m->slot[i].key && strcmp(m->slot[i].key, key))
        i = (i + 1) & (m->cap - 1);
    *fresh = !m->slot[i].key;
    if (*fresh) {
        m->slot[i].key = strdup(key);
        if (!m->slot[i].key)
            return NULL;
        m->n++;
    }
    return &m->slot[i];
}

static void map_free(struct map *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        free(m->slot[i].key);
        free(m->slot[i].line);
    }
    free(m->slot);
    memset(m, 0, sizeof *m);
}

/* ---- predictions source ---------------------------------------------------- */

/* Reads one line (any length up to LINE_MAX_BYTES) into *buf. Returns its
 * length, -1 at EOF, -2 if too long. */
static long read_line(FILE *f, char **buf, size_t *cap)
{
    ssize_t n = getline(buf, cap, f);
    if (n < 0)
        return -1;
    if (n > LINE_MAX_BYTES)
        return -2;
    while (n > 0 && ((*buf)[n - 1] == '\n' || (*buf)[n - 1] == '\r'))
        (*buf)[--n] = 0;
    return (long)n;
}

static int box_from_json(json_t *b, float box[4])
{
    if (!json_is_array(b) || json_array_size(b) != 4)
        return -1;
    for (int k = 0; k < 4; k++) {
        json_t *v = json_array_get(b, (size_t)k);
        if (!json_is_number(v) || !isfinite(json_number_value(v)))
            return -1;
        box[k] = (float)json_number_value(v);
    }
    return 0;
}

/* CSV "image_id,x1,y1,x2,y2" (header optional) or JSONL {"image_id", "box"}
 * (lines without a box, e.g. skipped images, are ignored). */
static int load_predictions(const char *path, struct map *m, struct err *e)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return err_set(e, errno == ENOENT ? ERR_NOTFOUND : ERR_IO, "%s: %s", path,
                       strerror(errno));
    char *buf = NULL;
    size_t cap = 0;
    long n, lineno = 0, dup = 0;
    int rc = 0;
    while (!rc && (n = read_line(f, &buf, &cap)) != -1) {
        lineno++;
        if (n == -2) {
            rc = err_set(e, ERR_INPUT, "%s:%ld: line too long", path, lineno);
            break;
        }
        char *s = buf;
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            continue;
        char id[DATASET_ID_MAX];
        float box[4];
        if (*s == '{') {
            json_error_t je;
            json_t *o = json_loads(s, 0, &je);
            json_t *jid = json_object_get(o, "image_id");
            if (!o || !json_is_string(jid) || strlen(json_string_value(jid)) >= sizeof id) {
                json_decref(o);
                rc = err_set(e, ERR_INPUT, "%s:%ld: not a prediction line", path, lineno);
                break;
            }
            int has = box_from_json(json_object_get(o, "box"), box) == 0;
            snprintf(id, sizeof id, "%s", json_string_value(jid));
            json_decref(o);
            if (!has)
                continue;
        } else {
            if (lineno == 1 && !strncmp(s, "image_id", 8))
                continue;
            char *c = strchr(s, ',');
            if (!c || (size_t)(c - s) >= sizeof id || c == s) {
                rc = err_set(e, ERR_INPUT, "%s:%ld: expected image_id,x1,y1,x2,y2", path,
                             lineno);
                break;
            }
            memcpy(id, s, (size_t)(c - s));
            id[c - s] = 0;
            char *p = c + 1, *end;
            for (int k = 0; k < 4 && !rc; k++) {
                errno = 0;
                double v = strtod(p, &end);
                if (end == p || errno || !isfinite(v) || (k < 3 ? *end != ',' : *end != 0))
                    rc = err_set(e, ERR_INPUT, "%s:%ld: expected image_id,x1,y1,x2,y2", path,
                                 lineno);
                box[k] = (float)v;
                p = end + 1;
            }
            if (rc)
                break;
        }
        int fresh;
        struct map_slot *sl = map_put(m, id, &fresh);
        if (!sl) {
            rc = err_set(e, ERR_NOMEM, "out of memory");
            break;
        }
        dup += !fresh;
        memcpy(sl->box, box, sizeof box);
    }
    free(buf);
    fclose(f);
    if (!rc && dup)
        fprintf(stderr, "lostd eval: %s: %ld duplicate image ids, the last box of each kept\n",
                path, dup);
    return rc;
}

/* Tries the item id ("000005", "9"), the file name ("000005.jpg") and its stem. */
static int predictions_box(void *ctx, const struct dataset_item *it, float box[4],
                           struct err *e)
{
    const struct map *m = ctx;
    const struct map_slot *s = map_find(m, it->id);
    if (!s && it->file[0])
        s = map_find(m, it->file);
    if (!s && it->file[0]) {
        char stem[DATASET_ID_MAX];
        snprintf(stem, sizeof stem, "%s", it->file);
        char *dot = strrchr(stem, '.');
        if (dot)
            *dot = 0;
        s = map_find(m, stem);
    }
    if (!s)
        return err_set(e, ERR_NOTFOUND, "no prediction for %s", it->id);
    memcpy(box, s->box, 4 * sizeof(float));
    return 0;
}

static void predictions_close(void *ctx)
{
    map_free(ctx);
    free(ctx);
}

static int source_open_predictions(const char *path, struct eval_source *src, struct err *e)
{
    struct map *m = calloc(1, sizeof *m);
    if (!m)
        return err_set(e, ERR_NOMEM, "out of memory");
    int rc = load_predictions(path, m, e);
    if (rc) {
        predictions_close(m);
        return rc;
    }
    src->name = "predictions";
    src->box_for_image = predictions_box;
    src->ctx = m;
    src->close = predictions_close;
    return 0;
}

/* The backbone source: the model is loaded once; each image is decoded,
 * run through the same pipeline as `discover` and `serve`, and its LOST box
 * returned. The workspace grows to the largest image seen. Decoding is
 * pipelined: while image i runs through the forward, a second thread
 * decodes image i + 1 into the other of two arenas. */
struct model_source {
    struct model *m;
    struct vit_work *w;
    struct arena *a, *a_next;   /* current image's scratch, next image's pixels */
    struct pipeline_opts po;
    int threads;
    char next[4096];            /* hint for the image after the current one */
    /* the decode running ahead */
    pthread_t th;
    int pf_active, pf_rc;
    char pf_path[4096];
    struct image pf_img;
    struct err pf_err;
};

static void *prefetch_main(void *v)
{
    struct model_source *s = v;
    s->pf_rc = image_load_file(s->pf_path, s->po.max_pixels, 1, s->a_next, &s->pf_img,
                               &s->pf_err);
    return NULL;
}

static void prefetch_wait(struct model_source *s)
{
    if (s->pf_active) {
        pthread_join(s->th, NULL);
        s->pf_active = 0;
    }
}

static void prefetch_start(struct model_source *s, const char *path)
{
    if (s->pf_active || !path[0] || strlen(path) >= sizeof s->pf_path)
        return;
    arena_reset(s->a_next);
    snprintf(s->pf_path, sizeof s->pf_path, "%s", path);
    s->pf_active = !pthread_create(&s->th, NULL, prefetch_main, s);
}

static void model_hint(void *ctx, const char *path)
{
    struct model_source *s = ctx;
    snprintf(s->next, sizeof s->next, "%s", path ? path : "");
}

static int model_box(void *ctx, const struct dataset_item *it, float box[4], struct err *e)
{
    struct model_source *s = ctx;
    struct image img;
    int rc;
    if (s->pf_active && !strcmp(s->pf_path, it->path)) {
        prefetch_wait(s);
        struct arena *t = s->a; /* the decoded pixels become this image's scratch */
        s->a = s->a_next;
        s->a_next = t;
        if ((rc = s->pf_rc)) {
            *e = s->pf_err;
            return rc == ERR_NOTFOUND ? err_set(e, ERR_IO, "%s", s->pf_err.msg) : rc;
        }
        img = s->pf_img;
    } else {
        prefetch_wait(s);
        arena_reset(s->a);
        rc = image_load_file(it->path, s->po.max_pixels, 1, s->a, &img, e);
        if (rc)
            return rc == ERR_NOTFOUND ? (e->code = ERR_IO) : rc; /* message kept */
    }
    prefetch_start(s, s->next);
    if ((rc = pipeline_workspace_ensure(s->m, &s->w, img.w, img.h, s->po.max_side,
                                        s->threads, e)))
        return rc;
    struct pipeline_result r;
    if ((rc = pipeline_run_image(s->m, s->w, s->a, &img, &s->po, &r, e)))
        return rc;
    /* --dinoseg scores the baseline's box instead of LOST's */
    const int *b = s->po.dinoseg ? r.dinoseg_box : r.lost.box;
    for (int k = 0; k < 4; k++)
        box[k] = (float)b[k];
    return 0;
}

static void model_close(void *ctx)
{
    struct model_source *s = ctx;
    prefetch_wait(s);
    vit_work_free(s->w);
    arena_free(s->a);
    arena_free(s->a_next);
    model_free(s->m);
    free(s);
}

static int source_open_model(const char *path, const struct pipeline_opts *po,
                             const struct model_opts *mo, int threads,
                             struct eval_source *src, struct err *e)
{
    struct model_source *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(e, ERR_NOMEM, "out of memory");
    s->po = *po;
    s->threads = threads > 0 ? threads : 1;
    if (s->po.max_pixels <= 0)
        s->po.max_pixels = IMAGE_DEFAULT_MAX_PIXELS;
    int rc = model_load(path, mo, &s->m, e);
    size_t cap = (size_t)s->po.max_pixels * 20 + (1u << 30);
    if (!rc && (!(s->a = arena_init(cap)) || !(s->a_next = arena_init(cap))))
        rc = err_set(e, ERR_NOMEM, "out of memory for scratch");
    if (rc) {
        model_close(s);
        return rc;
    }
    /* One team of threads: the workspace's on the AVX-512 path, OpenBLAS's
     * own on the fallback (see vit_work_set_threads). */
    openblas_set_num_threads(vit_kernels_available() ? 1 : s->threads);
    src->name = "model";
    src->box_for_image = model_box;
    src->hint_next = model_hint;
    src->ctx = s;
    src->close = model_close;
    return 0;
}

/* ---- result lines ------------------------------------------------------------ */

enum { ST_OK, ST_MISSING, ST_SKIPPED, ST_EXCLUDED };
static const char *const status_name[] = {"ok", "missing", "skipped", "excluded"};

static void acc_count(struct corloc_acc *acc, int status, int hit)
{
    switch (status) {
    case ST_OK: corloc_add(acc, hit); break;
    case ST_MISSING: corloc_add(acc, 0); acc->missing++; break;
    case ST_SKIPPED: acc->skipped++; break;
    default: acc->excluded++; break;
    }
}

static json_t *box_json(const float b[4])
{
    json_t *a = json_array();
    for (int k = 0; k < 4; k++)
        json_array_append_new(a, b[k] == rintf(b[k]) && fabsf(b[k]) < 1e9f
                                     ? json_integer((json_int_t)b[k])
                                     : json_real(b[k]));
    return a;
}

/* Parses a line written by this command. Returns 0, or -1 if it is not one. */
static int parse_result_line(const char *s, char id[DATASET_ID_MAX], int *status, int *hit,
                             long *index)
{
    json_error_t je;
    json_t *o = json_loads(s, 0, &je);
    json_t *jid = json_object_get(o, "image_id"), *st = json_object_get(o, "status");
    int rc = -1;
    if (o && json_is_string(jid) && strlen(json_string_value(jid)) < DATASET_ID_MAX &&
        json_is_string(st)) {
        for (int k = 0; k < 4; k++)
            if (!strcmp(json_string_value(st), status_name[k])) {
                *status = k;
                rc = 0;
            }
        snprintf(id, DATASET_ID_MAX, "%s", json_string_value(jid));
        *hit = json_is_true(json_object_get(o, "hit"));
        json_t *ix = json_object_get(o, "index");
        *index = json_is_integer(ix) ? (long)json_integer_value(ix) : -1;
    }
    json_decref(o);
    return rc;
}

/* Adds the result lines of path to m (first occurrence of an id wins) and
 * to acc. missing_ok: a missing file is not an error. */
static int read_results(const char *path, int missing_ok, struct map *m, struct corloc_acc *acc,
                        long *dups, struct err *e)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (missing_ok && errno == ENOENT)
            return 0;
        return err_set(e, ERR_IO, "%s: %s", path, strerror(errno));
    }
    char *buf = NULL;
    size_t cap = 0;
    long n, lineno = 0, bad = 0;
    int rc = 0;
    while ((n = read_line(f, &buf, &cap)) != -1) {
        lineno++;
        char id[DATASET_ID_MAX];
        int status = ST_SKIPPED, hit = 0;
        long index = -1;
        if (n == -2 || parse_result_line(buf, id, &status, &hit, &index)) {
            bad++;      /* e.g. the torn last line of an interrupted run */
            continue;
        }
        int fresh;
        struct map_slot *sl = map_put(m, id, &fresh);
        if (!sl || (fresh && !(sl->line = strdup(buf)))) {
            rc = err_set(e, ERR_NOMEM, "out of memory");
            break;
        }
        if (!fresh) {
            (*dups)++;
            continue;
        }
        sl->status = status;
        sl->hit = hit;
        sl->index = index;
        acc_count(acc, status, hit);
    }
    free(buf);
    fclose(f);
    if (bad)
        fprintf(stderr, "lostd eval: %s: ignored %ld unreadable line(s)\n", path, bad);
    return rc;
}

static int cmp_slot_index(const void *a, const void *b)
{
    const struct map_slot *x = *(const struct map_slot *const *)a;
    const struct map_slot *y = *(const struct map_slot *const *)b;
    if (x->index != y->index)
        return (x->index > y->index) - (x->index < y->index);
    return strcmp(x->key, y->key);
}

/* Writes every line of m, in dataset order (index), to path via a
 * temporary file renamed into place. */
static int write_results(const char *path, const struct map *m, struct err *e)
{
    const struct map_slot **v = malloc((m->n + 1) * sizeof *v);
    if (!v)
        return err_set(e, ERR_NOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slot[i].key)
            v[n++] = &m->slot[i];
    qsort(v, n, sizeof *v, cmp_slot_index);
    struct file_out f;
    int rc = file_out_open(&f, path, e);
    for (size_t i = 0; i < n && !rc; i++)
        rc = file_out_printf(&f, e, "%s\n", v[i]->line);
    free(v);
    if (!rc)
        rc = file_out_commit(&f, e);
    return rc;
}

/* ---- command ----------------------------------------------------------------- */

struct opts {
    struct pipeline_opts po;    /* LOST options, with --model */
    struct model_opts mo;       /* --heads, --act */
    long threads;               /* --threads, with --model */
    const char *dataset, *root, *model, *predictions, *set, *out;
    long shard_i, shard_n, limit;
    int resume, no_hard;
    const char **merge;
    int n_merge;
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: lostd eval --dataset voc07|voc12|coco20k --root DIR\n"
        "                  (--model FILE | --predictions FILE) [--set trainval]\n"
        "                  [--out preds.jsonl] [--resume] [--shard I/N] [--limit N] [--no-hard]\n"
        "       lostd eval --dataset D --merge a.jsonl b.jsonl ... [--root DIR] [--out all.jsonl]\n\n"
        "  --root DIR          VOC: the folder holding VOCdevkit/ (or VOC2007/ itself);\n"
        "                      COCO: holds annotations/, images/, coco_20k_filenames.txt\n"
        "  --predictions FILE  CSV image_id,x1,y1,x2,y2 (image_id = file stem, e.g.\n"
        "                      LOST_VOC07.csv; COCO: the image id) or the JSONL of --out\n"
        "  --model FILE        run the backbone + LOST on every image (LOST options below)\n"
        "  --threads N         threads for the forward (default: the online CPUs)\n"
        "  --set NAME          ImageSets/Main/NAME.txt (default trainval; ignored for COCO)\n"
        "  --out FILE          one JSON line per image, written to FILE.part, renamed at the end\n"
        "  --resume            keep the lines already in FILE / FILE.part, skip those images\n"
        "  --shard I/N         only images whose dataset index i has i %% N == I\n"
        "  --limit N           only the first N images of the dataset order\n"
        "  --no-hard           VOC: drop truncated/difficult objects, skip images left empty\n"
        "  --merge FILES...    combine the --out files of several shards\n\n"
        "stdout: one JSON line {dataset, set, images, hits, corloc, skipped,\n"
        "missing_predictions, excluded, ...}; images without a prediction count as misses.\n"
        "Exit status: 0 all evaluated, 3 some images skipped or without prediction,\n"
        "1 fatal error, 2 usage.\n\n%s", lost_opts_help());
}

static int parse_shard(const char *s, long *i, long *n)
{
    char *end;
    errno = 0;
    long a = strtol(s, &end, 10);
    if (end == s || *end != '/' || errno)
        return -1;
    const char *s2 = end + 1;
    long b = strtol(s2, &end, 10);
    if (end == s2 || *end || errno || b < 1 || b > 1000000 || a < 0 || a >= b)
        return -1;
    *i = a;
    *n = b;
    return 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof *o);
    pipeline_opts_default(&o->po);
    o->mo.act = -1;
    o->threads = sysconf(_SC_NPROCESSORS_ONLN) > 0 ? sysconf(_SC_NPROCESSORS_ONLN) : 1;
    o->shard_n = 1;
    o->limit = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int k = lost_opts_parse(CMD, argc, argv, &i, &o->po, &o->mo);
        if (k < 0)
            return 2;
        if (k)
            continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(a, "--threads") && i + 1 < argc) {
            if (cli_parse_int(CMD, a, argv[++i], 1, 64, &o->threads))
                return 2;
            continue;
        }
        if (!strcmp(a, "--resume")) {
            o->resume = 1;
            continue;
        }
        if (!strcmp(a, "--no-hard")) {
            o->no_hard = 1;
            continue;
        }
        if (!strcmp(a, "--merge")) {
            o->merge = (const char **)argv + i + 1;
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2))
                i++, o->n_merge++;
            if (!o->n_merge)
                return cli_fail(2, CMD, "--merge needs at least one file");
            continue;
        }
        if (strncmp(a, "--", 2))
            return cli_fail(2, CMD, "unexpected argument '%s'", a);
        if (i + 1 >= argc)
            return cli_fail(2, CMD, "%s needs a value", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--dataset"))
            o->dataset = v;
        else if (!strcmp(a, "--root"))
            o->root = v;
        else if (!strcmp(a, "--model"))
            o->model = v;
        else if (!strcmp(a, "--predictions"))
            o->predictions = v;
        else if (!strcmp(a, "--set"))
            o->set = v;
        else if (!strcmp(a, "--out"))
            o->out = v;
        else if (!strcmp(a, "--shard")) {
            if (parse_shard(v, &o->shard_i, &o->shard_n))
                return cli_fail(2, CMD, "--shard expects I/N with 0 <= I < N, got '%s'", v);
        } else if (!strcmp(a, "--limit")) {
            if (cli_parse_int(CMD, a, v, 0, 1L << 40, &o->limit))
                return 2;
        } else
            return cli_fail(2, CMD, "unknown option '%s' (see lostd eval --help)", a);
    }
    if (!o->dataset)
        return cli_fail(2, CMD, "--dataset is required (voc07, voc12, coco20k)");
    if (o->merge) {
        if (o->model || o->predictions || o->resume || o->shard_n > 1)
            return cli_fail(2, CMD, "--merge takes no --model/--predictions/--resume/--shard");
        return 0;
    }
    if (!o->root)
        return cli_fail(2, CMD, "--root is required");
    if (!!o->model == !!o->predictions)
        return cli_fail(2, CMD, "give exactly one of --model FILE and --predictions FILE");
    if (o->resume && !o->out)
        return cli_fail(2, CMD, "--resume needs --out");
    return 0;
}

/* The closing JSON line on stdout. 0, or -1 (message printed) when stdout
 * cannot take it: the result must not be lost silently. */
static int summary(const struct opts *o, const char *set, const char *source,
                   const struct corloc_acc *acc, long not_evaluated, double ms)
{
    json_t *j = json_object();
    json_object_set_new(j, "dataset", json_string(o->dataset));
    json_object_set_new(j, "set", json_string(set));
    json_object_set_new(j, "images", json_integer(acc->images));
    json_object_set_new(j, "hits", json_integer(acc->hits));
    json_object_set_new(j, "corloc", json_real(round(corloc_percent(acc) * 100.0) / 100.0));
    json_object_set_new(j, "skipped", json_integer(acc->skipped));
    json_object_set_new(j, "missing_predictions", json_integer(acc->missing));
    json_object_set_new(j, "excluded", json_integer(acc->excluded));
    if (not_evaluated >= 0)
        json_object_set_new(j, "not_evaluated", json_integer(not_evaluated));
    if (o->shard_n > 1) {
        char s[48];
        snprintf(s, sizeof s, "%ld/%ld", o->shard_i, o->shard_n);
        json_object_set_new(j, "shard", json_string(s));
    }
    json_object_set_new(j, "no_hard", json_boolean(o->no_hard));
    json_object_set_new(j, "source", json_string(source));
    json_object_set_new(j, "seconds", json_real(round(ms) / 1000.0));
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(12));
    json_decref(j);
    int bad = !s || puts(s) == EOF;
    free(s);
    bad |= fflush(stdout) != 0;
    if (bad) {
        cli_fail(1, CMD, "cannot write the result to stdout: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void progress(long done, long total, double t0, int final)
{
    double s = (clock_now_ms() - t0) / 1000.0;
    double rate = s > 0 ? done / s : 0;
    double eta = rate > 0 ? (total - done) / rate : 0;
    fprintf(stderr, "\rlostd eval: %ld/%ld images  %.1f img/s  ETA %02d:%02d:%02d ", done, total,
            rate, (int)(eta / 3600), (int)fmod(eta / 60, 60), (int)fmod(eta, 60));
    if (final)
        fputc('\n', stderr);
}

static int run_merge(const struct opts *o)
{
    double t0 = clock_now_ms();
    struct map m = {0};
    struct corloc_acc acc;
    corloc_init(&acc);
    struct err e;
    err_clear(&e);
    long dups = 0, not_evaluated = -1;
    int rc = 0;
    for (int k = 0; k < o->n_merge && !rc; k++)
        rc = read_results(o->merge[k], 0, &m, &acc, &dups, &e);
    if (rc) {
        map_free(&m);
        return cli_fail(1, CMD, "%s", e.msg);
    }
    if (dups)
        fprintf(stderr, "lostd eval: %ld image(s) appear in several files, first kept\n", dups);
    enum dataset_kind kind;
    if (dataset_kind_parse(o->dataset, &kind, &e)) {
        map_free(&m);
        return cli_fail(2, CMD, "%s", e.msg);
    }
    const char *set = o->set ? o->set : kind == DATASET_COCO20K ? "train" : "trainval";
    if (o->root) {
        /* Coverage: every image of the dataset (up to --limit) must be in a file. */
        struct dataset *d;
        if (dataset_load(kind, o->root, set, o->no_hard, &d, &e)) {
            map_free(&m);
            return cli_fail(1, CMD, "%s", e.msg);
        }
        long n = dataset_size(d);
        if (o->limit >= 0 && o->limit < n)
            n = o->limit;
        not_evaluated = 0;
        for (long i = 0; i < n; i++) {
            struct dataset_item it;
            if (dataset_get(d, i, &it, &e) == 0 && !map_find(&m, it.id))
                not_evaluated++;
            dataset_item_free(&it);
        }
        dataset_free(d);
    }
    if (o->out && (rc = write_results(o->out, &m, &e))) {
        map_free(&m);
        return cli_fail(1, CMD, "%s", e.msg);
    }
    map_free(&m);
    if (summary(o, set, "merge", &acc, not_evaluated, clock_now_ms() - t0))
        return 1;
    return acc.skipped || acc.missing || not_evaluated > 0 ? EXIT_INCOMPLETE : 0;
}

/* Opens <out>.part for appending. With resume, first gathers the lines of
 * <out> and <out>.part (into done) and rewrites them to <out>.part, so
 * a torn last line cannot glue onto the next one. */
static FILE *open_out(const struct opts *o, char *part, size_t cap, struct map *done,
                      struct err *e)
{
    if ((size_t)snprintf(part, cap, "%s.part", o->out) >= cap) {
        err_set(e, ERR_INPUT, "%s: path too long", o->out);
        return NULL;
    }
    /* The final rename must not fail after hours of work, nor replace a
     * device or a folder: only a regular file (or nothing) may be there. */
    struct stat sb;
    if (stat(o->out, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        err_set(e, ERR_IO, "%s %s", o->out, S_ISDIR(sb.st_mode)
                ? "is a directory, not a regular file" : "exists and is not a regular file");
        return NULL;
    }
    if (o->resume) {
        /* Counted later, when the loop meets each image: lines of images
         * outside this shard / limit are kept in the file but not counted. */
        struct corloc_acc unused;
        corloc_init(&unused);
        long dups = 0;
        if (read_results(o->out, 1, done, &unused, &dups, e) ||
            read_results(part, 1, done, &unused, &dups, e) || write_results(part, done, e))
            return NULL;
    }
    FILE *f = fopen(part, o->resume ? "a" : "w");
    if (!f)
        err_set(e, ERR_IO, "%s: %s", part, strerror(errno));
    return f;
}

int cli_eval(int argc, char **argv)
{
    struct opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (o.merge)
        return run_merge(&o);

    double t0 = clock_now_ms();
    struct err e;
    err_clear(&e);
    enum dataset_kind kind;
    if (dataset_kind_parse(o.dataset, &kind, &e))
        return cli_fail(2, CMD, "%s", e.msg);
    const char *set = o.set ? o.set : kind == DATASET_COCO20K ? "train" : "trainval";
    struct dataset *d = NULL;
    if (dataset_load(kind, o.root, set, o.no_hard, &d, &e))
        return cli_fail(1, CMD, "%s", e.msg);
    struct eval_source src = {0};
    rc = o.model ? source_open_model(o.model, &o.po, &o.mo, (int)o.threads, &src, &e)
                 : source_open_predictions(o.predictions, &src, &e);
    if (rc) {
        dataset_free(d);
        return cli_fail(1, CMD, "%s", e.msg);
    }

    struct corloc_acc acc;
    corloc_init(&acc);
    struct map done = {0};
    char part[4096];
    FILE *out = NULL;
    if (o.out && !(out = open_out(&o, part, sizeof part, &done, &e))) {
        rc = cli_fail(1, CMD, "%s", e.msg);
        goto end;
    }

    long n = dataset_size(d);
    if (o.limit >= 0 && o.limit < n)
        n = o.limit;
    long total = n > o.shard_i ? (n - o.shard_i + o.shard_n - 1) / o.shard_n : 0;
    int tty = cli_isatty_stderr();
    double last = 0;
    long seen = 0;
    for (long i = o.shard_i; i < n; i += o.shard_n) {
        struct dataset_item it;
        if ((rc = dataset_get(d, i, &it, &e))) {
            rc = cli_fail(1, CMD, "%s", e.msg);
            goto end;
        }
        seen++;
        const struct map_slot *prev = done.n ? map_find(&done, it.id) : NULL;
        if (prev) {
            acc_count(&acc, prev->status, prev->hit);
            dataset_item_free(&it);
            continue;
        }
        int status = ST_OK, hit = 0;
        float box[4] = {0}, iou = 0;
        struct err ie;
        err_clear(&ie);
        if (it.error.code) {
            status = ST_SKIPPED;
            ie = it.error;
        } else if (it.n_obj == 0) {
            status = ST_EXCLUDED;   /* only reachable with --no-hard on VOC */
        } else {
            if (src.hint_next) {
                struct dataset_item nx;
                struct err ne;
                if (i + o.shard_n < n && !dataset_get(d, i + o.shard_n, &nx, &ne)) {
                    src.hint_next(src.ctx, nx.path);
                    dataset_item_free(&nx);
                } else {
                    src.hint_next(src.ctx, "");
                }
            }
            int brc = src.box_for_image(src.ctx, &it, box, &ie);
            if (brc == ERR_NOTFOUND)
                status = ST_MISSING;
            else if (brc)
                status = ST_SKIPPED;
            else {
                float (*gt)[4] = malloc((size_t)it.n_obj * sizeof *gt);
                if (!gt) {
                    dataset_item_free(&it);
                    rc = cli_fail(1, CMD, "out of memory");
                    goto end;
                }
                for (int k = 0; k < it.n_obj; k++)
                    memcpy(gt[k], it.obj[k].box, sizeof gt[k]);
                hit = corloc_hit(box, (const float (*)[4])gt, it.n_obj, &iou);
                free(gt);
            }
        }
        acc_count(&acc, status, hit);
        if (status == ST_SKIPPED) /* on a terminal, first clear the progress line */
            fprintf(stderr, "%slostd eval: skipped %s: %s\n", tty ? "\r\033[K" : "", it.id,
                    ie.msg);
        if (out) {
            json_t *j = json_object();
            json_object_set_new(j, "image_id", json_string(it.id));
            json_object_set_new(j, "index", json_integer(i));
            json_object_set_new(j, "status", json_string(status_name[status]));
            if (status == ST_OK)
                json_object_set_new(j, "box", box_json(box));
            json_object_set_new(j, "gt", json_integer(it.n_obj));
            if (status == ST_OK || status == ST_MISSING) {
                json_object_set_new(j, "hit", json_boolean(hit));
                json_object_set_new(j, "iou", json_real(round(iou * 1e4) / 1e4));
            }
            if (status == ST_SKIPPED)
                json_object_set_new(j, "error", json_string(ie.msg));
            char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
            json_decref(j);
            if (!s || fprintf(out, "%s\n", s) < 0 || fflush(out)) {
                free(s);
                dataset_item_free(&it);
                rc = cli_fail(1, CMD, "%s: write failed", part);
                goto end;
            }
            free(s);
        }
        dataset_item_free(&it);
        if (tty && clock_now_ms() - last > 200) {
            last = clock_now_ms();
            progress(seen, total, t0, 0);
        }
    }
    if (tty)
        progress(seen, total, t0, 1);
    if (out) {
        int bad = fflush(out) != 0 || ferror(out);
        bad |= fclose(out) != 0;
        out = NULL;
        struct err fe = {0};
        if (bad) {
            rc = cli_fail(1, CMD, "%s: write failed: %s", part, strerror(errno));
            goto end;
        }
        if (file_rename_durable(part, o.out, &fe)) {
            rc = cli_fail(1, CMD, "%s", fe.msg);
            goto end;
        }
    }
    if (summary(&o, set, src.name, &acc, -1, clock_now_ms() - t0))
        rc = 1;
    else
        rc = acc.skipped || acc.missing ? EXIT_INCOMPLETE : 0;
end:
    if (out)
        fclose(out);
    map_free(&done);
    if (src.close)
        src.close(src.ctx);
    dataset_free(d);
    return rc;
}
