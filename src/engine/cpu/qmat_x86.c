/* qmat_x86.c — the x86 kernels of qmat.h: the tile code of qmat_tile.inc compiled
 * three times, for AVX2 (vpmaddubsw + vpmaddwd, the build's x86-64-v3 baseline),
 * AVX-VNNI and AVX512-VNNI (vpdpbusd on ymm, through GCC target pragmas so that the
 * binary still runs on CPUs without them; qmat.c picks one at run time from cpuid).
 *
 * The three compute the same exact int32 block sums (no saturation: q4 pairs are at
 * most 2 * 15 * 127, q8 pairs 2 * 128 * 127 after sign transfer) and the same float
 * steps, so their outputs are bitwise those of qmat.c's plain C reference. */
#include "qmat.h"

#include <stddef.h>
#include <stdint.h>

typedef void (*qmat_block_fn)(qmat_type_t t, float *y, int ldy, const void *xq, const void *w, const float *bias,
                              int in, int r0, int r1, int c0, int c1);
qmat_block_fn qmat_x86_kernel(qmat_impl_t impl);

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

/* ---- AVX512-VNNI (EVEX vpdpbusd on ymm: 32 vector registers) */
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni")
#define QK(name) qk_avx512vnni_##name
#define QK_DOT4(a, u, s) _mm256_dpbusd_epi32((a), (u), (s))
#define QK_Q8_UNSIGNED 1
#define QK_G_MAX 2
#include "qmat_tile.inc"
#undef QK
#undef QK_DOT4
#undef QK_Q8_UNSIGNED
#undef QK_G_MAX
#pragma GCC pop_options

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
#endif
