/* engine.c — the public engine API (engine.h): opens the model file, its tokenizer,
 * chat template and forward pass, and runs requests through the scheduler.
 *
 * Ownership: the engine owns the GGUF mapping (kept open for the model's lifetime),
 * tokenizer, chat template, model and scheduler. The scheduler reaches the model and
 * the tokenizer only through the scheduler_model_t table built here. Thread rules are
 * engine.h's: step/wait/close on the engine thread, the rest from anywhere. */
#include "err.h"
#include "engine.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "chat.h"
#include "engine_request.h"
#include "engine_token.h"
#include "gguf.h"
#include "grammar.h"
#include "hparams.h"
#include "log.h"
#include "model.h"
#include "rng.h"
#include "scheduler.h"
#include "tokenizer.h"

struct engine {
    gguf_t *g;
    tokenizer_t *tok;
    chat_t *chat;
    model_t *model;
    scheduler_t *sched;
    grammar_t *grammar; /* NULL when llguidance cannot describe the vocabulary */
    engine_info_t info;
};

void engine_config_defaults(engine_config_t *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->backend = "auto";
    cfg->dtype = "bf16";
    cfg->prefix_cache = true;
    cfg->cpu_weights = "auto";
    cfg->gpu_weights = "auto";
}

/* ---------------------------------------------------------------- model table */

static int fwd(void *ctx, const model_batch_t *b, float *logits) {
    engine_t *e = ctx;
    int rc = model_forward(e->model, b, logits);
    if (rc != 0) LOG_ERROR("model_forward failed", "error=\"%s\"", model_last_error(e->model));
    return rc;
}
static int fwd_argmax(void *ctx, const model_batch_t *b, int32_t *ids, const float *inv_temp,
                      const uint64_t *keys) {
    engine_t *e = ctx;
    int rc = model_forward_argmax(e->model, b, ids, inv_temp, keys);
    if (rc != 0) LOG_ERROR("model_forward_argmax failed", "error=\"%s\"", model_last_error(e->model));
    return rc;
}
static int fwd_argmax_masked(void *ctx, const model_batch_t *b, int32_t *ids, const float *inv_temp,
                             const uint64_t *keys, const uint32_t *masks, void (*ready)(void *), void *rctx) {
    engine_t *e = ctx;
    int rc = model_forward_argmax_masked(e->model, b, ids, inv_temp, keys, masks, ready, rctx);
    if (rc != 0) LOG_ERROR("model_forward_argmax_masked failed", "error=\"%s\"", model_last_error(e->model));
    return rc;
}
static void dev_stats(void *ctx, engine_stats_t *st) {
    model_stats_t ms;
    model_get_stats(((engine_t *)ctx)->model, &ms);
    st->gpu_busy_ms = ms.busy_ms;
    st->gpu_idle_ms = ms.idle_ms;
    st->graph_captures = ms.graph_captures;
    st->graph_replays = ms.graph_replays;
}
static bool is_eog(void *ctx, int32_t id) { return tokenizer_is_eog(((engine_t *)ctx)->tok, id); }
static void detok_init(void *ctx, tokenizer_stream_t *s) {
    (void)ctx;
    tokenizer_stream_init(s);
}
static int detok_push(void *ctx, tokenizer_stream_t *s, int32_t id, char *out, size_t cap) {
    return tokenizer_stream_push(((engine_t *)ctx)->tok, s, id, out, cap);
}
static int detok_flush(void *ctx, tokenizer_stream_t *s, char *out, size_t cap) {
    (void)ctx;
    return tokenizer_stream_flush(s, out, cap);
}

/* ---------------------------------------------------------------- open / close */

