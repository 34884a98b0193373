/* test_gguf.c — the GGUF reader: valid v2/v3 files, every value type, and bad files.
 *
 * A small valid file is built in memory here (recording where each field lives) and
 * then corrupted field by field; every corruption must give NULL with a message that
 * names the field. Every prefix of the valid file is opened from an exact-size heap
 * copy, so an over-read shows up under ASan. A file written by the independent gguf
 * Python package (tests/reference/write_tiny_gguf.py) is read back value by value.
 * krill-gguf's exit status is checked on good and bad files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "gguf.h"
#include "quant.h"
#include "testutil.h"

/* ---------------------------------------------------------------- builder */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf_t;

static void put(buf_t *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put_u8(buf_t *b, uint8_t v) { put(b, &v, 1); }
static void put_u16(buf_t *b, uint16_t v) { put(b, &v, 2); } /* the test host is little-endian */
static void put_u32(buf_t *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf_t *b, uint64_t v) { put(b, &v, 8); }
static void put_f32(buf_t *b, float v) { put(b, &v, 4); }
static void put_f64(buf_t *b, double v) { put(b, &v, 8); }
static void put_str(buf_t *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void put_key(buf_t *b, const char *k, uint32_t type) {
    put_str(b, k);
    put_u32(b, type);
}
static void patch_u32(buf_t *b, size_t off, uint32_t v) { memcpy(b->p + off, &v, 4); }
static void patch_u64(buf_t *b, size_t off, uint64_t v) { memcpy(b->p + off, &v, 8); }

/* Where the fields of the valid file live (byte offsets). */
typedef struct {
    size_t version, n_tensors, n_kv;
    size_t kv_type_u8;      /* value type of "k.u8" */
    size_t key_i8;          /* bytes of key "k.i8" */
    size_t key0_len;        /* length of the first key */
    size_t align_val;       /* value of general.alignment */
    size_t sarr_etype, sarr_n, sarr_str1_len; /* string array: element type, count, 2nd string length */
    size_t tname[3], tndims[3], tdims[3], ttype[3], toff[3];
    size_t data;            /* start of the data section */
} layout_t;

#define N_T 3
static const char *TNAME[N_T] = {"t.f32", "t.q80", "t.q4k"};

/* A valid GGUF: one kv of every scalar type, arrays, 3 tensors, alignment 32. */
static void build_valid(buf_t *b, layout_t *L, uint32_t version) {
    memset(b, 0, sizeof(*b));
    put(b, "GGUF", 4);
    L->version = b->n;
    put_u32(b, version);
    L->n_tensors = b->n;
    put_u64(b, N_T);
    L->n_kv = b->n;
    put_u64(b, 17);
    L->key0_len = b->n;
    put_key(b, "general.architecture", GGUF_VT_STRING);
    put_str(b, "llama");
    put_key(b, "general.alignment", GGUF_VT_UINT32);
    L->align_val = b->n;
    put_u32(b, 32);
    put_str(b, "k.u8");
    L->kv_type_u8 = b->n;
    put_u32(b, GGUF_VT_UINT8);
    put_u8(b, 250);
    L->key_i8 = b->n + 8;
    put_key(b, "k.i8", GGUF_VT_INT8);
    put_u8(b, (uint8_t)-5);
    put_key(b, "k.u16", GGUF_VT_UINT16);
    put_u16(b, 65000);
    put_key(b, "k.i16", GGUF_VT_INT16);
    put_u16(b, (uint16_t)-32000);
    put_key(b, "k.u32", GGUF_VT_UINT32);
    put_u32(b, 4000000000u);
    put_key(b, "k.i32", GGUF_VT_INT32);
    put_u32(b, (uint32_t)-7);
    put_key(b, "k.f32", GGUF_VT_FLOAT32);
    put_f32(b, 0.25f);
    put_key(b, "k.bool", GGUF_VT_BOOL);
    put_u8(b, 1);
    put_key(b, "k.u64", GGUF_VT_UINT64);
    put_u64(b, UINT64_MAX);
    put_key(b, "k.i64", GGUF_VT_INT64);
    put_u64(b, (uint64_t)INT64_MIN);
    put_key(b, "k.f64", GGUF_VT_FLOAT64);
    put_f64(b, 1e300);
    put_key(b, "k.str", GGUF_VT_STRING);
    put_str(b, "hello");
    put_key(b, "a.str", GGUF_VT_ARRAY);
    L->sarr_etype = b->n;
    put_u32(b, GGUF_VT_STRING);
    L->sarr_n = b->n;
    put_u64(b, 3);
    put_str(b, "x");
    L->sarr_str1_len = b->n;
    put_str(b, "");
    put_str(b, "zzz");
    put_key(b, "a.i16", GGUF_VT_ARRAY);
    put_u32(b, GGUF_VT_INT16);
    put_u64(b, 2);
    put_u16(b, (uint16_t)-3);
    put_u16(b, 9);
    put_key(b, "a.f64", GGUF_VT_ARRAY);
    put_u32(b, GGUF_VT_FLOAT64);
    put_u64(b, 1);
    put_f64(b, -0.5);
    /* tensors: F32 [4,2] (32 B), Q8_0 [32,2] (68 B), Q4_K [256] (144 B) */
    const uint32_t types[N_T] = {GGUF_T_F32, GGUF_T_Q8_0, GGUF_T_Q4_K};
    const uint64_t dims[N_T][2] = {{4, 2}, {32, 2}, {256, 1}};
    const uint32_t ndims[N_T] = {2, 2, 1};
    const uint64_t offs[N_T] = {0, 32, 128};
    for (int i = 0; i < N_T; i++) {
        L->tname[i] = b->n;
        put_str(b, TNAME[i]);
        L->tndims[i] = b->n;
        put_u32(b, ndims[i]);
        L->tdims[i] = b->n;
        for (uint32_t d = 0; d < ndims[i]; d++) put_u64(b, dims[i][d]);
        L->ttype[i] = b->n;
        put_u32(b, types[i]);
        L->toff[i] = b->n;
        put_u64(b, offs[i]);
    }
    while (b->n % 32) put_u8(b, 0);
    L->data = b->n;
    for (int i = 0; i < 8; i++) put_f32(b, (float)i - 2.5f);
    for (int r = 0; r < 2; r++) { /* Q8_0 rows: d = 0.5 (f16 0x3800), qs = j - 16 + r */
        put_u16(b, 0x3800);
        for (int j = 0; j < 32; j++) put_u8(b, (uint8_t)(int8_t)(j - 16 + r));
    }
    while (b->n < L->data + 128) put_u8(b, 0xAA); /* padding before the aligned Q4_K */
    put_u16(b, 0x3c00); /* d = 1 */
    put_u16(b, 0x0000); /* dmin = 0 */
    for (int j = 0; j < 12; j++) put_u8(b, (uint8_t)(j + 1));
    for (int j = 0; j < 128; j++) put_u8(b, (uint8_t)(j * 37));
    assert_int_equal(b->n, L->data + 128 + 144); /* the last tensor ends at EOF */
}

/* Opens an exact-size heap copy so that any over-read trips ASan. */
static gguf_t *open_copy(const buf_t *b, size_t len, char *err, size_t errlen, uint8_t **keep) {
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len) memcpy(copy, b->p, len);
    err[0] = '\0';
    gguf_t *g = gguf_open_mem(len ? copy : NULL, len, err, errlen);
    if (g) {
        *keep = copy;
    } else {
        free(copy);
        *keep = NULL;
    }
    return g;
}

/* Opening must fail with a message containing each of the given substrings. */
static void expect_bad(const buf_t *b, const char *what, const char *sub1, const char *sub2) {
    char err[512];
    uint8_t *keep;
    gguf_t *g = open_copy(b, b->n, err, sizeof(err), &keep);
    if (g) {
        gguf_close(g);
        free(keep);
        fail_msg("%s: opened, expected an error", what);
    }
    if (err[0] == '\0') fail_msg("%s: no error message", what);
    if (sub1 && !strstr(err, sub1)) fail_msg("%s: message \"%s\" does not mention \"%s\"", what, err, sub1);
    if (sub2 && !strstr(err, sub2)) fail_msg("%s: message \"%s\" does not mention \"%s\"", what, err, sub2);
    print_message("  %-28s -> %s\n", what, err);
}

/* ---------------------------------------------------------------- valid files */

static void check_valid(const gguf_t *g, uint32_t version) {
    char err[256];
    assert_int_equal(gguf_version(g), version);
    assert_int_equal(gguf_alignment(g), 32);
    assert_int_equal(gguf_n_kv(g), 17);
    assert_int_equal(gguf_n_tensors(g), N_T);
    assert_true(gguf_str_eq(gguf_kv_at(g, 0)->key, "general.architecture"));
    assert_null(gguf_kv_at(g, 17));
    assert_null(gguf_tensor_at(g, N_T));

    uint64_t u;
    int64_t i;
    double f;
    bool bo;
    gguf_str_t s;
    assert_int_equal(gguf_get_u64(g, "k.u8", &u, err, sizeof(err)), 0);
    assert_int_equal(u, 250);
    assert_int_equal(gguf_get_i64(g, "k.i8", &i, err, sizeof(err)), 0);
    assert_int_equal(i, -5);
    assert_int_equal(gguf_get_u64(g, "k.u16", &u, err, sizeof(err)), 0);
    assert_int_equal(u, 65000);
    assert_int_equal(gguf_get_i64(g, "k.i16", &i, err, sizeof(err)), 0);
    assert_int_equal(i, -32000);
    assert_int_equal(gguf_get_u64(g, "k.u32", &u, err, sizeof(err)), 0);
    assert_int_equal(u, 4000000000u);
    assert_int_equal(gguf_get_i64(g, "k.i32", &i, err, sizeof(err)), 0);
    assert_int_equal(i, -7);
    assert_int_equal(gguf_get_f64(g, "k.f32", &f, err, sizeof(err)), 0);
    assert_true(f == 0.25);
    assert_int_equal(gguf_get_bool(g, "k.bool", &bo, err, sizeof(err)), 0);
    assert_true(bo);
    assert_int_equal(gguf_get_u64(g, "k.u64", &u, err, sizeof(err)), 0);
    assert_true(u == UINT64_MAX);
    assert_int_equal(gguf_get_i64(g, "k.i64", &i, err, sizeof(err)), 0);
    assert_true(i == INT64_MIN);
    assert_int_equal(gguf_get_f64(g, "k.f64", &f, err, sizeof(err)), 0);
    assert_true(f == 1e300);
    assert_int_equal(gguf_get_str(g, "k.str", &s, err, sizeof(err)), 0);
    assert_true(gguf_str_eq(s, "hello"));
    /* conversions: widening is fine, lossy ones are -2 with a message naming the key */
    assert_int_equal(gguf_get_i64(g, "k.u32", &i, err, sizeof(err)), 0);
    assert_int_equal(i, 4000000000);
    assert_int_equal(gguf_get_f64(g, "k.i32", &f, err, sizeof(err)), 0);
    assert_true(f == -7.0);
    err[0] = '\0';
    assert_int_equal(gguf_get_u64(g, "k.i8", &u, err, sizeof(err)), -2);
    assert_non_null(strstr(err, "k.i8"));
    assert_int_equal(gguf_get_i64(g, "k.u64", &i, err, sizeof(err)), -2);
    assert_int_equal(gguf_get_u64(g, "k.f32", &u, err, sizeof(err)), -2);
    assert_int_equal(gguf_get_str(g, "k.u8", &s, err, sizeof(err)), -2);
    assert_non_null(strstr(err, "expected string"));
    assert_int_equal(gguf_get_bool(g, "k.u8", &bo, NULL, 0), -2);
    assert_int_equal(gguf_get_f64(g, "k.str", &f, NULL, 0), -2);
    assert_int_equal(gguf_get_u64(g, "nope", &u, err, sizeof(err)), -1);
    assert_null(gguf_find(g, "nope"));
    assert_null(gguf_find(g, "k.u"));   /* prefix of a key */
    assert_null(gguf_find(g, "k.u88")); /* extension of a key */

    const gguf_kv_t *sa = gguf_find(g, "a.str");
    assert_non_null(sa);
    assert_int_equal(sa->type, GGUF_VT_ARRAY);
    assert_int_equal(sa->v.arr.type, GGUF_VT_STRING);
    assert_int_equal(gguf_arr_len(sa), 3);
    assert_true(gguf_str_eq(gguf_arr_str(g, sa, 0), "x"));
    assert_true(gguf_str_eq(gguf_arr_str(g, sa, 1), ""));
    assert_true(gguf_str_eq(gguf_arr_str(g, sa, 2), "zzz"));
    assert_int_equal(gguf_arr_str(g, sa, 3).len, 0); /* out of range: empty */
    const gguf_kv_t *ia = gguf_find(g, "a.i16");
    assert_int_equal(gguf_arr_len(ia), 2);
    assert_int_equal(gguf_arr_i64(ia, 0), -3);
    assert_int_equal(gguf_arr_i64(ia, 1), 9);
    assert_true(gguf_arr_f64(ia, 0) == -3.0);
    assert_int_equal(gguf_arr_i64(ia, 2), 0);
    assert_int_equal(gguf_arr_str(g, ia, 0).len, 0); /* not a string array */
    assert_true(gguf_arr_f64(gguf_find(g, "a.f64"), 0) == -0.5);
    assert_int_equal(gguf_arr_len(gguf_find(g, "k.u8")), 0);

    char small[4];
    assert_string_equal(gguf_str_copy(s, small, sizeof(small)), "hel");
    assert_string_equal(gguf_vtype_name(GGUF_VT_FLOAT64), "f64");
    assert_string_equal(gguf_vtype_name((gguf_vtype_t)77), "unknown");

    const gguf_tensor_t *t = gguf_find_tensor(g, "t.f32");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 4);
    assert_int_equal(t->ne[1], 2);
    assert_int_equal(t->ne[2], 1);
    assert_int_equal(t->nbytes, 32);
    float y[256];
    assert_int_equal(quant_dequantize_f32(t->type, t->data, y, 8), 0);
    for (int k = 0; k < 8; k++) assert_true(y[k] == (float)k - 2.5f);
    t = gguf_find_tensor(g, "t.q80");
    assert_int_equal(t->type, GGUF_T_Q8_0);
    assert_int_equal(t->nbytes, 68);
    assert_int_equal(t->offset, 32);
    assert_int_equal(quant_dequantize_f32(t->type, t->data, y, 64), 0);
    for (int k = 0; k < 64; k++) assert_true(y[k] == 0.5f * (float)((k % 32) - 16 + k / 32));
    t = gguf_find_tensor(g, "t.q4k");
    assert_int_equal(t->nbytes, 144);
    assert_int_equal(t->n_dims, 1);
    assert_null(gguf_find_tensor(g, "t.q4"));
    assert_null(gguf_find_tensor(g, "general.alignment"));
}

