/* test_codec.c — request decoding (every error code, JSON and msgpack), the DLQ
 * split, result encoding, the format converters, and a speed measurement.
 *
 * msgpack inputs come two ways: JSON cases are converted with
 * codec_json_to_msgpack (itself checked against bytes packed directly with
 * msgpack-c), and msgpack-only cases (invalid UTF-8, NUL, bin, non-string and
 * duplicate keys, truncation, bombs) are packed by hand with msgpack-c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <msgpack.h>

#include "codec.h"
#include "pipeline.h"

static codec_limits_t lim;

/* ---------------------------------------------------------------- helpers */

static void decode_str(const char *s, codec_request_t *r) {
    codec_decode(&lim, s, strlen(s), "t:0:42", r);
}

static void to_msgpack(const char *json, buf_t *b) {
    char err[256];
    if (codec_json_to_msgpack(json, strlen(json), b, err, sizeof err) != 0) fail_msg("json_to_msgpack: %s (%s)", err, json);
}

typedef struct {
    const char *json;
    codec_status_t status;
    const char *code;   /* result code, "" for OK */
    const char *param;  /* NULL = don't care / none */
    int http;           /* 0 = don't care */
} case_t;

static void check_case(const case_t *c, const codec_request_t *r, const char *fmt) {
    if (r->status != c->status || strcmp(codec_error_name(r->error), c->code) != 0)
        fail_msg("[%s] %s\n  got status %d code '%s' msg '%s', want status %d code '%s'", fmt, c->json, r->status,
                 codec_error_name(r->error), r->error_message, c->status, c->code);
    if (c->param && (!r->param || strcmp(r->param, c->param) != 0))
        fail_msg("[%s] %s\n  got param '%s', want '%s' (%s)", fmt, c->json, r->param ? r->param : "(null)", c->param,
                 r->error_message);
    if (c->http && r->status_code != c->http)
        fail_msg("[%s] %s\n  got http %d want %d", fmt, c->json, r->status_code, c->http);
    if (r->status != CODEC_OK) {
        assert_true(strlen(r->error_message) > 5);
        assert_non_null(r->id);
    }
}

