/* main.c — krill-worker: Kafka prompts in, completions out (design §1, §5).
 *
 * Two threads. The io thread owns every librdkafka handle, the offset tracker and the
 * request slots: it consumes, decodes, tokenizes and submits to the engine, encodes and
 * produces answers, serves delivery reports and stores offsets. It never waits on
 * inference: it sleeps only on one eventfd (Kafka queues + the engine thread). The
 * engine thread loops engine_wait/engine_step/engine_poll and hands finished results
 * over a bounded queue.
 *
 * Delivery (at-least-once): every consumed message takes a slot. Each record produced
 * for it (result, DLQ record) is counted in slot->pending; the slot's offset is done in
 * the tracker only when its answer is complete and every one of its records has been
 * acknowledged. Offsets are stored (auto-commit commits them) only up to the lowest
 * unfinished one. A record whose delivery fails is produced again (up to
 * PRODUCE_ATTEMPTS times, with backoff); if it still fails, the worker stops with exit
 * status 3 without storing past it, so a restart replays it.
 *
 * Rebalance: partitions get an epoch; when revoked, their work is given up to
 * worker.revoke_timeout_ms to be acknowledged and stored, then the epoch moves on and
 * late results of the old epoch are dropped (the new owner answers them).
 * Shutdown (SIGINT/SIGTERM): stop fetching, drain up to worker.drain_timeout_ms,
 * flush, store and commit, close the consumer (leave the group), exit 0. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "codec.h"
#include "config.h"
#include "engine.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "offsets.h"
#include "pipeline.h"
#include "queue.h"
#include "slo.h"
#include "stats.h"

#define PRODUCE_ATTEMPTS 6       /* a record that fails this many deliveries stops the worker */
#define CONSUME_BURST 512        /* messages taken per loop turn before serving the rest */
#define MAX_PARTS 4096

enum { EXIT_OK = 0, EXIT_USAGE = 2, EXIT_DELIVERY = 3, EXIT_FATAL = 4, EXIT_START = 1 };

typedef struct part {
    char *topic;
    int32_t partition;
    uint32_t epoch;        /* moves on at every assign and revoke */
    bool assigned;
    bool dirty;            /* an offset finished since the last store */
    offsets_partition_t *op; /* tracker while assigned */
    int live;              /* slots of the current epoch not finished */
} part_t;

typedef enum { SLOT_FREE = 0, SLOT_ENGINE, SLOT_ANSWERED } slot_state_t;

typedef struct slot {
    uint32_t gen;          /* bumps at each reuse: engine ids carry it */
    uint8_t state;
    codec_format_t fmt;
    codec_kind_t kind;
    part_t *part;
    uint32_t epoch;
    int64_t offset;
    int pending;           /* records produced, not acknowledged */
    char *id;              /* request id (custom_id, id or topic:partition:offset) */
    void *key;             /* the request's key, NULL when none */
    size_t keylen;
    rd_kafka_headers_t *hdrs; /* the request's headers + krill-source (template) */
    char source[320];      /* topic:partition:offset */
    int failures;          /* failed deliveries/produce calls of its records (retry budget) */
    int next_free;
    double t_consumed;     /* clock_now_ms() when consumed (metrics) */
    int n_prompt;          /* prompt tokens while in the engine (metrics: pending prompt tokens) */
} slot_t;

/* A record waiting to be produced again after a failed delivery. */
typedef struct retry {
    struct retry *next;
    slot_t *slot;
    const char *topic;
    void *key, *value;
    size_t keylen, len;
    rd_kafka_headers_t *hdrs;
    double due;
} retry_t;

typedef struct {
    config_t *cfg;
    engine_t *engine;
    const engine_info_t *info;
    kafka_io_t *kafka;
    pipeline_t pipe;
    codec_limits_t limits;
    const char *model_names[1];
    stats_t *stats;
    queue_t *done_q;       /* engine_result_t: engine thread -> io thread */
    char worker_id[128];

    slot_t *slots;
    int n_slots, free_head, used;
    part_t *parts[MAX_PARTS];
    int n_parts;
    offsets_t *offs;       /* trackers of the assigned partitions */
    bool fatal;            /* a fatal Kafka error: store nothing more */
    retry_t *retries;

    codec_request_t req;
    buf_t out;
    int exit_code;
    bool draining;
    double drain_deadline;
    bool in_revoke;

    pthread_t engine_thread;
    atomic_bool engine_stop;

    metrics_t *metrics;    /* Prometheus registry (metrics.listen); updates accept NULL */
    slo_t *slo;            /* adaptive batching (batching.slo); NULL when off */
    int64_t pending_prompt;/* prompt tokens of requests in the engine (io thread) */
} worker_t;

static volatile sig_atomic_t g_stop;
static volatile int g_wake_fd = -1;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
    if (g_wake_fd >= 0) {
        uint64_t one = 1;
        ssize_t n = write(g_wake_fd, &one, sizeof one);
        (void)n;
    }
}

/* ---------------------------------------------------------------- partitions */

static part_t *part_find(worker_t *w, const char *topic, int32_t partition) {
    for (int i = 0; i < w->n_parts; i++)
        if (w->parts[i]->partition == partition && strcmp(w->parts[i]->topic, topic) == 0) return w->parts[i];
    return NULL;
}

static part_t *part_get(worker_t *w, const char *topic, int32_t partition) {
    part_t *p = part_find(w, topic, partition);
    if (p) return p;
    CHECK(w->n_parts < MAX_PARTS);
    p = calloc(1, sizeof *p);
    CHECK(p != NULL);
    p->topic = strdup(topic);
    CHECK(p->topic != NULL);
    p->partition = partition;
    w->parts[w->n_parts++] = p;
    return p;
}

/* ---------------------------------------------------------------- slots */

static slot_t *slot_alloc(worker_t *w) {
    if (w->free_head < 0) return NULL;
    slot_t *s = &w->slots[w->free_head];
    w->free_head = s->next_free;
    s->gen++;
    s->state = SLOT_ENGINE;
    s->pending = 0;
    s->failures = 0;
    w->used++;
    return s;
}

