/* test_qparity.c — what quantized CPU weights cost in accuracy, on the default model
 * against the committed transformers references (tests/data/greedy/greedy.json: 24
 * prompts, up to 64 greedy tokens each, transformers fp32 on the same GGUF's weights).
 *
 * - free-running greedy parity (the rule for cpu_weights=auto, issue 14: the most
 *   compact layout that keeps >= 95 % identical): the 24 prompts as one batch through
 *   the engine; a case's tokens count as identical up to its first difference from the
 *   reference (after it the continuations are not comparable). auto (q4 for the
 *   default model's Q4_1 matrices, q8 for its Q8_0 embedding / tied head; two-plane
 *   activations, qmat.h) must keep >= 95 %; f32, q4 and q8 are printed too.
 * - teacher-forced parity: each case's prompt + reference output as one prefill
 *   through the model with f32, auto, q4 and q8 weights; at every generated position
 *   the argmax must equal transformers' next token on >= 95 % of the positions (f32: all).
 *   Also printed: the max |logit - f32 logit| and the largest relative L2 error of a
 *   position's logit row. auto's logits must be bitwise q4's here (the same layout
 *   per tensor for this file's types).
 *
 * Printed figures are what docs/engine.md reports. Skipped without the default model
 * and under SANITIZE=1 (minutes there; test_qmatmul covers the kernels). */
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "engine.h"
#include "gguf.h"
#include "log.h"
#include "model.h"
#include "testutil.h"

#define GREEDY_JSON "tests/data/greedy/greedy.json"

typedef struct {
    int n;
    int32_t **prompt, **want;
    int *n_prompt, *n_want;
    int max_new;
    json_t *doc;
} cases_t;

static int32_t *ids(json_t *a, int *n) {
    *n = (int)json_array_size(a);
    int32_t *v = testutil_xmalloc(sizeof(int32_t) * (size_t)(*n > 0 ? *n : 1));
    for (int i = 0; i < *n; i++) v[i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i));
    return v;
}

static void cases_load(cases_t *c) {
    json_error_t jerr;
    c->doc = json_load_file(GREEDY_JSON, 0, &jerr);
    if (!c->doc) fail_msg("%s: %s", GREEDY_JSON, jerr.text);
    json_t *cs = json_object_get(c->doc, "cases");
    c->n = (int)json_array_size(cs);
    c->max_new = (int)json_integer_value(json_object_get(c->doc, "max_new_tokens"));
    c->prompt = calloc((size_t)c->n, sizeof(int32_t *));
    c->want = calloc((size_t)c->n, sizeof(int32_t *));
    c->n_prompt = calloc((size_t)c->n, sizeof(int));
    c->n_want = calloc((size_t)c->n, sizeof(int));
    for (int i = 0; i < c->n; i++) {
        json_t *x = json_array_get(cs, (size_t)i);
        c->prompt[i] = ids(json_object_get(x, "prompt_ids"), &c->n_prompt[i]);
        c->want[i] = ids(json_object_get(x, "output_ids"), &c->n_want[i]);
    }
}

static void cases_free(cases_t *c) {
    for (int i = 0; i < c->n; i++) free(c->prompt[i]), free(c->want[i]);
    free(c->prompt), free(c->want), free(c->n_prompt), free(c->n_want);
    json_decref(c->doc);
}

/* Identical reference tokens (prefix per case) with cpu_weights w; total in *total. */
static int greedy_identical(const cases_t *c, const char *w, int *total) {
    engine_config_t cfg;
    engine_config_defaults(&cfg);
    cfg.model_path = TESTUTIL_MODEL;
    cfg.backend = "cpu";
    cfg.n_threads = 2;
    cfg.max_seqs = 64;
    cfg.max_batch_tokens = 2048;
    cfg.cpu_weights = w;
    cfg.seed = 1;
    char err[512];
    engine_t *e = engine_open(&cfg, err, sizeof err);
    if (!e) fail_msg("engine_open (cpu_weights %s): %s", w ? w : "NULL", err);
    for (int i = 0; i < c->n; i++) {
        engine_request_t q = {.id = (uint64_t)i, .prompt = c->prompt[i], .n_prompt = c->n_prompt[i],
                              .max_tokens = c->max_new, .top_p = 1.0f};
        if (engine_submit(e, &q, err, sizeof err) != ENGINE_OK) fail_msg("submit: %s", err);
    }
    int got = 0, same = 0, steps = 0;
    *total = 0;
    while (got < c->n) {
        if (++steps > 100000) fail_msg("no progress");
        engine_step(e);
        engine_result_t r;
        while (engine_poll(e, &r, 1) == 1) {
            const int i = (int)r.id;
            int k = 0;
            while (k < r.n_tokens && k < c->n_want[i] && r.tokens[k] == c->want[i][k]) k++;
            same += k;
            *total += c->n_want[i];
            if (k < c->n_want[i]) printf("    %s: case %d differs from token %d of %d\n", w, i, k, c->n_want[i]);
            engine_result_clear(&r);
            got++;
        }
    }
    engine_close(e);
    return same;
}

static void test_free_running(void **state) {
    (void)state;
    cases_t c;
    cases_load(&c);
    static const char *modes[] = {"auto", "f32", "q4", "q8"};
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        int total = 0;
        const int same = greedy_identical(&c, modes[m], &total);
        printf("  free-running greedy, cpu_weights=%s: %d of %d reference tokens identical before each case's "
               "first difference (%.2f %%)\n", modes[m], same, total, 100.0 * same / total);
        assert_true(total > 0);
        if (!strcmp(modes[m], "auto")) assert_true(same * 100 >= 95 * total);
    }
    cases_free(&c);
}

