/* emu_qmatmul.cpp — the native-weight kernels of kernels/qmatmul.cu on the CPU emulator
 * (part of emu_kernels, integration test 50), bit for bit against plain C references:
 * - the dequantizing GEMV (n = 1..8) equals a dequantize-then-dot reference written in
 *   the kernel's accumulation order (lane l sums weights l*8 + 256 j .. +8 in order,
 *   then the warp_sum butterfly), over quant.c's dequantization of the ORIGINAL GGUF
 *   blocks rounded to bf16; and equals matmul.cu's bf16 GEMV on those bf16 weights;
 * - the large-batch path's dequantization into bf16 equals quant_dequantize_bf16 of
 *   the original blocks (its GEMM is cuBLAS: integration test 51 runs it, through the
 *   fake runtime, in tests/gpu/gpu_ops_native.c).
 * Every gpuq type; shapes with in not a multiple of the 1024 weights a warp covers per
 * unrolled step, out not a multiple of the 8 rows per block, with and without bias, y
 * rows wider than out (a part of a fused matrix of mixed types). */
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "common.cuh"

extern "C" {
#include "gpuq.h"
#include "quant.h"
}

static uint64_t qrng;
static uint64_t qnext() {
    uint64_t z = (qrng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float qunif() { return (float)((qnext() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }
static float bf(float v) { return quant_bf16_to_f32(quant_f32_to_bf16(v)); }

/* y (n, out): the GEMV's sums in its order over w (out, in) f32 (bf16 values). */
static void ref_gemv(float *y, const float *x, const float *w, const float *bias, int n, int in, int out) {
    for (int r = 0; r < n; r++)
        for (int o = 0; o < out; o++) {
            float lane[32], next[32];
            for (int l = 0; l < 32; l++) {
                float acc = 0.0f;
                for (int k0 = l * 8; k0 < in; k0 += 1024)
                    for (int u = 0; u < 4; u++) {
                        const int k = k0 + u * 256;
                        if (k >= in) continue;
                        for (int e = 0; e < 8; e++) acc += w[(size_t)o * in + k + e] * bf(x[(size_t)r * in + k + e]);
                    }
                lane[l] = acc;
            }
            for (int off = 16; off > 0; off >>= 1) {
                for (int l = 0; l < 32; l++) next[l] = lane[l] + lane[l ^ off];
                memcpy(lane, next, sizeof lane);
            }
            y[(size_t)r * out + o] = lane[0] + (bias ? bias[o] : 0.0f);
        }
}

static size_t count_diff(const void *a, const void *b, size_t bytes) {
    size_t d = 0;
    for (size_t i = 0; i < bytes; i++) d += ((const uint8_t *)a)[i] != ((const uint8_t *)b)[i];
    return d;
}

/* Runs the checks; returns the failures, adds to *checks. */
extern "C" int emu_qmatmul_run(int *checks) {
    static const int shapes[][3] = {{1, 256, 5}, {3, 512, 17}, {8, 1280, 9}, {2, 2304, 3}, {5, 96, 11}, {4, 32, 8}};
    int fails = 0;
    const int gemv_old = matmul_set_gemv_max_n(8); /* the bf16 GEMV for n <= 8 as the second reference */
    for (int q = 0; q < GPUQ_N; q++)
        for (auto &s : shapes) {
            const int n = s[0], in = s[1], out = s[2];
            const gguf_ttype_t t = gpuq_gguf((gpuq_type_t)q);
            const size_t rb = gpuq_row_bytes((gpuq_type_t)q, in);
            if (!rb) continue; /* K types need whole 256-blocks */
            qrng = 500 + (uint64_t)q * 31 + (uint64_t)n * 7 + (uint64_t)in + (uint64_t)out;
            const size_t sb = (size_t)quant_row_bytes(t, in);
            std::vector<uint8_t> raw(sb * out), pk(rb * out);
            for (auto &b : raw) b = (uint8_t)qnext();
            for (size_t i = 1; i < raw.size(); i += 2) raw[i] &= 0x3f; /* finite f16 scales */
            gpuq_repack((gpuq_type_t)q, raw.data(), pk.data(), out, in);
            std::vector<uint16_t> wb((size_t)out * in), got16((size_t)out * in, 0xffff);
            quant_dequantize_bf16(t, raw.data(), wb.data(), (int64_t)out * in);
            std::vector<float> wf((size_t)out * in), x((size_t)n * in), bias(out);
            for (size_t i = 0; i < wf.size(); i++) wf[i] = quant_bf16_to_f32(wb[i]);
            for (auto &v : x) v = qunif() * 2.0f;
            for (auto &v : bias) v = qunif();
            char shape[120];
            /* the large-batch path's dequantization */
            cudaError_t e = qmatmul_dequant_launch(got16.data(), pk.data(), q, in, out, nullptr);
            size_t bad = e != cudaSuccess ? 1 : count_diff(got16.data(), wb.data(), wb.size() * 2);
            snprintf(shape, sizeof shape, "%s rows=%d in=%d -> bf16 (= quant_dequantize_bf16)", gpuq_name((gpuq_type_t)q),
                     out, in);
            (*checks)++;
            fails += bad != 0;
            printf("  %-4s %-10s %-62s err %-10zu tol 0\n", bad ? "FAIL" : "PASS", "qdequant", shape, bad);
            for (int with_bias = 0; with_bias < 2; with_bias++) {
                const float *bp = with_bias ? bias.data() : nullptr;
                /* with bias: y rows 3 floats wider (ldy, a part of a fused matrix): the
                 * extra columns must stay untouched (NaN) */
                const int ldy = with_bias ? out + 3 : out;
                std::vector<float> yw((size_t)n * ldy, NAN), y((size_t)n * out), yr((size_t)n * out),
                    yb((size_t)n * out, NAN);
                e = qmatmul_gemv_launch(yw.data(), x.data(), pk.data(), q, bp, n, in, out, ldy, nullptr);
                size_t pad = 0;
                for (int r = 0; r < n; r++) {
                    memcpy(&y[(size_t)r * out], &yw[(size_t)r * ldy], sizeof(float) * out);
                    for (int c = out; c < ldy; c++) pad += !std::isnan(yw[(size_t)r * ldy + c]);
                }
                ref_gemv(yr.data(), x.data(), wf.data(), bp, n, in, out);
                const char *why = matmul_launch(nullptr, yb.data(), x.data(), wb.data(), KDT_BF16, bp, nullptr, n, in,
                                                out, nullptr);
                const size_t b1 = e != cudaSuccess ? 1 : count_diff(y.data(), yr.data(), y.size() * 4) + pad;
                const size_t b2 = why ? 1 : count_diff(y.data(), yb.data(), y.size() * 4);
                snprintf(shape, sizeof shape, "%s n=%d in=%d out=%d%s (= C ref | = bf16 GEMV)",
                         gpuq_name((gpuq_type_t)q), n, in, out, with_bias ? " +bias ldy+3" : "");
                *checks += 2;
                fails += (b1 != 0) + (b2 != 0);
                printf("  %-4s %-10s %-62s err %zu | %zu tol 0\n", b1 || b2 ? "FAIL" : "PASS", "qgemv", shape, b1, b2);
            }
        }
    matmul_set_gemv_max_n(gemv_old);
    return fails;
}
