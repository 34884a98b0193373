/* krill-generate — one completion from the command line, through the same engine the
 * worker uses. Only the completion goes to stdout; everything else (load info,
 * timings, errors) goes to stderr, so the output can be piped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
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
            "      --json-schema FILE  constrain the output to a JSON Schema (docs/structured-outputs.md)\n"
            "      --json-object     constrain the output to any JSON object\n"
            "      --regex RE        constrain the output to a regular expression\n"
            "      --choice JSON     constrain the output to one of a JSON array of strings\n"
            "      --lark FILE       constrain the output to a Lark grammar (llguidance's dialect)\n"
            "      --logprobs N      print each token's log-probability and its N (0-%d) most likely\n"
            "                        alternatives on stderr, one JSON line per token ('logprob {...}')\n"
            "      --backend B       cpu | cuda | auto (default auto)\n"
            "      --threads N       cpu threads (default: online cores)\n"
            "      --context N       context length (default: the model's)\n"
            "      --cpu-weights W   cpu matmul weights auto | f32 | q8 | q4 (default auto)\n"
            "      --gpu-weights W   cuda matmul weights auto | bf16 | native (default auto)\n"
            "  -v, --verbose         engine log at info level on stderr\n"
            "  -h, --help            this text\n"
            "      --version         print the version\n",
            ENGINE_MAX_STOP, ENGINE_MAX_TOP_LOGPROBS);
}

typedef struct {
    const char *prompt, *chat, *system_msg;
    engine_config_t cfg;
    engine_request_t rq; /* everything but the prompt */
    char *grammar;       /* malloc'd text of --json-schema / --lark */
    bool verbose;
} args_t;

static void argparse(int argc, char **argv, args_t *a) {
    enum { O_CHAT = 256, O_SYSTEM, O_TEMP, O_TOPP, O_TOPK, O_MINP, O_SEED, O_STOP, O_IGNORE_EOS, O_BACKEND,
           O_THREADS, O_CONTEXT, O_JSON_SCHEMA, O_JSON_OBJECT, O_REGEX, O_CHOICE, O_LARK, O_LOGPROBS, O_CPUW, O_GPUW };
    static const struct option lopts[] = {
        {"model", required_argument, NULL, 'm'},         {"prompt", required_argument, NULL, 'p'},
        {"chat", required_argument, NULL, O_CHAT},       {"system", required_argument, NULL, O_SYSTEM},
        {"max-tokens", required_argument, NULL, 'n'},    {"temp", required_argument, NULL, O_TEMP},
        {"top-p", required_argument, NULL, O_TOPP},      {"top-k", required_argument, NULL, O_TOPK},
        {"min-p", required_argument, NULL, O_MINP},      {"seed", required_argument, NULL, O_SEED},
        {"stop", required_argument, NULL, O_STOP},       {"ignore-eos", no_argument, NULL, O_IGNORE_EOS},
        {"backend", required_argument, NULL, O_BACKEND}, {"threads", required_argument, NULL, O_THREADS},
        {"context", required_argument, NULL, O_CONTEXT}, {"verbose", no_argument, NULL, 'v'},
        {"json-schema", required_argument, NULL, O_JSON_SCHEMA}, {"json-object", no_argument, NULL, O_JSON_OBJECT},
        {"regex", required_argument, NULL, O_REGEX},     {"choice", required_argument, NULL, O_CHOICE},
        {"lark", required_argument, NULL, O_LARK},       {"logprobs", required_argument, NULL, O_LOGPROBS},
        {"cpu-weights", required_argument, NULL, O_CPUW},
        {"gpu-weights", required_argument, NULL, O_GPUW},
        CLI_OPTIONS_END};
    *a = (args_t){.rq = {.id = 1, .max_tokens = 128, .top_p = 1.0f}};
    engine_config_defaults(&a->cfg);
    int c;
    while ((c = getopt_long(argc, argv, "m:p:n:vh", lopts, NULL)) != -1) {
        switch (c) {
        case 'm': a->cfg.model_path = optarg; break;
        case 'p': a->prompt = optarg; break;
        case O_CHAT: a->chat = optarg; break;
        case O_SYSTEM: a->system_msg = optarg; break;
        case 'n': a->rq.max_tokens = (int)cli_long("--max-tokens", optarg, 1, 1 << 20); break;
        case O_TEMP: a->rq.temperature = (float)cli_double("--temp", optarg, 0, 2); break;
        case O_TOPP: a->rq.top_p = (float)cli_double("--top-p", optarg, 1e-6, 1); break;
        case O_TOPK: a->rq.top_k = (int)cli_long("--top-k", optarg, 0, 1 << 30); break;
        case O_MINP: a->rq.min_p = (float)cli_double("--min-p", optarg, 0, 1); break;
        case O_SEED:
            a->rq.seed = cli_u64("--seed", optarg);
            a->rq.has_seed = true;
            break;
        case O_STOP:
            if (a->rq.n_stop == ENGINE_MAX_STOP) cli_usage_error("at most %d --stop strings", ENGINE_MAX_STOP);
            a->rq.stop[a->rq.n_stop++] = optarg;
            break;
        case O_IGNORE_EOS: a->rq.ignore_eos = true; break;
        case O_BACKEND: a->cfg.backend = optarg; break;
        case O_THREADS: a->cfg.n_threads = (int)cli_long("--threads", optarg, 0, 1024); break;
        case O_CONTEXT: a->cfg.context = (int)cli_long("--context", optarg, 2, 1 << 24); break;
        case O_CPUW: a->cfg.cpu_weights = optarg; break;
        case O_GPUW: a->cfg.gpu_weights = optarg; break;
        case 'v': a->verbose = true; break;
        case O_JSON_SCHEMA:
        case O_JSON_OBJECT:
        case O_REGEX:
        case O_CHOICE:
        case O_LARK:
            if (a->rq.grammar_kind != ENGINE_GRAMMAR_NONE)
                cli_usage_error("give at most one of --json-schema, --json-object, --regex, --choice, --lark");
            if (c == O_JSON_SCHEMA || c == O_LARK) {
                a->grammar = cli_file(c == O_LARK ? "--lark" : "--json-schema", optarg, &a->rq.grammar_len);
                a->rq.grammar = a->grammar;
            } else if (c != O_JSON_OBJECT) {
                a->rq.grammar = optarg;
                a->rq.grammar_len = strlen(optarg);
            }
            a->rq.grammar_kind = c == O_JSON_SCHEMA   ? ENGINE_GRAMMAR_JSON_SCHEMA
                                 : c == O_JSON_OBJECT ? ENGINE_GRAMMAR_JSON_OBJECT
                                 : c == O_REGEX       ? ENGINE_GRAMMAR_REGEX
                                 : c == O_CHOICE      ? ENGINE_GRAMMAR_CHOICE
                                                      : ENGINE_GRAMMAR_LARK;
            break;
        case O_LOGPROBS:
            a->rq.logprobs = true;
            a->rq.top_logprobs = (int)cli_long("--logprobs", optarg, 0, ENGINE_MAX_TOP_LOGPROBS);
            break;
        default: cli_default(c, usage);
        }
    }
    cli_no_operands(argc, argv);
    if (!a->cfg.model_path || (!a->prompt == !a->chat))
        cli_usage_error("give -m MODEL and exactly one of -p TEXT or --chat TEXT");
}

