/* scheduler.h — continuous batching: requests in, one ragged model batch per step,
 * (Where this part sits among the others: docs/architecture.md.)
 * finished results out.
 *
 * Each step (FCFS): every running sequence gets its next tokens — one decode token,
 * or the next chunk of a prefill or of a recompute — then waiting requests are
 * admitted in arrival order while the budgets (max_seqs sequences, max_batch_tokens
 * tokens) and the KV cache allow. All of it is ONE model_batch_t; logits are asked
 * only for rows that sample (the last token of a sequence's known tokens).
 * KV blocks are taken on demand; when the cache runs out, the newest running
 * sequence is preempted (its blocks freed; later it is recomputed from prompt +
 * generated tokens, so its output is unchanged). The oldest running sequence is
 * never preempted for a newer one, so something always progresses.
 *
 * Threads: scheduler_submit, _abort, _poll and _get_stats may be called from any
 * thread (one mutex, taken a bounded number of times per step, never per token);
 * scheduler_step and scheduler_wait belong to the one engine thread.
 * Memory: per-request buffers are sized at submit (prompt + max_tokens tokens, text
 * for max_tokens pieces, KV block list); batch arrays for max_batch_tokens at
 * scheduler_new. Nothing is allocated per token.
 *
 * The model is reached through scheduler_model_t (function pointers) so that the
 * scheduling logic can be unit-tested with a small fake model. */
#ifndef KRILL_SCHEDULER_H
#define KRILL_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "model.h"
#include "tokenizer.h"

typedef struct scheduler scheduler_t;

typedef struct {
    void *ctx;
    int n_vocab;
    /* logits: (b->n_logits, n_vocab). 0 or -1 (backend failure). */
    int (*forward)(void *ctx, const model_batch_t *b, float *logits);
    bool (*is_eog)(void *ctx, int32_t id);
    /* Streaming detokenizer (tokenizer_stream_push/flush semantics): appends the
     * complete UTF-8 bytes to out; returns bytes written or -1. */
    void (*detok_init)(void *ctx, tokenizer_stream_t *s);
    int (*detok_push)(void *ctx, tokenizer_stream_t *s, int32_t id, char *out, size_t cap);
    int (*detok_flush)(void *ctx, tokenizer_stream_t *s, char *out, size_t cap);
    int max_piece_bytes; /* most bytes one detok_push may write */
    /* Optional (NULL = not available): the same forward pass returning only the
     * chosen id of each logits row, ids (b->n_logits): the argmax, or for rows with
     * inv_temp[i] > 0 sampler_gumbel(row, inv_temp[i], keys[i]) (inv_temp NULL = all
     * argmax). Used for steps where every sampled row is greedy or temperature-only,
     * without penalties or masking; the result must equal sampler_sample on the
     * logits with the same RNG draw. 0 or -1. */
    int (*forward_argmax)(void *ctx, const model_batch_t *b, int32_t *ids, const float *inv_temp,
                          const uint64_t *keys);
    /* Temperature-only rows draw by Gumbel-max (sampler_set_gumbel) and may go through
     * forward_argmax: set where the model draws on the device (a GPU), where it saves
     * the logits download; the host draw is slower than the softmax one. */
    bool gumbel;
    /* Optional: device counters (busy/idle ms, graph replays) copied into the stats
     * after each step, on the engine thread. */
    void (*device_stats)(void *ctx, engine_stats_t *st);
    /* Optional: the grammar engine (grammar.h) for requests with a grammar_kind; NULL =
     * none (such a request is then refused at submit). Owned by the caller. */
    struct grammar *grammar;
    /* Optional: forward_argmax where row i only considers the tokens allowed by its packed
     * mask masks + i * grammar_mask_words (model_forward_argmax_masked); ready(ready_ctx) is
     * called once the forward pass is issued, before the masks are read. Used for steps
     * whose sampled rows are all by-id rows, some with a grammar (no logprobs, no bias). */
    int (*forward_argmax_masked)(void *ctx, const model_batch_t *b, int32_t *ids, const float *inv_temp,
                                 const uint64_t *keys, const uint32_t *masks, void (*ready)(void *), void *ready_ctx);
} scheduler_model_t;

typedef struct {
    int max_seqs;           /* sequences per step (>= 1) */
    int max_batch_tokens;   /* tokens per step (>= 1) */
    int n_ctx;              /* most tokens per sequence (prompt + max_tokens) */
    int64_t kv_blocks;      /* physical KV blocks (model_kv_blocks) */
    int kv_block_size;      /* tokens per block */
    int max_queue;          /* waiting requests before ENGINE_ERR_BUSY; 0 = unbounded */
    uint64_t seed;          /* base seed for requests without one */
    /* Admission: a waiting request is admitted only while the KV blocks that all
     * running requests would hold at max_tokens, plus its own, stay within
     * overcommit x the cache. 1.0 never preempts (nothing can outgrow its share);
     * larger values admit more optimistically (requests often stop early) and fall
     * back on preemption. 0 = 1.0. */
    double overcommit;
    /* Prefix cache (docs/engine-scheduling.md): full KV blocks are shared between
     * requests whose token prefixes match; prefix_salt names what else changes the K/V
     * (model file, KV dtype), the root of every block key. */
    bool prefix_cache;
    const char *prefix_salt;
} scheduler_config_t;

/* m is copied; m->ctx must outlive the scheduler. NULL with err on bad sizes. */
scheduler_t *scheduler_new(const scheduler_config_t *cfg, const scheduler_model_t *m,
                           char *err, size_t errlen);
/* Accepts NULL. Requests still pending are dropped without a result. */
void scheduler_free(scheduler_t *s);

/* Queues a request engine_submit has checked (engine_request.h): the scheduler trusts
 * its caller, and a request out of range or too long for the context or the KV cache
 * is a broken invariant (CHECK), not an error. ENGINE_OK, or with err filled
 * ENGINE_ERR_BUSY (the queue is at max_queue) or ENGINE_ERR_INTERNAL (out of memory);
 * on error no result will be produced for this id. */
int scheduler_submit(scheduler_t *s, const engine_request_t *req, char *err, size_t errlen);
/* One iteration; returns the number of sequences in the batch (0 = nothing to do). */
int scheduler_step(scheduler_t *s);
/* Blocks up to timeout_ms until there is work; 1 if there is, else 0. */
int scheduler_wait(scheduler_t *s, int timeout_ms);
size_t scheduler_poll(scheduler_t *s, engine_result_t *out, size_t max);
int scheduler_abort(scheduler_t *s, uint64_t id);
void scheduler_get_stats(scheduler_t *s, engine_stats_t *st);
/* Physical blocks the scheduler manages (for engine_info). */
int64_t scheduler_kv_blocks(const scheduler_t *s);
/* Engine thread, between steps: new budgets for the next steps (adaptive batching).
 * <= 0 keeps one; both are capped by the sizes given to scheduler_new. A lower max_seqs
 * stops admission until fewer sequences run; the running ones keep stepping. */
void scheduler_set_limits(scheduler_t *s, int max_seqs, int max_batch_tokens);

#endif
