/* test_metrics.c — the Prometheus registry and endpoint.
 *
 * Every rendering is read back by a strict parser of text format 0.0.4 written here
 * from the format's specification (names, label escapes, values, HELP/TYPE before the
 * samples, one TYPE per family, no duplicate series, cumulative histogram buckets
 * ending at +Inf == _count): counts are then compared with what the test did.
 * The HTTP side is exercised over real sockets on 127.0.0.1 (a free port). The
 * integration test 41-metrics.sh checks the same text with prometheus_client's parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "procstat.h"

/* ---------------------------------------------------------------- strict parser */

typedef struct {
    char name[128];
    char labels[512]; /* canonical: k="v",k="v" in order of appearance, unescaped values */
    double value;
} sample_t;

typedef struct {
    char name[128];
    char type[16];
    int has_help;
} family_t;

typedef struct {
    sample_t *s;
    size_t n, cap;
    family_t f[128];
    size_t nf;
} parsed_t;

static int is_name_start(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; }
static int is_name_char(int c) { return is_name_start(c) || (c >= '0' && c <= '9'); }

/* Parses one metric/label name at *p; returns its length (0 = none). colon: allowed. */
static size_t parse_name(const char *p, int colon) {
    size_t i = 0;
    if (!is_name_start((unsigned char)p[0]) || (!colon && p[0] == ':')) return 0;
    while (is_name_char((unsigned char)p[i]) && (colon || p[i] != ':')) i++;
    return i;
}

static double parse_float_strict(const char *s, const char *end) {
    char buf[64];
    size_t n = (size_t)(end - s);
    if (n == 0 || n >= sizeof buf) fail_msg("bad value length %zu", n);
    memcpy(buf, s, n);
    buf[n] = 0;
    if (strcmp(buf, "+Inf") == 0) return INFINITY;
    if (strcmp(buf, "-Inf") == 0) return -INFINITY;
    if (strcmp(buf, "NaN") == 0) return NAN;
    char *e;
    double v = strtod(buf, &e);
    if (*e || !isfinite(v)) fail_msg("bad sample value '%s'", buf);
    for (const char *q = buf; *q; q++) /* strtod accepts hex, inf, nan spellings the format does not */
        if (!strchr("0123456789+-.eE", *q)) fail_msg("bad sample value '%s'", buf);
    return v;
}

static family_t *family_of(parsed_t *P, const char *sample_name) {
    for (size_t i = 0; i < P->nf; i++) {
        family_t *f = &P->f[i];
        size_t fl = strlen(f->name);
        if (strcmp(f->name, sample_name) == 0) return f;
        if (strcmp(f->type, "histogram") == 0 && strncmp(f->name, sample_name, fl) == 0 &&
            (strcmp(sample_name + fl, "_bucket") == 0 || strcmp(sample_name + fl, "_sum") == 0 ||
             strcmp(sample_name + fl, "_count") == 0))
            return f;
    }
    return NULL;
}

