/* wmma_emu.h — nvcuda::wmma for the CPU emulator (cuda_emu.h includes it): the
 * SEMANTICS of fragments (load_matrix_sync, mma_sync, store_matrix_sync,
 * fill_fragment), not their register layout, so kernels that use WMMA run their real
 * source on the CPU.
 *
 * Rules it keeps, so the emulator catches what a GPU would get wrong:
 * - fragments have no `x[]` / `num_elements`: a kernel that touches per-lane elements
 *   does not compile here (such code depends on an undocumented layout; go through
 *   shared memory with store_matrix_sync instead);
 * - every call is warp-collective: it waits for all 32 lanes of the warp (a call from
 *   divergent code deadlocks, and the emulator says so);
 * - each lane computes and stores only the accumulator elements it "owns" (element e of
 *   the tile belongs to lane e % 32). A kernel that reads another lane's stored
 *   elements without a __syncwarp in between reads what was there before (shared
 *   memory starts poisoned with NaN), as on a GPU;
 * - ldm must be a multiple of 16 bytes, and tiles in shared memory 32-byte aligned
 *   (relative to the dynamic shared memory's start), as the CUDA docs require.
 * Products and sums are f32 (f16/bf16 inputs are exact in f32); a tensor core's order
 * of additions differs, so results agree to f32 rounding. */
#ifndef KRILL_WMMA_EMU_H
#define KRILL_WMMA_EMU_H

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstddef>
#include <cstdint>

void __syncwarp(unsigned mask = 0xffffffffu);
int emu_lane();
/* Aborts with a message when p / ldm break the alignment rules above. */
void emu_wmma_check(const void *p, unsigned ldm, size_t elem_bytes, const char *what);

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K> struct emu_dims;
template <int M, int N, int K> struct emu_dims<matrix_a, M, N, K> { static constexpr int rows = M, cols = K; };
template <int M, int N, int K> struct emu_dims<matrix_b, M, N, K> { static constexpr int rows = K, cols = N; };
template <int M, int N, int K> struct emu_dims<accumulator, M, N, K> { static constexpr int rows = M, cols = N; };

/* The whole (rows, cols) tile in every lane, row-major, as f32. */
template <typename Use, int M, int N, int K, typename T, typename Layout = void> struct fragment {
    static constexpr int rows = emu_dims<Use, M, N, K>::rows, cols = emu_dims<Use, M, N, K>::cols;
    float v[rows * cols];
};

static inline float emu_f32(float x) { return x; }
static inline float emu_f32(__half x) { return __half2float(x); }
static inline float emu_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename Use, int M, int N, int K, typename T, typename Layout>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout> &f, const T *p, unsigned ldm) {
    static_assert(!std::is_same<Use, accumulator>::value, "an accumulator load takes a layout_t");
    __syncwarp();
    emu_wmma_check(p, ldm, sizeof(T), "load_matrix_sync");
    constexpr bool row = std::is_same<Layout, row_major>::value;
    for (int i = 0; i < f.rows; i++)
        for (int j = 0; j < f.cols; j++) f.v[i * f.cols + j] = emu_f32(row ? p[(size_t)i * ldm + j] : p[(size_t)j * ldm + i]);
}

template <int M, int N, int K>
void load_matrix_sync(fragment<accumulator, M, N, K, float> &f, const float *p, unsigned ldm, layout_t l) {
    __syncwarp();
    emu_wmma_check(p, ldm, sizeof(float), "load_matrix_sync");
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) f.v[i * N + j] = l == mem_row_major ? p[(size_t)i * ldm + j] : p[(size_t)j * ldm + i];
}

template <int M, int N, int K>
void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float> &f, unsigned ldm, layout_t l) {
    __syncwarp();
    emu_wmma_check(p, ldm, sizeof(float), "store_matrix_sync");
    for (int e = emu_lane(); e < M * N; e += 32) {
        const int i = e / N, j = e % N;
        (l == mem_row_major ? p[(size_t)i * ldm + j] : p[(size_t)j * ldm + i]) = f.v[e];
    }
}

template <typename Use, int M, int N, int K, typename T, typename Layout, typename V>
void fill_fragment(fragment<Use, M, N, K, T, Layout> &f, const V &x) {
    __syncwarp();
    for (int e = 0; e < f.rows * f.cols; e++) f.v[e] = emu_f32(x);
}

/* d = a b + c over the elements this lane owns (d may be c). */
template <int M, int N, int K, typename TA, typename LA, typename TB, typename LB>
void mma_sync(fragment<accumulator, M, N, K, float> &d, const fragment<matrix_a, M, N, K, TA, LA> &a,
              const fragment<matrix_b, M, N, K, TB, LB> &b, const fragment<accumulator, M, N, K, float> &c) {
    __syncwarp();
    for (int e = emu_lane(); e < M * N; e += 32) {
        const int i = e / N, j = e % N;
        float s = c.v[e];
        for (int k = 0; k < K; k++) s += a.v[i * K + k] * b.v[k * N + j];
        d.v[e] = s;
    }
}

} // namespace wmma
} // namespace nvcuda

#endif
