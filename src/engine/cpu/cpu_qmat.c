/* cpu_qmat.c — quantized weights behind the CPU backend's table (cpu_qmat.h).
 *
 * Rules:
 * - Which dtype a weight buffer holds is what load wrote there: a sorted list of
 *   ranges (a few hundred per model), searched once per matmul call.
 * - Matmul: activation rows are quantized first (per row; across the pool when there
 *   are many), then (row block x column tile) tasks are taken dynamically. Tiles are
 *   whole panels of 16 columns where possible; a task's weight slice stays in L2.
 *   None of this changes a bit of the result (qmat.h's order).
 * - Allocation only in new / reserve / load (and a one-time growth of the scratch
 *   when a caller exceeds what was reserved). */
#include "cpu_qmat.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "matmul_cpu.h"

typedef struct {
    const char *start;
    size_t bytes;
    backend_dtype_t dt;
} range_t;

struct cpu_qmat {
    qmat_impl_t impl;
    range_t *ranges; /* sorted by start */
    int n_ranges, cap_ranges;
    void *xq; /* activation scratch */
    size_t xq_bytes;
};

static qmat_type_t qtype(backend_dtype_t dt) { return dt == BACKEND_DT_Q8 ? QMAT_Q8 : QMAT_Q4; }

cpu_qmat_t *cpu_qmat_new(qmat_impl_t impl) {
    cpu_qmat_t *q = calloc(1, sizeof *q);
    if (q) q->impl = impl == QMAT_IMPL_AUTO ? qmat_impl_best() : impl;
    return q;
}

void cpu_qmat_free(cpu_qmat_t *q) {
    if (!q) return;
    free(q->ranges);
    free(q->xq);
    free(q);
}

int cpu_qmat_parse(const char *cpu_weights, backend_dtype_t *wdt, bool *by_type, qmat_impl_t *impl, char *err,
                   size_t errlen) {
    const char *cw = cpu_weights;
    *wdt = BACKEND_DT_F32;
    *by_type = false;
    /* "auto": by type (Q4_0/Q4_1 -> q4, Q8_0 -> q8, the rest f32). With two-plane
     * activations (qmat.h) q4 keeps free-running greedy parity (test_qparity; with one
     * 8-bit plane it was 50 %) */
    if (cw && *cw && strcmp(cw, "f32")) {
        if (!strcmp(cw, "auto")) {
            *wdt = BACKEND_DT_Q4;
            *by_type = true;
        } else if (!strcmp(cw, "q8")) *wdt = BACKEND_DT_Q8;
        else if (!strcmp(cw, "q4")) *wdt = BACKEND_DT_Q4;
        else {
            err_set(err, errlen, "cpu backend: cpu_weights '%s' is not known: use \"auto\", \"f32\", \"q8\" or \"q4\"", cw);
            return -1;
        }
    }
    *impl = QMAT_IMPL_AUTO;
    const char *qk = getenv("KRILL_CPU_QMAT");
    if (!qk || !*qk || !strcmp(qk, "auto")) return 0;
    static const qmat_impl_t all[] = {QMAT_IMPL_REF, QMAT_IMPL_AVX2, QMAT_IMPL_AVXVNNI, QMAT_IMPL_AVX512VNNI};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!strcmp(qk, qmat_impl_name(all[i])) && qmat_impl_available(all[i])) {
            *impl = all[i];
            return 0;
        }
    err_set(err, errlen, "cpu backend: KRILL_CPU_QMAT='%s' is not a kernel this CPU runs: use \"auto\" (%s), \"ref\", "
                         "\"avx2\", \"avxvnni\" or \"avx512vnni\" (as /proc/cpuinfo allows)", qk,
            qmat_impl_name(QMAT_IMPL_AUTO));
    return -1;
}

/* ------------------------------------------------------------------ ranges */

