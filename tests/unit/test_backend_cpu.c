/* test_backend_cpu.c — every CPU backend op against a naive double-precision reference
 * written here, on seeded random inputs over a table of shapes (odd sizes, batch 1,
 * GQA/MQA, block sizes that do and do not divide the chunking), with 1 and 3 threads.
 *
 * Error measure: normalised L2 error ||got - ref|| / ||ref|| per op (llama.cpp's
 * test-backend-ops NMSE idea); f32 ops must stay under 1e-5, the f16 KV cache is
 * compared with a reference that rounds K/V to f16 the same way. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "backend.h"
#include "quant.h"
#include "testutil.h"

static backend_t *open_cpu(int threads, const char *kv) {
    char err[256];
    backend_params_t p = {.n_threads = threads, .kv_dtype = kv};
    backend_t *b = backend_open("cpu", &p, err, sizeof err);
    if (!b) fail_msg("backend_open: %s", err);
    return b;
}

static const int thread_counts[] = {1, 3};

/* ------------------------------------------------------------------ matmul */
static void test_matmul(void **state) {
    (void)state;
    static const int shapes[][3] = {{1, 1, 1},   {1, 7, 13},  {3, 64, 96},    {5, 33, 17},
                                    {1, 576, 960}, {17, 100, 1000}, {64, 96, 33}, {2, 31, 4099}};
    for (size_t ti = 0; ti < 2; ti++) {
        backend_t *b = open_cpu(thread_counts[ti], NULL);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int n = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
            for (int with_bias = 0; with_bias < 2; with_bias++) {
                testutil_seed(1000 + s);
                float *x = b->ops->alloc(b->ctx, sizeof(float) * n * in);
                float *w = b->ops->alloc(b->ctx, sizeof(float) * out * in);
                float *bias = b->ops->alloc(b->ctx, sizeof(float) * out);
                float *y = b->ops->alloc(b->ctx, sizeof(float) * n * out);
                double *ref = malloc(sizeof(double) * n * out);
                testutil_fill(x, (size_t)n * in, 1.0f);
                testutil_fill(w, (size_t)out * in, 0.5f);
                testutil_fill(bias, out, 1.0f);
                b->ops->matmul(b->ctx, y, x, w, with_bias ? bias : NULL, n, in, out);
                assert_int_equal(b->ops->synchronize(b->ctx), 0);
                for (int r = 0; r < n; r++)
                    for (int c = 0; c < out; c++) {
                        double acc = with_bias ? bias[c] : 0.0;
                        for (int k = 0; k < in; k++) acc += (double)x[r * in + k] * w[(size_t)c * in + k];
                        ref[(size_t)r * out + c] = acc;
                    }
                double e = testutil_nerr(y, ref, (size_t)n * out);
                if (e > 1e-5) fail_msg("matmul n=%d in=%d out=%d bias=%d threads=%d: nerr %g", n, in, out, with_bias,
                                       thread_counts[ti], e);
                free(ref);
                b->ops->free(b->ctx, x);
                b->ops->free(b->ctx, w);
                b->ops->free(b->ctx, bias);
                b->ops->free(b->ctx, y);
            }
        }
        backend_close(b);
    }
}

