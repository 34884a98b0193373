/* attention.cu — the paged KV cache: kv_write, and ragged-batch causal attention with
 * GQA, an online softmax and f32 accumulation.
 *
 * Cache layout (backend.h): per layer K and V are (n_blocks, n_kv_heads, block_size,
 * head_dim) in f16 (default) or f32; position p of sequence s is slot p % block_size
 * of block block_table[s * table_stride + p / block_size]. Rows of one (block, head)
 * are contiguous, so consecutive positions are consecutive rows inside a block.
 *
 * The host never knows the per-token positions (they live in device memory), so the
 * launch plan depends only on n, the geometry and the device: the same launches are
 * valid for any batch of n tokens, which is what CUDA-graph replay needs. The batch is
 * cut into tiles of QT consecutive tokens:
 *   - a tile is "uniform" when all its tokens belong to one sequence at consecutive
 *     positions (the inside of a prefill chunk); attention_prefill_kernel takes those
 *     and loads each K/V chunk once for the QT tokens x G heads of the tile;
 *   - every other token (decode tokens, the ragged edges of prefill chunks) goes
 *     through attention_decode_kernel, one block per (token, kv head, split), which
 *     serves the G query heads of the kv head from one read of K/V (GQA) and can split
 *     a long context over several blocks (flash-decoding); attention_combine_kernel
 *     merges the splits' (max, sum, acc) triples.
 * Both kernels evaluate the same tile test, so each token is written by exactly one.
 * All three are launched for every call (the early exits cost a few microseconds);
 * the prefill kernel is skipped only when QT < 2 or n < 2.
 *
 * Those CUDA-core kernels are the fallbacks since issue 17: attention_choose (below, the
 * one place that picks) sends decode tokens to attn_decode.cu (flash-decoding) and
 * uniform tiles to attn_prefill_tc.cu (tensor cores, tiles of 64 / G tokens) wherever
 * those apply, and keeps these kernels for the rest (f32 caches in the prefill, head
 * sizes without 16-byte rows, sm_89 at head_dim 256, a plan with cc = 0).
 *
 * Numerics: q is scaled by `scale` first (as the CPU does), q.k and the softmax run in
 * f32 with expf, K/V are widened to f32 on load; the output is acc / sum. The order of
 * additions differs from the CPU's, so results agree to f32 rounding (~1e-6 relative),
 * not bit for bit. */
#include "attention.cuh"

#define ATT_THREADS 128 /* 4 warps per block in every attention kernel */
#define DEC_CH 64       /* positions per chunk in the decode kernel (2 per lane in the softmax) */
#define PRE_CH 32       /* positions per chunk in the prefill kernel (1 per lane in the softmax) */
#define PRE_OUT 32      /* outputs per thread in the prefill kernel: rows * head_dim <= 4096 */
#define PRE_ROWS 64     /* most query rows (tokens x heads) per prefill block */
#define MAX_SPLITS 64

/* ---------------------------------------------------------------- kv_write */

/* One block per (token, kv head); threads stride over head_dim, converting f32 to the
 * cache type with round-to-nearest-even (the CPU's quant_f32_to_f16 rule). */
template <typename T>
__global__ void kv_write_kernel(T *kc, T *vc, const float *k, const float *v, int row_stride, const int32_t *pos,
                                const int32_t *seq, const int32_t *table, int table_stride, int n_kv_heads,
                                int head_dim, int block_size) {
    const int i = blockIdx.x, g = blockIdx.y, p = pos[i];
    const int64_t blk = table[(int64_t)seq[i] * table_stride + p / block_size];
    const int64_t off = ((blk * n_kv_heads + g) * block_size + p % block_size) * head_dim;
    const float *ks = k + (int64_t)i * row_stride + (int64_t)g * head_dim;
    const float *vs = v + (int64_t)i * row_stride + (int64_t)g * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        kc[off + d] = from_f32<T>(ks[d]);
        vc[off + d] = from_f32<T>(vs[d]);
    }
}

