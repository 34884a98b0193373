/* fuzz_gguf.c — libFuzzer target for the GGUF reader, hparams and the dequantizers.
 *
 * Opens the input with gguf_open_mem (libFuzzer's buffer is exactly `size` bytes, so
 * ASan sees any over-read), walks every kv through the typed getters and array
 * accessors, looks every key and tensor up by name, runs hparams_load, and
 * dequantizes the first block (whole tensor when small) of every supported tensor.
 * Seeds: tests/fuzz/corpus/gguf/ (tiny files from tests/reference/write_tiny_gguf.py).
 * Run: make fuzz && build/fuzz/fuzz_gguf -max_total_time=300 <work-dir> tests/fuzz/corpus/gguf */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "hparams.h"
#include "quant.h"

static volatile double sink;

static void walk_kv(const gguf_t *g, const gguf_kv_t *kv) {
    char key[256];
    gguf_str_copy(kv->key, key, sizeof(key));
    const gguf_kv_t *found = gguf_find(g, key);
    if (found && strlen(key) == kv->key.len && found != kv) abort(); /* duplicates were rejected */
    uint64_t u;
    int64_t i;
    double f;
    bool b;
    gguf_str_t s;
    char err[256];
    if (gguf_get_u64(g, key, &u, err, sizeof(err)) == 0) sink += (double)u;
    if (gguf_get_i64(g, key, &i, err, sizeof(err)) == 0) sink += (double)i;
    if (gguf_get_f64(g, key, &f, err, sizeof(err)) == 0) sink += f;
    if (gguf_get_bool(g, key, &b, err, sizeof(err)) == 0) sink += b;
    if (gguf_get_str(g, key, &s, err, sizeof(err)) == 0 && s.len) sink += (unsigned char)s.ptr[s.len - 1];
    uint64_t n = gguf_arr_len(kv);
    for (uint64_t j = 0; j < n; j++) {
        if (kv->v.arr.type == GGUF_VT_STRING) {
            gguf_str_t e = gguf_arr_str(g, kv, j);
            if (e.len) sink += (unsigned char)e.ptr[0] + (unsigned char)e.ptr[e.len - 1];
        } else {
            sink += (double)gguf_arr_i64(kv, j) + gguf_arr_f64(kv, j);
        }
    }
    (void)gguf_arr_str(g, kv, n); /* out of range */
}

static void walk_tensor(const gguf_t *g, const gguf_tensor_t *t, const uint8_t *data, size_t size) {
    char name[128];
    gguf_str_copy(t->name, name, sizeof(name));
    const gguf_tensor_t *found = gguf_find_tensor(g, name);
    if (found && strlen(name) == t->name.len && found != t) abort();
    const uint8_t *p = t->data;
    if (p < data || p + t->nbytes > data + size) abort(); /* validated: inside the buffer */
    if (!quant_supported(t->type)) return;
    const int64_t be = quant_block_elems(t->type), bb = quant_block_bytes(t->type);
    if (t->nbytes < (uint64_t)bb) return;
    int64_t n = be;
    if (t->nbytes <= 65536) n = (int64_t)(t->nbytes / (uint64_t)bb) * be; /* whole tensor when small */
    float *y = malloc((size_t)n * sizeof(float));
    uint16_t *h = malloc((size_t)n * sizeof(uint16_t));
    if (y && h) {
        if (quant_dequantize_f32(t->type, p, y, n) != 0) abort();
        if (quant_dequantize_bf16(t->type, p, h, n) != 0) abort();
        if (quant_dequantize_f16(t->type, p, h, n) != 0) abort();
        sink += y[n - 1] + h[0];
    }
    free(y);
    free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    gguf_t *g = gguf_open_mem(data, size, err, sizeof(err));
    if (!g) {
        if (err[0] == '\0') abort(); /* every failure has a message */
        return 0;
    }
    for (size_t i = 0; i < gguf_n_kv(g); i++) walk_kv(g, gguf_kv_at(g, i));
    for (size_t i = 0; i < gguf_n_tensors(g); i++) walk_tensor(g, gguf_tensor_at(g, i), data, size);
    hparams_t hp;
    if (hparams_load(g, &hp, err, sizeof(err)) == 0) sink += hp.n_layers + hp.rope_base;
    gguf_close(g);
    return 0;
}
