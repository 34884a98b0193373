/* txn.h — the books of exactly-once delivery (delivery.mode = exactly_once,
 * docs/delivery.md): when to commit the open transaction, and each partition's committed
 * position — its watermark and the answered offsets above it — as written into and read
 * back from the committed offset's metadata string.
 *
 * Rules it keeps:
 * - Cadence: a transaction is due when it holds something (a record, or an offset that
 *   moved) and is delivery.transaction_ms old, or holds delivery.transaction_max_answers
 *   records.
 * - Out-of-order completions are committed at once, never held back: the committed offset
 *   is the watermark (lowest unanswered offset) and its metadata lists the offsets above
 *   it whose answers are in the same or an earlier transaction, as "krill1:" then
 *   comma-separated runs "D" or "D-L" (first = previous run's last, or the watermark, + D;
 *   last = first + L), decimal. The next owner of the partition skips those offsets
 *   (txn_position_skip), so each is answered once.
 * - A run list that does not fit the cluster's offset.metadata.max.bytes cannot be
 *   committed: txn_commit_point says so and the caller waits (pausing intake) until the
 *   gaps below close.
 * - Metadata not written by krill (another client, at-least-once mode) means no skips.
 * - Pure bookkeeping: no Kafka, no engine, io thread only; times come in as now_ms.
 *   Out of memory is an error return. */
#ifndef KRILL_TXN_H
#define KRILL_TXN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "offsets.h"

#define TXN_META_PREFIX "krill1:"

typedef struct txn txn_t;

typedef struct {
    int64_t first, last; /* inclusive */
} txn_range_t;

/* interval_ms, max_answers: the cadence. NULL on out of memory. */
txn_t *txn_new(int interval_ms, int max_answers);
void txn_free(txn_t *t); /* accepts NULL */

/* ---- cadence */
/* A new (empty) transaction is open since now_ms. */
void txn_begun(txn_t *t, double now_ms);
/* n more records were produced into the open transaction. */
void txn_add(txn_t *t, int n);
int txn_records(const txn_t *t);
/* The open transaction should be committed now: it holds records or moved offsets
 * (offsets_moved) and is old enough, or holds max_answers records. */
bool txn_due(const txn_t *t, double now_ms, bool offsets_moved);
/* Milliseconds until the open transaction is old enough (>= 1; interval_ms when empty). */
int txn_wait_ms(const txn_t *t, double now_ms);

/* ---- metadata */
/* What to commit for a partition whose tracker is p (the offsets taken since its
 * position was read): *watermark = the lowest unanswered offset (moved past answered runs
 * of the position that start at it), -1 when nothing was taken (the position stands);
 * out = "" when no answered offset lies above it, else TXN_META_PREFIX and its runs: the
 * tracker's answered offsets above the watermark, then the position's answered offsets
 * above the highest tracked one (answered earlier, not consumed again yet: they stay
 * answered). 0 with out (NUL-terminated, *len bytes) and *n_ahead (answered offsets above
 * the watermark); -1 when it needs more than cap - 1 bytes (out is then undefined). */
int txn_commit_point(const txn_t *t, const char *topic, int32_t partition, const offsets_partition_t *p,
                     char *out, size_t cap, int64_t *watermark, size_t *len, size_t *n_ahead);
/* Parses metadata committed with watermark: the ranges to skip (malloc'd, *n of them;
 * NULL, 0 when none). 0; 1 when it is not krill's (no prefix: nothing to skip); -1 with
 * err when it is krill's but malformed, or on out of memory. */
int txn_meta_parse(const char *meta, size_t len, int64_t watermark, txn_range_t **ranges, size_t *n, char *err,
                   size_t errlen);

/* ---- committed positions, by (topic, partition) */
/* The partition's committed position: offset (< 0: none) and its metadata. Replaces
 * the previous one. 0; 1 when the metadata is not krill's or malformed (kept as no
 * skips: the caller logs it); -1 on out of memory. */
int txn_position_set(txn_t *t, const char *topic, int32_t partition, int64_t offset, const char *meta, size_t len,
                     char *err, size_t errlen);
/* The committed offset (-1 when none is known). */
int64_t txn_position_offset(const txn_t *t, const char *topic, int32_t partition);
/* The position equals (offset, meta): nothing to commit for the partition. */
bool txn_position_same(const txn_t *t, const char *topic, int32_t partition, int64_t offset, const char *meta,
                       size_t len);
/* offset was answered in a committed transaction above the committed watermark: it is
 * not to be answered again. */
bool txn_position_skip(const txn_t *t, const char *topic, int32_t partition, int64_t offset);
void txn_position_drop(txn_t *t, const char *topic, int32_t partition);

#endif
