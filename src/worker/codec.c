/* codec.c — request decoding/validation and result encoding (see codec.h, docs/schema.md).
 *
 * Decoding goes: size check -> format detection -> iterative pre-scan (depth, and for
 * msgpack the whole structure, so counts are backed by bytes) -> jansson/msgpack-c ->
 * one walk over a format-neutral view (val_t) that validates every field krill uses.
 * The first error found wins; fields are checked in a fixed order so answers are
 * deterministic. Strings point into the parsed tree (JSON) or into a per-request
 * arena (msgpack copies, concatenated content parts), so a decode does a handful of
 * allocations whatever the request holds. */
#include "err.h"
#include "codec.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>

#include "log.h"
#include "utf8.h"

/* ================================================================ small helpers */

/* ================================================================ names */

const char *codec_error_name(codec_error_t e) {
    switch (e) {
    case CODEC_ERR_NONE: return "";
    case CODEC_ERR_INVALID_JSON: return "invalid_json";
    case CODEC_ERR_INVALID_MSGPACK: return "invalid_msgpack";
    case CODEC_ERR_MISSING_FIELD: return "missing_field";
    case CODEC_ERR_INVALID_TYPE: return "invalid_type";
    case CODEC_ERR_INVALID_VALUE: return "invalid_value";
    case CODEC_ERR_UNSUPPORTED: return "unsupported";
    case CODEC_ERR_CONTEXT_LENGTH_EXCEEDED: return "context_length_exceeded";
    case CODEC_ERR_MODEL_NOT_FOUND: return "model_not_found";
    case CODEC_ERR_INTERNAL: return "internal_error";
    }
    return "internal_error";
}

int codec_error_status(codec_error_t e) {
    switch (e) {
    case CODEC_ERR_NONE: return 200;
    case CODEC_ERR_MODEL_NOT_FOUND: return 404;
    case CODEC_ERR_INTERNAL: return 500;
    default: return 400;
    }
}

const char *codec_dlq_name(codec_dlq_t d) {
    switch (d) {
    case CODEC_DLQ_NONE: return "";
    case CODEC_DLQ_MESSAGE_TOO_LARGE: return "message_too_large";
    case CODEC_DLQ_NESTING_TOO_DEEP: return "nesting_too_deep";
    case CODEC_DLQ_INVALID_JSON: return "invalid_json";
    case CODEC_DLQ_INVALID_MSGPACK: return "invalid_msgpack";
    case CODEC_DLQ_NOT_AN_OBJECT: return "not_an_object";
    }
    return "not_an_object";
}

void codec_limits_defaults(codec_limits_t *l) {
    memset(l, 0, sizeof *l);
    l->max_message_bytes = 1 << 20;
    l->max_tokens_cap = 4096;
    l->default_max_tokens = 256;
}

/* ================================================================ detection + pre-scans */

static bool is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static bool is_mp_map(unsigned char c) { return (c >= 0x80 && c <= 0x8f) || c == 0xde || c == 0xdf; }

int codec_detect(const void *buf, size_t len) {
    const unsigned char *p = buf;
    if (len == 0) return -1;
    if (is_mp_map(p[0])) return 1;
    size_t i = 0;
    while (i < len && is_ws(p[i])) i++;
    return i < len && p[i] == '{' ? 0 : -1;
}

/* JSON: true when containers nest deeper than limit. Strings (with escapes) are
 * skipped; the text need not be valid JSON (jansson judges that afterwards). */
static bool json_too_deep(const unsigned char *p, size_t n, int limit) {
    int d = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c == '"') {
            for (i++; i < n && p[i] != '"'; i++)
                if (p[i] == '\\') i++;
        } else if (c == '{' || c == '[') {
            if (++d > limit) return true;
        } else if ((c == '}' || c == ']') && d > 0) {
            d--;
        }
    }
    return false;
}

/* Reads one msgpack header at *pp. kind: 0 scalar (skipped whole), 1 array, 2 map,
 * 3 str (payload not consumed: *len bytes follow). Returns 0, or -1 with why. */
enum { MP_SCALAR = 0, MP_ARRAY = 1, MP_MAP = 2, MP_STR = 3 };
static uint64_t be(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}
static int mp_header(const unsigned char **pp, const unsigned char *end, int *kind, uint64_t *count,
                     const char **why) {
    const unsigned char *p = *pp;
    if (p >= end) goto truncated;
    unsigned c = *p++;
    uint64_t skip = 0;
    int lenbytes = 0;
    *kind = MP_SCALAR;
    *count = 0;
    if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
        /* fixint, nil, bool */
    } else if (c <= 0x8f) {
        *kind = MP_MAP, *count = c & 0x0f;
    } else if (c <= 0x9f) {
        *kind = MP_ARRAY, *count = c & 0x0f;
    } else if (c <= 0xbf) {
        *kind = MP_STR, *count = c & 0x1f;
    } else {
        switch (c) {
        case 0xc1: *why = "reserved byte 0xc1"; *pp = p - 1; return -1;
        case 0xc4: case 0xc5: case 0xc6: lenbytes = 1 << (c - 0xc4); break; /* bin */
        case 0xc7: case 0xc8: case 0xc9: lenbytes = 1 << (c - 0xc7); skip = 1; break; /* ext */
        case 0xca: skip = 4; break;
        case 0xcb: skip = 8; break;
        case 0xcc: case 0xcd: case 0xce: case 0xcf: skip = 1u << (c - 0xcc); break;
        case 0xd0: case 0xd1: case 0xd2: case 0xd3: skip = 1u << (c - 0xd0); break;
        case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: skip = 1 + (1u << (c - 0xd4)); break;
        case 0xd9: case 0xda: case 0xdb: *kind = MP_STR; lenbytes = 1 << (c - 0xd9); break;
        case 0xdc: case 0xdd: *kind = MP_ARRAY; lenbytes = 2 << (c - 0xdc); break;
        case 0xde: case 0xdf: *kind = MP_MAP; lenbytes = 2 << (c - 0xde); break;
        default: *why = "unknown type byte"; *pp = p - 1; return -1;
        }
        if (lenbytes) {
            if ((size_t)(end - p) < (size_t)lenbytes) goto truncated;
            uint64_t v = be(p, lenbytes);
            p += lenbytes;
            if (*kind == MP_SCALAR) skip += v; /* bin/ext payload */
            else *count = v;
        }
    }
    if (*kind == MP_STR) skip = *count;
    if (*kind != MP_STR) {
        if ((uint64_t)(end - p) < skip) goto truncated;
        p += skip;
    } else if ((uint64_t)(end - p) < skip) {
        goto truncated;
    }
    *pp = p;
    return 0;
truncated:
    *why = "truncated";
    *pp = end;
    return -1;
}

/* Validates that [p, p+n) is exactly one msgpack value nested at most limit deep.
 * Returns 0, 1 too deep, or -1 invalid (why filled). Iterative; counts are checked
 * against the bytes left (each item needs >= 1 byte). */
static int mp_prescan(const unsigned char *p, size_t n, int limit, const char **why) {
    const unsigned char *end = p + n;
    uint64_t stack[CODEC_MAX_DEPTH + 1];
    int depth = 0;
    if (limit > CODEC_MAX_DEPTH) limit = CODEC_MAX_DEPTH;
    for (;;) {
        int kind;
        uint64_t count;
        if (mp_header(&p, end, &kind, &count, why) != 0) return -1;
        if (kind == MP_STR) p += count;
        if (kind == MP_ARRAY || kind == MP_MAP) {
            /* every container counts, empty ones too (msgpack-c checks its stack
             * before it looks at the count), as in the JSON pre-scan */
            if (depth == limit) return 1;
            uint64_t items = kind == MP_MAP ? count * 2 : count;
            if (items > (uint64_t)(end - p)) {
                *why = "truncated (a container holds more items than there are bytes)";
                return -1;
            }
            if (items > 0) {
                stack[depth++] = items;
                continue;
            }
        }
        while (depth > 0) {
            if (--stack[depth - 1] > 0) break;
            depth--;
        }
        if (depth == 0) break;
    }
    if (p != end) {
        *why = "trailing bytes after the value";
        return -1;
    }
    return 0;
}

