/* eos.c — see eos.h. One commit: per assigned partition, the watermark and its metadata
 * (txn_commit_point) -> kafka_io_txn_commit -> the positions committed become the ones a
 * rewind goes back to. */
#include "eos.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "txn.h"

struct eos {
    kafka_io_t *kafka;
    ledger_t *ledger;
    observe_t *obs;
    txn_t *txn;
    eos_abort_fn abort_fn;
    void *abort_ctx;
    int read_timeout_ms;
    size_t meta_max;
    bool failed;       /* a record of the open transaction failed */
    bool moved;        /* offsets finished without a record (skips, a rewind) */
    bool blocked;      /* metadata too long: intake paused */
    int assign_errors; /* eos_assigned's reader */
    /* one commit's offsets (built by eos_collect): every assigned partition that moved */
    kafka_txn_offset_t *offs;
    size_t n_offs, cap_offs, n_ahead;
    char *scratch;     /* (meta_max + 1) one partition's metadata */
    char *meta;        /* (cap_meta) the metadata of offs[], one after the other */
    size_t *meta_at;   /* (cap_offs) where offs[i]'s metadata starts in meta */
    size_t len_meta, cap_meta;
    bool over, oom;
};

eos_t *eos_new(const config_t *cfg, kafka_io_t *k, ledger_t *l, observe_t *obs, eos_abort_fn abort_fn, void *ctx) {
    eos_t *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->kafka = k;
    e->ledger = l;
    e->obs = obs;
    e->abort_fn = abort_fn;
    e->abort_ctx = ctx;
    e->read_timeout_ms = cfg->delivery.transaction_timeout_ms + 10000;
    e->meta_max = (size_t)cfg->delivery.metadata_max_bytes;
    e->txn = txn_new(cfg->delivery.transaction_ms, cfg->delivery.transaction_max_answers);
    e->scratch = malloc(e->meta_max + 1);
    if (!e->txn || !e->scratch) {
        eos_free(e);
        return NULL;
    }
    txn_begun(e->txn, clock_now_ms());
    return e;
}

void eos_free(eos_t *e) {
    if (!e) return;
    txn_free(e->txn);
    free(e->offs);
    free(e->meta);
    free(e->meta_at);
    free(e->scratch);
    free(e);
}

void eos_transactional_id(const config_t *cfg, char *out, size_t outlen) {
    char host[256] = "krill";
    const char *id = cfg->worker.id;
    if (!id || !*id) {
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = 0;
        id = host;
    }
    snprintf(out, outlen, "krill-%s-%s", cfg->kafka.group, id);
}

/* ---------------------------------------------------------------- positions */

static void eos_position_read(void *ctx, const char *topic, int32_t partition, int64_t offset, const char *meta,
                              size_t len) {
    eos_t *e = ctx;
    char err[256];
    int rc = txn_position_set(e->txn, topic, partition, offset, meta, len, err, sizeof err);
    if (rc < 0) e->assign_errors++;
    if (rc > 0) LOG_WARN("committed offset metadata ignored", "topic=%s partition=%d reason=\"%s\"", topic,
                         (int)partition, err);
    LOG_DEBUG("committed position", "topic=%s partition=%d offset=%lld metadata_bytes=%zu", topic, (int)partition,
              (long long)offset, len);
}

int eos_assigned(eos_t *e, const rd_kafka_topic_partition_list_t *parts) {
    if (parts->cnt == 0) return 0;
    e->assign_errors = 0;
    int rc = kafka_io_committed(e->kafka, parts, e->read_timeout_ms, eos_position_read, e);
    if (rc || e->assign_errors) {
        LOG_ERROR("cannot read the committed offsets of the partitions assigned; stopping (answering without them "
                  "could answer a request twice)",
                  "error=%s", rc ? kafka_err_name(rc) : "out of memory");
        return -1;
    }
    return 0;
}

void eos_released(eos_t *e, const char *topic, int32_t partition) { txn_position_drop(e->txn, topic, partition); }

bool eos_skip(eos_t *e, const char *topic, int32_t partition, int64_t offset) {
    if (!txn_position_skip(e->txn, topic, partition, offset)) return false;
    if (ledger_skip(e->ledger, topic, partition, offset) != LEDGER_OK) return false;
    e->moved = true;
    return true;
}

void eos_produced(eos_t *e) { txn_add(e->txn, 1); }

void eos_record_failed(eos_t *e) { e->failed = true; }

bool eos_blocked(const eos_t *e) { return e->blocked; }

int eos_wait_ms(const eos_t *e) { return txn_wait_ms(e->txn, clock_now_ms()); }

/* ---------------------------------------------------------------- rewinding */

static void eos_rewind_one(void *ctx, const char *topic, int32_t partition, const offsets_partition_t *op) {
    (void)op;
    eos_t *e = ctx;
    int64_t to = txn_position_offset(e->txn, topic, partition);
    ledger_new_generation(e->ledger, topic, partition, e->abort_fn, e->abort_ctx, NULL);
    int rc = kafka_io_seek(e->kafka, topic, partition, to);
    if (rc) LOG_WARN("rewind: seek failed", "topic=%s partition=%d offset=%lld error=%s", topic, (int)partition,
                     (long long)to, kafka_err_name(rc));
}

/* After an abort: every assigned partition starts again at its committed position. */
static void eos_rewind(eos_t *e) {
    ledger_each_assigned(e->ledger, eos_rewind_one, e);
    e->failed = false;
    e->blocked = false;
    e->moved = false;
    txn_begun(e->txn, clock_now_ms());
}

