/* test_quant.c — dequantization and half-float conversions, bit-exact against the
 * vectors in tests/data/quant/ (gguf.quants + ggml, see tests/reference/gen_quant_vectors.py),
 * plus the type table and argument checks. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "clock.h"
#include "quant.h"
#include "testutil.h"

#define DATA "tests/data/quant/"

static void *slurp(const char *name, size_t *len) {
    char path[256];
    snprintf(path, sizeof(path), DATA "%s", name);
    void *buf = testutil_read_file(path, len);
    if (!buf) fail_msg("cannot read %s (run from the repository root)", path);
    return buf;
}

static const struct {
    const char *name;
    gguf_ttype_t t;
} TYPES[] = {
    {"F32", GGUF_T_F32},   {"F16", GGUF_T_F16},   {"BF16", GGUF_T_BF16}, {"Q4_0", GGUF_T_Q4_0},
    {"Q4_1", GGUF_T_Q4_1}, {"Q5_0", GGUF_T_Q5_0}, {"Q5_1", GGUF_T_Q5_1}, {"Q8_0", GGUF_T_Q8_0},
    {"Q2_K", GGUF_T_Q2_K}, {"Q3_K", GGUF_T_Q3_K}, {"Q4_K", GGUF_T_Q4_K}, {"Q5_K", GGUF_T_Q5_K},
    {"Q6_K", GGUF_T_Q6_K},
};
#define N_TYPES (sizeof(TYPES) / sizeof(TYPES[0]))

/* Every supported type: f32, bf16 and f16 outputs equal the reference byte for byte. */
static void test_dequantize_vectors(void **state) {
    (void)state;
    for (size_t k = 0; k < N_TYPES; k++) {
        char fn[64];
        size_t raw_len, f32_len, f16_len, bf16_len;
        snprintf(fn, sizeof(fn), "%s.raw", TYPES[k].name);
        uint8_t *raw = slurp(fn, &raw_len);
        snprintf(fn, sizeof(fn), "%s.f32", TYPES[k].name);
        float *want = slurp(fn, &f32_len);
        snprintf(fn, sizeof(fn), "%s.f16", TYPES[k].name);
        uint16_t *want16 = slurp(fn, &f16_len);
        snprintf(fn, sizeof(fn), "%s.bf16", TYPES[k].name);
        uint16_t *wantbf = slurp(fn, &bf16_len);
        const int64_t n = (int64_t)(f32_len / 4);
        assert_true(n > 0);
        assert_int_equal(quant_row_bytes(TYPES[k].t, n), (int64_t)raw_len);
        assert_true(quant_supported(TYPES[k].t));
        assert_string_equal(quant_type_name(TYPES[k].t), TYPES[k].name);

        float *got = malloc(f32_len);
        uint16_t *got16 = malloc(f16_len);
        assert_int_equal(quant_dequantize_f32(TYPES[k].t, raw, got, n), 0);
        if (memcmp(got, want, f32_len) != 0) {
            for (int64_t i = 0; i < n; i++)
                if (memcmp(&got[i], &want[i], 4) != 0)
                    fail_msg("%s f32: element %lld is %.9g, expected %.9g", TYPES[k].name, (long long)i,
                             (double)got[i], (double)want[i]);
        }
        assert_int_equal(quant_dequantize_f16(TYPES[k].t, raw, got16, n), 0);
        if (memcmp(got16, want16, f16_len) != 0) fail_msg("%s: f16 output differs", TYPES[k].name);
        assert_int_equal(quant_dequantize_bf16(TYPES[k].t, raw, got16, n), 0);
        if (memcmp(got16, wantbf, bf16_len) != 0) fail_msg("%s: bf16 output differs", TYPES[k].name);

        /* dequantizing one block at a time gives the same as all at once */
        const int64_t be = quant_block_elems(TYPES[k].t), bb = quant_block_bytes(TYPES[k].t);
        for (int64_t b = 0; b < n / be; b++) {
            float one[256];
            assert_int_equal(quant_dequantize_f32(TYPES[k].t, raw + b * bb, one, be), 0);
            assert_memory_equal(one, want + b * be, (size_t)be * 4);
        }
        /* a partial block is refused */
        if (be > 1) assert_int_equal(quant_dequantize_f32(TYPES[k].t, raw, got, be - 1), -1);
        free(got);
        free(got16);
        free(raw);
        free(want);
        free(want16);
        free(wantbf);
    }
}

