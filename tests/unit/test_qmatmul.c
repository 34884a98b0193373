/* test_qmatmul.c — the quantized CPU matmul (src/engine/cpu/qmat.h).
 *
 * - order: weights built from known integers and f16 scales (as ggml Q8_0 / Q4_1
 *   blocks, which map exactly), activations quantized by qmat_quantize_row (two int8
 *   planes); this file re-derives every output from those integers in qmat.h's
 *   documented order (exact int32 block sums I = 256 I1 + I2, then
 *   fmaf(d_w * d_x, I, acc) [+ fmaf(m_w, s_x, acc)]) and every
 *   kernel this CPU runs (ref, avx2, avxvnni, avx512vnni) must give the same bits,
 *   over shapes that cover every register tile (1..4 rows, 1..2 panels) and edge.
 * - accuracy vs f32: the same y computed in double from the unquantized activations
 *   differs by at most  sum_b d_x[b] * sum_k |w_k|  (d_x = amax/127/256: the second
 *   plane's rounding, half a step, or a whole one where it clamps at 127) plus 1e-5 of
 *   sum |x||w| (float rounding) — checked per element; the test also prints the worst
 *   error relative to that bound and to one-plane 8-bit rounding (256 d_x / 2).
 * - every supported GGUF type (tests/data/quant vectors, as 8 rows): packing into q8
 *   and q4 then qmat_dequant_row gives the file's values bit for bit where the types
 *   map (Q8_0 -> q8, Q4_0/Q4_1 -> q4; Q4_0's -0 may read +0), else within half a step of the block's new
 *   scale (q8: amax/254, q4: (max-min)/30, + f16 rounding of scale and min, relative
 *   2^-11 and absolute 2^-25 for subnormal scales); and the
 *   matmul through each packed form stays within the bound above plus that error.
 * - activation quantization: |q1|, |q2| <= 127, d_x = amax/127/256,
 *   |x - d_x (256 q1 + q2)| <= d_x, s = d_x * sum(256 q1 + q2), unsigned = q + 128, and
 *   the AVX2 quantizer gives the reference's bytes exactly (zeros, outliers, ties).
 * - throughput: each kernel's integer GOP/s on a model-sized matmul (printed). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "cpu/qmat.h"
#include "quant.h"
#include "testutil.h"

static const qmat_impl_t IMPLS[] = {QMAT_IMPL_REF, QMAT_IMPL_AVX2, QMAT_IMPL_AVXVNNI, QMAT_IMPL_AVX512VNNI};
#define N_IMPLS (sizeof IMPLS / sizeof IMPLS[0])

/* A (rows x cols) matrix as ggml blocks of known integers: Q8_0 (q in -128..127, some
 * -128 to reach the edge) or Q4_1 (q in 0..15), random f16 scales (and mins). */
typedef struct {
    int rows, cols;
    gguf_ttype_t type;
    uint8_t *raw;
    int *q;           /* rows x cols */
    float *d, *m;     /* rows x cols/32 (f16 values) */
} known_t;

static void known_make(known_t *k, int rows, int cols, qmat_type_t t) {
    const int nb = cols / 32, bb = t == QMAT_Q8 ? 34 : 20;
    k->rows = rows;
    k->cols = cols;
    k->type = t == QMAT_Q8 ? GGUF_T_Q8_0 : GGUF_T_Q4_1;
    k->raw = testutil_xmalloc((size_t)rows * nb * bb);
    k->q = testutil_xmalloc(sizeof(int) * rows * cols);
    k->d = testutil_xmalloc(sizeof(float) * rows * nb);
    k->m = testutil_xmalloc(sizeof(float) * rows * nb);
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < nb; b++) {
            uint8_t *blk = k->raw + ((size_t)r * nb + b) * bb;
            const uint16_t d = quant_f32_to_f16(0.001f + 0.02f * (testutil_unif() + 1.0f));
            const uint16_t m = quant_f32_to_f16(-0.15f * (testutil_unif() + 1.0f));
            k->d[r * nb + b] = quant_f16_to_f32(d);
            k->m[r * nb + b] = t == QMAT_Q8 ? 0.0f : quant_f16_to_f32(m);
            memcpy(blk, &d, 2);
            if (t == QMAT_Q4) memcpy(blk + 2, &m, 2);
            for (int j = 0; j < 32; j++) {
                int q;
                if (t == QMAT_Q8) q = (testutil_next() % 50 == 0) ? -128 : (int)(testutil_next() % 255) - 127;
                else q = (int)(testutil_next() % 16);
                k->q[(size_t)r * cols + b * 32 + j] = q;
                if (t == QMAT_Q8) blk[2 + j] = (uint8_t)(int8_t)q;
                else if (j < 16) blk[4 + j] = (uint8_t)q;
                else blk[4 + j - 16] |= (uint8_t)(q << 4);
            }
        }
}

