/* sha256.h — SHA-256 (FIPS 180-4), streaming and one-shot, plus a lower-case hex form.
 * (Where this part sits among the others: docs/architecture.md.)
 *
 * Used for the prefix cache's block keys (src/engine/prefix_cache.c) and for
 * krill-bench's output_digest. Checked against the NIST vectors in tests/unit/test_sha256.c.
 * No allocation; a sha256_t may be copied to fork a running hash. */
#ifndef KRILL_SHA256_H
#define KRILL_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_BYTES 32

typedef struct {
    uint32_t h[8];
    uint64_t len;     /* bytes hashed so far */
    uint8_t buf[64];  /* the pending partial block */
    size_t n;         /* bytes in buf */
} sha256_t;

void sha256_init(sha256_t *c);
void sha256_update(sha256_t *c, const void *data, size_t len);
void sha256_final(sha256_t *c, uint8_t out[SHA256_BYTES]); /* c must be re-initialised after */
void sha256(const void *data, size_t len, uint8_t out[SHA256_BYTES]);
/* 64 lower-case hex digits and a NUL. */
void sha256_hex(const uint8_t d[SHA256_BYTES], char out[2 * SHA256_BYTES + 1]);

#endif