/* Decodes the JSON text, and (when it is valid JSON) its msgpack form: same answer. */
static void run_case(const case_t *c) {
    codec_request_t r = {0};
    decode_str(c->json, &r);
    check_case(c, &r, "json");
    assert_int_equal(r.format, CODEC_FMT_JSON);
    codec_request_clear(&r);
    json_t *j = json_loads(c->json, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
    if (!j) return;
    json_decref(j);
    buf_t b = {0};
    to_msgpack(c->json, &b);
    codec_decode(&lim, b.data, b.len, "t:0:42", &r);
    check_case(c, &r, "msgpack");
    assert_int_equal(r.format, CODEC_FMT_MSGPACK);
    codec_request_clear(&r);
    buf_free(&b);
}

#define OK_ {CODEC_OK, "", NULL, 0}
#define CHAT(body) "{\"custom_id\":\"c1\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":" body "}"
#define MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]"
#define BARE(extra) "{" MSGS extra "}"

/* ---------------------------------------------------------------- valid requests */

static void test_valid_chat(void **state) {
    (void)state;
    const char *s = "{\"custom_id\": \"req-42\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\",\n"
                    " \"body\": {\"model\": \"smollm2-135m-instruct\", \"messages\": [\n"
                    "   {\"role\": \"system\", \"content\": \"Be brief.\"},\n"
                    "   {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"Hello, \"},"
                    " {\"type\": \"text\", \"text\": \"w\\u00f6rld\"}]}],\n"
                    "  \"max_tokens\": 64, \"temperature\": 0.7, \"top_p\": 0.95, \"top_k\": -1, \"min_p\": 0.05,"
                    " \"seed\": 7, \"stop\": [\"\\n\\n\", \"END\"], \"presence_penalty\": -0.5, \"frequency_penalty\": 1,"
                    " \"n\": 1, \"stream\": false, \"ignore_eos\": true, \"min_tokens\": 3, \"priority\": -2,"
                    " \"logprobs\": true, \"user\": \"x\", \"metadata\": {\"a\": \"b\"}}}";
    for (int fmt = 0; fmt < 2; fmt++) {
        codec_request_t r = {0};
        buf_t b = {0};
        if (fmt) {
            to_msgpack(s, &b);
            codec_decode(&lim, b.data, b.len, "t:0:1", &r);
        } else {
            decode_str(s, &r);
        }
        if (r.status != CODEC_OK) fail_msg("%s", r.error_message);
        assert_int_equal(r.format, fmt ? CODEC_FMT_MSGPACK : CODEC_FMT_JSON);
        assert_string_equal(r.id, "req-42");
        assert_true(r.has_custom_id);
        assert_int_equal(r.kind, CODEC_KIND_CHAT);
        assert_string_equal(r.model, "smollm2-135m-instruct");
        assert_int_equal(r.n_messages, 2);
        assert_string_equal(r.messages[0].role, "system");
        assert_string_equal(r.messages[0].content, "Be brief.");
        assert_string_equal(r.messages[1].role, "user");
        assert_string_equal(r.messages[1].content, "Hello, w\xc3\xb6rld"); /* parts concatenated */
        assert_int_equal(r.messages[1].content_len, strlen("Hello, w\xc3\xb6rld"));
        assert_int_equal(r.max_tokens, 64);
        assert_true(r.has_max_tokens);
        assert_true(fabs(r.temperature - 0.7) < 1e-12);
        assert_true(fabs(r.top_p - 0.95) < 1e-12);
        assert_int_equal(r.top_k, 0);
        assert_true(fabs(r.min_p - 0.05) < 1e-12);
        assert_true(r.has_seed);
        assert_int_equal(r.seed, 7);
        assert_int_equal(r.n_stop, 2);
        assert_string_equal(r.stop[0], "\n\n");
        assert_string_equal(r.stop[1], "END");
        assert_true(fabs(r.presence_penalty + 0.5) < 1e-12);
        assert_true(fabs(r.frequency_penalty - 1) < 1e-12);
        assert_true(r.ignore_eos);
        assert_int_equal(r.min_tokens, 3);
        assert_int_equal(r.priority, -2);
        engine_request_t er;
        memset(&er, 0, sizeof er);
        pipeline_request_to_engine(&r, &er);
        assert_int_equal(er.max_tokens, 64);
        assert_int_equal(er.min_tokens, 3);
        assert_true(er.ignore_eos);
        assert_true(fabsf(er.temperature - 0.7f) < 1e-6f);
        assert_int_equal(er.n_stop, 2);
        assert_string_equal(er.stop[1], "END");
        assert_null(er.stop[2]);
        assert_true(er.has_seed);
        assert_int_equal(er.seed, 7);
        codec_request_clear(&r);
        buf_free(&b);
    }
}

static void test_valid_completion_and_defaults(void **state) {
    (void)state;
    codec_request_t r = {0};
    decode_str("  \n{\"prompt\": \"Once upon a time\", \"id\": \"abc\"}", &r);
    assert_int_equal(r.status, CODEC_OK);
    assert_int_equal(r.kind, CODEC_KIND_COMPLETION);
    assert_string_equal(r.prompt, "Once upon a time");
    assert_int_equal(r.prompt_len, 16);
    assert_string_equal(r.id, "abc"); /* id when no custom_id */
    assert_true(r.has_custom_id);
    assert_int_equal(r.max_tokens, lim.default_max_tokens);
    assert_false(r.has_max_tokens);
    assert_true(r.temperature == 1.0 && r.top_p == 1.0 && r.min_p == 0 && r.top_k == 0);
    assert_false(r.has_seed);
    assert_int_equal(r.n_stop, 0);
    assert_null(r.model);

    /* no id at all: the caller's fallback */
    decode_str("{\"url\": \"/v1/completions\", \"body\": {\"prompt\": [\"x\"], \"max_completion_tokens\": 5,"
               " \"max_tokens\": 5, \"stop\": \"\\n\", \"seed\": -1, \"temperature\": null}}", &r);
    assert_int_equal(r.status, CODEC_OK);
    assert_string_equal(r.id, "t:0:42");
    assert_false(r.has_custom_id);
    assert_string_equal(r.prompt, "x");
    assert_int_equal(r.max_tokens, 5);
    assert_int_equal(r.n_stop, 1);
    assert_string_equal(r.stop[0], "\n");
    assert_true(r.has_seed);
    assert_true(r.seed == UINT64_MAX);
    assert_true(r.temperature == 1.0); /* null = not given */

    /* token-id prompts */
    decode_str("{\"prompt\": [1, 2, 2147483647]}", &r);
    assert_int_equal(r.status, CODEC_OK);
    assert_null(r.prompt);
    assert_int_equal(r.n_prompt_ids, 3);
    assert_int_equal(r.prompt_ids[2], 2147483647);
    decode_str("{\"prompt\": [[5, 6]]}", &r);
    assert_int_equal(r.status, CODEC_OK);
    assert_int_equal(r.n_prompt_ids, 2);
    assert_int_equal(r.prompt_ids[1], 6);
    codec_request_clear(&r);
    codec_request_clear(NULL);
}

/* ---------------------------------------------------------------- every error code */

static void test_error_table(void **state) {
    (void)state;
    static const case_t cases[] = {
        /* missing_field */
        {"{}", CODEC_INVALID, "missing_field", "messages", 400},
        {"{\"model\":\"m\",\"temperature\":1}", CODEC_INVALID, "missing_field", "messages", 400},
        {CHAT("{\"prompt\":\"x\"}"), CODEC_INVALID, "missing_field", "body.messages", 400},
        {"{\"url\":\"/v1/completions\",\"body\":{" MSGS "}}", CODEC_INVALID, "missing_field", "body.prompt", 400},
        {"{\"url\":\"/v1/completions\",\"method\":\"POST\"}", CODEC_INVALID, "missing_field", "body", 400},
        {BARE(",\"messages2\":1") , CODEC_INVALID, "unsupported", "messages2", 400},
        {"{\"messages\":[{\"content\":\"x\"}]}", CODEC_INVALID, "missing_field", "messages[0].role", 400},
        {"{\"messages\":[{\"role\":\"user\"}]}", CODEC_INVALID, "missing_field", "messages[0].content", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":null}]}", CODEC_INVALID, "missing_field", "messages[0].content", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"a\"}]}]}", CODEC_INVALID, "missing_field",
         "messages[0].content[0].type", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", CODEC_INVALID, "missing_field",
         "messages[0].content[0].text", 400},
        /* invalid_type */
        {"{\"messages\":\"hi\"}", CODEC_INVALID, "invalid_type", "messages", 400},
        {"{\"messages\":[\"hi\"]}", CODEC_INVALID, "invalid_type", "messages[0]", 400},
        {"{\"messages\":[{\"role\":1,\"content\":\"x\"}]}", CODEC_INVALID, "invalid_type", "messages[0].role", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":5}]}", CODEC_INVALID, "invalid_type", "messages[0].content", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[\"a\"]}]}", CODEC_INVALID, "invalid_type", "messages[0].content[0]", 400},
        {"{\"prompt\":5}", CODEC_INVALID, "invalid_type", "prompt", 400},
        {"{\"prompt\":[true]}", CODEC_INVALID, "invalid_type", "prompt[0]", 400},
        {"{\"prompt\":[1,\"a\"]}", CODEC_INVALID, "invalid_type", "prompt[1]", 400},
        {"{\"custom_id\":42," MSGS "}", CODEC_INVALID, "invalid_type", "custom_id", 400},
        {"{\"url\":\"/v1/chat/completions\",\"body\":[1]}", CODEC_INVALID, "invalid_type", "body", 400},
        {"{\"url\":5,\"body\":{" MSGS "}}", CODEC_INVALID, "invalid_type", "url", 400},
        {"{\"model\":7," MSGS "}", CODEC_INVALID, "invalid_type", "model", 400},
        {BARE(",\"max_tokens\":\"64\""), CODEC_INVALID, "invalid_type", "max_tokens", 400},
        {BARE(",\"max_tokens\":64.5"), CODEC_INVALID, "invalid_type", "max_tokens", 400},
        {BARE(",\"max_tokens\":64.0"), CODEC_INVALID, "invalid_type", "max_tokens", 400},
        {BARE(",\"temperature\":\"hot\""), CODEC_INVALID, "invalid_type", "temperature", 400},
        {BARE(",\"temperature\":true"), CODEC_INVALID, "invalid_type", "temperature", 400},
        {BARE(",\"top_k\":1.5"), CODEC_INVALID, "invalid_type", "top_k", 400},
        {BARE(",\"seed\":1.5"), CODEC_INVALID, "invalid_type", "seed", 400},
        {BARE(",\"stop\":3"), CODEC_INVALID, "invalid_type", "stop", 400},
        {BARE(",\"stop\":[\"a\",1]"), CODEC_INVALID, "invalid_type", "stop[1]", 400},
        {BARE(",\"n\":\"1\""), CODEC_INVALID, "invalid_type", "n", 400},
        {BARE(",\"stream\":\"no\""), CODEC_INVALID, "invalid_type", "stream", 400},
        {BARE(",\"stream\":0"), CODEC_INVALID, "invalid_type", "stream", 400},
        {BARE(",\"ignore_eos\":\"yes\""), CODEC_INVALID, "invalid_type", "ignore_eos", 400},
        {BARE(",\"priority\":[1]"), CODEC_INVALID, "invalid_type", "priority", 400},
        /* invalid_value */
        {"{\"messages\":[]}", CODEC_INVALID, "invalid_value", "messages", 400},
        {"{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", CODEC_INVALID, "invalid_value", "messages[0].role", 400},
        {"{\"prompt\":\"\"}", CODEC_INVALID, "invalid_value", "prompt", 400},
        {"{\"prompt\":[]}", CODEC_INVALID, "invalid_value", "prompt", 400},
        {"{\"prompt\":[\"\"]}", CODEC_INVALID, "invalid_value", "prompt[0]", 400},
        {"{\"prompt\":[[]]}", CODEC_INVALID, "invalid_value", "prompt[0]", 400},
        {"{\"prompt\":[-1]}", CODEC_INVALID, "invalid_value", "prompt[0]", 400},
        {"{\"prompt\":[2147483648]}", CODEC_INVALID, "invalid_value", "prompt[0]", 400},
        {"{\"prompt\":\"x\"," MSGS "}", CODEC_INVALID, "invalid_value", "prompt", 400},
        {"{\"custom_id\":\"\"," MSGS "}", CODEC_INVALID, "invalid_value", "custom_id", 400},
        {"{\"custom_id\":\"a\\u0000\"," MSGS "}", CODEC_INVALID, "invalid_value", "custom_id", 400},
        {"{\"prompt\":\"a\\u0000b\"}", CODEC_INVALID, "invalid_value", "prompt", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"\\u0000\"}]}]}",
         CODEC_INVALID, "invalid_value", "messages[0].content[0].text", 400},
        {"{\"method\":\"GET\",\"url\":\"/v1/chat/completions\",\"body\":{" MSGS "}}", CODEC_INVALID, "invalid_value", "method", 400},
        {BARE(",\"max_tokens\":-1"), CODEC_INVALID, "invalid_value", "max_tokens", 400},
        {BARE(",\"max_tokens\":0"), CODEC_INVALID, "invalid_value", "max_tokens", 400},
        {BARE(",\"max_tokens\":4097"), CODEC_INVALID, "invalid_value", "max_tokens", 400},
        {BARE(",\"max_tokens\":9223372036854775807"), CODEC_INVALID, "invalid_value", "max_tokens", 400},
        {BARE(",\"max_completion_tokens\":-5"), CODEC_INVALID, "invalid_value", "max_completion_tokens", 400},
        {BARE(",\"max_tokens\":5,\"max_completion_tokens\":6"), CODEC_INVALID, "invalid_value", "max_completion_tokens", 400},
        {BARE(",\"temperature\":2.5"), CODEC_INVALID, "invalid_value", "temperature", 400},
        {BARE(",\"temperature\":-0.1"), CODEC_INVALID, "invalid_value", "temperature", 400},
        {BARE(",\"temperature\":1e308"), CODEC_INVALID, "invalid_value", "temperature", 400},
        {BARE(",\"top_p\":0"), CODEC_INVALID, "invalid_value", "top_p", 400},
        {BARE(",\"top_p\":1.01"), CODEC_INVALID, "invalid_value", "top_p", 400},
        {BARE(",\"top_k\":-2"), CODEC_INVALID, "invalid_value", "top_k", 400},
        {BARE(",\"min_p\":1.1"), CODEC_INVALID, "invalid_value", "min_p", 400},
        {BARE(",\"presence_penalty\":3"), CODEC_INVALID, "invalid_value", "presence_penalty", 400},
        {BARE(",\"frequency_penalty\":-2.01"), CODEC_INVALID, "invalid_value", "frequency_penalty", 400},
        {BARE(",\"stop\":\"\""), CODEC_INVALID, "invalid_value", "stop", 400},
        {BARE(",\"stop\":[\"a\",\"\"]"), CODEC_INVALID, "invalid_value", "stop[1]", 400},
        {BARE(",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]"), CODEC_INVALID, "invalid_value", "stop", 400},
        {BARE(",\"n\":0"), CODEC_INVALID, "invalid_value", "n", 400},
        {BARE(",\"min_tokens\":-1"), CODEC_INVALID, "invalid_value", "min_tokens", 400},
        {BARE(",\"max_tokens\":10,\"min_tokens\":11"), CODEC_INVALID, "invalid_value", "min_tokens", 400},
        {BARE(",\"priority\":1099511627776"), CODEC_INVALID, "invalid_value", "priority", 400},
        /* unsupported */
        {BARE(",\"n\":2"), CODEC_OK, "", NULL, 0},
        {BARE(",\"n\":9"), CODEC_INVALID, "invalid_value", "n", 400},
        {BARE(",\"stream\":true"), CODEC_INVALID, "unsupported", "stream", 400},
        {"{\"prompt\":[\"a\",\"b\"]}", CODEC_INVALID, "unsupported", "prompt", 400},
        {"{\"prompt\":[[1],[2]]}", CODEC_INVALID, "unsupported", "prompt", 400},
        {"{\"url\":\"/v1/embeddings\",\"body\":{\"input\":\"x\"}}", CODEC_INVALID, "unsupported", "url", 400},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}",
         CODEC_INVALID, "unsupported", "messages[0].content[0].type", 400},
        /* model_not_found (404) */
        {"{\"model\":\"gpt-4o\"," MSGS "}", CODEC_INVALID, "model_not_found", "model", 404},
        {CHAT("{\"model\":\"nope\"," MSGS "}"), CODEC_INVALID, "model_not_found", "body.model", 404},
        /* fine */
        {"{\"model\":\"alias-b\"," MSGS "}", CODEC_OK, "", NULL, 0},
        {BARE(",\"temperature\":0,\"top_p\":1,\"top_k\":0,\"min_p\":1,\"max_tokens\":4096,\"n\":1,\"stream\":null"),
         CODEC_OK, "", NULL, 0},
        {BARE(",\"temperature\":2,\"presence_penalty\":-2,\"frequency_penalty\":2,\"stop\":[]"), CODEC_OK, "", NULL, 0},
        {"{\"messages\":[{\"role\":\"assistant\",\"content\":[]},{\"role\":\"tool\",\"content\":\"\"}]}", CODEC_OK, "", NULL, 0},
        /* the first error in a fixed order wins: the id and envelope before the body */
        {"{\"custom_id\":1,\"url\":\"/x\",\"body\":{}}", CODEC_INVALID, "invalid_type", "custom_id", 400},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case(&cases[i]);
    printf("%zu table cases, each as JSON and as msgpack\n", sizeof cases / sizeof *cases);
}

static void test_error_answer_keeps_id(void **state) {
    (void)state;
    codec_request_t r = {0};
    decode_str(CHAT("{" MSGS ",\"temperature\":9}"), &r);
    assert_int_equal(r.status, CODEC_INVALID);
    assert_string_equal(r.id, "c1");
    assert_true(r.has_custom_id);
    assert_int_equal(r.dlq, CODEC_DLQ_NONE);
    assert_non_null(strstr(r.error_message, "body.temperature"));
    assert_non_null(strstr(r.error_message, "[0, 2]"));
    codec_request_clear(&r);
}

/* JSON duplicate keys: decodes (no DLQ) but is answered 400 invalid_json under its id. */
static void test_duplicates(void **state) {
    (void)state;
    codec_request_t r = {0};
    decode_str("{\"custom_id\":\"d1\"," MSGS ",\"stream\":false,\"stream\":true}", &r);
    assert_int_equal(r.status, CODEC_INVALID);
    assert_string_equal(codec_error_name(r.error), "invalid_json");
    assert_string_equal(r.id, "d1");
    assert_int_equal(r.dlq, CODEC_DLQ_NONE);
    /* msgpack: a map with a key twice */
    buf_t b = {0};
    msgpack_packer pk;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "custom_id", 9), msgpack_pack_str_with_body(&pk, "d2", 2);
    msgpack_pack_str_with_body(&pk, "prompt", 6), msgpack_pack_str_with_body(&pk, "a", 1);
    msgpack_pack_str_with_body(&pk, "prompt", 6), msgpack_pack_str_with_body(&pk, "b", 1);
    codec_decode(&lim, sb.data, sb.size, "t:0:1", &r);
    assert_int_equal(r.status, CODEC_INVALID);
    assert_string_equal(codec_error_name(r.error), "invalid_msgpack");
    assert_string_equal(r.param, "prompt");
    assert_string_equal(r.id, "d2");
    msgpack_sbuffer_destroy(&sb);
    buf_free(&b);
    codec_request_clear(&r);
}