static void known_free(known_t *k) {
    free(k->raw);
    free(k->q);
    free(k->d);
    free(k->m);
}

/* Quantized activation rows as qmat_quantize_row stores them. */
static void *quantize_rows(const float *x, int n, int in, bool uns) {
    const size_t xs = qmat_act_bytes(in);
    uint8_t *xq = testutil_xmalloc(xs * (size_t)n);
    for (int r = 0; r < n; r++) qmat_quantize_row(QMAT_IMPL_REF, xq + r * xs, x + (size_t)r * in, in, uns);
    return xq;
}

/* The documented order from the known integers. */
static float order_ref(const known_t *k, qmat_type_t t, const uint8_t *xrow, bool uns, int c, const float *bias) {
    const int nb = k->cols / 32;
    const float *dx = (const float *)xrow, *sx = dx + nb;
    const uint8_t *q = (const uint8_t *)(sx + nb);
    float acc = 0.0f;
    for (int b = 0; b < nb; b++) {
        int32_t I1 = 0, I2 = 0;
        for (int j = 0; j < 32; j++) {
            const uint8_t *q1 = q + b * 64, *q2 = q1 + 32;
            const int x1 = uns ? (int)q1[j] - 128 : (int8_t)q1[j], x2 = uns ? (int)q2[j] - 128 : (int8_t)q2[j];
            I1 += k->q[(size_t)c * k->cols + b * 32 + j] * x1;
            I2 += k->q[(size_t)c * k->cols + b * 32 + j] * x2;
        }
        const int32_t I = 256 * I1 + I2;
        acc = fmaf(k->d[c * nb + b] * dx[b], (float)I, acc);
        if (t == QMAT_Q4) acc = fmaf(k->m[c * nb + b], sx[b], acc);
    }
    return bias ? acc + bias[c] : acc;
}

/* y (n, out) in double from f32 x and the f32 values of W (out, in); bound per element. */
static void f32_ref(const float *x, const float *w, int n, int in, int out, const uint8_t *xq, double *y,
                    double *bound) {
    const size_t xs = qmat_act_bytes(in);
    const int nb = in / 32;
    for (int r = 0; r < n; r++) {
        const float *dx = (const float *)(xq + r * xs);
        for (int c = 0; c < out; c++) {
            double s = 0, mag = 0, b = 0;
            for (int bl = 0; bl < nb; bl++) {
                double wsum = 0;
                for (int j = 0; j < 32; j++) {
                    const int kk = bl * 32 + j;
                    s += (double)x[(size_t)r * in + kk] * w[(size_t)c * in + kk];
                    mag += fabs((double)x[(size_t)r * in + kk] * w[(size_t)c * in + kk]);
                    wsum += fabs(w[(size_t)c * in + kk]);
                }
                b += dx[bl] * wsum;
            }
            y[(size_t)r * out + c] = s;
            bound[(size_t)r * out + c] = b * (1 + 1e-6) + 1e-5 * mag + 1e-30;
        }
    }
}

