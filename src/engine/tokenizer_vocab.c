/* tokenizer_vocab.c — loading a tokenizer from GGUF tokenizer.ggml.* metadata: tokens,
 * scores and token types, the symbol text hash, special token ids and the
 * end-of-generation set; tokenizer_load/free and the accessors (tokenizer_internal.h
 * says which file does the rest).
 *
 * Rules kept:
 *   - parity with llama.cpp is the spec (docs/tokenizer.md): its per-type default ids,
 *     its rename of empty tokens, its refusal of duplicate token texts, its known texts
 *     for end-of-turn / fill-in-the-middle tokens when the GGUF names no id (such tokens
 *     become control tokens), its end-of-generation texts;
 *   - symbols are ids into one text arena (t->text) with a hash from text to id; BPE
 *     adds "virtual" symbols after the n_vocab tokens (tokenizer_bpe.c);
 *   - a loaded tokenizer is immutable: every function of the module is thread-safe. */
#include "tokenizer_internal.h"

#include <stdio.h>
#include <string.h>

#include "err.h"
#include "log.h"

static uint64_t hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xD6E8FEB86659FD93ull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    return h;
}

int32_t tokenizer_vocab_lookup(const tokenizer_t *t, const char *s, size_t n) {
    uint64_t i = hash_bytes(s, n) & t->hash_mask;
    for (;;) {
        int32_t id = t->hash[i];
        if (id < 0) return -1;
        if (t->text_len[id] == n && memcmp(tokenizer_sym_text(t, id), s, n) == 0) return id;
        i = (i + 1) & t->hash_mask;
    }
}

int32_t tokenizer_vocab_token(const tokenizer_t *t, const char *s, size_t n) {
    int32_t id = tokenizer_vocab_lookup(t, s, n);
    return id < t->n_vocab ? id : -1;
}

typedef struct {
    const char *text;
    int role; /* which special id it may become */
} named_tok_t;

enum { R_EOT = 1, R_EOM, R_FIM_PRE, R_FIM_SUF, R_FIM_MID, R_FIM_PAD, R_FIM_REP, R_FIM_SEP };

/* Texts llama.cpp recognises when the GGUF does not name the id (priority order). */
static const named_tok_t named_toks[] = {
    {"<|eot_id|>", R_EOT}, {"<|im_end|>", R_EOT}, {"<|end|>", R_EOT}, {"<end_of_turn>", R_EOT},
    {"<|endoftext|>", R_EOT}, {"<|end_of_text|>", R_EOT}, {"<EOT>", R_EOT}, {"_<EOT>", R_EOT},
    {"[EOT]", R_EOT}, {"<｜end▁of▁sentence｜>", R_EOT}, {"<end_of_utterance>", R_EOT},
    {"<|eom_id|>", R_EOM},
    {"<|fim_prefix|>", R_FIM_PRE}, {"<fim-prefix>", R_FIM_PRE}, {"<fim_prefix>", R_FIM_PRE},
    {"<｜fim▁begin｜>", R_FIM_PRE}, {"<PRE>", R_FIM_PRE}, {"▁<PRE>", R_FIM_PRE},
    {"<|code_prefix|>", R_FIM_PRE}, {"<|prefix|>", R_FIM_PRE},
    {"<|fim_suffix|>", R_FIM_SUF}, {"<fim-suffix>", R_FIM_SUF}, {"<fim_suffix>", R_FIM_SUF},
    {"<｜fim▁hole｜>", R_FIM_SUF}, {"<SUF>", R_FIM_SUF}, {"▁<SUF>", R_FIM_SUF},
    {"<|code_suffix|>", R_FIM_SUF}, {"<|suffix|>", R_FIM_SUF},
    {"<|fim_middle|>", R_FIM_MID}, {"<fim-middle>", R_FIM_MID}, {"<fim_middle>", R_FIM_MID},
    {"<｜fim▁end｜>", R_FIM_MID}, {"<MID>", R_FIM_MID}, {"▁<MID>", R_FIM_MID},
    {"<|code_middle|>", R_FIM_MID}, {"<|middle|>", R_FIM_MID},
    {"<|fim_pad|>", R_FIM_PAD}, {"<fim-pad>", R_FIM_PAD}, {"<fim_pad>", R_FIM_PAD}, {"<PAD>", R_FIM_PAD},
    {"[PAD]", R_FIM_PAD},
    {"<|fim_repo|>", R_FIM_REP}, {"<|repo_name|>", R_FIM_REP}, {"<fim-repo>", R_FIM_REP},
    {"<REPO>", R_FIM_REP}, {"<reponame>", R_FIM_REP},
    {"<|file_sep|>", R_FIM_SEP},
};

