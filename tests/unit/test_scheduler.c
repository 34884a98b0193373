/* test_scheduler.c — scheduling logic only, with a small fake model injected through
 * scheduler_model_t (everything end-to-end with the real model is in test_engine.c).
 *
 * The fake keeps its own paged "KV cache": each batch token is written into the block
 * its block table names, and a row's logits are a hash of every token the cache holds
 * for that sequence at positions 0..pos. A wrong block table, a block shared by two
 * live sequences, a missing position or a stale block therefore changes the output,
 * which is compared with a reference computed directly from the token list (no
 * scheduler). The fake also checks the batch layout contract of model.h on every call
 * (budgets, contiguous sequences, consecutive positions, seq_len, logit rows). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "scheduler.h"
#include "sampler.h"

/* ---------------------------------------------------------------- fake model */

enum { FAKE_HASH = 0, FAKE_COUNT = 1 };

typedef struct {
    int mode;
    int n_vocab, block_size, max_seqs, max_batch_tokens;
    int64_t n_blocks;
    int32_t *kv_tok, *kv_pos; /* (n_blocks * block_size) */
    int32_t *owner;           /* (n_blocks) scratch: which batch sequence wrote a block */
    int eog;
    char pieces[256][16];
    int fail_call; /* forward call index that fails; -1 = none */
    int calls;
    int max_nt, max_ns;
    long fed_without_logits; /* prefill tokens fed in chunks */
} fake_t;

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static uint64_t hash_step(uint64_t h, int32_t tok) {
    return mix64(h ^ ((uint64_t)(uint32_t)tok * 0x9e3779b97f4a7c15ULL + 0x5851f42d4c957f2dULL));
}
static float logit_val(const fake_t *f, uint64_t h, int v) {
    uint64_t z = mix64(h + (uint64_t)(v + 1) * 0x632be59bd9b4e019ULL);
    float x = (float)((double)(z >> 40) / (double)(1u << 24) * 8.0 - 4.0);
    if (v == f->eog) x += 0.5f; /* EOS now and then (about 1 in 30 tokens) */
    return x;
}
static void fake_logits(const fake_t *f, const int32_t *toks, int n, float *out) {
    if (f->mode == FAKE_COUNT) {
        for (int v = 0; v < f->n_vocab; v++) out[v] = 0.0f;
        out[(toks[n - 1] + 1) % f->n_vocab] = 10.0f;
        return;
    }
    uint64_t h = 0x1234567;
    for (int i = 0; i < n; i++) h = hash_step(h, toks[i]);
    for (int v = 0; v < f->n_vocab; v++) out[v] = logit_val(f, h, v);
}

static int fake_forward(void *ctx, const model_batch_t *b, float *logits) {
    fake_t *f = ctx;
    int call = f->calls++;
    assert_true(b->n_tokens >= 1 && b->n_tokens <= f->max_batch_tokens);
    assert_true(b->n_seqs >= 1 && b->n_seqs <= f->max_seqs);
    assert_true(b->n_logits >= 0 && b->n_logits <= b->n_seqs);
    if (b->n_tokens > f->max_nt) f->max_nt = b->n_tokens;
    if (b->n_seqs > f->max_ns) f->max_ns = b->n_seqs;
    if (call == f->fail_call) return -1;
    for (int64_t i = 0; i < f->n_blocks; i++) f->owner[i] = -1;
    assert_int_equal(b->seq[0], 0);
    for (int t = 0; t < b->n_tokens; t++) {
        int s = b->seq[t], p = b->pos[t];
        assert_true(s >= 0 && s < b->n_seqs);
        if (t > 0) {
            if (s == b->seq[t - 1]) assert_int_equal(p, b->pos[t - 1] + 1);
            else assert_int_equal(s, b->seq[t - 1] + 1);
        }
        bool last = t + 1 == b->n_tokens || b->seq[t + 1] != s;
        if (last) assert_int_equal(b->seq_len[s], p + 1);
        assert_true(p >= 0 && p / f->block_size < b->max_blocks);
        int32_t blk = b->block_table[(size_t)s * (size_t)b->max_blocks + (size_t)(p / f->block_size)];
        assert_true(blk >= 0 && blk < f->n_blocks);
        if (f->owner[blk] < 0) f->owner[blk] = s;
        assert_int_equal(f->owner[blk], s); /* no block shared between sequences */
        size_t slot = (size_t)blk * (size_t)f->block_size + (size_t)(p % f->block_size);
        f->kv_tok[slot] = b->tokens[t];
        f->kv_pos[slot] = p;
    }
    assert_int_equal(b->seq[b->n_tokens - 1], b->n_seqs - 1);
    int32_t *toks = malloc(4096 * sizeof(int32_t));
    int rows_with_logits = 0;
    for (int i = 0; i < b->n_logits; i++) {
        int r = b->logit_rows[i];
        assert_true(r >= 0 && r < b->n_tokens);
        if (i > 0) assert_true(r > b->logit_rows[i - 1]);
        assert_true(r + 1 == b->n_tokens || b->seq[r + 1] != b->seq[r]); /* a sequence's last row */
        int s = b->seq[r], p = b->pos[r];
        assert_true(p < 4096);
        for (int q = 0; q <= p; q++) { /* read the sequence back from the paged cache */
            int32_t blk = b->block_table[(size_t)s * (size_t)b->max_blocks + (size_t)(q / f->block_size)];
            size_t slot = (size_t)blk * (size_t)f->block_size + (size_t)(q % f->block_size);
            assert_int_equal(f->kv_pos[slot], q);
            toks[q] = f->kv_tok[slot];
        }
        fake_logits(f, toks, p + 1, logits + (size_t)i * (size_t)f->n_vocab);
        rows_with_logits++;
    }
    f->fed_without_logits += b->n_tokens - rows_with_logits;
    free(toks);
    return 0;
}

