/* engine_request.h — private to the engine: the one check of an engine_request_t,
 * made by engine_submit at the engine API's entry. The engine is a public API that
 * tools (krill-generate, krill-bench, krill-run-batch) feed directly, so it checks
 * what it is given once, here; the scheduler behind it trusts it (its own checks are
 * CHECKs on invariants). Requests from the worker were checked before by the codec
 * (shapes, ranges) and the pipeline (vocabulary, context): see docs/architecture.md. */
#ifndef KRILL_ENGINE_REQUEST_H
#define KRILL_ENGINE_REQUEST_H

#include <stddef.h>

#include "engine.h"

/* Checks q against the engine's limits (info: n_vocab, n_ctx, kv_cache_tokens).
 * ENGINE_OK, ENGINE_ERR_INVALID (a field out of range, a token outside the vocabulary)
 * or ENGINE_ERR_CONTEXT (prompt + max_tokens can never fit the context or the whole
 * KV cache), with err saying which field and what to do. */
int engine_request_check(const engine_info_t *info, const engine_request_t *q, char *err, size_t errlen);
/* The grammar part of the check, after engine_request_check: q's grammar compiles with
 * g (grammar.h; the compiled grammar stays cached for the scheduler). ENGINE_OK (also
 * for no grammar), or ENGINE_ERR_INVALID with the compiler's message, or when g is NULL
 * (this engine has no grammar support: err says why). */
struct grammar;
int engine_request_check_grammar(struct grammar *g, const engine_request_t *q, char *err, size_t errlen);

#endif
