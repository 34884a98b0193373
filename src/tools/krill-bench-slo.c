/* krill-bench-slo — the adaptive batching benchmark: a closed-loop load step on the
 * engine (no Kafka), run with static admission limits and with the SLO controller.
 *
 * LOW clients for --low-s seconds, then HIGH clients for --high-s seconds; each client
 * sends its next request as soon as the previous one finishes. Prompts are synthetic
 * (exactly --prompt-len random token ids, seeded), ignore_eos, --output-len tokens.
 * Runs go side by side, each with its own engine (one CPU thread by default) and its
 * own clients, started together, so that whatever else loads the machine hits them
 * alike (a shared machine's load drifts by tens of percent within minutes):
 *   - the sweep: every --static S:B (max_seqs:max_batch_tokens) at once; the one with
 *     the highest high-phase throughput is "the best static setting",
 *   - --repeat pairs: the controller (batching.slo, --tpot-ms / --ttft-ms; ceilings =
 *     the best static setting, or --ceiling S:B) next to that static setting again.
 * Without --tpot-ms the TPOT target is --tpot-decode-x (1.5) times the median step time
 * of the best static run's decode-only steps at the high load: the decodes alone fit,
 * prefill may add half as much again. Whether the static setting holds it is measured,
 * not assumed (--tpot-frac F: F x its p95 TPOT instead).
 *
 * Reported per run: output tokens/s in the high phase (after --settle-s), p50/p95 of
 * TTFT and TPOT for requests sent in that window, the same for the whole high phase
 * (the transient included), and the limits the controller ended with. --json FILE
 * writes all of it; --trace FILE writes one line per step for charts.
 * A benchmark, not a test: it takes minutes of CPU; timings depend on the machine. */
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_load.h"
#include "cli.h"
#include "clock.h"
#include "engine.h"
#include "log.h"
#include "slo.h"

#define MAX_RUNS 16

typedef struct {
    double t_submit; /* s since run start */
    double ttft_ms, tpot_ms, total_ms;
    int completion;
    bool high;
} rec_t;

typedef struct {
    char name[64];
    int seqs, tokens;   /* static limits or ceilings */
    bool slo;
    double tpot_target, ttft_target;
    /* results */
    double tok_s, req_s;
    double ttft50, ttft95, tpot50, tpot95;       /* steady window */
    double ttft95_all, tpot95_all;               /* whole high phase */
    double decode_step_ms;                       /* median decode-only step in the window */
    size_t n_steady, n_all;
    int end_seqs, end_tokens;
    double end_gain;
    unsigned long changes;
} run_t;

typedef struct {
    const char *model, *backend, *json_path, *trace_path;
    int threads, prompt_len, output_len, low, high;
    double low_s, high_s, settle_s, tpot_ms, ttft_ms, tpot_frac, tpot_decode_x;
    int ceil_seqs, ceil_tokens;
    int st_seqs[MAX_RUNS], st_tokens[MAX_RUNS], n_static;
    int repeat;
    uint64_t seed;
} opts_t;

static void usage(FILE *f) {
    fprintf(f,
            "usage: krill-bench-slo -m MODEL [options]\n"
            "Closed-loop load step (LOW then HIGH concurrent clients) on the engine, with static\n"
            "admission limits and with the adaptive batching controller (batching.slo).\n"
            "  -m, --model PATH        GGUF model (required)\n"
            "  --backend B             auto | cpu | cuda (default auto)\n"
            "  --threads N             cpu threads per engine (default 1: the runs go side by side)\n"
            "  --prompt-len P          prompt tokens per request (default 128)\n"
            "  --output-len O          generated tokens per request, ignore_eos (default 64)\n"
            "  --low N, --high N       concurrent clients before/after the step (default 4, 64)\n"
            "  --low-s S, --high-s S   phase lengths in seconds (default 20, 120)\n"
            "  --settle-s S            skip this long after the step when measuring (default 20)\n"
            "  --static S:B            a static run with max_seqs S, max_batch_tokens B (repeatable;\n"
            "                          default 64:2048 64:512 64:256 32:256)\n"
            "  --ceiling S:B           controller ceilings (default: the best static run)\n"
            "  --tpot-ms T             p95 TPOT target in ms; default: --tpot-decode-x X times the best\n"
            "                          static run's median decode-only step (prefill may add (X-1) x that)\n"
            "  --tpot-decode-x X       (default 1.5)\n"
            "  --tpot-frac F           instead: F x the best static run's p95 TPOT\n"
            "  --ttft-ms T             p95 TTFT target (default: none)\n"
            "  --repeat R              controller / best-static pairs after the sweep (default 2)\n"
            "  --seed N                prompt seed (default 1)\n"
            "  --json FILE             write the results as JSON\n"
            "  --trace FILE            write one line per step: run t_s seqs tokens step_ms max_seqs max_batch_tokens\n"
            "  -h, --help              this text\n"
            "      --version           print the version\n"
            "Exit status: 0 done, 1 engine error, 2 usage.\n");
}