/* forward_argmax over fake_forward: the greedy id of each row (lowest on ties), or the
 * Gumbel-max draw for rows with inv_temp > 0 (what the CUDA kernel computes). */
static int fake_argmax_calls, fake_gumbel_rows;
static int fake_forward_argmax(void *ctx, const model_batch_t *b, int32_t *ids, const float *inv_temp,
                               const uint64_t *keys) {
    fake_t *f = ctx;
    float *lg = malloc((size_t)(b->n_logits > 0 ? b->n_logits : 1) * (size_t)f->n_vocab * sizeof(float));
    int rc = fake_forward(ctx, b, lg);
    for (int i = 0; rc == 0 && i < b->n_logits; i++) {
        const float t = inv_temp ? inv_temp[i] : 0.0f;
        ids[i] = sampler_pick(lg + (size_t)i * (size_t)f->n_vocab, f->n_vocab, t, t > 0.0f ? keys[i] : 0);
        fake_gumbel_rows += t > 0.0f;
    }
    free(lg);
    fake_argmax_calls++;
    return rc;
}

static bool fake_is_eog(void *ctx, int32_t id) { return id == ((fake_t *)ctx)->eog; }
static void fake_detok_init(void *ctx, tokenizer_stream_t *s) {
    (void)ctx;
    memset(s, 0, sizeof(*s));
}
static int fake_detok_push(void *ctx, tokenizer_stream_t *s, int32_t id, char *out, size_t cap) {
    fake_t *f = ctx;
    (void)s;
    if (id < 0 || id >= f->n_vocab) return -1;
    size_t n = strlen(f->pieces[id]);
    assert_true(n <= cap);
    memcpy(out, f->pieces[id], n);
    return (int)n;
}
static int fake_detok_flush(void *ctx, tokenizer_stream_t *s, char *out, size_t cap) {
    (void)ctx, (void)s, (void)out, (void)cap;
    return 0;
}

static void fake_init(fake_t *f, int mode, int n_vocab, int block_size, int64_t n_blocks,
                      int max_seqs, int max_batch_tokens) {
    memset(f, 0, sizeof(*f));
    f->mode = mode;
    f->n_vocab = n_vocab;
    f->block_size = block_size;
    f->n_blocks = n_blocks;
    f->max_seqs = max_seqs;
    f->max_batch_tokens = max_batch_tokens;
    f->kv_tok = malloc((size_t)(n_blocks * block_size) * sizeof(int32_t));
    f->kv_pos = malloc((size_t)(n_blocks * block_size) * sizeof(int32_t));
    f->owner = malloc((size_t)n_blocks * sizeof(int32_t));
    for (int64_t i = 0; i < n_blocks * block_size; i++) f->kv_tok[i] = f->kv_pos[i] = -1;
    f->eog = n_vocab - 1;
    f->fail_call = -1;
    for (int v = 0; v < n_vocab; v++) snprintf(f->pieces[v], sizeof(f->pieces[v]), "%c%d", 'a' + v % 26, v);
    f->pieces[f->eog][0] = '\0'; /* control tokens decode to nothing */
}
static void fake_fini(fake_t *f) {
    free(f->kv_tok);
    free(f->kv_pos);
    free(f->owner);
}

static bool g_use_argmax; /* give the scheduler forward_argmax */
static bool g_gumbel;     /* temperature-only rows by Gumbel-max (scheduler_model_t.gumbel) */
static double g_overcommit = 1000.0; /* optimistic admission unless a test says otherwise */

static scheduler_t *sched_make(fake_t *f, int n_ctx, uint64_t seed, int max_queue) {
    scheduler_config_t c = {.max_seqs = f->max_seqs, .max_batch_tokens = f->max_batch_tokens,
                            .n_ctx = n_ctx, .kv_blocks = f->n_blocks, .kv_block_size = f->block_size,
                            .max_queue = max_queue, .seed = seed, .overcommit = g_overcommit};
    scheduler_model_t m = {.ctx = f, .n_vocab = f->n_vocab, .forward = fake_forward,
                           .is_eog = fake_is_eog, .detok_init = fake_detok_init,
                           .detok_push = fake_detok_push, .detok_flush = fake_detok_flush,
                           .max_piece_bytes = 15};
    char err[256];
    if (g_use_argmax) m.forward_argmax = fake_forward_argmax;
    m.gumbel = g_gumbel;
    scheduler_t *s = scheduler_new(&c, &m, err, sizeof(err));
    if (!s) fail_msg("scheduler_new: %s", err);
    return s;
}

