/* gguf.c — GGUF v2/v3 reader: validates a whole file up front, then serves views.
 *
 * Rules: the bytes are untrusted. Every read goes through the cursor below, which
 * checks the remaining length first; every count is checked against the bytes that
 * could hold it before anything is allocated, and every failure names the field and
 * its byte offset. After gguf_open* succeeds nothing here reads outside the buffer:
 * each kv, string, array element and tensor range has been checked to lie inside
 * it. Files are mapped read-only (MAP_PRIVATE, PROT_READ); a mapped file that is
 * truncated by someone else afterwards is outside what we can defend against. */
#include "gguf.h"
#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quant.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define GGUF_MAX_KEY 65535      /* spec: keys are at most 65535 bytes */
#define GGUF_MAX_NAME 64        /* spec: tensor names are at most 64 bytes */
#define GGUF_MAX_ALIGN (1u << 30)

struct gguf {
    const uint8_t *base; /* the whole file */
    size_t size;
    bool mapped;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_off; /* start of the data section */
    size_t n_kv;
    gguf_kv_t *kv;
    uint64_t **str_idx; /* per kv: offsets of each string element of a string array, else NULL */
    size_t n_tensors;
    gguf_tensor_t *tensors;
    uint32_t *kv_hash; /* open addressing, value = index + 1, 0 = empty */
    size_t kv_hcap;
    uint32_t *t_hash;
    size_t t_hcap;
};

/* ---------------------------------------------------------------- errors */


/* A printable, bounded rendering of a (possibly hostile) name for messages. */
static const char *safe_name(gguf_str_t s, char *buf, size_t bufsize) {
    size_t n = 0;
    for (uint64_t i = 0; i < s.len && n + 5 < bufsize; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c >= 0x20 && c < 0x7f && c != '\'') {
            buf[n++] = (char)c;
        } else {
            n += (size_t)snprintf(buf + n, bufsize - n, "\\x%02x", c);
        }
    }
    if (s.len > 0 && n + 5 >= bufsize && bufsize > 4) {
        n = bufsize - 4;
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/* ---------------------------------------------------------------- cursor */

typedef struct {
    const uint8_t *p;
    size_t size;
    size_t pos;
    char *err;
    size_t errlen;
    const char *ctx; /* what we are reading, for messages ("kv 3 'llama.block_count'") */
} cur_t;

static bool need(cur_t *c, uint64_t n, const char *what) {
    if (n > c->size - c->pos) {
        err_set(c->err, c->errlen,
               "%s%s%s at offset %zu needs %" PRIu64 " bytes but the file ends at %zu "
               "(truncated or corrupt file)",
               c->ctx ? c->ctx : "", c->ctx ? ": " : "", what, c->pos, n, c->size);
        return false;
    }
    return true;
}

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32); }

static bool rd_u32(cur_t *c, uint32_t *v, const char *what) {
    if (!need(c, 4, what)) return false;
    *v = le32(c->p + c->pos);
    c->pos += 4;
    return true;
}

static bool rd_u64(cur_t *c, uint64_t *v, const char *what) {
    if (!need(c, 8, what)) return false;
    *v = le64(c->p + c->pos);
    c->pos += 8;
    return true;
}

static bool rd_str(cur_t *c, gguf_str_t *s, const char *what) {
    uint64_t len;
    if (!rd_u64(c, &len, what)) return false;
    if (len > c->size - c->pos) {
        err_set(c->err, c->errlen,
               "%s%s%s: length %" PRIu64 " at offset %zu runs past the end of the file (size %zu)",
               c->ctx ? c->ctx : "", c->ctx ? ": " : "", what, len, c->pos - 8, c->size);
        return false;
    }
    s->ptr = (const char *)(c->p + c->pos);
    s->len = len;
    c->pos += (size_t)len;
    return true;
}

