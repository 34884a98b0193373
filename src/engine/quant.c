/* quant.c — ggml tensor type table and dequantization to f32 / bf16 / f16.
 *
 * Rules: block layouts are the GGUF/ggml ones (little-endian, packed). Every
 * dequantizer works block by block, converts the f16 scales once per block and
 * multiplies in f32 in the same order as ggml's reference code, so results are
 * bit-exact with it (and with the gguf Python package); contraction into FMA is
 * switched off below for that reason. Inner loops are plain and branch-free so that
 * the compiler vectorises them. Types whose sizes we know but cannot dequantize
 * (IQ*, TQ*, ...) are listed so that the GGUF reader can still validate them. */
#include "quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#if defined(__F16C__)
#include <immintrin.h>
#endif

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define QK 32
#define QKK 256

typedef struct {
    const char *name;
    int64_t blck;   /* elements per block */
    int64_t bytes;  /* bytes per block */
    bool deq;       /* dequantization implemented */
} type_info_t;

/* Indexed by ggml type id. Sizes are those of ggml's C structs (Q8_1 is 36 bytes:
 * two f16 + 32 int8). Removed ids (4, 5, 31-33, 36-38) stay empty. */
static const type_info_t TYPES[] = {
    [0] = {"F32", 1, 4, true},        [1] = {"F16", 1, 2, true},
    [2] = {"Q4_0", QK, 18, true},     [3] = {"Q4_1", QK, 20, true},
    [6] = {"Q5_0", QK, 22, true},     [7] = {"Q5_1", QK, 24, true},
    [8] = {"Q8_0", QK, 34, true},     [9] = {"Q8_1", QK, 36, false},
    [10] = {"Q2_K", QKK, 84, true},   [11] = {"Q3_K", QKK, 110, true},
    [12] = {"Q4_K", QKK, 144, true},  [13] = {"Q5_K", QKK, 176, true},
    [14] = {"Q6_K", QKK, 210, true},  [15] = {"Q8_K", QKK, 292, false},
    [16] = {"IQ2_XXS", QKK, 66, false}, [17] = {"IQ2_XS", QKK, 74, false},
    [18] = {"IQ3_XXS", QKK, 98, false}, [19] = {"IQ1_S", QKK, 50, false},
    [20] = {"IQ4_NL", QK, 18, false},  [21] = {"IQ3_S", QKK, 110, false},
    [22] = {"IQ2_S", QKK, 82, false},  [23] = {"IQ4_XS", QKK, 136, false},
    [24] = {"I8", 1, 1, false},       [25] = {"I16", 1, 2, false},
    [26] = {"I32", 1, 4, false},      [27] = {"I64", 1, 8, false},
    [28] = {"F64", 1, 8, false},      [29] = {"IQ1_M", QKK, 56, false},
    [30] = {"BF16", 1, 2, true},
    [34] = {"TQ1_0", QKK, 54, false}, [35] = {"TQ2_0", QKK, 66, false},
    [39] = {"MXFP4", QK, 17, false},  [40] = {"NVFP4", 64, 36, false},
    [41] = {"Q1_0", 128, 18, false},
};
#define N_TYPES ((int)(sizeof(TYPES) / sizeof(TYPES[0])))

static const type_info_t *type_get(gguf_ttype_t t) {
    int i = (int)t;
    if (i < 0 || i >= N_TYPES || TYPES[i].name == NULL) return NULL;
    return &TYPES[i];
}

bool quant_supported(gguf_ttype_t t) {
    const type_info_t *ti = type_get(t);
    return ti && ti->deq;
}

const char *quant_type_name(gguf_ttype_t t) {
    static _Thread_local char buf[32];
    const type_info_t *ti = type_get(t);
    if (ti) return ti->name;
    snprintf(buf, sizeof(buf), "unknown(%d)", (int)t);
    return buf;
}

int64_t quant_block_elems(gguf_ttype_t t) {
    const type_info_t *ti = type_get(t);
    return ti ? ti->blck : 0;
}

int64_t quant_block_bytes(gguf_ttype_t t) {
    const type_info_t *ti = type_get(t);
    return ti ? ti->bytes : 0;
}

