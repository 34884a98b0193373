/* attention.cuh — what the attention kernels share (attention.cu: kv_write, the
 * CUDA-core decode/prefill kernels, the split combine and the host-side choice of
 * kernels; attn_decode.cu: flash-decoding; attn_prefill_tc.cu: tensor-core prefill).
 *
 * Rules: every kernel reads the paged cache in the layout attention.cu describes
 * ((n_blocks, n_kv_heads, block_size, head_dim), f16 or f32); every kernel runs the
 * same tile test (tile_uniform) with the same qt, so each token is written by exactly
 * one of the decode and prefill kernels; split-decode partials use one layout (part:
 * acc rows (n, n_heads, n_splits, hd), then (max, sum) pairs (n, n_heads, n_splits)),
 * merged by attention_combine_kernel. The choice between kernels is made in one place:
 * attention_run in attention.cu. */
#ifndef KRILL_KERNELS_ATTENTION_CUH
#define KRILL_KERNELS_ATTENTION_CUH

#include "common.cuh"

/* Tile `tile` = tokens [tile*qt, tile*qt + qt) of n. True when it holds at least two
 * tokens, all of one sequence at consecutive positions. */
__device__ __forceinline__ bool tile_uniform(const int32_t *pos, const int32_t *seq, int n, int tile, int qt) {
    if (qt < 2) return false;
    const int t0 = tile * qt, t1 = min(t0 + qt, n);
    if (t1 - t0 < 2) return false;
    const int s0 = seq[t0], p0 = pos[t0];
    for (int t = t0 + 1; t < t1; t++)
        if (seq[t] != s0 || pos[t] != p0 + (t - t0)) return false;
    return true;
}

/* Loads VEC consecutive cache elements as f32: 16-byte loads for the vector variants. */
__device__ __forceinline__ void load_vec(const __half *p, float (&f)[8]) {
    union {
        uint4 u;
        __half2 h2[4];
    } v; /* a union, not a pointer cast: reading a uint4 through __half2* breaks aliasing rules */
    v.u = *(const uint4 *)p;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float2 x = __half22float2(v.h2[i]);
        f[2 * i] = x.x;
        f[2 * i + 1] = x.y;
    }
}
__device__ __forceinline__ void load_vec(const float *p, float (&f)[4]) {
    const float4 x = *(const float4 *)p;
    f[0] = x.x, f[1] = x.y, f[2] = x.z, f[3] = x.w;
}
template <typename T> __device__ __forceinline__ void load_vec(const T *p, float (&f)[1]) { f[0] = to_f32(*p); }

/* Elements per 16-byte vector of T, or 1 for the scalar variant. */
template <typename T, bool VECTOR> struct vec_of { static constexpr int n = VECTOR ? 16 / (int)sizeof(T) : 1; };

/* ---------------------------------------------------------------- the newer kernels' launchers */

/* attn_decode.cu: true when attn_decode_launch handles this geometry: 16-byte rows
 * split into a power of two (<= 32) of lanes, 16-byte aligned caches. */
bool attn_decode_applies(int kdt, int head_dim, const void *kc, const void *vc);
/* Shared memory attn_decode_launch needs (below the 48 KiB default for head_dim <= 256). */
size_t attn_decode_smem(int head_dim);
/* Decode tokens (those not in a uniform tile of qt) of an f16 (kdt KDT_F16) or f32 cache:
 * one block per (token, kv head, group of up to 8 query heads, split); with n_splits
 * > 1 it writes part for attention_combine_kernel. */
cudaError_t attn_decode_launch(float *out, float *part, const float *q, int q_stride, const void *kc, const void *vc,
                               int kdt, const int32_t *pos, const int32_t *seq, const int32_t *table,
                               int table_stride, int n, int n_heads, int n_kv_heads, int hd, int bs, float scale,
                               int qt, int n_splits, int window, cudaStream_t s);

/* attn_prefill_tc.cu: tokens per tile of the tensor-core prefill kernel (64 query rows
 * = tokens x G heads), and its shared memory for head_dim. */
int attn_prefill_tc_qt(int G);
size_t attn_prefill_tc_smem(int head_dim);
/* True when the tensor-core prefill applies: sm >= 80, an f16 cache, head_dim a multiple
 * of 16 and its shared memory within max_smem. */
bool attn_prefill_tc_applies(int sm, int kdt, int head_dim, int max_smem);
/* Uniform tiles of qt = attn_prefill_tc_qt(G) tokens over an f16 cache. */
cudaError_t attn_prefill_tc_launch(float *out, const float *q, int q_stride, const __half *kc, const __half *vc,
                                   const int32_t *pos, const int32_t *seq, const int32_t *table, int table_stride,
                                   int n, int n_heads, int n_kv_heads, int hd, int bs, float scale, int qt,
                                   int window, cudaStream_t s);
/* Raises the TC prefill kernel's dynamic shared-memory limit (attention_init calls it). */
cudaError_t attn_prefill_tc_init(int max_smem_optin);

#endif