/* ---------------------------------------------------------------- undecodable -> DLQ */

static void expect_dlq(const void *buf, size_t len, codec_dlq_t dlq, const char *id) {
    codec_request_t r = {0};
    codec_decode(&lim, buf, len, "t:3:7", &r);
    if (r.status != CODEC_UNDECODABLE || r.dlq != dlq)
        fail_msg("got status %d dlq %s (%s), want dlq %s", r.status, codec_dlq_name(r.dlq), r.error_message,
                 codec_dlq_name(dlq));
    assert_int_equal(r.status_code, 400);
    assert_true(r.error == CODEC_ERR_INVALID_JSON || r.error == CODEC_ERR_INVALID_MSGPACK);
    assert_true(strlen(r.error_message) > 5);
    if (id) {
        assert_true(r.has_custom_id);
        assert_string_equal(r.id, id);
    } else {
        assert_false(r.has_custom_id);
        assert_string_equal(r.id, "t:3:7");
    }
    codec_request_clear(&r);
}

static void test_undecodable_json(void **state) {
    (void)state;
    expect_dlq("", 0, CODEC_DLQ_NOT_AN_OBJECT, NULL);
    expect_dlq(NULL, 0, CODEC_DLQ_NOT_AN_OBJECT, NULL);
    expect_dlq("   ", 3, CODEC_DLQ_NOT_AN_OBJECT, NULL);
    expect_dlq("[1,2]", 5, CODEC_DLQ_NOT_AN_OBJECT, NULL);
    expect_dlq("\"str\"", 5, CODEC_DLQ_NOT_AN_OBJECT, NULL);
    expect_dlq("hello world", 11, CODEC_DLQ_NOT_AN_OBJECT, NULL);
    const char *s;
    s = "{bad json}";
    expect_dlq(s, strlen(s), CODEC_DLQ_INVALID_JSON, NULL);
    /* truncated: custom_id still recognised -> DLQ + 400 result */
    s = "{\"custom_id\": \"trunc-1\", \"messages\": [{\"role\": \"user\", \"con";
    expect_dlq(s, strlen(s), CODEC_DLQ_INVALID_JSON, "trunc-1");
    s = "{\"custom_id\": \"x\", \"a\": 1} trailing";
    expect_dlq(s, strlen(s), CODEC_DLQ_INVALID_JSON, "x");
    /* only top-level, plain strings count */
    s = "{\"body\": {\"custom_id\": \"inner\"}, \"x\": ";
    expect_dlq(s, strlen(s), CODEC_DLQ_INVALID_JSON, NULL);
    s = "{\"custom_id\": \"esc\\\"aped\", ";
    expect_dlq(s, strlen(s), CODEC_DLQ_INVALID_JSON, NULL);
    s = "{\"note\": \"\\\"custom_id\\\": \\\"fake\\\"\", \"id\": \"real\", ";
    expect_dlq(s, strlen(s), CODEC_DLQ_INVALID_JSON, "real");
    /* invalid UTF-8 in JSON text is invalid JSON (RFC 8259): DLQ, answered when the id is readable */
    s = "{\"custom_id\": \"u1\", \"prompt\": \"bad \xff\xfe bytes\"}";
    expect_dlq(s, strlen(s), CODEC_DLQ_INVALID_JSON, "u1");
    s = "{\"custom_id\": \"u2\xc0\xaf\", \"prompt\": \"x\"}"; /* overlong in the id itself: not recognised */
    expect_dlq(s, strlen(s), CODEC_DLQ_INVALID_JSON, NULL);
    /* integers beyond int64 */
    s = "{\"custom_id\": \"big\", \"prompt\": \"a\", \"seed\": 99999999999999999999}";
    expect_dlq(s, strlen(s), CODEC_DLQ_INVALID_JSON, "big");
}

