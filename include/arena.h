/* arena.h - per-request scratch memory: bump allocation, one reset.
 * An arena reserves its capacity once (address space only; pages are
 * touched on first use and kept for later requests). arena_alloc returns
 * 64-byte aligned memory or NULL when the capacity is exhausted; callers
 * turn NULL into ERR_TOOBIG. One arena per thread: not thread-safe. */
#ifndef LOSTD_ARENA_H
#define LOSTD_ARENA_H

#include <stddef.h>

struct arena;

/* Reserves cap bytes. Returns NULL if the reservation fails.
 * Free with arena_free. */
struct arena *arena_init(size_t cap);

/* Frees the arena and everything allocated from it. arena_free(NULL) is a no-op. */
void arena_free(struct arena *a);

/* n bytes, 64-byte aligned, uninitialised; NULL when out of space or on overflow. */
void *arena_alloc(struct arena *a, size_t n);

/* Like arena_alloc but zero-filled. */
void *arena_calloc(struct arena *a, size_t count, size_t size);

/* Forgets every allocation; the memory is reused by the next allocations. */
void arena_reset(struct arena *a);

/* Gives the pages above max(keep, bytes in use) that were touched since the
 * last trim back to the OS (madvise MADV_DONTNEED; the range stays reserved
 * and reads as zeros when touched again). Call after arena_reset with keep =
 * what a typical request uses, so one huge request does not pin its memory
 * for the life of the process. Returns the bytes released. Cannot fail. */
size_t arena_trim(struct arena *a, size_t keep);

/* Bytes in use now, the high-water mark since arena_init, and the capacity. */
size_t arena_used(const struct arena *a);
size_t arena_peak(const struct arena *a);
size_t arena_cap(const struct arena *a);

/* Marks and rewinds: everything allocated after arena_mark is released by
 * arena_rewind(a, mark), for scratch inside one stage. */
size_t arena_mark(const struct arena *a);
void arena_rewind(struct arena *a, size_t mark);

#endif
