/* kafka.c — see kafka.h. librdkafka consumer + idempotent producer for the io thread.
 *
 * Wake-ups: both handles' final queues (the consumer queue, the producer's main queue)
 * write to one eventfd when they go from empty to non-empty, so the io thread sleeps in
 * poll(2) on a single fd and is woken by Kafka and by the engine thread alike. Since
 * librdkafka signals only the empty -> non-empty edge, the io loop always drains what it
 * can before sleeping, and never sleeps longer than its own timers allow. */
#include "err.h"
#include "kafka.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "kafka_limits.h"
#include "kafka_priv.h"
#include "log.h"


/* ---------------------------------------------------------------- callbacks */

static void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    log_level_t lvl = level <= 3 ? LOG_LVL_ERROR : level == 4 ? LOG_LVL_WARN : level <= 6 ? LOG_LVL_INFO : LOG_LVL_DEBUG;
    /* librdkafka's own notices are chatty (level 5/6): keep them at debug. */
    if (level == 5 || level == 6) lvl = LOG_LVL_DEBUG;
    /* A fresh broker answers "coordinator load in progress" for a moment: retried. */
    if (level == 4 && strcmp(fac, "GETPID") == 0 && strstr(buf, "retrying")) lvl = LOG_LVL_INFO;
    if ((int)lvl < log_level_current) return;
    log_write(lvl, "librdkafka", buf, "handle=%s fac=%s", rd_kafka_name(rk), fac);
}

const char *kafka_error_kind(int err) {
    switch (err) {
    case RD_KAFKA_RESP_ERR__TRANSPORT: return "transport";
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN: return "all_brokers_down";
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_SASL_MECHANISM:
    case RD_KAFKA_RESP_ERR_ILLEGAL_SASL_STATE: return "authentication";
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED: return "authorization";
    case RD_KAFKA_RESP_ERR__SSL: return "ssl";
    case RD_KAFKA_RESP_ERR__RESOLVE: return "resolve";
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT: return "timeout";
    case RD_KAFKA_RESP_ERR__FATAL: return "fatal";
    default: return "other";
    }
}

/* Moves the connection state and tells the handler on a change (io thread). */
static void kafka_conn_set(kafka_io_t *k, kafka_conn_t st) {
    if (k->conn == st) return;
    if (st == KAFKA_CONN_DOWN && k->conn == KAFKA_CONN_AUTH_FAILED) return; /* keep the more specific reason */
    if (st == KAFKA_CONN_UP && (k->ever_up || k->conn == KAFKA_CONN_AUTH_FAILED))
        LOG_INFO("a Kafka broker answers again", "was=%s", k->conn == KAFKA_CONN_AUTH_FAILED ? "auth_failed" : "down");
    if (st == KAFKA_CONN_UP) k->ever_up = true;
    k->conn = st;
    if (k->h.connection) k->h.connection(k->h.ctx, st);
}

/* A broker answered: clears "all brokers down" and moves the connection to UP. */
static void kafka_broker_answered(kafka_io_t *k) {
    atomic_store(&k->brokers_down, false);
    kafka_conn_set(k, KAFKA_CONN_UP);
}

static void kafka_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    kafka_io_t *k = opaque;
    if (k->h.error) k->h.error(k->h.ctx, kafka_error_kind(err));
    if (!strcmp(kafka_error_kind(err), "authentication")) {
        /* Logged once per failure spell: librdkafka retries every reconnect.backoff. Its
         * reason names the mechanism, never the password. */
        if (k->conn != KAFKA_CONN_AUTH_FAILED)
            LOG_ERROR("Kafka authentication failed; check the SASL/TLS credentials in kafka.properties "
                      "(librdkafka keeps retrying, /healthz answers 503)",
                      "handle=%s error=%s reason=\"%s\"", rd_kafka_name(rk), rd_kafka_err2name((rd_kafka_resp_err_t)err),
                      reason);
        kafka_conn_set(k, KAFKA_CONN_AUTH_FAILED);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[400];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof buf);
        if (!atomic_load(&k->has_fatal)) {
            snprintf(k->fatal, sizeof k->fatal, "%s: %s (%s)", rd_kafka_name(rk), buf, rd_kafka_err2name(orig));
            atomic_store(&k->has_fatal, true);
        }
        LOG_ERROR("fatal Kafka error", "handle=%s error=%s reason=\"%s\"", rd_kafka_name(rk),
                  rd_kafka_err2name(orig), buf);
        kafka_io_wake(k);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        if (!atomic_exchange(&k->brokers_down, true))
            LOG_WARN("all brokers are down; librdkafka keeps retrying", "handle=%s", rd_kafka_name(rk));
        if (rk == k->consumer) kafka_conn_set(k, KAFKA_CONN_DOWN);
        return;
    }
    LOG_WARN("Kafka error", "handle=%s error=%s reason=\"%s\"", rd_kafka_name(rk),
             rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void kafka_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    kafka_io_t *k = opaque;
    if (!m->err) kafka_broker_answered(k);
    if (k->h.delivered) k->h.delivered(k->h.ctx, m->_private, m->err, m);
}