/* Skips one msgpack value of any depth with a single counter; 0 or -1. */
static int mp_skip(const unsigned char **pp, const unsigned char *end) {
    uint64_t remaining = 1;
    const char *why;
    while (remaining > 0) {
        int kind;
        uint64_t count;
        if (mp_header(pp, end, &kind, &count, &why) != 0) return -1;
        remaining--;
        if (kind == MP_STR) *pp += count;
        else if (kind == MP_ARRAY) remaining += count;
        else if (kind == MP_MAP) remaining += 2 * count;
        if (remaining > (uint64_t)(end - *pp)) return -1;
    }
    return 0;
}

static bool id_ok(const unsigned char *s, size_t n) {
    if (n == 0 || n > CODEC_MAX_ID_BYTES || memchr(s, 0, n)) return false;
    return utf8_valid(s, n);
}

/* Cheap top-level scan of bytes that did not decode: a "custom_id" (else "id") key of
 * the outermost object with a plain string value (no escapes). */
static bool json_scan_id(const unsigned char *p, size_t n, const unsigned char **id, size_t *idlen) {
    int d = 0, pending = 0; /* 1: a custom_id value is next, 2: an id value */
    bool found_id = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (is_ws(c)) continue;
        if (c == '"') {
            size_t s = i + 1, j = s;
            bool esc = false;
            while (j < n && p[j] != '"') {
                if (p[j] == '\\') esc = true, j++;
                else if (p[j] < 0x20) esc = true; /* control char: not a plain string */
                j++;
            }
            if (j >= n) return found_id;
            if (d == 1 && pending) {
                if (!esc && id_ok(p + s, j - s)) {
                    *id = p + s;
                    *idlen = j - s;
                    if (pending == 1) return true;
                    found_id = true;
                }
                pending = 0;
            } else if (d == 1) {
                size_t k = j + 1;
                while (k < n && is_ws(p[k])) k++;
                if (k < n && p[k] == ':') {
                    size_t kl = j - s;
                    if (kl == 9 && memcmp(p + s, "custom_id", 9) == 0) pending = 1;
                    else if (kl == 2 && memcmp(p + s, "id", 2) == 0 && !found_id) pending = 2;
                    i = k;
                    continue;
                }
            }
            i = j;
            continue;
        }
        pending = 0;
        if (c == '{' || c == '[') d++;
        else if ((c == '}' || c == ']') && d > 0) d--;
    }
    return found_id;
}

static bool mp_scan_id(const unsigned char *p, size_t n, const unsigned char **id, size_t *idlen) {
    const unsigned char *end = p + n;
    const char *why;
    int kind;
    uint64_t count;
    bool found_id = false;
    if (mp_header(&p, end, &kind, &count, &why) != 0 || kind != MP_MAP) return false;
    for (uint64_t i = 0; i < count; i++) {
        int which = 0;
        const unsigned char *k = p;
        int kk;
        uint64_t kl;
        if (mp_header(&p, end, &kk, &kl, &why) != 0) return found_id;
        if (kk == MP_STR) {
            if (kl == 9 && memcmp(p, "custom_id", 9) == 0) which = 1;
            else if (kl == 2 && memcmp(p, "id", 2) == 0) which = 2;
            p += kl;
        } else {
            p = k;
            if (mp_skip(&p, end) != 0) return found_id;
        }
        const unsigned char *v = p;
        int vk;
        uint64_t vl;
        if (which && mp_header(&p, end, &vk, &vl, &why) == 0 && vk == MP_STR && id_ok(p, vl) &&
            (which == 1 || !found_id)) {
            *id = p;
            *idlen = vl;
            if (which == 1) return true;
            found_id = true;
        }
        p = v;
        if (mp_skip(&p, end) != 0) return found_id;
    }
    return found_id;
}

/* ================================================================ request state */

typedef struct chunk {
    struct chunk *next;
    size_t cap, used;
    char data[];
} chunk_t;

typedef struct {
    json_t *root;
    msgpack_unpacked mp;
    bool mp_used;
    chunk_t *arena; /* newest first; pointers into it stay valid until clear */
    char idbuf[CODEC_MAX_ID_BYTES + 1];
    char param[128];
} priv_t;

/* Bump allocation in chunks (the first sized from the message): a decode makes a
 * few allocations whatever the request holds. Out of memory is fatal (CHECK): the
 * sizes are bounded by input.max_message_bytes. */
static void *arena_alloc(priv_t *pv, size_t n, size_t align) {
    chunk_t *c = pv->arena;
    size_t at = c ? (c->used + align - 1) & ~(align - 1) : 0;
    if (!c || at + n > c->cap) {
        size_t cap = c ? c->cap * 2 : 1024;
        if (cap < n + align) cap = n + align;
        chunk_t *nc = malloc(sizeof *nc + cap);
        CHECK(nc != NULL);
        nc->next = c;
        nc->cap = cap;
        nc->used = 0;
        pv->arena = c = nc;
        at = ((uintptr_t)c->data % align) ? align - (uintptr_t)c->data % align : 0;
    }
    c->used = at + n;
    return c->data + at;
}

static void arena_reserve(priv_t *pv, size_t n) {
    if (!pv->arena || pv->arena->cap - pv->arena->used < n) {
        arena_alloc(pv, n, 1);
        pv->arena->used = 0;
    }
}

