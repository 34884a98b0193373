/* krill-results — prints a Kafka topic's records as JSON lines on stdout.
 *
 * JSON values are printed as they are, msgpack values converted to JSON (codec).
 * --envelope wraps each record with its coordinates and headers, which is how the
 * tests read the DLQ (whose values are deliberately not JSON) and the krill-source
 * header. Without a group it assigns every partition (from the end, or from the
 * beginning with --from-beginning) and commits nothing; with -g it joins the group.
 * It stops after -n records, after --idle-timeout seconds without a record, or on
 * SIGINT/SIGTERM. Progress and the final count go to stderr, and so do librdkafka's
 * own lines, through krill's logger (log.h), as krill-worker's. */
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "codec.h"
#include "kafka.h"

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
            "                         (ms), received (ms, when this reader got it), key,\n"
            "                         headers, value} (value: JSON, else a string, else value_hex)\n"
            "  -X KEY=VALUE           librdkafka property (repeatable)\n"
            "  -q, --quiet            no progress line\n"
            "  -h, --help             this text\n"
            "      --version          print the version\n"
            "Exit status: 0 done, 1 Kafka error, 2 usage.\n");
}

typedef struct {
    const char *brokers, *topic, *group;
    cli_list_t props; /* -X KEY=VALUE */
    long max_n;  /* -1: no limit */
    double idle; /* -1: no idle timeout */
    bool from_beginning, envelope, quiet;
} args_t;

static void argparse(int argc, char **argv, args_t *a) {
    enum { O_IDLE = 256, O_FROM, O_ENVELOPE };
    static const struct option lopts[] = {
        {"brokers", required_argument, NULL, 'b'},      {"topic", required_argument, NULL, 't'},
        {"idle-timeout", required_argument, NULL, O_IDLE}, {"from-beginning", no_argument, NULL, O_FROM},
        {"group", required_argument, NULL, 'g'},        {"envelope", no_argument, NULL, O_ENVELOPE},
        {"quiet", no_argument, NULL, 'q'},              CLI_OPTIONS_END};
    char key[256];
    *a = (args_t){.max_n = -1, .idle = -1};
    int c;
    while ((c = getopt_long(argc, argv, "b:t:n:g:X:qh", lopts, NULL)) != -1) {
        switch (c) {
        case 'b': a->brokers = optarg; break;
        case 't': a->topic = optarg; break;
        case 'n': a->max_n = cli_long("-n", optarg, 0, LONG_MAX); break;
        case O_IDLE: a->idle = cli_double("--idle-timeout", optarg, 0, 1e9); break;
        case O_FROM: a->from_beginning = true; break;
        case 'g': a->group = optarg; break;
        case O_ENVELOPE: a->envelope = true; break;
        case 'X':
            cli_kv("-X", optarg, key, sizeof key);
            cli_list_add(&a->props, argc, optarg);
            break;
        case 'q': a->quiet = true; break;
        default: cli_default(c, usage);
        }
    }
    cli_no_operands(argc, argv);
    if (!a->brokers || !a->topic) cli_usage_error("-b BROKERS and -t TOPIC are required");
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

/* The consumer configuration: -X properties first, then what krill-results decides.
 * A property librdkafka rejects is a usage error (exit 2). */
static rd_kafka_conf_t *results_conf(const args_t *a) {
    char es[512], key[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    kafka_conf_set_logger(conf);
    for (size_t i = 0; i < a->props.n; i++) {
        const char *val = cli_kv("-X", a->props.items[i], key, sizeof key);
        if (rd_kafka_conf_set(conf, key, val, es, sizeof es) != RD_KAFKA_CONF_OK)
            cli_usage_error("property %s rejected by librdkafka", key);
    }
    if (rd_kafka_conf_set(conf, "bootstrap.servers", a->brokers, es, sizeof es) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "group.id", a->group ? a->group : "krill-results", es, sizeof es) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.commit", a->group ? "true" : "false", es, sizeof es) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "auto.offset.reset", a->from_beginning ? "earliest" : "latest", es, sizeof es) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.partition.eof", "false", es, sizeof es) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "krill-results: %s\n", es);
        exit(2);
    }
    return conf;
}

/* The consumer, subscribed to the topic (-g) or assigned all of its partitions; NULL
 * after printing why. Takes conf. */
static rd_kafka_t *results_open(const args_t *a, rd_kafka_conf_t *conf) {
    char es[512];
    const char *topic = a->topic;
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, es, sizeof es);
    if (!rk) {
        fprintf(stderr, "krill-results: %s\n", es);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *tl;
    if (a->group) {
        tl = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(tl, topic, RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, tl);
        rd_kafka_topic_partition_list_destroy(tl);
        if (e) {
            fprintf(stderr, "krill-results: subscribe: %s\n", rd_kafka_err2str(e));
            return NULL;
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
            return NULL;
        }
        tl = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
        for (int p = 0; p < md->topics[0].partition_cnt; p++)
            rd_kafka_topic_partition_list_add(tl, topic, md->topics[0].partitions[p].id)->offset =
                a->from_beginning ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
        rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        e = rd_kafka_assign(rk, tl);
        rd_kafka_topic_partition_list_destroy(tl);
        if (e) {
            fprintf(stderr, "krill-results: assign: %s\n", rd_kafka_err2str(e));
            return NULL;
        }
    }
    return rk;
}

/* --envelope: one object with the record's coordinates, headers and value. */
static void print_envelope(const rd_kafka_message_t *m, const char *js, size_t jlen) {
    json_t *o = json_object();
    bool hex;
    json_object_set_new(o, "topic", json_string(rd_kafka_topic_name(m->rkt)));
    json_object_set_new(o, "partition", json_integer(m->partition));
    json_object_set_new(o, "offset", json_integer(m->offset));
    rd_kafka_timestamp_type_t tst;
    int64_t ts = rd_kafka_message_timestamp(m, &tst);
    json_object_set_new(o, "timestamp", ts >= 0 ? json_integer(ts) : json_null());
    struct timespec now; /* wall clock, as the record's timestamp: latency = received - timestamp */
    clock_gettime(CLOCK_REALTIME, &now);
    json_object_set_new(o, "received", json_integer((json_int_t)now.tv_sec * 1000 + now.tv_nsec / 1000000));
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
}

/* Prints records until -n, the idle timeout or a signal; returns how many, *bad those
 * that were neither JSON nor msgpack (without --envelope). */
static long results_consume(rd_kafka_t *rk, const args_t *a, long *bad) {
    bool tty = !a->quiet && isatty(2);
    long n = 0;
    double last_msg = clock_now_s(), last_prog = 0;
    buf_t buf = {0};
    *bad = 0;
    while (!g_stop && (a->max_n < 0 || n < a->max_n)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            fflush(stdout); /* nothing new: let a reader of the file see everything so far */
            if (a->idle >= 0 && clock_now_s() - last_msg >= a->idle) break;
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
        if (a->envelope) {
            print_envelope(m, js, jlen);
        } else if (js) {
            fwrite(js, 1, jlen, stdout);
            fputc('\n', stdout);
        } else {
            (*bad)++;
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
    buf_free(&buf);
    return n;
}

int main(int argc, char **argv) {
    args_t a;
    cli_init("krill-results");
    argparse(argc, argv, &a);
    rd_kafka_t *rk = results_open(&a, results_conf(&a));
    if (!rk) return 1;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    long bad, n = results_consume(rk, &a, &bad);
    fprintf(stderr, "krill-results: %ld records from %s%s\n", n, a.topic, bad ? " (some not JSON/msgpack)" : "");
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    cli_list_free(&a.props);
    return 0;
}
