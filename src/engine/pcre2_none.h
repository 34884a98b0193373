/* pcre2_none.h — stand-ins for the PCRE2 calls the tokenizer makes, used only when krill
 * is built with -DKRILL_NO_PCRE2 (bare GPU machines: scripts/gpu-check.sh).
 *
 * Such a build loads SentencePiece ("llama") vocabularies, which need no regex; a
 * byte-level BPE ("gpt2") vocabulary fails to load with a message saying why
 * (tokenizer_pretok.c, compile_pre). Nothing here ever matches: pcre2_compile always
 * fails. The bodies are trivial on purpose; a real build includes <pcre2.h> instead. */
#ifndef KRILL_PCRE2_NONE_H
#define KRILL_PCRE2_NONE_H

#include <stddef.h>
#include <stdint.h>

typedef size_t PCRE2_SIZE;
typedef const unsigned char *PCRE2_SPTR;
typedef unsigned char PCRE2_UCHAR;
typedef struct pcre2_none_code pcre2_code;
typedef struct pcre2_none_match pcre2_match_data;

#define PCRE2_ZERO_TERMINATED (~(PCRE2_SIZE)0)
#define PCRE2_UTF 0x00080000u
#define PCRE2_NO_UTF_CHECK 0x40000000u
#define PCRE2_JIT_COMPLETE 0x00000001u
#define PCRE2_ERROR_NOMATCH (-1)

static inline pcre2_code *pcre2_compile(PCRE2_SPTR p, PCRE2_SIZE n, uint32_t o, int *ec, PCRE2_SIZE *eo, void *ctx) {
    (void)p, (void)n, (void)o, (void)ctx;
    *ec = -1;
    *eo = 0;
    return NULL;
}
static inline int pcre2_get_error_message(int ec, PCRE2_UCHAR *buf, PCRE2_SIZE n) {
    (void)ec;
    static const char m[] = "built without PCRE2 (-DKRILL_NO_PCRE2)";
    size_t i = 0;
    for (; n && i < n - 1 && m[i]; i++) buf[i] = (PCRE2_UCHAR)m[i];
    if (n) buf[i] = 0;
    return (int)i;
}
static inline int pcre2_jit_compile(pcre2_code *c, uint32_t o) { return (void)c, (void)o, -1; }
static inline void pcre2_code_free(pcre2_code *c) { (void)c; }
static inline pcre2_match_data *pcre2_match_data_create_from_pattern(const pcre2_code *c, void *ctx) {
    return (void)c, (void)ctx, NULL;
}
static inline void pcre2_match_data_free(pcre2_match_data *m) { (void)m; }
static inline int pcre2_match(const pcre2_code *c, PCRE2_SPTR s, PCRE2_SIZE n, PCRE2_SIZE off, uint32_t o,
                              pcre2_match_data *m, void *ctx) {
    return (void)c, (void)s, (void)n, (void)off, (void)o, (void)m, (void)ctx, PCRE2_ERROR_NOMATCH;
}
static inline PCRE2_SIZE *pcre2_get_ovector_pointer(pcre2_match_data *m) { return (void)m, (PCRE2_SIZE *)NULL; }

#endif
