/* codec_value.h — private to the codec: reading the fields of a parsed request.
 *
 * One view (codec_value_t) over a jansson node or a msgpack-c object, so the request
 * walk (codec_decode.c) is written once for both formats; typed reads that check type
 * and range and record the FIRST error into the request being decoded (later errors
 * are ignored, so answers are deterministic); and the request's own storage, an arena
 * the reads copy msgpack strings into, freed by codec_request_clear. Out of memory is
 * an error like any other (500 internal_error), never a crash. */
#ifndef KRILL_CODEC_VALUE_H
#define KRILL_CODEC_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <msgpack.h>

#include "codec.h"

/* ---------------------------------------------------------------- storage */

typedef struct codec_chunk codec_chunk_t;

/* What codec_request_t.priv_ points to. Pointers into it stay valid until
 * codec_request_clear. */
typedef struct {
    json_t *root;               /* JSON: the parsed tree (strings point into it) */
    msgpack_unpacked mp;        /* msgpack: the parsed tree, destroyed after the walk */
    bool mp_used;
    codec_chunk_t *arena;       /* newest chunk first */
    char idbuf[CODEC_MAX_ID_BYTES + 1];
    char param[128];
} codec_store_t;

void codec_value_store_free(codec_store_t *st); /* accepts NULL */
/* Makes room for n more bytes in one chunk (one chunk covers a typical request).
 * Best effort: on out of memory nothing changes and the next allocation reports it. */
void codec_value_reserve(codec_store_t *st, size_t n);

/* ---------------------------------------------------------------- the view */

typedef struct {
    const json_t *j;
    const msgpack_object *m;
} codec_value_t; /* both NULL: absent */

enum {
    CODEC_VT_ABSENT = 0, CODEC_VT_NULL, CODEC_VT_BOOL, CODEC_VT_INT, CODEC_VT_UINT, /* above INT64_MAX */
    CODEC_VT_REAL, CODEC_VT_STR, CODEC_VT_ARR, CODEC_VT_OBJ, CODEC_VT_BIN, CODEC_VT_EXT
};

int codec_value_type(codec_value_t v);
const char *codec_value_type_name(int type);    /* "a string", "an array", ... for messages */
bool codec_value_present(codec_value_t v);      /* neither absent nor null */
int64_t codec_value_int(codec_value_t v);       /* CODEC_VT_INT */
uint64_t codec_value_bits64(codec_value_t v);   /* CODEC_VT_INT/UINT modulo 2^64 */
size_t codec_value_len(codec_value_t v);        /* CODEC_VT_ARR */
codec_value_t codec_value_at(codec_value_t v, size_t i); /* i < codec_value_len */
/* CODEC_VT_STR: the raw bytes (not NUL-terminated for msgpack, not UTF-8-checked). */
const char *codec_value_str_raw(codec_value_t v, size_t *n);

/* ---------------------------------------------------------------- typed reads */

/* The walk's cursor: the request being filled, its storage, the limits, and the
 * prefix of every error's field path ("body." inside a Batch API line). */
typedef struct {
    codec_request_t *r;
    codec_store_t *st;
    const codec_limits_t *lim;
    const char *prefix;
} codec_walk_t;

bool codec_value_failed(const codec_walk_t *w);
/* Records the first error: status CODEC_INVALID, e, param prefix+field (NULL: none),
 * and the message "<param>: <fmt...>". Later calls do nothing. */
void codec_value_fail(codec_walk_t *w, codec_error_t e, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* n bytes aligned to align (a power of two) in the request's storage, or NULL after
 * recording an out-of-memory error. */
void *codec_value_alloc(codec_walk_t *w, size_t n, size_t align);

/* Each read returns false (NULL) after recording why the value is not acceptable. */
bool codec_value_want(codec_walk_t *w, codec_value_t v, int type, const char *field, const char *what);
/* A string: valid UTF-8 (jansson checked JSON; msgpack is checked here) without NUL.
 * NUL-terminated and valid for the request's life; *len (may be NULL) its length. */
const char *codec_value_get_str(codec_walk_t *w, codec_value_t v, const char *field, size_t *len);
/* A number in [lo, hi] ((lo, hi] when lo_open); NaN is out of range. */
bool codec_value_get_num(codec_walk_t *w, codec_value_t v, const char *field, double lo, double hi, bool lo_open,
                         double *out);
bool codec_value_get_int(codec_walk_t *w, codec_value_t v, const char *field, int64_t lo, int64_t hi, int64_t *out);
bool codec_value_get_bool(codec_walk_t *w, codec_value_t v, const char *field, bool *out);
/* Collects the values of the wanted keys of an object in one pass (slots[i] for
 * names[i], absent when missing). A key given twice is an error (jansson rejects
 * duplicate JSON keys itself; msgpack maps are checked here); non-string msgpack keys
 * are ignored. where: the field path prefix of the keys ("messages[0]."). */
bool codec_value_fields(codec_walk_t *w, codec_value_t obj, const char *const *names, size_t n_names,
                        codec_value_t *slots, const char *where);

/* A msgpack value as a new jansson value (codec_convert.c; the rules of
 * codec_msgpack_to_json). NULL with err filled when it has no JSON form. */
json_t *codec_convert_value_to_json(const msgpack_object *o, char *err, size_t errlen);

#endif
