/* krill-bench — offline throughput of the engine: N requests of exactly P prompt
 * tokens and O output tokens (ignore_eos, greedy), all submitted at once, stepped
 * until the last one finishes. Reports requests/s, output and total tokens/s,
 * TTFT and TPOT percentiles and the peak RSS; with --requests 1 it is a batch-1
 * decode benchmark. --shared-prefix-len N makes the first N prompt tokens the same for
 * every request (the prefix cache's workload); output_digest (SHA-256 over every
 * request's generated ids, in request order) proves two runs produced the same tokens.
 * Model loading is not timed. Results go to stdout (text, or one
 * JSON object with --json); the engine's log goes to stderr. */
#ifndef KRILL_NO_JANSSON
#include <jansson.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench_load.h"
#include "cli.h"
#include "clock.h"
#include "engine.h"
#include "log.h"
#include "sha256.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: krill-bench -m MODEL --requests N --prompt-len P --output-len O [options]\n"
            "  -m, --model PATH          GGUF model file\n"
            "      --requests N          requests, all submitted at once (1 = batch-1 decode)\n"
            "      --prompt-len P        prompt tokens per request (synthetic, exactly P)\n"
            "      --output-len O        generated tokens per request (ignore_eos)\n"
            "      --backend B           cpu | cuda | auto (default auto)\n"
            "      --threads N           cpu threads (default: online cores)\n"
            "      --max-seqs S          sequences per step (default: engine default)\n"
            "      --max-batch-tokens T  tokens per step (default: engine default)\n"
            "      --kv-cache-tokens K   KV cache capacity (default: engine default)\n"
            "      --kv-dtype D          KV cache storage f16 | f32 (default: engine default)\n"
            "      --kv-overcommit X     admission overcommit (default: engine default)\n"
            "      --cpu-weights W       cpu matmul weights auto | f32 | q8 | q4 (default auto)\n"
            "      --gpu-weights W       cuda matmul weights auto | bf16 | native (default auto)\n"
            "      --seed S              prompt generator seed (default 1)\n"
            "      --temperature T       sampling temperature of every request (default 0 = greedy)\n"
            "      --top-p P             nucleus sampling mass (default 1 = off; needs --temperature)\n"
            "      --shared-prefix-len N the first N prompt tokens are the same for every request (default 0)\n"
            "      --prefix-cache on|off the engine's prefix cache (default on)\n"
            "      --json-schema FILE    constrain every request's output to this JSON Schema\n"
            "                            (structured outputs; pick one that admits O tokens)\n"
            "      --json                one JSON object on stdout\n"
            "  -v, --verbose             engine log at info level\n"
            "  -h, --help                this text\n"
            "      --version             print the version\n");
}

typedef struct {
    engine_config_t cfg;
    long n_req, plen, olen, seed, shared;
    double temperature, top_p;
    bool json, verbose;
    char *schema; /* --json-schema: the file's text, malloc'd */
    size_t schema_len;
} args_t;