/* ---------------------------------------------------------------- workload + reference */

typedef struct {
    engine_request_t q;
    int32_t prompt[512];
    /* reference */
    int32_t ref[512];
    int n_ref;
    engine_finish_t ref_finish;
    char ref_text[512 * 16];
} job_t;

static void ref_greedy(const fake_t *f, job_t *j) {
    int32_t seq[1024];
    float *lg = malloc((size_t)f->n_vocab * sizeof(float));
    memcpy(seq, j->prompt, (size_t)j->q.n_prompt * sizeof(int32_t));
    int n = j->q.n_prompt;
    j->n_ref = 0;
    j->ref_text[0] = '\0';
    j->ref_finish = ENGINE_FINISH_LENGTH;
    while (j->n_ref < j->q.max_tokens) {
        fake_logits(f, seq, n, lg);
        int32_t best = 0;
        for (int v = 1; v < f->n_vocab; v++)
            if (lg[v] > lg[best]) best = v;
        seq[n++] = best;
        j->ref[j->n_ref++] = best;
        if (best == f->eog && !j->q.ignore_eos) {
            j->ref_finish = ENGINE_FINISH_STOP;
            break;
        }
        strcat(j->ref_text, f->pieces[best]);
    }
    free(lg);
}

static uint32_t lcg(uint32_t *x) {
    *x = *x * 1664525u + 1013904223u;
    return *x >> 8;
}

/* n jobs of mixed lengths; ids are the index. */
static job_t *make_jobs(int n, int n_vocab, uint32_t seed, int max_prompt, int max_gen) {
    job_t *jobs = calloc((size_t)n, sizeof(job_t));
    uint32_t x = seed;
    for (int i = 0; i < n; i++) {
        job_t *j = &jobs[i];
        j->q.id = (uint64_t)i;
        j->q.n_prompt = 1 + (int)(lcg(&x) % (uint32_t)max_prompt);
        for (int k = 0; k < j->q.n_prompt; k++) j->prompt[k] = (int32_t)(lcg(&x) % (uint32_t)(n_vocab - 1));
        j->q.prompt = j->prompt;
        j->q.max_tokens = 1 + (int)(lcg(&x) % (uint32_t)max_gen);
        j->q.top_p = 1.0f;
    }
    return jobs;
}

/* Steps until every submitted request has a result (or the step limit, a deadlock). */
static int run_until(scheduler_t *s, engine_result_t *res, int n_expected, int max_steps) {
    int got = 0, steps = 0;
    while (got < n_expected) {
        if (steps++ > max_steps) fail_msg("no progress after %d steps: %d of %d results", max_steps, got, n_expected);
        scheduler_step(s);
        got += (int)scheduler_poll(s, res + got, (size_t)(n_expected - got));
    }
    return steps;
}

static engine_result_t *find_result(engine_result_t *res, int n, uint64_t id) {
    for (int i = 0; i < n; i++)
        if (res[i].id == id) return &res[i];
    fail_msg("no result for id %llu", (unsigned long long)id);
    return NULL;
}

static void result_clear(engine_result_t *r) {
    free(r->text);
    free(r->tokens);
    memset(r, 0, sizeof(*r));
}

static void check_against_ref(const job_t *j, const engine_result_t *r) {
    if (r->n_tokens != j->n_ref || memcmp(r->tokens, j->ref, (size_t)j->n_ref * sizeof(int32_t)) != 0) {
        int k = 0;
        while (k < r->n_tokens && k < j->n_ref && r->tokens[k] == j->ref[k]) k++;
        fail_msg("request %llu: %d tokens vs %d in the reference, first difference at %d",
                 (unsigned long long)j->q.id, r->n_tokens, j->n_ref, k);
    }
    assert_int_equal(r->finish, j->ref_finish);
    assert_string_equal(r->text, j->ref_text);
    assert_int_equal(r->text_len, strlen(j->ref_text));
    assert_int_equal(r->prompt_tokens, j->q.n_prompt);
    assert_int_equal(r->completion_tokens, j->n_ref);
    assert_int_equal(r->error_code, ENGINE_OK);
    assert_true(r->queue_ms >= 0.0 && r->queue_ms <= r->ttft_ms && r->ttft_ms <= r->total_ms);
}

static void submit_ok(scheduler_t *s, const engine_request_t *q) {
    char err[256];
    int rc = scheduler_submit(s, q, err, sizeof(err));
    if (rc != ENGINE_OK) fail_msg("submit %llu: rc=%d %s", (unsigned long long)q->id, rc, err);
}