/* Index of the last range starting at or before p, or -1. */
static int range_find(const cpu_qmat_t *q, const char *p) {
    int lo = 0, hi = q->n_ranges - 1, best = -1;
    while (lo <= hi) {
        const int mid = (lo + hi) / 2;
        if (q->ranges[mid].start <= p) {
            best = mid;
            lo = mid + 1;
        } else hi = mid - 1;
    }
    return best;
}

static int range_add(cpu_qmat_t *q, const void *start, size_t bytes, backend_dtype_t dt) {
    const int at = range_find(q, start);
    if (at >= 0 && q->ranges[at].start == (const char *)start) { /* reloaded in place */
        q->ranges[at] = (range_t){start, bytes, dt};
        return 0;
    }
    if (q->n_ranges == q->cap_ranges) {
        const int cap = q->cap_ranges ? 2 * q->cap_ranges : 64;
        range_t *r = realloc(q->ranges, sizeof *r * (size_t)cap);
        if (!r) return -1;
        q->ranges = r;
        q->cap_ranges = cap;
    }
    memmove(q->ranges + at + 2, q->ranges + at + 1, sizeof(range_t) * (size_t)(q->n_ranges - at - 1));
    q->ranges[at + 1] = (range_t){start, bytes, dt};
    q->n_ranges++;
    return 0;
}

backend_dtype_t cpu_qmat_lookup(const cpu_qmat_t *q, const void *w) {
    const int at = range_find(q, w);
    if (at < 0 || (const char *)w >= q->ranges[at].start + q->ranges[at].bytes) return BACKEND_DT_F32;
    return q->ranges[at].dt;
}

void cpu_qmat_forget(cpu_qmat_t *q, const void *buf, size_t bytes) {
    int k = 0;
    for (int i = 0; i < q->n_ranges; i++) {
        const char *s = q->ranges[i].start;
        if (s >= (const char *)buf && s < (const char *)buf + bytes) continue;
        q->ranges[k++] = q->ranges[i];
    }
    q->n_ranges = k;
}

/* ------------------------------------------------------------------ load */

typedef struct {
    qmat_type_t t;
    void *dst;
    gguf_ttype_t src_type;
    const void *src;
    int64_t rows, cols;
    atomic_int failed;
} load_job_t;

static void load_worker(void *arg, int ith, int nth) {
    load_job_t *j = arg;
    const int64_t np = j->rows / QMAT_COLS, p0 = np * ith / nth, p1 = np * (ith + 1) / nth;
    if (p1 > p0 && qmat_pack(j->t, j->dst, j->src_type, j->src, j->rows, j->cols, p0, p1))
        atomic_store(&j->failed, 1);
}