static bool tp_list_has(const rd_kafka_topic_partition_list_t *l, const char *topic, int32_t p) {
    for (int i = 0; l && i < l->cnt; i++)
        if (l->elems[i].partition == p && strcmp(l->elems[i].topic, topic) == 0) return true;
    return false;
}

static void tp_list_remove(rd_kafka_topic_partition_list_t *l, const char *topic, int32_t p) {
    rd_kafka_topic_partition_list_del(l, topic, p);
}

static void kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                               rd_kafka_topic_partition_list_t *parts, void *opaque) {
    kafka_io_t *k = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        /* The group coordinator answered (a revoke may come from a lost session: no proof). */
        kafka_broker_answered(k);
        if (!k->joined) {
            k->joined = true;
            if (k->h.joined) k->h.joined(k->h.ctx);
        }
        if (k->cooperative) {
            rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);
            if (e) {
                LOG_ERROR("incremental assign failed", "error=\"%s\"", rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
                return;
            }
        } else {
            rd_kafka_resp_err_t e = rd_kafka_assign(rk, parts);
            if (e) LOG_ERROR("assign failed", "error=%s", rd_kafka_err2name(e));
        }
        LOG_INFO("partitions assigned", "count=%d protocol=%s", parts->cnt, k->cooperative ? "cooperative" : "eager");
        if (k->h.assigned) k->h.assigned(k->h.ctx, parts);
        if (k->want_paused || k->stopped) {
            rd_kafka_pause_partitions(rk, parts);
            for (int i = 0; i < parts->cnt; i++)
                if (!tp_list_has(k->paused, parts->elems[i].topic, parts->elems[i].partition))
                    rd_kafka_topic_partition_list_add(k->paused, parts->elems[i].topic, parts->elems[i].partition);
        }
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        bool lost = rd_kafka_assignment_lost(rk);
        LOG_INFO(lost ? "partitions lost" : "partitions revoked", "count=%d", parts->cnt);
        if (k->h.revoked) k->h.revoked(k->h.ctx, parts, lost);
        if (!lost && !k->transactional) { /* transactional: the handler committed its transaction */
            /* Commit what the handler stored for the revoked partitions before they go. */
            rd_kafka_resp_err_t ce = rd_kafka_commit(rk, NULL, 0);
            if (ce && ce != RD_KAFKA_RESP_ERR__NO_OFFSET)
                LOG_WARN("commit on revoke failed; the next owner may repeat some requests", "error=%s",
                         rd_kafka_err2name(ce));
        }
        for (int i = 0; i < parts->cnt; i++) tp_list_remove(k->paused, parts->elems[i].topic, parts->elems[i].partition);
        if (k->cooperative) {
            rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
            if (e) {
                LOG_ERROR("incremental unassign failed", "error=\"%s\"", rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
            }
        } else {
            rd_kafka_assign(rk, NULL);
        }
        return;
    }
    LOG_ERROR("rebalance error", "error=%s", rd_kafka_err2name(err));
    if (k->cooperative) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
        if (e) rd_kafka_error_destroy(e);
    } else {
        rd_kafka_assign(rk, NULL);
    }
}

static int kafka_stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
    (void)rk;
    kafka_io_t *k = opaque;
    /* Brokers' states are upper case ("state":"UP"); the group's is lower case ("up"). */
    if (memmem(json, len, "\"state\":\"UP\"", 12)) kafka_broker_answered(k);
    if (k->h.stats) k->h.stats(k->h.ctx, json, len);
    return 0; /* librdkafka frees json */
}

/* ---------------------------------------------------------------- configuration */

/* Sets key=value; on failure names the key, and hides the value if librdkafka echoes it. */
static int conf_set(rd_kafka_conf_t *conf, const char *key, const char *val, const char *where, char *err,
                    size_t errlen) {
    char es[512];
    if (rd_kafka_conf_set(conf, key, val, es, sizeof es) == RD_KAFKA_CONF_OK) return 0;
    if (val && *val) {
        char *p;
        while ((p = strstr(es, val)) != NULL) {
            size_t vl = strlen(val);
            memmove(p + 3, p + vl, strlen(p + vl) + 1);
            memcpy(p, "***", 3);
        }
    }
    err_set(err, errlen, "%s: librdkafka rejected property '%s': %s; fix or remove it", where, key, es);
    return -1;
}