/* Size of one scalar value type; 0 for STRING/ARRAY; -1 for unknown. */
static int vtype_size(uint32_t t) {
    switch (t) {
    case GGUF_VT_UINT8: case GGUF_VT_INT8: case GGUF_VT_BOOL: return 1;
    case GGUF_VT_UINT16: case GGUF_VT_INT16: return 2;
    case GGUF_VT_UINT32: case GGUF_VT_INT32: case GGUF_VT_FLOAT32: return 4;
    case GGUF_VT_UINT64: case GGUF_VT_INT64: case GGUF_VT_FLOAT64: return 8;
    case GGUF_VT_STRING: case GGUF_VT_ARRAY: return 0;
    default: return -1;
    }
}

const char *gguf_vtype_name(gguf_vtype_t t) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                  "bool", "string", "array", "u64", "i64", "f64"};
    if ((unsigned)t < sizeof(names) / sizeof(names[0])) return names[t];
    return "unknown";
}

/* Decodes a scalar of type t at p into the kv union. */
static void scalar_decode(gguf_kv_t *kv, uint32_t t, const uint8_t *p) {
    switch (t) {
    case GGUF_VT_UINT8: kv->v.u64 = p[0]; break;
    case GGUF_VT_BOOL: kv->v.u64 = p[0] != 0; break;
    case GGUF_VT_INT8: kv->v.i64 = (int8_t)p[0]; break;
    case GGUF_VT_UINT16: kv->v.u64 = (uint16_t)(p[0] | (p[1] << 8)); break;
    case GGUF_VT_INT16: kv->v.i64 = (int16_t)(uint16_t)(p[0] | (p[1] << 8)); break;
    case GGUF_VT_UINT32: kv->v.u64 = le32(p); break;
    case GGUF_VT_INT32: kv->v.i64 = (int32_t)le32(p); break;
    case GGUF_VT_UINT64: kv->v.u64 = le64(p); break;
    case GGUF_VT_INT64: kv->v.i64 = (int64_t)le64(p); break;
    case GGUF_VT_FLOAT32: {
        uint32_t u = le32(p);
        float f;
        memcpy(&f, &u, 4);
        kv->v.f64 = f;
        break;
    }
    case GGUF_VT_FLOAT64: {
        uint64_t u = le64(p);
        memcpy(&kv->v.f64, &u, 8);
        break;
    }
    default: break;
    }
}

/* ---------------------------------------------------------------- name tables */

