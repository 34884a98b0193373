/* tokenizer_internal.h — the tokenizer's shared state, private to src/engine/tokenizer_*.c
 * (the public API is tokenizer.h; nothing else includes this file).
 *
 * One job per file, all working on the immutable struct tokenizer below:
 *   tokenizer_vocab.c   loading: tokens, scores, token types, the text hash, special
 *                       token ids (GGUF keys, then llama.cpp's known texts), the
 *                       end-of-generation set; tokenizer_load/free and the accessors;
 *   tokenizer_pretok.c  the per-family pre-tokenizer regex tables (tokenizer.ggml.pre),
 *                       their PCRE2 compilation and the split of text into words;
 *   tokenizer_bpe.c     byte-level BPE: the GPT-2 byte alphabet, merges -> (rank, result)
 *                       map with virtual symbols, and the merge of one word;
 *   tokenizer_spm.c     SentencePiece: byte-fallback tokens, "▁" spaces, score merges;
 *   tokenizer_encode.c  tokenizer_encode: UTF-8 check, special-token partition, the
 *                       per-call scratch (symbol arrays, merge heap, output ids);
 *   tokenizer_decode.c  the decoded bytes of every token (built at load), token_bytes,
 *                       streaming decode (tokenizer_stream_*) and tokenizer_decode.
 * docs/tokenizer.md states what parity with llama.cpp means; docs/architecture.md
 * places the tokenizer in the engine. */
#ifndef KRILL_TOKENIZER_INTERNAL_H
#define KRILL_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "buf.h"
#include "gguf.h"
#include "tokenizer.h"

#ifdef KRILL_NO_PCRE2
#include "pcre2_none.h" /* bare GPU machines: SentencePiece vocabularies only */
#else
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#endif

/* token attributes (llama.cpp's llama_token_attr meanings) */
enum {
    ATTR_UNKNOWN = 1 << 0,
    ATTR_UNUSED = 1 << 1,
    ATTR_NORMAL = 1 << 2,
    ATTR_CONTROL = 1 << 3,
    ATTR_USER_DEFINED = 1 << 4,
    ATTR_BYTE = 1 << 5,
};

typedef enum { TOK_BPE = 1, TOK_SPM = 2 } tok_kind_t;

#define MAX_RE 6

typedef struct {
    uint64_t key; /* (left << 32) | right; UINT64_MAX = empty */
    int32_t rank;
    int32_t result;
} pair_t;

struct tokenizer {
    tok_kind_t kind;
    int32_t n_vocab;
    int32_t n_sym, sym_cap; /* n_vocab + virtual BPE symbols; capacity of the arrays */
    buf_t text;         /* symbol texts, each NUL-terminated (the NULs are counted in len) */
    uint32_t *text_off; /* (n_sym) */
    uint32_t *text_len; /* (n_sym) */
    float *score;      /* (n_vocab) */
    uint8_t *attr;     /* (n_vocab) */
    char *piece;       /* decoded bytes of each token (special=true view) */
    uint32_t *piece_off, *piece_len; /* (n_vocab) */
    int32_t *hash;     /* open addressing, symbol ids, -1 = empty */
    uint64_t hash_mask;

    /* BPE */
    pair_t *pairs;
    uint64_t pair_mask;
    int32_t byte_sym[256]; /* symbol of each byte's byte-level character */
    int32_t raw_byte_tok[256]; /* token whose text is that single raw byte, or -1 */
    pcre2_code *re[MAX_RE];
    int n_re;
    bool ignore_merges;
    char pre[64];

    /* SentencePiece */
    int32_t spm_byte_tok[256]; /* <0xNN> (or the raw byte) token, or -1 */

    bool add_space_prefix, add_bos;
    int32_t bos, eos, eot, eom, unk;
    int32_t *eog;
    int n_eog;
    int32_t *special; /* control/user-defined/unknown tokens, longest text first */
    int n_special;
};

/* ------------------------------------------------------ tokenizer_vocab.c */

/* Symbol id (token or virtual BPE symbol) of an exact text, -1 when absent. */
int32_t tokenizer_vocab_lookup(const tokenizer_t *t, const char *s, size_t n);
/* Token id (not a virtual symbol) of an exact text, -1 when absent. */
int32_t tokenizer_vocab_token(const tokenizer_t *t, const char *s, size_t n);
/* Adds a virtual symbol (a text the vocabulary lacks) and hashes it; its id or -1
 * when out of memory. */
int32_t tokenizer_vocab_add_virtual(tokenizer_t *t, const char *s, size_t n);
/* The GGUF array `key` when its element type is want1 or want2 and it has at least
 * min_n entries; NULL when absent (*bad false) or unusable (*bad true, err set). */
