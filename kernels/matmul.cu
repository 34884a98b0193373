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

/* Runs the whole matmul on handle's stream s. xs: scratch for n*in 16-bit elements
 * (unused for f32 weights). NULL on success, else a static description. */
extern "C" const char *matmul_launch(cublasHandle_t h, float *y, const float *x, const void *w, int wdt,
                                     const float *bias, void *xs, int n, int in, int out, cudaStream_t s) {
    if (n <= 0 || out <= 0) return NULL;
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t st;
    if (wdt == KDT_F32) {
        st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, w, CUDA_R_32F, in, x, CUDA_R_32F, in, &zero,
                          y, CUDA_R_32F, out, CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT);
    } else {
        if (convert_launch(xs, wdt, x, (int64_t)n * in, s) != cudaSuccess) return "convert_kernel launch failed";
        const cudaDataType_t t = wdt == KDT_F16 ? CUDA_R_16F : CUDA_R_16BF;
        st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, w, t, in, xs, t, in, &zero, y, CUDA_R_32F, out,
                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    }
    if (st != CUBLAS_STATUS_SUCCESS) return cublasGetStatusString(st);
    if (bias && bias_add_launch(y, bias, n, out, s) != cudaSuccess) return "bias_add_kernel launch failed";
    return NULL;
}