int64_t quant_row_bytes(gguf_ttype_t t, int64_t n) {
    const type_info_t *ti = type_get(t);
    if (!ti || n < 0 || n % ti->blck != 0) return -1;
    int64_t nb = n / ti->blck;
    if (nb > INT64_MAX / ti->bytes) return -1;
    return nb * ti->bytes;
}

/* ---------------------------------------------------------------- conversions */

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float quant_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t u;
    if (exp == 0x1f) { /* inf; NaN keeps its payload and is made quiet, as F16C does */
        u = sign | 0x7f800000u | (man << 13) | (man ? 0x400000u : 0);
    } else if (exp != 0) {
        u = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        u = sign;
    } else { /* subnormal: normalise */
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while ((man & 0x400) == 0);
        u = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    return bits_f32(u);
}

uint16_t quant_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN: keep the top payload bits, force quiet */
        return (uint16_t)(sign | 0x7e00 | ((a >> 13) & 0x3ff));
    if (a >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (a < 0x38800000u) { /* result is subnormal in f16 (or zero) */
        if (a < 0x33000000u) return sign; /* below half the smallest subnormal */
        uint32_t e = a >> 23;
        uint32_t m = (a & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24: value = m * 2^(e-150), unit 2^-24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    /* normal: rebias and round the 13 dropped bits to nearest even */
    uint32_t r = a - 0x38000000u; /* exponent 127 -> 15 */
    r += 0x0fff + ((r >> 13) & 1);
    return (uint16_t)(sign | (r >> 13));
}

float quant_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t quant_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

/* ---------------------------------------------------------------- block readers */

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline float rdh(const uint8_t *p) { return quant_f16_to_f32(rd16(p)); }
static inline uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void deq_f32(const uint8_t *x, float *y, int64_t n) { memcpy(y, x, (size_t)n * 4); }

static void deq_f16(const uint8_t *x, float *y, int64_t n) {
    int64_t i = 0;
#if defined(__F16C__) /* exact conversion in hardware, 8 at a time (little-endian host) */
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(x + 2 * i))));
#endif
    for (; i < n; i++) y[i] = quant_f16_to_f32(rd16(x + 2 * i));
}

static void deq_bf16(const uint8_t *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = bits_f32((uint32_t)rd16(x + 2 * i) << 16);
}

/* block_q4_0: d f16, qs[16] (low nibbles = elements 0..15, high = 16..31) */
static void deq_q4_0(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 18, y += QK) {
        const float d = rdh(x);
        const uint8_t *qs = x + 2;
        for (int j = 0; j < QK / 2; j++) {
            y[j] = (float)((qs[j] & 0x0f) - 8) * d;
            y[j + QK / 2] = (float)((qs[j] >> 4) - 8) * d;
        }
    }
}

/* block_q4_1: d f16, m f16, qs[16] */
static void deq_q4_1(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 20, y += QK) {
        const float d = rdh(x), m = rdh(x + 2);
        const uint8_t *qs = x + 4;
        for (int j = 0; j < QK / 2; j++) {
            y[j] = (float)(qs[j] & 0x0f) * d + m;
            y[j + QK / 2] = (float)(qs[j] >> 4) * d + m;
        }
    }
}

