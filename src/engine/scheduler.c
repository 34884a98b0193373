/* scheduler.c — continuous batching (see scheduler.h for the policy and the rules).
 *
 * A request's tokens[] holds prompt then generated ids; n_computed of them have K/V in
 * the cache. Every step feeds tokens[n_computed .. n_computed + chunk) — a decode is
 * simply the case where one token is left, a prefill or a recompute after preemption
 * the case where more are — and samples when the chunk reaches the last known token.
 *
 * Lists: incoming (submitted, not yet seen by the engine thread; under the mutex),
 * waiting and running (engine thread only), done (finished, under the mutex until
 * polled), live (every request from submit until polled, under the mutex, so that
 * abort can find it from another thread). */
#include "clock.h"
#include "err.h"
#include "scheduler.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "constrain.h"
#include "kvcache.h"
#include "log.h"
#include "sampler.h"

/* RS_PARKED: choice i > 0 of an n > 1 request, held by its choice 0 (parent) until
 * the parent's prompt is computed; then it forks from the parent's blocks. */
typedef enum { RS_INCOMING = 0, RS_WAITING, RS_RUNNING, RS_DONE, RS_PARKED } rstate_t;

typedef struct sreq sreq_t;
struct sreq {
    sreq_t *prev, *next;           /* waiting / running list (engine thread) */
    sreq_t *q_next;                /* incoming / done queue (mutex) */
    sreq_t *live_prev, *live_next; /* live list (mutex) */
    sreq_t *abort_next;            /* abort stack (mutex) */
    bool abort_requested;          /* mutex */
    rstate_t state;

    uint64_t id;
    int32_t *tokens; /* (n_prompt + max_tokens) prompt, then generated ids */
    int n_prompt, n_gen, n_computed;
    int max_tokens, min_tokens;
    bool ignore_eos;
    sampler_params_t sp;
    sampler_rng_t rng;
    char *stop[ENGINE_MAX_STOP];
    size_t stop_len[ENGINE_MAX_STOP];
    int n_stop;
    char *text; /* (text_cap + 1) decoded completion */
    size_t text_len, text_cap;
    tokenizer_stream_t ds;
    kvcache_seq_t kv;
    int choice;            /* index of this choice (engine_request_t.n) */
    int cached;            /* prompt tokens not computed for it: prefix cache hit or fork */
    sreq_t *kids;          /* parked choices 1..n-1 (choice 0 only, until its prompt is computed) */
    sreq_t *kid_next;      /* next parked sibling */
    sreq_t *parent;        /* while RS_PARKED */
    constrain_t cons; /* grammar, logit_bias, logprobs (constrain.h) */

    /* this step */
    int chunk;
    int logit_row; /* index into logits, -1 when not sampling */

    engine_finish_t finish;
    engine_status_t error_code;
    char error[256];
    double t_submit, t_sched, t_first, t_done; /* ms, monotonic; 0 = not yet */
};

typedef struct {
    sreq_t *head, *tail;
    int n;
} rlist_t;

struct scheduler {
    scheduler_config_t cfg;
    int cap_seqs, cap_tokens; /* the sizes at scheduler_new: buffers are sized for them */
    scheduler_model_t m;
    kvcache_t *kv;
    sampler_t *sampler;
    int max_blocks; /* block table row stride: blocks for n_ctx tokens */
    int32_t *eog_ids;
    int n_eog;

    /* batch arrays, sized once */
    int32_t *b_tokens, *b_pos, *b_seq, *b_logit_rows; /* (max_batch_tokens) */
    int32_t *b_seq_len;                               /* (max_seqs) */
    int32_t *b_block_table;                           /* (max_seqs, max_blocks) */
    float *logits;                                    /* (max_seqs, n_vocab) */
    int32_t *ids;                                     /* (max_seqs) chosen ids (forward_argmax) */
    float *itemp;                                     /* (max_seqs) 1 / temperature per logits row, 0 = greedy */
    uint64_t *keys;                                   /* (max_seqs) Gumbel keys per logits row */
    sreq_t **b_reqs;                                  /* (max_seqs) */
    char *piece;                                      /* (max_piece_bytes + 64) */
    /* constrained rows (m.grammar): masks computed on llguidance's threads during the
     * forward pass; raw: the row before mask/bias/penalties, for logprobs */
    uint32_t *masks;                                  /* (max_seqs, grammar_mask_words) */
    grammar_seq_t **g_seqs;                           /* (max_seqs) */
    uint32_t **g_rows;                                /* (max_seqs) */
    float *raw;                                       /* (n_vocab) */

    /* engine thread */
    rlist_t waiting, running;
    int64_t projected;  /* blocks the running requests would hold at max_tokens */
    double admit_limit; /* overcommit x kv blocks */
    uint64_t steps, preemptions, prompt_total, gen_total, argmax_steps;
    uint64_t prefix_queries, prefix_hits; /* prompt tokens looked up / found in the prefix cache */
    int n_parked;                         /* choices waiting for their parent's prompt */
    engine_stats_t dev; /* device counters (device_stats) */
    int last_seqs, last_tokens;
    double last_ms;

    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sreq_t *in_head, *in_tail;
    int n_incoming;
    sreq_t *done_head, *done_tail;
    sreq_t *live_head;
    sreq_t *abort_top;
    uint64_t req_counter;
    engine_stats_t snap; /* published at the end of each step */
};

/* ---------------------------------------------------------------- lists */

static void rl_push_back(rlist_t *l, sreq_t *r) {
    r->next = NULL;
    r->prev = l->tail;
    if (l->tail) l->tail->next = r;
    else l->head = r;
    l->tail = r;
    l->n++;
}