/* Applies kafka.properties entries meant for this handle ("consumer."/"producer." prefixes). */
int kafka_property_split(const char *entry, bool consumer, char *keybuf, size_t keylen, const char **value) {
    const char *eq = entry ? strchr(entry, '=') : NULL;
    if (!eq || eq == entry) return -1;
    const char *k = entry;
    size_t kl = (size_t)(eq - entry);
    bool for_consumer = kl >= 9 && strncmp(k, "consumer.", 9) == 0;
    bool for_producer = kl >= 9 && strncmp(k, "producer.", 9) == 0;
    if (for_consumer || for_producer) {
        k += 9, kl -= 9;
        if (kl == 0) return -1;
        if (for_consumer != consumer) return 0;
    }
    if (kl + 1 > keylen) return -1;
    memcpy(keybuf, k, kl);
    keybuf[kl] = 0;
    *value = eq + 1;
    return 1;
}

static int conf_apply_props(rd_kafka_conf_t *conf, const kafka_io_config_t *cfg, bool consumer, char *err,
                            size_t errlen) {
    for (size_t i = 0; i < cfg->n_properties; i++) {
        char name[256];
        const char *value;
        int rc = kafka_property_split(cfg->properties[i], consumer, name, sizeof name, &value);
        if (rc == 0) continue;
        if (rc < 0) {
            err_set(err, errlen, "kafka.properties[%zu] is not \"key=value\" (a key under 256 bytes); write it as \"key=value\"", i);
            return -1;
        }
        if (strcmp(name, "enable.auto.offset.store") == 0) {
            err_set(err, errlen,
                     "kafka.properties[%zu]: enable.auto.offset.store is managed by krill (offsets are stored only "
                     "after results are acknowledged); remove it",
                     i);
            return -1;
        }
        /* Properties that name other handles' callbacks are meaningless here; librdkafka
         * rejects unknown ones with a clear message. */
        char where[64];
        snprintf(where, sizeof where, "kafka.properties[%zu]", i);
        if (conf_set(conf, name, value, where, err, errlen)) return -1;
    }
    return 0;
}

static rd_kafka_conf_t *conf_common(kafka_io_t *k, const kafka_io_config_t *cfg, char *err, size_t errlen) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (conf_set(conf, "bootstrap.servers", cfg->brokers, "kafka.brokers", err, errlen)) goto fail;
    if (cfg->client_id && *cfg->client_id && conf_set(conf, "client.id", cfg->client_id, "worker.name", err, errlen))
        goto fail;
    if (conf_set(conf, "log.connection.close", "false", "default", err, errlen)) goto fail;
    rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
    rd_kafka_conf_set_error_cb(conf, kafka_error_cb);
    rd_kafka_conf_set_opaque(conf, k);
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* ---------------------------------------------------------------- topic limits */

#define KAFKA_DESCRIBE_TIMEOUT_MS 5000   /* a broker that does not answer: start with the default */
#define KAFKA_LIMITS_REFRESH_MS 30000    /* topic configs are read again this often */

/* Reads the sized topics' max.message.bytes with a short-lived client (the producer is
 * sized before it exists); unreadable limits keep the broker default. */
static void kafka_limits_read_now(kafka_io_t *k, const kafka_io_config_t *cfg) {
    if (cfg->n_sized_topics == 0) return;
    char es[512], err[256];
    rd_kafka_t *rk = NULL;
    rd_kafka_conf_t *conf = conf_common(k, cfg, err, sizeof err);
    if (conf && conf_apply_props(conf, cfg, false, err, sizeof err) == 0) {
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, es, sizeof es);
        if (rk) conf = NULL; /* now owned by rk */
    }
    if (conf) rd_kafka_conf_destroy(conf);
    if (!rk) return; /* kafka_io_open reports the same error when it creates the producer */
    kafka_limits_read(k->limits, rk, KAFKA_DESCRIBE_TIMEOUT_MS);
    rd_kafka_destroy(rk);
}

/* message.max.bytes = the largest topic limit (librdkafka refuses larger records at
 * produce), batch.size = the smallest (a batch of several records stays under every
 * topic's limit; a record alone is never split). Set before kafka.properties, which win. */
static int kafka_limits_size_producer(const kafka_io_t *k, rd_kafka_conf_t *pconf, char *err, size_t errlen) {
    size_t lo, hi;
    if (!kafka_limits_range(k->limits, &lo, &hi)) return 0;
    /* librdkafka's bounds: message.max.bytes 1000..1e9, batch.size 1..2147483647 */
    hi = hi < 1000 ? 1000 : hi > 1000000000 ? 1000000000 : hi;
    lo = lo > hi ? hi : lo;
    char mmb[24], bs[24];
    snprintf(mmb, sizeof mmb, "%zu", hi);
    snprintf(bs, sizeof bs, "%zu", lo);
    LOG_DEBUG("producer sized from the topics", "message_max_bytes=%s batch_size=%s", mmb, bs);
    return conf_set(pconf, "message.max.bytes", mmb, "the topics' max.message.bytes", err, errlen) ||
                   conf_set(pconf, "batch.size", bs, "the topics' max.message.bytes", err, errlen)
               ? -1
               : 0;
}

