/* bench_load.c — the benchmarks' synthetic load and percentiles; see bench_load.h. */
#include "bench_load.h"

#include <math.h>
#include <stdlib.h>

#include "rng.h"

void bench_load_init(bench_load_t *g, uint64_t seed, int n_vocab) {
    g->state = seed;
    g->lo = n_vocab > 1000 ? 256 : 3;
    g->span = n_vocab - g->lo - 1;
}

void bench_load_prompt(bench_load_t *g, int32_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = g->lo + (int32_t)(rng_next(&g->state) % (uint64_t)g->span);
}

static int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_pct(double *v, size_t n, double p) {
    if (n == 0) return NAN;
    qsort(v, n, sizeof *v, bench_cmp_double);
    /* rank ceil(p/100 * n), 1-based; the epsilon keeps 0.95 * 100 at rank 95 */
    double r = ceil(p / 100.0 * (double)n - 1e-9);
    size_t k = r < 1 ? 0 : (size_t)r - 1;
    return v[k < n ? k : n - 1];
}
