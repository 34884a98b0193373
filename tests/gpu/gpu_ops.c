/* gpu_ops.c — every CUDA backend op against the CPU backend over a table of shapes
 * (llama.cpp's test-backend-ops idea), plus roofline and op benchmarks (--bench).
 *
 * Builds without cmocka (plain C + the engine library + cudart/cuBLAS, which the
 * roofline benchmarks call directly; the backend itself comes from the libkrill-cuda.so
 * module, or is linked in by the emulator's build), so scripts/gpu-check.sh can build it
 * on a bare GPU machine. Exit status: 0 all passed,
 * 1 a failure, 77 no GPU ("no GPU: ..." on stdout).
 *
 * Method: seeded random inputs are uploaded to both backends; outputs are poisoned
 * (all-ones bytes = NaN) before each op so that an unwritten element fails; the error
 * is the normalised L2 error ||cuda - cpu|| / ||cpu||, and any NaN/Inf where the CPU
 * has a finite value is an infinite error. Weights are generated as bf16-exact values
 * (loaded from BF16 data), so both backends multiply by the same weights and the
 * matmul tolerance covers only the bf16 (f16) rounding of the activations. An op the
 * CUDA table does not provide is reported UNSUPPORTED and counted as a failure of
 * coverage, never as a pass. */
#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "backend.h"
#include "clock.h"
#include "quant.h"
#include "sampler.h"
#include "../unit/testutil.h"

/* kernels/matmul.cu's GEMV threshold (common.cuh is C++): linked in where the backend is
 * (the emulator's static build); otherwise looked up in the module that holds the cuda
 * table (libkrill-cuda.so, which backend.c dlopens RTLD_LOCAL) by find_gemv_knob. */
int matmul_set_gemv_max_n(int n) __attribute__((weak));
static int (*set_gemv_max_n)(int);

static void find_gemv_knob(const backend_ops_t *ops) {
    if (matmul_set_gemv_max_n) {
        set_gemv_max_n = matmul_set_gemv_max_n;
        return;
    }
    Dl_info di = {0};
    void *init, *h = NULL, *f = NULL;
    memcpy(&init, &ops->init, sizeof init);
    if (dladdr(init, &di) && di.dli_fname) h = dlopen(di.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
    if (h) f = dlsym(h, "matmul_set_gemv_max_n");
    if (!f) {
        fprintf(stderr, "gpu_ops: matmul_set_gemv_max_n is neither linked in nor in %s\n",
                di.dli_fname ? di.dli_fname : "the cuda module");
        exit(1);
    }
    memcpy(&set_gemv_max_n, &f, sizeof f);
}

#define KRILL_GPU_OPS_VERSION "gpu_ops " KRILL_VERSION

/* ------------------------------------------------------------------ results */

typedef struct {
    char op[24], shape[120];
    double err, tol;
    const char *status; /* PASS | FAIL | UNSUPPORTED */
    double ms;          /* benchmarks */
    char extra[160];
} result_t;

static result_t *results;
static int n_results, cap_results, n_fail, n_unsupported, n_skipped;
/* --quick: cases over this much work are SKIPPED (reported, never passed); for the CPU
 * emulator of the CUDA backend (tests/gpu/emu), whose GEMM is a plain loop */
static bool quick;
#define QUICK_WORK 4e7
static FILE *json;

static void add_result(const char *op, const char *shape, double err, double tol, const char *status) {
    if (n_results == cap_results) {
        cap_results = cap_results ? 2 * cap_results : 256;
        results = realloc(results, sizeof *results * cap_results);
        if (!results) abort();
    }
    result_t *r = &results[n_results++];
    memset(r, 0, sizeof *r);
    snprintf(r->op, sizeof r->op, "%s", op);
    snprintf(r->shape, sizeof r->shape, "%s", shape);
    r->err = err;
    r->tol = tol;
    r->status = status;
    if (!strcmp(status, "FAIL")) n_fail++;
    if (!strcmp(status, "UNSUPPORTED")) n_unsupported++;
    if (!strcmp(status, "SKIPPED")) n_skipped++;
    printf("  %-11s %-12s %-58s err %-10.3g tol %.2g\n", status, op, shape, err, tol);
    fflush(stdout);
}

static void check(const char *op, const char *shape, double err, double tol) {
    add_result(op, shape, err, tol, err <= tol ? "PASS" : "FAIL");
}

/* ------------------------------------------------------------------ helpers */

static double nerr(const float *got, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]) && isfinite(ref[i])) return INFINITY;
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den == 0 ? sqrt(num) : sqrt(num / den);
}

static backend_t *cpu, *gpu;

static void die_backend(backend_t *b, const char *what) {
    fprintf(stderr, "gpu_ops: %s on %s failed: %s\n", what, b->info.name, b->ops->last_error(b->ctx));
    exit(1);
}

static void *dalloc(backend_t *b, size_t bytes) {
    void *p = b->ops->alloc(b->ctx, bytes);
    if (!p) die_backend(b, "alloc");
    return p;
}
static void *up(backend_t *b, const void *host, size_t bytes) {
    void *p = dalloc(b, bytes);
    b->ops->upload(b->ctx, p, host, bytes);
    return p;
}
static void down(backend_t *b, void *host, const void *dev, size_t bytes) {
    if (b->ops->download(b->ctx, host, dev, bytes)) die_backend(b, "download");
}
/* A device buffer of NaN (all-ones bytes). */
static void *poisoned(backend_t *b, size_t bytes) {
    void *h = testutil_xmalloc(bytes);
    memset(h, 0xff, bytes);
    void *p = up(b, h, bytes);
    free(h);
    return p;
}
static void dfree(backend_t *b, void *p) { b->ops->free(b->ctx, p); }

