/* io_loop.h — the worker's io thread: consumes requests, decodes and submits them,
 * answers finished ones, serves delivery reports and retries, stores offsets, follows
 * rebalances, emits statistics, and shuts down (docs/architecture.md, "The io loop").
 *
 * It owns the Kafka handles (kafka.h), the ledger (ledger.h) and the pipeline state;
 * the engine thread (engine_loop.h) only hands it results. It never waits on inference:
 * it sleeps only on the Kafka eventfd, which the engine thread also writes.
 *
 * Shutdown (one path): a stop request (signal, or a record given up after its retry
 * budget) stops fetching and drains up to worker.drain_timeout_ms; then engine work is
 * aborted, the engine thread stopped, records flushed, offsets stored and committed and
 * the group left. A fatal Kafka error skips the drain, the flush and the stores (a
 * restart replays what was not committed). */
#ifndef KRILL_IO_LOOP_H
#define KRILL_IO_LOOP_H

#include <signal.h>
#include <stddef.h>

#include "config.h"
#include "engine.h"
#include "engine_loop.h"
#include "observe.h"

/* Exit statuses of krill-worker (its --help lists them). */
enum { IO_EXIT_OK = 0, IO_EXIT_START = 1, IO_EXIT_USAGE = 2, IO_EXIT_DELIVERY = 3, IO_EXIT_FATAL = 4 };

typedef struct io_loop io_loop_t;

typedef struct {
    const config_t *cfg;
    engine_t *engine;
    const char *worker_id;
    observe_t *observe;
    const volatile sig_atomic_t *stop; /* set by the signal handler */
} io_loop_config_t;

/* Builds the ledger and the pipeline, opens Kafka and subscribes. NULL with err. */
io_loop_t *io_loop_new(const io_loop_config_t *c, char *err, size_t errlen);
/* Requests in flight at most: the size of the engine loop's result queue. */
size_t io_loop_capacity(const io_loop_t *io);
/* The eventfd the loop sleeps on: a write wakes it (signal handlers, any thread). */
int io_loop_wake_fd(const io_loop_t *io);
/* Wakes the loop (engine_loop_config_t.wake). */
void io_loop_wake(void *io);
/* Runs until stopped, then shuts down (engine loop stopped, Kafka closed). Returns the
 * exit status: IO_EXIT_OK, IO_EXIT_DELIVERY or IO_EXIT_FATAL. */
int io_loop_run(io_loop_t *io, engine_loop_t *el);
/* Closes what is still open (after a start-up failure too). Accepts NULL. */
void io_loop_free(io_loop_t *io);

#endif
