/* budget.c - a shared byte budget (see budget.h): a counter under a mutex,
 * with a condition variable for the holders who wait. */
#include "budget.h"
#include "clock.h"
#include "cli.h"
#include "err.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct budget {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long long cap, used, peak;
};

struct budget *budget_init(long long cap)
{
    if (cap <= 0)
        return NULL;
    struct budget *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->cap = cap;
    return b;
}

void budget_free(struct budget *b)
{
    if (!b)
        return;
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

static void take(struct budget *b, long long n)
{
    b->used += n;
    if (b->used > b->peak)
        b->peak = b->used;
}

int budget_try(struct budget *b, long long n)
{
    if (n <= 0)
        return 0;
    pthread_mutex_lock(&b->mu);
    int ok = n <= b->cap - b->used;
    if (ok)
        take(b, n);
    pthread_mutex_unlock(&b->mu);
    return ok ? 0 : -1;
}

int budget_acquire(struct budget *b, long long n, double deadline_ms)
{
    if (n <= 0)
        return 0;
    if (n > b->cap)
        return ERR_TOOBIG;
    /* The wait is on CLOCK_REALTIME (the condition variable's clock); the
     * deadline is turned into it once. */
    struct timespec dl;
    clock_deadline(CLOCK_REALTIME, deadline_ms - clock_now_ms(), &dl);
    pthread_mutex_lock(&b->mu);
    int rc = 0;
    while (n > b->cap - b->used) {
        if (pthread_cond_timedwait(&b->cv, &b->mu, &dl) == ETIMEDOUT &&
            n > b->cap - b->used) {
            rc = ERR_BUSY;
            break;
        }
    }
    if (!rc)
        take(b, n);
    pthread_mutex_unlock(&b->mu);
    return rc;
}

void budget_release(struct budget *b, long long n)
{
    if (n <= 0)
        return;
    pthread_mutex_lock(&b->mu);
    b->used -= n;
    if (b->used < 0)
        b->used = 0;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

long long budget_used(struct budget *b)
{
    pthread_mutex_lock(&b->mu);
    long long v = b->used;
    pthread_mutex_unlock(&b->mu);
    return v;
}

long long budget_peak(struct budget *b)
{
    pthread_mutex_lock(&b->mu);
    long long v = b->peak;
    pthread_mutex_unlock(&b->mu);
    return v;
}

long long budget_cap(const struct budget *b) { return b->cap; }
