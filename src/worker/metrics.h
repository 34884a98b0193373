/* metrics.h — the worker's Prometheus endpoint: an in-process registry of counters,
 * (Where this part sits among the others: docs/architecture.md.)
 * gauges and histograms, rendered as text exposition format 0.0.4 at /metrics, plus
 * /healthz, served by libmicrohttpd on its own thread (metrics.listen).
 *
 * Rules it keeps:
 * - Updates are cheap and lock-free (C11 atomics): the io thread, the engine thread
 *   and the HTTP thread never wait for each other. The only lock guards the
 *   consumer-lag table, replaced once per librdkafka statistics interval.
 * - Every update function accepts a NULL registry (metrics off) and does nothing.
 * - The set of metrics is fixed (docs/operations-metrics.md is the reference); label
 *   values come from small closed sets (status codes, DLQ codes, topic/partition) so
 *   the number of series stays bounded: a family holds at most METRICS_MAX_LABELS
 *   values and counts the rest under "other".
 * - Label values and HELP text are escaped per the format (\\, \", \n); nothing
 *   configurable (brokers, properties, secrets) is ever exported.
 * - /metrics stays reachable under abuse: a request must arrive whole within 10 s of
 *   its connection opening (or the previous answer), however slowly it trickles, and
 *   above 32 open connections a new one closes the oldest (httpguard.h; docs/operations-metrics.md,
 *   "The endpoint under abuse"); libmicrohttpd's per-connection messages are logged at
 *   most once a minute.
 * - process_* metrics (Prometheus client conventions) are read from /proc per scrape.
 * - /healthz is 200 when the consumer has joined its group and has an assignment or
 *   waits for one, AND the engine loop called metrics_engine_heartbeat() within the
 *   health timeout, AND Kafka is reachable: a broker answered, or none has for less than
 *   the health grace (worker.health_grace_ms; since start-up at first), and no broker
 *   rejected our credentials since one last answered. Else 503 with a one-line reason
 *   (never a librdkafka text: it is ours, fixed). */
#ifndef KRILL_METRICS_H
#define KRILL_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct metrics metrics_t;

#define METRICS_DEFAULT_LISTEN "127.0.0.1:9464"
#define METRICS_MAX_LABELS 16      /* values per labelled counter family (then "other") */
#define METRICS_MAX_LAG 4096       /* (topic, partition) series of krill_consumer_lag_messages */

typedef enum {
    METRICS_CONSUMER_STARTING = 0, /* not subscribed yet: unhealthy */
    METRICS_CONSUMER_WAITING,      /* subscribed, no partition assigned (yet): healthy */
    METRICS_CONSUMER_ASSIGNED,     /* at least one partition: healthy */
    METRICS_CONSUMER_STOPPED,      /* shutting down or fatal error: unhealthy */
} metrics_consumer_state_t;

/* One partition's lag from librdkafka statistics. */
typedef struct {
    char topic[256];   /* Kafka topic names are at most 249 bytes */
    int32_t partition;
    int64_t lag;       /* messages (consumer_lag), >= 0 */
} metrics_lag_t;

/* A registry with every metric at zero. NULL on out of memory. */
metrics_t *metrics_new(void);
/* Stops the server (if any) and frees. Accepts NULL. */
void metrics_free(metrics_t *m);

/* Starts the HTTP server on listen = "host:port" ("0.0.0.0:9464", "[::1]:9464",
 * "localhost:0" = any free port) or "off" (no server, returns 0). Returns 0, or -1
 * with err saying what is wrong (bad address, port in use) and what to do. */
int metrics_serve(metrics_t *m, const char *listen, char *err, size_t errlen);
/* The port the server listens on (useful with port 0), 0 when not serving. */
int metrics_port(const metrics_t *m);

/* The whole exposition text, malloc'd and NUL-terminated (*len without the NUL).
 * NULL on out of memory. What /metrics answers. */
char *metrics_render(metrics_t *m, size_t *len);
/* 1 when healthy, 0 if not with the reason in why (may be NULL). What /healthz answers. */
int metrics_health(metrics_t *m, char *why, size_t whylen);

/* ---------------------------------------------------------------- setters */

/* krill_info{worker,version,backend,device,model} 1. Strings are copied; call before serving. */
void metrics_set_info(metrics_t *m, const char *worker, const char *backend, const char *device,
                      const char *model);

/* One answered request (any thread): krill_requests_total{status="<status_code>",
 * finish_reason}, token counters and the latency histograms. finish_reason: the
 * engine's "stop" or "length" for a 200 answer; every other answer counts as "error"
 * (NULL is fine there), so the label has three values. A time < 0 is not observed (a request
 * that never reached the engine has no TTFT). tpot_s: (total - ttft)/(completion - 1),
 * given only when completion_tokens >= 2, else pass -1. */
