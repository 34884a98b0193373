/* krill-tokenize — text <-> token ids with a GGUF model's tokenizer.
 *
 * Reads stdin, writes stdout. Encoding prints ids separated by spaces, one line per
 * text; --decode goes the other way. Exits 0 on success, 1 on bad input (invalid
 * UTF-8 names the byte offset, a bad id names its position), 2 on bad usage.
 * --bench times the encoding (one core) instead of printing ids. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "cli.h"
#include "clock.h"
#include "gguf.h"
#include "tokenizer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: krill-tokenize -m MODEL.gguf [options] < input\n"
            "Tokenizes UTF-8 text from stdin with the model's tokenizer and prints the ids.\n"
            "  -m, --model FILE  GGUF file whose tokenizer.ggml.* metadata to use (required)\n"
            "  --lines           tokenize each input line separately (without its newline);\n"
            "                    one output line per input line, an empty line for an empty one\n"
            "  --bos             start each text with the BOS token\n"
            "  --special         match special/control token strings (\"<|im_start|>\") as tokens;\n"
            "                    with --decode: print control tokens instead of dropping them\n"
            "  --chat            stdin is a JSON array of {\"role\",\"content\"} messages: render it\n"
            "                    with the model's chat template (+ generation prompt), then\n"
            "                    tokenize as krill-worker does: the template's markup with\n"
            "                    special tokens, message content as text (with --special:\n"
            "                    content too, as input.parse_special_in_content = true)\n"
            "  --decode          stdin holds ids (whitespace separated): print the text\n"
            "                    (with --lines: one text line per input line)\n"
            "  --bench N         encode the input N times and print bytes, tokens and MB/s to\n"
            "                    stderr (one core; nothing on stdout)\n"
            "  -h, --help        this text\n"
            "  --version         print the version\n"
            "Exit status: 0 ok, 1 bad input or model (the reason is printed), 2 usage error.\n");
}

static char *read_all(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    for (;;) {
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    if (ferror(f)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static void print_ids(const int32_t *ids, size_t n) {
    char num[16];
    for (size_t i = 0; i < n; i++) {
        int k = snprintf(num, sizeof num, i ? " %d" : "%d", ids[i]);
        fwrite(num, 1, (size_t)k, stdout);
    }
    putchar('\n');
}

/* Encodes one text and prints its ids; base is its offset in the input (for errors).
 * Control tokens are matched outside the plain ranges (tokenizer_encode_spans). */
static int encode_print_spans(const tokenizer_t *tok, const char *text, size_t len, bool bos,
                              const tokenizer_span_t *plain, size_t n_plain, size_t base, size_t line) {
    int32_t *ids = NULL;
    size_t n = 0;
    char err[256];
    if (tokenizer_encode_spans(tok, text, len, bos, plain, n_plain, &ids, &n, err, sizeof err) != 0) {
        size_t off;
        if (sscanf(err, "invalid UTF-8 at byte offset %zu", &off) == 1) {
            char where[48] = "";
            if (line) snprintf(where, sizeof where, " (line %zu)", line);
            fprintf(stderr, "krill-tokenize: invalid UTF-8 at byte offset %zu of the input%s: the input must be "
                            "UTF-8\n", base + off, where);
        } else
            fprintf(stderr, "krill-tokenize: %s\n", err);
        return -1;
    }
    print_ids(ids, n);
    free(ids);
    return 0;
}

static int encode_print(const tokenizer_t *tok, const char *text, size_t len, bool bos, bool special, size_t base,
                        size_t line) {
    tokenizer_span_t all = {0, len};
    return encode_print_spans(tok, text, len, bos, &all, special ? 0 : 1, base, line);
}

