/* queue.c — see queue.h. A ring buffer under one mutex; a condition variable for
 * pushers waiting for room. */
#include "queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct queue {
    pthread_mutex_t mu;
    pthread_cond_t room;
    unsigned char *buf; /* (capacity, elem_size) */
    size_t cap, esz, head, len;
    bool closed;
};

queue_t *queue_new(size_t capacity, size_t elem_size) {
    if (capacity == 0 || elem_size == 0 || capacity > SIZE_MAX / elem_size) return NULL;
    queue_t *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->buf = malloc(capacity * elem_size);
    if (!q->buf) {
        free(q);
        return NULL;
    }
    q->cap = capacity;
    q->esz = elem_size;
    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->room, &ca);
    pthread_condattr_destroy(&ca);
    return q;
}

void queue_free(queue_t *q) {
    if (!q) return;
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->room);
    free(q->buf);
    free(q);
}

int queue_push(queue_t *q, const void *elem, int timeout_ms) {
    struct timespec dl;
    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&q->mu);
    while (q->len == q->cap && !q->closed) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&q->room, &q->mu);
        } else if (pthread_cond_timedwait(&q->room, &q->mu, &dl) == ETIMEDOUT) {
            break;
        }
    }
    if (q->len == q->cap || q->closed) {
        pthread_mutex_unlock(&q->mu);
        return -1;
    }
    memcpy(q->buf + ((q->head + q->len) % q->cap) * q->esz, elem, q->esz);
    q->len++;
    pthread_mutex_unlock(&q->mu);
    return 0;
}

bool queue_pop(queue_t *q, void *elem) {
    pthread_mutex_lock(&q->mu);
    if (q->len == 0) {
        pthread_mutex_unlock(&q->mu);
        return false;
    }
    memcpy(elem, q->buf + q->head * q->esz, q->esz);
    q->head = (q->head + 1) % q->cap;
    q->len--;
    pthread_cond_signal(&q->room);
    pthread_mutex_unlock(&q->mu);
    return true;
}

size_t queue_len(queue_t *q) {
    pthread_mutex_lock(&q->mu);
    size_t n = q->len;
    pthread_mutex_unlock(&q->mu);
    return n;
}

size_t queue_capacity(const queue_t *q) { return q->cap; }

void queue_close(queue_t *q) {
    pthread_mutex_lock(&q->mu);
    q->closed = true;
    pthread_cond_broadcast(&q->room);
    pthread_mutex_unlock(&q->mu);
}
