/* krill-generate — one completion from the command line, through the same engine the
 * worker uses. Only the completion goes to stdout; everything else (load info,
 * timings, errors) goes to stderr, so the output can be piped. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "log.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: krill-generate -m MODEL (-p TEXT | --chat TEXT) [options]\n"
            "  -m, --model PATH      GGUF model file\n"
            "  -p, --prompt TEXT     raw prompt (BOS added when the model asks for it)\n"
            "      --chat TEXT       one user message, rendered with the model's chat template\n"
            "      --system TEXT     system message for --chat\n"
            "  -n, --max-tokens N    tokens to generate (default 128)\n"
            "      --temp T          temperature, 0 = greedy (default 0)\n"
            "      --top-p P         nucleus sampling (default 1 = off)\n"
            "      --top-k K         top-k sampling (default 0 = off)\n"
            "      --min-p P         min-p sampling (default 0 = off)\n"
            "      --seed S          sampling seed (default: random)\n"
            "      --stop TEXT       stop string (up to %d times)\n"
            "      --ignore-eos      keep generating after end-of-generation tokens\n"
            "      --backend B       cpu | cuda | auto (default auto)\n"
            "      --threads N       cpu threads (default: online cores)\n"
            "      --context N       context length (default: the model's)\n"
            "  -v, --verbose         engine log at info level on stderr\n"
            "  -h, --help            this text\n"
            "      --version         print the version\n",
            ENGINE_MAX_STOP);
}

static int parse_int(const char *s, const char *name, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "krill-generate: %s '%s' must be an integer in [%ld, %ld]\n", name, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_float(const char *s, const char *name, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "krill-generate: %s '%s' must be a number in [%g, %g]\n", name, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

enum { OPT_CHAT = 256, OPT_SYSTEM, OPT_TEMP, OPT_TOPP, OPT_TOPK, OPT_MINP, OPT_SEED, OPT_STOP,
       OPT_IGNORE_EOS, OPT_BACKEND, OPT_THREADS, OPT_CONTEXT, OPT_VERSION };

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},       {"prompt", required_argument, 0, 'p'},
        {"chat", required_argument, 0, OPT_CHAT},   {"system", required_argument, 0, OPT_SYSTEM},
        {"max-tokens", required_argument, 0, 'n'},  {"temp", required_argument, 0, OPT_TEMP},
        {"top-p", required_argument, 0, OPT_TOPP},  {"top-k", required_argument, 0, OPT_TOPK},
        {"min-p", required_argument, 0, OPT_MINP},  {"seed", required_argument, 0, OPT_SEED},
        {"stop", required_argument, 0, OPT_STOP},   {"ignore-eos", no_argument, 0, OPT_IGNORE_EOS},
        {"backend", required_argument, 0, OPT_BACKEND}, {"threads", required_argument, 0, OPT_THREADS},
        {"context", required_argument, 0, OPT_CONTEXT}, {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},              {"version", no_argument, 0, OPT_VERSION},
        {0, 0, 0, 0}};
    const char *model = NULL, *prompt = NULL, *chat = NULL, *system_msg = NULL;
    engine_config_t cfg;
    engine_config_defaults(&cfg);
    engine_request_t rq = {.id = 1, .max_tokens = 128, .top_p = 1.0f};
    bool verbose = false;
    long lv;
    double dv;
    int c;
    while ((c = getopt_long(argc, argv, "m:p:n:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'p': prompt = optarg; break;
        case OPT_CHAT: chat = optarg; break;
        case OPT_SYSTEM: system_msg = optarg; break;
        case 'n':
            if (parse_int(optarg, "--max-tokens", 1, 1 << 20, &lv)) return 2;
            rq.max_tokens = (int)lv;
            break;
        case OPT_TEMP:
            if (parse_float(optarg, "--temp", 0, 2, &dv)) return 2;
            rq.temperature = (float)dv;
            break;
        case OPT_TOPP:
            if (parse_float(optarg, "--top-p", 1e-6, 1, &dv)) return 2;
            rq.top_p = (float)dv;
            break;
        case OPT_TOPK:
            if (parse_int(optarg, "--top-k", 0, 1 << 30, &lv)) return 2;
            rq.top_k = (int)lv;
            break;
        case OPT_MINP:
            if (parse_float(optarg, "--min-p", 0, 1, &dv)) return 2;
            rq.min_p = (float)dv;
            break;
        case OPT_SEED: {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end) {
                fprintf(stderr, "krill-generate: --seed '%s' must be an unsigned integer\n", optarg);
                return 2;
            }
            rq.has_seed = true;
            rq.seed = s;
            break;
        }
        case OPT_STOP:
            if (rq.n_stop == ENGINE_MAX_STOP) {
                fprintf(stderr, "krill-generate: at most %d --stop strings\n", ENGINE_MAX_STOP);
                return 2;
            }
            rq.stop[rq.n_stop++] = optarg;
            break;
        case OPT_IGNORE_EOS: rq.ignore_eos = true; break;
        case OPT_BACKEND: cfg.backend = optarg; break;
        case OPT_THREADS:
            if (parse_int(optarg, "--threads", 0, 1024, &lv)) return 2;
            cfg.n_threads = (int)lv;
            break;
        case OPT_CONTEXT:
            if (parse_int(optarg, "--context", 2, 1 << 24, &lv)) return 2;
            cfg.context = (int)lv;
            break;
        case 'v': verbose = true; break;
        case 'h': usage(stdout); return 0;
        case OPT_VERSION: printf("krill-generate %s\n", KRILL_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "krill-generate: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!model || (!prompt == !chat)) {
        fprintf(stderr, "krill-generate: give -m MODEL and exactly one of -p TEXT or --chat TEXT (see --help)\n");
        return 2;
    }
    log_set_level(verbose ? LOG_LVL_INFO : LOG_LVL_WARN);
    cfg.model_path = model;

    char err[512];
    engine_t *e = engine_open(&cfg, err, sizeof(err));
    if (!e) {
        fprintf(stderr, "krill-generate: %s\n", err);
        return 1;
    }
    const engine_info_t *info = engine_get_info(e);
    int rc = 1;
    char *rendered = NULL;
    int32_t *ids = NULL;
    int n_ids = 0;
    engine_result_t res = {0};
    if (chat) {
        engine_chat_msg_t msgs[2];
        size_t n = 0;
        if (system_msg) msgs[n++] = (engine_chat_msg_t){"system", system_msg};
        msgs[n++] = (engine_chat_msg_t){"user", chat};
        if (engine_chat_render(e, msgs, n, &rendered, err, sizeof(err)) != 0) {
            fprintf(stderr, "krill-generate: chat template: %s\n", err);
            goto out;
        }
        /* the template writes its own BOS text; special tokens in it are parsed */
        if (engine_tokenize(e, rendered, strlen(rendered), false, true, &ids, &n_ids, err, sizeof(err))) {
            fprintf(stderr, "krill-generate: %s\n", err);
            goto out;
        }
    } else if (engine_tokenize(e, prompt, strlen(prompt), info->add_bos, false, &ids, &n_ids, err, sizeof(err))) {
        fprintf(stderr, "krill-generate: %s\n", err);
        goto out;
    }
    if (n_ids == 0) {
        fprintf(stderr, "krill-generate: the prompt is empty after tokenization\n");
        goto out;
    }
    rq.prompt = ids;
    rq.n_prompt = n_ids;
    int src = engine_submit(e, &rq, err, sizeof(err));
    if (src != ENGINE_OK) {
        fprintf(stderr, "krill-generate: %s\n", err);
        goto out;
    }
    while (engine_poll(e, &res, 1) == 0) engine_step(e);
    if (res.finish == ENGINE_FINISH_ERROR) {
        fprintf(stderr, "krill-generate: %s\n", res.error);
        goto out;
    }
    fwrite(res.text, 1, res.text_len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    static const char *fin[] = {"stop", "length", "error", "aborted"};
    double decode_ms = res.total_ms - res.ttft_ms;
    fprintf(stderr,
            "krill-generate: %s on %s (%s): prompt %d tokens, completion %d tokens, finish %s, "
            "ttft %.1f ms, total %.1f ms, decode %.1f tok/s\n",
            info->model_name, info->backend, info->device, res.prompt_tokens, res.completion_tokens,
            fin[res.finish], res.ttft_ms, res.total_ms,
            res.completion_tokens > 1 && decode_ms > 0 ? (res.completion_tokens - 1) * 1000.0 / decode_ms : 0.0);
    rc = 0;
out:
    engine_result_clear(&res);
    free(ids);
    free(rendered);
    engine_close(e);
    return rc;
}