static void test_valid_v2_v3(void **state) {
    (void)state;
    for (uint32_t v = 2; v <= 3; v++) {
        buf_t b;
        layout_t L;
        build_valid(&b, &L, v);
        char err[512];
        uint8_t *keep;
        gguf_t *g = open_copy(&b, b.n, err, sizeof(err), &keep);
        if (!g) fail_msg("v%u: %s", v, err);
        check_valid(g, v);
        gguf_close(g);
        free(keep);
        free(b.p);
    }
    gguf_close(NULL);
}

/* Every proper prefix must fail cleanly; the whole file must open. */
static void test_every_prefix(void **state) {
    (void)state;
    buf_t b;
    layout_t L;
    build_valid(&b, &L, 3);
    char err[512];
    for (size_t len = 0; len < b.n; len++) {
        uint8_t *keep;
        gguf_t *g = open_copy(&b, len, err, sizeof(err), &keep);
        if (g) fail_msg("prefix of %zu/%zu bytes opened", len, b.n);
        if (err[0] == '\0') fail_msg("prefix of %zu bytes: no message", len);
    }
    uint8_t *keep;
    gguf_t *g = open_copy(&b, b.n, err, sizeof(err), &keep);
    assert_non_null(g);
    gguf_close(g);
    free(keep);
    /* representative messages */
    b.n = L.data + 128 + 143;
    expect_bad(&b, "one byte short", "t.q4k", "past the end");
    b.n = L.n_kv + 3;
    expect_bad(&b, "cut in kv count", "kv count", "truncated");
    b.n = L.sarr_str1_len + 4;
    expect_bad(&b, "cut in string array", "'a.str'", "array length 3");
    b.n = L.toff[1] + 2;
    expect_bad(&b, "cut in tensor offset", "tensor 1 't.q80'", "offset");
    free(b.p);
}