int main(int argc, char **argv) {
    args_t a;
    cli_init("krill-generate");
    argparse(argc, argv, &a);
    const char *prompt = a.prompt, *chat = a.chat, *system_msg = a.system_msg;
    engine_config_t cfg = a.cfg;
    engine_request_t rq = a.rq;
    log_set_level(a.verbose ? LOG_LVL_INFO : LOG_LVL_WARN);

    char err[512];
    engine_t *e = engine_open(&cfg, err, sizeof(err));
    if (!e) {
        fprintf(stderr, "krill-generate: %s\n", err);
        return 1;
    }
    const engine_info_t *info = engine_get_info(e);
    int rc = 1;
    int32_t *ids = NULL;
    int n_ids = 0;
    engine_result_t res = {0};
    if (chat) {
        engine_chat_msg_t msgs[2];
        size_t n = 0;
        if (system_msg) msgs[n++] = (engine_chat_msg_t){"system", system_msg};
        msgs[n++] = (engine_chat_msg_t){"user", chat};
        /* as the worker: the template's markup (its own BOS text) with special
         * tokens, the messages as text (docs/chat.md) */
        bool rendered = false;
        if (engine_chat_tokenize(e, msgs, n, false, &ids, &n_ids, &rendered, err, sizeof(err)) != 0) {
            fprintf(stderr, "krill-generate: %s%s\n", rendered ? "" : "chat template: ", err);
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
    for (int i = 0; res.logprobs && i < res.n_tokens; i++) {
        fprintf(stderr, "logprob {\"index\":%d,\"id\":%d,\"logprob\":%.9g,\"top\":[", i, res.tokens[i],
                (double)res.logprobs[i]);
        for (int j = 0; j < res.n_top; j++)
            fprintf(stderr, "%s[%d,%.9g]", j ? "," : "", res.top[(size_t)i * (size_t)res.n_top + j].id,
                    (double)res.top[(size_t)i * (size_t)res.n_top + j].logprob);
        fprintf(stderr, "]}\n");
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
    engine_close(e);
    free(a.grammar);
    return rc;
}
