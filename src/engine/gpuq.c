/* gpuq.c — GGUF blocks repacked into the CUDA backend's native weight layouts (gpuq.h
 * has the layouts and rules), and their host dequantizer.
 *
 * The repack only moves bits: quants to element order, scales after them. The host
 * dequantizer repeats quant.c's float operations in its order (FMA contraction off, as
 * there), so a test can demand equality with quant_dequantize_f32 on the original. */
#include "gpuq.h"

#include <string.h>

#include "quant.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

static const struct {
    gguf_ttype_t t;
    const char *name;
    int blk; /* elements per scale block of the source */
} gpuq_types[GPUQ_N] = {
    [GPUQ_Q8_0] = {GGUF_T_Q8_0, "q8_0", 32}, [GPUQ_Q4_0] = {GGUF_T_Q4_0, "q4_0", 32},
    [GPUQ_Q4_1] = {GGUF_T_Q4_1, "q4_1", 32}, [GPUQ_Q4_K] = {GGUF_T_Q4_K, "q4_k", 256},
    [GPUQ_Q6_K] = {GGUF_T_Q6_K, "q6_k", 256},
};

int gpuq_from_gguf(gguf_ttype_t t) {
    for (int q = 0; q < GPUQ_N; q++)
        if (gpuq_types[q].t == t) return q;
    return -1;
}

gguf_ttype_t gpuq_gguf(gpuq_type_t q) { return gpuq_types[q].t; }
const char *gpuq_name(gpuq_type_t q) { return (unsigned)q < GPUQ_N ? gpuq_types[q].name : "unknown"; }

/* Bytes of the quant and scale parts of a row (unpadded). */
static size_t gpuq_raw_bytes(gpuq_type_t q, int64_t K) {
    switch (q) {
    case GPUQ_Q8_0: return (size_t)(K + K / 16);
    case GPUQ_Q4_0: return (size_t)(K / 2 + K / 16);
    case GPUQ_Q4_1: return (size_t)(K / 2 + K / 8);
    case GPUQ_Q4_K: return (size_t)(K / 2 + K / 64 + K / 16);
    case GPUQ_Q6_K: return (size_t)(3 * K / 4 + K / 128 + K / 16);
    default: return 0;
    }
}

size_t gpuq_row_bytes(gpuq_type_t q, int64_t cols) {
    if ((unsigned)q >= GPUQ_N || cols <= 0 || cols % gpuq_types[q].blk) return 0;
    return (gpuq_raw_bytes(q, cols) + 15) & ~(size_t)15;
}

static uint16_t gpuq_rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static void gpuq_wr16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
/* element k's 4-bit value into a nibble plane */
static void gpuq_put4(uint8_t *nib, int64_t k, unsigned v) { nib[k / 2] |= (uint8_t)((v & 15) << (4 * (k & 1))); }

