/* team.c - the workspace's thread team: a generation counter wakes the
 * team, tasks are claimed with an atomic counter, the last finisher wakes
 * the caller. See team_impl.h. */
#include "team_impl.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define SPIN 20000 /* polls before sleeping: short enough not to steal a core */

#if defined(__x86_64__) || defined(__i386__)
#define relax() __builtin_ia32_pause()
#else
#define relax() ((void)0)
#endif

struct team {
    int n;
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    atomic_ulong gen;        /* bumped for every loop */
    atomic_int next;         /* next task to claim */
    atomic_int running;      /* threads still inside the current loop */
    int n_tasks;
    void (*fn)(void *, int, int);
    void *ctx;
    int stop;
};

struct arg {
    struct team *p;
    int id;
};

static void work(struct team *p, int id)
{
    for (;;) {
        int t = atomic_fetch_add(&p->next, 1);
        if (t >= p->n_tasks)
            break;
        p->fn(p->ctx, t, id);
    }
}

static void *loop(void *v)
{
    struct arg *a = v;
    struct team *p = a->p;
    int id = a->id;
    free(a);
    unsigned long seen = 0;
    for (;;) {
        unsigned long g;
        int spins = 0;
        while ((g = atomic_load(&p->gen)) == seen && ++spins < SPIN)
            relax();
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load(&p->gen)) == seen && !p->stop)
                pthread_cond_wait(&p->wake, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (p->stop)
            return NULL;
        seen = g;
        work(p, id);
        if (atomic_fetch_sub(&p->running, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

struct team *team_init(int n_threads)
{
    if (n_threads < 1)
        n_threads = 1;
    struct team *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->th = calloc(n_threads, sizeof *p->th);
    if (!p->th) {
        free(p);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        struct arg *a = malloc(sizeof *a);
        if (!a || (a->p = p, a->id = i, pthread_create(&p->th[i], NULL, loop, a))) {
            free(a);
            p->n = i; /* the threads made so far are joined by team_free */
            team_free(p);
            return NULL;
        }
    }
    return p;
}

void team_free(struct team *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->th);
    free(p);
}

int team_size(const struct team *p) { return p ? p->n : 1; }

void team_run(struct team *p, int n_tasks, void (*fn)(void *ctx, int task, int thread),
              void *ctx)
{
    if (!p || p->n == 1 || n_tasks <= 1) {
        for (int t = 0; t < n_tasks; t++)
            fn(ctx, t, 0);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store(&p->next, 0);
    atomic_store(&p->running, p->n - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    work(p, 0);
    /* wait for the others: spin briefly, then sleep */
    int spins = 0;
    while (atomic_load(&p->running) > 0 && ++spins < SPIN)
        relax();
    if (atomic_load(&p->running) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->running) > 0)
            pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
