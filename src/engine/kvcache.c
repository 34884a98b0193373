/* kvcache.c — paged KV block allocator with reference counts and an LRU of cached
 * blocks (see kvcache.h).
 *
 * Free blocks live in two places: the empty pool, a LIFO stack of blocks without a key
 * (O(1); a freed block is reused first, warm in the CPU caches), and the cached list,
 * blocks with a key that nobody holds, in the order they were released (head = least
 * recently released = evicted first). A reference count per block catches double
 * frees and foreign ids (broken invariants, CHECK). With the prefix cache off no block
 * ever gets a key and this is the plain stack allocator. */
#include "kvcache.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

struct kvcache {
    int64_t n_blocks;
    int block_size;
    int32_t *free_stack; /* (n_blocks) ids of empty blocks; the top is free_stack[n_empty-1] */
    int64_t n_empty;
    int32_t *ref;        /* (n_blocks) sequences holding the block */
    /* prefix cache (NULL / unused when off) */
    prefix_index_t *ix;
    prefix_key_t root;
    int32_t *lru_prev, *lru_next; /* (n_blocks) the cached list, -1 = none */
    int32_t lru_head, lru_tail;
    int64_t n_lru;
};

kvcache_t *kvcache_new(int64_t n_blocks, int block_size) {
    if (n_blocks <= 0 || n_blocks > INT32_MAX || block_size <= 0) return NULL;
    kvcache_t *kv = calloc(1, sizeof(*kv));
    if (!kv) return NULL;
    kv->n_blocks = n_blocks;
    kv->block_size = block_size;
    kv->lru_head = kv->lru_tail = -1;
    kv->free_stack = malloc((size_t)n_blocks * sizeof(int32_t));
    kv->ref = calloc((size_t)n_blocks, sizeof(int32_t));
    if (!kv->free_stack || !kv->ref) {
        kvcache_free(kv);
        return NULL;
    }
    /* Lowest ids on top, so a fresh cache hands out 0, 1, 2, ... */
    for (int64_t i = 0; i < n_blocks; i++) kv->free_stack[i] = (int32_t)(n_blocks - 1 - i);
    kv->n_empty = n_blocks;
    return kv;
}

void kvcache_free(kvcache_t *kv) {
    if (!kv) return;
    free(kv->free_stack);
    free(kv->ref);
    prefix_index_free(kv->ix);
    free(kv->lru_prev);
    free(kv->lru_next);
    free(kv);
}

int kvcache_prefix_enable(kvcache_t *kv, const char *salt) {
    if (kv->ix) return 0;
    kv->ix = prefix_index_new(kv->n_blocks);
    kv->lru_prev = malloc((size_t)kv->n_blocks * sizeof(int32_t));
    kv->lru_next = malloc((size_t)kv->n_blocks * sizeof(int32_t));
    if (!kv->ix || !kv->lru_prev || !kv->lru_next) {
        prefix_index_free(kv->ix);
        free(kv->lru_prev);
        free(kv->lru_next);
        kv->ix = NULL;
        kv->lru_prev = kv->lru_next = NULL;
        return -1;
    }
    prefix_key_root(&kv->root, salt);
    return 0;
}

bool kvcache_prefix_enabled(const kvcache_t *kv) { return kv->ix != NULL; }

int kvcache_block_size(const kvcache_t *kv) { return kv->block_size; }
int64_t kvcache_n_blocks(const kvcache_t *kv) { return kv->n_blocks; }
int64_t kvcache_n_free(const kvcache_t *kv) { return kv->n_empty + kv->n_lru; }
int64_t kvcache_n_used(const kvcache_t *kv) { return kv->n_blocks - kvcache_n_free(kv); }
int64_t kvcache_n_cached(const kvcache_t *kv) { return kv->ix ? prefix_index_count(kv->ix) : 0; }
int kvcache_block_refs(const kvcache_t *kv, int32_t b) { return kv->ref[b]; }

int64_t kvcache_blocks_for(const kvcache_t *kv, int64_t n_tokens) {
    if (n_tokens <= 0) return 0;
    return (n_tokens + kv->block_size - 1) / kv->block_size;
}

/* ---------------------------------------------------------------- the cached list */

static void lru_unlink(kvcache_t *kv, int32_t b) {
    int32_t p = kv->lru_prev[b], n = kv->lru_next[b];
    if (p >= 0) kv->lru_next[p] = n;
    else kv->lru_head = n;
    if (n >= 0) kv->lru_prev[n] = p;
    else kv->lru_tail = p;
    kv->n_lru--;
}

static void lru_push_tail(kvcache_t *kv, int32_t b) {
    kv->lru_prev[b] = kv->lru_tail;
    kv->lru_next[b] = -1;
    if (kv->lru_tail >= 0) kv->lru_next[kv->lru_tail] = b;
    else kv->lru_head = b;
    kv->lru_tail = b;
    kv->n_lru++;
}

/* One free block, referenced once: an empty one, else the least recently released
 * cached one, whose key is forgotten. The caller checked that one is free. */
static int32_t take_block(kvcache_t *kv) {
    int32_t b;
    if (kv->n_empty > 0) {
        b = kv->free_stack[--kv->n_empty];
    } else {
        CHECK(kv->n_lru > 0);
        b = kv->lru_head;
        lru_unlink(kv, b);
        prefix_index_remove(kv->ix, b);
    }
    CHECK(kv->ref[b] == 0);
    kv->ref[b] = 1;
    return b;
}

