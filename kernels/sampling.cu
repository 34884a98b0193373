/* sampling.cu — token selection on the GPU: greedy argmax over logits rows, and
 * temperature sampling as the argmax of logit / T + Gumbel noise (gumbel.h, the same
 * function the host sampler uses), so such steps download n int32 ids instead of
 * n * vocab floats.
 *
 * Parallelisation: one block (512 threads) per row; each thread scans a strided slice
 * keeping (best value, lowest index), then a warp-shuffle and shared-memory tree
 * reduction with the same rule. NaN never wins (comparisons with NaN are false); a
 * row of only NaN gives index 0. */
#include "common.cuh"
#include "gumbel.h"

__device__ __forceinline__ void argmax_merge(float &bv, int &bi, float v, int i) {
    if (v > bv || (v == bv && i < bi)) bv = v, bi = i;
}

/* Block-wide (value, lowest index) reduction; thread 0's result is valid. */
__device__ __forceinline__ void argmax_reduce(float &bv, int &bi) {
    for (int off = 16; off > 0; off >>= 1) {
        const float v = __shfl_xor_sync(0xffffffffu, bv, off);
        const int i = __shfl_xor_sync(0xffffffffu, bi, off);
        argmax_merge(bv, bi, v, i);
    }
    __shared__ float sv[32];
    __shared__ int si[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads(); /* a previous call may still be reading sv/si */
    if (lane == 0) sv[warp] = bv, si[warp] = bi;
    __syncthreads();
    if (warp == 0) {
        bv = lane < (int)(blockDim.x >> 5) ? sv[lane] : -INFINITY;
        bi = lane < (int)(blockDim.x >> 5) ? si[lane] : 0x7fffffff;
        for (int off = 16; off > 0; off >>= 1) {
            const float v = __shfl_xor_sync(0xffffffffu, bv, off);
            const int i = __shfl_xor_sync(0xffffffffu, bi, off);
            argmax_merge(bv, bi, v, i);
        }
    }
}

/* Token i of a row whose packed mask (grammar.h: bit i of word i / 32) is given counts
 * as -inf unless its bit is set: constrained decoding without downloading the logits. */
__device__ __forceinline__ float masked(const uint32_t *mask, const float *row, int i) {
    return !mask || ((mask[i >> 5] >> (i & 31)) & 1u) ? row[i] : -INFINITY;
}

/* Row r: inv_temp == NULL or inv_temp[r] == 0 -> plain argmax; else the Gumbel-max draw
 * for keys[r], or the plain argmax when no score is finite (sampler_gumbel's rule).
 * masks (n, words) or NULL: each row's allowed tokens (sampler_pick_masked). */
__global__ void argmax_kernel(int32_t *out, const float *logits, int vocab, const float *inv_temp,
                              const uint64_t *keys, const uint32_t *masks, int words) {
    const float *row = logits + (int64_t)blockIdx.x * vocab;
    const uint32_t *mask = masks ? masks + (int64_t)blockIdx.x * words : nullptr;
    const float it = inv_temp ? inv_temp[blockIdx.x] : 0.0f; /* the same for the whole block */
    if (it > 0.0f) {
        const uint64_t key = keys[blockIdx.x];
        float gv = -INFINITY;
        int gi = 0x7fffffff;
        for (int i = threadIdx.x; i < vocab; i += blockDim.x)
            argmax_merge(gv, gi, gumbel_score(masked(mask, row, i), it, key, (uint32_t)i), i);
        argmax_reduce(gv, gi);
        __shared__ bool drawn;
        if (threadIdx.x == 0) {
            drawn = gv > -INFINITY;
            if (drawn) out[blockIdx.x] = gi;
        }
        __syncthreads();
        if (drawn) return;
    }
    float bv = -INFINITY;
    int bi = 0x7fffffff;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) argmax_merge(bv, bi, masked(mask, row, i), i);
    argmax_reduce(bv, bi);
    if (threadIdx.x == 0) out[blockIdx.x] = bi == 0x7fffffff ? 0 : bi;
}

extern "C" cudaError_t argmax_launch(int32_t *out_ids, const float *logits, int n, int vocab, const float *inv_temp,
                                     const uint64_t *keys, cudaStream_t s) {
    if (n <= 0) return cudaSuccess;
    argmax_kernel<<<n, 512, 0, s>>>(out_ids, logits, vocab, inv_temp, keys, nullptr, 0);
    return cudaGetLastError();
}

extern "C" cudaError_t argmax_masked_launch(int32_t *out_ids, const float *logits, int n, int vocab,
                                            const float *inv_temp, const uint64_t *keys, const uint32_t *masks,
                                            cudaStream_t s) {
    if (n <= 0) return cudaSuccess;
    argmax_kernel<<<n, 512, 0, s>>>(out_ids, logits, vocab, inv_temp, keys, masks, (vocab + 31) / 32);
    return cudaGetLastError();
}
