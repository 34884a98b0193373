/* krill-bench — offline throughput of the engine: N requests of exactly P prompt
 * tokens and O output tokens (ignore_eos, greedy), all submitted at once, stepped
 * until the last one finishes. Reports requests/s, output and total tokens/s,
 * TTFT and TPOT percentiles and the peak RSS; with --requests 1 it is a batch-1
 * decode benchmark. Model loading is not timed. Results go to stdout (text, or one
 * JSON object with --json); the engine's log goes to stderr. */
#include <errno.h>
#include <getopt.h>
#ifndef KRILL_NO_JANSSON
#include <jansson.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "clock.h"
#include "engine.h"
#include "log.h"

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
            "      --seed S              prompt generator seed (default 1)\n"
            "      --temperature T       sampling temperature of every request (default 0 = greedy)\n"
            "      --top-p P             nucleus sampling mass (default 1 = off; needs --temperature)\n"
            "      --json                one JSON object on stdout\n"
            "  -v, --verbose             engine log at info level\n"
            "  -h, --help                this text\n"
            "      --version             print the version\n");
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static double pct(const double *v, int n, double p) {
    if (n <= 0) return 0.0;
    int k = (int)(p / 100.0 * n + 0.999999) - 1;
    if (k < 0) k = 0;
    if (k >= n) k = n - 1;
    return v[k];
}

