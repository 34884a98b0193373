/* backend_cpu.c — the CPU backend: backend.h's table over our own batch-invariant
 * matmul kernels (matmul_cpu.c) and our own thread pool (pool.c) for everything.
 *
 * Rules:
 * - One pool of n_threads (the caller's thread is worker 0) runs every op. Matmuls
 *   are split into (row block x column tile) tasks handed out dynamically; each
 *   output element is computed in one fixed order (matmul_cpu.h) whatever the batch,
 *   the split or the thread, so every op here is batch-invariant bitwise: a row's
 *   results do not depend on the other rows of the call. KRILL_CPU_MATMUL=openblas
 *   switches matmuls to OpenBLAS sgemm (one OpenBLAS thread, split over our pool) —
 *   not batch-invariant; kept for comparison (docs/engine.md, "Why our own matmul").
 * - Weights are f32 in the file's (out, in) row order (dequantized at load by
 *   quant.c; no packing, so embed gathers rows of the same table the LM head uses),
 *   activations f32 — or, with cpu_weights q8 / q4, matrices loaded through
 *   load_matrix are kept in qmat.h's integer layouts and multiplied with integer dot
 *   products (cpu_qmat.c); matmul and embed pick the path by the dtype load wrote at
 *   the weight's address (KRILL_CPU_QMAT forces a kernel: ref | avx2 | avxvnni |
 *   avx512vnni). The KV cache is f16 by default (half the memory of f32; values
 *   rounded to nearest even) or f32 (kv_dtype "f32"). Attention accumulates in f32.
 * - Work too small to amortise a dispatch runs on the caller's thread.
 * - No allocation after init except alloc(); no locks inside ops apart from the
 *   pool's dispatch. */
#include "backend.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef KRILL_NO_BLAS
#include <cblas.h>
#endif

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define CPU_AVX2 1
#include <immintrin.h>
#else
#define CPU_AVX2 0
#endif

#include <malloc.h>

#include "cpu_qmat.h"
#include "backend_cpu_family.h"
#include "err.h"
#include "log.h"
#include "matmul_cpu.h"
#include "pool.h"
#include "quant.h"

/* ------------------------------------------------------------------ context */

typedef struct {
    pool_t *pool;
    backend_dtype_t kv_dtype;
    matmul_cpu_impl_t mm_impl; /* krill kernels: AVX2 or generic (same bits) */
    bool mm_blas;              /* KRILL_CPU_MATMUL=openblas: sgemm, not batch-invariant */
    backend_dtype_t wdt;       /* cpu_weights: F32, or the widest quantized layout allowed */
    cpu_qmat_t *qm;            /* quantized weights: which buffer holds what, scratch */
    int failed;
    char err[256];
} cpu_t;

static int cpu_online(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int cpu_device_count(void) { return 1; }

static void cpu_destroy(void *vctx);

static void *cpu_init(const backend_params_t *p, backend_info_t *info, char *err, size_t errlen) {
    int n = p->n_threads > 0 ? p->n_threads : cpu_online();
    if (n > 256) {
        err_set(err, errlen, "cpu backend: n_threads %d is too large (at most 256)", n);
        return NULL;
    }
    backend_dtype_t kv = backend_cpu_ops()->defaults.kv_dtype;
    if (p->kv_dtype && *p->kv_dtype && (backend_dtype_parse(p->kv_dtype, &kv) || kv == BACKEND_DT_BF16)) {
        err_set(err, errlen, "cpu backend: kv dtype '%s' is not supported: use \"f16\" or \"f32\"", p->kv_dtype);
        return NULL;
    }
    /* KRILL_CPU_MATMUL: "krill" (default) | "generic" | "openblas" (docs/engine.md) */
    const char *mm = getenv("KRILL_CPU_MATMUL");
    matmul_cpu_impl_t mm_impl = MATMUL_CPU_AUTO;
    bool mm_blas = false;
    if (mm && *mm && strcmp(mm, "krill")) {
        if (!strcmp(mm, "generic")) mm_impl = MATMUL_CPU_GENERIC;
#ifndef KRILL_NO_BLAS
        else if (!strcmp(mm, "openblas")) mm_blas = true;
#endif
        else {
            err_set(err, errlen, "cpu backend: KRILL_CPU_MATMUL='%s' is not known: use \"krill\" (default), "
                                  "\"generic\" or \"openblas\" (when built with OpenBLAS)", mm);
            return NULL;
        }
    }
    backend_dtype_t wdt;
    bool by_type;
    qmat_impl_t qi;
    if (cpu_qmat_parse(p->cpu_weights, &wdt, &by_type, &qi, err, errlen)) return NULL;
    char sub[128] = "out of memory";
    cpu_t *c = calloc(1, sizeof *c);
    if (!c || !(c->qm = cpu_qmat_new(qi)) || !(c->pool = pool_new(n, sub, sizeof sub))) {
        err_set(err, errlen, "cpu backend: %s", sub);
        cpu_destroy(c);
        return NULL;
    }
    c->kv_dtype = kv;
    c->mm_impl = mm_impl;
    c->mm_blas = mm_blas;
    c->wdt = wdt;
    /* With KRILL_CPU_MATMUL=openblas our pool splits every sgemm; OpenBLAS must not
     * start threads of its own. */
#ifndef KRILL_NO_BLAS
    openblas_set_num_threads(1);
#endif
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "cpu");
    snprintf(info->device, sizeof info->device, "cpu (%d thread%s, %s matmul%s%s%s)", n, n == 1 ? "" : "s",
             mm_blas ? "OpenBLAS" : mm_impl == MATMUL_CPU_GENERIC || !matmul_cpu_has_avx2() ? "generic" : "AVX2",
             wdt == BACKEND_DT_F32 ? "" : ", ", wdt == BACKEND_DT_F32 ? "" : by_type ? "auto" : backend_dtype_name(wdt),
             wdt == BACKEND_DT_F32 ? "" : qi == QMAT_IMPL_AUTO ? " weights auto kernel" : " weights forced kernel");
    info->weight_dtype = wdt;
    info->weight_by_type = by_type;
    info->kv_dtype = kv;
    info->n_threads = n;
    return c;
}

