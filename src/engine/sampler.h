/* sampler.h — next-token choice from one row of logits, per-request RNG, stop strings.
 * (Where this part sits among the others: docs/architecture.md.)
 *
 * Rules: the result depends only on (logits, params, the request's generated tokens,
 * its RNG state), never on what else shares the batch; the RNG advances exactly once
 * per sampled token (not at all for greedy). A sampler_t is scratch for one thread
 * (the engine thread), sized once for the vocabulary: sampling allocates nothing.
 *
 * Order (as vLLM/OpenAI): presence/frequency penalties on the raw logits (OpenAI:
 * logit[t] -= frequency * count(t) + presence * (count(t) > 0), over generated tokens),
 * then temperature 0 -> argmax (lowest id on ties); else logits / temperature,
 * top-k, softmax, top-p (smallest set of most probable tokens holding >= top_p of the
 * mass), min-p (drop p < min_p * p_max), then one draw from what is left.
 * With sampler_set_gumbel on, temperature alone (no top-k, top-p or min-p) draws by
 * Gumbel-max instead (sampler_gumbel, gumbel.h): the same distribution, and a GPU can
 * take the same draw on the device (model_forward_argmax) so the logits never leave
 * it. On the host it costs 1.5-3x the softmax draw, so the engine turns it on only
 * where the model can draw on the device. */
#ifndef KRILL_SAMPLER_H
#define KRILL_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h" /* engine_logprob_t */

/* xoshiro256** seeded through splitmix64: small, fast, and good enough for sampling. */
typedef struct {
    uint64_t s[4];
} sampler_rng_t;

void sampler_rng_seed(sampler_rng_t *r, uint64_t seed);
uint64_t sampler_rng_next(sampler_rng_t *r);
double sampler_rng_uniform(sampler_rng_t *r); /* [0, 1), 53 random bits */
/* A seed from (base, counter) for requests that bring none (splitmix64 of both). */
uint64_t sampler_seed_mix(uint64_t base, uint64_t counter);

typedef struct {
    float temperature;        /* 0 = greedy */
    int top_k;                /* 0 = off */
    float top_p;              /* 1 = off */
    float min_p;              /* 0 = off */
    float presence_penalty;   /* 0 = off */
    float frequency_penalty;  /* 0 = off */
} sampler_params_t;

typedef struct sampler sampler_t;

sampler_t *sampler_new(int n_vocab); /* NULL when out of memory or n_vocab < 1 */
void sampler_free(sampler_t *s);     /* accepts NULL */

/* Picks the next token. logits (n_vocab) is modified in place (penalties).
 * generated: the request's generated tokens so far (for the penalties). */
int32_t sampler_sample(sampler_t *s, const sampler_params_t *p, float *logits,
                       const int32_t *generated, int n_generated, sampler_rng_t *rng);

/* On: temperature-only draws are sampler_gumbel(logits, 1 / temperature,
 * sampler_rng_next(rng)) after the penalties. Off (the default): the softmax draw. */
void sampler_set_gumbel(sampler_t *s, bool on);
/* True when p is temperature sampling without top-k, top-p or min-p. */
bool sampler_is_gumbel(const sampler_params_t *p);
/* The Gumbel-max draw over logits (n) for one 64-bit key (gumbel.h). */
int32_t sampler_gumbel(const float *logits, int n, float inv_temp, uint64_t key);
/* What model_forward_argmax (and the GPU's argmax op) pick for one row: the argmax
 * (lowest id on ties) when inv_temp is 0, else sampler_gumbel. */
int32_t sampler_pick(const float *logits, int n, float inv_temp, uint64_t key);

/* Constraints on one row before sampler_sample (logprobs are taken before them, from a
 * copy of the raw row). mask: packed bits (grammar.h), bit t of word t / 32 set = token t
 * allowed; every other token's logit becomes -inf. */
void sampler_apply_mask(float *logits, int n, const uint32_t *mask);
/* logit_bias: logits[ids[i]] += bias[i] (ids in [0, n), checked by engine_request). */
void sampler_apply_bias(float *logits, int n, const int32_t *ids, const float *bias, int n_bias);
/* Log-probabilities from a raw row (the log-softmax in double precision): returns the
 * chosen token's and writes the k (<= ENGINE_MAX_TOP_LOGPROBS, <= n_vocab) most likely
 * tokens to top, descending, ties by lower id. Uses s's scratch. */
float sampler_logprobs(sampler_t *s, const float *raw, int32_t chosen, int k, engine_logprob_t *top);

/* What the GPU's masked argmax op picks for one row (backend.h argmax_masked): tokens
 * whose bit in mask (packed, grammar.h) is clear count as -inf; then the Gumbel-max draw
 * when inv_temp > 0 and some score is finite, else the argmax (lowest id on ties, -inf
 * included, NaN never). mask NULL: every token. */
int32_t sampler_pick_masked(const float *logits, int n, float inv_temp, uint64_t key, const uint32_t *mask);

/* Stop strings on decoded text. A new match must end inside the bytes added by the
 * last token: call with new_from = the text length before that token's bytes.
 * Returns the byte offset where the earliest stop string starts, or -1. */
long sampler_stop_find(const char *text, size_t len, size_t new_from,
                       const char *const *stop, const size_t *stop_len, int n_stop);
/* Bytes at the end of text that are a proper prefix of some stop string: text that a
 * streaming consumer must hold back until the next token decides it. */
size_t sampler_stop_holdback(const char *text, size_t len,
                             const char *const *stop, const size_t *stop_len, int n_stop);

#endif
