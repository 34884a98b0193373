/* config.c — the settings table and its three sources (see config.h, docs/configuration.md).
 *
 * Rules it keeps: one row per key (KEYS[] below) is the only place a key, its type,
 * bounds, default and doc live; the file reader, the environment, --set, the renderer
 * (--print-config) and the docs tool (src/tools/krill-config-doc.c, through
 * config_keys) all walk that table. Every error names the key's path. Values of secret
 * keys (kafka.properties) never reach an error message or a render. Kafka's own rules
 * (topic names, librdkafka properties) are kafka_config_check's, in kafka.c. */
/* libconfig names its handle config_t too: rename it for this file only (C links by
 * function names, so the rename changes nothing else). Include it before config.h. */
#define config_t libconfig_t
#include <libconfig.h>
#undef config_t

#include "config.h"
#include "buf.h"
#include "err.h"
#include "kafka.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

/* ================================================================ checks */

/* Kafka's own rules (topic names, librdkafka properties) live in kafka.c. */
static int check_topic(const void *field, char *err, size_t errlen) {
    return kafka_config_check(KAFKA_CHECK_TOPIC, *(char *const *)field, 0, err, errlen);
}

static int check_topic_list(const void *field, char *err, size_t errlen) {
    return kafka_config_check(KAFKA_CHECK_TOPIC_LIST, *(char *const *)field, 0, err, errlen);
}

static int check_nonempty(const void *field, char *err, size_t errlen) {
    if (!**(char *const *)field) {
        err_set(err, errlen, "must not be empty");
        return -1;
    }
    return 0;
}

/* "host:port" or "[v6]:port" with port 0..65535 (0: any free port, logged at start), or "off" */
static int check_listen(const void *field, char *err, size_t errlen) {
    const char *s = *(char *const *)field;
    if (strcmp(s, "off") == 0) return 0;
    const char *colon = strrchr(s, ':');
    bool ok = colon && colon > s;
    if (ok && s[0] == '[') ok = colon[-1] == ']';
    else if (ok) ok = memchr(s, ':', (size_t)(colon - s)) == NULL;
    char *end = NULL;
    long port = ok ? strtol(colon + 1, &end, 10) : 0;
    if (!ok || !end || *end || colon[1] == 0 || port < 0 || port > 65535) {
        err_set(err, errlen, "\"%s\" is not host:port (e.g. 127.0.0.1:9464, [::1]:9464, 0.0.0.0:9464) or off", s);
        return -1;
    }
    return 0;
}

static int check_worker_id(const void *field, char *err, size_t errlen) {
    const char *s = *(char *const *)field;
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f || s[i] == '"' || s[i] == '\\') {
            err_set(err, errlen, "must be printable ASCII without quotes or backslashes");
            return -1;
        }
    if (n > 128) {
        err_set(err, errlen, "longer than 128 characters");
        return -1;
    }
    return 0;
}

/* ================================================================ the table */

#define F(sec, name) offsetof(config_t, sec.name)
#define K(path, type, lo, hi, def, choices, field, chk, doc) \
    {path, type, lo, hi, def, choices, false, doc, field, 0, chk}

