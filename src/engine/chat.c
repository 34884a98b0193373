/* chat.c — OpenAI-style messages -> prompt text, without a Jinja interpreter.
 *
 * The family is detected once from substrings of tokenizer.chat_template, then a
 * family is rendered by C code driven by a small style table:
 *   - "header" families (ChatML, Llama-3, Zephyr): every message becomes
 *     open + role + close + content + end; they differ only in the strings, in
 *     whether content is trimmed and whether BOS opens the text.
 *   - "[INST]" families (Llama-2, Mistral variants): user/assistant must alternate,
 *     an optional first system message is folded into a user turn.
 * Rules kept:
 *   - the output is byte-for-byte what the model's Jinja template renders (checked
 *     against jinja2 / transformers vectors in tests/data/chat); where a template
 *     would silently drop a message we fail instead (docs/chat.md lists each case);
 *   - "trim"/"strip" follow Python's str.strip(): Unicode whitespace, not isspace();
 *   - message content is copied verbatim: template-like text in content
 *     ("<|im_start|>") is not escaped, exactly as Jinja does not escape it;
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

typedef enum { FAM_CHATML = 0, FAM_LLAMA3, FAM_LLAMA2, FAM_MISTRAL, FAM_ZEPHYR } family_t;
static const char *const family_names[] = {"chatml", "llama3", "llama2", "mistral", "zephyr"};

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
    const header_style_t *hs; /* exactly one of hs / is is set */
    const inst_style_t *is;
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

/* Appends s[0..n) with leading and trailing Python whitespace removed. Content is
 * valid UTF-8 (the codec and jansson check it); an invalid byte is never whitespace. */
static void chat_put_stripped(buf_t *b, const char *s, size_t n) {
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
    if (seen) buf_append(b, s + start, end - start);
}

static void chat_put_content(buf_t *b, const char *s, bool strip) {
    if (strip) chat_put_stripped(b, s, strlen(s));
    else buf_puts(b, s);
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
            if (has(tmpl, inexact[i])) {
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
    return family_names[c->hs ? c->hs->family : c->is->family];
}
const char *chat_variant_name(const chat_t *c) { return c->hs ? c->hs->variant : c->is->variant; }
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
                         bool gen, buf_t *b, char *err, size_t errlen) {
    const header_style_t *s = c->hs;
    if (s->bos_first) buf_puts(b, c->bos);
    if (c->default_system && roles[0] != ROLE_SYSTEM) {
        buf_puts(b, s->open);
        buf_puts(b, "system");
        buf_puts(b, s->close);
        buf_puts(b, c->default_system);
        buf_puts(b, s->end);
    }
    for (size_t i = 0; i < n; i++) {
        if (roles[i] == ROLE_TOOL && !s->allow_tool) {
            err_set(err, errlen, "chat: messages[%zu]: the %s template has no tool role; use system, user or assistant",
                    i, s->variant);
            return -1;
        }
        if (roles[i] == ROLE_TOOL && s->qwen_tool) {
            /* consecutive tool results share one user turn */
            if (i == 0 || roles[i - 1] != ROLE_TOOL) buf_puts(b, "<|im_start|>user");
            buf_puts(b, "\n<tool_response>\n");
            buf_puts(b, msgs[i].content);
            buf_puts(b, "\n</tool_response>");
            if (i + 1 == n || roles[i + 1] != ROLE_TOOL) buf_puts(b, "<|im_end|>\n");
            continue;
        }
        buf_puts(b, s->open);
        buf_puts(b, role_names[roles[i]]);
        buf_puts(b, s->close);
        chat_put_content(b, msgs[i].content, s->trim);
        if (s->eos_before_end) buf_puts(b, c->eos);
        buf_puts(b, s->end);
    }
    if (gen) buf_puts(b, s->gen);
    return 0;
}

static int render_inst(const chat_t *c, const engine_chat_msg_t *msgs, const role_t *roles, size_t n,
                       buf_t *b, char *err, size_t errlen) {
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
    if (s->bos_once) buf_puts(b, c->bos);
    for (size_t i = first; i < n; i++) {
        const char *content = msgs[i].content;
        if (roles[i] == ROLE_USER) {
            if (s->bos_per_user) buf_puts(b, c->bos);
            buf_puts(b, s->user_open);
            if (sys && ((s->sys == SYS_LLAMA2 || s->sys == SYS_FIRST_USER) ? i == first : i + 1 == n)) {
                if (s->sys == SYS_LLAMA2) {
                    buf_t t = {0};
                    buf_puts(&t, "<<SYS>>\n");
                    buf_puts(&t, sys);
                    buf_puts(&t, "\n<</SYS>>\n\n");
                    buf_puts(&t, content);
                    if (t.oom) b->oom = true;
                    else if (t.len) {
                        if (s->strip_user) chat_put_stripped(b, t.data, t.len);
                        else buf_append(b, t.data, t.len);
                    }
                    buf_free(&t);
                } else {
                    buf_puts(b, sys);
                    buf_puts(b, "\n\n");
                    buf_puts(b, content);
                }
            } else {
                chat_put_content(b, content, s->strip_user);
            }
            buf_puts(b, s->user_close);
        } else {
            buf_puts(b, s->asst_open);
            chat_put_content(b, content, s->strip_assistant);
            buf_puts(b, s->asst_pre_eos);
            buf_puts(b, c->eos);
            buf_puts(b, s->asst_post_eos);
        }
    }
    return 0;
}

int chat_render(const chat_t *c, const engine_chat_msg_t *msgs, size_t n_msgs, bool add_generation_prompt,
                char **out, char *err, size_t errlen) {
    CHECK(c && out);
    *out = NULL;
    role_t stack_roles[64];
    role_t *roles = n_msgs <= 64 ? stack_roles
                   : n_msgs > SIZE_MAX / sizeof *roles ? NULL : malloc(n_msgs * sizeof *roles);
    buf_t b = {0};
    int rc = -1;
    if (!roles) {
        err_set(err, errlen, "chat: out of memory (%zu messages)", n_msgs);
        return -1;
    }
    if (parse_roles(msgs, n_msgs, roles, err, errlen) != 0) goto done;
    if (c->hs) rc = render_header(c, msgs, roles, n_msgs, add_generation_prompt, &b, err, errlen);
    else rc = render_inst(c, msgs, roles, n_msgs, &b, err, errlen);
    if (rc != 0) goto done;
    if (buf_append(&b, "", 0) != 0) { /* an empty rendering is still a valid string */
        err_set(err, errlen, "chat: out of memory rendering %zu messages", n_msgs);
        rc = -1;
        goto done;
    }
    *out = buf_detach(&b, NULL);
done:
    buf_free(&b);
    if (roles != stack_roles) free(roles);
    return rc;
}