/* ------------------------------------------------------------------ rmsnorm */
static void test_rmsnorm(void **state) {
    (void)state;
    static const int shapes[][2] = {{1, 1}, {1, 7}, {3, 64}, {5, 577}, {300, 96}, {64, 576}};
    for (size_t ti = 0; ti < 2; ti++) {
        backend_t *b = open_cpu(thread_counts[ti], NULL);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int n = shapes[s][0], d = shapes[s][1];
            for (int with_add = 0; with_add < 2; with_add++) {
                testutil_seed(2000 + s);
                size_t nd = (size_t)n * d;
                float *x = malloc(sizeof(float) * nd), *x0 = malloc(sizeof(float) * nd);
                float *add = malloc(sizeof(float) * nd), *w = malloc(sizeof(float) * d);
                float *out = malloc(sizeof(float) * nd);
                double *ref = malloc(sizeof(double) * nd), *refx = malloc(sizeof(double) * nd);
                testutil_fill(x0, nd, 3.0f);
                testutil_fill(add, nd, 1.0f);
                testutil_fill(w, d, 2.0f);
                memcpy(x, x0, sizeof(float) * nd);
                const float eps = 1e-5f;
                b->ops->rmsnorm(b->ctx, out, x, with_add ? add : NULL, w, n, d, eps);
                for (int r = 0; r < n; r++) {
                    double ss = 0;
                    for (int i = 0; i < d; i++) {
                        /* the residual sum is an f32 addition in every implementation */
                        float xi = with_add ? x0[r * d + i] + add[r * d + i] : x0[r * d + i];
                        refx[r * d + i] = xi;
                        ss += (double)xi * xi;
                    }
                    double sc = 1.0 / sqrt(ss / d + eps);
                    for (int i = 0; i < d; i++) ref[r * d + i] = refx[r * d + i] * sc * w[i];
                }
                double e = testutil_nerr(out, ref, nd), ex = testutil_nerr(x, refx, nd);
                if (e > 1e-6 || ex > 0)
                    fail_msg("rmsnorm n=%d d=%d add=%d: nerr out %g x %g", n, d, with_add, e, ex);
                free(x), free(x0), free(add), free(w), free(out), free(ref), free(refx);
            }
        }
        backend_close(b);
    }
}

/* ------------------------------------------------------------------ embed, get_rows */
static void test_embed_get_rows(void **state) {
    (void)state;
    for (size_t ti = 0; ti < 2; ti++) {
        backend_t *b = open_cpu(thread_counts[ti], NULL);
        const int vocab = 301, dim = 37, n = 1000;
        float *table = malloc(sizeof(float) * vocab * dim), *out = malloc(sizeof(float) * n * dim);
        int32_t *ids = malloc(sizeof(int32_t) * n);
        testutil_seed(3);
        testutil_fill(table, (size_t)vocab * dim, 1.0f);
        for (int i = 0; i < n; i++) ids[i] = (int32_t)(testutil_next() % vocab);
        for (int nn = 1; nn <= n; nn *= 10) {
            b->ops->embed(b->ctx, out, table, ids, nn, dim);
            for (int i = 0; i < nn; i++)
                assert_memory_equal(out + (size_t)i * dim, table + (size_t)ids[i] * dim, sizeof(float) * dim);
            memset(out, 0, sizeof(float) * n * dim);
            b->ops->get_rows(b->ctx, out, table, ids, nn, dim);
            for (int i = 0; i < nn; i++)
                assert_memory_equal(out + (size_t)i * dim, table + (size_t)ids[i] * dim, sizeof(float) * dim);
        }
        free(table), free(out), free(ids);
        backend_close(b);
    }
}

