/* matmul_cpu.c — batch-invariant f32 matmul kernels (matmul_cpu.h states the order
 * every element is computed in; both implementations below keep it exactly).
 *
 * Rules:
 * - One element = one fixed sequence of operations: 8 lane accumulators over k mod 8
 *   (sequential FMAs), a fixed pairwise tree, a sequential FMA tail, then the bias.
 *   Register tiles only decide which elements are computed together, never how.
 * - No compiler licence to reorder: intrinsics and fmaf() only, no -ffast-math
 *   (the build's -std=c11 also keeps -ffp-contract=off for plain expressions).
 * - No allocation, no locking; the caller splits work over threads. */
#include "matmul_cpu.h"

#include <math.h>
#include <stddef.h>

#include "log.h"

#if defined(__AVX2__) && defined(__FMA__)
#define MM_AVX2 1
#include <immintrin.h>
#else
#define MM_AVX2 0
#endif

bool matmul_cpu_has_avx2(void) { return MM_AVX2; }

int matmul_cpu_tile_cols(int in) {
    int c = (192 * 1024 / 4) / (in > 0 ? in : 1);
    c -= c % 24;
    return c < 24 ? 24 : c;
}

void matmul_cpu_split(matmul_cpu_split_t *s, int n, int out, int tile_cols, int unit, int nth, bool small) {
    s->n = n;
    s->out = out;
    s->n_row_blocks = (n + MATMUL_CPU_ROW_BLOCK - 1) / MATMUL_CPU_ROW_BLOCK;
    s->tile_cols = tile_cols;
    while (!small && s->tile_cols > unit && s->n_row_blocks * ((out + s->tile_cols - 1) / s->tile_cols) < 4 * nth)
        s->tile_cols -= unit;
    s->n_col_tiles = (out + s->tile_cols - 1) / s->tile_cols;
    s->n_tasks = s->n_col_tiles * s->n_row_blocks;
    s->cols_outer = out > n;
}

void matmul_cpu_take_tasks(const matmul_cpu_split_t *s, atomic_int *next, matmul_cpu_task_fn fn, void *arg) {
    for (;;) {
        const int t = atomic_fetch_add_explicit(next, 1, memory_order_relaxed);
        if (t >= s->n_tasks) break;
        const int rb = s->cols_outer ? t % s->n_row_blocks : t / s->n_col_tiles;
        const int ct = s->cols_outer ? t / s->n_row_blocks : t % s->n_col_tiles;
        const int r0 = rb * MATMUL_CPU_ROW_BLOCK, c0 = ct * s->tile_cols;
        fn(arg, r0, r0 + MATMUL_CPU_ROW_BLOCK < s->n ? r0 + MATMUL_CPU_ROW_BLOCK : s->n, c0,
           c0 + s->tile_cols < s->out ? c0 + s->tile_cols : s->out);
    }
}

/* ------------------------------------------------------------------ portable C */

/* The reference order for one element (matmul_cpu.h). */
static inline float mm_dot_generic(const float *x, const float *w, int in) {
    float l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const int in8 = in & ~7;
    for (int k = 0; k < in8; k += 8)
        for (int j = 0; j < 8; j++) l[j] = fmaf(x[k + j], w[k + j], l[j]);
    float s = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
    for (int k = in8; k < in; k++) s = fmaf(x[k], w[k], s);
    return s;
}

static void mm_block_generic(float *y, int ldy, const float *x, int ldx, const float *w, const float *bias, int in,
                             int r0, int r1, int c0, int c1) {
    for (int r = r0; r < r1; r++)
        for (int c = c0; c < c1; c++) {
            float s = mm_dot_generic(x + (size_t)r * ldx, w + (size_t)c * in, in);
            y[(size_t)r * ldy + c] = bias ? s + bias[c] : s;
        }
}

/* ------------------------------------------------------------------ AVX2 + FMA */

#if MM_AVX2
/* Keeps a loaded vector in a register: without it some -mtune settings (znver3) fold
 * a load into every FMA that uses it, 16 loads per 12 FMAs instead of 7 (load-bound,
 * ~70 % of peak). Codegen only; the arithmetic is the same. */
#define MM_IN_REGISTER(v) __asm__("" : "+x"(v))

/* R x C register tile: y[r][c] for r < R, c < C (x rows ldx apart, W rows `in` apart).
 * Always inlined with constant R, C so the accumulators live in registers. Loads the
 * operand of the smaller side once per k step and streams the other: 4 x 3 holds
 * 3 W vectors + 1 x vector + 12 accumulators = 16 ymm. */
static inline __attribute__((always_inline)) void mm_tile(const int R, const int C, float *y, int ldy, const float *x,
                                                          int ldx, const float *w, const float *bias, int in) {
    __m256 acc[4][8];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
    const int in8 = in & ~7;
    for (int k = 0; k < in8; k += 8) {
        if (R > C) {
            __m256 wv[8];
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
                wv[c] = _mm256_loadu_ps(w + (size_t)c * in + k);
                MM_IN_REGISTER(wv[c]);
            }
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m256 xv = _mm256_loadu_ps(x + (size_t)r * ldx + k);
                MM_IN_REGISTER(xv);
#pragma GCC unroll 8
                for (int c = 0; c < C; c++) acc[r][c] = _mm256_fmadd_ps(xv, wv[c], acc[r][c]);
            }
        } else {
            __m256 xv[4];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                xv[r] = _mm256_loadu_ps(x + (size_t)r * ldx + k);
                MM_IN_REGISTER(xv[r]);
            }
