/* engine_token.c — a token's bytes for callers of the engine API (engine.h
 * engine_token_bytes): the piece the tokenizer decodes it to, control tokens as their
 * vocabulary string, so a logprobs answer can show every generated token. Thread-safe:
 * the vocabulary is read-only once the engine is open. */
#include "engine.h"
#include "engine_token.h"
#include "tokenizer.h"

int engine_token_bytes(const engine_t *e, int32_t id, char *out, size_t cap) {
    const tokenizer_t *t = engine_tokenizer(e);
    if (!t) return -1;
    return tokenizer_token_bytes(t, id, true, out, cap);
}
