/* txn.c — see txn.h. Positions are a short array searched linearly (a worker holds a
 * few dozen partitions); each keeps its committed metadata string, to tell whether a
 * partition moved since the last commit, and the ranges parsed from it, for skips. */
#include "txn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

typedef struct txn_pos {
    char *topic;
    int32_t partition;
    int64_t offset;      /* committed; -1 = none known */
    char *meta;          /* committed metadata (NUL-terminated copy) */
    size_t meta_len;
    txn_range_t *skip;   /* (n_skip) increasing, all above offset */
    size_t n_skip;
} txn_pos_t;

struct txn {
    int interval_ms, max_answers;
    double opened_ms;
    int records;
    txn_pos_t *pos;
    size_t n_pos, cap_pos;
};

txn_t *txn_new(int interval_ms, int max_answers) {
    txn_t *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->interval_ms = interval_ms > 0 ? interval_ms : 1;
    t->max_answers = max_answers > 0 ? max_answers : 1;
    return t;
}

static void pos_clear(txn_pos_t *p) {
    free(p->topic);
    free(p->meta);
    free(p->skip);
}

void txn_free(txn_t *t) {
    if (!t) return;
    for (size_t i = 0; i < t->n_pos; i++) pos_clear(&t->pos[i]);
    free(t->pos);
    free(t);
}

/* ---------------------------------------------------------------- cadence */

void txn_begun(txn_t *t, double now_ms) {
    t->opened_ms = now_ms;
    t->records = 0;
}

void txn_add(txn_t *t, int n) { t->records += n; }

int txn_records(const txn_t *t) { return t->records; }

bool txn_due(const txn_t *t, double now_ms, bool offsets_moved) {
    if (t->records >= t->max_answers) return true;
    if (t->records == 0 && !offsets_moved) return false;
    return now_ms - t->opened_ms >= t->interval_ms;
}

int txn_wait_ms(const txn_t *t, double now_ms) {
    double left = t->opened_ms + t->interval_ms - now_ms;
    if (left < 1) return 1;
    return left > t->interval_ms ? t->interval_ms : (int)left;
}

/* ---------------------------------------------------------------- metadata */

typedef struct {
    char *out;
    size_t cap, len;
    int64_t prev;
    bool over;
} enc_t;

static void enc_run(void *ctx, int64_t first, int64_t last) {
    enc_t *e = ctx;
    if (e->over) return;
    char run[48];
    int n = last > first ? snprintf(run, sizeof run, "%s%lld-%lld", e->len > strlen(TXN_META_PREFIX) ? "," : "",
                                    (long long)(first - e->prev), (long long)(last - first))
                         : snprintf(run, sizeof run, "%s%lld", e->len > strlen(TXN_META_PREFIX) ? "," : "",
                                    (long long)(first - e->prev));
    if (e->len + (size_t)n + 1 > e->cap) {
        e->over = true;
        return;
    }
    memcpy(e->out + e->len, run, (size_t)n + 1);
    e->len += (size_t)n;
    e->prev = last;
}

static const struct txn_pos *pos_find_c(const txn_t *t, const char *topic, int32_t partition);

int txn_commit_point(const txn_t *t, const char *topic, int32_t partition, const offsets_partition_t *p,
                     char *out, size_t cap, int64_t *watermark, size_t *len, size_t *n_ahead) {
    size_t pre = strlen(TXN_META_PREFIX);
    *len = 0;
    *n_ahead = 0;
    *watermark = -1;
    if (cap < 1) return -1;
    out[0] = 0;
    int64_t last = offsets_last(p), w = offsets_committable(p);
    if (last < 0) return 0; /* nothing taken since the position was read: it stands */
    /* Answered offsets of the committed position not consumed again yet (above the highest
     * tracked) are still answered: carried into the new metadata. */
    const txn_range_t *carry = NULL;
    size_t n_carry = 0, i = 0;
    const struct txn_pos *pos = t ? pos_find_c(t, topic, partition) : NULL;
    if (pos) {
        carry = pos->skip;
        n_carry = pos->n_skip;
    }
    while (i < n_carry && carry[i].last <= last) i++;
    if (w == last + 1) /* nothing pending: the watermark moves past answered runs that start at it */
        while (i < n_carry && (carry[i].first > last ? carry[i].first : last + 1) == w) w = carry[i++].last + 1;
    *watermark = w;
    size_t n = offsets_done_runs(p, NULL, NULL);
    if (n == 0 && i == n_carry) return 0;
    if (cap < pre + 1) return -1;
    memcpy(out, TXN_META_PREFIX, pre + 1);
    enc_t e = {.out = out, .cap = cap, .len = pre, .prev = w};
    offsets_done_runs(p, enc_run, &e);
    for (; i < n_carry; i++) {
        int64_t first = carry[i].first > last ? carry[i].first : last + 1;
        enc_run(&e, first, carry[i].last);
        n += (size_t)(carry[i].last - first + 1);
    }
    if (e.over) return -1;
    *len = e.len;
    *n_ahead = n;
    return 0;
}

