/* test_engine_limits.c — engine_set_limits(), the hook of the adaptive batching
 * controller: the budgets it sets bound every following step (tokens and sequences),
 * they are capped by what the engine was opened with, a lowered max_seqs stops
 * admission without stalling or preempting the running sequences, and every request
 * still gets its full answer. Uses the synthetic model of test_engine
 * (tests/reference/make_engine_model.py, written at test time). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <unistd.h>

#include "engine.h"
#include "log.h"
#include "testutil.h"

static char g_model[1024];

static engine_t *open_engine(int max_seqs, int max_batch) {
    engine_config_t cfg;
    engine_config_defaults(&cfg);
    cfg.model_path = g_model;
    cfg.backend = "cpu";
    cfg.n_threads = 1;
    cfg.max_seqs = max_seqs;
    cfg.max_batch_tokens = max_batch;
    cfg.seed = 7;
    char err[512];
    engine_t *e = engine_open(&cfg, err, sizeof err);
    if (!e) fail_msg("engine_open: %s", err);
    return e;
}

static void submit(engine_t *e, uint64_t id, int n_prompt, int max_tokens) {
    int32_t prompt[256];
    for (int i = 0; i < n_prompt; i++) prompt[i] = 3 + (int32_t)((id * 31 + (uint64_t)i * 7) % 200);
    engine_request_t q = {0};
    q.id = id;
    q.prompt = prompt;
    q.n_prompt = n_prompt;
    q.max_tokens = max_tokens;
    q.min_tokens = max_tokens;
    q.ignore_eos = true;
    q.top_p = 1;
    char err[256];
    if (engine_submit(e, &q, err, sizeof err) != ENGINE_OK) fail_msg("submit: %s", err);
}

/* Steps until n results came back; checks each step against the limits the callback gives. */
static int drain(engine_t *e, int n, int max_seqs, int max_tokens, int *max_seen_tokens) {
    engine_result_t r[16];
    int got = 0, steps = 0;
    while (got < n && steps < 100000) {
        int seqs = engine_step(e);
        steps++;
        engine_stats_t st;
        engine_get_stats(e, &st);
        if (seqs > 0) {
            assert_true(st.last_step_tokens <= max_tokens);
            assert_true(st.last_step_seqs <= max_seqs);
            if (st.last_step_tokens > *max_seen_tokens) *max_seen_tokens = st.last_step_tokens;
        }
        size_t k = engine_poll(e, r, 16);
        for (size_t i = 0; i < k; i++) {
            assert_int_equal(r[i].finish, ENGINE_FINISH_LENGTH);
            assert_int_equal(r[i].completion_tokens, 6);
            engine_result_clear(&r[i]);
        }
        got += (int)k;
    }
    return got;
}

static void test_limits_bound_steps(void **state) {
    (void)state;
    engine_t *e = open_engine(8, 64);
    const engine_info_t *info = engine_get_info(e);
    assert_int_equal(info->max_seqs, 8);
    assert_int_equal(info->max_batch_tokens, 64);
    /* lowered: every step within 2 sequences and 16 tokens */
    engine_set_limits(e, 2, 16);
    for (uint64_t i = 0; i < 6; i++) submit(e, i, 40, 6);
    int seen = 0;
    assert_int_equal(drain(e, 6, 2, 16, &seen), 6);
    assert_int_equal(seen, 16); /* the 40-token prompts are chunked at the budget */
    /* raised beyond the opened sizes: capped at 8 / 64, and the budget is really used */
    engine_set_limits(e, 1000, 100000);
    for (uint64_t i = 10; i < 16; i++) submit(e, i, 40, 6);
    seen = 0;
    assert_int_equal(drain(e, 6, 8, 64, &seen), 6);
    assert_int_equal(seen, 64);
    /* <= 0 keeps a limit */
    engine_set_limits(e, 0, 24);
    engine_set_limits(e, 3, -1);
    for (uint64_t i = 20; i < 26; i++) submit(e, i, 40, 6);
    seen = 0;
    assert_int_equal(drain(e, 6, 3, 24, &seen), 6);
    assert_int_equal(seen, 24);
    engine_close(e);
}

/* Lowering max_seqs while 6 sequences run: they all keep stepping (no stall, no
 * preemption); a newly submitted request waits until fewer than 2 run. */
static void test_lower_seqs_while_running(void **state) {
    (void)state;
    engine_t *e = open_engine(8, 256);
    for (uint64_t i = 0; i < 6; i++) submit(e, i, 10, 6);
    engine_stats_t st;
    int seqs = engine_step(e); /* admits and prefills all 6 */
    assert_int_equal(seqs, 6);
    engine_set_limits(e, 2, 0);
    submit(e, 99, 10, 6);
    seqs = engine_step(e);
    engine_get_stats(e, &st);
    assert_int_equal(seqs, 6);          /* the 6 running decode together */
    assert_int_equal(st.last_step_tokens, 6);
    assert_int_equal(st.waiting, 1);    /* request 99 not admitted */
    assert_int_equal(st.preemptions, 0);
    engine_result_t r[16];
    int got = 0, guard = 0;
    while (got < 7 && guard++ < 1000) {
        engine_step(e);
        size_t k = engine_poll(e, r, 16);
        for (size_t i = 0; i < k; i++) {
            assert_int_equal(r[i].completion_tokens, 6);
            engine_result_clear(&r[i]);
        }
        got += (int)k;
    }
    assert_int_equal(got, 7);
    engine_close(e);
}

int main(void) {
    log_set_level(LOG_LVL_WARN);
    char dir[900];
    snprintf(dir, sizeof dir, "%s/models/synthetic-engine", testutil_build_dir());
    snprintf(g_model, sizeof g_model, "%s/llama_gqa.gguf", dir);
    if (access(g_model, R_OK) != 0) { /* test_engine writes it; written here when run alone */
        int wrote = testutil_write_gguf("make_engine_model.py", dir, NULL);
        if (wrote) return wrote; /* 77: no venv (noted), 1: the writer failed (its log shown) */
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limits_bound_steps),
        cmocka_unit_test(test_lower_seqs_while_running),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
