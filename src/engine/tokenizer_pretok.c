/* tokenizer_pretok.c — the pre-tokenizer of byte-level BPE vocabularies: the regex
 * lists of each tokenizer.ggml.pre family (llama.cpp's llm_tokenizer_bpe table), their
 * PCRE2 compilation, and the split of a text fragment into words for tokenizer_bpe.c.
 *
 * Rules kept:
 *   - the regex lists are applied in sequence: each one splits the pieces of the
 *     previous one, and unmatched gaps are pieces too (llama.cpp's unicode_regex_split);
 *   - the regexes never use \s: whitespace is the explicit set llama.cpp uses (no
 *     U+180E, no U+001C..U+001F), so they reproduce llama.cpp's hand-written splitters,
 *     not just the published patterns;
 *   - the caller validated the text as UTF-8 (tokenizer_encode), so PCRE2 runs in UTF
 *     mode with PCRE2_NO_UTF_CHECK; JIT when available. */
#include "tokenizer_internal.h"

#include <stdio.h>
#include <string.h>

#include "err.h"
#include "log.h"

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

int tokenizer_pretok_init(tokenizer_t *t, const gguf_t *g, char *err, size_t errlen) {
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
    return compile_pre(t, def, err, errlen);
}

bool tokenizer_pretok_split(tokenizer_scratch_t *s, int level, const uint8_t *p, size_t n) {
    const tokenizer_t *t = s->t;
    if (level == t->n_re) return tokenizer_bpe_word(s, p, n);
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
        if (ms > pos && !tokenizer_pretok_split(s, level + 1, p + pos, ms - pos)) return false;
        if (me > ms) {
            if (!tokenizer_pretok_split(s, level + 1, p + ms, me - ms)) return false;
            pos = me;
        } else { /* an empty match (none of our regexes has one): step one character */
            size_t k = 1;
            while (ms + k < n && (p[ms + k] & 0xC0) == 0x80) k++;
            if (ms + k > pos && !tokenizer_pretok_split(s, level + 1, p + pos, ms + k - pos)) return false;
            pos = ms + k;
        }
    }
    if (pos < n && !tokenizer_pretok_split(s, level + 1, p + pos, n - pos)) return false;
    return true;
}