#define MUTATE(desc, stmt, s1, s2)     \
    do {                               \
        buf_t b;                       \
        layout_t L;                    \
        build_valid(&b, &L, 3);        \
        stmt;                          \
        expect_bad(&b, desc, s1, s2);  \
        free(b.p);                     \
    } while (0)

static void test_bad_header(void **state) {
    (void)state;
    buf_t e = {0};
    expect_bad(&e, "zero-length", "empty", NULL);
    MUTATE("wrong magic", b.p[0] = 'X', "magic", NULL);
    MUTATE("ggml magic", memcpy(b.p, "lmgg", 4), "magic", NULL);
    MUTATE("version 1", patch_u32(&b, L.version, 1), "version 1", NULL);
    MUTATE("version 4", patch_u32(&b, L.version, 4), "version 4", NULL);
    MUTATE("version 0", patch_u32(&b, L.version, 0), "version 0", NULL);
    MUTATE("big-endian", patch_u32(&b, L.version, 0x03000000u), "big-endian", NULL);
    MUTATE("n_kv 2^60", patch_u64(&b, L.n_kv, 1ull << 60), "kv count", "1152921504606846976");
    MUTATE("n_kv 2^64-1", patch_u64(&b, L.n_kv, UINT64_MAX), "kv count", NULL);
    MUTATE("n_kv one too many", patch_u64(&b, L.n_kv, 18), NULL, NULL);
    MUTATE("n_tensors 2^60", patch_u64(&b, L.n_tensors, 1ull << 60), "tensor count", NULL);
    MUTATE("n_tensors one too many", patch_u64(&b, L.n_tensors, 4), NULL, NULL);
}

