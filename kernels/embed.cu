/* embed.cu — row gathers: token embeddings (any weight dtype -> f32) and f32 rows.
 *
 * Parallelisation: one block per output row, threads stride over the row's dim
 * elements (consecutive threads, consecutive addresses: coalesced). Memory-bound;
 * the rows are short (d_model), so nothing fancier pays. */
#include "common.cuh"

template <typename T>
__global__ void embed_kernel(float *out, const T *table, const int32_t *ids, int dim) {
    const int64_t row = blockIdx.x;
    const T *src = table + (int64_t)ids[row] * dim;
    float *dst = out + row * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = to_f32(src[i]);
}

extern "C" cudaError_t embed_launch(float *out, const void *table, int tdt, const int32_t *ids, int n, int dim,
                                    cudaStream_t s) {
    if (n <= 0) return cudaSuccess;
    const int threads = dim >= 256 ? 256 : 32 * ceil_div(dim, 32);
    switch (tdt) {
    case KDT_F32: embed_kernel<<<n, threads, 0, s>>>(out, (const float *)table, ids, dim); break;
    case KDT_F16: embed_kernel<<<n, threads, 0, s>>>(out, (const __half *)table, ids, dim); break;
    case KDT_BF16: embed_kernel<<<n, threads, 0, s>>>(out, (const __nv_bfloat16 *)table, ids, dim); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

extern "C" cudaError_t get_rows_launch(float *out, const float *src, const int32_t *rows, int n, int dim,
                                       cudaStream_t s) {
    if (n <= 0) return cudaSuccess;
    const int threads = dim >= 256 ? 256 : 32 * ceil_div(dim, 32);
    embed_kernel<<<n, threads, 0, s>>>(out, src, rows, dim);
    return cudaGetLastError();
}
