/* test_logprobs.c — greedy logprobs on the default model against transformers' fp32
 * log-softmax (tests/data/logprobs/logprobs.json, tests/reference/gen_logprobs.py):
 * for each prompt (the reference's own prompt ids, so tokenization is not under test
 * here), every generated position's chosen id, its log-probability and the top 5
 * alternatives must agree within 1e-3 (ids compared where the reference's neighbouring
 * values are more than 2e-3 apart, so a near-tie may swap). A position where the
 * greedy choice itself is a near-tie (gap < 1e-3) ends that prompt's comparison (the
 * continuations may then differ). The engine runs on the CPU with an f32 KV cache,
 * the precision of the reference; all prompts are submitted together (a batch).
 * Also: logit_bias moves the choice but not the logprobs (taken before the bias).
 * Needs the default model; without it SKIP (exit 77). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "testutil.h"

#define TOL 1e-3
#define VECTORS "tests/data/logprobs/logprobs.json"
#define N_TOP 5

static engine_t *open_engine(void) {
    engine_config_t cfg;
    engine_config_defaults(&cfg);
    cfg.model_path = TESTUTIL_MODEL;
    cfg.backend = "cpu";
    cfg.kv_dtype = "f32";
    cfg.context = 512;
    cfg.seed = 1;
    char err[512];
    engine_t *e = engine_open(&cfg, err, sizeof(err));
    if (!e) fail_msg("engine_open: %s", err);
    return e;
}

static void run_all(engine_t *e, engine_request_t *q, int n, engine_result_t *res) {
    char err[512];
    for (int i = 0; i < n; i++)
        if (engine_submit(e, &q[i], err, sizeof(err)) != ENGINE_OK) fail_msg("submit %d: %s", i, err);
    int got = 0;
    while (got < n) {
        engine_step(e);
        got += (int)engine_poll(e, res + got, (size_t)(n - got));
    }
}

static void test_against_transformers(void **state) {
    (void)state;
    TESTUTIL_NEED_MODEL();
    json_error_t je;
    FILE *f = fopen(VECTORS, "r");
    if (!f) { /* the vectors are generated with the reference venv, then committed */
        testutil_skip_note("%s missing: run tests/reference/gen_logprobs.py with the reference venv", VECTORS);
        skip();
    }
    fclose(f);
    json_t *ref = json_load_file(VECTORS, 0, &je);
    if (!ref) fail_msg("%s: %s", VECTORS, je.text);
    json_t *cases = json_object_get(ref, "cases");
    const int n = (int)json_array_size(cases);
    assert_true(n > 0);
    engine_request_t *q = calloc((size_t)n, sizeof(*q));
    engine_result_t *res = calloc((size_t)n, sizeof(*res));
    int32_t **prompts = calloc((size_t)n, sizeof(int32_t *));
    for (int i = 0; i < n; i++) {
        json_t *c = json_array_get(cases, i), *p = json_object_get(c, "prompt");
        prompts[i] = malloc(json_array_size(p) * sizeof(int32_t));
        for (size_t k = 0; k < json_array_size(p); k++) prompts[i][k] = (int32_t)json_integer_value(json_array_get(p, k));
        q[i] = (engine_request_t){.id = (uint64_t)i, .prompt = prompts[i], .n_prompt = (int)json_array_size(p),
                                  .max_tokens = (int)json_array_size(json_object_get(c, "steps")), .top_p = 1.0f,
                                  .logprobs = true, .top_logprobs = N_TOP};
    }
    engine_t *e = open_engine();
    run_all(e, q, n, res);
    int compared = 0;
    double worst = 0.0;
    for (int r = 0; r < n; r++) {
        const engine_result_t *o = &res[r];
        const int i = (int)o->id;
        json_t *steps = json_object_get(json_array_get(cases, i), "steps");
        assert_int_equal(o->finish == ENGINE_FINISH_ERROR, 0);
        assert_non_null(o->logprobs);
        assert_non_null(o->top);
        assert_int_equal(o->n_top, N_TOP);
        for (int t = 0; t < o->n_tokens && t < (int)json_array_size(steps); t++) {
            json_t *s = json_array_get(steps, t), *top = json_object_get(s, "top");
            const int32_t want = (int32_t)json_integer_value(json_object_get(s, "id"));
            const double gap = json_real_value(json_object_get(s, "gap"));
            if (o->tokens[t] != want) {
                if (gap < TOL) break; /* a near-tie: the continuations may differ from here */
                fail_msg("prompt %d position %d: krill chose %d, transformers %d (gap %.3g)", i, t, o->tokens[t], want, gap);
            }
            const double d = fabs(o->logprobs[t] - json_real_value(json_object_get(s, "logprob")));
            if (d > worst) worst = d;
            if (d > TOL) fail_msg("prompt %d position %d: logprob %.6f vs %.6f", i, t, (double)o->logprobs[t],
                                  json_real_value(json_object_get(s, "logprob")));
            for (int j = 0; j < N_TOP; j++) {
                const engine_logprob_t *g = &o->top[(size_t)t * N_TOP + j];
                const double v = json_real_value(json_array_get(json_array_get(top, j), 1));
                const double dv = fabs(g->logprob - v);
                if (dv > worst) worst = dv;
                if (dv > TOL) fail_msg("prompt %d position %d rank %d: %.6f vs %.6f", i, t, j, (double)g->logprob, v);
                const double prev = j > 0 ? json_real_value(json_array_get(json_array_get(top, j - 1), 1)) : INFINITY;
                const double next = j + 1 < N_TOP ? json_real_value(json_array_get(json_array_get(top, j + 1), 1)) : -INFINITY;
                if (prev - v > 2 * TOL && v - next > 2 * TOL)
                    assert_int_equal(g->id, json_integer_value(json_array_get(json_array_get(top, j), 0)));
                if (j > 0) assert_true(g->logprob <= o->top[(size_t)t * N_TOP + j - 1].logprob);
            }
            compared++;
        }
    }
    print_message("%d prompts, %d positions compared, worst |difference| %.2e (tolerance %.0e)\n", n, compared, worst, TOL);
    assert_true(compared >= n * 4);
    for (int i = 0; i < n; i++) {
        engine_result_clear(&res[i]);
        free(prompts[i]);
    }
    free(prompts);
    free(q);
    free(res);
    engine_close(e);
    json_decref(ref);
}

