/* test_sampler.c — the sampler against an independent, sort-based reference of the
 * same definitions (OpenAI penalties; top-k, top-p, min-p), by exact checks (greedy,
 * penalties, RNG) and by frequencies over many draws; stop-string matching. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sampler.h"

/* ---------------------------------------------------------------- RNG */

static void test_rng(void **state) {
    (void)state;
    sampler_rng_t a, b, c;
    sampler_rng_seed(&a, 42);
    sampler_rng_seed(&b, 42);
    sampler_rng_seed(&c, 43);
    int diff = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = sampler_rng_next(&a), y = sampler_rng_next(&b), z = sampler_rng_next(&c);
        assert_true(x == y);
        diff += x != z;
    }
    assert_true(diff > 990);
    double sum = 0;
    for (int i = 0; i < 100000; i++) {
        double u = sampler_rng_uniform(&a);
        assert_true(u >= 0.0 && u < 1.0);
        sum += u;
    }
    assert_true(fabs(sum / 100000 - 0.5) < 0.01);
    assert_true(sampler_seed_mix(1, 0) != sampler_seed_mix(1, 1));
    assert_true(sampler_seed_mix(1, 0) != sampler_seed_mix(2, 0));
    assert_true(sampler_seed_mix(7, 9) == sampler_seed_mix(7, 9));
}

/* ---------------------------------------------------------------- greedy, penalties */

static void test_greedy(void **state) {
    (void)state;
    sampler_t *s = sampler_new(6);
    sampler_params_t p = {.temperature = 0, .top_p = 1};
    sampler_rng_t rng;
    sampler_rng_seed(&rng, 1);
    sampler_rng_t before = rng;
    float l1[6] = {0.1f, 2.0f, -1.0f, 1.9f, 2.0f, 0.0f};
    assert_int_equal(sampler_sample(s, &p, l1, NULL, 0, &rng), 1); /* tie 1/4: lowest id */
    assert_memory_equal(&rng, &before, sizeof(rng));                /* greedy draws nothing */
    float l2[6] = {-INFINITY, -3.0f, -2.0f, -5.0f, -2.5f, -9.0f};
    assert_int_equal(sampler_sample(s, &p, l2, NULL, 0, &rng), 2);
    sampler_free(s);
    sampler_free(NULL);
    assert_null(sampler_new(0));
}

static void test_penalties_exact(void **state) {
    (void)state;
    enum { V = 50 };
    sampler_t *s = sampler_new(V);
    sampler_params_t p = {.temperature = 0, .top_p = 1, .presence_penalty = 0.7f,
                          .frequency_penalty = 0.3f};
    int32_t gen[] = {3, 7, 3, 3, 49, 7, 0};
    int ngen = (int)(sizeof(gen) / sizeof(gen[0]));
    sampler_rng_t rng;
    sampler_rng_seed(&rng, 5);
    for (int round = 0; round < 3; round++) { /* repeated calls: stamps must not leak */
        float l[V], ref[V];
        for (int i = 0; i < V; i++) l[i] = ref[i] = sinf((float)i * 1.3f + (float)round);
        for (int i = 0; i < V; i++) {
            int cnt = 0;
            for (int j = 0; j < ngen; j++) cnt += gen[j] == i;
            ref[i] -= p.frequency_penalty * (float)cnt + p.presence_penalty * (cnt > 0 ? 1.0f : 0.0f);
        }
        int32_t t = sampler_sample(s, &p, l, gen, ngen, &rng);
        for (int i = 0; i < V; i++) assert_float_equal(l[i], ref[i], 1e-5);
        int32_t best = 0;
        for (int i = 1; i < V; i++)
            if (ref[i] > ref[best]) best = i;
        assert_int_equal(t, best);
    }
    /* a penalty decides the greedy choice: token 2 is best until it has been used */
    float l[V] = {0};
    l[2] = 1.0f;
    l[5] = 0.5f;
    int32_t used[] = {2};
    p.presence_penalty = 0.6f;
    p.frequency_penalty = 0.0f;
    assert_int_equal(sampler_sample(s, &p, l, used, 1, &rng), 5);
    sampler_free(s);
}

/* ---------------------------------------------------------------- distributions */

typedef struct {
    float l;
    int i;
} pair_t;
static int cmp_pair(const void *a, const void *b) {
    const pair_t *x = a, *y = b;
    if (x->l != y->l) return x->l > y->l ? -1 : 1;
    return x->i - y->i;
}

