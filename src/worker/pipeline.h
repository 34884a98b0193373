/* pipeline.h — one request's way through krill, without Kafka: a decoded request
 * becomes an engine request (chat template, tokenization, prompt limits), and an
 * engine result (or an error) becomes a result message. krill-worker and
 * krill-run-batch both go through here, so they answer the same request the same way.
 * This is the only place where the codec meets the engine (docs/architecture.md).
 *
 * Validation, one place per concern: the codec (codec.h) has checked the request's
 * shape and ranges; the pipeline checks what needs the model — prompt token ids
 * against the vocabulary, the rendered/tokenized prompt against the context and
 * input.max_prompt_tokens, the chat template; engine_submit checks its own API once
 * at its entry (engine.h), the scheduler trusts it.
 *
 * Rules it keeps: every request gets exactly one answer — pipeline_prepare either
 * fills an engine request or says which error to answer with; every error answer
 * names what is wrong and never echoes the request's values. Thread-safe (the engine's
 * text helpers are); the caller owns the codec buffers. */
#ifndef KRILL_PIPELINE_H
#define KRILL_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "config.h"
#include "engine.h"

typedef struct {
    engine_t *engine;
    const char *model_name;  /* served name: body.model of results */
    const char *worker;      /* the "krill.worker" field */
    int max_prompt_tokens;   /* input.max_prompt_tokens; 0 = context - max_tokens */
    bool parse_special_in_content; /* input.parse_special_in_content: control-token
                                      strings in chat message content become control
                                      tokens (false: they are text; docs/chat.md) */
    bool parse_special_in_prompt;  /* input.parse_special_in_prompt: the same for a
                                      /v1/completions prompt string */
    int output_format;       /* -1 = the request's format, else CODEC_FMT_JSON/MSGPACK */
    uint64_t uid_base;       /* result uids are uid_base + a counter */
    uint64_t uid_next;       /* the counter (owned by the caller's thread) */
    int status;              /* status_code of the answer encoded last (set by every
                                pipeline_encode_*): the one place it is derived */
} pipeline_t;

/* What a failed preparation answers with. */
typedef struct {
    codec_error_t code;
    const char *param;       /* static string or NULL */
    char message[256];
} pipeline_error_t;

/* The engine settings of a worker configuration (model.*, batching.*): one mapping
 * for krill-worker and krill-run-batch, so both open the same engine. */
void pipeline_engine_config(const config_t *cfg, engine_config_t *ec);

/* The codec's limits from a worker configuration (input.*, model.name): *loaded is the
 * caller's slot for the loaded file's name (engine_info_t.model_name), accepted when
 * model.name is empty; it and cfg must outlive lim. */
void pipeline_codec_limits(const config_t *cfg, const char **loaded, codec_limits_t *lim);

/* Copies the sampling fields of a decoded request (status CODEC_OK) into an engine
 * request: max/min tokens, ignore_eos, temperature, top_p/k, min_p, penalties, seed,
 * stop strings, priority, the grammar, logprobs, logit_bias and n (pointers into r).
 * Not id, prompt or n_prompt (pipeline_prepare sets those). */
void pipeline_request_to_engine(const codec_request_t *r, engine_request_t *er);

/* Renders/tokenizes req (status CODEC_OK) into er with engine id `id`: the chat
 * template's markup with special tokens, message content and a prompt string as text
 * (unless parse_special_in_content / _in_prompt), token-id prompts as given. On success
 * returns 0 and *ids holds the malloc'd prompt (er->prompt points to it; free it after
 * engine_submit, which copies it). On a request error returns -1 with *pe filled
 * (400 context_length_exceeded / invalid_value, or 500 when out of memory). */
int pipeline_prepare(const pipeline_t *p, const codec_request_t *req, uint64_t id, engine_request_t *er,
                     int32_t **ids, pipeline_error_t *pe);

/* The field an ENGINE_ERR_INVALID of engine_submit names for req: the engine checks the
 * codec's fields itself only as a contract (they were checked here first), so its
 * refusals concern the request surface, in engine_request.c's order: the grammar's
 * field (the compiler's message), logprobs, logit_bias, n. NULL when none is set. */
const char *pipeline_submit_param(const codec_request_t *req);

/* Maps an engine_submit status to the answer (ENGINE_ERR_CONTEXT -> 400
 * context_length_exceeded, ENGINE_ERR_INVALID -> 400 invalid_value, else 500). */
void pipeline_submit_error(int status, const char *engine_err, pipeline_error_t *pe);

/* The format a result to a request of format fmt is written in. */
codec_format_t pipeline_format(const pipeline_t *p, codec_format_t request_fmt);

/* A result's common part: format, a fresh uid, custom_id, kind, the served model name,
 * created, worker, no timings (pipeline_answer.c fills the rest). */
void pipeline_result_base(pipeline_t *p, codec_result_t *res, const char *custom_id, codec_kind_t kind,
                          codec_format_t request_fmt);

/* Encodes the answer to a finished engine request (finish STOP/LENGTH -> 200, ERROR ->
 * 400/500 by error_code; ABORTED is the caller's business and must not come here).
 * ok (may be NULL) says whether it is a 200. 0 or -1 with err. */
int pipeline_encode_result(pipeline_t *p, const char *custom_id, codec_kind_t kind, codec_format_t request_fmt,
                           const engine_result_t *r, bool *ok, buf_t *out, char *err, size_t errlen);
/* Encodes an error answer (decode/validation/prepare/submit failure). */
int pipeline_encode_error(pipeline_t *p, const char *custom_id, codec_kind_t kind, codec_format_t request_fmt,
                          codec_error_t code, const char *message, const char *param, buf_t *out, char *err,
                          size_t errlen);
/* Encodes the 400/404 answer to a request that failed codec_decode (status != OK). */
int pipeline_encode_request_error(pipeline_t *p, const codec_request_t *req, buf_t *out, char *err,
                                  size_t errlen);

#endif