/* block_q5_0: d f16, qh u32 (5th bits), qs[16] */
static void deq_q5_0(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 22, y += QK) {
        const float d = rdh(x);
        const uint32_t qh = rd32(x + 2);
        const uint8_t *qs = x + 6;
        for (int j = 0; j < QK / 2; j++) {
            const int h0 = (int)((qh >> j) << 4) & 0x10;
            const int h1 = (int)(qh >> (j + 12)) & 0x10;
            y[j] = (float)(((qs[j] & 0x0f) | h0) - 16) * d;
            y[j + QK / 2] = (float)(((qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

/* block_q5_1: d f16, m f16, qh u32, qs[16] */
static void deq_q5_1(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 24, y += QK) {
        const float d = rdh(x), m = rdh(x + 2);
        const uint32_t qh = rd32(x + 4);
        const uint8_t *qs = x + 8;
        for (int j = 0; j < QK / 2; j++) {
            const int h0 = (int)((qh >> j) << 4) & 0x10;
            const int h1 = (int)(qh >> (j + 12)) & 0x10;
            y[j] = (float)((qs[j] & 0x0f) | h0) * d + m;
            y[j + QK / 2] = (float)((qs[j] >> 4) | h1) * d + m;
        }
    }
}

/* block_q8_0: d f16, qs[32] int8 */
static void deq_q8_0(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 34, y += QK) {
        const float d = rdh(x);
        const int8_t *qs = (const int8_t *)(x + 2);
        for (int j = 0; j < QK; j++) y[j] = (float)qs[j] * d;
    }
}

/* block_q2_K: scales[16] (low nibble scale, high nibble min), qs[64], d f16, dmin f16 */
static void deq_q2_k(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 84) {
        const uint8_t *sc = x, *q = x + 16;
        const float d = rdh(x + 80), dmin = rdh(x + 82);
        int is = 0;
        for (int n = 0; n < QKK; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; j++) {
                for (int half = 0; half < 2; half++) {
                    const uint8_t s = sc[is++];
                    const float dl = d * (float)(s & 0xf), ml = dmin * (float)(s >> 4);
                    const uint8_t *qq = q + 16 * half;
                    for (int l = 0; l < 16; l++) *y++ = dl * (float)((qq[l] >> shift) & 3) - ml;
                }
                shift += 2;
            }
            q += 32;
        }
    }
}

/* block_q3_K: hmask[32], qs[64], scales[12] (16 6-bit scales), d f16 */
static void deq_q3_k(const uint8_t *x, float *y, int64_t nb) {
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    for (int64_t b = 0; b < nb; b++, x += 110) {
        const uint8_t *hm = x, *q = x + 32;
        const float d_all = rdh(x + 108);
        uint32_t aux[4];
        aux[0] = rd32(x + 96);
        aux[1] = rd32(x + 100);
        aux[2] = rd32(x + 104);
        const uint32_t tmp = aux[2];
        aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
        aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
        aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
        aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
        int8_t scales[16];
        for (int i = 0; i < 4; i++)
            for (int k = 0; k < 4; k++) scales[4 * i + k] = (int8_t)(uint8_t)(aux[i] >> (8 * k));
        int is = 0;
        uint8_t m = 1;
        for (int n = 0; n < QKK; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; j++) {
                for (int half = 0; half < 2; half++) {
                    const float dl = d_all * (float)(scales[is++] - 32);
                    const uint8_t *qq = q + 16 * half, *hh = hm + 16 * half;
                    for (int l = 0; l < 16; l++)
                        *y++ = dl * (float)((int8_t)((qq[l] >> shift) & 3) - ((hh[l] & m) ? 0 : 4));
                }
                shift += 2;
                m <<= 1;
            }
            q += 32;
        }
    }
}

/* 6-bit scale and min j (0..7) of the 12-byte Q4_K/Q5_K scales field */
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* block_q4_K: d f16, dmin f16, scales[12], qs[128] */
static void deq_q4_k(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 144) {
        const float d = rdh(x), dmin = rdh(x + 2);
        const uint8_t *sc = x + 4, *q = x + 16;
        for (int j = 0, is = 0; j < QKK; j += 64, is += 2, q += 32) {
            uint8_t s, mm;
            scale_min_k4(is, sc, &s, &mm);
            const float d1 = d * (float)s, m1 = dmin * (float)mm;
            scale_min_k4(is + 1, sc, &s, &mm);
            const float d2 = d * (float)s, m2 = dmin * (float)mm;
            for (int l = 0; l < 32; l++) y[l] = d1 * (float)(q[l] & 0xf) - m1;
            for (int l = 0; l < 32; l++) y[32 + l] = d2 * (float)(q[l] >> 4) - m2;
            y += 64;
        }
    }
}