/* Independent reference: full sort, then the definitions one by one. */
static void ref_probs(const float *logits, int n, const sampler_params_t *p, double *out) {
    pair_t *v = malloc((size_t)n * sizeof(pair_t));
    for (int i = 0; i < n; i++) v[i] = (pair_t){logits[i] / p->temperature, i};
    qsort(v, (size_t)n, sizeof(pair_t), cmp_pair);
    int m = (p->top_k > 0 && p->top_k < n) ? p->top_k : n;
    double *pr = malloc((size_t)m * sizeof(double)), z = 0;
    for (int i = 0; i < m; i++) z += pr[i] = exp((double)v[i].l - (double)v[0].l);
    for (int i = 0; i < m; i++) pr[i] /= z;
    int keep = m;
    if (p->top_p < 1.0f) {
        double c = 0;
        for (keep = 0; keep < m;) {
            c += pr[keep++];
            if (c >= p->top_p) break;
        }
    }
    int keep2 = keep;
    if (p->min_p > 0)
        for (keep2 = 0; keep2 < keep && pr[keep2] >= p->min_p * pr[0]; keep2++) {}
    double z2 = 0;
    for (int i = 0; i < keep2; i++) z2 += pr[i];
    for (int i = 0; i < n; i++) out[i] = 0;
    for (int i = 0; i < keep2; i++) out[v[i].i] = pr[i] / z2;
    free(v);
    free(pr);
}

static bool g_gumbel; /* draw temperature-only rows by Gumbel-max */

static void check_frequencies(int V, const float *logits, const sampler_params_t *p, int draws,
                              uint64_t seed) {
    sampler_t *s = sampler_new(V);
    sampler_set_gumbel(s, g_gumbel);
    double *ref = malloc((size_t)V * sizeof(double));
    int *cnt = calloc((size_t)V, sizeof(int));
    float *l = malloc((size_t)V * sizeof(float));
    ref_probs(logits, V, p, ref);
    sampler_rng_t rng;
    sampler_rng_seed(&rng, seed);
    for (int d = 0; d < draws; d++) {
        memcpy(l, logits, (size_t)V * sizeof(float));
        int32_t t = sampler_sample(s, p, l, NULL, 0, &rng);
        assert_true(t >= 0 && t < V);
        cnt[t]++;
    }
    for (int i = 0; i < V; i++) {
        double f = (double)cnt[i] / draws, q = ref[i];
        if (q == 0.0) {
            if (cnt[i] != 0) fail_msg("token %d drawn %d times but is outside the reference set", i, cnt[i]);
            continue;
        }
        double sd = sqrt(q * (1 - q) / draws);
        if (fabs(f - q) > 5 * sd + 1e-4)
            fail_msg("token %d: frequency %.5f vs reference %.5f (sd %.5f)", i, f, q, sd);
    }
    free(ref);
    free(cnt);
    free(l);
    sampler_free(s);
}