static const config_key_t KEYS[] = {
    K("kafka.brokers", CONFIG_STRING, 0, 0, "\"127.0.0.1:9092\"", NULL, F(kafka, brokers), check_nonempty,
      "Bootstrap servers, comma-separated host:port (librdkafka bootstrap.servers)."),
    K("kafka.group", CONFIG_STRING, 0, 0, "\"krill-workers\"", NULL, F(kafka, group), check_nonempty,
      "Consumer group of the workers (group.id)."),
    K("kafka.client_id", CONFIG_STRING, 0, 0, "\"krill\"", NULL, F(kafka, client_id), check_nonempty,
      "client.id sent to the brokers."),
    K("kafka.topic_requests", CONFIG_STRING, 0, 0, "\"krill.requests\"", NULL, F(kafka, topic_requests),
      check_topic_list, "Topic(s) of requests to consume, comma-separated."),
    K("kafka.topic_results", CONFIG_STRING, 0, 0, "\"krill.results\"", NULL, F(kafka, topic_results), check_topic,
      "Topic of results (one per request)."),
    K("kafka.topic_dlq", CONFIG_STRING, 0, 0, "\"krill.dlq\"", NULL, F(kafka, topic_dlq), check_topic,
      "Dead-letter topic for messages that cannot be decoded."),
    K("kafka.topic_stats", CONFIG_STRING, 0, 0, "\"krill.stats\"", NULL, F(kafka, topic_stats), check_topic,
      "Topic of the periodic statistics records."),
    {"kafka.properties", CONFIG_STRLIST, 0, 0, "[]", NULL, true,
     "librdkafka properties as \"key=value\" strings, passed verbatim (TLS, SASL, tuning); "
     "\"consumer.K=V\" / \"producer.K=V\" apply to one client. Values are redacted (--print-config, krill's "
     "logs); librdkafka hides only its sensitive ones (docs/operations.md, Secrets).",
     F(kafka, properties), F(kafka, n_properties), NULL},

    K("model.path", CONFIG_STRING, 0, 0, "\"models/SmolLM2-135M-Instruct.Q4_1.gguf\"", NULL, F(model, path),
      check_nonempty, "GGUF model file."),
    {"model.name", CONFIG_STRLIST, 0, 0, "[]", NULL, false,
     "Served model names (a string or a list of aliases) that requests may name in \"model\"; \"*\" accepts "
     "any; [] = the loaded file's general.name, else its file name. Results report the name the request used.",
     F(model, name), F(model, n_name), NULL},
    K("model.backend", CONFIG_ENUM, 0, 0, "\"auto\"", "auto|cpu|cuda", F(model, backend), NULL,
      "Inference backend; auto picks CUDA when a device is present."),
    K("model.dtype", CONFIG_ENUM, 0, 0, "\"bf16\"", "bf16|f16", F(model, dtype), NULL,
      "CUDA weight type (the CPU backend: model.cpu_weights)."),
    K("model.cpu_weights", CONFIG_ENUM, 0, 0, "\"auto\"", "auto|f32|q8|q4", F(model, cpu_weights), NULL,
      "CPU matmul weights: auto keeps what maps exactly in integers (Q4_0/Q4_1 tensors 4-bit, Q8_0 8-bit, "
      "every other type f32; integer dot products with two-plane 8-bit activations, greedy parity with "
      "transformers kept); q4 the file's Q4_0/Q4_1 in 4 bits and the rest re-quantized to 8; q8 all in 8 "
      "bits; f32 dequantized (exact, 5x the memory) (docs/engine.md, Quantized weights)."),
    K("model.gpu_weights", CONFIG_ENUM, 0, 0, "\"auto\"", "auto|bf16|native", F(model, gpu_weights), NULL,
      "CUDA matmul weights: native keeps the file's Q8_0/Q4_0/Q4_1/Q4_K/Q6_K matrices as they are on the GPU "
      "(dequantized in the kernels; a 70B Q4_K_M fits one H200); bf16 dequantizes them (model.dtype); auto = "
      "native only when the bf16 copy would not fit in gpu_memory_fraction of the free memory. The CPU backend "
      "refuses native (docs/cuda.md, Device weight formats)."),
    K("model.context", CONFIG_INT, 0, 1048576, "0", NULL, F(model, context), NULL,
      "Max tokens per sequence; 0 = the model's training context."),
    K("model.gpu_memory_fraction", CONFIG_DOUBLE, 0.05, 1.0, "0.9", NULL, F(model, gpu_memory_fraction), NULL,
      "CUDA: fraction of free GPU memory for weights, activations and the KV cache."),
    K("model.threads", CONFIG_INT, 0, 1024, "0", NULL, F(model, threads), NULL,
      "CPU backend threads; 0 = all online cores."),
    K("model.kv_block_size", CONFIG_INT, 1, 1024, "16", NULL, F(model, kv_block_size), NULL,
      "Tokens per KV-cache block."),
    K("model.kv_cache_tokens", CONFIG_INT64, 0, 1099511627776.0, "0", NULL, F(model, kv_cache_tokens), NULL,
      "CPU backend: KV-cache capacity in tokens; 0 = context x max_seqs, capped."),
    K("model.seed", CONFIG_INT64, 0, 9223372036854775807.0, "0", NULL, F(model, seed), NULL,
      "Base seed for requests without one; 0 = random per start."),

    K("batching.max_seqs", CONFIG_INT, 0, 65536, "0", NULL, F(batching, max_seqs), NULL,
      "Sequences per engine step; 0 = backend default (cpu 64, cuda 512)."),
    K("batching.max_batch_tokens", CONFIG_INT, 0, 1048576, "0", NULL, F(batching, max_batch_tokens), NULL,
      "Tokens per engine step (long prompts are prefilled in chunks of this size); 0 = backend default "
      "(cpu 512, cuda 8192)."),
    K("batching.max_wait_ms", CONFIG_INT, 0, 10000, "0", NULL, F(batching, max_wait_ms), NULL,
      "How long an idle engine waits after the first request arrives to gather a fuller first batch."),
    K("batching.prefix_cache", CONFIG_BOOL, 0, 0, "true", NULL, F(batching, prefix_cache), NULL,
      "Automatic prefix caching: requests whose prompts start alike share the KV blocks of the common part "
      "instead of prefilling it again (output unchanged; docs/engine-scheduling.md)."),
    K("batching.slo.ttft_ms", CONFIG_DOUBLE, 0, 3600000, "0.0", NULL, F(batching, slo.ttft_ms), NULL,
      "Adaptive batching: p95 time-to-first-token target in ms (watched, saturation is logged); 0 = none."),
    K("batching.slo.tpot_ms", CONFIG_DOUBLE, 0, 3600000, "0.0", NULL, F(batching, slo.tpot_ms), NULL,
      "Adaptive batching: p95 time-per-output-token target in ms; the step budget adapts to hold it; 0 = off."),

    K("input.max_message_bytes", CONFIG_INT64, 1024, 268435456.0, "1048576", NULL, F(input, max_message_bytes),
      NULL, "Larger request values go to the DLQ (message_too_large)."),
    K("input.max_prompt_tokens", CONFIG_INT, 0, 1048576, "0", NULL, F(input, max_prompt_tokens), NULL,
      "Longer prompts are answered 400 context_length_exceeded; 0 = context - max_tokens."),
    K("input.max_tokens_cap", CONFIG_INT, 1, 1048576, "4096", NULL, F(input, max_tokens_cap), NULL,
      "Largest max_tokens a request may ask for (more is 400 invalid_value)."),
    K("input.default_max_tokens", CONFIG_INT, 1, 1048576, "256", NULL, F(input, default_max_tokens), NULL,
      "max_tokens of requests that give none."),
    K("input.parse_special_in_content", CONFIG_BOOL, 0, 0, "false", NULL, F(input, parse_special_in_content), NULL,
      "Chat message content may contain control tokens (\"<|im_end|>\" becomes the token): true lets a message "
      "forge template markup such as a new system turn; false = content is text, only the template's markup is "
      "special."),
    {"input.ignore_unknown_fields", CONFIG_STRLIST, 0, 0, "[]", NULL, false,
     "Body fields krill does not implement that requests may carry and krill ignores (e.g. [\"tools\"]); any "
     "other such field is answered 400 unsupported.",
     F(input, ignore_unknown_fields), F(input, n_ignore_unknown_fields), NULL},
    K("input.max_n", CONFIG_INT, 1, 128, "8", NULL, F(input, max_n), NULL,
      "Largest n (choices per request); more is 400 invalid_value."),
    K("input.parse_special_in_prompt", CONFIG_BOOL, 0, 0, "false", NULL, F(input, parse_special_in_prompt), NULL,
      "A /v1/completions prompt string may contain control tokens; false = the string is text (send token ids for "
      "control tokens)."),

    K("output.format", CONFIG_ENUM, 0, 0, "\"auto\"", "auto|json|msgpack", F(output, format), NULL,
      "Result format; auto = the request's format."),

    K("stats.interval_ms", CONFIG_INT, 0, 3600000, "10000", NULL, F(stats, interval_ms), NULL,
      "Period of statistics records; 0 = none."),
    K("stats.format", CONFIG_ENUM, 0, 0, "\"json\"", "json|msgpack", F(stats, format), NULL,
      "Format of statistics records."),

    K("metrics.listen", CONFIG_STRING, 0, 0, "\"127.0.0.1:9464\"", NULL, F(metrics, listen), check_listen,
      "Prometheus /metrics endpoint, host:port, or off."),

    K("worker.id", CONFIG_STRING, 0, 0, "\"\"", NULL, F(worker, id), check_worker_id,
      "Worker name in results and stats; \"\" = <hostname>-<pid>."),
    K("worker.drain_timeout_ms", CONFIG_INT, 0, 3600000, "30000", NULL, F(worker, drain_timeout_ms), NULL,
      "On shutdown, how long in-flight requests may finish before they are abandoned (and replayed later)."),
    K("worker.revoke_timeout_ms", CONFIG_INT, 0, 600000, "10000", NULL, F(worker, revoke_timeout_ms), NULL,
      "On partition revocation, how long their in-flight work may finish before release."),
    K("worker.flush_timeout_ms", CONFIG_INT, 0, 600000, "10000", NULL, F(worker, flush_timeout_ms), NULL,
      "On shutdown, how long the producer may take to deliver what it holds."),
    K("worker.poll_timeout_ms", CONFIG_INT, 1, 10000, "100", NULL, F(worker, poll_timeout_ms), NULL,
      "Consumer poll timeout of the io thread (bounds shutdown and timer latency)."),
    K("worker.queue_high", CONFIG_INT, 1, 1000000, "1024", NULL, F(worker, queue_high), NULL,
      "Pause the assigned partitions when this many requests wait for the engine."),
    K("worker.queue_low", CONFIG_INT, 0, 1000000, "512", NULL, F(worker, queue_low), NULL,
      "Resume them when fewer than this many wait (below queue_high)."),
    K("worker.health_grace_ms", CONFIG_INT, 0, 3600000, "30000", NULL, F(worker, health_grace_ms), NULL,
      "/healthz answers 503 once no Kafka broker has been reachable for this long (at start: since start-up)."),

    K("delivery.mode", CONFIG_ENUM, 0, 0, "\"at_least_once\"", "at_least_once|exactly_once", F(delivery, mode), NULL,
      "at_least_once: a crash may answer a request twice; exactly_once: Kafka transactions carry answers and "
      "offsets together (docs/delivery.md; consumers of the results must read_committed)."),
    K("delivery.transaction_ms", CONFIG_INT, 1, 60000, "100", NULL, F(delivery, transaction_ms), NULL,
      "exactly_once: commit the open transaction at least this often (answers become visible then)."),
    K("delivery.transaction_max_answers", CONFIG_INT, 1, 1000000, "1000", NULL, F(delivery, transaction_max_answers),
      NULL, "exactly_once: ... or as soon as it holds this many answers."),
    K("delivery.transaction_timeout_ms", CONFIG_INT, 1000, 900000, "60000", NULL, F(delivery, transaction_timeout_ms),
      NULL, "exactly_once: the producer's transaction.timeout.ms: the broker aborts a transaction left open this "
      "long (a worker that died without a successor of the same worker.id holds the results back this long)."),
    K("delivery.metadata_max_bytes", CONFIG_INT, 64, 1048576, "4096", NULL, F(delivery, metadata_max_bytes), NULL,
      "exactly_once: the cluster's offset.metadata.max.bytes; answered offsets above a partition's watermark are "
      "recorded in the committed offset's metadata within this size."),

    K("log.level", CONFIG_ENUM, 0, 0, "\"info\"", "debug|info|warn|error|off", F(log, level), NULL,
      "Log level."),
};
#define N_KEYS (sizeof KEYS / sizeof *KEYS)