/* bf16-exact random weights: the f32 values and their BF16 bits. */
static void bf16_weights(float *f, uint16_t *bits, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) {
        bits[i] = quant_f32_to_bf16(testutil_unif() * scale);
        f[i] = quant_bf16_to_f32(bits[i]);
    }
}
/* Loads BF16 data into a weight buffer of each backend's weight dtype. */
static void *load_weights(backend_t *b, const uint16_t *bits, size_t n) {
    void *p = dalloc(b, n * backend_dtype_size(b->info.weight_dtype));
    if (b->ops->load_tensor(b->ctx, p, b->info.weight_dtype, GGUF_T_BF16, bits, (int64_t)n)) die_backend(b, "load_tensor");
    return p;
}

static double matmul_tol(void) {
    switch (gpu->info.weight_dtype) {
    case BACKEND_DT_F32: return 1e-5;
    case BACKEND_DT_F16: return 3e-3;
    default: return 1.5e-2; /* bf16 activations: 2^-9 relative rounding per element */
    }
}

/* ------------------------------------------------------------------ ops */

static void test_load_tensor(void) {
    /* every quant type both backends dequantize with quant.c: downloads must be bit-exact */
    static const gguf_ttype_t types[] = {GGUF_T_F32, GGUF_T_F16, GGUF_T_BF16, GGUF_T_Q8_0, GGUF_T_Q4_0,
                                         GGUF_T_Q4_1, GGUF_T_Q5_0, GGUF_T_Q5_1, GGUF_T_Q4_K, GGUF_T_Q5_K,
                                         GGUF_T_Q6_K, GGUF_T_Q2_K, GGUF_T_Q3_K};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const gguf_ttype_t t = types[ti];
        const int64_t be = quant_block_elems(t), bb = quant_block_bytes(t);
        for (int big = 0; big < 2; big++) {
            if (big && quick && t != GGUF_T_Q4_K) continue; /* one big case still crosses the staging halves */
            const int64_t nb = big ? (int64_t)(24 << 20) / be : 3; /* 24M elements cross both staging halves */
            const int64_t n = nb * be;
            uint8_t *raw = testutil_xmalloc((size_t)(nb * bb));
            testutil_seed(77 + ti);
            for (int64_t i = 0; i < nb * bb; i++) raw[i] = (uint8_t)testutil_next();
            /* keep f16/bf16 scales and F32/F16 values finite: clear the top exponent bit of every 16-bit word */
            for (int64_t i = 1; i < nb * bb; i += 2) raw[i] &= 0x3f;
            const backend_dtype_t dt = gpu->info.weight_dtype;
            const size_t es = backend_dtype_size(dt);
            void *d = dalloc(gpu, (size_t)n * es);
            char shape[120];
            snprintf(shape, sizeof shape, "%s -> %s, %lld elements", quant_type_name(t), backend_dtype_name(dt),
                     (long long)n);
            if (gpu->ops->load_tensor(gpu->ctx, d, dt, t, raw, n)) {
                add_result("load_tensor", shape, INFINITY, 0, "FAIL");
                free(raw);
                return;
            }
            void *got = testutil_xmalloc((size_t)n * es), *want = testutil_xmalloc((size_t)n * es);
            down(gpu, got, d, (size_t)n * es);
            int rc = dt == BACKEND_DT_F32   ? quant_dequantize_f32(t, raw, want, n)
                     : dt == BACKEND_DT_F16 ? quant_dequantize_f16(t, raw, want, n)
                                            : quant_dequantize_bf16(t, raw, want, n);
            int64_t bad = rc ? n : 0;
            for (int64_t i = 0; !rc && i < n * (int64_t)es; i++) bad += ((char *)got)[i] != ((char *)want)[i];
            check("load_tensor", shape, (double)bad, 0);
            free(got);
            free(want);
            free(raw);
            dfree(gpu, d);
        }
    }
}

static void test_embed_get_rows(void) {
    static const int shapes[][3] = {{1, 100, 64}, {7, 1000, 576}, {33, 50, 2048}, {5, 17, 13}, {256, 300, 960}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int n = shapes[s][0], vocab = shapes[s][1], dim = shapes[s][2];
        testutil_seed(10 + s);
        float *tf = testutil_xmalloc(sizeof(float) * vocab * dim);
        uint16_t *tb = testutil_xmalloc(2 * (size_t)vocab * dim);
        bf16_weights(tf, tb, (size_t)vocab * dim, 1.0f);
        int32_t *ids = testutil_xmalloc(sizeof(int32_t) * n);
        for (int i = 0; i < n; i++) ids[i] = (int32_t)(testutil_next() % vocab);
        backend_t *bs[2] = {cpu, gpu};
        float *out[2];
        for (int k = 0; k < 2; k++) {
            void *table = load_weights(bs[k], tb, (size_t)vocab * dim);
            int32_t *dids = up(bs[k], ids, sizeof(int32_t) * n);
            float *dout = poisoned(bs[k], sizeof(float) * n * dim);
            bs[k]->ops->embed(bs[k]->ctx, dout, table, dids, n, dim);
            out[k] = testutil_xmalloc(sizeof(float) * n * dim);
            down(bs[k], out[k], dout, sizeof(float) * n * dim);
            dfree(bs[k], table), dfree(bs[k], dids), dfree(bs[k], dout);
        }
        char shape[120];
        snprintf(shape, sizeof shape, "n=%d vocab=%d dim=%d", n, vocab, dim);
        check("embed", shape, nerr(out[1], out[0], (size_t)n * dim), 0);
        free(out[0]), free(out[1]);
        /* get_rows over an f32 matrix */
        testutil_fill(tf, (size_t)vocab * dim, 3.0f);
        for (int k = 0; k < 2; k++) {
            float *src = up(bs[k], tf, sizeof(float) * vocab * dim);
            int32_t *dids = up(bs[k], ids, sizeof(int32_t) * n);
            float *dout = poisoned(bs[k], sizeof(float) * n * dim);
            bs[k]->ops->get_rows(bs[k]->ctx, dout, src, dids, n, dim);
            out[k] = testutil_xmalloc(sizeof(float) * n * dim);
            down(bs[k], out[k], dout, sizeof(float) * n * dim);
            dfree(bs[k], src), dfree(bs[k], dids), dfree(bs[k], dout);
        }
        check("get_rows", shape, nerr(out[1], out[0], (size_t)n * dim), 0);
        free(out[0]), free(out[1]), free(tf), free(tb), free(ids);
    }
}