static void argparse(int argc, char **argv, args_t *a) {
    enum { O_REQ = 256, O_PLEN, O_OLEN, O_BACKEND, O_THREADS, O_SEQS, O_MBT, O_KVT, O_KVD, O_OVER, O_SEED,
           O_TEMP, O_TOPP, O_JSON, O_SHARED, O_PREFIX, O_SCHEMA, O_CPUW, O_GPUW };
    static const struct option lopts[] = {
        {"model", required_argument, NULL, 'm'},          {"requests", required_argument, NULL, O_REQ},
        {"prompt-len", required_argument, NULL, O_PLEN},  {"output-len", required_argument, NULL, O_OLEN},
        {"backend", required_argument, NULL, O_BACKEND},  {"threads", required_argument, NULL, O_THREADS},
        {"max-seqs", required_argument, NULL, O_SEQS},    {"max-batch-tokens", required_argument, NULL, O_MBT},
        {"kv-cache-tokens", required_argument, NULL, O_KVT}, {"kv-dtype", required_argument, NULL, O_KVD},
        {"kv-overcommit", required_argument, NULL, O_OVER}, {"seed", required_argument, NULL, O_SEED},
        {"temperature", required_argument, NULL, O_TEMP}, {"top-p", required_argument, NULL, O_TOPP},
        {"json", no_argument, NULL, O_JSON},              {"verbose", no_argument, NULL, 'v'},
        {"shared-prefix-len", required_argument, NULL, O_SHARED}, {"prefix-cache", required_argument, NULL, O_PREFIX},
        {"json-schema", required_argument, NULL, O_SCHEMA},
        {"cpu-weights", required_argument, NULL, O_CPUW},
        {"gpu-weights", required_argument, NULL, O_GPUW}, CLI_OPTIONS_END};
    *a = (args_t){.n_req = -1, .plen = -1, .olen = -1, .seed = 1, .temperature = 0.0, .top_p = 1.0};
    engine_config_t *cfg = &a->cfg;
    engine_config_defaults(cfg);
    int c;
    while ((c = getopt_long(argc, argv, "m:vh", lopts, NULL)) != -1) {
        switch (c) {
        case 'm': cfg->model_path = optarg; break;
        case O_REQ: a->n_req = cli_long("--requests", optarg, 1, 1000000); break;
        case O_PLEN: a->plen = cli_long("--prompt-len", optarg, 1, 1 << 24); break;
        case O_OLEN: a->olen = cli_long("--output-len", optarg, 1, 1 << 24); break;
        case O_BACKEND: cfg->backend = optarg; break;
        case O_THREADS: cfg->n_threads = (int)cli_long("--threads", optarg, 0, 1024); break;
        case O_SEQS: cfg->max_seqs = (int)cli_long("--max-seqs", optarg, 1, 65536); break;
        case O_MBT: cfg->max_batch_tokens = (int)cli_long("--max-batch-tokens", optarg, 1, 1 << 20); break;
        case O_KVT: cfg->kv_cache_tokens = cli_long("--kv-cache-tokens", optarg, 1, 1L << 40); break;
        case O_KVD: cfg->kv_dtype = optarg; break;
        case O_OVER: cfg->kv_overcommit = cli_double("--kv-overcommit", optarg, 1, 1e6); break;
        case O_SEED: a->seed = cli_long("--seed", optarg, 0, 1L << 40); break;
        case O_TEMP: a->temperature = cli_double("--temperature", optarg, 0, 2); break;
        case O_TOPP: a->top_p = cli_double("--top-p", optarg, 1e-6, 1); break;
        case O_JSON: a->json = true; break;
        case O_SHARED: a->shared = cli_long("--shared-prefix-len", optarg, 0, 1 << 24); break;
        case O_PREFIX:
            if (strcmp(optarg, "on") && strcmp(optarg, "off")) cli_usage_error("--prefix-cache takes on or off");
            cfg->prefix_cache = strcmp(optarg, "on") == 0;
            break;
        case O_SCHEMA: a->schema = cli_file("--json-schema", optarg, &a->schema_len); break;
        case O_CPUW: cfg->cpu_weights = optarg; break;
        case O_GPUW: cfg->gpu_weights = optarg; break;
        case 'v': a->verbose = true; break;
        default: cli_default(c, usage);
        }
    }
    cli_no_operands(argc, argv);
    if (!cfg->model_path || a->n_req < 0 || a->plen < 0 || a->olen < 0)
        cli_usage_error("-m, --requests, --prompt-len and --output-len are required");
    if (a->shared > a->plen) cli_usage_error("--shared-prefix-len must not exceed --prompt-len");
}

/* What one run measured. */
typedef struct {
    double load_s, wall_s, req_s, out_s, tot_s, rss_mb, dec_s;
    double ttft50, ttft99, tpot50, tpot99, lat50;
    uint64_t steps;
    double seqs_mean; /* sequences per step */
    long cached;      /* prompt tokens served from the prefix cache */
    char digest[2 * SHA256_BYTES + 1];
    int max_seqs_seen;
    engine_stats_t st;
} report_t;

/* output_digest: SHA-256 over the requests in id order, each as its count of generated
 * ids then the ids (little-endian uint32 each). Sorts res by id. */
static int cmp_id(const void *x, const void *y) {
    uint64_t a = ((const engine_result_t *)x)->id, b = ((const engine_result_t *)y)->id;
    return (a > b) - (a < b);
}
static void put_le32(sha256_t *c, uint32_t v) {
    uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    sha256_update(c, le, 4);
}
static void digest_results(engine_result_t *res, size_t n, char out[2 * SHA256_BYTES + 1]) {
    qsort(res, n, sizeof(*res), cmp_id);
    sha256_t c;
    uint8_t d[SHA256_BYTES];
    sha256_init(&c);
    for (size_t i = 0; i < n; i++) {
        put_le32(&c, (uint32_t)res[i].n_tokens);
        for (int k = 0; k < res[i].n_tokens; k++) put_le32(&c, (uint32_t)res[i].tokens[k]);
    }
    sha256_final(&c, d);
    sha256_hex(d, out);
}

