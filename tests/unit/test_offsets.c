/* test_offsets.c — the offset tracker against a brute-force model.
 *
 * Property: over 10^6 random trials (offsets with gaps, tracks and completions
 * interleaved in random order), after every operation the tracker's committable
 * offset equals the brute-force "lowest tracked-and-unfinished offset, else highest
 * tracked + 1" and never decreases. Plus large trials (10^5 in flight), error
 * cases, and the (topic, partition) set. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "offsets.h"
#include "rng.h"
#include "testutil.h"

/* Brute force: scan every tracked offset. */
static int64_t brute(const int64_t *off, const uint8_t *done, size_t n_tracked) {
    if (n_tracked == 0) return -1;
    for (size_t i = 0; i < n_tracked; i++)
        if (!done[i]) return off[i];
    return off[n_tracked - 1] + 1;
}

/* One trial with n offsets. full_scan: compare with brute() after every operation
 * (O(n) each); otherwise with a forward-only pointer over the same arrays. Returns
 * the number of done() calls. */
static size_t trial(size_t n, int full_scan, int64_t *off, uint8_t *done, size_t *pend) {
    offsets_partition_t *p = offsets_partition_new();
    assert_non_null(p);
    int64_t o = (int64_t)(testutil_next() % 1000000);
    for (size_t i = 0; i < n; i++) {
        off[i] = o;
        done[i] = 0;
        /* gaps: about a quarter of the steps skip 1..8 offsets (markers, compaction) */
        o += 1 + ((testutil_next() & 3) == 0 ? (int64_t)(testutil_next() % 8) + 1 : 0);
    }
    assert_int_equal(offsets_committable(p), -1);
    size_t n_tracked = 0, n_pend = 0, n_done = 0, lo = 0;
    int64_t last = -1;
    while (n_done < n) {
        /* track the next offset with probability 1/2 (always when nothing is pending) */
        int do_track = n_tracked < n && (n_pend == 0 || (testutil_next() & 1));
        if (do_track) {
            assert_int_equal(offsets_track(p, off[n_tracked]), 0);
            pend[n_pend++] = n_tracked++;
        } else {
            size_t k = (size_t)(testutil_next() % n_pend);
            size_t idx = pend[k];
            pend[k] = pend[--n_pend];
            /* a gap offset (never tracked) is not pending */
            if (idx + 1 < n && off[idx + 1] > off[idx] + 1)
                assert_int_equal(offsets_done(p, off[idx] + 1), -1);
            assert_int_equal(offsets_done(p, off[idx]), 0);
            assert_int_equal(offsets_done(p, off[idx]), -1); /* twice */
            done[idx] = 1;
            n_done++;
        }
        int64_t want;
        if (full_scan) {
            want = brute(off, done, n_tracked);
        } else {
            while (lo < n_tracked && done[lo]) lo++;
            want = n_tracked == 0 ? -1 : lo < n_tracked ? off[lo] : off[n_tracked - 1] + 1;
        }
        int64_t got = offsets_committable(p);
        if (got != want) fail_msg("committable %lld, brute force %lld (n=%zu)", (long long)got, (long long)want, n);
        assert_true(got >= last);
        last = got;
        assert_int_equal(offsets_pending(p), n_pend);
    }
    assert_int_equal(offsets_committable(p), off[n - 1] + 1);
    offsets_partition_free(p);
    return n_done;
}

static void test_property_million_orders(void **state) {
    (void)state;
    enum { MAXN = 24 };
    int64_t off[MAXN];
    uint8_t done[MAXN];
    size_t pend[MAXN];
    size_t trials = 1000000, dones = 0;
    clock_t t0 = clock();
    for (size_t t = 0; t < trials; t++) dones += trial(1 + (size_t)(testutil_next() % MAXN), 1, off, done, pend);
    printf("property: %zu random orders, %zu done() calls checked against brute force in %.2f s\n", trials,
           dones, (double)(clock() - t0) / CLOCKS_PER_SEC);
}

static void test_property_large(void **state) {
    (void)state;
    size_t n = 200000;
    int64_t *off = malloc(n * sizeof *off);
    uint8_t *done = malloc(n);
    size_t *pend = malloc(n * sizeof *pend);
    assert_true(off && done && pend);
    /* 10^5+ in flight: track everything first, then complete in random order */
    offsets_partition_t *p = offsets_partition_new();
    for (size_t i = 0; i < n; i++) {
        off[i] = (int64_t)i * 2 + 5;
        done[i] = 0;
        pend[i] = i;
        assert_int_equal(offsets_track(p, off[i]), 0);
    }
    for (size_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
        size_t j = (size_t)(testutil_next() % (i + 1)), t = pend[i];
        pend[i] = pend[j];
        pend[j] = t;
    }
    size_t lo = 0;
    int64_t last = offsets_committable(p);
    assert_int_equal(last, 5);
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(offsets_done(p, off[pend[k]]), 0);
        done[pend[k]] = 1;
        while (lo < n && done[lo]) lo++;
        int64_t want = lo < n ? off[lo] : off[n - 1] + 1;
        assert_int_equal(offsets_committable(p), want);
        assert_true(want >= last);
        last = want;
    }
    offsets_partition_free(p);
    for (int t = 0; t < 5; t++) trial(n, 0, off, done, pend); /* interleaved, large */
    free(off);
    free(done);
    free(pend);
}