static int do_decode(const tokenizer_t *tok, const char *in, size_t len, bool lines, bool special) {
    size_t cap = 1024, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return -1;
    size_t i = 0, line = 1;
    int rc = 0;
    while (i <= len) {
        bool eol = i == len || (lines && in[i] == '\n');
        if (eol) {
            if (lines && i == len && (len == 0 || in[len - 1] == '\n')) break; /* no text after the last newline */
            size_t olen = 0;
            char *text = tokenizer_decode(tok, ids, n, special, &olen);
            if (!text) {
                fprintf(stderr, "krill-tokenize: out of memory while decoding\n");
                rc = -1;
                break;
            }
            fwrite(text, 1, olen, stdout);
            if (lines) putchar('\n');
            free(text);
            n = 0;
            if (i == len) break;
            i++;
            line++;
            continue;
        }
        if (in[i] == ' ' || in[i] == '\t' || in[i] == '\n' || in[i] == '\r') {
            i++;
            continue;
        }
        char *end;
        errno = 0;
        long v = strtol(in + i, &end, 10);
        size_t tl = (size_t)(end - (in + i));
        if (tl == 0 || errno || v < 0 || v >= tokenizer_n_vocab(tok) ||
            (end < in + len && !strchr(" \t\r\n", *end))) {
            size_t w = 0;
            while (i + w < len && !strchr(" \t\r\n", in[i + w]) && w < 20) w++;
            fprintf(stderr, "krill-tokenize: line %zu: '%.*s' is not a token id of this model (0..%d)\n", line,
                    (int)w, in + i, tokenizer_n_vocab(tok) - 1);
            rc = -1;
            break;
        }
        if (n == cap) {
            int32_t *ni = realloc(ids, cap * 2 * sizeof *ni);
            if (!ni) {
                rc = -1;
                break;
            }
            ids = ni;
            cap *= 2;
        }
        ids[n++] = (int32_t)v;
        i += tl;
    }
    free(ids);
    return rc;
}

/* --chat: a JSON array of messages (or an object with "messages") -> prompt text and
 * the ranges of message content in it (*content malloc'd). */
static char *render_chat(const gguf_t *g, const char *in, size_t len, tokenizer_span_t **content, size_t *n_content) {
    char err[512];
    json_error_t je;
    char *out = NULL;
    chat_t *chat = NULL;
    engine_chat_msg_t *msgs = NULL;
    json_t *root = json_loadb(in, len, 0, &je);
    if (!root) {
        fprintf(stderr, "krill-tokenize: --chat: stdin is not JSON (line %d column %d: %s)\n", je.line, je.column,
                je.text);
        return NULL;
    }
    json_t *arr = json_is_object(root) ? json_object_get(root, "messages") : root;
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        fprintf(stderr, "krill-tokenize: --chat: expected a non-empty JSON array of {\"role\", \"content\"} "
                        "objects (or an object with \"messages\")\n");
        goto done;
    }
    size_t n = json_array_size(arr);
    msgs = calloc(n, sizeof *msgs);
    if (!msgs) goto done;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(arr, i);
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!json_is_string(role) || !json_is_string(content)) {
            fprintf(stderr, "krill-tokenize: --chat: message %zu needs string \"role\" and \"content\"\n", i);
            goto done;
        }
        msgs[i].role = json_string_value(role);
        msgs[i].content = json_string_value(content);
    }
    chat = chat_load(g, err, sizeof err);
    if (!chat) {
        fprintf(stderr, "krill-tokenize: --chat: %s\n", err);
        goto done;
    }
    if (chat_render_spans(chat, msgs, n, true, &out, content, n_content, err, sizeof err) != 0) {
        fprintf(stderr, "krill-tokenize: --chat: %s\n", err);
        out = NULL;
    }
done:
    chat_free(chat);
    free(msgs);
    json_decref(root);
    return out;
}

static int do_bench(const tokenizer_t *tok, const char *in, size_t len, bool lines, bool bos, bool special,
                    long reps) {
    char err[256];
    size_t tokens = 0;
    double best = 1e30, total = 0;
    for (long r = 0; r < reps; r++) {
        double t0 = clock_now_s();
        size_t start = 0;
        tokens = 0;
        while (start < len || (!lines && start == 0)) {
            size_t end = len;
            if (lines) {
                const char *nl = memchr(in + start, '\n', len - start);
                end = nl ? (size_t)(nl - in) : len;
            }
            int32_t *ids;
            size_t n;
            if (tokenizer_encode(tok, in + start, end - start, bos, special, &ids, &n, err, sizeof err) != 0) {
                fprintf(stderr, "krill-tokenize: %s\n", err);
                return -1;
            }
            tokens += n;
            free(ids);
            start = end + 1;
            if (!lines) break;
        }
        double dt = clock_now_s() - t0;
        total += dt;
        if (dt < best) best = dt;
    }
    fprintf(stderr, "bytes=%zu tokens=%zu reps=%ld best_s=%.4f mean_s=%.4f MB_per_s=%.2f (best, 1 MB = 1e6 bytes)\n",
            len, tokens, reps, best, total / (double)reps, (double)len / best / 1e6);
    return 0;
}