/* 32 requests of mixed lengths against the greedy reference, under the given cache. */
static void run_greedy_case(int64_t n_blocks, bool expect_preemption) {
    enum { N = 32, V = 64, BS = 4 };
    fake_t f;
    fake_init(&f, FAKE_HASH, V, BS, n_blocks, 8, 48);
    scheduler_t *s = sched_make(&f, 256, 1, 0);
    job_t *jobs = make_jobs(N, V, 7, 100, 60);
    for (int i = 0; i < N; i++) {
        ref_greedy(&f, &jobs[i]);
        submit_ok(s, &jobs[i].q);
    }
    engine_result_t res[N];
    run_until(s, res, N, 100000);
    int stopped = 0;
    for (int i = 0; i < N; i++) {
        check_against_ref(&jobs[i], find_result(res, N, (uint64_t)i));
        stopped += jobs[i].ref_finish == ENGINE_FINISH_STOP;
    }
    assert_true(stopped > 0 && stopped < N); /* both finish reasons were exercised */
    engine_stats_t st;
    scheduler_get_stats(s, &st);
    assert_int_equal(st.kv_blocks_used, 0);
    assert_int_equal(st.running, 0);
    assert_int_equal(st.waiting, 0);
    if (expect_preemption) assert_true(st.preemptions > 0);
    else assert_int_equal(st.preemptions, 0);
    assert_true(f.max_nt <= 48 && f.max_ns <= 8);
    if (!expect_preemption && n_blocks > 48) assert_int_equal(f.max_ns, 8);
    assert_true(f.fed_without_logits > 0); /* chunked prefill happened (prompts up to 100 > 48) */
    for (int i = 0; i < N; i++) result_clear(&res[i]);
    free(jobs);
    scheduler_free(s);
    fake_fini(&f);
}

static void test_greedy_matches_reference(void **state) {
    (void)state;
    run_greedy_case(32 * 41, false);
}

static void test_preemption_keeps_output(void **state) {
    (void)state;
    /* 48 blocks of 4 = 192 tokens: one request needs up to 160, so sequences must be
     * preempted and recomputed constantly */
    run_greedy_case(48, true);
}

/* The cache holds one long request at a time: everything still finishes. */
/* overcommit 1: admission keeps every running request's max_tokens within the
 * cache, so the tiny cache never preempts, and the output is the same */
static void test_reserved_admission(void **state) {
    (void)state;
    g_overcommit = 1.0;
    run_greedy_case(48, false);
    g_overcommit = 1000.0;
}

static void test_full_cache_no_deadlock(void **state) {
    (void)state;
    enum { N = 10, V = 64, BS = 4 };
    fake_t f;
    fake_init(&f, FAKE_HASH, V, BS, 40, 4, 32);
    scheduler_t *s = sched_make(&f, 200, 1, 0);
    job_t *jobs = make_jobs(N, V, 3, 1, 1);
    for (int i = 0; i < N; i++) {
        jobs[i].q.n_prompt = 100 + i;
        for (int k = 0; k < jobs[i].q.n_prompt; k++) jobs[i].prompt[k] = (int32_t)((k * 7 + i) % (V - 1));
        jobs[i].q.max_tokens = 50;
        jobs[i].q.ignore_eos = true;
        ref_greedy(&f, &jobs[i]);
        submit_ok(s, &jobs[i].q);
    }
    engine_result_t res[N];
    run_until(s, res, N, 20000);
    for (int i = 0; i < N; i++) {
        engine_result_t *r = find_result(res, N, (uint64_t)i);
        check_against_ref(&jobs[i], r);
        assert_int_equal(r->finish, ENGINE_FINISH_LENGTH);
        assert_int_equal(r->n_tokens, 50);
    }
    for (int i = 0; i < N; i++) result_clear(&res[i]);
    free(jobs);
    scheduler_free(s);
    fake_fini(&f);
}

/* Seeded sampling: each request alone == the same request among 31 others with
 * preemption; unseeded requests are reproducible from the engine seed. */
static void run_sampled(job_t *jobs, int n, int64_t n_blocks, int max_seqs, uint64_t seed,
                        engine_result_t *res) {
    fake_t f;
    fake_init(&f, FAKE_HASH, 64, 4, n_blocks, max_seqs, 40);
    scheduler_t *s = sched_make(&f, 256, seed, 0);
    for (int i = 0; i < n; i++) submit_ok(s, &jobs[i].q);
    run_until(s, res, n, 100000);
    scheduler_free(s);
    fake_fini(&f);
}

/* True when res is not job's greedy (temperature 0) output: it really sampled. */
static bool not_greedy(job_t *job, const engine_result_t *res) {
    fake_t f;
    fake_init(&f, FAKE_HASH, 64, 4, 1, 1, 1);
    job->q.ignore_eos = false;
    ref_greedy(&f, job);
    fake_fini(&f);
    return res->n_tokens != job->n_ref || memcmp(res->tokens, job->ref, (size_t)res->n_tokens * sizeof(int32_t)) != 0;
}

