/* common.cuh — what every kernels .cu file shares: error macros, element conversions,
 * (Where this part sits among the others: docs/architecture.md.)
 * warp/block reductions, and the extern "C" launchers of each op family.
 *
 * Rules (in the style of llm.c's llmc headers):
 * - One <op>.cu per op family; kernels are <op>_kernel, host launchers
 *   <op>_launch(..., cudaStream_t) return the launch's cudaError_t (cudaGetLastError)
 *   and never synchronise. The backend glue (backend_cuda.cu) turns errors into the
 *   backend's sticky error; test programs use cudaCheck, which aborts with file:line.
 * - Activations are f32 everywhere; weights/embeddings come as f32, f16 or bf16 and the
 *   KV cache as f16 or f32 (kv_elem_t below); all sums accumulate in f32.
 * - Device helpers here are tiny __forceinline__ functions or templates: they have to
 *   live in a header to be inlined into each op's kernels. */
#ifndef KRILL_KERNELS_COMMON_CUH
#define KRILL_KERNELS_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Aborts with file:line and the failing call (for tests and invariants). */
#define cudaCheck(call) cuda_check_abort((call), #call, __FILE__, __LINE__)
extern "C" void cuda_check_abort(cudaError_t e, const char *what, const char *file, int line);

/* Element types the kernels read: matches backend_dtype_t's numbering. */
enum { KDT_F32 = 0, KDT_F16 = 1, KDT_BF16 = 2 };

__host__ __device__ __forceinline__ int ceil_div(int a, int b) { return (a + b - 1) / b; }

/* ---------------------------------------------------------------- conversions */
__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
/* Round to nearest even, like quant_f32_to_f16/bf16 on the host. */
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

/* GELU with the tanh approximation (PyTorch's approximate="tanh"); geglu_kernel and the
 * fused glu_round_kernel share it, so the fused GeGLU is the unfused one bit for bit. */
__device__ __forceinline__ float gelu_tanh(float x) {
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}
/* silu(g) * u as swiglu_kernel writes it (expf, full precision). */
__device__ __forceinline__ float silu_mul(float g, float u) { return g / (1.0f + expf(-g)) * u; }

/* ---------------------------------------------------------------- reductions */
__device__ __forceinline__ float warp_sum(float v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

/* Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every thread
 * gets the result. Uses 33 floats of static shared memory; safe to call repeatedly. */
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float part[33];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); /* a previous call may still be reading part[] */
    if (lane == 0) part[warp] = v;
    __syncthreads();
    v = lane < nwarps ? part[lane] : 0.0f;
    v = warp_sum(v);
    return v;
}

/* RMSNorm's first pass over one row, shared by rmsnorm_kernel and norm_round_kernel
 * (so both get the same float): if ar, xr += ar (written back: the residual stream);
 * returns s = 1 / sqrt(mean(xr^2) + eps), the squares summed per thread (float4 when
 * VEC == 4) then by block_sum. Every thread of the block calls it. */
template <int VEC>
__device__ __forceinline__ float rms_scale(float *xr, const float *ar, int dim, float eps) {
    float ss = 0.0f;
    if (VEC == 4) {
        for (int i = threadIdx.x * 4; i < dim; i += blockDim.x * 4) {
            float4 v = *(const float4 *)(xr + i);
            if (ar) {
                const float4 a = *(const float4 *)(ar + i);
                v.x += a.x, v.y += a.y, v.z += a.z, v.w += a.w;
                *(float4 *)(xr + i) = v;
            }
            ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
        }
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) {
            float v = xr[i];
            if (ar) {
                v += ar[i];
                xr[i] = v;
            }
            ss += v * v;
        }
    }
    ss = block_sum(ss);
    return 1.0f / sqrtf(ss / (float)dim + eps);
}

