/* hparams.c — llama-family hyper-parameters from GGUF metadata, range-checked.
 *
 * Rules: every integer is bounded before it is narrowed to int; every divisibility
 * the forward pass relies on (heads by kv heads, rope_dim even) is checked here;
 * the tensors of every layer must exist with the shapes the hyper-parameters imply,
 * so the model loader can index them without further checks. Errors name the key or
 * tensor and say what was expected. */
#include "hparams.h"
#include "err.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MAX_DIM (1 << 20)     /* d_model, ffn, head counts: far above any llama model */
#define MAX_LAYERS 1024
#define MAX_VOCAB (1 << 24)
#define MAX_CTX (1 << 26)


typedef struct {
    const gguf_t *g;
    const char *arch;
    char *err;
    size_t errlen;
} ctx_t;

static const char *akey(const ctx_t *c, const char *name, char *buf, size_t n) {
    snprintf(buf, n, "%s.%s", c->arch, name);
    return buf;
}

/* Reads <arch>.<name> as an integer in [lo, hi]. 0 ok, -1 absent (when !required), -2 error. */
static int get_int(const ctx_t *c, const char *name, int64_t lo, int64_t hi, bool required, int *out) {
    char key[128];
    akey(c, name, key, sizeof(key));
    const gguf_kv_t *kv = gguf_find(c->g, key);
    if (kv && kv->type == GGUF_VT_ARRAY) {
        err_set(c->err, c->errlen, "%s: per-layer arrays are not supported (need one integer)", key);
        return -2;
    }
    int64_t v;
    int rc = gguf_get_i64(c->g, key, &v, c->err, c->errlen);
    if (rc == -1) {
        if (!required) return -1;
        err_set(c->err, c->errlen, "%s: missing (required for architecture '%s')", key, c->arch);
        return -2;
    }
    if (rc != 0) return -2;
    if (v < lo || v > hi) {
        err_set(c->err, c->errlen, "%s: value %" PRId64 " is outside %" PRId64 "..%" PRId64, key, v, lo, hi);
        return -2;
    }
    *out = (int)v;
    return 0;
}

/* Reads <arch>.<name> as a finite float in (lo, hi]. 0 ok, -1 absent (when !required), -2 error. */
static int get_float(const ctx_t *c, const char *name, double lo, double hi, bool required, float *out) {
    char key[128];
    akey(c, name, key, sizeof(key));
    double v;
    int rc = gguf_get_f64(c->g, key, &v, c->err, c->errlen);
    if (rc == -1) {
        if (!required) return -1;
        err_set(c->err, c->errlen, "%s: missing (required for architecture '%s')", key, c->arch);
        return -2;
    }
    if (rc != 0) return -2;
    if (!isfinite(v) || !(v > lo) || v > hi) {
        err_set(c->err, c->errlen, "%s: value %g is outside (%g, %g]", key, v, lo, hi);
        return -2;
    }
    *out = (float)v;
    return 0;
}

/* Tensor `name` must exist with shape (ne0[, ne1]) (ne1 = 0: one-dimensional). */
static int want_tensor(const ctx_t *c, const char *name, int64_t ne0, int64_t ne1) {
    const gguf_tensor_t *t = gguf_find_tensor(c->g, name);
    if (!t) {
        err_set(c->err, c->errlen, "tensor '%s' is missing (the file is not a complete %s model)", name, c->arch);
        return -1;
    }
    bool ok = t->ne[0] == (uint64_t)ne0 && t->ne[2] == 1 && t->ne[3] == 1 &&
              (ne1 == 0 ? t->ne[1] == 1 : t->ne[1] == (uint64_t)ne1);
    if (!ok) {
        err_set(c->err, c->errlen,
               "tensor '%s' has shape [%" PRIu64 ", %" PRIu64 ", %" PRIu64 ", %" PRIu64 "], expected [%" PRId64
               ", %" PRId64 "] from the hyper-parameters",
               name, t->ne[0], t->ne[1], t->ne[2], t->ne[3], ne0, ne1 ? ne1 : 1);
        return -1;
    }
    return 0;
}

