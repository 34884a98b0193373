/* krill-results — prints a Kafka topic's records as JSON lines on stdout.
 *
 * JSON values are printed as they are, msgpack values converted to JSON (codec).
 * --envelope wraps each record with its coordinates and headers, which is how the
 * tests read the DLQ (whose values are deliberately not JSON) and the krill-source
 * header. Without a group it assigns every partition (from the end, or from the
 * beginning with --from-beginning) and commits nothing; with -g it joins the group.
 * It stops after -n records, after --idle-timeout seconds without a record, or on
 * SIGINT/SIGTERM. Progress and the final count go to stderr. */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "codec.h"
#include "log.h"

#include <librdkafka/rdkafka.h>

static volatile sig_atomic_t g_stop;
static void on_signal(int s) {
    (void)s;
    g_stop = 1;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: krill-results -b BROKERS -t TOPIC [options]\n"
            "\n"
            "Prints the records of TOPIC as JSON lines (msgpack values are converted).\n"
            "  -b, --brokers LIST     bootstrap servers\n"
            "  -t, --topic TOPIC      topic to read\n"
            "  -n N                   stop after N records\n"
            "  --idle-timeout S       stop after S seconds (decimal) without a record\n"
            "  --from-beginning       start at the oldest record (default: only new ones)\n"
            "  -g, --group GROUP      join GROUP and commit (default: no group)\n"
            "  --envelope             one object per record: {topic, partition, offset, timestamp\n"
            "                         (ms), key, headers, value} (value: JSON, else a string,\n"
            "                         else value_hex)\n"
            "  -X KEY=VALUE           librdkafka property (repeatable)\n"
            "  -q, --quiet            no progress line\n"
            "  -h, --help, --version\n");
}

static json_t *bytes_json(const void *p, size_t n, bool *is_hex) {
    json_t *s = json_stringn((const char *)p, n); /* NULL when not UTF-8 */
    *is_hex = false;
    if (s) return s;
    char *hex = malloc(n * 2 + 1);
    if (!hex) return json_null();
    for (size_t i = 0; i < n; i++) sprintf(hex + 2 * i, "%02x", ((const unsigned char *)p)[i]);
    hex[2 * n] = 0;
    s = json_string(hex);
    free(hex);
    *is_hex = true;
    return s;
}

