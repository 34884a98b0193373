/* test_common.c — the common toolbox: UTF-8, the growable buffer, strict CLI numbers,
 * the splitmix64 step (against the published reference outputs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cli.h"
#include "clock.h"
#include "rng.h"
#include "utf8.h"

static void test_utf8(void **state) {
    (void)state;
    assert_true(utf8_valid("h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80", 15));
    assert_int_equal(utf8_valid_prefix("ab\xC0\xAF", 4), 2);           /* overlong '/' */
    assert_int_equal(utf8_valid_prefix("abc\xED\xA0\x80", 6), 3);      /* surrogate */
    assert_int_equal(utf8_valid_prefix("\xF4\x90\x80\x80", 4), 0);     /* above U+10FFFF */
    assert_int_equal(utf8_valid_prefix("0123456789\xE2\x82", 12), 10); /* cut short */
    uint32_t cp = 0;
    assert_int_equal(utf8_decode("\xE2\x82\xAC", 3, &cp), 3);
    assert_int_equal(cp, 0x20AC);
    assert_int_equal(utf8_decode("\xE2\x82", 2, &cp), 0);
    char out[4];
    for (uint32_t c = 0; c <= 0x10FFFF; c += 97) {
        if (c >= 0xD800 && c <= 0xDFFF) continue;
        size_t n = utf8_encode(c, out);
        uint32_t back = 0;
        assert_int_equal(utf8_decode(out, n, &back), n);
        assert_int_equal(back, c);
    }
    size_t len;
    char *s = utf8_sanitize("a\xFF" "b", 3, &len);
    assert_non_null(s);
    assert_int_equal(len, 5);
    assert_memory_equal(s, "a\xEF\xBF\xBD" "b", 5);
    free(s);
}

static void test_buf(void **state) {
    (void)state;
    buf_t b = {0};
    for (int i = 0; i < 1000; i++) assert_int_equal(buf_printf(&b, "%d,", i % 10), 0);
    assert_int_equal(b.len, 2000);
    assert_int_equal(b.data[b.len], 0);
    assert_int_equal(strncmp(b.data, "0,1,2,", 6), 0);
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(buf_puts(&b, "xy"), 0);
    assert_string_equal(b.data, "xy");
    size_t n;
    char *d = buf_detach(&b, &n);
    assert_int_equal(n, 2);
    assert_null(b.data);
    free(d);
    buf_free(&b);
    buf_free(NULL);
}

static void test_cli_numbers(void **state) {
    (void)state;
    long v;
    double x;
    char err[128];
    assert_int_equal(cli_parse_long("-n", "42", 0, 100, &v, err, sizeof err), 0);
    assert_int_equal(v, 42);
    assert_int_equal(cli_parse_long("-n", "abc", 0, 100, &v, err, sizeof err), -1);
    assert_non_null(strstr(err, "-n: 'abc'"));
    assert_int_equal(cli_parse_long("-n", "12x", 0, 100, &v, err, sizeof err), -1);
    assert_int_equal(cli_parse_long("-n", "", 0, 100, &v, err, sizeof err), -1);
    assert_int_equal(cli_parse_long("-n", "101", 0, 100, &v, err, sizeof err), -1);
    assert_int_equal(cli_parse_long("-n", "99999999999999999999", 0, 100, &v, err, sizeof err), -1);
    assert_int_equal(cli_parse_double("--t", "0.5", 0, 1, &x, err, sizeof err), 0);
    assert_true(x == 0.5);
    assert_int_equal(cli_parse_double("--t", "nan", 0, 1, &x, err, sizeof err), -1);
    assert_int_equal(cli_parse_double("--t", "1.5", 0, 1, &x, err, sizeof err), -1);
    uint64_t u;
    assert_int_equal(cli_parse_u64("--seed", "18446744073709551615", &u, err, sizeof err), 0);
    assert_true(u == UINT64_MAX);
    assert_int_equal(cli_parse_u64("--seed", "-1", &u, err, sizeof err), -1); /* strtoull would say 2^64-1 */
    assert_non_null(strstr(err, "--seed: '-1'"));
    assert_int_equal(cli_parse_u64("--seed", "18446744073709551616", &u, err, sizeof err), -1);
    assert_int_equal(cli_parse_u64("--seed", " 1", &u, err, sizeof err), -1);
    char key[8];
    const char *val;
    assert_int_equal(cli_parse_kv("-X", "acks=all", key, sizeof key, &val, err, sizeof err), 0);
    assert_string_equal(key, "acks");
    assert_string_equal(val, "all");
    assert_int_equal(cli_parse_kv("-X", "k=", key, sizeof key, &val, err, sizeof err), 0);
    assert_string_equal(val, "");
    assert_int_equal(cli_parse_kv("-X", "acks", key, sizeof key, &val, err, sizeof err), -1);
    assert_non_null(strstr(err, "-X: 'acks' is not KEY=VALUE"));
    assert_int_equal(cli_parse_kv("-X", "=v", key, sizeof key, &val, err, sizeof err), -1);
    assert_int_equal(cli_parse_kv("-X", "toolongkey=v", key, sizeof key, &val, err, sizeof err), -1);
}

static void test_rng_reference(void **state) {
    (void)state;
    /* splitmix64 from seed 1234567: the first outputs of Vigna's reference splitmix64.c */
    uint64_t s = 1234567;
    assert_true(rng_next(&s) == 6457827717110365317ull);
    assert_true(rng_next(&s) == 3203168211198807973ull);
    double u = rng_uniform(&s);
    assert_true(u >= 0 && u < 1);
    double t0 = clock_now_ms(), t1 = clock_now_ms();
    assert_true(t1 >= t0);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_utf8), cmocka_unit_test(test_buf),
                                       cmocka_unit_test(test_cli_numbers), cmocka_unit_test(test_rng_reference)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
