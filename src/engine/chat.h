/* chat.h — OpenAI-style messages -> prompt text with the model's chat template.
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

typedef struct chat chat_t;

chat_t *chat_load(const gguf_t *g, char *err, size_t errlen); /* never fails on an unknown template */
void chat_free(chat_t *c);
const char *chat_family_name(const chat_t *c); /* "chatml", "llama3", "llama2", "mistral", "zephyr" */
bool chat_is_fallback(const chat_t *c);

/* *out is malloc'd. Errors: an unknown role, empty messages, a NULL content. */
int chat_render(const chat_t *c, const engine_chat_msg_t *msgs, size_t n_msgs,
                bool add_generation_prompt, char **out, char *err, size_t errlen);

#endif
