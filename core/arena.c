/* arena.c - bump allocator over one anonymous mapping. The mapping is
 * reserved with MAP_NORESERVE so a large capacity costs address space only;
 * pages touched by one request stay mapped for the next, which avoids the
 * first-touch cost on every request. */
#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ALIGN 64

struct arena {
    unsigned char *base;
    size_t cap, used, peak;
    size_t touched;     /* highest end used since the last arena_trim */
};

struct arena *arena_init(size_t cap)
{
    struct arena *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    cap = (cap + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (cap == 0)
        cap = ALIGN;
    void *p = mmap(NULL, cap, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        free(a);
        return NULL;
    }
    a->base = p;
    a->cap = cap;
    return a;
}

void arena_free(struct arena *a)
{
    if (!a)
        return;
    munmap(a->base, a->cap);
    free(a);
}

void *arena_alloc(struct arena *a, size_t n)
{
    if (!a)
        return NULL;
    size_t start = (a->used + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (start > a->cap || n > a->cap - start)
        return NULL;
    a->used = start + n;
    if (a->used > a->peak)
        a->peak = a->used;
    if (a->used > a->touched)
        a->touched = a->used;
    return a->base + start;
}

void *arena_calloc(struct arena *a, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return NULL;
    void *p = arena_alloc(a, count * size);
    if (p)
        memset(p, 0, count * size);
    return p;
}

void arena_reset(struct arena *a)
{
    if (a)
        a->used = 0;
}

size_t arena_trim(struct arena *a, size_t keep)
{
    if (!a)
        return 0;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t from = (keep > a->used ? keep : a->used);
    from = (from + page - 1) / page * page;
    size_t to = (a->touched + page - 1) / page * page;
    if (to > a->cap)
        to = a->cap / page * page;
    size_t n = 0;
    /* The pages stay mapped (no new reservation); the kernel drops them and
     * hands out zero pages on the next touch. */
    if (to > from && madvise(a->base + from, to - from, MADV_DONTNEED) == 0)
        n = to - from;
    if (a->touched > from)
        a->touched = from;
    return n;
}

size_t arena_used(const struct arena *a) { return a ? a->used : 0; }
size_t arena_peak(const struct arena *a) { return a ? a->peak : 0; }
size_t arena_cap(const struct arena *a) { return a ? a->cap : 0; }
size_t arena_mark(const struct arena *a) { return a ? a->used : 0; }

void arena_rewind(struct arena *a, size_t mark)
{
    if (a && mark <= a->used)
        a->used = mark;
}
