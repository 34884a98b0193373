/* test_txn.c — the books of exactly-once delivery (txn.h).
 *
 * Property: over 20,000 random partitions (offsets with gaps, completions in random
 * order, stopped at a random moment), the committed watermark and metadata, read back
 * as a next owner would, skip exactly the offsets answered above the watermark and no
 * other: replaying from the watermark answers every unanswered offset once and no
 * answered one again. Plus the metadata budget, malformed metadata, the cadence and the
 * positions table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "offsets.h"
#include "rng.h"
#include "testutil.h"
#include "txn.h"

#define MAXN 600

static void test_property_replay(void **state) {
    (void)state;
    static int64_t off[MAXN];
    static uint8_t done[MAXN];
    static size_t order[MAXN];
    char meta[1 << 16], err[256];
    txn_t *t = txn_new(100, 1000);
    assert_non_null(t);
    for (int trial = 0; trial < 20000; trial++) {
        size_t n = 1 + testutil_next() % (trial < 100 ? MAXN : 64);
        offsets_partition_t *p = offsets_partition_new();
        assert_non_null(p);
        int64_t o = (int64_t)(testutil_next() % 100000);
        for (size_t i = 0; i < n; i++) {
            o += 1 + (testutil_next() % 4 == 0 ? (int64_t)(testutil_next() % 3) : 0); /* gaps: markers */
            off[i] = o;
            done[i] = 0;
            order[i] = i;
            assert_int_equal(offsets_track(p, o), 0);
        }
        for (size_t i = n; i > 1; i--) { /* random completion order */
            size_t j = testutil_next() % i, x = order[i - 1];
            order[i - 1] = order[j];
            order[j] = x;
        }
        size_t stop = testutil_next() % (n + 1);
        for (size_t i = 0; i < stop; i++) {
            assert_int_equal(offsets_done(p, off[order[i]]), 0);
            done[order[i]] = 1;
        }
        int64_t w;
        size_t len, ahead;
        assert_int_equal(txn_commit_point(NULL, "req", 3, p, meta, sizeof meta, &w, &len, &ahead), 0);
        assert_int_equal(w, offsets_committable(p));
        assert_int_equal(strlen(meta), len);
        int rc = txn_position_set(t, "req", 3, w, meta, len, err, sizeof err);
        assert_int_equal(rc, 0);
        size_t n_above = 0;
        for (size_t i = 0; i < n; i++) {
            if (off[i] < w) {
                assert_true(done[i]); /* below the watermark: all answered */
                continue;
            }
            bool skip = txn_position_skip(t, "req", 3, off[i]);
            if (skip != (bool)done[i]) fail_msg("trial %d offset %lld done %d skip %d meta %s w %lld", trial,
                                                (long long)off[i], done[i], skip, meta, (long long)w);
            n_above += done[i];
        }
        assert_int_equal(ahead, n_above);
        assert_false(txn_position_skip(t, "req", 3, w)); /* the watermark is never answered */
        assert_true(txn_position_same(t, "req", 3, w, meta, len));
        offsets_partition_free(p);
    }
    txn_free(t);
}

