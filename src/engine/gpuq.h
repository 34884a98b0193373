/* gpuq.h — GGUF matmul weights repacked for the GPU (model.gpu_weights = native):
 * (Where this part sits among the others: docs/architecture.md; layouts: docs/cuda.md,
 * "Device weight formats".)
 *
 * The CUDA backend keeps Q8_0, Q4_0, Q4_1, Q4_K and Q6_K matrices in these layouts and
 * dequantizes them inside its kernels (kernels/qmatmul.cu). This file is the host side:
 * sizes, the repack (plain C, tested on the CPU) and a host dequantizer of the repacked
 * form that the tests hold against quant.c's dequantizer of the original blocks.
 *
 * Rules:
 * - One row of a (rows, cols) matrix is self-contained and gpuq_row_bytes(q, cols)
 *   long (a multiple of 16): parts of a fused matrix (wq|wk|wv) of one type loaded at
 *   consecutive offsets form one matrix of the summed rows.
 * - Values and scales are the file's, bit for bit (no requantization): element k of a
 *   row dequantizes with quant.c's float operations in quant.c's order, so the value
 *   is quant_dequantize_f32's exactly.
 * - Inside a row, quants first in element order, then the scales (K = cols):
 *     Q8_0: int8 q[K]               | f16 d[K/32]                      value q*d
 *     Q4_0: u8 nib[K/2]             | f16 d[K/32]                      (q-8)*d
 *     Q4_1: u8 nib[K/2]             | f16 d[K/32], f16 m[K/32]         q*d + m
 *     Q4_K: u8 nib[K/2]             | f16 dm[2*K/256] (d, dmin pairs), u8 sc[K/32], u8 mn[K/32]
 *                                                                      (d*sc)*q - dmin*mn
 *     Q6_K: u8 nib[K/2], u8 hi[K/4] | f16 d[K/256], i8 sc[K/16]        (d*sc)*(q-32)
 *   nib byte i holds element 2i (low nibble) and 2i+1 (high); hi byte i holds the top
 *   2 bits of elements 4i..4i+3 (bits 2j..2j+1 for element 4i+j); the 6-bit Q4_K
 *   scales and mins are unpacked to a byte each. So 8 consecutive elements starting at
 *   a multiple of 8 are one aligned 8-byte (Q8_0), 4-byte (nibbles) or 2-byte (hi)
 *   load, all under one scale: what a GEMV lane reads per step. */
#ifndef KRILL_GPUQ_H
#define KRILL_GPUQ_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef enum { GPUQ_Q8_0 = 0, GPUQ_Q4_0, GPUQ_Q4_1, GPUQ_Q4_K, GPUQ_Q6_K, GPUQ_N } gpuq_type_t;

/* The gpuq type that keeps GGUF type t native, or -1 (t is not kept native). */
int gpuq_from_gguf(gguf_ttype_t t);
gguf_ttype_t gpuq_gguf(gpuq_type_t q);
const char *gpuq_name(gpuq_type_t q); /* "q4_k" */
/* Bytes of one repacked row of cols elements; 0 when cols is not a positive whole
 * number of the type's blocks (32, or 256 for the K types). */
size_t gpuq_row_bytes(gpuq_type_t q, int64_t cols);
/* Repacks rows GGUF rows (cols elements each, quant_row_bytes(type, cols) bytes) from
 * src into dst (rows * gpuq_row_bytes bytes). 0, or -1 for a bad type or shape. Pure. */
int gpuq_repack(gpuq_type_t q, const void *src, void *dst, int64_t rows, int64_t cols);
/* out (cols) f32 = one repacked row, dequantized as the kernels do (before they round
 * to bf16). 0 | -1. */
int gpuq_dequant_row(gpuq_type_t q, const void *row, int64_t cols, float *out);

#endif
