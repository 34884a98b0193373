/* codec_surface.c — the OpenAI/vLLM request surface beyond sampling (codec_surface.h,
 * docs/schema.md): which body keys krill implements and refusing every other one,
 * structured-output constraints (response_format, guided_*, structured_outputs),
 * logprobs / top_logprobs, logit_bias, and the fields accepted with no effect.
 *
 * Rules it keeps: nothing is accepted and ignored unless it is listed in
 * docs/schema.md as having no effect on the output or named in
 * input.ignore_unknown_fields; two structured-output constraints at once are an
 * error naming both; a schema or choice list is handed on as compact JSON text so the
 * engine compiles one canonical text per schema (whatever the request's format). */
#include "codec_surface.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

/* Keys of a body (besides those codec_decode.c reads itself) that krill implements or
 * accepts with no effect. */
const char *const CODEC_SURFACE_KEYS[CS_COUNT] = {
    "response_format", "guided_json", "guided_regex", "guided_choice", "guided_grammar", "structured_outputs",
    "logprobs", "top_logprobs", "logit_bias", "user", "metadata", "store", "stream_options", "echo", "best_of",
    "suffix", "modalities"};

/* Known OpenAI / vLLM fields krill does not implement: refused with a reason unless null
 * (or listed in input.ignore_unknown_fields). */
static const struct {
    const char *key, *why;
} UNSUPPORTED[] = {
    {"tools", "tool calling is not supported"},
    {"tool_choice", "tool calling is not supported"},
    {"functions", "function calling is not supported"},
    {"function_call", "function calling is not supported"},
    {"parallel_tool_calls", "tool calling is not supported"},
    {"audio", "audio output is not supported"},
    {"prediction", "predicted outputs are not supported"},
    {"service_tier", "krill has no service tiers"},
    {"reasoning_effort", "reasoning models are not supported"},
    {"web_search_options", "web search is not supported"},
    {"guided_decoding_backend", "krill has one structured-output engine (llguidance)"},
    {"guided_whitespace_pattern", "a whitespace pattern is not supported"},
};

static bool in_list(const char *k, size_t kn, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (list[i] && strlen(list[i]) == kn && memcmp(list[i], k, kn) == 0) return true;
    return false;
}

/* The i-th key of an object in either format; false when it is not a string key. */
static bool key_at(codec_value_t obj, void **it, uint32_t *i, const char **k, size_t *kn) {
    if (obj.j) {
        if (!*it) return false;
        *k = json_object_iter_key(*it);
        *kn = strlen(*k);
        json_t *o = (json_t *)obj.j;
        *it = json_object_iter_next(o, *it);
        return true;
    }
    const msgpack_object_map *m = &obj.m->via.map;
    while (*i < m->size) {
        const msgpack_object *key = &m->ptr[(*i)++].key;
        if (key->type != MSGPACK_OBJECT_STR) continue;
        *k = key->via.str.ptr ? key->via.str.ptr : "";
        *kn = key->via.str.size;
        return true;
    }
    return false;
}

static bool has_more(codec_value_t obj, void *it, uint32_t i) {
    return obj.j ? it != NULL : i < obj.m->via.map.size;
}

/* One key krill does not read: refused unless ignored; "what" names the object. */
static void refuse_key(codec_walk_t *d, const char *k, size_t kn, const char *where, const char *what) {
    char field[96];
    bool printable = utf8_valid(k, kn) && !memchr(k, 0, kn) && kn <= 64;
    snprintf(field, sizeof field, "%s%.*s", where, printable ? (int)kn : 0, printable ? k : "");
    if (!printable) snprintf(field, sizeof field, "%s(a key that is not short UTF-8 text)", where);
    codec_value_fail(d, CODEC_ERR_UNSUPPORTED, field,
                     "krill does not implement this field of %s; remove it (docs/schema.md lists every accepted field)",
                     what);
}

