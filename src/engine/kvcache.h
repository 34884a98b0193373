/* kvcache.h — bookkeeping of the paged KV cache: a block allocator and per-sequence
 * (Where this part sits among the others: docs/architecture.md.)
 * block lists. The K/V storage itself lives in the backend (model_kv_blocks() blocks
 * of block_size tokens); this module only decides which physical block holds which
 * tokens of which sequence.
 *
 * Rules: the engine thread alone touches a kvcache_t (no locking). A sequence's block
 * list is sized once (kvcache_seq_init, at submit) for the most tokens it may ever
 * hold, so growing it later never allocates memory. kvcache_seq_reserve is
 * all-or-nothing: when the free blocks do not suffice, nothing is taken. */
#ifndef KRILL_KVCACHE_H
#define KRILL_KVCACHE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct kvcache kvcache_t;

typedef struct {
    int32_t *blocks; /* (cap) physical block ids; the first n_blocks are held */
    int n_blocks;
    int cap;         /* blocks for the most tokens this sequence may hold */
} kvcache_seq_t;

/* n_blocks physical blocks of block_size tokens each. NULL on bad sizes / no memory. */
kvcache_t *kvcache_new(int64_t n_blocks, int block_size);
void kvcache_free(kvcache_t *kv); /* accepts NULL */

int kvcache_block_size(const kvcache_t *kv);
int64_t kvcache_n_blocks(const kvcache_t *kv);
int64_t kvcache_n_free(const kvcache_t *kv);
int64_t kvcache_n_used(const kvcache_t *kv);
/* Blocks needed to hold n_tokens tokens (ceil). */
int64_t kvcache_blocks_for(const kvcache_t *kv, int64_t n_tokens);

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
/* Returns every held block to the free pool (preemption, finish). */
void kvcache_seq_release(kvcache_t *kv, kvcache_seq_t *seq);

#endif