static void test_seeded_sampling(void **state) {
    (void)state;
    enum { N = 32 };
    job_t *jobs = make_jobs(N, 64, 11, 80, 60);
    for (int i = 0; i < N; i++) {
        jobs[i].q.temperature = 0.9f;
        jobs[i].q.top_p = 0.9f;
        jobs[i].q.top_k = i % 3 == 0 ? 20 : 0;
        jobs[i].q.min_p = i % 4 == 0 ? 0.05f : 0.0f;
        jobs[i].q.presence_penalty = i % 5 == 0 ? 0.5f : 0.0f;
        jobs[i].q.frequency_penalty = i % 7 == 0 ? 0.3f : 0.0f;
        jobs[i].q.has_seed = true;
        jobs[i].q.seed = 1000 + (uint64_t)i;
    }
    engine_result_t together[N], alone[N];
    run_sampled(jobs, N, 48, 8, 5, together); /* tiny cache: preemptions */
    for (int i = 0; i < N; i++) run_sampled(&jobs[i], 1, 2000, 8, 99, &alone[i]);
    int differs_from_greedy = 0;
    for (int i = 0; i < N; i++) {
        engine_result_t *t = find_result(together, N, (uint64_t)i), *a = &alone[i];
        assert_int_equal(t->n_tokens, a->n_tokens);
        assert_memory_equal(t->tokens, a->tokens, (size_t)a->n_tokens * sizeof(int32_t));
        assert_string_equal(t->text, a->text);
        differs_from_greedy += not_greedy(&jobs[i], a);
    }
    assert_true(differs_from_greedy > N / 2); /* it really sampled */
    for (int i = 0; i < N; i++) {
        result_clear(&together[i]);
        result_clear(&alone[i]);
    }

    /* no seed in the request: engine seed + arrival order decide */
    for (int i = 0; i < N; i++) jobs[i].q.has_seed = false;
    engine_result_t r1[N], r2[N], r3[N];
    run_sampled(jobs, N, 2000, 8, 77, r1);
    run_sampled(jobs, N, 48, 3, 77, r2); /* other budgets and preemption: same output */
    run_sampled(jobs, N, 2000, 8, 78, r3);
    int diff = 0;
    for (int i = 0; i < N; i++) {
        engine_result_t *a = find_result(r1, N, (uint64_t)i), *b = find_result(r2, N, (uint64_t)i),
                        *c = find_result(r3, N, (uint64_t)i);
        assert_int_equal(a->n_tokens, b->n_tokens);
        assert_memory_equal(a->tokens, b->tokens, (size_t)a->n_tokens * sizeof(int32_t));
        diff += a->n_tokens != c->n_tokens || memcmp(a->tokens, c->tokens, (size_t)a->n_tokens * sizeof(int32_t)) != 0;
    }
    assert_true(diff > N / 2);
    for (int i = 0; i < N; i++) {
        result_clear(&r1[i]);
        result_clear(&r2[i]);
        result_clear(&r3[i]);
    }
    free(jobs);
}

/* ---------------------------------------------------------------- stop, EOS, lengths */

/* COUNT mode: the next token is always last + 1, so the text is scripted. */
static fake_t *count_fake(void) {
    fake_t *f = malloc(sizeof(*f));
    fake_init(f, FAKE_COUNT, 32, 4, 256, 4, 64);
    for (int v = 0; v < 32; v++) strcpy(f->pieces[v], "x");
    strcpy(f->pieces[10], "he");
    strcpy(f->pieces[11], "ll");
    strcpy(f->pieces[12], "o ");
    strcpy(f->pieces[13], "wo");
    strcpy(f->pieces[14], "rld");
    strcpy(f->pieces[15], "!");
    f->eog = 20;
    f->pieces[20][0] = '\0';
    return f;
}

typedef struct {
    const char *stop[ENGINE_MAX_STOP];
    int n_stop, min_tokens, max_tokens;
    int32_t start;
    bool ignore_eos;
    engine_finish_t finish;
    const char *text;
    int n_tokens;
} stop_case_t;

static void run_stop_case(const stop_case_t *c) {
    fake_t *f = count_fake();
    scheduler_t *s = sched_make(f, 128, 1, 0);
    int32_t prompt[1] = {c->start};
    engine_request_t q = {.id = 1, .prompt = prompt, .n_prompt = 1, .max_tokens = c->max_tokens,
                          .min_tokens = c->min_tokens, .ignore_eos = c->ignore_eos, .top_p = 1.0f,
                          .n_stop = c->n_stop};
    for (int i = 0; i < c->n_stop; i++) q.stop[i] = c->stop[i];
    submit_ok(s, &q);
    engine_result_t r;
    run_until(s, &r, 1, 1000);
    assert_int_equal(r.finish, c->finish);
    assert_string_equal(r.text, c->text);
    assert_int_equal(r.n_tokens, c->n_tokens);
    for (int i = 0; i < r.n_tokens; i++) assert_int_equal(r.tokens[i], (c->start + 1 + i) % 32);
    result_clear(&r);
    scheduler_free(s);
    fake_fini(f);
    free(f);
}

