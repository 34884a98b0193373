/* model.c — the llama-family forward pass (llama, qwen2, qwen3, gemma3), written once
 * against the backend table (backend.h); no backend #ifdefs here.
 *
 * Rules:
 * - Everything is allocated in model_load: weights, the KV cache, activations for
 *   max_batch_tokens rows, index buffers, the logits staging for one chunk of rows.
 *   model_forward allocates nothing and validates the whole batch before touching
 *   any state, so a bad batch is refused without side effects.
 * - Weights as the file stores them, converted to the backend's weight dtype, or with
 *   gpu_weights native (model_gpu_weights) the supported GGUF matrices kept as they are
 *   on the device (the embedding table stays in the weight dtype); q/k
 *   rows keep llama.cpp's GGUF order and RoPE is chosen to match it: adjacent pairs
 *   for "llama" (convert_hf_to_gguf permuted q/k), NEOX halves for the others.
 * - Family parts (hparams.h): embeddings scaled (gemma3), QK-norm after the q/k/v
 *   projection and before RoPE (qwen3, gemma3), post-norms on each sub-layer's output
 *   before it joins the residual stream (gemma3; the GGUF stores Gemma's 1 + w, so
 *   the plain rmsnorm applies), GeGLU (gemma3), and per layer either global
 *   attention or a sliding window with its own RoPE frequencies (local layers).
 * - Residual stream x stays f32; each rmsnorm first adds the previous sub-layer's
 *   output (fused residual add), or, with the backend's fused ops (backend.h), the
 *   sub-layer's last matmul adds it (matmul_res, glu_matmul). Whether a matmul takes a
 *   fused op is decided per matrix by weight_fusable; without the ops (the cpu backend)
 *   the sequence is the unfused one. The final norm and the LM head run only for the
 *   requested logit rows, in chunks of at most logit_chunk rows.
 * - Decode-only batches on a backend with graphs are padded to a bucket and replayed
 *   from a graph (model.h): the padded rows use token 0, position 0, their own block
 *   table row pointing at the scratch KV block (one block past the n_blocks the
 *   scheduler manages), and the table stride is the caller's max_blocks, so that every
 *   pointer and size the graph captured depends on the bucket only. A bucket wider
 *   than the logits chunk is graphed too: the graph then holds the layers only and
 *   the head runs after the replay, chunk by chunk, each chunk taken before the next
 *   overwrites the logits buffer.
 * - The only wait in a step is the download of its logits or sampled ids. */
#include "err.h"
#include "model.h"
#include "sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "log.h"

typedef struct {
    float *attn_norm; /* (d_model) */
    void *wqkv;       /* (q_dim + 2 kv_dim, d_model) wq | wk | wv */
    float *bqkv;      /* (q_dim + 2 kv_dim) or NULL */
    void *wo;         /* (d_model, q_dim) */
    float *ffn_norm;  /* (d_model) */
    void *wgu;        /* (2 ffn, d_model) gate | up */
    void *wdown;      /* (d_model, ffn) */
    float *q_norm, *k_norm;              /* (head_dim) or NULL: QK-norm */
    float *post_attn_norm, *post_ffn_norm; /* (d_model) or NULL: gemma3 */
    /* which matmuls take the backend's fused ops (weight_fusable and the op present) */
    bool fz_qkv, fz_o, fz_gu, fz_down;
} layer_t;

struct model {
    hparams_t hp;
    backend_t *be;
    const backend_ops_t *ops;
    void *bctx;
    int max_tokens, max_seqs, block_size, logit_chunk, table_cap;
    int64_t n_blocks;
    int q_dim, kv_dim, qkv_dim;
    bool neox;
    backend_attn_t attn;
    backend_attn_t attn_local; /* the local layers' geometry: attn with the sliding window */
    size_t wsize; /* bytes per weight element */
    bool native;  /* gpu_weights: matmul weights kept in the file's GGUF types (GQ* dtypes) */
    size_t bytes_weights, bytes_kv, bytes_act;

    /* weights */
    void *tok_embd;   /* (n_vocab, d_model) */
    void *lm_head;    /* (n_vocab, d_model): tok_embd when tied */
    float *out_norm;  /* (d_model) */
    float *inv_freq;  /* (rope_dim / 2) */
    float *inv_freq_local; /* (rope_dim / 2) of local layers (== inv_freq when their bases agree) */
    layer_t *layers;  /* (n_layers) */

    /* KV cache: (n_layers, n_blocks, n_kv_heads, block_size, head_dim) each */
    void *kcache, *vcache;
    size_t kv_layer_bytes;

    /* activations, (max_tokens, ...) f32 */
    float *x;      /* (T, d_model) residual stream */
    float *h;      /* (T, d_model) normed input of a sub-layer */
    float *tmp;    /* (T, d_model) sub-layer output before the residual add */
    float *qkv;    /* (T, qkv_dim) */
    float *att;    /* (T, q_dim) */
    float *gu;     /* (T, 2 ffn) */
    float *act;    /* (T, ffn) */
    float *post;   /* (T, d_model) post-normed sub-layer output (gemma3), else NULL */
    const float *last; /* the last sub-layer's output, added into x by the final norm */
    float *rows_x, *rows_d, *rows_h; /* (logit_chunk, d_model) */
    float *logits;                   /* (logit_chunk, n_vocab) */
    int32_t *d_tokens, *d_pos, *d_seq, *d_rows; /* (T) */
    int32_t *d_table;                /* (max_seqs, table_cap) */
    int32_t *h_table;                /* host staging of the compacted table */
    int32_t *d_ids;                  /* (logit_chunk) argmax results */
    float *d_itemp;                  /* (logit_chunk) 1 / temperature of Gumbel rows, 0 = argmax */
    uint64_t *d_keys;                /* (logit_chunk) their Gumbel keys */
    uint32_t *d_masks;               /* (logit_chunk, (n_vocab + 31) / 32) packed grammar masks
                                        (argmax_masked backends only) */
    float *h_row;                    /* (n_vocab) host row for argmax without a backend op */
    int32_t *h_tok, *h_pos, *h_seq, *h_rows; /* (max_seqs) padded decode batch */
    bool graphs;                     /* decode steps replayed from graphs */
    bool fz_rope;                    /* qkv_rope_kv replaces bias + rope + kv_write */
    int n_fused;                     /* matmuls (all layers) that take a fused op */
    int32_t scratch_block;           /* KV block of the padding rows (graphs) */

    void **bufs; /* every backend buffer, freed by model_free */
    int n_bufs, cap_bufs;
    char err[256];
};

/* A backend buffer owned by the model. */
static void *balloc(model_t *m, size_t bytes, size_t *account, char *err, size_t errlen) {
    if (m->n_bufs == m->cap_bufs) {
        int cap = m->cap_bufs ? m->cap_bufs * 2 : 64;
        void **nb = realloc(m->bufs, sizeof(void *) * (size_t)cap);
        if (!nb) goto oom;
        m->bufs = nb;
        m->cap_bufs = cap;
    }
    void *p = m->ops->alloc(m->bctx, bytes ? bytes : 1);
    if (!p) goto oom;
    m->bufs[m->n_bufs++] = p;
    if (account) *account += bytes;
    return p;
oom:
    err_set(err, errlen, "%s backend: out of memory allocating %zu bytes (lower max_batch_tokens or the KV "
                        "cache size)", m->be->info.name, bytes);
    return NULL;
}