const config_key_t *config_keys(size_t *n) {
    if (n) *n = N_KEYS;
    return KEYS;
}

const char *config_type_name(config_type_t t) {
    switch (t) {
    case CONFIG_STRING: return "string";
    case CONFIG_INT: return "int";
    case CONFIG_INT64: return "int64";
    case CONFIG_DOUBLE: return "float";
    case CONFIG_BOOL: return "bool";
    case CONFIG_ENUM: return "enum";
    case CONFIG_STRLIST: return "list of strings";
    }
    return "?";
}

void config_env_name(const char *path, char *out, size_t outlen) {
    size_t w = (size_t)snprintf(out, outlen, "KRILL_");
    for (const char *p = path; *p && w + 1 < outlen; p++) out[w++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
    if (w < outlen) out[w] = 0;
}

static const config_key_t *find_key(const char *path) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(KEYS[i].path, path) == 0) return &KEYS[i];
    return NULL;
}

/* ================================================================ typed setters */

#define FIELD(c, k, T) ((T *)((char *)(c) + (k)->offset))

static void list_free(char **l, size_t n) {
    for (size_t i = 0; l && i < n; i++) free(l[i]);
    free(l);
}

static int fail_key(char *err, size_t errlen, const char *where, const config_key_t *k, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail_key(char *err, size_t errlen, const char *where, const config_key_t *k, const char *fmt, ...) {
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    err_set(err, errlen, "%s%s%s: %s", where ? where : "", where ? ": " : "", k->path, msg);
    return -1;
}

/* Runs bounds/choices/check on a value stored in a scratch field, then commits. */
static int commit_string(config_t *c, const config_key_t *k, const char *v, const char *where, char *err,
                         size_t errlen) {
    if (k->type == CONFIG_ENUM) {
        size_t n = strlen(v);
        bool ok = false;
        for (const char *p = k->choices; *p && !ok;) {
            const char *bar = strchr(p, '|');
            size_t l = bar ? (size_t)(bar - p) : strlen(p);
            ok = l == n && strncmp(p, v, n) == 0;
            p += l + (bar ? 1 : 0);
        }
        if (!ok) return fail_key(err, errlen, where, k, "\"%s\" is not one of %s", v, k->choices);
    }
    char *copy = strdup(v);
    if (!copy) return fail_key(err, errlen, where, k, "out of memory");
    if (k->check) {
        char msg[300];
        if (k->check(&copy, msg, sizeof msg) != 0) {
            free(copy);
            return fail_key(err, errlen, where, k, "%s", msg);
        }
    }
    char **f = FIELD(c, k, char *);
    free(*f);
    *f = copy;
    return 0;
}

static int commit_number(config_t *c, const config_key_t *k, double d, int64_t i, bool is_int, const char *where,
                         char *err, size_t errlen) {
    if (k->type == CONFIG_DOUBLE) {
        if (!isfinite(d) || d < k->min || d > k->max)
            return fail_key(err, errlen, where, k, "%g is outside [%g, %g]", d, k->min, k->max);
        *FIELD(c, k, double) = d;
        return 0;
    }
    if (!is_int) return fail_key(err, errlen, where, k, "expected an integer");
    if ((double)i < k->min || (double)i > k->max)
        return fail_key(err, errlen, where, k, "%" PRId64 " is outside [%.0f, %.0f]", i, k->min, k->max);
    if (k->type == CONFIG_INT) *FIELD(c, k, int) = (int)i;
    else *FIELD(c, k, int64_t) = i;
    return 0;
}

/* Replaces (append=false) or extends a list; entries are checked first. Takes
 * ownership of items (malloc'd strings) on every path. */
static int commit_list(config_t *c, const config_key_t *k, char **items, size_t n, bool append, const char *where,
                       char *err, size_t errlen) {
    char ***lp = FIELD(c, k, char **);
    size_t *np = (size_t *)((char *)c + k->count_offset);
    size_t base = append ? *np : 0;
    char msg[300];
    for (size_t i = 0; i < n; i++)
        if (kafka_config_check(KAFKA_CHECK_PROPERTY, items[i], base + i, msg, sizeof msg) != 0) {
            list_free(items, n);
            return fail_key(err, errlen, where, k, "%s", msg);
        }
    if (!append) {
        list_free(*lp, *np);
        *lp = items;
        *np = n;
        return 0;
    }
    char **nl = realloc(*lp, (*np + n + 1) * sizeof *nl);
    if (!nl) {
        list_free(items, n);
        return fail_key(err, errlen, where, k, "out of memory");
    }
    memcpy(nl + *np, items, n * sizeof *items);
    free(items);
    *lp = nl;
    *np += n;
    return 0;
}

static bool parse_int(const char *s, int64_t *out) {
    errno = 0;
    char *end;
    while (isspace((unsigned char)*s)) s++;
    if (!*s) return false;
    long long v = strtoll(s, &end, 0);
    if (errno || end == s) return false;
    if (*end == 'L') end++; /* libconfig's int64 suffix */
    while (isspace((unsigned char)*end)) end++;
    if (*end) return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, double *out) {
    errno = 0;
    char *end;
    while (isspace((unsigned char)*s)) s++;
    if (!*s) return false;
    double v = strtod(s, &end);
    if (errno || end == s) return false;
    while (isspace((unsigned char)*end)) end++;
    if (*end) return false;
    *out = v;
    return true;
}

static int parse_bool(const char *s) {
    static const char *const t[] = {"true", "yes", "on", "1"}, *const f[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, t[i]) == 0) return 1;
        if (strcasecmp(s, f[i]) == 0) return 0;
    }
    return -1;
}

