/* test_gpuq.c — the CUDA backend's native weight layouts (src/engine/gpuq.c) on the CPU:
 * every supported GGUF type repacked and dequantized from the repacked form equals
 * quant.c's dequantization of the original blocks bit for bit; rows are
 * self-contained (parts repacked apart = the whole repacked at once); sizes and
 * refusals. The kernels reading these layouts: tests/gpu/emu_qmatmul.cpp. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gpuq.h"
#include "quant.h"
#include "testutil.h"

/* Random GGUF rows of type t whose f16 scales are finite (quant.c's test trick: clear
 * the top exponent bit of every 16-bit word). */
static uint8_t *random_rows(gguf_ttype_t t, int64_t rows, int64_t cols, uint64_t seed) {
    const int64_t n = quant_row_bytes(t, cols) * rows;
    uint8_t *raw = testutil_xmalloc((size_t)n);
    testutil_seed(seed);
    for (int64_t i = 0; i < n; i++) raw[i] = (uint8_t)testutil_next();
    for (int64_t i = 1; i < n; i += 2) raw[i] &= 0x3f;
    return raw;
}

static void test_roundtrip_every_type(void **state) {
    (void)state;
    static const int64_t shapes[][2] = {{1, 256}, {3, 512}, {5, 2048}, {2, 768}};
    for (int q = 0; q < GPUQ_N; q++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const gguf_ttype_t t = gpuq_gguf((gpuq_type_t)q);
            const int64_t rows = shapes[s][0], cols = shapes[s][1];
            uint8_t *raw = random_rows(t, rows, cols, 100 + (uint64_t)q * 10 + s);
            const size_t rb = gpuq_row_bytes((gpuq_type_t)q, cols);
            assert_true(rb > 0 && rb % 16 == 0);
            uint8_t *pk = testutil_xmalloc(rb * (size_t)rows);
            assert_int_equal(gpuq_repack((gpuq_type_t)q, raw, pk, rows, cols), 0);
            float *want = testutil_xmalloc(sizeof(float) * (size_t)(rows * cols));
            float *got = testutil_xmalloc(sizeof(float) * (size_t)cols);
            assert_int_equal(quant_dequantize_f32(t, raw, want, rows * cols), 0);
            for (int64_t r = 0; r < rows; r++) {
                assert_int_equal(gpuq_dequant_row((gpuq_type_t)q, pk + (size_t)r * rb, cols, got), 0);
                if (memcmp(got, want + r * cols, sizeof(float) * (size_t)cols)) {
                    for (int64_t k = 0; k < cols; k++)
                        if (memcmp(&got[k], &want[r * cols + k], 4))
                            fail_msg("%s %lldx%lld: row %lld element %lld: %.9g, quant.c %.9g", gpuq_name(q),
                                     (long long)rows, (long long)cols, (long long)r, (long long)k, got[k],
                                     want[r * cols + k]);
                }
            }
            /* rows are self-contained: the first row and the rest repacked apart, concatenated */
            uint8_t *pk2 = testutil_xmalloc(rb * (size_t)rows);
            assert_int_equal(gpuq_repack((gpuq_type_t)q, raw, pk2, 1, cols), 0);
            assert_int_equal(gpuq_repack((gpuq_type_t)q, raw + quant_row_bytes(t, cols), pk2 + rb, rows - 1, cols), 0);
            assert_memory_equal(pk, pk2, rb * (size_t)rows);
            free(raw), free(pk), free(pk2), free(want), free(got);
        }
}

static void test_sizes_and_refusals(void **state) {
    (void)state;
    /* bits per weight as docs/cuda.md states them, at cols = 4096 */
    assert_int_equal(gpuq_row_bytes(GPUQ_Q8_0, 4096), 4096 + 256);
    assert_int_equal(gpuq_row_bytes(GPUQ_Q4_0, 4096), 2048 + 256);
    assert_int_equal(gpuq_row_bytes(GPUQ_Q4_1, 4096), 2048 + 512);
    assert_int_equal(gpuq_row_bytes(GPUQ_Q4_K, 4096), 2048 + 64 + 256);
    assert_int_equal(gpuq_row_bytes(GPUQ_Q6_K, 4096), 3072 + 32 + 256);
    assert_int_equal(gpuq_row_bytes(GPUQ_Q4_0, 96), 64); /* 48 + 6 rounded up to 16 */
    assert_int_equal(gpuq_row_bytes(GPUQ_Q4_K, 96), 0);  /* not a whole 256-block */
    assert_int_equal(gpuq_row_bytes(GPUQ_Q8_0, 40), 0);
    assert_int_equal(gpuq_row_bytes(GPUQ_Q8_0, 0), 0);
    assert_int_equal(gpuq_row_bytes((gpuq_type_t)GPUQ_N, 256), 0);
    assert_int_equal(gpuq_from_gguf(GGUF_T_Q4_K), GPUQ_Q4_K);
    assert_int_equal(gpuq_from_gguf(GGUF_T_Q5_K), -1);
    assert_int_equal(gpuq_from_gguf(GGUF_T_F16), -1);
    for (int q = 0; q < GPUQ_N; q++) assert_int_equal(gpuq_from_gguf(gpuq_gguf((gpuq_type_t)q)), q);
    uint8_t src[256], dst[256];
    assert_int_equal(gpuq_repack(GPUQ_Q8_0, src, dst, 1, 40), -1);
    float out[40];
    assert_int_equal(gpuq_dequant_row(GPUQ_Q6_K, dst, 40, out), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_type),
        cmocka_unit_test(test_sizes_and_refusals),
    };
    return testutil_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