const gguf_kv_t *tokenizer_vocab_find_arr(const gguf_t *g, const char *key, gguf_vtype_t want1, gguf_vtype_t want2,
                                          uint64_t min_n, bool *bad, char *err, size_t errlen);

/* The text of a symbol (NUL-terminated). Inline: called per merge candidate. */
static inline const char *tokenizer_sym_text(const tokenizer_t *t, int32_t id) {
    return t->text.data + t->text_off[id];
}

/* ------------------------------------------------------ tokenizer_encode.c */

typedef struct {
    int32_t *v;
    size_t n, cap;
    bool oom;
} tokenizer_ids_t;

typedef struct {
    int32_t rank; /* BPE rank */
    float score;  /* SentencePiece score */
    int32_t left, right, sl, sr;
    uint32_t size;
} tokenizer_heap_entry_t;

/* Per-call scratch: symbol arrays sized for the longest word, a heap, match data. */
typedef struct {
    int32_t *sym, *nxt, *prv, *rank, *res; /* (cap) */
    uint8_t *tmp;                          /* (cap * 3 + 8) for SPM text / encoded words */
    tokenizer_heap_entry_t *heap;
    size_t heap_n, heap_cap;
    size_t cap;
    pcre2_match_data *md[MAX_RE];
    const tokenizer_t *t;
    tokenizer_ids_t *out;
    int err;          /* PCRE2 error code when a match failed */
} tokenizer_scratch_t;

/* Room for n symbols (and n * 3 + 8 bytes of tmp); false when out of memory. */
bool tokenizer_scratch_reserve(tokenizer_scratch_t *s, size_t n);
/* Merge heap ordered by (rank ascending, left ascending) for BPE, by (score
 * descending, left ascending) when spm. push: false when out of memory. */
bool tokenizer_scratch_heap_push(tokenizer_scratch_t *s, tokenizer_heap_entry_t e, bool spm);
tokenizer_heap_entry_t tokenizer_scratch_heap_pop(tokenizer_scratch_t *s, bool spm);

/* Appends an output id (sets oom instead on failure). Inline: called per token. */
static inline void tokenizer_ids_push(tokenizer_ids_t *o, int32_t id) {
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        int32_t *nv = realloc(o->v, cap * sizeof *nv);
        if (!nv) {
            o->oom = true;
            return;
        }
        o->v = nv;
        o->cap = cap;
    }
    o->v[o->n++] = id;
}

/* ------------------------------------------------------ tokenizer_pretok.c */

/* Reads tokenizer.ggml.pre, picks its regex list (unknown or absent: llama.cpp's
 * fallbacks, with a warning), sets t->pre, ignore_merges, add_bos and compiles the
 * regexes into t->re. 0 or -1 with err. */
int tokenizer_pretok_init(tokenizer_t *t, const gguf_t *g, char *err, size_t errlen);
/* Applies regex `level` to [p, p+n): matches and the gaps between them are pieces;
 * each goes to the next regex, after the last one to tokenizer_bpe_word. false on
 * out of memory or a PCRE2 error (then s->err holds its code). */
bool tokenizer_pretok_split(tokenizer_scratch_t *s, int level, const uint8_t *p, size_t n);

/* ------------------------------------------------------ tokenizer_bpe.c */

/* The GPT-2 byte-level alphabet: the code point that stands for byte b. */
uint32_t tokenizer_bpe_byte_cp(uint8_t b);
/* Byte symbols, virtual symbols and the merge map from tokenizer.ggml.merges. */
int tokenizer_bpe_load(tokenizer_t *t, const gguf_t *g, char *err, size_t errlen);
/* Byte-level BPE over one pre-tokenized word (raw bytes); ids go to s->out. false
 * when out of memory. */
bool tokenizer_bpe_word(tokenizer_scratch_t *s, const uint8_t *w, size_t n);

/* ------------------------------------------------------ tokenizer_spm.c */

/* The byte-fallback token of every byte (<0xNN>, else the raw byte's token). */
void tokenizer_spm_init(tokenizer_t *t);
/* Encodes one text fragment (spaces become "▁"; space_prefix adds one in front). false
 * when out of memory (s->err 0) or when a character has no token (s->err 1). */
bool tokenizer_spm_fragment(tokenizer_scratch_t *s, const uint8_t *p, size_t n, bool space_prefix);

/* ------------------------------------------------------ tokenizer_decode.c */

/* Builds t->piece (the bytes every token decodes to); false when out of memory. */
bool tokenizer_decode_build_pieces(tokenizer_t *t);

#endif
