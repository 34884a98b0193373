/* pool.h — the CPU backend's thread pool: n threads (the caller's thread is worker 0)
 * that run one job at a time, each thread calling fn(arg, ith, n).
 *
 * Workers spin briefly on a generation counter, then sleep on a condition variable:
 * short ops see little wake-up latency, idle threads cost no CPU. pool_run returns
 * when every thread has finished the job. One caller at a time (the engine thread). */
#ifndef KRILL_POOL_H
#define KRILL_POOL_H

#include <stddef.h>

typedef struct pool pool_t;
typedef void (*pool_fn_t)(void *arg, int ith, int nth);

/* Starts n - 1 threads (n >= 1). NULL with a message in err ("out of memory",
 * "cannot start thread i of n: lower n_threads"). */
pool_t *pool_new(int n, char *err, size_t errlen);
void pool_free(pool_t *pool); /* stops and joins the threads; accepts NULL */
int pool_size(const pool_t *pool); /* threads including the caller */
/* Runs fn on every thread (inline when the pool has one) and waits for all. */
void pool_run(pool_t *pool, pool_fn_t fn, void *arg);

#endif