extern "C" cudaError_t kv_write_launch(void *kc, void *vc, int kdt, const float *k, const float *v, int row_stride,
                                       const int32_t *pos, const int32_t *seq, const int32_t *block_table,
                                       int table_stride, int n, int n_kv_heads, int head_dim, int block_size,
                                       cudaStream_t s) {
    if (n <= 0) return cudaSuccess;
    const dim3 grid(n, n_kv_heads);
    const int threads = head_dim >= 128 ? 128 : 32 * ceil_div(head_dim, 32);
    if (kdt == KDT_F16)
        kv_write_kernel<<<grid, threads, 0, s>>>((__half *)kc, (__half *)vc, k, v, row_stride, pos, seq, block_table,
                                                 table_stride, n_kv_heads, head_dim, block_size);
    else if (kdt == KDT_F32)
        kv_write_kernel<<<grid, threads, 0, s>>>((float *)kc, (float *)vc, k, v, row_stride, pos, seq, block_table,
                                                 table_stride, n_kv_heads, head_dim, block_size);
    else
        return cudaErrorInvalidValue;
    return cudaGetLastError();
}

/* ---------------------------------------------------------------- decode path */

/* P.V partial sums of one work item (4 heads hg*4.., elements d0..d0+VEC of head_dim)
 * over the chunk's positions j = pg, pg + P, ... (probabilities in sc). */
template <typename T, int VEC>
__device__ __forceinline__ void pv_item(float (&a)[4][VEC], int it, int pg, int P, int cnt, int c0, int nvec, int G,
                                        int g, int n_kv_heads, int bs, int hd, const int32_t *tab, const T *vc,
                                        const float *sc) {
    const int hg = it / nvec, d0 = (it % nvec) * VEC;
#pragma unroll
    for (int hh = 0; hh < 4; hh++)
#pragma unroll
        for (int e = 0; e < VEC; e++) a[hh][e] = 0.0f;
    for (int j = pg; j < cnt; j += P) {
        const int p = c0 + j;
        float vf[VEC];
        load_vec(vc + (((int64_t)tab[p / bs] * n_kv_heads + g) * bs + p % bs) * hd + d0, vf);
#pragma unroll
        for (int hh = 0; hh < 4; hh++) {
            const int h = hg * 4 + hh;
            if (h < G) {
                const float w = sc[h * DEC_CH + j];
#pragma unroll
                for (int e = 0; e < VEC; e++) a[hh][e] += w * vf[e];
            }
        }
    }
}


/* One block (4 warps) per (token t, kv head g, split). The split owns positions
 * [split*chunk, min(n_ctx, (split+1)*chunk)) of the token's n_ctx = pos + 1, with chunk
 * a multiple of DEC_CH; it walks them DEC_CH at a time:
 *   scores: lanes form groups of L (a power of two); a group takes one position, each
 *     lane holds VEC (vector variant: L = head_dim / VEC, one 16-byte load per lane) or
 *     up to 8 strided elements (scalar variant: L = 32) of the K row, dots them with the
 *     G query heads from shared memory and reduces with L-wide xor shuffles;
 *   softmax: warp w updates heads w, w+4, ... (running max/sum, rescales acc);
 *   P.V: threads take (group of 4 heads, VEC-wide slice of head_dim) items, each V row
 *     is read once per 4 heads; when there are fewer items than threads, P threads
 *     split an item's positions and their partials are summed in a fixed order
 *     (results are deterministic run to run).
 * With one split the block writes the normalised output; otherwise it writes its
 * (max, sum, acc) for attention_combine_kernel. */
