/* team_impl.h - private to core/: a fixed team of threads that runs one
 * parallel loop at a time for a workspace (struct vit_work owns one). The
 * caller takes part in every loop, so a team of 1 has no threads at all.
 * Idle threads sleep on a condition variable after a short spin: there is
 * never more than one spinning team per workspace, and OpenBLAS runs
 * single-threaded while these kernels are in use. */
#ifndef LOSTD_TEAM_IMPL_H
#define LOSTD_TEAM_IMPL_H

struct team;

/* n_threads >= 1 (the caller counts as one). Returns NULL on failure. */
struct team *team_init(int n_threads);
void team_free(struct team *p);
int team_size(const struct team *p);

/* Runs fn(ctx, task, thread) for every task in [0, n_tasks); thread is in
 * [0, team_size) and identifies per-thread scratch. Thread i owns the i-th
 * of team_size contiguous shares of the tasks and runs it in order, so a
 * loop split the same way as the one before finds its rows in the same
 * core's cache; a thread done with its share takes tasks from the far end
 * of the others'. Which thread runs a task must not change its result.
 * Returns when every task is done. Not re-entrant. */
void team_run(struct team *p, int n_tasks, void (*fn)(void *ctx, int task, int thread),
              void *ctx);

#endif
