/* qweights.cuh — device readers of the native GGUF weight layouts (src/engine/gpuq.h;
 * docs/cuda.md, "Device weight formats"), shared by the kernels of qmatmul.cu.
 *
 * Rules:
 * - qweights_dequant8<Q> gives 8 consecutive weights of one row, starting at a
 *   multiple of 8, as f32 values that are exactly quant.c's dequantization rounded to
 *   bf16 (what the bf16 weight path holds): quant.c's float operations in its order,
 *   with the products and sums pinned to round-to-nearest (__fmul_rn & co.) so that
 *   nvcc cannot contract them into FMAs that quant.c does not do.
 * - One aligned load per plane per call: 8 bytes (Q8_0), 4 bytes (nibbles), 2 bytes
 *   (Q6_K's top bits); the scales are byte/half loads that stay in L1 across a warp. */
#ifndef KRILL_KERNELS_QWEIGHTS_CUH
#define KRILL_KERNELS_QWEIGHTS_CUH

#include <string.h>

#include "common.cuh"

extern "C" {
#include "gpuq.h"
}

#ifdef __CUDA_ARCH__
__device__ __forceinline__ float qweights_mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float qweights_add(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float qweights_sub(float a, float b) { return __fsub_rn(a, b); }
#else /* the CPU emulator (tests/gpu/emu): g++ without FMA contraction */
__device__ __forceinline__ float qweights_mul(float a, float b) { return a * b; }
__device__ __forceinline__ float qweights_add(float a, float b) { return a + b; }
__device__ __forceinline__ float qweights_sub(float a, float b) { return a - b; }
#endif

/* An f16 stored little-endian at p (2-byte aligned), exactly widened. */
__device__ __forceinline__ float qweights_h2f(const uint8_t *p) {
    const unsigned short u = *(const unsigned short *)p;
    __half h;
    memcpy(&h, &u, 2);
    return __half2float(h);
}

__device__ __forceinline__ float qweights_bf(float v) { return to_f32(from_f32<__nv_bfloat16>(v)); }

/* w[e] = weight k + e of the row at `row` (K = cols, k % 8 == 0). */
template <int Q>
__device__ __forceinline__ void qweights_dequant8(const uint8_t *__restrict__ row, int K, int k, float (&w)[8]) {
    if (Q == GPUQ_Q8_0) {
        const uint2 v = __ldg((const uint2 *)(row + k));
        const float d = qweights_h2f(row + K + 2 * (k / 32));
#pragma unroll
        for (int e = 0; e < 8; e++) {
            const int8_t q = (int8_t)(((e < 4 ? v.x : v.y) >> (8 * (e & 3))) & 0xff);
            w[e] = qweights_bf(qweights_mul((float)q, d));
        }
    } else if (Q == GPUQ_Q4_0 || Q == GPUQ_Q4_1) {
        const unsigned v = __ldg((const unsigned *)(row + k / 2));
        const float d = qweights_h2f(row + K / 2 + 2 * (k / 32));
        const float m = Q == GPUQ_Q4_1 ? qweights_h2f(row + K / 2 + K / 16 + 2 * (k / 32)) : 0.0f;
#pragma unroll
        for (int e = 0; e < 8; e++) {
            const int n = (int)((v >> (4 * e)) & 15);
            w[e] = Q == GPUQ_Q4_0 ? qweights_bf(qweights_mul((float)(n - 8), d))
                                  : qweights_bf(qweights_add(qweights_mul((float)n, d), m));
        }
    } else if (Q == GPUQ_Q4_K) {
        const unsigned v = __ldg((const unsigned *)(row + k / 2));
        const uint8_t *dm = row + K / 2, *sc = dm + K / 64, *mn = sc + K / 32;
        const float d = qweights_h2f(dm + 4 * (k / 256)), dmin = qweights_h2f(dm + 4 * (k / 256) + 2);
        const float d1 = qweights_mul(d, (float)sc[k / 32]), m1 = qweights_mul(dmin, (float)mn[k / 32]);
#pragma unroll
        for (int e = 0; e < 8; e++)
            w[e] = qweights_bf(qweights_sub(qweights_mul(d1, (float)((v >> (4 * e)) & 15)), m1));
    } else { /* GPUQ_Q6_K */
        const unsigned v = __ldg((const unsigned *)(row + k / 2));
        const uint8_t *hi = row + K / 2, *dp = hi + K / 4;
        const unsigned h = *(const unsigned short *)(hi + k / 4);
        const int8_t sc = ((const int8_t *)(dp + K / 128))[k / 16];
        const float s = qweights_mul(qweights_h2f(dp + 2 * (k / 256)), (float)sc);
#pragma unroll
        for (int e = 0; e < 8; e++) {
            const int q = (int)(((v >> (4 * e)) & 15) | (((h >> (2 * e)) & 3) << 4)) - 32;
            w[e] = qweights_bf(qweights_mul(s, (float)q));
        }
    }
}

#endif