int cpu_qmat_load(cpu_qmat_t *q, pool_t *pool, void *dst, backend_dtype_t dt, gguf_ttype_t src_type,
                  const void *src, int64_t rows, int64_t cols, char *err, size_t errlen) {
    const size_t bytes = backend_weight_bytes(dt, rows, cols);
    if (!bytes) {
        err_set(err, errlen, "cpu backend: a %lld x %lld matrix does not fit the %s layout (rows a multiple of %d, "
                             "columns of %d)", (long long)rows, (long long)cols, backend_dtype_name(dt), QMAT_COLS,
                QMAT_BLOCK);
        return -1;
    }
    load_job_t j = {.t = qtype(dt), .dst = dst, .src_type = src_type, .src = src, .rows = rows, .cols = cols};
    atomic_init(&j.failed, 0);
    if (rows * cols < (1 << 16)) load_worker(&j, 0, 1);
    else pool_run(pool, load_worker, &j);
    if (atomic_load(&j.failed)) {
        err_set(err, errlen, "cpu backend: cannot convert type %d to %s", (int)src_type, backend_dtype_name(dt));
        return -1;
    }
    if (range_add(q, dst, bytes, dt)) {
        err_set(err, errlen, "cpu backend: out of memory");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ matmul */

int cpu_qmat_reserve(cpu_qmat_t *q, int n, int in) {
    const size_t need = qmat_act_bytes(in) * (size_t)(n > 0 ? n : 1);
    if (need <= q->xq_bytes) return 0;
    void *p = aligned_alloc(64, need);
    if (!p) return -1;
    free(q->xq);
    q->xq = p;
    q->xq_bytes = need;
    return 0;
}

typedef struct {
    qmat_impl_t impl;
    qmat_type_t t;
    float *y;
    const float *x, *bias;
    const void *w;
    void *xq;
    bool uns;
    int n, in, out;
    matmul_cpu_split_t split;
    atomic_int next;
} mm_job_t;

static void quant_worker(void *arg, int ith, int nth) {
    mm_job_t *j = arg;
    const int r0 = (int)((int64_t)j->n * ith / nth), r1 = (int)((int64_t)j->n * (ith + 1) / nth);
    const size_t xs = qmat_act_bytes(j->in);
    for (int r = r0; r < r1; r++)
        qmat_quantize_row(j->impl, (char *)j->xq + (size_t)r * xs, j->x + (size_t)r * j->in, j->in, j->uns);
}

static void mm_task(void *arg, int r0, int r1, int c0, int c1) {
    const mm_job_t *j = arg;
    qmat_block(j->impl, j->t, j->y, j->out, j->xq, j->w, j->bias, j->in, r0, r1, c0, c1);
}

static void mm_worker(void *arg, int ith, int nth) {
    (void)ith;
    (void)nth;
    mm_job_t *j = arg;
    matmul_cpu_take_tasks(&j->split, &j->next, mm_task, j);
}

int cpu_qmat_matmul(cpu_qmat_t *q, pool_t *pool, backend_dtype_t dt, float *y, const float *x, const void *w,
                    const float *bias, int n, int in, int out) {
    if (n <= 0) return 0;
    if (cpu_qmat_reserve(q, n, in)) return -1;
    mm_job_t j = {.impl = q->impl, .t = qtype(dt), .y = y, .x = x, .bias = bias, .w = w, .xq = q->xq,
                  .n = n, .in = in, .out = out};
    j.uns = qmat_act_unsigned(q->impl, j.t);
    const int nth = pool_size(pool);
    if (n >= 16 && nth > 1) pool_run(pool, quant_worker, &j);
    else quant_worker(&j, 0, 1);
    /* a task's weight slice ~128 KiB (L2); at least 4 tasks a thread for balance */
    const size_t col_bytes = backend_weight_bytes(dt, QMAT_COLS, in) / QMAT_COLS;
    int tc = (int)((128u << 10) / (col_bytes ? col_bytes : 1));
    tc -= tc % 16;
    if (tc < 16) tc = 16;
    const bool small = (int64_t)n * in * out < (1 << 17) || nth == 1;
    matmul_cpu_split(&j.split, n, out, tc, 16, nth, small);
    atomic_init(&j.next, 0);
    if (small) mm_worker(&j, 0, 1);
    else pool_run(pool, mm_worker, &j);
    return 0;
}

/* ------------------------------------------------------------------ embed */

typedef struct {
    qmat_type_t t;
    float *out;
    const void *table;
    const int32_t *ids;
    int n, dim;
} embed_job_t;

static void embed_worker(void *arg, int ith, int nth) {
    embed_job_t *j = arg;
    const int r0 = (int)((int64_t)j->n * ith / nth), r1 = (int)((int64_t)j->n * (ith + 1) / nth);
    for (int i = r0; i < r1; i++) qmat_dequant_row(j->t, j->table, j->dim, j->ids[i], j->out + (size_t)i * j->dim);
}

void cpu_qmat_embed(pool_t *pool, backend_dtype_t dt, float *out, const void *table, const int32_t *ids, int n,
                    int dim) {
    embed_job_t j = {qtype(dt), out, table, ids, n, dim};
    if ((int64_t)n * dim < 16384 || pool_size(pool) == 1) embed_worker(&j, 0, 1);
    else pool_run(pool, embed_worker, &j);
}
