/* codec_decode.c — the request walk: one message value -> a codec_request_t
 * (codec.h, docs/schema.md).
 *
 * Decoding goes: size check -> format detection -> pre-scan (codec_scan.c: depth,
 * and for msgpack the whole structure, so counts are backed by bytes) ->
 * jansson/msgpack-c -> one walk over the format-neutral view (codec_value.c) that
 * checks the shape and range of every field krill uses. Nothing here knows the model:
 * vocabulary and context are the pipeline's checks (pipeline.c). The first error
 * found wins; fields are checked in a fixed order so answers are deterministic.
 * Strings point into the parsed tree (JSON) or into the request's arena (msgpack
 * copies, concatenated content parts), so a decode does a handful of allocations
 * whatever the request holds. */
#include "codec.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>

#include "codec_scan.h"
#include "codec_surface.h"
#include "codec_value.h"

void codec_request_clear(codec_request_t *r) {
    if (!r) return;
    codec_value_store_free(r->priv_);
    memset(r, 0, sizeof *r);
}

/* ---------------------------------------------------------------- messages */

static const char *const MSG_KEYS[] = {"role", "content"};
static const char *const PART_KEYS[] = {"type", "text"};

static bool valid_role(const char *s) {
    static const char *const roles[] = {"system", "developer", "user", "assistant", "tool"};
    for (size_t i = 0; i < sizeof roles / sizeof *roles; i++)
        if (strcmp(s, roles[i]) == 0) return true;
    return false;
}

static void decode_messages(codec_walk_t *d, codec_value_t msgs) {
    codec_request_t *r = d->r;
    if (!codec_value_want(d, msgs, CODEC_VT_ARR, "messages", "an array of messages")) return;
    size_t n = codec_value_len(msgs);
    if (n == 0) {
        codec_value_fail(d, CODEC_ERR_INVALID_VALUE, "messages", "must hold at least one message");
        return;
    }
    r->messages = codec_value_alloc(d, n * sizeof *r->messages, 8);
    if (!r->messages) return;
    r->n_messages = n;
    char field[96];
    for (size_t i = 0; i < n && !codec_value_failed(d); i++) {
        codec_value_t m = codec_value_at(msgs, i), f[2];
        codec_message_t *cm = &r->messages[i];
        snprintf(field, sizeof field, "messages[%zu]", i);
        if (!codec_value_want(d, m, CODEC_VT_OBJ, field, "a message object")) return;
        snprintf(field, sizeof field, "messages[%zu].", i);
        if (!codec_value_fields(d, m, MSG_KEYS, 2, f, field)) return;
        if (!codec_surface_message(d, m, i)) return;
        snprintf(field, sizeof field, "messages[%zu].role", i);
        if (!codec_value_present(f[0])) {
            codec_value_fail(d, CODEC_ERR_MISSING_FIELD, field, "every message needs a role");
            return;
        }
        cm->role = codec_value_get_str(d, f[0], field, NULL);
        if (!cm->role) return;
        if (!valid_role(cm->role)) {
            codec_value_fail(d, CODEC_ERR_INVALID_VALUE, field, "must be system, developer, user, assistant or tool");
            return;
        }
        snprintf(field, sizeof field, "messages[%zu].content", i);
        int t = codec_value_type(f[1]);
        if (t == CODEC_VT_ABSENT || t == CODEC_VT_NULL) {
            codec_value_fail(d, CODEC_ERR_MISSING_FIELD, field, "every message needs content (a string or text parts)");
            return;
        }
        if (t == CODEC_VT_STR) {
            cm->content = codec_value_get_str(d, f[1], field, &cm->content_len);
            if (!cm->content) return;
            continue;
        }
        if (t != CODEC_VT_ARR) {
            codec_value_fail(d, CODEC_ERR_INVALID_TYPE, field, "expected a string or an array of text parts, got %s",
                             codec_value_type_name(t));
            return;
        }
        /* text parts: validate all, then concatenate (no separator) */
        size_t np = codec_value_len(f[1]), total = 0;
        const char **texts = np ? codec_value_alloc(d, np * sizeof *texts, 8) : NULL;
        size_t *lens = np ? codec_value_alloc(d, np * sizeof *lens, 8) : NULL;
        if (np && (!texts || !lens)) return;
        for (size_t k = 0; k < np; k++) {
            codec_value_t part = codec_value_at(f[1], k), pf[2];
            char pfield[128];
            snprintf(pfield, sizeof pfield, "messages[%zu].content[%zu]", i, k);
            if (!codec_value_want(d, part, CODEC_VT_OBJ, pfield, "a content part object")) return;
            snprintf(pfield, sizeof pfield, "messages[%zu].content[%zu].", i, k);
            if (!codec_value_fields(d, part, PART_KEYS, 2, pf, pfield)) return;
            snprintf(pfield, sizeof pfield, "messages[%zu].content[%zu].type", i, k);
            if (!codec_value_present(pf[0])) {
                codec_value_fail(d, CODEC_ERR_MISSING_FIELD, pfield, "every content part needs a type");
                return;
            }
            const char *type = codec_value_get_str(d, pf[0], pfield, NULL);
            if (!type) return;
            if (strcmp(type, "text") != 0) {
                codec_value_fail(d, CODEC_ERR_UNSUPPORTED, pfield, "only text content parts are supported");
                return;
            }
            snprintf(pfield, sizeof pfield, "messages[%zu].content[%zu].text", i, k);
            if (!codec_value_present(pf[1])) {
                codec_value_fail(d, CODEC_ERR_MISSING_FIELD, pfield, "a text part needs text");
                return;
            }
            texts[k] = codec_value_get_str(d, pf[1], pfield, &lens[k]);
            if (!texts[k]) return;
            total += lens[k];
        }
        if (np == 1) {
            cm->content = texts[0];
            cm->content_len = lens[0];
        } else {
            char *c = codec_value_alloc(d, total + 1, 1), *w = c;
            if (!c) return;
            for (size_t k = 0; k < np; k++) memcpy(w, texts[k], lens[k]), w += lens[k];
            *w = 0;
            cm->content = c;
            cm->content_len = total;
        }
    }
}

