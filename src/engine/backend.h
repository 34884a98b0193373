/* backend.h — the compute backend interface: a small table of function pointers over
 * (Where this part sits among the others: docs/architecture.md.)
 * backend-owned buffers (ggml's ggml_backend_i, kept to calm's size).
 *
 * model.c writes the llama forward pass once against this table; backend.c is the
 * registry: the only place that knows which backends exist (and the only #ifdef
 * KRILL_CUDA). Each backend's table carries its own defaults (backend_defaults_t), so
 * nothing outside a backend decides by its name. The CPU backend lives in
 * src/engine/cpu/, the CUDA backend in kernels/, built into a shared module that
 * backend.c loads on first use (docs/engine.md, docs/cuda.md).
 *
 * Rules every backend keeps:
 * - Buffers come from ops->alloc and are opaque to the caller except for pointer
 *   arithmetic: `(char *)buf + bytes` addresses inside a buffer (a device pointer on
 *   CUDA, host memory on the CPU). The caller never dereferences them; it moves bytes
 *   with upload/download/load_tensor.
 * - Activations, norms, biases and RoPE frequencies are f32. Large matrices (matmul
 *   weights, the embedding table) are in info.weight_dtype; the KV cache is in
 *   info.kv_dtype. All arithmetic accumulates in f32.
 * - Compute ops return nothing and may run asynchronously, in call order. A failure is
 *   sticky: synchronize() and download() return -1 once one happened, and
 *   last_error() says what. Shape arguments are trusted (the model validated them);
 *   a backend may CHECK() them.
 * - Index arrays (token ids, positions, sequence ids, block tables, row lists) live in
 *   backend buffers too, uploaded by the caller.
 *
 * Matrix conventions (row-major, ne[0] of a GGUF tensor is the contiguous dimension):
 *   x (n, in) activations, W (out, in) weights, y = x W^T + b  -> y (n, out).
 *
 * KV cache: paged. For one layer, K and V are each a buffer of
 *   n_blocks * n_kv_heads * block_size * head_dim   elements of info.kv_dtype,
 * one block being n_kv_heads * block_size * head_dim consecutive elements. Token
 * position p of sequence s lives in physical block
 * block_table[s * table_stride + p / block_size], slot p % block_size. The order
 * INSIDE a block is the backend's own (kv_write and attention are its only readers
 * and writers; docs/engine.md gives the CPU's: K (head, dim, slot), V (head, slot,
 * dim)). The model only sizes the buffers and addresses whole blocks. */
#ifndef KRILL_BACKEND_H
#define KRILL_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

/* Q8 / Q4: the CPU backend's quantized matmul weights (src/engine/cpu/qmat.h: blocks of
 * 32 along `in`, panels of 8 output rows; 288 / 160 bytes per 256 weights). They have no
 * per-element size (backend_dtype_size 0): size them with backend_weight_bytes. */
/* GQ8_0 .. GQ6_K: the CUDA backend's native GGUF matmul weights (model.gpu_weights =
 * native; src/engine/gpuq.h: the file's Q8_0 / Q4_0 / Q4_1 / Q4_K / Q6_K blocks
 * repacked, not requantized), in gpuq_type_t order; sized with backend_weight_bytes too. */
typedef enum {
    BACKEND_DT_F32 = 0, BACKEND_DT_F16 = 1, BACKEND_DT_BF16 = 2, BACKEND_DT_Q8 = 3, BACKEND_DT_Q4 = 4,
    BACKEND_DT_GQ8_0 = 5, BACKEND_DT_GQ4_0 = 6, BACKEND_DT_GQ4_1 = 7, BACKEND_DT_GQ4_K = 8, BACKEND_DT_GQ6_K = 9
} backend_dtype_t;

size_t backend_dtype_size(backend_dtype_t t);
const char *backend_dtype_name(backend_dtype_t t);
/* "f32" | "f16" | "bf16" -> 0 and *out; -1 for anything else. */
int backend_dtype_parse(const char *s, backend_dtype_t *out);
/* Bytes of a (rows, cols) weight matrix in t; 0 when t's layout cannot hold that shape
 * (Q8/Q4: rows % 8 or cols % 32; GQ*: cols not a whole number of the type's blocks). */