/* End-of-generation texts (llama.cpp marks them control and end-of-generation). */
static const char *const eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<｜end▁of▁sentence｜>", "[e~[",
};

const gguf_kv_t *tokenizer_vocab_find_arr(const gguf_t *g, const char *key, gguf_vtype_t want1, gguf_vtype_t want2,
                                          uint64_t min_n, bool *bad, char *err, size_t errlen) {
    const gguf_kv_t *kv = gguf_find(g, key);
    *bad = false;
    if (!kv) return NULL;
    if (kv->type != GGUF_VT_ARRAY || (kv->v.arr.type != want1 && kv->v.arr.type != want2)) {
        err_set(err, errlen, "GGUF key %s has type %s%s%s, expected an array of %s; the file is not a usable tokenizer",
               key, gguf_vtype_name(kv->type), kv->type == GGUF_VT_ARRAY ? " of " : "",
               kv->type == GGUF_VT_ARRAY ? gguf_vtype_name(kv->v.arr.type) : "", gguf_vtype_name(want1));
        *bad = true;
        return NULL;
    }
    if (kv->v.arr.n < min_n) {
        err_set(err, errlen, "GGUF key %s has %llu entries, fewer than the %llu tokens; the file is inconsistent",
               key, (unsigned long long)kv->v.arr.n, (unsigned long long)min_n);
        *bad = true;
        return NULL;
    }
    return kv;
}

/* Appends a symbol text (copied, NUL-terminated) as id n_sym; no hashing. */
static bool add_text(tokenizer_t *t, const char *s, size_t slen) {
    if (t->n_sym == t->sym_cap) {
        int32_t nc = t->sym_cap ? t->sym_cap * 2 : 1024;
        uint32_t *o = realloc(t->text_off, (size_t)nc * sizeof *o);
        if (!o) return false;
        t->text_off = o;
        uint32_t *l = realloc(t->text_len, (size_t)nc * sizeof *l);
        if (!l) return false;
        t->text_len = l;
        t->sym_cap = nc;
    }
    if (t->text.len + slen + 1 > UINT32_MAX) return false;
    t->text_off[t->n_sym] = (uint32_t)t->text.len;
    t->text_len[t->n_sym] = (uint32_t)slen;
    /* the text and its NUL (counted: the next text starts after it) */
    if (buf_append(&t->text, s, slen) != 0 || buf_append(&t->text, "", 1) != 0) return false;
    t->n_sym++;
    return true;
}

/* Inserts id; returns the id already holding the same text, or -1. */
static int32_t hash_insert(tokenizer_t *t, int32_t id) {
    const char *s = tokenizer_sym_text(t, id);
    size_t n = t->text_len[id];
    uint64_t i = hash_bytes(s, n) & t->hash_mask;
    for (;;) {
        int32_t o = t->hash[i];
        if (o < 0) {
            t->hash[i] = id;
            return -1;
        }
        if (t->text_len[o] == n && memcmp(tokenizer_sym_text(t, o), s, n) == 0) return o;
        i = (i + 1) & t->hash_mask;
    }
}

/* (Re)builds the text hash for ids [0, n_sym) with room for `room` more symbols. */
static bool hash_build(tokenizer_t *t, int32_t room) {
    uint64_t cap = 1024;
    while (cap < ((uint64_t)t->n_sym + (uint64_t)room) * 2) cap *= 2;
    free(t->hash);
    t->hash = malloc(cap * sizeof *t->hash);
    if (!t->hash) return false;
    memset(t->hash, 0xFF, cap * sizeof *t->hash);
    t->hash_mask = cap - 1;
    for (int32_t i = 0; i < t->n_sym; i++) hash_insert(t, i);
    return true;
}

/* Adds a virtual symbol (a text the vocabulary lacks) and hashes it. */
int32_t tokenizer_vocab_add_virtual(tokenizer_t *t, const char *s, size_t n) {
    if (!add_text(t, s, n)) return -1;
    if ((uint64_t)t->n_sym * 2 > t->hash_mask + 1) {
        if (!hash_build(t, t->n_sym)) return -1;
    } else {
        hash_insert(t, t->n_sym - 1);
    }
    return t->n_sym - 1;
}

static int cmp_special(const void *pa, const void *pb, void *ctx) {
    const tokenizer_t *t = ctx;
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    if (t->text_len[a] != t->text_len[b]) return t->text_len[a] > t->text_len[b] ? -1 : 1;
    return a < b ? -1 : a > b;
}

static int32_t get_id(const tokenizer_t *t, const gguf_t *g, const char *key, int32_t def) {
    int64_t v;
    if (def >= t->n_vocab) def = -1;
    if (gguf_get_i64(g, key, &v, NULL, 0) != 0) return def;
    if (v < 0 || v >= t->n_vocab) {
        LOG_WARN("special token id out of range; using the default", "key=%s id=%lld default=%d", key, (long long)v,
                 def);
        return def;
    }
    return (int32_t)v;
}

static void add_eog(tokenizer_t *t, int32_t id) {
    if (id < 0) return;
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return;
    t->eog[t->n_eog++] = id;
}

tokenizer_t *tokenizer_load(const gguf_t *g, char *err, size_t errlen) {
    tokenizer_t *t = NULL;
    if (!g) {
        err_set(err, errlen, "tokenizer_load: no GGUF file");
        return NULL;
    }
    t = calloc(1, sizeof *t);
    if (!t) goto oom;

    gguf_str_t model;
    if (gguf_get_str(g, "tokenizer.ggml.model", &model, err, errlen) != 0) {
        if (!gguf_find(g, "tokenizer.ggml.model"))
            err_set(err, errlen, "GGUF has no tokenizer.ggml.model: this file carries no tokenizer");
        goto fail;
    }
    if (gguf_str_eq(model, "gpt2")) {
        t->kind = TOK_BPE;
    } else if (gguf_str_eq(model, "llama")) {
        t->kind = TOK_SPM;
    } else {
        char name[64];
        err_set(err, errlen, "tokenizer.ggml.model '%s' is not supported: krill reads \"gpt2\" (byte-level BPE) "
                            "and \"llama\" (SentencePiece BPE) tokenizers",
               gguf_str_copy(model, name, sizeof name));
        goto fail;
    }

    bool bad;
    const gguf_kv_t *tkv = tokenizer_vocab_find_arr(g, "tokenizer.ggml.tokens", GGUF_VT_STRING, GGUF_VT_STRING, 0, &bad, err, errlen);
    if (bad) goto fail;
    if (!tkv || gguf_arr_len(tkv) == 0) {
        err_set(err, errlen, "GGUF has no tokenizer.ggml.tokens (or it is empty): the vocabulary is missing");
        goto fail;
    }
    if (gguf_arr_len(tkv) > INT32_MAX / 4) {
        err_set(err, errlen, "tokenizer.ggml.tokens has %llu entries, more than krill supports",
               (unsigned long long)gguf_arr_len(tkv));
        goto fail;
    }
    t->n_vocab = (int32_t)gguf_arr_len(tkv);
    const gguf_kv_t *skv =
        tokenizer_vocab_find_arr(g, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, GGUF_VT_INT32, (uint64_t)t->n_vocab, &bad, err, errlen);
    if (bad) goto fail;
    const gguf_kv_t *ykv =
        tokenizer_vocab_find_arr(g, "tokenizer.ggml.token_type", GGUF_VT_INT32, GGUF_VT_INT32, (uint64_t)t->n_vocab, &bad, err, errlen);
    if (bad) goto fail;

    t->score = calloc((size_t)t->n_vocab, sizeof *t->score);
    t->attr = calloc((size_t)t->n_vocab, 1);
    if (!t->score || !t->attr) goto oom;
    char tmp[48];
    for (int32_t i = 0; i < t->n_vocab; i++) {
        gguf_str_t s = gguf_arr_str(g, tkv, (uint64_t)i);
        if (s.len == 0) { /* llama.cpp renames empty tokens */
            int k = snprintf(tmp, sizeof tmp, "[EMPTY_%d]", i);
            s.ptr = tmp;
            s.len = (uint64_t)k;
        }
        if (s.len > (1u << 20)) {
            err_set(err, errlen, "token %d is %llu bytes long; the vocabulary is corrupt", i, (unsigned long long)s.len);
            goto fail;
        }
        if (!add_text(t, s.ptr, s.len)) goto oom;
        t->score[i] = skv ? (float)gguf_arr_f64(skv, (uint64_t)i) : 0.0f;
        uint8_t a = ATTR_NORMAL;
        if (ykv) {
            switch (gguf_arr_i64(ykv, (uint64_t)i)) {
            case 1: a = ATTR_NORMAL; break;
            case 2: a = ATTR_UNKNOWN; break;
            case 3: a = ATTR_CONTROL; break;
            case 4: a = ATTR_USER_DEFINED; break;
            case 5: a = ATTR_UNUSED; break;
            case 6: a = ATTR_BYTE; break;
            default: a = 0; break; /* undefined */
            }
        }
        t->attr[i] = a;
    }
    if (!hash_build(t, 0)) goto oom; /* (duplicates keep the first id here; checked next) */
    for (int32_t i = 0; i < t->n_vocab; i++) {
        int32_t o = tokenizer_vocab_lookup(t, tokenizer_sym_text(t, i), t->text_len[i]);
        if (o != i) {
            char name[64];
            snprintf(name, sizeof name, "%.60s", tokenizer_sym_text(t, i));
            err_set(err, errlen, "tokens %d and %d have the same text '%s': the vocabulary is corrupt "
                                "(llama.cpp refuses it too)", o, i, name);
            goto fail;
        }
    }

    /* per-type defaults (llama.cpp's), then the GGUF keys */
    int32_t def_bos = -1, def_eos = -1, def_unk = -1;
    if (t->kind == TOK_BPE) {
        t->add_space_prefix = false;
        def_bos = def_eos = 11; /* llama.cpp's historical defaults for "gpt2" */
        if (tokenizer_pretok_init(t, g, err, errlen) != 0) goto fail;
        if (tokenizer_bpe_load(t, g, err, errlen) != 0) goto fail;
    } else {
        snprintf(t->pre, sizeof t->pre, "spm");
        t->add_space_prefix = true;
        t->add_bos = true;
        def_bos = 1;
        def_eos = 2;
        def_unk = 0;
        tokenizer_spm_init(t);
    }
    bool bv;
    if (gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &bv, NULL, 0) == 0) t->add_space_prefix = bv;
    if (gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &bv, NULL, 0) == 0) t->add_bos = bv;

    t->bos = get_id(t, g, "tokenizer.ggml.bos_token_id", def_bos);
    t->eos = get_id(t, g, "tokenizer.ggml.eos_token_id", def_eos);
    t->eot = get_id(t, g, "tokenizer.ggml.eot_token_id", -1);
    t->eom = get_id(t, g, "tokenizer.ggml.eom_token_id", -1);
    t->unk = get_id(t, g, "tokenizer.ggml.unknown_token_id", def_unk);
    int32_t fim[9] = {0};
    fim[R_FIM_PRE] = get_id(t, g, "tokenizer.ggml.fim_pre_token_id", -1);
    if (fim[R_FIM_PRE] < 0) fim[R_FIM_PRE] = get_id(t, g, "tokenizer.ggml.prefix_token_id", -1);
    fim[R_FIM_SUF] = get_id(t, g, "tokenizer.ggml.fim_suf_token_id", -1);
    if (fim[R_FIM_SUF] < 0) fim[R_FIM_SUF] = get_id(t, g, "tokenizer.ggml.suffix_token_id", -1);
    fim[R_FIM_MID] = get_id(t, g, "tokenizer.ggml.fim_mid_token_id", -1);
    if (fim[R_FIM_MID] < 0) fim[R_FIM_MID] = get_id(t, g, "tokenizer.ggml.middle_token_id", -1);
    fim[R_FIM_PAD] = get_id(t, g, "tokenizer.ggml.fim_pad_token_id", -1);
    fim[R_FIM_REP] = get_id(t, g, "tokenizer.ggml.fim_rep_token_id", -1);
    fim[R_FIM_SEP] = get_id(t, g, "tokenizer.ggml.fim_sep_token_id", -1);
    fim[R_EOT] = t->eot;
    fim[R_EOM] = t->eom;

    /* ids found by text when the GGUF does not name them; they become control tokens */
    for (int role = R_EOT; role <= R_FIM_SEP; role++) {
        if (fim[role] >= 0) continue;
        for (size_t i = 0; i < sizeof named_toks / sizeof named_toks[0]; i++) {
            if (named_toks[i].role != role) continue;
            int32_t id = tokenizer_vocab_token(t, named_toks[i].text, strlen(named_toks[i].text));
            if (id >= 0) {
                fim[role] = id;
                t->attr[id] |= ATTR_CONTROL;
                break;
            }
        }
    }
    t->eot = fim[R_EOT];
    t->eom = fim[R_EOM];

    t->eog = malloc((sizeof eog_texts / sizeof eog_texts[0] + 8) * sizeof *t->eog);
    if (!t->eog) goto oom;
    add_eog(t, fim[R_FIM_PAD]);
    add_eog(t, fim[R_FIM_REP]);
    add_eog(t, fim[R_FIM_SEP]);
    for (size_t i = 0; i < sizeof eog_texts / sizeof eog_texts[0]; i++) {
        int32_t id = tokenizer_vocab_token(t, eog_texts[i], strlen(eog_texts[i]));
        if (id >= 0) {
            add_eog(t, id);
            t->attr[id] |= ATTR_CONTROL;
        }
    }
    add_eog(t, t->eos);
    add_eog(t, t->eot);
    add_eog(t, t->eom);

    /* special tokens for the partition, longest first (ties: lower id first) */
    t->special = malloc((size_t)t->n_vocab * sizeof *t->special);
    if (!t->special) goto oom;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->attr[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)) t->special[t->n_special++] = i;
    qsort_r(t->special, (size_t)t->n_special, sizeof *t->special, cmp_special, t);

    if (!tokenizer_decode_build_pieces(t)) goto oom;
    return t;
oom:
    err_set(err, errlen, "out of memory while loading the tokenizer");
fail:
    tokenizer_free(t);
    return NULL;
}

void tokenizer_free(tokenizer_t *t) {
    if (!t) return;
    for (int i = 0; i < t->n_re; i++) pcre2_code_free(t->re[i]);
    buf_free(&t->text);
    free(t->text_off);
    free(t->text_len);
    free(t->score);
    free(t->attr);
    free(t->piece);
    free(t->piece_off);
    free(t->piece_len);
    free(t->hash);
    free(t->pairs);
    free(t->eog);
    free(t->special);
    free(t);
}

int tokenizer_n_vocab(const tokenizer_t *t) { return t->n_vocab; }
int32_t tokenizer_bos(const tokenizer_t *t) { return t->bos; }
int32_t tokenizer_eos(const tokenizer_t *t) { return t->eos; }
int32_t tokenizer_eot(const tokenizer_t *t) { return t->eot; }
bool tokenizer_add_bos_default(const tokenizer_t *t) { return t->add_bos; }

bool tokenizer_is_eog(const tokenizer_t *t, int32_t id) {
    if (id < 0) return false;
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return true;
    return false;
}

