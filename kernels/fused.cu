/* fused.cu — the producers of backend.h's fused ops: kernels that do in one launch what
 * the unfused sequence does in two or three, so that a layer is fewer graph nodes
 * (docs/cuda.md, "Fused ops").
 *
 * Rules:
 * - Each kernel computes exactly what the unfused kernels compute, in the same f32
 *   order, and only skips the f32 round trip through global memory in between:
 *     norm_round_kernel    = rmsnorm_kernel (residual add included) + convert_kernel
 *     glu_round_kernel     = swiglu_kernel / geglu_kernel + convert_kernel
 *     qkv_rope_kv_kernel   = bias_add_kernel + rope_kernel + kv_write_kernel
 *   so their outputs are bit-identical to the unfused sequence's (the emulator test
 *   50 checks it bit for bit; on a GPU nvcc may contract a*b - c into an FMA
 *   differently in two kernels, which gpu_ops bounds at 1e-6).
 * - The 16-bit outputs (xs) are the matmul's input, rounded to nearest even like
 *   convert_kernel; the matmul then runs on them without its own convert
 *   (matmul_ex_launch with x16).
 * - qkv_rope_kv writes the cache in kv_write_kernel's layout (kernels/attention.cu, the
 *   one other writer): ((block * n_kv_heads + head) * block_size + slot) * head_dim.
 *
 * Parallelisation: norm_round as rmsnorm (one 256-thread block per row, float4 when
 * dim % 4 == 0 and x, add, w are 16-byte aligned, the same reduction tree as
 * rmsnorm_kernel so the scale is the same float); glu_round a grid-stride loop;
 * qkv_rope_kv one block per (token, head of q | k | v) like kv_write, threads over the
 * rotation pairs then over the unrotated tail dims. */
#include "common.cuh"

template <int VEC, typename T>
__global__ void norm_round_kernel(T *xs, float *x, const float *add, const float *w, int dim, float eps) {
    const int64_t row = blockIdx.x;
    float *xr = x + row * dim;
    T *orow = xs + row * dim;
    const float *ar = add ? add + row * dim : nullptr;
    const float s = rms_scale<VEC>(xr, ar, dim, eps);
    if (VEC == 4) {
        for (int i = threadIdx.x * 4; i < dim; i += blockDim.x * 4) {
            const float4 v = *(const float4 *)(xr + i), g = *(const float4 *)(w + i);
            orow[i] = from_f32<T>(v.x * s * g.x);
            orow[i + 1] = from_f32<T>(v.y * s * g.y);
            orow[i + 2] = from_f32<T>(v.z * s * g.z);
            orow[i + 3] = from_f32<T>(v.w * s * g.w);
        }
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) orow[i] = from_f32<T>((xr[i] * s) * w[i]);
    }
}

template <typename T>
static void norm_round_run(T *xs, float *x, const float *add, const float *w, int n, int dim, float eps,
                           cudaStream_t s) {
    const uintptr_t align = (uintptr_t)x | (uintptr_t)add | (uintptr_t)w;
    if (dim % 4 == 0 && align % 16 == 0) norm_round_kernel<4, T><<<n, 256, 0, s>>>(xs, x, add, w, dim, eps);
    else norm_round_kernel<1, T><<<n, 256, 0, s>>>(xs, x, add, w, dim, eps);
}

extern "C" cudaError_t norm_round_launch(void *xs, int dt, float *x, const float *add, const float *w, int n, int dim,
                                         float eps, cudaStream_t s) {
    if (n <= 0) return cudaSuccess;
    if (dt == KDT_F16) norm_round_run((__half *)xs, x, add, w, n, dim, eps, s);
    else if (dt == KDT_BF16) norm_round_run((__nv_bfloat16 *)xs, x, add, w, n, dim, eps, s);
    else return cudaErrorInvalidValue;
    return cudaGetLastError();
}

template <typename T>
__global__ void glu_round_kernel(T *xs, const float *gu, int64_t total, int ffn, int gelu) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / ffn, c = i % ffn;
        const float g = gu[r * 2 * ffn + c], u = gu[r * 2 * ffn + ffn + c];
        xs[i] = from_f32<T>(gelu ? gelu_tanh(g) * u : silu_mul(g, u));
    }
}

