/* codec_encode.c — result messages: a codec_result_t -> one JSON or msgpack value
 * in the Batch API output shape (docs/schema.md).
 *
 * A tiny emitter with two back ends, so the result's shape is written once:
 * msgpack-c's packer, or JSON written straight into the buffer. Why not jansson
 * here: json_dumpb costs ~9 us per result (loop detection per container, a callback
 * per token), half of the whole per-request budget; the result has a fixed shape
 * and only strings need care (escaped per RFC 8259 after UTF-8 repair). The tests
 * parse every JSON result with jansson and compare it with the msgpack form. */
#include "err.h"
#include "codec.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "log.h"
#include "utf8.h"

void codec_result_from_request_error(const codec_request_t *req, codec_result_t *res) {
    res->format = req->format;
    res->custom_id = req->id;
    res->kind = req->kind;
    res->status_code = req->status_code ? req->status_code : codec_error_status(req->error);
    res->error = req->error;
    res->error_message = req->error_message;
    res->error_param = req->param;
    res->text = NULL;
    res->text_len = 0;
    res->finish_reason = NULL;
    res->prompt_tokens = res->completion_tokens = 0;
}

typedef struct {
    bool mp;
    msgpack_packer pk;
    buf_t *out;
    int depth;
    int n[16];      /* items written at each open level (JSON): a chat logprobs alternative is level 10 */
    bool after_key; /* the next value follows "key": */
    int oom;
} em_t;

static int em_write_cb(void *data, const char *p, size_t n) {
    em_t *e = data;
    if (buf_append(e->out, p, n) == 0) return 0;
    e->oom = 1;
    return -1;
}

static void j_raw(em_t *e, const char *s, size_t n) {
    if (buf_append(e->out, s, n) != 0) e->oom = 1;
}

static void j_sep(em_t *e) {
    if (e->after_key) {
        e->after_key = false;
        return;
    }
    if (e->depth > 0 && e->n[e->depth - 1]++ > 0) j_raw(e, ",", 1);
}

/* s must be valid UTF-8 */
static void j_string(em_t *e, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    if (buf_reserve(e->out, n * 6 + 2) != 0) { /* worst case: every byte \u00XX */
        e->oom = 1;
        return;
    }
    char *w = e->out->data + e->out->len;
    *w++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *w++ = (char)c;
            continue;
        }
        *w++ = '\\';
        switch (c) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '\n': *w++ = 'n'; break;
        case '\r': *w++ = 'r'; break;
        case '\t': *w++ = 't'; break;
        case '\b': *w++ = 'b'; break;
        case '\f': *w++ = 'f'; break;
        default: *w++ = 'u', *w++ = '0', *w++ = '0', *w++ = hex[c >> 4], *w++ = hex[c & 15];
        }
    }
    *w++ = '"';
    e->out->len = (size_t)(w - e->out->data);
}

static void em_open(em_t *e, char c) {
    j_sep(e);
    j_raw(e, &c, 1);
    CHECK(e->depth < 16);
    e->n[e->depth++] = 0;
}

static void em_map(em_t *e, size_t n) {
    if (e->mp) msgpack_pack_map(&e->pk, n);
    else em_open(e, '{');
}

static void em_array(em_t *e, size_t n) {
    if (e->mp) msgpack_pack_array(&e->pk, n);
    else em_open(e, '[');
}

static void em_end(em_t *e, char c) {
    if (e->mp) return;
    CHECK(e->depth > 0);
    e->depth--;
    j_raw(e, &c, 1);
}

static void em_key(em_t *e, const char *k) {
    size_t n = strlen(k);
    if (e->mp) {
        msgpack_pack_str(&e->pk, n);
        msgpack_pack_str_body(&e->pk, k, n);
        return;
    }
    j_sep(e);
    j_string(e, k, n);
    j_raw(e, ":", 1);
    e->after_key = true;
}

