/* test_ledger.c — the worker's delivery books (src/worker/ledger.c) without Kafka or an
 * engine: slot alloc/release and engine ids, partition epochs across revoke/assign,
 * the retry budget ending in LEDGER_GIVE_UP, records refused for good and replaced, offsets
 * stored only up to the lowest unfinished slot, out-of-order completions, a new generation
 * when a partition's offsets go backwards, and a random property check against a
 * model of "what may be committed". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ledger.h"
#include "rng.h"

/* ---- helpers */

typedef struct {
    int calls;
    char topic[64];
    int32_t partition;
    int64_t next;
} stored_t;

static void store_cb(void *ctx, const char *topic, int32_t partition, int64_t next) {
    stored_t *st = ctx;
    st->calls++;
    snprintf(st->topic, sizeof st->topic, "%s", topic);
    st->partition = partition;
    st->next = next;
}

/* The offset stored now (-1: nothing stored this time). */
static int64_t store_now(ledger_t *l) {
    stored_t st = {0};
    ledger_store_offsets(l, store_cb, &st);
    return st.calls ? st.next : -1;
}

static ledger_slot_t *open_ok(ledger_t *l, const char *topic, int32_t part, int64_t off) {
    ledger_slot_t *s = NULL;
    assert_int_equal(ledger_slot_open(l, topic, part, off, &s), LEDGER_OK);
    assert_non_null(s);
    return s;
}

/* A complete answer: one record produced and acknowledged. */
static void answer(ledger_t *l, ledger_slot_t *s) {
    ledger_record_sent(s);
    ledger_slot_answered(l, s);
    ledger_record_acked(l, s);
}

typedef struct {
    int n;
    uint64_t ids[16];
} aborted_t;

static void abort_cb(void *ctx, uint64_t id) {
    aborted_t *a = ctx;
    if (a->n < 16) a->ids[a->n] = id;
    a->n++;
}

/* ---- tests */

static void test_slots(void **state) {
    (void)state;
    ledger_t *l = ledger_new(2, 6);
    assert_non_null(l);
    ledger_slot_t *s = NULL;
    assert_int_equal(ledger_slot_open(l, "t", 0, 0, &s), LEDGER_NOT_ASSIGNED);
    assert_null(s);
    assert_int_equal(ledger_assign(l, "t", 0), 0);
    ledger_slot_t *a = open_ok(l, "t", 0, 10), *b = open_ok(l, "t", 0, 11);
    assert_string_equal(a->source, "t:0:10");
    assert_int_equal(ledger_used(l), 2);
    assert_int_equal(ledger_slot_open(l, "t", 0, 12, &s), LEDGER_FULL);

    /* engine ids find the slot while it is in the engine, and miss once it is reused */
    uint64_t ida = ledger_engine_id(l, a);
    assert_ptr_equal(ledger_slot_by_engine_id(l, ida), a);
    assert_null(ledger_slot_by_engine_id(l, ida + 7)); /* index out of range */
    a->id = strdup("req-a");
    a->key = malloc(3);
    a->hdrs = kafka_headers_new(NULL);
    kafka_headers_add(a->hdrs, "krill-source", a->source);
    answer(l, a); /* released: frees id, key, headers */
    assert_int_equal(ledger_used(l), 1);
    assert_null(ledger_slot_by_engine_id(l, ida));
    assert_int_equal(ledger_slot_open(l, "t", 0, 11, &s), LEDGER_OUT_OF_ORDER); /* nothing taken */
    assert_int_equal(ledger_used(l), 1);
    ledger_slot_t *c = open_ok(l, "t", 0, 12);
    assert_ptr_equal(c, a); /* the freed slot, a new generation */
    assert_null(c->id);
    assert_int_not_equal(ledger_engine_id(l, c), ida);
    assert_null(ledger_slot_by_engine_id(l, ida));

    /* in-engine slots are listed for the shutdown abort */
    aborted_t ab = {0};
    ledger_each_in_engine(l, abort_cb, &ab);
    assert_int_equal(ab.n, 2);
    ledger_free(l); /* frees the slots still in use */
    ledger_free(NULL);
    (void)b;
}

