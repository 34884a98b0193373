/* codec_scan.c — the codec's byte-level scans (codec_scan.h): format detection, the
 * nesting-depth pre-scans that run before jansson/msgpack-c see a value (so a
 * 100,000-deep value cannot blow the stack or allocate counts its bytes do not hold),
 * and the custom_id scan of messages that did not decode. Iterative, bounds-checked,
 * no allocation. */
#include "codec_scan.h"

#include <stdint.h>
#include <string.h>

#include "utf8.h"

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

bool codec_scan_json_too_deep(const unsigned char *p, size_t n, int limit) {
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

/* Counts are checked against the bytes left (each item needs >= 1 byte). */
int codec_scan_msgpack(const unsigned char *p, size_t n, int limit, const char **why) {
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

bool codec_scan_id_ok(const unsigned char *s, size_t n) {
    if (n == 0 || n > CODEC_MAX_ID_BYTES || memchr(s, 0, n)) return false;
    return utf8_valid(s, n);
}

/* What the top-level scans saw: the first acceptable value of each id key and how many
 * times each key appeared. */
typedef struct {
    const unsigned char *val[2]; /* [0] custom_id, [1] id; NULL when not acceptable */
    size_t len[2];
    int count[2];
} id_seen_t;

static void id_seen_key(id_seen_t *s, int which, const unsigned char *v, size_t n, bool ok) {
    if (s->count[which]++ == 0 && ok) {
        s->val[which] = v;
        s->len[which] = n;
    }
}

/* custom_id, else id; a key given twice is ambiguous: no id (-1). */
static int id_seen_pick(const id_seen_t *s, const unsigned char **id, size_t *idlen) {
    int k = s->count[0] ? 0 : 1;
    if (s->count[k] > 1) return -1;
    if (s->count[0] && !s->val[0]) k = 1; /* a custom_id krill cannot use: the id, as before */
    if (s->count[k] > 1) return -1;
    if (!s->val[k]) return 0;
    *id = s->val[k];
    *idlen = s->len[k];
    return 1;
}

/* codec_scan_id for JSON: tracks the depth, strings and the key a value follows. */
static int json_scan_id(const unsigned char *p, size_t n, const unsigned char **id, size_t *idlen) {
    id_seen_t seen = {{NULL, NULL}, {0, 0}, {0, 0}};
    int d = 0, pending = 0; /* 1: a custom_id value is next, 2: an id value */
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
            if (j >= n) break;
            if (d == 1 && pending) {
                id_seen_key(&seen, pending - 1, p + s, j - s, !esc && codec_scan_id_ok(p + s, j - s));
                pending = 0;
            } else if (d == 1) {
                size_t k = j + 1;
                while (k < n && is_ws(p[k])) k++;
                if (k < n && p[k] == ':') {
                    size_t kl = j - s;
                    if (kl == 9 && memcmp(p + s, "custom_id", 9) == 0) pending = 1;
                    else if (kl == 2 && memcmp(p + s, "id", 2) == 0) pending = 2;
                    i = k;
                    continue;
                }
            }
            i = j;
            continue;
        }
        if (d == 1 && pending) id_seen_key(&seen, pending - 1, NULL, 0, false); /* not a string */
        pending = 0;
        if (c == '{' || c == '[') d++;
        else if ((c == '}' || c == ']') && d > 0) d--;
    }
    return id_seen_pick(&seen, id, idlen);
}

/* codec_scan_id for msgpack: walks the top map's keys, skipping other values whole. */
static int mp_scan_id(const unsigned char *p, size_t n, const unsigned char **id, size_t *idlen) {
    const unsigned char *end = p + n;
    const char *why;
    int kind;
    uint64_t count;
    id_seen_t seen = {{NULL, NULL}, {0, 0}, {0, 0}};
    if (mp_header(&p, end, &kind, &count, &why) != 0 || kind != MP_MAP) return 0;
    for (uint64_t i = 0; i < count; i++) {
        int which = 0;
        const unsigned char *k = p;
        int kk;
        uint64_t kl;
        if (mp_header(&p, end, &kk, &kl, &why) != 0) break;
        if (kk == MP_STR) {
            if (kl == 9 && memcmp(p, "custom_id", 9) == 0) which = 1;
            else if (kl == 2 && memcmp(p, "id", 2) == 0) which = 2;
            p += kl;
        } else {
            p = k;
            if (mp_skip(&p, end) != 0) break;
        }
        const unsigned char *v = p;
        int vk;
        uint64_t vl;
        if (which) {
            bool ok = mp_header(&p, end, &vk, &vl, &why) == 0 && vk == MP_STR && codec_scan_id_ok(p, vl);
            id_seen_key(&seen, which - 1, p, ok ? vl : 0, ok);
        }
        p = v;
        if (mp_skip(&p, end) != 0) break;
    }
    return id_seen_pick(&seen, id, idlen);
}
int codec_scan_id(codec_format_t fmt, const unsigned char *p, size_t n, const unsigned char **id, size_t *idlen) {
    return fmt == CODEC_FMT_MSGPACK ? mp_scan_id(p, n, id, idlen) : json_scan_id(p, n, id, idlen);
}
