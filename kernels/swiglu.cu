/* swiglu.cu — the SwiGLU gate: out (n, ffn) = silu(gate) * up, gu (n, 2*ffn) = gate | up.
 *
 * Parallelisation: a grid-stride loop over the n * ffn outputs; consecutive threads
 * read consecutive gate and up elements (two coalesced streams, one written).
 * silu(g) = g / (1 + e^-g) with expf (full precision) as on the CPU. */
#include "common.cuh"

__global__ void swiglu_kernel(float *out, const float *gu, int64_t total, int ffn) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / ffn, c = i % ffn;
        const float g = gu[r * 2 * ffn + c], u = gu[r * 2 * ffn + ffn + c];
        out[i] = silu_mul(g, u);
    }
}

extern "C" cudaError_t swiglu_launch(float *out, const float *gu, int n, int ffn, cudaStream_t s) {
    const int64_t total = (int64_t)n * ffn;
    if (total <= 0) return cudaSuccess;
    int64_t blocks = (total + 255) / 256;
    if (blocks > 65535) blocks = 65535;
    swiglu_kernel<<<(unsigned)blocks, 256, 0, s>>>(out, gu, total, ffn);
    return cudaGetLastError();
}
