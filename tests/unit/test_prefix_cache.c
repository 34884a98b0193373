/* test_prefix_cache.c — the prefix cache and n > 1 choices.
 *
 * Allocator level (kvcache.c + prefix_cache.c, no model): hash-chain keys, reference
 * counts, eviction order (least recently released first, a chain's deepest blocks
 * before its root), a block whose parent was evicted is never matched, a request that
 * is an exact prefix of a cached one recomputes its last token, the last partial block
 * is never shared, forks share references, and a random stress run leaks nothing.
 * Engine level (the synthetic model written by tests/reference/make_engine_model.py,
 * fast enough for SANITIZE=1; and the default model when present): a property test —
 * random mixes of shared and unshared prompts, greedy and seeded, staggered arrivals,
 * aborts, a tiny KV cache that forces preemption of sequences holding shared blocks —
 * gives every completed request the same tokens with the cache on as off, reports
 * cached tokens only with the cache on, and ends with no block held; n > 1 choices
 * equal n separate requests seeded with engine_choice_seed and share the prompt's
 * blocks; aborting the id aborts every choice; requests with one prompt arriving
 * together compute its blocks once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "engine.h"
#include "kvcache.h"
#include "log.h"
#include "testutil.h"

static char g_syn_model[1024];

/* ---------------------------------------------------------------- allocator level */

enum { BS = 4 };

static void seq_tokens(int32_t *t, int n, int32_t base) {
    for (int i = 0; i < n; i++) t[i] = base + i;
}

/* A sequence that reserves and "computes" n tokens, publishing its full blocks. */
static void compute(kvcache_t *kv, kvcache_seq_t *s, const int32_t *t, int n) {
    assert_int_equal(kvcache_seq_reserve(kv, s, n), 0);
    kvcache_seq_publish(kv, s, t, n);
}

static int lookup_attach(kvcache_t *kv, kvcache_seq_t *s, const int32_t *t, int n_known) {
    int revive = 0, hit = kvcache_seq_lookup(kv, s, t, n_known - 1, &revive);
    kvcache_seq_attach(kv, s, hit);
    return hit;
}

static void test_keys(void **state) {
    (void)state;
    prefix_key_t r1, r2, a, b, c, d;
    prefix_key_root(&r1, "model-a");
    prefix_key_root(&r2, "model-b");
    assert_memory_not_equal(r1.b, r2.b, PREFIX_KEY_BYTES);
    int32_t t[4] = {1, 2, 3, 4}, u[4] = {1, 2, 3, 5};
    prefix_key_next(&a, &r1, t, 4);
    prefix_key_next(&b, &r1, t, 4);
    assert_memory_equal(a.b, b.b, PREFIX_KEY_BYTES);  /* a pure function of parent + tokens */
    prefix_key_next(&c, &r2, t, 4);
    assert_memory_not_equal(a.b, c.b, PREFIX_KEY_BYTES); /* the salt (model, KV dtype) counts */
    prefix_key_next(&d, &r1, u, 4);
    assert_memory_not_equal(a.b, d.b, PREFIX_KEY_BYTES);
    prefix_key_next(&c, &a, t, 4); /* same tokens under another parent: another key */
    assert_memory_not_equal(a.b, c.b, PREFIX_KEY_BYTES);
}