static void parse_exposition(const char *text, parsed_t *P) {
    memset(P, 0, sizeof *P);
    size_t len = strlen(text);
    assert_true(len > 0);
    assert_int_equal(text[len - 1], '\n');
    const char *p = text;
    char cur_family[128] = "";
    while (*p) {
        const char *eol = strchr(p, '\n');
        assert_non_null(eol);
        if (p == eol) fail_msg("empty line in exposition");
        if (p[0] == '#') {
            char kw[8], name[128];
            if (sscanf(p, "# %7s %127s", kw, name) != 2) fail_msg("bad comment line %.60s", p);
            assert_int_equal(parse_name(name, 1), strlen(name));
            family_t *f = NULL;
            for (size_t i = 0; i < P->nf; i++)
                if (strcmp(P->f[i].name, name) == 0) f = &P->f[i];
            if (strcmp(kw, "HELP") == 0) {
                if (f && f->has_help) fail_msg("second HELP for %s", name);
                if (!f) {
                    assert_true(P->nf < 128);
                    f = &P->f[P->nf++];
                    snprintf(f->name, sizeof f->name, "%s", name);
                }
                f->has_help = 1;
                /* HELP text: only \\ and \n escapes are allowed */
                for (const char *q = p + 7 + strlen(name); q < eol; q++)
                    if (*q == '\\') {
                        q++;
                        if (*q != '\\' && *q != 'n') fail_msg("bad escape in HELP of %s", name);
                    }
            } else if (strcmp(kw, "TYPE") == 0) {
                if (f && f->type[0]) fail_msg("second TYPE for %s", name);
                if (!f) {
                    f = &P->f[P->nf++];
                    snprintf(f->name, sizeof f->name, "%s", name);
                }
                const char *t = p + 7 + strlen(name);
                assert_int_equal(*t, ' ');
                t++;
                size_t tl = (size_t)(eol - t);
                const char *types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
                int ok = 0;
                for (int i = 0; i < 5; i++)
                    if (strlen(types[i]) == tl && strncmp(types[i], t, tl) == 0) ok = 1;
                if (!ok) fail_msg("bad TYPE line for %s", name);
                memcpy(f->type, t, tl);
                snprintf(cur_family, sizeof cur_family, "%s", name);
            } else {
                fail_msg("unknown comment keyword %s", kw);
            }
            p = eol + 1;
            continue;
        }
        /* a sample */
        if (P->n == P->cap) {
            P->cap = P->cap ? 2 * P->cap : 256;
            P->s = realloc(P->s, P->cap * sizeof *P->s);
            assert_non_null(P->s);
        }
        sample_t *s = &P->s[P->n];
        memset(s, 0, sizeof *s);
        size_t nl = parse_name(p, 1);
        if (!nl || nl >= sizeof s->name) fail_msg("bad metric name at %.60s", p);
        memcpy(s->name, p, nl);
        const char *q = p + nl;
        size_t lo = 0;
        if (*q == '{') {
            q++;
            while (*q != '}') {
                size_t ln = parse_name(q, 0);
                if (!ln) fail_msg("bad label name in %s", s->name);
                if (lo + ln + 4 >= sizeof s->labels) fail_msg("labels too long");
                if (lo) s->labels[lo++] = ',';
                memcpy(s->labels + lo, q, ln);
                lo += ln;
                q += ln;
                if (q[0] != '=' || q[1] != '"') fail_msg("label without =\" in %s", s->name);
                q += 2;
                s->labels[lo++] = '=';
                s->labels[lo++] = '"';
                while (*q != '"') {
                    if (q >= eol) fail_msg("unterminated label value in %s", s->name);
                    char ch = *q;
                    if (ch == '\\') {
                        q++;
                        if (*q == 'n')
                            ch = '\n';
                        else if (*q == '\\' || *q == '"')
                            ch = *q;
                        else
                            fail_msg("bad escape in a label value of %s", s->name);
                    }
                    if (lo + 2 >= sizeof s->labels) fail_msg("labels too long");
                    s->labels[lo++] = ch;
                    q++;
                }
                s->labels[lo++] = '"';
                q++;
                if (*q == ',') q++;
                else if (*q != '}') fail_msg("bad label separator in %s", s->name);
            }
            q++;
        }
        if (*q != ' ') fail_msg("no space before the value of %s", s->name);
        q++;
        const char *vend = q;
        while (vend < eol && *vend != ' ') vend++;
        s->value = parse_float_strict(q, vend);
        if (vend != eol) { /* optional integer timestamp: we never write one */
            fail_msg("unexpected timestamp on %s", s->name);
        }
        family_t *f = family_of(P, s->name);
        if (!f || !f->type[0] || !f->has_help) fail_msg("sample %s has no HELP+TYPE before it", s->name);
        if (strcmp(f->name, cur_family) != 0) fail_msg("sample %s is not in its family's block", s->name);
        for (size_t i = 0; i < P->n; i++)
            if (strcmp(P->s[i].name, s->name) == 0 && strcmp(P->s[i].labels, s->labels) == 0)
                fail_msg("duplicate series %s{%s}", s->name, s->labels);
        P->n++;
        p = eol + 1;
    }
    /* histograms: cumulative buckets, +Inf last and equal to _count; _sum present */
    for (size_t i = 0; i < P->nf; i++) {
        family_t *f = &P->f[i];
        if (strcmp(f->type, "histogram") != 0) continue;
        char bname[160], cname[160], sname[160];
        snprintf(bname, sizeof bname, "%s_bucket", f->name);
        snprintf(cname, sizeof cname, "%s_count", f->name);
        snprintf(sname, sizeof sname, "%s_sum", f->name);
        double prev_le = -INFINITY, prev_v = 0, last = -1, count = -1;
        int nb = 0, has_sum = 0;
        for (size_t k = 0; k < P->n; k++) {
            sample_t *s = &P->s[k];
            if (strcmp(s->name, bname) == 0) {
                const char *le = strstr(s->labels, "le=\"");
                assert_non_null(le);
                double lv = strncmp(le + 4, "+Inf", 4) == 0 ? INFINITY : strtod(le + 4, NULL);
                if (!(lv > prev_le)) fail_msg("%s: le not increasing", f->name);
                if (s->value < prev_v) fail_msg("%s: buckets not cumulative", f->name);
                prev_le = lv;
                prev_v = s->value;
                last = s->value;
                nb++;
            } else if (strcmp(s->name, cname) == 0) {
                count = s->value;
            } else if (strcmp(s->name, sname) == 0) {
                has_sum = 1;
            }
        }
        if (nb < 2 || !isinf(prev_le)) fail_msg("%s: missing +Inf bucket", f->name);
        if (last != count) fail_msg("%s: +Inf bucket %g != _count %g", f->name, last, count);
        if (!has_sum) fail_msg("%s: no _sum", f->name);
    }
}

static void parsed_free(parsed_t *P) { free(P->s); }

