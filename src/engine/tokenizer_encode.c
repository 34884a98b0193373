/* tokenizer_encode.c — tokenizer_encode: the UTF-8 check, llama.cpp's special-token
 * partition, and the per-call scratch the BPE and SentencePiece merges work in.
 *
 * Rules kept:
 *   - the input is validated as UTF-8 first (errors name the byte offset), so the
 *     pre-tokenizer's PCRE2 runs with PCRE2_NO_UTF_CHECK;
 *   - special tokens partition the text longest-first over the text fragments
 *     (user-defined tokens always, control/unknown only with parse_special and
 *     outside the caller's plain ranges), as llama.cpp's tokenizer_st_partition;
 *     a control-token string skipped in a plain range stays inside its text
 *     fragment, so plain ranges change nothing else; each text fragment then goes to the
 *     pre-tokenizer + BPE (tokenizer_pretok.c, tokenizer_bpe.c) or to SentencePiece
 *     (tokenizer_spm.c);
 *   - a loaded tokenizer is immutable: encode allocates its own scratch per call
 *     (O(text) bytes, never per token), so every function is thread-safe. */
#include "tokenizer_internal.h"

#include <string.h>

#include "err.h"
#include "utf8.h"

bool tokenizer_scratch_reserve(tokenizer_scratch_t *s, size_t n) {
    if (n <= s->cap) return true;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < n) cap *= 2;
    int32_t **arrs[] = {&s->sym, &s->nxt, &s->prv, &s->rank, &s->res};
    for (size_t i = 0; i < sizeof arrs / sizeof arrs[0]; i++) {
        int32_t *p = realloc(*arrs[i], cap * sizeof *p);
        if (!p) return false;
        *arrs[i] = p;
    }
    uint8_t *tp = realloc(s->tmp, cap * 3 + 8);
    if (!tp) return false;
    s->tmp = tp;
    s->cap = cap;
    return true;
}

static void scratch_free(tokenizer_scratch_t *s) {
    free(s->sym);
    free(s->nxt);
    free(s->prv);
    free(s->rank);
    free(s->res);
    free(s->tmp);
    free(s->heap);
    for (int i = 0; i < MAX_RE; i++) pcre2_match_data_free(s->md[i]);
}

static inline bool heap_less_bpe(const tokenizer_heap_entry_t *a, const tokenizer_heap_entry_t *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}
static inline bool heap_less_spm(const tokenizer_heap_entry_t *a, const tokenizer_heap_entry_t *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

bool tokenizer_scratch_heap_push(tokenizer_scratch_t *s, tokenizer_heap_entry_t e, bool spm) {
    if (s->heap_n == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : 256;
        tokenizer_heap_entry_t *h = realloc(s->heap, cap * sizeof *h);
        if (!h) return false;
        s->heap = h;
        s->heap_cap = cap;
    }
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        bool less = spm ? heap_less_spm(&e, &s->heap[p]) : heap_less_bpe(&e, &s->heap[p]);
        if (!less) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = e;
    return true;
}

tokenizer_heap_entry_t tokenizer_scratch_heap_pop(tokenizer_scratch_t *s, bool spm) {
    tokenizer_heap_entry_t top = s->heap[0];
    tokenizer_heap_entry_t last = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const tokenizer_heap_entry_t *best = &last;
        if (l < n && (spm ? heap_less_spm(&s->heap[l], best) : heap_less_bpe(&s->heap[l], best))) {
            m = l;
            best = &s->heap[l];
        }
        if (r < n && (spm ? heap_less_spm(&s->heap[r], best) : heap_less_bpe(&s->heap[r], best))) m = r;
        if (m == i) break;
        s->heap[i] = s->heap[m];
        i = m;
    }
    if (n) s->heap[i] = last;
    return top;
}

typedef struct {
    size_t off, len;
    int32_t id; /* -1: text */
} frag_t;

/* Does [off, off + n) overlap one of the sorted, non-overlapping plain ranges? */
static bool in_plain(const tokenizer_span_t *plain, size_t n_plain, size_t off, size_t n) {
    size_t lo = 0, hi = n_plain; /* the first range that ends after off */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (plain[mid].off + plain[mid].len <= off) lo = mid + 1;
        else hi = mid;
    }
    return lo < n_plain && plain[lo].len > 0 && plain[lo].off < off + n;
}

/* llama.cpp's tokenizer_st_partition: for each special token (longest first), split
 * every text fragment at each of its occurrences, left to right. Control/unknown
 * tokens only outside the plain ranges (parse_special off = one range over all). */
