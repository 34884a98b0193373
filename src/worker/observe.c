/* observe.c — see observe.h. Owns the stats window, the metrics registry and the SLO
 * controller; the loops hold only an observe_t. */
#include "observe.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "err.h"
#include "log.h"
#include "slo.h"

struct observe {
    stats_t *stats;
    metrics_t *metrics;      /* Prometheus registry (metrics.listen) */
    slo_t *slo;              /* adaptive batching (batching.slo); NULL when off */
    codec_format_t stats_fmt;
};

observe_t *observe_new(const config_t *cfg, const engine_info_t *info, const char *worker_id, char *err,
                       size_t errlen) {
    observe_t *o = calloc(1, sizeof *o);
    if (!o || !(o->stats = stats_new(0)) || !(o->metrics = metrics_new())) {
        err_set(err, errlen, "out of memory");
        goto fail;
    }
    o->stats_fmt = cfg->stats.format && strcmp(cfg->stats.format, "msgpack") == 0 ? CODEC_FMT_MSGPACK : CODEC_FMT_JSON;
    metrics_set_info(o->metrics, worker_id, info->backend, info->device,
                     config_model_name(cfg, info->model_name));
    metrics_set_health_grace(o->metrics, cfg->worker.health_grace_ms / 1e3);
    if (metrics_serve(o->metrics, cfg->metrics.listen, err, errlen) != 0) goto fail;
    if (metrics_port(o->metrics) > 0) /* the port actually bound: what ":0" chose */
        LOG_INFO("metrics serving", "listen=\"%s\" port=%d path=/metrics", cfg->metrics.listen,
                 metrics_port(o->metrics));
    metrics_set_slo(o->metrics, false, info->max_seqs, info->max_batch_tokens, -1, -1);
    if (cfg->batching.slo.ttft_ms > 0 || cfg->batching.slo.tpot_ms > 0) {
        slo_config_t sc;
        slo_config_defaults(&sc);
        sc.ttft_ms = cfg->batching.slo.ttft_ms;
        sc.tpot_ms = cfg->batching.slo.tpot_ms;
        sc.max_seqs = info->max_seqs;
        sc.max_batch_tokens = info->max_batch_tokens;
        if (!(o->slo = slo_new(&sc, err, errlen))) goto fail;
        metrics_set_slo(o->metrics, true, sc.max_seqs, sc.max_batch_tokens, -1, -1);
        LOG_INFO("adaptive batching on", "tpot_target_ms=%.1f ttft_target_ms=%.1f max_seqs<=%d max_batch_tokens<=%d",
                 sc.tpot_ms, sc.ttft_ms, sc.max_seqs, sc.max_batch_tokens);
    }
    return o;
fail:
    observe_free(o);
    return NULL;
}

void observe_free(observe_t *o) {
    if (!o) return;
    metrics_free(o->metrics); /* stops the HTTP server */
    slo_free(o->slo);
    stats_free(o->stats);
    free(o);
}

/* ---------------------------------------------------------------- io thread */

static double seconds(double ms) { return ms >= 0 ? ms / 1e3 : -1; }

void observe_request(observe_t *o, const observe_request_t *r) {
    bool ok = r->status == 200;
    double total = r->total_ms >= 0 ? r->total_ms : r->waited_ms;
    double tpot = r->completion_tokens >= 2 && r->ttft_ms >= 0 && r->total_ms >= 0
                      ? (r->total_ms - r->ttft_ms) / (r->completion_tokens - 1)
                      : -1;
    stats_add_request(o->stats, ok, r->prompt_tokens, r->completion_tokens, total, r->ttft_ms);
    metrics_request_done(o->metrics, r->status, r->finish_reason, r->prompt_tokens, r->completion_tokens,
                         seconds(r->queue_ms), seconds(r->ttft_ms), seconds(tpot), seconds(total));
    if (ok) slo_observe_request(o->slo, clock_now_ms(), r->ttft_ms, tpot);
}