static void test_meta_budget(void **state) {
    (void)state;
    offsets_partition_t *p = offsets_partition_new();
    for (int64_t o = 10; o < 30; o++) assert_int_equal(offsets_track(p, o), 0);
    for (int64_t o = 11; o < 30; o += 2) assert_int_equal(offsets_done(p, o), 0); /* 11 13 ... 29 */
    char meta[256];
    size_t len, ahead;
    int64_t w;
    assert_int_equal(txn_commit_point(NULL, "t", 0, p, meta, sizeof meta, &w, &len, &ahead), 0);
    assert_string_equal(meta, "krill1:1,2,2,2,2,2,2,2,2,2");
    assert_int_equal(ahead, 10);
    size_t need = len;
    assert_int_equal(txn_commit_point(NULL, "t", 0, p, meta, need, &w, &len, &ahead), -1); /* one byte short (the NUL) */
    assert_int_equal(txn_commit_point(NULL, "t", 0, p, meta, need + 1, &w, &len, &ahead), 0);
    assert_int_equal(len, need);
    for (int64_t o = 12; o < 30; o += 2) assert_int_equal(offsets_done(p, o), 0); /* one run: 11..29 */
    assert_int_equal(txn_commit_point(NULL, "t", 0, p, meta, sizeof meta, &w, &len, &ahead), 0);
    assert_string_equal(meta, "krill1:1-18");
    assert_int_equal(offsets_done(p, 10), 0); /* all done: nothing above the watermark */
    assert_int_equal(txn_commit_point(NULL, "t", 0, p, meta, sizeof meta, &w, &len, &ahead), 0);
    assert_int_equal(len, 0);
    assert_int_equal(ahead, 0);
    offsets_partition_free(p);
}

/* Owners one after the other, each starting at the committed position, skipping what it
 * lists, consuming a random prefix of the rest (answering a random part of it), then
 * committing (or crashing before its commit: its answers are aborted). A last owner
 * consumes everything. Every offset is answered exactly once in committed transactions,
 * whatever the prefixes — also when an owner commits before it has consumed again all that
 * an earlier one answered (those answers are carried in the metadata). */
static void test_property_owners(void **state) {
    (void)state;
    enum { N = 200 };
    int64_t off[N];
    int answered[N], mine[N];
    char meta[1 << 14], err[256];
    for (int trial = 0; trial < 3000; trial++) {
        txn_t *t = txn_new(100, 1000);
        int64_t o = (int64_t)(testutil_next() % 1000);
        for (int i = 0; i < N; i++) {
            o += 1 + (testutil_next() % 5 == 0 ? 1 : 0);
            off[i] = o;
            answered[i] = 0;
        }
        assert_int_equal(txn_position_set(t, "q", 0, -1, NULL, 0, err, sizeof err), 0);
        int owners = 2 + (int)(testutil_next() % 5);
        for (int k = 0; k <= owners; k++) {
            bool last_owner = k == owners, crash = !last_owner && testutil_next() % 4 == 0;
            int64_t from = txn_position_offset(t, "q", 0);
            offsets_partition_t *p = offsets_partition_new();
            int budget = last_owner ? N : (int)(testutil_next() % (N / 2));
            memset(mine, 0, sizeof mine);
            for (int i = 0; i < N && budget > 0; i++) {
                if (off[i] < from) continue;
                budget--;
                assert_int_equal(offsets_track(p, off[i]), 0);
                if (txn_position_skip(t, "q", 0, off[i])) {
                    assert_int_equal(offsets_done(p, off[i]), 0); /* ledger_skip */
                } else if (last_owner || testutil_next() % 3 != 0) {
                    assert_int_equal(offsets_done(p, off[i]), 0);
                    mine[i] = 1;
                }
            }
            if (!crash) {
                int64_t w;
                size_t len, ahead;
                assert_int_equal(txn_commit_point(t, "q", 0, p, meta, sizeof meta, &w, &len, &ahead), 0);
                if (w >= 0) assert_int_equal(txn_position_set(t, "q", 0, w, meta, len, err, sizeof err), 0);
                for (int i = 0; i < N; i++) answered[i] += mine[i];
            }
            offsets_partition_free(p);
        }
        for (int i = 0; i < N; i++)
            if (answered[i] != 1) fail_msg("trial %d: offset %lld answered %d times", trial, (long long)off[i], answered[i]);
        txn_free(t);
    }
}

