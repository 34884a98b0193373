/* qweights.h — which device buffers hold native GGUF weights (model.gpu_weights =
 * native), for the CUDA backend's glue: load_matrix records each matrix it repacked
 * (src/engine/gpuq.h), matmul asks before choosing a kernel, free forgets.
 * (Where this part sits among the others: docs/architecture.md.)
 *
 * Rules: host-side bookkeeping only, touched at load time and once per matmul call
 * (a binary search); no device calls. A record is keyed by the exact address the
 * matrix was written to; parts of a fused matrix (wq|wk|wv) are records at
 * consecutive addresses, possibly of different types (Q4_K_M's Q6_K attn_v), and
 * qweights_parts walks them so that matmul runs one kernel per part. Plain C interface (backend_cuda.cu, tests). */
#ifndef KRILL_KERNELS_QWEIGHTS_H
#define KRILL_KERNELS_QWEIGHTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qweights qweights_t;

qweights_t *qweights_new(void);        /* NULL when out of memory */
void qweights_free(qweights_t *q);     /* accepts NULL */
/* Records a (rows, cols) matrix of gpuq type qt written at p (bytes long). 0 | -1 (OOM). */
int qweights_add(qweights_t *q, const void *p, int qt, int64_t rows, int64_t cols, size_t bytes);
typedef struct {
    const void *p; /* where the part starts */
    int qt;        /* its gpuq_type_t */
    int64_t rows;
} qweights_part_t;
/* The parts of the (rows, cols) matrix starting at p: the record at p and the ones
 * right after it, each cols wide, summing to rows; at most max of them. Returns how
 * many; 0 when p holds no native matrix; -1 when the records there do not make one
 * (another width, too few rows, more than max parts). */
int qweights_parts(const qweights_t *q, const void *p, int64_t rows, int64_t cols, qweights_part_t *parts, int max);
/* True when p starts a native matrix: the fused ops (which take 16-bit weights) use
 * this to hand such a matrix to the native matmul instead. */
bool qweights_has(const qweights_t *q, const void *p);
/* Forgets the records of a buffer being freed: the one at p and those consecutive after it. */
void qweights_forget(qweights_t *q, const void *p);
/* Elements of the largest record (sizing the dequantization scratch); 0 when none. */
int64_t qweights_max_elems(const qweights_t *q);

#ifdef __cplusplus
}
#endif

#endif
