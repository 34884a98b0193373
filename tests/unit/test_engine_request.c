/* test_engine_request.c — the engine API's one check of a request (engine_request.h),
 * made at engine_submit before the scheduler sees it: every field out of range, a
 * token outside the vocabulary, too long for the context, too long for the whole KV
 * cache, and the exact fits on each boundary. Needs no model: the limits are an
 * engine_info_t (test_engine.c checks the same path through a real engine). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>

#include "engine_request.h"

/* the sizes of test_scheduler's small fake: vocabulary 64, context 128, a cache of
 * 20 blocks of 4 tokens */
static const engine_info_t INFO = {.n_ctx = 128, .n_vocab = 64, .kv_cache_tokens = 80};

static int check(const engine_request_t *q, char *err, size_t errlen) {
    return engine_request_check(&INFO, q, err, errlen);
}

static void test_context_and_cache(void **state) {
    (void)state;
    char err[256];
    int32_t p[120] = {0};
    engine_request_t q = {.id = 50, .prompt = p, .n_prompt = 100, .max_tokens = 40, .top_p = 1.0f};
    assert_int_equal(check(&q, err, sizeof(err)), ENGINE_ERR_CONTEXT);
    assert_non_null(strstr(err, "context"));
    q.n_prompt = 88; /* exactly the context: 88 + 40 = 128, but 127 tokens of cache */
    assert_int_equal(check(&q, err, sizeof(err)), ENGINE_ERR_CONTEXT);
    assert_non_null(strstr(err, "cache"));
    q.n_prompt = 60; /* fits the context (60 + 40 <= 128) but not the whole cache (80) */
    assert_int_equal(check(&q, err, sizeof(err)), ENGINE_ERR_CONTEXT);
    assert_non_null(strstr(err, "cache"));
    q.n_prompt = 42; /* one token over: 42 + 40 - 1 = 81 */
    assert_int_equal(check(&q, err, sizeof(err)), ENGINE_ERR_CONTEXT);
    q.n_prompt = 41; /* exactly fits: 41 + 40 - 1 = 80 tokens of cache */
    assert_int_equal(check(&q, err, sizeof(err)), ENGINE_OK);
    const engine_info_t big = {.n_ctx = 128, .n_vocab = 64, .kv_cache_tokens = 1000};
    q.n_prompt = 88; /* exactly the context, with cache to spare */
    assert_int_equal(engine_request_check(&big, &q, err, sizeof(err)), ENGINE_OK);
}

static void test_fields(void **state) {
    (void)state;
    char err[256];
    int32_t p[120] = {0};
    engine_request_t q = {.id = 50, .prompt = p, .n_prompt = 41, .max_tokens = 40, .top_p = 1.0f};
    engine_request_t bad;
    bad = q, bad.n_prompt = 0;
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_ERR_INVALID);
    bad = q, bad.prompt = NULL;
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_ERR_INVALID);
    bad = q, bad.n_prompt = 10, bad.max_tokens = 0;
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_ERR_INVALID);
    bad = q, bad.n_prompt = 10, bad.temperature = 2.5f;
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_ERR_INVALID);
    bad = q, bad.n_prompt = 10, bad.top_p = 0.0f;
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_ERR_INVALID);
    bad = q, bad.n_prompt = 10, bad.min_p = 1.5f;
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_ERR_INVALID);
    bad = q, bad.n_prompt = 10, bad.presence_penalty = -3.0f;
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_ERR_INVALID);
    bad = q, bad.n_prompt = 10, bad.top_k = -1;
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_ERR_INVALID);
    bad = q, bad.n_prompt = 10, bad.min_tokens = 41;
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_ERR_INVALID);
    bad = q, bad.n_prompt = 10, bad.n_stop = 1, bad.stop[0] = "";
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_ERR_INVALID);
    bad = q, bad.n_prompt = 10, bad.n_stop = 5;
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_ERR_INVALID);
    p[3] = 64;
    bad = q, bad.n_prompt = 10;
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_ERR_INVALID);
    assert_non_null(strstr(err, "vocabulary"));
    p[3] = -1;
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_ERR_INVALID);
    p[3] = 63; /* the last id of the vocabulary */
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_OK);
    /* every range's edges are accepted */
    bad = q, bad.temperature = 2.0f, bad.top_p = 1.0f, bad.min_p = 1.0f, bad.presence_penalty = -2.0f,
    bad.frequency_penalty = 2.0f, bad.min_tokens = 40, bad.n_stop = 4;
    const char *stops[4] = {"a", "b", "c", "d"};
    memcpy(bad.stop, stops, sizeof(stops));
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_OK);
    /* n choices: 0 (= 1) .. ENGINE_MAX_CHOICES */
    bad = q, bad.n = -1;
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_ERR_INVALID);
    assert_non_null(strstr(err, "n is -1"));
    bad.n = ENGINE_MAX_CHOICES + 1;
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_ERR_INVALID);
    bad.n = ENGINE_MAX_CHOICES;
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_OK);
    bad.n = 0;
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_OK);
}