/* Submits every request at once and steps until the last one finishes; 0, or -1 after
 * printing why. */
static int bench_run(engine_t *e, const args_t *a, report_t *r) {
    const long n_req = a->n_req, plen = a->plen;
    const size_t n = (size_t)n_req;
    char err[512];
    int rc = -1;
    int32_t *prompts = malloc(n * (size_t)plen * sizeof(int32_t));
    engine_result_t *res = calloc(n, sizeof(engine_result_t));
    double *ttft = malloc(n * sizeof(double)), *tpot = malloc(n * sizeof(double)), *lat = malloc(n * sizeof(double));
    if (!prompts || !res || !ttft || !tpot || !lat) {
        fprintf(stderr, "krill-bench: out of memory for %ld requests\n", n_req);
        goto out;
    }
    bench_load_t load; /* synthetic prompts, different per request */
    bench_load_init(&load, (uint64_t)a->seed, engine_get_info(e)->n_vocab);
    bench_load_prompt(&load, prompts, n * (size_t)plen);
    for (size_t i = 1; i < n; i++) memcpy(prompts + i * (size_t)plen, prompts, (size_t)a->shared * sizeof(int32_t));

    double t0 = clock_now_ms();
    for (long i = 0; i < n_req; i++) {
        engine_request_t q = {.id = (uint64_t)i, .prompt = prompts + i * plen, .n_prompt = (int)plen,
                              .max_tokens = (int)a->olen, .ignore_eos = true, .temperature = (float)a->temperature,
                              .top_p = (float)a->top_p, .has_seed = true, .seed = (uint64_t)i + 1,
                              .grammar_kind = a->schema ? ENGINE_GRAMMAR_JSON_SCHEMA : ENGINE_GRAMMAR_NONE,
                              .grammar = a->schema, .grammar_len = a->schema_len};
        if (engine_submit(e, &q, err, sizeof(err)) != ENGINE_OK) {
            fprintf(stderr, "krill-bench: request %ld: %s\n", i, err);
            goto out;
        }
    }
    size_t got = 0;
    double seqs_sum = 0;
    while (got < n) {
        int ns = engine_step(e);
        if (ns > 0) {
            r->steps++;
            seqs_sum += ns;
            if (ns > r->max_seqs_seen) r->max_seqs_seen = ns;
        }
        got += engine_poll(e, res + got, n - got);
    }
    r->wall_s = (clock_now_ms() - t0) / 1000.0;
    r->seqs_mean = r->steps ? seqs_sum / (double)r->steps : 0.0;
    engine_get_stats(e, &r->st);

    digest_results(res, n, r->digest);
    long out_tok = 0;
    for (size_t i = 0; i < n; i++) {
        r->cached += res[i].cached_tokens;
        if (res[i].finish == ENGINE_FINISH_ERROR) {
            fprintf(stderr, "krill-bench: request %llu failed: %s\n", (unsigned long long)res[i].id, res[i].error);
            goto out;
        }
        out_tok += res[i].completion_tokens;
        ttft[i] = res[i].ttft_ms;
        lat[i] = res[i].total_ms;
        tpot[i] = res[i].completion_tokens > 1
                      ? (res[i].total_ms - res[i].ttft_ms) / (res[i].completion_tokens - 1)
                      : 0;
    }
    r->ttft50 = bench_pct(ttft, n, 50);
    r->ttft99 = bench_pct(ttft, n, 99);
    r->tpot50 = bench_pct(tpot, n, 50);
    r->tpot99 = bench_pct(tpot, n, 99);
    r->lat50 = bench_pct(lat, n, 50);
    r->dec_s = tpot[n / 2] > 0 ? 1000.0 / tpot[n / 2] : 0; /* tpot is sorted now */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    r->rss_mb = (double)ru.ru_maxrss / 1024.0;
    r->req_s = n_req / r->wall_s;
    r->out_s = out_tok / r->wall_s;
    r->tot_s = (double)(out_tok + n_req * plen) / r->wall_s;
    rc = 0;
out:
    for (size_t i = 0; i < n && res; i++) engine_result_clear(&res[i]);
    free(res);
    free(prompts);
    free(ttft);
    free(tpot);
    free(lat);
    return rc;
}

