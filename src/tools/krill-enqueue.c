/* krill-enqueue — sends a JSONL file of requests to a Kafka topic, one record per line.
 *
 * Lines are sent as they are (JSON), converted to msgpack (--format msgpack), or
 * alternately both (--format mixed: odd lines JSON, even lines msgpack). A line that
 * cannot be converted (malformed on purpose) is sent verbatim, so test sets of bad
 * messages go through untouched. --text wraps each line as the content of a chat
 * request. The record key is the line's custom_id when it has one (so a request always
 * lands on the same partition; --key custom_id, the default), or with --key prefix[:N]
 * a hash of the start of its prompt, so requests sharing a prefix land on one partition
 * and hence one worker, whose prefix cache then serves it (docs/engine-scheduling.md,
 * "Prefix-affine partitioning"; the price is skew when one prefix dominates). The idempotent producer acknowledges every record;
 * the exit status is non-zero if any delivery failed.
 *
 * Every wait is bounded by --timeout (default 30 s): before sending, one metadata
 * request asks the brokers about TOPIC, so a wrong -b or a missing topic is one clear
 * message with a hint within the timeout (not librdkafka's 300 s message.timeout.ms of
 * retries, or 30 s and one line per record); each record then has --timeout to be
 * acknowledged (producer message.timeout.ms, unless -X sets it). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "codec.h"
#include "err.h"
#include "kafka.h"
#include "log.h"
#include "sha256.h"

typedef struct {
    long acked, failed;
    rd_kafka_resp_err_t last_err; /* the last failure printed: one line per new reason */
    int printed;
} counts_t;

static void on_delivered(void *ctx, void *opaque, rd_kafka_resp_err_t err, const rd_kafka_message_t *m) {
    (void)opaque;
    (void)m;
    counts_t *c = ctx;
    if (err) {
        if (err != c->last_err && c->printed < 10) {
            fprintf(stderr, "krill-enqueue: delivery failed: %s%s\n", rd_kafka_err2str(err),
                    c->failed ? " (and earlier records for another reason)" : "");
            c->last_err = err;
            c->printed++;
        }
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
            "                         (through the admin API; existing topics are kept)\n"
            "  --partitions N         partitions of created topics (default 4)\n"
            "  --timeout S            the longest wait, in seconds, for a broker to answer and\n"
            "                         for each record's acknowledgement (default 30)\n"
            "  --key custom_id|prefix[:N]\n"
            "                         record key: the line's custom_id (default), or a hash of the\n"
            "                         first N characters of its prompt (default: the system\n"
            "                         message(s), else the first 1024 characters), so requests\n"
            "                         with a shared prefix go to one partition (one worker)\n"
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

#define PREFIX_KEY_DEFAULT_CHARS 1024

/* The prompt text of a request line: body.prompt (a string), or its messages' contents
 * (string or text parts) each after its role and a newline; with system_only, only the
 * leading system messages. Appended to out; false when the line holds none. */
static bool line_prompt_text(json_t *o, bool system_only, buf_t *out) {
    json_t *body = json_object_get(o, "body");
    json_t *prompt = json_object_get(body, "prompt"), *msgs = json_object_get(body, "messages");
    if (json_is_string(prompt)) {
        if (system_only) return false;
        return buf_append(out, json_string_value(prompt), json_string_length(prompt)) == 0;
    }
    size_t i;
    json_t *m;
    bool any = false;
    json_array_foreach(msgs, i, m) {
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_string(role)) return any;
        if (system_only && strcmp(json_string_value(role), "system") != 0) break;
        buf_append(out, json_string_value(role), json_string_length(role));
        buf_append(out, "\n", 1);
        if (json_is_string(content)) buf_append(out, json_string_value(content), json_string_length(content));
        size_t k;
        json_t *part;
        json_array_foreach(content, k, part) {
            json_t *t = json_object_get(part, "text");
            if (json_is_string(t)) buf_append(out, json_string_value(t), json_string_length(t));
        }
        buf_append(out, "\n", 1);
        any = true;
    }
    return any;
}

/* --key prefix[:N]: "p-" and 32 hex digits of SHA-256 over the first n_chars characters
 * of the line's prompt text (n_chars 0: its system messages, else the first 1024
 * characters). 0 (no key: the caller falls back on custom_id) when the line is not a
 * request with a prompt. */
static size_t line_prefix_key(const char *line, size_t len, int n_chars, char *key, size_t cap) {
    json_error_t je;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    buf_t text = {0};
    size_t n = 0;
    if (o && json_is_object(o) && cap > 2 + 32 &&
        ((n_chars == 0 && line_prompt_text(o, true, &text)) || line_prompt_text(o, false, &text))) {
        size_t want = n_chars > 0 ? (size_t)n_chars : PREFIX_KEY_DEFAULT_CHARS, chars = 0, end = 0;
        for (; end < text.len; end++) { /* cut before the (want+1)-th character start */
            if (((unsigned char)text.data[end] & 0xC0) != 0x80 && chars++ == want) break;
        }
        uint8_t d[SHA256_BYTES];
        char hex[2 * SHA256_BYTES + 1];
        sha256(text.data, end, d);
        sha256_hex(d, hex);
        n = (size_t)snprintf(key, cap, "p-%.32s", hex);
    }
    buf_free(&text);
    json_decref(o);
    return n;
}

typedef enum { FMT_JSON, FMT_MSGPACK, FMT_MIXED } send_format_t;

typedef struct {
    const char *brokers, *topic, *file;
    cli_list_t props; /* -X KEY=VALUE */
    send_format_t format;
    bool text, create, quiet;
    int partitions, max_tokens, timeout_s;
    bool key_prefix;   /* --key prefix[:N] */
    int key_chars;     /* its N; 0 = the system messages, else 1024 characters */
} args_t;

static void argparse(int argc, char **argv, args_t *a) {
    enum { O_FORMAT = 256, O_TEXT, O_MAX_TOKENS, O_CREATE, O_PARTITIONS, O_TIMEOUT, O_KEY };
    static const struct option lopts[] = {
        {"brokers", required_argument, NULL, 'b'},        {"topic", required_argument, NULL, 't'},
        {"format", required_argument, NULL, O_FORMAT},    {"text", no_argument, NULL, O_TEXT},
        {"max-tokens", required_argument, NULL, O_MAX_TOKENS}, {"create-topics", no_argument, NULL, O_CREATE},
        {"partitions", required_argument, NULL, O_PARTITIONS}, {"quiet", no_argument, NULL, 'q'},
        {"timeout", required_argument, NULL, O_TIMEOUT},  {"key", required_argument, NULL, O_KEY},
        CLI_OPTIONS_END};
    char key[256];
    *a = (args_t){.partitions = 4, .max_tokens = 64, .timeout_s = 30};
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
        case O_TIMEOUT: a->timeout_s = (int)cli_long("--timeout", optarg, 1, 86400); break;
        case 'X':
            cli_kv("-X", optarg, key, sizeof key);
            cli_list_add(&a->props, argc, optarg);
            break;
        case 'q': a->quiet = true; break;
        case O_KEY:
            if (!strcmp(optarg, "custom_id")) a->key_prefix = false;
            else if (!strcmp(optarg, "prefix")) a->key_prefix = true, a->key_chars = 0;
            else if (!strncmp(optarg, "prefix:", 7))
                a->key_prefix = true, a->key_chars = (int)cli_long("--key prefix:N", optarg + 7, 1, 1 << 24);
            else cli_usage_error("--key must be custom_id, prefix or prefix:N, not '%s'", optarg);
            break;
        default: cli_default(c, usage);
        }
    }
    if (optind < argc) a->file = argv[optind++];
    cli_no_operands(argc, argv);
    if (!a->brokers || !a->topic || !a->file) cli_usage_error("-b BROKERS, -t TOPIC and a FILE are required");
}

