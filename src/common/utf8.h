/* utf8.h — the one UTF-8 validator, decoder and encoder (strict: no overlong forms,
 * no surrogates, nothing above U+10FFFF). Used by the codec, the tokenizer and the
 * chat templates; docs/architecture.md "common". */
#ifndef KRILL_UTF8_H
#define KRILL_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length of the valid UTF-8 prefix of s (== n when the whole is valid). */
size_t utf8_valid_prefix(const void *s, size_t n);
bool utf8_valid(const void *s, size_t n);
/* Decodes the sequence at s (n bytes available): its length, or 0 when it is invalid
 * or cut short (then *cp is untouched). */
size_t utf8_decode(const void *s, size_t n, uint32_t *cp);
/* Writes cp (<= U+10FFFF) to out (room for 4 bytes); returns the byte count. */
size_t utf8_encode(uint32_t cp, char *out);
/* Bytes a sequence starting with lead byte c needs; 0 when c cannot start one. */
int utf8_lead_len(uint8_t c);
/* Can b be continuation byte number k (1-based) after lead byte c? */
bool utf8_cont_ok(uint8_t c, int k, uint8_t b);
/* A malloc'd, NUL-terminated copy of s with each invalid byte replaced by U+FFFD;
 * NULL when out of memory. */
char *utf8_sanitize(const char *s, size_t n, size_t *outlen);

#endif
