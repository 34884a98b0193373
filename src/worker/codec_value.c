/* codec_value.c — reading the fields of a parsed request (codec_value.h): the
 * two-format view, the typed reads that record the first error, and the request's
 * arena. Bump allocation in chunks (the first sized from the message): a decode makes
 * a few allocations whatever the request holds. */
#include "codec_value.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

/* ---------------------------------------------------------------- storage */

struct codec_chunk {
    struct codec_chunk *next;
    size_t cap, used;
    char data[];
};

/* A fresh chunk of at least n + align bytes (doubling the newest), pushed in front. */
static codec_chunk_t *chunk_push(codec_store_t *st, size_t n, size_t align) {
    codec_chunk_t *c = st->arena;
    size_t cap = c ? c->cap * 2 : 1024;
    if (cap < n + align) cap = n + align;
    codec_chunk_t *nc = malloc(sizeof *nc + cap);
    if (!nc) return NULL;
    nc->next = c;
    nc->cap = cap;
    nc->used = 0;
    st->arena = nc;
    return nc;
}

void codec_value_reserve(codec_store_t *st, size_t n) {
    if (!st->arena || st->arena->cap - st->arena->used < n) chunk_push(st, n, 1);
}

void *codec_value_alloc(codec_walk_t *w, size_t n, size_t align) {
    codec_chunk_t *c = w->st->arena;
    size_t at = c ? (c->used + align - 1) & ~(align - 1) : 0;
    if (!c || at + n > c->cap) {
        if (!(c = chunk_push(w->st, n, align))) {
            codec_value_fail(w, CODEC_ERR_INTERNAL, NULL, "out of memory decoding the request; retry it");
            return NULL;
        }
        at = ((uintptr_t)c->data % align) ? align - (uintptr_t)c->data % align : 0;
    }
    c->used = at + n;
    return c->data + at;
}

void codec_value_store_free(codec_store_t *st) {
    if (!st) return;
    json_decref(st->root);
    if (st->mp_used) msgpack_unpacked_destroy(&st->mp);
    for (codec_chunk_t *c = st->arena, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    free(st);
}

/* ---------------------------------------------------------------- the view */

int codec_value_type(codec_value_t v) {
    if (v.j) {
        switch (json_typeof(v.j)) {
        case JSON_OBJECT: return CODEC_VT_OBJ;
        case JSON_ARRAY: return CODEC_VT_ARR;
        case JSON_STRING: return CODEC_VT_STR;
        case JSON_INTEGER: return CODEC_VT_INT;
        case JSON_REAL: return CODEC_VT_REAL;
        case JSON_TRUE: case JSON_FALSE: return CODEC_VT_BOOL;
        case JSON_NULL: return CODEC_VT_NULL;
        }
        return CODEC_VT_NULL;
    }
    if (!v.m) return CODEC_VT_ABSENT;
    switch (v.m->type) {
    case MSGPACK_OBJECT_NIL: return CODEC_VT_NULL;
    case MSGPACK_OBJECT_BOOLEAN: return CODEC_VT_BOOL;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return v.m->via.u64 > INT64_MAX ? CODEC_VT_UINT : CODEC_VT_INT;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return CODEC_VT_INT;
    case MSGPACK_OBJECT_FLOAT32: case MSGPACK_OBJECT_FLOAT64: return CODEC_VT_REAL;
    case MSGPACK_OBJECT_STR: return CODEC_VT_STR;
    case MSGPACK_OBJECT_ARRAY: return CODEC_VT_ARR;
    case MSGPACK_OBJECT_MAP: return CODEC_VT_OBJ;
    case MSGPACK_OBJECT_BIN: return CODEC_VT_BIN;
    case MSGPACK_OBJECT_EXT: return CODEC_VT_EXT;
    }
    return CODEC_VT_EXT;
}

const char *codec_value_type_name(int type) {
    static const char *const names[] = {"nothing", "null", "a boolean", "an integer", "an integer",
                                        "a number", "a string", "an array", "an object", "binary data",
                                        "an extension value"};
    return names[type];
}

bool codec_value_present(codec_value_t v) {
    int t = codec_value_type(v);
    return t != CODEC_VT_ABSENT && t != CODEC_VT_NULL;
}

int64_t codec_value_int(codec_value_t v) { return v.j ? (int64_t)json_integer_value(v.j) : v.m->via.i64; }

uint64_t codec_value_bits64(codec_value_t v) {
    if (v.j) return (uint64_t)json_integer_value(v.j);
    return v.m->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v.m->via.u64 : (uint64_t)v.m->via.i64;
}

static double value_num(codec_value_t v) {
    if (v.j) return json_number_value(v.j);
    if (v.m->type == MSGPACK_OBJECT_POSITIVE_INTEGER) return (double)v.m->via.u64;
    if (v.m->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) return (double)v.m->via.i64;
    return v.m->via.f64;
}

size_t codec_value_len(codec_value_t v) { return v.j ? json_array_size(v.j) : v.m->via.array.size; }

codec_value_t codec_value_at(codec_value_t v, size_t i) {
    codec_value_t r = {0};
    if (v.j) r.j = json_array_get(v.j, i);
    else r.m = &v.m->via.array.ptr[i];
    return r;
}

const char *codec_value_str_raw(codec_value_t v, size_t *n) {
    if (v.j) {
        *n = json_string_length(v.j);
        return json_string_value(v.j);
    }
    *n = v.m->via.str.size;
    return v.m->via.str.ptr ? v.m->via.str.ptr : ""; /* msgpack-c: NULL for "" */
}

/* ---------------------------------------------------------------- typed reads */

bool codec_value_failed(const codec_walk_t *w) { return w->r->status != CODEC_OK; }

void codec_value_fail(codec_walk_t *w, codec_error_t e, const char *field, const char *fmt, ...) {
    codec_request_t *r = w->r;
    if (r->status != CODEC_OK) return;
    r->status = CODEC_INVALID;
    r->error = e;
    r->status_code = codec_error_status(e);
    if (field) {
        snprintf(w->st->param, sizeof w->st->param, "%s%s", w->prefix, field);
        r->param = w->st->param;
    }
    int off = field ? snprintf(r->error_message, sizeof r->error_message, "%s: ", w->st->param) : 0;
    if (off < 0 || (size_t)off >= sizeof r->error_message) off = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error_message + off, sizeof r->error_message - (size_t)off, fmt, ap);
    va_end(ap);
}