/* A decimal number >= 0 at *s (advanced past it); -1 when there is none. */
static int64_t parse_num(const char **s, const char *end) {
    const char *p = *s;
    int64_t v = 0;
    if (p == end || *p < '0' || *p > '9') return -1;
    while (p < end && *p >= '0' && *p <= '9') {
        if (v > (INT64_MAX - 9) / 10) return -1;
        v = v * 10 + (*p++ - '0');
    }
    *s = p;
    return v;
}

int txn_meta_parse(const char *meta, size_t len, int64_t watermark, txn_range_t **ranges, size_t *n, char *err,
                   size_t errlen) {
    size_t pre = strlen(TXN_META_PREFIX);
    *ranges = NULL;
    *n = 0;
    if (!meta || len < pre || memcmp(meta, TXN_META_PREFIX, pre) != 0) return 1;
    const char *s = meta + pre, *end = meta + len;
    size_t cap = 0;
    int64_t prev = watermark;
    while (s < end) {
        int64_t d = parse_num(&s, end), l = 0;
        if (d < 1) goto bad;
        if (s < end && *s == '-') {
            s++;
            if ((l = parse_num(&s, end)) < 0) goto bad;
        }
        if (s < end && *s++ != ',') goto bad;
        if (s == end && s[-1] == ',') goto bad;
        if (prev > INT64_MAX - d || prev + d > INT64_MAX - l) goto bad;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            txn_range_t *nr = realloc(*ranges, cap * sizeof *nr);
            if (!nr) {
                err_set(err, errlen, "out of memory");
                goto fail;
            }
            *ranges = nr;
        }
        (*ranges)[*n] = (txn_range_t){prev + d, prev + d + l};
        prev = prev + d + l;
        (*n)++;
    }
    return 0;
bad:
    err_set(err, errlen, "offset metadata \"%.*s\" is not a valid krill run list at byte %zu",
            (int)(len < 64 ? len : 64), meta, (size_t)(s - meta));
fail:
    free(*ranges);
    *ranges = NULL;
    *n = 0;
    return -1;
}

/* ---------------------------------------------------------------- positions */

static txn_pos_t *pos_find(const txn_t *t, const char *topic, int32_t partition) {
    for (size_t i = 0; i < t->n_pos; i++)
        if (t->pos[i].partition == partition && strcmp(t->pos[i].topic, topic) == 0) return &t->pos[i];
    return NULL;
}

static const struct txn_pos *pos_find_c(const txn_t *t, const char *topic, int32_t partition) {
    return pos_find(t, topic, partition);
}

int txn_position_set(txn_t *t, const char *topic, int32_t partition, int64_t offset, const char *meta, size_t len,
                     char *err, size_t errlen) {
    txn_pos_t *p = pos_find(t, topic, partition);
    if (!p) {
        if (t->n_pos == t->cap_pos) {
            size_t cap = t->cap_pos ? t->cap_pos * 2 : 16;
            txn_pos_t *np = realloc(t->pos, cap * sizeof *np);
            if (!np) goto oom;
            t->pos = np;
            t->cap_pos = cap;
        }
        p = &t->pos[t->n_pos];
        memset(p, 0, sizeof *p);
        if (!(p->topic = strdup(topic))) goto oom;
        p->partition = partition;
        t->n_pos++;
    }
    char *copy = malloc(len + 1);
    if (!copy) goto oom;
    if (len) memcpy(copy, meta, len);
    copy[len] = 0;
    free(p->meta);
    free(p->skip);
    p->meta = copy;
    p->meta_len = len;
    p->offset = offset < 0 ? -1 : offset;
    p->skip = NULL;
    p->n_skip = 0;
    if (offset < 0 || len == 0) return 0;
    int rc = txn_meta_parse(meta, len, offset, &p->skip, &p->n_skip, err, errlen);
    if (rc == 1) err_set(err, errlen, "offset metadata is not krill's: nothing to skip");
    return rc == 0 ? 0 : 1;
oom:
    err_set(err, errlen, "out of memory");
    return -1;
}

int64_t txn_position_offset(const txn_t *t, const char *topic, int32_t partition) {
    const txn_pos_t *p = pos_find(t, topic, partition);
    return p ? p->offset : -1;
}

bool txn_position_same(const txn_t *t, const char *topic, int32_t partition, int64_t offset, const char *meta,
                       size_t len) {
    const txn_pos_t *p = pos_find(t, topic, partition);
    return p && p->offset == offset && p->meta_len == len && (len == 0 || memcmp(p->meta, meta, len) == 0);
}

bool txn_position_skip(const txn_t *t, const char *topic, int32_t partition, int64_t offset) {
    const txn_pos_t *p = pos_find(t, topic, partition);
    if (!p || p->n_skip == 0 || offset < p->skip[0].first) return false;
    size_t lo = 0, hi = p->n_skip;
    while (lo < hi) { /* the last range starting at or below offset */
        size_t mid = lo + (hi - lo) / 2;
        if (p->skip[mid].first <= offset) lo = mid + 1;
        else hi = mid;
    }
    return offset <= p->skip[lo - 1].last;
}

void txn_position_drop(txn_t *t, const char *topic, int32_t partition) {
    txn_pos_t *p = pos_find(t, topic, partition);
    if (!p) return;
    pos_clear(p);
    *p = t->pos[--t->n_pos];
}