static void em_str(em_t *e, const char *s, size_t n) {
    char *clean = NULL;
    if (!utf8_valid(s, n)) {
        clean = utf8_sanitize(s, n, &n);
        if (!clean) {
            e->oom = 1;
            return;
        }
        s = clean;
    }
    if (e->mp) {
        msgpack_pack_str(&e->pk, n);
        msgpack_pack_str_body(&e->pk, s, n);
    } else {
        j_sep(e);
        j_string(e, s, n);
    }
    free(clean);
}
static void em_nil(em_t *e) {
    if (e->mp) {
        msgpack_pack_nil(&e->pk);
    } else {
        j_sep(e);
        j_raw(e, "null", 4);
    }
}
static void em_cstr(em_t *e, const char *s) {
    if (!s) em_nil(e);
    else em_str(e, s, strlen(s));
}
static void em_int(em_t *e, int64_t v) {
    if (e->mp) {
        msgpack_pack_int64(&e->pk, v);
        return;
    }
    char b[24];
    int n = snprintf(b, sizeof b, "%" PRId64, v);
    j_sep(e);
    j_raw(e, b, (size_t)n);
}
static void em_ms(em_t *e, double v) { /* milliseconds, 3 decimals; negative/NaN/huge -> null */
    if (!(v >= 0 && v < 1e15)) {
        em_nil(e);
        return;
    }
    v = round(v * 1000.0) / 1000.0;
    if (e->mp) {
        msgpack_pack_double(&e->pk, v);
        return;
    }
    char b[32];
    int n = snprintf(b, sizeof b, "%.3f", v);
    while (n > 2 && b[n - 1] == '0' && b[n - 2] != '.') n--; /* 40.200 -> 40.2, 3.000 -> 3.0 */
    j_sep(e);
    j_raw(e, b, (size_t)n);
}

static void em_num(em_t *e, double v) { /* a log-probability: float precision; NaN/inf -> null */
    if (!isfinite(v)) {
        em_nil(e);
        return;
    }
    if (e->mp) {
        msgpack_pack_double(&e->pk, v);
        return;
    }
    char b[32];
    int n = snprintf(b, sizeof b, "%.9g", v);
    if (!strpbrk(b, ".eEn")) n += snprintf(b + n, sizeof b - (size_t)n, ".0");
    j_sep(e);
    j_raw(e, b, (size_t)n);
}

/* {token, logprob, bytes} (chat); "top" adds top_logprobs[]. */
static void emit_chat_token(em_t *e, const codec_token_t *t, const codec_token_t *top, int n_top, bool with_top) {
    em_map(e, with_top ? 4 : 3);
    em_key(e, "token"), em_str(e, t->bytes, t->n_bytes);
    em_key(e, "logprob"), em_num(e, t->logprob);
    em_key(e, "bytes");
    em_array(e, t->n_bytes);
    for (size_t i = 0; i < t->n_bytes; i++) em_int(e, (unsigned char)t->bytes[i]);
    em_end(e, ']');
    if (with_top) {
        em_key(e, "top_logprobs");
        em_array(e, (size_t)n_top);
        for (int j = 0; j < n_top; j++) emit_chat_token(e, &top[j], NULL, 0, false);
        em_end(e, ']');
    }
    em_end(e, '}');
}

static bool same_token_text(const codec_token_t *a, const codec_token_t *b) {
    if (a->n_bytes == b->n_bytes && memcmp(a->bytes, b->bytes, a->n_bytes) == 0) return true;
    if (utf8_valid(a->bytes, a->n_bytes) && utf8_valid(b->bytes, b->n_bytes)) return false;
    /* both shown through U+FFFD replacement: compare what the reader sees */
    size_t na, nb;
    char *sa = utf8_sanitize(a->bytes, a->n_bytes, &na), *sb = utf8_sanitize(b->bytes, b->n_bytes, &nb);
    bool same = sa && sb && na == nb && memcmp(sa, sb, na) == 0;
    free(sa);
    free(sb);
    return same;
}

