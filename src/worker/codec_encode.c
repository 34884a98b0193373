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
    int n[8];       /* items written at each open level (JSON) */
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
    CHECK(e->depth < 8);
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
        em_array(e, 1);
        em_map(e, 4);
        em_key(e, "index"), em_int(e, 0);
        if (chat) {
            em_key(e, "message");
            em_map(e, 2);
            em_key(e, "role"), em_cstr(e, "assistant");
            em_key(e, "content"), em_str(e, r->text ? r->text : "", r->text ? r->text_len : 0);
            em_end(e, '}');
        } else {
            em_key(e, "text"), em_str(e, r->text ? r->text : "", r->text ? r->text_len : 0);
        }
        em_key(e, "logprobs"), em_nil(e);
        em_key(e, "finish_reason"), em_cstr(e, r->finish_reason ? r->finish_reason : "stop");
        em_end(e, '}'); /* choice */
        em_end(e, ']'); /* choices */
        em_key(e, "usage");
        em_map(e, 3);
        em_key(e, "prompt_tokens"), em_int(e, r->prompt_tokens);
        em_key(e, "completion_tokens"), em_int(e, r->completion_tokens);
        em_key(e, "total_tokens"), em_int(e, (int64_t)r->prompt_tokens + r->completion_tokens);
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