/* The strings of a libconfig list or array setting (malloc'd, *n of them). 0, or -1
 * with msg naming the element that is not a string, or saying out of memory. */
static int list_from_setting(config_setting_t *v, char ***items, size_t *n, char *msg, size_t msglen) {
    int cnt = config_setting_length(v);
    char **l = calloc((size_t)cnt + 1, sizeof *l);
    *items = NULL;
    *n = 0;
    if (!l) {
        err_set(msg, msglen, "out of memory");
        return -1;
    }
    for (int i = 0; i < cnt; i++) {
        const char *s = config_setting_get_string_elem(v, i);
        if (!s || !(l[i] = strdup(s))) {
            if (s) err_set(msg, msglen, "out of memory");
            else err_set(msg, msglen, "element %d is not a string", i);
            list_free(l, (size_t)i);
            return -1;
        }
    }
    *items = l;
    *n = (size_t)cnt;
    return 0;
}

/* A list literal ["a", "b"] / ("a", "b") parsed by libconfig, else newline-separated
 * entries (empty lines skipped). 0, or -1 with msg: running out of memory is an error,
 * never a shorter list. */
static int split_list(const char *text, char ***items, size_t *n, char *msg, size_t msglen) {
    *items = NULL;
    *n = 0;
    const char *p = text;
    while (isspace((unsigned char)*p)) p++;
    if (*p == '[' || *p == '(') {
        libconfig_t lc;
        config_init(&lc);
        size_t tl = strlen(text);
        char *doc = malloc(tl + 16);
        if (!doc) {
            config_destroy(&lc);
            err_set(msg, msglen, "out of memory");
            return -1;
        }
        snprintf(doc, tl + 16, "v = %s;", text);
        int ok = config_read_string(&lc, doc);
        free(doc);
        config_setting_t *v = ok ? config_lookup(&lc, "v") : NULL;
        int rc = -1;
        if (!v || (config_setting_type(v) != CONFIG_TYPE_ARRAY && config_setting_type(v) != CONFIG_TYPE_LIST))
            /* no detail: libconfig's message could quote the (secret) text */
            err_set(msg, msglen, "not a list of strings: write [\"key=value\", ...]");
        else
            rc = list_from_setting(v, items, n, msg, msglen);
        config_destroy(&lc);
        return rc;
    }
    size_t cap = 4, cnt = 0;
    char **l = malloc(cap * sizeof *l);
    if (!l) goto oom;
    for (const char *s = text; *s;) {
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        if (len > 0 && s[len - 1] == '\r') len--;
        if (len > 0) {
            if (cnt == cap) {
                char **g = cap > SIZE_MAX / 2 / sizeof *l ? NULL : realloc(l, cap * 2 * sizeof *l);
                if (!g) goto oom;
                l = g;
                cap *= 2;
            }
            if (!(l[cnt] = strndup(s, len))) goto oom;
            cnt++;
        }
        s += nl ? (size_t)(nl - s) + 1 : strlen(s);
    }
    *items = l;
    *n = cnt;
    return 0;
oom:
    list_free(l, cnt);
    err_set(msg, msglen, "out of memory");
    return -1;
}

