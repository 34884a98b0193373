/* stats.c — see stats.h. Window counters for the io thread (plain fields: only it
 * touches them), step counters for the engine thread (atomics, swapped to zero at
 * emit), and two reservoirs (total latency, time to first token). */
#include "err.h"
#include "stats.h"

#include <jansson.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    double *v; /* (cap) */
    size_t cap, n;
    uint64_t seen;
} reservoir_t;

struct stats {
    /* io thread */
    uint64_t requests, errors, dlq, prompt_tokens, generated_tokens;
    uint64_t total_requests, total_errors, total_dlq;
    reservoir_t lat, ttft;
    uint64_t rng;
    struct timespec window_start, started;
    /* engine thread */
    atomic_uint_fast64_t steps, step_seqs, step_tokens;
    atomic_int max_seqs;
    atomic_uint_fast64_t prefix_hits, prefix_queries; /* the engine's running totals (tokens) */
    uint64_t prefix_hits_seen, prefix_queries_seen;   /* io thread: the totals at the last emit */
};

static double now_s(const struct timespec *t) { return (double)t->tv_sec + (double)t->tv_nsec * 1e-9; }

static uint64_t rng_next(uint64_t *s) { /* xorshift64* */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void reservoir_add(reservoir_t *r, double v, uint64_t *rng) {
    r->seen++;
    if (r->n < r->cap) {
        r->v[r->n++] = v;
        return;
    }
    uint64_t j = rng_next(rng) % r->seen;
    if (j < r->cap) r->v[j] = v;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentiles of the sample; -1 when empty. Sorts r->v. */
static void reservoir_pcts(reservoir_t *r, double *p50, double *p95, double *p99) {
    if (r->n == 0) {
        *p50 = *p95 = *p99 = -1;
        return;
    }
    qsort(r->v, r->n, sizeof *r->v, cmp_double);
    double q[3] = {0.50, 0.95, 0.99}, *o[3] = {p50, p95, p99};
    for (int i = 0; i < 3; i++) {
        size_t rank = (size_t)ceil(q[i] * (double)r->n);
        if (rank < 1) rank = 1;
        *o[i] = r->v[rank - 1];
    }
}

stats_t *stats_new(size_t reservoir) {
    if (reservoir == 0) reservoir = 4096;
    stats_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->lat.v = malloc(reservoir * sizeof(double));
    s->ttft.v = malloc(reservoir * sizeof(double));
    if (!s->lat.v || !s->ttft.v) {
        stats_free(s);
        return NULL;
    }
    s->lat.cap = s->ttft.cap = reservoir;
    s->rng = 0x9E3779B97F4A7C15ULL;
    clock_gettime(CLOCK_MONOTONIC, &s->window_start);
    s->started = s->window_start;
    return s;
}

void stats_free(stats_t *s) {
    if (!s) return;
    free(s->lat.v);
    free(s->ttft.v);
    free(s);
}

void stats_add_request(stats_t *s, bool ok, int prompt_tokens, int generated_tokens, double total_ms,
                       double ttft_ms) {
    s->requests++;
    s->total_requests++;
    if (!ok) {
        s->errors++;
        s->total_errors++;
    }
    if (prompt_tokens > 0) s->prompt_tokens += (uint64_t)prompt_tokens;
    if (generated_tokens > 0) s->generated_tokens += (uint64_t)generated_tokens;
    if (ok && total_ms >= 0) reservoir_add(&s->lat, total_ms, &s->rng);
    if (ok && ttft_ms >= 0) reservoir_add(&s->ttft, ttft_ms, &s->rng);
}

void stats_add_dlq(stats_t *s) {
    s->dlq++;
    s->total_dlq++;
    s->errors++;
    s->total_errors++;
}

void stats_set_prefix_cache(stats_t *s, uint64_t hit_tokens, uint64_t query_tokens) {
    atomic_store(&s->prefix_hits, hit_tokens);
    atomic_store(&s->prefix_queries, query_tokens);
}

void stats_add_step(stats_t *s, int seqs, int tokens) {
    atomic_fetch_add_explicit(&s->steps, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->step_seqs, (uint64_t)(seqs > 0 ? seqs : 0), memory_order_relaxed);
    atomic_fetch_add_explicit(&s->step_tokens, (uint64_t)(tokens > 0 ? tokens : 0), memory_order_relaxed);
    int m = atomic_load_explicit(&s->max_seqs, memory_order_relaxed);
    while (seqs > m && !atomic_compare_exchange_weak(&s->max_seqs, &m, seqs)) {
    }
}

static json_t *num_or_null(double v) { return v < 0 ? json_null() : json_real(round(v * 1000.0) / 1000.0); }

static json_t *pct_obj(double p50, double p95, double p99) {
    json_t *o = json_object();
    json_object_set_new(o, "p50", num_or_null(p50));
    json_object_set_new(o, "p95", num_or_null(p95));
    json_object_set_new(o, "p99", num_or_null(p99));
    return o;
}

int stats_emit(stats_t *s, const stats_gauges_t *g, codec_format_t fmt, stats_window_t *wout, buf_t *out,
               char *err, size_t errlen) {
    struct timespec now, wall;
    clock_gettime(CLOCK_MONOTONIC, &now);
    clock_gettime(CLOCK_REALTIME, &wall);
    stats_window_t w = {0};
    w.window_s = now_s(&now) - now_s(&s->window_start);
    if (w.window_s <= 0) w.window_s = 1e-9;
    w.requests = s->requests;
    w.errors = s->errors;
    w.dlq = s->dlq;
    w.prompt_tokens = s->prompt_tokens;
    w.generated_tokens = s->generated_tokens;
    w.steps = atomic_exchange(&s->steps, 0);
    w.step_seqs = atomic_exchange(&s->step_seqs, 0);
    w.step_tokens = atomic_exchange(&s->step_tokens, 0);
    w.max_seqs = atomic_exchange(&s->max_seqs, 0);
    const uint64_t ph = atomic_load(&s->prefix_hits), pq = atomic_load(&s->prefix_queries);
    w.prefix_hit_tokens = ph - s->prefix_hits_seen;
    w.prefix_query_tokens = pq - s->prefix_queries_seen;
    s->prefix_hits_seen = ph;
    s->prefix_queries_seen = pq;
    reservoir_pcts(&s->lat, &w.lat_p50, &w.lat_p95, &w.lat_p99);
    reservoir_pcts(&s->ttft, &w.ttft_p50, &w.ttft_p95, &w.ttft_p99);

    json_t *o = json_object();
    json_object_set_new(o, "worker", json_string(g && g->worker ? g->worker : ""));
    json_object_set_new(o, "ts", json_real(round(now_s(&wall) * 1000.0) / 1000.0));
    json_object_set_new(o, "window_s", json_real(round(w.window_s * 1000.0) / 1000.0));
    json_object_set_new(o, "requests", json_integer((json_int_t)w.requests));
    json_object_set_new(o, "errors", json_integer((json_int_t)w.errors));
    json_object_set_new(o, "requests_per_s", json_real(round((double)w.requests / w.window_s * 100.0) / 100.0));
    json_object_set_new(o, "prompt_tokens_per_s",
                        json_real(round((double)w.prompt_tokens / w.window_s * 100.0) / 100.0));
    json_object_set_new(o, "generated_tokens_per_s",
                        json_real(round((double)w.generated_tokens / w.window_s * 100.0) / 100.0));
    json_t *b = json_object();
    json_object_set_new(b, "mean_seqs", json_real(w.steps ? round((double)w.step_seqs / (double)w.steps * 100.0) / 100.0 : 0.0));
    json_object_set_new(b, "max_seqs", json_integer(w.max_seqs));
    json_object_set_new(b, "mean_tokens",
                        json_real(w.steps ? round((double)w.step_tokens / (double)w.steps * 100.0) / 100.0 : 0.0));
    json_object_set_new(o, "batch", b);
    json_object_set_new(o, "latency_ms", pct_obj(w.lat_p50, w.lat_p95, w.lat_p99));
    json_object_set_new(o, "ttft_ms", pct_obj(w.ttft_p50, w.ttft_p95, w.ttft_p99));
    json_object_set_new(o, "queue_depth", json_integer(g ? g->queue_depth : 0));
    json_object_set_new(o, "in_flight", json_integer(g ? g->in_flight : 0));
    /* share of the prompt tokens looked up in the prefix cache that were found (null: none looked up) */
    json_object_set_new(o, "prefix_cache_hit_rate",
                        w.prefix_query_tokens ? json_real(round((double)w.prefix_hit_tokens /
                                                                (double)w.prefix_query_tokens * 10000.0) / 10000.0)
                                              : json_null());
    json_object_set_new(o, "prefix_cache_hit_rate_total",
                        pq ? json_real(round((double)ph / (double)pq * 10000.0) / 10000.0) : json_null());
    json_object_set_new(o, "kv_cache_used_frac", json_real(g ? round(g->kv_cache_used_frac * 10000.0) / 10000.0 : 0.0));
    json_object_set_new(o, "backend", json_string(g && g->backend ? g->backend : ""));
    json_object_set_new(o, "device", json_string(g && g->device ? g->device : ""));
    json_object_set_new(o, "dlq", json_integer((json_int_t)w.dlq));
    json_object_set_new(o, "total_requests", json_integer((json_int_t)s->total_requests));
    json_object_set_new(o, "total_errors", json_integer((json_int_t)s->total_errors));
    json_object_set_new(o, "total_dlq", json_integer((json_int_t)s->total_dlq));
    json_object_set_new(o, "uptime_s", json_real(round((now_s(&now) - now_s(&s->started)) * 1000.0) / 1000.0));
    char *txt = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
    json_decref(o);
    int rc = 0;
    if (!txt) {
        err_set(err, errlen, "stats: out of memory encoding the record");
        rc = -1;
    } else if (fmt == CODEC_FMT_MSGPACK) {
        rc = codec_json_to_msgpack(txt, strlen(txt), out, err, errlen);
    } else {
        size_t n = strlen(txt);
        if (out->cap < n + 1) {
            char *d = realloc(out->data, n + 1);
            if (!d) {
                err_set(err, errlen, "stats: out of memory");
                rc = -1;
            } else {
                out->data = d;
                out->cap = n + 1;
            }
        }
        if (rc == 0) {
            memcpy(out->data, txt, n + 1);
            out->len = n;
        }
    }
    free(txt);

    /* new window */
    s->requests = s->errors = s->dlq = s->prompt_tokens = s->generated_tokens = 0;
    s->lat.n = s->ttft.n = 0;
    s->lat.seen = s->ttft.seen = 0;
    s->window_start = now;
    if (wout) *wout = w;
    return rc;
}
