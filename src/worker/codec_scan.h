/* codec_scan.h — private to the codec: the byte-level scans that run before (or
 * instead of) jansson and msgpack-c. Each reads untrusted bytes with bounds checks
 * only, iteratively (no recursion), and allocates nothing. codec_detect (codec.h) is
 * the public one; these serve codec_decode.c and codec_convert.c. */
#ifndef KRILL_CODEC_SCAN_H
#define KRILL_CODEC_SCAN_H

#include <stdbool.h>
#include <stddef.h>

#include "codec.h"

/* JSON: true when containers nest deeper than limit. Strings (with escapes) are
 * skipped; the text need not be valid JSON (jansson judges that afterwards). */
bool codec_scan_json_too_deep(const unsigned char *p, size_t n, int limit);

/* msgpack: checks that [p, p+n) is exactly one value nested at most limit deep
 * (capped at CODEC_MAX_DEPTH), every count backed by bytes. 0, 1 too deep, or -1
 * invalid with *why (a static string) saying what is wrong. */
int codec_scan_msgpack(const unsigned char *p, size_t n, int limit, const char **why);

/* An id (custom_id / id) krill accepts: 1..CODEC_MAX_ID_BYTES bytes of UTF-8 without NUL. */
bool codec_scan_id_ok(const unsigned char *s, size_t n);

/* Cheap top-level scan of bytes in format fmt (that did not decode, or have a
 * duplicate key): the value of the outermost object's "custom_id" key (else "id") when
 * it is a plain string (JSON: without escapes) that codec_scan_id_ok accepts. 1 with
 * *id pointing into p; 0 none; -1 when that key is given twice (no id can be trusted). */
int codec_scan_id(codec_format_t fmt, const unsigned char *p, size_t n, const unsigned char **id, size_t *idlen);

#endif
