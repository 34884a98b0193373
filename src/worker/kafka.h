/* kafka.h — the worker's librdkafka io: one consumer (group member) and one idempotent
 * producer (transactional in exactly-once mode: kafka_txn.c, "exactly-once" below), owned
 * by one thread (the io thread). Nothing here knows about requests.
 *
 * Rules it keeps (docs/architecture.md, "Kafka"):
 * - consumer: cooperative-sticky, enable.auto.commit=true, enable.auto.offset.store=false
 *   (offsets are stored by the caller only when everything below them is acknowledged),
 *   auto.offset.reset=earliest; polled with rd_kafka_consumer_poll (never batch consume).
 * - producer: enable.idempotence=true, acks=all; every record carries an opaque that comes
 *   back in the delivery callback.
 * - pause/resume: kafka_io_pause_all() pauses the assigned partitions and remembers them;
 *   kafka_io_resume_all() resumes only those. Partitions assigned while paused are paused.
 * - kafka.properties "key=value" entries go to both handles; "consumer.KEY=V" or
 *   "producer.KEY=V" to one. enable.auto.offset.store cannot be turned on.
 * - librdkafka logs go through log.h; error_cb watches __FATAL (kafka_io_fatal()), counts
 *   every error by kind (handlers->error) and follows the connection (handlers->connection).
 * - sizes: the max.message.bytes of the topics produced to (sized_topics) is read at open
 *   with the Admin API (DescribeConfigs, kafka_limits.h; KAFKA_DEFAULT_TOPIC_MAX_BYTES when
 *   it cannot be read) and every 30 s after; the producer's message.max.bytes is the
 *   largest, batch.size the smallest, so a batch never exceeds what its topic accepts
 *   (kafka.properties may override both).
 * - configuration values are never logged (they may be secrets).
 * All functions must be called from the io thread, except kafka_io_wake(). */
#ifndef KRILL_KAFKA_H
#define KRILL_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kafka_io kafka_io_t;

/* The io's connection to the cluster, for /healthz and krill_kafka_connected. */
typedef enum {
    KAFKA_CONN_DOWN = 0,    /* no broker reachable: not yet, or librdkafka reports all down */
    KAFKA_CONN_UP,          /* a broker answered (metadata, a fetch, a delivery, a rebalance) */
    KAFKA_CONN_AUTH_FAILED, /* a broker rejected our credentials (SASL, TLS) and none answered since */
} kafka_conn_t;

typedef struct {
    void *ctx;
    /* Partitions just assigned to us (already incrementally assigned). May be NULL. */
    void (*assigned)(void *ctx, const rd_kafka_topic_partition_list_t *parts);
    /* Partitions about to be released. The handler finishes or time-boxes their work and
     * stores the offsets it wants committed (kafka_io_store_offset) before returning;
     * kafka.c then commits synchronously (unless lost) and unassigns. lost: the group
     * already gave them away (session timeout): nothing may be committed. */
    void (*revoked)(void *ctx, const rd_kafka_topic_partition_list_t *parts, bool lost);
    /* A produced record was acknowledged (err == 0) or failed for good. m is valid only
     * during the call (payload, key and headers may be copied for a retry). */
    void (*delivered)(void *ctx, void *opaque, rd_kafka_resp_err_t err, const rd_kafka_message_t *m);
    /* The consumer's librdkafka statistics JSON (every statistics.interval.ms), valid only
     * during the call; runs on the io thread inside kafka_io_consume. May be NULL. */
    void (*stats)(void *ctx, const char *json, size_t len);
    /* The connection changed (edges only; it starts DOWN). DOWN comes from the consumer's
     * "all brokers down" only (an idle producer's closed connection is no outage); UP from
     * either handle, and from the consumer's statistics when a broker's state is UP.
     * AUTH_FAILED stays until a broker answers. May be NULL. */
    void (*connection)(void *ctx, kafka_conn_t st);
    /* Every error librdkafka reports through error_cb, by kind (kafka_error_kind). May be NULL. */
    void (*error)(void *ctx, const char *kind);
    /* The consumer joined the group: its first assignment callback, partitions or none
     * (KIP-429: an empty assignment calls it too). May be NULL. */
    void (*joined)(void *ctx);
} kafka_io_handlers_t;

