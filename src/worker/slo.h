/* slo.h — adaptive batching (batching.slo): a controller that sets the scheduler's
 * (Where this part sits among the others: docs/architecture.md.)
 * admission limits (max_seqs, max_batch_tokens) from live measurements, to keep p95
 * time per output token (TPOT) and p95 time to first token (TTFT) under targets while
 * admitting as much work per step as those targets allow. Off by default.
 *
 * Pure logic, no clock of its own: callers pass a monotonic now_ms, so tests drive it
 * with synthetic latency models. The engine thread calls slo_observe_step() after each
 * step and applies slo_limits() before the next one; slo_observe_request() may be
 * called from any thread (a small mutex guards the request window).
 *
 * Algorithm (docs/operations-metrics.md, "Adaptive batching", has the long form):
 *  - Every running sequence gets one token per step, so a step's duration is the
 *    inter-token latency (ITL) of every sequence in it; a request's TPOT is the mean
 *    ITL over its steps. Holding the step time under the TPOT target holds TPOT.
 *  - Step time is close to linear in the step's tokens: t = a + b*tokens (weights are
 *    read once per step; the matmuls scale with tokens). a and b are fitted by least
 *    squares over the recent steps.
 *  - max_batch_tokens = (gain * tpot_target - a) / b, clamped to [min, ceiling]; it
 *    may grow by at most x1.5 per decision, and shrinks at once.
 *  - No usable line (the steps all alike — e.g. a saturated budget — or a < 0 / b <= 0
 *    in noise): the budget is scaled by the measurement instead: over the target by
 *    0.9 x target / p95 ITL (at most /4), under 90 % of it +max(16, B/4), growing only
 *    when the steps use the budget (no wind-up while idle).
 *  - gain in [0.3, 1] absorbs what the line misses (attention growing with context,
 *    noise): AIMD on the measured p95 ITL of the steps since the last change
 *    (weighted by sequences): above the target, gain *= 0.85; under 90 % of it,
 *    gain += 0.03 (0.06 while TTFT is over its target: probe faster).
 *  - max_seqs = min(ceiling, max_batch_tokens - reserve), reserve = max(1, B/8): the
 *    decodes never take the whole budget, prefill always progresses.
 *  - TTFT has no separate lever: the largest budget TPOT allows is also the fastest
 *    prefill. When p95 TTFT stays over its target at that budget the worker is
 *    saturated: slo_get_state() says so, a warning is logged, and the answer is more
 *    workers (krill_backlog_drain_seconds is the autoscaling signal).
 *  - Without a TPOT target the limits stay at their ceilings (TTFT is only watched). */
#ifndef KRILL_SLO_H
#define KRILL_SLO_H

#include <stdbool.h>
#include <stddef.h>

typedef struct slo slo_t;

typedef struct {
    double ttft_ms;        /* p95 target for time to first token; 0 = none */
    double tpot_ms;        /* p95 target for time per output token; 0 = none */
    int max_seqs;          /* ceiling: the static batching.max_seqs (>= 1) */
    int max_batch_tokens;  /* ceiling: the static batching.max_batch_tokens (>= 1) */
    int min_seqs;          /* floor; 0 = 1 */
    int min_batch_tokens;  /* floor; 0 = min(32, ceiling) */
    double interval_ms;    /* time between decisions; 0 = 500 */
    double window_ms;      /* measurements older than this are forgotten; 0 = 10000 */
} slo_config_t;

typedef struct {
    bool enabled;          /* a target is set */
    int max_seqs, max_batch_tokens;
    double gain;
    double fit_a_ms, fit_b_ms;  /* step_ms ~ a + b * tokens (NaN before the first fit) */
    double itl_p95_ms;     /* steps in the window, weighted by sequences; < 0 = none */
    double ttft_p95_ms;    /* requests finished in the window; < 0 = none */
    double tpot_p95_ms;
    bool saturated;        /* p95 TTFT over target at the largest budget TPOT allows */
    unsigned long decisions, changes;
} slo_state_t;

void slo_config_defaults(slo_config_t *c); /* no targets (off), ceilings 64 / 2048 */
/* NULL with err when a value is out of range (negative target, ceiling < floor). */
slo_t *slo_new(const slo_config_t *c, char *err, size_t errlen);
void slo_free(slo_t *s); /* accepts NULL */
bool slo_enabled(const slo_t *s);

/* One engine step: sequences and tokens in it, its duration, and the queue after it. */
void slo_observe_step(slo_t *s, double now_ms, int seqs, int tokens, double step_ms, int running, int waiting);
/* One finished request: TTFT, and TPOT when it generated >= 2 tokens (else < 0). */
void slo_observe_request(slo_t *s, double now_ms, double ttft_ms, double tpot_ms);
/* The limits to apply now; returns true when they changed since the previous call. */
bool slo_limits(slo_t *s, int *max_seqs, int *max_batch_tokens);
void slo_get_state(slo_t *s, slo_state_t *st);

#endif