/* Sets a key from text (environment, --set). */
static int set_text(config_t *c, const config_key_t *k, const char *v, bool append, const char *where, char *err,
                    size_t errlen) {
    int64_t i;
    double d;
    if (append && k->type != CONFIG_STRLIST) return fail_key(err, errlen, where, k, "+= works on lists only");
    switch (k->type) {
    case CONFIG_STRING:
    case CONFIG_ENUM: return commit_string(c, k, v, where, err, errlen);
    case CONFIG_INT:
    case CONFIG_INT64:
        if (!parse_int(v, &i)) return fail_key(err, errlen, where, k, "\"%s\" is not an integer", v);
        return commit_number(c, k, 0, i, true, where, err, errlen);
    case CONFIG_DOUBLE:
        if (!parse_double(v, &d)) return fail_key(err, errlen, where, k, "\"%s\" is not a number", v);
        return commit_number(c, k, d, 0, false, where, err, errlen);
    case CONFIG_BOOL: {
        int b = parse_bool(v);
        if (b < 0) return fail_key(err, errlen, where, k, "\"%s\" is not true or false", v);
        *FIELD(c, k, bool) = b;
        return 0;
    }
    case CONFIG_STRLIST: {
        char **items;
        size_t n;
        char msg[200];
        if (append) {
            items = malloc(sizeof *items);
            if (items) items[0] = strdup(v);
            if (!items || !items[0]) {
                free(items);
                return fail_key(err, errlen, where, k, "out of memory");
            }
            return commit_list(c, k, items, 1, true, where, err, errlen);
        }
        if (split_list(v, &items, &n, msg, sizeof msg) != 0) return fail_key(err, errlen, where, k, "%s", msg);
        return commit_list(c, k, items, n, false, where, err, errlen);
    }
    }
    return fail_key(err, errlen, where, k, "unknown type");
}

