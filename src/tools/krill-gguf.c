/* krill-gguf — inspect a GGUF file: version, metadata, tensors; --check dequantizes all.
 *
 * Exits 0 on a valid file, 1 with the reader's message on a bad one, 2 on bad usage.
 * Long arrays are abbreviated to their first few elements. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "clock.h"
#include "gguf.h"
#include "hparams.h"
#include "quant.h"

#define ARR_SHOW 8

static void usage(FILE *f) {
    fprintf(f,
            "usage: krill-gguf [--check] [--quiet] FILE\n"
            "Prints a GGUF file's version, metadata (long arrays abbreviated) and tensors.\n"
            "  -c, --check    dequantize every tensor to f32 and report non-finite values and time\n"
            "  -q, --quiet    with --check: print only the summary\n"
            "  -h, --help     this text\n"
            "  --version      print the version\n"
            "Exit status: 0 valid, 1 invalid file (the reason is printed), 2 usage error.\n");
}

static void print_str(gguf_str_t s, size_t max) {
    putchar('"');
    for (uint64_t i = 0; i < s.len && i < max; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') printf("\\n");
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
    if (s.len > max) printf("... (%" PRIu64 " bytes)", s.len);
}

static void print_kv(const gguf_t *g, const gguf_kv_t *kv) {
    char key[256];
    printf("  %-45s ", gguf_str_copy(kv->key, key, sizeof(key)));
    switch (kv->type) {
    case GGUF_VT_UINT8: case GGUF_VT_UINT16: case GGUF_VT_UINT32: case GGUF_VT_UINT64:
        printf("%s %" PRIu64, gguf_vtype_name(kv->type), kv->v.u64);
        break;
    case GGUF_VT_INT8: case GGUF_VT_INT16: case GGUF_VT_INT32: case GGUF_VT_INT64:
        printf("%s %" PRId64, gguf_vtype_name(kv->type), kv->v.i64);
        break;
    case GGUF_VT_FLOAT32: case GGUF_VT_FLOAT64:
        printf("%s %.9g", gguf_vtype_name(kv->type), kv->v.f64);
        break;
    case GGUF_VT_BOOL: printf("bool %s", kv->v.u64 ? "true" : "false"); break;
    case GGUF_VT_STRING:
        printf("string ");
        print_str(kv->v.str, 120);
        break;
    case GGUF_VT_ARRAY: {
        uint64_t n = gguf_arr_len(kv);
        printf("array<%s>[%" PRIu64 "] [", gguf_vtype_name(kv->v.arr.type), n);
        for (uint64_t i = 0; i < n && i < ARR_SHOW; i++) {
            if (i) printf(", ");
            if (kv->v.arr.type == GGUF_VT_STRING) print_str(gguf_arr_str(g, kv, i), 40);
            else if (kv->v.arr.type == GGUF_VT_FLOAT32 || kv->v.arr.type == GGUF_VT_FLOAT64)
                printf("%.9g", gguf_arr_f64(kv, i));
            else if (kv->v.arr.type == GGUF_VT_UINT64) printf("%" PRIu64, (uint64_t)gguf_arr_i64(kv, i));
            else printf("%" PRId64, gguf_arr_i64(kv, i));
        }
        if (n > ARR_SHOW) printf(", ...");
        printf("]");
        break;
    }
    default: printf("?"); break;
    }
    putchar('\n');
}

static int check_all(const gguf_t *g, bool quiet) {
    size_t n = gguf_n_tensors(g), bad = 0, unsupported = 0;
    uint64_t maxel = 0;
    for (size_t i = 0; i < n; i++) {
        const gguf_tensor_t *t = gguf_tensor_at(g, i);
        uint64_t el = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        if (el > maxel) maxel = el;
    }
    float *buf = malloc((size_t)(maxel ? maxel : 1) * sizeof(float));
    if (!buf) {
        fprintf(stderr, "krill-gguf: out of memory for %" PRIu64 " floats\n", maxel);
        return 1;
    }
    double deq_s = 0;
    for (size_t i = 0; i < n; i++) {
        const gguf_tensor_t *t = gguf_tensor_at(g, i);
        char name[96];
        gguf_str_copy(t->name, name, sizeof(name));
        uint64_t el = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        if (!quant_supported(t->type)) {
            unsupported++;
            printf("  %-40s %-8s not supported for dequantization\n", name, quant_type_name(t->type));
            continue;
        }
        double t0 = clock_now_s();
        int rc = quant_dequantize_f32(t->type, t->data, buf, (int64_t)el);
        deq_s += clock_now_s() - t0;
        uint64_t nonfinite = 0;
        double sumsq = 0;
        float mx = 0;
        for (uint64_t j = 0; j < el; j++) {
            float v = buf[j];
            if (v != v || v - v != 0) nonfinite++;
            else {
                sumsq += (double)v * v;
                if (v > mx || -v > mx) mx = v < 0 ? -v : v;
            }
        }
        if (rc != 0 || nonfinite) bad++;
        if (!quiet || rc != 0 || nonfinite)
            printf("  %-40s %-8s %10" PRIu64 " el  rms %.4g  max|x| %.4g%s%s\n", name, quant_type_name(t->type),
                   el, el ? sqrt(sumsq / (double)el) : 0.0, (double)mx, rc ? "  DEQUANT FAILED" : "",
                   nonfinite ? "  NON-FINITE VALUES" : "");
    }
    free(buf);
    printf("check: %zu tensors, %zu failed or non-finite, %zu unsupported, dequantization %.3f s\n", n, bad,
           unsupported, deq_s);
    return bad ? 1 : 0;
}

typedef struct {
    const char *path;
    bool check, quiet;
} args_t;

static void argparse(int argc, char **argv, args_t *a) {
    static const struct option lopts[] = {{"check", no_argument, NULL, 'c'}, {"quiet", no_argument, NULL, 'q'},
                                          CLI_OPTIONS_END};
    *a = (args_t){0};
    int c;
    while ((c = getopt_long(argc, argv, "cqhV", lopts, NULL)) != -1) {
        switch (c) {
        case 'c': a->check = true; break;
        case 'q': a->quiet = true; break;
        case 'V': cli_version(); /* -V: the short form it always had */
        default: cli_default(c, usage);
        }
    }
    if (optind < argc) a->path = argv[optind++];
    cli_no_operands(argc, argv);
    if (!a->path) cli_usage_error("a GGUF FILE is required");
}