/* Logits (n_tok, V) of one sequence's teacher-forced prefill. */
static float *forward_all(model_t *m, const int32_t *tok, int n, int V) {
    int32_t *pos = testutil_xmalloc(sizeof(int32_t) * n), *seq = testutil_xmalloc(sizeof(int32_t) * n);
    int32_t *rows = testutil_xmalloc(sizeof(int32_t) * n);
    const int bs = model_kv_block_size(m), nb = (n + bs - 1) / bs;
    int32_t *table = testutil_xmalloc(sizeof(int32_t) * nb);
    for (int i = 0; i < n; i++) pos[i] = i, seq[i] = 0, rows[i] = i;
    for (int i = 0; i < nb; i++) table[i] = i;
    const int32_t len = n;
    float *out = testutil_xmalloc(sizeof(float) * (size_t)n * V);
    model_batch_t b = {.n_tokens = n, .tokens = tok, .pos = pos, .seq = seq, .n_seqs = 1, .seq_len = &len,
                       .block_table = table, .max_blocks = nb, .n_logits = n, .logit_rows = rows};
    if (model_forward(m, &b, out)) fail_msg("model_forward: %s", model_last_error(m));
    free(pos), free(seq), free(rows), free(table);
    return out;
}

static void test_teacher_forced(void **state) {
    (void)state;
    cases_t c;
    cases_load(&c);
    char err[512];
    gguf_t *g = gguf_open(TESTUTIL_MODEL, err, sizeof err);
    if (!g) fail_msg("gguf_open: %s", err);
    enum { NM = 4 };
    static const char *modes[NM] = {"f32", "auto", "q4", "q8"};
    model_t *m[NM];
    for (int k = 0; k < NM; k++) {
        model_params_t mp = {.backend = "cpu", .n_threads = 2, .max_batch_tokens = 1024, .max_seqs = 1,
                             .kv_cache_tokens = 1024, .cpu_weights = modes[k]};
        if (!(m[k] = model_load(g, &mp, err, sizeof err))) fail_msg("model_load %s: %s", modes[k], err);
    }
    const int V = model_hparams(m[0])->n_vocab;
    double max_abs[NM] = {0}, max_rel[NM] = {0};
    int agree[NM] = {0}, positions = 0;
    for (int i = 0; i < c.n; i++) {
        const int n = c.n_prompt[i] + c.n_want[i] - 1; /* the last output token predicts nothing checked */
        int32_t *tok = testutil_xmalloc(sizeof(int32_t) * n);
        memcpy(tok, c.prompt[i], sizeof(int32_t) * c.n_prompt[i]);
        memcpy(tok + c.n_prompt[i], c.want[i], sizeof(int32_t) * (c.n_want[i] - 1));
        float *lg[NM];
        for (int k = 0; k < NM; k++) lg[k] = forward_all(m[k], tok, n, V);
        /* this file's matrices are Q4_1 (-> q4) and a Q8_0 embedding (-> q8) under both
         * auto and q4: the same layouts, so the same bits (model.c tensor_wdt) */
        assert_memory_equal(lg[1], lg[2], sizeof(float) * (size_t)n * V);
        for (int p = c.n_prompt[i] - 1; p < n; p++) {
            const int32_t next = c.want[i][p - c.n_prompt[i] + 1];
            positions++;
            for (int k = 0; k < NM; k++) {
                const float *row = lg[k] + (size_t)p * V, *ref = lg[0] + (size_t)p * V;
                int best = 0;
                double d2 = 0, r2 = 0;
                for (int v = 0; v < V; v++) {
                    if (row[v] > row[best]) best = v;
                    const double d = fabs((double)row[v] - ref[v]);
                    if (d > max_abs[k]) max_abs[k] = d;
                    d2 += d * d;
                    r2 += (double)ref[v] * ref[v];
                }
                if (sqrt(d2 / r2) > max_rel[k]) max_rel[k] = sqrt(d2 / r2);
                agree[k] += best == next;
            }
        }
        for (int k = 0; k < NM; k++) free(lg[k]);
        free(tok);
    }
    for (int k = 0; k < NM; k++) {
        printf("  teacher-forced, cpu_weights=%s: argmax = transformers' token at %d of %d positions (%.2f %%); "
               "vs f32 weights: max |logit error| %.4f, max relative L2 %.2e\n",
               modes[k], agree[k], positions, 100.0 * agree[k] / positions, max_abs[k], max_rel[k]);
        assert_true(agree[k] * 100 >= 95 * positions);
        if (k == 0) assert_int_equal(agree[k], positions);
        model_free(m[k]);
    }
    assert_true(max_abs[0] == 0.0);
    gguf_close(g);
    cases_free(&c);
}

int main(void) {
    log_set_level(LOG_LVL_WARN);
    if (!testutil_have_model()) return testutil_exit(0);
    if (testutil_sanitize()) {
        testutil_skip_note("default-model parity is minutes under SANITIZE=1 (test_qmatmul covers the kernels)");
        return testutil_exit(0);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_teacher_forced),
        cmocka_unit_test(test_free_running),
    };
    if (getenv("KRILL_TEST_ONLY")) cmocka_set_test_filter(getenv("KRILL_TEST_ONLY")); /* one test by name */
    return testutil_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