static void test_bad_kv(void **state) {
    (void)state;
    MUTATE("key length past EOF", patch_u64(&b, L.key0_len, 1ull << 40), "kv 0", "past the end");
    MUTATE("key length 2^64-1", patch_u64(&b, L.key0_len, UINT64_MAX), "kv 0", "past the end");
    MUTATE("unknown value type", patch_u32(&b, L.kv_type_u8, 13), "'k.u8'", "unknown value type 13");
    MUTATE("value type 2^32-1", patch_u32(&b, L.kv_type_u8, UINT32_MAX), "'k.u8'", "unknown value type");
    MUTATE("duplicate key", memcpy(b.p + L.key_i8, "k.u8", 4), "duplicate key 'k.u8'", NULL);
    MUTATE("nested array", patch_u32(&b, L.sarr_etype, GGUF_VT_ARRAY), "'a.str'", "nested");
    MUTATE("unknown array type", patch_u32(&b, L.sarr_etype, 99), "'a.str'", "unknown array element type");
    MUTATE("array length 2^60", patch_u64(&b, L.sarr_n, 1ull << 60), "'a.str'", "array length");
    MUTATE("array length +1", patch_u64(&b, L.sarr_n, 4), NULL, NULL);
    MUTATE("string in array past EOF", patch_u64(&b, L.sarr_str1_len, 1ull << 50), "'a.str'", "string 1 of 3");
    MUTATE("alignment 3", patch_u32(&b, L.align_val, 3), "general.alignment", "power of two");
    MUTATE("alignment 0", patch_u32(&b, L.align_val, 0), "general.alignment", NULL);
    MUTATE("alignment 2^31", patch_u32(&b, L.align_val, 1u << 31), "general.alignment", NULL);
    /* general.alignment must be an integer: make it a FLOAT32 */
    MUTATE("alignment wrong type", patch_u32(&b, L.align_val - 4, GGUF_VT_FLOAT32), "general.alignment", NULL);
}