static void test_nesting(void **state) {
    (void)state;
    /* 100,000 deep: rejected by the pre-scan before jansson sees it */
    size_t depth = 100000;
    char *s = malloc(depth * 2 + 64);
    size_t n = (size_t)sprintf(s, "{\"custom_id\":\"deep\",\"a\":");
    for (size_t i = 0; i < depth; i++) s[n++] = '[';
    for (size_t i = 0; i < depth; i++) s[n++] = ']';
    s[n++] = '}';
    expect_dlq(s, n, CODEC_DLQ_NESTING_TOO_DEEP, "deep");
    /* unterminated too */
    expect_dlq(s, 24 + depth, CODEC_DLQ_NESTING_TOO_DEEP, "deep");
    /* the boundary: depth CODEC_MAX_DEPTH decodes, one more does not ("z" is accepted
     * and ignored through input.ignore_unknown_fields) */
    static const char *const ignore[] = {"z"};
    lim.ignore_fields = ignore;
    lim.n_ignore_fields = 1;
    for (int extra = 0; extra < 2; extra++) {
        int levels = CODEC_MAX_DEPTH - 1 + extra; /* arrays under the top object */
        n = (size_t)sprintf(s, "{\"prompt\":\"x\",\"z\":");
        for (int i = 0; i < levels; i++) s[n++] = '[';
        s[n++] = '1';
        for (int i = 0; i < levels; i++) s[n++] = ']';
        s[n++] = '}';
        s[n] = 0;
        codec_request_t r = {0};
        codec_decode(&lim, s, n, "t:0:0", &r);
        assert_int_equal(r.status, extra ? CODEC_UNDECODABLE : CODEC_OK);
        codec_request_clear(&r);
        if (!extra) { /* the same in msgpack */
            buf_t b = {0};
            to_msgpack(s, &b);
            codec_decode(&lim, b.data, b.len, "t:0:0", &r);
            assert_int_equal(r.status, CODEC_OK);
            /* one more level, packed by hand: 0x91 = array of 1 */
            buf_t b2 = {0};
            b2.data = malloc(b.len + 1);
            /* find the innermost 0x01 and wrap it */
            size_t at = 0;
            for (size_t i = 0; i < b.len; i++)
                if ((unsigned char)b.data[i] == 0x01) at = i;
            memcpy(b2.data, b.data, at);
            b2.data[at] = (char)0x91;
            memcpy(b2.data + at + 1, b.data + at, b.len - at);
            b2.len = b.len + 1;
            codec_request_clear(&r);
            expect_dlq(b2.data, b2.len, CODEC_DLQ_NESTING_TOO_DEEP, NULL);
            buf_free(&b);
            buf_free(&b2);
        }
    }
    /* empty containers count as levels too (msgpack-c counts them): one at level 33 is too deep */
    n = (size_t)sprintf(s, "{\"prompt\":\"x\",\"z\":");
    for (int i = 0; i < CODEC_MAX_DEPTH - 1; i++) s[n++] = '[';
    n += (size_t)sprintf(s + n, "5, [ ]");
    for (int i = 0; i < CODEC_MAX_DEPTH - 1; i++) s[n++] = ']';
    s[n++] = '}';
    expect_dlq(s, n, CODEC_DLQ_NESTING_TOO_DEEP, NULL);
    for (int extra = 0; extra < 2; extra++) {
        unsigned char mm[64];
        size_t k = 0;
        mm[k++] = 0x82;
        mm[k++] = 0xa6, memcpy(mm + k, "prompt", 6), k += 6, mm[k++] = 0xa1, mm[k++] = 'x';
        mm[k++] = 0xa1, mm[k++] = 'z';
        for (int i = 0; i < CODEC_MAX_DEPTH - 2 + extra; i++) mm[k++] = 0x91;
        mm[k++] = 0x90; /* [] at level 32 (fine) or 33 (too deep) */
        codec_request_t r = {0};
        codec_decode(&lim, mm, k, "t:0:0", &r);
        assert_int_equal(r.status, extra ? CODEC_UNDECODABLE : CODEC_OK);
        if (extra) assert_int_equal(r.dlq, CODEC_DLQ_NESTING_TOO_DEEP);
        codec_request_clear(&r);
    }
    lim.ignore_fields = NULL;
    lim.n_ignore_fields = 0;
    /* msgpack 100,000 deep */
    unsigned char *m = malloc(depth + 32);
    size_t k = 0;
    m[k++] = 0x82;
    m[k++] = 0xa9;
    memcpy(m + k, "custom_id", 9), k += 9;
    m[k++] = 0xa2, m[k++] = 'm', m[k++] = 'd';
    m[k++] = 0xa1, m[k++] = 'a';
    for (size_t i = 0; i < depth; i++) m[k++] = 0x91;
    m[k++] = 0x01;
    expect_dlq(m, k, CODEC_DLQ_NESTING_TOO_DEEP, "md");
    free(m);
    free(s);
}

