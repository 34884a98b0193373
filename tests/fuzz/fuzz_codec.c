/* fuzz_codec.c — libFuzzer target for the request decoder and the result encoder.
 *
 * Decodes arbitrary bytes, checks the decoder's promises (an OK request is in range,
 * an error has a code and a message), encodes a result for whatever decoded (in both
 * formats), and runs the converters. When a JSON request decodes, its msgpack
 * conversion must decode to the same status, code and param. Any broken promise
 * aborts, so libFuzzer reports it as a crash.
 *
 *   make fuzz && build/fuzz/fuzz_codec -max_total_time=300 -rss_limit_mb=2048 tests/fuzz/corpus/codec */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

#define PROMISE(c)                                                              \
    do {                                                                        \
        if (!(c)) {                                                             \
            fprintf(stderr, "broken promise: %s (%s:%d)\n", #c, __FILE__, __LINE__); \
            abort();                                                            \
        }                                                                       \
    } while (0)

static void check_request(const codec_request_t *r, const codec_limits_t *lim) {
    PROMISE(r->id != NULL);
    if (r->status != CODEC_OK) {
        PROMISE(r->error != CODEC_ERR_NONE);
        PROMISE(r->status_code == 400 || r->status_code == 404 ||
                (r->status_code == 500 && r->error == CODEC_ERR_INTERNAL)); /* out of memory */
        PROMISE(r->error_message[0] != 0);
        PROMISE((r->status == CODEC_UNDECODABLE) == (r->dlq != CODEC_DLQ_NONE));
        return;
    }
    PROMISE(r->max_tokens >= 1 && r->max_tokens <= lim->max_tokens_cap);
    PROMISE(r->min_tokens >= 0 && r->min_tokens <= r->max_tokens);
    PROMISE(r->temperature >= 0 && r->temperature <= 2);
    PROMISE(r->top_p > 0 && r->top_p <= 1);
    PROMISE(r->top_k >= 0);
    PROMISE(r->min_p >= 0 && r->min_p <= 1);
    PROMISE(r->presence_penalty >= -2 && r->presence_penalty <= 2);
    PROMISE(r->frequency_penalty >= -2 && r->frequency_penalty <= 2);
    PROMISE(r->n_stop >= 0 && r->n_stop <= CODEC_MAX_STOP);
    for (int i = 0; i < r->n_stop; i++) PROMISE(r->stop[i] && r->stop[i][0]);
    if (r->kind == CODEC_KIND_CHAT) {
        PROMISE(r->n_messages >= 1);
        for (size_t i = 0; i < r->n_messages; i++) {
            PROMISE(r->messages[i].role && r->messages[i].content);
            PROMISE(strlen(r->messages[i].content) == r->messages[i].content_len);
        }
    } else {
        PROMISE((r->prompt != NULL) != (r->prompt_ids != NULL));
        if (r->prompt) PROMISE(r->prompt_len > 0 && strlen(r->prompt) == r->prompt_len);
        else PROMISE(r->n_prompt_ids >= 1);
        for (int i = 0; i < r->n_prompt_ids; i++) PROMISE(r->prompt_ids[i] >= 0);
    }
}

static void encode_for(const codec_request_t *r, buf_t *out) {
    char err[128];
    codec_result_t res = {0};
    if (r->status != CODEC_OK) {
        codec_result_from_request_error(r, &res);
    } else {
        res.custom_id = r->id;
        res.kind = r->kind;
        res.status_code = 200;
        /* echo some request text: arbitrary (valid) UTF-8 through the encoder */
        if (r->kind == CODEC_KIND_CHAT) res.text = r->messages[r->n_messages - 1].content, res.text_len = r->messages[r->n_messages - 1].content_len;
        else if (r->prompt) res.text = r->prompt, res.text_len = r->prompt_len;
        res.finish_reason = "length";
        res.model = r->model;
        res.prompt_tokens = r->max_tokens;
        res.completion_tokens = r->min_tokens;
    }
    res.uid = 7;
    res.worker = r->id; /* any string */
    res.queue_ms = r->temperature;
    res.ttft_ms = -1;
    res.total_ms = r->top_p;
    for (int f = 0; f < 2; f++) {
        res.format = (codec_format_t)f;
        PROMISE(codec_encode_result(&res, out, err, sizeof err) == 0);
        /* the msgpack result converts to JSON (valid UTF-8, one map) */
        if (f == 1) {
            buf_t j = {0};
            PROMISE(codec_msgpack_to_json(out->data, out->len, &j, err, sizeof err) == 0);
            buf_free(&j);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    codec_limits_t lim;
    codec_limits_defaults(&lim);
    lim.max_message_bytes = 1 << 16;
    static const char *const names[] = {"m"};
    if (size > 0 && (data[0] & 1)) {
        lim.model_names = names;
        lim.n_model_names = 1;
    }
    codec_request_t r = {0}, r2 = {0};
    buf_t out = {0}, conv = {0}, back = {0};
    char err[256];

    codec_decode(&lim, data, size, "fuzz:0:0", &r);
    check_request(&r, &lim);
    encode_for(&r, &out);

    if (codec_detect(data, size) == 0) {
        if (codec_json_to_msgpack((const char *)data, size, &conv, err, sizeof err) == 0) {
            /* anything jansson accepted has a msgpack form that converts back */
            PROMISE(codec_msgpack_to_json(conv.data, conv.len, &back, err, sizeof err) == 0);
            if (r.status != CODEC_UNDECODABLE && conv.len <= lim.max_message_bytes) {
                codec_decode(&lim, conv.data, conv.len, "fuzz:0:0", &r2);
                check_request(&r2, &lim);
                PROMISE(r2.status == r.status);
                PROMISE(r2.error == r.error);
                PROMISE((r.param == NULL) == (r2.param == NULL));
                if (r.param) PROMISE(strcmp(r.param, r2.param) == 0);
                PROMISE(strcmp(r.id, r2.id) == 0);
            }
        }
    } else {
        if (codec_msgpack_to_json(data, size, &conv, err, sizeof err) == 0)
            PROMISE(codec_json_to_msgpack(conv.data, conv.len, &back, err, sizeof err) == 0);
    }
    codec_request_clear(&r);
    codec_request_clear(&r2);
    buf_free(&out);
    buf_free(&conv);
    buf_free(&back);
    return 0;
}
