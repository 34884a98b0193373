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
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "codec.h"
#include "kafka.h"

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
            "  -h, --help             this text\n"
            "      --version          print the version\n"
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

typedef enum { FMT_JSON, FMT_MSGPACK, FMT_MIXED } send_format_t;

typedef struct {
    const char *brokers, *topic, *file;
    cli_list_t props; /* -X KEY=VALUE */
    send_format_t format;
    bool text, create, quiet;
    int partitions, max_tokens;
} args_t;

static void argparse(int argc, char **argv, args_t *a) {
    enum { O_FORMAT = 256, O_TEXT, O_MAX_TOKENS, O_CREATE, O_PARTITIONS };
    static const struct option lopts[] = {
        {"brokers", required_argument, NULL, 'b'},        {"topic", required_argument, NULL, 't'},
        {"format", required_argument, NULL, O_FORMAT},    {"text", no_argument, NULL, O_TEXT},
        {"max-tokens", required_argument, NULL, O_MAX_TOKENS}, {"create-topics", no_argument, NULL, O_CREATE},
        {"partitions", required_argument, NULL, O_PARTITIONS}, {"quiet", no_argument, NULL, 'q'},
        CLI_OPTIONS_END};
    char key[256];
    *a = (args_t){.partitions = 4, .max_tokens = 64};
    int c;
    while ((c = getopt_long(argc, argv, "b:t:X:qh", lopts, NULL)) != -1) {
        switch (c) {
        case 'b': a->brokers = optarg; break;
        case 't': a->topic = optarg; break;
        case O_FORMAT:
            if (!strcmp(optarg, "json")) a->format = FMT_JSON;
            else if (!strcmp(optarg, "msgpack")) a->format = FMT_MSGPACK;
            else if (!strcmp(optarg, "mixed")) a->format = FMT_MIXED;
            else cli_usage_error("--format must be json, msgpack or mixed, not '%s'", optarg);
            break;
        case O_TEXT: a->text = true; break;
        case O_MAX_TOKENS: a->max_tokens = (int)cli_long("--max-tokens", optarg, 1, 1 << 30); break;
        case O_CREATE: a->create = true; break;
        case O_PARTITIONS: a->partitions = (int)cli_long("--partitions", optarg, 1, 1 << 20); break;
        case 'X':
            cli_kv("-X", optarg, key, sizeof key);
            cli_list_add(&a->props, argc, optarg);
            break;
        case 'q': a->quiet = true; break;
        default: cli_default(c, usage);
        }
    }
    if (optind < argc) a->file = argv[optind++];
    cli_no_operands(argc, argv);
    if (!a->brokers || !a->topic || !a->file) cli_usage_error("-b BROKERS, -t TOPIC and a FILE are required");
}

/* --text: the line as the user message of a chat request (a JSON text to free), or NULL
 * when the line is not UTF-8. */
static char *wrap_text(const char *line, size_t len, const char *base, long lineno, int max_tokens) {
    json_t *o = json_pack("{s:s%, s:{s:[{s:s, s:s%}], s:i}}", "custom_id", "", (size_t)0, "body", "messages", "role",
                          "user", "content", line, len, "max_tokens", max_tokens);
    if (!o) return NULL;
    char idbuf[300];
    snprintf(idbuf, sizeof idbuf, "%s-%ld", base, lineno);
    json_object_set_new(o, "custom_id", json_string(idbuf));
    char *wrapped = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return wrapped;
}

/* Sends every non-empty line of in; returns how many were handed to the producer,
 * counts those it refused in *produce_failed. */
