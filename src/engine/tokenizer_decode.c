/* tokenizer_decode.c — from ids back to bytes: the decoded bytes of every token (built
 * once at load), tokenizer_token_bytes/_str, streaming decode (tokenizer_stream_*) and
 * tokenizer_decode.
 *
 * Rules kept (llama.cpp's token_to_piece and detokenize): byte-level tokens map back
 * through the GPT-2 alphabet (a character outside it is shown as llama.cpp's
 * "[UNK_BYTE_0x..]" marker), SentencePiece "▁" becomes ' ' and <0xNN> its byte;
 * control and unknown tokens decode to nothing unless special; the first piece loses
 * its leading space when add_space_prefix is set. Streaming lets only complete UTF-8
 * sequences out; a byte that can never start or continue one becomes U+FFFD (one per
 * maximal invalid subpart, as Python's errors="replace"). */
#include "tokenizer_internal.h"

#include <string.h>

#include "utf8.h"

/* Inverse of byte_to_cp through a table (cp < 0x144), -1 when cp is not in the alphabet. */
static int cp_to_byte(const int16_t *inv, uint32_t cp) { return cp < 0x144 ? inv[cp] : -1; }

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The byte of a <0xNN> token (llama.cpp reads the two characters after "<0x"). */
static uint8_t byte_token_value(const char *s, size_t n) {
    int v = 0;
    for (size_t i = 3; i < 5 && i < n; i++) {
        int h = hexval(s[i]);
        if (h < 0) break;
        v = v * 16 + h;
    }
    return (uint8_t)v;
}

bool tokenizer_decode_build_pieces(tokenizer_t *t) {
    buf_t b = {0}; /* appends after a failure are ignored: b.oom is checked per token */
    t->piece_off = malloc((size_t)t->n_vocab * sizeof *t->piece_off);
    t->piece_len = malloc((size_t)t->n_vocab * sizeof *t->piece_len);
    if (!t->piece_off || !t->piece_len) return false;
    int16_t inv[0x144];
    for (int i = 0; i < 0x144; i++) inv[i] = -1;
    for (int c = 0; c < 256; c++) inv[tokenizer_bpe_byte_cp((uint8_t)c)] = (int16_t)c;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const char *s = tokenizer_sym_text(t, id);
        size_t n = t->text_len[id];
        uint8_t a = t->attr[id];
        size_t start = b.len;
        if (a & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED)) {
            buf_append(&b, s, n);
        } else if (a & ATTR_NORMAL) {
            if (t->kind == TOK_SPM) {
                for (size_t i = 0; i < n;) {
                    if (i + 3 <= n && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
                        buf_append(&b, " ", 1);
                        i += 3;
                    } else {
                        buf_append(&b, s + i, 1);
                        i++;
                    }
                }
            } else {
                for (size_t i = 0; i < n;) {
                    uint32_t cp;
                    size_t k = utf8_decode(s + i, n - i, &cp);
                    if (!k) { /* llama.cpp decodes a bad byte as U+FFFD */
                        k = 1;
                        cp = 0xFFFD;
                    }
                    int byte = cp_to_byte(inv, cp);
                    if (byte >= 0) {
                        char c = (char)byte;
                        buf_append(&b, &c, 1);
                    } else { /* llama.cpp's marker for a character outside the alphabet */
                        char u[4];
                        size_t un = utf8_encode(cp, u);
                        buf_puts(&b, "[UNK_BYTE_0x");
                        for (size_t j = 0; j < un; j++) buf_printf(&b, "%02x", (uint8_t)u[j]);
                        buf_append(&b, s, n);
                        buf_puts(&b, "]");
                    }
                    i += k;
                }
            }
        } else if (a & ATTR_BYTE) {
            char c = (char)byte_token_value(s, n);
            buf_append(&b, &c, 1);
        }
        if (b.oom || b.len > UINT32_MAX) {
            buf_free(&b);
            return false;
        }
        t->piece_off[id] = (uint32_t)start;
        t->piece_len[id] = (uint32_t)(b.len - start);
    }
    if (!b.data && buf_append(&b, "", 0) != 0) return false;
    t->piece = b.data;
    return true;
}