static void test_rmsnorm(void) {
    static const int shapes[][2] = {{1, 576}, {7, 2048}, {3, 1000}, {64, 960}, {1, 5}, {300, 4096}, {2, 3}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int with_add = 0; with_add < 2; with_add++) {
            const int n = shapes[s][0], dim = shapes[s][1];
            testutil_seed(20 + s);
            float *x = testutil_xmalloc(sizeof(float) * n * dim), *a = testutil_xmalloc(sizeof(float) * n * dim);
            float *w = testutil_xmalloc(sizeof(float) * dim);
            testutil_fill(x, (size_t)n * dim, 4.0f);
            testutil_fill(a, (size_t)n * dim, 2.0f);
            testutil_fill(w, dim, 1.5f);
            backend_t *bs[2] = {cpu, gpu};
            float *out[2], *xo[2];
            for (int k = 0; k < 2; k++) {
                float *dx = up(bs[k], x, sizeof(float) * n * dim), *da = up(bs[k], a, sizeof(float) * n * dim);
                float *dw = up(bs[k], w, sizeof(float) * dim), *dout = poisoned(bs[k], sizeof(float) * n * dim);
                bs[k]->ops->rmsnorm(bs[k]->ctx, dout, dx, with_add ? da : NULL, dw, n, dim, 1e-5f);
                out[k] = testutil_xmalloc(sizeof(float) * n * dim);
                xo[k] = testutil_xmalloc(sizeof(float) * n * dim);
                down(bs[k], out[k], dout, sizeof(float) * n * dim);
                down(bs[k], xo[k], dx, sizeof(float) * n * dim);
                dfree(bs[k], dx), dfree(bs[k], da), dfree(bs[k], dw), dfree(bs[k], dout);
            }
            char shape[120];
            snprintf(shape, sizeof shape, "n=%d dim=%d%s", n, dim, with_add ? " +residual" : "");
            double e = nerr(out[1], out[0], (size_t)n * dim), ex = nerr(xo[1], xo[0], (size_t)n * dim);
            check("rmsnorm", shape, e > ex ? e : ex, 1e-5);
            free(out[0]), free(out[1]), free(xo[0]), free(xo[1]), free(x), free(a), free(w);
        }
}

static const char *mm_tag = ""; /* appended to the matmul case names */

static void run_matmul(int n, int in, int out, int with_bias, bool report) {
    if (quick && (double)n * in * out > QUICK_WORK) {
        char shape[120];
        snprintf(shape, sizeof shape, "n=%d in=%d out=%d%s", n, in, out, with_bias ? " +bias" : "");
        add_result("matmul", shape, NAN, 0, "SKIPPED");
        return;
    }
    testutil_seed(30 + (uint64_t)n * 7 + in * 13 + out);
    float *x = testutil_xmalloc(sizeof(float) * n * in), *wf = testutil_xmalloc(sizeof(float) * out * in);
    uint16_t *wb = testutil_xmalloc(2 * (size_t)out * in);
    float *bias = testutil_xmalloc(sizeof(float) * out);
    testutil_fill(x, (size_t)n * in, 1.0f);
    bf16_weights(wf, wb, (size_t)out * in, 0.5f);
    testutil_fill(bias, out, 1.0f);
    backend_t *bs[2] = {cpu, gpu};
    float *y[2];
    for (int k = 0; k < 2; k++) {
        float *dx = up(bs[k], x, sizeof(float) * n * in), *db = up(bs[k], bias, sizeof(float) * out);
        void *dw = load_weights(bs[k], wb, (size_t)out * in);
        float *dy = poisoned(bs[k], sizeof(float) * n * out);
        bs[k]->ops->matmul(bs[k]->ctx, dy, dx, dw, with_bias ? db : NULL, n, in, out);
        y[k] = testutil_xmalloc(sizeof(float) * n * out);
        down(bs[k], y[k], dy, sizeof(float) * n * out);
        dfree(bs[k], dx), dfree(bs[k], db), dfree(bs[k], dw), dfree(bs[k], dy);
    }
    if (report) {
        char shape[120];
        snprintf(shape, sizeof shape, "n=%d in=%d out=%d%s (%s)%s", n, in, out, with_bias ? " +bias" : "",
                 backend_dtype_name(gpu->info.weight_dtype), mm_tag);
        check("matmul", shape, nerr(y[1], y[0], (size_t)n * out), matmul_tol());
    }
    free(y[0]), free(y[1]), free(x), free(wf), free(wb), free(bias);
}

