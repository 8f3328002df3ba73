/* pool.h - private to server/: the inference workers and their bounded
 * queue. Each worker thread owns one workspace (struct vit_work sized for
 * max_side) and one arena, created once; connection threads never run a
 * forward. A job is shared by the connection that submitted it and the
 * pool, and freed (its destroy callback) when the last of the two lets go,
 * so a connection that gives up on a slow job never frees memory a worker
 * still reads. Thread-safe. Never prints. */
#ifndef LOSTD_POOL_H
#define LOSTD_POOL_H

#include <pthread.h>
#include <stddef.h>

struct arena;
struct err;
struct model;
struct vit_work;

enum pool_state { POOL_NEW = 0, POOL_QUEUED, POOL_RUNNING, POOL_DONE, POOL_CANCELLED };

struct pool_job {
    /* Set by the submitter (pool_job_init). run executes on a worker with
     * that worker's workspace and arena; the arena is reset after run
     * returns, so run copies out what it keeps. destroy frees the job. */
    void (*run)(struct pool_job *j, const struct model *m, struct vit_work *w,
                struct arena *a);
    void (*destroy)(struct pool_job *j);
    /* Owned by the pool; read them only after pool_await returned POOL_DONE. */
    int state;                      /* enum pool_state */
    int refs;
    double t_queued, t_started, t_done; /* clock_now_ms() */
    pthread_cond_t cv;
    struct pool_job *next, *prev;
};

struct pool_conf {
    int workers;
    int max_side;       /* longest side a forward sees; sizes the workspaces */
    size_t arena_bytes; /* per worker */
    int queue_cap;      /* waiting jobs before pool_submit says ERR_BUSY */
    int threads;        /* threads per worker's forward (vit_work_set_threads); 0 = 1 */
};

struct pool;

/* Allocates every workspace and arena (ERR_NOMEM / ERR_TOOBIG / ERR_INPUT
 * from vit_work_init), then starts the workers; each runs one warm-up
 * forward before taking jobs. m must outlive the pool. Free with pool_free. */
int pool_init(const struct model *m, const struct pool_conf *c, struct pool **out,
              struct err *e);

/* Refuses new jobs and cancels queued ones (their waiters see
 * POOL_CANCELLED); running jobs finish. Cannot fail; may be called twice. */
void pool_stop(struct pool *p);

/* pool_stop, then joins the workers and frees everything. Every job must
 * have been released by its submitter. pool_free(NULL) is a no-op. */
void pool_free(struct pool *p);

/* 1 once every worker passed its warm-up; 0 while warming; negative
 * (an ERR_* code, message in e) if a warm-up failed. */
int pool_ready(struct pool *p, struct err *e);

/* Cannot fail. The caller holds the first reference. */
void pool_job_init(struct pool_job *j,
                   void (*run)(struct pool_job *, const struct model *, struct vit_work *,
                               struct arena *),
                   void (*destroy)(struct pool_job *));

/* Queues j. Returns 0 (the pool takes its own reference) or ERR_BUSY when
 * the queue is full or the pool is stopping. */
int pool_submit(struct pool *p, struct pool_job *j, struct err *e);

/* Waits up to timeout_ms for j to finish and returns its state: POOL_DONE,
 * POOL_CANCELLED (the pool is stopping), or POOL_QUEUED / POOL_RUNNING when
 * the time ran out; changes nothing, so a waiter that also watches
 * something else (its client) can wait in slices. */
int pool_await(struct pool *p, struct pool_job *j, double timeout_ms);

/* The waiter gives up on j: a job no worker took yet leaves the queue
 * (POOL_CANCELLED); a running one finishes (its waiter may still release it
 * at once). Returns the state. */
int pool_give_up(struct pool *p, struct pool_job *j);

/* Drops the caller's reference; the last one calls j->destroy. p may be NULL
 * for a job that was never submitted. */
void pool_release(struct pool *p, struct pool_job *j);

/* Jobs waiting, jobs running now, workers. Cannot fail. */
void pool_stats(struct pool *p, long *queued, long *running, long *workers);

/* Bytes of one worker's forward workspace (all workers have the same). */
unsigned long pool_work_bytes(const struct pool *p);

#endif
