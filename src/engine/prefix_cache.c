/* prefix_cache.c — hash-chain block keys and the key -> block index (see prefix_cache.h).
 *
 * The table: 2^k bucket heads (k the smallest with 2^k >= n_blocks) and, per block, its
 * key and the next block in the same bucket. A key's bucket is its first 8 bytes
 * (already uniform: they come from SHA-256). */
#include "prefix_cache.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sha256.h"

struct prefix_index {
    int64_t n_blocks;
    uint64_t mask;       /* buckets - 1 */
    int32_t *head;       /* (buckets) first block of each bucket, -1 = empty */
    int32_t *next;       /* (n_blocks) next block in the bucket chain, -1 = end */
    prefix_key_t *key;   /* (n_blocks) */
    uint8_t *keyed;      /* (n_blocks) 1 while the block holds key[b] */
    int64_t count;
};

void prefix_key_root(prefix_key_t *root, const char *salt) {
    static const char tag[] = "krill-prefix-v1"; /* the NUL after it separates the salt */
    sha256_t c;
    uint8_t d[SHA256_BYTES];
    sha256_init(&c);
    sha256_update(&c, tag, sizeof(tag));
    if (salt) sha256_update(&c, salt, strlen(salt));
    sha256_final(&c, d);
    memcpy(root->b, d, PREFIX_KEY_BYTES);
}

void prefix_key_next(prefix_key_t *out, const prefix_key_t *parent, const int32_t *tokens, int n) {
    sha256_t c;
    uint8_t d[SHA256_BYTES], le[4];
    sha256_init(&c);
    sha256_update(&c, parent->b, PREFIX_KEY_BYTES);
    for (int i = 0; i < n; i++) { /* little-endian whatever the host, so keys are portable */
        uint32_t v = (uint32_t)tokens[i];
        le[0] = (uint8_t)v;
        le[1] = (uint8_t)(v >> 8);
        le[2] = (uint8_t)(v >> 16);
        le[3] = (uint8_t)(v >> 24);
        sha256_update(&c, le, 4);
    }
    sha256_final(&c, d);
    memcpy(out->b, d, PREFIX_KEY_BYTES);
}

static uint64_t bucket(const prefix_index_t *ix, const prefix_key_t *k) {
    uint64_t h;
    memcpy(&h, k->b, sizeof(h));
    return h & ix->mask;
}

prefix_index_t *prefix_index_new(int64_t n_blocks) {
    if (n_blocks < 1 || n_blocks > INT32_MAX) return NULL;
    prefix_index_t *ix = calloc(1, sizeof(*ix));
    if (!ix) return NULL;
    uint64_t nb = 1;
    while (nb < (uint64_t)n_blocks) nb <<= 1;
    ix->n_blocks = n_blocks;
    ix->mask = nb - 1;
    ix->head = malloc(nb * sizeof(int32_t));
    ix->next = malloc((size_t)n_blocks * sizeof(int32_t));
    ix->key = calloc((size_t)n_blocks, sizeof(prefix_key_t));
    ix->keyed = calloc((size_t)n_blocks, 1);
    if (!ix->head || !ix->next || !ix->key || !ix->keyed) {
        prefix_index_free(ix);
        return NULL;
    }
    for (uint64_t i = 0; i < nb; i++) ix->head[i] = -1;
    for (int64_t i = 0; i < n_blocks; i++) ix->next[i] = -1;
    return ix;
}

void prefix_index_free(prefix_index_t *ix) {
    if (!ix) return;
    free(ix->head);
    free(ix->next);
    free(ix->key);
    free(ix->keyed);
    free(ix);
}

int32_t prefix_index_find(const prefix_index_t *ix, const prefix_key_t *key) {
    for (int32_t b = ix->head[bucket(ix, key)]; b >= 0; b = ix->next[b])
        if (memcmp(ix->key[b].b, key->b, PREFIX_KEY_BYTES) == 0) return b;
    return -1;
}

bool prefix_index_insert(prefix_index_t *ix, const prefix_key_t *key, int32_t block) {
    CHECK(block >= 0 && block < ix->n_blocks && !ix->keyed[block]);
    if (prefix_index_find(ix, key) >= 0) return false;
    uint64_t h = bucket(ix, key);
    ix->key[block] = *key;
    ix->keyed[block] = 1;
    ix->next[block] = ix->head[h];
    ix->head[h] = block;
    ix->count++;
    return true;
}

void prefix_index_remove(prefix_index_t *ix, int32_t block) {
    CHECK(block >= 0 && block < ix->n_blocks);
    if (!ix->keyed[block]) return;
    for (int32_t *pp = &ix->head[bucket(ix, &ix->key[block])]; *pp >= 0; pp = &ix->next[*pp])
        if (*pp == block) {
            *pp = ix->next[block];
            break;
        }
    ix->next[block] = -1;
    ix->keyed[block] = 0;
    ix->count--;
}

bool prefix_index_holds(const prefix_index_t *ix, int32_t block) { return ix->keyed[block] != 0; }

int64_t prefix_index_count(const prefix_index_t *ix) { return ix->count; }