typedef struct {
    const char *brokers;                 /* bootstrap.servers */
    const char *group;                   /* group.id; NULL = producer only (no consumer) */
    const char *client_id;               /* client.id (the worker's name); may be NULL */
    const char *const *topics;           /* subscribed input topics */
    size_t n_topics;
    const char *const *properties;       /* "key=value" (see top of file) */
    size_t n_properties;
    int auto_commit_interval_ms;         /* 0 = 1000 */
    int linger_ms;                       /* producer linger.ms; <0 = librdkafka default */
    int statistics_interval_ms;          /* consumer statistics.interval.ms unless kafka.properties
                                            sets it (with handlers->stats); 0 = off */
    const char *const *sized_topics;     /* topics produced to: their max.message.bytes sizes
                                            the producer (read at open); may be NULL */
    size_t n_sized_topics;
    const char *transactional_id;        /* non-NULL: exactly-once mode (kafka_txn.c): a transactional
                                            producer, consumer auto-commit off, read_committed */
    int transaction_timeout_ms;          /* transaction.timeout.ms when transactional */
} kafka_io_config_t;

/* The broker's default topic max.message.bytes: assumed when a topic's cannot be read. */
#define KAFKA_DEFAULT_TOPIC_MAX_BYTES 1048588

/* Opens both handles and subscribes. Returns NULL with err filled (a property that
 * librdkafka rejects is named by its key, never its value). */
kafka_io_t *kafka_io_open(const kafka_io_config_t *cfg, const kafka_io_handlers_t *h, char *err,
                          size_t errlen);
/* Leaves the group cleanly (rd_kafka_consumer_close: the revoke handler runs) and destroys
 * both handles. Flush first: kafka_io_flush(). Accepts NULL. */
void kafka_io_close(kafka_io_t *k);

/* Wake-ups: an eventfd that becomes readable when the consumer queue or the producer's
 * delivery-report queue gets something, or when kafka_io_wake() is called (any thread). */
int kafka_io_wake_fd(const kafka_io_t *k);
void kafka_io_wake(kafka_io_t *k);
/* Waits up to timeout_ms for a wake-up and clears it. */
void kafka_io_wait(kafka_io_t *k, int timeout_ms);

/* Next consumed message (caller destroys it with rd_kafka_message_destroy) or NULL.
 * Consumer errors are logged here and not returned; rebalances run inside. */
rd_kafka_message_t *kafka_io_consume(kafka_io_t *k, int timeout_ms);
/* Serves the producer's delivery reports (handlers->delivered). Returns how many. */
int kafka_io_serve(kafka_io_t *k);

/* Produces one record (copies key, value; takes ownership of hdrs on success only).
 * partition -1 = partitioner (by key). Returns 0, or the librdkafka error code (never 0)
 * with err filled (unknown topic, message too large, queue full after waiting
 * queue_wait_ms while serving reports); kafka_err_permanent() classifies it. */
int kafka_io_produce(kafka_io_t *k, const char *topic, const void *key, size_t keylen,
                     const void *value, size_t len, rd_kafka_headers_t *hdrs, void *opaque,
                     int queue_wait_ms, char *err, size_t errlen);
/* Records not yet acknowledged by the broker. */
int kafka_io_outq_len(kafka_io_t *k);
/* Waits up to timeout_ms for every produced record to be acknowledged; returns the
 * number still outstanding (0 = all delivered or failed through the callback). */
int kafka_io_flush(kafka_io_t *k, int timeout_ms);

/* Stores `next` (the next offset to consume) for commit by auto-commit. */
int kafka_io_store_offset(kafka_io_t *k, const char *topic, int32_t partition, int64_t next);
/* Commits the stored offsets now (synchronously). Returns 0 or the librdkafka error. */
int kafka_io_commit(kafka_io_t *k);

