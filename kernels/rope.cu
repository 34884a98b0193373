/* rope.cu — rotary position embedding, in place, with precomputed inverse frequencies
 * (llama3 / linear scaling are folded into inv_freq by the model).
 *
 * Parallelisation: blockIdx.x = row (token); threads cover (head, pair) of that row,
 * n_heads * rope_dim/2 work items, each rotating one pair. neox pairs (i, i + half),
 * else adjacent pairs (2i, 2i+1). The angle pos * inv_freq[i] is formed in f32 as on
 * the CPU; sincosf (full precision, not __sincosf) keeps large angles accurate. */
#include "common.cuh"

__global__ void rope_kernel(float *x, int row_stride, int n_heads, int head_dim, int half, const int32_t *pos,
                            const float *inv_freq, int neox) {
    const int64_t row = blockIdx.x;
    const float p = (float)pos[row];
    float *base = x + row * row_stride;
    for (int item = blockIdx.y * blockDim.x + threadIdx.x; item < n_heads * half; item += gridDim.y * blockDim.x) {
        const int h = item / half, i = item % half;
        float sn, cs;
        sincosf(p * inv_freq[i], &sn, &cs);
        float *v = base + (int64_t)h * head_dim;
        const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        const float a = v[i0], b = v[i1];
        v[i0] = a * cs - b * sn;
        v[i1] = a * sn + b * cs;
    }
}

extern "C" cudaError_t rope_launch(float *x, int n, int row_stride, int n_heads, int head_dim, int rope_dim,
                                   const int32_t *pos, const float *inv_freq, int neox, cudaStream_t s) {
    if (n <= 0 || rope_dim < 2) return cudaSuccess;
    const int half = rope_dim / 2, items = n_heads * half;
    const int threads = items >= 256 ? 256 : 32 * ceil_div(items, 32);
    const dim3 grid(n, ceil_div(items, threads));
    rope_kernel<<<grid, threads, 0, s>>>(x, row_stride, n_heads, head_dim, half, pos, inv_freq, neox);
    return cudaGetLastError();
}
