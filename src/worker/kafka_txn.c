/* kafka_txn.c — the librdkafka side of exactly-once delivery (kafka.h, "exactly-once";
 * docs/delivery.md): init_transactions at open, then one transaction open at all times;
 * committing it with the consumer offsets (KIP-447: the consumer group metadata goes
 * along), aborting it, reading committed offsets with their metadata, rewinding.
 *
 * Error handling follows librdkafka's examples/transactions.c: a retriable error retries
 * the same call (within transaction.timeout.ms), one that requires an abort aborts (the
 * caller rewinds to the committed offsets), a fatal one (fenced by a newer instance of
 * the same transactional.id, or the group moved on) ends the transaction for good. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "err.h"
#include "kafka.h"
#include "kafka_priv.h"
#include "log.h"

static int remaining_ms(double deadline) {
    double r = deadline - clock_now_ms();
    return r < 1 ? 1 : (int)r;
}

/* Remembers a fatal transaction error as the handle's fatal error (kafka_io_fatal). */
static void txn_fatal(kafka_io_t *k, const char *what, const rd_kafka_error_t *e) {
    if (!atomic_load(&k->has_fatal)) {
        snprintf(k->fatal, sizeof k->fatal, "%s: %s (%s)", what, rd_kafka_error_string(e), rd_kafka_error_name(e));
        atomic_store(&k->has_fatal, true);
    }
}

