/* eval_map.c - `lostd eval`'s string -> result map: open addressing, keyed
 * by image id (predictions, --out lines, merge inputs). */
#include "eval_impl.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

struct map_slot *eval_map_find(const struct map *m, const char *key)
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
struct map_slot *eval_map_put(struct map *m, const char *key, int *fresh)
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

void eval_map_free(struct map *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        free(m->slot[i].key);
        free(m->slot[i].line);
    }
    free(m->slot);
    memset(m, 0, sizeof *m);
}

