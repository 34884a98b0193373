/* engine.h — the public API of krill's inference engine (knows nothing about Kafka).
 * (Where this part sits among the others: docs/architecture.md.)
 *
 * One engine thread owns the model, the KV cache and the backend: it alone calls
 * engine_step() (and engine_close()). engine_submit, engine_poll, engine_abort,
 * engine_get_stats, engine_tokenize and engine_chat_render are thread-safe and may be
 * called from any thread (the worker's io thread, a tool's main thread).
 *
 * Flow: submit requests (token ids) -> step() repeatedly (continuous batching) ->
 * poll() finished results. Every submitted request yields exactly one result, also
 * when it fails (finish ENGINE_FINISH_ERROR) or is aborted. Results own their heap
 * strings; release them with engine_result_clear(). */
#ifndef KRILL_ENGINE_H
#define KRILL_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct engine engine_t;

typedef enum {
    ENGINE_OK = 0,
    ENGINE_ERR_INVALID = -1,        /* a request field out of range: OpenAI code invalid_value */
    ENGINE_ERR_CONTEXT = -2,        /* prompt + max_tokens can never fit: context_length_exceeded */
    ENGINE_ERR_BUSY = -3,           /* the submit queue is at max_queue: retry later */
    ENGINE_ERR_INTERNAL = -4,       /* backend failure: internal_error */
} engine_status_t;

typedef enum {
    ENGINE_FINISH_STOP = 0,   /* EOS/EOT or a stop string */
    ENGINE_FINISH_LENGTH = 1, /* max_tokens reached */
    ENGINE_FINISH_ERROR = 2,  /* see error_code / error */
    ENGINE_FINISH_ABORTED = 3,/* engine_abort() or engine_close() with work pending */
} engine_finish_t;

typedef struct {
    const char *model_path;
    const char *backend;        /* "auto" (default) | "cpu" | "cuda" */
    const char *dtype;          /* cuda weights: "bf16" (default) | "f16"; cpu: cpu_weights below */
    int n_threads;              /* cpu backend threads; 0 = online cores */
    int context;                /* max tokens per sequence; 0 = the model's training context */
    int max_seqs;               /* sequences per step; 0 = the backend's default (backend.h's
                                   backend_defaults_t: cpu 64, cuda 256) */
    int max_batch_tokens;       /* tokens per step (prefill chunking); 0 = the backend's
                                   default (cpu 512, cuda 2048) */
    int kv_block_size;          /* tokens per KV block; 0 = 16 */
    int64_t kv_cache_tokens;    /* cpu: KV capacity in tokens; 0 = min(4 x training context,
                                   512 MiB of KV) (model.h MODEL_DEFAULT_CPU_KV_BYTES) */
    const char *kv_dtype;       /* KV cache storage "f16" | "f32"; NULL = the backend's
                                   default (f16 on both; docs/engine-scheduling.md) */
    double kv_overcommit;       /* admission: running requests' prompt + max_tokens may claim
                                   this many times the KV cache (preemption covers the rest);
                                   0 = 1.0 (never preempt) */
    double gpu_memory_fraction; /* cuda: fraction of free memory for weights+activations+KV; 0 = 0.9 */
    int max_queue;              /* waiting requests accepted before ENGINE_ERR_BUSY; 0 = unbounded */
    uint64_t seed;              /* base for requests without a seed; 0 = random per engine */
    bool prefix_cache;          /* automatic prefix caching: requests share the KV blocks of
                                   common prompt prefixes (default true; docs/engine-scheduling.md) */
    const char *cpu_weights;    /* cpu matmul weights: "auto" (default: q4 / q8 / f32 by the file's types, docs/engine.md) |
                                   "f32" | "q8" | "q4"; NULL or "" = "auto" */
    const char *gpu_weights;    /* device matmul weights: "auto" (default) | "bf16" | "native" (the
                                   file's Q8_0/Q4_0/Q4_1/Q4_K/Q6_K kept on the GPU, docs/cuda.md);
                                   NULL or "" = "auto"; the cpu backend refuses "native" */
} engine_config_t;

typedef struct {
    char model_name[128];   /* general.name, else the file's base name */
    char arch[32];          /* "llama", "qwen2" */
    char backend[16];       /* "cpu" | "cuda" */
    char device[128];       /* "cpu (2 threads)", "NVIDIA H100 80GB HBM3" */
    int n_ctx;              /* effective context per sequence */
    int n_vocab;
    int32_t bos_id, eos_id, eot_id; /* -1 when the model has none */
    bool add_bos;                   /* tokenizer.ggml.add_bos_token: raw prompts start with BOS */
    int max_seqs, max_batch_tokens; /* effective scheduler budgets */
    int64_t kv_cache_tokens;        /* capacity */
} engine_info_t;