static char *arena_strdup(priv_t *pv, const char *s, size_t n) {
    char *d = arena_alloc(pv, n + 1, 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

void codec_request_clear(codec_request_t *r) {
    if (!r) return;
    priv_t *pv = r->priv_;
    if (pv) {
        json_decref(pv->root);
        if (pv->mp_used) msgpack_unpacked_destroy(&pv->mp);
        for (chunk_t *c = pv->arena, *n; c; c = n) {
            n = c->next;
            free(c);
        }
        free(pv);
    }
    memset(r, 0, sizeof *r);
}

/* Format-neutral view of a parsed value. */
typedef struct {
    const json_t *j;
    const msgpack_object *m;
} val_t;

enum { VT_ABSENT = 0, VT_NULL, VT_BOOL, VT_INT, VT_UINT, VT_REAL, VT_STR, VT_ARR, VT_OBJ, VT_BIN, VT_EXT };

static int vtype(val_t v) {
    if (v.j) {
        switch (json_typeof(v.j)) {
        case JSON_OBJECT: return VT_OBJ;
        case JSON_ARRAY: return VT_ARR;
        case JSON_STRING: return VT_STR;
        case JSON_INTEGER: return VT_INT;
        case JSON_REAL: return VT_REAL;
        case JSON_TRUE: case JSON_FALSE: return VT_BOOL;
        case JSON_NULL: return VT_NULL;
        }
        return VT_NULL;
    }
    if (!v.m) return VT_ABSENT;
    switch (v.m->type) {
    case MSGPACK_OBJECT_NIL: return VT_NULL;
    case MSGPACK_OBJECT_BOOLEAN: return VT_BOOL;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return v.m->via.u64 > INT64_MAX ? VT_UINT : VT_INT;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return VT_INT;
    case MSGPACK_OBJECT_FLOAT32: case MSGPACK_OBJECT_FLOAT64: return VT_REAL;
    case MSGPACK_OBJECT_STR: return VT_STR;
    case MSGPACK_OBJECT_ARRAY: return VT_ARR;
    case MSGPACK_OBJECT_MAP: return VT_OBJ;
    case MSGPACK_OBJECT_BIN: return VT_BIN;
    case MSGPACK_OBJECT_EXT: return VT_EXT;
    }
    return VT_EXT;
}

static const char *vtype_name(int t) {
    static const char *const names[] = {"nothing", "null", "a boolean", "an integer", "an integer",
                                        "a number", "a string", "an array", "an object", "binary data",
                                        "an extension value"};
    return names[t];
}

static int64_t v_int(val_t v) { return v.j ? (int64_t)json_integer_value(v.j) : v.m->via.i64; }
static double v_num(val_t v) {
    if (v.j) return json_number_value(v.j);
    if (v.m->type == MSGPACK_OBJECT_POSITIVE_INTEGER) return (double)v.m->via.u64;
    if (v.m->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) return (double)v.m->via.i64;
    return v.m->via.f64;
}
static bool v_bool(val_t v) { return v.j ? json_is_true(v.j) : v.m->via.boolean; }
static size_t v_arr_len(val_t v) { return v.j ? json_array_size(v.j) : v.m->via.array.size; }
static val_t v_arr_at(val_t v, size_t i) {
    val_t r = {0};
    if (v.j) r.j = json_array_get(v.j, i);
    else r.m = &v.m->via.array.ptr[i];
    return r;
}
static const char *v_str_raw(val_t v, size_t *n) {
    if (v.j) {
        *n = json_string_length(v.j);
        return json_string_value(v.j);
    }
    *n = v.m->via.str.size;
    return v.m->via.str.ptr ? v.m->via.str.ptr : ""; /* msgpack-c: NULL for "" */
}

typedef struct {
    codec_request_t *r;
    priv_t *pv;
    const codec_limits_t *lim;
    const char *prefix; /* "body." inside a Batch line, else "" */
} dec_t;

static bool failed(const dec_t *d) { return d->r->status != CODEC_OK; }

static void fail(dec_t *d, codec_error_t e, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(dec_t *d, codec_error_t e, const char *field, const char *fmt, ...) {
    codec_request_t *r = d->r;
    if (r->status != CODEC_OK) return;
    r->status = CODEC_INVALID;
    r->error = e;
    r->status_code = codec_error_status(e);
    if (field) {
        snprintf(d->pv->param, sizeof d->pv->param, "%s%s", d->prefix, field);
        r->param = d->pv->param;
    }
    int off = field ? snprintf(r->error_message, sizeof r->error_message, "%s: ", d->pv->param) : 0;
    if (off < 0 || (size_t)off >= sizeof r->error_message) off = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error_message + off, sizeof r->error_message - (size_t)off, fmt, ap);
    va_end(ap);
}

static bool want_type(dec_t *d, val_t v, int want, const char *field, const char *what) {
    int t = vtype(v);
    if (t == want || (want == VT_INT && t == VT_UINT)) return true;
    fail(d, CODEC_ERR_INVALID_TYPE, field, "expected %s, got %s", what, vtype_name(t));
    return false;
}

/* A string field: type, UTF-8 (msgpack; jansson checked JSON), no NUL. Returns a
 * NUL-terminated pointer valid for the request's life, or NULL after fail(). */
static const char *get_str(dec_t *d, val_t v, const char *field, size_t *len) {
    if (!want_type(d, v, VT_STR, field, "a string")) return NULL;
    size_t n;
    const char *s = v_str_raw(v, &n);
    if (v.m && !utf8_valid(s, n)) {
        fail(d, CODEC_ERR_INVALID_VALUE, field, "not valid UTF-8; send UTF-8 text");
        return NULL;
    }
    if (memchr(s, 0, n)) { /* JSON \u0000 (parsed with JSON_ALLOW_NUL) or a msgpack NUL byte */
        fail(d, CODEC_ERR_INVALID_VALUE, field, "contains a NUL character");
        return NULL;
    }
    if (v.m) s = arena_strdup(d->pv, s, n);
    if (len) *len = n;
    return s;
}

static bool get_num(dec_t *d, val_t v, const char *field, double lo, double hi, bool lo_open, double *out) {
    int t = vtype(v);
    if (t != VT_INT && t != VT_UINT && t != VT_REAL) {
        fail(d, CODEC_ERR_INVALID_TYPE, field, "expected a number, got %s", vtype_name(t));
        return false;
    }
    double x = v_num(v);
    bool ok = (lo_open ? x > lo : x >= lo) && x <= hi; /* false for NaN */
    if (!ok) {
        fail(d, CODEC_ERR_INVALID_VALUE, field, "must be in %c%g, %g] (got %g)", lo_open ? '(' : '[', lo, hi, x);
        return false;
    }
    *out = x;
    return true;
}

static bool get_int(dec_t *d, val_t v, const char *field, int64_t lo, int64_t hi, int64_t *out) {
    if (!want_type(d, v, VT_INT, field, "an integer")) return false;
    if (vtype(v) == VT_UINT || v_int(v) < lo || v_int(v) > hi) {
        if (vtype(v) == VT_UINT)
            fail(d, CODEC_ERR_INVALID_VALUE, field, "must be in [%" PRId64 ", %" PRId64 "]", lo, hi);
        else
            fail(d, CODEC_ERR_INVALID_VALUE, field, "must be in [%" PRId64 ", %" PRId64 "] (got %" PRId64 ")",
                 lo, hi, v_int(v));
        return false;
    }
    *out = v_int(v);
    return true;
}

static bool get_bool(dec_t *d, val_t v, const char *field, bool *out) {
    if (!want_type(d, v, VT_BOOL, field, "true or false")) return false;
    *out = v_bool(v);
    return true;
}

static bool present(val_t v) { int t = vtype(v); return t != VT_ABSENT && t != VT_NULL; }

/* Collects the values of the wanted keys of an object in one pass. A key given
 * twice is an error (jansson rejects duplicate JSON keys itself; msgpack maps are
 * checked here, for the maps krill reads). Non-string msgpack keys are ignored. */
static bool obj_fields(dec_t *d, val_t obj, const char *const *names, size_t n_names, val_t *slots,
                       const char *where) {
    memset(slots, 0, n_names * sizeof *slots);
    if (obj.j) {
        for (size_t i = 0; i < n_names; i++) slots[i].j = json_object_get(obj.j, names[i]);
        return true;
    }
    const msgpack_object_map *m = &obj.m->via.map;
    for (uint32_t k = 0; k < m->size; k++) {
        const msgpack_object *key = &m->ptr[k].key;
        if (key->type != MSGPACK_OBJECT_STR) continue;
        for (size_t i = 0; i < n_names; i++) {
            if (strlen(names[i]) == key->via.str.size && memcmp(names[i], key->via.str.ptr, key->via.str.size) == 0) {
                if (slots[i].m) {
                    char f[96];
                    snprintf(f, sizeof f, "%s%s", where, names[i]);
                    fail(d, CODEC_ERR_INVALID_MSGPACK, f, "key given twice; give each key once");
                    return false;
                }
                slots[i].m = &m->ptr[k].val;
                break;
            }
        }
    }
    return true;
}

/* ---------------------------------------------------------------- messages */

static const char *const MSG_KEYS[] = {"role", "content"};
static const char *const PART_KEYS[] = {"type", "text"};

static bool valid_role(const char *s) {
    static const char *const roles[] = {"system", "developer", "user", "assistant", "tool"};
    for (size_t i = 0; i < sizeof roles / sizeof *roles; i++)
        if (strcmp(s, roles[i]) == 0) return true;
    return false;
}

static void decode_messages(dec_t *d, val_t msgs) {
    codec_request_t *r = d->r;
    if (!want_type(d, msgs, VT_ARR, "messages", "an array of messages")) return;
    size_t n = v_arr_len(msgs);
    if (n == 0) {
        fail(d, CODEC_ERR_INVALID_VALUE, "messages", "must hold at least one message");
        return;
    }
    r->messages = arena_alloc(d->pv, n * sizeof *r->messages, 8);
    r->n_messages = n;
    char field[96];
    for (size_t i = 0; i < n && !failed(d); i++) {
        val_t m = v_arr_at(msgs, i), f[2];
        codec_message_t *cm = &r->messages[i];
        snprintf(field, sizeof field, "messages[%zu]", i);
        if (!want_type(d, m, VT_OBJ, field, "a message object")) return;
        snprintf(field, sizeof field, "messages[%zu].", i);
        if (!obj_fields(d, m, MSG_KEYS, 2, f, field)) return;
        snprintf(field, sizeof field, "messages[%zu].role", i);
        if (!present(f[0])) {
            fail(d, CODEC_ERR_MISSING_FIELD, field, "every message needs a role");
            return;
        }
        cm->role = get_str(d, f[0], field, NULL);
        if (!cm->role) return;
        if (!valid_role(cm->role)) {
            fail(d, CODEC_ERR_INVALID_VALUE, field, "must be system, developer, user, assistant or tool");
            return;
        }
        snprintf(field, sizeof field, "messages[%zu].content", i);
        int t = vtype(f[1]);
        if (t == VT_ABSENT || t == VT_NULL) {
            fail(d, CODEC_ERR_MISSING_FIELD, field, "every message needs content (a string or text parts)");
            return;
        }
        if (t == VT_STR) {
            cm->content = get_str(d, f[1], field, &cm->content_len);
            if (!cm->content) return;
            continue;
        }
        if (t != VT_ARR) {
            fail(d, CODEC_ERR_INVALID_TYPE, field, "expected a string or an array of text parts, got %s",
                 vtype_name(t));
            return;
        }
        /* text parts: validate all, then concatenate (no separator) */
        size_t np = v_arr_len(f[1]), total = 0;
        const char **texts = np ? arena_alloc(d->pv, np * sizeof *texts, 8) : NULL;
        size_t *lens = np ? arena_alloc(d->pv, np * sizeof *lens, 8) : NULL;
        for (size_t k = 0; k < np; k++) {
            val_t part = v_arr_at(f[1], k), pf[2];
            char pfield[128];
            snprintf(pfield, sizeof pfield, "messages[%zu].content[%zu]", i, k);
            if (!want_type(d, part, VT_OBJ, pfield, "a content part object")) return;
            snprintf(pfield, sizeof pfield, "messages[%zu].content[%zu].", i, k);
            if (!obj_fields(d, part, PART_KEYS, 2, pf, pfield)) return;
            snprintf(pfield, sizeof pfield, "messages[%zu].content[%zu].type", i, k);
            if (!present(pf[0])) {
                fail(d, CODEC_ERR_MISSING_FIELD, pfield, "every content part needs a type");
                return;
            }
            const char *type = get_str(d, pf[0], pfield, NULL);
            if (!type) return;
            if (strcmp(type, "text") != 0) {
                fail(d, CODEC_ERR_UNSUPPORTED, pfield, "only text content parts are supported");
                return;
            }
            snprintf(pfield, sizeof pfield, "messages[%zu].content[%zu].text", i, k);
            if (!present(pf[1])) {
                fail(d, CODEC_ERR_MISSING_FIELD, pfield, "a text part needs text");
                return;
            }
            texts[k] = get_str(d, pf[1], pfield, &lens[k]);
            if (!texts[k]) return;
            total += lens[k];
        }
        if (np == 1) {
            cm->content = texts[0];
            cm->content_len = lens[0];
        } else {
            char *c = arena_alloc(d->pv, total + 1, 1), *w = c;
            for (size_t k = 0; k < np; k++) memcpy(w, texts[k], lens[k]), w += lens[k];
            *w = 0;
            cm->content = c;
            cm->content_len = total;
        }
    }
}

/* ---------------------------------------------------------------- prompt */

static bool token_array(dec_t *d, val_t a, const char *field) {
    size_t n = v_arr_len(a);
    int32_t *ids = arena_alloc(d->pv, n * sizeof *ids, 8);
    char f[96];
    for (size_t i = 0; i < n; i++) {
        int64_t t;
        snprintf(f, sizeof f, "%s[%zu]", field, i);
        if (!get_int(d, v_arr_at(a, i), f, 0, INT32_MAX, &t)) return false;
        ids[i] = (int32_t)t;
    }
    d->r->prompt_ids = ids;
    d->r->n_prompt_ids = (int)n;
    return true;
}

static void decode_prompt(dec_t *d, val_t p) {
    codec_request_t *r = d->r;
    int t = vtype(p);
    if (t == VT_STR) {
        r->prompt = get_str(d, p, "prompt", &r->prompt_len);
        if (r->prompt && r->prompt_len == 0) fail(d, CODEC_ERR_INVALID_VALUE, "prompt", "must not be empty");
        return;
    }
    if (t != VT_ARR) {
        fail(d, CODEC_ERR_INVALID_TYPE, "prompt", "expected a string, got %s", vtype_name(t));
        return;
    }
    size_t n = v_arr_len(p);
    if (n == 0) {
        fail(d, CODEC_ERR_INVALID_VALUE, "prompt", "must not be empty");
        return;
    }
    int t0 = vtype(v_arr_at(p, 0));
    if (t0 == VT_INT || t0 == VT_UINT) { /* one prompt as token ids */
        token_array(d, p, "prompt");
        return;
    }
    if (n > 1 && (t0 == VT_STR || t0 == VT_ARR)) {
        fail(d, CODEC_ERR_UNSUPPORTED, "prompt", "a list of %zu prompts; send one message per prompt", n);
        return;
    }
    if (t0 == VT_STR) {
        r->prompt = get_str(d, v_arr_at(p, 0), "prompt[0]", &r->prompt_len);
        if (r->prompt && r->prompt_len == 0) fail(d, CODEC_ERR_INVALID_VALUE, "prompt[0]", "must not be empty");
        return;
    }
    if (t0 == VT_ARR) {
        val_t a = v_arr_at(p, 0);
        if (v_arr_len(a) == 0) {
            fail(d, CODEC_ERR_INVALID_VALUE, "prompt[0]", "must not be empty");
            return;
        }
        token_array(d, a, "prompt[0]");
        return;
    }
    fail(d, CODEC_ERR_INVALID_TYPE, "prompt[0]", "expected a string or token ids, got %s", vtype_name(t0));
}

/* ---------------------------------------------------------------- body */

enum {
    B_MODEL, B_MESSAGES, B_PROMPT, B_MAX_TOKENS, B_MAX_COMPLETION_TOKENS, B_TEMPERATURE, B_TOP_P, B_TOP_K,
    B_MIN_P, B_SEED, B_STOP, B_PRESENCE, B_FREQUENCY, B_N, B_STREAM, B_IGNORE_EOS, B_MIN_TOKENS, B_PRIORITY,
    B_COUNT
};
static const char *const BODY_KEYS[B_COUNT] = {
    "model", "messages", "prompt", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
    "min_p", "seed", "stop", "presence_penalty", "frequency_penalty", "n", "stream", "ignore_eos",
    "min_tokens", "priority"};

/* url_kind: -1 bare body, else the kind the url asks for. */
static void decode_body(dec_t *d, val_t body, int url_kind) {
    codec_request_t *r = d->r;
    const codec_limits_t *lim = d->lim;
    val_t f[B_COUNT];
    if (!obj_fields(d, body, BODY_KEYS, B_COUNT, f, "")) return;

    /* what kind of request */
    bool has_msgs = present(f[B_MESSAGES]), has_prompt = present(f[B_PROMPT]);
    if (has_msgs && has_prompt) {
        fail(d, CODEC_ERR_INVALID_VALUE, "prompt",
             "give messages (chat) or prompt (completion), not both");
        return;
    }
    if (url_kind == CODEC_KIND_CHAT && !has_msgs) {
        fail(d, CODEC_ERR_MISSING_FIELD, "messages", "/v1/chat/completions takes messages");
        return;
    }
    if (url_kind == CODEC_KIND_COMPLETION && !has_prompt) {
        fail(d, CODEC_ERR_MISSING_FIELD, "prompt",
             "/v1/completions takes prompt (a string); for messages use /v1/chat/completions");
        return;
    }
    if (!has_msgs && !has_prompt) {
        fail(d, CODEC_ERR_MISSING_FIELD, "messages",
             "a request needs messages (chat) or prompt (completion)");
        return;
    }
    r->kind = has_msgs ? CODEC_KIND_CHAT : CODEC_KIND_COMPLETION;
    if (has_msgs) decode_messages(d, f[B_MESSAGES]);
    else decode_prompt(d, f[B_PROMPT]);
    if (failed(d)) return;

    if (present(f[B_MODEL])) {
        size_t n;
        r->model = get_str(d, f[B_MODEL], "model", &n);
        if (!r->model) return;
        if (lim->n_model_names > 0) {
            bool ok = false;
            for (size_t i = 0; i < lim->n_model_names && !ok; i++)
                ok = lim->model_names[i] && strcmp(lim->model_names[i], r->model) == 0;
            if (!ok) {
                fail(d, CODEC_ERR_MODEL_NOT_FOUND, "model", "this worker serves %s%s",
                     lim->model_names[0] ? lim->model_names[0] : "another model",
                     lim->n_model_names > 1 ? " (and aliases)" : "");
                return;
            }
        }
    }

    /* n and stream first: the request cannot be served at all otherwise */
    if (present(f[B_N])) {
        int64_t n;
        if (!want_type(d, f[B_N], VT_INT, "n", "an integer")) return;
        if (vtype(f[B_N]) == VT_UINT || v_int(f[B_N]) > 1) {
            fail(d, CODEC_ERR_UNSUPPORTED, "n", "only n = 1 is supported; send one message per choice");
            return;
        }
        if (!get_int(d, f[B_N], "n", 1, 1, &n)) return;
    }
    if (present(f[B_STREAM])) {
        bool s;
        if (!get_bool(d, f[B_STREAM], "stream", &s)) return;
        if (s) {
            fail(d, CODEC_ERR_UNSUPPORTED, "stream", "streaming is not supported; results are whole");
            return;
        }
    }

    /* max tokens */
    int64_t mt = 0, mct = 0;
    bool has_mt = present(f[B_MAX_TOKENS]), has_mct = present(f[B_MAX_COMPLETION_TOKENS]);
    int cap = lim->max_tokens_cap > 0 ? lim->max_tokens_cap : INT32_MAX;
    if (has_mt && !get_int(d, f[B_MAX_TOKENS], "max_tokens", 1, cap, &mt)) return;
    if (has_mct && !get_int(d, f[B_MAX_COMPLETION_TOKENS], "max_completion_tokens", 1, cap, &mct)) return;
    if (has_mt && has_mct && mt != mct) {
        fail(d, CODEC_ERR_INVALID_VALUE, "max_completion_tokens",
             "differs from max_tokens (%" PRId64 " vs %" PRId64 "); give one of them", mct, mt);
        return;
    }
    r->has_max_tokens = has_mt || has_mct;
    r->max_tokens = has_mct ? (int)mct : has_mt ? (int)mt : lim->default_max_tokens;
    if (r->max_tokens < 1) r->max_tokens = 1;
    if (r->max_tokens > cap) r->max_tokens = cap; /* only a misconfigured default gets here */

    /* sampling */
    r->temperature = 1.0;
    r->top_p = 1.0;
    if (present(f[B_TEMPERATURE]) && !get_num(d, f[B_TEMPERATURE], "temperature", 0, 2, false, &r->temperature))
        return;
    if (present(f[B_TOP_P]) && !get_num(d, f[B_TOP_P], "top_p", 0, 1, true, &r->top_p)) return;
    if (present(f[B_TOP_K])) {
        int64_t k;
        if (!get_int(d, f[B_TOP_K], "top_k", -1, INT32_MAX, &k)) return;
        r->top_k = k < 0 ? 0 : (int)k;
    }
    if (present(f[B_MIN_P]) && !get_num(d, f[B_MIN_P], "min_p", 0, 1, false, &r->min_p)) return;
    if (present(f[B_PRESENCE]) &&
        !get_num(d, f[B_PRESENCE], "presence_penalty", -2, 2, false, &r->presence_penalty))
        return;
    if (present(f[B_FREQUENCY]) &&
        !get_num(d, f[B_FREQUENCY], "frequency_penalty", -2, 2, false, &r->frequency_penalty))
        return;
    if (present(f[B_SEED])) {
        if (!want_type(d, f[B_SEED], VT_INT, "seed", "an integer")) return;
        r->has_seed = true;
        r->seed = f[B_SEED].j ? (uint64_t)json_integer_value(f[B_SEED].j)
                              : (f[B_SEED].m->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? f[B_SEED].m->via.u64
                                                                                     : (uint64_t)f[B_SEED].m->via.i64);
    }
    if (present(f[B_STOP])) {
        val_t s = f[B_STOP];
        int t = vtype(s);
        if (t == VT_STR) {
            size_t n;
            r->stop[0] = get_str(d, s, "stop", &n);
            if (!r->stop[0]) return;
            if (n == 0) {
                fail(d, CODEC_ERR_INVALID_VALUE, "stop", "a stop string must not be empty");
                return;
            }
            r->n_stop = 1;
        } else if (t == VT_ARR) {
            size_t n = v_arr_len(s);
            if (n > CODEC_MAX_STOP) {
                fail(d, CODEC_ERR_INVALID_VALUE, "stop", "at most %d stop strings (got %zu)", CODEC_MAX_STOP, n);
                return;
            }
            for (size_t i = 0; i < n; i++) {
                char field[32];
                size_t len;
                snprintf(field, sizeof field, "stop[%zu]", i);
                r->stop[i] = get_str(d, v_arr_at(s, i), field, &len);
                if (!r->stop[i]) return;
                if (len == 0) {
                    fail(d, CODEC_ERR_INVALID_VALUE, field, "a stop string must not be empty");
                    return;
                }
            }
            r->n_stop = (int)n;
        } else {
            fail(d, CODEC_ERR_INVALID_TYPE, "stop", "expected a string or an array of strings, got %s",
                 vtype_name(t));
            return;
        }
    }
    if (present(f[B_IGNORE_EOS]) && !get_bool(d, f[B_IGNORE_EOS], "ignore_eos", &r->ignore_eos)) return;
    if (present(f[B_MIN_TOKENS])) {
        int64_t m;
        if (!get_int(d, f[B_MIN_TOKENS], "min_tokens", 0, r->max_tokens, &m)) return;
        r->min_tokens = (int)m;
    }
    if (present(f[B_PRIORITY])) {
        int64_t p;
        if (!get_int(d, f[B_PRIORITY], "priority", INT32_MIN, INT32_MAX, &p)) return;
        r->priority = (int)p;
    }
}

/* ---------------------------------------------------------------- envelope */

enum { E_CUSTOM_ID, E_ID, E_METHOD, E_URL, E_BODY, E_COUNT };
static const char *const ENV_KEYS[E_COUNT] = {"custom_id", "id", "method", "url", "body"};

static void decode_object(dec_t *d, val_t top) {
    codec_request_t *r = d->r;
    val_t f[E_COUNT];
    if (!obj_fields(d, top, ENV_KEYS, E_COUNT, f, "")) return;

    /* the id first, so that every error below is answered under it */
    for (int k = E_CUSTOM_ID; k <= E_ID; k++) {
        if (!present(f[k])) continue;
        const char *name = ENV_KEYS[k];
        int t = vtype(f[k]);
        if (t != VT_STR) {
            fail(d, CODEC_ERR_INVALID_TYPE, name, "expected a string, got %s", vtype_name(t));
            return;
        }
        size_t n;
        const char *s = v_str_raw(f[k], &n);
        if (!id_ok((const unsigned char *)s, n)) {
            fail(d, CODEC_ERR_INVALID_VALUE, name, "must be 1..%d bytes of UTF-8 without NUL", CODEC_MAX_ID_BYTES);
            return;
        }
        memcpy(d->pv->idbuf, s, n);
        d->pv->idbuf[n] = 0;
        r->id = d->pv->idbuf;
        r->has_custom_id = true;
        break;
    }

    int url_kind = -1;
    bool batch = present(f[E_BODY]);
    if (!batch && (present(f[E_URL]) || present(f[E_METHOD]))) {
        fail(d, CODEC_ERR_MISSING_FIELD, "body", "a Batch API line (with url/method) needs a body object");
        return;
    }
    if (batch) {
        if (present(f[E_METHOD])) {
            const char *m = get_str(d, f[E_METHOD], "method", NULL);
            if (!m) return;
            if (strcmp(m, "POST") != 0) {
                fail(d, CODEC_ERR_INVALID_VALUE, "method", "must be POST");
                return;
            }
        }
        if (present(f[E_URL])) {
            const char *u = get_str(d, f[E_URL], "url", NULL);
            if (!u) return;
            if (strcmp(u, "/v1/chat/completions") == 0) url_kind = CODEC_KIND_CHAT;
            else if (strcmp(u, "/v1/completions") == 0) url_kind = CODEC_KIND_COMPLETION;
            else {
                fail(d, CODEC_ERR_UNSUPPORTED, "url", "krill serves /v1/chat/completions and /v1/completions");
                return;
            }
        }
        if (!want_type(d, f[E_BODY], VT_OBJ, "body", "an object")) return;
        d->prefix = "body.";
        decode_body(d, f[E_BODY], url_kind);
    } else {
        decode_body(d, top, -1);
    }
}

/* ---------------------------------------------------------------- entry point */

static void undecodable(codec_request_t *r, codec_dlq_t dlq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void undecodable(codec_request_t *r, codec_dlq_t dlq, const char *fmt, ...) {
    r->status = CODEC_UNDECODABLE;
    r->dlq = dlq;
    r->error = r->format == CODEC_FMT_MSGPACK ? CODEC_ERR_INVALID_MSGPACK : CODEC_ERR_INVALID_JSON;
    r->status_code = 400;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error_message, sizeof r->error_message, fmt, ap);
    va_end(ap);
}

static void scan_id(codec_request_t *r, priv_t *pv, const unsigned char *p, size_t len) {
    const unsigned char *id = NULL;
    size_t n = 0;
    bool ok = r->format == CODEC_FMT_MSGPACK ? mp_scan_id(p, len, &id, &n) : json_scan_id(p, len, &id, &n);
    if (ok) {
        memcpy(pv->idbuf, id, n);
        pv->idbuf[n] = 0;
        r->id = pv->idbuf;
        r->has_custom_id = true;
    }
}

void codec_decode(const codec_limits_t *lim, const void *buf, size_t len, const char *fallback_id,
                  codec_request_t *out) {
    codec_limits_t deflim;
    if (!lim) {
        codec_limits_defaults(&deflim);
        lim = &deflim;
    }
    codec_request_clear(out);
    priv_t *pv = calloc(1, sizeof *pv);
    CHECK(pv != NULL);
    out->priv_ = pv;
    snprintf(pv->idbuf, sizeof pv->idbuf, "%s", fallback_id ? fallback_id : "unknown");
    out->id = pv->idbuf;
    const unsigned char *p = buf;
    if (!p) len = 0;

    bool dup = false;
    int fmt = codec_detect(p, len);
    out->format = fmt == 1 ? CODEC_FMT_MSGPACK : CODEC_FMT_JSON;
    if (lim->max_message_bytes > 0 && len > lim->max_message_bytes) {
        if (fmt >= 0) scan_id(out, pv, p, len);
        undecodable(out, CODEC_DLQ_MESSAGE_TOO_LARGE,
                    "message is %zu bytes, over input.max_message_bytes = %zu; shorten it or raise the limit", len,
                    lim->max_message_bytes);
        return;
    }
    if (fmt < 0) {
        if (len == 0) undecodable(out, CODEC_DLQ_NOT_AN_OBJECT, "empty message value; send a JSON object or msgpack map");
        else
            undecodable(out, CODEC_DLQ_NOT_AN_OBJECT,
                        "neither a JSON object nor a msgpack map (first byte 0x%02x); send one of them", p[0]);
        return;
    }

    if (fmt == 0) {
        if (json_too_deep(p, len, CODEC_MAX_DEPTH)) {
            scan_id(out, pv, p, len);
            undecodable(out, CODEC_DLQ_NESTING_TOO_DEEP, "JSON nested deeper than %d levels", CODEC_MAX_DEPTH);
            return;
        }
        json_error_t jerr;
        pv->root = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
        if (!pv->root && json_error_code(&jerr) == json_error_duplicate_key) {
            /* structurally fine: answer it (400 invalid_json) rather than dead-letter it */
            pv->root = json_loadb((const char *)p, len, JSON_ALLOW_NUL, NULL);
            dup = pv->root != NULL;
        }
        if (!pv->root) {
            scan_id(out, pv, p, len);
            undecodable(out, CODEC_DLQ_INVALID_JSON, "invalid JSON at line %d column %d: %s", jerr.line,
                        jerr.column, jerr.text);
            return;
        }
    } else {
        const char *why = NULL;
        int rc = mp_prescan(p, len, CODEC_MAX_DEPTH, &why);
        if (rc != 0) {
            scan_id(out, pv, p, len);
            if (rc == 1) undecodable(out, CODEC_DLQ_NESTING_TOO_DEEP, "msgpack nested deeper than %d levels", CODEC_MAX_DEPTH);
            else undecodable(out, CODEC_DLQ_INVALID_MSGPACK, "invalid msgpack: %s", why);
            return;
        }
        msgpack_unpacked_init(&pv->mp);
        pv->mp_used = true;
        size_t off = 0;
        msgpack_unpack_return ur = msgpack_unpack_next(&pv->mp, (const char *)p, len, &off);
        if (ur != MSGPACK_UNPACK_SUCCESS || off != len || pv->mp.data.type != MSGPACK_OBJECT_MAP) {
            /* the pre-scan accepted it, so this is msgpack-c disagreeing (or out of memory) */
            scan_id(out, pv, p, len);
            undecodable(out, CODEC_DLQ_INVALID_MSGPACK, "invalid msgpack (unpack returned %d)", (int)ur);
            return;
        }
    }
    /* one chunk covers a typical request: msgpack string copies + the small arrays */
    arena_reserve(pv, len + 512);
    dec_t d = {out, pv, lim, ""};
    val_t top = {pv->root, pv->mp_used ? &pv->mp.data : NULL};
    decode_object(&d, top);
    if (dup) {
        /* the duplicate comes first; the walk only found the id to answer under */
        out->status = CODEC_OK;
        out->param = NULL;
        d.prefix = "";
        fail(&d, CODEC_ERR_INVALID_JSON, NULL, "duplicate key in a JSON object; give each key once");
    }
    if (pv->mp_used) { /* strings were copied: the tree (which points into buf) is done */
        msgpack_unpacked_destroy(&pv->mp);
        pv->mp_used = false;
    }
}

void codec_request_to_engine(const codec_request_t *r, engine_request_t *er) {
    er->max_tokens = r->max_tokens;
    er->min_tokens = r->min_tokens;
    er->ignore_eos = r->ignore_eos;
    er->temperature = (float)r->temperature;
    er->top_p = (float)r->top_p;
    er->top_k = r->top_k;
    er->min_p = (float)r->min_p;
    er->presence_penalty = (float)r->presence_penalty;
    er->frequency_penalty = (float)r->frequency_penalty;
    er->has_seed = r->has_seed;
    er->seed = r->seed;
    er->n_stop = r->n_stop;
    for (int i = 0; i < ENGINE_MAX_STOP; i++) er->stop[i] = i < r->n_stop ? r->stop[i] : NULL;
    er->priority = r->priority;
}

/* ================================================================ results */

void codec_result_from_request_error(const codec_request_t *req, codec_result_t *res) {
    res->format = req->format;
    res->custom_id = req->id;
    res->kind = req->kind;
    res->status_code = req->status_code ? req->status_code : codec_error_status(req->error);
    res->error = req->error;
    res->error_message = req->error_message;
    res->error_param = req->param;
    res->text = NULL;
    res->text_len = 0;
    res->finish_reason = NULL;
    res->prompt_tokens = res->completion_tokens = 0;
}

/* A tiny emitter with two back ends, so the result's shape is written once:
 * msgpack-c's packer, or JSON written straight into the buffer. Why not jansson
 * here: json_dumpb costs ~9 us per result (loop detection per container, a callback
 * per token), half of the whole per-request budget; the result has a fixed shape
 * and only strings need care (escaped per RFC 8259 after UTF-8 repair). The tests
 * parse every JSON result with jansson and compare it with the msgpack form. */
typedef struct {
    bool mp;
    msgpack_packer pk;
    buf_t *out;
    int depth;
    int n[8];       /* items written at each open level (JSON) */
    bool after_key; /* the next value follows "key": */
    int oom;
} em_t;

static int em_write_cb(void *data, const char *p, size_t n) {
    em_t *e = data;
    if (buf_append(e->out, p, n) == 0) return 0;
    e->oom = 1;
    return -1;
}

static void j_raw(em_t *e, const char *s, size_t n) {
    if (buf_append(e->out, s, n) != 0) e->oom = 1;
}

static void j_sep(em_t *e) {
    if (e->after_key) {
        e->after_key = false;
        return;
    }
    if (e->depth > 0 && e->n[e->depth - 1]++ > 0) j_raw(e, ",", 1);
}

/* s must be valid UTF-8 */
static void j_string(em_t *e, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    if (buf_reserve(e->out, n * 6 + 2) != 0) { /* worst case: every byte \u00XX */
        e->oom = 1;
        return;
    }
    char *w = e->out->data + e->out->len;
    *w++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *w++ = (char)c;
            continue;
        }
        *w++ = '\\';
        switch (c) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '\n': *w++ = 'n'; break;
        case '\r': *w++ = 'r'; break;
        case '\t': *w++ = 't'; break;
        case '\b': *w++ = 'b'; break;
        case '\f': *w++ = 'f'; break;
        default: *w++ = 'u', *w++ = '0', *w++ = '0', *w++ = hex[c >> 4], *w++ = hex[c & 15];
        }
    }
    *w++ = '"';
    e->out->len = (size_t)(w - e->out->data);
}