static void test_meta_parse_errors(void **state) {
    (void)state;
    const char *bad[] = {"krill1:0", "krill1:1,", "krill1:x", "krill1:1--2", "krill1:,1", "krill1:1-",
                         "krill1:99999999999999999999", "krill1:1;2"};
    txn_range_t *r;
    size_t n;
    char err[256];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(txn_meta_parse(bad[i], strlen(bad[i]), 5, &r, &n, err, sizeof err), -1);
        assert_null(r);
        assert_non_null(strstr(err, "not a valid krill run list"));
    }
    assert_int_equal(txn_meta_parse("hello", 5, 5, &r, &n, err, sizeof err), 1); /* not ours */
    assert_int_equal(txn_meta_parse("", 0, 5, &r, &n, err, sizeof err), 1);
    assert_int_equal(txn_meta_parse("krill1:", 7, 5, &r, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(txn_meta_parse("krill1:2-3,4", 12, 5, &r, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(r[0].first, 7);
    assert_int_equal(r[0].last, 10);
    assert_int_equal(r[1].first, 14);
    assert_int_equal(r[1].last, 14);
    free(r);
}

static void test_positions(void **state) {
    (void)state;
    txn_t *t = txn_new(100, 1000);
    char err[256];
    assert_false(txn_position_skip(t, "a", 0, 5));
    assert_int_equal(txn_position_offset(t, "a", 0), -1);
    assert_int_equal(txn_position_set(t, "a", 0, 100, "krill1:2,3-1", 12, err, sizeof err), 0);
    assert_int_equal(txn_position_set(t, "a", 1, 7, "not ours", 8, err, sizeof err), 1); /* kept, no skips */
    assert_int_equal(txn_position_set(t, "a", 2, -1001, NULL, 0, err, sizeof err), 0);      /* none committed */
    assert_int_equal(txn_position_offset(t, "a", 2), -1);
    assert_int_equal(txn_position_offset(t, "a", 1), 7);
    assert_false(txn_position_skip(t, "a", 1, 8));
    int64_t want[] = {102, 105, 106};
    for (int64_t o = 90; o < 120; o++) {
        bool w = o == want[0] || o == want[1] || o == want[2];
        assert_int_equal(txn_position_skip(t, "a", 0, o), w);
    }
    assert_false(txn_position_skip(t, "b", 0, 102)); /* another topic */
    assert_true(txn_position_same(t, "a", 0, 100, "krill1:2,3-1", 12));
    assert_false(txn_position_same(t, "a", 0, 101, "krill1:2,3-1", 12));
    assert_false(txn_position_same(t, "a", 0, 100, "", 0));
    txn_position_drop(t, "a", 0);
    assert_false(txn_position_skip(t, "a", 0, 102));
    assert_int_equal(txn_position_offset(t, "a", 1), 7); /* the others stay */
    txn_free(t);
}

static void test_cadence(void **state) {
    (void)state;
    txn_t *t = txn_new(100, 3);
    txn_begun(t, 1000);
    assert_false(txn_due(t, 5000, false)); /* empty: never due */
    assert_true(txn_due(t, 1100, true));   /* offsets moved, old enough */
    assert_false(txn_due(t, 1050, true));
    txn_add(t, 1);
    assert_false(txn_due(t, 1099, false));
    assert_true(txn_due(t, 1100, false));
    assert_int_equal(txn_wait_ms(t, 1040), 60);
    assert_int_equal(txn_wait_ms(t, 2000), 1);
    txn_add(t, 2);
    assert_true(txn_due(t, 1001, false)); /* max answers */
    assert_int_equal(txn_records(t), 3);
    txn_begun(t, 3000);
    assert_int_equal(txn_records(t), 0);
    assert_false(txn_due(t, 3200, false));
    txn_free(t);
    txn_free(NULL);
}

int main(void) {
    testutil_seed(RNG_GOLDEN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_property_replay), cmocka_unit_test(test_property_owners),
        cmocka_unit_test(test_meta_budget),
        cmocka_unit_test(test_meta_parse_errors), cmocka_unit_test(test_positions),
        cmocka_unit_test(test_cadence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