/* --static / --ceiling S:B: max_seqs S, max_batch_tokens B. */
static void parse_pair(const char *opt, const char *arg, int *seqs, int *tokens) {
    char err[256], num[32];
    const char *colon = strchr(arg, ':');
    long x, y;
    snprintf(num, sizeof num, "%.*s", colon ? (int)(colon - arg) : 0, arg);
    if (!colon || (size_t)(colon - arg) >= sizeof num || cli_parse_long(opt, num, 1, 100000, &x, err, sizeof err) ||
        cli_parse_long(opt, colon + 1, 1, 1000000, &y, err, sizeof err))
        cli_usage_error("%s wants S:B with S from 1 to 100000 and B from 1 to 1000000 (e.g. 64:2048), not '%s'", opt,
                        arg);
    *seqs = (int)x;
    *tokens = (int)y;
}

static void argparse(int argc, char **argv, opts_t *o) {
    enum { O_BACKEND = 256, O_THREADS, O_PLEN, O_OLEN, O_LOW, O_HIGH, O_LOW_S, O_HIGH_S, O_SETTLE_S, O_STATIC,
           O_CEILING, O_TPOT_MS, O_TPOT_FRAC, O_TTFT_MS, O_SEED, O_JSON, O_TRACE, O_REPEAT, O_TPOT_X };
    static const struct option lopts[] = {
        {"model", required_argument, NULL, 'm'},          {"backend", required_argument, NULL, O_BACKEND},
        {"threads", required_argument, NULL, O_THREADS},  {"prompt-len", required_argument, NULL, O_PLEN},
        {"output-len", required_argument, NULL, O_OLEN},  {"low", required_argument, NULL, O_LOW},
        {"high", required_argument, NULL, O_HIGH},        {"low-s", required_argument, NULL, O_LOW_S},
        {"high-s", required_argument, NULL, O_HIGH_S},    {"settle-s", required_argument, NULL, O_SETTLE_S},
        {"static", required_argument, NULL, O_STATIC},    {"ceiling", required_argument, NULL, O_CEILING},
        {"tpot-ms", required_argument, NULL, O_TPOT_MS},  {"tpot-frac", required_argument, NULL, O_TPOT_FRAC},
        {"ttft-ms", required_argument, NULL, O_TTFT_MS},  {"seed", required_argument, NULL, O_SEED},
        {"json", required_argument, NULL, O_JSON},        {"trace", required_argument, NULL, O_TRACE},
        {"repeat", required_argument, NULL, O_REPEAT},    {"tpot-decode-x", required_argument, NULL, O_TPOT_X},
        CLI_OPTIONS_END};
    *o = (opts_t){.backend = "auto", .prompt_len = 128, .output_len = 64, .low = 4, .high = 64, .low_s = 20,
                  .high_s = 120, .settle_s = 20, .tpot_decode_x = 1.5, .repeat = 2, .seed = 1};
    int c;
    while ((c = getopt_long(argc, argv, "m:h", lopts, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case O_BACKEND: o->backend = optarg; break;
        case O_THREADS: o->threads = (int)cli_long("--threads", optarg, 0, 1024); break;
        case O_PLEN: o->prompt_len = (int)cli_long("--prompt-len", optarg, 1, 1 << 24); break;
        case O_OLEN: o->output_len = (int)cli_long("--output-len", optarg, 2, 1 << 24); break;
        case O_LOW: o->low = (int)cli_long("--low", optarg, 1, 4096); break;
        case O_HIGH: o->high = (int)cli_long("--high", optarg, 1, 4096); break;
        case O_LOW_S: o->low_s = cli_double("--low-s", optarg, 0, 1e9); break;
        case O_HIGH_S: o->high_s = cli_double("--high-s", optarg, 0, 1e9); break;
        case O_SETTLE_S: o->settle_s = cli_double("--settle-s", optarg, 0, 1e9); break;
        case O_STATIC:
            if (o->n_static >= MAX_RUNS - 2) cli_usage_error("at most %d --static settings", MAX_RUNS - 2);
            parse_pair("--static", optarg, &o->st_seqs[o->n_static], &o->st_tokens[o->n_static]);
            o->n_static++;
            break;
        case O_CEILING: parse_pair("--ceiling", optarg, &o->ceil_seqs, &o->ceil_tokens); break;
        case O_TPOT_MS: o->tpot_ms = cli_double("--tpot-ms", optarg, 0, 1e9); break;
        case O_TPOT_FRAC: o->tpot_frac = cli_double("--tpot-frac", optarg, 0, 1); break;
        case O_TTFT_MS: o->ttft_ms = cli_double("--ttft-ms", optarg, 0, 1e9); break;
        case O_SEED: o->seed = (uint64_t)cli_long("--seed", optarg, 0, LONG_MAX); break;
        case O_JSON: o->json_path = optarg; break;
        case O_TRACE: o->trace_path = optarg; break;
        case O_REPEAT: o->repeat = (int)cli_long("--repeat", optarg, 1, MAX_RUNS / 2); break;
        case O_TPOT_X: o->tpot_decode_x = cli_double("--tpot-decode-x", optarg, 1, 1e6); break;
        default: cli_default(c, usage);
        }
    }
    cli_no_operands(argc, argv);
    if (!o->model) cli_usage_error("-m MODEL is required");
    if (o->n_static == 0) {
        static const int ds[] = {64, 64, 64, 32}, db[] = {2048, 512, 256, 256};
        for (int i = 0; i < 4; i++) {
            o->st_seqs[i] = ds[i];
            o->st_tokens[i] = db[i];
        }
        o->n_static = 4;
    }
    if (o->high < o->low || o->settle_s >= o->high_s || o->n_static + 2 * o->repeat > MAX_RUNS)
        cli_usage_error("need --low <= --high, --settle-s < --high-s and at most %d runs (--static settings + 2 x "
                        "--repeat)", MAX_RUNS);
}

/* One run. Returns 0, or -1 on an engine error. */
static int run_once(engine_t *e, const opts_t *o, run_t *r, FILE *trace, int n_vocab) {
    slo_t *slo = NULL;
    char err[512];
    if (r->slo) {
        slo_config_t sc;
        slo_config_defaults(&sc);
        sc.tpot_ms = r->tpot_target;
        sc.ttft_ms = r->ttft_target;
        sc.max_seqs = r->seqs;
        sc.max_batch_tokens = r->tokens;
        slo = slo_new(&sc, err, sizeof err);
        if (!slo) {
            fprintf(stderr, "krill-bench-slo: %s\n", err);
            return -1;
        }
    }
    engine_set_limits(e, r->seqs, r->tokens);
    int cur_seqs = r->seqs, cur_tokens = r->tokens;

    size_t cap = 1 << 16, n_rec = 0, dec_cap = 1 << 16, n_dec = 0;
    double *dec_ms = malloc(dec_cap * sizeof *dec_ms); /* decode-only step times in the window */
    rec_t *rec = calloc(cap, sizeof *rec);
    double *submit_t = calloc((size_t)o->high + 1, sizeof *submit_t); /* per client */
    bool *busy = calloc((size_t)o->high + 1, sizeof *busy);
    int32_t *prompt = malloc((size_t)o->prompt_len * sizeof *prompt);
    engine_result_t res[64];
    if (!rec || !submit_t || !busy || !prompt || !dec_ms) {
        fprintf(stderr, "krill-bench-slo: out of memory\n");
        return -1;
    }
    bench_load_t load; /* every run draws the same prompts */
    bench_load_init(&load, o->seed, n_vocab);
    double t0 = clock_now_s(), t_step = o->low_s, t_end = o->low_s + o->high_s;
    int active = o->low;
    bool stepped_up = false;

    /* request id = client index; the engine returns it with the result */
    #define SUBMIT(c)                                                                                   \
        do {                                                                                            \
            bench_load_prompt(&load, prompt, (size_t)o->prompt_len);                                    \
            engine_request_t rq_ = {0};                                                                 \
            rq_.id = (uint64_t)(c);                                                                     \
            rq_.prompt = prompt;                                                                        \
            rq_.n_prompt = o->prompt_len;                                                               \
            rq_.max_tokens = o->output_len;                                                             \
            rq_.min_tokens = o->output_len;                                                             \
            rq_.ignore_eos = true;                                                                      \
            rq_.temperature = 0;                                                                        \
            rq_.top_p = 1;                                                                              \
            if (engine_submit(e, &rq_, err, sizeof err) != ENGINE_OK) {                                 \
                fprintf(stderr, "krill-bench-slo: submit: %s\n", err);                                  \
                goto fail;                                                                              \
            }                                                                                           \
            submit_t[(c)] = clock_now_s() - t0;                                                               \
            busy[(c)] = true;                                                                           \
        } while (0)

    for (int c = 0; c < active; c++) SUBMIT(c);
    for (;;) {
        double t = clock_now_s() - t0;
        if (!stepped_up && t >= t_step) {
            stepped_up = true;
            for (int c = active; c < o->high; c++) SUBMIT(c);
            active = o->high;
        }
        if (t >= t_end) break;
        if (slo) {
            int s, b;
            if (slo_limits(slo, &s, &b)) {
                engine_set_limits(e, s, b);
                cur_seqs = s;
                cur_tokens = b;
            }
        }
        int seqs = engine_step(e);
        if (seqs < 0) {
            fprintf(stderr, "krill-bench-slo: engine_step failed\n");
            goto fail;
        }
        engine_stats_t st;
        engine_get_stats(e, &st);
        double ts = clock_now_s() - t0;
        if (seqs > 0) {
            if (seqs == st.last_step_tokens && ts >= t_step + o->settle_s && n_dec < dec_cap) dec_ms[n_dec++] = st.last_step_ms;
            if (slo) slo_observe_step(slo, ts * 1000, seqs, st.last_step_tokens, st.last_step_ms, st.running, st.waiting);
            if (trace)
                fprintf(trace, "%s %.4f %d %d %.3f %d %d\n", r->name, ts, seqs, st.last_step_tokens, st.last_step_ms,
                        cur_seqs, cur_tokens);
        } else {
            engine_wait(e, 5);
        }
        size_t n;
        while ((n = engine_poll(e, res, 64)) > 0) {
            for (size_t i = 0; i < n; i++) {
                engine_result_t *x = &res[i];
                int c = (int)x->id;
                if (x->finish == ENGINE_FINISH_ERROR) {
                    fprintf(stderr, "krill-bench-slo: request failed: %s\n", x->error);
                    engine_result_clear(x);
                    goto fail;
                }
                double tpot = x->completion_tokens >= 2 ? (x->total_ms - x->ttft_ms) / (x->completion_tokens - 1) : -1;
                if (slo) slo_observe_request(slo, (clock_now_s() - t0) * 1000, x->ttft_ms, tpot);
                if (n_rec == cap) {
                    cap *= 2;
                    rec = realloc(rec, cap * sizeof *rec);
                    if (!rec) goto fail;
                }
                rec[n_rec++] = (rec_t){submit_t[c], x->ttft_ms, tpot, x->total_ms, x->completion_tokens,
                                       submit_t[c] >= t_step};
                busy[c] = false;
                engine_result_clear(x);
                if (clock_now_s() - t0 < t_end && c < active) SUBMIT(c);
            }
        }
    }
    /* stop: abort what is in flight and drain its results */
    for (int c = 0; c < o->high; c++)
        if (busy[c]) engine_abort(e, (uint64_t)c);
    for (int guard = 0; guard < 100000; guard++) {
        bool any = false;
        for (int c = 0; c < o->high; c++) any |= busy[c];
        if (!any) break;
        engine_step(e);
        size_t n = engine_poll(e, res, 64);
        for (size_t i = 0; i < n; i++) {
            busy[(int)res[i].id] = false;
            engine_result_clear(&res[i]);
        }
    }

    /* measurements */
    {
        double win0 = t_step + o->settle_s;
        double *a = malloc((n_rec + 1) * sizeof *a), *b = malloc((n_rec + 1) * sizeof *b);
        size_t na = 0, nb = 0;
        long tokens = 0, done = 0;
        for (size_t i = 0; i < n_rec; i++) {
            rec_t *q = &rec[i];
            double finish = q->t_submit + q->total_ms / 1000;
            if (finish >= win0 && finish <= t_end) {
                tokens += q->completion;
                done++;
            }
        }
        r->tok_s = (double)tokens / (t_end - win0);
        r->req_s = (double)done / (t_end - win0);
        for (size_t i = 0; i < n_rec; i++)
            if (rec[i].t_submit >= win0) a[na++] = rec[i].ttft_ms;
        r->n_steady = na;
        r->ttft50 = bench_pct(a, na, 50);
        r->ttft95 = bench_pct(a, na, 95);
        for (size_t i = 0; i < n_rec; i++)
            if (rec[i].t_submit >= win0 && rec[i].tpot_ms >= 0) b[nb++] = rec[i].tpot_ms;
        r->tpot50 = bench_pct(b, nb, 50);
        r->tpot95 = bench_pct(b, nb, 95);
        na = nb = 0;
        for (size_t i = 0; i < n_rec; i++)
            if (rec[i].high) {
                a[na++] = rec[i].ttft_ms;
                if (rec[i].tpot_ms >= 0) b[nb++] = rec[i].tpot_ms;
            }
        r->n_all = na;
        r->ttft95_all = bench_pct(a, na, 95);
        r->decode_step_ms = bench_pct(dec_ms, n_dec, 50);
        r->tpot95_all = bench_pct(b, nb, 95);
        free(a);
        free(b);
    }
    r->end_seqs = cur_seqs;
    r->end_tokens = cur_tokens;
    if (slo) {
        slo_state_t ss;
        slo_get_state(slo, &ss);
        r->end_gain = ss.gain;
        r->changes = ss.changes;
    }
    #undef SUBMIT
    free(dec_ms);
    free(rec);
    free(submit_t);
    free(busy);
    free(prompt);
    slo_free(slo);
    return 0;
fail:
    free(dec_ms);
    free(rec);
    free(submit_t);
    free(busy);
    free(prompt);
    slo_free(slo);
    return -1;
}

/* Runs side by side: one engine and one thread per run, started together. */
typedef struct {
    const opts_t *o;
    const engine_config_t *ec;
    FILE *trace;
    char model_name[128], backend[16], device[128];
} group_t;

typedef struct {
    group_t *g;
    run_t *r;
    engine_t *e;
    int n_vocab;
    int rc;
} job_t;

static void *job_main(void *arg) {
    job_t *j = arg;
    j->rc = run_once(j->e, j->g->o, j->r, j->g->trace, j->n_vocab);
    return NULL;
}

static int run_group(group_t *g, run_t *runs, int n) {
    job_t jobs[MAX_RUNS];
    pthread_t th[MAX_RUNS];
    int rc = 0, opened = 0, started = 0;
    char err[1024];
    for (int i = 0; i < n; i++, opened++) {
        jobs[i] = (job_t){.g = g, .r = &runs[i]};
        if (!(jobs[i].e = engine_open(g->ec, err, sizeof err))) {
            fprintf(stderr, "krill-bench-slo: %s\n", err);
            rc = -1;
            goto out;
        }
        jobs[i].n_vocab = engine_get_info(jobs[i].e)->n_vocab;
    }
    for (int i = 0; i < n; i++, started++)
        if (pthread_create(&th[i], NULL, job_main, &jobs[i]) != 0) {
            fprintf(stderr, "krill-bench-slo: cannot start a thread\n");
            rc = -1;
            break;
        }
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].rc != 0) rc = -1;
    }
