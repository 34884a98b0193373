/* qmat.c — quantized weight layouts (packing from GGUF types, dequantizing a row),
 * activation quantization, the plain C reference kernel and the run-time choice of
 * the x86 kernels (qmat_x86.c). qmat.h states the layouts and the order each output
 * element is computed in; every kernel keeps it exactly.
 *
 * Rules: integer sums are exact (int32; no kernel saturates: |q_w| <= 15 or 128,
 * |q1|, |q2| <= 127, I = 256 I1 + I2 within qmat.h's bound), the float steps are the ones qmat.h lists, in that order, with
 * fmaf() and plain f32 products (-std=c11 keeps -ffp-contract=off). No allocation
 * except one scratch row set per qmat_pack call (load time). */
#include "qmat.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "quant.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

/* ------------------------------------------------------------------ x86 kernels */

/* qmat_x86.c: one entry per instruction set; NULL when not built. */
typedef void (*qmat_block_fn)(qmat_type_t t, float *y, int ldy, const void *xq, const void *w, const float *bias,
                              int in, int r0, int r1, int c0, int c1);
qmat_block_fn qmat_x86_kernel(qmat_impl_t impl);

#if defined(__x86_64__)
/* AVX-VNNI (VEX vpdpbusd): CPUID.(EAX=7, ECX=1):EAX bit 4, read directly because
 * __builtin_cpu_supports("avxvnni") is missing from older compilers (clang 14, the
 * fuzz build's); the VEX encoding also needs what AVX2 needs (YMM state). */
static bool cpu_has_avxvnni(void) {
    unsigned a, b, c, d;
    return __builtin_cpu_supports("avx2") && __get_cpuid_count(7, 1, &a, &b, &c, &d) && ((a >> 4) & 1u);
}
#endif

bool qmat_impl_available(qmat_impl_t impl) {
    switch (impl) {
    case QMAT_IMPL_AUTO:
    case QMAT_IMPL_REF: return true;
    default: break;
    }
    if (!qmat_x86_kernel(impl)) return false;
#if defined(__x86_64__)
    __builtin_cpu_init();
    switch (impl) {
    case QMAT_IMPL_AVX2: return __builtin_cpu_supports("avx2");
    case QMAT_IMPL_AVXVNNI: return cpu_has_avxvnni();
    case QMAT_IMPL_AVX512VNNI:
        return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bw");
    default: return false;
    }
#else
    return false;
#endif
}

qmat_impl_t qmat_impl_best(void) {
    /* EVEX first: vpdpbusd on zmm, two panels a register, 4 x 32 tiles in 32
     * registers (~1.6x the ymm tiles' GOP/s in test_qmatmul); then VEX AVX-VNNI,
     * then AVX2 */
    static const qmat_impl_t order[] = {QMAT_IMPL_AVX512VNNI, QMAT_IMPL_AVXVNNI, QMAT_IMPL_AVX2};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (qmat_impl_available(order[i])) return order[i];
    return QMAT_IMPL_REF;
}

const char *qmat_impl_name(qmat_impl_t impl) {
    switch (impl) {
    case QMAT_IMPL_AUTO: return qmat_impl_name(qmat_impl_best());
    case QMAT_IMPL_REF: return "ref";
    case QMAT_IMPL_AVX2: return "avx2";
    case QMAT_IMPL_AVXVNNI: return "avxvnni";
    case QMAT_IMPL_AVX512VNNI: return "avx512vnni";
    }
    return "unknown";
}

/* ------------------------------------------------------------------ layouts */

static size_t block_bytes(qmat_type_t t) { return t == QMAT_Q8 ? QMAT_Q8_BLOCK_BYTES : QMAT_Q4_BLOCK_BYTES; }

size_t qmat_bytes(qmat_type_t t, int64_t rows, int64_t cols) {
    if (rows <= 0 || cols <= 0 || rows % QMAT_COLS || cols % QMAT_BLOCK) return 0;
    return (size_t)(rows / QMAT_COLS) * (size_t)(cols / QMAT_BLOCK) * block_bytes(t);
}

bool qmat_exact_from(qmat_type_t t, gguf_ttype_t src) {
    if (t == QMAT_Q8) return src == GGUF_T_Q8_0;
    return src == GGUF_T_Q4_0 || src == GGUF_T_Q4_1;
}

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline void wr16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* One column's block before it is interleaved: integers, f16 scale, f16 min (q4). */
typedef struct {
    int q[QMAT_BLOCK];
    uint16_t d, m;
} col_block_t;

