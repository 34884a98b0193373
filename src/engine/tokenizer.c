/* tokenizer.c — byte-level BPE ("gpt2") and SentencePiece BPE ("llama") tokenizers
 * built from GGUF tokenizer.ggml.* metadata, matching llama.cpp's llama_tokenize.
 *
 * Rules kept:
 *   - parity with llama.cpp is the spec (docs/tokenizer.md lists what that means and
 *     where transformers differs): special-token partition longest-first over the
 *     text fragments (user-defined tokens always, control/unknown only with
 *     parse_special), pre-tokenizer regex lists applied in sequence (each one splits
 *     the pieces of the previous one; unmatched gaps are pieces too), BPE merges by
 *     rank (ties: leftmost), SentencePiece merges by score (ties: leftmost) with
 *     <0xNN> byte fallback and "▁" for spaces;
 *   - pre-tokenizer regexes are PCRE2 (UTF, JIT). They never use \s: whitespace is the
 *     explicit set llama.cpp uses (no U+180E, no U+001C..U+001F), so the regexes
 *     reproduce llama.cpp's hand-written splitters, not just the published patterns;
 *   - the input is validated as UTF-8 first (errors name the byte offset), so PCRE2
 *     runs with PCRE2_NO_UTF_CHECK;
 *   - a loaded tokenizer is immutable: encode allocates its own scratch per call
 *     (O(text) bytes, never per token), so every function is thread-safe;
 *   - BPE works on symbol ids, not strings: a symbol is a vocabulary token or a
 *     "virtual" text that a merge can produce but the vocabulary lacks (kept so that
 *     broken vocabularies behave as in llama.cpp); merges are a (left, right) ->
 *     (rank, result) hash map; a word is merged with a linear scan for the best pair
 *     when short and with a binary heap when long. */
#include "tokenizer.h"
#include "err.h"

#ifdef KRILL_NO_PCRE2
#include "pcre2_none.h" /* bare GPU machines: SentencePiece vocabularies only */
#else
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#endif

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

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
#define LINEAR_MAX 48 /* words up to this many symbols merge with a linear scan */

typedef struct {
    uint64_t key; /* (left << 32) | right; UINT64_MAX = empty */
    int32_t rank;
    int32_t result;
} pair_t;

typedef struct {
    char *buf;
    size_t len, cap;
} sbuf_t;

struct tokenizer {
    tok_kind_t kind;
    int32_t n_vocab;
    int32_t n_sym, sym_cap; /* n_vocab + virtual BPE symbols; capacity of the arrays */
    sbuf_t text;        /* symbol texts, each NUL-terminated */
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

/* ------------------------------------------------------------------ helpers */


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

static inline uint64_t hash_pair(uint64_t key) {
    key *= 0x9E3779B97F4A7C15ull;
    return key ^ (key >> 31);
}

static inline const char *sym_text(const tokenizer_t *t, int32_t id) { return t->text.buf + t->text_off[id]; }

/* Symbol id of an exact text, -1 when absent. */
static int32_t lookup(const tokenizer_t *t, const char *s, size_t n) {
    uint64_t i = hash_bytes(s, n) & t->hash_mask;
    for (;;) {
        int32_t id = t->hash[i];
        if (id < 0) return -1;
        if (t->text_len[id] == n && memcmp(sym_text(t, id), s, n) == 0) return id;
        i = (i + 1) & t->hash_mask;
    }
}

/* Token id (not a virtual symbol) of an exact text, -1 when absent. */
static int32_t lookup_tok(const tokenizer_t *t, const char *s, size_t n) {
    int32_t id = lookup(t, s, n);
    return id < t->n_vocab ? id : -1;
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

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 if invalid.
 * Strict: no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_seq(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c < 0xC2) return 0;
    if (c < 0xE0) {
        if (n < 2 || (s[1] & 0xC0) != 0x80) return 0;
        *cp = ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
        return 2;
    }
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;
        if (c == 0xED && s[1] > 0x9F) return 0;
        *cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;
        if (c == 0xF4 && s[1] > 0x8F) return 0;
        *cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
              ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
        return 4;
    }
    return 0;
}

/* Offset of the first invalid UTF-8 byte, or len when the text is valid. */
static size_t utf8_check(const char *text, size_t len) {
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0;
    while (i < len) {
        if (s[i] < 0x80) { /* ASCII fast path, 8 bytes at a time */
            while (i + 8 <= len) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (w & 0x8080808080808080ull) break;
                i += 8;
            }
            if (i < len && s[i] < 0x80) {
                i++;
                continue;
            }
            if (i >= len) break;
        }
        uint32_t cp;
        size_t k = utf8_seq(s + i, len - i, &cp);
        if (!k) return i;
        i += k;
    }
    return len;
}