size_t kafka_io_topic_max_bytes(const kafka_io_t *k, const char *topic) { return kafka_limits_get(k->limits, topic); }

void kafka_io_limits_stale(kafka_io_t *k) { k->limits_due = 0; }

kafka_io_t *kafka_io_open(const kafka_io_config_t *cfg, const kafka_io_handlers_t *h, char *err, size_t errlen) {
    rd_kafka_conf_t *pconf = NULL, *cconf = NULL;
    rd_kafka_topic_partition_list_t *subs = NULL;
    char es[512];
    static const uint64_t one = 1;
    kafka_io_t *k = calloc(1, sizeof *k);
    if (!k) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    k->efd = -1;
    if (h) k->h = *h;
    k->paused = rd_kafka_topic_partition_list_new(16);
    k->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (k->efd < 0) {
        err_set(err, errlen, "eventfd: %s", strerror(errno));
        goto fail;
    }
    if (!cfg->brokers || !*cfg->brokers) {
        err_set(err, errlen, "kafka.brokers is empty; set it to host:port[,host:port]");
        goto fail;
    }

    /* producer */
    if (!(pconf = conf_common(k, cfg, err, errlen))) goto fail;
    char linger[16];
    snprintf(linger, sizeof linger, "%d", cfg->linger_ms >= 0 ? cfg->linger_ms : 5);
    if (conf_set(pconf, "enable.idempotence", "true", "default", err, errlen) ||
        conf_set(pconf, "acks", "all", "default", err, errlen) ||
        (cfg->linger_ms >= 0 && conf_set(pconf, "linger.ms", linger, "default", err, errlen)))
        goto fail;
    if (!(k->limits = kafka_limits_new(cfg->sized_topics, cfg->n_sized_topics))) {
        err_set(err, errlen, "out of memory");
        goto fail;
    }
    kafka_limits_read_now(k, cfg);
    if (kafka_limits_size_producer(k, pconf, err, errlen) != 0) goto fail;
    k->limits_due = clock_now_ms() + KAFKA_LIMITS_REFRESH_MS;
    if (conf_apply_props(pconf, cfg, false, err, errlen)) goto fail;
    if (cfg->transactional_id) { /* after the properties: exactly-once mode owns these */
        char tt[16];
        snprintf(tt, sizeof tt, "%d", cfg->transaction_timeout_ms);
        if (conf_set(pconf, "transactional.id", cfg->transactional_id, "delivery.mode", err, errlen) ||
            conf_set(pconf, "transaction.timeout.ms", tt, "delivery.transaction_timeout_ms", err, errlen))
            goto fail;
        k->transactional = true;
        k->txn_timeout_ms = cfg->transaction_timeout_ms;
    }
    rd_kafka_conf_set_dr_msg_cb(pconf, kafka_dr_cb);
    k->producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, es, sizeof es);
    if (!k->producer) {
        err_set(err, errlen, "cannot create the Kafka producer: %s", es);
        goto fail;
    }
    pconf = NULL; /* now owned by the producer */
    k->producer_q = rd_kafka_queue_get_main(k->producer);
    rd_kafka_queue_io_event_enable(k->producer_q, k->efd, &one, sizeof one);
    if (k->transactional && kafka_txn_start(k, err, errlen) != 0) goto fail;

    /* consumer */
    if (cfg->group) {
        if (!(cconf = conf_common(k, cfg, err, errlen))) goto fail;
        char aci[16];
        snprintf(aci, sizeof aci, "%d", cfg->auto_commit_interval_ms > 0 ? cfg->auto_commit_interval_ms : 1000);
        if (conf_set(cconf, "group.id", cfg->group, "kafka.group", err, errlen) ||
            conf_set(cconf, "partition.assignment.strategy", "cooperative-sticky", "default", err, errlen) ||
            conf_set(cconf, "enable.auto.commit", "true", "default", err, errlen) ||
            conf_set(cconf, "auto.commit.interval.ms", aci, "default", err, errlen) ||
            conf_set(cconf, "auto.offset.reset", "earliest", "default", err, errlen) ||
            conf_set(cconf, "enable.partition.eof", "false", "default", err, errlen) ||
            /* A fetch long-poll in flight delays the refetch after a resume by up to this
             * long; librdkafka's 500 ms default made backpressure cycles stall. */
            conf_set(cconf, "fetch.wait.max.ms", "20", "default", err, errlen) ||
            /* Partitions added to (or a topic recreated under) the subscription are seen
             * within this long; librdkafka's 300 s default left new partitions unread for
             * minutes (docs/operations.md, "Changing the request topic"). */
            conf_set(cconf, "topic.metadata.refresh.interval.ms", "10000", "default", err, errlen))
            goto fail;
        if (k->h.stats && cfg->statistics_interval_ms > 0) { /* before the properties: they may override it */
            char si[16];
            snprintf(si, sizeof si, "%d", cfg->statistics_interval_ms);
            if (conf_set(cconf, "statistics.interval.ms", si, "default", err, errlen)) goto fail;
            rd_kafka_conf_set_stats_cb(cconf, kafka_stats_cb);
        }
        if (conf_apply_props(cconf, cfg, true, err, errlen)) goto fail;
        /* Forced last: an offset is stored only when its answer is acknowledged. */
        if (conf_set(cconf, "enable.auto.offset.store", "false", "default", err, errlen)) goto fail;
        /* Exactly-once: offsets go with the transactions, and only committed requests are read. */
        if (k->transactional && (conf_set(cconf, "enable.auto.commit", "false", "delivery.mode", err, errlen) ||
                                 conf_set(cconf, "isolation.level", "read_committed", "delivery.mode", err, errlen)))
            goto fail;
        rd_kafka_conf_set_rebalance_cb(cconf, kafka_rebalance_cb);
        k->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, es, sizeof es);
        if (!k->consumer) {
            err_set(err, errlen, "cannot create the Kafka consumer: %s", es);
            goto fail;
        }
        cconf = NULL; /* now owned by the consumer */
        rd_kafka_poll_set_consumer(k->consumer);
        k->consumer_q = rd_kafka_queue_get_consumer(k->consumer);
        rd_kafka_queue_io_event_enable(k->consumer_q, k->efd, &one, sizeof one);
        char strat[128];
        size_t sl = sizeof strat;
        k->cooperative = true;
        if (rd_kafka_conf_get(rd_kafka_conf(k->consumer), "partition.assignment.strategy", strat, &sl) ==
            RD_KAFKA_CONF_OK)
            k->cooperative = strstr(strat, "cooperative") != NULL;
        subs = rd_kafka_topic_partition_list_new((int)cfg->n_topics);
        for (size_t i = 0; i < cfg->n_topics; i++)
            rd_kafka_topic_partition_list_add(subs, cfg->topics[i], RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t e = rd_kafka_subscribe(k->consumer, subs);
        if (e) {
            err_set(err, errlen, "cannot subscribe to the input topics: %s", rd_kafka_err2str(e));
            goto fail;
        }
        rd_kafka_topic_partition_list_destroy(subs);
        subs = NULL;
    }
    return k;