static void test_matmul(void) {
    static const int shapes[][3] = {{1, 1, 1},     {1, 7, 13},     {3, 64, 96},      {5, 33, 17},
                                    {1, 576, 1536}, {17, 100, 1000}, {2, 31, 4099},    {64, 2048, 2048},
                                    {1, 2048, 16384}, {256, 8192, 2048}, {130, 576, 49152}, {1000, 960, 577},
                                    /* the GEMV path: n <= 8, in % 8 == 0 (odd out, in not a multiple of 256) */
                                    {2, 8, 5},     {4, 576, 1536},  {8, 8192, 2048},  {7, 960, 577}, {6, 2056, 129}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int b = 0; b < 2; b++) run_matmul(shapes[s][0], shapes[s][1], shapes[s][2], b, true);
    /* the GEMV kernel serves n = 1 by default but is written for n <= 8: all of those */
    const int def = set_gemv_max_n(8);
    mm_tag = " GEMV n<=8";
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        if (shapes[s][0] > 1 && shapes[s][0] <= 8 && shapes[s][1] % 8 == 0)
            for (int b = 0; b < 2; b++) run_matmul(shapes[s][0], shapes[s][1], shapes[s][2], b, true);
    mm_tag = "";
    set_gemv_max_n(def);
}

/* native GGUF weights (qmatmul): its own file, compiled here (see its header) */
#include "gpu_ops_native.c"

static void llama3_inv_freq(float *inv, int rope_dim, double base) {
    /* rope base 500000 with llama3 scaling (factor 32, low 1, high 4, original 8192) */
    const double factor = 32, lo = 1, hi = 4, orig = 8192, pi = 3.14159265358979323846;
    for (int i = 0; i < rope_dim / 2; i++) {
        double f = 1.0 / pow(base, 2.0 * i / rope_dim), wl = 2 * pi / f;
        if (wl > orig / lo) f /= factor;
        else if (wl >= orig / hi) {
            double sm = (orig / wl - lo) / (hi - lo);
            f = (1 - sm) * f / factor + sm * f;
        }
        inv[i] = (float)f;
    }
}

static void test_rope(void) {
    /* n, n_heads, head_dim, rope_dim, row_stride extra, neox */
    static const int shapes[][6] = {{1, 32, 64, 64, 0, 0},  {7, 9, 64, 64, 0, 1},    {5, 8, 128, 64, 3, 0},
                                    {33, 4, 80, 80, 0, 1},  {256, 40, 64, 64, 512, 0}, {2, 1, 256, 256, 1, 1},
                                    {3, 3, 6, 2, 0, 0}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int n = shapes[s][0], nh = shapes[s][1], hd = shapes[s][2], rd = shapes[s][3];
        const int stride = nh * hd + shapes[s][4], neox = shapes[s][5];
        testutil_seed(40 + s);
        float *x = testutil_xmalloc(sizeof(float) * n * stride), inv[BACKEND_MAX_HEAD_DIM / 2];
        int32_t *pos = testutil_xmalloc(sizeof(int32_t) * n);
        testutil_fill(x, (size_t)n * stride, 2.0f);
        for (int i = 0; i < n; i++) pos[i] = i == 0 ? 131071 : (int32_t)(testutil_next() % 9000);
        llama3_inv_freq(inv, rd, 500000.0);
        backend_t *bs[2] = {cpu, gpu};
        float *y[2];
        for (int k = 0; k < 2; k++) {
            float *dx = up(bs[k], x, sizeof(float) * n * stride), *df = up(bs[k], inv, sizeof(float) * (rd / 2));
            int32_t *dp = up(bs[k], pos, sizeof(int32_t) * n);
            bs[k]->ops->rope(bs[k]->ctx, dx, n, stride, nh, hd, rd, dp, df, neox);
            y[k] = testutil_xmalloc(sizeof(float) * n * stride);
            down(bs[k], y[k], dx, sizeof(float) * n * stride);
            dfree(bs[k], dx), dfree(bs[k], df), dfree(bs[k], dp);
        }
        char shape[120];
        snprintf(shape, sizeof shape, "n=%d heads=%d hd=%d rope_dim=%d stride=%d %s", n, nh, hd, rd, stride,
                 neox ? "neox" : "norm");
        check("rope", shape, nerr(y[1], y[0], (size_t)n * stride), 2e-6);
        free(y[0]), free(y[1]), free(x), free(pos);
    }
}

