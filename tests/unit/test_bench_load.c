/* test_bench_load.c — the benchmarks' shared load and percentiles (src/tools/bench_load.c):
 * the prompt ids tests/reference/bench_peers.py reproduces, and nearest-rank percentiles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdint.h>

#include "tools/bench_load.h"

static void test_prompt_ids(void **state) {
    (void)state;
    /* seed 1, a 49,152-token vocabulary: the ids bench_peers.py's prompts(2, 4, 49152) gives */
    static const int32_t want[8] = {37456, 46750, 21376, 35991, 47882, 22609, 29901, 10269};
    bench_load_t g;
    int32_t ids[8];
    bench_load_init(&g, 1, 49152);
    bench_load_prompt(&g, ids, 4);
    bench_load_prompt(&g, ids + 4, 4); /* two calls continue one stream */
    for (int i = 0; i < 8; i++) assert_int_equal(ids[i], want[i]);
    /* a small vocabulary: ids stay in [3, n_vocab - 1) */
    bench_load_init(&g, 7, 40);
    for (int i = 0; i < 1000; i++) {
        bench_load_prompt(&g, ids, 1);
        assert_true(ids[0] >= 3 && ids[0] < 39);
    }
}

static void test_percentiles(void **state) {
    (void)state;
    double v[100];
    for (int i = 0; i < 100; i++) v[i] = 100 - i; /* unsorted: bench_pct sorts */
    assert_true(bench_pct(v, 100, 50) == 50);
    assert_true(bench_pct(v, 100, 95) == 95);
    assert_true(bench_pct(v, 100, 99) == 99);
    assert_true(bench_pct(v, 100, 100) == 100);
    assert_true(bench_pct(v, 100, 0) == 1);
    double w[] = {5, 1, 4, 2, 3};
    assert_true(bench_pct(w, 5, 50) == 3);
    assert_true(bench_pct(w, 5, 99) == 5);
    assert_true(isnan(bench_pct(w, 0, 50)));
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_prompt_ids), cmocka_unit_test(test_percentiles)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
