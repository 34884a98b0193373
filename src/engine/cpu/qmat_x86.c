/* qmat_x86.c — the x86 kernels of qmat.h: the tile code of qmat_tile.inc compiled
 * three times, for AVX2 (vpmaddubsw + vpmaddwd, the build's x86-64-v3 baseline),
 * AVX-VNNI (vpdpbusd on ymm) and AVX512-VNNI (vpdpbusd on zmm tiles of 16 / 32
 * columns, ymm for an 8-column rest), through GCC target pragmas so that the binary
 * still runs on CPUs without them; qmat.c picks one at run time from cpuid.
 *
 * The three compute the same exact int32 block sums (no saturation: q4 pairs are at
 * most 2 * 15 * 127, q8 pairs 2 * 128 * 127 after sign transfer, for either plane) and
 * the same float steps, so their outputs are bitwise those of qmat.c's plain C
 * reference. The AVX2 activation quantizer is here too (the same bits as qmat.c's). */
#include "qmat.h"

#include <stddef.h>
#include <stdint.h>

typedef void (*qmat_block_fn)(qmat_type_t t, float *y, int ldy, const void *xq, const void *w, const float *bias,
                              int in, int r0, int r1, int c0, int c1);
qmat_block_fn qmat_x86_kernel(qmat_impl_t impl);
typedef void (*qmat_quant_fn)(void *dst, const float *x, int in, bool unsigned_q);
qmat_quant_fn qmat_x86_quantizer(void);

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__) && defined(__GNUC__)
#include <immintrin.h>

/* ---- AVX2 */
#define QK(name) qk_avx2_##name
#define QK_DOT4(a, u, s) _mm256_add_epi32((a), _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1)))
#define QK_Q8_UNSIGNED 0
#define QK_G_MAX 1
#include "qmat_tile.inc"
#undef QK
#undef QK_DOT4
#undef QK_Q8_UNSIGNED
#undef QK_G_MAX

/* ---- AVX-VNNI (VEX vpdpbusd) */
#pragma GCC push_options
#pragma GCC target("avxvnni")
#define QK(name) qk_avxvnni_##name
#define QK_DOT4(a, u, s) _mm256_dpbusd_avx_epi32((a), (u), (s))
#define QK_Q8_UNSIGNED 1
#define QK_G_MAX 1
#include "qmat_tile.inc"
#undef QK
#undef QK_DOT4
#undef QK_Q8_UNSIGNED
#undef QK_G_MAX
#pragma GCC pop_options

/* ---- AVX512-VNNI (EVEX vpdpbusd: zmm tiles, QK_ZMM; 32 vector registers) */
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni")
#define QK(name) qk_avx512vnni_##name
#define QK_DOT4(a, u, s) _mm256_dpbusd_epi32((a), (u), (s))
#define QK_Q8_UNSIGNED 1
#define QK_G_MAX 2
#define QK_ZMM 1
#include "qmat_tile.inc"
#undef QK
#undef QK_DOT4
#undef QK_Q8_UNSIGNED
#undef QK_G_MAX
#undef QK_ZMM
#pragma GCC pop_options

/* ---- the activation quantizer (AVX2): qmat.c's quantize_ref step for step. max is
 * exact in any order; _mm256_round_ps to nearest is rintf (the default rounding mode);
 * products and differences are the same single f32 operations, no fma. */
static void qmat_x86_quantize(void *dst, const float *x, int in, bool unsigned_q) {
    const int nb = in / QMAT_BLOCK;
    float *dx = dst, *sx = dx + nb;
    uint8_t *q = (uint8_t *)(sx + nb);
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256i flip = _mm256_set1_epi8(unsigned_q ? (char)0x80 : 0);
    for (int b = 0; b < nb; b++) {
        const float *xb = x + b * QMAT_BLOCK;
        __m256 v[4];
        for (int i = 0; i < 4; i++) v[i] = _mm256_loadu_ps(xb + 8 * i);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v[0], absm), _mm256_and_ps(v[1], absm)),
                                 _mm256_max_ps(_mm256_and_ps(v[2], absm), _mm256_and_ps(v[3], absm)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float d1 = amax / 127.0f, id = amax > 1e-30f ? 127.0f / amax : 0.0f, id2 = id * 256.0f;
        const __m256 vd = _mm256_set1_ps(d1), vid = _mm256_set1_ps(id), vid2 = _mm256_set1_ps(id2);
        __m256i i1[4], i2[4], s = _mm256_setzero_si256();
        for (int i = 0; i < 4; i++) {
            const int rn = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
            const __m256 v1 = _mm256_round_ps(_mm256_mul_ps(v[i], vid), rn);
            const __m256 r = _mm256_sub_ps(v[i], _mm256_mul_ps(vd, v1));
            const __m256 v2 = _mm256_min_ps(_mm256_max_ps(_mm256_round_ps(_mm256_mul_ps(r, vid2), rn), lo), hi);
            i1[i] = _mm256_cvtps_epi32(v1);
            i2[i] = _mm256_cvtps_epi32(v2);
            s = _mm256_add_epi32(s, _mm256_add_epi32(_mm256_slli_epi32(i1[i], 8), i2[i]));
        }
        const __m256i p1 = _mm256_packs_epi16(_mm256_packs_epi32(i1[0], i1[1]), _mm256_packs_epi32(i1[2], i1[3]));
        const __m256i p2 = _mm256_packs_epi16(_mm256_packs_epi32(i2[0], i2[1]), _mm256_packs_epi32(i2[2], i2[3]));
        uint8_t *qb = q + (size_t)b * 2 * QMAT_BLOCK;
        _mm256_storeu_si256((__m256i *)qb, _mm256_xor_si256(_mm256_permutevar8x32_epi32(p1, perm), flip));
        _mm256_storeu_si256((__m256i *)(qb + QMAT_BLOCK), _mm256_xor_si256(_mm256_permutevar8x32_epi32(p2, perm), flip));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        dx[b] = d1 * (1.0f / 256.0f);
        sx[b] = dx[b] * (float)_mm_cvtsi128_si32(s4);
    }
}

qmat_quant_fn qmat_x86_quantizer(void) { return qmat_x86_quantize; }

qmat_block_fn qmat_x86_kernel(qmat_impl_t impl) {
    switch (impl) {
    case QMAT_IMPL_AVX2: return qk_avx2_block;
    case QMAT_IMPL_AVXVNNI: return qk_avxvnni_block;
    case QMAT_IMPL_AVX512VNNI: return qk_avx512vnni_block;
    default: return NULL;
    }
}
#else
qmat_block_fn qmat_x86_kernel(qmat_impl_t impl) {
    (void)impl;
    return NULL;
}

qmat_quant_fn qmat_x86_quantizer(void) { return NULL; }
#endif
