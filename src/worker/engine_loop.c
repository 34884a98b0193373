/* engine_loop.c — see engine_loop.h. */
#include "engine_loop.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "clock.h"
#include "err.h"
#include "queue.h"

#define ENGINE_POLL_MAX 256 /* results taken from the engine per engine_poll */

struct engine_loop {
    engine_loop_config_t c;
    queue_t *done_q;         /* engine_result_t: engine thread -> io thread */
    engine_result_t *res;    /* (ENGINE_POLL_MAX) the thread's poll buffer */
    pthread_t thread;
    bool running;            /* the thread was started and not joined */
    atomic_bool stop;
};

/* Work arrived after idling: give a burst a moment to gather into one batch. */
static void engine_loop_gather(engine_loop_t *el) {
    double t0 = clock_now_ms();
    engine_stats_t st;
    for (;;) {
        engine_get_stats(el->c.engine, &st);
        if (st.waiting >= el->c.max_seqs || clock_now_ms() - t0 >= el->c.max_wait_ms || atomic_load(&el->stop)) break;
        struct timespec ts = {0, 500000};
        nanosleep(&ts, NULL);
    }
}

/* Hands what the engine finished to the io thread; true when there was something. */
static bool engine_loop_hand_over(engine_loop_t *el, engine_result_t *res) {
    size_t n;
    bool any = false;
    while ((n = engine_poll(el->c.engine, res, ENGINE_POLL_MAX)) > 0) {
        for (size_t i = 0; i < n; i++) {
            /* A push can only wait while the io thread is busy (the queue holds as many
             * results as there are slots); it never loses a result. */
            while (queue_push(el->done_q, &res[i], 1000) != 0) {
                if (atomic_load(&el->stop)) {
                    engine_result_clear(&res[i]);
                    break;
                }
            }
        }
        any = true;
    }
    return any;
}

static void *engine_loop_main(void *arg) {
    engine_loop_t *el = arg;
    pthread_setname_np(pthread_self(), "krill-engine");
    bool idle = true;
    while (!atomic_load(&el->stop)) {
        observe_heartbeat(el->c.observe);
        if (!engine_wait(el->c.engine, 50)) {
            idle = true;
            continue;
        }
        if (idle && el->c.max_wait_ms > 0) engine_loop_gather(el);
        idle = false;
        int seqs = engine_step(el->c.engine);
        engine_stats_t st;
        engine_get_stats(el->c.engine, &st);
        int ls, lt;
        if (observe_step(el->c.observe, seqs, &st, &ls, &lt)) engine_set_limits(el->c.engine, ls, lt);
        if (engine_loop_hand_over(el, el->res) && el->c.wake) el->c.wake(el->c.wake_ctx);
    }
    return NULL;
}

engine_loop_t *engine_loop_start(const engine_loop_config_t *c, char *err, size_t errlen) {
    engine_loop_t *el = calloc(1, sizeof *el);
    if (!el || !(el->done_q = queue_new(c->capacity, sizeof(engine_result_t))) ||
        !(el->res = calloc(ENGINE_POLL_MAX, sizeof *el->res))) {
        err_set(err, errlen, "out of memory for the engine thread's queue");
        engine_loop_free(el);
        return NULL;
    }
    el->c = *c;
    if (el->c.max_seqs <= 0) el->c.max_seqs = 64;
    atomic_init(&el->stop, false);
    if (pthread_create(&el->thread, NULL, engine_loop_main, el) != 0) {
        err_set(err, errlen, "cannot start the engine thread");
        engine_loop_free(el);
        return NULL;
    }
    el->running = true;
    return el;
}

bool engine_loop_take(engine_loop_t *el, engine_result_t *r) { return queue_pop(el->done_q, r); }

void engine_loop_stop(engine_loop_t *el) {
    if (!el || !el->running) return;
    atomic_store(&el->stop, true);
    queue_close(el->done_q);
    pthread_join(el->thread, NULL);
    el->running = false;
}

void engine_loop_free(engine_loop_t *el) {
    if (!el) return;
    engine_loop_stop(el);
    engine_result_t r;
    while (el->done_q && queue_pop(el->done_q, &r)) engine_result_clear(&r);
    queue_free(el->done_q);
    free(el->res);
    free(el);
}
