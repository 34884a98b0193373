/* codec_convert.c — one JSON value <-> one msgpack value, for the tools
 * (krill-enqueue sends .jsonl lines as msgpack, krill-results prints msgpack results
 * as JSON, the worker's stats messages) and the tests. The same depth limit and
 * pre-scans as requests (codec_scan.c) run before jansson/msgpack-c see the bytes. */
#include "err.h"
#include "codec.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>

#include "codec_scan.h"
#include "codec_value.h"
#include "utf8.h"

/* Compact JSON of root into out (jansson: the conversions are not on the hot path). 0 or -1. */
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
    if (codec_scan_json_too_deep((const unsigned char *)json, len, CODEC_MAX_DEPTH)) {
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

json_t *codec_convert_value_to_json(const msgpack_object *o, char *err, size_t errlen) {
    return mp_to_json(o, err, errlen);
}

int codec_msgpack_to_json(const void *buf, size_t len, buf_t *out, char *err, size_t errlen) {
    out->len = 0;
    const char *why = NULL;
    int rc = codec_scan_msgpack(buf, len, CODEC_MAX_DEPTH, &why);
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