template <typename T, bool VECTOR>
__global__ void __launch_bounds__(ATT_THREADS)
    attention_decode_kernel(float *out, float *part, const float *q, int q_stride, const T *kc, const T *vc,
                            const int32_t *pos, const int32_t *seq, const int32_t *table, int table_stride, int n,
                            int n_heads, int n_kv_heads, int hd, int bs, float scale, int qt, int n_splits,
                            int window) {
    constexpr int VEC = vec_of<T, VECTOR>::n;
    const int t = blockIdx.x, g = blockIdx.y, split = blockIdx.z;
    if (tile_uniform(pos, seq, n, t / qt, qt)) return; /* attention_prefill_kernel's token */
    const int G = n_heads / n_kv_heads, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    extern __shared__ float smem[];
    float *qs = smem;             /* (G, hd) query * scale */
    float *acc = qs + G * hd;     /* (G, hd) unnormalised output */
    float *sc = acc + G * hd;     /* (G, DEC_CH) scores, then probabilities */
    float *mx = sc + G * DEC_CH;  /* (G) running max */
    float *sm = mx + G;           /* (G) running sum of exp */
    float *red = sm + G;          /* (4*VEC, P*items) P.V partials when P > 1 */

    const int n_ctx = pos[t] + 1, p_lo = window > 0 ? max(0, n_ctx - window) : 0; /* sliding window */
    const int chunk = ceil_div(ceil_div(n_ctx - p_lo, n_splits), DEC_CH) * DEC_CH;
    const int p_begin = p_lo + split * chunk, p_end = min(n_ctx, p_begin + chunk);
    const int32_t *tab = table + (int64_t)seq[t] * table_stride;
    const float *qrow = q + (int64_t)t * q_stride + (int64_t)g * G * hd; /* heads g*G.. are contiguous */
    for (int i = tid; i < G * hd; i += ATT_THREADS) {
        qs[i] = qrow[i] * scale;
        acc[i] = 0.0f;
    }
    for (int i = tid; i < G; i += ATT_THREADS) mx[i] = -INFINITY, sm[i] = 0.0f;
    __syncthreads();

    const int L = VEC > 1 ? hd / VEC : 32; /* lanes per position */
    const int n_groups = (ATT_THREADS / 32) * (32 / L), grp = warp * (32 / L) + lane / L, gl = lane % L;
    /* P.V work split (see above) */
    const int nvec = hd / VEC, items = ceil_div(G, 4) * nvec;
    const int P = items >= ATT_THREADS ? 1 : ATT_THREADS / items;

    for (int c0 = p_begin; c0 < p_end; c0 += DEC_CH) {
        const int cnt = min(DEC_CH, p_end - c0);
        /* scores: every lane runs the same trip count so the shuffles stay converged */
        for (int jb = 0; jb < cnt; jb += n_groups) {
            const int j = jb + grp;
            const bool valid = j < cnt;
            float kf[VEC > 1 ? VEC : 8];
            if (valid) {
                const int p = c0 + j;
                const T *krow = kc + (((int64_t)tab[p / bs] * n_kv_heads + g) * bs + p % bs) * hd;
                if constexpr (VEC > 1) {
                    load_vec(krow + gl * VEC, kf);
                } else {
#pragma unroll
                    for (int k = 0; k < 8; k++) kf[k] = gl + 32 * k < hd ? to_f32(krow[gl + 32 * k]) : 0.0f;
                }
            } else {
#pragma unroll
                for (int k = 0; k < (VEC > 1 ? VEC : 8); k++) kf[k] = 0.0f;
            }
            for (int h = 0; h < G; h++) {
                const float *qh = qs + h * hd;
                float dot = 0.0f;
                if constexpr (VEC > 1) {
#pragma unroll
                    for (int e = 0; e < VEC; e++) dot += qh[gl * VEC + e] * kf[e];
                } else {
#pragma unroll
                    for (int k = 0; k < 8; k++)
                        if (gl + 32 * k < hd) dot += qh[gl + 32 * k] * kf[k];
                }
                for (int off = L >> 1; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
                if (valid && gl == 0) sc[h * DEC_CH + j] = dot;
            }
        }
        __syncthreads();
        /* online softmax, one warp per head */
        for (int h = warp; h < G; h += ATT_THREADS / 32) {
            float *s = sc + h * DEC_CH;
            const float v0 = lane < cnt ? s[lane] : -INFINITY, v1 = lane + 32 < cnt ? s[lane + 32] : -INFINITY;
            const float m_old = mx[h], m_new = fmaxf(m_old, warp_max(fmaxf(v0, v1)));
            const float e0 = lane < cnt ? expf(v0 - m_new) : 0.0f, e1 = lane + 32 < cnt ? expf(v1 - m_new) : 0.0f;
            if (lane < cnt) s[lane] = e0;
            if (lane + 32 < cnt) s[lane + 32] = e1;
            const float sum = warp_sum(e0 + e1), corr = expf(m_old - m_new); /* 0 on the first chunk */
            for (int d = lane; d < hd; d += 32) acc[h * hd + d] *= corr;
            if (lane == 0) mx[h] = m_new, sm[h] = sm[h] * corr + sum;
        }
        __syncthreads();
        /* P.V */
        if (P == 1) {
            for (int it = tid; it < items; it += ATT_THREADS) {
                float a[4][VEC];
                pv_item<T, VEC>(a, it, 0, 1, cnt, c0, nvec, G, g, n_kv_heads, bs, hd, tab, vc, sc);
                const int hg = it / nvec, d0 = (it % nvec) * VEC;
#pragma unroll
                for (int hh = 0; hh < 4; hh++)
                    if (hg * 4 + hh < G)
#pragma unroll
                        for (int e = 0; e < VEC; e++) acc[(hg * 4 + hh) * hd + d0 + e] += a[hh][e];
            }
        } else {
            /* P threads per item; partials go to red (4*VEC, P*items), summed in a fixed
             * order: deterministic, unlike shared-memory atomics */
            const int it = tid % items, pg = tid / items, np = P * items;
            if (pg < P) {
                float a[4][VEC];
                pv_item<T, VEC>(a, it, pg, P, cnt, c0, nvec, G, g, n_kv_heads, bs, hd, tab, vc, sc);
#pragma unroll
                for (int hh = 0; hh < 4; hh++)
#pragma unroll
                    for (int e = 0; e < VEC; e++) red[(hh * VEC + e) * np + pg * items + it] = a[hh][e];
            }
            __syncthreads();
            for (int o = tid; o < 4 * VEC * items; o += ATT_THREADS) {
                const int rest = o / items, item = o % items, h = (item / nvec) * 4 + rest / VEC;
                if (h < G) {
                    float sum = 0.0f;
                    for (int q2 = 0; q2 < P; q2++) sum += red[rest * np + q2 * items + item];
                    acc[h * hd + (item % nvec) * VEC + rest % VEC] += sum;
                }
            }
        }
        __syncthreads();
    }

    if (n_splits == 1) {
        float *orow = out + (int64_t)t * n_heads * hd + (int64_t)g * G * hd;
        for (int i = tid; i < G * hd; i += ATT_THREADS) orow[i] = acc[i] / sm[i / hd];
    } else {
        /* part: acc rows (n, n_heads, n_splits, hd), then (max, sum) pairs (n, n_heads, n_splits) */
        float *pml = part + (int64_t)n * n_heads * n_splits * hd;
        for (int i = tid; i < G * hd; i += ATT_THREADS) {
            const int64_t r = ((int64_t)t * n_heads + g * G + i / hd) * n_splits + split;
            part[r * hd + i % hd] = acc[i];
        }
        for (int h = tid; h < G; h += ATT_THREADS) {
            const int64_t r = ((int64_t)t * n_heads + g * G + h) * n_splits + split;
            pml[2 * r] = mx[h];
            pml[2 * r + 1] = sm[h];
        }
    }
}

/* One block per (token, query head); threads over head_dim. Weights exp(m_s - M) merge
 * the splits; a split that had no positions has m = -inf and weight 0. */
__global__ void attention_combine_kernel(float *out, const float *part, const int32_t *pos, const int32_t *seq, int n,
                                         int n_heads, int hd, int n_splits, int qt) {
    const int t = blockIdx.x, head = blockIdx.y;
    if (tile_uniform(pos, seq, n, t / qt, qt)) return;
    const float *pml = part + (int64_t)n * n_heads * n_splits * hd;
    const int64_t r0 = ((int64_t)t * n_heads + head) * n_splits;
    float M = -INFINITY;
    for (int s = 0; s < n_splits; s++) M = fmaxf(M, pml[2 * (r0 + s)]);
    float L = 0.0f;
    for (int s = 0; s < n_splits; s++) {
        const float m = pml[2 * (r0 + s)];
        if (m > -INFINITY) L += expf(m - M) * pml[2 * (r0 + s) + 1];
    }
    float *o = out + (int64_t)t * n_heads * hd + (int64_t)head * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float a = 0.0f;
        for (int s = 0; s < n_splits; s++) {
            const float m = pml[2 * (r0 + s)];
            if (m > -INFINITY) a += expf(m - M) * part[(r0 + s) * hd + d];
        }
        o[d] = a / L;
    }
}