/* quant.c's scale_min_k4: the 6-bit scale and min j of a Q4_K block's 12 bytes */
static void gpuq_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void gpuq_repack_row(gpuq_type_t q, const uint8_t *x, uint8_t *row, int64_t K) {
    uint8_t *nib = row;
    switch (q) {
    case GPUQ_Q8_0:
        for (int64_t b = 0; b < K / 32; b++, x += 34) {
            gpuq_wr16(row + K + 2 * b, gpuq_rd16(x));
            memcpy(row + 32 * b, x + 2, 32);
        }
        break;
    case GPUQ_Q4_0:
    case GPUQ_Q4_1: {
        const int hdr = q == GPUQ_Q4_0 ? 2 : 4;
        for (int64_t b = 0; b < K / 32; b++, x += 16 + hdr) {
            gpuq_wr16(row + K / 2 + 2 * b, gpuq_rd16(x));
            if (q == GPUQ_Q4_1) gpuq_wr16(row + K / 2 + K / 16 + 2 * b, gpuq_rd16(x + 2));
            for (int j = 0; j < 16; j++) {
                gpuq_put4(nib, 32 * b + j, x[hdr + j] & 15);
                gpuq_put4(nib, 32 * b + j + 16, x[hdr + j] >> 4);
            }
        }
        break;
    }
    case GPUQ_Q4_K: {
        uint8_t *dm = row + K / 2, *sc = dm + K / 64, *mn = sc + K / 32;
        for (int64_t b = 0; b < K / 256; b++, x += 144) {
            gpuq_wr16(dm + 4 * b, gpuq_rd16(x));
            gpuq_wr16(dm + 4 * b + 2, gpuq_rd16(x + 2));
            for (int j = 0; j < 8; j++) gpuq_scale_min_k4(j, x + 4, &sc[8 * b + j], &mn[8 * b + j]);
            /* 4 chunks of 64: 32 bytes, low nibbles = elements 0..31, high = 32..63 */
            const uint8_t *qs = x + 16;
            for (int c = 0; c < 4; c++)
                for (int l = 0; l < 32; l++) {
                    gpuq_put4(nib, 256 * b + 64 * c + l, qs[32 * c + l] & 15);
                    gpuq_put4(nib, 256 * b + 64 * c + 32 + l, qs[32 * c + l] >> 4);
                }
        }
        break;
    }
    case GPUQ_Q6_K: {
        uint8_t *hi = row + K / 2, *d = hi + K / 4, *sc = d + K / 128;
        for (int64_t b = 0; b < K / 256; b++, x += 210) {
            const uint8_t *ql = x, *qh = x + 128;
            gpuq_wr16(d + 2 * b, gpuq_rd16(x + 208));
            memcpy(sc + 16 * b, x + 192, 16);
            for (int n = 0; n < 2; n++, ql += 64, qh += 32)
                for (int l = 0; l < 32; l++) {
                    /* quant.c's deq_q6_k: the four elements l, l+32, l+64, l+96 of this half */
                    const unsigned v[4] = {(ql[l] & 0xfu) | (((qh[l] >> 0) & 3u) << 4),
                                           (ql[l + 32] & 0xfu) | (((qh[l] >> 2) & 3u) << 4),
                                           (ql[l] >> 4) | (((qh[l] >> 4) & 3u) << 4),
                                           (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3u) << 4)};
                    for (int j = 0; j < 4; j++) {
                        const int64_t k = 256 * b + 128 * n + 32 * j + l;
                        gpuq_put4(nib, k, v[j] & 15);
                        hi[k / 4] |= (uint8_t)((v[j] >> 4) << (2 * (k & 3)));
                    }
                }
        }
        break;
    }
    default: break;
    }
}

int gpuq_repack(gpuq_type_t q, const void *src, void *dst, int64_t rows, int64_t cols) {
    const size_t rb = gpuq_row_bytes(q, cols);
    const int64_t sb = quant_row_bytes(gpuq_types[(unsigned)q < GPUQ_N ? q : 0].t, cols);
    if (!rb || sb <= 0 || rows < 0) return -1;
    memset(dst, 0, rb * (size_t)rows); /* nibble planes are OR-ed in; padding stays 0 */
    for (int64_t r = 0; r < rows; r++)
        gpuq_repack_row(q, (const uint8_t *)src + r * sb, (uint8_t *)dst + (size_t)r * rb, cols);
    return 0;
}

int gpuq_dequant_row(gpuq_type_t q, const void *rowv, int64_t K, float *y) {
    if (!gpuq_row_bytes(q, K)) return -1;
    const uint8_t *row = rowv;
    for (int64_t k = 0; k < K; k++) {
        const unsigned n4 = (row[k / 2] >> (4 * (k & 1))) & 15;
        switch (q) {
        case GPUQ_Q8_0: y[k] = (float)(int8_t)row[k] * quant_f16_to_f32(gpuq_rd16(row + K + 2 * (k / 32))); break;
        case GPUQ_Q4_0: y[k] = (float)((int)n4 - 8) * quant_f16_to_f32(gpuq_rd16(row + K / 2 + 2 * (k / 32))); break;
        case GPUQ_Q4_1:
            y[k] = (float)n4 * quant_f16_to_f32(gpuq_rd16(row + K / 2 + 2 * (k / 32))) +
                   quant_f16_to_f32(gpuq_rd16(row + K / 2 + K / 16 + 2 * (k / 32)));
            break;
        case GPUQ_Q4_K: {
            const uint8_t *dm = row + K / 2, *sc = dm + K / 64, *mn = sc + K / 32;
            const float d = quant_f16_to_f32(gpuq_rd16(dm + 4 * (k / 256)));
            const float dmin = quant_f16_to_f32(gpuq_rd16(dm + 4 * (k / 256) + 2));
            const float d1 = d * (float)sc[k / 32], m1 = dmin * (float)mn[k / 32];
            y[k] = d1 * (float)n4 - m1;
            break;
        }
        case GPUQ_Q6_K: {
            const uint8_t *hi = row + K / 2, *dp = hi + K / 4;
            const int8_t *sc = (const int8_t *)(dp + K / 128);
            const int v = (int)(n4 | (((hi[k / 4] >> (2 * (k & 3))) & 3u) << 4)) - 32;
            y[k] = quant_f16_to_f32(gpuq_rd16(dp + 2 * (k / 256))) * (float)sc[k / 16] * (float)v;
            break;
        }
        default: return -1;
        }
    }
    return 0;
}