/* ================================================================ lifecycle */

config_t *config_new(void) {
    config_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    char err[256];
    for (size_t i = 0; i < N_KEYS; i++) {
        const config_key_t *k = &KEYS[i];
        const char *d = k->def;
        int rc;
        if (k->type == CONFIG_STRING || k->type == CONFIG_ENUM) {
            size_t n = strlen(d);
            char *s = strndup(d + 1, n - 2); /* defaults are plain "..." literals */
            rc = s ? set_text(c, k, s, false, "default", err, sizeof err) : -1;
            free(s);
        } else {
            rc = set_text(c, k, d, false, "default", err, sizeof err);
        }
        if (rc != 0) { /* a broken table row: a programming error */
            fprintf(stderr, "config: bad default: %s\n", err);
            abort();
        }
    }
    return c;
}

void config_free(config_t *c) {
    if (!c) return;
    for (size_t i = 0; i < N_KEYS; i++) {
        const config_key_t *k = &KEYS[i];
        if (k->type == CONFIG_STRING || k->type == CONFIG_ENUM) free(*FIELD(c, k, char *));
        else if (k->type == CONFIG_STRLIST) list_free(*FIELD(c, k, char **), *(size_t *)((char *)c + k->count_offset));
    }
    free(c);
}

/* ================================================================ the file */

static bool is_section_prefix(const char *path) { /* "kafka", "batching.slo" */
    size_t n = strlen(path);
    for (size_t i = 0; i < N_KEYS; i++)
        if (strncmp(KEYS[i].path, path, n) == 0 && KEYS[i].path[n] == '.') return true;
    return false;
}

static int set_setting(config_t *c, const config_key_t *k, config_setting_t *s, const char *where, char *err,
                       size_t errlen) {
    int t = config_setting_type(s);
    switch (k->type) {
    case CONFIG_STRING:
    case CONFIG_ENUM:
        if (t != CONFIG_TYPE_STRING) return fail_key(err, errlen, where, k, "expected a string (in double quotes)");
        return commit_string(c, k, config_setting_get_string(s), where, err, errlen);
    case CONFIG_INT:
    case CONFIG_INT64:
        if (t == CONFIG_TYPE_FLOAT) return fail_key(err, errlen, where, k, "expected an integer, got a float");
        if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) return fail_key(err, errlen, where, k, "expected an integer");
        return commit_number(c, k, 0, (int64_t)config_setting_get_int64(s), true, where, err, errlen);
    case CONFIG_DOUBLE:
        if (t == CONFIG_TYPE_FLOAT) return commit_number(c, k, config_setting_get_float(s), 0, false, where, err, errlen);
        if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64)
            return commit_number(c, k, (double)config_setting_get_int64(s), 0, false, where, err, errlen);
        return fail_key(err, errlen, where, k, "expected a number");
    case CONFIG_BOOL:
        if (t != CONFIG_TYPE_BOOL) return fail_key(err, errlen, where, k, "expected true or false");
        *FIELD(c, k, bool) = config_setting_get_bool(s);
        return 0;
    case CONFIG_STRLIST: {
        if (t == CONFIG_TYPE_STRING && !k->secret) { /* a list of names: one string is a list of one
                                                        (kafka.properties must stay a list) */
            char **one = malloc(sizeof *one);
            if (one) one[0] = strdup(config_setting_get_string(s));
            if (!one || !one[0]) {
                free(one);
                return fail_key(err, errlen, where, k, "out of memory");
            }
            return commit_list(c, k, one, 1, false, where, err, errlen);
        }
        if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
            return fail_key(err, errlen, where, k, "expected a list of strings: [\"key=value\", ...]");
        char **items;
        size_t n;
        char msg[200];
        if (list_from_setting(s, &items, &n, msg, sizeof msg) != 0) return fail_key(err, errlen, where, k, "%s", msg);
        return commit_list(c, k, items, n, false, where, err, errlen);
    }
    }
    return -1;
}

static int walk_group(config_t *c, config_setting_t *g, const char *prefix, const char *file, char *err,
                      size_t errlen) {
    int n = config_setting_length(g);
    for (int i = 0; i < n; i++) {
        config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        char path[160], where[320];
        snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", config_setting_name(s));
        snprintf(where, sizeof where, "%s:%d", file, config_setting_source_line(s));
        const config_key_t *k = find_key(path);
        if (k) {
            if (set_setting(c, k, s, where, err, errlen) != 0) return -1;
            continue;
        }
        if (config_setting_type(s) == CONFIG_TYPE_GROUP && is_section_prefix(path)) {
            if (walk_group(c, s, path, file, err, errlen) != 0) return -1;
            continue;
        }
        err_set(err, errlen, "%s: %s: unknown key (see docs/configuration.md for every key)", where, path);
        return -1;
    }
    return 0;
}