/* ---------------------------------------------------------------- prompt */

static bool token_array(codec_walk_t *d, codec_value_t a, const char *field) {
    size_t n = codec_value_len(a);
    int32_t *ids = codec_value_alloc(d, n * sizeof *ids, 8);
    if (!ids) return false;
    char f[96];
    for (size_t i = 0; i < n; i++) {
        int64_t t;
        snprintf(f, sizeof f, "%s[%zu]", field, i);
        if (!codec_value_get_int(d, codec_value_at(a, i), f, 0, INT32_MAX, &t)) return false;
        ids[i] = (int32_t)t;
    }
    d->r->prompt_ids = ids;
    d->r->n_prompt_ids = (int)n;
    return true;
}

static void decode_prompt(codec_walk_t *d, codec_value_t p) {
    codec_request_t *r = d->r;
    int t = codec_value_type(p);
    if (t == CODEC_VT_STR) {
        r->prompt = codec_value_get_str(d, p, "prompt", &r->prompt_len);
        if (r->prompt && r->prompt_len == 0)
            codec_value_fail(d, CODEC_ERR_INVALID_VALUE, "prompt", "must not be empty");
        return;
    }
    if (t != CODEC_VT_ARR) {
        codec_value_fail(d, CODEC_ERR_INVALID_TYPE, "prompt", "expected a string, got %s", codec_value_type_name(t));
        return;
    }
    size_t n = codec_value_len(p);
    if (n == 0) {
        codec_value_fail(d, CODEC_ERR_INVALID_VALUE, "prompt", "must not be empty");
        return;
    }
    int t0 = codec_value_type(codec_value_at(p, 0));
    if (t0 == CODEC_VT_INT || t0 == CODEC_VT_UINT) { /* one prompt as token ids */
        token_array(d, p, "prompt");
        return;
    }
    if (n > 1 && (t0 == CODEC_VT_STR || t0 == CODEC_VT_ARR)) {
        codec_value_fail(d, CODEC_ERR_UNSUPPORTED, "prompt", "a list of %zu prompts; send one message per prompt", n);
        return;
    }
    if (t0 == CODEC_VT_STR) {
        r->prompt = codec_value_get_str(d, codec_value_at(p, 0), "prompt[0]", &r->prompt_len);
        if (r->prompt && r->prompt_len == 0)
            codec_value_fail(d, CODEC_ERR_INVALID_VALUE, "prompt[0]", "must not be empty");
        return;
    }
    if (t0 == CODEC_VT_ARR) {
        codec_value_t a = codec_value_at(p, 0);
        if (codec_value_len(a) == 0) {
            codec_value_fail(d, CODEC_ERR_INVALID_VALUE, "prompt[0]", "must not be empty");
            return;
        }
        token_array(d, a, "prompt[0]");
        return;
    }
    codec_value_fail(d, CODEC_ERR_INVALID_TYPE, "prompt[0]", "expected a string or token ids, got %s",
                     codec_value_type_name(t0));
}

