/* engine_token.h — private to the engine: engine_token.c's access to the engine's
 * tokenizer (defined in engine.c, which owns it). */
#ifndef KRILL_ENGINE_TOKEN_H
#define KRILL_ENGINE_TOKEN_H

#include "engine.h"
#include "tokenizer.h"

const tokenizer_t *engine_tokenizer(const engine_t *e);

#endif
