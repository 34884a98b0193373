/* engine_loop.h — the worker's engine thread: engine_wait / engine_step / engine_poll in
 * a loop, finished results handed to the io thread over a bounded queue, and a wake-up
 * so the io thread (asleep on its Kafka eventfd) picks them up (docs/architecture.md,
 * "Threads").
 *
 * Rules it keeps: the thread never touches Kafka or the ledger; it reports each step to
 * observe_step() and applies the admission limits the SLO controller asks for. The
 * result queue holds as many results as the worker has slots, so a push can only wait
 * while the io thread is busy: no result is ever lost. After a burst arrives on an idle
 * engine it waits up to batching.max_wait_ms for more (or batching.max_seqs waiting)
 * so the burst is batched together. */
#ifndef KRILL_ENGINE_LOOP_H
#define KRILL_ENGINE_LOOP_H

#include <stdbool.h>
#include <stddef.h>

#include "engine.h"
#include "observe.h"

typedef struct engine_loop engine_loop_t;

typedef struct {
    engine_t *engine;
    observe_t *observe;
    size_t capacity;                  /* results in flight at most (the worker's slots) */
    int max_wait_ms;                  /* batching.max_wait_ms: gather a burst; 0 = off */
    int max_seqs;                     /* a burst this large does not wait */
    void (*wake)(void *ctx);          /* called (engine thread) after results were queued */
    void *wake_ctx;
} engine_loop_config_t;

/* Starts the thread. NULL with err (out of memory, no thread). */
engine_loop_t *engine_loop_start(const engine_loop_config_t *c, char *err, size_t errlen);
/* io thread: the next finished result (the caller clears it), false when none. */
bool engine_loop_take(engine_loop_t *el, engine_result_t *r);
/* Stops the thread and waits for it (results already queued stay takeable). Idempotent. */
void engine_loop_stop(engine_loop_t *el);
/* Stops, clears what is left in the queue, frees. Accepts NULL. */
void engine_loop_free(engine_loop_t *el);

#endif
