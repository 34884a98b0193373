/* codec.c — the codec's shared vocabulary (codec.h): error and DLQ names, the HTTP
 * status of each error code, and the default limits. The codec's jobs live beside it:
 * codec_scan.c (detection, pre-scans), codec_value.c (field reads over both formats),
 * codec_decode.c (the request walk), codec_encode.c (results), codec_convert.c
 * (JSON <-> msgpack for the tools). */
#include "codec.h"

#include <string.h>

const char *codec_error_name(codec_error_t e) {
    switch (e) {
    case CODEC_ERR_NONE: return "";
    case CODEC_ERR_INVALID_JSON: return "invalid_json";
    case CODEC_ERR_INVALID_MSGPACK: return "invalid_msgpack";
    case CODEC_ERR_MISSING_FIELD: return "missing_field";
    case CODEC_ERR_INVALID_TYPE: return "invalid_type";
    case CODEC_ERR_INVALID_VALUE: return "invalid_value";
    case CODEC_ERR_UNSUPPORTED: return "unsupported";
    case CODEC_ERR_CONTEXT_LENGTH_EXCEEDED: return "context_length_exceeded";
    case CODEC_ERR_MODEL_NOT_FOUND: return "model_not_found";
    case CODEC_ERR_INTERNAL: return "internal_error";
    case CODEC_ERR_RESULT_TOO_LARGE: return "result_too_large";
    }
    return "internal_error";
}

int codec_error_status(codec_error_t e) {
    switch (e) {
    case CODEC_ERR_NONE: return 200;
    case CODEC_ERR_MODEL_NOT_FOUND: return 404;
    case CODEC_ERR_INTERNAL: return 500;
    default: return 400;
    }
}

const char *codec_dlq_name(codec_dlq_t d) {
    switch (d) {
    case CODEC_DLQ_NONE: return "";
    case CODEC_DLQ_MESSAGE_TOO_LARGE: return "message_too_large";
    case CODEC_DLQ_NESTING_TOO_DEEP: return "nesting_too_deep";
    case CODEC_DLQ_INVALID_JSON: return "invalid_json";
    case CODEC_DLQ_INVALID_MSGPACK: return "invalid_msgpack";
    case CODEC_DLQ_NOT_AN_OBJECT: return "not_an_object";
    }
    return "not_an_object";
}

void codec_limits_defaults(codec_limits_t *l) {
    memset(l, 0, sizeof *l);
    l->max_message_bytes = 1 << 20;
    l->max_tokens_cap = 4096;
    l->default_max_tokens = 256;
    l->max_n = 8;
}
