/* tokenizer.h — tokenizers built from GGUF tokenizer.ggml.* metadata.
 * (Where this part sits among the others: docs/architecture.md.)
 *
 * Models: "gpt2" (byte-level BPE with merges and the pre-tokenizer named by
 * tokenizer.ggml.pre, regexes run with PCRE2 in UTF mode) and "llama" (SentencePiece
 * BPE with scores, byte fallback <0xNN>, "▁" space handling, add_space_prefix).
 * Output matches llama.cpp's llama_tokenize on the same vocabulary (docs/tokenizer.md).
 * A loaded tokenizer is immutable: every function here is thread-safe. The code is
 * src/engine/tokenizer_*.c, one job per file (tokenizer_internal.h lists them). */
#ifndef KRILL_TOKENIZER_H
#define KRILL_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct tokenizer tokenizer_t;

tokenizer_t *tokenizer_load(const gguf_t *g, char *err, size_t errlen);
void tokenizer_free(tokenizer_t *t); /* accepts NULL */

int tokenizer_n_vocab(const tokenizer_t *t);
int32_t tokenizer_bos(const tokenizer_t *t); /* -1 when none */
int32_t tokenizer_eos(const tokenizer_t *t);
int32_t tokenizer_eot(const tokenizer_t *t); /* end of turn (e.g. <|im_end|>), -1 when none */
bool tokenizer_is_eog(const tokenizer_t *t, int32_t id); /* eos, eot or another end-of-generation token */
bool tokenizer_add_bos_default(const tokenizer_t *t); /* tokenizer.ggml.add_bos_token */

/* Encodes UTF-8 text. Invalid UTF-8 is an error naming the byte offset. parse_special:
 * control/user-defined token strings in the text map to their ids (else they are
 * tokenized as plain text). *ids is malloc'd (caller frees). 0 or -1 with err. */
int tokenizer_encode(const tokenizer_t *t, const char *text, size_t len, bool add_bos,
                     bool parse_special, int32_t **ids, size_t *n_ids, char *err, size_t errlen);

/* A byte range [off, off + len) of a text. */
typedef struct {
    size_t off, len;
} tokenizer_span_t;

/* tokenizer_encode with parse_special on everywhere except in the `plain` ranges
 * (sorted by off, non-overlapping; n_plain may be 0): a control-token string that
 * overlaps a plain range is text, as with parse_special off; user-defined tokens are
 * recognised everywhere, as with parse_special off. The text is still partitioned and
 * pre-tokenized as one text, so a text without control-token strings in its plain
 * ranges gives exactly tokenizer_encode(parse_special=true)'s ids. Used for chat
 * prompts: the template's markup is special, message content is not. */
int tokenizer_encode_spans(const tokenizer_t *t, const char *text, size_t len, bool add_bos,
                           const tokenizer_span_t *plain, size_t n_plain, int32_t **ids, size_t *n_ids,
                           char *err, size_t errlen);

/* The raw bytes a token stands for (byte-level decoded; "▁" -> ' '; <0xNN> -> byte).
 * Control tokens give "" unless special is true. Returns the byte count (may exceed
 * cap, then only cap bytes were written), -1 for an invalid id. */
int tokenizer_token_bytes(const tokenizer_t *t, int32_t id, bool special, char *buf, size_t cap);
/* The token's string as stored in the vocabulary (NUL-terminated view, never NULL). */
const char *tokenizer_token_str(const tokenizer_t *t, int32_t id);

/* Streaming decode: feed ids one by one; only complete UTF-8 sequences come out.
 * SentencePiece's leading space of the first token is stripped as llama.cpp does. */
typedef struct {
    char pending[8]; /* bytes of an incomplete UTF-8 sequence */
    int n_pending;
    bool first;
} tokenizer_stream_t;
void tokenizer_stream_init(tokenizer_stream_t *s);
/* Appends the decodable bytes of id to out (up to cap); returns bytes written or -1
 * for an invalid id. cap >= 64 + the longest token's bytes is always enough. */
int tokenizer_stream_push(const tokenizer_t *t, tokenizer_stream_t *s, int32_t id, char *out, size_t cap);
/* Flushes an incomplete tail as U+FFFD replacement characters. */
int tokenizer_stream_flush(tokenizer_stream_t *s, char *out, size_t cap);

/* Decodes a whole id list into a malloc'd NUL-terminated string (stream semantics). */
char *tokenizer_decode(const tokenizer_t *t, const int32_t *ids, size_t n, bool special, size_t *len);

#endif
