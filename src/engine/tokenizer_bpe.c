/* tokenizer_bpe.c — byte-level BPE ("gpt2" vocabularies): the GPT-2 byte alphabet,
 * the merge map built from tokenizer.ggml.merges, and the merge of one pre-tokenized
 * word (tokenizer_pretok.c hands the words over).
 *
 * Rules kept:
 *   - merges by rank, ties leftmost (llama.cpp's llm_tokenizer_bpe_session);
 *   - BPE works on symbol ids, not strings: a symbol is a vocabulary token or a
 *     "virtual" text that a merge can produce but the vocabulary lacks (kept so that
 *     broken vocabularies behave as in llama.cpp); merges are a (left, right) ->
 *     (rank, result) hash map; a word is merged with a linear scan for the best pair
 *     when short and with a binary heap when long;
 *   - ignore_merges (llama3): a word that is a whole token is taken as it is. */
#include "tokenizer_internal.h"

#include <limits.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "utf8.h"

#define LINEAR_MAX 48 /* words up to this many symbols merge with a linear scan */

static inline uint64_t hash_pair(uint64_t key) {
    key *= 0x9E3779B97F4A7C15ull;
    return key ^ (key >> 31);
}

static const pair_t *pair_find(const tokenizer_t *t, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint64_t i = hash_pair(key) & t->pair_mask;
    for (;;) {
        const pair_t *p = &t->pairs[i];
        if (p->key == key) return p;
        if (p->key == UINT64_MAX) return NULL;
        i = (i + 1) & t->pair_mask;
    }
}


/* GPT-2 byte-level alphabet: printable bytes stand for themselves, the 68 others map
 * to U+0100 + n in byte order. */
static bool byte_printable(int c) { return (c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE; }

uint32_t tokenizer_bpe_byte_cp(uint8_t b) {
    if (byte_printable(b)) return b;
    uint32_t n = 0;
    for (int c = 0; c < b; c++) n += !byte_printable(c);
    return 0x100 + n;
}

static bool pairs_put(tokenizer_t *t, int32_t a, int32_t b, int32_t rank, int32_t result) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint64_t i = hash_pair(key) & t->pair_mask;
    for (;;) {
        pair_t *p = &t->pairs[i];
        if (p->key == key) return false; /* the first rank wins, as in llama.cpp */
        if (p->key == UINT64_MAX) {
            p->key = key;
            p->rank = rank;
            p->result = result;
            return true;
        }
        i = (i + 1) & t->pair_mask;
    }
}

/* Splits merge i ("left right", at the first space after position 0 as llama.cpp
 * does); false when it has no such space. */
static bool merge_halves(const gguf_t *g, const gguf_kv_t *mkv, uint64_t i, gguf_str_t *l, gguf_str_t *r) {
    gguf_str_t m = gguf_arr_str(g, mkv, i);
    const char *sp = m.len > 1 ? memchr(m.ptr + 1, ' ', m.len - 1) : NULL;
    if (!sp) return false;
    l->ptr = m.ptr;
    l->len = (uint64_t)(sp - m.ptr);
    r->ptr = sp + 1;
    r->len = m.len - l->len - 1;
    return true;
}

