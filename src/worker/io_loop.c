/* io_loop.c — see io_loop.h. One request's walk through this file: io_handle_message
 * (consume, ledger slot, decode, DLQ or error answer, or engine_submit) ->
 * io_handle_completions (encode the engine's result, produce it) -> io_on_delivered
 * (acknowledged: the ledger finishes the offset; failed: the ledger queues a retry or
 * says give up) -> io_store_offsets (what the ledger says is committable). */
#include "io_loop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "eos.h"
#include "err.h"
#include "kafka.h"
#include "ledger.h"
#include "log.h"
#include "pipeline.h"
#include "pipeline_answer.h"

#define PRODUCE_ATTEMPTS 6 /* a record that fails this many deliveries stops the worker */
#define CONSUME_BURST 512  /* messages taken per loop turn before serving the rest */
/* A request's headers copied into its answers (docs/operations.md): at most this many,
 * of at most this many bytes of names and values; krill-* headers are never copied. */
#define IO_HEADERS_MAX_COUNT 64
#define IO_HEADERS_MAX_BYTES 16384

struct io_loop {
    const config_t *cfg;
    engine_t *engine;
    const engine_info_t *info;
    const char *worker_id;
    observe_t *obs;
    const volatile sig_atomic_t *signalled;
    kafka_io_t *kafka;
    ledger_t *ledger;
    eos_t *eos;              /* delivery.mode exactly_once (eos.h); NULL: at least once */
    engine_loop_t *el;       /* set by io_loop_run */
    int n_slots;

    pipeline_t pipe;
    codec_limits_t limits;
    const char *model_names[1];
    pipeline_answer_t **answers; /* per slot index (engine id & 0xffffffff): the choices gathered */
    codec_request_t req;     /* reused for every decode */
    buf_t out;               /* reused for every encoded answer */

    int exit_code;
    bool stop;               /* stop requested by the loop itself (a record given up) */
    bool fatal;              /* a fatal Kafka error: store nothing more */
    bool draining;
    double drain_deadline;
    int64_t pending_prompt;  /* prompt tokens of requests in the engine */
};

/* ---------------------------------------------------------------- stopping */

/* The loop cannot go on without losing an answer: stop without storing past it (its
 * offset never finishes), exit with status code unless another was set first. */
static void io_request_stop(io_loop_t *io, int code) {
    if (io->exit_code == IO_EXIT_OK) io->exit_code = code;
    io->stop = true;
}

static void io_give_up(io_loop_t *io, const char *topic, const ledger_slot_t *s) {
    LOG_ERROR("a record could not be delivered; stopping without storing its offset (a restart replays it)",
              "topic=%s source=%s failures=%d", topic, s->source, s->failures);
    io_request_stop(io, IO_EXIT_DELIVERY);
}

static void io_out_of_memory(io_loop_t *io, const char *what, const char *source) {
    LOG_ERROR("out of memory; stopping without storing past this request (a restart replays it)", "what=%s source=%s",
              what, source);
    io_request_stop(io, IO_EXIT_START);
}

/* ---------------------------------------------------------------- producing */

static void io_refused(io_loop_t *io, ledger_slot_t *s, const char *topic, int code, size_t len);

/* Exactly-once: the opaque of every record with a slot. The record counts as acknowledged
 * once produced into the open transaction (the commit delivers all of it or aborts all of
 * it), so its delivery report must not reach the slot, which may be reused by then. */
static char io_eos_record;

/* A record of slot s was produced. */
static void io_produced(io_loop_t *io, ledger_slot_t *s) {
    if (!io->eos) return;
    eos_produced(io->eos);
    if (s) ledger_record_acked(io->ledger, s);
}

/* Produces one record for slot s (NULL: a stats record). On an immediate failure the
 * record goes to the ledger's retries (or, refused for good, is answered in its place:
 * io_refused), so the slot's accounting is the same either way. */
static void io_produce(io_loop_t *io, ledger_slot_t *s, const char *topic, const void *key, size_t keylen,
                       const void *value, size_t len, rd_kafka_headers_t *hdrs) {
    char err[256];
    if (s) ledger_record_sent(s);
    void *opaque = io->eos && s ? (void *)&io_eos_record : s;
    int code = kafka_io_produce(io->kafka, topic, key, keylen, value, len, hdrs, opaque, 1000, err, sizeof err);
    if (code == 0) {
        io_produced(io, s);
        return;
    }
    if (!s) {
        LOG_WARN("stats record not produced", "error=\"%s\"", err);
        kafka_headers_free(hdrs);
        return;
    }
    if (kafka_err_permanent(code)) {
        kafka_headers_free(hdrs);
        io_refused(io, s, topic, code, len);
        return;
    }
    LOG_WARN("produce failed; will retry", "topic=%s source=%s attempt=%d error=\"%s\"", topic, s->source,
             s->failures + 1, err);
    ledger_status_t st = ledger_record_failed(io->ledger, s, topic, key, keylen, value, len, hdrs, clock_now_ms());
    if (st == LEDGER_GIVE_UP) io_give_up(io, topic, s);
    if (st == LEDGER_NO_MEMORY) io_out_of_memory(io, "retry", s->source);
}

