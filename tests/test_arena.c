/* test_arena.c - the scratch arena: alignment, exhaustion, marks, and that
 * arena_trim gives the pages of a large request back to the OS. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "check.h"

/* Resident bytes of this process (/proc/self/statm, second field). */
static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &res) != 2)
        res = -1;
    fclose(f);
    return res * sysconf(_SC_PAGESIZE);
}

int main(void)
{
    CHECK_CASE("alloc is 64-byte aligned, fails cleanly when exhausted", {
        struct arena *a = arena_init(1 << 20);
        CHECK(a != NULL, "init");
        void *p = arena_alloc(a, 3), *q = arena_alloc(a, 5);
        CHECK(((uintptr_t)p & 63) == 0 && ((uintptr_t)q & 63) == 0, "alignment");
        CHECK(arena_alloc(a, 2 << 20) == NULL, "over capacity accepted");
        CHECK(arena_alloc(a, SIZE_MAX) == NULL, "SIZE_MAX accepted");
        size_t m = arena_mark(a);
        CHECK(arena_alloc(a, 1000) != NULL, "alloc after a refusal");
        arena_rewind(a, m);
        CHECK(arena_used(a) == m, "rewind");
        arena_free(a);
        arena_free(NULL);
    });

    CHECK_CASE("arena_trim returns a large request's pages, keeps the small ones", {
        size_t big = 256u << 20, keep = 8u << 20;
        struct arena *a = arena_init(big + (16u << 20));
        CHECK(a != NULL, "init");
        long r0 = rss_bytes();
        unsigned char *p = arena_alloc(a, big);
        memset(p, 1, big);
        long r1 = rss_bytes();
        CHECK(r1 - r0 > (long)(big * 9 / 10), "touching %zu MB grew RSS by %ld MB only",
              big >> 20, (r1 - r0) >> 20);
        arena_reset(a);
        size_t freed = arena_trim(a, keep);
        long r2 = rss_bytes();
        CHECK(freed >= big - keep - 4096, "released %zu bytes", freed);
        CHECK(r1 - r2 > (long)((big - keep) * 9 / 10), "RSS went from %ld to %ld MB",
              r1 >> 20, r2 >> 20);
        /* The kept pages are still there and the range is usable again. */
        unsigned char *q = arena_alloc(a, big);
        CHECK(q == p && q[0] == 1 && q[keep - 1] == 1 && q[big - 1] == 0,
              "after trim: kept bytes %d %d, released reads %d", q[0], q[keep - 1],
              q[big - 1]);
        arena_reset(a);
        CHECK(arena_trim(a, keep) > 0, "a second large use is trimmed again");
        CHECK(arena_trim(a, keep) == 0, "nothing touched, nothing to trim");
        arena_free(a);
    });
    return check_status();
}