static uint64_t str_hash(const char *p, uint64_t len) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (uint64_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static bool str_eq2(gguf_str_t a, const char *p, uint64_t len) {
    return a.len == len && (len == 0 || memcmp(a.ptr, p, (size_t)len) == 0);
}

static size_t hash_cap(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    return cap;
}

/* Looks up (p, len) in a table whose entries name strings through get(i). */
#define HASH_FIND(table, cap, namefield, arr, p, len, out)                         \
    do {                                                                           \
        (out) = SIZE_MAX;                                                          \
        if ((table) == NULL) break;                                                \
        size_t h_ = (size_t)str_hash((p), (len)) & ((cap) - 1);                    \
        while ((table)[h_] != 0) {                                                 \
            size_t i_ = (table)[h_] - 1;                                           \
            if (str_eq2((arr)[i_].namefield, (p), (len))) { (out) = i_; break; }   \
            h_ = (h_ + 1) & ((cap) - 1);                                           \
        }                                                                          \
    } while (0)

/* Inserts index i; returns the index of an existing equal name, or SIZE_MAX. */
#define HASH_INSERT(table, cap, namefield, arr, i, out)                              \
    do {                                                                             \
        (out) = SIZE_MAX;                                                            \
        gguf_str_t s_ = (arr)[i].namefield;                                          \
        size_t h_ = (size_t)str_hash(s_.ptr, s_.len) & ((cap) - 1);                  \
        while ((table)[h_] != 0) {                                                   \
            size_t j_ = (table)[h_] - 1;                                             \
            if (str_eq2((arr)[j_].namefield, s_.ptr, s_.len)) { (out) = j_; break; } \
            h_ = (h_ + 1) & ((cap) - 1);                                             \
        }                                                                            \
        if ((out) == SIZE_MAX) (table)[h_] = (uint32_t)(i) + 1;                      \
    } while (0)

/* ---------------------------------------------------------------- parsing */

static bool parse_kv(gguf_t *g, cur_t *c, size_t i) {
    gguf_kv_t *kv = &g->kv[i];
    char ctx[160], nb[96];
    snprintf(ctx, sizeof(ctx), "kv %zu", i);
    c->ctx = ctx;
    if (!rd_str(c, &kv->key, "key")) return false;
    snprintf(ctx, sizeof(ctx), "kv %zu '%s'", i, safe_name(kv->key, nb, sizeof(nb)));
    if (kv->key.len == 0 || kv->key.len > GGUF_MAX_KEY) {
        err_set(c->err, c->errlen, "%s: key length %" PRIu64 " is outside 1..%d", ctx, kv->key.len,
               GGUF_MAX_KEY);
        return false;
    }
    uint32_t t;
    if (!rd_u32(c, &t, "value type")) return false;
    int sz = vtype_size(t);
    if (sz < 0) {
        err_set(c->err, c->errlen, "%s: unknown value type %" PRIu32 " at offset %zu", ctx, t, c->pos - 4);
        return false;
    }
    kv->type = (gguf_vtype_t)t;
    if (t == GGUF_VT_STRING) return rd_str(c, &kv->v.str, "string value");
    if (t != GGUF_VT_ARRAY) {
        if (!need(c, (uint64_t)sz, "value")) return false;
        scalar_decode(kv, t, c->p + c->pos);
        c->pos += (size_t)sz;
        return true;
    }
    uint32_t et;
    uint64_t n;
    if (!rd_u32(c, &et, "array element type")) return false;
    int esz = vtype_size(et);
    if (esz < 0) {
        err_set(c->err, c->errlen, "%s: unknown array element type %" PRIu32 " at offset %zu", ctx, et,
               c->pos - 4);
        return false;
    }
    if (et == GGUF_VT_ARRAY) {
        err_set(c->err, c->errlen, "%s: nested arrays are not supported (at offset %zu)", ctx, c->pos - 4);
        return false;
    }
    if (!rd_u64(c, &n, "array length")) return false;
    const size_t remain = c->size - c->pos;
    /* strings take at least 8 bytes each (their length) */
    const uint64_t min_each = et == GGUF_VT_STRING ? 8 : (uint64_t)esz;
    if (n > remain / min_each) {
        err_set(c->err, c->errlen,
               "%s: array length %" PRIu64 " at offset %zu: %" PRIu64 "-byte elements cannot fit in "
               "the %zu bytes left in the file",
               ctx, n, c->pos - 8, min_each, remain);
        return false;
    }
    kv->v.arr.type = (gguf_vtype_t)et;
    kv->v.arr.n = n;
    kv->v.arr.data = c->p + c->pos;
    if (et != GGUF_VT_STRING) {
        c->pos += (size_t)(n * (uint64_t)esz);
        return true;
    }
    uint64_t *idx = malloc((size_t)(n ? n : 1) * sizeof(uint64_t));
    if (!idx) {
        err_set(c->err, c->errlen, "%s: out of memory indexing %" PRIu64 " strings", ctx, n);
        return false;
    }
    g->str_idx[i] = idx;
    for (uint64_t j = 0; j < n; j++) {
        idx[j] = c->pos;
        if (c->size - c->pos < 8) {
            err_set(c->err, c->errlen,
                   "%s: string %" PRIu64 " of %" PRIu64 " at offset %zu: length runs past the end of "
                   "the file (size %zu)",
                   ctx, j, n, c->pos, c->size);
            return false;
        }
        uint64_t len = le64(c->p + c->pos);
        c->pos += 8;
        if (len > c->size - c->pos) {
            err_set(c->err, c->errlen,
                   "%s: string %" PRIu64 " of %" PRIu64 ": length %" PRIu64 " at offset %zu runs past "
                   "the end of the file (size %zu)",
                   ctx, j, n, len, c->pos - 8, c->size);
            return false;
        }
        c->pos += (size_t)len;
    }
    return true;
}

static bool parse_tensor(gguf_t *g, cur_t *c, size_t i) {
    gguf_tensor_t *t = &g->tensors[i];
    char ctx[160], nb[96];
    snprintf(ctx, sizeof(ctx), "tensor %zu", i);
    c->ctx = ctx;
    if (!rd_str(c, &t->name, "name")) return false;
    snprintf(ctx, sizeof(ctx), "tensor %zu '%s'", i, safe_name(t->name, nb, sizeof(nb)));
    if (t->name.len == 0 || t->name.len > GGUF_MAX_NAME) {
        err_set(c->err, c->errlen, "%s: name length %" PRIu64 " is outside 1..%d", ctx, t->name.len,
               GGUF_MAX_NAME);
        return false;
    }
    if (!rd_u32(c, &t->n_dims, "n_dims")) return false;
    if (t->n_dims > GGUF_MAX_DIMS) {
        err_set(c->err, c->errlen, "%s: n_dims %" PRIu32 " is more than %d", ctx, t->n_dims, GGUF_MAX_DIMS);
        return false;
    }
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (!rd_u64(c, &t->ne[d], "dimension")) return false;
        if (t->ne[d] > (uint64_t)INT64_MAX) {
            err_set(c->err, c->errlen, "%s: dimension %" PRIu32 " is %" PRIu64 " (negative or absurd)", ctx, d,
                   t->ne[d]);
            return false;
        }
    }
    uint32_t type;
    if (!rd_u32(c, &type, "type")) return false;
    t->type = (gguf_ttype_t)type;
    if (type > 1000 || quant_block_elems(t->type) == 0) {
        err_set(c->err, c->errlen, "%s: unknown tensor type %" PRIu32 " (not a ggml type this reader knows)",
               ctx, type);
        return false;
    }
    if (!rd_u64(c, &t->offset, "offset")) return false;

    /* element count and byte size, overflow-checked */
    uint64_t rows = 1;
    for (int d = 1; d < GGUF_MAX_DIMS; d++) {
        if (t->ne[d] != 0 && rows > (uint64_t)INT64_MAX / t->ne[d]) {
            err_set(c->err, c->errlen, "%s: shape [%" PRIu64 ", %" PRIu64 ", %" PRIu64 ", %" PRIu64
                   "] overflows 64 bits", ctx, t->ne[0], t->ne[1], t->ne[2], t->ne[3]);
            return false;
        }
        rows *= t->ne[d];
    }
    if (rows != 0 && t->ne[0] > (uint64_t)INT64_MAX / rows) {
        err_set(c->err, c->errlen, "%s: shape [%" PRIu64 ", %" PRIu64 ", %" PRIu64 ", %" PRIu64
               "] overflows 64 bits", ctx, t->ne[0], t->ne[1], t->ne[2], t->ne[3]);
        return false;
    }
    int64_t rb = quant_row_bytes(t->type, (int64_t)t->ne[0]);
    if (rb < 0) {
        err_set(c->err, c->errlen, "%s: row length %" PRIu64 " is not a whole number of %s blocks (%" PRId64
               " elements each)", ctx, t->ne[0], quant_type_name(t->type), quant_block_elems(t->type));
        return false;
    }
    if (rows != 0 && (uint64_t)rb > UINT64_MAX / rows) {
        err_set(c->err, c->errlen, "%s: byte size overflows 64 bits", ctx);
        return false;
    }
    t->nbytes = (uint64_t)rb * rows;
    return true;
}

