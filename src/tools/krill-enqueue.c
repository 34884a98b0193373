/* krill-enqueue — sends a JSONL file of requests to a Kafka topic, one record per line.
 *
 * Lines are sent as they are (JSON), converted to msgpack (--format msgpack), or
 * alternately both (--format mixed: odd lines JSON, even lines msgpack). A line that
 * cannot be converted (malformed on purpose) is sent verbatim, so test sets of bad
 * messages go through untouched. --text wraps each line as the content of a chat
 * request. The record key is the line's custom_id when it has one (so a request always
 * lands on the same partition). The idempotent producer acknowledges every record;
 * the exit status is non-zero if any delivery failed. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "codec.h"
#include "kafka.h"
#include "log.h"

typedef struct {
    long acked, failed;
} counts_t;

static void on_delivered(void *ctx, void *opaque, rd_kafka_resp_err_t err, const rd_kafka_message_t *m) {
    (void)opaque;
    counts_t *c = ctx;
    if (err) {
        if (c->failed < 10)
            fprintf(stderr, "krill-enqueue: delivery failed (offset %lld): %s\n", (long long)m->offset,
                    rd_kafka_err2str(err));
        c->failed++;
    } else {
        c->acked++;
    }
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: krill-enqueue -b BROKERS -t TOPIC [options] FILE.jsonl|-\n"
            "\n"
            "Sends one Kafka record per non-empty line of FILE (- = stdin).\n"
            "  -b, --brokers LIST     bootstrap servers (host:port[,host:port])\n"
            "  -t, --topic TOPIC      topic to send to\n"
            "  --format F             json (lines as they are, default) | msgpack | mixed\n"
            "                         (mixed: odd lines JSON, even lines msgpack)\n"
            "  --text                 each line is a user message: wrapped as a chat request\n"
            "                         {\"custom_id\": \"<file>-<line>\", \"body\": {\"messages\": ...}}\n"
            "  --max-tokens N         with --text: body.max_tokens (default 64)\n"
            "  --create-topics        create TOPIC and krill.results, krill.dlq, krill.stats first\n"
            "  --partitions N         partitions of created topics (default 4)\n"
            "  -X KEY=VALUE           librdkafka property (repeatable)\n"
            "  -q, --quiet            no progress line\n"
            "  -h, --help, --version\n"
            "\n"
            "Exit status: 0 when every record was acknowledged, 1 if any failed, 2 usage.\n");
}

/* custom_id of a JSON line (copied into key) or 0 when it has none. */
static size_t line_custom_id(const char *line, size_t len, char *key, size_t cap) {
    json_error_t je;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    size_t n = 0;
    if (o && json_is_object(o)) {
        json_t *id = json_object_get(o, "custom_id");
        if (!json_is_string(id)) id = json_object_get(o, "id");
        if (json_is_string(id) && json_string_length(id) < cap) {
            n = json_string_length(id);
            memcpy(key, json_string_value(id), n);
        }
    }
    json_decref(o);
    return n;
}

