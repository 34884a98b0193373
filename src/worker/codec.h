/* codec.h — request and result messages: JSON (jansson) or msgpack (msgpack-c).
 *
 * docs/schema.md describes the formats and every error code; docs/architecture.md
 * places the codec in the request's walk. This module is pure (no Kafka, no engine,
 * no globals) and thread-safe: every call works on the caller's structs only. It
 * checks shapes and ranges; what needs the model (vocabulary, context, chat
 * template) is the pipeline's (pipeline.h), which also maps a request to the engine.
 * Files: codec.c (names), codec_scan.c (detection, pre-scans), codec_value.c (field
 * reads over both formats), codec_decode.c (the request walk), codec_encode.c
 * (results), codec_convert.c (JSON <-> msgpack for the tools).
 *
 * Rules it keeps:
 * - A message value is untrusted bytes. Its size is checked against the limit and
 *   its nesting depth is checked by an iterative pre-scan BEFORE jansson/msgpack-c
 *   see it, so a 100,000-deep value cannot blow the stack or allocate counts that
 *   the bytes do not hold.
 * - Three outcomes (codec_request_t.status):
 *     CODEC_OK          a valid request; answer it with the engine's result.
 *     CODEC_INVALID     it decoded (a JSON object / msgpack map) but a field is
 *                       missing, of the wrong type or out of range: answer with one
 *                       400 (404 for an unknown model) result. No DLQ record. Also
 *                       out of memory while decoding: a 500 internal_error result.
 *     CODEC_UNDECODABLE not a JSON object / msgpack map, over max_message_bytes, or
 *                       nested deeper than CODEC_MAX_DEPTH: send the message to the
 *                       DLQ unchanged with dlq_code/error_message as headers; when
 *                       has_custom_id, ALSO publish a 400 result (invalid_json or
 *                       invalid_msgpack) for custom_id.
 * - Wrong types and out-of-range values are errors, never silent defaults. JSON
 *   null (msgpack nil) for an optional field means "not given".
 * - Every string krill reads is valid UTF-8 without NUL (jansson checks JSON text;
 *   msgpack str bytes are checked here). Result text is made valid UTF-8 (U+FFFD)
 *   on encode. docs/schema.md has the full rules and every error code. */
#ifndef KRILL_CODEC_H
#define KRILL_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define CODEC_MAX_DEPTH 32      /* nested containers, the top object counts 1 (msgpack-c's own limit) */
#define CODEC_MAX_ID_BYTES 512  /* custom_id / id length */
#define CODEC_MAX_STOP 4        /* stop strings; pipeline.c asserts the engine takes as many */

typedef enum { CODEC_FMT_JSON = 0, CODEC_FMT_MSGPACK = 1 } codec_format_t;
typedef enum { CODEC_KIND_CHAT = 0, CODEC_KIND_COMPLETION = 1 } codec_kind_t;
typedef enum { CODEC_OK = 0, CODEC_INVALID = 1, CODEC_UNDECODABLE = 2 } codec_status_t;

/* Result error codes (body.error.code); strings from codec_error_name(). */
typedef enum {
    CODEC_ERR_NONE = 0,
    CODEC_ERR_INVALID_JSON,            /* 400 invalid_json */
    CODEC_ERR_INVALID_MSGPACK,         /* 400 invalid_msgpack */
    CODEC_ERR_MISSING_FIELD,           /* 400 missing_field */
    CODEC_ERR_INVALID_TYPE,            /* 400 invalid_type */
    CODEC_ERR_INVALID_VALUE,           /* 400 invalid_value */
    CODEC_ERR_UNSUPPORTED,             /* 400 unsupported */
    CODEC_ERR_CONTEXT_LENGTH_EXCEEDED, /* 400 context_length_exceeded (set by the worker) */
    CODEC_ERR_MODEL_NOT_FOUND,         /* 404 model_not_found */
    CODEC_ERR_INTERNAL,                /* 500 internal_error (engine failure) */
    CODEC_ERR_RESULT_TOO_LARGE,        /* 400 result_too_large (set by the worker: the answer is
                                          larger than the results topic accepts) */
} codec_error_t;

/* DLQ header krill-error-code values (CODEC_UNDECODABLE only); codec_dlq_name(). */
typedef enum {
    CODEC_DLQ_NONE = 0,
    CODEC_DLQ_MESSAGE_TOO_LARGE, /* "message_too_large": over input.max_message_bytes */
    CODEC_DLQ_NESTING_TOO_DEEP,  /* "nesting_too_deep": deeper than CODEC_MAX_DEPTH */
    CODEC_DLQ_INVALID_JSON,      /* "invalid_json": starts with '{' but is not JSON (syntax, truncation, bad UTF-8) */
    CODEC_DLQ_INVALID_MSGPACK,   /* "invalid_msgpack": starts like a msgpack map but is not one */
    CODEC_DLQ_NOT_AN_OBJECT,     /* "not_an_object": empty, or neither '{' nor a msgpack map prefix */
} codec_dlq_t;