/* ---------------------------------------------------------------- prefill path */

/* One block (4 warps) per (uniform tile, kv head): R = nt * G query rows (row r is token
 * t0 + r / G, head g*G + r % G) against positions 0 .. p0 + nt - 1, PRE_CH at a time:
 *   K chunk -> shared memory as f32 (rows padded to hd + 1 floats: no bank conflicts
 *   when a warp reads one column of 32 rows); scores S (R, PRE_CH) with the causal mask
 *   (position > the row's own position -> -inf); online softmax, one warp per row;
 *   V chunk -> the same shared buffer; P.V with each thread owning PRE_OUT fixed
 *   outputs (o = tid + k * 128) in registers, R * hd <= PRE_OUT * 128 (the host picks
 *   QT so). CUDA cores, not tensor cores: correct and simple first. */
template <typename T>
__global__ void __launch_bounds__(ATT_THREADS)
    attention_prefill_kernel(float *out, const float *q, int q_stride, const T *kc, const T *vc, const int32_t *pos,
                             const int32_t *seq, const int32_t *table, int table_stride, int n, int n_heads,
                             int n_kv_heads, int hd, int bs, float scale, int qt, int window) {
    const int tile = blockIdx.x, g = blockIdx.y;
    if (!tile_uniform(pos, seq, n, tile, qt)) return;
    const int G = n_heads / n_kv_heads, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int t0 = tile * qt, nt = min(qt, n - t0), R = nt * G, rows_max = qt * G;
    const int p0 = pos[t0], n_ctx = p0 + nt, ld = hd + 1;
    const int32_t *tab = table + (int64_t)seq[t0] * table_stride;
    extern __shared__ float smem[];
    float *qs = smem;                     /* (rows_max, hd) */
    float *kv = qs + rows_max * hd;       /* (PRE_CH, hd + 1) K, then V */
    float *S = kv + PRE_CH * ld;          /* (rows_max, PRE_CH) */
    float *mx = S + rows_max * PRE_CH;    /* (rows_max) */
    float *sm = mx + rows_max;
    float *corr = sm + rows_max;

    for (int i = tid; i < R * hd; i += ATT_THREADS) {
        const int r = i / hd, d = i % hd;
        qs[i] = q[(int64_t)(t0 + r / G) * q_stride + (int64_t)(g * G + r % G) * hd + d] * scale;
    }
    for (int r = tid; r < R; r += ATT_THREADS) mx[r] = -INFINITY, sm[r] = 0.0f;
    float a[PRE_OUT];
#pragma unroll
    for (int k = 0; k < PRE_OUT; k++) a[k] = 0.0f;

    /* sliding window: row r sees positions p0 + r/G - window + 1 .. p0 + r/G */
    for (int c0 = window > 0 ? max(0, p0 - window + 1) : 0; c0 < n_ctx; c0 += PRE_CH) {
        const int cnt = min(PRE_CH, n_ctx - c0);
        for (int i = tid; i < cnt * hd; i += ATT_THREADS) {
            const int j = i / hd, d = i % hd, p = c0 + j;
            kv[j * ld + d] = to_f32(kc[(((int64_t)tab[p / bs] * n_kv_heads + g) * bs + p % bs) * hd + d]);
        }
        __syncthreads(); /* K chunk (and, the first time, qs/mx/sm) ready */
        for (int i = tid; i < R * cnt; i += ATT_THREADS) {
            const int r = i / cnt, j = i % cnt;
            float s = -INFINITY;
            if (c0 + j <= p0 + r / G && (window <= 0 || c0 + j > p0 + r / G - window)) {
                s = 0.0f;
                const float *qr = qs + r * hd, *kr = kv + j * ld;
                for (int d = 0; d < hd; d++) s += qr[d] * kr[d];
            }
            S[r * PRE_CH + j] = s;
        }
        __syncthreads(); /* scores done: kv may be overwritten */
        for (int r = warp; r < R; r += ATT_THREADS / 32) {
            const float v = lane < cnt ? S[r * PRE_CH + lane] : -INFINITY;
            const float m_old = mx[r], m_new = fmaxf(m_old, warp_max(v));
            const float e = v > -INFINITY ? expf(v - m_new) : 0.0f;
            if (lane < cnt) S[r * PRE_CH + lane] = e;
            const float sum = warp_sum(e);
            if (lane == 0) {
                /* 0 on a row's first chunk with keys; a chunk wholly outside a row's window
                 * (m still -inf) leaves it untouched */
                const float c = m_new == -INFINITY ? 1.0f : expf(m_old - m_new);
                corr[r] = c;
                mx[r] = m_new;
                sm[r] = sm[r] * c + sum;
            }
        }
        for (int i = tid; i < cnt * hd; i += ATT_THREADS) {
            const int j = i / hd, d = i % hd, p = c0 + j;
            kv[j * ld + d] = to_f32(vc[(((int64_t)tab[p / bs] * n_kv_heads + g) * bs + p % bs) * hd + d]);
        }
        __syncthreads(); /* probabilities, corr and the V chunk ready */
#pragma unroll
        for (int k = 0; k < PRE_OUT; k++) {
            const int o = tid + k * ATT_THREADS;
            if (o < R * hd) {
                const int r = o / hd, d = o % hd;
                const float *pr = S + r * PRE_CH;
                float x = a[k] * corr[r];
                for (int j = 0; j < cnt; j++) x += pr[j] * kv[j * ld + d];
                a[k] = x;
            }
        }
        __syncthreads(); /* before the next chunk overwrites kv and S */
    }
#pragma unroll
    for (int k = 0; k < PRE_OUT; k++) {
        const int o = tid + k * ATT_THREADS;
        if (o < R * hd) {
            const int r = o / hd, d = o % hd;
            out[(int64_t)(t0 + r / G) * n_heads * hd + (int64_t)(g * G + r % G) * hd + d] = a[k] / sm[r];
        }
    }
}