static void io_retries_serve(io_loop_t *io) {
    double now = clock_now_ms();
    ledger_status_t st;
    ledger_retry_t *r;
    while ((r = ledger_retry_next_due(io->ledger, now, &st)) != NULL) {
        if (st == LEDGER_GIVE_UP) {
            io_give_up(io, r->topic, r->slot);
            ledger_retry_free(r); /* the slot keeps counting the record: its offset never finishes */
            continue;
        }
        char err[256];
        int code = kafka_io_produce(io->kafka, r->topic, r->key, r->keylen, r->value, r->len, r->hdrs,
                                    io->eos ? (void *)&io_eos_record : r->slot, 1000, err, sizeof err);
        if (code == 0) {
            io_produced(io, r->slot);
            ledger_retry_sent(r);
            continue;
        }
        if (kafka_err_permanent(code)) {
            io_refused(io, r->slot, r->topic, code, r->len);
            ledger_retry_free(r);
            continue;
        }
        ledger_retry_failed(io->ledger, r, now);
        LOG_WARN("produce failed again", "topic=%s source=%s attempt=%d error=\"%s\"", r->topic, r->slot->source,
                 r->slot->failures, err);
    }
}

static void io_on_delivered(void *ctx, void *opaque, rd_kafka_resp_err_t err, const rd_kafka_message_t *m) {
    io_loop_t *io = ctx;
    ledger_slot_t *s = opaque;
    if (opaque == &io_eos_record) { /* exactly-once: the open transaction cannot commit; it aborts and rewinds */
        if (!err) return;
        LOG_WARN("delivery failed in a transaction; it will be aborted", "topic=%s error=%s", kafka_msg_topic(m),
                 kafka_err_name(err));
        if (kafka_err_permanent(err)) kafka_io_limits_stale(io->kafka); /* answered again within the limit */
        eos_record_failed(io->eos);
        return;
    }
    if (!s) { /* stats record */
        if (err) LOG_WARN("stats record not delivered", "error=%s", kafka_err_name(err));
        return;
    }
    if (!err || !ledger_slot_current(s)) { /* acknowledged, or its partition moved on */
        ledger_record_acked(io->ledger, s);
        return;
    }
    const char *topic = kafka_msg_topic(m);
    /* The topic name must outlive the message: use our configured names. */
    const char *t = strcmp(topic, io->cfg->kafka.topic_results) == 0 ? io->cfg->kafka.topic_results
                    : strcmp(topic, io->cfg->kafka.topic_dlq) == 0   ? io->cfg->kafka.topic_dlq
                                                                     : NULL;
    if (t && kafka_err_permanent(err)) {
        io_refused(io, s, t, err, m->len);
        return;
    }
    LOG_WARN("delivery failed; will retry", "topic=%s source=%s error=%s", topic, s->source, kafka_err_name(err));
    if (!t) { /* the record stays counted: its offset never finishes */
        LOG_ERROR("delivery failed for a record of an unknown topic", "topic=%s", topic);
        io_request_stop(io, IO_EXIT_DELIVERY);
        return;
    }
    ledger_status_t st = ledger_record_failed(io->ledger, s, t, m->key, m->key_len, m->payload, m->len,
                                              kafka_headers_copy(m), clock_now_ms());
    if (st == LEDGER_GIVE_UP) io_give_up(io, t, s);
    if (st == LEDGER_NO_MEMORY) io_out_of_memory(io, "retry", s->source);
}

/* The key of s's answers: the request's key, else its id. */
static const void *io_answer_key(const ledger_slot_t *s, size_t *keylen) {
    *keylen = s->key ? s->keylen : strlen(s->id);
    return s->key ? s->key : s->id;
}

/* Headers of a record standing in for a refused or oversized one: the worker's own only
 * (the request's may be what made the other too large). */
static rd_kafka_headers_t *io_note_headers(const ledger_slot_t *s) {
    rd_kafka_headers_t *h = kafka_headers_new(NULL);
    kafka_headers_add(h, "krill-source", s->source);
    return h;
}

/* The result_too_large message: names the size, the topic and its limit (refused: the
 * broker refused it, so the limit is the one last read, maybe before it shrank). */
static void io_too_large_message(char *msg, size_t n, size_t bytes, const char *topic, size_t limit, bool refused) {
    snprintf(msg, n,
             "the answer (%zu bytes) is larger than the results topic %s accepts (max.message.bytes %zu%s); lower "
             "max_tokens or raise the topic's max.message.bytes",
             bytes, topic, limit, refused ? " when last read; the broker refused it" : "");
}

/* A record of s was refused for good (kafka_err_permanent): in its place goes a small
 * error result (a refused result, once) or a DLQ note without the value, and the refused
 * one stops counting, so the partition moves on once the replacement is acknowledged. */
