/* grammar_none.c — grammar.h for builds without llguidance (-DKRILL_NO_LLGUIDANCE: the
 * bare GPU machines of scripts/gpu-check.sh): grammar_new fails with the reason, so the
 * engine runs without structured outputs and refuses requests that ask for them. No
 * grammar_t ever exists, so the functions that take one are unreachable. */
#ifdef KRILL_NO_LLGUIDANCE
#include "err.h"
#include "grammar.h"
#include "log.h"

grammar_t *grammar_new(const tokenizer_t *tok, char *err, size_t errlen) {
    (void)tok;
    err_set(err, errlen, "this build has no llguidance (KRILL_NO_LLGUIDANCE): structured outputs are off");
    return NULL;
}
void grammar_free(grammar_t *g) { CHECK(g == NULL); }
int grammar_n_vocab(const grammar_t *g) { CHECK(g == NULL); return 0; }
int grammar_mask_words(const grammar_t *g) { CHECK(g == NULL); return 0; }
const uint8_t *grammar_token_bytes(const grammar_t *g, int32_t id, size_t *len) {
    (void)id, (void)len;
    CHECK(g == NULL);
    return NULL;
}
size_t grammar_llg_decode(const grammar_t *g, int32_t id, bool special, char *buf, size_t cap) {
    (void)id, (void)special, (void)buf, (void)cap;
    CHECK(g == NULL);
    return 0;
}
int grammar_check(grammar_t *g, engine_grammar_kind_t kind, const char *text, size_t len, char *err, size_t errlen) {
    (void)kind, (void)text, (void)len;
    CHECK(g == NULL);
    err_set(err, errlen, "structured outputs are off in this build");
    return -1;
}
grammar_seq_t *grammar_seq_new(grammar_t *g, engine_grammar_kind_t kind, const char *text, size_t len, char *err,
                               size_t errlen) {
    grammar_check(g, kind, text, len, err, errlen);
    return NULL;
}
grammar_seq_t *grammar_seq_clone(const grammar_seq_t *q) { CHECK(q == NULL); return NULL; }
void grammar_seq_free(grammar_seq_t *q) { CHECK(q == NULL); }
void grammar_masks_start(grammar_t *g, grammar_seq_t *const *seqs, uint32_t *const *rows, int n) {
    (void)seqs, (void)rows, (void)n;
    CHECK(g == NULL);
}
void grammar_masks_wait(grammar_t *g) { CHECK(g == NULL); }
int grammar_seq_accept(grammar_seq_t *q, int32_t tok, char *err, size_t errlen) {
    (void)tok, (void)err, (void)errlen;
    CHECK(q == NULL);
    return -1;
}
const char *grammar_seq_error(const grammar_seq_t *q) { CHECK(q == NULL); return NULL; }
void grammar_get_stats(grammar_t *g, grammar_stats_t *st) {
    (void)st;
    CHECK(g == NULL);
}
#endif
