/* pipeline_answer.c — gathering the n results of one request and encoding them as one
 * answer with choices[], logprobs and usage (pipeline_answer.h). */
#include "pipeline_answer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"

struct pipeline_answer {
    codec_kind_t kind;
    char *model;             /* the request's "model", NULL when it gave none */
    int n, got;
    bool logprobs;
    bool aborted;
    engine_result_t *res;    /* n; res[i] is choice i */
    bool *have;
};

pipeline_answer_t *pipeline_answer_new(const codec_request_t *req) {
    pipeline_answer_t *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->kind = req->kind;
    a->n = req->n > 0 ? req->n : 1;
    a->logprobs = req->logprobs;
    a->res = calloc((size_t)a->n, sizeof *a->res);
    a->have = calloc((size_t)a->n, sizeof *a->have);
    if (req->model) a->model = strdup(req->model);
    if (!a->res || !a->have || (req->model && !a->model)) {
        pipeline_answer_free(a);
        return NULL;
    }
    return a;
}

void pipeline_answer_free(pipeline_answer_t *a) {
    if (!a) return;
    for (int i = 0; a->res && i < a->n; i++)
        if (a->have[i]) engine_result_clear(&a->res[i]);
    free(a->res);
    free(a->have);
    free(a->model);
    free(a);
}

bool pipeline_answer_add(pipeline_answer_t *a, engine_result_t *r) {
    int i = r->index;
    if (i < 0 || i >= a->n || a->have[i]) {
        /* the engine's contract (engine.h: index = choice i, once each) is broken: keep
         * the result in the first free place so the request is still answered once */
        LOG_ERROR("engine result with an unexpected choice index", "id=%llu index=%d n=%d",
                  (unsigned long long)r->id, i, a->n);
        for (i = 0; i < a->n && a->have[i]; i++) {}
        if (i == a->n) {
            engine_result_clear(r);
            return a->got == a->n;
        }
    }
    if (r->finish == ENGINE_FINISH_ABORTED) a->aborted = true;
    a->res[i] = *r;
    a->have[i] = true;
    memset(r, 0, sizeof *r);
    return ++a->got == a->n;
}

bool pipeline_answer_aborted(const pipeline_answer_t *a) { return a->aborted; }
int pipeline_answer_n(const pipeline_answer_t *a) { return a->n; }
const engine_result_t *pipeline_answer_result(const pipeline_answer_t *a, int i) {
    return i >= 0 && i < a->n && a->have[i] ? &a->res[i] : NULL;
}

/* The token entries of one choice's logprobs: bytes of every generated and alternative
 * token in one block (*block, freed by the caller). 0, or -1 with err. */
static int choice_tokens(const pipeline_t *p, const engine_result_t *r, codec_token_t **tokens, codec_token_t **top,
                         char **block, char *err, size_t errlen) {
    size_t nt = r->n_tokens > 0 ? (size_t)r->n_tokens : 0, nk = r->n_top > 0 ? (size_t)r->n_top : 0;
    *tokens = NULL, *top = NULL, *block = NULL;
    if (nt && !r->logprobs) {
        err_set(err, errlen, "the engine returned no logprobs for a request that asked for them");
        return -1;
    }
    if (nt && nk && !r->top) {
        err_set(err, errlen, "the engine returned no top_logprobs for a request that asked for them");
        return -1;
    }
    size_t cnt = nt + nt * nk, used = 0, cap = cnt * 16 + 64;
    codec_token_t *all = calloc(cnt + 1, sizeof *all);
    size_t *offs = calloc(cnt + 1, sizeof *offs);
    char *b = malloc(cap);
    if (!all || !offs || !b) goto oom;
    for (size_t k = 0; k < cnt; k++) {
        int32_t id = k < nt ? r->tokens[k] : r->top[k - nt].id;
        for (;;) {
            int n = engine_token_bytes(p->engine, id, b + used, cap - used);
            if (n < 0) {
                err_set(err, errlen, "token %d of the answer is outside the vocabulary", (int)id);
                goto fail;
            }
            if ((size_t)n <= cap - used) {
                offs[k] = used;
                all[k].n_bytes = (size_t)n;
                used += (size_t)n;
                break;
            }
            size_t ncap = cap * 2 + (size_t)n;
            char *nb = realloc(b, ncap);
            if (!nb) goto oom;
            b = nb, cap = ncap;
        }
        all[k].logprob = k < nt ? r->logprobs[k] : r->top[k - nt].logprob;
    }
    for (size_t k = 0; k < cnt; k++) all[k].bytes = b + offs[k]; /* b is final now */
    free(offs);
    *tokens = all;
    *top = all + nt;
    *block = b;
    return 0;
oom:
    err_set(err, errlen, "out of memory encoding logprobs");
fail:
    free(all);
    free(offs);
    free(b);
    return -1;
}