/* Merges, byte symbols and virtual symbols for byte-level BPE. */
int tokenizer_bpe_load(tokenizer_t *t, const gguf_t *g, char *err, size_t errlen) {
    bool bad;
    char *cat = NULL;
    const gguf_kv_t *mkv = tokenizer_vocab_find_arr(g, "tokenizer.ggml.merges", GGUF_VT_STRING, GGUF_VT_STRING, 0, &bad, err, errlen);
    if (bad) return -1;
    if (!mkv) {
        err_set(err, errlen, "GGUF has no tokenizer.ggml.merges: a \"gpt2\" tokenizer needs its BPE merges; "
                            "re-convert the model with a current convert_hf_to_gguf.py");
        return -1;
    }
    uint64_t n_merges = gguf_arr_len(mkv);
    if (n_merges > INT32_MAX / 4) {
        err_set(err, errlen, "tokenizer.ggml.merges has %llu entries, more than krill supports",
               (unsigned long long)n_merges);
        return -1;
    }
    /* byte-level characters and merge results that are not tokens become virtual symbols */
    char tmp[8];
    for (int b = 0; b < 256; b++) {
        size_t k = utf8_encode(tokenizer_bpe_byte_cp((uint8_t)b), tmp);
        int32_t id = tokenizer_vocab_lookup(t, tmp, k);
        if (id < 0 && (id = tokenizer_vocab_add_virtual(t, tmp, k)) < 0) goto oom;
        t->byte_sym[b] = id;
        char raw = (char)b;
        t->raw_byte_tok[b] = tokenizer_vocab_token(t, &raw, 1);
    }
    size_t cat_cap = 0;
    for (uint64_t i = 0; i < n_merges; i++) {
        gguf_str_t l, r;
        if (!merge_halves(g, mkv, i, &l, &r)) continue;
        size_t n = l.len + r.len;
        if (n > cat_cap) {
            char *nc = realloc(cat, n * 2);
            if (!nc) goto oom;
            cat = nc;
            cat_cap = n * 2;
        }
        memcpy(cat, l.ptr, l.len);
        memcpy(cat + l.len, r.ptr, r.len);
        if (tokenizer_vocab_lookup(t, cat, n) < 0 && tokenizer_vocab_add_virtual(t, cat, n) < 0) goto oom;
    }
    /* every symbol text now exists: map (left, right) -> (rank, result) */
    uint64_t pcap = 1024;
    while (pcap < n_merges * 2) pcap *= 2;
    t->pairs = malloc(pcap * sizeof *t->pairs);
    if (!t->pairs) goto oom;
    for (uint64_t i = 0; i < pcap; i++) t->pairs[i].key = UINT64_MAX;
    t->pair_mask = pcap - 1;
    for (uint64_t i = 0; i < n_merges; i++) {
        gguf_str_t l, r;
        if (!merge_halves(g, mkv, i, &l, &r)) continue;
        int32_t a = tokenizer_vocab_lookup(t, l.ptr, l.len), b = tokenizer_vocab_lookup(t, r.ptr, r.len);
        /* a half that is no symbol can never appear in a word: the merge never applies */
        if (a < 0 || b < 0) continue;
        memcpy(cat, l.ptr, l.len);
        memcpy(cat + l.len, r.ptr, r.len);
        int32_t res = tokenizer_vocab_lookup(t, cat, l.len + r.len);
        CHECK(res >= 0);
        pairs_put(t, a, b, (int32_t)i, res);
    }
    free(cat);
    return 0;
oom:
    free(cat);
    err_set(err, errlen, "out of memory while loading the BPE merges");
    return -1;
}

/* Emits the tokens of a final BPE symbol. */
static inline void bpe_emit(tokenizer_scratch_t *s, int32_t sid) {
    const tokenizer_t *t = s->t;
    if (sid < t->n_vocab) {
        tokenizer_ids_push(s->out, sid);
        return;
    }
    /* a text the vocabulary lacks: llama.cpp looks each of its bytes up as a token */
    const char *p = tokenizer_sym_text(t, sid);
    for (uint32_t i = 0; i < t->text_len[sid]; i++) {
        int32_t id = t->raw_byte_tok[(uint8_t)p[i]];
        if (id >= 0) tokenizer_ids_push(s->out, id);
    }
}

static inline void pair_rank(const tokenizer_t *t, tokenizer_scratch_t *s, int32_t i) {
    int32_t j = s->nxt[i];
    if (j < 0) {
        s->rank[i] = INT32_MAX;
        return;
    }
    const pair_t *p = pair_find(t, s->sym[i], s->sym[j]);
    s->rank[i] = p ? p->rank : INT32_MAX;
    s->res[i] = p ? p->result : -1;
}

