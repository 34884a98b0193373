/* qmatmul.cu — y = x W^T over the native GGUF weight layouts (src/engine/gpuq.h), the
 * matmul of model.gpu_weights = native (docs/cuda.md, "Device weight formats").
 *
 * Two paths, chosen by the number of rows n:
 * - n <= 8: a GEMV that dequantizes in the kernel. Bandwidth-bound, so bytes per weight
 *   are the cost: 4.5-8.5 bits instead of bf16's 16. Its loop is matmul.cu's
 *   gemv_kernel line for line (one warp per output, 8 consecutive weights per lane per
 *   step, 4 steps in flight, activations rounded to bf16, warp_sum), and the weights
 *   it forms are the bf16 path's bit for bit, so it returns what the bf16 GEMV returns
 *   on the dequantized matrix.
 * - n > 8: the rows of W are dequantized to bf16 into a scratch, a chunk of rows at a
 *   time, and cuBLAS multiplies (the bf16 path's GEMM on the bf16 path's values).
 *   Chosen over a WMMA kernel dequantizing tiles into shared memory because it reuses
 *   the tuned cuBLAS GEMM and is bit-for-bit the bf16 path, and because the emulator
 *   (tests/gpu/emu) can run it; the price is W's bf16 bytes written and read once per
 *   call (~4.6 bytes per weight instead of 2), which a prefill of hundreds of rows
 *   amortises but a decode batch of 9-128 rows pays: a fused MMA kernel is the
 *   follow-up (docs/cuda.md).
 * Shape rules: in is a whole number of the type's blocks (gpuq_row_bytes != 0); x is
 * 16-byte aligned for the GEMV (else the GEMM path runs). y has a row stride ldy >= out:
 * one part of a fused matrix of mixed types writes its columns of the whole output. */
#include "common.cuh"
#include "qweights.cuh"

#define QMM_WARPS 8  /* output rows per block of the GEMV */
#define QMM_UNROLL 4 /* steps of 256 weights in flight per warp */

