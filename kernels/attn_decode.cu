/* attn_decode.cu — flash-decoding over the paged KV cache: the decode tokens of a batch
 * (those outside uniform prefill tiles, see attention.cuh), built to stream K/V at the
 * copy bandwidth.
 *
 * One block (4 warps) per (token t, kv head g, group of up to ADEC_HG query heads of g,
 * split). The split owns positions [p_begin, p_end) of the token's context (sliding
 * window applied), a multiple of 64 positions long. Inside the block:
 *   - lanes form groups of L = head_dim / VEC (VEC = 16 bytes of cache elements: 8 f16
 *     or 4 f32): one group takes one position, each lane one 16-byte K load and one
 *     16-byte V load; consecutive groups take consecutive positions, so a warp reads
 *     whole contiguous rows (one block's rows of one kv head are contiguous);
 *   - each group walks its positions ADEC_UNROLL at a time: all 2 x UNROLL loads are
 *     issued before any use (bytes in flight hide the HBM latency), then for every
 *     query head of the block the dot with q (from shared memory) is reduced with
 *     log2(L) xor shuffles;
 *   - every group keeps its own online softmax (running max m, sum l) and its slice of
 *     the unnormalised output acc[head][VEC] in registers: no block barrier and no
 *     cross-group exchange in the main loop. The G heads of the kv head share the K/V
 *     registers (GQA: one read of K/V for up to 8 heads);
 *   - at the end the groups of a warp merge with xor shuffles, the 4 warps through
 *     shared memory (m, l, acc triples, weights exp(m_i - M)); one split writes the
 *     normalised output, several write part for attention_combine_kernel.
 * Numerics as attention.cu: q * scale in f32, K/V widened to f32, expf, f32 sums. */
#include "attention.cuh"

#define ADEC_THREADS 128
#define ADEC_HG 8     /* most query heads per block: HG x VEC accumulators per lane */
#define ADEC_UNROLL 4 /* positions per group per step: 2 x 4 16-byte loads in flight per lane */
#define ADEC_CH 64    /* split lengths are multiples of this */

/* Weight of a partial whose running max is m when the merged max is M (0 for empty). */
__device__ __forceinline__ float attn_decode_weight(float m, float M) { return m == -INFINITY ? 0.0f : expf(m - M); }

