/* chat.c — OpenAI-style messages -> prompt text, without a Jinja interpreter.
 *
 * The family is detected once from substrings of tokenizer.chat_template, then a
 * family is rendered by C code driven by a small style table:
 *   - "header" families (ChatML, Llama-3, Zephyr): every message becomes
 *     open + role + close + content + end; they differ only in the strings, in
 *     whether content is trimmed and whether BOS opens the text.
 *   - "[INST]" families (Llama-2, Mistral variants): user/assistant must alternate,
 *     an optional first system message is folded into a user turn.
 *   - Gemma (<start_of_turn>role ... <end_of_turn>): its own renderer (render_gemma);
 *     also chosen for a gemma3 file that carries no template.
 *   - Qwen3: ChatML with its <think> handling of assistant turns (render_qwen3).
 * Rules kept:
 *   - the output is byte-for-byte what the model's Jinja template renders (checked
 *     against jinja2 / transformers vectors in tests/data/chat); where a template
 *     would silently drop a message we fail instead (docs/chat.md lists each case);
 *   - "trim"/"strip" follow Python's str.strip(): Unicode whitespace, not isspace();
 *   - message content is copied verbatim: template-like text in content
 *     ("<|im_start|>") is not escaped, exactly as Jinja does not escape it; instead
 *     chat_render_spans reports where content lies, so that the engine tokenizes it
 *     as text and only the template's own markup as special tokens;
 *   - the role "developer" is treated as "system" in every family;
 *   - a loaded chat_t is immutable, so chat_render is thread-safe. */
#include "chat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "log.h"
#include "utf8.h"

typedef enum { ROLE_SYSTEM = 0, ROLE_USER, ROLE_ASSISTANT, ROLE_TOOL } role_t;
static const char *const role_names[] = {"system", "user", "assistant", "tool"};

typedef enum { FAM_CHATML = 0, FAM_LLAMA3, FAM_LLAMA2, FAM_MISTRAL, FAM_ZEPHYR, FAM_GEMMA } family_t;
static const char *const family_names[] = {"chatml", "llama3", "llama2", "mistral", "zephyr", "gemma"};

/* Header families: open + role + close + content(+trim) + [eos] + end. */
typedef struct {
    const char *variant;
    family_t family;
    const char *open, *close, *end; /* around the role name; after the content */
    bool eos_before_end;            /* zephyr: content + eos_token + "\n" */
    bool trim;                      /* llama3: message['content'] | trim */
    bool bos_first;                 /* llama3: bos_token before the first message */
    bool allow_tool;                /* role "tool" rendered verbatim as a turn */
    bool qwen_tool;                 /* qwen2.5: tool results grouped in a user turn */
    const char *gen;                /* generation prompt */
} header_style_t;

/* [INST] families. The system message (only allowed first) goes into a user turn. */
typedef enum {
    SYS_NONE = 0,   /* no system role: a system message is an error */
    SYS_LLAMA2,     /* "<<SYS>>\n" + sys + "\n<</SYS>>\n\n" + content of the first user turn */
    SYS_FIRST_USER, /* sys + "\n\n" + content of the first user turn */
    SYS_LAST_USER,  /* sys + "\n\n" + content, only when the last message is a user turn */
} sys_place_t;

typedef struct {
    const char *variant;
    family_t family;
    bool bos_once;                 /* bos_token opens the text (mistral) */
    bool bos_per_user;             /* bos_token before every user turn (llama2) */
    const char *user_open, *user_close;
    bool strip_user;               /* llama2: content.strip() (system block included) */
    const char *asst_open, *asst_pre_eos, *asst_post_eos;
    bool strip_assistant;
    sys_place_t sys;
} inst_style_t;

