/* kafka_record.c — see kafka.h: what a record costs against a topic's max.message.bytes,
 * which produce errors are final, and the bounded copy of a request's headers into its
 * answers. Pure helpers over librdkafka's header API: no handles, no state. */
#include "kafka.h"

#include <string.h>
#include <strings.h>
#include <sys/types.h>

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