static void slot_release(worker_t *w, slot_t *s) {
    free(s->id);
    free(s->key);
    if (s->hdrs) rd_kafka_headers_destroy(s->hdrs);
    s->id = NULL;
    s->key = NULL;
    s->hdrs = NULL;
    s->state = SLOT_FREE;
    s->next_free = w->free_head;
    w->free_head = (int)(s - w->slots);
    w->used--;
}

static bool slot_current(const slot_t *s) { return s->part->assigned && s->epoch == s->part->epoch; }

static uint64_t slot_engine_id(const worker_t *w, const slot_t *s) {
    return ((uint64_t)s->gen << 32) | (uint64_t)(s - w->slots);
}

static slot_t *slot_by_engine_id(worker_t *w, uint64_t id) {
    uint32_t idx = (uint32_t)(id & 0xffffffffu), gen = (uint32_t)(id >> 32);
    if (idx >= (uint32_t)w->n_slots) return NULL;
    slot_t *s = &w->slots[idx];
    return (s->state == SLOT_ENGINE && s->gen == gen) ? s : NULL;
}

/* The answer is complete and every record is acknowledged: the offset is done. */
static void slot_maybe_finish(worker_t *w, slot_t *s) {
    if (s->state != SLOT_ANSWERED || s->pending > 0) return;
    if (slot_current(s)) {
        if (offsets_done(s->part->op, s->offset) != 0)
            LOG_ERROR("offset was not pending", "topic=%s partition=%d offset=%lld", s->part->topic,
                      (int)s->part->partition, (long long)s->offset);
        s->part->dirty = true;
        s->part->live--;
    }
    slot_release(w, s);
}

/* ---------------------------------------------------------------- producing */

/* Queues a record of slot s to be produced again; s->failures (already counted for
 * this failure) sets the backoff: 0.5, 1, 2, 4, 8 s. */
static void retry_add(worker_t *w, slot_t *s, const char *topic, const void *key, size_t keylen, const void *value,
                      size_t len, rd_kafka_headers_t *hdrs) {
    if (s->failures >= PRODUCE_ATTEMPTS) { /* budget spent: stop now, without this answer */
        LOG_ERROR("a record could not be delivered; stopping without storing its offset (a restart replays it)",
                  "topic=%s source=%s failures=%d", topic, s->source, s->failures);
        if (w->exit_code == EXIT_OK) w->exit_code = EXIT_DELIVERY;
        g_stop = 1;
        if (hdrs) rd_kafka_headers_destroy(hdrs);
        return; /* s->pending keeps counting the record: its offset never finishes */
    }
    retry_t *r = calloc(1, sizeof *r);
    CHECK(r != NULL);
    r->slot = s;
    r->topic = topic;
    if (keylen) {
        r->key = malloc(keylen);
        CHECK(r->key != NULL);
        memcpy(r->key, key, keylen);
    }
    r->keylen = keylen;
    r->value = malloc(len ? len : 1);
    CHECK(r->value != NULL);
    if (len) memcpy(r->value, value, len);
    r->len = len;
    r->hdrs = hdrs;
    int f = s->failures < 6 ? s->failures : 6;
    r->due = clock_now_ms() + 250.0 * (double)(1 << f);
    r->next = w->retries;
    w->retries = r;
}

static void retry_free(retry_t *r) {
    free(r->key);
    free(r->value);
    if (r->hdrs) rd_kafka_headers_destroy(r->hdrs);
    free(r);
}

/* Produces one record for slot s (s may be NULL: stats). On an immediate failure the
 * record goes to the retry list, so the slot's accounting is the same either way. */
static void produce(worker_t *w, slot_t *s, const char *topic, const void *key, size_t keylen, const void *value,
                    size_t len, rd_kafka_headers_t *hdrs) {
    char err[256];
    if (s) s->pending++;
    if (kafka_io_produce(w->kafka, topic, key, keylen, value, len, hdrs, s, 1000, err, sizeof err) == 0) return;
    if (!s) {
        LOG_WARN("stats record not produced", "error=\"%s\"", err);
        if (hdrs) rd_kafka_headers_destroy(hdrs);
        return;
    }
    LOG_WARN("produce failed; will retry", "topic=%s source=%s attempt=%d error=\"%s\"", topic, s->source,
             s->failures + 1, err);
    /* s->pending stays counted: the retry entry stands for the record. */
    s->failures++;
    retry_add(w, s, topic, key, keylen, value, len, hdrs);
}

static void retries_serve(worker_t *w) {
    double now = clock_now_ms();
    retry_t *due = NULL, **pp = &w->retries;
    while (*pp) { /* move the due entries out; each stands for one pending record */
        retry_t *r = *pp;
        if (r->due <= now) {
            *pp = r->next;
            r->next = due;
            due = r;
        } else {
            pp = &r->next;
        }
    }
    while (due) {
        retry_t *r = due;
        due = r->next;
        if (!slot_current(r->slot)) { /* its partition moved on: the new owner answers it */
            r->slot->pending--;
            slot_maybe_finish(w, r->slot);
            retry_free(r);
            continue;
        }
        if (r->slot->failures >= PRODUCE_ATTEMPTS) {
            LOG_ERROR("a record could not be delivered; stopping without storing its offset (a restart replays it)",
                      "topic=%s source=%s failures=%d", r->topic, r->slot->source, r->slot->failures);
            if (w->exit_code == EXIT_OK) w->exit_code = EXIT_DELIVERY;
            g_stop = 1;
            retry_free(r); /* the slot keeps its pending count: its offset never finishes */
            continue;
        }
        char err[256];
        if (kafka_io_produce(w->kafka, r->topic, r->key, r->keylen, r->value, r->len, r->hdrs, r->slot, 1000, err,
                             sizeof err) == 0) {
            r->hdrs = NULL; /* owned by librdkafka */
            retry_free(r);
            continue;
        }
        r->slot->failures++;
        r->due = now + 250.0 * (double)(1 << (r->slot->failures < 6 ? r->slot->failures : 6));
        LOG_WARN("produce failed again", "topic=%s source=%s attempt=%d error=\"%s\"", r->topic, r->slot->source,
                 r->slot->failures, err);
        r->next = w->retries;
        w->retries = r;
    }
}