bool codec_surface_unknown(codec_walk_t *d, codec_value_t body, const char *const *known, size_t n_known,
                           bool bare) {
    static const char *const ID_KEYS[] = {"custom_id", "id"};
    const codec_limits_t *lim = d->lim;
    void *it = body.j ? json_object_iter((json_t *)body.j) : NULL;
    uint32_t i = 0;
    const char *k;
    size_t kn;
    while (has_more(body, it, i)) {
        if (!key_at(body, &it, &i, &k, &kn)) continue;
        if (in_list(k, kn, known, n_known) || in_list(k, kn, CODEC_SURFACE_KEYS, CS_COUNT)) continue;
        if (bare && in_list(k, kn, ID_KEYS, 2)) continue;
        if (in_list(k, kn, lim->ignore_fields, lim->n_ignore_fields)) continue;
        size_t u = 0;
        while (u < sizeof UNSUPPORTED / sizeof *UNSUPPORTED &&
               !(strlen(UNSUPPORTED[u].key) == kn && memcmp(UNSUPPORTED[u].key, k, kn) == 0))
            u++;
        if (u == sizeof UNSUPPORTED / sizeof *UNSUPPORTED) {
            refuse_key(d, k, kn, "", "a request body");
            return false;
        }
        codec_value_t v = {0};
        if (body.j) v.j = json_object_getn(body.j, k, kn);
        else
            for (uint32_t q = 0; q < body.m->via.map.size; q++)
                if (body.m->via.map.ptr[q].key.type == MSGPACK_OBJECT_STR &&
                    body.m->via.map.ptr[q].key.via.str.size == kn &&
                    memcmp(body.m->via.map.ptr[q].key.via.str.ptr, k, kn) == 0)
                    v.m = &body.m->via.map.ptr[q].val;
        if (!codec_value_present(v)) continue; /* null: not given */
        codec_value_fail(d, CODEC_ERR_UNSUPPORTED, UNSUPPORTED[u].key,
                         "%s; remove the field (or list it in input.ignore_unknown_fields to have it ignored)",
                         UNSUPPORTED[u].why);
        return false;
    }
    return true;
}

/* Keys of a small object other than the known ones -> unsupported. */
static bool only_keys(codec_walk_t *d, codec_value_t obj, const char *const *keys, size_t n, const char *where,
                      const char *what) {
    void *it = obj.j ? json_object_iter((json_t *)obj.j) : NULL;
    uint32_t i = 0;
    const char *k;
    size_t kn;
    while (has_more(obj, it, i)) {
        if (!key_at(obj, &it, &i, &k, &kn)) continue;
        if (in_list(k, kn, keys, n)) continue;
        refuse_key(d, k, kn, where, what);
        return false;
    }
    return true;
}

bool codec_surface_envelope(codec_walk_t *d, codec_value_t top, const char *const *known, size_t n_known) {
    return only_keys(d, top, known, n_known, "", "a Batch API line (custom_id, method, url, body)");
}