int pipeline_encode_answer(pipeline_t *p, const char *custom_id, codec_format_t request_fmt,
                           const pipeline_answer_t *a, bool *ok, buf_t *out, char *err, size_t errlen) {
    for (int i = 0; i < a->n; i++) {
        const engine_result_t *r = &a->res[i];
        if (!a->have[i] || (r->finish != ENGINE_FINISH_STOP && r->finish != ENGINE_FINISH_LENGTH)) {
            engine_result_t missing = {.finish = ENGINE_FINISH_ERROR, .error_code = ENGINE_ERR_INTERNAL};
            if (!a->have[i]) snprintf(missing.error, sizeof missing.error, "choice %d of %d never came back", i, a->n);
            return pipeline_encode_result(p, custom_id, a->kind, request_fmt, a->have[i] ? r : &missing, ok, out, err,
                                          errlen);
        }
    }
    codec_result_t res;
    pipeline_result_base(p, &res, custom_id, a->kind, request_fmt);
    if (a->model) res.model = a->model;
    codec_choice_t *ch = calloc((size_t)a->n, sizeof *ch);
    char **blocks = calloc((size_t)a->n, sizeof *blocks);
    codec_token_t **toks = calloc((size_t)a->n, sizeof *toks);
    int rc = -1;
    if (!ch || !blocks || !toks) {
        err_set(err, errlen, "out of memory encoding an answer");
        goto done;
    }
    const engine_result_t *r0 = &a->res[0];
    res.status_code = 200;
    res.prompt_tokens = r0->prompt_tokens;
    res.cached_tokens = r0->cached_tokens;
    res.queue_ms = r0->queue_ms;
    res.ttft_ms = -1;
    res.total_ms = r0->total_ms;
    for (int i = 0; i < a->n; i++) {
        const engine_result_t *r = &a->res[i];
        ch[i].text = r->text ? r->text : "";
        ch[i].text_len = r->text ? r->text_len : 0;
        ch[i].finish_reason = r->finish == ENGINE_FINISH_STOP ? "stop" : "length";
        res.completion_tokens += r->completion_tokens;
        if (r->n_tokens > 0 && (res.ttft_ms < 0 || r->ttft_ms < res.ttft_ms)) res.ttft_ms = r->ttft_ms;
        if (r->total_ms > res.total_ms) res.total_ms = r->total_ms;
        if (!a->logprobs) continue;
        codec_token_t *top;
        if (choice_tokens(p, r, &toks[i], &top, &blocks[i], err, errlen) != 0) goto done;
        ch[i].has_logprobs = true;
        ch[i].tokens = toks[i];
        ch[i].n_tokens = r->n_tokens;
        ch[i].top = top;
        ch[i].n_top = r->n_top;
    }
    res.choices = ch;
    res.n_choices = a->n;
    p->status = 200;
    rc = codec_encode_result(&res, out, err, errlen);
    if (ok) *ok = rc == 0;
done:
    for (int i = 0; blocks && toks && i < a->n; i++) free(blocks[i]), free(toks[i]);
    free(blocks);
    free(toks);
    free(ch);
    return rc;
}