static const gguf_tensor_t *want(const gguf_t *g, const char *name, uint64_t ne0, uint64_t ne1, char *err,
                                 size_t errlen) {
    const gguf_tensor_t *t = gguf_find_tensor(g, name);
    if (!t) {
        err_set(err, errlen, "tensor '%s' is missing (the file is not a complete llama-family model)", name);
        return NULL;
    }
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1) {
        err_set(err, errlen, "tensor '%s' has shape [%llu, %llu, %llu, %llu], expected [%llu, %llu]", name,
               (unsigned long long)t->ne[0], (unsigned long long)t->ne[1], (unsigned long long)t->ne[2],
               (unsigned long long)t->ne[3], (unsigned long long)ne0, (unsigned long long)ne1);
        return NULL;
    }
    return t;
}

/* Converts tensor `name` (ne0 x ne1) into dst (already allocated, dst_type). */
static int load_into(model_t *m, const gguf_t *g, const char *name, uint64_t ne0, uint64_t ne1, void *dst,
                     backend_dtype_t dst_type, char *err, size_t errlen) {
    const gguf_tensor_t *t = want(g, name, ne0, ne1, err, errlen);
    if (!t) return -1;
    const bool q = dst_type == BACKEND_DT_Q8 || dst_type == BACKEND_DT_Q4 || backend_dtype_gpuq(dst_type) >= 0;
    if (q ? m->ops->load_matrix(m->bctx, dst, dst_type, t->type, t->data, (int64_t)ne1, (int64_t)ne0)
          : m->ops->load_tensor(m->bctx, dst, dst_type, t->type, t->data, (int64_t)(ne0 * ne1))) {
        err_set(err, errlen, "tensor '%s': %s", name, m->ops->last_error(m->bctx));
        return -1;
    }
    gguf_release_tensor(g, t); /* converted: its file pages may go (peak RSS at load) */
    return 0;
}

/* The dtype matrix `name` (rows, cols) is kept in: info.weight_dtype, except under a
 * quantized one (cpu_weights q8 / q4): Q4 keeps the file's Q4_0 / Q4_1 tensors in 4
 * bits (exactly) and every other type in Q8 (Q8_0 exactly, the rest re-quantized per
 * block); auto (info.weight_by_type) keeps only what maps exactly: Q4_0 / Q4_1 -> Q4,
 * Q8_0 -> Q8, every other type (f32, f16, bf16, Q5, K-quants) f32 — re-quantizing
 * costs parity (docs/engine.md, Quantized weights). A shape the layouts cannot hold
 * stays f32. */
static backend_dtype_t tensor_wdt(const model_t *m, const gguf_t *g, const char *name, int rows, int cols) {
    const backend_dtype_t top = m->be->info.weight_dtype;
    if (m->native) { /* the file's type when the device keeps it natively, else top */
        const gguf_tensor_t *t = gguf_find_tensor(g, name);
        const int nd = t ? backend_dtype_native(t->type) : -1;
        return nd >= 0 && backend_weight_bytes((backend_dtype_t)nd, rows, cols) ? (backend_dtype_t)nd : top;
    }
    if ((top != BACKEND_DT_Q8 && top != BACKEND_DT_Q4) || !m->ops->load_matrix) return top;
    if (!backend_weight_bytes(top, rows, cols)) return BACKEND_DT_F32;
    const gguf_tensor_t *t = gguf_find_tensor(g, name);
    const bool q4_src = t && (t->type == GGUF_T_Q4_0 || t->type == GGUF_T_Q4_1);
    if (m->be->info.weight_by_type) {
        if (q4_src) return BACKEND_DT_Q4;
        return t && t->type == GGUF_T_Q8_0 ? BACKEND_DT_Q8 : BACKEND_DT_F32;
    }
    if (top == BACKEND_DT_Q4 && q4_src) return BACKEND_DT_Q4;
    return BACKEND_DT_Q8;
}

/* One dtype for a fused matrix (one matmul): the widest of its parts' (f32 > Q8 > Q4);
 * a native part beside a part of another dtype makes the whole matrix top (bf16). */
static backend_dtype_t fused_wdt(backend_dtype_t a, backend_dtype_t b, backend_dtype_t top) {
    if (backend_dtype_gpuq(a) >= 0 || backend_dtype_gpuq(b) >= 0) return a == b ? a : top;
    if (a == BACKEND_DT_F32 || b == BACKEND_DT_F32) return BACKEND_DT_F32;
    if (a == BACKEND_DT_Q8 || b == BACKEND_DT_Q8) return BACKEND_DT_Q8;
    return a;
}

/* Whether matrix w may go through the backend's fused ops (backend.h: norm_matmul,
 * glu_matmul, matmul_res read 16-bit weights): the one place that decides it, per
 * matrix. Weights in info.weight_dtype f16 / bf16 qualify; native GGUF matrices
 * (weight_native) do not. A weight format the fused ops learn to read is added here. */
static bool weight_fusable(const model_t *m, const void *w) {
    const backend_dtype_t top = m->be->info.weight_dtype;
    if (top != BACKEND_DT_F16 && top != BACKEND_DT_BF16) return false;
    return !(m->ops->weight_native && m->ops->weight_native(m->bctx, w));
}

/* embedding: the table embed() reads, never native (a gather reads few rows). */
static void *load_mat(model_t *m, const gguf_t *g, const char *name, int rows, int cols, bool embedding, char *err,
                      size_t errlen) {
    backend_dtype_t dt = tensor_wdt(m, g, name, rows, cols);
    if (embedding && backend_dtype_gpuq(dt) >= 0) dt = m->be->info.weight_dtype;
    void *p = balloc(m, backend_weight_bytes(dt, rows, cols), &m->bytes_weights, err, errlen);
    if (!p || load_into(m, g, name, (uint64_t)cols, (uint64_t)rows, p, dt, err, errlen)) return NULL;
    return p;
}

/* A fused matrix (one matmul) of n parts stacked by rows (wq|wk|wv, gate|up), parts at
 * consecutive offsets: one dtype for all (fused_wdt), except when every part is native:
 * then each keeps its own GGUF type (Q4_K_M's Q6_K attn_v beside Q4_K q and k), and
 * the backend's matmul reads the matrix part by part. */
static void *load_fused(model_t *m, const gguf_t *g, char names[][96], const int *rows, int n, int cols, char *err,
                        size_t errlen) {
    backend_dtype_t dt[3], common = BACKEND_DT_F32;
    bool all_native = true;
    for (int i = 0; i < n; i++) {
        dt[i] = tensor_wdt(m, g, names[i], rows[i], cols);
        all_native = all_native && backend_dtype_gpuq(dt[i]) >= 0;
        common = i ? fused_wdt(common, dt[i], m->be->info.weight_dtype) : dt[i];
    }
    size_t bytes = 0;
    for (int i = 0; i < n; i++) {
        if (!all_native) dt[i] = common;
        bytes += backend_weight_bytes(dt[i], rows[i], cols);
    }
    char *p = balloc(m, bytes, &m->bytes_weights, err, errlen);
    if (!p) return NULL;
    for (size_t i = 0, off = 0; i < (size_t)n; off += backend_weight_bytes(dt[i], rows[i], cols), i++)
        if (load_into(m, g, names[i], (uint64_t)cols, (uint64_t)rows[i], p + off, dt[i], err, errlen)) return NULL;
    return p;
}

