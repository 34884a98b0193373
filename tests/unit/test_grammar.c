/* test_grammar.c — the llguidance wiring (grammar.h) on the default model's vocabulary:
 *   - the vocabulary handed to llguidance round-trips every token (its bytes as krill's
 *     detokenizer gives them, control tokens flagged and decoded back by llguidance);
 *   - masks agree with a brute-force check on small grammars: for every token of the
 *     vocabulary, does appending its bytes keep the text a valid prefix of the language?
 *     The oracle is PCRE2 partial matching (an independent regex engine) for regexes
 *     and choice lists, walked along a path of tokens until the grammar ends;
 *   - the compiled-grammar cache (hits, the LRU bound) and compiler errors;
 *   - forked sequences (grammar_seq_clone) advance independently.
 * Needs the default model (scripts/fetch-model.sh); without it: SKIP, exit 77. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "engine.h"
#include "gguf.h"
#include "grammar.h"
#include "testutil.h"
#include "tokenizer.h"

static gguf_t *g_gguf;
static tokenizer_t *g_tok;
static grammar_t *g_gr;

static int setup(void **state) {
    (void)state;
    if (!testutil_have_model()) return 0;
    char err[256];
    g_gguf = gguf_open(TESTUTIL_MODEL, err, sizeof(err));
    if (!g_gguf) return fprintf(stderr, "%s\n", err), -1;
    g_tok = tokenizer_load(g_gguf, err, sizeof(err));
    if (!g_tok) return fprintf(stderr, "%s\n", err), -1;
    g_gr = grammar_new(g_tok, err, sizeof(err));
    if (!g_gr) return fprintf(stderr, "%s\n", err), -1;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    grammar_free(g_gr);
    tokenizer_free(g_tok);
    gguf_close(g_gguf);
    return 0;
}

#define NEED()                 \
    do {                       \
        if (!g_gr) skip();     \
    } while (0)

static void test_vocab_roundtrip(void **state) {
    (void)state;
    NEED();
    const int n = tokenizer_n_vocab(g_tok);
    assert_int_equal(grammar_n_vocab(g_gr), n);
    assert_int_equal(grammar_mask_words(g_gr), (n + 31) / 32);
    char mine[512], back[512];
    int n_special = 0;
    for (int32_t id = 0; id < n; id++) {
        size_t len = 0;
        const uint8_t *b = grammar_token_bytes(g_gr, id, &len);
        assert_non_null(b);
        int k = tokenizer_token_bytes(g_tok, id, false, mine, sizeof(mine));
        assert_true(k >= 0 && (size_t)k < sizeof(mine));
        if (k > 0) { /* ordinary token: exactly krill's bytes, and llguidance decodes them back */
            assert_int_equal(len, (size_t)k);
            assert_memory_equal(b, mine, len);
            size_t m = grammar_llg_decode(g_gr, id, false, back, sizeof(back));
            if (m != len || memcmp(back, mine, len) != 0) fail_msg("token %d does not round-trip", id);
        } else { /* control token: 0xFF + its string; llguidance gives the string with specials on */
            const char *str = tokenizer_token_str(g_tok, id);
            assert_int_equal(len, 1 + strlen(str));
            assert_int_equal(b[0], 0xFF);
            assert_memory_equal(b + 1, str, strlen(str));
            size_t m = grammar_llg_decode(g_gr, id, true, back, sizeof(back));
            if (m != strlen(str) || memcmp(back, str, m) != 0)
                fail_msg("control token %d (%s) does not round-trip: llguidance gives \"%.*s\"", id, str, (int)m, back);
            assert_int_equal(grammar_llg_decode(g_gr, id, false, back, sizeof(back)), 0);
            n_special++;
        }
    }
    assert_null(grammar_token_bytes(g_gr, n, &(size_t){0}));
    assert_true(n_special > 0 && n_special < 100);
    print_message("%d tokens round-trip (%d control)\n", n, n_special);
}

/* ---------------------------------------------------------------- masks vs brute force */

typedef struct {
    pcre2_code *re;
    pcre2_match_data *md;
} oracle_t;

/* 1: text is a complete string of the language; 0: a proper prefix of one; -1: neither */
static int oracle(const oracle_t *o, const char *text, size_t len) {
    int rc = pcre2_match(o->re, (PCRE2_SPTR)text, len, 0, PCRE2_PARTIAL_SOFT, o->md, NULL);
    if (rc >= 0) return 1;
    return rc == PCRE2_ERROR_PARTIAL ? 0 : -1;
}