static void on_delivered(void *ctx, void *opaque, rd_kafka_resp_err_t err, const rd_kafka_message_t *m) {
    worker_t *w = ctx;
    slot_t *s = opaque;
    if (!s) { /* stats record */
        if (err) LOG_WARN("stats record not delivered", "error=%s", rd_kafka_err2name(err));
        return;
    }
    if (!err) {
        s->pending--;
        slot_maybe_finish(w, s);
        return;
    }
    if (!slot_current(s)) { /* its partition moved on: the new owner answers it */
        s->pending--;
        slot_maybe_finish(w, s);
        return;
    }
    /* Keep the pending count: the retry entry stands for this record. */
    rd_kafka_headers_t *h = kafka_headers_copy(m);
    const char *topic = rd_kafka_topic_name(m->rkt);
    /* The topic name must outlive the message: use our configured names. */
    const char *t = strcmp(topic, w->cfg->kafka.topic_results) == 0 ? w->cfg->kafka.topic_results
                    : strcmp(topic, w->cfg->kafka.topic_dlq) == 0   ? w->cfg->kafka.topic_dlq
                                                                    : NULL;
    LOG_WARN("delivery failed; will retry", "topic=%s source=%s error=%s", topic, s->source, rd_kafka_err2name(err));
    if (!t) {
        LOG_ERROR("delivery failed for a record of an unknown topic", "topic=%s", topic);
        if (h) rd_kafka_headers_destroy(h);
        s->pending--;
        if (w->exit_code == EXIT_OK) w->exit_code = EXIT_DELIVERY;
        g_stop = 1;
        return;
    }
    s->failures++;
    retry_add(w, s, t, m->key, m->key_len, m->payload, m->len, h);
}

static rd_kafka_headers_t *headers_for(const slot_t *s) {
    return s->hdrs ? rd_kafka_headers_copy(s->hdrs) : rd_kafka_headers_new(1);
}

/* Sends w->out (an encoded result) for slot s to the results topic. */
static void produce_result(worker_t *w, slot_t *s) {
    const void *key = s->key ? s->key : s->id;
    size_t keylen = s->key ? s->keylen : strlen(s->id);
    produce(w, s, w->cfg->kafka.topic_results, key, keylen, w->out.data, w->out.len, headers_for(s));
}

static void answer_error(worker_t *w, slot_t *s, codec_error_t code, const char *msg, const char *param) {
    char err[256];
    if (pipeline_encode_error(&w->pipe, s->id, s->kind, s->fmt, code, msg, param, &w->out, err, sizeof err) != 0) {
        LOG_ERROR("cannot encode an error result", "source=%s error=\"%s\"", s->source, err);
        return;
    }
    produce_result(w, s);
    stats_add_request(w->stats, false, 0, 0, -1, -1);
    metrics_request_done(w->metrics, codec_error_status(code), 0, 0, -1, -1, -1, (clock_now_ms() - s->t_consumed) / 1e3);
}

/* ---------------------------------------------------------------- consuming */

static void handle_message(worker_t *w, rd_kafka_message_t *m) {
    const char *topic = rd_kafka_topic_name(m->rkt);
    part_t *p = part_find(w, topic, m->partition);
    if (!p || !p->assigned || !p->op) {
        LOG_WARN("message from a partition not assigned; ignored", "topic=%s partition=%d offset=%lld", topic,
                 (int)m->partition, (long long)m->offset);
        return;
    }
    slot_t *s = slot_alloc(w);
    if (!s) {
        /* More in flight than the slots hold (pause came late): read it again later. */
        rd_kafka_seek(m->rkt, m->partition, m->offset, 0);
        kafka_io_pause_all(w->kafka);
        return;
    }
    if (offsets_track(p->op, m->offset) != 0) {
        LOG_WARN("offset out of order; ignored", "topic=%s partition=%d offset=%lld", topic, (int)m->partition,
                 (long long)m->offset);
        s->state = SLOT_ANSWERED;
        slot_release(w, s);
        return;
    }
    s->part = p;
    s->epoch = p->epoch;
    s->offset = m->offset;
    s->t_consumed = clock_now_ms();
    s->n_prompt = 0;
    p->live++;
    snprintf(s->source, sizeof s->source, "%s:%d:%lld", topic, (int)m->partition, (long long)m->offset);
    if (m->key && m->key_len) {
        s->key = malloc(m->key_len);
        CHECK(s->key != NULL);
        memcpy(s->key, m->key, m->key_len);
        s->keylen = m->key_len;
    }
    s->hdrs = kafka_headers_copy(m);
    if (!s->hdrs) s->hdrs = rd_kafka_headers_new(1);
    rd_kafka_header_add(s->hdrs, "krill-source", -1, s->source, -1);

    codec_request_t *req = &w->req;
    codec_decode(&w->limits, m->payload, m->len, s->source, req);
    s->id = strdup(req->id ? req->id : s->source);
    CHECK(s->id != NULL);
    s->fmt = req->format;
    s->kind = req->kind;
    char err[256];
    if (req->status == CODEC_UNDECODABLE) {
        rd_kafka_headers_t *h = headers_for(s);
        const char *code = codec_dlq_name(req->dlq);
        rd_kafka_header_add(h, "krill-error-code", -1, code, -1);
        rd_kafka_header_add(h, "krill-error-message", -1, req->error_message, -1);
        LOG_DEBUG("undecodable message to the DLQ", "source=%s code=%s", s->source, code);
        produce(w, s, w->cfg->kafka.topic_dlq, m->key, m->key ? m->key_len : 0, m->payload, m->len, h);
        stats_add_dlq(w->stats);
        metrics_dlq(w->metrics, code);
        if (req->has_custom_id) {
            if (pipeline_encode_request_error(&w->pipe, req, &w->out, err, sizeof err) == 0) {
                produce_result(w, s);
                stats_add_request(w->stats, false, 0, 0, -1, -1);
                metrics_request_done(w->metrics, req->status_code ? req->status_code : 400, 0, 0, -1, -1, -1,
                                     (clock_now_ms() - s->t_consumed) / 1e3);
            } else {
                LOG_ERROR("cannot encode an error result", "source=%s error=\"%s\"", s->source, err);
            }
        }
        s->state = SLOT_ANSWERED;
    } else if (req->status == CODEC_INVALID) {
        if (pipeline_encode_request_error(&w->pipe, req, &w->out, err, sizeof err) == 0) {
            produce_result(w, s);
            stats_add_request(w->stats, false, 0, 0, -1, -1);
            metrics_request_done(w->metrics, req->status_code ? req->status_code : 400, 0, 0, -1, -1, -1,
                                 (clock_now_ms() - s->t_consumed) / 1e3);
        } else {
            LOG_ERROR("cannot encode an error result", "source=%s error=\"%s\"", s->source, err);
        }
        s->state = SLOT_ANSWERED;
    } else {
        engine_request_t er;
        int32_t *ids = NULL;
        pipeline_error_t pe;
        if (pipeline_prepare(&w->pipe, req, slot_engine_id(w, s), &er, &ids, &pe) != 0) {
            answer_error(w, s, pe.code, pe.message, pe.param);
            s->state = SLOT_ANSWERED;
        } else {
            int rc = engine_submit(w->engine, &er, err, sizeof err);
            free(ids);
            if (rc != ENGINE_OK) {
                pipeline_submit_error(rc, err, &pe);
                answer_error(w, s, pe.code, pe.message, pe.param);
                s->state = SLOT_ANSWERED;
            } else {
                s->state = SLOT_ENGINE;
                s->n_prompt = er.n_prompt;
                w->pending_prompt += er.n_prompt;
            }
        }
    }
    codec_request_clear(req);
    if (s->state == SLOT_ANSWERED) slot_maybe_finish(w, s);
}

