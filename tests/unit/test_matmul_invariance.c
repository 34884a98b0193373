/* test_matmul_invariance.c — the CPU matmul is batch-invariant bitwise, and accurate.
 *
 * - order: matmul_cpu_block (AVX2 and generic kernels, every register-tile shape and
 *   block boundary) equals, bit for bit, the reduction order documented in
 *   matmul_cpu.h, re-implemented here independently; and stays within a normalised
 *   error of 1e-5 of a double-precision reference over odd shapes.
 * - batch: through the backend table (threads 1, 2, 3; kernels "krill" and
 *   "generic"), every row computed alone gives the same bits as the same row at every
 *   position 0..n-1 of batches n = 1..70 (each position holds a different row across
 *   batches), with and without bias, for shapes that do and do not split over threads
 *   (under SANITIZE=1 the two smaller shapes only).
 *
 * - quantized: the same check through the backend with cpu_weights q8 and q4 (weights
 *   loaded with load_matrix): rows alone with the plain C reference kernel
 *   (KRILL_CPU_QMAT=ref, 1 thread) vs batches of 1..70 with the AVX2 and the best
 *   kernel this CPU has, threads 1, 2, 3 — bitwise.
 *
 * KRILL_BENCH_MATMUL=1 instead times our kernels against OpenBLAS sgemm (through the
 * backend, KRILL_CPU_MATMUL=openblas) on SmolLM2-135M's shapes (a benchmark: best of
 * KRILL_BENCH_REPS interleaved runs, threads from KRILL_BENCH_THREADS, default 1);
 * KRILL_BENCH_MATMUL=q4 or q8 times the quantized matmul on the same shapes (GB/s of
 * weights read, integer GOP/s) next to a two-buffer copy loop (memory bandwidth). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <pthread.h>
#include <time.h>

#include "backend.h"
#include "clock.h"
#include "cpu/matmul_cpu.h"
#include "testutil.h"

/* The documented order (matmul_cpu.h), written out plainly. */
static float order_ref(const float *x, const float *w, const float *bias, int c, int in) {
    float lane[8] = {0};
    int k = 0;
    for (; k + 8 <= in; k += 8)
        for (int j = 0; j < 8; j++) lane[j] = fmaf(x[k + j], w[k + j], lane[j]);
    float s = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    for (; k < in; k++) s = fmaf(x[k], w[k], s);
    return bias ? s + bias[c] : s;
}

static int bits_equal(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

/* ------------------------------------------------------------------ order + accuracy */
static void test_order_and_accuracy(void **state) {
    (void)state;
    /* n covers every tile shape (1..3-row calls, 4-row groups + 1..3 left over), out
     * every column remainder, in every k tail (0..7) */
    static const int shapes[][3] = {{1, 1, 1},    {1, 7, 13},    {2, 9, 11},     {3, 15, 5},   {4, 8, 3},
                                    {5, 33, 17},  {6, 64, 96},   {7, 100, 23},   {9, 31, 4099}, {13, 576, 37},
                                    {17, 1, 29},  {64, 96, 33},  {70, 130, 50},  {2, 1536, 49}, {1, 2049, 10}};
    const matmul_cpu_impl_t impls[] = {MATMUL_CPU_AUTO, MATMUL_CPU_GENERIC};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int n = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
        testutil_seed(7000 + s);
        float *x = malloc(sizeof(float) * n * in), *w = malloc(sizeof(float) * out * in);
        float *bias = malloc(sizeof(float) * out), *y = malloc(sizeof(float) * n * out);
        float *want = malloc(sizeof(float) * n * out);
        double *ref = malloc(sizeof(double) * n * out);
        testutil_fill(x, (size_t)n * in, 1.0f);
        testutil_fill(w, (size_t)out * in, 0.5f);
        testutil_fill(bias, out, 1.0f);
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            const float *b = with_bias ? bias : NULL;
            for (int r = 0; r < n; r++)
                for (int c = 0; c < out; c++) {
                    want[r * out + c] = order_ref(x + (size_t)r * in, w + (size_t)c * in, b, c, in);
                    double acc = with_bias ? bias[c] : 0.0;
                    for (int k = 0; k < in; k++) acc += (double)x[r * in + k] * w[(size_t)c * in + k];
                    ref[r * out + c] = acc;
                }
            for (size_t ii = 0; ii < 2; ii++) {
                /* whole block, then the same block computed in odd pieces */
                memset(y, 0xff, sizeof(float) * n * out);
                matmul_cpu_block(impls[ii], y, out, x, in, w, b, in, 0, n, 0, out);
                if (!bits_equal(y, want, (size_t)n * out))
                    fail_msg("impl %zu n=%d in=%d out=%d bias=%d: not the documented order", ii, n, in, out, with_bias);
                double e = testutil_nerr(y, ref, (size_t)n * out);
                if (e > 1e-5) fail_msg("impl %zu n=%d in=%d out=%d bias=%d: nerr %g", ii, n, in, out, with_bias, e);
                memset(y, 0xff, sizeof(float) * n * out);
                for (int r0 = 0; r0 < n;) {
                    int r1 = r0 + 1 + (r0 * 5 + 3) % 6;
                    if (r1 > n) r1 = n;
                    for (int c0 = 0; c0 < out;) {
                        int c1 = c0 + 1 + (c0 * 7 + r0) % 11;
                        if (c1 > out) c1 = out;
                        matmul_cpu_block(impls[ii], y, out, x, in, w, b, in, r0, r1, c0, c1);
                        c0 = c1;
                    }
                    r0 = r1;
                }
                if (!bits_equal(y, want, (size_t)n * out))
                    fail_msg("impl %zu n=%d in=%d out=%d: pieces differ from the whole", ii, n, in, out);
            }
        }
        free(x), free(w), free(bias), free(y), free(want), free(ref);
    }
}

