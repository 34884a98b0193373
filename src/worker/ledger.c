/* ledger.c — see ledger.h. Slots are one array with a free list (allocated once);
 * partitions are kept for the ledger's life (slots point at them; a partition that
 * comes back gets a new epoch, not a new entry); retries are a short singly-linked list
 * (records wait there only while Kafka refuses them). */
#include "ledger.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct ledger_part {
    char *topic;
    int32_t partition;
    uint32_t epoch;          /* moves on at every assign and revoke */
    bool assigned;
    bool dirty;              /* an offset finished (or a generation began) since the last store */
    offsets_partition_t *op; /* tracker while assigned */
    int live;                /* slots of the current epoch not finished */
};

struct ledger {
    ledger_slot_t *slots;    /* (n_slots) */
    int n_slots, free_head, used;
    int max_attempts;
    ledger_part_t **parts;   /* (cap_parts) */
    int n_parts, cap_parts;
    offsets_t *offs;         /* trackers of the assigned partitions */
    ledger_retry_t *retries;
};

ledger_t *ledger_new(int n_slots, int max_attempts) {
    if (n_slots < 1) return NULL;
    ledger_t *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->slots = calloc((size_t)n_slots, sizeof *l->slots);
    l->offs = offsets_new();
    if (!l->slots || !l->offs) {
        ledger_free(l);
        return NULL;
    }
    l->n_slots = n_slots;
    for (int i = 0; i < n_slots; i++) l->slots[i].next_free = i + 1 < n_slots ? i + 1 : -1;
    l->free_head = 0;
    l->max_attempts = max_attempts;
    return l;
}

static void slot_release(ledger_t *l, ledger_slot_t *s) {
    free(s->id);
    free(s->key);
    kafka_headers_free(s->hdrs);
    s->id = NULL;
    s->key = NULL;
    s->keylen = 0;
    s->hdrs = NULL;
    s->state = LEDGER_SLOT_FREE;
    s->next_free = l->free_head;
    l->free_head = (int)(s - l->slots);
    l->used--;
}

void ledger_free(ledger_t *l) {
    if (!l) return;
    while (l->retries) {
        ledger_retry_t *r = l->retries;
        l->retries = r->next;
        ledger_retry_free(r);
    }
    for (int i = 0; l->slots && i < l->n_slots; i++)
        if (l->slots[i].state != LEDGER_SLOT_FREE) slot_release(l, &l->slots[i]);
    free(l->slots);
    for (int i = 0; i < l->n_parts; i++) {
        free(l->parts[i]->topic);
        free(l->parts[i]);
    }
    free(l->parts);
    offsets_free(l->offs);
    free(l);
}

/* ---------------------------------------------------------------- partitions */

static ledger_part_t *part_find(const ledger_t *l, const char *topic, int32_t partition) {
    for (int i = 0; i < l->n_parts; i++)
        if (l->parts[i]->partition == partition && strcmp(l->parts[i]->topic, topic) == 0) return l->parts[i];
    return NULL;
}

static ledger_part_t *part_get(ledger_t *l, const char *topic, int32_t partition) {
    ledger_part_t *p = part_find(l, topic, partition);
    if (p) return p;
    if (l->n_parts == l->cap_parts) {
        int cap = l->cap_parts ? l->cap_parts * 2 : 16;
        ledger_part_t **np = realloc(l->parts, (size_t)cap * sizeof *np);
        if (!np) return NULL;
        l->parts = np;
        l->cap_parts = cap;
    }
    p = calloc(1, sizeof *p);
    if (!p || !(p->topic = strdup(topic))) {
        free(p);
        return NULL;
    }
    p->partition = partition;
    l->parts[l->n_parts++] = p;
    return p;
}

static ledger_part_t *part_assigned(const ledger_t *l, const char *topic, int32_t partition) {
    ledger_part_t *p = part_find(l, topic, partition);
    return p && p->assigned && p->op ? p : NULL;
}