/* ---------------------------------------------------------------- completions */

static void handle_completions(worker_t *w) {
    engine_result_t r;
    char err[256];
    while (queue_pop(w->done_q, &r)) {
        slot_t *s = slot_by_engine_id(w, r.id);
        if (!s) {
            LOG_ERROR("engine result for an unknown request", "id=%llu", (unsigned long long)r.id);
            engine_result_clear(&r);
            continue;
        }
        w->pending_prompt -= s->n_prompt;
        s->n_prompt = 0;
        if (r.finish == ENGINE_FINISH_ABORTED || !slot_current(s)) {
            /* Given up (revoke or shutdown): no answer, the offset stays unfinished and
             * whoever owns the partition next answers it. */
            s->state = SLOT_ANSWERED;
            s->epoch = UINT32_MAX; /* never current again */
            engine_result_clear(&r);
            if (s->pending == 0) slot_release(w, s);
            continue;
        }
        bool ok = false;
        if (pipeline_encode_result(&w->pipe, s->id, s->kind, s->fmt, &r, &ok, &w->out, err, sizeof err) == 0) {
            produce_result(w, s);
            stats_add_request(w->stats, ok, r.prompt_tokens, r.completion_tokens, r.total_ms,
                              r.n_tokens > 0 ? r.ttft_ms : -1);
            pipeline_error_t pe = {0};
            if (!ok) pipeline_submit_error(r.error_code, r.error, &pe);
            double ttft = r.n_tokens > 0 ? r.ttft_ms : -1;
            double tpot = r.completion_tokens >= 2 ? (r.total_ms - r.ttft_ms) / (r.completion_tokens - 1) : -1;
            metrics_request_done(w->metrics, ok ? 200 : codec_error_status(pe.code), r.prompt_tokens,
                                 r.completion_tokens, r.queue_ms / 1e3, ttft >= 0 ? ttft / 1e3 : -1,
                                 tpot >= 0 ? tpot / 1e3 : -1, r.total_ms / 1e3);
            if (ok) slo_observe_request(w->slo, clock_now_ms(), ttft, tpot);
        } else {
            LOG_ERROR("cannot encode a result", "source=%s error=\"%s\"", s->source, err);
        }
        s->state = SLOT_ANSWERED;
        engine_result_clear(&r);
        slot_maybe_finish(w, s);
    }
}

static void store_offsets(worker_t *w) {
    for (int i = 0; i < w->n_parts; i++) {
        part_t *p = w->parts[i];
        if (!p->dirty || !p->assigned || !p->op) continue;
        p->dirty = false;
        int64_t o;
        if (offsets_take_committable(p->op, &o) && o >= 0) kafka_io_store_offset(w->kafka, p->topic, p->partition, o);
    }
}

/* ---------------------------------------------------------------- rebalance */

static void on_assigned(void *ctx, const rd_kafka_topic_partition_list_t *parts) {
    worker_t *w = ctx;
    for (int i = 0; i < parts->cnt; i++) {
        part_t *p = part_get(w, parts->elems[i].topic, parts->elems[i].partition);
        p->epoch++;
        p->assigned = true;
        p->dirty = false;
        p->live = 0;
        offsets_remove(w->offs, p->topic, p->partition); /* a fresh tracker per epoch */
        p->op = offsets_add(w->offs, p->topic, p->partition);
        CHECK(p->op != NULL);
    }
    if (parts->cnt > 0) metrics_set_consumer_state(w->metrics, METRICS_CONSUMER_ASSIGNED);
}