static void test_kernels_order_and_bound(void **state) {
    (void)state;
    static const int shapes[][3] = {{1, 32, 8},  {2, 64, 16},  {3, 96, 24},   {4, 32, 40},  {5, 128, 8},
                                    {7, 64, 56}, {9, 576, 24}, {13, 32, 16},  {1, 1536, 48}, {16, 576, 72},
                                    {64, 64, 40}, {6, 160, 8}};
    for (int ti = 0; ti < 2; ti++) {
        const qmat_type_t t = (qmat_type_t)ti;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const int n = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
            testutil_seed(900 + 31 * s + ti);
            known_t k;
            known_make(&k, out, in, t);
            float *x = testutil_xmalloc(sizeof(float) * n * in), *bias = testutil_xmalloc(sizeof(float) * out);
            testutil_fill(x, (size_t)n * in, 2.0f);
            for (int i = 0; i < n * in; i += 7) x[i] *= 20.0f; /* outliers inside blocks */
            testutil_fill(bias, (size_t)out, 1.0f);
            const size_t wb = qmat_bytes(t, out, in);
            assert_true(wb > 0);
            void *w = testutil_xmalloc(wb);
            assert_int_equal(qmat_pack(t, w, k.type, k.raw, out, in, 0, out / 8), 0);
            float *wf = testutil_xmalloc(sizeof(float) * out * in);
            assert_int_equal(quant_dequantize_f32(k.type, k.raw, wf, (int64_t)out * in), 0);
            float *y = testutil_xmalloc(sizeof(float) * n * out), *want = testutil_xmalloc(sizeof(float) * n * out);
            double *yd = testutil_xmalloc(sizeof(double) * n * out), *bd = testutil_xmalloc(sizeof(double) * n * out);
            for (size_t ii = 0; ii < N_IMPLS; ii++) {
                const qmat_impl_t impl = IMPLS[ii];
                if (!qmat_impl_available(impl)) continue;
                const bool uns = qmat_act_unsigned(impl, t);
                uint8_t *xq = quantize_rows(x, n, in, uns);
                for (int wb_ = 0; wb_ < 2; wb_++) {
                    const float *bb = wb_ ? bias : NULL;
                    for (int r = 0; r < n; r++)
                        for (int c = 0; c < out; c++)
                            want[r * out + c] = order_ref(&k, t, xq + r * qmat_act_bytes(in), uns, c, bb);
                    memset(y, 0xff, sizeof(float) * n * out);
                    qmat_block(impl, t, y, out, xq, w, bb, in, 0, n, 0, out);
                    for (int i = 0; i < n * out; i++)
                        if (memcmp(&y[i], &want[i], 4))
                            fail_msg("%s %s n=%d in=%d out=%d: y[%d][%d] = %.9g, documented order gives %.9g",
                                     qmat_impl_name(impl), t == QMAT_Q8 ? "q8" : "q4", n, in, out, i / out,
                                     i % out, y[i], want[i]);
                    /* a sub-block (rows and panels inside the matrix) gives the same bits */
                    if (n > 2 && out > 16) {
                        memset(y, 0, sizeof(float) * n * out);
                        qmat_block(impl, t, y, out, xq, w, bb, in, 1, n - 1, 8, out - 8);
                        for (int r = 1; r < n - 1; r++)
                            assert_memory_equal(y + r * out + 8, want + r * out + 8, sizeof(float) * (out - 16));
                    }
                }
                f32_ref(x, wf, n, in, out, xq, yd, bd);
                qmat_block(impl, t, y, out, xq, w, NULL, in, 0, n, 0, out);
                for (int i = 0; i < n * out; i++)
                    if (fabs(y[i] - yd[i]) > bd[i])
                        fail_msg("%s: |y - f32| = %g > bound %g at %d", qmat_impl_name(impl), fabs(y[i] - yd[i]), bd[i],
                                 i);
                free(xq);
            }
            free(x), free(bias), free(w), free(wf), free(y), free(want), free(yd), free(bd);
            known_free(&k);
        }
    }
}

