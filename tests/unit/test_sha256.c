/* test_sha256.c — SHA-256 against the FIPS 180-4 / NIST example vectors, and the
 * streaming form (odd chunk sizes across block boundaries) equal to the one-shot one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sha256.h"

static void hex_of(const void *p, size_t n, char out[65]) {
    uint8_t d[SHA256_BYTES];
    sha256(p, n, d);
    sha256_hex(d, out);
}

static void test_vectors(void **state) {
    (void)state;
    char h[65];
    hex_of("", 0, h);
    assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    hex_of("abc", 3, h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m2 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hex_of(m2, strlen(m2), h);
    assert_string_equal(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m4 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    hex_of(m4, strlen(m4), h);
    assert_string_equal(h, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    /* one million 'a', fed 1000 at a time */
    char a[1000];
    memset(a, 'a', sizeof(a));
    sha256_t c;
    uint8_t d[SHA256_BYTES];
    sha256_init(&c);
    for (int i = 0; i < 1000; i++) sha256_update(&c, a, sizeof(a));
    sha256_final(&c, d);
    sha256_hex(d, h);
    assert_string_equal(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_streaming(void **state) {
    (void)state;
    uint8_t msg[300];
    for (size_t i = 0; i < sizeof(msg); i++) msg[i] = (uint8_t)(i * 31 + 7);
    for (size_t len = 0; len <= sizeof(msg); len += 13) {
        uint8_t one[SHA256_BYTES], st[SHA256_BYTES];
        sha256(msg, len, one);
        for (size_t chunk = 1; chunk <= 70; chunk += 23) {
            sha256_t c;
            sha256_init(&c);
            for (size_t off = 0; off < len; off += chunk) sha256_update(&c, msg + off, len - off < chunk ? len - off : chunk);
            sha256_final(&c, st);
            assert_memory_equal(one, st, SHA256_BYTES);
        }
    }
    /* lengths around the padding boundary (55, 56, 63, 64 bytes) */
    uint8_t d55[SHA256_BYTES], d56[SHA256_BYTES];
    sha256(msg, 55, d55);
    sha256(msg, 56, d56);
    assert_memory_not_equal(d55, d56, SHA256_BYTES);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_streaming),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