out:
    for (int i = 0; i < opened; i++) engine_close(jobs[i].e);
    return rc;
}

static void print_run(const run_t *r) {
    if (r->n_steady < 20)
        fprintf(stderr, "krill-bench-slo: warning: only %zu requests in the measuring window of '%s': percentiles are "
                        "rough; lengthen --high-s\n", r->n_steady, r->name);
    printf("%-26s %7.1f %7.2f %9.0f %9.0f %8.1f %8.1f | %9.0f %8.1f %5zu %7.1f | %s%d:%d\n", r->name, r->tok_s,
           r->req_s, r->ttft50, r->ttft95, r->tpot50, r->tpot95, r->ttft95_all, r->tpot95_all, r->n_steady,
           r->decode_step_ms, r->slo ? "end " : "", r->end_seqs, r->end_tokens);
    fflush(stdout);
}

/* One engine configuration for every run: the largest limits any run may use. */
static void slo_engine_config(const opts_t *o, engine_config_t *ec) {
    int max_s = o->ceil_seqs, max_b = o->ceil_tokens;
    for (int i = 0; i < o->n_static; i++) {
        if (o->st_seqs[i] > max_s) max_s = o->st_seqs[i];
        if (o->st_tokens[i] > max_b) max_b = o->st_tokens[i];
    }
    engine_config_defaults(ec);
    ec->model_path = o->model;
    ec->backend = o->backend;
    ec->n_threads = o->threads > 0 ? o->threads : 1; /* runs go side by side: one core each by default */
    ec->context = o->prompt_len + o->output_len + 8;
    ec->max_seqs = max_s;
    ec->max_batch_tokens = max_b;
    ec->kv_cache_tokens = (int64_t)ec->context * (max_s > o->high ? max_s : o->high);
}