/* Offsets are stored only up to the lowest unfinished slot; completions come in any order. */
static void test_out_of_order_completions(void **state) {
    (void)state;
    ledger_t *l = ledger_new(16, 6);
    assert_int_equal(ledger_assign(l, "t", 3), 0);
    ledger_slot_t *s[5];
    for (int i = 0; i < 5; i++) s[i] = open_ok(l, "t", 3, 100 + i);
    assert_int_equal(store_now(l), -1); /* nothing finished */
    answer(l, s[2]);
    answer(l, s[4]);
    assert_int_equal(store_now(l), 100); /* 100 still unfinished: nothing past it */
    assert_int_equal(store_now(l), -1);
    assert_int_equal(ledger_live(l, "t", 3), 3);
    answer(l, s[0]);
    assert_int_equal(store_now(l), 101);
    assert_int_equal(store_now(l), -1); /* stored once per move */

    /* an answered slot with a record not yet acknowledged holds the offset back */
    ledger_record_sent(s[1]);
    ledger_record_sent(s[1]); /* result + DLQ record */
    ledger_slot_answered(l, s[1]);
    ledger_record_acked(l, s[1]);
    assert_int_equal(store_now(l), -1);
    ledger_record_acked(l, s[1]);
    assert_int_equal(store_now(l), 103);
    answer(l, s[3]);
    assert_int_equal(store_now(l), 105); /* all done: highest + 1 */
    assert_int_equal(ledger_live(l, "t", 3), 0);
    assert_int_equal(ledger_used(l), 0);
    ledger_free(l);
}

/* Exactly-once: offsets answered in a committed transaction are finished without a slot
 * (ledger_skip), in order with the others; every assigned partition is visited. */
static void visit(void *ctx, const char *topic, int32_t partition, const offsets_partition_t *op) {
    int64_t *seen = ctx;
    assert_string_equal(topic, "t");
    seen[partition] = offsets_committable(op);
}

static void test_skip(void **state) {
    (void)state;
    ledger_t *l = ledger_new(16, 6);
    assert_int_equal(ledger_skip(l, "t", 3, 100), LEDGER_NOT_ASSIGNED);
    assert_int_equal(ledger_assign(l, "t", 3), 0);
    assert_int_equal(ledger_assign(l, "t", 1), 0);
    ledger_slot_t *s = open_ok(l, "t", 3, 100);
    assert_int_equal(ledger_skip(l, "t", 3, 101), LEDGER_OK);
    assert_int_equal(ledger_skip(l, "t", 3, 101), LEDGER_OUT_OF_ORDER);
    assert_int_equal(ledger_used(l), 1); /* no slot taken */
    assert_int_equal(ledger_committable(l, "t", 3), 100);
    answer(l, s);
    assert_int_equal(ledger_committable(l, "t", 3), 102);
    assert_int_equal(ledger_skip(l, "t", 3, 102), LEDGER_OK);
    assert_int_equal(ledger_committable(l, "t", 3), 103);
    int64_t seen[4] = {-9, -9, -9, -9};
    ledger_each_assigned(l, visit, seen);
    assert_int_equal(seen[3], 103);
    assert_int_equal(seen[1], -1); /* assigned, nothing taken */
    assert_int_equal(seen[0], -9);
    ledger_free(l);
}