static void rl_push_front(rlist_t *l, sreq_t *r) {
    r->prev = NULL;
    r->next = l->head;
    if (l->head) l->head->prev = r;
    else l->tail = r;
    l->head = r;
    l->n++;
}

static void rl_remove(rlist_t *l, sreq_t *r) {
    if (r->prev) r->prev->next = r->next;
    else l->head = r->next;
    if (r->next) r->next->prev = r->prev;
    else l->tail = r->prev;
    r->prev = r->next = NULL;
    l->n--;
}

/* ---------------------------------------------------------------- requests */

static void sreq_free(scheduler_t *s, sreq_t *r) {
    if (!r) return;
    for (sreq_t *k = r->kids, *nx; k; k = nx) {
        nx = k->kid_next;
        sreq_free(s, k);
    }
    kvcache_seq_destroy(s ? s->kv : NULL, &r->kv);
    constrain_free(&r->cons);
    free(r->tokens);
    free(r->text);
    for (int i = 0; i < ENGINE_MAX_STOP; i++) free(r->stop[i]);
    free(r);
}

/* engine_submit checked the request once at the engine API's entry (engine_request.c);
 * here the same conditions are invariants the scheduler relies on (prompt ids index
 * the embedding, buffers are sized from n_prompt + max_tokens), not a second error path. */
static void assert_request(const scheduler_t *s, const engine_request_t *q) {
    CHECK(q->prompt != NULL && q->n_prompt >= 1);
    for (int i = 0; i < q->n_prompt; i++) CHECK(q->prompt[i] >= 0 && q->prompt[i] < s->m.n_vocab);
    CHECK(q->max_tokens >= 1 && q->min_tokens >= 0 && q->min_tokens <= q->max_tokens);
    CHECK(isfinite(q->temperature) && q->temperature >= 0.0f && q->temperature <= 2.0f);
    CHECK(isfinite(q->top_p) && q->top_p > 0.0f && q->top_p <= 1.0f);
    CHECK(q->top_k >= 0 && isfinite(q->min_p) && q->min_p >= 0.0f && q->min_p <= 1.0f);
    CHECK(fabsf(q->presence_penalty) <= 2.0f && fabsf(q->frequency_penalty) <= 2.0f);
    CHECK(q->n_stop >= 0 && q->n_stop <= ENGINE_MAX_STOP);
    for (int i = 0; i < q->n_stop; i++) CHECK(q->stop[i] != NULL && q->stop[i][0] != 0);
    int64_t need = (int64_t)q->n_prompt + q->max_tokens;
    CHECK(need <= s->cfg.n_ctx);
    /* the last sampled token is never fed back, so the cache holds need - 1 at most */
    CHECK(kvcache_blocks_for(s->kv, need - 1) <= kvcache_n_blocks(s->kv));
}

/* One sequence of request q: choice `choice` of its q->n. Every per-sequence field is
 * set here, for choice 0 and the forked choices alike. NULL with *st and err set when
 * out of memory or when its constraint state cannot start. The RNG is seeded by the
 * caller (under the mutex). */
static sreq_t *sreq_new(scheduler_t *s, const engine_request_t *q, int choice, int *st, char *err, size_t errlen) {
    *st = ENGINE_ERR_INTERNAL;
    sreq_t *r = calloc(1, sizeof(*r));
    if (!r) goto oom;
    r->id = q->id;
    r->choice = choice;
    r->n_prompt = q->n_prompt;
    r->max_tokens = q->max_tokens;
    r->min_tokens = q->min_tokens;
    r->ignore_eos = q->ignore_eos;
    r->sp = (sampler_params_t){.temperature = q->temperature, .top_k = q->top_k, .top_p = q->top_p,
                               .min_p = q->min_p, .presence_penalty = q->presence_penalty,
                               .frequency_penalty = q->frequency_penalty};
    r->tokens = malloc((size_t)(q->n_prompt + q->max_tokens) * sizeof(int32_t));
    if (!r->tokens) goto oom;
    memcpy(r->tokens, q->prompt, (size_t)q->n_prompt * sizeof(int32_t));
    /* every byte of the text comes from one token's piece, plus at most a few
     * replacement characters from the final flush */
    r->text_cap = (size_t)q->max_tokens * (size_t)s->m.max_piece_bytes + 32;
    r->text = malloc(r->text_cap + 1);
    if (!r->text) goto oom;
    r->text[0] = '\0';
    for (int i = 0; i < q->n_stop; i++) {
        r->stop_len[i] = strlen(q->stop[i]);
        r->stop[i] = strdup(q->stop[i]);
        if (!r->stop[i]) goto oom;
    }
    r->n_stop = q->n_stop;
    if (kvcache_seq_init(s->kv, &r->kv, q->n_prompt + q->max_tokens) != 0) goto oom;
    /* the one place a sequence's constraint state starts: every sequence (every choice)
     * gets its own grammar state, bias and logprob buffers */
    int crc = constrain_init(&r->cons, s->m.grammar, q, err, errlen);
    if (crc != ENGINE_OK) {
        sreq_free(s, r);
        *st = crc;
        return NULL;
    }
    s->m.detok_init(s->m.ctx, &r->ds);
    r->logit_row = -1;
    r->t_submit = clock_now_ms();
    *st = ENGINE_OK;
    return r;
oom:
    sreq_free(s, r);
    err_set(err, errlen, "out of memory while queuing a request of %d + %d tokens (n = %d)", q->n_prompt,
            q->max_tokens, q->n);
    return NULL;
}