static void cpu_destroy(void *vctx) {
    cpu_t *c = vctx;
    if (!c) return;
    pool_free(c->pool);
    cpu_qmat_free(c->qm);
    free(c);
}

static void cpu_fail(cpu_t *c, const char *msg) {
    if (!c->failed) snprintf(c->err, sizeof c->err, "%s", msg);
    c->failed = 1;
}

/* ------------------------------------------------------------------ memory */

static void *cpu_alloc(void *ctx, size_t bytes) {
    (void)ctx;
    size_t sz = (bytes + 63) & ~(size_t)63;
    if (sz == 0) sz = 64;
    return aligned_alloc(64, sz); /* large blocks are mmap'd: pages cost RSS only once touched */
}

static void cpu_free(void *ctx, void *buf) {
    cpu_t *c = ctx;
    if (buf) cpu_qmat_forget(c->qm, buf, malloc_usable_size(buf));
    free(buf);
}

static int cpu_mem_info(void *ctx, size_t *free_bytes, size_t *total_bytes) {
    (void)ctx;
    *free_bytes = 0;
    *total_bytes = 0;
    return -1;
}

static void cpu_upload(void *ctx, void *dst, const void *src, size_t bytes) {
    (void)ctx;
    if (bytes) memcpy(dst, src, bytes);
}

static int cpu_download(void *ctx, void *dst, const void *src, size_t bytes) {
    cpu_t *c = ctx;
    if (bytes) memcpy(dst, src, bytes);
    return c->failed ? -1 : 0;
}

typedef struct {
    void *dst;
    backend_dtype_t dst_type;
    gguf_ttype_t src_type;
    const uint8_t *src;
    int64_t n_blocks, block_elems, block_bytes;
    atomic_int failed;
} load_job_t;

static void load_worker(void *arg, int ith, int nth) {
    load_job_t *j = arg;
    int64_t b0 = j->n_blocks * ith / nth, b1 = j->n_blocks * (ith + 1) / nth;
    if (b1 <= b0) return;
    const void *src = j->src + b0 * j->block_bytes;
    int64_t e0 = b0 * j->block_elems, n = (b1 - b0) * j->block_elems;
    int rc;
    switch (j->dst_type) {
    case BACKEND_DT_F32: rc = quant_dequantize_f32(j->src_type, src, (float *)j->dst + e0, n); break;
    case BACKEND_DT_F16: rc = quant_dequantize_f16(j->src_type, src, (uint16_t *)j->dst + e0, n); break;
    case BACKEND_DT_BF16: rc = quant_dequantize_bf16(j->src_type, src, (uint16_t *)j->dst + e0, n); break;
    default: rc = -1;
    }
    if (rc) atomic_store(&j->failed, 1);
}

static int cpu_load_tensor(void *ctx, void *dst, backend_dtype_t dst_type, gguf_ttype_t src_type, const void *src,
                           int64_t n) {
    cpu_t *c = ctx;
    int64_t be = quant_block_elems(src_type), bb = quant_block_bytes(src_type);
    if (!quant_supported(src_type) || be <= 0 || bb <= 0 || n % be) {
        char msg[128];
        snprintf(msg, sizeof msg, "cpu backend: cannot convert %lld elements of type %s", (long long)n,
                 quant_type_name(src_type));
        cpu_fail(c, msg);
        return -1;
    }
    load_job_t j = {.dst = dst, .dst_type = dst_type, .src_type = src_type, .src = src, .n_blocks = n / be,
                    .block_elems = be, .block_bytes = bb};
    atomic_init(&j.failed, 0);
    if (n < (1 << 16)) load_worker(&j, 0, 1);
    else pool_run(c->pool, load_worker, &j);
    if (atomic_load(&j.failed)) {
        cpu_fail(c, "cpu backend: dequantization failed");
        return -1;
    }
    return 0;
}

static int cpu_load_matrix(void *ctx, void *dst, backend_dtype_t dst_type, gguf_ttype_t src_type, const void *src,
                           int64_t rows, int64_t cols) {
    cpu_t *c = ctx;
    if (dst_type != BACKEND_DT_Q8 && dst_type != BACKEND_DT_Q4)
        return cpu_load_tensor(ctx, dst, dst_type, src_type, src, rows * cols);
    char msg[200];
    if ((c->wdt != BACKEND_DT_Q8 && c->wdt != BACKEND_DT_Q4) || (c->wdt == BACKEND_DT_Q8 && dst_type == BACKEND_DT_Q4)) {
        snprintf(msg, sizeof msg, "cpu backend: %s weights requested but cpu_weights is %s", backend_dtype_name(dst_type),
                 backend_dtype_name(c->wdt));
        cpu_fail(c, msg);
        return -1;
    }
    if (cpu_qmat_load(c->qm, c->pool, dst, dst_type, src_type, src, rows, cols, msg, sizeof msg)) {
        cpu_fail(c, msg);
        return -1;
    }
    return 0;
}

static int cpu_reserve(void *ctx, int max_tokens, int max_in, const backend_attn_t *a) {
    cpu_t *c = ctx;
    (void)a;
    if (c->wdt == BACKEND_DT_F32) return 0;
    if (cpu_qmat_reserve(c->qm, max_tokens, max_in)) {
        cpu_fail(c, "cpu backend: out of memory (activation scratch)");
        return -1;
    }
    return 0;
}

static int cpu_synchronize(void *ctx) { return ((cpu_t *)ctx)->failed ? -1 : 0; }
static const char *cpu_last_error(void *ctx) { return ((cpu_t *)ctx)->err; }

