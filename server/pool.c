/* pool.c - a fixed set of worker threads around one mutex-protected,
 * doubly-linked job queue. Waiting connections sleep on their job's
 * condition variable (sharing the pool mutex), with a deadline. */
#include "pool.h"
#include "clock.h"
#include "arena.h"
#include "cli.h"
#include "err.h"
#include "pipeline.h"
#include "vit.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct worker {
    struct pool *p;
    pthread_t tid;
    int started;
    struct vit_work *work;
    struct arena *arena;
    size_t keep;        /* arena bytes kept touched between requests: the warm-up's */
};

struct pool {
    const struct model *m;
    struct pool_conf conf;
    pthread_mutex_t mu;
    pthread_cond_t work_cv;       /* a job was queued, or stop */
    struct pool_job *head, *tail; /* waiting jobs, oldest first */
    long n_queued, n_running;
    int stop;
    int n_warm;
    int warm_rc;                  /* first warm-up failure */
    struct err warm_err;
    struct worker *w;
};

/* Called with p->mu held. Drops one reference; destroys at zero. The
 * destroy callback runs under the lock: it only frees memory. */
static void unref_locked(struct pool_job *j)
{
    if (--j->refs == 0) {
        pthread_cond_destroy(&j->cv);
        j->destroy(j);
    }
}

/* The side of the warm-up image: the configured maximum or 518 (a typical
 * photo's patch count), whichever is smaller. What it touches stays resident
 * between requests; a larger request's extra pages are given back after it. */
static int warm_side(const struct pool *p)
{
    return p->conf.max_side < 518 ? p->conf.max_side : 518;
}

static void warm_up(struct worker *w)
{
    struct pool *p = w->p;
    /* A gradient of the configured size or 518 (a typical photo's patch
     * count), whichever is smaller: runs every layer once and touches the
     * arena pages a typical request uses (decoded pixels, tensor, Gram
     * matrix), so the first requests do not pay for page faults (tens of
     * microseconds each on a VM). */
    int side = warm_side(p);
    struct err e;
    err_clear(&e);
    struct image img = {side, side, arena_alloc(w->arena, (size_t)side * side * 3)};
    int rc = img.px ? 0 : err_set(&e, ERR_TOOBIG, "arena too small for the warm-up image");
    if (!rc) {
        for (int i = 0; i < side * side * 3; i++)
            img.px[i] = (unsigned char)((i / 3 % side + i / 3 / side + i % 3 * 60) & 255);
        struct pipeline_opts o;
        pipeline_opts_default(&o);
        struct pipeline_result r;
        rc = pipeline_run_image(p->m, w->work, w->arena, &img, &o, &r, &e);
    }
    w->keep = arena_peak(w->arena);
    arena_reset(w->arena);
    pthread_mutex_lock(&p->mu);
    if (rc && !p->warm_rc) {
        p->warm_rc = rc;
        p->warm_err = e;
    }
    if (!rc)
        p->n_warm++;
    pthread_mutex_unlock(&p->mu);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct pool *p = w->p;
    warm_up(w);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stop)
            pthread_cond_wait(&p->work_cv, &p->mu);
        if (p->stop)
            break;
        struct pool_job *j = p->head;
        p->head = j->next;
        if (p->head)
            p->head->prev = NULL;
        else
            p->tail = NULL;
        j->next = j->prev = NULL;
        p->n_queued--;
        p->n_running++;
        j->state = POOL_RUNNING;
        j->t_started = clock_now_ms();
        pthread_mutex_unlock(&p->mu);

        j->run(j, p->m, w->work, w->arena);
        arena_reset(w->arena);
        /* Memory returns after a large request: the arena above what the
         * warm-up touched, and whatever libjpeg / libspng / the upload freed
         * on the heap. */
        arena_trim(w->arena, w->keep);
        vit_work_trim(w->work, pipeline_max_patches(p->m, warm_side(p)));
#ifdef __GLIBC__
        malloc_trim(0);
