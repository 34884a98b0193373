/* ops_family.c — the CPU backend's ops for model families beyond llama: QK-norm
 * (RMSNorm per head, in place), GeGLU with tanh-approximated GELU, and scaling.
 *
 * Rules: each output element depends only on its own row (head, element), computed in
 * one fixed order whatever the batch or the thread split: batch-invariant bitwise like
 * every other cpu op. Plain C (the compiler vectorises what it can); these ops are a
 * small part of a step next to the matmuls. */
#include "backend_cpu_family.h"

#include <math.h>
#include <stddef.h>

/* Rows [r0, r1) of n for thread ith of nth. */
static void split(int64_t n, int ith, int nth, int64_t *r0, int64_t *r1) {
    *r0 = n * ith / nth;
    *r1 = n * (ith + 1) / nth;
}

typedef struct {
    float *x;
    const float *w;
    int n, stride, heads, hd;
    float eps;
} head_job_t;

static void head_worker(void *arg, int ith, int nth) {
    const head_job_t *j = arg;
    int64_t r0, r1;
    split(j->n, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++)
        for (int h = 0; h < j->heads; h++) {
            float *v = j->x + r * j->stride + (size_t)h * j->hd;
            float ss = 0.0f;
            for (int i = 0; i < j->hd; i++) ss += v[i] * v[i];
            const float s = 1.0f / sqrtf(ss / (float)j->hd + j->eps);
            for (int i = 0; i < j->hd; i++) v[i] = (v[i] * s) * j->w[i];
        }
}

void ops_family_head_norm(void *ctx, float *x, int n, int row_stride, int n_heads, int head_dim, const float *w,
                          float eps) {
    head_job_t j = {x, w, n, row_stride, n_heads, head_dim, eps};
    backend_cpu_par(ctx, head_worker, &j, (int64_t)n * n_heads * head_dim);
}

float ops_family_gelu_tanh(float x) {
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

typedef struct {
    float *out;
    const float *gu;
    int n, ffn;
} geglu_job_t;

static void geglu_worker(void *arg, int ith, int nth) {
    const geglu_job_t *j = arg;
    int64_t r0, r1;
    split(j->n, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const float *g = j->gu + r * 2 * j->ffn, *u = g + j->ffn;
        float *o = j->out + r * j->ffn;
        for (int i = 0; i < j->ffn; i++) o[i] = ops_family_gelu_tanh(g[i]) * u[i];
    }
}

void ops_family_geglu(void *ctx, float *out, const float *gu, int n, int ffn) {
    geglu_job_t j = {out, gu, n, ffn};
    backend_cpu_par(ctx, geglu_worker, &j, (int64_t)n * ffn * 8);
}

typedef struct {
    float *x;
    int64_t n;
    float s;
} scale_job_t;

static void scale_worker(void *arg, int ith, int nth) {
    const scale_job_t *j = arg;
    int64_t i0, i1;
    split(j->n, ith, nth, &i0, &i1);
    for (int64_t i = i0; i < i1; i++) j->x[i] *= j->s;
}

void ops_family_scale(void *ctx, float *x, int64_t n, float s) {
    scale_job_t j = {x, n, s};
    backend_cpu_par(ctx, scale_worker, &j, n);
}