/* ---------------------------------------------------------------- body */

enum {
    B_MODEL, B_MESSAGES, B_PROMPT, B_MAX_TOKENS, B_MAX_COMPLETION_TOKENS, B_TEMPERATURE, B_TOP_P, B_TOP_K,
    B_MIN_P, B_SEED, B_STOP, B_PRESENCE, B_FREQUENCY, B_N, B_STREAM, B_IGNORE_EOS, B_MIN_TOKENS, B_PRIORITY,
    B_COUNT
};
static const char *const BODY_KEYS[B_COUNT] = {
    "model", "messages", "prompt", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
    "min_p", "seed", "stop", "presence_penalty", "frequency_penalty", "n", "stream", "ignore_eos",
    "min_tokens", "priority"};

/* An optional number: absent or null keeps *out (the default); true unless it failed. */
static bool opt_num(codec_walk_t *d, codec_value_t v, const char *field, double lo, double hi, bool lo_open,
                    double *out) {
    return !codec_value_present(v) || codec_value_get_num(d, v, field, lo, hi, lo_open, out);
}

/* url_kind: -1 bare body, else the kind the url asks for. */
static void decode_body(codec_walk_t *d, codec_value_t body, int url_kind) {
    codec_request_t *r = d->r;
    const codec_limits_t *lim = d->lim;
    codec_value_t f[B_COUNT];
    if (!codec_value_fields(d, body, BODY_KEYS, B_COUNT, f, "")) return;

    /* what kind of request */
    bool has_msgs = codec_value_present(f[B_MESSAGES]), has_prompt = codec_value_present(f[B_PROMPT]);
    if (has_msgs && has_prompt) {
        codec_value_fail(d, CODEC_ERR_INVALID_VALUE, "prompt",
                         "give messages (chat) or prompt (completion), not both");
        return;
    }
    if (url_kind == CODEC_KIND_CHAT && !has_msgs) {
        codec_value_fail(d, CODEC_ERR_MISSING_FIELD, "messages", "/v1/chat/completions takes messages");
        return;
    }
    if (url_kind == CODEC_KIND_COMPLETION && !has_prompt) {
        codec_value_fail(d, CODEC_ERR_MISSING_FIELD, "prompt",
                         "/v1/completions takes prompt (a string); for messages use /v1/chat/completions");
        return;
    }
    if (!has_msgs && !has_prompt) {
        codec_value_fail(d, CODEC_ERR_MISSING_FIELD, "messages",
                         "a request needs messages (chat) or prompt (completion)");
        return;
    }
    r->kind = has_msgs ? CODEC_KIND_CHAT : CODEC_KIND_COMPLETION;
    r->n = 1;
    if (has_msgs) decode_messages(d, f[B_MESSAGES]);
    else decode_prompt(d, f[B_PROMPT]);
    if (codec_value_failed(d)) return;

    if (codec_value_present(f[B_MODEL])) {
        size_t n;
        r->model = codec_value_get_str(d, f[B_MODEL], "model", &n);
        if (!r->model) return;
        if (lim->n_model_names > 0) {
            bool ok = false;
            for (size_t i = 0; i < lim->n_model_names && !ok; i++)
                ok = lim->model_names[i] && strcmp(lim->model_names[i], r->model) == 0;
            for (size_t i = 0; i < lim->n_model_names && !ok; i++)
                ok = lim->model_names[i] && strcmp(lim->model_names[i], "*") == 0;
            if (!ok) {
                codec_value_fail(d, CODEC_ERR_MODEL_NOT_FOUND, "model", "this worker serves %s%s",
                                 lim->model_names[0] ? lim->model_names[0] : "another model",
                                 lim->n_model_names > 1 ? " (and aliases)" : "");
                return;
            }
        }
    }

    /* n and stream first: the request cannot be served at all otherwise */
    if (codec_value_present(f[B_N])) {
        int64_t n;
        int max_n = lim->max_n > 0 ? lim->max_n : 1;
        if (!codec_value_want(d, f[B_N], CODEC_VT_INT, "n", "an integer")) return;
        if (codec_value_type(f[B_N]) == CODEC_VT_UINT || codec_value_int(f[B_N]) > max_n) {
            codec_value_fail(d, CODEC_ERR_INVALID_VALUE, "n",
                             "at most %d choices per request (input.max_n); send several messages for more", max_n);
            return;
        }
        if (!codec_value_get_int(d, f[B_N], "n", 1, max_n, &n)) return;
        r->n = (int)n;
    }
    if (codec_value_present(f[B_STREAM])) {
        bool s;
        if (!codec_value_get_bool(d, f[B_STREAM], "stream", &s)) return;
        if (s) {
            codec_value_fail(d, CODEC_ERR_UNSUPPORTED, "stream", "streaming is not supported; results are whole");
            return;
        }
    }

    /* max tokens */
    int64_t mt = 0, mct = 0;
    bool has_mt = codec_value_present(f[B_MAX_TOKENS]), has_mct = codec_value_present(f[B_MAX_COMPLETION_TOKENS]);
    int cap = lim->max_tokens_cap > 0 ? lim->max_tokens_cap : INT32_MAX;
    if (has_mt && !codec_value_get_int(d, f[B_MAX_TOKENS], "max_tokens", 1, cap, &mt)) return;
    if (has_mct && !codec_value_get_int(d, f[B_MAX_COMPLETION_TOKENS], "max_completion_tokens", 1, cap, &mct)) return;
    if (has_mt && has_mct && mt != mct) {
        codec_value_fail(d, CODEC_ERR_INVALID_VALUE, "max_completion_tokens",
                         "differs from max_tokens (%" PRId64 " vs %" PRId64 "); give one of them", mct, mt);
        return;
    }
    r->has_max_tokens = has_mt || has_mct;
    r->max_tokens = has_mct ? (int)mct : has_mt ? (int)mt : lim->default_max_tokens;
    if (r->max_tokens < 1) r->max_tokens = 1;
    if (r->max_tokens > cap) r->max_tokens = cap; /* only a misconfigured default gets here */

    /* sampling */
    r->temperature = 1.0;
    r->top_p = 1.0;
    if (!opt_num(d, f[B_TEMPERATURE], "temperature", 0, 2, false, &r->temperature)) return;
    if (!opt_num(d, f[B_TOP_P], "top_p", 0, 1, true, &r->top_p)) return;
    if (codec_value_present(f[B_TOP_K])) {
        int64_t k;
        if (!codec_value_get_int(d, f[B_TOP_K], "top_k", -1, INT32_MAX, &k)) return;
        r->top_k = k < 0 ? 0 : (int)k;
    }
    if (!opt_num(d, f[B_MIN_P], "min_p", 0, 1, false, &r->min_p)) return;
    if (!opt_num(d, f[B_PRESENCE], "presence_penalty", -2, 2, false, &r->presence_penalty)) return;
    if (!opt_num(d, f[B_FREQUENCY], "frequency_penalty", -2, 2, false, &r->frequency_penalty)) return;
    if (codec_value_present(f[B_SEED])) {
        if (!codec_value_want(d, f[B_SEED], CODEC_VT_INT, "seed", "an integer")) return;
        r->has_seed = true;
        r->seed = codec_value_bits64(f[B_SEED]);
    }
    if (codec_value_present(f[B_STOP])) {
        codec_value_t s = f[B_STOP];
        int t = codec_value_type(s);
        if (t == CODEC_VT_STR) {
            size_t n;
            r->stop[0] = codec_value_get_str(d, s, "stop", &n);
            if (!r->stop[0]) return;
            if (n == 0) {
                codec_value_fail(d, CODEC_ERR_INVALID_VALUE, "stop", "a stop string must not be empty");
                return;
            }
            r->n_stop = 1;
        } else if (t == CODEC_VT_ARR) {
            size_t n = codec_value_len(s);
            if (n > CODEC_MAX_STOP) {
                codec_value_fail(d, CODEC_ERR_INVALID_VALUE, "stop", "at most %d stop strings (got %zu)",
                                 CODEC_MAX_STOP, n);
                return;
            }
            for (size_t i = 0; i < n; i++) {
                char field[32];
                size_t len;
                snprintf(field, sizeof field, "stop[%zu]", i);
                r->stop[i] = codec_value_get_str(d, codec_value_at(s, i), field, &len);
                if (!r->stop[i]) return;
                if (len == 0) {
                    codec_value_fail(d, CODEC_ERR_INVALID_VALUE, field, "a stop string must not be empty");
                    return;
                }
            }
            r->n_stop = (int)n;
        } else {
            codec_value_fail(d, CODEC_ERR_INVALID_TYPE, "stop", "expected a string or an array of strings, got %s",
                             codec_value_type_name(t));
            return;
        }
    }
    if (codec_value_present(f[B_IGNORE_EOS]) && !codec_value_get_bool(d, f[B_IGNORE_EOS], "ignore_eos", &r->ignore_eos))
        return;
    if (codec_value_present(f[B_MIN_TOKENS])) {
        int64_t m;
        if (!codec_value_get_int(d, f[B_MIN_TOKENS], "min_tokens", 0, r->max_tokens, &m)) return;
        r->min_tokens = (int)m;
    }
    if (codec_value_present(f[B_PRIORITY])) {
        int64_t p;
        if (!codec_value_get_int(d, f[B_PRIORITY], "priority", INT32_MIN, INT32_MAX, &p)) return;
        r->priority = (int)p;
    }
    codec_surface_decode(d, body);
    if (codec_value_failed(d)) return;
    /* nothing accepted and ignored: a field krill does not implement is refused */
    codec_surface_unknown(d, body, BODY_KEYS, B_COUNT, !*d->prefix);
}

