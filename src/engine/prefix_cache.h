/* prefix_cache.h — the prefix cache's block keys and its index (key -> physical block).
 * (Where this part sits among the others: docs/architecture.md; policy in
 * docs/engine-scheduling.md "Prefix caching".)
 *
 * A full KV block is named by a hash chain: the key of block i is
 * SHA-256(key of block i-1 || its block_size token ids)[:16], and block 0's parent is
 * the root key, SHA-256 of a salt naming everything else that changes the K/V (the
 * model file, KV dtype, block size). Two blocks with equal keys hold bitwise equal K/V
 * on a batch-invariant backend, so a sequence may read the other's block instead of
 * computing its own. A chain is only followed from its root: once a parent's key is
 * gone from the index, no block below it can be found again (a stale child is simply
 * evicted later). 128 bits of SHA-256 make an accidental collision negligible (2^-64
 * at 2^32 blocks, birthday bound).
 *
 * The index is a chained hash table sized once for every physical block (no allocation
 * after prefix_index_new); each block holds at most one key. kvcache.c owns it and is
 * its only caller; the engine thread alone touches it. */
#ifndef KRILL_PREFIX_CACHE_H
#define KRILL_PREFIX_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#define PREFIX_KEY_BYTES 16

typedef struct {
    uint8_t b[PREFIX_KEY_BYTES];
} prefix_key_t;

typedef struct prefix_index prefix_index_t;

/* The root of every chain: SHA-256("krill-prefix-v1" NUL salt)[:16]. */
void prefix_key_root(prefix_key_t *root, const char *salt);
/* out = SHA-256(parent || tokens as little-endian int32)[:16]. out may be parent. */
void prefix_key_next(prefix_key_t *out, const prefix_key_t *parent, const int32_t *tokens, int n);

/* An empty index for block ids [0, n_blocks). NULL when out of memory or n_blocks < 1. */
prefix_index_t *prefix_index_new(int64_t n_blocks);
void prefix_index_free(prefix_index_t *ix); /* accepts NULL */
/* The block holding key, or -1. */
int32_t prefix_index_find(const prefix_index_t *ix, const prefix_key_t *key);
/* Gives block (which must hold no key: CHECK) the key. false, and nothing changes,
 * when another block already holds that key. */
bool prefix_index_insert(prefix_index_t *ix, const prefix_key_t *key, int32_t block);
/* Forgets block's key (eviction); no-op when it holds none. */
void prefix_index_remove(prefix_index_t *ix, int32_t block);
bool prefix_index_holds(const prefix_index_t *ix, int32_t block);
int64_t prefix_index_count(const prefix_index_t *ix); /* blocks holding a key */

#endif