static gguf_t *parse(const uint8_t *buf, size_t size, bool mapped, char *err, size_t errlen) {
    gguf_t *g = calloc(1, sizeof(*g));
    if (!g) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    g->base = buf;
    g->size = size;
    g->mapped = mapped;
    g->alignment = 32;
    cur_t c = {.p = buf, .size = size, .pos = 0, .err = err, .errlen = errlen, .ctx = "header"};

    if (size == 0) {
        err_set(err, errlen, "empty file (0 bytes): not a GGUF model");
        goto fail;
    }
    uint32_t magic;
    if (size < 4 || (magic = le32(buf)) != GGUF_MAGIC) {
        err_set(err, errlen, "not a GGUF file: bad magic (expected \"GGUF\" in the first 4 bytes)");
        goto fail;
    }
    c.pos = 4;
    if (!rd_u32(&c, &g->version, "version")) goto fail;
    if (g->version != 2 && g->version != 3) {
        if (g->version == 0x02000000u || g->version == 0x03000000u)
            err_set(err, errlen, "big-endian GGUF files are not supported; use a little-endian file");
        else
            err_set(err, errlen, "unsupported GGUF version %" PRIu32 " (this reader supports 2 and 3)",
                   g->version);
        goto fail;
    }
    uint64_t n_tensors, n_kv;
    if (!rd_u64(&c, &n_tensors, "tensor count") || !rd_u64(&c, &n_kv, "kv count")) goto fail;
    /* A kv needs at least 8 (key len) + 1 (key) + 4 (type) + 1 bytes, a tensor info
     * 8 + 1 + 4 + 4 + 8; counts that cannot fit are rejected before allocating. */
    if (n_kv > (size - c.pos) / 14 || n_kv >= UINT32_MAX) {
        err_set(err, errlen, "header: kv count %" PRIu64 " cannot fit in a file of %zu bytes", n_kv, size);
        goto fail;
    }
    if (n_tensors > (size - c.pos) / 25 || n_tensors >= UINT32_MAX) {
        err_set(err, errlen, "header: tensor count %" PRIu64 " cannot fit in a file of %zu bytes", n_tensors,
               size);
        goto fail;
    }

    g->n_kv = (size_t)n_kv;
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof(*g->kv));
    g->str_idx = calloc(g->n_kv ? g->n_kv : 1, sizeof(*g->str_idx));
    g->kv_hcap = hash_cap(g->n_kv);
    g->kv_hash = calloc(g->kv_hcap, sizeof(uint32_t));
    if (!g->kv || !g->str_idx || !g->kv_hash) {
        err_set(err, errlen, "out of memory for %zu kv pairs", g->n_kv);
        goto fail;
    }
    for (size_t i = 0; i < g->n_kv; i++) {
        if (!parse_kv(g, &c, i)) goto fail;
        size_t dup;
        HASH_INSERT(g->kv_hash, g->kv_hcap, key, g->kv, i, dup);
        if (dup != SIZE_MAX) {
            char nb[96];
            err_set(err, errlen, "kv %zu: duplicate key '%s' (first defined by kv %zu)", i,
                   safe_name(g->kv[i].key, nb, sizeof(nb)), dup);
            goto fail;
        }
    }
    c.ctx = NULL;

    const gguf_kv_t *al = gguf_find(g, "general.alignment");
    if (al) {
        uint64_t a = 0;
        if (al->type == GGUF_VT_UINT8 || al->type == GGUF_VT_UINT16 || al->type == GGUF_VT_UINT32 ||
            al->type == GGUF_VT_UINT64)
            a = al->v.u64;
        else if ((al->type == GGUF_VT_INT8 || al->type == GGUF_VT_INT16 || al->type == GGUF_VT_INT32 ||
                  al->type == GGUF_VT_INT64) && al->v.i64 > 0)
            a = (uint64_t)al->v.i64;
        if (a == 0 || (a & (a - 1)) != 0 || a > GGUF_MAX_ALIGN) {
            err_set(err, errlen, "general.alignment must be a power of two in 1..%u (got %s %" PRIu64 ")",
                   GGUF_MAX_ALIGN, gguf_vtype_name(al->type), a);
            goto fail;
        }
        g->alignment = a;
    }

    g->n_tensors = (size_t)n_tensors;
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof(*g->tensors));
    g->t_hcap = hash_cap(g->n_tensors);
    g->t_hash = calloc(g->t_hcap, sizeof(uint32_t));
    if (!g->tensors || !g->t_hash) {
        err_set(err, errlen, "out of memory for %zu tensors", g->n_tensors);
        goto fail;
    }
    for (size_t i = 0; i < g->n_tensors; i++) {
        if (!parse_tensor(g, &c, i)) goto fail;
        size_t dup;
        HASH_INSERT(g->t_hash, g->t_hcap, name, g->tensors, i, dup);
        if (dup != SIZE_MAX) {
            char nb[96];
            err_set(err, errlen, "tensor %zu: duplicate name '%s' (first defined by tensor %zu)", i,
                   safe_name(g->tensors[i].name, nb, sizeof(nb)), dup);
            goto fail;
        }
    }

    /* data section: aligned after the tensor infos */
    uint64_t pad = (g->alignment - (c.pos % g->alignment)) % g->alignment;
    g->data_off = (uint64_t)c.pos + pad;
    for (size_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor_t *t = &g->tensors[i];
        char nb[96];
        if (t->offset % g->alignment != 0) {
            err_set(err, errlen, "tensor %zu '%s': offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                   i, safe_name(t->name, nb, sizeof(nb)), t->offset, g->alignment);
            goto fail;
        }
        if (t->offset > UINT64_MAX - g->data_off || t->nbytes > UINT64_MAX - g->data_off - t->offset ||
            g->data_off + t->offset + t->nbytes > size) {
            err_set(err, errlen,
                   "tensor %zu '%s': data [%" PRIu64 " + %" PRIu64 ", +%" PRIu64 " bytes) ends past the end "
                   "of the file (size %zu; truncated file?)",
                   i, safe_name(t->name, nb, sizeof(nb)), g->data_off, t->offset, t->nbytes, size);
            goto fail;
        }
        t->data = buf + g->data_off + t->offset;
    }
    return g;

fail:
    g->mapped = false; /* the caller unmaps */
    gguf_close(g);
    return NULL;
}