/* ------------------------------------------------------------------ rope */
static void test_rope(void **state) {
    (void)state;
    /* n, n_heads, head_dim, rope_dim */
    static const int shapes[][4] = {{1, 1, 2, 2}, {3, 4, 16, 16}, {7, 3, 64, 32}, {200, 12, 64, 64}, {5, 2, 10, 6}};
    for (size_t ti = 0; ti < 2; ti++) {
        backend_t *b = open_cpu(thread_counts[ti], NULL);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int n = shapes[s][0], nh = shapes[s][1], hd = shapes[s][2], rd = shapes[s][3];
            int stride = nh * hd + 5; /* rows padded like the fused QKV buffer */
            for (int neox = 0; neox < 2; neox++) {
                testutil_seed(4000 + s);
                size_t sz = (size_t)n * stride;
                float *x = malloc(sizeof(float) * sz), *x0 = malloc(sizeof(float) * sz);
                double *ref = malloc(sizeof(double) * sz);
                float inv[BACKEND_MAX_HEAD_DIM / 2];
                int32_t *pos = malloc(sizeof(int32_t) * n);
                testutil_fill(x0, sz, 1.0f);
                memcpy(x, x0, sizeof(float) * sz);
                for (int i = 0; i < rd / 2; i++) inv[i] = powf(10000.0f, -2.0f * i / rd);
                for (int i = 0; i < n; i++) pos[i] = (int32_t)(testutil_next() % 5000);
                b->ops->rope(b->ctx, x, n, stride, nh, hd, rd, pos, inv, neox);
                for (size_t i = 0; i < sz; i++) ref[i] = x0[i];
                for (int r = 0; r < n; r++)
                    for (int h = 0; h < nh; h++) {
                        const float *v = x0 + (size_t)r * stride + h * hd;
                        double *o = ref + (size_t)r * stride + h * hd;
                        for (int i = 0; i < rd / 2; i++) {
                            double a = (float)pos[r] * inv[i]; /* angle rounded to f32 like HF */
                            int i0 = neox ? i : 2 * i, i1 = neox ? i + rd / 2 : 2 * i + 1;
                            o[i0] = v[i0] * cos(a) - v[i1] * sin(a);
                            o[i1] = v[i0] * sin(a) + v[i1] * cos(a);
                        }
                    }
                double e = testutil_nerr(x, ref, sz);
                if (e > 1e-6) fail_msg("rope n=%d nh=%d hd=%d rd=%d neox=%d: nerr %g", n, nh, hd, rd, neox, e);
                free(x), free(x0), free(ref), free(pos);
            }
        }
        backend_close(b);
    }
}

/* ------------------------------------------------------------------ swiglu */
static void test_swiglu(void **state) {
    (void)state;
    static const int shapes[][2] = {{1, 1}, {1, 9}, {3, 64}, {64, 1536}, {5, 1000}};
    for (size_t ti = 0; ti < 2; ti++) {
        backend_t *b = open_cpu(thread_counts[ti], NULL);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int n = shapes[s][0], f = shapes[s][1];
            testutil_seed(5000 + s);
            float *gu = malloc(sizeof(float) * n * 2 * f), *out = malloc(sizeof(float) * n * f);
            double *ref = malloc(sizeof(double) * n * f);
            testutil_fill(gu, (size_t)n * 2 * f, 8.0f);
            if (n * f > 8) { /* extremes: exp overflow/underflow paths */
                gu[0] = 100.0f, gu[1] = -100.0f, gu[2] = 89.0f, gu[3] = -89.0f, gu[4] = 0.0f;
            }
            b->ops->swiglu(b->ctx, out, gu, n, f);
            for (int r = 0; r < n; r++)
                for (int i = 0; i < f; i++) {
                    double g = gu[(size_t)r * 2 * f + i], u = gu[(size_t)r * 2 * f + f + i];
                    ref[(size_t)r * f + i] = g / (1.0 + exp(-g)) * u;
                }
            double e = testutil_nerr(out, ref, (size_t)n * f);
            for (int i = 0; i < n * f; i++) assert_true(isfinite(out[i]));
            if (e > 1e-6) fail_msg("swiglu n=%d f=%d: nerr %g", n, f, e);
            free(gu), free(out), free(ref);
        }
        backend_close(b);
    }
}

/* ------------------------------------------------------------------ kv_write + attention */

static float round_kv(float v, backend_dtype_t dt) {
    return dt == BACKEND_DT_F16 ? quant_f16_to_f32(quant_f32_to_f16(v)) : v;
}

/* Writes every position of n_seqs sequences of lengths len[] (as one ragged batch,
 * shuffled physical blocks), checks the cache against the documented layout, then runs
 * attention for every token and compares with a dense softmax in double. */
