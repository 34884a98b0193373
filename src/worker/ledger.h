/* ledger.h — the io thread's books for at-least-once delivery (docs/architecture.md,
 * "The ledger"): request slots, the partition table with its epochs, the retry queue of
 * records whose delivery failed, and the per-partition offset trackers (offsets.h).
 *
 * Contract:
 * - Every consumed message takes a slot (ledger_slot_open). Each record produced for it
 *   (result, DLQ record) is counted (ledger_record_sent) until acknowledged
 *   (ledger_record_acked) or given up. The slot's offset is done only when its answer is
 *   complete (ledger_slot_answered) and every record is acknowledged; offsets are
 *   stored (ledger_store_offsets) only up to the lowest unfinished one.
 * - A partition's epoch moves on at every assign and revoke: a slot counts only while
 *   its partition is assigned with the same epoch ("current"); late answers and records
 *   of an old epoch finish nothing (the partition's next owner answers them).
 * - Offsets of a partition only go up within a generation. One at or below the highest
 *   taken means the log went backwards (topic deleted and recreated, log truncated):
 *   ledger_slot_open refuses it (LEDGER_OUT_OF_ORDER) and the caller starts a new
 *   generation (ledger_new_generation: like a revoke and assign in one — the old
 *   generation's work is given up, its tracker starts empty) and opens the slot again.
 * - A failed record is queued again with backoff until its slot's retry budget
 *   (max_attempts failures) is spent; then the ledger returns LEDGER_GIVE_UP and the
 *   caller decides (the worker stops without storing past it). The record stays
 *   counted, so its offset never finishes.
 * - A record refused for a permanent reason (too large, invalid, not authorized) is never
 *   retried: ledger_record_refused says whether the caller may answer in its place with a
 *   smaller record (at most LEDGER_MAX_REPLACED times per slot) or must let it go; either
 *   way the partition moves on once the replacements are acknowledged.
 * - Knows nothing of Kafka clients or the engine: times come in as now_ms, engine work
 *   is reached through a callback. Not thread-safe (the io thread owns it).
 * - Out of memory is an error return, never an abort. */
#ifndef KRILL_LEDGER_H
#define KRILL_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "kafka.h"
#include "offsets.h"

typedef struct ledger ledger_t;
typedef struct ledger_part ledger_part_t;

typedef enum { LEDGER_SLOT_FREE = 0, LEDGER_SLOT_ENGINE, LEDGER_SLOT_ANSWERED } ledger_slot_state_t;

typedef struct ledger_slot {
    /* the ledger's bookkeeping: read-only for callers */
    uint32_t gen;          /* bumps at each reuse: engine ids carry it */
    uint8_t state;         /* ledger_slot_state_t */
    ledger_part_t *part;
    uint32_t epoch;
    int64_t offset;
    int pending;           /* records produced, not acknowledged */
    int failures;          /* failed deliveries/produce calls of its records (retry budget) */
    int replaced;          /* records refused for good and answered in their place */
    int next_free;
    char source[320];      /* topic:partition:offset */
    /* the request, filled by the caller after ledger_slot_open; freed at release */
    codec_format_t fmt;
    codec_kind_t kind;
    char *id;              /* request id (custom_id, id or topic:partition:offset), malloc'd */
    void *key;             /* the request's key (malloc'd), NULL when none */
    size_t keylen;
    rd_kafka_headers_t *hdrs; /* the request's headers + krill-source (template for answers) */
    double t_consumed;     /* clock_now_ms() when consumed (metrics) */
    int n_prompt;          /* prompt tokens while in the engine (metrics: pending prompt tokens) */
} ledger_slot_t;

/* A record waiting to be produced again after a failed delivery. */
typedef struct ledger_retry {
    struct ledger_retry *next;
    ledger_slot_t *slot;
    const char *topic;     /* not copied: must outlive the ledger (the configured names) */
    void *key, *value;
    size_t keylen, len;
    rd_kafka_headers_t *hdrs; /* owned; NULL once librdkafka took it */
    double due;
} ledger_retry_t;