static const header_style_t HEADER_STYLES[] = {
    {"chatml", FAM_CHATML, "<|im_start|>", "\n", "<|im_end|>\n", false, false, false, true, false,
     "<|im_start|>assistant\n"},
    {"qwen2.5", FAM_CHATML, "<|im_start|>", "\n", "<|im_end|>\n", false, false, false, true, true,
     "<|im_start|>assistant\n"},
    {"llama3", FAM_LLAMA3, "<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>", false, true,
     true, true, false, "<|start_header_id|>assistant<|end_header_id|>\n\n"},
    {"zephyr", FAM_ZEPHYR, "<|", "|>\n", "\n", true, false, false, false, false, "<|assistant|>\n"},
};

static const inst_style_t INST_STYLES[] = {
    /* meta-llama/Llama-2-*-chat-hf */
    {"llama2", FAM_LLAMA2, false, true, "[INST] ", " [/INST]", true, " ", " ", "", true, SYS_LLAMA2},
    /* Mistral-7B-Instruct-v0.1 (first release): assistant content + eos + ' ' */
    {"mistral-v1", FAM_MISTRAL, true, false, "[INST] ", " [/INST]", false, "", "", " ", false, SYS_NONE},
    /* Mixtral-8x7B-Instruct-v0.1, Mistral-7B-Instruct-v0.2 (first release) */
    {"mistral-v2", FAM_MISTRAL, true, false, "[INST] ", " [/INST]", false, "", "", "", false, SYS_NONE},
    /* Mistral-7B-Instruct-v0.1/v0.2, Mixtral (updated, optional system message) */
    {"mistral-v2-system", FAM_MISTRAL, true, false, " [INST] ", " [/INST]", false, " ", "", "", false,
     SYS_FIRST_USER},
    /* Mistral-7B-Instruct-v0.3 (without tools) */
    {"mistral-v3", FAM_MISTRAL, true, false, "[INST] ", "[/INST]", false, " ", "", "", true, SYS_LAST_USER},
};

struct chat {
    const header_style_t *hs; /* exactly one of hs / is / gemma is set */
    const inst_style_t *is;
    bool gemma;               /* Gemma 2/3: render_gemma */
    bool qwen3;               /* with hs = qwen2.5's: render_qwen3 */
    bool fallback;
    char *bos, *eos;
    char *default_system; /* chatml: inserted when messages[0] is not a system message */
};

/* ---------------------------------------------------------------- helpers */

/* Python's str.isspace() (what str.strip() and Jinja's |trim remove). */
static bool py_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* The rendering: the text and the byte ranges of message content in it (sorted,
 * touching ranges merged), for chat_render_spans. */
typedef struct {
    buf_t b;
    tokenizer_span_t *spans;
    size_t n, cap;
    bool oom;
} chat_out_t;

static void out_free(chat_out_t *o) {
    buf_free(&o->b);
    free(o->spans);
}

/* Marks [start, end) of the text as content (ranges come in increasing order). */
static void out_mark(chat_out_t *o, size_t start, size_t end) {
    if (end <= start) return;
    if (o->n && o->spans[o->n - 1].off + o->spans[o->n - 1].len == start) {
        o->spans[o->n - 1].len += end - start;
        return;
    }
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 8;
        tokenizer_span_t *p = realloc(o->spans, cap * sizeof *p);
        if (!p) {
            o->oom = true;
            return;
        }
        o->spans = p;
        o->cap = cap;
    }
    o->spans[o->n++] = (tokenizer_span_t){start, end - start};
}

/* Appends template markup. */
static void out_markup(chat_out_t *o, const char *s) { buf_puts(&o->b, s); }

/* The part [*start, *end) of s[0..n) left by Python's str.strip(); false when nothing
 * is left. Content is valid UTF-8 (the codec and jansson check it); an invalid byte is
 * never whitespace. */
