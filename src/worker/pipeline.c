/* pipeline.c — a decoded request -> an engine request (the model's checks: chat
 * template, tokenization, vocabulary, context), and an engine result or an error ->
 * a result message (see pipeline.h). */
#include "pipeline.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

_Static_assert(CODEC_MAX_STOP <= ENGINE_MAX_STOP, "the engine must take every stop string the codec accepts");
_Static_assert(CODEC_MAX_TOP_LOGPROBS_CHAT <= ENGINE_MAX_TOP_LOGPROBS, "the engine must take every top_logprobs");
_Static_assert(CODEC_MAX_BIAS <= ENGINE_MAX_BIAS, "the engine must take every logit_bias entry the codec accepts");
_Static_assert((int)CODEC_GRAMMAR_JSON_SCHEMA == (int)ENGINE_GRAMMAR_JSON_SCHEMA &&
                   (int)CODEC_GRAMMAR_JSON_OBJECT == (int)ENGINE_GRAMMAR_JSON_OBJECT &&
                   (int)CODEC_GRAMMAR_REGEX == (int)ENGINE_GRAMMAR_REGEX &&
                   (int)CODEC_GRAMMAR_CHOICE == (int)ENGINE_GRAMMAR_CHOICE &&
                   (int)CODEC_GRAMMAR_LARK == (int)ENGINE_GRAMMAR_LARK,
               "codec and engine grammar kinds are the same numbers");

static void pe_set(pipeline_error_t *pe, codec_error_t code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void pe_set(pipeline_error_t *pe, codec_error_t code, const char *param, const char *fmt, ...) {
    pe->code = code;
    pe->param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pe->message, sizeof pe->message, fmt, ap);
    va_end(ap);
}

/* The error of a failed tokenization (engine_tokenize / engine_chat_tokenize, status
 * rc, engine message err); what ("the prompt", plural: "the rendered messages") names
 * the text. ENGINE_ERR_CONTEXT (a text longer than the context) is the request's
 * context_length_exceeded, not a malformed prompt. Returns -1. */
static int tokenize_error(const pipeline_t *p, int rc, const char *err, const char *param, const char *what,
                          bool plural, pipeline_error_t *pe) {
    if (rc == ENGINE_ERR_CONTEXT) {
        pe_set(pe, CODEC_ERR_CONTEXT_LENGTH_EXCEEDED, param, "%s %s not fit the model's context of %d tokens; shorten %s",
               what, plural ? "do" : "does", engine_get_info(p->engine)->n_ctx, plural ? "them" : "it");
        return -1;
    }
    pe_set(pe, CODEC_ERR_INVALID_VALUE, param, "%s cannot be tokenized: %s", what, err);
    return -1;
}