static float *load_vec(model_t *m, const gguf_t *g, const char *name, int n, char *err, size_t errlen) {
    float *p = balloc(m, (size_t)n * sizeof(float), &m->bytes_weights, err, errlen);
    if (!p || load_into(m, g, name, (uint64_t)n, 1, p, BACKEND_DT_F32, err, errlen)) return NULL;
    return p;
}

/* RoPE frequencies with the model's scaling, computed in f32 as transformers does. */
static int rope_freqs(model_t *m, const gguf_t *g, float *inv, char *err, size_t errlen) {
    const hparams_t *hp = &m->hp;
    const int half = hp->rope_dim / 2;
    for (int i = 0; i < half; i++) inv[i] = 1.0f / powf(hp->rope_base, (float)(2 * i) / (float)hp->rope_dim);
    if (hp->rope_freqs) {
        /* llama.cpp: theta_i = pos * base^(-2i/d) / rope_freqs[i] */
        const gguf_tensor_t *t = want(g, "rope_freqs.weight", (uint64_t)half, 1, err, errlen);
        if (!t) return -1;
        if (t->type != GGUF_T_F32) {
            err_set(err, errlen, "tensor 'rope_freqs.weight' must be F32");
            return -1;
        }
        for (int i = 0; i < half; i++) {
            float f;
            memcpy(&f, (const char *)t->data + 4 * (size_t)i, 4);
            if (!(f > 0.0f) || !isfinite(f)) {
                err_set(err, errlen, "tensor 'rope_freqs.weight'[%d] = %g: factors must be positive and finite", i, f);
                return -1;
            }
            inv[i] /= f;
        }
    } else if (hp->rope_scaling == HPARAMS_ROPE_LINEAR) {
        for (int i = 0; i < half; i++) inv[i] /= hp->rope_factor;
    } else if (hp->rope_scaling == HPARAMS_ROPE_LLAMA3) {
        /* transformers' _compute_llama3_parameters */
        const float factor = hp->rope_factor, lo = hp->rope_low_freq_factor, hi = hp->rope_high_freq_factor;
        const float old_ctx = (float)hp->rope_orig_ctx;
        const float lo_wl = old_ctx / lo, hi_wl = old_ctx / hi;
        for (int i = 0; i < half; i++) {
            float wl = 2.0f * (float)M_PI / inv[i];
            float f = wl > lo_wl ? inv[i] / factor : inv[i];
            if (!(wl < hi_wl) && !(wl > lo_wl)) {
                float s = (old_ctx / wl - lo) / (hi - lo);
                f = (1.0f - s) * f / factor + s * f;
            }
            inv[i] = f;
        }
    }
    return 0;
}

/* model.gpu_weights: "native" keeps the file's Q8_0 / Q4_0 / Q4_1 / Q4_K / Q6_K matmul
 * weights as they are on a backend that can (weight_native; refused elsewhere); "auto"
 * does so when the weight-dtype copy of every tensor would take more than 90% of the
 * device memory the model may use (gpu_memory_fraction of what is free): the other 10%
 * are the least left for the KV cache and activations. Whether native also pays off
 * for models that fit in bf16 (its GEMV reads ~3.5x fewer bytes per token) is a
 * crossover owed to a GPU run (docs/cuda.md); until then auto only goes native when
 * bf16 cannot run at all. "bf16": never (the weight dtype, despite the name f16 too). */
static int model_gpu_weights(model_t *m, const gguf_t *g, const model_params_t *p, bool device_mem, size_t free0,
                             char *err, size_t errlen) {
    const char *w = p->gpu_weights && *p->gpu_weights ? p->gpu_weights : "auto";
    if (strcmp(w, "auto") && strcmp(w, "bf16") && strcmp(w, "native")) {
        err_set(err, errlen, "gpu_weights '%s': use \"auto\", \"bf16\" or \"native\"", w);
        return -1;
    }
    const bool can = m->ops->weight_native && m->ops->load_matrix;
    if (!strcmp(w, "native")) {
        if (!can) {
            err_set(err, errlen, "gpu_weights \"native\": the %s backend keeps no native GGUF weights (a CUDA "
                                 "option; the cpu backend's quantized weights are cpu_weights)", m->be->info.name);
            return -1;
        }
        m->native = true;
    } else if (!strcmp(w, "auto") && can && device_mem) {
        double bytes = 0;
        for (size_t i = 0; i < gguf_n_tensors(g); i++) {
            const gguf_tensor_t *t = gguf_tensor_at(g, i);
            bytes += (double)t->ne[0] * (double)t->ne[1] * (double)t->ne[2] * (double)t->ne[3] * (double)m->wsize;
        }
        const double frac = p->gpu_memory_fraction > 0 ? p->gpu_memory_fraction : 0.9;
        m->native = bytes > 0.9 * frac * (double)free0;
    }
    return 0;
}

/* The ops the model's family needs beyond the llama set: a backend without them (or
 * without a sliding window in its attention) refuses the model by name. */
static int model_family_ops(model_t *m, char *err, size_t errlen) {
    const hparams_t *hp = &m->hp;
    const char *missing = NULL;
    if (hp->qk_norm && !m->ops->head_norm) missing = "head_norm (QK-norm)";
    else if (hp->geglu && !m->ops->geglu) missing = "geglu (GELU-tanh GeGLU)";
    else if (hp->embd_scale != 1.0f && !m->ops->scale) missing = "scale (scaled embeddings)";
    else if (hp->sliding_window > 0 && !m->ops->attn_window) missing = "windowed attention";
    if (!missing) return 0;
    err_set(err, errlen, "%s backend: the %s architecture needs the op %s, which this backend lacks (use the cpu "
                        "backend)", m->be->info.name, hp->arch, missing);
    return -1;
}