/* ---------------------------------------------------------------- envelope */

enum { E_CUSTOM_ID, E_ID, E_METHOD, E_URL, E_BODY, E_COUNT };
static const char *const ENV_KEYS[E_COUNT] = {"custom_id", "id", "method", "url", "body"};

static void decode_object(codec_walk_t *d, codec_value_t top) {
    codec_request_t *r = d->r;
    codec_value_t f[E_COUNT];
    if (!codec_value_fields(d, top, ENV_KEYS, E_COUNT, f, "")) return;

    /* the id first, so that every error below is answered under it; null is not
     * "absent" here: an id that is not a string is an error like any other */
    for (int k = E_CUSTOM_ID; k <= E_ID; k++) {
        if (codec_value_type(f[k]) == CODEC_VT_ABSENT) continue;
        const char *name = ENV_KEYS[k];
        int t = codec_value_type(f[k]);
        if (t != CODEC_VT_STR) {
            codec_value_fail(d, CODEC_ERR_INVALID_TYPE, name, "expected a string, got %s", codec_value_type_name(t));
            return;
        }
        size_t n;
        const char *s = codec_value_str_raw(f[k], &n);
        if (!codec_scan_id_ok((const unsigned char *)s, n)) {
            codec_value_fail(d, CODEC_ERR_INVALID_VALUE, name, "must be 1..%d bytes of UTF-8 without NUL",
                             CODEC_MAX_ID_BYTES);
            return;
        }
        memcpy(d->st->idbuf, s, n);
        d->st->idbuf[n] = 0;
        r->id = d->st->idbuf;
        r->has_custom_id = true;
        break;
    }

    int url_kind = -1;
    bool batch = codec_value_present(f[E_BODY]);
    if (!batch && (codec_value_present(f[E_URL]) || codec_value_present(f[E_METHOD]))) {
        codec_value_fail(d, CODEC_ERR_MISSING_FIELD, "body", "a Batch API line (with url/method) needs a body object");
        return;
    }
    if (batch) {
        if (!codec_surface_envelope(d, top, ENV_KEYS, E_COUNT)) return;
        if (codec_value_present(f[E_METHOD])) {
            const char *m = codec_value_get_str(d, f[E_METHOD], "method", NULL);
            if (!m) return;
            if (strcmp(m, "POST") != 0) {
                codec_value_fail(d, CODEC_ERR_INVALID_VALUE, "method", "must be POST");
                return;
            }
        }
        if (codec_value_present(f[E_URL])) {
            const char *u = codec_value_get_str(d, f[E_URL], "url", NULL);
            if (!u) return;
            if (strcmp(u, "/v1/chat/completions") == 0) url_kind = CODEC_KIND_CHAT;
            else if (strcmp(u, "/v1/completions") == 0) url_kind = CODEC_KIND_COMPLETION;
            else {
                codec_value_fail(d, CODEC_ERR_UNSUPPORTED, "url",
                                 "krill serves /v1/chat/completions and /v1/completions");
                return;
            }
        }
        if (!codec_value_want(d, f[E_BODY], CODEC_VT_OBJ, "body", "an object")) return;
        d->prefix = "body.";
        decode_body(d, f[E_BODY], url_kind);
    } else {
        decode_body(d, top, -1);
    }
}