typedef enum { PROBE_OK, PROBE_NO_BROKER, PROBE_NO_TOPIC, PROBE_ERROR } probe_t;

/* The probe handle's errors: the last reason kept (it names the broker and the cause,
 * "Connect to ipv4#127.0.0.1:9 failed: Connection refused"), for the one message. */
static void probe_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk;
    if (err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) snprintf(opaque, 256, "%s", reason);
}

/* Asks the brokers about a->topic, waiting at most --timeout. A property librdkafka
 * rejects is a usage error (exit 2; its value is never printed: it may be a secret).
 * The probe's own librdkafka lines are kept below error level (-X log_level raises
 * them): the outcome is one message, filled into err. */
static probe_t enqueue_probe(const args_t *a, char *err, size_t errlen) {
    char es[512], key[256], last[256] = "";
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    kafka_conf_set_logger(conf);
    rd_kafka_conf_set_error_cb(conf, probe_error_cb);
    rd_kafka_conf_set_opaque(conf, last);
    if (rd_kafka_conf_set(conf, "log_level", "2", es, sizeof es) != RD_KAFKA_CONF_OK) CHECK(!"log_level rejected");
    for (size_t i = 0; i < a->props.n; i++) {
        const char *val;
        int rc = kafka_property_split(a->props.items[i], false, key, sizeof key, &val);
        if (rc < 0) cli_usage_error("-X %s: not KEY=VALUE", key);
        if (rc > 0 && rd_kafka_conf_set(conf, key, val, es, sizeof es) != RD_KAFKA_CONF_OK)
            cli_usage_error("-X %s: rejected by librdkafka", key);
    }
    if (rd_kafka_conf_set(conf, "bootstrap.servers", a->brokers, es, sizeof es) != RD_KAFKA_CONF_OK)
        cli_usage_error("-b: %s", es);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, es, sizeof es);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        err_set(err, errlen, "cannot create a Kafka client: %s", es);
        return PROBE_ERROR;
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, a->topic, NULL);
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, a->timeout_s * 1000);
    rd_kafka_resp_err_t te = !e && md->topic_cnt > 0 ? md->topics[0].err : RD_KAFKA_RESP_ERR_NO_ERROR;
    probe_t r = PROBE_OK;
    if (e) {
        rd_kafka_poll(rk, 0); /* serves error_cb: the last reason */
        r = PROBE_NO_BROKER;
        err_set(err, errlen,
                "no Kafka broker answered at %s within %d s (%s); check -b (and -X security settings), "
                "start one with scripts/kafka-local.sh start, or wait longer with --timeout",
                a->brokers, a->timeout_s, *last ? last : rd_kafka_err2str(e));
    } else if (te == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
        r = PROBE_NO_TOPIC;
        err_set(err, errlen,
                "topic %s does not exist on %s (and the broker does not create topics on demand); "
                "add --create-topics to create it, or create it first (scripts/kafka-local.sh topics %s)",
                a->topic, a->brokers, a->topic);
    } else if (te && te != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE) { /* no leader yet: just created */
        r = PROBE_ERROR;
        err_set(err, errlen, "topic %s on %s: %s", a->topic, a->brokers, rd_kafka_err2str(te));
    }
    if (md) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return r;
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
        size_t keylen = a->key_prefix ? line_prefix_key(val, vlen, a->key_chars, key, sizeof key) : 0;
        if (keylen == 0) keylen = line_custom_id(val, vlen, key, sizeof key);
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
        if (kafka_io_produce(k, a->topic, keylen ? key : NULL, keylen, val, vlen, NULL, NULL, a->timeout_s * 1000,
                             err, sizeof err) != 0) {
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
    /* An empty input sends nothing and waits for nothing: no probe unless topics are
     * to be created. */
    int first = getc(in);
    if (first != EOF) ungetc(first, in);
    probe_t pr = first == EOF && !a.create ? PROBE_OK : enqueue_probe(&a, err, sizeof err);
    if (pr == PROBE_NO_BROKER || pr == PROBE_ERROR || (pr == PROBE_NO_TOPIC && !a.create)) {
        fprintf(stderr, "krill-enqueue: %s\n", err);
        return 1;
    }
    if (a.create) {
        const char *ts[4] = {a.topic, "krill.results", "krill.dlq", "krill.stats"};
        if (kafka_create_topics(a.brokers, a.props.items, a.props.n, ts, 4, a.partitions, 1, a.timeout_s * 1000, err,
                                sizeof err) != 0) {
            fprintf(stderr, "krill-enqueue: %s\n", err);
            return 1;
        }
    }
    /* Each record's acknowledgement waits --timeout at most; a -X message.timeout.ms
     * comes later in the list and wins. */
    char mto[64];
    snprintf(mto, sizeof mto, "producer.message.timeout.ms=%d", a.timeout_s * 1000);
    const char **props = calloc(a.props.n + 1, sizeof *props);
    if (!props) {
        fprintf(stderr, "krill-enqueue: out of memory\n");
        return 1;
    }
    props[0] = mto;
    for (size_t i = 0; i < a.props.n; i++) props[i + 1] = a.props.items[i];
    counts_t c = {0};
    kafka_io_config_t kc = {.brokers = a.brokers, .properties = props, .n_properties = a.props.n + 1, .linger_ms = 5};
    kafka_io_handlers_t kh = {.ctx = &c, .delivered = on_delivered};
    kafka_io_t *k = kafka_io_open(&kc, &kh, err, sizeof err);
    if (!k) {
        fprintf(stderr, "krill-enqueue: %s\n", err);
        free(props);
        return 1;
    }
    bool tty = !a.quiet && isatty(2);
    long produce_failed = 0;
    double t0 = clock_now_s();
    long sent = send_lines(k, &a, in, &c, &produce_failed);
    if (in != stdin) fclose(in);
    /* Every record is acknowledged or failed within message.timeout.ms of its send; the
     * deadline only guards against a -X that lifted it. */
    int left;
    double deadline = clock_now_s() + a.timeout_s + 5;
    while ((left = kafka_io_flush(k, 1000)) > 0) {
        if (tty) fprintf(stderr, "\rkrill-enqueue: sent %ld, acknowledged %ld ", sent, c.acked);
        if (clock_now_s() > deadline) break;
    }
    if (tty) fprintf(stderr, "\n");
    kafka_io_close(k);
    double dt = clock_now_s() - t0;
    long failed = c.failed + produce_failed;
    fprintf(stderr, "krill-enqueue: %ld records acknowledged by %s (topic %s) in %.2fs (%.0f/s)%s", c.acked,
            a.brokers, a.topic, dt, dt > 0 ? (double)c.acked / dt : 0.0, (failed + left) ? "" : "\n");
    if (failed + left) fprintf(stderr, "; %ld FAILED, %d unacknowledged\n", failed, left);
    cli_list_free(&a.props);
    free(props);
    return (failed + left) ? 1 : 0;
}