/* ------------------------------------------------------------------ batch invariance */
static backend_t *open_cpu(int threads, const char *impl) {
    char err[256];
    if (impl) setenv("KRILL_CPU_MATMUL", impl, 1);
    else unsetenv("KRILL_CPU_MATMUL");
    backend_params_t p = {.n_threads = threads};
    backend_t *b = backend_open("cpu", &p, err, sizeof err);
    unsetenv("KRILL_CPU_MATMUL");
    if (!b) fail_msg("backend_open: %s", err);
    return b;
}

enum { POOL = 70 };

/* Seeded rows (POOL, in), W (out, in), bias (out); alone (2 POOL, out), x, y scratch. */
static void pool_data(uint64_t seed, int in, int out, float **rows, float **w, float **bias, float **alone, float **x,
                      float **y) {
    testutil_seed(seed);
    *rows = testutil_xmalloc(sizeof(float) * POOL * in);
    *w = testutil_xmalloc(sizeof(float) * out * in);
    *bias = testutil_xmalloc(sizeof(float) * out);
    *alone = testutil_xmalloc(sizeof(float) * 2 * POOL * out);
    *x = testutil_xmalloc(sizeof(float) * POOL * in);
    *y = testutil_xmalloc(sizeof(float) * POOL * out);
    testutil_fill(*rows, (size_t)POOL * in, 1.0f);
    testutil_fill(*w, (size_t)out * in, 0.5f);
    testutil_fill(*bias, out, 1.0f);
}

/* Each of the POOL rows alone: alone[(bias? POOL : 0) + i] (one matmul of 1 row). */
static void rows_alone(backend_t *b, float *alone, const float *rows, const void *w, const float *bias, int in,
                       int out) {
    for (int with_bias = 0; with_bias < 2; with_bias++)
        for (int i = 0; i < POOL; i++)
            b->ops->matmul(b->ctx, alone + ((size_t)with_bias * POOL + i) * out, rows + (size_t)i * in, w,
                           with_bias ? bias : NULL, 1, in, out);
    assert_int_equal(b->ops->synchronize(b->ctx), 0);
}

/* Batches n = 1..POOL through b: every row at every position gives its alone bits. */
static void rows_batched(backend_t *b, const float *alone, const float *rows, const void *w, const float *bias, int in,
                         int out, float *x, float *y, const char *what) {
    for (int with_bias = 0; with_bias < 2; with_bias++)
        for (int n = 1; n <= POOL; n++) {
            /* position p holds row (p * 11 + n * 7) % POOL: every row visits many positions */
            for (int p = 0; p < n; p++)
                memcpy(x + (size_t)p * in, rows + (size_t)((p * 11 + n * 7) % POOL) * in, sizeof(float) * in);
            b->ops->matmul(b->ctx, y, x, w, with_bias ? bias : NULL, n, in, out);
            assert_int_equal(b->ops->synchronize(b->ctx), 0);
            for (int p = 0; p < n; p++) {
                const int i = (p * 11 + n * 7) % POOL;
                if (!bits_equal(y + (size_t)p * out, alone + ((size_t)with_bias * POOL + i) * out, (size_t)out))
                    fail_msg("%s in=%d out=%d bias=%d: row %d at position %d of %d differs from the row alone", what,
                             in, out, with_bias, i, p, n);
            }
        }
}