static bool bit(const uint32_t *m, int t) { return (m[t / 32] >> (t % 32)) & 1u; }

/* Walks kind/text from the start: at each step the mask must equal the brute-force set
 * of tokens whose bytes keep the output a valid prefix (end-of-generation tokens: the
 * output is complete). The path takes the allowed ordinary token chosen by pick. */
static void walk(engine_grammar_kind_t kind, const char *text, const char *pattern, int pick_seed) {
    char err[512];
    int ecode;
    PCRE2_SIZE eoff;
    oracle_t o;
    /* byte mode (no UTF): the test grammars are ASCII, so a byte that is not ASCII never matches */
    char full[256];
    snprintf(full, sizeof(full), "(?:%s)\\z", pattern); /* partial matching refuses PCRE2_ENDANCHORED */
    o.re = pcre2_compile((PCRE2_SPTR)full, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED, &ecode, &eoff, NULL);
    assert_non_null(o.re);
    o.md = pcre2_match_data_create_from_pattern(o.re, NULL);
    grammar_seq_t *q = grammar_seq_new(g_gr, kind, text, strlen(text), err, sizeof(err));
    if (!q) fail_msg("%s: %s", text, err);
    const int n = grammar_n_vocab(g_gr), words = grammar_mask_words(g_gr);
    uint32_t *mask = malloc((size_t)words * sizeof(uint32_t));
    char out[256], buf[512];
    size_t out_len = 0;
    uint64_t rnd = (uint64_t)pick_seed * 0x9E3779B97F4A7C15ULL + 1;
    int steps = 0, checked = 0;
    for (;;) {
        grammar_masks_start(g_gr, &q, &mask, 1);
        grammar_masks_wait(g_gr);
        assert_null(grammar_seq_error(q));
        const bool complete = oracle(&o, out, out_len) == 1;
        /* Forced bytes: while exactly one next byte keeps the output valid (and it is not
         * complete), llguidance allows only the canonical tokenization of those bytes (its
         * first token), not every token that spells a prefix of them. There the mask must
         * be a subset of the brute-force set holding that token; elsewhere equal to it. */
        char forced[64];
        size_t n_forced = 0;
        memcpy(buf, out, out_len);
        for (bool cont = !complete; cont && n_forced < sizeof(forced);) {
            int n_next = 0, next = -1;
            for (int c = 1; c < 256; c++) {
                buf[out_len + n_forced] = (char)c;
                if (oracle(&o, buf, out_len + n_forced + 1) >= 0) n_next++, next = c;
            }
            cont = n_next == 1;
            if (cont) {
                buf[out_len + n_forced] = (char)next;
                forced[n_forced++] = (char)next;
                cont = oracle(&o, buf, out_len + n_forced) != 1;
            }
        }
        int32_t canon = -1;
        if (n_forced > 1) {
            int32_t *ids = NULL;
            size_t n_ids = 0;
            assert_int_equal(tokenizer_encode(g_tok, forced, n_forced, false, false, &ids, &n_ids, err, sizeof(err)), 0);
            canon = ids[0];
            free(ids);
            assert_true(bit(mask, canon));
        }
        int32_t cand[64];
        int n_cand = 0, n_allowed = 0;
        for (int32_t t = 0; t < n; t++) {
            size_t len;
            const uint8_t *b = grammar_token_bytes(g_gr, t, &len);
            bool want;
            if (tokenizer_is_eog(g_tok, t)) want = complete;
            else if (b[0] == 0xFF) want = false; /* other control tokens are never output */
            else {
                memcpy(buf, out, out_len);
                memcpy(buf + out_len, b, len);
                want = oracle(&o, buf, out_len + len) >= 0;
            }
            if (canon >= 0 ? (bit(mask, t) && !want) : want != bit(mask, t))
                fail_msg("grammar %s after \"%.*s\": token %d (\"%.*s\") mask %d, brute force %d", pattern,
                         (int)out_len, out, t, (int)len, (const char *)b, bit(mask, t), want);
            n_allowed += bit(mask, t);
            if (bit(mask, t) && !tokenizer_is_eog(g_tok, t) && n_cand < 64) cand[n_cand++] = t;
            checked++;
        }
        assert_true(n_allowed > 0);
        steps++;
        if (n_cand == 0 || steps > 40) { /* only the end is left: take it */
            int32_t eos = -1;
            for (int32_t t = 0; t < n && eos < 0; t++)
                if (bit(mask, t) && tokenizer_is_eog(g_tok, t)) eos = t;
            if (eos < 0) break; /* the path ran long: stop walking */
            assert_int_equal(grammar_seq_accept(q, eos, err, sizeof(err)), 1);
            break;
        }
        rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17;
        int32_t t = cand[rnd % (uint64_t)n_cand];
        size_t len;
        const uint8_t *b = grammar_token_bytes(g_gr, t, &len);
        assert_true(out_len + len < sizeof(out));
        memcpy(out + out_len, b, len);
        out_len += len;
        int rc = grammar_seq_accept(q, t, err, sizeof(err));
        assert_true(rc == 0 || rc == 1);
        if (rc == 1) break;
    }
    print_message("%-28s %d steps, %d token checks, output \"%.*s\"\n", pattern, steps, checked, (int)out_len, out);
    free(mask);
    grammar_seq_free(q);
    pcre2_match_data_free(o.md);
    pcre2_code_free(o.re);
}