model_t *model_load(const gguf_t *g, const model_params_t *p, char *err, size_t errlen) {
    static const model_params_t defaults = {0};
    if (!p) p = &defaults;
    model_t *m = calloc(1, sizeof *m);
    if (!m) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    if (hparams_load(g, &m->hp, err, errlen)) goto fail;
    const hparams_t *hp = &m->hp;

    m->block_size = p->kv_block_size > 0 ? p->kv_block_size : MODEL_DEFAULT_KV_BLOCK_SIZE;
    if (p->max_batch_tokens < 0 || p->max_seqs < 0 || p->kv_block_size < 0 || p->kv_cache_tokens < 0 ||
        p->max_batch_tokens > (1 << 20) || p->max_seqs > (1 << 16)) {
        err_set(err, errlen, "model params: max_batch_tokens %d (1..1048576), max_seqs %d (1..65536), kv_block_size %d, "
                            "kv_cache_tokens %lld must be in range (0 = default)", p->max_batch_tokens, p->max_seqs,
               p->kv_block_size, (long long)p->kv_cache_tokens);
        goto fail;
    }
    if (m->block_size > BACKEND_MAX_BLOCK_SIZE) {
        err_set(err, errlen, "kv_block_size %d is larger than %d", m->block_size, BACKEND_MAX_BLOCK_SIZE);
        goto fail;
    }
    if (hp->head_dim > BACKEND_MAX_HEAD_DIM || hp->n_heads % hp->n_kv_heads ||
        hp->n_heads / hp->n_kv_heads > BACKEND_MAX_GQA || hp->rope_dim > hp->head_dim || hp->rope_dim % 2) {
        err_set(err, errlen, "model shape not supported: head_dim %d (max %d), heads %d / kv heads %d (max ratio %d), "
                            "rope_dim %d", hp->head_dim, BACKEND_MAX_HEAD_DIM, hp->n_heads, hp->n_kv_heads,
               BACKEND_MAX_GQA, hp->rope_dim);
        goto fail;
    }
    m->neox = hp->neox;

    backend_params_t bp = {.n_threads = p->n_threads, .dtype = p->dtype, .kv_dtype = p->kv_dtype,
                           .cpu_weights = p->cpu_weights};
    m->be = backend_open(p->backend, &bp, err, errlen);
    if (!m->be) goto fail;
    m->ops = m->be->ops;
    m->bctx = m->be->ctx;
    if (model_family_ops(m, err, errlen)) goto fail;
    /* sizes left at 0: what the backend asks for (its table's defaults) */
    m->max_tokens = p->max_batch_tokens > 0 ? p->max_batch_tokens : m->ops->defaults.max_batch_tokens;
    m->max_seqs = p->max_seqs > 0 ? p->max_seqs : m->ops->defaults.max_seqs;
    m->wsize = backend_dtype_size(m->be->info.weight_dtype);
    size_t dev_free0 = 0, dev_total = 0;
    const bool device_mem = m->ops->mem_info(m->bctx, &dev_free0, &dev_total) == 0;
    if (model_gpu_weights(m, g, p, device_mem, dev_free0, err, errlen)) goto fail;

    const int d = hp->d_model, ffn = hp->ffn_dim, V = hp->n_vocab;
    m->q_dim = hp->n_heads * hp->head_dim;
    m->kv_dim = hp->n_kv_heads * hp->head_dim;
    m->qkv_dim = m->q_dim + 2 * m->kv_dim;
    m->attn = (backend_attn_t){.n_heads = hp->n_heads, .n_kv_heads = hp->n_kv_heads, .head_dim = hp->head_dim,
                               .block_size = m->block_size, .scale = hp->attn_scale};
    m->attn_local = m->attn;
    m->attn_local.window = hp->sliding_window;

    /* ---- weights */
    if (!(m->tok_embd = load_mat(m, g, "token_embd.weight", V, d, true, err, errlen))) goto fail;
    if (hp->tied_embeddings) m->lm_head = m->tok_embd;
    else if (!(m->lm_head = load_mat(m, g, "output.weight", V, d, false, err, errlen))) goto fail;
    if (!(m->out_norm = load_vec(m, g, "output_norm.weight", d, err, errlen))) goto fail;
    float inv[BACKEND_MAX_HEAD_DIM / 2];
    if (rope_freqs(m, g, inv, err, errlen)) goto fail;
    if (!(m->inv_freq = balloc(m, sizeof(float) * (size_t)(hp->rope_dim / 2), &m->bytes_weights, err, errlen)))
        goto fail;
    m->ops->upload(m->bctx, m->inv_freq, inv, sizeof(float) * (size_t)(hp->rope_dim / 2));
    m->inv_freq_local = m->inv_freq;
    if (hp->swa_pattern > 0) { /* gemma3: local layers have their own base, unscaled */
        for (int i = 0; i < hp->rope_dim / 2; i++)
            inv[i] = 1.0f / powf(hp->rope_base_local, (float)(2 * i) / (float)hp->rope_dim);
        if (!(m->inv_freq_local = balloc(m, sizeof(float) * (size_t)(hp->rope_dim / 2), &m->bytes_weights, err,
                                         errlen)))
            goto fail;
        m->ops->upload(m->bctx, m->inv_freq_local, inv, sizeof(float) * (size_t)(hp->rope_dim / 2));
    }

    m->layers = calloc((size_t)hp->n_layers, sizeof *m->layers);
    if (!m->layers) {
        err_set(err, errlen, "out of memory");
        goto fail;
    }
    for (int l = 0; l < hp->n_layers; l++) {
        layer_t *L = &m->layers[l];
        char nm[96];
#define NAME(s) (snprintf(nm, sizeof nm, "blk.%d." s, l), nm)
        if (!(L->attn_norm = load_vec(m, g, NAME("attn_norm.weight"), d, err, errlen))) goto fail;
        char parts[3][96];
        const int qkv_rows[3] = {m->q_dim, m->kv_dim, m->kv_dim}, gu_rows[2] = {ffn, ffn};
        snprintf(parts[0], sizeof parts[0], "blk.%d.attn_q.weight", l);
        snprintf(parts[1], sizeof parts[1], "blk.%d.attn_k.weight", l);
        snprintf(parts[2], sizeof parts[2], "blk.%d.attn_v.weight", l);
        if (!(L->wqkv = load_fused(m, g, parts, qkv_rows, 3, d, err, errlen))) goto fail;
        if (hp->qkv_bias) {
            if (!(L->bqkv = balloc(m, sizeof(float) * (size_t)m->qkv_dim, &m->bytes_weights, err, errlen))) goto fail;
            if (load_into(m, g, NAME("attn_q.bias"), (uint64_t)m->q_dim, 1, L->bqkv, BACKEND_DT_F32, err, errlen) ||
                load_into(m, g, NAME("attn_k.bias"), (uint64_t)m->kv_dim, 1, L->bqkv + m->q_dim, BACKEND_DT_F32, err,
                          errlen) ||
                load_into(m, g, NAME("attn_v.bias"), (uint64_t)m->kv_dim, 1, L->bqkv + m->q_dim + m->kv_dim,
                          BACKEND_DT_F32, err, errlen))
                goto fail;
        }
        L->fz_qkv = m->ops->norm_matmul && weight_fusable(m, L->wqkv);
        if (!(L->wo = load_mat(m, g, NAME("attn_output.weight"), d, m->q_dim, false, err, errlen))) goto fail;
        /* the residual add moves into wo's matmul unless a post-norm comes between */
        L->fz_o = m->ops->matmul_res && !hp->post_norms && weight_fusable(m, L->wo);
        if (!(L->ffn_norm = load_vec(m, g, NAME("ffn_norm.weight"), d, err, errlen))) goto fail;
        snprintf(parts[0], sizeof parts[0], "blk.%d.ffn_gate.weight", l);
        snprintf(parts[1], sizeof parts[1], "blk.%d.ffn_up.weight", l);
        if (!(L->wgu = load_fused(m, g, parts, gu_rows, 2, d, err, errlen))) goto fail;
        L->fz_gu = m->ops->norm_matmul && weight_fusable(m, L->wgu);
        if (!(L->wdown = load_mat(m, g, NAME("ffn_down.weight"), d, ffn, false, err, errlen))) goto fail;
        L->fz_down = m->ops->glu_matmul && weight_fusable(m, L->wdown);
        m->n_fused += L->fz_qkv + L->fz_o + L->fz_gu + L->fz_down;
        if (hp->qk_norm && (!(L->q_norm = load_vec(m, g, NAME("attn_q_norm.weight"), hp->head_dim, err, errlen)) ||
                            !(L->k_norm = load_vec(m, g, NAME("attn_k_norm.weight"), hp->head_dim, err, errlen))))
            goto fail;
        if (hp->post_norms &&
            (!(L->post_attn_norm = load_vec(m, g, NAME("post_attention_norm.weight"), d, err, errlen)) ||
             !(L->post_ffn_norm = load_vec(m, g, NAME("post_ffw_norm.weight"), d, err, errlen))))
            goto fail;
#undef NAME
    }

    /* ---- activations */
    const size_t T = (size_t)m->max_tokens, F = sizeof(float);
    m->logit_chunk = m->max_seqs < m->max_tokens ? m->max_seqs : m->max_tokens;
    if ((int64_t)m->logit_chunk * V > ((int64_t)32 << 20)) m->logit_chunk = (int)(((int64_t)32 << 20) / V);
    if (p->logit_chunk > 0 && p->logit_chunk < m->logit_chunk) m->logit_chunk = p->logit_chunk;
    if (m->logit_chunk < 1) m->logit_chunk = 1;
    const size_t C = (size_t)m->logit_chunk;
    size_t *ab = &m->bytes_act;
    if (!(m->x = balloc(m, T * d * F, ab, err, errlen)) || !(m->h = balloc(m, T * d * F, ab, err, errlen)) ||
        !(m->tmp = balloc(m, T * d * F, ab, err, errlen)) ||
        !(m->qkv = balloc(m, T * m->qkv_dim * F, ab, err, errlen)) ||
        !(m->att = balloc(m, T * m->q_dim * F, ab, err, errlen)) ||
        !(m->gu = balloc(m, T * 2 * ffn * F, ab, err, errlen)) ||
        !(m->act = balloc(m, T * ffn * F, ab, err, errlen)) ||
        (hp->post_norms && !(m->post = balloc(m, T * d * F, ab, err, errlen))) ||
        !(m->rows_x = balloc(m, C * d * F, ab, err, errlen)) ||
        !(m->rows_d = balloc(m, C * d * F, ab, err, errlen)) ||
        !(m->rows_h = balloc(m, C * d * F, ab, err, errlen)) ||
        !(m->logits = balloc(m, C * V * F, ab, err, errlen)) ||
        !(m->d_tokens = balloc(m, T * 4, ab, err, errlen)) || !(m->d_pos = balloc(m, T * 4, ab, err, errlen)) ||
        !(m->d_seq = balloc(m, T * 4, ab, err, errlen)) || !(m->d_rows = balloc(m, T * 4, ab, err, errlen)))
        goto fail;

    /* ---- backend scratch for the largest step, before the KV cache takes the rest */
    if (m->ops->reserve) {
        int max_in = d > ffn ? d : ffn;
        if (m->q_dim > max_in) max_in = m->q_dim;
        if (m->ops->reserve(m->bctx, m->max_tokens, max_in, &m->attn)) {
            err_set(err, errlen, "%s backend: reserving scratch for %d tokens: %s (lower max_batch_tokens)",
                   m->be->info.name, m->max_tokens, m->ops->last_error(m->bctx));
            goto fail;
        }
    }
    m->graphs = !p->no_graphs && m->ops->graph_begin && m->ops->graph_end && m->ops->graph_replay;
    /* QK-norm sits between the projection and RoPE: those models keep the unfused ops */
    m->fz_rope = m->ops->qkv_rope_kv && !hp->qk_norm;

    /* ---- KV cache */
    const size_t kv_es = backend_dtype_size(m->be->info.kv_dtype);
    const size_t tok_bytes = (size_t)2 * hp->n_layers * m->kv_dim * kv_es; /* K and V, all layers */
    int64_t kv_tokens = p->kv_cache_tokens;
    if (kv_tokens == 0) {
        if (device_mem) {
            size_t free1 = 0, total1 = 0;
            m->ops->mem_info(m->bctx, &free1, &total1);
            double frac = p->gpu_memory_fraction > 0 ? p->gpu_memory_fraction : 0.9;
            double budget = (double)dev_free0 * frac - (double)(dev_free0 > free1 ? dev_free0 - free1 : 0);
            /* the block table for max_seqs rows is charged too */
            kv_tokens = budget > 0 ? (int64_t)(budget / ((double)tok_bytes + 4.0 * m->max_seqs / m->block_size)) : 0;
            if (kv_tokens < m->block_size) {
                err_set(err, errlen, "no device memory left for the KV cache (%zu MiB free before loading, "
                                    "fraction %.2f): raise gpu_memory_fraction or use a smaller model",
                       dev_free0 >> 20, frac);
                goto fail;
            }
        } else {
            int64_t cap = MODEL_DEFAULT_CPU_KV_BYTES / (int64_t)tok_bytes;
            kv_tokens = (int64_t)4 * hp->n_ctx_train;
            if (kv_tokens > cap) kv_tokens = cap;
            if (kv_tokens < m->max_tokens) kv_tokens = m->max_tokens;
        }
    }
    m->n_blocks = (kv_tokens + m->block_size - 1) / m->block_size;
    if (m->n_blocks > INT32_MAX / 2) {
        err_set(err, errlen, "kv_cache_tokens %lld is too large", (long long)kv_tokens);
        goto fail;
    }
    /* graphs: one more block, never handed out, for the padding rows of a bucket */
    const int64_t phys_blocks = m->n_blocks + (m->graphs ? 1 : 0);
    m->scratch_block = (int32_t)m->n_blocks;
    m->kv_layer_bytes = (size_t)phys_blocks * m->block_size * m->kv_dim * kv_es;
    size_t kv_all = m->kv_layer_bytes * (size_t)hp->n_layers;
    if (!(m->kcache = balloc(m, kv_all, &m->bytes_kv, err, errlen)) ||
        !(m->vcache = balloc(m, kv_all, &m->bytes_kv, err, errlen)))
        goto fail;
    /* the block table: no row needs more columns than there are blocks */
    m->table_cap = (int)m->n_blocks;
    size_t tab = (size_t)m->max_seqs * (size_t)m->table_cap * 4;
    if (!(m->d_table = balloc(m, tab, ab, err, errlen))) goto fail;
    if (!(m->d_ids = balloc(m, C * 4, ab, err, errlen)) || !(m->d_itemp = balloc(m, C * 4, ab, err, errlen)) ||
        !(m->d_keys = balloc(m, C * 8, ab, err, errlen)))
        goto fail;
    if (m->ops->argmax_masked && !(m->d_masks = balloc(m, C * (size_t)((V + 31) / 32) * 4, ab, err, errlen)))
        goto fail;
    const size_t S4 = (size_t)m->max_seqs * 4;
    if (!(m->h_table = malloc(tab)) || !(m->h_row = malloc((size_t)V * F)) || !(m->h_tok = malloc(S4)) ||
        !(m->h_pos = malloc(S4)) || !(m->h_seq = malloc(S4)) || !(m->h_rows = malloc(S4))) {
        err_set(err, errlen, "out of memory (block table staging, %zu bytes)", tab);
        goto fail;
    }
    if (m->ops->synchronize(m->bctx)) {
        err_set(err, errlen, "%s backend: %s", m->be->info.name, m->ops->last_error(m->bctx));
        goto fail;
    }
    LOG_INFO("model loaded", "arch=%s layers=%d d_model=%d vocab=%d backend=%s device=\"%s\" weights_mb=%zu "
             "kv_blocks=%lld kv_block_size=%d kv_tokens=%lld kv_mb=%zu kv_dtype=%s act_mb=%zu graphs=%s "
             "device_argmax=%s gpu_weights=%s fused_matmuls=%d/%d fused_rope=%s", hp->arch, hp->n_layers, d, V,
             m->be->info.name, m->be->info.device, m->bytes_weights >> 20, (long long)m->n_blocks, m->block_size,
             (long long)m->n_blocks * m->block_size, m->bytes_kv >> 20, backend_dtype_name(m->be->info.kv_dtype),
             m->bytes_act >> 20, m->graphs ? "on" : "off", m->ops->argmax ? "yes" : "no",
             m->native ? "native" : "dtype", m->n_fused, 4 * hp->n_layers, m->fz_rope ? "yes" : "no");
    return m;
fail:
    model_free(m);
    return NULL;
}