typedef enum {
    LEDGER_OK = 0,
    LEDGER_NOT_ASSIGNED,   /* open: the message's partition is not ours */
    LEDGER_FULL,           /* open: every slot is in use */
    LEDGER_OUT_OF_ORDER,   /* open: the offset is not above the partition's last one: the
                              log went backwards (ledger_new_generation) */
    LEDGER_NO_MEMORY,
    LEDGER_RETRY,          /* failed record: queued again */
    LEDGER_DROPPED,        /* failed record: its partition moved on, nothing to retry */
    LEDGER_GIVE_UP,        /* failed record: the retry budget is spent */
    LEDGER_REPLACE,        /* refused record: answer in its place, then ledger_record_acked */
    LEDGER_LET_GO,         /* refused record: replacements spent; it no longer counts */
} ledger_status_t;

#define LEDGER_MAX_REPLACED 2 /* e.g. a result -> a small error result -> a DLQ note */

/* n_slots slots; a record failing max_attempts times is given up. NULL on out of memory. */
ledger_t *ledger_new(int n_slots, int max_attempts);
/* Frees slots, partitions, retries and trackers. Accepts NULL. */
void ledger_free(ledger_t *l);

/* ---- partitions (rebalance) */
/* A fresh tracker and a new epoch. 0, or -1 on out of memory. */
int ledger_assign(ledger_t *l, const char *topic, int32_t partition);
/* The offset to store before giving the partition up (-1: none) — what is below the
 * lowest unfinished slot. Returns -1 when the partition is not assigned. */
int64_t ledger_committable(const ledger_t *l, const char *topic, int32_t partition);
/* Gives the partition up: abort_fn(ctx, engine_id) for each of its slots still in the
 * engine (abort_fn may be NULL), then a new epoch, tracker dropped. 0, or -1 when it was
 * not assigned. */
int ledger_revoke(ledger_t *l, const char *topic, int32_t partition, void (*abort_fn)(void *ctx, uint64_t engine_id),
                  void *ctx);
/* The partition's log went backwards (its offsets start again below the highest
 * taken): abort_fn(ctx, engine_id) for each slot of the current epoch still in the
 * engine, then a new epoch and an empty tracker, as after a revoke and an assign — the
 * old generation's late answers and records finish nothing. *last (may be NULL) gets
 * the highest offset of the old generation. The next offset stored is the first one
 * opened in the new generation (stored at once, so a restart resumes there, not at
 * the old generation's offset). 0, or -1 when the partition is not assigned. */
int ledger_new_generation(ledger_t *l, const char *topic, int32_t partition,
                          void (*abort_fn)(void *ctx, uint64_t engine_id), void *ctx, int64_t *last);
/* Slots of the partition's current epoch not finished (0 when not assigned). */
int ledger_live(const ledger_t *l, const char *topic, int32_t partition);
int ledger_assigned_count(const ledger_t *l);

/* ---- slots */
/* Takes a slot for the message at (topic, partition, offset). LEDGER_OK with *out set;
 * else LEDGER_NOT_ASSIGNED, LEDGER_FULL, LEDGER_OUT_OF_ORDER (ledger_new_generation, then
 * open again) or LEDGER_NO_MEMORY (the tracker could not grow) and nothing taken. */
ledger_status_t ledger_slot_open(ledger_t *l, const char *topic, int32_t partition, int64_t offset,
                                 ledger_slot_t **out);
/* The slot was submitted to the engine (its answer comes later). A slot is opened in
 * this state too, so nothing finishes it while the caller is still handling it. */
void ledger_slot_to_engine(ledger_slot_t *s);
/* Its answer is complete (records still counted): the offset finishes once they are
 * acknowledged. The slot may be released by this call. */
void ledger_slot_answered(ledger_t *l, ledger_slot_t *s);
/* Given up without an answer (engine abort, or its partition moved on): the offset
 * stays unfinished; the slot is released once its records are acknowledged. */