/* Opens the engine once to fail early and to name the model and device; 0 or -1. */
static int slo_probe(group_t *g) {
    char err[1024];
    engine_t *e = engine_open(g->ec, err, sizeof err);
    if (!e) {
        fprintf(stderr, "krill-bench-slo: %s\n", err);
        return -1;
    }
    const engine_info_t *info = engine_get_info(e);
    snprintf(g->model_name, sizeof g->model_name, "%s", info->model_name);
    snprintf(g->backend, sizeof g->backend, "%s", info->backend);
    snprintf(g->device, sizeof g->device, "%s", info->device);
    engine_close(e);
    return 0;
}

/* Every run so far, and what the sweep and the pairs found. */
typedef struct {
    run_t runs[MAX_RUNS];
    int nr, best, n_pairs;
    double target; /* p95 TPOT target of the controller runs */
    const char *target_src;
    double ratio[MAX_RUNS]; /* controller / static throughput, per pair */
} results_t;

/* 1. the sweep, all static settings side by side: the best for throughput. 0 or -1. */
static int slo_sweep(group_t *g, results_t *res) {
    const opts_t *o = g->o;
    run_t *runs = res->runs;
    res->best = -1;
    for (int i = 0; i < o->n_static; i++) {
        run_t *r = &runs[res->nr++];
        memset(r, 0, sizeof *r);
        snprintf(r->name, sizeof r->name, "static %d:%d", o->st_seqs[i], o->st_tokens[i]);
        r->seqs = o->st_seqs[i];
        r->tokens = o->st_tokens[i];
    }
    if (run_group(g, runs, o->n_static) != 0) return -1;
    for (int i = 0; i < o->n_static; i++) {
        print_run(&runs[i]);
        if (res->best < 0 || runs[i].tok_s > runs[res->best].tok_s) res->best = i;
    }
    return 0;
}