void model_free(model_t *m) {
    if (!m) return;
    if (m->be) {
        for (int i = 0; i < m->n_bufs; i++) m->ops->free(m->bctx, m->bufs[i]);
        backend_close(m->be);
    }
    free(m->bufs);
    free(m->layers);
    free(m->h_table);
    free(m->h_row);
    free(m->h_tok);
    free(m->h_pos);
    free(m->h_seq);
    free(m->h_rows);
    free(m);
}

const hparams_t *model_hparams(const model_t *m) { return &m->hp; }
int64_t model_kv_blocks(const model_t *m) { return m->n_blocks; }
int model_kv_block_size(const model_t *m) { return m->block_size; }
int model_max_batch_tokens(const model_t *m) { return m->max_tokens; }
int model_max_seqs(const model_t *m) { return m->max_seqs; }
const char *model_backend_name(const model_t *m) { return m->be->info.name; }
const char *model_device_name(const model_t *m) { return m->be->info.device; }
const char *model_last_error(const model_t *m) { return m->err; }

void model_memory(const model_t *m, size_t *weights, size_t *kv, size_t *activations) {
    if (weights) *weights = m->bytes_weights;
    if (kv) *kv = m->bytes_kv;
    if (activations) *activations = m->bytes_act;
}

void model_get_stats(const model_t *m, model_stats_t *st) {
    memset(st, 0, sizeof *st);
    backend_stats_t bs;
    if (m->ops->get_stats && m->ops->get_stats(m->bctx, &bs) == 0) {
        st->steps = bs.steps;
        st->busy_ms = bs.busy_ms;
        st->idle_ms = bs.idle_ms;
        st->graph_captures = bs.graph_captures;
        st->graph_replays = bs.graph_replays;
        st->graph_nodes = bs.graph_nodes;
    }
}

