/* kvcache.h — bookkeeping of the paged KV cache: a block allocator and per-sequence
 * (Where this part sits among the others: docs/architecture.md.)
 * block lists. The K/V storage itself lives in the backend (model_kv_blocks() blocks
 * of block_size tokens); this module only decides which physical block holds which
 * tokens of which sequence.
 *
 * Rules: the engine thread alone touches a kvcache_t (no locking). A sequence's block
 * list is sized once (kvcache_seq_init, at submit) for the most tokens it may ever
 * hold, so growing it later never allocates memory. kvcache_seq_reserve is
 * all-or-nothing: when the free blocks do not suffice, nothing is taken.
 *
 * Sharing (prefix cache, n > 1 choices): blocks are reference-counted; only FULL
 * blocks are ever shared, and a shared block is never written again (its K/V is a
 * function of the tokens named by its key), so no copy-on-write exists. With the
 * prefix cache on (kvcache_prefix_enable), each full computed block is published
 * under its hash-chain key (prefix_cache.h); a block whose last holder lets go keeps
 * its content and key and waits, least recently released first, until the allocator
 * needs it (eviction forgets the key). Blocks without a key are handed out before
 * any cached one is evicted. The free count includes the cached blocks nobody holds. */
#ifndef KRILL_KVCACHE_H
#define KRILL_KVCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "prefix_cache.h"

typedef struct kvcache kvcache_t;

typedef struct {
    int32_t *blocks; /* (cap) physical block ids; the first n_blocks are held */
    int n_blocks;
    int cap;         /* blocks for the most tokens this sequence may hold */
    /* prefix cache only (NULL otherwise): keys[i] = chain key of the sequence's block i,
     * computed lazily for i < n_keys (a pure function of its tokens, kept across
     * preemption); blocks below n_published were offered to the index. */
    prefix_key_t *keys; /* (cap) */
    int n_keys, n_published;
} kvcache_seq_t;

/* n_blocks physical blocks of block_size tokens each. NULL on bad sizes / no memory. */
kvcache_t *kvcache_new(int64_t n_blocks, int block_size);
void kvcache_free(kvcache_t *kv); /* accepts NULL */
/* Turns the prefix cache on (before any kvcache_seq_init). salt names everything but
 * the tokens that changes a block's K/V (prefix_key_root). 0, or -1 out of memory. */
int kvcache_prefix_enable(kvcache_t *kv, const char *salt);
bool kvcache_prefix_enabled(const kvcache_t *kv);

int kvcache_block_size(const kvcache_t *kv);
int64_t kvcache_n_blocks(const kvcache_t *kv);
int64_t kvcache_n_free(const kvcache_t *kv);   /* unheld blocks, cached ones included */
int64_t kvcache_n_used(const kvcache_t *kv);   /* blocks held by at least one sequence */
int64_t kvcache_n_cached(const kvcache_t *kv); /* blocks holding a key (held or not) */
/* Blocks needed to hold n_tokens tokens (ceil). */
int64_t kvcache_blocks_for(const kvcache_t *kv, int64_t n_tokens);
/* How many sequences hold block b (tests and invariants). */
int kvcache_block_refs(const kvcache_t *kv, int32_t b);

/* Sizes seq for at most max_tokens tokens (malloc). 0, or -1 when out of memory. */
int kvcache_seq_init(const kvcache_t *kv, kvcache_seq_t *seq, int max_tokens);
/* Releases the held blocks (if any) and the list; accepts a zeroed seq. */
void kvcache_seq_destroy(kvcache_t *kv, kvcache_seq_t *seq);
/* Makes seq hold enough blocks for n_tokens tokens. Returns 0, or -1 (and takes
 * nothing) when the free blocks do not suffice. n_tokens beyond the size given to
 * kvcache_seq_init is a broken invariant (CHECK). */
int kvcache_seq_reserve(kvcache_t *kv, kvcache_seq_t *seq, int n_tokens);
/* Blocks that reserving n_tokens would take now (0 if already held). */
int kvcache_seq_missing(const kvcache_t *kv, const kvcache_seq_t *seq, int n_tokens);
/* Drops seq's reference on every held block (preemption, finish): a block nobody
 * holds any more becomes free (cached, when it has a key). */
void kvcache_seq_release(kvcache_t *kv, kvcache_seq_t *seq);

/* Prefix cache (no-ops returning 0 when it is off). A sequence's tokens only grow:
 * every call for one seq passes the same ids (its keys are computed once and kept).
 * seq must hold no block.
 * kvcache_seq_lookup: how many leading full blocks of tokens[0, n_tokens) are in the
 * index (the longest chain from the root); *n_revive = how many of those nobody holds
 * (taking them lowers the free count). Takes nothing. */
int kvcache_seq_lookup(kvcache_t *kv, kvcache_seq_t *seq, const int32_t *tokens, int n_tokens, int *n_revive);
/* The chain key of seq's block i (tokens[0, (i + 1) x block_size) are its ids); NULL
 * with the prefix cache off. */
const prefix_key_t *kvcache_seq_key(kvcache_t *kv, kvcache_seq_t *seq, const int32_t *tokens, int i);
/* Takes a reference on the first n_blocks blocks a kvcache_seq_lookup just found (no
 * other kvcache call in between); seq then holds them as its first blocks. */
void kvcache_seq_attach(kvcache_t *kv, kvcache_seq_t *seq, int n_blocks);
/* Offers seq's full blocks among its first n_computed tokens to the index (a key
 * already held by another block leaves this block unkeyed). tokens = seq's ids. */
void kvcache_seq_publish(kvcache_t *kv, kvcache_seq_t *seq, const int32_t *tokens, int n_computed);
/* Fork (n > 1): dst, holding nothing, takes a reference on src's first n_blocks
 * blocks (which must be full and computed). Works with the prefix cache off too. */
void kvcache_seq_share(kvcache_t *kv, kvcache_seq_t *dst, const kvcache_seq_t *src, int n_blocks);

#endif
