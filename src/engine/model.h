/* model.h — the llama-family forward pass, written once against backend.h.
 *
 * One call runs a ragged batch: a flat list of tokens, each with its sequence and
 * position; tokens of one sequence are contiguous and in position order, and the
 * K/V of every earlier position of that sequence is already in the paged cache
 * (written by previous calls). The call writes this batch's K/V into the blocks named
 * by the block table and returns logits only for the requested rows. */
#ifndef KRILL_MODEL_H
#define KRILL_MODEL_H

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
    int kv_block_size;          /* tokens per KV block */
    int64_t kv_cache_tokens;    /* cpu: capacity; cuda: 0 = from free memory */
    double gpu_memory_fraction;
} model_params_t;

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
/* logits: (n_logits, n_vocab) f32, host memory. 0 or -1 (backend failure). */
int model_forward(model_t *m, const model_batch_t *b, float *logits);

#endif
