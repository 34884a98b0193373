/* observe.h — one place where the worker reports what happened: every answered request
 * and every engine step is fed to the throughput statistics (stats.h), the Prometheus
 * registry (metrics.h) and the adaptive-batching controller (slo.h) together, so the
 * three never disagree about what was counted (docs/architecture.md, "Observing").
 *
 * Threads: observe_request/observe_dlq/observe_* setters for the io thread,
 * observe_step/observe_heartbeat for the engine thread (each underlying part is safe
 * for that split, see their headers). */
#ifndef KRILL_OBSERVE_H
#define KRILL_OBSERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "engine.h"
#include "metrics.h"
#include "stats.h"

typedef struct observe observe_t;

/* One answered request. */
typedef struct {
    int status;              /* the answer's status_code (pipeline_t.status): 200 = ok */
    const char *finish_reason; /* "stop" | "length" for an engine answer; NULL for others
                                  (every non-200 answer counts as "error") */
    int prompt_tokens, completion_tokens;
    double queue_ms, ttft_ms, total_ms; /* the engine's times; < 0: unknown / never ran */
    double waited_ms;        /* since consumed: the latency of an answer that never ran */
} observe_request_t;

/* Stats, metrics (served on cfg->metrics.listen) and, when batching.slo sets a target,
 * the SLO controller with the engine's budgets as ceilings. NULL with err (a port in
 * use, a bad target). */
observe_t *observe_new(const config_t *cfg, const engine_info_t *info, const char *worker_id, char *err,
                       size_t errlen);
/* Stops the metrics server. Accepts NULL. Call after the engine thread is gone. */
void observe_free(observe_t *o);

/* io thread */
void observe_request(observe_t *o, const observe_request_t *r);
void observe_dlq(observe_t *o, const char *code);
/* A partition's offsets went backwards: a new generation (krill_partition_resets_total). */
void observe_partition_reset(observe_t *o, const char *topic);
void observe_consumer_state(observe_t *o, metrics_consumer_state_t st);
void observe_pending_prompt_tokens(observe_t *o, int64_t tokens);
/* Exactly-once delivery: a transaction ended (metrics_transaction), answered offsets
 * above the watermarks (metrics_set_answers_ahead). */
void observe_transaction(observe_t *o, const char *outcome, double seconds);
void observe_answers_ahead(observe_t *o, int64_t n);
/* Kafka's connection (up: a broker answers; auth_failed: credentials rejected), its
 * errors by kind (kafka_error_kind) and the consumer's first group join. */
void observe_kafka_connection(observe_t *o, bool up, bool auth_failed);
void observe_kafka_error(observe_t *o, const char *kind);
void observe_consumer_joined(observe_t *o);
/* librdkafka's statistics JSON (consumer lag). */
void observe_kafka_stats(observe_t *o, const char *json, size_t len);
/* Closes the statistics window: the record (stats.format) into out, and a log line.
 * 0, or -1 (logged) when it could not be encoded. */
int observe_stats_record(observe_t *o, const stats_gauges_t *g, int paused, buf_t *out);

/* engine thread */
void observe_heartbeat(observe_t *o);
/* After each engine_step that ran seqs sequences (st: the engine's stats after it).
 * Returns true with the new admission limits when the SLO controller changed them: the
 * caller applies them (engine_set_limits) before the next step. */
bool observe_step(observe_t *o, int seqs, const engine_stats_t *st, int *max_seqs, int *max_batch_tokens);

#endif