static int check_tensors(const ctx_t *c, const hparams_t *hp) {
    const int64_t dq = (int64_t)hp->n_heads * hp->head_dim, dkv = (int64_t)hp->n_kv_heads * hp->head_dim;
    if (want_tensor(c, "token_embd.weight", hp->d_model, hp->n_vocab)) return -1;
    if (want_tensor(c, "output_norm.weight", hp->d_model, 0)) return -1;
    if (!hp->tied_embeddings && want_tensor(c, "output.weight", hp->d_model, hp->n_vocab)) return -1;
    char name[96];
#define T(fmt, a, b)                                  \
    do {                                              \
        snprintf(name, sizeof(name), fmt, l);         \
        if (want_tensor(c, name, (a), (b))) return -1; \
    } while (0)
    for (int l = 0; l < hp->n_layers; l++) {
        T("blk.%d.attn_norm.weight", hp->d_model, 0);
        T("blk.%d.attn_q.weight", hp->d_model, dq);
        T("blk.%d.attn_k.weight", hp->d_model, dkv);
        T("blk.%d.attn_v.weight", hp->d_model, dkv);
        T("blk.%d.attn_output.weight", dq, hp->d_model);
        T("blk.%d.ffn_norm.weight", hp->d_model, 0);
        T("blk.%d.ffn_gate.weight", hp->d_model, hp->ffn_dim);
        T("blk.%d.ffn_up.weight", hp->d_model, hp->ffn_dim);
        T("blk.%d.ffn_down.weight", hp->ffn_dim, hp->d_model);
        if (hp->qk_norm) {
            T("blk.%d.attn_q_norm.weight", hp->head_dim, 0);
            T("blk.%d.attn_k_norm.weight", hp->head_dim, 0);
        }
        if (hp->post_norms) {
            T("blk.%d.post_attention_norm.weight", hp->d_model, 0);
            T("blk.%d.post_ffw_norm.weight", hp->d_model, 0);
        }
        if (hp->qkv_bias) {
            T("blk.%d.attn_q.bias", dq, 0);
            T("blk.%d.attn_k.bias", dkv, 0);
            T("blk.%d.attn_v.bias", dkv, 0);
        }
    }
#undef T
    return 0;
}

/* What the architecture adds to the llama block: gemma3 (scaled embeddings, QK-norm,
 * post-norms, GeGLU, local/global layers), qwen3 (QK-norm); a sliding window for any. */
static int family(const ctx_t *c, hparams_t *hp) {
    const bool gemma3 = !strcmp(hp->arch, "gemma3");
    hp->neox = strcmp(hp->arch, "llama") != 0;
    hp->qk_norm = gemma3 || !strcmp(hp->arch, "qwen3");
    hp->post_norms = hp->geglu = gemma3;
    hp->embd_scale = gemma3 ? sqrtf((float)hp->d_model) : 1.0f;
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    if (hp->qk_norm && hp->qkv_bias) {
        err_set(c->err, c->errlen, "blk.0.attn_q.bias: architecture '%s' has no q/k/v biases", hp->arch);
        return -1;
    }
    if (get_int(c, "attention.sliding_window", 1, MAX_CTX, false, &hp->sliding_window) == -2) return -1;
    hp->swa_pattern = 0;
    hp->rope_base_local = hp->rope_base;
    if (gemma3) {
        hp->swa_pattern = 6;
        if (get_int(c, "attention.sliding_window_pattern", 1, MAX_LAYERS, false, &hp->swa_pattern) == -2) return -1;
        hp->rope_base_local = 10000.0f;
        if (hp->sliding_window == 0) hp->swa_pattern = 0;
    }
    return 0;
}

