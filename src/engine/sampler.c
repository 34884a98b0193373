/* sampler.c — see sampler.h for the order of operations and the rules.
 *
 * Cost: greedy is one pass over the vocabulary. Random sampling avoids sorting the
 * vocabulary: top-k and top-p use quickselect-style partitions (expected O(n_vocab)),
 * so a 49k vocabulary costs about one exp() per token plus a few passes. */
#include "sampler.h"
#include "gumbel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rng.h"

/* ---------------------------------------------------------------- RNG */

void sampler_rng_seed(sampler_rng_t *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = rng_next(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t sampler_rng_next(sampler_rng_t *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double sampler_rng_uniform(sampler_rng_t *r) {
    return (double)(sampler_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t sampler_seed_mix(uint64_t base, uint64_t counter) {
    uint64_t x = base;
    uint64_t a = rng_next(&x);
    x = a ^ counter;
    return rng_next(&x);
}

/* ---------------------------------------------------------------- sampler */

typedef struct {
    float v;   /* logit, then unnormalised probability */
    int32_t i; /* token id */
} cand_t;

struct sampler {
    int n_vocab;
    cand_t *cand;    /* (n_vocab) */
    uint32_t *mark;  /* (n_vocab) penalty "seen" stamps */
    uint32_t stamp;
    bool gumbel;     /* temperature-only draws by Gumbel-max (sampler_set_gumbel) */
};

sampler_t *sampler_new(int n_vocab) {
    if (n_vocab < 1) return NULL;
    sampler_t *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->n_vocab = n_vocab;
    s->cand = malloc((size_t)n_vocab * sizeof(cand_t));
    s->mark = calloc((size_t)n_vocab, sizeof(uint32_t));
    if (!s->cand || !s->mark) {
        sampler_free(s);
        return NULL;
    }
    return s;
}

void sampler_free(sampler_t *s) {
    if (!s) return;
    free(s->cand);
    free(s->mark);
    free(s);
}

static void apply_penalties(sampler_t *s, const sampler_params_t *p, float *logits,
                            const int32_t *gen, int n_gen) {
    if (n_gen <= 0 || (p->presence_penalty == 0.0f && p->frequency_penalty == 0.0f)) return;
    if (++s->stamp == 0) { /* wrapped: old stamps could collide */
        memset(s->mark, 0, (size_t)s->n_vocab * sizeof(uint32_t));
        s->stamp = 1;
    }
    for (int j = 0; j < n_gen; j++) {
        int32_t t = gen[j];
        CHECK(t >= 0 && t < s->n_vocab);
        logits[t] -= p->frequency_penalty;
        if (s->mark[t] != s->stamp) {
            s->mark[t] = s->stamp;
            logits[t] -= p->presence_penalty;
        }
    }
}

static int32_t argmax(const float *x, int n) {
    int32_t best = 0;
    float bv = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > bv) { /* strict: the lowest id wins a tie */
            bv = x[i];
            best = i;
        }
    return best;
}

static inline void cswap(cand_t *a, cand_t *b) {
    cand_t t = *a;
    *a = *b;
    *b = t;
}

/* "Greater" in candidate order: higher value first, lower id on ties (a strict total
 * order, so the partitions below are deterministic and terminate). */
static inline bool cgt(const cand_t *a, const cand_t *b) {
    return a->v > b->v || (a->v == b->v && a->i < b->i);
}

static cand_t median3(const cand_t *a, const cand_t *b, const cand_t *c) {
    if (cgt(a, b)) {
        if (cgt(b, c)) return *b;
        return cgt(a, c) ? *c : *a;
    }
    if (cgt(a, c)) return *a;
    return cgt(b, c) ? *c : *b;
}

/* Moves the elements greater than pivot (strict total order) to the front of
 * [lo, hi); returns the end of that part. */
static int partition_gt(cand_t *c, int lo, int hi, const cand_t *pivot) {
    int w = lo;
    for (int r = lo; r < hi; r++)
        if (cgt(&c[r], pivot)) cswap(&c[w++], &c[r]);
    return w;
}

static int cmp_desc(const void *pa, const void *pb) {
    const cand_t *a = pa, *b = pb;
    if (cgt(a, b)) return -1;
    if (cgt(b, a)) return 1;
    return 0;
}

/* Rearranges c[0..n) so that its k greatest come first (k < n). */
static void select_top_k(cand_t *c, int n, int k) {
    int lo = 0, hi = n;
    while (hi - lo > 1) {
        cand_t piv = median3(&c[lo], &c[lo + (hi - lo) / 2], &c[hi - 1]);
        int a = partition_gt(c, lo, hi, &piv); /* [lo,a) > piv, [a,hi) <= piv (piv is among them) */
        if (a == k) return;
        if (a > k) {
            hi = a;
        } else {
            /* pivot itself is the greatest of [a,hi): put it at a */
            for (int r = a; r < hi; r++)
                if (c[r].v == piv.v && c[r].i == piv.i) {
                    cswap(&c[a], &c[r]);
                    break;
                }
            if (a + 1 == k) return;
            lo = a + 1;
        }
    }
}

/* c[0..n) holds unnormalised probabilities summing to total. Rearranges so that the
 * smallest set of most probable tokens with mass >= target comes first; returns its
 * size (>= 1). */
static int select_top_p(cand_t *c, int n, double target) {
    int lo = 0, hi = n; /* [0,lo) taken (all greater than the rest), acc = their mass */
    double acc = 0.0;
    while (hi - lo > 32) {
        cand_t piv = median3(&c[lo], &c[lo + (hi - lo) / 2], &c[hi - 1]);
        int a = partition_gt(c, lo, hi, &piv);
        double m = 0.0;
        for (int r = lo; r < a; r++) m += c[r].v;
        if (acc + m >= target) {
            hi = a; /* the boundary lies among the greater part (a > lo since m > 0) */
        } else {
            acc += m;
            lo = a; /* take the whole greater part; continue in the rest */
        }
    }
    qsort(c + lo, (size_t)(hi - lo), sizeof(cand_t), cmp_desc);
    int cut = lo;
    while (cut < hi && (acc < target || cut == 0)) acc += c[cut++].v;
    if (cut == 0) cut = 1;
    return cut;
}

void sampler_set_gumbel(sampler_t *s, bool on) { s->gumbel = on; }

bool sampler_is_gumbel(const sampler_params_t *p) {
    return p->temperature > 0.0f && !(p->top_k > 0) && !(p->top_p > 0.0f && p->top_p < 1.0f) && !(p->min_p > 0.0f);
}

int32_t sampler_gumbel(const float *logits, int n, float inv_temp, uint64_t key) {
    /* Start from the largest logit's own score; a token whose logit / T plus the
     * largest possible noise (GUMBEL_MAX) stays below the best cannot win or tie, so
     * its two logf calls are skipped: the same argmax as scoring every token. */
    const int32_t top = argmax(logits, n);
    float bv = gumbel_score(logits[top], inv_temp, key, (uint32_t)top);
    if (!(bv > -INFINITY)) return top; /* no finite score: nothing to draw */
    int32_t best = top;
    for (int i = 0; i < n; i++) {
        if (logits[i] * inv_temp + GUMBEL_MAX < bv) continue;
        const float v = gumbel_score(logits[i], inv_temp, key, (uint32_t)i);
        if (v > bv || (v == bv && i < best)) bv = v, best = i; /* NaN never wins */
    }
    return best;
}

int32_t sampler_pick(const float *logits, int n, float inv_temp, uint64_t key) {
    return inv_temp > 0.0f ? sampler_gumbel(logits, n, inv_temp, key) : argmax(logits, n);
}

int32_t sampler_sample(sampler_t *s, const sampler_params_t *p, float *logits,
                       const int32_t *generated, int n_generated, sampler_rng_t *rng) {
    const int nv = s->n_vocab;
    apply_penalties(s, p, logits, generated, n_generated);
    if (!(p->temperature > 0.0f)) return argmax(logits, nv);
    if (s->gumbel && sampler_is_gumbel(p))
        return sampler_gumbel(logits, nv, 1.0f / p->temperature, sampler_rng_next(rng));

    cand_t *c = s->cand;
    const float inv_t = 1.0f / p->temperature;
    for (int i = 0; i < nv; i++) {
        c[i].v = logits[i] * inv_t;
        c[i].i = i;
    }
    int n = nv;
    if (p->top_k > 0 && p->top_k < n) {
        select_top_k(c, n, p->top_k);
        n = p->top_k;
    }
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (c[i].v > mx) mx = c[i].v;
    if (!isfinite(mx)) return argmax(logits, nv); /* every logit -inf or NaN: nothing to draw */
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        c[i].v = expf(c[i].v - mx); /* the maximum maps to 1 */
        total += c[i].v;
    }
    if (p->top_p > 0.0f && p->top_p < 1.0f) {
        n = select_top_p(c, n, (double)p->top_p * total);
        total = 0.0;
        for (int i = 0; i < n; i++) total += c[i].v;
    }
    if (p->min_p > 0.0f) {
        /* p_max is 1 in unnormalised units; compaction keeps the relative order */
        int w = 0;
        double t2 = 0.0;
        for (int i = 0; i < n; i++)
            if (c[i].v >= p->min_p) {
                c[w++] = c[i];
                t2 += c[i].v;
            }
        if (w > 0) {
            n = w;
            total = t2;
        }
    }
    double r = sampler_rng_uniform(rng) * total;
    double acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += c[i].v;
        if (r < acc) return c[i].i;
    }
    /* rounding left r at the very top: the last token with non-zero mass */
    for (int i = n - 1; i >= 0; i--)
        if (c[i].v > 0.0f) return c[i].i;
    return c[0].i;
}

/* ---------------------------------------------------------------- constraints, logprobs */

void sampler_apply_mask(float *logits, int n, const uint32_t *mask) {
    for (int w = 0; w * 32 < n; w++) {
        uint32_t m = mask[w];
        if (m == 0xFFFFFFFFu) continue;
        const int end = (w + 1) * 32 < n ? (w + 1) * 32 : n;
        for (int i = w * 32; i < end; i++)
            if (!(m >> (i & 31) & 1u)) logits[i] = -INFINITY;
    }
}

void sampler_apply_bias(float *logits, int n, const int32_t *ids, const float *bias, int n_bias) {
    for (int i = 0; i < n_bias; i++) {
        CHECK(ids[i] >= 0 && ids[i] < n);
        logits[ids[i]] += bias[i];
    }
}

float sampler_logprobs(sampler_t *s, const float *raw, int32_t chosen, int k, engine_logprob_t *top) {
    const int nv = s->n_vocab;
    double mx = -INFINITY;
    for (int i = 0; i < nv; i++)
        if (raw[i] > mx) mx = raw[i];
    double sum = 0.0;
    if (isfinite(mx))
        for (int i = 0; i < nv; i++) sum += exp((double)raw[i] - mx); /* -inf adds 0; NaN never compares */
    const double lse = isfinite(mx) ? mx + log(sum) : 0.0;
    if (k > nv) k = nv;
    if (k > 0) {
        cand_t *c = s->cand;
        for (int i = 0; i < nv; i++) c[i] = (cand_t){.v = raw[i], .i = i};
        if (k < nv) select_top_k(c, nv, k);
        qsort(c, (size_t)k, sizeof(cand_t), cmp_desc);
        for (int j = 0; j < k; j++) top[j] = (engine_logprob_t){.id = c[j].i, .logprob = (float)((double)c[j].v - lse)};
    }
    return (float)((double)raw[chosen] - lse);
}

static inline float masked_at(const float *x, const uint32_t *mask, int i) {
    return !mask || ((mask[i >> 5] >> (i & 31)) & 1u) ? x[i] : -INFINITY;
}

int32_t sampler_pick_masked(const float *logits, int n, float inv_temp, uint64_t key, const uint32_t *mask) {
    if (inv_temp > 0.0f) {
        float gv = -INFINITY;
        int32_t gi = INT32_MAX;
        for (int i = 0; i < n; i++) {
            const float v = gumbel_score(masked_at(logits, mask, i), inv_temp, key, (uint32_t)i);
            if (v > gv || (v == gv && i < gi)) gv = v, gi = i;
        }
        if (gv > -INFINITY) return gi;
    }
    float bv = -INFINITY;
    int32_t bi = INT32_MAX;
    for (int i = 0; i < n; i++) {
        const float v = masked_at(logits, mask, i);
        if (v > bv || (v == bv && i < bi)) bv = v, bi = i;
    }
    return bi == INT32_MAX ? 0 : bi;
}

/* ---------------------------------------------------------------- stop strings */

long sampler_stop_find(const char *text, size_t len, size_t new_from,
                       const char *const *stop, const size_t *stop_len, int n_stop) {
    long best = -1;
    for (int k = 0; k < n_stop; k++) {
        size_t sl = stop_len[k];
        if (sl == 0 || sl > len) continue;
        /* a new match ends after new_from: it starts at or after new_from - (sl - 1) */
        size_t from = new_from + 1 > sl ? new_from + 1 - sl : 0;
        for (size_t i = from; i + sl <= len; i++) {
            if (best >= 0 && (long)i >= best) break;
            if (text[i] == stop[k][0] && memcmp(text + i, stop[k], sl) == 0) {
                best = (long)i;
                break;
            }
        }
    }
    return best;
}

size_t sampler_stop_holdback(const char *text, size_t len,
                             const char *const *stop, const size_t *stop_len, int n_stop) {
    size_t hold = 0;
    for (int k = 0; k < n_stop; k++) {
        size_t sl = stop_len[k];
        /* longest proper prefix of stop[k] that ends the text */
        size_t m = sl > 0 ? sl - 1 : 0;
        if (m > len) m = len;
        for (; m > hold; m--)
            if (memcmp(text + len - m, stop[k], m) == 0) {
                hold = m;
                break;
            }
    }
    return hold;
}
