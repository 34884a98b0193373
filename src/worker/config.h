/* config.h — krill's settings: one table, three sources (docs/configuration.md).
 * (Where this part sits among the others: docs/architecture.md.)
 *
 * Precedence (later wins): the table's defaults < the libconfig file <
 * environment KRILL_<SECTION>_<KEY> (e.g. KRILL_KAFKA_BROKERS, KRILL_BATCHING_SLO_TTFT_MS)
 * < --set section.key=value. docs/configuration.md lists every key (generated from
 * the table by build/krill-config-doc; test_config checks it) and conf/krill.cfg
 * documents each with its default.
 *
 * Rules it keeps:
 * - Every key is one row of the table in config.c (name, type, bounds, default,
 *   target field, doc). Unknown keys in the file or --set, and bad values anywhere,
 *   are errors naming the key's path ("batching.max_seqs: 0 is below the minimum 1").
 *   Unknown KRILL_* environment variables are ignored (KRILL_BUILD, KRILL_KAFKA_PORT …
 *   belong to scripts).
 * - kafka.properties values may hold secrets (SASL passwords, TLS keys): they never
 *   appear in an error message or in config_render(); only their keys do.
 * - Lists from the environment or --set: a libconfig list literal ["a=b", "c=d"], or
 *   newline-separated entries; "--set kafka.properties+=key=value" appends one entry.
 * - config_t is krill's; libconfig's own config_t is renamed inside config.c, so do
 *   not include <libconfig.h> next to this header (nothing else needs it). */
#ifndef KRILL_CONFIG_H
#define KRILL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    struct {
        char *brokers;          /* bootstrap.servers */
        char *group;            /* group.id */
        char *client_id;        /* client.id */
        char *topic_requests;   /* comma-separated topic list to subscribe */
        char *topic_results;
        char *topic_dlq;
        char *topic_stats;
        char **properties;      /* "key=value" (secret values), passed verbatim; see kafka_property_split (kafka.h) */
        size_t n_properties;
    } kafka;
    struct {
        char *path;
        char **name;            /* served model names (aliases): accepted request "model" values;
                                   "*" accepts any; none = the loaded file's name (config_model_name) */
        size_t n_name;
        char *backend;          /* auto | cpu | cuda */
        char *dtype;            /* bf16 | f16 */
        char *cpu_weights;      /* auto | f32 | q8 | q4 */
        char *gpu_weights;      /* auto | bf16 | native */
        int context;            /* 0 = the model's */
        double gpu_memory_fraction;
        int threads;            /* cpu backend; 0 = online cores */
        int kv_block_size;      /* 0 = engine default */
        int64_t kv_cache_tokens;/* cpu: 0 = engine default */
        int64_t seed;           /* base seed for requests without one; 0 = random */
    } model;
    struct {
        int max_seqs;           /* 0 = backend default */
        int max_batch_tokens;   /* 0 = engine default */
        int max_wait_ms;        /* wait this long for more requests before a step with few */
        bool prefix_cache;      /* share KV blocks of common prompt prefixes */
        struct {
            double ttft_ms;     /* reserved: target time to first token; 0 = none */
            double tpot_ms;     /* reserved: target time per output token; 0 = none */
        } slo;
    } batching;
    struct {
        int64_t max_message_bytes;
        int max_prompt_tokens;  /* 0 = context - max_tokens */
        int max_tokens_cap;
        int default_max_tokens;
        bool parse_special_in_content; /* control-token strings in chat content are tokens */
        bool parse_special_in_prompt;  /* ... in a /v1/completions prompt string */
        char **ignore_unknown_fields;  /* body fields krill does not implement, accepted and ignored */
        size_t n_ignore_unknown_fields;
        int max_n;                     /* largest n (choices per request) */
    } input;
    struct {
        char *format;           /* auto | json | msgpack */
    } output;
    struct {
        int interval_ms;        /* 0 = no stats records */
        char *format;           /* json | msgpack */
    } stats;
    struct {
        char *listen;           /* "host:port" | "off" */
    } metrics;
    struct {
        char *id;               /* "" = <hostname>-<pid> (chosen by the worker) */
        int drain_timeout_ms;
        int revoke_timeout_ms;
        int flush_timeout_ms;
        int poll_timeout_ms;
        int queue_high;         /* pause partitions at this many queued requests */
        int queue_low;          /* resume below this many */
        int health_grace_ms;    /* /healthz 503 once no broker was reachable this long */
    } worker;
    struct {
        char *level;            /* debug | info | warn | error | off */
    } log;
    struct {
        char *mode;             /* at_least_once | exactly_once (docs/delivery.md) */
        int transaction_ms;     /* exactly_once: commit at least this often */
        int transaction_max_answers; /* ... or after this many answers */
        int transaction_timeout_ms;  /* the producer's transaction.timeout.ms */
        int metadata_max_bytes; /* the cluster's offset.metadata.max.bytes */
    } delivery;
} config_t;

