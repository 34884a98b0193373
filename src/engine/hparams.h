/* hparams.h — model hyper-parameters of the llama family, read from GGUF metadata.
 * (Where this part sits among the others: docs/architecture.md.)
 *
 * Keys are "<arch>.<name>" with arch = general.architecture ("llama", "qwen2", "qwen3",
 * "gemma3"; HPARAMS_SUPPORTED).
 * Every value is range-checked (positive, divisible where it must be, tensor shapes
 * agreeing); an error names the key. */
#ifndef KRILL_HPARAMS_H
#define KRILL_HPARAMS_H

#include <stdbool.h>
#include <stddef.h>

#include "gguf.h"

typedef enum { HPARAMS_ROPE_NONE = 0, HPARAMS_ROPE_LINEAR, HPARAMS_ROPE_LLAMA3 } hparams_rope_scaling_t;

typedef struct {
    char arch[32];            /* general.architecture */
    char name[128];           /* general.name or "" */
    int n_layers;             /* <arch>.block_count */
    int d_model;              /* <arch>.embedding_length */
    int n_heads;              /* <arch>.attention.head_count */
    int n_kv_heads;           /* <arch>.attention.head_count_kv (default n_heads) */
    int head_dim;             /* <arch>.attention.key_length, else d_model / n_heads */
    int ffn_dim;              /* <arch>.feed_forward_length */
    int n_vocab;              /* token_embd.weight ne[1] (== tokenizer.ggml.tokens length) */
    int n_ctx_train;          /* <arch>.context_length */
    float rope_base;          /* <arch>.rope.freq_base (default 10000) */
    int rope_dim;             /* <arch>.rope.dimension_count (default head_dim) */
    hparams_rope_scaling_t rope_scaling;
    float rope_factor;        /* <arch>.rope.scaling.factor */
    float rope_low_freq_factor, rope_high_freq_factor; /* llama3 (defaults 1, 4) */
    int rope_orig_ctx;        /* <arch>.rope.scaling.original_context_length (default 8192) */
    float rms_eps;            /* <arch>.attention.layer_norm_rms_epsilon */
    bool tied_embeddings;     /* no output.weight tensor: the LM head is token_embd */
    bool qkv_bias;            /* blk.N.attn_{q,k,v}.bias present (qwen2) */
    bool rope_freqs;          /* rope_freqs.weight (F32, rope_dim/2) present: llama.cpp's precomputed
                                 llama3 factors; rope_scaling is then HPARAMS_ROPE_LLAMA3 and the
                                 model divides each frequency by the tensor's value */
    /* families beyond llama (gemma3, qwen3) and sliding-window attention */
    bool qk_norm;             /* blk.N.attn_{q,k}_norm.weight (head_dim): RMSNorm per head on q and k */
    bool post_norms;          /* gemma3: blk.N.post_attention_norm / post_ffw_norm on each sub-layer's output */
    bool geglu;               /* gemma3: gelu_tanh(gate) * up instead of silu(gate) * up */
    bool neox;                /* RoPE on pairs (j, j + rope_dim/2): qwen2, qwen3, gemma3 */
    float embd_scale;         /* token embeddings are multiplied by this (gemma3: sqrt(d_model); else 1) */
    float attn_scale;         /* softmax scale: 1/sqrt(head_dim) (gemma3 270M..12B: query_pre_attn_scalar = head_dim) */
    int sliding_window;       /* <arch>.attention.sliding_window: a local layer attends to the last W positions
                                 (its own included); 0 = every layer global */
    int swa_pattern;          /* gemma3: every swa_pattern-th layer is global, the others local
                                 (<arch>.attention.sliding_window_pattern, default 6 as llama.cpp);
                                 0 = every layer local when sliding_window > 0 (Mistral style) */
    float rope_base_local;    /* RoPE base of local layers, unscaled (gemma3: 10000 as llama.cpp; else rope_base) */
} hparams_t;

#define HPARAMS_SUPPORTED "llama, qwen2, qwen3, gemma3"

/* Supported architectures: HPARAMS_SUPPORTED. A llama3-scaled model states
 * <arch>.rope.scaling.type = "llama3" with .factor, .low_freq_factor, .high_freq_factor
 * and .original_context_length, or ships rope_freqs.weight. "yarn"/"longrope" are
 * rejected. All tensors of every layer are checked for presence and shape. */

int hparams_load(const gguf_t *g, hparams_t *hp, char *err, size_t errlen);

/* True when layer l attends to a sliding window (hp->sliding_window positions). */
bool hparams_layer_local(const hparams_t *hp, int l);

#endif