static void io_refused(io_loop_t *io, ledger_slot_t *s, const char *topic, int code, size_t len) {
    ledger_status_t st = ledger_record_refused(io->ledger, s);
    if (st == LEDGER_DROPPED) return;
    if (st == LEDGER_LET_GO) {
        LOG_ERROR("the records standing in for a refused one were refused too; moving on without a stored answer",
                  "topic=%s source=%s error=%s", topic, s->source, kafka_err_name(code));
        return;
    }
    LOG_WARN("a record was refused for good; answering in its place", "topic=%s source=%s error=%s bytes=%zu", topic,
             s->source, kafka_err_name(code), len);
    size_t keylen;
    const void *key = io_answer_key(s, &keylen);
    char msg[320], err[256];
    if (strcmp(topic, io->cfg->kafka.topic_results) == 0 && s->replaced == 1) {
        bool size = code == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || code == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
        if (size) {
            io_too_large_message(msg, sizeof msg, len, topic, kafka_io_topic_max_bytes(io->kafka, topic), true);
            kafka_io_limits_stale(io->kafka); /* the topic's limit may have shrunk: read it again */
        } else {
            snprintf(msg, sizeof msg, "the results topic %s refused the answer (%s); check its ACLs and policies",
                     topic, kafka_err_name(code));
        }
        buf_t b = {0}; /* not io->out: this may run inside a produce call that is still reading it */
        if (pipeline_encode_error(&io->pipe, s->id, s->kind, s->fmt,
                                  size ? CODEC_ERR_RESULT_TOO_LARGE : CODEC_ERR_INTERNAL, msg, NULL, &b, err,
                                  sizeof err) == 0) {
            io_produce(io, s, topic, key, keylen, b.data, b.len, io_note_headers(s));
            buf_free(&b);
            ledger_record_acked(io->ledger, s);
            return;
        }
        buf_free(&b);
    }
    rd_kafka_headers_t *h = io_note_headers(s);
    char size[24];
    snprintf(size, sizeof size, "%zu", len);
    snprintf(msg, sizeof msg, "%s refused a record of %zu bytes for good (%s); its value is not stored", topic, len,
             kafka_err_name(code));
    kafka_headers_add(h, "krill-error-code", "undeliverable");
    kafka_headers_add(h, "krill-error-message", msg);
    kafka_headers_add(h, "krill-original-size", size);
    io_produce(io, s, io->cfg->kafka.topic_dlq, key, keylen, "", 0, h);
    ledger_record_acked(io->ledger, s);
}

/* Sends io->out (an encoded answer) for slot s to the results topic, and counts it
 * with the status the pipeline gave it. An answer larger than the topic accepts is
 * replaced by a result_too_large error (with the worker's headers only if need be). */
static void io_answer(io_loop_t *io, ledger_slot_t *s, const observe_request_t *o) {
    const char *topic = io->cfg->kafka.topic_results;
    size_t keylen, limit = kafka_io_topic_max_bytes(io->kafka, topic);
    const void *key = io_answer_key(s, &keylen);
    rd_kafka_headers_t *h = kafka_headers_new(s->hdrs);
    size_t need = kafka_record_bytes(keylen, io->out.len, h);
    if (need > limit) {
        char msg[320], err[256];
        io_too_large_message(msg, sizeof msg, need, topic, limit, false);
        LOG_WARN("answer larger than the results topic accepts; answering result_too_large", "source=%s bytes=%zu limit=%zu",
                 s->source, need, limit);
        if (pipeline_encode_error(&io->pipe, s->id, s->kind, s->fmt, CODEC_ERR_RESULT_TOO_LARGE, msg, NULL, &io->out,
                                  err, sizeof err) != 0)
            LOG_ERROR("cannot encode an error result", "source=%s error=\"%s\"", s->source, err);
        if (kafka_record_bytes(keylen, io->out.len, h) > limit) {
            kafka_headers_free(h);
            h = io_note_headers(s);
        }
    }
    io_produce(io, s, topic, key, keylen, io->out.data, io->out.len, h);
    observe_request_t r = *o;
    r.status = io->pipe.status;
    r.waited_ms = clock_now_ms() - s->t_consumed;
    observe_request(io->obs, &r);
}

static const observe_request_t io_never_ran = {.queue_ms = -1, .ttft_ms = -1, .total_ms = -1};

static void io_answer_error(io_loop_t *io, ledger_slot_t *s, const pipeline_error_t *pe) {
    char err[256];
    if (pipeline_encode_error(&io->pipe, s->id, s->kind, s->fmt, pe->code, pe->message, pe->param, &io->out, err,
                              sizeof err) != 0) {
        LOG_ERROR("cannot encode an error result", "source=%s error=\"%s\"", s->source, err);
        return;
    }
    io_answer(io, s, &io_never_ran);
}

/* The 400/404 answer to a request that failed decoding or validation. */
static void io_answer_request_error(io_loop_t *io, ledger_slot_t *s) {
    char err[256];
    if (pipeline_encode_request_error(&io->pipe, &io->req, &io->out, err, sizeof err) != 0) {
        LOG_ERROR("cannot encode an error result", "source=%s error=\"%s\"", s->source, err);
        return;
    }
    io_answer(io, s, &io_never_ran);
}

/* ---------------------------------------------------------------- consuming */

/* Copies what the answers need from m into s. -1 on out of memory. */
static int io_slot_fill(io_loop_t *io, ledger_slot_t *s, const rd_kafka_message_t *m) {
    s->t_consumed = clock_now_ms();
    if (m->key && m->key_len) {
        if (!(s->key = malloc(m->key_len))) return -1;
        memcpy(s->key, m->key, m->key_len);
        s->keylen = m->key_len;
    }
    size_t dropped;
    s->hdrs = kafka_headers_copy_bounded(m, IO_HEADERS_MAX_COUNT, IO_HEADERS_MAX_BYTES, &dropped);
    kafka_headers_add(s->hdrs, "krill-source", s->source);
    if (dropped) {
        char n[24];
        snprintf(n, sizeof n, "%zu", dropped);
        kafka_headers_add(s->hdrs, "krill-headers-dropped", n);
    }
    codec_decode(&io->limits, m->payload, m->len, s->source, &io->req);
    s->id = strdup(io->req.id ? io->req.id : s->source);
    s->fmt = io->req.format;
    s->kind = io->req.kind;
    return s->id ? 0 : -1;
}