static void test_dist_small(void **state) {
    (void)state;
    const float lg[8] = {1.0f, 2.5f, 0.3f, -1.0f, 2.2f, 0.9f, 1.7f, -0.4f};
    static const struct {
        sampler_params_t p;
        int draws;
    } cases[] = {
        {{.temperature = 1.0f, .top_p = 1.0f}, 200000},
        {{.temperature = 0.5f, .top_p = 1.0f}, 200000},
        {{.temperature = 1.0f, .top_p = 1.0f, .top_k = 3}, 200000},
        {{.temperature = 1.0f, .top_p = 0.8f}, 200000},
        {{.temperature = 1.0f, .top_p = 1.0f, .min_p = 0.3f}, 200000},
        {{.temperature = 1.5f, .top_k = 6, .top_p = 0.9f, .min_p = 0.1f}, 200000},
        {{.temperature = 2.0f, .top_p = 1.0f, .top_k = 1}, 1000}, /* top_k = 1 is greedy whatever the temperature */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_frequencies(8, lg, &cases[i].p, cases[i].draws, i + 1); /* seeds 1, 2, ... */
}

/* Draws per configuration on the realistic vocabulary: fewer under ASan (10x slower),
 * where the point is memory safety rather than statistical power. */
#if defined(__SANITIZE_ADDRESS__)
#define LARGE_DRAWS 400
#else
#define LARGE_DRAWS 2500
#endif

/* A realistic vocabulary size exercises the partition-based top-k / top-p. */
static void test_dist_large(void **state) {
    (void)state;
    enum { V = 49152 };
    float *lg = malloc(V * sizeof(float));
    uint64_t x = 99;
    for (int i = 0; i < V; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        double u = (double)(x >> 11) * 0x1.0p-53;
        lg[i] = (float)(-8.0 + 6.0 * u);
    }
    for (int i = 0; i < 40; i++) lg[(i * 977) % V] = 4.0f + 0.1f * (float)i; /* a peaked head */
    lg[5] = lg[6] = 5.5f;                                                    /* ties */
    sampler_params_t p = {.temperature = 1.0f, .top_p = 0.9f};
    check_frequencies(V, lg, &p, LARGE_DRAWS, 11);
    p = (sampler_params_t){.temperature = 0.8f, .top_k = 20, .top_p = 1.0f};
    check_frequencies(V, lg, &p, LARGE_DRAWS, 12);
    p = (sampler_params_t){.temperature = 1.0f, .top_p = 1.0f, .min_p = 0.05f};
    check_frequencies(V, lg, &p, LARGE_DRAWS, 13);
    p = (sampler_params_t){.temperature = 1.0f, .top_k = 1000, .top_p = 0.95f};
    check_frequencies(V, lg, &p, LARGE_DRAWS, 14);
    free(lg);
}

/* Gumbel-max (sampler_set_gumbel): the same distributions for temperature-only rows,
 * on a small and a realistic vocabulary; other parameters keep the softmax draw. */
static void test_dist_gumbel(void **state) {
    g_gumbel = true;
    test_dist_small(state);
    test_dist_large(state);
    /* the draw is sampler_gumbel of one RNG step */
    enum { V = 5000 };
    float lg[V], l2[V];
    for (int i = 0; i < V; i++) lg[i] = sinf((float)i * 0.71f) * 4.0f;
    sampler_t *s = sampler_new(V);
    sampler_set_gumbel(s, true);
    sampler_params_t p = {.temperature = 0.8f, .top_p = 1.0f};
    sampler_rng_t a, b;
    sampler_rng_seed(&a, 31);
    sampler_rng_seed(&b, 31);
    for (int k = 0; k < 50; k++) {
        memcpy(l2, lg, sizeof(lg));
        const int32_t t = sampler_sample(s, &p, l2, NULL, 0, &a);
        assert_int_equal(t, sampler_gumbel(lg, V, 1.0f / 0.8f, sampler_rng_next(&b)));
    }
    sampler_free(s);
    g_gumbel = false;
}

/* Same seed, same logits => same sequence of draws; different seeds differ. */
static void test_seeded_repro(void **state) {
    (void)state;
    enum { V = 1000 };
    sampler_t *s = sampler_new(V);
    float base[V], l[V];
    for (int i = 0; i < V; i++) base[i] = cosf((float)i * 0.37f) * 3.0f;
    sampler_params_t p = {.temperature = 0.9f, .top_p = 0.95f, .top_k = 100};
    int32_t out[3][64];
    uint64_t seeds[3] = {7, 7, 8};
    for (int k = 0; k < 3; k++) {
        sampler_rng_t rng;
        sampler_rng_seed(&rng, seeds[k]);
        for (int j = 0; j < 64; j++) {
            memcpy(l, base, sizeof(l));
            out[k][j] = sampler_sample(s, &p, l, out[k], j, &rng);
        }
    }
    assert_memory_equal(out[0], out[1], sizeof(out[0]));
    assert_memory_not_equal(out[0], out[2], sizeof(out[0]));
    sampler_free(s);
}

/* ---------------------------------------------------------------- stop strings */

static void test_stop_find(void **state) {
    (void)state;
    const char *stop[] = {"lo w", "\n\n", "xyz"};
    size_t sl[] = {4, 2, 3};
    const char *t = "hello world\n\nxyz";
    size_t n = strlen(t);
    /* the text grew from "hello" to "hello wo": "lo w" spans the boundary */
    assert_int_equal(sampler_stop_find(t, 8, 5, stop, sl, 3), 3);
    /* nothing new could match when the match ended before new_from */
    assert_int_equal(sampler_stop_find(t, 8, 8, stop, sl, 3), -1);
    /* earliest start wins among several completed by the same piece */
    assert_int_equal(sampler_stop_find(t, n, 5, stop, sl, 3), 3);
    assert_int_equal(sampler_stop_find(t, n, 12, stop, sl, 3), 11);
    assert_int_equal(sampler_stop_find(t, n, 14, stop, sl, 3), 13);
    assert_int_equal(sampler_stop_find(t, 2, 0, stop, sl, 3), -1);
    assert_int_equal(sampler_stop_find("ab", 2, 0, stop, sl, 0), -1);
}

static void test_stop_holdback(void **state) {
    (void)state;
    const char *stop[] = {"</s>", "END"};
    size_t sl[] = {4, 3};
    assert_int_equal(sampler_stop_holdback("abc", 3, stop, sl, 2), 0);
    assert_int_equal(sampler_stop_holdback("abc<", 4, stop, sl, 2), 1);
    assert_int_equal(sampler_stop_holdback("abc</s", 6, stop, sl, 2), 3);
    assert_int_equal(sampler_stop_holdback("xEN", 3, stop, sl, 2), 2);
    assert_int_equal(sampler_stop_holdback("E", 1, stop, sl, 2), 1);
    assert_int_equal(sampler_stop_holdback("", 0, stop, sl, 2), 0);
}

/* ---------------------------------------------------------------- logprobs, mask, bias */

/* got is the float nearest the exact value ref (within one float ulp of it) */
static bool float_of(float got, long double ref) {
    const float f = (float)ref;
    return fabsl((long double)got - ref) <= (long double)(nextafterf(fabsf(f), INFINITY) - fabsf(f));
}

/* logprobs equal a double-precision log-softmax of the same logits (computed here
 * independently with long double and a full sort), chosen token always, top-k sorted
 * descending with ties by lower id */
static void test_logprobs(void **state) {
    (void)state;
    const int n = 4099; /* odd: not a multiple of 32 or of a vector width */
    sampler_t *s = sampler_new(n);
    float *x = malloc((size_t)n * sizeof(float));
    int32_t *order = malloc((size_t)n * sizeof(int32_t));
    sampler_rng_t r;
    sampler_rng_seed(&r, 7);
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < n; i++) x[i] = (float)((sampler_rng_uniform(&r) - 0.5) * (round == 3 ? 60.0 : 12.0));
        for (int i = 0; i < n; i += 97) x[i] = x[0]; /* ties: lower id first */
        long double mx = x[0], sum = 0.0L;
        for (int i = 1; i < n; i++) if (x[i] > mx) mx = x[i];
        for (int i = 0; i < n; i++) sum += expl((long double)x[i] - mx);
        const long double lse = mx + logl(sum);
        for (int i = 0; i < n; i++) order[i] = i;
        /* reference order: insertion of each index by (value desc, id asc) for the top 20 */
        for (int k = 0; k < 20; k++) {
            int best = k;
            for (int i = k + 1; i < n; i++)
                if (x[order[i]] > x[order[best]] || (x[order[i]] == x[order[best]] && order[i] < order[best])) best = i;
            int32_t t = order[k];
            order[k] = order[best];
            order[best] = t;
        }
        engine_logprob_t top[ENGINE_MAX_TOP_LOGPROBS];
        for (int chosen = 0; chosen < n; chosen += 511) {
            float lp = sampler_logprobs(s, x, chosen, ENGINE_MAX_TOP_LOGPROBS, top);
            assert_true(float_of(lp, (long double)x[chosen] - lse));
            for (int k = 0; k < ENGINE_MAX_TOP_LOGPROBS; k++) {
                assert_int_equal(top[k].id, order[k]);
                assert_true(float_of(top[k].logprob, (long double)x[order[k]] - lse));
            }
        }
        /* k = 0: only the chosen token */
        float lp0 = sampler_logprobs(s, x, 3, 0, NULL);
        assert_true(float_of(lp0, (long double)x[3] - lse));
    }
    free(x);
    free(order);
    sampler_free(s);
}