typedef struct {
    size_t max_message_bytes;      /* input.max_message_bytes */
    int max_tokens_cap;            /* input.max_tokens_cap: max_tokens above it -> invalid_value */
    int default_max_tokens;        /* input.default_max_tokens: when the request gives none */
    const char *const *model_names;/* accepted "model" values; NULL/0 = any, "*" among them = any.
                                      Others -> 404 */
    size_t n_model_names;
    const char *const *ignore_fields; /* input.ignore_unknown_fields: body keys accepted and ignored
                                         (any other key krill does not implement -> 400 unsupported) */
    size_t n_ignore_fields;
    int max_n;                     /* input.max_n: largest n (choices); 0 = 1 */
} codec_limits_t;

void codec_limits_defaults(codec_limits_t *l); /* 1 MiB, cap 4096, default 256, any model, max_n 8 */

/* Structured output kinds: the same numbers as engine.h's engine_grammar_kind_t (the
 * pipeline maps one to the other; the codec knows nothing of the engine). */
typedef enum {
    CODEC_GRAMMAR_NONE = 0,
    CODEC_GRAMMAR_JSON_SCHEMA = 1, /* grammar: compact JSON text of the schema */
    CODEC_GRAMMAR_JSON_OBJECT = 2, /* any JSON object; grammar NULL */
    CODEC_GRAMMAR_REGEX = 3,
    CODEC_GRAMMAR_CHOICE = 4,      /* grammar: compact JSON array of strings */
    CODEC_GRAMMAR_LARK = 5,
} codec_grammar_t;

#define CODEC_MAX_TOP_LOGPROBS_CHAT 20 /* chat top_logprobs in [0, 20] (OpenAI) */
#define CODEC_MAX_LOGPROBS_COMPLETION 5 /* completions logprobs in [0, 5] (OpenAI) */
#define CODEC_MAX_BIAS 300             /* logit_bias entries (OpenAI's limit is 300) */

typedef struct {
    const char *role;    /* "system" | "developer" | "user" | "assistant" | "tool" */
    const char *content; /* text parts concatenated; NUL-terminated, may be "" */
    size_t content_len;
} codec_message_t;

/* A decoded request. Strings point into memory the struct owns; release with
 * codec_request_clear() (then the struct may be reused for the next decode). */
typedef struct {
    codec_status_t status;
    codec_format_t format;       /* detected (JSON when not detectable) */
    /* id: custom_id, else id, else the caller's fallback "<topic>:<partition>:<offset>".
     * Always set, also on error (when even the request's storage could not be
     * allocated, it points at fallback_id itself). has_custom_id: custom_id or id was found in the message
     * (for CODEC_UNDECODABLE: by a cheap scan of the top level, see docs/schema.md). */
    const char *id;
    bool has_custom_id;

    /* errors (status != CODEC_OK) */
    int status_code;             /* 400 | 404, 500 out of memory (0 when OK) */
    codec_error_t error;         /* result code */
    codec_dlq_t dlq;             /* CODEC_UNDECODABLE only */
    const char *param;           /* offending field path ("body.temperature") or NULL */
    char error_message[256];     /* what is wrong and what to do; quotes numbers, never string
                                    field values (a parse error may quote jansson's token) */

    /* the request (status == CODEC_OK) */
    codec_kind_t kind;
    const char *model;           /* NULL when not given */
    codec_message_t *messages;   /* chat: n_messages >= 1 */
    size_t n_messages;
    const char *prompt;          /* completion, text prompt: NUL-terminated, non-empty */
    size_t prompt_len;
    const int32_t *prompt_ids;   /* completion given as token ids (prompt NULL): n >= 1, each >= 0;
                                    the pipeline checks them against the vocabulary */
    int n_prompt_ids;
    int max_tokens;              /* resolved: max_completion_tokens | max_tokens | default; 1..cap */
    bool has_max_tokens;         /* the request gave one */
    int min_tokens;              /* 0..max_tokens */
    bool ignore_eos;
    double temperature;          /* [0, 2], default 1 */
    double top_p;                /* (0, 1], default 1 */
    int top_k;                   /* >= 0; 0 = off (-1 in the request is mapped to 0) */
    double min_p;                /* [0, 1], default 0 */
    double presence_penalty;     /* [-2, 2] */
    double frequency_penalty;    /* [-2, 2] */
    bool has_seed;
    uint64_t seed;               /* int64 seeds are taken modulo 2^64 */
    const char *stop[CODEC_MAX_STOP]; /* non-empty strings */
    int n_stop;
    int priority;
    /* the request surface of docs/schema.md "Structured outputs, logprobs, logit_bias, n" */
    codec_grammar_t grammar_kind;
    const char *grammar;         /* NUL-terminated text (see codec_grammar_t), NULL when none */
    size_t grammar_len;
    const char *grammar_param;   /* the field that gave it ("body.response_format"), for the
                                    compiler's errors; NULL when none */
    bool logprobs;               /* chat logprobs: true, or completions logprobs given (>= 0) */
    int top_logprobs;            /* chat top_logprobs [0, 20]; completions logprobs [0, 5] */
    const int32_t *bias_ids;     /* logit_bias: ids >= 0 (the pipeline checks the vocabulary) */
    const float *bias;           /* [-100, 100] */
    int n_bias;
    int n;                       /* choices, 1..max_n */

    void *priv_;                 /* owned storage (parsed tree, copies); do not touch */
} codec_request_t;