/* Re-quantizes 32 floats (the generic path). */
static void requant(qmat_type_t t, const float *x, col_block_t *cb) {
    if (t == QMAT_Q8) {
        float amax = 0.0f;
        for (int k = 0; k < QMAT_BLOCK; k++) amax = fmaxf(amax, fabsf(x[k]));
        cb->d = quant_f32_to_f16(amax / 127.0f);
        const float d = quant_f16_to_f32(cb->d), id = d > 0.0f ? 1.0f / d : 0.0f;
        for (int k = 0; k < QMAT_BLOCK; k++) {
            const float v = rintf(x[k] * id); /* NaN (inf/nan weights) -> 0 */
            cb->q[k] = v >= 127.0f ? 127 : v <= -127.0f ? -127 : v == v ? (int)v : 0;
        }
        cb->m = 0;
        return;
    }
    float mn = x[0], mx = x[0];
    for (int k = 1; k < QMAT_BLOCK; k++) {
        mn = fminf(mn, x[k]);
        mx = fmaxf(mx, x[k]);
    }
    cb->d = quant_f32_to_f16((mx - mn) / 15.0f);
    cb->m = quant_f32_to_f16(mn);
    const float d = quant_f16_to_f32(cb->d), m = quant_f16_to_f32(cb->m), id = d > 0.0f ? 1.0f / d : 0.0f;
    for (int k = 0; k < QMAT_BLOCK; k++) {
        const float v = rintf((x[k] - m) * id);
        cb->q[k] = v >= 15.0f ? 15 : v > 0.0f ? (int)v : 0; /* NaN -> 0 */
    }
}

/* Block b of one source row, exactly when the types map, else through f32 (row_f32
 * holds the whole row dequantized). */
static void col_block(qmat_type_t t, gguf_ttype_t src, const uint8_t *row, const float *row_f32, int64_t b,
                      col_block_t *cb) {
    if (t == QMAT_Q8 && src == GGUF_T_Q8_0) {
        const uint8_t *blk = row + b * 34;
        cb->d = rd16(blk);
        cb->m = 0;
        for (int k = 0; k < QMAT_BLOCK; k++) cb->q[k] = (int8_t)blk[2 + k];
        return;
    }
    if (t == QMAT_Q4 && (src == GGUF_T_Q4_1 || src == GGUF_T_Q4_0)) {
        const bool q41 = src == GGUF_T_Q4_1;
        const uint8_t *blk = row + b * (q41 ? 20 : 18), *qs = blk + (q41 ? 4 : 2);
        cb->d = rd16(blk);
        /* Q4_0: w = d (q - 8) = d q + (-8 d); -8 d is exact in f16 unless it overflows */
        const float m0 = -8.0f * quant_f16_to_f32(cb->d);
        cb->m = q41 ? rd16(blk + 2) : quant_f32_to_f16(m0);
        if (!q41 && !isfinite(quant_f16_to_f32(cb->m))) {
            requant(t, row_f32 + b * QMAT_BLOCK, cb);
            return;
        }
        for (int k = 0; k < 16; k++) {
            cb->q[k] = qs[k] & 15;
            cb->q[k + 16] = qs[k] >> 4;
        }
        return;
    }
    requant(t, row_f32 + b * QMAT_BLOCK, cb);
}