static void test_refcounts_and_partial(void **state) {
    (void)state;
    kvcache_t *kv = kvcache_new(8, BS);
    assert_int_equal(kvcache_prefix_enable(kv, "t"), 0);
    int32_t t[32];
    seq_tokens(t, 32, 100);
    kvcache_seq_t a, b;
    assert_int_equal(kvcache_seq_init(kv, &a, 32), 0);
    assert_int_equal(kvcache_seq_init(kv, &b, 32), 0);
    compute(kv, &a, t, 10); /* 2 full blocks + 2 tokens: the partial block is never published */
    assert_int_equal(kvcache_n_cached(kv), 2);
    assert_int_equal(lookup_attach(kv, &b, t, 14), 2); /* b's tokens run past a's: still only the full blocks */
    assert_int_equal(b.blocks[0], a.blocks[0]);
    assert_int_equal(b.blocks[1], a.blocks[1]);
    assert_int_equal(kvcache_block_refs(kv, a.blocks[0]), 2);
    assert_int_equal(kvcache_block_refs(kv, a.blocks[2]), 1); /* a's partial block is a's alone */
    assert_int_equal(kvcache_seq_reserve(kv, &b, 14), 0);
    assert_int_not_equal(b.blocks[2], a.blocks[2]);
    assert_int_equal(kvcache_n_used(kv), 5);
    kvcache_seq_release(kv, &a);
    assert_int_equal(kvcache_block_refs(kv, b.blocks[0]), 1);
    assert_int_equal(kvcache_n_used(kv), 4);
    kvcache_seq_release(kv, &b);
    assert_int_equal(kvcache_n_free(kv), 8);
    assert_int_equal(kvcache_n_cached(kv), 2); /* kept with content and key while free */
    kvcache_seq_destroy(kv, &a);
    kvcache_seq_destroy(kv, &b);
    kvcache_free(kv);
}

static void test_exact_prefix(void **state) {
    (void)state;
    kvcache_t *kv = kvcache_new(8, BS);
    assert_int_equal(kvcache_prefix_enable(kv, "t"), 0);
    int32_t t[16];
    seq_tokens(t, 16, 7);
    kvcache_seq_t a, b, c;
    kvcache_seq_init(kv, &a, 16);
    kvcache_seq_init(kv, &b, 16);
    kvcache_seq_init(kv, &c, 16);
    compute(kv, &a, t, 12);
    kvcache_seq_release(kv, &a);
    /* b is exactly a's first 8 tokens: its last token's logits are needed, so only the
     * first block is taken and the second recomputed */
    int revive = 0;
    assert_int_equal(kvcache_seq_lookup(kv, &b, t, 8 - 1, &revive), 1);
    assert_int_equal(revive, 1); /* nobody held it: taking it lowers the free count */
    kvcache_seq_attach(kv, &b, 1);
    assert_int_equal(kvcache_n_free(kv), 7);
    /* one token more and both blocks are reused */
    assert_int_equal(lookup_attach(kv, &c, t, 9), 2);
    kvcache_seq_destroy(kv, &a);
    kvcache_seq_destroy(kv, &b);
    kvcache_seq_destroy(kv, &c);
    assert_int_equal(kvcache_n_free(kv), 8);
    kvcache_free(kv);
}