typedef struct {
    const char *model;
    bool lines, bos, special, chat, decode;
    long bench; /* repeats; 0 = no --bench */
} args_t;

static void argparse(int argc, char **argv, args_t *a) {
    enum { O_LINES = 256, O_BOS, O_SPECIAL, O_CHAT, O_DECODE, O_BENCH };
    static const struct option lopts[] = {
        {"model", required_argument, NULL, 'm'}, {"lines", no_argument, NULL, O_LINES},
        {"bos", no_argument, NULL, O_BOS},       {"special", no_argument, NULL, O_SPECIAL},
        {"chat", no_argument, NULL, O_CHAT},     {"decode", no_argument, NULL, O_DECODE},
        {"bench", required_argument, NULL, O_BENCH}, CLI_OPTIONS_END};
    *a = (args_t){0};
    int c;
    while ((c = getopt_long(argc, argv, "m:h", lopts, NULL)) != -1) {
        switch (c) {
        case 'm': a->model = optarg; break;
        case O_LINES: a->lines = true; break;
        case O_BOS: a->bos = true; break;
        case O_SPECIAL: a->special = true; break;
        case O_CHAT: a->chat = true; break;
        case O_DECODE: a->decode = true; break;
        case O_BENCH: a->bench = cli_long("--bench", optarg, 1, 1000000); break;
        default: cli_default(c, usage);
        }
    }
    if (optind < argc) cli_usage_error("unexpected argument '%s' (the text comes from stdin)", argv[optind]);
    if (!a->model) cli_usage_error("-m MODEL.gguf is required");
    if (a->chat && (a->decode || a->lines)) cli_usage_error("--chat cannot be combined with --decode or --lines");
}

int main(int argc, char **argv) {
    args_t a;
    cli_init("krill-tokenize");
    argparse(argc, argv, &a);
    const char *model = a.model;
    bool lines = a.lines, bos = a.bos, special = a.special;
    long bench = a.bench;

    char err[512];
    int rc = 1;
    char *in = NULL, *prompt = NULL;
    tokenizer_t *tok = NULL;
    gguf_t *g = gguf_open(model, err, sizeof err);
    if (!g) {
        fprintf(stderr, "krill-tokenize: %s\n", err);
        return 1;
    }
    tok = tokenizer_load(g, err, sizeof err);
    if (!tok) {
        fprintf(stderr, "krill-tokenize: %s: %s\n", model, err);
        goto done;
    }
    size_t len = 0;
    in = read_all(stdin, &len);
    if (!in) {
        fprintf(stderr, "krill-tokenize: cannot read stdin: %s\n", strerror(errno));
        goto done;
    }
    static char obuf[1 << 16];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);

    if (a.decode) {
        if (do_decode(tok, in, len, lines, special) != 0) goto done;
    } else if (a.chat) {
        tokenizer_span_t *content = NULL;
        size_t n_content = 0;
        prompt = render_chat(g, in, len, &content, &n_content);
        size_t plen = prompt ? strlen(prompt) : 0;
        int erc = !prompt ? -1
                  : bench ? do_bench(tok, prompt, plen, false, bos, true, bench)
                          : encode_print_spans(tok, prompt, plen, bos, content, special ? 0 : n_content, 0, 0);
        free(content);
        if (erc != 0) goto done;
    } else if (bench) {
        if (do_bench(tok, in, len, lines, bos, special, bench) != 0) goto done;
    } else if (lines) {
        size_t start = 0, line = 1;
        while (start < len) {
            const char *nl = memchr(in + start, '\n', len - start);
            size_t end = nl ? (size_t)(nl - in) : len;
            if (encode_print(tok, in + start, end - start, bos, special, start, line) != 0) goto done;
            start = end + 1;
            line++;
        }
    } else {
        if (encode_print(tok, in, len, bos, special, 0, 0) != 0) goto done;
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "krill-tokenize: cannot write stdout: %s\n", strerror(errno));
        goto done;
    }
    rc = 0;
done:
    free(prompt);
    free(in);
    tokenizer_free(tok);
    gguf_close(g);
    return rc;
}
