/* qmat.h — the CPU backend's quantized weight layouts and integer matmul kernels:
 * (Where this part sits among the others: docs/architecture.md, docs/engine.md.)
 * y (n, out) = x (n, in) W^T (+ bias) with W held as 8-bit (q8) or 4-bit (q4) blocks
 * and x quantized to two int8 planes per row per block of 32 inside the matmul.
 *
 * Layouts (W (out, in): out a multiple of QMAT_COLS, in a multiple of QMAT_BLOCK).
 * W's rows (the output columns c) are grouped in panels of 8; panel p holds columns
 * 8p..8p+7 block by block (b = 0 .. in/32 - 1), each block:
 *   q8 (288 bytes): f16 d[8] | int16 s[8] = sum_k q[c][k] | int8 steps[8][8][4]
 *                   w[c][32b + k] = d[c] * q[c][k]                    (ggml Q8_0's math)
 *   q4 (160 bytes): f16 d[8] | f16 m[8] | uint8 steps[4][8][4]
 *                   w[c][32b + k] = d[c] * q[c][k] + m[c], q in 0..15  (ggml Q4_1's math)
 * A "step" v holds k = 4v..4v+3 of the 8 columns side by side (column c at bytes
 * 4c..4c+3), so one 32-byte load times one broadcast 4-byte group of x is one integer
 * multiply-add per column (vpmaddubsw+vpmaddwd or vpdpbusd) with no horizontal sums;
 * q4 packs step v in the low nibbles and step v + 4 in the high ones.
 *
 * Activations (qmat_quantize_row), per row per block of 32 x[k], in f32 steps without
 * fma (the AVX2 quantizer and the plain C one give the same bytes):
 *   amax = max |x[k]|;  d1 = amax / 127;  id = amax > 1e-30 ? 127 / amax : 0
 *   q1[k] = rint(x[k] * id)                       in -127..127 (round to nearest even)
 *   r[k]  = x[k] - d1 * q1[k]                     (|r| <= ~d1 / 2)
 *   q2[k] = clamp(rint(r[k] * (id * 256)), -127, 127)
 *   d_x = d1 / 256,  s_x = d_x * (float)sum_k (256 q1[k] + q2[k])  (sum exact: < 2^24)
 * so x[k] ~= d_x * (256 q1[k] + q2[k]) within d_x (half a step, a whole one where q2
 * clamps): 15-16 bits per value instead of 8. Row layout: f32 d_x[nb] | f32 s_x[nb] |
 * per block int8 q1[32] then q2[32] (or q + 128 as uint8 for the q8 kernels on VNNI:
 * vpdpbusd wants the unsigned operand); qmat_act_bytes(in) in all.
 *
 * The order every element is computed in (what makes it batch-invariant): for each
 * block b in order, I1 = sum_k q_w q1, I2 = sum_k q_w q2 and I = 256 I1 + I2, exact in
 * int32: |I| <= 32 * 128 * 127 * 257 = 133,689,344 (q8, |q_w| <= 128) or
 * 32 * 15 * 127 * 257 = 15,666,720 (q4) < 2^31, and with unsigned activations the
 * intermediate 256 (I1 + 128 s_w) + I2 + 128 s_w stays under 32 * 128 * 255 * 257 <
 * 2^29 (the kernels subtract 32896 s_w after). Then
 *   acc = fmaf(d_w * d_x, (float)I, acc)            (acc starts at +0)
 *   q4 only: acc = fmaf(m_w, s_x, acc)
 * and y = bias ? acc + bias[c] : acc. Integer sums are exact in any order, so the
 * plain C reference, the AVX2, AVX-VNNI and AVX512-VNNI kernels give the same bits,
 * whatever rows and columns a call or a thread covers. (float)I rounds (|I| may pass
 * 2^24): a relative 2^-24, below the activations' 2^-15. */
#ifndef KRILL_QMAT_H
#define KRILL_QMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

#define QMAT_BLOCK 32 /* k per block */
#define QMAT_COLS 8   /* output columns per panel */
#define QMAT_Q8_BLOCK_BYTES 288
#define QMAT_Q4_BLOCK_BYTES 160

typedef enum { QMAT_Q8 = 0, QMAT_Q4 = 1 } qmat_type_t;

typedef enum {
    QMAT_IMPL_AUTO = 0,  /* the best this CPU has (qmat_impl_best) */
    QMAT_IMPL_REF,       /* plain C: the reference the tests compare against */
    QMAT_IMPL_AVX2,      /* vpmaddubsw + vpmaddwd (x86-64-v3) */
    QMAT_IMPL_AVXVNNI,   /* vpdpbusd, VEX (AVX-VNNI) */
    QMAT_IMPL_AVX512VNNI /* vpdpbusd, EVEX on zmm (16-column lanes) + ymm (AVX512-VNNI + BW + VL) */
} qmat_impl_t;

/* True when this build and this CPU (/proc/cpuinfo's flags, via cpuid) run impl. */
bool qmat_impl_available(qmat_impl_t impl);
qmat_impl_t qmat_impl_best(void);
const char *qmat_impl_name(qmat_impl_t impl); /* "ref" | "avx2" | "avxvnni" | "avx512vnni" */

/* Bytes of W (rows x cols) in the layout; 0 when the shape does not fit it
 * (rows % QMAT_COLS or cols % QMAT_BLOCK). */
size_t qmat_bytes(qmat_type_t t, int64_t rows, int64_t cols);
/* The GGUF types whose blocks map exactly (no rounding) onto layout t. */
bool qmat_exact_from(qmat_type_t t, gguf_ttype_t src);

/* Converts panels [p0, p1) of W (rows x cols, GGUF type src, row-major as the file
 * stores it) into dst (the whole matrix's qmat_bytes). Q8_0 -> q8 and Q4_0/Q4_1 -> q4
 * copy the file's integers and scales; every other supported type is dequantized to
 * f32 and re-quantized per block (q8: d = amax/127 rounded to f16; q4: d = (max -
 * min)/15, m = min, both f16). 0, or -1 for an unsupported type. */
int qmat_pack(qmat_type_t t, void *dst, gguf_ttype_t src, const void *src_data, int64_t rows, int64_t cols,
              int64_t p0, int64_t p1);
/* out (cols) f32 = row r of W, computed as ggml dequantizes Q8_0 / Q4_1 (d*q, d*q + m). */
void qmat_dequant_row(qmat_type_t t, const void *w, int64_t cols, int64_t r, float *out);

/* Bytes of one quantized activation row of `in` floats. */
size_t qmat_act_bytes(int in);
/* x (in floats) -> dst (qmat_act_bytes(in)), the two planes above; unsigned: store
 * q + 128. impl REF: the plain C version, else the AVX2 one where built (same bytes). */
void qmat_quantize_row(qmat_impl_t impl, void *dst, const float *x, int in, bool unsigned_q);
/* Whether the q8 kernels of impl want unsigned activations (qmat_quantize_row). */
bool qmat_act_unsigned(qmat_impl_t impl, qmat_type_t t);

/* y[r][c] for rows [r0, r1) and columns [c0, c1) (c0, c1 multiples of QMAT_COLS, or
 * c1 = out): y row r at y + r*ldy; xq row r at (char *)xq + r * qmat_act_bytes(in),
 * quantized with qmat_act_unsigned(impl, t); bias (out) or NULL. Single-threaded. */
void qmat_block(qmat_impl_t impl, qmat_type_t t, float *y, int ldy, const void *xq, const void *w,
                const float *bias, int in, int r0, int r1, int c0, int c1);

#endif