static void test_eviction_order(void **state) {
    (void)state;
    kvcache_t *kv = kvcache_new(6, BS);
    assert_int_equal(kvcache_prefix_enable(kv, "t"), 0);
    int32_t t1[12], t2[12];
    seq_tokens(t1, 12, 1000);
    seq_tokens(t2, 12, 2000);
    kvcache_seq_t a, b, z;
    kvcache_seq_init(kv, &a, 12);
    kvcache_seq_init(kv, &b, 12);
    kvcache_seq_init(kv, &z, 24);
    compute(kv, &a, t1, 12); /* blocks 0,1,2 */
    compute(kv, &b, t2, 8);  /* blocks 3,4 */
    kvcache_seq_release(kv, &a); /* released first: evicted first, deepest block first */
    kvcache_seq_release(kv, &b);
    assert_int_equal(kvcache_n_cached(kv), 5);
    assert_int_equal(kvcache_seq_reserve(kv, &z, 4 * 2), 0); /* the one empty block, then a's block 2 */
    assert_int_equal(kvcache_n_cached(kv), 4);
    kvcache_seq_t p;
    kvcache_seq_init(kv, &p, 13);
    int revive;
#define kvcache_seq_lookup(kv, p, t, n, r) ((p)->n_keys = 0, kvcache_seq_lookup(kv, p, t, n, r)) /* p asks for two token lists */
    assert_int_equal(kvcache_seq_lookup(kv, &p, t1, 12, &revive), 2); /* a's root and middle survive */
    assert_int_equal(kvcache_seq_lookup(kv, &p, t2, 8, &revive), 2);
    assert_int_equal(kvcache_seq_reserve(kv, &z, 4 * 4), 0); /* a's blocks 1 and 0 go next */
    assert_int_equal(kvcache_seq_lookup(kv, &p, t1, 12, &revive), 0);
    assert_int_equal(kvcache_seq_lookup(kv, &p, t2, 8, &revive), 2);
    assert_int_equal(kvcache_seq_reserve(kv, &z, 4 * 6), 0); /* then b's */
    assert_int_equal(kvcache_n_cached(kv), 0);
#undef kvcache_seq_lookup
    assert_int_equal(kvcache_seq_reserve(kv, &p, 4), -1); /* nothing left: nothing taken */
    assert_int_equal(p.n_blocks, 0);
    kvcache_seq_destroy(kv, &a);
    kvcache_seq_destroy(kv, &b);
    kvcache_seq_destroy(kv, &z);
    kvcache_seq_destroy(kv, &p);
    assert_int_equal(kvcache_n_free(kv), 6);
    kvcache_free(kv);
}

/* A block whose parent key was evicted is never matched, though it still holds a key:
 * b computed the same first block as a (a duplicate, left unkeyed) and its own second
 * block; once a's first block is evicted the chain starts nowhere. */
static void test_parent_evicted(void **state) {
    (void)state;
    kvcache_t *kv = kvcache_new(4, BS);
    assert_int_equal(kvcache_prefix_enable(kv, "t"), 0);
    int32_t t[8];
    seq_tokens(t, 8, 50);
    kvcache_seq_t a, b, z, q;
    kvcache_seq_init(kv, &a, 8);
    kvcache_seq_init(kv, &b, 8);
    kvcache_seq_init(kv, &z, 16);
    kvcache_seq_init(kv, &q, 9);
    assert_int_equal(kvcache_seq_reserve(kv, &a, 4), 0);
    assert_int_equal(kvcache_seq_reserve(kv, &b, 8), 0); /* admitted before a published */
    kvcache_seq_publish(kv, &a, t, 4);
    kvcache_seq_publish(kv, &b, t, 8); /* its block 0 duplicates a's key: left unkeyed */
    assert_int_equal(kvcache_n_cached(kv), 2);
    kvcache_seq_release(kv, &a);
    assert_int_equal(kvcache_seq_reserve(kv, &z, 8), 0); /* the empty block, then a's (evicted) */
    assert_int_equal(kvcache_n_cached(kv), 1); /* b's second block keeps its key ... */
    int revive;
    assert_int_equal(kvcache_seq_lookup(kv, &q, t, 8, &revive), 0); /* ... but is unreachable */
    kvcache_seq_destroy(kv, &a);
    kvcache_seq_destroy(kv, &b);
    kvcache_seq_destroy(kv, &z);
    kvcache_seq_destroy(kv, &q);
    assert_int_equal(kvcache_n_free(kv), 4);
    kvcache_free(kv);
}

