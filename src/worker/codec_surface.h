/* codec_surface.h — private to the codec: the request surface beyond sampling
 * (codec_surface.c): unknown-field refusal, structured outputs, logprobs, logit_bias
 * and the fields accepted with no effect (docs/schema.md lists them all). */
#ifndef KRILL_CODEC_SURFACE_H
#define KRILL_CODEC_SURFACE_H

#include <stdbool.h>
#include <stddef.h>

#include "codec_value.h"

enum {
    CS_RESPONSE_FORMAT, CS_GUIDED_JSON, CS_GUIDED_REGEX, CS_GUIDED_CHOICE, CS_GUIDED_GRAMMAR, CS_STRUCTURED_OUTPUTS,
    CS_LOGPROBS, CS_TOP_LOGPROBS, CS_LOGIT_BIAS, CS_USER, CS_METADATA, CS_STORE, CS_STREAM_OPTIONS, CS_ECHO,
    CS_BEST_OF, CS_SUFFIX, CS_MODALITIES, CS_COUNT
};
extern const char *const CODEC_SURFACE_KEYS[CS_COUNT];

/* Refuses (400 unsupported, naming it) the first key of body that is neither in
 * known[] (the keys codec_decode.c reads), nor one of CODEC_SURFACE_KEYS, nor (bare:
 * the top level is the body) custom_id/id, nor listed in lim->ignore_fields. Known
 * OpenAI/vLLM fields krill does not implement (tools, ...) are refused with a reason,
 * null counting as not given. false after recording the error. */
bool codec_surface_unknown(codec_walk_t *d, codec_value_t body, const char *const *known, size_t n_known, bool bare);
/* The same for the keys of a Batch API line (no ignore list). */
bool codec_surface_envelope(codec_walk_t *d, codec_value_t top, const char *const *known, size_t n_known);
/* The keys of message `index` beyond role and content: name (a string, no effect);
 * any other non-null key (tool_calls, tool_call_id, audio, ...) is 400 unsupported
 * unless lim->ignore_fields lists it. false after recording the error. */
bool codec_surface_message(codec_walk_t *d, codec_value_t m, size_t index);
/* Decodes the surface fields of body into d->r (the kind must be set). */
void codec_surface_decode(codec_walk_t *d, codec_value_t body);

#endif