static void test_batch_invariance(void **state) {
    (void)state;
    /* in: no tail / a tail; out: below and above a column tile, LM-head-like width */
    static const int shapes[][2] = {{67, 61}, {576, 200}, {64, 1000}, {1536, 100}};
    static const int threads[] = {1, 2, 3};
    static const char *impls[] = {NULL, "generic"};
    /* under ASan the two smaller shapes (one with a k tail) cover every code path */
    const size_t n_shapes = testutil_sanitize() ? 2 : sizeof shapes / sizeof shapes[0];
    for (size_t s = 0; s < n_shapes; s++) {
        const int in = shapes[s][0], out = shapes[s][1];
        float *rows, *w, *bias, *alone, *x, *y;
        pool_data(9100 + s, in, out, &rows, &w, &bias, &alone, &x, &y);
        /* each row alone (one thread, default kernel), with and without bias */
        backend_t *b1 = open_cpu(1, NULL);
        rows_alone(b1, alone, rows, w, bias, in, out);
        backend_close(b1);
        for (size_t ii = 0; ii < sizeof impls / sizeof impls[0]; ii++)
            for (size_t ti = 0; ti < sizeof threads / sizeof threads[0]; ti++) {
                if (impls[ii] && ti != 1 && s > 1) continue; /* generic is slow: 2 threads for the large shapes */
                backend_t *b = open_cpu(threads[ti], impls[ii]);
                char what[64];
                snprintf(what, sizeof what, "impl=%s threads=%d", impls[ii] ? impls[ii] : "krill", threads[ti]);
                rows_batched(b, alone, rows, w, bias, in, out, x, y, what);
                backend_close(b);
            }
        free(rows), free(w), free(bias), free(alone), free(x), free(y);
    }
}

static backend_t *open_q(int threads, const char *weights, const char *kernel) {
    char err[256];
    if (kernel) setenv("KRILL_CPU_QMAT", kernel, 1);
    backend_params_t p = {.n_threads = threads, .cpu_weights = weights};
    backend_t *b = backend_open("cpu", &p, err, sizeof err);
    unsetenv("KRILL_CPU_QMAT");
    if (!b) fail_msg("backend_open (%s, %s): %s", weights, kernel ? kernel : "auto", err);
    return b;
}

/* W (out, in) f32 -> a backend buffer in dt through load_matrix. */
static void *load_q(backend_t *b, backend_dtype_t dt, const float *w, int out, int in) {
    void *p = b->ops->alloc(b->ctx, backend_weight_bytes(dt, out, in));
    assert_non_null(p);
    if (b->ops->load_matrix(b->ctx, p, dt, GGUF_T_F32, w, out, in)) fail_msg("load_matrix: %s", b->ops->last_error(b->ctx));
    return p;
}

static void test_quantized_batch_invariance(void **state) {
    (void)state;
    static const int shapes[][2] = {{64, 40}, {576, 200}, {1536, 104}, {576, 1000}};
    static const int threads[] = {1, 2, 3};
    static const char *kernels[] = {"avx2", NULL};
    const size_t n_shapes = testutil_sanitize() ? 2 : sizeof shapes / sizeof shapes[0];
    for (int q = 0; q < 2; q++) {
        const char *wname = q ? "q4" : "q8";
        const backend_dtype_t dt = q ? BACKEND_DT_Q4 : BACKEND_DT_Q8;
        for (size_t s = 0; s < n_shapes; s++) {
            const int in = shapes[s][0], out = shapes[s][1];
            float *rows, *w, *bias, *alone, *x, *y;
            pool_data(9300 + s + 10 * q, in, out, &rows, &w, &bias, &alone, &x, &y);
            backend_t *b1 = open_q(1, wname, "ref");
            void *w1 = load_q(b1, dt, w, out, in);
            rows_alone(b1, alone, rows, w1, bias, in, out);
            b1->ops->free(b1->ctx, w1);
            backend_close(b1);
            for (size_t ki = 0; ki < sizeof kernels / sizeof kernels[0]; ki++)
                for (size_t ti = 0; ti < sizeof threads / sizeof threads[0]; ti++) {
                    backend_t *b = open_q(threads[ti], wname, kernels[ki]);
                    void *wq = load_q(b, dt, w, out, in);
                    char what[96];
                    snprintf(what, sizeof what, "%s kernel=%s threads=%d (alone: ref kernel)", wname,
                             kernels[ki] ? kernels[ki] : "auto", threads[ti]);
                    rows_batched(b, alone, rows, wq, bias, in, out, x, y, what);
                    b->ops->free(b->ctx, wq);
                    backend_close(b);
                }
            free(rows), free(w), free(bias), free(alone), free(x), free(y);
        }
    }
}

