/* test_team.c - the thread team: every task runs exactly once on a valid
 * thread, whatever the team and loop sizes; a thread's own share runs in
 * order on that thread when nobody is slow; a stalled thread's tasks are
 * taken over by the others, so the loop still ends. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "../core/team_impl.h"

#define MAX_TASKS 5000

struct log {
    atomic_int runs[MAX_TASKS];
    int thread[MAX_TASKS];
    int bad_thread;
    int n_threads;
    int slow_thread; /* this thread sleeps in each of its tasks; -1 none */
};

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static void note(void *ctx, int t, int th)
{
    struct log *l = ctx;
    if (th < 0 || th >= l->n_threads)
        l->bad_thread = 1;
    atomic_fetch_add(&l->runs[t], 1);
    l->thread[t] = th;
    if (th == l->slow_thread)
        sleep_us(2000);
}

/* Runs n tasks on p; 1 when each ran exactly once on a valid thread. */
static int run_once(struct team *p, int n_threads, int n, struct log *l)
{
    memset(l, 0, sizeof *l);
    l->n_threads = n_threads;
    l->slow_thread = -1;
    team_run(p, n, note, l);
    if (l->bad_thread)
        return 0;
    for (int t = 0; t < n; t++)
        if (atomic_load(&l->runs[t]) != 1)
            return 0;
    return 1;
}

int main(void)
{
    struct log *l = calloc(1, sizeof *l);
    CHECK_CASE("every task runs exactly once, on a thread of the team", {
        int sizes[] = {1, 2, 3, 4, 8};
        int loops[] = {0, 1, 2, 3, 5, 7, 64, 131, MAX_TASKS};
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            struct team *p = team_init(sizes[i]);
            CHECK(p && team_size(p) == sizes[i], "team of %d", sizes[i]);
            for (int rep = 0; p && rep < 20; rep++)
                for (size_t k = 0; k < sizeof loops / sizeof *loops; k++)
                    CHECK(run_once(p, sizes[i], loops[k], l), "team %d, %d tasks, round %d",
                          sizes[i], loops[k], rep);
            team_free(p);
        }
    });
    CHECK_CASE("no team: the caller runs every task in order", {
        memset(l, 0, sizeof *l);
        l->n_threads = 1;
        l->slow_thread = -1;
        team_run(NULL, 10, note, l);
        for (int t = 0; t < 10; t++)
            CHECK(atomic_load(&l->runs[t]) == 1 && l->thread[t] == 0, "task %d", t);
    });
    CHECK_CASE("a stalled thread's share is taken over by the others", {
        /* thread 1 sleeps 2 ms in each task it runs: of its 100 tasks the
         * caller must take most, from the far end of its share */
        struct team *p = team_init(2);
        CHECK(p != NULL, "team");
        memset(l, 0, sizeof *l);
        l->n_threads = 2;
        l->slow_thread = 1;
        team_run(p, 200, note, l);
        int by_caller = 0;
        for (int t = 100; t < 200; t++)
            by_caller += l->thread[t] == 0;
        for (int t = 0; t < 200; t++)
            CHECK(atomic_load(&l->runs[t]) == 1, "task %d ran %d times", t,
                  atomic_load(&l->runs[t]));
        CHECK(by_caller >= 10, "the caller took %d of the slow thread's 100 tasks", by_caller);
        CHECK(l->thread[199] == 0, "the last task was not taken from the back");
        team_free(p);
    });
    free(l);
    return check_status();
}