/* Completions: {token: logprob} of the top alternatives plus the chosen token, each
 * token text once (two tokens can read the same after U+FFFD repair: the likelier wins). */
static void emit_top_dict(em_t *e, const codec_token_t *chosen, const codec_token_t *top, int n_top) {
    const codec_token_t *list[CODEC_MAX_LOGPROBS_COMPLETION + 1];
    size_t n = 0;
    for (int j = 0; j <= n_top && n < sizeof list / sizeof *list; j++) {
        const codec_token_t *t = j < n_top ? &top[j] : chosen;
        bool dup = false;
        for (size_t q = 0; q < n && !dup; q++) dup = same_token_text(list[q], t);
        if (!dup) list[n++] = t;
    }
    em_map(e, n);
    for (size_t q = 0; q < n; q++) {
        /* a key is a string: written as one (em_key takes C strings) */
        if (e->mp) {
            em_str(e, list[q]->bytes, list[q]->n_bytes);
        } else {
            em_str(e, list[q]->bytes, list[q]->n_bytes);
            j_raw(e, ":", 1);
            e->after_key = true;
        }
        em_num(e, list[q]->logprob);
    }
    em_end(e, '}');
}

static void emit_logprobs(em_t *e, const codec_choice_t *c, bool chat) {
    if (!c->has_logprobs) {
        em_nil(e);
        return;
    }
    size_t n = c->n_tokens > 0 ? (size_t)c->n_tokens : 0;
    if (chat) {
        em_map(e, 1);
        em_key(e, "content");
        em_array(e, n);
        for (size_t i = 0; i < n; i++) emit_chat_token(e, &c->tokens[i], c->top + i * (size_t)c->n_top, c->n_top, true);
        em_end(e, ']');
        em_end(e, '}');
        return;
    }
    em_map(e, 4);
    em_key(e, "tokens");
    em_array(e, n);
    for (size_t i = 0; i < n; i++) em_str(e, c->tokens[i].bytes, c->tokens[i].n_bytes);
    em_end(e, ']');
    em_key(e, "token_logprobs");
    em_array(e, n);
    for (size_t i = 0; i < n; i++) em_num(e, c->tokens[i].logprob);
    em_end(e, ']');
    em_key(e, "top_logprobs");
    em_array(e, n);
    for (size_t i = 0; i < n; i++) emit_top_dict(e, &c->tokens[i], c->top + i * (size_t)c->n_top, c->n_top);
    em_end(e, ']');
    em_key(e, "text_offset");
    em_array(e, n);
    int64_t off = 0;
    for (size_t i = 0; i < n; i++) em_int(e, off), off += (int64_t)c->tokens[i].n_bytes;
    em_end(e, ']');
    em_end(e, '}');
}

static void emit_choice(em_t *e, const codec_choice_t *c, int index, bool chat) {
    em_map(e, 4);
    em_key(e, "index"), em_int(e, index);
    if (chat) {
        em_key(e, "message");
        em_map(e, 2);
        em_key(e, "role"), em_cstr(e, "assistant");
        em_key(e, "content"), em_str(e, c->text ? c->text : "", c->text ? c->text_len : 0);
        em_end(e, '}');
    } else {
        em_key(e, "text"), em_str(e, c->text ? c->text : "", c->text ? c->text_len : 0);
    }
    em_key(e, "logprobs"), emit_logprobs(e, c, chat);
    em_key(e, "finish_reason"), em_cstr(e, c->finish_reason ? c->finish_reason : "stop");
    em_end(e, '}');
}

static void hexid(char *out, size_t n, const char *prefix, uint64_t uid) {
    snprintf(out, n, "%s%016" PRIx64, prefix, uid);
}