static void test_stop_strings(void **state) {
    (void)state;
    /* tokens 10.. decode "he" "ll" "o " "wo" "rld" "!" */
    const stop_case_t cases[] = {
        /* spans three tokens; completed by token 13 ("wo") */
        {{"lo w"}, 1, 0, 20, 9, false, ENGINE_FINISH_STOP, "hel", 4},
        {{"ld!"}, 1, 0, 20, 9, false, ENGINE_FINISH_STOP, "hello wor", 6},
        /* two stops completed by the same token: the earliest start wins */
        {{"o wo", "lo wo"}, 2, 0, 20, 9, false, ENGINE_FINISH_STOP, "hel", 4},
        /* inside the first token */
        {{"e"}, 1, 0, 20, 9, false, ENGINE_FINISH_STOP, "h", 1},
        /* never matches: max_tokens */
        {{"zzz"}, 1, 0, 4, 9, false, ENGINE_FINISH_LENGTH, "hello wo", 4},
        /* a match before min_tokens is ignored; the next one counts */
        {{"l"}, 1, 3, 20, 9, false, ENGINE_FINISH_STOP, "hello wor", 5},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) run_stop_case(&cases[i]);
}

static void test_eos_and_lengths(void **state) {
    (void)state;
    /* 18 -> 19 ("x"), 20 = EOS: stop; the EOS id is reported, its text is not */
    stop_case_t eos = {{0}, 0, 0, 10, 17, false, ENGINE_FINISH_STOP, "xx", 3};
    run_stop_case(&eos);
    /* ignore_eos runs through EOS to max_tokens */
    stop_case_t ign = {{0}, 0, 0, 6, 17, true, ENGINE_FINISH_LENGTH, "xxxxx", 6};
    run_stop_case(&ign);
    /* max_tokens = 1 */
    stop_case_t one = {{0}, 0, 0, 1, 9, false, ENGINE_FINISH_LENGTH, "he", 1};
    run_stop_case(&one);

    /* min_tokens masks EOS: after 19 the EOS is the argmax but banned, so the lowest id
     * of the remaining ties (0) comes instead, and counting resumes from there */
    fake_t *f = count_fake();
    scheduler_t *s = sched_make(f, 128, 1, 0);
    int32_t prompt[1] = {18};
    engine_request_t q = {.id = 1, .prompt = prompt, .n_prompt = 1, .max_tokens = 5,
                          .min_tokens = 3, .top_p = 1.0f};
    submit_ok(s, &q);
    engine_result_t r;
    run_until(s, &r, 1, 100);
    int32_t want[5] = {19, 0, 1, 2, 3};
    assert_int_equal(r.n_tokens, 5);
    assert_memory_equal(r.tokens, want, sizeof(want));
    assert_int_equal(r.finish, ENGINE_FINISH_LENGTH);
    result_clear(&r);
    scheduler_free(s);
    fake_fini(f);
    free(f);
}

/* forward_argmax: greedy steps take ids instead of logits and give the same outputs
 * (with preemption too); min_tokens masking and sampled requests fall back to logits
 * (the same expected outputs as without forward_argmax). */
static void test_seeded_sampling(void **state);
static void test_argmax_path(void **state) {
    g_use_argmax = true;
    fake_argmax_calls = 0;
    run_greedy_case(32 * 41, false);
    int greedy_calls = fake_argmax_calls;
    assert_true(greedy_calls > 0);
    run_greedy_case(48, true);
    test_eos_and_lengths(state);
    fake_argmax_calls = 0;
    test_seeded_sampling(state);
    assert_int_equal(fake_argmax_calls, 0); /* top-p / top-k / min-p steps never use it */
    g_use_argmax = false;
}

/* Temperature-only requests draw by Gumbel-max: through forward_argmax (ids from the
 * "device") and through the logits and sampler_sample they pick the same tokens,
 * alone or together, with preemption, and mixed with top-p requests (which force the
 * logits path for the whole step). */
static void test_temperature_by_ids(void **state) {
    (void)state;
    enum { N = 24 };
    job_t *jobs = make_jobs(N, 64, 13, 80, 60);
    for (int i = 0; i < N; i++) {
        jobs[i].q.temperature = i % 2 ? 0.7f : 1.3f;
        jobs[i].q.top_p = 1.0f;
        jobs[i].q.has_seed = true;
        jobs[i].q.seed = 500 + (uint64_t)i;
    }
    engine_result_t dev[N], host[N], alone[N], mixed[N];
    g_gumbel = true;
    g_use_argmax = true;
    fake_argmax_calls = fake_gumbel_rows = 0;
    run_sampled(jobs, N, 48, 8, 5, dev); /* tiny cache: preemptions */
    assert_true(fake_argmax_calls > 0 && fake_gumbel_rows > 0);
    for (int i = 0; i < N; i++) run_sampled(&jobs[i], 1, 2000, 8, 99, &alone[i]);
    g_use_argmax = false;
    run_sampled(jobs, N, 2000, 8, 7, host);
    /* every third request turns top-p: the steps it shares take the logits path */
    job_t *mix = make_jobs(N, 64, 13, 80, 60);
    for (int i = 0; i < N; i++) {
        mix[i].q = jobs[i].q;
        if (i % 3 == 0) mix[i].q.top_p = 0.9f;
    }
    g_use_argmax = true;
    run_sampled(mix, N, 2000, 8, 9, mixed);
    g_use_argmax = false;
    g_gumbel = false;
    int differs_from_greedy = 0;
    for (int i = 0; i < N; i++) {
        engine_result_t *d = find_result(dev, N, (uint64_t)i), *h = find_result(host, N, (uint64_t)i);
        assert_int_equal(d->n_tokens, h->n_tokens);
        assert_memory_equal(d->tokens, h->tokens, (size_t)h->n_tokens * sizeof(int32_t));
        assert_int_equal(alone[i].n_tokens, h->n_tokens);
        assert_memory_equal(alone[i].tokens, h->tokens, (size_t)h->n_tokens * sizeof(int32_t));
        if (i % 3) {
            engine_result_t *m = find_result(mixed, N, (uint64_t)i);
            assert_int_equal(m->n_tokens, h->n_tokens);
            assert_memory_equal(m->tokens, h->tokens, (size_t)h->n_tokens * sizeof(int32_t));
        }
        differs_from_greedy += not_greedy(&jobs[i], h);
    }
    assert_true(differs_from_greedy > N / 2); /* it really sampled */
    for (int i = 0; i < N; i++) {
        result_clear(&dev[i]);
        result_clear(&host[i]);
        result_clear(&alone[i]);
        result_clear(&mixed[i]);
    }
    free(jobs);
    free(mix);
}

