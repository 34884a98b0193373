/* kafka_priv.h — the kafka_io handle's insides, shared by kafka.c and kafka_txn.c only
 * (the two files that make the worker's librdkafka calls besides kafka_limits.c). */
#ifndef KRILL_KAFKA_PRIV_H
#define KRILL_KAFKA_PRIV_H

#include <stdatomic.h>
#include <stdbool.h>

#include "kafka.h"
#include "kafka_limits.h"

struct kafka_io {
    rd_kafka_t *consumer; /* NULL when cfg->group is NULL */
    rd_kafka_t *producer;
    rd_kafka_queue_t *consumer_q, *producer_q;
    kafka_io_handlers_t h;
    int efd;
    bool cooperative;
    bool want_paused; /* backpressure: new assignments get paused too */
    bool stopped;     /* shutdown: never resume */
    rd_kafka_topic_partition_list_t *paused; /* partitions we paused */
    atomic_bool has_fatal;
    atomic_bool brokers_down;
    kafka_conn_t conn; /* io thread only (every callback runs in a poll of the io thread) */
    bool joined;
    bool ever_up; /* a broker answered once: later UPs are recoveries, logged */
    char fatal[512];
    kafka_limits_t *limits; /* max.message.bytes of the topics produced to */
    double limits_due;      /* clock_now_ms() of the next refresh */
    bool transactional;     /* cfg->transactional_id: the producer runs transactions (kafka_txn.c) */
    int txn_timeout_ms;     /* its transaction.timeout.ms */
};

/* kafka_txn.c: init_transactions (retrying what is retriable) and the first
 * begin_transaction, right after the producer is created. 0, or -1 with err. */
int kafka_txn_start(kafka_io_t *k, char *err, size_t errlen);

#endif