static frag_t *partition(const tokenizer_t *t, const char *text, size_t len, const tokenizer_span_t *plain,
                         size_t n_plain, size_t *n_frag) {
    size_t cap = 16, n = 1;
    bool all_plain = n_plain == 1 && plain[0].off == 0 && plain[0].len >= len;
    frag_t *f = malloc(cap * sizeof *f);
    if (!f) return NULL;
    f[0] = (frag_t){0, len, -1};
    for (int k = 0; k < t->n_special; k++) {
        int32_t id = t->special[k];
        bool control = (t->attr[id] & (ATTR_CONTROL | ATTR_UNKNOWN)) != 0;
        if (control && all_plain) continue;
        const char *tx = tokenizer_sym_text(t, id);
        size_t tl = t->text_len[id];
        if (tl > len || !memmem(text, len, tx, tl)) continue; /* cheap whole-text test first */
        for (size_t i = 0; i < n; i++) {
            if (f[i].id >= 0) continue;
            size_t off = f[i].off, end = f[i].off + f[i].len;
            const char *hit = memmem(text + off, end - off, tx, tl);
            while (hit && control && in_plain(plain, n_plain, (size_t)(hit - text), tl)) {
                size_t from = (size_t)(hit - text) + 1; /* content: text, look further */
                hit = from < end ? memmem(text + from, end - from, tx, tl) : NULL;
            }
            if (!hit) continue;
            /* split this fragment into text / token / text ... pieces */
            frag_t pieces[3];
            size_t np = 0, ho = (size_t)(hit - text);
            if (ho > off) pieces[np++] = (frag_t){off, ho - off, -1};
            pieces[np++] = (frag_t){ho, tl, id};
            if (ho + tl < end) pieces[np++] = (frag_t){ho + tl, end - ho - tl, -1};
            if (n + np - 1 > cap) {
                while (n + np - 1 > cap) cap *= 2;
                frag_t *nf = realloc(f, cap * sizeof *nf);
                if (!nf) {
                    free(f);
                    return NULL;
                }
                f = nf;
            }
            memmove(f + i + np, f + i + 1, (n - i - 1) * sizeof *f);
            memcpy(f + i, pieces, np * sizeof *f);
            n += np - 1;
            /* the right remainder (if any) is visited next by the loop */
            i += (ho > off) ? 1 : 0;
        }
    }
    *n_frag = n;
    return f;
}

int tokenizer_encode(const tokenizer_t *t, const char *text, size_t len, bool add_bos, bool parse_special,
                     int32_t **ids, size_t *n_ids, char *err, size_t errlen) {
    tokenizer_span_t all = {0, len};
    return tokenizer_encode_spans(t, text, len, add_bos, &all, parse_special ? 0 : 1, ids, n_ids, err, errlen);
}

int tokenizer_encode_spans(const tokenizer_t *t, const char *text, size_t len, bool add_bos,
                           const tokenizer_span_t *plain, size_t n_plain, int32_t **ids, size_t *n_ids,
                           char *err, size_t errlen) {
    *ids = NULL;
    *n_ids = 0;
    if (!text && len) {
        err_set(err, errlen, "tokenizer_encode: NULL text");
        return -1;
    }
    size_t bad = utf8_valid_prefix(text, len);
    if (bad < len) {
        err_set(err, errlen, "invalid UTF-8 at byte offset %zu (byte 0x%02X): the text must be UTF-8", bad,
               (unsigned)(uint8_t)text[bad]);
        return -1;
    }
    tokenizer_ids_t out = {0};
    tokenizer_scratch_t s = {.t = t, .out = &out};
    frag_t *f = NULL;
    size_t nf = 0;
    int rc = -1;
    for (int i = 0; i < t->n_re; i++) {
        s.md[i] = pcre2_match_data_create_from_pattern(t->re[i], NULL);
        if (!s.md[i]) goto oom;
    }
    if (add_bos && t->bos >= 0) tokenizer_ids_push(&out, t->bos);
    if (len) {
        f = partition(t, text, len, plain, n_plain, &nf);
        if (!f) goto oom;
    }
    bool prev_special = true; /* SentencePiece: a text fragment after a token gets a space */
    for (size_t i = 0; i < nf; i++) {
        if (f[i].id >= 0) {
            tokenizer_ids_push(&out, f[i].id);
            prev_special = true;
            continue;
        }
        const uint8_t *p = (const uint8_t *)text + f[i].off;
        size_t n = f[i].len;
        if (t->kind == TOK_BPE) {
            if (!tokenizer_pretok_split(&s, 0, p, n)) {
                if (out.oom || !s.err) goto oom;
                err_set(err, errlen, "pre-tokenizer regex failed (PCRE2 error %d) in the text at byte %zu", s.err,
                       f[i].off);
                goto done;
            }
        } else {
            if (!tokenizer_spm_fragment(&s, p, n, t->add_space_prefix && prev_special)) {
                if (out.oom || !s.err) goto oom;
                err_set(err, errlen, "the vocabulary has no byte token (<0xNN>) and no unknown token for a "
                                    "character of the text; the model cannot represent it");
                goto done;
            }
            prev_special = false;
        }
        if (out.oom) goto oom;
    }
    if (out.oom) goto oom;
    *ids = out.v ? out.v : malloc(sizeof(int32_t));
    if (!*ids) goto oom;
    *n_ids = out.n;
    out.v = NULL;
    rc = 0;
    goto done;
oom:
    err_set(err, errlen, "out of memory while tokenizing %zu bytes", len);
done:
    free(out.v);
    free(f);
    scratch_free(&s);
    return rc;
}
