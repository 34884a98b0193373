/* attn_prefill_tc.cu — prefill attention on tensor cores: FlashAttention-2 style tiles
 * with WMMA (f16 fragments, f32 accumulate) over the paged f16 KV cache.
 *
 * One block (4 warps) per (uniform tile of qt tokens, kv head g): APT_M = 64 query rows,
 * row r = token t0 + r / G, query head g*G + r % G (the G heads of one kv head share
 * every K/V chunk); qt = 64 / G, rows past qt * G are zero padding. Warp w owns rows
 * 16w .. 16w+15 (Q, S, P and O rows) for the whole kernel. Per chunk of APT_KC = 64
 * positions, from the window's first position to the tile's last (causal block
 * skipping: no chunk past the last row's position is visited; the column tiles and
 * k-steps past the chunk's end are skipped):
 *   1. the K chunk -> shared memory (16-byte loads, rows past the chunk end zeroed, so
 *      no stale or poisoned cache slot reaches an mma);
 *   2. S = Q K^T: per warp 16 x 64 scores, hd/16 mma steps per 16x16 tile, stored to
 *      shared memory (store_matrix_sync: nothing depends on which lane holds which
 *      fragment element);
 *   3. online softmax, one row at a time per warp (2 columns per lane): causal and
 *      window mask, running max/sum per row, P rounded to f16 (the sum adds the rounded
 *      values, so numerator and denominator match), and the warp's O rows rescaled by
 *      exp(m_old - m_new) in shared memory;
 *   4. the V chunk -> the same shared buffer (K is no longer needed);
 *   5. O += P V: per 16-column tile of O, the accumulator is loaded from shared memory,
 *      mma'd with the chunk's P and V, stored back.
 * At the end each row is O / l. Q is rounded to f16 after the scale; the scores, the
 * softmax and O accumulate in f32. Against the f32 CPU reference the rounding of q and
 * p to f16 (11 significant bits) gives ~3e-4 normalised error; the checks allow 1e-3.
 *
 * Shared memory (ldh = hd + 8 halves, rows 16-byte aligned, fragment tiles 32-byte
 * aligned): Q (64, ldh) f16 | K/V (64, ldh) f16 | S (64, 68) f32 | P (64, 72) f16 |
 * O (64, hd + 4) f32 | m, l (64) f32: 62 KiB at hd 64, 94 KiB at 128, 158 KiB at 256
 * (too much for sm_89's 99 KiB: the CUDA-core prefill serves that case). */
#include <mma.h>

#include "attention.cuh"

using namespace nvcuda;

#define APT_THREADS 128 /* 4 warps x 16 query rows */
#define APT_M 64        /* query rows per block */
#define APT_KC 64       /* positions per K/V chunk */
#define APT_LDS (APT_KC + 4)
#define APT_LDP (APT_KC + 8)
#define APT_MAX_HD 256 /* backend.h BACKEND_MAX_HEAD_DIM */

/* Copies rows [c0, c0 + cnt) of kv head g (paged) into dst (APT_KC, ldh); rows past cnt
 * become 0. 16-byte loads: hd is a multiple of 16 halves. */
__device__ __forceinline__ void attn_prefill_tc_load(__half *dst, int ldh, const __half *src, const int32_t *tab,
                                                     int c0, int cnt, int g, int n_kv_heads, int bs, int hd) {
    const int vr = hd / 8; /* uint4 per row */
    for (int i = threadIdx.x; i < APT_KC * vr; i += APT_THREADS) {
        const int j = i / vr, c = (i % vr) * 8, p = c0 + j;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (j < cnt) v = *(const uint4 *)(src + (((int64_t)tab[p / bs] * n_kv_heads + g) * bs + p % bs) * hd + c);
        *(uint4 *)(dst + j * ldh + c) = v;
    }
}