bool codec_value_want(codec_walk_t *w, codec_value_t v, int type, const char *field, const char *what) {
    int t = codec_value_type(v);
    if (t == type || (type == CODEC_VT_INT && t == CODEC_VT_UINT)) return true;
    codec_value_fail(w, CODEC_ERR_INVALID_TYPE, field, "expected %s, got %s", what, codec_value_type_name(t));
    return false;
}

const char *codec_value_get_str(codec_walk_t *w, codec_value_t v, const char *field, size_t *len) {
    if (!codec_value_want(w, v, CODEC_VT_STR, field, "a string")) return NULL;
    size_t n;
    const char *s = codec_value_str_raw(v, &n);
    if (v.m && !utf8_valid(s, n)) {
        codec_value_fail(w, CODEC_ERR_INVALID_VALUE, field, "not valid UTF-8; send UTF-8 text");
        return NULL;
    }
    if (memchr(s, 0, n)) { /* JSON \u0000 (parsed with JSON_ALLOW_NUL) or a msgpack NUL byte */
        codec_value_fail(w, CODEC_ERR_INVALID_VALUE, field, "contains a NUL character");
        return NULL;
    }
    if (v.m) { /* msgpack strings are not NUL-terminated, and the tree goes after the walk */
        char *d = codec_value_alloc(w, n + 1, 1);
        if (!d) return NULL;
        memcpy(d, s, n);
        d[n] = 0;
        s = d;
    }
    if (len) *len = n;
    return s;
}

bool codec_value_get_num(codec_walk_t *w, codec_value_t v, const char *field, double lo, double hi, bool lo_open,
                         double *out) {
    int t = codec_value_type(v);
    if (t != CODEC_VT_INT && t != CODEC_VT_UINT && t != CODEC_VT_REAL) {
        codec_value_fail(w, CODEC_ERR_INVALID_TYPE, field, "expected a number, got %s", codec_value_type_name(t));
        return false;
    }
    double x = value_num(v);
    bool ok = (lo_open ? x > lo : x >= lo) && x <= hi; /* false for NaN */
    if (!ok) {
        codec_value_fail(w, CODEC_ERR_INVALID_VALUE, field, "must be in %c%g, %g] (got %g)", lo_open ? '(' : '[',
                         lo, hi, x);
        return false;
    }
    *out = x;
    return true;
}

bool codec_value_get_int(codec_walk_t *w, codec_value_t v, const char *field, int64_t lo, int64_t hi, int64_t *out) {
    if (!codec_value_want(w, v, CODEC_VT_INT, field, "an integer")) return false;
    if (codec_value_type(v) == CODEC_VT_UINT) {
        codec_value_fail(w, CODEC_ERR_INVALID_VALUE, field, "must be in [%" PRId64 ", %" PRId64 "]", lo, hi);
        return false;
    }
    int64_t x = codec_value_int(v);
    if (x < lo || x > hi) {
        codec_value_fail(w, CODEC_ERR_INVALID_VALUE, field, "must be in [%" PRId64 ", %" PRId64 "] (got %" PRId64 ")",
                         lo, hi, x);
        return false;
    }
    *out = x;
    return true;
}

bool codec_value_get_bool(codec_walk_t *w, codec_value_t v, const char *field, bool *out) {
    if (!codec_value_want(w, v, CODEC_VT_BOOL, field, "true or false")) return false;
    *out = v.j ? json_is_true(v.j) : v.m->via.boolean;
    return true;
}

bool codec_value_fields(codec_walk_t *w, codec_value_t obj, const char *const *names, size_t n_names,
                        codec_value_t *slots, const char *where) {
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
                    codec_value_fail(w, CODEC_ERR_INVALID_MSGPACK, f, "key given twice; give each key once");
                    return false;
                }
                slots[i].m = &m->ptr[k].val;
                break;
            }
        }
    }
    return true;
}