static void test_masks_brute_force(void **state) {
    (void)state;
    NEED();
    walk(ENGINE_GRAMMAR_REGEX, "[0-9]{1,3}(\\.[0-9]+)?", "[0-9]{1,3}(\\.[0-9]+)?", 1);
    walk(ENGINE_GRAMMAR_REGEX, "a(bc)*d", "a(bc)*d", 2);
    walk(ENGINE_GRAMMAR_REGEX, "(yes|no|maybe)", "(yes|no|maybe)", 3);
    walk(ENGINE_GRAMMAR_REGEX, "\"[a-z ]{0,12}\"", "\"[a-z ]{0,12}\"", 4);
    walk(ENGINE_GRAMMAR_REGEX, "[A-Z][a-z]+( [A-Z][a-z]+)?", "[A-Z][a-z]+( [A-Z][a-z]+)?", 5);
    walk(ENGINE_GRAMMAR_CHOICE, "[\"red\", \"green\", \"dark green\", \"a.b*c\"]", "(red|green|dark green|a\\.b\\*c)", 6);
    walk(ENGINE_GRAMMAR_CHOICE, "[\"red\", \"green\", \"dark green\", \"a.b*c\"]", "(red|green|dark green|a\\.b\\*c)", 9);
    walk(ENGINE_GRAMMAR_LARK, "start: \"x\" NUM \"y\"\nNUM: /[0-9]{2,4}/", "x[0-9]{2,4}y", 7);
}

/* ---------------------------------------------------------------- cache, errors, clones */

