/* matmul_cpu.h — the CPU backend's batch-invariant f32 matmul kernels:
 * (Where this part sits among the others: docs/architecture.md.)
 * y (n, out) = x (n, in) W^T (+ bias), W (out, in) row-major, as the file stores it.
 *
 * The rule these kernels keep: every output element y[r][c] is computed by ONE fixed
 * sequence of floating-point operations that depends only on x[r][:], W[c][:], bias[c]
 * and `in` — never on n, on the row's or column's position in a block, on which
 * kernel shape covers it, or on the thread that runs it. So a request's activations
 * (and its greedy or seeded-sampled tokens) are bitwise the same whatever else shares
 * its batch. The order, with in8 = in rounded down to a multiple of 8:
 *
 *   lane[j] = 0 for j < 8;  for k = 0, 8, ..., in8 - 8:  lane[j] = fma(x[k+j], w[k+j], lane[j])
 *   s = ((lane0 + lane1) + (lane2 + lane3)) + ((lane4 + lane5) + (lane6 + lane7))
 *   for k = in8 .. in-1:  s = fma(x[k], w[k], s)
 *   y = bias ? s + bias[c] : s
 *
 * The AVX2+FMA kernels compute exactly this (lane j of a ymm accumulator; the tree is
 * what two rounds of hadd and a 128-bit add compute); the portable C kernel computes
 * it with fmaf() and is bitwise identical on any machine with IEEE binary32 and a
 * correctly rounded fmaf (C11 requires it). Weights need no packing: a register tile of
 * R rows x C columns streams R rows of x and C rows of W along k, 12 accumulators for
 * the 4 x 3 tile used by most rows. */
#ifndef KRILL_MATMUL_CPU_H
#define KRILL_MATMUL_CPU_H

#include <stdatomic.h>
#include <stdbool.h>

typedef enum {
    MATMUL_CPU_AUTO = 0,  /* AVX2 when compiled in, else generic (same bits either way) */
    MATMUL_CPU_AVX2,      /* only when matmul_cpu_has_avx2() */
    MATMUL_CPU_GENERIC,   /* portable C, fmaf */
} matmul_cpu_impl_t;

/* True when this build has the AVX2+FMA kernels (compiled with -mavx2 -mfma). */
bool matmul_cpu_has_avx2(void);

/* y[r][c] for rows [r0, r1) and columns [c0, c1): y row r at y + r*ldy, x row r at
 * x + r*ldx (in floats), W row c at w + c*in; bias (out) or NULL. Single-threaded;
 * callers split (rows, columns) however they like — the bits do not change. */
void matmul_cpu_block(matmul_cpu_impl_t impl, float *y, int ldy, const float *x, int ldx, const float *w,
                      const float *bias, int in, int r0, int r1, int c0, int c1);

/* Tiling the backend uses to split a matmul into tasks: rows per task and output
 * columns per task (a multiple of 24, so W's slice of a task, cols x in floats, stays
 * around 192 KiB, in L2). Performance only; the bits do not depend on them. */
#define MATMUL_CPU_ROW_BLOCK 64
int matmul_cpu_tile_cols(int in);

/* A matmul of n rows x out columns as tasks of MATMUL_CPU_ROW_BLOCK rows x tile_cols
 * columns, numbered so that the smaller operand is re-read once per tile of the other
 * (column tiles outer when W is the larger: each W slice comes from memory once). Also
 * used by the quantized matmul (cpu_qmat.c). */
typedef struct {
    int n, out, tile_cols, n_col_tiles, n_row_blocks, n_tasks;
    bool cols_outer;
} matmul_cpu_split_t;
/* tile_cols: the widest tile (a multiple of unit); unless small, narrowed by unit while
 * there would be fewer than 4 tasks per thread (nth threads; dynamic balance). */
void matmul_cpu_split(matmul_cpu_split_t *s, int n, int out, int tile_cols, int unit, int nth, bool small);
/* Takes tasks from *next (shared by the threads of one call) until none is left,
 * calling fn(arg, r0, r1, c0, c1) for each (rows [r0, r1), columns [c0, c1)). */
typedef void (*matmul_cpu_task_fn)(void *arg, int r0, int r1, int c0, int c1);
void matmul_cpu_take_tasks(const matmul_cpu_split_t *s, atomic_int *next, matmul_cpu_task_fn fn, void *arg);

#endif