static void test_bad_tensors(void **state) {
    (void)state;
    MUTATE("n_dims 5", patch_u32(&b, L.tndims[0], 5), "tensor 0 't.f32'", "n_dims 5");
    MUTATE("n_dims 2^32-1", patch_u32(&b, L.tndims[1], UINT32_MAX), "tensor 1 't.q80'", "n_dims");
    MUTATE("dim 2^63", patch_u64(&b, L.tdims[0], 1ull << 63), "tensor 0 't.f32'", "dimension 0");
    MUTATE("dims product overflow", (patch_u64(&b, L.tdims[0], 1ull << 40), patch_u64(&b, L.tdims[0] + 8, 1ull << 40)),
           "tensor 0 't.f32'", "overflows");
    MUTATE("dims huge but no overflow", patch_u64(&b, L.tdims[1] + 8, 1ull << 40), "tensor 1 't.q80'", "past the end");
    MUTATE("bytes overflow", patch_u64(&b, L.tdims[0] + 8, (1ull << 62) / 4 + 1), "tensor 0 't.f32'", NULL);
    MUTATE("partial block", patch_u64(&b, L.tdims[1], 33), "tensor 1 't.q80'", "whole number of Q8_0 blocks");
    MUTATE("unknown tensor type", patch_u32(&b, L.ttype[2], 99), "tensor 2 't.q4k'", "unknown tensor type 99");
    MUTATE("removed tensor type 4", patch_u32(&b, L.ttype[2], 4), "tensor 2", "unknown tensor type 4");
    MUTATE("tensor type 2^32-1", patch_u32(&b, L.ttype[0], UINT32_MAX), "tensor 0", "unknown tensor type");
    MUTATE("data past EOF", patch_u64(&b, L.toff[2], 160), "tensor 2 't.q4k'", "past the end");
    MUTATE("offset 2^64-32", patch_u64(&b, L.toff[2], UINT64_MAX - 31), "tensor 2 't.q4k'", "past the end");
    MUTATE("misaligned offset", patch_u64(&b, L.toff[1], 33), "tensor 1 't.q80'", "alignment 32");
    MUTATE("duplicate tensor", memcpy(b.p + L.tname[1] + 8, "t.f32", 5), "duplicate name 't.f32'", NULL);
    MUTATE("name length 0", patch_u64(&b, L.tname[0], 0), "tensor 0", NULL);
    MUTATE("name past EOF", patch_u64(&b, L.tname[2], 1ull << 33), "tensor 2", "past the end");
    /* names are bytes: a control byte is allowed, and messages escape it */
    buf_t b;
    layout_t L;
    build_valid(&b, &L, 3);
    b.p[L.tname[0] + 8] = 0x01;
    char err[512];
    uint8_t *keep;
    gguf_t *g = open_copy(&b, b.n, err, sizeof(err), &keep);
    assert_non_null(g);
    gguf_close(g);
    free(keep);
    patch_u32(&b, L.ttype[0], 77);
    expect_bad(&b, "escaped name", "tensor 0 '\\x01.f32'", NULL);
    free(b.p);
}