/* ---------------------------------------------------------------- errors */

/* The request checks (empty prompt, ranges, vocabulary, context, whole cache) are the
 * engine API's, made once at engine_submit: test_engine_request.c asserts them. The
 * scheduler trusts its caller; here, a request that exactly fits the whole cache runs
 * beside others and the next ones still get their results. */
static void test_submit_exact_fit(void **state) {
    (void)state;
    fake_t f;
    fake_init(&f, FAKE_HASH, 64, 4, 20, 4, 32); /* cache: 80 tokens; context 128 */
    scheduler_t *s = sched_make(&f, 128, 1, 0);
    job_t *jobs = make_jobs(3, 64, 5, 20, 20);
    submit_ok(s, &jobs[0].q);

    int32_t p[120] = {0};
    /* exactly fits: 41 + 40 - 1 = 80 tokens of cache */
    engine_request_t ok = {.id = 51, .prompt = p, .n_prompt = 41, .max_tokens = 40, .top_p = 1.0f, .ignore_eos = true};
    submit_ok(s, &ok);

    submit_ok(s, &jobs[1].q);
    engine_result_t res[3];
    run_until(s, res, 3, 10000);
    assert_int_equal(scheduler_poll(s, res, 3), 0);
    ref_greedy(&f, &jobs[0]);
    ref_greedy(&f, &jobs[1]);
    check_against_ref(&jobs[0], find_result(res, 3, 0));
    check_against_ref(&jobs[1], find_result(res, 3, 1));
    assert_int_equal(find_result(res, 3, 51)->n_tokens, 40);
    for (int i = 0; i < 3; i++) result_clear(&res[i]);
    free(jobs);
    scheduler_free(s);
    fake_fini(&f);
}

static void test_abort(void **state) {
    (void)state;
    enum { N = 6 };
    fake_t f;
    fake_init(&f, FAKE_HASH, 64, 4, 400, 2, 64);
    scheduler_t *s = sched_make(&f, 256, 1, 0);
    job_t *jobs = make_jobs(N, 64, 9, 10, 1);
    for (int i = 0; i < N; i++) {
        jobs[i].q.max_tokens = 30;
        jobs[i].q.ignore_eos = true;
        submit_ok(s, &jobs[i].q);
    }
    assert_int_equal(scheduler_abort(s, 5), 0); /* still incoming */
    scheduler_step(s);
    scheduler_step(s);
    scheduler_step(s);
    engine_stats_t st;
    scheduler_get_stats(s, &st);
    assert_int_equal(st.running, 2);
    assert_int_equal(scheduler_abort(s, 0), 0);   /* running */
    assert_int_equal(scheduler_abort(s, 0), 0);   /* twice is harmless */
    assert_int_equal(scheduler_abort(s, 3), 0);   /* waiting */
    assert_int_equal(scheduler_abort(s, 999), -1);
    assert_int_equal(scheduler_wait(s, 0), 1);
    engine_result_t res[N];
    run_until(s, res, N, 1000);
    for (int i = 0; i < N; i++) {
        engine_result_t *r = find_result(res, N, (uint64_t)i);
        if (i == 0 || i == 3 || i == 5) {
            assert_int_equal(r->finish, ENGINE_FINISH_ABORTED);
            assert_true(r->n_tokens < 30);
        } else {
            assert_int_equal(r->finish, ENGINE_FINISH_LENGTH);
            assert_int_equal(r->n_tokens, 30);
        }
    }
    assert_int_equal(find_result(res, N, 0)->n_tokens, 3); /* it ran 3 steps */
    assert_int_equal(scheduler_abort(s, 1), -1); /* finished: nothing to abort */
    scheduler_get_stats(s, &st);
    assert_int_equal(st.kv_blocks_used, 0);
    assert_int_equal(scheduler_wait(s, 10), 0);
    for (int i = 0; i < N; i++) result_clear(&res[i]);
    free(jobs);
    scheduler_free(s);
    fake_fini(&f);
}