static void test_too_large(void **state) {
    (void)state;
    size_t n = 10u << 20; /* 10 MB */
    char *s = malloc(n + 1);
    size_t k = (size_t)sprintf(s, "{\"custom_id\": \"huge\", \"prompt\": \"");
    memset(s + k, 'a', n - k - 2);
    s[n - 2] = '"';
    s[n - 1] = '}';
    expect_dlq(s, n, CODEC_DLQ_MESSAGE_TOO_LARGE, "huge");
    /* the same message under a 16 MiB limit decodes */
    codec_limits_t big = lim;
    big.max_message_bytes = 16u << 20;
    codec_request_t r = {0};
    clock_t t0 = clock();
    codec_decode(&big, s, n, "t:0:0", &r);
    double ms = (double)(clock() - t0) * 1000 / CLOCKS_PER_SEC;
    assert_int_equal(r.status, CODEC_OK);
    assert_int_equal(r.prompt_len, n - k - 2);
    printf("10 MB JSON request decoded in %.1f ms\n", ms);
    codec_request_clear(&r);
    /* and as msgpack */
    buf_t b = {0};
    char err[128];
    assert_int_equal(codec_json_to_msgpack(s, n, &b, err, sizeof err), 0);
    expect_dlq(b.data, b.len, CODEC_DLQ_MESSAGE_TOO_LARGE, "huge");
    codec_decode(&big, b.data, b.len, "t:0:0", &r);
    assert_int_equal(r.status, CODEC_OK);
    assert_int_equal(r.prompt_len, n - k - 2);
    codec_request_clear(&r);
    buf_free(&b);
    free(s);
}

/* ---------------------------------------------------------------- msgpack specifics */

static void pack_chat_with_content(msgpack_packer *pk, const char *content, size_t n, bool bin) {
    msgpack_pack_map(pk, 2);
    msgpack_pack_str_with_body(pk, "custom_id", 9), msgpack_pack_str_with_body(pk, "m1", 2);
    msgpack_pack_str_with_body(pk, "messages", 8);
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 2);
    msgpack_pack_str_with_body(pk, "role", 4), msgpack_pack_str_with_body(pk, "user", 4);
    msgpack_pack_str_with_body(pk, "content", 7);
    if (bin) msgpack_pack_bin_with_body(pk, content, n);
    else msgpack_pack_str_with_body(pk, content, n);
}

static void decode_sb(msgpack_sbuffer *sb, codec_request_t *r) {
    codec_decode(&lim, sb->data, sb->size, "t:0:9", r);
    msgpack_sbuffer_clear(sb);
}