extern "C" cudaError_t glu_round_launch(void *xs, int dt, const float *gu, int n, int ffn, int gelu, cudaStream_t s) {
    const int64_t total = (int64_t)n * ffn;
    if (total <= 0) return cudaSuccess;
    int64_t blocks = (total + 255) / 256;
    if (blocks > 65535) blocks = 65535;
    if (dt == KDT_F16) glu_round_kernel<<<(unsigned)blocks, 256, 0, s>>>((__half *)xs, gu, total, ffn, gelu);
    else if (dt == KDT_BF16) glu_round_kernel<<<(unsigned)blocks, 256, 0, s>>>((__nv_bfloat16 *)xs, gu, total, ffn, gelu);
    else return cudaErrorInvalidValue;
    return cudaGetLastError();
}

template <typename KT>
__global__ void qkv_rope_kv_kernel(float *qkv, const float *bias, int n_heads, int n_kv_heads, int hd, int half,
                                   const int32_t *pos, const float *inv_freq, int neox, KT *kc, KT *vc,
                                   const int32_t *seq, const int32_t *table, int table_stride, int block_size) {
    const int i = blockIdx.x, h = blockIdx.y, p = pos[i];
    const int row_len = (n_heads + 2 * n_kv_heads) * hd;
    float *v = qkv + (int64_t)i * row_len + (int64_t)h * hd;
    const float *b = bias ? bias + (int64_t)h * hd : nullptr;
    /* q heads stay in qkv; k heads (g = h - n_heads) and v heads go to the cache */
    const bool is_q = h < n_heads, is_k = !is_q && h < n_heads + n_kv_heads;
    const int g = is_q ? 0 : is_k ? h - n_heads : h - n_heads - n_kv_heads;
    int64_t off = 0;
    if (!is_q) {
        const int64_t blk = table[(int64_t)seq[i] * table_stride + p / block_size];
        off = ((blk * n_kv_heads + g) * block_size + p % block_size) * hd;
    }
    KT *dst = is_k ? kc + off : vc + off;
    const int rot = is_q || is_k ? 2 * half : 0; /* dims [0, rot) rotate in pairs */
    for (int j = threadIdx.x; j < rot / 2; j += blockDim.x) {
        const int i0 = neox ? j : 2 * j, i1 = neox ? j + half : 2 * j + 1;
        const float a = b ? v[i0] + b[i0] : v[i0], c = b ? v[i1] + b[i1] : v[i1];
        float sn, cs;
        sincosf((float)p * inv_freq[j], &sn, &cs);
        const float r0 = a * cs - c * sn, r1 = a * sn + c * cs;
        if (is_q) {
            v[i0] = r0;
            v[i1] = r1;
        } else {
            dst[i0] = from_f32<KT>(r0);
            dst[i1] = from_f32<KT>(r1);
        }
    }
    for (int d = rot + threadIdx.x; d < hd; d += blockDim.x) {
        const float a = b ? v[d] + b[d] : v[d];
        if (is_q) v[d] = a;
        else dst[d] = from_f32<KT>(a);
    }
}

extern "C" cudaError_t qkv_rope_kv_launch(float *qkv, const float *bias, int n, int n_heads, int n_kv_heads,
                                          int head_dim, int rope_dim, const int32_t *pos, const float *inv_freq,
                                          int neox, void *kc, void *vc, int kdt, const int32_t *seq,
                                          const int32_t *block_table, int table_stride, int block_size,
                                          cudaStream_t s) {
    if (n <= 0) return cudaSuccess;
    const dim3 grid(n, n_heads + 2 * n_kv_heads);
    const int threads = head_dim >= 128 ? 128 : 32 * ceil_div(head_dim, 32);
    const int half = rope_dim / 2;
    if (kdt == KDT_F16)
        qkv_rope_kv_kernel<<<grid, threads, 0, s>>>(qkv, bias, n_heads, n_kv_heads, head_dim, half, pos, inv_freq, neox,
                                                    (__half *)kc, (__half *)vc, seq, block_table, table_stride,
                                                    block_size);
    else if (kdt == KDT_F32)
        qkv_rope_kv_kernel<<<grid, threads, 0, s>>>(qkv, bias, n_heads, n_kv_heads, head_dim, half, pos, inv_freq, neox,
                                                    (float *)kc, (float *)vc, seq, block_table, table_stride,
                                                    block_size);
    else
        return cudaErrorInvalidValue;
    return cudaGetLastError();
}
