/* constrain.c — see constrain.h: a sequence's grammar state, logit_bias and logprobs. */
#include "err.h"
#include "constrain.h"

#include <stdlib.h>
#include <string.h>

int constrain_init(constrain_t *c, grammar_t *g, const engine_request_t *q, char *err, size_t errlen) {
    memset(c, 0, sizeof(*c));
    if (q->n_bias > 0) {
        c->bias_ids = malloc((size_t)q->n_bias * sizeof(int32_t));
        c->bias = malloc((size_t)q->n_bias * sizeof(float));
        if (!c->bias_ids || !c->bias) goto oom;
        memcpy(c->bias_ids, q->bias_ids, (size_t)q->n_bias * sizeof(int32_t));
        memcpy(c->bias, q->bias, (size_t)q->n_bias * sizeof(float));
        c->n_bias = q->n_bias;
    }
    if (q->logprobs) {
        c->logprobs = true;
        c->top_n = q->top_logprobs;
        c->lp = malloc((size_t)q->max_tokens * sizeof(float));
        if (!c->lp) goto oom;
        if (c->top_n > 0 &&
            !(c->lp_top = malloc((size_t)q->max_tokens * (size_t)c->top_n * sizeof(engine_logprob_t))))
            goto oom;
    }
    if (q->grammar_kind != ENGINE_GRAMMAR_NONE) {
        if (!g) {
            err_set(err, errlen, "structured output needs the grammar engine, which this engine has not opened");
            constrain_free(c);
            return ENGINE_ERR_INVALID;
        }
        if (!(c->gq = grammar_seq_new(g, q->grammar_kind, q->grammar, q->grammar_len, err, errlen))) {
            constrain_free(c);
            return ENGINE_ERR_INVALID;
        }
    }
    return ENGINE_OK;
oom:
    constrain_free(c);
    err_set(err, errlen, "out of memory for a request's logprobs / logit_bias (%d tokens)", q->max_tokens);
    return ENGINE_ERR_INTERNAL;
}

void constrain_free(constrain_t *c) {
    grammar_seq_free(c->gq);
    free(c->bias_ids);
    free(c->bias);
    free(c->lp);
    free(c->lp_top);
    memset(c, 0, sizeof(*c));
}

bool constrain_active(const constrain_t *c) { return c->gq || c->n_bias > 0 || c->logprobs; }

void constrain_before(const constrain_t *c, float *lg, int n, const uint32_t *mask, float *raw) {
    if (c->logprobs) memcpy(raw, lg, (size_t)n * sizeof(float));
    if (mask) sampler_apply_mask(lg, n, mask);
    if (c->n_bias > 0) sampler_apply_bias(lg, n, c->bias_ids, c->bias, c->n_bias);
}

int constrain_after(constrain_t *c, sampler_t *smp, const float *raw, int i, int32_t tok, char *err,
                    size_t errlen) {
    if (c->logprobs)
        c->lp[i] = sampler_logprobs(smp, raw, tok, c->top_n, c->lp_top ? c->lp_top + (size_t)i * (size_t)c->top_n : NULL);
    return c->gq ? grammar_seq_accept(c->gq, tok, err, errlen) : 0;
}

void constrain_take(constrain_t *c, engine_result_t *o) {
    o->logprobs = c->lp;
    o->top = c->lp_top;
    o->n_top = c->logprobs ? c->top_n : 0;
    c->lp = NULL; /* now owned by the result */
    c->lp_top = NULL;
}