static void test_mask_bias(void **state) {
    (void)state;
    const int n = 70; /* 3 words, the last partial */
    float x[70];
    uint32_t mask[3] = {0x00000001u, 0xFFFFFFFFu, 0x20u}; /* tokens 0, 32..63, 69 */
    for (int i = 0; i < n; i++) x[i] = (float)i;
    sampler_apply_mask(x, n, mask);
    for (int i = 0; i < n; i++) {
        bool allowed = i == 0 || (i >= 32 && i < 64) || i == 69;
        assert_true(allowed ? x[i] == (float)i : isinf(x[i]) && x[i] < 0);
    }
    int32_t ids[2] = {0, 33};
    float b[2] = {100.0f, -5.0f};
    sampler_apply_bias(x, n, ids, b, 2);
    assert_true(x[0] == 100.0f && x[33] == 28.0f);
    sampler_t *s = sampler_new(n);
    sampler_params_t p = {.top_p = 1.0f};
    sampler_rng_t r;
    sampler_rng_seed(&r, 1);
    assert_int_equal(sampler_sample(s, &p, x, NULL, 0, &r), 0); /* the bias wins greedy */
    sampler_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng),
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_penalties_exact),
        cmocka_unit_test(test_dist_small),
        cmocka_unit_test(test_dist_large),
        cmocka_unit_test(test_dist_gumbel),
        cmocka_unit_test(test_seeded_repro),
        cmocka_unit_test(test_stop_find),
        cmocka_unit_test(test_stop_holdback),
        cmocka_unit_test(test_logprobs),
        cmocka_unit_test(test_mask_bias),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
