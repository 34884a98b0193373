/* test_log.c — the logger parses level names and filters by level. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "log.h"

static void test_level_parse(void **state) {
    (void)state;
    assert_int_equal(log_level_parse("debug"), LOG_LVL_DEBUG);
    assert_int_equal(log_level_parse("error"), LOG_LVL_ERROR);
    assert_int_equal(log_level_parse("loud"), -1);
    assert_int_equal(log_level_parse(NULL), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_level_parse)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
