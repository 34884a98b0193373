/* offsets.h — out-of-order completions -> the offset Kafka may store (docs/architecture.md, "The ledger").
 *
 * Each assigned partition keeps the offsets it has taken and not yet finished.
 * track(o) when a message is taken from the consumer; done(o) when its result (or
 * DLQ record) is acknowledged by the broker. committable() is what to pass to
 * rd_kafka_offsets_store: the lowest unfinished offset, or (nothing pending) the
 * highest tracked offset + 1 — so everything below it is answered. It never decreases
 * within a generation (reset() starts a new one).
 *
 * Rules it keeps:
 * - Only tracked offsets are pending: gaps (compacted offsets, transaction markers)
 *   never hold the watermark back.
 * - track() takes offsets in increasing order per partition (Kafka delivers them
 *   so); a lower or repeated offset is refused (-1) — when the log really went
 *   backwards (topic recreated, log truncated), reset() starts a new generation.
 * - O(1) amortised track, O(log n) done, O(1) committable; memory is a ring of the
 *   pending offsets (8 bytes + 1 byte each), grown by doubling; 10^5+ in flight is fine.
 * - Not thread-safe: the io thread (consumer + delivery reports) alone owns it. */
#ifndef KRILL_OFFSETS_H
#define KRILL_OFFSETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct offsets_partition offsets_partition_t;
typedef struct offsets offsets_t;

/* ---- one partition */
offsets_partition_t *offsets_partition_new(void); /* NULL on out of memory */
void offsets_partition_free(offsets_partition_t *p); /* accepts NULL */
/* 0, or -1 when o < 0, o <= the highest tracked offset, or out of memory. */
int offsets_track(offsets_partition_t *p, int64_t o);
/* 0, or -1 when o is not pending (never tracked, or already done). */
int offsets_done(offsets_partition_t *p, int64_t o);
/* The offset to store: lowest pending, else highest tracked + 1; -1 before any track. */
int64_t offsets_committable(const offsets_partition_t *p);
/* Like committable(), but returns true only when it moved since the last call that
 * returned true (so the caller stores an offset only when it advanced). */
bool offsets_take_committable(offsets_partition_t *p, int64_t *o);
size_t offsets_pending(const offsets_partition_t *p);
/* The highest tracked offset of this generation; -1 before any track. */
int64_t offsets_last(const offsets_partition_t *p);
/* A new generation: forgets every tracked offset (pending or not) and the last taken
 * committable, so the next track() may take any offset >= 0 and committable() follows
 * it down. Memory is kept. */
void offsets_reset(offsets_partition_t *p);
bool offsets_is_pending(const offsets_partition_t *p, int64_t o);
/* The done offsets above the watermark (committable()), as runs of tracked offsets all
 * done, in increasing order: fn(ctx, first, last) for each (an untracked offset inside
 * a run, a transaction marker, is covered by it: it is never consumed). Returns the
 * number of done offsets above the watermark. fn may be NULL (count only). */
size_t offsets_done_runs(const offsets_partition_t *p, void (*fn)(void *ctx, int64_t first, int64_t last), void *ctx);

/* ---- the set of assigned partitions, keyed by (topic, partition) */
offsets_t *offsets_new(void);
void offsets_free(offsets_t *s); /* accepts NULL; frees every partition */
/* On assign: returns the partition's tracker, creating it (empty) when absent;
 * NULL on out of memory. The pointer stays valid until offsets_remove()/free. */
offsets_partition_t *offsets_add(offsets_t *s, const char *topic, int32_t partition);
/* On revoke/lost: frees the tracker; 0, or -1 when absent. */
int offsets_remove(offsets_t *s, const char *topic, int32_t partition);
offsets_partition_t *offsets_get(const offsets_t *s, const char *topic, int32_t partition);
/* Iteration (order unspecified, stable while the set is unchanged). */
size_t offsets_count(const offsets_t *s);
offsets_partition_t *offsets_at(const offsets_t *s, size_t i, const char **topic, int32_t *partition);
size_t offsets_pending_total(const offsets_t *s);

#endif