/* 2. pairs side by side (the same machine load hits both): the controller, whose
 *    target comes from the sweep's best static run, and that static setting again.
 *    Prints the summary; 0 or -1. */
static int slo_pairs(group_t *g, results_t *res) {
    const opts_t *o = g->o;
    const run_t *best = &res->runs[res->best];
    double target = o->tpot_ms > 0     ? o->tpot_ms
                    : o->tpot_frac > 0 ? o->tpot_frac * best->tpot95
                                       : o->tpot_decode_x * best->decode_step_ms;
    res->target = target;
    res->target_src = o->tpot_ms > 0     ? "given"
                      : o->tpot_frac > 0 ? "tpot-frac x the sweep's best static p95"
                                         : "tpot-decode-x x its median decode-only step";
    if (!(target > 0)) {
        fprintf(stderr, "krill-bench-slo: the best static run finished no request in its measuring window, so there "
                        "is no TPOT to derive a target from: lengthen --high-s (or shorten --settle-s / --output-len), "
                        "or give --tpot-ms\n");
        return -1;
    }
    int st_holds = 0, slo_holds = 0, slo_ttft_holds = 0, st_ttft_holds = 0;
    for (int k = 0; k < o->repeat; k++) {
        run_t *r = &res->runs[res->nr], *b = &res->runs[res->nr + 1];
        res->nr += 2;
        memset(r, 0, sizeof *r);
        r->slo = true;
        r->seqs = o->ceil_seqs ? o->ceil_seqs : best->seqs;
        r->tokens = o->ceil_tokens ? o->ceil_tokens : best->tokens;
        r->tpot_target = target;
        r->ttft_target = o->ttft_ms;
        snprintf(r->name, sizeof r->name, "slo#%d tpot<=%.0fms", k + 1, target);
        memset(b, 0, sizeof *b);
        b->seqs = best->seqs;
        b->tokens = best->tokens;
        snprintf(b->name, sizeof b->name, "static#%d %d:%d", k + 1, b->seqs, b->tokens);
        if (run_group(g, r, 2) != 0) return -1;
        print_run(r);
        print_run(b);
        res->ratio[res->n_pairs++] = r->tok_s / b->tok_s;
        st_holds += b->tpot95 <= target;
        slo_holds += r->tpot95 <= target;
        if (o->ttft_ms > 0) {
            st_ttft_holds += b->ttft95 <= o->ttft_ms;
            slo_ttft_holds += r->ttft95 <= o->ttft_ms;
        }
    }
    double sorted[MAX_RUNS]; /* bench_pct sorts: the per-pair ratios keep their order */
    memcpy(sorted, res->ratio, sizeof sorted);
    double med = bench_pct(sorted, (size_t)res->n_pairs, 50);
    printf("\nbest static for throughput in the sweep: %s (%.1f tok/s, p95 TPOT %.1f ms, p95 TTFT %.0f ms)\n",
           best->name, best->tok_s, best->tpot95, best->ttft95);
    printf("target p95 TPOT %.1f ms (%s): held by the static setting in %d of %d runs, by the controller in %d of %d; "
           "controller throughput / static throughput, per pair: median %.3f",
           target, res->target_src, st_holds, o->repeat, slo_holds, o->repeat, med);
    for (int k = 0; k < res->n_pairs; k++) printf("%s%.3f", k ? ", " : " (", res->ratio[k]);
    printf(")\n");
    if (o->ttft_ms > 0)
        printf("target p95 TTFT %.0f ms: held by the static setting in %d of %d runs, by the controller in %d of %d\n",
               o->ttft_ms, st_ttft_holds, o->repeat, slo_ttft_holds, o->repeat);
    return 0;
}

