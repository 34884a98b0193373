/* eos.h — exactly-once delivery in the io loop (delivery.mode = exactly_once,
 * docs/delivery.md): what the io thread does besides the at-least-once path, joining
 * the ledger (ledger.h), the books (txn.h) and the transactional Kafka handle (kafka.h).
 *
 * Rules it keeps:
 * - Every answer (result, DLQ record, stats record) goes into the open transaction as
 *   soon as it is ready; the transaction is committed every delivery.transaction_ms or
 *   delivery.transaction_max_answers records, with each assigned partition's watermark
 *   and, in its metadata, the answered offsets above it (txn.h). A record counts as
 *   acknowledged as soon as it is produced into the transaction (the commit delivers all
 *   of its records or it aborts), so the offsets sent cover exactly the answers committed.
 * - A partition's committed position is read (with its metadata) when it is assigned; a
 *   message the position lists as answered is finished without an answer (eos_skip).
 * - A record that fails, or a transaction that must abort: the transaction is aborted
 *   and every assigned partition rewinds to its committed position (engine work given
 *   up, trackers reset, the consumer sought back): nothing of the aborted transaction
 *   counts, and everything in it is answered again once.
 * - Fenced (a newer instance of the same transactional.id) or fatal: eos_commit returns
 *   -1; the caller commits nothing more and exits 4.
 * - Runs on the io thread only. */
#ifndef KRILL_EOS_H
#define KRILL_EOS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "kafka.h"
#include "ledger.h"
#include "observe.h"

typedef struct eos eos_t;

/* Engine work of a partition given up at a rewind: abort(ctx, engine_id). */
typedef void (*eos_abort_fn)(void *ctx, uint64_t engine_id);

/* NULL on out of memory. */
eos_t *eos_new(const config_t *cfg, kafka_io_t *k, ledger_t *l, observe_t *obs, eos_abort_fn abort_fn, void *ctx);
void eos_free(eos_t *e); /* accepts NULL */

/* The transactional.id of a worker: "krill-<group>-<id>", id = worker.id, else the host
 * name (stable across restarts of the same container or pod). */
void eos_transactional_id(const config_t *cfg, char *out, size_t outlen);

/* Partitions assigned: reads their committed positions (waiting, within the transaction
 * timeout, for a previous owner's transaction to end). 0, or -1 when they cannot be read
 * (the caller stops: answering without them could answer twice). */
int eos_assigned(eos_t *e, const rd_kafka_topic_partition_list_t *parts);
/* A partition is released (after eos_commit) or lost: its position is forgotten. */
void eos_released(eos_t *e, const char *topic, int32_t partition);
/* A consumed message already answered in a committed transaction: finished in the
 * ledger (ledger_skip); true when the caller must not handle it. */
bool eos_skip(eos_t *e, const char *topic, int32_t partition, int64_t offset);
/* One record went into the open transaction. */
void eos_produced(eos_t *e);
/* A record of the open transaction failed: it will abort and rewind at the next commit. */
void eos_record_failed(eos_t *e);

/* Commits the open transaction when due (force: now, whatever it holds: a revoke, the
 * shutdown); aborts and rewinds when it cannot commit. 0, or -1 when fenced or fatal. */
int eos_commit(eos_t *e, bool force);
/* Aborts the open transaction and rewinds the assigned partitions (a partition was
 * lost). 0, or -1 when fatal. */
int eos_abort(eos_t *e, const char *why);
/* The intake must pause: a partition's answered offsets above its watermark do not fit
 * the metadata (delivery.metadata_max_bytes) until the gaps below them close. */
bool eos_blocked(const eos_t *e);
/* Milliseconds until the open transaction is due by age. */
int eos_wait_ms(const eos_t *e);

#endif
