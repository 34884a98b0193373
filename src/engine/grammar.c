/* grammar.c — llguidance behind grammar.h: the vocabulary description, the compiled
 * grammar cache and per-sequence constraints with batched mask computation.
 *
 * Rules: llguidance's constraint API is used in its strict alternation (compute the
 * mask, then commit the sampled token); fast-forward tokens and backtracking are off,
 * so every output token is one the sampler drew under a mask. A choice list becomes a
 * regular expression of its literal strings (every character escaped as \x{..}). */
#ifndef KRILL_NO_LLGUIDANCE /* bare GPU machines without llguidance: grammar_none.c */
#include "err.h"
#include "grammar.h"

#ifndef KRILL_NO_JANSSON
#include <jansson.h>
#endif
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "llguidance.h"
#include "log.h"
#include "utf8.h"

typedef struct {
    uint64_t hash;
    engine_grammar_kind_t kind;
    char *text; /* NUL-terminated copy; NULL for JSON_OBJECT */
    size_t len;
    LlgConstraint *proto; /* compiled, never stepped: sequences get clones */
    uint64_t used;        /* LRU stamp */
} centry_t;

struct grammar_seq {
    LlgConstraint *cc;
    const grammar_t *g;
};

struct grammar {
    const tokenizer_t *tok;
    int n_vocab, words;
    uint32_t *tok_lens;  /* (n_vocab) */
    uint8_t *tok_bytes;  /* concatenated token bytes */
    size_t *tok_off;     /* (n_vocab) offsets into tok_bytes */
    uint32_t *eog;       /* (words) end-of-generation ids, a mask row */
    int32_t eos;         /* the EOS llguidance was given (its masks allow only that one) */
    LlgTokenizer *llg;

    pthread_mutex_t mu; /* cache + stats */
    centry_t cache[GRAMMAR_CACHE_CAP];
    int n_cache;
    uint64_t clock;
    grammar_stats_t st;

    /* the batch in flight */
    pthread_mutex_t bmu;
    pthread_cond_t bcv;
    bool busy;
    double t_start, t_done;
    int n_rows;
    LlgConstraintStep *steps; /* (grow on demand) */
    int cap_steps;
};

/* llguidance calls this on its own threads: tokenizer_t is immutable (thread-safe). */
static size_t tokenize_cb(const void *user, const uint8_t *bytes, size_t n, uint32_t *out, size_t cap) {
    const grammar_t *g = user;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    char err[128];
    if (tokenizer_encode(g->tok, (const char *)bytes, n, false, false, &ids, &n_ids, err, sizeof(err)) != 0)
        return 0; /* tokenize_assumes_string: llguidance only hands over valid UTF-8 */
    for (size_t i = 0; i < n_ids && i < cap; i++) out[i] = (uint32_t)ids[i];
    free(ids);
    return n_ids;
}

grammar_t *grammar_new(const tokenizer_t *tok, char *err, size_t errlen) {
    grammar_t *g = calloc(1, sizeof(*g));
    uint32_t *extra = NULL;
    if (!g) goto oom;
    pthread_mutex_init(&g->mu, NULL);
    pthread_mutex_init(&g->bmu, NULL);
    pthread_cond_init(&g->bcv, NULL);
    g->tok = tok;
    g->n_vocab = tokenizer_n_vocab(tok);
    g->words = (g->n_vocab + 31) / 32;
    g->tok_lens = malloc((size_t)g->n_vocab * sizeof(uint32_t));
    g->tok_off = malloc((size_t)g->n_vocab * sizeof(size_t));
    g->eog = calloc((size_t)g->words, sizeof(uint32_t));
    if (!g->tok_lens || !g->tok_off || !g->eog) goto oom;
    /* two passes: sizes, then bytes. A token with no bytes of its own (control tokens
     * decode to "") is described as 0xFF + its string, llguidance's special-token form. */
    size_t total = 0;
    char small[8];
    for (int32_t id = 0; id < g->n_vocab; id++) {
        int n = tokenizer_token_bytes(tok, id, false, small, sizeof(small));
        if (n < 0) n = 0;
        if (n == 0) n = 1 + (int)strlen(tokenizer_token_str(tok, id));
        g->tok_lens[id] = (uint32_t)n;
        g->tok_off[id] = total;
        total += (size_t)n;
    }
    g->tok_bytes = malloc(total + 1);
    if (!g->tok_bytes) goto oom;
    for (int32_t id = 0; id < g->n_vocab; id++) {
        uint8_t *p = g->tok_bytes + g->tok_off[id];
        int n = tokenizer_token_bytes(tok, id, false, (char *)p, g->tok_lens[id]);
        if (n <= 0) {
            const char *s = tokenizer_token_str(tok, id);
            p[0] = 0xFF;
            memcpy(p + 1, s, strlen(s));
        }
    }
    /* EOS: the end of turn where there is one (chat), then every other end-of-generation id */
    int32_t eos = tokenizer_eot(tok) >= 0 ? tokenizer_eot(tok) : tokenizer_eos(tok);
    int n_extra = 0;
    extra = malloc((size_t)g->n_vocab * sizeof(uint32_t));
    if (!extra) goto oom;
    for (int32_t id = 0; id < g->n_vocab; id++)
        if (tokenizer_is_eog(tok, id)) {
            g->eog[id / 32] |= 1u << (id % 32);
            if (eos < 0) eos = id;
            else if (id != eos) extra[n_extra++] = (uint32_t)id;
        }
    if (eos < 0) {
        err_set(err, errlen, "the model has no end-of-generation token: constrained decoding needs one");
        goto fail;
    }
    LlgTokenizerInitV2 ti;
    memset(&ti, 0, sizeof(ti));
    ti.struct_size = sizeof(ti);
    ti.vocab_size = (uint32_t)g->n_vocab;
    ti.tok_eos = (uint32_t)eos;
    g->eos = eos;
    ti.token_lens = g->tok_lens;
    ti.token_bytes = g->tok_bytes;
    ti.tokenize_assumes_string = true;
    ti.tokenize_fn = tokenize_cb;
    ti.tokenize_user_data = g;
    ti.tok_eos_extra = n_extra > 0 ? extra : NULL;
    ti.tok_eos_extra_count = (uint32_t)n_extra;
    char msg[512] = "";
    g->llg = llg_new_tokenizer_v2(&ti, msg, sizeof(msg));
    if (!g->llg) {
        err_set(err, errlen, "llguidance rejected the vocabulary: %s", msg);
        goto fail;
    }
    free(extra);
    return g;
oom:
    err_set(err, errlen, "out of memory while describing the vocabulary to llguidance");
fail:
    free(extra);
    grammar_free(g);
    return NULL;
}