int kafka_txn_start(kafka_io_t *k, char *err, size_t errlen) {
    double deadline = clock_now_ms() + k->txn_timeout_ms;
    rd_kafka_error_t *e;
    while ((e = rd_kafka_init_transactions(k->producer, remaining_ms(deadline))) != NULL) {
        if (!rd_kafka_error_is_retriable(e) || clock_now_ms() >= deadline) {
            err_set(err, errlen, "cannot start Kafka transactions (delivery.mode exactly_once): %s",
                    rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            return -1;
        }
        LOG_WARN("init_transactions: retrying", "error=\"%s\"", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        usleep(200 * 1000);
    }
    if ((e = rd_kafka_begin_transaction(k->producer)) != NULL) {
        err_set(err, errlen, "cannot begin a Kafka transaction: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return -1;
    }
    return 0;
}

bool kafka_io_transactional(const kafka_io_t *k) { return k && k->transactional; }

/* Begins the next transaction after a commit or an abort. */
static kafka_txn_status_t txn_begin(kafka_io_t *k, kafka_txn_status_t st, char *err, size_t errlen) {
    rd_kafka_error_t *e = rd_kafka_begin_transaction(k->producer);
    if (!e) return st;
    err_set(err, errlen, "begin_transaction: %s", rd_kafka_error_string(e));
    txn_fatal(k, "begin_transaction", e);
    rd_kafka_error_destroy(e);
    return KAFKA_TXN_FATAL;
}

/* After e (destroyed here): aborts when the transaction cannot commit any more. */
static kafka_txn_status_t txn_failed(kafka_io_t *k, const char *what, rd_kafka_error_t *e, char *err, size_t errlen) {
    err_set(err, errlen, "%s: %s (%s)", what, rd_kafka_error_string(e), rd_kafka_error_name(e));
    if (rd_kafka_error_is_fatal(e)) {
        txn_fatal(k, what, e);
        rd_kafka_error_destroy(e);
        return KAFKA_TXN_FATAL;
    }
    rd_kafka_error_destroy(e);
    char aerr[256];
    kafka_txn_status_t st = kafka_io_txn_abort(k, aerr, sizeof aerr);
    if (st != KAFKA_TXN_ABORTED) err_set(err, errlen, "%s", aerr);
    return st;
}

kafka_txn_status_t kafka_io_txn_commit(kafka_io_t *k, const kafka_txn_offset_t *offs, size_t n, char *err,
                                       size_t errlen) {
    double deadline = clock_now_ms() + k->txn_timeout_ms;
    rd_kafka_error_t *e = NULL;
    if (n > 0 && k->consumer) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
        for (size_t i = 0; i < n; i++) {
            rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_add(l, offs[i].topic, offs[i].partition);
            tp->offset = offs[i].offset;
            if (offs[i].metadata_len > 0) { /* the list frees it */
                if (!(tp->metadata = malloc(offs[i].metadata_len))) {
                    rd_kafka_topic_partition_list_destroy(l);
                    err_set(err, errlen, "out of memory");
                    return kafka_io_txn_abort(k, err, errlen) == KAFKA_TXN_FATAL ? KAFKA_TXN_FATAL : KAFKA_TXN_ABORTED;
                }
                memcpy(tp->metadata, offs[i].metadata, offs[i].metadata_len);
                tp->metadata_size = offs[i].metadata_len;
            }
        }
        rd_kafka_consumer_group_metadata_t *cgmd = rd_kafka_consumer_group_metadata(k->consumer);
        while ((e = rd_kafka_send_offsets_to_transaction(k->producer, l, cgmd, remaining_ms(deadline))) != NULL &&
               rd_kafka_error_is_retriable(e) && clock_now_ms() < deadline) {
            LOG_WARN("send_offsets_to_transaction: retrying", "error=\"%s\"", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            usleep(100 * 1000);
        }
        rd_kafka_consumer_group_metadata_destroy(cgmd);
        rd_kafka_topic_partition_list_destroy(l);
        if (e) return txn_failed(k, "send_offsets_to_transaction", e, err, errlen);
    }
    while ((e = rd_kafka_commit_transaction(k->producer, remaining_ms(deadline))) != NULL &&
           rd_kafka_error_is_retriable(e) && clock_now_ms() < deadline) {
        LOG_WARN("commit_transaction: retrying", "error=\"%s\"", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        usleep(100 * 1000);
    }
    if (e) return txn_failed(k, "commit_transaction", e, err, errlen);
    return txn_begin(k, KAFKA_TXN_OK, err, errlen);
}

kafka_txn_status_t kafka_io_txn_abort(kafka_io_t *k, char *err, size_t errlen) {
    double deadline = clock_now_ms() + k->txn_timeout_ms;
    rd_kafka_error_t *e;
    while ((e = rd_kafka_abort_transaction(k->producer, remaining_ms(deadline))) != NULL &&
           rd_kafka_error_is_retriable(e) && clock_now_ms() < deadline) {
        LOG_WARN("abort_transaction: retrying", "error=\"%s\"", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        usleep(100 * 1000);
    }
    if (e) {
        err_set(err, errlen, "abort_transaction: %s (%s)", rd_kafka_error_string(e), rd_kafka_error_name(e));
        txn_fatal(k, "abort_transaction", e);
        rd_kafka_error_destroy(e);
        return KAFKA_TXN_FATAL;
    }
    return txn_begin(k, KAFKA_TXN_ABORTED, err, errlen);
}

int kafka_io_committed(kafka_io_t *k, const rd_kafka_topic_partition_list_t *parts, int timeout_ms,
                       void (*fn)(void *ctx, const char *topic, int32_t partition, int64_t offset, const char *meta,
                                  size_t len),
                       void *ctx) {
    if (!k->consumer) return RD_KAFKA_RESP_ERR__STATE;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_copy(parts);
    double deadline = clock_now_ms() + timeout_ms;
    rd_kafka_resp_err_t e;
    /* UNSTABLE_OFFSET_COMMIT: a transaction holding offsets of these partitions is still
     * open (the previous owner's); it is committed or aborted within its timeout. */
    while ((e = rd_kafka_committed(k->consumer, l, remaining_ms(deadline))) != 0 && clock_now_ms() < deadline) {
        LOG_WARN("reading committed offsets: retrying", "error=%s", rd_kafka_err2name(e));
        usleep(200 * 1000);
    }
    for (int i = 0; !e && i < l->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &l->elems[i];
        if (tp->err) {
            e = tp->err;
            break;
        }
        fn(ctx, tp->topic, tp->partition, tp->offset, tp->metadata, tp->metadata ? tp->metadata_size : 0);
    }
    rd_kafka_topic_partition_list_destroy(l);
    return (int)e;
}

int kafka_io_seek(kafka_io_t *k, const char *topic, int32_t partition, int64_t offset) {
    if (!k->consumer) return RD_KAFKA_RESP_ERR__STATE;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset >= 0 ? offset : RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_error_t *e = rd_kafka_seek_partitions(k->consumer, l, 10000);
    int rc = e ? rd_kafka_error_code(e) : l->elems[0].err;
    if (e) rd_kafka_error_destroy(e);
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}
