/* stats.h — the worker's throughput statistics, one record per interval (docs/architecture.md, "Observing").
 *
 * The io thread adds answered requests (stats_add_request); the engine thread adds
 * steps (stats_add_step, lock-free atomics). stats_emit() encodes the window's record
 * (JSON via jansson, or msgpack) and starts a new window. Latency percentiles come
 * from a fixed reservoir sample (allocated once), so memory does not grow with load.
 *
 * Record fields: worker, ts (unix seconds), window_s, requests, errors, requests_per_s,
 * prompt_tokens_per_s, generated_tokens_per_s, batch {mean_seqs, max_seqs, mean_tokens},
 * latency_ms {p50, p95, p99}, ttft_ms {p50, p95, p99}, queue_depth, in_flight,
 * kv_cache_used_frac, backend, device — plus totals since start (total_requests,
 * total_errors, total_dlq, uptime_s). Percentiles are null in a window with no sample. */
#ifndef KRILL_STATS_H
#define KRILL_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

typedef struct stats stats_t;

typedef struct {
    const char *worker, *backend, *device;
    int queue_depth;        /* requests waiting in the engine */
    int in_flight;          /* taken from Kafka and not yet acknowledged */
    double kv_cache_used_frac;
} stats_gauges_t;

typedef struct { /* a window's numbers (also what stats_emit encodes) */
    double window_s;
    uint64_t requests, errors, dlq;
    uint64_t prompt_tokens, generated_tokens;
    uint64_t steps, step_seqs, step_tokens;
    int max_seqs;
    uint64_t prefix_hit_tokens, prefix_query_tokens; /* prefix cache, this window */
    double lat_p50, lat_p95, lat_p99, ttft_p50, ttft_p95, ttft_p99; /* < 0: no sample */
} stats_window_t;

stats_t *stats_new(size_t reservoir); /* 0 = 4096 samples */
void stats_free(stats_t *s);          /* accepts NULL */

/* io thread. ok = a 200 answer; ttft_ms/total_ms < 0 when unknown (error answers). */
void stats_add_request(stats_t *s, bool ok, int prompt_tokens, int generated_tokens, double total_ms,
                       double ttft_ms);
/* A message sent to the DLQ (counted in errors too). */
void stats_add_dlq(stats_t *s);
/* engine thread: one engine_step that ran seqs sequences over tokens tokens. */
void stats_add_step(stats_t *s, int seqs, int tokens);
/* engine thread: the engine's prefix-cache totals (engine_stats_t.prefix_*, prompt tokens);
 * the record gives the window's hit rate and the total one. */
void stats_set_prefix_cache(stats_t *s, uint64_t hit_tokens, uint64_t query_tokens);

/* Closes the window: fills *w (may be NULL), encodes the record into out (JSON when
 * fmt is CODEC_FMT_JSON, else msgpack), starts a new window. 0 or -1 with err. */
int stats_emit(stats_t *s, const stats_gauges_t *g, codec_format_t fmt, stats_window_t *w, buf_t *out,
               char *err, size_t errlen);

#endif