static void test_activation_quantization(void **state) {
    (void)state;
    testutil_seed(55);
    enum { IN = 256, NB = IN / 32 };
    float x[IN];
    testutil_fill(x, IN, 3.0f);
    memset(x + 32, 0, 32 * sizeof(float));                        /* an all-zero block */
    for (int j = 64; j < 96; j++) x[j] = (float)(j % 9 - 4) * 0.5f; /* ties: x / d on .5 */
    x[100] = 1e4f;                                                 /* an outlier */
    for (int j = 128; j < 160; j++) x[j] = 1e-38f * (float)(j % 5); /* below the 1e-30 floor */
    uint8_t s[2048], u[2048], v[2048];
    qmat_quantize_row(QMAT_IMPL_REF, s, x, IN, false);
    qmat_quantize_row(QMAT_IMPL_REF, u, x, IN, true);
    const float *d = (const float *)s, *sx = d + NB;
    for (int b = 0; b < NB; b++) {
        float amax = 0;
        int sum = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        assert_true(d[b] == amax / 127.0f / 256.0f);
        const uint8_t *q1 = s + 8 * NB + b * 64, *q2 = q1 + 32;
        for (int j = 0; j < 32; j++) {
            const int a = (int8_t)q1[j], c = (int8_t)q2[j];
            assert_true(a >= -127 && a <= 127 && c >= -127 && c <= 127);
            assert_int_equal(u[8 * NB + b * 64 + j], a + 128);
            assert_int_equal(u[8 * NB + b * 64 + 32 + j], c + 128);
            if (amax > 1e-30f) assert_true(fabsf(x[b * 32 + j] - (float)(256 * a + c) * d[b]) <= d[b] * 1.0001f);
            sum += 256 * a + c;
        }
        assert_true(sx[b] == d[b] * (float)sum);
    }
    assert_true(d[1] == 0.0f);
    /* every quantizer gives the reference's bytes, on this row and on random ones */
    for (size_t ii = 0; ii < N_IMPLS; ii++) {
        if (!qmat_impl_available(IMPLS[ii])) continue;
        for (int rep = 0; rep < 200; rep++) {
            if (rep) {
                testutil_fill(x, IN, rep % 2 ? 0.01f : 50.0f);
                for (int j = rep % 7; j < IN; j += 13) x[j] *= 30.0f;
            }
            for (int un = 0; un < 2; un++) {
                qmat_quantize_row(QMAT_IMPL_REF, s, x, IN, un);
                memset(v, 0xa5, sizeof v);
                qmat_quantize_row(IMPLS[ii], v, x, IN, un);
                if (memcmp(s, v, 8 * NB + 2 * IN))
                    fail_msg("quantizer of %s differs from the reference (row %d, unsigned %d)",
                             qmat_impl_name(IMPLS[ii]), rep, un);
            }
        }
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Integer GOP/s of each kernel (2 planes x 2 ops per weight x activation pair) on
 * the default model's FFN shape, batch 64: what docs/engine.md quotes. */
static void test_kernel_throughput(void **state) {
    (void)state;
    enum { N = 64, IN = 576, OUT = 1536 };
    testutil_seed(4);
    float *x = testutil_xmalloc(sizeof(float) * N * IN), *y = testutil_xmalloc(sizeof(float) * N * OUT);
    testutil_fill(x, (size_t)N * IN, 1.0f);
    for (int ti = 0; ti < 2; ti++) {
        const qmat_type_t t = (qmat_type_t)ti;
        known_t k;
        known_make(&k, OUT, IN, t);
        void *w = testutil_xmalloc(qmat_bytes(t, OUT, IN));
        assert_int_equal(qmat_pack(t, w, k.type, k.raw, OUT, IN, 0, OUT / 8), 0);
        for (size_t ii = 0; ii < N_IMPLS; ii++) {
            const qmat_impl_t impl = IMPLS[ii];
            if (!qmat_impl_available(impl) || (impl == QMAT_IMPL_REF && testutil_sanitize())) continue;
            uint8_t *xq = quantize_rows(x, N, IN, qmat_act_unsigned(impl, t));
            const int reps = impl == QMAT_IMPL_REF ? 1 : 20;
            double best = 1e30;
            for (int rep = 0; rep < reps; rep++) {
                const double t0 = now_s();
                qmat_block(impl, t, y, OUT, xq, w, NULL, IN, 0, N, 0, OUT);
                const double dt = now_s() - t0;
                if (dt < best) best = dt;
            }
            const double ops = 2.0 * 2.0 * N * IN * OUT;
            printf("  %-10s %s %dx%dx%d: %8.1f us, %6.1f int GOP/s (two planes; %6.1f GMAC/s of x*W)\n",
                   qmat_impl_name(impl), t == QMAT_Q8 ? "q8" : "q4", N, IN, OUT, best * 1e6, ops / best * 1e-9,
                   ops / 4 / best * 1e-9);
            free(xq);
        }
        /* the quantizer's rows per second (AVX2 vs C) */
        uint8_t *xq = testutil_xmalloc(qmat_act_bytes(IN) * N);
        for (int ii = 0; ii < 2; ii++) {
            const qmat_impl_t impl = ii ? QMAT_IMPL_AUTO : QMAT_IMPL_REF;
            double best = 1e30;
            for (int rep = 0; rep < 20; rep++) {
                const double t0 = now_s();
                for (int r = 0; r < N; r++)
                    qmat_quantize_row(impl, xq + r * qmat_act_bytes(IN), x + (size_t)r * IN, IN, false);
                if (now_s() - t0 < best) best = now_s() - t0;
            }
            if (ti == 0)
                printf("  quantizer %-4s: %.1f ns per %d-float row (best of 20)\n", ii ? "auto" : "ref",
                       best / N * 1e9, IN);
        }
        free(xq), free(w);
        known_free(&k);
    }
    free(x), free(y);
}

/* ---- every supported GGUF type through the new layouts */
#define DATA "tests/data/quant/"
static void *slurp(const char *name, const char *ext, size_t *len) {
    char path[256];
    snprintf(path, sizeof path, DATA "%s.%s", name, ext);
    void *p = testutil_read_file(path, len);
    if (!p) fail_msg("cannot read %s (run from the repository root)", path);
    return p;
}

static void test_every_gguf_type(void **state) {
    (void)state;
    /* every type quant.c dequantizes has a vector (test_quant checks the same list) */
    int n_types = 0;
    for (int ti_ = 0; ti_ < 64; ti_++) {
        const gguf_ttype_t type = (gguf_ttype_t)ti_;
        if (!quant_supported(type)) continue;
        n_types++;
        const char *name = quant_type_name(type);
        size_t rl, fl;
        uint8_t *raw = slurp(name, "raw", &rl);
        float *ref = slurp(name, "f32", &fl);
        const int n = (int)(fl / 4), rows = 8, cols = n / rows;
        assert_int_equal(quant_row_bytes(type, (int64_t)n), (int64_t)rl);
        for (int ti = 0; ti < 2; ti++) {
            const qmat_type_t t = (qmat_type_t)ti;
            void *w = testutil_xmalloc(qmat_bytes(t, rows, cols));
            assert_int_equal(qmat_pack(t, w, type, raw, rows, cols, 0, 1), 0);
            float *got = testutil_xmalloc(sizeof(float) * n);
            for (int r = 0; r < rows; r++) qmat_dequant_row(t, w, cols, r, got + r * cols);
            const bool exact = qmat_exact_from(t, type);
            double max_err = 0;
            int nonfinite = 0;
            for (int b = 0; b < n / 32; b++) {
                const float *x = ref + b * 32;
                bool fin = true;
                for (int j = 0; j < 32; j++) fin = fin && isfinite(x[j]);
                if (!fin) { /* the conversion vectors hold inf/nan on purpose: not weights */
                    nonfinite++;
                    continue;
                }
                float amax = 0, mn = x[0], mx = x[0];
                for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j])), mn = fminf(mn, x[j]), mx = fmaxf(mx, x[j]);
                const double step = t == QMAT_Q8 ? amax / 127.0 : (mx - mn) / 15.0;
                /* f16 scales: relative rounding 2^-11, and absolute 2^-25 (subnormals) times |q| */
                const double f16_abs = ldexp(1.0, -25);
                const double bound = exact ? 0
                                           : 0.5 * step * 1.002 + (t == QMAT_Q8 ? 128 : 16) * f16_abs +
                                                 (t == QMAT_Q4 ? fabs(mn) / 2048.0 + f16_abs : 0);
                for (int j = 0; j < 32; j++) {
                    const double e = fabs((double)got[b * 32 + j] - x[j]);
                    if (e > bound)
                        fail_msg("%s -> %s: element %d is %.9g, file value %.9g (bound %g)", name,
                                 t == QMAT_Q8 ? "q8" : "q4", b * 32 + j, got[b * 32 + j], x[j], bound);
                    if (e > max_err) max_err = e;
                }
            }
            if (exact) /* equal values; Q4_0's d (q - 8) may be -0 where d q + m is +0 */
                for (int e = 0; e < n; e++)
                    if (!(got[e] == ref[e])) fail_msg("%s: element %d is %.9g, file %.9g", name, e, got[e], ref[e]);
            if (nonfinite) {
                printf("  %-5s -> %s: %d blocks with inf/nan skipped, max |w - file| = %.3g elsewhere\n",
                       name, t == QMAT_Q8 ? "q8" : "q4", nonfinite, max_err);
                free(got), free(w);
                continue;
            }
            /* the matmul through the packed form, against f32 of what was packed */
            const int nx = 3;
            float x[3 * 256];
            testutil_seed(77 + (uint64_t)ti_);
            testutil_fill(x, (size_t)nx * cols, 1.0f);
            const qmat_impl_t impl = QMAT_IMPL_AUTO;
            uint8_t *xq = quantize_rows(x, nx, cols, qmat_act_unsigned(impl, t));
            float y[3 * 8];
            double yd[3 * 8], bd[3 * 8];
            qmat_block(impl, t, y, rows, xq, w, NULL, cols, 0, nx, 0, rows);
            f32_ref(x, got, nx, cols, rows, xq, yd, bd);
            for (int e = 0; e < nx * rows; e++)
                if (!(fabs(y[e] - yd[e]) <= bd[e]))
                    fail_msg("%s -> %s: y[%d] = %.9g, f32 %.9g, bound %g", name, t == QMAT_Q8 ? "q8" : "q4",
                             e, y[e], yd[e], bd[e]);
            printf("  %-5s -> %s: %s, max |w - file| = %.3g\n", name, t == QMAT_Q8 ? "q8" : "q4",
                   exact ? "exact" : "re-quantized", max_err);
            free(xq), free(got), free(w);
        }
        free(raw), free(ref);
    }
    assert_true(n_types >= 13);
}

