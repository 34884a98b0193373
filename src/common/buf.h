/* buf.h — the one growable byte buffer. data stays NUL-terminated after every
 * successful append (the NUL is not counted in len), so text built here is a C string.
 * After an allocation failure the buffer keeps what it had, sets oom, and ignores
 * further appends: callers check once at the end. */
#ifndef KRILL_BUF_H
#define KRILL_BUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *data;
    size_t len, cap;
    bool oom;
} buf_t;

/* Room for extra more bytes (+ the NUL); 0, or -1 when out of memory. */
int buf_reserve(buf_t *b, size_t extra);
int buf_append(buf_t *b, const void *p, size_t n);
int buf_puts(buf_t *b, const char *s);
int buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* msgpack_packer / json_dump_callback write callback: data is a buf_t *. */
int buf_write_cb(void *data, const char *p, size_t n);
/* Hands data to the caller (NUL-terminated, may be NULL when nothing was appended);
 * the buffer is empty afterwards. */
char *buf_detach(buf_t *b, size_t *len);
void buf_reset(buf_t *b); /* len = 0, keeps the memory, clears oom */
void buf_free(buf_t *b);  /* frees data, leaves b zeroed; accepts NULL */

#endif