int tokenizer_token_bytes(const tokenizer_t *t, int32_t id, bool special, char *buf, size_t cap) {
    if (id < 0 || id >= t->n_vocab) return -1;
    if (!special && (t->attr[id] & (ATTR_UNKNOWN | ATTR_CONTROL))) return 0;
    size_t n = t->piece_len[id];
    if (buf && cap) memcpy(buf, t->piece + t->piece_off[id], n < cap ? n : cap);
    return (int)n;
}

const char *tokenizer_token_str(const tokenizer_t *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return "";
    return tokenizer_sym_text(t, id);
}

void tokenizer_stream_init(tokenizer_stream_t *s) {
    memset(s, 0, sizeof *s);
    s->first = true;
}

/* A bounded writer: what does not fit in cap is dropped (the caller sized it). */
typedef struct {
    char *out;
    size_t cap, n;
} wbuf_t;

static inline void w_put(wbuf_t *w, const char *p, size_t n) {
    size_t k = n <= w->cap - w->n ? n : w->cap - w->n;
    memcpy(w->out + w->n, p, k);
    w->n += k;
}

/* Feeds bytes through the UTF-8 assembler: complete sequences go out, an incomplete
 * tail waits in s->pending, bytes that can never form a sequence become U+FFFD (one per
 * maximal invalid subpart, as Python's errors="replace"). */
static void stream_bytes(tokenizer_stream_t *s, const char *p, size_t n, wbuf_t *w) {
    static const char fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)p[i];
        if (s->n_pending > 0) {
            uint8_t c = (uint8_t)s->pending[0];
            if (utf8_cont_ok(c, s->n_pending, b)) {
                s->pending[s->n_pending++] = (char)b;
                if (s->n_pending == utf8_lead_len(c)) {
                    w_put(w, s->pending, (size_t)s->n_pending);
                    s->n_pending = 0;
                }
                continue;
            }
            w_put(w, fffd, 3);
            s->n_pending = 0;
        }
        int need = utf8_lead_len(b);
        if (need == 1) {
            w_put(w, (const char *)&p[i], 1);
        } else if (need == 0) {
            w_put(w, fffd, 3);
        } else {
            s->pending[0] = (char)b;
            s->n_pending = 1;
        }
    }
}

static int stream_push(const tokenizer_t *t, tokenizer_stream_t *s, int32_t id, bool special, char *out, size_t cap) {
    if (id < 0 || id >= t->n_vocab) return -1;
    wbuf_t w = {out, cap, 0};
    bool first = s->first;
    s->first = false;
    if (!special && (t->attr[id] & (ATTR_UNKNOWN | ATTR_CONTROL))) return 0;
    const char *p = t->piece + t->piece_off[id];
    size_t n = t->piece_len[id];
    if (first && t->add_space_prefix && n > 0 && p[0] == ' ') { /* llama.cpp's lstrip of the first piece */
        p++;
        n--;
    }
    stream_bytes(s, p, n, &w);
    return (int)w.n;
}

int tokenizer_stream_push(const tokenizer_t *t, tokenizer_stream_t *s, int32_t id, char *out, size_t cap) {
    return stream_push(t, s, id, false, out, cap);
}

int tokenizer_stream_flush(tokenizer_stream_t *s, char *out, size_t cap) {
    wbuf_t w = {out, cap, 0};
    if (s->n_pending > 0) {
        w_put(&w, "\xEF\xBF\xBD", 3);
        s->n_pending = 0;
    }
    return (int)w.n;
}

char *tokenizer_decode(const tokenizer_t *t, const int32_t *ids, size_t n, bool special, size_t *len) {
    buf_t b = {0};
    tokenizer_stream_t s;
    tokenizer_stream_init(&s);
    char chunk[64];
    if (buf_append(&b, "", 0) != 0) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab) goto fail;
        size_t need = (size_t)t->piece_len[ids[i]] * 3 + 16;
        char *o = need <= sizeof chunk ? chunk : malloc(need);
        if (!o) goto fail;
        int k = stream_push(t, &s, ids[i], special, o, need);
        bool ok = k >= 0 && buf_append(&b, o, (size_t)k) == 0;
        if (o != chunk) free(o);
        if (!ok) goto fail;
    }
    int k = tokenizer_stream_flush(&s, chunk, sizeof chunk);
    if (buf_append(&b, chunk, (size_t)k) != 0) goto fail;
    if (len) *len = b.len;
    return b.data;
fail:
    buf_free(&b);
    return NULL;
}