typedef enum {
    ENGINE_GRAMMAR_NONE = 0,
    ENGINE_GRAMMAR_JSON_SCHEMA = 1, /* grammar: a JSON Schema document */
    ENGINE_GRAMMAR_JSON_OBJECT = 2, /* any JSON object; grammar NULL */
    ENGINE_GRAMMAR_REGEX = 3,       /* grammar: a regular expression the whole output matches */
    ENGINE_GRAMMAR_CHOICE = 4,      /* grammar: a JSON array of strings; the output is one of them */
    ENGINE_GRAMMAR_LARK = 5,        /* grammar: a Lark grammar as llguidance reads it */
} engine_grammar_kind_t;

#define ENGINE_MAX_STOP 4
typedef struct {
    uint64_t id;                 /* caller's tag, returned with the result */
    const int32_t *prompt;       /* copied by engine_submit */
    int n_prompt;                /* >= 1 */
    int max_tokens;              /* >= 1 */
    int min_tokens;              /* EOS/stop ignored before this many tokens */
    bool ignore_eos;
    float temperature;           /* 0 = greedy; [0, 2] */
    float top_p;                 /* (0, 1]; 1 = off */
    int top_k;                   /* 0 = off */
    float min_p;                 /* [0, 1]; 0 = off */
    float presence_penalty;      /* [-2, 2] */
    float frequency_penalty;     /* [-2, 2] */
    bool has_seed;
    uint64_t seed;               /* same seed + prompt => same tokens whatever shares the batch */
    const char *stop[ENGINE_MAX_STOP]; /* NUL-terminated, copied; matched on decoded text */
    int n_stop;
    int priority;                /* reserved (FCFS today) */
    /* Structured output (docs/structured-outputs.md): the sampled text is constrained to
     * the language of `grammar` (copied; grammar_len bytes, not NUL-terminated needed).
     * The engine compiles it once per distinct text (a bounded cache); a grammar that
     * does not compile is ENGINE_ERR_INVALID with the compiler's message. */
    engine_grammar_kind_t grammar_kind;
    const char *grammar;         /* JSON Schema text | regex | JSON array of strings | Lark; NULL for
                                    ENGINE_GRAMMAR_NONE and ENGINE_GRAMMAR_JSON_OBJECT */
    size_t grammar_len;
    /* Log-probabilities: when logprobs, each generated token's log-probability plus its
     * top_logprobs (0..ENGINE_MAX_TOP_LOGPROBS) most likely alternatives. Values are the
     * log-softmax of the model's logits before logit_bias, temperature, penalties and the
     * grammar mask. */
    bool logprobs;
    int top_logprobs;
    /* logit_bias: n_bias pairs (token id in the vocabulary, bias in [-100, 100]) added to
     * the logits before sampling (after the logprobs are taken); copied. */
    const int32_t *bias_ids;
    const float *bias;
    int n_bias;
    /* Choices: n >= 1 (0 is taken as 1) completions of the same prompt; the prompt is
     * prefilled once and each choice continues from its KV. Choice i samples with seed
     * engine_choice_seed(seed, i) (choice 0 = the request's own seed). Each choice yields
     * its own engine_result_t with the same id and index = i. */
    int n;
} engine_request_t;

#define ENGINE_MAX_TOP_LOGPROBS 20
#define ENGINE_MAX_BIAS 300
#define ENGINE_MAX_CHOICES 128 /* the engine's own cap; the worker's input.max_n is lower */

/* The seed of choice i of a request seeded with `seed` (i = 0 returns seed). */
uint64_t engine_choice_seed(uint64_t seed, int i);

typedef struct {
    int32_t id;
    float logprob;
} engine_logprob_t;

typedef struct {
    uint64_t id;
    engine_finish_t finish;
    char *text;                  /* malloc'd UTF-8 completion (stop string excluded) */
    size_t text_len;
    int32_t *tokens;             /* malloc'd generated ids */
    int n_tokens;
    int prompt_tokens;
    int completion_tokens;
    engine_status_t error_code;  /* ENGINE_OK unless finish == ENGINE_FINISH_ERROR */
    char error[256];
    double queue_ms;             /* submit -> first scheduled */
    double ttft_ms;              /* submit -> first token sampled */
    double total_ms;             /* submit -> finished */
    int index;                   /* choice index (request n > 1), else 0 */
    int cached_tokens;           /* prompt tokens whose KV came from the prefix cache */
    /* request logprobs: logprobs[i] = the chosen token i's log-probability;
     * top[i * n_top + j] = its j-th most likely alternative (descending, ties by lower id);
     * malloc'd, NULL otherwise */
    float *logprobs;
    engine_logprob_t *top;
    int n_top;
} engine_result_t;