/* ---------------------------------------------------------------- entry point */

static void undecodable(codec_request_t *r, codec_dlq_t dlq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void undecodable(codec_request_t *r, codec_dlq_t dlq, const char *fmt, ...) {
    r->status = CODEC_UNDECODABLE;
    r->dlq = dlq;
    r->error = r->format == CODEC_FMT_MSGPACK ? CODEC_ERR_INVALID_MSGPACK : CODEC_ERR_INVALID_JSON;
    r->status_code = 400;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error_message, sizeof r->error_message, fmt, ap);
    va_end(ap);
}

/* Out of memory (the store, or jansson/msgpack-c building the tree): answered with a
 * 500 internal_error under the id found so far, never dead-lettered. */
static void out_of_memory(codec_request_t *r) {
    r->status = CODEC_INVALID;
    r->error = CODEC_ERR_INTERNAL;
    r->status_code = codec_error_status(CODEC_ERR_INTERNAL);
    snprintf(r->error_message, sizeof r->error_message, "out of memory decoding the message; retry it");
}

static void scan_id(codec_request_t *r, codec_store_t *pv, const unsigned char *p, size_t len) {
    const unsigned char *id = NULL;
    size_t n = 0;
    if (codec_scan_id(r->format, p, len, &id, &n) == 1) {
        memcpy(pv->idbuf, id, n);
        pv->idbuf[n] = 0;
        r->id = pv->idbuf;
        r->has_custom_id = true;
    }
}

