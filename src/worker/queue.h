/* queue.h — a bounded FIFO of fixed-size elements between two threads.
 * (Where this part sits among the others: docs/architecture.md.)
 *
 * Elements are copied in and out by value (elem_size bytes), into one buffer
 * allocated up front: no allocation per push. queue_push blocks (up to a timeout)
 * while the queue is full; queue_pop never blocks. Any number of producers and
 * consumers; one mutex. The worker's engine thread pushes finished results here and
 * the io thread pops them. */
#ifndef KRILL_QUEUE_H
#define KRILL_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct queue queue_t;

queue_t *queue_new(size_t capacity, size_t elem_size); /* NULL on out of memory or 0 sizes */
void queue_free(queue_t *q);                            /* accepts NULL */
/* Copies *elem in. Returns 0, or -1 when still full after timeout_ms (<0 = wait forever)
 * or when the queue was closed. */
int queue_push(queue_t *q, const void *elem, int timeout_ms);
/* Copies the oldest element out; true when there was one. */
bool queue_pop(queue_t *q, void *elem);
size_t queue_len(queue_t *q);
size_t queue_capacity(const queue_t *q);
/* Wakes blocked pushers; later pushes fail. Pops still drain what is left. */
void queue_close(queue_t *q);

#endif