static void test_msgpack_specifics(void **state) {
    (void)state;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    codec_request_t r = {0};

    pack_chat_with_content(&pk, "caf\xc3\xa9", 5, false);
    decode_sb(&sb, &r);
    assert_int_equal(r.status, CODEC_OK);
    assert_string_equal(r.messages[0].content, "caf\xc3\xa9");

    /* invalid UTF-8 in a msgpack str -> 400 invalid_value, no DLQ */
    static const char *const bad_utf8[] = {"\xff", "a\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82"};
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof *bad_utf8; i++) {
        pack_chat_with_content(&pk, bad_utf8[i], strlen(bad_utf8[i]), false);
        decode_sb(&sb, &r);
        assert_int_equal(r.status, CODEC_INVALID);
        assert_string_equal(codec_error_name(r.error), "invalid_value");
        assert_string_equal(r.param, "messages[0].content");
        assert_string_equal(r.id, "m1");
    }
    pack_chat_with_content(&pk, "a\0b", 3, false);
    decode_sb(&sb, &r);
    assert_string_equal(codec_error_name(r.error), "invalid_value");
    pack_chat_with_content(&pk, "text", 4, true); /* bin is not a string */
    decode_sb(&sb, &r);
    assert_string_equal(codec_error_name(r.error), "invalid_type");

    /* non-string keys are ignored like unknown fields; floats are not integers */
    msgpack_pack_map(&pk, 3);
    msgpack_pack_int(&pk, 7), msgpack_pack_str_with_body(&pk, "x", 1);
    msgpack_pack_str_with_body(&pk, "prompt", 6), msgpack_pack_str_with_body(&pk, "p", 1);
    msgpack_pack_str_with_body(&pk, "max_tokens", 10), msgpack_pack_double(&pk, 8.0);
    decode_sb(&sb, &r);
    assert_string_equal(codec_error_name(r.error), "invalid_type");
    assert_string_equal(r.param, "max_tokens");
    /* uint64 beyond int64 */
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "prompt", 6), msgpack_pack_str_with_body(&pk, "p", 1);
    msgpack_pack_str_with_body(&pk, "max_tokens", 10), msgpack_pack_uint64(&pk, UINT64_MAX);
    decode_sb(&sb, &r);
    assert_string_equal(codec_error_name(r.error), "invalid_value");
    /* seed as a big uint64 is fine */
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "prompt", 6), msgpack_pack_str_with_body(&pk, "p", 1);
    msgpack_pack_str_with_body(&pk, "seed", 4), msgpack_pack_uint64(&pk, UINT64_MAX - 1);
    decode_sb(&sb, &r);
    assert_int_equal(r.status, CODEC_OK);
    assert_true(r.seed == UINT64_MAX - 1);
    /* NaN / float32 */
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "prompt", 6), msgpack_pack_str_with_body(&pk, "p", 1);
    msgpack_pack_str_with_body(&pk, "temperature", 11), msgpack_pack_double(&pk, NAN);
    decode_sb(&sb, &r);
    assert_string_equal(codec_error_name(r.error), "invalid_value");
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "prompt", 6), msgpack_pack_str_with_body(&pk, "p", 1);
    msgpack_pack_str_with_body(&pk, "top_p", 5), msgpack_pack_float(&pk, 0.5f);
    decode_sb(&sb, &r);
    assert_int_equal(r.status, CODEC_OK);
    assert_true(r.top_p == 0.5);
    /* ext values as a field -> invalid_type */
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "prompt", 6), msgpack_pack_ext_with_body(&pk, "abcd", 4, 1);
    msgpack_pack_str_with_body(&pk, "x", 1), msgpack_pack_nil(&pk);
    decode_sb(&sb, &r);
    assert_string_equal(codec_error_name(r.error), "invalid_type");
    /* an empty map */
    msgpack_pack_map(&pk, 0);
    decode_sb(&sb, &r);
    assert_string_equal(codec_error_name(r.error), "missing_field");

    /* structurally broken -> DLQ */
    pack_chat_with_content(&pk, "hello", 5, false);
    for (size_t cut = 1; cut < sb.size; cut++) { /* every truncation */
        codec_decode(&lim, sb.data, cut, "t:0:9", &r);
        assert_int_equal(r.status, CODEC_UNDECODABLE);
        assert_int_equal(r.dlq, CODEC_DLQ_INVALID_MSGPACK);
        /* custom_id is the first key: readable once its bytes are all there */
        assert_int_equal(r.has_custom_id, cut >= 1 + 10 + 3);
    }
    char *tmp = malloc(sb.size + 1);
    memcpy(tmp, sb.data, sb.size);
    tmp[sb.size] = 0x00; /* trailing byte */
    expect_dlq(tmp, sb.size + 1, CODEC_DLQ_INVALID_MSGPACK, "m1");
    free(tmp);
    msgpack_sbuffer_clear(&sb);
    static const unsigned char c1[] = {0x81, 0xa1, 'a', 0xc1};
    expect_dlq(c1, sizeof c1, CODEC_DLQ_INVALID_MSGPACK, NULL);
    /* counts that the bytes cannot hold: map32 of 2^32-1 pairs, array32, str32 */
    static const unsigned char bomb1[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'a', 0x01};
    expect_dlq(bomb1, sizeof bomb1, CODEC_DLQ_INVALID_MSGPACK, NULL);
    static const unsigned char bomb2[] = {0x81, 0xa1, 'a', 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    expect_dlq(bomb2, sizeof bomb2, CODEC_DLQ_INVALID_MSGPACK, NULL);
    static const unsigned char bomb3[] = {0x81, 0xa1, 'a', 0xdb, 0xff, 0xff, 0xff, 0xff, 'x'};
    expect_dlq(bomb3, sizeof bomb3, CODEC_DLQ_INVALID_MSGPACK, NULL);
    static const unsigned char arr[] = {0x91, 0x80};
    expect_dlq(arr, sizeof arr, CODEC_DLQ_NOT_AN_OBJECT, NULL);
    msgpack_sbuffer_destroy(&sb);
    codec_request_clear(&r);
}

static void test_binary_noise(void **state) {
    (void)state;
    uint64_t x = 88172645463325252ull;
    unsigned char buf[512];
    size_t counts[3] = {0};
    codec_request_t r = {0};
    buf_t out = {0};
    char err[128];
    for (int it = 0; it < 200000; it++) {
        size_t n = (size_t)(x % sizeof buf);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = (unsigned char)x;
        }
        if (n > 0 && (it & 3) == 0) buf[0] = (unsigned char)(0x80 | (x & 0x0f)); /* force a msgpack map start */
        if (n > 0 && (it & 3) == 1) buf[0] = '{';
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        codec_decode(&lim, buf, n, "noise", &r);
        assert_true(r.status == CODEC_INVALID || r.status == CODEC_UNDECODABLE);
        counts[r.status]++;
        codec_result_t res = {0};
        codec_result_from_request_error(&r, &res);
        res.uid = (uint64_t)it;
        assert_int_equal(codec_encode_result(&res, &out, err, sizeof err), 0);
        assert_true(out.len > 0);
    }
    printf("binary noise: 200000 values, %zu invalid (400), %zu undecodable (DLQ)\n", counts[1], counts[2]);
    codec_request_clear(&r);
    buf_free(&out);
}

/* ---------------------------------------------------------------- results */

static json_t *jpath(json_t *j, const char *path) { /* "a.b.0.c" */
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *save = NULL, *t = strtok_r(buf, ".", &save); t && j; t = strtok_r(NULL, ".", &save))
        j = (t[0] >= '0' && t[0] <= '9') ? json_array_get(j, (size_t)atoi(t)) : json_object_get(j, t);
    if (!j) fail_msg("no %s", path);
    return j;
}

static void encode_both(const codec_result_t *res, json_t **out_json) {
    buf_t bj = {0}, bm = {0}, conv = {0};
    char err[128];
    codec_result_t r = *res;
    r.format = CODEC_FMT_JSON;
    assert_int_equal(codec_encode_result(&r, &bj, err, sizeof err), 0);
    json_error_t jerr;
    json_t *a = json_loadb(bj.data, bj.len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!a) fail_msg("result is not JSON: %s: %.*s", jerr.text, (int)bj.len, bj.data);
    assert_null(memchr(bj.data, '\n', bj.len)); /* one line */
    r.format = CODEC_FMT_MSGPACK;
    assert_int_equal(codec_encode_result(&r, &bm, err, sizeof err), 0);
    /* decode the msgpack with msgpack-c itself, then compare through JSON */
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&up, bm.data, bm.len, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, bm.len);
    assert_int_equal(up.data.type, MSGPACK_OBJECT_MAP);
    msgpack_unpacked_destroy(&up);
    assert_int_equal(codec_msgpack_to_json(bm.data, bm.len, &conv, err, sizeof err), 0);
    json_t *b = json_loadb(conv.data, conv.len, JSON_ALLOW_NUL, NULL);
    assert_non_null(b);
    if (!json_equal(a, b)) fail_msg("JSON and msgpack results differ:\n%.*s\n%.*s", (int)bj.len, bj.data, (int)conv.len, conv.data);
    json_decref(b);
    *out_json = a;
    buf_free(&bj);
    buf_free(&bm);
    buf_free(&conv);
}