/* Tokenizes and submits a decoded request; answers an error when it cannot run. */
static void io_submit(io_loop_t *io, ledger_slot_t *s) {
    char err[256];
    engine_request_t er;
    int32_t *ids = NULL;
    pipeline_error_t pe;
    if (pipeline_prepare(&io->pipe, &io->req, ledger_engine_id(io->ledger, s), &er, &ids, &pe) != 0) {
        io_answer_error(io, s, &pe);
        ledger_slot_answered(io->ledger, s);
        return;
    }
    uint32_t slot = (uint32_t)er.id; /* ledger.h: the low half of an engine id is the slot */
    pipeline_answer_free(io->answers[slot]);
    if (!(io->answers[slot] = pipeline_answer_new(&io->req))) {
        free(ids);
        pipeline_submit_error(ENGINE_ERR_INTERNAL, "out of memory", &pe);
        io_answer_error(io, s, &pe);
        ledger_slot_answered(io->ledger, s);
        return;
    }
    int rc = engine_submit(io->engine, &er, err, sizeof err);
    free(ids);
    if (rc != ENGINE_OK) {
        pipeline_submit_error(rc, err, &pe);
        if (rc == ENGINE_ERR_INVALID) pe.param = pipeline_submit_param(&io->req);
        io_answer_error(io, s, &pe);
        ledger_slot_answered(io->ledger, s);
        return;
    }
    ledger_slot_to_engine(s);
    s->n_prompt = er.n_prompt;
    io->pending_prompt += er.n_prompt;
}

/* How much of a DLQ value of len bytes fits the DLQ topic with its key and headers h:
 * all of it, or a prefix, which h then says (krill-truncated, krill-original-size). */
static size_t io_dlq_fit(io_loop_t *io, const ledger_slot_t *s, rd_kafka_headers_t *h, size_t keylen, size_t len) {
    size_t limit = kafka_io_topic_max_bytes(io->kafka, io->cfg->kafka.topic_dlq);
    if (kafka_record_bytes(keylen, len, h) <= limit) return len;
    char n[24];
    snprintf(n, sizeof n, "%zu", len);
    kafka_headers_add(h, "krill-truncated", "true");
    kafka_headers_add(h, "krill-original-size", n);
    size_t fixed = kafka_record_bytes(keylen, 0, h), keep = fixed < limit ? limit - fixed : 0;
    keep = keep < len ? keep : len;
    LOG_WARN("DLQ copy truncated to fit the topic", "source=%s bytes=%zu kept=%zu limit=%zu", s->source, len, keep,
             limit);
    return keep;
}

static void io_abort(void *ctx, uint64_t engine_id);

/* The partition's offsets went backwards (the topic was deleted and recreated, or its
 * log truncated): what the old generation still had pending is given up as at a revoke,
 * and the partition starts over at this offset, so nothing of the new log is skipped. */
static ledger_status_t io_new_generation(io_loop_t *io, const char *topic, rd_kafka_message_t *m,
                                         ledger_slot_t **s) {
    int64_t last = -1;
    int unfinished = ledger_live(io->ledger, topic, m->partition);
    if (ledger_new_generation(io->ledger, topic, m->partition, io_abort, io, &last) != 0) return LEDGER_NOT_ASSIGNED;
    LOG_WARN("partition offsets went backwards (topic recreated or log truncated?): starting it over at the new "
             "offset; unfinished requests of the old log are given up",
             "topic=%s partition=%d old_offset=%lld new_offset=%lld unfinished=%d", topic, (int)m->partition,
             (long long)last, (long long)m->offset, unfinished);
    observe_partition_reset(io->obs, topic);
    return ledger_slot_open(io->ledger, topic, m->partition, m->offset, s);
}

static void io_handle_message(io_loop_t *io, rd_kafka_message_t *m) {
    const char *topic = kafka_msg_topic(m);
    ledger_slot_t *s;
    if (io->eos && eos_skip(io->eos, topic, m->partition, m->offset)) return; /* answered in a committed transaction */
    ledger_status_t st = ledger_slot_open(io->ledger, topic, m->partition, m->offset, &s);
    if (st == LEDGER_OUT_OF_ORDER) st = io_new_generation(io, topic, m, &s);
    switch (st) {
    case LEDGER_OK: break;
    case LEDGER_FULL:
    case LEDGER_NO_MEMORY:
        /* More in flight than the slots hold (pause came late), or no memory to track
         * it: read it again later. */
        kafka_io_seek_back(io->kafka, m);
        kafka_io_pause_all(io->kafka);
        return;
    case LEDGER_OUT_OF_ORDER: /* still refused in a new generation: a negative offset */
        LOG_WARN("message without a valid offset; ignored", "topic=%s partition=%d offset=%lld", topic,
                 (int)m->partition, (long long)m->offset);
        return;
    default:
        LOG_WARN("message from a partition not assigned; ignored", "topic=%s partition=%d offset=%lld", topic,
                 (int)m->partition, (long long)m->offset);
        return;
    }
    codec_request_t *req = &io->req;
    if (io_slot_fill(io, s, m) != 0) {
        io_out_of_memory(io, "request", s->source);
        ledger_slot_abandon(io->ledger, s);
    } else if (req->status == CODEC_UNDECODABLE) {
        rd_kafka_headers_t *h = kafka_headers_new(s->hdrs);
        const char *code = codec_dlq_name(req->dlq);
        kafka_headers_add(h, "krill-error-code", code);
        kafka_headers_add(h, "krill-error-message", req->error_message);
        LOG_DEBUG("undecodable message to the DLQ", "source=%s code=%s", s->source, code);
        size_t keylen = m->key ? m->key_len : 0;
        io_produce(io, s, io->cfg->kafka.topic_dlq, m->key, keylen, m->payload, io_dlq_fit(io, s, h, keylen, m->len),
                   h);
        observe_dlq(io->obs, code);
        if (req->has_custom_id) io_answer_request_error(io, s);
        ledger_slot_answered(io->ledger, s);
    } else if (req->status == CODEC_INVALID) {
        io_answer_request_error(io, s);
        ledger_slot_answered(io->ledger, s);
    } else {
        io_submit(io, s);
    }
    codec_request_clear(req);
}