static void test_bad_env(void **state) {
    (void)state;
    char err[256] = "";
    setenv("KRILL_CPU_MATMUL", "fastest", 1);
    backend_params_t p = {.n_threads = 1};
    backend_t *b = backend_open("cpu", &p, err, sizeof err);
    unsetenv("KRILL_CPU_MATMUL");
    assert_null(b);
    assert_non_null(strstr(err, "KRILL_CPU_MATMUL"));
    p.cpu_weights = "q3";
    assert_null(backend_open("cpu", &p, err, sizeof err));
    assert_non_null(strstr(err, "cpu_weights 'q3'"));
    p.cpu_weights = "q4";
    setenv("KRILL_CPU_QMAT", "sse2", 1);
    assert_null(backend_open("cpu", &p, err, sizeof err));
    unsetenv("KRILL_CPU_QMAT");
    assert_non_null(strstr(err, "KRILL_CPU_QMAT"));
}

/* ------------------------------------------------------------------ benchmark */
/* W (out, in), x (512, in) seeded; y (512, out). */
static void bench_data(int in, int out, float **w, float **x, float **y) {
    *w = testutil_xmalloc(sizeof(float) * out * in);
    *x = testutil_xmalloc(sizeof(float) * 512 * in);
    *y = testutil_xmalloc(sizeof(float) * 512 * (size_t)out);
    testutil_seed(1);
    testutil_fill(*w, (size_t)out * in, 0.5f);
    testutil_fill(*x, (size_t)512 * in, 1.0f);
}

static int bench(void) {
    static const int shapes[][2] = {{576, 1728}, {576, 576}, {576, 3072}, {1536, 576}, {576, 49152}};
    static const int ns[] = {1, 2, 8, 64, 512};
    const int threads = (int)testutil_env_long("KRILL_BENCH_THREADS", 1, 0, 1024);
    const int reps = (int)testutil_env_long("KRILL_BENCH_REPS", 20, 1, 1000000);
    backend_t *be[2] = {open_cpu(threads, NULL), open_cpu(threads, "openblas")};
    printf("bench: %d thread(s), best of %d interleaved runs; GFLOP/s = 2 n in out / time\n", threads, reps);
    printf("%-12s %5s %12s %12s %8s\n", "in->out", "n", "krill", "openblas", "ratio");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int in = shapes[s][0], out = shapes[s][1];
        float *w, *x, *y;
        bench_data(in, out, &w, &x, &y);
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            const int n = ns[ni];
            const double flop = 2.0 * n * in * out;
            /* ~10 ms per timing: short enough to catch quiet moments of a shared machine */
            int iters = (int)(4e8 / flop);
            if (iters < 1) iters = 1;
            double best[2] = {1e9, 1e9};
            for (int rep = 0; rep < reps; rep++)
                for (int k = 0; k < 2; k++) {
                    be[k]->ops->matmul(be[k]->ctx, y, x, w, NULL, n, in, out); /* warm */
                    double t = clock_now_s();
                    for (int it = 0; it < iters; it++) be[k]->ops->matmul(be[k]->ctx, y, x, w, NULL, n, in, out);
                    t = (clock_now_s() - t) / iters;
                    if (t < best[k]) best[k] = t;
                }
            printf("%4d->%-6d %5d %12.1f %12.1f %8.2f\n", in, out, n, flop / best[0] * 1e-9, flop / best[1] * 1e-9,
                   best[1] / best[0]);
            fflush(stdout);
        }
        free(w), free(x), free(y);
    }
    backend_close(be[0]);
    backend_close(be[1]);
    return 0;
}