static void test_share_and_off(void **state) {
    (void)state;
    kvcache_t *kv = kvcache_new(8, BS); /* prefix cache off: forks still share */
    kvcache_seq_t a, k1, k2;
    kvcache_seq_init(kv, &a, 16);
    kvcache_seq_init(kv, &k1, 16);
    kvcache_seq_init(kv, &k2, 16);
    int32_t t[16];
    seq_tokens(t, 16, 3);
    compute(kv, &a, t, 9);
    int revive;
    assert_int_equal(kvcache_seq_lookup(kv, &k1, t, 9, &revive), 0); /* off: never a hit */
    assert_int_equal(kvcache_n_cached(kv), 0);
    kvcache_seq_share(kv, &k1, &a, 2);
    kvcache_seq_share(kv, &k2, &a, 2);
    assert_int_equal(kvcache_block_refs(kv, a.blocks[1]), 3);
    assert_int_equal(kvcache_n_used(kv), 3);
    kvcache_seq_release(kv, &a);
    kvcache_seq_release(kv, &k1);
    assert_int_equal(kvcache_n_used(kv), 2);
    kvcache_seq_release(kv, &k2);
    assert_int_equal(kvcache_n_free(kv), 8);
    kvcache_seq_destroy(kv, &a);
    kvcache_seq_destroy(kv, &k1);
    kvcache_seq_destroy(kv, &k2);
    kvcache_free(kv);
}

/* Random sequences over a few shared prefixes: lookups, forks, growth, releases. The
 * references always equal the holders, and everything is free at the end. */
static void test_stress(void **state) {
    (void)state;
    enum { NB = 40, NS = 12, LEN = 40 };
    kvcache_t *kv = kvcache_new(NB, BS);
    assert_int_equal(kvcache_prefix_enable(kv, "s"), 0);
    kvcache_seq_t s[NS];
    int32_t tok[NS][LEN];
    int n_tok[NS] = {0};
    for (int i = 0; i < NS; i++) kvcache_seq_init(kv, &s[i], LEN);
    testutil_seed(99);
    for (int it = 0; it < 20000; it++) {
        int i = (int)(testutil_next() % NS), op = (int)(testutil_next() % 4);
        if (s[i].n_blocks == 0) { /* start: a prefix family, then own tokens */
            int fam = (int)(testutil_next() % 3), shared = (int)(testutil_next() % 24);
            n_tok[i] = shared + 1 + (int)(testutil_next() % (LEN - shared - 1));
            for (int k = 0; k < n_tok[i]; k++)
                tok[i][k] = k < shared ? fam * 1000 + k : (int32_t)(testutil_next() % 50000);
            s[i].n_keys = 0; /* new tokens: the cached keys no longer apply */
            int j = (int)(testutil_next() % NS);
            if (op == 0 && j != i && s[j].n_blocks > 1) { /* fork j's full blocks */
                memcpy(tok[i], tok[j], sizeof(tok[i]));
                n_tok[i] = n_tok[j];
                kvcache_seq_share(kv, &s[i], &s[j], 1);
            } else {
                int revive = 0, hit = kvcache_seq_lookup(kv, &s[i], tok[i], n_tok[i] - 1, &revive);
                if (kvcache_seq_missing(kv, &s[i], n_tok[i]) - hit + revive > kvcache_n_free(kv)) continue;
                kvcache_seq_attach(kv, &s[i], hit);
            }
            if (kvcache_seq_reserve(kv, &s[i], n_tok[i]) != 0) {
                kvcache_seq_release(kv, &s[i]);
                continue;
            }
            kvcache_seq_publish(kv, &s[i], tok[i], n_tok[i]);
        } else if (op == 1) {
            kvcache_seq_release(kv, &s[i]);
            s[i].n_keys = 0; /* its tokens change on the next start */
        } else if (n_tok[i] < LEN && kvcache_seq_reserve(kv, &s[i], n_tok[i] + 1) == 0) {
            tok[i][n_tok[i]] = (int32_t)(testutil_next() % 50000);
            n_tok[i]++;
            kvcache_seq_publish(kv, &s[i], tok[i], n_tok[i]);
        }
        int64_t held = 0, refs = 0;
        for (int k = 0; k < NS; k++) held += s[k].n_blocks;
        for (int32_t b = 0; b < NB; b++) refs += kvcache_block_refs(kv, b);
        assert_int_equal(held, refs);
        assert_true(kvcache_n_cached(kv) <= NB);
    }
    for (int i = 0; i < NS; i++) kvcache_seq_destroy(kv, &s[i]);
    assert_int_equal(kvcache_n_free(kv), NB);
    for (int32_t b = 0; b < NB; b++) assert_int_equal(kvcache_block_refs(kv, b), 0);
    kvcache_free(kv);
}

