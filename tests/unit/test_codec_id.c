/* test_codec_id.c — the request id rules of the codec (issue 16): a custom_id/id key
 * given twice, or null, is answered 400 under the fallback id, never under one of the
 * values; the id scan of undecodable messages finds no id when its key is given twice.
 * JSON and msgpack (converted with codec_json_to_msgpack, or packed with msgpack-c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <msgpack.h>

#include "codec.h"

static codec_limits_t lim;

/* Decodes buf: status st (CODEC_INVALID: answered; CODEC_UNDECODABLE: DLQ), error code,
 * param (NULL: don't care) and the id the answer goes under (has_custom_id when it is
 * not the fallback "t:0:42"). */
static void expect(const void *buf, size_t len, codec_status_t st, const char *code, const char *param,
                   const char *id, const char *fmt) {
    codec_request_t r = {0};
    codec_decode(&lim, buf, len, "t:0:42", &r);
    if (r.status != st || strcmp(codec_error_name(r.error), code) != 0 ||
        (param && (!r.param || strcmp(r.param, param) != 0)) || strcmp(r.id, id) != 0)
        fail_msg("[%s] %.*s: got status %d code %s param %s id %s (%s), want %d %s param %s id %s", fmt, (int)len,
                 (const char *)buf, r.status, codec_error_name(r.error), r.param ? r.param : "(null)", r.id,
                 r.error_message, st, code, param ? param : "-", id);
    assert_int_equal(r.status_code, 400);
    assert_int_equal(r.has_custom_id, strcmp(id, "t:0:42") != 0);
    codec_request_clear(&r);
}

#define MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]"

static void test_id_twice_or_null(void **state) {
    (void)state;
    static const struct {
        const char *json, *code, *param;
        bool msgpack; /* the same as msgpack (JSON with a key twice cannot be converted) */
    } cases[] = {
        {"{\"custom_id\":\"a\",\"custom_id\":\"b\"," MSGS "}", "invalid_json", "custom_id", false},
        {"{\"custom_id\":\"a\"," MSGS ",\"custom_id\":\"a\"}", "invalid_json", "custom_id", false},
        {"{\"id\":\"a\",\"id\":\"b\"," MSGS "}", "invalid_json", "id", false},
        {"{\"custom_id\":\"a\",\"custom_id\":\"b\",\"body\":{\"prompt\":\"x\",\"prompt\":\"y\"}}", "invalid_json",
         "custom_id", false},
        {"{\"custom_id\":null," MSGS "}", "invalid_type", "custom_id", true},
        {"{\"custom_id\":null,\"id\":\"x\"," MSGS "}", "invalid_type", "custom_id", true},
        {"{\"id\":null," MSGS "}", "invalid_type", "id", true},
        {"{\"custom_id\":null,\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\"x\"}}",
         "invalid_type", "custom_id", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *j = cases[i].json;
        expect(j, strlen(j), CODEC_INVALID, cases[i].code, cases[i].param, "t:0:42", "json");
        if (!cases[i].msgpack) continue;
        buf_t b = {0};
        char err[256];
        if (codec_json_to_msgpack(j, strlen(j), &b, err, sizeof err) != 0) fail_msg("json_to_msgpack: %s", err);
        expect(b.data, b.len, CODEC_INVALID, cases[i].code, cases[i].param, "t:0:42", "msgpack");
        buf_free(&b);
    }
    /* msgpack maps with the id key twice */
    static const char *const keys[] = {"custom_id", "id"};
    for (int k = 0; k < 2; k++) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 3);
        msgpack_pack_str_with_body(&pk, keys[k], strlen(keys[k])), msgpack_pack_str_with_body(&pk, "a", 1);
        msgpack_pack_str_with_body(&pk, "prompt", 6), msgpack_pack_str_with_body(&pk, "p", 1);
        msgpack_pack_str_with_body(&pk, keys[k], strlen(keys[k])), msgpack_pack_str_with_body(&pk, "b", 1);
        expect(sb.data, sb.size, CODEC_INVALID, "invalid_msgpack", keys[k], "t:0:42", "msgpack");
        /* undecodable (one byte short): the scan finds no id to answer under */
        expect(sb.data, sb.size - 1, CODEC_UNDECODABLE, "invalid_msgpack", NULL, "t:0:42", "msgpack");
        msgpack_sbuffer_destroy(&sb);
    }
    /* undecodable JSON: a custom_id given twice is no id; given once it still is */
    const char *trunc2 = "{\"custom_id\":\"a\",\"custom_id\":\"b\",\"prompt\":\"x";
    expect(trunc2, strlen(trunc2), CODEC_UNDECODABLE, "invalid_json", NULL, "t:0:42", "json");
    const char *trunc1 = "{\"custom_id\":\"a\",\"id\":\"b\",\"prompt\":\"x";
    expect(trunc1, strlen(trunc1), CODEC_UNDECODABLE, "invalid_json", NULL, "a", "json");
    /* a duplicate elsewhere is still answered under the (single, here escaped) id */
    const char *dup = "{\"custom_id\":\"\\u0041b\"," MSGS ",\"stream\":false,\"stream\":true}";
    expect(dup, strlen(dup), CODEC_INVALID, "invalid_json", NULL, "Ab", "json");
}

int main(void) {
    codec_limits_defaults(&lim);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_twice_or_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
