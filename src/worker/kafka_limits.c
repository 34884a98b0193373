/* kafka_limits.c — what a record may cost: the topics' max.message.bytes (see
 * kafka_limits.h: DescribeConfigs at start-up and every refresh), a record's size as the
 * broker counts it, which produce errors are final, and the bounded copy of a request's
 * headers into its answers (kafka.h). */
#include "kafka_limits.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "kafka.h"
#include "log.h"

/* A topic produced to and the largest record batch it accepts. */
typedef struct {
    char *topic;
    size_t max_bytes;
} kafka_limit_t;

struct kafka_limits {
    kafka_limit_t *t; /* (n) */
    size_t n;
    rd_kafka_queue_t *q; /* a refresh in flight answers here; NULL when none */
};

kafka_limits_t *kafka_limits_new(const char *const *topics, size_t n) {
    kafka_limits_t *l = calloc(1, sizeof *l);
    if (!l || !(l->t = calloc(n ? n : 1, sizeof *l->t))) goto oom;
    for (size_t i = 0; i < n; i++) {
        if (!topics[i] || !*topics[i]) continue;
        bool dup = false;
        for (size_t j = 0; j < l->n; j++) dup |= strcmp(l->t[j].topic, topics[i]) == 0;
        if (dup) continue;
        if (!(l->t[l->n].topic = strdup(topics[i]))) goto oom;
        l->t[l->n++].max_bytes = KAFKA_DEFAULT_TOPIC_MAX_BYTES;
    }
    return l;
oom:
    kafka_limits_free(l);
    return NULL;
}

void kafka_limits_free(kafka_limits_t *l) {
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) free(l->t[i].topic);
    if (l->q) rd_kafka_queue_destroy(l->q);
    free(l->t);
    free(l);
}

static kafka_limit_t *kafka_limits_find(const kafka_limits_t *l, const char *topic) {
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->t[i].topic, topic) == 0) return &l->t[i];
    return NULL;
}

size_t kafka_limits_get(const kafka_limits_t *l, const char *topic) {
    const kafka_limit_t *t = kafka_limits_find(l, topic);
    return t ? t->max_bytes : KAFKA_DEFAULT_TOPIC_MAX_BYTES;
}

bool kafka_limits_range(const kafka_limits_t *l, size_t *lo, size_t *hi) {
    *lo = SIZE_MAX;
    *hi = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (l->t[i].max_bytes < *lo) *lo = l->t[i].max_bytes;
        if (l->t[i].max_bytes > *hi) *hi = l->t[i].max_bytes;
    }
    return l->n > 0;
}

/* Takes max.message.bytes of each topic described in ev. */
static void kafka_limits_take(kafka_limits_t *l, rd_kafka_event_t *ev) {
    if (rd_kafka_event_error(ev)) {
        LOG_WARN("cannot read the topics' max.message.bytes; keeping the limits known", "error=\"%s\"",
                 rd_kafka_event_error_string(ev));
        return;
    }
    const rd_kafka_DescribeConfigs_result_t *res = rd_kafka_event_DescribeConfigs_result(ev);
    size_t n = 0;
    const rd_kafka_ConfigResource_t **rs = res ? rd_kafka_DescribeConfigs_result_resources(res, &n) : NULL;
    for (size_t i = 0; i < n; i++) {
        kafka_limit_t *t = kafka_limits_find(l, rd_kafka_ConfigResource_name(rs[i]));
        if (!t) continue;
        if (rd_kafka_ConfigResource_error(rs[i])) {
            LOG_WARN("cannot read the topic's max.message.bytes; keeping the limit known", "topic=%s error=%s bytes=%zu",
                     t->topic, rd_kafka_err2name(rd_kafka_ConfigResource_error(rs[i])), t->max_bytes);
            continue;
        }
        size_t ne = 0;
        const rd_kafka_ConfigEntry_t **es = rd_kafka_ConfigResource_configs(rs[i], &ne);
        for (size_t j = 0; j < ne; j++) {
            const char *v = rd_kafka_ConfigEntry_value(es[j]);
            if (strcmp(rd_kafka_ConfigEntry_name(es[j]), "max.message.bytes") != 0 || !v) continue;
            char *end;
            errno = 0;
            long long b = strtoll(v, &end, 10);
            if (errno || end == v || *end || b < 1) {
                LOG_WARN("the topic's max.message.bytes is not a positive number; keeping the limit known",
                         "topic=%s", t->topic);
                break;
            }
            if ((size_t)b != t->max_bytes)
                LOG_INFO("topic record limit", "topic=%s max_message_bytes=%lld", t->topic, b);
            t->max_bytes = (size_t)b;
        }
    }
}