/* ---------------------------------------------------------------- engine level */

enum { MAXJ = 40, MAXP = 200, MAXN = 4 };

typedef struct {
    int32_t prompt[MAXP];
    engine_request_t q;
    int arrive;      /* step at which it is submitted */
    int abort_at;    /* step at which it is aborted, -1 = never */
} mjob_t;

typedef struct {
    int32_t *tokens[MAXJ][MAXN];
    int n_tokens[MAXJ][MAXN];
    engine_finish_t finish[MAXJ][MAXN];
    int cached[MAXJ][MAXN];
    int got[MAXJ];
    engine_stats_t st;
} mres_t;

typedef struct {
    const char *path;
    bool prefix;
    int max_seqs, max_batch;
    int64_t kv_tokens;
    double overcommit;
} mcfg_t;

static engine_t *open_mix(const mcfg_t *c) {
    engine_config_t cfg;
    engine_config_defaults(&cfg);
    cfg.model_path = c->path;
    cfg.backend = "cpu";
    cfg.n_threads = 2;
    cfg.max_seqs = c->max_seqs;
    cfg.max_batch_tokens = c->max_batch;
    cfg.kv_cache_tokens = c->kv_tokens;
    cfg.kv_overcommit = c->overcommit;
    cfg.seed = 99;
    cfg.prefix_cache = c->prefix;
    char err[512];
    engine_t *e = engine_open(&cfg, err, sizeof(err));
    if (!e) fail_msg("engine_open %s: %s", c->path, err);
    return e;
}

/* Runs the jobs on a fresh engine: submitted at their arrival step, aborted at theirs. */
static void run_mix(const mcfg_t *c, mjob_t *jobs, int n, mres_t *out) {
    memset(out, 0, sizeof(*out));
    engine_t *e = open_mix(c);
    char err[512];
    int done = 0;
    for (int step = 0; done < n; step++) {
        if (step > 200000) fail_msg("no progress: %d of %d jobs", done, n);
        for (int i = 0; i < n; i++) {
            if (jobs[i].arrive == step) {
                jobs[i].q.id = (uint64_t)i;
                if (engine_submit(e, &jobs[i].q, err, sizeof(err)) != ENGINE_OK) fail_msg("submit %d: %s", i, err);
            }
            if (jobs[i].abort_at == step) engine_abort(e, (uint64_t)i);
        }
        engine_step(e);
        engine_result_t r;
        while (engine_poll(e, &r, 1) == 1) {
            int i = (int)r.id, nc = jobs[i].q.n > 1 ? jobs[i].q.n : 1;
            assert_true(r.index >= 0 && r.index < nc);
            assert_null(out->tokens[i][r.index]);
            out->tokens[i][r.index] = r.tokens;
            r.tokens = NULL;
            out->n_tokens[i][r.index] = r.n_tokens;
            out->finish[i][r.index] = r.finish;
            out->cached[i][r.index] = r.cached_tokens;
            assert_true(r.cached_tokens >= 0 && r.cached_tokens < jobs[i].q.n_prompt);
            assert_int_equal(r.prompt_tokens, jobs[i].q.n_prompt);
            if (++out->got[i] == nc) done++;
            engine_result_clear(&r);
        }
    }
    engine_get_stats(e, &out->st);
    assert_int_equal(out->st.kv_blocks_used, 0); /* nothing leaked: every block free again */
    assert_int_equal(out->st.running + out->st.waiting, 0);
    engine_close(e);
}

static void mres_free(mres_t *m) {
    for (int i = 0; i < MAXJ; i++)
        for (int k = 0; k < MAXN; k++) free(m->tokens[i][k]);
}