fail:
    if (pconf) rd_kafka_conf_destroy(pconf);
    if (cconf) rd_kafka_conf_destroy(cconf);
    if (subs) rd_kafka_topic_partition_list_destroy(subs);
    if (k->consumer) {
        rd_kafka_queue_destroy(k->consumer_q);
        rd_kafka_destroy(k->consumer);
        k->consumer = NULL;
    }
    kafka_limits_free(k->limits); /* its refresh queue lives on the producer */
    if (k->producer) {
        rd_kafka_queue_destroy(k->producer_q);
        rd_kafka_destroy(k->producer);
        k->producer = NULL;
    }
    if (k->efd >= 0) close(k->efd);
    rd_kafka_topic_partition_list_destroy(k->paused);
    free(k);
    return NULL;
}

void kafka_io_close(kafka_io_t *k) {
    if (!k) return;
    if (k->consumer) {
        rd_kafka_resp_err_t e = rd_kafka_consumer_close(k->consumer);
        if (e) LOG_WARN("consumer close failed", "error=%s", rd_kafka_err2name(e));
        rd_kafka_queue_io_event_enable(k->consumer_q, -1, NULL, 0);
        rd_kafka_queue_destroy(k->consumer_q);
        rd_kafka_destroy(k->consumer);
    }
    kafka_limits_free(k->limits); /* its refresh queue lives on the producer */
    if (k->producer) {
        int left = rd_kafka_outq_len(k->producer);
        if (left > 0) LOG_WARN("closing the producer with records not acknowledged", "outq=%d", left);
        rd_kafka_queue_io_event_enable(k->producer_q, -1, NULL, 0);
        rd_kafka_queue_destroy(k->producer_q);
        rd_kafka_destroy(k->producer);
    }
    close(k->efd);
    rd_kafka_topic_partition_list_destroy(k->paused);
    free(k);
}

/* ---------------------------------------------------------------- wake-ups */

int kafka_io_wake_fd(const kafka_io_t *k) { return k->efd; }

void kafka_io_wake(kafka_io_t *k) {
    uint64_t one = 1;
    ssize_t n = write(k->efd, &one, sizeof one);
    (void)n; /* EAGAIN: the counter is already non-zero, which is all we need */
}