/* --json FILE: the settings, the pairs and every run; 0 or -1. */
static int slo_write_json(const group_t *g, const results_t *res) {
    const opts_t *o = g->o;
    int rc = 0;
    json_t *root = json_object(), *arr = json_array();
    json_object_set_new(root, "model", json_string(g->model_name));
    json_object_set_new(root, "backend", json_string(g->backend));
    json_object_set_new(root, "device", json_string(g->device));
    json_object_set_new(root, "side_by_side", json_true());
    json_object_set_new(root, "prompt_len", json_integer(o->prompt_len));
    json_object_set_new(root, "output_len", json_integer(o->output_len));
    json_object_set_new(root, "low", json_integer(o->low));
    json_object_set_new(root, "high", json_integer(o->high));
    json_object_set_new(root, "low_s", json_real(o->low_s));
    json_object_set_new(root, "high_s", json_real(o->high_s));
    json_object_set_new(root, "settle_s", json_real(o->settle_s));
    json_object_set_new(root, "best_static", json_integer(res->best));
    json_object_set_new(root, "tpot_target_ms", json_real(res->target));
    json_object_set_new(root, "tpot_target_source", json_string(res->target_src));
    json_object_set_new(root, "ttft_target_ms", json_real(o->ttft_ms));
    json_t *pairs = json_array();
    for (int k = 0; k < res->n_pairs; k++) {
        json_t *pj = json_object();
        json_object_set_new(pj, "slo", json_integer(o->n_static + 2 * k));
        json_object_set_new(pj, "static", json_integer(o->n_static + 2 * k + 1));
        json_object_set_new(pj, "throughput_ratio", json_real(res->ratio[k]));
        json_array_append_new(pairs, pj);
    }
    json_object_set_new(root, "pairs", pairs);
    for (int i = 0; i < res->nr; i++) {
        const run_t *r = &res->runs[i];
        json_t *j = json_object();
#define JNUM(k, v) json_object_set_new(j, k, isfinite(v) ? json_real(v) : json_null())
        json_object_set_new(j, "name", json_string(r->name));
        json_object_set_new(j, "slo", json_boolean(r->slo));
        json_object_set_new(j, "max_seqs", json_integer(r->seqs));
        json_object_set_new(j, "max_batch_tokens", json_integer(r->tokens));
        JNUM("tpot_target_ms", r->tpot_target);
        JNUM("ttft_target_ms", r->ttft_target);
        JNUM("tok_s", r->tok_s);
        JNUM("req_s", r->req_s);
        JNUM("ttft_p50_ms", r->ttft50);
        JNUM("ttft_p95_ms", r->ttft95);
        JNUM("tpot_p50_ms", r->tpot50);
        JNUM("tpot_p95_ms", r->tpot95);
        JNUM("ttft_p95_all_ms", r->ttft95_all);
        JNUM("tpot_p95_all_ms", r->tpot95_all);
        JNUM("gain", r->end_gain);
        JNUM("decode_step_ms", r->decode_step_ms);
#undef JNUM
        json_object_set_new(j, "n_steady", json_integer((json_int_t)r->n_steady));
        json_object_set_new(j, "n_all", json_integer((json_int_t)r->n_all));
        json_object_set_new(j, "end_max_seqs", json_integer(r->end_seqs));
        json_object_set_new(j, "end_max_batch_tokens", json_integer(r->end_tokens));
        json_object_set_new(j, "changes", json_integer((json_int_t)r->changes));
        json_array_append_new(arr, j);
    }
    json_object_set_new(root, "runs", arr);
    if (json_dump_file(root, o->json_path, JSON_INDENT(1)) != 0) {
        fprintf(stderr, "krill-bench-slo: cannot write %s\n", o->json_path);
        rc = -1;
    }
    json_decref(root);
    return rc;
}