static void run_attention_case(backend_t *b, int nh, int nkv, int hd, int bs, const int *len, int n_seqs) {
    const backend_dtype_t dt = b->info.kv_dtype;
    const size_t es = backend_dtype_size(dt);
    const int kvd = nkv * hd, qd = nh * hd, stride = qd + 2 * kvd + 3;
    int total = 0, max_len = 0, n_blocks = 0;
    for (int s = 0; s < n_seqs; s++) {
        total += len[s];
        if (len[s] > max_len) max_len = len[s];
        n_blocks += (len[s] + bs - 1) / bs;
    }
    const int tstride = (max_len + bs - 1) / bs + 1; /* an unused column: stride != blocks used */
    n_blocks += 2;                                    /* spare blocks that nothing references */
    int32_t *table = malloc(sizeof(int32_t) * n_seqs * tstride);
    int32_t *perm = malloc(sizeof(int32_t) * n_blocks);
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    testutil_shuffle(perm, n_blocks);
    int used = 0;
    for (int s = 0; s < n_seqs; s++)
        for (int c = 0; c < tstride; c++)
            table[s * tstride + c] = c < (len[s] + bs - 1) / bs ? perm[used++] : -1;
    /* tokens in sequence order, positions ascending within each sequence */
    int32_t *pos = malloc(sizeof(int32_t) * total), *seq = malloc(sizeof(int32_t) * total);
    float *qkv = malloc(sizeof(float) * (size_t)total * stride), *out = malloc(sizeof(float) * (size_t)total * qd);
    double *ref = malloc(sizeof(double) * (size_t)total * qd);
    testutil_fill(qkv, (size_t)total * stride, 2.0f);
    int t = 0;
    for (int s = 0; s < n_seqs; s++)
        for (int p = 0; p < len[s]; p++, t++) pos[t] = p, seq[t] = s;
    size_t cache_bytes = (size_t)n_blocks * nkv * bs * hd * es;
    void *kc = b->ops->alloc(b->ctx, cache_bytes), *vc = b->ops->alloc(b->ctx, cache_bytes);
    backend_attn_t a = {.n_heads = nh, .n_kv_heads = nkv, .head_dim = hd, .block_size = bs, .scale = 1.0f / sqrtf((float)hd)};
    /* write in two pieces (a chunked prefill), the second piece first: order must not matter */
    int half = total / 2;
    b->ops->kv_write(b->ctx, kc, vc, qkv + (size_t)half * stride + qd, qkv + (size_t)half * stride + qd + kvd, stride,
                     pos + half, seq + half, table, tstride, total - half, &a);
    b->ops->kv_write(b->ctx, kc, vc, qkv + qd, qkv + qd + kvd, stride, pos, seq, table, tstride, half, &a);
    /* the CPU layout (docs/engine.md): K (block, kv_head, dim, slot), V (block, kv_head, slot, dim) */
    for (t = 0; t < total; t++) {
        int blk = table[seq[t] * tstride + pos[t] / bs], slot = pos[t] % bs;
        for (int g = 0; g < nkv; g++)
            for (int i = 0; i < hd; i++) {
                size_t ki = (((size_t)blk * nkv + g) * hd + i) * bs + slot;
                size_t vi = (((size_t)blk * nkv + g) * bs + slot) * hd + i;
                float kv_k = dt == BACKEND_DT_F16 ? quant_f16_to_f32(((uint16_t *)kc)[ki]) : ((float *)kc)[ki];
                float kv_v = dt == BACKEND_DT_F16 ? quant_f16_to_f32(((uint16_t *)vc)[vi]) : ((float *)vc)[vi];
                float want_k = round_kv(qkv[(size_t)t * stride + qd + g * hd + i], dt);
                float want_v = round_kv(qkv[(size_t)t * stride + qd + kvd + g * hd + i], dt);
                if (kv_k != want_k || kv_v != want_v)
                    fail_msg("kv_write: token %d head %d dim %d: cache (%g, %g) want (%g, %g)", t, g, i, kv_k, kv_v,
                             want_k, want_v);
            }
    }
    b->ops->attention(b->ctx, out, qkv, stride, kc, vc, pos, seq, table, tstride, total, &a);
    assert_int_equal(b->ops->synchronize(b->ctx), 0);
    /* dense reference: token t of sequence s sees the tokens of s at positions <= pos[t] */
    int *first = malloc(sizeof(int) * n_seqs);
    for (t = total - 1; t >= 0; t--) first[seq[t]] = t;
    double *sc = malloc(sizeof(double) * max_len);
    for (t = 0; t < total; t++) {
        int s0 = first[seq[t]];
        for (int h = 0; h < nh; h++) {
            int g = h / (nh / nkv);
            const float *q = qkv + (size_t)t * stride + h * hd;
            double mx = -INFINITY, sum = 0;
            for (int p = 0; p <= pos[t]; p++) {
                const float *k = qkv + (size_t)(s0 + p) * stride + qd + g * hd;
                double d = 0;
                for (int i = 0; i < hd; i++) d += (double)q[i] * round_kv(k[i], dt);
                sc[p] = d / sqrt((double)hd);
                if (sc[p] > mx) mx = sc[p];
            }
            for (int p = 0; p <= pos[t]; p++) sum += (sc[p] = exp(sc[p] - mx));
            for (int i = 0; i < hd; i++) {
                double acc = 0;
                for (int p = 0; p <= pos[t]; p++)
                    acc += sc[p] * round_kv(qkv[(size_t)(s0 + p) * stride + qd + kvd + g * hd + i], dt);
                ref[(size_t)t * qd + h * hd + i] = acc / sum;
            }
        }
    }
    double e = testutil_nerr(out, ref, (size_t)total * qd);
    if (e > 2e-6)
        fail_msg("attention nh=%d nkv=%d hd=%d bs=%d kv=%s seqs=%d threads=%d: nerr %g", nh, nkv, hd, bs,
                 backend_dtype_name(dt), n_seqs, b->info.n_threads, e);
    free(first), free(sc), free(table), free(perm), free(pos), free(seq), free(qkv), free(out), free(ref);
    b->ops->free(b->ctx, kc);
    b->ops->free(b->ctx, vc);
}