static void test_f16_to_f32_all(void **state) {
    (void)state;
    size_t len;
    float *want = slurp("f16_to_f32.f32", &len);
    assert_int_equal(len, 65536 * 4);
    for (uint32_t h = 0; h < 65536; h++) {
        float f = quant_f16_to_f32((uint16_t)h);
        if (isnan(want[h])) {
            assert_true(isnan(f));
            /* NaN keeps sign and is still a NaN when converted back */
            assert_int_equal(signbit(f) != 0, (h & 0x8000) != 0);
            continue;
        }
        if (memcmp(&f, &want[h], 4) != 0) fail_msg("f16 0x%04x -> %.9g, expected %.9g", h, (double)f, (double)want[h]);
        /* exact round trip for every non-NaN f16 */
        assert_int_equal(quant_f32_to_f16(f), h);
    }
    /* the bulk path (F16C where available) agrees with the scalar one bit for bit, NaNs included */
    uint16_t *all = malloc(65536 * 2);
    float *bulk = malloc(65536 * 4);
    for (uint32_t h = 0; h < 65536; h++) all[h] = (uint16_t)h;
    assert_int_equal(quant_dequantize_f32(GGUF_T_F16, all, bulk, 65536), 0);
    for (uint32_t h = 0; h < 65536; h++) {
        float f = quant_f16_to_f32((uint16_t)h);
        if (memcmp(&f, &bulk[h], 4) != 0) fail_msg("f16 0x%04x: bulk and scalar conversions differ", h);
    }
    free(all);
    free(bulk);
    free(want);
}

static void test_f32_to_half_rne(void **state) {
    (void)state;
    size_t lx, l16, lbf;
    float *x = slurp("f32_conv.f32", &lx);
    uint16_t *w16 = slurp("f32_conv.f16", &l16);
    uint16_t *wbf = slurp("f32_conv.bf16", &lbf);
    size_t n = lx / 4;
    assert_int_equal(l16, n * 2);
    assert_int_equal(lbf, n * 2);
    assert_true(n > 10000);
    for (size_t i = 0; i < n; i++) {
        uint16_t h = quant_f32_to_f16(x[i]), b = quant_f32_to_bf16(x[i]);
        if (h != w16[i]) fail_msg("f32 %.9g -> f16 0x%04x, expected 0x%04x (index %zu)", (double)x[i], h, w16[i], i);
        if (b != wbf[i]) fail_msg("f32 %.9g -> bf16 0x%04x, expected 0x%04x (index %zu)", (double)x[i], b, wbf[i], i);
        assert_true(quant_bf16_to_f32(b) == quant_bf16_to_f32(wbf[i]) || isnan(x[i]));
    }
    /* the bulk path (F16C where available) gives the scalar path's bits */
    uint16_t *bulk = malloc(n * 2);
    assert_int_equal(quant_dequantize_f16(GGUF_T_F32, x, bulk, (int64_t)n), 0);
    assert_memory_equal(bulk, w16, n * 2);
    assert_int_equal(quant_dequantize_bf16(GGUF_T_F32, x, bulk, (int64_t)n), 0);
    assert_memory_equal(bulk, wbf, n * 2);
    free(bulk);
    /* NaNs stay NaNs with their sign (payload handling differs between converters) */
    const uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu, 0x7f802000u};
    for (size_t i = 0; i < sizeof(nans) / sizeof(nans[0]); i++) {
        float f;
        memcpy(&f, &nans[i], 4);
        uint16_t h = quant_f32_to_f16(f), b = quant_f32_to_bf16(f);
        assert_true((h & 0x7c00) == 0x7c00 && (h & 0x03ff) != 0);
        assert_int_equal(h >> 15, nans[i] >> 31);
        assert_true((b & 0x7f80) == 0x7f80 && (b & 0x007f) != 0);
        assert_int_equal(b >> 15, nans[i] >> 31);
    }
    float nanx[16];
    uint16_t nan16[16];
    for (int i = 0; i < 16; i++) {
        uint32_t u = nans[i % 6] ^ ((uint32_t)i << 3);
        memcpy(&nanx[i], &u, 4);
    }
    assert_int_equal(quant_dequantize_f16(GGUF_T_F32, nanx, nan16, 16), 0);
    for (int i = 0; i < 16; i++) assert_int_equal(nan16[i], quant_f32_to_f16(nanx[i]));
    free(x);
    free(w16);
    free(wbf);
}