/* Single-byte mutations anywhere must never crash or over-read (ASan build). */
static void test_random_mutations(void **state) {
    (void)state;
    buf_t b;
    layout_t L;
    build_valid(&b, &L, 3);
    uint8_t *copy = malloc(b.n);
    uint64_t x = 88172645463325252ull;
    int opened = 0;
    for (int it = 0; it < 20000; it++) {
        memcpy(copy, b.p, b.n);
        for (int k = 0; k < 1 + it % 3; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t pos = (size_t)(x % L.data); /* the header, not tensor data */
            copy[pos] = (it & 1) ? (uint8_t)(x >> 32) : (uint8_t)(copy[pos] ^ (1u << ((x >> 40) & 7)));
        }
        char err[256];
        gguf_t *g = gguf_open_mem(copy, b.n, err, sizeof(err));
        if (g) {
            opened++;
            for (size_t i = 0; i < gguf_n_kv(g); i++) {
                const gguf_kv_t *kv = gguf_kv_at(g, i);
                for (uint64_t j = 0; j < gguf_arr_len(kv); j++) {
                    (void)gguf_arr_str(g, kv, j);
                    (void)gguf_arr_f64(kv, j);
                }
            }
            for (size_t i = 0; i < gguf_n_tensors(g); i++) {
                const gguf_tensor_t *t = gguf_tensor_at(g, i);
                assert_true((const uint8_t *)t->data + t->nbytes <= copy + b.n);
            }
            gguf_close(g);
        } else {
            assert_true(err[0] != '\0');
        }
    }
    print_message("  random mutations: %d of 20000 still valid\n", opened);
    free(copy);
    free(b.p);
}

/* ---------------------------------------------------------------- files and the tool */

static char tmpdir[512];

static int setup_tmp(void **state) {
    (void)state;
    return testutil_tmpdir(tmpdir, sizeof tmpdir, "gguf");
}

static int teardown_tmp(void **state) {
    (void)state;
    return testutil_rmtree(tmpdir);
}

static void write_file(const char *path, const void *p, size_t n) {
    if (testutil_write_file(path, p, n)) fail_msg("cannot write %s", path);
}

static void test_files(void **state) {
    (void)state;
    buf_t b;
    layout_t L;
    build_valid(&b, &L, 3);
    char path[600], err[512];
    snprintf(path, sizeof(path), "%s/valid.gguf", tmpdir);
    write_file(path, b.p, b.n);
    gguf_t *g = gguf_open(path, err, sizeof(err));
    if (!g) fail_msg("%s", err);
    check_valid(g, 3);
    gguf_release_data(g); /* pages dropped: everything reads the same from the file */
    check_valid(g, 3);
    for (size_t i = 0; i < gguf_n_tensors(g); i++) gguf_release_tensor(g, gguf_tensor_at(g, i)); /* likewise */
    gguf_release_tensor(g, NULL);
    check_valid(g, 3);
    gguf_close(g);

    snprintf(path, sizeof(path), "%s/short.gguf", tmpdir);
    write_file(path, b.p, b.n - 1);
    assert_null(gguf_open(path, err, sizeof(err)));
    assert_non_null(strstr(err, path)); /* the path leads the message */
    assert_non_null(strstr(err, "t.q4k"));

    snprintf(path, sizeof(path), "%s/empty.gguf", tmpdir);
    write_file(path, "", 0);
    assert_null(gguf_open(path, err, sizeof(err)));
    assert_non_null(strstr(err, "empty"));

    snprintf(path, sizeof(path), "%s/missing.gguf", tmpdir);
    assert_null(gguf_open(path, err, sizeof(err)));
    assert_non_null(strstr(err, "cannot open"));
    assert_null(gguf_open(tmpdir, err, sizeof(err)));
    assert_non_null(strstr(err, "not a regular file"));
    free(b.p);
}