/* ---------------------------------------------------------------- completions */

static void io_handle_completions(io_loop_t *io) {
    engine_result_t r;
    char err[256];
    while (io->el && engine_loop_take(io->el, &r)) {
        ledger_slot_t *s = ledger_slot_by_engine_id(io->ledger, r.id);
        if (!s) {
            LOG_ERROR("engine result for an unknown request", "id=%llu", (unsigned long long)r.id);
            engine_result_clear(&r);
            continue;
        }
        io->pending_prompt -= s->n_prompt;
        s->n_prompt = 0;
        /* n > 1: one result per choice; the answer is written once all are back */
        uint32_t slot = (uint32_t)r.id; /* r is moved into the answer below */
        pipeline_answer_t *a = io->answers[slot];
        CHECK(a); /* set at every submit of this slot */
        if (!pipeline_answer_add(a, &r)) continue;
        io->answers[slot] = NULL;
        if (pipeline_answer_aborted(a) || !ledger_slot_current(s)) {
            /* Given up (revoke or shutdown): no answer, the offset stays unfinished and
             * whoever owns the partition next answers it. */
            pipeline_answer_free(a);
            ledger_slot_abandon(io->ledger, s);
            continue;
        }
        if (pipeline_encode_answer(&io->pipe, s->id, s->fmt, a, NULL, &io->out, err, sizeof err) == 0) {
            const engine_result_t *r0 = pipeline_answer_result(a, 0);
            observe_request_t o = {.finish_reason = r0->finish == ENGINE_FINISH_LENGTH ? "length" : "stop",
                                   .prompt_tokens = r0->prompt_tokens,
                                   .queue_ms = r0->queue_ms,
                                   .ttft_ms = r0->n_tokens > 0 ? r0->ttft_ms : -1,
                                   .total_ms = r0->total_ms};
            for (int i = 0; i < pipeline_answer_n(a); i++)
                o.completion_tokens += pipeline_answer_result(a, i)->completion_tokens;
            io_answer(io, s, &o);
        } else {
            LOG_ERROR("cannot encode a result", "source=%s error=\"%s\"", s->source, err);
        }
        pipeline_answer_free(a);
        ledger_slot_answered(io->ledger, s);
    }
}

static void io_store_one(void *ctx, const char *topic, int32_t partition, int64_t next) {
    kafka_io_store_offset(ctx, topic, partition, next);
}

static void io_store_offsets(io_loop_t *io) { ledger_store_offsets(io->ledger, io_store_one, io->kafka); }

/* Exactly-once: commit the open transaction (force: now). Fenced or fatal: stop, commit nothing more. */
static void io_eos_commit(io_loop_t *io, bool force) {
    if (io->fatal || eos_commit(io->eos, force) == 0) return;
    io->fatal = true;
}

/* ---------------------------------------------------------------- rebalance */

static void io_on_assigned(void *ctx, const rd_kafka_topic_partition_list_t *parts) {
    io_loop_t *io = ctx;
    for (int i = 0; i < parts->cnt; i++)
        if (ledger_assign(io->ledger, parts->elems[i].topic, parts->elems[i].partition) != 0)
            io_out_of_memory(io, "partition", parts->elems[i].topic);
    if (io->eos && !io->fatal && eos_assigned(io->eos, parts) != 0) io->fatal = true;
    if (parts->cnt > 0) observe_consumer_state(io->obs, METRICS_CONSUMER_ASSIGNED);
}

static int io_revoked_live(io_loop_t *io, const rd_kafka_topic_partition_list_t *parts) {
    int n = 0;
    for (int i = 0; i < parts->cnt; i++) n += ledger_live(io->ledger, parts->elems[i].topic, parts->elems[i].partition);
    return n;
}

static void io_abort(void *ctx, uint64_t engine_id) {
    io_loop_t *io = ctx;
    engine_abort(io->engine, engine_id);
}