static bool strip_range(const char *s, size_t n, size_t *startp, size_t *endp) {
    size_t start = 0, end = 0, i = 0;
    bool seen = false;
    while (i < n) {
        uint32_t cp;
        size_t l = utf8_decode(s + i, n - i, &cp);
        if (l == 0) { /* an invalid byte: never whitespace */
            l = 1;
            cp = UINT32_MAX;
        }
        if (!py_isspace(cp)) {
            if (!seen) start = i;
            seen = true;
            end = i + l;
        }
        i += l;
    }
    *startp = start;
    *endp = end;
    return seen;
}

/* Appends message content (stripped when strip) and marks it. */
static void chat_put_content(chat_out_t *o, const char *s, bool strip) {
    size_t at = o->b.len, start = 0, end = strlen(s);
    if (strip && !strip_range(s, end, &start, &end)) return;
    buf_append(&o->b, s + start, end - start);
    out_mark(o, at, o->b.len);
}

/* Appends the text of src (markup and content; stripped when strip) with its
 * content marks. */
static void out_put(chat_out_t *o, const chat_out_t *src, bool strip) {
    size_t start = 0, end = src->b.len;
    if (src->oom) o->oom = true;
    if (src->b.oom) o->b.oom = true;
    if (!src->b.len || (strip && !strip_range(src->b.data, src->b.len, &start, &end))) return;
    size_t base = o->b.len;
    buf_append(&o->b, src->b.data + start, end - start);
    for (size_t i = 0; i < src->n; i++) {
        size_t s = src->spans[i].off, e = s + src->spans[i].len;
        if (s < start) s = start;
        if (e > end) e = end;
        if (s < e) out_mark(o, base + (s - start), base + (e - start));
    }
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    if (p) memcpy(p, s, n + 1);
    return p;
}

/* ---------------------------------------------------------------- detection */

/* If the template has a literal default system turn "<|im_start|>system\n<text><|im_end|>"
 * inside one Jinja string (SmolLM2, Qwen2, Qwen2.5), returns <text> unescaped (malloc'd).
 * "<|im_start|>system\n' + messages[0]['content']" is not a literal and is skipped. */
static char *find_default_system(const char *t, bool *oom) {
    static const char head[] = "<|im_start|>system";
    *oom = false;
    for (const char *p = strstr(t, head); p; p = strstr(p + 1, head)) {
        if (p == t) continue;
        char quote = p[-1];
        if (quote != '\'' && quote != '"') continue;
        const char *q = p + sizeof head - 1;
        if (*q == '\n') q++;
        else if (q[0] == '\\' && q[1] == 'n') q += 2;
        else continue;
        buf_t b = {0};
        bool ok = false;
        while (*q) {
            if (strncmp(q, "<|im_end|>", 10) == 0) { ok = true; break; }
            if (*q == quote) break; /* the string ends before <|im_end|>: not a literal turn */
            if (*q == '\\' && q[1]) {
                char c = q[1], o;
                switch (c) {
                case 'n': o = '\n'; break;
                case 't': o = '\t'; break;
                case 'r': o = '\r'; break;
                case '\\': case '\'': case '"': o = c; break;
                default: buf_append(&b, q, 2); q += 2; continue;
                }
                buf_append(&b, &o, 1);
                q += 2;
                continue;
            }
            buf_append(&b, q, 1);
            q++;
        }
        if (ok && b.len > 0 && !b.oom) return b.data;
        if (b.oom) *oom = true;
        buf_free(&b);
        if (*oom) return NULL;
    }
    return NULL;
}

static const header_style_t *header_style(const char *variant) {
    for (size_t i = 0; i < sizeof HEADER_STYLES / sizeof HEADER_STYLES[0]; i++)
        if (strcmp(HEADER_STYLES[i].variant, variant) == 0) return &HEADER_STYLES[i];
    CHECK(0);
    return NULL;
}
static const inst_style_t *inst_style(const char *variant) {
    for (size_t i = 0; i < sizeof INST_STYLES / sizeof INST_STYLES[0]; i++)
        if (strcmp(INST_STYLES[i].variant, variant) == 0) return &INST_STYLES[i];
    CHECK(0);
    return NULL;
}