int main(int argc, char **argv) {
    opts_t o;
    cli_init("krill-bench-slo");
    argparse(argc, argv, &o);
    log_set_level(LOG_LVL_WARN);
    engine_config_t ec;
    slo_engine_config(&o, &ec);
    group_t g = {.o = &o, .ec = &ec};
    if (slo_probe(&g) != 0) return 1;
    if (o.trace_path && !(g.trace = fopen(o.trace_path, "w"))) {
        fprintf(stderr, "krill-bench-slo: cannot write %s\n", o.trace_path);
        return 1;
    }
    printf("krill-bench-slo: model %s, %s on %s, runs side by side (one engine each); %d-token prompts, %d-token "
           "answers; %d clients for %.0f s, then %d for %.0f s (measured after %.0f s)\n",
           g.model_name, g.backend, g.device, o.prompt_len, o.output_len, o.low, o.low_s, o.high, o.high_s,
           o.settle_s);
    printf("%-26s %7s %7s %9s %9s %8s %8s | %9s %8s %5s %7s | %s\n", "run", "tok/s", "req/s", "ttft50ms", "ttft95ms",
           "tpot50", "tpot95", "ttft95all", "tpot95all", "n", "dec_ms", "limits");
    static results_t res; /* MAX_RUNS runs: off the stack */
    int rc = slo_sweep(&g, &res) == 0 && slo_pairs(&g, &res) == 0 && (!o.json_path || slo_write_json(&g, &res) == 0)
                 ? 0
                 : 1;
    if (g.trace) fclose(g.trace);
    return rc;
}