engine_t *engine_open(const engine_config_t *cfg, char *err, size_t errlen) {
    engine_t *e = calloc(1, sizeof(*e));
    if (!e) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    if (!cfg->model_path || !*cfg->model_path) {
        err_set(err, errlen, "no model path: set model.path to a GGUF file");
        goto fail;
    }
    if (cfg->n_threads < 0 || cfg->context < 0 || cfg->max_seqs < 0 || cfg->max_batch_tokens < 0 ||
        cfg->kv_block_size < 0 || cfg->kv_cache_tokens < 0 || cfg->max_queue < 0 ||
        cfg->gpu_memory_fraction < 0 || cfg->gpu_memory_fraction > 1 || !(cfg->kv_overcommit >= 0)) {
        err_set(err, errlen,
                 "engine config: n_threads, context, max_seqs, max_batch_tokens, kv_block_size, "
                 "kv_cache_tokens, max_queue and kv_overcommit must be >= 0 (0 = default), "
                 "gpu_memory_fraction in [0, 1]");
        goto fail;
    }
    char sub[384];
    if (!(e->g = gguf_open(cfg->model_path, sub, sizeof(sub)))) {
        err_set(err, errlen, "%s", sub); /* gguf_open names the file */
        goto fail;
    }
    if (!(e->tok = tokenizer_load(e->g, sub, sizeof(sub)))) {
        err_set(err, errlen, "%s: tokenizer: %s", cfg->model_path, sub);
        goto fail;
    }
    if (!(e->chat = chat_load(e->g, sub, sizeof(sub)))) {
        err_set(err, errlen, "%s: chat template: %s", cfg->model_path, sub);
        goto fail;
    }
    /* structured outputs: without it the engine still serves everything else, and
     * a request with a grammar is refused with this reason */
    if (!(e->grammar = grammar_new(e->tok, sub, sizeof(sub))))
        LOG_WARN("structured outputs unavailable", "reason=\"%s\"", sub);

    /* sizes and dtypes left at 0 / NULL: model_load takes the chosen backend's own
     * defaults (backend.h, backend_defaults_t); the scheduler gets what it chose */
    model_params_t mp = {.backend = cfg->backend && *cfg->backend ? cfg->backend : "auto",
                         .dtype = cfg->dtype,
                         .n_threads = cfg->n_threads,
                         .max_batch_tokens = cfg->max_batch_tokens,
                         .max_seqs = cfg->max_seqs,
                         .kv_block_size = cfg->kv_block_size,
                         .kv_cache_tokens = cfg->kv_cache_tokens,
                         .gpu_memory_fraction = cfg->gpu_memory_fraction,
                         .kv_dtype = cfg->kv_dtype && *cfg->kv_dtype ? cfg->kv_dtype : NULL,
                         .cpu_weights = cfg->cpu_weights && *cfg->cpu_weights ? cfg->cpu_weights : "auto",
                         .gpu_weights = cfg->gpu_weights && *cfg->gpu_weights ? cfg->gpu_weights : "auto"};
    if (!(e->model = model_load(e->g, &mp, sub, sizeof(sub)))) {
        err_set(err, errlen, "%s: %s", cfg->model_path, sub);
        goto fail;
    }
    gguf_release_data(e->g); /* the weights now live in backend buffers */
    const hparams_t *hp = model_hparams(e->model);
    if (tokenizer_n_vocab(e->tok) != hp->n_vocab) {
        err_set(err, errlen, "%s: the tokenizer has %d tokens but the model's embedding has %d rows",
                 cfg->model_path, tokenizer_n_vocab(e->tok), hp->n_vocab);
        goto fail;
    }
    int n_ctx = cfg->context > 0 ? cfg->context : hp->n_ctx_train;
    if (n_ctx > hp->n_ctx_train) {
        err_set(err, errlen, "context %d exceeds the model's training context %d: lower model.context",
                 n_ctx, hp->n_ctx_train);
        goto fail;
    }
    if (n_ctx < 2) {
        err_set(err, errlen, "context %d is too small (at least 2 tokens)", n_ctx);
        goto fail;
    }
    const int max_seqs = model_max_seqs(e->model), max_batch = model_max_batch_tokens(e->model);

    /* the longest bytes one detokenizer push can write: every input byte becomes at
     * most 3 output bytes (U+FFFD), and a push consumes <= 7 pending bytes + one piece */
    int longest = 0;
    for (int32_t id = 0; id < hp->n_vocab; id++) {
        char tmp[8];
        int n = tokenizer_token_bytes(e->tok, id, true, tmp, sizeof(tmp));
        if (n > longest) longest = n;
    }
    scheduler_model_t sm = {.ctx = e,
                            .n_vocab = hp->n_vocab,
                            .forward = fwd,
                            .forward_argmax = fwd_argmax,
                            .gumbel = model_device_argmax(e->model),
                            .device_stats = dev_stats,
                            .is_eog = is_eog,
                            .detok_init = detok_init,
                            .detok_push = detok_push,
                            .detok_flush = detok_flush,
                            .grammar = e->grammar,
                            .forward_argmax_masked = fwd_argmax_masked,
                            .max_piece_bytes = 3 * (longest + 8)};
    uint64_t seed = cfg->seed;
    if (seed == 0 && getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
        seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    /* what besides the tokens decides a block's K/V: the weights (file, size, time) and
     * their dtype, the cache layout (backend, KV dtype, block size). Within one engine
     * it never changes; it keeps keys apart should a cache ever outlive one. */
    char salt[768];
    struct stat fst;
    bool have_st = stat(cfg->model_path, &fst) == 0;
    snprintf(salt, sizeof(salt), "%s|%lld|%lld|%s|%s|%s|%d", cfg->model_path, have_st ? (long long)fst.st_size : -1LL,
             have_st ? (long long)fst.st_mtime : -1LL, model_backend_name(e->model), cfg->dtype ? cfg->dtype : "",
             cfg->kv_dtype ? cfg->kv_dtype : "default", model_kv_block_size(e->model));
    scheduler_config_t sc = {.max_seqs = max_seqs,
                             .max_batch_tokens = max_batch,
                             .n_ctx = n_ctx,
                             .kv_blocks = model_kv_blocks(e->model),
                             .kv_block_size = model_kv_block_size(e->model),
                             .max_queue = cfg->max_queue,
                             .seed = seed,
                             .overcommit = cfg->kv_overcommit,
                             .prefix_cache = cfg->prefix_cache,
                             .prefix_salt = salt};
    if (!(e->sched = scheduler_new(&sc, &sm, sub, sizeof(sub)))) {
        err_set(err, errlen, "%s", sub);
        goto fail;
    }

    engine_info_t *in = &e->info;
    if (hp->name[0]) {
        snprintf(in->model_name, sizeof(in->model_name), "%s", hp->name);
    } else {
        char path[512];
        snprintf(path, sizeof(path), "%s", cfg->model_path);
        snprintf(in->model_name, sizeof(in->model_name), "%s", basename(path));
    }
    snprintf(in->arch, sizeof(in->arch), "%s", hp->arch);
    snprintf(in->backend, sizeof(in->backend), "%s", model_backend_name(e->model));
    snprintf(in->device, sizeof(in->device), "%s", model_device_name(e->model));
    in->n_ctx = n_ctx;
    in->n_vocab = hp->n_vocab;
    in->bos_id = tokenizer_bos(e->tok);
    in->eos_id = tokenizer_eos(e->tok);
    in->eot_id = tokenizer_eot(e->tok);
    in->add_bos = tokenizer_add_bos_default(e->tok);
    in->max_seqs = max_seqs;
    in->max_batch_tokens = max_batch;
    in->kv_cache_tokens = model_kv_blocks(e->model) * model_kv_block_size(e->model);
    LOG_INFO("engine ready", "model=\"%s\" backend=%s context=%d max_seqs=%d max_batch_tokens=%d "
             "kv_cache_tokens=%lld prefix_cache=%s", in->model_name, in->backend, n_ctx, max_seqs, max_batch,
             (long long)in->kv_cache_tokens, cfg->prefix_cache ? "on" : "off");
    return e;
fail:
    engine_close(e);
    return NULL;
}

void engine_close(engine_t *e) {
    if (!e) return;
    scheduler_free(e->sched);
    grammar_free(e->grammar);
    model_free(e->model);
    chat_free(e->chat);
    tokenizer_free(e->tok);
    gguf_close(e->g);
    free(e);
}

const engine_info_t *engine_get_info(const engine_t *e) { return &e->info; }

/* ---------------------------------------------------------------- text helpers */

/* Tokenizes with control tokens parsed outside the plain ranges (engine_tokenize:
 * none, or one over the whole text) and checks the length against the context. */
static int engine_tokenize_spans(const engine_t *e, const char *text, size_t len, bool add_bos,
                                 const tokenizer_span_t *plain, size_t n_plain, int32_t **ids, int *n_ids,
                                 char *err, size_t errlen) {
    size_t n = 0;
    *ids = NULL;
    *n_ids = 0;
    if (tokenizer_encode_spans(e->tok, text, len, add_bos, plain, n_plain, ids, &n, err, errlen) != 0)
        return ENGINE_ERR_INVALID;
    if (n > (size_t)e->info.n_ctx) {
        err_set(err, errlen, "the text is %zu tokens, more than the context of %d", n, e->info.n_ctx);
        free(*ids);
        *ids = NULL;
        return ENGINE_ERR_CONTEXT;
    }
    *n_ids = (int)n;
    return 0;
}

int engine_tokenize(const engine_t *e, const char *text, size_t len, bool add_bos, bool parse_special,
                    int32_t **ids, int *n_ids, char *err, size_t errlen) {
    tokenizer_span_t all = {0, len};
    return engine_tokenize_spans(e, text, len, add_bos, &all, parse_special ? 0 : 1, ids, n_ids, err, errlen);
}

int engine_chat_tokenize(const engine_t *e, const engine_chat_msg_t *msgs, size_t n_msgs, bool content_special,
                         int32_t **ids, int *n_ids, bool *rendered, char *err, size_t errlen) {
    char *text = NULL;
    tokenizer_span_t *content = NULL;
    size_t n_content = 0;
    *ids = NULL;
    *n_ids = 0;
    if (rendered) *rendered = false;
    if (chat_render_spans(e->chat, msgs, n_msgs, true, &text, &content, &n_content, err, errlen) != 0)
        return ENGINE_ERR_INVALID;
    if (rendered) *rendered = true;
    /* the template already holds BOS where the model wants one: none is added */
    int rc = engine_tokenize_spans(e, text, strlen(text), false, content, content_special ? 0 : n_content, ids,
                                   n_ids, err, errlen);
    free(content);
    free(text);
    return rc;
}

int engine_chat_render(const engine_t *e, const engine_chat_msg_t *msgs, size_t n_msgs, char **prompt,
                       char *err, size_t errlen) {
    return chat_render(e->chat, msgs, n_msgs, true, prompt, err, errlen);
}

/* ---------------------------------------------------------------- requests */

int engine_submit(engine_t *e, const engine_request_t *req, char *err, size_t errlen) {
    int rc = engine_request_check(&e->info, req, err, errlen); /* the API's one check; the scheduler trusts it */
    if (rc == ENGINE_OK) rc = engine_request_check_grammar(e->grammar, req, err, errlen);
    return rc != ENGINE_OK ? rc : scheduler_submit(e->sched, req, err, errlen);
}

int engine_step(engine_t *e) { return scheduler_step(e->sched); }

int engine_wait(engine_t *e, int timeout_ms) { return scheduler_wait(e->sched, timeout_ms); }

size_t engine_poll(engine_t *e, engine_result_t *out, size_t max) { return scheduler_poll(e->sched, out, max); }

void engine_result_clear(engine_result_t *r) {
    if (!r) return;
    free(r->text);
    free(r->tokens);
    free(r->logprobs);
    free(r->top);
    r->text = NULL;
    r->tokens = NULL;
    r->logprobs = NULL;
    r->top = NULL;
    r->n_top = 0;
    r->text_len = 0;
    r->n_tokens = 0;
}

int engine_abort(engine_t *e, uint64_t id) { return scheduler_abort(e->sched, id); }

void engine_get_stats(engine_t *e, engine_stats_t *st) {
    scheduler_get_stats(e->sched, st);
    if (e->grammar) {
        grammar_stats_t g;
        grammar_get_stats(e->grammar, &g);
        st->grammar_steps = g.mask_steps;
        st->grammar_rows = g.mask_rows;
        st->grammar_mask_ms = g.mask_ms;
        st->grammar_wait_ms = g.wait_ms;
    }
}

void engine_set_limits(engine_t *e, int max_seqs, int max_batch_tokens) {
    scheduler_set_limits(e->sched, max_seqs, max_batch_tokens);
}

uint64_t engine_choice_seed(uint64_t seed, int i) {
    return i == 0 ? seed : rng_mix64(seed ^ (RNG_GOLDEN * (uint64_t)i));
}

const tokenizer_t *engine_tokenizer(const engine_t *e) { return e ? e->tok : NULL; }