/* Backpressure: pause every assigned partition not paused yet / resume those we paused. */
void kafka_io_pause_all(kafka_io_t *k);
void kafka_io_resume_all(kafka_io_t *k);
bool kafka_io_paused(const kafka_io_t *k);
/* Stops fetching for good (shutdown): like pause_all, and later assignments stay paused. */
void kafka_io_stop_fetching(kafka_io_t *k);
/* Number of partitions currently assigned to us. */
int kafka_io_assigned_count(const kafka_io_t *k);

/* A fatal librdkafka error happened (idempotence broken, ...): the caller must exit
 * non-zero without storing more offsets. Returns the message or NULL. */
const char *kafka_io_fatal(const kafka_io_t *k);
/* True while librdkafka reports every broker down (cleared when one answers again). */
bool kafka_io_brokers_down(const kafka_io_t *k);
/* The kind of a librdkafka error, from a closed set (the label values of
 * krill_kafka_errors_total): "transport", "all_brokers_down", "authentication",
 * "authorization", "ssl", "resolve", "timeout", "fatal", "other". */
const char *kafka_error_kind(int err);

/* A copy of a message's headers; NULL when it has none. */
rd_kafka_headers_t *kafka_headers_copy(const rd_kafka_message_t *m);
/* A copy of tmpl, or an empty set when tmpl is NULL (never NULL: librdkafka aborts on
 * out of memory). */
rd_kafka_headers_t *kafka_headers_new(const rd_kafka_headers_t *tmpl);
void kafka_headers_add(rd_kafka_headers_t *h, const char *name, const char *value);
void kafka_headers_free(rd_kafka_headers_t *h); /* accepts NULL */

/* A consumed message's topic name (valid while the message lives). */
const char *kafka_msg_topic(const rd_kafka_message_t *m);
void kafka_msg_free(rd_kafka_message_t *m); /* accepts NULL */
/* Rewinds m's partition to m's offset: the message is fetched again (once resumed). */
void kafka_io_seek_back(kafka_io_t *k, const rd_kafka_message_t *m);
/* librdkafka's name of an error code ("_MSG_TIMED_OUT"). */
const char *kafka_err_name(int err);
/* A produce or delivery error that no retry can fix: the record is too large, invalid,
 * refused by a topic policy or not authorized. Everything else (timeouts, unknown topic or
 * partition, leader changes, brokers down, queue full) is transient. */
bool kafka_err_permanent(int err);

/* The max.message.bytes of a topic named in sized_topics as last read (at open, then
 * every 30 s in the background from kafka_io_serve: a changed limit is followed, except
 * the producer's batch.size, fixed at open); KAFKA_DEFAULT_TOPIC_MAX_BYTES for any other
 * topic or one never read. */
size_t kafka_io_topic_max_bytes(const kafka_io_t *k, const char *topic);
/* A record was refused for its size: read the limits again at the next kafka_io_serve. */
void kafka_io_limits_stale(kafka_io_t *k);
/* The bytes a record takes in a batch of its own, an upper bound of what the broker
 * compares with max.message.bytes (batch header + record framing + key + value + headers). */
size_t kafka_record_bytes(size_t keylen, size_t len, const rd_kafka_headers_t *hdrs);
/* A copy of a consumed message's headers for its answers: headers whose name starts with
 * "krill-" (any case) are left out (the worker writes its own), and copying stops at
 * max_count headers or max_bytes of names and values. *dropped: how many headers (not
 * krill-*) were left out for the bounds. Never NULL. */
rd_kafka_headers_t *kafka_headers_copy_bounded(const rd_kafka_message_t *m, size_t max_count, size_t max_bytes,
                                               size_t *dropped);

/* ---- exactly-once (kafka_txn.c; docs/delivery.md). With cfg->transactional_id the
 * producer is transactional: kafka_io_open runs init_transactions (which fences an older
 * instance of the same id and aborts its open transaction) and begins the first
 * transaction; one is open at all times after, and every produced record is part of it.
 * The consumer does not commit by itself (no auto-commit, none on revoke) and reads
 * read_committed. */