static void em_open(em_t *e, char c) {
    j_sep(e);
    j_raw(e, &c, 1);
    CHECK(e->depth < 8);
    e->n[e->depth++] = 0;
}

static void em_map(em_t *e, size_t n) {
    if (e->mp) msgpack_pack_map(&e->pk, n);
    else em_open(e, '{');
}

static void em_array(em_t *e, size_t n) {
    if (e->mp) msgpack_pack_array(&e->pk, n);
    else em_open(e, '[');
}

static void em_end(em_t *e, char c) {
    if (e->mp) return;
    CHECK(e->depth > 0);
    e->depth--;
    j_raw(e, &c, 1);
}

static void em_key(em_t *e, const char *k) {
    size_t n = strlen(k);
    if (e->mp) {
        msgpack_pack_str(&e->pk, n);
        msgpack_pack_str_body(&e->pk, k, n);
        return;
    }
    j_sep(e);
    j_string(e, k, n);
    j_raw(e, ":", 1);
    e->after_key = true;
}

static void em_str(em_t *e, const char *s, size_t n) {
    char *clean = NULL;
    if (!utf8_valid(s, n)) {
        clean = utf8_sanitize(s, n, &n);
        if (!clean) {
            e->oom = 1;
            return;
        }
        s = clean;
    }
    if (e->mp) {
        msgpack_pack_str(&e->pk, n);
        msgpack_pack_str_body(&e->pk, s, n);
    } else {
        j_sep(e);
        j_string(e, s, n);
    }
    free(clean);
}
static void em_nil(em_t *e) {
    if (e->mp) {
        msgpack_pack_nil(&e->pk);
    } else {
        j_sep(e);
        j_raw(e, "null", 4);
    }
}
static void em_cstr(em_t *e, const char *s) {
    if (!s) em_nil(e);
    else em_str(e, s, strlen(s));
}
static void em_int(em_t *e, int64_t v) {
    if (e->mp) {
        msgpack_pack_int64(&e->pk, v);
        return;
    }
    char b[24];
    int n = snprintf(b, sizeof b, "%" PRId64, v);
    j_sep(e);
    j_raw(e, b, (size_t)n);
}
static void em_ms(em_t *e, double v) { /* milliseconds, 3 decimals; negative/NaN/huge -> null */
    if (!(v >= 0 && v < 1e15)) {
        em_nil(e);
        return;
    }
    v = round(v * 1000.0) / 1000.0;
    if (e->mp) {
        msgpack_pack_double(&e->pk, v);
        return;
    }
    char b[32];
    int n = snprintf(b, sizeof b, "%.3f", v);
    while (n > 2 && b[n - 1] == '0' && b[n - 2] != '.') n--; /* 40.200 -> 40.2, 3.000 -> 3.0 */
    j_sep(e);
    j_raw(e, b, (size_t)n);
}