static void ref_block(kvcache_t *kv, int32_t b) {
    CHECK(b >= 0 && b < kv->n_blocks);
    if (kv->ref[b]++ == 0) lru_unlink(kv, b); /* only cached blocks are found unheld */
}

static void unref_block(kvcache_t *kv, int32_t b) {
    CHECK(b >= 0 && b < kv->n_blocks && kv->ref[b] > 0);
    if (--kv->ref[b] > 0) return;
    if (kv->ix && prefix_index_holds(kv->ix, b)) lru_push_tail(kv, b);
    else kv->free_stack[kv->n_empty++] = b;
}

/* ---------------------------------------------------------------- sequences */

int kvcache_seq_init(const kvcache_t *kv, kvcache_seq_t *seq, int max_tokens) {
    memset(seq, 0, sizeof(*seq));
    int64_t cap = kvcache_blocks_for(kv, max_tokens);
    if (cap < 1) cap = 1;
    seq->blocks = malloc((size_t)cap * sizeof(int32_t));
    if (!seq->blocks) return -1;
    if (kv->ix && !(seq->keys = malloc((size_t)cap * sizeof(prefix_key_t)))) {
        free(seq->blocks);
        seq->blocks = NULL;
        return -1;
    }
    seq->cap = (int)cap;
    return 0;
}

void kvcache_seq_destroy(kvcache_t *kv, kvcache_seq_t *seq) {
    if (!seq) return;
    if (kv && seq->blocks) kvcache_seq_release(kv, seq);
    free(seq->blocks);
    free(seq->keys);
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
    if (missing > kvcache_n_free(kv)) return -1;
    for (int64_t i = 0; i < missing; i++) seq->blocks[seq->n_blocks++] = take_block(kv);
    return 0;
}

void kvcache_seq_release(kvcache_t *kv, kvcache_seq_t *seq) {
    /* In reverse: the first block ends on top of the empty stack, and a chain's deepest
     * blocks are released first, so they are evicted before the blocks they hang from. */
    for (int i = seq->n_blocks - 1; i >= 0; i--) unref_block(kv, seq->blocks[i]);
    seq->n_blocks = 0;
    seq->n_published = 0;
}

/* ---------------------------------------------------------------- prefix cache */

/* Computes seq's chain keys for its first n full blocks of tokens. */
static void seq_keys(const kvcache_t *kv, kvcache_seq_t *seq, const int32_t *tokens, int n) {
    for (int i = seq->n_keys; i < n; i++)
        prefix_key_next(&seq->keys[i], i == 0 ? &kv->root : &seq->keys[i - 1], tokens + (size_t)i * kv->block_size,
                        kv->block_size);
    if (n > seq->n_keys) seq->n_keys = n;
}

int kvcache_seq_lookup(kvcache_t *kv, kvcache_seq_t *seq, const int32_t *tokens, int n_tokens, int *n_revive) {
    *n_revive = 0;
    if (!kv->ix || n_tokens <= 0) return 0;
    CHECK(seq->n_blocks == 0);
    int full = n_tokens / kv->block_size, hit = 0;
    if (full > seq->cap) full = seq->cap;
    for (; hit < full; hit++) {
        seq_keys(kv, seq, tokens, hit + 1);
        int32_t b = prefix_index_find(kv->ix, &seq->keys[hit]);
        if (b < 0) break;
        seq->blocks[hit] = b; /* noted, not yet held: kvcache_seq_attach takes them */
        if (kv->ref[b] == 0) (*n_revive)++;
    }
    return hit;
}

const prefix_key_t *kvcache_seq_key(kvcache_t *kv, kvcache_seq_t *seq, const int32_t *tokens, int i) {
    if (!kv->ix) return NULL;
    CHECK(i >= 0 && i < seq->cap);
    seq_keys(kv, seq, tokens, i + 1);
    return &seq->keys[i];
}

void kvcache_seq_attach(kvcache_t *kv, kvcache_seq_t *seq, int n_blocks) {
    CHECK(seq->n_blocks == 0 && n_blocks <= seq->n_keys);
    for (int i = 0; i < n_blocks; i++) {
        CHECK(prefix_index_find(kv->ix, &seq->keys[i]) == seq->blocks[i]);
        ref_block(kv, seq->blocks[i]);
    }
    seq->n_blocks = n_blocks;
    seq->n_published = n_blocks;
}

void kvcache_seq_publish(kvcache_t *kv, kvcache_seq_t *seq, const int32_t *tokens, int n_computed) {
    if (!kv->ix) return;
    int full = n_computed / kv->block_size;
    if (full > seq->n_blocks) full = seq->n_blocks;
    if (full <= seq->n_published) return;
    seq_keys(kv, seq, tokens, full);
    for (int i = seq->n_published; i < full; i++) {
        int32_t b = seq->blocks[i];
        if (!prefix_index_holds(kv->ix, b)) prefix_index_insert(kv->ix, &seq->keys[i], b);
    }
    seq->n_published = full;
}

void kvcache_seq_share(kvcache_t *kv, kvcache_seq_t *dst, const kvcache_seq_t *src, int n_blocks) {
    CHECK(dst->n_blocks == 0 && n_blocks <= src->n_blocks && n_blocks <= dst->cap);
    for (int i = 0; i < n_blocks; i++) {
        ref_block(kv, src->blocks[i]);
        dst->blocks[i] = src->blocks[i];
    }
    dst->n_blocks = n_blocks;
    dst->n_published = n_blocks; /* the source publishes them (or the cache is off) */
}
