/* cpu_qmat.h — the CPU backend's quantized weights (Q8 / Q4, qmat.h) behind the
 * backend table: loading matrices into the layouts, remembering which dtype each
 * weight buffer holds, and the threaded matmul and embedding over them.
 * (Where this part sits among the others: docs/architecture.md, docs/engine.md.)
 *
 * Rules: a matmul quantizes each activation row on its own (per block of 32) into a
 * scratch sized by reserve (grown once if a caller asks for more), then splits (row
 * block x column tile) tasks dynamically over the pool; qmat.h's fixed per-element
 * order makes the result independent of the split, the batch and the thread count. */
#ifndef KRILL_CPU_QMAT_H
#define KRILL_CPU_QMAT_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "pool.h"
#include "qmat.h"

typedef struct cpu_qmat cpu_qmat_t;

/* cpu_weights (NULL / "" / "f32" -> F32; "q8" -> Q8; "q4" -> Q4; "auto" -> Q4 with
 * *by_type set: each matrix in the most compact layout that keeps free-running greedy
 * parity with transformers, chosen from its GGUF type by model.c's tensor_wdt,
 * docs/engine.md) and the kernel KRILL_CPU_QMAT forces
 * ("auto" / unset -> QMAT_IMPL_AUTO; "ref" | "avx2" | "avxvnni" | "avx512vnni" when this
 * CPU runs it). 0, or -1 with a message naming the value and what to use. */
int cpu_qmat_parse(const char *cpu_weights, backend_dtype_t *wdt, bool *by_type, qmat_impl_t *impl, char *err,
                   size_t errlen);

/* impl: the kernel every matmul uses (qmat_impl_available(impl) checked by the caller).
 * NULL when out of memory. */
cpu_qmat_t *cpu_qmat_new(qmat_impl_t impl);
void cpu_qmat_free(cpu_qmat_t *q); /* accepts NULL */

/* Converts (rows, cols) of src_type into dst (backend_weight_bytes(dt, rows, cols)),
 * dt Q8 or Q4, over the pool; remembers [dst, dst + bytes) as dt. 0, or -1 with a
 * message in err. */
int cpu_qmat_load(cpu_qmat_t *q, pool_t *pool, void *dst, backend_dtype_t dt, gguf_ttype_t src_type,
                  const void *src, int64_t rows, int64_t cols, char *err, size_t errlen);
/* The dtype loaded at w (inside a remembered range), else BACKEND_DT_F32. */
backend_dtype_t cpu_qmat_lookup(const cpu_qmat_t *q, const void *w);
/* Forgets every range that starts inside [buf, buf + bytes) (the buffer is freed). */
void cpu_qmat_forget(cpu_qmat_t *q, const void *buf, size_t bytes);
/* Sizes the activation scratch for n rows of `in` floats. 0 | -1 (out of memory). */
int cpu_qmat_reserve(cpu_qmat_t *q, int n, int in);

/* y (n, out) = x (n, in) W^T (+ bias), W in dt (Q8 / Q4). 0 | -1 (out of memory
 * growing the scratch). */
int cpu_qmat_matmul(cpu_qmat_t *q, pool_t *pool, backend_dtype_t dt, float *y, const float *x, const void *w,
                    const float *bias, int n, int in, int out);
/* out (n, dim) = rows ids of table (V, dim) in dt, dequantized to f32. */
void cpu_qmat_embed(pool_t *pool, backend_dtype_t dt, float *out, const void *table, const int32_t *ids, int n,
                    int dim);

#endif