/* ---------------------------------------------------------------- host side */

/* Tokens per prefill tile: as many as fit PRE_ROWS query rows and PRE_OUT*128 outputs;
 * 1 disables the prefill path (then every token takes the decode path). */
static int prefill_qt(int G, int hd) {
    int rows = (PRE_OUT * ATT_THREADS) / hd;
    if (rows > PRE_ROWS) rows = PRE_ROWS;
    const int qt = rows / G;
    return qt >= 2 ? qt : 1;
}

/* Mirrors the decode kernel's shared layout; vec = VEC of the variant. */
static size_t decode_smem(int G, int hd, int vec) {
    const int items = ceil_div(G, 4) * (hd / vec), P = items >= ATT_THREADS ? 1 : ATT_THREADS / items;
    const int red = P > 1 ? 4 * vec * P * items : 0;
    return sizeof(float) * (size_t)(2 * G * hd + G * DEC_CH + 2 * G + red);
}
static size_t prefill_smem(int rows, int hd) {
    return sizeof(float) * (size_t)(rows * hd + PRE_CH * (hd + 1) + rows * PRE_CH + 3 * rows);
}

/* Splits over the context when (tokens x kv heads) blocks would not fill the device
 * (4 blocks per SM): then n * splits <= 8 * n_sm / n_kv_heads + n <= 8 * n_sm + n. */
