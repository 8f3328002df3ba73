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

/* Runs fn(ctx, task, thread) for every task in [0, n_tasks), tasks handed
 * out dynamically; thread is in [0, team_size) and identifies per-thread
 * scratch. Returns when every task is done. Not re-entrant. */
void team_run(struct team *p, int n_tasks, void (*fn)(void *ctx, int task, int thread),
              void *ctx);

#endif