void grammar_free(grammar_t *g) {
    if (!g) return;
    for (int i = 0; i < g->n_cache; i++) {
        llg_free_constraint(g->cache[i].proto);
        free(g->cache[i].text);
    }
    if (g->llg) llg_free_tokenizer(g->llg);
    free(g->tok_lens);
    free(g->tok_off);
    free(g->eog);
    free(g->tok_bytes);
    free(g->steps);
    pthread_mutex_destroy(&g->mu);
    pthread_mutex_destroy(&g->bmu);
    pthread_cond_destroy(&g->bcv);
    free(g);
}

int grammar_n_vocab(const grammar_t *g) { return g->n_vocab; }
int grammar_mask_words(const grammar_t *g) { return g->words; }

const uint8_t *grammar_token_bytes(const grammar_t *g, int32_t id, size_t *len) {
    if (id < 0 || id >= g->n_vocab) return NULL;
    *len = g->tok_lens[id];
    return g->tok_bytes + g->tok_off[id];
}

size_t grammar_llg_decode(const grammar_t *g, int32_t id, bool special, char *buf, size_t cap) {
    uint32_t t = (uint32_t)id;
    size_t n = llg_decode_tokens(g->llg, &t, 1, buf, cap, special ? LLG_DECODE_INCLUDE_SPECIAL : LLG_DECODE_NONE);
    return n > 0 ? n - 1 : 0; /* llguidance counts the NUL it writes */
}

/* ---------------------------------------------------------------- compiling */

static uint64_t key_hash(engine_grammar_kind_t kind, const char *text, size_t len) {
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)kind;
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)text[i]) * 1099511628211ULL;
    return h;
}

#ifdef KRILL_NO_JANSSON
static char *choice_regex(const char *text, size_t len, char *err, size_t errlen) {
    (void)text, (void)len;
    err_set(err, errlen, "choice lists need jansson, which this build (KRILL_NO_JANSSON) lacks");
    return NULL;
}
#else
/* A choice list (a JSON array of strings) as a regex matching exactly one of them. */
static char *choice_regex(const char *text, size_t len, char *err, size_t errlen) {
    json_error_t je;
    json_t *a = json_loadb(text, len, 0, &je);
    char *rx = NULL;
    if (!a || !json_is_array(a) || json_array_size(a) == 0) {
        err_set(err, errlen, "a choice list must be a non-empty JSON array of strings%s%s", a ? "" : ": ",
                a ? "" : je.text);
        goto done;
    }
    size_t cap = 8;
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *s = json_array_get(a, i);
        if (!json_is_string(s)) {
            err_set(err, errlen, "choice %zu is not a string: a choice list holds strings only", i);
            goto done;
        }
        cap += json_string_length(s) * 12 + 2; /* \x{10FFFF} per character at most */
    }
    rx = malloc(cap);
    if (!rx) goto done;
    size_t w = (size_t)snprintf(rx, cap, "(?:");
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *s = json_array_get(a, i);
        const char *p = json_string_value(s);
        size_t n = json_string_length(s), k = 0;
        if (i > 0) rx[w++] = '|';
        while (k < n) {
            uint32_t cp = 0;
            size_t l = utf8_decode(p + k, n - k, &cp);
            if (l == 0) { /* jansson only holds valid UTF-8; a NUL would be \u0000 */
                l = 1;
                cp = (uint8_t)p[k];
            }
            if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9'))
                rx[w++] = (char)cp;
            else
                w += (size_t)snprintf(rx + w, cap - w, "\\x{%X}", cp);
            k += l;
        }
    }
    rx[w++] = ')';
    rx[w] = '\0';