static void test_encode_success(void **state) {
    (void)state;
    codec_result_t res = {0};
    res.uid = 0xabcdef;
    res.custom_id = "req-42";
    res.kind = CODEC_KIND_CHAT;
    res.model = "smollm2-135m-instruct";
    res.created = 1764100000;
    res.status_code = 200;
    const char text[] = "Hello \"world\"\n\ttab \xff end\0nul";
    res.text = text;
    res.text_len = sizeof text - 1;
    res.finish_reason = "length";
    res.prompt_tokens = 9;
    res.completion_tokens = 3;
    res.worker = "w-1";
    res.queue_ms = 3.14159;
    res.ttft_ms = -1;
    res.total_ms = 40.2;
    json_t *j;
    encode_both(&res, &j);
    assert_string_equal(json_string_value(jpath(j, "id")), "krill-0000000000abcdef");
    assert_string_equal(json_string_value(jpath(j, "custom_id")), "req-42");
    assert_int_equal(json_integer_value(jpath(j, "response.status_code")), 200);
    assert_string_equal(json_string_value(jpath(j, "response.request_id")), "krill-req-0000000000abcdef");
    assert_string_equal(json_string_value(jpath(j, "response.body.id")), "chatcmpl-0000000000abcdef");
    assert_string_equal(json_string_value(jpath(j, "response.body.object")), "chat.completion");
    assert_int_equal(json_integer_value(jpath(j, "response.body.created")), 1764100000);
    assert_string_equal(json_string_value(jpath(j, "response.body.model")), "smollm2-135m-instruct");
    assert_int_equal(json_integer_value(jpath(j, "response.body.choices.0.index")), 0);
    assert_string_equal(json_string_value(jpath(j, "response.body.choices.0.message.role")), "assistant");
    json_t *content = jpath(j, "response.body.choices.0.message.content");
    const char want[] = "Hello \"world\"\n\ttab \xef\xbf\xbd end\0nul"; /* 0xff -> U+FFFD, NUL kept */
    assert_int_equal(json_string_length(content), sizeof want - 1);
    assert_memory_equal(json_string_value(content), want, sizeof want - 1);
    assert_string_equal(json_string_value(jpath(j, "response.body.choices.0.finish_reason")), "length");
    assert_true(json_is_null(jpath(j, "response.body.choices.0.logprobs")));
    assert_int_equal(json_integer_value(jpath(j, "response.body.usage.prompt_tokens")), 9);
    assert_int_equal(json_integer_value(jpath(j, "response.body.usage.completion_tokens")), 3);
    assert_int_equal(json_integer_value(jpath(j, "response.body.usage.total_tokens")), 12);
    assert_true(json_is_null(jpath(j, "error")));
    assert_string_equal(json_string_value(jpath(j, "krill.worker")), "w-1");
    assert_true(fabs(json_real_value(jpath(j, "krill.queue_ms")) - 3.142) < 1e-9);
    assert_true(json_is_null(jpath(j, "krill.ttft_ms")));
    assert_true(fabs(json_real_value(jpath(j, "krill.total_ms")) - 40.2) < 1e-9);
    json_decref(j);

    res.kind = CODEC_KIND_COMPLETION;
    res.text = "";
    res.text_len = 0;
    res.finish_reason = "stop";
    encode_both(&res, &j);
    assert_string_equal(json_string_value(jpath(j, "response.body.object")), "text_completion");
    assert_string_equal(json_string_value(jpath(j, "response.body.id")), "cmpl-0000000000abcdef");
    assert_string_equal(json_string_value(jpath(j, "response.body.choices.0.text")), "");
    assert_null(json_object_get(jpath(j, "response.body.choices.0"), "message"));
    json_decref(j);
}

static void test_encode_errors(void **state) {
    (void)state;
    codec_limits_t l = lim;
    codec_request_t r = {0};
    const char *s = CHAT("{\"model\":\"other\"," MSGS "}");
    codec_decode(&l, s, strlen(s), "t:0:0", &r);
    codec_result_t res = {0};
    codec_result_from_request_error(&r, &res);
    res.uid = 1;
    res.worker = "w";
    res.queue_ms = res.ttft_ms = res.total_ms = -1;
    json_t *j;
    encode_both(&res, &j);
    assert_string_equal(json_string_value(jpath(j, "custom_id")), "c1");
    assert_int_equal(json_integer_value(jpath(j, "response.status_code")), 404);
    assert_string_equal(json_string_value(jpath(j, "response.body.error.code")), "model_not_found");
    assert_string_equal(json_string_value(jpath(j, "response.body.error.type")), "invalid_request_error");
    assert_string_equal(json_string_value(jpath(j, "response.body.error.param")), "body.model");
    assert_non_null(strstr(json_string_value(jpath(j, "response.body.error.message")), "serves"));
    assert_null(json_object_get(jpath(j, "response.body"), "choices"));
    assert_true(json_is_null(jpath(j, "error")));
    json_decref(j);

    /* undecodable with a readable id: the 400 answer */
    s = "{\"custom_id\": \"cut\", \"prompt\": \"x";
    codec_decode(&l, s, strlen(s), "t:0:0", &r);
    assert_int_equal(r.status, CODEC_UNDECODABLE);
    codec_result_from_request_error(&r, &res);
    encode_both(&res, &j);
    assert_int_equal(json_integer_value(jpath(j, "response.status_code")), 400);
    assert_string_equal(json_string_value(jpath(j, "custom_id")), "cut");
    assert_string_equal(json_string_value(jpath(j, "response.body.error.code")), "invalid_json");
    assert_true(json_is_null(jpath(j, "response.body.error.param")));
    json_decref(j);

    /* engine failure: 500 */
    memset(&res, 0, sizeof res);
    res.custom_id = "e";
    res.status_code = 500;
    res.error = CODEC_ERR_INTERNAL;
    res.error_message = "backend failed";
    encode_both(&res, &j);
    assert_string_equal(json_string_value(jpath(j, "response.body.error.type")), "server_error");
    assert_string_equal(json_string_value(jpath(j, "response.body.error.code")), "internal_error");
    json_decref(j);
    /* context_length_exceeded is set by the worker after tokenizing */
    res.status_code = codec_error_status(CODEC_ERR_CONTEXT_LENGTH_EXCEEDED);
    res.error = CODEC_ERR_CONTEXT_LENGTH_EXCEEDED;
    encode_both(&res, &j);
    assert_int_equal(json_integer_value(jpath(j, "response.status_code")), 400);
    assert_string_equal(json_string_value(jpath(j, "response.body.error.code")), "context_length_exceeded");
    json_decref(j);

    char err[64];
    buf_t b = {0};
    res.custom_id = NULL;
    assert_int_equal(codec_encode_result(&res, &b, err, sizeof err), -1);
    buf_free(&b);
    codec_request_clear(&r);

    /* names */
    assert_string_equal(codec_error_name(CODEC_ERR_INVALID_MSGPACK), "invalid_msgpack");
    assert_int_equal(codec_error_status(CODEC_ERR_MODEL_NOT_FOUND), 404);
    assert_int_equal(codec_error_status(CODEC_ERR_INTERNAL), 500);
    assert_int_equal(codec_error_status(CODEC_ERR_UNSUPPORTED), 400);
    assert_string_equal(codec_dlq_name(CODEC_DLQ_NESTING_TOO_DEEP), "nesting_too_deep");
}

