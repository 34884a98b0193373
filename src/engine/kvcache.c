/* kvcache.c — paged KV block allocator (see kvcache.h).
 *
 * The free pool is a LIFO stack of block ids: O(1) take and give back, and a freed
 * block is reused first (warm in the CPU caches). A per-block "held" flag catches
 * double frees and foreign ids (broken invariants, CHECK). */
#include "kvcache.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

struct kvcache {
    int64_t n_blocks;
    int block_size;
    int32_t *free_stack; /* (n_blocks) ids of free blocks; the top is free_stack[n_free-1] */
    int64_t n_free;
    uint8_t *held;       /* (n_blocks) 1 while a sequence holds the block */
};

kvcache_t *kvcache_new(int64_t n_blocks, int block_size) {
    if (n_blocks <= 0 || n_blocks > INT32_MAX || block_size <= 0) return NULL;
    kvcache_t *kv = calloc(1, sizeof(*kv));
    if (!kv) return NULL;
    kv->n_blocks = n_blocks;
    kv->block_size = block_size;
    kv->free_stack = malloc((size_t)n_blocks * sizeof(int32_t));
    kv->held = calloc((size_t)n_blocks, 1);
    if (!kv->free_stack || !kv->held) {
        kvcache_free(kv);
        return NULL;
    }
    /* Lowest ids on top, so a fresh cache hands out 0, 1, 2, ... */
    for (int64_t i = 0; i < n_blocks; i++) kv->free_stack[i] = (int32_t)(n_blocks - 1 - i);
    kv->n_free = n_blocks;
    return kv;
}

void kvcache_free(kvcache_t *kv) {
    if (!kv) return;
    free(kv->free_stack);
    free(kv->held);
    free(kv);
}

int kvcache_block_size(const kvcache_t *kv) { return kv->block_size; }
int64_t kvcache_n_blocks(const kvcache_t *kv) { return kv->n_blocks; }
int64_t kvcache_n_free(const kvcache_t *kv) { return kv->n_free; }
int64_t kvcache_n_used(const kvcache_t *kv) { return kv->n_blocks - kv->n_free; }

int64_t kvcache_blocks_for(const kvcache_t *kv, int64_t n_tokens) {
    if (n_tokens <= 0) return 0;
    return (n_tokens + kv->block_size - 1) / kv->block_size;
}

int kvcache_seq_init(const kvcache_t *kv, kvcache_seq_t *seq, int max_tokens) {
    memset(seq, 0, sizeof(*seq));
    int64_t cap = kvcache_blocks_for(kv, max_tokens);
    if (cap < 1) cap = 1;
    seq->blocks = malloc((size_t)cap * sizeof(int32_t));
    if (!seq->blocks) return -1;
    seq->cap = (int)cap;
    return 0;
}

void kvcache_seq_destroy(kvcache_t *kv, kvcache_seq_t *seq) {
    if (!seq) return;
    if (kv && seq->blocks) kvcache_seq_release(kv, seq);
    free(seq->blocks);
    memset(seq, 0, sizeof(*seq));
}

int kvcache_seq_missing(const kvcache_t *kv, const kvcache_seq_t *seq, int n_tokens) {
    int64_t need = kvcache_blocks_for(kv, n_tokens);
    return need > seq->n_blocks ? (int)(need - seq->n_blocks) : 0;
}

int kvcache_seq_reserve(kvcache_t *kv, kvcache_seq_t *seq, int n_tokens) {
    int64_t need = kvcache_blocks_for(kv, n_tokens);
    CHECK(need <= seq->cap);
    int64_t missing = need - seq->n_blocks;
    if (missing <= 0) return 0;
    if (missing > kv->n_free) return -1;
    for (int64_t i = 0; i < missing; i++) {
        int32_t b = kv->free_stack[--kv->n_free];
        CHECK(!kv->held[b]);
        kv->held[b] = 1;
        seq->blocks[seq->n_blocks++] = b;
    }
    return 0;
}

void kvcache_seq_release(kvcache_t *kv, kvcache_seq_t *seq) {
    /* Give back in reverse so the sequence's first block ends on top of the stack. */
    for (int i = seq->n_blocks - 1; i >= 0; i--) {
        int32_t b = seq->blocks[i];
        CHECK(b >= 0 && b < kv->n_blocks && kv->held[b]);
        kv->held[b] = 0;
        kv->free_stack[kv->n_free++] = b;
    }
    seq->n_blocks = 0;
}
