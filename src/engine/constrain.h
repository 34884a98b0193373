/* constrain.h — one sequence's output constraints and log-probabilities, for the
 * scheduler's sampling path: its grammar state (grammar.h), logit_bias, and the
 * logprob buffers its result carries (engine.h engine_result_t.logprobs/top).
 * (Where this part sits among the others: docs/architecture.md.)
 *
 * Order on one logits row (docs/structured-outputs.md): the raw row is copied for the
 * logprobs, then the grammar mask and the bias are applied, then the sampler's own
 * penalties/temperature/top-k/top-p/min-p; the sampled token advances the grammar.
 * Memory: buffers are sized at constrain_init (max_tokens rows), nothing per token. */
#ifndef KRILL_CONSTRAIN_H
#define KRILL_CONSTRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "grammar.h"
#include "sampler.h"

typedef struct {
    grammar_seq_t *gq;        /* NULL = unconstrained */
    int32_t *bias_ids;        /* (n_bias) */
    float *bias;              /* (n_bias) */
    int n_bias;
    bool logprobs;
    int top_n;                /* alternatives per token */
    float *lp;                /* (max_tokens) chosen token's log-probability */
    engine_logprob_t *lp_top; /* (max_tokens, top_n) */
} constrain_t;

/* From a checked request: copies the bias, sizes the logprob buffers, starts the
 * grammar (g may be NULL only when q has none). ENGINE_OK, else ENGINE_ERR_INVALID
 * (the grammar does not compile: err has the compiler's message) or
 * ENGINE_ERR_INTERNAL (out of memory); c is then empty. */
int constrain_init(constrain_t *c, grammar_t *g, const engine_request_t *q, char *err, size_t errlen);
void constrain_free(constrain_t *c); /* accepts an empty or zeroed c */
/* True when the row needs the logits on the host (grammar, bias or logprobs). */
bool constrain_active(const constrain_t *c);
/* Before sampling a row lg (n): keeps the raw row in raw when logprobs are asked,
 * applies mask (NULL when no grammar) and the bias. */
void constrain_before(const constrain_t *c, float *lg, int n, const uint32_t *mask, float *raw);
/* After sampling tok as generated token i: records its logprobs (from raw) and
 * advances the grammar. 0: go on; 1: the grammar is complete (finish stop);
 * -1: the constraint failed, err says why. */
int constrain_after(constrain_t *c, sampler_t *smp, const float *raw, int i, int32_t tok, char *err,
                    size_t errlen);
/* Moves the logprob buffers (n generated tokens) into the result (NULL without logprobs). */
void constrain_take(constrain_t *c, engine_result_t *o);

#endif