/* Epochs: after a revoke, late answers finish nothing; a re-assign starts fresh. */
static void test_epochs(void **state) {
    (void)state;
    ledger_t *l = ledger_new(16, 6);
    assert_int_equal(ledger_assign(l, "t", 0), 0);
    assert_int_equal(ledger_assign(l, "u", 1), 0);
    assert_int_equal(ledger_assigned_count(l), 2);
    ledger_slot_t *done = open_ok(l, "t", 0, 5), *eng = open_ok(l, "t", 0, 6), *wait = open_ok(l, "t", 0, 7);
    ledger_slot_t *other = open_ok(l, "u", 1, 50);
    ledger_slot_to_engine(eng);
    answer(l, done);
    ledger_record_sent(wait); /* answered, its record not acknowledged yet */
    ledger_slot_answered(l, wait);
    assert_int_equal(ledger_live(l, "t", 0), 2);
    assert_int_equal(ledger_committable(l, "t", 0), 6);

    aborted_t ab = {0};
    assert_int_equal(ledger_revoke(l, "t", 0, abort_cb, &ab), 0);
    assert_int_equal(ab.n, 1); /* only the slot still in the engine */
    assert_int_equal(ab.ids[0], ledger_engine_id(l, eng));
    assert_int_equal(ledger_revoke(l, "t", 0, abort_cb, &ab), -1); /* not assigned any more */
    assert_int_equal(ledger_committable(l, "t", 0), -1);
    assert_int_equal(ledger_live(l, "t", 0), 0);
    assert_int_equal(ledger_assigned_count(l), 1);
    assert_false(ledger_slot_current(eng));
    assert_true(ledger_slot_current(other));
    ledger_slot_t *s = NULL;
    assert_int_equal(ledger_slot_open(l, "t", 0, 8, &s), LEDGER_NOT_ASSIGNED);

    /* the partition comes back: a new epoch, a fresh tracker (offsets may restart lower) */
    assert_int_equal(ledger_assign(l, "t", 0), 0);
    assert_false(ledger_slot_current(eng));
    ledger_slot_t *again = open_ok(l, "t", 0, 6);
    /* late events of the old epoch: the abort result and the acknowledgement */
    assert_ptr_equal(ledger_slot_by_engine_id(l, ab.ids[0]), eng);
    ledger_slot_abandon(l, eng);
    ledger_record_acked(l, wait);
    assert_int_equal(store_now(l), -1); /* they finished nothing in the new epoch */
    assert_int_equal(ledger_live(l, "t", 0), 1);
    answer(l, again);
    assert_int_equal(store_now(l), 7);
    answer(l, other);
    assert_int_equal(ledger_used(l), 0);
    ledger_free(l);
}

/* The partition's log goes backwards (topic recreated): open refuses the offset, a new
 * generation gives the old one's work up (engine aborted, late answers, acknowledgements
 * and retries finish nothing) and starts an empty tracker whose first offset is stored
 * at once, below what the old generation stored. */