done:
    json_decref(a);
    return rx;
}
#endif

/* Compiles (outside the lock): the constraint or NULL with err. */
static LlgConstraint *compile(grammar_t *g, engine_grammar_kind_t kind, const char *text, char *err,
                              size_t errlen) {
    LlgConstraintInit init;
    llg_constraint_init_set_defaults(&init, g->llg);
    init.log_stderr_level = 0; /* errors come back as messages, not on stderr */
    init.log_buffer_level = 0;
    const char *type = NULL;
    char *rx = NULL;
    switch (kind) {
    case ENGINE_GRAMMAR_JSON_SCHEMA: type = "json_schema"; break;
    case ENGINE_GRAMMAR_JSON_OBJECT: type = "json_object"; text = ""; break;
    case ENGINE_GRAMMAR_REGEX: type = "regex"; break;
    case ENGINE_GRAMMAR_LARK: type = "lark"; break;
    case ENGINE_GRAMMAR_CHOICE:
        type = "regex";
        if (!(rx = choice_regex(text, strlen(text), err, errlen))) return NULL;
        text = rx;
        break;
    default: err_set(err, errlen, "unknown grammar kind %d", (int)kind); return NULL;
    }
    LlgConstraint *cc = llg_new_constraint_any(&init, type, text);
    free(rx);
    const char *e = cc ? llg_get_error(cc) : "llguidance returned no constraint";
    if (e) {
        err_set(err, errlen, "%s", e);
        if (cc) llg_free_constraint(cc);
        return NULL;
    }
    return cc;
}

/* Under g->mu: the cache entry for the key, or NULL. */
static centry_t *cache_find(grammar_t *g, uint64_t h, engine_grammar_kind_t kind, const char *text, size_t len) {
    for (int i = 0; i < g->n_cache; i++) {
        centry_t *c = &g->cache[i];
        if (c->hash == h && c->kind == kind && c->len == len && (len == 0 || memcmp(c->text, text, len) == 0)) {
            c->used = ++g->clock;
            return c;
        }
    }
    return NULL;
}

/* A clone of the compiled (kind, text), compiling and caching it on a miss. */
static LlgConstraint *acquire(grammar_t *g, engine_grammar_kind_t kind, const char *text, size_t len, char *err,
                              size_t errlen) {
    if (kind == ENGINE_GRAMMAR_JSON_OBJECT) len = 0;
    else if (!text || memchr(text, '\0', len)) {
        err_set(err, errlen, "the grammar text is %s", text ? "not allowed to hold a NUL byte" : "missing");
        return NULL;
    }
    const uint64_t h = key_hash(kind, text, len);
    pthread_mutex_lock(&g->mu);
    centry_t *c = cache_find(g, h, kind, text, len);
    if (c) {
        g->st.cache_hits++;
        LlgConstraint *cl = llg_clone_constraint(c->proto);
        pthread_mutex_unlock(&g->mu);
        return cl;
    }
    pthread_mutex_unlock(&g->mu);

    char *copy = malloc(len + 1);
    if (!copy) {
        err_set(err, errlen, "out of memory while compiling a grammar of %zu bytes", len);
        return NULL;
    }
    if (len) memcpy(copy, text, len);
    copy[len] = '\0';
    LlgConstraint *proto = compile(g, kind, copy, err, errlen);
    if (!proto) {
        free(copy);
        return NULL;
    }
    LlgConstraint *cl = llg_clone_constraint(proto);
    pthread_mutex_lock(&g->mu);
    g->st.compiles++;
    if (cache_find(g, h, kind, copy, len)) { /* another thread compiled it meanwhile */
        llg_free_constraint(proto);
        free(copy);
    } else {
        if (g->n_cache == GRAMMAR_CACHE_CAP) { /* evict the least recently used */
            int lru = 0;
            for (int i = 1; i < g->n_cache; i++)
                if (g->cache[i].used < g->cache[lru].used) lru = i;
            llg_free_constraint(g->cache[lru].proto);
            free(g->cache[lru].text);
            g->cache[lru] = g->cache[--g->n_cache];
        }
        g->cache[g->n_cache++] = (centry_t){.hash = h, .kind = kind, .text = copy, .len = len,
                                            .proto = proto, .used = ++g->clock};
    }
    pthread_mutex_unlock(&g->mu);
    return cl;
}