/* Copy loop over two 256 MiB buffers, split over `threads` threads: bytes read +
 * written per second, best of 5 (the machine's usable memory bandwidth). */
typedef struct {
    char *dst;
    const char *src;
    size_t n;
} copy_t;
static void *copy_run(void *arg) {
    copy_t *c = arg;
    memcpy(c->dst, c->src, c->n);
    return NULL;
}
static double copy_bandwidth(int threads) {
    const size_t n = (size_t)256 << 20;
    char *a = malloc(n), *b = malloc(n);
    memset(a, 1, n), memset(b, 2, n);
    double best = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        pthread_t th[16];
        copy_t c[16];
        double t = clock_now_s();
        for (int i = 0; i < threads; i++) {
            c[i] = (copy_t){b + n / threads * i, a + n / threads * i, n / threads};
            pthread_create(&th[i], NULL, copy_run, &c[i]);
        }
        for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
        t = clock_now_s() - t;
        if (t < best) best = t;
    }
    free(a), free(b);
    return 2.0 * n / best * 1e-9;
}

static int bench_q(const char *weights) {
    static const int shapes[][2] = {{576, 960}, {576, 576}, {576, 3072}, {1536, 576}, {576, 49152}};
    static const int ns[] = {1, 4, 64, 512};
    const int threads = (int)testutil_env_long("KRILL_BENCH_THREADS", 2, 1, 16);
    const int reps = (int)testutil_env_long("KRILL_BENCH_REPS", 10, 1, 1000000);
    const backend_dtype_t dt = !strcmp(weights, "q8") ? BACKEND_DT_Q8 : BACKEND_DT_Q4;
    backend_t *b = open_q(threads, weights, NULL);
    printf("bench %s (%s): %d thread(s), best of %d; copy loop %.1f GB/s (1 thread %.1f)\n", weights,
           b->info.device, threads, reps, copy_bandwidth(threads), copy_bandwidth(1));
    /* cpu: per CPU-second of this process (what a shared machine leaves comparable) */
    printf("%-12s %5s %10s %12s %12s %14s %14s\n", "in->out", "n", "us", "weights GB/s", "int GOP/s", "cpu GB/s",
           "cpu GOP/s");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int in = shapes[s][0], out = shapes[s][1];
        float *w, *x, *y;
        bench_data(in, out, &w, &x, &y);
        void *wq = load_q(b, dt, w, out, in);
        const double wbytes = (double)backend_weight_bytes(dt, out, in);
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            const int n = ns[ni];
            const double ops = 2.0 * n * in * out;
            int iters = (int)(4e8 / ops);
            if (iters < 1) iters = 1;
            double best = 1e9, best_cpu = 1e9;
            for (int rep = 0; rep < reps; rep++) {
                b->ops->matmul(b->ctx, y, x, wq, NULL, n, in, out);
                struct timespec c0, c1;
                clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
                double t = clock_now_s();
                for (int it = 0; it < iters; it++) b->ops->matmul(b->ctx, y, x, wq, NULL, n, in, out);
                t = (clock_now_s() - t) / iters;
                clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
                const double tc = ((double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) * 1e-9) / iters;
                if (t < best) best = t;
                if (tc < best_cpu) best_cpu = tc;
            }
            printf("%4d->%-6d %5d %10.1f %12.2f %12.1f %14.2f %14.1f\n", in, out, n, best * 1e6, wbytes / best * 1e-9,
                   ops / best * 1e-9, wbytes / best_cpu * 1e-9, ops / best_cpu * 1e-9);
            fflush(stdout);
        }
        b->ops->free(b->ctx, wq);
        free(w), free(x), free(y);
    }
    backend_close(b);
    return 0;
}

int main(void) {
    const char *bm = getenv("KRILL_BENCH_MATMUL");
    if (bm && (!strcmp(bm, "q4") || !strcmp(bm, "q8"))) return bench_q(bm);
    if (bm) return bench();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_accuracy),
        cmocka_unit_test(test_batch_invariance),
        cmocka_unit_test(test_quantized_batch_invariance),
        cmocka_unit_test(test_bad_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
