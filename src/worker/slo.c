/* slo.c — see slo.h for the algorithm. Fixed-size rings allocated at slo_new(); a
 * decision sorts at most SLO_STEPS or SLO_REQS samples (twice a second by default),
 * nothing else allocates or locks on the engine thread's path except the short
 * request-window copy. */
#include "err.h"
#include "slo.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define SLO_STEPS 256
#define SLO_REQS 512
#define GAIN_MIN 0.3
#define GAIN_DOWN 0.85
#define GAIN_UP 0.03
#define GROW_MAX 1.5
#define MIN_STEPS_FOR_DECISION 8

typedef struct {
    double t, ms, w; /* time, step duration, weight (sequences) */
    int tokens;
} step_sample_t;

typedef struct {
    double t, ttft, tpot;
} req_sample_t;

typedef struct {
    double v, w;
} wv_t;

struct slo {
    slo_config_t c;
    bool enabled;
    int seqs, tokens;        /* limits in force */
    int given_seqs, given_tokens; /* what slo_limits() last returned */
    double gain;
    double a, b;
    double last_decision, last_change;
    bool have_decision;
    step_sample_t steps[SLO_STEPS];
    size_t n_steps, step_head;
    pthread_mutex_t req_mu;
    req_sample_t reqs[SLO_REQS]; /* guarded by req_mu */
    size_t n_reqs, req_head;
    req_sample_t req_copy[SLO_REQS];
    wv_t scratch[SLO_REQS > SLO_STEPS ? SLO_REQS : SLO_STEPS];
    double itl_p95, ttft_p95, tpot_p95;
    bool saturated;
    unsigned long decisions, changes;
    int logged_seqs, logged_tokens;
    bool logged_saturated;
};

