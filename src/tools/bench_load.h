/* bench_load.h — what the two engine benchmarks (krill-bench, krill-bench-slo) share:
 * the synthetic load (prompts of exactly N ordinary token ids from a seeded splitmix64,
 * rng.h) and the nearest-rank percentile of their latency samples.
 * tests/reference/bench_peers.py reproduces bench_load_prompt's ids for the peers:
 * change both together. */
#ifndef KRILL_BENCH_LOAD_H
#define KRILL_BENCH_LOAD_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t state; /* splitmix64 state */
    int32_t lo;     /* first id drawn: past the control tokens at the start of the vocabulary */
    int32_t span;   /* ids drawn from [lo, lo + span) */
} bench_load_t;

/* A generator for a vocabulary of n_vocab ids (n_vocab >= 5), seeded with seed. */
void bench_load_init(bench_load_t *g, uint64_t seed, int n_vocab);
/* The next n prompt ids into out. */
void bench_load_prompt(bench_load_t *g, int32_t *out, size_t n);

/* The nearest-rank p-th percentile (p in 0..100) of v[0..n); sorts v in place.
 * NAN when n is 0. */
double bench_pct(double *v, size_t n, double p);

#endif