int main(int argc, char **argv) {
    args_t a;
    cli_init("krill-gguf");
    argparse(argc, argv, &a);
    bool check = a.check, quiet = a.quiet;
    char err[512];
    gguf_t *g = gguf_open(a.path, err, sizeof(err));
    if (!g) {
        fprintf(stderr, "krill-gguf: %s\n", err);
        return 1;
    }
    printf("file: %s\nversion: %" PRIu32 "\nalignment: %" PRIu64 "\nkv: %zu\n", a.path, gguf_version(g),
           gguf_alignment(g), gguf_n_kv(g));
    for (size_t i = 0; i < gguf_n_kv(g); i++) print_kv(g, gguf_kv_at(g, i));
    printf("tensors: %zu\n", gguf_n_tensors(g));
    if (!(check && quiet)) {
        for (size_t i = 0; i < gguf_n_tensors(g); i++) {
            const gguf_tensor_t *t = gguf_tensor_at(g, i);
            char name[96], shape[128];
            int k = snprintf(shape, sizeof(shape), "[%" PRIu64, t->ne[0]);
            for (uint32_t d = 1; d < t->n_dims; d++)
                k += snprintf(shape + k, sizeof(shape) - (size_t)k, ", %" PRIu64, t->ne[d]);
            snprintf(shape + k, sizeof(shape) - (size_t)k, "]");
            printf("  %-40s %-8s %-20s offset %" PRIu64 " bytes %" PRIu64 "\n", gguf_str_copy(t->name, name, sizeof(name)),
                   quant_type_name(t->type), shape, t->offset, t->nbytes);
        }
    }
    int rc = 0;
    hparams_t hp;
    if (hparams_load(g, &hp, err, sizeof(err)) == 0) {
        printf("hparams: arch=%s layers=%d d_model=%d heads=%d kv_heads=%d head_dim=%d ffn=%d vocab=%d ctx=%d "
               "rope_base=%g rope_dim=%d rms_eps=%g tied=%d qkv_bias=%d\n",
               hp.arch, hp.n_layers, hp.d_model, hp.n_heads, hp.n_kv_heads, hp.head_dim, hp.ffn_dim, hp.n_vocab,
               hp.n_ctx_train, (double)hp.rope_base, hp.rope_dim, (double)hp.rms_eps, hp.tied_embeddings,
               hp.qkv_bias);
        printf("hparams: qk_norm=%d post_norms=%d ffn_act=%s neox=%d embd_scale=%g attn_scale=%g "
               "sliding_window=%d swa_pattern=%d rope_base_local=%g local_layers=", hp.qk_norm, hp.post_norms,
               hp.geglu ? "gelu_tanh" : "silu", hp.neox, (double)hp.embd_scale, (double)hp.attn_scale,
               hp.sliding_window, hp.swa_pattern, (double)hp.rope_base_local);
        int n_local = 0;
        for (int l = 0; l < hp.n_layers; l++) n_local += hparams_layer_local(&hp, l);
        printf("%d/%d\n", n_local, hp.n_layers);
    } else {
        printf("hparams: not a supported model: %s\n", err);
    }
    if (check) rc = check_all(g, quiet);
    gguf_close(g);
    return rc;
}
