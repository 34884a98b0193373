/* test_kvcache.c — the paged KV block allocator: sizes, all-or-nothing reservation,
 * release, reuse, and a random stress run that checks no block is ever held twice. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kvcache.h"

static void test_bad_sizes(void **state) {
    (void)state;
    assert_null(kvcache_new(0, 16));
    assert_null(kvcache_new(8, 0));
    assert_null(kvcache_new(-1, 16));
    kvcache_free(NULL);
    kvcache_seq_destroy(NULL, NULL);
}

static void test_blocks_for(void **state) {
    (void)state;
    kvcache_t *kv = kvcache_new(10, 16);
    assert_non_null(kv);
    assert_int_equal(kvcache_blocks_for(kv, 0), 0);
    assert_int_equal(kvcache_blocks_for(kv, 1), 1);
    assert_int_equal(kvcache_blocks_for(kv, 16), 1);
    assert_int_equal(kvcache_blocks_for(kv, 17), 2);
    assert_int_equal(kvcache_blocks_for(kv, 160), 10);
    assert_int_equal(kvcache_block_size(kv), 16);
    assert_int_equal(kvcache_n_blocks(kv), 10);
    kvcache_free(kv);
}

static void test_reserve_release(void **state) {
    (void)state;
    kvcache_t *kv = kvcache_new(5, 4);
    kvcache_seq_t a, b;
    assert_int_equal(kvcache_seq_init(kv, &a, 20), 0);
    assert_int_equal(kvcache_seq_init(kv, &b, 20), 0);
    assert_int_equal(a.cap, 5);

    assert_int_equal(kvcache_seq_missing(kv, &a, 9), 3);
    assert_int_equal(kvcache_seq_reserve(kv, &a, 9), 0); /* 3 blocks */
    assert_int_equal(a.n_blocks, 3);
    assert_int_equal(kvcache_n_free(kv), 2);
    assert_int_equal(kvcache_seq_reserve(kv, &a, 12), 0); /* still 3 */
    assert_int_equal(kvcache_n_free(kv), 2);
    assert_int_equal(kvcache_seq_missing(kv, &a, 12), 0);

    /* b wants 3 blocks, only 2 free: nothing is taken */
    assert_int_equal(kvcache_seq_reserve(kv, &b, 10), -1);
    assert_int_equal(b.n_blocks, 0);
    assert_int_equal(kvcache_n_free(kv), 2);
    assert_int_equal(kvcache_seq_reserve(kv, &b, 8), 0);
    assert_int_equal(kvcache_n_free(kv), 0);
    assert_int_equal(kvcache_n_used(kv), 5);

    /* all ids distinct and in range */
    int seen[5] = {0};
    for (int i = 0; i < a.n_blocks; i++) seen[a.blocks[i]]++;
    for (int i = 0; i < b.n_blocks; i++) seen[b.blocks[i]]++;
    for (int i = 0; i < 5; i++) assert_int_equal(seen[i], 1);

    int32_t a0 = a.blocks[0];
    kvcache_seq_release(kv, &a);
    assert_int_equal(a.n_blocks, 0);
    assert_int_equal(kvcache_n_free(kv), 3);
    /* LIFO: the released sequence's first block is handed out first */
    assert_int_equal(kvcache_seq_reserve(kv, &a, 1), 0);
    assert_int_equal(a.blocks[0], a0);

    kvcache_seq_destroy(kv, &a);
    kvcache_seq_destroy(kv, &b);
    assert_int_equal(kvcache_n_free(kv), 5);
    kvcache_free(kv);
}

/* Random reserve/release over many sequences; after every operation the held blocks
 * must be pairwise distinct and add up to n_used. */
static void test_stress(void **state) {
    (void)state;
    enum { NB = 64, BS = 8, NSEQ = 12, MAXT = 200 };
    kvcache_t *kv = kvcache_new(NB, BS);
    kvcache_seq_t seq[NSEQ];
    int len[NSEQ] = {0};
    for (int i = 0; i < NSEQ; i++) assert_int_equal(kvcache_seq_init(kv, &seq[i], MAXT), 0);
    uint32_t x = 12345;
    int fails = 0;
    for (int it = 0; it < 20000; it++) {
        x = x * 1664525u + 1013904223u;
        int i = (int)((x >> 8) % NSEQ);
        if ((x >> 20) % 5 == 0) {
            kvcache_seq_release(kv, &seq[i]);
            len[i] = 0;
        } else {
            int want = len[i] + 1 + (int)((x >> 24) % 20);
            if (want > MAXT) want = MAXT;
            int64_t before = kvcache_n_free(kv);
            int miss = kvcache_seq_missing(kv, &seq[i], want);
            if (kvcache_seq_reserve(kv, &seq[i], want) == 0) {
                len[i] = want;
                assert_int_equal(kvcache_n_free(kv), before - miss);
            } else {
                fails++;
                assert_true(miss > before);
                assert_int_equal(kvcache_n_free(kv), before);
            }
        }
        int held[NB] = {0}, total = 0;
        for (int k = 0; k < NSEQ; k++) {
            assert_int_equal(seq[k].n_blocks, kvcache_blocks_for(kv, len[k]));
            for (int j = 0; j < seq[k].n_blocks; j++) {
                assert_true(seq[k].blocks[j] >= 0 && seq[k].blocks[j] < NB);
                assert_int_equal(held[seq[k].blocks[j]]++, 0);
                total++;
            }
        }
        assert_int_equal(total, kvcache_n_used(kv));
    }
    assert_true(fails > 0); /* the run did exercise a full cache */
    for (int i = 0; i < NSEQ; i++) kvcache_seq_destroy(kv, &seq[i]);
    assert_int_equal(kvcache_n_free(kv), NB);
    kvcache_free(kv);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_sizes),
        cmocka_unit_test(test_blocks_for),
        cmocka_unit_test(test_reserve_release),
        cmocka_unit_test(test_stress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