/* ------------------------------------------------------------------ helpers */

/* Rows [r0, r1) of n for thread ith of nth. */
static inline void split_rows(int n, int ith, int nth, int *r0, int *r1) {
    *r0 = (int)((int64_t)n * ith / nth);
    *r1 = (int)((int64_t)n * (ith + 1) / nth);
}

/* Runs fn over the pool, or inline when work (elements touched) is small. */
static void cpu_par(cpu_t *c, pool_fn_t fn, void *arg, int64_t work) {
    if (work < 16384 || pool_size(c->pool) == 1) fn(arg, 0, 1);
    else pool_run(c->pool, fn, arg);
}

void backend_cpu_par(void *ctx, pool_fn_t fn, void *arg, int64_t work) { cpu_par(ctx, fn, arg, work); }

#if CPU_AVX2
static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* e^x for x <= 88.7: x = k ln2 + r, |r| <= ln2/2, degree-7 Taylor polynomial
 * (relative error < 1e-8 before rounding), scaled by 2^k through the exponent bits.
 * Inputs below -87.3 give 0. */
static inline __m256 exp256(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3365447505531f);
    __m256 underflow = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    /* r = x - k ln2 in two steps (Cody-Waite) for accuracy */
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* 2^k: k in [-126, 128); for k = 128 split the scaling in two to avoid overflow of the exponent */
    __m256i ki = _mm256_cvtps_epi32(k);
    __m256i k1 = _mm256_srai_epi32(ki, 1), k2 = _mm256_sub_epi32(ki, k1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, _mm256_set1_epi32(127)), 23));
    p = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    return _mm256_andnot_ps(underflow, p);
}
#endif