static void test_cache_and_errors(void **state) {
    (void)state;
    NEED();
    char err[512];
    grammar_stats_t a, b;
    grammar_get_stats(g_gr, &a);
    const char *s = "{\"type\":\"object\",\"properties\":{\"k\":{\"type\":\"integer\"}},\"required\":[\"k\"]}";
    assert_int_equal(grammar_check(g_gr, ENGINE_GRAMMAR_JSON_SCHEMA, s, strlen(s), err, sizeof(err)), 0);
    assert_int_equal(grammar_check(g_gr, ENGINE_GRAMMAR_JSON_SCHEMA, s, strlen(s), err, sizeof(err)), 0);
    grammar_get_stats(g_gr, &b);
    assert_int_equal(b.compiles - a.compiles, 1);
    assert_int_equal(b.cache_hits - a.cache_hits, 1);
    /* the same text as another kind is another grammar */
    assert_int_equal(grammar_check(g_gr, ENGINE_GRAMMAR_REGEX, "[a-z]", 5, err, sizeof(err)), 0);
    assert_int_equal(grammar_check(g_gr, ENGINE_GRAMMAR_LARK, "start: /[a-z]/", 14, err, sizeof(err)), 0);
    /* the bound: GRAMMAR_CACHE_CAP + 6 distinct grammars, then the first again compiles anew */
    grammar_get_stats(g_gr, &a);
    char rx[64];
    for (int i = 0; i < GRAMMAR_CACHE_CAP + 6; i++) {
        snprintf(rx, sizeof(rx), "x{%d}", i + 1);
        assert_int_equal(grammar_check(g_gr, ENGINE_GRAMMAR_REGEX, rx, strlen(rx), err, sizeof(err)), 0);
    }
    assert_int_equal(grammar_check(g_gr, ENGINE_GRAMMAR_REGEX, "x{1}", 4, err, sizeof(err)), 0);
    grammar_get_stats(g_gr, &b);
    assert_int_equal(b.compiles - a.compiles, GRAMMAR_CACHE_CAP + 7);
    /* compiler errors come back with llguidance's message */
    struct {
        engine_grammar_kind_t kind;
        const char *text, *needle;
    } bad[] = {
        {ENGINE_GRAMMAR_JSON_SCHEMA, "{\"type\": \"objec\"}", "objec"},
        {ENGINE_GRAMMAR_JSON_SCHEMA, "{not json", ""},
        {ENGINE_GRAMMAR_REGEX, "[0-9", "unclosed"},
        {ENGINE_GRAMMAR_LARK, "start: undefined_rule", "undefined_rule"},
        {ENGINE_GRAMMAR_CHOICE, "[]", "non-empty"},
        {ENGINE_GRAMMAR_CHOICE, "[\"a\", 3]", "not a string"},
        {ENGINE_GRAMMAR_CHOICE, "{\"a\": 1}", "array"},
        {ENGINE_GRAMMAR_NONE, "x", "kind"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(grammar_check(g_gr, bad[i].kind, bad[i].text, strlen(bad[i].text), err, sizeof(err)), -1);
        if (!strstr(err, bad[i].needle) || !err[0]) fail_msg("%s: message \"%s\" lacks \"%s\"", bad[i].text, err, bad[i].needle);
    }
    assert_int_equal(grammar_check(g_gr, ENGINE_GRAMMAR_REGEX, "a\0b", 3, err, sizeof(err)), -1);
    assert_null(grammar_seq_new(g_gr, ENGINE_GRAMMAR_REGEX, "(", 1, err, sizeof(err)));
}

/* The id of the first token of text. */
static int32_t first_id(const char *text) {
    int32_t *ids = NULL;
    size_t n = 0;
    char err[256];
    assert_int_equal(tokenizer_encode(g_tok, text, strlen(text), false, false, &ids, &n, err, sizeof(err)), 0);
    int32_t id = ids[0];
    free(ids);
    return id;
}

static void test_clone_independent(void **state) {
    (void)state;
    NEED();
    char err[256];
    const int words = grammar_mask_words(g_gr);
    uint32_t *m1 = calloc((size_t)words, 4), *m2 = calloc((size_t)words, 4);
    const char *choices = "[\"ab\", \"cd\"]";
    grammar_seq_t *q = grammar_seq_new(g_gr, ENGINE_GRAMMAR_CHOICE, choices, strlen(choices), err, sizeof(err));
    assert_non_null(q);
    grammar_masks_start(g_gr, &q, &m1, 1);
    grammar_masks_wait(g_gr);
    const int32_t ta = first_id("a"), tc = first_id("c"), tb = first_id("b"), td = first_id("d");
    assert_true(bit(m1, ta) && bit(m1, tc));
    grammar_seq_t *c = grammar_seq_clone(q); /* forked at the start: both may take either branch */
    assert_int_equal(grammar_seq_accept(q, ta, err, sizeof(err)), 0);
    grammar_masks_start(g_gr, &c, &m2, 1);
    grammar_masks_wait(g_gr);
    assert_int_equal(grammar_seq_accept(c, tc, err, sizeof(err)), 0);
    grammar_seq_t *both[2] = {q, c};
    uint32_t *rows[2] = {m1, m2};
    grammar_masks_start(g_gr, both, rows, 2); /* one batch of two */
    grammar_masks_wait(g_gr);
    assert_true(bit(m1, tb) && !bit(m1, td));
    assert_true(bit(m2, td) && !bit(m2, tb));
    grammar_seq_free(q);
    grammar_seq_free(c);
    free(m1);
    free(m2);
}

/* ---------------------------------------------------------------- through the engine */

static void run(engine_t *e, engine_request_t *q, int n, engine_result_t *res) {
    char err[512];
    if (testutil_engine_run(e, q, n, res, err, sizeof(err)) != 0) fail_msg("%s", err);
}

/* A batch mixing constrained and unconstrained rows: the unconstrained ones produce what
 * they produce alone (they pay nothing and see nothing of the masks), the constrained
 * ones JSON that fits the schema and finish stop, and a seeded constrained sample is the
 * same alone and in the batch. Compile errors reach engine_submit as ENGINE_ERR_INVALID. */
static void test_engine_mixed_batch(void **state) {
    (void)state;
    NEED();
    engine_config_t cfg;
    engine_config_defaults(&cfg);
    cfg.model_path = TESTUTIL_MODEL;
    cfg.backend = "cpu";
    cfg.context = 512;
    cfg.seed = 1;
    char err[512];
    engine_t *e = engine_open(&cfg, err, sizeof(err));
    if (!e) fail_msg("%s", err);
    const char *schema = "{\"type\":\"object\",\"properties\":{\"answer\":{\"enum\":[\"yes\",\"no\"]},"
                         "\"n\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":99}},"
                         "\"required\":[\"answer\",\"n\"],\"additionalProperties\":false}";
    engine_chat_msg_t msg = {"user", "Is the sea salty? Answer in JSON with a number."};
    int32_t *ids = NULL;
    int n_ids = 0;
    assert_int_equal(engine_chat_tokenize(e, &msg, 1, false, &ids, &n_ids, NULL, err, sizeof(err)), 0);
    engine_request_t plain = {.prompt = ids, .n_prompt = n_ids, .max_tokens = 24, .top_p = 1.0f};
    engine_request_t cons = plain;
    cons.max_tokens = 60;
    cons.grammar_kind = ENGINE_GRAMMAR_JSON_SCHEMA, cons.grammar = schema, cons.grammar_len = strlen(schema);
    engine_request_t seeded = cons;
    seeded.temperature = 0.9f, seeded.has_seed = true, seeded.seed = 1234;
    engine_request_t q[5] = {plain, cons, plain, seeded, cons};
    for (int i = 0; i < 5; i++) q[i].id = (uint64_t)i;
    q[2].temperature = 0.7f, q[2].has_seed = true, q[2].seed = 99;
    q[4].logprobs = true, q[4].top_logprobs = 2;
    engine_result_t all[5], alone[5];
    run(e, q, 5, all);
    for (int i = 0; i < 5; i++) run(e, &q[i], 1, &alone[i]);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(all[i].finish == ENGINE_FINISH_ERROR, 0);
        if (all[i].n_tokens != alone[i].n_tokens ||
            memcmp(all[i].tokens, alone[i].tokens, (size_t)all[i].n_tokens * sizeof(int32_t)) != 0)
            fail_msg("request %d differs in a batch: \"%s\" vs alone \"%s\"", i, all[i].text, alone[i].text);
    }
    for (int i = 1; i < 5; i += (i == 1 ? 2 : 1)) { /* 1, 3, 4: constrained */
        json_error_t je;
        json_t *v = json_loads(all[i].text, 0, &je);
        if (!v) fail_msg("request %d: not JSON: \"%s\" (%s)", i, all[i].text, je.text);
        json_t *a = json_object_get(v, "answer"), *nn = json_object_get(v, "n");
        assert_true(json_is_string(a) && (!strcmp(json_string_value(a), "yes") || !strcmp(json_string_value(a), "no")));
        assert_true(json_is_integer(nn) && json_integer_value(nn) >= 0 && json_integer_value(nn) <= 99);
        assert_int_equal(json_object_size(v), 2);
        assert_int_equal(all[i].finish, ENGINE_FINISH_STOP);
        json_decref(v);
        print_message("constrained %d: %s\n", i, all[i].text);
    }
    assert_non_null(all[4].logprobs);
    assert_int_equal(all[4].n_top, 2);
    assert_null(all[1].logprobs);
    /* a grammar that does not compile: refused at submit with the compiler's message */
    engine_request_t bad = cons;
    bad.grammar = "{\"type\": 12}", bad.grammar_len = strlen(bad.grammar);
    assert_int_equal(engine_submit(e, &bad, err, sizeof(err)), ENGINE_ERR_INVALID);
    assert_non_null(strstr(err, "does not compile"));
    for (int i = 0; i < 5; i++) engine_result_clear(&all[i]), engine_result_clear(&alone[i]);
    free(ids);
    engine_close(e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vocab_roundtrip),
        cmocka_unit_test(test_masks_brute_force),
        cmocka_unit_test(test_cache_and_errors),
        cmocka_unit_test(test_clone_independent),
        cmocka_unit_test(test_engine_mixed_batch),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    return testutil_exit(rc);
}