int main(int argc, char **argv) {
    const char *brokers = NULL, *topic = NULL, *file = NULL, *format = "json";
    bool text = false, create = false, quiet = false;
    int partitions = 4, max_tokens = 64;
    const char **props = calloc((size_t)argc + 1, sizeof *props);
    size_t n_props = 0;
    if (!props) return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool more = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--version")) {
            printf("krill-enqueue %s\n", KRILL_VERSION);
            return 0;
        } else if ((!strcmp(a, "-b") || !strcmp(a, "--brokers")) && more) {
            brokers = argv[++i];
        } else if ((!strcmp(a, "-t") || !strcmp(a, "--topic")) && more) {
            topic = argv[++i];
        } else if (!strcmp(a, "--format") && more) {
            format = argv[++i];
        } else if (!strcmp(a, "--text")) {
            text = true;
        } else if (!strcmp(a, "--max-tokens") && more) {
            max_tokens = atoi(argv[++i]);
        } else if (!strcmp(a, "--create-topics")) {
            create = true;
        } else if (!strcmp(a, "--partitions") && more) {
            partitions = atoi(argv[++i]);
        } else if (!strcmp(a, "-X") && more) {
            props[n_props++] = argv[++i];
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = true;
        } else if ((a[0] != '-' || !strcmp(a, "-")) && !file) {
            file = a;
        } else {
            fprintf(stderr, "krill-enqueue: unknown or incomplete argument '%s' (try --help)\n", a);
            return 2;
        }
    }
    if (!brokers || !topic || !file) {
        fprintf(stderr, "krill-enqueue: -b BROKERS, -t TOPIC and a FILE are required (try --help)\n");
        return 2;
    }
    int fmode = !strcmp(format, "json") ? 0 : !strcmp(format, "msgpack") ? 1 : !strcmp(format, "mixed") ? 2 : -1;
    if (fmode < 0) {
        fprintf(stderr, "krill-enqueue: --format must be json, msgpack or mixed, not '%s'\n", format);
        return 2;
    }
    if (partitions < 1 || max_tokens < 1) {
        fprintf(stderr, "krill-enqueue: --partitions and --max-tokens must be positive\n");
        return 2;
    }
    FILE *in = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
    if (!in) {
        fprintf(stderr, "krill-enqueue: cannot open %s: %s\n", file, strerror(errno));
        return 1;
    }
    char err[512];
    if (create) {
        const char *ts[4] = {topic, "krill.results", "krill.dlq", "krill.stats"};
        if (kafka_create_topics(brokers, props, n_props, ts, 4, partitions, 1, 10000, err, sizeof err) != 0) {
            fprintf(stderr, "krill-enqueue: %s\n", err);
            return 1;
        }
    }
    counts_t c = {0, 0};
    kafka_io_config_t kc = {.brokers = brokers, .properties = props, .n_properties = n_props, .linger_ms = 5};
    kafka_io_handlers_t kh = {.ctx = &c, .delivered = on_delivered};
    kafka_io_t *k = kafka_io_open(&kc, &kh, err, sizeof err);
    if (!k) {
        fprintf(stderr, "krill-enqueue: %s\n", err);
        return 1;
    }
    const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
    bool tty = !quiet && isatty(2);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0, sent = 0, produce_failed = 0;
    buf_t mp = {0};
    double t0 = clock_now_s(), last = 0;
    char key[CODEC_MAX_ID_BYTES + 1];
    while ((len = getline(&line, &cap, in)) != -1) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        char *wrapped = NULL;
        const char *val = line;
        size_t vlen = (size_t)len;
        if (text) {
            json_t *o = json_pack("{s:s%, s:{s:[{s:s, s:s%}], s:i}}", "custom_id", "", (size_t)0, "body",
                                  "messages", "role", "user", "content", line, (size_t)len, "max_tokens", max_tokens);
            if (!o) {
                fprintf(stderr, "krill-enqueue: line %ld is not valid UTF-8; skipped\n", lineno);
                continue;
            }
            char idbuf[300];
            snprintf(idbuf, sizeof idbuf, "%s-%ld", base, lineno);
            json_object_set_new(o, "custom_id", json_string(idbuf));
            wrapped = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
            json_decref(o);
            val = wrapped;
            vlen = strlen(wrapped);
        }
        size_t keylen = line_custom_id(val, vlen, key, sizeof key);
        bool as_msgpack = fmode == 1 || (fmode == 2 && (sent % 2) == 1);
        if (as_msgpack) {
            if (codec_json_to_msgpack(val, vlen, &mp, err, sizeof err) == 0) {
                val = mp.data;
                vlen = mp.len;
            } else if (!quiet) {
                fprintf(stderr, "krill-enqueue: line %ld is not convertible to msgpack (%s); sent as is\n", lineno,
                        err);
            }
        }
        if (kafka_io_produce(k, topic, keylen ? key : NULL, keylen, val, vlen, NULL, NULL, 60000, err, sizeof err) !=
            0) {
            fprintf(stderr, "krill-enqueue: line %ld: %s\n", lineno, err);
            produce_failed++;
        } else {
            sent++;
        }
        free(wrapped);
        kafka_io_serve(k);
        if (tty && clock_now_s() - last > 0.25) {
            last = clock_now_s();
            fprintf(stderr, "\rkrill-enqueue: sent %ld, acknowledged %ld ", sent, c.acked);
        }
    }
    if (ferror(in)) fprintf(stderr, "krill-enqueue: read error on %s: %s\n", file, strerror(errno));
    if (in != stdin) fclose(in);
    free(line);
    buf_free(&mp);
    int left;
    while ((left = kafka_io_flush(k, 1000)) > 0) {
        if (tty) fprintf(stderr, "\rkrill-enqueue: sent %ld, acknowledged %ld ", sent, c.acked);
        if (clock_now_s() - t0 > 600) break;
    }
    if (tty) fprintf(stderr, "\n");
    kafka_io_close(k);
    double dt = clock_now_s() - t0;
    fprintf(stderr, "krill-enqueue: %ld records acknowledged by %s (topic %s) in %.2fs (%.0f/s)%s", c.acked, brokers,
            topic, dt, dt > 0 ? (double)c.acked / dt : 0.0, (c.failed + produce_failed + left) ? "" : "\n");
    if (c.failed + produce_failed + left)
        fprintf(stderr, "; %ld FAILED, %d unacknowledged\n", c.failed + produce_failed, left);
    free(props);
    return (c.failed + produce_failed + left) ? 1 : 0;
}