static inline float dot_f32(const float *a, const float *b, int n) {
    int i = 0;
    float s = 0.0f;
#if CPU_AVX2
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    s = hsum256(_mm256_add_ps(acc0, acc1));
#endif
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* dst[i] = f32(src[i]) for n elements of a KV row. */
static inline void kv_load_row(float *dst, const void *src, int n, backend_dtype_t dt) {
    if (dt == BACKEND_DT_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    const uint16_t *h = src;
    int i = 0;
#if CPU_AVX2
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
#endif
    for (; i < n; i++) dst[i] = quant_f16_to_f32(h[i]);
}

static inline void kv_store_row(void *dst, const float *src, int n, backend_dtype_t dt) {
    if (dt == BACKEND_DT_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    uint16_t *h = dst;
    int i = 0;
#if CPU_AVX2
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(h + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; i < n; i++) h[i] = quant_f32_to_f16(src[i]);
}

/* ------------------------------------------------------------------ embed / get_rows */

typedef struct {
    float *out;
    const float *src;
    const int32_t *ids;
    int n, dim;
} rows_job_t;

static void rows_worker(void *arg, int ith, int nth) {
    rows_job_t *j = arg;
    int r0, r1;
    split_rows(j->n, ith, nth, &r0, &r1);
    for (int i = r0; i < r1; i++)
        memcpy(j->out + (size_t)i * j->dim, j->src + (size_t)j->ids[i] * j->dim, (size_t)j->dim * sizeof(float));
}

static void cpu_embed(void *ctx, float *out, const void *table, const int32_t *ids, int n, int dim) {
    cpu_t *c = ctx;
    const backend_dtype_t dt = cpu_qmat_lookup(c->qm, table);
    if (dt != BACKEND_DT_F32) {
        cpu_qmat_embed(c->pool, dt, out, table, ids, n, dim);
        return;
    }
    rows_job_t j = {out, table, ids, n, dim};
    cpu_par(ctx, rows_worker, &j, (int64_t)n * dim);
}

static void cpu_get_rows(void *ctx, float *out, const float *src, const int32_t *rows, int n, int dim) {
    rows_job_t j = {out, src, rows, n, dim};
    cpu_par(ctx, rows_worker, &j, (int64_t)n * dim);
}

/* ------------------------------------------------------------------ rmsnorm */

typedef struct {
    float *out, *x;
    const float *add, *w;
    int n, dim;
    float eps;
} norm_job_t;

static void norm_worker(void *arg, int ith, int nth) {
    norm_job_t *j = arg;
    int r0, r1;
    split_rows(j->n, ith, nth, &r0, &r1);
    const int d = j->dim;
    for (int r = r0; r < r1; r++) {
        float *x = j->x + (size_t)r * d, *o = j->out + (size_t)r * d;
        if (j->add) {
            const float *a = j->add + (size_t)r * d;
            for (int i = 0; i < d; i++) x[i] += a[i];
        }
        float ss = dot_f32(x, x, d);
        float s = 1.0f / sqrtf(ss / (float)d + j->eps);
        for (int i = 0; i < d; i++) o[i] = (x[i] * s) * j->w[i];
    }
}

static void cpu_rmsnorm(void *ctx, float *out, float *x, const float *add, const float *w, int n, int dim, float eps) {
    norm_job_t j = {out, x, add, w, n, dim, eps};
    cpu_par(ctx, norm_worker, &j, (int64_t)n * dim);
}

/* ------------------------------------------------------------------ matmul */

/* Two implementations (KRILL_CPU_MATMUL at init):
 * - "krill" (default): matmul_cpu.c's kernels on W as stored, split into tasks of
 *   (MATMUL_CPU_ROW_BLOCK rows x matmul_cpu_tile_cols(in) columns) handed out
 *   dynamically. Each element is computed in one fixed order whatever the batch, the
 *   split or the thread (batch-invariant bitwise); "generic" is the same order in
 *   portable C (tests, and machines without AVX2).
 * - "openblas": sgemm split by 16-column slices over the pool, sgemv for 1-2 rows.
 *   Not batch-invariant: a row's last bits depend on the row count and its position. */
#define MM_GEMV_ROWS 3

typedef struct {
    float *y;
    const float *x, *w, *bias;
    int n, in, out;
    matmul_cpu_impl_t impl;
    matmul_cpu_split_t split;
    atomic_int next;
} mm_job_t;

static void mm_task(void *arg, int r0, int r1, int c0, int c1) {
    const mm_job_t *j = arg;
    matmul_cpu_block(j->impl, j->y, j->out, j->x, j->in, j->w, j->bias, j->in, r0, r1, c0, c1);
}

static void mm_worker(void *arg, int ith, int nth) {
    (void)ith;
    (void)nth;
    mm_job_t *j = arg;
    matmul_cpu_take_tasks(&j->split, &j->next, mm_task, j);
}

#ifndef KRILL_NO_BLAS
static void mm_blas_worker(void *arg, int ith, int nth) {
    mm_job_t *j = arg;
    /* columns [c0, c1) in multiples of 16 so each slice keeps sgemm's kernels aligned */
    int units = (j->out + 15) / 16;
    int c0 = (int)((int64_t)units * ith / nth) * 16, c1 = (int)((int64_t)units * (ith + 1) / nth) * 16;
    if (c1 > j->out) c1 = j->out;
    if (c1 <= c0) return;
    if (j->n < MM_GEMV_ROWS) {
        /* sgemm would pack the whole weight slice for one or two rows: gemv reads it in place */
        for (int r = 0; r < j->n; r++)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, c1 - c0, j->in, 1.0f, j->w + (size_t)c0 * j->in, j->in,
                        j->x + (size_t)r * j->in, 1, 0.0f, j->y + (size_t)r * j->out + c0, 1);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, c1 - c0, j->in, 1.0f, j->x, j->in,
                    j->w + (size_t)c0 * j->in, j->in, 0.0f, j->y + c0, j->out);
    }
    if (j->bias)
        for (int r = 0; r < j->n; r++) {
            float *y = j->y + (size_t)r * j->out;
            for (int c = c0; c < c1; c++) y[c] += j->bias[c];
        }
}
#endif

static void cpu_matmul(void *ctx, float *y, const float *x, const void *w, const float *bias, int n, int in, int out) {
    cpu_t *c = ctx;
    const backend_dtype_t wt = cpu_qmat_lookup(c->qm, w);
    if (wt != BACKEND_DT_F32) {
        if (cpu_qmat_matmul(c->qm, c->pool, wt, y, x, w, bias, n, in, out))
            cpu_fail(c, "cpu backend: out of memory (activation scratch)");
        return;
    }
    mm_job_t j = {.y = y, .x = x, .w = w, .bias = bias, .n = n, .in = in, .out = out, .impl = c->mm_impl};
    const bool small = (int64_t)n * in * out < (1 << 18) || pool_size(c->pool) == 1;
#ifndef KRILL_NO_BLAS
    if (c->mm_blas) {
        if (small || out < 32) mm_blas_worker(&j, 0, 1);
        else pool_run(c->pool, mm_blas_worker, &j);
        return;
    }
#endif
    const int tile_cols = matmul_cpu_tile_cols(in);
    /* enough tasks to keep every thread busy on short batches (dynamic: a preempted
     * thread's share is taken by the others) */
    const int nth = pool_size(c->pool);
    matmul_cpu_split(&j.split, n, out, tile_cols, 24, nth, small);
    atomic_init(&j.next, 0);
    if (small) mm_worker(&j, 0, 1);
    else pool_run(c->pool, mm_worker, &j);
}

/* ------------------------------------------------------------------ rope */

typedef struct {
    float *x;
    int n, row_stride, n_heads, head_dim, rope_dim;
    const int32_t *pos;
    const float *inv_freq;
    bool neox;
} rope_job_t;

static void rope_worker(void *arg, int ith, int nth) {
    rope_job_t *j = arg;
    int r0, r1;
    split_rows(j->n, ith, nth, &r0, &r1);
    const int half = j->rope_dim / 2;
    float cs[BACKEND_MAX_HEAD_DIM / 2], sn[BACKEND_MAX_HEAD_DIM / 2];
    for (int r = r0; r < r1; r++) {
        const float p = (float)j->pos[r];
        for (int i = 0; i < half; i++) {
            float a = p * j->inv_freq[i];
            cs[i] = cosf(a);
            sn[i] = sinf(a);
        }
        float *row = j->x + (size_t)r * j->row_stride;
        for (int h = 0; h < j->n_heads; h++) {
            float *v = row + (size_t)h * j->head_dim;
            if (j->neox) {
                for (int i = 0; i < half; i++) {
                    float a = v[i], b = v[i + half];
                    v[i] = a * cs[i] - b * sn[i];
                    v[i + half] = a * sn[i] + b * cs[i];
                }
            } else {
                for (int i = 0; i < half; i++) {
                    float a = v[2 * i], b = v[2 * i + 1];
                    v[2 * i] = a * cs[i] - b * sn[i];
                    v[2 * i + 1] = a * sn[i] + b * cs[i];
                }
            }
        }
    }
}

static void cpu_rope(void *ctx, float *x, int n, int row_stride, int n_heads, int head_dim, int rope_dim,
                     const int32_t *pos, const float *inv_freq, bool neox) {
    CHECK(rope_dim <= head_dim && rope_dim <= BACKEND_MAX_HEAD_DIM && rope_dim % 2 == 0);
    rope_job_t j = {x, n, row_stride, n_heads, head_dim, rope_dim, pos, inv_freq, neox};
    cpu_par(ctx, rope_worker, &j, (int64_t)n * n_heads * rope_dim);
}

/* ------------------------------------------------------------------ kv_write */

/* CPU cache layout inside one block (docs/engine.md):
 *   K: (n_kv_heads, head_dim, block_size)  — transposed, so attention reads 16 keys of
 *      one dimension as one vector and computes 16 scores per FMA with no reduction;
 *   V: (n_kv_heads, block_size, head_dim). */
static inline size_t k_index(const backend_attn_t *a, int64_t blk, int g, int d, int slot) {
    return (((size_t)blk * a->n_kv_heads + g) * a->head_dim + d) * a->block_size + slot;
}
static inline size_t v_index(const backend_attn_t *a, int64_t blk, int g, int slot) {
    return (((size_t)blk * a->n_kv_heads + g) * a->block_size + slot) * a->head_dim;
}

typedef struct {
    void *kc, *vc;
    const float *k, *v;
    int row_stride;
    const int32_t *pos, *seq, *table;
    int table_stride, n;
    const backend_attn_t *a;
    backend_dtype_t dt;
} kvw_job_t;

static void kvw_worker(void *arg, int ith, int nth) {
    kvw_job_t *j = arg;
    int r0, r1;
    split_rows(j->n, ith, nth, &r0, &r1);
    const backend_attn_t *a = j->a;
    const int hd = a->head_dim;
    for (int i = r0; i < r1; i++) {
        int p = j->pos[i];
        int64_t blk = j->table[(size_t)j->seq[i] * j->table_stride + p / a->block_size];
        int slot = p % a->block_size;
        for (int g = 0; g < a->n_kv_heads; g++) {
            const float *k = j->k + (size_t)i * j->row_stride + (size_t)g * hd;
            const float *v = j->v + (size_t)i * j->row_stride + (size_t)g * hd;
            size_t ki = k_index(a, blk, g, 0, slot), vi = v_index(a, blk, g, slot);
            if (j->dt == BACKEND_DT_F32) {
                float *kc = j->kc;
                for (int d = 0; d < hd; d++) kc[ki + (size_t)d * a->block_size] = k[d];
            } else {
                uint16_t *kc = j->kc;
                for (int d = 0; d < hd; d++) kc[ki + (size_t)d * a->block_size] = quant_f32_to_f16(k[d]);
            }
            kv_store_row((char *)j->vc + vi * backend_dtype_size(j->dt), v, hd, j->dt);
        }
    }
}

static void cpu_kv_write(void *ctx, void *kc, void *vc, const float *k, const float *v, int row_stride,
                         const int32_t *pos, const int32_t *seq, const int32_t *block_table, int table_stride, int n,
                         const backend_attn_t *a) {
    cpu_t *c = ctx;
    kvw_job_t j = {kc, vc, k, v, row_stride, pos, seq, block_table, table_stride, n, a, c->kv_dtype};
    cpu_par(c, kvw_worker, &j, (int64_t)n * a->n_kv_heads * a->head_dim * 2);
}

/* ------------------------------------------------------------------ attention */

/* Keys per inner chunk (never crossing a block): the scores of one query row for a
 * chunk are one 16-lane vector pair. */
#define ATT_CHUNK 16
/* Query rows per task: up to ATT_TILE consecutive tokens of one sequence times the
 * n_heads / n_kv_heads query heads sharing a kv head, at most ATT_MAX_ROWS rows, so
 * each K/V chunk is converted once for all of them (prefill) — decode tiles have one
 * token. */
#define ATT_TILE 16
#define ATT_MAX_ROWS 64

typedef struct {
    float *out;
    const float *q;
    int q_stride;
    const void *kc, *vc;
    const int32_t *pos, *seq, *table;
    int table_stride, n, tile;
    const backend_attn_t *a;
    backend_dtype_t dt;
    atomic_int next; /* next task: (token block of `tile`) * n_kv_heads + kv head */
} att_job_t;

/* Converts n values at src (f16 or f32) to f32. */
static inline void kv_load(float *dst, const void *src, size_t idx, int n, backend_dtype_t dt) {
    if (dt == BACKEND_DT_F32) memcpy(dst, (const float *)src + idx, (size_t)n * sizeof(float));
    else kv_load_row(dst, (const uint16_t *)src + idx, n, dt);
}

/* s[0..16) = q . kt[:, 0..16) for one query row (keys transposed: kt (hd, ATT_CHUNK)). */
static inline void att_scores1(const float *q, const float (*kt)[ATT_CHUNK], int hd, float *s) {
#if CPU_AVX2
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int d = 0;
    for (; d + 2 <= hd; d += 2) {
        const __m256 q0 = _mm256_set1_ps(q[d]), q1 = _mm256_set1_ps(q[d + 1]);
        a0 = _mm256_fmadd_ps(q0, _mm256_load_ps(kt[d]), a0);
        a1 = _mm256_fmadd_ps(q0, _mm256_load_ps(kt[d] + 8), a1);
        a2 = _mm256_fmadd_ps(q1, _mm256_load_ps(kt[d + 1]), a2);
        a3 = _mm256_fmadd_ps(q1, _mm256_load_ps(kt[d + 1] + 8), a3);
    }
    if (d < hd) {
        const __m256 q0 = _mm256_set1_ps(q[d]);
        a0 = _mm256_fmadd_ps(q0, _mm256_load_ps(kt[d]), a0);
        a1 = _mm256_fmadd_ps(q0, _mm256_load_ps(kt[d] + 8), a1);
    }
    _mm256_store_ps(s, _mm256_add_ps(a0, a2));
    _mm256_store_ps(s + 8, _mm256_add_ps(a1, a3));
#else
    for (int k = 0; k < ATT_CHUNK; k++) s[k] = 0.0f;
    for (int d = 0; d < hd; d++)
        for (int k = 0; k < ATT_CHUNK; k++) s[k] += q[d] * kt[d][k];
#endif
}

/* The same for two query rows sharing every key load (8 independent FMA chains). */
static inline void att_scores2(const float *qa, const float *qb, const float (*kt)[ATT_CHUNK], int hd, float *sa,
                               float *sb) {
#if CPU_AVX2
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps(), b2 = _mm256_setzero_ps(), b3 = _mm256_setzero_ps();
    int d = 0;
    for (; d + 2 <= hd; d += 2) {
        const __m256 k0 = _mm256_load_ps(kt[d]), k1 = _mm256_load_ps(kt[d] + 8);
        const __m256 k2 = _mm256_load_ps(kt[d + 1]), k3 = _mm256_load_ps(kt[d + 1] + 8);
        __m256 q = _mm256_set1_ps(qa[d]);
        a0 = _mm256_fmadd_ps(q, k0, a0);
        a1 = _mm256_fmadd_ps(q, k1, a1);
        q = _mm256_set1_ps(qa[d + 1]);
        a2 = _mm256_fmadd_ps(q, k2, a2);
        a3 = _mm256_fmadd_ps(q, k3, a3);
        q = _mm256_set1_ps(qb[d]);
        b0 = _mm256_fmadd_ps(q, k0, b0);
        b1 = _mm256_fmadd_ps(q, k1, b1);
        q = _mm256_set1_ps(qb[d + 1]);
        b2 = _mm256_fmadd_ps(q, k2, b2);
        b3 = _mm256_fmadd_ps(q, k3, b3);
    }
    if (d < hd) {
        const __m256 k0 = _mm256_load_ps(kt[d]), k1 = _mm256_load_ps(kt[d] + 8);
        __m256 q = _mm256_set1_ps(qa[d]);
        a0 = _mm256_fmadd_ps(q, k0, a0);
        a1 = _mm256_fmadd_ps(q, k1, a1);
        q = _mm256_set1_ps(qb[d]);
        b0 = _mm256_fmadd_ps(q, k0, b0);
        b1 = _mm256_fmadd_ps(q, k1, b1);
    }
    _mm256_store_ps(sa, _mm256_add_ps(a0, a2));
    _mm256_store_ps(sa + 8, _mm256_add_ps(a1, a3));
    _mm256_store_ps(sb, _mm256_add_ps(b0, b2));
    _mm256_store_ps(sb + 8, _mm256_add_ps(b1, b3));
#else
    att_scores1(qa, kt, hd, sa);
    att_scores1(qb, kt, hd, sb);
#endif
}

/* Online-softmax update of one row for a chunk: s (scores, `valid` of them count)
 * becomes exp(s - new max) with 0 beyond valid; updates (m, l); returns the factor
 * the row's accumulator must be scaled by. */
static inline float att_softmax(float *s, int valid, float *m, float *l) {
    float mx = *m;
    for (int k = 0; k < valid; k++)
        if (s[k] > mx) mx = s[k];
    const float corr = expf(*m - mx); /* 0 on the first chunk (m = -inf) */
    float sum;
#if CPU_AVX2
    for (int k = valid; k < ATT_CHUNK; k++) s[k] = -INFINITY; /* exp256 gives 0 */
    const __m256 vmx = _mm256_set1_ps(mx);
    const __m256 e0 = exp256(_mm256_sub_ps(_mm256_load_ps(s), vmx));
    const __m256 e1 = exp256(_mm256_sub_ps(_mm256_load_ps(s + 8), vmx));
    _mm256_store_ps(s, e0);
    _mm256_store_ps(s + 8, e1);
    sum = hsum256(_mm256_add_ps(e0, e1));
#else
    sum = 0.0f;
    for (int k = 0; k < ATT_CHUNK; k++) sum += (s[k] = k < valid ? expf(s[k] - mx) : 0.0f);
#endif
    *l = *l * corr + sum;
    *m = mx;
    return corr;
}

/* acc[0..hd) = acc * corr + sum_k p[k] v[k][0..hd) for k < n; v rows `stride` floats apart. */
static inline void att_pv1(float *acc, float corr, const float *p, const float *v, int n, int hd, int stride) {
    int i = 0;
#if CPU_AVX2
    const __m256 vc = _mm256_set1_ps(corr);
    for (; i + 32 <= hd; i += 32) {
        __m256 a0 = _mm256_mul_ps(_mm256_load_ps(acc + i), vc), a1 = _mm256_mul_ps(_mm256_load_ps(acc + i + 8), vc);
        __m256 a2 = _mm256_mul_ps(_mm256_load_ps(acc + i + 16), vc), a3 = _mm256_mul_ps(_mm256_load_ps(acc + i + 24), vc);
        for (int k = 0; k < n; k++) {
            const __m256 w = _mm256_set1_ps(p[k]);
            const float *vk = v + (size_t)k * stride + i;
            a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vk), a0);
            a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vk + 8), a1);
            a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vk + 16), a2);
            a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vk + 24), a3);
        }
        _mm256_store_ps(acc + i, a0);
        _mm256_store_ps(acc + i + 8, a1);
        _mm256_store_ps(acc + i + 16, a2);
        _mm256_store_ps(acc + i + 24, a3);
    }
    for (; i + 8 <= hd; i += 8) {
        __m256 a0 = _mm256_mul_ps(_mm256_load_ps(acc + i), vc);
        for (int k = 0; k < n; k++)
            a0 = _mm256_fmadd_ps(_mm256_set1_ps(p[k]), _mm256_loadu_ps(v + (size_t)k * stride + i), a0);
        _mm256_store_ps(acc + i, a0);
    }