/* --json: one object on stdout. */
static void print_json(const args_t *a, const engine_info_t *info, const report_t *r) {
    const long n_req = a->n_req, plen = a->plen, olen = a->olen;
    const double temperature = a->temperature, top_p = a->top_p;
#ifdef KRILL_NO_JANSSON
    /* bare GPU machines (scripts/gpu-check.sh): the same object by hand; the two
     * free-text fields keep only characters that need no JSON escaping */
    char name[128], dev[128];
    snprintf(name, sizeof name, "%s", info->model_name);
    snprintf(dev, sizeof dev, "%s", info->device);
    for (char *c = name; *c; c++) *c = (*c == '"' || *c == '\\' || (unsigned char)*c < 32) ? '_' : *c;
    for (char *c = dev; *c; c++) *c = (*c == '"' || *c == '\\' || (unsigned char)*c < 32) ? '_' : *c;
    printf("{\"engine\":\"krill\",\"version\":\"%s\",\"model\":\"%s\",\"device\":\"%s\",\"requests\":%ld,"
           "\"prompt_len\":%ld,\"output_len\":%ld,\"temperature\":%.9g,\"top_p\":%.9g,\"max_seqs\":%d,\"max_batch_tokens\":%d,\"kv_cache_tokens\":%lld,"
           "\"load_s\":%.17g,\"wall_s\":%.17g,\"requests_per_s\":%.17g,\"output_tok_per_s\":%.17g,"
           "\"total_tok_per_s\":%.17g,\"ttft_ms_p50\":%.17g,\"ttft_ms_p99\":%.17g,\"tpot_ms_p50\":%.17g,"
           "\"tpot_ms_p99\":%.17g,\"latency_ms_p50\":%.17g,\"decode_tok_per_s_p50\":%.17g,\"peak_rss_mb\":%.17g,"
           "\"steps\":%llu,\"preemptions\":%llu,\"mean_seqs_per_step\":%.17g,\"max_seqs_per_step\":%d,"
           "\"gpu_busy_ms\":%.17g,\"gpu_idle_ms\":%.17g,\"graph_captures\":%llu,\"graph_replays\":%llu,"
           "\"argmax_steps\":%llu,\"shared_prefix_len\":%ld,\"prefix_cache\":%s,\"cached_prompt_tokens\":%ld,"
           "\"output_digest\":\"%s\"}\n",
           KRILL_VERSION, name, dev, n_req, plen, olen, (double)(float)temperature, (double)(float)top_p, info->max_seqs, info->max_batch_tokens,
           (long long)info->kv_cache_tokens, r->load_s, r->wall_s, r->req_s, r->out_s, r->tot_s, r->ttft50,
           r->ttft99, r->tpot50, r->tpot99,
           r->lat50, r->dec_s, r->rss_mb, (unsigned long long)r->steps,
           (unsigned long long)r->st.preemptions, r->seqs_mean, r->max_seqs_seen,
           r->st.gpu_busy_ms, r->st.gpu_idle_ms, (unsigned long long)r->st.graph_captures,
           (unsigned long long)r->st.graph_replays, (unsigned long long)r->st.argmax_steps, a->shared,
           a->cfg.prefix_cache ? "true" : "false", r->cached, r->digest);
#else
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:f, s:f, s:i, s:i, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, "
                          "s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:f, s:i, s:f, s:f, s:I, s:I, s:I}",
                          "engine", "krill", "version", KRILL_VERSION, "model", info->model_name, "device",
                          info->device, "requests", (int)n_req, "prompt_len", (int)plen, "output_len", (int)olen,
                          "temperature", (double)(float)temperature, "top_p", (double)(float)top_p,
                          "max_seqs", info->max_seqs, "max_batch_tokens", info->max_batch_tokens,
                          "kv_cache_tokens", (json_int_t)info->kv_cache_tokens, "load_s", r->load_s,
                          "wall_s", r->wall_s, "requests_per_s", r->req_s, "output_tok_per_s", r->out_s,
                          "total_tok_per_s", r->tot_s, "ttft_ms_p50", r->ttft50, "ttft_ms_p99", r->ttft99,
                          "tpot_ms_p50", r->tpot50, "tpot_ms_p99", r->tpot99,
                          "latency_ms_p50", r->lat50, "decode_tok_per_s_p50", r->dec_s,
                          "peak_rss_mb", r->rss_mb, "steps", (json_int_t)r->steps, "preemptions",
                          (json_int_t)r->st.preemptions, "mean_seqs_per_step", r->seqs_mean,
                          "max_seqs_per_step", r->max_seqs_seen, "gpu_busy_ms", r->st.gpu_busy_ms, "gpu_idle_ms",
                          r->st.gpu_idle_ms, "graph_captures", (json_int_t)r->st.graph_captures, "graph_replays",
                          (json_int_t)r->st.graph_replays, "argmax_steps", (json_int_t)r->st.argmax_steps);
    json_object_set_new(o, "shared_prefix_len", json_integer(a->shared));
    json_object_set_new(o, "prefix_cache", json_boolean(a->cfg.prefix_cache));
    json_object_set_new(o, "cached_prompt_tokens", json_integer(r->cached));
    json_object_set_new(o, "output_digest", json_string(r->digest));
    json_object_set_new(o, "json_schema", json_boolean(a->schema != NULL));
    json_object_set_new(o, "grammar_steps", json_integer((json_int_t)r->st.grammar_steps));
    json_object_set_new(o, "grammar_rows", json_integer((json_int_t)r->st.grammar_rows));
    json_object_set_new(o, "grammar_mask_ms", json_real(r->st.grammar_mask_ms));
    json_object_set_new(o, "grammar_wait_ms", json_real(r->st.grammar_wait_ms));
    char *txt = json_dumps(o, JSON_COMPACT);
    puts(txt);
    free(txt);
    json_decref(o);