/* Byte-level BPE over one pre-tokenized word (raw bytes). */
bool tokenizer_bpe_word(tokenizer_scratch_t *s, const uint8_t *w, size_t n) {
    const tokenizer_t *t = s->t;
    if (n == 1) {
        bpe_emit(s, t->byte_sym[w[0]]);
        return true;
    }
    if (t->ignore_merges) { /* the whole word is a token: take it (llama3) */
        size_t k = 0;
        if (!tokenizer_scratch_reserve(s, n)) return false;
        for (size_t i = 0; i < n; i++) k += utf8_encode(tokenizer_bpe_byte_cp(w[i]), (char *)s->tmp + k);
        int32_t id = tokenizer_vocab_token(t, (const char *)s->tmp, k);
        if (id >= 0) {
            tokenizer_ids_push(s->out, id);
            return true;
        }
    }
    if (!tokenizer_scratch_reserve(s, n)) return false;
    int32_t *sym = s->sym, *nxt = s->nxt, *prv = s->prv, *rank = s->rank, *res = s->res;
    for (size_t i = 0; i < n; i++) {
        sym[i] = t->byte_sym[w[i]];
        nxt[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        prv[i] = (int32_t)i - 1;
    }
    for (size_t i = 0; i + 1 < n; i++) pair_rank(t, s, (int32_t)i);
    rank[n - 1] = INT32_MAX;
    if (n <= LINEAR_MAX) {
        for (;;) {
            int32_t best = -1, br = INT32_MAX;
            for (int32_t i = 0; i >= 0; i = nxt[i])
                if (rank[i] < br) {
                    br = rank[i];
                    best = i;
                }
            if (best < 0) break;
            int32_t j = nxt[best];
            sym[best] = res[best];
            nxt[best] = nxt[j];
            if (nxt[j] >= 0) prv[nxt[j]] = best;
            pair_rank(t, s, best);
            if (prv[best] >= 0) pair_rank(t, s, prv[best]);
        }
    } else {
        s->heap_n = 0;
        for (size_t i = 0; i + 1 < n; i++)
            if (rank[i] != INT32_MAX) {
                tokenizer_heap_entry_t e = {.rank = rank[i], .left = (int32_t)i, .right = (int32_t)i + 1,
                                   .sl = sym[i], .sr = sym[i + 1]};
                if (!tokenizer_scratch_heap_push(s, e, false)) return false;
            }
        while (s->heap_n) {
            tokenizer_heap_entry_t e = tokenizer_scratch_heap_pop(s, false);
            int32_t i = e.left, j = e.right;
            /* stale when either side was merged since the pair was queued */
            if (sym[i] != e.sl || nxt[i] != j || sym[j] != e.sr) continue;
            sym[i] = res[i];
            sym[j] = -1;
            nxt[i] = nxt[j];
            if (nxt[j] >= 0) prv[nxt[j]] = i;
            pair_rank(t, s, i);
            if (rank[i] != INT32_MAX) {
                tokenizer_heap_entry_t ne = {.rank = rank[i], .left = i, .right = nxt[i], .sl = sym[i], .sr = sym[nxt[i]]};
                if (!tokenizer_scratch_heap_push(s, ne, false)) return false;
            }
            int32_t p = prv[i];
            if (p >= 0) {
                pair_rank(t, s, p);
                if (rank[p] != INT32_MAX) {
                    tokenizer_heap_entry_t ne = {.rank = rank[p], .left = p, .right = i, .sl = sym[p], .sr = sym[i]};
                    if (!tokenizer_scratch_heap_push(s, ne, false)) return false;
                }
            }
        }
    }
    for (int32_t i = 0; i >= 0; i = nxt[i]) bpe_emit(s, sym[i]);
    return true;
}