#endif
    for (; i < hd; i++) {
        float x = acc[i] * corr;
        for (int k = 0; k < n; k++) x += p[k] * v[(size_t)k * stride + i];
        acc[i] = x;
    }
}

/* The same for two rows sharing every V load (p beyond a row's valid keys is 0). */
static inline void att_pv2(float *acca, float ca, const float *pa, float *accb, float cb, const float *pb,
                           const float *v, int n, int hd) {
    int i = 0;
#if CPU_AVX2
    const __m256 vca = _mm256_set1_ps(ca), vcb = _mm256_set1_ps(cb);
    for (; i + 16 <= hd; i += 16) {
        __m256 a0 = _mm256_mul_ps(_mm256_load_ps(acca + i), vca), a1 = _mm256_mul_ps(_mm256_load_ps(acca + i + 8), vca);
        __m256 b0 = _mm256_mul_ps(_mm256_load_ps(accb + i), vcb), b1 = _mm256_mul_ps(_mm256_load_ps(accb + i + 8), vcb);
        for (int k = 0; k < n; k++) {
            const float *vk = v + (size_t)k * hd + i;
            const __m256 v0 = _mm256_loadu_ps(vk), v1 = _mm256_loadu_ps(vk + 8);
            const __m256 wa = _mm256_set1_ps(pa[k]), wb = _mm256_set1_ps(pb[k]);
            a0 = _mm256_fmadd_ps(wa, v0, a0);
            a1 = _mm256_fmadd_ps(wa, v1, a1);
            b0 = _mm256_fmadd_ps(wb, v0, b0);
            b1 = _mm256_fmadd_ps(wb, v1, b1);
        }
        _mm256_store_ps(acca + i, a0);
        _mm256_store_ps(acca + i + 8, a1);
        _mm256_store_ps(accb + i, b0);
        _mm256_store_ps(accb + i + 8, b1);
    }
#endif
    if (i < hd) {
        att_pv1(acca + i, ca, pa, v + i, n, hd - i, hd);
        att_pv1(accb + i, cb, pb, v + i, n, hd - i, hd);
    }
}