void kafka_io_wait(kafka_io_t *k, int timeout_ms) {
    struct pollfd p = {.fd = k->efd, .events = POLLIN};
    if (timeout_ms > 0) {
        int r = poll(&p, 1, timeout_ms);
        if (r <= 0) return;
    }
    uint64_t v;
    ssize_t n = read(k->efd, &v, sizeof v);
    (void)n;
}

/* ---------------------------------------------------------------- consume / produce */

rd_kafka_message_t *kafka_io_consume(kafka_io_t *k, int timeout_ms) {
    if (!k->consumer) return NULL;
    for (int tries = 0; tries < 64; tries++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(k->consumer, tries ? 0 : timeout_ms);
        if (!m) return NULL;
        if (!m->err) {
            kafka_broker_answered(k);
            return m;
        }
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            LOG_WARN("consumer error", "error=%s topic=%s partition=%d reason=\"%s\"", rd_kafka_err2name(m->err),
                     m->rkt ? rd_kafka_topic_name(m->rkt) : "-", (int)m->partition, rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

int kafka_io_serve(kafka_io_t *k) {
    kafka_limits_poll(k->limits);
    double now = clock_now_ms();
    if (now >= k->limits_due) { /* a topic's limit may have changed: sizes follow (batch.size does not) */
        kafka_limits_refresh(k->limits, k->producer);
        k->limits_due = now + KAFKA_LIMITS_REFRESH_MS;
    }
    return rd_kafka_poll(k->producer, 0);
}

int kafka_io_produce(kafka_io_t *k, const char *topic, const void *key, size_t keylen, const void *value,
                     size_t len, rd_kafka_headers_t *hdrs, void *opaque, int queue_wait_ms, char *err,
                     size_t errlen) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            k->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_HEADERS(hdrs),
            RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
        if (!e) return 0; /* hdrs now owned by librdkafka */
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            struct timespec t;
            clock_gettime(CLOCK_MONOTONIC, &t);
            long ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
            if (ms < queue_wait_ms) {
                rd_kafka_poll(k->producer, 10);
                continue;
            }
        }
        err_set(err, errlen, "produce to %s failed: %s", topic, rd_kafka_err2str(e));
        return (int)e;
    }
}

int kafka_io_outq_len(kafka_io_t *k) { return rd_kafka_outq_len(k->producer); }

int kafka_io_flush(kafka_io_t *k, int timeout_ms) {
    rd_kafka_flush(k->producer, timeout_ms);
    return rd_kafka_outq_len(k->producer);
}

/* ---------------------------------------------------------------- offsets */

int kafka_io_store_offset(kafka_io_t *k, const char *topic, int32_t partition, int64_t next) {
    if (!k->consumer) return -1;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = next;
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(k->consumer, l);
    int rc = 0;
    if (e || l->elems[0].err) {
        /* __STATE: the partition is no longer assigned; its new owner replays it. */
        LOG_DEBUG("offset not stored", "topic=%s partition=%d offset=%lld error=%s", topic, (int)partition,
                  (long long)next, rd_kafka_err2name(e ? e : l->elems[0].err));
        rc = -1;
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

int kafka_io_commit(kafka_io_t *k) {
    if (!k->consumer) return 0;
    rd_kafka_resp_err_t e = rd_kafka_commit(k->consumer, NULL, 0);
    return e == RD_KAFKA_RESP_ERR__NO_OFFSET ? 0 : (int)e;
}

/* ---------------------------------------------------------------- pause / resume */

void kafka_io_pause_all(kafka_io_t *k) {
    k->want_paused = true;
    if (!k->consumer) return;
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(k->consumer, &a) || !a) return;
    rd_kafka_topic_partition_list_t *now = rd_kafka_topic_partition_list_new(a->cnt > 0 ? a->cnt : 1);
    for (int i = 0; i < a->cnt; i++)
        if (!tp_list_has(k->paused, a->elems[i].topic, a->elems[i].partition)) {
            rd_kafka_topic_partition_list_add(now, a->elems[i].topic, a->elems[i].partition);
            rd_kafka_topic_partition_list_add(k->paused, a->elems[i].topic, a->elems[i].partition);
        }
    if (now->cnt) rd_kafka_pause_partitions(k->consumer, now);
    rd_kafka_topic_partition_list_destroy(now);
    rd_kafka_topic_partition_list_destroy(a);
}

void kafka_io_resume_all(kafka_io_t *k) {
    if (k->stopped) return;
    k->want_paused = false;
    if (!k->consumer || k->paused->cnt == 0) return;
    rd_kafka_resume_partitions(k->consumer, k->paused);
    /* librdkafka's fetcher may sleep up to 1 s before it notices a resume (nothing
     * wakes its broker thread); a seek to the current position does wake it, and
     * loses nothing: pausing already dropped what was prefetched after it. */
    rd_kafka_topic_partition_list_t *pos = rd_kafka_topic_partition_list_copy(k->paused);
    if (rd_kafka_position(k->consumer, pos) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_topic_partition_list_t *seek = rd_kafka_topic_partition_list_new(pos->cnt);
        for (int i = 0; i < pos->cnt; i++)
            if (pos->elems[i].offset >= 0 && !pos->elems[i].err)
                rd_kafka_topic_partition_list_add(seek, pos->elems[i].topic, pos->elems[i].partition)->offset =
                    pos->elems[i].offset;
        if (seek->cnt) {
            rd_kafka_error_t *e = rd_kafka_seek_partitions(k->consumer, seek, 0);
            if (e) rd_kafka_error_destroy(e);
        }
        rd_kafka_topic_partition_list_destroy(seek);
    }
    rd_kafka_topic_partition_list_destroy(pos);
    rd_kafka_topic_partition_list_destroy(k->paused);
    k->paused = rd_kafka_topic_partition_list_new(16);
}

bool kafka_io_paused(const kafka_io_t *k) { return k->want_paused; }

void kafka_io_stop_fetching(kafka_io_t *k) {
    kafka_io_pause_all(k);
    k->stopped = true;
}

int kafka_io_assigned_count(const kafka_io_t *k) {
    if (!k->consumer) return 0;
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(k->consumer, &a) || !a) return 0;
    int n = a->cnt;
    rd_kafka_topic_partition_list_destroy(a);
    return n;
}