int eos_abort(eos_t *e, const char *why) {
    char err[320];
    double t0 = clock_now_ms();
    kafka_txn_status_t st = kafka_io_txn_abort(e->kafka, err, sizeof err);
    if (st == KAFKA_TXN_FATAL) {
        LOG_ERROR("transaction abort failed: fatal", "reason=%s error=\"%s\"", why, err);
        observe_transaction(e->obs, "fatal", -1);
        return -1;
    }
    LOG_WARN("transaction aborted; rewinding to the committed offsets", "reason=%s records=%d", why,
             txn_records(e->txn));
    observe_transaction(e->obs, "aborted", (clock_now_ms() - t0) / 1e3);
    eos_rewind(e);
    return 0;
}

/* ---------------------------------------------------------------- committing */

/* Room for one more offset and len bytes of metadata; false on out of memory. */
static bool eos_room(eos_t *e, size_t len) {
    if (e->n_offs == e->cap_offs) {
        size_t cap = e->cap_offs ? e->cap_offs * 2 : 64;
        kafka_txn_offset_t *o = realloc(e->offs, cap * sizeof *o);
        if (o) e->offs = o;
        size_t *at = realloc(e->meta_at, cap * sizeof *at);
        if (at) e->meta_at = at;
        if (!o || !at) return false;
        e->cap_offs = cap;
    }
    if (e->len_meta + len > e->cap_meta) {
        size_t cap = e->cap_meta ? e->cap_meta : 4096;
        while (cap < e->len_meta + len) cap *= 2;
        char *m = realloc(e->meta, cap);
        if (!m) return false;
        e->meta = m;
        e->cap_meta = cap;
    }
    return true;
}

static void eos_collect(void *ctx, const char *topic, int32_t partition, const offsets_partition_t *op) {
    eos_t *e = ctx;
    int64_t w;
    char *m = e->scratch;
    size_t len, ahead;
    if (txn_commit_point(e->txn, topic, partition, op, m, e->meta_max + 1, &w, &len, &ahead) != 0) {
        if (!e->over)
            LOG_WARN("answered offsets above the watermark do not fit the offset metadata; pausing intake until the "
                     "gaps close", "topic=%s partition=%d watermark=%lld answered_above=%zu max_bytes=%zu", topic,
                     (int)partition, (long long)offsets_committable(op), offsets_done_runs(op, NULL, NULL), e->meta_max);
        e->over = true;
        return;
    }
    if (w < 0) return;
    e->n_ahead += ahead;
    if (txn_position_same(e->txn, topic, partition, w, m, len)) return;
    if (!eos_room(e, len)) {
        e->oom = true;
        return;
    }
    memcpy(e->meta + e->len_meta, m, len);
    e->meta_at[e->n_offs] = e->len_meta;
    e->len_meta += len;
    e->offs[e->n_offs++] = (kafka_txn_offset_t){topic, partition, w, NULL, len};
}

int eos_commit(eos_t *e, bool force) {
    double now = clock_now_ms();
    if (!force && !e->failed && !e->blocked && !txn_due(e->txn, now, e->moved)) return 0;
    /* A record counts as answered once produced into the transaction (io_loop.c
     * io_produced): the ledger's answered offsets are those of the records it holds, and
     * commit_transaction delivers all of them or the transaction aborts. */
    double t0 = now;
    if (e->failed) return eos_abort(e, "a record failed");
    e->n_offs = e->n_ahead = e->len_meta = 0;
    e->over = e->oom = false;
    ledger_each_assigned(e->ledger, eos_collect, e);
    if (e->oom) return eos_abort(e, "out of memory for the offsets"); /* a partial commit could answer twice */
    for (size_t i = 0; i < e->n_offs; i++) e->offs[i].metadata = e->meta + e->meta_at[i];
    observe_answers_ahead(e->obs, (int64_t)e->n_ahead);
    e->blocked = e->over;
    if (e->over) {
        /* Those answers cannot be committed yet (the gaps below them are still open):
         * the transaction stays open, intake pauses. A revoke or the shutdown cannot
         * wait: abort (the partitions are answered again, once). */
        return force ? eos_abort(e, "offset metadata too long") : 0;
    }
    if (e->n_offs == 0 && txn_records(e->txn) == 0) {
        e->moved = false;
        return 0;
    }
    char err[320];
    kafka_txn_status_t st = kafka_io_txn_commit(e->kafka, e->offs, e->n_offs, err, sizeof err);
    double dt = (clock_now_ms() - t0) / 1e3;
    if (st == KAFKA_TXN_FATAL) {
        LOG_ERROR("transaction commit failed: fenced or fatal; committing nothing more", "error=\"%s\"", err);
        observe_transaction(e->obs, "fatal", -1);
        return -1;
    }
    if (st == KAFKA_TXN_ABORTED) {
        LOG_WARN("transaction aborted; rewinding to the committed offsets", "error=\"%s\"", err);
        observe_transaction(e->obs, "aborted", dt);
        eos_rewind(e);
        return 0;
    }
    for (size_t i = 0; i < e->n_offs; i++) {
        char perr[256];
        txn_position_set(e->txn, e->offs[i].topic, e->offs[i].partition, e->offs[i].offset, e->offs[i].metadata,
                         e->offs[i].metadata_len, perr, sizeof perr);
    }
    LOG_DEBUG("transaction committed", "records=%d partitions=%zu answered_above=%zu ms=%.1f", txn_records(e->txn),
              e->n_offs, e->n_ahead, dt * 1e3);
    observe_transaction(e->obs, "committed", dt);
    e->moved = false;
    txn_begun(e->txn, clock_now_ms());
    return 0;
}