static void test_swiglu(void) {
    static const int shapes[][2] = {{1, 1536}, {7, 8192}, {3, 13}, {256, 2560}, {1, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int n = shapes[s][0], ffn = shapes[s][1];
        testutil_seed(50 + s);
        float *gu = testutil_xmalloc(sizeof(float) * n * 2 * ffn);
        testutil_fill(gu, (size_t)n * 2 * ffn, 6.0f);
        backend_t *bs[2] = {cpu, gpu};
        float *y[2];
        for (int k = 0; k < 2; k++) {
            float *dg = up(bs[k], gu, sizeof(float) * n * 2 * ffn), *dy = poisoned(bs[k], sizeof(float) * n * ffn);
            bs[k]->ops->swiglu(bs[k]->ctx, dy, dg, n, ffn);
            y[k] = testutil_xmalloc(sizeof(float) * n * ffn);
            down(bs[k], y[k], dy, sizeof(float) * n * ffn);
            dfree(bs[k], dg), dfree(bs[k], dy);
        }
        char shape[120];
        snprintf(shape, sizeof shape, "n=%d ffn=%d", n, ffn);
        check("swiglu", shape, nerr(y[1], y[0], (size_t)n * ffn), 1e-6);
        free(y[0]), free(y[1]), free(gu);
    }
}

static void test_argmax(void) {
    static const int shapes[][2] = {{1, 49152}, {7, 128256}, {64, 1000}, {3, 1}, {256, 32000}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int n = shapes[s][0], vocab = shapes[s][1];
        char shape[120];
        snprintf(shape, sizeof shape, "n=%d vocab=%d (ties: lowest index)", n, vocab);
        if (!gpu->ops->argmax) {
            add_result("argmax", shape, INFINITY, 0, "UNSUPPORTED");
            return;
        }
        testutil_seed(60 + s);
        float *l = testutil_xmalloc(sizeof(float) * n * vocab);
        for (size_t i = 0; i < (size_t)n * vocab; i++) l[i] = (float)(int)(testutil_unif() * 20.0f); /* many ties */
        float *dl = up(gpu, l, sizeof(float) * n * vocab);
        int32_t *did = poisoned(gpu, sizeof(int32_t) * n), *ids = testutil_xmalloc(sizeof(int32_t) * n);
        gpu->ops->argmax(gpu->ctx, did, dl, n, vocab, NULL, NULL);
        down(gpu, ids, did, sizeof(int32_t) * n);
        int bad = 0;
        for (int r = 0; r < n; r++) {
            int best = 0;
            for (int j = 1; j < vocab; j++)
                if (l[(size_t)r * vocab + j] > l[(size_t)r * vocab + best]) best = j;
            bad += ids[r] != best;
        }
        check("argmax", shape, bad, 0);
        /* temperature rows (every other one): the Gumbel-max draw of the host sampler */
        float *it = testutil_xmalloc(sizeof(float) * n);
        uint64_t *keys = testutil_xmalloc(sizeof(uint64_t) * n);
        for (int r = 0; r < n; r++) it[r] = r % 2 ? 1.0f / (0.5f + 0.25f * (float)(r % 5)) : 0.0f, keys[r] = 77 + 1000003ull * (uint64_t)r;
        float *dit = up(gpu, it, sizeof(float) * n);
        uint64_t *dkeys = up(gpu, keys, sizeof(uint64_t) * n);
        gpu->ops->argmax(gpu->ctx, did, dl, n, vocab, dit, dkeys);
        down(gpu, ids, did, sizeof(int32_t) * n);
        bad = 0;
        for (int r = 0; r < n; r++) bad += ids[r] != sampler_pick(l + (size_t)r * vocab, vocab, it[r], keys[r]);
        char s2[192];
        snprintf(s2, sizeof s2, "%s, Gumbel rows = sampler_pick", shape);
        check("argmax", s2, bad, 0);
        /* constrained rows (grammar.h's packed masks, ~1/8 of the tokens allowed) */
        if (gpu->ops->argmax_masked) {
            const int words = (vocab + 31) / 32;
            uint32_t *mk = testutil_xmalloc(sizeof(uint32_t) * (size_t)n * words);
            for (size_t i = 0; i < (size_t)n * words; i++) mk[i] = (uint32_t)testutil_next() & (uint32_t)testutil_next() & (uint32_t)testutil_next();
            uint32_t *dmk = up(gpu, mk, sizeof(uint32_t) * (size_t)n * words);
            gpu->ops->argmax_masked(gpu->ctx, did, dl, n, vocab, dit, dkeys, dmk);
            down(gpu, ids, did, sizeof(int32_t) * n);
            bad = 0;
            for (int r = 0; r < n; r++) bad += ids[r] != sampler_pick_masked(l + (size_t)r * vocab, vocab, it[r], keys[r], mk + (size_t)r * words);
            snprintf(s2, sizeof s2, "%s, masked rows = sampler_pick_masked", shape);
            check("argmax_masked", s2, bad, 0);
            dfree(gpu, dmk), free(mk);
        } else {
            add_result("argmax_masked", shape, INFINITY, 0, "UNSUPPORTED");
        }
        dfree(gpu, dit), dfree(gpu, dkeys), free(it), free(keys);
        dfree(gpu, dl), dfree(gpu, did), free(l), free(ids);
    }
}

/* ------------------------------------------------------------------ graphs */

/* A small "step" (rmsnorm -> matmul -> swiglu -> kv_write -> attention) run eagerly and
 * through graph capture + replay with new inputs uploaded into the same buffers: the
 * replay must give what an eager run on the new inputs gives. */
static void test_graphs(void) {
    const char *shape = "step: rmsnorm+matmul+swiglu+kv_write+attention, 8 decode seqs";
    if (!gpu->ops->graph_begin || !gpu->ops->graph_end || !gpu->ops->graph_replay) {
        add_result("graph", shape, INFINITY, 0, "UNSUPPORTED");
        return;
    }
    const int n = 8, d = 256, ffn = 128, nh = 4, nkv = 2, hd = 64, bsz = 16, nblk = 64, mb = 4;
    const backend_attn_t a = {nh, nkv, hd, bsz, 0.125f, 0};
    backend_t *b = gpu;
    if (b->ops->reserve && b->ops->reserve(b->ctx, 64, 1024, &a)) die_backend(b, "reserve");
    float *x = testutil_xmalloc(sizeof(float) * n * d), *w = testutil_xmalloc(sizeof(float) * d);
    float *wf = testutil_xmalloc(sizeof(float) * 2 * ffn * d);
    uint16_t *wb = testutil_xmalloc(2 * (size_t)2 * ffn * d);
    int32_t pos[8], seq[8], table[8 * 4];
    testutil_seed(90);
    testutil_fill(w, d, 1.0f);
    bf16_weights(wf, wb, (size_t)2 * ffn * d, 0.2f);
    for (int i = 0; i < n * mb; i++) table[i] = i;
    float *dx = dalloc(b, sizeof(float) * n * d), *dn = dalloc(b, sizeof(float) * n * d), *dw = up(b, w, sizeof(float) * d);
    void *dwg = load_weights(b, wb, (size_t)2 * ffn * d);
    float *dgu = dalloc(b, sizeof(float) * n * 2 * ffn), *dh = dalloc(b, sizeof(float) * n * ffn);
    float *dout = dalloc(b, sizeof(float) * n * nh * hd);
    int32_t *dpos = dalloc(b, sizeof pos), *dseq = dalloc(b, sizeof seq), *dtab = up(b, table, sizeof table);
    void *kc = poisoned(b, (size_t)nblk * nkv * bsz * hd * 4), *vc = poisoned(b, (size_t)nblk * nkv * bsz * hd * 4);
    float *ref = testutil_xmalloc(sizeof(float) * n * nh * hd), *got = testutil_xmalloc(sizeof(float) * n * nh * hd);
    double worst = 0;
    int replays = 0;
    for (int it = 0; it < 5; it++) {
        /* inputs of this step; it 0 eager-reference, then: eager(declined), capture, replay, replay */
        for (int i = 0; i < n; i++) pos[i] = it, seq[i] = i;
        testutil_fill(x, (size_t)n * d, 1.0f);
        for (int pass = 0; pass < 2; pass++) { /* pass 0: eager reference; pass 1: via the graph protocol */
            b->ops->upload(b->ctx, dx, x, sizeof(float) * n * d);
            b->ops->upload(b->ctx, dpos, pos, sizeof pos);
            b->ops->upload(b->ctx, dseq, seq, sizeof seq);
            int mode = 0; /* 0 eager, 1 captured, 2 replayed */
            if (pass == 1) {
                if (b->ops->graph_replay(b->ctx, 8) == 1) mode = 2;
                else if (b->ops->graph_begin(b->ctx, 8) == 0) mode = 1;
            }
            if (mode != 2) {
                /* the step: uses the gate|up output as q/k/v rows (row stride 2*ffn) */
                b->ops->rmsnorm(b->ctx, dn, dx, NULL, dw, n, d, 1e-5f);
                b->ops->matmul(b->ctx, dgu, dn, dwg, NULL, n, d, 2 * ffn);
                b->ops->swiglu(b->ctx, dh, dgu, n, ffn);
                b->ops->kv_write(b->ctx, kc, vc, dgu, dgu + nkv * hd, 2 * ffn, dpos, dseq, dtab, mb, n, &a);
                b->ops->attention(b->ctx, dout, dgu, 2 * ffn, kc, vc, dpos, dseq, dtab, mb, n, &a);
            }
            if (mode == 1 && b->ops->graph_end(b->ctx, 8)) die_backend(b, "graph_end");
            replays += mode == 2;
            down(b, pass == 0 ? ref : got, dout, sizeof(float) * n * nh * hd);
        }
        double e = nerr(got, ref, (size_t)n * nh * hd);
        if (e > worst) worst = e;
    }
    char s2[120];
    snprintf(s2, sizeof s2, "%s (%d replays)", shape, replays);
    /* replay and eager run the same kernels on the same data: identical results up to
     * cuBLAS picking another algorithm under capture (it should not) */
    check("graph", s2, replays >= 2 ? worst : INFINITY, 1e-6);
    free(x), free(w), free(wf), free(wb), free(ref), free(got);
    dfree(b, dx), dfree(b, dn), dfree(b, dw), dfree(b, dwg), dfree(b, dgu), dfree(b, dh), dfree(b, dout);
    dfree(b, dpos), dfree(b, dseq), dfree(b, dtab), dfree(b, kc), dfree(b, vc);
}

/* ------------------------------------------------------------------ benchmarks */

typedef struct {
    double copy_gbs;     /* device-to-device, bytes read + written */
    double gemm_tflops;  /* cuBLAS bf16 8192^3 */
} roof_t;

static roof_t roof;

#define CK(call)                                                                                  \
    do {                                                                                          \
        cudaError_t e_ = (call);                                                                  \
        if (e_ != cudaSuccess) {                                                                  \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                              \
        }                                                                                         \
    } while (0)

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void bench_line(const char *op, const char *shape, double ms, const char *fmt, ...) {
    add_result(op, shape, 0, 0, "BENCH");
    n_results--; /* keep, but overwrite the print below */
    result_t *r = &results[n_results++];
    r->ms = ms;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->extra, sizeof r->extra, fmt, ap);
    va_end(ap);
    printf("  %-11s %-12s %-58s %9.4f ms  %s\n", "", "", "", ms, r->extra);
}