static int revoked_live(worker_t *w, const rd_kafka_topic_partition_list_t *parts) {
    int n = 0;
    for (int i = 0; i < parts->cnt; i++) {
        part_t *p = part_find(w, parts->elems[i].topic, parts->elems[i].partition);
        if (p && p->assigned) n += p->live;
    }
    return n;
}

static void on_revoked(void *ctx, const rd_kafka_topic_partition_list_t *parts, bool lost) {
    worker_t *w = ctx;
    double t0 = clock_now_ms();
    int timeout = w->draining ? 0 : w->cfg->worker.revoke_timeout_ms;
    if (!lost) {
        /* Finish what we have for these partitions, within the bound. */
        while (revoked_live(w, parts) > 0 && clock_now_ms() - t0 < timeout) {
            handle_completions(w);
            kafka_io_serve(w->kafka);
            retries_serve(w);
            if (revoked_live(w, parts) == 0) break;
            kafka_io_wait(w->kafka, 5);
        }
    }
    int left = revoked_live(w, parts);
    for (int i = 0; i < parts->cnt; i++) {
        part_t *p = part_find(w, parts->elems[i].topic, parts->elems[i].partition);
        if (!p || !p->assigned) continue;
        if (!lost && !w->fatal && p->op) {
            int64_t o = offsets_committable(p->op);
            if (o >= 0) kafka_io_store_offset(w->kafka, p->topic, p->partition, o);
        }
        /* Give up the rest: abort their engine work, drop their late answers. */
        for (int j = 0; j < w->n_slots; j++) {
            slot_t *s = &w->slots[j];
            if (s->state == SLOT_ENGINE && s->part == p && s->epoch == p->epoch)
                engine_abort(w->engine, slot_engine_id(w, s));
        }
        p->assigned = false;
        p->epoch++;
        p->live = 0;
        p->op = NULL;
        offsets_remove(w->offs, p->topic, p->partition);
    }
    LOG_INFO(lost ? "partitions lost" : "partitions released", "count=%d unfinished=%d waited_ms=%.0f", parts->cnt,
             left, clock_now_ms() - t0);
    bool any = false;
    for (int i = 0; i < w->n_parts; i++) any |= w->parts[i]->assigned;
    metrics_set_consumer_state(w->metrics, w->draining ? METRICS_CONSUMER_STOPPED
                                           : any        ? METRICS_CONSUMER_ASSIGNED
                                                        : METRICS_CONSUMER_WAITING);
}

/* librdkafka statistics of the consumer (io thread): per-partition lag for /metrics. */
static void on_kafka_stats(void *ctx, const char *json, size_t len) {
    worker_t *w = ctx;
    char err[256];
    if (metrics_update_from_rdkafka_stats(w->metrics, json, len, err, sizeof err) < 0)
        LOG_DEBUG("librdkafka statistics not understood", "error=\"%s\"", err);
}

/* ---------------------------------------------------------------- engine thread */

#define ENGINE_POLL_MAX 256

static void *engine_main(void *arg) {
    worker_t *w = arg;
    pthread_setname_np(pthread_self(), "krill-engine");
    engine_result_t *res = calloc(ENGINE_POLL_MAX, sizeof *res);
    CHECK(res != NULL);
    bool idle = true;
    int max_wait = w->cfg->batching.max_wait_ms;
    int max_seqs = w->cfg->batching.max_seqs > 0 ? w->cfg->batching.max_seqs : 64;
    while (!atomic_load(&w->engine_stop)) {
        metrics_engine_heartbeat(w->metrics);
        if (!engine_wait(w->engine, 50)) {
            idle = true;
            continue;
        }
        if (idle && max_wait > 0) {
            /* Work arrived after idling: give a burst a moment to gather into one batch. */
            double t0 = clock_now_ms();
            engine_stats_t st;
            for (;;) {
                engine_get_stats(w->engine, &st);
                if (st.waiting >= max_seqs || clock_now_ms() - t0 >= max_wait || atomic_load(&w->engine_stop)) break;
                struct timespec ts = {0, 500000};
                nanosleep(&ts, NULL);
            }
        }
        idle = false;
        int seqs = engine_step(w->engine);
        engine_stats_t st;
        engine_get_stats(w->engine, &st);
        if (seqs > 0) stats_add_step(w->stats, seqs, st.last_step_tokens);
        if (seqs > 0) metrics_step(w->metrics, seqs, st.last_step_tokens, st.last_step_ms / 1e3);
        metrics_set_engine(w->metrics, st.running, st.waiting,
                           st.kv_blocks_total > 0 ? (double)st.kv_blocks_used / (double)st.kv_blocks_total : 0);
        if (w->slo && seqs > 0) { /* adaptive batching: measure, then set the next steps' limits */
            slo_observe_step(w->slo, clock_now_ms(), seqs, st.last_step_tokens, st.last_step_ms, st.running, st.waiting);
            int ls, lt;
            if (slo_limits(w->slo, &ls, &lt)) engine_set_limits(w->engine, ls, lt);
            slo_state_t ss;
            slo_get_state(w->slo, &ss);
            metrics_set_slo(w->metrics, true, ss.max_seqs, ss.max_batch_tokens,
                            ss.ttft_p95_ms >= 0 ? ss.ttft_p95_ms / 1e3 : -1,
                            ss.tpot_p95_ms >= 0 ? ss.tpot_p95_ms / 1e3 : -1);
        }
        size_t n;
        bool any = false;
        while ((n = engine_poll(w->engine, res, ENGINE_POLL_MAX)) > 0) {
            for (size_t i = 0; i < n; i++) {
                /* The queue holds as many results as there are slots: a push can only
                 * wait while the io thread is busy; it never loses a result. */
                while (queue_push(w->done_q, &res[i], 1000) != 0) {
                    if (atomic_load(&w->engine_stop)) {
                        engine_result_clear(&res[i]);
                        break;
                    }
                }
            }
            any = true;
        }
        if (any) kafka_io_wake(w->kafka);
    }
    free(res);
    return NULL;
}

/* ---------------------------------------------------------------- stats */