__global__ void __launch_bounds__(APT_THREADS)
    attn_prefill_tc_kernel(float *out, const float *q, int q_stride, const __half *kc, const __half *vc,
                           const int32_t *pos, const int32_t *seq, const int32_t *table, int table_stride, int n,
                           int n_heads, int n_kv_heads, int hd, int bs, float scale, int qt, int window) {
    const int tile = blockIdx.x, g = blockIdx.y;
    if (!tile_uniform(pos, seq, n, tile, qt)) return;
    const int G = n_heads / n_kv_heads, tid = threadIdx.x, lane = tid & 31, wr = (tid >> 5) * 16;
    const int t0 = tile * qt, nt = min(qt, n - t0), R = nt * G, p0 = pos[t0], n_ctx = p0 + nt;
    const int ldh = hd + 8, ldo = hd + 4;
    const int32_t *tab = table + (int64_t)seq[t0] * table_stride;
    extern __shared__ __align__(128) float smem[]; /* wmma wants 32-byte aligned tiles */
    __half *Qs = (__half *)smem;         /* (APT_M, ldh) */
    __half *KV = Qs + APT_M * ldh;       /* (APT_KC, ldh) K, then V */
    float *S = (float *)(KV + APT_KC * ldh); /* (APT_M, APT_LDS) */
    __half *P = (__half *)(S + APT_M * APT_LDS); /* (APT_M, APT_LDP) */
    float *O = (float *)(P + APT_M * APT_LDP);   /* (APT_M, ldo) */
    float *mx = O + APT_M * ldo, *sm = mx + APT_M;

    for (int i = tid; i < APT_M * hd; i += APT_THREADS) {
        const int r = i / hd, d = i % hd;
        const float x = r < R ? q[(int64_t)(t0 + r / G) * q_stride + (int64_t)(g * G + r % G) * hd + d] * scale : 0.0f;
        Qs[r * ldh + d] = __float2half_rn(x);
        O[r * ldo + d] = 0.0f;
    }
    for (int r = tid; r < APT_M; r += APT_THREADS) mx[r] = -INFINITY, sm[r] = 0.0f;

    for (int c0 = window > 0 ? max(0, p0 - window + 1) : 0; c0 < n_ctx; c0 += APT_KC) {
        const int cnt = min(APT_KC, n_ctx - c0), ntile = ceil_div(cnt, 16);
        attn_prefill_tc_load(KV, ldh, kc, tab, c0, cnt, g, n_kv_heads, bs, hd);
        __syncthreads(); /* K chunk (and, the first time, Q, O, m, l) ready */
        for (int ct = 0; ct < ntile; ct++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> s;
            wmma::fill_fragment(s, 0.0f);
            for (int k = 0; k < hd; k += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b; /* K^T */
                wmma::load_matrix_sync(a, Qs + wr * ldh + k, ldh);
                wmma::load_matrix_sync(b, KV + ct * 16 * ldh + k, ldh);
                wmma::mma_sync(s, a, b, s);
            }
            wmma::store_matrix_sync(S + wr * APT_LDS + ct * 16, s, APT_LDS, wmma::mem_row_major);
        }
        __syncwarp(); /* the warp's S rows are visible to all its lanes */
        for (int rr = 0; rr < 16; rr++) {
            const int r = wr + rr, rp = p0 + r / G; /* the row's own position */
            float v[2];
#pragma unroll
            for (int k = 0; k < 2; k++) {
                const int j = lane + 32 * k, p = c0 + j;
                const bool vis = r < R && j < cnt && p <= rp && (window <= 0 || p > rp - window);
                v[k] = vis ? S[r * APT_LDS + j] : -INFINITY;
            }
            const float m_old = mx[r], m_new = fmaxf(m_old, warp_max(fmaxf(v[0], v[1])));
            float e[2];
#pragma unroll
            for (int k = 0; k < 2; k++) {
                const __half h = __float2half_rn(v[k] > -INFINITY ? expf(v[k] - m_new) : 0.0f);
                P[r * APT_LDP + lane + 32 * k] = h;
                e[k] = __half2float(h);
            }
            const float sum = warp_sum(e[0] + e[1]);
            /* 0 on a row's first chunk with keys; a chunk wholly outside the row's window
             * (m still -inf) leaves the row untouched */
            const float c = m_new == -INFINITY ? 1.0f : expf(m_old - m_new);
            for (int d = lane; d < hd; d += 32) O[r * ldo + d] *= c;
            __syncwarp(); /* every lane read mx[r] before lane 0 replaces it */
            if (lane == 0) mx[r] = m_new, sm[r] = sm[r] * c + sum;
        }
        __syncthreads(); /* every warp is done with K */
        attn_prefill_tc_load(KV, ldh, vc, tab, c0, cnt, g, n_kv_heads, bs, hd);
        __syncthreads(); /* V chunk, P and the rescaled O ready */
        for (int dt = 0; dt < hd; dt += 16) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> o;
            wmma::load_matrix_sync(o, O + wr * ldo + dt, ldo, wmma::mem_row_major);
            for (int k = 0; k < ntile; k++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b;
                wmma::load_matrix_sync(a, P + wr * APT_LDP + k * 16, APT_LDP);
                wmma::load_matrix_sync(b, KV + k * 16 * ldh + dt, ldh);
                wmma::mma_sync(o, a, b, o);
            }
            wmma::store_matrix_sync(O + wr * ldo + dt, o, ldo, wmma::mem_row_major);
        }
        __syncthreads(); /* before the next chunk overwrites K/V */
    }
    __syncwarp();
    for (int i = lane; i < 16 * hd; i += 32) {
        const int r = wr + i / hd, d = i % hd;
        if (r < R) out[(int64_t)(t0 + r / G) * n_heads * hd + (int64_t)(g * G + r % G) * hd + d] = O[r * ldo + d] / sm[r];
    }
}

/* ---------------------------------------------------------------- host side */

int attn_prefill_tc_qt(int G) { return APT_M / G; }

size_t attn_prefill_tc_smem(int head_dim) {
    const size_t ldh = (size_t)head_dim + 8, ldo = (size_t)head_dim + 4;
    return 2 * (2 * APT_M * ldh) + 4 * APT_M * APT_LDS + 2 * APT_M * APT_LDP + 4 * APT_M * ldo + 4 * 2 * APT_M;
}

bool attn_prefill_tc_applies(int sm, int kdt, int head_dim, int max_smem) {
    return sm >= 80 && kdt == KDT_F16 && head_dim > 0 && head_dim % 16 == 0 &&
           head_dim <= APT_MAX_HD && attn_prefill_tc_smem(head_dim) <= (size_t)max_smem;
}

cudaError_t attn_prefill_tc_init(int max_smem_optin) {
    const int need = (int)attn_prefill_tc_smem(APT_MAX_HD);
    return cudaFuncSetAttribute(attn_prefill_tc_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                need < max_smem_optin ? need : max_smem_optin);
}

cudaError_t attn_prefill_tc_launch(float *out, const float *q, int q_stride, const __half *kc, const __half *vc,
                                   const int32_t *pos, const int32_t *seq, const int32_t *table, int table_stride,
                                   int n, int n_heads, int n_kv_heads, int hd, int bs, float scale, int qt,
                                   int window, cudaStream_t s) {
    attn_prefill_tc_kernel<<<dim3(ceil_div(n, qt), n_kv_heads), APT_THREADS, attn_prefill_tc_smem(hd), s>>>(
        out, q, q_stride, kc, vc, pos, seq, table, table_stride, n, n_heads, n_kv_heads, hd, bs, scale, qt, window);
    return cudaGetLastError();
}