/* Decodes one message value. Never fails as a function: the outcome is in out->status
 * (see the top of this file). fallback_id may be NULL ("unknown"). out must be zeroed
 * or cleared before the first call. Typical request: a few microseconds. */
void codec_decode(const codec_limits_t *lim, const void *buf, size_t len, const char *fallback_id,
                  codec_request_t *out);
void codec_request_clear(codec_request_t *r); /* accepts NULL; leaves r zeroed */

const char *codec_error_name(codec_error_t e);   /* "invalid_value", ... ; "" for NONE */
int codec_error_status(codec_error_t e);          /* 400, 404, 500; 200 for NONE */
const char *codec_dlq_name(codec_dlq_t d);       /* "message_too_large", ... ; "" for NONE */

/* ---------------------------------------------------------------- results */

/* Outputs go to a buf_t (common/buf.h), reused across calls (no malloc once warm). */

typedef struct {
    codec_format_t format;
    uint64_t uid;                /* unique per result: ids are "krill-<16 hex>", body id "chatcmpl-<hex>"/"cmpl-<hex>" */
    const char *custom_id;       /* the request id (codec_request_t.id) */
    codec_kind_t kind;
    const char *model;           /* body.model: the served model's name */
    int64_t created;             /* unix seconds */
    int status_code;             /* 200, or 400/404/500 with error set */
    /* success */
    const char *text;            /* may hold invalid UTF-8: encoded with U+FFFD */
    size_t text_len;
    const char *finish_reason;   /* "stop" | "length" */
    int prompt_tokens, completion_tokens;
    int cached_tokens;           /* usage.prompt_tokens_details.cached_tokens */
    /* n > 1 (or logprobs): the choices; when n_choices == 0 the single choice is text /
     * text_len / finish_reason above with logprobs null */
    const struct codec_choice *choices;
    int n_choices;
    /* error */
    codec_error_t error;
    const char *error_message;
    const char *error_param;     /* NULL -> null */
    /* the "krill" object */
    const char *worker;
    double queue_ms, ttft_ms, total_ms; /* negative -> null */
} codec_result_t;

/* One token of a choice's logprobs: its text is `bytes` (exact bytes of the token's
 * piece; the JSON "token" is that text made valid UTF-8, "bytes" the integers). */
typedef struct {
    const char *bytes;
    size_t n_bytes;
    double logprob;
} codec_token_t;

/* One choice of a 200 result. */
typedef struct codec_choice {
    const char *text;            /* may hold invalid UTF-8: encoded with U+FFFD */
    size_t text_len;
    const char *finish_reason;   /* "stop" | "length" */
    /* logprobs (has_logprobs): n_tokens generated tokens; top[i * n_top + j] = the j-th
     * alternative of token i. Chat: content[] shape; completions: tokens/token_logprobs/
     * top_logprobs/text_offset (text_offset[i] = bytes of the text before token i). */
    bool has_logprobs;
    const codec_token_t *tokens;
    int n_tokens;
    const codec_token_t *top;
    int n_top;
} codec_choice_t;

/* Fills a result for a request that failed decoding/validation (status, error,
 * message, param, custom_id, format, kind); the caller sets uid, model, created,
 * worker and timings. */
void codec_result_from_request_error(const codec_request_t *req, codec_result_t *res);

/* Encodes one result value into out (replacing its contents). 0, or -1 with err
 * (only on a broken invariant such as a NULL custom_id, or out of memory). */
int codec_encode_result(const codec_result_t *r, buf_t *out, char *err, size_t errlen);

/* ---------------------------------------------------------------- conversions (tools) */

/* One JSON value (a line of a .jsonl file) -> msgpack, for krill-enqueue. Depth and
 * size as for requests (limit 0 = none). 0 or -1 with err. */
int codec_json_to_msgpack(const char *json, size_t len, buf_t *out, char *err, size_t errlen);
/* One msgpack value -> compact one-line JSON (no newline), for krill-results.
 * bin -> string when valid UTF-8; ext, NaN/Inf, invalid UTF-8 -> error. */
int codec_msgpack_to_json(const void *buf, size_t len, buf_t *out, char *err, size_t errlen);
/* Detects the format of a message value as codec_decode does: 0 JSON, 1 msgpack, -1 neither. */
int codec_detect(const void *buf, size_t len);

#endif