static int decode_splits(int n, int n_kv_heads, int n_sm) {
    const int blocks = n * n_kv_heads;
    if (blocks >= 4 * n_sm) return 1;
    const int s = ceil_div(4 * n_sm, blocks);
    return s > MAX_SPLITS ? MAX_SPLITS : s;
}

extern "C" int64_t attention_scratch_floats(int max_tokens, int n_heads, int head_dim, int n_sm) {
    /* the worst case over n <= max_tokens of n * splits, with n_kv_heads >= 1 */
    int64_t worst = 0;
    for (int n = 1; n <= max_tokens && n <= 4 * n_sm; n++) {
        const int64_t ns = (int64_t)n * decode_splits(n, 1, n_sm);
        if (ns > worst) worst = ns;
    }
    if (worst == 0) worst = 1;
    return worst * n_heads * (head_dim + 2);
}

template <typename K> static cudaError_t smem_attr(cudaError_t prev, K kernel, int bytes) {
    if (prev != cudaSuccess) return prev;
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}

extern "C" cudaError_t attention_init(int max_smem_optin) {
    /* the largest layouts backend.h allows: G <= 32, head_dim <= 256; prefill rows * hd <= 4096 */
    const int dec = (int)decode_smem(32, 256, 1) + 4 * 4 * 8 * ATT_THREADS; /* + the largest red */
    const int pre = (int)(sizeof(float) * (size_t)(PRE_OUT * ATT_THREADS + PRE_CH * (256 + 1) + PRE_ROWS * PRE_CH +
                                                   3 * PRE_ROWS));
    const int d = dec < max_smem_optin ? dec : max_smem_optin, p = pre < max_smem_optin ? pre : max_smem_optin;
    cudaError_t e = cudaSuccess;
    e = smem_attr(e, attention_decode_kernel<__half, true>, d);
    e = smem_attr(e, attention_decode_kernel<__half, false>, d);
    e = smem_attr(e, attention_decode_kernel<float, true>, d);
    e = smem_attr(e, attention_decode_kernel<float, false>, d);
    e = smem_attr(e, attention_prefill_kernel<__half>, p);
    e = smem_attr(e, attention_prefill_kernel<float>, p);
    if (e == cudaSuccess) e = attn_prefill_tc_init(max_smem_optin);
    return e;
}