int scheduler_submit(scheduler_t *s, const engine_request_t *q, char *err, size_t errlen) {
    assert_request(s, q);
    const int n = q->n > 1 ? q->n : 1;
    CHECK(n <= ENGINE_MAX_CHOICES);

    /* choice 0 runs the prompt; the others wait parked on it and fork from its blocks */
    int st;
    sreq_t *r = sreq_new(s, q, 0, &st, err, errlen);
    if (!r) return st;
    for (int i = n - 1; i >= 1; i--) {
        sreq_t *k = sreq_new(s, q, i, &st, err, errlen);
        if (!k) {
            sreq_free(s, r);
            return st;
        }
        k->state = RS_PARKED;
        k->parent = r;
        k->kid_next = r->kids;
        r->kids = k;
    }

    pthread_mutex_lock(&s->mu);
    if (s->cfg.max_queue > 0 && s->n_incoming + s->snap.waiting >= s->cfg.max_queue) {
        pthread_mutex_unlock(&s->mu);
        err_set(err, errlen, "the engine queue is full (%d waiting): retry later", s->cfg.max_queue);
        sreq_free(s, r);
        return ENGINE_ERR_BUSY;
    }
    /* seeded under the mutex: the engine thread takes the request under it too */
    uint64_t counter = s->req_counter++;
    const uint64_t seed = q->has_seed ? q->seed : sampler_seed_mix(s->cfg.seed, counter);
    sampler_rng_seed(&r->rng, seed);
    r->state = RS_INCOMING;
    if (s->in_tail) s->in_tail->q_next = r;
    else s->in_head = r;
    s->in_tail = r;
    s->n_incoming += n;
    for (sreq_t *x = r; x; x = x == r ? r->kids : x->kid_next) {
        if (x != r) sampler_rng_seed(&x->rng, engine_choice_seed(seed, x->choice));
        x->live_next = s->live_head;
        if (s->live_head) s->live_head->live_prev = x;
        s->live_head = x;
    }
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return ENGINE_OK;
}

/* ---------------------------------------------------------------- lifetime */

scheduler_t *scheduler_new(const scheduler_config_t *cfg, const scheduler_model_t *m, char *err,
                           size_t errlen) {
    if (cfg->max_seqs < 1 || cfg->max_batch_tokens < 1 || cfg->n_ctx < 2 || cfg->kv_blocks < 1 ||
        cfg->kv_block_size < 1 || cfg->max_queue < 0) {
        err_set(err, errlen,
                 "scheduler: bad sizes (max_seqs=%d max_batch_tokens=%d context=%d kv_blocks=%lld "
                 "kv_block_size=%d max_queue=%d): all must be positive",
                 cfg->max_seqs, cfg->max_batch_tokens, cfg->n_ctx, (long long)cfg->kv_blocks,
                 cfg->kv_block_size, cfg->max_queue);
        return NULL;
    }
    if (!m->forward || !m->is_eog || !m->detok_init || !m->detok_push || !m->detok_flush || m->n_vocab < 1 ||
        m->max_piece_bytes < 1) {
        err_set(err, errlen, "scheduler: incomplete model interface");
        return NULL;
    }
    scheduler_t *s = calloc(1, sizeof(*s));
    if (!s) goto oom;
    s->cfg = *cfg;
    s->cap_seqs = cfg->max_seqs;
    s->cap_tokens = cfg->max_batch_tokens;
    s->m = *m;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->kv = kvcache_new(cfg->kv_blocks, cfg->kv_block_size);
    s->sampler = sampler_new(m->n_vocab);
    if (s->sampler) sampler_set_gumbel(s->sampler, m->gumbel);
    if (!s->kv || !s->sampler) goto oom;
    if (cfg->prefix_cache && kvcache_prefix_enable(s->kv, cfg->prefix_salt) != 0) goto oom;
    s->max_blocks = (int)((cfg->n_ctx + cfg->kv_block_size - 1) / cfg->kv_block_size);
    size_t bt = (size_t)cfg->max_batch_tokens, bs = (size_t)cfg->max_seqs;
    s->b_tokens = malloc(bt * sizeof(int32_t));
    s->b_pos = malloc(bt * sizeof(int32_t));
    s->b_seq = malloc(bt * sizeof(int32_t));
    s->b_logit_rows = malloc(bt * sizeof(int32_t));
    s->b_seq_len = malloc(bs * sizeof(int32_t));
    s->b_block_table = malloc(bs * (size_t)s->max_blocks * sizeof(int32_t));
    s->logits = malloc(bs * (size_t)m->n_vocab * sizeof(float));
    s->ids = malloc(bs * sizeof(int32_t));
    s->itemp = malloc(bs * sizeof(float));
    s->keys = malloc(bs * sizeof(uint64_t));
    s->b_reqs = malloc(bs * sizeof(sreq_t *));
    s->piece = malloc((size_t)m->max_piece_bytes + 64);
    s->raw = malloc((size_t)m->n_vocab * sizeof(float));
    if (m->grammar) {
        s->masks = malloc(bs * (size_t)grammar_mask_words(m->grammar) * sizeof(uint32_t));
        s->g_seqs = malloc(bs * sizeof(grammar_seq_t *));
        s->g_rows = malloc(bs * sizeof(uint32_t *));
        if (!s->masks || !s->g_seqs || !s->g_rows) goto oom;
    }
    if (!s->raw || !s->b_tokens || !s->b_pos || !s->b_seq || !s->b_logit_rows || !s->b_seq_len ||
        !s->b_block_table || !s->logits || !s->ids || !s->itemp || !s->keys || !s->b_reqs || !s->piece)
        goto oom;
    for (size_t i = 0; i < bs * (size_t)s->max_blocks; i++) s->b_block_table[i] = -1;
    /* end-of-generation ids, for masking them before min_tokens */
    for (int pass = 0; pass < 2; pass++) {
        int n = 0;
        for (int32_t id = 0; id < m->n_vocab; id++)
            if (m->is_eog(m->ctx, id)) {
                if (pass) s->eog_ids[n] = id;
                n++;
            }
        if (!pass) {
            s->eog_ids = malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
            if (!s->eog_ids) goto oom;
        }
        s->n_eog = n;
    }
    s->snap.kv_blocks_total = cfg->kv_blocks;
    s->admit_limit = (cfg->overcommit > 0 ? cfg->overcommit : 1.0) * (double)cfg->kv_blocks;
    return s;
oom:
    scheduler_free(s);
    err_set(err, errlen, "scheduler: out of memory (max_seqs=%d, max_batch_tokens=%d, vocab=%d)",
             cfg->max_seqs, cfg->max_batch_tokens, m->n_vocab);
    return NULL;
}

