/* pool.c — the CPU backend's thread pool (pool.h).
 *
 * One job at a time: pool_run publishes fn/arg, bumps the generation counter and runs
 * its own share as worker 0; each worker runs its share and the last one to finish
 * signals the caller. Stopping is a generation bump with fn == NULL. */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "err.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define pool_relax() _mm_pause()
#else
#define pool_relax() ((void)0)
#endif

struct pool {
    int n;                   /* threads including the caller */
    pthread_t *threads;      /* (n - 1) */
    struct pool_worker *workers; /* (n - 1) */
    int n_started;
    pthread_mutex_t mu;
    pthread_cond_t cv_start, cv_done;
    atomic_uint gen;         /* bumped once per dispatch */
    atomic_int pending;      /* workers still running the current job */
    int stop;
    pool_fn_t fn;
    void *arg;
};

typedef struct pool_worker {
    pool_t *pool;
    int ith;
} pool_worker_t;

/* Pause iterations (~tens of microseconds) before sleeping: long enough to bridge the
 * gap between two ops of one forward pass, short enough not to burn a core that
 * another process (or OpenBLAS in the caller's thread) needs. */
#define POOL_SPIN 2000

static void *pool_main(void *p) {
    pool_worker_t *w = p;
    pool_t *pool = w->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&pool->gen, memory_order_acquire)) == seen && spins < POOL_SPIN) {
            pool_relax();
            spins++;
        }
        if (g == seen) {
            pthread_mutex_lock(&pool->mu);
            while ((g = atomic_load_explicit(&pool->gen, memory_order_acquire)) == seen && !pool->stop)
                pthread_cond_wait(&pool->cv_start, &pool->mu);
            int stop = pool->stop;
            pthread_mutex_unlock(&pool->mu);
            if (stop && g == seen) return NULL;
        }
        seen = g;
        if (!pool->fn) return NULL; /* stop request */
        pool->fn(pool->arg, w->ith, pool->n);
        if (atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&pool->mu);
            pthread_cond_signal(&pool->cv_done);
            pthread_mutex_unlock(&pool->mu);
        }
    }
}

void pool_run(pool_t *pool, pool_fn_t fn, void *arg) {
    if (pool->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store_explicit(&pool->pending, pool->n - 1, memory_order_relaxed);
    pthread_mutex_lock(&pool->mu);
    atomic_fetch_add_explicit(&pool->gen, 1, memory_order_release);
    pthread_cond_broadcast(&pool->cv_start);
    pthread_mutex_unlock(&pool->mu);
    fn(arg, 0, pool->n);
    int spins = 0;
    while (atomic_load_explicit(&pool->pending, memory_order_acquire) > 0 && spins < POOL_SPIN) {
        pool_relax();
        spins++;
    }
    if (atomic_load_explicit(&pool->pending, memory_order_acquire) > 0) {
        pthread_mutex_lock(&pool->mu);
        while (atomic_load_explicit(&pool->pending, memory_order_acquire) > 0)
            pthread_cond_wait(&pool->cv_done, &pool->mu);
        pthread_mutex_unlock(&pool->mu);
    }
}

pool_t *pool_new(int n, char *err, size_t errlen) {
    pool_t *pool = calloc(1, sizeof *pool);
    if (!pool) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    pool->n = n;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv_start, NULL);
    pthread_cond_init(&pool->cv_done, NULL);
    atomic_init(&pool->gen, 0);
    atomic_init(&pool->pending, 0);
    if (n > 1) {
        pool->threads = calloc((size_t)n - 1, sizeof *pool->threads);
        pool->workers = calloc((size_t)n - 1, sizeof *pool->workers);
        if (!pool->threads || !pool->workers) {
            err_set(err, errlen, "out of memory");
            pool_free(pool);
            return NULL;
        }
        for (int i = 0; i < n - 1; i++) {
            pool->workers[i].pool = pool;
            pool->workers[i].ith = i + 1;
            if (pthread_create(&pool->threads[i], NULL, pool_main, &pool->workers[i])) {
                err_set(err, errlen, "cannot start thread %d of %d: lower n_threads", i + 1, n);
                pool_free(pool);
                return NULL;
            }
            pool->n_started++;
        }
    }
    return pool;
}

void pool_free(pool_t *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->mu);
    pool->stop = 1;
    pool->fn = NULL;
    atomic_fetch_add_explicit(&pool->gen, 1, memory_order_release);
    pthread_cond_broadcast(&pool->cv_start);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 0; i < pool->n_started; i++) pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv_start);
    pthread_cond_destroy(&pool->cv_done);
    free(pool->threads);
    free(pool->workers);
    free(pool);
}

int pool_size(const pool_t *pool) { return pool->n; }