/* Every job that was not aborted has the same tokens and finish in a and b. */
static void same_output(const mjob_t *jobs, int n, const mres_t *a, const mres_t *b, const char *what) {
    for (int i = 0; i < n; i++) {
        int nc = jobs[i].q.n > 1 ? jobs[i].q.n : 1;
        for (int k = 0; k < nc; k++) {
            if (a->finish[i][k] == ENGINE_FINISH_ABORTED || b->finish[i][k] == ENGINE_FINISH_ABORTED) {
                assert_true(jobs[i].abort_at >= 0);
                continue;
            }
            if (a->n_tokens[i][k] != b->n_tokens[i][k] || a->finish[i][k] != b->finish[i][k] ||
                memcmp(a->tokens[i][k], b->tokens[i][k], (size_t)a->n_tokens[i][k] * sizeof(int32_t)) != 0)
                fail_msg("%s: job %d choice %d differs (%d vs %d tokens, finish %d vs %d)", what, i, k,
                         a->n_tokens[i][k], b->n_tokens[i][k], a->finish[i][k], b->finish[i][k]);
        }
    }
}

/* n jobs over 3 prefix families (shared parts of random lengths, some crossing block
 * boundaries, some exact prefixes of others) plus unshared ones; half seeded sampling. */
static void make_jobs(mjob_t *jobs, int n, int vocab_lo, int vocab_hi, int max_prompt, uint64_t seed) {
    int32_t fam[3][MAXP];
    testutil_seed(seed);
    for (int f = 0; f < 3; f++)
        for (int k = 0; k < MAXP; k++) fam[f][k] = vocab_lo + (int32_t)(testutil_next() % (uint64_t)(vocab_hi - vocab_lo));
    for (int i = 0; i < n; i++) {
        mjob_t *j = &jobs[i];
        memset(j, 0, sizeof(*j));
        int np = 2 + (int)(testutil_next() % (uint64_t)(max_prompt - 1));
        int f = (int)(testutil_next() % 4); /* 3 = unshared */
        int shared = f < 3 ? (int)(testutil_next() % (uint64_t)(np + 1)) : 0;
        for (int k = 0; k < np; k++)
            j->prompt[k] = k < shared ? fam[f][k] : vocab_lo + (int32_t)(testutil_next() % (uint64_t)(vocab_hi - vocab_lo));
        j->q.prompt = j->prompt;
        j->q.n_prompt = np;
        j->q.max_tokens = 1 + (int)(testutil_next() % 24);
        j->q.ignore_eos = true;
        j->q.top_p = 1.0f;
        if (i % 2) {
            j->q.temperature = 0.9f;
            j->q.top_p = 0.95f;
            j->q.has_seed = true;
            j->q.seed = 500 + (uint64_t)i;
        }
        if (i % 7 == 3) j->q.n = 2 + (int)(testutil_next() % (MAXN - 1));
        j->arrive = (int)(testutil_next() % 12);
        j->abort_at = i % 9 == 4 ? j->arrive + (int)(testutil_next() % 6) : -1;
    }
}