int hparams_load(const gguf_t *g, hparams_t *hp, char *err, size_t errlen) {
    memset(hp, 0, sizeof(*hp));
    gguf_str_t s;
    int rc = gguf_get_str(g, "general.architecture", &s, err, errlen);
    if (rc == -1) err_set(err, errlen, "general.architecture: missing (not a model file?)");
    if (rc != 0) return -1;
    if (!gguf_str_eq(s, "llama") && !gguf_str_eq(s, "qwen2") && !gguf_str_eq(s, "qwen3") &&
        !gguf_str_eq(s, "gemma3")) {
        char a[40];
        err_set(err, errlen, "general.architecture '%s' is not supported (supported: " HPARAMS_SUPPORTED ")",
               gguf_str_copy(s, a, sizeof(a)));
        return -1;
    }
    gguf_str_copy(s, hp->arch, sizeof(hp->arch));
    if (gguf_get_str(g, "general.name", &s, NULL, 0) == 0) gguf_str_copy(s, hp->name, sizeof(hp->name));

    ctx_t c = {g, hp->arch, err, errlen};
    if (get_int(&c, "block_count", 1, MAX_LAYERS, true, &hp->n_layers) ||
        get_int(&c, "embedding_length", 1, MAX_DIM, true, &hp->d_model) ||
        get_int(&c, "attention.head_count", 1, MAX_DIM, true, &hp->n_heads) ||
        get_int(&c, "feed_forward_length", 1, MAX_DIM, true, &hp->ffn_dim) ||
        get_int(&c, "context_length", 1, MAX_CTX, true, &hp->n_ctx_train))
        return -1;
    char key[128];
    rc = get_int(&c, "attention.head_count_kv", 1, hp->n_heads, false, &hp->n_kv_heads);
    if (rc == -2) return -1;
    if (rc == -1) hp->n_kv_heads = hp->n_heads;
    if (hp->n_heads % hp->n_kv_heads != 0) {
        err_set(err, errlen, "%s: %d heads are not a multiple of %d kv heads", akey(&c, "attention.head_count_kv", key, sizeof(key)),
               hp->n_heads, hp->n_kv_heads);
        return -1;
    }
    rc = get_int(&c, "attention.key_length", 1, MAX_DIM, false, &hp->head_dim);
    if (rc == -2) return -1;
    if (rc == -1) {
        if (hp->d_model % hp->n_heads != 0) {
            err_set(err, errlen, "%s: embedding_length %d is not a multiple of head_count %d (and no key_length is given)",
                   akey(&c, "attention.head_count", key, sizeof(key)), hp->d_model, hp->n_heads);
            return -1;
        }
        hp->head_dim = hp->d_model / hp->n_heads;
    }
    int vlen;
    rc = get_int(&c, "attention.value_length", 1, MAX_DIM, false, &vlen);
    if (rc == -2) return -1;
    if (rc == 0 && vlen != hp->head_dim) {
        err_set(err, errlen, "%s: %d differs from the key length %d (not supported)",
               akey(&c, "attention.value_length", key, sizeof(key)), vlen, hp->head_dim);
        return -1;
    }
    if ((int64_t)hp->n_heads * hp->head_dim > MAX_DIM) {
        err_set(err, errlen, "%s: head_count * head_dim is absurd (%d * %d)", akey(&c, "attention.head_count", key, sizeof(key)),
               hp->n_heads, hp->head_dim);
        return -1;
    }
    if (hp->head_dim % 2 != 0) {
        err_set(err, errlen, "%s: head dimension %d is odd (rotary embeddings need pairs)",
               akey(&c, "attention.key_length", key, sizeof(key)), hp->head_dim);
        return -1;
    }
    hp->rope_base = 10000.0f;
    if (get_float(&c, "rope.freq_base", 0, 1e12, false, &hp->rope_base) == -2) return -1;
    rc = get_int(&c, "rope.dimension_count", 2, hp->head_dim, false, &hp->rope_dim);
    if (rc == -2) return -1;
    if (rc == -1) hp->rope_dim = hp->head_dim;
    if (hp->rope_dim % 2 != 0) {
        err_set(err, errlen, "%s: %d is odd (rotary embeddings need pairs)",
               akey(&c, "rope.dimension_count", key, sizeof(key)), hp->rope_dim);
        return -1;
    }
    if (get_float(&c, "attention.layer_norm_rms_epsilon", 0, 1, true, &hp->rms_eps)) return -1;

    /* rope scaling */
    hp->rope_scaling = HPARAMS_ROPE_NONE;
    hp->rope_factor = 1.0f;
    hp->rope_low_freq_factor = 1.0f;
    hp->rope_high_freq_factor = 4.0f;
    hp->rope_orig_ctx = 8192;
    akey(&c, "rope.scaling.type", key, sizeof(key));
    rc = gguf_get_str(g, key, &s, err, errlen);
    if (rc == -2) return -1;
    if (rc == 0) {
        if (gguf_str_eq(s, "none")) {
            hp->rope_scaling = HPARAMS_ROPE_NONE;
        } else if (gguf_str_eq(s, "linear")) {
            hp->rope_scaling = HPARAMS_ROPE_LINEAR;
        } else if (gguf_str_eq(s, "llama3")) {
            hp->rope_scaling = HPARAMS_ROPE_LLAMA3;
        } else {
            char v[40];
            err_set(err, errlen, "%s: '%s' is not supported (none, linear, llama3)", key, gguf_str_copy(s, v, sizeof(v)));
            return -1;
        }
    }
    if (get_float(&c, "rope.scaling.factor", 0, 1e6, hp->rope_scaling != HPARAMS_ROPE_NONE, &hp->rope_factor) == -2)
        return -1;
    if (hp->rope_scaling == HPARAMS_ROPE_NONE) hp->rope_factor = 1.0f; /* a factor without a type is inert */
    if (hp->rope_scaling == HPARAMS_ROPE_LLAMA3) {
        if (get_float(&c, "rope.scaling.low_freq_factor", 0, 1e6, false, &hp->rope_low_freq_factor) == -2 ||
            get_float(&c, "rope.scaling.high_freq_factor", 0, 1e6, false, &hp->rope_high_freq_factor) == -2 ||
            get_int(&c, "rope.scaling.original_context_length", 1, MAX_CTX, false, &hp->rope_orig_ctx) == -2)
            return -1;
        if (!(hp->rope_high_freq_factor > hp->rope_low_freq_factor)) {
            err_set(err, errlen, "%s.rope.scaling.high_freq_factor (%g) must be greater than low_freq_factor (%g)",
                   hp->arch, hp->rope_high_freq_factor, hp->rope_low_freq_factor);
            return -1;
        }
    }
    const gguf_tensor_t *rf = gguf_find_tensor(g, "rope_freqs.weight");
    if (rf) {
        if (rf->type != GGUF_T_F32 || rf->ne[0] != (uint64_t)(hp->rope_dim / 2) || rf->ne[1] != 1 ||
            rf->ne[2] != 1 || rf->ne[3] != 1) {
            err_set(err, errlen, "tensor 'rope_freqs.weight' must be F32 of shape [%d] (rope_dim / 2)", hp->rope_dim / 2);
            return -1;
        }
        if (hp->rope_scaling == HPARAMS_ROPE_LINEAR) {
            err_set(err, errlen, "%s is linear but the file also has rope_freqs.weight: ambiguous", key);
            return -1;
        }
        hp->rope_freqs = true;
        hp->rope_scaling = HPARAMS_ROPE_LLAMA3;
    }

    /* vocabulary, LM head and biases from the tensors */
    const gguf_tensor_t *emb = gguf_find_tensor(g, "token_embd.weight");
    if (!emb) {
        err_set(err, errlen, "tensor 'token_embd.weight' is missing (the file is not a complete model)");
        return -1;
    }
    if (emb->ne[1] < 1 || emb->ne[1] > MAX_VOCAB) {
        err_set(err, errlen, "tensor 'token_embd.weight': vocabulary size %" PRIu64 " is outside 1..%d", emb->ne[1],
               MAX_VOCAB);
        return -1;
    }
    hp->n_vocab = (int)emb->ne[1];
    const gguf_kv_t *toks = gguf_find(g, "tokenizer.ggml.tokens");
    if (toks && (toks->type != GGUF_VT_ARRAY || gguf_arr_len(toks) != (uint64_t)hp->n_vocab)) {
        err_set(err, errlen, "tokenizer.ggml.tokens has %" PRIu64 " entries but token_embd.weight has %d rows",
               gguf_arr_len(toks), hp->n_vocab);
        return -1;
    }
    hp->tied_embeddings = gguf_find_tensor(g, "output.weight") == NULL;
    hp->qkv_bias = gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
    if (family(&c, hp)) return -1;
    return check_tensors(&c, hp);
}

bool hparams_layer_local(const hparams_t *hp, int l) {
    if (hp->sliding_window <= 0) return false;
    return hp->swa_pattern <= 0 || l % hp->swa_pattern < hp->swa_pattern - 1;
}
