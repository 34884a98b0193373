/* model.h — the llama-family forward pass, written once against backend.h.
 * (Where this part sits among the others: docs/architecture.md.)
 *
 * Memory (docs/engine.md): weights are dequantized once at load into the backend's
 * weight dtype (cpu: f32; cuda with gpu_weights native: supported GGUF matrices kept
 * as they are, docs/cuda.md), wq|wk|wv fused into one (q_dim + 2 kv_dim, d_model) matrix
 * and gate|up into one (2 ffn, d_model) matrix; activations are allocated once for
 * max_batch_tokens; the KV cache holds model_kv_blocks() blocks of kv_block_size
 * tokens for every layer. Nothing is allocated by model_forward.
 *
 * One call runs a ragged batch: a flat list of tokens, each with its sequence and
 * position; tokens of one sequence are contiguous and in position order, and the
 * K/V of every earlier position of that sequence is already in the paged cache
 * (written by previous calls). The call writes this batch's K/V into the blocks named
 * by the block table and returns logits only for the requested rows.
 *
 * Decode-only batches (one token per sequence, sequence i = token i, every row
 * sampled) on a backend with graphs (CUDA) are padded to a bucket size (1, 2, 4, 8,
 * 16, 32, 48, 64, 96, 128, then steps of 64) with rows whose K/V go to one scratch KV
 * block, use a fixed block-table stride (the caller's max_blocks) and the same device
 * buffers every step, and are replayed from a graph captured once per bucket. Every
 * other batch runs eagerly. */
#ifndef KRILL_MODEL_H
#define KRILL_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "hparams.h"

typedef struct model model_t;

typedef struct {
    const char *backend;        /* "cpu" | "cuda" | "auto" */
    const char *dtype;          /* cuda weights "bf16" | "f16" */
    int n_threads;              /* cpu threads, 0 = online cores */
    int max_batch_tokens;       /* largest n_tokens per call: activations sized for it */
    int max_seqs;               /* largest n_seqs per call */
                                /* both: 0 = the backend's defaults (backend_defaults_t) */
    int kv_block_size;          /* tokens per KV block */
    int64_t kv_cache_tokens;    /* cpu: capacity; cuda: 0 = from free memory */
    double gpu_memory_fraction;
    const char *kv_dtype;       /* KV cache storage "f16" | "f32"; NULL = the backend's default */
    int no_graphs;              /* 1: never replay decode steps from graphs (tests, debugging) */
    int logit_chunk;            /* rows per LM-head chunk; 0 = as many as 128 MiB of f32 logits
                                 * hold (tests set a few rows to run wide decode buckets in chunks) */
    const char *cpu_weights;    /* cpu matmul weights "auto" | "f32" | "q8" | "q4"; NULL = f32 */
    const char *gpu_weights;    /* device matmul weights "auto" | "bf16" | "native"; NULL = auto: native
                                   keeps the file's Q8_0/Q4_0/Q4_1/Q4_K/Q6_K matrices as they are
                                   (docs/cuda.md, "Device weight formats"); a backend without
                                   native weights (cpu) refuses "native" and ignores the others */
} model_params_t;

/* Defaults applied by model_load for fields left 0 (max_batch_tokens and max_seqs
 * come from the backend's table, backend.h): */
#define MODEL_DEFAULT_KV_BLOCK_SIZE 16
/* cpu, kv_cache_tokens == 0: min(4 * n_ctx_train, what fits in this many bytes) */
#define MODEL_DEFAULT_CPU_KV_BYTES ((int64_t)512 << 20)

typedef struct {
    int n_tokens;
    const int32_t *tokens;      /* (n_tokens) */
    const int32_t *pos;         /* (n_tokens) position within its sequence */
    const int32_t *seq;         /* (n_tokens) sequence index in [0, n_seqs) */
    int n_seqs;
    const int32_t *seq_len;     /* (n_seqs) cached tokens after this batch (last pos + 1) */
    const int32_t *block_table; /* (n_seqs, max_blocks) physical KV block ids */
    int max_blocks;             /* row stride of block_table */
    int n_logits;
    const int32_t *logit_rows;  /* (n_logits) token rows whose logits are wanted */
} model_batch_t;

/* Loads weights from an open GGUF (the caller keeps g open until model_free) and
 * allocates activations for max_batch_tokens and the KV cache. */
model_t *model_load(const gguf_t *g, const model_params_t *p, char *err, size_t errlen);
void model_free(model_t *m); /* accepts NULL */
const hparams_t *model_hparams(const model_t *m);
int64_t model_kv_blocks(const model_t *m);   /* physical KV blocks allocated */
const char *model_backend_name(const model_t *m);
const char *model_device_name(const model_t *m);
int model_kv_block_size(const model_t *m);  /* tokens per KV block */
int model_max_batch_tokens(const model_t *m); /* the sizes it was loaded for (defaults applied) */
int model_max_seqs(const model_t *m);
/* Bytes held on the backend: weights, KV cache, activations + index buffers. */
void model_memory(const model_t *m, size_t *weights, size_t *kv, size_t *activations);
/* logits: (n_logits, n_vocab) f32, host memory. 0, or -1 for a batch that breaks the
 * rules above (sizes over the load-time maxima, ids out of range) or a backend
 * failure; model_last_error() says which. A rejected batch changes nothing. */
int model_forward(model_t *m, const model_batch_t *b, float *logits);
/* The same forward pass, but only the chosen token of each requested row crosses to
 * the host: ids (n_logits) = argmax of the row's logits, lowest id on ties (the
 * sampler's temperature-0 rule), or, for a row with inv_temp[i] > 0, the Gumbel-max draw
 * sampler_gumbel(row, inv_temp[i], keys[i]) (temperature sampling; gumbel.h).
 * inv_temp/keys (n_logits) may both be NULL: all argmax. On a backend with an argmax
 * op the logits never leave the device; without one each row is downloaded and
 * reduced on the host. */
int model_forward_argmax(model_t *m, const model_batch_t *b, int32_t *ids, const float *inv_temp,
                         const uint64_t *keys);
/* model_forward_argmax for constrained rows: row i only considers the tokens whose bit
 * is set in masks + i * ((n_vocab + 31) / 32) (host memory, grammar.h's packed layout;
 * an unconstrained row passes all ones). ready(ready_ctx), when given, is called once
 * after the forward pass is issued and before the masks are read, so the caller can
 * compute them meanwhile (on a GPU the layers run while it waits). A backend with an
 * argmax_masked op uploads the masks and downloads only ids; else each row is reduced
 * on the host by sampler_pick_masked. */
int model_forward_argmax_masked(model_t *m, const model_batch_t *b, int32_t *ids, const float *inv_temp,
                                const uint64_t *keys, const uint32_t *masks, void (*ready)(void *), void *ready_ctx);
const char *model_last_error(const model_t *m); /* "" when none */
/* True when model_forward_argmax draws on the device (the backend has an argmax op). */
bool model_device_argmax(const model_t *m);

/* Device counters (backend_stats_t, backend.h): device-busy and idle time between
 * steps, graph captures and replays. Zeros on a backend without counters (cpu).
 * Engine thread only (the backend updates them in model_forward). */
typedef struct {
    uint64_t steps, graph_captures, graph_replays;
    uint64_t graph_nodes; /* nodes of the last graph captured (kernels per step) */
    double busy_ms, idle_ms;
} model_stats_t;
void model_get_stats(const model_t *m, model_stats_t *st);

#endif