int qmat_pack(qmat_type_t t, void *dst, gguf_ttype_t src, const void *src_data, int64_t rows, int64_t cols,
              int64_t p0, int64_t p1) {
    const int64_t rb = quant_row_bytes(src, cols), nb = cols / QMAT_BLOCK;
    if (!quant_supported(src) || rb <= 0 || !qmat_bytes(t, rows, cols)) return -1;
    const bool exact = qmat_exact_from(t, src);
    /* the generic path (and Q4_0's overflow fallback) reads the row as f32 */
    float *f = malloc(sizeof(float) * (size_t)cols * QMAT_COLS);
    if (!f) return -1;
    const size_t bb = block_bytes(t);
    int rc = 0;
    for (int64_t p = p0; p < p1 && !rc; p++) {
        const uint8_t *rows8 = (const uint8_t *)src_data + p * QMAT_COLS * rb;
        for (int c = 0; c < QMAT_COLS && !rc; c++)
            if (!exact || src == GGUF_T_Q4_0)
                rc = quant_dequantize_f32(src, rows8 + c * rb, f + (size_t)c * cols, cols);
        for (int64_t b = 0; b < nb && !rc; b++) {
            uint8_t *blk = (uint8_t *)dst + ((size_t)p * (size_t)nb + (size_t)b) * bb;
            memset(blk, 0, bb);
            for (int c = 0; c < QMAT_COLS; c++) {
                col_block_t cb;
                col_block(t, src, rows8 + c * rb, f + (size_t)c * cols, b, &cb);
                wr16(blk + 2 * c, cb.d);
                if (t == QMAT_Q8) {
                    int s = 0;
                    for (int k = 0; k < QMAT_BLOCK; k++) {
                        s += cb.q[k];
                        blk[32 + (k / 4) * 32 + c * 4 + k % 4] = (uint8_t)(int8_t)cb.q[k];
                    }
                    wr16(blk + 16 + 2 * c, (uint16_t)(int16_t)s);
                } else {
                    wr16(blk + 16 + 2 * c, cb.m);
                    for (int k = 0; k < 16; k++)
                        blk[32 + (k / 4) * 32 + c * 4 + k % 4] = (uint8_t)(cb.q[k] | (cb.q[k + 16] << 4));
                }
            }
        }
    }
    free(f);
    return rc;
}

/* q[c][k] of one packed block. */
static inline int packed_q(qmat_type_t t, const uint8_t *blk, int c, int k) {
    if (t == QMAT_Q8) return (int8_t)blk[32 + (k / 4) * 32 + c * 4 + k % 4];
    const uint8_t v = blk[32 + ((k % 16) / 4) * 32 + c * 4 + k % 4];
    return k < 16 ? v & 15 : v >> 4;
}

void qmat_dequant_row(qmat_type_t t, const void *w, int64_t cols, int64_t r, float *out) {
    const int64_t nb = cols / QMAT_BLOCK, p = r / QMAT_COLS;
    const int c = (int)(r % QMAT_COLS);
    const size_t bb = block_bytes(t);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = (const uint8_t *)w + ((size_t)p * (size_t)nb + (size_t)b) * bb;
        const float d = quant_f16_to_f32(rd16(blk + 2 * c));
        float *o = out + b * QMAT_BLOCK;
        if (t == QMAT_Q8)
            for (int k = 0; k < QMAT_BLOCK; k++) o[k] = (float)packed_q(t, blk, c, k) * d;
        else {
            const float m = quant_f16_to_f32(rd16(blk + 16 + 2 * c));
            for (int k = 0; k < QMAT_BLOCK; k++) o[k] = (float)packed_q(t, blk, c, k) * d + m;
        }
    }
}

/* ------------------------------------------------------------------ activations */

size_t qmat_act_bytes(int in) {
    const size_t nb = (size_t)in / QMAT_BLOCK;
    return (nb * 2 * sizeof(float) + 2 * (size_t)in + 63) & ~(size_t)63;
}

bool qmat_act_unsigned(qmat_impl_t impl, qmat_type_t t) {
    if (impl == QMAT_IMPL_AUTO) impl = qmat_impl_best();
    return t == QMAT_Q8 && (impl == QMAT_IMPL_AVXVNNI || impl == QMAT_IMPL_AVX512VNNI);
}

/* qmat_x86.c: the AVX2 quantizer (the same bits as quantize_ref); NULL when not built. */
typedef void (*qmat_quant_fn)(void *dst, const float *x, int in, bool unsigned_q);
qmat_quant_fn qmat_x86_quantizer(void);