static void bench_roofline(void) {
    /* HBM: median of 20 device-to-device copies of 1 GiB */
    const size_t bytes = (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    CK(cudaMalloc(&a, bytes));
    CK(cudaMalloc(&b, bytes));
    CK(cudaMemset(a, 1, bytes));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    double t[20];
    for (int i = -3; i < 20; i++) {
        CK(cudaEventRecord(e0, 0));
        CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0));
        CK(cudaEventRecord(e1, 0));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (i >= 0) t[i] = ms;
    }
    qsort(t, 20, sizeof t[0], cmp_double);
    roof.copy_gbs = 2.0 * bytes / (t[10] * 1e-3) / 1e9;
    bench_line("roofline", "HBM copy 1 GiB (read+write)", t[10], "%.0f GB/s", roof.copy_gbs);
    CK(cudaFree(a));
    CK(cudaFree(b));
    /* bf16 GEMM 8192^3 with f32 accumulation (random data: zeros run faster) */
    const int N = 8192;
    uint16_t *h = testutil_xmalloc(2 * (size_t)N * N);
    testutil_seed(5);
    for (size_t i = 0; i < (size_t)N * N; i++) h[i] = quant_f32_to_bf16(testutil_unif());
    void *A, *B, *C;
    CK(cudaMalloc(&A, 2 * (size_t)N * N));
    CK(cudaMalloc(&B, 2 * (size_t)N * N));
    CK(cudaMalloc(&C, 4 * (size_t)N * N));
    CK(cudaMemcpy(A, h, 2 * (size_t)N * N, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(B, h, 2 * (size_t)N * N, cudaMemcpyHostToDevice));
    free(h);
    cublasHandle_t cb;
    if (cublasCreate(&cb) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "gpu_ops: cublasCreate failed\n");
        exit(1);
    }
    const float one = 1, zero = 0;
    for (int i = -3; i < 10; i++) {
        CK(cudaEventRecord(e0, 0));
        cublasStatus_t st = cublasGemmEx(cb, CUBLAS_OP_T, CUBLAS_OP_N, N, N, N, &one, A, CUDA_R_16BF, N, B, CUDA_R_16BF,
                                         N, &zero, C, CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        CK(cudaEventRecord(e1, 0));
        CK(cudaEventSynchronize(e1));
        if (st != CUBLAS_STATUS_SUCCESS) {
            fprintf(stderr, "gpu_ops: cublasGemmEx: %s\n", cublasGetStatusString(st));
            exit(1);
        }
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (i >= 0) t[i] = ms;
    }
    qsort(t, 10, sizeof t[0], cmp_double);
    roof.gemm_tflops = 2.0 * N * N * (double)N / (t[5] * 1e-3) / 1e12;
    bench_line("roofline", "cuBLAS bf16 GEMM 8192^3 (f32 out)", t[5], "%.0f TFLOP/s", roof.gemm_tflops);
    cublasDestroy(cb);
    CK(cudaFree(A));
    CK(cudaFree(B));
    CK(cudaFree(C));
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
}