static int load_lc(config_t *c, libconfig_t *lc, int ok, const char *file, char *err, size_t errlen) {
    if (!ok) {
        if (config_error_type(lc) == CONFIG_ERR_FILE_IO)
            err_set(err, errlen, "%s: cannot read the file; check the path (--config)", file);
        else
            err_set(err, errlen, "%s:%d: %s", file, config_error_line(lc), config_error_text(lc));
        return -1;
    }
    return walk_group(c, config_root_setting(lc), "", file, err, errlen);
}

int config_load_file(config_t *c, const char *path, char *err, size_t errlen) {
    libconfig_t lc;
    config_init(&lc);
    int rc = load_lc(c, &lc, config_read_file(&lc, path), path, err, errlen);
    config_destroy(&lc);
    return rc;
}

int config_load_string(config_t *c, const char *text, char *err, size_t errlen) {
    libconfig_t lc;
    config_init(&lc);
    int rc = load_lc(c, &lc, config_read_string(&lc, text), "<string>", err, errlen);
    config_destroy(&lc);
    return rc;
}

/* ================================================================ env and --set */

int config_apply_env(config_t *c, char *const *envp, char *err, size_t errlen) {
    if (!envp) envp = environ;
    for (size_t i = 0; i < N_KEYS; i++) {
        char name[96];
        config_env_name(KEYS[i].path, name, sizeof name);
        size_t nl = strlen(name);
        for (char *const *e = envp; e && *e; e++) {
            if (strncmp(*e, name, nl) != 0 || (*e)[nl] != '=') continue;
            char where[128];
            snprintf(where, sizeof where, "environment %s", name);
            if (set_text(c, &KEYS[i], *e + nl + 1, false, where, err, errlen) != 0) return -1;
        }
    }
    return 0;
}

int config_set(config_t *c, const char *assignment, char *err, size_t errlen) {
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment) {
        err_set(err, errlen, "--set %s: write section.key=value", eq ? "" : "(no '=')");
        return -1;
    }
    bool append = eq[-1] == '+';
    size_t kl = (size_t)(eq - assignment) - (append ? 1 : 0);
    char path[160];
    if (kl >= sizeof path) kl = sizeof path - 1;
    memcpy(path, assignment, kl);
    path[kl] = 0;
    const config_key_t *k = find_key(path);
    if (!k) {
        err_set(err, errlen, "--set: %s: unknown key (see docs/configuration.md for every key)", path);
        return -1;
    }
    return set_text(c, k, eq + 1, append, "--set", err, errlen);
}

const char *config_model_name(const config_t *c, const char *loaded) {
    for (size_t i = 0; i < c->model.n_name; i++)
        if (strcmp(c->model.name[i], "*") != 0) return c->model.name[i];
    return loaded;
}

int config_validate(const config_t *c, char *err, size_t errlen) {
    for (size_t i = 0; i < c->model.n_name; i++)
        if (!c->model.name[i][0]) {
            err_set(err, errlen, "model.name: entry %zu is empty; give a name, \"*\" or none ([] = the file's name)", i);
            return -1;
        }
    if (c->worker.queue_low >= c->worker.queue_high) {
        err_set(err, errlen, "worker.queue_low (%d) must be below worker.queue_high (%d)", c->worker.queue_low,
                 c->worker.queue_high);
        return -1;
    }
    if (c->input.default_max_tokens > c->input.max_tokens_cap) {
        err_set(err, errlen, "input.default_max_tokens (%d) is above input.max_tokens_cap (%d)",
                 c->input.default_max_tokens, c->input.max_tokens_cap);
        return -1;
    }
    if (!strcmp(c->delivery.mode, "exactly_once") && c->delivery.transaction_timeout_ms < 2 * c->delivery.transaction_ms) {
        err_set(err, errlen, "delivery.transaction_timeout_ms (%d) must be at least twice delivery.transaction_ms (%d)",
                 c->delivery.transaction_timeout_ms, c->delivery.transaction_ms);
        return -1;
    }
    /* 0 leaves the step's token budget to the backend (backend_defaults_t); under 16
     * tokens a prompt would be prefilled a few tokens at a time */
    if (c->batching.max_batch_tokens != 0 && c->batching.max_batch_tokens < 16) {
        err_set(err, errlen, "batching.max_batch_tokens: %d is too small; use 0 (the backend's default) or at least 16",
                 c->batching.max_batch_tokens);
        return -1;
    }
    if (c->stats.interval_ms != 0 && c->stats.interval_ms < 100) {
        err_set(err, errlen, "stats.interval_ms: %d is too short; use 0 (off) or >= 100", c->stats.interval_ms);
        return -1;
    }
    /* results or DLQ records written back into a request topic would loop */
    const char *out[] = {c->kafka.topic_results, c->kafka.topic_dlq, c->kafka.topic_stats};
    const char *names[] = {"kafka.topic_results", "kafka.topic_dlq", "kafka.topic_stats"};
    for (size_t i = 0; i < 3; i++) {
        const char *p = c->kafka.topic_requests;
        size_t n = strlen(out[i]);
        for (;;) {
            const char *comma = strchr(p, ',');
            size_t l = comma ? (size_t)(comma - p) : strlen(p);
            if (l == n && strncmp(p, out[i], n) == 0) {
                err_set(err, errlen, "%s (%s) is also a request topic (kafka.topic_requests); use another topic",
                         names[i], out[i]);
                return -1;
            }
            if (!comma) break;
            p = comma + 1;
        }
    }
    return 0;
}