/* Checks every index of the batch; *cols = the most blocks any sequence needs. */
static int check_batch(model_t *m, const model_batch_t *b, int *cols_out) {
    const hparams_t *hp = &m->hp;
    if (b->n_tokens < 1 || b->n_tokens > m->max_tokens || b->n_seqs < 1 || b->n_seqs > m->max_seqs ||
        b->n_logits < 0 || b->n_logits > m->max_tokens || b->max_blocks < 1 || !b->tokens || !b->pos || !b->seq ||
        !b->seq_len || !b->block_table || (b->n_logits > 0 && !b->logit_rows)) {
        err_set(m->err, sizeof m->err, "batch: n_tokens %d (1..%d), n_seqs %d (1..%d), n_logits %d (0..%d), "
                                      "max_blocks %d or a NULL array out of range", b->n_tokens, m->max_tokens,
               b->n_seqs, m->max_seqs, b->n_logits, m->max_tokens, b->max_blocks);
        return -1;
    }
    const int64_t cap = m->n_blocks * m->block_size;
    int cols = 1;
    for (int s = 0; s < b->n_seqs; s++) {
        if (b->seq_len[s] < 0 || b->seq_len[s] > cap) {
            err_set(m->err, sizeof m->err, "batch: seq_len[%d] = %d outside 0..%lld (the KV cache capacity)", s,
                   b->seq_len[s], (long long)cap);
            return -1;
        }
        int nb = (b->seq_len[s] + m->block_size - 1) / m->block_size;
        if (nb > b->max_blocks) {
            err_set(m->err, sizeof m->err, "batch: seq_len[%d] = %d needs %d blocks but max_blocks is %d", s,
                   b->seq_len[s], nb, b->max_blocks);
            return -1;
        }
        if (nb > cols) cols = nb;
        for (int c = 0; c < nb; c++) {
            int32_t blk = b->block_table[(size_t)s * b->max_blocks + c];
            if (blk < 0 || blk >= m->n_blocks) {
                err_set(m->err, sizeof m->err, "batch: block_table[%d][%d] = %d outside 0..%lld", s, c, blk,
                       (long long)m->n_blocks - 1);
                return -1;
            }
        }
    }
    for (int i = 0; i < b->n_tokens; i++) {
        int s = b->seq[i];
        if (b->tokens[i] < 0 || b->tokens[i] >= hp->n_vocab || s < 0 || s >= b->n_seqs || b->pos[i] < 0 ||
            b->pos[i] >= b->seq_len[s]) {
            err_set(m->err, sizeof m->err, "batch: token %d: id %d (vocab %d), seq %d (n_seqs %d), pos %d (seq_len %d) "
                                          "out of range", i, b->tokens[i], hp->n_vocab, s, b->n_seqs, b->pos[i],
                   (s >= 0 && s < b->n_seqs) ? b->seq_len[s] : -1);
            return -1;
        }
    }
    for (int i = 0; i < b->n_logits; i++)
        if (b->logit_rows[i] < 0 || b->logit_rows[i] >= b->n_tokens) {
            err_set(m->err, sizeof m->err, "batch: logit_rows[%d] = %d outside 0..%d", i, b->logit_rows[i],
                   b->n_tokens - 1);
            return -1;
        }
    *cols_out = cols;
    return 0;
}

/* Host staging of the block table with row stride `stride` (>= every row's blocks);
 * unused columns and rows [n_seqs, n_rows) point at block `fill`. */
static void fill_table(model_t *m, const model_batch_t *b, int stride, int n_rows, int32_t fill) {
    for (int s = 0; s < n_rows; s++) {
        int32_t *row = m->h_table + (size_t)s * stride;
        int nb = s < b->n_seqs ? (b->seq_len[s] + m->block_size - 1) / m->block_size : 0;
        if (nb) memcpy(row, b->block_table + (size_t)s * b->max_blocks, (size_t)nb * 4);
        for (int c = nb; c < stride; c++) row[c] = fill;
    }
}

/* The graph bucket for a decode-only batch of n sequences, or 0 when the batch is not
 * one (or is larger than any bucket the buffers allow). The logits chunk does not cap
 * it: forward() graphs the layers of a wider bucket and runs its head in chunks. */
static int decode_bucket(const model_t *m, const model_batch_t *b) {
    const int n = b->n_tokens;
    if (!m->graphs || b->n_seqs != n || b->n_logits != n) return 0;
    for (int i = 0; i < n; i++)
        if (b->seq[i] != i || b->logit_rows[i] != i) return 0;
    int lim = m->max_seqs;
    if (m->max_tokens < lim) lim = m->max_tokens;
    if (n > lim || n > 4096) return 0; /* keys are B * 65536 + stride */
    static const int small[] = {1, 2, 4, 8, 16, 32, 48, 64, 96, 128};
    int B = 0;
    for (size_t k = 0; k < sizeof small / sizeof small[0] && !B; k++)
        if (small[k] >= n) B = small[k];
    if (!B) B = (n + 63) / 64 * 64;
    return B < lim ? B : lim;
}