/* Sends a DescribeConfigs for every topic, answered on q. */
static void kafka_limits_describe(const kafka_limits_t *l, rd_kafka_t *rk, rd_kafka_queue_t *q, int timeout_ms) {
    char es[256];
    rd_kafka_ConfigResource_t **res = calloc(l->n ? l->n : 1, sizeof *res);
    if (!res) return;
    for (size_t i = 0; i < l->n; i++) res[i] = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, l->t[i].topic);
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
    rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, es, sizeof es);
    rd_kafka_DescribeConfigs(rk, res, l->n, opts, q);
    rd_kafka_AdminOptions_destroy(opts);
    for (size_t i = 0; i < l->n; i++) rd_kafka_ConfigResource_destroy(res[i]);
    free(res);
}

void kafka_limits_read(kafka_limits_t *l, rd_kafka_t *rk, int timeout_ms) {
    if (l->n == 0) return;
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    kafka_limits_describe(l, rk, q, timeout_ms);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
    if (ev)
        kafka_limits_take(l, ev);
    else
        LOG_WARN("no answer reading the topics' max.message.bytes; assuming the broker default", "bytes=%d",
                 KAFKA_DEFAULT_TOPIC_MAX_BYTES);
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
}

void kafka_limits_refresh(kafka_limits_t *l, rd_kafka_t *rk) {
    if (!l || l->n == 0 || l->q) return;
    l->q = rd_kafka_queue_new(rk);
    kafka_limits_describe(l, rk, l->q, 10000);
}

void kafka_limits_poll(kafka_limits_t *l) {
    if (!l || !l->q) return;
    rd_kafka_event_t *ev = rd_kafka_queue_poll(l->q, 0);
    if (!ev) return;
    kafka_limits_take(l, ev);
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(l->q);
    l->q = NULL;
}

#define KAFKA_BATCH_HEADER_BYTES 61    /* a v2 record batch's header (offset and length included) */
#define KAFKA_RECORD_FRAMING_BYTES 36  /* a record's length, attributes, deltas, key/value lengths and
                                          header count, each varint at its widest */
#define KAFKA_HEADER_FRAMING_BYTES 10  /* a header's name and value lengths (varints) */

size_t kafka_record_bytes(size_t keylen, size_t len, const rd_kafka_headers_t *hdrs) {
    size_t n = KAFKA_BATCH_HEADER_BYTES + KAFKA_RECORD_FRAMING_BYTES + keylen + len;
    const char *name;
    const void *val;
    size_t vlen;
    for (size_t i = 0; hdrs && rd_kafka_header_get_all(hdrs, i, &name, &val, &vlen) == RD_KAFKA_RESP_ERR_NO_ERROR; i++)
        n += KAFKA_HEADER_FRAMING_BYTES + strlen(name) + vlen;
    return n;
}

bool kafka_err_permanent(int err) {
    switch ((rd_kafka_resp_err_t)err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:            /* local (message.max.bytes) or the broker's */
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return true;
    default: return false;
    }
}

rd_kafka_headers_t *kafka_headers_copy_bounded(const rd_kafka_message_t *m, size_t max_count, size_t max_bytes,
                                               size_t *dropped) {
    rd_kafka_headers_t *src = NULL, *h = rd_kafka_headers_new(8);
    size_t bytes = 0, kept = 0;
    *dropped = 0;
    if (rd_kafka_message_headers(m, &src) != RD_KAFKA_RESP_ERR_NO_ERROR || !src) return h;
    const char *name;
    const void *val;
    size_t vlen;
    for (size_t i = 0; rd_kafka_header_get_all(src, i, &name, &val, &vlen) == RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
        if (strncasecmp(name, "krill-", 6) == 0) continue; /* the worker's own names */
        size_t b = strlen(name) + vlen;
        if (kept == max_count || bytes + b > max_bytes) {
            (*dropped)++;
            continue;
        }
        rd_kafka_header_add(h, name, -1, val, (ssize_t)vlen);
        bytes += b;
        kept++;
    }
    return h;
}