bool codec_surface_message(codec_walk_t *d, codec_value_t m, size_t index) {
    static const char *const KEYS[] = {"role", "content", "name"};
    const codec_limits_t *lim = d->lim;
    char where[48], field[64];
    snprintf(where, sizeof where, "messages[%zu].", index);
    codec_value_t name[1];
    static const char *const NAME[] = {"name"};
    if (!codec_value_fields(d, m, NAME, 1, name, where)) return false;
    snprintf(field, sizeof field, "%sname", where);
    if (codec_value_present(name[0]) && !codec_value_get_str(d, name[0], field, NULL)) return false;
    void *it = m.j ? json_object_iter((json_t *)m.j) : NULL;
    uint32_t i = 0;
    const char *k;
    size_t kn;
    while (has_more(m, it, i)) {
        codec_value_t v = {0};
        if (m.j) v.j = json_object_iter_value(it);
        if (!key_at(m, &it, &i, &k, &kn)) continue;
        if (m.m) v.m = &m.m->via.map.ptr[i - 1].val; /* key_at stepped past this key */
        if (in_list(k, kn, KEYS, 3) || in_list(k, kn, lim->ignore_fields, lim->n_ignore_fields)) continue;
        if (!codec_value_present(v)) continue; /* "tool_calls": null in a dumped assistant message */
        refuse_key(d, k, kn, where, "a message (role, content, name)");
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- structured outputs */

/* Compact JSON text of a value (an object, or an array of strings), copied into the
 * request's storage. */
static const char *compact_json(codec_walk_t *d, codec_value_t v, const char *field, size_t *len) {
    char err[160];
    json_t *owned = NULL;
    const json_t *j = v.j;
    if (!j) {
        owned = codec_convert_value_to_json(v.m, err, sizeof err);
        if (!owned) {
            codec_value_fail(d, CODEC_ERR_INVALID_VALUE, field, "has no JSON form: %s", err);
            return NULL;
        }
        j = owned;
    }
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(owned);
    if (!s) {
        codec_value_fail(d, CODEC_ERR_INTERNAL, field, "out of memory serializing it");
        return NULL;
    }
    size_t n = strlen(s);
    char *c = codec_value_alloc(d, n + 1, 1);
    if (c) memcpy(c, s, n + 1);
    free(s);
    *len = n;
    return c;
}

/* A JSON Schema: an object, or (string allowed) the text of one. */
static bool schema_value(codec_walk_t *d, codec_value_t v, const char *field, bool string_ok, const char **out,
                         size_t *len) {
    int t = codec_value_type(v);
    if (t == CODEC_VT_STR && string_ok) {
        size_t n;
        const char *s = codec_value_get_str(d, v, field, &n);
        if (!s) return false;
        json_error_t je;
        json_t *j = json_loadb(s, n, JSON_REJECT_DUPLICATES, &je);
        if (!j || !json_is_object(j)) {
            json_decref(j);
            if (j) codec_value_fail(d, CODEC_ERR_INVALID_VALUE, field, "must be the text of a JSON object (a JSON Schema)");
            else codec_value_fail(d, CODEC_ERR_INVALID_VALUE, field, "is not JSON (column %d: %s); send a JSON Schema",
                                  je.column, je.text);
            return false;
        }
        codec_value_t jv = {j, NULL};
        *out = compact_json(d, jv, field, len);
        json_decref(j);
        return *out != NULL;
    }
    if (t != CODEC_VT_OBJ) {
        codec_value_fail(d, CODEC_ERR_INVALID_TYPE, field, "expected %s, got %s",
                         string_ok ? "a JSON Schema object (or its text)" : "a JSON Schema object",
                         codec_value_type_name(t));
        return false;
    }
    *out = compact_json(d, v, field, len);
    return *out != NULL;
}

static bool nonempty_str(codec_walk_t *d, codec_value_t v, const char *field, const char **out, size_t *len) {
    *out = codec_value_get_str(d, v, field, len);
    if (!*out) return false;
    if (*len == 0) {
        codec_value_fail(d, CODEC_ERR_INVALID_VALUE, field, "must not be empty");
        return false;
    }
    return true;
}

static bool choice_list(codec_walk_t *d, codec_value_t v, const char *field, const char **out, size_t *len) {
    if (!codec_value_want(d, v, CODEC_VT_ARR, field, "an array of strings")) return false;
    size_t n = codec_value_len(v);
    if (n == 0) {
        codec_value_fail(d, CODEC_ERR_INVALID_VALUE, field, "must hold at least one choice");
        return false;
    }
    char f[96];
    for (size_t i = 0; i < n; i++) {
        snprintf(f, sizeof f, "%s[%zu]", field, i);
        if (!codec_value_get_str(d, codec_value_at(v, i), f, NULL)) return false;
    }
    *out = compact_json(d, v, field, len);
    return *out != NULL;
}

/* The constraint found so far (to name both when a second one comes). */
typedef struct {
    const char *field; /* static field name, NULL when none */
} constraint_t;

static bool set_constraint(codec_walk_t *d, constraint_t *c, const char *field, codec_grammar_t kind,
                           const char *text, size_t len) {
    codec_request_t *r = d->r;
    if (c->field) {
        codec_value_fail(d, CODEC_ERR_INVALID_VALUE, field,
                         "%s%s already constrains the output; give one structured-output constraint", d->prefix,
                         c->field);
        return false;
    }
    c->field = field;
    r->grammar_kind = kind;
    r->grammar = text;
    r->grammar_len = len;
    /* the field path with the walk's prefix, for the compiler's errors */
    size_t n = strlen(d->prefix) + strlen(field) + 1;
    char *p = codec_value_alloc(d, n, 1);
    if (!p) return false;
    snprintf(p, n, "%s%s", d->prefix, field);
    r->grammar_param = p;
    return true;
}

static const char *const RF_KEYS[] = {"type", "json_schema"};
static const char *const JS_KEYS[] = {"name", "schema", "strict", "description"};
static const char *const SO_KEYS[] = {"json", "regex", "choice", "grammar", "json_object"};


static bool response_format(codec_walk_t *d, codec_value_t v, constraint_t *c) {
    codec_value_t f[2], js[4];
    if (!codec_value_want(d, v, CODEC_VT_OBJ, "response_format", "an object")) return false;
    if (!codec_value_fields(d, v, RF_KEYS, 2, f, "response_format.")) return false;
    if (!only_keys(d, v, RF_KEYS, 2, "response_format.", "response_format")) return false;
    if (!codec_value_present(f[0])) {
        codec_value_fail(d, CODEC_ERR_MISSING_FIELD, "response_format.type", "give text, json_object or json_schema");
        return false;
    }
    const char *type = codec_value_get_str(d, f[0], "response_format.type", NULL);
    if (!type) return false;
    bool schema = strcmp(type, "json_schema") == 0;
    if (!schema && strcmp(type, "json_object") != 0 && strcmp(type, "text") != 0) {
        codec_value_fail(d, CODEC_ERR_INVALID_VALUE, "response_format.type", "must be text, json_object or json_schema");
        return false;
    }
    if (!schema && codec_value_present(f[1])) {
        codec_value_fail(d, CODEC_ERR_INVALID_VALUE, "response_format.json_schema",
                         "is given only with type json_schema");
        return false;
    }
    if (strcmp(type, "text") == 0) return true;
    if (!schema) return set_constraint(d, c, "response_format", CODEC_GRAMMAR_JSON_OBJECT, NULL, 0);
    if (!codec_value_present(f[1])) {
        codec_value_fail(d, CODEC_ERR_MISSING_FIELD, "response_format.json_schema",
                         "type json_schema needs json_schema {name, schema, strict}");
        return false;
    }
    if (!codec_value_want(d, f[1], CODEC_VT_OBJ, "response_format.json_schema", "an object")) return false;
    if (!codec_value_fields(d, f[1], JS_KEYS, 4, js, "response_format.json_schema.")) return false;
    if (!only_keys(d, f[1], JS_KEYS, 4, "response_format.json_schema.", "response_format.json_schema")) return false;
    size_t n;
    if (codec_value_present(js[0]) && !codec_value_get_str(d, js[0], "response_format.json_schema.name", &n)) return false;
    bool strict;
    if (codec_value_present(js[2]) && !codec_value_get_bool(d, js[2], "response_format.json_schema.strict", &strict))
        return false;
    if (codec_value_present(js[3]) && !codec_value_get_str(d, js[3], "response_format.json_schema.description", &n))
        return false;
    if (!codec_value_present(js[1])) {
        codec_value_fail(d, CODEC_ERR_MISSING_FIELD, "response_format.json_schema.schema", "give the JSON Schema object");
        return false;
    }
    const char *text;
    if (!schema_value(d, js[1], "response_format.json_schema.schema", false, &text, &n)) return false;
    return set_constraint(d, c, "response_format", CODEC_GRAMMAR_JSON_SCHEMA, text, n);
}

static bool structured_outputs(codec_walk_t *d, codec_value_t v, constraint_t *c) {
    static const char *const FIELDS[] = {"structured_outputs.json", "structured_outputs.regex",
                                         "structured_outputs.choice", "structured_outputs.grammar",
                                         "structured_outputs.json_object"};
    codec_value_t f[5];
    if (!codec_value_want(d, v, CODEC_VT_OBJ, "structured_outputs", "an object")) return false;
    if (!codec_value_fields(d, v, SO_KEYS, 5, f, "structured_outputs.")) return false;
    if (!only_keys(d, v, SO_KEYS, 5, "structured_outputs.", "structured_outputs")) return false;
    bool json_object = false;
    if (codec_value_present(f[4]) && !codec_value_get_bool(d, f[4], FIELDS[4], &json_object)) return false;
    const char *first = NULL;
    for (int i = 0; i < 5; i++) {
        if (i < 4 ? !codec_value_present(f[i]) : !json_object) continue;
        if (first) {
            codec_value_fail(d, CODEC_ERR_INVALID_VALUE, FIELDS[i],
                             "%s%s already constrains the output; give one of json, regex, choice, grammar",
                             d->prefix, first);
            return false;
        }
        first = FIELDS[i];
    }
    if (!first) {
        codec_value_fail(d, CODEC_ERR_INVALID_VALUE, "structured_outputs", "give one of json, regex, choice, grammar");
        return false;
    }
    const char *text = NULL;
    size_t n = 0;
    if (codec_value_present(f[0]))
        return schema_value(d, f[0], FIELDS[0], true, &text, &n) &&
               set_constraint(d, c, FIELDS[0], CODEC_GRAMMAR_JSON_SCHEMA, text, n);
    if (codec_value_present(f[1]))
        return nonempty_str(d, f[1], FIELDS[1], &text, &n) &&
               set_constraint(d, c, FIELDS[1], CODEC_GRAMMAR_REGEX, text, n);
    if (codec_value_present(f[2]))
        return choice_list(d, f[2], FIELDS[2], &text, &n) &&
               set_constraint(d, c, FIELDS[2], CODEC_GRAMMAR_CHOICE, text, n);
    if (codec_value_present(f[3]))
        return nonempty_str(d, f[3], FIELDS[3], &text, &n) && set_constraint(d, c, FIELDS[3], CODEC_GRAMMAR_LARK, text, n);
    return set_constraint(d, c, FIELDS[4], CODEC_GRAMMAR_JSON_OBJECT, NULL, 0);
}

/* ---------------------------------------------------------------- logit_bias */

/* A token id written as decimal digits (OpenAI's keys are strings): 0..INT32_MAX. */
static bool parse_id(const char *k, size_t n, int32_t *id) {
    if (n == 0 || n > 10) return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (k[i] < '0' || k[i] > '9') return false;
        v = v * 10 + (k[i] - '0');
    }
    if (v > INT32_MAX) return false;
    *id = (int32_t)v;
    return true;
}

static bool logit_bias(codec_walk_t *d, codec_value_t v) {
    codec_request_t *r = d->r;
    if (!codec_value_want(d, v, CODEC_VT_OBJ, "logit_bias", "an object of \"token id\": bias")) return false;
    size_t n = v.j ? json_object_size(v.j) : v.m->via.map.size;
    if (n > CODEC_MAX_BIAS) {
        codec_value_fail(d, CODEC_ERR_INVALID_VALUE, "logit_bias", "at most %d entries (got %zu)", CODEC_MAX_BIAS, n);
        return false;
    }
    if (n == 0) return true;
    int32_t *ids = codec_value_alloc(d, n * sizeof *ids, 8);
    float *bias = codec_value_alloc(d, n * sizeof *bias, 8);
    if (!ids || !bias) return false;
    void *it = v.j ? json_object_iter((json_t *)v.j) : NULL;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const char *k;
        size_t kn;
        codec_value_t val = {0};
        char kb[24];
        if (v.j) {
            k = json_object_iter_key(it);
            kn = strlen(k);
            val.j = json_object_iter_value(it);
            it = json_object_iter_next((json_t *)v.j, it);
        } else {
            const msgpack_object *key = &v.m->via.map.ptr[i].key;
            val.m = &v.m->via.map.ptr[i].val;
            if (key->type == MSGPACK_OBJECT_POSITIVE_INTEGER && key->via.u64 <= INT32_MAX) {
                kn = (size_t)snprintf(kb, sizeof kb, "%" PRIu64, key->via.u64);
                k = kb;
            } else if (key->type == MSGPACK_OBJECT_STR) {
                k = key->via.str.ptr ? key->via.str.ptr : "", kn = key->via.str.size;
            } else {
                k = "", kn = 0;
            }
        }
        if (!parse_id(k, kn, &ids[m])) {
            codec_value_fail(d, CODEC_ERR_INVALID_VALUE, "logit_bias",
                             "entry %zu: keys are token ids as decimal strings (\"50256\"), 0..2147483647", i);
            return false;
        }
        for (size_t q = 0; q < m; q++)
            if (ids[q] == ids[m]) {
                codec_value_fail(d, CODEC_ERR_INVALID_VALUE, "logit_bias", "token id %d is given twice", (int)ids[m]);
                return false;
            }
        double b;
        char f[48];
        snprintf(f, sizeof f, "logit_bias.%d", (int)ids[m]);
        if (!codec_value_get_num(d, val, f, -100, 100, false, &b)) return false;
        bias[m++] = (float)b;
    }
    r->bias_ids = ids;
    r->bias = bias;
    r->n_bias = (int)m;
    return true;
}

