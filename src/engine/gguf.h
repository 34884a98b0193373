/* gguf.h — read-only GGUF (v2, v3) reader over an mmap'd file.
 * (Where this part sits among the others: docs/architecture.md.)
 *
 * Rules: the file is untrusted. gguf_open validates every count, string length,
 * array length, dimension, tensor offset/size and the alignment against the file
 * size before anything else reads it; a bad file returns NULL with an error that
 * names the field ("tensor 'blk.0.attn_q.weight': data [off, off+len) past end of
 * file (size N)"). After a successful open every pointer below stays valid until
 * gguf_close and never points outside the mapping. Strings are NOT NUL-terminated:
 * they are (ptr, len) views into the file. */
#ifndef KRILL_GGUF_H
#define KRILL_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    GGUF_VT_UINT8 = 0, GGUF_VT_INT8 = 1, GGUF_VT_UINT16 = 2, GGUF_VT_INT16 = 3,
    GGUF_VT_UINT32 = 4, GGUF_VT_INT32 = 5, GGUF_VT_FLOAT32 = 6, GGUF_VT_BOOL = 7,
    GGUF_VT_STRING = 8, GGUF_VT_ARRAY = 9, GGUF_VT_UINT64 = 10, GGUF_VT_INT64 = 11,
    GGUF_VT_FLOAT64 = 12,
} gguf_vtype_t;

/* ggml tensor types (values as in the GGUF spec). */
typedef enum {
    GGUF_T_F32 = 0, GGUF_T_F16 = 1, GGUF_T_Q4_0 = 2, GGUF_T_Q4_1 = 3, GGUF_T_Q5_0 = 6,
    GGUF_T_Q5_1 = 7, GGUF_T_Q8_0 = 8, GGUF_T_Q8_1 = 9, GGUF_T_Q2_K = 10, GGUF_T_Q3_K = 11,
    GGUF_T_Q4_K = 12, GGUF_T_Q5_K = 13, GGUF_T_Q6_K = 14, GGUF_T_Q8_K = 15, GGUF_T_BF16 = 30,
} gguf_ttype_t;

typedef struct {
    const char *ptr; /* not NUL-terminated; inside the mapping */
    uint64_t len;
} gguf_str_t;

typedef struct {
    gguf_str_t key;
    gguf_vtype_t type;
    union {
        uint64_t u64; /* UINT8..UINT64 zero-extended, BOOL as 0/1 */
        int64_t i64;  /* INT8..INT64 sign-extended */
        double f64;   /* FLOAT32/FLOAT64 */
        gguf_str_t str;
        struct {
            gguf_vtype_t type; /* element type; nested arrays are rejected at open */
            uint64_t n;
            const uint8_t *data; /* raw little-endian elements (non-string types) */
        } arr;
    } v;
} gguf_kv_t;

#define GGUF_MAX_DIMS 4
typedef struct {
    gguf_str_t name;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the contiguous (row) dimension; unused dims are 1 */
    gguf_ttype_t type;
    uint64_t offset;            /* relative to the data section */
    uint64_t nbytes;            /* validated: whole blocks, inside the file */
    const void *data;           /* inside the mapping */
} gguf_tensor_t;

typedef struct gguf gguf_t;

/* Opens and validates a file; NULL on error with a message in err. */
gguf_t *gguf_open(const char *path, char *err, size_t errlen);
/* Same over a caller-owned buffer that must outlive the handle (fuzzing, tests). */
gguf_t *gguf_open_mem(const void *buf, size_t len, char *err, size_t errlen);
void gguf_close(gguf_t *g); /* accepts NULL */
/* Tells the kernel that the tensor data of a mapped file is not needed for now (once
 * the weights have been copied out): its pages leave the resident set and come back
 * from the file if read again. The header (metadata, vocabulary) stays. No-op for
 * gguf_open_mem and on failure. */
void gguf_release_data(const gguf_t *g);
/* The same for one tensor's data (the pages wholly inside it), as soon as it has been
 * converted: loading then never holds the whole file and the weights at once (peak
 * RSS). No-op for gguf_open_mem, a tensor of another handle and on failure. */
void gguf_release_tensor(const gguf_t *g, const gguf_tensor_t *t);

uint32_t gguf_version(const gguf_t *g);
uint64_t gguf_alignment(const gguf_t *g);
size_t gguf_n_kv(const gguf_t *g);
const gguf_kv_t *gguf_kv_at(const gguf_t *g, size_t i);
const gguf_kv_t *gguf_find(const gguf_t *g, const char *key); /* NULL if absent */
size_t gguf_n_tensors(const gguf_t *g);
const gguf_tensor_t *gguf_tensor_at(const gguf_t *g, size_t i);
const gguf_tensor_t *gguf_find_tensor(const gguf_t *g, const char *name);

/* Typed getters: 0 on success, -1 if absent, -2 if present with a type that cannot
 * be converted without loss (err names the key and both types when err != NULL). */
int gguf_get_u64(const gguf_t *g, const char *key, uint64_t *out, char *err, size_t errlen);
int gguf_get_i64(const gguf_t *g, const char *key, int64_t *out, char *err, size_t errlen);
int gguf_get_f64(const gguf_t *g, const char *key, double *out, char *err, size_t errlen);
int gguf_get_bool(const gguf_t *g, const char *key, bool *out, char *err, size_t errlen);
int gguf_get_str(const gguf_t *g, const char *key, gguf_str_t *out, char *err, size_t errlen);

/* Array element access, O(1) (string arrays are indexed at open). */
uint64_t gguf_arr_len(const gguf_kv_t *kv); /* 0 when kv is not an array */
gguf_str_t gguf_arr_str(const gguf_t *g, const gguf_kv_t *kv, uint64_t i);
int64_t gguf_arr_i64(const gguf_kv_t *kv, uint64_t i);  /* integer/bool element */
double gguf_arr_f64(const gguf_kv_t *kv, uint64_t i);   /* float or integer element */

/* Helpers. */
bool gguf_str_eq(gguf_str_t s, const char *cstr);
/* Copies into buf as a NUL-terminated string (truncated to bufsize-1). */
char *gguf_str_copy(gguf_str_t s, char *buf, size_t bufsize);
const char *gguf_vtype_name(gguf_vtype_t t);

#endif
