/* utf8.c — see utf8.h. */
#include "utf8.h"

#include <stdlib.h>
#include <string.h>

int utf8_lead_len(uint8_t c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

bool utf8_cont_ok(uint8_t c, int k, uint8_t b) {
    if ((b & 0xC0) != 0x80) return false;
    if (k == 1) {
        if (c == 0xE0) return b >= 0xA0;
        if (c == 0xED) return b <= 0x9F;
        if (c == 0xF0) return b >= 0x90;
        if (c == 0xF4) return b <= 0x8F;
    }
    return true;
}

size_t utf8_decode(const void *p, size_t n, uint32_t *cp) {
    const uint8_t *s = p;
    if (n == 0) return 0;
    int len = utf8_lead_len(s[0]);
    if (len == 0 || (size_t)len > n) return 0;
    if (len == 1) {
        *cp = s[0];
        return 1;
    }
    uint32_t v = s[0] & (0x7F >> len);
    for (int k = 1; k < len; k++) {
        if (!utf8_cont_ok(s[0], k, s[k])) return 0;
        v = (v << 6) | (s[k] & 0x3F);
    }
    *cp = v;
    return (size_t)len;
}

size_t utf8_valid_prefix(const void *p, size_t n) {
    const uint8_t *s = p;
    size_t i = 0;
    while (i < n) {
        while (i + 8 <= n) { /* ASCII fast path, 8 bytes at a time */
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = utf8_decode(s + i, n - i, &cp);
        if (k == 0) return i;
        i += k;
    }
    return n;
}

bool utf8_valid(const void *s, size_t n) { return utf8_valid_prefix(s, n) == n; }

size_t utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

char *utf8_sanitize(const char *s, size_t n, size_t *outlen) {
    char *o = malloc(n * 3 + 1), *w = o;
    if (!o) return NULL;
    size_t i = 0;
    while (i < n) {
        size_t ok = utf8_valid_prefix(s + i, n - i);
        memcpy(w, s + i, ok);
        w += ok;
        i += ok;
        if (i < n) {
            memcpy(w, "\xEF\xBF\xBD", 3);
            w += 3;
            i++;
        }
    }
    *w = 0;
    *outlen = (size_t)(w - o);
    return o;
}