static void io_on_revoked(void *ctx, const rd_kafka_topic_partition_list_t *parts, bool lost) {
    io_loop_t *io = ctx;
    double t0 = clock_now_ms();
    int timeout = io->draining ? 0 : io->cfg->worker.revoke_timeout_ms;
    if (!lost) {
        /* Finish what we have for these partitions, within the bound. */
        while (io_revoked_live(io, parts) > 0 && clock_now_ms() - t0 < timeout) {
            io_handle_completions(io);
            kafka_io_serve(io->kafka);
            io_retries_serve(io);
            if (io_revoked_live(io, parts) == 0) break;
            kafka_io_wait(io->kafka, 5);
        }
    }
    int left = io_revoked_live(io, parts);
    if (io->eos && !lost) io_eos_commit(io, true); /* the revoked partitions' answers and offsets go together */
    for (int i = 0; i < parts->cnt; i++) {
        const char *topic = parts->elems[i].topic;
        int32_t partition = parts->elems[i].partition;
        int64_t o = ledger_committable(io->ledger, topic, partition);
        if (!lost && !io->fatal && o >= 0 && !io->eos) kafka_io_store_offset(io->kafka, topic, partition, o);
        if (io->eos) eos_released(io->eos, topic, partition);
        /* Give up the rest: abort their engine work, drop their late answers. */
        ledger_revoke(io->ledger, topic, partition, io_abort, io);
    }
    /* Lost: the open transaction holds answers whose offsets can no longer be committed. */
    if (io->eos && lost && !io->fatal && eos_abort(io->eos, "partitions lost") != 0) io->fatal = true;
    LOG_INFO(lost ? "partitions lost" : "partitions released", "count=%d unfinished=%d waited_ms=%.0f", parts->cnt,
             left, clock_now_ms() - t0);
    observe_consumer_state(io->obs, io->draining                         ? METRICS_CONSUMER_STOPPED
                                    : ledger_assigned_count(io->ledger) ? METRICS_CONSUMER_ASSIGNED
                                                                         : METRICS_CONSUMER_WAITING);
}

/* librdkafka statistics of the consumer: per-partition lag for /metrics. */
static void io_on_kafka_stats(void *ctx, const char *json, size_t len) {
    io_loop_t *io = ctx;
    observe_kafka_stats(io->obs, json, len);
}

/* Kafka's connection, errors and group membership for /healthz and /metrics. */
static void io_on_kafka_connection(void *ctx, kafka_conn_t st) {
    io_loop_t *io = ctx;
    observe_kafka_connection(io->obs, st == KAFKA_CONN_UP, st == KAFKA_CONN_AUTH_FAILED);
}

static void io_on_kafka_error(void *ctx, const char *kind) {
    io_loop_t *io = ctx;
    observe_kafka_error(io->obs, kind);
}

static void io_on_kafka_joined(void *ctx) {
    io_loop_t *io = ctx;
    observe_consumer_joined(io->obs);
}

/* ---------------------------------------------------------------- stats */

static void io_emit_stats(io_loop_t *io) {
    engine_stats_t st;
    engine_get_stats(io->engine, &st);
    stats_gauges_t g = {
        .worker = io->worker_id,
        .backend = io->info->backend,
        .device = io->info->device,
        .queue_depth = st.waiting,
        .in_flight = ledger_used(io->ledger),
        .kv_cache_used_frac = st.kv_blocks_total > 0 ? (double)st.kv_blocks_used / (double)st.kv_blocks_total : 0,
    };
    buf_t buf = {0};
    if (observe_stats_record(io->obs, &g, (int)kafka_io_paused(io->kafka), &buf) == 0 && io->cfg->kafka.topic_stats &&
        *io->cfg->kafka.topic_stats)
        io_produce(io, NULL, io->cfg->kafka.topic_stats, io->worker_id, strlen(io->worker_id), buf.data, buf.len, NULL);
    buf_free(&buf);
}

/* ---------------------------------------------------------------- life cycle */

/* Splits "a, b,c" into trimmed names in place. Returns the count, or -1 with err when
 * there are more than max (nothing is dropped silently). */
static int io_split_topics(char *list, const char **out, int max, char *err, size_t errlen) {
    int n = 0;
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ') t++;
        char *e = t + strlen(t);
        while (e > t && e[-1] == ' ') *--e = 0;
        if (!*t) continue;
        if (n == max) {
            err_set(err, errlen, "kafka.topic_requests names more than %d topics; subscribe to at most %d", max, max);
            return -1;
        }
        out[n++] = t;
    }
    return n;
}

/* The codec's limits and the pipeline's settings from the configuration. */
static void io_pipeline_init(io_loop_t *io) {
    const config_t *cfg = io->cfg;
    io->model_names[0] = io->info->model_name;
    pipeline_codec_limits(cfg, io->model_names, &io->limits);
    io->pipe.engine = io->engine;
    io->pipe.model_name = config_model_name(cfg, io->info->model_name);
    io->pipe.worker = io->worker_id;
    io->pipe.max_prompt_tokens = cfg->input.max_prompt_tokens;
    io->pipe.parse_special_in_content = cfg->input.parse_special_in_content;
    io->pipe.parse_special_in_prompt = cfg->input.parse_special_in_prompt;
    const char *of = cfg->output.format ? cfg->output.format : "auto";
    io->pipe.output_format = !strcmp(of, "json") ? CODEC_FMT_JSON : !strcmp(of, "msgpack") ? CODEC_FMT_MSGPACK : -1;
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    io->pipe.uid_base = ((uint64_t)rt.tv_sec << 32) ^ ((uint64_t)rt.tv_nsec << 8) ^ ((uint64_t)getpid() << 44);
}

