/* eval_impl.h - private to server/eval_*.c and cmd_eval.c: the pieces of
 * `lostd eval` shared by its files (box sources, the id map, result
 * lines). Nobody else includes it. */
#ifndef LOSTD_EVAL_IMPL_H
#define LOSTD_EVAL_IMPL_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "corloc.h"
#include "dataset.h"
#include "err.h"
#include "pipeline.h"

#define CMD "eval"
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


/* eval_map.c */
struct map_slot *eval_map_find(const struct map *m, const char *key);
/* The slot of key, new (*fresh = 1, key copied) or existing; NULL when out
 * of memory. */
struct map_slot *eval_map_put(struct map *m, const char *key, int *fresh);
void eval_map_free(struct map *m);

/* eval_source.c */
/* One line of f into *buf (grown up to LINE_MAX_BYTES); its length, or -1 at
 * the end, -2 for a line over the cap. */
long eval_read_line(FILE *f, char **buf, size_t *cap);
int eval_source_predictions(const char *path, struct eval_source *src, struct err *e);
int eval_source_model(const char *path, const struct pipeline_opts *po,
                      const struct model_opts *mo, int threads, struct eval_source *src,
                      struct err *e);

/* eval_results.c */
/* Status of one image's line. */
enum { ST_OK, ST_MISSING, ST_SKIPPED, ST_EXCLUDED };
extern const char *const eval_status_name[];
void eval_acc_count(struct corloc_acc *acc, int status, int hit);
json_t *eval_box_json(const float b[4]);
/* One result line: its image id, status, hit and dataset index. 0 or -1. */
int eval_parse_line(const char *s, char id[DATASET_ID_MAX], int *status, int *hit,
                    long *index);
int eval_read_results(const char *path, int missing_ok, struct map *m, struct corloc_acc *acc,
                      long *dups, struct err *e);
int eval_write_results(const char *path, const struct map *m, struct err *e);

#endif