static bool has(const char *t, const char *s) { return strstr(t, s) != NULL; }

/* Picks the style for a template (NULL or "" -> ChatML fallback). Returns true when
 * the template was recognised. */
static bool detect(chat_t *c, const char *t) {
    if (!t || !*t) {
        c->hs = header_style("chatml");
        return false;
    }
    if (has(t, "<start_of_turn>") && has(t, "<end_of_turn>")) {
        c->gemma = true;
        return true;
    }
    if (has(t, "<|im_start|>") && has(t, "</think>") && has(t, "reasoning_content")) {
        c->hs = header_style("qwen2.5");
        c->qwen3 = true;
        return true;
    }
    if (has(t, "<|start_header_id|>") && has(t, "<|eot_id|>")) {
        c->hs = header_style("llama3");
        return true;
    }
    if (has(t, "<|im_start|>")) {
        c->hs = header_style(has(t, "<tool_response>") ? "qwen2.5" : "chatml");
        return true;
    }
    if (has(t, "<|user|>") && has(t, "<|assistant|>")) {
        c->hs = header_style("zephyr");
        return true;
    }
    if (has(t, "[INST]")) {
        if (has(t, "<<SYS>>")) c->is = inst_style("llama2");
        else if (has(t, "[AVAILABLE_TOOLS]") || has(t, "loop.last and system_message"))
            c->is = inst_style("mistral-v3");
        else if (has(t, "system_message")) c->is = inst_style("mistral-v2-system");
        else if (has(t, "eos_token + ' '")) c->is = inst_style("mistral-v1");
        else c->is = inst_style("mistral-v2");
        return true;
    }
    c->hs = header_style("chatml");
    return false;
}

/* ---------------------------------------------------------------- load */

chat_t *chat_load_template(const char *tmpl, const char *bos, const char *eos, char *err, size_t errlen) {
    chat_t *c = calloc(1, sizeof *c);
    if (!c) goto oom;
    c->bos = xstrdup(bos ? bos : "");
    c->eos = xstrdup(eos ? eos : "");
    if (!c->bos || !c->eos) goto oom;
    c->fallback = !detect(c, tmpl);
    if (c->fallback) {
        LOG_WARN("chat template not recognised; using ChatML", "template=%s",
                 !tmpl ? "(none)" : !*tmpl ? "(empty)" : "(unknown family)");
    } else {
        if (c->hs && c->hs->family == FAM_CHATML) {
            bool oom = false;
            c->default_system = find_default_system(tmpl, &oom);
            if (oom) goto oom;
        }
        /* Recognised family, but template logic we do not model (Llama-3.1+ date
         * header, Qwen3 thinking blocks): render the base family and say so. */
        static const char *const inexact[] = {"Cutting Knowledge Date", "strftime_now", "<think>"};
        for (size_t i = 0; i < sizeof inexact / sizeof inexact[0]; i++)
            if (has(tmpl, inexact[i]) && !c->qwen3) {
                LOG_WARN("chat template has parts krill does not render; prompts may differ from the "
                         "model's Jinja template", "variant=%s feature=\"%s\"", chat_variant_name(c), inexact[i]);
                break;
            }
    }
    return c;
oom:
    err_set(err, errlen, "chat: out of memory loading the chat template");
    chat_free(c);
    return NULL;
}

/* Copies token `id` of tokenizer.ggml.tokens into a malloc'd string ("" when absent). */
static char *token_str(const gguf_t *g, const char *id_key) {
    uint64_t id;
    const gguf_kv_t *toks = gguf_find(g, "tokenizer.ggml.tokens");
    if (gguf_get_u64(g, id_key, &id, NULL, 0) != 0 || !toks || toks->type != GGUF_VT_ARRAY ||
        toks->v.arr.type != GGUF_VT_STRING || id >= gguf_arr_len(toks))
        return xstrdup("");
    gguf_str_t s = gguf_arr_str(g, toks, id);
    char *p = malloc(s.len + 1);
    if (p) gguf_str_copy(s, p, s.len + 1);
    return p;
}

