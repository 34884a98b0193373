/* grammar.h — constrained decoding with llguidance: JSON Schema, JSON object, regex,
 * choice and Lark grammars turned into a per-step token mask.
 * (Where this part sits among the others: docs/architecture.md; the user's view:
 * docs/structured-outputs.md.)
 *
 * A grammar_t describes krill's own vocabulary to llguidance once (each token's bytes,
 * control tokens flagged with a 0xFF prefix, a tokenize callback into krill's
 * tokenizer, the end-of-generation ids as EOS) and keeps a bounded LRU cache of
 * compiled grammars keyed by (kind, text): a grammar compiles once, each sequence gets
 * a cheap clone of the compiled constraint (grammar_seq_t) and advances it token by
 * token. Masks are packed bits, grammar_mask_words() uint32 words per row, bit t of
 * word t / 32 set = token t allowed.
 *
 * Threads: grammar_check, grammar_seq_new and grammar_seq_clone are thread-safe (one
 * mutex around the cache). A grammar_seq_t belongs to one thread at a time (the engine
 * thread) except between grammar_masks_start and grammar_masks_wait, when llguidance's
 * worker threads (rayon) own the started sequences. */
#ifndef KRILL_GRAMMAR_H
#define KRILL_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "tokenizer.h"

#define GRAMMAR_CACHE_CAP 64 /* compiled grammars kept (least recently used evicted) */

typedef struct grammar grammar_t;
typedef struct grammar_seq grammar_seq_t;

typedef struct {
    uint64_t compiles, cache_hits; /* grammar_check/grammar_seq_new lookups */
    uint64_t mask_steps, mask_rows; /* grammar_masks_start calls with >= 1 row, rows */
    double mask_ms;                 /* wall time from start to the last mask of a step, summed */
    double wait_ms;                 /* time grammar_masks_wait blocked (masks not hidden) */
} grammar_stats_t;

/* tok must outlive the grammar_t. NULL with err when llguidance rejects the vocabulary. */
grammar_t *grammar_new(const tokenizer_t *tok, char *err, size_t errlen);
void grammar_free(grammar_t *g); /* accepts NULL; no masks may be in flight */

int grammar_n_vocab(const grammar_t *g);
int grammar_mask_words(const grammar_t *g); /* (n_vocab + 31) / 32 */
/* The bytes handed to llguidance for token id (control tokens: 0xFF then the token's
 * string); *len its length. NULL for an id outside the vocabulary. */
const uint8_t *grammar_token_bytes(const grammar_t *g, int32_t id, size_t *len);

/* Token id as llguidance decodes it back (special: control tokens included as their
 * string); the byte count (may exceed cap; then cap bytes were written). For tests. */
size_t grammar_llg_decode(const grammar_t *g, int32_t id, bool special, char *buf, size_t cap);

/* Compiles kind/text (or finds it in the cache). 0, or -1 with err holding the
 * compiler's message (ENGINE_GRAMMAR_NONE is an error too). */
int grammar_check(grammar_t *g, engine_grammar_kind_t kind, const char *text, size_t len, char *err,
                  size_t errlen);
/* A fresh constraint state at the start of the output; NULL with err as grammar_check. */
grammar_seq_t *grammar_seq_new(grammar_t *g, engine_grammar_kind_t kind, const char *text, size_t len,
                               char *err, size_t errlen);
/* An independent copy of q's state (a forked choice). NULL when out of memory. */
grammar_seq_t *grammar_seq_clone(const grammar_seq_t *q);
void grammar_seq_free(grammar_seq_t *q); /* accepts NULL */

/* Starts computing the masks of n sequences into rows[i] (grammar_mask_words each) on
 * llguidance's threads and returns at once; grammar_masks_wait blocks until all are
 * written. One batch in flight per grammar_t. n == 0 is allowed (wait returns at once). */
void grammar_masks_start(grammar_t *g, grammar_seq_t *const *seqs, uint32_t *const *rows, int n);
void grammar_masks_wait(grammar_t *g);

/* Advances q by the sampled token (which its last mask allowed). 0: go on; 1: the
 * grammar is complete (nothing may follow: finish the sequence); -1: err says why
 * (the constraint is in error, e.g. a mask could not be computed). */
int grammar_seq_accept(grammar_seq_t *q, int32_t tok, char *err, size_t errlen);
/* The constraint's error after a mask computation, or NULL. */
const char *grammar_seq_error(const grammar_seq_t *q);

void grammar_get_stats(grammar_t *g, grammar_stats_t *st);

#endif