template <typename T, int HG>
__global__ void __launch_bounds__(ADEC_THREADS, HG <= 4 ? 4 : 2) /* <= 128 registers for HG <= 4: 4 blocks per SM */
    attn_decode_kernel(float *out, float *part, const float *q, int q_stride, const T *kc, const T *vc,
                       const int32_t *pos, const int32_t *seq, const int32_t *table, int table_stride, int n,
                       int n_heads, int n_kv_heads, int hd, int bs, float scale, int qt, int n_splits, int window) {
    constexpr int VEC = 16 / (int)sizeof(T);
    const int t = blockIdx.x, split = blockIdx.z, G = n_heads / n_kv_heads, n_hg = ceil_div(G, HG);
    const int g = blockIdx.y / n_hg, h0 = (blockIdx.y % n_hg) * HG, nhb = min(HG, G - h0);
    if (tile_uniform(pos, seq, n, t / qt, qt)) return; /* a prefill kernel's token */
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int L = hd / VEC, gpw = 32 / L, grp = warp * gpw + lane / L, gl = lane % L, n_groups = 4 * gpw;
    extern __shared__ float smem[];
    float *qs = smem;                 /* (HG, hd) query * scale */
    float *red = qs + HG * hd;        /* (4 warps, HG, hd + 2): acc, m, l per warp */

    const int n_ctx = pos[t] + 1, p_lo = window > 0 ? max(0, n_ctx - window) : 0;
    const int chunk = ceil_div(ceil_div(n_ctx - p_lo, n_splits), ADEC_CH) * ADEC_CH;
    const int p_begin = p_lo + split * chunk, p_end = min(n_ctx, p_begin + chunk);
    const int32_t *tab = table + (int64_t)seq[t] * table_stride;
    const int hq0 = g * G + h0; /* first query head of the block */
    const float *qrow = q + (int64_t)t * q_stride + (int64_t)hq0 * hd;
    for (int i = tid; i < nhb * hd; i += ADEC_THREADS) qs[i] = qrow[i] * scale;
    __syncthreads();

    float acc[HG][VEC], m[HG], l[HG];
#pragma unroll
    for (int h = 0; h < HG; h++) {
        m[h] = -INFINITY, l[h] = 0.0f;
#pragma unroll
        for (int e = 0; e < VEC; e++) acc[h][e] = 0.0f;
    }
    /* every lane runs the same trip count: the shuffles stay converged */
    for (int base = p_begin; base < p_end; base += n_groups * ADEC_UNROLL) {
        float kf[ADEC_UNROLL][VEC], vf[ADEC_UNROLL][VEC];
        bool ok[ADEC_UNROLL];
#pragma unroll
        for (int u = 0; u < ADEC_UNROLL; u++) {
            const int p = base + u * n_groups + grp;
            ok[u] = p < p_end;
            if (ok[u]) {
                const int64_t row = (((int64_t)tab[p / bs] * n_kv_heads + g) * bs + p % bs) * hd + gl * VEC;
                load_vec(kc + row, kf[u]);
                load_vec(vc + row, vf[u]);
            } else {
#pragma unroll
                for (int e = 0; e < VEC; e++) kf[u][e] = 0.0f, vf[u][e] = 0.0f;
            }
        }
#pragma unroll
        for (int h = 0; h < HG; h++) {
            if (h >= nhb) break; /* uniform across the block */
            const float *qh = qs + h * hd + gl * VEC;
            float s[ADEC_UNROLL];
#pragma unroll
            for (int u = 0; u < ADEC_UNROLL; u++) {
                float dot = 0.0f;
#pragma unroll
                for (int e = 0; e < VEC; e++) dot += qh[e] * kf[u][e];
                /* an xor butterfly leaves the same sum in every lane of the group */
                for (int off = L >> 1; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
                s[u] = ok[u] ? dot : -INFINITY;
            }
            float m_new = m[h];
#pragma unroll
            for (int u = 0; u < ADEC_UNROLL; u++) m_new = fmaxf(m_new, s[u]);
            if (m_new == -INFINITY) continue; /* this group has no position yet */
            const float corr = attn_decode_weight(m[h], m_new);
            l[h] *= corr;
#pragma unroll
            for (int e = 0; e < VEC; e++) acc[h][e] *= corr;
#pragma unroll
            for (int u = 0; u < ADEC_UNROLL; u++) {
                const float w = ok[u] ? expf(s[u] - m_new) : 0.0f;
                l[h] += w;
#pragma unroll
                for (int e = 0; e < VEC; e++) acc[h][e] += w * vf[u][e];
            }
            m[h] = m_new;
        }
    }

    /* merge the groups of each warp (lanes gl of groups lane / L hold the same slice) */
    for (int off = L; off < 32; off <<= 1) {
#pragma unroll
        for (int h = 0; h < HG; h++) {
            if (h >= nhb) break;
            const float mo = __shfl_xor_sync(0xffffffffu, m[h], off), lo = __shfl_xor_sync(0xffffffffu, l[h], off);
            const float M = fmaxf(m[h], mo), a = attn_decode_weight(m[h], M), b = attn_decode_weight(mo, M);
#pragma unroll
            for (int e = 0; e < VEC; e++) {
                const float ao = __shfl_xor_sync(0xffffffffu, acc[h][e], off);
                acc[h][e] = acc[h][e] * a + ao * b;
            }
            l[h] = l[h] * a + lo * b;
            m[h] = M;
        }
    }
    if (lane < L) {
#pragma unroll
        for (int h = 0; h < HG; h++) {
            if (h >= nhb) break;
            float *r = red + (warp * HG + h) * (hd + 2);
#pragma unroll
            for (int e = 0; e < VEC; e++) r[gl * VEC + e] = acc[h][e];
            if (gl == 0) r[hd] = m[h], r[hd + 1] = l[h];
        }
    }
    __syncthreads();
    /* merge the 4 warps: thread per (head, dim) */
    float *pml = part + (int64_t)n * n_heads * n_splits * hd;
    for (int i = tid; i < nhb * hd; i += ADEC_THREADS) {
        const int h = i / hd, d = i % hd;
        float M = -INFINITY;
        for (int w = 0; w < 4; w++) M = fmaxf(M, red[(w * HG + h) * (hd + 2) + hd]);
        float a = 0.0f, sum = 0.0f;
        for (int w = 0; w < 4; w++) {
            const float *r = red + (w * HG + h) * (hd + 2), wt = attn_decode_weight(r[hd], M);
            a += wt * r[d];
            sum += wt * r[hd + 1];
        }
        if (n_splits == 1) {
            out[(int64_t)t * n_heads * hd + (int64_t)(hq0 + h) * hd + d] = a / sum; /* sum > 0: own position */
        } else {
            const int64_t r = ((int64_t)t * n_heads + hq0 + h) * n_splits + split;
            part[r * hd + d] = a; /* an empty split writes m = -inf, l = 0, acc = 0 */
            if (d == 0) pml[2 * r] = M, pml[2 * r + 1] = sum;
        }
    }
}

/* ---------------------------------------------------------------- host side */

bool attn_decode_applies(int kdt, int head_dim, const void *kc, const void *vc) {
    const int es = kdt == KDT_F16 ? 2 : kdt == KDT_F32 ? 4 : 0;
    if (!es || head_dim <= 0 || (head_dim * es) % 16) return false;
    const int L = head_dim * es / 16;
    return L <= 32 && (L & (L - 1)) == 0 && ((uintptr_t)kc | (uintptr_t)vc) % 16 == 0;
}

size_t attn_decode_smem(int head_dim) {
    return sizeof(float) * (size_t)(ADEC_HG * head_dim + 4 * ADEC_HG * (head_dim + 2));
}

/* One instantiation per (cache type, query heads per block). */
template <typename T>
static void attn_decode_go(int hg, dim3 grid, size_t sm, cudaStream_t s, float *out, float *part, const float *q,
                           int q_stride, const void *kc, const void *vc, const int32_t *pos, const int32_t *seq,
                           const int32_t *table, int table_stride, int n, int n_heads, int n_kv_heads, int hd, int bs,
                           float scale, int qt, int n_splits, int window) {
    const T *k = (const T *)kc, *v = (const T *)vc;
    if (hg == 1)
        attn_decode_kernel<T, 1><<<grid, ADEC_THREADS, sm, s>>>(out, part, q, q_stride, k, v, pos, seq, table,
                                                                table_stride, n, n_heads, n_kv_heads, hd, bs, scale, qt,
                                                                n_splits, window);
    else if (hg == 4)
        attn_decode_kernel<T, 4><<<grid, ADEC_THREADS, sm, s>>>(out, part, q, q_stride, k, v, pos, seq, table,
                                                                table_stride, n, n_heads, n_kv_heads, hd, bs, scale, qt,
                                                                n_splits, window);
    else
        attn_decode_kernel<T, ADEC_HG><<<grid, ADEC_THREADS, sm, s>>>(out, part, q, q_stride, k, v, pos, seq, table,
                                                                      table_stride, n, n_heads, n_kv_heads, hd, bs,
                                                                      scale, qt, n_splits, window);
}

cudaError_t attn_decode_launch(float *out, float *part, const float *q, int q_stride, const void *kc, const void *vc,
                               int kdt, const int32_t *pos, const int32_t *seq, const int32_t *table,
                               int table_stride, int n, int n_heads, int n_kv_heads, int hd, int bs, float scale,
                               int qt, int n_splits, int window, cudaStream_t s) {
    const int G = n_heads / n_kv_heads, hg = G <= 1 ? 1 : G <= 4 ? 4 : ADEC_HG;
    const dim3 grid(n, n_kv_heads * ceil_div(G, hg), n_splits);
    const size_t sm = attn_decode_smem(hd);
    if (kdt == KDT_F16)
        attn_decode_go<__half>(hg, grid, sm, s, out, part, q, q_stride, kc, vc, pos, seq, table, table_stride, n,
                               n_heads, n_kv_heads, hd, bs, scale, qt, n_splits, window);
    else if (kdt == KDT_F32)
        attn_decode_go<float>(hg, grid, sm, s, out, part, q, q_stride, kc, vc, pos, seq, table, table_stride, n,
                              n_heads, n_kv_heads, hd, bs, scale, qt, n_splits, window);
    else
        return cudaErrorInvalidValue;
    return cudaGetLastError();
}