void ledger_slot_abandon(ledger_t *l, ledger_slot_t *s);
/* Still counts: its partition is assigned with the slot's epoch. */
bool ledger_slot_current(const ledger_slot_t *s);
/* Engine ids: slot index | generation << 32, so late results of a reused slot miss. */
uint64_t ledger_engine_id(const ledger_t *l, const ledger_slot_t *s);
ledger_slot_t *ledger_slot_by_engine_id(ledger_t *l, uint64_t id); /* NULL: not in the engine */
/* Slots in use (taken, not released). */
int ledger_used(const ledger_t *l);
/* fn(ctx, engine_id) for every slot in the engine (shutdown). */
void ledger_each_in_engine(ledger_t *l, void (*fn)(void *ctx, uint64_t engine_id), void *ctx);

/* ---- records */
void ledger_record_sent(ledger_slot_t *s);
void ledger_record_acked(ledger_t *l, ledger_slot_t *s);
/* A record of s failed (immediate produce error or failed delivery). Copies key and
 * value; takes hdrs (freed unless queued). Returns LEDGER_DROPPED (its partition moved
 * on: the record no longer counts), LEDGER_RETRY (queued, due after a backoff of
 * 0.5, 1, 2, 4, 8 s), LEDGER_GIVE_UP (budget spent) or LEDGER_NO_MEMORY (as give up). */
ledger_status_t ledger_record_failed(ledger_t *l, ledger_slot_t *s, const char *topic, const void *key,
                                     size_t keylen, const void *value, size_t len, rd_kafka_headers_t *hdrs,
                                     double now_ms);
/* A record of s was refused for a reason no retry fixes (kafka_err_permanent). Not
 * queued. Returns LEDGER_DROPPED (its partition moved on: it no longer counts),
 * LEDGER_REPLACE (it still counts: the caller produces a smaller record in its place,
 * counted with ledger_record_sent, then calls ledger_record_acked for the refused one) or
 * LEDGER_LET_GO (LEDGER_MAX_REPLACED replacements were refused too: it no longer counts,
 * and the offset finishes without a stored answer; the caller logs it). */
ledger_status_t ledger_record_refused(ledger_t *l, ledger_slot_t *s);
/* Something waits in the retry queue. */
bool ledger_retry_pending(const ledger_t *l);
/* Takes the next record due at now_ms out of the queue, or NULL. Records whose
 * partition moved on are dropped on the way. *st: LEDGER_RETRY (produce it again, then
 * ledger_retry_sent or ledger_retry_failed) or LEDGER_GIVE_UP (budget spent: the caller
 * decides, then ledger_retry_free; the record stays counted). */
ledger_retry_t *ledger_retry_next_due(ledger_t *l, double now_ms, ledger_status_t *st);
/* Produced again (librdkafka owns r->hdrs now): frees r. */
void ledger_retry_sent(ledger_retry_t *r);
/* Produced again and refused at once: one more failure, queued with the next backoff. */
void ledger_retry_failed(ledger_t *l, ledger_retry_t *r, double now_ms);
void ledger_retry_free(ledger_retry_t *r); /* accepts NULL */

/* ---- exactly-once (eos.h) */
/* The message at (topic, partition, offset) was answered in a committed transaction:
 * tracked and finished at once, without a slot. LEDGER_OK, LEDGER_NOT_ASSIGNED,
 * LEDGER_OUT_OF_ORDER (the caller handles the message as any other) or LEDGER_NO_MEMORY. */
ledger_status_t ledger_skip(ledger_t *l, const char *topic, int32_t partition, int64_t offset);
/* fn(ctx, topic, partition, tracker) for every assigned partition. */
void ledger_each_assigned(ledger_t *l,
                          void (*fn)(void *ctx, const char *topic, int32_t partition, const offsets_partition_t *op),
                          void *ctx);

/* ---- offsets */
/* store(ctx, topic, partition, next) for every assigned partition whose committable
 * offset moved since the last store. */
void ledger_store_offsets(ledger_t *l, void (*store)(void *ctx, const char *topic, int32_t partition, int64_t next),
                          void *ctx);

#endif