template <int Q, int N>
__global__ void __launch_bounds__(QMM_WARPS * 32)
    qmatmul_gemv_kernel(float *__restrict__ y, const float *__restrict__ x, const uint8_t *__restrict__ w,
                        size_t row_bytes, const float *__restrict__ bias, int in, int out, int ldy) {
    const int lane = threadIdx.x & 31, o = blockIdx.x * QMM_WARPS + (threadIdx.x >> 5);
    if (o >= out) return;
    const uint8_t *wr = w + (size_t)o * row_bytes;
    float acc[N];
#pragma unroll
    for (int r = 0; r < N; r++) acc[r] = 0.0f;
    for (int k0 = lane * 8; k0 < in; k0 += 256 * QMM_UNROLL) {
#pragma unroll
        for (int u = 0; u < QMM_UNROLL; u++) {
            const int k = k0 + u * 256;
            if (k < in) {
                float wf[8];
                qweights_dequant8<Q>(wr, in, k, wf);
#pragma unroll
                for (int r = 0; r < N; r++) {
                    const float4 a = __ldg((const float4 *)(x + (int64_t)r * in + k));
                    const float4 b = __ldg((const float4 *)(x + (int64_t)r * in + k + 4));
                    const float xs[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
                    for (int e = 0; e < 8; e++) acc[r] += wf[e] * to_f32(from_f32<__nv_bfloat16>(xs[e]));
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < N; r++) {
        const float v = warp_sum(acc[r]);
        if (lane == 0) y[(int64_t)r * ldy + o] = v + (bias ? bias[o] : 0.0f);
    }
}

/* y (n rows of ldy) [:, :out] += bias (out). */
__global__ void qmatmul_bias_kernel(float *__restrict__ y, const float *__restrict__ bias, int n, int out, int ldy) {
    const int64_t total = (int64_t)n * out;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        y[(i / out) * ldy + i % out] += bias[i % out];
}

/* dst (rows, in) bf16 = the rows of W, 8 weights per thread. */
template <int Q>
__global__ void qmatmul_dequant_kernel(__nv_bfloat16 *__restrict__ dst, const uint8_t *__restrict__ w,
                                       size_t row_bytes, int in, int rows) {
    const int64_t per_row = in / 8, total = (int64_t)rows * per_row;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / per_row;
        const int k = (int)(i - r * per_row) * 8;
        float wf[8];
        qweights_dequant8<Q>(w + (size_t)r * row_bytes, in, k, wf);
        union {
            uint4 u;
            __nv_bfloat16 h[8];
        } v;
#pragma unroll
        for (int e = 0; e < 8; e++) v.h[e] = from_f32<__nv_bfloat16>(wf[e]);
        *(uint4 *)(dst + r * in + k) = v.u;
    }
}

template <int Q>
static cudaError_t qmatmul_gemv_run(float *y, const float *x, const uint8_t *w, size_t rb, const float *bias, int n,
                                    int in, int out, int ldy, cudaStream_t s) {
    const dim3 grid(ceil_div(out, QMM_WARPS)), block(QMM_WARPS * 32);
    switch (n) {
    case 1: qmatmul_gemv_kernel<Q, 1><<<grid, block, 0, s>>>(y, x, w, rb, bias, in, out, ldy); break;
    case 2: qmatmul_gemv_kernel<Q, 2><<<grid, block, 0, s>>>(y, x, w, rb, bias, in, out, ldy); break;
    case 3: qmatmul_gemv_kernel<Q, 3><<<grid, block, 0, s>>>(y, x, w, rb, bias, in, out, ldy); break;
    case 4: qmatmul_gemv_kernel<Q, 4><<<grid, block, 0, s>>>(y, x, w, rb, bias, in, out, ldy); break;
    case 5: qmatmul_gemv_kernel<Q, 5><<<grid, block, 0, s>>>(y, x, w, rb, bias, in, out, ldy); break;
    case 6: qmatmul_gemv_kernel<Q, 6><<<grid, block, 0, s>>>(y, x, w, rb, bias, in, out, ldy); break;
    case 7: qmatmul_gemv_kernel<Q, 7><<<grid, block, 0, s>>>(y, x, w, rb, bias, in, out, ldy); break;
    case 8: qmatmul_gemv_kernel<Q, 8><<<grid, block, 0, s>>>(y, x, w, rb, bias, in, out, ldy); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

template <int Q>
static cudaError_t qmatmul_dequant_run(void *dst, const uint8_t *w, size_t rb, int in, int rows, cudaStream_t s) {
    const int64_t total = (int64_t)rows * (in / 8);
    const unsigned blocks = (unsigned)(total / 256 + 1 > 65535 ? 65535 : total / 256 + 1);
    qmatmul_dequant_kernel<Q><<<blocks, 256, 0, s>>>((__nv_bfloat16 *)dst, w, rb, in, rows);
    return cudaGetLastError();
}

extern "C" cudaError_t qmatmul_gemv_launch(float *y, const float *x, const void *w, int qt, const float *bias, int n,
                                           int in, int out, int ldy, cudaStream_t s) {
    const size_t rb = gpuq_row_bytes((gpuq_type_t)qt, in);
    if (!rb || n < 1 || n > 8 || out < 1 || ldy < out) return cudaErrorInvalidValue;
    const uint8_t *wb = (const uint8_t *)w;
    switch (qt) {
    case GPUQ_Q8_0: return qmatmul_gemv_run<GPUQ_Q8_0>(y, x, wb, rb, bias, n, in, out, ldy, s);
    case GPUQ_Q4_0: return qmatmul_gemv_run<GPUQ_Q4_0>(y, x, wb, rb, bias, n, in, out, ldy, s);
    case GPUQ_Q4_1: return qmatmul_gemv_run<GPUQ_Q4_1>(y, x, wb, rb, bias, n, in, out, ldy, s);
    case GPUQ_Q4_K: return qmatmul_gemv_run<GPUQ_Q4_K>(y, x, wb, rb, bias, n, in, out, ldy, s);
    case GPUQ_Q6_K: return qmatmul_gemv_run<GPUQ_Q6_K>(y, x, wb, rb, bias, n, in, out, ldy, s);
    }
    return cudaErrorInvalidValue;
}

extern "C" cudaError_t qmatmul_dequant_launch(void *dst, const void *w, int qt, int in, int rows, cudaStream_t s) {
    const size_t rb = gpuq_row_bytes((gpuq_type_t)qt, in);
    if (!rb || rows < 0) return cudaErrorInvalidValue;
    if (rows == 0) return cudaSuccess;
    const uint8_t *wb = (const uint8_t *)w;
    switch (qt) {
    case GPUQ_Q8_0: return qmatmul_dequant_run<GPUQ_Q8_0>(dst, wb, rb, in, rows, s);
    case GPUQ_Q4_0: return qmatmul_dequant_run<GPUQ_Q4_0>(dst, wb, rb, in, rows, s);
    case GPUQ_Q4_1: return qmatmul_dequant_run<GPUQ_Q4_1>(dst, wb, rb, in, rows, s);
    case GPUQ_Q4_K: return qmatmul_dequant_run<GPUQ_Q4_K>(dst, wb, rb, in, rows, s);
    case GPUQ_Q6_K: return qmatmul_dequant_run<GPUQ_Q6_K>(dst, wb, rb, in, rows, s);
    }
    return cudaErrorInvalidValue;
}

extern "C" const char *qmatmul_launch(cublasHandle_t h, float *y, int ldy, const float *x, const void *w, int qt,
                                      const float *bias, void *xs, void *ws, size_t ws_bytes, int n, int in, int out,
                                      cudaStream_t s) {
    if (n <= 0 || out <= 0) return NULL;
    if (ldy < out) return "qmatmul: ldy < out";
    const size_t rb = gpuq_row_bytes((gpuq_type_t)qt, in);
    if (!rb) return "qmatmul: in is not a whole number of the weight type's blocks";
    if (n <= 8 && (uintptr_t)x % 16 == 0)
        return qmatmul_gemv_launch(y, x, w, qt, bias, n, in, out, ldy, s) == cudaSuccess ? NULL
                                                                                    : "qmatmul_gemv_kernel launch failed";
    const int64_t chunk = (int64_t)(ws_bytes / ((size_t)in * 2));
    if (chunk < 1) return "qmatmul: the dequantization scratch is smaller than one row";
    if (convert_launch(xs, KDT_BF16, x, (int64_t)n * in, s) != cudaSuccess) return "convert_kernel launch failed";
    const float one = 1.0f, zero = 0.0f;
    for (int64_t r0 = 0; r0 < out; r0 += chunk) {
        const int rows = (int)(out - r0 < chunk ? out - r0 : chunk);
        if (qmatmul_dequant_launch(ws, (const uint8_t *)w + (size_t)r0 * rb, qt, in, rows, s) != cudaSuccess)
            return "qmatmul_dequant_kernel launch failed";
        const cublasStatus_t st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, rows, n, in, &one, ws, CUDA_R_16BF, in, xs,
                                               CUDA_R_16BF, in, &zero, y + r0, CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F,
                                               CUBLAS_GEMM_DEFAULT);
        if (st != CUBLAS_STATUS_SUCCESS) return cublasGetStatusString(st);
    }
    if (bias) {
        const int64_t total = (int64_t)n * out;
        const unsigned blocks = (unsigned)(total / 256 + 1 > 65535 ? 65535 : total / 256 + 1);
        qmatmul_bias_kernel<<<blocks, 256, 0, s>>>(y, bias, n, out, ldy);
        if (cudaGetLastError() != cudaSuccess) return "qmatmul_bias_kernel launch failed";
    }
    return NULL;
}