int ledger_assign(ledger_t *l, const char *topic, int32_t partition) {
    ledger_part_t *p = part_get(l, topic, partition);
    if (!p) return -1;
    offsets_remove(l->offs, p->topic, p->partition); /* a fresh tracker per epoch */
    p->op = offsets_add(l->offs, p->topic, p->partition);
    p->epoch++;
    p->dirty = false;
    p->live = 0;
    p->assigned = p->op != NULL;
    return p->op ? 0 : -1;
}

int64_t ledger_committable(const ledger_t *l, const char *topic, int32_t partition) {
    const ledger_part_t *p = part_assigned(l, topic, partition);
    return p ? offsets_committable(p->op) : -1;
}

/* abort_fn for each slot of p's current epoch still in the engine. */
static void part_abort_engine(ledger_t *l, const ledger_part_t *p, void (*abort_fn)(void *ctx, uint64_t engine_id),
                              void *ctx) {
    for (int j = 0; abort_fn && j < l->n_slots; j++) {
        ledger_slot_t *s = &l->slots[j];
        if (s->state == LEDGER_SLOT_ENGINE && s->part == p && s->epoch == p->epoch)
            abort_fn(ctx, ledger_engine_id(l, s));
    }
}

int ledger_revoke(ledger_t *l, const char *topic, int32_t partition, void (*abort_fn)(void *ctx, uint64_t engine_id),
                  void *ctx) {
    ledger_part_t *p = part_find(l, topic, partition);
    if (!p || !p->assigned) return -1;
    part_abort_engine(l, p, abort_fn, ctx);
    p->assigned = false;
    p->epoch++;
    p->live = 0;
    p->op = NULL;
    offsets_remove(l->offs, p->topic, p->partition);
    return 0;
}

int ledger_new_generation(ledger_t *l, const char *topic, int32_t partition,
                          void (*abort_fn)(void *ctx, uint64_t engine_id), void *ctx, int64_t *last) {
    ledger_part_t *p = part_assigned(l, topic, partition);
    if (last) *last = p ? offsets_last(p->op) : -1;
    if (!p) return -1;
    part_abort_engine(l, p, abort_fn, ctx);
    p->epoch++; /* the old generation's slots are no longer current */
    p->live = 0;
    p->dirty = true; /* store the new generation's first offset at once */
    offsets_reset(p->op);
    return 0;
}

int ledger_live(const ledger_t *l, const char *topic, int32_t partition) {
    const ledger_part_t *p = part_find(l, topic, partition);
    return p && p->assigned ? p->live : 0;
}

int ledger_assigned_count(const ledger_t *l) {
    int n = 0;
    for (int i = 0; i < l->n_parts; i++) n += l->parts[i]->assigned;
    return n;
}

/* ---------------------------------------------------------------- slots */

ledger_status_t ledger_slot_open(ledger_t *l, const char *topic, int32_t partition, int64_t offset,
                                 ledger_slot_t **out) {
    *out = NULL;
    ledger_part_t *p = part_assigned(l, topic, partition);
    if (!p) return LEDGER_NOT_ASSIGNED;
    if (l->free_head < 0) return LEDGER_FULL;
    /* a lower or repeated offset: the log went backwards (the caller starts a new generation) */
    if (offset <= offsets_last(p->op)) return LEDGER_OUT_OF_ORDER;
    if (offsets_track(p->op, offset) != 0) return LEDGER_NO_MEMORY;
    ledger_slot_t *s = &l->slots[l->free_head];
    l->free_head = s->next_free;
    l->used++;
    s->gen++;
    s->state = LEDGER_SLOT_ENGINE;
    s->pending = 0;
    s->failures = 0;
    s->replaced = 0;
    s->part = p;
    s->epoch = p->epoch;
    s->offset = offset;
    s->n_prompt = 0;
    s->t_consumed = 0;
    snprintf(s->source, sizeof s->source, "%s:%d:%lld", topic, (int)partition, (long long)offset);
    p->live++;
    *out = s;
    return LEDGER_OK;
}