static void test_new_generation(void **state) {
    (void)state;
    ledger_t *l = ledger_new(16, 6);
    assert_int_equal(ledger_assign(l, "t", 0), 0);
    ledger_slot_t *done = open_ok(l, "t", 0, 30), *eng = open_ok(l, "t", 0, 31), *wait = open_ok(l, "t", 0, 32);
    ledger_slot_t *retry = open_ok(l, "t", 0, 33);
    ledger_slot_to_engine(eng);
    answer(l, done);
    ledger_record_sent(wait);
    ledger_slot_answered(l, wait);
    ledger_record_sent(retry);
    ledger_slot_answered(l, retry);
    assert_int_equal(ledger_record_failed(l, retry, "out", "k", 1, "v", 1, NULL, 0), LEDGER_RETRY);
    assert_int_equal(store_now(l), 31);
    assert_int_equal(ledger_used(l), 3);

    ledger_slot_t *s = NULL;
    assert_int_equal(ledger_slot_open(l, "t", 0, 0, &s), LEDGER_OUT_OF_ORDER); /* lower */
    assert_null(s);
    assert_int_equal(ledger_slot_open(l, "t", 0, 33, &s), LEDGER_OUT_OF_ORDER); /* repeated */
    assert_int_equal(ledger_used(l), 3); /* nothing taken */

    aborted_t ab = {0};
    int64_t last = 0;
    assert_int_equal(ledger_new_generation(l, "t", 0, abort_cb, &ab, &last), 0);
    assert_int_equal(last, 33);
    assert_int_equal(ab.n, 1); /* only the slot still in the engine */
    assert_int_equal(ab.ids[0], ledger_engine_id(l, eng));
    assert_false(ledger_slot_current(eng));
    assert_false(ledger_slot_current(wait));
    assert_int_equal(ledger_live(l, "t", 0), 0);
    assert_int_equal(ledger_assigned_count(l), 1); /* still ours */

    ledger_slot_t *first = open_ok(l, "t", 0, 0);
    assert_int_equal(store_now(l), 0); /* the new generation's start, stored at once */
    assert_int_equal(ledger_committable(l, "t", 0), 0);
    /* late events of the old generation finish nothing */
    ledger_slot_abandon(l, eng);
    assert_int_equal(ledger_record_failed(l, wait, "out", "k", 1, "v", 1, NULL, 0), LEDGER_DROPPED);
    ledger_status_t st = LEDGER_OK;
    assert_null(ledger_retry_next_due(l, 1e9, &st)); /* the queued retry is dropped */
    assert_false(ledger_retry_pending(l));
    assert_int_equal(store_now(l), -1);
    assert_int_equal(ledger_used(l), 1);
    ledger_slot_t *second = open_ok(l, "t", 0, 1);
    answer(l, second);
    assert_int_equal(store_now(l), -1); /* 0 still pending */
    answer(l, first);
    assert_int_equal(store_now(l), 2);
    assert_int_equal(ledger_used(l), 0);

    /* not assigned: nothing to start over */
    assert_int_equal(ledger_new_generation(l, "u", 0, abort_cb, &ab, &last), -1);
    assert_int_equal(last, -1);
    assert_int_equal(ledger_revoke(l, "t", 0, NULL, NULL), 0);
    assert_int_equal(ledger_new_generation(l, "t", 0, NULL, NULL, NULL), -1);
    ledger_free(l);
}

/* The retry budget: failures are queued with backoff, and the last one gives up. */
static void test_retry_budget(void **state) {
    (void)state;
    const int attempts = 4;
    ledger_t *l = ledger_new(4, attempts);
    assert_int_equal(ledger_assign(l, "t", 0), 0);
    ledger_slot_t *s = open_ok(l, "t", 0, 0);
    ledger_record_sent(s);
    ledger_slot_answered(l, s);
    double now = 1000;
    assert_false(ledger_retry_pending(l));
    assert_int_equal(ledger_record_failed(l, s, "results", "k", 1, "value", 5, kafka_headers_new(NULL), now),
                     LEDGER_RETRY);
    assert_true(ledger_retry_pending(l));
    ledger_status_t st;
    assert_null(ledger_retry_next_due(l, now + 499, &st)); /* first backoff: 0.5 s */
    ledger_retry_t *r = ledger_retry_next_due(l, now + 500, &st);
    assert_non_null(r);
    assert_int_equal(st, LEDGER_RETRY);
    assert_memory_equal(r->value, "value", 5);
    assert_int_equal(r->keylen, 1);
    assert_string_equal(r->topic, "results");
    assert_false(ledger_retry_pending(l));
    /* produced again and refused at once: requeued with the next backoff (1 s) */
    now += 500;
    ledger_retry_failed(l, r, now);
    assert_int_equal(s->failures, 2);
    assert_null(ledger_retry_next_due(l, now + 999, &st));
    r = ledger_retry_next_due(l, now + 1000, &st);
    assert_int_equal(st, LEDGER_RETRY);
    kafka_headers_free(r->hdrs); /* stands for librdkafka, which owns them once produced */
    ledger_retry_sent(r);
    /* that delivery fails too; then again: the budget (4 failures) is spent */
    assert_int_equal(ledger_record_failed(l, s, "results", NULL, 0, "v", 1, NULL, now), LEDGER_RETRY);
    r = ledger_retry_next_due(l, now + 1e6, &st);
    ledger_retry_sent(r);
    assert_int_equal(ledger_record_failed(l, s, "results", NULL, 0, "v", 1, kafka_headers_new(NULL), now),
                     LEDGER_GIVE_UP);
    assert_int_equal(s->failures, attempts);
    assert_false(ledger_retry_pending(l));
    /* given up: the record stays counted, the offset never finishes */
    assert_int_equal(s->pending, 1);
    assert_int_equal(store_now(l), -1);
    assert_int_equal(ledger_committable(l, "t", 0), 0);

    /* an immediate failure in the retry path spends the budget too: given up when due */
    ledger_slot_t *s2 = open_ok(l, "t", 0, 1);
    ledger_record_sent(s2);
    s2->failures = attempts - 2;
    assert_int_equal(ledger_record_failed(l, s2, "results", NULL, 0, "v", 1, NULL, now), LEDGER_RETRY);
    r = ledger_retry_next_due(l, now + 1e6, &st);
    ledger_retry_failed(l, r, now);
    r = ledger_retry_next_due(l, now + 1e6, &st);
    assert_non_null(r);
    assert_int_equal(st, LEDGER_GIVE_UP);
    ledger_retry_free(r);
    ledger_free(l);
}

