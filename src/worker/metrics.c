/* metrics.c — see metrics.h. The registry is a fixed struct of atomics; rendering walks
 * a table of family descriptors in a fixed order. libmicrohttpd runs the HTTP side on
 * its own internal thread; handlers only read atomics (and briefly lock the lag table).
 *
 * Doubles live in _Atomic uint64_t as their bit patterns: a store/load is one atomic
 * access, an add is a compare-and-swap loop (rare contention: a few updates per
 * request or step, never per token). */
#include "clock.h"
#include "err.h"
#include "httpguard.h"
#include "metrics.h"
#include "procstat.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"

#ifndef KRILL_VERSION
#define KRILL_VERSION "dev"
#endif

/* ---------------------------------------------------------------- atomic doubles */

static uint64_t dbl_bits(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}
static double bits_dbl(uint64_t u) {
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}
static void adbl_set(_Atomic uint64_t *a, double d) { atomic_store_explicit(a, dbl_bits(d), memory_order_relaxed); }
static double adbl_get(_Atomic uint64_t *a) { return bits_dbl(atomic_load_explicit(a, memory_order_relaxed)); }
static void adbl_add(_Atomic uint64_t *a, double d) {
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(a, &old, dbl_bits(bits_dbl(old) + d), memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}
/* Exponentially weighted mean: m += alpha * (x - m); the first sample sets it. */
static void adbl_ewma(_Atomic uint64_t *a, double x, double alpha) {
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    for (;;) {
        double m = bits_dbl(old);
        double nm = isnan(m) ? x : m + alpha * (x - m);
        if (atomic_compare_exchange_weak_explicit(a, &old, dbl_bits(nm), memory_order_relaxed, memory_order_relaxed))
            return;
    }
}
static void acnt_add(_Atomic uint64_t *a, uint64_t n) { atomic_fetch_add_explicit(a, n, memory_order_relaxed); }
static uint64_t acnt_get(_Atomic uint64_t *a) { return atomic_load_explicit(a, memory_order_relaxed); }

/* ---------------------------------------------------------------- histograms */

#define HIST_MAX_BUCKETS 24

typedef struct {
    const double *bounds; /* (n) ascending upper bounds; +Inf is implicit */
    int n;
    _Atomic uint64_t counts[HIST_MAX_BUCKETS + 1]; /* per bucket, not cumulative; [n] = above the last bound */
    _Atomic uint64_t sum_bits;
} hist_t;

static const double b_ttft[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120};
static const double b_tpot[] = {0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1,
                                0.15,  0.2,    0.3,   0.5,  1,    2.5};
static const double b_latency[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600};
static const double b_queue[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
static const double b_txn[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
static const double b_tokens[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384};

#define NB(a) ((int)(sizeof(a) / sizeof((a)[0])))

static void hist_init(hist_t *h, const double *bounds, int n) {
    CHECK(n <= HIST_MAX_BUCKETS);
    h->bounds = bounds;
    h->n = n;
    for (int i = 0; i <= n; i++) atomic_init(&h->counts[i], 0);
    atomic_init(&h->sum_bits, dbl_bits(0.0));
}

static void hist_observe(hist_t *h, double v) {
    if (isnan(v)) return;
    int i = 0;
    while (i < h->n && v > h->bounds[i]) i++; /* le semantics: v <= bound lands in that bucket */
    acnt_add(&h->counts[i], 1);
    adbl_add(&h->sum_bits, v);
}

/* ---------------------------------------------------------------- labelled counters */

#define LABEL_MAX 40

typedef struct {
    pthread_mutex_t add_mu; /* taken only to add a new label value (at most METRICS_MAX_LABELS times) */
    _Atomic int n;          /* published slots */
    struct {
        char value[LABEL_MAX];
        _Atomic uint64_t count;
    } slot[METRICS_MAX_LABELS];
    _Atomic uint64_t other; /* values beyond the table or too long */
} labelled_t;

static void labelled_init(labelled_t *l) {
    pthread_mutex_init(&l->add_mu, NULL);
    atomic_init(&l->n, 0);
    for (int i = 0; i < METRICS_MAX_LABELS; i++) atomic_init(&l->slot[i].count, 0);
    atomic_init(&l->other, 0);
}

static void labelled_add(labelled_t *l, const char *value, uint64_t by) {
    if (!value || strlen(value) >= LABEL_MAX) {
        acnt_add(&l->other, by);
        return;
    }
    int n = atomic_load_explicit(&l->n, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (strcmp(l->slot[i].value, value) == 0) {
            acnt_add(&l->slot[i].count, by);
            return;
        }
    pthread_mutex_lock(&l->add_mu);
    n = atomic_load_explicit(&l->n, memory_order_acquire);
    int i = 0;
    while (i < n && strcmp(l->slot[i].value, value) != 0) i++;
    if (i == n && n < METRICS_MAX_LABELS) {
        snprintf(l->slot[n].value, LABEL_MAX, "%s", value);
        atomic_store_explicit(&l->n, n + 1, memory_order_release); /* publishes value */
    }
    pthread_mutex_unlock(&l->add_mu);
    if (i < METRICS_MAX_LABELS)
        acnt_add(&l->slot[i].count, by);
    else
        acnt_add(&l->other, by);
}

/* ---------------------------------------------------------------- the registry */

struct metrics {
    /* counters */
    labelled_t requests; /* {status, finish_reason}: values "<status>\t<finish_reason>" */
    labelled_t dlq;      /* {code} */
    labelled_t resets;   /* {topic}: partition offsets went backwards */
    labelled_t txns;     /* {outcome}: exactly-once transactions */
    _Atomic uint64_t answers_ahead; /* gauge: answered offsets above the watermarks */
    _Atomic uint64_t prompt_tokens, generated_tokens, steps;
    _Atomic uint64_t busy_bits; /* seconds spent in engine steps */
    _Atomic uint64_t preemptions; /* the engine's running total (engine_stats_t) */
    _Atomic uint64_t prefix_hits, prefix_queries, prefix_blocks; /* the engine's prefix cache totals */
    /* gauges (double bits) */
    _Atomic uint64_t running, waiting, kv_ratio, batch_size, pending_prompt;
    _Atomic uint64_t slo_enabled, slo_max_seqs, slo_max_batch_tokens, slo_ttft_p95, slo_tpot_p95;
    /* estimates for the backlog: EWMAs (NaN until the first sample) */
    _Atomic uint64_t mean_prompt, mean_completion; /* tokens per answered request */
    _Atomic uint64_t throughput;                   /* step tokens per busy second */
    double tp_tokens, tp_seconds;                  /* engine thread only: decayed sums */
    /* histograms */
    hist_t ttft, tpot, latency, queue, step_tokens;
    hist_t txn; /* seconds to commit one transaction */
    /* health */
    _Atomic int consumer_state;
    _Atomic uint64_t heartbeat_bits; /* monotonic seconds; 0 = never */
    _Atomic uint64_t health_timeout_bits;
    /* Kafka health (io thread writes, HTTP thread reads) */
    _Atomic int kafka_connected, kafka_auth_failed, consumer_joined;
    _Atomic uint64_t kafka_down_since_bits; /* monotonic seconds since no broker answers */
    _Atomic uint64_t health_grace_bits;
    labelled_t kafka_errors; /* {kind} */
    /* consumer lag (replaced as a whole by the io thread) */
    pthread_mutex_t lag_mu;
    metrics_lag_t *lag; /* (METRICS_MAX_LAG) */
    size_t n_lag;
    /* info */
    char info_worker[128], info_backend[32], info_device[128], info_model[128];
    /* server */
    struct MHD_Daemon *daemon;
    _Atomic int started; /* the daemon is up: MHD log lines go to the log, not start_err */
    int port;
    char start_err[256]; /* MHD's error text while starting */
    httpguard_t *guard; /* while serving: deadline and cap for connections */
};

metrics_t *metrics_new(void) {
    metrics_t *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->lag = calloc(METRICS_MAX_LAG, sizeof *m->lag);
    if (!m->lag) {
        free(m);
        return NULL;
    }
    labelled_init(&m->requests);
    labelled_init(&m->dlq);
    labelled_init(&m->resets);
    labelled_init(&m->txns);
    atomic_init(&m->answers_ahead, dbl_bits(0.0));
    hist_init(&m->txn, b_txn, NB(b_txn));
    atomic_init(&m->prompt_tokens, 0);
    atomic_init(&m->generated_tokens, 0);
    atomic_init(&m->steps, 0);
    atomic_init(&m->busy_bits, dbl_bits(0.0));
    atomic_init(&m->preemptions, 0);
    atomic_init(&m->prefix_hits, 0);
    atomic_init(&m->prefix_queries, 0);
    atomic_init(&m->prefix_blocks, 0);
    _Atomic uint64_t *zeros[] = {&m->running,      &m->waiting,         &m->kv_ratio,
                                 &m->batch_size,   &m->pending_prompt,  &m->slo_enabled,
                                 &m->slo_max_seqs, &m->slo_max_batch_tokens};
    for (size_t i = 0; i < sizeof zeros / sizeof zeros[0]; i++) atomic_init(zeros[i], dbl_bits(0.0));
    atomic_init(&m->slo_ttft_p95, dbl_bits(NAN));
    atomic_init(&m->slo_tpot_p95, dbl_bits(NAN));
    atomic_init(&m->mean_prompt, dbl_bits(NAN));
    atomic_init(&m->mean_completion, dbl_bits(NAN));
    atomic_init(&m->throughput, dbl_bits(NAN));
    hist_init(&m->ttft, b_ttft, NB(b_ttft));
    hist_init(&m->tpot, b_tpot, NB(b_tpot));
    hist_init(&m->latency, b_latency, NB(b_latency));
    hist_init(&m->queue, b_queue, NB(b_queue));
    hist_init(&m->step_tokens, b_tokens, NB(b_tokens));
    atomic_init(&m->consumer_state, METRICS_CONSUMER_STARTING);
    atomic_init(&m->heartbeat_bits, dbl_bits(0.0));
    atomic_init(&m->health_timeout_bits, dbl_bits(60.0));
    atomic_init(&m->kafka_connected, 0);
    atomic_init(&m->kafka_auth_failed, 0);
    atomic_init(&m->consumer_joined, 0);
    atomic_init(&m->kafka_down_since_bits, dbl_bits(clock_now_s()));
    atomic_init(&m->health_grace_bits, dbl_bits(30.0));
    labelled_init(&m->kafka_errors);
    pthread_mutex_init(&m->lag_mu, NULL);
    atomic_init(&m->started, 0);
    return m;
}

void metrics_free(metrics_t *m) {
    if (!m) return;
    if (m->daemon) MHD_stop_daemon(m->daemon);
    httpguard_free(m->guard); /* after the daemon: its callbacks use the guard */
    pthread_mutex_destroy(&m->lag_mu);
    pthread_mutex_destroy(&m->requests.add_mu);
    pthread_mutex_destroy(&m->dlq.add_mu);
    pthread_mutex_destroy(&m->kafka_errors.add_mu);
    pthread_mutex_destroy(&m->resets.add_mu);
    pthread_mutex_destroy(&m->txns.add_mu);
    free(m->lag);
    free(m);
}

/* ---------------------------------------------------------------- setters */

static void copy_str(char *dst, size_t cap, const char *src) { snprintf(dst, cap, "%s", src ? src : ""); }

void metrics_set_info(metrics_t *m, const char *worker, const char *backend, const char *device,
                      const char *model) {
    if (!m) return;
    copy_str(m->info_worker, sizeof m->info_worker, worker);
    copy_str(m->info_backend, sizeof m->info_backend, backend);
    copy_str(m->info_device, sizeof m->info_device, device);
    copy_str(m->info_model, sizeof m->info_model, model);
}

void metrics_request_done(metrics_t *m, int status_code, const char *finish_reason, int prompt_tokens,
                          int completion_tokens, double queue_s, double ttft_s, double tpot_s, double total_s) {
    if (!m) return;
    /* finish_reason from a closed set, so the series stay bounded: an error answer is
     * "error" whatever the engine said */
    const char *fr = status_code != 200 || !finish_reason ? "error"
                     : strcmp(finish_reason, "length") == 0 ? "length"
                                                              : "stop";
    char key[32];
    snprintf(key, sizeof key, "%d\t%s", status_code, fr);
    labelled_add(&m->requests, key, 1);
    if (prompt_tokens > 0) acnt_add(&m->prompt_tokens, (uint64_t)prompt_tokens);
    if (completion_tokens > 0) acnt_add(&m->generated_tokens, (uint64_t)completion_tokens);
    if (queue_s >= 0) hist_observe(&m->queue, queue_s);
    if (ttft_s >= 0) hist_observe(&m->ttft, ttft_s);
    if (tpot_s >= 0) hist_observe(&m->tpot, tpot_s);
    if (total_s >= 0) hist_observe(&m->latency, total_s);
    if (status_code == 200) { /* the mix of served work, for the backlog estimate */
        adbl_ewma(&m->mean_prompt, prompt_tokens > 0 ? prompt_tokens : 0, 1.0 / 64);
        adbl_ewma(&m->mean_completion, completion_tokens > 0 ? completion_tokens : 0, 1.0 / 64);
    }
}

void metrics_set_preemptions(metrics_t *m, uint64_t total) {
    if (!m) return;
    atomic_store_explicit(&m->preemptions, total, memory_order_relaxed);
}

void metrics_set_prefix_cache(metrics_t *m, uint64_t hit_tokens, uint64_t query_tokens, int64_t blocks) {
    if (!m) return;
    atomic_store_explicit(&m->prefix_hits, hit_tokens, memory_order_relaxed);
    atomic_store_explicit(&m->prefix_queries, query_tokens, memory_order_relaxed);
    atomic_store_explicit(&m->prefix_blocks, (uint64_t)(blocks > 0 ? blocks : 0), memory_order_relaxed);
}

void metrics_dlq(metrics_t *m, const char *code) {
    if (!m) return;
    labelled_add(&m->dlq, code && *code ? code : "unknown", 1);
}

void metrics_partition_reset(metrics_t *m, const char *topic) {
    if (!m) return;
    labelled_add(&m->resets, topic && *topic ? topic : "unknown", 1);
}

/* Throughput horizon: the decayed sums forget busy time with this time constant. */
#define THROUGHPUT_TAU_S 30.0

void metrics_step(metrics_t *m, int seqs, int tokens, double step_s) {
    if (!m) return;
    acnt_add(&m->steps, 1);
    adbl_set(&m->batch_size, seqs);
    if (tokens > 0) hist_observe(&m->step_tokens, tokens);
    if (step_s > 0) {
        adbl_add(&m->busy_bits, step_s);
        double d = exp(-step_s / THROUGHPUT_TAU_S);
        m->tp_tokens = m->tp_tokens * d + (tokens > 0 ? tokens : 0);
        m->tp_seconds = m->tp_seconds * d + step_s;
        if (m->tp_seconds > 0 && m->tp_tokens > 0) adbl_set(&m->throughput, m->tp_tokens / m->tp_seconds);
    }
}

void metrics_set_engine(metrics_t *m, int running, int waiting, double kv_usage_ratio) {
    if (!m) return;
    adbl_set(&m->running, running);
    adbl_set(&m->waiting, waiting);
    adbl_set(&m->kv_ratio, kv_usage_ratio);
}

void metrics_transaction(metrics_t *m, const char *outcome, double seconds) {
    if (!m) return;
    labelled_add(&m->txns, outcome, 1);
    if (seconds >= 0) hist_observe(&m->txn, seconds);
}

void metrics_set_answers_ahead(metrics_t *m, int64_t n) {
    if (m) adbl_set(&m->answers_ahead, (double)(n > 0 ? n : 0));
}

void metrics_set_pending_prompt_tokens(metrics_t *m, int64_t tokens) {
    if (!m) return;
    adbl_set(&m->pending_prompt, (double)(tokens > 0 ? tokens : 0));
}

void metrics_set_slo(metrics_t *m, bool enabled, int max_seqs, int max_batch_tokens, double ttft_p95_s,
                     double tpot_p95_s) {
    if (!m) return;
    adbl_set(&m->slo_enabled, enabled ? 1 : 0);
    adbl_set(&m->slo_max_seqs, max_seqs);
    adbl_set(&m->slo_max_batch_tokens, max_batch_tokens);
    adbl_set(&m->slo_ttft_p95, ttft_p95_s >= 0 ? ttft_p95_s : NAN);
    adbl_set(&m->slo_tpot_p95, tpot_p95_s >= 0 ? tpot_p95_s : NAN);
}

void metrics_set_consumer_state(metrics_t *m, metrics_consumer_state_t st) {
    if (!m) return;
    atomic_store(&m->consumer_state, (int)st);
}

void metrics_engine_heartbeat(metrics_t *m) {
    if (!m) return;
    adbl_set(&m->heartbeat_bits, clock_now_s());
}

void metrics_set_health_timeout(metrics_t *m, double seconds) {
    if (!m || !(seconds > 0)) return;
    adbl_set(&m->health_timeout_bits, seconds);
}

void metrics_set_kafka_connection(metrics_t *m, bool connected, bool auth_failed) {
    if (!m) return;
    /* the time first, so a reader that sees "disconnected" never reads a stale start */
    if (!connected && atomic_load(&m->kafka_connected)) adbl_set(&m->kafka_down_since_bits, clock_now_s());
    atomic_store(&m->kafka_auth_failed, auth_failed && !connected);
    atomic_store(&m->kafka_connected, connected);
}

void metrics_set_health_grace(metrics_t *m, double grace_s) {
    if (!m || !(grace_s >= 0)) return;
    adbl_set(&m->health_grace_bits, grace_s);
}

void metrics_consumer_joined(metrics_t *m) {
    if (!m) return;
    atomic_store(&m->consumer_joined, 1);
}

void metrics_kafka_error(metrics_t *m, const char *kind) {
    if (!m) return;
    labelled_add(&m->kafka_errors, kind, 1);
}

void metrics_set_lag(metrics_t *m, const metrics_lag_t *lag, size_t n) {
    if (!m) return;
    if (n > METRICS_MAX_LAG) n = METRICS_MAX_LAG;
    pthread_mutex_lock(&m->lag_mu);
    if (n) memcpy(m->lag, lag, n * sizeof *lag);
    m->n_lag = n;
    pthread_mutex_unlock(&m->lag_mu);
}

/* ---------------------------------------------------------------- librdkafka statistics */

int metrics_parse_rdkafka_stats(const char *json, size_t len, metrics_lag_t *out, size_t max, size_t *n,
                                char *err, size_t errlen) {
    *n = 0;
    json_error_t je;
    json_t *root = json_loadb(json, len, 0, &je);
    if (!root || !json_is_object(root)) {
        err_set(err, errlen, "librdkafka statistics: not a JSON object (%s at line %d); it comes from stats_cb",
                 root ? "wrong type" : je.text, root ? 0 : je.line);
        json_decref(root);
        return -1;
    }
    json_t *type = json_object_get(root, "type");
    if (json_is_string(type) && strcmp(json_string_value(type), "consumer") != 0) {
        json_decref(root);
        return 0;
    }
    json_t *topics = json_object_get(root, "topics");
    if (topics && !json_is_object(topics)) {
        err_set(err, errlen, "librdkafka statistics: \"topics\" is not an object");
        json_decref(root);
        return -1;
    }
    const char *tname;
    json_t *t;
    json_object_foreach(topics, tname, t) {
        json_t *parts = json_object_get(t, "partitions");
        if (!json_is_object(parts)) continue;
        const char *pkey;
        json_t *p;
        json_object_foreach(parts, pkey, p) {
            json_t *jp = json_object_get(p, "partition");
            json_t *jlag = json_object_get(p, "consumer_lag");
            json_t *desired = json_object_get(p, "desired");
            if (!json_is_integer(jp) || !json_is_integer(jlag)) continue;
            json_int_t part = json_integer_value(jp), lag = json_integer_value(jlag);
            if (part < 0 || part > INT32_MAX || lag < 0) continue; /* -1: the internal UA partition / unknown lag */
            if (desired && !json_is_true(desired)) continue;       /* known but not assigned to us */
            if (strlen(tname) >= sizeof out->topic) continue;
            if (*n >= max) break;
            metrics_lag_t *o = &out[(*n)++];
            snprintf(o->topic, sizeof o->topic, "%s", tname);
            o->partition = (int32_t)part;
            o->lag = lag;
        }
    }
    json_decref(root);
    return 1;
}

int metrics_update_from_rdkafka_stats(metrics_t *m, const char *json, size_t len, char *err, size_t errlen) {
    if (!m) return 0;
    size_t n = 0;
    metrics_lag_t *tmp = malloc(METRICS_MAX_LAG * sizeof *tmp); /* once per stats interval */
    if (!tmp) {
        err_set(err, errlen, "out of memory parsing librdkafka statistics");
        return -1;
    }
    int rc = metrics_parse_rdkafka_stats(json, len, tmp, METRICS_MAX_LAG, &n, err, errlen);
    if (rc == 1) metrics_set_lag(m, tmp, n);
    free(tmp);
    return rc;
}

/* ---------------------------------------------------------------- health */

int metrics_health(metrics_t *m, char *why, size_t whylen) {
    static const char *const names[] = {"starting", "waiting", "assigned", "stopped"};
    int st = atomic_load(&m->consumer_state);
    double now = clock_now_s();
    double hb = adbl_get(&m->heartbeat_bits), limit = adbl_get(&m->health_timeout_bits);
    double age = hb > 0 ? now - hb : -1;
    bool connected = atomic_load(&m->kafka_connected), auth_failed = atomic_load(&m->kafka_auth_failed);
    bool joined = atomic_load(&m->consumer_joined);
    double down_s = connected ? 0 : now - adbl_get(&m->kafka_down_since_bits);
    double grace = adbl_get(&m->health_grace_bits);
    bool consumer_ok = st == METRICS_CONSUMER_WAITING || st == METRICS_CONSUMER_ASSIGNED;
    bool engine_ok = hb > 0 && age <= limit;
    bool kafka_ok = connected || (!auth_failed && down_s <= grace);
    bool ok = consumer_ok && engine_ok && kafka_ok && joined;
    if (why && whylen) {
        const char *sn = st >= 0 && st <= METRICS_CONSUMER_STOPPED ? names[st] : "?";
        if (ok)
            snprintf(why, whylen, "ok consumer=%s kafka=%s engine_idle_s=%.1f", sn,
                     connected ? "connected" : "reconnecting", age);
        else if (!engine_ok && hb > 0)
            snprintf(why, whylen, "unhealthy consumer=%s engine: no loop iteration for %.1f s (limit %.0f s)", sn, age,
                     limit);
        else if (!engine_ok)
            snprintf(why, whylen, "unhealthy consumer=%s engine: not started", sn);
        else if (!kafka_ok && auth_failed)
            snprintf(why, whylen,
                     "unhealthy consumer=%s kafka: authentication failed (check the SASL/TLS credentials in "
                     "kafka.properties); no broker answered for %.1f s", sn, down_s);
        else if (!kafka_ok)
            snprintf(why, whylen, "unhealthy consumer=%s kafka: no broker reachable for %.1f s (worker.health_grace_ms=%.0f)",
                     sn, down_s, grace * 1e3);
        else if (!consumer_ok)
            snprintf(why, whylen, "unhealthy consumer=%s (needs an assignment or a pending one)", sn);
        else
            snprintf(why, whylen, "unhealthy consumer=%s kafka: the consumer has not joined its group yet", sn);
    }
    return ok;
}

/* ---------------------------------------------------------------- rendering */

/* Label values: backslash, double quote and newline are escaped (format 0.0.4). */
static void put_label(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", f);
        else if (*s == '"')
            fputs("\\\"", f);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

static void put_value(FILE *f, double v) {
    if (isnan(v))
        fputs("NaN", f);
    else if (isinf(v))
        fputs(v > 0 ? "+Inf" : "-Inf", f);
    else if (v == floor(v) && fabs(v) < 1e15)
        fprintf(f, "%.0f", v);
    else
        fprintf(f, "%.17g", v);
}

static void head(FILE *f, const char *name, const char *type, const char *help) {
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void put_counter(FILE *f, const char *name, const char *help, uint64_t v) {
    head(f, name, "counter", help);
    fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

static void put_gauge(FILE *f, const char *name, const char *help, double v) {
    head(f, name, "gauge", help);
    fprintf(f, "%s ", name);
    put_value(f, v);
    fputc('\n', f);
}

static void put_labelled(FILE *f, const char *name, const char *help, const char *label, labelled_t *l) {
    head(f, name, "counter", help);
    int n = atomic_load_explicit(&l->n, memory_order_acquire);
    for (int i = 0; i < n; i++) {
        fprintf(f, "%s{%s=\"", name, label);
        put_label(f, l->slot[i].value);
        fprintf(f, "\"} %llu\n", (unsigned long long)acnt_get(&l->slot[i].count));
    }
    uint64_t other = acnt_get(&l->other);
    if (other) fprintf(f, "%s{%s=\"other\"} %llu\n", name, label, (unsigned long long)other);
}

/* A family of two labels stored as "<v1>\t<v2>" values; the overflow is "other" in both. */
static void put_labelled2(FILE *f, const char *name, const char *help, const char *l1, const char *l2,
                          labelled_t *l) {
    head(f, name, "counter", help);
    int n = atomic_load_explicit(&l->n, memory_order_acquire);
    for (int i = 0; i < n; i++) {
        char v[LABEL_MAX];
        snprintf(v, sizeof v, "%s", l->slot[i].value);
        char *tab = strchr(v, '\t');
        if (tab) *tab++ = 0;
        fprintf(f, "%s{%s=\"", name, l1);
        put_label(f, v);
        fprintf(f, "\",%s=\"", l2);
        put_label(f, tab ? tab : "other");
        fprintf(f, "\"} %llu\n", (unsigned long long)acnt_get(&l->slot[i].count));
    }
    uint64_t other = acnt_get(&l->other);
    if (other) fprintf(f, "%s{%s=\"other\",%s=\"other\"} %llu\n", name, l1, l2, (unsigned long long)other);
}

/* process_* as the Prometheus client libraries name them, read now from /proc; a
 * figure that cannot be read is left out rather than reported wrong. */
static void put_process(FILE *f) {
    procstat_t p;
    procstat_read(&p);
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } rows[] = {
        {"process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
         offsetof(procstat_t, cpu_seconds)},
        {"process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", offsetof(procstat_t, virtual_bytes)},
        {"process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
         offsetof(procstat_t, resident_bytes)},
        {"process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
         offsetof(procstat_t, start_time_s)},
        {"process_open_fds", "gauge", "Number of open file descriptors.", offsetof(procstat_t, open_fds)},
        {"process_max_fds", "gauge", "Maximum number of open file descriptors.", offsetof(procstat_t, max_fds)},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        double v;
        memcpy(&v, (const char *)&p + rows[i].off, sizeof v);
        if (isnan(v)) continue;
        head(f, rows[i].name, rows[i].type, rows[i].help);
        fprintf(f, "%s ", rows[i].name);
        put_value(f, v);
        fputc('\n', f);
    }
}

static void put_hist(FILE *f, const char *name, const char *help, hist_t *h) {
    head(f, name, "histogram", help);
    uint64_t cum = 0;
    /* read each bucket once, so the rendered buckets are cumulative and end at _count */
    for (int i = 0; i <= h->n; i++) {
        cum += acnt_get(&h->counts[i]);
        fprintf(f, "%s_bucket{le=\"", name);
        if (i < h->n)
            fprintf(f, "%g", h->bounds[i]);
        else
            fputs("+Inf", f);
        fprintf(f, "\"} %llu\n", (unsigned long long)cum);
    }
    fprintf(f, "%s_sum ", name);
    put_value(f, adbl_get(&h->sum_bits));
    fprintf(f, "\n%s_count %llu\n", name, (unsigned long long)cum);
}

/* Work waiting, in step tokens (prompt + generated, the unit the throughput is measured in):
 * consumed-but-unanswered prompts + their expected generations + the unconsumed lag
 * at the recent mean request size. 0 while no request has been answered yet. */
static double backlog_tokens(metrics_t *m, int64_t lag) {
    double mp = adbl_get(&m->mean_prompt), mc = adbl_get(&m->mean_completion);
    if (isnan(mp) || isnan(mc)) mp = mc = 0;
    double inflight = adbl_get(&m->running) + adbl_get(&m->waiting);
    return adbl_get(&m->pending_prompt) + inflight * mc + (double)lag * (mp + mc);
}

char *metrics_render(metrics_t *m, size_t *len) {
    char *buf = NULL;
    size_t sz = 0;
    FILE *f = open_memstream(&buf, &sz);
    if (!f) return NULL;

    head(f, "krill_info", "gauge", "Worker identity: version, backend, device and served model (value 1).");
    fputs("krill_info{version=\"", f);
    put_label(f, KRILL_VERSION);
    fputs("\",worker=\"", f);
    put_label(f, m->info_worker);
    fputs("\",backend=\"", f);
    put_label(f, m->info_backend);
    fputs("\",device=\"", f);
    put_label(f, m->info_device);
    fputs("\",model=\"", f);
    put_label(f, m->info_model);
    fputs("\"} 1\n", f);

    put_labelled2(f, "krill_requests_total",
                  "Requests answered, by result status_code (200, 400, 404, 500) and finish_reason (stop, length; "
                  "error for every answer that is not 200).",
                  "status", "finish_reason", &m->requests);
    put_counter(f, "krill_prompt_tokens_total", "Prompt tokens of answered requests.", acnt_get(&m->prompt_tokens));
    put_counter(f, "krill_generated_tokens_total", "Completion tokens of answered requests.",
                acnt_get(&m->generated_tokens));
    put_labelled(f, "krill_dlq_total", "Undecodable messages sent to the dead-letter topic, by krill-error-code.",
                 "code", &m->dlq);
    put_labelled(f, "krill_partition_resets_total",
                 "Partitions whose offsets went backwards (topic recreated, log truncated): a new generation began.",
                 "topic", &m->resets);
    put_labelled(f, "krill_transactions_total",
                 "delivery.mode exactly_once: transactions ended, by outcome (committed, aborted, fatal).", "outcome",
                 &m->txns);
    put_gauge(f, "krill_answers_above_watermark",
              "delivery.mode exactly_once: answered requests above their partition's lowest unanswered offset, "
              "recorded in the committed offsets' metadata instead of being held back.",
              adbl_get(&m->answers_ahead));
    put_counter(f, "krill_engine_steps_total", "Engine steps (one ragged batch each).", acnt_get(&m->steps));
    head(f, "krill_engine_busy_seconds_total", "counter", "Seconds the engine spent stepping (rate = utilisation).");
    fputs("krill_engine_busy_seconds_total ", f);
    put_value(f, adbl_get(&m->busy_bits));
    fputc('\n', f);

    put_counter(f, "krill_preemptions_total",
                "Sequences preempted because the KV cache ran out (recomputed later from prompt + output).",
                acnt_get(&m->preemptions));
    put_counter(f, "krill_prefix_cache_hits_total",
                "Prompt tokens whose KV came from the prefix cache (batching.prefix_cache).",
                acnt_get(&m->prefix_hits));
    put_counter(f, "krill_prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.",
                acnt_get(&m->prefix_queries));
    put_gauge(f, "krill_prefix_cache_blocks", "KV blocks holding a prefix-cache key (in use or free).",
              (double)acnt_get(&m->prefix_blocks));
    put_counter(f, "krill_metrics_connections_dropped_total",
                "Connections to this endpoint closed by its limits (request deadline, connection cap).",
                httpguard_dropped(m->guard));

    put_gauge(f, "krill_requests_running", "Sequences in the engine's running batch.", adbl_get(&m->running));
    put_gauge(f, "krill_requests_waiting", "Requests accepted and waiting for a batch slot.", adbl_get(&m->waiting));
    put_gauge(f, "krill_kv_cache_usage_ratio", "Fraction of KV cache blocks in use (0..1).", adbl_get(&m->kv_ratio));
    put_gauge(f, "krill_batch_size", "Sequences in the last engine step.", adbl_get(&m->batch_size));

    int64_t lag_sum = 0;
    head(f, "krill_consumer_lag_messages", "gauge",
         "Messages between this worker's position and the partition end (librdkafka consumer_lag).");
    pthread_mutex_lock(&m->lag_mu);
    for (size_t i = 0; i < m->n_lag; i++) {
        fputs("krill_consumer_lag_messages{topic=\"", f);
        put_label(f, m->lag[i].topic);
        fprintf(f, "\",partition=\"%d\"} %lld\n", (int)m->lag[i].partition, (long long)m->lag[i].lag);
        lag_sum += m->lag[i].lag;
    }
    pthread_mutex_unlock(&m->lag_mu);

    put_gauge(f, "krill_kafka_connected",
              "1 while a Kafka broker answers; 0 when none is reachable or our credentials were rejected.",
              atomic_load(&m->kafka_connected) ? 1 : 0);
    put_labelled(f, "krill_kafka_errors_total",
                 "Errors librdkafka reported, by kind (transport, all_brokers_down, authentication, authorization, "
                 "ssl, resolve, timeout, fatal, other).",
                 "kind", &m->kafka_errors);

    put_gauge(f, "krill_pending_prompt_tokens", "Prompt tokens of requests consumed and not yet answered.",
              adbl_get(&m->pending_prompt));
    double tokens = backlog_tokens(m, lag_sum), tput = adbl_get(&m->throughput);
    put_gauge(f, "krill_backlog_tokens",
              "Estimated work waiting in tokens: pending prompts, their generations and the consumer lag at the "
              "recent mean request size.",
              tokens);
    put_gauge(f, "krill_backlog_drain_seconds",
              "Estimated seconds to drain krill_backlog_tokens at this worker's measured token throughput "
              "(0 before the first step).",
              tokens > 0 && tput > 0 ? tokens / tput : 0);

    put_gauge(f, "krill_slo_enabled", "1 when the adaptive batching controller (batching.slo) is on.",
              adbl_get(&m->slo_enabled));
    put_gauge(f, "krill_slo_max_seqs", "Admission limit in force: sequences per step.", adbl_get(&m->slo_max_seqs));
    put_gauge(f, "krill_slo_max_batch_tokens", "Admission limit in force: tokens per step.",
              adbl_get(&m->slo_max_batch_tokens));
    put_gauge(f, "krill_slo_ttft_p95_seconds", "The controller's windowed p95 time to first token (NaN: none).",
              adbl_get(&m->slo_ttft_p95));
    put_gauge(f, "krill_slo_tpot_p95_seconds", "The controller's windowed p95 time per output token (NaN: none).",
              adbl_get(&m->slo_tpot_p95));

    put_hist(f, "krill_time_to_first_token_seconds", "Time from consumption to the first generated token.", &m->ttft);
    put_hist(f, "krill_time_per_output_token_seconds", "Mean time between output tokens of a request.", &m->tpot);
    put_hist(f, "krill_request_latency_seconds", "Time from consumption to the finished result.", &m->latency);
    put_hist(f, "krill_queue_time_seconds", "Time from consumption to the first scheduled step.", &m->queue);
    put_hist(f, "krill_step_batch_tokens", "Tokens (prefill + decode) per engine step.", &m->step_tokens);
    put_hist(f, "krill_transaction_commit_seconds",
             "delivery.mode exactly_once: time to commit one transaction (flush, offsets, commit).", &m->txn);
    put_process(f);

    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    if (len) *len = sz;
    return buf;
}

/* ---------------------------------------------------------------- HTTP */

static enum MHD_Result answer(struct MHD_Connection *c, unsigned code, const char *ctype, char *body, size_t len,
                              bool must_free) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
    if (!r) {
        if (must_free) free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (code == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result answer_text(struct MHD_Connection *c, unsigned code, const char *s) {
    return answer(c, code, "text/plain; charset=utf-8", (char *)s, strlen(s), false); /* copied */
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    (void)upload;
    (void)con_cls;
    metrics_t *m = cls;
    if (*upload_size) { /* ignore any body: these endpoints take none */
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return answer_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    if (strcmp(url, "/metrics") == 0) {
        size_t len = 0;
        char *body = metrics_render(m, &len);
        if (!body) return answer_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        return answer(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, len, true);
    }
    if (strcmp(url, "/healthz") == 0) {
        char why[256];
        int ok = metrics_health(m, why, sizeof why - 1);
        strcat(why, "\n");
        return answer_text(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, why);
    }
    if (strcmp(url, "/") == 0) return answer_text(c, MHD_HTTP_OK, "krill worker: /metrics (Prometheus), /healthz\n");
    return answer_text(c, MHD_HTTP_NOT_FOUND, "not found: try /metrics or /healthz\n");
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    metrics_t *m = cls;
    if (!atomic_load(&m->started)) { /* while starting: keep the text for the caller's error */
        vsnprintf(m->start_err, sizeof m->start_err, fmt, ap);
        size_t n = strlen(m->start_err);
        while (n && (m->start_err[n - 1] == '\n' || m->start_err[n - 1] == '.')) m->start_err[--n] = 0;
        return;
    }
    /* After start, libmicrohttpd speaks about single client connections (closed with an
     * incomplete request, a read failed): one line a minute with the count of the
     * others, never a line per connection (a slow-loris makes thousands). */
    unsigned suppressed = 0;
    if (m->guard && !httpguard_log_allow(m->guard, &suppressed)) return;
    char line[256];
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\n")] = 0;
    LOG_WARN("metrics http", "detail=\"%s\" suppressed_since_last=%u next_within_s=%d", line, suppressed,
             HTTPGUARD_LOG_INTERVAL_S);
}

int metrics_serve(metrics_t *m, const char *listen, char *err, size_t errlen) {
    if (!listen || strcmp(listen, "off") == 0) return 0;
    if (m->daemon) {
        err_set(err, errlen, "metrics.listen: the server is already running");
        return -1;
    }
    char host[256], port[16];
    const char *colon = strrchr(listen, ':');
    size_t hl = colon ? (size_t)(colon - listen) : 0;
    if (!colon || hl == 0 || hl >= sizeof host || strlen(colon + 1) == 0 || strlen(colon + 1) >= sizeof port) {
        err_set(err, errlen, "metrics.listen: \"%.100s\" is not host:port (e.g. 127.0.0.1:9464, 0.0.0.0:9464, "
                 "[::1]:9464) or \"off\"", listen);
        return -1;
    }
    memcpy(host, listen, hl);
    host[hl] = 0;
    snprintf(port, sizeof port, "%s", colon + 1);
    if (host[0] == '[') { /* [v6]:port */
        size_t n = strlen(host);
        if (n < 3 || host[n - 1] != ']') {
            err_set(err, errlen, "metrics.listen: \"%.100s\": an IPv6 host needs brackets, as in [::1]:9464", listen);
            return -1;
        }
        memmove(host, host + 1, n - 2);
        host[n - 2] = 0;
    }
    char *end;
    long pnum = strtol(port, &end, 10);
    if (*end || pnum < 0 || pnum > 65535) {
        err_set(err, errlen, "metrics.listen: port \"%s\" is not a number from 0 to 65535", port);
        return -1;
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0 || !ai) {
        err_set(err, errlen, "metrics.listen: cannot resolve host \"%s\" (%s); use an address of this machine",
                 host, gai_strerror(gai));
        if (ai) freeaddrinfo(ai);
        return -1;
    }
    if (!(m->guard = httpguard_new(err, errlen))) {
        freeaddrinfo(ai);
        return -1;
    }
    struct MHD_Daemon *d = NULL;
    m->start_err[0] = 0;
    for (struct addrinfo *a = ai; a && !d; a = a->ai_next) { /* "localhost": ::1 then 127.0.0.1 */
        unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
        if (a->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
        d = MHD_start_daemon(flags, (uint16_t)pnum, NULL, NULL, on_request, m, MHD_OPTION_SOCK_ADDR, a->ai_addr,
                             MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, m, MHD_OPTION_CONNECTION_LIMIT,
                             (unsigned)HTTPGUARD_MAX_CONNS, MHD_OPTION_CONNECTION_TIMEOUT,
                             (unsigned)HTTPGUARD_IDLE_TIMEOUT_S, MHD_OPTION_NOTIFY_CONNECTION, httpguard_on_connection,
                             m->guard, MHD_OPTION_NOTIFY_COMPLETED, httpguard_on_completed, m->guard, MHD_OPTION_END);
    }
    freeaddrinfo(ai);
    if (!d) {
        err_set(err, errlen, "metrics.listen: cannot serve on %s (%s); pick a free port or set metrics.listen=off",
                 listen, m->start_err[0] ? m->start_err : "libmicrohttpd could not start");
        httpguard_free(m->guard);
        m->guard = NULL;
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    m->port = info ? info->port : (int)pnum;
    m->daemon = d;
    atomic_store(&m->started, 1);
    LOG_INFO("metrics endpoint up", "listen=%s port=%d paths=/metrics,/healthz", listen, m->port);
    return 0;
}

int metrics_port(const metrics_t *m) { return m && m->daemon ? m->port : 0; }
