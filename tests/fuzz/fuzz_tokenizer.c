/* fuzz_tokenizer.c — libFuzzer target for the tokenizer on untrusted text.
 *
 * Prompts arrive from Kafka, so tokenizer_encode must reject or tokenize any bytes
 * without crashing, and decode(encode(text)) must give the text back whenever the
 * vocabulary can represent it. The first input byte picks the mode (special-token
 * parsing, BOS); the rest is the text. The default model's tokenizer is loaded once
 * (KRILL_FUZZ_MODEL overrides the path).
 * Run: make fuzz && build/fuzz/fuzz_tokenizer -max_total_time=300 <dir> tests/fuzz/corpus/tokenizer */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "tokenizer.h"

static gguf_t *fz_gguf;
static tokenizer_t *fz_tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *path = getenv("KRILL_FUZZ_MODEL");
    if (!path) path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    char err[512];
    fz_gguf = gguf_open(path, err, sizeof err);
    if (!fz_gguf || !(fz_tok = tokenizer_load(fz_gguf, err, sizeof err))) {
        fprintf(stderr, "fuzz_tokenizer: cannot load %s: %s (run scripts/fetch-model.sh)\n", path, err);
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    bool special = data[0] & 1, bos = data[0] & 2;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    int32_t *ids = NULL;
    size_t n = 0;
    char err[256];
    if (tokenizer_encode(fz_tok, text, len, bos, special, &ids, &n, err, sizeof err) != 0) return 0;
    size_t out_len = 0;
    char *back = tokenizer_decode(fz_tok, ids, n, special, &out_len);
    if (!back) abort();
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= tokenizer_n_vocab(fz_tok)) abort();
    free(back);
    free(ids);
    return 0;
}