static void hexid(char *out, size_t n, const char *prefix, uint64_t uid) {
    snprintf(out, n, "%s%016" PRIx64, prefix, uid);
}

static void emit_result(em_t *e, const codec_result_t *r) {
    char id[48], req_id[48], body_id[48];
    hexid(id, sizeof id, "krill-", r->uid);
    hexid(req_id, sizeof req_id, "krill-req-", r->uid);
    bool chat = r->kind == CODEC_KIND_CHAT;
    hexid(body_id, sizeof body_id, chat ? "chatcmpl-" : "cmpl-", r->uid);
    bool ok = r->status_code == 200;

    em_map(e, 5);
    em_key(e, "id"), em_cstr(e, id);
    em_key(e, "custom_id"), em_cstr(e, r->custom_id);
    em_key(e, "response");
    em_map(e, 3);
    em_key(e, "status_code"), em_int(e, r->status_code);
    em_key(e, "request_id"), em_cstr(e, req_id);
    em_key(e, "body");
    if (ok) {
        em_map(e, 6);
        em_key(e, "id"), em_cstr(e, body_id);
        em_key(e, "object"), em_cstr(e, chat ? "chat.completion" : "text_completion");
        em_key(e, "created"), em_int(e, r->created);
        em_key(e, "model"), em_cstr(e, r->model ? r->model : "");
        em_key(e, "choices");
        em_array(e, 1);
        em_map(e, 4);
        em_key(e, "index"), em_int(e, 0);
        if (chat) {
            em_key(e, "message");
            em_map(e, 2);
            em_key(e, "role"), em_cstr(e, "assistant");
            em_key(e, "content"), em_str(e, r->text ? r->text : "", r->text ? r->text_len : 0);
            em_end(e, '}');
        } else {
            em_key(e, "text"), em_str(e, r->text ? r->text : "", r->text ? r->text_len : 0);
        }
        em_key(e, "logprobs"), em_nil(e);
        em_key(e, "finish_reason"), em_cstr(e, r->finish_reason ? r->finish_reason : "stop");
        em_end(e, '}'); /* choice */
        em_end(e, ']'); /* choices */
        em_key(e, "usage");
        em_map(e, 3);
        em_key(e, "prompt_tokens"), em_int(e, r->prompt_tokens);
        em_key(e, "completion_tokens"), em_int(e, r->completion_tokens);
        em_key(e, "total_tokens"), em_int(e, (int64_t)r->prompt_tokens + r->completion_tokens);
        em_end(e, '}');
        em_end(e, '}'); /* body */
    } else {
        codec_error_t code = r->error != CODEC_ERR_NONE ? r->error : CODEC_ERR_INTERNAL;
        em_map(e, 1);
        em_key(e, "error");
        em_map(e, 4);
        em_key(e, "message"), em_cstr(e, r->error_message ? r->error_message : codec_error_name(code));
        em_key(e, "type"), em_cstr(e, r->status_code >= 500 ? "server_error" : "invalid_request_error");
        em_key(e, "param"), em_cstr(e, r->error_param);
        em_key(e, "code"), em_cstr(e, codec_error_name(code));
        em_end(e, '}');
        em_end(e, '}');
    }
    em_end(e, '}'); /* response */
    em_key(e, "error"), em_nil(e);
    em_key(e, "krill");
    em_map(e, 4);
    em_key(e, "worker"), em_cstr(e, r->worker ? r->worker : "");
    em_key(e, "queue_ms"), em_ms(e, r->queue_ms);
    em_key(e, "ttft_ms"), em_ms(e, r->ttft_ms);
    em_key(e, "total_ms"), em_ms(e, r->total_ms);
    em_end(e, '}');
    em_end(e, '}');
}