/* The value as JSON text: JSON as is, msgpack converted; NULL when neither. */
static const char *value_json(const rd_kafka_message_t *m, buf_t *buf, size_t *len) {
    int fmt = codec_detect(m->payload, m->len);
    char err[256];
    if (fmt == 1 && codec_msgpack_to_json(m->payload, m->len, buf, err, sizeof err) == 0) {
        *len = buf->len;
        return buf->data;
    }
    if (fmt == 0) {
        json_error_t je;
        json_t *v = json_loadb(m->payload, m->len, JSON_DECODE_ANY, &je);
        if (v) {
            json_decref(v);
            *len = m->len;
            return m->payload;
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    const char *brokers = NULL, *topic = NULL, *group = NULL;
    long max_n = -1;
    double idle = -1;
    bool from_beginning = false, envelope = false, quiet = false;
    char es[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool more = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--version")) {
            printf("krill-results %s\n", KRILL_VERSION);
            return 0;
        } else if ((!strcmp(a, "-b") || !strcmp(a, "--brokers")) && more) {
            brokers = argv[++i];
        } else if ((!strcmp(a, "-t") || !strcmp(a, "--topic")) && more) {
            topic = argv[++i];
        } else if (!strcmp(a, "-n") && more) {
            max_n = atol(argv[++i]);
        } else if (!strcmp(a, "--idle-timeout") && more) {
            idle = atof(argv[++i]);
        } else if (!strcmp(a, "--from-beginning")) {
            from_beginning = true;
        } else if ((!strcmp(a, "-g") || !strcmp(a, "--group")) && more) {
            group = argv[++i];
        } else if (!strcmp(a, "--envelope")) {
            envelope = true;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = true;
        } else if (!strcmp(a, "-X") && more) {
            const char *kv = argv[++i], *eq = strchr(kv, '=');
            if (!eq) {
                fprintf(stderr, "krill-results: -X takes KEY=VALUE\n");
                return 2;
            }
            char key[256];
            snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
            if (rd_kafka_conf_set(conf, key, eq + 1, es, sizeof es) != RD_KAFKA_CONF_OK) {
                fprintf(stderr, "krill-results: property %s rejected by librdkafka\n", key);
                return 2;
            }
        } else {
            fprintf(stderr, "krill-results: unknown or incomplete argument '%s' (try --help)\n", a);
            return 2;
        }
    }
    if (!brokers || !topic) {
        fprintf(stderr, "krill-results: -b BROKERS and -t TOPIC are required (try --help)\n");
        return 2;
    }
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, es, sizeof es) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "group.id", group ? group : "krill-results", es, sizeof es) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.commit", group ? "true" : "false", es, sizeof es) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "auto.offset.reset", from_beginning ? "earliest" : "latest", es, sizeof es) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.partition.eof", "false", es, sizeof es) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "krill-results: %s\n", es);
        return 2;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, es, sizeof es);
    if (!rk) {
        fprintf(stderr, "krill-results: %s\n", es);
        return 1;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *tl;
    if (group) {
        tl = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(tl, topic, RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, tl);
        rd_kafka_topic_partition_list_destroy(tl);
        if (e) {
            fprintf(stderr, "krill-results: subscribe: %s\n", rd_kafka_err2str(e));
            return 1;
        }
    } else {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        const rd_kafka_metadata_t *md = NULL;
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
        if (e || md->topic_cnt < 1 || md->topics[0].err) {
            fprintf(stderr, "krill-results: no metadata for topic %s: %s\n", topic,
                    rd_kafka_err2str(e ? e : md->topic_cnt ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
            if (md) rd_kafka_metadata_destroy(md);
            rd_kafka_topic_destroy(rkt);
            rd_kafka_destroy(rk);
            return 1;
        }
        tl = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
        for (int p = 0; p < md->topics[0].partition_cnt; p++)
            rd_kafka_topic_partition_list_add(tl, topic, md->topics[0].partitions[p].id)->offset =
                from_beginning ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
        rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        e = rd_kafka_assign(rk, tl);
        rd_kafka_topic_partition_list_destroy(tl);
        if (e) {
            fprintf(stderr, "krill-results: assign: %s\n", rd_kafka_err2str(e));
            return 1;
        }
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    bool tty = !quiet && isatty(2);
    long n = 0, bad = 0;
    double last_msg = clock_now_s(), last_prog = 0;
    buf_t buf = {0};
    while (!g_stop && (max_n < 0 || n < max_n)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            fflush(stdout); /* nothing new: let a reader of the file see everything so far */
            if (idle >= 0 && clock_now_s() - last_msg >= idle) break;
            continue;
        }
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "krill-results: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        last_msg = clock_now_s();
        size_t jlen = 0;
        const char *js = value_json(m, &buf, &jlen);
        if (envelope) {
            json_t *o = json_object();
            bool hex;
            json_object_set_new(o, "topic", json_string(rd_kafka_topic_name(m->rkt)));
            json_object_set_new(o, "partition", json_integer(m->partition));
            json_object_set_new(o, "offset", json_integer(m->offset));
            rd_kafka_timestamp_type_t tst;
            int64_t ts = rd_kafka_message_timestamp(m, &tst);
            json_object_set_new(o, "timestamp", ts >= 0 ? json_integer(ts) : json_null());
            json_object_set_new(o, "key", m->key ? bytes_json(m->key, m->key_len, &hex) : json_null());
            json_t *h = json_object();
            rd_kafka_headers_t *hdrs = NULL;
            if (rd_kafka_message_headers(m, &hdrs) == 0 && hdrs) {
                const char *name;
                const void *val;
                size_t vs;
                for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &vs) == 0; i++)
                    json_object_set_new(h, name, val ? bytes_json(val, vs, &hex) : json_null());
            }
            json_object_set_new(o, "headers", h);
            json_error_t je;
            json_t *v = js ? json_loadb(js, jlen, JSON_DECODE_ANY, &je) : NULL;
            if (v) {
                json_object_set_new(o, "value", v);
            } else {
                json_t *s = bytes_json(m->payload, m->len, &hex);
                json_object_set_new(o, hex ? "value_hex" : "value", s);
            }
            char *txt = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
            if (txt) puts(txt);
            free(txt);
            json_decref(o);
        } else if (js) {
            fwrite(js, 1, jlen, stdout);
            fputc('\n', stdout);
        } else {
            bad++;
            fprintf(stderr, "krill-results: record %s:%d:%lld is neither JSON nor msgpack (use --envelope)\n",
                    rd_kafka_topic_name(m->rkt), (int)m->partition, (long long)m->offset);
        }
        n++;
        rd_kafka_message_destroy(m);
        if (tty && clock_now_s() - last_prog > 0.25) {
            last_prog = clock_now_s();
            fprintf(stderr, "\rkrill-results: %ld records ", n);
        }
    }
    fflush(stdout);
    if (tty) fprintf(stderr, "\n");
    fprintf(stderr, "krill-results: %ld records from %s%s\n", n, topic, bad ? " (some not JSON/msgpack)" : "");
    buf_free(&buf);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return 0;
}