/* qmat.h's two planes, in plain C: the definition the AVX2 version keeps bit for bit. */
static void quantize_ref(void *dst, const float *x, int in, bool unsigned_q) {
    const int nb = in / QMAT_BLOCK;
    float *dx = dst, *sx = dx + nb;
    uint8_t *q = (uint8_t *)(sx + nb);
    for (int b = 0; b < nb; b++) {
        const float *xb = x + b * QMAT_BLOCK;
        uint8_t *q1 = q + (size_t)b * 2 * QMAT_BLOCK, *q2 = q1 + QMAT_BLOCK;
        float amax = 0.0f;
        for (int k = 0; k < QMAT_BLOCK; k++) amax = fmaxf(amax, fabsf(xb[k]));
        const float d1 = amax / 127.0f, id = amax > 1e-30f ? 127.0f / amax : 0.0f, id2 = id * 256.0f;
        int s = 0;
        for (int k = 0; k < QMAT_BLOCK; k++) {
            const float v1 = rintf(xb[k] * id);      /* |v1| <= 127: |x| <= amax */
            const float r = xb[k] - d1 * v1;         /* |r| <= ~d1/2 */
            const float v2 = fminf(fmaxf(rintf(r * id2), -127.0f), 127.0f);
            const int i1 = (int)v1, i2 = (int)v2;
            s += 256 * i1 + i2;
            q1[k] = (uint8_t)(unsigned_q ? i1 + 128 : (int8_t)i1);
            q2[k] = (uint8_t)(unsigned_q ? i2 + 128 : (int8_t)i2);
        }
        dx[b] = d1 * (1.0f / 256.0f);
        sx[b] = dx[b] * (float)s; /* |s| <= 32 * 32639 < 2^24: exact */
    }
}

void qmat_quantize_row(qmat_impl_t impl, void *dst, const float *x, int in, bool unsigned_q) {
    /* built only into x86-64-v3 builds, which need AVX2 to run at all */
    const qmat_quant_fn f = impl == QMAT_IMPL_REF ? NULL : qmat_x86_quantizer();
    if (f) f(dst, x, in, unsigned_q);
    else quantize_ref(dst, x, in, unsigned_q);
}

/* ------------------------------------------------------------------ reference */

static void block_ref(qmat_type_t t, float *y, int ldy, const void *xq, const void *w, const float *bias, int in,
                      int r0, int r1, int c0, int c1, bool unsigned_q) {
    const int nb = in / QMAT_BLOCK;
    const size_t xs = qmat_act_bytes(in), bb = block_bytes(t);
    for (int r = r0; r < r1; r++) {
        const float *dx = (const float *)((const char *)xq + (size_t)r * xs), *sx = dx + nb;
        const uint8_t *q = (const uint8_t *)(sx + nb);
        for (int c = c0; c < c1; c++) {
            const int p = c / QMAT_COLS, cc = c % QMAT_COLS;
            float acc = 0.0f;
            for (int b = 0; b < nb; b++) {
                const uint8_t *blk = (const uint8_t *)w + ((size_t)p * (size_t)nb + (size_t)b) * bb;
                const uint8_t *q1 = q + (size_t)b * 2 * QMAT_BLOCK, *q2 = q1 + QMAT_BLOCK;
                int32_t i1 = 0, i2 = 0;
                for (int k = 0; k < QMAT_BLOCK; k++) {
                    const int x1 = unsigned_q ? (int)q1[k] - 128 : (int8_t)q1[k];
                    const int x2 = unsigned_q ? (int)q2[k] - 128 : (int8_t)q2[k];
                    i1 += packed_q(t, blk, cc, k) * x1;
                    i2 += packed_q(t, blk, cc, k) * x2;
                }
                const int32_t isum = 256 * i1 + i2; /* exact: qmat.h's bound */
                const float dw = quant_f16_to_f32(rd16(blk + 2 * cc));
                acc = fmaf(dw * dx[b], (float)isum, acc);
                if (t == QMAT_Q4) acc = fmaf(quant_f16_to_f32(rd16(blk + 16 + 2 * cc)), sx[b], acc);
            }
            y[(size_t)r * ldy + c] = bias ? acc + bias[c] : acc;
        }
    }
}

void qmat_block(qmat_impl_t impl, qmat_type_t t, float *y, int ldy, const void *xq, const void *w,
                const float *bias, int in, int r0, int r1, int c0, int c1) {
    if (r1 <= r0 || c1 <= c0) return;
    if (impl == QMAT_IMPL_AUTO) impl = qmat_impl_best();
    CHECK(c0 % QMAT_COLS == 0 && c1 % QMAT_COLS == 0 && in % QMAT_BLOCK == 0);
    if (impl == QMAT_IMPL_REF) {
        block_ref(t, y, ldy, xq, w, bias, in, r0, r1, c0, c1, false);
        return;
    }
    const qmat_block_fn f = qmat_x86_kernel(impl);
    CHECK(f != NULL);
    f(t, y, ldy, xq, w, bias, in, r0, r1, c0, c1);
}