static void test_tool(void **state) {
    (void)state;
    char tool[512], path[600];
    snprintf(tool, sizeof(tool), "%s/krill-gguf", testutil_build_dir());
    if (access(tool, X_OK) != 0) fail_msg("%s not built", tool);
    buf_t b;
    layout_t L;
    build_valid(&b, &L, 3);
    snprintf(path, sizeof(path), "%s/tool.gguf", tmpdir);
    write_file(path, b.p, b.n);
    assert_int_equal(testutil_run("%s --check '%s' >/dev/null 2>&1", tool, path), 0);
    write_file(path, b.p, L.data + 10);
    assert_int_equal(testutil_run("%s '%s' 2>'%s/tool.err' >/dev/null", tool, path, tmpdir), 1);
    assert_int_equal(testutil_run("grep -q 'past the end' '%s/tool.err'", tmpdir), 0);
    assert_int_equal(testutil_run("%s --help >/dev/null", tool), 0);
    assert_int_equal(testutil_run("%s --version | grep -q '^krill-gguf [0-9]'", tool), 0);
    assert_int_equal(testutil_run("%s >/dev/null 2>&1", tool), 2);
    assert_int_equal(testutil_run("%s --bogus x >/dev/null 2>&1", tool), 2);
    if (!testutil_have_model()) {
        free(b.p);
        skip();
    }
    assert_int_equal(testutil_run("%s --check --quiet " TESTUTIL_MODEL " >'%s/model.out' 2>&1", tool, tmpdir), 0);
    assert_int_equal(testutil_run("grep -q 'check: 272 tensors, 0 failed' '%s/model.out'", tmpdir), 0);
    free(b.p);
}

/* A file written by the gguf Python package: every value is read back as written. */
static void test_python_written(void **state) {
    (void)state;
    char dir[600], path[700], err[512];
    snprintf(dir, sizeof(dir), "%s/py", tmpdir);
    int rc = testutil_write_gguf("write_tiny_gguf.py", dir, NULL);
    if (rc == TESTUTIL_SKIP) skip(); /* noted by testutil_write_gguf */
    assert_int_equal(rc, 0);
    snprintf(path, sizeof(path), "%s/types.gguf", dir);
    gguf_t *g = gguf_open(path, err, sizeof(err));
    if (!g) fail_msg("%s", err);
    assert_int_equal(gguf_version(g), 3);
    assert_int_equal(gguf_alignment(g), 64);
    const struct {
        const char *key;
        gguf_vtype_t type;
        int64_t i;
    } ints[] = {
        {"t.u8", GGUF_VT_UINT8, 200},           {"t.i8", GGUF_VT_INT8, -100},
        {"t.u16", GGUF_VT_UINT16, 60000},       {"t.i16", GGUF_VT_INT16, -30000},
        {"t.u32", GGUF_VT_UINT32, 4000000000},  {"t.i32", GGUF_VT_INT32, -2000000000},
        {"t.i64", GGUF_VT_INT64, -9000000000000000000},
    };
    for (size_t k = 0; k < sizeof(ints) / sizeof(ints[0]); k++) {
        const gguf_kv_t *kv = gguf_find(g, ints[k].key);
        assert_non_null(kv);
        assert_int_equal(kv->type, ints[k].type);
        int64_t v;
        assert_int_equal(gguf_get_i64(g, ints[k].key, &v, err, sizeof(err)), 0);
        assert_true(v == ints[k].i);
    }
    uint64_t u;
    double f;
    bool bo;
    gguf_str_t s;
    assert_int_equal(gguf_get_u64(g, "t.u64", &u, err, sizeof(err)), 0);
    assert_true(u == 18000000000000000000ull);
    assert_int_equal(gguf_find(g, "t.f32")->type, GGUF_VT_FLOAT32);
    assert_int_equal(gguf_get_f64(g, "t.f32", &f, err, sizeof(err)), 0);
    assert_true(f == 0.15625);
    assert_int_equal(gguf_get_f64(g, "t.f64", &f, err, sizeof(err)), 0);
    assert_true(f == -2.5e-300);
    assert_int_equal(gguf_get_bool(g, "t.bool", &bo, err, sizeof(err)), 0);
    assert_true(bo);
    assert_int_equal(gguf_get_str(g, "t.str", &s, err, sizeof(err)), 0);
    assert_true(gguf_str_eq(s, "h\xc3\xa9llo\nworld"));
    assert_int_equal(gguf_get_str(g, "t.empty", &s, err, sizeof(err)), 0);
    assert_int_equal(s.len, 0);
    const gguf_kv_t *a = gguf_find(g, "a.str");
    assert_int_equal(gguf_arr_len(a), 4);
    assert_true(gguf_str_eq(gguf_arr_str(g, a, 0), "a"));
    assert_true(gguf_str_eq(gguf_arr_str(g, a, 1), ""));
    assert_true(gguf_str_eq(gguf_arr_str(g, a, 2), "ccc"));
    assert_true(gguf_str_eq(gguf_arr_str(g, a, 3), "\xc3\xbcn\xc3\xaf"));
    a = gguf_find(g, "a.i32");
    assert_int_equal(a->v.arr.type, GGUF_VT_INT32);
    assert_true(gguf_arr_i64(a, 1) == -2 && gguf_arr_i64(a, 2) == 2147483647 && gguf_arr_i64(a, 3) == -2147483648LL);
    a = gguf_find(g, "a.f32");
    assert_true(gguf_arr_f64(a, 0) == 0.5 && gguf_arr_f64(a, 1) == -1.25);
    a = gguf_find(g, "a.u8");
    assert_true(gguf_arr_i64(a, 1) == 255 && gguf_arr_i64(a, 2) == 7);
    a = gguf_find(g, "a.bool");
    assert_true(gguf_arr_i64(a, 0) == 1 && gguf_arr_i64(a, 1) == 0);
    a = gguf_find(g, "a.u64");
    assert_true((uint64_t)gguf_arr_i64(a, 1) == UINT64_MAX);
    assert_true(gguf_arr_f64(gguf_find(g, "a.f64"), 0) == 3.25);

    assert_int_equal(gguf_n_tensors(g), 4);
    const gguf_tensor_t *t = gguf_find_tensor(g, "w.f32");
    assert_int_equal(t->ne[0], 4);
    assert_int_equal(t->ne[1], 3);
    float y[256];
    assert_int_equal(quant_dequantize_f32(t->type, t->data, y, 12), 0);
    for (int k = 0; k < 12; k++) assert_true(y[k] == (float)k);
    t = gguf_find_tensor(g, "w.f16");
    assert_int_equal(t->type, GGUF_T_F16);
    assert_int_equal(quant_dequantize_f32(t->type, t->data, y, 64), 0);
    for (int k = 0; k < 64; k++) assert_true(y[k] == (float)k / 8);
    t = gguf_find_tensor(g, "w.q8_0");
    assert_int_equal(t->type, GGUF_T_Q8_0);
    assert_int_equal(t->ne[0], 64);
    assert_int_equal(t->nbytes, 136);
    t = gguf_find_tensor(g, "w.q4_k");
    assert_int_equal(t->type, GGUF_T_Q4_K);
    assert_int_equal(t->ne[0], 256);
    for (size_t k = 0; k < gguf_n_tensors(g); k++) assert_int_equal(gguf_tensor_at(g, k)->offset % 64, 0);
    gguf_close(g);
}