static int parse_long(const char *s, const char *name, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "krill-bench: %s '%s' must be an integer in [%ld, %ld]\n", name, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

enum { O_REQ = 256, O_PLEN, O_OLEN, O_BACKEND, O_THREADS, O_SEQS, O_MBT, O_KVT, O_KVD, O_OVER, O_SEED,
       O_TEMP, O_TOPP, O_JSON, O_VERSION };

/* A number option in [lo, hi]; 0, or -1 after printing what is wrong. */
static int parse_double(const char *s, const char *what, double lo, double hi, double *out) {
    char *end;
    double x = strtod(s, &end);
    if (end == s || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "krill-bench: %s '%s' must be a number from %g to %g\n", what, s, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},          {"requests", required_argument, 0, O_REQ},
        {"prompt-len", required_argument, 0, O_PLEN},  {"output-len", required_argument, 0, O_OLEN},
        {"backend", required_argument, 0, O_BACKEND},  {"threads", required_argument, 0, O_THREADS},
        {"max-seqs", required_argument, 0, O_SEQS},    {"max-batch-tokens", required_argument, 0, O_MBT},
        {"kv-cache-tokens", required_argument, 0, O_KVT}, {"kv-dtype", required_argument, 0, O_KVD},
        {"kv-overcommit", required_argument, 0, O_OVER}, {"seed", required_argument, 0, O_SEED},
        {"temperature", required_argument, 0, O_TEMP}, {"top-p", required_argument, 0, O_TOPP},
        {"json", no_argument, 0, O_JSON},              {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},                 {"version", no_argument, 0, O_VERSION},
        {0, 0, 0, 0}};
    engine_config_t cfg;
    engine_config_defaults(&cfg);
    long n_req = -1, plen = -1, olen = -1, seed = 1, v;
    double temperature = 0.0, top_p = 1.0;
    bool json = false, verbose = false;
    int c;
    while ((c = getopt_long(argc, argv, "m:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': cfg.model_path = optarg; break;
        case O_REQ: if (parse_long(optarg, "--requests", 1, 1000000, &n_req)) return 2; break;
        case O_PLEN: if (parse_long(optarg, "--prompt-len", 1, 1 << 24, &plen)) return 2; break;
        case O_OLEN: if (parse_long(optarg, "--output-len", 1, 1 << 24, &olen)) return 2; break;
        case O_BACKEND: cfg.backend = optarg; break;
        case O_THREADS: if (parse_long(optarg, "--threads", 0, 1024, &v)) return 2; cfg.n_threads = (int)v; break;
        case O_SEQS: if (parse_long(optarg, "--max-seqs", 1, 65536, &v)) return 2; cfg.max_seqs = (int)v; break;
        case O_MBT: if (parse_long(optarg, "--max-batch-tokens", 1, 1 << 20, &v)) return 2; cfg.max_batch_tokens = (int)v; break;
        case O_KVT: if (parse_long(optarg, "--kv-cache-tokens", 1, 1L << 40, &v)) return 2; cfg.kv_cache_tokens = v; break;
        case O_KVD: cfg.kv_dtype = optarg; break;
        case O_OVER: if (parse_double(optarg, "--kv-overcommit", 1, 1e6, &cfg.kv_overcommit)) return 2; break;
        case O_SEED: if (parse_long(optarg, "--seed", 0, 1L << 40, &seed)) return 2; break;
        case O_TEMP: if (parse_double(optarg, "--temperature", 0, 2, &temperature)) return 2; break;
        case O_TOPP: if (parse_double(optarg, "--top-p", 1e-6, 1, &top_p)) return 2; break;
        case O_JSON: json = true; break;
        case 'v': verbose = true; break;
        case 'h': usage(stdout); return 0;
        case O_VERSION: printf("krill-bench %s\n", KRILL_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "krill-bench: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!cfg.model_path || n_req < 0 || plen < 0 || olen < 0) {
        fprintf(stderr, "krill-bench: -m, --requests, --prompt-len and --output-len are required (see --help)\n");
        return 2;
    }
    log_set_level(verbose ? LOG_LVL_INFO : LOG_LVL_WARN);
    cfg.seed = 1;

    char err[512];
    double t_load = clock_now_ms();
    engine_t *e = engine_open(&cfg, err, sizeof(err));
    if (!e) {
        fprintf(stderr, "krill-bench: %s\n", err);
        return 1;
    }
    t_load = clock_now_ms() - t_load;
    const engine_info_t *info = engine_get_info(e);
    int rc = 1;
    int32_t *prompts = malloc((size_t)n_req * (size_t)plen * sizeof(int32_t));
    engine_result_t *res = calloc((size_t)n_req, sizeof(engine_result_t));
    double *ttft = malloc((size_t)n_req * sizeof(double)), *tpot = malloc((size_t)n_req * sizeof(double));
    double *lat = malloc((size_t)n_req * sizeof(double));
    if (!prompts || !res || !ttft || !tpot || !lat) {
        fprintf(stderr, "krill-bench: out of memory for %ld requests\n", n_req);
        goto out;
    }
    /* synthetic prompts: ordinary tokens (ids past the control-token range at the start
     * of the vocabulary), different per request, from a fixed LCG */
    uint64_t x = (uint64_t)seed * 6364136223846793005ULL + 1442695040888963407ULL;
    const int lo = info->n_vocab > 1000 ? 256 : 3, span = info->n_vocab - lo - 1;
    for (long i = 0; i < n_req * plen; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        prompts[i] = lo + (int32_t)((x >> 33) % (uint64_t)span);
    }

    double t0 = clock_now_ms();
    for (long i = 0; i < n_req; i++) {
        engine_request_t q = {.id = (uint64_t)i, .prompt = prompts + i * plen, .n_prompt = (int)plen,
                              .max_tokens = (int)olen, .ignore_eos = true, .temperature = (float)temperature,
                              .top_p = (float)top_p, .has_seed = true, .seed = (uint64_t)i + 1};
        int src = engine_submit(e, &q, err, sizeof(err));
        if (src != ENGINE_OK) {
            fprintf(stderr, "krill-bench: request %ld: %s\n", i, err);
            goto out;
        }
    }
    long got = 0;
    uint64_t steps = 0;
    int max_seqs_seen = 0;
    double seqs_sum = 0;
    while (got < n_req) {
        int ns = engine_step(e);
        if (ns > 0) {
            steps++;
            seqs_sum += ns;
            if (ns > max_seqs_seen) max_seqs_seen = ns;
        }
        got += (long)engine_poll(e, res + got, (size_t)(n_req - got));
    }
    double wall_ms = clock_now_ms() - t0;
    engine_stats_t st;
    engine_get_stats(e, &st);

    long out_tok = 0;
    for (long i = 0; i < n_req; i++) {
        if (res[i].finish == ENGINE_FINISH_ERROR) {
            fprintf(stderr, "krill-bench: request %llu failed: %s\n", (unsigned long long)res[i].id, res[i].error);
            goto out;
        }
        out_tok += res[i].completion_tokens;
        ttft[i] = res[i].ttft_ms;
        lat[i] = res[i].total_ms;
        tpot[i] = res[i].completion_tokens > 1 ? (res[i].total_ms - res[i].ttft_ms) / (res[i].completion_tokens - 1) : 0;
    }
    qsort(ttft, (size_t)n_req, sizeof(double), cmp_double);
    qsort(tpot, (size_t)n_req, sizeof(double), cmp_double);
    qsort(lat, (size_t)n_req, sizeof(double), cmp_double);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss_mb = (double)ru.ru_maxrss / 1024.0;
    double s = wall_ms / 1000.0;
    double req_s = n_req / s, out_s = out_tok / s, tot_s = (double)(out_tok + n_req * plen) / s;
    double dec_s = tpot[n_req / 2] > 0 ? 1000.0 / tpot[n_req / 2] : 0;

    if (json) {
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
               "\"argmax_steps\":%llu}\n",
               KRILL_VERSION, name, dev, n_req, plen, olen, (double)(float)temperature, (double)(float)top_p, info->max_seqs, info->max_batch_tokens,
               (long long)info->kv_cache_tokens, t_load / 1000.0, s, req_s, out_s, tot_s, pct(ttft, (int)n_req, 50),
               pct(ttft, (int)n_req, 99), pct(tpot, (int)n_req, 50), pct(tpot, (int)n_req, 99),
               pct(lat, (int)n_req, 50), dec_s, rss_mb, (unsigned long long)steps,
               (unsigned long long)st.preemptions, steps ? seqs_sum / (double)steps : 0.0, max_seqs_seen,
               st.gpu_busy_ms, st.gpu_idle_ms, (unsigned long long)st.graph_captures,
               (unsigned long long)st.graph_replays, (unsigned long long)st.argmax_steps);
#else
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:f, s:f, s:i, s:i, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, "
                              "s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:f, s:i, s:f, s:f, s:I, s:I, s:I}",
                              "engine", "krill", "version", KRILL_VERSION, "model", info->model_name, "device",
                              info->device, "requests", (int)n_req, "prompt_len", (int)plen, "output_len", (int)olen,
                              "temperature", (double)(float)temperature, "top_p", (double)(float)top_p,
                              "max_seqs", info->max_seqs, "max_batch_tokens", info->max_batch_tokens,
                              "kv_cache_tokens", (json_int_t)info->kv_cache_tokens, "load_s", t_load / 1000.0,
                              "wall_s", s, "requests_per_s", req_s, "output_tok_per_s", out_s, "total_tok_per_s",
                              tot_s, "ttft_ms_p50", pct(ttft, (int)n_req, 50), "ttft_ms_p99", pct(ttft, (int)n_req, 99),
                              "tpot_ms_p50", pct(tpot, (int)n_req, 50), "tpot_ms_p99", pct(tpot, (int)n_req, 99),
                              "latency_ms_p50", pct(lat, (int)n_req, 50), "decode_tok_per_s_p50", dec_s,
                              "peak_rss_mb", rss_mb, "steps", (json_int_t)steps, "preemptions",
                              (json_int_t)st.preemptions, "mean_seqs_per_step", steps ? seqs_sum / (double)steps : 0.0,
                              "max_seqs_per_step", max_seqs_seen, "gpu_busy_ms", st.gpu_busy_ms, "gpu_idle_ms",
                              st.gpu_idle_ms, "graph_captures", (json_int_t)st.graph_captures, "graph_replays",
                              (json_int_t)st.graph_replays, "argmax_steps", (json_int_t)st.argmax_steps);
        char *txt = json_dumps(o, JSON_COMPACT);
        puts(txt);
        free(txt);
        json_decref(o);
#endif
    } else {
        printf("krill-bench %s: %s on %s (%s)\n", KRILL_VERSION, info->model_name, info->backend, info->device);
        printf("workload: %ld requests x %ld prompt + %ld output tokens, greedy, ignore_eos, all at once\n", n_req,
               plen, olen);
        printf("engine: max_seqs %d, max_batch_tokens %d, kv cache %lld tokens; load %.2f s\n", info->max_seqs,
               info->max_batch_tokens, (long long)info->kv_cache_tokens, t_load / 1000.0);
        printf("wall             %10.2f s   (%llu steps, %.1f seqs/step mean, %d max, %llu preemptions)\n", s,
               (unsigned long long)steps, steps ? seqs_sum / (double)steps : 0.0, max_seqs_seen,
               (unsigned long long)st.preemptions);
        printf("requests/s       %10.3f\n", req_s);
        printf("output tok/s     %10.1f\n", out_s);
        printf("total tok/s      %10.1f\n", tot_s);
        printf("TTFT ms          p50 %9.1f   p99 %9.1f\n", pct(ttft, (int)n_req, 50), pct(ttft, (int)n_req, 99));
        printf("TPOT ms          p50 %9.2f   p99 %9.2f   (decode %.1f tok/s per request at p50)\n",
               pct(tpot, (int)n_req, 50), pct(tpot, (int)n_req, 99), dec_s);
        printf("peak RSS         %10.1f MB\n", rss_mb);
        printf("device           busy %.1f ms, idle between steps %.1f ms; graphs %llu captured, %llu replays; "
               "%llu steps sampled on the device\n", st.gpu_busy_ms, st.gpu_idle_ms,
               (unsigned long long)st.graph_captures, (unsigned long long)st.graph_replays,
               (unsigned long long)st.argmax_steps);
    }
    rc = 0;
out:
    for (long i = 0; i < n_req && res; i++) engine_result_clear(&res[i]);
    free(res);
    free(prompts);
    free(ttft);
    free(tpot);
    free(lat);
    engine_close(e);
    return rc;
}