static long send_lines(kafka_io_t *k, const args_t *a, FILE *in, const counts_t *c, long *produce_failed) {
    const char *base = strrchr(a->file, '/') ? strrchr(a->file, '/') + 1 : a->file;
    bool tty = !a->quiet && isatty(2);
    char *line = NULL, err[512];
    size_t cap = 0;
    ssize_t len;
    long lineno = 0, sent = 0;
    buf_t mp = {0};
    double last = 0;
    char key[CODEC_MAX_ID_BYTES + 1];
    while ((len = getline(&line, &cap, in)) != -1) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        char *wrapped = NULL;
        const char *val = line;
        size_t vlen = (size_t)len;
        if (a->text) {
            if (!(wrapped = wrap_text(line, (size_t)len, base, lineno, a->max_tokens))) {
                fprintf(stderr, "krill-enqueue: line %ld is not valid UTF-8; skipped\n", lineno);
                continue;
            }
            val = wrapped;
            vlen = strlen(wrapped);
        }
        size_t keylen = line_custom_id(val, vlen, key, sizeof key);
        bool as_msgpack = a->format == FMT_MSGPACK || (a->format == FMT_MIXED && (sent % 2) == 1);
        if (as_msgpack) {
            if (codec_json_to_msgpack(val, vlen, &mp, err, sizeof err) == 0) {
                val = mp.data;
                vlen = mp.len;
            } else if (!a->quiet) {
                fprintf(stderr, "krill-enqueue: line %ld is not convertible to msgpack (%s); sent as is\n", lineno,
                        err);
            }
        }
        if (kafka_io_produce(k, a->topic, keylen ? key : NULL, keylen, val, vlen, NULL, NULL, 60000, err,
                             sizeof err) != 0) {
            fprintf(stderr, "krill-enqueue: line %ld: %s\n", lineno, err);
            (*produce_failed)++;
        } else {
            sent++;
        }
        free(wrapped);
        kafka_io_serve(k);
        if (tty && clock_now_s() - last > 0.25) {
            last = clock_now_s();
            fprintf(stderr, "\rkrill-enqueue: sent %ld, acknowledged %ld ", sent, c->acked);
        }
    }
    if (ferror(in)) fprintf(stderr, "krill-enqueue: read error on %s: %s\n", a->file, strerror(errno));
    free(line);
    buf_free(&mp);
    return sent;
}

int main(int argc, char **argv) {
    args_t a;
    cli_init("krill-enqueue");
    argparse(argc, argv, &a);
    FILE *in = strcmp(a.file, "-") == 0 ? stdin : fopen(a.file, "rb");
    if (!in) {
        fprintf(stderr, "krill-enqueue: cannot open %s: %s\n", a.file, strerror(errno));
        return 1;
    }
    char err[512];
    if (a.create) {
        const char *ts[4] = {a.topic, "krill.results", "krill.dlq", "krill.stats"};
        if (kafka_create_topics(a.brokers, a.props.items, a.props.n, ts, 4, a.partitions, 1, 10000, err, sizeof err) != 0) {
            fprintf(stderr, "krill-enqueue: %s\n", err);
            return 1;
        }
    }
    counts_t c = {0, 0};
    kafka_io_config_t kc = {.brokers = a.brokers, .properties = a.props.items, .n_properties = a.props.n, .linger_ms = 5};
    kafka_io_handlers_t kh = {.ctx = &c, .delivered = on_delivered};
    kafka_io_t *k = kafka_io_open(&kc, &kh, err, sizeof err);
    if (!k) {
        fprintf(stderr, "krill-enqueue: %s\n", err);
        return 1;
    }
    bool tty = !a.quiet && isatty(2);
    long produce_failed = 0;
    double t0 = clock_now_s();
    long sent = send_lines(k, &a, in, &c, &produce_failed);
    if (in != stdin) fclose(in);
    int left;
    while ((left = kafka_io_flush(k, 1000)) > 0) {
        if (tty) fprintf(stderr, "\rkrill-enqueue: sent %ld, acknowledged %ld ", sent, c.acked);
        if (clock_now_s() - t0 > 600) break;
    }
    if (tty) fprintf(stderr, "\n");
    kafka_io_close(k);
    double dt = clock_now_s() - t0;
    long failed = c.failed + produce_failed;
    fprintf(stderr, "krill-enqueue: %ld records acknowledged by %s (topic %s) in %.2fs (%.0f/s)%s", c.acked,
            a.brokers, a.topic, dt, dt > 0 ? (double)c.acked / dt : 0.0, (failed + left) ? "" : "\n");
    if (failed + left) fprintf(stderr, "; %ld FAILED, %d unacknowledged\n", failed, left);
    cli_list_free(&a.props);
    return (failed + left) ? 1 : 0;
}