static void test_default_model(void **state) {
    (void)state;
    TESTUTIL_NEED_MODEL();
    char err[512];
    gguf_t *g = gguf_open(TESTUTIL_MODEL, err, sizeof(err));
    if (!g) fail_msg("%s", err);
    assert_int_equal(gguf_version(g), 3);
    assert_int_equal(gguf_n_kv(g), 33);
    assert_int_equal(gguf_n_tensors(g), 272);
    const gguf_kv_t *toks = gguf_find(g, "tokenizer.ggml.tokens");
    assert_int_equal(gguf_arr_len(toks), 49152);
    assert_true(gguf_str_eq(gguf_arr_str(g, toks, 0), "<|endoftext|>"));
    assert_true(gguf_str_eq(gguf_arr_str(g, toks, 1), "<|im_start|>"));
    assert_int_equal(gguf_arr_len(gguf_find(g, "tokenizer.ggml.merges")), 48900);
    assert_true(gguf_str_eq(gguf_arr_str(g, gguf_find(g, "tokenizer.ggml.merges"), 0), "\xc4\xa0 t"));
    const gguf_tensor_t *t = gguf_find_tensor(g, "token_embd.weight");
    /* released tensor pages come back from the file unchanged */
    unsigned char *copy = malloc(t->nbytes);
    assert_non_null(copy);
    memcpy(copy, t->data, t->nbytes);
    gguf_release_data(g);
    assert_memory_equal(copy, t->data, t->nbytes);
    assert_true(gguf_str_eq(gguf_arr_str(g, toks, 1), "<|im_start|>"));
    free(copy);
    assert_int_equal(t->type, GGUF_T_Q8_0);
    assert_int_equal(t->ne[0], 576);
    assert_int_equal(t->ne[1], 49152);
    gguf_close(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_v2_v3),   cmocka_unit_test(test_every_prefix),
        cmocka_unit_test(test_bad_header),    cmocka_unit_test(test_bad_kv),
        cmocka_unit_test(test_bad_tensors),   cmocka_unit_test(test_random_mutations),
        cmocka_unit_test(test_files),         cmocka_unit_test(test_tool),
        cmocka_unit_test(test_python_written), cmocka_unit_test(test_default_model),
    };
    return testutil_exit(cmocka_run_group_tests(tests, setup_tmp, teardown_tmp));
}