#endif
}

static void print_text(const args_t *a, const engine_info_t *info, const report_t *r) {
    const long n_req = a->n_req, plen = a->plen, olen = a->olen;
    printf("krill-bench %s: %s on %s (%s)\n", KRILL_VERSION, info->model_name, info->backend, info->device);
    printf("workload: %ld requests x %ld prompt + %ld output tokens, greedy, ignore_eos, all at once\n", n_req,
           plen, olen);
    printf("engine: max_seqs %d, max_batch_tokens %d, kv cache %lld tokens; load %.2f s\n", info->max_seqs,
           info->max_batch_tokens, (long long)info->kv_cache_tokens, r->load_s);
    printf("wall             %10.2f s   (%llu steps, %.1f seqs/step mean, %d max, %llu preemptions)\n", r->wall_s,
           (unsigned long long)r->steps, r->seqs_mean, r->max_seqs_seen,
           (unsigned long long)r->st.preemptions);
    printf("requests/s       %10.3f\n", r->req_s);
    printf("output tok/s     %10.1f\n", r->out_s);
    printf("total tok/s      %10.1f\n", r->tot_s);
    printf("TTFT ms          p50 %9.1f   p99 %9.1f\n", r->ttft50, r->ttft99);
    printf("TPOT ms          p50 %9.2f   p99 %9.2f   (decode %.1f tok/s per request at p50)\n",
           r->tpot50, r->tpot99, r->dec_s);
    printf("peak RSS         %10.1f MB\n", r->rss_mb);
    printf("prefix cache     %s, shared prefix %ld tokens; %ld prompt tokens served from the cache\n",
           a->cfg.prefix_cache ? "on" : "off", a->shared, r->cached);
    printf("output digest    %s\n", r->digest);
    printf("device           busy %.1f ms, idle between steps %.1f ms; graphs %llu captured, %llu replays; "
           "%llu steps sampled on the device\n", r->st.gpu_busy_ms, r->st.gpu_idle_ms,
           (unsigned long long)r->st.graph_captures, (unsigned long long)r->st.graph_replays,
           (unsigned long long)r->st.argmax_steps);
    if (a->schema) {
        const engine_stats_t *st = &r->st;
        printf("grammar          %llu steps, %llu rows; masks %.3f ms/step, %.4f ms/row (wall on llguidance's "
               "threads, during the forward pass); engine waited %.1f ms in all\n",
               (unsigned long long)st->grammar_steps, (unsigned long long)st->grammar_rows,
               st->grammar_steps ? st->grammar_mask_ms / (double)st->grammar_steps : 0.0,
               st->grammar_rows ? st->grammar_mask_ms / (double)st->grammar_rows : 0.0, st->grammar_wait_ms);
    }
}

int main(int argc, char **argv) {
    args_t a;
    cli_init("krill-bench");
    argparse(argc, argv, &a);
    log_set_level(a.verbose ? LOG_LVL_INFO : LOG_LVL_WARN);
    a.cfg.seed = 1;
    char err[512];
    double t_load = clock_now_ms();
    engine_t *e = engine_open(&a.cfg, err, sizeof(err));
    if (!e) {
        fprintf(stderr, "krill-bench: %s\n", err);
        return 1;
    }
    report_t r = {.load_s = (clock_now_ms() - t_load) / 1000.0};
    int rc = bench_run(e, &a, &r);
    if (rc == 0) {
        if (a.json) print_json(&a, engine_get_info(e), &r);
        else print_text(&a, engine_get_info(e), &r);
    }
    engine_close(e);
    free(a.schema);
    return rc == 0 ? 0 : 1;
}