chat_t *chat_load(const gguf_t *g, char *err, size_t errlen) {
    char *tmpl = NULL, *bos = NULL, *eos = NULL;
    chat_t *c = NULL;
    if (!g) {
        err_set(err, errlen, "chat: no GGUF file given");
        return NULL;
    }
    gguf_str_t s;
    if (gguf_get_str(g, "tokenizer.chat_template", &s, NULL, 0) == 0) {
        tmpl = malloc(s.len + 1);
        if (!tmpl) goto oom;
        gguf_str_copy(s, tmpl, s.len + 1);
        if (strlen(tmpl) != s.len) tmpl[0] = '\0'; /* an embedded NUL: treat as unknown */
    }
    bos = token_str(g, "tokenizer.ggml.bos_token_id");
    eos = token_str(g, "tokenizer.ggml.eos_token_id");
    if (!bos || !eos) goto oom;
    if ((!tmpl || !*tmpl) && gguf_get_str(g, "general.architecture", &s, NULL, 0) == 0 && gguf_str_eq(s, "gemma3")) {
        /* Gemma 3 GGUFs made from the base checkpoints carry no template; the family's
         * turn format is the one the model was trained with (docs/chat.md) */
        free(tmpl);
        tmpl = xstrdup("<start_of_turn><end_of_turn>");
        if (!tmpl) goto oom;
    }
    c = chat_load_template(tmpl, bos, eos, err, errlen);
    free(tmpl);
    free(bos);
    free(eos);
    return c;
oom:
    err_set(err, errlen, "chat: out of memory reading the chat template");
    free(tmpl);
    free(bos);
    free(eos);
    return NULL;
}

void chat_free(chat_t *c) {
    if (!c) return;
    free(c->bos);
    free(c->eos);
    free(c->default_system);
    free(c);
}

const char *chat_family_name(const chat_t *c) {
    return family_names[c->gemma ? FAM_GEMMA : c->hs ? c->hs->family : c->is->family];
}
const char *chat_variant_name(const chat_t *c) {
    return c->gemma ? "gemma" : c->qwen3 ? "qwen3" : c->hs ? c->hs->variant : c->is->variant;
}
bool chat_is_fallback(const chat_t *c) { return c->fallback; }
const char *chat_default_system(const chat_t *c) { return c->default_system; }

/* ---------------------------------------------------------------- render */

static int parse_roles(const engine_chat_msg_t *msgs, size_t n, role_t *roles, char *err, size_t errlen) {
    if (!msgs || n == 0) {
        err_set(err, errlen, "chat: the message list is empty; send at least one message");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r) {
            err_set(err, errlen, "chat: messages[%zu] has no role; set role to system, user, assistant, tool or developer", i);
            return -1;
        }
        if (!msgs[i].content) {
            err_set(err, errlen, "chat: messages[%zu] (%s) has no content; send a string (it may be empty)", i, r);
            return -1;
        }
        if (strcmp(r, "developer") == 0) roles[i] = ROLE_SYSTEM;
        else {
            int k = -1;
            for (int j = 0; j < 4; j++)
                if (strcmp(r, role_names[j]) == 0) k = j;
            if (k < 0) {
                err_set(err, errlen, "chat: messages[%zu] has unknown role '%.40s'; use system, user, assistant, tool or developer", i, r);
                return -1;
            }
            roles[i] = (role_t)k;
        }
    }
    return 0;
}