/* Sliding window: scores of the chunk's first `lo` keys (before the row's window) become
 * -inf, so they weigh exactly 0 whatever the rest of the batch is. */
static inline void att_window_mask(float *s, int lo, int W) {
    for (int k = 0; W && k < lo && k < ATT_CHUNK; k++) s[k] = -INFINITY;
}

/* Attention for query tokens t0..t0+nt-1 (one sequence, consecutive positions) and kv head g. */
static void att_tile(const att_job_t *j, int t0, int nt, int g) {
    const backend_attn_t *a = j->a;
    const int hd = a->head_dim, G = a->n_heads / a->n_kv_heads, bs = a->block_size;
    const int rows = nt * G, p_first = j->pos[t0], p_last = j->pos[t0 + nt - 1];
    /* sliding window: row r sees positions >= p_first + r / G - W + 1; keys start at the
     * block holding the first row's lowest one, so chunk boundaries stay those from 0 */
    const int W = a->window > 0 ? a->window : 0;
    const int p_start = W && p_first - W + 1 > 0 ? (p_first - W + 1) / bs * bs : 0;
    const int32_t *tab = j->table + (size_t)j->seq[t0] * j->table_stride;
    float q[ATT_MAX_ROWS][BACKEND_MAX_HEAD_DIM] __attribute__((aligned(32)));
    float acc[ATT_MAX_ROWS][BACKEND_MAX_HEAD_DIM] __attribute__((aligned(32)));
    float kt[BACKEND_MAX_HEAD_DIM][ATT_CHUNK] __attribute__((aligned(32))); /* keys transposed */
    float vf[ATT_CHUNK * BACKEND_MAX_HEAD_DIM] __attribute__((aligned(32))); /* (cnt, hd) */
    float sa[ATT_CHUNK] __attribute__((aligned(32)));
    float sb[ATT_CHUNK] __attribute__((aligned(32)));
    float m[ATT_MAX_ROWS], l[ATT_MAX_ROWS];
    for (int r = 0; r < rows; r++) { /* row r = token t0 + r / G, head g*G + r % G */
        const float *qs = j->q + (size_t)(t0 + r / G) * j->q_stride + (size_t)(g * G + r % G) * hd;
        for (int i = 0; i < hd; i++) q[r][i] = qs[i] * a->scale;
        memset(acc[r], 0, (size_t)hd * sizeof(float));
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    int cnt;
    for (int p0 = p_start; p0 <= p_last; p0 += cnt) {
        const int blk_pos = p0 % bs;
        cnt = p_last + 1 - p0;
        if (cnt > ATT_CHUNK) cnt = ATT_CHUNK;
        if (cnt > bs - blk_pos) cnt = bs - blk_pos;
        const int64_t blk = tab[p0 / bs];
        for (int d = 0; d < hd; d++) {
            kv_load(kt[d], j->kc, k_index(a, blk, g, d, blk_pos), cnt, j->dt);
            for (int k = cnt; k < ATT_CHUNK; k++) kt[d][k] = 0.0f;
        }
        kv_load(vf, j->vc, v_index(a, blk, g, blk_pos), cnt * hd, j->dt); /* rows contiguous in a block */
        /* keys row r may see in this chunk: positions <= its own; non-decreasing in r */
        int r = 0, r_end = rows;
        while (r < rows && p_first + r / G - p0 + 1 <= 0) r++;
        /* window: rows whose lowest visible position is past this chunk skip it */
        while (W && r_end > r && p_first + (r_end - 1) / G - W + 1 >= p0 + cnt) r_end--;
        for (; r < r_end; r += 2) {
            int va = p_first + r / G - p0 + 1;
            if (va > cnt) va = cnt;
            if (r + 1 == r_end) {
                att_scores1(q[r], (const float(*)[ATT_CHUNK])kt, hd, sa);
                att_window_mask(sa, p_first + r / G - W + 1 - p0, W);
                float ca = att_softmax(sa, va, &m[r], &l[r]);
                att_pv1(acc[r], ca, sa, vf, va, hd, hd);
                break;
            }
            int vb = p_first + (r + 1) / G - p0 + 1;
            if (vb > cnt) vb = cnt;
            att_scores2(q[r], q[r + 1], (const float(*)[ATT_CHUNK])kt, hd, sa, sb);
            att_window_mask(sa, p_first + r / G - W + 1 - p0, W);
            att_window_mask(sb, p_first + (r + 1) / G - W + 1 - p0, W);
            float ca = att_softmax(sa, va, &m[r], &l[r]);
            float cb = att_softmax(sb, vb, &m[r + 1], &l[r + 1]);
            att_pv2(acc[r], ca, sa, acc[r + 1], cb, sb, vf, vb, hd); /* vb >= va; sa is 0 past va */
        }
    }
    const int qd = a->n_heads * hd;
    for (int r = 0; r < rows; r++) {
        float *o = j->out + (size_t)(t0 + r / G) * qd + (size_t)(g * G + r % G) * hd;
        const float inv = 1.0f / l[r];
        for (int i = 0; i < hd; i++) o[i] = acc[r][i] * inv;
    }
}

static void att_worker(void *arg, int ith, int nth) {
    (void)ith;
    (void)nth;
    att_job_t *j = arg;
    const int nkv = j->a->n_kv_heads, n_blocks = (j->n + j->tile - 1) / j->tile;
    for (;;) {
        int task = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (task >= n_blocks * nkv) break;
        const int t_end = (task / nkv + 1) * j->tile < j->n ? (task / nkv + 1) * j->tile : j->n;
        /* split the token block into runs of one sequence with consecutive positions */
        for (int t = (task / nkv) * j->tile; t < t_end;) {
            int e = t + 1;
            while (e < t_end && j->seq[e] == j->seq[t] && j->pos[e] == j->pos[e - 1] + 1) e++;
            att_tile(j, t, e - t, task % nkv);
            t = e;
        }
    }
}

static void cpu_attention(void *ctx, float *out, const float *q, int q_stride, const void *kc, const void *vc,
                          const int32_t *pos, const int32_t *seq, const int32_t *block_table, int table_stride, int n,
                          const backend_attn_t *a) {
    cpu_t *c = ctx;
    CHECK(a->head_dim <= BACKEND_MAX_HEAD_DIM && a->n_kv_heads > 0 && a->n_heads % a->n_kv_heads == 0 &&
          a->n_heads / a->n_kv_heads <= BACKEND_MAX_GQA && a->block_size > 0 &&
          a->block_size <= BACKEND_MAX_BLOCK_SIZE && BACKEND_MAX_GQA <= ATT_MAX_ROWS);
    const int G = a->n_heads / a->n_kv_heads;
    att_job_t j = {.out = out, .q = q, .q_stride = q_stride, .kc = kc, .vc = vc, .pos = pos, .seq = seq,
                   .table = block_table, .table_stride = table_stride, .n = n,
                   .tile = ATT_MAX_ROWS / G < ATT_TILE ? ATT_MAX_ROWS / G : ATT_TILE, .a = a, .dt = c->kv_dtype};
    atomic_init(&j.next, 0);
    int64_t work = 0;
    for (int i = 0; i < n && work < (1 << 16); i++) work += (int64_t)(pos[i] + 1) * a->n_heads * a->head_dim;
    cpu_par(c, att_worker, &j, work);
}

/* ------------------------------------------------------------------ swiglu */

typedef struct {
    float *out;
    const float *gu;
    int n, ffn;
} swiglu_job_t;

static void swiglu_worker(void *arg, int ith, int nth) {
    swiglu_job_t *j = arg;
    int r0, r1;
    split_rows(j->n, ith, nth, &r0, &r1);
    const int f = j->ffn;
    for (int r = r0; r < r1; r++) {
        const float *g = j->gu + (size_t)r * 2 * f, *u = g + f;
        float *o = j->out + (size_t)r * f;
        int i = 0;
#if CPU_AVX2
        const __m256 one = _mm256_set1_ps(1.0f);
        for (; i + 8 <= f; i += 8) {
            __m256 vg = _mm256_loadu_ps(g + i);
            __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), vg));
            __m256 silu = _mm256_div_ps(vg, _mm256_add_ps(one, e));
            _mm256_storeu_ps(o + i, _mm256_mul_ps(silu, _mm256_loadu_ps(u + i)));
        }