/* Median ms of `reps` runs of fn over 5 batches, timed with synchronize + host clock. */
typedef void (*bench_fn)(void *arg);
static double time_op(bench_fn fn, void *arg, int reps) {
    fn(arg);
    gpu->ops->synchronize(gpu->ctx);
    double t[5];
    for (int k = 0; k < 5; k++) {
        double t0 = clock_now_ms();
        for (int i = 0; i < reps; i++) fn(arg);
        if (gpu->ops->synchronize(gpu->ctx)) die_backend(gpu, "synchronize");
        t[k] = (clock_now_ms() - t0) / reps;
    }
    qsort(t, 5, sizeof t[0], cmp_double);
    return t[2];
}

typedef struct {
    float *y, *x;
    void *w;
    int n, in, out;
} mm_arg_t;
static void mm_fn(void *p) {
    mm_arg_t *a = p;
    gpu->ops->matmul(gpu->ctx, a->y, a->x, a->w, NULL, a->n, a->in, a->out);
}

static void bench_matmul(void) {
    /* Llama-3.2-1B projections (fused qkv and gate|up as the model may use) */
    static const struct { const char *name; int in, out; } w[] = {
        {"qkv 2048->3072", 2048, 3072}, {"o 2048->2048", 2048, 2048}, {"gate|up 2048->16384", 2048, 16384},
        {"down 8192->2048", 8192, 2048}, {"lm_head 2048->128256", 2048, 128256}};
    static const int ns[] = {1, 4, 8, 64, 256, 2048};
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
        const size_t we = (size_t)w[i].in * w[i].out;
        uint16_t *wb = testutil_xmalloc(2 * we);
        testutil_seed(300 + i);
        for (size_t k = 0; k < we; k++) wb[k] = quant_f32_to_bf16(testutil_unif() * 0.1f);
        void *dw = dalloc(gpu, we * backend_dtype_size(gpu->info.weight_dtype));
        if (gpu->ops->load_tensor(gpu->ctx, dw, gpu->info.weight_dtype, GGUF_T_BF16, wb, (int64_t)we))
            die_backend(gpu, "load_tensor");
        free(wb);
        for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++) {
            const int n = ns[j];
            float *hx = testutil_xmalloc(sizeof(float) * n * w[i].in);
            testutil_fill(hx, (size_t)n * w[i].in, 1.0f);
            mm_arg_t a = {dalloc(gpu, sizeof(float) * n * w[i].out), up(gpu, hx, sizeof(float) * n * w[i].in), dw, n,
                          w[i].in, w[i].out};
            free(hx);
            const double ms = time_op(mm_fn, &a, n >= 256 ? 20 : 50);
            if (n <= 8) { /* the same shape forced through the GEMV and through cuBLAS */
                const int def = set_gemv_max_n(8);
                const double ms_gemv = time_op(mm_fn, &a, 50);
                set_gemv_max_n(0);
                const double ms_blas = time_op(mm_fn, &a, 50);
                set_gemv_max_n(def);
                const double by = we * backend_dtype_size(gpu->info.weight_dtype) + (double)n * (w[i].in * 6 + w[i].out * 4);
                char s2[120];
                snprintf(s2, sizeof s2, "%s n=%d GEMV vs cuBLAS", w[i].name, n);
                bench_line("bench_mm", s2, ms_gemv, "GEMV %.0f GB/s, cuBLAS %.4f ms %.0f GB/s: GEMV %.2fx",
                           by / (ms_gemv * 1e-3) / 1e9, ms_blas, by / (ms_blas * 1e-3) / 1e9, ms_blas / ms_gemv);
            }
            const double flops = 2.0 * n * we, bytes = we * backend_dtype_size(gpu->info.weight_dtype) +
                                                       (double)n * (w[i].in * 6 + w[i].out * 4);
            char shape[120];
            snprintf(shape, sizeof shape, "%s n=%d", w[i].name, n);
            bench_line("bench_mm", shape, ms, "%.1f TFLOP/s (%.0f%% of GEMM peak), %.0f GB/s (%.0f%% of copy)",
                       flops / (ms * 1e-3) / 1e12, 100 * flops / (ms * 1e-3) / 1e12 / roof.gemm_tflops,
                       bytes / (ms * 1e-3) / 1e9, 100 * bytes / (ms * 1e-3) / 1e9 / roof.copy_gbs);
            dfree(gpu, a.y), dfree(gpu, a.x);
        }
        dfree(gpu, dw);
    }
}

#include "gpu_ops_attn.c" /* kv_write + attention checks, bench_attention */