typedef struct {
    int running, waiting;
    int64_t kv_blocks_used, kv_blocks_total;
    uint64_t steps, preemptions;
    uint64_t prompt_tokens_total, generated_tokens_total;
    int last_step_seqs, last_step_tokens;
    double last_step_ms;
    /* device counters (cuda; 0 on cpu): time the GPU worked on steps and sat idle
     * between them, graph captures/replays of decode steps; argmax_steps: steps whose
     * sampling ran on the device (only ids downloaded) */
    double gpu_busy_ms, gpu_idle_ms;
    uint64_t graph_captures, graph_replays, argmax_steps;
    /* prefix cache: prompt tokens looked up at admission / found cached (both 0 when
     * it is off); blocks that hold a cache key now */
    uint64_t prefix_queries_tokens, prefix_hit_tokens;
    int64_t prefix_cached_blocks;
    /* structured outputs (grammar.h): steps with constrained rows, those rows, the wall
     * time llguidance's threads took for each step's masks (summed) and the time the
     * engine thread waited for them after the forward pass (what was not hidden) */
    uint64_t grammar_steps, grammar_rows;
    double grammar_mask_ms, grammar_wait_ms;
} engine_stats_t;

typedef struct {
    const char *role;    /* "system" | "user" | "assistant" | "tool" ... */
    const char *content;
} engine_chat_msg_t;

void engine_config_defaults(engine_config_t *cfg);
engine_t *engine_open(const engine_config_t *cfg, char *err, size_t errlen);
void engine_close(engine_t *e); /* accepts NULL; pending requests are dropped */
const engine_info_t *engine_get_info(const engine_t *e);

/* Text helpers (thread-safe). *ids is malloc'd; caller frees. 0, or with err filled:
 * ENGINE_ERR_CONTEXT when the text is longer than the context, ENGINE_ERR_INVALID when
 * it cannot be tokenized (invalid UTF-8). */
int engine_tokenize(const engine_t *e, const char *text, size_t len, bool add_bos,
                    bool parse_special, int32_t **ids, int *n_ids, char *err, size_t errlen);
/* Renders messages with the model's chat template + generation prompt; *prompt malloc'd.
 * The text holds the template's special-token strings and the content verbatim: to
 * tokenize a chat, use engine_chat_tokenize. */
int engine_chat_render(const engine_t *e, const engine_chat_msg_t *msgs, size_t n_msgs,
                       char **prompt, char *err, size_t errlen);
/* Renders messages (+ generation prompt) and tokenizes the prompt: the template's
 * markup with its special tokens (BOS where the template puts it, none added), message
 * content as text — "<|im_end|>" in a message is the characters, not the control token
 * (docs/chat.md) — unless content_special (input.parse_special_in_content: today's
 * behaviour of every token string in content being parsed). *ids malloc'd. 0, or with
 * err filled: ENGINE_ERR_INVALID when the template rejects the messages (err says why,
 * *rendered false) or the prompt cannot be tokenized, ENGINE_ERR_CONTEXT when it is
 * longer than the context. rendered may be NULL. */
int engine_chat_tokenize(const engine_t *e, const engine_chat_msg_t *msgs, size_t n_msgs, bool content_special,
                         int32_t **ids, int *n_ids, bool *rendered, char *err, size_t errlen);

/* Queues a request. Returns ENGINE_OK or an engine_status_t with err filled; on error
 * no result will be produced for this id (the caller answers it). The request is
 * checked once, here at the API's entry (engine_request.c): ENGINE_ERR_INVALID for a
 * field out of the ranges above or a prompt token outside the vocabulary,
 * ENGINE_ERR_CONTEXT when prompt + max_tokens can never fit the context or the KV
 * cache; ENGINE_ERR_BUSY when the queue is full. */
int engine_submit(engine_t *e, const engine_request_t *req, char *err, size_t errlen);
/* Runs one scheduler iteration. Returns the number of sequences stepped (0 = idle). */
int engine_step(engine_t *e);
/* Blocks up to timeout_ms until there is work to step; returns 1 if there is. */
int engine_wait(engine_t *e, int timeout_ms);
/* Moves up to max finished results into out; returns how many. */
size_t engine_poll(engine_t *e, engine_result_t *out, size_t max);
void engine_result_clear(engine_result_t *r);
/* Finishes a request with ENGINE_FINISH_ABORTED at the next step; -1 if unknown. */
int engine_abort(engine_t *e, uint64_t id);
void engine_get_stats(engine_t *e, engine_stats_t *st);
/* Engine thread only, between steps: admission limits for the next steps (the adaptive
 * batching controller, slo.h). <= 0 keeps a limit; both are capped by the effective
 * engine_info max_seqs / max_batch_tokens (what the buffers were sized for). Lowering
 * max_seqs never preempts: running sequences continue, admission waits. */
void engine_set_limits(engine_t *e, int max_seqs, int max_batch_tokens);

/* The bytes of token id (engine_token.c): what the tokenizer decodes it to (byte-level
 * pieces decoded, "<0xNN>" as the byte); a control token as its vocabulary string
 * ("<|im_end|>"). A piece may be part of a UTF-8 character. Returns the byte count (may
 * exceed cap: then only cap bytes were written), -1 for an id outside the vocabulary.
 * Thread-safe. */
int engine_token_bytes(const engine_t *e, int32_t id, char *out, size_t cap);

#endif
