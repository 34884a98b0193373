/* backend_cpu_family.h — the CPU backend's ops for model families beyond llama
 * (QK-norm, GeGLU, scaling; backend.h's appended ops), defined in ops_family.c, and
 * the one helper of backend_cpu.c they share. Internal to src/engine/cpu/. */
#ifndef KRILL_BACKEND_CPU_FAMILY_H
#define KRILL_BACKEND_CPU_FAMILY_H

#include <stdint.h>

#include "pool.h"

/* backend_cpu.c: runs fn over the context's pool (inline when work is small). */
void backend_cpu_par(void *ctx, pool_fn_t fn, void *arg, int64_t work);

/* ops_family.c: backend_ops_t.head_norm / geglu / scale for the cpu table. */
void ops_family_head_norm(void *ctx, float *x, int n, int row_stride, int n_heads, int head_dim, const float *w,
                          float eps);
void ops_family_geglu(void *ctx, float *out, const float *gu, int n, int ffn);
void ops_family_scale(void *ctx, float *x, int64_t n, float s);
/* The scalar GELU (tanh approximation) every backend's twin computes. */
float ops_family_gelu_tanh(float x);

#endif