void scheduler_free(scheduler_t *s) {
    if (!s) return;
    sreq_t *r, *nx;
    for (r = s->in_head; r; r = nx) { nx = r->q_next; sreq_free(s, r); }
    for (r = s->done_head; r; r = nx) { nx = r->q_next; sreq_free(s, r); }
    for (r = s->waiting.head; r; r = nx) { nx = r->next; sreq_free(s, r); }
    for (r = s->running.head; r; r = nx) { nx = r->next; sreq_free(s, r); }
    kvcache_free(s->kv);
    sampler_free(s->sampler);
    free(s->eog_ids);
    free(s->b_tokens);
    free(s->b_pos);
    free(s->b_seq);
    free(s->b_logit_rows);
    free(s->b_seq_len);
    free(s->b_block_table);
    free(s->logits);
    free(s->ids);
    free(s->itemp);
    free(s->keys);
    free(s->b_reqs);
    free(s->piece);
    free(s->raw);
    free(s->masks);
    free(s->g_seqs);
    free(s->g_rows);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

int64_t scheduler_kv_blocks(const scheduler_t *s) { return kvcache_n_blocks(s->kv); }

void scheduler_set_limits(scheduler_t *s, int max_seqs, int max_batch_tokens) {
    if (max_seqs > 0) s->cfg.max_seqs = max_seqs < s->cap_seqs ? max_seqs : s->cap_seqs;
    if (max_batch_tokens > 0) s->cfg.max_batch_tokens = max_batch_tokens < s->cap_tokens ? max_batch_tokens : s->cap_tokens;
}

/* ---------------------------------------------------------------- step */

static inline int n_known(const sreq_t *r) { return r->n_prompt + r->n_gen; }

/* Blocks r holds once it has generated max_tokens (the last token is never fed). */
static int64_t final_blocks(const scheduler_t *s, const sreq_t *r) {
    return kvcache_blocks_for(s->kv, (int64_t)r->n_prompt + r->max_tokens - 1);
}

static void running_remove(scheduler_t *s, sreq_t *r) {
    rl_remove(&s->running, r);
    s->projected -= final_blocks(s, r);
}

/* Moves r's parked choices to the front of the waiting list, in choice order. With
 * share, r has just computed its prompt: each takes a reference on r's full blocks
 * before the one holding the last prompt token (that token's row is recomputed by
 * each choice, so its first sample has its own logits; shared blocks stay full and
 * are never written again). */
static void fork_kids(scheduler_t *s, sreq_t *r, bool share) {
    int nb = share ? (r->n_prompt - 1) / kvcache_block_size(s->kv) : 0;
    if (nb > r->kv.n_blocks) nb = r->kv.n_blocks;
    sreq_t *kids = NULL;
    for (sreq_t *k = r->kids, *nx; k; k = nx) { /* reverse, so that pushing to the front keeps the order */
        nx = k->kid_next;
        k->kid_next = kids;
        kids = k;
    }
    r->kids = NULL;
    for (sreq_t *k = kids, *nx; k; k = nx) {
        nx = k->kid_next;
        k->kid_next = NULL;
        k->parent = NULL;
        if (nb > 0) {
            kvcache_seq_share(s->kv, &k->kv, &r->kv, nb);
            k->n_computed = k->cached = nb * kvcache_block_size(s->kv);
        }
        k->state = RS_WAITING;
        rl_push_front(&s->waiting, k);
        s->n_parked--;
    }
}

/* Engine thread: r is out of every list; its result is complete but for the text flush. */
static void finish_req(scheduler_t *s, sreq_t *r, engine_finish_t f, engine_status_t code,
                       const char *msg, bool flush, sreq_t **fin) {
    if (flush) {
        int n = s->m.detok_flush(s->m.ctx, &r->ds, s->piece, (size_t)s->m.max_piece_bytes + 64);
        if (n > 0) {
            CHECK(r->text_len + (size_t)n <= r->text_cap);
            memcpy(r->text + r->text_len, s->piece, (size_t)n);
            r->text_len += (size_t)n;
        }
    }
    r->text[r->text_len] = '\0';
    kvcache_seq_release(s->kv, &r->kv);
    fork_kids(s, r, false); /* finished before its prompt was computed: they prefill alone */
    r->finish = f;
    r->error_code = code;
    if (msg) snprintf(r->error, sizeof(r->error), "%s", msg);
    r->t_done = clock_now_ms();
    r->state = RS_DONE;
    r->q_next = *fin;
    *fin = r;
}

static void preempt(scheduler_t *s, sreq_t *r) {
    running_remove(s, r);
    kvcache_seq_release(s->kv, &r->kv);
    r->n_computed = 0; /* recomputed from prompt + generated tokens when readmitted */
    r->state = RS_WAITING;
    rl_push_front(&s->waiting, r);
    s->preemptions++;
}

/* Appends tokens[n_computed, n_computed + chunk) of r as sequence ns of the batch. */
static void batch_add(scheduler_t *s, sreq_t *r, int chunk, int *nt, int *ns, int *nl) {
    int si = *ns, t = *nt;
    for (int j = 0; j < chunk; j++, t++) {
        s->b_tokens[t] = r->tokens[r->n_computed + j];
        s->b_pos[t] = r->n_computed + j;
        s->b_seq[t] = si;
    }
    s->b_seq_len[si] = r->n_computed + chunk;
    int32_t *row = s->b_block_table + (size_t)si * (size_t)s->max_blocks;
    memcpy(row, r->kv.blocks, (size_t)r->kv.n_blocks * sizeof(int32_t));
    if (r->kv.n_blocks < s->max_blocks) row[r->kv.n_blocks] = -1;
    r->chunk = chunk;
    r->logit_row = -1;
    if (r->n_computed + chunk == n_known(r)) {
        s->b_logit_rows[*nl] = t - 1;
        r->logit_row = (*nl)++;
    }
    s->b_reqs[si] = r;
    *nt = t;
    *ns = si + 1;
}

/* Prefix cache: true when a sequence already in this step's batch completes r's block i
 * under the same key (the same prefix). r then waits a step and finds the block cached
 * instead of computing it a second time (requests sharing a prompt that arrive
 * together would otherwise all prefill it in the first step). */
static bool computing_same_block(scheduler_t *s, sreq_t *r, int i, int ns) {
    const int end = (i + 1) * kvcache_block_size(s->kv);
    if (!kvcache_prefix_enabled(s->kv) || end > n_known(r) - 1) return false; /* r would compute it anyway */
    const prefix_key_t *k = kvcache_seq_key(s->kv, &r->kv, r->tokens, i);
    for (int j = 0; j < ns; j++) {
        sreq_t *x = s->b_reqs[j];
        if (x->n_computed >= end || x->n_computed + x->chunk < end) continue;
        if (memcmp(kvcache_seq_key(s->kv, &x->kv, x->tokens, i)->b, k->b, PREFIX_KEY_BYTES) == 0) return true;
    }
    return false;
}

/* True when r's next token is a function of its raw logits that forward_argmax can
 * take on the device: greedy (the argmax) or, with m.gumbel, temperature alone (the
 * Gumbel-max draw, sampler_is_gumbel), with no penalties and no end-of-generation masking (min_tokens)
 * this step. sampler_sample picks the same token from the downloaded logits. */
static bool by_id_masked(const scheduler_t *s, const sreq_t *r) {
    return (!(r->sp.temperature > 0.0f) || (s->m.gumbel && sampler_is_gumbel(&r->sp))) &&
           r->sp.presence_penalty == 0.0f &&
           r->sp.frequency_penalty == 0.0f && (r->ignore_eos || r->n_gen >= r->min_tokens || s->n_eog == 0) &&
           !r->cons.logprobs && r->cons.n_bias == 0;
}
/* ... and without a grammar: forward_argmax (a grammar's mask: forward_argmax_masked) */
static bool by_id(const scheduler_t *s, const sreq_t *r) { return by_id_masked(s, r) && !r->cons.gq; }

/* forward_argmax_masked's ready callback: the step's masks (grammar_masks_start) */
static void masks_ready(void *ctx) { grammar_masks_wait(((scheduler_t *)ctx)->m.grammar); }

/* The grammar mask row of r this step (NULL when r is unconstrained). */
static const uint32_t *mask_of(const scheduler_t *s, const sreq_t *r) {
    return r->cons.gq ? s->masks + (size_t)r->logit_row * (size_t)grammar_mask_words(s->m.grammar) : NULL;
}

/* Does the row allow a token that does not end the generation? (min_tokens with a
 * grammar: the grammar wins when its language leaves nothing but the end) */
static bool allows_non_eog(const scheduler_t *s, const float *lg) {
    for (int32_t i = 0; i < s->m.n_vocab; i++)
        if (lg[i] > -INFINITY && !s->m.is_eog(s->m.ctx, i)) return true;
    return false;
}

static bool accept_token(scheduler_t *s, sreq_t *r, int32_t tok, sreq_t **fin);
static bool take_token(scheduler_t *s, sreq_t *r, int32_t tok, sreq_t **fin);

/* Samples r's next token from its logits row; returns true when r finished (and
 * was handed to finish_req). */
static bool sample_one(scheduler_t *s, sreq_t *r, float *lg, sreq_t **fin) {
    const bool cons = constrain_active(&r->cons);
    if (cons) constrain_before(&r->cons, lg, s->m.n_vocab, mask_of(s, r), s->raw);
    if (!r->ignore_eos && r->n_gen < r->min_tokens && (!r->cons.gq || allows_non_eog(s, lg)))
        for (int i = 0; i < s->n_eog; i++) lg[s->eog_ids[i]] = -INFINITY;
    int32_t tok = sampler_sample(s->sampler, &r->sp, lg, r->tokens + r->n_prompt, r->n_gen, &r->rng);
    return cons ? take_token(s, r, tok, fin) : accept_token(s, r, tok, fin);
}

/* accept_token for a row with constraints: records its logprobs (from s->raw) and
 * advances its grammar first. True when r finished. */
static bool take_token(scheduler_t *s, sreq_t *r, int32_t tok, sreq_t **fin) {
    char msg[256];
    int g = constrain_after(&r->cons, s->sampler, s->raw, r->n_gen, tok, msg, sizeof(msg));
    if (g < 0) {
        running_remove(s, r);
        finish_req(s, r, ENGINE_FINISH_ERROR, ENGINE_ERR_INTERNAL, msg, true, fin);
        return true;
    }
    if (accept_token(s, r, tok, fin)) return true;
    if (g == 1) { /* the grammar's language ends here: nothing may follow */
        running_remove(s, r);
        finish_req(s, r, ENGINE_FINISH_STOP, ENGINE_OK, NULL, true, fin);
        return true;
    }
    return false;
}

/* Appends the sampled tok to r: text, stop strings, limits. True when r finished. */
static bool accept_token(scheduler_t *s, sreq_t *r, int32_t tok, sreq_t **fin) {
    r->tokens[r->n_prompt + r->n_gen++] = tok;
    s->gen_total++;
    if (r->t_first == 0.0) r->t_first = clock_now_ms();

    if (!r->ignore_eos && s->m.is_eog(s->m.ctx, tok)) {
        running_remove(s, r);
        finish_req(s, r, ENGINE_FINISH_STOP, ENGINE_OK, NULL, true, fin);
        return true;
    }
    int n = s->m.detok_push(s->m.ctx, &r->ds, tok, s->piece, (size_t)s->m.max_piece_bytes + 64);
    CHECK(n >= 0);
    CHECK(r->text_len + (size_t)n <= r->text_cap);
    size_t old = r->text_len;
    memcpy(r->text + old, s->piece, (size_t)n);
    r->text_len += (size_t)n;
    if (r->n_stop > 0 && n > 0 && r->n_gen >= r->min_tokens) {
        long at = sampler_stop_find(r->text, r->text_len, old, (const char *const *)r->stop,
                                    r->stop_len, r->n_stop);
        if (at >= 0) {
            r->text_len = (size_t)at; /* the stop string and what follows are dropped */
            running_remove(s, r);
            finish_req(s, r, ENGINE_FINISH_STOP, ENGINE_OK, NULL, false, fin);
            return true;
        }
    }
    if (r->n_gen >= r->max_tokens) {
        running_remove(s, r);
        finish_req(s, r, ENGINE_FINISH_LENGTH, ENGINE_OK, NULL, true, fin);
        return true;
    }
    return false;
}

/* Takes a parked choice out of its parent's list (abort). */
static void unpark(scheduler_t *s, sreq_t *k) {
    for (sreq_t **pp = &k->parent->kids; *pp; pp = &(*pp)->kid_next)
        if (*pp == k) {
            *pp = k->kid_next;
            break;
        }
    k->kid_next = NULL;
    k->parent = NULL;
    s->n_parked--;
}

static void unlink_abort(scheduler_t *s, sreq_t *r) {
    for (sreq_t **pp = &s->abort_top; *pp; pp = &(*pp)->abort_next)
        if (*pp == r) {
            *pp = r->abort_next;
            return;
        }
}

/* Under the mutex: hands the finished requests to poll() and refreshes the stats. */
static void publish(scheduler_t *s, sreq_t *fin) {
    pthread_mutex_lock(&s->mu);
    while (fin) {
        sreq_t *r = fin;
        fin = r->q_next;
        if (r->live_prev) r->live_prev->live_next = r->live_next;
        else s->live_head = r->live_next;
        if (r->live_next) r->live_next->live_prev = r->live_prev;
        r->live_prev = r->live_next = NULL;
        if (r->abort_requested) unlink_abort(s, r);
        r->q_next = NULL;
        if (s->done_tail) s->done_tail->q_next = r;
        else s->done_head = r;
        s->done_tail = r;
    }
    engine_stats_t *st = &s->snap;
    st->running = s->running.n;
    st->waiting = s->waiting.n + s->n_parked;
    st->kv_blocks_used = kvcache_n_used(s->kv);
    st->kv_blocks_total = kvcache_n_blocks(s->kv);
    st->steps = s->steps;
    st->preemptions = s->preemptions;
    st->prompt_tokens_total = s->prompt_total;
    st->generated_tokens_total = s->gen_total;
    st->last_step_seqs = s->last_seqs;
    st->last_step_tokens = s->last_tokens;
    st->last_step_ms = s->last_ms;
    st->gpu_busy_ms = s->dev.gpu_busy_ms;
    st->gpu_idle_ms = s->dev.gpu_idle_ms;
    st->graph_captures = s->dev.graph_captures;
    st->graph_replays = s->dev.graph_replays;
    st->argmax_steps = s->argmax_steps;
    st->prefix_queries_tokens = s->prefix_queries;
    st->prefix_hit_tokens = s->prefix_hits;
    st->prefix_cached_blocks = kvcache_n_cached(s->kv);
    pthread_mutex_unlock(&s->mu);
}

int scheduler_step(scheduler_t *s) {
    double t0 = clock_now_ms();
    sreq_t *fin = NULL;

    /* 1. take new requests and aborts */
    pthread_mutex_lock(&s->mu);
    for (sreq_t *r = s->in_head, *nx; r; r = nx) {
        nx = r->q_next;
        r->q_next = NULL;
        r->state = RS_WAITING;
        rl_push_back(&s->waiting, r);
        for (sreq_t *k = r->kids; k; k = k->kid_next) s->n_parked++;
    }
    s->in_head = s->in_tail = NULL;
    s->n_incoming = 0;
    /* taken aborts keep abort_requested set, so no other thread touches their
     * abort_next again; each one finishes in this step */
    sreq_t *aborts = s->abort_top;
    s->abort_top = NULL;
    pthread_mutex_unlock(&s->mu);
    for (sreq_t *r = aborts, *nx; r; r = nx) {
        nx = r->abort_next;
        if (r->state == RS_WAITING) rl_remove(&s->waiting, r);
        else if (r->state == RS_RUNNING) running_remove(s, r);
        else if (r->state == RS_PARKED) unpark(s, r);
        else continue;
        finish_req(s, r, ENGINE_FINISH_ABORTED, ENGINE_OK, "aborted", true, &fin);
    }

    /* 2. running sequences first, oldest first: decodes and unfinished prefills */
    const int B = s->cfg.max_batch_tokens, S = s->cfg.max_seqs;
    int nt = 0, ns = 0, nl = 0;
    bool preempted = false;
    for (sreq_t *r = s->running.head; r; r = r->next) {
        if (ns == s->cap_seqs || nt == B) break; /* admitted sequences keep going when S was lowered */
        int chunk = n_known(r) - r->n_computed;
        if (chunk > B - nt) chunk = B - nt;
        bool self = false;
        while (kvcache_seq_reserve(s->kv, &r->kv, r->n_computed + chunk) != 0) {
            sreq_t *victim = s->running.tail;
            preempted = true;
            if (victim == r) self = true;
            preempt(s, victim);
            if (self) break;
        }
        if (self) break;
        batch_add(s, r, chunk, &nt, &ns, &nl);
    }

    /* 3. admit waiting requests in arrival order. The whole known sequence's blocks are
     * taken at admission, keeping a small watermark free for the running decodes. */
    if (!preempted) {
        int64_t wm = s->running.n > 0 ? (kvcache_n_blocks(s->kv) + 99) / 100 : 0;
        sreq_t *r;
        while ((r = s->waiting.head) && ns < S && nt < B) {
            /* the prefix cache: the longest chain of cached full blocks before the last
             * known token (whose logits are needed) is taken instead of computed; cached
             * blocks nobody holds leave the free count when taken */
            int hit = 0, revive = 0;
            if (r->kv.n_blocks == 0) hit = kvcache_seq_lookup(s->kv, &r->kv, r->tokens, n_known(r) - 1, &revive);
            if (r->kv.n_blocks == 0 && computing_same_block(s, r, hit, ns)) break;
            if (kvcache_seq_missing(s->kv, &r->kv, n_known(r)) - hit + revive > kvcache_n_free(s->kv) - wm) break;
            if (s->running.n > 0 && (double)(s->projected + final_blocks(s, r)) > s->admit_limit) break;
            if (kvcache_prefix_enabled(s->kv) && r->kv.n_blocks == 0 && r->t_sched == 0.0) {
                s->prefix_queries += (uint64_t)r->n_prompt;
                s->prefix_hits += (uint64_t)hit * (uint64_t)kvcache_block_size(s->kv);
                r->cached = hit * kvcache_block_size(s->kv);
            }
            if (hit > 0) {
                kvcache_seq_attach(s->kv, &r->kv, hit);
                r->n_computed = hit * kvcache_block_size(s->kv);
            }
            CHECK(kvcache_seq_reserve(s->kv, &r->kv, n_known(r)) == 0);
            rl_remove(&s->waiting, r);
            r->state = RS_RUNNING;
            rl_push_back(&s->running, r);
            s->projected += final_blocks(s, r);
            if (r->t_sched == 0.0) {
                r->t_sched = clock_now_ms();
                s->prompt_total += (uint64_t)r->n_prompt;
            }
            int chunk = n_known(r) - r->n_computed;
            if (chunk > B - nt) chunk = B - nt;
            batch_add(s, r, chunk, &nt, &ns, &nl);
            wm = (kvcache_n_blocks(s->kv) + 99) / 100;
        }
    }

    if (ns > 0) {
        model_batch_t b = {.n_tokens = nt, .tokens = s->b_tokens, .pos = s->b_pos, .seq = s->b_seq,
                           .n_seqs = ns, .seq_len = s->b_seq_len, .block_table = s->b_block_table,
                           .max_blocks = s->max_blocks, .n_logits = nl,
                           .logit_rows = s->b_logit_rows};
        /* steps whose rows are all greedy or temperature-only take ids, not logits,
         * from the device; a temperature row's key is its one RNG draw for the token */
        bool by_ids = s->m.forward_argmax != NULL && nl > 0, any_t = false, masked = false;
        for (int i = 0; i < ns && by_ids; i++)
            if (s->b_reqs[i]->logit_row >= 0 && !by_id(s, s->b_reqs[i])) by_ids = false;
        /* constrained rows taking ids too: their masks go into the argmax (on a GPU, inside
         * the kernel); every other sampled row then gets an all-ones mask */
        if (!by_ids && nl > 0 && s->m.forward_argmax_masked && s->m.grammar) {
            masked = true;
            for (int i = 0; i < ns && masked; i++)
                if (s->b_reqs[i]->logit_row >= 0 && !by_id_masked(s, s->b_reqs[i])) masked = false;
            by_ids = masked;
        }
        for (int i = 0; i < ns && by_ids; i++) {
            sreq_t *r = s->b_reqs[i];
            if (r->logit_row < 0) continue;
            const bool t = r->sp.temperature > 0.0f;
            s->itemp[r->logit_row] = t ? 1.0f / r->sp.temperature : 0.0f;
            s->keys[r->logit_row] = t ? sampler_rng_next(&r->rng) : 0;
            any_t |= t;
        }
        /* constrained rows: their masks are computed on llguidance's threads while the
         * forward pass runs (a step without constrained rows starts nothing) */
        int ng = 0;
        for (int i = 0; i < ns && s->m.grammar; i++) {
            sreq_t *r = s->b_reqs[i];
            if (r->logit_row < 0 || !r->cons.gq) continue;
            s->g_seqs[ng] = r->cons.gq;
            s->g_rows[ng++] = (uint32_t *)mask_of(s, r);
        }
        if (ng > 0) grammar_masks_start(s->m.grammar, s->g_seqs, s->g_rows, ng);
        const int words = s->m.grammar ? grammar_mask_words(s->m.grammar) : 0;
        for (int i = 0; i < ns && masked; i++) {
            const sreq_t *r = s->b_reqs[i];
            if (r->logit_row >= 0 && !r->cons.gq)
                memset(s->masks + (size_t)r->logit_row * (size_t)words, 0xFF, (size_t)words * sizeof(uint32_t));
        }
        int rc = masked   ? s->m.forward_argmax_masked(s->m.ctx, &b, s->ids, any_t ? s->itemp : NULL, s->keys, s->masks,
                                                       masks_ready, s)
                 : by_ids ? s->m.forward_argmax(s->m.ctx, &b, s->ids, any_t ? s->itemp : NULL, s->keys)
                          : s->m.forward(s->m.ctx, &b, s->logits);
        if (ng > 0) grammar_masks_wait(s->m.grammar);
        if (by_ids) s->argmax_steps++;
        for (int i = 0; i < ns; i++) {
            sreq_t *r = s->b_reqs[i];
            if (rc != 0) {
                running_remove(s, r);
                finish_req(s, r, ENGINE_FINISH_ERROR, ENGINE_ERR_INTERNAL,
                           "the model's forward pass failed on the backend (see the engine log)",
                           true, &fin);
                continue;
            }
            r->n_computed += r->chunk;
            kvcache_seq_publish(s->kv, &r->kv, r->tokens, r->n_computed);
            if (r->kids && r->n_computed >= r->n_prompt) fork_kids(s, r, true);
            if (r->logit_row >= 0 && by_ids && r->cons.gq) take_token(s, r, s->ids[r->logit_row], &fin);
            else if (r->logit_row >= 0 && by_ids) accept_token(s, r, s->ids[r->logit_row], &fin);
            else if (r->logit_row >= 0)
                sample_one(s, r, s->logits + (size_t)r->logit_row * (size_t)s->m.n_vocab, &fin);
        }
        s->steps++;
        s->last_seqs = ns;
        s->last_tokens = nt;
        s->last_ms = clock_now_ms() - t0;
        if (s->m.device_stats) s->m.device_stats(s->m.ctx, &s->dev);
    }
    publish(s, fin);
    return ns;
}

/* ---------------------------------------------------------------- other threads */

int scheduler_wait(scheduler_t *s, int timeout_ms) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (s->in_head || s->abort_top || s->waiting.n > 0 || s->running.n > 0) break;
        if (timeout_ms <= 0) break;
        if (pthread_cond_timedwait(&s->cv, &s->mu, &dl) == ETIMEDOUT) break;
    }
    int has = s->in_head || s->abort_top || s->waiting.n > 0 || s->running.n > 0;
    pthread_mutex_unlock(&s->mu);
    return has;
}