static void emit_stats(worker_t *w) {
    engine_stats_t st;
    engine_get_stats(w->engine, &st);
    stats_gauges_t g = {
        .worker = w->worker_id,
        .backend = w->info->backend,
        .device = w->info->device,
        .queue_depth = st.waiting,
        .in_flight = w->used,
        .kv_cache_used_frac = st.kv_blocks_total > 0 ? (double)st.kv_blocks_used / (double)st.kv_blocks_total : 0,
    };
    buf_t buf = {0};
    char err[256];
    stats_window_t win;
    codec_format_t fmt = w->cfg->stats.format && strcmp(w->cfg->stats.format, "msgpack") == 0 ? CODEC_FMT_MSGPACK : CODEC_FMT_JSON;
    if (stats_emit(w->stats, &g, fmt, &win, &buf, err, sizeof err) != 0) {
        LOG_WARN("stats record not encoded", "error=\"%s\"", err);
        buf_free(&buf);
        return;
    }
    LOG_INFO("stats", "requests=%llu errors=%llu dlq=%llu rps=%.1f gen_tps=%.1f in_flight=%d paused=%d",
             (unsigned long long)win.requests, (unsigned long long)win.errors, (unsigned long long)win.dlq,
             (double)win.requests / win.window_s, (double)win.generated_tokens / win.window_s, w->used,
             (int)kafka_io_paused(w->kafka));
    if (w->cfg->kafka.topic_stats && *w->cfg->kafka.topic_stats)
        produce(w, NULL, w->cfg->kafka.topic_stats, w->worker_id, strlen(w->worker_id), buf.data, buf.len, NULL);
    buf_free(&buf);
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f) {
    fprintf(f,
            "usage: krill-worker [-c FILE] [--set section.key=value]... [--print-config] [--help] [--version]\n"
            "\n"
            "Consumes prompts from Kafka (kafka.topic_requests), runs them through the inference\n"
            "engine with continuous batching and produces one result per request\n"
            "(kafka.topic_results), a DLQ record per undecodable message (kafka.topic_dlq) and\n"
            "throughput statistics (kafka.topic_stats).\n"
            "\n"
            "  -c, --config FILE   libconfig file (see conf/krill.cfg for every key)\n"
            "  --set K=V           override one key (also K+=V to append to a list); repeatable\n"
            "  --print-config      print the effective configuration (secrets redacted) and exit\n"
            "  -h, --help          this text\n"
            "  --version           the version\n"
            "\n"
            "Environment variables KRILL_<SECTION>_<KEY> override the file; --set overrides both.\n"
            "SIGINT/SIGTERM: stop fetching, finish in-flight work (worker.drain_timeout_ms), flush,\n"
            "commit, leave the group, exit 0. Exit status: 1 start-up error, 2 usage, 3 a result\n"
            "could not be delivered, 4 fatal Kafka error.\n");
}

static int split_topics(char *list, const char **out, int max) {
    int n = 0;
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ') t++;
        char *e = t + strlen(t);
        while (e > t && e[-1] == ' ') *--e = 0;
        if (*t) out[n++] = t;
    }
    return n;
}