static int render_header(const chat_t *c, const engine_chat_msg_t *msgs, const role_t *roles, size_t n,
                         bool gen, chat_out_t *o, char *err, size_t errlen) {
    const header_style_t *s = c->hs;
    if (s->bos_first) out_markup(o, c->bos);
    if (c->default_system && roles[0] != ROLE_SYSTEM) {
        out_markup(o, s->open);
        out_markup(o, "system");
        out_markup(o, s->close);
        out_markup(o, c->default_system);
        out_markup(o, s->end);
    }
    for (size_t i = 0; i < n; i++) {
        if (roles[i] == ROLE_TOOL && !s->allow_tool) {
            err_set(err, errlen, "chat: messages[%zu]: the %s template has no tool role; use system, user or assistant",
                    i, s->variant);
            return -1;
        }
        if (roles[i] == ROLE_TOOL && s->qwen_tool) {
            /* consecutive tool results share one user turn */
            if (i == 0 || roles[i - 1] != ROLE_TOOL) out_markup(o, "<|im_start|>user");
            out_markup(o, "\n<tool_response>\n");
            chat_put_content(o, msgs[i].content, false);
            out_markup(o, "\n</tool_response>");
            if (i + 1 == n || roles[i + 1] != ROLE_TOOL) out_markup(o, "<|im_end|>\n");
            continue;
        }
        out_markup(o, s->open);
        out_markup(o, role_names[roles[i]]);
        out_markup(o, s->close);
        chat_put_content(o, msgs[i].content, s->trim);
        if (s->eos_before_end) out_markup(o, c->eos);
        out_markup(o, s->end);
    }
    if (gen) out_markup(o, s->gen);
    return 0;
}

/* Gemma's template: bos; a first system message's content + "\n\n" opens the first
 * turn; then turns must alternate: even positions user, odd ones any other role;
 * "<start_of_turn>" + role ("assistant" -> "model") + "\n" + content|trim +
 * "<end_of_turn>\n"; the generation prompt is "<start_of_turn>model\n". */
static int render_gemma(const chat_t *c, const engine_chat_msg_t *msgs, const role_t *roles, size_t n, bool gen,
                        chat_out_t *o, char *err, size_t errlen) {
    size_t first = roles[0] == ROLE_SYSTEM ? 1 : 0;
    for (size_t i = first; i < n; i++)
        if ((roles[i] == ROLE_USER) != ((i - first) % 2 == 0)) {
            err_set(err, errlen, "chat: messages[%zu]: the gemma template needs roles alternating user/assistant/"
                    "user/... (after an optional first system message); got '%s'", i, role_names[roles[i]]);
            return -1;
        }
    out_markup(o, c->bos);
    for (size_t i = first; i < n; i++) {
        out_markup(o, "<start_of_turn>");
        out_markup(o, roles[i] == ROLE_ASSISTANT ? "model" : role_names[roles[i]]);
        out_markup(o, "\n");
        if (first && i == first) {
            chat_put_content(o, msgs[0].content, false);
            out_markup(o, "\n\n");
        }
        chat_put_content(o, msgs[i].content, true);
        out_markup(o, "<end_of_turn>\n");
    }
    if (gen) out_markup(o, "<start_of_turn>model\n");
    return 0;
}

/* True when s starts with p / ends with q (byte strings). */
static bool starts(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }
static bool ends(const char *s, const char *q) {
    size_t a = strlen(s), b = strlen(q);
    return a >= b && memcmp(s + a - b, q, b) == 0;
}

/* Appends s[0..n) with '\n' removed from the left (l) and/or right (r), as content. */
static void put_nl_stripped(chat_out_t *o, const char *s, size_t n, bool l, bool r) {
    while (l && n && *s == '\n') s++, n--;
    while (r && n && s[n - 1] == '\n') n--;
    size_t at = o->b.len;
    buf_append(&o->b, s, n);
    out_mark(o, at, o->b.len);
}