static void test_type_table(void **state) {
    (void)state;
    assert_int_equal(quant_block_elems(GGUF_T_Q4_K), 256);
    assert_int_equal(quant_block_bytes(GGUF_T_Q4_K), 144);
    assert_int_equal(quant_block_bytes(GGUF_T_Q4_1), 20);
    assert_int_equal(quant_block_bytes(GGUF_T_Q6_K), 210);
    assert_int_equal(quant_row_bytes(GGUF_T_Q4_0, 64), 36);
    assert_int_equal(quant_row_bytes(GGUF_T_Q4_0, 33), -1);
    assert_int_equal(quant_row_bytes(GGUF_T_F32, 7), 28);
    assert_int_equal(quant_row_bytes(GGUF_T_Q8_0, -32), -1);
    assert_int_equal(quant_row_bytes(GGUF_T_Q8_0, INT64_MAX - 31), -1); /* bytes overflow */
    assert_int_equal(quant_block_elems((gguf_ttype_t)4), 0);            /* removed id */
    assert_int_equal(quant_block_bytes((gguf_ttype_t)999), 0);
    assert_int_equal(quant_row_bytes((gguf_ttype_t)999, 32), -1);
    assert_string_equal(quant_type_name((gguf_ttype_t)999), "unknown(999)");
    assert_string_equal(quant_type_name((gguf_ttype_t)16), "IQ2_XXS");
    /* known size but no dequantizer */
    assert_false(quant_supported((gguf_ttype_t)16));
    assert_int_equal(quant_block_bytes((gguf_ttype_t)16), 66);
    float y[256];
    uint16_t h[256];
    uint8_t x[256] = {0};
    assert_int_equal(quant_dequantize_f32((gguf_ttype_t)16, x, y, 256), -1);
    assert_int_equal(quant_dequantize_bf16((gguf_ttype_t)999, x, h, 32), -1);
    assert_int_equal(quant_dequantize_f16(GGUF_T_Q4_0, x, h, 31), -1);
    assert_int_equal(quant_dequantize_f32(GGUF_T_Q4_0, x, y, 0), 0);
}

/* Throughput of the dequantizers the CPU backend uses at load (informative). */
static void test_speed(void **state) {
    (void)state;
    const int64_t n = 1 << 20;
    const gguf_ttype_t ts[] = {GGUF_T_F16, GGUF_T_BF16, GGUF_T_Q4_0, GGUF_T_Q4_1, GGUF_T_Q8_0, GGUF_T_Q4_K, GGUF_T_Q6_K};
    uint8_t *src = malloc((size_t)n * 2); /* the largest input here: F16/BF16 */
    float *dst = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n * 2; i++) src[i] = (uint8_t)(i * 7919 >> 3);
    memset(dst, 0, (size_t)n * 4); /* fault the pages in before timing */
    for (size_t k = 0; k < sizeof(ts) / sizeof(ts[0]); k++) {
        /* arbitrary bytes: some scales are NaN/inf, which costs nothing extra here */
        const double t0 = clock_now_s();
        assert_int_equal(quant_dequantize_f32(ts[k], src, dst, n), 0);
        const double s = clock_now_s() - t0;
        printf("dequant %-5s %.1f Melem/s\n", quant_type_name(ts[k]), (double)n / s / 1e6);
    }
    free(src);
    free(dst);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dequantize_vectors), cmocka_unit_test(test_f16_to_f32_all),
        cmocka_unit_test(test_f32_to_half_rne),    cmocka_unit_test(test_type_table),
        cmocka_unit_test(test_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