typedef enum { CONFIG_STRING, CONFIG_INT, CONFIG_INT64, CONFIG_DOUBLE, CONFIG_BOOL, CONFIG_ENUM,
               CONFIG_STRLIST } config_type_t;

/* One row of the table (read-only view for the docs tool, tools and tests). */
typedef struct {
    const char *path;      /* "section.key" or "section.sub.key" */
    config_type_t type;
    double min, max;       /* numeric bounds (inclusive) */
    const char *def;       /* default as a libconfig literal: "\"127.0.0.1:9092\"", "64", "[]" */
    const char *choices;   /* CONFIG_ENUM: "auto|cpu|cuda" */
    bool secret;           /* values never printed */
    const char *doc;       /* one line */
    size_t offset;         /* of the field in config_t */
    size_t count_offset;   /* CONFIG_STRLIST: of its size_t count */
    /* extra check of a value already of the right type; 0 or -1 with err (no value echoed
     * when secret) */
    int (*check)(const void *field, char *err, size_t errlen);
} config_key_t;

const config_key_t *config_keys(size_t *n);
const char *config_type_name(config_type_t t); /* "string", "int", ... */

/* The served model name: the first of model.name that is not "*", else loaded (the
 * file's general.name or file name, engine_info_t.model_name). */
const char *config_model_name(const config_t *c, const char *loaded);

/* A config holding every default. NULL on out of memory. */
config_t *config_new(void);
void config_free(config_t *c); /* accepts NULL */

/* Each returns 0, or -1 with err naming the key (and what to do). */
int config_load_file(config_t *c, const char *path, char *err, size_t errlen);
int config_load_string(config_t *c, const char *text, char *err, size_t errlen);
/* envp NULL = environ. */
int config_apply_env(config_t *c, char *const *envp, char *err, size_t errlen);
/* "section.key=value" or "section.key+=value" (lists). */
int config_set(config_t *c, const char *assignment, char *err, size_t errlen);
/* Cross-key checks (queue_low < queue_high, default_max_tokens <= max_tokens_cap, ...). */
int config_validate(const config_t *c, char *err, size_t errlen);
/* All of it in order: file (NULL = none), env, sets, validate. */
int config_load(config_t *c, const char *path, char *const *envp, const char *const *sets,
                size_t n_sets, char *err, size_t errlen);

/* The effective configuration as libconfig text (loadable again when nothing is
 * secret); kafka.properties values are replaced by "<redacted>". malloc'd, NULL when
 * out of memory. Written by krill rather than libconfig's config_write: libconfig 1.5
 * (Debian 12) prints doubles with 15 digits (0.1 + 0.2 reads back as 0.3), and its
 * layout differs between 1.5 and 1.7; this text is the same everywhere and exact. */
char *config_render(const config_t *c);
/* The environment variable of a key: "kafka.topic_dlq" -> "KRILL_KAFKA_TOPIC_DLQ". */
void config_env_name(const char *path, char *out, size_t outlen);

#endif
