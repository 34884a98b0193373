/* fuzz_chat.c — libFuzzer target for chat templates: the template text comes from an
 * untrusted GGUF and the messages from untrusted Kafka requests. Input layout: the
 * template up to the first NUL, then NUL-separated role, content, role, content...
 * (the first byte picks add_generation_prompt). Any outcome is fine except a crash,
 * a leak, a success without a NUL-terminated output, or content ranges out of order
 * or outside it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    enum { MAX_MSGS = 64 };
    log_set_level(LOG_LVL_OFF);
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    bool gen = size > 0 && (data[0] & 1);
    char *tmpl = buf, *p = buf + strlen(buf);
    engine_chat_msg_t msgs[MAX_MSGS];
    size_t n = 0;
    const char *role = NULL;
    while (p < buf + size && n < MAX_MSGS) {
        p++; /* past the NUL */
        if (!role) role = p;
        else msgs[n++] = (engine_chat_msg_t){role, p}, role = NULL;
        p += strlen(p);
    }
    chat_t *c = chat_load_template(tmpl, "<s>", "</s>", NULL, 0);
    if (c) {
        char *out = NULL, err[256];
        tokenizer_span_t *sp = NULL;
        size_t nsp = 0;
        if (chat_render_spans(c, msgs, n, gen, &out, &sp, &nsp, err, sizeof err) == 0) {
            if (!out) abort();
            size_t len = strlen(out), end = 0;
            for (size_t i = 0; i < nsp; i++) { /* content ranges: sorted, apart, inside */
                if (sp[i].len == 0 || (i && sp[i].off <= end) || sp[i].off + sp[i].len > len) abort();
                end = sp[i].off + sp[i].len;
            }
            free(sp);
            free(out);
        } else if (out || sp) {
            abort();
        }
        chat_free(c);
    }
    free(buf);
    return 0;
}