#pragma GCC unroll 8
            for (int c = 0; c < C; c++) {
                __m256 wv = _mm256_loadu_ps(w + (size_t)c * in + k);
                MM_IN_REGISTER(wv);
#pragma GCC unroll 4
                for (int r = 0; r < R; r++) acc[r][c] = _mm256_fmadd_ps(xv[r], wv, acc[r][c]);
            }
        }
    }
    /* The tree for up to 4 accumulators at once: hadd(hadd(a0, a1), hadd(a2, a3)) holds
     * (l0+l1)+(l2+l3) of a0..a3 in lanes 0..3 and (l4+l5)+(l6+l7) in lanes 4..7. */
    float s[4][8] __attribute__((aligned(16)));
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int c = 0; c < C; c += 4) {
            const __m256 a0 = acc[r][c];
            const __m256 a1 = c + 1 < C ? acc[r][c + 1] : a0;
            const __m256 a2 = c + 2 < C ? acc[r][c + 2] : a0;
            const __m256 a3 = c + 3 < C ? acc[r][c + 3] : a0;
            const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
            _mm_store_ps(&s[r][c], _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
        }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) {
            float v = s[r][c];
            for (int k = in8; k < in; k++) v = fmaf(x[(size_t)r * ldx + k], w[(size_t)c * in + k], v);
            y[(size_t)r * ldy + c] = bias ? v + bias[c] : v;
        }
}

typedef void (*mm_tile_fn)(float *y, int ldy, const float *x, int ldx, const float *w, const float *bias, int in);

#define MM_TILE(R, C)                                                                                            \
    static void mm_tile_##R##x##C(float *y, int ldy, const float *x, int ldx, const float *w, const float *bias, \
                                  int in) {                                                                      \
        mm_tile(R, C, y, ldy, x, ldx, w, bias, in);                                                              \
    }
MM_TILE(4, 1) MM_TILE(4, 2) MM_TILE(4, 3)
MM_TILE(3, 1) MM_TILE(3, 2) MM_TILE(3, 3) MM_TILE(3, 4)
MM_TILE(2, 1) MM_TILE(2, 2) MM_TILE(2, 3) MM_TILE(2, 4) MM_TILE(2, 5) MM_TILE(2, 6)
MM_TILE(1, 1) MM_TILE(1, 2) MM_TILE(1, 3) MM_TILE(1, 4) MM_TILE(1, 5) MM_TILE(1, 6) MM_TILE(1, 7) MM_TILE(1, 8)
#undef MM_TILE

/* mm_tiles[R][C]; widest C per R: 12 accumulators (8 for one row: memory-bound). */
static const mm_tile_fn mm_tiles[5][9] = {
    [1] = {NULL, mm_tile_1x1, mm_tile_1x2, mm_tile_1x3, mm_tile_1x4, mm_tile_1x5, mm_tile_1x6, mm_tile_1x7,
           mm_tile_1x8},
    [2] = {NULL, mm_tile_2x1, mm_tile_2x2, mm_tile_2x3, mm_tile_2x4, mm_tile_2x5, mm_tile_2x6},
    [3] = {NULL, mm_tile_3x1, mm_tile_3x2, mm_tile_3x3, mm_tile_3x4},
    [4] = {NULL, mm_tile_4x1, mm_tile_4x2, mm_tile_4x3},
};
static const int mm_tile_cols[5] = {0, 8, 6, 4, 3};

/* Rows [r, r + R) over columns [c0, c1) in tiles of the widest C, then the rest. */
static void mm_rows_avx2(int R, float *y, int ldy, const float *x, int ldx, const float *w, const float *bias, int in,
                         int r, int c0, int c1) {
    const int C = mm_tile_cols[R];
    const mm_tile_fn f = mm_tiles[R][C];
    float *yr = y + (size_t)r * ldy;
    const float *xr = x + (size_t)r * ldx;
    int c = c0;
    for (; c + C <= c1; c += C) f(yr + c, ldy, xr, ldx, w + (size_t)c * in, bias ? bias + c : NULL, in);
    if (c < c1) mm_tiles[R][c1 - c](yr + c, ldy, xr, ldx, w + (size_t)c * in, bias ? bias + c : NULL, in);
}

static void mm_block_avx2(float *y, int ldy, const float *x, int ldx, const float *w, const float *bias, int in,
                          int r0, int r1, int c0, int c1) {
    const int n = r1 - r0;
    if (n <= 3) {
        /* decode-sized calls: one pass over W's slice with all rows */
        mm_rows_avx2(n, y, ldy, x, ldx, w, bias, in, r0, c0, c1);
        return;
    }
    int r = r0;
    for (; r + 4 <= r1; r += 4) mm_rows_avx2(4, y, ldy, x, ldx, w, bias, in, r, c0, c1);
    if (r < r1) mm_rows_avx2(r1 - r, y, ldy, x, ldx, w, bias, in, r, c0, c1);
}
#endif

/* ------------------------------------------------------------------ entry */

void matmul_cpu_block(matmul_cpu_impl_t impl, float *y, int ldy, const float *x, int ldx, const float *w,
                      const float *bias, int in, int r0, int r1, int c0, int c1) {
    if (r1 <= r0 || c1 <= c0) return;
#if MM_AVX2
    if (impl != MATMUL_CPU_GENERIC) {
        mm_block_avx2(y, ldy, x, ldx, w, bias, in, r0, r1, c0, c1);
        return;
    }
#else
    CHECK(impl != MATMUL_CPU_AVX2);
#endif
    mm_block_generic(y, ldy, x, ldx, w, bias, in, r0, r1, c0, c1);
}