size_t backend_weight_bytes(backend_dtype_t t, int64_t rows, int64_t cols);
/* The native dtype (GQ*) that keeps GGUF type src as it is, or -1 when none does. */
int backend_dtype_native(gguf_ttype_t src);
/* The gpuq_type_t of a GQ* dtype, -1 for any other. */
int backend_dtype_gpuq(backend_dtype_t t);

/* Limits the attention op supports on every backend (model_load checks them). */
#define BACKEND_MAX_HEAD_DIM 256
#define BACKEND_MAX_GQA 32        /* n_heads / n_kv_heads */
#define BACKEND_MAX_BLOCK_SIZE 256

typedef struct {
    int n_threads;          /* cpu: worker threads, 0 = online cores */
    const char *dtype;      /* weights: cuda "bf16" | "f16" (cpu: cpu_weights); NULL = defaults */
    const char *kv_dtype;   /* KV cache: "f16" | "f32"; NULL = defaults.kv_dtype (f16 on both) */
    int device;             /* cuda device ordinal */
    const char *cpu_weights; /* cpu matmul weights: "f32" | "q8" | "q4" | "auto" (by GGUF type); NULL = f32 */
} backend_params_t;

typedef struct {
    char name[16];                /* "cpu" | "cuda" */
    char device[128];             /* "cpu (2 threads)", "NVIDIA H100 80GB HBM3" */
    backend_dtype_t weight_dtype; /* matmul weights and the embedding table */
    bool weight_by_type;          /* cpu_weights auto: each matrix in the layout its GGUF type
                                     maps onto (model.c tensor_wdt), weight_dtype the most
                                     compact one allowed */
    backend_dtype_t kv_dtype;
    int n_threads;                /* cpu threads used (1 for cuda) */
} backend_info_t;

/* Per-layer attention geometry. */
typedef struct {
    int n_heads;      /* query heads */
    int n_kv_heads;   /* divides n_heads; query head h reads kv head h / (n_heads / n_kv_heads) */
    int head_dim;
    int block_size;   /* tokens per KV block */
    float scale;      /* softmax scale, 1/sqrt(head_dim) */
    int window;       /* > 0: a query at position p attends to positions p - window + 1 .. p only
                         (sliding-window layers); 0: to every earlier position */
} backend_attn_t;

/* Counters a backend may keep (get_stats below). A "step" is the work issued between
 * one download (or synchronize) and the next: one model_forward call. */
typedef struct {
    uint64_t steps;
    double busy_ms;            /* device time from a step's first op to its end */
    double idle_ms;            /* device idle from one step's end to the next step's first op */
    uint64_t graph_captures;   /* graphs instantiated */
    uint64_t graph_replays;    /* steps launched from a captured graph */
    uint64_t graph_nodes;      /* nodes (kernels, library calls) of the last graph captured */
} backend_stats_t;

/* What a backend asks for when the caller leaves a setting at 0 / NULL. The engine and
 * model_load read these from the table instead of guessing by the backend's name. */
typedef struct {
    int max_seqs;                 /* sequences per step (engine max_seqs = 0) */
    int max_batch_tokens;         /* tokens per step (engine max_batch_tokens = 0) */
    backend_dtype_t weight_dtype; /* params.dtype NULL (the cpu backend has no other) */
    backend_dtype_t kv_dtype;     /* params.kv_dtype NULL */
} backend_defaults_t;