int pipeline_prepare(const pipeline_t *p, const codec_request_t *req, uint64_t id, engine_request_t *er,
                     int32_t **ids, pipeline_error_t *pe) {
    char err[256];
    const engine_info_t *info = engine_get_info(p->engine);
    int32_t *toks = NULL;
    int n = 0;
    *ids = NULL;
    memset(er, 0, sizeof *er);
    if (req->kind == CODEC_KIND_CHAT) {
        engine_chat_msg_t stackmsgs[16];
        engine_chat_msg_t *msgs = stackmsgs;
        if (req->n_messages > 16) {
            msgs = malloc(req->n_messages * sizeof *msgs);
            if (!msgs) {
                pe_set(pe, CODEC_ERR_INTERNAL, NULL, "out of memory rendering the messages");
                return -1;
            }
        }
        for (size_t i = 0; i < req->n_messages; i++) {
            msgs[i].role = req->messages[i].role;
            msgs[i].content = req->messages[i].content;
        }
        /* The template's markup (BOS where the template wants one) is tokenized with
         * its special tokens, the content as text: a message cannot forge a turn. */
        bool rendered;
        int rc = engine_chat_tokenize(p->engine, msgs, req->n_messages, p->parse_special_in_content, &toks, &n,
                                      &rendered, err, sizeof err);
        if (msgs != stackmsgs) free(msgs);
        if (rc != 0 && !rendered) {
            pe_set(pe, CODEC_ERR_INVALID_VALUE, "body.messages", "the messages cannot be rendered with the model's chat template: %s", err);
            return -1;
        }
        if (rc != 0) return tokenize_error(p, rc, err, "body.messages", "the rendered messages", true, pe);
    } else if (req->prompt) {
        /* A raw prompt starts with BOS when the model wants one (add_bos_token), as
         * llama.cpp does; it is text unless input.parse_special_in_prompt (token ids
         * are the way to send control tokens); token-id prompts are taken as given. */
        int rc = engine_tokenize(p->engine, req->prompt, req->prompt_len, info->add_bos, p->parse_special_in_prompt,
                                 &toks, &n, err, sizeof err);
        if (rc != 0) return tokenize_error(p, rc, err, "body.prompt", "the prompt", false, pe);
    } else {
        CHECK(req->n_prompt_ids >= 1 && req->prompt_ids); /* codec.h: a token-id prompt is never empty */
        for (int i = 0; i < req->n_prompt_ids; i++)
            if (req->prompt_ids[i] < 0 || req->prompt_ids[i] >= info->n_vocab) {
                pe_set(pe, CODEC_ERR_INVALID_VALUE, "body.prompt",
                       "prompt token %d is outside the vocabulary (0..%d); send token ids of this model", i,
                       info->n_vocab - 1);
                return -1;
            }
        toks = malloc((size_t)req->n_prompt_ids * sizeof *toks);
        if (!toks) {
            pe_set(pe, CODEC_ERR_INTERNAL, NULL, "out of memory");
            return -1;
        }
        memcpy(toks, req->prompt_ids, (size_t)req->n_prompt_ids * sizeof *toks);
        n = req->n_prompt_ids;
    }
    if (n < 1) {
        free(toks);
        pe_set(pe, CODEC_ERR_INVALID_VALUE, req->kind == CODEC_KIND_CHAT ? "body.messages" : "body.prompt",
               "the prompt has no tokens; send some text");
        return -1;
    }
    if (p->max_prompt_tokens > 0 && n > p->max_prompt_tokens) {
        free(toks);
        pe_set(pe, CODEC_ERR_CONTEXT_LENGTH_EXCEEDED, "body.messages",
               "the prompt has %d tokens, over this worker's limit of %d (input.max_prompt_tokens); shorten it", n,
               p->max_prompt_tokens);
        if (req->kind == CODEC_KIND_COMPLETION) pe->param = "body.prompt";
        return -1;
    }
    if ((int64_t)n + req->max_tokens > info->n_ctx) {
        free(toks);
        pe_set(pe, CODEC_ERR_CONTEXT_LENGTH_EXCEEDED, req->kind == CODEC_KIND_CHAT ? "body.messages" : "body.prompt",
               "the prompt (%d tokens) plus max_tokens (%d) exceeds the model's context of %d tokens; shorten the "
               "prompt or lower max_tokens",
               n, req->max_tokens, info->n_ctx);
        return -1;
    }
    for (int i = 0; i < req->n_bias; i++)
        if (req->bias_ids[i] >= info->n_vocab) {
            free(toks);
            pe_set(pe, CODEC_ERR_INVALID_VALUE, "body.logit_bias",
                   "token id %d is outside the vocabulary (0..%d); send token ids of this model", (int)req->bias_ids[i],
                   info->n_vocab - 1);
            return -1;
        }
    pipeline_request_to_engine(req, er);
    er->id = id;
    er->prompt = toks;
    er->n_prompt = n;
    *ids = toks;
    return 0;
}

void pipeline_request_to_engine(const codec_request_t *r, engine_request_t *er) {
    er->max_tokens = r->max_tokens;
    er->min_tokens = r->min_tokens;
    er->ignore_eos = r->ignore_eos;
    er->temperature = (float)r->temperature;
    er->top_p = (float)r->top_p;
    er->top_k = r->top_k;
    er->min_p = (float)r->min_p;
    er->presence_penalty = (float)r->presence_penalty;
    er->frequency_penalty = (float)r->frequency_penalty;
    er->has_seed = r->has_seed;
    er->seed = r->seed;
    er->n_stop = r->n_stop;
    for (int i = 0; i < ENGINE_MAX_STOP; i++) er->stop[i] = i < r->n_stop ? r->stop[i] : NULL;
    er->priority = r->priority;
    er->grammar_kind = (engine_grammar_kind_t)r->grammar_kind;
    er->grammar = r->grammar;
    er->grammar_len = r->grammar_len;
    er->logprobs = r->logprobs;
    er->top_logprobs = r->top_logprobs;
    er->bias_ids = r->bias_ids;
    er->bias = r->bias;
    er->n_bias = r->n_bias;
    er->n = r->n > 0 ? r->n : 1;
}

const char *pipeline_submit_param(const codec_request_t *req) {
    if (req->grammar_kind != CODEC_GRAMMAR_NONE) return req->grammar_param;
    if (req->logprobs) return req->kind == CODEC_KIND_CHAT && req->top_logprobs ? "body.top_logprobs" : "body.logprobs";
    if (req->n_bias) return "body.logit_bias";
    if (req->n > 1) return "body.n";
    return NULL;
}

void pipeline_codec_limits(const config_t *cfg, const char **loaded, codec_limits_t *lim) {
    codec_limits_defaults(lim);
    lim->max_message_bytes = (size_t)cfg->input.max_message_bytes;
    lim->max_tokens_cap = cfg->input.max_tokens_cap;
    lim->default_max_tokens = cfg->input.default_max_tokens;
    lim->max_n = cfg->input.max_n;
    lim->ignore_fields = (const char *const *)cfg->input.ignore_unknown_fields;
    lim->n_ignore_fields = cfg->input.n_ignore_unknown_fields;
    if (cfg->model.n_name > 0) {
        lim->model_names = (const char *const *)cfg->model.name;
        lim->n_model_names = cfg->model.n_name;
    } else { /* a result never carries the name of a model the worker did not load */
        lim->model_names = loaded;
        lim->n_model_names = 1;
    }
}