/* ---------------------------------------------------------------- the rest */

static bool logprobs(codec_walk_t *d, codec_value_t lp, codec_value_t top) {
    codec_request_t *r = d->r;
    if (r->kind == CODEC_KIND_COMPLETION) {
        if (codec_value_present(top)) {
            codec_value_fail(d, CODEC_ERR_UNSUPPORTED, "top_logprobs",
                             "/v1/completions takes logprobs: N (0..%d alternatives per token)",
                             CODEC_MAX_LOGPROBS_COMPLETION);
            return false;
        }
        if (!codec_value_present(lp)) return true;
        int64_t k;
        if (!codec_value_get_int(d, lp, "logprobs", 0, CODEC_MAX_LOGPROBS_COMPLETION, &k)) return false;
        r->logprobs = true;
        r->top_logprobs = (int)k;
        return true;
    }
    if (codec_value_present(lp) && !codec_value_get_bool(d, lp, "logprobs", &r->logprobs)) return false;
    if (!codec_value_present(top)) return true;
    int64_t k;
    if (!codec_value_get_int(d, top, "top_logprobs", 0, CODEC_MAX_TOP_LOGPROBS_CHAT, &k)) return false;
    if (!r->logprobs) {
        codec_value_fail(d, CODEC_ERR_INVALID_VALUE, "top_logprobs", "needs logprobs: true");
        return false;
    }
    r->top_logprobs = (int)k;
    return true;
}