const char *kafka_io_fatal(const kafka_io_t *k) { return atomic_load(&k->has_fatal) ? k->fatal : NULL; }

bool kafka_io_brokers_down(const kafka_io_t *k) { return atomic_load(&k->brokers_down); }

rd_kafka_headers_t *kafka_headers_copy(const rd_kafka_message_t *m) {
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR || !h) return NULL;
    return rd_kafka_headers_copy(h);
}

rd_kafka_headers_t *kafka_headers_new(const rd_kafka_headers_t *tmpl) {
    return tmpl ? rd_kafka_headers_copy(tmpl) : rd_kafka_headers_new(1);
}

void kafka_headers_add(rd_kafka_headers_t *h, const char *name, const char *value) {
    rd_kafka_header_add(h, name, -1, value, -1);
}

void kafka_headers_free(rd_kafka_headers_t *h) {
    if (h) rd_kafka_headers_destroy(h);
}

const char *kafka_msg_topic(const rd_kafka_message_t *m) { return rd_kafka_topic_name(m->rkt); }

void kafka_msg_free(rd_kafka_message_t *m) {
    if (m) rd_kafka_message_destroy(m);
}

void kafka_io_seek_back(kafka_io_t *k, const rd_kafka_message_t *m) {
    (void)k; /* the legacy seek works on the message's topic handle */
    rd_kafka_seek(m->rkt, m->partition, m->offset, 0);
}

const char *kafka_err_name(int err) { return rd_kafka_err2name((rd_kafka_resp_err_t)err); }

void kafka_conf_set_logger(rd_kafka_conf_t *conf) { rd_kafka_conf_set_log_cb(conf, kafka_log_cb); }

int kafka_create_topics(const char *brokers, const char *const *props, size_t n_props, const char *const *topics,
                        size_t n_topics, int n_partitions, int replication, int timeout_ms, char *err, size_t errlen) {
    char es[512];
    int rc = -1;
    rd_kafka_t *rk = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_NewTopic_t **nts = calloc(n_topics ? n_topics : 1, sizeof *nts);
    rd_kafka_AdminOptions_t *opts = NULL;
    rd_kafka_event_t *ev = NULL;
    kafka_io_config_t cfg = {.brokers = brokers, .properties = props, .n_properties = n_props};
    kafka_io_t dummy;
    memset(&dummy, 0, sizeof dummy);
    rd_kafka_conf_t *conf = conf_common(&dummy, &cfg, err, errlen);
    if (!nts || !conf) goto fail;
    if (conf_apply_props(conf, &cfg, false, err, errlen)) goto fail;
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, es, sizeof es);
    if (!rk) {
        err_set(err, errlen, "cannot create a Kafka client: %s", es);
        goto fail;
    }
    conf = NULL; /* now owned by rk */
    for (size_t i = 0; i < n_topics; i++) {
        nts[i] = rd_kafka_NewTopic_new(topics[i], n_partitions, replication, es, sizeof es);
        if (!nts[i]) {
            err_set(err, errlen, "topic %s: %s", topics[i], es);
            goto fail;
        }
    }
    q = rd_kafka_queue_new(rk);
    opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, es, sizeof es);
    rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, es, sizeof es);
    rd_kafka_CreateTopics(rk, nts, n_topics, opts, q);
    ev = rd_kafka_queue_poll(q, timeout_ms + 2000);
    if (!ev) {
        err_set(err, errlen, "no answer from %s within %d ms; is the broker running?", brokers, timeout_ms + 2000);
        goto fail;
    }
    if (rd_kafka_event_error(ev)) {
        err_set(err, errlen, "create topics: %s", rd_kafka_event_error_string(ev));
        goto fail;
    }
    const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
    size_t n = 0;
    const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &n);
    for (size_t i = 0; i < n; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
        if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            err_set(err, errlen, "topic %s: %s", rd_kafka_topic_result_name(tr[i]),
                     rd_kafka_topic_result_error_string(tr[i]) ? rd_kafka_topic_result_error_string(tr[i])
                                                               : rd_kafka_err2str(e));
            goto fail;
        }
    }
    rc = 0;
