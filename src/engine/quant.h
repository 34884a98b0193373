/* quant.h — ggml tensor types: sizes and dequantization (to f32, bf16, f16).
 * (Where this part sits among the others: docs/architecture.md.)
 *
 * Block layouts follow the GGUF/ggml specification (QK = 32 for the legacy types,
 * 256 for K-quants). Dequantization is bit-exact with ggml's reference code: the
 * scale is converted from f16 once per block and the products are computed in f32
 * in the same order. n must be a whole number of blocks. */
#ifndef KRILL_QUANT_H
#define KRILL_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

bool quant_supported(gguf_ttype_t t);          /* dequantization available */
const char *quant_type_name(gguf_ttype_t t);   /* "Q4_K", or "unknown(N)" */
/* Elements per block and bytes per block; 0 for an unknown type. */
int64_t quant_block_elems(gguf_ttype_t t);
int64_t quant_block_bytes(gguf_ttype_t t);
/* Bytes for n elements; -1 when n is not a whole number of blocks or t is unknown. */
int64_t quant_row_bytes(gguf_ttype_t t, int64_t n);

/* 0 on success, -1 for an unsupported type or a partial block. */
int quant_dequantize_f32(gguf_ttype_t t, const void *src, float *dst, int64_t n);
int quant_dequantize_bf16(gguf_ttype_t t, const void *src, uint16_t *dst, int64_t n);
int quant_dequantize_f16(gguf_ttype_t t, const void *src, uint16_t *dst, int64_t n);

float quant_f16_to_f32(uint16_t h);
uint16_t quant_f32_to_f16(float f);   /* round to nearest even */
float quant_bf16_to_f32(uint16_t h);
uint16_t quant_f32_to_bf16(float f);  /* round to nearest even, NaN preserved */

#endif