/* Qwen3's template without tools (krill messages carry no tool calls): ChatML turns;
 * an assistant turn after the last real user query (one not wrapped in
 * <tool_response>) shows its reasoning as "<think>\n" + r + "\n</think>\n\n" when
 * it is the last message or has reasoning (the text before "</think>" in its content);
 * tool results are grouped in user turns as qwen2.5's; no enable_thinking flag: the
 * generation prompt is "<|im_start|>assistant\n" (thinking on, the template's default). */
static int render_qwen3(const engine_chat_msg_t *msgs, const role_t *roles, size_t n, bool gen, chat_out_t *o) {
    size_t last_query = n - 1;
    for (size_t k = n; k-- > 0;)
        if (roles[k] == ROLE_USER &&
            !(starts(msgs[k].content, "<tool_response>") && ends(msgs[k].content, "</tool_response>"))) {
            last_query = k;
            break;
        }
    for (size_t i = 0; i < n; i++) {
        const char *m = msgs[i].content;
        if (roles[i] == ROLE_TOOL) {
            if (i == 0 || roles[i - 1] != ROLE_TOOL) out_markup(o, "<|im_start|>user");
            out_markup(o, "\n<tool_response>\n");
            chat_put_content(o, m, false);
            out_markup(o, "\n</tool_response>");
            if (i + 1 == n || roles[i + 1] != ROLE_TOOL) out_markup(o, "<|im_end|>\n");
            continue;
        }
        out_markup(o, "<|im_start|>");
        out_markup(o, role_names[roles[i]]);
        out_markup(o, "\n");
        if (roles[i] != ROLE_ASSISTANT) {
            chat_put_content(o, m, false);
            out_markup(o, "<|im_end|>\n");
            continue;
        }
        /* content.split('</think>'): reasoning = first part after its last <think>, the
         * answer = the last part */
        const char *close = strstr(m, "</think>"), *answer = m, *r = "";
        size_t rlen = 0;
        bool split = close != NULL;
        if (split) {
            const char *last = close;
            for (const char *p = close; (p = strstr(p + 1, "</think>"));) last = p;
            answer = last + 8;
            r = m;
            for (const char *p = m; (p = strstr(p, "<think>")) && p < close; p += 7) r = p + 7;
            rlen = (size_t)(close - r);
            while (rlen && r[rlen - 1] == '\n') rlen--; /* rstrip('\n') then lstrip('\n') */
            while (rlen && *r == '\n') r++, rlen--;
        }
        if (i > last_query && (i + 1 == n || rlen > 0)) {
            out_markup(o, "<think>\n");
            put_nl_stripped(o, r, rlen, true, true);
            out_markup(o, "\n</think>\n\n");
            put_nl_stripped(o, answer, strlen(answer), true, false);
        } else {
            put_nl_stripped(o, answer, strlen(answer), split, false);
        }
        out_markup(o, "<|im_end|>\n");
    }
    if (gen) out_markup(o, "<|im_start|>assistant\n");
    return 0;
}

