/* rmsnorm.cu — RMSNorm with the residual add fused in front.
 *
 * Per row: if add: x += add (written back: x is the residual stream); then
 * out = (x * s) * w with s = 1 / sqrt(mean(x^2) + eps), the CPU backend's order.
 * Parallelisation: one block (256 threads) per row. Pass 1 adds the residual, stores
 * it and sums squares in f32 (block_sum); pass 2 re-reads x (it is in L1/L2) and
 * writes out. VEC = 4 uses 16-byte float4 accesses when dim % 4 == 0 and every
 * pointer is 16-byte aligned (the launcher checks), else scalars. */
#include "common.cuh"

template <int VEC>
__global__ void rmsnorm_kernel(float *out, float *x, const float *add, const float *w, int dim, float eps) {
    const int64_t row = blockIdx.x;
    float *xr = x + row * dim;
    float *orow = out + row * dim;
    const float *ar = add ? add + row * dim : nullptr;
    const float s = rms_scale<VEC>(xr, ar, dim, eps);
    if (VEC == 4) {
        for (int i = threadIdx.x * 4; i < dim; i += blockDim.x * 4) {
            const float4 v = *(const float4 *)(xr + i), g = *(const float4 *)(w + i);
            *(float4 *)(orow + i) = make_float4(v.x * s * g.x, v.y * s * g.y, v.z * s * g.z, v.w * s * g.w);
        }
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) orow[i] = (xr[i] * s) * w[i];
    }
}

extern "C" cudaError_t rmsnorm_launch(float *out, float *x, const float *add, const float *w, int n, int dim,
                                      float eps, cudaStream_t s) {
    if (n <= 0) return cudaSuccess;
    const uintptr_t align = (uintptr_t)out | (uintptr_t)x | (uintptr_t)add | (uintptr_t)w;
    if (dim % 4 == 0 && align % 16 == 0)
        rmsnorm_kernel<4><<<n, 256, 0, s>>>(out, x, add, w, dim, eps);
    else
        rmsnorm_kernel<1><<<n, 256, 0, s>>>(out, x, add, w, dim, eps);
    return cudaGetLastError();
}