static size_t utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* GPT-2 byte-level alphabet: printable bytes stand for themselves, the 68 others map
 * to U+0100 + n in byte order. */
static bool byte_printable(int c) { return (c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE; }

static uint32_t byte_to_cp(uint8_t b) {
    if (byte_printable(b)) return b;
    uint32_t n = 0;
    for (int c = 0; c < b; c++) n += !byte_printable(c);
    return 0x100 + n;
}

/* Inverse of byte_to_cp through a table (cp < 0x144), -1 when cp is not in the alphabet. */
static int cp_to_byte(const int16_t *inv, uint32_t cp) { return cp < 0x144 ? inv[cp] : -1; }

/* -------------------------------------------------------- pre-tokenizers */

/* Whitespace as llama.cpp classifies it (its \s): inside a character class. */
#define WS "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

/* Letters, numbers and punctuation (class contents). llama.cpp's tables are Unicode
 * 15.1; PCRE2 10.42 (Debian 12) knows Unicode 14, so the code points that 15.0/15.1
 * assigned to these categories are listed explicitly (a newer PCRE2 already has them). */
#define RE_L "\\p{L}\\x{1123F}-\\x{11240}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}\\x{1342F}"      \
          "\\x{13441}-\\x{13446}\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}\\x{1E030}-\\x{1E06D}"          \
          "\\x{1E4D0}-\\x{1E4EB}\\x{2B739}\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}"
#define RE_N "\\p{N}\\x{11F50}-\\x{11F59}\\x{1D2C0}-\\x{1D2D3}\\x{1E4F0}-\\x{1E4F9}"
#define RE_P "\\p{P}\\x{11B00}-\\x{11B09}\\x{11F43}-\\x{11F4F}"

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?[" RE_L "]+| ?[" RE_N "]+| ?[^" WS RE_L RE_N "]+|[" WS "]+(?![^" WS "])|[" WS "]+"
#define RE_CONTRACT_CI "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_LLAMA3_TAIL "| ?[^" WS RE_L RE_N "]+[\\r\\n]*|[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+"
#define RE_LLAMA3 RE_CONTRACT_CI "|[^\\r\\n" RE_L RE_N "]?[" RE_L "]+|[" RE_N "]{1,3}" RE_LLAMA3_TAIL
#define RE_QWEN2 RE_CONTRACT_CI "|[^\\r\\n" RE_L RE_N "]?[" RE_L "]+|[" RE_N "]" RE_LLAMA3_TAIL

/* llama.cpp matches regexes without \p{..} on text where every non-ASCII whitespace
 * character was replaced by U+000B, so a literal range never matches one of them: the
 * ranges below leave them out (U+0800..U+4E00 minus U+1680, U+2000..U+200A, U+2028,
 * U+2029, U+202F, U+205F, U+3000; the punctuation class of deepseek-llm minus U+3000). */
#define RE_DEEPSEEK_CJK                                                                              \
    "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{167F}\\x{1681}-\\x{1FFF}\\x{200B}-\\x{2027}\\x{202A}-\\x{202E}" \
    "\\x{2030}-\\x{205E}\\x{2060}-\\x{2FFF}\\x{3001}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+"

typedef struct {
    const char *names; /* '|'-separated tokenizer.ggml.pre values */
    const char *re[MAX_RE];
    bool ignore_merges;
    bool add_bos;
} pre_def_t;

static const pre_def_t pre_defs[] = {
    {"default", {"[" RE_P "$+<=>^~|]+", RE_GPT2, "[" RE_N "]+", "[0-9][0-9][0-9]"}, false, false},
    {"gpt-2|phi-2|jina-es|jina-de|gigachat|jina-v2-es|jina-v2-de|a.x-4.0|mellum|modern-bert|"
     "jina-v1-en|jina-v2-code|roberta-bpe|exaone4|mpt|olmo|jais|trillion|granite-docling",
     {RE_GPT2}, false, false},
    {"smollm|starcoder|refact|command-r|codeshell|exaone|minerva-7b", {"[" RE_N "]", RE_GPT2}, false, false},
    {"llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|midm-2.0|lfm2|jina-v5-nano", {RE_LLAMA3}, true, true},
    {"qwen2|deepseek-r1-qwen|kormo|f2llmv2|megrez|stablelm2|hunyuan", {RE_QWEN2}, false, false},
    {"falcon", {"[" RE_P "$+<=>^~|`]+", RE_GPT2, "[0-9][0-9][0-9]"}, false, false},
    {"deepseek-llm",
     {"[\\r\\n]",
      "[" WS "]?["
      "A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}"
      "\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}"
      "-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}"
      "-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}"
      "-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}"
      "-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}"
      "\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}"
      "-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}"
      "-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}"
      "\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}"
      "\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}"
      "\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}"
      "-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}"
      "-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}"
      "\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}"
      "]+",
      "[" WS "]?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3001}-\\x{3002}]+",
      "(?<![" WS "])[" WS "]++\\z",
      RE_DEEPSEEK_CJK,
      "[" RE_N "]+"},
     false, false},
    {"deepseek-coder",
     {"[\\r\\n]", "[" WS "]?[" RE_L "]+", "[" WS "]?[" RE_P "]+", RE_DEEPSEEK_CJK, "[" RE_N "]"}, false, false},
};

static bool name_in(const char *names, const char *name) {
    size_t n = strlen(name);
    for (const char *p = names; *p;) {
        const char *e = strchr(p, '|');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && memcmp(p, name, n) == 0) return true;
        if (!e) break;
        p = e + 1;
    }
    return false;
}