static int render_inst(const chat_t *c, const engine_chat_msg_t *msgs, const role_t *roles, size_t n,
                       chat_out_t *o, char *err, size_t errlen) {
    const inst_style_t *s = c->is;
    size_t first = 0;
    const char *sys = NULL;
    if (roles[0] == ROLE_SYSTEM) {
        if (s->sys == SYS_NONE) {
            err_set(err, errlen, "chat: messages[0]: the %s template has no system role; "
                    "put the instructions in the first user message", s->variant);
            return -1;
        }
        sys = msgs[0].content;
        first = 1;
    }
    for (size_t i = first; i < n; i++) {
        bool want_user = (i - first) % 2 == 0;
        if (roles[i] == ROLE_SYSTEM || roles[i] == ROLE_TOOL) {
            err_set(err, errlen, "chat: messages[%zu]: the %s template accepts %suser and assistant "
                    "messages only; role '%s' is not allowed here", i, s->variant,
                    s->sys == SYS_NONE ? "" : "an optional first system message, then ", role_names[roles[i]]);
            return -1;
        }
        if ((roles[i] == ROLE_USER) != want_user) {
            err_set(err, errlen, "chat: messages[%zu]: the %s template needs roles alternating "
                    "user/assistant/user/... (after an optional first system message); got '%s'",
                    i, s->variant, role_names[roles[i]]);
            return -1;
        }
    }
    if (s->bos_once) out_markup(o, c->bos);
    for (size_t i = first; i < n; i++) {
        const char *content = msgs[i].content;
        if (roles[i] == ROLE_USER) {
            if (s->bos_per_user) out_markup(o, c->bos);
            out_markup(o, s->user_open);
            if (sys && ((s->sys == SYS_LLAMA2 || s->sys == SYS_FIRST_USER) ? i == first : i + 1 == n)) {
                if (s->sys == SYS_LLAMA2) {
                    chat_out_t t = {0}; /* .strip() applies to the whole block */
                    out_markup(&t, "<<SYS>>\n");
                    chat_put_content(&t, sys, false);
                    out_markup(&t, "\n<</SYS>>\n\n");
                    chat_put_content(&t, content, false);
                    out_put(o, &t, s->strip_user);
                    out_free(&t);
                } else {
                    chat_put_content(o, sys, false);
                    out_markup(o, "\n\n");
                    chat_put_content(o, content, false);
                }
            } else {
                chat_put_content(o, content, s->strip_user);
            }
            out_markup(o, s->user_close);
        } else {
            out_markup(o, s->asst_open);
            chat_put_content(o, content, s->strip_assistant);
            out_markup(o, s->asst_pre_eos);
            out_markup(o, c->eos);
            out_markup(o, s->asst_post_eos);
        }
    }
    return 0;
}

int chat_render_spans(const chat_t *c, const engine_chat_msg_t *msgs, size_t n_msgs, bool add_generation_prompt,
                      char **out, tokenizer_span_t **content, size_t *n_content, char *err, size_t errlen) {
    CHECK(c && out && (!content || n_content));
    *out = NULL;
    if (content) {
        *content = NULL;
        *n_content = 0;
    }
    role_t stack_roles[64];
    role_t *roles = n_msgs <= 64 ? stack_roles
                   : n_msgs > SIZE_MAX / sizeof *roles ? NULL : malloc(n_msgs * sizeof *roles);
    chat_out_t o = {0};
    int rc = -1;
    if (!roles) {
        err_set(err, errlen, "chat: out of memory (%zu messages)", n_msgs);
        return -1;
    }
    if (parse_roles(msgs, n_msgs, roles, err, errlen) != 0) goto done;
    if (c->gemma) rc = render_gemma(c, msgs, roles, n_msgs, add_generation_prompt, &o, err, errlen);
    else if (c->qwen3) rc = render_qwen3(msgs, roles, n_msgs, add_generation_prompt, &o);
    else if (c->hs) rc = render_header(c, msgs, roles, n_msgs, add_generation_prompt, &o, err, errlen);
    else rc = render_inst(c, msgs, roles, n_msgs, &o, err, errlen);
    if (rc != 0) goto done;
    /* buf_append of nothing: an empty rendering is still a valid string */
    if (buf_append(&o.b, "", 0) != 0 || o.oom) {
        err_set(err, errlen, "chat: out of memory rendering %zu messages", n_msgs);
        rc = -1;
        goto done;
    }
    *out = buf_detach(&o.b, NULL);
    if (content) {
        *content = o.spans;
        *n_content = o.n;
        o.spans = NULL; /* now the caller's */
    }
done:
    out_free(&o);
    if (roles != stack_roles) free(roles);
    return rc;
}

int chat_render(const chat_t *c, const engine_chat_msg_t *msgs, size_t n_msgs, bool add_generation_prompt,
                char **out, char *err, size_t errlen) {
    return chat_render_spans(c, msgs, n_msgs, add_generation_prompt, out, NULL, NULL, err, errlen);
}
