/* engine_request.c — the engine API's one check of a request (engine_request.h). */
#include "err.h"
#include "engine_request.h"
#include "grammar.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

static bool finite_in(float v, float lo, float hi) { return isfinite(v) && v >= lo && v <= hi; }

int engine_request_check(const engine_info_t *info, const engine_request_t *q, char *err, size_t errlen) {
    if (!q->prompt || q->n_prompt < 1) {
        err_set(err, errlen, "prompt is empty: give at least one token");
        return ENGINE_ERR_INVALID;
    }
    for (int i = 0; i < q->n_prompt; i++)
        if (q->prompt[i] < 0 || q->prompt[i] >= info->n_vocab) {
            err_set(err, errlen, "prompt token %d at index %d is outside the vocabulary [0, %d)", q->prompt[i], i,
                    info->n_vocab);
            return ENGINE_ERR_INVALID;
        }
    if (q->max_tokens < 1) {
        err_set(err, errlen, "max_tokens is %d: it must be >= 1", q->max_tokens);
        return ENGINE_ERR_INVALID;
    }
    if (q->min_tokens < 0 || q->min_tokens > q->max_tokens) {
        err_set(err, errlen, "min_tokens is %d: it must be in [0, max_tokens=%d]", q->min_tokens, q->max_tokens);
        return ENGINE_ERR_INVALID;
    }
    if (!finite_in(q->temperature, 0.0f, 2.0f)) {
        err_set(err, errlen, "temperature %g is out of range [0, 2]", (double)q->temperature);
        return ENGINE_ERR_INVALID;
    }
    if (!(isfinite(q->top_p) && q->top_p > 0.0f && q->top_p <= 1.0f)) {
        err_set(err, errlen, "top_p %g is out of range (0, 1]", (double)q->top_p);
        return ENGINE_ERR_INVALID;
    }
    if (q->top_k < 0) {
        err_set(err, errlen, "top_k %d is negative: use 0 to turn it off", q->top_k);
        return ENGINE_ERR_INVALID;
    }
    if (!finite_in(q->min_p, 0.0f, 1.0f)) {
        err_set(err, errlen, "min_p %g is out of range [0, 1]", (double)q->min_p);
        return ENGINE_ERR_INVALID;
    }
    if (!finite_in(q->presence_penalty, -2.0f, 2.0f) || !finite_in(q->frequency_penalty, -2.0f, 2.0f)) {
        err_set(err, errlen, "presence_penalty %g / frequency_penalty %g: both must be in [-2, 2]",
                (double)q->presence_penalty, (double)q->frequency_penalty);
        return ENGINE_ERR_INVALID;
    }
    if (q->n_stop < 0 || q->n_stop > ENGINE_MAX_STOP) {
        err_set(err, errlen, "%d stop strings: at most %d are allowed", q->n_stop, ENGINE_MAX_STOP);
        return ENGINE_ERR_INVALID;
    }
    for (int i = 0; i < q->n_stop; i++)
        if (!q->stop[i] || !q->stop[i][0]) {
            err_set(err, errlen, "stop string %d is empty: remove it or give some text", i);
            return ENGINE_ERR_INVALID;
        }
    /* the request surface of docs/structured-outputs.md: fields each part of the engine
     * implements are checked here; until a part exists its field is refused, never ignored */
    if ((int)q->grammar_kind < ENGINE_GRAMMAR_NONE || (int)q->grammar_kind > ENGINE_GRAMMAR_LARK) {
        err_set(err, errlen, "grammar_kind %d is unknown: use 0 (none) to %d (lark)", (int)q->grammar_kind,
                (int)ENGINE_GRAMMAR_LARK);
        return ENGINE_ERR_INVALID;
    }
    if (q->grammar_kind != ENGINE_GRAMMAR_NONE && q->grammar_kind != ENGINE_GRAMMAR_JSON_OBJECT &&
        (!q->grammar || q->grammar_len == 0)) {
        err_set(err, errlen, "grammar is empty: grammar kind %d needs its text (schema, regex, choices or Lark)",
                (int)q->grammar_kind);
        return ENGINE_ERR_INVALID;
    }
    if (q->top_logprobs < 0 || q->top_logprobs > ENGINE_MAX_TOP_LOGPROBS) {
        err_set(err, errlen, "top_logprobs is %d: it must be in [0, %d]", q->top_logprobs, ENGINE_MAX_TOP_LOGPROBS);
        return ENGINE_ERR_INVALID;
    }
    if (q->top_logprobs > 0 && !q->logprobs) {
        err_set(err, errlen, "top_logprobs is %d but logprobs is off: turn logprobs on to get alternatives",
                q->top_logprobs);
        return ENGINE_ERR_INVALID;
    }
    if (q->n_bias < 0 || q->n_bias > ENGINE_MAX_BIAS) {
        err_set(err, errlen, "logit_bias has %d entries: at most %d are allowed", q->n_bias, ENGINE_MAX_BIAS);
        return ENGINE_ERR_INVALID;
    }
    if (q->n_bias > 0 && (!q->bias_ids || !q->bias)) {
        err_set(err, errlen, "logit_bias has %d entries but no ids or values", q->n_bias);
        return ENGINE_ERR_INVALID;
    }
    for (int i = 0; i < q->n_bias; i++) {
        if (q->bias_ids[i] < 0 || q->bias_ids[i] >= info->n_vocab) {
            err_set(err, errlen, "logit_bias token %d is outside the vocabulary [0, %d)", q->bias_ids[i],
                    info->n_vocab);
            return ENGINE_ERR_INVALID;
        }
        if (!finite_in(q->bias[i], -100.0f, 100.0f)) {
            err_set(err, errlen, "logit_bias value %g for token %d is out of range [-100, 100]", (double)q->bias[i],
                    q->bias_ids[i]);
            return ENGINE_ERR_INVALID;
        }
    }
    if (q->n < 0 || q->n > ENGINE_MAX_CHOICES) {
        err_set(err, errlen, "n is %d: it must be in [1, %d]", q->n, ENGINE_MAX_CHOICES);
        return ENGINE_ERR_INVALID;
    }
    int64_t need = (int64_t)q->n_prompt + q->max_tokens;
    if (need > info->n_ctx) {
        err_set(err, errlen,
                "prompt (%d tokens) + max_tokens (%d) = %lld exceeds the context of %d tokens: "
                "shorten the prompt or lower max_tokens",
                q->n_prompt, q->max_tokens, (long long)need, info->n_ctx);
        return ENGINE_ERR_CONTEXT;
    }
    /* the last sampled token is never fed back, so the cache holds need - 1 at most
     * (kv_cache_tokens is whole blocks, so this is the scheduler's block count) */
    if (need - 1 > info->kv_cache_tokens) {
        err_set(err, errlen,
                "prompt (%d tokens) + max_tokens (%d) needs more KV cache than the whole cache "
                "(%lld tokens): shorten the request or enlarge the cache",
                q->n_prompt, q->max_tokens, (long long)info->kv_cache_tokens);
        return ENGINE_ERR_CONTEXT;
    }
    return ENGINE_OK;
}

int engine_request_check_grammar(struct grammar *g, const engine_request_t *q, char *err, size_t errlen) {
    if (q->grammar_kind == ENGINE_GRAMMAR_NONE) return ENGINE_OK;
    if (!g) {
        err_set(err, errlen, "structured output is not available: this engine could not describe its "
                             "vocabulary to llguidance (see the engine's start-up log)");
        return ENGINE_ERR_INVALID;
    }
    char msg[200];
    if (grammar_check(g, q->grammar_kind, q->grammar, q->grammar_len, msg, sizeof(msg)) != 0) {
        err_set(err, errlen, "the grammar does not compile: %s", msg);
        return ENGINE_ERR_INVALID;
    }
    return ENGINE_OK;
}