/* A boolean accepted only as false (absent/null too); true is unsupported with why. */
static bool false_only(codec_walk_t *d, codec_value_t v, const char *field, const char *why) {
    bool b = false;
    if (!codec_value_present(v)) return true;
    if (!codec_value_get_bool(d, v, field, &b)) return false;
    if (b) codec_value_fail(d, CODEC_ERR_UNSUPPORTED, field, "%s", why);
    return !b;
}

/* Fields with no effect on the output, or accepted only at their no-op value. */
static bool no_effect(codec_walk_t *d, codec_value_t *f) {
    size_t n;
    if (codec_value_present(f[CS_USER]) && !codec_value_get_str(d, f[CS_USER], "user", &n)) return false;
    if (codec_value_present(f[CS_METADATA])) {
        codec_value_t m = f[CS_METADATA];
        if (!codec_value_want(d, m, CODEC_VT_OBJ, "metadata", "an object of strings")) return false;
        void *it = m.j ? json_object_iter((json_t *)m.j) : NULL;
        size_t cnt = m.j ? json_object_size(m.j) : m.m->via.map.size;
        for (size_t i = 0; i < cnt; i++) {
            codec_value_t val = {0};
            if (m.j) val.j = json_object_iter_value(it), it = json_object_iter_next((json_t *)m.j, it);
            else val.m = &m.m->via.map.ptr[i].val;
            if (codec_value_type(val) != CODEC_VT_STR) {
                codec_value_fail(d, CODEC_ERR_INVALID_TYPE, "metadata", "values must be strings, got %s",
                                 codec_value_type_name(codec_value_type(val)));
                return false;
            }
        }
    }
    if (!false_only(d, f[CS_STORE], "store", "krill stores nothing but the result it publishes; remove it or send false"))
        return false;
    if (codec_value_present(f[CS_STREAM_OPTIONS])) {
        codec_value_fail(d, CODEC_ERR_UNSUPPORTED, "stream_options", "streaming is not supported; remove it");
        return false;
    }
    if (!false_only(d, f[CS_ECHO], "echo", "echoing the prompt is not supported; remove it")) return false;
    if (codec_value_present(f[CS_BEST_OF])) {
        int64_t k;
        if (!codec_value_want(d, f[CS_BEST_OF], CODEC_VT_INT, "best_of", "an integer")) return false;
        if (codec_value_type(f[CS_BEST_OF]) == CODEC_VT_UINT || codec_value_int(f[CS_BEST_OF]) > 1) {
            codec_value_fail(d, CODEC_ERR_UNSUPPORTED, "best_of", "only best_of = 1 is supported; use n for choices");
            return false;
        }
        if (!codec_value_get_int(d, f[CS_BEST_OF], "best_of", 1, 1, &k)) return false;
    }
    if (codec_value_present(f[CS_SUFFIX])) {
        if (!codec_value_get_str(d, f[CS_SUFFIX], "suffix", &n)) return false;
        if (n) {
            codec_value_fail(d, CODEC_ERR_UNSUPPORTED, "suffix", "insertion (a suffix) is not supported; remove it");
            return false;
        }
    }
    if (codec_value_present(f[CS_MODALITIES])) {
        codec_value_t m = f[CS_MODALITIES];
        if (!codec_value_want(d, m, CODEC_VT_ARR, "modalities", "an array of strings")) return false;
        for (size_t i = 0; i < codec_value_len(m); i++) {
            const char *s = codec_value_get_str(d, codec_value_at(m, i), "modalities", NULL);
            if (!s) return false;
            if (strcmp(s, "text") != 0) {
                codec_value_fail(d, CODEC_ERR_UNSUPPORTED, "modalities", "only text output is supported: [\"text\"]");
                return false;
            }
        }
    }
    return true;
}