/* A failed record of a partition that moved on is dropped, queued or not. */
static void test_retry_after_revoke(void **state) {
    (void)state;
    ledger_t *l = ledger_new(4, 6);
    assert_int_equal(ledger_assign(l, "t", 0), 0);
    ledger_slot_t *a = open_ok(l, "t", 0, 0), *b = open_ok(l, "t", 0, 1);
    ledger_record_sent(a);
    ledger_slot_answered(l, a);
    ledger_record_sent(b);
    ledger_slot_answered(l, b);
    assert_int_equal(ledger_record_failed(l, a, "results", NULL, 0, "v", 1, kafka_headers_new(NULL), 0), LEDGER_RETRY);
    assert_int_equal(ledger_revoke(l, "t", 0, NULL, NULL), 0);
    ledger_status_t st;
    assert_null(ledger_retry_next_due(l, 1e9, &st)); /* dropped on the way */
    assert_false(ledger_retry_pending(l));
    assert_int_equal(ledger_record_failed(l, b, "results", NULL, 0, "v", 1, NULL, 0), LEDGER_DROPPED);
    assert_int_equal(ledger_used(l), 0); /* both released */
    ledger_free(l);
}

/* A record refused for good is replaced (twice at most), never retried; the offset
 * finishes once the replacements are acknowledged, or when they are refused too. */
static void test_refused(void **state) {
    (void)state;
    ledger_t *l = ledger_new(4, 6);
    assert_int_equal(ledger_assign(l, "t", 0), 0);
    ledger_slot_t *s = open_ok(l, "t", 0, 0);
    ledger_record_sent(s);
    ledger_slot_answered(l, s);
    assert_int_equal(ledger_record_refused(l, s), LEDGER_REPLACE);
    assert_int_equal(s->replaced, 1);
    assert_false(ledger_retry_pending(l)); /* never queued */
    ledger_record_sent(s);                 /* the replacement ... */
    ledger_record_acked(l, s);             /* ... then the refused one stops counting */
    assert_int_equal(store_now(l), -1);    /* the replacement is not acknowledged yet */
    ledger_record_acked(l, s);
    assert_int_equal(store_now(l), 1);
    assert_int_equal(ledger_used(l), 0);

    /* replacements refused too: after LEDGER_MAX_REPLACED the record is let go */
    ledger_slot_t *t = open_ok(l, "t", 0, 1);
    ledger_record_sent(t);
    ledger_slot_answered(l, t);
    for (int i = 0; i < LEDGER_MAX_REPLACED; i++) {
        assert_int_equal(ledger_record_refused(l, t), LEDGER_REPLACE);
        ledger_record_sent(t);
        ledger_record_acked(l, t);
    }
    assert_int_equal(t->failures, 0); /* the retry budget is untouched */
    assert_int_equal(ledger_record_refused(l, t), LEDGER_LET_GO);
    assert_int_equal(store_now(l), 2); /* the partition moved on */
    assert_int_equal(ledger_used(l), 0);

    /* a refused record of a partition that moved on is dropped */
    ledger_slot_t *u = open_ok(l, "t", 0, 2);
    ledger_record_sent(u);
    ledger_slot_answered(l, u);
    assert_int_equal(ledger_revoke(l, "t", 0, NULL, NULL), 0);
    assert_int_equal(ledger_record_refused(l, u), LEDGER_DROPPED);
    assert_int_equal(ledger_used(l), 0);
    ledger_free(l);
}