static void test_forward_failure(void **state) {
    (void)state;
    enum { N = 4 };
    fake_t f;
    fake_init(&f, FAKE_HASH, 64, 4, 400, 2, 64);
    f.fail_call = 2;
    scheduler_t *s = sched_make(&f, 256, 1, 0);
    job_t *jobs = make_jobs(N, 64, 13, 10, 1);
    for (int i = 0; i < N; i++) {
        jobs[i].q.max_tokens = 5;
        jobs[i].q.ignore_eos = true;
        ref_greedy(&f, &jobs[i]);
        submit_ok(s, &jobs[i].q);
    }
    engine_result_t res[N];
    run_until(s, res, N, 1000);
    int errors = 0;
    for (int i = 0; i < N; i++) {
        engine_result_t *r = find_result(res, N, (uint64_t)i);
        if (r->finish == ENGINE_FINISH_ERROR) {
            errors++;
            assert_int_equal(r->error_code, ENGINE_ERR_INTERNAL);
            assert_true(strlen(r->error) > 0);
        } else {
            check_against_ref(&jobs[i], r);
        }
    }
    assert_int_equal(errors, 2); /* the two sequences of the failed step */
    engine_stats_t st;
    scheduler_get_stats(s, &st);
    assert_int_equal(st.kv_blocks_used, 0);
    for (int i = 0; i < N; i++) result_clear(&res[i]);
    free(jobs);
    scheduler_free(s);
    fake_fini(&f);
}

static void test_busy(void **state) {
    (void)state;
    fake_t f;
    fake_init(&f, FAKE_HASH, 64, 4, 400, 1, 64);
    scheduler_t *s = sched_make(&f, 256, 1, 2);
    job_t *jobs = make_jobs(4, 64, 17, 10, 10);
    char err[256];
    submit_ok(s, &jobs[0].q);
    submit_ok(s, &jobs[1].q);
    assert_int_equal(scheduler_submit(s, &jobs[2].q, err, sizeof(err)), ENGINE_ERR_BUSY);
    scheduler_step(s); /* one runs (max_seqs 1), one waits */
    submit_ok(s, &jobs[2].q);
    engine_result_t res[3];
    run_until(s, res, 3, 1000);
    for (int i = 0; i < 3; i++) result_clear(&res[i]);
    free(jobs);
    scheduler_free(s);
    fake_fini(&f);
}

/* ---------------------------------------------------------------- threads */

typedef struct {
    scheduler_t *s;
    job_t *jobs;
    int from, to;
} producer_t;

static void *producer(void *arg) {
    producer_t *p = arg;
    for (int i = p->from; i < p->to; i++) {
        char err[256];
        if (scheduler_submit(p->s, &p->jobs[i].q, err, sizeof(err)) != ENGINE_OK) abort();
        if (i % 7 == 0) {
            engine_stats_t st;
            scheduler_get_stats(p->s, &st);
        }
    }
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    enum { N = 200 };
    fake_t f;
    fake_init(&f, FAKE_HASH, 64, 4, 300, 8, 64);
    scheduler_t *s = sched_make(&f, 256, 1, 0);
    job_t *jobs = make_jobs(N, 64, 21, 30, 20);
    for (int i = 0; i < N; i++) ref_greedy(&f, &jobs[i]);
    producer_t pa = {s, jobs, 0, N / 2}, pb = {s, jobs, N / 2, N};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, producer, &pa);
    pthread_create(&tb, NULL, producer, &pb);
    engine_result_t *res = calloc(N, sizeof(engine_result_t));
    int got = 0, idle = 0;
    while (got < N) {
        if (!scheduler_wait(s, 50)) {
            assert_true(++idle < 100); /* 5 s without work: lost requests */
            continue;
        }
        scheduler_step(s);
        got += (int)scheduler_poll(s, res + got, (size_t)(N - got));
    }
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    int seen[N] = {0};
    for (int i = 0; i < N; i++) {
        assert_true(res[i].id < N);
        seen[res[i].id]++;
        check_against_ref(&jobs[res[i].id], &res[i]);
    }
    for (int i = 0; i < N; i++) assert_int_equal(seen[i], 1);
    engine_stats_t st;
    scheduler_get_stats(s, &st);
    assert_int_equal(st.kv_blocks_used, 0);
    for (int i = 0; i < N; i++) result_clear(&res[i]);
    free(res);
    free(jobs);
    scheduler_free(s);
    fake_fini(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_matches_reference),
        cmocka_unit_test(test_preemption_keeps_output),
        cmocka_unit_test(test_reserved_admission),
        cmocka_unit_test(test_full_cache_no_deadlock),
        cmocka_unit_test(test_seeded_sampling),
        cmocka_unit_test(test_stop_strings),
        cmocka_unit_test(test_eos_and_lengths),
        cmocka_unit_test(test_submit_exact_fit),
        cmocka_unit_test(test_abort),
        cmocka_unit_test(test_forward_failure),
        cmocka_unit_test(test_argmax_path),
        cmocka_unit_test(test_temperature_by_ids),
        cmocka_unit_test(test_busy),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
