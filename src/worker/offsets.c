/* offsets.c — per-partition watermark over out-of-order completions (see offsets.h).
 *
 * A partition keeps a ring of the offsets tracked and not yet popped, in increasing
 * order (track() refuses anything else), with a done flag each. done() finds its
 * offset by binary search, marks it, then pops the done prefix, so the ring's front
 * is always the lowest pending offset. */
#include "offsets.h"

#include <stdlib.h>
#include <string.h>

struct offsets_partition {
    int64_t *off;      /* (cap) ring of tracked offsets, increasing from head */
    uint8_t *done;     /* (cap) 1 once done() */
    size_t cap;        /* power of two, or 0 */
    size_t head, n;    /* ring window */
    size_t n_pending;
    int64_t max_tracked; /* -1 before the first track */
    int64_t last_taken;  /* last value returned true by offsets_take_committable */
};

offsets_partition_t *offsets_partition_new(void) {
    offsets_partition_t *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->max_tracked = -1;
    p->last_taken = -1;
    return p;
}

void offsets_partition_free(offsets_partition_t *p) {
    if (!p) return;
    free(p->off);
    free(p->done);
    free(p);
}

static int grow(offsets_partition_t *p) {
    size_t ncap = p->cap ? p->cap * 2 : 256;
    int64_t *off = malloc(ncap * sizeof *off);
    uint8_t *done = malloc(ncap);
    if (!off || !done) {
        free(off);
        free(done);
        return -1;
    }
    for (size_t i = 0; i < p->n; i++) {
        size_t j = (p->head + i) & (p->cap - 1);
        off[i] = p->off[j];
        done[i] = p->done[j];
    }
    free(p->off);
    free(p->done);
    p->off = off;
    p->done = done;
    p->cap = ncap;
    p->head = 0;
    return 0;
}

int offsets_track(offsets_partition_t *p, int64_t o) {
    if (!p || o < 0 || o <= p->max_tracked) return -1;
    if (p->n == p->cap && grow(p) != 0) return -1;
    size_t j = (p->head + p->n) & (p->cap - 1);
    p->off[j] = o;
    p->done[j] = 0;
    p->n++;
    p->n_pending++;
    p->max_tracked = o;
    return 0;
}

/* Ring index of o, or (size_t)-1. */
static size_t find(const offsets_partition_t *p, int64_t o) {
    size_t lo = 0, hi = p->n, mask = p->cap - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int64_t v = p->off[(p->head + mid) & mask];
        if (v == o) return (p->head + mid) & mask;
        if (v < o) lo = mid + 1;
        else hi = mid;
    }
    return (size_t)-1;
}

int offsets_done(offsets_partition_t *p, int64_t o) {
    if (!p || p->n == 0) return -1;
    size_t j = find(p, o);
    if (j == (size_t)-1 || p->done[j]) return -1;
    p->done[j] = 1;
    p->n_pending--;
    size_t mask = p->cap - 1;
    while (p->n > 0 && p->done[p->head]) {
        p->head = (p->head + 1) & mask;
        p->n--;
    }
    return 0;
}

int64_t offsets_committable(const offsets_partition_t *p) {
    if (!p) return -1;
    if (p->n > 0) return p->off[p->head];
    return p->max_tracked >= 0 ? p->max_tracked + 1 : -1;
}

bool offsets_take_committable(offsets_partition_t *p, int64_t *o) {
    int64_t c = offsets_committable(p);
    if (c < 0 || c == p->last_taken) return false;
    p->last_taken = c;
    if (o) *o = c;
    return true;
}

size_t offsets_pending(const offsets_partition_t *p) { return p ? p->n_pending : 0; }

int64_t offsets_last(const offsets_partition_t *p) { return p ? p->max_tracked : -1; }

void offsets_reset(offsets_partition_t *p) {
    if (!p) return;
    p->head = p->n = p->n_pending = 0;
    p->max_tracked = -1;
    p->last_taken = -1;
}

bool offsets_is_pending(const offsets_partition_t *p, int64_t o) {
    if (!p || p->n == 0) return false;
    size_t j = find(p, o);
    return j != (size_t)-1 && !p->done[j];
}

size_t offsets_done_runs(const offsets_partition_t *p, void (*fn)(void *ctx, int64_t first, int64_t last), void *ctx) {
    if (!p) return 0;
    size_t mask = p->cap - 1, n_done = 0;
    int64_t first = -1, last = -1;
    for (size_t i = 0; i < p->n; i++) { /* the head is pending: everything done is above it */
        size_t j = (p->head + i) & mask;
        if (p->done[j]) {
            if (first < 0) first = p->off[j];
            last = p->off[j];
            n_done++;
        } else if (first >= 0) {
            if (fn) fn(ctx, first, last);
            first = -1;
        }
    }
    if (first >= 0 && fn) fn(ctx, first, last);
    return n_done;
}

/* ---------------------------------------------------------------- the set */

typedef struct {
    char *topic;
    int32_t partition;
    offsets_partition_t *p;
} entry_t;

struct offsets {
    entry_t *e;
    size_t n, cap;
};

offsets_t *offsets_new(void) { return calloc(1, sizeof(offsets_t)); }

void offsets_free(offsets_t *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->e[i].topic);
        offsets_partition_free(s->e[i].p);
    }
    free(s->e);
    free(s);
}

static size_t lookup(const offsets_t *s, const char *topic, int32_t partition) {
    for (size_t i = 0; i < s->n; i++)
        if (s->e[i].partition == partition && strcmp(s->e[i].topic, topic) == 0) return i;
    return (size_t)-1;
}

offsets_partition_t *offsets_add(offsets_t *s, const char *topic, int32_t partition) {
    if (!s || !topic) return NULL;
    size_t i = lookup(s, topic, partition);
    if (i != (size_t)-1) return s->e[i].p;
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 16;
        entry_t *ne = realloc(s->e, ncap * sizeof *ne);
        if (!ne) return NULL;
        s->e = ne;
        s->cap = ncap;
    }
    char *t = strdup(topic);
    offsets_partition_t *p = offsets_partition_new();
    if (!t || !p) {
        free(t);
        offsets_partition_free(p);
        return NULL;
    }
    s->e[s->n++] = (entry_t){t, partition, p};
    return p;
}

int offsets_remove(offsets_t *s, const char *topic, int32_t partition) {
    if (!s || !topic) return -1;
    size_t i = lookup(s, topic, partition);
    if (i == (size_t)-1) return -1;
    free(s->e[i].topic);
    offsets_partition_free(s->e[i].p);
    s->e[i] = s->e[--s->n];
    return 0;
}

offsets_partition_t *offsets_get(const offsets_t *s, const char *topic, int32_t partition) {
    if (!s || !topic) return NULL;
    size_t i = lookup(s, topic, partition);
    return i == (size_t)-1 ? NULL : s->e[i].p;
}

size_t offsets_count(const offsets_t *s) { return s ? s->n : 0; }

offsets_partition_t *offsets_at(const offsets_t *s, size_t i, const char **topic, int32_t *partition) {
    if (!s || i >= s->n) return NULL;
    if (topic) *topic = s->e[i].topic;
    if (partition) *partition = s->e[i].partition;
    return s->e[i].p;
}

size_t offsets_pending_total(const offsets_t *s) {
    size_t t = 0;
    for (size_t i = 0; s && i < s->n; i++) t += s->e[i].p->n_pending;
    return t;
}