/* Issues the layers for T tokens (inputs already uploaded; table stride tstride). */
static void issue_layers(model_t *m, int T, int tstride) {
    const backend_ops_t *o = m->ops;
    void *c = m->bctx;
    const hparams_t *hp = &m->hp;
    const int d = hp->d_model, ffn = hp->ffn_dim;
    o->embed(c, m->x, m->tok_embd, m->d_tokens, T, d);
    if (hp->embd_scale != 1.0f) o->scale(c, m->x, (int64_t)T * d, hp->embd_scale);
    const float *delta = NULL; /* previous sub-layer output, added into x by the next norm */
    for (int l = 0; l < hp->n_layers; l++) {
        const layer_t *L = &m->layers[l];
        const bool local = hparams_layer_local(hp, l);
        const backend_attn_t *at = local ? &m->attn_local : &m->attn;
        char *kc = (char *)m->kcache + (size_t)l * m->kv_layer_bytes;
        char *vc = (char *)m->vcache + (size_t)l * m->kv_layer_bytes;
        /* a fused qkv_rope_kv adds the bias itself */
        const float *bqkv = m->fz_rope ? NULL : L->bqkv;
        if (L->fz_qkv) {
            o->norm_matmul(c, m->qkv, m->x, delta, L->attn_norm, hp->rms_eps, L->wqkv, bqkv, T, d, m->qkv_dim);
        } else {
            o->rmsnorm(c, m->h, m->x, delta, L->attn_norm, T, d, hp->rms_eps);
            o->matmul(c, m->qkv, m->h, L->wqkv, bqkv, T, d, m->qkv_dim);
        }
        if (L->q_norm) {
            o->head_norm(c, m->qkv, T, m->qkv_dim, hp->n_heads, hp->head_dim, L->q_norm, hp->rms_eps);
            o->head_norm(c, m->qkv + m->q_dim, T, m->qkv_dim, hp->n_kv_heads, hp->head_dim, L->k_norm, hp->rms_eps);
        }
        const float *inv_freq = local ? m->inv_freq_local : m->inv_freq;
        if (m->fz_rope) {
            o->qkv_rope_kv(c, m->qkv, L->bqkv, T, hp->rope_dim, m->d_pos, inv_freq, m->neox, kc, vc, m->d_seq,
                           m->d_table, tstride, at);
        } else {
            /* q heads then k heads are contiguous in a qkv row: one rope call rotates both */
            o->rope(c, m->qkv, T, m->qkv_dim, hp->n_heads + hp->n_kv_heads, hp->head_dim, hp->rope_dim, m->d_pos,
                    inv_freq, m->neox);
            o->kv_write(c, kc, vc, m->qkv + m->q_dim, m->qkv + m->q_dim + m->kv_dim, m->qkv_dim, m->d_pos, m->d_seq,
                        m->d_table, tstride, T, at);
        }
        o->attention(c, m->att, m->qkv, m->qkv_dim, kc, vc, m->d_pos, m->d_seq, m->d_table, tstride, T, at);
        if (L->fz_o) { /* x += att Wo^T: nothing left for the next norm to add */
            o->matmul_res(c, m->x, m->att, L->wo, T, m->q_dim, d);
            delta = NULL;
        } else {
            o->matmul(c, m->tmp, m->att, L->wo, NULL, T, m->q_dim, d);
            delta = m->tmp;
        }
        if (L->post_attn_norm) {
            o->rmsnorm(c, m->post, m->tmp, NULL, L->post_attn_norm, T, d, hp->rms_eps);
            delta = m->post;
        }
        if (L->fz_gu) {
            o->norm_matmul(c, m->gu, m->x, delta, L->ffn_norm, hp->rms_eps, L->wgu, NULL, T, d, 2 * ffn);
        } else {
            o->rmsnorm(c, m->h, m->x, delta, L->ffn_norm, T, d, hp->rms_eps);
            o->matmul(c, m->gu, m->h, L->wgu, NULL, T, d, 2 * ffn);
        }
        if (L->fz_down) { /* without a post-norm the output joins the residual stream here */
            const bool into_x = !L->post_ffn_norm;
            o->glu_matmul(c, into_x ? m->x : m->tmp, m->gu, hp->geglu, L->wdown, T, ffn, d, into_x);
            delta = into_x ? NULL : m->tmp;
        } else {
            if (hp->geglu) o->geglu(c, m->act, m->gu, T, ffn);
            else o->swiglu(c, m->act, m->gu, T, ffn);
            o->matmul(c, m->tmp, m->act, L->wdown, NULL, T, ffn, d);
            delta = m->tmp;
        }
        if (L->post_ffn_norm) {
            o->rmsnorm(c, m->post, m->tmp, NULL, L->post_ffn_norm, T, d, hp->rms_eps);
            delta = m->post;
        }
    }
    m->last = delta;
}

/* Final norm + LM head for logit rows [r0, r0 + n) into m->logits (n, vocab). */
static void issue_head(model_t *m, int r0, int n) {
    const backend_ops_t *o = m->ops;
    void *c = m->bctx;
    const int d = m->hp.d_model;
    /* the last layer's output (m->last) is added into x by the final norm; rows first
     * (m->last is NULL when a fused matmul already added it) */
    o->get_rows(c, m->rows_x, m->x, m->d_rows + r0, n, d);
    if (m->last) o->get_rows(c, m->rows_d, m->last, m->d_rows + r0, n, d);
    o->rmsnorm(c, m->rows_h, m->rows_x, m->last ? m->rows_d : NULL, m->out_norm, n, d, m->hp.rms_eps);
    o->matmul(c, m->logits, m->rows_h, m->lm_head, NULL, n, d, m->hp.n_vocab);
}

/* Moves the n rows of m->logits to the caller: logits (n, vocab) or argmax ids (n). */
/* Rows [0, n) of the head's output: logits, or ids (argmax, or the Gumbel-max draw
 * where itemp[i] > 0; itemp/keys may be NULL = all argmax). */
static int take_rows(model_t *m, int n, float *logits, int32_t *ids, const float *itemp, const uint64_t *keys,
                     const uint32_t *masks) {
    const backend_ops_t *o = m->ops;
    void *c = m->bctx;
    const size_t V = (size_t)m->hp.n_vocab;
    if (logits) return o->download(c, logits, m->logits, (size_t)n * V * sizeof(float));
    bool gumbel = false;
    for (int i = 0; itemp && i < n && !gumbel; i++) gumbel = itemp[i] > 0.0f;
    const size_t W = (V + 31) / 32;
    if (masks && o->argmax_masked) { /* constrained rows: the masks go up, the ids come down */
        if (gumbel) {
            o->upload(c, m->d_itemp, itemp, (size_t)n * 4);
            o->upload(c, m->d_keys, keys, (size_t)n * 8);
        }
        o->upload(c, m->d_masks, masks, (size_t)n * W * 4);
        o->argmax_masked(c, m->d_ids, m->logits, n, (int)V, gumbel ? m->d_itemp : NULL, gumbel ? m->d_keys : NULL,
                         m->d_masks);
        return o->download(c, ids, m->d_ids, (size_t)n * 4);
    }
    if (masks) { /* the host twin, row by row */
        for (int i = 0; i < n; i++) {
            if (o->download(c, m->h_row, m->logits + (size_t)i * V, V * sizeof(float))) return -1;
            ids[i] = sampler_pick_masked(m->h_row, (int)V, gumbel ? itemp[i] : 0.0f, gumbel ? keys[i] : 0, masks + (size_t)i * W);
        }
        return 0;
    }
    if (o->argmax) {
        if (gumbel) {
            o->upload(c, m->d_itemp, itemp, (size_t)n * 4);
            o->upload(c, m->d_keys, keys, (size_t)n * 8);
        }
        o->argmax(c, m->d_ids, m->logits, n, (int)V, gumbel ? m->d_itemp : NULL, gumbel ? m->d_keys : NULL);
        return o->download(c, ids, m->d_ids, (size_t)n * 4);
    }
    for (int i = 0; i < n; i++) {
        if (o->download(c, m->h_row, m->logits + (size_t)i * V, V * sizeof(float))) return -1;
        ids[i] = sampler_pick(m->h_row, (int)V, gumbel ? itemp[i] : 0.0f, gumbel ? keys[i] : 0);
    }
    return 0;
}

