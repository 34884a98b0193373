/* family.cu — the ops of model families beyond llama (backend.h's appended ops):
 * QK-norm (RMSNorm per head, in place), GeGLU with tanh-approximated GELU, scaling.
 * CPU twins: src/engine/cpu/ops_family.c (same formulas, same f32 order per element
 * where the reduction allows; the emulator and tests/gpu/gpu_ops.c compare them).
 *
 * Parallelisation: head_norm one warp per (row, head) — head_dim <= 256 floats, a
 * warp-wide sum of squares then a strided scale; geglu and scale grid-stride loops
 * over the elements (coalesced). GELU uses tanhf (full precision) as the CPU does. */
#include "common.cuh"

__global__ void head_norm_kernel(float *x, int n, int row_stride, int n_heads, int hd, const float *w, float eps) {
    const int64_t item = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    if (item >= (int64_t)n * n_heads) return;
    float *v = x + (item / n_heads) * row_stride + (item % n_heads) * hd;
    float ss = 0.0f;
    for (int i = lane; i < hd; i += 32) ss += v[i] * v[i];
    ss = warp_sum(ss);
    const float s = 1.0f / sqrtf(ss / (float)hd + eps);
    for (int i = lane; i < hd; i += 32) v[i] = (v[i] * s) * w[i];
}

extern "C" cudaError_t head_norm_launch(float *x, int n, int row_stride, int n_heads, int head_dim, const float *w,
                                        float eps, cudaStream_t s) {
    const int64_t items = (int64_t)n * n_heads;
    if (items <= 0) return cudaSuccess;
    head_norm_kernel<<<(unsigned)ceil_div((int)items, 8), 256, 0, s>>>(x, n, row_stride, n_heads, head_dim, w, eps);
    return cudaGetLastError();
}

__global__ void geglu_kernel(float *out, const float *gu, int64_t total, int ffn) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / ffn, c = i % ffn;
        out[i] = gelu_tanh(gu[r * 2 * ffn + c]) * gu[r * 2 * ffn + ffn + c];
    }
}

extern "C" cudaError_t geglu_launch(float *out, const float *gu, int n, int ffn, cudaStream_t s) {
    const int64_t total = (int64_t)n * ffn;
    if (total <= 0) return cudaSuccess;
    int64_t blocks = (total + 255) / 256;
    if (blocks > 65535) blocks = 65535;
    geglu_kernel<<<(unsigned)blocks, 256, 0, s>>>(out, gu, total, ffn);
    return cudaGetLastError();
}

__global__ void scale_kernel(float *x, int64_t n, float f) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] *= f;
}

extern "C" cudaError_t scale_launch(float *x, int64_t n, float f, cudaStream_t s) {
    if (n <= 0) return cudaSuccess;
    int64_t blocks = (n + 255) / 256;
    if (blocks > 65535) blocks = 65535;
    scale_kernel<<<(unsigned)blocks, 256, 0, s>>>(x, n, f);
    return cudaGetLastError();
}