int grammar_check(grammar_t *g, engine_grammar_kind_t kind, const char *text, size_t len, char *err,
                  size_t errlen) {
    LlgConstraint *cc = acquire(g, kind, text, len, err, errlen);
    if (!cc) return -1;
    llg_free_constraint(cc);
    return 0;
}

grammar_seq_t *grammar_seq_new(grammar_t *g, engine_grammar_kind_t kind, const char *text, size_t len,
                               char *err, size_t errlen) {
    grammar_seq_t *q = calloc(1, sizeof(*q));
    if (!q) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    q->g = g;
    if (!(q->cc = acquire(g, kind, text, len, err, errlen))) {
        free(q);
        return NULL;
    }
    return q;
}

grammar_seq_t *grammar_seq_clone(const grammar_seq_t *q) {
    grammar_seq_t *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->cc = llg_clone_constraint(q->cc);
    c->g = q->g;
    return c;
}

void grammar_seq_free(grammar_seq_t *q) {
    if (!q) return;
    llg_free_constraint(q->cc);
    free(q);
}

/* ---------------------------------------------------------------- masks */

static void masks_done(const void *user) {
    grammar_t *g = (grammar_t *)user;
    pthread_mutex_lock(&g->bmu);
    g->t_done = clock_now_ms();
    g->busy = false;
    pthread_cond_signal(&g->bcv);
    pthread_mutex_unlock(&g->bmu);
}

void grammar_masks_start(grammar_t *g, grammar_seq_t *const *seqs, uint32_t *const *rows, int n) {
    CHECK(!g->busy);
    if (n <= 0) return;
    if (n > g->cap_steps) {
        free(g->steps);
        g->cap_steps = n < 64 ? 64 : n;
        g->steps = malloc((size_t)g->cap_steps * sizeof(*g->steps));
        CHECK(g->steps != NULL);
    }
    for (int i = 0; i < n; i++)
        g->steps[i] = (LlgConstraintStep){.constraint = seqs[i]->cc, .mask_dest = rows[i],
                                          .mask_byte_len = (size_t)g->words * sizeof(uint32_t)};
    g->busy = true;
    g->n_rows = n;
    g->t_start = clock_now_ms();
    llg_par_compute_mask(g->steps, (size_t)n, g, masks_done);
}

void grammar_masks_wait(grammar_t *g) {
    if (g->n_rows == 0) return;
    double t0 = clock_now_ms();
    pthread_mutex_lock(&g->bmu);
    while (g->busy) pthread_cond_wait(&g->bcv, &g->bmu);
    double done = g->t_done;
    pthread_mutex_unlock(&g->bmu);
    double t1 = clock_now_ms();
    pthread_mutex_lock(&g->mu);
    g->st.mask_steps++;
    g->st.mask_rows += (uint64_t)g->n_rows;
    g->st.mask_ms += done - g->t_start;
    g->st.wait_ms += t1 - t0;
    pthread_mutex_unlock(&g->mu);
    /* llguidance marks only its EOS when a grammar is complete: every end-of-generation
     * token ends the output alike */
    for (int i = 0; i < g->n_rows; i++) {
        uint32_t *row = g->steps[i].mask_dest;
        if (row[g->eos / 32] >> (g->eos % 32) & 1u)
            for (int w = 0; w < g->words; w++) row[w] |= g->eog[w];
    }
    g->n_rows = 0;
}

int grammar_seq_accept(grammar_seq_t *q, int32_t tok, char *err, size_t errlen) {
    const char *e = llg_get_error(q->cc);
    if (!e) {
        LlgCommitResult res;
        /* an end-of-generation token the mask allowed ends the language's output */
        const bool end = tok >= 0 && tok < q->g->n_vocab && (q->g->eog[tok / 32] >> (tok % 32) & 1u);
        if (llg_commit_token(q->cc, (uint32_t)tok, &res) == 0) return res.is_stop || end || llg_is_stopped(q->cc) ? 1 : 0;
        e = llg_get_error(q->cc);
    }
    err_set(err, errlen, "the output constraint failed: %s", e ? e : "unknown llguidance error");
    return -1;
}

const char *grammar_seq_error(const grammar_seq_t *q) { return llg_get_error(q->cc); }

void grammar_get_stats(grammar_t *g, grammar_stats_t *st) {
    pthread_mutex_lock(&g->mu);
    *st = g->st;
    pthread_mutex_unlock(&g->mu);
}

#endif /* KRILL_NO_LLGUIDANCE */