/* Value of a series; fails when it is absent. */
static double val(const parsed_t *P, const char *name, const char *labels) {
    for (size_t i = 0; i < P->n; i++)
        if (strcmp(P->s[i].name, name) == 0 && strcmp(P->s[i].labels, labels ? labels : "") == 0)
            return P->s[i].value;
    fail_msg("series %s{%s} is missing", name, labels ? labels : "");
    return NAN;
}
static int has_series(const parsed_t *P, const char *name, const char *labels) {
    for (size_t i = 0; i < P->n; i++)
        if (strcmp(P->s[i].name, name) == 0 && strcmp(P->s[i].labels, labels ? labels : "") == 0) return 1;
    return 0;
}
static const char *type_of(const parsed_t *P, const char *family) {
    for (size_t i = 0; i < P->nf; i++)
        if (strcmp(P->f[i].name, family) == 0) return P->f[i].type;
    return NULL;
}

static void render_parse(metrics_t *m, parsed_t *P) {
    size_t len = 0;
    char *t = metrics_render(m, &len);
    assert_non_null(t);
    assert_int_equal(strlen(t), len);
    parse_exposition(t, P);
    free(t);
}

/* ---------------------------------------------------------------- tests */

static void test_every_family_present(void **state) {
    (void)state;
    metrics_t *m = metrics_new();
    assert_non_null(m);
    parsed_t P;
    render_parse(m, &P);
    static const struct { const char *name, *type; } want[] = {
        {"krill_requests_total", "counter"},       {"krill_prompt_tokens_total", "counter"},
        {"krill_generated_tokens_total", "counter"}, {"krill_dlq_total", "counter"},
        {"krill_requests_running", "gauge"},       {"krill_requests_waiting", "gauge"},
        {"krill_kv_cache_usage_ratio", "gauge"},   {"krill_batch_size", "gauge"},
        {"krill_consumer_lag_messages", "gauge"},  {"krill_pending_prompt_tokens", "gauge"},
        {"krill_backlog_drain_seconds", "gauge"},  {"krill_backlog_tokens", "gauge"},
        {"krill_slo_max_seqs", "gauge"},           {"krill_slo_max_batch_tokens", "gauge"},
        {"krill_time_to_first_token_seconds", "histogram"}, {"krill_time_per_output_token_seconds", "histogram"},
        {"krill_request_latency_seconds", "histogram"},     {"krill_queue_time_seconds", "histogram"},
        {"krill_step_batch_tokens", "histogram"},  {"krill_preemptions_total", "counter"},
        {"krill_metrics_connections_dropped_total", "counter"},
        {"process_cpu_seconds_total", "counter"},  {"process_resident_memory_bytes", "gauge"},
        {"process_virtual_memory_bytes", "gauge"}, {"process_start_time_seconds", "gauge"},
        {"process_open_fds", "gauge"},             {"process_max_fds", "gauge"},
        {"krill_kafka_connected", "gauge"},        {"krill_kafka_errors_total", "counter"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *t = type_of(&P, want[i].name);
        if (!t) fail_msg("family %s missing", want[i].name);
        assert_string_equal(t, want[i].type);
    }
    assert_true(val(&P, "krill_time_to_first_token_seconds_count", NULL) == 0);
    assert_true(val(&P, "krill_backlog_drain_seconds", NULL) == 0);
    assert_true(isnan(val(&P, "krill_slo_ttft_p95_seconds", NULL)));
    /* no series for labelled families before anything happened */
    assert_false(has_series(&P, "krill_requests_total", "status=\"200\",finish_reason=\"stop\""));
    assert_true(val(&P, "krill_preemptions_total", NULL) == 0);
    parsed_free(&P);
    metrics_free(m);
}

static void test_counts_and_histograms(void **state) {
    (void)state;
    metrics_t *m = metrics_new();
    /* 5 ok requests, 2 invalid, 1 internal error */
    for (int i = 0; i < 5; i++)
        metrics_request_done(m, 200, i < 3 ? "stop" : "length", 10 + i, 20, 0.001 * i, 0.1, 0.02, 0.5 + i);
    metrics_request_done(m, 400, NULL, 0, 0, -1, -1, -1, 0.0001);
    metrics_request_done(m, 400, NULL, 0, 0, -1, -1, -1, 0.0001);
    metrics_request_done(m, 500, "stop", 7, 0, 0.2, -1, -1, 1.0); /* a failed answer is an error, whatever else */
    metrics_set_preemptions(m, 7);
    metrics_dlq(m, "invalid_json");
    metrics_dlq(m, "invalid_json");
    metrics_dlq(m, "message_too_large");
    metrics_dlq(m, NULL);
    parsed_t P;
    render_parse(m, &P);
    assert_true(val(&P, "krill_requests_total", "status=\"200\",finish_reason=\"stop\"") == 3);
    assert_true(val(&P, "krill_requests_total", "status=\"200\",finish_reason=\"length\"") == 2);
    assert_true(val(&P, "krill_requests_total", "status=\"400\",finish_reason=\"error\"") == 2);
    assert_true(val(&P, "krill_requests_total", "status=\"500\",finish_reason=\"error\"") == 1);
    assert_false(has_series(&P, "krill_requests_total", "status=\"500\",finish_reason=\"stop\""));
    assert_true(val(&P, "krill_preemptions_total", NULL) == 7);
    assert_true(val(&P, "krill_prompt_tokens_total", NULL) == 10 + 11 + 12 + 13 + 14 + 7);
    assert_true(val(&P, "krill_generated_tokens_total", NULL) == 100);
    assert_true(val(&P, "krill_dlq_total", "code=\"invalid_json\"") == 2);
    assert_true(val(&P, "krill_dlq_total", "code=\"message_too_large\"") == 1);
    assert_true(val(&P, "krill_dlq_total", "code=\"unknown\"") == 1);
    /* TTFT: 5 observations of exactly 0.1 land in le="0.1" (le is inclusive) */
    assert_true(val(&P, "krill_time_to_first_token_seconds_bucket", "le=\"0.05\"") == 0);
    assert_true(val(&P, "krill_time_to_first_token_seconds_bucket", "le=\"0.1\"") == 5);
    assert_true(val(&P, "krill_time_to_first_token_seconds_count", NULL) == 5);
    assert_true(fabs(val(&P, "krill_time_to_first_token_seconds_sum", NULL) - 0.5) < 1e-12);
    /* latency: 8 observations (every request); 0.5,1.5,2.5,3.5,4.5 + 2 x 0.0001 + 1.0 */
    assert_true(val(&P, "krill_request_latency_seconds_count", NULL) == 8);
    assert_true(val(&P, "krill_request_latency_seconds_bucket", "le=\"0.05\"") == 2);
    assert_true(val(&P, "krill_request_latency_seconds_bucket", "le=\"1\"") == 4);
    assert_true(val(&P, "krill_request_latency_seconds_bucket", "le=\"2.5\"") == 6);
    assert_true(val(&P, "krill_request_latency_seconds_bucket", "le=\"5\"") == 8);
    assert_true(fabs(val(&P, "krill_request_latency_seconds_sum", NULL) - 13.5002) < 1e-9);
    /* queue: 6 observations (0, 0.001 .. 0.004, 0.2) */
    assert_true(val(&P, "krill_queue_time_seconds_count", NULL) == 6);
    assert_true(val(&P, "krill_queue_time_seconds_bucket", "le=\"0.001\"") == 2);
    assert_true(val(&P, "krill_queue_time_seconds_bucket", "le=\"0.005\"") == 5);
    assert_true(val(&P, "krill_time_per_output_token_seconds_count", NULL) == 5);
    parsed_free(&P);
    metrics_free(m);
}

static void test_gauges_backlog_and_slo(void **state) {
    (void)state;
    metrics_t *m = metrics_new();
    metrics_set_engine(m, 3, 7, 0.25);
    metrics_step(m, 3, 100, 0.5); /* 200 tokens per busy second */
    metrics_request_done(m, 200, "stop", 10, 30, 0, 0.1, 0.01, 0.4);
    metrics_set_pending_prompt_tokens(m, 40);
    metrics_lag_t lag[2] = {{"krill.requests", 0, 3}, {"krill.requests", 1, 2}};
    metrics_set_lag(m, lag, 2);
    metrics_set_slo(m, true, 12, 512, 0.8, -1);
    parsed_t P;
    render_parse(m, &P);
    assert_true(val(&P, "krill_requests_running", NULL) == 3);
    assert_true(val(&P, "krill_requests_waiting", NULL) == 7);
    assert_true(val(&P, "krill_kv_cache_usage_ratio", NULL) == 0.25);
    assert_true(val(&P, "krill_batch_size", NULL) == 3);
    assert_true(val(&P, "krill_step_batch_tokens_bucket", "le=\"64\"") == 0);
    assert_true(val(&P, "krill_step_batch_tokens_bucket", "le=\"128\"") == 1);
    assert_true(val(&P, "krill_consumer_lag_messages", "topic=\"krill.requests\",partition=\"0\"") == 3);
    assert_true(val(&P, "krill_consumer_lag_messages", "topic=\"krill.requests\",partition=\"1\"") == 2);
    /* backlog = pending 40 + (3 + 7) in flight x 30 + lag 5 x (10 + 30) = 540 tokens, at 200/s */
    assert_true(fabs(val(&P, "krill_backlog_tokens", NULL) - 540) < 1e-9);
    assert_true(fabs(val(&P, "krill_backlog_drain_seconds", NULL) - 2.7) < 1e-9);
    assert_true(val(&P, "krill_slo_enabled", NULL) == 1);
    assert_true(val(&P, "krill_slo_max_seqs", NULL) == 12);
    assert_true(val(&P, "krill_slo_max_batch_tokens", NULL) == 512);
    assert_true(val(&P, "krill_slo_ttft_p95_seconds", NULL) == 0.8);
    assert_true(isnan(val(&P, "krill_slo_tpot_p95_seconds", NULL)));
    assert_true(val(&P, "krill_engine_steps_total", NULL) == 1);
    assert_true(val(&P, "krill_engine_busy_seconds_total", NULL) == 0.5);
    parsed_free(&P);
    /* partitions not in the next update disappear */
    metrics_set_lag(m, lag + 1, 1);
    render_parse(m, &P);
    assert_false(has_series(&P, "krill_consumer_lag_messages", "topic=\"krill.requests\",partition=\"0\""));
    assert_true(val(&P, "krill_consumer_lag_messages", "topic=\"krill.requests\",partition=\"1\"") == 2);
    parsed_free(&P);
    metrics_free(m);
}

static void test_label_escaping_and_overflow(void **state) {
    (void)state;
    metrics_t *m = metrics_new();
    metrics_set_info(m, "w\"1", "cpu", "cpu (2 threads)", "we\\ird\nname");
    char code[32];
    for (int i = 0; i < METRICS_MAX_LABELS + 4; i++) {
        snprintf(code, sizeof code, "code_%d", i);
        metrics_dlq(m, code);
    }
    metrics_dlq(m, "code_0");
    metrics_dlq(m, "a_code_that_is_far_too_long_to_be_a_label_value_here");
    parsed_t P;
    render_parse(m, &P);
    char want[256];
    snprintf(want, sizeof want, "version=\"%s\",worker=\"w\"1\",backend=\"cpu\",device=\"cpu (2 threads)\","
             "model=\"we\\ird\nname\"", KRILL_VERSION);
    assert_true(val(&P, "krill_info", want) == 1);
    assert_true(val(&P, "krill_dlq_total", "code=\"code_0\"") == 2);
    assert_true(val(&P, "krill_dlq_total", "code=\"code_15\"") == 1);
    assert_false(has_series(&P, "krill_dlq_total", "code=\"code_16\""));
    assert_true(val(&P, "krill_dlq_total", "code=\"other\"") == 5);
    parsed_free(&P);
    metrics_free(m);
}

/* Four threads hammer the same series; every update must be counted once. */
#define HAMMER_N 50000
static void *hammer(void *arg) {
    metrics_t *m = arg;
    for (int i = 0; i < HAMMER_N; i++) {
        metrics_request_done(m, (i & 1) ? 200 : 400, (i & 1) ? "stop" : NULL, 1, 2, 0.001, 0.01, 0.001, 0.25);
        if (i % 10 == 0) metrics_dlq(m, (i & 2) ? "x" : "y");
    }
    return NULL;
}
static void *scraper(void *arg) {
    metrics_t *m = arg;
    for (int i = 0; i < 50; i++) {
        parsed_t P;
        render_parse(m, &P); /* consistent (cumulative, +Inf == _count) while updated */
        parsed_free(&P);
    }
    return NULL;
}
static void test_concurrent_updates(void **state) {
    (void)state;
    metrics_t *m = metrics_new();
    pthread_t t[5];
    for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&t[i], NULL, hammer, m), 0);
    assert_int_equal(pthread_create(&t[4], NULL, scraper, m), 0);
    for (int i = 0; i < 5; i++) pthread_join(t[i], NULL);
    parsed_t P;
    render_parse(m, &P);
    assert_true(val(&P, "krill_requests_total", "status=\"200\",finish_reason=\"stop\"") == 2.0 * HAMMER_N);
    assert_true(val(&P, "krill_requests_total", "status=\"400\",finish_reason=\"error\"") == 2.0 * HAMMER_N);
    assert_true(val(&P, "krill_prompt_tokens_total", NULL) == 4.0 * HAMMER_N);
    assert_true(val(&P, "krill_request_latency_seconds_count", NULL) == 4.0 * HAMMER_N);
    assert_true(val(&P, "krill_request_latency_seconds_sum", NULL) == 0.25 * 4 * HAMMER_N); /* exact in binary */
    assert_true(val(&P, "krill_dlq_total", "code=\"x\"") + val(&P, "krill_dlq_total", "code=\"y\"") ==
                4.0 * (HAMMER_N / 10));
    parsed_free(&P);
    metrics_free(m);
}