static int dump_json(const json_t *root, buf_t *out) {
    size_t flags = JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15);
    out->len = 0;
    if (buf_reserve(out, 512) != 0) return -1;
    size_t need = json_dumpb(root, out->data, out->cap, flags);
    if (need == 0) return -1;
    if (need > out->cap) {
        if (buf_reserve(out, need) != 0) return -1;
        need = json_dumpb(root, out->data, out->cap, flags);
        if (need == 0 || need > out->cap) return -1;
    }
    out->len = need;
    return 0;
}

int codec_encode_result(const codec_result_t *r, buf_t *out, char *err, size_t errlen) {
    if (!r || !out || !r->custom_id) {
        err_set(err, errlen, "codec_encode_result: a result needs a custom_id");
        return -1;
    }
    em_t e = {0};
    e.mp = r->format == CODEC_FMT_MSGPACK;
    e.out = out;
    out->len = 0;
    if (e.mp) msgpack_packer_init(&e.pk, &e, em_write_cb);
    emit_result(&e, r);
    if (e.oom || out->len == 0) {
        err_set(err, errlen, "out of memory encoding a result");
        return -1;
    }
    CHECK(e.depth == 0);
    return 0;
}

/* ================================================================ conversions */

static int pack_json(msgpack_packer *pk, const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        if (msgpack_pack_map(pk, json_object_size(j))) return -1;
        json_object_foreach((json_t *)j, k, v) {
            size_t kl = json_object_iter_key_len(json_object_key_to_iter(k));
            if (msgpack_pack_str(pk, kl) || msgpack_pack_str_body(pk, k, kl) || pack_json(pk, v)) return -1;
        }
        return 0;
    }
    case JSON_ARRAY: {
        if (msgpack_pack_array(pk, json_array_size(j))) return -1;
        for (size_t i = 0; i < json_array_size(j); i++)
            if (pack_json(pk, json_array_get(j, i))) return -1;
        return 0;
    }
    case JSON_STRING: {
        size_t n = json_string_length(j);
        return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, json_string_value(j), n) ? -1 : 0;
    }
    case JSON_INTEGER: return msgpack_pack_int64(pk, json_integer_value(j));
    case JSON_REAL: return msgpack_pack_double(pk, json_real_value(j));
    case JSON_TRUE: return msgpack_pack_true(pk);
    case JSON_FALSE: return msgpack_pack_false(pk);
    case JSON_NULL: return msgpack_pack_nil(pk);
    }
    return -1;
}

