/* eval_results.c - the result lines of `lostd eval` (one JSON object per
 * image in --out files): counting, parsing, reading back for --resume and
 * --merge, writing through include/file.h. */
#include "eval_impl.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "file.h"

/* ---- result lines ------------------------------------------------------------ */

const char *const eval_status_name[] = {"ok", "missing", "skipped", "excluded"};

void eval_acc_count(struct corloc_acc *acc, int status, int hit)
{
    switch (status) {
    case ST_OK: corloc_add(acc, hit); break;
    case ST_MISSING: corloc_add(acc, 0); acc->missing++; break;
    case ST_SKIPPED: acc->skipped++; break;
    default: acc->excluded++; break;
    }
}

json_t *eval_box_json(const float b[4])
{
    json_t *a = json_array();
    for (int k = 0; k < 4; k++)
        json_array_append_new(a, b[k] == rintf(b[k]) && fabsf(b[k]) < 1e9f
                                     ? json_integer((json_int_t)b[k])
                                     : json_real(b[k]));
    return a;
}

/* Parses a line written by this command. Returns 0, or -1 if it is not one. */
int eval_parse_line(const char *s, char id[DATASET_ID_MAX], int *status, int *hit,
                    long *index)
{
    json_error_t je;
    json_t *o = json_loads(s, 0, &je);
    json_t *jid = json_object_get(o, "image_id"), *st = json_object_get(o, "status");
    int rc = -1;
    if (o && json_is_string(jid) && strlen(json_string_value(jid)) < DATASET_ID_MAX &&
        json_is_string(st)) {
        for (int k = 0; k < 4; k++)
            if (!strcmp(json_string_value(st), eval_status_name[k])) {
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
int eval_read_results(const char *path, int missing_ok, struct map *m, struct corloc_acc *acc,
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
    while ((n = eval_read_line(f, &buf, &cap)) != -1) {
        lineno++;
        char id[DATASET_ID_MAX];
        int status = ST_SKIPPED, hit = 0;
        long index = -1;
        if (n == -2 || eval_parse_line(buf, id, &status, &hit, &index)) {
            bad++;      /* e.g. the torn last line of an interrupted run */
            continue;
        }
        int fresh;
        struct map_slot *sl = eval_map_put(m, id, &fresh);
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
        eval_acc_count(acc, status, hit);
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
int eval_write_results(const char *path, const struct map *m, struct err *e)
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

