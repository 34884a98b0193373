/* cuda_emu.h — force-included (g++ -include) when kernels/*.cu are compiled as plain
 * C++ for the CPU emulator (tests/gpu/emu/emu.cpp, driven by tests/gpu/emu_kernels.cpp).
 *
 * The emulator runs every CUDA thread of a block as a cooperative fiber: blocks run one
 * after another, __syncthreads() is a barrier over the block's live fibers, and
 * __shfl_xor_sync exchanges values through a per-warp barrier. That executes the real
 * kernel code (indexing, tiling, shared-memory layout, reductions) on the CPU. It cannot
 * show races or memory-model bugs: fibers never run truly in parallel, and a missing
 * __syncthreads may go unnoticed. A GPU run (scripts/gpu-check.sh) is still the proof.
 *
 * emu-prep.py rewrites the two constructs g++ cannot parse: `k<<<g, b, smem, s>>>(args)`
 * becomes `emu_launcher(k, g, b, smem, s)(args)`, and `extern __shared__ float smem[];`
 * becomes a pointer to the block's dynamic shared memory. */
#ifndef KRILL_CUDA_EMU_H
#define KRILL_CUDA_EMU_H

/* Before the CUDA headers: they keep definitions that already exist. */
#define __global__
#define __device__
#define __host__
#define __shared__ static /* one instance, shared by the fibers of the running block */
#define __launch_bounds__(...)

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <type_traits>

using std::max;
using std::min;

uint3 emu_thread_idx();
uint3 emu_block_idx();
dim3 emu_block_dim();
dim3 emu_grid_dim();
#define threadIdx (emu_thread_idx())
#define blockIdx (emu_block_idx())
#define blockDim (emu_block_dim())
#define gridDim (emu_grid_dim())

void __syncthreads();
float emu_shfl_xor_f(float v, int lane_mask);
int emu_shfl_xor_i(int v, int lane_mask);
static inline float __shfl_xor_sync(unsigned, float v, int m) { return emu_shfl_xor_f(v, m); }
static inline int __shfl_xor_sync(unsigned, int v, int m) { return emu_shfl_xor_i(v, m); }
/* read-only cache load: a plain load here */
template <typename T> static inline T __ldg(const T *p) { return *p; }
void *emu_dyn_smem();
/* nvcc's runtime header has this overload for kernel pointers; the emulator ignores it */
template <typename T> cudaError_t cudaFuncSetAttribute(T *, cudaFuncAttribute, int) { return cudaSuccess; }

/* Runs body once per thread of every block of the grid (blocks in order). */
void emu_run_grid(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body);
/* Counts launches; the test checks that each launcher really launched something. */
extern long emu_launches;
/* Set by fake_cudart.cpp: launches then go into its deferred stream queue (or into a
 * graph being captured) instead of running at once. */
extern void (*emu_submit_hook)(std::function<void()> f);

template <typename F> struct emu_launch_t {
    F f;
    dim3 g, b;
    size_t smem;
    template <typename... A> void operator()(A... a) const {
        const F fn = f;
        const dim3 gg = g, bb = b;
        const size_t sm = smem;
        std::function<void()> run = [=]() { emu_run_grid(gg, bb, sm, [=]() { fn(a...); }); };
        if (emu_submit_hook) emu_submit_hook(std::move(run));
        else run();
    }
};
template <typename F>
emu_launch_t<F> emu_launcher(F f, dim3 g, dim3 b, size_t smem = 0, cudaStream_t s = nullptr) {
    (void)s;
    return emu_launch_t<F>{f, g, b, smem};
}

#include "wmma_emu.h" /* nvcuda::wmma: fragment semantics (mma.h is empty outside nvcc) */

#endif