static void property_case(const char *path, int n, int vocab_lo, int vocab_hi, int max_prompt, uint64_t seed) {
    static mjob_t jobs[MAXJ];
    static mres_t off, on, tiny, chunked;
    make_jobs(jobs, n, vocab_lo, vocab_hi, max_prompt, seed);
    mcfg_t c_off = {path, false, 16, 128, 0, 0};
    mcfg_t c_on = {path, true, 16, 128, 0, 0};
    /* tiny cache, optimistic admission: sequences holding shared blocks get preempted */
    mcfg_t c_tiny = {path, true, 8, 48, (max_prompt + 24 + 15) / 16 * 16, 100}; /* the longest job just fits */
    mcfg_t c_chunk = {path, true, 4, 16, 0, 0};
    run_mix(&c_off, jobs, n, &off);
    run_mix(&c_on, jobs, n, &on);
    run_mix(&c_tiny, jobs, n, &tiny);
    run_mix(&c_chunk, jobs, n, &chunked);
    same_output(jobs, n, &off, &on, "cache on");
    same_output(jobs, n, &off, &tiny, "cache on, tiny KV (preemption)");
    same_output(jobs, n, &off, &chunked, "cache on, 16-token steps");
    assert_int_equal(off.st.prefix_hit_tokens, 0);
    assert_int_equal(off.st.prefix_queries_tokens, 0);
    assert_true(on.st.prefix_hit_tokens > 0);
    assert_true(on.st.prefix_hit_tokens < on.st.prefix_queries_tokens);
    assert_true(tiny.st.preemptions > 0);
    assert_true(tiny.st.prefix_hit_tokens > 0);
    int cached_on = 0;
    for (int i = 0; i < n; i++) cached_on += on.cached[i][0];
    assert_true(cached_on > 0);
    print_message("property: %d jobs, hits %llu of %llu prompt tokens (on), %llu preemptions (tiny)\n", n,
                  (unsigned long long)on.st.prefix_hit_tokens, (unsigned long long)on.st.prefix_queries_tokens,
                  (unsigned long long)tiny.st.preemptions);
    mres_free(&off);
    mres_free(&on);
    mres_free(&tiny);
    mres_free(&chunked);
}

static void test_property_synthetic(void **state) {
    (void)state;
    property_case(g_syn_model, MAXJ, 32, 232, 180, 11);
}

static void test_property_default(void **state) {
    (void)state;
    if (!testutil_have_model() || testutil_sanitize()) {
        testutil_skip_note("default-model property test (model missing or SANITIZE=1)");
        return;
    }
    property_case(TESTUTIL_MODEL, 16, 100, 20000, 120, 12);
}

/* Requests sharing a prompt that arrive together: the first computes the shared
 * blocks, the others wait a step for them instead of prefilling them too. */
static void test_arrive_together(void **state) {
    (void)state;
    static mjob_t jobs[MAXJ];
    static mres_t on, off;
    memset(jobs, 0, sizeof(jobs));
    testutil_seed(77);
    for (int i = 0; i < 6; i++) {
        mjob_t *j = &jobs[i];
        for (int k = 0; k < 90; k++) j->prompt[k] = k < 80 ? 40 + k : 40 + (int32_t)(testutil_next() % 150);
        j->q = (engine_request_t){.prompt = j->prompt, .n_prompt = 90, .max_tokens = 5, .ignore_eos = true,
                                  .top_p = 1.0f};
        j->abort_at = -1;
    }
    mcfg_t c_on = {g_syn_model, true, 16, 512, 0, 0}, c_off = {g_syn_model, false, 16, 512, 0, 0};
    run_mix(&c_on, jobs, 6, &on);
    run_mix(&c_off, jobs, 6, &off);
    same_output(jobs, 6, &on, &off, "arriving together");
    assert_int_equal(on.st.prefix_hit_tokens, 5 * 80); /* 5 full blocks of 16 for each later request */
    assert_int_equal(on.cached[0][0], 0);
    for (int i = 1; i < 6; i++) assert_int_equal(on.cached[i][0], 80);
    mres_free(&on);
    mres_free(&off);
}

/* n = 4 choices equal 4 separate requests seeded with engine_choice_seed; the prompt's
 * full blocks are shared (cached_tokens of choices 1..3), also with the cache off;
 * aborting the id aborts every choice. */