static void emit_result(em_t *e, const codec_result_t *r) {
    char id[48], req_id[48], body_id[48];
    hexid(id, sizeof id, "krill-", r->uid);
    hexid(req_id, sizeof req_id, "krill-req-", r->uid);
    bool chat = r->kind == CODEC_KIND_CHAT;
    hexid(body_id, sizeof body_id, chat ? "chatcmpl-" : "cmpl-", r->uid);
    bool ok = r->status_code == 200;

    em_map(e, 5);
    em_key(e, "id"), em_cstr(e, id);
    em_key(e, "custom_id"), em_cstr(e, r->custom_id);
    em_key(e, "response");
    em_map(e, 3);
    em_key(e, "status_code"), em_int(e, r->status_code);
    em_key(e, "request_id"), em_cstr(e, req_id);
    em_key(e, "body");
    if (ok) {
        em_map(e, 6);
        em_key(e, "id"), em_cstr(e, body_id);
        em_key(e, "object"), em_cstr(e, chat ? "chat.completion" : "text_completion");
        em_key(e, "created"), em_int(e, r->created);
        em_key(e, "model"), em_cstr(e, r->model ? r->model : "");
        em_key(e, "choices");
        if (r->n_choices > 0) {
            em_array(e, (size_t)r->n_choices);
            for (int i = 0; i < r->n_choices; i++) emit_choice(e, &r->choices[i], i, chat);
        } else {
            codec_choice_t one = {.text = r->text, .text_len = r->text_len, .finish_reason = r->finish_reason};
            em_array(e, 1);
            emit_choice(e, &one, 0, chat);
        }
        em_end(e, ']'); /* choices */
        em_key(e, "usage");
        em_map(e, 4);
        em_key(e, "prompt_tokens"), em_int(e, r->prompt_tokens);
        em_key(e, "completion_tokens"), em_int(e, r->completion_tokens);
        em_key(e, "total_tokens"), em_int(e, (int64_t)r->prompt_tokens + r->completion_tokens);
        em_key(e, "prompt_tokens_details");
        em_map(e, 1);
        em_key(e, "cached_tokens"), em_int(e, r->cached_tokens);
        em_end(e, '}');
        em_end(e, '}');
        em_end(e, '}'); /* body */
    } else {
        codec_error_t code = r->error != CODEC_ERR_NONE ? r->error : CODEC_ERR_INTERNAL;
        em_map(e, 1);
        em_key(e, "error");
        em_map(e, 4);
        em_key(e, "message"), em_cstr(e, r->error_message ? r->error_message : codec_error_name(code));
        em_key(e, "type"), em_cstr(e, r->status_code >= 500 ? "server_error" : "invalid_request_error");
        em_key(e, "param"), em_cstr(e, r->error_param);
        em_key(e, "code"), em_cstr(e, codec_error_name(code));
        em_end(e, '}');
        em_end(e, '}');
    }
    em_end(e, '}'); /* response */
    em_key(e, "error"), em_nil(e);
    em_key(e, "krill");
    em_map(e, 4);
    em_key(e, "worker"), em_cstr(e, r->worker ? r->worker : "");
    em_key(e, "queue_ms"), em_ms(e, r->queue_ms);
    em_key(e, "ttft_ms"), em_ms(e, r->ttft_ms);
    em_key(e, "total_ms"), em_ms(e, r->total_ms);
    em_end(e, '}');
    em_end(e, '}');
}

int codec_encode_result(const codec_result_t *r, buf_t *out, char *err, size_t errlen) {
    if (!r || !out || !r->custom_id) {
        err_set(err, errlen, "codec_encode_result: a result needs a custom_id");
        return -1;
    }
    em_t e = {0};
    e.mp = r->format == CODEC_FMT_MSGPACK;
    e.out = out;
    out->len = 0;
    if (e.mp) msgpack_packer_init(&e.pk, &e, em_write_cb);
    emit_result(&e, r);
    if (e.oom || out->len == 0) {
        err_set(err, errlen, "out of memory encoding a result");
        return -1;
    }
    CHECK(e.depth == 0);
    return 0;
}