int main(int argc, char **argv) {
    const char *cfg_path = NULL;
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    size_t n_sets = 0;
    bool print_config = false;
    char err[1024];
    worker_t *w = NULL;
    int rc = EXIT_START;
    char *topics_copy = NULL;
    CHECK(sets != NULL);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            free(sets);
            return 0;
        } else if (!strcmp(a, "--version")) {
            printf("krill-worker %s\n", KRILL_VERSION);
            free(sets);
            return 0;
        } else if ((!strcmp(a, "-c") || !strcmp(a, "--config")) && i + 1 < argc) {
            cfg_path = argv[++i];
        } else if (!strcmp(a, "--set") && i + 1 < argc) {
            sets[n_sets++] = argv[++i];
        } else if (!strncmp(a, "--set=", 6)) {
            sets[n_sets++] = a + 6;
        } else if (!strcmp(a, "--print-config")) {
            print_config = true;
        } else {
            fprintf(stderr, "krill-worker: unknown or incomplete argument '%s' (try --help)\n", a);
            free(sets);
            return EXIT_USAGE;
        }
    }

    w = calloc(1, sizeof *w);
    CHECK(w != NULL);
    w->cfg = config_new();
    CHECK(w->cfg != NULL);
    if (config_load(w->cfg, cfg_path, NULL, sets, n_sets, err, sizeof err) != 0) {
        fprintf(stderr, "krill-worker: %s\n", err);
        rc = EXIT_USAGE;
        goto done;
    }
    if (print_config) {
        char *txt = config_render(w->cfg);
        if (txt) fputs(txt, stdout);
        free(txt);
        rc = 0;
        goto done;
    }
    config_t *cfg = w->cfg;
    int lvl = log_level_parse(cfg->log.level);
    if (lvl >= 0) log_set_level((log_level_t)lvl);
    if (cfg->worker.id && *cfg->worker.id) {
        snprintf(w->worker_id, sizeof w->worker_id, "%s", cfg->worker.id);
    } else {
        char host[64] = "worker";
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = 0;
        snprintf(w->worker_id, sizeof w->worker_id, "%s-%d", host, (int)getpid());
    }

    /* engine */
    engine_config_t ec;
    pipeline_engine_config(cfg, &ec);
    ec.max_queue = 0; /* the io thread bounds what it submits (worker.queue_high) */
    double t0 = clock_now_ms();
    w->engine = engine_open(&ec, err, sizeof err);
    if (!w->engine) {
        fprintf(stderr, "krill-worker: cannot open the model: %s\n", err);
        goto done;
    }
    w->info = engine_get_info(w->engine);
    LOG_INFO("engine ready", "model=\"%s\" backend=%s device=\"%s\" n_ctx=%d load_ms=%.0f", w->info->model_name,
             w->info->backend, w->info->device, w->info->n_ctx, clock_now_ms() - t0);

    /* metrics (metrics.listen) and adaptive batching (batching.slo) */
    w->metrics = metrics_new();
    CHECK(w->metrics != NULL);
    metrics_set_info(w->metrics, w->worker_id, w->info->backend, w->info->device,
                     cfg->model.name && *cfg->model.name ? cfg->model.name : w->info->model_name);
    if (metrics_serve(w->metrics, cfg->metrics.listen, err, sizeof err) != 0) {
        fprintf(stderr, "krill-worker: %s\n", err);
        goto done;
    }
    if (metrics_port(w->metrics) > 0) /* the port actually bound: what ":0" chose */
        LOG_INFO("metrics serving", "listen=\"%s\" port=%d path=/metrics", cfg->metrics.listen,
                 metrics_port(w->metrics));
    metrics_set_slo(w->metrics, false, w->info->max_seqs, w->info->max_batch_tokens, -1, -1);
    if (cfg->batching.slo.ttft_ms > 0 || cfg->batching.slo.tpot_ms > 0) {
        slo_config_t sc;
        slo_config_defaults(&sc);
        sc.ttft_ms = cfg->batching.slo.ttft_ms;
        sc.tpot_ms = cfg->batching.slo.tpot_ms;
        sc.max_seqs = w->info->max_seqs;
        sc.max_batch_tokens = w->info->max_batch_tokens;
        if (!(w->slo = slo_new(&sc, err, sizeof err))) {
            fprintf(stderr, "krill-worker: %s\n", err);
            goto done;
        }
        metrics_set_slo(w->metrics, true, sc.max_seqs, sc.max_batch_tokens, -1, -1);
        LOG_INFO("adaptive batching on", "tpot_target_ms=%.1f ttft_target_ms=%.1f max_seqs<=%d max_batch_tokens<=%d",
                 sc.tpot_ms, sc.ttft_ms, sc.max_seqs, sc.max_batch_tokens);
    }

    codec_limits_defaults(&w->limits);
    w->limits.max_message_bytes = (size_t)cfg->input.max_message_bytes;
    w->limits.max_tokens_cap = cfg->input.max_tokens_cap;
    w->limits.default_max_tokens = cfg->input.default_max_tokens;
    const char *served = cfg->model.name && *cfg->model.name ? cfg->model.name : w->info->model_name;
    if (cfg->model.name && *cfg->model.name) {
        w->model_names[0] = cfg->model.name;
        w->limits.model_names = w->model_names;
        w->limits.n_model_names = 1;
    }
    w->pipe.engine = w->engine;
    w->pipe.model_name = served;
    w->pipe.worker = w->worker_id;
    w->pipe.max_prompt_tokens = cfg->input.max_prompt_tokens;
    const char *of = cfg->output.format ? cfg->output.format : "auto";
    w->pipe.output_format = !strcmp(of, "json") ? CODEC_FMT_JSON : !strcmp(of, "msgpack") ? CODEC_FMT_MSGPACK : -1;
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    w->pipe.uid_base = ((uint64_t)rt.tv_sec << 32) ^ ((uint64_t)rt.tv_nsec << 8) ^ ((uint64_t)getpid() << 44);

    /* slots: queue_high in flight before pausing, room for what arrives meanwhile */
    w->n_slots = cfg->worker.queue_high * 2 + 1024;
    w->slots = calloc((size_t)w->n_slots, sizeof *w->slots);
    CHECK(w->slots != NULL);
    for (int i = 0; i < w->n_slots; i++) w->slots[i].next_free = i + 1 < w->n_slots ? i + 1 : -1;
    w->free_head = 0;
    w->done_q = queue_new((size_t)w->n_slots, sizeof(engine_result_t));
    w->stats = stats_new(0);
    w->offs = offsets_new();
    CHECK(w->done_q && w->stats && w->offs);

    /* Kafka */
    topics_copy = strdup(cfg->kafka.topic_requests);
    CHECK(topics_copy != NULL);
    const char *topics[64];
    int n_topics = split_topics(topics_copy, topics, 64);
    if (n_topics == 0) {
        fprintf(stderr, "krill-worker: kafka.topic_requests is empty; name the input topic(s)\n");
        goto done;
    }
    kafka_io_config_t kc = {
        .brokers = cfg->kafka.brokers,
        .group = cfg->kafka.group,
        .client_id = cfg->kafka.client_id && *cfg->kafka.client_id ? cfg->kafka.client_id : w->worker_id,
        .topics = topics,
        .n_topics = (size_t)n_topics,
        .properties = (const char *const *)cfg->kafka.properties,
        .n_properties = cfg->kafka.n_properties,
        .auto_commit_interval_ms = 0,
        .linger_ms = 5,
        .statistics_interval_ms = 5000, /* consumer lag for /metrics; kafka.properties may change it */
    };
    kafka_io_handlers_t kh = {.ctx = w, .assigned = on_assigned, .revoked = on_revoked, .delivered = on_delivered,
                              .stats = on_kafka_stats};
    w->kafka = kafka_io_open(&kc, &kh, err, sizeof err);
    if (!w->kafka) {
        fprintf(stderr, "krill-worker: %s\n", err);
        goto done;
    }
    g_wake_fd = kafka_io_wake_fd(w->kafka);
    metrics_set_consumer_state(w->metrics, METRICS_CONSUMER_WAITING); /* subscribed */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    pthread_setname_np(pthread_self(), "krill-io");
    if (pthread_create(&w->engine_thread, NULL, engine_main, w) != 0) {
        fprintf(stderr, "krill-worker: cannot start the engine thread\n");
        goto done;
    }
    LOG_INFO("worker started", "worker=%s group=%s topics=%s results=%s dlq=%s", w->worker_id, cfg->kafka.group,
             cfg->kafka.topic_requests, cfg->kafka.topic_results, cfg->kafka.topic_dlq);

    /* ---- the io loop */
    double next_stats = clock_now_ms() + cfg->stats.interval_ms;
    int poll_ms = cfg->worker.poll_timeout_ms > 0 ? cfg->worker.poll_timeout_ms : 100;
    for (;;) {
        const char *fatal = kafka_io_fatal(w->kafka);
        if (fatal) {
            LOG_ERROR("fatal Kafka error: exiting without storing more offsets", "error=\"%s\"", fatal);
            rc = EXIT_FATAL;
            w->fatal = true;
            goto fatal_exit;
        }
        if (g_stop && !w->draining) {
            w->draining = true;
            w->drain_deadline = clock_now_ms() + cfg->worker.drain_timeout_ms;
            kafka_io_stop_fetching(w->kafka);
            metrics_set_consumer_state(w->metrics, METRICS_CONSUMER_STOPPED);
            LOG_INFO("shutting down: draining", "in_flight=%d timeout_ms=%d", w->used, cfg->worker.drain_timeout_ms);
        }
        int taken = 0;
        rd_kafka_message_t *m;
        while (taken < CONSUME_BURST && (m = kafka_io_consume(w->kafka, 0)) != NULL) {
            if (!w->draining) handle_message(w, m); /* while draining: not tracked, replayed later */
            rd_kafka_message_destroy(m);
            taken++;
            if (w->used >= cfg->worker.queue_high && !kafka_io_paused(w->kafka)) {
                LOG_DEBUG("backpressure: pausing", "in_flight=%d", w->used);
                kafka_io_pause_all(w->kafka);
            }
        }
        handle_completions(w);
        kafka_io_serve(w->kafka);
        if (w->retries) retries_serve(w);
        store_offsets(w);
        metrics_set_pending_prompt_tokens(w->metrics, w->pending_prompt);
        if (!w->draining) {
            if (!kafka_io_paused(w->kafka) && w->used >= cfg->worker.queue_high)
                kafka_io_pause_all(w->kafka);
            else if (kafka_io_paused(w->kafka) && w->used <= cfg->worker.queue_low) {
                LOG_DEBUG("backpressure: resuming", "in_flight=%d", w->used);
                kafka_io_resume_all(w->kafka);
            }
        }
        double now = clock_now_ms();
        if (cfg->stats.interval_ms > 0 && now >= next_stats) {
            emit_stats(w);
            next_stats = now + cfg->stats.interval_ms;
        }
        if (w->draining && (w->used == 0 || now >= w->drain_deadline)) break;
        if (taken < CONSUME_BURST) {
            int t = poll_ms;
            if (cfg->stats.interval_ms > 0 && next_stats - now < t) t = (int)(next_stats - now) + 1;
            if (w->draining && w->drain_deadline - now < t) t = (int)(w->drain_deadline - now) + 1;
            if (w->retries) t = 20 < t ? 20 : t;
            if (t < 1) t = 1;
            kafka_io_wait(w->kafka, t);
        }
    }

    /* ---- orderly shutdown */
    if (w->used > 0)
        LOG_WARN("drain timed out; unfinished requests will be answered after a restart", "in_flight=%d", w->used);
    for (int j = 0; j < w->n_slots; j++)
        if (w->slots[j].state == SLOT_ENGINE) engine_abort(w->engine, slot_engine_id(w, &w->slots[j]));
    atomic_store(&w->engine_stop, true);
    queue_close(w->done_q);
    pthread_join(w->engine_thread, NULL);
    w->engine_thread = 0;
    if (cfg->stats.interval_ms > 0) emit_stats(w);
    {
        double tf = clock_now_ms();
        int left;
        /* flush while serving delivery reports so offsets finish */
        while ((left = kafka_io_outq_len(w->kafka)) > 0 && clock_now_ms() - tf < cfg->worker.flush_timeout_ms) {
            kafka_io_flush(w->kafka, 100);
            if (w->retries) retries_serve(w);
        }
        kafka_io_serve(w->kafka);
        if (left > 0) LOG_WARN("records not acknowledged at exit; their requests will be replayed", "outq=%d", left);
    }
    store_offsets(w);
    int ce = kafka_io_commit(w->kafka);
    if (ce) LOG_WARN("final commit failed; a restart may repeat some answered requests", "error=%s",
                     rd_kafka_err2name((rd_kafka_resp_err_t)ce));
    kafka_io_close(w->kafka); /* leaves the group; on_revoked stores what is left */
    w->kafka = NULL;
    g_wake_fd = -1;
    if (rc == EXIT_START) rc = w->exit_code;
    LOG_INFO("worker stopped", "exit=%d", rc);
    goto done;