/* librdkafka statistics, shaped as librdkafka 2.0's STATISTICS.md documents them. */
static const char *stats_consumer =
    "{\"name\":\"w-1#consumer-1\",\"client_id\":\"w-1\",\"type\":\"consumer\",\"ts\":1,\"time\":2,"
    "\"brokers\":{},\"cgrp\":{\"state\":\"up\"},"
    "\"topics\":{"
    " \"krill.requests\":{\"topic\":\"krill.requests\",\"partitions\":{"
    "  \"0\":{\"partition\":0,\"desired\":true,\"fetch_state\":\"active\",\"consumer_lag\":12,\"consumer_lag_stored\":13},"
    "  \"1\":{\"partition\":1,\"desired\":false,\"fetch_state\":\"none\",\"consumer_lag\":40},"
    "  \"2\":{\"partition\":2,\"desired\":true,\"fetch_state\":\"offset-query\",\"consumer_lag\":-1},"
    "  \"3\":{\"partition\":3,\"desired\":true,\"consumer_lag\":0},"
    "  \"-1\":{\"partition\":-1,\"desired\":false,\"consumer_lag\":-1}}},"
    " \"other.topic\":{\"topic\":\"other.topic\",\"partitions\":{"
    "  \"7\":{\"partition\":7,\"consumer_lag\":5}}}}}";

