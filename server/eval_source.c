/* eval_source.c - the box sources of `lostd eval`: saved predictions (a
 * LOST-style CSV or this command's JSONL) and the backbone (--model: the
 * pipeline of discover and serve, with the next image decoded while the
 * forward runs). */
#include "eval_impl.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include <pthread.h>
#include <unistd.h>

#include "arena.h"
#include "clock.h"
#include "image.h"
#include "model.h"
#include "vit.h"

/* ---- predictions source ---------------------------------------------------- */

/* Reads one line (any length up to LINE_MAX_BYTES) into *buf. Returns its
 * length, -1 at EOF, -2 if too long. */
long eval_read_line(FILE *f, char **buf, size_t *cap)
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
    while (!rc && (n = eval_read_line(f, &buf, &cap)) != -1) {
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
        struct map_slot *sl = eval_map_put(m, id, &fresh);
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
    const struct map_slot *s = eval_map_find(m, it->id);
    if (!s && it->file[0])
        s = eval_map_find(m, it->file);
    if (!s && it->file[0]) {
        char stem[DATASET_ID_MAX];
        snprintf(stem, sizeof stem, "%s", it->file);
        char *dot = strrchr(stem, '.');
        if (dot)
            *dot = 0;
        s = eval_map_find(m, stem);
    }
    if (!s)
        return err_set(e, ERR_NOTFOUND, "no prediction for %s", it->id);
    memcpy(box, s->box, 4 * sizeof(float));
    return 0;
}

static void predictions_close(void *ctx)
{
    eval_map_free(ctx);
    free(ctx);
}

int eval_source_predictions(const char *path, struct eval_source *src, struct err *e)
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
    s->pf_rc = image_load_file(s->pf_path, s->po.max_pixels, s->po.exif, s->a_next,
                               &s->pf_img, &s->pf_err);
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
        rc = image_load_file(it->path, s->po.max_pixels, s->po.exif, s->a, &img,
                             e);
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

int eval_source_model(const char *path, const struct pipeline_opts *po,
                      const struct model_opts *mo, int threads, struct eval_source *src,
                      struct err *e)
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

