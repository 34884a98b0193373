/* matmul.cu — y (n, out) = x (n, in) W^T (+ bias): cuBLAS on 16-bit inputs with f32
 * accumulation and an f32 result.
 *
 * Numerics: the activations x are f32 in the backend interface; for bf16 (f16) weights
 * they are rounded to bf16 (f16) first (convert_kernel, round to nearest even) into a
 * scratch buffer, because cuBLAS's tensor-core GEMMs take A and B of one type. Products
 * of two bf16 values are exact in f32 and the sums accumulate in f32
 * (CUBLAS_COMPUTE_32F), so the only error versus the CPU's f32 sgemm is the rounding
 * of x (and of W at load): relative ~2^-9 per element for bf16, ~2^-11 for f16 (f16
 * overflows above 65504: bf16 is the default). f32 weights (a test mode) use plain
 * FP32 GEMM with TF32 off (CUBLAS_COMPUTE_32F_PEDANTIC), close to the CPU's result.
 *
 * Row-major y = x W^T is column-major y^T = W x^T: cuBLAS gets A = W (op T, lda in),
 * B = x (op N, ldb in), C = y (ldc out).
 *
 * Single rows (n <= gemv_max_n, default 1; 16-bit W, in % 8 == 0): gemv_kernel instead
 * of convert + cuBLAS. Decode at batch 1 is one pass over the weights, and cuBLAS
 * reached only 16-51% of the copy bandwidth there for the 1B shape's 2048-wide
 * projections on an H200 (docs/benchmarks.md). The GEMV reads W once with 16-byte loads,
 * rounds x to bf16 (f16) itself (the same numerics as the cuBLAS path: rounded x, exact
 * products, f32 sums; only the order of the additions differs) and adds the bias, so one
 * launch replaces three: measured 2.0-2.3x cuBLAS on qkv and o, 1.3x on down, equal on
 * gate|up and lm_head. It is written for any n <= 8, but from n = 4 it lost to cuBLAS
 * (0.23-0.58x on the large projections: every warp re-reads and re-rounds all n rows
 * of x per 16-byte load of W), hence the default; KRILL_CUDA_GEMV_MAX_N overrides it.
 * Parallelisation: one warp per output row o; lane l owns elements [8l, 8l + 8) of
 * every 256-element slice of the row, keeps GEMV_UNROLL 16-byte loads of W in flight,
 * and multiplies them with the N rows of x (read as f32 from L1/L2: x is at most a few
 * tens of KB, W streams through once); per-lane sums are reduced with warp shuffles.
 *
 * matmul_ex_launch is the general form the fused ops use (kernels/fused.cu): x may come
 * already rounded to 16 bits (x16: no convert pass, the GEMV widens it instead of
 * rounding it; the same values either way), and acc accumulates into y (cuBLAS beta = 1,
 * the GEMV's epilogue y += v): the residual add fused into the matmul, one f32 rounding
 * of y + (x W^T) exactly like the separate y += tmp it replaces.
 *
 * Parallelisation of the helpers: convert_kernel is a grid-stride loop over the
 * elements (memory-bound, coalesced); bias_add_kernel likewise over n*out. */
#include <cublas_v2.h>

#include "common.cuh"

template <typename T>
__global__ void convert_kernel(T *dst, const float *src, int64_t count) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = from_f32<T>(src[i]);
}

__global__ void bias_add_kernel(float *y, const float *bias, int64_t total, int out) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        y[i] += bias[i % out];
}

#define GEMV_WARPS 8  /* warps (output rows) per block */
#define GEMV_UNROLL 4 /* 16-byte loads of W in flight per lane */

static int gemv_max_n = -1; /* -1: not read yet (KRILL_CUDA_GEMV_MAX_N, default 1) */

static int gemv_clamp(int n) { return n < 0 ? 0 : n > 8 ? 8 : n; }

static int gemv_limit(void) {
    if (gemv_max_n < 0) {
        const char *e = getenv("KRILL_CUDA_GEMV_MAX_N");
        gemv_max_n = gemv_clamp(e && *e ? atoi(e) : 1);
    }
    return gemv_max_n;
}

extern "C" int matmul_set_gemv_max_n(int n) {
    const int old = gemv_limit();
    gemv_max_n = gemv_clamp(n);
    return old;
}

/* 8 weights of type T from one 16-byte load, widened to f32 (a union, not a pointer
 * cast: aliasing rules). */
