/* qweights.cu — the registry of native weight matrices (qweights.h): a sorted array of
 * records, binary-searched by address. Host code only; lives in kernels/ with the
 * backend glue that owns it. */
#include <stdlib.h>
#include <string.h>

#include "qweights.h"

typedef struct {
    uintptr_t p;
    int qt;
    int64_t rows, cols;
    size_t bytes;
} qweights_rec_t;

struct qweights {
    qweights_rec_t *r;
    int n, cap;
};

qweights_t *qweights_new(void) { return (qweights_t *)calloc(1, sizeof(qweights_t)); }

void qweights_free(qweights_t *q) {
    if (!q) return;
    free(q->r);
    free(q);
}

/* Index of the first record with address >= p. */
static int qweights_lower(const qweights_t *q, uintptr_t p) {
    int lo = 0, hi = q->n;
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (q->r[mid].p < p) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

int qweights_add(qweights_t *q, const void *p, int qt, int64_t rows, int64_t cols, size_t bytes) {
    const uintptr_t a = (uintptr_t)p;
    int i = qweights_lower(q, a);
    if (i < q->n && q->r[i].p == a) { /* rewritten: the new contents win */
        q->r[i] = (qweights_rec_t){a, qt, rows, cols, bytes};
        return 0;
    }
    if (q->n == q->cap) {
        const int cap = q->cap ? 2 * q->cap : 64;
        qweights_rec_t *nr = (qweights_rec_t *)realloc(q->r, sizeof *nr * (size_t)cap);
        if (!nr) return -1;
        q->r = nr;
        q->cap = cap;
    }
    memmove(q->r + i + 1, q->r + i, sizeof *q->r * (size_t)(q->n - i));
    q->r[i] = (qweights_rec_t){a, qt, rows, cols, bytes};
    q->n++;
    return 0;
}

int qweights_parts(const qweights_t *q, const void *p, int64_t rows, int64_t cols, qweights_part_t *parts, int max) {
    if (!q || !q->n) return 0;
    int i = qweights_lower(q, (uintptr_t)p);
    if (i == q->n || q->r[i].p != (uintptr_t)p) return 0;
    int n = 0;
    int64_t have = 0;
    for (uintptr_t at = (uintptr_t)p; have < rows; i++) {
        if (i == q->n || q->r[i].p != at || q->r[i].cols != cols || n == max) return -1;
        parts[n++] = (qweights_part_t){(const void *)at, q->r[i].qt, q->r[i].rows};
        have += q->r[i].rows;
        at += q->r[i].bytes;
    }
    return have == rows ? n : -1;
}

bool qweights_has(const qweights_t *q, const void *p) {
    if (!q || !q->n) return false;
    const int i = qweights_lower(q, (uintptr_t)p);
    return i < q->n && q->r[i].p == (uintptr_t)p;
}

void qweights_forget(qweights_t *q, const void *p) {
    if (!q || !q->n) return;
    const int i = qweights_lower(q, (uintptr_t)p);
    int j = i;
    for (uintptr_t at = (uintptr_t)p; j < q->n && q->r[j].p == at; j++) at += q->r[j].bytes;
    memmove(q->r + i, q->r + j, sizeof *q->r * (size_t)(q->n - j));
    q->n -= j - i;
}

int64_t qweights_max_elems(const qweights_t *q) {
    int64_t m = 0;
    for (int i = 0; q && i < q->n; i++)
        if (q->r[i].rows * q->r[i].cols > m) m = q->r[i].rows * q->r[i].cols;
    return m;
}