size_t scheduler_poll(scheduler_t *s, engine_result_t *out, size_t max) {
    size_t n = 0;
    sreq_t *got = NULL, **tail = &got;
    pthread_mutex_lock(&s->mu);
    while (n < max && s->done_head) {
        sreq_t *r = s->done_head;
        s->done_head = r->q_next;
        if (!s->done_head) s->done_tail = NULL;
        r->q_next = NULL;
        *tail = r;
        tail = &r->q_next;
        n++;
    }
    pthread_mutex_unlock(&s->mu);
    size_t i = 0;
    for (sreq_t *r = got, *nx; r; r = nx, i++) {
        nx = r->q_next;
        engine_result_t *o = &out[i];
        memset(o, 0, sizeof(*o));
        o->id = r->id;
        o->finish = r->finish;
        o->text = r->text;
        o->text_len = r->text_len;
        r->text = NULL; /* now owned by the result */
        memmove(r->tokens, r->tokens + r->n_prompt, (size_t)r->n_gen * sizeof(int32_t));
        o->tokens = r->tokens;
        r->tokens = NULL; /* now owned by the result */
        o->n_tokens = r->n_gen;
        o->prompt_tokens = r->n_prompt;
        o->completion_tokens = r->n_gen;
        o->error_code = r->error_code;
        snprintf(o->error, sizeof(o->error), "%s", r->error);
        o->queue_ms = (r->t_sched > 0.0 ? r->t_sched : r->t_done) - r->t_submit;
        o->ttft_ms = r->t_first > 0.0 ? r->t_first - r->t_submit : 0.0;
        o->total_ms = r->t_done - r->t_submit;
        o->index = r->choice;
        o->cached_tokens = r->cached;
        constrain_take(&r->cons, o);
        sreq_free(s, r);
    }
    return n;
}

int scheduler_abort(scheduler_t *s, uint64_t id) {
    int found = -1;
    pthread_mutex_lock(&s->mu);
    for (sreq_t *r = s->live_head; r; r = r->live_next)
        if (r->id == id) {
            found = 0;
            if (!r->abort_requested) {
                r->abort_requested = true;
                r->abort_next = s->abort_top;
                s->abort_top = r;
            }
        }
    if (found == 0) pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return found;
}

void scheduler_get_stats(scheduler_t *s, engine_stats_t *st) {
    pthread_mutex_lock(&s->mu);
    *st = s->snap;
    st->waiting += s->n_incoming;
    pthread_mutex_unlock(&s->mu);
}