/* Which kernels serve a call: the one place that chooses (attention.cuh). */
typedef struct {
    bool tc_prefill;  /* uniform tiles: attn_prefill_tc.cu (else attention_prefill_kernel) */
    bool fast_decode; /* other tokens: attn_decode.cu (else attention_decode_kernel) */
    int qt;           /* tokens per tile (1: no prefill kernel) */
} attention_choice_t;

static attention_choice_t attention_choose(const attention_plan_t *p, int n, const void *kc, const void *vc) {
    attention_choice_t c;
    const int G = p->n_heads / p->n_kv_heads;
    const bool aligned = ((uintptr_t)kc | (uintptr_t)vc) % 16 == 0;
    c.tc_prefill = p->cc > 0 && aligned && attn_prefill_tc_applies(p->cc, p->kdt, p->head_dim, p->max_smem);
    c.fast_decode = p->cc > 0 && attn_decode_applies(p->kdt, p->head_dim, kc, vc);
    c.qt = n < 2 ? 1 : c.tc_prefill ? attn_prefill_tc_qt(G) : prefill_qt(G, p->head_dim);
    return c;
}

template <typename T>
static cudaError_t attention_run(float *out, const float *q, int q_stride, const T *kc, const T *vc, const int32_t *pos,
                                 const int32_t *seq, const int32_t *table, int table_stride, int n,
                                 const attention_plan_t *p, cudaStream_t s) {
    const int hd = p->head_dim, nh = p->n_heads, nkv = p->n_kv_heads, G = nh / nkv;
    const attention_choice_t ch = attention_choose(p, n, kc, vc);
    const int qt = ch.qt;
    int splits = decode_splits(n, nkv, p->n_sm);
    while (splits > 1 && (int64_t)n * nh * splits * (hd + 2) > p->part_floats) splits--;
    cudaError_t e;
    if (ch.fast_decode) {
        e = attn_decode_launch(out, p->part, q, q_stride, kc, vc, p->kdt, pos, seq, table, table_stride, n, nh, nkv, hd,
                               p->block_size, p->scale, qt, splits, p->window, s);
    } else {
        /* vector loads: a power-of-two number (<= 32) of 16-byte vectors per row, aligned bases */
        const int vec = 16 / (int)sizeof(T), nv = hd / vec;
        const bool vector = hd % vec == 0 && nv <= 32 && (nv & (nv - 1)) == 0 &&
                            ((uintptr_t)kc | (uintptr_t)vc) % 16 == 0;
        const dim3 dgrid(n, nkv, splits);
        const size_t dsm = decode_smem(G, hd, vector ? vec : 1);
        if (vector)
            attention_decode_kernel<T, true><<<dgrid, ATT_THREADS, dsm, s>>>(out, p->part, q, q_stride, kc, vc, pos,
                                                                              seq, table, table_stride, n, nh, nkv, hd,
                                                                              p->block_size, p->scale, qt, splits,
                                                                              p->window);
        else
            attention_decode_kernel<T, false><<<dgrid, ATT_THREADS, dsm, s>>>(out, p->part, q, q_stride, kc, vc, pos,
                                                                               seq, table, table_stride, n, nh, nkv,
                                                                               hd, p->block_size, p->scale, qt, splits,
                                                                               p->window);
        e = cudaGetLastError();
    }
    if (e != cudaSuccess) return e;
    if (splits > 1) {
        attention_combine_kernel<<<dim3(n, nh), hd >= 128 ? 128 : 32 * ceil_div(hd, 32), 0, s>>>(out, p->part, pos, seq,
                                                                                                n, nh, hd, splits, qt);
        if ((e = cudaGetLastError()) != cudaSuccess) return e;
    }
    if (qt >= 2) {
        if (ch.tc_prefill) {
            /* tc_prefill implies an f16 cache (attn_prefill_tc_applies) */
            e = attn_prefill_tc_launch(out, q, q_stride, (const __half *)kc, (const __half *)vc, pos, seq, table,
                                       table_stride, n, nh, nkv, hd, p->block_size, p->scale, qt, p->window, s);
        } else {
            attention_prefill_kernel<T><<<dim3(ceil_div(n, qt), nkv), ATT_THREADS, prefill_smem(qt * G, hd), s>>>(
                out, q, q_stride, kc, vc, pos, seq, table, table_stride, n, nh, nkv, hd, p->block_size, p->scale, qt,
                p->window);
            e = cudaGetLastError();
        }
    }
    return e;
}

extern "C" cudaError_t attention_launch(float *out, const float *q, int q_stride, const void *kc, const void *vc,
                                        const int32_t *pos, const int32_t *seq, const int32_t *block_table,
                                        int table_stride, int n, const attention_plan_t *p, cudaStream_t s) {
    if (n <= 0) return cudaSuccess;
    if (p->kdt == KDT_F16)
        return attention_run(out, q, q_stride, (const __half *)kc, (const __half *)vc, pos, seq, block_table,
                             table_stride, n, p, s);
    if (p->kdt == KDT_F32)
        return attention_run(out, q, q_stride, (const float *)kc, (const float *)vc, pos, seq, block_table,
                             table_stride, n, p, s);
    return cudaErrorInvalidValue;
}