typedef struct backend_ops {
    const char *name;
    backend_defaults_t defaults;
    /* Devices present (cpu: 1). Used by "auto"; must not fail loudly. */
    int (*device_count)(void);
    /* Creates a context; NULL with a message in err. Fills *info. */
    void *(*init)(const backend_params_t *p, backend_info_t *info, char *err, size_t errlen);
    void (*destroy)(void *ctx); /* accepts NULL */

    /* ---- memory ---- */
    void *(*alloc)(void *ctx, size_t bytes);  /* NULL when out of memory; contents undefined */
    void (*free)(void *ctx, void *buf);       /* accepts NULL */
    /* Device memory (free, total) in bytes; -1 when the backend computes in host memory. */
    int (*mem_info)(void *ctx, size_t *free_bytes, size_t *total_bytes);
    void (*upload)(void *ctx, void *dst, const void *src, size_t bytes);   /* src host */
    int (*download)(void *ctx, void *dst, const void *src, size_t bytes);  /* dst host; waits; 0 | -1 */
    /* Converts n elements of a GGUF tensor (host memory, any quant.h type) into dst of
     * type dst_type. 0, or -1 when the type is unsupported (last_error says). */
    int (*load_tensor)(void *ctx, void *dst, backend_dtype_t dst_type, gguf_ttype_t src_type,
                       const void *src, int64_t n);
    int (*synchronize)(void *ctx);            /* waits for queued work; 0 | -1 (sticky error) */
    const char *(*last_error)(void *ctx);     /* "" when none */

    /* ---- compute ---- */
    /* out (n, dim) f32 = table[ids[i]] (table (vocab, dim) in weight_dtype). */
    void (*embed)(void *ctx, float *out, const void *table, const int32_t *ids, int n, int dim);
    /* out (n, dim) = src[rows[i]] (f32 rows of a (?, dim) matrix). */
    void (*get_rows)(void *ctx, float *out, const float *src, const int32_t *rows, int n, int dim);
    /* Per row: if add: x += add (the residual stream, in place); then
     * out = x / sqrt(mean(x^2) + eps) * w.  x, add, out (n, dim); w (dim). out != x. */
    void (*rmsnorm)(void *ctx, float *out, float *x, const float *add, const float *w, int n, int dim,
                    float eps);
    /* y (n, out) = x (n, in) W^T (+ bias (out) when not NULL); W (out, in) in weight_dtype. */
    void (*matmul)(void *ctx, float *y, const float *x, const void *w, const float *bias, int n, int in,
                   int out);
    /* Rotates, in place, the first rope_dim dims of n_heads consecutive heads of head_dim
     * floats at the start of each of n rows (row i at x + i * row_stride) by angle
     * pos[i] * inv_freq[j], j < rope_dim / 2. neox: pairs (j, j + rope_dim/2) (GPT-NeoX,
     * HF "rotate_half", qwen2 GGUFs); else pairs (2j, 2j+1) (GGML_ROPE_TYPE_NORM, llama
     * GGUFs, whose q/k rows convert_hf_to_gguf permuted to this order). */
    void (*rope)(void *ctx, float *x, int n, int row_stride, int n_heads, int head_dim, int rope_dim,
                 const int32_t *pos, const float *inv_freq, bool neox);
    /* Writes the K and V rows of n tokens (k, v: row i at +i*row_stride, n_kv_heads*head_dim
     * floats) into the layer's caches kc, vc at (seq[i], pos[i]) through the block table. */
    void (*kv_write)(void *ctx, void *kc, void *vc, const float *k, const float *v, int row_stride,
                     const int32_t *pos, const int32_t *seq, const int32_t *block_table, int table_stride,
                     int n, const backend_attn_t *a);
    /* Ragged-batch attention over the paged cache: token i (query row at q + i*q_stride,
     * n_heads*head_dim floats) attends to positions 0..pos[i] of sequence seq[i] (causal;
     * its own K/V already written), softmax(scale q.k) v with f32 accumulation and an
     * online softmax. out (n, n_heads*head_dim). */
    void (*attention)(void *ctx, float *out, const float *q, int q_stride, const void *kc, const void *vc,
                      const int32_t *pos, const int32_t *seq, const int32_t *block_table, int table_stride,
                      int n, const backend_attn_t *a);
    /* out (n, ffn) = silu(gu[:, :ffn]) * gu[:, ffn:]   (gu (n, 2*ffn): gate | up). */
    void (*swiglu)(void *ctx, float *out, const float *gu, int n, int ffn);

    /* ---- optional: NULL where a backend has nothing to do or cannot (the cpu table
     * fills reserve and load_matrix only). Appended at the end so existing tables stay valid. ---- */
    /* Called by model_load after the weights and before sizing the KV cache, with the
     * largest step: max_tokens per call, the widest matmul input (max of d_model, ffn,
     * n_heads*head_dim) and the attention geometry. The backend allocates its scratch
     * now, so mem_info afterwards accounts for it and no op allocates. 0 | -1. */
    int (*reserve)(void *ctx, int max_tokens, int max_in, const backend_attn_t *a);
    /* Graphs of whole steps (CUDA graphs), keyed by the caller, e.g. a decode-only step
     * padded to a batch-size bucket. Protocol for one step:
     *   if (graph_replay(ctx, key) == 1) -> nothing else to issue for this step;
     *   else if (graph_begin(ctx, key) == 0) { issue the ops; graph_end(ctx, key); }
     *   else issue the ops eagerly (graph_begin declines the first time it sees a key,
     *   so that one eager run loads every kernel before anything is captured).
     * Between graph_begin and graph_end only compute ops are allowed: alloc, upload,
     * download, load_tensor, synchronize and reserve fail (sticky). A replay reuses
     * every pointer and size of the capture: upload the step's inputs (tokens, pos,
     * seq, block table, logit rows) into the SAME buffers before graph_replay, and pad
     * the batch to the key's size with tokens whose K/V go to a scratch block.
     * graph_end instantiates the capture, launches it once and returns 0 | -1. */
    int (*graph_replay)(void *ctx, int key);
    int (*graph_begin)(void *ctx, int key);
    int (*graph_end)(void *ctx, int key);
    /* out (n) int32 = argmax of each row of logits (n, vocab) f32, lowest index on ties:
     * greedy sampling without downloading n * vocab floats. inv_temp (n f32) and keys
     * (n u64), device buffers or both NULL: a row with inv_temp > 0 takes the Gumbel-max
     * draw of gumbel.h for its key instead (temperature sampling, the host sampler's
     * sampler_gumbel). */
    void (*argmax)(void *ctx, int32_t *out, const float *logits, int n, int vocab, const float *inv_temp,
                   const uint64_t *keys);
    /* Fills *st (counters since init). 0 | -1. */
    int (*get_stats)(void *ctx, backend_stats_t *st);
    /* Optional (NULL = not available): argmax as above where row r only considers the
     * tokens whose bit is set in its packed mask, masks (n, (vocab + 31) / 32) u32 on the
     * device (grammar.h's layout; constrained decoding): the others count as -inf in the
     * argmax and the Gumbel draw alike. Host twin: sampler_pick_masked. */
    void (*argmax_masked)(void *ctx, int32_t *out, const float *logits, int n, int vocab, const float *inv_temp,
                          const uint64_t *keys, const uint32_t *masks);
    /* Converts a (rows, cols) GGUF matrix (host memory, any quant.h type) into dst
     * (backend_weight_bytes(dst_type, rows, cols)), for the matmul weight and embedding
     * dtypes the backend's info.weight_dtype allows (cpu: Q8 / Q4 with info Q8 / Q4, and
     * every load_tensor type). The backend remembers the dtype it wrote at dst: matmul and
     * embed read W in that dtype (so one model may mix Q4, Q8 and f32 matrices). Parts
     * of one fused matrix (wq|wk|wv) go to consecutive offsets with the same dtype.
     * NULL: load_tensor only. 0, or -1 (last_error says). */
    int (*load_matrix)(void *ctx, void *dst, backend_dtype_t dst_type, gguf_ttype_t src_type, const void *src,
                       int64_t rows, int64_t cols);

    /* ---- model families beyond llama (gemma3, qwen3; docs/models.md). NULL / false:
     * model_load refuses a model that needs them, naming the op. ---- */
    /* QK-norm, in place: each of the first n_heads heads of head_dim floats at the start
     * of each of n rows (row i at x + i * row_stride) becomes h / sqrt(mean(h^2) + eps) * w
     * (w (head_dim) f32). */
    void (*head_norm)(void *ctx, float *x, int n, int row_stride, int n_heads, int head_dim, const float *w,
                      float eps);
    /* out (n, ffn) = gelu_tanh(gu[:, :ffn]) * gu[:, ffn:]   (GeGLU; gelu_tanh(x) =
     * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), PyTorch's approximate="tanh"). */
    void (*geglu)(void *ctx, float *out, const float *gu, int n, int ffn);
    /* x (n) *= s, in place (gemma3's embeddings times sqrt(d_model)). */
    void (*scale)(void *ctx, float *x, int64_t n, float s);
    /* true: attention honours backend_attn_t.window (kv_write writes every position). */
    bool attn_window;

    /* ---- native GGUF weights on the device (model.gpu_weights; docs/cuda.md). NULL:
     * the backend has none, and load_matrix takes no GQ* dtype. ---- */
    /* True when w starts a matrix load_matrix wrote in a GQ* dtype: matmul reads it
     * natively; an op that only takes 16-bit weights (a fused norm/glu matmul) must
     * fall back to matmul for it. */
    bool (*weight_native)(void *ctx, const void *w);

    /* ---- fused ops: fewer kernels per layer (docs/cuda.md, "Fused ops"). Optional: NULL =
     * not provided, and model.c issues the unfused sequence each one replaces (the cpu
     * table leaves them NULL). Each computes what that sequence computes, with the
     * numerics docs/cuda.md states. W must be in info.weight_dtype and 16-bit (f16 /
     * bf16): model.c asks one predicate per matrix (model.c's weight_fusable) first. ---- */
    /* rmsnorm(h, x, add, norm_w) then matmul(y, h, W, bias): if add, x += add (written
     * back); y (n, out) = (x / sqrt(mean(x^2) + eps) * norm_w) W^T (+ bias), the normed
     * rows going to the matmul as its 16-bit input directly (h is never stored). */
    void (*norm_matmul)(void *ctx, float *y, float *x, const float *add, const float *norm_w, float eps, const void *w,
                        const float *bias, int n, int in, int out);
    /* The rows of qkv (n, (n_heads + 2 n_kv_heads) * head_dim) are q | k | v heads:
     * adds bias (NULL = none) to each row, rotates q and k as rope() does, writes the
     * rotated q back in place and k, v into the layer's caches kc, vc as kv_write() does.
     * The k and v columns of qkv are left unspecified. */
    void (*qkv_rope_kv)(void *ctx, float *qkv, const float *bias, int n, int rope_dim, const int32_t *pos,
                        const float *inv_freq, bool neox, void *kc, void *vc, const int32_t *seq,
                        const int32_t *block_table, int table_stride, const backend_attn_t *a);
    /* swiglu() (geglu() when gelu) then matmul() without bias: y (n, out) = glu(gu) W^T
     * (gu (n, 2 ffn), W (out, ffn)); accumulate: y += glu(gu) W^T instead (the residual
     * add of the sub-layer output, as matmul_res). */
    void (*glu_matmul)(void *ctx, float *y, const float *gu, bool gelu, const void *w, int n, int ffn, int out,
                       bool accumulate);
    /* matmul() then the residual add: y (n, out) += x (n, in) W^T, the f32 sum y + (x W^T)
     * rounded once, as `tmp = x W^T; y += tmp` rounds it. */
    void (*matmul_res)(void *ctx, float *y, const float *x, const void *w, int n, int in, int out);
} backend_ops_t;