/* ------------------------------------------------------------------ main */

static void write_json(const char *path, double secs) {
    json = fopen(path, "w");
    if (!json) {
        fprintf(stderr, "gpu_ops: cannot write %s\n", path);
        return;
    }
    fprintf(json, "{\"program\": \"%s\", \"device\": \"%s\", \"weight_dtype\": \"%s\", \"kv_dtype\": \"%s\",\n",
            KRILL_GPU_OPS_VERSION, gpu->info.device, backend_dtype_name(gpu->info.weight_dtype),
            backend_dtype_name(gpu->info.kv_dtype));
    fprintf(json, " \"seconds\": %.1f, \"failed\": %d, \"unsupported\": %d, \"skipped\": %d, \"copy_gbs\": %.1f, "
                  "\"gemm_tflops\": %.1f,\n", secs, n_fail, n_unsupported, n_skipped, roof.copy_gbs, roof.gemm_tflops);
    fprintf(json, " \"results\": [\n");
    for (int i = 0; i < n_results; i++) {
        const result_t *r = &results[i];
        fprintf(json, "  {\"op\": \"%s\", \"case\": \"%s\", \"status\": \"%s\", \"err\": %.6g, \"tol\": %.3g, \"ms\": %.5f, "
                      "\"note\": \"%s\"}%s\n",
                r->op, r->shape, r->status, isfinite(r->err) ? r->err : 1e300, r->tol, r->ms, r->extra,
                i + 1 < n_results ? "," : "");
    }
    fprintf(json, " ]}\n");
    fclose(json);
}

/* the fused ops' checks (test_fused): their own file, sharing this one's helpers */
#include "gpu_ops_fused.c"

static void usage(FILE *f) {
    fprintf(f, "usage: gpu_ops [--dtype bf16|f16|f32] [--kv f16|f32] [--bench] [--only OP] [--quick] [--json FILE]\n"
               "Checks every CUDA backend op against the CPU backend; --bench adds roofline and op timings.\n"
               "--only takes a comma-separated list of: load_tensor embed rmsnorm matmul rope swiglu argmax\n"
               "attention graph native fused. --quick skips the largest cases (for the CPU emulator).\n"
               "Exit: 0 all passed, 1 failure, 77 no GPU.\n");
}

int main(int argc, char **argv) {
    const char *dtype = "bf16", *kv = "f16", *json_path = NULL, *only = NULL;
    bool bench = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("%s\n", KRILL_GPU_OPS_VERSION);
            return 0;
        } else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) dtype = argv[++i];
        else if (!strcmp(argv[i], "--kv") && i + 1 < argc) kv = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--bench")) bench = true;
        else if (!strcmp(argv[i], "--quick")) quick = true;
        else {
            fprintf(stderr, "gpu_ops: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    char err[1024];
    const backend_ops_t *cu = NULL;
    if (!backend_available("cuda")) { /* not built, or its module does not load: an error, not "no GPU" */
        backend_find("cuda", err, sizeof err);
        fprintf(stderr, "gpu_ops: %s\n", err);
        return 1;
    }
    find_gemv_knob(backend_find("cuda", err, sizeof err)); /* before the device: a CPU machine checks it too */
    backend_params_t gp = {.dtype = dtype, .kv_dtype = kv};
    gpu = backend_open("cuda", &gp, err, sizeof err);
    if (!gpu) {
        printf("no GPU: %s\n", err);
        return 77;
    }
    cu = gpu->ops;
    (void)cu;
    backend_params_t cp = {.n_threads = 0, .kv_dtype = kv};
    cpu = backend_open("cpu", &cp, err, sizeof err);
    if (!cpu) {
        fprintf(stderr, "gpu_ops: cpu backend: %s\n", err);
        return 1;
    }
    printf("gpu_ops: %s (weights %s, kv %s) vs %s\n", gpu->info.device, backend_dtype_name(gpu->info.weight_dtype),
           backend_dtype_name(gpu->info.kv_dtype), cpu->info.device);
    const double t0 = clock_now_ms();
    struct { const char *name; void (*fn)(void); } tests[] = {
        {"load_tensor", test_load_tensor}, {"embed", test_embed_get_rows}, {"rmsnorm", test_rmsnorm},
        {"matmul", test_matmul}, {"rope", test_rope}, {"swiglu", test_swiglu}, {"argmax", test_argmax},
        {"attention", test_attention}, {"graph", test_graphs}, {"native", test_native},
        {"fused", test_fused}};
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        /* --only takes a comma-separated list of test names */
        bool run = !only;
        for (const char *p = only; p && *p;) {
            size_t n = strcspn(p, ",");
            if (n == strlen(tests[i].name) && !strncmp(p, tests[i].name, n)) run = true;
            p += n + (p[n] == ',');
        }
        if (run) tests[i].fn();
    }
    if (bench) {
        bench_roofline();
        bench_matmul();
        bench_attention();
    }
    if (gpu->ops->synchronize(gpu->ctx)) {
        printf("FAIL: cuda backend error: %s\n", gpu->ops->last_error(gpu->ctx));
        n_fail++;
    }
    const double secs = (clock_now_ms() - t0) / 1e3;
    int n_checks = 0;
    for (int i = 0; i < n_results; i++)
        n_checks += strcmp(results[i].status, "BENCH") != 0 && strcmp(results[i].status, "SKIPPED") != 0;
    printf("gpu_ops: %d checks, %d failed, %d unsupported, %d skipped (--quick), %.1f s\n", n_checks, n_fail,
           n_unsupported, n_skipped, secs);
    if (json_path) write_json(json_path, secs);
    backend_close(gpu);
    backend_close(cpu);
    free(results);
    return n_fail || n_unsupported ? 1 : 0;
}