fail:
    if (ev) rd_kafka_event_destroy(ev);
    if (opts) rd_kafka_AdminOptions_destroy(opts);
    if (q) rd_kafka_queue_destroy(q);
    for (size_t i = 0; nts && i < n_topics; i++)
        if (nts[i]) rd_kafka_NewTopic_destroy(nts[i]);
    free(nts);
    if (conf) rd_kafka_conf_destroy(conf);
    if (rk) rd_kafka_destroy(rk);
    return rc;
}

/* ---------------------------------------------------------------- config checks */

/* [A-Za-z0-9._-]: the characters of topic names and of librdkafka property names. */
static bool kafka_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
}

static bool kafka_topic_ok(const char *t, size_t n) {
    if (n == 0 || n > 249) return false;
    if ((n == 1 && t[0] == '.') || (n == 2 && t[0] == '.' && t[1] == '.')) return false;
    for (size_t i = 0; i < n; i++)
        if (!kafka_name_char(t[i])) return false;
    return true;
}

/* librdkafka property names krill sets itself from other keys */
static const char *const KAFKA_MANAGED[][2] = {
    {"bootstrap.servers", "kafka.brokers"},
    {"metadata.broker.list", "kafka.brokers"},
    {"group.id", "kafka.group"},
    {"client.id", "kafka.client_id"},
    {"enable.auto.offset.store", "nothing: krill stores offsets only after results are acknowledged"},
};

/* Checks one "key=value" entry without ever printing the value. */
static int kafka_property_check(const char *e, size_t idx, char *err, size_t errlen) {
    const char *eq = strchr(e, '=');
    if (!eq) {
        err_set(err, errlen, "entry %zu has no '=': write \"key=value\"", idx);
        return -1;
    }
    const char *k = e;
    size_t kl = (size_t)(eq - e);
    if (kl > 9 && (strncmp(k, "consumer.", 9) == 0 || strncmp(k, "producer.", 9) == 0)) k += 9, kl -= 9;
    if (kl == 0) {
        err_set(err, errlen, "entry %zu has an empty key: write \"key=value\"", idx);
        return -1;
    }
    for (size_t i = 0; i < kl; i++)
        if (!kafka_name_char(k[i])) {
            err_set(err, errlen, "entry %zu: the key has characters other than [A-Za-z0-9._-]", idx);
            return -1;
        }
    for (size_t i = 0; i < sizeof KAFKA_MANAGED / sizeof *KAFKA_MANAGED; i++)
        if (strlen(KAFKA_MANAGED[i][0]) == kl && strncmp(KAFKA_MANAGED[i][0], k, kl) == 0) {
            err_set(err, errlen, "entry %zu sets %s; set %s instead", idx, KAFKA_MANAGED[i][0], KAFKA_MANAGED[i][1]);
            return -1;
        }
    return 0;
}

int kafka_config_check(kafka_check_t what, const char *value, size_t idx, char *err, size_t errlen) {
    switch (what) {
    case KAFKA_CHECK_TOPIC:
        if (kafka_topic_ok(value, strlen(value))) return 0;
        err_set(err, errlen, "\"%s\" is not a Kafka topic name (1..249 of [A-Za-z0-9._-])", value);
        return -1;
    case KAFKA_CHECK_TOPIC_LIST:
        for (const char *p = value;;) {
            const char *c = strchr(p, ',');
            if (!kafka_topic_ok(p, c ? (size_t)(c - p) : strlen(p))) {
                err_set(err, errlen, "\"%s\" is not a comma-separated list of Kafka topic names", value);
                return -1;
            }
            if (!c) return 0;
            p = c + 1;
        }
    case KAFKA_CHECK_PROPERTY: return kafka_property_check(value, idx, err, errlen);
    }
    err_set(err, errlen, "unknown Kafka check %d", (int)what);
    return -1;
}