void observe_dlq(observe_t *o, const char *code) {
    stats_add_dlq(o->stats);
    metrics_dlq(o->metrics, code);
}

void observe_partition_reset(observe_t *o, const char *topic) { metrics_partition_reset(o->metrics, topic); }

void observe_consumer_state(observe_t *o, metrics_consumer_state_t st) { metrics_set_consumer_state(o->metrics, st); }

void observe_transaction(observe_t *o, const char *outcome, double seconds) {
    metrics_transaction(o->metrics, outcome, seconds);
}

void observe_answers_ahead(observe_t *o, int64_t n) { metrics_set_answers_ahead(o->metrics, n); }

void observe_pending_prompt_tokens(observe_t *o, int64_t tokens) {
    metrics_set_pending_prompt_tokens(o->metrics, tokens);
}

void observe_kafka_connection(observe_t *o, bool up, bool auth_failed) {
    metrics_set_kafka_connection(o->metrics, up, auth_failed);
}

void observe_kafka_error(observe_t *o, const char *kind) { metrics_kafka_error(o->metrics, kind); }

void observe_consumer_joined(observe_t *o) { metrics_consumer_joined(o->metrics); }

void observe_kafka_stats(observe_t *o, const char *json, size_t len) {
    char err[256];
    if (metrics_update_from_rdkafka_stats(o->metrics, json, len, err, sizeof err) < 0)
        LOG_DEBUG("librdkafka statistics not understood", "error=\"%s\"", err);
}

int observe_stats_record(observe_t *o, const stats_gauges_t *g, int paused, buf_t *out) {
    char err[256];
    stats_window_t win;
    if (stats_emit(o->stats, g, o->stats_fmt, &win, out, err, sizeof err) != 0) {
        LOG_WARN("stats record not encoded", "error=\"%s\"", err);
        return -1;
    }
    LOG_INFO("stats", "requests=%llu errors=%llu dlq=%llu rps=%.1f gen_tps=%.1f in_flight=%d paused=%d",
             (unsigned long long)win.requests, (unsigned long long)win.errors, (unsigned long long)win.dlq,
             (double)win.requests / win.window_s, (double)win.generated_tokens / win.window_s, g->in_flight, paused);
    return 0;
}

/* ---------------------------------------------------------------- engine thread */

void observe_heartbeat(observe_t *o) { metrics_engine_heartbeat(o->metrics); }

bool observe_step(observe_t *o, int seqs, const engine_stats_t *st, int *max_seqs, int *max_batch_tokens) {
    if (seqs > 0) {
        stats_add_step(o->stats, seqs, st->last_step_tokens);
        metrics_step(o->metrics, seqs, st->last_step_tokens, st->last_step_ms / 1e3);
    }
    metrics_set_preemptions(o->metrics, st->preemptions);
    metrics_set_prefix_cache(o->metrics, st->prefix_hit_tokens, st->prefix_queries_tokens, st->prefix_cached_blocks);
    stats_set_prefix_cache(o->stats, st->prefix_hit_tokens, st->prefix_queries_tokens);
    metrics_set_engine(o->metrics, st->running, st->waiting,
                       st->kv_blocks_total > 0 ? (double)st->kv_blocks_used / (double)st->kv_blocks_total : 0);
    if (!o->slo || seqs <= 0) return false;
    /* adaptive batching: measure, then set the next steps' limits */
    slo_observe_step(o->slo, clock_now_ms(), seqs, st->last_step_tokens, st->last_step_ms, st->running, st->waiting);
    bool changed = slo_limits(o->slo, max_seqs, max_batch_tokens);
    slo_state_t ss;
    slo_get_state(o->slo, &ss);
    metrics_set_slo(o->metrics, true, ss.max_seqs, ss.max_batch_tokens, seconds(ss.ttft_p95_ms), seconds(ss.tpot_p95_ms));
    return changed;
}