io_loop_t *io_loop_new(const io_loop_config_t *c, char *err, size_t errlen) {
    const config_t *cfg = c->cfg;
    char *topics_copy = NULL;
    io_loop_t *io = calloc(1, sizeof *io);
    if (!io) goto oom;
    io->cfg = cfg;
    io->engine = c->engine;
    io->info = engine_get_info(c->engine);
    io->worker_id = c->worker_id;
    io->obs = c->observe;
    io->signalled = c->stop;
    io_pipeline_init(io);
    /* slots: queue_high in flight before pausing, room for what arrives meanwhile */
    io->n_slots = cfg->worker.queue_high * 2 + 1024;
    if (!(io->ledger = ledger_new(io->n_slots, PRODUCE_ATTEMPTS))) goto oom;
    if (!(io->answers = calloc((size_t)io->n_slots, sizeof *io->answers))) goto oom;

    if (!(topics_copy = strdup(cfg->kafka.topic_requests))) goto oom;
    const char *topics[64];
    int n_topics = io_split_topics(topics_copy, topics, 64, err, errlen);
    if (n_topics < 0) goto fail;
    if (n_topics == 0) {
        err_set(err, errlen, "kafka.topic_requests is empty; name the input topic(s)");
        goto fail;
    }
    const char *sized[3];
    size_t n_sized = 0;
    const char *outs[3] = {cfg->kafka.topic_results, cfg->kafka.topic_dlq, cfg->kafka.topic_stats};
    for (int i = 0; i < 3; i++)
        if (outs[i] && *outs[i]) sized[n_sized++] = outs[i];
    kafka_io_config_t kc = {
        .brokers = cfg->kafka.brokers,
        .group = cfg->kafka.group,
        .client_id = cfg->kafka.client_id && *cfg->kafka.client_id ? cfg->kafka.client_id : io->worker_id,
        .topics = topics,
        .n_topics = (size_t)n_topics,
        .properties = (const char *const *)cfg->kafka.properties,
        .n_properties = cfg->kafka.n_properties,
        .auto_commit_interval_ms = 0,
        .linger_ms = 5,
        .statistics_interval_ms = 5000, /* consumer lag for /metrics; kafka.properties may change it */
        .sized_topics = sized,
        .n_sized_topics = n_sized,
    };
    char txn_id[512];
    bool exactly_once = !strcmp(cfg->delivery.mode, "exactly_once");
    if (exactly_once) {
        eos_transactional_id(cfg, txn_id, sizeof txn_id);
        kc.transactional_id = txn_id;
        kc.transaction_timeout_ms = cfg->delivery.transaction_timeout_ms;
    }
    kafka_io_handlers_t kh = {.ctx = io, .assigned = io_on_assigned, .revoked = io_on_revoked,
                              .delivered = io_on_delivered, .stats = io_on_kafka_stats,
                              .connection = io_on_kafka_connection, .error = io_on_kafka_error,
                              .joined = io_on_kafka_joined};
    if (!(io->kafka = kafka_io_open(&kc, &kh, err, errlen))) goto fail;
    if (exactly_once) {
        if (!(io->eos = eos_new(cfg, io->kafka, io->ledger, io->obs, io_abort, io))) goto oom;
        LOG_INFO("exactly-once delivery: transactional producer ready", "transactional_id=%s", txn_id);
    }
    free(topics_copy);
    observe_consumer_state(io->obs, METRICS_CONSUMER_WAITING); /* subscribed */
    return io;
oom:
    err_set(err, errlen, "out of memory");
fail:
    free(topics_copy);
    io_loop_free(io);
    return NULL;
}

/* every slot may wait for input.max_n results */
size_t io_loop_capacity(const io_loop_t *io) { return (size_t)io->n_slots * (size_t)io->cfg->input.max_n; }

int io_loop_wake_fd(const io_loop_t *io) { return kafka_io_wake_fd(io->kafka); }

void io_loop_wake(void *io) { kafka_io_wake(((io_loop_t *)io)->kafka); }

/* One turn's sleep: the poll timeout, shortened by the next timer (stats, drain, retries). */
static int io_sleep_ms(const io_loop_t *io, double now, double next_stats) {
    const config_t *cfg = io->cfg;
    int t = cfg->worker.poll_timeout_ms > 0 ? cfg->worker.poll_timeout_ms : 100;
    if (cfg->stats.interval_ms > 0 && next_stats - now < t) t = (int)(next_stats - now) + 1;
    if (io->draining && io->drain_deadline - now < t) t = (int)(io->drain_deadline - now) + 1;
    if (ledger_retry_pending(io->ledger)) t = 20 < t ? 20 : t;
    if (io->eos && eos_wait_ms(io->eos) < t) t = eos_wait_ms(io->eos);
    return t < 1 ? 1 : t;
}

/* Backpressure: pause at worker.queue_high requests in flight; with resume, also
 * resume at worker.queue_low (only once a turn's burst is taken). */