static void test_choices(void **state) {
    (void)state;
    static mjob_t jobs[MAXJ];
    static mres_t a, b;
    for (int pass = 0; pass < 2; pass++) {
        const bool prefix = pass == 1;
        testutil_seed(5);
        memset(jobs, 0, sizeof(jobs));
        mjob_t *j = &jobs[0];
        j->q.n_prompt = 70;
        for (int k = 0; k < 70; k++) j->prompt[k] = 40 + (int32_t)(testutil_next() % 150);
        j->q.prompt = j->prompt;
        j->q.max_tokens = 10;
        j->q.ignore_eos = true;
        j->q.temperature = 1.0f;
        j->q.top_p = 1.0f;
        j->q.has_seed = true;
        j->q.seed = 4242;
        j->q.n = 4;
        j->abort_at = -1;
        for (int i = 1; i <= 4; i++) { /* separate requests, arriving later (no sharing with job 0) */
            jobs[i] = *j;
            jobs[i].q.prompt = jobs[i].prompt;
            jobs[i].q.n = 1;
            jobs[i].q.seed = engine_choice_seed(4242, i - 1);
            jobs[i].arrive = 40;
        }
        mjob_t *g = &jobs[5]; /* greedy n = 3: all alike */
        *g = *j;
        g->q.prompt = g->prompt;
        g->prompt[0] = 7;
        g->q.temperature = 0.0f;
        g->q.n = 3;
        mjob_t *ab = &jobs[6]; /* aborted after its prefill: every choice aborted */
        *ab = *g;
        ab->q.prompt = ab->prompt;
        ab->prompt[1] = 9;
        ab->q.max_tokens = 60;
        ab->abort_at = 3;
        mcfg_t c = {g_syn_model, prefix, 16, 256, 0, 0};
        run_mix(&c, jobs, 7, &a);
        for (int k = 0; k < 4; k++) {
            assert_int_equal(a.n_tokens[0][k], 10);
            assert_memory_equal(a.tokens[0][k], a.tokens[1 + k][0], 10 * sizeof(int32_t));
            assert_int_equal(a.cached[0][k], k == 0 ? 0 : 64); /* (70 - 1) / 16 full blocks shared */
        }
        assert_memory_not_equal(a.tokens[0][0], a.tokens[0][1], 10 * sizeof(int32_t));
        for (int k = 1; k < 3; k++) assert_memory_equal(a.tokens[5][0], a.tokens[5][k], 10 * sizeof(int32_t));
        for (int k = 0; k < 3; k++) assert_int_equal(a.finish[6][k], ENGINE_FINISH_ABORTED);
        if (pass == 0) {
            b = a;
            memset(&a, 0, sizeof(a));
        } else {
            jobs[6].abort_at = -1;
            same_output(jobs, 6, &a, &b, "choices, cache on vs off");
            mres_free(&a);
            mres_free(&b);
        }
    }
}

int main(void) {
    log_set_level(LOG_LVL_WARN);
    const struct CMUnitTest alloc[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_refcounts_and_partial),
        cmocka_unit_test(test_exact_prefix),
        cmocka_unit_test(test_eviction_order),
        cmocka_unit_test(test_parent_evicted),
        cmocka_unit_test(test_share_and_off),
        cmocka_unit_test(test_stress),
    };
    int rc = cmocka_run_group_tests_name("prefix cache: allocator", alloc, NULL, NULL);
    char dir[900];
    snprintf(dir, sizeof(dir), "%s/models/synthetic-engine", testutil_build_dir());
    snprintf(g_syn_model, sizeof(g_syn_model), "%s/llama_gqa.gguf", dir);
    int wrote = testutil_write_gguf("make_engine_model.py", dir, NULL);
    if (wrote == 1) return 1;
    if (wrote == 0) {
        const struct CMUnitTest eng[] = {
            cmocka_unit_test(test_property_synthetic),
            cmocka_unit_test(test_choices),
            cmocka_unit_test(test_arrive_together),
            cmocka_unit_test(test_property_default),
        };
        rc |= cmocka_run_group_tests_name("prefix cache: engine", eng, NULL, NULL);
    }
    return testutil_exit(rc);
}
