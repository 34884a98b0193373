/* tokenizer_spm.c — SentencePiece BPE ("llama" vocabularies): byte-fallback tokens,
 * "▁" for spaces, merges by score.
 *
 * Rules kept (llama.cpp's llm_tokenizer_spm): a fragment gets a leading "▁" when
 * add_space_prefix is set and it starts the text or follows a special token; pairs
 * merge by score, ties leftmost, and only into vocabulary tokens; a character the
 * vocabulary lacks falls back to its <0xNN> byte tokens, else to the unknown token. */
#include "tokenizer_internal.h"

#include <stdio.h>
#include <string.h>

void tokenizer_spm_init(tokenizer_t *t) {
    char tmp[16];
    for (int b = 0; b < 256; b++) {
        snprintf(tmp, sizeof tmp, "<0x%02X>", b);
        int32_t id = tokenizer_vocab_token(t, tmp, 6);
        if (id < 0) {
            char raw = (char)b;
            id = tokenizer_vocab_token(t, &raw, 1);
        }
        t->spm_byte_tok[b] = id;
    }
}

/* SentencePiece BPE over text that already has "▁" for spaces. The caller reserved
 * the scratch for n symbols (x may live in the scratch, so no reallocation here). */
static bool spm_text(tokenizer_scratch_t *s, const uint8_t *x, size_t n) {
    const tokenizer_t *t = s->t;
    if (!n) return true;
    int32_t *st = s->sym, *ln = s->res, *nxt = s->nxt, *prv = s->prv; /* symbol = [st, st+ln) */
    int32_t m = 0;
    for (size_t o = 0; o < n;) {
        static const uint8_t len_of[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
        size_t k = len_of[x[o] >> 4];
        if (k > n - o) k = n - o;
        st[m] = (int32_t)o;
        ln[m] = (int32_t)k;
        prv[m] = m - 1;
        o += k;
        nxt[m] = o == n ? -1 : m + 1;
        m++;
    }
    s->heap_n = 0;
#define SPM_TRY(l, r)                                                                              \
    do {                                                                                           \
        if ((l) >= 0 && (r) >= 0) {                                                                \
            size_t len_ = (size_t)ln[l] + (size_t)ln[r];                                           \
            int32_t id_ = tokenizer_vocab_token(t, (const char *)x + st[l], len_);                            \
            if (id_ >= 0) {                                                                        \
                tokenizer_heap_entry_t e_ = {.score = t->score[id_], .left = (l), .right = (r), .size = (uint32_t)len_}; \
                if (!tokenizer_scratch_heap_push(s, e_, true)) return false;                                         \
            }                                                                                      \
        }                                                                                          \
    } while (0)
    for (int32_t i = 1; i < m; i++) SPM_TRY(i - 1, i);
    while (s->heap_n) {
        tokenizer_heap_entry_t e = tokenizer_scratch_heap_pop(s, true);
        int32_t l = e.left, r = e.right;
        if (ln[l] == 0 || ln[r] == 0 || (uint32_t)(ln[l] + ln[r]) != e.size) continue;
        ln[l] += ln[r];
        ln[r] = 0;
        nxt[l] = nxt[r];
        if (nxt[r] >= 0) prv[nxt[r]] = l;
        SPM_TRY(prv[l], l);
        SPM_TRY(l, nxt[l]);
    }
#undef SPM_TRY
    for (int32_t i = 0; i >= 0; i = nxt[i]) {
        int32_t id = tokenizer_vocab_token(t, (const char *)x + st[i], (size_t)ln[i]);
        if (id >= 0) {
            tokenizer_ids_push(s->out, id);
            continue;
        }
        /* merges only ever form tokens, so this is one character the vocabulary lacks */
        for (int32_t j = 0; j < ln[i]; j++) {
            int32_t b = t->spm_byte_tok[x[st[i] + j]];
            if (b < 0) b = t->unk;
            if (b < 0) {
                s->err = 1;
                return false;
            }
            tokenizer_ids_push(s->out, b);
        }
    }
    return true;
}


bool tokenizer_spm_fragment(tokenizer_scratch_t *s, const uint8_t *p, size_t n, bool space_prefix) {
    if (!tokenizer_scratch_reserve(s, (n + 1) * 3)) return false;
    uint8_t *x = s->tmp;
    size_t k = 0;
    if (space_prefix) {
        memcpy(x, "\xE2\x96\x81", 3);
        k = 3;
    }
    for (size_t j = 0; j < n; j++) {
        if (p[j] == ' ') {
            memcpy(x + k, "\xE2\x96\x81", 3);
            k += 3;
        } else {
            x[k++] = p[j];
        }
    }
    return spm_text(s, x, k);
}
