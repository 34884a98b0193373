/* chat.h — OpenAI-style messages -> prompt text with the model's chat template.
 * (Where this part sits among the others: docs/architecture.md.)
 *
 * Families (detected from tokenizer.chat_template): ChatML (incl. SmolLM2's and
 * Qwen's default-system-turn variants), Llama-3, Llama-2, Mistral/Zephyr. Unknown or
 * missing templates fall back to ChatML with a warning (chat_is_fallback). The
 * rendering for the default model is exactly what its Jinja template renders. */
#ifndef KRILL_CHAT_H
#define KRILL_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "engine.h"
#include "gguf.h"
#include "tokenizer.h"

typedef struct chat chat_t;

chat_t *chat_load(const gguf_t *g, char *err, size_t errlen); /* never fails on an unknown template */
/* Same from a template text (NULL or "" = none: ChatML fallback) and the BOS/EOS token
 * strings (NULL = ""); the strings are copied. NULL only when out of memory. */
chat_t *chat_load_template(const char *tmpl, const char *bos, const char *eos, char *err, size_t errlen);
void chat_free(chat_t *c);
const char *chat_family_name(const chat_t *c); /* "chatml", "llama3", "llama2", "mistral", "zephyr" */
bool chat_is_fallback(const chat_t *c);
/* The exact style: "chatml", "qwen2.5", "llama3", "zephyr", "llama2", "mistral-v1",
 * "mistral-v2", "mistral-v2-system", "mistral-v3" (docs/chat.md). */
const char *chat_variant_name(const chat_t *c);
/* ChatML: the system turn the template inserts when messages[0] is not a system
 * message (SmolLM2, Qwen2), NULL when it inserts none. */
const char *chat_default_system(const chat_t *c);

/* *out is malloc'd. Roles: system, user, assistant, tool, developer (= system); which
 * a family accepts where is in docs/chat.md. Errors (-1, err says what to fix): an
 * unknown role, empty messages, a NULL role or content, a role order the family's
 * template rejects. The text contains BOS/EOS strings where the template puts them:
 * tokenize it with add_bos=false and parse_special=true — but see chat_render_spans:
 * content that forges markup then forges control tokens. Thread-safe. */
int chat_render(const chat_t *c, const engine_chat_msg_t *msgs, size_t n_msgs,
                bool add_generation_prompt, char **out, char *err, size_t errlen);
/* chat_render that also gives the byte ranges of message content in *out (sorted,
 * touching ranges merged; *content malloc'd, NULL when there are none; content may be
 * NULL). Everything else is the template's markup (role headers, BOS/EOS, a default
 * system turn). Tokenize with tokenizer_encode_spans(plain = *content) so that content
 * is text and only markup maps to special tokens (docs/chat.md). */
int chat_render_spans(const chat_t *c, const engine_chat_msg_t *msgs, size_t n_msgs, bool add_generation_prompt,
                      char **out, tokenizer_span_t **content, size_t *n_content, char *err, size_t errlen);

#endif