typedef enum {
    KAFKA_TXN_OK = 0,  /* committed; the next transaction is open */
    KAFKA_TXN_ABORTED, /* aborted (its records are discarded); the next one is open: the caller
                          rewinds to the committed offsets */
    KAFKA_TXN_FATAL,   /* fenced or fatal: nothing more can be committed (kafka_io_fatal is set) */
} kafka_txn_status_t;

/* One partition's offset for a transaction: the next offset to consume and its metadata. */
typedef struct {
    const char *topic;
    int32_t partition;
    int64_t offset;
    const char *metadata; /* may be NULL */
    size_t metadata_len;
} kafka_txn_offset_t;

bool kafka_io_transactional(const kafka_io_t *k);
/* Sends offs (n may be 0) with the consumer group metadata into the open transaction and
 * commits it (librdkafka flushes its records first, serving delivery reports), then begins
 * the next. Retriable errors are retried within transaction.timeout.ms; err says what
 * failed when not KAFKA_TXN_OK. */
kafka_txn_status_t kafka_io_txn_commit(kafka_io_t *k, const kafka_txn_offset_t *offs, size_t n, char *err,
                                       size_t errlen);
/* Aborts the open transaction (its records are purged: their delivery reports fail with
 * _PURGE_QUEUE) and begins the next: KAFKA_TXN_ABORTED, or KAFKA_TXN_FATAL. */
kafka_txn_status_t kafka_io_txn_abort(kafka_io_t *k, char *err, size_t errlen);
/* The committed offsets of parts and their metadata: fn(ctx, topic, partition, offset
 * (< 0: none), metadata, len) for each; waits up to timeout_ms for a transaction still open
 * on them. 0, or the librdkafka error (fn not called for all). */
int kafka_io_committed(kafka_io_t *k, const rd_kafka_topic_partition_list_t *parts, int timeout_ms,
                       void (*fn)(void *ctx, const char *topic, int32_t partition, int64_t offset, const char *meta,
                                  size_t len),
                       void *ctx);
/* Moves the consumer's position of an assigned partition to offset (< 0: its beginning);
 * what was fetched beyond is dropped. 0 or the librdkafka error. */
int kafka_io_seek(kafka_io_t *k, const char *topic, int32_t partition, int64_t offset);

/* Tools: routes a librdkafka handle's log lines through log.h (what the worker's own
 * handles do), for tools that build their own rd_kafka_conf_t. */
void kafka_conf_set_logger(rd_kafka_conf_t *conf);

/* Tools: creates topics (n_partitions each, replication 1 unless the broker says
 * otherwise) through the Admin API; existing topics are fine. props as in the config.
 * 0 or -1 with err naming the topic. */
int kafka_create_topics(const char *brokers, const char *const *props, size_t n_props, const char *const *topics,
                        size_t n_topics, int n_partitions, int replication, int timeout_ms, char *err, size_t errlen);

/* Config-time checks of Kafka-specific settings (config.c calls it for its kafka.*
 * keys): KAFKA_CHECK_TOPIC a topic name (1..249 of [A-Za-z0-9._-], not "." or ".."),
 * KAFKA_CHECK_TOPIC_LIST a comma-separated list of them, KAFKA_CHECK_PROPERTY the
 * kafka.properties entry number idx ("key=value", "consumer."/"producer." prefix
 * allowed, a key of [A-Za-z0-9._-], none of the properties krill sets from its own
 * keys). 0, or -1 with err; a property's value is never quoted (it may be a secret). */
typedef enum { KAFKA_CHECK_TOPIC, KAFKA_CHECK_TOPIC_LIST, KAFKA_CHECK_PROPERTY } kafka_check_t;
int kafka_config_check(kafka_check_t what, const char *value, size_t idx, char *err, size_t errlen);

/* One kafka.properties entry "key=value" for one client: 1 = it applies (the key, without
 * a "consumer."/"producer." prefix, in keybuf; *value points after the first '='),
 * 0 = it is meant for the other client, -1 = malformed (no '=', empty key, key longer
 * than keylen - 1). */
int kafka_property_split(const char *entry, bool consumer, char *keybuf, size_t keylen, const char **value);

#endif