static void io_backpressure(io_loop_t *io, bool resume) {
    int used = ledger_used(io->ledger);
    bool blocked = io->eos && eos_blocked(io->eos); /* answers above a watermark wait for the gaps below */
    if (!kafka_io_paused(io->kafka) && (used >= io->cfg->worker.queue_high || blocked)) {
        LOG_DEBUG("backpressure: pausing", "in_flight=%d", used);
        kafka_io_pause_all(io->kafka);
    } else if (resume && kafka_io_paused(io->kafka) && used <= io->cfg->worker.queue_low && !blocked) {
        LOG_DEBUG("backpressure: resuming", "in_flight=%d", used);
        kafka_io_resume_all(io->kafka);
    }
}

/* The loop proper: returns when drained (or the drain timed out) or on a fatal error. */
static void io_serve(io_loop_t *io) {
    const config_t *cfg = io->cfg;
    double next_stats = clock_now_ms() + cfg->stats.interval_ms;
    for (;;) {
        const char *fatal = kafka_io_fatal(io->kafka);
        if (fatal || io->fatal) {
            LOG_ERROR("fatal Kafka error: exiting without storing more offsets", "error=\"%s\"",
                      fatal ? fatal : "see above");
            io->fatal = true;
            return;
        }
        if ((*io->signalled || io->stop) && !io->draining) {
            io->draining = true;
            io->drain_deadline = clock_now_ms() + cfg->worker.drain_timeout_ms;
            kafka_io_stop_fetching(io->kafka);
            observe_consumer_state(io->obs, METRICS_CONSUMER_STOPPED);
            LOG_INFO("shutting down: draining", "in_flight=%d timeout_ms=%d", ledger_used(io->ledger),
                     cfg->worker.drain_timeout_ms);
        }
        int taken = 0;
        rd_kafka_message_t *m;
        while (taken < CONSUME_BURST && (m = kafka_io_consume(io->kafka, 0)) != NULL) {
            if (!io->draining) io_handle_message(io, m); /* while draining: not tracked, replayed later */
            kafka_msg_free(m);
            taken++;
            if (!io->draining) io_backpressure(io, false);
        }
        io_handle_completions(io);
        kafka_io_serve(io->kafka);
        if (ledger_retry_pending(io->ledger)) io_retries_serve(io);
        if (io->eos) io_eos_commit(io, false);
        else io_store_offsets(io);
        if (io->fatal) continue; /* the check at the top returns */
        observe_pending_prompt_tokens(io->obs, io->pending_prompt);
        if (!io->draining) io_backpressure(io, true);
        double now = clock_now_ms();
        if (cfg->stats.interval_ms > 0 && now >= next_stats) {
            io_emit_stats(io);
            next_stats = now + cfg->stats.interval_ms;
        }
        if (io->draining && (ledger_used(io->ledger) == 0 || now >= io->drain_deadline)) return;
        if (taken < CONSUME_BURST) kafka_io_wait(io->kafka, io_sleep_ms(io, now, next_stats));
    }
}

/* Flushes produced records while serving delivery reports and retries, so their
 * offsets can finish before the final store. */
static void io_flush(io_loop_t *io) {
    double tf = clock_now_ms();
    int left;
    while ((left = kafka_io_outq_len(io->kafka)) > 0 && clock_now_ms() - tf < io->cfg->worker.flush_timeout_ms) {
        kafka_io_flush(io->kafka, 100);
        if (ledger_retry_pending(io->ledger)) io_retries_serve(io);
    }
    kafka_io_serve(io->kafka);
    if (left > 0) LOG_WARN("records not acknowledged at exit; their requests will be replayed", "outq=%d", left);
}

int io_loop_run(io_loop_t *io, engine_loop_t *el) {
    io->el = el;
    LOG_INFO("worker started", "worker=%s group=%s topics=%s results=%s dlq=%s", io->worker_id, io->cfg->kafka.group,
             io->cfg->kafka.topic_requests, io->cfg->kafka.topic_results, io->cfg->kafka.topic_dlq);
    io_serve(io);
    /* The one shutdown path. After a fatal error nothing more is stored or committed. */
    if (!io->fatal) {
        if (ledger_used(io->ledger) > 0)
            LOG_WARN("drain timed out; unfinished requests will be answered after a restart", "in_flight=%d",
                     ledger_used(io->ledger));
        ledger_each_in_engine(io->ledger, io_abort, io);
    }
    engine_loop_stop(el);
    if (!io->fatal) {
        if (io->cfg->stats.interval_ms > 0) io_emit_stats(io);
        if (io->eos) {
            io_eos_commit(io, true);
        } else {
            io_flush(io);
            io_store_offsets(io);
            int ce = kafka_io_commit(io->kafka);
            if (ce)
                LOG_WARN("final commit failed; a restart may repeat some answered requests", "error=%s",
                         kafka_err_name(ce));
        }
    }
    kafka_io_close(io->kafka); /* leaves the group; io_on_revoked stores what is left (unless fatal) */
    io->kafka = NULL;
    io->el = NULL; /* the caller frees it */
    int rc = io->fatal ? IO_EXIT_FATAL : io->exit_code;
    LOG_INFO("worker stopped", "exit=%d", rc);
    return rc;
}

void io_loop_free(io_loop_t *io) {
    if (!io) return;
    kafka_io_close(io->kafka);
    eos_free(io->eos);
    ledger_free(io->ledger);
    for (int i = 0; io->answers && i < io->n_slots; i++) pipeline_answer_free(io->answers[i]);
    free(io->answers);
    codec_request_clear(&io->req);
    buf_free(&io->out);
    free(io);
}