static void test_errors_and_take(void **state) {
    (void)state;
    offsets_partition_t *p = offsets_partition_new();
    int64_t o = 0;
    assert_false(offsets_take_committable(p, &o));
    assert_int_equal(offsets_track(p, -1), -1);
    assert_int_equal(offsets_done(p, 0), -1); /* nothing tracked */
    assert_int_equal(offsets_track(p, 10), 0);
    assert_int_equal(offsets_track(p, 10), -1); /* repeated */
    assert_int_equal(offsets_track(p, 9), -1);  /* lower */
    assert_int_equal(offsets_track(p, 12), 0);  /* gap at 11 */
    assert_true(offsets_is_pending(p, 10));
    assert_false(offsets_is_pending(p, 11));
    assert_true(offsets_take_committable(p, &o));
    assert_int_equal(o, 10);
    assert_false(offsets_take_committable(p, &o)); /* unchanged */
    assert_int_equal(offsets_done(p, 11), -1);     /* gap: never tracked */
    assert_int_equal(offsets_done(p, 12), 0);
    assert_int_equal(offsets_committable(p), 10); /* 10 still pending */
    assert_false(offsets_take_committable(p, &o));
    assert_int_equal(offsets_done(p, 10), 0);
    assert_int_equal(offsets_committable(p), 13);
    assert_true(offsets_take_committable(p, &o));
    assert_int_equal(o, 13);
    assert_int_equal(offsets_pending(p), 0);
    assert_int_equal(offsets_track(p, 20), 0);
    assert_int_equal(offsets_committable(p), 20); /* jumps over the gap 13..19 */
    offsets_partition_free(p);
    offsets_partition_free(NULL);
    assert_int_equal(offsets_committable(NULL), -1);
}

/* reset(): a new generation takes any offset again, and committable follows it down. */
static void test_reset(void **state) {
    (void)state;
    offsets_partition_t *p = offsets_partition_new();
    int64_t o = 0;
    assert_int_equal(offsets_last(p), -1);
    for (int64_t i = 100; i < 700; i++) assert_int_equal(offsets_track(p, i), 0); /* grows the ring */
    for (int64_t i = 100; i < 450; i++) assert_int_equal(offsets_done(p, i), 0);  /* head moves on */
    assert_true(offsets_take_committable(p, &o));
    assert_int_equal(o, 450);
    assert_int_equal(offsets_last(p), 699);
    assert_int_equal(offsets_track(p, 3), -1); /* lower: refused within a generation */
    offsets_reset(p);
    assert_int_equal(offsets_last(p), -1);
    assert_int_equal(offsets_pending(p), 0);
    assert_false(offsets_is_pending(p, 450));
    assert_int_equal(offsets_committable(p), -1);
    assert_false(offsets_take_committable(p, &o));
    assert_int_equal(offsets_done(p, 450), -1); /* the old generation's offsets are gone */
    for (int64_t i = 3; i < 1003; i++) assert_int_equal(offsets_track(p, i), 0);
    assert_int_equal(offsets_pending(p), 1000);
    assert_true(offsets_take_committable(p, &o));
    assert_int_equal(o, 3); /* below the 450 taken in the old generation */
    for (int64_t i = 1002; i >= 3; i--) assert_int_equal(offsets_done(p, i), 0);
    assert_int_equal(offsets_committable(p), 1003);
    assert_true(offsets_take_committable(p, &o));
    assert_int_equal(o, 1003);
    offsets_reset(p);
    assert_int_equal(offsets_track(p, 1003), 0); /* the same offset as last taken: stored again */
    assert_true(offsets_take_committable(p, &o));
    assert_int_equal(o, 1003);
    offsets_reset(NULL);
    assert_int_equal(offsets_last(NULL), -1);
    offsets_partition_free(p);
}

static void test_set(void **state) {
    (void)state;
    offsets_t *s = offsets_new();
    char topic[32];
    for (int t = 0; t < 3; t++)
        for (int32_t part = 0; part < 40; part++) {
            snprintf(topic, sizeof topic, "topic-%d", t);
            offsets_partition_t *p = offsets_add(s, topic, part);
            assert_non_null(p);
            assert_ptr_equal(offsets_add(s, topic, part), p); /* idempotent */
            assert_int_equal(offsets_track(p, part * 100 + t), 0);
        }
    assert_int_equal(offsets_count(s), 120);
    assert_int_equal(offsets_pending_total(s), 120);
    offsets_partition_t *p = offsets_get(s, "topic-1", 7);
    assert_non_null(p);
    assert_int_equal(offsets_committable(p), 701);
    assert_null(offsets_get(s, "topic-1", 40));
    assert_null(offsets_get(s, "topic-9", 7));
    assert_int_equal(offsets_remove(s, "topic-1", 7), 0);
    assert_int_equal(offsets_remove(s, "topic-1", 7), -1);
    assert_null(offsets_get(s, "topic-1", 7));
    assert_int_equal(offsets_count(s), 119);
    size_t seen = 0;
    for (size_t i = 0; i < offsets_count(s); i++) {
        const char *tp;
        int32_t part;
        offsets_partition_t *q = offsets_at(s, i, &tp, &part);
        assert_non_null(q);
        assert_ptr_equal(offsets_get(s, tp, part), q);
        assert_false(strcmp(tp, "topic-1") == 0 && part == 7);
        seen++;
    }
    assert_int_equal(seen, 119);
    assert_null(offsets_at(s, 119, NULL, NULL));
    /* re-assign after revoke: a fresh, empty tracker */
    p = offsets_add(s, "topic-1", 7);
    assert_int_equal(offsets_committable(p), -1);
    offsets_free(s);
    offsets_free(NULL);
}

int main(void) {
    testutil_seed(RNG_GOLDEN); /* the stream the property trials were written against */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors_and_take),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_property_million_orders),
        cmocka_unit_test(test_property_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