/* The head for logit rows [0, n_rows) in chunks of logit_chunk rows, each chunk
 * taken (downloaded or reduced to ids) before the next overwrites m->logits. */
static int head_chunks(model_t *m, int n_rows, float *logits, int32_t *ids, const float *itemp,
                       const uint64_t *keys, const uint32_t *masks) {
    const size_t V = (size_t)m->hp.n_vocab;
    for (int r0 = 0; r0 < n_rows; r0 += m->logit_chunk) {
        int n = n_rows - r0 < m->logit_chunk ? n_rows - r0 : m->logit_chunk;
        issue_head(m, r0, n);
        if (take_rows(m, n, logits ? logits + (size_t)r0 * V : NULL, logits ? NULL : ids + r0,
                      itemp ? itemp + r0 : NULL, itemp ? keys + r0 : NULL,
                      masks ? masks + (size_t)r0 * ((V + 31) / 32) : NULL))
            return -1;
    }
    return 0;
}

static int forward(model_t *m, const model_batch_t *b, float *logits, int32_t *ids, const float *itemp,
                   const uint64_t *keys, const uint32_t *masks, void (*ready)(void *), void *rctx) {
    m->err[0] = 0;
    int cols = 0;
    if (check_batch(m, b, &cols)) return -1;
    if (b->n_logits > 0 && !logits && !ids) {
        err_set(m->err, sizeof m->err, "model_forward: the output array is NULL but n_logits is %d", b->n_logits);
        return -1;
    }
    const backend_ops_t *o = m->ops;
    void *c = m->bctx;
    const int T = b->n_tokens;
    const int B = decode_bucket(m, b);
    if (B > 0) {
        /* padded decode step: fixed stride, padding rows on the scratch block */
        int stride = b->max_blocks < m->table_cap ? b->max_blocks : m->table_cap;
        if (stride < cols) stride = cols;
        for (int i = 0; i < B; i++) {
            const bool real = i < T;
            m->h_tok[i] = real ? b->tokens[i] : 0;
            m->h_pos[i] = real ? b->pos[i] : 0;
            m->h_seq[i] = i;
            m->h_rows[i] = i;
        }
        fill_table(m, b, stride, B, m->scratch_block);
        const size_t B4 = (size_t)B * 4;
        o->upload(c, m->d_tokens, m->h_tok, B4);
        o->upload(c, m->d_pos, m->h_pos, B4);
        o->upload(c, m->d_seq, m->h_seq, B4);
        o->upload(c, m->d_rows, m->h_rows, B4);
        o->upload(c, m->d_table, m->h_table, (size_t)B * stride * 4);
        /* a graph is keyed by bucket and stride: both fix every size it captured */
        const int key = B * 65536 + (stride & 0xffff);
        const bool head_in_graph = B <= m->logit_chunk; /* else: layers in the graph, head in chunks */
        if (stride >= 65536 || o->graph_replay(c, key) != 1) {
            const bool cap = stride < 65536 && o->graph_begin(c, key) == 0;
            issue_layers(m, B, stride);
            if (head_in_graph) issue_head(m, 0, B);
            if (cap && o->graph_end(c, key)) {
                err_set(m->err, sizeof m->err, "%s backend: graph capture: %s", m->be->info.name, o->last_error(c));
                return -1;
            }
        }
        if (masks && ready) ready(rctx); /* the forward pass is issued: the masks may be read now */
        const int taken = head_in_graph ? take_rows(m, T, logits, ids, itemp, keys, masks)
                                        : head_chunks(m, T, logits, ids, itemp, keys, masks);
        if (taken == 0 && o->synchronize(c) == 0) return 0;
        err_set(m->err, sizeof m->err, "%s backend: %s", m->be->info.name, o->last_error(c));
        return -1;
    }

    fill_table(m, b, cols, b->n_seqs, 0);
    const size_t T4 = (size_t)T * 4;
    o->upload(c, m->d_tokens, b->tokens, T4);
    o->upload(c, m->d_pos, b->pos, T4);
    o->upload(c, m->d_seq, b->seq, T4);
    o->upload(c, m->d_table, m->h_table, (size_t)b->n_seqs * cols * 4);
    if (b->n_logits > 0) o->upload(c, m->d_rows, b->logit_rows, (size_t)b->n_logits * 4);
    issue_layers(m, T, cols);
    if (masks && ready) ready(rctx);
    /* final norm + LM head, only for the requested rows; a failed chunk leaves the
     * backend's sticky error for synchronize() to report */
    (void)head_chunks(m, b->n_logits, logits, ids, itemp, keys, masks);
    if (o->synchronize(c)) {
        err_set(m->err, sizeof m->err, "%s backend: %s", m->be->info.name, o->last_error(c));
        return -1;
    }
    return 0;
}

int model_forward(model_t *m, const model_batch_t *b, float *logits) {
    if (b->n_logits > 0 && !logits) {
        m->err[0] = 0;
        err_set(m->err, sizeof m->err, "model_forward: logits is NULL but n_logits is %d", b->n_logits);
        return -1;
    }
    return forward(m, b, logits, NULL, NULL, NULL, NULL, NULL, NULL);
}

bool model_device_argmax(const model_t *m) { return m->ops->argmax != NULL; }

int model_forward_argmax(model_t *m, const model_batch_t *b, int32_t *ids, const float *inv_temp,
                         const uint64_t *keys) {
    if (b->n_logits > 0 && (!ids || (inv_temp && !keys))) {
        err_set(m->err, sizeof m->err, "model_forward_argmax: ids%s is NULL but n_logits is %d", ids ? " (or keys)" : "",
               b->n_logits);
        return -1;
    }
    return forward(m, b, NULL, ids, inv_temp, keys, NULL, NULL, NULL);
}

int model_forward_argmax_masked(model_t *m, const model_batch_t *b, int32_t *ids, const float *inv_temp,
                                const uint64_t *keys, const uint32_t *masks, void (*ready)(void *), void *ready_ctx) {
    if (b->n_logits > 0 && (!ids || !masks || (inv_temp && !keys))) {
        err_set(m->err, sizeof m->err, "model_forward_argmax_masked: ids, masks (or keys) NULL but n_logits is %d",
                b->n_logits);
        return -1;
    }
    return forward(m, b, NULL, ids, inv_temp, keys, masks, ready, ready_ctx);
}