bool ledger_slot_current(const ledger_slot_t *s) { return s->part->assigned && s->epoch == s->part->epoch; }

/* The answer is complete and every record is acknowledged: the offset is done. */
static void slot_maybe_finish(ledger_t *l, ledger_slot_t *s) {
    if (s->state != LEDGER_SLOT_ANSWERED || s->pending > 0) return;
    if (ledger_slot_current(s)) {
        if (offsets_done(s->part->op, s->offset) != 0)
            LOG_ERROR("offset was not pending", "topic=%s partition=%d offset=%lld", s->part->topic,
                      (int)s->part->partition, (long long)s->offset);
        s->part->dirty = true;
        s->part->live--;
    }
    slot_release(l, s);
}

void ledger_slot_to_engine(ledger_slot_t *s) { s->state = LEDGER_SLOT_ENGINE; }

void ledger_slot_answered(ledger_t *l, ledger_slot_t *s) {
    s->state = LEDGER_SLOT_ANSWERED;
    slot_maybe_finish(l, s);
}

void ledger_slot_abandon(ledger_t *l, ledger_slot_t *s) {
    s->state = LEDGER_SLOT_ANSWERED;
    s->epoch = UINT32_MAX; /* never current again */
    if (s->pending == 0) slot_release(l, s);
}

uint64_t ledger_engine_id(const ledger_t *l, const ledger_slot_t *s) {
    return ((uint64_t)s->gen << 32) | (uint64_t)(s - l->slots);
}

ledger_slot_t *ledger_slot_by_engine_id(ledger_t *l, uint64_t id) {
    uint32_t idx = (uint32_t)(id & 0xffffffffu), gen = (uint32_t)(id >> 32);
    if (idx >= (uint32_t)l->n_slots) return NULL;
    ledger_slot_t *s = &l->slots[idx];
    return (s->state == LEDGER_SLOT_ENGINE && s->gen == gen) ? s : NULL;
}

int ledger_used(const ledger_t *l) { return l->used; }

void ledger_each_in_engine(ledger_t *l, void (*fn)(void *ctx, uint64_t engine_id), void *ctx) {
    for (int j = 0; j < l->n_slots; j++)
        if (l->slots[j].state == LEDGER_SLOT_ENGINE) fn(ctx, ledger_engine_id(l, &l->slots[j]));
}

/* ---------------------------------------------------------------- records and retries */

void ledger_record_sent(ledger_slot_t *s) { s->pending++; }

void ledger_record_acked(ledger_t *l, ledger_slot_t *s) {
    s->pending--;
    slot_maybe_finish(l, s);
}

/* The backoff after s->failures failures: 0.5, 1, 2, 4, 8, 16 s. */
static double retry_due(const ledger_slot_t *s, double now_ms) {
    int f = s->failures < 6 ? s->failures : 6;
    return now_ms + 250.0 * (double)(1 << f);
}

ledger_status_t ledger_record_failed(ledger_t *l, ledger_slot_t *s, const char *topic, const void *key,
                                     size_t keylen, const void *value, size_t len, rd_kafka_headers_t *hdrs,
                                     double now_ms) {
    if (!ledger_slot_current(s)) { /* its partition moved on: the new owner answers it */
        kafka_headers_free(hdrs);
        ledger_record_acked(l, s);
        return LEDGER_DROPPED;
    }
    /* The record stays counted in s->pending: the retry entry stands for it. */
    s->failures++;
    if (s->failures >= l->max_attempts) {
        kafka_headers_free(hdrs);
        return LEDGER_GIVE_UP;
    }
    ledger_retry_t *r = calloc(1, sizeof *r);
    if (!r) goto oom;
    if (keylen && !(r->key = malloc(keylen))) goto oom;
    if (!(r->value = malloc(len ? len : 1))) goto oom;
    if (keylen) memcpy(r->key, key, keylen);
    if (len) memcpy(r->value, value, len);
    r->slot = s;
    r->topic = topic;
    r->keylen = keylen;
    r->len = len;
    r->hdrs = hdrs;
    r->due = retry_due(s, now_ms);
    r->next = l->retries;
    l->retries = r;
    return LEDGER_RETRY;
oom:
    if (r) {
        free(r->key);
        free(r);
    }
    kafka_headers_free(hdrs);
    return LEDGER_NO_MEMORY;
}