void codec_decode(const codec_limits_t *lim, const void *buf, size_t len, const char *fallback_id,
                  codec_request_t *out) {
    codec_limits_t deflim;
    if (!lim) {
        codec_limits_defaults(&deflim);
        lim = &deflim;
    }
    codec_request_clear(out);
    const unsigned char *p = buf;
    if (!p) len = 0;
    int fmt = codec_detect(p, len);
    out->format = fmt == 1 ? CODEC_FMT_MSGPACK : CODEC_FMT_JSON;
    codec_store_t *pv = calloc(1, sizeof *pv);
    if (!pv) {
        out->id = fallback_id ? fallback_id : "unknown"; /* codec.h: the caller's string then */
        out_of_memory(out);
        return;
    }
    out->priv_ = pv;
    snprintf(pv->idbuf, sizeof pv->idbuf, "%s", fallback_id ? fallback_id : "unknown");
    out->id = pv->idbuf;

    bool dup = false;
    if (lim->max_message_bytes > 0 && len > lim->max_message_bytes) {
        if (fmt >= 0) scan_id(out, pv, p, len);
        undecodable(out, CODEC_DLQ_MESSAGE_TOO_LARGE,
                    "message is %zu bytes, over input.max_message_bytes = %zu; shorten it or raise the limit", len,
                    lim->max_message_bytes);
        return;
    }
    if (fmt < 0) {
        if (len == 0) undecodable(out, CODEC_DLQ_NOT_AN_OBJECT, "empty message value; send a JSON object or msgpack map");
        else
            undecodable(out, CODEC_DLQ_NOT_AN_OBJECT,
                        "neither a JSON object nor a msgpack map (first byte 0x%02x); send one of them", p[0]);
        return;
    }

    if (fmt == 0) {
        if (codec_scan_json_too_deep(p, len, CODEC_MAX_DEPTH)) {
            scan_id(out, pv, p, len);
            undecodable(out, CODEC_DLQ_NESTING_TOO_DEEP, "JSON nested deeper than %d levels", CODEC_MAX_DEPTH);
            return;
        }
        json_error_t jerr;
        pv->root = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
        if (!pv->root && json_error_code(&jerr) == json_error_duplicate_key) {
            /* structurally fine: answer it (400 invalid_json) rather than dead-letter it */
            pv->root = json_loadb((const char *)p, len, JSON_ALLOW_NUL, NULL);
            dup = pv->root != NULL;
        }
        if (!pv->root) {
            scan_id(out, pv, p, len);
            if (json_error_code(&jerr) == json_error_out_of_memory) {
                out_of_memory(out);
                return;
            }
            undecodable(out, CODEC_DLQ_INVALID_JSON, "invalid JSON at line %d column %d: %s", jerr.line,
                        jerr.column, jerr.text);
            return;
        }
    } else {
        const char *why = NULL;
        int rc = codec_scan_msgpack(p, len, CODEC_MAX_DEPTH, &why);
        if (rc != 0) {
            scan_id(out, pv, p, len);
            if (rc == 1) undecodable(out, CODEC_DLQ_NESTING_TOO_DEEP, "msgpack nested deeper than %d levels", CODEC_MAX_DEPTH);
            else undecodable(out, CODEC_DLQ_INVALID_MSGPACK, "invalid msgpack: %s", why);
            return;
        }
        msgpack_unpacked_init(&pv->mp);
        pv->mp_used = true;
        size_t off = 0;
        msgpack_unpack_return ur = msgpack_unpack_next(&pv->mp, (const char *)p, len, &off);
        if (ur != MSGPACK_UNPACK_SUCCESS || off != len || pv->mp.data.type != MSGPACK_OBJECT_MAP) {
            /* the pre-scan accepted it, so this is msgpack-c disagreeing or out of memory */
            scan_id(out, pv, p, len);
            if (ur == MSGPACK_UNPACK_NOMEM_ERROR) {
                out_of_memory(out);
                return;
            }
            undecodable(out, CODEC_DLQ_INVALID_MSGPACK, "invalid msgpack (unpack returned %d)", (int)ur);
            return;
        }
    }
    /* one chunk covers a typical request: msgpack string copies + the small arrays */
    codec_value_reserve(pv, len + 512);
    codec_walk_t d = {out, pv, lim, ""};
    codec_value_t top = {pv->root, pv->mp_used ? &pv->mp.data : NULL};
    decode_object(&d, top);
    if (dup) {
        /* the duplicate comes first; the walk only found the id to answer under —
         * unless the id's own key is the one given twice: then neither value can be
         * trusted (jansson kept the last) and the answer goes under the fallback id */
        const unsigned char *id;
        size_t n;
        bool id_twice = codec_scan_id(CODEC_FMT_JSON, p, len, &id, &n) == -1;
        out->status = CODEC_OK;
        out->param = NULL;
        d.prefix = "";
        if (id_twice) {
            snprintf(pv->idbuf, sizeof pv->idbuf, "%s", fallback_id ? fallback_id : "unknown");
            out->id = pv->idbuf;
            out->has_custom_id = false;
            const char *key = json_object_get(pv->root, "custom_id") ? "custom_id" : "id";
            codec_value_fail(&d, CODEC_ERR_INVALID_JSON, key, "key given twice; give the request id once");
        } else {
            codec_value_fail(&d, CODEC_ERR_INVALID_JSON, NULL, "duplicate key in a JSON object; give each key once");
        }
    }
    if (pv->mp_used) { /* strings were copied: the tree (which points into buf) is done */
        msgpack_unpacked_destroy(&pv->mp);
        pv->mp_used = false;
    }
}