void metrics_request_done(metrics_t *m, int status_code, const char *finish_reason, int prompt_tokens,
                          int completion_tokens, double queue_s, double ttft_s, double tpot_s, double total_s);
/* krill_preemptions_total: the engine's running count (engine_stats_t.preemptions). */
void metrics_set_preemptions(metrics_t *m, uint64_t total);
/* krill_prefix_cache_hits_total / _queries_total (prompt tokens) and krill_prefix_cache_blocks:
 * the engine's running totals (engine_stats_t.prefix_*). */
void metrics_set_prefix_cache(metrics_t *m, uint64_t hit_tokens, uint64_t query_tokens, int64_t blocks);
/* One message sent to the DLQ: krill_dlq_total{code}. */
void metrics_dlq(metrics_t *m, const char *code);
/* A partition's offsets went backwards (io thread): krill_partition_resets_total{topic}. */
void metrics_partition_reset(metrics_t *m, const char *topic);

/* One engine step (engine thread): krill_step_batch_tokens, krill_batch_size, busy
 * time and the token throughput used by krill_backlog_drain_seconds. */
void metrics_step(metrics_t *m, int seqs, int tokens, double step_s);
/* Engine occupancy (engine thread, each loop): running sequences, requests waiting
 * (admission queue + engine queue), KV cache blocks used / total. */
void metrics_set_engine(metrics_t *m, int running, int waiting, double kv_usage_ratio);
/* Exactly-once delivery (io thread): a transaction ended with outcome ("committed",
 * "aborted", "fatal"): krill_transactions_total{outcome}; seconds >= 0 also goes to
 * krill_transaction_commit_seconds (the time its commit took). */
void metrics_transaction(metrics_t *m, const char *outcome, double seconds);
/* krill_answers_above_watermark: answered offsets above the partitions' watermarks. */
void metrics_set_answers_ahead(metrics_t *m, int64_t n);
/* Prompt tokens of requests consumed and not yet answered (io thread). */
void metrics_set_pending_prompt_tokens(metrics_t *m, int64_t tokens);
/* The admission limits in force (krill_slo_max_seqs, krill_slo_max_batch_tokens: the
 * static configuration when the controller is off) and what the SLO controller sees
 * (its windowed p95 estimates in seconds; < 0 = no estimate yet). */
void metrics_set_slo(metrics_t *m, bool enabled, int max_seqs, int max_batch_tokens,
                     double ttft_p95_s, double tpot_p95_s);

/* Health facts. The heartbeat is called by the engine loop on every iteration (also
 * when idle); health_timeout_s (default 60) is how old it may be. */
void metrics_set_consumer_state(metrics_t *m, metrics_consumer_state_t st);
void metrics_engine_heartbeat(metrics_t *m);
void metrics_set_health_timeout(metrics_t *m, double seconds);
/* Kafka health facts (io thread). connected: a broker answers (krill_kafka_connected);
 * auth_failed: a broker rejected our credentials and none answered since. The registry
 * starts disconnected, since its creation. grace_s (default 30): how long Kafka may be
 * unreachable before /healthz says so. joined: the consumer joined its group once. */
void metrics_set_kafka_connection(metrics_t *m, bool connected, bool auth_failed);
void metrics_set_health_grace(metrics_t *m, double grace_s);
void metrics_consumer_joined(metrics_t *m);
/* One error librdkafka reported: krill_kafka_errors_total{kind}; kind comes from a
 * small closed set (kafka_error_kind in kafka.h). */
void metrics_kafka_error(metrics_t *m, const char *kind);

/* Replaces the consumer-lag series (partitions not listed disappear). n > METRICS_MAX_LAG
 * keeps the first METRICS_MAX_LAG. */
void metrics_set_lag(metrics_t *m, const metrics_lag_t *lag, size_t n);

/* Parses librdkafka's statistics JSON (statistics.interval.ms, stats_cb) into per-
 * partition consumer lag: topics.*.partitions.* with desired == true (when present),
 * partition >= 0 and consumer_lag >= 0 (-1 = unknown is skipped). Writes at most max
 * entries, sets *n to how many. Returns 1 when the document is a consumer's (the
 * table should be replaced, also with 0 entries), 0 for another client type (e.g. a
 * producer: leave the table alone), -1 with err when it is not statistics JSON. */
int metrics_parse_rdkafka_stats(const char *json, size_t len, metrics_lag_t *out, size_t max,
                                size_t *n, char *err, size_t errlen);
/* metrics_parse_rdkafka_stats + metrics_set_lag for a consumer's document. Returns as
 * the parser. Meant to be called from the stats callback (io thread). */
int metrics_update_from_rdkafka_stats(metrics_t *m, const char *json, size_t len, char *err,
                                      size_t errlen);

#endif
