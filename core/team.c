/* team.c - the workspace's thread team: a generation counter wakes the
 * team; each thread owns a contiguous share of the tasks and claims them
 * from the front, a thread with none left takes the others' from the back;
 * the last finisher wakes the caller. See team_impl.h. */
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

/* A thread's share of the current loop's tasks, [lo, hi) packed in one
 * word so that the owner (lo++) and a thief (hi--) agree with one CAS; one
 * cache line each. */
struct share {
    _Alignas(64) atomic_ullong span;
};

static inline unsigned long long span_pack(unsigned lo, unsigned hi)
{
    return (unsigned long long)hi << 32 | lo;
}

struct team {
    int n;
    struct share *shares;    /* [n] */
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    atomic_ulong gen;        /* bumped for every loop */
    atomic_int running;      /* threads still inside the current loop */
    void (*fn)(void *, int, int);
    void *ctx;
    int stop;
};

struct arg {
    struct team *p;
    int id;
};

/* Claims the front task of share i (own) or its back task (a thief);
 * -1 when the share is empty. */
static int claim(struct team *p, int i, int own)
{
    atomic_ullong *sp = &p->shares[i].span;
    unsigned long long v = atomic_load(sp);
    for (;;) {
        unsigned lo = (unsigned)v, hi = (unsigned)(v >> 32);
        if (lo >= hi)
            return -1;
        unsigned long long nv = own ? span_pack(lo + 1, hi) : span_pack(lo, hi - 1);
        if (atomic_compare_exchange_weak(sp, &v, nv))
            return (int)(own ? lo : hi - 1);
    }
}

/* Thread id runs its own share in order (so that a thread meets the same
 * rows in successive loops and finds them in its cache), then helps the
 * others from the far end of theirs. */
static void work(struct team *p, int id)
{
    int t;
    while ((t = claim(p, id, 1)) >= 0)
        p->fn(p->ctx, t, id);
    for (int k = 1; k < p->n; k++) {
        int v = (id + k) % p->n;
        while ((t = claim(p, v, 0)) >= 0)
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
    p->shares = aligned_alloc(64, sizeof *p->shares * (size_t)n_threads);
    if (!p->th || !p->shares) {
        free(p->th);
        free(p->shares);
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
    free(p->shares);
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
    for (int i = 0; i < p->n; i++)
        atomic_store(&p->shares[i].span,
                     span_pack((unsigned)((long)i * n_tasks / p->n),
                               (unsigned)((long)(i + 1) * n_tasks / p->n)));
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