static void test_attention(void **state) {
    (void)state;
    /* n_heads, n_kv_heads, head_dim, block_size */
    static const int shapes[][4] = {{4, 2, 16, 4}, {9, 3, 64, 16}, {1, 1, 8, 1}, {6, 6, 12, 5},
                                    {8, 1, 32, 16}, {32, 1, 8, 32}, {2, 2, 256, 7}, {3, 1, 20, 48}};
    static const int lens_a[] = {1}, lens_b[] = {37, 1, 16, 5, 64}, lens_c[] = {100, 3};
    static const struct {
        const int *len;
        int n;
    } batches[] = {{lens_a, 1}, {lens_b, 5}, {lens_c, 2}};
    const char *kvs[] = {"f32", "f16"};
    for (size_t ti = 0; ti < 2; ti++)
        for (int kv = 0; kv < 2; kv++) {
            backend_t *b = open_cpu(thread_counts[ti], kvs[kv]);
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
                    testutil_seed(6000 + s * 10 + bi);
                    run_attention_case(b, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], batches[bi].len,
                                       batches[bi].n);
                }
            backend_close(b);
        }
}

/* ------------------------------------------------------------------ load_tensor, open */
static void test_load_tensor(void **state) {
    (void)state;
    backend_t *b = open_cpu(2, NULL);
    enum { N = 100000 };
    uint16_t *h = malloc(sizeof(uint16_t) * N);
    float *dst = b->ops->alloc(b->ctx, sizeof(float) * N);
    testutil_seed(7);
    for (int i = 0; i < N; i++) h[i] = quant_f32_to_f16(testutil_unif() * 10.0f);
    assert_int_equal(b->ops->load_tensor(b->ctx, dst, BACKEND_DT_F32, GGUF_T_F16, h, N), 0);
    for (int i = 0; i < N; i++) assert_true(dst[i] == quant_f16_to_f32(h[i]));
    assert_string_equal(b->ops->last_error(b->ctx), "");
    /* a type with no dequantization is refused, and the failure is sticky */
    assert_int_equal(b->ops->load_tensor(b->ctx, dst, BACKEND_DT_F32, (gguf_ttype_t)99, h, 32), -1);
    assert_non_null(strstr(b->ops->last_error(b->ctx), "cannot convert"));
    assert_int_equal(b->ops->synchronize(b->ctx), -1);
    b->ops->free(b->ctx, dst);
    free(h);
    backend_close(b);
}