/* block_q5_K: d f16, dmin f16, scales[12], qh[32], qs[128] */
static void deq_q5_k(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 176) {
        const float d = rdh(x), dmin = rdh(x + 2);
        const uint8_t *sc = x + 4, *qh = x + 16, *ql = x + 48;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0, is = 0; j < QKK; j += 64, is += 2, ql += 32) {
            uint8_t s, mm;
            scale_min_k4(is, sc, &s, &mm);
            const float d1 = d * (float)s, m1 = dmin * (float)mm;
            scale_min_k4(is + 1, sc, &s, &mm);
            const float d2 = d * (float)s, m2 = dmin * (float)mm;
            for (int l = 0; l < 32; l++) y[l] = d1 * (float)((ql[l] & 0xf) + ((qh[l] & u1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) y[32 + l] = d2 * (float)((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
            y += 64;
            u1 = (uint8_t)(u1 << 2);
            u2 = (uint8_t)(u2 << 2);
        }
    }
}

/* block_q6_K: ql[128], qh[64], scales[16] int8, d f16 */
static void deq_q6_k(const uint8_t *x, float *y, int64_t nb) {
    for (int64_t b = 0; b < nb; b++, x += 210) {
        const float d = rdh(x + 208);
        const uint8_t *ql = x, *qh = x + 128;
        const int8_t *sc = (const int8_t *)(x + 192);
        for (int n = 0; n < QKK; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * (float)sc[is] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

int quant_dequantize_f32(gguf_ttype_t t, const void *src, float *dst, int64_t n) {
    const type_info_t *ti = type_get(t);
    if (!ti || !ti->deq || n < 0 || n % ti->blck != 0) return -1;
    const uint8_t *x = src;
    const int64_t nb = n / ti->blck;
    switch ((int)t) {
    case GGUF_T_F32: deq_f32(x, dst, n); break;
    case GGUF_T_F16: deq_f16(x, dst, n); break;
    case GGUF_T_BF16: deq_bf16(x, dst, n); break;
    case GGUF_T_Q4_0: deq_q4_0(x, dst, nb); break;
    case GGUF_T_Q4_1: deq_q4_1(x, dst, nb); break;
    case GGUF_T_Q5_0: deq_q5_0(x, dst, nb); break;
    case GGUF_T_Q5_1: deq_q5_1(x, dst, nb); break;
    case GGUF_T_Q8_0: deq_q8_0(x, dst, nb); break;
    case GGUF_T_Q2_K: deq_q2_k(x, dst, nb); break;
    case GGUF_T_Q3_K: deq_q3_k(x, dst, nb); break;
    case GGUF_T_Q4_K: deq_q4_k(x, dst, nb); break;
    case GGUF_T_Q5_K: deq_q5_k(x, dst, nb); break;
    case GGUF_T_Q6_K: deq_q6_k(x, dst, nb); break;
    default: return -1;
    }
    return 0;
}

/* Half-precision outputs go through f32 one chunk of whole blocks at a time. */
#define CHUNK 1024 /* a multiple of every supported block size */

static void f32_to_bf16_n(const float *x, uint16_t *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = quant_f32_to_bf16(x[i]);
}

/* Round to nearest even; F16C gives the same bits as quant_f32_to_f16 (NaNs included). */
static void f32_to_f16_n(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(void *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; i < n; i++) y[i] = quant_f32_to_f16(x[i]);
}

/* Dequantizes to a 16-bit type: a copy when the source already is that type, else
 * through f32 one chunk at a time, converted by conv. */
static int dequantize_half(gguf_ttype_t t, const void *src, uint16_t *dst, int64_t n, gguf_ttype_t same,
                           void (*conv)(const float *, uint16_t *, int64_t)) {
    const type_info_t *ti = type_get(t);
    if (!ti || !ti->deq || n < 0 || n % ti->blck != 0) return -1;
    if (t == same) {
        memcpy(dst, src, (size_t)n * 2);
        return 0;
    }
    float buf[CHUNK];
    const uint8_t *x = src;
    for (int64_t i = 0; i < n; i += CHUNK) {
        const int64_t m = n - i < CHUNK ? n - i : CHUNK;
        quant_dequantize_f32(t, x + (i / ti->blck) * ti->bytes, buf, m);
        conv(buf, dst + i, m);
    }
    return 0;
}

int quant_dequantize_bf16(gguf_ttype_t t, const void *src, uint16_t *dst, int64_t n) {
    return dequantize_half(t, src, dst, n, GGUF_T_BF16, f32_to_bf16_n);
}

int quant_dequantize_f16(gguf_ttype_t t, const void *src, uint16_t *dst, int64_t n) {
    return dequantize_half(t, src, dst, n, GGUF_T_F16, f32_to_f16_n);
}