int codec_json_to_msgpack(const char *json, size_t len, buf_t *out, char *err, size_t errlen) {
    out->len = 0;
    if (json_too_deep((const unsigned char *)json, len, CODEC_MAX_DEPTH)) {
        err_set(err, errlen, "JSON nested deeper than %d levels", CODEC_MAX_DEPTH);
        return -1;
    }
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!root) {
        err_set(err, errlen, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column, jerr.text);
        return -1;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write_cb);
    int rc = pack_json(&pk, root);
    json_decref(root);
    if (rc != 0) {
        err_set(err, errlen, "out of memory converting JSON to msgpack");
        return -1;
    }
    return 0;
}

static json_t *mp_to_json(const msgpack_object *o, char *err, size_t errlen) {
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return json_null();
    case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > INT64_MAX) {
            err_set(err, errlen, "integer above 2^63-1 has no JSON form here");
            return NULL;
        }
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (!isfinite(o->via.f64)) {
            err_set(err, errlen, "NaN or infinity has no JSON form");
            return NULL;
        }
        return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR:
    case MSGPACK_OBJECT_BIN: {
        const char *p = o->type == MSGPACK_OBJECT_STR ? o->via.str.ptr : o->via.bin.ptr;
        size_t n = o->type == MSGPACK_OBJECT_STR ? o->via.str.size : o->via.bin.size;
        if (!p) p = ""; /* msgpack-c: NULL for "" */
        if (!utf8_valid(p, n)) {
            err_set(err, errlen, "string is not valid UTF-8");
            return NULL;
        }
        json_t *s = json_stringn_nocheck(p, n);
        if (!s) err_set(err, errlen, "out of memory");
        return s;
    }
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array();
        if (!a) goto oom;
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            json_t *v = mp_to_json(&o->via.array.ptr[i], err, errlen);
            if (!v || json_array_append_new(a, v) != 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        json_t *m = json_object();
        if (!m) goto oom;
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            char kb[32];
            const char *kp;
            size_t kl;
            if (k->type == MSGPACK_OBJECT_STR) {
                kp = k->via.str.ptr ? k->via.str.ptr : "", kl = k->via.str.size;
                if (!utf8_valid(kp, kl) || memchr(kp, 0, kl)) { /* jansson cannot read NUL in keys back */
                    err_set(err, errlen, "map key is not valid UTF-8 or holds a NUL");
                    goto map_fail;
                }
            } else if (k->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
                kl = (size_t)snprintf(kb, sizeof kb, "%" PRIu64, k->via.u64), kp = kb;
            } else if (k->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
                kl = (size_t)snprintf(kb, sizeof kb, "%" PRId64, k->via.i64), kp = kb;
            } else {
                err_set(err, errlen, "map key is neither a string nor an integer");
                goto map_fail;
            }
            if (json_object_getn(m, kp, kl)) {
                err_set(err, errlen, "map key given twice");
                goto map_fail;
            }
            json_t *v = mp_to_json(&o->via.map.ptr[i].val, err, errlen);
            if (!v || json_object_setn_new_nocheck(m, kp, kl, v) != 0) goto map_fail;
        }
        return m;
    map_fail:
        json_decref(m);
        return NULL;
    }
    case MSGPACK_OBJECT_EXT:
        err_set(err, errlen, "msgpack extension values have no JSON form");
        return NULL;
    }
    err_set(err, errlen, "unknown msgpack type");
    return NULL;
oom:
    err_set(err, errlen, "out of memory");
    return NULL;
}

int codec_msgpack_to_json(const void *buf, size_t len, buf_t *out, char *err, size_t errlen) {
    out->len = 0;
    const char *why = NULL;
    int rc = mp_prescan(buf, len, CODEC_MAX_DEPTH, &why);
    if (rc != 0) {
        if (rc == 1) err_set(err, errlen, "msgpack nested deeper than %d levels", CODEC_MAX_DEPTH);
        else err_set(err, errlen, "invalid msgpack: %s", why);
        return -1;
    }
    msgpack_unpacked mp;
    msgpack_unpacked_init(&mp);
    size_t off = 0;
    if (msgpack_unpack_next(&mp, buf, len, &off) != MSGPACK_UNPACK_SUCCESS) {
        msgpack_unpacked_destroy(&mp);
        err_set(err, errlen, "invalid msgpack");
        return -1;
    }
    json_t *root = mp_to_json(&mp.data, err, errlen);
    msgpack_unpacked_destroy(&mp);
    if (!root) return -1;
    rc = dump_json(root, out);
    json_decref(root);
    if (rc != 0) {
        err_set(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}