gguf_t *gguf_open_mem(const void *buf, size_t len, char *err, size_t errlen) {
    if (!buf && len > 0) {
        err_set(err, errlen, "NULL buffer");
        return NULL;
    }
    static const uint8_t empty[1];
    return parse(buf ? buf : empty, len, false, err, errlen);
}

gguf_t *gguf_open(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err_set(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        err_set(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        err_set(err, errlen, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    if (size == 0) {
        close(fd);
        err_set(err, errlen, "%s: empty file (0 bytes): not a GGUF model", path);
        return NULL;
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        err_set(err, errlen, "%s: mmap failed: %s", path, strerror(errno));
        return NULL;
    }
    char e[512] = "";
    gguf_t *g = parse(map, size, true, e, sizeof(e));
    if (!g) {
        munmap(map, size);
        err_set(err, errlen, "%s: %s", path, e);
        return NULL;
    }
    return g;
}

void gguf_release_data(const gguf_t *g) {
    if (!g || !g->mapped) return;
    const long ps = sysconf(_SC_PAGESIZE);
    if (ps <= 0) return;
    const size_t page = (size_t)ps, start = ((size_t)g->data_off + page - 1) / page * page;
    if (start >= g->size) return;
    (void)madvise((void *)(g->base + start), g->size - start, MADV_DONTNEED);
}

void gguf_release_tensor(const gguf_t *g, const gguf_tensor_t *t) {
    if (!g || !t || !g->mapped) return;
    const long ps = sysconf(_SC_PAGESIZE);
    const uint8_t *p = t->data;
    if (ps <= 0 || p < g->base || p > g->base + g->size || t->nbytes > (uint64_t)(g->base + g->size - p)) return;
    const size_t page = (size_t)ps, off = (size_t)(p - g->base);
    const size_t start = (off + page - 1) / page * page, end = (off + (size_t)t->nbytes) / page * page;
    if (end > start) (void)madvise((void *)(g->base + start), end - start, MADV_DONTNEED);
}

void gguf_close(gguf_t *g) {
    if (!g) return;
    if (g->str_idx)
        for (size_t i = 0; i < g->n_kv; i++) free(g->str_idx[i]);
    free(g->str_idx);
    free(g->kv);
    free(g->tensors);
    free(g->kv_hash);
    free(g->t_hash);
    if (g->mapped) munmap((void *)g->base, g->size);
    free(g);
}

/* ---------------------------------------------------------------- accessors */

uint32_t gguf_version(const gguf_t *g) { return g->version; }
uint64_t gguf_alignment(const gguf_t *g) { return g->alignment; }
size_t gguf_n_kv(const gguf_t *g) { return g->n_kv; }
size_t gguf_n_tensors(const gguf_t *g) { return g->n_tensors; }

const gguf_kv_t *gguf_kv_at(const gguf_t *g, size_t i) { return i < g->n_kv ? &g->kv[i] : NULL; }

const gguf_tensor_t *gguf_tensor_at(const gguf_t *g, size_t i) {
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const gguf_kv_t *gguf_find(const gguf_t *g, const char *key) {
    size_t i;
    HASH_FIND(g->kv_hash, g->kv_hcap, key, g->kv, key, strlen(key), i);
    return i == SIZE_MAX ? NULL : &g->kv[i];
}

const gguf_tensor_t *gguf_find_tensor(const gguf_t *g, const char *name) {
    size_t i;
    HASH_FIND(g->t_hash, g->t_hcap, name, g->tensors, name, strlen(name), i);
    return i == SIZE_MAX ? NULL : &g->tensors[i];
}

static bool is_unsigned(gguf_vtype_t t) {
    return t == GGUF_VT_UINT8 || t == GGUF_VT_UINT16 || t == GGUF_VT_UINT32 || t == GGUF_VT_UINT64;
}
static bool is_signed(gguf_vtype_t t) {
    return t == GGUF_VT_INT8 || t == GGUF_VT_INT16 || t == GGUF_VT_INT32 || t == GGUF_VT_INT64;
}

/* range: the type is right (an integer) but the value does not fit. */
static int type_err(const gguf_kv_t *kv, const char *want, bool range, char *err, size_t errlen) {
    char nb[96];
    if (range)
        err_set(err, errlen, "key '%s': %s value is out of range for %s", safe_name(kv->key, nb, sizeof(nb)),
               gguf_vtype_name(kv->type), want);
    else
        err_set(err, errlen, "key '%s' has type %s, expected %s", safe_name(kv->key, nb, sizeof(nb)),
               gguf_vtype_name(kv->type), want);
    return -2;
}

int gguf_get_u64(const gguf_t *g, const char *key, uint64_t *out, char *err, size_t errlen) {
    const gguf_kv_t *kv = gguf_find(g, key);
    if (!kv) return -1;
    if (is_unsigned(kv->type)) *out = kv->v.u64;
    else if (is_signed(kv->type) && kv->v.i64 >= 0) *out = (uint64_t)kv->v.i64;
    else return type_err(kv, "an unsigned integer", is_signed(kv->type), err, errlen);
    return 0;
}

int gguf_get_i64(const gguf_t *g, const char *key, int64_t *out, char *err, size_t errlen) {
    const gguf_kv_t *kv = gguf_find(g, key);
    if (!kv) return -1;
    if (is_signed(kv->type)) *out = kv->v.i64;
    else if (is_unsigned(kv->type) && kv->v.u64 <= (uint64_t)INT64_MAX) *out = (int64_t)kv->v.u64;
    else return type_err(kv, "an integer", is_unsigned(kv->type), err, errlen);
    return 0;
}

int gguf_get_f64(const gguf_t *g, const char *key, double *out, char *err, size_t errlen) {
    const gguf_kv_t *kv = gguf_find(g, key);
    if (!kv) return -1;
    if (kv->type == GGUF_VT_FLOAT32 || kv->type == GGUF_VT_FLOAT64) *out = kv->v.f64;
    else if (is_unsigned(kv->type)) *out = (double)kv->v.u64;
    else if (is_signed(kv->type)) *out = (double)kv->v.i64;
    else return type_err(kv, "a number", false, err, errlen);
    return 0;
}

int gguf_get_bool(const gguf_t *g, const char *key, bool *out, char *err, size_t errlen) {
    const gguf_kv_t *kv = gguf_find(g, key);
    if (!kv) return -1;
    if (kv->type != GGUF_VT_BOOL) return type_err(kv, "bool", false, err, errlen);
    *out = kv->v.u64 != 0;
    return 0;
}

int gguf_get_str(const gguf_t *g, const char *key, gguf_str_t *out, char *err, size_t errlen) {
    const gguf_kv_t *kv = gguf_find(g, key);
    if (!kv) return -1;
    if (kv->type != GGUF_VT_STRING) return type_err(kv, "string", false, err, errlen);
    *out = kv->v.str;
    return 0;
}

uint64_t gguf_arr_len(const gguf_kv_t *kv) { return kv && kv->type == GGUF_VT_ARRAY ? kv->v.arr.n : 0; }

gguf_str_t gguf_arr_str(const gguf_t *g, const gguf_kv_t *kv, uint64_t i) {
    gguf_str_t s = {"", 0};
    if (!g || !kv || kv < g->kv || kv >= g->kv + g->n_kv) return s;
    size_t k = (size_t)(kv - g->kv);
    if (kv->type != GGUF_VT_ARRAY || kv->v.arr.type != GGUF_VT_STRING || i >= kv->v.arr.n || !g->str_idx[k])
        return s;
    uint64_t off = g->str_idx[k][i];
    s.len = le64(g->base + off);
    s.ptr = (const char *)(g->base + off + 8);
    return s;
}

int64_t gguf_arr_i64(const gguf_kv_t *kv, uint64_t i) {
    if (!kv || kv->type != GGUF_VT_ARRAY || i >= kv->v.arr.n) return 0;
    int sz = vtype_size(kv->v.arr.type);
    if (sz <= 0) return 0;
    gguf_kv_t tmp;
    scalar_decode(&tmp, kv->v.arr.type, kv->v.arr.data + i * (uint64_t)sz);
    switch (kv->v.arr.type) {
    case GGUF_VT_FLOAT32: case GGUF_VT_FLOAT64: /* truncated; NaN and out-of-range give 0 */
        return tmp.v.f64 > -9.2e18 && tmp.v.f64 < 9.2e18 ? (int64_t)tmp.v.f64 : 0;
    default: return tmp.v.i64; /* unsigned were zero-extended into the same bits */
    }
}

double gguf_arr_f64(const gguf_kv_t *kv, uint64_t i) {
    if (!kv || kv->type != GGUF_VT_ARRAY || i >= kv->v.arr.n) return 0;
    int sz = vtype_size(kv->v.arr.type);
    if (sz <= 0) return 0;
    gguf_kv_t tmp;
    scalar_decode(&tmp, kv->v.arr.type, kv->v.arr.data + i * (uint64_t)sz);
    if (kv->v.arr.type == GGUF_VT_FLOAT32 || kv->v.arr.type == GGUF_VT_FLOAT64) return tmp.v.f64;
    if (is_unsigned(kv->v.arr.type) || kv->v.arr.type == GGUF_VT_BOOL) return (double)tmp.v.u64;
    return (double)tmp.v.i64;
}

bool gguf_str_eq(gguf_str_t s, const char *cstr) { return str_eq2(s, cstr, strlen(cstr)); }

char *gguf_str_copy(gguf_str_t s, char *buf, size_t bufsize) {
    if (bufsize == 0) return buf;
    size_t n = s.len < bufsize - 1 ? (size_t)s.len : bufsize - 1;
    if (n) memcpy(buf, s.ptr, n);
    buf[n] = '\0';
    return buf;
}