/* ---------------------------------------------------------------- converters */

static void test_converters(void **state) {
    (void)state;
    char err[256];
    buf_t m = {0}, j = {0};
    /* against bytes packed directly with msgpack-c */
    const char *s = "{\"a\": [1, -2, 2.5, true, false, null, \"x\"], \"b\": {}}";
    assert_int_equal(codec_json_to_msgpack(s, strlen(s), &m, err, sizeof err), 0);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "a", 1);
    msgpack_pack_array(&pk, 7);
    msgpack_pack_int64(&pk, 1), msgpack_pack_int64(&pk, -2), msgpack_pack_double(&pk, 2.5);
    msgpack_pack_true(&pk), msgpack_pack_false(&pk), msgpack_pack_nil(&pk);
    msgpack_pack_str_with_body(&pk, "x", 1);
    msgpack_pack_str_with_body(&pk, "b", 1);
    msgpack_pack_map(&pk, 0);
    assert_int_equal(m.len, sb.size);
    assert_memory_equal(m.data, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);

    /* round trips */
    static const char *const docs[] = {
        "{\"custom_id\":\"r\",\"body\":{\"messages\":[{\"role\":\"user\",\"content\":\"h\\u00e9\\n\\\"q\\\"\"}],\"t\":0.25}}",
        "[1,2,[3,[4,{}]]]", "{\"\":\"\",\"e\":[\"\", {}]}", "\"just a string\"", "-9223372036854775808", "1.5e300", "null", "{\"k\":\"\\ud83d\\ude00\"}"};
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
        assert_int_equal(codec_json_to_msgpack(docs[i], strlen(docs[i]), &m, err, sizeof err), 0);
        assert_int_equal(codec_msgpack_to_json(m.data, m.len, &j, err, sizeof err), 0);
        json_t *a = json_loads(docs[i], JSON_DECODE_ANY, NULL), *b = json_loadb(j.data, j.len, JSON_DECODE_ANY, NULL);
        assert_non_null(b);
        if (!json_equal(a, b)) fail_msg("round trip of %s gave %.*s", docs[i], (int)j.len, j.data);
        json_decref(a);
        json_decref(b);
    }
    /* errors */
    assert_int_equal(codec_json_to_msgpack("{\"a\":", 5, &m, err, sizeof err), -1);
    assert_int_equal(codec_json_to_msgpack("{\"a\":1,\"a\":2}", 13, &m, err, sizeof err), -1);
    static const unsigned char ext[] = {0xd4, 0x01, 0x00};
    assert_int_equal(codec_msgpack_to_json(ext, sizeof ext, &j, err, sizeof err), -1);
    static const unsigned char nan[] = {0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0};
    assert_int_equal(codec_msgpack_to_json(nan, sizeof nan, &j, err, sizeof err), -1);
    static const unsigned char badutf[] = {0xa1, 0xff};
    assert_int_equal(codec_msgpack_to_json(badutf, sizeof badutf, &j, err, sizeof err), -1);
    static const unsigned char dupkey[] = {0x82, 0xa1, 'a', 0x01, 0xa1, 'a', 0x02};
    assert_int_equal(codec_msgpack_to_json(dupkey, sizeof dupkey, &j, err, sizeof err), -1);
    static const unsigned char intkey[] = {0x81, 0x07, 0xc3};
    assert_int_equal(codec_msgpack_to_json(intkey, sizeof intkey, &j, err, sizeof err), 0);
    assert_int_equal(j.len, 10);
    assert_memory_equal(j.data, "{\"7\":true}", 10);
    static const unsigned char bin[] = {0xc4, 0x02, 'o', 'k'};
    assert_int_equal(codec_msgpack_to_json(bin, sizeof bin, &j, err, sizeof err), 0);
    assert_memory_equal(j.data, "\"ok\"", 4);
    static const unsigned char trunc[] = {0x92, 0x01};
    assert_int_equal(codec_msgpack_to_json(trunc, sizeof trunc, &j, err, sizeof err), -1);
    assert_int_equal(codec_detect("{", 1), 0);
    assert_int_equal(codec_detect("\x81", 1), 1);
    assert_int_equal(codec_detect("[", 1), -1);
    buf_free(&m);
    buf_free(&j);
}

/* ---------------------------------------------------------------- speed (measured, not asserted) */

static void test_speed(void **state) {
    (void)state;
    const char *req =
        "{\"custom_id\": \"req-000042\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", \"body\": "
        "{\"model\": \"smollm2-135m-instruct\", \"messages\": [{\"role\": \"system\", \"content\": \"You are a "
        "helpful assistant.\"}, {\"role\": \"user\", \"content\": \"Write a haiku about the ocean at night, and "
        "then explain its imagery in two sentences.\"}], \"max_tokens\": 128, \"temperature\": 0.7, \"top_p\": "
        "0.95, \"seed\": 7, \"stop\": [\"\\n\\n\"]}}";
    const char *text = "Moonlight on dark waves,\nwhispers of the tide return,\nstars drown in the deep.\n\nThe poem "
                       "pairs light and darkness to show the ocean's calm and its depth.";
    buf_t mp = {0}, out = {0};
    to_msgpack(req, &mp);
    for (int fmt = 0; fmt < 2; fmt++) {
        const char *in = fmt ? mp.data : req;
        size_t len = fmt ? mp.len : strlen(req);
        int iters = 20000;
        codec_request_t r = {0};
        char err[64];
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < iters; i++) {
            codec_decode(&lim, in, len, "t:0:0", &r);
            assert_int_equal(r.status, CODEC_OK);
            codec_result_t res = {.format = r.format, .uid = (uint64_t)i, .custom_id = r.id, .kind = r.kind,
                                  .model = "smollm2-135m-instruct", .created = 1764100000, .status_code = 200,
                                  .text = text, .text_len = strlen(text), .finish_reason = "stop",
                                  .prompt_tokens = 40, .completion_tokens = 38, .worker = "w-1",
                                  .queue_ms = 1.5, .ttft_ms = 12.25, .total_ms = 240.125};
            assert_int_equal(codec_encode_result(&res, &out, err, sizeof err), 0);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 1e3 / iters;
        printf("speed: %s decode+validate+encode of a %zu-byte chat request: %.2f us per request\n",
               fmt ? "msgpack" : "JSON", len, us);
        codec_request_clear(&r);
    }
    buf_free(&mp);
    buf_free(&out);
}

static int setup(void **state) {
    (void)state;
    static const char *const names[] = {"smollm2-135m-instruct", "alias-b"};
    codec_limits_defaults(&lim);
    lim.model_names = names;
    lim.n_model_names = 2;
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_chat),
        cmocka_unit_test(test_valid_completion_and_defaults),
        cmocka_unit_test(test_error_table),
        cmocka_unit_test(test_error_answer_keeps_id),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_undecodable_json),
        cmocka_unit_test(test_nesting),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_msgpack_specifics),
        cmocka_unit_test(test_binary_noise),
        cmocka_unit_test(test_encode_success),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_converters),
        cmocka_unit_test(test_speed),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