/* ---------------------------------------------------------------- launchers */
/* Every pointer is device memory; every launcher returns cudaGetLastError(). */
extern "C" {
/* out (n, dim) f32 = table[ids[i]]; table (?, dim) of type tdt (KDT_*). */
cudaError_t embed_launch(float *out, const void *table, int tdt, const int32_t *ids, int n, int dim, cudaStream_t s);
/* out (n, dim) = src[rows[i]] (f32). */
cudaError_t get_rows_launch(float *out, const float *src, const int32_t *rows, int n, int dim, cudaStream_t s);
/* if add: x += add; out = x * rsqrt(mean(x^2) + eps) * w, per row of (n, dim). */
cudaError_t rmsnorm_launch(float *out, float *x, const float *add, const float *w, int n, int dim, float eps,
                           cudaStream_t s);
/* In-place rotary embedding; see backend.h for the argument meanings. */
cudaError_t rope_launch(float *x, int n, int row_stride, int n_heads, int head_dim, int rope_dim, const int32_t *pos,
                        const float *inv_freq, int neox, cudaStream_t s);
/* out (n, ffn) = silu(gu[:, :ffn]) * gu[:, ffn:]. */
cudaError_t swiglu_launch(float *out, const float *gu, int n, int ffn, cudaStream_t s);
/* dst (count) of type dt (KDT_F16 | KDT_BF16) = src (count) f32, rounded to nearest even. */
cudaError_t convert_launch(void *dst, int dt, const float *src, int64_t count, cudaStream_t s);
/* y (n, out) += bias (out). */
cudaError_t bias_add_launch(float *y, const float *bias, int n, int out, cudaStream_t s);
/* y (n, out) = x (n, in) W^T (+ bias); W of type wdt; xs: scratch of n*in 16-bit
 * elements for the rounded x. NULL on success, else a static description. */
const char *matmul_launch(cublasHandle_t h, float *y, const float *x, const void *w, int wdt, const float *bias,
                          void *xs, int n, int in, int out, cudaStream_t s);
/* matmul_launch generalised for the fused ops (kernels/fused.cu): x16 (NULL or n*in
 * elements of wdt, 16-bit weights only) replaces x as the already-rounded input; acc:
 * y += x W^T (bias must be NULL) instead of y = x W^T (+ bias). */
const char *matmul_ex_launch(cublasHandle_t h, float *y, const float *x, const void *x16, const void *w, int wdt,
                             const float *bias, void *xs, int n, int in, int out, int acc, cudaStream_t s);
/* Batches of at most n rows (0..8) take the GEMV kernel instead of cuBLAS; the default
 * is KRILL_CUDA_GEMV_MAX_N or 1 (0: always cuBLAS). Returns the previous limit. */
int matmul_set_gemv_max_n(int n);
/* out_ids[i] = argmax of logits row i (n, vocab); the lowest index wins ties, NaN never
 * wins. With inv_temp (n, device; NULL = all 0) row i with inv_temp[i] > 0 is instead
 * the Gumbel-max draw for keys[i] (gumbel.h: the host sampler's sampler_gumbel). */
cudaError_t argmax_launch(int32_t *out_ids, const float *logits, int n, int vocab, const float *inv_temp,
                          const uint64_t *keys, cudaStream_t s);
/* argmax_launch where row i only considers the tokens whose bit is set in its packed mask
 * masks + i * ((vocab + 31) / 32) (grammar.h's layout); the rest count as -inf. */
cudaError_t argmax_masked_launch(int32_t *out_ids, const float *logits, int n, int vocab, const float *inv_temp,
                                 const uint64_t *keys, const uint32_t *masks, cudaStream_t s);

/* Paged KV cache (layout in backend.h): writes n tokens' K/V rows into kc/vc of type
 * kdt (KDT_F16 | KDT_F32). */
cudaError_t kv_write_launch(void *kc, void *vc, int kdt, const float *k, const float *v, int row_stride,
                            const int32_t *pos, const int32_t *seq, const int32_t *block_table, int table_stride,
                            int n, int n_kv_heads, int head_dim, int block_size, cudaStream_t s);

/* Attention geometry plus the launch plan the glue chose (attention.cu explains it). */
typedef struct {
    int n_heads, n_kv_heads, head_dim, block_size;
    float scale;
    int kdt;          /* KV element type: KDT_F16 | KDT_F32 */
    int n_sm;         /* multiprocessors on the device */
    float *part;      /* split-softmax scratch, attention_scratch_floats() floats */
    int64_t part_floats;
    int window;       /* > 0: a query at position p sees positions p - window + 1 .. p only */
    int cc;           /* compute capability (major * 10 + minor); 0: only the CUDA-core kernels
                         of attention.cu (tests use it to keep checking them) */
    int max_smem;     /* opt-in shared memory per block (cudaDevAttrMaxSharedMemoryPerBlockOptin) */
} attention_plan_t;
/* Floats of scratch the decode path needs for up to max_tokens tokens. */
int64_t attention_scratch_floats(int max_tokens, int n_heads, int head_dim, int n_sm);
/* Raises the dynamic shared-memory limits of the attention kernels; call once per device. */
cudaError_t attention_init(int max_smem_optin);
cudaError_t attention_launch(float *out, const float *q, int q_stride, const void *kc, const void *vc,
                             const int32_t *pos, const int32_t *seq, const int32_t *block_table, int table_stride,
                             int n, const attention_plan_t *p, cudaStream_t s);

/* qmatmul.cu: matmuls over the native GGUF layouts of gpuq.h; qt is a gpuq_type_t.
 * y (n, out; rows ldy >= out apart) = x (n, in) W^T (+ bias): n <= 8 (x 16-byte
 * aligned) the dequantizing GEMV, else W's rows dequantized to bf16 into ws (ws_bytes,
 * at least one row) a chunk at a time and cuBLAS; xs: n*in bf16 scratch. NULL on
 * success, else why. */
const char *qmatmul_launch(cublasHandle_t h, float *y, int ldy, const float *x, const void *w, int qt,
                           const float *bias, void *xs, void *ws, size_t ws_bytes, int n, int in, int out,
                           cudaStream_t s);
/* The two halves on their own (tests): the GEMV for n in 1..8, and dst (rows, in) bf16 =
 * the first rows of W, bit-exact with quant_dequantize_bf16 of the original blocks. */
cudaError_t qmatmul_gemv_launch(float *y, const float *x, const void *w, int qt, const float *bias, int n, int in,
                                int out, int ldy, cudaStream_t s);
cudaError_t qmatmul_dequant_launch(void *dst, const void *w, int qt, int in, int rows, cudaStream_t s);

/* family.cu (gemma3, qwen3; backend.h): in place, each of the first n_heads heads of
 * head_dim floats of each of n rows (row_stride apart) = h * rsqrt(mean(h^2) + eps) * w. */
cudaError_t head_norm_launch(float *x, int n, int row_stride, int n_heads, int head_dim, const float *w, float eps,
                             cudaStream_t s);
/* out (n, ffn) = gelu_tanh(gu[:, :ffn]) * gu[:, ffn:]. */
cudaError_t geglu_launch(float *out, const float *gu, int n, int ffn, cudaStream_t s);
/* x (n) *= f. */
cudaError_t scale_launch(float *x, int64_t n, float f, cudaStream_t s);

/* fused.cu — producers of the matmul's 16-bit input and the attention's inputs in one
 * kernel each (backend.h's fused ops). xs: n*dim (n*ffn) elements of dt (KDT_F16 |
 * KDT_BF16). */
/* if add: x += add; xs = round_dt(x * rsqrt(mean(x^2) + eps) * w): rmsnorm + convert. */
cudaError_t norm_round_launch(void *xs, int dt, float *x, const float *add, const float *w, int n, int dim, float eps,
                              cudaStream_t s);
/* xs (n, ffn) = round_dt(glu(gu[:, :ffn]) * gu[:, ffn:]), glu = gelu_tanh if gelu else silu. */
cudaError_t glu_round_launch(void *xs, int dt, const float *gu, int n, int ffn, int gelu, cudaStream_t s);
/* qkv (n, (n_heads + 2 n_kv_heads) * head_dim) rows q | k | v: adds bias (NULL = none),
 * rotates q and k (rope_launch's rule), writes the rotated q back in place and the k, v
 * rows into the paged caches kc, vc of type kdt (kv_write_launch's layout and rounding).
 * The k and v columns of qkv are left as they were. */
cudaError_t qkv_rope_kv_launch(float *qkv, const float *bias, int n, int n_heads, int n_kv_heads, int head_dim,
                               int rope_dim, const int32_t *pos, const float *inv_freq, int neox, void *kc, void *vc,
                               int kdt, const int32_t *seq, const int32_t *block_table, int table_stride,
                               int block_size, cudaStream_t s);
}

#endif