void codec_surface_decode(codec_walk_t *d, codec_value_t body) {
    codec_value_t f[CS_COUNT];
    if (!codec_value_fields(d, body, CODEC_SURFACE_KEYS, CS_COUNT, f, "")) return;
    constraint_t c = {NULL};
    if (codec_value_present(f[CS_RESPONSE_FORMAT]) && !response_format(d, f[CS_RESPONSE_FORMAT], &c)) return;
    const char *text;
    size_t n;
    if (codec_value_present(f[CS_GUIDED_JSON]) &&
        !(schema_value(d, f[CS_GUIDED_JSON], "guided_json", true, &text, &n) &&
          set_constraint(d, &c, "guided_json", CODEC_GRAMMAR_JSON_SCHEMA, text, n)))
        return;
    if (codec_value_present(f[CS_GUIDED_REGEX]) &&
        !(nonempty_str(d, f[CS_GUIDED_REGEX], "guided_regex", &text, &n) &&
          set_constraint(d, &c, "guided_regex", CODEC_GRAMMAR_REGEX, text, n)))
        return;
    if (codec_value_present(f[CS_GUIDED_CHOICE]) &&
        !(choice_list(d, f[CS_GUIDED_CHOICE], "guided_choice", &text, &n) &&
          set_constraint(d, &c, "guided_choice", CODEC_GRAMMAR_CHOICE, text, n)))
        return;
    if (codec_value_present(f[CS_GUIDED_GRAMMAR]) &&
        !(nonempty_str(d, f[CS_GUIDED_GRAMMAR], "guided_grammar", &text, &n) &&
          set_constraint(d, &c, "guided_grammar", CODEC_GRAMMAR_LARK, text, n)))
        return;
    if (codec_value_present(f[CS_STRUCTURED_OUTPUTS])) {
        /* its own inner field names the constraint; conflicts name the outer fields */
        constraint_t inner = {NULL};
        if (!structured_outputs(d, f[CS_STRUCTURED_OUTPUTS], &inner)) return;
        if (c.field) {
            codec_value_fail(d, CODEC_ERR_INVALID_VALUE, "structured_outputs",
                             "%s%s already constrains the output; give one structured-output constraint", d->prefix,
                             c.field);
            return;
        }
    }
    if (!logprobs(d, f[CS_LOGPROBS], f[CS_TOP_LOGPROBS])) return;
    if (codec_value_present(f[CS_LOGIT_BIAS]) && !logit_bias(d, f[CS_LOGIT_BIAS])) return;
    no_effect(d, f);
}