#endif

        pthread_mutex_lock(&p->mu);
        j->t_done = clock_now_ms();
        j->state = POOL_DONE;
        p->n_running--;
        pthread_cond_broadcast(&j->cv);
        unref_locked(j);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int pool_init(const struct model *m, const struct pool_conf *c, struct pool **out,
              struct err *e)
{
    *out = NULL;
    if (c->workers < 1 || c->queue_cap < 1 || c->max_side < 1)
        return err_set(e, ERR_INPUT, "pool needs workers, queue and max_side >= 1");
    struct pool *p = calloc(1, sizeof *p);
    if (!p)
        return err_set(e, ERR_NOMEM, "out of memory");
    p->m = m;
    p->conf = *c;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    p->w = calloc((size_t)c->workers, sizeof *p->w);
    if (!p->w) {
        pool_free(p);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    int max_patches = pipeline_max_patches(m, c->max_side);
    for (int i = 0; i < c->workers; i++) {
        struct worker *w = &p->w[i];
        w->p = p;
        int rc = vit_work_init(m, max_patches, &w->work, e);
        if (!rc)
            rc = vit_work_set_threads(w->work, c->threads > 0 ? c->threads : 1, e);
        if (rc) {
            pool_free(p);
            return err_prefix(e, "worker %d workspace", i);
        }
        w->arena = arena_init(c->arena_bytes);
        if (!w->arena) {
            pool_free(p);
            return err_set(e, ERR_NOMEM, "cannot reserve a %zu-byte arena for worker %d",
                           c->arena_bytes, i);
        }
    }
    for (int i = 0; i < c->workers; i++) {
        if (pthread_create(&p->w[i].tid, NULL, worker_main, &p->w[i])) {
            pool_free(p);
            return err_set(e, ERR_NOMEM, "cannot start worker thread %d", i);
        }
        p->w[i].started = 1;
    }
    *out = p;
    return 0;
}

void pool_stop(struct pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    while (p->head) {
        struct pool_job *j = p->head;
        p->head = j->next;
        j->next = j->prev = NULL;
        j->state = POOL_CANCELLED;
        pthread_cond_broadcast(&j->cv);
        unref_locked(j);
    }
    p->tail = NULL;
    p->n_queued = 0;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
}

void pool_free(struct pool *p)
{
    if (!p)
        return;
    pool_stop(p);
    for (int i = 0; p->w && i < p->conf.workers; i++) {
        if (p->w[i].started)
            pthread_join(p->w[i].tid, NULL);
        vit_work_free(p->w[i].work);
        arena_free(p->w[i].arena);
    }
    free(p->w);
    pthread_cond_destroy(&p->work_cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int pool_ready(struct pool *p, struct err *e)
{
    pthread_mutex_lock(&p->mu);
    int rc = p->warm_rc;
    if (rc && e)
        *e = p->warm_err;
    int ready = p->n_warm == p->conf.workers;
    pthread_mutex_unlock(&p->mu);
    return rc ? rc : ready;
}

void pool_job_init(struct pool_job *j,
                   void (*run)(struct pool_job *, const struct model *, struct vit_work *,
                               struct arena *),
                   void (*destroy)(struct pool_job *))
{
    j->run = run;
    j->destroy = destroy;
    j->state = POOL_NEW;
    j->refs = 1;
    j->t_queued = j->t_started = j->t_done = 0;
    j->next = j->prev = NULL;
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cv, &a);
    pthread_condattr_destroy(&a);
}

int pool_submit(struct pool *p, struct pool_job *j, struct err *e)
{
    pthread_mutex_lock(&p->mu);
    if (p->stop) {
        pthread_mutex_unlock(&p->mu);
        return err_set(e, ERR_BUSY, "shutting down");
    }
    if (p->n_queued >= p->conf.queue_cap) {
        pthread_mutex_unlock(&p->mu);
        return err_set(e, ERR_BUSY, "all %d workers busy and %d requests queued",
                       p->conf.workers, p->conf.queue_cap);
    }
    j->refs++;
    j->state = POOL_QUEUED;
    j->t_queued = clock_now_ms();
    j->prev = p->tail;
    j->next = NULL;
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    p->n_queued++;
    pthread_cond_signal(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

int pool_await(struct pool *p, struct pool_job *j, double timeout_ms)
{
    struct timespec dl;
    clock_deadline(CLOCK_MONOTONIC, timeout_ms, &dl);
    pthread_mutex_lock(&p->mu);
    while (j->state == POOL_QUEUED || j->state == POOL_RUNNING) {
        if (pthread_cond_timedwait(&j->cv, &p->mu, &dl) == ETIMEDOUT)
            break;
    }
    int st = j->state;
    pthread_mutex_unlock(&p->mu);
    return st;
}

int pool_give_up(struct pool *p, struct pool_job *j)
{
    pthread_mutex_lock(&p->mu);
    int st = j->state;
    if (st == POOL_QUEUED) {
        /* No worker took it yet: unlink, drop the pool's reference. */
        if (j->prev)
            j->prev->next = j->next;
        else
            p->head = j->next;
        if (j->next)
            j->next->prev = j->prev;
        else
            p->tail = j->prev;
        j->next = j->prev = NULL;
        p->n_queued--;
        j->state = st = POOL_CANCELLED;
        unref_locked(j);
    }
    pthread_mutex_unlock(&p->mu);
    return st;
}

void pool_release(struct pool *p, struct pool_job *j)
{
    if (!j)
        return;
    if (!p) {
        unref_locked(j); /* never submitted: nobody else can see it */
        return;
    }
    pthread_mutex_lock(&p->mu);
    unref_locked(j);
    pthread_mutex_unlock(&p->mu);
}

void pool_stats(struct pool *p, long *queued, long *running, long *workers)
{
    pthread_mutex_lock(&p->mu);
    *queued = p->n_queued;
    *running = p->n_running;
    *workers = p->conf.workers;
    pthread_mutex_unlock(&p->mu);
}

unsigned long pool_work_bytes(const struct pool *p)
{
    return p->conf.workers > 0 && p->w[0].work ? vit_work_bytes(p->w[0].work) : 0;
}