/* The CUDA module (backend_module.h) loads once per process, so its failure is checked
 * in a child: with KRILL_CUDA_MODULE naming no file, "cuda" fails saying so (or "not
 * built" in a CPU-only build) and "auto" still opens the CPU backend. Runs first, before
 * any backend thread exists in this process. */
static void test_module_missing(void **state) {
    (void)state;
    fflush(NULL);
    const pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("KRILL_CUDA_MODULE", "/nonexistent/libkrill-cuda.so", 1);
        char err[1024] = "";
        if (backend_find("cuda", err, sizeof err)) _exit(10);
        if (!strstr(err, "not built") && !strstr(err, "KRILL_CUDA_MODULE=/nonexistent/libkrill-cuda.so: no such file")) {
            fprintf(stderr, "unexpected error: %s\n", err);
            _exit(11);
        }
        const backend_ops_t *any = backend_find("auto", err, sizeof err);
        _exit(any && !strcmp(any->name, "cpu") ? 0 : 12);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_open(void **state) {
    (void)state;
    char err[256];
    backend_params_t p = {.n_threads = 1};
    backend_t *b = backend_open("auto", &p, err, sizeof err);
    assert_non_null(b);
    const bool cuda = backend_available("cuda");
    if (!cuda) assert_string_equal(b->info.name, "cpu");
    backend_close(b);
    if (!cuda) { /* a CPU-only build, or a CUDA build whose module cannot load here */
        assert_null(backend_open("cuda", &p, err, sizeof err));
        assert_true(strstr(err, "not built") || strstr(err, "libkrill-cuda.so"));
        assert_null(backend_find("cuda", err, sizeof err));
        assert_true(strstr(err, "not built") || strstr(err, "libkrill-cuda.so"));
    }
    /* the registry: each table carries its own defaults (engine.c never guesses) */
    assert_true(backend_available("cpu"));
    assert_false(backend_available("tpu"));
    const backend_ops_t *cpu = backend_find("cpu", err, sizeof err);
    assert_non_null(cpu);
    assert_string_equal(cpu->name, "cpu");
    assert_int_equal(cpu->defaults.max_seqs, 64);
    assert_int_equal(cpu->defaults.max_batch_tokens, 512);
    assert_int_equal(cpu->defaults.weight_dtype, BACKEND_DT_F32);
    assert_int_equal(cpu->defaults.kv_dtype, BACKEND_DT_F16);
    assert_non_null(backend_find("auto", err, sizeof err));
    assert_true(backend_find("", err, sizeof err) == backend_find("auto", err, sizeof err));
    if (cuda) {
        const backend_ops_t *cu = backend_find("cuda", err, sizeof err);
        assert_non_null(cu);
        assert_int_equal(cu->defaults.max_seqs, 512);
        assert_int_equal(cu->defaults.max_batch_tokens, 8192);
    }
    assert_null(backend_find("tpu", err, sizeof err));
    assert_non_null(strstr(err, "unknown backend"));
    assert_null(backend_open("tpu", &p, err, sizeof err));
    assert_non_null(strstr(err, "unknown backend"));
    p.kv_dtype = "q8";
    assert_null(backend_open("cpu", &p, err, sizeof err));
    assert_non_null(strstr(err, "kv dtype"));
    p.kv_dtype = NULL;
    p.n_threads = 0; /* online cores */
    b = backend_open("cpu", &p, err, sizeof err);
    assert_non_null(b);
    assert_true(b->info.n_threads >= 1);
    assert_int_equal(b->info.weight_dtype, BACKEND_DT_F32);
    assert_int_equal(b->info.kv_dtype, BACKEND_DT_F16);
    backend_close(b);
    backend_close(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_module_missing), cmocka_unit_test(test_open), cmocka_unit_test(test_load_tensor), cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_rmsnorm),   cmocka_unit_test(test_embed_get_rows), cmocka_unit_test(test_rope),
        cmocka_unit_test(test_swiglu),    cmocka_unit_test(test_attention),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