static void test_layout_sizes(void **state) {
    (void)state;
    assert_int_equal(qmat_bytes(QMAT_Q8, 8, 32), 288);
    assert_int_equal(qmat_bytes(QMAT_Q4, 16, 64), 4 * 160);
    assert_int_equal(qmat_bytes(QMAT_Q4, 12, 64), 0); /* rows not a multiple of 8 */
    assert_int_equal(qmat_bytes(QMAT_Q8, 8, 48), 0);  /* cols not a multiple of 32 */
    assert_true(qmat_exact_from(QMAT_Q8, GGUF_T_Q8_0) && !qmat_exact_from(QMAT_Q8, GGUF_T_Q4_0));
    assert_true(qmat_exact_from(QMAT_Q4, GGUF_T_Q4_1) && qmat_exact_from(QMAT_Q4, GGUF_T_Q4_0));
    assert_int_equal(qmat_pack(QMAT_Q8, NULL, GGUF_T_Q8_K, NULL, 8, 256, 0, 1), -1); /* no dequantizer */
    printf("  kernels on this CPU:");
    for (size_t ii = 0; ii < N_IMPLS; ii++)
        if (qmat_impl_available(IMPLS[ii])) printf(" %s", qmat_impl_name(IMPLS[ii]));
    printf(" (auto = %s)\n", qmat_impl_name(QMAT_IMPL_AUTO));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_sizes),
        cmocka_unit_test(test_activation_quantization),
        cmocka_unit_test(test_kernels_order_and_bound),
        cmocka_unit_test(test_every_gguf_type),
        cmocka_unit_test(test_kernel_throughput),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