__device__ __forceinline__ float2 widen2(__nv_bfloat162 v) { return __bfloat1622float2(v); }
__device__ __forceinline__ float2 widen2(__half2 v) { return __half22float2(v); }
template <typename T> struct pair_of;
template <> struct pair_of<__nv_bfloat16> { typedef __nv_bfloat162 t; };
template <> struct pair_of<__half> { typedef __half2 t; };
template <typename T> __device__ __forceinline__ void unpack8(uint4 u, float (&f)[8]) {
    union {
        uint4 u;
        typename pair_of<T>::t p[4];
    } v;
    v.u = u;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float2 x = widen2(v.p[i]);
        f[2 * i] = x.x;
        f[2 * i + 1] = x.y;
    }
}

/* N rows of x at element k, widened to f32 as the matmul's 16-bit input: f32 x is
 * rounded to T here (the cuBLAS path's convert_kernel, the same RNE), 16-bit x (already
 * rounded by a fused producer, kernels/fused.cu) is widened as it is. */
template <typename T>
__device__ __forceinline__ void gemv_x8(const float *x, int k, float (&xs)[8]) {
    const float4 a = __ldg((const float4 *)(x + k)), b = __ldg((const float4 *)(x + k + 4));
    const float v[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
    for (int e = 0; e < 8; e++) xs[e] = to_f32(from_f32<T>(v[e]));
}
template <typename T>
__device__ __forceinline__ void gemv_x8(const T *x, int k, float (&xs)[8]) {
    unpack8<T>(__ldg((const uint4 *)(x + k)), xs);
}

/* X: float (rounded to T in the kernel) or T (rounded by the producer). acc: y += the
 * product (the residual stream, fused; bias must be NULL) instead of y = product + bias. */
template <typename T, typename X, int N>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_kernel(float *__restrict__ y, const X *__restrict__ x, const T *__restrict__ w,
                const float *__restrict__ bias, int in, int out, int acc_y) {
    const int lane = threadIdx.x & 31, o = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    if (o >= out) return;
    const T *wr = w + (int64_t)o * in;
    float acc[N];
#pragma unroll
    for (int r = 0; r < N; r++) acc[r] = 0.0f;
    for (int k0 = lane * 8; k0 < in; k0 += 256 * GEMV_UNROLL) {
        uint4 wv[GEMV_UNROLL];
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) {
            const int k = k0 + u * 256;
            wv[u] = k < in ? __ldg((const uint4 *)(wr + k)) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) {
            const int k = k0 + u * 256;
            if (k < in) {
                float wf[8];
                unpack8<T>(wv[u], wf);
#pragma unroll
                for (int r = 0; r < N; r++) {
                    float xs[8];
                    gemv_x8<T>(x + (int64_t)r * in, k, xs);
#pragma unroll
                    for (int e = 0; e < 8; e++) acc[r] += wf[e] * xs[e];
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < N; r++) {
        const float v = warp_sum(acc[r]);
        if (lane != 0) continue;
        float *yo = y + (int64_t)r * out + o;
        *yo = acc_y ? *yo + v : v + (bias ? bias[o] : 0.0f);
    }
}

template <typename T, typename X>
static cudaError_t gemv_run(float *y, const X *x, const T *w, const float *bias, int n, int in, int out, int acc,
                            cudaStream_t s) {
    const dim3 grid(ceil_div(out, GEMV_WARPS)), block(GEMV_WARPS * 32);
    switch (n) {
    case 1: gemv_kernel<T, X, 1><<<grid, block, 0, s>>>(y, x, w, bias, in, out, acc); break;
    case 2: gemv_kernel<T, X, 2><<<grid, block, 0, s>>>(y, x, w, bias, in, out, acc); break;
    case 3: gemv_kernel<T, X, 3><<<grid, block, 0, s>>>(y, x, w, bias, in, out, acc); break;
    case 4: gemv_kernel<T, X, 4><<<grid, block, 0, s>>>(y, x, w, bias, in, out, acc); break;
    case 5: gemv_kernel<T, X, 5><<<grid, block, 0, s>>>(y, x, w, bias, in, out, acc); break;
    case 6: gemv_kernel<T, X, 6><<<grid, block, 0, s>>>(y, x, w, bias, in, out, acc); break;
    case 7: gemv_kernel<T, X, 7><<<grid, block, 0, s>>>(y, x, w, bias, in, out, acc); break;
    case 8: gemv_kernel<T, X, 8><<<grid, block, 0, s>>>(y, x, w, bias, in, out, acc); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

static unsigned grid_for(int64_t total) {
    int64_t blocks = (total + 255) / 256;
    return (unsigned)(blocks > 65535 ? 65535 : blocks);
}

extern "C" cudaError_t convert_launch(void *dst, int dt, const float *src, int64_t count, cudaStream_t s) {
    if (count <= 0) return cudaSuccess;
    if (dt == KDT_F16) convert_kernel<<<grid_for(count), 256, 0, s>>>((__half *)dst, src, count);
    else if (dt == KDT_BF16) convert_kernel<<<grid_for(count), 256, 0, s>>>((__nv_bfloat16 *)dst, src, count);
    else return cudaErrorInvalidValue;
    return cudaGetLastError();
}

extern "C" cudaError_t bias_add_launch(float *y, const float *bias, int n, int out, cudaStream_t s) {
    const int64_t total = (int64_t)n * out;
    if (total <= 0) return cudaSuccess;
    bias_add_kernel<<<grid_for(total), 256, 0, s>>>(y, bias, total, out);
    return cudaGetLastError();
}

/* The GEMV for 16-bit weights: x f32 (x16 NULL) or x16 already rounded to wdt. */
static cudaError_t gemv_any(float *y, const float *x, const void *x16, const void *w, int wdt, const float *bias, int n,
                            int in, int out, int acc, cudaStream_t s) {
    if (wdt == KDT_F16)
        return x16 ? gemv_run(y, (const __half *)x16, (const __half *)w, bias, n, in, out, acc, s)
                   : gemv_run(y, x, (const __half *)w, bias, n, in, out, acc, s);
    return x16 ? gemv_run(y, (const __nv_bfloat16 *)x16, (const __nv_bfloat16 *)w, bias, n, in, out, acc, s)
               : gemv_run(y, x, (const __nv_bfloat16 *)w, bias, n, in, out, acc, s);
}

extern "C" const char *matmul_launch(cublasHandle_t h, float *y, const float *x, const void *w, int wdt,
                                     const float *bias, void *xs, int n, int in, int out, cudaStream_t s) {
    return matmul_ex_launch(h, y, x, NULL, w, wdt, bias, xs, n, in, out, 0, s);
}

/* Runs the whole matmul on handle's stream s. xs: scratch for n*in 16-bit elements
 * (unused for f32 weights and when x16 is given). NULL on success, else a static
 * description. */
extern "C" const char *matmul_ex_launch(cublasHandle_t h, float *y, const float *x, const void *x16, const void *w,
                                        int wdt, const float *bias, void *xs, int n, int in, int out, int acc,
                                        cudaStream_t s) {
    if (n <= 0 || out <= 0) return NULL;
    if ((x16 && wdt == KDT_F32) || (acc && bias)) return "matmul_ex: x16 needs 16-bit weights; acc takes no bias";
    /* acc: C = 1 * x W^T + 1 * C, one f32 rounding of (y + product) as in y += tmp */
    const float one = 1.0f, zero = 0.0f, *beta = acc ? &one : &zero;
    const void *xin = x16 ? x16 : (const void *)x;
    cublasStatus_t st;
    if (wdt == KDT_F32) {
        st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, w, CUDA_R_32F, in, x, CUDA_R_32F, in, beta,
                          y, CUDA_R_32F, out, CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT);
    } else if (n <= gemv_limit() && in % 8 == 0 && ((uintptr_t)w | (uintptr_t)xin) % 16 == 0) {
        const cudaError_t e = gemv_any(y, x, x16, w, wdt, bias, n, in, out, acc, s);
        return e == cudaSuccess ? NULL : "gemv_kernel launch failed";
    } else {
        if (!x16) {
            if (convert_launch(xs, wdt, x, (int64_t)n * in, s) != cudaSuccess) return "convert_kernel launch failed";
            xin = xs;
        }
        const cudaDataType_t t = wdt == KDT_F16 ? CUDA_R_16F : CUDA_R_16BF;
        st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, w, t, in, xin, t, in, beta, y, CUDA_R_32F, out,
                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    }
    if (st != CUBLAS_STATUS_SUCCESS) return cublasGetStatusString(st);
    if (bias && bias_add_launch(y, bias, n, out, s) != cudaSuccess) return "bias_add_kernel launch failed";
    return NULL;
}