ledger_status_t ledger_record_refused(ledger_t *l, ledger_slot_t *s) {
    if (!ledger_slot_current(s)) { /* its partition moved on: the new owner answers it */
        ledger_record_acked(l, s);
        return LEDGER_DROPPED;
    }
    if (s->replaced >= LEDGER_MAX_REPLACED) {
        ledger_record_acked(l, s);
        return LEDGER_LET_GO;
    }
    s->replaced++;
    return LEDGER_REPLACE;
}

bool ledger_retry_pending(const ledger_t *l) { return l->retries != NULL; }

ledger_retry_t *ledger_retry_next_due(ledger_t *l, double now_ms, ledger_status_t *st) {
    for (;;) {
        ledger_retry_t *r = NULL, **pp = &l->retries;
        while (*pp && (*pp)->due > now_ms) pp = &(*pp)->next;
        if (!*pp) return NULL;
        r = *pp;
        *pp = r->next;
        r->next = NULL;
        if (!ledger_slot_current(r->slot)) { /* its partition moved on: the new owner answers it */
            ledger_record_acked(l, r->slot);
            ledger_retry_free(r);
            continue;
        }
        *st = r->slot->failures >= l->max_attempts ? LEDGER_GIVE_UP : LEDGER_RETRY;
        return r;
    }
}

void ledger_retry_sent(ledger_retry_t *r) {
    r->hdrs = NULL; /* owned by librdkafka */
    ledger_retry_free(r);
}

void ledger_retry_failed(ledger_t *l, ledger_retry_t *r, double now_ms) {
    r->slot->failures++;
    r->due = retry_due(r->slot, now_ms);
    r->next = l->retries;
    l->retries = r;
}

void ledger_retry_free(ledger_retry_t *r) {
    if (!r) return;
    free(r->key);
    free(r->value);
    kafka_headers_free(r->hdrs);
    free(r);
}

/* ---------------------------------------------------------------- exactly-once */

ledger_status_t ledger_skip(ledger_t *l, const char *topic, int32_t partition, int64_t offset) {
    ledger_part_t *p = part_assigned(l, topic, partition);
    if (!p) return LEDGER_NOT_ASSIGNED;
    if (offset <= offsets_last(p->op)) return LEDGER_OUT_OF_ORDER;
    if (offsets_track(p->op, offset) != 0) return LEDGER_NO_MEMORY;
    offsets_done(p->op, offset);
    p->dirty = true;
    return LEDGER_OK;
}

void ledger_each_assigned(ledger_t *l,
                          void (*fn)(void *ctx, const char *topic, int32_t partition, const offsets_partition_t *op),
                          void *ctx) {
    for (int i = 0; i < l->n_parts; i++)
        if (l->parts[i]->assigned && l->parts[i]->op) fn(ctx, l->parts[i]->topic, l->parts[i]->partition, l->parts[i]->op);
}

/* ---------------------------------------------------------------- offsets */

void ledger_store_offsets(ledger_t *l, void (*store)(void *ctx, const char *topic, int32_t partition, int64_t next),
                          void *ctx) {
    for (int i = 0; i < l->n_parts; i++) {
        ledger_part_t *p = l->parts[i];
        if (!p->dirty || !p->assigned || !p->op) continue;
        p->dirty = false;
        int64_t o;
        if (offsets_take_committable(p->op, &o) && o >= 0) store(ctx, p->topic, p->partition, o);
    }
}