fatal_exit:
    atomic_store(&w->engine_stop, true);
    queue_close(w->done_q);
    pthread_join(w->engine_thread, NULL);
    w->engine_thread = 0;
    /* No store, no commit: the consumer is destroyed without a clean leave. */
    g_wake_fd = -1;

done:
    if (w) {
        if (w->engine_thread) {
            atomic_store(&w->engine_stop, true);
            pthread_join(w->engine_thread, NULL);
        }
        if (w->kafka) kafka_io_close(w->kafka);
        engine_close(w->engine);
        engine_result_t r;
        while (w->done_q && queue_pop(w->done_q, &r)) engine_result_clear(&r);
        queue_free(w->done_q);
        stats_free(w->stats);
        for (int i = 0; w->slots && i < w->n_slots; i++)
            if (w->slots[i].state != SLOT_FREE) slot_release(w, &w->slots[i]);
        free(w->slots);
        while (w->retries) {
            retry_t *r2 = w->retries;
            w->retries = r2->next;
            retry_free(r2);
        }
        for (int i = 0; i < w->n_parts; i++) {
            free(w->parts[i]->topic);
            free(w->parts[i]);
        }
        offsets_free(w->offs);
        codec_request_clear(&w->req);
        buf_free(&w->out);
        metrics_free(w->metrics); /* stops the HTTP server (after the engine thread is gone) */
        slo_free(w->slo);
        config_free(w->cfg);
        free(w);
    }
    free(topics_copy);
    free(sets);
    return rc;
}