/* Property: random opens, records, acknowledgements and answers over two partitions;
 * whatever is stored never passes an unfinished offset and never goes back. */
typedef struct {
    ledger_slot_t *open[2][64];
    int n_open[2];
    int64_t next_off[2], stored[2];
    int stores;
} model_t;

static void model_store(void *ctx, const char *topic, int32_t partition, int64_t next) {
    model_t *m = ctx;
    int q = partition;
    assert_true(q == 0 || q == 1);
    assert_string_equal(topic, q ? "b" : "a");
    int64_t lowest = m->next_off[q] + 1; /* nothing open: highest + 1 */
    for (int i = 0; i < m->n_open[q]; i++)
        if (m->open[q][i]->offset < lowest) lowest = m->open[q][i]->offset;
    assert_true(next <= lowest);
    assert_true(next > m->stored[q]);
    m->stored[q] = next;
    m->stores++;
}

static void test_property(void **state) {
    (void)state;
    enum { N = 64, STEPS = 200000 };
    uint64_t rng = 12345;
    ledger_t *l = ledger_new(N, 1000000);
    static model_t m;
    memset(&m, 0, sizeof m);
    const char *topics[2] = {"a", "b"};
    for (int p = 0; p < 2; p++) {
        assert_int_equal(ledger_assign(l, topics[p], p), 0);
        m.stored[p] = -1;
    }
    for (int step = 0; step < STEPS; step++) {
        int p = (int)(rng_next(&rng) % 2);
        uint64_t op = rng_next(&rng) % 4;
        if (op == 0 && m.n_open[p] < N / 2) {
            m.next_off[p] += 1 + (int64_t)(rng_next(&rng) % 3); /* gaps */
            m.open[p][m.n_open[p]++] = open_ok(l, topics[p], p, m.next_off[p]);
        } else if (m.n_open[p] > 0) {
            int k = (int)(rng_next(&rng) % (uint64_t)m.n_open[p]);
            ledger_slot_t *s = m.open[p][k];
            if (op == 1 && s->state != LEDGER_SLOT_ANSWERED && s->pending < 2)
                ledger_record_sent(s); /* a result, or a DLQ record + a result */
            else if (op == 2 && s->pending > 0)
                ledger_record_acked(l, s);
            else if (op == 3 && s->state != LEDGER_SLOT_ANSWERED)
                ledger_slot_answered(l, s);
            if (s->state == LEDGER_SLOT_FREE) m.open[p][k] = m.open[p][--m.n_open[p]]; /* finished */
        }
        ledger_store_offsets(l, model_store, &m);
    }
    print_message("%d stores checked\n", m.stores);
    assert_true(m.stores > 1000); /* deterministic: 1235 with this seed */
    ledger_free(l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slots),
        cmocka_unit_test(test_out_of_order_completions),
        cmocka_unit_test(test_skip),
        cmocka_unit_test(test_epochs),
        cmocka_unit_test(test_new_generation),
        cmocka_unit_test(test_retry_budget),
        cmocka_unit_test(test_retry_after_revoke),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_property),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