static void test_rdkafka_stats(void **state) {
    (void)state;
    metrics_lag_t out[8];
    size_t n = 99;
    char err[256];
    assert_int_equal(metrics_parse_rdkafka_stats(stats_consumer, strlen(stats_consumer), out, 8, &n, err, sizeof err),
                     1);
    assert_int_equal(n, 3);
    int seen0 = 0, seen3 = 0, seen7 = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(out[i].topic, "krill.requests") == 0 && out[i].partition == 0 && out[i].lag == 12) seen0++;
        if (strcmp(out[i].topic, "krill.requests") == 0 && out[i].partition == 3 && out[i].lag == 0) seen3++;
        if (strcmp(out[i].topic, "other.topic") == 0 && out[i].partition == 7 && out[i].lag == 5) seen7++;
    }
    assert_int_equal(seen0 + seen3 + seen7, 3);
    /* max respected */
    assert_int_equal(metrics_parse_rdkafka_stats(stats_consumer, strlen(stats_consumer), out, 2, &n, err, sizeof err),
                     1);
    assert_int_equal(n, 2);
    /* a producer's statistics leave the table alone */
    const char *prod = "{\"type\":\"producer\",\"topics\":{\"t\":{\"partitions\":{\"0\":{\"partition\":0,"
                       "\"consumer_lag\":3}}}}}";
    assert_int_equal(metrics_parse_rdkafka_stats(prod, strlen(prod), out, 8, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    /* not JSON, wrong shapes */
    assert_int_equal(metrics_parse_rdkafka_stats("{\"type\":", 8, out, 8, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "statistics"));
    assert_int_equal(metrics_parse_rdkafka_stats("[1]", 3, out, 8, &n, err, sizeof err), -1);
    assert_int_equal(metrics_parse_rdkafka_stats("{\"topics\":3}", 12, out, 8, &n, err, sizeof err), -1);
    /* a consumer without topics: replace with nothing */
    assert_int_equal(metrics_parse_rdkafka_stats("{\"type\":\"consumer\"}", 19, out, 8, &n, err, sizeof err), 1);
    assert_int_equal(n, 0);

    metrics_t *m = metrics_new();
    assert_int_equal(metrics_update_from_rdkafka_stats(m, stats_consumer, strlen(stats_consumer), err, sizeof err), 1);
    parsed_t P;
    render_parse(m, &P);
    assert_true(val(&P, "krill_consumer_lag_messages", "topic=\"krill.requests\",partition=\"0\"") == 12);
    assert_true(val(&P, "krill_consumer_lag_messages", "topic=\"other.topic\",partition=\"7\"") == 5);
    assert_false(has_series(&P, "krill_consumer_lag_messages", "topic=\"krill.requests\",partition=\"1\""));
    parsed_free(&P);
    assert_int_equal(metrics_update_from_rdkafka_stats(m, prod, strlen(prod), err, sizeof err), 0);
    render_parse(m, &P);
    assert_true(val(&P, "krill_consumer_lag_messages", "topic=\"krill.requests\",partition=\"0\"") == 12);
    parsed_free(&P);
    metrics_free(m);
    assert_int_equal(metrics_update_from_rdkafka_stats(NULL, prod, strlen(prod), err, sizeof err), 0);
}

static void test_health(void **state) {
    (void)state;
    metrics_t *m = metrics_new();
    char why[256];
    assert_int_equal(metrics_health(m, why, sizeof why), 0);
    assert_non_null(strstr(why, "starting"));
    metrics_set_consumer_state(m, METRICS_CONSUMER_WAITING);
    assert_int_equal(metrics_health(m, why, sizeof why), 0); /* engine never looped */
    assert_non_null(strstr(why, "engine"));
    metrics_engine_heartbeat(m);
    assert_int_equal(metrics_health(m, why, sizeof why), 0); /* subscribed, never joined */
    assert_non_null(strstr(why, "not joined"));
    metrics_consumer_joined(m);
    assert_int_equal(metrics_health(m, why, sizeof why), 1); /* not connected yet, within the grace */
    metrics_set_consumer_state(m, METRICS_CONSUMER_ASSIGNED);
    assert_int_equal(metrics_health(m, why, sizeof why), 1);
    metrics_set_health_timeout(m, 0.05);
    usleep(120 * 1000);
    assert_int_equal(metrics_health(m, why, sizeof why), 0); /* the engine loop stalled */
    metrics_engine_heartbeat(m);
    assert_int_equal(metrics_health(m, why, sizeof why), 1);
    metrics_set_consumer_state(m, METRICS_CONSUMER_STOPPED);
    assert_int_equal(metrics_health(m, why, sizeof why), 0);
    metrics_free(m);
}

/* Kafka's part of /healthz: the grace without a broker, authentication, the gauge. */
static void test_health_kafka(void **state) {
    (void)state;
    metrics_t *m = metrics_new();
    char why[256];
    metrics_set_consumer_state(m, METRICS_CONSUMER_ASSIGNED);
    metrics_consumer_joined(m);
    metrics_engine_heartbeat(m);
    metrics_set_health_grace(m, 0.05);
    usleep(120 * 1000);
    metrics_engine_heartbeat(m);
    assert_int_equal(metrics_health(m, why, sizeof why), 0); /* never connected, past the grace */
    assert_non_null(strstr(why, "no broker reachable"));
    metrics_set_kafka_connection(m, true, false);
    assert_int_equal(metrics_health(m, why, sizeof why), 1);
    assert_non_null(strstr(why, "kafka=connected"));
    parsed_t P;
    render_parse(m, &P);
    assert_true(val(&P, "krill_kafka_connected", NULL) == 1);
    parsed_free(&P);
    metrics_set_kafka_connection(m, false, false); /* all brokers down: the grace starts now */
    assert_int_equal(metrics_health(m, why, sizeof why), 1);
    usleep(120 * 1000);
    metrics_engine_heartbeat(m);
    assert_int_equal(metrics_health(m, why, sizeof why), 0);
    metrics_set_health_grace(m, 30);
    assert_int_equal(metrics_health(m, why, sizeof why), 1);
    metrics_set_kafka_connection(m, false, true); /* credentials rejected: no grace */
    assert_int_equal(metrics_health(m, why, sizeof why), 0);
    assert_non_null(strstr(why, "authentication failed"));
    assert_null(strchr(why, '\n'));
    metrics_kafka_error(m, "authentication");
    metrics_kafka_error(m, "authentication");
    metrics_kafka_error(m, "all_brokers_down");
    render_parse(m, &P);
    assert_true(val(&P, "krill_kafka_connected", NULL) == 0);
    assert_true(val(&P, "krill_kafka_errors_total", "kind=\"authentication\"") == 2);
    assert_true(val(&P, "krill_kafka_errors_total", "kind=\"all_brokers_down\"") == 1);
    parsed_free(&P);
    metrics_set_kafka_connection(m, true, false); /* a broker answers again */
    assert_int_equal(metrics_health(m, why, sizeof why), 1);
    metrics_free(m);
}

/* NULL registries (metrics off) are accepted by every setter. */
static void test_null_registry(void **state) {
    (void)state;
    metrics_request_done(NULL, 200, "stop", 1, 1, 0, 0, 0, 0);
    metrics_set_preemptions(NULL, 1);
    metrics_dlq(NULL, "x");
    metrics_step(NULL, 1, 1, 0.1);
    metrics_set_engine(NULL, 1, 1, 0.5);
    metrics_set_pending_prompt_tokens(NULL, 3);
    metrics_set_slo(NULL, true, 1, 1, 0, 0);
    metrics_set_consumer_state(NULL, METRICS_CONSUMER_ASSIGNED);
    metrics_engine_heartbeat(NULL);
    metrics_set_health_timeout(NULL, 1);
    metrics_set_kafka_connection(NULL, true, false);
    metrics_set_health_grace(NULL, 1);
    metrics_consumer_joined(NULL);
    metrics_kafka_error(NULL, "transport");
    metrics_set_lag(NULL, NULL, 0);
    metrics_set_info(NULL, "a", "b", "c", "d");
    metrics_free(NULL);
    assert_int_equal(metrics_port(NULL), 0);
}

/* ---------------------------------------------------------------- HTTP */

/* A TCP connection to 127.0.0.1:port. */
static int tcp_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* One HTTP/1.0 request to 127.0.0.1:port; returns the status code, body in *body (malloc'd). */
static int http_req(int port, const char *method, const char *path, char **body) {
    int fd = tcp_connect(port);
    struct timeval tv = {.tv_sec = 3}; /* an endpoint that does not answer fails the test, not hangs it */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char req[256];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", method, path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (len + 4096 > cap) buf = realloc(buf, cap *= 2);
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r <= 0) break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = 0;
    int code = 0;
    assert_int_equal(sscanf(buf, "HTTP/1.%*d %d", &code), 1);
    char *b = strstr(buf, "\r\n\r\n");
    assert_non_null(b);
    if (body) {
        *body = strdup(b + 4);
        /* the content type of /metrics is the format's */
        if (strcmp(path, "/metrics") == 0 && code == 200)
            assert_non_null(strstr(buf, "text/plain; version=0.0.4"));
    }
    free(buf);
    return code;
}

static void test_http(void **state) {
    (void)state;
    metrics_t *m = metrics_new();
    char err[512];
    assert_int_equal(metrics_serve(m, "127.0.0.1:0", err, sizeof err), 0);
    int port = metrics_port(m);
    assert_true(port > 0);
    metrics_request_done(m, 200, "stop", 3, 4, 0.01, 0.02, 0.003, 0.05);
    char *body = NULL;
    assert_int_equal(http_req(port, "GET", "/metrics", &body), 200);
    parsed_t P;
    parse_exposition(body, &P);
    assert_true(val(&P, "krill_requests_total", "status=\"200\",finish_reason=\"stop\"") == 1);
    parsed_free(&P);
    free(body);
    assert_int_equal(http_req(port, "GET", "/healthz", &body), 503);
    assert_non_null(strstr(body, "unhealthy"));
    free(body);
    metrics_set_consumer_state(m, METRICS_CONSUMER_WAITING);
    metrics_consumer_joined(m);
    metrics_engine_heartbeat(m);
    assert_int_equal(http_req(port, "GET", "/healthz", &body), 200);
    assert_int_equal(strncmp(body, "ok", 2), 0);
    free(body);
    assert_int_equal(http_req(port, "HEAD", "/healthz", NULL), 200);
    assert_int_equal(http_req(port, "POST", "/metrics", NULL), 405);
    assert_int_equal(http_req(port, "GET", "/nope", NULL), 404);

    /* a second server on the same port fails with a message that says what to do */
    metrics_t *m2 = metrics_new();
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    assert_int_equal(metrics_serve(m2, listen, err, sizeof err), -1);
    assert_non_null(strstr(err, "metrics.listen"));
    assert_non_null(strstr(err, "off"));
    metrics_free(m2);
    assert_int_equal(metrics_serve(m, "127.0.0.1:0", err, sizeof err), -1); /* already running */
    metrics_free(m);                                                          /* stops the server */
}

/* A slow-loris: 70 connections that never finish their headers (more than
 * libmicrohttpd's limit of 64). New connections close the oldest above the cap, so
 * /metrics still answers, quickly, and the drops are counted. */
static void test_http_slowloris(void **state) {
    (void)state;
    metrics_t *m = metrics_new();
    char err[512];
    assert_int_equal(metrics_serve(m, "127.0.0.1:0", err, sizeof err), 0);
    int port = metrics_port(m);
    enum { N_LORIS = 70 };
    int fds[N_LORIS];
    for (int i = 0; i < N_LORIS; i++) {
        fds[i] = tcp_connect(port);
        const char *part = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Trickle: 1\r\n";
        assert_int_equal(write(fds[i], part, strlen(part)), (ssize_t)strlen(part));
    }
    for (int k = 0; k < 3; k++) {
        char *body = NULL;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(http_req(port, "GET", "/metrics", &body), 200);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        if (s > 2) fail_msg("/metrics took %.2f s under a slow-loris", s);
        parsed_t P;
        parse_exposition(body, &P);
        assert_true(val(&P, "krill_metrics_connections_dropped_total", NULL) >= N_LORIS - 32);
        parsed_free(&P);
        free(body);
    }
    for (int i = 0; i < N_LORIS; i++) close(fds[i]);
    metrics_free(m);
}

/* process_*: sane figures for this very process. */
static void test_process_metrics(void **state) {
    (void)state;
    metrics_t *m = metrics_new();
    parsed_t P;
    render_parse(m, &P);
    time_t now = time(NULL);
    double start = val(&P, "process_start_time_seconds", NULL);
    assert_true(start > (double)now - 3600 && start <= (double)now + 1);
    assert_true(val(&P, "process_resident_memory_bytes", NULL) > 1e5);
    assert_true(val(&P, "process_virtual_memory_bytes", NULL) >= val(&P, "process_resident_memory_bytes", NULL));
    double fds = val(&P, "process_open_fds", NULL);
    assert_true(fds >= 3 && fds <= val(&P, "process_max_fds", NULL));
    assert_true(val(&P, "process_cpu_seconds_total", NULL) >= 0);
    parsed_free(&P);
    metrics_free(m);
    /* the stat line: a comm with spaces and parentheses does not shift the fields */
    const char *line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 12345 "
                       "1048576 77 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n";
    unsigned long long cpu = 0, st = 0, vs = 0;
    long long rss = 0;
    assert_int_equal(procstat_parse_stat(line, &cpu, &st, &vs, &rss), 0);
    assert_true(cpu == 300 && st == 12345 && vs == 1048576 && rss == 77);
    assert_int_equal(procstat_parse_stat("42 (x) S 1 2", &cpu, &st, &vs, &rss), -1);
    assert_int_equal(procstat_parse_stat("no paren", &cpu, &st, &vs, &rss), -1);
}

static void test_listen_values(void **state) {
    (void)state;
    metrics_t *m = metrics_new();
    char err[512];
    assert_int_equal(metrics_serve(m, "off", err, sizeof err), 0);
    assert_int_equal(metrics_port(m), 0);
    const char *bad[] = {"9464", ":9464", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000", "[::1:9464", "[]:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        if (metrics_serve(m, bad[i], err, sizeof err) != -1) fail_msg("accepted %s", bad[i]);
        assert_non_null(strstr(err, "metrics.listen"));
    }
    /* localhost by name (::1 or 127.0.0.1, whichever binds) */
    assert_int_equal(metrics_serve(m, "localhost:0", err, sizeof err), 0);
    assert_true(metrics_port(m) > 0);
    metrics_free(m);
}

int main(void) {
    log_set_level(LOG_LVL_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_family_present), cmocka_unit_test(test_counts_and_histograms),
        cmocka_unit_test(test_gauges_backlog_and_slo), cmocka_unit_test(test_label_escaping_and_overflow),
        cmocka_unit_test(test_concurrent_updates),  cmocka_unit_test(test_rdkafka_stats),
        cmocka_unit_test(test_health),              cmocka_unit_test(test_health_kafka),              cmocka_unit_test(test_null_registry),
        cmocka_unit_test(test_http),                cmocka_unit_test(test_listen_values),
        cmocka_unit_test(test_http_slowloris),      cmocka_unit_test(test_process_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