/* logit_bias changes what is chosen, not the reported log-probabilities */
static void test_bias_after_logprobs(void **state) {
    (void)state;
    TESTUTIL_NEED_MODEL();
    engine_t *e = open_engine();
    int32_t *ids = NULL;
    int n_ids = 0;
    char err[256];
    assert_int_equal(engine_tokenize(e, "The capital of France is", 24, false, false, &ids, &n_ids, err, sizeof(err)), 0);
    engine_request_t q[2] = {
        {.id = 0, .prompt = ids, .n_prompt = n_ids, .max_tokens = 1, .top_p = 1.0f, .logprobs = true, .top_logprobs = 3},
        {.id = 1, .prompt = ids, .n_prompt = n_ids, .max_tokens = 1, .top_p = 1.0f, .logprobs = true, .top_logprobs = 3}};
    engine_result_t res[2];
    run_all(e, q, 1, res);
    /* ban the greedy choice: the second-best is chosen, with its unbiased logprob */
    int32_t banned = res[0].tokens[0];
    float minus = -100.0f;
    q[1].bias_ids = &banned, q[1].bias = &minus, q[1].n_bias = 1;
    run_all(e, q + 1, 1, res + 1);
    assert_int_equal(res[0].top[0].id, banned);
    assert_int_equal(res[1].tokens[0], res[0].top[1].id);
    assert_true(res[1].logprobs[0] == res[0].top[1].logprob);
    for (int j = 0; j < 3; j++) assert_true(res[1].top[j].id == res[0].top[j].id && res[1].top[j].logprob == res[0].top[j].logprob);
    engine_result_clear(&res[0]);
    engine_result_clear(&res[1]);
    free(ids);
    engine_close(e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_transformers),
        cmocka_unit_test(test_bias_after_logprobs),
    };
    return testutil_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
