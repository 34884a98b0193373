/* kafka_limits.h — the max.message.bytes of the topics the worker produces to, read with
 * the Admin API (DescribeConfigs) at start-up and again in the background, for kafka.c
 * only (kafka.h has the public side: kafka_io_topic_max_bytes). A topic whose config
 * cannot be read keeps KAFKA_DEFAULT_TOPIC_MAX_BYTES (the broker's default). Owned by the
 * io thread; out of memory is a NULL return, never an abort. */
#ifndef KRILL_KAFKA_LIMITS_H
#define KRILL_KAFKA_LIMITS_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct kafka_limits kafka_limits_t;

/* The topics (duplicates and empty names skipped), each at the default. NULL on out of
 * memory. */
kafka_limits_t *kafka_limits_new(const char *const *topics, size_t n);
void kafka_limits_free(kafka_limits_t *l); /* accepts NULL */
/* Reads the limits now through rk, waiting up to timeout_ms for the answer. */
void kafka_limits_read(kafka_limits_t *l, rd_kafka_t *rk, int timeout_ms);
/* Starts a read through rk (whose handle must outlive l) unless one is in flight;
 * kafka_limits_poll takes its answer. */
void kafka_limits_refresh(kafka_limits_t *l, rd_kafka_t *rk);
void kafka_limits_poll(kafka_limits_t *l);
/* A topic's limit (the default for a topic not named at kafka_limits_new). */
size_t kafka_limits_get(const kafka_limits_t *l, const char *topic);
/* The smallest and largest limit; false when there are no topics. */
bool kafka_limits_range(const kafka_limits_t *l, size_t *lo, size_t *hi);

#endif