void pipeline_submit_error(int status, const char *engine_err, pipeline_error_t *pe) {
    switch (status) {
    case ENGINE_ERR_CONTEXT:
        pe_set(pe, CODEC_ERR_CONTEXT_LENGTH_EXCEEDED, NULL, "%s", engine_err && *engine_err ? engine_err : "the request can never fit the context");
        break;
    case ENGINE_ERR_INVALID:
        pe_set(pe, CODEC_ERR_INVALID_VALUE, NULL, "%s", engine_err && *engine_err ? engine_err : "a request field is out of range");
        break;
    default:
        pe_set(pe, CODEC_ERR_INTERNAL, NULL, "the engine could not take the request: %s",
               engine_err && *engine_err ? engine_err : "unknown error");
        break;
    }
}

codec_format_t pipeline_format(const pipeline_t *p, codec_format_t request_fmt) {
    return p->output_format < 0 ? request_fmt : (codec_format_t)p->output_format;
}

void pipeline_result_base(pipeline_t *p, codec_result_t *res, const char *custom_id, codec_kind_t kind,
                          codec_format_t request_fmt) {
    memset(res, 0, sizeof *res);
    res->format = pipeline_format(p, request_fmt);
    res->uid = p->uid_base + p->uid_next++;
    res->custom_id = custom_id;
    res->kind = kind;
    res->model = p->model_name;
    res->created = (int64_t)time(NULL);
    res->worker = p->worker;
    res->queue_ms = res->ttft_ms = res->total_ms = -1;
}

int pipeline_encode_result(pipeline_t *p, const char *custom_id, codec_kind_t kind, codec_format_t request_fmt,
                           const engine_result_t *r, bool *ok, buf_t *out, char *err, size_t errlen) {
    codec_result_t res;
    pipeline_error_t pe; /* res points into it until encoded */
    pipeline_result_base(p, &res, custom_id, kind, request_fmt);
    res.queue_ms = r->queue_ms;
    res.ttft_ms = r->n_tokens > 0 ? r->ttft_ms : -1;
    res.total_ms = r->total_ms;
    if (r->finish == ENGINE_FINISH_STOP || r->finish == ENGINE_FINISH_LENGTH) {
        res.status_code = 200;
        res.text = r->text ? r->text : "";
        res.text_len = r->text ? r->text_len : 0;
        res.finish_reason = r->finish == ENGINE_FINISH_STOP ? "stop" : "length";
        res.prompt_tokens = r->prompt_tokens;
        res.completion_tokens = r->completion_tokens;
        if (ok) *ok = true;
    } else {
        pipeline_submit_error(r->finish == ENGINE_FINISH_ERROR ? r->error_code : ENGINE_ERR_INTERNAL,
                              r->finish == ENGINE_FINISH_ERROR ? r->error : "the request was aborted", &pe);
        res.error = pe.code;
        res.status_code = codec_error_status(pe.code);
        res.error_message = pe.message;
        res.error_param = pe.param;
        if (ok) *ok = false;
    }
    p->status = res.status_code;
    return codec_encode_result(&res, out, err, errlen);
}

int pipeline_encode_error(pipeline_t *p, const char *custom_id, codec_kind_t kind, codec_format_t request_fmt,
                          codec_error_t code, const char *message, const char *param, buf_t *out, char *err,
                          size_t errlen) {
    codec_result_t res;
    pipeline_result_base(p, &res, custom_id, kind, request_fmt);
    res.status_code = codec_error_status(code);
    res.error = code;
    res.error_message = message;
    res.error_param = param;
    p->status = res.status_code;
    return codec_encode_result(&res, out, err, errlen);
}

int pipeline_encode_request_error(pipeline_t *p, const codec_request_t *req, buf_t *out, char *err,
                                  size_t errlen) {
    codec_result_t res, base;
    memset(&res, 0, sizeof res);
    codec_result_from_request_error(req, &res);
    pipeline_result_base(p, &base, req->id, req->kind, req->format);
    res.format = base.format;
    res.uid = base.uid;
    res.model = base.model;
    res.created = base.created;
    res.worker = base.worker;
    res.queue_ms = res.ttft_ms = res.total_ms = -1;
    p->status = res.status_code;
    return codec_encode_result(&res, out, err, errlen);
}

void pipeline_engine_config(const config_t *cfg, engine_config_t *ec) {
    engine_config_defaults(ec);
    ec->model_path = cfg->model.path;
    ec->backend = cfg->model.backend;
    ec->dtype = cfg->model.dtype;
    ec->cpu_weights = cfg->model.cpu_weights;
    ec->gpu_weights = cfg->model.gpu_weights;
    ec->n_threads = cfg->model.threads;
    ec->context = cfg->model.context;
    ec->max_seqs = cfg->batching.max_seqs;
    ec->max_batch_tokens = cfg->batching.max_batch_tokens;
    ec->kv_block_size = cfg->model.kv_block_size;
    ec->kv_cache_tokens = cfg->model.kv_cache_tokens;
    ec->gpu_memory_fraction = cfg->model.gpu_memory_fraction;
    ec->seed = (uint64_t)cfg->model.seed;
    ec->prefix_cache = cfg->batching.prefix_cache;
}