/* structured outputs, logprobs, logit_bias: ranges here, compiling in test_grammar.c */
static void test_output_fields(void **state) {
    (void)state;
    char err[256];
    int32_t p[4] = {0};
    int32_t ids[2] = {5, 63};
    float bias[2] = {-100.0f, 100.0f};
    engine_request_t q = {.prompt = p, .n_prompt = 4, .max_tokens = 8, .top_p = 1.0f,
                          .logprobs = true, .top_logprobs = ENGINE_MAX_TOP_LOGPROBS,
                          .bias_ids = ids, .bias = bias, .n_bias = 2,
                          .grammar_kind = ENGINE_GRAMMAR_REGEX, .grammar = "[a-z]+", .grammar_len = 6};
    assert_int_equal(check(&q, err, sizeof(err)), ENGINE_OK); /* every edge accepted */
    engine_request_t bad;
    bad = q, bad.top_logprobs = ENGINE_MAX_TOP_LOGPROBS + 1;
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_ERR_INVALID);
    assert_non_null(strstr(err, "top_logprobs"));
    bad = q, bad.top_logprobs = -1;
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_ERR_INVALID);
    bad = q, bad.logprobs = false; /* alternatives without logprobs */
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_ERR_INVALID);
    ids[1] = 64;
    assert_int_equal(check(&q, err, sizeof(err)), ENGINE_ERR_INVALID);
    assert_non_null(strstr(err, "logit_bias"));
    ids[1] = 63, bias[0] = -100.5f;
    assert_int_equal(check(&q, err, sizeof(err)), ENGINE_ERR_INVALID);
    bias[0] = NAN;
    assert_int_equal(check(&q, err, sizeof(err)), ENGINE_ERR_INVALID);
    bias[0] = 0.0f;
    bad = q, bad.n_bias = ENGINE_MAX_BIAS + 1;
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_ERR_INVALID);
    bad = q, bad.bias = NULL;
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_ERR_INVALID);
    bad = q, bad.grammar_kind = (engine_grammar_kind_t)6;
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_ERR_INVALID);
    bad = q, bad.grammar_len = 0;
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_ERR_INVALID);
    assert_non_null(strstr(err, "grammar"));
    bad = q, bad.grammar_kind = ENGINE_GRAMMAR_JSON_OBJECT, bad.grammar = NULL, bad.grammar_len = 0;
    assert_int_equal(check(&bad, err, sizeof(err)), ENGINE_OK);
    /* an engine without grammar support refuses, naming why */
    assert_int_equal(engine_request_check_grammar(NULL, &q, err, sizeof(err)), ENGINE_ERR_INVALID);
    assert_non_null(strstr(err, "structured output"));
    bad = q, bad.grammar_kind = ENGINE_GRAMMAR_NONE;
    assert_int_equal(engine_request_check_grammar(NULL, &bad, err, sizeof(err)), ENGINE_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_context_and_cache),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_output_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