/* An open backend: the table, its context and what it chose. */
typedef struct {
    const backend_ops_t *ops;
    void *ctx;
    backend_info_t info;
} backend_t;

/* The table `name` stands for: "cpu" | "cuda" | "auto" (the first backend built into
 * this binary with a device present: cuda, else cpu). Opens no device; the defaults of
 * what backend_open(name) would open. The CUDA table lives in a shared module
 * (libkrill-cuda.so, backend_module.h) loaded by the first call that needs it: "cuda",
 * or "auto" where the NVIDIA driver library is present. NULL with a message in err
 * ("backend 'cuda': not built ...", "... cannot load the module ...", "unknown backend
 * ..."); "auto" falls back to cpu when the module cannot load. */
const backend_ops_t *backend_find(const char *name, char *err, size_t errlen);
/* True when `name` ("cpu" | "cuda") is built into this binary and its table can be had
 * (for cuda: the module loads, which this call tries). Whether a device is present is
 * another matter: ops->device_count(). */
bool backend_available(const char *name);

/* Opens backend_find(name). NULL with a message in err. */
backend_t *backend_open(const char *name, const backend_params_t *p, char *err, size_t errlen);
void backend_close(backend_t *b); /* accepts NULL */

/* The tables, defined by each backend (src/engine/cpu/backend_cpu.c;
 * kernels/backend_cuda.cu: the entry point of libkrill-cuda.so, which backend.c looks
 * up with dlsym, or linked into the program under KRILL_CUDA_STATIC). Outside the
 * backends themselves, reach them only through backend_find / backend_open. */
const backend_ops_t *backend_cpu_ops(void);
const backend_ops_t *backend_cuda_ops(void);

#endif