int config_load(config_t *c, const char *path, char *const *envp, const char *const *sets, size_t n_sets, char *err,
                size_t errlen) {
    if (path && config_load_file(c, path, err, errlen) != 0) return -1;
    if (config_apply_env(c, envp, err, errlen) != 0) return -1;
    for (size_t i = 0; i < n_sets; i++)
        if (config_set(c, sets[i], err, errlen) != 0) return -1;
    return config_validate(c, err, errlen);
}

/* ================================================================ rendering */

static void render_quoted(buf_t *b, const char *s, size_t n) {
    buf_printf(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') buf_printf(b, "\\%c", ch);
        else if (ch < 0x20) buf_printf(b, "\\x%02x", ch);
        else buf_printf(b, "%c", ch);
    }
    buf_printf(b, "\"");
}

static void render_value(buf_t *b, const config_t *c, const config_key_t *k) {
    switch (k->type) {
    case CONFIG_STRING:
    case CONFIG_ENUM: {
        const char *s = *FIELD(c, k, char *const);
        render_quoted(b, s, strlen(s));
        break;
    }
    case CONFIG_INT: buf_printf(b, "%d", *FIELD(c, k, const int)); break;
    case CONFIG_INT64: {
        int64_t v = *FIELD(c, k, const int64_t);
        buf_printf(b, "%" PRId64 "%s", v, v > INT32_MAX || v < INT32_MIN ? "L" : "");
        break;
    }
    case CONFIG_DOUBLE: {
        char t[40];
        snprintf(t, sizeof t, "%.17g", *FIELD(c, k, const double));
        char u[40];
        snprintf(u, sizeof u, "%.15g", *FIELD(c, k, const double)); /* shortest that reads back the same */
        const char *use = strtod(u, NULL) == *FIELD(c, k, const double) ? u : t;
        buf_printf(b, "%s%s", use, strpbrk(use, ".eEn") ? "" : ".0");
        break;
    }
    case CONFIG_BOOL: buf_printf(b, "%s", *FIELD(c, k, const bool) ? "true" : "false"); break;
    case CONFIG_STRLIST: {
        char *const *l = *FIELD(c, k, char **const);
        size_t n = *(const size_t *)((const char *)c + k->count_offset);
        buf_printf(b, "[");
        for (size_t i = 0; i < n; i++) {
            buf_printf(b, "%s", i ? ", " : "");
            if (k->secret) {
                const char *eq = strchr(l[i], '=');
                size_t kl = eq ? (size_t)(eq - l[i]) : 0;
                char tmp[200];
                snprintf(tmp, sizeof tmp, "%.*s=<redacted>", (int)(kl < 150 ? kl : 150), l[i]);
                render_quoted(b, tmp, strlen(tmp));
            } else {
                render_quoted(b, l[i], strlen(l[i]));
            }
        }
        buf_printf(b, "]");
        break;
    }
    }
}

/* Section of a path: "batching.slo.ttft_ms" -> groups "batching", "slo"; leaf "ttft_ms". */
char *config_render(const config_t *c) {
    buf_t b = {0};
    buf_printf(&b, "# krill effective configuration (kafka.properties values redacted)\n");
    char open[2][64] = {"", ""};
    int depth = 0;
    for (size_t i = 0; i < N_KEYS; i++) {
        const config_key_t *k = &KEYS[i];
        char parts[3][64] = {"", "", ""};
        int np = 0;
        for (const char *p = k->path; *p && np < 3;) {
            const char *dot = strchr(p, '.');
            size_t l = dot ? (size_t)(dot - p) : strlen(p);
            snprintf(parts[np++], 64, "%.*s", (int)l, p);
            p += l + (dot ? 1 : 0);
        }
        int groups = np - 1; /* 1 or 2 */
        /* close groups that differ */
        int keep = 0;
        while (keep < depth && keep < groups && strcmp(open[keep], parts[keep]) == 0) keep++;
        while (depth > keep) {
            depth--;
            buf_printf(&b, "%*s};\n", depth * 2, "");
        }
        while (depth < groups) {
            buf_printf(&b, "%*s%s = {\n", depth * 2, "", parts[depth]);
            snprintf(open[depth], 64, "%s", parts[depth]);
            depth++;
        }
        buf_printf(&b, "%*s%s = ", depth * 2, "", parts[np - 1]);
        render_value(&b, c, k);
        buf_printf(&b, ";\n");
    }
    while (depth > 0) {
        depth--;
        buf_printf(&b, "%*s};\n", depth * 2, "");
    }
    if (b.oom) {
        buf_free(&b);
        return NULL;
    }
    return buf_detach(&b, NULL);
}