#endif
        for (; i < f; i++) o[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    }
}

static void cpu_swiglu(void *ctx, float *out, const float *gu, int n, int ffn) {
    swiglu_job_t j = {out, gu, n, ffn};
    cpu_par(ctx, swiglu_worker, &j, (int64_t)n * ffn);
}

/* ------------------------------------------------------------------ table */

static const backend_ops_t cpu_ops = {
    .name = "cpu",
    /* 512 tokens a step already run the matmuls at full speed; activations for 2048
     * would cost ~85 MB more resident memory (SmolLM2-135M). f16 KV: the matmul's fixed
     * per-element order (matmul_cpu.h) keeps outputs batch-independent bitwise
     * (test_batch_invariance) at half the memory of f32. */
    .defaults = {.max_seqs = 64, .max_batch_tokens = 512, .weight_dtype = BACKEND_DT_F32,
                 .kv_dtype = BACKEND_DT_F16},
    .device_count = cpu_device_count,
    .init = cpu_init,
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .mem_info = cpu_mem_info,
    .upload = cpu_upload,
    .download = cpu_download,
    .load_tensor = cpu_load_tensor,
    .synchronize = cpu_synchronize,
    .last_error = cpu_last_error,
    .embed = cpu_embed,
    .get_rows = cpu_get_rows,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
    .rope = cpu_rope,
    .kv_write = cpu_kv_write,
    .attention = cpu_attention,
    .swiglu = cpu_swiglu,
    .reserve = cpu_reserve,
    .load_matrix = cpu_load_matrix,
    .head_norm = ops_family_head_norm,
    .geglu = ops_family_geglu,
    .scale = ops_family_scale,
    .attn_window = true,
};

const backend_ops_t *backend_cpu_ops(void) { return &cpu_ops; }