/* ------------------------------------------------------------------- loading */

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

static bool sb_put(sbuf_t *b, const void *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > cap) cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb) return false;
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, p, n);
    b->len += n;
    b->buf[b->len] = 0;
    return true;
}

static const gguf_kv_t *find_arr(const gguf_t *g, const char *key, gguf_vtype_t want1, gguf_vtype_t want2,
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
    if (!sb_put(&t->text, s, slen)) return false;
    t->text.len++; /* keep the NUL that sb_put wrote */
    t->n_sym++;
    return true;
}

/* Inserts id; returns the id already holding the same text, or -1. */
static int32_t hash_insert(tokenizer_t *t, int32_t id) {
    const char *s = sym_text(t, id);
    size_t n = t->text_len[id];
    uint64_t i = hash_bytes(s, n) & t->hash_mask;
    for (;;) {
        int32_t o = t->hash[i];
        if (o < 0) {
            t->hash[i] = id;
            return -1;
        }
        if (t->text_len[o] == n && memcmp(sym_text(t, o), s, n) == 0) return o;
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
static int32_t add_virtual(tokenizer_t *t, const char *s, size_t n) {
    if (!add_text(t, s, n)) return -1;
    if ((uint64_t)t->n_sym * 2 > t->hash_mask + 1) {
        if (!hash_build(t, t->n_sym)) return -1;
    } else {
        hash_insert(t, t->n_sym - 1);
    }
    return t->n_sym - 1;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The byte of a <0xNN> token (llama.cpp reads the two characters after "<0x"). */
static uint8_t byte_token_value(const char *s, size_t n) {
    int v = 0;
    for (size_t i = 3; i < 5 && i < n; i++) {
        int h = hexval(s[i]);
        if (h < 0) break;
        v = v * 16 + h;
    }
    return (uint8_t)v;
}

static bool build_pieces(tokenizer_t *t) {
    sbuf_t b = {0};
    t->piece_off = malloc((size_t)t->n_vocab * sizeof *t->piece_off);
    t->piece_len = malloc((size_t)t->n_vocab * sizeof *t->piece_len);
    if (!t->piece_off || !t->piece_len) return false;
    char tmp[64];
    int16_t inv[0x144];
    for (int i = 0; i < 0x144; i++) inv[i] = -1;
    for (int b = 0; b < 256; b++) inv[byte_to_cp((uint8_t)b)] = (int16_t)b;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const char *s = sym_text(t, id);
        size_t n = t->text_len[id];
        uint8_t a = t->attr[id];
        size_t start = b.len;
        bool ok = true;
        if (a & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED)) {
            ok = sb_put(&b, s, n);
        } else if (a & ATTR_NORMAL) {
            if (t->kind == TOK_SPM) {
                for (size_t i = 0; i < n && ok;) {
                    if (i + 3 <= n && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
                        ok = sb_put(&b, " ", 1);
                        i += 3;
                    } else {
                        ok = sb_put(&b, s + i, 1);
                        i++;
                    }
                }
            } else {
                for (size_t i = 0; i < n && ok;) {
                    uint32_t cp = 0xFFFD;
                    size_t k = utf8_seq((const uint8_t *)s + i, n - i, &cp);
                    if (!k) { /* llama.cpp decodes a bad byte as U+FFFD */
                        k = 1;
                        cp = 0xFFFD;
                    }
                    int byte = cp_to_byte(inv, cp);
                    if (byte >= 0) {
                        char c = (char)byte;
                        ok = sb_put(&b, &c, 1);
                    } else { /* llama.cpp's marker for a character outside the alphabet */
                        char u[4];
                        size_t un = utf8_put(cp, u);
                        ok = sb_put(&b, "[UNK_BYTE_0x", 12);
                        for (size_t j = 0; j < un && ok; j++) {
                            snprintf(tmp, sizeof tmp, "%02x", (uint8_t)u[j]);
                            ok = sb_put(&b, tmp, 2);
                        }
                        ok = ok && sb_put(&b, s, n) && sb_put(&b, "]", 1);
                    }
                    i += k;
                }
            }
        } else if (a & ATTR_BYTE) {
            char c = (char)byte_token_value(s, n);
            ok = sb_put(&b, &c, 1);
        }
        if (!ok || b.len > UINT32_MAX) {
            free(b.buf);
            return false;
        }
        t->piece_off[id] = (uint32_t)start;
        t->piece_len[id] = (uint32_t)(b.len - start);
    }
    if (!b.buf && !sb_put(&b, "", 0)) return false;
    t->piece = b.buf;
    return true;
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
static int load_bpe(tokenizer_t *t, const gguf_t *g, char *err, size_t errlen) {
    bool bad;
    char *cat = NULL;
    const gguf_kv_t *mkv = find_arr(g, "tokenizer.ggml.merges", GGUF_VT_STRING, GGUF_VT_STRING, 0, &bad, err, errlen);
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
        size_t k = utf8_put(byte_to_cp((uint8_t)b), tmp);
        int32_t id = lookup(t, tmp, k);
        if (id < 0 && (id = add_virtual(t, tmp, k)) < 0) goto oom;
        t->byte_sym[b] = id;
        char raw = (char)b;
        t->raw_byte_tok[b] = lookup_tok(t, &raw, 1);
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
        if (lookup(t, cat, n) < 0 && add_virtual(t, cat, n) < 0) goto oom;
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
        int32_t a = lookup(t, l.ptr, l.len), b = lookup(t, r.ptr, r.len);
        /* a half that is no symbol can never appear in a word: the merge never applies */
        if (a < 0 || b < 0) continue;
        memcpy(cat, l.ptr, l.len);
        memcpy(cat + l.len, r.ptr, r.len);
        int32_t res = lookup(t, cat, l.len + r.len);
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

static int compile_pre(tokenizer_t *t, const pre_def_t *def, char *err, size_t errlen) {
#ifdef KRILL_NO_PCRE2
    if (def->re[0]) {
        err_set(err, errlen, "tokenizer: pre-tokenizer '%s' needs PCRE2 and this build has none (-DKRILL_NO_PCRE2): "
                "only SentencePiece (\"llama\") vocabularies load; rebuild with libpcre2-dev", t->pre);
        return -1;
    }
#endif
    for (int i = 0; i < MAX_RE && def->re[i]; i++) {
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)def->re[i], PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_NO_UTF_CHECK,
                                       &ec, &eo, NULL);
        if (!re) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(ec, msg, sizeof msg);
            err_set(err, errlen, "pre-tokenizer regex %d of '%s' does not compile at %zu: %s (a krill bug)", i,
                   t->pre, (size_t)eo, (const char *)msg);
            return -1;
        }
        /* JIT is an optimisation: without it (e.g. no JIT support) pcre2_match still works */
        (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
        t->re[t->n_re++] = re;
    }
    return 0;
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
    const gguf_kv_t *tkv = find_arr(g, "tokenizer.ggml.tokens", GGUF_VT_STRING, GGUF_VT_STRING, 0, &bad, err, errlen);
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
        find_arr(g, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, GGUF_VT_INT32, (uint64_t)t->n_vocab, &bad, err, errlen);
    if (bad) goto fail;
    const gguf_kv_t *ykv =
        find_arr(g, "tokenizer.ggml.token_type", GGUF_VT_INT32, GGUF_VT_INT32, (uint64_t)t->n_vocab, &bad, err, errlen);
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
        int32_t o = lookup(t, sym_text(t, i), t->text_len[i]);
        if (o != i) {
            char name[64];
            snprintf(name, sizeof name, "%.60s", sym_text(t, i));
            err_set(err, errlen, "tokens %d and %d have the same text '%s': the vocabulary is corrupt "
                                "(llama.cpp refuses it too)", o, i, name);
            goto fail;
        }
    }

    /* per-type defaults (llama.cpp's), then the GGUF keys */
    int32_t def_bos = -1, def_eos = -1, def_unk = -1;
    if (t->kind == TOK_BPE) {
        gguf_str_t pre;
        const pre_def_t *def = &pre_defs[0];
        if (gguf_get_str(g, "tokenizer.ggml.pre", &pre, NULL, 0) == 0) {
            gguf_str_copy(pre, t->pre, sizeof t->pre);
            for (char *c = t->pre; *c; c++) /* it is logged: keep it printable */
                if ((unsigned char)*c < 0x20 || *c == '"' || *c == 0x7F) *c = '?';
            def = NULL;
            for (size_t i = 0; i < sizeof pre_defs / sizeof pre_defs[0] && !def; i++)
                if (name_in(pre_defs[i].names, t->pre)) def = &pre_defs[i];
            if (!def) {
                LOG_WARN("unknown pre-tokenizer; using the GPT-2 regex (tokens may differ from the model's own "
                         "tokenizer)", "pre=%s", t->pre);
                def = &pre_defs[1];
            }
        } else {
            LOG_WARN("GGUF has no tokenizer.ggml.pre; using llama.cpp's 'default' pre-tokenizer", NULL);
            snprintf(t->pre, sizeof t->pre, "default");
        }
        t->ignore_merges = def->ignore_merges;
        t->add_bos = def->add_bos;
        t->add_space_prefix = false;
        def_bos = def_eos = 11; /* llama.cpp's historical defaults for "gpt2" */
        if (compile_pre(t, def, err, errlen) != 0) goto fail;
        if (load_bpe(t, g, err, errlen) != 0) goto fail;
    } else {
        snprintf(t->pre, sizeof t->pre, "spm");
        t->add_space_prefix = true;
        t->add_bos = true;
        def_bos = 1;
        def_eos = 2;
        def_unk = 0;
        for (int b = 0; b < 256; b++) {
            snprintf(tmp, sizeof tmp, "<0x%02X>", b);
            int32_t id = lookup_tok(t, tmp, 6);
            if (id < 0) {
                char raw = (char)b;
                id = lookup_tok(t, &raw, 1);
            }
            t->spm_byte_tok[b] = id;
        }
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
            int32_t id = lookup_tok(t, named_toks[i].text, strlen(named_toks[i].text));
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
        int32_t id = lookup_tok(t, eog_texts[i], strlen(eog_texts[i]));
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

    if (!build_pieces(t)) goto oom;
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
    free(t->text.buf);
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

/* ------------------------------------------------------------------- encoding */

typedef struct {
    int32_t *v;
    size_t n, cap;
    bool oom;
} ids_t;

static inline void ids_push(ids_t *o, int32_t id) {
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

/* Per-call scratch: symbol arrays sized for the longest word, a heap, match data. */
typedef struct {
    int32_t *sym, *nxt, *prv, *rank, *res; /* (cap) */
    uint8_t *tmp;                          /* (cap * 3 + 8) for SPM text / encoded words */
    struct heap_e {
        int32_t rank; /* BPE rank, or SPM score bits ordered as a key */
        float score;
        int32_t left, right, sl, sr;
        uint32_t size;
    } *heap;
    size_t heap_n, heap_cap;
    size_t cap;
    pcre2_match_data *md[MAX_RE];
    const tokenizer_t *t;
    ids_t *out;
    int err;          /* PCRE2 error code when a match failed */
    size_t err_off;
} scratch_t;

static bool scratch_reserve(scratch_t *s, size_t n) {
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

static void scratch_free(scratch_t *s) {
    free(s->sym);
    free(s->nxt);
    free(s->prv);
    free(s->rank);
    free(s->res);
    free(s->tmp);
    free(s->heap);
    for (int i = 0; i < MAX_RE; i++) pcre2_match_data_free(s->md[i]);
}

/* Heap ordered by (rank ascending, left ascending) for BPE. */
static inline bool heap_less_bpe(const struct heap_e *a, const struct heap_e *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}
/* Heap ordered by (score descending, left ascending) for SentencePiece. */
static inline bool heap_less_spm(const struct heap_e *a, const struct heap_e *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static bool heap_push(scratch_t *s, struct heap_e e, bool spm) {
    if (s->heap_n == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : 256;
        struct heap_e *h = realloc(s->heap, cap * sizeof *h);
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

static struct heap_e heap_pop(scratch_t *s, bool spm) {
    struct heap_e top = s->heap[0];
    struct heap_e last = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const struct heap_e *best = &last;
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

/* Emits the tokens of a final BPE symbol. */
static inline void bpe_emit(scratch_t *s, int32_t sid) {
    const tokenizer_t *t = s->t;
    if (sid < t->n_vocab) {
        ids_push(s->out, sid);
        return;
    }
    /* a text the vocabulary lacks: llama.cpp looks each of its bytes up as a token */
    const char *p = sym_text(t, sid);
    for (uint32_t i = 0; i < t->text_len[sid]; i++) {
        int32_t id = t->raw_byte_tok[(uint8_t)p[i]];
        if (id >= 0) ids_push(s->out, id);
    }
}

static inline void pair_rank(const tokenizer_t *t, scratch_t *s, int32_t i) {
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
static bool bpe_word(scratch_t *s, const uint8_t *w, size_t n) {
    const tokenizer_t *t = s->t;
    if (n == 1) {
        bpe_emit(s, t->byte_sym[w[0]]);
        return true;
    }
    if (t->ignore_merges) { /* the whole word is a token: take it (llama3) */
        size_t k = 0;
        if (!scratch_reserve(s, n)) return false;
        for (size_t i = 0; i < n; i++) k += utf8_put(byte_to_cp(w[i]), (char *)s->tmp + k);
        int32_t id = lookup_tok(t, (const char *)s->tmp, k);
        if (id >= 0) {
            ids_push(s->out, id);
            return true;
        }
    }
    if (!scratch_reserve(s, n)) return false;
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
                struct heap_e e = {.rank = rank[i], .left = (int32_t)i, .right = (int32_t)i + 1,
                                   .sl = sym[i], .sr = sym[i + 1]};
                if (!heap_push(s, e, false)) return false;
            }
        while (s->heap_n) {
            struct heap_e e = heap_pop(s, false);
            int32_t i = e.left, j = e.right;
            /* stale when either side was merged since the pair was queued */
            if (sym[i] != e.sl || nxt[i] != j || sym[j] != e.sr) continue;
            sym[i] = res[i];
            sym[j] = -1;
            nxt[i] = nxt[j];
            if (nxt[j] >= 0) prv[nxt[j]] = i;
            pair_rank(t, s, i);
            if (rank[i] != INT32_MAX) {
                struct heap_e ne = {.rank = rank[i], .left = i, .right = nxt[i], .sl = sym[i], .sr = sym[nxt[i]]};
                if (!heap_push(s, ne, false)) return false;
            }
            int32_t p = prv[i];
            if (p >= 0) {
                pair_rank(t, s, p);
                if (rank[p] != INT32_MAX) {
                    struct heap_e ne = {.rank = rank[p], .left = p, .right = i, .sl = sym[p], .sr = sym[i]};
                    if (!heap_push(s, ne, false)) return false;
                }
            }
        }
    }
    for (int32_t i = 0; i >= 0; i = nxt[i]) bpe_emit(s, sym[i]);
    return true;
}

/* Applies regex `level` to [p, p+n): matches and the gaps between them are pieces;
 * each piece goes to the next regex, and after the last one to BPE. */
static bool pretok(scratch_t *s, int level, const uint8_t *p, size_t n) {
    const tokenizer_t *t = s->t;
    if (level == t->n_re) return bpe_word(s, p, n);
    pcre2_code *re = t->re[level];
    pcre2_match_data *md = s->md[level];
    PCRE2_SIZE pos = 0;
    while (pos < n) {
        int rc = pcre2_match(re, p, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            s->err = rc;
            return false;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        PCRE2_SIZE ms = ov[0], me = ov[1];
        if (ms > pos && !pretok(s, level + 1, p + pos, ms - pos)) return false;
        if (me > ms) {
            if (!pretok(s, level + 1, p + ms, me - ms)) return false;
            pos = me;
        } else { /* an empty match (none of our regexes has one): step one character */
            size_t k = 1;
            while (ms + k < n && (p[ms + k] & 0xC0) == 0x80) k++;
            if (ms + k > pos && !pretok(s, level + 1, p + pos, ms + k - pos)) return false;
            pos = ms + k;
        }
    }
    if (pos < n && !pretok(s, level + 1, p + pos, n - pos)) return false;
    return true;
}

/* SentencePiece BPE over text that already has "▁" for spaces. The caller reserved
 * the scratch for n symbols (x may live in the scratch, so no reallocation here). */
static bool spm_text(scratch_t *s, const uint8_t *x, size_t n) {
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
            int32_t id_ = lookup_tok(t, (const char *)x + st[l], len_);                            \
            if (id_ >= 0) {                                                                        \
                struct heap_e e_ = {.score = t->score[id_], .left = (l), .right = (r), .size = (uint32_t)len_}; \
                if (!heap_push(s, e_, true)) return false;                                         \
            }                                                                                      \
        }                                                                                          \
    } while (0)
    for (int32_t i = 1; i < m; i++) SPM_TRY(i - 1, i);
    while (s->heap_n) {
        struct heap_e e = heap_pop(s, true);
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
        int32_t id = lookup_tok(t, (const char *)x + st[i], (size_t)ln[i]);
        if (id >= 0) {
            ids_push(s->out, id);
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
            ids_push(s->out, b);
        }
    }
    return true;
}

typedef struct {
    size_t off, len;
    int32_t id; /* -1: text */
} frag_t;

/* llama.cpp's tokenizer_st_partition: for each special token (longest first), split
 * every text fragment at each of its occurrences, left to right. */
static frag_t *partition(const tokenizer_t *t, const char *text, size_t len, bool parse_special, size_t *n_frag) {
    size_t cap = 16, n = 1;
    frag_t *f = malloc(cap * sizeof *f);
    if (!f) return NULL;
    f[0] = (frag_t){0, len, -1};
    for (int k = 0; k < t->n_special; k++) {
        int32_t id = t->special[k];
        if (!parse_special && (t->attr[id] & (ATTR_CONTROL | ATTR_UNKNOWN))) continue;
        const char *tx = sym_text(t, id);
        size_t tl = t->text_len[id];
        if (tl > len || !memmem(text, len, tx, tl)) continue; /* cheap whole-text test first */
        for (size_t i = 0; i < n; i++) {
            if (f[i].id >= 0) continue;
            size_t off = f[i].off, end = f[i].off + f[i].len;
            const char *hit = memmem(text + off, end - off, tx, tl);
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
    *ids = NULL;
    *n_ids = 0;
    if (!text && len) {
        err_set(err, errlen, "tokenizer_encode: NULL text");
        return -1;
    }
    size_t bad = utf8_check(text, len);
    if (bad < len) {
        err_set(err, errlen, "invalid UTF-8 at byte offset %zu (byte 0x%02X): the text must be UTF-8", bad,
               (unsigned)(uint8_t)text[bad]);
        return -1;
    }
    ids_t out = {0};
    scratch_t s = {.t = t, .out = &out};
    frag_t *f = NULL;
    size_t nf = 0;
    int rc = -1;
    for (int i = 0; i < t->n_re; i++) {
        s.md[i] = pcre2_match_data_create_from_pattern(t->re[i], NULL);
        if (!s.md[i]) goto oom;
    }
    if (add_bos && t->bos >= 0) ids_push(&out, t->bos);
    if (len) {
        f = partition(t, text, len, parse_special, &nf);
        if (!f) goto oom;
    }
    bool prev_special = true; /* SentencePiece: a text fragment after a token gets a space */
    for (size_t i = 0; i < nf; i++) {
        if (f[i].id >= 0) {
            ids_push(&out, f[i].id);
            prev_special = true;
            continue;
        }
        const uint8_t *p = (const uint8_t *)text + f[i].off;
        size_t n = f[i].len;
        if (t->kind == TOK_BPE) {
            if (!pretok(&s, 0, p, n)) {
                if (out.oom || !s.err) goto oom;
                err_set(err, errlen, "pre-tokenizer regex failed (PCRE2 error %d) in the text at byte %zu", s.err,
                       f[i].off);
                goto done;
            }
        } else {
            bool pre = t->add_space_prefix && prev_special;
            size_t need = (n + 1) * 3;
            if (!scratch_reserve(&s, need)) goto oom;
            uint8_t *x = s.tmp;
            size_t k = 0;
            if (pre) {
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
            if (!spm_text(&s, x, k)) {
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

/* ------------------------------------------------------------------- decoding */

int tokenizer_token_bytes(const tokenizer_t *t, int32_t id, bool special, char *buf, size_t cap) {
    if (id < 0 || id >= t->n_vocab) return -1;
    if (!special && (t->attr[id] & (ATTR_UNKNOWN | ATTR_CONTROL))) return 0;
    size_t n = t->piece_len[id];
    if (buf && cap) memcpy(buf, t->piece + t->piece_off[id], n < cap ? n : cap);
    return (int)n;
}

const char *tokenizer_token_str(const tokenizer_t *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return "";
    return sym_text(t, id);
}

void tokenizer_stream_init(tokenizer_stream_t *s) {
    memset(s, 0, sizeof *s);
    s->first = true;
}

/* Bytes a sequence starting with lead byte c needs, 0 when c cannot start one. */
static int utf8_need(uint8_t c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

/* Is b acceptable as continuation byte number k (1-based) after lead byte c? */
static bool utf8_cont_ok(uint8_t c, int k, uint8_t b) {
    if ((b & 0xC0) != 0x80) return false;
    if (k == 1) {
        if (c == 0xE0) return b >= 0xA0;
        if (c == 0xED) return b <= 0x9F;
        if (c == 0xF0) return b >= 0x90;
        if (c == 0xF4) return b <= 0x8F;
    }
    return true;
}

typedef struct {
    char *out;
    size_t cap, n;
} wbuf_t;

static inline void w_put(wbuf_t *w, const char *p, size_t n) {
    size_t k = n <= w->cap - w->n ? n : w->cap - w->n;
    memcpy(w->out + w->n, p, k);
    w->n += k;
}

/* Feeds bytes through the UTF-8 assembler: complete sequences go out, an incomplete
 * tail waits in s->pending, bytes that can never form a sequence become U+FFFD (one per
 * maximal invalid subpart, as Python's errors="replace"). */
static void stream_bytes(tokenizer_stream_t *s, const char *p, size_t n, wbuf_t *w) {
    static const char fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)p[i];
        if (s->n_pending > 0) {
            uint8_t c = (uint8_t)s->pending[0];
            if (utf8_cont_ok(c, s->n_pending, b)) {
                s->pending[s->n_pending++] = (char)b;
                if (s->n_pending == utf8_need(c)) {
                    w_put(w, s->pending, (size_t)s->n_pending);
                    s->n_pending = 0;
                }
                continue;
            }
            w_put(w, fffd, 3);
            s->n_pending = 0;
        }
        int need = utf8_need(b);
        if (need == 1) {
            w_put(w, (const char *)&p[i], 1);
        } else if (need == 0) {
            w_put(w, fffd, 3);
        } else {
            s->pending[0] = (char)b;
            s->n_pending = 1;
        }
    }
}

static int stream_push(const tokenizer_t *t, tokenizer_stream_t *s, int32_t id, bool special, char *out, size_t cap) {
    if (id < 0 || id >= t->n_vocab) return -1;
    wbuf_t w = {out, cap, 0};
    bool first = s->first;
    s->first = false;
    if (!special && (t->attr[id] & (ATTR_UNKNOWN | ATTR_CONTROL))) return 0;
    const char *p = t->piece + t->piece_off[id];
    size_t n = t->piece_len[id];
    if (first && t->add_space_prefix && n > 0 && p[0] == ' ') { /* llama.cpp's lstrip of the first piece */
        p++;
        n--;
    }
    stream_bytes(s, p, n, &w);
    return (int)w.n;
}

int tokenizer_stream_push(const tokenizer_t *t, tokenizer_stream_t *s, int32_t id, char *out, size_t cap) {
    return stream_push(t, s, id, false, out, cap);
}

int tokenizer_stream_flush(tokenizer_stream_t *s, char *out, size_t cap) {
    wbuf_t w = {out, cap, 0};
    if (s->n_pending > 0) {
        w_put(&w, "\xEF\xBF\xBD", 3);
        s->n_pending = 0;
    }
    return (int)w.n;
}

char *tokenizer_decode(const tokenizer_t *t, const int32_t *ids, size_t n, bool special, size_t *len) {
    sbuf_t b = {0};
    tokenizer_stream_t s;
    tokenizer_stream_init(&s);
    char chunk[64];
    if (!sb_put(&b, "", 0)) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab) goto fail;
        size_t need = (size_t)t->piece_len[ids[i]] * 3 + 16;
        char *o = need <= sizeof chunk ? chunk : malloc(need);
        if (!o) goto fail;
        int k = stream_push(t, &s, ids[i], special, o, need);
        bool ok = k >= 0 && sb_put(&b, o, (size_t)k);
        if (o != chunk) free(o);
        if (!ok) goto fail;
    }
    int k = tokenizer_stream_flush(&s, chunk, sizeof chunk);
    if (!sb_put(&b, chunk, (size_t)k)) goto fail;
    if (len) *len = b.len;
    return b.buf;
fail:
    free(b.buf);
    return NULL;
}