void slo_config_defaults(slo_config_t *c) {
    memset(c, 0, sizeof *c);
    c->max_seqs = 64;
    c->max_batch_tokens = 2048;
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

slo_t *slo_new(const slo_config_t *cfg, char *err, size_t errlen) {
    slo_config_t c = *cfg;
    if (!(c.ttft_ms >= 0) || !(c.tpot_ms >= 0)) {
        err_set(err, errlen, "batching.slo: targets must be >= 0 ms (0 = no target)");
        return NULL;
    }
    if (c.max_seqs < 1 || c.max_batch_tokens < 1) {
        err_set(err, errlen, "batching.slo: the ceilings max_seqs (%d) and max_batch_tokens (%d) must be >= 1",
                 c.max_seqs, c.max_batch_tokens);
        return NULL;
    }
    if (c.min_seqs <= 0) c.min_seqs = 1;
    if (c.min_batch_tokens <= 0) c.min_batch_tokens = c.max_batch_tokens < 32 ? c.max_batch_tokens : 32;
    if (c.min_seqs > c.max_seqs || c.min_batch_tokens > c.max_batch_tokens) {
        err_set(err, errlen, "batching.slo: floors (%d seqs, %d tokens) above the ceilings (%d, %d); lower them",
                 c.min_seqs, c.min_batch_tokens, c.max_seqs, c.max_batch_tokens);
        return NULL;
    }
    if (!(c.interval_ms >= 0) || !(c.window_ms >= 0)) {
        err_set(err, errlen, "batching.slo: interval_ms and window_ms must be >= 0");
        return NULL;
    }
    if (c.interval_ms == 0) c.interval_ms = 500;
    if (c.window_ms == 0) c.window_ms = 10000;
    slo_t *s = calloc(1, sizeof *s);
    if (!s) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    s->c = c;
    s->enabled = c.ttft_ms > 0 || c.tpot_ms > 0;
    s->seqs = s->given_seqs = s->logged_seqs = c.max_seqs;
    s->tokens = s->given_tokens = s->logged_tokens = c.max_batch_tokens;
    s->gain = 1.0;
    s->a = s->b = NAN;
    s->itl_p95 = s->ttft_p95 = s->tpot_p95 = -1;
    pthread_mutex_init(&s->req_mu, NULL);
    return s;
}

void slo_free(slo_t *s) {
    if (!s) return;
    pthread_mutex_destroy(&s->req_mu);
    free(s);
}

bool slo_enabled(const slo_t *s) { return s && s->enabled; }

void slo_observe_request(slo_t *s, double now_ms, double ttft_ms, double tpot_ms) {
    if (!s || !s->enabled) return;
    pthread_mutex_lock(&s->req_mu);
    req_sample_t *r = &s->reqs[s->req_head];
    r->t = now_ms;
    r->ttft = ttft_ms;
    r->tpot = tpot_ms;
    s->req_head = (s->req_head + 1) % SLO_REQS;
    if (s->n_reqs < SLO_REQS) s->n_reqs++;
    pthread_mutex_unlock(&s->req_mu);
}

static int cmp_wv(const void *x, const void *y) {
    double a = ((const wv_t *)x)->v, b = ((const wv_t *)y)->v;
    return a < b ? -1 : a > b;
}

/* Weighted p95 of n samples (sorted in place). -1 when n == 0. */
static double p95(wv_t *v, size_t n) {
    if (!n) return -1;
    qsort(v, n, sizeof *v, cmp_wv);
    double total = 0, acc = 0;
    for (size_t i = 0; i < n; i++) total += v[i].w;
    for (size_t i = 0; i < n; i++) {
        acc += v[i].w;
        if (acc >= 0.95 * total) return v[i].v;
    }
    return v[n - 1].v;
}

/* Least squares over the steps in the window: step_ms = a + b * tokens. Returns true
 * when the line is usable: the tokens vary enough to see a slope, a >= 0 and b > 0. */
static bool fit(slo_t *s, double since) {
    double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (size_t i = 0; i < s->n_steps; i++) {
        const step_sample_t *p = &s->steps[i];
        if (p->t < since || p->tokens <= 0) continue;
        double x = p->tokens, y = p->ms;
        n++;
        sx += x;
        sy += y;
        sxx += x * x;
        sxy += x * y;
    }
    if (n < MIN_STEPS_FOR_DECISION) return false;
    double mx = sx / n, var = sxx / n - mx * mx;
    if (!(var > 0) || sqrt(var) <= 0.05 * mx) return false; /* all steps alike (a saturated budget) */
    double b = (sxy / n - mx * (sy / n)) / var, a = sy / n - b * mx;
    if (!(b > 0) || !(a >= 0)) return false;
    s->a = a;
    s->b = b;
    return true;
}

static void decide(slo_t *s, double now, int running, int waiting) {
    const slo_config_t *c = &s->c;
    double since = now - c->window_ms;
    s->decisions++;

    /* ITL p95 over the steps since the last change (the evidence about the current limits) */
    size_t n = 0;
    for (size_t i = 0; i < s->n_steps; i++) {
        const step_sample_t *p = &s->steps[i];
        if (p->t >= since && p->t > s->last_change && p->w > 0) s->scratch[n++] = (wv_t){p->ms, p->w};
    }
    bool fresh = n >= MIN_STEPS_FOR_DECISION;
    if (fresh) s->itl_p95 = p95(s->scratch, n);

    /* request window */
    size_t nr;
    pthread_mutex_lock(&s->req_mu);
    nr = s->n_reqs;
    memcpy(s->req_copy, s->reqs, nr * sizeof *s->reqs);
    pthread_mutex_unlock(&s->req_mu);
    size_t nt = 0, np = 0;
    for (size_t i = 0; i < nr; i++)
        if (s->req_copy[i].t >= since && s->req_copy[i].ttft >= 0) s->scratch[nt++] = (wv_t){s->req_copy[i].ttft, 1};
    s->ttft_p95 = p95(s->scratch, nt);
    for (size_t i = 0; i < nr; i++)
        if (s->req_copy[i].t >= since && s->req_copy[i].tpot >= 0) s->scratch[np++] = (wv_t){s->req_copy[i].tpot, 1};
    s->tpot_p95 = p95(s->scratch, np);
    bool ttft_over = c->ttft_ms > 0 && s->ttft_p95 > c->ttft_ms;

    int tokens = s->tokens, seqs = s->seqs;
    if (c->tpot_ms > 0) {
        if (fresh) {
            if (s->itl_p95 > c->tpot_ms)
                s->gain = fmax(GAIN_MIN, s->gain * GAIN_DOWN);
            else if (s->itl_p95 < 0.9 * c->tpot_ms)
                s->gain = fmin(1.0, s->gain + (ttft_over ? 2 * GAIN_UP : GAIN_UP));
        }
        double want = NAN; /* NaN: keep the budget */
        if (fit(s, since)) {
            want = (s->gain * c->tpot_ms - s->a) / s->b; /* may be <= 0: the floor */
        } else if (fresh) {
            /* No usable line (every step alike, e.g. a saturated budget, or a fixed cost the
             * noise hides): scale the budget by what was measured. Grow only when the budget
             * is what limits the steps, so that it cannot wind up while idle. */
            int used = 0;
            for (size_t i = 0; i < s->n_steps; i++)
                if (s->steps[i].t > s->last_change && s->steps[i].tokens > used) used = s->steps[i].tokens;
            if (s->itl_p95 > c->tpot_ms)
                want = s->tokens * fmax(0.25, 0.9 * c->tpot_ms / s->itl_p95);
            else if (s->itl_p95 < 0.9 * c->tpot_ms && used >= 0.9 * s->tokens)
                want = s->tokens + fmax(16, s->tokens / 4.0);
        }
        if (!isnan(want)) {
            double cap = GROW_MAX * s->tokens + 16;
            if (want > cap) want = cap;
            if (want > c->max_batch_tokens) want = c->max_batch_tokens;
            tokens = clampi(want < 1 ? 1 : (int)want, c->min_batch_tokens, c->max_batch_tokens);
        }
        int reserve = tokens / 8 > 1 ? tokens / 8 : 1;
        seqs = clampi(tokens - reserve < c->max_seqs ? tokens - reserve : c->max_seqs, c->min_seqs, c->max_seqs);
    }
    if (tokens != s->tokens || seqs != s->seqs) {
        s->tokens = tokens;
        s->seqs = seqs;
        s->last_change = now;
        s->changes++;
    }
    /* saturated: TTFT over target while work queues (no lever left but more workers) */
    s->saturated = ttft_over && (waiting > 0 || running >= s->seqs);

    /* log meaningful changes only (>= 10 % since the last line), and saturation edges */
    bool big = abs(s->tokens - s->logged_tokens) * 10 >= s->logged_tokens ||
               abs(s->seqs - s->logged_seqs) * 10 >= s->logged_seqs;
    if (big) {
        LOG_INFO("slo limits", "max_seqs=%d max_batch_tokens=%d itl_p95_ms=%.1f tpot_target_ms=%.1f ttft_p95_ms=%.1f "
                 "gain=%.2f fit_a_ms=%.2f fit_b_ms=%.4f",
                 s->seqs, s->tokens, s->itl_p95, c->tpot_ms, s->ttft_p95, s->gain, s->a, s->b);
        s->logged_tokens = s->tokens;
        s->logged_seqs = s->seqs;
    }
    if (s->saturated != s->logged_saturated) {
        if (s->saturated)
            LOG_WARN("slo saturated", "ttft_p95_ms=%.1f ttft_target_ms=%.1f waiting=%d hint=\"add workers\"",
                     s->ttft_p95, c->ttft_ms, waiting);
        else
            LOG_INFO("slo ttft back under target", "ttft_p95_ms=%.1f ttft_target_ms=%.1f", s->ttft_p95, c->ttft_ms);
        s->logged_saturated = s->saturated;
    }
}

void slo_observe_step(slo_t *s, double now_ms, int seqs, int tokens, double step_ms, int running, int waiting) {
    if (!s || !s->enabled) return;
    if (seqs > 0 || tokens > 0) {
        step_sample_t *p = &s->steps[s->step_head];
        p->t = now_ms;
        p->ms = step_ms;
        p->w = seqs;
        p->tokens = tokens;
        s->step_head = (s->step_head + 1) % SLO_STEPS;
        if (s->n_steps < SLO_STEPS) s->n_steps++;
    }
    if (!s->have_decision) {
        s->have_decision = true;
        s->last_decision = now_ms;
        s->last_change = now_ms - 1e-9;
        return;
    }
    if (now_ms - s->last_decision >= s->c.interval_ms) {
        s->last_decision = now_ms;
        decide(s, now_ms, running, waiting);
    }
}

bool slo_limits(slo_t *s, int *max_seqs, int *max_batch_tokens) {
    bool changed = s->seqs != s->given_seqs || s->tokens != s->given_tokens;
    *max_seqs = s->given_seqs = s->seqs;
    *max_batch_tokens = s->given_tokens = s->tokens;
    return changed;
}

void slo_get_state(slo_t *s, slo_state_t *st) {
    memset(st, 0, sizeof *st);
    st->enabled = s->enabled;
    st->max_seqs = s->seqs;
    st->max_batch_tokens = s->tokens;
    st->gain = s->gain;
    st->fit_a_ms = s->a;
    st->fit_b_ms = s->b;
    st->itl_p95_ms = s->itl_p95;
    st->ttft_p95_ms = s->ttft_p95;
    st->tpot_p95_ms = s->tpot_p95;
    st->saturated = s->saturated;
    st->decisions = s->decisions;
    st->changes = s->changes;
}
